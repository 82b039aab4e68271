//! Data-subject rights (Thailand's PDPA, the EU's GDPR): export everything held on one person,
//! and erase them.
//!
//! Erasure keeps what the law lets an organization keep without the person: an anonymous shell of
//! the customer (id, branch, distributor, dates) and their interactions' kind, channel, time and
//! amount, so that counts and revenue stay right. Names, contact details, free text, attributes,
//! external ids, tags, consents and scores go, and so do copies of them in earlier audit entries.
//! The erasure itself is audited without re-storing what was erased. Webhook events about the
//! person, sent or not, are scrubbed to their id (see `webhooks`); `customer.erased` says only who.

use rusqlite::params;
use serde_json::{Value, json};

use super::{INTERACTION_COLUMNS, OrgStore, OrgTx, Result, StoreError, interaction_from_row, now_ms, scoped};
use crate::model::{Actor, Id};

impl OrgStore {
    /// Everything held on one customer, as one JSON document.
    ///
    /// # Errors
    /// `Filter` when a saved segment's filter no longer parses; `Invalid` when the customer was
    /// merged away while being read; a database failure.
    pub fn export(&self, id: Id) -> Result<Option<Value>> {
        let Some(customer) = self.customer(id)? else { return Ok(None) };
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {INTERACTION_COLUMNS} FROM interactions i WHERE i.org_id = ?1 AND i.customer_id = ?2 ORDER BY i.occurred_at, i.id"
        );
        let interactions: Vec<_> = conn
            .prepare(scoped(&sql))?
            .query_map(params![self.org.id, id as i64], interaction_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        let scores: Vec<Value> = conn
            .prepare(scoped(
                "SELECT h.plugin, h.name, h.value, h.label, h.computed_at FROM score_history h \
                 JOIN customers c ON c.id = h.customer_id WHERE c.org_id = ?1 AND h.customer_id = ?2 ORDER BY h.computed_at",
            ))?
            .query_map(params![self.org.id, id as i64], |r| {
                Ok(json!({ "plugin": r.get::<_, String>(0)?, "name": r.get::<_, String>(1)?, "value": r.get::<_, Option<f64>>(2)?,
                    "label": r.get::<_, Option<String>>(3)?, "computed_at": r.get::<_, i64>(4)? }))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let merged_from: Vec<i64> = conn
            .prepare(scoped("SELECT removed_id FROM customer_merges WHERE org_id = ?1 AND kept_id = ?2"))?
            .query_map(params![self.org.id, id as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let erased_at: Option<i64> = conn.query_row(
            scoped("SELECT erased_at FROM customers WHERE org_id = ?1 AND id = ?2"),
            params![self.org.id, id as i64],
            |r| r.get(0),
        )?;
        let profile = self.profile(id, 1)?.ok_or_else(|| StoreError::Invalid(format!("customer {id} vanished")))?;
        let audit = self.audit_of(id, &merged_from)?;
        Ok(Some(json!({
            "organization": self.org.slug,
            "exported_at": now_ms(),
            "customer": customer,
            "erased_at": erased_at,
            "scores": profile.scores,
            "labels": profile.labels,
            "score_history": scores,
            "segments": profile.segments,
            "interactions": interactions,
            "merged_from": merged_from,
            "audit": audit,
        })))
    }

    /// What the audit log holds on this customer (and on profiles merged into it): entries about
    /// them whole, and from entries about many customers (an import batch) only their part.
    fn audit_of(&self, id: Id, merged_from: &[i64]) -> Result<Vec<Value>> {
        let conn = self.conn()?;
        let mut ids: Vec<Id> = merged_from.iter().map(|&i| i as Id).collect();
        ids.push(id);
        let mut stmt = conn.prepare(scoped(
            "SELECT id, at, actor, action, entity, entity_id, detail FROM audit \
             WHERE org_id = ?1 AND entity = 'customer' ORDER BY id",
        ))?;
        let rows = stmt.query_map([self.org.id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (entry, at, actor, action, entity_id, detail) = row?;
            let detail: Value = serde_json::from_str(&detail).unwrap_or_default();
            let about = entity_id.is_some_and(|e| ids.contains(&(e as Id)));
            let parts: Vec<Value> = if about {
                vec![detail]
            } else {
                let mut found = Vec::new();
                for &i in &ids {
                    collect(&detail, i, &mut found);
                }
                found
            };
            if !parts.is_empty() {
                out.push(json!({ "id": entry, "at": at, "actor": actor, "action": action, "detail": parts }));
            }
        }
        Ok(out)
    }

    /// Erase a customer's personal data (see the module docs for what stays).
    ///
    /// # Errors
    /// `Invalid` when the customer does not exist; a database failure. Either way nothing was
    /// erased.
    pub fn erase(&self, actor: &Actor, id: Id) -> Result<()> {
        self.write(|tx| tx.erase(actor, id))
    }
}

/// The records of this customer (`{"id": id, ...}`) anywhere inside an audit detail.
fn collect(detail: &Value, id: Id, out: &mut Vec<Value>) {
    match detail {
        Value::Object(map) if map.get("id").and_then(Value::as_u64) == Some(id) => out.push(detail.clone()),
        Value::Object(map) => map.values().for_each(|v| collect(v, id, out)),
        Value::Array(items) => items.iter().for_each(|v| collect(v, id, out)),
        _ => {}
    }
}

/// Replace the values policies patched in and the warnings they gave (a write's `decisions`).
fn scrub_decisions(detail: &mut Value) -> bool {
    let Some(decisions) = detail.get_mut("decisions").and_then(Value::as_array_mut) else { return false };
    let mut changed = false;
    for d in decisions.iter_mut().filter_map(|d| d.get_mut("decision")) {
        if let Some(patches) = d.get_mut("patches").and_then(Value::as_array_mut) {
            for p in patches.iter_mut().filter_map(|p| p.get_mut("value")) {
                *p = json!({ "erased": true });
                changed = true;
            }
        }
        if let Some(message) = d.get_mut("message") {
            *message = json!({ "erased": true });
            changed = true;
        }
    }
    changed
}

/// Anonymize this customer's interactions inside an audit detail, as their rows are.
fn scrub_interactions(detail: &mut Value, id: Id) -> bool {
    match detail {
        Value::Object(map) if map.get("customer").and_then(Value::as_u64) == Some(id) && map.contains_key("kind") => {
            for field in ["subject", "body"] {
                map.insert(field.into(), Value::Null);
            }
            map.insert("attributes".into(), json!({}));
            if let Some(ticket) = map.get_mut("ticket").and_then(Value::as_object_mut) {
                ticket.insert("resolution".into(), Value::Null);
            }
            true
        }
        Value::Object(map) => map.values_mut().fold(false, |changed, v| scrub_interactions(v, id) | changed),
        Value::Array(items) => items.iter_mut().fold(false, |changed, v| scrub_interactions(v, id) | changed),
        _ => false,
    }
}

/// Replace every record of this customer inside an audit detail with a marker.
fn scrub(detail: &mut Value, id: Id) -> bool {
    match detail {
        Value::Object(map) if map.get("id").and_then(Value::as_u64) == Some(id) => {
            *detail = json!({ "id": id, "erased": true });
            true
        }
        Value::Object(map) => map.values_mut().fold(false, |changed, v| scrub(v, id) | changed),
        Value::Array(items) => items.iter_mut().fold(false, |changed, v| scrub(v, id) | changed),
        _ => false,
    }
}

impl OrgTx<'_> {
    /// Erase inside a larger transaction (the write pipeline's).
    ///
    /// # Errors
    /// `Invalid` when the customer does not exist; a database failure.
    pub fn erase_customer(&self, actor: &Actor, id: Id) -> Result<()> {
        self.erase(actor, id)
    }

    fn erase(&self, actor: &Actor, id: Id) -> Result<()> {
        let exists = self.customer(id)?.is_some();
        if !exists {
            return Err(StoreError::Invalid(format!("customer {id} does not exist")));
        }
        let at = now_ms();
        self.tx.execute(
            scoped(
                "UPDATE customers SET name = NULL, email = NULL, phone = NULL, email_norm = NULL, phone_norm = NULL, \
                 attributes = '{}', erased_at = ?3, updated_at = ?3 WHERE org_id = ?1 AND id = ?2",
            ),
            params![self.org, id as i64, at],
        )?;
        self.tx.execute(
            scoped("DELETE FROM customer_ids WHERE org_id = ?1 AND customer_id = ?2"),
            params![self.org, id as i64],
        )?;
        // Tags, consents and scores hang off a customer this transaction has just found in the org.
        self.tx.execute("DELETE FROM customer_tags WHERE customer_id = ?1", [id as i64])?;
        self.tx.execute("DELETE FROM consents WHERE customer_id = ?1", [id as i64])?;
        self.tx.execute("DELETE FROM scores WHERE customer_id = ?1", [id as i64])?;
        self.tx.execute("DELETE FROM score_history WHERE customer_id = ?1", [id as i64])?;
        let interactions = self.tx.execute(
            scoped(
                "UPDATE interactions SET subject = NULL, body = NULL, attributes = '{}', resolution = NULL \
                 WHERE org_id = ?1 AND customer_id = ?2",
            ),
            params![self.org, id as i64],
        )?;

        // Earlier audit entries that recorded this person's data, under this id or under the ids of
        // profiles merged into it.
        let mut ids: Vec<i64> = self
            .tx
            .prepare(scoped("SELECT removed_id FROM customer_merges WHERE org_id = ?1 AND kept_id = ?2"))?
            .query_map(params![self.org, id as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        ids.push(id as i64);
        self.forget_pipeline_records(&ids)?;
        self.scrub_webhook_events(&ids)?;
        let entries: Vec<(i64, Option<i64>, String)> = self
            .tx
            .prepare(scoped("SELECT id, entity_id, detail FROM audit WHERE org_id = ?1 AND entity = 'customer'"))?
            .query_map([self.org], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut scrubbed = 0;
        for (entry, entity_id, text) in entries {
            let mut detail: Value = serde_json::from_str(&text).unwrap_or_default();
            // Policies' patches and warnings about this customer can quote their data too.
            let about = entity_id.is_some_and(|e| ids.contains(&e)) && scrub_decisions(&mut detail);
            if ids.iter().fold(about, |changed, &i| scrub(&mut detail, i as Id) | changed) {
                self.tx.execute(
                    scoped("UPDATE audit SET detail = ?3 WHERE org_id = ?1 AND id = ?2"),
                    params![self.org, entry, detail.to_string()],
                )?;
                scrubbed += 1;
            }
        }
        // Interactions recorded in the audit log (writes through the pipeline) are anonymized
        // like their rows, with the policies' decisions about them.
        let entries: Vec<(i64, String)> = self
            .tx
            .prepare(scoped("SELECT id, detail FROM audit WHERE org_id = ?1 AND entity = 'interaction'"))?
            .query_map([self.org], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (entry, text) in entries {
            let mut detail: Value = serde_json::from_str(&text).unwrap_or_default();
            if ids.iter().fold(false, |changed, &i| scrub_interactions(&mut detail, i as Id) | changed) {
                scrub_decisions(&mut detail);
                self.tx.execute(
                    scoped("UPDATE audit SET detail = ?3 WHERE org_id = ?1 AND id = ?2"),
                    params![self.org, entry, detail.to_string()],
                )?;
                scrubbed += 1;
            }
        }
        self.audit(
            actor,
            "erase",
            "customer",
            Some(id),
            json!({ "interactions_anonymized": interactions, "audit_entries_scrubbed": scrubbed }),
        )?;
        // After the scrub above, so that this event keeps its (personal-data-free) payload.
        self.webhook_event(super::CUSTOMER_ERASED, Some(id), || Ok(json!({ "customer": id })))
    }
}
