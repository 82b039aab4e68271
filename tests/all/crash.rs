//! Killing the process mid-import (SIGKILL, no chance to clean up) leaves whole batches, an audit
//! log that matches the data, and an import that completes when run again.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rapport::model::Actor;
use rapport::store::{BATCH, ImportFormat, ImportKind, Store};
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
    let actor = Actor { name: "test".into(), role: "admin".into() };
    acme.import(&actor, ImportKind::Customers, ImportFormat::Ndjson, std::io::Cursor::new(customers), |_| {}).unwrap();
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
