//! Contract `rapport:plugin@0.1.0`: its bindings, its host functions, and the conversions between
//! its types and the host's domain model.
//!
//! One module per contract version (as Zed's `since_v0_*.rs`): when 0.2.0 ships, this module stays
//! as it is and keeps running 0.1.x plugins, converting at this boundary so that nothing past it
//! matches on versions.

use serde_json::Value;
use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use super::state::{Level, State};
use super::{Failure, World};
use crate::model;

/// The versions this module runs: 0.1.x (the component model matches imports semver-compatibly).
pub const VERSION: (u64, u64) = (0, 1);

mod policy_world {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "policy",
        imports: { default: trappable },
    });
}

/// The other worlds reuse the policy world's interface bindings, so that one `Host` impl and one
/// set of types serve all three.
macro_rules! world_sharing_interfaces {
    ($module:ident, $world:literal) => {
        mod $module {
            wasmtime::component::bindgen!({
                path: "../wit/v0.1.0",
                world: $world,
                imports: { default: trappable },
                with: {
                    "rapport:plugin/types": super::policy_world::rapport::plugin::types,
                    "rapport:plugin/store": super::policy_world::rapport::plugin::store,
                    "rapport:plugin/log": super::policy_world::rapport::plugin::log,
                    "rapport:plugin/config": super::policy_world::rapport::plugin::config,
                },
            });
        }
    };
}

world_sharing_interfaces!(scorer_world, "scorer");
world_sharing_interfaces!(reporter_world, "reporter");

use policy_world::rapport::plugin::{config, log, store, types as wit};

/// Add this version's interfaces to a linker (all three worlds import the same ones).
pub fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    wit::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    store::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    log::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    config::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    Ok(())
}

/// A component of this version, ready to instantiate.
pub enum Pre {
    Policy(policy_world::PolicyPre<State>),
    Scorer(scorer_world::ScorerPre<State>),
    Reporter(reporter_world::ReporterPre<State>),
}

impl Pre {
    /// Check the component's exports against the world's types and resolve them once.
    pub fn new(linker: &Linker<State>, component: &Component, world: World) -> wasmtime::Result<Pre> {
        let pre = linker.instantiate_pre(component)?;
        Ok(match world {
            World::Policy => Pre::Policy(policy_world::PolicyPre::new(pre)?),
            World::Scorer => Pre::Scorer(scorer_world::ScorerPre::new(pre)?),
            World::Reporter => Pre::Reporter(reporter_world::ReporterPre::new(pre)?),
        })
    }

    /// A fresh instance. Instantiation runs no plugin code (the SDK's work happens in exports).
    pub fn instantiate(&self, store: &mut Store<State>) -> wasmtime::Result<Live> {
        Ok(match self {
            Pre::Policy(pre) => Live::Policy(pre.instantiate(store)?),
            Pre::Scorer(pre) => Live::Scorer(pre.instantiate(store)?),
            Pre::Reporter(pre) => Live::Reporter(pre.instantiate(store)?),
        })
    }
}

/// An instance of a 0.1 component, callable for as long as it has not trapped.
pub enum Live {
    Policy(policy_world::Policy),
    Scorer(scorer_world::Scorer),
    Reporter(reporter_world::Reporter),
}

type Outcome<T> = wasmtime::Result<Result<T, Failure>>;

impl Live {
    fn world(&self) -> World {
        match self {
            Live::Policy(_) => World::Policy,
            Live::Scorer(_) => World::Scorer,
            Live::Reporter(_) => World::Reporter,
        }
    }

    fn policy(&self, export: &'static str) -> Result<&policy_world::Policy, Failure> {
        match self {
            Live::Policy(p) => Ok(p),
            other => Err(wrong_world(other.world(), World::Policy, export)),
        }
    }

    fn scorer(&self, export: &'static str) -> Result<&scorer_world::Scorer, Failure> {
        match self {
            Live::Scorer(s) => Ok(s),
            other => Err(wrong_world(other.world(), World::Scorer, export)),
        }
    }

