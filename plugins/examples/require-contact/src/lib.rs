//! Example policy: a customer must be reachable (an email or a phone), emails are stored trimmed
//! and lower-case, and every new customer gets a welcome tag — and, when configured, a task to
//! call them and a welcome email.

use rapport_plugin::{Action, Change, Decision, Operation, OutboundMessage, PluginError, Policy, Task, log};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Tag added to every new customer; empty for none.
    welcome_tag: String,
    /// Store emails trimmed and lower-case.
    normalize_email: bool,
    /// Open a task to call each new customer, due this many days after their creation.
    welcome_call_days: Option<u32>,
    /// Queue this email template to each new customer with an email address.
    welcome_template: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config { welcome_tag: "new".into(), normalize_email: true, welcome_call_days: None, welcome_template: None }
    }
}

rapport_plugin::config_schema!("../config.schema.json");

const DAY_MS: i64 = 86_400_000;

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
        let Some(c) = change.after_customer().filter(|_| change.operation == Operation::Create) else {
            return Ok(Vec::new());
        };
        let mut actions = Vec::new();
        if !config.welcome_tag.is_empty() {
            actions.push(Action::AddTag((c.id, config.welcome_tag)));
        }
        if let Some(days) = config.welcome_call_days {
            actions.push(Action::OpenTask(Task {
                customer: c.id,
                subject: format!("Welcome call to {}", c.name.as_deref().unwrap_or("a new customer")),
                body: None,
                category: Some("welcome".into()),
                // Plugins have no clock: the change says when it happened.
                due_at: Some(change.at + i64::from(days) * DAY_MS),
                assignee: None,
            }));
        }
        if let (Some(template), Some(_)) = (config.welcome_template, &c.email) {
            actions.push(Action::QueueMessage(OutboundMessage {
                customer: c.id,
                channel: "email".into(),
                template,
                variables: serde_json::json!({ "name": c.name }).to_string(),
            }));
        }
        Ok(actions)
    }
}

rapport_plugin::export_policy!(RequireContact);
