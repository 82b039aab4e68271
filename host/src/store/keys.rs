//! API keys and server settings. Keys are stored as sha256 hashes only: a leaked database does
//! not leak working tokens. A token is shown once, when it is created.
//!
//! Authenticating only reads. When a key was last used is noted in memory ([`KeyUses`]) and
//! written by a background thread ([`KeyUseFlusher`]) in one short transaction every few seconds
//! and at shutdown: a write on the request path would make every read wait for SQLite's one
//! writer, and fail with "database is locked" while another organization's import holds it.

use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{OrgStore, Result, Store, StoreError, now_ms, scoped};
use crate::model::{Id, Timestamp};

/// How often [`KeyUseFlusher`] writes the key uses noted since its last write. A crash loses at
/// most this much of `last_used_at`, which is a hint for people tidying keys, not an audit.
pub const KEY_USE_FLUSH: Duration = Duration::from_secs(5);

/// Key uses not written yet: key id → its latest use. Shared by a store and its `OrgStore`s.
#[derive(Clone, Default)]
pub(super) struct KeyUses(Arc<Mutex<HashMap<i64, Timestamp>>>);

impl KeyUses {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Timestamp>> {
        // A panic while holding the lock leaves a map that is still a valid map.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn note(&self, id: i64, at: Timestamp) {
        let mut map = self.map();
        let last = map.entry(id).or_insert(at);
        *last = (*last).max(at);
    }

    fn snapshot(&self) -> HashMap<i64, Timestamp> {
        self.map().clone()
    }

    /// Drop uses now written, keeping any later use noted meanwhile. Until then they stay noted,
    /// so a key list never misses a use being written.
    fn written(&self, uses: &HashMap<i64, Timestamp>) {
        self.map().retain(|id, at| uses.get(id).is_none_or(|written| *at > *written));
    }

    /// The later of the stored and the noted use.
    fn merged(&self, key: &mut ApiKey) {
        if let Some(&at) = self.map().get(&key.id) {
            key.last_used_at = Some(key.last_used_at.map_or(at, |stored| stored.max(at)));
        }
    }
}

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
    /// # Errors
    /// A database failure.
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self.pool.get()?.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    /// # Errors
    /// A database failure.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.pool.get()?.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// The live key whose token hashes to `hash`, noting its use in memory. Only reads the
    /// database (see the module's comment): [`Store::flush_key_uses`] writes the use later.
    ///
    /// # Errors
    /// A database failure.
    pub fn key_by_hash(&self, hash: &str) -> Result<Option<KeyOwner>> {
        let mut found = self
            .pool
            .get()?
            .prepare_cached(
                "SELECT k.id, k.name, k.role, k.created_at, k.last_used_at, k.revoked_at, k.scope_branch, \
                 k.scope_distributor, o.slug FROM api_keys k \
                 JOIN orgs o ON o.id = k.org_id WHERE k.hash = ?1 AND k.revoked_at IS NULL",
            )?
            .query_row([hash], |r| Ok(KeyOwner { key: key_from_row(r)?, org_slug: r.get(8)? }))
            .optional()?;
        if let Some(owner) = &mut found {
            self.key_uses.note(owner.key.id, now_ms());
            self.key_uses.merged(&mut owner.key);
        }
        Ok(found)
    }

    /// Write the key uses noted since the last flush, in one transaction; returns how many keys.
    /// On failure (the database busy past its timeout, a full disk) the uses stay noted for the
    /// next flush.
    ///
    /// # Errors
    /// A database failure (the uses stay noted).
    pub fn flush_key_uses(&self) -> Result<usize> {
        let uses = self.key_uses.snapshot();
        if uses.is_empty() {
            return Ok(0);
        }
        let _turn = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            // Never back in time: another process on the same database may have written a later use.
            let mut stmt = tx.prepare_cached(
                "UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, 0), ?2) WHERE id = ?1",
            )?;
            for (id, at) in &uses {
                stmt.execute(params![id, at])?;
            }
        }
        tx.commit()?;
        self.key_uses.written(&uses);
        Ok(uses.len())
    }
}

/// The thread that writes key uses (see the module's comment): every [`KEY_USE_FLUSH`], and once
/// more when stopped, so that a clean shutdown loses none.
pub struct KeyUseFlusher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl KeyUseFlusher {
    /// # Errors
    /// The thread could not be spawned.
    pub fn start(store: Store, every: Duration) -> std::io::Result<KeyUseFlusher> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("key-uses".into()).spawn(move || {
            loop {
                let last = !matches!(stopped.recv_timeout(every), Err(RecvTimeoutError::Timeout));
                if let Err(e) = store.flush_key_uses() {
                    tracing::warn!("recording API key use (retried at the next flush): {e}");
                }
                if last {
                    return;
                }
            }
        })?;
        Ok(KeyUseFlusher { stop: Some(stop), thread: Some(thread) })
    }

    /// Write what is noted and stop.
    pub fn stop(self) {}
}

impl Drop for KeyUseFlusher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the key-use flusher panicked");
        }
    }
}

impl OrgStore {
    /// Store a new key (its token's hash); returns it.
    ///
    /// # Errors
    /// `Invalid` when the name is blank; a database failure.
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

    /// The organization's keys, with uses noted but not written yet.
    ///
    /// # Errors
    /// A database failure.
    pub fn keys(&self) -> Result<Vec<ApiKey>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(scoped(
            "SELECT id, name, role, created_at, last_used_at, revoked_at, scope_branch, scope_distributor FROM api_keys \
             WHERE org_id = ?1 ORDER BY id",
        ))?;
        let rows = stmt.query_map([self.org.id], key_from_row)?;
        let mut keys: Vec<ApiKey> = rows.collect::<rusqlite::Result<_>>()?;
        for key in &mut keys {
            self.store.key_uses.merged(key);
        }
        Ok(keys)
    }

    /// Revoke a key; false if it is not this organization's.
    ///
    /// # Errors
    /// A database failure.
    pub fn revoke_key(&self, id: i64) -> Result<bool> {
        let n = self.conn()?.execute(
            scoped("UPDATE api_keys SET revoked_at = ?3 WHERE org_id = ?1 AND id = ?2 AND revoked_at IS NULL"),
            params![self.org.id, id, now_ms()],
        )?;
        Ok(n == 1)
    }
}
