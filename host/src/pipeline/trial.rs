//! Try before trust: run a plugin version that is not active against history — the
//! organization's last changes for a policy, a sample of customers for a scorer — and report
//! where it differs from the active version, before anyone switches to it. Shadow mode (see
//! `Pipeline::set_shadow`) does the same on live writes; [`ShadowReport`] sums it up.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};

use super::{Pipeline, PipelineError, Result, digest};
use crate::model::{Decision, ScoreBatch};
use crate::plugins::{CallContext, Plugin, World};
use crate::store::{OrgStore, TraceRecord, now_ms};

/// How a candidate version compares with the active one.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub plugin: String,
    pub world: World,
    pub active_version: u32,
    pub candidate_version: u32,
    /// Changes replayed (policies) or customers scored (scorers).
    pub compared: u64,
    pub agreed: u64,
    pub differed: u64,
    /// The first differences, for a person to read.
    pub differences: Vec<Value>,
    /// Per score (scorers): how far the candidate's values moved.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub scores: BTreeMap<String, ScoreShift>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ScoreShift {
    pub mean_abs_diff: f64,
    pub max_abs_diff: f64,
    /// Customers whose label changed (label scores).
    pub labels_changed: u64,
}

/// What a shadow version did on live writes so far.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowReport {
    pub plugin: String,
    pub active_version: u32,
    pub shadow_version: Option<u32>,
    pub runs: u64,
    pub disagreements: u64,
    pub recent_disagreements: Vec<TraceRecord>,
}

const SHOWN: usize = 50;

impl Pipeline {
    /// Replay the last `sample` changes (policy) or score the first `sample` customers (scorer)
    /// with `candidate` and with the active version, and compare.
    ///
    /// # Errors
    /// `NotFound` when the plugin, its active version or `candidate` is not installed; `Plugin`
    /// when a version cannot be loaded, or a scorer's call fails (a policy's failure is compared,
    /// not returned); `Invalid` for a reporter; the organization does not exist, or a database
    /// failure (`Store`).
    pub fn dry_run(&self, org: &str, name: &str, candidate: u32, sample: u32) -> Result<DryRun> {
        let store = self.org(org)?;
        let row =
            store.plugin(name)?.ok_or_else(|| PipelineError::NotFound(format!("plugin `{name}` is not installed")))?;
        let active = self.load_version(&store, name, row.active_version)?;
        let cand = self.load_version(&store, name, candidate)?;
        let data: Arc<dyn crate::plugins::DataSource> = Arc::new(store.clone());
        let config: Arc<str> = row.config.to_string().into();
        let mut run = DryRun {
            plugin: name.to_owned(),
            world: active.world(),
            active_version: row.active_version,
            candidate_version: candidate,
            compared: 0,
            agreed: 0,
            differed: 0,
            differences: Vec::new(),
            scores: BTreeMap::new(),
        };
        match active.world() {
            World::Policy => {
                let ctx = CallContext { data, config, limits: self.settings().policy_limits.clone() };
                for change in store.recent_changes(sample)? {
                    let ours = active.before(&ctx, &change).map(|c| c.value).map_err(|e| e.to_string());
                    let theirs = cand.before(&ctx, &change).map(|c| c.value).map_err(|e| e.to_string());
                    run.compared += 1;
                    if ours == theirs {
                        run.agreed += 1;
                        continue;
                    }
                    run.differed += 1;
                    if run.differences.len() < SHOWN {
                        let show = |d: &std::result::Result<Decision, String>| match d {
                            Ok(d) => serde_json::to_value(d).unwrap_or(Value::Null),
                            Err(e) => json!({ "error": e }),
                        };
                        run.differences.push(json!({
                            "change": digest(&change), "at": change.at, "operation": change.operation,
                            "customer": change.after.as_ref().or(change.before.as_ref()).and_then(super::super::model::Entity::customer_id),
                            "active": show(&ours), "candidate": show(&theirs),
                        }));
                    }
                }
            }
            World::Scorer => {
                let ctx = CallContext { data, config, limits: self.settings().scorer_limits.clone() };
                let ids = store.scorable_ids(0, sample)?;
                let ours = score_sample(&store, &active, &ctx, &ids)?;
                let theirs = score_sample(&store, &cand, &ctx, &ids)?;
                compare_scores(&mut run, &ids, &ours, &theirs);
            }
            World::Reporter => {
                return Err(PipelineError::Invalid(
                    "a reporter has no decisions to compare; run both versions' reports".into(),
                ));
            }
        }
        Ok(run)
    }

