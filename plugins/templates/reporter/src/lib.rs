//! A reporter template: one row, the number of customers. Page through the store with
//! `store::query_customers`, aggregate, and return typed columns and rows.

use rapport_plugin::{Cell, ColumnType, PluginError, Report, ReportColumn, Reporter, store};

struct MyReporter;

impl Reporter for MyReporter {
    fn run(_params: String) -> Result<Report, PluginError> {
        let mut count = 0i64;
        let mut cursor = None;
        loop {
            let page = store::query_customers("", cursor.as_deref(), 500).map_err(PluginError::new)?;
            count += page.items.len() as i64;
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(Report {
            title: Some("Customers".into()),
            columns: vec![ReportColumn { name: "customers".into(), type_: ColumnType::Integer }],
            rows: vec![vec![Cell::Integer(count)]],
            chart: None,
        })
    }
}

rapport_plugin::export_reporter!(MyReporter);
