//! Property tests of what reads untrusted text: the filter language (plugins send filters) and
//! the importers (anyone with an import key sends files).
//!
//! The suite runs a few cases of each (fast enough for every `cargo test`); a longer hunt:
//!
//! ```text
//! PROPTEST_CASES=20000 cargo test --release -p rapport --test all -- fuzz
//! ```
//!
//! A failing case is printed shrunk (the smallest input that still fails); add it to the unit
//! tests of the module it broke.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rapport::model::{Actor, AggregateOp, AggregateQuery, Aggregation, Column, LabelColumn, ScoreBatch};
use rapport::pipeline::{ImportFormat, ImportKind};
use rapport::plugins::DataSource;
use rapport::store::filter::{self, Aggregate, Field, Filter, Literal, Op};
use rapport::store::{OrgStore, Store};
use serde_json::json;

/// Cases per property: `PROPTEST_CASES` when set, else `default` (kept small for the suite).
fn runner(default: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(default);
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

fn actor() -> Actor {
    Actor { name: "fuzz".into(), role: rapport::model::Role::Admin }
}

// ----- the filter language -----

/// Text that looks like filters: the words, operators and punctuation of the language in any
/// order, so that cases reach deep into the parser rather than stop at the first character.
fn filterish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("and".to_owned()),
        Just("or".to_owned()),
        Just("not".to_owned()),
        Just("in".to_owned()),
        Just("is".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just(",".to_owned()),
        Just("=".to_owned()),
        Just("!=".to_owned()),
        Just("<=".to_owned()),
        Just(">".to_owned()),
        Just("~".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("\\".to_owned()),
        Just("2024-06-01".to_owned()),
        Just("-".to_owned()),
        "(id|name|tag|email|created_at|purchases\\.last|tickets\\.open|attributes\\.[a-z]{0,3}|score\\.[a-z.]{0,4}|label\\.[a-z.]{0,4})",
        "-?[0-9]{1,12}(\\.[0-9]{0,4})?(e[0-9]{1,3})?",
        "\"[^\"]{0,8}\"",
        "\\PC{1,3}",
    ];
    prop::collection::vec(token, 0..40).prop_map(|t| t.join(" "))
}

#[test]
fn parsing_arbitrary_text_never_panics() {
    let check = |input: String| {
        if let Err(e) = filter::parse(&input) {
            // An error points into the input (or at its end).
            prop_assert!(e.position <= input.chars().count().max(filter::MAX_LENGTH), "{e:?} for {input:?}");
        }
        Ok(())
    };
    runner(256).run(&any::<String>(), check).unwrap();
    runner(256).run(&filterish(), check).unwrap();
    // Long inputs: the size limit, deep nesting and many conditions.
    runner(32).run(&prop::collection::vec(filterish(), 1..20).prop_map(|v| v.join(" ")), check).unwrap();
}

fn key() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_-]{0,6}"
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        Just(Field::Id),
        Just(Field::Name),
        Just(Field::Email),
        Just(Field::Phone),
        Just(Field::Branch),
        Just(Field::Distributor),
        Just(Field::CreatedAt),
        Just(Field::UpdatedAt),
        Just(Field::Tag),
        prop_oneof![Just("tier".to_owned()), Just("n".to_owned()), key()].prop_map(Field::Attribute),
        (prop_oneof![Just("p".to_owned()), key()], prop_oneof![Just("s".to_owned()), key()])
            .prop_map(|(plugin, name)| Field::Score { plugin, name }),
        (prop_oneof![Just("p".to_owned()), key()], prop_oneof![Just("l".to_owned()), key()])
            .prop_map(|(plugin, name)| Field::Label { plugin, name }),
        prop_oneof![
            Just(Aggregate::PurchaseCount),
            Just(Aggregate::PurchaseTotalMinor),
            Just(Aggregate::FirstPurchase),
            Just(Aggregate::LastPurchase),
            Just(Aggregate::TicketCount),
            Just(Aggregate::OpenTickets),
            Just(Aggregate::OverdueTickets),
            Just(Aggregate::InteractionCount),
            Just(Aggregate::LastInteraction),
        ]
        .prop_map(Field::Aggregate),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("gold".to_owned()),
        Just("vip".to_owned()),
        Just("Person 3".to_owned()),
        Just("x'); DROP TABLE customers; --".to_owned()),
        "\\PC{0,12}",
        "[\"'\\\\ a-z]{0,8}",
    ]
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![(0i64..80).prop_map(|n| n as f64), (-1e12f64..1e12), Just(-0.0)]
}

