//! Organizations on one server do not hold each other up: one organization's slow policies run
//! while no lock is held, so another's reads and writes go on.

use std::time::Instant;

use rapport_test_plugins as built;
use serde_json::{Value, json};

use crate::server::{ADMIN, call, install_enabled, json_call, serve};

fn key(url: &str, org: &str, name: &str) -> String {
    let (status, out) =
        json_call("POST", &format!("{url}/v1/orgs/{org}/keys"), ADMIN, json!({"name": name, "role": "owner"}));
    assert_eq!(status, 201, "{out}");
    out["token"].as_str().unwrap().to_owned()
}

#[test]
fn a_slow_import_in_one_organization_does_not_hold_up_another() {
    let s = serve();
    for (slug, name) in [("alpha", "Alpha"), ("beta", "Beta")] {
        let (status, out) =
            json_call("POST", &format!("{}/v1/orgs", s.url), ADMIN, json!({"slug": slug, "name": name}));
        assert_eq!(status, 201, "{out}");
    }
    let alpha = key(&s.url, "alpha", "ops");
    let beta = key(&s.url, "beta", "ops");
    // A key of beta's that nothing has used yet: its first use must not need to write.
    let beta_fresh = key(&s.url, "beta", "fresh");
    // alpha's policy burns CPU on every record (well within its limit, so it never fails).
    install_enabled(&s, "alpha", &alpha, "slow", built::HOSTILE_POLICY);
    let (status, out) = json_call(
        "PUT",
        &format!("{}/v1/orgs/alpha/plugins/slow/config", s.url),
        &alpha,
        json!({"attack": "spin", "iterations": 2_000_000}),
    );
    assert_eq!(status, 200, "{out}");

    let rows: String = (0..2_000)
        .map(|i| {
            json!({"source": "shop", "external_id": format!("a-{i}"), "name": format!("A {i}")}).to_string() + "\n"
        })
        .collect();
    let import_url = format!("{}/v1/orgs/alpha/import?kind=customers", s.url);
    let started = Instant::now();
    let importer = std::thread::spawn(move || {
        let (status, _, body) = call("POST", &import_url, Some(&alpha), "application/x-ndjson", rows.as_bytes());
        (status, body, Instant::now())
    });
    // Let alpha's import get going: its policy takes seconds over 2,000 records.
    std::thread::sleep(std::time::Duration::from_millis(500));

    let (status, out) = json_call(
        "POST",
        &format!("{}/v1/orgs/beta/customers", s.url),
        &beta,
        json!({"name": "B", "email": "b@example.com"}),
    );
    assert_eq!(status, 201, "beta's write: {out}");
    let beta_wrote = Instant::now();
    let (status, out) = json_call("GET", &format!("{}/v1/orgs/beta/customers", s.url), &beta_fresh, Value::Null);
    assert_eq!(status, 200, "beta's read with a key never used before: {out}");
    assert_eq!(out["items"].as_array().unwrap().len(), 1, "{out}");

    let (status, body, alpha_done) = importer.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["accepted"], 2_000, "{report}");
    assert!(
        beta_wrote < alpha_done,
        "beta's write finished {:?} after the start, alpha's import {:?}: beta waited for alpha",
        beta_wrote - started,
        alpha_done - started
    );
}
