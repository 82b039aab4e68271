//! The plugin runtime: the only part of Rapport that knows wasmtime.
//!
//! One [`Runtime`] per process holds the `Engine`, the linker of every contract version, the
//! compiled-component cache (on disk by sha256, in memory shared by every organization that
//! installs the same bytes) and the instance slots. Every call gets a fresh instance from an
//! `InstancePre` in the pooling allocator, its own limits, and a [`Trace`] of what it did.

#![warn(clippy::missing_errors_doc)]

mod admission;
mod cache;
mod data;
mod error;
mod limits;
mod permits;
mod state;
mod v0_1_0;
mod weigh;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

pub use admission::Inspection;
pub use data::{DataError, DataSource, Empty};
pub use error::{AdmissionError, CallError, Failure};
pub use limits::Limits;
pub use state::{Level, LogLine};

use crate::model;
use state::{HostCallDeadline, HostCallLimit, State};
use weigh::Weigh;

/// The most items one store query returns to a plugin.
pub const MAX_PAGE: u32 = 500;

/// Largest wasm stack of a call. Calls must run on threads with more native stack than this
/// (tokio's blocking threads have 2 MiB): running out of the host thread's stack aborts.
pub const MAX_WASM_STACK: usize = 512 << 10;

/// The three kinds of plugin: a component implements exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    Policy,
    Scorer,
    Reporter,
}

impl World {
    pub fn name(self) -> &'static str {
        match self {
            World::Policy => "policy",
            World::Scorer => "scorer",
            World::Reporter => "reporter",
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How CPU time is bounded. Chosen per runtime because it is part of the compiled code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meter {
    /// Epoch interruption: a deadline in wall-clock ticks. Cheapest; the server's choice.
    Epoch,
    /// Fuel: a deterministic instruction budget, reported per call. `plugin run`'s choice.
    Fuel,
}

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub meter: Meter,
    /// Where compiled components are kept across restarts; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Instances that may exist at once (pool slots); further calls wait for a slot.
    pub max_instances: u32,
    /// The hard ceiling on any call's memory limit (pool slot size).
    pub max_memory_bytes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig { meter: Meter::Epoch, cache_dir: None, max_instances: 64, max_memory_bytes: 256 << 20 }
    }
}

/// Memory a pool slot keeps resident between instances (a small Rust plugin's stack and data
/// sit around its first 1.2 MiB).
const KEEP_RESIDENT: usize = 2 << 20;

/// componentize-py's components (Python plugins) instantiate 38 core modules: CPython, its libc,
/// the bindings and the trapping WASI stubs.
const CORE_INSTANCES_PER_COMPONENT: u32 = 64;
const MEMORIES_PER_COMPONENT: u32 = 4;
const TABLES_PER_COMPONENT: u32 = 8;

/// Epoch tick length: CPU limits are enforced to this resolution.
const TICK: Duration = Duration::from_millis(1);

pub struct Runtime {
    inner: Arc<Inner>,
    ticker: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

struct Inner {
    engine: Engine,
    meter: Meter,
    linker: Linker<State>,
    cache: cache::DiskCache,
    loaded: Mutex<HashMap<[u8; 32], Weak<Loaded>>>,
    permits: permits::Permits,
}

/// A compiled component, checked against its world, ready to instantiate. Shared by every
/// organization that installed the same bytes.
struct Loaded {
    inspection: Inspection,
    pre: Prepared,
}

/// One variant per contract version this host runs.
enum Prepared {
    V0_1(v0_1_0::Pre),
}

impl Runtime {
    /// # Errors
    /// The wasm engine cannot start (e.g. the pooling allocator cannot reserve its memory), the
    /// contract cannot be linked, or the plugin cache directory cannot be created.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let mut pool = PoolingAllocationConfig::default();
        let slots = config.max_instances;
        // Every slot can hold the largest component we admit, so one tenant's heavy components
        // cannot exhaust a shared sub-pool and fail another tenant's instantiation: the permits
        // below are the only back-pressure.
        pool.total_component_instances(slots)
            .total_core_instances(slots * CORE_INSTANCES_PER_COMPONENT)
            .total_memories(slots * MEMORIES_PER_COMPONENT)
            .total_tables(slots * TABLES_PER_COMPONENT)
            .max_memory_size(config.max_memory_bytes)
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(MEMORIES_PER_COMPONENT)
            .max_tables_per_component(TABLES_PER_COMPONENT)
            // A fresh instance per call would page-fault its stack and data back in every time if
            // the pool returned slots with madvise. Keep slots resident and, where the kernel has
            // PAGEMAP_SCAN (Linux 6.7+), reset only the pages the last call dirtied.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .strategy(wasmtime::Strategy::Cranelift)
            .max_wasm_stack(MAX_WASM_STACK)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        match config.meter {
            Meter::Epoch => wasm.epoch_interruption(true),
            Meter::Fuel => wasm.consume_fuel(true),
        };
        let engine = Engine::new(&wasm).map_err(|e| anyhow::anyhow!("cannot start the wasm engine: {e}"))?;

