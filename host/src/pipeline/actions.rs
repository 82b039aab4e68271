//! Follow-up actions a policy asks for after a write lands. Each becomes a write of its own, one
//! level deeper, through the same pipeline (so policies judge what plugins do too), and each is
//! idempotent: adding a tag that is there or assigning what is assigned changes nothing, and tasks
//! and messages carry a key derived from the change that caused them, so a retried chain does not
//! open a second task or queue a second message.

use serde::Serialize;
use serde_json::Value;

use super::{Active, Chain, Pipeline, PipelineError, Write};
use crate::model::{Action, Actor, Change, Interaction, InteractionKind, Origin, Ticket, TicketStatus};
use crate::store::OrgStore;

/// What became of one follow-up action.
#[derive(Debug, Clone, Serialize)]
pub struct ActionOutcome {
    pub plugin: String,
    /// The depth of the change the action makes (1 for an action of a direct write).
    pub depth: u32,
    #[serde(flatten)]
    pub action: Action,
    /// `applied`, `unchanged` (already done) or `failed`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Pipeline {
    pub(super) fn follow_up(
        &self,
        org: &OrgStore,
        active: &Active,
        cause: &Change,
        key: &str,
        action: Action,
        chain: &mut Chain,
    ) {
        let actor = Actor { name: active.row.name.clone(), role: crate::model::Role::Plugin };
        let depth = cause.depth + 1;
        let result = if depth > self.shared.settings.max_depth {
            Err(PipelineError::DepthExceeded {
                plugin: active.row.name.clone(),
                depth,
                limit: self.shared.settings.max_depth,
            })
        } else {
            self.run_action(org, &actor, cause, key, &action, chain)
        };
        let (result, error) = match result {
            Ok(true) => ("applied", None),
            Ok(false) => ("unchanged", None),
            Err(e) => {
                tracing::warn!(org = %org.org().slug, plugin = %active.row.name, "follow-up action failed: {e}");
                ("failed", Some(e.to_string()))
            }
        };
        chain.actions.push(ActionOutcome { plugin: active.row.name.clone(), depth, action, result, error });
    }

    /// Whether the action changed anything.
    fn run_action(
        &self,
        org: &OrgStore,
        actor: &Actor,
        cause: &Change,
        key: &str,
        action: &Action,
        chain: &mut Chain,
    ) -> Result<bool, PipelineError> {
        let customer =
            |id| org.customer(id)?.ok_or_else(|| PipelineError::NotFound(format!("customer {id} does not exist")));
        let write = match action {
            Action::AddTag { customer: id, tag } => {
                let mut c = customer(*id)?;
                if tag.trim().is_empty() {
                    return Err(PipelineError::Invalid("a tag must not be empty".into()));
                }
                if c.tags.iter().any(|t| t == tag) {
                    return Ok(false);
                }
                c.tags.push(tag.clone());
                Write::UpdateCustomer(c)
            }
            Action::Assign(a) => {
                let mut c = customer(a.customer)?;
                if let Some(d) = a.distributor {
                    c.distributor = Some(d);
                }
                if let Some(b) = &a.branch {
                    c.branch = Some(b.clone());
                }
                Write::UpdateCustomer(c)
            }
            Action::OpenTask(t) => {
                customer(t.customer)?;
                let mut attributes = serde_json::Map::new();
                if let Some(a) = &t.assignee {
                    attributes.insert("assignee".into(), Value::String(a.clone()));
                }
                // A task is a ticket on the customer's timeline; its (source, external id) is the
                // action's key, which makes a retried action a no-op.
                Write::AddInteraction(Interaction {
                    id: 0,
                    customer: t.customer,
                    kind: InteractionKind::Ticket,
                    channel: "task".into(),
                    source: format!("plugin:{}", actor.name),
                    external_id: Some(key.to_owned()),
                    occurred_at: cause.at,
                    amount: None,
                    subject: Some(t.subject.clone()),
                    body: t.body.clone(),
                    attributes,
                    ticket: Some(Ticket {
                        status: TicketStatus::Open,
                        category: t.category.clone(),
                        due_at: t.due_at,
                        resolution: None,
                        closed_at: None,
                    }),
                })
            }
            Action::QueueMessage(m) => {
                let variables = Value::Object(m.variables.clone());
                let queued =
                    org.write(|tx| tx.queue_message(actor, key, m.customer, &m.channel, &m.template, &variables))?;
                return Ok(queued);
            }
        };
        // A task keyed by this action exists already: the action ran before.
        if let Write::AddInteraction(i) = &write
            && org.interaction_by_external_id(&i.source, key)?.is_some()
        {
            return Ok(false);
        }
        Ok(self.apply(org, actor, Origin::Action, cause.depth + 1, write, chain)?.is_some())
    }
}
