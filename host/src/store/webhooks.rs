//! Outbound webhooks, the store's side: the endpoints an organization registers, the events its
//! writes queue for them, and each endpoint's delivery log. The delivery worker
//! (`crate::webhooks`) sends what is due.
//!
//! An event is queued inside the transaction of the write it describes, so a write that rolls
//! back sends nothing. It is queued (and its payload built) only when an endpoint of the
//! organization subscribes to its kind: a rescore of a million customers writes no event rows
//! when nobody listens. Erasing a customer scrubs the payloads of every event about them, sent or
//! not; the erasure's own event carries the id alone.

use std::collections::BTreeSet;

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{OrgStore, OrgTx, Result, Store, StoreError, now_ms, scoped};
use crate::model::{Actor, Entity, Id, Timestamp};

pub const CUSTOMER_CREATED: &str = "customer.created";
pub const CUSTOMER_UPDATED: &str = "customer.updated";
pub const CUSTOMER_ERASED: &str = "customer.erased";
pub const INTERACTION_ADDED: &str = "interaction.added";
pub const POLICY_DENIED: &str = "policy.denied";
pub const SCORE_CHANGED: &str = "score.changed";
pub const JOB_FINISHED: &str = "job.finished";

/// Every event kind an endpoint may subscribe to.
pub const EVENT_KINDS: [&str; 7] = [
    CUSTOMER_CREATED,
    CUSTOMER_UPDATED,
    CUSTOMER_ERASED,
    INTERACTION_ADDED,
    POLICY_DENIED,
    SCORE_CHANGED,
    JOB_FINISHED,
];

/// Events (and their deliveries) are kept this long, then pruned once nothing about them is
/// queued: long enough to read a delivery log, short enough not to grow without bound.
pub const WEBHOOK_RETENTION_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// A registered endpoint, as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookEndpoint {
    pub id: i64,
    pub url: String,
    /// The event kinds it receives.
    pub events: Vec<String>,
    pub created_by: String,
    pub created_at: Timestamp,
}

/// One event's delivery to one endpoint: a line of the endpoint's delivery log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookDelivery {
    /// Sent as the `Rapport-Delivery` header.
    pub id: i64,
    /// The event's id (the body's `id`; the same for every endpoint).
    pub event: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub customer: Option<Id>,
    /// `queued` (waiting or retrying), `delivered`, or `failed` (no attempts left).
    pub state: String,
    pub attempts: u32,
    /// The HTTP status of the last attempt, when the endpoint answered.
    pub last_status: Option<u16>,
    /// Why the last failed attempt failed (kept after a later success, so the log shows it).
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub last_attempt_at: Option<Timestamp>,
    /// When the next attempt is due, while queued.
    pub next_attempt_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
}

/// A delivery the worker may attempt now, with what it needs to send it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: i64,
    pub event: i64,
    pub kind: String,
    pub org: String,
    pub url: String,
    pub secret: String,
    pub payload: Value,
    pub occurred_at: Timestamp,
    /// Attempts made before this one.
    pub attempts: u32,
}

impl DueDelivery {
    /// The request body: the envelope (`id`, `type`, `org`, `occurred_at`) around the payload.
    /// It is built from stored data only, so every attempt sends the same bytes.
    pub fn body(&self) -> String {
        let mut body = Map::new();
        body.insert("id".into(), json!(self.event));
        body.insert("type".into(), json!(self.kind));
        body.insert("org".into(), json!(self.org));
        body.insert("occurred_at".into(), json!(self.occurred_at));
        if let Value::Object(payload) = &self.payload {
            body.extend(payload.clone());
        }
        Value::Object(body).to_string()
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, Copy)]
pub enum Attempt<'a> {
    /// The endpoint answered 2xx.
    Delivered { status: u16 },
    /// Anything else; `retry_at` is when to try again, `None` to give up.
    Failed { status: Option<u16>, error: &'a str, retry_at: Option<Timestamp> },
}

fn endpoint_from_row(r: &Row) -> rusqlite::Result<WebhookEndpoint> {
    let events: String = r.get(2)?;
    Ok(WebhookEndpoint {
        id: r.get(0)?,
        url: r.get(1)?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        created_by: r.get(3)?,
        created_at: r.get(4)?,
    })
}

