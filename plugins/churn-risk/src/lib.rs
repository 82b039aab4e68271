//! Scorer: churn risk. A logistic model over a few factors a service manager can check by hand —
//! days since the last purchase, purchase days in the last year, open and overdue tickets,
//! tickets in the last days, and the sentiment of the newest interactions' text — with each
//! factor's contribution to the log-odds returned as a score of its own, so the number is never a
//! black box.
//!
//! The weights are fitted to the organization's own history during the rescore's `fit` phase
//! (`churn_model::fit`: each customer as of a past cutoff, labelled by whether they bought in the
//! horizon after it), falling back to the documented defaults with too few labelled customers.
//!
//! The host computes the recency features; the tickets and the texts come from each customer's
//! newest interactions (`store::timeline`, one host call per customer: a batch of 2 000 stays well
//! inside the scorer's host-call limit). The logic is in the `churn-model` crate, shared with the
//! `churn-fit` reporter; this file speaks the contract.

use churn_model::fit::{self, Model};
use churn_model::sdk::timeline;
use churn_model::{Config, FACTORS, LABELS};
use rapport_plugin::{
    Column, Feature, FeatureBatch, InteractionKind, LabelColumn, Measure, PluginError, ScoreBatch, ScoreDef, Scorer,
    ScorerSpec, TextColumn, log,
};

rapport_plugin::config_schema!("../config.schema.json");

fn load() -> Result<Config, PluginError> {
    let config: Config = rapport_plugin::config()?;
    config.check().map_err(|(message, field)| PluginError::field(message, field))?;
    Ok(config)
}

const LAST_PURCHASE: &str = "last_purchase_at";
const LAST_INTERACTION: &str = "last_interaction_at";
const FIRST_PURCHASE: &str = "first_purchase_at";

/// The scores, in output order: the probability, the factors, then each factor's contribution.
const SCORES: [(&str, &str); 14] = [
    ("probability", "probability of churn, 0–1 (logistic of the weighted factors; weights fitted per organization)"),
    ("recency_days", "days since the last purchase (or the last interaction, for someone who never bought)"),
    ("open_tickets", "tickets not closed, among the newest interactions read"),
    ("overdue_tickets", "open tickets past their due time"),
    ("recent_tickets", "tickets opened within the ticket window"),
    ("sentiment", "mean lexicon sentiment of the newest texts, −1 (negative) to +1 (positive)"),
    ("purchases", "purchase days within the purchase window, among the newest interactions read"),
    ("contribution_recency", "recency's contribution to the log-odds"),
    ("contribution_open_tickets", "open tickets' contribution to the log-odds"),
    ("contribution_overdue_tickets", "overdue tickets' contribution to the log-odds"),
    ("contribution_recent_tickets", "recent tickets' contribution to the log-odds"),
    ("contribution_sentiment", "sentiment's contribution to the log-odds"),
    ("contribution_purchases", "purchases' contribution to the log-odds"),
    ("log_odds", "the intercept plus every contribution: logit of the probability"),
];

/// Timeline reads `fit` may spend: one per labelled customer, inside the 10 000 host calls of a
/// call. A larger organization is fitted on a stable sample of this many (by a hash of the id).
const FIT_READS: usize = 9_000;

struct ChurnRisk;

impl Scorer for ChurnRisk {
    fn describe() -> Result<ScorerSpec, PluginError> {
        let config = load()?;
        let at = |name: &str, measure, kinds| Feature { name: name.into(), measure, kinds, since: None, until: None };
        Ok(ScorerSpec {
            features: vec![
                at(LAST_PURCHASE, Measure::LastAt, vec![InteractionKind::Purchase]),
                at(LAST_INTERACTION, Measure::LastAt, Vec::new()),
                // Who can be labelled: customers who had bought by the fit's cutoff.
                at(FIRST_PURCHASE, Measure::FirstAt, vec![InteractionKind::Purchase]),
            ],
            scores: SCORES.iter().map(|(n, d)| ScoreDef { name: (*n).into(), description: (*d).into() }).collect(),
            labels: vec!["risk".into()],
            needs_fit: config.fit.enabled,
        })
    }

