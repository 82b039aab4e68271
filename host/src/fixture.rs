//! The `--fixture STORE.json` of `rapport plugin run`: an organization's records in a JSON file,
//! loaded into a real store on a private in-memory SQLite database.
//!
//! The fixture is only a file format. Once loaded, a plugin reads it through the server's own
//! `OrgStore`, so filters, aggregates, scorer features and the sponsor tree answer exactly as on
//! a server: there is no second implementation of their meaning to drift from the first.

use std::path::Path;

use anyhow::{Context, anyhow};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::{Branch, Customer, Distributor, Interaction};
use crate::store::{OrgStore, Store, StoreError};

/// The organization a fixture is loaded into (each load gets a database of its own).
pub const ORG: &str = "fixture";

/// A fixture's records, checked field by field (an unknown field is an error, not ignored).
#[derive(Debug, Default)]
pub struct Fixture {
    pub customers: Vec<Customer>,
    pub interactions: Vec<Interaction>,
    pub distributors: Vec<Distributor>,
    pub branches: Vec<Branch>,
}

/// The file's sections, each record kept as JSON until it is checked, so that an error can name
/// the record (`customers[3] (id 7): unknown field ...`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections {
    #[serde(default)]
    customers: Vec<Value>,
    #[serde(default)]
    interactions: Vec<Value>,
    #[serde(default)]
    distributors: Vec<Value>,
    #[serde(default)]
    branches: Vec<Value>,
}

/// How an error names a record: its section, position and, when it has one, its id.
fn record(section: &str, n: usize, id: Option<&Value>) -> String {
    match id {
        Some(id) if !id.is_null() => format!("{section}[{n}] (id {id})"),
        _ => format!("{section}[{n}]"),
    }
}

fn records<T: DeserializeOwned>(section: &str, raw: Vec<Value>) -> anyhow::Result<Vec<T>> {
    raw.into_iter()
        .enumerate()
        .map(|(n, v)| {
            let name = record(section, n, v.get("id"));
            serde_json::from_value(v).map_err(|e| anyhow!("{name}: {e}"))
        })
        .collect()
}

impl Fixture {
    /// Read a fixture file and load it into a fresh in-memory store: what `plugin run --fixture`
    /// reads through. Every error names the file and the record to fix.
    pub fn open(path: &Path) -> anyhow::Result<OrgStore> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read fixture {}", path.display()))?;
        Fixture::parse(&text).and_then(|f| f.store()).with_context(|| format!("invalid fixture {}", path.display()))
    }

    /// Parse a fixture, checking every record's fields.
    pub fn parse(text: &str) -> anyhow::Result<Fixture> {
        let sections: Sections = serde_json::from_str(text)?;
        Ok(Fixture {
            customers: records("customers", sections.customers)?,
            interactions: records("interactions", sections.interactions)?,
            distributors: records("distributors", sections.distributors)?,
            branches: records("branches", sections.branches)?,
        })
    }

    /// A new in-memory store holding these records, through the store's own writes (so a record
    /// the server would refuse — an interaction of a customer who does not exist, a sponsor
    /// cycle — is refused here too, naming it). Ids are kept: inputs refer to records by id.
    /// Records without an id (0) get one; `created_at`/`updated_at` are kept as written (0 when
    /// left out), so that a run is the same every time.
    pub fn store(&self) -> anyhow::Result<OrgStore> {
        let store = Store::open_memory().context("cannot create the in-memory store")?;
        store.create_org(ORG, "plugin run fixture")?;
        let org = store.org(ORG)?;
        org.write(|tx| {
            let at = |name: String| move |e: StoreError| StoreError::Invalid(format!("{name}: {e}"));
            for (n, b) in self.branches.iter().enumerate() {
                tx.save_branch(b).map_err(at(format!("branches[{n}] (code {})", b.code)))?;
            }
            // Sponsors may come after the distributors they sponsor: store everyone first, then
            // link the tree, where the store refuses a missing sponsor or a cycle.
            let mut stored = Vec::with_capacity(self.distributors.len());
            for (n, d) in self.distributors.iter().enumerate() {
                let name = record("distributors", n, (d.id != 0).then(|| Value::from(d.id)).as_ref());
                let unlinked = Distributor { sponsor: None, ..d.clone() };
                let key = format!("fixture-{n}");
                stored.push(tx.insert_distributor_as_given(&unlinked, "fixture", &key).map_err(at(name))?);
            }
            for (n, (d, s)) in self.distributors.iter().zip(&stored).enumerate() {
                if d.sponsor.is_some() {
                    let name = record("distributors", n, Some(&Value::from(s.id)));
                    tx.save_distributor(&Distributor { id: s.id, ..d.clone() }, None).map_err(at(name))?;
                }
            }
            for (n, c) in self.customers.iter().enumerate() {
                let name = record("customers", n, (c.id != 0).then(|| Value::from(c.id)).as_ref());
                tx.insert_customer_as_given(c).map_err(at(name))?;
            }
            for (n, i) in self.interactions.iter().enumerate() {
                let name = record("interactions", n, (i.id != 0).then(|| Value::from(i.id)).as_ref());
                tx.insert_interaction_as_given(i).map_err(at(name))?;
            }
            Ok(())
        })?;
        Ok(org)
    }
}