    /// # Errors
    /// `NotFound` when the plugin is not installed; the organization does not exist, or a database
    /// failure (`Store`).
    pub fn shadow_report(&self, org: &str, name: &str) -> Result<ShadowReport> {
        let store = self.org(org)?;
        let row =
            store.plugin(name)?.ok_or_else(|| PipelineError::NotFound(format!("plugin `{name}` is not installed")))?;
        let version = row.shadow_version.or_else(|| {
            // The last shadowed version stays reportable after shadowing stops.
            store.traces(name, None, 500).ok()?.into_iter().find(|t| t.hook == "shadow").map(|t| t.version)
        });
        let (runs, disagreements) = match version {
            Some(v) => store.shadow_counts(name, v)?,
            None => (0, 0),
        };
        let recent = store
            .traces(name, None, 500)?
            .into_iter()
            .filter(|t| t.hook == "shadow" && t.outcome == crate::store::TraceOutcome::Disagree)
            .take(20)
            .collect();
        Ok(ShadowReport {
            plugin: name.to_owned(),
            active_version: row.active_version,
            shadow_version: row.shadow_version,
            runs,
            disagreements,
            recent_disagreements: recent,
        })
    }
}

/// Score customers with one version in one session (fitting on the sample when it needs a model).
fn score_sample(store: &OrgStore, plugin: &Plugin, ctx: &CallContext, ids: &[u64]) -> Result<ScoreBatch> {
    let fail = |e: crate::plugins::CallError| PipelineError::Plugin(e.to_string());
    let mut session = plugin.session(ctx);
    let spec = session.describe().map_err(fail)?.value;
    let batch = store.features(ids, &spec.features, now_ms())?;
    let model = if spec.needs_fit { session.fit(batch.clone()).map_err(fail)?.value } else { Vec::new() };
    Ok(session.score(batch, &model).map_err(fail)?.value)
}

fn compare_scores(run: &mut DryRun, ids: &[u64], ours: &ScoreBatch, theirs: &ScoreBatch) {
    let mut differs = vec![false; ids.len()];
    for col in &ours.scores {
        let Some(other) = theirs.scores.iter().find(|c| c.name == col.name) else { continue };
        let mut shift = ScoreShift::default();
        for (i, (a, b)) in col.values.iter().zip(&other.values).enumerate() {
            let d = if a.is_nan() && b.is_nan() { 0.0 } else { (a - b).abs() };
            let d = if d.is_nan() { f64::INFINITY } else { d };
            shift.mean_abs_diff += d / ids.len().max(1) as f64;
            shift.max_abs_diff = shift.max_abs_diff.max(d);
            if d > 1e-9 {
                differs[i] = true;
            }
        }
        run.scores.insert(col.name.clone(), shift);
    }
    for label in &ours.labels {
        let Some(other) = theirs.labels.iter().find(|l| l.name == label.name) else { continue };
        let shift = run.scores.entry(label.name.clone()).or_default();
        for i in 0..ids.len().min(label.codes.len()).min(other.codes.len()) {
            if label.get(i) != other.get(i) {
                shift.labels_changed += 1;
                differs[i] = true;
                if run.differences.len() < SHOWN {
                    run.differences.push(json!({
                        "customer": ids[i], "score": label.name, "active": label.get(i), "candidate": other.get(i),
                    }));
                }
            }
        }
    }
    run.compared = ids.len() as u64;
    run.differed = differs.iter().filter(|d| **d).count() as u64;
    run.agreed = run.compared - run.differed;
}
