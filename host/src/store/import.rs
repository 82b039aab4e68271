//! Bulk import of customers, interactions and distributors from NDJSON or CSV.
//!
//! Streaming: records are read one at a time from a `BufRead` and written in batches, each batch
//! one transaction with its audit row, so a crash mid-import leaves whole batches and memory stays
//! flat whatever the file's size. Idempotent: records are keyed by (source, external id); a
//! re-run of the same file creates and changes nothing. A bad record is reported with its line
//! number while the good ones land.

use std::collections::HashMap;
use std::io::BufRead;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{OrgStore, OrgTx, Result, StoreError, attributes_text, insert_interaction_row, now_ms, scoped};
use crate::model::{
    Actor, Attributes, Change, Consent, Customer, Entity, ExternalId, Id, Interaction, InteractionKind, Money,
    Operation, Origin, Ticket,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportKind {
    Customers,
    Interactions,
    Distributors,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    Ndjson,
    Csv,
}

/// What an import did. `accepted` counts good records, whether they created, changed or matched
/// what was stored; `rejected` names each bad one by its line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportReport {
    pub accepted: u64,
    pub rejected: Vec<RowError>,
    /// Records that landed with a policy's warning.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<RowWarning>,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowWarning {
    pub line: u64,
    pub warning: String,
}

/// What judges each customer and interaction record of an import before it is written: the write
/// pipeline's policies, so that bulk paths obey the same rules as single writes. It is called
/// inside the batch's transaction, once per record that would change something.
pub trait Gate {
    /// Judge a change; `change.after` may be patched and is what gets written. `Ok(warnings)`
    /// lets the record in, `Err(message)` rejects it (and nothing of it lands).
    fn judge(&mut self, change: &mut Change) -> std::result::Result<Vec<String>, String>;
    /// After a batch commits: the changes that landed, `after` carrying the stored ids.
    fn landed(&mut self, changes: Vec<Change>);
    /// Whether every change passes unjudged (no policies): lets the import take its fast path.
    fn passes_all(&self) -> bool {
        false
    }
}

/// No policies: the migration path (an owner's explicit, audited bypass) and the store's tests.
pub struct Ungated;

impl Gate for Ungated {
    fn judge(&mut self, _: &mut Change) -> std::result::Result<Vec<String>, String> {
        Ok(Vec::new())
    }
    fn landed(&mut self, _: Vec<Change>) {}
    fn passes_all(&self) -> bool {
        true
    }
}

/// Records per transaction.
pub const BATCH: usize = 2_000;

/// A reference to a record by its source system's id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExternalRef {
    source: String,
    external_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerRecord {
    source: String,
    external_id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    branch: Option<String>,
    /// The owning distributor, by its source system's id.
    #[serde(default)]
    distributor: Option<ExternalRef>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    consents: Vec<Consent>,
    #[serde(default)]
    attributes: Attributes,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InteractionRecord {
    source: String,
    /// Required: it is what makes re-running an import change nothing.
    external_id: String,
    customer: ExternalRef,
    kind: InteractionKind,
    #[serde(default)]
    channel: String,
    occurred_at: TimeInput,
    #[serde(default)]
    amount_minor: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    attributes: Attributes,
    #[serde(default)]
    ticket: Option<Ticket>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DistributorRecord {
    source: String,
    external_id: String,
    name: String,
    /// The sponsor's external id, in the same source; imported earlier or in the same file.
    #[serde(default)]
    sponsor: Option<String>,
    #[serde(default)]
    rank: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    attributes: Attributes,
}

/// RFC 3339 text (`"1997-01-01T00:00:00Z"`), a date, or unix milliseconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TimeInput {
    Millis(i64),
    Text(String),
}

impl TimeInput {
    fn millis(&self) -> std::result::Result<i64, String> {
        match self {
            TimeInput::Millis(ms) => Ok(*ms),
            // CSV cells are text: unix milliseconds may arrive as digits in a string.
            TimeInput::Text(s) => {
                s.trim().parse::<i64>().ok().or_else(|| super::filter::parse_time(s)).ok_or_else(|| {
                    format!(
                        "`occurred_at` {s:?} is not an RFC 3339 time like 1997-01-01T00:00:00Z, nor unix milliseconds"
                    )
                })
            }
        }
    }
}

/// One record as read, or why its line is rejected.
type Parsed = std::result::Result<Raw, String>;

/// A record not yet decoded into its kind's type: an NDJSON line is decoded straight from its
/// text (one pass, no intermediate JSON tree); a CSV row arrives as the object it maps to.
enum Raw {
    Line(String),
    Object(Value),
}

impl Raw {
    fn decode<T: serde::de::DeserializeOwned>(self) -> std::result::Result<T, String> {
        match self {
            Raw::Line(text) => serde_json::from_str(&text).map_err(|e| match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => format!("invalid JSON: {e}"),
                _ => e.to_string(),
            }),
            Raw::Object(value) => serde_json::from_value(value).map_err(|e| e.to_string()),
        }
    }
}

