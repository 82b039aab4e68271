// The data-quality rules in Node (`npm test`): the same code the component runs, without the host.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULTS, emailDomain, judge, normalName } from '../../../target/plugins/js/test/src/rules.js';

test('names typed in one case become title case; mixed case is kept', () => {
  assert.equal(normalName('  SOMCHAI   JAIDEE '), 'Somchai Jaidee');
  assert.equal(normalName("mary-jane o'neil"), "Mary-Jane O'Neil");
  assert.equal(normalName('McDonald  Ann'), 'McDonald Ann');
  assert.equal(normalName('สมชาย ใจดี'), 'สมชาย ใจดี');
});

test('the domain is what follows the last @, lower-case', () => {
  assert.equal(emailDomain('A@B@Mailinator.COM '), 'mailinator.com');
  assert.equal(emailDomain('nobody'), null);
});

test('deny beats patch beats warn', () => {
  const contact = { name: 'ANN', email: 'ann@sub.mailinator.com', phone: null };
  assert.deepEqual(judge(contact, DEFAULTS), {
    kind: 'deny',
    reason: 'mailinator.com is a disposable email service; ask the customer for an address they keep',
    field: 'email',
  });
  assert.deepEqual(judge({ ...contact, email: 'ann@example.com' }, DEFAULTS), { kind: 'patch', fields: [['name', 'Ann']] });
  assert.equal(judge({ ...contact, name: 'Ann', email: 'ann@example.com' }, DEFAULTS).kind, 'warn');
  assert.equal(judge({ name: 'Ann', phone: '+66812345678' }, DEFAULTS).kind, 'allow');
});

test('a phone pattern, when configured, is enforced', () => {
  const config = { ...DEFAULTS, phone_pattern: '^\\+66\\d{8,9}$' };
  assert.equal(judge({ name: 'Ann', phone: '+66812345678' }, config).kind, 'allow');
  assert.deepEqual(judge({ name: 'Ann', phone: '0812345678' }, config), {
    kind: 'deny',
    reason: "0812345678 does not match the organization's phone format",
    field: 'phone',
  });
});

test('on an update, only a new or changed email or phone is judged', () => {
  const stored = { name: 'Dan', email: 'dan@mailinator.com', phone: '0812345678' };
  const config = { ...DEFAULTS, phone_pattern: '^\\+66\\d{8,9}$' };
  // Another field edited (the stored address and phone predate the rules): the write lands.
  assert.equal(judge({ ...stored, name: 'Dan K' }, config, stored).kind, 'allow');
  // Surrounding spaces are not a change.
  assert.equal(judge({ ...stored, email: ' dan@mailinator.com ' }, config, stored).kind, 'allow');
  // A changed email or phone is judged, and so is everything on create.
  assert.equal(judge({ ...stored, email: 'dan@yopmail.com' }, config, stored).field, 'email');
  assert.equal(judge({ ...stored, phone: '0899999999' }, config, stored).field, 'phone');
  assert.equal(judge(stored, config, null).field, 'email');
  assert.equal(judge({ ...stored, email: 'dan@example.com' }, config).field, 'phone');
  // A phone added to a record that had none is new.
  assert.equal(judge(stored, config, { ...stored, phone: null }).field, 'phone');
});
