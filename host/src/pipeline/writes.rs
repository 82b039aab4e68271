//! One place per kind of write: what record it concerns, how it becomes the change policies
//! judge, how the judged change commits, and what the audit log calls it.
//!
//! The pipeline's flow (`mod.rs`) is the same for every kind; adding a kind means one `Write`
//! variant, one type here implementing [`Kind`], and one arm in [`Write::kind`].

use serde::Deserialize;

use super::{PipelineError, Result};
use crate::model::{
    Actor, Attributes, Branch, Change, Consent, Customer, Distributor, DistributorStatus, Entity, ExternalId, Id,
    Interaction, InteractionKind, Operation, Ticket, TicketStatus,
};
use crate::store::{self, OrgTx, Reads, StoreError, now_ms};

/// One change to an organization's data, as the API, the console, an import or a plugin's
/// follow-up action asks for it.
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
    /// A customer as an import gives it, keyed by its source system's id: created when new,
    /// otherwise merged into the stored profile (see [`CustomerRecord`]).
    ImportCustomer(CustomerRecord),
    AddInteraction(Interaction),
    /// An interaction as an import gives it: its customer named by a source system's id.
    ImportInteraction {
        customer: ExternalRef,
        interaction: Interaction,
    },
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
    /// A distributor as an import gives it, keyed by its source system's id, its sponsor by the
    /// sponsor's id in the same source.
    ImportDistributor(DistributorRecord),
}

/// A reference to a record by its source system's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalRef {
    pub source: String,
    pub external_id: String,
}

/// An imported customer. An import adds and updates; it never deletes: a missing field keeps
/// what is stored, tags and consents are added to the stored ones, attributes are merged key by
/// key — after a merge, each source's re-import must not wipe what the other sources gave.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerRecord {
    pub source: String,
    pub external_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
    /// The owning distributor, by its source system's id.
    #[serde(default)]
    pub distributor: Option<ExternalRef>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub consents: Vec<Consent>,
    #[serde(default)]
    pub attributes: Attributes,
}

/// An imported distributor: every field as the source system has it now.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistributorRecord {
    pub source: String,
    pub external_id: String,
    pub name: String,
    /// The sponsor's external id, in the same source; imported earlier or in the same file.
    #[serde(default)]
    pub sponsor: Option<String>,
    #[serde(default)]
    pub rank: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub attributes: Attributes,
}

/// The change a write makes, before the pipeline adds who, why and when.
pub(crate) struct Proposed {
    pub operation: Operation,
    pub before: Option<Entity>,
    pub after: Option<Entity>,
}

impl Proposed {
    fn create(after: Entity) -> Proposed {
        Proposed { operation: Operation::Create, before: None, after: Some(after) }
    }
    fn update(before: Entity, after: Entity) -> Option<Proposed> {
        (before != after).then_some(Proposed { operation: Operation::Update, before: Some(before), after: Some(after) })
    }
}

