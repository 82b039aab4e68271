// A policy template: allows every write. Replace the body of `before` with your rule: return
// `{ tag: 'deny', val: { reason, field } }`, `{ tag: 'warn', val: message }` or
// `{ tag: 'patch', val: [{ field, value: JSON.stringify(value) }] }`.
import type { Action, Change, Decision } from 'rapport:plugin/types@0.1.0';
import { guard } from '../sdk/rapport.js';

export const before = guard((change: Change): Decision => {
  console.debug(`${change.operation} of a ${change.after?.tag ?? change.before?.tag} by ${change.actor.name}`);
  return { tag: 'allow' };
});

// Follow-up actions once a write landed: tags, tasks, messages, assignments.
export const after = guard((_change: Change): Action[] => []);
