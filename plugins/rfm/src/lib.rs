//! Scorer: RFM. Recency (time of the last purchase), frequency (number of purchases) and monetary
//! value (total spend) each become a 1–5 quintile score over the organization's buyers — the cut
//! points are fitted over the whole organization in the `fit` phase and kept in the model bytes —
//! plus a combined score R×100 + F×10 + M and a segment label from R and the mean of F and M.
//! The logic is in `logic.rs`; this file speaks the contract.

mod logic;

use logic::{DAY_MS, Model, SEGMENTS, combined, fm, is_buyer, meaning, quintile, segment};
use rapport_plugin::{
    Column, Feature, FeatureBatch, InteractionKind, LabelColumn, Measure, PluginError, ScoreBatch, ScoreDef, Scorer,
    ScorerSpec, TextColumn, log,
};
use serde::Deserialize;

rapport_plugin::config_schema!("../config.schema.json");

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Return a sentence per customer for each score and the segment. Off by default: text is the
    /// costly thing to cross the boundary (the contract's advice).
    explain: bool,
    /// Minor units per currency unit, for `monetary` and the explanations.
    minor_per_unit: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config { explain: false, minor_per_unit: 100.0 }
    }
}

impl Config {
    fn load() -> Result<Config, PluginError> {
        let config: Config = rapport_plugin::config()?;
        if config.minor_per_unit <= 0.0 || !config.minor_per_unit.is_finite() {
            return Err(PluginError::field("minor_per_unit must be a number > 0", "config.minor_per_unit"));
        }
        Ok(config)
    }
}

/// The feature columns the scorer asks for.
const LAST: &str = "last_at";
const COUNT: &str = "purchases";
const SPEND: &str = "spend";

/// The scores, in output order.
const SCORES: [(&str, &str); 7] = [
    ("r", "recency quintile, 1–5: 5 is the fifth of buyers who bought most recently"),
    ("f", "frequency quintile, 1–5: 5 is the fifth of buyers with the most purchases"),
    ("m", "monetary quintile, 1–5: 5 is the fifth of buyers who spent the most"),
    ("score", "R×100 + F×10 + M: the three quintiles as digits (555 is the best)"),
    ("recency_days", "days since the last purchase"),
    ("frequency", "number of purchases"),
    ("monetary", "total spend, in currency units"),
];

struct Rfm;

impl Scorer for Rfm {
    fn describe() -> Result<ScorerSpec, PluginError> {
        Config::load()?;
        let purchases = |name: &str, measure| Feature {
            name: name.into(),
            measure,
            kinds: vec![InteractionKind::Purchase],
            since: None,
            until: None,
        };
        Ok(ScorerSpec {
            features: vec![
                purchases(LAST, Measure::LastAt),
                purchases(COUNT, Measure::Count),
                purchases(SPEND, Measure::SumAmount),
            ],
            scores: SCORES.iter().map(|(n, d)| ScoreDef { name: (*n).into(), description: (*d).into() }).collect(),
            labels: vec!["segment".into()],
            // Quintiles are relative to everyone else: the cuts need the whole organization.
            needs_fit: true,
        })
    }

    fn fit(population: FeatureBatch) -> Result<Vec<u8>, PluginError> {
        let model = logic::fit(population.column(LAST)?, population.column(COUNT)?, population.column(SPEND)?);
        log!(
            Info,
            "fitted on {} buyers of {}: recency {:?}, frequency {:?}, monetary {:?}",
            model.customers,
            population.len(),
            model.recency,
            model.frequency,
            model.monetary
        );
        Ok(model.encode())
    }

    fn score(batch: FeatureBatch, model: Vec<u8>) -> Result<ScoreBatch, PluginError> {
        let config = Config::load()?;
        let model = Model::decode(&model)
            .ok_or_else(|| PluginError::new("the model bytes are not an rfm model; rerun the fit"))?;
        let (last, count, spend) = (batch.column(LAST)?, batch.column(COUNT)?, batch.column(SPEND)?);
        let n = batch.len();
        let mut out: [Vec<f64>; 7] = std::array::from_fn(|_| vec![f64::NAN; n]);
        let mut codes = vec![(SEGMENTS.len() - 1) as u32; n];
        let mut text: [Vec<String>; 5] =
            std::array::from_fn(|_| if config.explain { vec![String::new(); n] } else { Vec::new() });
        let unit = config.minor_per_unit;
        for i in 0..n {
            if !is_buyer(last[i], count[i]) {
                if config.explain {
                    text[4][i] = format!("{}: {}", SEGMENTS[SEGMENTS.len() - 1], meaning(SEGMENTS.len() - 1));
                }
                continue;
            }
            let (r, f, m) = (
                quintile(last[i], &model.recency),
                quintile(count[i], &model.frequency),
                quintile(spend[i], &model.monetary),
            );
            let days = ((batch.now as f64 - last[i]) / DAY_MS).max(0.0).floor();
            let s = segment(r, fm(f, m));
            codes[i] = s as u32;
            for (column, value) in out.iter_mut().zip([
                f64::from(r),
                f64::from(f),
                f64::from(m),
                combined(r, f, m),
                days,
                count[i],
                spend[i] / unit,
            ]) {
                column[i] = value;
            }
            if config.explain {
                text[0][i] = format!(
                    "last purchase {days} day{} ago: recency quintile {r} of 5",
                    if days == 1.0 { "" } else { "s" }
                );
                text[1][i] = format!(
                    "{} purchase{}: frequency quintile {f} of 5",
                    count[i],
                    if count[i] == 1.0 { "" } else { "s" }
                );
                text[2][i] = format!("spent {:.2}: monetary quintile {m} of 5", spend[i] / unit);
                text[3][i] = format!("R {r}, F {f}, M {m}: {}", combined(r, f, m));
                text[4][i] = format!("{}: R {r}, FM {} (mean of F and M): {}", SEGMENTS[s], fm(f, m), meaning(s));
            }
        }
        let explanations = if config.explain {
            ["r", "f", "m", "score", "segment"]
                .iter()
                .zip(text)
                .map(|(name, values)| TextColumn { name: (*name).into(), values })
                .collect()
        } else {
            Vec::new()
        };
        Ok(ScoreBatch {
            scores: SCORES.iter().zip(out).map(|((name, _), values)| Column { name: (*name).into(), values }).collect(),
            labels: vec![LabelColumn {
                name: "segment".into(),
                categories: SEGMENTS.iter().map(|s| (*s).into()).collect(),
                codes,
            }],
            explanations,
        })
    }
}

rapport_plugin::export_scorer!(Rfm);
