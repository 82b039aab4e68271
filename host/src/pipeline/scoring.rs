//! Scoring: customers touched by a write are rescored at once (incremental), and a rescore job
//! recomputes a whole organization in batches, recording its progress after every batch so that
//! a restarted server resumes it where it stopped.
//!
//! A scorer that needs a population model (`needs-fit`) is fitted by the rescore job; incremental
//! rescoring uses the model the last job fitted for that version, and skips the scorer (with a
//! trace saying why) until one exists.

use std::sync::Arc;

use serde_json::json;

use super::{Active, Pipeline, PipelineError, Result};
use crate::model::{Actor, FeatureBatch, Id, ScoreBatch, ScorerSpec};
use crate::plugins::{CallError, Called, Session};
use crate::store::{Job, OrgStore, TraceRecord, now_ms};

/// A scorer as a rescore drives it: the wasm plugin in production, a native implementation to
/// measure the plugin against.
pub trait Scorer {
    /// # Errors
    /// Why the scorer failed: a rescore job ends `failed` with it.
    fn describe(&mut self) -> std::result::Result<ScorerSpec, ScoreError>;
    /// # Errors
    /// Why the fit failed: a rescore job ends `failed` with it.
    fn fit(&mut self, population: FeatureBatch) -> std::result::Result<Vec<u8>, ScoreError>;
    /// # Errors
    /// Why the scoring failed: a rescore job ends `failed` with it.
    fn score(&mut self, batch: FeatureBatch, model: &[u8]) -> std::result::Result<ScoreBatch, ScoreError>;
}

/// Why scoring failed. A rescore job ends `failed` with its message; a write's rescore traces
/// and logs it (the write itself has landed).
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The scorer's call failed: it trapped, hit a limit, or returned what the host refuses.
    #[error(transparent)]
    Call(Box<CallError>),
    /// A score batch without one value per customer in every column.
    #[error("returned {len} values for `{column}` for a batch of {customers} customers")]
    BadBatch { column: String, len: usize, customers: usize },
    /// A scorer that needs a fitted model has none for its active version.
    #[error("no fitted model for this version yet; run a rescore job")]
    NotFitted,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Which scorer of a job failed.
    #[error("scorer `{scorer}`: {source}")]
    Of {
        scorer: String,
        #[source]
        source: Box<ScoreError>,
    },
}

impl ScoreError {
    fn of(self, scorer: &str) -> ScoreError {
        ScoreError::Of { scorer: scorer.to_owned(), source: Box::new(self) }
    }
}

/// A native scorer made of closures (benchmarks compare it with the same logic in wasm).
pub struct NativeScorer<D, F, S> {
    pub describe: D,
    pub fit: F,
    pub score: S,
}

impl<D, F, S> Scorer for NativeScorer<D, F, S>
where
    D: FnMut() -> ScorerSpec,
    F: FnMut(FeatureBatch) -> Vec<u8>,
    S: FnMut(FeatureBatch, &[u8]) -> ScoreBatch,
{
    fn describe(&mut self) -> std::result::Result<ScorerSpec, ScoreError> {
        Ok((self.describe)())
    }
    fn fit(&mut self, population: FeatureBatch) -> std::result::Result<Vec<u8>, ScoreError> {
        Ok((self.fit)(population))
    }
    fn score(&mut self, batch: FeatureBatch, model: &[u8]) -> std::result::Result<ScoreBatch, ScoreError> {
        Ok((self.score)(batch, model))
    }
}

/// A wasm scorer's session, tracing every call.
struct Traced<'a> {
    session: Session<'a>,
    active: &'a Active,
    traces: Vec<TraceRecord>,
}

impl Traced<'_> {
    fn keep<T>(
        &mut self,
        hook: &str,
        result: std::result::Result<Called<T>, CallError>,
    ) -> std::result::Result<T, ScoreError> {
        self.traces.push(self.active.callee().outcome(hook, &result));
        result.map(|c| c.value).map_err(|e| ScoreError::Call(Box::new(e)))
    }
}

