//! Killing the process mid-import (SIGKILL, no chance to clean up) leaves whole batches, an audit
//! log that matches the data, and an import that completes when run again.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rapport::model::Actor;
use rapport::pipeline::{BATCH, ImportFormat, ImportKind};
use rapport::store::Store;
use serde_json::json;

const INTERACTIONS: usize = 200_000;

#[test]
fn a_killed_import_leaves_whole_batches_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = Store::open(&data).unwrap();
    store.create_org("acme", "Acme").unwrap();
    let acme = store.org("acme").unwrap();
    let customers: String =
        (0..100).map(|n| json!({"source": "shop", "external_id": format!("c-{n}")}).to_string() + "\n").collect();
    let actor = Actor { name: "test".into(), role: rapport::model::Role::Admin };
    crate::import(&acme, &actor, ImportKind::Customers, ImportFormat::Ndjson, std::io::Cursor::new(customers)).unwrap();
    let audit_before = acme.counts().unwrap().audit;

    let file = dir.path().join("orders.ndjson");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    for n in 0..INTERACTIONS {
        let line = json!({
            "source": "shop", "external_id": format!("o-{n}"), "customer": {"source": "shop", "external_id": format!("c-{}", n % 100)},
            "kind": "purchase", "channel": "web", "occurred_at": 852_076_800_000i64 + n as i64 * 60_000, "amount_minor": 100 + n % 5000, "currency": "USD"
        });
        writeln!(out, "{line}").unwrap();
    }
    out.flush().unwrap();
    drop(out);

    let run = || {
        Command::new(env!("CARGO_BIN_EXE_rapport"))
            .args(["import", "--org", "acme", "--kind", "interactions", "--data"])
            .arg(&data)
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };

    // Kill it once some batches have landed, well before the end.
    let mut child = run();
    let start = Instant::now();
    loop {
        let landed = acme.counts().unwrap().interactions;
        if landed >= 3 * BATCH as u64 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the import never got going");
        assert!(child.try_wait().unwrap().is_none(), "the import finished before it could be killed");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let store = Store::open(&data).unwrap();
    let acme = store.org("acme").unwrap();
    let counts = acme.counts().unwrap();
    assert!(counts.interactions < INTERACTIONS as u64, "killed before the end ({} landed)", counts.interactions);
    assert_eq!(counts.interactions % BATCH as u64, 0, "only whole batches: {} rows", counts.interactions);
    let imports: Vec<_> = acme.audit(0, 1000).unwrap().into_iter().filter(|e| e.entity == "interaction").collect();
    assert_eq!(imports.len() as u64, counts.interactions / BATCH as u64, "one audit entry per landed batch");
    let audited: usize = imports.iter().map(|e| e.detail["created"].as_array().unwrap().len()).sum();
    assert_eq!(audited as u64, counts.interactions, "the audit names every landed row");
    let check: String = rusqlite::Connection::open(data.join("rapport.db"))
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");

    // Running the same import again completes it; what had landed is recognised, not duplicated.
    let status = run().wait().unwrap();
    assert!(status.success());
    let counts = acme.counts().unwrap();
    assert_eq!(counts.interactions, INTERACTIONS as u64);
    assert!(counts.audit > audit_before);
}

// ----- a killed server: during a rescore job, during a plugin upload -----

