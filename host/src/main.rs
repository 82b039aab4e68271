//! The `rapport` command: the server, the plugin tools, and the admin client.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::Value;

use rapport::demo::DemoSpec;
use rapport::fixture::Fixture;
use rapport::model::Actor;
use rapport::plugins::{Limits, Meter, Runtime, RuntimeConfig};
use rapport::runner::{Run, RunError};
use rapport::store::{ImportFormat, ImportKind, ImportReport, OrgStore, Store, StoreError};

#[derive(Parser)]
#[command(name = "rapport", version, about = "A self-hosted CRM whose business rules are WebAssembly plugins")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: the admin HTTP API over the write pipeline, on an embedded SQLite store.
    ///
    /// The admin token comes from RAPPORT_ADMIN_TOKEN, or is generated on first start and printed
    /// once (only its hash is kept).
    Serve(ServeArgs),
    /// Work with plugin components.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Manage organizations in a data directory.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Generate a demo organization: branches, a sponsor tree, customers with a buy-till-you-die
    /// purchase history, calls, chats and tickets (deterministic from --seed), and import it.
    Demo(DemoArgs),
    /// Bulk-import customers, interactions or distributors (NDJSON or CSV) into an organization.
    ///
    /// Records are keyed by (source, external_id): re-running an import changes nothing. Bad
    /// records are reported by line while the good ones land; each batch is one transaction.
    Import {
        /// The file to import; its extension (.ndjson, .jsonl, .csv) gives the format.
        file: PathBuf,
        #[arg(long)]
        org: String,
        #[arg(long, value_enum)]
        kind: KindArg,
        /// Override the format the extension implies.
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        #[arg(long, env = "RAPPORT_DATA", default_value = "./rapport-data")]
        data: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Where the database lives.
    #[arg(long, env = "RAPPORT_DATA", default_value = "./rapport-data")]
    data: PathBuf,
    /// The address to listen on (port 0 picks a free one; the address is printed).
    #[arg(long, env = "RAPPORT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// The organization to fill (created if it does not exist).
    #[arg(long, default_value = "demo")]
    org: String,
    #[arg(long, default_value_t = 10_000)]
    customers: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where the generated NDJSON files go (default: DATA/demo-ORG).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, env = "RAPPORT_DATA", default_value = "./rapport-data")]
    data: PathBuf,
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organization: `rapport org create acme "Acme Direct"`.
    Create {
        slug: String,
        name: String,
        #[arg(long, env = "RAPPORT_DATA", default_value = "./rapport-data")]
        data: PathBuf,
    },
    /// List organizations.
    List {
        #[arg(long, env = "RAPPORT_DATA", default_value = "./rapport-data")]
        data: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KindArg {
    Customers,
    Interactions,
    Distributors,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Ndjson,
    Csv,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Validate a component: print its world, contract version and imports, or why it is refused.
    Check {
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run one plugin call locally, like a function runner, and print its output as JSON.
    ///
    /// Input by world: policy `{"hook": "before"|"after", "change": {...}}`; scorer
    /// `{"customers": [ids], "now": unix_ms}` (both optional); reporter: the params object.
    Run {
        file: PathBuf,
        /// The call's input (JSON file).
        #[arg(long)]
        input: PathBuf,
        /// The plugin's configuration (a JSON object); `{}` by default.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A JSON store standing in for the organization: customers, interactions, distributors.
        #[arg(long)]
        fixture: Option<PathBuf>,
        /// Override the world's default limits (JSON: cpu_time ms, fuel, memory_bytes, ...).
        #[arg(long)]
        limits: Option<PathBuf>,
        /// Bound CPU by fuel (deterministic, reported) or by wall-clock epochs (as the server).
        #[arg(long, value_enum, default_value = "fuel")]
        meter: MeterArg,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MeterArg {
    Fuel,
    Epoch,
}

/// Exit codes: 1 the work failed (a plugin's trap, limit, bad output or error; an import stopped);
/// 2 bad usage or input; 3 the component was refused.
const EXIT_FAILED: u8 = 1;
const EXIT_INPUT: u8 = 2;
const EXIT_REFUSED: u8 = 3;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("RAPPORT_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Plugin { command: PluginCommand::Check { file, json } } => check(&file, json),
        Command::Org { command: OrgCommand::Create { slug, name, data } } => {
            match Store::open(&data).and_then(|s| s.create_org(&slug, &name)) {
                Ok(org) => {
                    println!("{}", serde_json::to_string(&org).expect("an org serializes"));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EXIT_INPUT, e),
            }
        }
        Command::Org { command: OrgCommand::List { data } } => match Store::open(&data).and_then(|s| s.orgs()) {
            Ok(orgs) => {
                for org in orgs {
                    println!("{}\t{}", org.slug, org.name);
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_INPUT, e),
        },
        Command::Import { file, org, kind, format, data } => import(&file, &org, kind, format, &data),
        Command::Demo(args) => demo(args),
        Command::Serve(args) => match serve(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(EXIT_INPUT, format!("{e:#}")),
        },
        Command::Plugin { command: PluginCommand::Run { file, input, config, fixture, limits, meter } } => {
            let meter = match meter {
                MeterArg::Fuel => Meter::Fuel,
                MeterArg::Epoch => Meter::Epoch,
            };
            run(&file, &input, config.as_deref(), fixture.as_deref(), limits.as_deref(), meter)
        }
    }
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

/// Compiled components are cached here between runs (a Python plugin takes seconds to compile).
fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("RAPPORT_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/rapport/components")))
}

/// The admin token's hash: from RAPPORT_ADMIN_TOKEN, or the one kept from an earlier start, or a
/// new token generated and printed once.
fn admin_hash(store: &Store) -> anyhow::Result<String> {
    const KEY: &str = "admin_token_sha256";
    if let Some(token) = std::env::var("RAPPORT_ADMIN_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        let hash = rapport::api::hash_token(token.trim());
        store.set_setting(KEY, &hash)?;
        return Ok(hash);
    }
    if let Some(hash) = store.setting(KEY)? {
        return Ok(hash);
    }
    let token = rapport::api::new_token("ra");
    let hash = rapport::api::hash_token(&token);
    store.set_setting(KEY, &hash)?;
    println!("admin token (shown once; set RAPPORT_ADMIN_TOKEN to choose your own): {token}");
    Ok(hash)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.data)?;
    let admin_hash = admin_hash(&store)?;
    let runtime = Runtime::new(RuntimeConfig { cache_dir: cache_dir(), ..RuntimeConfig::default() })?;
    let pipeline = rapport::pipeline::Pipeline::new(store, runtime, rapport::pipeline::Settings::default());
    let resume = pipeline.clone();
    std::thread::Builder::new().name("resume-jobs".into()).stack_size(8 << 20).spawn(move || {
        if let Err(e) = resume.resume_jobs() {
            tracing::error!("resuming jobs: {e}");
        }
    })?;
    let state = Arc::new(rapport::api::AppState { pipeline, admin_hash });
    // Blocking threads run plugin calls: give them room for the wasm stack limit and more.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(8 << 20).build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        println!("rapport listening on http://{}", listener.local_addr()?);
        rapport::api::serve(listener, state).await?;
        anyhow::Ok(())
    })
}

