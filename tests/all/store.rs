//! The customer store: isolation between organizations, idempotent streaming import with per-line
//! errors, the filter language over real data, profiles, the sponsor tree, migrations.

use std::io::Cursor;

use rapport::model::{Actor, Customer, Interaction, InteractionKind};
use rapport::pipeline::{ImportFormat, ImportKind};
use rapport::plugins::DataSource;
use rapport::store::{OrgStore, Store, StoreError};
use serde_json::json;

fn actor() -> Actor {
    Actor { name: "test".into(), role: rapport::model::Role::Admin }
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn ndjson(lines: &[serde_json::Value]) -> String {
    lines.iter().map(|l| l.to_string() + "\n").collect()
}

fn import(org: &OrgStore, kind: ImportKind, body: &str) -> rapport::pipeline::ImportReport {
    crate::import(org, &actor(), kind, ImportFormat::Ndjson, Cursor::new(body.to_owned())).unwrap()
}

/// The reference scenario's record shapes (shared/design.md, steps 3 and 4).
fn reference_customers() -> String {
    ndjson(&[
        json!({"source": "shop", "external_id": "c-1", "name": "Ann", "email": "ann@example.com", "phone": "+6621234567", "branch": "bkk-01", "attributes": {"tier": "gold"}}),
        json!({"source": "shop", "external_id": "c-2", "name": "Bo", "email": "bo@example.com", "phone": "+6621234568", "branch": "cnx-01", "attributes": {}}),
    ])
}

fn reference_interactions() -> String {
    ndjson(&[
        json!({"source": "shop", "external_id": "o-1", "customer": {"source": "shop", "external_id": "c-1"}, "kind": "purchase", "channel": "web", "occurred_at": "1997-01-01T00:00:00Z", "amount_minor": 2933, "currency": "USD"}),
        json!({"source": "shop", "external_id": "o-2", "customer": {"source": "shop", "external_id": "c-1"}, "kind": "purchase", "channel": "web", "occurred_at": "1997-03-01T00:00:00Z", "amount_minor": 1000, "currency": "USD"}),
        json!({"source": "callcenter", "external_id": "t-1", "customer": {"source": "shop", "external_id": "c-2"}, "kind": "ticket", "channel": "phone", "occurred_at": "1997-02-01T00:00:00Z", "subject": "late delivery"}),
    ])
}

#[test]
fn the_reference_import_lands_and_rerunning_it_changes_nothing() {
    let (_dir, store) = store();
    store.create_org("acme", "Acme Direct").unwrap();
    let acme = store.org("acme").unwrap();

    let first = import(&acme, ImportKind::Customers, &reference_customers());
    assert_eq!((first.accepted, first.created, first.rejected.len()), (2, 2, 0));
    let first = import(&acme, ImportKind::Interactions, &reference_interactions());
    assert_eq!((first.accepted, first.created), (3, 3), "{first:?}");
    let counts = acme.counts().unwrap();

    let again = import(&acme, ImportKind::Customers, &reference_customers());
    assert_eq!((again.accepted, again.created, again.updated, again.unchanged), (2, 0, 0, 2));
    let again = import(&acme, ImportKind::Interactions, &reference_interactions());
    assert_eq!((again.accepted, again.created, again.unchanged), (3, 0, 3));
    assert_eq!(acme.counts().unwrap(), counts, "no new rows, no new audit entries");

    let ann = acme.find_customer("shop", "c-1").unwrap().unwrap();
    assert_eq!(ann.attributes["tier"], "gold");
    let (timeline, _) = acme.timeline(ann.id, None, 50).unwrap();
    assert_eq!(timeline.len(), 2);
    assert_eq!(timeline[0].occurred_at, 857_174_400_000, "newest first: 1997-03-01");
    assert_eq!(timeline[1].amount.as_ref().unwrap().amount_minor, 2933);
}

#[test]
fn a_changed_record_updates_with_before_and_after_in_the_audit() {
    let (_dir, store) = store();
    store.create_org("acme", "Acme").unwrap();
    let acme = store.org("acme").unwrap();
    import(&acme, ImportKind::Customers, &reference_customers());
    let changed = reference_customers().replace("ann@example.com", "ann@new.example");
    let report = import(&acme, ImportKind::Customers, &changed);
    assert_eq!((report.updated, report.unchanged), (1, 1));
    let entry = acme.audit(0, 100).unwrap().into_iter().last().unwrap();
    assert_eq!(entry.action, "import");
    assert_eq!(entry.detail["updated"][0]["before"]["email"], "ann@example.com");
    assert_eq!(entry.detail["updated"][0]["after"]["email"], "ann@new.example");
    assert_eq!(entry.actor, "admin:test");
}

#[test]
fn bad_lines_are_reported_by_number_while_good_ones_land() {
    let (_dir, store) = store();
    store.create_org("acme", "Acme").unwrap();
    let acme = store.org("acme").unwrap();
    import(&acme, ImportKind::Customers, &reference_customers());
    let body = [
        json!({"source": "shop", "external_id": "o-9", "customer": {"source": "shop", "external_id": "c-1"}, "kind": "purchase", "occurred_at": "1997-01-02T00:00:00Z", "amount_minor": 10, "currency": "USD"}).to_string(),
        "{not json".to_owned(),
        String::new(),
        json!({"source": "shop", "external_id": "o-10", "customer": {"source": "shop", "external_id": "nobody"}, "kind": "call", "occurred_at": 0}).to_string(),
        json!({"source": "shop", "external_id": "o-11", "customer": {"source": "shop", "external_id": "c-1"}, "kind": "purchase", "occurred_at": "yesterday"}).to_string(),
        json!({"source": "shop", "external_id": "o-12", "customer": {"source": "shop", "external_id": "c-1"}, "kind": "purchase", "occurred_at": 0, "amount_minor": 5}).to_string(),
        json!({"source": "shop", "external_id": "o-13", "customer": {"source": "shop", "external_id": "c-1"}, "kind": "call", "occurred_at": 0, "colour": "red"}).to_string(),
        json!({"source": "shop", "external_id": "o-14", "customer": {"source": "shop", "external_id": "c-2"}, "kind": "call", "occurred_at": 0}).to_string(),
    ]
    .join("\n");
    let report = import(&acme, ImportKind::Interactions, &body);
    assert_eq!(report.accepted, 2);
    let lines: Vec<u64> = report.rejected.iter().map(|r| r.line).collect();
    assert_eq!(lines, [2, 4, 5, 6, 7], "{report:?}");
    let error = |line| report.rejected.iter().find(|r| r.line == line).unwrap().error.clone();
    assert!(error(2).starts_with("invalid JSON"));
    assert!(error(4).contains("customer shop:nobody does not exist (import customers first)"));
    assert!(error(5).contains("is not an RFC 3339 time"));
    assert!(error(6).contains("`amount_minor` needs a `currency`"));
    assert!(error(7).contains("unknown field `colour`"), "{}", error(7));
    assert_eq!(acme.counts().unwrap().interactions, 2);
}

#[test]
fn csv_imports_the_same_records() {
    let (_dir, store) = store();
    store.create_org("acme", "Acme").unwrap();
    let acme = store.org("acme").unwrap();
    let csv = "source,external_id,name,email,branch,tags,loyalty_card\n\
               shop,c-1,Ann,ann@example.com,bkk-01,vip|new,L-77\n\
               shop,c-2,\"Bo, Jr.\",,cnx-01,,\n";
    let report = crate::import(&acme, &actor(), ImportKind::Customers, ImportFormat::Csv, Cursor::new(csv)).unwrap();
    assert_eq!((report.accepted, report.rejected.len()), (2, 0), "{report:?}");
    let ann = acme.find_customer("shop", "c-1").unwrap().unwrap();
    assert_eq!(ann.tags, ["new", "vip"]);
    assert_eq!(ann.attributes["loyalty_card"], "L-77", "unknown columns become attributes");
    assert_eq!(acme.find_customer("shop", "c-2").unwrap().unwrap().name.as_deref(), Some("Bo, Jr."));

    let interactions = "source,external_id,customer_source,customer_external_id,kind,channel,occurred_at,amount_minor,currency\n\
                        shop,o-1,shop,c-1,purchase,web,1997-01-01T00:00:00Z,2933,USD\n\
                        shop,o-2,shop,c-1,purchase,web,1997-01-01T00:00:00Z,lots,USD\n";
    let report =
        crate::import(&acme, &actor(), ImportKind::Interactions, ImportFormat::Csv, Cursor::new(interactions)).unwrap();
    assert_eq!(report.accepted, 1);
    assert_eq!(report.rejected[0].line, 3, "CSV lines count the header");
    assert!(report.rejected[0].error.contains("`amount_minor` must be a whole number"));
}

#[test]
fn no_query_reaches_another_organization() {
    let (_dir, store) = store();
    store.create_org("acme", "Acme").unwrap();
    store.create_org("globex", "Globex").unwrap();
    let acme = store.org("acme").unwrap();
    let globex = store.org("globex").unwrap();
    import(&acme, ImportKind::Customers, &reference_customers());
    import(&acme, ImportKind::Interactions, &reference_interactions());
    let ann = acme.find_customer("shop", "c-1").unwrap().unwrap();

    // Every read of globex, with acme's ids and external ids, finds nothing.
    assert!(globex.customer(ann.id).unwrap().is_none());
    assert!(globex.find_customer("shop", "c-1").unwrap().is_none());
    assert!(globex.timeline(ann.id, None, 50).unwrap().0.is_empty());
    assert!(globex.profile(ann.id, 50).unwrap().is_none());
    assert!(globex.list_customers("", None, 100).unwrap().items.is_empty());
    assert_eq!(globex.count_customers(r#"email ~ "example""#).unwrap(), 0);
    assert!(globex.audit(0, 100).unwrap().is_empty());
    // ... and so does a plugin reading through globex's data source.
    let data: &dyn DataSource = &globex;
    assert!(data.customer(ann.id).unwrap().is_none());
    assert!(data.timeline(ann.id, None, 50).unwrap().is_empty());
    assert!(data.query_customers("", None, 100).unwrap().unwrap().items.is_empty());
    // Writes cannot attach to another organization's customer either.
    let err = globex
        .write(|tx| {
            tx.insert_interaction(&Interaction {
                id: 0,
                customer: ann.id,
                kind: InteractionKind::Call,
                channel: "phone".into(),
                source: "api".into(),
                external_id: None,
                occurred_at: 0,
                amount: None,
                subject: None,
                body: None,
                attributes: Default::default(),
                ticket: None,
            })
        })
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    // An import into globex referencing acme's customer is a per-line error.
    let report = import(&globex, ImportKind::Interactions, &reference_interactions());
    assert_eq!(report.accepted, 0);
    assert_eq!(globex.counts().unwrap().interactions, 0);
    assert_eq!(acme.counts().unwrap().interactions, 3);
}

#[test]
fn filters_select_by_fields_tags_attributes_aggregates_and_segments() {
    let (_dir, store) = store();
    store.create_org("acme", "Acme").unwrap();
    let acme = store.org("acme").unwrap();
    let mut customers = Vec::new();
    for n in 1..=30 {
        customers.push(json!({
            "source": "shop", "external_id": format!("c-{n}"), "name": format!("Customer {n}"),
            "branch": if n % 2 == 0 { "bkk" } else { "cnx" },
            "tags": if n % 10 == 0 { vec!["vip"] } else { vec![] },
            "attributes": { "tier": if n <= 5 { "gold" } else { "basic" }, "age": n + 20 }
        }));
    }
    import(&acme, ImportKind::Customers, &ndjson(&customers));
    let mut orders = Vec::new();
    for n in 1..=30 {
        for k in 0..(n % 4) {
            orders.push(json!({
                "source": "shop", "external_id": format!("o-{n}-{k}"), "customer": {"source": "shop", "external_id": format!("c-{n}")},
                "kind": "purchase", "occurred_at": format!("2024-0{}-15T00:00:00Z", k + 1), "amount_minor": 1000 * n, "currency": "THB"
            }));
        }
    }
    import(&acme, ImportKind::Interactions, &ndjson(&orders));

    let count = |f: &str| acme.count_customers(f).unwrap_or_else(|e| panic!("{f}: {e}"));
    assert_eq!(count(""), 30);
    assert_eq!(count(r#"branch = "bkk""#), 15);
    assert_eq!(count(r#"tag = "vip""#), 3);
    assert_eq!(count(r#"tag != "vip" and branch = "bkk""#), 12);
    assert_eq!(count(r#"attributes.tier = "gold""#), 5);
    assert_eq!(count("attributes.age >= 45"), 6);
    assert_eq!(count(r#"attributes.tier in ("gold", "platinum") or tag = "vip""#), 8);
    assert_eq!(count("purchases.count = 3"), 7, "n % 4 == 3 for 3,7,...,27");
    assert_eq!(count("purchases.count = 0"), 7);
    assert_eq!(count("purchases.last >= 2024-03-01"), 7, "only 3-purchase customers bought in March");
    assert_eq!(count("purchases.total_minor > 50000"), 5, "19, 23, 26, 27, 30");
    assert_eq!(count(r#"name ~ "customer 1""#), 11, "1, 10-19");
    assert_eq!(count("purchases.first is null"), 7);
    assert_eq!(count("not (purchases.count = 0)"), 23);

    let err = acme.count_customers("purchases.count >").unwrap_err();
    assert!(matches!(err, StoreError::Filter(ref f) if f.position == 17), "{err}");

    acme.save_segment(&actor(), "big-spenders", "purchases.total_minor > 50000", "").unwrap();
    acme.save_segment(&actor(), "gold", r#"attributes.tier = "gold""#, "").unwrap();
    assert!(acme.save_segment(&actor(), "broken", "nonsense = 1", "").is_err(), "a segment's filter must parse");
    let c27 = acme.find_customer("shop", "c-27").unwrap().unwrap();
    let profile = acme.profile(c27.id, 2).unwrap().unwrap();
    assert_eq!(profile.segments, ["big-spenders"]);
    assert_eq!(profile.timeline.len(), 2);
    let (rest, next) = acme.timeline(c27.id, profile.timeline_next.as_deref(), 2).unwrap();
    assert_eq!((rest.len(), next), (1, None), "the third purchase is on the second page");
}

#[test]
fn pages_walk_every_customer_once() {
    let (_dir, store) = store();
    store.create_org("acme", "Acme").unwrap();
    let acme = store.org("acme").unwrap();
    let customers: Vec<_> =
        (0..250).map(|n| json!({"source": "s", "external_id": format!("{n}"), "email": format!("{n}@x.io")})).collect();
    import(&acme, ImportKind::Customers, &ndjson(&customers));
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = acme.list_customers("", cursor.as_deref(), 100).unwrap();
        seen.extend(page.items.iter().map(|c: &Customer| c.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!((seen.len(), sorted.len()), (250, 250));
    assert!(acme.list_customers("", Some("not-a-cursor"), 10).is_err());
}

#[test]
fn the_sponsor_tree_refuses_cycles_and_answers_downlines() {
    let (_dir, store) = store();
    store.create_org("acme", "Acme").unwrap();
    let acme = store.org("acme").unwrap();
    let tree = ndjson(&[
        json!({"source": "mlm", "external_id": "a", "name": "Root"}),
        json!({"source": "mlm", "external_id": "b", "name": "B", "sponsor": "a"}),
        json!({"source": "mlm", "external_id": "c", "name": "C", "sponsor": "b"}),
        json!({"source": "mlm", "external_id": "d", "name": "D", "sponsor": "d"}),
        json!({"source": "mlm", "external_id": "e", "name": "E", "sponsor": "zz"}),
    ]);
    let report = import(&acme, ImportKind::Distributors, &tree);
    assert_eq!(report.accepted, 3);
    assert!(report.rejected[0].error.contains("cannot sponsor themself"));
    assert!(report.rejected[1].error.contains("sponsor mlm:zz does not exist"));

    // Moving the root under its own grandchild would make a cycle.
    let cycle = ndjson(&[json!({"source": "mlm", "external_id": "a", "name": "Root", "sponsor": "c"})]);
    let report = import(&acme, ImportKind::Distributors, &cycle);
    assert_eq!(report.accepted, 0);
    assert!(report.rejected[0].error.contains("would make a cycle"), "{report:?}");

    let root = acme.list_customers("", None, 1).unwrap(); // no customers: distributors are separate
    assert!(root.items.is_empty());
    let page = acme.downline(1, 10).unwrap();
    let names: Vec<(&str, u32)> = page.iter().map(|m| (m.distributor.name.as_str(), m.depth)).collect();
    assert_eq!(names, [("B", 1), ("C", 2)]);
    assert_eq!(acme.downline(1, 1).unwrap().len(), 1);
}

#[test]
fn a_database_from_a_newer_rapport_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let conn = rusqlite::Connection::open(dir.path().join("rapport.db")).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Store::open(dir.path()).err().expect("refused");
    assert!(err.to_string().contains("written by a newer Rapport (schema version 99"), "{err}");
}

#[test]
fn org_slugs_are_validated_and_unique() {
    let (_dir, store) = store();
    store.create_org("acme", "Acme").unwrap();
    assert!(matches!(store.create_org("acme", "Again"), Err(StoreError::OrgExists(_))));
    assert!(store.create_org("Bad Slug", "x").unwrap_err().to_string().contains("must be 1-63 characters"));
    assert!(matches!(store.org("nobody"), Err(StoreError::NoSuchOrg(_))));
}

#[test]
fn demo_data_is_deterministic_and_imports_cleanly() {
    use rapport::demo::{DemoSpec, write};
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec::new(42, 300);
    let a = write(&spec, &dir.path().join("a")).unwrap();
    let b = write(&spec, &dir.path().join("b")).unwrap();
    let c = write(&DemoSpec::new(43, 300), &dir.path().join("c")).unwrap();
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    assert_eq!(read(&a.interactions), read(&b.interactions), "same seed, same data");
    assert_ne!(read(&a.interactions), read(&c.interactions), "another seed, other data");
    assert!(a.counts.2 > 3 * a.counts.1, "several touchpoints per customer: {:?}", a.counts);

    let store = Store::open(&dir.path().join("db")).unwrap();
    store.create_org("demo", "Demo").unwrap();
    let demo = store.org("demo").unwrap();
    for (file, kind) in [
        (&a.distributors, ImportKind::Distributors),
        (&a.customers, ImportKind::Customers),
        (&a.interactions, ImportKind::Interactions),
    ] {
        let reader = std::io::BufReader::new(std::fs::File::open(file).unwrap());
        let report = crate::import(&demo, &actor(), kind, ImportFormat::Ndjson, reader).unwrap();
        assert!(report.rejected.is_empty(), "{kind:?}: {:?}", &report.rejected[..report.rejected.len().min(3)]);
    }
    let counts = demo.counts().unwrap();
    assert_eq!((counts.distributors, counts.customers, counts.interactions), a.counts);
    assert!(demo.count_customers("purchases.count >= 1").unwrap() == 300, "everyone bought at least once");
    assert!(demo.count_customers("tickets.count >= 1").unwrap() > 0);
}

#[test]
fn scores_land_on_profiles_with_history_and_only_in_their_organization() {
    use rapport::model::{Column, LabelColumn, ScoreBatch, TextColumn};
    let (_dir, store) = store();
    store.create_org("acme", "Acme").unwrap();
    store.create_org("globex", "Globex").unwrap();
    let acme = store.org("acme").unwrap();
    let globex = store.org("globex").unwrap();
    import(&acme, ImportKind::Customers, &reference_customers());
    import(&globex, ImportKind::Customers, &reference_customers().replace("c-1", "g-1"));
    let ann = acme.find_customer("shop", "c-1").unwrap().unwrap().id;
    let other = globex.find_customer("shop", "g-1").unwrap().unwrap().id;
    let batch = |value: f64| ScoreBatch {
        scores: vec![Column { name: "monetary".into(), values: vec![value, 1.0] }],
        labels: vec![LabelColumn {
            name: "segment".into(),
            categories: vec!["champions".into(), "at-risk".into()],
            codes: vec![0, 1],
        }],
        explanations: vec![TextColumn {
            name: "monetary".into(),
            values: vec!["top fifth by spend".into(), String::new()],
        }],
    };
    let skipped = acme.write(|tx| tx.save_scores("rfm", &batch(5.0), &[ann, other], 1_000)).unwrap();
    assert_eq!(skipped, 1, "globex's customer is not acme's to score");
    acme.write(|tx| tx.save_scores("rfm", &batch(4.0), &[ann, other], 2_000)).unwrap();

    let profile = acme.profile(ann, 10).unwrap().unwrap();
    assert_eq!(profile.scores["rfm.monetary"], 4.0, "the latest value");
    assert_eq!(profile.labels["rfm.segment"], "champions");
    assert_eq!(acme.count_customers("score.rfm.monetary >= 4").unwrap(), 1);
    assert_eq!(acme.count_customers(r#"label.rfm.segment = "champions""#).unwrap(), 1);
    let history = acme.export(ann).unwrap().unwrap()["score_history"].as_array().unwrap().len();
    assert_eq!(history, 4, "two runs × (one score + one label)");
    assert!(globex.profile(other, 10).unwrap().unwrap().scores.is_empty());
}

#[test]
fn branches_are_kept_per_organization() {
    use rapport::model::Branch;
    let (_dir, store) = store();
    store.create_org("acme", "Acme").unwrap();
    store.create_org("globex", "Globex").unwrap();
    let acme = store.org("acme").unwrap();
    let branch =
        |code: &str, name: &str| Branch { code: code.into(), name: name.into(), attributes: Default::default() };
    acme.save_branch(&actor(), &branch("bkk-01", "Bangkok Siam")).unwrap();
    acme.save_branch(&actor(), &branch("cnx-01", "Chiang Mai")).unwrap();
    acme.save_branch(&actor(), &branch("bkk-01", "Bangkok Siam Square")).unwrap();
    let names: Vec<String> = acme.branches().unwrap().into_iter().map(|b| b.name).collect();
    assert_eq!(names, ["Bangkok Siam Square", "Chiang Mai"]);
    assert!(store.org("globex").unwrap().branches().unwrap().is_empty());
    let err = acme.save_branch(&actor(), &branch("bad code!", "x")).unwrap_err();
    assert!(err.to_string().contains("must be 1-64 characters"), "{err}");
    assert_eq!(acme.audit(0, 10).unwrap().iter().filter(|e| e.action == "branch.save").count(), 3);
}

#[test]
fn reimports_compare_whole_records() {
    let (_dir, store) = store();
    store.create_org("acme", "Acme").unwrap();
    let acme = store.org("acme").unwrap();
    import(&acme, ImportKind::Customers, &reference_customers());
    import(&acme, ImportKind::Interactions, &reference_interactions());
    // Another currency for the same order: not silently "unchanged", and not overwritten.
    let changed = reference_interactions().replace("\"USD\"", "\"EUR\"");
    let report = import(&acme, ImportKind::Interactions, &changed);
    assert_eq!(report.accepted, 1, "the ticket did not change: {report:?}");
    assert!(report.rejected[0].error.contains("already exists with other values"), "{report:?}");

    // Consents in any order are the same consents.
    let consents = |order: [i64; 2]| {
        ndjson(&[json!({"source": "shop", "external_id": "c-9", "consents": order.map(|t| json!({
            "purpose": format!("p{t}"), "basis": "consent", "given_at": t, "source": "web"}))})])
    };
    assert_eq!(import(&acme, ImportKind::Customers, &consents([2, 1])).created, 1);
    assert_eq!(import(&acme, ImportKind::Customers, &consents([1, 2])).unchanged, 1);
    assert_eq!(import(&acme, ImportKind::Customers, &consents([2, 1])).unchanged, 1);

    // An interaction needs its external id, or a re-run would count it twice.
    let anonymous = ndjson(&[
        json!({"source": "shop", "customer": {"source": "shop", "external_id": "c-1"}, "kind": "call", "occurred_at": 0}),
    ]);
    let report = import(&acme, ImportKind::Interactions, &anonymous);
    assert!(report.rejected[0].error.contains("missing field `external_id`"), "{report:?}");

    // CSV cells are text: unix milliseconds still read as a time.
    let csv = "source,external_id,customer_source,customer_external_id,kind,occurred_at\nshop,m-1,shop,c-1,call,852076800000\n";
    let report = crate::import(&acme, &actor(), ImportKind::Interactions, ImportFormat::Csv, Cursor::new(csv)).unwrap();
    assert_eq!(report.created, 1, "{report:?}");
}

#[test]
fn an_import_adds_and_updates_but_never_deletes() {
    let (_dir, store) = store();
    store.create_org("acme", "Acme").unwrap();
    let acme = store.org("acme").unwrap();
    import(&acme, ImportKind::Customers, &reference_customers());
    // The shop's second export lacks Ann's phone and has another tag: nothing is lost.
    let partial =
        ndjson(&[json!({"source": "shop", "external_id": "c-1", "tags": ["newsletter"], "attributes": {"size": "M"}})]);
    assert_eq!(import(&acme, ImportKind::Customers, &partial).updated, 1);
    let ann = acme.find_customer("shop", "c-1").unwrap().unwrap();
    assert_eq!((ann.name.as_deref(), ann.phone.as_deref()), (Some("Ann"), Some("+6621234567")));
    assert_eq!(ann.tags, ["newsletter"]);
    assert_eq!((ann.attributes["tier"].as_str(), ann.attributes["size"].as_str()), (Some("gold"), Some("M")));
}

#[test]
fn tag_null_checks_and_missing_values_behave() {
    let (_dir, store) = store();
    store.create_org("acme", "Acme").unwrap();
    let acme = store.org("acme").unwrap();
    let people = ndjson(&[
        json!({"source": "s", "external_id": "1", "name": "Ann", "email": "ann@example.com", "tags": ["vip"]}),
        json!({"source": "s", "external_id": "2", "name": "Bo"}),
    ]);
    import(&acme, ImportKind::Customers, &people);
    assert_eq!(acme.count_customers("tag is null").unwrap(), 1, "no tags at all");
    assert_eq!(acme.count_customers("tag is not null").unwrap(), 1);
    // A missing email contains nothing, so `not` keeps that customer.
    assert_eq!(acme.count_customers(r#"not email ~ "example.com""#).unwrap(), 1);
    assert_eq!(acme.count_customers(r#"email != "ann@example.com""#).unwrap(), 1);
    assert_eq!(acme.count_customers(r#"not (email = "ann@example.com")"#).unwrap(), 1);
    // A plugin sending an absurd filter gets an error, not a crashed host.
    let deep = format!("{}name = \"a\"{}", "(".repeat(1000), ")".repeat(1000));
    let data: &dyn DataSource = &acme;
    assert!(data.query_customers(&deep, None, 10).unwrap().unwrap_err().contains("at most 32 deep"));
}
