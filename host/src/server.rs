//! `rapport serve`: configuration (flags, then environment, then an optional TOML file, then
//! defaults), start-up (store, admin token, pipeline, unfinished jobs), and the optional demo
//! organization a newcomer explores.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::HeaderValue;
use serde::Deserialize;

use crate::api::{AppState, HttpLimits, hash_token, new_token};
use crate::model::Actor;
use crate::pipeline::{ImportFormat, ImportKind, Pipeline, Settings};
use crate::plugins::{Runtime, RuntimeConfig};
use crate::store::{DataLock, NewKey, Store, StoreError};
use crate::webhooks::WebhookConfig;

/// Operator-facing lines on stdout. A closed stdout (a supervisor that stopped reading, a script
/// that read only the first line) must not take the server down, as `println!` would by
/// panicking on the broken pipe: write errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Every setting of `rapport serve`. Each is a flag, an environment variable, or a key of the
/// TOML file given with `--config`, in that order of precedence.
#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// A TOML file with any of the settings below (keys as the flags, with `_` for `-`).
    #[arg(long, env = "RAPPORT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the database lives [default: ./rapport-data].
    #[arg(long, env = "RAPPORT_DATA")]
    pub data: Option<PathBuf>,
    /// The address to listen on; port 0 picks a free one (the address is printed)
    /// [default: 127.0.0.1:8080].
    #[arg(long, env = "RAPPORT_LISTEN")]
    pub listen: Option<String>,
    /// The largest JSON request body, in KiB [default: 2048].
    #[arg(long, env = "RAPPORT_BODY_LIMIT_KIB")]
    pub body_limit_kib: Option<usize>,
    /// The largest import or plugin upload, in MiB [default: 256].
    #[arg(long, env = "RAPPORT_UPLOAD_LIMIT_MIB")]
    pub upload_limit_mib: Option<usize>,
    /// How long an ordinary request may take, in seconds [default: 30].
    #[arg(long, env = "RAPPORT_REQUEST_TIMEOUT")]
    pub request_timeout: Option<u64>,
    /// How long an import, upload or report may take, in seconds [default: 600].
    #[arg(long, env = "RAPPORT_LONG_REQUEST_TIMEOUT")]
    pub long_request_timeout: Option<u64>,
    /// How long shutdown waits for running jobs, in seconds; a job still running after that
    /// resumes at the next start [default: 60].
    #[arg(long, env = "RAPPORT_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<u64>,
    /// The wait before a failed webhook delivery's first retry, in milliseconds; it doubles
    /// with each failure up to an hour, for 10 attempts [default: 30000].
    #[arg(long, env = "RAPPORT_WEBHOOK_RETRY_MS")]
    pub webhook_retry_ms: Option<u64>,
    /// Origins (comma-separated, e.g. `https://crm.example.com`) whose pages may call the API
    /// from a browser; none by default (CORS off).
    #[arg(long, env = "RAPPORT_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,
    /// Log lines as JSON (one object a line) instead of text. The level comes from RAPPORT_LOG
    /// (e.g. `info`, `rapport=debug`).
    #[arg(long, env = "RAPPORT_LOG_JSON")]
    pub log_json: Option<bool>,
    /// Start with a demo organization `demo` (generated customers, distributors and history)
    /// with the plugins in --demo-plugins installed and enabled, and print an owner key for it.
    #[arg(long, env = "RAPPORT_DEMO")]
    pub demo: Option<bool>,
    /// The directory of built plugin components (`*.wasm`) for --demo.
    #[arg(long, env = "RAPPORT_DEMO_PLUGINS")]
    pub demo_plugins: Option<PathBuf>,
    /// Customers in the demo organization [default: 2000].
    #[arg(long, env = "RAPPORT_DEMO_CUSTOMERS")]
    pub demo_customers: Option<u64>,
}