/// Reads records as JSON objects, whatever the format, with their line numbers.
enum Records<R: BufRead> {
    Ndjson { reader: R, line: u64, buf: String },
    Csv { reader: csv::Reader<R>, headers: Vec<String>, record: csv::StringRecord },
}

impl<R: BufRead> Records<R> {
    fn new(reader: R, format: ImportFormat) -> Result<Self> {
        Ok(match format {
            ImportFormat::Ndjson => Records::Ndjson { reader, line: 0, buf: String::new() },
            ImportFormat::Csv => {
                let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(reader);
                let headers = reader
                    .headers()
                    .map_err(|e| StoreError::Invalid(format!("cannot read the CSV header line: {e}")))?
                    .iter()
                    .map(|h| h.trim().to_owned())
                    .collect();
                Records::Csv { reader, headers, record: csv::StringRecord::new() }
            }
        })
    }

    /// The next record: `None` at the end; an I/O error ends the import.
    fn next(&mut self) -> Result<Option<(u64, Parsed)>> {
        match self {
            Records::Ndjson { reader, line, buf } => loop {
                buf.clear();
                let read = reader
                    .read_line(buf)
                    .map_err(|e| StoreError::Invalid(format!("reading line {}: {e}", *line + 1)))?;
                if read == 0 {
                    return Ok(None);
                }
                *line += 1;
                let text = buf.trim();
                if text.is_empty() {
                    continue;
                }
                let parsed = if text.starts_with('{') {
                    Ok(Raw::Line(text.to_owned()))
                } else {
                    Err("each line must be a JSON object".to_owned())
                };
                return Ok(Some((*line, parsed)));
            },
            Records::Csv { reader, headers, record } => {
                let more = match reader.read_record(record) {
                    Ok(more) => more,
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line());
                        return match e.kind() {
                            csv::ErrorKind::Io(_) => Err(StoreError::Invalid(format!("reading CSV: {e}"))),
                            _ => Ok(Some((line, Err(format!("invalid CSV: {e}"))))),
                        };
                    }
                };
                if !more {
                    return Ok(None);
                }
                let line = record.position().map_or(0, |p| p.line());
                Ok(Some((line, csv_object(headers, record).map(Raw::Object))))
            }
        }
    }
}

