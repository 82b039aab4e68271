//! A scorer template: one score, the number of purchases. Ask for the features you need in
//! `describe`; compute your scores column by column in `score`.

use rapport_plugin::{
    Column, Feature, FeatureBatch, InteractionKind, Measure, PluginError, ScoreBatch, ScoreDef, Scorer, ScorerSpec,
};

struct MyScorer;

impl Scorer for MyScorer {
    fn describe() -> Result<ScorerSpec, PluginError> {
        Ok(ScorerSpec {
            features: vec![Feature {
                name: "purchases".into(),
                measure: Measure::Count,
                kinds: vec![InteractionKind::Purchase],
                since: None,
                until: None,
            }],
            scores: vec![ScoreDef { name: "purchases".into(), description: "number of purchases".into() }],
            labels: Vec::new(),
            needs_fit: false,
        })
    }

    fn score(batch: FeatureBatch, _model: Vec<u8>) -> Result<ScoreBatch, PluginError> {
        let purchases = batch.column("purchases")?.to_vec();
        Ok(ScoreBatch {
            scores: vec![Column { name: "purchases".into(), values: purchases }],
            labels: Vec::new(),
            explanations: Vec::new(),
        })
    }
}

rapport_plugin::export_scorer!(MyScorer);
