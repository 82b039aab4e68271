//! Reporter: a summary of the organization's segments — per label value of a scorer (the rfm
//! scorer's `rfm.segment` by default): customers, revenue, average lifetime value, and how many
//! customers moved in and out since their previous scoring. A bar chart of the segment sizes.
//!
//! Two `store::aggregate` calls: one grouped by the label for the money, one grouped by the label
//! now and the label before each customer's latest scoring (`label_before.<plugin>.<label>`,
//! from the host's score history) for the movement. The arithmetic is in `logic.rs`.

mod logic;

use std::collections::BTreeMap;

use rapport_plugin::{
    AggregateOp, AggregateQuery, Aggregation, Cell, Chart, ChartKind, ColumnType, PluginError, Report, ReportColumn,
    Reporter, log, store,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Params {
    /// The label that names the segments: `<plugin>.<label>`.
    label: String,
    /// The score averaged per segment as lifetime value: `<plugin>.<score>`; empty for none. The
    /// clv scorer's `value` (purchases × transaction value over its horizon), not its
    /// `expected_value`, which is one transaction's worth.
    value_score: String,
    /// Only customers matching this filter.
    filter: String,
}

impl Default for Params {
    fn default() -> Self {
        Params { label: "rfm.segment".into(), value_score: "clv.value".into(), filter: String::new() }
    }
}

fn param(message: impl Into<String>, name: &str) -> PluginError {
    PluginError::field(format!("params.{name}: {}", message.into()), format!("params.{name}"))
}

/// `<plugin>.<name>`, both parts non-empty and without spaces.
fn dotted(value: &str, name: &str) -> Result<(), PluginError> {
    match value.split_once('.') {
        Some((p, n)) if !p.is_empty() && !n.is_empty() && !value.contains(char::is_whitespace) => Ok(()),
        _ => Err(param(format!("`{value}` is not <plugin>.<name> (e.g. rfm.segment)"), name)),
    }
}

struct SegmentsSummary;

impl Reporter for SegmentsSummary {
    fn run(params: String) -> Result<Report, PluginError> {
        let params: Params =
            serde_json::from_str(&params).map_err(|e| PluginError::field(format!("invalid params: {e}"), "params"))?;
        dotted(&params.label, "label")?;
        let label = format!("label.{}", params.label);
        let mut aggregations = vec![Aggregation::of(AggregateOp::Sum, "purchases.total_minor")];
        if !params.value_score.is_empty() {
            dotted(&params.value_score, "value_score")?;
            aggregations.push(Aggregation::of(AggregateOp::Mean, format!("score.{}", params.value_score)));
        }
        let money = store::aggregate(&AggregateQuery {
            filter: params.filter.clone(),
            group_by: vec![label.clone()],
            aggregations,
            limit: 10_000,
        })
        .map_err(|e| param(e, "filter"))?;
        // The money query took the same filter: if this one fails, the host does not know the
        // movement key (the fixture runner, an older host). The report then says so rather than
        // showing zeros that would read as "nobody moved".
        let moves = store::aggregate(&AggregateQuery {
            filter: params.filter.clone(),
            group_by: vec![label, format!("label_before.{}", params.label)],
            aggregations: Vec::new(),
            limit: 10_000,
        });
        let movement = match &moves {
            Ok(moves) => {
                let cells: Vec<(Option<String>, Option<String>, u64)> = (0..moves.counts.len())
                    .map(|i| (moves.keys[0].values[i].clone(), moves.keys[1].values[i].clone(), moves.counts[i]))
                    .collect();
                Some(logic::movement(&cells))
            }
            Err(e) => {
                log!(Warn, "no movement: {e}");
                None
            }
        };
        let moved = |segment: Option<&String>| -> [Cell; 4] {
            let Some(movement) = &movement else { return std::array::from_fn(|_| Cell::Null) };
            let m = segment.and_then(|s| movement.get(s)).cloned().unwrap_or_default();
            [m.before, m.moved_in, m.moved_out, m.first_scored].map(|n| Cell::Integer(n as i64))
        };

        // Customers without the label (the scorer never ran, or not on them) are a row of their own.
        let mut rows: BTreeMap<Option<String>, Vec<Cell>> = BTreeMap::new();
        let total: u64 = money.counts.iter().sum();
        for i in 0..money.counts.len() {
            let segment = money.keys[0].values[i].clone();
            let n = money.counts[i];
            let revenue = money.values[0].values[i];
            let clv = money.values.get(1).map_or(f64::NAN, |c| c.values[i]);
            let share = if total == 0 { 0.0 } else { (n as f64 * 1000.0 / total as f64).round() / 10.0 };
            let mut row = vec![
                Cell::Text(segment.clone().unwrap_or_else(|| "(no label)".into())),
                Cell::Integer(n as i64),
                Cell::Number(share),
                Cell::Integer(if revenue.is_finite() { revenue as i64 } else { 0 }),
                if clv.is_finite() { Cell::Number((clv * 100.0).round() / 100.0) } else { Cell::Null },
            ];
            row.extend(moved(segment.as_ref()));
            rows.insert(segment, row);
        }
        // A segment everyone left since the previous scoring still shows, with no one in it now.
        for segment in movement.iter().flat_map(|m| m.keys()) {
            rows.entry(Some(segment.clone())).or_insert_with(|| {
                let mut row = vec![
                    Cell::Text(segment.clone()),
                    Cell::Integer(0),
                    Cell::Number(0.0),
                    Cell::Integer(0),
                    Cell::Null,
                ];
                row.extend(moved(Some(segment)));
                row
            });
        }
        let column = ReportColumn::new;
        Ok(Report {
            title: Some(match &moves {
                Ok(_) => format!("Segments by {}", params.label),
                Err(e) => format!("Segments by {} (no movement: {e})", params.label),
            }),
            columns: vec![
                column("segment", ColumnType::Text),
                column("customers", ColumnType::Integer),
                column("share_percent", ColumnType::Number),
                column("revenue_minor", ColumnType::Money),
                column("average_clv", ColumnType::Number),
                column("before", ColumnType::Integer),
                column("moved_in", ColumnType::Integer),
                column("moved_out", ColumnType::Integer),
                column("first_scored", ColumnType::Integer),
            ],
            rows: rows.into_values().collect(),
            chart: Some(Chart {
                kind: ChartKind::Bar,
                title: Some("Customers per segment".into()),
                x: "segment".into(),
                y: vec!["customers".into()],
            }),
        })
    }
}

rapport_plugin::export_reporter!(SegmentsSummary);