fn time() -> impl Strategy<Value = i64> {
    prop_oneof![
        // Whole days, written as dates; and instants to the millisecond, written in RFC 3339.
        (0i64..47_000).prop_map(|d| d * 86_400_000),
        (0i64..4_102_444_800_000),
    ]
}

fn literal(field: &Field) -> BoxedStrategy<Literal> {
    use filter::Type;
    match field.ty() {
        Type::Text => text().prop_map(Literal::Text).boxed(),
        Type::Number => number().prop_map(Literal::Number).boxed(),
        Type::Time => time().prop_map(Literal::Time).boxed(),
        Type::Any => prop_oneof![
            text().prop_map(Literal::Text),
            number().prop_map(Literal::Number),
            any::<bool>().prop_map(Literal::Bool)
        ]
        .boxed(),
    }
}

fn condition() -> impl Strategy<Value = Filter> {
    use filter::Type;
    let ops = |field: &Field| -> Vec<Op> {
        match (field, field.ty()) {
            (Field::Tag, _) => vec![Op::Eq, Op::Ne],
            (_, Type::Text | Type::Any) => vec![Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge, Op::Contains],
            _ => vec![Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge],
        }
    };
    field().prop_flat_map(move |field| {
        let compare = (prop::sample::select(ops(&field)), literal(&field)).prop_map({
            let field = field.clone();
            move |(op, value)| {
                // Booleans compare with = and != only.
                let op = if matches!(value, Literal::Bool(_)) && !matches!(op, Op::Eq | Op::Ne) { Op::Eq } else { op };
                Filter::Compare { field: field.clone(), op, value }
            }
        });
        let within = prop::collection::vec(literal(&field), 1..4).prop_map({
            let field = field.clone();
            move |values| Filter::In { field: field.clone(), values }
        });
        let null = any::<bool>().prop_map({
            let field = field.clone();
            move |negated| Filter::IsNull { field: field.clone(), negated }
        });
        prop_oneof![4 => compare, 1 => within, 1 => null]
    })
}

/// Valid filters, as the parser builds them.
fn filter_ast() -> impl Strategy<Value = Filter> {
    prop_oneof![1 => Just(Filter::All), 9 => condition()]
        .prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
                inner.prop_map(|a| Filter::Not(Box::new(a))),
            ]
        })
        // `All` is only the whole of an empty filter; inside a tree it has no text.
        .prop_filter("All only at the top", |f| matches!(f, Filter::All) || !contains_all(f))
}

fn contains_all(f: &Filter) -> bool {
    match f {
        Filter::All => true,
        Filter::And(a, b) | Filter::Or(a, b) => contains_all(a) || contains_all(b),
        Filter::Not(a) => contains_all(a),
        _ => false,
    }
}

/// The filter as a person would write it (the language has no printer of its own: this one is
/// the test's). Every compound part is parenthesized, so the tree it parses back to is the same.
fn print(f: &Filter) -> String {
    match f {
        Filter::All => String::new(),
        Filter::And(a, b) => format!("({}) and ({})", print(a), print(b)),
        Filter::Or(a, b) => format!("({}) or ({})", print(a), print(b)),
        Filter::Not(a) => format!("not ({})", print(a)),
        Filter::Compare { field, op, value } => format!("{} {} {}", name(field), op_text(*op), value_text(value)),
        Filter::In { field, values } => {
            format!("{} in ({})", name(field), values.iter().map(value_text).collect::<Vec<_>>().join(", "))
        }
        Filter::IsNull { field, negated } => format!("{} is {}null", name(field), if *negated { "not " } else { "" }),
    }
}