    pub fn before(&self, store: &mut Store<State>, change: &model::Change) -> Outcome<model::Decision> {
        let policy = match self.policy("before") {
            Ok(p) => p,
            Err(f) => return Ok(Err(f)),
        };
        let out = policy.call_before(store, &change_to_wit(change))?;
        Ok(out.map_err(plugin_failure).and_then(decision_from_wit).and_then(|d| patches_apply(change, d)))
    }

    pub fn after(&self, store: &mut Store<State>, change: &model::Change) -> Outcome<Vec<model::Action>> {
        let policy = match self.policy("after") {
            Ok(p) => p,
            Err(f) => return Ok(Err(f)),
        };
        let out = policy.call_after(store, &change_to_wit(change))?;
        Ok(out
            .map_err(plugin_failure)
            .and_then(|actions| actions.into_iter().enumerate().map(|(i, a)| action_from_wit(i, a)).collect()))
    }

    pub fn describe(&self, store: &mut Store<State>) -> Outcome<model::ScorerSpec> {
        let scorer = match self.scorer("describe") {
            Ok(s) => s,
            Err(f) => return Ok(Err(f)),
        };
        let out = scorer.call_describe(store)?;
        Ok(out.map_err(plugin_failure).and_then(spec_from_wit))
    }

    pub fn fit(&self, store: &mut Store<State>, population: model::FeatureBatch) -> Outcome<Vec<u8>> {
        let scorer = match self.scorer("fit") {
            Ok(s) => s,
            Err(f) => return Ok(Err(f)),
        };
        let out = scorer.call_fit(store, &batch_to_wit(population))?;
        Ok(out.map_err(plugin_failure))
    }

    /// `declared`: what this instance's `describe` returned, when the session asked it.
    pub fn score(
        &self,
        store: &mut Store<State>,
        batch: model::FeatureBatch,
        model: &[u8],
        declared: Option<&model::ScorerSpec>,
    ) -> Outcome<model::ScoreBatch> {
        let scorer = match self.scorer("score") {
            Ok(s) => s,
            Err(f) => return Ok(Err(f)),
        };
        // Kept to name the customer in an error: the batch itself is moved into the call.
        let ids = batch.ids.clone();
        let out = scorer.call_score(store, &batch_to_wit(batch), model)?;
        Ok(out.map_err(plugin_failure).and_then(|s| {
            if let Some(spec) = declared {
                names_declared(&s, spec)?;
            }
            scores_from_wit(s, &ids)
        }))
    }

    pub fn run(&self, store: &mut Store<State>, params: &Value) -> Outcome<model::Report> {
        let reporter = match self {
            Live::Reporter(r) => r,
            other => return Ok(Err(wrong_world(other.world(), World::Reporter, "run"))),
        };
        let out = reporter.call_run(store, &params.to_string())?;
        Ok(out.map_err(plugin_failure).and_then(report_from_wit))
    }
}

fn wrong_world(actual: World, expected: World, export: &'static str) -> Failure {
    Failure::WrongWorld { actual: actual.name(), expected: expected.name(), export }
}

// ----- host functions -----

impl wit::Host for State {}

impl store::Host for State {
    fn get_customer(&mut self, id: u64) -> wasmtime::Result<Option<wit::Customer>> {
        self.host_call()?;
        Ok(self.data.customer(id)?.map(customer_to_wit))
    }

    fn find_customer(&mut self, source: String, external_id: String) -> wasmtime::Result<Option<wit::Customer>> {
        self.host_call()?;
        Ok(self.data.find_customer(&source, &external_id)?.map(customer_to_wit))
    }

    fn timeline(&mut self, customer: u64, before: Option<i64>, limit: u32) -> wasmtime::Result<Vec<wit::Interaction>> {
        self.host_call()?;
        let items = self.data.timeline(customer, before, limit.min(super::MAX_PAGE))?;
        Ok(items.into_iter().map(interaction_to_wit).collect())
    }

