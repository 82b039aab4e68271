//! A reporter that misbehaves in the way `{"attack": "..."}` names, so that each mistake an
//! author can make in a report meets the host's message for it.

use rapport_plugin::{Cell, Chart, ChartKind, ColumnType, PluginError, Report, ReportColumn, Reporter, log};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    attack: String,
}

struct Hostile;

impl Reporter for Hostile {
    fn run(_params: String) -> Result<Report, PluginError> {
        let config: Config = rapport_plugin::config()?;
        let mut report = Report {
            title: Some("Revenue by branch".into()),
            columns: vec![
                ReportColumn { name: "branch".into(), type_: ColumnType::Text },
                ReportColumn { name: "customers".into(), type_: ColumnType::Integer },
                ReportColumn { name: "revenue".into(), type_: ColumnType::Money },
            ],
            rows: vec![
                vec![Cell::Text("bkk-01".into()), Cell::Integer(3), Cell::Integer(120_000)],
                vec![Cell::Text("cnx-02".into()), Cell::Integer(1), Cell::Null],
            ],
            chart: Some(Chart { kind: ChartKind::Bar, title: None, x: "branch".into(), y: vec!["customers".into()] }),
        };
        match config.attack.as_str() {
            "none" => {}
            "short-row" => {
                report.rows[1].pop();
            }
            // Money as text ("1,200.00 THB"): the host must name the row and the column.
            "text-in-money" => report.rows[1][2] = Cell::Text("1,200.00 THB".into()),
            "number-in-integer" => report.rows[0][1] = Cell::Number(2.5),
            "chart-unknown-column" => report.chart.as_mut().unwrap().y = vec!["revenu".into()],
            // More log lines than the trace keeps: the call succeeds, the rest are counted.
            "log-flood" => {
                for i in 0..1_000 {
                    log!(Info, "line {i}");
                }
            }
            "panic" => panic!("hostile reporter panicked on purpose"),
            other => return Err(PluginError::config(format!("unknown attack `{other}`"))),
        }
        Ok(report)
    }
}

rapport_plugin::export_reporter!(Hostile);
