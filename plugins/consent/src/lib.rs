//! Policy: consent for marketing (Thailand's PDPA, the GDPR). An interaction that serves a
//! configured purpose — marketing by default — lands only when the customer holds a valid consent
//! for that purpose on its channel, on a lawful basis the organization accepts for the purpose; a
//! withdrawn consent blocks at once. Adding a tag that enrols a customer in marketing is judged
//! the same way. The logic is in `logic.rs`; this file reads the change, the configuration and
//! the customer's consents.

mod logic;

use logic::{Config, kind_name, permits, purpose_of, tags};
use rapport_plugin::{Change, Decision, Entity, Interaction, Operation, PluginError, Policy, log, store};

rapport_plugin::config_schema!("../config.schema.json");

/// Denials name this field: what the customer lacks is a consent.
const FIELD: &str = "consents";

fn load() -> Result<Config, PluginError> {
    let config: Config = rapport_plugin::config()?;
    // Marketing channels, kinds and tags stand for the marketing purpose: without bases for it
    // they would silently judge nothing.
    if !config.purposes.contains_key(&config.marketing_purpose) {
        return Err(PluginError::field(
            format!("marketing_purpose `{}` is not one of `purposes`", config.marketing_purpose),
            "config.marketing_purpose",
        ));
    }
    Ok(config)
}

struct ConsentPolicy;

impl Policy for ConsentPolicy {
    fn before(change: Change) -> Result<Decision, PluginError> {
        let config = load()?;
        match &change.after {
            // Only new touchpoints are judged: correcting a logged one does not contact anybody.
            Some(Entity::Interaction(i)) if change.operation == Operation::Create => interaction(&config, i),
            Some(Entity::Customer(c)) => Ok(match tags(&config, change.before_customer(), c) {
                Ok(()) => Decision::Allow,
                Err(reason) => Decision::deny(reason, FIELD),
            }),
            _ => Ok(Decision::Allow),
        }
    }
}

/// A new interaction for a purpose this policy enforces needs the customer's consent for it.
fn interaction(config: &Config, i: &Interaction) -> Result<Decision, PluginError> {
    let Some(purpose) = purpose_of(config, i) else { return Ok(Decision::Allow) };
    // The consents are the stored customer's: the interaction does not carry them. An unknown
    // customer is the host's to refuse.
    let Some(customer) = store::get_customer(i.customer) else { return Ok(Decision::Allow) };
    let bases = &config.purposes[&purpose];
    Ok(match permits(&customer.consents, &purpose, &[&i.channel, kind_name(&i.kind)], bases) {
        Ok(()) => Decision::Allow,
        Err(reason) => {
            log!(Info, "denied a {purpose} {} to customer {}: {reason}", kind_name(&i.kind), customer.id);
            Decision::deny(reason, FIELD)
        }
    })
}

rapport_plugin::export_policy!(ConsentPolicy);
