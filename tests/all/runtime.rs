//! The sandbox: every limit ends a call with its own error, in bounded time, and the runtime keeps
//! serving; compiled components are cached and shared.

use std::sync::Arc;
use std::time::Duration;

use rapport::model::Decision;
use rapport::plugins::{CallContext, Empty, Limits, Meter, Runtime, RuntimeConfig, World};
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
            // Filling 64 MiB a MiB at a time, or making 10 000 host calls, can take longer than
            // the 100 ms CPU limit on a loaded machine; those attacks get time enough to meet
            // their own limit first.
            let cpu_time = match name {
                "memory" | "host-calls" => Duration::from_secs(10),
                _ => Duration::from_millis(100),
            };
            let limits = Limits { cpu_time, ..Limits::for_world(World::Policy) };
            let attacked = CallContext::new(Arc::new(Empty), &attack(name), limits);
            let err = hostile.before(&attacked, &change()).expect_err(name);
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
fn epoch_deadline_stops_a_loop_and_names_its_cpu_time() {
    let rt = runtime(Meter::Epoch);
    let hostile = load(&rt, wasm::HOSTILE_POLICY);
    let limits = Limits { cpu_time: Duration::from_millis(20), ..Limits::for_world(World::Policy) };
    let ctx = CallContext::new(Arc::new(Empty), &attack("loop"), limits);
    let err = hostile.before(&ctx, &change()).unwrap_err();
    assert_eq!(err.failure.code(), "cpu");
    assert!(err.to_string().contains("CPU limit of 20 ms"), "{err}");
}

#[test]
fn a_lower_memory_limit_is_enforced() {
    let rt = runtime(Meter::Fuel);
    let hostile = load(&rt, wasm::HOSTILE_POLICY);
    let limits = Limits { memory_bytes: 8 << 20, ..Limits::for_world(World::Policy) };
    let ctx = CallContext::new(Arc::new(Empty), &attack("memory"), limits);
    let err = hostile.before(&ctx, &change()).unwrap_err();
    assert!(err.to_string().contains("memory limit of 8 MiB"), "{err}");
    assert!(err.trace.peak_memory_bytes <= 8 << 20);
}

