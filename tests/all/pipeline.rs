//! The write pipeline end to end, with real plugins built from source: policies that deny,
//! patch, warn and ask for follow-up actions; failures closed and open; loops of actions; config
//! schemas; versions, rollback, dry-runs and shadows; rescoring and resumable jobs; reports.

use std::collections::HashSet;
use std::io::Cursor;

use rapport::model::{Actor, Customer, Entity, Interaction, InteractionKind, Money, Origin};
use rapport::pipeline::{Format, Pipeline, PipelineError, Settings, Write, render};
use rapport::pipeline::{ImportFormat, ImportKind};
use rapport::plugins::Meter;
use rapport::store::{FailureMode, Store};
use rapport_test_plugins as built;
use serde_json::{Value, json};

fn owner() -> Actor {
    Actor { name: "ops".into(), role: rapport::model::Role::Owner }
}

fn open(dir: &std::path::Path, settings: Settings) -> Pipeline {
    let store = Store::open(dir).unwrap();
    Pipeline::new(store, super::runtime(Meter::Epoch), settings)
}

fn setup(settings: Settings) -> (tempfile::TempDir, Pipeline) {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), settings);
    p.store().create_org("acme", "Acme Direct").unwrap();
    (dir, p)
}

fn install(p: &Pipeline, name: &str, path: &str, config: Value) {
    let bytes = std::fs::read(path).unwrap();
    p.install("acme", &owner(), name, &bytes, Some("1.0.0"), Some(config), true).unwrap();
    p.enable("acme", &owner(), name).unwrap();
}

fn customer(v: Value) -> Customer {
    serde_json::from_value(v).unwrap()
}

fn create(p: &Pipeline, v: Value) -> Result<rapport::pipeline::Outcome, PipelineError> {
    p.write("acme", &owner(), Origin::Api, Write::CreateCustomer(customer(v)))
}

fn stored(outcome: &rapport::pipeline::Outcome) -> Customer {
    match &outcome.record {
        Some(Entity::Customer(c)) => c.clone(),
        other => panic!("expected a customer, got {other:?}"),
    }
}

fn audit_actions(p: &Pipeline) -> Vec<String> {
    p.org("acme").unwrap().audit(0, 1000).unwrap().into_iter().map(|e| e.action).collect()
}

#[test]
fn a_deny_stops_the_write_and_nothing_lands() {
    let (_dir, p) = setup(Settings::default());
    install(&p, "contact", built::REQUIRE_CONTACT, json!({}));
    let err = create(&p, json!({ "name": "No Way To Reach" })).unwrap_err();
    match &err {
        PipelineError::Denied { plugin, reason, field } => {
            assert_eq!(plugin, "contact");
            assert!(reason.contains("email or a phone"), "{reason}");
            assert_eq!(field.as_deref(), Some("email"));
        }
        other => panic!("expected a denial, got {other}"),
    }
    let org = p.org("acme").unwrap();
    assert_eq!(org.counts().unwrap().customers, 0);
    assert!(!audit_actions(&p).contains(&"customer.create".to_owned()));
    // The decision is in the plugin's execution trace.
    let traces = p.traces("acme", "contact", None, 10).unwrap();
    assert_eq!(traces[0].outcome, "deny");
    assert!(traces[0].summary.as_deref().unwrap().contains("field `email`"));
}

#[test]
fn a_patch_lands_patched_and_a_warning_is_returned() {
    let (_dir, p) = setup(Settings::default());
    install(&p, "contact", built::REQUIRE_CONTACT, json!({ "welcome_tag": "" }));
    let out = create(&p, json!({ "name": "Somchai", "email": "Somchai@Example.COM" })).unwrap();
    assert_eq!(stored(&out).email.as_deref(), Some("somchai@example.com"));
    let entry =
        p.org("acme").unwrap().audit(0, 100).unwrap().into_iter().find(|e| e.action == "customer.create").unwrap();
    assert_eq!(entry.detail["decisions"][0]["decision"]["decision"], "patch", "{}", entry.detail);

    let out = create(&p, json!({ "email": "nameless@example.com" })).unwrap();
    assert_eq!(out.warnings.len(), 1);
    assert_eq!(out.warnings[0].plugin, "contact");
    assert!(out.warnings[0].message.contains("no name"));
    assert!(p.org("acme").unwrap().customer(stored(&out).id).unwrap().is_some(), "a warning lets the write land");
}

