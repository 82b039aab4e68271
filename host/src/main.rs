//! The `rapport` command: the server, the plugin tools, and the admin client.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use rapport::client::{Client, ClientError, read_json as answer_json, segment};
use rapport::demo::DemoSpec;
use rapport::fixture::Fixture;
use rapport::model::Actor;
use rapport::plugins::{Meter, Runtime, RuntimeConfig};
use rapport::runner::{Run, RunError};
use rapport::server::{ServeArgs, ServeConfig};

mod scaffold;
use rapport::pipeline::{ImportFormat, ImportKind, ImportReport, Pipeline, Settings};
use rapport::store::{Store, StoreError};

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
    /// Work with plugin components: check and run one locally, or manage an organization's
    /// plugins on a server (install, enable, config, logs, rollback…).
    #[command(visible_alias = "plugins")]
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Manage organizations: in a data directory, or on a server with --url.
    #[command(visible_alias = "orgs")]
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
    /// With --url (or RAPPORT_URL) the file is streamed to that server, through the
    /// organization's policies; without, it goes straight into the store under --data.
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
        #[command(flatten)]
        remote: Remote,
    },
    /// Manage an organization's API keys on a server.
    #[command(visible_alias = "keys")]
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Read and write an organization's customers on a server.
    #[command(visible_alias = "customers")]
    Customer {
        #[command(subcommand)]
        command: CustomerCommand,
    },
    /// Run reports on a server.
    #[command(visible_alias = "reports")]
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Copy the database to one file, consistent as of one moment, while `rapport serve` keeps
    /// running (SQLite's online backup). The file is never overwritten; restore it with
    /// `rapport restore`.
    Backup {
        /// The file to write, e.g. rapport-2026-11-23.db.
        out: PathBuf,
        #[arg(long, env = "RAPPORT_DATA", default_value = "./rapport-data")]
        data: PathBuf,
    },
    /// Replace the database with a backup. Stop `rapport serve` first (a restore refuses while
    /// anything has the database open); the replaced database is kept beside it as
    /// rapport.db.before-restore-<time>.
    Restore {
        /// A file written by `rapport backup`.
        backup: PathBuf,
        #[arg(long, env = "RAPPORT_DATA", default_value = "./rapport-data")]
        data: PathBuf,
    },
    /// Rescore an organization's customers with its enabled scorers: a job on the server.
    Rescore {
        /// Follow the job with a progress bar until it is done, and print it finished.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Where a remote command goes: the server, the caller's token, the organization.
#[derive(clap::Args)]
struct Conn {
    /// The server's address.
    #[arg(long, env = "RAPPORT_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The admin token, or an API key of the organization (`rapport key create`).
    #[arg(long, env = "RAPPORT_TOKEN", hide_env_values = true)]
    token: String,
    /// The organization's slug.
    #[arg(long, env = "RAPPORT_ORG")]
    org: String,
}

impl Conn {
    fn client(&self) -> Client {
        Client::new(&self.url, &self.token)
    }

    /// The path of an organization's resource: `/v1/orgs/{org}/{rest}`.
    fn path(&self, rest: &str) -> String {
        org_path(&self.org, rest)
    }
}

fn org_path(org: &str, rest: &str) -> String {
    format!("/v1/orgs/{}/{rest}", segment(org))
}

/// For the commands that also work offline (`org`, `import`): a server to use instead of the
/// data directory. Without --url they keep opening --data, as they always have.
#[derive(clap::Args)]
struct Remote {
    /// Send this to a server (e.g. http://127.0.0.1:8080) instead of opening --data.
    #[arg(long, env = "RAPPORT_URL")]
    url: Option<String>,
    /// With --url: the admin token, or an API key of the organization.
    #[arg(long, env = "RAPPORT_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Remote {
    /// `None` to work on the data directory; a client, or why there cannot be one, for a server.
    fn client(&self) -> Option<Result<Client, Failure>> {
        let url = self.url.as_deref()?;
        Some(match self.token.as_deref() {
            Some(token) => Ok(Client::new(url, token)),
            None => Err(Failure(EXIT_INPUT, format!("{url} needs a token: pass --token or set RAPPORT_TOKEN"))),
        })
    }
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key; its token is printed once (only its hash is kept).
    Create {
        /// What the key is for (shown in the audit log).
        name: String,
        #[arg(long, value_parser = ["owner", "manager", "agent", "read-only"])]
        role: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// List the organization's keys (never their tokens).
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a key: its token stops working at once.
    Revoke {
        id: u64,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
enum CustomerCommand {
    /// A customer's profile: fields, timeline, scores.
    Get {
        id: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// A page of customers, optionally filtered: `--filter 'branch = "BKK" and tag = "vip"'`.
    List {
        #[arg(long)]
        filter: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        /// The `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// The customer a source system knows by this external id.
    Find {
        #[arg(long)]
        source: String,
        #[arg(long)]
        external_id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Create a customer from a JSON object (a file, or `-` for stdin), through the policies.
    Create {
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Update a customer from a JSON object (a file, or `-` for stdin), through the policies.
    Update {
        id: u64,
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Run a reporter plugin and write its report as JSON, CSV or a standalone HTML page.
    Run {
        /// The reporter's name in the organization.
        plugin: String,
        /// The report's parameters (a JSON object); `{}` by default.
        #[arg(long)]
        params: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "json")]
        format: ReportFormat,
        /// Write the report here instead of to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Json,
    Csv,
    Html,
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
        #[command(flatten)]
        remote: Remote,
    },
    /// List organizations.
    List {
        #[arg(long, env = "RAPPORT_DATA", default_value = "./rapport-data")]
        data: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KindArg {
    Customers,
    Interactions,
    Distributors,
}

impl KindArg {
    /// The name on the command line, which is also the API's `?kind=`.
    fn name(self) -> &'static str {
        match self {
            KindArg::Customers => "customers",
            KindArg::Interactions => "interactions",
            KindArg::Distributors => "distributors",
        }
    }
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
        /// The organization's records (JSON: customers, interactions, distributors, branches),
        /// loaded into an in-memory store that answers filters and aggregates as a server does.
        #[arg(long)]
        fixture: Option<PathBuf>,
        /// Override the world's default limits (JSON: cpu_time ms, fuel, memory_bytes, ...).
        #[arg(long)]
        limits: Option<PathBuf>,
        /// Bound CPU by fuel (deterministic, reported) or by wall-clock epochs (as the server).
        #[arg(long, value_enum, default_value = "fuel")]
        meter: MeterArg,
    },
    /// Start a plugin project: a template for the world in the language, ready to build.
    ///
    /// Writes NAME/ (or --dir) with the plugin's source, the build files and a README saying the
    /// build command. JS and Python projects carry the contract's WIT; Rust ones point at the SDK.
    New {
        /// The plugin's name: lower-case letters, digits and hyphens (`churn-risk`).
        name: String,
        /// What it does: judge writes (policy), score customers (scorer) or build reports (reporter).
        #[arg(long, value_enum)]
        world: WorldArg,
        /// The language of the project: Rust (the SDK), TypeScript (QuickJS) or Python.
        #[arg(long, value_enum, default_value = "rust")]
        lang: scaffold::Lang,
        /// The project's directory [default: ./NAME]; it must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Rapport's Rust SDK (`plugins/sdk`), for --lang rust [default: where this binary was built from].
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    #[command(flatten)]
    Server(ServerPluginCommand),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum WorldArg {
    Policy,
    Scorer,
    Reporter,
}

/// `rapport plugin …` on a server: an organization's installed plugins.
#[derive(Subcommand)]
enum ServerPluginCommand {
    /// Install a component on a server as the plugin's next version.
    Install {
        file: PathBuf,
        /// The plugin's name in the organization; installing under a taken name adds a version.
        #[arg(long)]
        name: String,
        /// The author's version label (e.g. 1.2.0), kept beside the server's version number.
        #[arg(long)]
        version: Option<String>,
        /// `false` keeps the new version as a candidate (for a dry-run or shadow) instead.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        activate: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List the organization's plugins.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Enable a plugin: its policy judges writes, its scorer scores, its reporter can run.
    Enable {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Disable a plugin; it stays installed.
    Disable {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Set a plugin's configuration (a JSON object, checked against the plugin's schema).
    Config {
        name: String,
        /// The configuration (a JSON file, or `-` for stdin).
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// A plugin's installed versions.
    Versions {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Make an earlier version active again (the previous one by default).
    Rollback {
        name: String,
        #[arg(long)]
        version: Option<u32>,
        #[command(flatten)]
        conn: Conn,
    },
    /// A plugin's execution trace, newest first: outcome, duration, log lines, errors.
    Logs {
        name: String,
        /// The `next_cursor` of the previous page.
        #[arg(long)]
        before: Option<i64>,
        #[command(flatten)]
        conn: Conn,
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
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        logging(false, "warn");
    }
    match cli.command {
        Command::Plugin { command: PluginCommand::Check { file, json } } => check(&file, json),
        Command::Plugin { command: PluginCommand::New { name, world, lang, dir, sdk } } => {
            let world = match world {
                WorldArg::Policy => rapport::plugins::World::Policy,
                WorldArg::Scorer => rapport::plugins::World::Scorer,
                WorldArg::Reporter => rapport::plugins::World::Reporter,
            };
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let sdk = sdk.unwrap_or_else(scaffold::default_sdk);
            match scaffold::new_project(&name, world, lang, &dir, &sdk) {
                Ok(written) => {
                    println!("wrote a {} plugin project in {}:", world.name(), written.dir.display());
                    for file in &written.files {
                        println!("  {file}");
                    }
                    println!("build it: cd {} && {}", written.dir.display(), written.build);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EXIT_INPUT, e),
            }
        }
        Command::Org { command: OrgCommand::Create { slug, name, remote, .. } } if remote.url.is_some() => {
            finish(remote.client().expect("a url").and_then(|client| {
                print(&client.json("POST", "/v1/orgs", &[], Some(&json!({ "slug": slug, "name": name })))?);
                Ok(())
            }))
        }
        Command::Org { command: OrgCommand::List { remote, .. } } if remote.url.is_some() => {
            finish(remote.client().expect("a url").and_then(|client| {
                print(&client.json("GET", "/v1/orgs", &[], None)?);
                Ok(())
            }))
        }
        Command::Org { command: OrgCommand::Create { slug, name, data, .. } } => {
            match Store::open(&data).and_then(|s| s.create_org(&slug, &name)) {
                Ok(org) => {
                    println!("{}", serde_json::to_string(&org).expect("an org serializes"));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EXIT_INPUT, e),
            }
        }
        Command::Org { command: OrgCommand::List { data, .. } } => match Store::open(&data).and_then(|s| s.orgs()) {
            Ok(orgs) => {
                for org in orgs {
                    println!("{}\t{}", org.slug, org.name);
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_INPUT, e),
        },
        Command::Import { file, org, kind, format, data, remote } => import(&file, &org, kind, format, &data, &remote),
        Command::Plugin { command: PluginCommand::Server(command) } => finish(plugin(command)),
        Command::Key { command } => finish(key(command)),
        Command::Customer { command } => finish(customer(command)),
        Command::Report { command: ReportCommand::Run { plugin, params, format, out, conn } } => {
            finish(report(&conn, &plugin, params.as_deref(), format, out.as_deref()))
        }
        Command::Rescore { wait, conn } => finish(rescore(&conn, wait)),
        Command::Demo(args) => demo(args),
        Command::Backup { out, data } => local(rapport::store::backup_to(&data, &out)),
        Command::Restore { backup, data } => local(rapport::store::restore_from(&data, &backup)),
        Command::Serve(args) => match ServeConfig::load(args) {
            Ok(config) => {
                logging(config.log_json, "info");
                match rapport::server::run(config) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(EXIT_INPUT, format!("{e:#}")),
                }
            }
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

/// Log lines to stderr at the level RAPPORT_LOG gives (`default` when it is not set).
fn logging(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAPPORT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json { builder.json().init() } else { builder.init() }
}

/// A local store command's report as JSON on stdout, or its error: bad input (a file that is
/// not a backup, a database in use) exits 2, anything else 1.
fn local(result: Result<impl serde::Serialize, StoreError>) -> ExitCode {
    match result {
        Ok(report) => {
            print(&serde_json::to_value(report).expect("a report serializes"));
            ExitCode::SUCCESS
        }
        Err(
            e @ (StoreError::NotRapport { .. }
            | StoreError::TooNew { .. }
            | StoreError::InUse { .. }
            | StoreError::Invalid(_)),
        ) => fail(EXIT_INPUT, e),
        Err(e) => fail(EXIT_FAILED, e),
    }
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

fn runtime(meter: Meter) -> anyhow::Result<Runtime> {
    Runtime::new(RuntimeConfig {
        meter,
        cache_dir: rapport::server::cache_dir(),
        max_instances: 4,
        ..RuntimeConfig::default()
    })
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

/// A JSON file, or stdin for `-`.
fn read_json(path: &Path, what: &str) -> anyhow::Result<Value> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).with_context(|| format!("cannot read the {what} from stdin"))?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read the {what} {}", path.display()))?
    };
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
        // A real store in memory: the plugin's filters and aggregates answer as on a server.
        let store = match fixture {
            Some(path) => Fixture::open(path)?,
            None => Fixture::default().store()?,
        };
        let limits = limits.map(|path| read_json(path, "limits")).transpose()?;
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        Ok((input, config, store, limits, bytes))
    })();
    let (input, config, store, limits, bytes) = match prepared {
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
    let run = Run { plugin, store, config, limits };
    match run.run(&input) {
        Ok(out) => {
            println!("{}", serde_json::to_string_pretty(&out).expect("run output serializes"));
            ExitCode::SUCCESS
        }
        Err(e @ (RunError::Input { .. } | RunError::Limits { .. })) => fail(EXIT_INPUT, e),
        Err(e @ RunError::Store(_)) => fail(EXIT_FAILED, e),
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

fn import(file: &Path, org: &str, kind: KindArg, format: Option<FormatArg>, data: &Path, remote: &Remote) -> ExitCode {
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
    if let Some(client) = remote.client() {
        return finish(client.and_then(|client| import_remote(&client, file, org, kind, format)));
    }
    let kind = match kind {
        KindArg::Customers => ImportKind::Customers,
        KindArg::Interactions => ImportKind::Interactions,
        KindArg::Distributors => ImportKind::Distributors,
    };
    let pipeline = match local_pipeline(data) {
        Ok(p) => p,
        Err(e) => return fail(EXIT_INPUT, e),
    };
    match import_file(&pipeline, org, file, kind, format) {
        Ok(report) => {
            println!("{}", serde_json::to_string_pretty(&report).expect("a report serializes"));
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILED, e),
    }
}

/// The write pipeline over a local data directory: a local import meets the organization's
/// policies exactly as one over the API does.
fn local_pipeline(data: &Path) -> anyhow::Result<Pipeline> {
    let store = Store::open(data)?;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    Ok(Pipeline::new(store, runtime, Settings::default()))
}

/// Stream one file through the pipeline behind a byte-position progress bar (hidden when stderr
/// is not a terminal): the file is never loaded whole.
fn import_file(
    pipeline: &Pipeline,
    org: &str,
    file: &Path,
    kind: ImportKind,
    format: ImportFormat,
) -> Result<ImportReport, String> {
    let handle = std::fs::File::open(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let bar = byte_bar(handle.metadata().map_or(0, |m| m.len()), format!("{kind:?}").to_lowercase());
    let reader = std::io::BufReader::with_capacity(1 << 16, bar.wrap_read(handle));
    let actor = Actor { name: "cli".into(), role: rapport::model::Role::Admin };
    let report = pipeline.import(org, &actor, kind, format, reader, |_| {}, false);
    bar.finish_and_clear();
    report.map_err(|e| format!("import stopped: {e} (batches before this point are saved)"))
}

/// A progress bar over a file's bytes; indicatif draws nothing when stderr is not a terminal.
fn byte_bar(len: u64, message: String) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:12} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("a valid progress template"),
    );
    bar.set_message(message);
    bar
}

fn demo(args: DemoArgs) -> ExitCode {
    let pipeline = match local_pipeline(&args.data) {
        Ok(p) => p,
        Err(e) => return fail(EXIT_INPUT, e),
    };
    match pipeline.store().org(&args.org) {
        Ok(_) => {}
        Err(StoreError::NoSuchOrg(_)) => {
            if let Err(e) = pipeline.store().create_org(&args.org, "Demo Organization") {
                return fail(EXIT_INPUT, e);
            }
        }
        Err(e) => return fail(EXIT_INPUT, e),
    }
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
        match import_file(&pipeline, &args.org, file, kind, ImportFormat::Ndjson) {
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

// The remote commands: a request or two through `rapport::client`, data as pretty JSON on stdout,
// messages on stderr.

/// A remote command's failure: the exit code and the message for stderr.
struct Failure(u8, String);

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure(EXIT_FAILED, e.to_string())
    }
}

fn bad_input(e: anyhow::Error) -> Failure {
    Failure(EXIT_INPUT, format!("{e:#}"))
}

fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => fail(code, message),
    }
}

fn print(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).expect("JSON serializes"));
}

fn key(command: KeyCommand) -> Result<(), Failure> {
    match command {
        KeyCommand::Create { name, role, conn } => {
            let key =
                conn.client().json("POST", &conn.path("keys"), &[], Some(&json!({ "name": name, "role": role })))?;
            print(&key);
            eprintln!("keep the token now: the server shows it only once");
        }
        KeyCommand::List { conn } => print(&conn.client().json("GET", &conn.path("keys"), &[], None)?),
        KeyCommand::Revoke { id, conn } => {
            conn.client().json("DELETE", &conn.path(&format!("keys/{id}")), &[], None)?;
            eprintln!("key {id} revoked");
        }
    }
    Ok(())
}

fn customer(command: CustomerCommand) -> Result<(), Failure> {
    let out = match command {
        CustomerCommand::Get { id, conn } => {
            conn.client().json("GET", &conn.path(&format!("customers/{id}")), &[], None)?
        }
        CustomerCommand::List { filter, limit, cursor, conn } => {
            let limit = limit.map(|l| l.to_string());
            let query: Vec<(&str, &str)> =
                [("filter", filter.as_deref()), ("limit", limit.as_deref()), ("cursor", cursor.as_deref())]
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v?)))
                    .collect();
            conn.client().json("GET", &conn.path("customers"), &query, None)?
        }
        CustomerCommand::Find { source, external_id, conn } => {
            let query = [("source", source.as_str()), ("external_id", external_id.as_str())];
            let mut page = conn.client().json("GET", &conn.path("customers"), &query, None)?;
            match page["items"].get_mut(0) {
                Some(found) => found.take(),
                None => {
                    return Err(Failure(
                        EXIT_FAILED,
                        format!(
                            "no customer of organization `{}` has external id `{external_id}` in source `{source}`",
                            conn.org
                        ),
                    ));
                }
            }
        }
        CustomerCommand::Create { file, conn } => {
            let customer = read_json(&file, "customer").map_err(bad_input)?;
            conn.client().json("POST", &conn.path("customers"), &[], Some(&customer))?
        }
        CustomerCommand::Update { id, file, conn } => {
            let customer = read_json(&file, "customer").map_err(bad_input)?;
            conn.client().json("PUT", &conn.path(&format!("customers/{id}")), &[], Some(&customer))?
        }
    };
    print(&out);
    Ok(())
}

fn plugin(command: ServerPluginCommand) -> Result<(), Failure> {
    let plugin_path = |conn: &Conn, name: &str, rest: &str| conn.path(&format!("plugins/{}/{rest}", segment(name)));
    let out = match command {
        ServerPluginCommand::Install { file, name, version, activate, conn } => {
            let handle = std::fs::File::open(&file)
                .map_err(|e| Failure(EXIT_INPUT, format!("cannot read {}: {e}", file.display())))?;
            let len = handle.metadata().ok().map(|m| m.len());
            let mut query = vec![("name", name.as_str())];
            if let Some(v) = &version {
                query.push(("version", v));
            }
            if !activate {
                query.push(("activate", "false"));
            }
            let resp = conn.client().send("POST", &conn.path("plugins"), &query, "application/wasm", len, handle)?;
            answer_json(resp)?
        }
        ServerPluginCommand::List { conn } => conn.client().json("GET", &conn.path("plugins"), &[], None)?,
        ServerPluginCommand::Enable { name, conn } => {
            conn.client().json("POST", &plugin_path(&conn, &name, "enable"), &[], None)?
        }
        ServerPluginCommand::Disable { name, conn } => {
            conn.client().json("POST", &plugin_path(&conn, &name, "disable"), &[], None)?
        }
        ServerPluginCommand::Config { name, file, conn } => {
            let config = read_json(&file, "config").map_err(bad_input)?;
            conn.client().json("PUT", &plugin_path(&conn, &name, "config"), &[], Some(&config))?
        }
        ServerPluginCommand::Versions { name, conn } => {
            conn.client().json("GET", &plugin_path(&conn, &name, "versions"), &[], None)?
        }
        ServerPluginCommand::Rollback { name, version, conn } => {
            let body = version.map(|v| json!({ "version": v }));
            conn.client().json("POST", &plugin_path(&conn, &name, "rollback"), &[], body.as_ref())?
        }
        ServerPluginCommand::Logs { name, before, conn } => {
            let before = before.map(|b| b.to_string());
            let query: Vec<(&str, &str)> = before.as_deref().map(|b| ("before", b)).into_iter().collect();
            conn.client().json("GET", &plugin_path(&conn, &name, "logs"), &query, None)?
        }
    };
    print(&out);
    Ok(())
}

fn report(
    conn: &Conn,
    plugin: &str,
    params: Option<&Path>,
    format: ReportFormat,
    out: Option<&Path>,
) -> Result<(), Failure> {
    let params = match params {
        Some(path) => read_json(path, "params").map_err(bad_input)?,
        None => json!({}),
    };
    let format_name = match format {
        ReportFormat::Json => "json",
        ReportFormat::Csv => "csv",
        ReportFormat::Html => "html",
    };
    let body = params.to_string();
    let path = conn.path(&format!("reports/{}/run", segment(plugin)));
    let resp = conn.client().send(
        "POST",
        &path,
        &[("format", format_name)],
        "application/json",
        Some(body.len() as u64),
        body.as_bytes(),
    )?;
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut text)
        .map_err(|e| Failure(EXIT_FAILED, format!("the report broke off while it was read: {e}")))?;
    if let ReportFormat::Json = format {
        let value: Value = serde_json::from_slice(&text).map_err(|e| ClientError::Answer(format!("not JSON ({e})")))?;
        text = format!("{}\n", serde_json::to_string_pretty(&value).expect("JSON serializes")).into_bytes();
    }
    match out {
        Some(file) => {
            std::fs::write(file, &text)
                .map_err(|e| Failure(EXIT_INPUT, format!("cannot write the report to {}: {e}", file.display())))?;
            eprintln!("wrote the {format_name} report to {}", file.display());
        }
        None => std::io::Write::write_all(&mut std::io::stdout(), &text)
            .map_err(|e| Failure(EXIT_FAILED, format!("cannot write the report to stdout: {e}")))?,
    }
    Ok(())
}

/// Start a rescore; with `wait`, poll the job (a bar of customers scored) until it ends.
fn rescore(conn: &Conn, wait: bool) -> Result<(), Failure> {
    let client = conn.client();
    let mut job = client.json("POST", &conn.path("scores/rescore"), &[], None)?;
    if wait {
        let path = conn.path(&format!("jobs/{}", job["id"]));
        let bar = indicatif::ProgressBar::new(job["total"].as_u64().unwrap_or(0));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg:12} {bar:40} {pos}/{len} customers eta {eta}")
                .expect("a valid progress template"),
        );
        bar.set_message("rescoring");
        loop {
            match job["state"].as_str() {
                Some("done" | "failed") => break,
                Some(_) => {}
                None => return Err(ClientError::Answer(format!("a job without a state: {job}")).into()),
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
            job = client.json("GET", &path, &[], None)?;
            bar.set_length(job["total"].as_u64().unwrap_or(0));
            bar.set_position(job["done"].as_u64().unwrap_or(0));
        }
        bar.finish_and_clear();
    }
    print(&job);
    if job["state"] == "failed" {
        let error = job["error"].as_str().unwrap_or("no error was recorded");
        return Err(Failure(EXIT_FAILED, format!("rescore job {} failed: {error}", job["id"])));
    }
    Ok(())
}

/// Stream a file to the server's import behind a byte bar, and print the per-row report.
fn import_remote(client: &Client, file: &Path, org: &str, kind: KindArg, format: ImportFormat) -> Result<(), Failure> {
    let handle =
        std::fs::File::open(file).map_err(|e| Failure(EXIT_INPUT, format!("cannot read {}: {e}", file.display())))?;
    let len = handle.metadata().ok().map(|m| m.len());
    let bar = byte_bar(len.unwrap_or(0), kind.name().into());
    let content_type = match format {
        ImportFormat::Csv => "text/csv",
        ImportFormat::Ndjson => "application/x-ndjson",
    };
    let body = Upload { inner: handle, bar: bar.clone(), sent: false };
    let resp = client.send("POST", &org_path(org, "import"), &[("kind", kind.name())], content_type, len, body);
    bar.finish_and_clear();
    let report = answer_json(resp?)?;
    print(&report);
    Ok(())
}

/// An upload's body: advances the bar as the file is sent. The server imports once it has the
/// whole file, so at the end the bar turns into a spinner while the answer is awaited.
struct Upload<R> {
    inner: R,
    bar: indicatif::ProgressBar,
    sent: bool,
}

impl<R: std::io::Read> std::io::Read for Upload<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        if n == 0 && !buf.is_empty() && !self.sent {
            self.sent = true;
            self.bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .expect("a valid progress template"),
            );
            let sent = indicatif::HumanBytes(self.bar.position());
            self.bar.set_message(format!("sent {sent}; the server is importing…"));
            self.bar.enable_steady_tick(std::time::Duration::from_millis(100));
        }
        Ok(n)
    }
}
