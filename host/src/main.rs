//! The `rapport` command: the server, the plugin tools, and the admin client.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::Value;

use rapport::fixture::Fixture;
use rapport::plugins::{Limits, Meter, Runtime, RuntimeConfig};
use rapport::runner::{Run, RunError};

#[derive(Parser)]
#[command(name = "rapport", version, about = "A self-hosted CRM whose business rules are WebAssembly plugins")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with plugin components.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
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

/// Exit codes: 1 the plugin failed (trap, limit, bad output, its own error); 2 bad usage or input;
/// 3 the component was refused.
const EXIT_PLUGIN: u8 = 1;
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
        Err(e) => return fail(EXIT_PLUGIN, format!("{e:#}")),
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
        Err(e) => return fail(EXIT_PLUGIN, format!("{e:#}")),
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
            fail(EXIT_PLUGIN, format!("{e}{cost}"))
        }
    }
}
