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

    let bad_fixture = write(
        dir.path(),
        "store.json",
        &json!({ "interactions": [{ "customer": 9, "kind": "call", "occurred_at": 0 }] }),
    );
    let input = write(dir.path(), "input.json", &json!({}));
    let out = rapport(&["plugin", "run", wasm::SPEND_RANK, "--input", &input, "--fixture", &bad_fixture]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("belongs to customer 9, which the fixture does not have"), "{}", stderr(&out));
}
