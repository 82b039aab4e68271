//! Reporter: distributor downline performance. For one distributor's sponsor tree (or every
//! tree the organization's customers belong to): per distributor, their customers and how many
//! bought lately, their personal volume (their customers' purchases), and the group volume and
//! active customers of them and everyone below — with a tree chart (node, then parent).
//!
//! The tree comes from `store::downline`; the numbers from two `store::aggregate` calls grouped by
//! distributor (the host sums however many customers there are). The roll-up is in `logic.rs`.

mod logic;

// B-trees, not hash maps: std's hasher seeds itself from `wasi:random`, which the host does not
// grant (a component importing it is refused at install).
use std::collections::{BTreeMap, BTreeSet};

use logic::Node;
use rapport_plugin::{
    AggregateOp, AggregateQuery, AggregateResult, Aggregation, Cell, Chart, ChartKind, ColumnType, Distributor,
    DistributorStatus, PluginError, Report, ReportColumn, Reporter, store,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Params {
    /// The distributor whose tree to report; every tree with customers when none.
    distributor: Option<u64>,
    /// A customer is active with a purchase within this many days before `as_of`.
    active_days: u32,
    /// The time activity is judged at; the newest interaction's time by default. Not before the
    /// newest purchase: the host's aggregates cannot answer for a past state.
    as_of: Option<serde_json::Value>,
    /// Levels below the root to include.
    max_depth: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params { distributor: None, active_days: 90, as_of: None, max_depth: 1_000 }
    }
}

fn param(message: impl Into<String>, name: &str) -> PluginError {
    PluginError::field(format!("params.{name}: {}", message.into()), format!("params.{name}"))
}

fn aggregate(filter: String, aggregations: Vec<Aggregation>) -> Result<AggregateResult, PluginError> {
    store::aggregate(&AggregateQuery { filter, group_by: vec!["distributor".into()], aggregations, limit: 10_000 })
        .map_err(PluginError::new)
}

/// Per distributor id: a value of the result (the count when `column` is none).
fn per_distributor(result: &AggregateResult, column: Option<usize>) -> BTreeMap<u64, f64> {
    (0..result.counts.len())
        .filter_map(|i| {
            let id = result.keys[0].values[i].as_deref()?.parse::<f64>().ok()? as u64;
            let v = match column {
                Some(c) => result.values[c].values[i],
                None => result.counts[i] as f64,
            };
            Some((id, v))
        })
        .collect()
}

fn status(s: DistributorStatus) -> &'static str {
    match s {
        DistributorStatus::Active => "active",
        DistributorStatus::Inactive => "inactive",
        DistributorStatus::Terminated => "terminated",
    }
}

/// How the tree chart names a node: unique, and readable.
fn label(d: &Distributor) -> String {
    format!("{} (#{})", d.name, d.id)
}

struct DownlineReport;