        let mut linker = Linker::new(&engine);
        link_wasi_stubs(&mut linker).map_err(|e| anyhow::anyhow!("linking WASI stubs: {e}"))?;
        v0_1_0::add_to_linker(&mut linker).map_err(|e| anyhow::anyhow!("linking contract 0.1: {e}"))?;

        let ticker = (config.meter == Meter::Epoch).then(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let engine = engine.clone();
            let flag = stop.clone();
            let handle = std::thread::Builder::new()
                .name("rapport-epoch".into())
                .spawn(move || {
                    while !flag.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .expect("spawn the epoch ticker thread");
            (stop, handle)
        });

        let cache = cache::DiskCache::new(config.cache_dir, &engine)?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                meter: config.meter,
                linker,
                cache,
                loaded: Mutex::new(HashMap::new()),
                permits: permits::Permits::new(slots as usize),
            }),
            ticker,
        })
    }

    pub fn meter(&self) -> Meter {
        self.inner.meter
    }

    /// Validate and compile a component (or take it from the cache) and check it against its
    /// world. What `rapport plugin check` and every installation run.
    ///
    /// # Errors
    /// Why the component is refused ([`AdmissionError`]): not a component, no Rapport world or
    /// contract, a contract version this host does not run, a forbidden import, a mismatch with its
    /// world, an invalid config schema section, or a failed compilation.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Plugin, AdmissionError> {
        let hash = cache::sha256(bytes);
        let existing = self.inner.loaded.lock().unwrap_or_else(|e| e.into_inner()).get(&hash).and_then(Weak::upgrade);
        let loaded = match existing {
            Some(loaded) => loaded,
            None => {
                admission::validate(bytes)?;
                let component = self.inner.cache.component(&self.inner.engine, &hash, bytes)?;
                let mut inspection = admission::inspect(&self.inner.engine, &component, hash)?;
                inspection.config_schema = admission::config_schema(bytes)?;
                let pre = match inspection.version {
                    (0, 1, _) => {
                        Prepared::V0_1(v0_1_0::Pre::new(&self.inner.linker, &component, inspection.world).map_err(
                            |e| AdmissionError::Mismatch {
                                world: inspection.world.name(),
                                version: inspection.version_string(),
                                detail: format!("{e:#}"),
                            },
                        )?)
                    }
                    _ => unreachable!("admission::inspect refuses versions without a host module"),
                };
                let loaded = Arc::new(Loaded { inspection, pre });
                let mut map = self.inner.loaded.lock().unwrap_or_else(|e| e.into_inner());
                map.retain(|_, w| w.strong_count() > 0);
                map.insert(hash, Arc::downgrade(&loaded));
                loaded
            }
        };
        Ok(Plugin { name: name.to_owned(), loaded, rt: self.inner.clone() })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.ticker.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
    }
}

/// The WASI interfaces Rust's std on `wasm32-wasip2` imports even when a plugin never uses them,
/// backed by a context that grants nothing (see `State`). Nothing else of WASI is linked: a
/// component that imports files, sockets, clocks or randomness is refused at admission.
fn link_wasi_stubs(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::WasiCli;
    use wasmtime_wasi::p2::bindings::{cli, sync::io};

    struct Io;
    impl wasmtime::component::HasData for Io {
        type Data<'a> = &'a mut wasmtime::component::ResourceTable;
    }

    let l = linker;
    cli::environment::add_to_linker::<State, WasiCli>(l, <State as wasmtime_wasi::cli::WasiCliView>::cli)?;
    cli::exit::add_to_linker::<State, WasiCli>(l, <State as wasmtime_wasi::cli::WasiCliView>::cli)?;
    cli::stdin::add_to_linker::<State, WasiCli>(l, <State as wasmtime_wasi::cli::WasiCliView>::cli)?;
    cli::stdout::add_to_linker::<State, WasiCli>(l, <State as wasmtime_wasi::cli::WasiCliView>::cli)?;
    cli::stderr::add_to_linker::<State, WasiCli>(l, <State as wasmtime_wasi::cli::WasiCliView>::cli)?;
    cli::terminal_input::add_to_linker::<State, WasiCli>(l, <State as wasmtime_wasi::cli::WasiCliView>::cli)?;
    cli::terminal_output::add_to_linker::<State, WasiCli>(l, <State as wasmtime_wasi::cli::WasiCliView>::cli)?;
    cli::terminal_stdin::add_to_linker::<State, WasiCli>(l, <State as wasmtime_wasi::cli::WasiCliView>::cli)?;
    cli::terminal_stdout::add_to_linker::<State, WasiCli>(l, <State as wasmtime_wasi::cli::WasiCliView>::cli)?;
    cli::terminal_stderr::add_to_linker::<State, WasiCli>(l, <State as wasmtime_wasi::cli::WasiCliView>::cli)?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<State, Io>(l, State::table)?;
    io::poll::add_to_linker::<State, Io>(l, State::table)?;
    io::streams::add_to_linker::<State, Io>(l, State::table)?;
    Ok(())
}

