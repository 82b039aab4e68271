//! What the write pipeline keeps per organization: installed plugins and their versions, the
//! component bytes (once per content hash, whoever installed them), execution traces, the recent
//! changes dry-runs replay, fitted scorer models, jobs and the outbox.
//!
//! Traces and the change log are bounded: each keeps its newest rows per plugin (per
//! organization for the change log), pruned as rows are added. Both are tagged with the customer
//! they concern, so that erasing a customer erases them too (see `privacy`).

use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{OrgStore, OrgTx, Result, Store, StoreError, now_ms, scoped};
use crate::model::{Actor, Change, Id, Timestamp};

/// Traces kept per plugin and organization.
pub const TRACE_RETENTION: i64 = 2_000;
/// Changes kept per organization for dry-runs.
pub const CHANGE_RETENTION: i64 = 5_000;
/// Prune every this many inserts (by row id), so pruning costs one statement per batch of rows.
const PRUNE_EVERY: i64 = 64;

/// What a failing policy does to the write it judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// The write fails with the plugin's error (the default: a broken rule must not let
    /// everything through).
    #[default]
    Closed,
    /// The plugin is skipped with a warning and the write goes on.
    Open,
}

impl FailureMode {
    fn as_str(self) -> &'static str {
        match self {
            FailureMode::Closed => "closed",
            FailureMode::Open => "open",
        }
    }
}

/// One installed plugin of an organization.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginRow {
    pub name: String,
    pub world: String,
    pub enabled: bool,
    /// Order among the organization's plugins of the same world (policies run in this order).
    pub position: i64,
    pub failure_mode: FailureMode,
    pub config: Value,
    pub active_version: u32,
    /// A version that runs beside the active one on live writes without affecting them.
    pub shadow_version: Option<u32>,
    /// Why the host disabled it, when it did (repeated failures).
    pub disabled_reason: Option<String>,
}

/// One installed version of a plugin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionRow {
    pub version: u32,
    /// sha256 of the component's bytes, hex.
    pub hash: String,
    /// The version its author gave it, when the upload named one.
    pub author_version: Option<String>,
    pub installed_at: Timestamp,
    pub installed_by: String,
}

/// A component to install: its bytes and what admission found in them.
pub struct NewComponent<'a> {
    pub hash: &'a str,
    pub bytes: &'a [u8],
    pub world: &'a str,
    pub contract: &'a str,
    pub config_schema: Option<&'a str>,
    pub author_version: Option<&'a str>,
}

/// One plugin call, as the execution trace keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceRecord {
    #[serde(default)]
    pub id: i64,
    pub plugin: String,
    pub version: u32,
    pub world: String,
    /// `before`, `after`, `shadow`, `describe`, `fit`, `score`, `report`.
    pub hook: String,
    /// sha256 of the change the call judged: which change, without its content.
    pub change_digest: Option<String>,
    pub customer: Option<Id>,
    pub outcome: TraceOutcome,
    pub summary: Option<String>,
    pub duration_us: u64,
    pub fuel: Option<u64>,
    pub logs: Value,
    pub error: Option<String>,
    pub at: Timestamp,
}

/// What one plugin call came to, as its trace row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceOutcome {
    /// A call that returned what its hook asks for (describe, fit, score, report).
    Ok,
    /// The call failed: trapped, hit a limit, or returned what the host refuses.
    Error,
    /// Not called: the plugin was skipped for this batch (an earlier call of it failed).
    Skipped,
    /// A policy's `before` decisions.
    Allow,
    Warn,
    Deny,
    Patch,
    /// A policy's `after`: the follow-up actions it asked for (maybe none).
    Actions,
    /// A shadow version's decision beside the active one's.
    Agree,
    Disagree,
}

impl TraceOutcome {
    pub const ALL: [TraceOutcome; 10] = [
        TraceOutcome::Ok,
        TraceOutcome::Error,
        TraceOutcome::Skipped,
        TraceOutcome::Allow,
        TraceOutcome::Warn,
        TraceOutcome::Deny,
        TraceOutcome::Patch,
        TraceOutcome::Actions,
        TraceOutcome::Agree,
        TraceOutcome::Disagree,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TraceOutcome::Ok => "ok",
            TraceOutcome::Error => "error",
            TraceOutcome::Skipped => "skipped",
            TraceOutcome::Allow => "allow",
            TraceOutcome::Warn => "warn",
            TraceOutcome::Deny => "deny",
            TraceOutcome::Patch => "patch",
            TraceOutcome::Actions => "actions",
            TraceOutcome::Agree => "agree",
            TraceOutcome::Disagree => "disagree",
        }
    }
}