/// A CSV row as the JSON object its NDJSON twin would be: `customer_source`/`customer_external_id`
/// become `customer` (and `distributor_*` become `distributor`), `attributes.<key>` columns and unknown columns become attributes, numbers
/// where a number is expected, empty cells are absent.
fn csv_object(headers: &[String], record: &csv::StringRecord) -> std::result::Result<Value, String> {
    const NUMBERS: &[&str] = &["amount_minor"];
    const KNOWN: &[&str] = &[
        "source",
        "external_id",
        "name",
        "email",
        "phone",
        "branch",
        "distributor",
        "kind",
        "channel",
        "occurred_at",
        "amount_minor",
        "currency",
        "subject",
        "body",
        "sponsor",
        "rank",
        "status",
        "attributes",
        "tags",
    ];
    let mut object = Map::new();
    let mut attributes = Map::new();
    let mut customer = Map::new();
    let mut distributor = Map::new();
    for (header, cell) in headers.iter().zip(record.iter()) {
        if cell.is_empty() {
            continue;
        }
        match header.as_str() {
            "customer_source" => drop(customer.insert("source".into(), cell.into())),
            "customer_external_id" => drop(customer.insert("external_id".into(), cell.into())),
            "distributor_source" => drop(distributor.insert("source".into(), cell.into())),
            "distributor_external_id" => drop(distributor.insert("external_id".into(), cell.into())),
            "attributes" => match serde_json::from_str::<Value>(cell) {
                Ok(Value::Object(map)) => attributes.extend(map),
                _ => return Err("the `attributes` column must hold a JSON object".into()),
            },
            "tags" => {
                drop(object.insert("tags".into(), cell.split(['|', ';']).map(|t| Value::from(t.trim())).collect()))
            }
            h if NUMBERS.contains(&h) => {
                let n: i64 = cell.trim().parse().map_err(|_| format!("`{h}` must be a whole number, got {cell:?}"))?;
                object.insert(h.into(), n.into());
            }
            h if KNOWN.contains(&h) => drop(object.insert(h.into(), cell.into())),
            h => drop(attributes.insert(h.strip_prefix("attributes.").unwrap_or(h).into(), cell.into())),
        }
    }
    if !customer.is_empty() {
        object.insert("customer".into(), Value::Object(customer));
    }
    if !distributor.is_empty() {
        object.insert("distributor".into(), Value::Object(distributor));
    }
    if !attributes.is_empty() {
        object.insert("attributes".into(), Value::Object(attributes));
    }
    Ok(Value::Object(object))
}

impl OrgStore {
    /// Import records of one kind. `progress` is called after each batch with the lines read.
    pub fn import(
        &self,
        actor: &Actor,
        kind: ImportKind,
        format: ImportFormat,
        reader: impl BufRead,
        progress: impl FnMut(u64),
    ) -> Result<ImportReport> {
        self.import_gated(actor, kind, format, reader, progress, &mut Ungated)
    }

    /// Import with every record judged by `gate` (see [`Gate`]).
    pub fn import_gated(
        &self,
        actor: &Actor,
        kind: ImportKind,
        format: ImportFormat,
        reader: impl BufRead,
        mut progress: impl FnMut(u64),
        gate: &mut dyn Gate,
    ) -> Result<ImportReport> {
        let mut records = Records::new(reader, format)?;
        let mut report = ImportReport::default();
        let mut batch = Vec::with_capacity(BATCH);
        let mut last_line = 0;
        loop {
            let next = records.next()?;
            let done = next.is_none();
            if let Some((line, parsed)) = next {
                last_line = line;
                match parsed {
                    Ok(value) => batch.push((line, value)),
                    Err(error) => report.rejected.push(RowError { line, error }),
                }
            }
            if batch.len() >= BATCH || (done && !batch.is_empty()) {
                let rows = std::mem::take(&mut batch);
                let landed = self.write(|tx| tx.import_batch(actor, kind, rows, &mut report, &mut *gate))?;
                if !landed.is_empty() {
                    gate.landed(landed);
                }
                progress(last_line);
            }
            if done {
                progress(last_line);
                // Lines that do not parse are rejected as they are read, the others when their
                // batch is written: put them back in file order, as a person reads the report.
                report.rejected.sort_by_key(|r| r.line);
                report.warnings.sort_by_key(|w| w.line);
                return Ok(report);
            }
        }
    }
}

/// The outcome of writing one record.
enum Outcome {
    Created(Id),
    Updated,
    Unchanged,
}