#[test]
fn follow_up_actions_land_once() {
    let (_dir, p) = setup(Settings::default());
    let config = json!({ "welcome_tag": "new", "welcome_call_days": 3, "welcome_template": "welcome" });
    install(&p, "contact", built::REQUIRE_CONTACT, config);
    let started = rapport::store::now_ms();
    let out = create(&p, json!({ "name": "Suda", "email": "suda@example.com" })).unwrap();
    let id = stored(&out).id;
    let results: Vec<_> = out.actions.iter().map(|a| (a.depth, a.result)).collect();
    assert_eq!(results, [(1, "applied"), (1, "applied"), (1, "applied")], "{:?}", out.actions);

    let org = p.org("acme").unwrap();
    assert_eq!(org.customer(id).unwrap().unwrap().tags, ["new"]);
    let (timeline, _) = org.timeline(id, None, 10).unwrap();
    assert_eq!(timeline.len(), 1);
    let task = &timeline[0];
    assert_eq!(task.kind, InteractionKind::Ticket);
    assert_eq!(task.subject.as_deref(), Some("Welcome call to Suda"));
    let due = task.ticket.as_ref().unwrap().due_at.unwrap();
    assert_eq!(due - task.occurred_at, 3 * 86_400_000, "due three days after the change");
    // Opened as of the change: after the write began, not after the customer was stored.
    assert!((started..=stored(&out).created_at).contains(&task.occurred_at), "opened as of the change");
    let outbox = org.outbox(10).unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!((outbox[0].customer, outbox[0].template.as_str()), (id, "welcome"));

    // Retrying an action changes nothing: the message's key is taken, the tag is there.
    let key = "retry-key";
    let queue = || org.write(|tx| tx.queue_message(&owner(), key, id, "email", "welcome", &json!({}))).unwrap();
    assert!(queue());
    assert!(!queue(), "a second queue with the same key is a no-op");
    assert_eq!(org.outbox(10).unwrap().len(), 2);
    // An update does not re-run the create's follow-ups: still one task, one tag.
    let mut c = org.customer(id).unwrap().unwrap();
    c.name = Some("Suda Srisuk".into());
    p.write("acme", &owner(), Origin::Api, Write::UpdateCustomer(c)).unwrap();
    assert_eq!(org.timeline(id, None, 10).unwrap().0.len(), 1);
    assert_eq!(org.customer(id).unwrap().unwrap().tags, ["new"]);
}

#[test]
fn a_trap_fails_closed_by_default_and_open_when_configured() {
    let (_dir, p) = setup(Settings::default());
    install(&p, "hostile", built::HOSTILE_POLICY, json!({ "attack": "panic" }));
    let err = create(&p, json!({ "name": "A", "email": "a@example.com" })).unwrap_err();
    match &err {
        PipelineError::PolicyFailed { plugin, code, error } => {
            assert_eq!((plugin.as_str(), *code), ("hostile", "trap"));
            assert!(error.contains("panicked on purpose"), "{error}");
        }
        other => panic!("expected a failure, got {other}"),
    }
    assert_eq!(p.org("acme").unwrap().counts().unwrap().customers, 0, "failed closed: nothing landed");

    p.set_failure_mode("acme", &owner(), "hostile", FailureMode::Open).unwrap();
    let out = create(&p, json!({ "name": "B", "email": "b@example.com" })).unwrap();
    assert!(out.warnings[0].message.contains("fail-open"), "{:?}", out.warnings);
    assert_eq!(p.org("acme").unwrap().counts().unwrap().customers, 1);
    let errors = p.traces("acme", "hostile", None, 10).unwrap();
    assert_eq!(errors.iter().filter(|t| t.outcome == "error").count(), 2, "both failures are traced");
}

#[test]
fn a_plugin_that_keeps_failing_is_disabled() {
    let (_dir, p) = setup(Settings { failure_threshold: 3, ..Settings::default() });
    install(&p, "hostile", built::HOSTILE_POLICY, json!({ "attack": "loop" }));
    for i in 0..3 {
        let err = create(&p, json!({ "email": format!("x{i}@example.com") })).unwrap_err();
        assert!(matches!(err, PipelineError::PolicyFailed { code: "cpu", .. }), "{err}");
    }
    let row = p.plugin("acme", "hostile").unwrap();
    assert!(!row.enabled);
    assert!(row.disabled_reason.as_deref().unwrap().contains("after 3 failures"), "{row:?}");
    assert!(audit_actions(&p).contains(&"plugin.auto_disable".to_owned()));
    create(&p, json!({ "email": "y@example.com" })).expect("the disabled plugin no longer blocks writes");
}

#[test]
fn a_looping_action_chain_ends_at_the_depth_limit() {
    let (_dir, p) = setup(Settings::default());
    install(&p, "looper", built::HOSTILE_POLICY, json!({ "attack": "none", "after": "action-loop" }));
    let out = create(&p, json!({ "email": "loop@example.com" })).unwrap();
    let failed: Vec<_> = out.actions.iter().filter(|a| a.result == "failed").collect();
    assert_eq!(failed.len(), 1, "{:?}", out.actions);
    let error = failed[0].error.as_deref().unwrap();
    assert!(error.contains("nested deeper than 8") && error.contains("looper"), "{error}");
    assert_eq!(failed[0].depth, 9);
    let tags = p.org("acme").unwrap().customer(stored(&out).id).unwrap().unwrap().tags;
    assert_eq!(tags.len(), 8, "depths 1 to 8 landed: {tags:?}");
}

