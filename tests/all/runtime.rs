//! The sandbox: every limit ends a call with its own error, in bounded time, and the runtime keeps
//! serving; compiled components are cached and shared.

use std::sync::Arc;
use std::time::Duration;

use rapport::fixture::Fixture;
use rapport::model::Decision;
use rapport::plugins::{CallContext, Limits, Meter, Runtime, RuntimeConfig, World};
use rapport_test_plugins as wasm;
use serde_json::json;

use crate::{attack, create_customer, ctx, load, runtime};

fn change() -> rapport::model::Change {
    create_customer(json!({ "name": "Ann", "email": "ann@example.com" }))
}

#[test]
fn each_attack_ends_in_its_own_error_and_the_next_call_works() {
    for meter in [Meter::Fuel, Meter::Epoch] {
        let rt = runtime(meter);
        let hostile = load(&rt, wasm::HOSTILE_POLICY);
        for (name, code) in [
            ("loop", "cpu"),
            ("memory", "memory"),
            ("recursion", "stack"),
            ("panic", "trap"),
            ("output", "output"),
            ("host-calls", "host_calls"),
            ("bad-json", "bad_output"),
            ("error", "plugin_error"),
        ] {
            let err = hostile.before(&ctx(World::Policy, attack(name)), &change()).expect_err(name);
            assert_eq!(err.failure.code(), code, "{meter:?} attack {name}: {err}");
            assert!(err.to_string().starts_with("plugin `hostile_policy` "), "names the plugin: {err}");
            // The same runtime and the same component serve the next call.
            let ok = hostile.before(&ctx(World::Policy, attack("none")), &change()).expect("next call works");
            assert_eq!(ok.value, Decision::Allow);
        }
    }
}

#[test]
fn errors_say_what_went_wrong() {
    let rt = runtime(Meter::Fuel);
    let hostile = load(&rt, wasm::HOSTILE_POLICY);
    let message = |name| hostile.before(&ctx(World::Policy, attack(name)), &change()).unwrap_err().to_string();
    assert!(message("loop").contains("CPU limit of 500000000 fuel"), "{}", message("loop"));
    assert!(message("memory").contains("memory limit of 64 MiB"), "{}", message("memory"));
    assert!(message("recursion").contains("overflowed its stack (limit 512 KiB)"));
    // A panic's message reaches the author through the SDK's panic hook.
    assert!(message("panic").contains("hostile plugin panicked on purpose"), "{}", message("panic"));
    assert!(message("output").contains("over its output limit of 1048576 bytes"));
    assert!(message("host-calls").contains("more than 10000 host calls"));
    assert!(message("bad-json").contains("the patch of field `email` is not valid JSON"));
    assert!(message("error").contains("reports an error on purpose (field `config`)"));
}

#[test]
fn epoch_deadline_stops_a_loop_near_its_cpu_time() {
    let rt = runtime(Meter::Epoch);
    let hostile = load(&rt, wasm::HOSTILE_POLICY);
    let limits = Limits { cpu_time: Duration::from_millis(20), ..Limits::for_world(World::Policy) };
    let ctx = CallContext::new(Arc::new(Fixture::default()), &attack("loop"), limits);
    let err = hostile.before(&ctx, &change()).unwrap_err();
    assert_eq!(err.failure.code(), "cpu");
    assert!(err.to_string().contains("CPU limit of 20 ms"), "{err}");
    // Bounded: stopped within a generous margin of the deadline, not at the end of the world.
    assert!(err.trace.duration_us < 5_000_000, "stopped after {} µs", err.trace.duration_us);
}

#[test]
fn a_lower_memory_limit_is_enforced() {
    let rt = runtime(Meter::Fuel);
    let hostile = load(&rt, wasm::HOSTILE_POLICY);
    let limits = Limits { memory_bytes: 8 << 20, ..Limits::for_world(World::Policy) };
    let ctx = CallContext::new(Arc::new(Fixture::default()), &attack("memory"), limits);
    let err = hostile.before(&ctx, &change()).unwrap_err();
    assert!(err.to_string().contains("memory limit of 8 MiB"), "{err}");
    assert!(err.trace.peak_memory_bytes <= 8 << 20);
}

#[test]
fn the_instance_limit_is_its_own_error() {
    let rt = runtime(Meter::Fuel);
    let policy = load(&rt, wasm::TEMPLATE_POLICY_TEMPLATE);
    let limits = Limits { instances: 1, ..Limits::for_world(World::Policy) };
    let ctx = CallContext::new(Arc::new(Fixture::default()), &json!({}), limits);
    let err = policy.before(&ctx, &change()).unwrap_err();
    assert_eq!(err.failure.code(), "instances", "{err}");
    assert!(err.to_string().contains("instance count too high"), "{err}");
}

