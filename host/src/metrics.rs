//! Prometheus metrics (`GET /metrics`): HTTP requests by route and status with latencies, plugin
//! calls by plugin and outcome, fuel used, limit hits, job progress.
//!
//! One process-wide registry, as Prometheus clients usually have: plugin calls are counted where
//! the runtime finishes them, far from any request's state.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    plugin: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    plugin: String,
    limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    org: String,
    job: String,
    kind: String,
}

struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    calls: Family<CallLabels, Counter>,
    call_seconds: Family<PluginLabels, Histogram>,
    fuel: Family<PluginLabels, Counter>,
    limits: Family<LimitLabels, Counter>,
    job_done: Family<JobLabels, Gauge>,
    job_total: Family<JobLabels, Gauge>,
    sqlite_memory: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("rapport");
    let requests = Family::<RequestLabels, Counter>::default();
    registry.register("http_requests", "HTTP requests answered, by route and status", requests.clone());
    let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
        Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0])
    });
    registry.register("http_request_duration_seconds", "Time to answer a request", latency.clone());
    let calls = Family::<CallLabels, Counter>::default();
    registry.register("plugin_calls", "Plugin calls by plugin and outcome (ok or the failure's code)", calls.clone());
    let call_seconds = Family::<PluginLabels, Histogram>::new_with_constructor(|| {
        Histogram::new([0.00001, 0.00003, 0.0001, 0.0003, 0.001, 0.003, 0.01, 0.1, 1.0])
    });
    registry.register("plugin_call_duration_seconds", "Time inside one plugin call", call_seconds.clone());
    let fuel = Family::<PluginLabels, Counter>::default();
    registry.register("plugin_fuel_used", "Fuel (roughly instructions) plugins used", fuel.clone());
    let limits = Family::<LimitLabels, Counter>::default();
    registry.register("plugin_limit_hits", "Calls stopped by a limit (cpu, memory, stack, ...)", limits.clone());
    let job_done = Family::<JobLabels, Gauge>::default();
    registry.register("job_done_items", "Items a running job has finished", job_done.clone());
    let job_total = Family::<JobLabels, Gauge>::default();
    registry.register("job_total_items", "Items a running job will process", job_total.clone());
    let sqlite_memory = Gauge::default();
    registry.register(
        "sqlite_memory_bytes",
        "Memory SQLite holds (mostly page caches, bounded by cache_size per pooled connection): what of the \
         process's resident memory is cache rather than growth",
        sqlite_memory.clone(),
    );
    Metrics { registry, requests, latency, calls, call_seconds, fuel, limits, job_done, job_total, sqlite_memory }
});

/// One answered HTTP request. `route` is the route's template (`/v1/orgs/{org}/...`), never
/// the raw path: one series per route, not per customer.
pub fn http(method: &str, route: &str, status: u16, took: Duration) {
    let m = &*METRICS;
    m.requests.get_or_create(&RequestLabels { method: method.into(), route: route.into(), status }).inc();
    m.latency.get_or_create(&RouteLabels { method: method.into(), route: route.into() }).observe(took.as_secs_f64());
}

/// A failure code that is a resource limit (see `plugins::Failure::code`).
const LIMIT_CODES: [&str; 7] = ["cpu", "memory", "table", "stack", "host_calls", "output", "instances"];

/// One finished plugin call: `outcome` is `ok` or its failure's code.
pub fn plugin_call(plugin: &str, outcome: &str, took: Duration, fuel: Option<u64>) {
    let m = &*METRICS;
    m.calls.get_or_create(&CallLabels { plugin: plugin.into(), outcome: outcome.into() }).inc();
    let labels = PluginLabels { plugin: plugin.into() };
    m.call_seconds.get_or_create(&labels).observe(took.as_secs_f64());
    if let Some(f) = fuel {
        m.fuel.get_or_create(&labels).inc_by(f);
    }
    if LIMIT_CODES.contains(&outcome) {
        m.limits.get_or_create(&LimitLabels { plugin: plugin.into(), limit: outcome.into() }).inc();
    }
}

/// A running job's progress, as of the scrape.
pub struct JobProgress {
    pub org: String,
    pub job: i64,
    pub kind: String,
    pub done: u64,
    pub total: u64,
}

/// The Prometheus text exposition, with `jobs` as the running jobs' progress.
pub fn render(jobs: &[JobProgress]) -> String {
    let m = &*METRICS;
    m.job_done.clear();
    m.job_total.clear();
    for j in jobs {
        let labels = JobLabels { org: j.org.clone(), job: j.job.to_string(), kind: j.kind.clone() };
        m.job_done.get_or_create(&labels).set(j.done as i64);
        m.job_total.get_or_create(&labels).set(j.total as i64);
    }
    m.sqlite_memory.set(crate::store::sqlite_memory_used());
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &m.registry).expect("writing to a String cannot fail");
    out
}
