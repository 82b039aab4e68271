//! Backups and restores of the whole database (`rapport backup`, `rapport restore`).
//!
//! A backup uses SQLite's online backup API: it reads one consistent snapshot while `rapport
//! serve` keeps writing (in WAL mode a reader never blocks the writer, and copying every page in
//! one step means a concurrent write cannot restart the copy). The result is one self-contained
//! file (rollback journal, no `-wal` beside it) written under a temporary name and renamed, so a
//! file with the backup's name is always a whole backup.
//!
//! A restore replaces `rapport.db` and must never pull a database out from under a process using
//! it: SQLite keeps writing to the old file through its open handles, and the `-wal` beside it
//! would be replayed into the wrong database. So a restore (1) checks the backup is a Rapport
//! database of a schema this build knows, (2) takes the data directory's lock, which `rapport
//! serve` holds for its whole life, and (3) proves no other connection is open by taking the
//! database out of WAL mode (SQLite refuses while anyone else has it open) and holding an
//! exclusive lock until the swap is done. The replaced file is kept, never deleted.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use serde::Serialize;

use super::{Result, StoreError, schema_version};

/// The database's file name in a data directory.
const DB_FILE: &str = "rapport.db";
/// The data directory's lock: held by `rapport serve` and by a restore while they run.
pub const LOCK_FILE: &str = "rapport.lock";

/// An exclusive claim on a data directory, released when dropped or when the process dies (it
/// is an OS file lock, so a `kill -9` never leaves a stale claim behind). The file holds who took
/// it, so the refusal can say which process to stop.
pub struct DataLock {
    _file: File,
}

impl DataLock {
    /// Claim `dir` for `what` (e.g. `rapport serve`), or say who holds it.
    ///
    /// # Errors
    /// `InUse` when another process holds the lock (naming it); `Open` when the directory or lock
    /// file cannot be created, locked or written.
    pub fn acquire(dir: &Path, what: &str) -> Result<DataLock> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Open { path: dir.display().to_string(), source })?;
        let path = dir.join(LOCK_FILE);
        let open_error = |source| StoreError::Open { path: path.display().to_string(), source };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(open_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StoreError::InUse {
                    path: dir.display().to_string(),
                    holder: if holder.is_empty() { "another process".into() } else { holder.to_owned() },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(open_error(e)),
        }
        // Only the holder writes the file, so its content names the current holder.
        file.set_len(0).map_err(open_error)?;
        write!(file, "{what} (pid {})", std::process::id()).map_err(open_error)?;
        Ok(DataLock { _file: file })
    }
}

/// What `rapport backup` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub backup: PathBuf,
    pub schema_version: i64,
    pub bytes: u64,
}

/// What `rapport restore` did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub restored: PathBuf,
    pub from: PathBuf,
    pub schema_version: i64,
    /// Where the database that was replaced now is (none if there was none).
    pub previous: Option<PathBuf>,
}