/// A record by its source system's key: (entity, source, external id).
pub(crate) type Key = (&'static str, String, String);

/// What a write does to source-system keys (see [`Kind::keys`]).
#[derive(Default)]
pub(crate) struct Keys {
    pub writes: Vec<Key>,
    pub needs: Vec<Key>,
}

/// What each kind of write does at each step of the pipeline.
pub(crate) trait Kind {
    /// The stored record this write concerns, as `r` sees it (`None` for a record that does not
    /// exist yet). Read once when the change is built and again inside the commit's transaction:
    /// a difference means the record changed while policies judged, and the write is judged again.
    fn stored(&self, r: &dyn Reads) -> store::Result<Option<Entity>>;

    /// The change policies judge, built from `stored`; `None` when the write would change nothing
    /// (then no policy runs). Every check of the write's values is here, so a write is refused
    /// alike whether it came from the API, the console or an import.
    fn propose(&self, r: &dyn Reads, stored: Option<Entity>) -> Result<Option<Proposed>>;

    /// Write the judged change (policies may have patched `change.after`); the record as stored,
    /// `None` after an erasure.
    fn commit(&self, tx: &OrgTx<'_>, actor: &Actor, change: &Change) -> store::Result<Option<Entity>>;

    /// The audit log's action and entity for this write.
    fn audited(&self, change: &Change) -> (&'static str, &'static str);

    /// Whether the store writes this kind's audit row itself (erasure and merge keep what they
    /// removed there); the pipeline then adds only the policies' decisions.
    fn audits_itself(&self) -> bool {
        false
    }

    /// The source-system keys this write creates or changes, and those it refers to. An import
    /// batch is judged before any of it commits, so a record that needs a record written earlier
    /// in the same batch (a sponsor above its downline, the same customer twice) starts a new one.
    fn keys(&self) -> Keys {
        Keys::default()
    }
}

impl Write {
    pub(crate) fn kind(&self) -> Box<dyn Kind + '_> {
        match self {
            Write::CreateCustomer(c) => Box::new(CreateCustomer(c)),
            Write::UpdateCustomer(c) => Box::new(UpdateCustomer { customer: c, etag: None }),
            Write::UpdateCustomerIfMatch { customer, etag } => Box::new(UpdateCustomer { customer, etag: Some(etag) }),
            Write::ImportCustomer(r) => Box::new(ImportCustomer(r)),
            Write::AddInteraction(i) => Box::new(AddInteraction { interaction: i, customer: None }),
            Write::ImportInteraction { customer, interaction } => {
                Box::new(AddInteraction { interaction, customer: Some(customer) })
            }
            Write::UpdateTicket { interaction, ticket } => Box::new(UpdateTicket { id: *interaction, ticket }),
            Write::EraseCustomer(id) => Box::new(EraseCustomer(*id)),
            Write::MergeCustomers { keep, remove } => Box::new(MergeCustomers { keep: *keep, remove: *remove }),
            Write::SaveBranch(b) => Box::new(SaveBranch(b)),
            Write::SaveDistributor(d) => Box::new(SaveDistributor(d)),
            Write::ImportDistributor(r) => Box::new(ImportDistributor(r)),
        }
    }
}

fn not_found(what: &str, id: impl std::fmt::Display) -> PipelineError {
    PipelineError::NotFound(format!("{what} {id} does not exist"))
}

fn customer_of(stored: Option<Entity>) -> Option<Customer> {
    match stored {
        Some(Entity::Customer(c)) => Some(c),
        _ => None,
    }
}

/// The judged record, as the kind expects it: a policy's patch cannot turn one kind of record
/// into another (the runtime refuses that), so anything else is a bug worth a clear error.
fn judged_customer(change: &Change) -> store::Result<&Customer> {
    match &change.after {
        Some(Entity::Customer(c)) => Ok(c),
        _ => Err(StoreError::Invalid("a policy's patch replaced the customer with another kind of record".into())),
    }
}

struct CreateCustomer<'a>(&'a Customer);

impl Kind for CreateCustomer<'_> {
    fn stored(&self, r: &dyn Reads) -> store::Result<Option<Entity>> {
        // A new customer's source keys must be free: whoever holds one is what it would collide with.
        for key in &self.0.external_ids {
            if let Some(c) = r.customer_by_key(&key.source, &key.id)? {
                return Ok(Some(Entity::Customer(c)));
            }
        }
        Ok(None)
    }

    fn propose(&self, r: &dyn Reads, stored: Option<Entity>) -> Result<Option<Proposed>> {
        if stored.is_some() {
            // Which customer holds it is not said: the caller may not be allowed to see them.
            let ids: Vec<String> = self.0.external_ids.iter().map(|k| format!("{}:{}", k.source, k.id)).collect();
            return Err(PipelineError::Conflict(format!(
                "an external id of this customer ({}) is already in use; update that customer instead, or use \
                 another id",
                ids.join(", ")
            )));
        }
        Ok(Some(Proposed::create(Entity::Customer(r.normalized(self.0.clone())))))
    }

    fn commit(&self, tx: &OrgTx<'_>, _: &Actor, change: &Change) -> store::Result<Option<Entity>> {
        let c = judged_customer(change)?;
        Ok(Some(Entity::Customer(tx.insert_customer(&Customer { id: 0, ..c.clone() })?)))
    }

    fn audited(&self, _: &Change) -> (&'static str, &'static str) {
        ("customer.create", "customer")
    }
}

struct UpdateCustomer<'a> {
    customer: &'a Customer,
    etag: Option<&'a String>,
}