/// The TOML file: the same settings, all optional.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    listen: Option<String>,
    body_limit_kib: Option<usize>,
    upload_limit_mib: Option<usize>,
    request_timeout: Option<u64>,
    long_request_timeout: Option<u64>,
    shutdown_grace: Option<u64>,
    webhook_retry_ms: Option<u64>,
    cors_origins: Option<Vec<String>>,
    log_json: Option<bool>,
    demo: Option<bool>,
    demo_plugins: Option<PathBuf>,
    demo_customers: Option<u64>,
}

/// The settings in force.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data: PathBuf,
    pub listen: String,
    pub limits: HttpLimits,
    pub shutdown_grace: Duration,
    pub webhooks: WebhookConfig,
    pub cors_origins: Vec<HeaderValue>,
    pub log_json: bool,
    pub demo: Option<Demo>,
}

#[derive(Debug, Clone)]
pub struct Demo {
    pub plugins: Option<PathBuf>,
    pub customers: u64,
}

impl ServeConfig {
    /// Flags and environment (which clap has merged) over the file over the defaults.
    pub fn load(args: ServeArgs) -> anyhow::Result<ServeConfig> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("the config file {} is invalid", path.display()))?
            }
            None => FileConfig::default(),
        };
        let defaults = HttpLimits::default();
        let demo = args.demo.or(file.demo).unwrap_or(false).then(|| Demo {
            plugins: args.demo_plugins.or(file.demo_plugins),
            customers: args.demo_customers.or(file.demo_customers).unwrap_or(2000),
        });
        Ok(ServeConfig {
            data: args.data.or(file.data).unwrap_or_else(|| PathBuf::from("./rapport-data")),
            listen: args.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:8080".into()),
            limits: HttpLimits {
                body: args.body_limit_kib.or(file.body_limit_kib).map_or(defaults.body, |k| k << 10),
                upload: args.upload_limit_mib.or(file.upload_limit_mib).map_or(defaults.upload, |m| m << 20),
                timeout: args.request_timeout.or(file.request_timeout).map_or(defaults.timeout, Duration::from_secs),
                long_timeout: args
                    .long_request_timeout
                    .or(file.long_request_timeout)
                    .map_or(defaults.long_timeout, Duration::from_secs),
            },
            shutdown_grace: Duration::from_secs(args.shutdown_grace.or(file.shutdown_grace).unwrap_or(60)),
            webhooks: match args.webhook_retry_ms.or(file.webhook_retry_ms) {
                Some(ms) => WebhookConfig::with_retry_base(Duration::from_millis(ms)),
                None => WebhookConfig::default(),
            },
            cors_origins: args
                .cors_origins
                .or(file.cors_origins)
                .unwrap_or_default()
                .iter()
                .map(|o| HeaderValue::from_str(o.trim()).with_context(|| format!("`{o}` is not a valid CORS origin")))
                .collect::<anyhow::Result<_>>()?,
            log_json: args.log_json.or(file.log_json).unwrap_or(false),
            demo,
        })
    }
}

/// Compiled components are cached here between runs (a Python plugin takes seconds to compile).
pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("RAPPORT_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/rapport/components")))
}

/// The admin token's hash: from RAPPORT_ADMIN_TOKEN, or the one kept from an earlier start, or a
/// new token generated and printed once.
fn admin_hash(store: &Store) -> anyhow::Result<String> {
    const KEY: &str = "admin_token_sha256";
    if let Some(token) = std::env::var("RAPPORT_ADMIN_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        let hash = hash_token(token.trim());
        store.set_setting(KEY, &hash)?;
        return Ok(hash);
    }
    if let Some(hash) = store.setting(KEY)? {
        return Ok(hash);
    }
    let token = new_token("ra");
    let hash = hash_token(&token);
    store.set_setting(KEY, &hash)?;
    say!("admin token (shown once; set RAPPORT_ADMIN_TOKEN to choose your own): {token}");
    Ok(hash)
}