impl std::fmt::Display for TraceOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tests and callers compare with the name a person reads in the trace.
impl PartialEq<&str> for TraceOutcome {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl rusqlite::types::ToSql for TraceOutcome {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for TraceOutcome {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        TraceOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == text)
            .ok_or_else(|| rusqlite::types::FromSqlError::Other(format!("unknown trace outcome {text:?}").into()))
    }
}

/// A long-running piece of work (a whole-organization rescore), resumable after a restart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub id: i64,
    #[serde(skip)]
    pub org_id: i64,
    pub kind: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub total: u64,
    pub done: u64,
    /// The last customer id finished: the job resumes after it.
    #[serde(skip)]
    pub cursor: i64,
    pub error: Option<String>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A message a plugin queued for a customer; a delivery worker sends it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxMessage {
    pub id: i64,
    pub customer: Id,
    pub channel: String,
    pub template: String,
    pub variables: Value,
    pub state: String,
    pub created_by: String,
    pub created_at: Timestamp,
}

const PLUGIN_COLUMNS: &str =
    "name, world, enabled, position, failure_mode, config, active_version, shadow_version, disabled_reason";

fn plugin_from_row(r: &Row) -> rusqlite::Result<PluginRow> {
    let mode: String = r.get(4)?;
    let config: String = r.get(5)?;
    Ok(PluginRow {
        name: r.get(0)?,
        world: r.get(1)?,
        enabled: r.get(2)?,
        position: r.get(3)?,
        failure_mode: if mode == "open" { FailureMode::Open } else { FailureMode::Closed },
        config: serde_json::from_str(&config).unwrap_or_else(|_| json!({})),
        active_version: r.get(6)?,
        shadow_version: r.get(7)?,
        disabled_reason: r.get(8)?,
    })
}

fn version_from_row(r: &Row) -> rusqlite::Result<VersionRow> {
    Ok(VersionRow {
        version: r.get(0)?,
        hash: r.get(1)?,
        author_version: r.get(2)?,
        installed_at: r.get(3)?,
        installed_by: r.get(4)?,
    })
}

fn job_from_row(r: &Row) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        org_id: r.get(1)?,
        kind: r.get(2)?,
        state: r.get(3)?,
        total: r.get::<_, i64>(4)? as u64,
        done: r.get::<_, i64>(5)? as u64,
        cursor: r.get(6)?,
        error: r.get(7)?,
        created_by: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

const JOB_COLUMNS: &str = "id, org_id, kind, state, total, done, cursor, error, created_by, created_at, updated_at";

