//! A policy template: allows every write. Replace the body of `before` with your rule; return
//! `Decision::deny(reason, field)`, `Decision::Warn(..)` or `Decision::patch(field, &value)`.

use rapport_plugin::{Change, Decision, PluginError, Policy};

struct MyPolicy;

impl Policy for MyPolicy {
    fn before(_change: Change) -> Result<Decision, PluginError> {
        Ok(Decision::Allow)
    }
}

rapport_plugin::export_policy!(MyPolicy);
