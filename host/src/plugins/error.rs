//! How a plugin call or an installation fails. Every variant names what the author or the admin
//! has to change; `code()` is the stable label used in metrics and the execution trace.

use crate::model::PluginFailure;

use super::Trace;

/// A plugin call that did not produce a usable result. The host keeps serving: the error is for
/// this call only.
///
/// Its message is what an author reads (in `rapport plugin run`, the execution trace, the API's
/// 422): it names the plugin, the export that was running, what went wrong and, for a limit, the
/// limit's name and value and how to try another one.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}` {}", failure.explain(Some(export)))]
pub struct CallError {
    pub plugin: String,
    /// The export that was called (`before`, `score`, `run`, ...).
    pub export: &'static str,
    pub failure: Failure,
    /// What the call did before it failed (duration, fuel, log lines). Boxed: errors travel
    /// through `Result`s on the hot path and should stay small.
    pub trace: Box<Trace>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.explain(None))]
pub enum Failure {
    /// `limit` is the value as the author set it ("500000000 fuel", "100 ms"); `setting` the key
    /// of the limits that holds it (`fuel` under `plugin run`, `cpu_time` on a server).
    Cpu {
        limit: String,
        setting: &'static str,
    },
    Memory {
        limit_mib: usize,
        requested_mib: usize,
    },
    Table {
        limit: usize,
    },
    Stack {
        limit_kib: usize,
    },
    HostCalls {
        limit: u32,
    },
    Output {
        size: usize,
        limit: usize,
    },
    Trap {
        message: String,
    },
    BadOutput {
        export: &'static str,
        detail: String,
    },
    Plugin(PluginFailure),
    Instances {
        detail: String,
    },
    WrongWorld {
        actual: &'static str,
        expected: &'static str,
        export: &'static str,
    },
    Host {
        message: String,
    },
}

/// How to try a limit of another value: the only knob an author has today is the local runner;
/// a server applies the host's limits for the plugin's world.
fn raise(setting: &str) -> String {
    format!(
        "the `{setting}` limit: `rapport plugin run --limits LIMITS.json` tries another value locally; a server \
         applies its per-world limits"
    )
}

impl Failure {
    /// The sentence after "plugin `name` ": what went wrong, in which export when it is known,
    /// and what to change.
    pub fn explain(&self, export: Option<&str>) -> String {
        let during = export.map(|e| format!(" in `{e}`")).unwrap_or_default();
        match self {
            Failure::Cpu { limit, setting } => format!(
                "ran past its CPU limit of {limit}{during} and was stopped: an endless loop, or work too big for one \
                 call ({})",
                raise(setting)
            ),
            Failure::Memory { limit_mib, requested_mib } => format!(
                "hit its memory limit of {limit_mib} MiB{during} (it asked for {requested_mib} MiB; {})",
                raise("memory_bytes")
            ),
            Failure::Table { limit } => {
                format!("hit its table limit of {limit} elements{during} ({})", raise("table_elements"))
            }
            Failure::Stack { limit_kib } => format!(
                "overflowed its stack (limit {limit_kib} KiB){during}: recursion too deep or endless (the wasm stack \
                 is the same for every plugin and cannot be raised: turn deep recursion into a loop)"
            ),
            Failure::HostCalls { limit } => format!(
                "made more than {limit} host calls{during} (store queries, log lines and config reads count: read \
                 pages of up to 500, let `store.aggregate` summarize, read the config once; {})",
                raise("host_calls")
            ),
            Failure::Output { size, limit } => format!(
                "returned {size} bytes{during}, over its output limit of {limit} bytes (strings count their bytes, \
                 numbers 8 each; {})",
                raise("output_bytes")
            ),
            Failure::Trap { message } => format!("trapped{during}: {message}"),
            Failure::BadOutput { export, detail } => format!("returned an invalid value from `{export}`: {detail}"),
            Failure::Plugin(failure) => format!("reported an error{during}: {failure}"),
            Failure::Instances { detail } => format!(
                "created more instances, memories or tables than allowed{during} ({detail}; the `instances`, \
                 `memories` and `tables` limits: `rapport plugin run --limits LIMITS.json` tries other values \
                 locally)"
            ),
            Failure::WrongWorld { actual, expected, export } => {
                format!("is a {actual} plugin; it has no `{export}` export (that belongs to {expected} plugins)")
            }
            Failure::Host { message } => format!("failed in the host{during}: {message}"),
        }
    }

    /// A short stable label: `cpu`, `memory`, `stack`, ... (metrics, trace, tests).
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Cpu { .. } => "cpu",
            Failure::Memory { .. } => "memory",
            Failure::Table { .. } => "table",
            Failure::Stack { .. } => "stack",
            Failure::HostCalls { .. } => "host_calls",
            Failure::Output { .. } => "output",
            Failure::Trap { .. } => "trap",
            Failure::BadOutput { .. } => "bad_output",
            Failure::Plugin(_) => "plugin_error",
            Failure::Instances { .. } => "instances",
            Failure::WrongWorld { .. } => "wrong_world",
            Failure::Host { .. } => "host",
        }
    }

    /// Whether a resource limit stopped the call.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Failure::Cpu { .. }
                | Failure::Memory { .. }
                | Failure::Table { .. }
                | Failure::Stack { .. }
                | Failure::Instances { .. }
                | Failure::HostCalls { .. }
                | Failure::Output { .. }
        )
    }
}

/// Why a component was refused at installation (`rapport plugin check`, upload).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("not a WebAssembly binary (it does not start with the `\\0asm` magic bytes)")]
    NotWasm,
    #[error(
        "a core WebAssembly module, not a component: build the plugin with `cargo build --target wasm32-wasip2` \
         (or wrap a module with `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    #[error(
        "does not implement a Rapport world: it exports {exports}{missing}; a plugin exports `before` and `after` \
         (policy), `describe`, `fit` and `score` (scorer), or `run` (reporter)"
    )]
    UnknownWorld {
        exports: String,
        /// What the world it comes closest to also needs (" — a policy also needs `after`"), or
        /// empty when its exports match no world at all.
        missing: String,
    },
    #[error(
        "implements the {world} world but never names the contract `rapport:plugin/types`, so its version is unknown"
    )]
    NoContract { world: &'static str },
    #[error(
        "is built against contract rapport:plugin@{found}, which this host does not run (it runs {supported}); \
         rebuild it with an SDK for one of those"
    )]
    UnsupportedVersion { found: String, supported: String },
    #[error(
        "imports `{import}`, which Rapport does not grant: plugins get no files, network, clocks, randomness or \
         environment; use only the rapport:plugin interfaces"
    )]
    ForbiddenImport { import: String },
    #[error("does not match the {world} world of contract {version}: {detail}")]
    Mismatch { world: &'static str, version: String, detail: String },
    #[error("could not be compiled: {0}")]
    Compile(String),
}