impl Scorer for Traced<'_> {
    fn describe(&mut self) -> std::result::Result<ScorerSpec, ScoreError> {
        let r = self.session.describe();
        self.keep("describe", r)
    }
    fn fit(&mut self, population: FeatureBatch) -> std::result::Result<Vec<u8>, ScoreError> {
        let r = self.session.fit(population);
        self.keep("fit", r)
    }
    fn score(&mut self, batch: FeatureBatch, model: &[u8]) -> std::result::Result<ScoreBatch, ScoreError> {
        let r = self.session.score(batch, model);
        self.keep("score", r)
    }
}

/// One scorer of a rescore: its name and version (scores are stored under the name) and how to
/// call it.
pub struct Scoring<'a> {
    pub name: String,
    pub version: u32,
    pub scorer: Box<dyn Scorer + 'a>,
}

impl Pipeline {
    /// Rescore these customers with every enabled scorer; returns the customers scored. Failures
    /// are traced and logged, never returned: the write that touched them has landed.
    pub(super) fn rescore_touched(
        &self,
        org: &OrgStore,
        touched: &std::collections::BTreeSet<Id>,
        traces: &mut Vec<TraceRecord>,
    ) -> Vec<Id> {
        if touched.is_empty() {
            return Vec::new();
        }
        let ids: Vec<Id> = touched.iter().copied().collect();
        let plugins = match self.plugins_of(org) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("rescoring skipped: {e}");
                return Vec::new();
            }
        };
        let data: Arc<dyn crate::plugins::DataSource> = Arc::new(org.clone());
        let mut scored = false;
        for active in &plugins.scorers {
            let ctx = active.context(&data, &self.shared.settings.scorer_limits);
            let mut traced = Traced { session: active.plugin.session(&ctx), active, traces: Vec::new() };
            let result = (|| -> std::result::Result<(), ScoreError> {
                let spec = traced.describe()?;
                let model = match spec.needs_fit {
                    true => match org.scorer_model(&active.row.name, active.row.active_version)? {
                        Some((model, _)) => model,
                        None => return Err(ScoreError::NotFitted),
                    },
                    false => Vec::new(),
                };
                let batch = org.features(&ids, &spec.features, now_ms())?;
                let out = traced.score(batch, &model)?;
                check_batch(&out, ids.len())?;
                org.write(|tx| tx.save_scores(&active.row.name, &out, &ids, now_ms()))?;
                Ok(())
            })();
            let mut mine = std::mem::take(&mut traced.traces);
            for t in &mut mine {
                t.customer = (ids.len() == 1).then_some(ids[0]);
            }
            if let Err(error) = result {
                let message = error.to_string();
                tracing::warn!(org = %org.org().slug, plugin = %active.row.name, "incremental rescore: {message}");
                if mine.iter().all(|t| t.outcome != crate::store::TraceOutcome::Error) {
                    mine.push(TraceRecord {
                        outcome: crate::store::TraceOutcome::Skipped,
                        summary: Some(message),
                        ..active.callee().traced("score", &Default::default())
                    });
                }
            } else {
                scored = true;
            }
            traces.extend(mine);
        }
        if scored { ids } else { Vec::new() }
    }

    /// Start a job that rescores the whole organization; run it with [`Pipeline::run_job`].
    ///
    /// # Errors
    /// The organization does not exist, or a database failure (`Store`).
    pub fn create_rescore_job(&self, org: &str, actor: &Actor) -> Result<Job> {
        let org = self.org(org)?;
        let total = org.count_scorable()?;
        let id = org.write(|tx| tx.create_job(actor, "rescore", total))?;
        Ok(org.job(id)?.expect("just created"))
    }

    /// Create a rescore job and run it on a background thread.
    ///
    /// # Errors
    /// As [`Pipeline::create_rescore_job`]; `Invalid` when the thread cannot be started (the job is
    /// created by then, and stays `running` until a restart resumes it).
    pub fn spawn_rescore(&self, org: &str, actor: &Actor) -> Result<Job> {
        let job = self.create_rescore_job(org, actor)?;
        let (this, slug, id) = (self.clone(), org.to_owned(), job.id);
        let handle = std::thread::Builder::new()
            .name(format!("rescore-{slug}-{id}"))
            .stack_size(8 << 20)
            .spawn(move || {
                if let Err(e) = this.run_job(&slug, id, None) {
                    tracing::error!(org = %slug, job = id, "rescore job failed: {e}");
                }
            })
            .map_err(|e| PipelineError::Invalid(format!("cannot start the job's thread: {e}")))?;
        let mut running = self.shared.jobs.lock().expect("job list");
        running.retain(|h| !h.is_finished());
        running.push(handle);
        Ok(job)
    }

    /// Wait for the jobs this process started, up to `limit` (at shutdown). A job still running
    /// after that is left as it is: its progress is saved batch by batch and the next start
    /// resumes it.
    pub fn wait_for_jobs(&self, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        let mut logged = false;
        loop {
            let running = {
                let mut jobs = self.shared.jobs.lock().expect("job list");
                jobs.retain(|h| !h.is_finished());
                jobs.len()
            };
            if running == 0 {
                return;
            }
            if std::time::Instant::now() >= deadline {
                tracing::warn!(running, "jobs still running at shutdown; the next start resumes them");
                return;
            }
            if !logged {
                tracing::info!(running, "waiting for jobs in flight to finish");
                logged = true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Finish every job a previous process left running (call at start-up).
    ///
    /// # Errors
    /// A database failure listing the jobs (`Store`), or the error of the first job that
    /// [`Pipeline::run_job`] cannot run; the jobs after it are not resumed.
    pub fn resume_jobs(&self) -> Result<Vec<Job>> {
        let mut finished = Vec::new();
        for (slug, job) in self.shared.store.unfinished_jobs()? {
            tracing::info!(org = %slug, job = job.id, done = job.done, total = job.total, "resuming job");
            finished.push(self.run_job(&slug, job.id, None)?);
        }
        Ok(finished)
    }

    /// Run (or resume) a rescore job with the organization's enabled scorers. `max_batches`
    /// stops it early, still `running`, as a crash would (tests use it to check resumption).
    ///
    /// # Errors
    /// `NotFound` when the organization has no such job; `NotFound` or `Plugin` when one of its
    /// enabled plugins cannot be loaded; the organization does not exist, or a database failure
    /// (`Store`). A scorer's failure is not an error: the job ends `failed` with it.
    pub fn run_job(&self, org: &str, id: i64, max_batches: Option<usize>) -> Result<Job> {
        let store = self.org(org)?;
        let plugins = self.plugins_of(&store)?;
        let data: Arc<dyn crate::plugins::DataSource> = Arc::new(store.clone());
        let contexts: Vec<_> =
            plugins.scorers.iter().map(|a| (a, a.context(&data, &self.shared.settings.scorer_limits))).collect();
        let mut traced: Vec<Traced<'_>> = contexts
            .iter()
            .map(|(a, ctx)| Traced { session: a.plugin.session(ctx), active: a, traces: Vec::new() })
            .collect();
        let mut scorers: Vec<Scoring<'_>> = traced
            .iter_mut()
            .map(|t| Scoring {
                name: t.active.row.name.clone(),
                version: t.active.row.active_version,
                scorer: Box::new(t),
            })
            .collect();
        let result = self.rescore_with(&store, id, &mut scorers, max_batches);
        drop(scorers);
        let traces: Vec<TraceRecord> = traced.iter_mut().flat_map(|t| std::mem::take(&mut t.traces)).collect();
        store.write(|tx| tx.record_traces(&traces))?;
        result
    }

    /// The rescore loop over any scorers (the benchmark drives native ones through it too).
    ///
    /// # Errors
    /// `NotFound` when the organization has no such job; a database failure (`Store`) reading the
    /// job or recording its end. A scorer's failure, or a database failure inside the loop, is not
    /// an error: the job ends `failed` with it.
    pub fn rescore_with(
        &self,
        store: &OrgStore,
        id: i64,
        scorers: &mut [Scoring<'_>],
        max_batches: Option<usize>,
    ) -> Result<Job> {
        let job = store.job(id)?.ok_or_else(|| PipelineError::NotFound(format!("job {id} does not exist")))?;
        if job.state != "running" {
            return Ok(job);
        }
        match self.rescore_loop(store, &job, scorers, max_batches) {
            Ok(()) => {}
            Err(error) => {
                store.write(|tx| tx.finish_job(id, Some(&error.to_string())))?;
            }
        }
        Ok(store.job(id)?.expect("the job exists"))
    }

    fn rescore_loop(
        &self,
        store: &OrgStore,
        job: &Job,
        scorers: &mut [Scoring<'_>],
        max_batches: Option<usize>,
    ) -> std::result::Result<(), ScoreError> {
        let now = now_ms();
        let batch_size = self.shared.settings.score_batch;
        let mut specs = Vec::new();
        let mut models = Vec::new();
        for s in scorers.iter_mut() {
            let spec = s.scorer.describe().map_err(|e| e.of(&s.name))?;
            let model = if spec.needs_fit {
                // A model this job already fitted (before a restart) is reused; an older one is not.
                match store.scorer_model(&s.name, s.version)? {
                    Some((model, fitted_at)) if fitted_at >= job.created_at => model,
                    _ => {
                        let population = self.population(store, &spec, now, batch_size)?;
                        let model = s.scorer.fit(population).map_err(|e| e.of(&s.name))?;
                        store.write(|tx| tx.save_model(&s.name, s.version, &model))?;
                        model
                    }
                }
            } else {
                Vec::new()
            };
            specs.push(spec);
            models.push(model);
        }
        let (mut cursor, mut done, mut batches) = (job.cursor, job.done, 0);
        loop {
            if max_batches.is_some_and(|m| batches >= m) {
                return Ok(());
            }
            let ids = store.scorable_ids(cursor, batch_size as u32)?;
            let Some(&last) = ids.last() else { break };
            let mut outs = Vec::with_capacity(scorers.len());
            for ((s, spec), model) in scorers.iter_mut().zip(&specs).zip(&models) {
                let batch = store.features(&ids, &spec.features, now)?;
                let out = s.scorer.score(batch, model).map_err(|e| e.of(&s.name))?;
                check_batch(&out, ids.len()).map_err(|e| e.of(&s.name))?;
                outs.push(out);
            }
            done += ids.len() as u64;
            cursor = last as i64;
            store.write(|tx| {
                for (s, out) in scorers.iter().zip(&outs) {
                    tx.save_scores(&s.name, out, &ids, now)?;
                }
                tx.job_progress(job.id, done, cursor)
            })?;
            batches += 1;
        }
        store
            .write(|tx| {
                tx.finish_job(job.id, None)?;
                tx.audit(
                    &Actor { name: "rapport".into(), role: crate::model::Role::Host },
                    "job.done",
                    "job",
                    Some(job.id as Id),
                    json!({ "kind": job.kind, "customers": done, "scorers": scorers.iter().map(|s| &s.name).collect::<Vec<_>>() }),
                )
            })
            ?;
        Ok(())
    }

    /// Every scorable customer's features, for fitting.
    fn population(
        &self,
        store: &OrgStore,
        spec: &ScorerSpec,
        now: i64,
        batch: usize,
    ) -> crate::store::Result<FeatureBatch> {
        let mut all = FeatureBatch { ids: Vec::new(), now, columns: Vec::new() };
        let mut cursor = 0;
        loop {
            let ids = store.scorable_ids(cursor, batch as u32)?;
            let Some(&last) = ids.last() else { break };
            let part = store.features(&ids, &spec.features, now)?;
            if all.columns.is_empty() {
                all.columns = part.columns;
            } else {
                for (a, p) in all.columns.iter_mut().zip(part.columns) {
                    a.values.extend(p.values);
                }
            }
            all.ids.extend(ids);
            cursor = last as i64;
        }
        Ok(all)
    }
}

/// A score batch must have one value per customer in every column.
fn check_batch(out: &ScoreBatch, n: usize) -> std::result::Result<(), ScoreError> {
    let bad = out
        .scores
        .iter()
        .map(|c| (&c.name, c.values.len()))
        .chain(out.labels.iter().map(|l| (&l.name, l.codes.len())))
        .chain(out.explanations.iter().map(|e| (&e.name, e.values.len())))
        .find(|(_, len)| *len != n);
    match bad {
        Some((name, len)) => Err(ScoreError::BadBatch { column: name.clone(), len, customers: n }),
        None => Ok(()),
    }
}

impl<T: Scorer + ?Sized> Scorer for &mut T {
    fn describe(&mut self) -> std::result::Result<ScorerSpec, ScoreError> {
        (**self).describe()
    }
    fn fit(&mut self, population: FeatureBatch) -> std::result::Result<Vec<u8>, ScoreError> {
        (**self).fit(population)
    }
    fn score(&mut self, batch: FeatureBatch, model: &[u8]) -> std::result::Result<ScoreBatch, ScoreError> {
        (**self).score(batch, model)
    }
}