#[test]
fn a_bad_config_is_refused_with_the_path_of_the_field() {
    let (_dir, p) = setup(Settings::default());
    install(&p, "contact", built::REQUIRE_CONTACT, json!({ "welcome_tag": "vip" }));
    let err = p.configure("acme", &owner(), "contact", json!({ "welcome_tag": 5 })).unwrap_err();
    match &err {
        PipelineError::Config(c) => assert_eq!(c.path, "/welcome_tag", "{c}"),
        other => panic!("expected a config error, got {other}"),
    }
    assert_eq!(err.field(), Some("/welcome_tag"));
    let err = p.configure("acme", &owner(), "contact", json!({ "welcome_call_days": 1000 })).unwrap_err();
    assert!(matches!(&err, PipelineError::Config(c) if c.path == "/welcome_call_days"), "{err}");
    let err = p.configure("acme", &owner(), "contact", json!({ "wecome_tag": "typo" })).unwrap_err();
    assert!(err.to_string().contains("wecome_tag"), "{err}");
    let err = p.configure("acme", &owner(), "contact", json!(["not", "an", "object"])).unwrap_err();
    assert!(err.to_string().contains("JSON object"), "{err}");
    assert_eq!(p.plugin("acme", "contact").unwrap().config, json!({ "welcome_tag": "vip" }), "the old config stays");

    // A new version with a config its schema refuses is not installed.
    let bytes = std::fs::read(built::REQUIRE_CONTACT).unwrap();
    let err =
        p.install("acme", &owner(), "contact", &bytes, None, Some(json!({ "welcome_tag": [] })), true).unwrap_err();
    assert!(matches!(err, PipelineError::Config(_)), "{err}");
    assert_eq!(p.versions("acme", "contact").unwrap().len(), 1);
}

#[test]
fn rollback_makes_the_earlier_version_active_again() {
    let (_dir, p) = setup(Settings::default());
    install(&p, "contact", built::REQUIRE_CONTACT, json!({}));
    let allow_all = std::fs::read(built::TEMPLATE_POLICY_TEMPLATE).unwrap();
    p.install("acme", &owner(), "contact", &allow_all, Some("2.0.0"), None, true).unwrap();
    create(&p, json!({ "name": "Unreachable" })).expect("version 2 allows everything");

    let row = p.rollback("acme", &owner(), "contact", None).unwrap();
    assert_eq!(row.active_version, 1);
    let err = create(&p, json!({ "name": "Unreachable Again" })).unwrap_err();
    assert!(matches!(err, PipelineError::Denied { .. }), "version 1 is back: {err}");
    let versions = p.versions("acme", "contact").unwrap();
    let listed: Vec<_> =
        versions.iter().map(|v| (v.version.version, v.active, v.version.author_version.clone())).collect();
    assert_eq!(listed, [(2, false, Some("2.0.0".into())), (1, true, Some("1.0.0".into()))]);
    assert!(audit_actions(&p).contains(&"plugin.rollback".to_owned()));
}

#[test]
fn a_dry_run_and_a_shadow_compare_a_candidate_with_the_active_version() {
    let (_dir, p) = setup(Settings::default());
    install(&p, "contact", built::REQUIRE_CONTACT, json!({ "welcome_tag": "" }));
    create(&p, json!({ "name": "Patched", "email": "UPPER@example.com" })).unwrap();
    create(&p, json!({ "email": "nameless@example.com" })).unwrap();
    create(&p, json!({ "name": "Fine", "email": "fine@example.com" })).unwrap();

    // Version 2 (allows everything) waits as a candidate.
    let allow_all = std::fs::read(built::TEMPLATE_POLICY_TEMPLATE).unwrap();
    let row = p.install("acme", &owner(), "contact", &allow_all, None, None, false).unwrap();
    assert_eq!(row.active_version, 1);
    let run = p.dry_run("acme", "contact", 2, 100).unwrap();
    // The landed changes, as stored: the patched email is lower-case now, so only the nameless
    // customer's warning separates the versions.
    assert_eq!((run.compared, run.agreed, run.differed), (3, 2, 1), "{run:?}");
    assert_eq!(run.differences[0]["active"]["decision"], "warn");
    assert_eq!(run.differences[0]["candidate"]["decision"], "allow");

    p.set_shadow("acme", &owner(), "contact", Some(2)).unwrap();
    let out = create(&p, json!({ "name": "Live", "email": "LIVE@example.com" })).unwrap();
    assert_eq!(stored(&out).email.as_deref(), Some("live@example.com"), "the active version still decides");
    create(&p, json!({ "name": "Same", "email": "same@example.com" })).unwrap();
    let shadow = p.shadow_report("acme", "contact").unwrap();
    assert_eq!((shadow.shadow_version, shadow.runs, shadow.disagreements), (Some(2), 2, 1), "{shadow:?}");
}

