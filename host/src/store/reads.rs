//! The reads a write needs, from either side of its commit.
//!
//! The pipeline builds and judges a change from what is stored *before* any transaction opens
//! (policies run for milliseconds; no lock may be held meanwhile), then reads the same record
//! again *inside* the commit's transaction to see whether it is still what was judged. Both reads
//! must be the same code, or "still the same" would compare two different questions: hence one
//! trait, implemented by [`OrgStore`] (a pooled connection) and [`OrgTx`] (the transaction).

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    INTERACTION_COLUMNS, OrgStore, OrgTx, Result, distributor_from_row, interaction_from_row, json_map, load_customer,
    normalized, scoped,
};
use crate::model::{Branch, Customer, Distributor, Id, Interaction};

/// What a write reads to become a change, and to check it again at commit.
pub trait Reads {
    /// A customer by id.
    ///
    /// # Errors
    /// A database failure.
    fn customer(&self, id: Id) -> Result<Option<Customer>>;
    /// A customer by one of their source systems' ids.
    ///
    /// # Errors
    /// A database failure.
    fn customer_by_key(&self, source: &str, external_id: &str) -> Result<Option<Customer>>;
    /// Just the id of the customer a source system's id names (one indexed lookup, where a
    /// reference needs no more).
    ///
    /// # Errors
    /// A database failure.
    fn customer_id_by_key(&self, source: &str, external_id: &str) -> Result<Option<Id>>;
    /// Whether a customer with this id exists.
    ///
    /// # Errors
    /// A database failure.
    fn customer_exists(&self, id: Id) -> Result<bool>;
    /// An interaction by id.
    ///
    /// # Errors
    /// A database failure.
    fn interaction(&self, id: Id) -> Result<Option<Interaction>>;
    /// An interaction by its source system's id.
    ///
    /// # Errors
    /// A database failure.
    fn interaction_by_key(&self, source: &str, external_id: &str) -> Result<Option<Interaction>>;
    /// A branch by code.
    ///
    /// # Errors
    /// A database failure.
    fn branch(&self, code: &str) -> Result<Option<Branch>>;
    /// A distributor by id.
    ///
    /// # Errors
    /// A database failure.
    fn distributor(&self, id: Id) -> Result<Option<Distributor>>;
    /// A distributor by its source system's id.
    ///
    /// # Errors
    /// A database failure.
    fn distributor_by_key(&self, source: &str, external_id: &str) -> Result<Option<Distributor>>;
    /// The customer as it would be stored (trimmed, phone in E.164, tags sorted): compare
    /// against this to tell a real change from a no-op.
    fn normalized(&self, c: Customer) -> Customer;
}

pub(super) fn customer_by_key(
    conn: &Connection,
    org: i64,
    source: &str,
    external_id: &str,
) -> Result<Option<Customer>> {
    match customer_id_by_key(conn, org, source, external_id)? {
        Some(id) => load_customer(conn, org, id),
        None => Ok(None),
    }
}

fn customer_id_by_key(conn: &Connection, org: i64, source: &str, external_id: &str) -> Result<Option<Id>> {
    let id: Option<i64> = conn
        .prepare_cached(scoped(
            "SELECT customer_id FROM customer_ids WHERE org_id = ?1 AND source = ?2 AND external_id = ?3",
        ))?
        .query_row(params![org, source, external_id], |r| r.get(0))
        .optional()?;
    Ok(id.map(|id| id as Id))
}

fn customer_exists(conn: &Connection, org: i64, id: Id) -> Result<bool> {
    Ok(conn
        .prepare_cached(scoped("SELECT EXISTS (SELECT 1 FROM customers WHERE org_id = ?1 AND id = ?2)"))?
        .query_row(params![org, id as i64], |r| r.get(0))?)
}

pub(super) fn interaction(conn: &Connection, org: i64, id: Id) -> Result<Option<Interaction>> {
    let sql = format!("SELECT {INTERACTION_COLUMNS} FROM interactions i WHERE i.org_id = ?1 AND i.id = ?2");
    Ok(conn.prepare_cached(scoped(&sql))?.query_row(params![org, id as i64], interaction_from_row).optional()?)
}

