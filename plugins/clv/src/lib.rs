//! Scorer: customer lifetime value with the BG/NBD model of purchase counts (Fader, Hardie & Lee
//! 2005) and the Gamma-Gamma model of spend (Fader & Hardie 2013). `fit` estimates both models
//! by maximum likelihood from the whole organization's purchase history (unless the
//! configuration gives the parameters); `score` gives each customer their probability of being
//! alive, expected purchases over the horizon, expected transaction value and their product, the
//! lifetime value over the horizon. The math lives in
//! the `clv-model` crate, shared with the `clv-fit` reporter.

use clv_model::{BgNbd, DAY_MS, GammaGamma, History, Model, Spend, day_of, parse_date};
use rapport_plugin::{
    Column, Feature, FeatureBatch, InteractionKind, Measure, PluginError, ScoreBatch, ScoreDef, Scorer, ScorerSpec, log,
};
use serde::Deserialize;

rapport_plugin::config_schema!("../config.schema.json");

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Only purchases up to this date are used; T runs to it.
    calibration_end: Option<String>,
    /// Weeks that `expected_purchases` looks ahead.
    horizon_weeks: f64,
    /// Minor units per currency unit (100 for USD or THB).
    minor_per_unit: f64,
    /// Parameters to use instead of fitted ones.
    params: Option<Params>,
}

impl Default for Config {
    fn default() -> Self {
        Config { calibration_end: None, horizon_weeks: 39.0, minor_per_unit: 100.0, params: None }
    }
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct Params {
    r: f64,
    alpha: f64,
    a: f64,
    b: f64,
    p: Option<f64>,
    q: Option<f64>,
    gamma: Option<f64>,
}

impl Params {
    fn bgnbd(&self) -> BgNbd {
        BgNbd { r: self.r, alpha: self.alpha, a: self.a, b: self.b }
    }

    fn gamma_gamma(&self) -> Option<GammaGamma> {
        Some(GammaGamma { p: self.p?, q: self.q?, gamma: self.gamma? })
    }
}

impl Config {
    fn load() -> Result<Config, PluginError> {
        let config: Config = rapport_plugin::config()?;
        if !(config.horizon_weeks >= 0.0 && config.minor_per_unit > 0.0) {
            return Err(PluginError::config("horizon_weeks must be ≥ 0 and minor_per_unit > 0"));
        }
        Ok(config)
    }

    /// The configured calibration end, as a UTC day.
    fn end_day(&self) -> Result<Option<i64>, PluginError> {
        self.calibration_end
            .as_deref()
            .map(|d| {
                parse_date(d)
                    .ok_or_else(|| PluginError::config(format!("calibration_end `{d}` is not a YYYY-MM-DD date")))
            })
            .transpose()
    }

    /// Fitting is needed unless both models' parameters are given.
    fn needs_fit(&self) -> bool {
        self.params.and_then(|p| p.gamma_gamma()).is_none()
    }
}

/// The per-customer summary columns, in order: the feature names the scorer asks for.
const DAYS: &str = "days";
const FIRST: &str = "first_at";
const LAST: &str = "last_at";
const SPEND: &str = "spend";

struct Clv;

/// The histories of a batch, by position (None for a customer without purchases by the end).
fn histories(
    batch: &FeatureBatch,
    config: &Config,
    end_day: impl Fn(f64) -> i64,
) -> Result<Vec<Option<History>>, PluginError> {
    let (days, first, last, spend) =
        (batch.column(DAYS)?, batch.column(FIRST)?, batch.column(LAST)?, batch.column(SPEND)?);
    Ok((0..batch.len())
        .map(|i| History::from_features(days[i], first[i], last[i], spend[i], end_day(last[i]), config.minor_per_unit))
        .collect())
}

impl Scorer for Clv {
    fn describe() -> Result<ScorerSpec, PluginError> {
        let config = Config::load()?;
        // Purchases after the calibration end are not seen at all (the end day is inclusive).
        let until = config.end_day()?.map(|d| (d + 1) * DAY_MS - 1);
        let purchases = |name: &str, measure| Feature {
            name: name.into(),
            measure,
            kinds: vec![InteractionKind::Purchase],
            since: None,
            until,
        };
        let score = |name: &str, description: &str| ScoreDef { name: name.into(), description: description.into() };
        Ok(ScorerSpec {
            features: vec![
                // Several purchases on one day are one transaction, as in the papers.
                purchases(DAYS, Measure::DistinctDays),
                purchases(FIRST, Measure::FirstAt),
                purchases(LAST, Measure::LastAt),
                purchases(SPEND, Measure::SumAmount),
            ],
            scores: vec![
                score("p_alive", "probability the customer is still active (BG/NBD)"),
                score("expected_purchases", "expected purchase days over the horizon (BG/NBD, default 39 weeks)"),
                score("expected_value", "expected value of a future transaction, in currency units (Gamma-Gamma)"),
                score(
                    "value",
                    "lifetime value over the horizon, in currency units: expected_purchases × expected_value",
                ),
                score("frequency", "repeat transactions: purchase days after the first"),
                score("recency_weeks", "weeks from the first purchase to the last"),
                score("age_weeks", "weeks from the first purchase to the calibration end"),
                score("mean_value", "mean value of the customer's transactions, in currency units"),
            ],
            labels: Vec::new(),
            needs_fit: config.needs_fit(),
        })
    }

