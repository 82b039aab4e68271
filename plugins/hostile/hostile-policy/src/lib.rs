//! A policy that attacks its host in the way `{"attack": "..."}` names. One component with many
//! behaviours keeps the test build small; each attack must end in its own error, in bounded time,
//! and leave the runtime able to serve the next call.

use std::hint::black_box;

use std::collections::BTreeSet;

use rapport_plugin::{
    Action, AggregateOp, AggregateQuery, Aggregation, Change, Customer, Decision, FieldPatch, PluginError, Policy,
    store,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    attack: String,
    /// Attack from `after` instead: `action-loop` asks for a new tag on every change it sees,
    /// so its own actions trigger it again without end.
    #[serde(default)]
    after: Option<String>,
    /// `snoop`: ids to guess (1..=guess) in every host function that takes an id.
    #[serde(default)]
    guess: u64,
    /// `snoop`: words to try as names, emails, external ids and inside crafted filters (the test
    /// passes another organization's names here, as an attacker who knows them would).
    #[serde(default)]
    probes: Vec<String>,
    /// `spin`: loop iterations to burn before allowing: a slow policy that stays within its limit.
    #[serde(default)]
    iterations: u64,
}

struct Hostile;

#[allow(unconditional_recursion)] // the point: recursion with no bottom
fn recurse(depth: u64) -> u64 {
    // black_box keeps the compiler from turning this into a loop.
    black_box(depth) + recurse(black_box(depth + 1))
}

impl Policy for Hostile {
    fn before(_change: Change) -> Result<Decision, PluginError> {
        let config: Config = rapport_plugin::config()?;
        match config.attack.as_str() {
            "none" => Ok(Decision::Allow),
            "spin" => {
                let mut x = 0u64;
                for i in 0..config.iterations {
                    x = black_box(x.wrapping_add(i));
                }
                black_box(x);
                Ok(Decision::Allow)
            }
            "loop" => loop {
                black_box(());
            },
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            "recursion" => Ok(Decision::Warn(recurse(0).to_string())),
            "panic" => panic!("hostile plugin panicked on purpose"),
            "output" => Ok(Decision::Warn("x".repeat(4 << 20))),
            "host-calls" => loop {
                black_box(rapport_plugin::config_json());
            },
            "bad-json" => Ok(Decision::Patch(vec![FieldPatch { field: "email".into(), value: "{not json".into() }])),
            "error" => Err(PluginError::config("the hostile plugin reports an error on purpose")),
            // Malformed values: each must be refused by the host with the plugin's name, and the
            // write must not land.
            "bad-attributes" => Ok(patch("attributes", "[1, 2, 3]")),
            "bad-json-attribute" => Ok(patch("attributes.tier", "{\"unclosed\": ")),
            "patch-id" => Ok(patch("id", "1")),
            "patch-created-at" => Ok(patch("created_at", "0")),
            "patch-updated-at" => Ok(patch("updated_at", "0")),
            "patch-unknown-field" => Ok(patch("org_id", "2")),
            "huge-name" => Ok(patch("name", &format!("\"{}\"", "x".repeat(900 << 10)))),
            "huge-attribute" => Ok(patch("attributes.blob", &format!("\"{}\"", "y".repeat(512 << 10)))),
            "nan-attribute" => Ok(patch("attributes.score", "NaN")),
            // Valid JSON the record cannot take: an email must be a string.
            "patch-wrong-type" => Ok(patch("email", "42")),
            "infinite-attribute" => Ok(patch("attributes.score", "1e999")),
            // Read everything reachable through the store interface and report it.
            "snoop" => Ok(Decision::Warn(snoop(&config))),
            // Wait in the host: heavy aggregates, one after another, never returning. The epoch
            // deadline cannot interrupt a host call, so the host must check it between calls.
            "host-sleep" => loop {
                let query = AggregateQuery {
                    filter: "purchases.total_minor >= 0 or tickets.open >= 0 or interactions.count >= 0".into(),
                    group_by: vec!["attributes.k".into(), "tag".into()],
                    aggregations: [AggregateOp::P99, AggregateOp::Mean, AggregateOp::Max]
                        .into_iter()
                        .map(|op| Aggregation { op, field: Some("purchases.total_minor".into()) })
                        .collect(),
                    limit: 10_000,
                };
                black_box(store::aggregate(&query).ok());
            },
            other => Err(PluginError::config(format!("unknown attack `{other}`"))),
        }
    }

    fn after(change: Change) -> Result<Vec<Action>, PluginError> {
        let config: Config = rapport_plugin::config()?;
        match (config.after.as_deref(), change.after_customer()) {
            (Some("action-loop"), Some(c)) => Ok(vec![Action::AddTag((c.id, format!("loop-{}", change.depth)))]),
            (Some("trap"), _) => panic!("hostile plugin panicked in `after` on purpose"),
            // A queued message's variables must be a JSON object.
            (Some("bad-variables"), Some(c)) => Ok(vec![Action::QueueMessage(rapport_plugin::OutboundMessage {
                customer: c.id,
                channel: "email".into(),
                template: "welcome".into(),
                variables: "[1, 2]".into(),
            })]),
            _ => Ok(Vec::new()),
        }
    }
}