fn runtime(meter: Meter) -> anyhow::Result<Runtime> {
    Runtime::new(RuntimeConfig { meter, cache_dir: cache_dir(), max_instances: 4, ..RuntimeConfig::default() })
}

fn plugin_name(file: &Path) -> String {
    file.file_stem().map_or_else(|| "plugin".into(), |s| s.to_string_lossy().into_owned())
}

fn check(file: &Path, json: bool) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => return fail(EXIT_INPUT, format!("cannot read {}: {e}", file.display())),
    };
    let rt = match runtime(Meter::Epoch) {
        Ok(rt) => rt,
        Err(e) => return fail(EXIT_FAILED, format!("{e:#}")),
    };
    let plugin = match rt.load(&plugin_name(file), &bytes) {
        Ok(p) => p,
        Err(e) => return fail(EXIT_REFUSED, format!("{} is refused: {e}", file.display())),
    };
    let info = plugin.info();
    if json {
        println!("{}", serde_json::to_string_pretty(info).expect("inspection serializes"));
    } else {
        println!("{}: a {} plugin, contract rapport:plugin@{}", file.display(), info.world, info.version_string());
        println!("  sha256   {}", info.sha256);
        println!("  exports  {}", info.exports.join(", "));
        println!("  imports  {}", info.imports.join(", "));
    }
    ExitCode::SUCCESS
}

fn read_json(path: &Path, what: &str) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the {what} {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("the {what} {} is not valid JSON", path.display()))
}

