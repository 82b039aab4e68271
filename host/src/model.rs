//! Rapport's domain model: the one set of types the host thinks in.
//!
//! Every contract version's generated types convert to and from these at the plugin boundary
//! (`plugins::v0_1_0`), so the rest of the host never matches on contract versions. Their serde
//! form is the JSON users see: `rapport plugin run` inputs, fixtures, and the HTTP API.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A record's id within its organization; 0 for a record not stored yet.
pub type Id = u64;

/// Unix time in milliseconds, UTC.
pub type Timestamp = i64;

/// Free-form attributes: always a JSON object.
pub type Attributes = Map<String, Value>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExternalId {
    pub source: String,
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LawfulBasis {
    Consent,
    Contract,
    LegalObligation,
    VitalInterest,
    PublicTask,
    LegitimateInterest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    pub purpose: String,
    #[serde(default)]
    pub channel: Option<String>,
    pub basis: LawfulBasis,
    pub given_at: Timestamp,
    #[serde(default)]
    pub withdrawn_at: Option<Timestamp>,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    #[serde(default)]
    pub id: Id,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub distributor: Option<Id>,
    #[serde(default)]
    pub external_ids: Vec<ExternalId>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub consents: Vec<Consent>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Attributes,
    #[serde(default)]
    pub created_at: Timestamp,
    #[serde(default)]
    pub updated_at: Timestamp,
}

/// What kind of touchpoint an interaction is. An organization may use its own kinds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum InteractionKind {
    Purchase,
    Call,
    Email,
    Chat,
    Ticket,
    Visit,
    Other(String),
}

impl From<String> for InteractionKind {
    fn from(s: String) -> Self {
        match s.as_str() {
            "purchase" => Self::Purchase,
            "call" => Self::Call,
            "email" => Self::Email,
            "chat" => Self::Chat,
            "ticket" => Self::Ticket,
            "visit" => Self::Visit,
            _ => Self::Other(s),
        }
    }
}

impl From<InteractionKind> for String {
    fn from(k: InteractionKind) -> String {
        k.as_str().to_owned()
    }
}

