//! Finding the same person twice, and merging them into one profile.
//!
//! Candidates come from shared matching keys (normalized email, phone in E.164, the same name),
//! scored with the names' Jaro-Winkler similarity. A merge keeps the whole timeline, every
//! consent and external id, and records the removed profile in the audit log so that it can be
//! reconstructed; the removed id keeps resolving to the kept customer.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::json;

use super::{OrgStore, OrgTx, Result, StoreError, now_ms, scoped};
use crate::model::{Actor, Customer, Id};

/// A lower-cased, trimmed email; `None` for something that is not an email.
pub fn email(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    (e.len() >= 3 && e.contains('@') && !e.starts_with('@') && !e.ends_with('@')).then_some(e)
}

/// A phone number in E.164 (`+66812345678`) when its country is known: written with `+` or
/// `00`, or local (leading 0) with the organization's default country code. `None` otherwise.
pub fn phone_e164(raw: &str, country_code: Option<&str>) -> Option<String> {
    let trimmed = raw.trim();
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if !(6..=15).contains(&digits.len()) {
        return None;
    }
    if trimmed.starts_with('+') {
        return Some(format!("+{digits}"));
    }
    if let Some(rest) = digits.strip_prefix("00") {
        return Some(format!("+{rest}"));
    }
    match (digits.strip_prefix('0'), country_code) {
        (Some(national), Some(cc)) => Some(format!("+{cc}{national}")),
        _ => None,
    }
}

/// The key phones are matched on: E.164 when known, the bare digits otherwise.
pub fn phone_key(raw: &str, country_code: Option<&str>) -> Option<String> {
    phone_e164(raw, country_code).or_else(|| {
        let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
        (digits.len() >= 6).then_some(digits)
    })
}

/// A likely duplicate pair, `a < b`, with why it was proposed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub a: Id,
    pub b: Id,
    /// 0..1: how likely the two are one person.
    pub score: f64,
    pub reasons: Vec<String>,
}

impl OrgStore {
    /// Likely duplicates, most likely first.
    ///
    /// # Errors
    /// A database failure.
    pub fn duplicates(&self, limit: usize) -> Result<Vec<Candidate>> {
        let conn = self.conn()?;
        let mut pairs: BTreeMap<(i64, i64), (f64, Vec<String>)> = BTreeMap::new();
        for (key, weight, reason) in [
            ("email_norm", 0.5, "same email"),
            ("phone_norm", 0.4, "same phone"),
            ("lower(trim(name))", 0.2, "same name"),
        ] {
            let sql = format!(
                "SELECT a.id, b.id FROM customers a JOIN customers b ON b.org_id = a.org_id AND {b} = {a} AND b.id > a.id \
                 WHERE a.org_id = ?1 AND {a} IS NOT NULL AND a.erased_at IS NULL AND b.erased_at IS NULL LIMIT 100000",
                a = qualify("a", key),
                b = qualify("b", key),
            );
            let mut stmt = conn.prepare(scoped(&sql))?;
            let rows = stmt.query_map([self.org.id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let entry = pairs.entry(row?).or_default();
                entry.0 += weight;
                entry.1.push(reason.to_owned());
            }
        }
        let mut out = Vec::with_capacity(pairs.len());
        for ((a, b), (score, mut reasons)) in pairs {
            let name = |id: i64| -> Result<Option<String>> {
                Ok(conn
                    .prepare_cached(scoped("SELECT name FROM customers WHERE org_id = ?1 AND id = ?2"))?
                    .query_row(params![self.org.id, id], |r| r.get(0))?)
            };
            let similarity = match (name(a)?, name(b)?) {
                (Some(x), Some(y)) => strsim::jaro_winkler(&x.to_lowercase(), &y.to_lowercase()),
                _ => 0.0,
            };
            if similarity >= 0.85 && !reasons.iter().any(|r| r == "same name") {
                reasons.push(format!("similar names ({similarity:.2})"));
            }
            out.push(Candidate { a: a as Id, b: b as Id, score: (score + 0.3 * similarity).min(1.0), reasons });
        }
        out.sort_by(|x, y| y.score.total_cmp(&x.score).then(x.a.cmp(&y.a)));
        out.truncate(limit);
        Ok(out)
    }

    /// Merge `remove` into `keep`: one customer with both timelines, consents, tags and external
    /// ids; `keep`'s fields win and `remove`'s fill the gaps. Returns the merged customer.
    ///
    /// # Errors
    /// `Invalid` when `keep` and `remove` are the same customer or either does not exist; a
    /// database failure.
    pub fn merge(&self, actor: &Actor, keep: Id, remove: Id) -> Result<Customer> {
        if keep == remove {
            return Err(StoreError::Invalid("cannot merge a customer into itself".into()));
        }
        self.write(|tx| tx.merge(actor, keep, remove, None))
    }

    /// The customer an id now stands for: itself, or the customer it was merged into.
    ///
    /// # Errors
    /// A database failure.
    pub fn resolve(&self, id: Id) -> Result<Option<Id>> {
        let conn = self.conn()?;
        let merged: Option<i64> = conn
            .prepare_cached(scoped("SELECT kept_id FROM customer_merges WHERE org_id = ?1 AND removed_id = ?2"))?
            .query_row(params![self.org.id, id as i64], |r| r.get(0))
            .optional()?;
        match merged {
            Some(kept) => Ok(Some(kept as Id)),
            None => Ok(self.customer(id)?.map(|c| c.id)),
        }
    }
}

/// The profile a merge produces: `kept`'s fields win, `removed`'s fill the gaps; external ids,
/// tags and consents are united; attributes merge key by key, `kept`'s first.
pub fn merged_profile(kept: &Customer, removed: &Customer) -> Customer {
    let mut merged = kept.clone();
    merged.name = kept.name.clone().or(removed.name.clone());
    merged.email = kept.email.clone().or(removed.email.clone());
    merged.phone = kept.phone.clone().or(removed.phone.clone());
    merged.branch = kept.branch.clone().or(removed.branch.clone());
    merged.distributor = kept.distributor.or(removed.distributor);
    merged.external_ids.extend(removed.external_ids.iter().cloned());
    merged.tags.extend(removed.tags.iter().cloned());
    merged.tags.sort();
    merged.tags.dedup();
    merged.consents.extend(removed.consents.iter().cloned());
    merged.consents.sort_by_key(|c| c.given_at);
    for (k, v) in &removed.attributes {
        merged.attributes.entry(k.clone()).or_insert_with(|| v.clone());
    }
    merged
}

fn qualify(alias: &str, key: &str) -> String {
    match key {
        "lower(trim(name))" => format!("lower(trim({alias}.name))"),
        column => format!("{alias}.{column}"),
    }
}

impl OrgTx<'_> {
    /// Merge `remove` into `keep` inside a larger transaction (the write pipeline's), storing
    /// `merged` as the result when given (policies may have patched it).
    ///
    /// # Errors
    /// `Invalid` when `keep` and `remove` are the same customer or either does not exist, or
    /// `merged` is not a valid profile (a distributor not this organization's, an external id of
    /// another customer); a database failure.
    pub fn merge_customers(&self, actor: &Actor, keep: Id, remove: Id, merged: Option<&Customer>) -> Result<Customer> {
        if keep == remove {
            return Err(StoreError::Invalid("cannot merge a customer into itself".into()));
        }
        self.merge(actor, keep, remove, merged)
    }

