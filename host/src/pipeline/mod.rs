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
//! Each policy runs exactly once per change: plugin calls are never retried, and a failed commit
//! fails the write rather than judging it again.

mod actions;
mod import;
mod registry;
pub(crate) mod report;
mod scoring;
mod trial;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::model::{
    Actor, Branch, Change, Customer, Decision, Distributor, Entity, Id, Interaction, Operation, Origin, Ticket,
    TicketStatus,
};
use crate::plugins::{CallContext, CallError, Called, Limits, Plugin, Runtime, Trace, World};
use crate::store::{self, FailureMode, OrgStore, PluginRow, Store, StoreError, TraceRecord, now_ms};

pub use actions::ActionOutcome;
pub use registry::{ConfigError, Installed as InstalledVersion};
pub use report::{Format, render};
pub use scoring::{NativeScorer, Scorer, Scoring};
pub use trial::{DryRun, ShadowReport};

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

/// One change to an organization's data.
#[derive(Debug, Clone)]
pub enum Write {
    CreateCustomer(Customer),
    /// The whole record as it should be (read, change, write back).
    UpdateCustomer(Customer),
    /// An update that lands only if the stored record is still the one with this ETag
    /// ([`Customer::etag`]): optimistic concurrency for clients that read, edit, write back.
    UpdateCustomerIfMatch {
        customer: Customer,
        etag: String,
    },
    AddInteraction(Interaction),
    /// The service state of a ticket interaction (status, category, due time, resolution): the
    /// rest of an interaction is a fact and never changes. Closing sets `closed_at` to the
    /// write's time unless given.
    UpdateTicket {
        interaction: Id,
        ticket: Ticket,
    },
    EraseCustomer(Id),
    /// Merge `remove` into `keep` (duplicates): judged as an update of `keep` to the merged
    /// profile, with origin `merge`.
    MergeCustomers {
        keep: Id,
        remove: Id,
    },
    /// Create or update a branch (by code).
    SaveBranch(Branch),
    /// Create (id 0) or update a distributor; a new `sponsor` moves it in the tree.
    SaveDistributor(Distributor),
}

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
    pub fn flush_traces(&self, org: &str) -> Result<()> {
        let org = self.org(org)?;
        let rows = self.take_traces(&org);
        if !rows.is_empty() {
            org.write(|tx| tx.record_traces(&rows))?;
        }
        Ok(())
    }

    /// A plugin's execution trace, newest first (buffered rows included).
    pub fn traces(&self, org: &str, plugin: &str, before: Option<i64>, limit: u32) -> Result<Vec<TraceRecord>> {
        self.flush_traces(org)?;
        Ok(self.org(org)?.traces(plugin, before, limit)?)
    }

    /// Keep a chain's traces gathered so far (for paths that do not reach a commit), and queue
    /// its denials' `policy.denied` events: a denied write rolls back, so they take a small
    /// transaction of their own.
    fn flush_chain(&self, org: &OrgStore, chain: &mut Chain) -> Result<()> {
        if chain.deferred {
            return Ok(());
        }
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

    pub fn org(&self, slug: &str) -> Result<OrgStore> {
        Ok(self.shared.store.org(slug)?)
    }

    /// Apply one write for `actor` through the whole pipeline.
    pub fn write(&self, org: &str, actor: &Actor, origin: Origin, write: Write) -> Result<Outcome> {
        let org = self.org(org)?;
        let mut chain = Chain::default();
        let record = self.apply(&org, actor, origin, 0, write, &mut chain)?;
        let rescored = self.rescore_touched(&org, &chain.touched, &mut chain.traces);
        self.flush_chain(&org, &mut chain)?;
        Ok(Outcome {
            changed: record.is_some(),
            record: record.flatten(),
            warnings: chain.warnings,
            actions: chain.actions,
            rescored,
        })
    }

    /// One change, at `depth` in its chain of actions. `Ok(None)` when it changed nothing;
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
        let Some(change) = self.change_for(org, actor, origin, depth, &write)? else { return Ok(None) };
        let private = std::mem::replace(&mut chain.private, matches!(write, Write::EraseCustomer(_)));
        let result = self.apply_change(org, actor, depth, write, change, chain);
        chain.private = private;
        result
    }

    fn apply_change(
        &self,
        org: &OrgStore,
        actor: &Actor,
        depth: u32,
        write: Write,
        mut change: Change,
        chain: &mut Chain,
    ) -> Result<Option<Option<Entity>>> {
        let plugins = self.plugins_of(org)?;
        let data: Arc<dyn crate::plugins::DataSource> = Arc::new(org.clone());
        let decisions = self.judge(org, &plugins, &data, &mut change, chain)?;

        // Commit: the write, its audit row with every decision, the change for dry-runs, and the
        // policies' traces (with the organization's buffered ones, written first so that an
        // erasure below removes any that concern its customer), in one transaction.
        let pending = self.take_traces(org);
        let committed = org.write(|tx| {
            tx.record_traces(&pending)?;
            let stored = match (&write, &change.after) {
                (Write::CreateCustomer(_), Some(Entity::Customer(c))) => {
                    Some(Entity::Customer(tx.insert_customer(&Customer { id: 0, ..c.clone() })?))
                }
                (Write::UpdateCustomer(_) | Write::UpdateCustomerIfMatch { .. }, Some(Entity::Customer(c))) => {
                    if let Write::UpdateCustomerIfMatch { etag, .. } = &write {
                        check_etag(tx.customer(c.id)?.as_ref(), etag)?;
                    }
                    tx.update_customer(c)?;
                    tx.customer(c.id)?.map(Entity::Customer)
                }
                (Write::AddInteraction(_), Some(Entity::Interaction(i))) => {
                    let id = tx.insert_interaction(i)?;
                    Some(Entity::Interaction(Interaction { id, ..i.clone() }))
                }
                (Write::UpdateTicket { interaction, .. }, Some(Entity::Interaction(i))) => {
                    // Policies may patch only the ticket: everything else stays as it happened.
                    let before = match &change.before {
                        Some(Entity::Interaction(b)) => b,
                        _ => unreachable!("a ticket update has the stored interaction as `before`"),
                    };
                    if (Interaction { ticket: None, ..i.clone() }) != (Interaction { ticket: None, ..before.clone() }) {
                        return Err(StoreError::Invalid(
                            "a policy's patch changed an interaction's facts; only its ticket may change".into(),
                        ));
                    }
                    let ticket = i.ticket.clone().ok_or_else(|| {
                        StoreError::Invalid("a policy's patch removed the ticket of a ticket interaction".into())
                    })?;
                    tx.update_ticket(*interaction, &ticket)?;
                    Some(Entity::Interaction(i.clone()))
                }
                (Write::EraseCustomer(id), _) => {
                    tx.erase_customer(actor, *id)?;
                    None
                }
                (Write::MergeCustomers { keep, remove }, Some(Entity::Customer(c))) => {
                    Some(Entity::Customer(tx.merge_customers(actor, *keep, *remove, Some(c))?))
                }
                (Write::SaveBranch(_), Some(Entity::Branch(b))) => Some(Entity::Branch(tx.save_branch(b)?)),
                (Write::SaveDistributor(_), Some(Entity::Distributor(d))) => {
                    Some(Entity::Distributor(tx.save_distributor(d)?))
                }
                _ => return Err(StoreError::Invalid("a policy's patch replaced the record with another kind".into())),
            };
            let (action, entity, id) = audit_target(&write, stored.as_ref());
            let customer =
                stored.as_ref().and_then(Entity::customer_id).or(change.before.as_ref().and_then(Entity::customer_id));
            let mut logged = change.clone();
            logged.after = stored.clone();
            if matches!(write, Write::EraseCustomer(_) | Write::MergeCustomers { .. }) {
                // The store's own audit row says what happened; this one, what policies decided.
                if !decisions.is_empty() {
                    tx.audit(
                        actor,
                        "policy.decisions",
                        entity,
                        id,
                        json!({ "origin": change.origin, "decisions": decisions }),
                    )?;
                }
            } else {
                tx.audit(
                    actor,
                    action,
                    entity,
                    id,
                    json!({
                        "origin": change.origin, "depth": depth, "changed_fields": change.changed_fields,
                        "decisions": decisions, "record": stored,
                    }),
                )?;
                tx.log_change(&logged, customer)?;
            }
            if let Some(stored) = &stored {
                tx.record_event(change.before.as_ref(), stored)?;
            }
            for t in &mut chain.traces {
                t.customer = t.customer.or(customer);
            }
            tx.record_traces(&chain.traces)?;
            Ok(stored)
        });
        let stored = match committed {
            Ok(stored) => stored,
            Err(e) => {
                self.keep_traces(org, pending)?;
                return Err(e.into());
            }
        };
        chain.traces.clear();
        if let Some(c) = stored.as_ref().and_then(Entity::customer_id) {
            chain.touched.insert(c);
        }

        change.after = stored.clone();
        self.after(org, &plugins, &data, &change, chain);
        Ok(Some(stored))
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
        let digest = digest(change);
        let customer = change.after.as_ref().and_then(Entity::customer_id);
        for active in &plugins.policies {
            let ctx = active.context(data, &self.shared.settings.policy_limits);
            let actions = match active.plugin.after(&ctx, change) {
                Ok(called) => {
                    let summary = (!called.value.is_empty()).then(|| format!("{} action(s)", called.value.len()));
                    chain.trace(active, "after", Some(&digest), customer, "actions", summary, &called.trace, None);
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
                            self.flush_chain(org, chain)?;
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
                    self.flush_chain(org, chain)?;
                    return Err(PipelineError::Denied { plugin: name, reason: d.reason, field: d.field });
                }
                Decision::Patch { patches } => {
                    if let Err(e) = change.apply_patches(&patches) {
                        let error = format!("returned a patch that cannot be applied: {e}");
                        // The call returned, but what it returned is unusable: a failure of the
                        // plugin's, in its trace like any other.
                        let trace = chain.traces.last_mut().expect("traced above");
                        trace.outcome = "error".into();
                        trace.error = Some(format!("plugin `{name}` {error}"));
                        self.flush_chain(org, chain)?;
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
        chain.trace(active, hook, digest, customer, "error", None, &error.trace, Some(error.to_string()));
        // The failures already recorded plus this one.
        let since = now_ms() - self.shared.settings.failure_window_ms;
        let recorded = org.failures_since(&active.row.name, since).unwrap_or(0);
        let failure = |t: &&TraceRecord| t.plugin == active.row.name && t.outcome == "error" && t.at >= since;
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
            if chain.deferred {
                // Inside an import's transaction: disable once it commits.
                chain.disable.push((active.row.name.clone(), reason));
            } else {
                self.disable_failing(org, &active.row.name, &reason);
            }
        }
    }

    /// Disable a plugin that keeps failing, with an audit row saying why.
    fn disable_failing(&self, org: &OrgStore, name: &str, reason: &str) {
        {
            let host = Actor { name: "rapport".into(), role: "host".into() };
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

    /// The change a write makes, as policies see it; `None` when it would change nothing.
    fn change_for(
        &self,
        org: &OrgStore,
        actor: &Actor,
        origin: Origin,
        depth: u32,
        write: &Write,
    ) -> Result<Option<Change>> {
        let (operation, before, after) = match write {
            Write::CreateCustomer(c) => (Operation::Create, None, Some(Entity::Customer(org.normalized(c.clone())))),
            Write::UpdateCustomer(c) | Write::UpdateCustomerIfMatch { customer: c, .. } => {
                let before = org
                    .customer(c.id)?
                    .ok_or_else(|| PipelineError::NotFound(format!("customer {} does not exist", c.id)))?;
                if let Write::UpdateCustomerIfMatch { etag, .. } = write {
                    check_etag(Some(&before), etag)?;
                }
                let after = Customer {
                    created_at: before.created_at,
                    updated_at: before.updated_at,
                    ..org.normalized(c.clone())
                };
                if after == before {
                    return Ok(None);
                }
                (Operation::Update, Some(Entity::Customer(before)), Some(Entity::Customer(after)))
            }
            Write::AddInteraction(i) => {
                if org.customer(i.customer)?.is_none() {
                    return Err(PipelineError::NotFound(format!("customer {} does not exist", i.customer)));
                }
                if let Some(ext) = &i.external_id
                    && let Some(stored) = org.interaction_by_external_id(&i.source, ext)?
                {
                    if (Interaction { id: 0, ..stored.clone() }) == (Interaction { id: 0, ..i.clone() }) {
                        return Ok(None);
                    }
                    return Err(PipelineError::Invalid(format!(
                        "interaction {}:{ext} (id {}) already exists with other values; interactions are facts and \
                         are not overwritten",
                        i.source, stored.id
                    )));
                }
                (Operation::Create, None, Some(Entity::Interaction(i.clone())))
            }
            Write::UpdateTicket { interaction, ticket } => {
                let before = org
                    .interaction(*interaction)?
                    .ok_or_else(|| PipelineError::NotFound(format!("interaction {interaction} does not exist")))?;
                if before.ticket.is_none() {
                    return Err(PipelineError::Invalid(format!(
                        "interaction {interaction} is a {}, not a ticket: only a ticket's state changes after it \
                         was recorded",
                        before.kind.as_str()
                    )));
                }
                let mut ticket = ticket.clone();
                if ticket.status == TicketStatus::Closed && ticket.closed_at.is_none() {
                    ticket.closed_at = Some(now_ms());
                }
                if ticket.status != TicketStatus::Closed {
                    ticket.closed_at = None;
                }
                let after = Interaction { ticket: Some(ticket), ..before.clone() };
                if after == before {
                    return Ok(None);
                }
                (Operation::Update, Some(Entity::Interaction(before)), Some(Entity::Interaction(after)))
            }
            Write::EraseCustomer(id) => {
                let before = org
                    .customer(*id)?
                    .ok_or_else(|| PipelineError::NotFound(format!("customer {id} does not exist")))?;
                (Operation::Delete, Some(Entity::Customer(before)), None)
            }
            Write::MergeCustomers { keep, remove } => {
                let find = |id: &Id| {
                    org.customer(*id)?.ok_or_else(|| PipelineError::NotFound(format!("customer {id} does not exist")))
                };
                let (kept, removed) = (find(keep)?, find(remove)?);
                if keep == remove {
                    return Err(PipelineError::Invalid("cannot merge a customer into itself".into()));
                }
                let merged = store::merged_profile(&kept, &removed);
                (Operation::Update, Some(Entity::Customer(kept)), Some(Entity::Customer(merged)))
            }
            Write::SaveBranch(b) => match org.branch(&b.code)? {
                Some(before) if &before == b => return Ok(None),
                Some(before) => (Operation::Update, Some(Entity::Branch(before)), Some(Entity::Branch(b.clone()))),
                None => (Operation::Create, None, Some(Entity::Branch(b.clone()))),
            },
            Write::SaveDistributor(d) if d.id == 0 => (Operation::Create, None, Some(Entity::Distributor(d.clone()))),
            Write::SaveDistributor(d) => {
                let before = org
                    .distributor(d.id)?
                    .ok_or_else(|| PipelineError::NotFound(format!("distributor {} does not exist", d.id)))?;
                if &before == d {
                    return Ok(None);
                }
                (Operation::Update, Some(Entity::Distributor(before)), Some(Entity::Distributor(d.clone())))
            }
        };
        let changed_fields = match &after {
            Some(a) => a.changed_fields(before.as_ref()),
            None => Vec::new(),
        };
        Ok(Some(Change { operation, before, after, changed_fields, actor: actor.clone(), origin, depth, at: now_ms() }))
    }
}

fn audit_target(write: &Write, stored: Option<&Entity>) -> (&'static str, &'static str, Option<Id>) {
    match (write, stored) {
        (Write::CreateCustomer(_), Some(Entity::Customer(c))) => ("customer.create", "customer", Some(c.id)),
        (Write::UpdateCustomer(c) | Write::UpdateCustomerIfMatch { customer: c, .. }, _) => {
            ("customer.update", "customer", Some(c.id))
        }
        (Write::AddInteraction(_), Some(Entity::Interaction(i))) => ("interaction.create", "interaction", Some(i.id)),
        (Write::UpdateTicket { interaction, .. }, _) => ("ticket.update", "interaction", Some(*interaction)),
        (Write::EraseCustomer(id), _) => ("erase", "customer", Some(*id)),
        (Write::MergeCustomers { keep, .. }, _) => ("merge", "customer", Some(*keep)),
        (Write::SaveBranch(_), _) => ("branch.save", "branch", None),
        (Write::SaveDistributor(_), Some(Entity::Distributor(d))) => ("distributor.save", "distributor", Some(d.id)),
        _ => ("write", "record", None),
    }
}

/// Refuse an update whose client saw another version of the record than the one stored.
fn check_etag(stored: Option<&Customer>, expected: &str) -> std::result::Result<(), StoreError> {
    match stored {
        Some(c) if c.etag() == expected => Ok(()),
        Some(c) => Err(StoreError::Conflict(format!(
            "customer {} changed since you read it (its ETag is now {}, you sent {expected}); read it again, \
             apply your change, and send it with the new ETag",
            c.id,
            c.etag()
        ))),
        None => Err(StoreError::Conflict("the customer no longer exists".into())),
    }
}

/// The change's identity for traces and action keys: which change, without its content.
pub(crate) fn digest(change: &Change) -> String {
    let bytes = serde_json::to_vec(change).expect("a change serializes");
    hex::encode(&Sha256::digest(&bytes)[..16])
}

/// A decision's trace outcome and a short summary (the message a person reads in the trace).
fn describe(d: &Decision) -> (&'static str, Option<String>) {
    match d {
        Decision::Allow => ("allow", None),
        Decision::Warn { message } => ("warn", Some(message.clone())),
        Decision::Deny(d) => (
            "deny",
            Some(match &d.field {
                Some(f) => format!("{} (field `{f}`)", d.reason),
                None => d.reason.clone(),
            }),
        ),
        Decision::Patch { patches } => {
            ("patch", Some(patches.iter().map(|p| p.field.as_str()).collect::<Vec<_>>().join(", ")))
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
    /// Inside another transaction (an import batch): writes wait for [`Chain::flush`] after it.
    pub deferred: bool,
    /// Plugins to disable for repeated failures, once writing is possible.
    pub disable: Vec<(String, String)>,
    /// The change erases a customer: traces keep no log lines or summaries of it.
    pub private: bool,
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
        outcome: &str,
        summary: Option<String>,
        trace: &Trace,
        error: Option<String>,
    ) {
        let mut r = TraceRecord {
            change_digest: digest.map(str::to_owned),
            customer,
            outcome: outcome.to_owned(),
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
                let summary =
                    format!("shadow: {}; active: {}", describe(&c.value).0, ours.map_or("error", |d| describe(d).0));
                (if agree { "agree" } else { "disagree" }, Some(summary), c.trace, None)
            }
            Err(e) => ("disagree", Some("shadow failed".into()), *e.trace.clone(), Some(e.to_string())),
        };
        let callee = Callee { version, ..active.callee() };
        self.traces.push(TraceRecord {
            change_digest: Some(digest.to_owned()),
            customer,
            outcome: outcome.to_owned(),
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
            outcome: "ok".to_owned(),
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
                TraceRecord { outcome: "error".into(), error: Some(e.to_string()), ..self.traced(hook, &e.trace) }
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
