//! Scorer: churn risk. A logistic model over a few factors a service manager can check by hand —
//! days since the last purchase, open and overdue tickets, tickets in the last days, and the
//! sentiment of the newest interactions' text — with each factor's contribution to the log-odds
//! returned as a score of its own, so the number is never a black box.
//!
//! The host computes the recency features; the tickets and the texts come from each customer's
//! newest interactions (`store::timeline`, one host call per customer: a batch of 2 000 stays well
//! inside the scorer's host-call limit). The logic is in `logic.rs`; this file speaks the contract.

mod logic;

use logic::{Config, LABELS, Seen, TicketSeen};
use rapport_plugin::{
    Column, Feature, FeatureBatch, InteractionKind, LabelColumn, Measure, PluginError, ScoreBatch, ScoreDef, Scorer,
    ScorerSpec, TextColumn, TicketStatus, store,
};

rapport_plugin::config_schema!("../config.schema.json");

fn load() -> Result<Config, PluginError> {
    let config: Config = rapport_plugin::config()?;
    config.check().map_err(|(message, field)| PluginError::field(message, field))?;
    Ok(config)
}

const LAST_PURCHASE: &str = "last_purchase_at";
const LAST_INTERACTION: &str = "last_interaction_at";

/// The scores, in output order: the probability, the factors, then each factor's contribution.
const SCORES: [(&str, &str); 12] = [
    ("probability", "probability of churn, 0–1 (logistic of the weighted factors)"),
    ("recency_days", "days since the last purchase (or the last interaction, for someone who never bought)"),
    ("open_tickets", "tickets not closed, among the newest interactions read"),
    ("overdue_tickets", "open tickets past their due time"),
    ("recent_tickets", "tickets opened within the ticket window"),
    ("sentiment", "mean lexicon sentiment of the newest texts, −1 (negative) to +1 (positive)"),
    ("contribution_recency", "recency's contribution to the log-odds"),
    ("contribution_open_tickets", "open tickets' contribution to the log-odds"),
    ("contribution_overdue_tickets", "overdue tickets' contribution to the log-odds"),
    ("contribution_recent_tickets", "recent tickets' contribution to the log-odds"),
    ("contribution_sentiment", "sentiment's contribution to the log-odds"),
    ("log_odds", "the intercept plus every contribution: logit of the probability"),
];

struct ChurnRisk;

/// A customer's newest interactions, reduced to what the factors read.
fn timeline(customer: u64, limit: u32) -> Vec<Seen> {
    store::timeline(customer, None, limit)
        .into_iter()
        .map(|i| {
            let text = [i.subject.as_deref(), i.body.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
            let ticket = match (&i.kind, &i.ticket) {
                (InteractionKind::Ticket, Some(t)) => Some(TicketSeen {
                    occurred_at: i.occurred_at,
                    open: !matches!(t.status, TicketStatus::Closed),
                    due_at: t.due_at,
                }),
                _ => None,
            };
            Seen { occurred_at: i.occurred_at, source: i.source, text, ticket }
        })
        .collect()
}

impl Scorer for ChurnRisk {
    fn describe() -> Result<ScorerSpec, PluginError> {
        load()?;
        let last = |name: &str, kinds| Feature {
            name: name.into(),
            measure: Measure::LastAt,
            kinds,
            since: None,
            until: None,
        };
        Ok(ScorerSpec {
            features: vec![last(LAST_PURCHASE, vec![InteractionKind::Purchase]), last(LAST_INTERACTION, Vec::new())],
            scores: SCORES.iter().map(|(n, d)| ScoreDef { name: (*n).into(), description: (*d).into() }).collect(),
            labels: vec!["risk".into()],
            // Each customer is scored on their own: no population to fit.
            needs_fit: false,
        })
    }

    fn fit(_population: FeatureBatch) -> Result<Vec<u8>, PluginError> {
        Ok(Vec::new())
    }

    fn score(batch: FeatureBatch, _model: Vec<u8>) -> Result<ScoreBatch, PluginError> {
        let config = load()?;
        let (purchase, interaction) = (batch.column(LAST_PURCHASE)?, batch.column(LAST_INTERACTION)?);
        let n = batch.len();
        let mut out: Vec<Vec<f64>> = vec![vec![f64::NAN; n]; SCORES.len()];
        let mut codes = vec![(LABELS.len() - 1) as u32; n];
        let mut why = if config.explain { vec![String::new(); n] } else { Vec::new() };
        for (i, &id) in batch.ids.iter().enumerate() {
            // No interaction at all: nothing to read, and no host call spent on it.
            let seen = if interaction[i].is_finite() { timeline(id, config.timeline_limit) } else { Vec::new() };
            let f = logic::factors(&config, batch.now, purchase[i], interaction[i], &seen);
            let Some(r) = logic::risk(&config, &f) else {
                if config.explain {
                    why[i] = "no-activity: no interactions to score".into();
                }
                continue;
            };
            let z = config.weights.intercept + r.contributions.iter().sum::<f64>();
            let values =
                [r.probability, f.recency_days, f.open_tickets, f.overdue_tickets, f.recent_tickets, f.sentiment]
                    .into_iter()
                    .chain(r.contributions)
                    .chain([z]);
            for (column, v) in out.iter_mut().zip(values) {
                column[i] = v;
            }
            codes[i] = r.label as u32;
            if config.explain {
                why[i] = logic::explain(&config, &f, &r);
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