    fn merge(&self, actor: &Actor, keep: Id, remove: Id, merged: Option<&Customer>) -> Result<Customer> {
        let missing = |id: Id| StoreError::Invalid(format!("customer {id} does not exist"));
        let kept = self.customer(keep)?.ok_or_else(|| missing(keep))?;
        let removed = self.customer(remove)?.ok_or_else(|| missing(remove))?;
        let moved: Vec<i64> = self
            .tx
            .prepare(scoped("SELECT id FROM interactions WHERE org_id = ?1 AND customer_id = ?2 ORDER BY id"))?
            .query_map(params![self.org, remove as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;

        let merged = match merged {
            Some(m) => Customer { id: keep, ..m.clone() },
            None => merged_profile(&kept, &removed),
        };

        self.tx.execute(
            scoped("UPDATE interactions SET customer_id = ?3 WHERE org_id = ?1 AND customer_id = ?2"),
            params![self.org, remove as i64, keep as i64],
        )?;
        self.tx.execute(
            scoped("UPDATE customer_merges SET kept_id = ?3 WHERE org_id = ?1 AND kept_id = ?2"),
            params![self.org, remove as i64, keep as i64],
        )?;
        // The removed customer's external ids move with the merge: delete them first so that
        // re-inserting them under the kept customer does not collide.
        self.tx
            .execute(scoped("DELETE FROM customers WHERE org_id = ?1 AND id = ?2"), params![self.org, remove as i64])?;
        self.update_customer(&merged)?;
        self.tx.execute(
            scoped("INSERT INTO customer_merges (org_id, removed_id, kept_id, at) VALUES (?1, ?2, ?3, ?4)"),
            params![self.org, remove as i64, keep as i64, now_ms()],
        )?;
        // Enough to undo the merge by hand: the removed profile whole, and which interactions moved.
        self.audit(
            actor,
            "merge",
            "customer",
            Some(keep),
            json!({ "kept": keep, "removed": removed, "kept_before": kept, "moved_interactions": moved }),
        )?;
        self.customer(keep)?.ok_or_else(|| missing(keep))
    }
}
