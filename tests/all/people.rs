//! One person, one profile: finding duplicates, merging them without losing anything, and the
//! data subject's rights (export, erasure) that leave no personal data behind.

use std::io::Cursor;

use rapport::model::Actor;
use rapport::pipeline::{ImportFormat, ImportKind};
use rapport::store::{OrgStore, Store, phone_e164};
use serde_json::{Value, json};

fn actor() -> Actor {
    Actor { name: "dpo".into(), role: rapport::model::Role::Owner }
}

fn setup() -> (tempfile::TempDir, Store, OrgStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_org("acme", "Acme").unwrap();
    store.set_default_country_code("acme", Some("66")).unwrap();
    let acme = store.org("acme").unwrap();
    let people = [
        json!({"source": "shop", "external_id": "c-1", "name": "Somchai Jaidee", "email": "Somchai@Example.com", "phone": "081 234 5678",
               "tags": ["vip"], "attributes": {"tier": "gold"},
               "consents": [{"purpose": "marketing", "channel": "email", "basis": "consent", "given_at": 1000, "source": "web"}]}),
        json!({"source": "line", "external_id": "u-9", "name": "Somchai Jaidee ", "email": " somchai@example.com", "phone": "+66812345678",
               "tags": ["line"], "attributes": {"line_id": "somchai99", "tier": "basic"}}),
        json!({"source": "shop", "external_id": "c-2", "name": "Suda Srisuk", "email": "suda@example.com", "phone": "02-111-2222"}),
        json!({"source": "shop", "external_id": "c-3", "name": "Somchay Jaidee", "phone": "0812345678"}),
    ];
    let body: String = people.iter().map(|p| p.to_string() + "\n").collect();
    let report =
        crate::import(&acme, &actor(), ImportKind::Customers, ImportFormat::Ndjson, Cursor::new(body)).unwrap();
    assert_eq!(report.accepted, 4, "{report:?}");
    let orders: String = [("shop", "c-1", "o-1"), ("line", "u-9", "l-1"), ("line", "u-9", "l-2")]
        .iter()
        .map(|(src, who, ext)| {
            json!({"source": src, "external_id": ext, "customer": {"source": src, "external_id": who}, "kind": "chat",
                   "occurred_at": 5000, "body": format!("Hello, this is Somchai ({ext})")})
            .to_string()
                + "\n"
        })
        .collect();
    crate::import(&acme, &actor(), ImportKind::Interactions, ImportFormat::Ndjson, Cursor::new(orders)).unwrap();
    (dir, store, acme)
}

fn id(acme: &OrgStore, source: &str, ext: &str) -> u64 {
    acme.find_customer(source, ext).unwrap().unwrap().id
}

#[test]
fn phones_are_stored_in_e164_when_the_country_is_known() {
    assert_eq!(phone_e164("081 234 5678", Some("66")).as_deref(), Some("+66812345678"));
    assert_eq!(phone_e164("+66 81-234-5678", None).as_deref(), Some("+66812345678"));
    assert_eq!(phone_e164("0066812345678", None).as_deref(), Some("+66812345678"));
    assert_eq!(phone_e164("081 234 5678", None), None, "a local number without a country stays as given");
    assert_eq!(phone_e164("12", Some("66")), None);
    let (_dir, _store, acme) = setup();
    assert_eq!(acme.find_customer("shop", "c-1").unwrap().unwrap().phone.as_deref(), Some("+66812345678"));
}

#[test]
fn duplicates_are_found_by_email_phone_and_name() {
    let (_dir, _store, acme) = setup();
    let (c1, u9, c2, c3) =
        (id(&acme, "shop", "c-1"), id(&acme, "line", "u-9"), id(&acme, "shop", "c-2"), id(&acme, "shop", "c-3"));
    let candidates = acme.duplicates(10).unwrap();
    let top = &candidates[0];
    assert_eq!((top.a, top.b), (c1, u9), "{candidates:?}");
    assert!(top.reasons.contains(&"same email".to_string()) && top.reasons.contains(&"same phone".to_string()));
    assert!(top.score > 0.9);
    let c3_pair = candidates.iter().find(|c| (c.a, c.b) == (c1, c3)).expect("same phone, similar name");
    assert!(c3_pair.reasons.iter().any(|r| r.starts_with("similar names")), "{c3_pair:?}");
    assert!(c3_pair.score < top.score);
    assert!(candidates.iter().all(|c| c.a != c2 && c.b != c2), "Suda has no twin");
}

#[test]
fn a_merge_keeps_every_interaction_consent_tag_and_external_id() {
    let (_dir, _store, acme) = setup();
    let (c1, u9) = (id(&acme, "shop", "c-1"), id(&acme, "line", "u-9"));
    let before = acme.counts().unwrap();

    let merged = acme.merge(&actor(), c1, u9).unwrap();
    assert_eq!(merged.id, c1);
    assert_eq!(merged.tags, ["line", "vip"]);
    assert_eq!(merged.consents.len(), 1);
    assert_eq!(merged.attributes["tier"], "gold", "the kept customer's values win");
    assert_eq!(merged.attributes["line_id"], "somchai99", "the removed one's fill the gaps");
    let sources: Vec<_> = merged.external_ids.iter().map(|e| format!("{}:{}", e.source, e.id)).collect();
    assert_eq!(sources, ["line:u-9", "shop:c-1"]);
    assert_eq!(acme.timeline(c1, None, 50).unwrap().0.len(), 3, "both timelines");

    let after = acme.counts().unwrap();
    assert_eq!((after.customers, after.interactions), (before.customers - 1, before.interactions));
    assert_eq!(
        acme.find_customer("line", "u-9").unwrap().unwrap().id,
        c1,
        "the old external id finds the merged profile"
    );
    assert_eq!(acme.resolve(u9).unwrap(), Some(c1), "the old id resolves to the merged profile");
    let entry = acme.audit(0, 100).unwrap().into_iter().last().unwrap();
    assert_eq!(entry.action, "merge");
    assert_eq!(entry.detail["removed"]["attributes"]["line_id"], "somchai99", "enough kept to undo it");

    assert!(acme.merge(&actor(), c1, c1).is_err());
    assert!(acme.merge(&actor(), c1, u9).unwrap_err().to_string().contains("does not exist"));
}

