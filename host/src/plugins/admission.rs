//! What a component must be to run here: valid WebAssembly, a component, one Rapport world of a
//! contract version this host runs, importing nothing but the contract (and the inert WASI stubs
//! Rust's std insists on).

use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::{AdmissionError, World};

/// The versions of `rapport:plugin` this host has a module for (see `v0_1_0`).
pub const SUPPORTED: &[(u64, u64)] = &[super::v0_1_0::VERSION];

/// WASI interfaces a plugin may import. They are linked to a context that grants nothing:
/// no arguments, environment or working directory; stdin is empty, stdout and stderr discard.
pub const GRANTED_WASI: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
];

/// What `rapport plugin check` reports about a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// sha256 of the component's bytes, hex: its identity everywhere in Rapport.
    pub sha256: String,
    pub world: World,
    #[serde(serialize_with = "version_str")]
    pub version: (u64, u64, u64),
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// The JSON Schema its configuration must meet, from the `rapport:config-schema` custom
    /// section, when the component ships one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<String>,
}

impl Inspection {
    pub fn version_string(&self) -> String {
        let (a, b, c) = self.version;
        format!("{a}.{b}.{c}")
    }
}

fn version_str<S: serde::Serializer>(v: &(u64, u64, u64), s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}.{}.{}", v.0, v.1, v.2))
}

/// Checks on the raw bytes, before wasmtime sees them.
pub fn validate(bytes: &[u8]) -> Result<(), AdmissionError> {
    if !bytes.starts_with(b"\0asm") {
        return Err(AdmissionError::NotWasm);
    }
    if !wasmparser::Parser::is_component(bytes) {
        return Err(AdmissionError::CoreModule);
    }
    let mut features = wasmparser::WasmFeatures::default();
    features.remove(wasmparser::WasmFeatures::THREADS);
    features.remove(wasmparser::WasmFeatures::SHARED_EVERYTHING_THREADS);
    wasmparser::Validator::new_with_features(features)
        .validate_all(bytes)
        .map(drop)
        .map_err(|e| AdmissionError::Invalid(e.to_string()))
}

/// Which world and contract version a compiled component implements, and whether its imports
/// are all granted.
pub fn inspect(engine: &Engine, component: &Component, hash: [u8; 32]) -> Result<Inspection, AdmissionError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_owned()).collect();
    let imports: Vec<String> = ty.imports(engine).map(|(name, _)| name.to_owned()).collect();

    let mut sorted: Vec<&str> = exports.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let world = match sorted.as_slice() {
        ["after", "before"] => World::Policy,
        ["describe", "fit", "score"] => World::Scorer,
        ["run"] => World::Reporter,
        [] => return Err(AdmissionError::UnknownWorld { exports: "nothing".into(), missing: String::new() }),
        names => {
            return Err(AdmissionError::UnknownWorld {
                exports: names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                missing: missing_exports(names),
            });
        }
    };

    let mut version: Option<(u64, u64, u64)> = None;
    for import in &imports {
        let (interface, v) = import.split_once('@').unwrap_or((import, ""));
        if interface.starts_with("rapport:plugin/") {
            let found = parse_version(v)
                .ok_or_else(|| AdmissionError::UnsupportedVersion { found: v.to_owned(), supported: supported() })?;
            match version {
                Some(other) if other != found => {
                    return Err(AdmissionError::Mismatch {
                        world: world.name(),
                        version: format!("{}.{}.{}", found.0, found.1, found.2),
                        detail: format!(
                            "it mixes contract versions ({import} and {}.{}.{})",
                            other.0, other.1, other.2
                        ),
                    });
                }
                _ => version = Some(found),
            }
        } else if !GRANTED_WASI.contains(&interface) {
            return Err(AdmissionError::ForbiddenImport { import: import.clone() });
        }
    }
    let version = version.ok_or(AdmissionError::NoContract { world: world.name() })?;
    if !SUPPORTED.contains(&(version.0, version.1)) {
        return Err(AdmissionError::UnsupportedVersion {
            found: format!("{}.{}.{}", version.0, version.1, version.2),
            supported: supported(),
        });
    }
    Ok(Inspection { sha256: hex::encode(hash), world, version, imports, exports, config_schema: None })
}

/// The exports of each world, to tell an author who forgot one which it is.
const WORLD_EXPORTS: [(World, &[&str]); 3] = [
    (World::Policy, &["before", "after"]),
    (World::Scorer, &["describe", "fit", "score"]),
    (World::Reporter, &["run"]),
];

/// " — a policy also needs `after`" for a component that has some of one world's exports (the
/// world it shares most with), or empty when it has none of any.
fn missing_exports(exports: &[&str]) -> String {
    let shared = |names: &[&str]| names.iter().filter(|n| exports.contains(n)).count();
    let Some((world, names)) =
        WORLD_EXPORTS.iter().filter(|(_, names)| shared(names) > 0).max_by_key(|(_, names)| shared(names))
    else {
        return String::new();
    };
    let lacking: Vec<String> = names.iter().filter(|n| !exports.contains(n)).map(|n| format!("`{n}`")).collect();
    let extra: Vec<String> = exports.iter().filter(|e| !names.contains(e)).map(|e| format!("`{e}`")).collect();
    let mut said = String::new();
    if !lacking.is_empty() {
        said.push_str(&format!(" — a {world} also needs {}", lacking.join(" and ")));
    }
    if !extra.is_empty() {
        let joiner = if lacking.is_empty() { " — " } else { ", and " };
        said.push_str(&format!("{joiner}a {world} exports nothing else (remove {})", extra.join(", ")));
    }
    said
}

fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let mut parts = v.split('.').map(|p| p.parse::<u64>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

fn supported() -> String {
    SUPPORTED.iter().map(|(a, b)| format!("{a}.{b}.x")).collect::<Vec<_>>().join(", ")
}

/// The custom section a component's configuration schema travels in.
pub const CONFIG_SCHEMA_SECTION: &str = "rapport:config-schema";

/// The configuration schema a component ships (in any of its core modules), checked to be JSON.
pub fn config_schema(bytes: &[u8]) -> Result<Option<String>, AdmissionError> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| AdmissionError::Invalid(e.to_string()))?;
        if let wasmparser::Payload::CustomSection(section) = payload
            && section.name() == CONFIG_SCHEMA_SECTION
        {
            let text = std::str::from_utf8(section.data())
                .map_err(|_| AdmissionError::Invalid(format!("its `{CONFIG_SCHEMA_SECTION}` section is not UTF-8")))?;
            serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
                AdmissionError::Invalid(format!("its `{CONFIG_SCHEMA_SECTION}` section is not a JSON schema: {e}"))
            })?;
            return Ok(Some(text.to_owned()));
        }
    }
    Ok(None)
}
