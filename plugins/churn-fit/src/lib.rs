//! Reporter: the `churn-risk` scorer's model as fitted to the organization's own history — the
//! coefficients, the hold-out AUC and a calibration table (deciles of the predicted probability:
//! mean prediction against the observed churn rate), with a chart of the calibration.
//!
//! The fit is the scorer's (`churn_model::fit`, the same code and the same configuration
//! schema): configure this reporter as the scorer is configured, and with the same `fit.cutoff`
//! the two fit the same customers to the same weights. Without a cutoff, the scorer's default
//! is `horizon_days` before its scoring time and this report's before `as_of` (default: the
//! newest interaction in the organization), since a reporter has no clock.
//!
//! Host calls: `store::aggregate` for the customers who had bought by the cutoff (one call per
//! 10 000 ids), then one `store::timeline` per customer (at most 9 000: a stable sample of a
//! larger organization, like the scorer's).

use churn_model::Config;
use churn_model::fit::{self, Fitted};
use churn_model::sdk::timeline;
use rapport_plugin::{
    AggregateOp, AggregateQuery, AggregateResult, Aggregation, Cell, Chart, ChartKind, ColumnType, PluginError, Report,
    ReportColumn, Reporter, store,
};
use serde::Deserialize;

rapport_plugin::config_schema!("../../churn-risk/config.schema.json");

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Params {
    /// The time the report is for (the scorer's scoring time): unix ms or a date.
    as_of: Option<serde_json::Value>,
}

/// `store.aggregate` returns at most this many groups: a window of this many consecutive ids.
const WINDOW: u64 = 10_000;
/// Timeline reads: one per labelled customer, inside the 10 000 host calls of a call.
const FIT_READS: usize = 9_000;

fn aggregate(
    filter: String,
    group_by: Vec<String>,
    aggregations: Vec<Aggregation>,
) -> Result<AggregateResult, PluginError> {
    store::aggregate(&AggregateQuery { filter, group_by, aggregations, limit: WINDOW as u32 }).map_err(PluginError::new)
}

/// The newest interaction in the organization.
fn newest() -> Result<Option<i64>, PluginError> {
    let r = aggregate(String::new(), Vec::new(), vec![Aggregation::of(AggregateOp::Max, "interactions.last")])?;
    Ok(r.values[0].values.first().copied().filter(|v| v.is_finite()).map(|v| v as i64))
}

/// The ids of the customers whose first purchase was at or before `cutoff`.
fn bought_by(cutoff: i64) -> Result<Vec<u64>, PluginError> {
    let buyers = "purchases.count >= 1".to_owned();
    let span = aggregate(
        buyers.clone(),
        Vec::new(),
        vec![Aggregation::of(AggregateOp::Min, "id"), Aggregation::of(AggregateOp::Max, "id")],
    )?;
    let (Some(&lo), Some(&hi)) = (span.values[0].values.first(), span.values[1].values.first()) else {
        return Ok(Vec::new());
    };
    if !(lo.is_finite() && hi.is_finite()) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut start = lo as u64;
    while start <= hi as u64 {
        let filter = format!("{buyers} and id >= {start} and id < {}", start + WINDOW);
        let part = aggregate(filter, vec!["id".into()], vec![Aggregation::of(AggregateOp::Min, "purchases.first")])?;
        for (key, first) in part.keys[0].values.iter().zip(&part.values[0].values) {
            if let Some(id) = key.as_deref().and_then(|k| k.parse::<u64>().ok())
                && *first <= cutoff as f64
            {
                out.push(id);
            }
        }
        start += WINDOW;
    }
    Ok(out)
}