/// Copy `dir`'s database to `out`, consistent as of one moment, while a server may be writing.
///
/// # Errors
/// `Invalid` when there is no database in `dir`, `out` exists or its directory does not, or the
/// database stayed locked; `NotRapport` or `TooNew` for a database this build cannot back up (or a
/// damaged copy); `Open` when the copy cannot be synced or renamed into place; a database failure
/// (`Sql`). Nothing is left at `out` on failure.
pub fn backup_to(dir: &Path, out: &Path) -> Result<BackupReport> {
    let source_path = dir.join(DB_FILE);
    if !source_path.exists() {
        return Err(StoreError::Invalid(format!(
            "there is no database at {}: pass the server's data directory with --data (or RAPPORT_DATA)",
            source_path.display()
        )));
    }
    if out.exists() {
        return Err(StoreError::Invalid(format!(
            "{} already exists: a backup never overwrites a file; choose another name or move that file away",
            out.display()
        )));
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
        return Err(StoreError::Invalid(format!(
            "the directory {} does not exist: create it, or write the backup elsewhere",
            parent.display()
        )));
    }
    // Read-write (without create) so that SQLite can use the WAL index the server shares.
    let source = Connection::open_with_flags(&source_path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    source.busy_timeout(Duration::from_secs(10))?;
    let version = check_rapport(&source, &source_path)?;

    let partial = with_suffix(out, ".partial");
    remove_if_exists(&partial)?;
    let result = (|| {
        let mut copy = Connection::open(&partial)?;
        copy_all(&source, &mut copy)?;
        // One self-contained file: no `-wal` that could be forgotten when the file is moved.
        let mode: String = copy.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
        if mode != "delete" {
            return Err(StoreError::Invalid(format!("the backup could not leave WAL mode (journal mode {mode})")));
        }
        quick_check(&copy, &partial)?;
        drop(copy);
        let file = File::open(&partial)
            .and_then(|f| f.sync_all().map(|()| f))
            .map_err(|source| StoreError::Open { path: partial.display().to_string(), source })?;
        // A backup holds every customer's personal data: readable by its owner only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|source| StoreError::Open { path: partial.display().to_string(), source })?;
        }
        drop(file);
        std::fs::rename(&partial, out).map_err(|source| StoreError::Open { path: out.display().to_string(), source })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result?;
    let bytes = std::fs::metadata(out).map_or(0, |m| m.len());
    Ok(BackupReport { backup: out.to_owned(), schema_version: version, bytes })
}

/// Replace `dir`'s database with the backup `input`. Refused, with nothing changed, when the
/// backup is not a Rapport database this build can open, or when anything has the database open.
///
/// # Errors
/// `Invalid` when `input` is not a file, or it stayed locked; `NotRapport` or `TooNew` when it is
/// not a Rapport database this build can open (or is damaged); `InUse` when a process holds the
/// data directory or has the database open; `Open` for a file that cannot be created, synced,
/// linked or renamed; a database failure (`Sql`).
pub fn restore_from(dir: &Path, input: &Path) -> Result<RestoreReport> {
    if !input.is_file() {
        return Err(StoreError::Invalid(format!(
            "{} is not a file: pass a file written by `rapport backup`",
            input.display()
        )));
    }
    let backup = Connection::open_with_flags(input, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let version = check_rapport(&backup, input)?;
    quick_check(&backup, input)?;

    let _lock = DataLock::acquire(dir, "rapport restore")?;
    let target = dir.join(DB_FILE);

    // Copy the backup in beside the database first: if that fails, nothing was replaced.
    let incoming = with_suffix(&target, ".restoring");
    remove_if_exists(&incoming)?;
    let copied = (|| {
        let mut copy = Connection::open(&incoming)?;
        copy_all(&backup, &mut copy)?;
        let _: String = copy.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        schema_version(&copy, &incoming)
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&incoming);
        return Err(e);
    }
    // Prove nobody else has the current database open, and keep it that way until it is swapped.
    let guard = match target.exists() {
        true => match hold_exclusively(&target, dir) {
            Ok(conn) => Some(conn),
            Err(e) => {
                let _ = std::fs::remove_file(&incoming);
                return Err(e);
            }
        },
        false => None,
    };

    // The swap keeps a whole database under the name `rapport.db` at every instant, so a restore
    // killed at any point (`kill -9`, power loss) leaves either the old database or the new one,
    // never none — a server started on a directory without `rapport.db` would create an empty one.
    // The old database gets its second name by a hard link, then the new one replaces the name
    // in one atomic rename.
    sync_file(&incoming)?;
    let previous = match guard.is_some() {
        true => {
            let aside = aside_name(&target);
            // Leftovers of the old database's WAL go with it (leaving WAL mode above checkpointed
            // and emptied them; a stale `-wal` must never meet the new database).
            for side in ["-wal", "-shm"] {
                let file = with_suffix(&target, side);
                if file.exists() {
                    rename(&file, &with_suffix(&aside, side))?;
                }
            }
            std::fs::hard_link(&target, &aside)
                .map_err(|source| StoreError::Open { path: aside.display().to_string(), source })?;
            Some(aside)
        }
        false => None,
    };
    rename(&incoming, &target)?;
    sync_file(dir)?;
    drop(guard);
    Ok(RestoreReport { restored: target, from: input.to_owned(), schema_version: version, previous })
}

/// Open the current database alone: out of WAL mode (SQLite allows that only to the one open
/// connection) and under an exclusive lock that makes any other opener wait or fail.
fn hold_exclusively(target: &Path, dir: &Path) -> Result<Connection> {
    let in_use = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::InUse {
            path: dir.display().to_string(),
            holder: "another process (an import, a backup, or a server of an older Rapport)".into(),
        },
        _ => e.into(),
    };
    let conn = Connection::open_with_flags(target, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(Duration::ZERO)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0)).map_err(in_use)?;
    if mode != "delete" {
        return Err(StoreError::InUse {
            path: dir.display().to_string(),
            holder: "another process (an import, a backup, or a server of an older Rapport)".into(),
        });
    }
    conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;").map_err(in_use)?;
    Ok(conn)
}

/// The schema version of a Rapport database; refused (with what to do) when it is not one, or
/// is newer than this build.
fn check_rapport(conn: &Connection, path: &Path) -> Result<i64> {
    let not_rapport = |why: String| StoreError::NotRapport { path: path.display().to_string(), why };
    let tables: Vec<String> = match conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('orgs', 'audit', 'settings')")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
    {
        Ok(t) => t,
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) => {
            return Err(not_rapport("it is not a SQLite database".into()));
        }
        Err(e) => return Err(e.into()),
    };
    if tables.len() < 3 {
        return Err(not_rapport("it is a SQLite database without Rapport's tables".into()));
    }
    let version = schema_version(conn, path)?;
    if version == 0 {
        return Err(not_rapport("it has Rapport's tables but no schema version".into()));
    }
    Ok(version)
}

fn quick_check(conn: &Connection, path: &Path) -> Result<()> {
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(StoreError::NotRapport {
            path: path.display().to_string(),
            why: format!("it is damaged (SQLite's quick_check: {check})"),
        });
    }
    Ok(())
}

/// Every page in one step: one read transaction, so the copy is one consistent snapshot and a
/// write landing meanwhile cannot restart it. Waits out a transient lock for a while.
fn copy_all(from: &Connection, to: &mut Connection) -> Result<()> {
    let backup = Backup::new(from, to)?;
    let mut waits = 0;
    loop {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            StepResult::Busy | StepResult::Locked if waits < 200 => {
                waits += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            StepResult::Busy | StepResult::Locked => {
                return Err(StoreError::Invalid(
                    "the database stayed locked for 10 s; try again when no restore or migration is running".into(),
                ));
            }
            _ => {}
        }
    }
}

/// `rapport.db.before-restore-20261123T140501Z` (with `-2`, `-3`… if taken).
fn aside_name(target: &Path) -> PathBuf {
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
        .unwrap_or_else(|_| now.unix_timestamp().to_string());
    let base = with_suffix(target, &format!(".before-restore-{stamp}"));
    let mut candidate = base.clone();
    let mut n = 1;
    while candidate.exists() {
        n += 1;
        candidate = with_suffix(&base, &format!("-{n}"));
    }
    candidate
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Flush a file (or a directory, so that a rename in it is durable) to the disk.
fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|source| StoreError::Open { path: path.display().to_string(), source })
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|source| StoreError::Open { path: to.display().to_string(), source })
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StoreError::Open { path: path.display().to_string(), source: e })
        }
        _ => Ok(()),
    }
}