fn name(field: &Field) -> String {
    match field {
        Field::Id => "id".into(),
        Field::Name => "name".into(),
        Field::Email => "email".into(),
        Field::Phone => "phone".into(),
        Field::Branch => "branch".into(),
        Field::Distributor => "distributor".into(),
        Field::CreatedAt => "created_at".into(),
        Field::UpdatedAt => "updated_at".into(),
        Field::Tag => "tag".into(),
        Field::Attribute(key) => format!("attributes.{key}"),
        Field::Score { plugin, name } => format!("score.{plugin}.{name}"),
        Field::Label { plugin, name } => format!("label.{plugin}.{name}"),
        Field::Aggregate(a) => match a {
            Aggregate::PurchaseCount => "purchases.count",
            Aggregate::PurchaseTotalMinor => "purchases.total_minor",
            Aggregate::FirstPurchase => "purchases.first",
            Aggregate::LastPurchase => "purchases.last",
            Aggregate::TicketCount => "tickets.count",
            Aggregate::OpenTickets => "tickets.open",
            Aggregate::OverdueTickets => "tickets.overdue",
            Aggregate::InteractionCount => "interactions.count",
            Aggregate::LastInteraction => "interactions.last",
        }
        .into(),
    }
}

fn op_text(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Contains => "~",
    }
}

fn value_text(l: &Literal) -> String {
    match l {
        Literal::Text(s) => filter::quote(s),
        Literal::Number(n) => format!("{n}"),
        Literal::Bool(b) => b.to_string(),
        Literal::Time(ms) => {
            let t = time::OffsetDateTime::from_unix_timestamp_nanos(*ms as i128 * 1_000_000).unwrap();
            if ms % 86_400_000 == 0 {
                t.date().to_string()
            } else {
                format!("\"{}\"", t.format(&time::format_description::well_known::Rfc3339).unwrap())
            }
        }
    }
}

#[test]
fn printed_filters_parse_back_to_the_same_filter() {
    runner(256)
        .run(&filter_ast(), |f| {
            let text = print(&f);
            let parsed = filter::parse(&text).map_err(|e| TestCaseError::fail(format!("{e} in {text:?}")))?;
            prop_assert_eq!(parsed, f, "{}", text);
            Ok(())
        })
        .unwrap();
}

/// Two organizations holding the same people (same names, tags, attributes, purchases, scores):
/// a filter that selects a customer of one selects its twin in the other, so a query that
/// escaped its organization would show as extra rows, and its counts would differ.
fn twin_orgs() -> (tempfile::TempDir, Store, OrgStore, OrgStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut orgs = Vec::new();
    for slug in ["a", "b"] {
        store.create_org(slug, slug).unwrap();
        let org = store.org(slug).unwrap();
        let people: String = (0..30)
            .map(|n| {
                let tier = ["gold", "silver", "bronze"][n % 3];
                let mut person = json!({
                    "source": "shop", "external_id": format!("c-{n}"), "name": format!("Person {n}"),
                    "tags": if n % 4 == 0 { json!(["vip"]) } else { json!([]) },
                    "attributes": { "tier": tier, "n": n, "flag": n % 2 == 0 },
                });
                if n % 5 != 0 {
                    person["email"] = json!(format!("p{n}@example.com"));
                    person["branch"] = json!(format!("b-{}", n % 3));
                }
                person.to_string() + "\n"
            })
            .collect();
        crate::import(&org, &actor(), ImportKind::Customers, ImportFormat::Ndjson, Cursor::new(people)).unwrap();
        let orders: String = (0..60)
            .map(|n| {
                let kind = if n % 7 == 0 { "ticket" } else { "purchase" };
                json!({
                    "source": "shop", "external_id": format!("o-{n}"), "kind": kind,
                    "customer": { "source": "shop", "external_id": format!("c-{}", n % 20) },
                    "occurred_at": 1_600_000_000_000i64 + n * 86_400_000, "amount_minor": 100 * n, "currency": "USD",
                })
                .to_string()
                    + "\n"
            })
            .collect();
        crate::import(&org, &actor(), ImportKind::Interactions, ImportFormat::Ndjson, Cursor::new(orders)).unwrap();
        let ids = all_ids(&org, "");
        let batch = ScoreBatch {
            scores: vec![Column { name: "s".into(), values: (0..ids.len()).map(|i| i as f64).collect() }],
            labels: vec![LabelColumn {
                name: "l".into(),
                categories: vec!["low".into(), "high".into()],
                codes: (0..ids.len() as u32).map(|i| i % 2).collect(),
            }],
            explanations: Vec::new(),
        };
        let ordered: Vec<u64> = ids.iter().copied().collect();
        org.write(|tx| tx.save_scores("p", &batch, &ordered, 1_700_000_000_000)).unwrap();
        orgs.push(org);
    }
    let b = orgs.pop().unwrap();
    let a = orgs.pop().unwrap();
    (dir, store, a, b)
}