fn rows(f: &Fitted) -> Vec<Vec<Cell>> {
    let num = |v: f64| if v.is_finite() { Cell::Number(v) } else { Cell::Null };
    let mut rows: Vec<Vec<Cell>> = f
        .calibration
        .iter()
        .enumerate()
        .map(|(d, c)| {
            vec![
                Cell::Text("calibration".into()),
                Cell::Text(format!("decile {}", d + 1)),
                Cell::Null,
                num(c.predicted),
                num(c.observed),
                Cell::Integer(c.customers as i64),
            ]
        })
        .collect();
    let model = [
        ("fitted", if f.fitted { 1.0 } else { 0.0 }),
        ("auc", f.auc),
        ("labelled", f.labelled as f64),
        ("churned", f.churned as f64),
        ("train", f.train as f64),
        ("holdout", f.holdout as f64),
        ("iterations", f.iterations as f64),
    ];
    let w = &f.weights;
    let coefficients = [
        ("intercept", w.intercept),
        ("recency_per_30_days", w.recency_per_30_days),
        ("open_tickets", w.open_tickets),
        ("overdue_tickets", w.overdue_tickets),
        ("recent_tickets", w.recent_tickets),
        ("negative_sentiment", w.negative_sentiment),
        ("purchases", w.purchases),
    ];
    for (section, items) in [("model", &model[..]), ("coefficient", &coefficients[..])] {
        for (name, v) in items {
            rows.push(vec![
                Cell::Text(section.into()),
                Cell::Text((*name).into()),
                num(*v),
                Cell::Null,
                Cell::Null,
                Cell::Null,
            ]);
        }
    }
    rows
}

struct ChurnFit;

impl Reporter for ChurnFit {
    fn run(params: String) -> Result<Report, PluginError> {
        let config: Config = rapport_plugin::config()?;
        config.check().map_err(|(message, field)| PluginError::field(message, field))?;
        let params: Params =
            serde_json::from_str(&params).map_err(|e| PluginError::field(format!("invalid params: {e}"), "params"))?;
        let now = match &params.as_of {
            Some(v) => plugin_kit::parse_time(v).map_err(|e| PluginError::field(e, "params.as_of"))?,
            None => newest()?.ok_or_else(|| PluginError::new("the organization has no interactions to fit"))?,
        };
        let cutoff = config.cutoff(now);
        let end = cutoff + config.horizon_ms();
        if end > now {
            return Err(PluginError::field(
                format!(
                    "the horizon after the cutoff ({} + {} days) ends after {}: the labels are not known yet",
                    plugin_kit::date(cutoff),
                    config.fit.horizon_days,
                    plugin_kit::date(now)
                ),
                "config.fit.cutoff",
            ));
        }
        let mut candidates: Vec<(u64, u64)> = bought_by(cutoff)?.into_iter().map(|id| (fit::hash(id), id)).collect();
        let sampled = candidates.len() > FIT_READS;
        if sampled {
            candidates.select_nth_unstable(FIT_READS);
            candidates.truncate(FIT_READS);
        }
        let samples: Vec<fit::Sample> = candidates
            .iter()
            .filter_map(|&(_, id)| fit::sample(&config, cutoff, id, &timeline(id, Some(end + 1), 500)))
            .collect();
        let fitted = fit::fit(&config, &samples);
        let title = format!(
            "Churn model: customers as of {}, churned = no purchase in the next {} days; {}{}",
            plugin_kit::date(cutoff),
            config.fit.horizon_days,
            fitted.reason,
            if sampled { " (a sample of 9 000 customers)" } else { "" }
        );
        let column = |name: &str, type_| ReportColumn::new(name, type_);
        Ok(Report {
            title: Some(title),
            columns: vec![
                column("section", ColumnType::Text),
                column("name", ColumnType::Text),
                column("value", ColumnType::Number),
                column("predicted", ColumnType::Number),
                column("observed", ColumnType::Number),
                column("customers", ColumnType::Integer),
            ],
            rows: rows(&fitted),
            chart: Some(Chart {
                kind: ChartKind::Bar,
                title: Some("Hold-out calibration: predicted vs observed churn per decile".into()),
                x: "name".into(),
                y: vec!["predicted".into(), "observed".into()],
            }),
        })
    }
}

rapport_plugin::export_reporter!(ChurnFit);