/// What one organization's call brings: its data, the plugin's config for it, its limits.
#[derive(Clone)]
pub struct CallContext {
    pub data: Arc<dyn DataSource>,
    /// The plugin's configuration, a JSON object.
    pub config: Arc<str>,
    pub limits: Limits,
}

impl CallContext {
    pub fn new(data: Arc<dyn DataSource>, config: &Value, limits: Limits) -> CallContext {
        CallContext { data, config: config.to_string().into(), limits }
    }
}

/// What a call did: kept in the execution trace and printed by `plugin run`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Trace {
    pub duration_us: u64,
    /// Fuel consumed (instructions, roughly); only under [`Meter::Fuel`].
    pub fuel: Option<u64>,
    pub host_calls: u32,
    pub peak_memory_bytes: usize,
    pub logs: Vec<LogLine>,
    /// Log lines past the limit, counted but not kept.
    pub dropped_logs: usize,
}

/// A successful call's result and its trace.
#[derive(Debug, Clone)]
pub struct Called<T> {
    pub value: T,
    pub trace: Trace,
}

/// A loaded plugin: cheap to clone, safe to call from many threads at once.
#[derive(Clone)]
pub struct Plugin {
    name: String,
    loaded: Arc<Loaded>,
    rt: Arc<Inner>,
}

impl Plugin {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn info(&self) -> &Inspection {
        &self.loaded.inspection
    }

    pub fn world(&self) -> World {
        self.loaded.inspection.world
    }

    /// # Errors
    /// A [`CallError`] saying what stopped the call: a limit, a trap, an error the plugin reported,
    /// an invalid decision (or a patch that does not apply), a host failure (reading data), or a
    /// plugin of another world.
    pub fn before(&self, ctx: &CallContext, change: &model::Change) -> Result<Called<model::Decision>, CallError> {
        self.call(ctx, "before", |live, store| match live {
            Live::V0_1(l) => l.before(store, change),
        })
    }

    /// # Errors
    /// A [`CallError`] saying what stopped the call: a limit, a trap, an error the plugin reported,
    /// invalid actions, a host failure (reading data), or a plugin of another world.
    pub fn after(&self, ctx: &CallContext, change: &model::Change) -> Result<Called<Vec<model::Action>>, CallError> {
        self.call(ctx, "after", |live, store| match live {
            Live::V0_1(l) => l.after(store, change),
        })
    }

    /// # Errors
    /// A [`CallError`] saying what stopped the call: a limit, a trap, an error the plugin reported,
    /// an invalid report, a host failure (reading data), or a plugin of another world.
    pub fn run_report(&self, ctx: &CallContext, params: &Value) -> Result<Called<model::Report>, CallError> {
        self.call(ctx, "run", |live, store| match live {
            Live::V0_1(l) => l.run(store, params),
        })
    }

