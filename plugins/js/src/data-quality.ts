// A data-quality policy for customer records, written in TypeScript: refuses disposable email
// domains, checks phone numbers against the organization's format, normalises how names are
// typed, and warns when a customer cannot be called. Rules in `rules.ts`; config in its README.
import type { Change, Decision, Action } from 'rapport:plugin/types@0.1.0';
import { PluginError, config, guard } from '../sdk/rapport.js';
import { DEFAULTS, judge, type Config } from './rules.js';

function settings(): Config {
  const c = config(DEFAULTS);
  if (!Array.isArray(c.blocked_domains) || c.blocked_domains.some((d) => typeof d !== 'string')) {
    throw new PluginError('blocked_domains must be a list of domain names', 'blocked_domains');
  }
  for (const flag of ['normalize_names', 'warn_missing_phone'] as const) {
    if (typeof c[flag] !== 'boolean') throw new PluginError(`${flag} must be true or false`, flag);
  }
  if (c.phone_pattern !== null && typeof c.phone_pattern !== 'string') {
    throw new PluginError('phone_pattern must be a regular expression as a string, or null', 'phone_pattern');
  }
  return { ...c, blocked_domains: c.blocked_domains.map((d) => d.toLowerCase()) };
}

export const before = guard((change: Change): Decision => {
  if (change.after?.tag !== 'customer') return { tag: 'allow' };
  const customer = change.after.val;
  const stored = change.before?.tag === 'customer' ? change.before.val : null;
  const verdict = judge(customer, settings(), stored);
  switch (verdict.kind) {
    case 'allow':
      return { tag: 'allow' };
    case 'warn':
      console.warn(`customer ${customer.id}: ${verdict.message}`);
      return { tag: 'warn', val: verdict.message };
    case 'deny':
      console.log(`denied customer ${customer.id} on ${verdict.field}`);
      return { tag: 'deny', val: { reason: verdict.reason, field: verdict.field } };
    case 'patch':
      for (const [field, value] of verdict.fields) {
        console.log(`normalised ${field} of customer ${customer.id}:`, customer[field as 'name'], '->', value);
      }
      return {
        tag: 'patch',
        val: verdict.fields.map(([field, value]) => ({ field, value: JSON.stringify(value) })),
      };
  }
});

export const after = guard((_change: Change): Action[] => []);