impl Kind for UpdateCustomer<'_> {
    fn stored(&self, r: &dyn Reads) -> store::Result<Option<Entity>> {
        Ok(r.customer(self.customer.id)?.map(Entity::Customer))
    }

    fn propose(&self, r: &dyn Reads, stored: Option<Entity>) -> Result<Option<Proposed>> {
        let before = customer_of(stored).ok_or_else(|| not_found("customer", self.customer.id))?;
        if let Some(etag) = self.etag {
            check_etag(&before, etag)?;
        }
        let after = Customer {
            created_at: before.created_at,
            updated_at: before.updated_at,
            ..r.normalized(self.customer.clone())
        };
        Ok(Proposed::update(Entity::Customer(before), Entity::Customer(after)))
    }

    fn commit(&self, tx: &OrgTx<'_>, _: &Actor, change: &Change) -> store::Result<Option<Entity>> {
        let c = judged_customer(change)?;
        tx.update_customer(c)?;
        Ok(tx.customer(c.id)?.map(Entity::Customer))
    }

    fn audited(&self, _: &Change) -> (&'static str, &'static str) {
        ("customer.update", "customer")
    }
}

/// Refuse an update whose client saw another version of the record than the one stored.
fn check_etag(stored: &Customer, expected: &str) -> std::result::Result<(), StoreError> {
    if stored.etag() == expected {
        return Ok(());
    }
    Err(StoreError::Conflict(format!(
        "customer {} changed since you read it (its ETag is now {}, you sent {expected}); read it again, apply your \
         change, and send it with the new ETag",
        stored.id,
        stored.etag()
    )))
}

struct ImportCustomer<'a>(&'a CustomerRecord);

impl Kind for ImportCustomer<'_> {
    fn stored(&self, r: &dyn Reads) -> store::Result<Option<Entity>> {
        Ok(r.customer_by_key(&self.0.source, &self.0.external_id)?.map(Entity::Customer))
    }

    fn propose(&self, r: &dyn Reads, stored: Option<Entity>) -> Result<Option<Proposed>> {
        let rec = self.0;
        if rec.source.is_empty() || rec.external_id.is_empty() {
            return Err(PipelineError::Invalid("`source` and `external_id` must not be empty".into()));
        }
        let distributor = match &rec.distributor {
            Some(d) => Some(
                r.distributor_by_key(&d.source, &d.external_id)?
                    .ok_or_else(|| {
                        PipelineError::NotFound(format!(
                            "distributor {}:{} does not exist (import distributors first)",
                            d.source, d.external_id
                        ))
                    })?
                    .id,
            ),
            None => None,
        };
        let incoming = |base: &Customer| {
            let mut tags = base.tags.clone();
            tags.extend(rec.tags.iter().cloned());
            let mut consents = base.consents.clone();
            consents.extend(rec.consents.iter().filter(|k| !base.consents.contains(k)).cloned());
            let mut attributes = base.attributes.clone();
            attributes.extend(rec.attributes.clone());
            r.normalized(Customer {
                name: rec.name.clone().or(base.name.clone()),
                email: rec.email.clone().or(base.email.clone()),
                phone: rec.phone.clone().or(base.phone.clone()),
                branch: rec.branch.clone().or(base.branch.clone()),
                distributor: distributor.or(base.distributor),
                tags,
                consents,
                attributes,
                ..base.clone()
            })
        };
        Ok(match customer_of(stored) {
            None => {
                let key = ExternalId { source: rec.source.clone(), id: rec.external_id.clone() };
                let new = Customer { external_ids: vec![key], ..Customer::default() };
                Some(Proposed::create(Entity::Customer(incoming(&new))))
            }
            Some(before) => {
                let after = incoming(&before);
                Proposed::update(Entity::Customer(before), Entity::Customer(after))
            }
        })
    }

    fn commit(&self, tx: &OrgTx<'_>, actor: &Actor, change: &Change) -> store::Result<Option<Entity>> {
        match change.operation {
            Operation::Create => CreateCustomer(judged_customer(change)?).commit(tx, actor, change),
            _ => UpdateCustomer { customer: judged_customer(change)?, etag: None }.commit(tx, actor, change),
        }
    }

    fn audited(&self, change: &Change) -> (&'static str, &'static str) {
        match change.operation {
            Operation::Create => ("customer.create", "customer"),
            _ => ("customer.update", "customer"),
        }
    }

    fn keys(&self) -> Keys {
        Keys {
            writes: vec![("customer", self.0.source.clone(), self.0.external_id.clone())],
            needs: self
                .0
                .distributor
                .iter()
                .map(|d| ("distributor", d.source.clone(), d.external_id.clone()))
                .collect(),
        }
    }
}

struct AddInteraction<'a> {
    interaction: &'a Interaction,
    /// The customer by source key, when an import names them that way.
    customer: Option<&'a ExternalRef>,
}