    fn query_customers(
        &mut self,
        filter: String,
        cursor: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<wit::CustomerPage, String>> {
        self.host_call()?;
        let page = self.data.query_customers(&filter, cursor.as_deref(), limit.min(super::MAX_PAGE))?;
        Ok(page.map(|p| wit::CustomerPage {
            items: p.items.into_iter().map(customer_to_wit).collect(),
            next_cursor: p.next_cursor,
        }))
    }

    fn get_distributor(&mut self, id: u64) -> wasmtime::Result<Option<wit::Distributor>> {
        self.host_call()?;
        Ok(self.data.distributor(id)?.map(distributor_to_wit))
    }

    fn aggregate(&mut self, query: wit::AggregateQuery) -> wasmtime::Result<Result<wit::AggregateResult, String>> {
        self.host_call()?;
        let query = model::AggregateQuery {
            filter: query.filter,
            group_by: query.group_by,
            aggregations: query
                .aggregations
                .into_iter()
                .map(|a| model::Aggregation {
                    op: match a.op {
                        wit::AggregateOp::Count => model::AggregateOp::Count,
                        wit::AggregateOp::Sum => model::AggregateOp::Sum,
                        wit::AggregateOp::Mean => model::AggregateOp::Mean,
                        wit::AggregateOp::Min => model::AggregateOp::Min,
                        wit::AggregateOp::Max => model::AggregateOp::Max,
                        wit::AggregateOp::P50 => model::AggregateOp::P50,
                        wit::AggregateOp::P90 => model::AggregateOp::P90,
                        wit::AggregateOp::P99 => model::AggregateOp::P99,
                    },
                    field: a.field,
                })
                .collect(),
            limit: query.limit,
        };
        Ok(self.data.aggregate(&query)?.map(|r| wit::AggregateResult {
            keys: r.keys.into_iter().map(|k| wit::KeyColumn { name: k.name, values: k.values }).collect(),
            counts: r.counts,
            values: r.values.into_iter().map(|c| wit::Column { name: c.name, values: c.values }).collect(),
            truncated: r.truncated,
        }))
    }

    fn downline(&mut self, distributor: u64, max_depth: u32) -> wasmtime::Result<Vec<wit::DownlineMember>> {
        self.host_call()?;
        let members = self.data.downline(distributor, max_depth)?;
        Ok(members
            .into_iter()
            .map(|m| wit::DownlineMember { distributor: distributor_to_wit(m.distributor), depth: m.depth })
            .collect())
    }
}

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        State::log(self, level, message)
    }
}

impl config::Host for State {
    fn get(&mut self) -> wasmtime::Result<String> {
        self.host_call()?;
        Ok(self.config.to_string())
    }
}

// ----- host → plugin -----

fn json(attributes: &model::Attributes) -> String {
    serde_json::to_string(attributes).expect("a JSON map serializes")
}

