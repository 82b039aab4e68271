//! `rapport plugin run`: one plugin, one input, no server — a function runner for authors. The
//! plugin reads a real store (a fixture loaded into memory, see `fixture`), the calls are the
//! ones a server makes, in its order.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::model::{Change, Id, Timestamp};
use crate::plugins::{CallContext, CallError, Limits, Plugin, Trace, World};
use crate::store::{OrgStore, StoreError};

/// What a policy run takes: which hook, and the change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    #[serde(default = "before")]
    pub hook: Hook,
    pub change: Change,
}

fn before() -> Hook {
    Hook::Before
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    Before,
    After,
}

/// What a scorer run takes: which customers (all of the fixture's by default), and "now".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScorerInput {
    #[serde(default)]
    pub customers: Option<Vec<Id>>,
    #[serde(default)]
    pub now: Option<Timestamp>,
    #[serde(default)]
    pub batch_size: Option<usize>,
}

/// The printed result: the plugin's output and what the calls cost.
#[derive(Debug, Serialize)]
pub struct RunOutput {
    pub plugin: String,
    pub world: World,
    pub output: Value,
    pub calls: Vec<CallSummary>,
    pub total: Totals,
}

#[derive(Debug, Serialize)]
pub struct CallSummary {
    pub export: &'static str,
    pub trace: Trace,
}

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub duration_us: u64,
    pub fuel: Option<u64>,
    pub host_calls: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid input for a {world} plugin: {detail}")]
    Input { world: World, detail: String },
    #[error("invalid limits for a {world} plugin: {detail}")]
    Limits { world: World, detail: String },
    #[error(transparent)]
    Call(#[from] CallError),
    /// The in-memory store failed (not the plugin, nor the input).
    #[error("the fixture's store failed: {0}")]
    Store(#[from] StoreError),
}

pub struct Run {
    pub plugin: Plugin,
    /// The organization the plugin reads: a fixture loaded by `Fixture::store`.
    pub store: OrgStore,
    pub config: Value,
    /// Limits to lay over the world's defaults (a JSON object of `Limits` keys); none for the
    /// defaults.
    pub limits: Option<Value>,
}

impl Run {
    pub fn run(&self, input: &Value) -> Result<RunOutput, RunError> {
        let world = self.plugin.world();
        let bad_input = |e: serde_json::Error| RunError::Input { world, detail: e.to_string() };
        let limits = match &self.limits {
            Some(overrides) => {
                Limits::overriding(world, overrides).map_err(|e| RunError::Limits { world, detail: e.to_string() })?
            }
            None => Limits::for_world(world),
        };
        let ctx = CallContext::new(Arc::new(self.store.clone()), &self.config, limits);
        let mut calls = Vec::new();
        let output = match world {
            World::Policy => {
                let input: PolicyInput = serde_json::from_value(input.clone()).map_err(bad_input)?;
                match input.hook {
                    Hook::Before => {
                        let called = self.plugin.before(&ctx, &input.change)?;
                        calls.push(CallSummary { export: "before", trace: called.trace });
                        serde_json::to_value(called.value)
                    }
                    Hook::After => {
                        let called = self.plugin.after(&ctx, &input.change)?;
                        calls.push(CallSummary { export: "after", trace: called.trace });
                        serde_json::to_value(called.value)
                    }
                }
            }
            World::Scorer => {
                let input: ScorerInput = serde_json::from_value(input.clone()).map_err(bad_input)?;
                return self.score(&ctx, input).map(|(output, calls)| self.output(output, calls));
            }
            World::Reporter => {
                if !input.is_object() {
                    return Err(RunError::Input {
                        world,
                        detail: "a reporter's input is its params: a JSON object".into(),
                    });
                }
                let called = self.plugin.run_report(&ctx, input)?;
                calls.push(CallSummary { export: "run", trace: called.trace });
                serde_json::to_value(called.value)
            }
        }
        .expect("model types serialize");
        Ok(self.output(output, calls))
    }

    /// describe → features → fit (when asked) → score in batches: what a rescore does.
    fn score(&self, ctx: &CallContext, input: ScorerInput) -> Result<(Value, Vec<CallSummary>), RunError> {
        let mut calls = Vec::new();
        let mut session = self.plugin.session(ctx);
        let spec = session.describe()?;
        calls.push(CallSummary { export: "describe", trace: spec.trace });
        let spec = spec.value;

        // Everyone a rescore would score, in its order.
        let mut all: Vec<Id> = Vec::new();
        loop {
            let page = self.store.scorable_ids(all.last().map_or(0, |&id| id as i64), 1000)?;
            if page.is_empty() {
                break;
            }
            all.extend(page);
        }
        let ids = input.customers.unwrap_or_else(|| all.clone());
        if let Some(missing) = ids.iter().find(|id| all.binary_search(id).is_err()) {
            return Err(RunError::Input {
                world: World::Scorer,
                detail: format!("customer {missing} is not in the fixture"),
            });
        }
        let now = input.now.unwrap_or_else(crate::store::now_ms);

        let model = if spec.needs_fit {
            let population = self.store.features(&all, &spec.features, now)?;
            let fitted = session.fit(population)?;
            calls.push(CallSummary { export: "fit", trace: fitted.trace });
            fitted.value
        } else {
            Vec::new()
        };

        let mut rows = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(input.batch_size.unwrap_or(1000).max(1)) {
            let batch = self.store.features(chunk, &spec.features, now)?;
            let scored = session.score(batch, &model)?;
            calls.push(CallSummary { export: "score", trace: scored.trace });
            let out = scored.value;
            for (i, id) in chunk.iter().enumerate() {
                let column_map = |cols: &[crate::model::Column]| {
                    cols.iter().map(|c| (c.name.clone(), number(c.values[i]))).collect::<Map<_, _>>()
                };
                let labels: Map<_, _> = out.labels.iter().map(|c| (c.name.clone(), Value::from(c.get(i)))).collect();
                let explanations: Map<_, _> = out
                    .explanations
                    .iter()
                    .filter(|c| !c.values[i].is_empty())
                    .map(|c| (c.name.clone(), Value::from(c.values[i].clone())))
                    .collect();
                rows.push(json!({
                    "customer": id,
                    "scores": column_map(&out.scores),
                    "labels": labels,
                    "explanations": explanations,
                }));
            }
        }
        Ok((json!({ "spec": spec, "model_bytes": model.len(), "customers": rows }), calls))
    }

    fn output(&self, output: Value, calls: Vec<CallSummary>) -> RunOutput {
        let total = Totals {
            duration_us: calls.iter().map(|c| c.trace.duration_us).sum(),
            fuel: calls.iter().map(|c| c.trace.fuel).sum(),
            host_calls: calls.iter().map(|c| c.trace.host_calls).sum(),
        };
        RunOutput { plugin: self.plugin.name().to_owned(), world: self.plugin.world(), output, calls, total }
    }
}

/// NaN ("no score") is `null` in JSON.
fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}