impl Store {
    /// Deliveries due at `now`, oldest first, across organizations. A delivery waits while an
    /// earlier event of the same customer is still queued for the same endpoint, so each
    /// endpoint sees a customer's events in the order they happened.
    ///
    /// # Errors
    /// A database failure.
    pub fn due_webhook_deliveries(&self, now: Timestamp, limit: u32) -> Result<Vec<DueDelivery>> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT d.id, d.event_id, d.attempts, v.kind, v.payload, v.created_at, e.url, e.secret, o.slug \
             FROM webhook_deliveries d \
             JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             JOIN webhook_events v ON v.id = d.event_id \
             JOIN orgs o ON o.id = v.org_id \
             WHERE d.state = 'queued' AND d.next_attempt_at <= ?1 \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id \
                 AND p.customer_id = d.customer_id AND p.state = 'queued' AND p.event_id < d.event_id) \
             ORDER BY d.next_attempt_at, d.id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now, limit], |r| {
            let payload: String = r.get(4)?;
            Ok(DueDelivery {
                id: r.get(0)?,
                event: r.get(1)?,
                attempts: r.get(2)?,
                kind: r.get(3)?,
                payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
                occurred_at: r.get(5)?,
                url: r.get(6)?,
                secret: r.get(7)?,
                org: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Record an attempt at a delivery (gone already if its endpoint was deleted meanwhile).
    ///
    /// # Errors
    /// A database failure.
    pub fn record_webhook_attempt(&self, id: i64, at: Timestamp, attempt: Attempt<'_>) -> Result<()> {
        let conn = self.pool.get()?;
        let (state, status, error, next, delivered_at) = match attempt {
            Attempt::Delivered { status } => ("delivered", Some(status), None, at, Some(at)),
            Attempt::Failed { status, error, retry_at: Some(next) } => ("queued", status, Some(error), next, None),
            Attempt::Failed { status, error, retry_at: None } => ("failed", status, Some(error), at, None),
        };
        conn.prepare_cached(
            "UPDATE webhook_deliveries SET state = ?2, attempts = attempts + 1, last_attempt_at = ?3, last_status = ?4, \
             last_error = COALESCE(?5, last_error), next_attempt_at = ?6, delivered_at = ?7 WHERE id = ?1",
        )?
        .execute(params![id, state, at, status, error, next, delivered_at])?;
        Ok(())
    }

    /// Delete events older than `before` with nothing queued (their deliveries go with them).
    ///
    /// # Errors
    /// A database failure.
    pub fn prune_webhook_events(&self, before: Timestamp) -> Result<usize> {
        Ok(self.pool.get()?.execute(
            "DELETE FROM webhook_events WHERE created_at < ?1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
             WHERE d.event_id = webhook_events.id AND d.state = 'queued')",
            [before],
        )?)
    }
}

impl OrgStore {
    /// Register an endpoint for these event kinds (checked by the caller), signed with `secret`.
    ///
    /// # Errors
    /// A database failure.
    pub fn create_webhook(&self, actor: &Actor, url: &str, events: &[String], secret: &str) -> Result<WebhookEndpoint> {
        let created_by = format!("{}:{}", actor.role, actor.name);
        let created_at = now_ms();
        self.write(|tx| {
            tx.tx
                .prepare_cached(scoped(
                    "INSERT INTO webhook_endpoints (org_id, url, secret, events, created_by, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                ))?
                .execute(params![self.org.id, url, secret, json!(events).to_string(), created_by, created_at])?;
            let id = tx.tx.last_insert_rowid();
            tx.audit(actor, "webhook.create", "webhook", Some(id as Id), json!({ "url": url, "events": events }))?;
            Ok(WebhookEndpoint { id, url: url.into(), events: events.to_vec(), created_by, created_at })
        })
    }

    /// The organization's endpoints, oldest first.
    ///
    /// # Errors
    /// A database failure.
    pub fn webhooks(&self) -> Result<Vec<WebhookEndpoint>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(scoped(
            "SELECT id, url, events, created_by, created_at FROM webhook_endpoints WHERE org_id = ?1 ORDER BY id",
        ))?;
        let rows = stmt.query_map([self.org.id], endpoint_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Remove an endpoint with its queued deliveries and its log. False when there is none.
    ///
    /// # Errors
    /// A database failure.
    pub fn delete_webhook(&self, actor: &Actor, id: i64) -> Result<bool> {
        self.write(|tx| {
            let deleted = tx
                .tx
                .prepare_cached(scoped("DELETE FROM webhook_endpoints WHERE org_id = ?1 AND id = ?2"))?
                .execute(params![self.org.id, id])?;
            if deleted == 1 {
                tx.audit(actor, "webhook.delete", "webhook", Some(id as Id), json!({}))?;
            }
            Ok(deleted == 1)
        })
    }

    /// An endpoint's delivery log, newest first, before delivery `before`; `None` when the
    /// organization has no such endpoint.
    ///
    /// # Errors
    /// A database failure.
    pub fn webhook_deliveries(
        &self,
        endpoint: i64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Option<Vec<WebhookDelivery>>> {
        let conn = self.conn()?;
        let exists: bool = conn
            .prepare_cached(scoped("SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE org_id = ?1 AND id = ?2)"))?
            .query_row(params![self.org.id, endpoint], |r| r.get(0))?;
        if !exists {
            return Ok(None);
        }
        let mut stmt = conn.prepare_cached(scoped(
            "SELECT d.id, d.event_id, v.kind, d.customer_id, d.state, d.attempts, d.last_status, d.last_error, \
             d.created_at, d.last_attempt_at, d.next_attempt_at, d.delivered_at \
             FROM webhook_deliveries d JOIN webhook_events v ON v.id = d.event_id \
             WHERE v.org_id = ?1 AND d.endpoint_id = ?2 AND d.id < ?3 ORDER BY d.id DESC LIMIT ?4",
        ))?;
        let rows = stmt.query_map(params![self.org.id, endpoint, before.unwrap_or(i64::MAX), limit], |r| {
            let state: String = r.get(4)?;
            Ok(WebhookDelivery {
                id: r.get(0)?,
                event: r.get(1)?,
                kind: r.get(2)?,
                customer: r.get::<_, Option<i64>>(3)?.map(|c| c as Id),
                attempts: r.get(5)?,
                last_status: r.get(6)?,
                last_error: r.get(7)?,
                created_at: r.get(8)?,
                last_attempt_at: r.get(9)?,
                next_attempt_at: if state == "queued" { r.get(10)? } else { None },
                delivered_at: r.get(11)?,
                state,
            })
        })?;
        Ok(Some(rows.collect::<rusqlite::Result<_>>()?))
    }
}

impl OrgTx<'_> {
    /// Whether an endpoint of the organization subscribes to `kind`. Read once per transaction.
    pub(super) fn listens(&self, kind: &str) -> Result<bool> {
        if self.webhook_kinds.get().is_none() {
            let kinds: BTreeSet<String> = self
                .tx
                .prepare_cached(scoped(
                    "SELECT DISTINCT k.value FROM webhook_endpoints e, json_each(e.events) k WHERE e.org_id = ?1",
                ))?
                .query_map([self.org], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let _ = self.webhook_kinds.set(kinds);
        }
        Ok(self.webhook_kinds.get().is_some_and(|k| k.contains(kind)))
    }

    /// Queue an event for every endpoint subscribed to its kind, in this transaction; `payload`
    /// is built only when one is. `customer` orders deliveries and lets erasure find the event.
    ///
    /// # Errors
    /// `payload`'s error; a database failure.
    pub fn webhook_event(
        &self,
        kind: &str,
        customer: Option<Id>,
        payload: impl FnOnce() -> Result<Value>,
    ) -> Result<()> {
        if !self.listens(kind)? {
            return Ok(());
        }
        let now = now_ms();
        let customer = customer.map(|c| c as i64);
        self.tx
            .prepare_cached(scoped(
                "INSERT INTO webhook_events (org_id, customer_id, kind, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            ))?
            .execute(params![self.org, customer, kind, payload()?.to_string(), now])?;
        let event = self.tx.last_insert_rowid();
        self.tx
            .prepare_cached(scoped(
                "INSERT INTO webhook_deliveries (endpoint_id, event_id, customer_id, next_attempt_at, created_at) \
                 SELECT e.id, ?2, ?3, ?4, ?4 FROM webhook_endpoints e WHERE e.org_id = ?1 \
                 AND EXISTS (SELECT 1 FROM json_each(e.events) WHERE value = ?5)",
            ))?
            .execute(params![self.org, event, customer, now, kind])?;
        Ok(())
    }

    /// Queue the event of a record written: `customer.created` or `customer.updated` (with the
    /// stored record and the one it replaced), or `interaction.added`. The payload carries every
    /// field the write set, old and new.
    ///
    /// # Errors
    /// A database failure.
    pub fn record_event(&self, before: Option<&Entity>, stored: &Entity) -> Result<()> {
        let (kind, interaction) = match (before, stored) {
            (None, Entity::Customer(_)) => (CUSTOMER_CREATED, None),
            (Some(_), Entity::Customer(_)) => (CUSTOMER_UPDATED, None),
            (_, Entity::Interaction(i)) => (INTERACTION_ADDED, Some(i.id)),
            _ => return Ok(()),
        };
        let customer = stored.customer_id();
        self.webhook_event(kind, customer, || {
            let (old, new) = (before.map(fields).unwrap_or_default(), fields(stored));
            let changes: Map<String, Value> = stored
                .changed_fields(before)
                .into_iter()
                .map(|f| {
                    let change = json!({ "old": old.get(&f).cloned().unwrap_or(Value::Null), "new": new.get(&f) });
                    (f, change)
                })
                .collect();
            let mut payload = json!({ "customer": customer, "changes": changes });
            if let Some(i) = interaction {
                payload["interaction"] = json!(i);
            }
            Ok(payload)
        })
    }

    /// A customer's current values of one scorer's scores (`"<plugin>.<name>"`: number or label),
    /// read before a save overwrites them; `None` when nobody listens for `score.changed`.
    pub(super) fn scores_before(&self, plugin: &str, id: Id) -> Result<Option<Map<String, Value>>> {
        if !self.listens(SCORE_CHANGED)? {
            return Ok(None);
        }
        let mut stmt =
            self.tx.prepare_cached("SELECT name, value, label FROM scores WHERE customer_id = ?1 AND plugin = ?2")?;
        let rows = stmt.query_map(params![id as i64, plugin], |r| {
            let (name, value, label): (String, Option<f64>, Option<String>) = (r.get(0)?, r.get(1)?, r.get(2)?);
            Ok((format!("{plugin}.{name}"), label.map_or_else(|| json!(value), Value::from)))
        })?;
        Ok(Some(rows.collect::<rusqlite::Result<_>>()?))
    }

    /// Queue `score.changed` with the values that differ from `before` (see [`Self::scores_before`]).
    pub(super) fn scores_changed(&self, id: Id, before: &Map<String, Value>, after: Map<String, Value>) -> Result<()> {
        let changes: Map<String, Value> = after
            .into_iter()
            .filter_map(|(name, new)| {
                let old = before.get(&name).cloned().unwrap_or(Value::Null);
                (old != new).then(|| (name, json!({ "old": old, "new": new })))
            })
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        self.webhook_event(SCORE_CHANGED, Some(id), || Ok(json!({ "customer": id, "changes": changes })))
    }

    /// Queue `job.finished` for a job that has just ended.
    pub(super) fn job_finished(&self, id: i64) -> Result<()> {
        self.webhook_event(JOB_FINISHED, None, || {
            let job = self
                .tx
                .prepare_cached(scoped(
                    "SELECT json_object('job', id, 'kind', kind, 'state', state, 'total', total, 'done', done, \
                     'error', error) FROM jobs WHERE org_id = ?1 AND id = ?2",
                ))?
                .query_row(params![self.org, id], |r| r.get::<_, String>(0))
                .optional()?
                .ok_or_else(|| StoreError::Invalid(format!("job {id} does not exist")))?;
            serde_json::from_str(&job).map_err(|e| StoreError::Invalid(format!("job {id}: {e}")))
        })
    }

    /// Replace the payload of every event about these customers (one person, with the profiles
    /// merged into them) with their id: erased means erased, in events not yet sent as well.
    pub(super) fn scrub_webhook_events(&self, ids: &[i64]) -> Result<()> {
        for &id in ids {
            self.tx
                .prepare_cached(scoped(
                    "UPDATE webhook_events SET payload = ?3 WHERE org_id = ?1 AND customer_id = ?2",
                ))?
                .execute(params![self.org, id, json!({ "customer": id, "erased": true }).to_string()])?;
        }
        Ok(())
    }
}

/// A record's fields as a JSON object (without the kind that wraps them).
fn fields(e: &Entity) -> Map<String, Value> {
    match serde_json::to_value(e) {
        Ok(Value::Object(wrapper)) => match wrapper.into_iter().next() {
            Some((_, Value::Object(fields))) => fields,
            _ => Map::new(),
        },
        _ => Map::new(),
    }
}
