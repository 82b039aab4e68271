//! Policy: network-marketing compliance. The sponsor tree stays one consistent tree (every
//! distributor recruited by an active distributor of the organization, no cycles, nobody
//! terminated while still sponsoring a downline), a customer belongs to one active distributor,
//! and distributor notes and messages carry no forbidden income claims (Thai and English). The
//! logic is in `logic.rs`; this file reads the change, the configuration and the tree.

mod logic;

use logic::{Config, Tree, Verdict};
use rapport_plugin::{Change, Decision, Distributor, Entity, Operation, PluginError, Policy, log, store};

rapport_plugin::config_schema!("../config.schema.json");

/// The host's store as the tree the rules read.
struct Store;

impl Tree for Store {
    fn get(&self, id: u64) -> Option<Distributor> {
        store::get_distributor(id)
    }

    fn recruits(&self, id: u64) -> Vec<Distributor> {
        store::downline(id, 1).into_iter().map(|m| m.distributor).collect()
    }
}

struct NetworkCompliance;

impl Policy for NetworkCompliance {
    fn before(change: Change) -> Result<Decision, PluginError> {
        let config: Config = rapport_plugin::config()?;
        let verdict = match (&change.before, &change.after) {
            (before, Some(Entity::Distributor(d))) => {
                let before = match before {
                    Some(Entity::Distributor(b)) => Some(b),
                    _ => None,
                };
                logic::distributor(&config, before, d, &change.actor.role, &Store)
            }
            (_, Some(Entity::Customer(c))) => logic::customer(&config, change.before_customer(), c, &Store),
            // Only new touchpoints: what a message said is judged when it is written.
            (_, Some(Entity::Interaction(i))) if change.operation == Operation::Create => {
                let owned = || store::get_customer(i.customer).is_some_and(|c| c.distributor.is_some());
                if logic::checks_interaction(&config, i, owned) {
                    logic::interaction(&config, i)
                } else {
                    Verdict::Allow
                }
            }
            _ => Verdict::Allow,
        };
        Ok(match verdict {
            Verdict::Allow => Decision::Allow,
            Verdict::Warn(message) => Decision::Warn(message),
            Verdict::Deny { reason, field } => {
                log!(Info, "denied ({field}): {reason}");
                Decision::deny(reason, field)
            }
        })
    }
}

rapport_plugin::export_policy!(NetworkCompliance);
