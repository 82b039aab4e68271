//! A scorer that misbehaves in the way `{"attack": "..."}` names, on `score` only, so that a
//! session's `describe` works and the failure is the batch's.

use rapport_plugin::{
    Column, FeatureBatch, LabelColumn, PluginError, ScoreBatch, ScoreDef, Scorer, ScorerSpec, TextColumn,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    attack: String,
}

struct Hostile;

impl Scorer for Hostile {
    fn describe() -> Result<ScorerSpec, PluginError> {
        Ok(ScorerSpec {
            features: Vec::new(),
            scores: vec![ScoreDef { name: "x".into(), description: "a number".into() }],
            labels: vec!["l".into()],
            needs_fit: false,
        })
    }

    fn score(batch: FeatureBatch, _model: Vec<u8>) -> Result<ScoreBatch, PluginError> {
        let config: Config = rapport_plugin::config()?;
        let n = batch.len();
        let mut out = ScoreBatch {
            scores: vec![Column { name: "x".into(), values: vec![1.0; n] }],
            labels: vec![LabelColumn { name: "l".into(), categories: vec!["a".into()], codes: vec![0; n] }],
            explanations: Vec::<TextColumn>::new(),
        };
        match config.attack.as_str() {
            "none" => {}
            "panic" => panic!("hostile scorer panicked on purpose"),
            "infinite" => out.scores[0].values[0] = f64::INFINITY,
            // NaN means "no score" in the contract: every customer's score must be stored empty,
            // never as a number.
            "nan" => out.scores[0].values.fill(f64::NAN),
            // A label's text must stay within the output limit like everything else.
            "huge-label" => out.labels[0].categories[0] = "z".repeat(40 << 20),
            "short" => {
                out.scores[0].values.pop();
            }
            "bad-code" => out.labels[0].codes[0] = 7,
            // A column under a name `describe` never declared (a typo of `x`, of `l`).
            "undeclared-score" => out.scores[0].name = "y".into(),
            "undeclared-label" => out.labels[0].name = "level".into(),
            other => return Err(PluginError::config(format!("unknown attack `{other}`"))),
        }
        Ok(out)
    }
}

rapport_plugin::export_scorer!(Hostile);
