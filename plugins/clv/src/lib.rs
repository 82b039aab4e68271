//! Scorer: customer lifetime value with the BG/NBD model of purchase counts (Fader, Hardie & Lee
//! 2005) and the Gamma-Gamma model of spend (Fader & Hardie 2013). `fit` estimates both models
//! by maximum likelihood from the whole organization's purchase history (unless the
//! configuration gives the parameters); `score` gives each customer their probability of being
//! alive, expected purchases over the horizon, expected transaction value and their product, the
//! lifetime value over the horizon. The math lives in
//! the `clv-model` crate, shared with the `clv-fit` reporter.
//!
//! The Gamma-Gamma model is the published one: the mean value of a customer's *repeat*
//! transactions. The host's features give the total spend but not the first purchase day's, so
//! the scorer reads that day from the customer's timeline (`store::timeline` with `before` at the
//! end of the first purchase day: one host call per repeat customer). The contract has no
//! feature for it (a measure is an aggregate over a fixed window, the same for every customer).

use clv_model::{BgNbd, DAY_MS, GammaGamma, History, Model, Spend, day_of, parse_date};
use rapport_plugin::{
    Column, Feature, FeatureBatch, InteractionKind, Measure, PluginError, ScoreBatch, ScoreDef, Scorer, ScorerSpec,
    TextColumn, log, store,
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
    /// Return a sentence per customer saying which quantities `value` comes from.
    explain: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { calibration_end: None, horizon_weeks: 39.0, minor_per_unit: 100.0, params: None, explain: false }
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

/// Timeline reads `fit` may spend on first-day spends: the scorer's host-call limit is 10 000 per
/// call, and `fit` gets the whole organization in one call. Past this many repeat customers the
/// Gamma-Gamma fit uses a sample of them (the same every time: by a hash of the id); 9 000
/// customers pin three parameters down far below their sampling error. Every customer is still
/// scored with their own repeat spend (`score` calls are per batch).
const FIT_READS: usize = 9_000;

/// A customer's spend (minor units) on their first purchase day, up to `until`: the newest
/// interactions before the end of that day, a page at a time. NaN if the timeline does not show
/// it (a purchase at the same millisecond as a page's oldest could be skipped by the cursor; the
/// host caps a page at 500, so that takes a customer with 500 interactions on their first day).
fn first_day_spend(customer: u64, first_at: f64, until: Option<i64>) -> f64 {
    let day = day_of(first_at);
    let mut before = (day + 1) * DAY_MS;
    if let Some(u) = until {
        before = before.min(u + 1);
    }
    let (mut sum, mut seen) = (0.0, false);
    for _page in 0..4 {
        let page = store::timeline(customer, Some(before), 500);
        for i in &page {
            if day_of(i.occurred_at as f64) < day {
                return if seen { sum } else { f64::NAN };
            }
            if matches!(i.kind, InteractionKind::Purchase) {
                seen = true;
                sum += i.amount.as_ref().map_or(0.0, |m| m.amount_minor as f64);
            }
        }
        match page.last() {
            Some(last) if page.len() == 500 => before = last.occurred_at,
            _ => return if seen { sum } else { f64::NAN },
        }
    }
    f64::NAN
}

/// A stable pseudo-random rank of an id (SplitMix64's finalizer), for the fit's sample.
fn rank(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The histories of a batch, by position (None for a customer without purchases by the end).
/// The first day's spend is read for the repeat customers `read` lets through; the others' repeat
/// mean stays unknown (NaN).
fn histories(
    batch: &FeatureBatch,
    config: &Config,
    end_day: impl Fn(f64) -> i64,
    read: impl Fn(usize) -> bool,
) -> Result<Vec<Option<History>>, PluginError> {
    let (days, first, last, spend) =
        (batch.column(DAYS)?, batch.column(FIRST)?, batch.column(LAST)?, batch.column(SPEND)?);
    let until = config.end_day()?.map(|d| (d + 1) * DAY_MS - 1);
    Ok((0..batch.len())
        .map(|i| {
            let repeat = days[i] >= 2.0 && first[i].is_finite();
            let first_day = if repeat && read(i) { first_day_spend(batch.ids[i], first[i], until) } else { f64::NAN };
            History::from_features(
                days[i],
                first[i],
                last[i],
                spend[i],
                first_day,
                end_day(last[i]),
                config.minor_per_unit,
            )
        })
        .collect())
}

/// Which quantities a customer's `value` comes from, in one sentence.
fn explain(model: &Model, h: &History, f: &clv_model::Forecast, horizon_weeks: f64) -> String {
    let bg = format!(
        "{:.3} expected purchases in {horizon_weeks} weeks (BG/NBD: x = {} repeat purchase days, t_x = {:.1}, \
         T = {:.1} weeks, P(alive) {:.2})",
        f.expected_purchases,
        h.x,
        h.t_x(),
        h.t(),
        f.p_alive
    );
    let gg = match model.gamma_gamma {
        None => return format!("value unknown: {bg}; no Gamma-Gamma model (no repeat spend to fit)"),
        Some(gg) if h.x > 0 && h.mean_value.is_finite() => format!(
            "{:.2} per transaction (Gamma-Gamma: {} repeat transactions averaging {:.2}, weighed against the \
             population mean {:.2})",
            f.expected_value,
            h.x,
            h.mean_value,
            gg.population_mean()
        ),
        Some(_) => format!("{:.2} per transaction (Gamma-Gamma population mean: no repeat spend)", f.expected_value),
    };
    format!("value {:.2} = {bg} × {gg}", f.value)
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
                score(
                    "p_alive",
                    "probability the customer is still active (BG/NBD, from frequency, recency_weeks and age_weeks)",
                ),
                score(
                    "expected_purchases",
                    "expected purchase days over the horizon (BG/NBD, default 39 weeks, from frequency, \
                     recency_weeks and age_weeks)",
                ),
                score(
                    "expected_value",
                    "expected value of a future transaction, in currency units (Gamma-Gamma, from frequency and \
                     mean_value; the population mean without repeat transactions)",
                ),
                score(
                    "value",
                    "lifetime value over the horizon, in currency units: expected_purchases × expected_value",
                ),
                score("frequency", "repeat transactions: purchase days after the first"),
                score("recency_weeks", "weeks from the first purchase to the last"),
                score("age_weeks", "weeks from the first purchase to the calibration end"),
                score(
                    "mean_value",
                    "mean value of the customer's repeat transactions (the first purchase day left out), in \
                     currency units; none without repeat transactions",
                ),
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
        // The repeat customers whose first day is read: all of them, or a stable sample of
        // FIT_READS (see there).
        let days = population.column(DAYS)?;
        let mut repeat: Vec<(u64, usize)> =
            (0..population.len()).filter(|&i| days[i] >= 2.0).map(|i| (rank(population.ids[i]), i)).collect();
        let sampled = repeat.len() > FIT_READS;
        if sampled {
            repeat.select_nth_unstable(FIT_READS);
            repeat.truncate(FIT_READS);
            log!(Info, "Gamma-Gamma fit on a sample of {FIT_READS} repeat customers (of more)");
        }
        let mut chosen = vec![!sampled; population.len()];
        for (_, i) in repeat {
            chosen[i] = true;
        }
        let hs: Vec<History> =
            histories(&population, &config, |_| end_day, |i| chosen[i])?.into_iter().flatten().collect();
        let (bgnbd, gamma_gamma) = match config.params {
            // BG/NBD given: only the Gamma-Gamma model is fitted (or none, if given too).
            Some(p) => (p.bgnbd(), p.gamma_gamma().or_else(|| Spend::new(&hs).fit().map(|f| f.params))),
            None => {
                let fitted = clv_model::fit(&hs).ok_or_else(|| {
                    PluginError::new("no customer has a purchase by the calibration end: nothing to fit")
                })?;
                log!(
                    Info,
                    "fitted on {} customers ({} distinct histories; {} repeat, of whom {} with repeat transactions \
                     worth 0 and {} not read): {:?} ll {:.3} in {} evaluations; {:?}",
                    fitted.bgnbd.customers,
                    fitted.distinct_histories,
                    fitted.repeat_customers,
                    fitted.repeat_without_spend,
                    fitted.repeat_unknown,
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
        let hs = histories(
            &batch,
            &config,
            |last| if last.is_finite() { model.end_day.max(day_of(last)) } else { model.end_day },
            |_| true,
        )?;
        let n = hs.len();
        let mut out: [Vec<f64>; 8] = std::array::from_fn(|_| vec![f64::NAN; n]);
        let mut why = if config.explain { vec![String::new(); n] } else { Vec::new() };
        for (i, h) in hs.iter().enumerate() {
            let Some(h) = h else { continue };
            let f = model.forecast(h, config.horizon_weeks);
            if config.explain {
                why[i] = explain(&model, h, &f, config.horizon_weeks);
            }
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
            explanations: if config.explain {
                vec![TextColumn { name: "value".into(), values: why }]
            } else {
                Vec::new()
            },
        })
    }
}

rapport_plugin::export_scorer!(Clv);
