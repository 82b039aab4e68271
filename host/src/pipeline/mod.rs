//! The write pipeline: every change to an organization's data — from the API, an import, a merge,
//! an erasure or a plugin's follow-up action — passes here, one way:
//!
//! 1. *before*: the organization's enabled policies, in order, judge the change (allow, warn,
//!    deny, patch; a patch is applied before the next policy sees it);
//! 2. *commit*: one transaction with the write, its audit row (with every decision) and the
//!    calls' traces;
//! 3. *after*: policies may ask for follow-up actions, which go through this same pipeline one
//!    level deeper, up to [`Settings::max_depth`];
//! 4. *scoring*: the customers the whole chain touched are rescored by the organization's scorers.
//!
//! No plugin runs while a transaction is open or the store's writer is held: a change is built
//! and judged from committed data, then committed in a short transaction that holds only SQL. The
//! commit reads the record again; if it changed while policies judged, the change is judged again
//! (at most [`REJUDGE`] times), so what lands is always what policies saw. Imports take the same
//! path, a batch of records at a time.
//!
//! Each kind of write says how it becomes a change, commits and is audited in one place:
//! `writes.rs`.

#![warn(clippy::missing_errors_doc)]

mod actions;
mod import;
mod registry;
pub(crate) mod report;
mod scoring;
mod trial;
mod writes;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::model::{Actor, Change, Decision, Entity, Id, Operation, Origin};
use crate::plugins::{CallContext, CallError, Called, Limits, Plugin, Runtime, Trace, World};
use crate::store::{
    self, FailureMode, OrgStore, PluginRow, Scope, Store, StoreError, TraceOutcome, TraceRecord, View, now_ms,
};

pub use actions::ActionOutcome;
pub use import::{BATCH, ImportFormat, ImportKind, ImportReport, RowError, RowWarning};
pub use registry::{ConfigError, Installed as InstalledVersion};
pub use report::{Format, render};
pub use scoring::{NativeScorer, ScoreError, Scorer, Scoring};
pub use trial::{DryRun, ShadowReport};
pub use writes::{CustomerRecord, DistributorRecord, ExternalRef, Write};

/// How the pipeline behaves; the defaults are what a new organization gets.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How deep follow-up actions may nest (Dynamics 365 stops plug-in chains at 8 too).
    pub max_depth: u32,
    /// A plugin that fails this many times within `failure_window_ms` is disabled.
    pub failure_threshold: u64,
    pub failure_window_ms: i64,
    /// Customers per scorer call in a rescore.
    pub score_batch: usize,
    pub policy_limits: Limits,
    pub scorer_limits: Limits,
    pub reporter_limits: Limits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_depth: 8,
            failure_threshold: 5,
            failure_window_ms: 10 * 60 * 1000,
            score_batch: 2_000,
            policy_limits: Limits::for_world(World::Policy),
            scorer_limits: Limits::for_world(World::Scorer),
            reporter_limits: Limits::for_world(World::Reporter),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("denied by policy `{plugin}`: {reason}")]
    Denied { plugin: String, reason: String, field: Option<String> },
    #[error("policy `{plugin}` failed and fails closed, so the write was refused: {error}")]
    PolicyFailed { plugin: String, code: &'static str, error: String },
    #[error(
        "follow-up actions nested deeper than {limit} (plugin `{plugin}` asked for more at depth {depth}): the \
         actions loop; make the plugin's `after` stop asking once its work is done"
    )]
    DepthExceeded { plugin: String, depth: u32, limit: u32 },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// The record would land outside the caller's scope (an agent's branch or distributor).
    #[error("{0}")]
    OutOfScope(String),
    /// The write collides with what is stored (a key in use, a fact recorded otherwise), or the
    /// record kept changing while policies judged it.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Plugin(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PipelineError {
    /// The field a denial or an invalid value concerns, for forms to highlight.
    pub fn field(&self) -> Option<&str> {
        match self {
            PipelineError::Denied { field, .. } => field.as_deref(),
            PipelineError::Config(c) => Some(&c.path),
            _ => None,
        }
    }
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// A warning a policy returned (or a fail-open policy's failure): the write landed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    pub plugin: String,
    pub message: String,
}

/// What a write did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The record as stored (`None` after an erasure).
    pub record: Option<Entity>,
    /// False when the write changed nothing (and no policy ran).
    pub changed: bool,
    pub warnings: Vec<Warning>,
    /// Every follow-up action of the chain, in the order they ran.
    pub actions: Vec<ActionOutcome>,
    /// Customers rescored after the write.
    pub rescored: Vec<Id>,
}

/// The pipeline and what it holds: the store, the plugin runtime, and each organization's
/// loaded plugins.
#[derive(Clone)]
pub struct Pipeline {
    shared: Arc<Shared>,
}