impl OrgTx<'_> {
    fn import_batch(
        &self,
        actor: &Actor,
        kind: ImportKind,
        rows: Vec<(u64, Raw)>,
        report: &mut ImportReport,
        gate: &mut dyn Gate,
    ) -> Result<Vec<Change>> {
        let (first, last) = (rows.first().map_or(0, |r| r.0), rows.last().map_or(0, |r| r.0));
        let mut created = Vec::new();
        let mut updated = Vec::new();
        let mut customers: HashMap<(String, String), i64> = HashMap::new();
        let mut landed = Vec::new();
        let warnings_before = report.warnings.len();
        for (line, value) in rows {
            let mut judged =
                Judged { gate: &mut *gate, actor, line, warnings: &mut report.warnings, landed: &mut landed };
            let outcome = match kind {
                // A customer spans several tables: a savepoint keeps a rejected one from leaving
                // part of itself behind. Interactions and distributors are one statement each.
                ImportKind::Customers => value
                    .decode()
                    .and_then(|r| self.all_or_nothing(|| self.import_customer(r, &mut updated, &mut judged))),
                ImportKind::Interactions => {
                    value.decode().and_then(|r| self.import_interaction(r, &mut customers, &mut judged))
                }
                ImportKind::Distributors => value.decode().and_then(|r| self.import_distributor(r)),
            };
            match outcome {
                Ok(Outcome::Created(id)) => {
                    report.created += 1;
                    created.push(id);
                }
                Ok(Outcome::Updated) => report.updated += 1,
                Ok(Outcome::Unchanged) => report.unchanged += 1,
                Err(error) => {
                    report.rejected.push(RowError { line, error });
                    continue;
                }
            }
            report.accepted += 1;
        }
        if !created.is_empty() || !updated.is_empty() {
            let entity = match kind {
                ImportKind::Customers => "customer",
                ImportKind::Interactions => "interaction",
                ImportKind::Distributors => "distributor",
            };
            let warnings = &report.warnings[warnings_before..];
            self.audit(
                actor,
                "import",
                entity,
                None,
                json!({ "lines": [first, last], "created": created, "updated": updated, "warnings": warnings }),
            )?;
        }
        Ok(landed)
    }

    fn all_or_nothing<T>(&self, f: impl FnOnce() -> std::result::Result<T, String>) -> std::result::Result<T, String> {
        self.tx.execute_batch("SAVEPOINT record").map_err(|e| e.to_string())?;
        let result = f();
        let end = if result.is_ok() { "RELEASE record" } else { "ROLLBACK TO record; RELEASE record" };
        self.tx.execute_batch(end).map_err(|e| e.to_string())?;
        result
    }

    fn lookup_customer(&self, source: &str, external_id: &str) -> rusqlite::Result<Option<i64>> {
        self.tx
            .prepare_cached(scoped(
                "SELECT customer_id FROM customer_ids WHERE org_id = ?1 AND source = ?2 AND external_id = ?3",
            ))?
            .query_row(params![self.org, source, external_id], |r| r.get(0))
            .optional()
    }

    fn lookup_distributor(&self, source: &str, external_id: &str) -> rusqlite::Result<Option<i64>> {
        self.tx
            .prepare_cached(scoped(
                "SELECT id FROM distributors WHERE org_id = ?1 AND source = ?2 AND external_id = ?3",
            ))?
            .query_row(params![self.org, source, external_id], |r| r.get(0))
            .optional()
    }

    fn import_customer(
        &self,
        r: CustomerRecord,
        updated: &mut Vec<Value>,
        judged: &mut Judged<'_>,
    ) -> std::result::Result<Outcome, String> {
        let sql = |e: rusqlite::Error| e.to_string();
        if r.source.is_empty() || r.external_id.is_empty() {
            return Err("`source` and `external_id` must not be empty".into());
        }
        let distributor = match &r.distributor {
            Some(d) => Some(self.lookup_distributor(&d.source, &d.external_id).map_err(sql)?.ok_or_else(|| {
                format!("distributor {}:{} does not exist (import distributors first)", d.source, d.external_id)
            })? as Id),
            None => None,
        };
        let existing = self.lookup_customer(&r.source, &r.external_id).map_err(sql)?;
        // An import adds and updates; it never deletes. A missing field keeps what is stored,
        // tags and consents are added to the stored ones, attributes are merged key by key: after
        // a merge, each source's re-import must not wipe what the other sources contributed.
        let incoming = |base: Customer| {
            let mut tags = base.tags.clone();
            tags.extend(r.tags.iter().cloned());
            let mut consents = base.consents.clone();
            consents.extend(r.consents.iter().filter(|k| !base.consents.contains(k)).cloned());
            let mut attributes = base.attributes.clone();
            attributes.extend(r.attributes.clone());
            Customer {
                name: r.name.clone().or(base.name.clone()),
                email: r.email.clone().or(base.email.clone()),
                phone: r.phone.clone().or(base.phone.clone()),
                branch: r.branch.clone().or(base.branch.clone()),
                distributor: distributor.or(base.distributor),
                tags,
                consents,
                attributes,
                ..base
            }
        };
        match existing {
            None => {
                let c = self.normalized(incoming(Customer {
                    external_ids: vec![ExternalId { source: r.source.clone(), id: r.external_id.clone() }],
                    ..Customer::default()
                }));
                let mut change = judged.judge(Operation::Create, None, Entity::Customer(c))?;
                let Some(Entity::Customer(c)) = &change.after else {
                    return Err("a policy replaced the customer".into());
                };
                let stored = self.insert_customer(c).map_err(|e| e.to_string())?;
                change.after = Some(Entity::Customer(stored.clone()));
                self.record_event(None, change.after.as_ref().expect("set above")).map_err(|e| e.to_string())?;
                judged.land(change);
                Ok(Outcome::Created(stored.id))
            }
            Some(id) => {
                let before =
                    self.customer(id as Id).map_err(|e| e.to_string())?.ok_or("customer vanished mid-import")?;
                let after = self.normalized(incoming(before.clone()));
                if same_customer(&before, &after) {
                    return Ok(Outcome::Unchanged);
                }
                let mut change =
                    judged.judge(Operation::Update, Some(Entity::Customer(before.clone())), Entity::Customer(after))?;
                let Some(Entity::Customer(after)) = &change.after else {
                    return Err("a policy replaced the customer".into());
                };
                let after = self.normalized(after.clone());
                self.update_customer(&after).map_err(|e| e.to_string())?;
                updated.push(json!({ "id": id, "before": before, "after": after }));
                change.after =
                    Some(Entity::Customer(self.customer(id as Id).map_err(|e| e.to_string())?.unwrap_or(after)));
                self.record_event(change.before.as_ref(), change.after.as_ref().expect("set above"))
                    .map_err(|e| e.to_string())?;
                judged.land(change);
                Ok(Outcome::Updated)
            }
        }
    }

    fn import_interaction(
        &self,
        r: InteractionRecord,
        customers: &mut HashMap<(String, String), i64>,
        judged: &mut Judged<'_>,
    ) -> std::result::Result<Outcome, String> {
        let sql = |e: rusqlite::Error| e.to_string();
        let occurred_at = r.occurred_at.millis()?;
        let amount = match (r.amount_minor, r.currency) {
            (Some(amount_minor), Some(currency))
                if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_alphabetic()) =>
            {
                Some(Money { amount_minor, currency: currency.to_ascii_uppercase() })
            }
            (Some(_), Some(c)) => {
                return Err(format!("`currency` must be an ISO 4217 code like USD or THB, got {c:?}"));
            }
            (Some(_), None) => return Err("`amount_minor` needs a `currency`".into()),
            (None, Some(_)) => return Err("`currency` without an `amount_minor`".into()),
            (None, None) => None,
        };
        if r.ticket.is_some() && r.kind != InteractionKind::Ticket {
            return Err("only a `ticket` interaction may carry a `ticket`".into());
        }
        let key = (r.customer.source.clone(), r.customer.external_id.clone());
        let customer = match customers.get(&key) {
            Some(&id) => id,
            None => {
                let id = self
                    .lookup_customer(&key.0, &key.1)
                    .map_err(sql)?
                    .ok_or_else(|| format!("customer {}:{} does not exist (import customers first)", key.0, key.1))?;
                customers.insert(key, id);
                id
            }
        };
        let ticket = match (&r.kind, r.ticket) {
            (InteractionKind::Ticket, None) => Some(Ticket {
                status: crate::model::TicketStatus::Open,
                category: None,
                due_at: None,
                resolution: None,
                closed_at: None,
            }),
            (_, t) => t,
        };
        let interaction = Interaction {
            id: 0,
            customer: customer as Id,
            kind: r.kind,
            channel: r.channel,
            source: r.source,
            external_id: Some(r.external_id),
            occurred_at,
            amount,
            subject: r.subject,
            body: r.body,
            attributes: r.attributes,
            ticket,
        };
        let ext = interaction.external_id.clone().unwrap_or_default();
        let sql_text = format!(
            "SELECT {} FROM interactions i WHERE i.org_id = ?1 AND i.source = ?2 AND i.external_id = ?3",
            super::INTERACTION_COLUMNS
        );
        let find = || {
            self.tx
                .prepare_cached(scoped(&sql_text))?
                .query_row(params![self.org, interaction.source, ext], super::interaction_from_row)
                .optional()
        };
        // Ungated, insert unless (source, external id) is already there and only then look at
        // what is stored (one statement for the common case). Gated, policies judge only
        // interactions that would be new.
        let stored = if judged.gate.passes_all() {
            if insert_interaction_row(self.tx, self.org, &interaction, true).map_err(sql)? == 1 {
                let id = self.tx.last_insert_rowid() as Id;
                if self.listens(super::INTERACTION_ADDED).map_err(|e| e.to_string())? {
                    let stored = Entity::Interaction(Interaction { id, ..interaction });
                    self.record_event(None, &stored).map_err(|e| e.to_string())?;
                }
                return Ok(Outcome::Created(id));
            }
            find().map_err(sql)?.ok_or("interaction vanished mid-import")?
        } else {
            match find().map_err(sql)? {
                Some(stored) => stored,
                None => {
                    let mut change = judged.judge(Operation::Create, None, Entity::Interaction(interaction))?;
                    let Some(Entity::Interaction(mut i)) = change.after.take() else {
                        return Err("a policy replaced the interaction".into());
                    };
                    i.customer = customer as Id;
                    insert_interaction_row(self.tx, self.org, &i, false).map_err(sql)?;
                    i.id = self.tx.last_insert_rowid() as Id;
                    let id = i.id;
                    change.after = Some(Entity::Interaction(i));
                    self.record_event(None, change.after.as_ref().expect("set above")).map_err(|e| e.to_string())?;
                    judged.land(change);
                    return Ok(Outcome::Created(id));
                }
            }
        };
        let id = stored.id;
        if (Interaction { id: 0, ..stored }) == interaction {
            return Ok(Outcome::Unchanged);
        }
        Err(format!(
            "interaction {}:{ext} (id {id}) was already imported with other values; interactions are facts and \
             are not overwritten by a re-import",
            interaction.source
        ))
    }

    fn import_distributor(&self, r: DistributorRecord) -> std::result::Result<Outcome, String> {
        let sql = |e: rusqlite::Error| e.to_string();
        let status = r.status.clone().unwrap_or_else(|| "active".into());
        if !matches!(status.as_str(), "active" | "inactive" | "terminated") {
            return Err(format!("`status` must be active, inactive or terminated, got {status:?}"));
        }
        let sponsor = match &r.sponsor {
            Some(ext) if ext == &r.external_id => return Err("a distributor cannot sponsor themself".into()),
            Some(ext) => Some(
                self.lookup_distributor(&r.source, ext)
                    .map_err(sql)?
                    .ok_or_else(|| format!("sponsor {}:{ext} does not exist (sponsors must come first)", r.source))?,
            ),
            None => None,
        };
        let existing = self.lookup_distributor(&r.source, &r.external_id).map_err(sql)?;
        if let (Some(id), Some(sponsor)) = (existing, sponsor)
            && self.in_downline(id, sponsor).map_err(sql)?
        {
            return Err(format!(
                "sponsor {} is in this distributor's own downline: that would make a cycle",
                r.sponsor.unwrap_or_default()
            ));
        }
        let attributes = attributes_text(&r.attributes);
        match existing {
            None => {
                let now = now_ms();
                self.tx
                    .prepare_cached(scoped(
                        "INSERT INTO distributors (org_id, source, external_id, name, sponsor_id, rank, status, branch, attributes, \
                         created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
                    ))
                    .map_err(sql)?
                    .execute(params![self.org, r.source, r.external_id, r.name, sponsor, r.rank, status, r.branch, attributes, now])
                    .map_err(sql)?;
                Ok(Outcome::Created(self.tx.last_insert_rowid() as Id))
            }
            Some(id) => {
                let changed = self
                    .tx
                    .prepare_cached(scoped(
                        "UPDATE distributors SET name = ?3, sponsor_id = ?4, rank = ?5, status = ?6, branch = ?7, attributes = ?8, \
                         updated_at = ?9 WHERE org_id = ?1 AND id = ?2 AND (name, sponsor_id, rank, status, branch, attributes) \
                         IS NOT (?3, ?4, ?5, ?6, ?7, ?8)",
                    ))
                    .map_err(sql)?
                    .execute(params![self.org, id, r.name, sponsor, r.rank, status, r.branch, attributes, now_ms()])
                    .map_err(sql)?;
                Ok(if changed == 0 { Outcome::Unchanged } else { Outcome::Updated })
            }
        }
    }

    /// Whether `candidate` sits below `id` in the sponsor tree.
    fn in_downline(&self, id: i64, candidate: i64) -> rusqlite::Result<bool> {
        self.tx
            .prepare_cached(scoped(
                "WITH RECURSIVE tree(id) AS (SELECT ?2 UNION SELECT d.id FROM distributors d JOIN tree ON d.sponsor_id = tree.id \
                 WHERE d.org_id = ?1) SELECT EXISTS (SELECT 1 FROM tree WHERE id = ?3)",
            ))?
            .query_row(params![self.org, id, candidate], |r| r.get(0))
    }
}

