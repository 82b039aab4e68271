//! Imports: NDJSON or CSV records, streamed, each parsed into the same [`Write`] a single write
//! is and applied through the one write path a batch at a time ([`BATCH`] records, one
//! transaction), so every record meets the organization's policies (other CRMs let bulk paths
//! skip business logic, a known complaint). Parsing here reads no data; what a record means
//! against the store (create or update, which customer) the write's kind works out when it is
//! judged. Idempotent: records are keyed by (source, external id), and a re-run of the same file
//! creates and changes nothing. A bad record is reported with its line while the good ones land;
//! memory stays flat whatever the file's size. An owner may bypass policies for a migration,
//! explicitly and audited.

use std::collections::HashSet;
use std::io::BufRead;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::writes::{CustomerRecord, DistributorRecord, ExternalRef, Key, Write};
use super::{Batch, Chain, Judging, Pipeline, PipelineError, Result};
use crate::model::{Actor, Attributes, Interaction, InteractionKind, Money, Operation, Origin, Role, Ticket};

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

/// Records per transaction.
pub const BATCH: usize = 2_000;

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
                s.trim().parse::<i64>().ok().or_else(|| crate::store::filter::parse_time(s)).ok_or_else(|| {
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
                    .map_err(|e| PipelineError::Invalid(format!("cannot read the CSV header line: {e}")))?
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
                    .map_err(|e| PipelineError::Invalid(format!("reading line {}: {e}", *line + 1)))?;
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
                        let line = e.position().map_or(0, csv::Position::line);
                        return match e.kind() {
                            csv::ErrorKind::Io(_) => Err(PipelineError::Invalid(format!("reading CSV: {e}"))),
                            _ => Ok(Some((line, Err(format!("invalid CSV: {e}"))))),
                        };
                    }
                };
                if !more {
                    return Ok(None);
                }
                let line = record.position().map_or(0, csv::Position::line);
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
                drop(object.insert("tags".into(), cell.split(['|', ';']).map(|t| Value::from(t.trim())).collect()));
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

impl ImportKind {
    /// The write a record asks for; `Err` says why its line is rejected.
    fn write(self, raw: Raw) -> std::result::Result<Write, String> {
        Ok(match self {
            ImportKind::Customers => Write::ImportCustomer(raw.decode::<CustomerRecord>()?),
            ImportKind::Distributors => Write::ImportDistributor(raw.decode::<DistributorRecord>()?),
            ImportKind::Interactions => {
                let r: InteractionRecord = raw.decode()?;
                let amount = match (r.amount_minor, r.currency) {
                    (Some(amount_minor), Some(currency)) => Some(Money { amount_minor, currency }),
                    (Some(_), None) => return Err("`amount_minor` needs a `currency`".into()),
                    (None, Some(_)) => return Err("`currency` without an `amount_minor`".into()),
                    (None, None) => None,
                };
                Write::ImportInteraction {
                    customer: r.customer,
                    interaction: Interaction {
                        id: 0,
                        customer: 0,
                        kind: r.kind,
                        channel: r.channel,
                        source: r.source,
                        external_id: Some(r.external_id),
                        occurred_at: r.occurred_at.millis()?,
                        amount,
                        subject: r.subject,
                        body: r.body,
                        attributes: r.attributes,
                        ticket: r.ticket,
                    },
                }
            }
        })
    }
}

/// Records read but not yet applied, with the source keys they write.
#[derive(Default)]
struct Pending {
    lines: Vec<u64>,
    writes: Vec<Write>,
    written: HashSet<Key>,
}

impl Pipeline {
    /// Import records of one kind through the organization's policies. With `bypass_policies`
    /// (owners only) no policy judges the records, as a migration needs, and the bypass is
    /// audited; run a rescore job afterwards. `progress` is called after each batch with the
    /// lines read.
    ///
    /// # Errors
    /// The caller may not bypass policies, the input cannot be read, or a batch's transaction
    /// failed (the batches before it stay). A bad record is not an error: the report names it.
    #[allow(clippy::too_many_arguments)]
    pub fn import(
        &self,
        org: &str,
        actor: &Actor,
        kind: ImportKind,
        format: ImportFormat,
        reader: impl BufRead,
        mut progress: impl FnMut(u64),
        bypass_policies: bool,
    ) -> Result<ImportReport> {
        let store = self.org(org)?;
        let judging = if bypass_policies {
            if actor.role < Role::Owner {
                return Err(PipelineError::Invalid(format!(
                    "only an owner may import without policies (you are `{}`)",
                    actor.role
                )));
            }
            store.write(|tx| tx.audit(actor, "import.bypass_policies", "import", None, json!({ "kind": kind })))?;
            Judging::Bypass
        } else {
            Judging::Policies
        };
        let mut records = Records::new(reader, format)?;
        let mut report = ImportReport::default();
        let mut batch = Pending::default();
        let mut last_line = 0;
        loop {
            let next = records.next()?;
            let done = next.is_none();
            if let Some((line, parsed)) = next {
                last_line = line;
                match parsed.and_then(|raw| kind.write(raw)) {
                    Ok(write) => {
                        let keys = write.kind().keys();
                        // A record that needs (or writes again) one this batch writes lands after it.
                        if keys.writes.iter().chain(&keys.needs).any(|k| batch.written.contains(k)) {
                            self.import_batch(&store, actor, &mut batch, &mut report, judging)?;
                        }
                        batch.written.extend(keys.writes);
                        batch.lines.push(line);
                        batch.writes.push(write);
                    }
                    Err(error) => report.rejected.push(RowError { line, error }),
                }
            }
            if batch.writes.len() >= BATCH || (done && !batch.writes.is_empty()) {
                self.import_batch(&store, actor, &mut batch, &mut report, judging)?;
                progress(last_line);
            }
            if done {
                progress(last_line);
                // Lines that do not parse are rejected as they are read, the others when their
                // batch is applied: put them back in file order, as a person reads the report.
                report.rejected.sort_by_key(|r| r.line);
                report.warnings.sort_by_key(|w| w.line);
                return Ok(report);
            }
        }
    }

    /// Apply one batch: judged, committed in one transaction, then after hooks and rescoring.
    fn import_batch(
        &self,
        org: &crate::store::OrgStore,
        actor: &Actor,
        batch: &mut Pending,
        report: &mut ImportReport,
        judging: Judging,
    ) -> Result<()> {
        let Pending { lines, writes, .. } = std::mem::take(batch);
        let mut chain = Chain::default();
        let at = Batch { org, actor, origin: Origin::Import, depth: 0 };
        let results = self.apply_all(at, &writes, &mut chain, judging);
        let results = match results {
            Ok(results) => results,
            Err(e) => {
                self.flush_chain(org, &mut chain)?;
                return Err(e);
            }
        };
        for (line, result) in lines.into_iter().zip(results) {
            match result {
                Ok(None) => report.unchanged += 1,
                Ok(Some(landed)) => {
                    match landed.operation {
                        Operation::Create => report.created += 1,
                        _ => report.updated += 1,
                    }
                    report.warnings.extend(
                        landed
                            .warnings
                            .into_iter()
                            .map(|w| RowWarning { line, warning: format!("{}: {}", w.plugin, w.message) }),
                    );
                }
                Err(e) => {
                    report.rejected.push(RowError { line, error: e.to_string() });
                    continue;
                }
            }
            report.accepted += 1;
        }
        if judging == Judging::Policies {
            let touched = std::mem::take(&mut chain.touched);
            self.rescore_touched(org, &touched, &mut chain.traces);
        }
        self.flush_chain(org, &mut chain)
    }
}
