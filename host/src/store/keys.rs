//! API keys and server settings. Keys are stored as sha256 hashes only: a leaked database does
//! not leak working tokens. A token is shown once, when it is created.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{OrgStore, Result, Store, StoreError, now_ms, scoped};
use crate::model::{Id, Timestamp};

/// An organization's API key, as listed (never with its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// An agent key scoped to one branch's customers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// An agent key scoped to one distributor's customers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distributor: Option<Id>,
}

/// A key to store: its token's hash, never the token.
#[derive(Debug, Clone, Copy)]
pub struct NewKey<'a> {
    pub name: &'a str,
    pub role: &'a str,
    pub hash: &'a str,
    pub branch: Option<&'a str>,
    pub distributor: Option<Id>,
}

/// Who a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    pub org_slug: String,
    pub key: ApiKey,
}

fn key_from_row(r: &rusqlite::Row) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        created_at: r.get(3)?,
        last_used_at: r.get(4)?,
        revoked_at: r.get(5)?,
        branch: r.get(6)?,
        distributor: r.get::<_, Option<i64>>(7)?.map(|d| d as Id),
    })
}

impl Store {
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self.pool.get()?.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.pool.get()?.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// The live key whose token hashes to `hash`, marking it used.
    pub fn key_by_hash(&self, hash: &str) -> Result<Option<KeyOwner>> {
        let conn = self.pool.get()?;
        let found = conn
            .prepare_cached(
                "SELECT k.id, k.name, k.role, k.created_at, k.last_used_at, k.revoked_at, k.scope_branch, \
                 k.scope_distributor, o.slug FROM api_keys k \
                 JOIN orgs o ON o.id = k.org_id WHERE k.hash = ?1 AND k.revoked_at IS NULL",
            )?
            .query_row([hash], |r| Ok(KeyOwner { key: key_from_row(r)?, org_slug: r.get(8)? }))
            .optional()?;
        // A write per request would serialize reads behind SQLite's one writer: record use at a
        // minute's resolution.
        let now = now_ms();
        if let Some(owner) = found.as_ref().filter(|o| o.key.last_used_at.is_none_or(|t| now - t >= 60_000)) {
            conn.execute("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1", params![owner.key.id, now])?;
        }
        Ok(found)
    }
}

impl OrgStore {
    /// Store a new key (its token's hash); returns it.
    pub fn create_key(&self, key: &NewKey<'_>) -> Result<ApiKey> {
        let NewKey { name, role, hash, branch, distributor } = *key;
        if name.trim().is_empty() {
            return Err(StoreError::Invalid("a key needs a name".into()));
        }
        let now = now_ms();
        let conn = self.conn()?;
        conn.prepare_cached(scoped(
            "INSERT INTO api_keys (org_id, name, role, hash, created_at, scope_branch, scope_distributor) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        ))?
        .execute(params![self.org.id, name, role, hash, now, branch, distributor.map(|d| d as i64)])?;
        Ok(ApiKey {
            id: conn.last_insert_rowid(),
            name: name.to_owned(),
            role: role.to_owned(),
            created_at: now,
            last_used_at: None,
            revoked_at: None,
            branch: branch.map(str::to_owned),
            distributor,
        })
    }

    pub fn keys(&self) -> Result<Vec<ApiKey>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(scoped(
            "SELECT id, name, role, created_at, last_used_at, revoked_at, scope_branch, scope_distributor FROM api_keys \
             WHERE org_id = ?1 ORDER BY id",
        ))?;
        let rows = stmt.query_map([self.org.id], key_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Revoke a key; false if it is not this organization's.
    pub fn revoke_key(&self, id: i64) -> Result<bool> {
        let n = self.conn()?.execute(
            scoped("UPDATE api_keys SET revoked_at = ?3 WHERE org_id = ?1 AND id = ?2 AND revoked_at IS NULL"),
            params![self.org.id, id, now_ms()],
        )?;
        Ok(n == 1)
    }
}
