//! What the host tells a plugin's author when the plugin goes wrong. Each message must name the
//! export that was running, the limit (its key, its value, how to try another) or the field of
//! the output that was invalid, so that the author knows what to change without reading the
//! host's code. The guide's table (docs/plugin-guide.md) quotes these messages.

use std::sync::Arc;
use std::time::Duration;

use rapport::model::{Change, Decision, Entity, FeatureBatch, Operation};
use rapport::plugins::{CallContext, CallError, Empty, Limits, Meter, World};
use rapport_test_plugins as wasm;
use serde_json::{Value, json};

use crate::{attack, create_customer, ctx, load, runtime};

fn change() -> Change {
    create_customer(json!({ "name": "Ann", "email": "ann@example.com" }))
}

fn limited(config: Value, limits: Limits) -> CallContext {
    CallContext::new(Arc::new(Empty), &config, limits)
}

fn assert_says(err: &CallError, fragments: &[&str]) {
    let message = err.to_string();
    for fragment in fragments {
        assert!(message.contains(fragment), "`{fragment}` missing from: {message}");
    }
}

#[test]
fn a_limit_names_the_export_its_key_its_value_and_how_to_try_another() {
    let rt = runtime(Meter::Fuel);
    let hostile = load(&rt, wasm::HOSTILE_POLICY);
    let cases: [(&str, &str, &[&str]); 6] = [
        ("loop", "cpu", &["ran past its CPU limit of 500000000 fuel in `before`", "the `fuel` limit"]),
        ("memory", "memory", &["hit its memory limit of 64 MiB in `before`", "the `memory_bytes` limit"]),
        ("host-calls", "host_calls", &["more than 10000 host calls in `before`", "the `host_calls` limit"]),
        (
            "output",
            "output",
            &["returned 4194304 bytes in `before`, over its output limit of 1048576 bytes", "the `output_bytes` limit"],
        ),
        ("recursion", "stack", &["overflowed its stack (limit 512 KiB) in `before`", "cannot be raised"]),
        ("panic", "trap", &["trapped in `before`", "hostile plugin panicked on purpose"]),
    ];
    for (name, code, fragments) in cases {
        let err = hostile.before(&ctx(World::Policy, attack(name)), &change()).expect_err(name);
        assert_eq!(err.failure.code(), code, "{name}: {err}");
        assert_eq!(err.export, "before");
        assert_says(&err, fragments);
        if err.failure.is_limit() && code != "stack" {
            assert_says(&err, &["`rapport plugin run --limits LIMITS.json` tries another value"]);
        }
    }
}

/// The key a message names is the one `rapport plugin run --limits` reads, and raising it lets
/// the same call through: the advice works.
#[test]
fn the_limit_a_message_names_is_the_key_that_raises_it() {
    let rt = runtime(Meter::Fuel);
    let hostile = load(&rt, wasm::HOSTILE_POLICY);
    let err = hostile.before(&ctx(World::Policy, attack("output")), &change()).unwrap_err();
    assert_says(&err, &["the `output_bytes` limit"]);
    // What `--limits LIMITS.json` parses: the keys the messages name, nothing else.
    for key in ["fuel", "cpu_time", "memory_bytes", "host_calls", "output_bytes", "table_elements", "log_lines"] {
        Limits::overriding(World::Policy, &json!({ key: 1 })).unwrap_or_else(|e| panic!("`{key}`: {e}"));
    }
    let typo = Limits::overriding(World::Policy, &json!({ "output": 1 })).expect_err("unknown keys are refused");
    assert!(typo.to_string().contains("unknown field `output`, expected one of"), "{typo}");
    let raised = Limits::overriding(World::Policy, &json!({ "output_bytes": 8 << 20 })).unwrap();
    let called = hostile.before(&limited(attack("output"), raised), &change()).expect("passes under the raised limit");
    assert!(matches!(called.value, Decision::Warn { ref message } if message.len() == 4 << 20));
}

/// A `--limits` file overrides the keys it gives; the others keep the defaults of the plugin's
/// own world (a scorer's 32 MiB output, not a policy's 1 MiB).
#[test]
fn limits_left_out_keep_the_defaults_of_the_plugins_world() {
    for world in [World::Policy, World::Scorer, World::Reporter] {
        let limits = Limits::overriding(world, &json!({ "host_calls": 5000 })).unwrap();
        assert_eq!(limits, Limits { host_calls: 5000, ..Limits::for_world(world) }, "{world}");
    }
    assert_ne!(Limits::for_world(World::Scorer).output_bytes, Limits::for_world(World::Policy).output_bytes);
}