    /// The organization's customers as of the cutoff, labelled by the horizon after it, and the
    /// regression over them (`churn_model::fit`); its weights are the model bytes.
    fn fit(population: FeatureBatch) -> Result<Vec<u8>, PluginError> {
        let config = load()?;
        let cutoff = config.cutoff(population.now);
        if cutoff + config.horizon_ms() > population.now {
            return Err(PluginError::field(
                "fit.cutoff + fit.horizon_days is after the scoring time: the labels are not known yet",
                "config.fit.cutoff",
            ));
        }
        let first = population.column(FIRST_PURCHASE)?;
        let mut candidates: Vec<(u64, u64)> = (0..population.len())
            .filter(|&i| first[i] <= cutoff as f64)
            .map(|i| (fit::hash(population.ids[i]), population.ids[i]))
            .collect();
        if candidates.len() > FIT_READS {
            candidates.select_nth_unstable(FIT_READS);
            candidates.truncate(FIT_READS);
            log!(Info, "fitted on a sample of {FIT_READS} customers who had bought by the cutoff (of more)");
        }
        let samples: Vec<fit::Sample> = candidates
            .iter()
            .filter_map(|&(_, id)| {
                let seen = timeline(id, Some(cutoff + config.horizon_ms() + 1), 500);
                fit::sample(&config, cutoff, id, &seen)
            })
            .collect();
        let fitted = fit::fit(&config, &samples);
        log!(Info, "{}; weights {:?}", fitted.reason, fitted.weights);
        Ok(Model { weights: fitted.weights, fitted: fitted.fitted, train: fitted.train, auc: fitted.auc }.encode())
    }

    fn score(batch: FeatureBatch, model: Vec<u8>) -> Result<ScoreBatch, PluginError> {
        let mut config = load()?;
        // No fit ran (`fit.enabled` off): the configured weights.
        let model = if model.is_empty() {
            Model { weights: config.weights.clone(), fitted: false, train: 0, auc: f64::NAN }
        } else {
            Model::decode(&model)
                .ok_or_else(|| PluginError::new("the model bytes are not a churn model; rerun the fit"))?
        };
        config.weights = model.weights.clone();
        let source = model.source();
        let (purchase, interaction) = (batch.column(LAST_PURCHASE)?, batch.column(LAST_INTERACTION)?);
        let n = batch.len();
        let mut out: Vec<Vec<f64>> = vec![vec![f64::NAN; n]; SCORES.len()];
        let mut codes = vec![(LABELS.len() - 1) as u32; n];
        let mut why = if config.explain { vec![String::new(); n] } else { Vec::new() };
        for (i, &id) in batch.ids.iter().enumerate() {
            // No interaction at all: nothing to read, and no host call spent on it.
            let seen = if interaction[i].is_finite() { timeline(id, None, config.timeline_limit) } else { Vec::new() };
            let f = churn_model::factors(&config, batch.now, purchase[i], interaction[i], &seen);
            let Some(r) = churn_model::risk(&config, &f) else {
                if config.explain {
                    why[i] = "no-activity: no interactions to score".into();
                }
                continue;
            };
            let z = config.weights.intercept + r.contributions.iter().sum::<f64>();
            let factors: [f64; FACTORS] =
                [f.recency_days, f.open_tickets, f.overdue_tickets, f.recent_tickets, f.sentiment, f.purchases];
            let values = [r.probability].into_iter().chain(factors).chain(r.contributions).chain([z]);
            for (column, v) in out.iter_mut().zip(values) {
                column[i] = v;
            }
            codes[i] = r.label as u32;
            if config.explain {
                why[i] = churn_model::explain(&config, &f, &r, &source);
            }
        }
        Ok(ScoreBatch {
            scores: SCORES.iter().zip(out).map(|((name, _), values)| Column { name: (*name).into(), values }).collect(),
            labels: vec![LabelColumn {
                name: "risk".into(),
                categories: LABELS.iter().map(|s| (*s).into()).collect(),
                codes,
            }],
            explanations: if config.explain {
                vec![TextColumn { name: "probability".into(), values: why }]
            } else {
                Vec::new()
            },
        })
    }
}

rapport_plugin::export_scorer!(ChurnRisk);
