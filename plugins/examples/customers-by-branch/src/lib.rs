//! Example reporter: how many customers each branch holds, as a table and a bar chart. Pages
//! through the store a page at a time, as every reporter over a whole organization should.

use std::collections::BTreeMap;

use rapport_plugin::{Cell, Chart, ChartKind, ColumnType, PluginError, Report, ReportColumn, Reporter, store};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Params {
    /// Only count customers with this tag.
    tag: Option<String>,
}

struct CustomersByBranch;

impl Reporter for CustomersByBranch {
    fn run(params: String) -> Result<Report, PluginError> {
        let params: Params =
            serde_json::from_str(&params).map_err(|e| PluginError::field(format!("invalid params: {e}"), "params"))?;
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        let mut cursor = None;
        loop {
            let page = store::query_customers("", cursor.as_deref(), 500).map_err(PluginError::new)?;
            for c in &page.items {
                if params.tag.as_ref().is_none_or(|t| c.tags.contains(t)) {
                    *counts.entry(c.branch.clone().unwrap_or_else(|| "(none)".into())).or_default() += 1;
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(Report {
            title: Some("Customers by branch".into()),
            columns: vec![
                ReportColumn { name: "branch".into(), type_: ColumnType::Text },
                ReportColumn { name: "customers".into(), type_: ColumnType::Integer },
            ],
            rows: counts.into_iter().map(|(b, n)| vec![Cell::Text(b), Cell::Integer(n)]).collect(),
            chart: Some(Chart { kind: ChartKind::Bar, title: None, x: "branch".into(), y: vec!["customers".into()] }),
        })
    }
}

rapport_plugin::export_reporter!(CustomersByBranch);
