//! Policy: one service standard at every branch. A new service ticket gets a category (its own,
//! else from keywords in its subject and body, else the default) and the due time the SLA table
//! gives that category; a ticket closes only with a resolution note; and once a change about a
//! customer lands, each of their open tickets past its due time gets one escalation task for the
//! branch's manager. The logic is in `logic.rs`; this file reads the change, the configuration
//! and the timeline.

mod logic;

use logic::{Config, Judged};
use rapport_plugin::{Action, Change, Decision, Entity, FieldPatch, Origin, PluginError, Policy, log, store};

rapport_plugin::config_schema!("../config.schema.json");

fn load() -> Result<Config, PluginError> {
    let config: Config = rapport_plugin::config()?;
    config.check().map_err(|(message, field)| PluginError::field(message, field))?;
    Ok(config)
}

struct ServiceStandard;

impl Policy for ServiceStandard {
    fn before(change: Change) -> Result<Decision, PluginError> {
        let Some(Entity::Interaction(i)) = &change.after else { return Ok(Decision::Allow) };
        if !matches!(i.kind, rapport_plugin::InteractionKind::Ticket) {
            return Ok(Decision::Allow);
        }
        let config = load()?;
        let before = match &change.before {
            Some(Entity::Interaction(b)) => b.ticket.as_ref(),
            _ => None,
        };
        Ok(match logic::ticket(&config, i, before, change.origin == Origin::Action) {
            Judged::Allow => Decision::Allow,
            Judged::Deny { reason, field } => {
                log!(Info, "denied a ticket of customer {} ({field}): {reason}", i.customer);
                Decision::deny(reason, field)
            }
            // The host patches top-level fields: the whole ticket, with its category and due time.
            Judged::Patch(ticket) => Decision::Patch(vec![FieldPatch::new("ticket", &ticket)]),
        })
    }

    fn after(change: Change) -> Result<Vec<Action>, PluginError> {
        // Follow-up actions (the escalations themselves among them) and imports of history do
        // not escalate: the next touch a person logs for the customer does.
        if matches!(change.origin, Origin::Action | Origin::Import) {
            return Ok(Vec::new());
        }
        let Some(Entity::Interaction(i)) = &change.after else { return Ok(Vec::new()) };
        let config = load()?;
        let timeline = store::timeline(i.customer, None, config.scan_limit.clamp(1, 500));
        let customer_branch = || store::get_customer(i.customer).and_then(|c| c.branch);
        let tasks = logic::escalations(&config, change.at, &timeline, customer_branch);
        if !tasks.is_empty() {
            log!(Info, "escalating {} overdue ticket(s) of customer {}", tasks.len(), i.customer);
        }
        Ok(tasks.into_iter().map(Action::OpenTask).collect())
    }
}

rapport_plugin::export_policy!(ServiceStandard);
