//! The example plugins and templates do what their READMEs say, through the real runtime.

use rapport::fixture::Fixture;
use rapport::model::{Action, Decision, Denial, Operation, Report};
use rapport::plugins::{Meter, World};
use rapport::runner::Run;
use rapport_test_plugins as wasm;
use serde_json::{Value, json};

use crate::{create_customer, ctx, ctx_with, load, runtime};

#[test]
fn require_contact_denies_an_unreachable_customer_with_reason_and_field() {
    let rt = runtime(Meter::Epoch);
    let policy = load(&rt, wasm::REQUIRE_CONTACT);
    let decision = policy.before(&ctx(World::Policy, json!({})), &create_customer(json!({ "name": "Ann" }))).unwrap();
    assert_eq!(
        decision.value,
        Decision::Deny(Denial {
            reason: "a customer needs an email or a phone number so that they can be reached".into(),
            field: Some("email".into()),
        })
    );
    let bad = policy.before(&ctx(World::Policy, json!({})), &create_customer(json!({ "email": "ann.example.com" })));
    assert!(matches!(bad.unwrap().value, Decision::Deny(Denial { field: Some(f), .. }) if f == "email"));
}

#[test]
fn require_contact_patches_warns_and_tags() {
    let rt = runtime(Meter::Epoch);
    let policy = load(&rt, wasm::REQUIRE_CONTACT);
    let ctx = ctx(World::Policy, json!({}));
    let patched =
        policy.before(&ctx, &create_customer(json!({ "name": "Ann", "email": " Ann@Example.COM " }))).unwrap();
    let Decision::Patch { patches } = patched.value else { panic!("expected a patch, got {:?}", patched.value) };
    assert_eq!((patches[0].field.as_str(), &patches[0].value), ("email", &json!("ann@example.com")));

    let warned = policy.before(&ctx, &create_customer(json!({ "phone": "+6621234567" }))).unwrap();
    assert!(matches!(warned.value, Decision::Warn { .. }));

    let mut created = create_customer(json!({ "id": 42, "name": "Ann", "email": "ann@example.com" }));
    let actions = policy.after(&ctx, &created).unwrap().value;
    assert_eq!(actions, vec![Action::AddTag { customer: 42, tag: "new".into() }]);
    created.operation = Operation::Update;
    assert!(policy.after(&ctx, &created).unwrap().value.is_empty(), "only new customers are tagged");

    // Config changes behaviour, and a bad config is the plugin's clear error.
    let quiet = crate::ctx(World::Policy, json!({ "welcome_tag": "" }));
    created.operation = Operation::Create;
    assert!(policy.after(&quiet, &created).unwrap().value.is_empty());
    let broken = crate::ctx(World::Policy, json!({ "welcome_tag": 7 }));
    let err = policy.after(&broken, &created).unwrap_err();
    assert_eq!(err.failure.code(), "plugin_error");
    assert!(err.to_string().contains("invalid configuration"), "{err}");
}

/// Ten customers who spent 1..=10 × 100.00 on purchases, plus one who never bought.
fn spenders() -> Fixture {
    let mut customers = Vec::new();
    let mut interactions = Vec::new();
    for id in 1..=11u64 {
        customers
            .push(json!({ "id": id, "name": format!("c{id}"), "branch": if id % 2 == 0 { "bkk" } else { "cnx" } }));
        if id <= 10 {
            // Two purchases on different days: 50 × id each.
            for (n, day) in [(0, 10), (1, 20)] {
                interactions.push(json!({
                    "id": id * 10 + n, "customer": id, "kind": "purchase", "channel": "web", "source": "shop",
                    "occurred_at": day * 86_400_000i64, "amount": { "amount_minor": 5_000 * id as i64, "currency": "THB" }
                }));
            }
        }
        interactions.push(json!({ "id": 900 + id, "customer": id, "kind": "call", "occurred_at": 1 }));
    }
    Fixture::parse(&json!({ "customers": customers, "interactions": interactions }).to_string()).unwrap()
}

#[test]
fn spend_rank_fits_deciles_over_the_organization_and_scores_in_batches() {
    let rt = runtime(Meter::Fuel);
    let run = Run {
        plugin: load(&rt, wasm::SPEND_RANK),
        store: spenders().store().unwrap(),
        config: json!({ "explain": true }),
        limits: None,
    };
    let out = run.run(&json!({ "now": 30 * 86_400_000i64, "batch_size": 4 })).unwrap();
    let exports: Vec<&str> = out.calls.iter().map(|c| c.export).collect();
    assert_eq!(exports, ["describe", "fit", "score", "score", "score"], "11 customers in batches of 4");
    assert!(out.total.fuel.unwrap() > 0);

    let customers = out.output["customers"].as_array().unwrap();
    assert_eq!(customers.len(), 11);
    let of = |id: u64| customers.iter().find(|c| c["customer"] == id).unwrap();
    assert_eq!(of(10)["scores"]["spend"], json!(1000.0), "2 × 50 000 satang = 1 000.00");
    assert_eq!(of(10)["scores"]["recency_days"], json!(10.0));
    assert_eq!(of(10)["labels"]["tier"], "gold");
    assert_eq!(of(10)["explanations"]["rank"], "spent 1000.00: decile 10 of 10");
    assert_eq!(of(1)["labels"]["tier"], "bronze");
    assert!(of(11)["scores"]["recency_days"].is_null(), "never bought: no recency (NaN → null)");
    let ranks: Vec<f64> = (1..=11).map(|id| of(id)["scores"]["rank"].as_f64().unwrap()).collect();
    assert!(ranks.windows(2).take(9).all(|w| w[0] <= w[1]), "rank grows with spend: {ranks:?}");
}

