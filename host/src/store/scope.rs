//! What one caller may see of an organization: all of it, or an agent's part of it (one branch's
//! customers, or one distributor's). A [`View`] is the organization's store as that caller sees
//! it, the way [`OrgStore`] is the database as one organization sees it: every customer read,
//! list, count and distributor list goes through it, so no handler can forget the scope, and
//! nothing outside it shows through a count, a list or a "does not exist".

use rusqlite::params;

use super::{OrgStore, Profile, Result, distributor_from_row, filter, scoped};
use crate::model::{AggregateQuery, AggregateResult, Customer, CustomerPage, Distributor, Id, Interaction, Timestamp};

/// The part of an organization a key works in. A customer outside it is answered as if it did
/// not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub branch: Option<String>,
    pub distributor: Option<Id>,
}

impl Scope {
    pub fn is_whole_org(&self) -> bool {
        self.branch.is_none() && self.distributor.is_none()
    }

    pub fn allows(&self, c: &Customer) -> bool {
        self.branch.as_ref().is_none_or(|b| c.branch.as_ref() == Some(b))
            && self.distributor.is_none_or(|d| c.distributor == Some(d))
    }

    /// The filter-language clause that keeps a list inside the scope.
    pub fn filter(&self) -> Option<String> {
        let mut clauses = Vec::new();
        if let Some(b) = &self.branch {
            clauses.push(format!("branch = {}", filter::quote(b)));
        }
        if let Some(d) = self.distributor {
            clauses.push(format!("distributor = {d}"));
        }
        (!clauses.is_empty()).then(|| clauses.join(" and "))
    }

    /// `filter` (the caller's own) limited to the scope. The caller's filter is parsed alone
    /// first, so that no text of theirs can reach around the scope's clause.
    ///
    /// # Errors
    /// The caller's filter does not parse.
    pub fn within(&self, filter: &str) -> Result<String> {
        Ok(filter::within(filter, self.filter().as_deref())?)
    }
}

/// An organization's data as one caller sees it.
#[derive(Clone)]
pub struct View {
    org: OrgStore,
    scope: Scope,
}

impl View {
    pub fn new(org: OrgStore, scope: Scope) -> View {
        View { org, scope }
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The organization's store, for what is not about customers (branches, plugins, keys).
    pub fn org(&self) -> &OrgStore {
        &self.org
    }

    /// A customer, if the caller may see them.
    ///
    /// # Errors
    /// A database failure.
    pub fn customer(&self, id: Id) -> Result<Option<Customer>> {
        Ok(self.org.customer(id)?.filter(|c| self.scope.allows(c)))
    }

    /// A customer by a source system's id, if the caller may see them.
    ///
    /// # Errors
    /// A database failure.
    pub fn find_customer(&self, source: &str, external_id: &str) -> Result<Option<Customer>> {
        Ok(self.org.find_customer(source, external_id)?.filter(|c| self.scope.allows(c)))
    }

    /// A customer's profile page, if the caller may see them.
    ///
    /// # Errors
    /// A database failure.
    pub fn profile(&self, id: Id, timeline_limit: u32) -> Result<Option<Profile>> {
        if self.customer(id)?.is_none() {
            return Ok(None);
        }
        self.org.profile(id, timeline_limit)
    }

    /// A page of a customer's timeline; `None` for a customer the caller may not see.
    ///
    /// # Errors
    /// A database failure or a bad cursor.
    pub fn timeline(
        &self,
        customer: Id,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Option<(Vec<Interaction>, Option<String>)>> {
        if self.customer(customer)?.is_none() {
            return Ok(None);
        }
        self.org.timeline(customer, before, limit).map(Some)
    }

    /// An interaction, if the caller may see its customer.
    ///
    /// # Errors
    /// A database failure.
    pub fn interaction(&self, id: Id) -> Result<Option<Interaction>> {
        let Some(i) = self.org.interaction(id)? else { return Ok(None) };
        Ok(self.customer(i.customer)?.map(|_| i))
    }

    /// Everything held on a customer, if the caller may see them.
    ///
    /// # Errors
    /// A database failure.
    pub fn export(&self, id: Id) -> Result<Option<serde_json::Value>> {
        if self.customer(id)?.is_none() {
            return Ok(None);
        }
        self.org.export(id)
    }

    /// Customers matching the caller's filter within the scope.
    ///
    /// # Errors
    /// A filter that does not parse, or a bad cursor.
    pub fn list_customers(&self, filter: &str, cursor: Option<&str>, limit: u32) -> Result<CustomerPage> {
        self.org.list_customers(&self.scope.within(filter)?, cursor, limit)
    }

    /// How many customers match the caller's filter within the scope (segment sizes, dashboards).
    ///
    /// # Errors
    /// A filter that does not parse.
    pub fn count_customers(&self, filter: &str) -> Result<u64> {
        self.org.count_customers(&self.scope.within(filter)?)
    }

    /// Interactions since `since` of the customers matching `filter` within the scope.
    ///
    /// # Errors
    /// A filter that does not parse.
    pub fn count_interactions_since(&self, filter: &str, since: Timestamp) -> Result<u64> {
        self.org.count_interactions_since(&self.scope.within(filter)?, since)
    }

    /// Grouped statistics over the customers matching the query's filter within the scope.
    ///
    /// # Errors
    /// A filter that does not parse, or a query the store refuses.
    pub fn aggregate(&self, query: &AggregateQuery) -> Result<AggregateResult> {
        let query = AggregateQuery { filter: self.scope.within(&query.filter)?, ..query.clone() };
        self.org.aggregate(&query)
    }

    /// Distributors in id order after `after` (optionally one sponsor's recruits): for a key
    /// scoped to a distributor, that distributor and their downline; to a branch, the branch's.
    ///
    /// # Errors
    /// A database failure.
    pub fn distributors(&self, after: Id, limit: u32, sponsor: Option<Id>) -> Result<Vec<Distributor>> {
        let conn = self.org.conn()?;
        let mut stmt = conn.prepare_cached(scoped(
            "SELECT id, name, sponsor_id, rank, status, branch, attributes FROM distributors \
             WHERE org_id = ?1 AND id > ?2 AND (?4 IS NULL OR sponsor_id = ?4) AND (?5 IS NULL OR branch = ?5) \
             AND (?6 IS NULL OR id IN (WITH RECURSIVE tree(id) AS (SELECT ?6 UNION SELECT d.id FROM distributors d \
             JOIN tree ON d.sponsor_id = tree.id WHERE d.org_id = ?1) SELECT id FROM tree)) ORDER BY id LIMIT ?3",
        ))?;
        let rows = stmt.query_map(
            params![
                self.org.org.id,
                after as i64,
                limit.clamp(1, 1000) as i64,
                sponsor.map(|s| s as i64),
                self.scope.branch,
                self.scope.distributor.map(|d| d as i64)
            ],
            distributor_from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A distributor, if the caller's scope reaches them.
    ///
    /// # Errors
    /// A database failure.
    pub fn distributor(&self, id: Id) -> Result<Option<Distributor>> {
        if self.scope.is_whole_org() {
            return self.org.distributor(id);
        }
        Ok(self.distributors(id.saturating_sub(1), 1, None)?.into_iter().find(|d| d.id == id))
    }
}
