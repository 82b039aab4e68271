//! The customer store: one consolidated profile per customer, every touchpoint on one timeline.
//! All of Rapport's SQL lives in this module.
//!
//! Every row belongs to one organization, and every per-organization query goes through an
//! [`OrgStore`] (reads) or an [`OrgTx`] (writes in one transaction). Both carry the organization
//! and bind it as `?1` of every statement, which [`scoped`] checks, so forgetting the scope is
//! not something a caller can do. The public API speaks `model` types, not SQLite, so that a
//! second backend (PostgreSQL) is an addition.

#![warn(clippy::missing_errors_doc)]

mod aggregate;
mod backup;
mod dedupe;
mod directory;
mod features;
pub mod filter;
mod keys;
mod privacy;
mod reads;
mod registry;
mod schema;
mod scope;
mod webhooks;

use std::path::{Path, PathBuf};

use r2d2_sqlite::SqliteConnectionManager;
use rand::RngExt;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::json;

pub use backup::{BackupReport, DataLock, LOCK_FILE, RestoreReport, backup_to, restore_from};
pub use dedupe::{Candidate, email as normalize_email, merged_profile, phone_e164};
pub use directory::{ScorePoint, Segment};
pub use keys::{ApiKey, KEY_USE_FLUSH, KeyOwner, KeyUseFlusher, NewKey};
pub use reads::Reads;
pub use registry::{
    CHANGE_RETENTION, FailureMode, Job, NewComponent, OutboxMessage, PluginRow, TRACE_RETENTION, TraceOutcome,
    TraceRecord, VersionRow, no_plugin,
};
pub use scope::{Scope, View};
pub use webhooks::{
    Attempt, CUSTOMER_CREATED, CUSTOMER_ERASED, CUSTOMER_UPDATED, DueDelivery, EVENT_KINDS, INTERACTION_ADDED,
    JOB_FINISHED, POLICY_DENIED, SCORE_CHANGED, WEBHOOK_RETENTION_MS, WebhookDelivery, WebhookEndpoint,
};

use crate::model::{
    Actor, Attributes, Branch, Consent, Customer, CustomerPage, Distributor, DownlineMember, ExternalId, Id,
    Interaction, InteractionKind, LawfulBasis, Money, Ticket, TicketStatus, Timestamp,
};
use crate::plugins::{DataError, DataSource};

pub type Pool = r2d2::Pool<SqliteConnectionManager>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("organization `{0}` does not exist")]
    NoSuchOrg(String),
    #[error("organization `{0}` already exists")]
    OrgExists(String),
    #[error("{0}")]
    Invalid(String),
    /// The record is not in the state the writer expected (an ETag that no longer matches).
    #[error("{0}")]
    Conflict(String),
    #[error("invalid filter: {0}")]
    Filter(#[from] filter::FilterError),
    #[error(
        "the database at {path} was written by a newer Rapport (schema version {found}; this build knows up to \
         {known}); upgrade Rapport, or restore a backup taken before the upgrade"
    )]
    TooNew { path: String, found: i64, known: i64 },
    /// A file given as a backup is not a Rapport database (or is damaged).
    #[error("{path} is not a Rapport database: {why}; pass a file written by `rapport backup`")]
    NotRapport { path: String, why: String },
    /// Another process has the data directory (a running server during a restore).
    #[error("the data directory {path} is in use by {holder}; stop it (Ctrl-C or SIGTERM), then run this again")]
    InUse { path: String, holder: String },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("cannot open the database at {path}: {source}")]
    Open { path: String, source: std::io::Error },
}

/// Bytes SQLite has allocated in this process, across every connection (page caches, statements).
pub fn sqlite_memory_used() -> i64 {
    // SAFETY: `sqlite3_memory_used` only reads SQLite's global allocation counter; it is
    // thread-safe in the bundled build (SQLITE_THREADSAFE=1).
    unsafe { rusqlite::ffi::sqlite3_memory_used() }
}

impl StoreError {
    /// The database could not be written for want of space or because the disk failed (SQLite's
    /// FULL and IOERR, e.g. a full volume or a file-size limit). The transaction was rolled back,
    /// so nothing of the write landed; the server keeps answering reads, and writes work again as
    /// soon as the operator frees space — the caller should say so rather than "internal error".
    pub fn is_storage_failure(&self) -> bool {
        match self {
            StoreError::Sql(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure)
            ),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The whole database; hands out per-organization scopes.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    path: PathBuf,
    writer: Writer,
    key_uses: keys::KeyUses,
}

/// This process's turn at SQLite's one writer. Writers wait here, in order, instead of colliding
/// in `BEGIN IMMEDIATE` and sleeping in SQLite's busy handler (which sleeps up to 100 ms at a
/// time: a long tail under concurrent writes).
type Writer = std::sync::Arc<std::sync::Mutex<()>>;

/// An organization (a tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Org {
    #[serde(skip)]
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub created_at: Timestamp,
    /// Country calling code for local phone numbers (`66` for Thailand), when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_country_code: Option<String>,
}

