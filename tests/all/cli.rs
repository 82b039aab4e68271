//! The `rapport` binary as authors use it: `plugin check` and `plugin run`, exit codes included.

use std::path::Path;
use std::process::{Command, Output};

use rapport_test_plugins as wasm;
use serde_json::{Value, json};

fn rapport(args: &[&str]) -> Output {
    let cache = std::env::temp_dir().join("rapport-test-cache");
    Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(args)
        .env("RAPPORT_CACHE_DIR", cache)
        .output()
        .expect("run rapport")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn check_names_the_world_and_version_of_each_example() {
    for (path, world) in [
        (wasm::REQUIRE_CONTACT, "policy"),
        (wasm::SPEND_RANK, "scorer"),
        (wasm::CUSTOMERS_BY_BRANCH, "reporter"),
        (wasm::TEMPLATE_POLICY_TEMPLATE, "policy"),
        (wasm::TEMPLATE_SCORER_TEMPLATE, "scorer"),
        (wasm::TEMPLATE_REPORTER_TEMPLATE, "reporter"),
    ] {
        let out = rapport(&["plugin", "check", path]);
        assert!(out.status.success(), "{path}: {}", stderr(&out));
        assert!(stdout(&out).contains(&format!("a {world} plugin, contract rapport:plugin@0.1.0")), "{}", stdout(&out));
    }
}

#[test]
fn no_plugin_imports_files_sockets_http_clocks_or_randomness() {
    // Every component the host admits (two are refused by design: not a plugin, an old contract).
    let refused = ["not-a-plugin", "hostile-old-contract"];
    for (name, path) in wasm::ALL.iter().filter(|(name, _)| !refused.contains(name)) {
        let out = rapport(&["plugin", "check", "--json", path]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let info: Value = serde_json::from_str(&stdout(&out)).unwrap();
        for import in info["imports"].as_array().unwrap() {
            let import = import.as_str().unwrap();
            assert!(
                import.starts_with("rapport:plugin/")
                    || import.starts_with("wasi:cli/")
                    || import.starts_with("wasi:io/"),
                "{name} imports {import}"
            );
        }
    }
}

#[test]
fn check_refuses_what_is_not_a_plugin_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"definitely not wasm").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let truncated = dir.path().join("truncated.wasm");
    let bytes = std::fs::read(wasm::REQUIRE_CONTACT).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let cases: [(&str, &str); 4] = [
        (garbage.to_str().unwrap(), "not a WebAssembly binary"),
        (core.to_str().unwrap(), "a core WebAssembly module, not a component"),
        (truncated.to_str().unwrap(), "invalid WebAssembly"),
        (wasm::NOT_A_PLUGIN, "does not implement a Rapport world: it exports `wasi:cli/run@0.2"),
    ];
    for (path, expected) in cases {
        let out = rapport(&["plugin", "check", path]);
        assert_eq!(out.status.code(), Some(3), "{path}");
        let err = stderr(&out);
        assert!(err.contains(expected), "{path}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
    let missing = rapport(&["plugin", "check", "/nonexistent/plugin.wasm"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("cannot read /nonexistent/plugin.wasm"));
}

#[test]
fn run_prints_scores_with_fuel_and_duration() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = write(
        dir.path(),
        "store.json",
        &json!({
            "customers": [{ "id": 1, "name": "Ann" }, { "id": 2, "name": "Bo" }],
            "interactions": [
                { "customer": 1, "kind": "purchase", "occurred_at": 0, "amount": { "amount_minor": 12_345, "currency": "THB" } }
            ]
        }),
    );
    let input = write(dir.path(), "input.json", &json!({ "now": 86_400_000 }));
    let out = rapport(&["plugin", "run", wasm::SPEND_RANK, "--input", &input, "--fixture", &fixture]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(printed["world"], "scorer");
    assert_eq!(printed["output"]["customers"][0]["scores"]["spend"], json!(123.45));
    assert_eq!(printed["output"]["customers"][0]["scores"]["recency_days"], json!(1.0));
    assert!(printed["total"]["fuel"].as_u64().unwrap() > 0);
    assert!(printed["total"]["duration_us"].as_u64().is_some());
}

#[test]
fn run_reports_a_limit_by_name_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let input =
        write(dir.path(), "input.json", &json!({ "change": { "operation": "create", "after": { "customer": {} } } }));
    for (attack, expected) in [
        ("loop", "ran past its CPU limit"),
        ("memory", "hit its memory limit of 64 MiB"),
        ("panic", "panicked on purpose"),
    ] {
        let config = write(dir.path(), "config.json", &json!({ "attack": attack }));
        let out = rapport(&["plugin", "run", wasm::HOSTILE_POLICY, "--input", &input, "--config", &config]);
        assert_eq!(out.status.code(), Some(1), "{attack}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{attack}: {}", stderr(&out));
    }
}

#[test]
fn run_refuses_bad_input_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let not_json = dir.path().join("input.json");
    std::fs::write(&not_json, "{oops").unwrap();
    let out = rapport(&["plugin", "run", wasm::REQUIRE_CONTACT, "--input", not_json.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not valid JSON"), "{}", stderr(&out));

    let wrong_shape = write(dir.path(), "shape.json", &json!({ "change": { "operation": "explode" } }));
    let out = rapport(&["plugin", "run", wasm::REQUIRE_CONTACT, "--input", &wrong_shape]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid input for a policy plugin"), "{}", stderr(&out));

    // A fixture the store would not hold: the error names the file, the record and what is wrong.
    let input = write(dir.path(), "input.json", &json!({}));
    for (fixture, expected) in [
        (
            json!({ "customers": [{ "id": 1 }], "interactions": [{ "id": 4, "customer": 9, "kind": "call", "occurred_at": 0 }] }),
            "interactions[0] (id 4): customer 9 does not exist",
        ),
        (
            json!({ "customers": [{ "id": 1 }, { "id": 7, "nmae": "Ann" }] }),
            "customers[1] (id 7): unknown field `nmae`",
        ),
        (json!({ "customers": [{ "id": 1 }, { "id": 1 }] }), "customers[1] (id 1): customer id 1 is taken"),
        (
            json!({ "distributors": [{ "id": 1, "name": "A", "sponsor": 2 }, { "id": 2, "name": "B", "sponsor": 1 }] }),
            "would make a cycle",
        ),
        (json!({ "customers": [{ "id": 1, "distributor": 5 }] }), "customers[0] (id 1): distributor 5 does not exist"),
        (json!({ "customer": [] }), "unknown field `customer`, expected one of"),
    ] {
        let bad_fixture = write(dir.path(), "store.json", &fixture);
        let out = rapport(&["plugin", "run", wasm::SPEND_RANK, "--input", &input, "--fixture", &bad_fixture]);
        assert_eq!(out.status.code(), Some(2), "{fixture}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("invalid fixture") && err.contains("store.json"), "{fixture}: {err}");
        assert!(err.contains(expected), "{fixture}: {err}");
    }
}

/// `rapport plugin run` reads through the server's own store code. An organization on a server,
/// exported over the API into a fixture (customers and timelines, as the guide suggests), gives
/// the same report from both, where the answer depends on the store's semantics: `~` folds Thai
/// tone marks away, `tickets.overdue` is judged at the current time, and the report's own
/// aggregate and `tickets.count` filter run on top.
#[test]
fn run_answers_filters_and_aggregates_as_the_server_does() {
    use crate::server::{ADMIN, install_enabled, json_call, serve};
    let s = serve();
    let (status, out) = json_call("POST", &format!("{}/v1/orgs", s.url), ADMIN, json!({"slug": "same", "name": "S"}));
    assert_eq!(status, 201, "{out}");
    let url = |path: &str| format!("{}/v1/orgs/same{path}", s.url);
    let (_, key) = json_call("POST", &url("/keys"), ADMIN, json!({"name": "ops", "role": "owner"}));
    let token = key["token"].as_str().unwrap().to_owned();
    install_enabled(&s, "same", &token, "service-report", wasm::SERVICE_REPORT);

    const DAY: i64 = 86_400_000;
    let jan = 1_704_067_200_000_i64; // 2024-01-01
    let far = 4_102_444_800_000_i64; // 2100-01-01
    // (name, branch, tickets as (status, due_at)): "แก้ว" and "แกว" differ only by a tone mark.
    let people = [
        ("แก้ว ใจดี", "bkk-01", vec![("open", jan + DAY), ("closed", jan + DAY)]),
        ("นายแกว ดีมาก", "cnx-01", vec![("open", far)]),
        ("ลูกค้า แก้ว", "cnx-01", vec![("pending", jan + 2 * DAY)]),
        ("Kaew Smith", "bkk-01", vec![("open", jan + DAY)]),
        ("แก่น", "bkk-01", vec![("open", jan + DAY)]),
    ];
    for (name, branch, tickets) in &people {
        let (status, c) = json_call("POST", &url("/customers"), &token, json!({"name": name, "branch": branch}));
        assert_eq!(status, 201, "{c}");
        let id = c["id"].as_u64().unwrap_or_else(|| panic!("no id in {c}"));
        for (n, (state, due)) in tickets.iter().enumerate() {
            let closed = (*state == "closed").then_some(jan + 3 * DAY);
            let ticket = json!({"status": state, "category": "delivery", "due_at": due, "closed_at": closed});
            let body = json!({"customer": id, "kind": "ticket", "channel": "phone", "occurred_at": jan + n as i64,
                              "subject": "late", "ticket": ticket});
            let (status, i) = json_call("POST", &url("/interactions"), &token, body);
            assert_eq!(status, 201, "{i}");
        }
    }

    // The organization as a fixture: its customers and their timelines, as the API gives them.
    let (_, page) = json_call("GET", &url("/customers?limit=1000"), &token, Value::Null);
    let customers = page["items"].as_array().unwrap().clone();
    assert_eq!(customers.len(), people.len(), "{page}");
    let mut interactions = Vec::new();
    for c in &customers {
        let (_, timeline) =
            json_call("GET", &url(&format!("/customers/{}/timeline?limit=1000", c["id"])), &token, Value::Null);
        interactions.extend(timeline["items"].as_array().unwrap().iter().cloned());
    }
    let dir = tempfile::tempdir().unwrap();
    let fixture = write(dir.path(), "org.json", &json!({"customers": customers, "interactions": interactions}));

    let filter = "name ~ \"แกว\" and tickets.overdue > 0";
    for params in [
        json!({"filter": filter, "group_by": ["branch"], "as_of": "2024-06-01"}),
        json!({"filter": "name ~ \"แกว\"", "as_of": "2024-06-01"}),
        json!({}),
    ] {
        let (status, served) = json_call("POST", &url("/reports/service-report/run"), &token, params.clone());
        assert_eq!(status, 200, "{params}: {served}");
        let input = write(dir.path(), "params.json", &params);
        let out = rapport(&["plugin", "run", wasm::SERVICE_REPORT, "--input", &input, "--fixture", &fixture]);
        assert!(out.status.success(), "{params}: {}", stderr(&out));
        let ran: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(ran["output"]["columns"], served["columns"], "{params}");
        assert_eq!(ran["output"]["rows"], served["rows"], "{params}");
    }

    // And the answer is the store's, not an agreement on nothing: the tone mark is folded away
    // (แก้ว and แกว both match, Kaew and แก่น do not) and the ticket due in 2100 is not overdue.
    let input =
        write(dir.path(), "params.json", &json!({"filter": filter, "group_by": ["branch"], "as_of": "2024-06-01"}));
    let out = rapport(&["plugin", "run", wasm::SERVICE_REPORT, "--input", &input, "--fixture", &fixture]);
    let ran: Value = serde_json::from_str(&stdout(&out)).unwrap();
    // branch, tickets, open, overdue (as of June 2024), closed, median hours to close.
    assert_eq!(ran["output"]["rows"], json!([["bkk-01", 2, 1, 1, 1, 72.0], ["cnx-01", 1, 1, 1, 0, null]]), "{ran}");
}