impl Store {
    /// Jobs left `running` by a previous process, oldest first, with their organization's slug.
    ///
    /// # Errors
    /// A database failure.
    pub fn unfinished_jobs(&self) -> Result<Vec<(String, Job)>> {
        let conn = self.pool.get()?;
        let columns = JOB_COLUMNS.split(", ").map(|c| format!("j.{c}")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {columns}, o.slug FROM jobs j JOIN orgs o ON o.id = j.org_id WHERE j.state = 'running' ORDER BY j.id"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], |r| Ok((r.get(11)?, job_from_row(r)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

impl OrgStore {
    /// The organization's plugins, by world then position.
    ///
    /// # Errors
    /// A database failure.
    pub fn plugins(&self) -> Result<Vec<PluginRow>> {
        let sql = format!("SELECT {PLUGIN_COLUMNS} FROM plugins WHERE org_id = ?1 ORDER BY world, position, name");
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(scoped(&sql))?;
        let rows = stmt.query_map([self.org.id], plugin_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// # Errors
    /// A database failure.
    pub fn plugin(&self, name: &str) -> Result<Option<PluginRow>> {
        load_plugin(&*self.conn()?, self.org.id, name)
    }

    /// Every version of a plugin, newest first.
    ///
    /// # Errors
    /// A database failure.
    pub fn plugin_versions(&self, name: &str) -> Result<Vec<VersionRow>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(scoped(
            "SELECT version, hash, author_version, installed_at, installed_by FROM plugin_versions \
             WHERE org_id = ?1 AND plugin = ?2 ORDER BY version DESC",
        ))?;
        let rows = stmt.query_map(params![self.org.id, name], version_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// # Errors
    /// A database failure.
    pub fn plugin_version(&self, name: &str, version: u32) -> Result<Option<VersionRow>> {
        Ok(self
            .conn()?
            .prepare_cached(scoped(
                "SELECT version, hash, author_version, installed_at, installed_by FROM plugin_versions \
                 WHERE org_id = ?1 AND plugin = ?2 AND version = ?3",
            ))?
            .query_row(params![self.org.id, name, version], version_from_row)
            .optional()?)
    }

    /// The bytes and config schema of a component this organization installed.
    ///
    /// # Errors
    /// A database failure.
    pub fn component(&self, hash: &str) -> Result<Option<(Vec<u8>, Option<String>)>> {
        Ok(self
            .conn()?
            .prepare_cached(scoped(
                "SELECT c.bytes, c.config_schema FROM components c WHERE EXISTS (SELECT 1 FROM plugin_versions v \
                 WHERE v.org_id = ?1 AND v.hash = ?2) AND c.hash = ?2",
            ))?
            .query_row(params![self.org.id, hash], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// The config schema of a component this organization installed (without its bytes).
    ///
    /// # Errors
    /// A database failure.
    pub fn component_schema(&self, hash: &str) -> Result<Option<String>> {
        Ok(self
            .conn()?
            .prepare_cached(scoped(
                "SELECT c.config_schema FROM components c WHERE EXISTS (SELECT 1 FROM plugin_versions v \
                 WHERE v.org_id = ?1 AND v.hash = ?2) AND c.hash = ?2",
            ))?
            .query_row(params![self.org.id, hash], |r| r.get(0))
            .optional()?
            .flatten())
    }

    /// A plugin's execution trace, newest first, before trace id `before` when given.
    ///
    /// # Errors
    /// A database failure.
    pub fn traces(&self, plugin: &str, before: Option<i64>, limit: u32) -> Result<Vec<TraceRecord>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(scoped(
            "SELECT id, plugin, version, world, hook, change_digest, customer_id, outcome, summary, duration_us, fuel, \
             logs, error, at FROM plugin_traces WHERE org_id = ?1 AND plugin = ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4",
        ))?;
        let rows = stmt.query_map(params![self.org.id, plugin, before.unwrap_or(i64::MAX), limit], |r| {
            let logs: String = r.get(11)?;
            Ok(TraceRecord {
                id: r.get(0)?,
                plugin: r.get(1)?,
                version: r.get(2)?,
                world: r.get(3)?,
                hook: r.get(4)?,
                change_digest: r.get(5)?,
                customer: r.get::<_, Option<i64>>(6)?.map(|c| c as Id),
                outcome: r.get(7)?,
                summary: r.get(8)?,
                duration_us: r.get::<_, i64>(9)? as u64,
                fuel: r.get::<_, Option<i64>>(10)?.map(|f| f as u64),
                logs: serde_json::from_str(&logs).unwrap_or(Value::Null),
                error: r.get(12)?,
                at: r.get(13)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Calls of a plugin that failed since `since` (for automatic disabling).
    ///
    /// # Errors
    /// A database failure.
    pub fn failures_since(&self, plugin: &str, since: Timestamp) -> Result<u64> {
        let n: i64 = self
            .conn()?
            .prepare_cached(scoped(
                "SELECT COUNT(*) FROM plugin_traces WHERE org_id = ?1 AND plugin = ?2 AND at >= ?3 AND outcome = 'error' \
                 AND hook IN ('before', 'after', 'score', 'fit', 'describe', 'report')",
            ))?
            .query_row(params![self.org.id, plugin, since], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Shadow runs of a plugin: (runs, disagreements) since `since`.
    ///
    /// # Errors
    /// A database failure.
    pub fn shadow_counts(&self, plugin: &str, version: u32) -> Result<(u64, u64)> {
        let (runs, disagreements): (i64, i64) = self
            .conn()?
            .prepare_cached(scoped(
                "SELECT COUNT(*), COUNT(CASE WHEN outcome = 'disagree' THEN 1 END) FROM plugin_traces \
                 WHERE org_id = ?1 AND plugin = ?2 AND version = ?3 AND hook = 'shadow'",
            ))?
            .query_row(params![self.org.id, plugin, version], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok((runs as u64, disagreements as u64))
    }

    /// The organization's most recent changes, newest first.
    ///
    /// # Errors
    /// `Invalid` when a logged change does not deserialize; a database failure.
    pub fn recent_changes(&self, limit: u32) -> Result<Vec<Change>> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare_cached(scoped("SELECT change FROM change_log WHERE org_id = ?1 ORDER BY id DESC LIMIT ?2"))?;
        let rows = stmt.query_map(params![self.org.id, limit], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for text in rows {
            out.push(serde_json::from_str(&text?).map_err(|e| StoreError::Invalid(format!("change log: {e}")))?);
        }
        Ok(out)
    }

    /// The model last fitted for a scorer version, and when.
    ///
    /// # Errors
    /// A database failure.
    pub fn scorer_model(&self, plugin: &str, version: u32) -> Result<Option<(Vec<u8>, Timestamp)>> {
        Ok(self
            .conn()?
            .prepare_cached(scoped(
                "SELECT model, fitted_at FROM scorer_models WHERE org_id = ?1 AND plugin = ?2 AND version = ?3",
            ))?
            .query_row(params![self.org.id, plugin, version], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// # Errors
    /// A database failure.
    pub fn job(&self, id: i64) -> Result<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE org_id = ?1 AND id = ?2");
        Ok(self.conn()?.prepare_cached(scoped(&sql))?.query_row(params![self.org.id, id], job_from_row).optional()?)
    }

    /// Queued messages, oldest first.
    ///
    /// # Errors
    /// A database failure.
    pub fn outbox(&self, limit: u32) -> Result<Vec<OutboxMessage>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(scoped(
            "SELECT id, customer_id, channel, template, variables, state, created_by, created_at FROM outbox \
             WHERE org_id = ?1 ORDER BY id LIMIT ?2",
        ))?;
        let rows = stmt.query_map(params![self.org.id, limit], |r| {
            let variables: String = r.get(4)?;
            Ok(OutboxMessage {
                id: r.get(0)?,
                customer: r.get::<_, i64>(1)? as Id,
                channel: r.get(2)?,
                template: r.get(3)?,
                variables: serde_json::from_str(&variables).unwrap_or(Value::Null),
                state: r.get(5)?,
                created_by: r.get(6)?,
                created_at: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn load_plugin(conn: &rusqlite::Connection, org: i64, name: &str) -> Result<Option<PluginRow>> {
    let sql = format!("SELECT {PLUGIN_COLUMNS} FROM plugins WHERE org_id = ?1 AND name = ?2");
    Ok(conn.prepare_cached(scoped(&sql))?.query_row(params![org, name], plugin_from_row).optional()?)
}

impl OrgTx<'_> {
    /// # Errors
    /// A database failure.
    pub fn plugin(&self, name: &str) -> Result<Option<PluginRow>> {
        load_plugin(self.tx, self.org, name)
    }

    /// Add a version of a plugin (installing the plugin, disabled, on its first version, which
    /// is always active) and, with `activate`, make it the active one. Returns its number.
    ///
    /// # Errors
    /// `Invalid` when `name` is installed already as a plugin of another world; a database failure.
    pub fn install_version(&self, actor: &Actor, name: &str, c: &NewComponent<'_>, activate: bool) -> Result<u32> {
        let now = now_ms();
        // Content-addressed: the bytes are stored once however many organizations install them.
        self.tx
            .prepare_cached(
                "INSERT INTO components (hash, bytes, world, contract, config_schema, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (hash) DO NOTHING",
            )?
            .execute(params![c.hash, c.bytes, c.world, c.contract, c.config_schema, now])?;
        let existing = self.plugin(name)?;
        if let Some(p) = &existing
            && p.world != c.world
        {
            return Err(StoreError::Invalid(format!(
                "plugin `{name}` is a {} plugin; this component is a {} plugin (install it under another name)",
                p.world, c.world
            )));
        }
        let version: u32 = self
            .tx
            .prepare_cached(scoped(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM plugin_versions WHERE org_id = ?1 AND plugin = ?2",
            ))?
            .query_row(params![self.org, name], |r| r.get(0))?;
        let installed_by = format!("{}:{}", actor.role, actor.name);
        self.tx
            .prepare_cached(scoped(
                "INSERT INTO plugin_versions (org_id, plugin, version, hash, author_version, installed_at, installed_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            ))?
            .execute(params![self.org, name, version, c.hash, c.author_version, now, installed_by])?;
        match &existing {
            Some(_) if !activate => {}
            Some(_) => {
                self.tx.execute(
                    scoped("UPDATE plugins SET active_version = ?3 WHERE org_id = ?1 AND name = ?2"),
                    params![self.org, name, version],
                )?;
            }
            None => {
                let position: i64 = self
                    .tx
                    .prepare_cached(scoped(
                        "SELECT COALESCE(MAX(position), 0) + 1 FROM plugins WHERE org_id = ?1 AND world = ?2",
                    ))?
                    .query_row(params![self.org, c.world], |r| r.get(0))?;
                self.tx.execute(
                    scoped(
                        "INSERT INTO plugins (org_id, name, world, enabled, position, active_version) \
                         VALUES (?1, ?2, ?3, 0, ?4, ?5)",
                    ),
                    params![self.org, name, c.world, position, version],
                )?;
            }
        }
        self.audit(
            actor,
            "plugin.install",
            "plugin",
            None,
            json!({ "plugin": name, "version": version, "hash": c.hash, "author_version": c.author_version, "world": c.world,
                    "activated": activate || existing.is_none() }),
        )?;
        Ok(version)
    }

    /// Write a plugin's settings (enabled, position, failure mode, config, active and shadow
    /// versions), with an audit row saying what changed.
    ///
    /// # Errors
    /// `Invalid` when the plugin is not installed; a database failure.
    pub fn save_plugin(&self, actor: &Actor, action: &str, p: &PluginRow) -> Result<()> {
        let before = self.plugin(&p.name)?.ok_or_else(|| no_plugin(&p.name))?;
        self.tx.execute(
            scoped(
                "UPDATE plugins SET enabled = ?3, position = ?4, failure_mode = ?5, config = ?6, active_version = ?7, \
                 shadow_version = ?8, disabled_reason = ?9 WHERE org_id = ?1 AND name = ?2",
            ),
            params![
                self.org,
                p.name,
                p.enabled,
                p.position,
                p.failure_mode.as_str(),
                p.config.to_string(),
                p.active_version,
                p.shadow_version,
                p.disabled_reason
            ],
        )?;
        self.audit(actor, action, "plugin", None, json!({ "plugin": p.name, "before": before, "after": p }))
    }

    /// Keep a batch of execution-trace rows.
    ///
    /// # Errors
    /// A database failure.
    pub fn record_traces(&self, traces: &[TraceRecord]) -> Result<()> {
        let mut insert = self.tx.prepare_cached(scoped(
            "INSERT INTO plugin_traces (org_id, plugin, version, world, hook, change_digest, customer_id, outcome, summary, \
             duration_us, fuel, logs, error, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        ))?;
        for t in traces {
            insert.execute(params![
                self.org,
                t.plugin,
                t.version,
                t.world,
                t.hook,
                t.change_digest,
                t.customer.map(|c| c as i64),
                t.outcome,
                t.summary,
                t.duration_us as i64,
                t.fuel.map(|f| f as i64),
                t.logs.to_string(),
                t.error,
                t.at
            ])?;
            if self.tx.last_insert_rowid() % PRUNE_EVERY == 0 {
                self.tx
                    .prepare_cached(scoped(
                        "DELETE FROM plugin_traces WHERE org_id = ?1 AND plugin = ?2 AND id <= (SELECT id FROM plugin_traces \
                         WHERE org_id = ?1 AND plugin = ?2 ORDER BY id DESC LIMIT 1 OFFSET ?3)",
                    ))?
                    .execute(params![self.org, t.plugin, TRACE_RETENTION])?;
            }
        }
        Ok(())
    }

    /// Keep a change for dry-runs of future plugin versions.
    ///
    /// # Errors
    /// A database failure.
    pub fn log_change(&self, change: &Change, customer: Option<Id>) -> Result<()> {
        self.tx
            .prepare_cached(scoped("INSERT INTO change_log (org_id, customer_id, change, at) VALUES (?1, ?2, ?3, ?4)"))?
            .execute(params![
                self.org,
                customer.map(|c| c as i64),
                serde_json::to_string(change).expect("a change serializes"),
                change.at
            ])?;
        if self.tx.last_insert_rowid() % PRUNE_EVERY == 0 {
            self.tx
                .prepare_cached(scoped(
                    "DELETE FROM change_log WHERE org_id = ?1 AND id <= (SELECT id FROM change_log WHERE org_id = ?1 \
                     ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                ))?
                .execute(params![self.org, CHANGE_RETENTION])?;
        }
        Ok(())
    }

    /// # Errors
    /// A database failure.
    pub fn save_model(&self, plugin: &str, version: u32, model: &[u8]) -> Result<()> {
        self.tx
            .prepare_cached(scoped(
                "INSERT INTO scorer_models (org_id, plugin, version, model, fitted_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (org_id, plugin, version) DO UPDATE SET model = excluded.model, fitted_at = excluded.fitted_at",
            ))?
            .execute(params![self.org, plugin, version, model, now_ms()])?;
        Ok(())
    }

    /// Queue a message; a second call with the same `key` (a retried action) queues nothing.
    /// Returns whether it was queued now.
    ///
    /// # Errors
    /// `Invalid` when the customer does not exist; a database failure.
    pub fn queue_message(
        &self,
        actor: &Actor,
        key: &str,
        customer: Id,
        channel: &str,
        template: &str,
        variables: &Value,
    ) -> Result<bool> {
        if self.customer(customer)?.is_none() {
            return Err(StoreError::Invalid(format!("customer {customer} does not exist")));
        }
        let queued = self
            .tx
            .prepare_cached(scoped(
                "INSERT INTO outbox (org_id, customer_id, channel, template, variables, action_key, created_by, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (org_id, action_key) DO NOTHING",
            ))?
            .execute(params![
                self.org,
                customer as i64,
                channel,
                template,
                variables.to_string(),
                key,
                format!("{}:{}", actor.role, actor.name),
                now_ms()
            ])?
            == 1;
        if queued {
            self.audit(
                actor,
                "outbox.queue",
                "customer",
                Some(customer),
                json!({ "channel": channel, "template": template, "key": key }),
            )?;
        }
        Ok(queued)
    }

    /// # Errors
    /// A database failure.
    pub fn create_job(&self, actor: &Actor, kind: &str, total: u64) -> Result<i64> {
        let now = now_ms();
        self.tx
            .prepare_cached(scoped(
                "INSERT INTO jobs (org_id, kind, state, total, created_by, created_at, updated_at) \
                 VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?5)",
            ))?
            .execute(params![self.org, kind, total as i64, format!("{}:{}", actor.role, actor.name), now])?;
        let id = self.tx.last_insert_rowid();
        self.audit(actor, "job.create", "job", Some(id as Id), json!({ "kind": kind, "total": total }))?;
        Ok(id)
    }

    /// Record a job's progress: `done` items so far, the last id finished.
    ///
    /// # Errors
    /// A database failure.
    pub fn job_progress(&self, id: i64, done: u64, cursor: i64) -> Result<()> {
        self.tx.execute(
            scoped("UPDATE jobs SET done = ?3, cursor = ?4, updated_at = ?5 WHERE org_id = ?1 AND id = ?2"),
            params![self.org, id, done as i64, cursor, now_ms()],
        )?;
        Ok(())
    }

    /// End a job, done or (with an error) failed, and queue `job.finished` for it.
    ///
    /// # Errors
    /// `Invalid` when the job does not exist and an endpoint listens for `job.finished` (with none
    /// listening, a missing job is no error); a database failure.
    pub fn finish_job(&self, id: i64, error: Option<&str>) -> Result<()> {
        let state = if error.is_some() { "failed" } else { "done" };
        self.tx.execute(
            scoped("UPDATE jobs SET state = ?3, error = ?4, updated_at = ?5 WHERE org_id = ?1 AND id = ?2"),
            params![self.org, id, state, error, now_ms()],
        )?;
        self.job_finished(id)
    }

    /// Remove what the pipeline kept about a customer (erasure).
    pub(super) fn forget_pipeline_records(&self, ids: &[i64]) -> Result<()> {
        for &id in ids {
            self.tx.execute(
                scoped("DELETE FROM plugin_traces WHERE org_id = ?1 AND customer_id = ?2"),
                params![self.org, id],
            )?;
            self.tx.execute(
                scoped("DELETE FROM change_log WHERE org_id = ?1 AND customer_id = ?2"),
                params![self.org, id],
            )?;
            self.tx
                .execute(scoped("DELETE FROM outbox WHERE org_id = ?1 AND customer_id = ?2"), params![self.org, id])?;
        }
        Ok(())
    }
}

pub fn no_plugin(name: &str) -> StoreError {
    StoreError::Invalid(format!("plugin `{name}` is not installed"))
}
