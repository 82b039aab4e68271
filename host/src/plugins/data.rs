//! What a plugin can read: one organization's data, behind a trait so that the runtime needs no
//! store. The SQLite store implements it, for the server and for `plugin run` (a fixture loaded
//! into an in-memory store).

use crate::model::{
    AggregateQuery, AggregateResult, Customer, CustomerPage, Distributor, DownlineMember, Id, Interaction, Timestamp,
};

/// A failure of the data source itself (not of the plugin): the call fails with a host error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DataError(pub String);

/// The calling organization's records, read-only. Implementations are scoped to one
/// organization when they are built: no method takes an organization, so none can reach another.
///
/// Methods must be bounded in time: epoch interruption cannot stop a plugin that is waiting in a
/// host call.
pub trait DataSource: Send + Sync {
    /// # Errors
    /// A failure of the source itself ([`DataError`]): the plugin's call fails with a host error.
    fn customer(&self, id: Id) -> Result<Option<Customer>, DataError>;
    /// # Errors
    /// A failure of the source itself ([`DataError`]): the plugin's call fails with a host error.
    fn find_customer(&self, source: &str, external_id: &str) -> Result<Option<Customer>, DataError>;
    /// Newest first; `limit` is already capped by the runtime.
    ///
    /// # Errors
    /// A failure of the source itself ([`DataError`]): the plugin's call fails with a host error.
    fn timeline(&self, customer: Id, before: Option<Timestamp>, limit: u32) -> Result<Vec<Interaction>, DataError>;
    /// `Ok(Err(message))` for an invalid filter: the plugin gets the message, not a trap.
    ///
    /// # Errors
    /// A failure of the source itself ([`DataError`]): the plugin's call fails with a host error.
    fn query_customers(
        &self,
        filter: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Result<CustomerPage, String>, DataError>;
    /// # Errors
    /// A failure of the source itself ([`DataError`]): the plugin's call fails with a host error.
    fn distributor(&self, id: Id) -> Result<Option<Distributor>, DataError>;
    /// # Errors
    /// A failure of the source itself ([`DataError`]): the plugin's call fails with a host error.
    fn downline(&self, distributor: Id, max_depth: u32) -> Result<Vec<DownlineMember>, DataError>;
    /// `Ok(Err(message))` for an invalid query: the plugin gets the message, not a trap.
    ///
    /// # Errors
    /// A failure of the source itself ([`DataError`]): the plugin's call fails with a host error.
    fn aggregate(&self, query: &AggregateQuery) -> Result<Result<AggregateResult, String>, DataError>;
}

/// A data source with nothing in it: for calls that need no data (checks, benchmarks).
pub struct Empty;

impl DataSource for Empty {
    fn customer(&self, _: Id) -> Result<Option<Customer>, DataError> {
        Ok(None)
    }
    fn find_customer(&self, _: &str, _: &str) -> Result<Option<Customer>, DataError> {
        Ok(None)
    }
    fn timeline(&self, _: Id, _: Option<Timestamp>, _: u32) -> Result<Vec<Interaction>, DataError> {
        Ok(Vec::new())
    }
    fn query_customers(&self, _: &str, _: Option<&str>, _: u32) -> Result<Result<CustomerPage, String>, DataError> {
        Ok(Ok(CustomerPage { items: Vec::new(), next_cursor: None }))
    }
    fn distributor(&self, _: Id) -> Result<Option<Distributor>, DataError> {
        Ok(None)
    }
    fn downline(&self, _: Id, _: u32) -> Result<Vec<DownlineMember>, DataError> {
        Ok(Vec::new())
    }
    fn aggregate(&self, query: &AggregateQuery) -> Result<Result<AggregateResult, String>, DataError> {
        Ok(Ok(crate::aggregate::Grouper::new(query).finish()))
    }
}