#[test]
fn the_instance_limit_is_its_own_error() {
    let rt = runtime(Meter::Fuel);
    let policy = load(&rt, wasm::TEMPLATE_POLICY_TEMPLATE);
    let limits = Limits { instances: 1, ..Limits::for_world(World::Policy) };
    let ctx = CallContext::new(Arc::new(Empty), &json!({}), limits);
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
                        let ctx = CallContext::new(Arc::new(Empty), &attack("loop"), limits.clone());
                        assert_eq!(hostile.before(&ctx, &change()).unwrap_err().failure.code(), "cpu");
                    } else {
                        let ctx = CallContext::new(Arc::new(Empty), &json!({}), limits.clone());
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
    // A 40 MiB label text is over the scorer's 32 MiB output limit.
    let mut session = scorer.session(&ctx(World::Scorer, attack("huge-label")));
    let err = session.score(batch(&[1, 2, 3]), &[]).unwrap_err();
    assert_eq!(err.failure.code(), "output", "{err}");
    assert!(err.to_string().starts_with("plugin `hostile_scorer` returned "), "{err}");
    // NaN is the contract's "no score": accepted here, stored as no value (see the pipeline).
    let mut session = scorer.session(&ctx(World::Scorer, attack("nan")));
    let scores = session.score(batch(&[1, 2]), &[]).unwrap().value;
    assert!(scores.scores[0].values.iter().all(|v| v.is_nan()));
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

// ----- hostile plugins in the write pipeline: two organizations, a real store -----

mod hostile {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use rapport::model::{Actor, Customer, Distributor, Entity, Id, Interaction, Origin};
    use rapport::pipeline::{ImportFormat, ImportKind};
    use rapport::pipeline::{Pipeline, PipelineError, Settings, Write};
    use rapport::plugins::{Limits, Meter, World};
    use rapport::store::{FailureMode, Store};
    use rapport_test_plugins as wasm;
    use serde_json::{Value, json};

    fn owner() -> Actor {
        Actor { name: "ops".into(), role: rapport::model::Role::Owner }
    }

    /// Failures are what these tests provoke: keep the plugins enabled however many there are.
    fn settings() -> Settings {
        Settings { failure_threshold: 1_000_000, ..Settings::default() }
    }

    fn pipeline(settings: Settings) -> (tempfile::TempDir, Pipeline) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, Pipeline::new(store, crate::runtime(Meter::Epoch), settings))
    }

    fn install(p: &Pipeline, org: &str, name: &str, path: &str, config: Value) {
        let bytes = std::fs::read(path).unwrap();
        p.install(org, &owner(), name, &bytes, Some("1.0.0"), Some(config), true).unwrap();
        p.enable(org, &owner(), name).unwrap();
    }

    fn write(p: &Pipeline, org: &str, w: Write) -> Result<rapport::pipeline::Outcome, PipelineError> {
        p.write(org, &owner(), Origin::Api, w)
    }

    fn new_customer(v: Value) -> Write {
        Write::CreateCustomer(serde_json::from_value::<Customer>(v).unwrap())
    }

    fn customer_id(outcome: &rapport::pipeline::Outcome) -> Id {
        match &outcome.record {
            Some(Entity::Customer(c)) => c.id,
            other => panic!("expected a customer, got {other:?}"),
        }
    }

    /// An organization's records, each carrying its `marker` in every text field, so that any
    /// leak of them into another organization's plugin shows up as that marker.
    fn populate(p: &Pipeline, org: &str, marker: &str, n: usize) -> Vec<Id> {
        p.store().create_org(org, &format!("{marker} Corp")).unwrap();
        let root: Distributor =
            serde_json::from_value(json!({ "name": format!("{marker} distributor root") })).unwrap();
        let root = write(p, org, Write::SaveDistributor(root)).unwrap();
        let Some(Entity::Distributor(root)) = root.record else { panic!("a distributor") };
        let downline: Distributor =
            serde_json::from_value(json!({ "name": format!("{marker} distributor child"), "sponsor": root.id }))
                .unwrap();
        write(p, org, Write::SaveDistributor(downline)).unwrap();
        let mut ids = Vec::new();
        for i in 0..n {
            let out = write(
                p,
                org,
                new_customer(json!({
                    "name": format!("{marker} person {i}"),
                    "email": format!("{marker}-{i}@{marker}.test"),
                    "branch": format!("{marker}-branch"),
                    "distributor": root.id,
                    "tags": [format!("{marker}-tag")],
                    "attributes": { "secret": format!("{marker}-attr-{i}") },
                    "external_ids": [{ "source": "shop", "id": format!("{marker}-{i}") }],
                })),
            )
            .unwrap();
            let id = customer_id(&out);
            let interaction: Interaction = serde_json::from_value(json!({
                "customer": id, "kind": "purchase", "channel": "web", "source": "shop",
                "occurred_at": 1_700_000_000_000i64 + i as i64, "subject": format!("{marker} subject {i}"),
                "amount": { "amount_minor": 100, "currency": "USD" },
            }))
            .unwrap();
            write(p, org, Write::AddInteraction(interaction)).unwrap();
            ids.push(id);
        }
        ids
    }

    fn metric(plugin: &str, outcome: &str) -> bool {
        rapport::metrics::render(&[])
            .contains(&format!("rapport_plugin_calls_total{{plugin=\"{plugin}\",outcome=\"{outcome}\"}}"))
    }

    /// A plugin of organization A reads through every function of the `store` interface: ids
    /// guessed 1..=100 (organization B's records were created first, so they hold the low ids),
    /// B's external ids and names, filters crafted to escape the scope or the SQL, forged cursors,
    /// aggregates grouped by every field. It reports all it saw; none of it may be B's.
    #[test]
    fn a_plugin_sees_nothing_of_another_organization_through_any_host_function() {
        let limits = Limits { cpu_time: Duration::from_secs(20), ..Limits::for_world(World::Policy) };
        let (_dir, p) = pipeline(Settings { policy_limits: limits, ..settings() });
        let beta = populate(&p, "beta", "betasecret", 20);
        let alpha = populate(&p, "alpha", "alphaown", 10);
        assert!(beta.iter().max() < alpha.iter().min(), "B's ids come first: {beta:?} {alpha:?}");
        let probes: Vec<String> = (0..20)
            .flat_map(|i| [format!("betasecret-{i}"), format!("betasecret person {i}")])
            .chain(["betasecret".into(), "betasecret-branch".into(), "betasecret-tag".into(), "beta".into()])
            .collect();
        install(
            &p,
            "alpha",
            "snoop",
            wasm::HOSTILE_POLICY,
            json!({ "attack": "snoop", "guess": 100, "probes": probes }),
        );
        let out = write(&p, "alpha", new_customer(json!({ "name": "alphaown newcomer" }))).unwrap();
        let report = &out.warnings.iter().find(|w| w.plugin == "snoop").expect("the snoop reports").message;

        let field = |name: &str| {
            let start = report.find(&format!("{name}=")).unwrap() + name.len() + 1;
            report[start..].split(' ').next().unwrap().to_owned()
        };
        let ids = |name: &str| -> BTreeSet<u64> {
            field(name)
                .trim_matches(['[', ']'])
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect()
        };
        let customers = ids("customers");
        assert!(customers.iter().all(|id| alpha.contains(id)), "only A's customers: {customers:?} (A: {alpha:?})");
        assert_eq!(customers.len(), alpha.len(), "and all of them: the snoop did reach the store");
        let interactions = ids("interactions");
        assert_eq!(interactions.len(), alpha.len(), "A's interactions, none of B's: {interactions:?}");
        let distributors = ids("distributors");
        assert_eq!(distributors.len(), 2, "A's two distributors only: {distributors:?}");
        // Aggregates count A's customers (the one being created is not stored yet), never B's.
        assert_eq!(field("max_aggregate_count"), alpha.len().to_string(), "{report:.300}");
        assert!(field("errors").parse::<u32>().unwrap() > 0, "crafted filters are refused as errors");
        let text = &report[report.find("text=").unwrap() + 5..];
        assert!(text.contains("alphaown-attr-3") && text.contains("alphaown subject 7"), "A's text is visible");
        assert!(!report.to_lowercase().contains("betasecret"), "B leaked into A's plugin: {report}");
        // The call is traced and counted like any other.
        let traces = p.traces("alpha", "snoop", None, 10).unwrap();
        let before = traces.iter().find(|t| t.hook == "before").expect("a trace of `before`");
        assert_eq!(before.outcome, "warn");
        assert!(metric("snoop", "ok"));
        // B's data is intact (the `'; DROP TABLE` filter was a string, not SQL).
        assert_eq!(p.org("beta").unwrap().counts().unwrap().customers, 20);
    }

    /// Malformed values in a patch: each is refused with the plugin's name and the reason, the
    /// write fails (closed) or lands unpatched (open), is traced as an error, and counted.
    #[test]
    fn malformed_patches_are_refused_naming_the_plugin_and_nothing_lands() {
        let (_dir, p) = pipeline(settings());
        p.store().create_org("acme", "Acme").unwrap();
        // (attack, text of the error, whether the runtime refuses it, so its metric says so)
        let cases = [
            ("bad-attributes", "the patch of field `attributes` is not a JSON object", true),
            ("bad-json-attribute", "the patch of field `attributes.tier` is not valid JSON", true),
            ("patch-id", "the patch sets field `id`, which no policy may change", true),
            ("patch-created-at", "the patch sets field `created_at`, which no policy may change", true),
            ("patch-updated-at", "the patch sets field `updated_at`, which no policy may change", true),
            ("patch-unknown-field", "a customer has no field `org_id`", false),
            ("huge-name", "the patch of field `name` is 921602 bytes, over the limit of 65536 bytes", true),
            ("huge-attribute", "the patch of field `attributes.blob` is 524290 bytes, over the limit", true),
            ("nan-attribute", "the patch of field `attributes.score` is not valid JSON", true),
            ("infinite-attribute", "the patch of field `attributes.score` is not valid JSON", true),
        ];
        let org = p.org("acme").unwrap();
        for (attack, expected, by_runtime) in cases {
            let landed = org.counts().unwrap().customers;
            let name = format!("malformed-{attack}");
            install(&p, "acme", &name, wasm::HOSTILE_POLICY, json!({ "attack": attack }));
            let err = write(&p, "acme", new_customer(json!({ "name": "Ann", "email": "ann@example.com" })))
                .expect_err(attack);
            match &err {
                PipelineError::PolicyFailed { plugin, code, error } => {
                    assert_eq!(plugin, &name);
                    assert_eq!(*code, "bad_output", "{attack}: {err}");
                    assert!(error.contains(expected), "{attack}: {error}");
                    assert!(err.to_string().contains(&format!("`{name}`")), "names the plugin: {err}");
                }
                other => panic!("{attack}: expected a plugin failure, got {other}"),
            }
            assert_eq!(org.counts().unwrap().customers, landed, "{attack}: nothing landed");
            let trace = &p.traces("acme", &name, None, 1).unwrap()[0];
            assert_eq!(trace.outcome, "error", "{attack}: {trace:?}");
            assert!(trace.error.as_deref().unwrap().contains(expected), "{attack}: {trace:?}");
            assert!(trace.error.as_deref().unwrap().contains(&format!("plugin `{name}`")), "{trace:?}");
            if by_runtime {
                assert!(metric(&name, "bad_output"), "{attack}: counted as bad_output");
            }

            // Failing open, the write lands as it was asked for, without the hostile patch.
            p.set_failure_mode("acme", &owner(), &name, FailureMode::Open).unwrap();
            let email = format!("{attack}@example.com");
            match write(&p, "acme", new_customer(json!({ "name": "Bob", "email": email }))) {
                Ok(out) => {
                    let Some(Entity::Customer(c)) = out.record else { panic!("a customer") };
                    assert_eq!(c.name.as_deref(), Some("Bob"), "{attack}");
                    assert!(c.attributes.is_empty(), "{attack}: {:?}", c.attributes);
                    assert!(out.warnings.iter().any(|w| w.plugin == name), "{attack}: the skip is a warning");
                }
                // A patch the runtime accepted but the record cannot take fails whatever the mode.
                Err(PipelineError::PolicyFailed { code: "bad_output", .. }) if !by_runtime => {}
                Err(e) => panic!("{attack} failing open: {e}"),
            }
            p.disable("acme", &owner(), &name).unwrap();
        }
    }

    /// A plugin that waits in the host (one heavy aggregate after another) never returns to wasm
    /// long enough for an epoch interrupt to matter: the host's own deadline check stops it.
    #[test]
    fn a_plugin_sleeping_in_host_calls_is_stopped_by_the_cpu_deadline() {
        let (_dir, p) = pipeline(settings());
        p.store().create_org("acme", "Acme").unwrap();
        let org = p.org("acme").unwrap();
        let actor = Actor { name: "test".into(), role: rapport::model::Role::Admin };
        let people: String = (0..2_000)
            .map(|n| {
                json!({"source": "shop", "external_id": format!("c-{n}"), "attributes": {"k": n % 50}}).to_string()
                    + "\n"
            })
            .collect();
        crate::import(&org, &actor, ImportKind::Customers, ImportFormat::Ndjson, std::io::Cursor::new(people)).unwrap();
        let orders: String = (0..4_000)
            .map(|n| {
                json!({"source": "shop", "external_id": format!("o-{n}"), "customer": {"source": "shop", "external_id": format!("c-{}", n % 2_000)},
                       "kind": "purchase", "occurred_at": 1_700_000_000_000i64 + n, "amount_minor": n, "currency": "USD"})
                .to_string()
                    + "\n"
            })
            .collect();
        crate::import(&org, &actor, ImportKind::Interactions, ImportFormat::Ndjson, std::io::Cursor::new(orders))
            .unwrap();
        install(&p, "acme", "sleeper", wasm::HOSTILE_POLICY, json!({ "attack": "host-sleep" }));

        let err = write(&p, "acme", new_customer(json!({ "name": "Ann" }))).unwrap_err();
        let PipelineError::PolicyFailed { plugin, code, error } = &err else { panic!("a plugin failure: {err}") };
        assert_eq!((plugin.as_str(), *code), ("sleeper", "cpu"), "{err}");
        assert!(error.starts_with("plugin `sleeper` ran past its CPU limit of 100 ms"), "{error}");
        assert_eq!(org.counts().unwrap().customers, 2_000, "nothing landed");
        let trace = &p.traces("acme", "sleeper", None, 1).unwrap()[0];
        assert_eq!(trace.outcome, "error");
        assert!(trace.error.as_deref().unwrap().contains("CPU limit of 100 ms"), "{trace:?}");
        assert!(metric("sleeper", "cpu"));
    }

    /// A component built against a contract version the host has no module for is refused at
    /// installation, naming the plugin and the version, and nothing is registered.
    #[test]
    fn a_component_of_an_unknown_contract_version_is_refused_at_install() {
        let (_dir, p) = pipeline(settings());
        p.store().create_org("acme", "Acme").unwrap();
        let bytes = std::fs::read(wasm::HOSTILE_OLD_CONTRACT).unwrap();
        let err = p.install("acme", &owner(), "ancient", &bytes, Some("0.0.9"), None, true).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("plugin `ancient` was refused"), "{message}");
        assert!(
            message
                .contains("is built against contract rapport:plugin@0.0.9, which this host does not run (it runs 0.1"),
            "{message}"
        );
        assert!(p.plugins("acme").unwrap().is_empty(), "nothing registered");
        assert!(p.org("acme").unwrap().audit(0, 100).unwrap().iter().all(|e| !e.action.starts_with("plugin.")));
    }
}
