// The data-quality rules, free of the contract's imports so that `npm test` runs them in Node.

export interface Config {
  /** Email domains refused outright (throwaway inboxes): the write is denied on `email`. */
  blocked_domains: string[];
  /** Store names trimmed, single-spaced, and in title case when typed all upper or all lower. */
  normalize_names: boolean;
  /** Warn (the write lands) when a customer has no phone number. */
  warn_missing_phone: boolean;
  /** A regular expression every phone number must match, e.g. `^\+66\d{8,9}$`; none by default. */
  phone_pattern: string | null;
}

export const DEFAULTS: Config = {
  blocked_domains: ['mailinator.com', 'guerrillamail.com', 'yopmail.com', '10minutemail.com', 'trashmail.com'],
  normalize_names: true,
  warn_missing_phone: true,
  phone_pattern: null,
};

export interface Contact {
  name?: string | null;
  email?: string | null;
  phone?: string | null;
}

export type Verdict =
  | { kind: 'allow' }
  | { kind: 'warn'; message: string }
  | { kind: 'deny'; reason: string; field: string }
  | { kind: 'patch'; fields: Array<[string, unknown]> };

/** "  somchai   JAIDEE " stays as typed but single-spaced; "SOMCHAI JAIDEE" becomes "Somchai Jaidee". */
export function normalName(name: string): string {
  const spaced = name.trim().replace(/\s+/g, ' ');
  const upper = spaced.toUpperCase();
  const lower = spaced.toLowerCase();
  if (upper === lower || (spaced !== upper && spaced !== lower)) return spaced;
  return lower.replace(/(^|[\s'-])(\p{L})/gu, (_, sep: string, first: string) => sep + first.toUpperCase());
}

/** The domain of an address, lower-case; null when it has none. */
export function emailDomain(email: string): string | null {
  const at = email.lastIndexOf('@');
  const domain = at < 0 ? '' : email.slice(at + 1).trim().toLowerCase();
  return domain === '' ? null : domain;
}

/**
 * Deny beats patch beats warn: a write gets one decision.
 *
 * `before` is the stored record on an update (null on create). Email and phone are judged only
 * when they are new or changed: a record stored before the rule (or before the organization
 * blocked a domain) must still take other edits — a consent withdrawal above all — rather than
 * fail every write until someone fixes a field the writer never touched.
 */
export function judge(customer: Contact, config: Config, before: Contact | null = null): Verdict {
  const changed = (field: 'email' | 'phone') =>
    before === null || (before[field] ?? '').trim() !== (customer[field] ?? '').trim();
  const email = customer.email?.trim();
  if (email && changed('email')) {
    const domain = emailDomain(email);
    const blocked = domain && config.blocked_domains.find((d) => domain === d || domain.endsWith(`.${d}`));
    if (blocked) {
      return {
        kind: 'deny',
        reason: `${blocked} is a disposable email service; ask the customer for an address they keep`,
        field: 'email',
      };
    }
  }
  const phone = customer.phone?.trim();
  if (phone && changed('phone') && config.phone_pattern !== null && !new RegExp(config.phone_pattern).test(phone)) {
    return { kind: 'deny', reason: `${phone} does not match the organization's phone format`, field: 'phone' };
  }
  if (config.normalize_names && customer.name) {
    const normal = normalName(customer.name);
    if (normal !== customer.name) return { kind: 'patch', fields: [['name', normal]] };
  }
  if (config.warn_missing_phone && !phone) {
    return { kind: 'warn', message: 'the customer has no phone number: calls and SMS cannot reach them' };
  }
  return { kind: 'allow' };
}