fn import_reference(p: &Pipeline) {
    let customers: String = (1..=5)
        .map(|i| {
            json!({"source": "shop", "external_id": format!("c-{i}"), "name": format!("Customer {i}"),
                   "email": format!("c{i}@example.com"), "branch": if i % 2 == 0 { "BKK" } else { "CNX" }})
            .to_string()
                + "\n"
        })
        .collect();
    let report = p
        .import("acme", &owner(), ImportKind::Customers, ImportFormat::Ndjson, Cursor::new(customers), |_| {}, false)
        .unwrap();
    assert_eq!(report.accepted, 5, "{report:?}");
    let orders: String = (1..=5)
        .flat_map(|i| (0..i).map(move |k| (i, k)))
        .map(|(i, k)| {
            json!({"source": "shop", "external_id": format!("o-{i}-{k}"), "customer": {"source": "shop", "external_id": format!("c-{i}")},
                   "kind": "purchase", "channel": "web", "occurred_at": 1_700_000_000_000i64 + k * 86_400_000,
                   "amount_minor": 1000 * i, "currency": "USD"})
            .to_string()
                + "\n"
        })
        .collect();
    p.import("acme", &owner(), ImportKind::Interactions, ImportFormat::Ndjson, Cursor::new(orders), |_| {}, false)
        .unwrap();
}

#[test]
fn a_rescore_job_resumes_after_a_restart_and_writes_rescore_their_customer() {
    let dir = tempfile::tempdir().unwrap();
    let settings = || Settings { score_batch: 2, ..Settings::default() };
    let job = {
        let p = open(dir.path(), settings());
        p.store().create_org("acme", "Acme Direct").unwrap();
        install(&p, "rank", built::SPEND_RANK, json!({}));
        import_reference(&p);
        let job = p.create_rescore_job("acme", &owner()).unwrap();
        assert_eq!(job.total, 5);
        // One batch, then the process "dies": progress is what the last batch committed.
        let partial = p.run_job("acme", job.id, Some(1)).unwrap();
        assert_eq!((partial.state.as_str(), partial.done), ("running", 2));
        job
    };
    let p = open(dir.path(), settings());
    let resumed = p.resume_jobs().unwrap();
    assert_eq!(resumed.len(), 1);
    assert_eq!((resumed[0].id, resumed[0].state.as_str(), resumed[0].done), (job.id, "done", 5));
    let org = p.org("acme").unwrap();
    let c5 = org.find_customer("shop", "c-5").unwrap().unwrap().id;
    let profile = org.profile(c5, 10).unwrap().unwrap();
    assert_eq!(profile.scores["rank.spend"], json!(250.0), "5 purchases of 50.00: {:?}", profile.scores);

    // A new purchase rescored at once, with the job's fitted model.
    let purchase = Interaction {
        id: 0,
        customer: c5,
        kind: InteractionKind::Purchase,
        channel: "store".into(),
        source: "pos".into(),
        external_id: Some("r-1".into()),
        occurred_at: 1_700_500_000_000,
        amount: Some(Money { amount_minor: 7000, currency: "USD".into() }),
        subject: None,
        body: None,
        attributes: Default::default(),
        ticket: None,
    };
    let out = p.write("acme", &owner(), Origin::Api, Write::AddInteraction(purchase)).unwrap();
    assert_eq!(out.rescored, [c5]);
    assert_eq!(org.profile(c5, 10).unwrap().unwrap().scores["rank.spend"], json!(320.0));
}

#[test]
fn import_runs_policies_row_by_row_and_an_owner_may_bypass_them() {
    let (_dir, p) = setup(Settings::default());
    install(&p, "contact", built::REQUIRE_CONTACT, json!({ "welcome_tag": "imported" }));
    let body = [
        json!({"source": "shop", "external_id": "c-1", "name": "Good", "email": "good@example.com"}),
        json!({"source": "shop", "external_id": "c-2", "name": "Unreachable"}),
        json!({"source": "shop", "external_id": "c-3", "name": "Loud", "email": "LOUD@Example.com"}),
        json!({"source": "shop", "external_id": "c-4", "email": "nameless@example.com"}),
    ]
    .iter()
    .map(|v| v.to_string() + "\n")
    .collect::<String>();
    let import = |actor: &Actor, bypass| {
        p.import("acme", actor, ImportKind::Customers, ImportFormat::Ndjson, Cursor::new(body.clone()), |_| {}, bypass)
    };
    let report = import(&owner(), false).unwrap();
    assert_eq!(report.accepted, 3);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].line, 2);
    assert!(report.rejected[0].error.contains("denied by policy `contact`"), "{:?}", report.rejected);
    assert_eq!(report.warnings.len(), 1);
    assert_eq!(report.warnings[0].line, 4);
    let org = p.org("acme").unwrap();
    assert!(org.find_customer("shop", "c-2").unwrap().is_none(), "the denied row left nothing");
    let loud = org.find_customer("shop", "c-3").unwrap().unwrap();
    assert_eq!(loud.email.as_deref(), Some("loud@example.com"), "patched on import too");
    assert_eq!(loud.tags, ["imported"], "after hooks ran for imported rows");

    let agent = Actor { name: "temp".into(), role: rapport::model::Role::Agent };
    let err = import(&agent, true).unwrap_err();
    assert!(err.to_string().contains("only an owner"), "{err}");
    let report = import(&owner(), true).unwrap();
    assert!(report.rejected.is_empty(), "{report:?}");
    assert!(org.find_customer("shop", "c-2").unwrap().is_some());
    assert!(audit_actions(&p).contains(&"import.bypass_policies".to_owned()));
}

