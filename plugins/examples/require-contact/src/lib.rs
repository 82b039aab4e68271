//! Example policy: a customer must be reachable (an email or a phone), emails are stored trimmed
//! and lower-case, and every new customer gets a welcome tag.

use rapport_plugin::{Action, Change, Decision, Operation, PluginError, Policy, log};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Tag added to every new customer; empty for none.
    welcome_tag: String,
    /// Store emails trimmed and lower-case.
    normalize_email: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { welcome_tag: "new".into(), normalize_email: true }
    }
}

struct RequireContact;

impl Policy for RequireContact {
    fn before(change: Change) -> Result<Decision, PluginError> {
        let config: Config = rapport_plugin::config()?;
        let Some(customer) = change.after_customer() else {
            return Ok(Decision::Allow);
        };
        let email = customer.email.as_deref().map(str::trim).filter(|e| !e.is_empty());
        let phone = customer.phone.as_deref().map(str::trim).filter(|p| !p.is_empty());
        match (email, phone) {
            (None, None) => {
                return Ok(Decision::deny(
                    "a customer needs an email or a phone number so that they can be reached",
                    "email",
                ));
            }
            (Some(e), _) if !e.contains('@') => {
                return Ok(Decision::deny(format!("`{e}` is not an email address"), "email"));
            }
            _ => {}
        }
        if let (true, Some(e)) = (config.normalize_email, email) {
            let normal = e.to_lowercase();
            if customer.email.as_deref() != Some(normal.as_str()) {
                log!(Debug, "normalising email of customer {}", customer.id);
                return Ok(Decision::patch("email", &normal));
            }
        }
        if customer.name.is_none() {
            return Ok(Decision::Warn("the customer has no name; reports will show their email instead".into()));
        }
        Ok(Decision::Allow)
    }

    fn after(change: Change) -> Result<Vec<Action>, PluginError> {
        let config: Config = rapport_plugin::config()?;
        match change.after_customer() {
            Some(c) if change.operation == Operation::Create && !config.welcome_tag.is_empty() => {
                Ok(vec![Action::AddTag((c.id, config.welcome_tag))])
            }
            _ => Ok(Vec::new()),
        }
    }
}

rapport_plugin::export_policy!(RequireContact);
