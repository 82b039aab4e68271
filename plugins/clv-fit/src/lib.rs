//! Reporter: the organization's BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma (Fader &
//! Hardie 2013) parameters, fitted by maximum likelihood, with the log-likelihoods and how many
//! customers each fit saw — to check the `clv` scorer's model, or to copy its parameters into
//! the scorer's `params`.
//!
//! The data are the `clv` scorer's per-customer summary scores (frequency, recency_weeks,
//! age_weeks, mean_value), read with `store.aggregate`: a reporter cannot see distinct purchase
//! days any other way (the filter language has `purchases.count`, which counts several purchases
//! on one day separately, and a timeline per customer would cost one host call each). So the
//! scorer must be installed and a rescore must have run; the fit is then the scorer's own (but
//! for the Gamma-Gamma sample the scorer's `fit` takes past 9 000 repeat customers: the scores
//! hold every customer's repeat mean, so this report fits on all of them).

use clv_model::History;
use rapport_plugin::{
    AggregateOp, AggregateQuery, Aggregation, Cell, ColumnType, PluginError, Report, ReportColumn, Reporter, store,
};
use serde::Deserialize;

rapport_plugin::config_schema!("../config.schema.json");

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// The name the clv scorer is installed under.
    scorer: String,
}

impl Default for Config {
    fn default() -> Self {
        Config { scorer: "clv".into() }
    }
}

/// `store.aggregate` returns at most this many groups; ids are unique, so a window of this many
/// consecutive ids never holds more customers.
const WINDOW: u64 = 10_000;

fn aggregate(
    filter: String,
    group_by: Vec<String>,
    aggregations: Vec<Aggregation>,
) -> Result<rapport_plugin::AggregateResult, PluginError> {
    store::aggregate(&AggregateQuery { filter, group_by, aggregations, limit: WINDOW as u32 }).map_err(PluginError::new)
}

/// Every scored customer's history, read back from the scorer's summary scores.
fn histories(scorer: &str) -> Result<Vec<History>, PluginError> {
    let field = |name: &str| format!("score.{scorer}.{name}");
    let scored = format!("{} >= 0", field("frequency"));
    let min_max = |op| Aggregation { op, field: Some("id".into()) };
    let span = aggregate(scored.clone(), Vec::new(), vec![min_max(AggregateOp::Min), min_max(AggregateOp::Max)])?;
    let (Some(&lo), Some(&hi)) = (span.values[0].values.first(), span.values[1].values.first()) else {
        return Ok(Vec::new());
    };
    if !(lo.is_finite() && hi.is_finite()) {
        return Ok(Vec::new());
    }
    let names = ["frequency", "recency_weeks", "age_weeks", "mean_value"];
    let mut out = Vec::new();
    let mut start = lo as u64;
    while start <= hi as u64 {
        let filter = format!("{scored} and id >= {start} and id < {}", start + WINDOW);
        // One group per customer: the minimum of one value is the value.
        let aggregations = names.iter().map(|n| Aggregation { op: AggregateOp::Min, field: Some(field(n)) }).collect();
        let part = aggregate(filter, vec!["id".into()], aggregations)?;
        let v = |k: usize, i: usize| part.values[k].values[i];
        for i in 0..part.counts.len() {
            out.extend(History::from_summary(v(0, i), v(1, i), v(2, i), v(3, i)));
        }
        start += WINDOW;
    }
    Ok(out)
}

struct ClvFit;

impl Reporter for ClvFit {
    fn run(_params: String) -> Result<Report, PluginError> {
        let config: Config = rapport_plugin::config()?;
        let hs = histories(&config.scorer)?;
        let fitted = clv_model::fit(&hs).ok_or_else(|| {
            PluginError::new(format!(
                "no customer has `{0}` scores: install the clv scorer as `{0}` (or set `scorer`) and run a rescore",
                config.scorer
            ))
        })?;
        let (bg, gg) = (fitted.bgnbd, fitted.gamma_gamma);
        let number = |name: &str, v: f64| {
            vec![Cell::Text(name.into()), if v.is_finite() { Cell::Number(v) } else { Cell::Null }]
        };
        let nan = f64::NAN;
        let rows = vec![
            number("r", bg.params.r),
            number("alpha", bg.params.alpha),
            number("a", bg.params.a),
            number("b", bg.params.b),
            number("p", gg.map_or(nan, |g| g.params.p)),
            number("q", gg.map_or(nan, |g| g.params.q)),
            number("gamma", gg.map_or(nan, |g| g.params.gamma)),
            number("log_likelihood_bgnbd", bg.log_likelihood),
            number("log_likelihood_gamma_gamma", gg.map_or(nan, |g| g.log_likelihood)),
            number("customers_bgnbd", bg.customers as f64),
            number("customers_gamma_gamma", gg.map_or(0.0, |g| g.customers as f64)),
            number("customers_repeat", fitted.repeat_customers as f64),
            number("customers_repeat_without_spend", fitted.repeat_without_spend as f64),
            number("customers_repeat_unknown_spend", fitted.repeat_unknown as f64),
            number("distinct_histories", fitted.distinct_histories as f64),
            number("converged", if bg.converged && gg.is_none_or(|g| g.converged) { 1.0 } else { 0.0 }),
        ];
        Ok(Report {
            title: Some("Customer lifetime value: fitted BG/NBD and Gamma-Gamma parameters".into()),
            columns: vec![
                ReportColumn { name: "parameter".into(), type_: ColumnType::Text },
                ReportColumn { name: "value".into(), type_: ColumnType::Number },
            ],
            rows,
            chart: None,
        })
    }
}

rapport_plugin::export_reporter!(ClvFit);