/// Killed at any moment, `rapport backup` leaves either no backup or a whole one under its name,
/// and `rapport restore` leaves a whole database under `rapport.db` — the old one or the new —
/// never none: a server started on a directory without it would begin an empty database.
/// Each round kills the process a little later, until one round finishes before the kill.
#[test]
fn a_killed_backup_or_restore_leaves_a_whole_database_under_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let actor = Actor { name: "test".into(), role: rapport::model::Role::Admin };
    // ~30 MB of customers, so that a copy takes long enough to be interrupted.
    const PEOPLE: u64 = 20_000;
    {
        let store = Store::open(&data).unwrap();
        store.create_org("acme", "Acme").unwrap();
        let padding = "x".repeat(1_200);
        let people: String = (0..PEOPLE)
            .map(|n| {
                json!({"source": "shop", "external_id": format!("c-{n}"), "attributes": {"notes": padding}}).to_string()
                    + "\n"
            })
            .collect();
        let acme = store.org("acme").unwrap();
        crate::import(&acme, &actor, ImportKind::Customers, ImportFormat::Ndjson, std::io::Cursor::new(people))
            .unwrap();
    }
    let count = |data: &std::path::Path| {
        let store = Store::open(data).unwrap_or_else(|e| panic!("{} does not open: {e}", data.display()));
        let conn = rusqlite::Connection::open(data.join("rapport.db")).unwrap();
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok", "{}", data.display());
        store.org("acme").unwrap().counts().unwrap().customers
    };
    let rapport = |args: &[&std::ffi::OsStr]| {
        Command::new(env!("CARGO_BIN_EXE_rapport"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // Kill after `delay`; true when the process had already finished by itself.
    let kill_after = |mut child: std::process::Child, delay: Duration| {
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some_and(|s| s.success());
        let _ = child.kill();
        child.wait().unwrap();
        finished
    };

    // Backups of a database of PEOPLE customers.
    let (mut mid_copy, mut rounds) = (0, 0);
    for round in 0.. {
        let out = dir.path().join(format!("backup-{round}.db"));
        let child = rapport(&["backup".as_ref(), out.as_os_str(), "--data".as_ref(), data.as_os_str()]);
        let finished = kill_after(child, Duration::from_millis(4 * round));
        let partial = dir.path().join(format!("backup-{round}.db.partial"));
        mid_copy += usize::from(partial.exists());
        if out.exists() {
            // A file under the backup's name is a whole backup.
            let restored = dir.path().join(format!("check-{round}"));
            rapport::store::restore_from(&restored, &out).unwrap_or_else(|e| panic!("backup {round}: {e}"));
            assert_eq!(count(&restored), PEOPLE, "backup {round} is not whole");
        }
        rounds += 1;
        if finished {
            assert!(out.exists(), "a backup that exited 0 left no file");
            break;
        }
        assert!(round < 2_000, "the backup never finished");
    }
    eprintln!("backup: {rounds} rounds, {mid_copy} killed mid-copy");
    assert!(mid_copy > 0, "no backup was killed while copying ({rounds} rounds): the test proved nothing");

    // Restores of that backup (PEOPLE customers) over a database with one customer more.
    let backup = dir.path().join(format!("backup-{}.db", rounds - 1));
    crate::import(
        &Store::open(&data).unwrap().org("acme").unwrap(),
        &actor,
        ImportKind::Customers,
        ImportFormat::Ndjson,
        std::io::Cursor::new(json!({"source": "shop", "external_id": "later"}).to_string()),
    )
    .unwrap();
    let (mut mid_restore, mut restore_rounds) = (0, 0);
    for round in 0.. {
        restore_rounds += 1;
        let child = rapport(&["restore".as_ref(), backup.as_os_str(), "--data".as_ref(), data.as_os_str()]);
        let finished = kill_after(child, Duration::from_millis(4 * round));
        mid_restore += usize::from(data.join("rapport.db.restoring").exists());
        assert!(data.join("rapport.db").exists(), "round {round}: the restore left no rapport.db");
        let customers = count(&data);
        if finished {
            assert_eq!(customers, PEOPLE, "a restore that exited 0 left the old database");
            break;
        }
        // Killed: the old database (one more customer) or the whole new one, nothing between.
        assert!([PEOPLE, PEOPLE + 1].contains(&customers), "round {round}: {customers} customers");
        if customers == PEOPLE {
            break;
        }
        assert!(round < 2_000, "the restore never finished");
    }
    eprintln!("restore: {restore_rounds} rounds, {mid_restore} killed mid-copy");
    assert!(mid_restore > 0, "no restore was killed while copying in: the test proved nothing");
}

mod serve {
    use std::io::{BufRead, BufReader};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use rapport::model::Actor;
    use rapport::pipeline::{ImportFormat, ImportKind};
    use rapport::pipeline::{Pipeline, Settings};
    use rapport::plugins::Meter;
    use rapport::store::Store;
    use rapport_test_plugins as wasm;
    use serde_json::{Value, json};

    const ADMIN: &str = "admin-token-for-crash-tests";

    /// A `rapport serve` on a data directory that outlives it (the harness in `server.rs` owns
    /// its directory; these tests restart on the same one).
    struct Server {
        child: Child,
        url: String,
    }

    impl Server {
        fn start(data: &Path) -> Server {
            let mut child = Command::new(env!("CARGO_BIN_EXE_rapport"))
                .args(["serve", "--listen", "127.0.0.1:0", "--data"])
                .arg(data)
                .env("RAPPORT_ADMIN_TOKEN", ADMIN)
                .env("RAPPORT_CACHE_DIR", data.join("cache"))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("rapport serve starts");
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
            let url = line.trim().strip_prefix("rapport listening on ").unwrap_or_else(|| panic!("{line}")).to_owned();
            Server { child, url }
        }

        /// SIGKILL: no handler runs, no transaction is finished, nothing is flushed.
        fn kill(mut self) {
            self.child.kill().unwrap();
            self.child.wait().unwrap();
        }

        fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
            let req =
                ureq::request(method, &format!("{}{path}", self.url)).set("Authorization", &format!("Bearer {ADMIN}"));
            let resp = match body {
                Some(b) => req.send_json(b),
                None => req.call(),
            };
            let resp = match resp {
                Ok(r) | Err(ureq::Error::Status(_, r)) => r,
                Err(e) => panic!("{method} {path}: {e}"),
            };
            let status = resp.status();
            (status, resp.into_json().unwrap_or(Value::Null))
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn owner() -> Actor {
        Actor { name: "ops".into(), role: rapport::model::Role::Owner }
    }

    fn integrity(data: &Path) -> String {
        rusqlite::Connection::open(data.join("rapport.db"))
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap()
    }

    fn count(data: &Path, sql: &str, params: impl rusqlite::Params) -> u64 {
        rusqlite::Connection::open(data.join("rapport.db"))
            .unwrap()
            .query_row(sql, params, |r| r.get::<_, i64>(0))
            .unwrap() as u64
    }

    fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(start.elapsed() < limit, "gave up waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    const CUSTOMERS: usize = 60_000;

    /// An organization with many customers and one cheap scorer, set up through the library.
    fn scoring_org() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = Store::open(&data).unwrap();
        store.create_org("acme", "Acme").unwrap();
        let people: String = (0..CUSTOMERS)
            .map(|n| json!({"source": "shop", "external_id": format!("c-{n}")}).to_string() + "\n")
            .collect();
        let org = store.org("acme").unwrap();
        crate::import(&org, &owner(), ImportKind::Customers, ImportFormat::Ndjson, std::io::Cursor::new(people))
            .unwrap();
        let p = Pipeline::new(store, crate::runtime(Meter::Epoch), Settings::default());
        let bytes = std::fs::read(wasm::HOSTILE_SCORER).unwrap();
        p.install("acme", &owner(), "tally", &bytes, Some("1"), Some(json!({ "attack": "none" })), true).unwrap();
        p.enable("acme", &owner(), "tally").unwrap();
        (dir, data)
    }

    /// Killed mid-rescore, the server resumes the job at its next start from the last committed
    /// batch: every customer is scored exactly once by the job (history rows), the job's counts
    /// are exact, the audit says it finished once, and the database is intact.
    #[test]
    fn a_server_killed_during_a_rescore_resumes_the_job_and_scores_everyone_once() {
        let (_dir, data) = scoring_org();
        // Retry until a kill lands while the job is observed running, part way through.
        let mut killed = None;
        for _attempt in 0..5 {
            let server = Server::start(&data);
            let (status, job) = server.call("POST", "/v1/orgs/acme/scores/rescore", None);
            assert_eq!(status, 202, "{job}");
            let id = job["id"].as_i64().unwrap();
            let progress = poll("the job to progress or finish", Duration::from_secs(120), || {
                let (_, job) = server.call("GET", &format!("/v1/orgs/acme/jobs/{id}"), None);
                let done = job["done"].as_u64().unwrap();
                (done > 0 || job["state"] != "running").then_some(job)
            });
            if progress["state"] == "running" && progress["done"].as_u64().unwrap() < CUSTOMERS as u64 {
                server.kill();
                killed = Some((id, progress["done"].as_u64().unwrap()));
                break;
            }
            server.kill();
        }
        let (id, seen) = killed.expect("the job was observed running in one of five attempts");
        assert_eq!(integrity(&data), "ok");
        let store = Store::open(&data).unwrap();
        let job = store.org("acme").unwrap().job(id).unwrap().unwrap();
        assert_eq!(job.state, "running", "cut off, not finished");
        assert!(job.done >= seen && job.done < CUSTOMERS as u64, "{} done after the kill", job.done);
        assert_eq!(job.done % 2_000, 0, "whole batches only: {}", job.done);
        let created_at = job.created_at;
        // Committed with the cursor: exactly the customers up to it have this job's scores.
        let history = "SELECT count(*) FROM score_history WHERE plugin = 'tally' AND name = 'x' AND computed_at >= ?1";
        assert_eq!(count(&data, history, [created_at]), job.done);
        drop(store);

        // The restart resumes it; nothing is scored twice, nobody is skipped.
        let server = Server::start(&data);
        let job = poll("the job to finish", Duration::from_secs(300), || {
            let (_, job) = server.call("GET", &format!("/v1/orgs/acme/jobs/{id}"), None);
            (job["state"] != "running").then_some(job)
        });
        assert_eq!(job["state"], "done", "{job}");
        assert_eq!((job["done"].as_u64(), job["total"].as_u64()), (Some(CUSTOMERS as u64), Some(CUSTOMERS as u64)));
        server.kill();
        assert_eq!(integrity(&data), "ok");
        assert_eq!(count(&data, history, [created_at]), CUSTOMERS as u64, "each customer scored once by the job");
        assert_eq!(count(&data, "SELECT count(*) FROM scores WHERE plugin = 'tally'", []), 2 * CUSTOMERS as u64);
        let audit = Store::open(&data).unwrap().org("acme").unwrap().audit(0, 100_000).unwrap();
        let finished: Vec<_> =
            audit.iter().filter(|e| e.action == "job.done" && e.entity_id == Some(id as u64)).collect();
        assert_eq!(finished.len(), 1, "one audit row for the job's end");
        assert_eq!(finished[0].detail["customers"], CUSTOMERS as u64);
    }

    /// `component` with a custom section of `size` bytes appended: a different, valid component
    /// as big as the upload needs to be to take a while.
    fn padded(component: &[u8], size: usize) -> Vec<u8> {
        fn leb(mut n: usize, out: &mut Vec<u8>) {
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                out.push(if n == 0 { byte } else { byte | 0x80 });
                if n == 0 {
                    break;
                }
            }
        }
        let name = b"rapport-test-padding";
        let mut payload = Vec::with_capacity(size + 32);
        leb(name.len(), &mut payload);
        payload.extend_from_slice(name);
        payload.extend((0..size).map(|i| (i * 31 % 251) as u8));
        let mut out = component.to_vec();
        out.push(0); // a custom section
        leb(payload.len(), &mut out);
        out.extend(payload);
        out
    }

    fn sha256(bytes: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    }

    /// Killed while a large new version is uploaded and installed, the server restarts with the
    /// plugin at the old version or the new one, whole: the stored bytes hash to what they are
    /// named by, every version row has its component and its audit row, and the plugin runs.
    /// The kill comes at growing delays, so that rounds land before, during and after the install.
    #[test]
    fn a_server_killed_during_a_plugin_upload_keeps_the_old_version_or_the_new_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        {
            let store = Store::open(&data).unwrap();
            store.create_org("acme", "Acme").unwrap();
            let p = Pipeline::new(store, crate::runtime(Meter::Epoch), Settings::default());
            let bytes = std::fs::read(wasm::REQUIRE_CONTACT).unwrap();
            p.install("acme", &owner(), "contact", &bytes, Some("1"), Some(json!({})), true).unwrap();
            p.enable("acme", &owner(), "contact").unwrap();
        }
        let original = std::fs::read(wasm::REQUIRE_CONTACT).unwrap();
        let (mut old_seen, mut new_seen) = (0, 0);
        for round in 0..8u64 {
            let big = padded(&original, (24 << 20) + round as usize);
            let (known, active) = {
                let org = Store::open(&data).unwrap().org("acme").unwrap();
                (org.plugin_versions("contact").unwrap().len(), org.plugin("contact").unwrap().unwrap().active_version)
            };
            let server = Server::start(&data);
            let url = format!("{}/v1/orgs/acme/plugins?name=contact&version=big-{round}", server.url);
            let upload = {
                let big = big.clone();
                std::thread::spawn(move || {
                    let _ = ureq::post(&url)
                        .set("Authorization", &format!("Bearer {ADMIN}"))
                        .set("Content-Type", "application/wasm")
                        .send_bytes(&big);
                })
            };
            std::thread::sleep(Duration::from_millis(round * round * 40));
            server.kill();
            upload.join().unwrap();

            assert_eq!(integrity(&data), "ok", "round {round}");
            let store = Store::open(&data).unwrap();
            let org = store.org("acme").unwrap();
            let plugin = org.plugin("contact").unwrap().expect("the plugin is still registered");
            let versions = org.plugin_versions("contact").unwrap();
            assert!(versions.iter().any(|v| v.version == plugin.active_version), "the active version exists");
            for v in &versions {
                let (bytes, _) = org.component(&v.hash).unwrap().expect("every version has its component");
                assert_eq!(sha256(&bytes), v.hash, "round {round}: version {} is stored whole", v.version);
            }
            let installs = org.audit(0, 100_000).unwrap().into_iter().filter(|e| e.action == "plugin.install").count();
            assert_eq!(installs, versions.len(), "round {round}: one audit row per version");
            let newest = versions.iter().max_by_key(|v| v.version).unwrap();
            if newest.hash == sha256(&big) {
                // The new version landed whole, and (uploads activate by default) is the active one.
                new_seen += 1;
                assert_eq!(plugin.active_version, newest.version, "round {round}");
                assert_eq!(versions.len(), known + 1, "round {round}: one version more");
            } else {
                // Nothing of it: the versions and the active one are as before the upload.
                old_seen += 1;
                assert!(versions.iter().all(|v| v.hash != sha256(&big)), "round {round}");
                assert_eq!((versions.len(), plugin.active_version), (known, active), "round {round}");
            }
            drop((org, store));

            // The server starts on it and the plugin (old or new) judges writes.
            let server = Server::start(&data);
            let (status, body) = server.call("POST", "/v1/orgs/acme/customers", Some(json!({ "name": "No Contact" })));
            assert_eq!(status, 422, "round {round}: the policy runs and denies: {body}");
            let (status, body) = server.call(
                "POST",
                "/v1/orgs/acme/customers",
                Some(json!({ "name": "Ann", "email": format!("a{round}@x.test") })),
            );
            assert_eq!(status, 201, "round {round}: {body}");
            server.kill();
            if old_seen > 0 && new_seen > 0 && round >= 3 {
                break;
            }
        }
        assert!(old_seen > 0, "some kill landed before the new version was committed");
        assert!(new_seen > 0, "some kill landed after it");
    }
}