/// Run the server until Ctrl-C or SIGTERM.
pub fn run(config: ServeConfig) -> anyhow::Result<()> {
    // Held until the server exits: a restore must not swap the database out from under it (and
    // a second server on the same directory would not share this one's writer queue).
    let _lock = DataLock::acquire(&config.data, "rapport serve")?;
    let store = Store::open(&config.data)?;
    let admin_hash = admin_hash(&store)?;
    let runtime = Runtime::new(RuntimeConfig { cache_dir: cache_dir(), ..RuntimeConfig::default() })?;
    let pipeline = Pipeline::new(store, runtime, Settings::default());
    let demo_key = match &config.demo {
        Some(demo) => seed_demo(&pipeline, demo, &config.data).context("cannot set up the demo organization")?,
        None => None,
    };
    let resume = pipeline.clone();
    std::thread::Builder::new().name("resume-jobs".into()).stack_size(8 << 20).spawn(move || {
        if let Err(e) = resume.resume_jobs() {
            tracing::error!("resuming jobs: {e}");
        }
    })?;
    let state = Arc::new(AppState {
        pipeline,
        admin_hash,
        limits: config.limits.clone(),
        shutdown_grace: config.shutdown_grace,
        webhooks: config.webhooks.clone(),
        cors_origins: config.cors_origins.clone(),
        console: Default::default(),
    });
    // Blocking threads run plugin calls: give them room for the wasm stack limit and more.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(8 << 20).build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr: SocketAddr = listener.local_addr()?;
        // Tests and scripts read this first line for the address.
        say!("rapport listening on http://{addr}");
        if let Some(token) = demo_key {
            say!("  console:   http://{addr}/   (sign in with the owner key below)");
            say!("  docs:      http://{addr}/docs");
            say!("  demo org:  http://{addr}/v1/orgs/demo   (owner key, shown once: {token})");
            say!("  try:       curl -H 'Authorization: Bearer {token}' http://{addr}/v1/orgs/demo/customers?limit=3");
        }
        crate::api::serve(listener, state).await?;
        anyhow::Ok(())
    })
}

/// Create the demo organization once: generated data, the plugins found in `demo.plugins`
/// installed and enabled, and a fresh owner key each start (returned to be printed).
fn seed_demo(pipeline: &Pipeline, demo: &Demo, data: &Path) -> anyhow::Result<Option<String>> {
    const ORG: &str = "demo";
    let actor = Actor { name: "demo-setup".into(), role: crate::model::Role::Admin };
    let store = pipeline.store();
    let fresh = match store.org(ORG) {
        Ok(_) => false,
        Err(StoreError::NoSuchOrg(_)) => {
            store.create_org(ORG, "Demo Organization")?;
            true
        }
        Err(e) => return Err(e.into()),
    };
    let org = store.org(ORG)?;
    if fresh {
        let spec = crate::demo::DemoSpec::new(42, demo.customers);
        let files = crate::demo::write(&spec, &data.join("demo-files"))?;
        for (file, kind) in [
            (&files.distributors, ImportKind::Distributors),
            (&files.customers, ImportKind::Customers),
            (&files.interactions, ImportKind::Interactions),
        ] {
            let reader = std::io::BufReader::new(std::fs::File::open(file)?);
            let report = pipeline.import(ORG, &actor, kind, ImportFormat::Ndjson, reader, |_| {}, false)?;
            tracing::info!(?kind, accepted = report.accepted, "demo data imported");
        }
        if let Some(dir) = &demo.plugins {
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("cannot read the demo plugins directory {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect();
            found.sort();
            for path in found {
                let name = path.file_stem().map(|s| s.to_string_lossy().replace('_', "-")).unwrap_or_default();
                let bytes = std::fs::read(&path)?;
                match pipeline.install(ORG, &actor, &name, &bytes, Some("demo"), None, true) {
                    Ok(_) => {
                        pipeline.enable(ORG, &actor, &name)?;
                        say!("  plugin:    {name} installed and enabled");
                    }
                    Err(e) => say!("  plugin:    {name} skipped: {e}"),
                }
            }
            let job = pipeline.create_rescore_job(ORG, &actor)?;
            pipeline.run_job(ORG, job.id, None)?;
        }
    }
    let token = new_token("rk");
    org.create_key(&NewKey {
        name: "demo-owner",
        role: "owner",
        hash: &hash_token(&token),
        branch: None,
        distributor: None,
    })?;
    Ok(Some(token))
}