impl Kind for AddInteraction<'_> {
    fn stored(&self, r: &dyn Reads) -> store::Result<Option<Entity>> {
        Ok(match &self.interaction.external_id {
            Some(ext) => r.interaction_by_key(&self.interaction.source, ext)?.map(Entity::Interaction),
            None => None,
        })
    }

    fn propose(&self, r: &dyn Reads, stored: Option<Entity>) -> Result<Option<Proposed>> {
        let mut i = self.interaction.clone();
        if let Some(key) = self.customer {
            i.customer = r.customer_id_by_key(&key.source, &key.external_id)?.ok_or_else(|| {
                PipelineError::NotFound(format!(
                    "customer {}:{} does not exist (import customers first)",
                    key.source, key.external_id
                ))
            })?;
        } else if !r.customer_exists(i.customer)? {
            return Err(not_found("customer", i.customer));
        }
        check_interaction(&mut i)?;
        if let Some(Entity::Interaction(stored)) = stored {
            if (Interaction { id: 0, ..stored.clone() }) == (Interaction { id: 0, ..i }) {
                return Ok(None);
            }
            return Err(PipelineError::Conflict(format!(
                "interaction {}:{} (id {}) already exists with other values; interactions are facts and are not \
                 overwritten",
                stored.source,
                stored.external_id.as_deref().unwrap_or_default(),
                stored.id
            )));
        }
        Ok(Some(Proposed::create(Entity::Interaction(i))))
    }

    fn commit(&self, tx: &OrgTx<'_>, _: &Actor, change: &Change) -> store::Result<Option<Entity>> {
        let Some(Entity::Interaction(i)) = &change.after else {
            return Err(StoreError::Invalid("a policy's patch replaced the interaction with another kind".into()));
        };
        let mut i = i.clone();
        check_interaction(&mut i).map_err(|e| StoreError::Invalid(e.to_string()))?;
        i.id = tx.insert_interaction(&i)?;
        Ok(Some(Entity::Interaction(i)))
    }

    fn audited(&self, _: &Change) -> (&'static str, &'static str) {
        ("interaction.create", "interaction")
    }

    fn keys(&self) -> Keys {
        let ext = self.interaction.external_id.as_ref();
        Keys {
            writes: ext.map(|e| ("interaction", self.interaction.source.clone(), e.clone())).into_iter().collect(),
            needs: self.customer.map(|c| ("customer", c.source.clone(), c.external_id.clone())).into_iter().collect(),
        }
    }
}

/// What every interaction must be, however it arrives (and after any policy's patch): money in
/// an ISO 4217 currency (upper-cased here), a ticket only on a ticket, and a ticket that is one.
fn check_interaction(i: &mut Interaction) -> Result<()> {
    if let Some(m) = &mut i.amount {
        if m.currency.len() != 3 || !m.currency.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(PipelineError::Invalid(format!(
                "`currency` must be an ISO 4217 code like USD or THB, got {:?}",
                m.currency
            )));
        }
        m.currency.make_ascii_uppercase();
    }
    match (&i.kind, &i.ticket) {
        (InteractionKind::Ticket, None) => {
            i.ticket = Some(Ticket {
                status: TicketStatus::Open,
                category: None,
                due_at: None,
                resolution: None,
                closed_at: None,
            });
        }
        (InteractionKind::Ticket, Some(_)) | (_, None) => {}
        (_, Some(_)) => return Err(PipelineError::Invalid("only a `ticket` interaction may carry a `ticket`".into())),
    }
    Ok(())
}

struct UpdateTicket<'a> {
    id: Id,
    ticket: &'a Ticket,
}

