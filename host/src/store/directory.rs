//! Branches, distributors (the sponsor tree), segments and score history: the organization's
//! directory around its customers.

use rand::RngExt;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::json;

use super::{OrgStore, OrgTx, Result, StoreError, attributes_text, distributor_from_row, now_ms, scoped};
use crate::model::{Actor, Branch, Distributor, DistributorStatus, Id, Timestamp};

/// A saved customer filter with a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Segment {
    pub name: String,
    pub filter: String,
    pub description: String,
    pub created_at: Timestamp,
}

/// One computed score value, as it was at `computed_at`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScorePoint {
    pub plugin: String,
    pub name: String,
    pub value: Option<f64>,
    pub label: Option<String>,
    pub computed_at: Timestamp,
}

pub(super) fn check_branch_code(code: &str) -> Result<()> {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("branch code `{code}` must be 1-64 characters of letters, digits, `-` or `_`")))
    }
}

fn status_text(s: DistributorStatus) -> &'static str {
    match s {
        DistributorStatus::Active => "active",
        DistributorStatus::Inactive => "inactive",
        DistributorStatus::Terminated => "terminated",
    }
}

impl OrgStore {
    /// # Errors
    /// A database failure.
    pub fn branch(&self, code: &str) -> Result<Option<Branch>> {
        super::reads::branch(&*self.conn()?, self.org.id, code)
    }