fn customer_to_wit(c: model::Customer) -> wit::Customer {
    wit::Customer {
        id: c.id,
        name: c.name,
        email: c.email,
        phone: c.phone,
        branch: c.branch,
        distributor: c.distributor,
        external_ids: c.external_ids.into_iter().map(|e| wit::ExternalId { source: e.source, id: e.id }).collect(),
        tags: c.tags,
        consents: c.consents.into_iter().map(consent_to_wit).collect(),
        attributes: json(&c.attributes),
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

fn consent_to_wit(c: model::Consent) -> wit::Consent {
    use model::LawfulBasis as B;
    wit::Consent {
        purpose: c.purpose,
        channel: c.channel,
        basis: match c.basis {
            B::Consent => wit::LawfulBasis::Consent,
            B::Contract => wit::LawfulBasis::Contract,
            B::LegalObligation => wit::LawfulBasis::LegalObligation,
            B::VitalInterest => wit::LawfulBasis::VitalInterest,
            B::PublicTask => wit::LawfulBasis::PublicTask,
            B::LegitimateInterest => wit::LawfulBasis::LegitimateInterest,
        },
        given_at: c.given_at,
        withdrawn_at: c.withdrawn_at,
        source: c.source,
    }
}

fn kind_to_wit(k: model::InteractionKind) -> wit::InteractionKind {
    use model::InteractionKind as K;
    match k {
        K::Purchase => wit::InteractionKind::Purchase,
        K::Call => wit::InteractionKind::Call,
        K::Email => wit::InteractionKind::Email,
        K::Chat => wit::InteractionKind::Chat,
        K::Ticket => wit::InteractionKind::Ticket,
        K::Visit => wit::InteractionKind::Visit,
        K::Other(s) => wit::InteractionKind::Other(s),
    }
}

fn interaction_to_wit(i: model::Interaction) -> wit::Interaction {
    wit::Interaction {
        id: i.id,
        customer: i.customer,
        kind: kind_to_wit(i.kind),
        channel: i.channel,
        source: i.source,
        external_id: i.external_id,
        occurred_at: i.occurred_at,
        amount: i.amount.map(|m| wit::Money { amount_minor: m.amount_minor, currency: m.currency }),
        subject: i.subject,
        body: i.body,
        attributes: json(&i.attributes),
        ticket: i.ticket.map(|t| wit::Ticket {
            status: match t.status {
                model::TicketStatus::Open => wit::TicketStatus::Open,
                model::TicketStatus::Pending => wit::TicketStatus::Pending,
                model::TicketStatus::Closed => wit::TicketStatus::Closed,
            },
            category: t.category,
            due_at: t.due_at,
            resolution: t.resolution,
            closed_at: t.closed_at,
        }),
    }
}

fn distributor_to_wit(d: model::Distributor) -> wit::Distributor {
    wit::Distributor {
        id: d.id,
        name: d.name,
        sponsor: d.sponsor,
        rank: d.rank,
        status: match d.status {
            model::DistributorStatus::Active => wit::DistributorStatus::Active,
            model::DistributorStatus::Inactive => wit::DistributorStatus::Inactive,
            model::DistributorStatus::Terminated => wit::DistributorStatus::Terminated,
        },
        branch: d.branch,
        attributes: json(&d.attributes),
    }
}

fn entity_to_wit(e: &model::Entity) -> wit::Entity {
    match e.clone() {
        model::Entity::Customer(c) => wit::Entity::Customer(customer_to_wit(c)),
        model::Entity::Interaction(i) => wit::Entity::Interaction(interaction_to_wit(i)),
        model::Entity::Distributor(d) => wit::Entity::Distributor(distributor_to_wit(d)),
        model::Entity::Branch(b) => {
            wit::Entity::Branch(wit::Branch { code: b.code, name: b.name, attributes: json(&b.attributes) })
        }
    }
}

fn change_to_wit(c: &model::Change) -> wit::Change {
    wit::Change {
        operation: match c.operation {
            model::Operation::Create => wit::Operation::Create,
            model::Operation::Update => wit::Operation::Update,
            model::Operation::Delete => wit::Operation::Delete,
        },
        before: c.before.as_ref().map(entity_to_wit),
        after: c.after.as_ref().map(entity_to_wit),
        changed_fields: c.changed_fields.clone(),
        actor: wit::Actor { name: c.actor.name.clone(), role: c.actor.role.name().into() },
        origin: match c.origin {
            model::Origin::Api => wit::Origin::Api,
            model::Origin::Import => wit::Origin::Import,
            model::Origin::Merge => wit::Origin::Merge,
            model::Origin::Erase => wit::Origin::Erase,
            model::Origin::Action => wit::Origin::Action,
            model::Origin::Console => wit::Origin::Console,
        },
        depth: c.depth,
        at: c.at,
    }
}

/// Batches are moved, not copied: a population can be tens of megabytes.
fn batch_to_wit(b: model::FeatureBatch) -> wit::FeatureBatch {
    wit::FeatureBatch {
        ids: b.ids,
        now: b.now,
        columns: b.columns.into_iter().map(|c| wit::Column { name: c.name, values: c.values }).collect(),
    }
}

// ----- plugin → host: untrusted, validated here -----

fn plugin_failure(e: wit::PluginError) -> Failure {
    Failure::Plugin(model::PluginFailure { message: e.message, field: e.field })
}

fn bad(export: &'static str, detail: impl Into<String>) -> Failure {
    Failure::BadOutput { export, detail: detail.into() }
}

fn json_object(export: &'static str, what: &str, text: &str) -> Result<model::Attributes, Failure> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(bad(export, format!("{what} must be a JSON object, got {}", json_kind(&other)))),
        Err(e) => Err(bad(export, format!("{what} is not valid JSON: {e}"))),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn decision_from_wit(d: wit::Decision) -> Result<model::Decision, Failure> {
    Ok(match d {
        wit::Decision::Allow => model::Decision::Allow,
        wit::Decision::Warn(message) => model::Decision::Warn { message },
        wit::Decision::Deny(d) => {
            if d.reason.trim().is_empty() {
                return Err(bad("before", "a deny must give a reason"));
            }
            model::Decision::Deny(model::Denial { reason: d.reason, field: d.field })
        }
        wit::Decision::Patch(patches) => model::Decision::Patch {
            patches: patches
                .into_iter()
                .map(|p| {
                    if model::UNPATCHABLE_FIELDS.contains(&p.field.as_str()) {
                        return Err(bad(
                            "before",
                            format!(
                                "the patch sets field `{}`, which no policy may change (ids and bookkeeping times are \
                                 the host's)",
                                p.field
                            ),
                        ));
                    }
                    if p.value.len() > model::MAX_PATCH_VALUE_BYTES {
                        return Err(bad(
                            "before",
                            format!(
                                "the patch of field `{}` is {} bytes, over the limit of {} bytes per patched value",
                                p.field,
                                p.value.len(),
                                model::MAX_PATCH_VALUE_BYTES
                            ),
                        ));
                    }
                    let value = serde_json::from_str(&p.value).map_err(|e| {
                        bad("before", format!("the patch of field `{}` is not valid JSON: {e}", p.field))
                    })?;
                    if p.field == "attributes" && !matches!(value, Value::Object(_)) {
                        return Err(bad("before", "the patch of field `attributes` is not a JSON object"));
                    }
                    Ok(model::FieldPatch { field: p.field, value })
                })
                .collect::<Result<_, Failure>>()?,
        },
    })
}

/// A patch the record cannot take (a field the record does not have, a value of the wrong type,
/// a patch of a deleted record) is refused here, with the field, by the same code the pipeline
/// applies it with: `rapport plugin run` then refuses what a server would, instead of printing a
/// decision that fails only once installed.
fn patches_apply(change: &model::Change, d: model::Decision) -> Result<model::Decision, Failure> {
    if let model::Decision::Patch { patches } = &d {
        let mut patched = change.clone();
        for p in patches {
            patched
                .apply_patches(std::slice::from_ref(p))
                .map_err(|e| bad("before", format!("the patch of field `{}` cannot be applied: {e}", p.field)))?;
        }
    }
    Ok(d)
}

/// `index` is the action's position in the returned list, for the error.
fn action_from_wit(index: usize, a: wit::Action) -> Result<model::Action, Failure> {
    Ok(match a {
        wit::Action::AddTag((customer, tag)) => model::Action::AddTag { customer, tag },
        wit::Action::OpenTask(t) => model::Action::OpenTask(model::Task {
            customer: t.customer,
            subject: t.subject,
            body: t.body,
            category: t.category,
            due_at: t.due_at,
            assignee: t.assignee,
        }),
        wit::Action::QueueMessage(m) => model::Action::QueueMessage(model::OutboundMessage {
            customer: m.customer,
            channel: m.channel,
            template: m.template,
            variables: json_object("after", &format!("action {index} (queue-message): `variables`"), &m.variables)?,
        }),
        wit::Action::Assign(a) => model::Action::Assign(model::Assignment {
            customer: a.customer,
            distributor: a.distributor,
            branch: a.branch,
        }),
    })
}

fn kind_from_wit(k: wit::InteractionKind) -> model::InteractionKind {
    use model::InteractionKind as K;
    match k {
        wit::InteractionKind::Purchase => K::Purchase,
        wit::InteractionKind::Call => K::Call,
        wit::InteractionKind::Email => K::Email,
        wit::InteractionKind::Chat => K::Chat,
        wit::InteractionKind::Ticket => K::Ticket,
        wit::InteractionKind::Visit => K::Visit,
        wit::InteractionKind::Other(s) => K::Other(s),
    }
}

fn spec_from_wit(s: wit::ScorerSpec) -> Result<model::ScorerSpec, Failure> {
    let mut names = std::collections::HashSet::new();
    for f in &s.features {
        if !names.insert(f.name.as_str()) {
            return Err(bad("describe", format!("feature `{}` is declared twice", f.name)));
        }
    }
    if s.scores.is_empty() {
        return Err(bad("describe", "a scorer must declare at least one score"));
    }
    for d in &s.scores {
        if !is_score_name(&d.name) {
            return Err(bad(
                "describe",
                format!("score name `{}` must be 1-64 characters of a-z, 0-9, `_` or `-`", d.name),
            ));
        }
    }
    Ok(model::ScorerSpec {
        features: s
            .features
            .into_iter()
            .map(|f| model::Feature {
                name: f.name,
                measure: match f.measure {
                    wit::Measure::Count => model::Measure::Count,
                    wit::Measure::DistinctDays => model::Measure::DistinctDays,
                    wit::Measure::SumAmount => model::Measure::SumAmount,
                    wit::Measure::FirstAt => model::Measure::FirstAt,
                    wit::Measure::LastAt => model::Measure::LastAt,
                },
                kinds: f.kinds.into_iter().map(kind_from_wit).collect(),
                since: f.since,
                until: f.until,
            })
            .collect(),
        scores: s.scores.into_iter().map(|d| model::ScoreDef { name: d.name, description: d.description }).collect(),
        labels: s.labels,
        needs_fit: s.needs_fit,
    })
}

fn is_score_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Scores and labels are stored and filtered by the names `describe` declared (`score.<plugin>.
/// <name>`): a column under another name is most likely a typo, and would be stored where nobody
/// looks. Explanations go with a score or a label.
fn names_declared(s: &wit::ScoreBatch, spec: &model::ScorerSpec) -> Result<(), Failure> {
    let list = |names: &mut dyn Iterator<Item = &String>| {
        let names: Vec<String> = names.map(|n| format!("`{n}`")).collect();
        if names.is_empty() { "none".to_owned() } else { names.join(", ") }
    };
    let scores = || spec.scores.iter().map(|d| &d.name);
    for c in &s.scores {
        if !scores().any(|n| n == &c.name) {
            return Err(bad(
                "score",
                format!(
                    "score column `{}` is not a score `describe` declared (it declares {}): name each column after a \
                     `score-def`",
                    c.name,
                    list(&mut scores())
                ),
            ));
        }
    }
    for c in &s.labels {
        if !spec.labels.contains(&c.name) {
            return Err(bad(
                "score",
                format!(
                    "label column `{}` is not a label `describe` declared (it declares {})",
                    c.name,
                    list(&mut spec.labels.iter())
                ),
            ));
        }
    }
    for c in &s.explanations {
        if !scores().chain(&spec.labels).any(|n| n == &c.name) {
            return Err(bad(
                "score",
                format!(
                    "explanation `{}` is for no score or label `describe` declared (it declares {}): name it after \
                     the score or label it explains",
                    c.name,
                    list(&mut scores().chain(&spec.labels))
                ),
            ));
        }
    }
    Ok(())
}

/// Columns are by position, so a column of the wrong length would give customers each other's
/// scores: refused, like a value no filter could compare.
fn scores_from_wit(s: wit::ScoreBatch, ids: &[u64]) -> Result<model::ScoreBatch, Failure> {
    let len = ids.len();
    const BY_POSITION: &str = "one value per customer of the batch, in the order of `batch.ids`";
    for c in &s.scores {
        if c.values.len() != len {
            return Err(bad(
                "score",
                format!(
                    "score column `{}` has {} values for a batch of {len} customers ({BY_POSITION}; NaN for no score)",
                    c.name,
                    c.values.len()
                ),
            ));
        }
        if let Some(i) = c.values.iter().position(|v| v.is_infinite()) {
            return Err(bad(
                "score",
                format!(
                    "score `{}` is infinite for the customer at position {i} (id {}); return NaN for no score",
                    c.name, ids[i]
                ),
            ));
        }
    }
    for c in &s.labels {
        if c.codes.len() != len {
            return Err(bad(
                "score",
                format!(
                    "label `{}` has {} codes for a batch of {len} customers ({BY_POSITION})",
                    c.name,
                    c.codes.len()
                ),
            ));
        }
        if let Some(i) = c.codes.iter().position(|&code| code as usize >= c.categories.len()) {
            return Err(bad(
                "score",
                format!(
                    "label `{}` has code {} at position {i}, but only {} categories (customer id {}; a code is an \
                     index into `categories`)",
                    c.name,
                    c.codes[i],
                    c.categories.len(),
                    ids[i]
                ),
            ));
        }
    }
    for c in &s.explanations {
        if c.values.len() != len {
            return Err(bad(
                "score",
                format!(
                    "explanation `{}` has {} values for a batch of {len} customers ({BY_POSITION}; empty text for none)",
                    c.name,
                    c.values.len()
                ),
            ));
        }
    }
    Ok(model::ScoreBatch {
        scores: s.scores.into_iter().map(|c| model::Column { name: c.name, values: c.values }).collect(),
        labels: s
            .labels
            .into_iter()
            .map(|c| model::LabelColumn { name: c.name, categories: c.categories, codes: c.codes })
            .collect(),
        explanations: s
            .explanations
            .into_iter()
            .map(|c| model::TextColumn { name: c.name, values: c.values })
            .collect(),
    })
}

/// Which cells a column of each type holds. Renderers and CSV consumers read a column by its
/// declared type, so text in a money column would reach them as a number that is not one.
/// Integers widen to numbers, and a timestamp or money column takes plain integers too.
fn cell_fits(cell: &wit::Cell, ty: wit::ColumnType) -> bool {
    use wit::{Cell as C, ColumnType as T};
    matches!(
        (cell, ty),
        (C::Null, _)
            | (C::Text(_), T::Text)
            | (C::Integer(_), T::Integer | T::Number | T::Timestamp | T::Money)
            | (C::Number(_), T::Number)
            | (C::Boolean(_), T::Boolean)
            | (C::Timestamp(_), T::Timestamp)
    )
}

fn cell_kind(cell: &wit::Cell) -> &'static str {
    match cell {
        wit::Cell::Null => "null",
        wit::Cell::Text(_) => "text",
        wit::Cell::Integer(_) => "integer",
        wit::Cell::Number(_) => "number",
        wit::Cell::Boolean(_) => "boolean",
        wit::Cell::Timestamp(_) => "timestamp",
    }
}

fn column_type_name(ty: wit::ColumnType) -> &'static str {
    match ty {
        wit::ColumnType::Text => "text",
        wit::ColumnType::Integer => "integer",
        wit::ColumnType::Number => "number",
        wit::ColumnType::Boolean => "boolean",
        wit::ColumnType::Timestamp => "timestamp",
        wit::ColumnType::Money => "money",
    }
}

fn accepted_cells(ty: wit::ColumnType) -> &'static str {
    match ty {
        wit::ColumnType::Text => "text cells",
        wit::ColumnType::Integer => "integer cells",
        wit::ColumnType::Number => "number or integer cells",
        wit::ColumnType::Boolean => "boolean cells",
        wit::ColumnType::Timestamp => "timestamp or integer cells (unix milliseconds)",
        wit::ColumnType::Money => "integer cells (minor units; the currency in a text column)",
    }
}