fn all_ids(org: &OrgStore, filter: &str) -> BTreeSet<u64> {
    try_ids(org, filter).unwrap()
}

/// Every customer a filter selects, through pages of 7 (so that cursors are exercised too). A
/// query that escaped its scope can also escape its cursor and page forever: past the pages two
/// organizations could fill, that is an error, not a hang.
fn try_ids(org: &OrgStore, filter: &str) -> Result<BTreeSet<u64>, String> {
    let mut ids = BTreeSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let page = org.list_customers(filter, cursor.as_deref(), 7).map_err(|e| e.to_string())?;
        ids.extend(page.items.iter().map(|c| c.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(ids),
        }
    }
    Err(format!("paging never ended; {} customers so far", ids.len()))
}

/// Whether a filter selects twins alike: ids and times differ between the organizations.
fn org_neutral(f: &Filter) -> bool {
    match f {
        Filter::All => true,
        Filter::And(a, b) | Filter::Or(a, b) => org_neutral(a) && org_neutral(b),
        Filter::Not(a) => org_neutral(a),
        Filter::Compare { field, .. } | Filter::In { field, .. } | Filter::IsNull { field, .. } => {
            !matches!(field, Field::Id | Field::Distributor | Field::CreatedAt | Field::UpdatedAt)
        }
    }
}

#[test]
fn generated_filters_run_on_sqlite_and_never_leave_the_organization() {
    let (_dir, _store, a, b) = twin_orgs();
    let (ids_a, ids_b) = (all_ids(&a, ""), all_ids(&b, ""));
    assert_eq!((ids_a.len(), ids_b.len()), (30, 30));
    assert!(ids_a.is_disjoint(&ids_b));
    runner(128)
        .run(&filter_ast(), |f| {
            let text = print(&f);
            // SQLite accepts what the filter compiles to (an error here would be a 500).
            let found = try_ids(&a, &text).map_err(|e| TestCaseError::fail(format!("{e} for {text:?}")))?;
            prop_assert!(found.is_subset(&ids_a), "{text:?} reached another organization: {found:?}");
            let count = a.count_customers(&text).unwrap();
            prop_assert_eq!(count, found.len() as u64, "count and list agree for {}", text);
            // The plugins' aggregate goes through the same compiler.
            let query = AggregateQuery {
                filter: text.clone(),
                group_by: vec!["tag".into()],
                aggregations: vec![Aggregation { op: AggregateOp::Count, field: None }],
                limit: 1000,
            };
            let grouped = DataSource::aggregate(&a, &query).unwrap().unwrap();
            let members: u64 = grouped.counts.iter().sum();
            prop_assert!(members <= 2 * count, "aggregate counted {members} for {count} customers: {text:?}");
            if org_neutral(&f) {
                let twins = all_ids(&b, &text);
                prop_assert_eq!(found.len(), twins.len(), "twins are selected alike by {}", text);
            }
            Ok(())
        })
        .unwrap();
}

// ----- the importers -----

#[derive(Debug, Clone)]
enum Line {
    /// A valid customer record (its number is its external id).
    Good { n: u32, name: String },
    /// An exact copy of an earlier good line (a re-sent record).
    Repeat(usize),
    /// Arbitrary text.
    Garbage(String),
    /// JSON of the wrong shape.
    Wrong(serde_json::Value),
}