#[test]
fn on_a_server_the_cpu_limit_is_named_cpu_time_in_milliseconds() {
    let rt = runtime(Meter::Epoch);
    let hostile = load(&rt, wasm::HOSTILE_POLICY);
    let limits = Limits { cpu_time: Duration::from_millis(20), ..Limits::for_world(World::Policy) };
    let err = hostile.before(&limited(attack("loop"), limits), &change()).unwrap_err();
    assert_says(&err, &["ran past its CPU limit of 20 ms in `before`", "the `cpu_time` limit"]);
}

#[test]
fn a_scorer_failure_names_the_export_of_the_session() {
    let rt = runtime(Meter::Fuel);
    let scorer = load(&rt, wasm::HOSTILE_SCORER);
    let batch = FeatureBatch { ids: vec![1, 2], now: 0, columns: Vec::new() };
    let err = scorer.session(&ctx(World::Scorer, attack("panic"))).score(batch.clone(), &[]).unwrap_err();
    assert_eq!(err.export, "score");
    assert_says(&err, &["trapped in `score`", "hostile scorer panicked on purpose"]);
    let err = scorer.session(&ctx(World::Scorer, attack("huge-label"))).score(batch, &[]).unwrap_err();
    assert_says(&err, &["in `score`, over its output limit of 33554432 bytes", "the `output_bytes` limit"]);
}

/// Score columns are by position: the message says which customer (by id) and how columns line up.
#[test]
fn a_bad_score_batch_names_the_column_and_the_customer() {
    let rt = runtime(Meter::Fuel);
    let scorer = load(&rt, wasm::HOSTILE_SCORER);
    let batch = || FeatureBatch { ids: vec![41, 42, 43], now: 0, columns: Vec::new() };
    for (name, fragments) in [
        ("infinite", &["score `x` is infinite for the customer at position 0 (id 41)", "NaN for no score"][..]),
        ("bad-code", &["label `l` has code 7 at position 0, but only 1 categories (customer id 41;"][..]),
        ("short", &["score column `x` has 2 values for a batch of 3 customers", "in the order of `batch.ids`"][..]),
    ] {
        let err = scorer.session(&ctx(World::Scorer, attack(name))).score(batch(), &[]).unwrap_err();
        assert_eq!(err.failure.code(), "bad_output", "{name}: {err}");
        assert_says(&err, &["returned an invalid value from `score`"]);
        assert_says(&err, fragments);
    }
}

/// A column under a name `describe` never declared would be stored where no filter or profile
/// looks: after `describe`, the session refuses it, naming what was declared.
#[test]
fn a_score_column_describe_did_not_declare_is_refused_with_the_declared_names() {
    let rt = runtime(Meter::Fuel);
    let scorer = load(&rt, wasm::HOSTILE_SCORER);
    let batch = || FeatureBatch { ids: vec![1, 2], now: 0, columns: Vec::new() };
    for (name, expected) in [
        ("undeclared-score", "score column `y` is not a score `describe` declared (it declares `x`)"),
        ("undeclared-label", "label column `level` is not a label `describe` declared (it declares `l`)"),
    ] {
        let mut session = scorer.session(&ctx(World::Scorer, attack(name)));
        session.describe().expect("describe works");
        let err = session.score(batch(), &[]).unwrap_err();
        assert_eq!(err.failure.code(), "bad_output", "{name}: {err}");
        assert_says(&err, &["returned an invalid value from `score`", expected]);
    }
    // The declared names pass, explanations included (spend-rank explains its `rank` score).
    let good = load(&rt, wasm::SPEND_RANK);
    let mut session = good.session(&ctx(World::Scorer, json!({ "explain": true })));
    let spec = session.describe().unwrap().value;
    let columns = spec
        .features
        .iter()
        .map(|f| rapport::model::Column { name: f.name.clone(), values: vec![1_000.0, f64::NAN] })
        .collect();
    let model = session.fit(FeatureBatch { ids: vec![1, 2], now: 0, columns }).unwrap().value;
    let columns = spec
        .features
        .iter()
        .map(|f| rapport::model::Column { name: f.name.clone(), values: vec![500.0, f64::NAN] })
        .collect();
    let scored = session.score(FeatureBatch { ids: vec![1, 2], now: 0, columns }, &model).unwrap().value;
    assert_eq!(scored.explanations[0].name, "rank");
}

