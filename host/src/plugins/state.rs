//! The per-call store data: the caller's context, the limiter, and what the call leaves in its
//! trace. Host functions of every contract version go through [`State`] so that counting and
//! bounding happen in one place.

use std::sync::Arc;

use serde::Serialize;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{WasiCliCtx, WasiCliCtxView, WasiCliView};

use super::data::DataSource;
use super::limits::{Limiter, Limits};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub level: Level,
    pub message: String,
}

/// The longest log line kept; the rest is cut (with a marker) so a plugin cannot fill the trace.
pub const MAX_LOG_LINE: usize = 2048;

/// Returned (as a trap) by a host function once the call used up its host calls.
#[derive(Debug, thiserror::Error)]
#[error("host call limit reached")]
pub struct HostCallLimit;

/// Returned (as a trap) by a host function called after the call's CPU time ran out: the epoch
/// deadline only interrupts wasm, so a plugin looping on host calls is stopped here.
#[derive(Debug, thiserror::Error)]
#[error("CPU time ran out during host calls")]
pub struct HostCallDeadline;

pub struct State {
    pub(super) data: Arc<dyn DataSource>,
    pub(super) config: Arc<str>,
    pub(super) limiter: Limiter,
    pub(super) host_calls: u32,
    max_host_calls: u32,
    deadline: Option<std::time::Instant>,
    pub(super) logs: Vec<LogLine>,
    max_log_lines: usize,
    pub(super) dropped_logs: usize,
    // What Rust's std on wasm32-wasip2 imports even when unused: an empty `wasi:cli` context (no
    // arguments, environment, working directory; stdio goes nowhere) and the table its streams
    // live in.
    cli: WasiCliCtx,
    table: ResourceTable,
}

impl State {
    pub fn new(data: Arc<dyn DataSource>, config: Arc<str>, limits: &Limits) -> State {
        State {
            data,
            config,
            limiter: Limiter::new(limits),
            host_calls: 0,
            max_host_calls: limits.host_calls,
            deadline: None,
            logs: Vec::new(),
            max_log_lines: limits.log_lines,
            dropped_logs: 0,
            cli: WasiCliCtx::default(),
            table: ResourceTable::new(),
        }
    }

    /// Reset what is counted per call (a session makes several calls on one store).
    pub fn start_call(&mut self, deadline: Option<std::time::Instant>) {
        self.deadline = deadline;
        self.host_calls = 0;
        self.logs.clear();
        self.dropped_logs = 0;
        self.limiter.hit = None;
    }

    /// Count one host call; past the limit the call traps with [`HostCallLimit`].
    pub fn host_call(&mut self) -> wasmtime::Result<()> {
        self.host_calls += 1;
        if self.host_calls > self.max_host_calls {
            return Err(wasmtime::Error::new(HostCallLimit));
        }
        if self.deadline.is_some_and(|d| std::time::Instant::now() > d) {
            return Err(wasmtime::Error::new(HostCallDeadline));
        }
        Ok(())
    }

    pub fn log(&mut self, level: Level, mut message: String) -> wasmtime::Result<()> {
        self.host_call()?;
        if self.logs.len() >= self.max_log_lines {
            self.dropped_logs += 1;
            return Ok(());
        }
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" …[cut]");
        }
        self.logs.push(LogLine { level, message });
        Ok(())
    }

    pub(super) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl WasiCliView for State {
    fn cli(&mut self) -> WasiCliCtxView<'_> {
        WasiCliCtxView { ctx: &mut self.cli, table: &mut self.table }
    }
}