fn lines() -> impl Strategy<Value = Vec<Line>> {
    let line = prop_oneof![
        4 => (0u32..10_000, "\\PC{0,30}").prop_map(|(n, name)| Line::Good { n, name }),
        1 => any::<usize>().prop_map(Line::Repeat),
        3 => "[^\n]{0,60}".prop_map(Line::Garbage),
        2 => prop_oneof![
            Just(json!({ "source": 5, "external_id": "x" })),
            Just(json!({ "source": "shop" })),
            Just(json!({ "source": "shop", "external_id": "w", "org_id": 2 })),
            Just(json!({ "source": "shop", "external_id": "w", "tags": "vip" })),
            Just(json!({ "source": "shop", "external_id": "w", "attributes": [1] })),
            Just(json!([1, 2, 3])),
            Just(json!("a string")),
        ]
        .prop_map(Line::Wrong),
    ];
    prop::collection::vec(line, 0..60)
}

/// What an NDJSON file of these lines must do: its text, the lines that must be rejected (by
/// number), the lines accepted, and the external ids that must exist after.
struct Expected {
    text: String,
    rejected: Vec<u64>,
    accepted: u64,
    ids: BTreeSet<String>,
}

fn ndjson(lines: &[Line]) -> Expected {
    let mut text = String::new();
    let mut rejected = Vec::new();
    let mut accepted = 0;
    let mut ids = BTreeSet::new();
    let mut good: Vec<String> = Vec::new();
    // Unique numbers among good lines, so that every good line's content is its own (a repeat
    // copies one exactly): re-sending must change nothing.
    let mut used = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        let number = i as u64 + 1;
        let (record, ok) = match line {
            Line::Good { n, name } if used.insert(*n) => {
                ids.insert(format!("c-{n}"));
                let record = json!({ "source": "shop", "external_id": format!("c-{n}"), "name": name }).to_string();
                good.push(record.clone());
                (record, true)
            }
            Line::Good { .. } => ("{\"source\": \"shop\", \"external_id\": 7".to_owned(), false),
            Line::Repeat(k) if !good.is_empty() => (good[k % good.len()].clone(), true),
            Line::Repeat(_) => (String::new(), true),
            Line::Garbage(s) => (s.clone(), false),
            Line::Wrong(v) => (v.to_string(), false),
        };
        if record.trim().is_empty() {
            // Blank lines are skipped, neither accepted nor rejected.
        } else if ok {
            accepted += 1;
        } else {
            rejected.push(number);
        }
        text.push_str(&record);
        text.push('\n');
    }
    Expected { text, rejected, accepted, ids }
}

fn snapshot(org: &OrgStore) -> BTreeMap<u64, serde_json::Value> {
    let mut all = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = org.list_customers("", cursor.as_deref(), 500).unwrap();
        for c in page.items {
            all.insert(c.id, json!([c.name, c.external_ids.len(), c.tags, c.attributes]));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return all,
        }
    }
}

#[test]
fn ndjson_imports_report_bad_lines_land_good_ones_and_are_idempotent() {
    runner(64)
        .run(&lines(), |lines| {
            let expected = ndjson(&lines);
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            store.create_org("acme", "Acme").unwrap();
            let org = store.org("acme").unwrap();
            let import = || {
                crate::import(
                    &org,
                    &actor(),
                    ImportKind::Customers,
                    ImportFormat::Ndjson,
                    Cursor::new(expected.text.clone()),
                )
            };
            let first = import().map_err(|e| TestCaseError::fail(format!("the import failed: {e}")))?;
            let lines_rejected: Vec<u64> = first.rejected.iter().map(|r| r.line).collect();
            prop_assert_eq!(&lines_rejected, &expected.rejected, "{:?}", first.rejected);
            prop_assert!(first.rejected.iter().all(|r| !r.error.is_empty()));
            prop_assert_eq!(first.accepted, expected.accepted);
            prop_assert_eq!(first.created, expected.ids.len() as u64);
            prop_assert_eq!(org.counts().unwrap().customers, expected.ids.len() as u64);
            for id in &expected.ids {
                prop_assert!(org.find_customer("shop", id).unwrap().is_some(), "{} landed", id);
            }
            let before = snapshot(&org);
            let audit = org.counts().unwrap().audit;

            let second = import().unwrap();
            prop_assert_eq!((second.created, second.updated), (0, 0), "a re-run changes nothing");
            prop_assert_eq!(second.unchanged, expected.accepted);
            prop_assert_eq!(second.rejected, first.rejected);
            prop_assert_eq!(snapshot(&org), before);
            prop_assert_eq!(org.counts().unwrap().audit, audit, "and audits nothing");
            Ok(())
        })
        .unwrap();
}

