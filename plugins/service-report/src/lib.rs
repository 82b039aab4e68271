//! Reporter: service issues by branch, channel and category. Per group: tickets, how many are
//! still open, how many of those are past their due time, and the median hours from opening to
//! closing — with a bar chart of open and overdue tickets, what a service manager acts on.
//!
//! The host's `aggregate` summarizes customers, not interactions: it cannot group tickets by
//! their channel or category, nor read due and close times. So the report pages through the
//! customers that have tickets (`query-customers`) and reads each one's timeline; the host-call
//! limit bounds how many customers one run can read, and the report says so up front (narrow it
//! with `filter`) instead of failing half way. The arithmetic is in `logic.rs`.

mod logic;

// B-trees, not hash maps: std's hasher seeds itself from `wasi:random`, which the host does not
// grant (a component importing it is refused at install).
use std::collections::BTreeSet;

use logic::{KEYS, Ticket};
use rapport_plugin::{
    AggregateOp, AggregateQuery, Aggregation, Cell, Chart, ChartKind, ColumnType, PluginError, Report, ReportColumn,
    Reporter, store,
};
use serde::Deserialize;

/// Host calls one run may spend on customers' timelines: the reporter's limit is 10 000 calls,
/// and the pages of customers, the aggregates and log lines need a few of their own.
const CALL_BUDGET: u64 = 9_000;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Params {
    /// Only customers matching this filter (the filter language of the customer list).
    filter: String,
    /// Group by these keys, in this order: any of "branch", "channel", "category".
    group_by: Vec<String>,
    /// The time overdue is judged at; the newest interaction's time by default.
    as_of: Option<serde_json::Value>,
}

impl Default for Params {
    fn default() -> Self {
        Params { filter: String::new(), group_by: KEYS.iter().map(|k| (*k).to_owned()).collect(), as_of: None }
    }
}

fn param(message: impl Into<String>, name: &str) -> PluginError {
    PluginError::field(format!("params.{name}: {}", message.into()), format!("params.{name}"))
}

/// The customer filter and "has tickets", combined.
fn with_tickets(filter: &str) -> String {
    if filter.trim().is_empty() { "tickets.count > 0".into() } else { format!("({filter}) and tickets.count > 0") }
}

struct ServiceReport;

impl Reporter for ServiceReport {
    fn run(params: String) -> Result<Report, PluginError> {
        let params: Params =
            serde_json::from_str(&params).map_err(|e| PluginError::field(format!("invalid params: {e}"), "params"))?;
        let mut by = Vec::new();
        for key in &params.group_by {
            let Some(k) = KEYS.iter().position(|k| k == key) else {
                return Err(param(
                    format!("unknown key `{key}`: group by any of branch, channel, category"),
                    "group_by",
                ));
            };
            if by.contains(&k) {
                return Err(param(format!("`{key}` is listed twice"), "group_by"));
            }
            by.push(k);
        }
        let filter = with_tickets(&params.filter);
        // One aggregate: how many customers must be read, and the newest interaction (the
        // default `as_of`). An invalid filter is the user's to fix: name the param.
        let summary = store::aggregate(&AggregateQuery {
            filter: filter.clone(),
            group_by: Vec::new(),
            aggregations: vec![Aggregation::of(AggregateOp::Max, "interactions.last")],
            limit: 1,
        })
        .map_err(|e| param(e, "filter"))?;
        let customers = summary.counts.first().copied().unwrap_or(0);
        if customers > CALL_BUDGET {
            return Err(param(
                format!(
                    "{customers} customers have tickets, and this report reads each one's timeline: one run can read \
                     {CALL_BUDGET}. Narrow it, e.g. branch = \"bkk-01\""
                ),
                "filter",
            ));
        }
        let as_of = match &params.as_of {
            Some(v) => plugin_kit::parse_time(v).map_err(|e| param(e, "as_of"))?,
            None => {
                summary.values.first().and_then(|c| c.values.first()).copied().filter(|v| v.is_finite()).unwrap_or(0.0)
                    as i64
            }
        };

        let mut tickets = Vec::new();
        let mut cursor = None;
        loop {
            let page = store::query_customers(&filter, cursor.as_deref(), 500).map_err(|e| param(e, "filter"))?;
            for customer in &page.items {
                let branch = customer.branch.clone().unwrap_or_else(|| "(none)".into());
                read_tickets(customer.id, &branch, &mut tickets);
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }

        let rows = logic::summarize(&tickets, &by, as_of);
        let column = ReportColumn::new;
        let mut columns: Vec<ReportColumn> = by.iter().map(|&k| column(KEYS[k], ColumnType::Text)).collect();
        // A chart needs one category column: the keys joined, when there are several.
        let joined = by.len() > 1;
        if joined {
            columns.push(column("group", ColumnType::Text));
        }
        for name in ["tickets", "open", "overdue", "closed"] {
            columns.push(column(name, ColumnType::Integer));
        }
        columns.push(column("median_hours_to_close", ColumnType::Number));
        let rows = rows
            .into_iter()
            .map(|r| {
                let mut cells: Vec<Cell> = r.keys.iter().cloned().map(Cell::Text).collect();
                if joined {
                    cells.push(Cell::Text(r.keys.join(" / ")));
                }
                cells.extend([r.tickets, r.open, r.overdue, r.closed].map(|n| Cell::Integer(n as i64)));
                cells.push(r.median_hours_to_close.map_or(Cell::Null, Cell::Number));
                cells
            })
            .collect();
        let x = match by.as_slice() {
            [] => None,
            [k] => Some(KEYS[*k].to_owned()),
            _ => Some("group".to_owned()),
        };
        Ok(Report {
            title: Some(format!("Service issues, overdue as of {}", plugin_kit::date(as_of))),
            columns,
            rows,
            chart: x.map(|x| Chart {
                kind: ChartKind::Bar,
                title: Some("Open and overdue tickets".into()),
                x,
                y: vec!["open".into(), "overdue".into()],
            }),
        })
    }
}

/// Every ticket on a customer's timeline, a page at a time (newest first).
fn read_tickets(customer: u64, branch: &str, out: &mut Vec<Ticket>) {
    let mut before = None;
    let mut seen = BTreeSet::new();
    loop {
        let page = store::timeline(customer, before, 500);
        let full = page.len() == 500;
        let mut new = false;
        for i in page {
            if !seen.insert(i.id) {
                continue;
            }
            new = true;
            before = Some(before.map_or(i.occurred_at + 1, |b: i64| b.min(i.occurred_at + 1)));
            out.extend(logic::ticket_of(branch, &i));
        }
        // A page that was not full is the last; a full page of interactions already seen (more
        // than a page at one millisecond) cannot move on.
        if !full || !new {
            break;
        }
    }
}

rapport_plugin::export_reporter!(ServiceReport);