    fn fit(population: FeatureBatch) -> Result<Vec<u8>, PluginError> {
        let config = Config::load()?;
        // The calibration end: configured, or the newest purchase in the data, or now.
        let newest = population.column(LAST)?.iter().copied().filter(|v| v.is_finite()).fold(f64::NAN, f64::max);
        let end_day = match config.end_day()? {
            Some(d) => d,
            None if newest.is_finite() => day_of(newest),
            None => day_of(population.now as f64),
        };
        let hs: Vec<History> = histories(&population, &config, |_| end_day)?.into_iter().flatten().collect();
        let (bgnbd, gamma_gamma) = match config.params {
            // BG/NBD given: only the Gamma-Gamma model is fitted (or none, if given too).
            Some(p) => (p.bgnbd(), p.gamma_gamma().or_else(|| Spend::new(&hs).fit().map(|f| f.params))),
            None => {
                let fitted = clv_model::fit(&hs).ok_or_else(|| {
                    PluginError::new("no customer has a purchase by the calibration end: nothing to fit")
                })?;
                log!(
                    Info,
                    "fitted on {} customers ({} distinct histories): {:?} ll {:.3} in {} evaluations; {:?}",
                    fitted.bgnbd.customers,
                    fitted.distinct_histories,
                    fitted.bgnbd.params,
                    fitted.bgnbd.log_likelihood,
                    fitted.bgnbd.evaluations,
                    fitted.gamma_gamma
                );
                if !fitted.bgnbd.converged || fitted.gamma_gamma.is_some_and(|g| !g.converged) {
                    log!(Warn, "a fit stopped at its evaluation limit before converging");
                }
                (fitted.bgnbd.params, fitted.gamma_gamma.map(|f| f.params))
            }
        };
        Ok(Model { bgnbd, gamma_gamma, end_day }.encode())
    }

    fn score(batch: FeatureBatch, model: Vec<u8>) -> Result<ScoreBatch, PluginError> {
        let config = Config::load()?;
        let model = if model.is_empty() {
            // Both models given in the configuration: no fit ran. The end is the configured one,
            // or the time the host scores for.
            let params =
                config.params.ok_or_else(|| PluginError::new("no fitted model and no params: was `fit` run?"))?;
            Model {
                bgnbd: params.bgnbd(),
                gamma_gamma: params.gamma_gamma(),
                end_day: config.end_day()?.unwrap_or_else(|| day_of(batch.now as f64)),
            }
        } else {
            Model::decode(&model)
                .ok_or_else(|| PluginError::new("the model bytes are not a clv model; rerun the fit"))?
        };
        // A customer who bought after the fit's calibration end (rescored incrementally before
        // the next rescore job refits) is scored as of their newest purchase.
        let hs =
            histories(
                &batch,
                &config,
                |last| if last.is_finite() { model.end_day.max(day_of(last)) } else { model.end_day },
            )?;
        let n = hs.len();
        let mut out: [Vec<f64>; 8] = std::array::from_fn(|_| vec![f64::NAN; n]);
        for (i, h) in hs.iter().enumerate() {
            let Some(h) = h else { continue };
            let f = model.forecast(h, config.horizon_weeks);
            for (column, v) in out.iter_mut().zip([
                f.p_alive,
                f.expected_purchases,
                f.expected_value,
                f.value,
                h.x as f64,
                h.t_x(),
                h.t(),
                h.mean_value,
            ]) {
                column[i] = v;
            }
        }
        let names = [
            "p_alive",
            "expected_purchases",
            "expected_value",
            "value",
            "frequency",
            "recency_weeks",
            "age_weeks",
            "mean_value",
        ];
        Ok(ScoreBatch {
            scores: names.iter().zip(out).map(|(name, values)| Column { name: (*name).into(), values }).collect(),
            labels: Vec::new(),
            explanations: Vec::new(),
        })
    }
}

rapport_plugin::export_scorer!(Clv);