#[test]
fn a_report_renders_as_json_csv_and_html() {
    let (_dir, p) = setup(Settings::default());
    install(&p, "by-branch", built::CUSTOMERS_BY_BRANCH, json!({}));
    import_reference(&p);
    let report = p.run_report("acme", "by-branch", &json!({})).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["columns"], json!([{"name": "branch", "type": "text"}, {"name": "customers", "type": "integer"}]));
    assert_eq!(json["rows"], json!([["BKK", 2], ["CNX", 3]]));
    let (ty, csv) = render(&report, Format::Csv);
    assert!(ty.starts_with("text/csv"));
    assert_eq!(csv, "branch,customers\nBKK,2\nCNX,3\n");
    let (ty, html) = render(&report, Format::Html);
    assert!(ty.starts_with("text/html"));
    assert!(html.contains("<svg") && html.contains("<td>BKK</td>"), "{html}");
    assert!(!html.contains("<script"), "no scripts");
    assert_eq!(html.matches("http").count(), 1, "no external resources, only the SVG namespace: {html}");
    assert!(html.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    let err = p.run_report("acme", "nope", &json!({})).unwrap_err();
    assert!(err.to_string().contains("no enabled reporter plugin `nope`"), "{err}");
}

#[test]
fn erasing_a_customer_erases_the_traces_about_them() {
    let (_dir, p) = setup(Settings::default());
    install(&p, "contact", built::REQUIRE_CONTACT, json!({}));
    let out = create(&p, json!({ "name": "Private Person", "email": "PRIVATE@example.com" })).unwrap();
    let id = stored(&out).id;
    let org = p.org("acme").unwrap();
    let mine = p.traces("acme", "contact", None, 100).unwrap().into_iter().filter(|t| t.customer == Some(id)).count();
    assert!(mine > 0, "calls about the customer are traced");
    // Another write leaves after-hook traces about the customer in the buffer.
    let mut c = org.customer(id).unwrap().unwrap();
    c.name = Some("Still Private".into());
    p.write("acme", &owner(), Origin::Api, Write::UpdateCustomer(c)).unwrap();
    p.write("acme", &owner(), Origin::Api, Write::EraseCustomer(id)).unwrap();
    let left: Vec<_> = p.traces("acme", "contact", None, 100).unwrap();
    assert!(left.iter().all(|t| t.customer != Some(id) || (t.logs == json!([]) && t.summary.is_none())), "{left:?}");
    assert!(
        org.recent_changes(100).unwrap().iter().all(|c| c.after.as_ref().and_then(Entity::customer_id) != Some(id))
    );
}

/// A feature's meaning as the contract states it (`measure` in the WIT), read over a customer's
/// timeline: the oracle the store's one-query-per-batch SQL must agree with.
fn feature_by_the_contract(f: &rapport::model::Feature, timeline: &[Interaction]) -> f64 {
    use rapport::model::Measure;
    const DAY_MS: i64 = 86_400_000;
    let matching = timeline.iter().filter(|i| {
        (f.kinds.is_empty() || f.kinds.contains(&i.kind))
            && f.since.is_none_or(|s| i.occurred_at >= s)
            && f.until.is_none_or(|u| i.occurred_at <= u)
    });
    match f.measure {
        Measure::Count => matching.count() as f64,
        Measure::DistinctDays => {
            matching.map(|i| i.occurred_at.div_euclid(DAY_MS)).collect::<HashSet<_>>().len() as f64
        }
        Measure::SumAmount => matching.filter_map(|i| i.amount.as_ref()).map(|m| m.amount_minor as f64).sum(),
        Measure::FirstAt => matching.map(|i| i.occurred_at).min().map_or(f64::NAN, |t| t as f64),
        Measure::LastAt => matching.map(|i| i.occurred_at).max().map_or(f64::NAN, |t| t as f64),
    }
}

#[test]
fn features_computed_in_sql_mean_what_the_contract_says() {
    use rapport::model::{Feature, Measure};
    let (_dir, p) = setup(Settings::default());
    import_reference(&p);
    let org = p.org("acme").unwrap();
    let calls: String = [(1, -86_400_001i64), (1, 5), (2, 86_400_000 * 3 + 1)]
        .iter()
        .enumerate()
        .map(|(n, (who, at))| {
            json!({"source": "phone", "external_id": format!("k-{n}"), "customer": {"source": "shop", "external_id": format!("c-{who}")},
                   "kind": "call", "channel": "phone", "occurred_at": at})
            .to_string()
                + "\n"
        })
        .collect();
    crate::import(&org, &owner(), ImportKind::Interactions, ImportFormat::Ndjson, Cursor::new(calls)).unwrap();
    let mut features = Vec::new();
    for measure in [Measure::Count, Measure::DistinctDays, Measure::SumAmount, Measure::FirstAt, Measure::LastAt] {
        for (kinds, since, until) in [
            (vec![], None, None),
            (vec![InteractionKind::Call], None, None),
            (vec![InteractionKind::Purchase], Some(1_700_000_000_000), Some(1_700_000_000_000 + 2 * 86_400_000)),
        ] {
            features.push(Feature { name: format!("f{}", features.len()), measure, kinds, since, until });
        }
    }
    let ids = org.scorable_ids(0, 100).unwrap();
    let batch = org.features(&ids, &features, 0).unwrap();
    for (f, column) in features.iter().zip(&batch.columns) {
        for (id, got) in ids.iter().zip(&column.values) {
            let timeline = org.timeline(*id, None, 500).unwrap().0;
            let want = feature_by_the_contract(f, &timeline);
            assert!(want == *got || (want.is_nan() && got.is_nan()), "{f:?} of customer {id}: want {want}, got {got}");
        }
    }
}

