//! Reliability and security under attack, over a real `rapport serve`: backups taken while it
//! serves and restored exactly, restores that refuse what they must, logs that never hold a
//! token or an erased person, and concurrent clients that lose no update and never see a 500 or
//! SQLite's "database is locked". RELIABILITY.md lists these with the older attacks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use rapport_test_plugins as built;
use serde_json::{Value, json};

use crate::server::{ADMIN, Server, call, json_call, serve, serve_data, serve_logged};

fn org(s: &Server, slug: &str) {
    let (status, body) = json_call("POST", &format!("{}/v1/orgs", s.url), ADMIN, json!({"slug": slug, "name": slug}));
    assert_eq!(status, 201, "{body}");
}

fn key(s: &Server, role: &str) -> String {
    let (status, k) = json_call(
        "POST",
        &format!("{}/v1/orgs/acme/keys", s.url),
        ADMIN,
        json!({"name": format!("{role}-key"), "role": role}),
    );
    assert_eq!(status, 201, "{k}");
    k["token"].as_str().unwrap().to_owned()
}

fn create(s: &Server, token: &str, body: Value) -> u64 {
    let (status, c) = json_call("POST", &format!("{}/v1/orgs/acme/customers", s.url), token, body);
    assert_eq!(status, 201, "{c}");
    c["id"].as_u64().unwrap()
}

/// Every page of a list route: all its items.
fn all(s: &Server, path: &str, cursor_param: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut url = format!("{}/v1/orgs/acme/{path}", s.url);
    loop {
        let (status, page) = json_call("GET", &url, ADMIN, Value::Null);
        assert_eq!(status, 200, "{url}: {page}");
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                url = format!("{}/v1/orgs/acme/{path}{sep}{cursor_param}={next}", s.url);
            }
            None => return items,
        }
    }
}

fn customers(s: &Server) -> Vec<Value> {
    all(s, "customers?limit=1000", "cursor")
}

fn audit(s: &Server) -> Vec<Value> {
    all(s, "audit", "cursor")
}

fn rapport(args: &[&str], data: &Path, file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rapport")).args(args).arg("--data").arg(data).arg(file).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The data directory's files (not its subdirectories) and their bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn a_backup_taken_while_serving_restores_exactly_that_moment() {
    let mut s = serve();
    org(&s, "acme");
    let owner = key(&s, "owner");
    for i in 0..20 {
        let id = create(&s, &owner, json!({"name": format!("A{i}"), "email": format!("a{i}@example.com")}));
        let (status, body) = json_call(
            "POST",
            &format!("{}/v1/orgs/acme/interactions", s.url),
            &owner,
            json!({"customer": id, "kind": "purchase", "occurred_at": 1_700_000_000_000i64 + i,
                "amount": {"amount_minor": 100 * i, "currency": "THB"}}),
        );
        assert_eq!(status, 201, "{body}");
    }

    // A client keeps creating customers, one after another, while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(Mutex::new(Vec::<u64>::new()));
    let writer = {
        let (url, owner, stop, created) = (s.url.clone(), owner.clone(), stop.clone(), created.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) || n == 0 {
                let (status, c) = json_call(
                    "POST",
                    &format!("{url}/v1/orgs/acme/customers"),
                    &owner,
                    json!({"name": format!("B{n}"), "email": format!("b{n}@example.com")}),
                );
                assert_eq!(status, 201, "{c}");
                created.lock().unwrap().push(c["id"].as_u64().unwrap());
                n += 1;
            }
        })
    };
    while created.lock().unwrap().is_empty() {
        std::thread::yield_now();
    }
    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("acme.db");
    let before_backup = created.lock().unwrap().len();
    let out = rapport(&["backup"], &s.data, &file);
    let after_backup = created.lock().unwrap().len();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["schema_version"].as_i64().unwrap() >= 1, "{report}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a backup of personal data is readable by its owner only");
    }
    // A backup never overwrites a file.
    let again = rapport(&["backup"], &s.data, &file);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("already exists"), "{}", stderr(&again));

    // The state the backup must hold is some moment of this sequence.
    let b_ids = created.lock().unwrap().clone();
    let then_customers = customers(&s);
    let then_audit = audit(&s);

    // More writes after the backup: an update, an erasure, a new customer.
    let a0 = then_customers[0]["id"].as_u64().unwrap();
    let a1 = then_customers[1]["id"].as_u64().unwrap();
    let (status, body) = json_call(
        "PUT",
        &format!("{}/v1/orgs/acme/customers/{a0}", s.url),
        &owner,
        json!({"name": "A0 renamed", "email": "a0@example.com"}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = json_call("DELETE", &format!("{}/v1/orgs/acme/customers/{a1}", s.url), &owner, Value::Null);
    assert_eq!(status, 204);
    create(&s, &owner, json!({"name": "C0", "email": "c0@example.com"}));

    // A restore refuses while the server runs, and changes nothing.
    let live = files(&s.data);
    let refused = rapport(&["restore"], &s.data, &file);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("in use by rapport serve (pid"), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("stop it"), "{}", stderr(&refused));
    assert_eq!(files(&s.data).keys().collect::<Vec<_>>(), live.keys().collect::<Vec<_>>());

    s.stop();
    let out = rapport(&["restore"], &s.data, &file);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let previous = PathBuf::from(report["previous"].as_str().expect("the replaced database is kept"));
    assert!(previous.file_name().unwrap().to_string_lossy().starts_with("rapport.db.before-restore-"), "{report}");
    // The replaced database is intact beside it, with the writes made after the backup.
    let kept = rusqlite::Connection::open(&previous).unwrap();
    let c0: i64 = kept.query_row("SELECT count(*) FROM customers WHERE name = 'C0'", [], |r| r.get(0)).unwrap();
    assert_eq!(c0, 1);

    let s = serve_data(&s.data, &[]);
    let restored = customers(&s);
    let restored_audit = audit(&s);
    let ids: Vec<u64> = restored.iter().map(|c| c["id"].as_u64().unwrap()).collect();
    // The customers created during the backup that it holds are a prefix of their sequence:
    // every one created before it started, none created after it finished.
    let held: Vec<u64> = ids.iter().copied().filter(|id| b_ids.contains(id)).collect();
    assert_eq!(held, b_ids[..held.len()], "a consistent moment: no gaps in the concurrent writes");
    assert!(
        held.len() >= before_backup && held.len() <= after_backup,
        "{} ∉ [{before_backup}, {after_backup}]",
        held.len()
    );
    println!(
        "backup under load: {} of {} concurrent creates in the backup ({before_backup} before it started, {after_backup} when it ended)",
        held.len(),
        b_ids.len()
    );
    // Exactly the data of that moment: the same records, field for field…
    let expected: Vec<&Value> = then_customers
        .iter()
        .filter(|c| !b_ids.contains(&c["id"].as_u64().unwrap()) || held.contains(&c["id"].as_u64().unwrap()))
        .collect();
    assert_eq!(restored.iter().collect::<Vec<_>>(), expected);
    assert_eq!(restored.len(), 20 + held.len());
    assert_eq!(restored[0]["name"], "A0", "the update after the backup is not in it");
    assert_eq!(restored[1]["email"], "a1@example.com", "the erasure after the backup is not in it");
    assert!(restored.iter().all(|c| c["name"] != "C0"));
    // …and the audit log of that moment: a prefix of the log, ending with the last held create.
    assert_eq!(restored_audit, then_audit[..restored_audit.len()], "the audit log is the log of that moment");
    assert_eq!(restored_audit.len(), then_audit.len() - (b_ids.len() - held.len()), "one audit entry per held write");
    // The timeline came back too.
    let (_, profile) = json_call("GET", &format!("{}/v1/orgs/acme/customers/{a0}", s.url), &owner, Value::Null);
    assert_eq!(profile["timeline"].as_array().map(Vec::len), Some(1), "{profile}");
}