/// A patch the record cannot take is refused by the runtime itself, so `rapport plugin run`
/// refuses it as a server would, naming the patched field.
#[test]
fn a_patch_the_record_cannot_take_is_refused_naming_the_field() {
    let rt = runtime(Meter::Fuel);
    let hostile = load(&rt, wasm::HOSTILE_POLICY);
    let refused = |name: &str, change: &Change| {
        let err = hostile.before(&ctx(World::Policy, attack(name)), change).expect_err(name);
        assert_eq!(err.failure.code(), "bad_output", "{name}: {err}");
        err
    };
    let err = refused("patch-unknown-field", &change());
    assert_says(
        &err,
        &["from `before`: the patch of field `org_id` cannot be applied: a customer has no field `org_id`"],
    );
    let err = refused("patch-wrong-type", &change());
    assert_says(&err, &["the patch of field `email` cannot be applied", "expected a string"]);

    let Some(Entity::Customer(ann)) = change().after else { unreachable!() };
    let delete = Change { operation: Operation::Delete, before: Some(Entity::Customer(ann)), after: None, ..change() };
    let err = refused("patch-unknown-field", &delete);
    assert_says(&err, &["there is no record to patch (the change deletes it)"]);

    // A patch the record can take still passes: require-contact lower-cases an email.
    let good = load(&rt, wasm::REQUIRE_CONTACT);
    let shouting = create_customer(json!({ "name": "Ann", "email": "ANN@EXAMPLE.COM" }));
    let decision = good.before(&ctx(World::Policy, json!({})), &shouting).unwrap().value;
    assert!(matches!(decision, Decision::Patch { ref patches } if patches[0].field == "email"), "{decision:?}");
}

#[test]
fn an_invalid_action_names_its_position_and_field() {
    let rt = runtime(Meter::Fuel);
    let hostile = load(&rt, wasm::HOSTILE_POLICY);
    let config = json!({ "attack": "none", "after": "bad-variables" });
    let err = hostile.after(&ctx(World::Policy, config), &change()).unwrap_err();
    assert_eq!(err.export, "after");
    assert_says(
        &err,
        &[
            "returned an invalid value from `after`: action 0 (queue-message): `variables` must be a JSON object, got an array",
        ],
    );
}

#[test]
fn a_bad_report_names_the_row_the_column_and_what_the_column_takes() {
    let rt = runtime(Meter::Fuel);
    let reporter = load(&rt, wasm::HOSTILE_REPORTER);
    let run = |name: &str| reporter.run_report(&ctx(World::Reporter, attack(name)), &json!({}));
    for (name, fragments) in [
        ("short-row", &["row 1 has 2 cells for 3 columns", "in column order: `branch`, `customers`, `revenue`"][..]),
        (
            "text-in-money",
            &[
                "row 1, column `revenue`: a text cell, but the column's type is `money`",
                "takes integer cells (minor units",
            ][..],
        ),
        ("number-in-integer", &["row 0, column `customers`: a number cell, but the column's type is `integer`"][..]),
        (
            "chart-unknown-column",
            &["`chart.y` names column `revenu`, which the report does not have (its columns: `branch`, `customers`"][..],
        ),
    ] {
        let err = run(name).expect_err(name);
        assert_eq!(err.failure.code(), "bad_output", "{name}: {err}");
        assert_says(&err, &["returned an invalid value from `run`"]);
        assert_says(&err, fragments);
    }
    // Integer cells in a money column, and nulls anywhere, are what a well-typed report holds.
    let report = run("none").expect("a well-typed report passes").value;
    assert_eq!(report.rows.len(), 2);
}

/// Past the log-line limit a call still succeeds: the first lines are kept, the rest counted.
#[test]
fn log_lines_past_the_limit_are_counted_not_kept_and_do_not_fail_the_call() {
    let rt = runtime(Meter::Fuel);
    let reporter = load(&rt, wasm::HOSTILE_REPORTER);
    let called = reporter.run_report(&ctx(World::Reporter, attack("log-flood")), &json!({})).expect("succeeds");
    let kept = Limits::for_world(World::Reporter).log_lines;
    assert_eq!(called.trace.logs.len(), kept);
    assert_eq!(called.trace.logs[0].message, "line 0", "the first lines are the ones kept");
    assert_eq!(called.trace.dropped_logs, 1_000 - kept);
}

