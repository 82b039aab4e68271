//! Imports through the pipeline: every record is judged by the organization's policies like a
//! single write (other CRMs let bulk paths skip business logic, a known complaint), denials and
//! warnings are reported per line, and after each batch commits the after hooks run and the
//! touched customers are rescored. An owner may bypass policies for a migration, explicitly and
//! audited.

use std::io::BufRead;
use std::sync::Arc;

use serde_json::json;

use super::{Chain, OrgPlugins, Pipeline, PipelineError, Result};
use crate::model::{Actor, Change, Entity};
use crate::store::{Gate, ImportFormat, ImportKind, ImportReport, OrgStore};

struct PolicyGate<'a> {
    pipeline: &'a Pipeline,
    store: &'a OrgStore,
    plugins: Arc<OrgPlugins>,
    data: Arc<dyn crate::plugins::DataSource>,
    chain: Chain,
    error: Option<PipelineError>,
}

impl Gate for PolicyGate<'_> {
    fn judge(&mut self, change: &mut Change) -> std::result::Result<Vec<String>, String> {
        let result = self.pipeline.judge(self.store, &self.plugins, &self.data, change, &mut self.chain);
        let warnings = self.chain.warnings.drain(..).map(|w| format!("{}: {}", w.plugin, w.message)).collect();
        match result {
            Ok(_) => Ok(warnings),
            Err(PipelineError::Denied { plugin, reason, field }) => Err(match field {
                Some(f) => format!("denied by policy `{plugin}`: {reason} (field `{f}`)"),
                None => format!("denied by policy `{plugin}`: {reason}"),
            }),
            Err(e) => Err(e.to_string()),
        }
    }

    fn passes_all(&self) -> bool {
        self.plugins.policies.is_empty() && self.plugins.scorers.is_empty()
    }

    fn landed(&mut self, changes: Vec<Change>) {
        self.chain.deferred = false;
        let customer = |c: &Change| c.after.as_ref().and_then(Entity::customer_id);
        for change in &changes {
            if let Some(c) = customer(change) {
                self.chain.touched.insert(c);
            }
            self.pipeline.after(self.store, &self.plugins, &self.data, change, &mut self.chain);
        }
        let touched = std::mem::take(&mut self.chain.touched);
        self.pipeline.rescore_touched(self.store, &touched, &mut self.chain.traces);
        if let Err(e) = self.pipeline.flush_chain(self.store, &mut self.chain) {
            self.error.get_or_insert(e);
        }
        for (name, reason) in std::mem::take(&mut self.chain.disable) {
            self.pipeline.disable_failing(self.store, &name, &reason);
        }
        self.chain.warnings.clear();
        self.chain.deferred = true;
    }
}

impl Pipeline {
    /// Import records of one kind through the organization's policies. With `bypass_policies`
    /// (owners only) the records go straight to the store, as a migration needs, and the bypass
    /// is audited; run a rescore job afterwards.
    #[allow(clippy::too_many_arguments)]
    pub fn import(
        &self,
        org: &str,
        actor: &Actor,
        kind: ImportKind,
        format: ImportFormat,
        reader: impl BufRead,
        progress: impl FnMut(u64),
        bypass_policies: bool,
    ) -> Result<ImportReport> {
        let store = self.org(org)?;
        if bypass_policies {
            if !matches!(actor.role.as_str(), "owner" | "admin") {
                return Err(PipelineError::Invalid(format!(
                    "only an owner may import without policies (you are `{}`)",
                    actor.role
                )));
            }
            store.write(|tx| tx.audit(actor, "import.bypass_policies", "import", None, json!({ "kind": kind })))?;
            return Ok(store.import(actor, kind, format, reader, progress)?);
        }
        let plugins = self.plugins_of(&store)?;
        let mut gate = PolicyGate {
            pipeline: self,
            store: &store,
            plugins,
            data: Arc::new(store.clone()),
            chain: Chain { deferred: true, ..Chain::default() },
            error: None,
        };
        let report = store.import_gated(actor, kind, format, reader, progress, &mut gate)?;
        // Traces of records that were all rejected (no batch landed) are still kept.
        gate.chain.deferred = false;
        self.flush_chain(&store, &mut gate.chain)?;
        match gate.error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}