#[test]
fn fuel_is_deterministic() {
    let rt = runtime(Meter::Fuel);
    let policy = load(&rt, wasm::REQUIRE_CONTACT);
    let fuel = || policy.before(&ctx(World::Policy, json!({})), &change()).unwrap().trace.fuel.unwrap();
    let first = fuel();
    assert!(first > 0);
    assert_eq!(first, fuel());
}

#[test]
fn the_same_bytes_are_compiled_and_held_once() {
    let rt = runtime(Meter::Epoch);
    let a = load(&rt, wasm::REQUIRE_CONTACT);
    let b = load(&rt, wasm::REQUIRE_CONTACT);
    assert_eq!(rapport::plugins::loaded_count(&rt), 1);
    assert_eq!(a.info().sha256, b.info().sha256);
    drop((a, b));
    assert_eq!(rapport::plugins::loaded_count(&rt), 0, "freed once no organization uses it");
}

#[test]
fn compiled_components_survive_a_restart_and_a_corrupt_cache_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let config = || RuntimeConfig { cache_dir: Some(dir.path().to_owned()), ..RuntimeConfig::default() };
    let bytes = std::fs::read(wasm::REQUIRE_CONTACT).unwrap();
    {
        let rt = Runtime::new(config()).unwrap();
        rt.load("p", &bytes).unwrap();
    }
    let cached: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(cached.len(), 1, "one artifact: {cached:?}");
    let name = cached[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&rapport_sha256(&bytes)), "named by the component's sha256: {name}");

    // A restart loads the artifact; a damaged artifact is discarded and rebuilt, not trusted.
    std::fs::write(&cached[0], b"garbage").unwrap();
    let rt = Runtime::new(config()).unwrap();
    let plugin = rt.load("p", &bytes).expect("recompiled");
    let decision = plugin.before(&ctx(World::Policy, json!({})), &change()).unwrap().value;
    assert_eq!(decision, Decision::Allow);
    assert_ne!(std::fs::read(&cached[0]).unwrap(), b"garbage");
}

fn rapport_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn calling_an_export_of_another_world_is_an_error() {
    let rt = runtime(Meter::Fuel);
    let scorer = load(&rt, wasm::SPEND_RANK);
    let err = scorer.before(&ctx(World::Scorer, json!({})), &change()).unwrap_err();
    assert_eq!(err.failure.code(), "wrong_world");
    assert!(err.to_string().contains("is a scorer plugin; it has no `before` export"), "{err}");
}

#[test]
fn many_calls_at_once_queue_for_pool_slots_instead_of_failing() {
    // Two slots, sixteen threads: a runaway plugin and a good one share the pool.
    let rt =
        Arc::new(Runtime::new(RuntimeConfig { meter: Meter::Epoch, max_instances: 2, ..Default::default() }).unwrap());
    let hostile = load(&rt, wasm::HOSTILE_POLICY);
    let good = load(&rt, wasm::REQUIRE_CONTACT);
    let limits = Limits { cpu_time: Duration::from_millis(10), ..Limits::for_world(World::Policy) };
    std::thread::scope(|s| {
        for i in 0..16 {
            let (hostile, good, limits) = (hostile.clone(), good.clone(), limits.clone());
            s.spawn(move || {
                for _ in 0..5 {
                    if i % 2 == 0 {
                        let ctx = CallContext::new(Arc::new(Fixture::default()), &attack("loop"), limits.clone());
                        assert_eq!(hostile.before(&ctx, &change()).unwrap_err().failure.code(), "cpu");
                    } else {
                        let ctx = CallContext::new(Arc::new(Fixture::default()), &json!({}), limits.clone());
                        assert!(good.before(&ctx, &change()).is_ok());
                    }
                }
            });
        }
    });
}

fn batch(ids: &[u64]) -> rapport::model::FeatureBatch {
    rapport::model::FeatureBatch { ids: ids.to_vec(), now: 0, columns: Vec::new() }
}