struct Shared {
    store: Store,
    runtime: Runtime,
    settings: Settings,
    /// Each organization's enabled plugins, loaded; replaced (never mutated) when its registry
    /// changes, so calls in flight finish on the set they started with.
    orgs: Mutex<HashMap<String, Arc<OrgPlugins>>>,
    /// Trace rows not written yet, per organization: they ride along with the organization's
    /// next write transaction, or are written in one batch when [`TRACE_BUFFER`] accumulate or
    /// someone reads the trace. A separate transaction per write for its after-hook traces
    /// would cost more than the hooks themselves. A crash loses at most this buffer of traces.
    traces: Mutex<HashMap<i64, Vec<TraceRecord>>>,
    /// Background jobs this process started, so that shutdown can wait for them.
    jobs: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// Trace rows buffered per organization before they are written on their own.
const TRACE_BUFFER: usize = 256;

impl Drop for Shared {
    fn drop(&mut self) {
        let pending = std::mem::take(&mut *self.traces.lock().unwrap_or_else(|e| e.into_inner()));
        for (org, traces) in pending {
            let slug = self.store.orgs().ok().and_then(|all| all.into_iter().find(|o| o.id == org)).map(|o| o.slug);
            if let Some(store) = slug.and_then(|s| self.store.org(&s).ok())
                && let Err(e) = store.write(|tx| tx.record_traces(&traces))
            {
                tracing::warn!("{} trace rows lost at shutdown: {e}", traces.len());
            }
        }
    }
}

/// An organization's plugins as calls see them.
#[derive(Default)]
pub(crate) struct OrgPlugins {
    pub policies: Vec<Arc<Active>>,
    pub scorers: Vec<Arc<Active>>,
    pub reporters: Vec<Arc<Active>>,
}

/// One enabled plugin's active version, loaded.
pub(crate) struct Active {
    pub row: PluginRow,
    pub plugin: Plugin,
    pub config: Arc<str>,
    /// A version running beside this one on live writes, for comparison only.
    pub shadow: Option<(u32, Plugin)>,
}

impl Active {
    fn context(&self, data: &Arc<dyn crate::plugins::DataSource>, limits: &Limits) -> CallContext {
        CallContext { data: data.clone(), config: self.config.clone(), limits: limits.clone() }
    }
}

impl Pipeline {
    pub fn new(store: Store, runtime: Runtime, settings: Settings) -> Pipeline {
        Pipeline {
            shared: Arc::new(Shared {
                store,
                runtime,
                settings,
                orgs: Mutex::new(HashMap::new()),
                traces: Mutex::new(HashMap::new()),
                jobs: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Buffer trace rows (see `Shared::traces`); writes the buffer when it is full.
    pub(crate) fn keep_traces(&self, org: &OrgStore, mut traces: Vec<TraceRecord>) -> Result<()> {
        if traces.is_empty() {
            return Ok(());
        }
        let full = {
            let mut all = self.shared.traces.lock().unwrap_or_else(|e| e.into_inner());
            let pending = all.entry(org.org().id).or_default();
            pending.append(&mut traces);
            (pending.len() >= TRACE_BUFFER).then(|| std::mem::take(pending))
        };
        match full {
            Some(rows) => Ok(org.write(|tx| tx.record_traces(&rows))?),
            None => Ok(()),
        }
    }

    fn take_traces(&self, org: &OrgStore) -> Vec<TraceRecord> {
        self.shared.traces.lock().unwrap_or_else(|e| e.into_inner()).remove(&org.org().id).unwrap_or_default()
    }

    /// Write an organization's buffered trace rows now.
    ///
    /// # Errors
    /// The organization does not exist, or a database failure (`Store`); the rows taken from the
    /// buffer are then lost.
    pub fn flush_traces(&self, org: &str) -> Result<()> {
        let org = self.org(org)?;
        let rows = self.take_traces(&org);
        if !rows.is_empty() {
            org.write(|tx| tx.record_traces(&rows))?;
        }
        Ok(())
    }

    /// A plugin's execution trace, newest first (buffered rows included).
    ///
    /// # Errors
    /// The organization does not exist, or a database failure (`Store`), writing the buffered rows
    /// included.
    pub fn traces(&self, org: &str, plugin: &str, before: Option<i64>, limit: u32) -> Result<Vec<TraceRecord>> {
        self.flush_traces(org)?;
        Ok(self.org(org)?.traces(plugin, before, limit)?)
    }

    /// Keep a chain's traces gathered so far (for paths that do not reach a commit), and queue
    /// its denials' `policy.denied` events: a denied write rolls back, so they take a small
    /// transaction of their own.
    fn flush_chain(&self, org: &OrgStore, chain: &mut Chain) -> Result<()> {
        self.keep_traces(org, std::mem::take(&mut chain.traces))?;
        let denials = std::mem::take(&mut chain.denials);
        if !denials.is_empty() {
            org.write(|tx| {
                denials.into_iter().try_for_each(|(customer, payload)| {
                    tx.webhook_event(store::POLICY_DENIED, customer, || Ok(payload))
                })
            })?;
        }
        Ok(())
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    pub fn runtime(&self) -> &Runtime {
        &self.shared.runtime
    }

    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// The organization's loaded plugins, loading them on first use.
    pub(crate) fn plugins_of(&self, org: &OrgStore) -> Result<Arc<OrgPlugins>> {
        let slug = &org.org().slug;
        if let Some(p) = self.shared.orgs.lock().unwrap_or_else(|e| e.into_inner()).get(slug) {
            return Ok(p.clone());
        }
        let mut set = OrgPlugins { policies: Vec::new(), scorers: Vec::new(), reporters: Vec::new() };
        for row in org.plugins()?.into_iter().filter(|p| p.enabled) {
            let plugin = self.load_version(org, &row.name, row.active_version)?;
            let shadow = match row.shadow_version {
                Some(v) => Some((v, self.load_version(org, &row.name, v)?)),
                None => None,
            };
            let active = Arc::new(Active { config: row.config.to_string().into(), row, plugin, shadow });
            match active.plugin.world() {
                World::Policy => set.policies.push(active),
                World::Scorer => set.scorers.push(active),
                World::Reporter => set.reporters.push(active),
            }
        }
        let set = Arc::new(set);
        self.shared.orgs.lock().unwrap_or_else(|e| e.into_inner()).insert(slug.clone(), set.clone());
        Ok(set)
    }

    /// Forget an organization's loaded plugins after its registry changed.
    pub(crate) fn invalidate(&self, org: &OrgStore) {
        self.shared.orgs.lock().unwrap_or_else(|e| e.into_inner()).remove(&org.org().slug);
    }

    /// Load one version of a plugin. Compiled code is shared by content hash (see `Runtime`).
    pub(crate) fn load_version(&self, org: &OrgStore, name: &str, version: u32) -> Result<Plugin> {
        let row = org
            .plugin_version(name, version)?
            .ok_or_else(|| PipelineError::NotFound(format!("plugin `{name}` has no version {version}")))?;
        let (bytes, _) = org
            .component(&row.hash)?
            .ok_or_else(|| PipelineError::NotFound(format!("component {} is missing from the store", row.hash)))?;
        self.shared.runtime.load(name, &bytes).map_err(|e| PipelineError::Plugin(format!("plugin `{name}` {e}")))
    }

    /// # Errors
    /// `Store(NoSuchOrg)` when the organization does not exist; a database failure (`Store`).
    pub fn org(&self, slug: &str) -> Result<OrgStore> {
        Ok(self.shared.store.org(slug)?)
    }

    /// An organization's data as a caller working in `scope` sees it.
    ///
    /// # Errors
    /// The organization does not exist.
    pub fn view(&self, slug: &str, scope: Scope) -> Result<View> {
        Ok(View::new(self.org(slug)?, scope))
    }

    /// Apply one write for `actor` through the whole pipeline.
    ///
    /// # Errors
    /// The write was refused (a policy's denial, a failing fail-closed policy, an invalid value, a
    /// missing record, a conflict) or could not be stored; nothing of it landed.
    pub fn write(&self, org: &str, actor: &Actor, origin: Origin, write: Write) -> Result<Outcome> {
        self.write_in(org, actor, &Scope::default(), origin, write)
    }

    /// [`Pipeline::write`] for a caller who works in `scope`: a record outside it is answered as
    /// missing, and the write may not move one out of it. Follow-up actions are the plugins' own
    /// and not limited by it.
    ///
    /// # Errors
    /// As [`Pipeline::write`]; `NotFound` for a record outside the scope, `OutOfScope` for one
    /// the write would move out of it.
    pub fn write_in(&self, org: &str, actor: &Actor, scope: &Scope, origin: Origin, write: Write) -> Result<Outcome> {
        let org = self.org(org)?;
        let mut chain = Chain { scope: scope.clone(), ..Chain::default() };
        let landed = self.apply(&org, actor, origin, 0, write, &mut chain);
        let rescored = match &landed {
            Ok(_) => self.rescore_touched(&org, &chain.touched, &mut chain.traces),
            Err(_) => Vec::new(),
        };
        self.flush_chain(&org, &mut chain)?;
        let landed = landed?;
        Ok(Outcome {
            changed: landed.is_some(),
            record: landed.flatten(),
            warnings: chain.warnings,
            actions: chain.actions,
            rescored,
        })
    }

    /// One write, at `depth` in its chain of actions. `Ok(None)` when it changed nothing;
    /// `Ok(Some(None))` for an erasure.
    fn apply(
        &self,
        org: &OrgStore,
        actor: &Actor,
        origin: Origin,
        depth: u32,
        write: Write,
        chain: &mut Chain,
    ) -> Result<Option<Option<Entity>>> {
        let at = Batch { org, actor, origin, depth };
        let mut results = self.apply_all(at, &[write], chain, Judging::Policies)?;
        results.pop().expect("one result per write").map(|l| l.map(|l| l.record))
    }

    /// The one write path: judge every write (no lock held), commit the judged ones in one
    /// transaction (each in a savepoint, so one bad record does not sink the others), judge again
    /// whatever changed meanwhile, then run the after hooks of what landed. One result per write,
    /// in order; `Err` only when the batch's transaction itself failed.
    pub(crate) fn apply_all(
        &self,
        at: Batch<'_>,
        writes: &[Write],
        chain: &mut Chain,
        judging: Judging,
    ) -> Result<Vec<Result<Option<Landed>>>> {
        let org = at.org;
        let plugins = match judging {
            Judging::Policies => self.plugins_of(org)?,
            Judging::Bypass => Arc::new(OrgPlugins::default()),
        };
        let data: Arc<dyn crate::plugins::DataSource> = Arc::new(org.clone());
        let mut results: Vec<Option<Result<Option<Landed>>>> = writes.iter().map(|_| None).collect();
        let mut landed = Vec::new();
        let mut todo: Vec<usize> = (0..writes.len()).collect();
        for _ in 0..=REJUDGE {
            let mut judged = Vec::new();
            for &i in &todo {
                match self.judge_write(at, &plugins, &data, &writes[i], chain) {
                    Ok(Some(j)) => judged.push((i, j)),
                    Ok(None) => results[i] = Some(Ok(None)),
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            todo.clear();
            if judged.is_empty() {
                break;
            }
            let committed = self.commit(at, writes, &judged, chain)?;
            for ((i, mut j), outcome) in judged.into_iter().zip(committed) {
                match outcome {
                    Committed::Stored(record) => {
                        chain.warnings.extend(j.warnings.iter().cloned());
                        if let Some(c) = record.as_ref().and_then(Entity::customer_id) {
                            chain.touched.insert(c);
                        }
                        j.change.after = record.clone();
                        let operation = j.change.operation;
                        results[i] = Some(Ok(Some(Landed { record, operation, warnings: j.warnings })));
                        landed.push((i, j.change));
                    }
                    Committed::Stale => todo.push(i),
                    Committed::Failed(e) => results[i] = Some(Err(e.into())),
                }
            }
        }
        for i in todo {
            results[i] = Some(Err(PipelineError::Conflict(format!(
                "the record kept changing while policies judged this write ({} tries); try again",
                REJUDGE + 1
            ))));
        }
        landed.sort_by_key(|(i, _)| *i);
        for (_, change) in &landed {
            self.after(org, &plugins, &data, change, chain);
        }
        Ok(results.into_iter().map(|r| r.expect("every write has a result")).collect())
    }

    /// Build a write's change from what is stored and judge it with the enabled policies.
    fn judge_write(
        &self,
        at: Batch<'_>,
        plugins: &OrgPlugins,
        data: &Arc<dyn crate::plugins::DataSource>,
        write: &Write,
        chain: &mut Chain,
    ) -> Result<Option<Judged>> {
        let Batch { org, actor, origin, depth } = at;
        let kind = write.kind();
        let stored = kind.stored(org)?;
        let proposed = kind.propose(org, stored.clone())?;
        if depth == 0 {
            // A write that would change nothing still answers "missing" outside the scope.
            match &proposed {
                Some(p) => within_scope(org, &chain.scope, p.before.as_ref(), p.after.as_ref())?,
                None => within_scope(org, &chain.scope, stored.as_ref(), None)?,
            }
        }
        let Some(proposed) = proposed else { return Ok(None) };
        // What policies read, and a single write's audit row; an unjudged import batch's audit
        // row lists records, not fields, so it is not worth computing there.
        let changed_fields = match &proposed.after {
            Some(a) if !(plugins.policies.is_empty() && origin == Origin::Import) => {
                a.changed_fields(proposed.before.as_ref())
            }
            _ => Vec::new(),
        };
        let mut change = Change {
            operation: proposed.operation,
            before: proposed.before,
            after: proposed.after,
            changed_fields,
            actor: actor.clone(),
            origin,
            depth,
            at: now_ms(),
        };
        let traces = chain.traces.len();
        let warnings = chain.warnings.len();
        let private = std::mem::replace(&mut chain.private, erases(&change));
        let decisions = self.judge(org, plugins, data, &mut change, chain);
        chain.private = private;
        let warnings = chain.warnings.split_off(warnings);
        Ok(Some(Judged { stored, change, decisions: decisions?, traces: traces..chain.traces.len(), warnings }))
    }

    /// Commit judged writes in one short transaction (SQL only: no plugin runs here), with their
    /// audit rows, the chain's traces and its denials' events. A write whose record is no longer
    /// what was judged is left out (`Stale`) to be judged again.
    fn commit(
        &self,
        at: Batch<'_>,
        writes: &[Write],
        judged: &[(usize, Judged)],
        chain: &mut Chain,
    ) -> Result<Vec<Committed>> {
        let Batch { org, actor, origin, depth } = at;
        // The organization's buffered traces go first, so that an erasure below removes any that
        // concern its customer.
        let pending = self.take_traces(org);
        let mut batch = (origin == Origin::Import).then(ImportAudit::default);
        let committed = org.write(|tx| {
            tx.record_traces(&pending)?;
            let mut out = Vec::with_capacity(judged.len());
            for (i, j) in judged {
                let kind = writes[*i].kind();
                let outcome = tx.all_or_nothing(|| {
                    if kind.stored(tx)? != j.stored {
                        return Ok(None);
                    }
                    let stored = kind.commit(tx, actor, &j.change)?;
                    let (action, entity) = kind.audited(&j.change);
                    let id = stored.as_ref().or(j.change.before.as_ref()).and_then(Entity::id);
                    if kind.audits_itself() {
                        // The store's own audit row says what happened; this one, what policies decided.
                        if !j.decisions.is_empty() {
                            let detail = json!({ "origin": j.change.origin, "decisions": j.decisions });
                            tx.audit(actor, "policy.decisions", entity, id, detail)?;
                        }
                    } else if batch.is_none() {
                        let detail = json!({
                            "origin": j.change.origin, "depth": depth, "changed_fields": j.change.changed_fields,
                            "decisions": j.decisions, "record": stored,
                        });
                        tx.audit(actor, action, entity, id, detail)?;
                        let customer = stored.as_ref().and_then(Entity::customer_id);
                        tx.log_change(&Change { after: stored.clone(), ..j.change.clone() }, customer)?;
                    }
                    if let Some(stored) = &stored {
                        tx.record_event(j.change.before.as_ref(), stored)?;
                    }
                    if let Some(batch) = batch.as_mut().filter(|_| !kind.audits_itself()) {
                        batch.add(entity, id, j, stored.as_ref());
                    }
                    Ok(Some(stored))
                });
                out.push(match outcome {
                    Ok(Some(stored)) => Committed::Stored(stored),
                    Ok(None) => Committed::Stale,
                    Err(e) if e.is_storage_failure() => return Err(e),
                    Err(e) => Committed::Failed(e),
                });
            }
            // Each call's trace carries the customer it concerns (a new one's id is known only
            // now), so that erasing the customer later finds it.
            for ((_, j), outcome) in judged.iter().zip(&out) {
                let record = match outcome {
                    Committed::Stored(stored) => stored.as_ref(),
                    _ => None,
                };
                let customer = record.or(j.change.before.as_ref()).and_then(Entity::customer_id);
                for t in &mut chain.traces[j.traces.clone()] {
                    t.customer = t.customer.or(customer);
                }
            }
            if let Some(batch) = batch.take().filter(|b| b.entity.is_some()) {
                let entity = batch.entity.unwrap_or("record");
                let detail =
                    json!({ "created": batch.created, "updated": batch.updated, "decisions": batch.decisions });
                tx.audit(actor, "import", entity, None, detail)?;
            }
            tx.record_traces(&chain.traces)?;
            for (customer, payload) in &chain.denials {
                tx.webhook_event(store::POLICY_DENIED, *customer, || Ok(payload.clone()))?;
            }
            Ok(out)
        });
        match committed {
            Ok(out) => {
                chain.traces.clear();
                chain.denials.clear();
                Ok(out)
            }
            Err(e) => {
                self.keep_traces(org, pending)?;
                Err(e.into())
            }
        }
    }

    /// The after hooks of a change that landed, and the follow-up actions they ask for.
    fn after(
        &self,
        org: &OrgStore,
        plugins: &OrgPlugins,
        data: &Arc<dyn crate::plugins::DataSource>,
        change: &Change,
        chain: &mut Chain,
    ) {
        let private = std::mem::replace(&mut chain.private, erases(change));
        self.after_hooks(org, plugins, data, change, chain);
        chain.private = private;
    }

    fn after_hooks(
        &self,
        org: &OrgStore,
        plugins: &OrgPlugins,
        data: &Arc<dyn crate::plugins::DataSource>,
        change: &Change,
        chain: &mut Chain,
    ) {
        let digest = digest(change);
        let customer = change.after.as_ref().and_then(Entity::customer_id);
        for active in &plugins.policies {
            let ctx = active.context(data, &self.shared.settings.policy_limits);
            let actions = match active.plugin.after(&ctx, change) {
                Ok(called) => {
                    let summary = (!called.value.is_empty()).then(|| format!("{} action(s)", called.value.len()));
                    chain.trace(
                        active,
                        "after",
                        Some(&digest),
                        customer,
                        TraceOutcome::Actions,
                        summary,
                        &called.trace,
                        None,
                    );
                    called.value
                }
                Err(e) => {
                    self.failed(org, active, "after", Some(&digest), customer, &e, chain);
                    chain.warnings.push(Warning {
                        plugin: active.row.name.clone(),
                        message: format!("its follow-up actions were skipped: {e}"),
                    });
                    continue;
                }
            };
            for (index, action) in actions.into_iter().enumerate() {
                let key = format!("{digest}:{}:{index}", active.row.name);
                self.follow_up(org, active, change, &key, action, chain);
            }
        }
    }

    /// Run the before hooks over a change, applying patches; the decisions as audited.
    fn judge(
        &self,
        org: &OrgStore,
        plugins: &OrgPlugins,
        data: &Arc<dyn crate::plugins::DataSource>,
        change: &mut Change,
        chain: &mut Chain,
    ) -> Result<Vec<Value>> {
        let mut decisions = Vec::new();
        if plugins.policies.is_empty() {
            return Ok(decisions);
        }
        // The change's identity, for traces: it changes only when a patch changes the change.
        let mut digest = digest(change);
        for active in &plugins.policies {
            let ctx = active.context(data, &self.shared.settings.policy_limits);
            let customer = change.before.as_ref().or(change.after.as_ref()).and_then(Entity::customer_id);
            let customer = customer.filter(|&c| c != 0);
            let called = active.plugin.before(&ctx, change);
            if let Some((version, shadow)) = &active.shadow {
                let theirs = shadow.before(&ctx, change);
                chain.shadow(active, *version, &digest, customer, called.as_ref().map(|c| &c.value), theirs);
            }
            let name = active.row.name.clone();
            let decision = match called {
                Ok(called) => {
                    let (outcome, summary) = describe(&called.value);
                    chain.trace(active, "before", Some(&digest), customer, outcome, summary, &called.trace, None);
                    called.value
                }
                Err(e) => {
                    self.failed(org, active, "before", Some(&digest), customer, &e, chain);
                    match active.row.failure_mode {
                        FailureMode::Closed => {
                            return Err(PipelineError::PolicyFailed {
                                plugin: name,
                                code: e.failure.code(),
                                error: e.to_string(),
                            });
                        }
                        FailureMode::Open => {
                            let message = format!("failed and was skipped (fail-open): {e}");
                            decisions.push(json!({ "plugin": name, "decision": "skipped", "error": e.to_string() }));
                            chain.warnings.push(Warning { plugin: name, message });
                            continue;
                        }
                    }
                }
            };
            decisions.push(json!({ "plugin": name, "version": active.row.active_version, "decision": decision }));
            match decision {
                Decision::Allow => {}
                Decision::Warn { message } => chain.warnings.push(Warning { plugin: name, message }),
                Decision::Deny(d) => {
                    chain.denied(change, &name, &d);
                    return Err(PipelineError::Denied { plugin: name, reason: d.reason, field: d.field });
                }
                Decision::Patch { patches } => {
                    if let Err(e) = change.apply_patches(&patches) {
                        let error = format!("returned a patch that cannot be applied: {e}");
                        // The call returned, but what it returned is unusable: a failure of the
                        // plugin's, in its trace like any other.
                        let trace = chain.traces.last_mut().expect("traced above");
                        trace.outcome = TraceOutcome::Error;
                        trace.error = Some(format!("plugin `{name}` {error}"));
                        return Err(PipelineError::PolicyFailed { plugin: name, code: "bad_output", error });
                    }
                    digest = self::digest(change);
                }
            }
        }
        Ok(decisions)
    }

    /// Record a failed call, and disable the plugin when it keeps failing.
    #[allow(clippy::too_many_arguments)] // the trace's fields, as `Chain::trace` takes them
    fn failed(
        &self,
        org: &OrgStore,
        active: &Active,
        hook: &str,
        digest: Option<&str>,
        customer: Option<Id>,
        error: &CallError,
        chain: &mut Chain,
    ) {
        tracing::warn!(org = %org.org().slug, plugin = %active.row.name, hook, code = error.failure.code(), "{error}");
        chain.trace(active, hook, digest, customer, TraceOutcome::Error, None, &error.trace, Some(error.to_string()));
        // The failures already recorded plus this one.
        let since = now_ms() - self.shared.settings.failure_window_ms;
        let recorded = org.failures_since(&active.row.name, since).unwrap_or(0);
        let failure =
            |t: &&TraceRecord| t.plugin == active.row.name && t.outcome == TraceOutcome::Error && t.at >= since;
        let buffered = {
            let all = self.shared.traces.lock().unwrap_or_else(|e| e.into_inner());
            all.get(&org.org().id).map_or(0, |b| b.iter().filter(failure).count())
        };
        let pending = (buffered + chain.traces.iter().filter(failure).count()) as u64;
        if recorded + pending >= self.shared.settings.failure_threshold {
            let reason = format!(
                "disabled by the host after {} failures within {} minutes; last: {error}",
                recorded + pending,
                self.shared.settings.failure_window_ms / 60_000
            );
            self.disable_failing(org, &active.row.name, &reason);
        }
    }

    /// Disable a plugin that keeps failing, with an audit row saying why.
    fn disable_failing(&self, org: &OrgStore, name: &str, reason: &str) {
        {
            let host = Actor { name: "rapport".into(), role: crate::model::Role::Host };
            let disabled = org.write(|tx| {
                let Some(mut row) = tx.plugin(name)? else { return Ok(false) };
                if !row.enabled {
                    return Ok(false);
                }
                row.enabled = false;
                row.disabled_reason = Some(reason.to_owned());
                tx.save_plugin(&host, "plugin.auto_disable", &row)?;
                Ok(true)
            });
            if matches!(disabled, Ok(true)) {
                tracing::error!(org = %org.org().slug, plugin = %name, "{reason}");
                self.invalidate(org);
            }
        }
    }
}

/// How many times a write whose record changed while it was judged is judged again before it is
/// refused as a conflict.
pub const REJUDGE: usize = 3;

/// What every write of one `apply_all` shares: the organization, who writes, why, and how deep
/// in its chain of follow-up actions.
#[derive(Clone, Copy)]
pub(crate) struct Batch<'a> {
    pub org: &'a OrgStore,
    pub actor: &'a Actor,
    pub origin: Origin,
    pub depth: u32,
}

/// Whether a batch meets the organization's policies, or is an owner's audited bypass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Judging {
    Policies,
    Bypass,
}

/// A write judged and waiting for its commit.
struct Judged {
    /// The stored record the change was built from: the commit checks it is still the same.
    stored: Option<Entity>,
    change: Change,
    /// Every policy's decision, for the audit row.
    decisions: Vec<Value>,
    /// The judging calls' rows in `Chain::traces`.
    traces: std::ops::Range<usize>,
    warnings: Vec<Warning>,
}

/// An import batch's one audit row: what it created and changed, and what policies said of it.
/// One row per record would double the size of a large import in the audit log.
#[derive(Default)]
struct ImportAudit {
    entity: Option<&'static str>,
    created: Vec<Id>,
    /// `{id, before, after}` for each record changed.
    updated: Vec<Value>,
    /// `{id, decisions}` for each record a policy said more than "allow" of.
    decisions: Vec<Value>,
}

impl ImportAudit {
    fn add(&mut self, entity: &'static str, id: Option<Id>, j: &Judged, stored: Option<&Entity>) {
        self.entity = Some(entity);
        let id = id.unwrap_or_default();
        match j.change.operation {
            Operation::Create => self.created.push(id),
            _ => {
                self.updated.push(json!({ "id": id, "before": bare(j.change.before.as_ref()), "after": bare(stored) }));
            }
        }
        let said = |d: &Value| d.get("decision").and_then(|d| d.get("decision")).is_none_or(|d| d != "allow");
        if j.decisions.iter().any(said) {
            self.decisions.push(json!({ "id": id, "decisions": j.decisions }));
        }
    }
}

/// A record as itself, without the kind it is wrapped in (`{"email": …}`, not
/// `{"customer": {"email": …}}`): the shape the audit log and its erasure scrub expect.
fn bare(e: Option<&Entity>) -> Value {
    match serde_json::to_value(e) {
        Ok(Value::Object(m)) if m.len() == 1 => m.into_iter().next().map_or(Value::Null, |(_, v)| v),
        Ok(other) => other,
        Err(_) => Value::Null,
    }
}

/// What the commit did with one judged write.
#[allow(clippy::large_enum_variant)] // one per write of a batch, moved once: a box would buy nothing
enum Committed {
    /// Landed: the record as stored (`None` after an erasure).
    Stored(Option<Entity>),
    /// Its record changed since it was judged.
    Stale,
    /// Refused by the store (a rule only the database can check); nothing of it landed.
    Failed(StoreError),
}

/// A write that landed, as one of a batch.
pub(crate) struct Landed {
    pub record: Option<Entity>,
    pub operation: Operation,
    /// Its policies' warnings.
    pub warnings: Vec<Warning>,
}

/// A caller who works in a scope sees nothing outside it (a record there is as missing as one
/// that does not exist) and may not move a record out of it.
fn within_scope(org: &OrgStore, scope: &Scope, before: Option<&Entity>, after: Option<&Entity>) -> Result<()> {
    if scope.is_whole_org() {
        return Ok(());
    }
    let visible = |customer: Id| -> Result<bool> { Ok(org.customer(customer)?.is_some_and(|c| scope.allows(&c))) };
    match before {
        Some(Entity::Customer(c)) if !scope.allows(c) => {
            return Err(PipelineError::NotFound(format!("customer {} does not exist", c.id)));
        }
        Some(Entity::Interaction(i)) if !visible(i.customer)? => {
            return Err(PipelineError::NotFound(format!("interaction {} does not exist", i.id)));
        }
        _ => {}
    }
    match after {
        Some(Entity::Customer(c)) if !scope.allows(c) => Err(PipelineError::OutOfScope(format!(
            "this key works in {} only; the customer would land outside it",
            scope.filter().unwrap_or_default()
        ))),
        Some(Entity::Interaction(i)) if !visible(i.customer)? => {
            Err(PipelineError::NotFound(format!("customer {} does not exist", i.customer)))
        }
        _ => Ok(()),
    }
}

/// Whether a change erases a customer: its traces then keep no log lines or summaries.
fn erases(change: &Change) -> bool {
    change.operation == Operation::Delete
}

/// The change's identity for traces and action keys: which change, without its content.
pub(crate) fn digest(change: &Change) -> String {
    let bytes = serde_json::to_vec(change).expect("a change serializes");
    hex::encode(&Sha256::digest(&bytes)[..16])
}

/// A decision's trace outcome and a short summary (the message a person reads in the trace).
fn describe(d: &Decision) -> (TraceOutcome, Option<String>) {
    match d {
        Decision::Allow => (TraceOutcome::Allow, None),
        Decision::Warn { message } => (TraceOutcome::Warn, Some(message.clone())),
        Decision::Deny(d) => (
            TraceOutcome::Deny,
            Some(match &d.field {
                Some(f) => format!("{} (field `{f}`)", d.reason),
                None => d.reason.clone(),
            }),
        ),
        Decision::Patch { patches } => {
            (TraceOutcome::Patch, Some(patches.iter().map(|p| p.field.as_str()).collect::<Vec<_>>().join(", ")))
        }
    }
}

/// What one write's chain of changes gathers on the way.
#[derive(Default)]
pub(crate) struct Chain {
    pub warnings: Vec<Warning>,
    pub actions: Vec<ActionOutcome>,
    pub traces: Vec<TraceRecord>,
    pub touched: BTreeSet<Id>,
    /// The change erases a customer: traces keep no log lines or summaries of it.
    pub private: bool,
    /// Who asked for the chain's first write may see only this part of the organization.
    pub scope: Scope,
    /// `policy.denied` events to queue (customer, payload), written with the traces.
    pub denials: Vec<(Option<Id>, Value)>,
}

impl Chain {
    /// Remember a denial for `policy.denied`: who denied what and why, not the record itself.
    fn denied(&mut self, change: &Change, plugin: &str, denial: &crate::model::Denial) {
        let record = change.after.as_ref().or(change.before.as_ref());
        let customer = record.and_then(Entity::customer_id).filter(|&c| c != 0);
        let entity = match record {
            Some(Entity::Customer(_)) => "customer",
            Some(Entity::Interaction(_)) => "interaction",
            Some(Entity::Distributor(_)) => "distributor",
            Some(Entity::Branch(_)) => "branch",
            None => "record",
        };
        let payload = json!({
            "customer": customer, "plugin": plugin, "reason": denial.reason, "field": denial.field,
            "operation": change.operation, "entity": entity, "origin": change.origin,
        });
        self.denials.push((customer, payload));
    }

    #[allow(clippy::too_many_arguments)]
    pub fn trace(
        &mut self,
        active: &Active,
        hook: &str,
        digest: Option<&str>,
        customer: Option<Id>,
        outcome: TraceOutcome,
        summary: Option<String>,
        trace: &Trace,
        error: Option<String>,
    ) {
        let mut r = TraceRecord {
            change_digest: digest.map(str::to_owned),
            customer,
            outcome,
            summary,
            error,
            ..active.callee().traced(hook, trace)
        };
        if self.private {
            r.summary = None;
            r.logs = Value::Array(Vec::new());
        }
        self.traces.push(r);
    }

    /// Compare a shadow version's decision with the active one's; only the trace records it.
    fn shadow(
        &mut self,
        active: &Active,
        version: u32,
        digest: &str,
        customer: Option<Id>,
        ours: std::result::Result<&Decision, &CallError>,
        theirs: std::result::Result<Called<Decision>, CallError>,
    ) {
        let (outcome, summary, trace, error) = match theirs {
            Ok(c) => {
                let agree = ours.ok() == Some(&c.value);
                let active = ours.map_or(TraceOutcome::Error, |d| describe(d).0);
                let summary = format!("shadow: {}; active: {active}", describe(&c.value).0);
                let outcome = if agree { TraceOutcome::Agree } else { TraceOutcome::Disagree };
                (outcome, Some(summary), c.trace, None)
            }
            Err(e) => (TraceOutcome::Disagree, Some("shadow failed".into()), *e.trace.clone(), Some(e.to_string())),
        };
        let callee = Callee { version, ..active.callee() };
        self.traces.push(TraceRecord {
            change_digest: Some(digest.to_owned()),
            customer,
            outcome,
            summary,
            error,
            ..callee.traced("shadow", &trace)
        });
    }
}

/// The plugin version a call went to: the start of every trace row.
pub(crate) struct Callee<'a> {
    pub plugin: &'a str,
    pub version: u32,
    pub world: World,
}

impl Callee<'_> {
    /// A trace row for one call, outcome `ok`; callers set what else they know.
    pub fn traced(&self, hook: &str, trace: &Trace) -> TraceRecord {
        TraceRecord {
            id: 0,
            plugin: self.plugin.to_owned(),
            version: self.version,
            world: self.world.name().to_owned(),
            hook: hook.to_owned(),
            change_digest: None,
            customer: None,
            outcome: TraceOutcome::Ok,
            summary: None,
            duration_us: trace.duration_us,
            fuel: trace.fuel,
            logs: serde_json::to_value(&trace.logs).unwrap_or(Value::Null),
            error: None,
            at: now_ms(),
        }
    }

    /// A call's trace row: `ok`, or `error` with the error.
    pub fn outcome<T>(&self, hook: &str, result: &std::result::Result<Called<T>, CallError>) -> TraceRecord {
        match result {
            Ok(c) => self.traced(hook, &c.trace),
            Err(e) => {
                TraceRecord { outcome: TraceOutcome::Error, error: Some(e.to_string()), ..self.traced(hook, &e.trace) }
            }
        }
    }
}

impl Active {
    pub(crate) fn callee(&self) -> Callee<'_> {
        Callee { plugin: &self.row.name, version: self.row.active_version, world: self.plugin.world() }
    }
}

/// What store errors the pipeline hands through unchanged.
impl From<store::filter::FilterError> for PipelineError {
    fn from(e: store::filter::FilterError) -> Self {
        PipelineError::Store(e.into())
    }
}