pub(super) fn interaction_by_key(
    conn: &Connection,
    org: i64,
    source: &str,
    external_id: &str,
) -> Result<Option<Interaction>> {
    let sql = format!(
        "SELECT {INTERACTION_COLUMNS} FROM interactions i WHERE i.org_id = ?1 AND i.source = ?2 AND i.external_id = ?3"
    );
    Ok(conn
        .prepare_cached(scoped(&sql))?
        .query_row(params![org, source, external_id], interaction_from_row)
        .optional()?)
}

pub(super) fn branch(conn: &Connection, org: i64, code: &str) -> Result<Option<Branch>> {
    Ok(conn
        .prepare_cached(scoped("SELECT code, name, attributes FROM branches WHERE org_id = ?1 AND code = ?2"))?
        .query_row(params![org, code], |r| {
            Ok(Branch { code: r.get(0)?, name: r.get(1)?, attributes: json_map(r.get(2)?) })
        })
        .optional()?)
}

const DISTRIBUTOR_COLUMNS: &str = "id, name, sponsor_id, rank, status, branch, attributes";

pub(super) fn distributor(conn: &Connection, org: i64, id: Id) -> Result<Option<Distributor>> {
    let sql = format!("SELECT {DISTRIBUTOR_COLUMNS} FROM distributors WHERE org_id = ?1 AND id = ?2");
    Ok(conn.prepare_cached(scoped(&sql))?.query_row(params![org, id as i64], distributor_from_row).optional()?)
}

pub(super) fn distributor_by_key(
    conn: &Connection,
    org: i64,
    source: &str,
    external_id: &str,
) -> Result<Option<Distributor>> {
    let sql = format!(
        "SELECT {DISTRIBUTOR_COLUMNS} FROM distributors WHERE org_id = ?1 AND source = ?2 AND external_id = ?3"
    );
    Ok(conn
        .prepare_cached(scoped(&sql))?
        .query_row(params![org, source, external_id], distributor_from_row)
        .optional()?)
}

/// One implementation over a connection, for both sides: `$conn` is how `self` reaches its
/// connection and `$org` its organization's id.
macro_rules! reads_on {
    ($ty:ty, |$s:ident| $conn:expr, $org:expr, $country:expr) => {
        impl Reads for $ty {
            fn customer(&self, id: Id) -> Result<Option<Customer>> {
                let $s = self;
                load_customer(&$conn, $org, id)
            }
            fn customer_by_key(&self, source: &str, external_id: &str) -> Result<Option<Customer>> {
                let $s = self;
                customer_by_key(&$conn, $org, source, external_id)
            }
            fn customer_id_by_key(&self, source: &str, external_id: &str) -> Result<Option<Id>> {
                let $s = self;
                customer_id_by_key(&$conn, $org, source, external_id)
            }
            fn customer_exists(&self, id: Id) -> Result<bool> {
                let $s = self;
                customer_exists(&$conn, $org, id)
            }
            fn interaction(&self, id: Id) -> Result<Option<Interaction>> {
                let $s = self;
                interaction(&$conn, $org, id)
            }
            fn interaction_by_key(&self, source: &str, external_id: &str) -> Result<Option<Interaction>> {
                let $s = self;
                interaction_by_key(&$conn, $org, source, external_id)
            }
            fn branch(&self, code: &str) -> Result<Option<Branch>> {
                let $s = self;
                branch(&$conn, $org, code)
            }
            fn distributor(&self, id: Id) -> Result<Option<Distributor>> {
                let $s = self;
                distributor(&$conn, $org, id)
            }
            fn distributor_by_key(&self, source: &str, external_id: &str) -> Result<Option<Distributor>> {
                let $s = self;
                distributor_by_key(&$conn, $org, source, external_id)
            }
            fn normalized(&self, c: Customer) -> Customer {
                let $s = self;
                normalized(c, $country)
            }
        }
    };
}

reads_on!(OrgStore, |s| *s.conn()?, s.org.id, s.org.default_country_code.as_deref());
reads_on!(OrgTx<'_>, |s| *s.tx, s.org, s.country);
