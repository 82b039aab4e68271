//! A policy that attacks its host in the way `{"attack": "..."}` names. One component with many
//! behaviours keeps the test build small; each attack must end in its own error, in bounded time,
//! and leave the runtime able to serve the next call.

use std::hint::black_box;

use rapport_plugin::{Action, Change, Decision, FieldPatch, PluginError, Policy};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    attack: String,
    /// Attack from `after` instead: `action-loop` asks for a new tag on every change it sees,
    /// so its own actions trigger it again without end.
    #[serde(default)]
    after: Option<String>,
}

struct Hostile;

#[allow(unconditional_recursion)] // the point: recursion with no bottom
fn recurse(depth: u64) -> u64 {
    // black_box keeps the compiler from turning this into a loop.
    black_box(depth) + recurse(black_box(depth + 1))
}

impl Policy for Hostile {
    fn before(_change: Change) -> Result<Decision, PluginError> {
        let config: Config = rapport_plugin::config()?;
        match config.attack.as_str() {
            "none" => Ok(Decision::Allow),
            "loop" => loop {
                black_box(());
            },
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            "recursion" => Ok(Decision::Warn(recurse(0).to_string())),
            "panic" => panic!("hostile plugin panicked on purpose"),
            "output" => Ok(Decision::Warn("x".repeat(4 << 20))),
            "host-calls" => loop {
                black_box(rapport_plugin::config_json());
            },
            "bad-json" => Ok(Decision::Patch(vec![FieldPatch { field: "email".into(), value: "{not json".into() }])),
            "error" => Err(PluginError::config("the hostile plugin reports an error on purpose")),
            other => Err(PluginError::config(format!("unknown attack `{other}`"))),
        }
    }

    fn after(change: Change) -> Result<Vec<Action>, PluginError> {
        let config: Config = rapport_plugin::config()?;
        match (config.after.as_deref(), change.after_customer()) {
            (Some("action-loop"), Some(c)) => Ok(vec![Action::AddTag((c.id, format!("loop-{}", change.depth)))]),
            (Some("trap"), _) => panic!("hostile plugin panicked in `after` on purpose"),
            _ => Ok(Vec::new()),
        }
    }
}

rapport_plugin::export_policy!(Hostile);