#[test]
fn features_follow_the_contract() {
    use rapport::model::{Feature, InteractionKind, Measure};
    let store = spenders().store().unwrap();
    let feature =
        |measure, kinds: Vec<InteractionKind>| Feature { name: "f".into(), measure, kinds, since: None, until: None };
    let value = |f: &Feature| store.features(&[3], std::slice::from_ref(f), 0).unwrap().columns[0].values[0];
    assert_eq!(value(&feature(Measure::Count, vec![])), 3.0, "every kind");
    assert_eq!(value(&feature(Measure::Count, vec![InteractionKind::Purchase])), 2.0);
    assert_eq!(value(&feature(Measure::DistinctDays, vec![InteractionKind::Purchase])), 2.0);
    assert_eq!(value(&feature(Measure::SumAmount, vec![])), 30_000.0);
    assert_eq!(value(&feature(Measure::FirstAt, vec![InteractionKind::Purchase])), 10.0 * 86_400_000.0);
    assert_eq!(value(&feature(Measure::LastAt, vec![])), 20.0 * 86_400_000.0);
    let until = Feature { until: Some(15 * 86_400_000), ..feature(Measure::Count, vec![InteractionKind::Purchase]) };
    assert_eq!(value(&until), 1.0);
    let nothing = store.features(&[11], &[feature(Measure::LastAt, vec![InteractionKind::Purchase])], 0).unwrap();
    assert!(nothing.columns[0].values[0].is_nan());
}

#[test]
fn customers_by_branch_pages_through_the_whole_store() {
    let customers: Vec<Value> = (1..=1234u64)
        .map(|id| {
            let branch = ["bkk", "cnx", "hkt"][id as usize % 3];
            let tags: Vec<&str> = if id % 2 == 0 { vec!["vip"] } else { vec![] };
            json!({ "id": id, "branch": branch, "tags": tags })
        })
        .collect();
    let fixture = Fixture::parse(&json!({ "customers": customers }).to_string()).unwrap();
    let rt = runtime(Meter::Epoch);
    let reporter = load(&rt, wasm::CUSTOMERS_BY_BRANCH);
    let ctx = ctx_with(fixture, World::Reporter, json!({}));

    let report: Report = reporter.run_report(&ctx, &json!({})).unwrap().value;
    let rows: Vec<(String, i64)> = report
        .rows
        .iter()
        .map(|r| {
            (
                serde_json::to_value(&r[0]).unwrap().as_str().unwrap().to_owned(),
                serde_json::to_value(&r[1]).unwrap().as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("bkk".into(), 411), ("cnx".into(), 412), ("hkt".into(), 411)]);
    assert_eq!(report.chart.unwrap().x, "branch");

    let vip: Report = reporter.run_report(&ctx, &json!({ "tag": "vip" })).unwrap().value;
    let total: i64 = vip.rows.iter().map(|r| serde_json::to_value(&r[1]).unwrap().as_i64().unwrap()).sum();
    assert_eq!(total, 617);

    let err = reporter.run_report(&ctx, &json!({ "tag": 3 })).unwrap_err();
    assert!(err.to_string().contains("invalid params") && err.to_string().contains("(field `params`)"), "{err}");
}

#[test]
fn templates_build_and_run() {
    let rt = runtime(Meter::Fuel);
    let policy = load(&rt, wasm::TEMPLATE_POLICY_TEMPLATE);
    assert_eq!(
        policy.before(&ctx(World::Policy, json!({})), &create_customer(json!({}))).unwrap().value,
        Decision::Allow
    );

    let run = Run {
        plugin: load(&rt, wasm::TEMPLATE_SCORER_TEMPLATE),
        store: spenders().store().unwrap(),
        config: json!({}),
        limits: None,
    };
    let out = run.run(&json!({ "customers": [3, 11] })).unwrap();
    assert_eq!(out.output["customers"][0]["scores"]["purchases"], json!(2.0));
    assert_eq!(out.output["customers"][1]["scores"]["purchases"], json!(0.0));

    let reporter = load(&rt, wasm::TEMPLATE_REPORTER_TEMPLATE);
    let report = reporter.run_report(&ctx_with(spenders(), World::Reporter, json!({})), &json!({})).unwrap().value;
    assert_eq!(serde_json::to_value(&report.rows).unwrap(), json!([[11]]));
}