fn csv_cell() -> impl Strategy<Value = String> {
    "[^\r\n]{0,20}"
}

/// CSV rows: good ones (three cells, quoted as a CSV writer would) and rows with a wrong number
/// of cells, mixed; arbitrary text after the header must never panic or abort the import.
#[test]
fn csv_imports_report_bad_rows_by_line_and_are_idempotent() {
    let row = prop_oneof![
        3 => (0u32..10_000, csv_cell()).prop_map(|(n, name)| (format!("shop,c-{n},\"{}\"", name.replace('"', "\"\"")), Some(n))),
        1 => "[^\r\n\",]{1,30}".prop_map(|s| (s, None)),
        1 => "[^\r\n\",]{0,10},[^\r\n\",]{0,10},[^\r\n\",]{0,10},[^\r\n\",]{0,10}".prop_map(|s| (s, None)),
    ];
    runner(64)
        .run(&prop::collection::vec(row, 0..40), |rows| {
            let mut text = String::from("source,external_id,name\n");
            let mut expected_rejected = Vec::new();
            let mut ids = BTreeSet::new();
            for (i, (row, n)) in rows.iter().enumerate() {
                text.push_str(row);
                text.push('\n');
                match n {
                    Some(n) => drop(ids.insert(format!("c-{n}"))),
                    None => expected_rejected.push(i as u64 + 2),
                }
            }
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            store.create_org("acme", "Acme").unwrap();
            let org = store.org("acme").unwrap();
            let import =
                || crate::import(&org, &actor(), ImportKind::Customers, ImportFormat::Csv, Cursor::new(text.clone()));
            let first = import().map_err(|e| TestCaseError::fail(format!("the import failed: {e}")))?;
            let rejected: Vec<u64> = first.rejected.iter().map(|r| r.line).collect();
            prop_assert_eq!(&rejected, &expected_rejected, "{:?}\n{}", first.rejected, text);
            prop_assert_eq!(org.counts().unwrap().customers, ids.len() as u64);
            let before = snapshot(&org);
            let second = import().unwrap();
            prop_assert_eq!(second.created, 0);
            prop_assert_eq!(second.rejected, first.rejected);
            prop_assert_eq!(snapshot(&org), before);
            Ok(())
        })
        .unwrap();

    // Arbitrary text, quotes and all: no panic, no aborted import, lines within the file.
    runner(128)
        // (`\r` ends a CSV record as `\n` does, so it is left out to count rows by `\n`.)
        .run(&prop::collection::vec("[^\r\n]{0,40}", 0..20), |rows| {
            let text = format!("source,external_id,name\n{}\n", rows.join("\n"));
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            store.create_org("acme", "Acme").unwrap();
            let org = store.org("acme").unwrap();
            let report =
                crate::import(&org, &actor(), ImportKind::Customers, ImportFormat::Csv, Cursor::new(text.clone()))
                    .map_err(|e| TestCaseError::fail(format!("the import failed: {e}")))?;
            let last = text.lines().count() as u64 + 1;
            prop_assert!(report.rejected.iter().all(|r| (1..=last).contains(&r.line)), "{:?}", report.rejected);
            prop_assert!(report.accepted + report.rejected.len() as u64 <= rows.len() as u64);
            Ok(())
        })
        .unwrap();
}