#[test]
fn restoring_a_file_that_is_not_a_rapport_backup_says_why_and_changes_nothing() {
    let mut s = serve();
    org(&s, "acme");
    create(&s, ADMIN, json!({"name": "Somchai", "email": "s@example.com"}));
    s.stop();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.db");
    let out = rapport(&["backup"], &s.data, &good);
    assert!(out.status.success(), "a backup works offline too: {}", stderr(&out));

    let text = dir.path().join("notes.db");
    std::fs::write(&text, "these are not the pages you are looking for\n".repeat(200)).unwrap();
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    let newer = dir.path().join("newer.db");
    std::fs::copy(&good, &newer).unwrap();
    rusqlite::Connection::open(&newer).unwrap().execute_batch("PRAGMA user_version = 999").unwrap();
    let missing = dir.path().join("missing.db");

    let before = files(&s.data);
    for (file, says) in [
        (&text, "is not a Rapport database: it is not a SQLite database"),
        (&foreign, "is not a Rapport database: it is a SQLite database without Rapport's tables"),
        (&newer, "was written by a newer Rapport (schema version 999"),
        (&missing, "is not a file"),
    ] {
        let out = rapport(&["restore"], &s.data, file);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", file.display());
        assert!(err.contains(says), "{}: {err}", file.display());
        assert!(err.contains(&file.display().to_string()), "the error names the file: {err}");
        assert_eq!(files(&s.data), before, "{}: the data directory is unchanged", file.display());
    }

    // Any other process with the database open (here: this test) stops a restore too, even
    // when no server holds the directory: swapping the file under it would lose its writes.
    // (The snapshots are taken with no connection open: closing any other handle to the file
    // would drop this process's SQLite locks, POSIX locks being per process.)
    let mut before = files(&s.data);
    let reader = rusqlite::Connection::open(s.data.join("rapport.db")).unwrap();
    let _: i64 = reader.query_row("SELECT count(*) FROM customers", [], |r| r.get(0)).unwrap();
    let out = rapport(&["restore"], &s.data, &good);
    drop(reader);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("in use by another process"), "{}", stderr(&out));
    let mut after = files(&s.data);
    // (Only the lock file says who last held the directory.)
    before.remove("rapport.lock");
    after.remove("rapport.lock");
    assert_eq!(after, before, "the data directory is unchanged");

    // The good one restores (so the refusals above were about the files).
    let out = rapport(&["restore"], &s.data, &good);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = serve_data(&s.data, &[]);
    assert_eq!(customers(&s).len(), 1);
}