impl Judged<'_> {
    fn land(&mut self, change: Change) {
        if !self.gate.passes_all() {
            self.landed.push(change);
        }
    }
}

/// One record's passage through the gate.
struct Judged<'a> {
    gate: &'a mut dyn Gate,
    actor: &'a Actor,
    line: u64,
    warnings: &'a mut Vec<RowWarning>,
    landed: &'a mut Vec<Change>,
}

impl Judged<'_> {
    fn judge(
        &mut self,
        operation: Operation,
        before: Option<Entity>,
        after: Entity,
    ) -> std::result::Result<Change, String> {
        let changed_fields = if self.gate.passes_all() { Vec::new() } else { after.changed_fields(before.as_ref()) };
        let mut change = Change {
            operation,
            before,
            after: Some(after),
            changed_fields,
            actor: self.actor.clone(),
            origin: Origin::Import,
            depth: 0,
            at: now_ms(),
        };
        if self.gate.passes_all() {
            return Ok(change);
        }
        let warnings = self.gate.judge(&mut change)?;
        self.warnings.extend(warnings.into_iter().map(|warning| RowWarning { line: self.line, warning }));
        Ok(change)
    }
}

fn same_customer(a: &Customer, b: &Customer) -> bool {
    a.name == b.name
        && a.email == b.email
        && a.phone == b.phone
        && a.branch == b.branch
        && a.distributor == b.distributor
        && a.tags == b.tags
        && a.consents == b.consents
        && a.attributes == b.attributes
}