#[test]
fn malformed_score_batches_are_refused_with_the_reason() {
    let rt = runtime(Meter::Fuel);
    let scorer = load(&rt, wasm::HOSTILE_SCORER);
    for (name, expected) in [
        ("infinite", "score `x` is infinite for the customer at position 0"),
        ("short", "score column `x` has 2 values for a batch of 3 customers"),
        ("bad-code", "label `l` has code 7 at position 0, but only 1 categories"),
    ] {
        let mut session = scorer.session(&ctx(World::Scorer, attack(name)));
        let err = session.score(batch(&[1, 2, 3]), &[]).unwrap_err();
        assert_eq!(err.failure.code(), "bad_output", "{name}: {err}");
        assert!(err.to_string().contains(expected), "{name}: {err}");
    }
}

#[test]
fn a_session_meters_each_call_and_recovers_after_a_trap() {
    let rt = runtime(Meter::Fuel);
    let scorer = load(&rt, wasm::HOSTILE_SCORER);
    let mut good = scorer.session(&ctx(World::Scorer, attack("none")));
    let first = good.score(batch(&[1, 2]), &[]).unwrap();
    let second = good.score(batch(&[3, 4]), &[]).unwrap();
    let third = good.score(batch(&[5, 6]), &[]).unwrap();
    assert_eq!(first.value.scores[0].values, [1.0, 1.0]);
    // The first call also runs the guest's one-time setup; later calls are metered alike, each
    // from a full budget.
    assert!(first.trace.fuel > second.trace.fuel);
    assert_eq!(second.trace.fuel, third.trace.fuel, "each call has its own budget and count");
    drop(good);

    let mut panicking = scorer.session(&ctx(World::Scorer, attack("panic")));
    for _ in 0..2 {
        // The trapped instance is dropped; the next call gets a fresh one (and traps again).
        let err = panicking.score(batch(&[1]), &[]).unwrap_err();
        assert!(err.to_string().contains("hostile scorer panicked on purpose"), "{err}");
    }
    assert!(panicking.describe().is_ok(), "describe works on the fresh instance");
}

/// A store that answers every query slowly and always has another page.
struct Slow;

impl rapport::plugins::DataSource for Slow {
    fn customer(&self, _: u64) -> Result<Option<rapport::model::Customer>, rapport::plugins::DataError> {
        Ok(None)
    }
    fn find_customer(&self, _: &str, _: &str) -> Result<Option<rapport::model::Customer>, rapport::plugins::DataError> {
        Ok(None)
    }
    fn timeline(
        &self,
        _: u64,
        _: Option<i64>,
        _: u32,
    ) -> Result<Vec<rapport::model::Interaction>, rapport::plugins::DataError> {
        Ok(Vec::new())
    }
    fn query_customers(
        &self,
        _: &str,
        _: Option<&str>,
        _: u32,
    ) -> Result<Result<rapport::model::CustomerPage, String>, rapport::plugins::DataError> {
        std::thread::sleep(Duration::from_millis(5));
        Ok(Ok(rapport::model::CustomerPage { items: Vec::new(), next_cursor: Some("more".into()) }))
    }
    fn distributor(&self, _: u64) -> Result<Option<rapport::model::Distributor>, rapport::plugins::DataError> {
        Ok(None)
    }
    fn downline(&self, _: u64, _: u32) -> Result<Vec<rapport::model::DownlineMember>, rapport::plugins::DataError> {
        Ok(Vec::new())
    }
    fn aggregate(
        &self,
        query: &rapport::model::AggregateQuery,
    ) -> Result<Result<rapport::model::AggregateResult, String>, rapport::plugins::DataError> {
        Ok(Ok(rapport::aggregate::Grouper::new(query).finish()))
    }
}

#[test]
fn time_spent_in_host_calls_counts_against_the_cpu_limit() {
    // Epochs interrupt wasm, not a plugin waiting in the host: the host checks the deadline.
    let rt = runtime(Meter::Epoch);
    let reporter = load(&rt, wasm::TEMPLATE_REPORTER_TEMPLATE);
    let limits = Limits { cpu_time: Duration::from_millis(50), ..Limits::for_world(World::Reporter) };
    let ctx = CallContext::new(Arc::new(Slow), &json!({}), limits);
    let err = reporter.run_report(&ctx, &json!({})).unwrap_err();
    // The guest does nothing but wait in host calls, so the limit is reached by host time. Which
    // side notices first is a race: the host's check in its next call ("reached during a host
    // call"), or the epoch interrupt when the guest resumes after a call that ran past it.
    assert_eq!(err.failure.code(), "cpu", "{err}");
    assert!(err.trace.host_calls >= 2, "the time went into host calls: {} calls", err.trace.host_calls);
    assert!(err.trace.host_calls < 50, "stopped soon after the deadline: {} calls", err.trace.host_calls);
}