#[test]
fn a_merge_goes_through_the_policies() {
    let (_dir, p) = setup(Settings::default());
    install(&p, "contact", built::REQUIRE_CONTACT, json!({ "welcome_tag": "" }));
    let a = stored(&create(&p, json!({ "name": "Somchai", "email": "somchai@example.com" })).unwrap()).id;
    let b = stored(&create(&p, json!({ "phone": "+66812345678", "tags": ["line"] })).unwrap()).id;
    install(&p, "freeze", built::HOSTILE_POLICY, json!({ "attack": "error" }));
    let merge = || p.write("acme", &owner(), Origin::Merge, Write::MergeCustomers { keep: a, remove: b });
    let err = merge().unwrap_err();
    assert!(matches!(err, PipelineError::PolicyFailed { ref plugin, .. } if plugin == "freeze"), "{err}");
    let org = p.org("acme").unwrap();
    assert!(org.customer(b).unwrap().is_some(), "a refused merge leaves both customers");

    p.disable("acme", &owner(), "freeze").unwrap();
    let out = merge().unwrap();
    let merged = stored(&out);
    assert_eq!(
        (merged.id, merged.phone.as_deref(), merged.tags.clone()),
        (a, Some("+66812345678"), vec!["line".to_owned()])
    );
    assert!(org.customer(b).unwrap().is_none());
    let actions = audit_actions(&p);
    assert!(actions.contains(&"merge".to_owned()) && actions.contains(&"policy.decisions".to_owned()), "{actions:?}");
}

#[test]
fn aggregations_group_and_summarize_on_the_host() {
    use rapport::model::{AggregateOp, AggregateQuery, Aggregation};
    let (_dir, p) = setup(Settings::default());
    import_reference(&p);
    let org = p.org("acme").unwrap();
    let of = |op, field: &str| Aggregation { op, field: Some(field.into()) };
    let query = AggregateQuery {
        filter: String::new(),
        group_by: vec!["branch".into()],
        aggregations: vec![
            Aggregation { op: AggregateOp::Count, field: None },
            of(AggregateOp::Sum, "purchases.total_minor"),
            of(AggregateOp::P50, "purchases.total_minor"),
            of(AggregateOp::Max, "purchases.count"),
        ],
        limit: 0,
    };
    let r = org.aggregate(&query).unwrap();
    // Customer i bought i times for 10.00 x i: totals 10, 40, 90, 160, 250 (x100 minor units).
    assert_eq!(r.keys[0].values, [Some("BKK".to_owned()), Some("CNX".to_owned())]);
    assert_eq!(r.counts, [2, 3]);
    let column = |k: usize| r.values[k].values.clone();
    assert_eq!(column(0), [2.0, 3.0]);
    assert_eq!(column(1), [20_000.0, 35_000.0]);
    assert_eq!(column(2), [4_000.0, 9_000.0], "nearest-rank medians");
    assert_eq!(column(3), [4.0, 5.0]);
    assert_eq!(r.values[1].name, "sum(purchases.total_minor)");

    let big = AggregateQuery { filter: "purchases.count >= 3".into(), limit: 1, ..query.clone() };
    let r = org.aggregate(&big).unwrap();
    assert_eq!((r.counts.clone(), r.truncated), (vec![1], true), "BKK has one big buyer; CNX is cut by the limit");

    let bad = |q: AggregateQuery| org.aggregate(&q).unwrap_err().to_string();
    let unknown = AggregateQuery { group_by: vec!["colour".into()], ..query.clone() };
    assert!(bad(unknown).contains("unknown field `colour`"));
    let text = AggregateQuery { aggregations: vec![of(AggregateOp::Sum, "email")], ..query.clone() };
    assert!(bad(text).contains("`email` is text"));

    // A reporter built on it, through the pipeline.
    install(&p, "standard", built::BRANCH_STANDARD, json!({}));
    let report = p.run_report("acme", "standard", &json!({})).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["rows"], json!([["BKK", 2, 0, 0.0, 4000], ["CNX", 3, 0, 0.0, 9000]]));
    let err = p.run_report("acme", "standard", &json!({ "filter": "colour = 1" })).unwrap_err();
    assert!(err.to_string().contains("unknown field `colour`"), "{err}");
}

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|v| v.to_string() + "\n").collect()
}