fn patch(field: &str, value: &str) -> Decision {
    Decision::Patch(vec![FieldPatch { field: field.into(), value: value.into() }])
}

/// What a snooping plugin saw through the store interface: every id and every piece of text of
/// every record any host function answered with, so the test can check none is another
/// organization's. A compact text report (JSON would need more than `alloc` serde here).
#[derive(Default)]
struct Seen {
    customers: BTreeSet<u64>,
    interactions: BTreeSet<u64>,
    distributors: BTreeSet<u64>,
    text: BTreeSet<String>,
    /// Customers counted by aggregates (one total per aggregate call that answered).
    aggregate_counts: Vec<u64>,
    errors: usize,
}

impl Seen {
    fn customer(&mut self, c: &Customer) {
        self.customers.insert(c.id);
        for text in [&c.name, &c.email, &c.phone, &c.branch].into_iter().flatten() {
            self.text.insert(text.clone());
        }
        self.text.insert(c.attributes.clone());
        self.text.extend(c.tags.iter().cloned());
        for e in &c.external_ids {
            self.text.insert(format!("{}:{}", e.source, e.id));
        }
    }
}

fn snoop(config: &Config) -> String {
    let mut seen = Seen::default();
    let ids = 1..=config.guess.max(1);
    for id in ids.clone() {
        if let Some(c) = store::get_customer(id) {
            seen.customer(&c);
        }
        for i in store::timeline(id, None, 500) {
            seen.interactions.insert(i.id);
            seen.customers.insert(i.customer);
            seen.text.extend([i.subject, i.body].into_iter().flatten());
            seen.text.insert(i.attributes);
        }
        if let Some(d) = store::get_distributor(id) {
            seen.distributors.insert(d.id);
            seen.text.insert(d.name);
        }
        for m in store::downline(id, 100) {
            seen.distributors.insert(m.distributor.id);
            seen.text.insert(m.distributor.name);
        }
    }
    for probe in &config.probes {
        for source in ["shop", "api", "import", "", probe.as_str()] {
            if let Some(c) = store::find_customer(source, probe) {
                seen.customer(&c);
            }
        }
    }
    // Filters that try to break out of the organization's scope, or into the SQL around them.
    let mut filters: Vec<String> = [
        "",
        "id > 0 or 1=1",
        "id > 0 or id < 0 or id = 0",
        "not id = 0",
        "id >= -9223372036854775808",
        "'; DROP TABLE customers; --",
        "name = \"x') OR 1=1 --\"",
        "name = \"x\" or 1 = 1",
        "attributes.x\") OR 1=1 -- = 1",
        "email ~ \"%\" or name ~ \"\"",
        "org_id = 2",
        "c.org_id != 0",
        "score.x') OR 1=1 --.y >= 0",
        "tag is null or tag is not null",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let ids: Vec<String> = ids.map(|n| n.to_string()).collect();
    filters.push(format!("id in ({})", ids.join(", ")));
    for probe in &config.probes {
        let quoted = probe.replace('\\', "\\\\").replace('"', "\\\"");
        filters.push(format!("name = \"{quoted}\" or email = \"{quoted}\" or branch = \"{quoted}\""));
        filters.push(format!("name ~ \"{quoted}\" or email ~ \"{quoted}\" or tag = \"{quoted}\""));
        filters.push(format!("attributes.secret = \"{quoted}\" or label.{probe}.x = \"{quoted}\""));
    }
    let cursors = [None, Some("0"), Some("1"), Some("-1"), Some("' OR 1=1 --"), Some("999999999999")];
    for filter in &filters {
        for start in cursors {
            let mut cursor = start.map(str::to_owned);
            for _ in 0..20 {
                match store::query_customers(filter, cursor.as_deref(), 500) {
                    Ok(page) => {
                        page.items.iter().for_each(|c| seen.customer(c));
                        cursor = page.next_cursor;
                    }
                    Err(_) => {
                        seen.errors += 1;
                        cursor = None;
                    }
                }
                if cursor.is_none() {
                    break;
                }
            }
        }
        for group in [vec![], vec!["branch"], vec!["tag"], vec!["distributor"], vec!["attributes.secret"]] {
            let query = AggregateQuery {
                filter: filter.clone(),
                group_by: group.into_iter().map(str::to_owned).collect(),
                aggregations: vec![Aggregation { op: AggregateOp::Count, field: None }],
                limit: 10_000,
            };
            match store::aggregate(&query) {
                Ok(result) => {
                    seen.aggregate_counts.push(result.counts.iter().sum());
                    for key in result.keys {
                        seen.text.extend(key.values.into_iter().flatten());
                    }
                }
                Err(_) => seen.errors += 1,
            }
        }
    }
    let list = |set: &BTreeSet<u64>| set.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let max_count = seen.aggregate_counts.iter().max().copied().unwrap_or(0);
    let text: Vec<String> = seen.text.into_iter().filter(|t| !t.is_empty() && t != "{}").collect();
    format!(
        "customers=[{}] interactions=[{}] distributors=[{}] max_aggregate_count={max_count} errors={} text={}",
        list(&seen.customers),
        list(&seen.interactions),
        list(&seen.distributors),
        seen.errors,
        text.join("\u{1f}"),
    )
}

rapport_plugin::export_policy!(Hostile);