impl Reporter for DownlineReport {
    fn run(params: String) -> Result<Report, PluginError> {
        let params: Params =
            serde_json::from_str(&params).map_err(|e| PluginError::field(format!("invalid params: {e}"), "params"))?;
        if params.active_days == 0 {
            return Err(param("must be at least 1 day", "active_days"));
        }
        let volumes = aggregate(String::new(), vec![Aggregation::of(AggregateOp::Sum, "purchases.total_minor")])?;
        // The newest interaction (the default as_of) and the newest purchase (the earliest as_of
        // the host's aggregates can answer for), in one call.
        let newest = store::aggregate(&AggregateQuery {
            filter: String::new(),
            group_by: Vec::new(),
            aggregations: vec![
                Aggregation::of(AggregateOp::Max, "interactions.last"),
                Aggregation::of(AggregateOp::Max, "purchases.last"),
            ],
            limit: 1,
        })
        .map_err(PluginError::new)?;
        let newest = |c: usize| newest.values[c].values.first().copied().filter(|v| v.is_finite()).map(|v| v as i64);
        let as_of = match &params.as_of {
            Some(v) => {
                let as_of = plugin_kit::parse_time(v).map_err(|e| param(e, "as_of"))?;
                // The host's aggregates know each customer's last purchase and all-time spend, not
                // the state at a past time: before the newest purchase, a customer who bought in
                // the window and again after as_of would count as inactive, and volumes would
                // include later purchases. A wrong answer is worse than none.
                if let Some(purchase) = newest(1).filter(|&p| as_of < p) {
                    return Err(param(
                        format!(
                            "{} is before the newest purchase ({}): this report reads each customer's last \
                             purchase and all-time volume, so it cannot show an earlier state; give a time at \
                             or after that purchase, or leave as_of out",
                            rfc3339(as_of),
                            rfc3339(purchase)
                        ),
                        "as_of",
                    ));
                }
                as_of
            }
            None => newest(0).unwrap_or(0),
        };
        let since = as_of - i64::from(params.active_days) * plugin_kit::DAY_MS;
        // The filter language reads an RFC 3339 string as a time, to the millisecond.
        let active = aggregate(format!("purchases.last >= \"{}\"", rfc3339(since)), Vec::new())?;
        let (customers, volume, active) =
            (per_distributor(&volumes, None), per_distributor(&volumes, Some(0)), per_distributor(&active, None));

        // The trees: the one asked for, or the roots above every distributor with customers.
        let roots: Vec<Distributor> = match params.distributor {
            Some(id) => vec![
                store::get_distributor(id)
                    .ok_or_else(|| param(format!("no distributor {id} in this organization"), "distributor"))?,
            ],
            None => {
                // Walk up from each distributor with customers; every distributor on a path is
                // remembered with its root, so each is read once.
                let mut root_of: BTreeMap<u64, u64> = BTreeMap::new();
                for &start in customers.keys() {
                    let mut path = vec![start];
                    let root = loop {
                        let at = *path.last().expect("the path starts with one");
                        if let Some(&root) = root_of.get(&at) {
                            break root;
                        }
                        match store::get_distributor(at).and_then(|d| d.sponsor) {
                            // The host keeps the tree acyclic; a path longer than the tree is not walked forever.
                            Some(sponsor) if path.len() <= customers.len() + 10_000 => path.push(sponsor),
                            _ => break at,
                        }
                    };
                    root_of.extend(path.into_iter().map(|d| (d, root)));
                }
                let roots: BTreeSet<u64> = root_of.into_values().collect();
                roots.into_iter().filter_map(store::get_distributor).collect()
            }
        };

        let mut nodes = Vec::new();
        let mut info: BTreeMap<u64, Distributor> = BTreeMap::new();
        for root in roots {
            let members = store::downline(root.id, params.max_depth);
            let mut tree = vec![(root, 0)];
            tree.extend(members.into_iter().map(|m| (m.distributor, m.depth)));
            for (d, depth) in tree {
                let id = d.id;
                nodes.push(Node {
                    id,
                    parent: if depth == 0 { None } else { d.sponsor },
                    depth,
                    customers: customers.get(&id).copied().unwrap_or(0.0) as u64,
                    active_customers: active.get(&id).copied().unwrap_or(0.0) as u64,
                    personal_volume: volume.get(&id).copied().filter(|v| v.is_finite()).unwrap_or(0.0) as i64,
                });
                info.insert(id, d);
            }
        }
        let rows = logic::roll_up(nodes)
            .into_iter()
            .map(|r| {
                let d = &info[&r.node.id];
                let parent = r.node.parent.and_then(|p| info.get(&p)).map_or(Cell::Null, |p| Cell::Text(label(p)));
                vec![
                    Cell::Text(label(d)),
                    parent,
                    Cell::Integer(d.id as i64),
                    Cell::Text(d.name.clone()),
                    r.node.parent.map_or(Cell::Null, |p| Cell::Integer(p as i64)),
                    Cell::Integer(i64::from(r.node.depth)),
                    d.rank.clone().map_or(Cell::Null, Cell::Text),
                    Cell::Text(status(d.status).into()),
                    Cell::Integer(r.node.customers as i64),
                    Cell::Integer(r.node.active_customers as i64),
                    Cell::Integer(r.node.personal_volume),
                    Cell::Integer(r.group_volume),
                    Cell::Integer(r.group_active_customers as i64),
                    Cell::Integer(r.downline as i64),
                ]
            })
            .collect();
        let column = ReportColumn::new;
        Ok(Report {
            title: Some(format!(
                "Downline performance, active = a purchase in the {} days to {}",
                params.active_days,
                plugin_kit::date(as_of)
            )),
            columns: vec![
                column("node", ColumnType::Text),
                column("parent", ColumnType::Text),
                column("distributor", ColumnType::Integer),
                column("name", ColumnType::Text),
                column("sponsor", ColumnType::Integer),
                column("depth", ColumnType::Integer),
                column("rank", ColumnType::Text),
                column("status", ColumnType::Text),
                column("customers", ColumnType::Integer),
                column("active_customers", ColumnType::Integer),
                column("personal_volume_minor", ColumnType::Money),
                column("group_volume_minor", ColumnType::Money),
                column("group_active_customers", ColumnType::Integer),
                column("downline", ColumnType::Integer),
            ],
            rows,
            chart: Some(Chart {
                kind: ChartKind::Tree,
                title: Some("Sponsor tree by group volume".into()),
                x: "node".into(),
                y: vec!["parent".into(), "group_volume_minor".into()],
            }),
        })
    }
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds.
fn rfc3339(ms: i64) -> String {
    let in_day = ms.rem_euclid(plugin_kit::DAY_MS);
    let (h, m, s, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{}T{h:02}:{m:02}:{s:02}.{milli:03}Z", plugin_kit::date(ms))
}

rapport_plugin::export_reporter!(DownlineReport);