pub fn now_ms() -> Timestamp {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Every statement of a scoped store must bind the organization as `?1`: in its condition, or as
/// the first value of an insert.
fn scoped(sql: &str) -> &str {
    let condition = sql.contains("org_id = ?1");
    let insert = sql.contains("(org_id,") && sql.contains("VALUES (?1,");
    assert!(condition || insert, "unscoped statement in an organization's store: {sql}");
    sql
}

impl Store {
    /// Open (or create) `DIR/rapport.db`, run pending migrations, refuse a newer schema.
    ///
    /// # Errors
    /// `Open` when the directory cannot be created; `TooNew` when a newer Rapport wrote the
    /// database; a database failure (`Sql`, `Pool`), including a failed migration.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Open { path: dir.display().to_string(), source })?;
        let path = dir.join("rapport.db");
        {
            let mut conn = Connection::open(&path)?;
            conn.execute_batch("PRAGMA journal_mode = WAL;")?;
            configure(&mut conn)?;
            migrate(&mut conn, &path)?;
        }
        let manager = SqliteConnectionManager::file(&path).with_init(configure);
        let pool = r2d2::Pool::builder().max_size(8).build(manager)?;
        Ok(Store { pool, path, writer: Writer::default(), key_uses: Default::default() })
    }

    /// A private database in memory, for `rapport plugin run`: the same schema, migrations and
    /// SQL as a server's, so a plugin's filters and aggregates answer exactly as they would there,
    /// and nothing touches the disk. It lives as long as this store (and its `OrgStore`s).
    ///
    /// # Errors
    /// A database failure (`Sql`, `Pool`), including a failed migration.
    pub fn open_memory() -> Result<Store> {
        // A shared cache under a name no other store uses: every connection of the pool opens
        // the same database (a plain `:memory:` would give each connection an empty one of its
        // own), and two runs in one process never see each other's.
        let name = format!("file:rapport-run-{:016x}?mode=memory&cache=shared", rand::rng().random::<u64>());
        let manager = SqliteConnectionManager::file(&name).with_init(configure);
        // The database goes away with its last connection: the pool must never close idle ones.
        let pool = r2d2::Pool::builder().max_size(4).idle_timeout(None).max_lifetime(None).build(manager)?;
        let path = PathBuf::from(&name);
        migrate(&mut *pool.get()?, &path)?;
        Ok(Store { pool, path, writer: Writer::default(), key_uses: Default::default() })
    }

    /// The database answers a query (health checks): one round trip, whatever it holds.
    ///
    /// # Errors
    /// The database is unreachable (`Pool`) or fails the query (`Sql`).
    pub fn ping(&self) -> Result<()> {
        Ok(self.pool.get()?.query_row("SELECT 1", [], |_| Ok(()))?)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// # Errors
    /// `Invalid` for a malformed slug; `OrgExists` when the slug is taken; a database failure
    /// (`Sql`, `Pool`).
    pub fn create_org(&self, slug: &str, name: &str) -> Result<Org> {
        if slug.is_empty()
            || slug.len() > 63
            || !slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || slug.starts_with('-')
        {
            return Err(StoreError::Invalid(format!(
                "organization slug `{slug}` must be 1-63 characters of a-z, 0-9 and `-`, not starting with `-`"
            )));
        }
        let conn = self.pool.get()?;
        let created_at = now_ms();
        match conn
            .execute("INSERT INTO orgs (slug, name, created_at) VALUES (?1, ?2, ?3)", params![slug, name, created_at])
        {
            Ok(_) => Ok(Org {
                id: conn.last_insert_rowid(),
                slug: slug.into(),
                name: name.into(),
                created_at,
                default_country_code: None,
            }),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(StoreError::OrgExists(slug.into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// # Errors
    /// A database failure (`Sql`, `Pool`).
    pub fn orgs(&self) -> Result<Vec<Org>> {
        let conn = self.pool.get()?;
        let mut stmt =
            conn.prepare("SELECT id, slug, name, created_at, default_country_code FROM orgs ORDER BY slug")?;
        let orgs = stmt.query_map([], org_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(orgs)
    }

    /// Set the country calling code used to put local phone numbers into E.164 (`"66"`).
    ///
    /// # Errors
    /// `Invalid` when `code` is not 1-3 digits; `NoSuchOrg` when the organization does not exist; a
    /// database failure (`Sql`, `Pool`).
    pub fn set_default_country_code(&self, slug: &str, code: Option<&str>) -> Result<()> {
        if let Some(c) = code
            && !(1..=3).contains(&c.len())
        {
            return Err(StoreError::Invalid(format!("`{c}` is not a country calling code (1-3 digits, like 66)")));
        }
        if code.is_some_and(|c| !c.bytes().all(|b| b.is_ascii_digit())) {
            return Err(StoreError::Invalid("a country calling code is digits only, like 66".into()));
        }
        let changed = self
            .pool
            .get()?
            .execute("UPDATE orgs SET default_country_code = ?2 WHERE slug = ?1", params![slug, code])?;
        if changed == 0 {
            return Err(StoreError::NoSuchOrg(slug.into()));
        }
        Ok(())
    }

    /// The scope every per-organization read and write goes through.
    ///
    /// # Errors
    /// `NoSuchOrg` when the organization does not exist; a database failure (`Sql`, `Pool`).
    pub fn org(&self, slug: &str) -> Result<OrgStore> {
        let conn = self.pool.get()?;
        let org = conn
            .prepare_cached("SELECT id, slug, name, created_at, default_country_code FROM orgs WHERE slug = ?1")?
            .query_row([slug], org_from_row)
            .optional()?
            .ok_or_else(|| StoreError::NoSuchOrg(slug.into()))?;
        Ok(OrgStore { store: self.clone(), org })
    }
}

fn org_from_row(r: &Row) -> rusqlite::Result<Org> {
    Ok(Org { id: r.get(0)?, slug: r.get(1)?, name: r.get(2)?, created_at: r.get(3)?, default_country_code: r.get(4)? })
}

fn configure(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;",
    )?;
    filter::register_functions(conn)
}

/// The database's schema version, refused when a newer Rapport wrote it: this build would not
/// know what its tables mean. Opening and restoring share this check.
fn schema_version(conn: &Connection, path: &Path) -> Result<i64> {
    let known = schema::MIGRATIONS.len() as i64;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { path: path.display().to_string(), found, known });
    }
    Ok(found)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let found = schema_version(conn, path)?;
    for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// One organization's data, read-only; [`OrgStore::write`] opens a transaction for changes.
#[derive(Clone)]
pub struct OrgStore {
    store: Store,
    org: Org,
}

/// A customer with their timeline, scores and segments: what a profile page shows.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    #[serde(flatten)]
    pub customer: Customer,
    /// `"<plugin>.<score>": value`.
    pub scores: serde_json::Map<String, serde_json::Value>,
    pub labels: serde_json::Map<String, serde_json::Value>,
    /// Why a score is what it is, where its scorer says (`"<plugin>.<score>": text`).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub explanations: serde_json::Map<String, serde_json::Value>,
    pub segments: Vec<String>,
    pub timeline: Vec<Interaction>,
    /// Pass as `before` to get the next page of the timeline.
    pub timeline_next: Option<String>,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub entity: String,
    pub entity_id: Option<Id>,
    pub detail: serde_json::Value,
}

fn audit_from_row(r: &Row) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        entity: r.get(4)?,
        entity_id: r.get::<_, Option<i64>>(5)?.map(|i| i as Id),
        detail: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
    })
}