#[test]
fn a_distributor_import_is_judged_by_policies_and_a_denied_row_leaves_nothing() {
    let (_dir, p) = setup(Settings::default());
    install(&p, "network", built::NETWORK_COMPLIANCE, json!({}));
    let body = ndjson(&[
        json!({"source": "mlm", "external_id": "d-1", "name": "Head Office"}),
        json!({"source": "mlm", "external_id": "d-2", "name": "Resting", "sponsor": "d-1", "status": "inactive"}),
        json!({"source": "mlm", "external_id": "d-3", "name": "Recruit of a resting one", "sponsor": "d-2"}),
        json!({"source": "mlm", "external_id": "d-4", "name": "Loud", "sponsor": "d-1",
               "attributes": {"notes": "Guaranteed income from week one!"}}),
        json!({"source": "mlm", "external_id": "d-5", "name": "Fine", "sponsor": "d-1"}),
    ]);
    let report = p
        .import("acme", &owner(), ImportKind::Distributors, ImportFormat::Ndjson, Cursor::new(body), |_| {}, false)
        .unwrap();
    assert_eq!(report.accepted, 3, "{report:?}");
    let rejected: Vec<_> = report.rejected.iter().map(|r| (r.line, r.error.as_str())).collect();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(rejected[0].0, 3);
    assert!(rejected[0].1.contains("denied by policy `network`") && rejected[0].1.contains("inactive"), "{rejected:?}");
    assert_eq!(rejected[1].0, 4);
    assert!(rejected[1].1.contains("guaranteed income"), "{rejected:?}");
    let org = p.org("acme").unwrap();
    let ids: Vec<String> = org.distributors(0, 100, None).unwrap().into_iter().map(|d| d.name).collect();
    assert_eq!(ids, ["Head Office", "Resting", "Fine"], "the denied rows left nothing");
    let traces = p.traces("acme", "network", None, 100).unwrap();
    assert_eq!(traces.iter().filter(|t| t.outcome == "deny").count(), 2, "{traces:?}");
}

/// The same bad values meet the same checks whichever way they come in: one table, both paths.
#[test]
fn every_validation_is_the_same_over_the_api_and_an_import() {
    let (_dir, p) = setup(Settings::default());
    let org = p.org("acme").unwrap();
    let body = ndjson(&[json!({"source": "shop", "external_id": "c-1", "name": "Somchai"})]);
    p.import("acme", &owner(), ImportKind::Customers, ImportFormat::Ndjson, Cursor::new(body), |_| {}, false).unwrap();
    let customer = org.find_customer("shop", "c-1").unwrap().unwrap().id;
    // (what is wrong, the import record's fields, the same interaction for the API, the message)
    let cases = [
        ("a currency that is not ISO 4217", json!({"amount_minor": 100, "currency": "BAHT"}), "ISO 4217"),
        ("digits for a currency", json!({"amount_minor": 100, "currency": "7HB"}), "ISO 4217"),
        ("a ticket on a purchase", json!({"ticket": {"status": "open"}}), "only a `ticket` interaction"),
    ];
    for (n, (what, fields, message)) in cases.iter().enumerate() {
        let mut record = json!({"source": "shop", "external_id": format!("o-{n}"), "kind": "purchase",
            "customer": {"source": "shop", "external_id": "c-1"}, "occurred_at": "2026-01-01T00:00:00Z"});
        record.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        let report = p
            .import(
                "acme",
                &owner(),
                ImportKind::Interactions,
                ImportFormat::Ndjson,
                Cursor::new(ndjson(&[record])),
                |_| {},
                false,
            )
            .unwrap();
        assert_eq!(report.rejected.len(), 1, "{what}: {report:?}");
        let on_import = report.rejected[0].error.clone();

        let fields = fields.as_object().unwrap();
        let interaction = Interaction {
            id: 0,
            customer,
            kind: InteractionKind::Purchase,
            channel: String::new(),
            source: "api".into(),
            external_id: Some(format!("a-{n}")),
            occurred_at: 1_767_225_600_000,
            amount: fields.get("currency").map(|c| Money { amount_minor: 100, currency: c.as_str().unwrap().into() }),
            subject: None,
            body: None,
            attributes: Default::default(),
            ticket: fields.get("ticket").map(|t| serde_json::from_value(t.clone()).unwrap()),
        };
        let err = p.write("acme", &owner(), Origin::Api, Write::AddInteraction(interaction)).unwrap_err();
        assert!(matches!(err, PipelineError::Invalid(_)), "{what}: {err}");
        assert_eq!(err.to_string(), on_import, "{what}: the same message on both paths");
        assert!(on_import.contains(message), "{what}: {on_import}");
    }
    assert_eq!(org.counts().unwrap().interactions, 0, "nothing of a refused interaction landed");
    // A lower-case currency is the same currency, stored in its ISO form on both paths.
    let ok = json!({"source": "shop", "external_id": "o-ok", "kind": "purchase", "amount_minor": 5, "currency": "thb",
        "customer": {"source": "shop", "external_id": "c-1"}, "occurred_at": "2026-01-01T00:00:00Z"});
    p.import(
        "acme",
        &owner(),
        ImportKind::Interactions,
        ImportFormat::Ndjson,
        Cursor::new(ndjson(&[ok])),
        |_| {},
        false,
    )
    .unwrap();
    let stored = org.interaction_by_external_id("shop", "o-ok").unwrap().unwrap();
    assert_eq!(stored.amount.unwrap().currency, "THB");
}