    /// A scorer's calls for one rescore share one instance: `describe`, `fit`, then `score` per
    /// batch. Each call still gets its own CPU budget, host-call count and trace; memory is the
    /// instance's. A rescore serves one organization with one config, so nothing crosses
    /// organizations, and the instance's heap stays warm instead of faulting in per batch.
    pub fn session(&self, ctx: &CallContext) -> Session<'_> {
        Session { plugin: self, ctx: ctx.clone(), live: None, spec: None, _slot: self.rt.permits.acquire() }
    }

    fn new_store(&self, ctx: &CallContext) -> Store<State> {
        let mut store = Store::new(&self.rt.engine, State::new(ctx.data.clone(), ctx.config.clone(), &ctx.limits));
        store.limiter(|s| &mut s.limiter);
        store
    }

    fn instantiate(&self, store: &mut Store<State>) -> wasmtime::Result<Live> {
        Ok(match &self.loaded.pre {
            Prepared::V0_1(pre) => Live::V0_1(pre.instantiate(store)?),
        })
    }

    /// One call on a fresh instance: wait for a pool slot, instantiate, call, classify.
    fn call<T: Weigh>(
        &self,
        ctx: &CallContext,
        export: &'static str,
        f: impl FnOnce(&Live, &mut Store<State>) -> wasmtime::Result<Result<T, Failure>>,
    ) -> Result<Called<T>, CallError> {
        let _slot = self.rt.permits.acquire();
        let mut store = self.new_store(ctx);
        self.metered(&mut store, &ctx.limits, export, |store| {
            let live = self.instantiate(store)?;
            f(&live, store)
        })
    }

    /// Run `f` under the call's limits, then weigh its output or classify its failure.
    fn metered<T: Weigh>(
        &self,
        store: &mut Store<State>,
        limits: &Limits,
        export: &'static str,
        f: impl FnOnce(&mut Store<State>) -> wasmtime::Result<Result<T, Failure>>,
    ) -> Result<Called<T>, CallError> {
        let meter = self.rt.meter;
        match meter {
            Meter::Fuel => store.set_fuel(limits.fuel).expect("fuel is enabled under Meter::Fuel"),
            Meter::Epoch => {
                let ticks = limits.cpu_time.as_micros().div_ceil(TICK.as_micros()).max(1) as u64;
                store.set_epoch_deadline(ticks);
                store.epoch_deadline_trap();
            }
        }
        // Epochs cannot interrupt a host call: host functions check this deadline themselves.
        // Under fuel (deterministic counts) the host-call limit bounds a host-call loop instead.
        let deadline = match meter {
            Meter::Epoch => Some(Instant::now() + limits.cpu_time),
            Meter::Fuel => None,
        };
        store.data_mut().start_call(deadline);

        let start = Instant::now();
        let result = f(store);
        let duration = start.elapsed();
        let fuel = match meter {
            Meter::Fuel => Some(limits.fuel - store.get_fuel().unwrap_or(0)),
            Meter::Epoch => None,
        };
        let state = store.data_mut();
        let trace = Trace {
            duration_us: duration.as_micros() as u64,
            fuel,
            host_calls: state.host_calls,
            peak_memory_bytes: state.limiter.peak_memory,
            logs: std::mem::take(&mut state.logs),
            dropped_logs: state.dropped_logs,
        };

        let failure = match result {
            Ok(Ok(value)) => {
                let size = value.weight();
                if size <= limits.output_bytes {
                    crate::metrics::plugin_call(&self.name, "ok", duration, fuel);
                    return Ok(Called { value, trace });
                }
                Failure::Output { size, limit: limits.output_bytes }
            }
            Ok(Err(failure)) => failure,
            Err(error) => classify(error, state, &trace, limits, meter),
        };
        crate::metrics::plugin_call(&self.name, failure.code(), duration, fuel);
        Err(CallError { plugin: self.name.clone(), export, failure, trace: Box::new(trace) })
    }
}

/// An instance kept for a sequence of calls from one organization (see [`Plugin::session`]).
/// Holds a pool slot for its lifetime. After a trap the instance cannot be entered again, so the
/// session drops it and the next call starts a fresh one.
pub struct Session<'p> {
    plugin: &'p Plugin,
    ctx: CallContext,
    live: Option<(Store<State>, Live)>,
    /// What `describe` declared, so that `score` columns can be held to it.
    spec: Option<model::ScorerSpec>,
    _slot: permits::Permit<'p>,
}