impl Kind for UpdateTicket<'_> {
    fn stored(&self, r: &dyn Reads) -> store::Result<Option<Entity>> {
        Ok(r.interaction(self.id)?.map(Entity::Interaction))
    }

    fn propose(&self, _: &dyn Reads, stored: Option<Entity>) -> Result<Option<Proposed>> {
        let Some(Entity::Interaction(before)) = stored else { return Err(not_found("interaction", self.id)) };
        if before.ticket.is_none() {
            return Err(PipelineError::Invalid(format!(
                "interaction {} is a {}, not a ticket: only a ticket's state changes after it was recorded",
                self.id,
                before.kind.as_str()
            )));
        }
        let mut ticket = self.ticket.clone();
        if ticket.status == TicketStatus::Closed && ticket.closed_at.is_none() {
            ticket.closed_at = Some(now_ms());
        }
        if ticket.status != TicketStatus::Closed {
            ticket.closed_at = None;
        }
        let after = Interaction { ticket: Some(ticket), ..before.clone() };
        Ok(Proposed::update(Entity::Interaction(before), Entity::Interaction(after)))
    }

    fn commit(&self, tx: &OrgTx<'_>, _: &Actor, change: &Change) -> store::Result<Option<Entity>> {
        let (Some(Entity::Interaction(before)), Some(Entity::Interaction(i))) = (&change.before, &change.after) else {
            return Err(StoreError::Invalid("a policy's patch replaced the interaction with another kind".into()));
        };
        // Policies may patch only the ticket: everything else stays as it happened.
        if (Interaction { ticket: None, ..i.clone() }) != (Interaction { ticket: None, ..before.clone() }) {
            return Err(StoreError::Invalid(
                "a policy's patch changed an interaction's facts; only its ticket may change".into(),
            ));
        }
        let ticket = i
            .ticket
            .as_ref()
            .ok_or_else(|| StoreError::Invalid("a policy's patch removed the ticket of a ticket interaction".into()))?;
        tx.update_ticket(self.id, ticket)?;
        Ok(Some(Entity::Interaction(i.clone())))
    }

    fn audited(&self, _: &Change) -> (&'static str, &'static str) {
        ("ticket.update", "interaction")
    }
}

struct EraseCustomer(Id);

impl Kind for EraseCustomer {
    fn stored(&self, r: &dyn Reads) -> store::Result<Option<Entity>> {
        Ok(r.customer(self.0)?.map(Entity::Customer))
    }

    fn propose(&self, _: &dyn Reads, stored: Option<Entity>) -> Result<Option<Proposed>> {
        let before = stored.ok_or_else(|| not_found("customer", self.0))?;
        Ok(Some(Proposed { operation: Operation::Delete, before: Some(before), after: None }))
    }

    fn commit(&self, tx: &OrgTx<'_>, actor: &Actor, _: &Change) -> store::Result<Option<Entity>> {
        tx.erase_customer(actor, self.0)?;
        Ok(None)
    }

    fn audited(&self, _: &Change) -> (&'static str, &'static str) {
        ("erase", "customer")
    }

    fn audits_itself(&self) -> bool {
        true
    }
}

struct MergeCustomers {
    keep: Id,
    remove: Id,
}

impl Kind for MergeCustomers {
    fn stored(&self, r: &dyn Reads) -> store::Result<Option<Entity>> {
        Ok(r.customer(self.keep)?.map(Entity::Customer))
    }

    fn propose(&self, r: &dyn Reads, stored: Option<Entity>) -> Result<Option<Proposed>> {
        let kept = customer_of(stored).ok_or_else(|| not_found("customer", self.keep))?;
        let removed = r.customer(self.remove)?.ok_or_else(|| not_found("customer", self.remove))?;
        if self.keep == self.remove {
            return Err(PipelineError::Invalid("cannot merge a customer into itself".into()));
        }
        let merged = store::merged_profile(&kept, &removed);
        Ok(Some(Proposed {
            operation: Operation::Update,
            before: Some(Entity::Customer(kept)),
            after: Some(Entity::Customer(merged)),
        }))
    }

    fn commit(&self, tx: &OrgTx<'_>, actor: &Actor, change: &Change) -> store::Result<Option<Entity>> {
        let merged = judged_customer(change)?;
        Ok(Some(Entity::Customer(tx.merge_customers(actor, self.keep, self.remove, Some(merged))?)))
    }

    fn audited(&self, _: &Change) -> (&'static str, &'static str) {
        ("merge", "customer")
    }

    fn audits_itself(&self) -> bool {
        true
    }
}

struct SaveBranch<'a>(&'a Branch);

impl Kind for SaveBranch<'_> {
    fn stored(&self, r: &dyn Reads) -> store::Result<Option<Entity>> {
        Ok(r.branch(&self.0.code)?.map(Entity::Branch))
    }

    fn propose(&self, _: &dyn Reads, stored: Option<Entity>) -> Result<Option<Proposed>> {
        let after = Entity::Branch(self.0.clone());
        Ok(match stored {
            Some(before) => Proposed::update(before, after),
            None => Some(Proposed::create(after)),
        })
    }

    fn commit(&self, tx: &OrgTx<'_>, _: &Actor, change: &Change) -> store::Result<Option<Entity>> {
        let Some(Entity::Branch(b)) = &change.after else {
            return Err(StoreError::Invalid("a policy's patch replaced the branch with another kind".into()));
        };
        Ok(Some(Entity::Branch(tx.save_branch(b)?)))
    }

    fn audited(&self, _: &Change) -> (&'static str, &'static str) {
        ("branch.save", "branch")
    }
}