fn contains_text(value: &Value, needle: &str) -> bool {
    value.to_string().to_lowercase().contains(&needle.to_lowercase())
}

#[test]
fn export_holds_everything_and_after_erase_nothing_personal() {
    let (_dir, _store, acme) = setup();
    let (c1, u9) = (id(&acme, "shop", "c-1"), id(&acme, "line", "u-9"));
    // Change the profile through a re-import so that an audit entry holds a before/after copy.
    let change = json!({"source": "shop", "external_id": "c-1", "name": "Somchai Jaidee", "email": "somchai@new.example",
                        "phone": "081 234 5678", "tags": ["vip"], "attributes": {"tier": "gold"},
                        "consents": [{"purpose": "marketing", "channel": "email", "basis": "consent", "given_at": 1000, "source": "web"}]});
    crate::import(&acme, &actor(), ImportKind::Customers, ImportFormat::Ndjson, Cursor::new(change.to_string()))
        .unwrap();
    acme.merge(&actor(), c1, u9).unwrap();

    let export = acme.export(c1).unwrap().unwrap();
    assert_eq!(export["customer"]["email"], "somchai@new.example");
    assert_eq!(export["interactions"].as_array().unwrap().len(), 3);
    assert_eq!(export["merged_from"], json!([u9]));
    assert!(contains_text(&export["audit"], "somchai99"), "the export includes what the audit holds on them");

    acme.erase(&actor(), c1).unwrap();
    let after = acme.export(c1).unwrap().unwrap();
    for personal in ["Somchai", "Jaidee", "somchai@", "812345678", "somchai99", "c-1", "u-9", "Hello, this is"] {
        assert!(!contains_text(&after, personal), "`{personal}` survived the erasure: {after:#}");
    }
    assert!(after["erased_at"].is_i64());
    // Aggregates stay: the shell and the anonymized interactions still count.
    assert_eq!(after["interactions"].as_array().unwrap().len(), 3);
    assert_eq!(acme.count_customers(r#"branch is null"#).unwrap(), 3);
    // Nothing in the whole audit log mentions them any more, and the erasure itself is logged.
    let audit = serde_json::to_value(acme.audit(0, 1000).unwrap()).unwrap();
    for personal in ["Somchai", "somchai@", "somchai99", "812345678"] {
        assert!(!contains_text(&audit, personal), "`{personal}` is still in the audit log");
    }
    let last = acme.audit(0, 1000).unwrap().into_iter().last().unwrap();
    assert_eq!((last.action.as_str(), last.entity_id), ("erase", Some(c1)));
    // The other customers are untouched.
    assert_eq!(acme.find_customer("shop", "c-2").unwrap().unwrap().name.as_deref(), Some("Suda Srisuk"));
    assert!(acme.find_customer("shop", "c-1").unwrap().is_none(), "external ids are gone");
}

#[test]
fn a_merged_away_id_is_never_given_to_someone_else() {
    let (_dir, _store, acme) = setup();
    let (c1, c3) = (id(&acme, "shop", "c-1"), id(&acme, "shop", "c-3"));
    acme.merge(&actor(), c1, c3).unwrap();
    let body = json!({"source": "shop", "external_id": "c-99", "name": "Newcomer"}).to_string();
    crate::import(&acme, &actor(), ImportKind::Customers, ImportFormat::Ndjson, Cursor::new(body)).unwrap();
    let newcomer = id(&acme, "shop", "c-99");
    assert!(newcomer > c3, "ids grow past merged-away ones ({newcomer} vs {c3})");
    assert_eq!(acme.resolve(c3).unwrap(), Some(c1));
    assert_eq!(acme.resolve(newcomer).unwrap(), Some(newcomer));
}

#[test]
fn an_export_holds_only_its_own_person_from_shared_audit_entries() {
    let (_dir, _store, acme) = setup();
    // One import batch updates two customers: each export shows only its own before/after.
    let both = [
        json!({"source": "shop", "external_id": "c-1", "email": "somchai@new.example"}),
        json!({"source": "shop", "external_id": "c-2", "email": "suda@new.example"}),
    ];
    let body: String = both.iter().map(|p| p.to_string() + "\n").collect();
    crate::import(&acme, &actor(), ImportKind::Customers, ImportFormat::Ndjson, Cursor::new(body)).unwrap();
    let export = acme.export(id(&acme, "shop", "c-1")).unwrap().unwrap();
    assert!(contains_text(&export["audit"], "somchai@new.example"));
    assert!(!contains_text(&export, "suda"), "another person's data leaked into the export: {:#}", export["audit"]);
}
