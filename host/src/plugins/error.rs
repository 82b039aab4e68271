//! How a plugin call or an installation fails. Every variant names what the author or the admin
//! has to change; `code()` is the stable label used in metrics and the execution trace.

use crate::model::PluginFailure;

use super::Trace;

/// A plugin call that did not produce a usable result. The host keeps serving: the error is for
/// this call only.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}` {failure}")]
pub struct CallError {
    pub plugin: String,
    pub failure: Failure,
    /// What the call did before it failed (duration, fuel, log lines). Boxed: errors travel
    /// through `Result`s on the hot path and should stay small.
    pub trace: Box<Trace>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    #[error("ran past its CPU limit of {limit} and was stopped (an endless loop, or work too big for one call)")]
    Cpu { limit: String },
    #[error("hit its memory limit of {limit_mib} MiB (it asked for {requested_mib} MiB)")]
    Memory { limit_mib: usize, requested_mib: usize },
    #[error("hit its table limit of {limit} elements")]
    Table { limit: usize },
    #[error("overflowed its stack (limit {limit_kib} KiB): recursion too deep or endless")]
    Stack { limit_kib: usize },
    #[error("made more than {limit} host calls in one call (store queries, log lines and config reads count)")]
    HostCalls { limit: u32 },
    #[error("returned {size} bytes, over its output limit of {limit} bytes")]
    Output { size: usize, limit: usize },
    #[error("trapped: {message}")]
    Trap { message: String },
    #[error("returned an invalid value from `{export}`: {detail}")]
    BadOutput { export: &'static str, detail: String },
    #[error("reported an error: {0}")]
    Plugin(PluginFailure),
    #[error("created more instances, memories or tables than allowed ({detail})")]
    Instances { detail: String },
    #[error("is a {actual} plugin; it has no `{export}` export (that belongs to {expected} plugins)")]
    WrongWorld { actual: &'static str, expected: &'static str, export: &'static str },
    #[error("failed in the host: {message}")]
    Host { message: String },
}

impl Failure {
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
        "does not implement a Rapport world: it exports {exports}; a plugin exports `before` and `after` (policy), \
         `describe`, `fit` and `score` (scorer), or `run` (reporter)"
    )]
    UnknownWorld { exports: String },
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