/// A record that changes while a policy is judging a write to it is judged again before the
/// write lands: what commits is always what policies saw.
#[test]
fn a_write_whose_record_changed_while_it_was_judged_is_judged_again() {
    let mut settings = Settings::default();
    settings.policy_limits.cpu_time = std::time::Duration::from_secs(2);
    let (_dir, p) = setup(settings);
    let body = ndjson(&[json!({"source": "shop", "external_id": "c-1", "name": "Before", "email": "old@example.com"})]);
    p.import("acme", &owner(), ImportKind::Customers, ImportFormat::Ndjson, Cursor::new(body), |_| {}, false).unwrap();
    let org = p.org("acme").unwrap();
    let before = org.find_customer("shop", "c-1").unwrap().unwrap();
    // A policy that spends its whole CPU limit and fails open: every judgement takes ~2 s.
    install(&p, "slow", built::HOSTILE_POLICY, json!({ "attack": "loop" }));
    p.set_failure_mode("acme", &owner(), "slow", FailureMode::Open).unwrap();
    // Once, so that the plugin is compiled and loaded before the race below starts.
    create(&p, json!({ "name": "Warm-up" })).unwrap();

    let writer = {
        let p = p.clone();
        let renamed = Customer { name: Some("Renamed".into()), ..before.clone() };
        std::thread::spawn(move || p.write("acme", &owner(), Origin::Api, Write::UpdateCustomer(renamed)))
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Meanwhile an owner's migration changes the same customer, past the policies.
    let change = ndjson(&[json!({"source": "shop", "external_id": "c-1", "email": "new@example.com"})]);
    let report = p
        .import("acme", &owner(), ImportKind::Customers, ImportFormat::Ndjson, Cursor::new(change), |_| {}, true)
        .unwrap();
    assert_eq!(report.updated, 1, "{report:?}");

    let out = writer.join().unwrap().expect("the write lands after being judged again");
    assert_eq!(out.warnings.len(), 1, "one judgement's warning, not one per try: {:?}", out.warnings);
    // The warm-up's call concerns another customer.
    let judged: Vec<_> = p
        .traces("acme", "slow", None, 10)
        .unwrap()
        .into_iter()
        .filter(|t| t.hook == "before" && t.customer == Some(before.id))
        .collect();
    assert_eq!(judged.len(), 2, "judged, found stale at commit, judged again: {judged:?}");
    let audit = org.audit(0, 100).unwrap();
    let update = audit.iter().rev().find(|e| e.action == "customer.update" && e.actor.ends_with("ops")).unwrap();
    assert_eq!(
        update.detail["record"]["customer"]["email"], "old@example.com",
        "the write is the whole record it sent"
    );
    let change = p.org("acme").unwrap().recent_changes(10).unwrap();
    let judged_before = change
        .iter()
        .find(|c| c.origin == Origin::Api && c.operation == rapport::model::Operation::Update)
        .map(|c| c.before.clone())
        .unwrap();
    match judged_before {
        Some(Entity::Customer(c)) => {
            assert_eq!(c.email.as_deref(), Some("new@example.com"), "judged against the new record");
        }
        other => panic!("{other:?}"),
    }
}

/// The scope holds in the pipeline itself, not only in the API's handlers: a scoped caller's
/// write to a customer outside the scope answers "missing", and one that would move a customer
/// out of it is refused, with nothing written either way.
#[test]
fn a_scoped_write_sees_nothing_outside_its_scope_and_moves_nothing_out_of_it() {
    use rapport::store::Scope;
    let (_dir, p) = setup(Settings::default());
    let mine = stored(&create(&p, json!({ "name": "Anan", "branch": "BKK" })).unwrap());
    let theirs = stored(&create(&p, json!({ "name": "Boon", "branch": "CNX" })).unwrap());
    let bkk = Scope { branch: Some("BKK".into()), distributor: None };
    let agent = Actor { name: "bkk".into(), role: rapport::model::Role::Agent };
    let write = |c: Customer| p.write_in("acme", &agent, &bkk, Origin::Api, Write::UpdateCustomer(c));

    let err = write(Customer { name: Some("Renamed".into()), ..theirs.clone() }).unwrap_err();
    assert!(matches!(err, PipelineError::NotFound(_)), "{err}");
    assert_eq!(err.to_string(), format!("customer {} does not exist", theirs.id));
    let err = write(Customer { branch: Some("CNX".into()), ..mine.clone() }).unwrap_err();
    assert!(matches!(err, PipelineError::OutOfScope(_)), "{err}");
    assert!(err.to_string().contains("branch = \"BKK\""), "{err}");

    let org = p.org("acme").unwrap();
    assert_eq!(org.customer(theirs.id).unwrap().unwrap().name.as_deref(), Some("Boon"));
    assert_eq!(org.customer(mine.id).unwrap().unwrap().branch.as_deref(), Some("BKK"));
    // Inside the scope the same caller writes as anyone would.
    let out = write(Customer { name: Some("Anan J.".into()), ..mine }).unwrap();
    assert_eq!(stored(&out).name.as_deref(), Some("Anan J."));
}