    /// # Errors
    /// A database failure.
    pub fn distributors(&self, after: Id, limit: u32, sponsor: Option<Id>) -> Result<Vec<Distributor>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(scoped(
            "SELECT id, name, sponsor_id, rank, status, branch, attributes FROM distributors \
             WHERE org_id = ?1 AND id > ?2 AND (?4 IS NULL OR sponsor_id = ?4) ORDER BY id LIMIT ?3",
        ))?;
        let rows = stmt.query_map(
            params![self.org.id, after as i64, limit.clamp(1, 1000) as i64, sponsor.map(|s| s as i64)],
            distributor_from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The sponsors above a distributor, nearest first (its upline).
    ///
    /// # Errors
    /// A database failure.
    pub fn upline(&self, id: Id) -> Result<Vec<Distributor>> {
        let mut line = Vec::new();
        let mut next = self.distributor(id)?.and_then(|d| d.sponsor);
        while let Some(s) = next {
            // The store refuses cycles; the bound only guards against a database edited by hand.
            if line.len() > 10_000 {
                break;
            }
            let Some(d) = self.distributor(s)? else { break };
            next = d.sponsor;
            line.push(d);
        }
        Ok(line)
    }

    /// # Errors
    /// A database failure.
    pub fn segments(&self) -> Result<Vec<Segment>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(scoped(
            "SELECT name, filter, description, created_at FROM segments WHERE org_id = ?1 ORDER BY name",
        ))?;
        let rows = stmt.query_map([self.org.id], |r| {
            Ok(Segment { name: r.get(0)?, filter: r.get(1)?, description: r.get(2)?, created_at: r.get(3)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// # Errors
    /// A database failure.
    pub fn segment(&self, name: &str) -> Result<Option<Segment>> {
        Ok(self
            .conn()?
            .prepare_cached(scoped(
                "SELECT name, filter, description, created_at FROM segments WHERE org_id = ?1 AND name = ?2",
            ))?
            .query_row(params![self.org.id, name], |r| {
                Ok(Segment { name: r.get(0)?, filter: r.get(1)?, description: r.get(2)?, created_at: r.get(3)? })
            })
            .optional()?)
    }

    /// Remove a segment; false if there was none of that name.
    ///
    /// # Errors
    /// A database failure.
    pub fn delete_segment(&self, actor: &Actor, name: &str) -> Result<bool> {
        self.write(|tx| {
            let n =
                tx.tx.execute(scoped("DELETE FROM segments WHERE org_id = ?1 AND name = ?2"), params![tx.org, name])?;
            if n == 1 {
                tx.audit(actor, "segment.delete", "segment", None, json!({ "name": name }))?;
            }
            Ok(n == 1)
        })
    }

    /// A customer's score values over time, newest first.
    ///
    /// # Errors
    /// A database failure.
    pub fn score_history(&self, customer: Id, limit: u32) -> Result<Vec<ScorePoint>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(scoped(
            "SELECT h.plugin, h.name, h.value, h.label, h.computed_at FROM score_history h \
             JOIN customers c ON c.id = h.customer_id WHERE c.org_id = ?1 AND h.customer_id = ?2 \
             ORDER BY h.computed_at DESC, h.rowid DESC LIMIT ?3",
        ))?;
        let rows = stmt.query_map(params![self.org.id, customer as i64, limit.clamp(1, 1000) as i64], |r| {
            Ok(ScorePoint {
                plugin: r.get(0)?,
                name: r.get(1)?,
                value: r.get(2)?,
                label: r.get(3)?,
                computed_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

impl OrgTx<'_> {
    /// # Errors
    /// A database failure.
    pub fn branch(&self, code: &str) -> Result<Option<Branch>> {
        super::reads::branch(self.tx, self.org, code)
    }

    /// Create or update a branch (by code).
    ///
    /// # Errors
    /// `Invalid` for a malformed branch code; a database failure.
    pub fn save_branch(&self, branch: &Branch) -> Result<Branch> {
        check_branch_code(&branch.code)?;
        self.tx.execute(
            scoped(
                "INSERT INTO branches (org_id, code, name, attributes) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (org_id, code) DO UPDATE SET name = excluded.name, attributes = excluded.attributes",
            ),
            params![self.org, branch.code, branch.name, attributes_text(&branch.attributes)],
        )?;
        Ok(branch.clone())
    }

    /// # Errors
    /// A database failure.
    pub fn distributor(&self, id: Id) -> Result<Option<Distributor>> {
        super::reads::distributor(self.tx, self.org, id)
    }

    /// A sponsor must be this organization's, and never the distributor itself or anyone below
    /// it: the sponsor tree stays a tree.
    fn check_sponsor(&self, d: &Distributor) -> Result<()> {
        let Some(sponsor) = d.sponsor else { return Ok(()) };
        if self.distributor(sponsor)?.is_none() {
            return Err(StoreError::Invalid(format!("sponsor {sponsor} does not exist")));
        }
        if d.id == 0 {
            return Ok(());
        }
        if sponsor == d.id {
            return Err(StoreError::Invalid(format!("distributor {} cannot sponsor itself", d.id)));
        }
        let below: bool = self
            .tx
            .prepare_cached(scoped(
                "WITH RECURSIVE tree(id) AS ( \
                SELECT id FROM distributors WHERE org_id = ?1 AND sponsor_id = ?2 \
                UNION SELECT d.id FROM distributors d JOIN tree ON d.sponsor_id = tree.id WHERE d.org_id = ?1) \
             SELECT EXISTS (SELECT 1 FROM tree WHERE id = ?3)",
            ))?
            .query_row(params![self.org, d.id as i64, sponsor as i64], |r| r.get(0))?;
        if below {
            return Err(StoreError::Invalid(format!(
                "distributor {sponsor} is in the downline of {}; moving {} under it would make a cycle",
                d.id, d.id
            )));
        }
        Ok(())
    }

    /// Insert a distributor that already has an id (a `plugin run` fixture's, which customers and
    /// sponsors refer to): kept as given, 0 gets a new one. `(source, external_id)` is its key
    /// in the organization, as an import's. The sponsor must be stored already.
    ///
    /// # Errors
    /// `Invalid` when the name is blank, the branch code malformed, the sponsor missing, or the id
    /// too large or taken, or another distributor has the key; a database failure.
    pub fn insert_distributor_as_given(&self, d: &Distributor, source: &str, external_id: &str) -> Result<Distributor> {
        if d.name.trim().is_empty() {
            return Err(StoreError::Invalid("a distributor needs a name".into()));
        }
        if let Some(b) = &d.branch {
            check_branch_code(b)?;
        }
        let id = Some(d.id).filter(|&id| id != 0);
        if let Some(id) = id
            && i64::try_from(id).is_err()
        {
            return Err(StoreError::Invalid(format!("distributor id {id} is too large (the largest is {})", i64::MAX)));
        }
        // New, so nothing is below it yet: only the sponsor's existence needs checking.
        self.check_sponsor(&Distributor { id: 0, ..d.clone() })?;
        let now = now_ms();
        self.tx
            .execute(
                scoped(
                    "INSERT INTO distributors (org_id, id, source, external_id, name, sponsor_id, rank, status, branch, \
                     attributes, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
                ),
                params![
                    self.org,
                    id.map(|id| id as i64),
                    source,
                    external_id,
                    d.name,
                    d.sponsor.map(|s| s as i64),
                    d.rank,
                    status_text(d.status),
                    d.branch,
                    attributes_text(&d.attributes),
                    now
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    StoreError::Invalid(match id {
                        Some(id) => format!("distributor id {id} is taken"),
                        None => format!("another distributor has the key {source}:{external_id}"),
                    })
                }
                other => other.into(),
            })?;
        Ok(Distributor { id: self.tx.last_insert_rowid() as Id, ..d.clone() })
    }

    /// Create (id 0) or update a distributor; returns it as stored.
    ///
    /// A new distributor is keyed by `key` (its source system's `(source, external id)`, as an
    /// import gives it) or, created over the API, by a key of the API's own.
    ///
    /// # Errors
    /// `Invalid` when the name is blank, the branch code malformed, the distributor (to update) or
    /// its sponsor missing, or the sponsor in its downline; a database failure, which includes a
    /// new one's `key` already taken (a constraint violation).
    pub fn save_distributor(&self, d: &Distributor, key: Option<(&str, &str)>) -> Result<Distributor> {
        if d.name.trim().is_empty() {
            return Err(StoreError::Invalid("a distributor needs a name".into()));
        }
        if let Some(b) = &d.branch {
            check_branch_code(b)?;
        }
        self.check_sponsor(d)?;
        let now = now_ms();
        let attributes = attributes_text(&d.attributes);
        let sponsor = d.sponsor.map(|s| s as i64);
        if d.id == 0 {
            let generated;
            let (source, external) = match key {
                Some(k) => k,
                None => {
                    generated = format!("{:016x}", rand::rng().random::<u64>());
                    ("api", generated.as_str())
                }
            };
            self.tx.execute(
                scoped(
                    "INSERT INTO distributors (org_id, source, external_id, name, sponsor_id, rank, status, branch, \
                     attributes, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
                ),
                params![
                    self.org,
                    source,
                    external,
                    d.name,
                    sponsor,
                    d.rank,
                    status_text(d.status),
                    d.branch,
                    attributes,
                    now
                ],
            )?;
            return Ok(Distributor { id: self.tx.last_insert_rowid() as Id, ..d.clone() });
        }
        let n = self.tx.execute(
            scoped(
                "UPDATE distributors SET name = ?3, sponsor_id = ?4, rank = ?5, status = ?6, branch = ?7, \
                 attributes = ?8, updated_at = ?9 WHERE org_id = ?1 AND id = ?2",
            ),
            params![self.org, d.id as i64, d.name, sponsor, d.rank, status_text(d.status), d.branch, attributes, now],
        )?;
        if n == 0 {
            return Err(StoreError::Invalid(format!("distributor {} does not exist", d.id)));
        }
        Ok(d.clone())
    }
}
