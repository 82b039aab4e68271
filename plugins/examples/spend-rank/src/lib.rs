//! Example scorer: how much each customer spent, where that ranks in the organization (deciles,
//! fitted over everyone first), how long since they last bought, and a gold/silver/bronze tier.

mod logic;

use rapport_plugin::{
    Column, Feature, FeatureBatch, InteractionKind, LabelColumn, Measure, PluginError, ScoreBatch, ScoreDef, Scorer,
    ScorerSpec, TextColumn,
};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Also return a sentence per customer explaining the rank (costs time on big batches).
    explain: bool,
}

struct SpendRank;

impl Scorer for SpendRank {
    fn describe() -> Result<ScorerSpec, PluginError> {
        let purchases = |name: &str, measure| Feature {
            name: name.into(),
            measure,
            kinds: vec![InteractionKind::Purchase],
            since: None,
            until: None,
        };
        let score = |name: &str, description: &str| ScoreDef { name: name.into(), description: description.into() };
        Ok(ScorerSpec {
            features: vec![purchases("spend", Measure::SumAmount), purchases("last_at", Measure::LastAt)],
            scores: vec![
                score("spend", "total purchases, in currency units"),
                score("rank", "spend decile within the organization: 10 is the top tenth"),
                score("recency_days", "days since the last purchase"),
            ],
            labels: vec!["tier".into()],
            needs_fit: true,
        })
    }

    fn fit(population: FeatureBatch) -> Result<Vec<u8>, PluginError> {
        let cuts = logic::fit(population.column("spend")?);
        Ok(logic::encode(&cuts))
    }

    fn score(batch: FeatureBatch, model: Vec<u8>) -> Result<ScoreBatch, PluginError> {
        let config: Config = rapport_plugin::config()?;
        let cuts = logic::decode(&model)
            .ok_or_else(|| PluginError::new("the model must hold 9 decile cut points; was `fit` run?"))?;
        let n = batch.len();
        let (mut spend, mut rank, mut recency) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        logic::score(
            batch.column("spend")?,
            batch.column("last_at")?,
            batch.now as f64,
            &cuts,
            &mut spend,
            &mut rank,
            &mut recency,
        );
        let tiers = LabelColumn {
            name: "tier".into(),
            categories: logic::TIERS.iter().map(|t| t.to_string()).collect(),
            codes: rank.iter().map(|&r| logic::tier(r)).collect(),
        };
        let explanations = if config.explain {
            vec![TextColumn {
                name: "rank".into(),
                values: spend.iter().zip(&rank).map(|(s, r)| format!("spent {s:.2}: decile {r} of 10")).collect(),
            }]
        } else {
            Vec::new()
        };
        Ok(ScoreBatch {
            scores: vec![
                Column { name: "spend".into(), values: spend },
                Column { name: "rank".into(), values: rank },
                Column { name: "recency_days".into(), values: recency },
            ],
            labels: vec![tiers],
            explanations,
        })
    }
}

rapport_plugin::export_scorer!(SpendRank);