impl InteractionKind {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Purchase => "purchase",
            Self::Call => "call",
            Self::Email => "email",
            Self::Chat => "chat",
            Self::Ticket => "ticket",
            Self::Visit => "visit",
            Self::Other(s) => s,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TicketStatus {
    Open,
    Pending,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ticket {
    pub status: TicketStatus,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub due_at: Option<Timestamp>,
    #[serde(default)]
    pub resolution: Option<String>,
    #[serde(default)]
    pub closed_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    #[serde(default)]
    pub id: Id,
    pub customer: Id,
    /// purchase, call, email, chat, ticket, visit, or the organization's own kind.
    #[schema(value_type = String)]
    pub kind: InteractionKind,
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub external_id: Option<String>,
    pub occurred_at: Timestamp,
    #[serde(default)]
    pub amount: Option<Money>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Attributes,
    #[serde(default)]
    pub ticket: Option<Ticket>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DistributorStatus {
    #[default]
    Active,
    Inactive,
    Terminated,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Distributor {
    #[serde(default)]
    pub id: Id,
    pub name: String,
    #[serde(default)]
    pub sponsor: Option<Id>,
    #[serde(default)]
    pub rank: Option<String>,
    #[serde(default)]
    pub status: DistributorStatus,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Attributes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Branch {
    pub code: String,
    pub name: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Attributes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Customer(Customer),
    Interaction(Interaction),
    Distributor(Distributor),
    Branch(Branch),
}

impl Customer {
    /// A strong HTTP entity tag of the record as stored: any change to it (its `updated_at`
    /// included) gives another tag.
    pub fn etag(&self) -> String {
        use sha2::{Digest, Sha256};
        let bytes = serde_json::to_vec(self).expect("a customer serializes");
        format!("\"{}\"", hex::encode(&Sha256::digest(&bytes)[..12]))
    }
}

impl Entity {
    /// The fields a change sets: for a create, those with a value; for an update, those that
    /// differ from `before`. Bookkeeping fields (id, created/updated times) are not changes.
    pub fn changed_fields(&self, before: Option<&Entity>) -> Vec<String> {
        const BOOKKEEPING: [&str; 3] = ["id", "created_at", "updated_at"];
        let object = |e: &Entity| match serde_json::to_value(e) {
            Ok(Value::Object(mut m)) => match m.values_mut().next().map(Value::take) {
                Some(Value::Object(fields)) => fields,
                _ => Map::new(),
            },
            _ => Map::new(),
        };
        let after = object(self);
        let before = before.map(object);
        let empty = |v: &Value| match v {
            Value::Null => true,
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        after
            .iter()
            .filter(|(k, _)| !BOOKKEEPING.contains(&k.as_str()))
            .filter(|(k, v)| match &before {
                Some(b) => b.get(*k) != Some(*v),
                None => !empty(v),
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The record's own id (a branch is known by its code instead).
    pub fn id(&self) -> Option<Id> {
        match self {
            Entity::Customer(c) => Some(c.id),
            Entity::Interaction(i) => Some(i.id),
            Entity::Distributor(d) => Some(d.id),
            Entity::Branch(_) => None,
        }
    }

    pub fn customer_id(&self) -> Option<Id> {
        match self {
            Entity::Customer(c) => Some(c.id),
            Entity::Interaction(i) => Some(i.customer),
            Entity::Distributor(_) | Entity::Branch(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub name: String,
    pub role: Role,
}

impl Default for Actor {
    fn default() -> Self {
        Actor { name: "admin".into(), role: Role::Admin }
    }
}

/// Who a write is done as. The API's key roles are ordered, weakest first: each may do what the
/// ones before it may. The host's own actors (a plugin's follow-up actions, the host disabling a
/// failing plugin) come first, so that no check of a key's role lets them through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A plugin's follow-up actions.
    Plugin,
    /// The host itself (disabling a failing plugin, a scheduled job).
    Host,
    /// Reads.
    ReadOnly,
    /// Customers and interactions.
    Agent,
    /// Data, imports, reports and jobs.
    Manager,
    /// Everything in the organization, plugins and keys included.
    Owner,
    /// The admin token (and the operator's local commands): every organization.
    Admin,
}

impl Role {
    /// The roles an organization's API key may have.
    pub const KEY_ROLES: [Role; 4] = [Role::ReadOnly, Role::Agent, Role::Manager, Role::Owner];

    /// A key role by its name (`read-only`, `agent`, `manager`, `owner`).
    pub fn parse(s: &str) -> Option<Role> {
        Role::KEY_ROLES.into_iter().find(|r| r.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Plugin => "plugin",
            Role::Host => "host",
            Role::ReadOnly => "read-only",
            Role::Agent => "agent",
            Role::Manager => "manager",
            Role::Owner => "owner",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    #[default]
    Api,
    Import,
    Merge,
    Erase,
    Action,
    Console,
}

/// A write, as policies judge it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub operation: Operation,
    #[serde(default)]
    pub before: Option<Entity>,
    #[serde(default)]
    pub after: Option<Entity>,
    #[serde(default)]
    pub changed_fields: Vec<String>,
    #[serde(default)]
    pub actor: Actor,
    #[serde(default)]
    pub origin: Origin,
    #[serde(default)]
    pub depth: u32,
    #[serde(default)]
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Denial {
    pub reason: String,
    pub field: Option<String>,
}

impl Change {
    /// Apply field patches to the change's `after` record. A field is a top-level field of the record
    /// (`email`, `tags`) or `attributes.<key>`; ids and bookkeeping times cannot be patched. Shared
    /// by the runtime (which refuses a decision whose patch cannot apply, naming the field) and the
    /// pipeline (which applies it).
    ///
    /// # Errors
    /// The patch cannot apply: see [`PatchError`]; the change is left as it was.
    pub fn apply_patches(&mut self, patches: &[FieldPatch]) -> Result<(), PatchError> {
        let after = self.after.as_ref().ok_or(PatchError::Deleted)?;
        let mut value = serde_json::to_value(after).map_err(|_| PatchError::NotAnObject)?;
        let (kind, record) = value.as_object_mut().and_then(|m| m.iter_mut().next()).ok_or(PatchError::NotAnObject)?;
        let kind = kind.clone();
        let record = record.as_object_mut().ok_or(PatchError::NotAnObject)?;
        for p in patches {
            match p.field.split_once('.') {
                Some(("attributes", key)) if !key.is_empty() => {
                    let attributes = record.entry("attributes").or_insert_with(|| Value::Object(Map::new()));
                    attributes.as_object_mut().ok_or(PatchError::NotAnObject)?.insert(key.to_owned(), p.value.clone());
                }
                _ if UNPATCHABLE_FIELDS.contains(&p.field.as_str()) => {
                    return Err(PatchError::Unpatchable(p.field.clone()));
                }
                None if record.contains_key(&p.field) => {
                    record.insert(p.field.clone(), p.value.clone());
                }
                _ => return Err(PatchError::NoSuchField { kind, field: p.field.clone() }),
            }
        }
        let patched: Entity =
            serde_json::from_value(value).map_err(|e| PatchError::Invalid { kind, detail: e.to_string() })?;
        self.changed_fields = patched.changed_fields(self.before.as_ref());
        self.after = Some(patched);
        Ok(())
    }
}

/// Why a policy's patch cannot apply to the record it judged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    #[error("there is no record to patch (the change deletes it)")]
    Deleted,
    #[error("the record is not an object")]
    NotAnObject,
    #[error("`{0}` cannot be patched")]
    Unpatchable(String),
    #[error("a {kind} has no field `{field}`")]
    NoSuchField { kind: String, field: String },
    /// The patched record does not deserialize (a value of the wrong type, say).
    #[error("the patched {kind} is invalid: {detail}")]
    Invalid { kind: String, detail: String },
}

/// Fields no policy may patch: a record's identity and the host's bookkeeping. The runtime refuses
/// a decision that names one (a `bad_output` failure of the plugin, in its metrics and trace), and
/// the pipeline checks again when it applies a patch.
pub const UNPATCHABLE_FIELDS: [&str; 4] = ["id", "created_at", "updated_at", "customer"];

/// The largest value one field patch may carry, in bytes of JSON text. A policy normalizes or
/// fills in a field; it does not write blobs. Without this bound only the 1 MiB output limit held,
/// so a policy could land a 900 KiB name on every customer it saw.
pub const MAX_PATCH_VALUE_BYTES: usize = 64 << 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldPatch {
    pub field: String,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    Allow,
    Warn { message: String },
    Deny(Denial),
    Patch { patches: Vec<FieldPatch> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub customer: Id,
    pub subject: String,
    pub body: Option<String>,
    pub category: Option<String>,
    pub due_at: Option<Timestamp>,
    pub assignee: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundMessage {
    pub customer: Id,
    pub channel: String,
    pub template: String,
    pub variables: Attributes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub customer: Id,
    pub distributor: Option<Id>,
    pub branch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    AddTag { customer: Id, tag: String },
    OpenTask(Task),
    QueueMessage(OutboundMessage),
    Assign(Assignment),
}

/// An error a plugin reported itself (as opposed to a trap or a limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginFailure {
    pub message: String,
    pub field: Option<String>,
}

impl std::fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} (field `{field}`)", self.message),
            None => f.write_str(&self.message),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerPage {
    pub items: Vec<Customer>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownlineMember {
    pub distributor: Distributor,
    pub depth: u32,
}

// ----- aggregation -----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateOp {
    Count,
    Sum,
    Mean,
    Min,
    Max,
    P50,
    P90,
    P99,
}

impl AggregateOp {
    pub fn name(self) -> &'static str {
        match self {
            AggregateOp::Count => "count",
            AggregateOp::Sum => "sum",
            AggregateOp::Mean => "mean",
            AggregateOp::Min => "min",
            AggregateOp::Max => "max",
            AggregateOp::P50 => "p50",
            AggregateOp::P90 => "p90",
            AggregateOp::P99 => "p99",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregation {
    pub op: AggregateOp,
    #[serde(default)]
    pub field: Option<String>,
}

impl Aggregation {
    /// The result column's name: `count`, `sum(purchases.total_minor)`.
    pub fn label(&self) -> String {
        match &self.field {
            Some(f) => format!("{}({f})", self.op.name()),
            None => self.op.name().to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateQuery {
    #[serde(default)]
    pub filter: String,
    #[serde(default)]
    pub group_by: Vec<String>,
    #[serde(default)]
    pub aggregations: Vec<Aggregation>,
    #[serde(default)]
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyColumn {
    pub name: String,
    pub values: Vec<Option<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateResult {
    pub keys: Vec<KeyColumn>,
    pub counts: Vec<u64>,
    pub values: Vec<Column>,
    pub truncated: bool,
}

// ----- scorers -----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Measure {
    Count,
    DistinctDays,
    SumAmount,
    FirstAt,
    LastAt,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    pub measure: Measure,
    #[serde(default)]
    pub kinds: Vec<InteractionKind>,
    #[serde(default)]
    pub since: Option<Timestamp>,
    #[serde(default)]
    pub until: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreDef {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorerSpec {
    pub features: Vec<Feature>,
    pub scores: Vec<ScoreDef>,
    pub labels: Vec<String>,
    pub needs_fit: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub values: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureBatch {
    pub ids: Vec<Id>,
    pub now: Timestamp,
    pub columns: Vec<Column>,
}

impl FeatureBatch {
    /// A feature's values by name.
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        self.columns.iter().find(|c| c.name == name).map(|c| c.values.as_slice())
    }
}

/// A label per customer, dictionary-encoded (see `label-column` in the contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelColumn {
    pub name: String,
    pub categories: Vec<String>,
    pub codes: Vec<u32>,
}

impl LabelColumn {
    /// The label of the customer at position `i` (codes are validated at the boundary).
    pub fn get(&self, i: usize) -> &str {
        &self.categories[self.codes[i] as usize]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextColumn {
    pub name: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreBatch {
    pub scores: Vec<Column>,
    pub labels: Vec<LabelColumn>,
    pub explanations: Vec<TextColumn>,
}

// ----- reporters -----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Text,
    Integer,
    Number,
    Boolean,
    Timestamp,
    Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
}

/// One cell; serialized as the plain JSON value (the column says its type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Cell {
    Null,
    Boolean(bool),
    Integer(i64),
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    Bar,
    Line,
    Pie,
    Tree,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    pub kind: ChartKind,
    pub title: Option<String>,
    pub x: String,
    pub y: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub title: Option<String>,
    pub columns: Vec<ReportColumn>,
    pub rows: Vec<Vec<Cell>>,
    pub chart: Option<Chart>,
}
