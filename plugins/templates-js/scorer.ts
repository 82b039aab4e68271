// A scorer template: one score, the number of purchases. Ask for the features you need in
// `describe`; compute your scores column by column in `score`.
import type { FeatureBatch, ScoreBatch, ScorerSpec } from 'rapport:plugin/types@0.1.0';
import { PluginError, guard } from '../sdk/rapport.js';

export const describe = guard((): ScorerSpec => ({
  features: [{ name: 'purchases', measure: 'count', kinds: [{ tag: 'purchase' }], since: null, until: null }],
  scores: [{ name: 'purchases', description: 'number of purchases' }],
  labels: [],
  needsFit: false,
}));

// Only called when `needsFit` is set: fit a model on the whole organization, return its bytes.
export const fit = guard((_population: FeatureBatch): Uint8Array => new Uint8Array());

export const score = guard((batch: FeatureBatch, _model: Uint8Array): ScoreBatch => {
  const purchases = batch.columns.find((c) => c.name === 'purchases');
  if (!purchases) throw new PluginError('the host sent no `purchases` column');
  return { scores: [{ name: 'purchases', values: purchases.values }], labels: [], explanations: [] };
});