fn run(
    file: &Path,
    input: &Path,
    config: Option<&Path>,
    fixture: Option<&Path>,
    limits: Option<&Path>,
    meter: Meter,
) -> ExitCode {
    let prepared = (|| -> anyhow::Result<_> {
        let input = read_json(input, "input")?;
        let config = match config {
            Some(path) => read_json(path, "config")?,
            None => Value::Object(Default::default()),
        };
        anyhow::ensure!(config.is_object(), "the config must be a JSON object");
        let fixture = match fixture {
            Some(path) => Fixture::load(path)?,
            None => Fixture::default(),
        };
        let limits: Option<Limits> = match limits {
            Some(path) => Some(serde_json::from_value(read_json(path, "limits")?).context("invalid limits")?),
            None => None,
        };
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        Ok((input, config, fixture, limits, bytes))
    })();
    let (input, config, fixture, limits, bytes) = match prepared {
        Ok(p) => p,
        Err(e) => return fail(EXIT_INPUT, format!("{e:#}")),
    };
    let rt = match runtime(meter) {
        Ok(rt) => rt,
        Err(e) => return fail(EXIT_FAILED, format!("{e:#}")),
    };
    let plugin = match rt.load(&plugin_name(file), &bytes) {
        Ok(p) => p,
        Err(e) => return fail(EXIT_REFUSED, format!("{} is refused: {e}", file.display())),
    };
    let run = Run { plugin, fixture: Arc::new(fixture), config, limits };
    match run.run(&input) {
        Ok(out) => {
            println!("{}", serde_json::to_string_pretty(&out).expect("run output serializes"));
            ExitCode::SUCCESS
        }
        Err(e @ RunError::Input { .. }) => fail(EXIT_INPUT, e),
        Err(RunError::Call(e)) => {
            for line in &e.trace.logs {
                eprintln!("plugin log [{:?}] {}", line.level, line.message);
            }
            let cost = match e.trace.fuel {
                Some(fuel) => format!(" (after {} µs, {fuel} fuel)", e.trace.duration_us),
                None => format!(" (after {} µs)", e.trace.duration_us),
            };
            fail(EXIT_FAILED, format!("{e}{cost}"))
        }
    }
}

fn import(file: &Path, org: &str, kind: KindArg, format: Option<FormatArg>, data: &Path) -> ExitCode {
    let format = match format {
        Some(FormatArg::Ndjson) => ImportFormat::Ndjson,
        Some(FormatArg::Csv) => ImportFormat::Csv,
        None => match file.extension().and_then(|e| e.to_str()) {
            Some("csv") => ImportFormat::Csv,
            Some("ndjson" | "jsonl" | "json") => ImportFormat::Ndjson,
            _ => {
                return fail(
                    EXIT_INPUT,
                    format!("cannot tell the format of {}: pass --format ndjson|csv", file.display()),
                );
            }
        },
    };
    let kind = match kind {
        KindArg::Customers => ImportKind::Customers,
        KindArg::Interactions => ImportKind::Interactions,
        KindArg::Distributors => ImportKind::Distributors,
    };
    let store = match Store::open(data).and_then(|s| s.org(org)) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_INPUT, e),
    };
    match import_file(&store, file, kind, format) {
        Ok(report) => {
            println!("{}", serde_json::to_string_pretty(&report).expect("a report serializes"));
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILED, e),
    }
}

/// Stream one file into the store behind a byte-position progress bar (hidden when stderr is not
/// a terminal): the file is never loaded whole.
fn import_file(store: &OrgStore, file: &Path, kind: ImportKind, format: ImportFormat) -> Result<ImportReport, String> {
    let handle = std::fs::File::open(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let bar = indicatif::ProgressBar::new(handle.metadata().map_or(0, |m| m.len()));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:12} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("a valid progress template"),
    );
    bar.set_message(format!("{kind:?}").to_lowercase());
    let reader = std::io::BufReader::with_capacity(1 << 16, bar.wrap_read(handle));
    let actor = Actor { name: "cli".into(), role: "admin".into() };
    let report = store.import(&actor, kind, format, reader, |_| {});
    bar.finish_and_clear();
    report.map_err(|e| format!("import stopped: {e} (batches before this point are saved)"))
}

fn demo(args: DemoArgs) -> ExitCode {
    let store = match Store::open(&args.data) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_INPUT, e),
    };
    let org = match store.org(&args.org) {
        Ok(org) => org,
        Err(StoreError::NoSuchOrg(_)) => {
            match store.create_org(&args.org, "Demo Organization").and_then(|_| store.org(&args.org)) {
                Ok(org) => org,
                Err(e) => return fail(EXIT_INPUT, e),
            }
        }
        Err(e) => return fail(EXIT_INPUT, e),
    };
    let out = args.out.unwrap_or_else(|| args.data.join(format!("demo-{}", args.org)));
    let spec = DemoSpec::new(args.seed, args.customers);
    let files = match rapport::demo::write(&spec, &out) {
        Ok(f) => f,
        Err(e) => return fail(EXIT_FAILED, format!("cannot write demo files under {}: {e}", out.display())),
    };
    let started = std::time::Instant::now();
    for (file, kind) in [
        (&files.distributors, ImportKind::Distributors),
        (&files.customers, ImportKind::Customers),
        (&files.interactions, ImportKind::Interactions),
    ] {
        match import_file(&org, file, kind, ImportFormat::Ndjson) {
            Ok(report) if report.rejected.is_empty() => {}
            Ok(report) => return fail(EXIT_FAILED, format!("demo data was rejected: {:?}", &report.rejected[..1])),
            Err(e) => return fail(EXIT_FAILED, e),
        }
    }
    let (d, c, i) = files.counts;
    println!(
        "demo organization `{}`: {d} distributors, {c} customers, {i} interactions imported in {:.1} s (files in {})",
        args.org,
        started.elapsed().as_secs_f64(),
        out.display()
    );
    ExitCode::SUCCESS
}