fn report_from_wit(r: wit::Report) -> Result<model::Report, Failure> {
    let width = r.columns.len();
    if let Some(i) = r.rows.iter().position(|row| row.len() != width) {
        let names: Vec<String> = r.columns.iter().map(|c| format!("`{}`", c.name)).collect();
        return Err(bad(
            "run",
            format!(
                "row {i} has {} cells for {width} columns (one cell per column, in column order: {})",
                r.rows[i].len(),
                names.join(", ")
            ),
        ));
    }
    for (i, row) in r.rows.iter().enumerate() {
        for (cell, column) in row.iter().zip(&r.columns) {
            if !cell_fits(cell, column.type_) {
                return Err(bad(
                    "run",
                    format!(
                        "row {i}, column `{}`: a {} cell, but the column's type is `{}`, which takes {} or null",
                        column.name,
                        cell_kind(cell),
                        column_type_name(column.type_),
                        accepted_cells(column.type_)
                    ),
                ));
            }
        }
    }
    let columns: Vec<model::ReportColumn> = r
        .columns
        .into_iter()
        .map(|c| model::ReportColumn {
            name: c.name,
            ty: match c.type_ {
                wit::ColumnType::Text => model::ColumnType::Text,
                wit::ColumnType::Integer => model::ColumnType::Integer,
                wit::ColumnType::Number => model::ColumnType::Number,
                wit::ColumnType::Boolean => model::ColumnType::Boolean,
                wit::ColumnType::Timestamp => model::ColumnType::Timestamp,
                wit::ColumnType::Money => model::ColumnType::Money,
            },
        })
        .collect();
    if let Some(chart) = &r.chart {
        let named = std::iter::once(("chart.x", &chart.x)).chain(chart.y.iter().map(|y| ("chart.y", y)));
        for (field, name) in named {
            if !columns.iter().any(|c| &c.name == name) {
                let names: Vec<String> = columns.iter().map(|c| format!("`{}`", c.name)).collect();
                return Err(bad(
                    "run",
                    format!(
                        "`{field}` names column `{name}`, which the report does not have (its columns: {})",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(model::Report {
        title: r.title,
        columns,
        rows: r
            .rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|cell| match cell {
                        wit::Cell::Null => model::Cell::Null,
                        wit::Cell::Text(s) => model::Cell::Text(s),
                        wit::Cell::Integer(i) | wit::Cell::Timestamp(i) => model::Cell::Integer(i),
                        wit::Cell::Number(n) if n.is_finite() => model::Cell::Number(n),
                        wit::Cell::Number(_) => model::Cell::Null,
                        wit::Cell::Boolean(b) => model::Cell::Boolean(b),
                    })
                    .collect()
            })
            .collect(),
        chart: r.chart.map(|c| model::Chart {
            kind: match c.kind {
                wit::ChartKind::Bar => model::ChartKind::Bar,
                wit::ChartKind::Line => model::ChartKind::Line,
                wit::ChartKind::Pie => model::ChartKind::Pie,
                wit::ChartKind::Tree => model::ChartKind::Tree,
            },
            title: c.title,
            x: c.x,
            y: c.y,
        }),
    })
}
