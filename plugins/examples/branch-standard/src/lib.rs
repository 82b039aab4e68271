//! Example reporter: a dealer's branches must all give customers one standard. Per branch: how
//! many customers, how many tickets are still open and per customer, and what the typical
//! customer spends — with a bar chart of open tickets, the number a regional manager acts on.
//!
//! It asks the host for the numbers with one `store::aggregate` call: the host groups and sums
//! however many customers there are, and the plugin only shapes the table.

use rapport_plugin::{
    AggregateOp, AggregateQuery, Aggregation, Cell, Chart, ChartKind, ColumnType, PluginError, Report, ReportColumn,
    Reporter, store,
};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Params {
    /// Only customers matching this filter (the filter language of the customer list).
    filter: String,
}

struct BranchStandard;

impl Reporter for BranchStandard {
    fn run(params: String) -> Result<Report, PluginError> {
        let params: Params =
            serde_json::from_str(&params).map_err(|e| PluginError::field(format!("invalid params: {e}"), "params"))?;
        let result = store::aggregate(&AggregateQuery {
            filter: params.filter,
            group_by: vec!["branch".into()],
            aggregations: vec![
                Aggregation::of(AggregateOp::Sum, "tickets.open"),
                Aggregation::of(AggregateOp::Mean, "tickets.count"),
                Aggregation::of(AggregateOp::P50, "purchases.total_minor"),
            ],
            limit: 1000,
        })
        .map_err(|e| PluginError::field(e, "filter"))?;
        let [open, per_customer, median] = &result.values[..] else {
            return Err(PluginError::new("the host answered with other columns than asked for"));
        };
        let rows = (0..result.counts.len())
            .map(|i| {
                let branch = result.keys[0].values[i].clone().unwrap_or_else(|| "(none)".into());
                vec![
                    Cell::Text(branch),
                    Cell::Integer(result.counts[i] as i64),
                    Cell::Integer(open.values[i] as i64),
                    Cell::Number((per_customer.values[i] * 100.0).round() / 100.0),
                    if median.values[i].is_finite() { Cell::Integer(median.values[i] as i64) } else { Cell::Null },
                ]
            })
            .collect();
        let column = ReportColumn::new;
        Ok(Report {
            title: Some("Branch service standard".into()),
            columns: vec![
                column("branch", ColumnType::Text),
                column("customers", ColumnType::Integer),
                column("open_tickets", ColumnType::Integer),
                column("tickets_per_customer", ColumnType::Number),
                column("median_spend_minor", ColumnType::Money),
            ],
            rows,
            chart: Some(Chart {
                kind: ChartKind::Bar,
                title: Some("Open tickets by branch".into()),
                x: "branch".into(),
                y: vec!["open_tickets".into()],
            }),
        })
    }
}

rapport_plugin::export_reporter!(BranchStandard);