/// A component with a misspelt export: the refusal says which export the nearest world lacks and
/// which one it does not know.
#[test]
fn a_missing_export_is_named_at_installation_and_nothing_is_registered() {
    let template = std::fs::read(wasm::TEMPLATE_POLICY_TEMPLATE).unwrap();
    let typo = replace_all(&template, b"after", b"aftex");
    let rt = runtime(Meter::Fuel);
    let err = rt.load("typo", &typo).err().expect("refused");
    let message = err.to_string();
    assert!(message.contains("it exports `aftex`, `before` — a policy also needs `after`"), "{message}");
    assert!(message.contains("remove `aftex`"), "{message}");

    // An empty component matches no world: no guess is offered.
    let err = rt.load("empty", b"\0asm\x0d\0\x01\0").err().expect("refused").to_string();
    assert!(err.contains("it exports nothing; a plugin exports `before` and `after`"), "{err}");

    use rapport::model::Actor;
    use rapport::pipeline::{Pipeline, Settings};
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new(rapport::store::Store::open(dir.path()).unwrap(), runtime(Meter::Epoch), Settings::default());
    p.store().create_org("acme", "Acme").unwrap();
    let owner = Actor { name: "ops".into(), role: rapport::model::Role::Owner };
    let err = p.install("acme", &owner, "typo", &typo, Some("1.0.0"), None, true).unwrap_err().to_string();
    assert!(err.contains("a policy also needs `after`"), "{err}");
    assert!(p.plugins("acme").unwrap().is_empty(), "nothing registered");
}

fn replace_all(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len(), "same length keeps every offset of the binary valid");
    let mut out = bytes.to_vec();
    let mut i = 0;
    let mut replaced = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            replaced += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(replaced > 0, "the export name is in the component");
    out
}

/// What the author reads in `rapport plugin logs`: the trace of a failed call names the export,
/// so a policy failing in `after` is told apart from one failing in `before`.
#[test]
fn the_execution_trace_names_the_export_that_failed() {
    use rapport::model::{Actor, Customer, Origin};
    use rapport::pipeline::{Pipeline, PipelineError, Settings, Write};

    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new(rapport::store::Store::open(dir.path()).unwrap(), runtime(Meter::Epoch), Settings::default());
    p.store().create_org("acme", "Acme").unwrap();
    let owner = Actor { name: "ops".into(), role: rapport::model::Role::Owner };
    let bytes = std::fs::read(wasm::HOSTILE_POLICY).unwrap();
    let customer =
        |name: &str| Write::CreateCustomer(serde_json::from_value::<Customer>(json!({ "name": name })).unwrap());

    p.install("acme", &owner, "failing", &bytes, Some("1.0.0"), Some(json!({ "attack": "error" })), true).unwrap();
    p.enable("acme", &owner, "failing").unwrap();
    let err = p.write("acme", &owner, Origin::Api, customer("Ann")).unwrap_err();
    let PipelineError::PolicyFailed { error, .. } = &err else { panic!("a plugin failure: {err}") };
    assert!(error.contains("plugin `failing` reported an error in `before`"), "{error}");
    assert_eq!(p.org("acme").unwrap().counts().unwrap().customers, 0, "nothing landed");
    let trace = &p.traces("acme", "failing", None, 1).unwrap()[0];
    assert_eq!((trace.hook.as_str(), trace.outcome.as_str()), ("before", "error"));
    assert!(trace.error.as_deref().unwrap().contains("reported an error in `before`"), "{trace:?}");
    p.disable("acme", &owner, "failing").unwrap();

    let config = json!({ "attack": "none", "after": "trap" });
    p.install("acme", &owner, "late", &bytes, Some("1.0.0"), Some(config), true).unwrap();
    p.enable("acme", &owner, "late").unwrap();
    p.write("acme", &owner, Origin::Api, customer("Bo")).expect("an `after` failure does not undo the write");
    let traces = p.traces("acme", "late", None, 10).unwrap();
    let after = traces.iter().find(|t| t.hook == "after").expect("a trace of `after`");
    assert_eq!(after.outcome, "error");
    let error = after.error.as_deref().unwrap();
    assert!(error.contains("trapped in `after`") && error.contains("panicked in `after` on purpose"), "{error}");
}

/// `rapport plugin run` prints the refusal on stderr with exit code 1, where it used to print a
/// patch that only a server would refuse.
#[test]
fn plugin_run_refuses_a_patch_of_a_field_the_record_does_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.json");
    let change = json!({ "change": { "operation": "create", "after": { "customer": { "name": "Ann" } } } });
    std::fs::write(&input, change.to_string()).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, attack("patch-unknown-field").to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(["plugin", "run", wasm::HOSTILE_POLICY, "--input"])
        .arg(&input)
        .arg("--config")
        .arg(&config)
        .env("RAPPORT_CACHE_DIR", std::env::temp_dir().join("rapport-test-cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "no decision printed: {}", String::from_utf8_lossy(&out.stdout));
    assert!(
        stderr.contains("the patch of field `org_id` cannot be applied: a customer has no field `org_id`"),
        "{stderr}"
    );
}