const CUSTOMER_COLUMNS: &str =
    "c.id, c.name, c.email, c.phone, c.branch, c.distributor_id, c.attributes, c.created_at, c.updated_at";
const INTERACTION_COLUMNS: &str = "i.id, i.customer_id, i.kind, i.channel, i.source, i.external_id, i.occurred_at, \
     i.amount_minor, i.currency, i.subject, i.body, i.attributes, i.ticket_status, i.ticket_category, i.due_at, \
     i.resolution, i.closed_at";

impl OrgStore {
    pub fn org(&self) -> &Org {
        &self.org
    }

    /// The whole database this organization lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<SqliteConnectionManager>> {
        Ok(self.store.pool.get()?)
    }

    /// Run `f` in one transaction: all of it lands, or (on any error) none of it.
    ///
    /// # Errors
    /// `f`'s error, or a database failure opening or committing the transaction; either way nothing
    /// of it landed.
    pub fn write<T>(&self, f: impl FnOnce(&OrgTx<'_>) -> Result<T>) -> Result<T> {
        let _turn = self.store.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&OrgTx {
            tx: &tx,
            org: self.org.id,
            country: self.org.default_country_code.as_deref(),
            webhook_kinds: Default::default(),
        })?;
        tx.commit()?;
        Ok(out)
    }

    /// # Errors
    /// A database failure.
    pub fn customer(&self, id: Id) -> Result<Option<Customer>> {
        load_customer(&*self.conn()?, self.org.id, id)
    }

    /// An interaction by its id.
    ///
    /// # Errors
    /// A database failure.
    pub fn interaction(&self, id: Id) -> Result<Option<Interaction>> {
        reads::interaction(&*self.conn()?, self.org.id, id)
    }

    /// An interaction by its source system's id.
    ///
    /// # Errors
    /// A database failure.
    pub fn interaction_by_external_id(&self, source: &str, external_id: &str) -> Result<Option<Interaction>> {
        reads::interaction_by_key(&*self.conn()?, self.org.id, source, external_id)
    }

    /// # Errors
    /// A database failure.
    pub fn find_customer(&self, source: &str, external_id: &str) -> Result<Option<Customer>> {
        reads::customer_by_key(&*self.conn()?, self.org.id, source, external_id)
    }

    /// Customers matching a filter, in id order, a page at a time. The cursor is opaque.
    ///
    /// # Errors
    /// `Filter` when the filter does not parse; `Invalid` for a malformed cursor; a database
    /// failure.
    pub fn list_customers(&self, filter: &str, cursor: Option<&str>, limit: u32) -> Result<CustomerPage> {
        let parsed = filter::parse(filter)?;
        let after: i64 = match cursor {
            None | Some("") => 0,
            Some(c) => c.parse().map_err(|_| StoreError::Invalid(format!("invalid cursor `{c}`")))?,
        };
        let limit = limit.clamp(1, 1000);
        let mut params: Vec<Value> = vec![Value::Integer(self.org.id), Value::Integer(after)];
        let condition = filter::to_sql(&parsed, &mut params);
        params.push(Value::Integer(limit as i64 + 1));
        let sql = format!(
            "SELECT c.id FROM customers c WHERE c.org_id = ?1 AND c.id > ?2 AND {condition} ORDER BY c.id LIMIT ?"
        );
        let conn = self.conn()?;
        let ids: Vec<i64> = conn
            .prepare(scoped(&sql))?
            .query_map(rusqlite::params_from_iter(params), |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let more = ids.len() > limit as usize;
        let mut items = Vec::with_capacity(ids.len().min(limit as usize));
        for id in ids.into_iter().take(limit as usize) {
            items.extend(load_customer(&conn, self.org.id, id as Id)?);
        }
        let next_cursor = if more { items.last().map(|c| c.id.to_string()) } else { None };
        Ok(CustomerPage { items, next_cursor })
    }

    /// Count customers matching a filter (segment sizes).
    ///
    /// # Errors
    /// `Filter` when the filter does not parse; a database failure.
    pub fn count_customers(&self, filter: &str) -> Result<u64> {
        let parsed = filter::parse(filter)?;
        let mut params: Vec<Value> = vec![Value::Integer(self.org.id)];
        let condition = filter::to_sql(&parsed, &mut params);
        let sql = format!("SELECT count(*) FROM customers c WHERE c.org_id = ?1 AND {condition}");
        Ok(self.conn()?.query_row(scoped(&sql), rusqlite::params_from_iter(params), |r| r.get::<_, i64>(0))? as u64)
    }

    /// How many interactions of the customers matching `filter` occurred at or after `since`
    /// (the console's "interactions this week", within a caller's scope).
    ///
    /// # Errors
    /// `Filter` when the filter does not parse; a database failure.
    pub fn count_interactions_since(&self, filter: &str, since: Timestamp) -> Result<u64> {
        let parsed = filter::parse(filter)?;
        let mut params: Vec<Value> = vec![Value::Integer(self.org.id), Value::Integer(since)];
        let condition = filter::to_sql(&parsed, &mut params);
        let sql = format!(
            "SELECT count(*) FROM interactions i WHERE i.org_id = ?1 AND i.occurred_at >= ?2 AND i.customer_id IN \
             (SELECT c.id FROM customers c WHERE c.org_id = ?1 AND {condition})"
        );
        Ok(self.conn()?.query_row(scoped(&sql), rusqlite::params_from_iter(params), |r| r.get::<_, i64>(0))? as u64)
    }

    /// A customer's interactions, newest first, before the cursor `"<occurred_at>:<id>"`.
    ///
    /// # Errors
    /// `Invalid` for a malformed cursor; a database failure.
    pub fn timeline(
        &self,
        customer: Id,
        before: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<Interaction>, Option<String>)> {
        let (at, id) = match before {
            None | Some("") => (i64::MAX, i64::MAX),
            Some(c) => c
                .split_once(':')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                .ok_or_else(|| StoreError::Invalid(format!("invalid timeline cursor `{c}`")))?,
        };
        let limit = limit.clamp(1, 500);
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {INTERACTION_COLUMNS} FROM interactions i WHERE i.org_id = ?1 AND i.customer_id = ?2 \
             AND (i.occurred_at, i.id) < (?3, ?4) ORDER BY i.occurred_at DESC, i.id DESC LIMIT ?5"
        );
        let items: Vec<Interaction> = conn
            .prepare_cached(scoped(&sql))?
            .query_map(params![self.org.id, customer as i64, at, id, limit as i64], interaction_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        let next = (items.len() == limit as usize).then(|| {
            let last = items.last().expect("a full page has a last item");
            format!("{}:{}", last.occurred_at, last.id)
        });
        Ok((items, next))
    }

    /// One call for a profile page: the customer, a page of their timeline, scores, segments.
    ///
    /// # Errors
    /// `Filter` when a saved segment's filter no longer parses; a database failure.
    pub fn profile(&self, id: Id, timeline_limit: u32) -> Result<Option<Profile>> {
        let Some(customer) = self.customer(id)? else { return Ok(None) };
        let (timeline, timeline_next) = self.timeline(id, None, timeline_limit)?;
        let conn = self.conn()?;
        let mut scores = serde_json::Map::new();
        let mut labels = serde_json::Map::new();
        let mut stmt = conn.prepare_cached(scoped(
            "SELECT s.plugin, s.name, s.value, s.label, s.explanation FROM scores s \
             JOIN customers c ON c.id = s.customer_id WHERE c.org_id = ?1 AND s.customer_id = ?2 \
             ORDER BY s.plugin, s.name",
        ))?;
        let rows = stmt.query_map(params![self.org.id, id as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<f64>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut explanations = serde_json::Map::new();
        for row in rows {
            let (plugin, name, value, label, explanation) = row?;
            let key = format!("{plugin}.{name}");
            if let Some(text) = explanation {
                explanations.insert(key.clone(), text.into());
            }
            if let Some(label) = label {
                labels.insert(key.clone(), label.into());
            }
            if let Some(value) = value {
                scores.insert(key, json!(value));
            }
        }
        drop(stmt);
        let segments = self.segments_of(&conn, id)?;
        Ok(Some(Profile { customer, scores, labels, explanations, segments, timeline, timeline_next }))
    }

    fn segments_of(&self, conn: &Connection, id: Id) -> Result<Vec<String>> {
        let defs: Vec<(String, String)> = conn
            .prepare_cached(scoped("SELECT name, filter FROM segments WHERE org_id = ?1 ORDER BY name"))?
            .query_map([self.org.id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut member = Vec::new();
        for (name, text) in defs {
            let parsed = filter::parse(&text)?;
            let mut params = vec![Value::Integer(self.org.id), Value::Integer(id as i64)];
            let condition = filter::to_sql(&parsed, &mut params);
            let sql =
                format!("SELECT EXISTS (SELECT 1 FROM customers c WHERE c.org_id = ?1 AND c.id = ?2 AND {condition})");
            if conn.query_row(scoped(&sql), rusqlite::params_from_iter(params), |r| r.get::<_, bool>(0))? {
                member.push(name);
            }
        }
        Ok(member)
    }

    /// Define (or redefine) a segment: a named filter. The filter must parse.
    ///
    /// # Errors
    /// `Filter` when the filter does not parse; a database failure.
    pub fn save_segment(&self, actor: &Actor, name: &str, filter_text: &str, description: &str) -> Result<()> {
        filter::parse(filter_text)?;
        self.write(|tx| {
            tx.tx.execute(
                scoped(
                    "INSERT INTO segments (org_id, name, filter, description, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (org_id, name) DO UPDATE SET filter = excluded.filter, description = excluded.description",
                ),
                params![self.org.id, name, filter_text, description, now_ms()],
            )?;
            tx.audit(actor, "segment.save", "segment", None, json!({ "name": name, "filter": filter_text }))
        })
    }

    /// Define a new segment. A segment of the same name is left as it is and the answer is
    /// `Conflict`, so that a person saving a filter does not overwrite a colleague's segment by
    /// reusing its name ([`OrgStore::save_segment`] replaces on purpose).
    ///
    /// # Errors
    /// `Filter` when the filter does not parse; `Conflict` when a segment of that name exists; a
    /// database failure.
    pub fn add_segment(&self, actor: &Actor, name: &str, filter_text: &str, description: &str) -> Result<()> {
        filter::parse(filter_text)?;
        self.write(|tx| {
            let added = tx.tx.execute(
                scoped(
                    "INSERT INTO segments (org_id, name, filter, description, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (org_id, name) DO NOTHING",
                ),
                params![self.org.id, name, filter_text, description, now_ms()],
            )?;
            if added == 0 {
                return Err(StoreError::Conflict(format!("a segment named `{name}` exists already")));
            }
            tx.audit(actor, "segment.save", "segment", None, json!({ "name": name, "filter": filter_text }))
        })
    }

    /// The organization's branches, by code.
    ///
    /// # Errors
    /// A database failure.
    pub fn branches(&self) -> Result<Vec<Branch>> {
        let conn = self.conn()?;
        let branches = conn
            .prepare_cached(scoped("SELECT code, name, attributes FROM branches WHERE org_id = ?1 ORDER BY code"))?
            .query_map([self.org.id], |r| {
                Ok(Branch { code: r.get(0)?, name: r.get(1)?, attributes: json_map(r.get(2)?) })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(branches)
    }

    /// Create or update a branch (by code), outside the policy pipeline (seeding, tests).
    ///
    /// # Errors
    /// `Invalid` for a malformed branch code; a database failure.
    pub fn save_branch(&self, actor: &Actor, branch: &Branch) -> Result<()> {
        self.write(|tx| {
            tx.save_branch(branch)?;
            tx.audit(actor, "branch.save", "branch", None, json!({ "branch": branch }))
        })
    }

    /// # Errors
    /// A database failure.
    pub fn distributor(&self, id: Id) -> Result<Option<Distributor>> {
        reads::distributor(&*self.conn()?, self.org.id, id)
    }

    /// Everyone below a distributor in the sponsor tree, breadth first, to `max_depth` levels.
    ///
    /// # Errors
    /// A database failure.
    pub fn downline(&self, id: Id, max_depth: u32) -> Result<Vec<DownlineMember>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(scoped(
            "WITH RECURSIVE tree(id, depth) AS ( \
                SELECT id, 1 FROM distributors WHERE org_id = ?1 AND sponsor_id = ?2 \
                UNION ALL \
                SELECT d.id, tree.depth + 1 FROM distributors d JOIN tree ON d.sponsor_id = tree.id \
                WHERE d.org_id = ?1 AND tree.depth < ?3) \
             SELECT d.id, d.name, d.sponsor_id, d.rank, d.status, d.branch, d.attributes, tree.depth \
             FROM tree JOIN distributors d ON d.id = tree.id ORDER BY tree.depth, d.id LIMIT 100000",
        ))?;
        let members = stmt
            .query_map(params![self.org.id, id as i64, max_depth as i64], |r| {
                Ok(DownlineMember { distributor: distributor_from_row(r)?, depth: r.get::<_, i64>(7)? as u32 })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(members)
    }

    /// The audit log, oldest first, after entry `after`.
    ///
    /// # Errors
    /// A database failure.
    pub fn audit(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(scoped(
            "SELECT id, at, actor, action, entity, entity_id, detail FROM audit WHERE org_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        ))?;
        let entries = stmt
            .query_map(params![self.org.id, after, limit.clamp(1, 1000) as i64], audit_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(entries)
    }

    /// The audit log, newest first, before entry `before` (from the latest entry when `None`): a
    /// person reading the log looks for what just happened, then pages back in time.
    ///
    /// # Errors
    /// A database failure.
    pub fn audit_newest(&self, before: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(scoped(
            "SELECT id, at, actor, action, entity, entity_id, detail FROM audit WHERE org_id = ?1 AND id < ?2 \
             ORDER BY id DESC LIMIT ?3",
        ))?;
        let entries = stmt
            .query_map(params![self.org.id, before.unwrap_or(i64::MAX), limit.clamp(1, 1000) as i64], audit_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(entries)
    }

    /// Counts of what the organization holds (for tests, health and the dashboard).
    ///
    /// # Errors
    /// A database failure.
    pub fn counts(&self) -> Result<Counts> {
        let conn = self.conn()?;
        let count = |table: &str| -> Result<u64> {
            let sql = format!("SELECT count(*) FROM {table} WHERE org_id = ?1");
            Ok(conn.query_row(scoped(&sql), [self.org.id], |r| r.get::<_, i64>(0))? as u64)
        };
        Ok(Counts {
            customers: count("customers")?,
            interactions: count("interactions")?,
            distributors: count("distributors")?,
            audit: count("audit")?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub customers: u64,
    pub interactions: u64,
    pub distributors: u64,
    pub audit: u64,
}

/// A write transaction inside one organization.
pub struct OrgTx<'c> {
    tx: &'c rusqlite::Transaction<'c>,
    org: i64,
    country: Option<&'c str>,
    /// The event kinds the organization's webhook endpoints subscribe to, read on first use.
    webhook_kinds: std::cell::OnceCell<std::collections::BTreeSet<String>>,
}

impl OrgTx<'_> {
    /// # Errors
    /// A database failure.
    pub fn audit(
        &self,
        actor: &Actor,
        action: &str,
        entity: &str,
        entity_id: Option<Id>,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.tx
            .prepare_cached(scoped(
                "INSERT INTO audit (org_id, at, actor, action, entity, entity_id, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            ))?
            .execute(params![
                self.org,
                now_ms(),
                format!("{}:{}", actor.role, actor.name),
                action,
                entity,
                entity_id.map(|i| i as i64),
                detail.to_string()
            ])?;
        Ok(())
    }

    /// # Errors
    /// A database failure.
    pub fn customer(&self, id: Id) -> Result<Option<Customer>> {
        load_customer(self.tx, self.org, id)
    }

    /// Run `f` in a savepoint: all of it, or (on an error or `Ok(None)`) none of it, while the
    /// rest of the transaction goes on — one record of a batch refused leaves the others.
    ///
    /// # Errors
    /// `f`'s error, or a failure to set or release the savepoint.
    pub fn all_or_nothing<T>(&self, f: impl FnOnce() -> Result<Option<T>>) -> Result<Option<T>> {
        // Cached statements: a batch sets thousands of these, and parsing each costs more than it.
        self.tx.prepare_cached("SAVEPOINT record")?.execute([])?;
        let result = f();
        if !matches!(result, Ok(Some(_))) {
            self.tx.prepare_cached("ROLLBACK TO record")?.execute([])?;
        }
        self.tx.prepare_cached("RELEASE record")?.execute([])?;
        result
    }

    fn matching_keys(&self, c: &Customer) -> (Option<String>, Option<String>) {
        (
            c.email.as_deref().and_then(dedupe::email),
            c.phone.as_deref().and_then(|p| dedupe::phone_key(p, self.country)),
        )
    }

    /// A distributor referenced by a customer must be this organization's (the foreign key alone
    /// would accept anyone's).
    fn check_distributor(&self, c: &Customer) -> Result<()> {
        let Some(d) = c.distributor else { return Ok(()) };
        let ours: bool = self
            .tx
            .prepare_cached(scoped("SELECT EXISTS (SELECT 1 FROM distributors WHERE org_id = ?1 AND id = ?2)"))?
            .query_row(params![self.org, d as i64], |r| r.get(0))?;
        if ours { Ok(()) } else { Err(StoreError::Invalid(format!("distributor {d} does not exist"))) }
    }

    /// Insert a new customer with its external ids, tags and consents; returns it with its id.
    ///
    /// # Errors
    /// `Invalid` when its distributor is not this organization's or one of its external ids belongs
    /// to another customer; a database failure.
    pub fn insert_customer(&self, c: &Customer) -> Result<Customer> {
        let now = now_ms();
        self.insert_customer_row(c, None, now, now)
    }

    /// Insert a customer that already has an id and times (a `plugin run` fixture, whose inputs
    /// refer to its customers by id): kept as given, an id of 0 gets a new one. Otherwise as
    /// [`OrgTx::insert_customer`]: normalized, its distributor checked.
    ///
    /// # Errors
    /// `Invalid` when the id is too large or taken, its distributor is not this organization's, or
    /// one of its external ids belongs to another customer; a database failure.
    pub fn insert_customer_as_given(&self, c: &Customer) -> Result<Customer> {
        let id = Some(c.id).filter(|&id| id != 0);
        if let Some(id) = id
            && i64::try_from(id).is_err()
        {
            return Err(StoreError::Invalid(format!("customer id {id} is too large (the largest is {})", i64::MAX)));
        }
        self.insert_customer_row(c, id, c.created_at, c.updated_at)
    }

    fn insert_customer_row(
        &self,
        c: &Customer,
        id: Option<Id>,
        created_at: Timestamp,
        updated_at: Timestamp,
    ) -> Result<Customer> {
        let c = &self.normalized(c.clone());
        self.check_distributor(c)?;
        let (email_norm, phone_norm) = self.matching_keys(c);
        self.tx
            .prepare_cached(scoped(
                "INSERT INTO customers (org_id, id, name, email, phone, branch, distributor_id, attributes, created_at, \
                 updated_at, email_norm, phone_norm) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            ))?
            .execute(params![
                self.org,
                id.map(|id| id as i64),
                c.name,
                c.email,
                c.phone,
                c.branch,
                c.distributor.map(|d| d as i64),
                serde_json::to_string(&c.attributes).expect("a JSON map serializes"),
                created_at,
                updated_at,
                email_norm,
                phone_norm
            ])
            .map_err(|e| match (id, e) {
                (Some(id), rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    StoreError::Invalid(format!("customer id {id} is taken"))
                }
                (_, e) => e.into(),
            })?;
        let id = self.tx.last_insert_rowid() as Id;
        self.replace_children(id, c)?;
        Ok(Customer { id, created_at, updated_at, ..c.clone() })
    }

    /// Overwrite a customer's fields, external ids, tags and consents with `c`'s.
    ///
    /// # Errors
    /// `Invalid` when the customer does not exist, its distributor is not this organization's, or
    /// one of its external ids belongs to another customer; a database failure.
    pub fn update_customer(&self, c: &Customer) -> Result<()> {
        let c = &self.normalized(c.clone());
        self.check_distributor(c)?;
        let (email_norm, phone_norm) = self.matching_keys(c);
        let changed = self
            .tx
            .prepare_cached(scoped(
                "UPDATE customers SET name = ?3, email = ?4, phone = ?5, branch = ?6, distributor_id = ?7, attributes = ?8, \
                 updated_at = ?9, email_norm = ?10, phone_norm = ?11 WHERE org_id = ?1 AND id = ?2",
            ))?
            .execute(params![
                self.org,
                c.id as i64,
                c.name,
                c.email,
                c.phone,
                c.branch,
                c.distributor.map(|d| d as i64),
                serde_json::to_string(&c.attributes).expect("a JSON map serializes"),
                now_ms(),
                email_norm,
                phone_norm
            ])?;
        if changed == 0 {
            return Err(StoreError::Invalid(format!("customer {} does not exist", c.id)));
        }
        self.tx.execute(
            scoped("DELETE FROM customer_ids WHERE org_id = ?1 AND customer_id = ?2"),
            params![self.org, c.id as i64],
        )?;
        self.tx.execute("DELETE FROM customer_tags WHERE customer_id = ?1", [c.id as i64])?;
        self.tx.execute("DELETE FROM consents WHERE customer_id = ?1", [c.id as i64])?;
        self.replace_children(c.id, c)
    }

    // Child rows are reached through a customer id this transaction has just checked belongs to
    // the organization (insert or scoped update above).
    fn replace_children(&self, id: Id, c: &Customer) -> Result<()> {
        let mut ids = self.tx.prepare_cached(scoped(
            "INSERT INTO customer_ids (org_id, source, external_id, customer_id) VALUES (?1, ?2, ?3, ?4)",
        ))?;
        for e in &c.external_ids {
            ids.execute(params![self.org, e.source, e.id, id as i64]).map_err(|err| match err {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    StoreError::Invalid(format!(
                        "external id {}:{} already belongs to another customer",
                        e.source, e.id
                    ))
                }
                other => other.into(),
            })?;
        }
        let mut tags =
            self.tx.prepare_cached("INSERT OR IGNORE INTO customer_tags (customer_id, tag) VALUES (?1, ?2)")?;
        for t in &c.tags {
            tags.execute(params![id as i64, t])?;
        }
        let mut consents = self.tx.prepare_cached(
            "INSERT INTO consents (customer_id, purpose, channel, basis, given_at, withdrawn_at, source) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for k in &c.consents {
            consents.execute(params![
                id as i64,
                k.purpose,
                k.channel,
                basis_str(k.basis),
                k.given_at,
                k.withdrawn_at,
                k.source
            ])?;
        }
        Ok(())
    }

    /// Store one scorer's results for a batch of customers: the current value (and label,
    /// explanation) per score, and a history row, and queue `score.changed` for values that
    /// changed when an endpoint listens. Customers not in this organization are skipped and
    /// counted, never written.
    ///
    /// # Errors
    /// A database failure (a customer of another organization is skipped, not an error).
    pub fn save_scores(
        &self,
        plugin: &str,
        batch: &crate::model::ScoreBatch,
        ids: &[Id],
        at: Timestamp,
    ) -> Result<u64> {
        let mut belongs =
            self.tx.prepare_cached(scoped("SELECT EXISTS (SELECT 1 FROM customers WHERE org_id = ?1 AND id = ?2)"))?;
        let mut upsert = self.tx.prepare_cached(
            "INSERT INTO scores (customer_id, plugin, name, value, label, explanation, computed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (customer_id, plugin, name) DO UPDATE SET value = excluded.value, label = excluded.label, \
             explanation = excluded.explanation, computed_at = excluded.computed_at",
        )?;
        let mut history = self.tx.prepare_cached(
            "INSERT INTO score_history (customer_id, plugin, name, value, label, computed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut skipped = 0;
        for (i, &id) in ids.iter().enumerate() {
            if !belongs.query_row(params![self.org, id as i64], |r| r.get::<_, bool>(0))? {
                skipped += 1;
                continue;
            }
            let explanation = |name: &str| {
                batch
                    .explanations
                    .iter()
                    .find(|e| e.name == name)
                    .map(|e| e.values[i].as_str())
                    .filter(|e| !e.is_empty())
            };
            let before = self.scores_before(plugin, id)?;
            let mut after = serde_json::Map::new();
            for column in &batch.scores {
                let value = Some(column.values[i]).filter(|v| v.is_finite());
                if before.is_some() {
                    after.insert(format!("{plugin}.{}", column.name), json!(value));
                }
                upsert.execute(params![
                    id as i64,
                    plugin,
                    column.name,
                    value,
                    None::<String>,
                    explanation(&column.name),
                    at
                ])?;
                history.execute(params![id as i64, plugin, column.name, value, None::<String>, at])?;
            }
            for label in &batch.labels {
                let text = label.get(i);
                if before.is_some() {
                    after.insert(format!("{plugin}.{}", label.name), json!(text));
                }
                upsert.execute(params![
                    id as i64,
                    plugin,
                    label.name,
                    None::<f64>,
                    text,
                    explanation(&label.name),
                    at
                ])?;
                history.execute(params![id as i64, plugin, label.name, None::<f64>, text, at])?;
            }
            if let Some(before) = before {
                self.scores_changed(id, &before, after)?;
            }
        }
        Ok(skipped)
    }

    /// Insert an interaction for a customer of this organization.
    ///
    /// # Errors
    /// `Invalid` when the customer is not this organization's; a database failure, which includes
    /// another interaction with the same source and external id (a constraint violation).
    pub fn insert_interaction(&self, i: &Interaction) -> Result<Id> {
        self.insert_interaction_with_id(i, None)
    }

    /// Insert an interaction that already has an id (a `plugin run` fixture's): kept as given, an
    /// id of 0 gets a new one. Otherwise as [`OrgTx::insert_interaction`].
    ///
    /// # Errors
    /// `Invalid` when the id is too large or taken, the customer is not this organization's, or
    /// another interaction has the same source and external id; a database failure.
    pub fn insert_interaction_as_given(&self, i: &Interaction) -> Result<Id> {
        let id = Some(i.id).filter(|&id| id != 0);
        if let Some(id) = id
            && i64::try_from(id).is_err()
        {
            return Err(StoreError::Invalid(format!("interaction id {id} is too large (the largest is {})", i64::MAX)));
        }
        self.insert_interaction_with_id(i, id).map_err(|e| match (id, e) {
            (Some(id), StoreError::Sql(rusqlite::Error::SqliteFailure(f, m)))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                let what = m.unwrap_or_default();
                if what.contains("interactions.id") {
                    StoreError::Invalid(format!("interaction id {id} is taken"))
                } else {
                    StoreError::Invalid(format!(
                        "another interaction has the same source `{}` and external id `{}`",
                        i.source,
                        i.external_id.as_deref().unwrap_or_default()
                    ))
                }
            }
            (_, e) => e,
        })
    }

    fn insert_interaction_with_id(&self, i: &Interaction, id: Option<Id>) -> Result<Id> {
        let belongs: bool = self
            .tx
            .prepare_cached(scoped("SELECT EXISTS (SELECT 1 FROM customers WHERE org_id = ?1 AND id = ?2)"))?
            .query_row(params![self.org, i.customer as i64], |r| r.get(0))?;
        if !belongs {
            return Err(StoreError::Invalid(format!("customer {} does not exist", i.customer)));
        }
        insert_interaction_row_with_id(self.tx, self.org, id, i)?;
        Ok(self.tx.last_insert_rowid() as Id)
    }

    /// Replace the service state of a ticket interaction: the one part of an interaction that
    /// changes after it happened (a ticket is opened, categorized, resolved, closed).
    ///
    /// # Errors
    /// `Invalid` when the interaction is not a ticket of this organization; a database failure.
    pub fn update_ticket(&self, id: Id, t: &Ticket) -> Result<()> {
        let updated = self
            .tx
            .prepare_cached(scoped(
                "UPDATE interactions SET ticket_status = ?3, ticket_category = ?4, due_at = ?5, resolution = ?6, \
             closed_at = ?7 WHERE org_id = ?1 AND id = ?2 AND kind = 'ticket'",
            ))?
            .execute(params![
                self.org,
                id as i64,
                status_str(t.status),
                t.category.as_deref(),
                t.due_at,
                t.resolution.as_deref(),
                t.closed_at
            ])?;
        if updated == 0 {
            return Err(StoreError::Invalid(format!("interaction {id} is not a ticket of this organization")));
        }
        Ok(())
    }
}

fn normalized(mut c: Customer, country: Option<&str>) -> Customer {
    let trim = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    c.name = trim(c.name);
    c.email = trim(c.email);
    c.phone = trim(c.phone).map(|p| phone_e164(&p, country).unwrap_or(p));
    c.tags.sort();
    c.tags.dedup();
    // Stored consents come back oldest first; order them so on the way in too.
    c.consents.sort_by_key(|k| k.given_at);
    c.consents.dedup();
    c
}

/// Insert one interaction row, with its id when it has one (`None`: SQLite picks).
fn insert_interaction_row_with_id(
    conn: &Connection,
    org: i64,
    id: Option<Id>,
    i: &Interaction,
) -> rusqlite::Result<usize> {
    const INSERT: &str = "INSERT INTO interactions (org_id, id, customer_id, kind, channel, source, external_id, \
         occurred_at, amount_minor, currency, subject, body, attributes, ticket_status, ticket_category, due_at, \
         resolution, closed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";
    let ticket = i.ticket.as_ref();
    conn.prepare_cached(scoped(INSERT))?.execute(params![
        org,
        id.map(|id| id as i64),
        i.customer as i64,
        i.kind.as_str(),
        i.channel,
        i.source,
        i.external_id,
        i.occurred_at,
        i.amount.as_ref().map(|m| m.amount_minor),
        i.amount.as_ref().map(|m| m.currency.as_str()),
        i.subject,
        i.body,
        attributes_text(&i.attributes),
        ticket.map(|t| status_str(t.status)),
        ticket.and_then(|t| t.category.as_deref()),
        ticket.and_then(|t| t.due_at),
        ticket.and_then(|t| t.resolution.as_deref()),
        ticket.and_then(|t| t.closed_at),
    ])
}

fn attributes_text(a: &Attributes) -> String {
    if a.is_empty() { "{}".into() } else { serde_json::to_string(a).expect("a JSON map serializes") }
}

fn load_customer(conn: &Connection, org: i64, id: Id) -> Result<Option<Customer>> {
    let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers c WHERE c.org_id = ?1 AND c.id = ?2");
    let Some(mut c) =
        conn.prepare_cached(scoped(&sql))?.query_row(params![org, id as i64], customer_from_row).optional()?
    else {
        return Ok(None);
    };
    c.external_ids = conn
        .prepare_cached(scoped(
            "SELECT source, external_id FROM customer_ids WHERE org_id = ?1 AND customer_id = ?2 ORDER BY source, external_id",
        ))?
        .query_map(params![org, id as i64], |r| Ok(ExternalId { source: r.get(0)?, id: r.get(1)? }))?
        .collect::<rusqlite::Result<_>>()?;
    c.tags = conn
        .prepare_cached("SELECT tag FROM customer_tags WHERE customer_id = ?1 ORDER BY tag")?
        .query_map([id as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    c.consents = conn
        .prepare_cached(
            "SELECT purpose, channel, basis, given_at, withdrawn_at, source FROM consents WHERE customer_id = ?1 ORDER BY given_at, id",
        )?
        .query_map([id as i64], |r| {
            Ok(Consent {
                purpose: r.get(0)?,
                channel: r.get(1)?,
                basis: parse_basis(&r.get::<_, String>(2)?),
                given_at: r.get(3)?,
                withdrawn_at: r.get(4)?,
                source: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(c))
}

fn json_map(text: String) -> Attributes {
    serde_json::from_str(&text).unwrap_or_default()
}

fn customer_from_row(r: &Row) -> rusqlite::Result<Customer> {
    Ok(Customer {
        id: r.get::<_, i64>(0)? as Id,
        name: r.get(1)?,
        email: r.get(2)?,
        phone: r.get(3)?,
        branch: r.get(4)?,
        distributor: r.get::<_, Option<i64>>(5)?.map(|d| d as Id),
        external_ids: Vec::new(),
        tags: Vec::new(),
        consents: Vec::new(),
        attributes: json_map(r.get(6)?),
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

fn interaction_from_row(r: &Row) -> rusqlite::Result<Interaction> {
    let amount = match (r.get::<_, Option<i64>>(7)?, r.get::<_, Option<String>>(8)?) {
        (Some(amount_minor), Some(currency)) => Some(Money { amount_minor, currency }),
        _ => None,
    };
    let ticket = r.get::<_, Option<String>>(12)?.map(|status| -> rusqlite::Result<Ticket> {
        Ok(Ticket {
            status: match status.as_str() {
                "closed" => TicketStatus::Closed,
                "pending" => TicketStatus::Pending,
                _ => TicketStatus::Open,
            },
            category: r.get(13)?,
            due_at: r.get(14)?,
            resolution: r.get(15)?,
            closed_at: r.get(16)?,
        })
    });
    Ok(Interaction {
        id: r.get::<_, i64>(0)? as Id,
        customer: r.get::<_, i64>(1)? as Id,
        kind: InteractionKind::from(r.get::<_, String>(2)?),
        channel: r.get(3)?,
        source: r.get(4)?,
        external_id: r.get(5)?,
        occurred_at: r.get(6)?,
        amount,
        subject: r.get(9)?,
        body: r.get(10)?,
        attributes: json_map(r.get(11)?),
        ticket: ticket.transpose()?,
    })
}

fn distributor_from_row(r: &Row) -> rusqlite::Result<Distributor> {
    Ok(Distributor {
        id: r.get::<_, i64>(0)? as Id,
        name: r.get(1)?,
        sponsor: r.get::<_, Option<i64>>(2)?.map(|s| s as Id),
        rank: r.get(3)?,
        status: serde_json::from_value(json!(r.get::<_, String>(4)?)).unwrap_or_default(),
        branch: r.get(5)?,
        attributes: json_map(r.get(6)?),
    })
}

fn basis_str(b: LawfulBasis) -> &'static str {
    match b {
        LawfulBasis::Consent => "consent",
        LawfulBasis::Contract => "contract",
        LawfulBasis::LegalObligation => "legal-obligation",
        LawfulBasis::VitalInterest => "vital-interest",
        LawfulBasis::PublicTask => "public-task",
        LawfulBasis::LegitimateInterest => "legitimate-interest",
    }
}

fn parse_basis(s: &str) -> LawfulBasis {
    serde_json::from_value(json!(s)).unwrap_or(LawfulBasis::Consent)
}

fn status_str(s: TicketStatus) -> &'static str {
    match s {
        TicketStatus::Open => "open",
        TicketStatus::Pending => "pending",
        TicketStatus::Closed => "closed",
    }
}

/// Plugins read through the same scoped store.
impl DataSource for OrgStore {
    fn customer(&self, id: Id) -> Result<Option<Customer>, DataError> {
        OrgStore::customer(self, id).map_err(data_error)
    }

    fn find_customer(&self, source: &str, external_id: &str) -> Result<Option<Customer>, DataError> {
        OrgStore::find_customer(self, source, external_id).map_err(data_error)
    }

    fn timeline(&self, customer: Id, before: Option<Timestamp>, limit: u32) -> Result<Vec<Interaction>, DataError> {
        let cursor = before.map(|b| format!("{b}:0"));
        OrgStore::timeline(self, customer, cursor.as_deref(), limit).map(|(items, _)| items).map_err(data_error)
    }

    fn query_customers(
        &self,
        filter: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Result<CustomerPage, String>, DataError> {
        match self.list_customers(filter, cursor, limit) {
            Ok(page) => Ok(Ok(page)),
            Err(e @ (StoreError::Filter(_) | StoreError::Invalid(_))) => Ok(Err(e.to_string())),
            Err(e) => Err(data_error(e)),
        }
    }

    fn distributor(&self, id: Id) -> Result<Option<Distributor>, DataError> {
        OrgStore::distributor(self, id).map_err(data_error)
    }

    fn downline(&self, distributor: Id, max_depth: u32) -> Result<Vec<DownlineMember>, DataError> {
        OrgStore::downline(self, distributor, max_depth).map_err(data_error)
    }

    fn aggregate(
        &self,
        query: &crate::model::AggregateQuery,
    ) -> Result<Result<crate::model::AggregateResult, String>, DataError> {
        match OrgStore::aggregate(self, query) {
            Ok(result) => Ok(Ok(result)),
            Err(e @ (StoreError::Filter(_) | StoreError::Invalid(_))) => Ok(Err(e.to_string())),
            Err(e) => Err(data_error(e)),
        }
    }
}

fn data_error(e: StoreError) -> DataError {
    DataError(e.to_string())
}