#[test]
fn logs_at_debug_never_hold_a_token_or_an_erased_persons_details() {
    let mut s = serve_logged(&[("RAPPORT_LOG", "debug")]);
    org(&s, "acme");
    let owner = key(&s, "owner");
    let api = |p: &str| format!("{}/v1/orgs/acme{p}", s.url);
    let (name, email, phone) = ("Zelda Quixotic-Marsh", "zelda.q.marsh@example.org", "+66812345678");

    let id = create(&s, &owner, json!({"name": name, "email": email, "phone": phone, "attributes": {"note": name}}));
    let (status, _) = json_call(
        "PUT",
        &api(&format!("/customers/{id}")),
        &owner,
        json!({"name": name, "email": email, "phone": phone, "tags": ["vip"]}),
    );
    assert_eq!(status, 200);
    json_call(
        "POST",
        &api("/interactions"),
        &owner,
        json!({"customer": id, "kind": "email", "occurred_at": 1_700_000_000_000i64, "subject": format!("to {email}")}),
    );
    let filter = format!("/customers?filter=email%20%3D%20%22{email}%22");
    let (status, found) = json_call("GET", &api(&filter), &owner, Value::Null);
    assert_eq!((status, found["items"].as_array().map(Vec::len)), (200, Some(1)), "{found}");
    let import = format!("{}\n", json!({"source": "shop", "external_id": "z-1", "name": name, "email": email}));
    let (status, _, body) =
        call("POST", &api("/import?kind=customers"), Some(&owner), "application/x-ndjson", import.as_bytes());
    assert_eq!(status, 200, "{body}");
    json_call("GET", &api(&format!("/customers/{id}/export")), &owner, Value::Null);
    // A refused token is not logged either.
    let (status, _) = json_call("GET", &api("/customers"), "rk_0123456789abcdef-wrong-token", Value::Null);
    assert_eq!(status, 401);
    // Erase both copies of the person.
    for c in customers(&s) {
        let (status, _) = json_call("DELETE", &api(&format!("/customers/{}", c["id"])), ADMIN, Value::Null);
        assert_eq!(status, 204);
    }
    // A request with an unparseable body, whose error could echo it.
    let (status, _, _) = call(
        "POST",
        &api("/customers"),
        Some(&owner),
        "application/json",
        format!(r#"{{"name": "{name}", "email": "{email}", "colour": 1}}"#).as_bytes(),
    );
    assert_eq!(status, 400);
    s.stop();

    let log = s.log_text();
    // The capture works and is at debug level, with the requests in it.
    assert!(log.contains("DEBUG"), "no debug lines were captured:\n{log}");
    assert!(log.contains("/v1/orgs/acme/customers"), "the requests are logged:\n{log}");
    for (what, secret) in [
        ("the owner's token", owner.as_str()),
        ("the owner's token's hex", owner.trim_start_matches("rk_")),
        ("the admin token", ADMIN),
        ("a refused token", "0123456789abcdef-wrong-token"),
        ("the erased name", name),
        ("the erased name's surname", "Quixotic"),
        ("the erased email", email),
        ("the erased email's local part", "zelda.q.marsh"),
        ("the erased phone", "812345678"),
    ] {
        let at = log.find(secret).map(|i| &log[log[..i].rfind('\n').map_or(0, |n| n + 1)..]);
        assert!(at.is_none(), "the log holds {what}: {}", at.unwrap_or_default().lines().next().unwrap_or_default());
    }
    println!("log checked: {} lines, {} bytes", log.lines().count(), log.len());
}

/// One (status, body) per request, for the concurrency tests' tallies.
type Answers = Arc<Mutex<Vec<(String, u16, String)>>>;

fn record(answers: &Answers, what: &str, status: u16, body: &str) {
    answers.lock().unwrap().push((what.to_owned(), status, body.to_owned()));
}

/// No answer was a 5xx or carried SQLite's lock errors.
fn assert_no_server_errors(answers: &Answers) {
    let answers = answers.lock().unwrap();
    for (what, status, body) in answers.iter() {
        assert!(*status < 500, "{what}: {status} {body}");
        let lower = body.to_lowercase();
        assert!(!lower.contains("database is locked") && !lower.contains("busy"), "{what}: {status} {body}");
    }
}

#[test]
fn concurrent_read_modify_writes_with_if_match_lose_no_update() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 5;
    let s = serve();
    org(&s, "acme");
    let owner = key(&s, "owner");
    let id = create(&s, &owner, json!({"name": "Shared", "email": "shared@example.com"}));
    let url = format!("{}/v1/orgs/acme/customers/{id}", s.url);
    let stale = Arc::new(AtomicUsize::new(0));
    // Every thread holds the same first ETag before any of them writes: only one of those
    // writes can land, so at least THREADS - 1 conflicts are certain, whatever the scheduling.
    let barrier = Arc::new(Barrier::new(THREADS));
    let answers: Answers = Arc::default();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (url, owner, stale, barrier, answers) =
                (url.clone(), owner.clone(), stale.clone(), barrier.clone(), answers.clone());
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    let mut first_try = true;
                    loop {
                        let got = ureq::get(&url).set("Authorization", &format!("Bearer {owner}")).call().unwrap();
                        let etag = got.header("etag").expect("a profile has an ETag").to_owned();
                        let mut profile: Value = got.into_json().unwrap();
                        profile["attributes"][format!("t{t}r{round}")] = json!(t * 100 + round);
                        let body = json!({"name": profile["name"], "email": profile["email"], "attributes": profile["attributes"]});
                        if round == 0 && first_try {
                            barrier.wait();
                        }
                        first_try = false;
                        let resp = ureq::put(&url)
                            .set("Authorization", &format!("Bearer {owner}"))
                            .set("If-Match", &etag)
                            .send_json(body);
                        let (status, text) = match resp {
                            Ok(r) => (r.status(), r.into_string().unwrap()),
                            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
                            Err(e) => panic!("{e}"),
                        };
                        record(&answers, "PUT If-Match", status, &text);
                        match status {
                            200 => break,
                            412 => {
                                stale.fetch_add(1, Ordering::SeqCst);
                            }
                            other => panic!("PUT answered {other}: {text}"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_no_server_errors(&answers);
    let (_, now) = json_call("GET", &url, &owner, Value::Null);
    let attributes = now["attributes"].as_object().unwrap();
    let missing: Vec<String> = (0..THREADS)
        .flat_map(|t| (0..ROUNDS).map(move |r| format!("t{t}r{r}")))
        .filter(|k| !attributes.contains_key(k))
        .collect();
    assert!(missing.is_empty(), "lost updates: {missing:?} in {now}");
    assert_eq!(attributes.len(), THREADS * ROUNDS);
    let conflicts = stale.load(Ordering::SeqCst);
    assert!(conflicts >= THREADS - 1, "{conflicts} conflicts");
    println!(
        "{THREADS} threads × {ROUNDS} read-modify-writes: {} landed, {conflicts} answered 412 and retried",
        THREADS * ROUNDS
    );
}

#[test]
fn parallel_imports_during_a_rescore_count_exactly() {
    let s = serve();
    org(&s, "acme");
    let owner = key(&s, "owner");
    let api = |p: &str| format!("{}/v1/orgs/acme{p}", s.url);
    let lines = |range: std::ops::Range<usize>, tag: &str| -> String {
        range
            .map(|i| {
                json!({"source": "shop", "external_id": format!("c-{i}"), "name": format!("C {i}"), "tags": [tag], "attributes": {tag: i}})
                    .to_string()
                    + "\n"
            })
            .collect()
    };
    // Customers with purchases, and a scorer, so that the rescore has work while imports land.
    let (status, _, body) = call(
        "POST",
        &api("/import?kind=customers"),
        Some(&owner),
        "application/x-ndjson",
        lines(0..500, "base").as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let purchases: String = (0..2000)
        .map(|n| {
            json!({"source": "shop", "external_id": format!("o-{n}"), "customer": {"source": "shop", "external_id": format!("c-{}", n % 500)},
                "kind": "purchase", "occurred_at": 1_600_000_000_000i64 + n * 60_000, "amount_minor": 100 + n % 900, "currency": "THB"})
            .to_string()
                + "\n"
        })
        .collect();
    let (status, _, body) =
        call("POST", &api("/import?kind=interactions"), Some(&owner), "application/x-ndjson", purchases.as_bytes());
    assert_eq!(status, 200, "{body}");
    let wasm = std::fs::read(built::SPEND_RANK).unwrap();
    let (status, _, body) = call("POST", &api("/plugins?name=rank"), Some(&owner), "application/wasm", &wasm);
    assert_eq!(status, 201, "{body}");
    let (status, _) = json_call("POST", &api("/plugins/rank/enable"), &owner, Value::Null);
    assert_eq!(status, 200);

    // Disjoint (0..1000 and 1000..2000), overlapping (500..1500) and repeated (1000..2000 again).
    let files = [(0..1000, "f1"), (1000..2000, "f2"), (500..1500, "f3"), (1000..2000, "f4")];
    let answers: Answers = Arc::default();
    let barrier = Arc::new(Barrier::new(files.len() + 1));
    let mut threads: Vec<_> = files
        .iter()
        .map(|(range, tag)| {
            let (body, url, owner, answers, barrier, tag) = (
                lines(range.clone(), tag),
                api("/import?kind=customers"),
                owner.clone(),
                answers.clone(),
                barrier.clone(),
                *tag,
            );
            std::thread::spawn(move || {
                barrier.wait();
                let (status, _, text) = call("POST", &url, Some(&owner), "application/x-ndjson", body.as_bytes());
                record(&answers, &format!("import {tag}"), status, &text);
                let report: Value = serde_json::from_str(&text).unwrap_or_default();
                (status, report)
            })
        })
        .collect();
    let rescore = {
        let (url, owner, answers, barrier) = (s.url.clone(), owner.clone(), answers.clone(), barrier.clone());
        std::thread::spawn(move || {
            barrier.wait();
            let (status, job) = json_call("POST", &format!("{url}/v1/orgs/acme/scores/rescore"), &owner, Value::Null);
            record(&answers, "rescore", status, &job.to_string());
            assert_eq!(status, 202, "{job}");
            loop {
                let (status, now) =
                    json_call("GET", &format!("{url}/v1/orgs/acme/jobs/{}", job["id"]), &owner, Value::Null);
                record(&answers, "job", status, &now.to_string());
                if now["state"] != "running" && now["state"] != "queued" {
                    return (status, now);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    let reports: Vec<(u16, Value)> = threads.drain(..).map(|t| t.join().unwrap()).collect();
    let (_, job) = rescore.join().unwrap();
    assert_no_server_errors(&answers);
    for ((range, tag), (status, report)) in files.iter().zip(&reports) {
        assert_eq!(*status, 200, "{tag}: {report}");
        assert_eq!(report["accepted"].as_u64(), Some(range.len() as u64), "{tag}: {report}");
        assert_eq!(report["rejected"], json!([]), "{tag}: {report}");
    }
    assert_eq!(job["state"], "done", "{job}");

    // One customer per distinct external id, each with exactly that one id and every file's
    // tag that named it (tags are added, never replaced, so no import's work was lost).
    let all = customers(&s);
    assert_eq!(all.len(), 2000, "customers = distinct external ids");
    let mut seen = BTreeSet::new();
    for c in &all {
        let ids = c["external_ids"].as_array().unwrap();
        assert_eq!(ids.len(), 1, "{c}");
        let n: usize = ids[0]["id"].as_str().unwrap().trim_start_matches("c-").parse().unwrap();
        assert!(seen.insert(n), "c-{n} twice");
        let tags: BTreeSet<&str> = c["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        let mut expected: BTreeSet<&str> =
            files.iter().filter(|(range, _)| range.contains(&n)).map(|(_, tag)| *tag).collect();
        if n < 500 {
            expected.insert("base");
        }
        assert_eq!(tags, expected, "c-{n}");
    }
    println!(
        "4 parallel imports (2 disjoint, 1 overlapping, 1 repeated: {} rows) during a rescore ({}): 2000 customers, no 5xx",
        files.iter().map(|(r, _)| r.len()).sum::<usize>(),
        job["state"]
    );
}

#[test]
fn many_concurrent_writers_never_see_a_500_or_a_locked_database() {
    const THREADS: usize = 16;
    const ROUNDS: usize = 12;
    let s = serve();
    org(&s, "acme");
    let owner = key(&s, "owner");
    let api = |p: &str| format!("{}/v1/orgs/acme{p}", s.url);
    let wasm = std::fs::read(built::REQUIRE_CONTACT).unwrap();
    let (status, _, body) = call("POST", &api("/plugins?name=contact"), Some(&owner), "application/wasm", &wasm);
    assert_eq!(status, 201, "{body}");
    let (status, _) = json_call("POST", &api("/plugins/contact/enable"), &owner, Value::Null);
    assert_eq!(status, 200);
    let seed: Vec<u64> = (0..THREADS)
        .map(|t| create(&s, &owner, json!({"name": format!("S{t}"), "email": format!("s{t}@example.com")})))
        .collect();

    let answers: Answers = Arc::default();
    let created = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (base, owner, answers, created, barrier, mine) =
                (api(""), owner.clone(), answers.clone(), created.clone(), barrier.clone(), seed[t]);
            std::thread::spawn(move || {
                let go = |what: &str, method: &str, path: &str, token: &str, body: Value| {
                    let (status, out) = json_call(method, &format!("{base}{path}"), token, body);
                    record(&answers, what, status, &out.to_string());
                    (status, out)
                };
                barrier.wait();
                for round in 0..ROUNDS {
                    let (status, _) = go(
                        "create",
                        "POST",
                        "/customers",
                        &owner,
                        json!({"name": format!("W{t}-{round}"), "email": format!("w{t}-{round}@example.com")}),
                    );
                    if status == 201 {
                        created.fetch_add(1, Ordering::SeqCst);
                    }
                    go(
                        "update",
                        "PUT",
                        &format!("/customers/{mine}"),
                        &owner,
                        json!({"name": format!("S{t}"), "email": format!("s{t}@example.com"), "attributes": {"round": round}}),
                    );
                    go(
                        "interaction",
                        "POST",
                        "/interactions",
                        &owner,
                        json!({"customer": mine, "kind": "call", "occurred_at": 1_700_000_000_000i64 + round as i64}),
                    );
                    // A new key, used at once: its first use writes `last_used_at`.
                    let (_, k) = go("key", "POST", "/keys", &owner, json!({"name": format!("k{t}-{round}"), "role": "agent"}));
                    if let Some(token) = k["token"].as_str() {
                        go("use key", "GET", &format!("/customers/{mine}"), token, Value::Null);
                        if round % 3 == 0 {
                            go("revoke key", "DELETE", &format!("/keys/{}", k["id"]), &owner, Value::Null);
                        }
                    }
                    if t % 4 == 0 {
                        go("config", "PUT", "/plugins/contact/config", &owner, json!({"welcome_tag": format!("t{t}r{round}")}));
                    }
                    if t % 4 == 1 {
                        let rows: String = (0..50)
                            .map(|i| json!({"source": "bulk", "external_id": format!("{t}-{round}-{i}"), "email": format!("x{t}-{round}-{i}@example.com")}).to_string() + "\n")
                            .collect();
                        let (status, _, text) =
                            call("POST", &format!("{base}/import?kind=customers"), Some(&owner), "application/x-ndjson", rows.as_bytes());
                        record(&answers, "import", status, &text);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_no_server_errors(&answers);
    let answers = answers.lock().unwrap();
    let refused: Vec<_> = answers.iter().filter(|(_, status, _)| *status >= 300).collect();
    assert!(refused.is_empty(), "every write lands: {refused:?}");
    // The writes all landed: every create, every import row, every key.
    let imported = (THREADS / 4) * ROUNDS * 50;
    let all = customers(&s);
    assert_eq!(all.len(), THREADS + created.load(Ordering::SeqCst) + imported);
    assert_eq!(created.load(Ordering::SeqCst), THREADS * ROUNDS);
    let (_, keys) = json_call("GET", &api("/keys"), &owner, Value::Null);
    let keys = keys["items"].as_array().unwrap();
    assert_eq!(keys.len(), 1 + THREADS * ROUNDS);
    let used = keys.iter().filter(|k| k["last_used_at"].is_i64()).count();
    assert_eq!(used, keys.len(), "every key's first use was recorded");
    println!(
        "{THREADS} threads: {} requests (creates, updates, interactions, keys, config, imports), none 5xx or locked",
        answers.len()
    );
}

/// Slow clients (slowloris): a body that trickles in is cut off by the request timeout with a 408
/// and nothing of it lands, and a hundred connections that stop halfway through their headers or
/// their body do not keep the server from answering everybody else.
#[test]
fn slow_clients_are_cut_off_and_do_not_starve_the_others() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let s = crate::server::serve_args(&["--request-timeout", "1"], &[]);
    org(&s, "acme");
    let owner = key(&s, "owner");
    let addr = s.url.strip_prefix("http://").unwrap().to_owned();
    let post_head = |length: usize| {
        format!(
            "POST /v1/orgs/acme/customers HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {owner}\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
    };

    // A hundred stalled connections: half stop inside their headers, half inside their body.
    let stalled: Vec<TcpStream> = (0..100)
        .map(|i| {
            let mut c = TcpStream::connect(&addr).unwrap();
            let start = match i % 2 {
                0 => format!("GET /v1/orgs/acme/customers HTTP/1.1\r\nHost: {addr}\r\nAuthor"),
                _ => post_head(1_000) + "{\"name\": \"Stalled",
            };
            c.write_all(start.as_bytes()).unwrap();
            c
        })
        .collect();

    // Everybody else is served meanwhile.
    for i in 0..20 {
        create(&s, &owner, json!({"name": format!("Prompt {i}")}));
    }

    // A body sent a byte at a time, slower than the request timeout allows.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    let body = format!("{{\"name\": \"Trickle {}\"}}", "x".repeat(200));
    slow.write_all(post_head(body.len()).as_bytes()).unwrap();
    let writer = {
        let mut slow = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            for byte in body.bytes() {
                if slow.write_all(&[byte]).is_err() {
                    return; // the server hung up: what a cut-off looks like from here
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
    };
    let mut answer = [0u8; 12];
    slow.read_exact(&mut answer).expect("the server answers the slow body");
    assert_eq!(&answer, b"HTTP/1.1 408", "{}", String::from_utf8_lossy(&answer));
    drop(slow);
    writer.join().unwrap();

    // Only the prompt customers landed: nothing of the stalled or trickled bodies.
    let names: BTreeSet<String> =
        customers(&s).iter().map(|c| c["name"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(names, (0..20).map(|i| format!("Prompt {i}")).collect::<BTreeSet<_>>());
    let created = audit(&s).iter().filter(|a| a["action"] == "customer.create").count();
    assert_eq!(created, 20, "the audit log records exactly the landed creates");
    drop(stalled);
}

/// A full disk (here: a file-size limit on the server process, which makes SQLite's writes fail
/// the way a full volume does) refuses writes with a 507 that says what the operator must do;
/// nothing of a refused write or import lands, reads keep working, the server stays up, and
/// writes work again once there is room — with a database that passes `integrity_check`.
#[test]
fn a_full_disk_refuses_writes_clearly_keeps_reads_and_recovers() {
    use std::io::BufRead;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // `prlimit` (util-linux) sets the limit and execs the server in the same process; SIGXFSZ is
    // ignored so that a write past the limit fails with EFBIG instead of killing the process.
    let mut child = Command::new("sh")
        .args([
            "-c",
            "trap '' XFSZ; exec prlimit --fsize=3000000:unlimited \"$0\" serve --listen 127.0.0.1:0 --data \"$1\"",
        ])
        .arg(env!("CARGO_BIN_EXE_rapport"))
        .arg(&data)
        .env("RAPPORT_ADMIN_TOKEN", ADMIN)
        .env("RAPPORT_CACHE_DIR", dir.path().join("cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("rapport listening on ").unwrap_or_else(|| panic!("{line}")).to_owned();
    let s = Server { child, url, dir, data: data.clone(), log: None };
    org(&s, "acme");
    let owner = key(&s, "owner");
    let customers_url = format!("{}/v1/orgs/acme/customers", s.url);

    // Fill the "disk" with customers of 20 KB each until a write is refused.
    let pad = "x".repeat(20_000);
    let mut landed = 0;
    let refusal = loop {
        let (status, body) = json_call(
            "POST",
            &customers_url,
            &owner,
            json!({"name": format!("P{landed}"), "email": "p@example.com", "attributes": {"pad": pad}}),
        );
        match status {
            201 => landed += 1,
            _ => break (status, body),
        }
        assert!(landed < 1_000, "the file-size limit never bit");
    };
    assert!(landed > 0, "not one write fitted: the limit is too small for the test");
    assert_eq!(refusal.0, 507, "{}", refusal.1);
    let detail = refusal.1["detail"].as_str().unwrap();
    assert!(detail.contains("nothing of this request was stored") && detail.contains("free space"), "{detail}");

    // A refused import lands nothing either; reads still answer.
    let rows: String = (0..5)
        .map(|n| {
            json!({"source": "shop", "external_id": format!("big-{n}"), "attributes": {"pad": pad}}).to_string() + "\n"
        })
        .collect();
    let (status, _, out) = call(
        "POST",
        &format!("{}/v1/orgs/acme/import?kind=customers", s.url),
        Some(&owner),
        "application/x-ndjson",
        rows.as_bytes(),
    );
    assert_eq!(status, 507, "{out}");
    assert_eq!(customers(&s).len(), landed, "the list answers, with exactly the landed customers");
    let audited = audit(&s).iter().filter(|a| a["action"] == "customer.create").count();
    assert_eq!(audited, landed, "one audit row per landed write, none for the refused ones");

    // The operator makes room: writes work again, in the same process.
    let raised = Command::new("prlimit")
        .args(["--pid", &s.child.id().to_string(), "--fsize=unlimited:unlimited"])
        .status()
        .unwrap();
    assert!(raised.success());
    let (status, body) =
        json_call("POST", &customers_url, &owner, json!({"name": "After", "email": "after@example.com"}));
    assert_eq!(status, 201, "{body}");
    assert_eq!(customers(&s).len(), landed + 1);

    let mut s = s;
    s.stop();
    let conn = rusqlite::Connection::open(data.join("rapport.db")).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}

/// SQL injection, path traversal, shell and markup payloads in every kind of string input — path
/// segments, query values, JSON fields, a plugin's name — are data: no 5xx, what is stored comes
/// back byte for byte, nothing reaches another organization, and the database is whole after.
#[test]
fn injection_and_traversal_strings_are_only_ever_data() {
    use crate::server::urlencode;

    let s = serve();
    org(&s, "acme");
    org(&s, "beta");
    let owner = key(&s, "owner");
    for n in 0..3 {
        let (status, c) = json_call(
            "POST",
            &format!("{}/v1/orgs/beta/customers", s.url),
            ADMIN,
            json!({"name": format!("Beta {n}")}),
        );
        assert_eq!(status, 201, "{c}");
    }
    let beta_before = json_call("GET", &format!("{}/v1/orgs/beta/customers", s.url), ADMIN, Value::Null).1;
    let payloads = [
        "' OR '1'='1",
        "\"; DROP TABLE customers; --",
        "1; DELETE FROM audit WHERE 1=1",
        "x') UNION SELECT * FROM api_keys --",
        "../../../../etc/passwd",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "..\\..\\windows\\win.ini",
        "$(rm -rf /) `id`",
        "<script>alert(1)</script>",
        "%00\u{0001}",
        "beta",
    ];
    let api = |path: &str| format!("{}/v1/orgs/acme{path}", s.url);
    let mut answers: Vec<(String, u16)> = Vec::new();
    let mut seen = |what: String, status: u16, body: &str| {
        assert!(status < 500, "{what}: {status} {body}");
        assert!(!body.contains("Beta "), "{what} answered another organization's data: {body}");
        answers.push((what, status));
    };
    let wasm = std::fs::read(built::REQUIRE_CONTACT).unwrap();
    for p in payloads {
        let e = urlencode(p);
        // JSON fields: stored as given, read back as stored.
        let body = json!({"name": p, "branch": p, "tags": [p], "attributes": {"note": p, p: 1},
            "external_ids": [{"source": p, "external_id": p}]});
        let (status, c) = json_call("POST", &api("/customers"), &owner, body);
        seen(format!("create {p:?}"), status, &c.to_string());
        if status == 201 {
            let (_, got) = json_call("GET", &api(&format!("/customers/{}", c["id"])), &owner, Value::Null);
            assert_eq!(got["name"], p, "{got}");
            assert_eq!(got["attributes"]["note"], p);
            assert_eq!(got["tags"][0], p);
            // Found again through the filter language, quoted as a string.
            let quoted = rapport::store::filter::quote(p);
            let (status, page) = json_call(
                "GET",
                &api(&format!("/customers?filter={}", urlencode(&format!("name = {quoted}")))),
                &owner,
                Value::Null,
            );
            assert_eq!(status, 200, "{page}");
            assert!(page["items"].as_array().unwrap().iter().any(|i| i["id"] == c["id"]), "{p:?}: {page}");
            let (status, page) =
                json_call("GET", &api(&format!("/customers?source={e}&external_id={e}")), &owner, Value::Null);
            assert_eq!((status, page["items"][0]["id"].clone()), (200, c["id"].clone()), "{p:?}: {page}");
        }
        // Query values and path segments.
        for path in [
            format!("/customers?filter={e}"),
            format!("/customers?cursor={e}"),
            format!("/customers/{e}"),
            format!("/customers/{e}/timeline?before={e}"),
            format!("/branches/{e}"),
            format!("/segments/{e}/customers"),
            format!("/plugins/{e}/versions"),
            format!("/plugins/{e}/logs?before={e}"),
            format!("/audit?cursor={e}"),
        ] {
            let (status, _, body) = call("GET", &api(&path), Some(&owner), "", b"");
            seen(format!("GET {path}"), status, &body);
        }
        let (status, _, body) = call("GET", &format!("{}/v1/orgs/{e}/customers", s.url), Some(&owner), "", b"");
        seen(format!("GET org {p:?}"), status, &body);
        assert_eq!(status, 404, "an organization named by a payload is another, missing one: {body}");
        for (method, path, body) in [
            ("PUT", format!("/branches/{e}"), json!({"name": p})),
            (
                "PUT",
                format!("/segments/{e}"),
                json!({"filter": format!("name = {}", rapport::store::filter::quote(p))}),
            ),
            ("POST", format!("/import?kind={e}"), Value::Null),
        ] {
            let (status, out) = json_call(method, &api(&path), &owner, body);
            seen(format!("{method} {path}"), status, &out.to_string());
        }
        // A plugin named by the payload: refused as a name, or stored as one — never a path.
        let (status, _, out) =
            call("POST", &api(&format!("/plugins?name={e}")), Some(&owner), "application/wasm", &wasm);
        seen(format!("install {p:?}"), status, &out);
    }
    assert!(answers.len() > 100, "{} requests", answers.len());

    // Beta is untouched, and the database is whole.
    let beta_after = json_call("GET", &format!("{}/v1/orgs/beta/customers", s.url), ADMIN, Value::Null).1;
    assert_eq!(beta_before, beta_after);
    assert!(!audit(&s).is_empty(), "the audit log is still there");
    let mut s = s;
    s.stop();
    let conn = rusqlite::Connection::open(s.data.join("rapport.db")).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE name IN ('customers', 'audit', 'api_keys')", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(tables, 3, "every table is still there");
}

/// The console's uploads stream to disk past axum's default body limit; the server's upload
/// limit still bounds every console body (a multipart form's small fields included), before any
/// session or CSRF check reads it.
#[test]
fn a_console_upload_over_the_upload_limit_is_refused_before_it_is_read() {
    let s = crate::server::serve_args(&["--upload-limit-mib", "1"], &[]);
    org(&s, "acme");
    let addr = s.url.strip_prefix("http://").unwrap().to_owned();
    for path in ["/orgs/acme/import", "/orgs/acme/plugins", "/sign-in"] {
        use std::io::{Read, Write};
        // The body is announced, not sent: a refusal that waited to read it would hang here.
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
        write!(
            c,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary=x\r\n\
             Content-Length: {}\r\n\r\n--x",
            (1 << 20) + 1
        )
        .unwrap();
        let mut status = [0u8; 12];
        c.read_exact(&mut status).unwrap();
        assert_eq!(&status, b"HTTP/1.1 413", "{path}: {}", String::from_utf8_lossy(&status));
    }
    assert!(customers(&s).is_empty());
}