struct SaveDistributor<'a>(&'a Distributor);

impl Kind for SaveDistributor<'_> {
    fn stored(&self, r: &dyn Reads) -> store::Result<Option<Entity>> {
        if self.0.id == 0 {
            return Ok(None);
        }
        Ok(r.distributor(self.0.id)?.map(Entity::Distributor))
    }

    fn propose(&self, _: &dyn Reads, stored: Option<Entity>) -> Result<Option<Proposed>> {
        let after = Entity::Distributor(self.0.clone());
        match stored {
            Some(before) => Ok(Proposed::update(before, after)),
            None if self.0.id == 0 => Ok(Some(Proposed::create(after))),
            None => Err(not_found("distributor", self.0.id)),
        }
    }

    fn commit(&self, tx: &OrgTx<'_>, _: &Actor, change: &Change) -> store::Result<Option<Entity>> {
        Ok(Some(Entity::Distributor(tx.save_distributor(judged_distributor(change)?, None)?)))
    }

    fn audited(&self, _: &Change) -> (&'static str, &'static str) {
        ("distributor.save", "distributor")
    }
}

fn judged_distributor(change: &Change) -> store::Result<&Distributor> {
    match &change.after {
        Some(Entity::Distributor(d)) => Ok(d),
        _ => Err(StoreError::Invalid("a policy's patch replaced the distributor with another kind".into())),
    }
}

struct ImportDistributor<'a>(&'a DistributorRecord);

impl Kind for ImportDistributor<'_> {
    fn stored(&self, r: &dyn Reads) -> store::Result<Option<Entity>> {
        Ok(r.distributor_by_key(&self.0.source, &self.0.external_id)?.map(Entity::Distributor))
    }

    fn propose(&self, r: &dyn Reads, stored: Option<Entity>) -> Result<Option<Proposed>> {
        let rec = self.0;
        if rec.source.is_empty() || rec.external_id.is_empty() {
            return Err(PipelineError::Invalid("`source` and `external_id` must not be empty".into()));
        }
        let status = match rec.status.as_deref().unwrap_or("active") {
            "active" => DistributorStatus::Active,
            "inactive" => DistributorStatus::Inactive,
            "terminated" => DistributorStatus::Terminated,
            other => {
                return Err(PipelineError::Invalid(format!(
                    "`status` must be active, inactive or terminated, got {other:?}"
                )));
            }
        };
        let sponsor = match &rec.sponsor {
            Some(ext) if ext == &rec.external_id => {
                return Err(PipelineError::Invalid("a distributor cannot sponsor themself".into()));
            }
            Some(ext) => Some(
                r.distributor_by_key(&rec.source, ext)?
                    .ok_or_else(|| {
                        PipelineError::NotFound(format!(
                            "sponsor {}:{ext} does not exist (sponsors must come first)",
                            rec.source
                        ))
                    })?
                    .id,
            ),
            None => None,
        };
        let id = match &stored {
            Some(Entity::Distributor(d)) => d.id,
            _ => 0,
        };
        let after = Entity::Distributor(Distributor {
            id,
            name: rec.name.clone(),
            sponsor,
            rank: rec.rank.clone(),
            status,
            branch: rec.branch.clone(),
            attributes: rec.attributes.clone(),
        });
        Ok(match stored {
            Some(before) => Proposed::update(before, after),
            None => Some(Proposed::create(after)),
        })
    }

    fn commit(&self, tx: &OrgTx<'_>, _: &Actor, change: &Change) -> store::Result<Option<Entity>> {
        let key = (self.0.source.as_str(), self.0.external_id.as_str());
        Ok(Some(Entity::Distributor(tx.save_distributor(judged_distributor(change)?, Some(key))?)))
    }

    fn audited(&self, _: &Change) -> (&'static str, &'static str) {
        ("distributor.save", "distributor")
    }

    fn keys(&self) -> Keys {
        let key = |ext: &String| ("distributor", self.0.source.clone(), ext.clone());
        Keys { writes: vec![key(&self.0.external_id)], needs: self.0.sponsor.iter().map(key).collect() }
    }
}