impl Session<'_> {
    /// # Errors
    /// A [`CallError`] saying what stopped the call: a limit, a trap, an error the plugin reported,
    /// an invalid spec, a host failure (reading data), or a plugin of another world.
    pub fn describe(&mut self) -> Result<Called<model::ScorerSpec>, CallError> {
        let described = self.call("describe", |live, store| match live {
            Live::V0_1(l) => l.describe(store),
        });
        if let Ok(called) = &described {
            self.spec = Some(called.value.clone());
        }
        described
    }

    /// Batches are taken by value: they are moved into the call, not copied.
    ///
    /// # Errors
    /// A [`CallError`] saying what stopped the call: a limit, a trap, an error the plugin reported,
    /// a host failure (reading data), or a plugin of another world.
    pub fn fit(&mut self, population: model::FeatureBatch) -> Result<Called<Vec<u8>>, CallError> {
        self.call("fit", |live, store| match live {
            Live::V0_1(l) => l.fit(store, population),
        })
    }

    /// After a `describe` in this session, a column named after no score or label it declared is
    /// refused (it could never be read back by that name).
    ///
    /// # Errors
    /// A [`CallError`] saying what stopped the call: a limit, a trap, an error the plugin reported,
    /// a batch that does not fit the customers or names an undeclared column, a host failure
    /// (reading data), or a plugin of another world.
    pub fn score(&mut self, batch: model::FeatureBatch, model: &[u8]) -> Result<Called<model::ScoreBatch>, CallError> {
        let spec = self.spec.clone();
        self.call("score", |live, store| match live {
            Live::V0_1(l) => l.score(store, batch, model, spec.as_ref()),
        })
    }

    fn call<T: Weigh>(
        &mut self,
        export: &'static str,
        f: impl FnOnce(&Live, &mut Store<State>) -> wasmtime::Result<Result<T, Failure>>,
    ) -> Result<Called<T>, CallError> {
        let plugin = self.plugin;
        let result = match self.live.take() {
            Some((mut store, live)) => {
                let result = plugin.metered(&mut store, &self.ctx.limits, export, |store| f(&live, store));
                self.live = Some((store, live));
                result
            }
            None => {
                let mut store = plugin.new_store(&self.ctx);
                let mut live = None;
                let result = plugin.metered(&mut store, &self.ctx.limits, export, |store| {
                    let instance = live.insert(plugin.instantiate(store)?);
                    f(instance, store)
                });
                self.live = live.map(|live| (store, live));
                result
            }
        };
        if let Err(e) = &result
            && !matches!(e.failure, Failure::Plugin(_) | Failure::BadOutput { .. } | Failure::Output { .. })
        {
            // A trap or a limit: the instance is poisoned (or its memory is at the limit).
            self.live = None;
        }
        result
    }
}

/// One variant per contract version: a live instance of that version's bindings.
enum Live {
    V0_1(v0_1_0::Live),
}

/// Turn a wasmtime error into the failure the author needs to see. Limits are recognised first
/// (the guest often turns a refused allocation into a trap of its own), then trap codes.
fn classify(error: wasmtime::Error, state: &State, trace: &Trace, limits: &Limits, meter: Meter) -> Failure {
    if error.is::<HostCallLimit>() {
        return Failure::HostCalls { limit: limits.host_calls };
    }
    if let Some(data_error) = error.downcast_ref::<DataError>() {
        return Failure::Host { message: data_error.to_string() };
    }
    if error.is::<HostCallDeadline>() {
        return Failure::Cpu {
            limit: format!("{} ms (reached during a host call)", limits.cpu_time.as_millis()),
            setting: "cpu_time",
        };
    }
    let trap = error.downcast_ref::<Trap>();
    // A CPU or stack trap is what stopped the call, even if a memory request was refused earlier
    // (and survived by the guest); any other trap after a refusal is the refusal's doing.
    if !matches!(trap, Some(Trap::OutOfFuel | Trap::Interrupt | Trap::StackOverflow)) {
        match state.limiter.hit {
            Some(limits::Hit::Memory { requested }) => {
                return Failure::Memory {
                    limit_mib: limits.memory_bytes >> 20,
                    requested_mib: requested.div_ceil(1 << 20),
                };
            }
            Some(limits::Hit::Table { .. }) => return Failure::Table { limit: limits.table_elements },
            None => {}
        }
    }
    match trap {
        Some(Trap::OutOfFuel) | Some(Trap::Interrupt) => match meter {
            Meter::Fuel => Failure::Cpu { limit: format!("{} fuel", limits.fuel), setting: "fuel" },
            Meter::Epoch => Failure::Cpu { limit: format!("{} ms", limits.cpu_time.as_millis()), setting: "cpu_time" },
        },
        Some(Trap::StackOverflow) => Failure::Stack { limit_kib: MAX_WASM_STACK >> 10 },
        Some(trap) => {
            // A Rust plugin's panic reaches us as `unreachable`; the SDK logged its message first.
            let said = trace
                .logs
                .iter()
                .rev()
                .find(|l| l.level == Level::Error)
                .map(|l| format!("; its last error log: {}", l.message))
                .unwrap_or_default();
            Failure::Trap { message: format!("{trap}{said}") }
        }
        None => {
            // wasmtime reports the instance/memory/table count limits as a plain message
            // ("resource limit exceeded: instance count too high at 65"); tests pin the wording.
            let message = format!("{error:#}");
            match message.split("resource limit exceeded: ").nth(1) {
                Some(rest) => Failure::Instances { detail: rest.to_owned() },
                None => Failure::Trap { message },
            }
        }
    }
}

/// Components that cross organizations are shared; count them for density reports and tests.
pub fn loaded_count(rt: &Runtime) -> usize {
    rt.inner.loaded.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|w| w.strong_count() > 0).count()
}
