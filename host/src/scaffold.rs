//! `rapport plugin new`: a ready-to-build plugin project per world and language, written from
//! templates embedded in the binary, so that the project matches the contract this binary runs.
//! The templates are the ones the tests build (`plugins/templates`, `plugins/templates-js`,
//! `plugins/templates-py`), and the JS and Python build tools are `plugins/js` and
//! `plugins/python`'s own.

use std::path::{Path, PathBuf};

use rapport::plugins::World;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Js,
    Python,
}

/// The contract, copied into JS and Python projects: their builders read the WIT.
const WIT: [(&str, &str); 3] = [
    ("wit/host.wit", include_str!("../../wit/v0.1.0/host.wit")),
    ("wit/types.wit", include_str!("../../wit/v0.1.0/types.wit")),
    ("wit/worlds.wit", include_str!("../../wit/v0.1.0/worlds.wit")),
];

/// Where the Rust SDK was when this binary was built; `--sdk` overrides it.
pub fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk")
}

/// What `plugin new` wrote: the project's directory and its files, relative to it.
pub struct Written {
    pub dir: PathBuf,
    pub files: Vec<String>,
    pub build: String,
}

/// Why a project could not be written; each says what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "`{0}` cannot name a plugin: use lower-case letters, digits and hyphens, starting with a letter \
         (e.g. `churn-risk`)"
    )]
    BadName(String),
    #[error("{} already exists and is not empty: choose another --dir", .0.display())]
    NotEmpty(PathBuf),
    #[error("the Rust SDK is not at {} ({source}): pass --sdk <path to Rapport's plugins/sdk>", .path.display())]
    NoSdk { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// Writes the project `name` for `world` in `lang` into `dir` (which must not exist or be empty).
///
/// # Errors
/// See [`ScaffoldError`]; files written before a write failed stay.
pub fn new_project(name: &str, world: World, lang: Lang, dir: &Path, sdk: &Path) -> Result<Written, ScaffoldError> {
    check_name(name)?;
    if dir.read_dir().is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ScaffoldError::NotEmpty(dir.to_owned()));
    }
    let (files, build) = match lang {
        Lang::Rust => rust(name, world, sdk)?,
        Lang::Js => js(name, world),
        Lang::Python => python(name, world),
    };
    let mut written = Vec::new();
    for (path, text) in files {
        let file = dir.join(&path);
        std::fs::create_dir_all(file.parent().expect("a file in the project"))
            .and_then(|()| std::fs::write(&file, text))
            .map_err(|source| ScaffoldError::Write { path: file.clone(), source })?;
        written.push(path);
    }
    Ok(Written { dir: dir.to_owned(), files: written, build })
}

fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok { Ok(()) } else { Err(ScaffoldError::BadName(name.to_owned())) }
}

type Files = Vec<(String, String)>;

fn file(path: &str, text: impl Into<String>) -> (String, String) {
    (path.to_owned(), text.into())
}

fn rust(name: &str, world: World, sdk: &Path) -> Result<(Files, String), ScaffoldError> {
    let sdk = std::fs::canonicalize(sdk).map_err(|source| ScaffoldError::NoSdk { path: sdk.to_owned(), source })?;
    let lib = match world {
        World::Policy => include_str!("../../plugins/templates/policy/src/lib.rs"),
        World::Scorer => include_str!("../../plugins/templates/scorer/src/lib.rs"),
        World::Reporter => include_str!("../../plugins/templates/reporter/src/lib.rs"),
    };
    let input = input(world);
    let world = world.name();
    let sdk = toml_string(&sdk.to_string_lossy());
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
# One world per plugin: the SDK generates only the world its feature names.
rapport-plugin = {{ path = {sdk}, features = ["{world}"] }}

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
strip = "debuginfo"

# A project of its own, not a member of an enclosing workspace.
[workspace]
"#
    );
    let config = "[build]\ntarget = \"wasm32-wasip2\"\n\n[target.wasm32-wasip2]\nrustflags = [\"-C\", \"target-feature=+simd128\"]\n";
    let wasm = format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_"));
    let build = "cargo build --release".to_owned();
    let readme = readme(
        name,
        world,
        "Rust",
        "rustup target add wasm32-wasip2   # once",
        &build,
        &wasm,
        "The SDK (`rapport-plugin`) is a path dependency on Rapport's `plugins/sdk`; edit `Cargo.toml` \
         if it moves. `src/lib.rs` is the plugin; the SDK's docs list the types and helpers.",
    );
    let files = vec![
        file("Cargo.toml", manifest),
        file(".cargo/config.toml", config),
        file("src/lib.rs", lib),
        file("input.json", input),
        file("README.md", readme),
        file(".gitignore", "/target/\n"),
    ];
    Ok((files, build))
}

fn js(name: &str, world: World) -> (Files, String) {
    let index = match world {
        World::Policy => include_str!("../../plugins/templates-js/policy.ts"),
        World::Scorer => include_str!("../../plugins/templates-js/scorer.ts"),
        World::Reporter => include_str!("../../plugins/templates-js/reporter.ts"),
    };
    let input = input(world);
    let world = world.name();
    let wasm = format!("dist/{name}.wasm");
    let package = serde_json::json!({
        "name": name,
        "private": true,
        "version": "0.1.0",
        "type": "module",
        "scripts": {
            "build": format!("node scripts/build.mjs --wit wit --world {world} --entry src/index.ts --out {wasm}"),
            "types": format!("node scripts/guest-types.mjs wit {world} types"),
        },
        "devDependencies": {
            "@bytecodealliance/jco-transpile": "0.15.0",
            "componentize-qjs": "0.4.5",
            "typescript": "5.9.3"
        }
    });
    let build = "npm install && npm run build".to_owned();
    let readme = readme(
        name,
        world,
        "TypeScript",
        "npm install   # once: componentize-qjs, TypeScript, jco's type generator",
        "npm run build",
        &wasm,
        "`src/index.ts` is the plugin. `npm run types` writes the world's declarations into `types/` \
         (from the WIT in `wit/`, as QuickJS passes values: 64-bit integers are numbers, options \
         `null`). `sdk/rapport.ts` sends `console.*` to the plugin's log and turns an uncaught \
         exception into a plugin error; there is no clock (`Date.now()` throws: use `change.at` or \
         `batch.now`) and `Math.random()` repeats the same sequence on every call.",
    );
    let mut files = vec![
        file("package.json", serde_json::to_string_pretty(&package).expect("json") + "\n"),
        file("tsconfig.json", include_str!("../../plugins/js/tsconfig.json")),
        file("scripts/build.mjs", include_str!("../../plugins/js/scripts/build.mjs")),
        file("scripts/guest-types.mjs", include_str!("../../plugins/js/scripts/guest-types.mjs")),
        file("scripts/strip-init.mjs", include_str!("../../plugins/js/scripts/strip-init.mjs")),
        file("sdk/rapport.ts", include_str!("../../plugins/js/sdk/rapport.ts")),
        file("src/index.ts", index),
        file("input.json", input),
        file("README.md", readme),
        file(".gitignore", "/node_modules/\n/types/\n/dist/\n"),
    ];
    files.extend(WIT.iter().map(|(path, text)| file(path, *text)));
    (files, build)
}

fn python(name: &str, world: World) -> (Files, String) {
    let app = match world {
        World::Policy => include_str!("../../plugins/templates-py/policy.py"),
        World::Scorer => include_str!("../../plugins/templates-py/scorer.py"),
        World::Reporter => include_str!("../../plugins/templates-py/reporter.py"),
    };
    let input = input(world);
    let world = world.name();
    let wasm = format!("{name}.wasm");
    let build = format!(".venv/bin/python build.py --wit wit --world {world} --app app -p . --out {wasm}");
    let readme = readme(
        name,
        world,
        "Python",
        "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt   # once",
        &build,
        &wasm,
        &format!(
            "`app.py` is the plugin (`class WitWorld`). Typed bindings for your editor or mypy: \
             `.venv/bin/componentize-py -d wit -w {world} bindings bindings` writes `bindings/wit_world` \
             (add `bindings` to your editor's search path). `rapport_sdk.py` sends `print()` and stderr \
             to the plugin's log and turns an exception into a plugin error; there is no clock \
             (`time.time()` raises: use `change.at` or `batch.now`), no files and no network, and \
             `random` repeats the same sequence on every call. The component is ~18 MB (CPython) and \
             its first load compiles for a few seconds; Rapport caches the compiled code."
        ),
    );
    let mut files = vec![
        file("app.py", app),
        file("input.json", input),
        file("rapport_sdk.py", include_str!("../../plugins/python/sdk/rapport_sdk.py")),
        file("build.py", include_str!("../../plugins/python/tools/build.py")),
        file("requirements.txt", "componentize-py==0.25.1\nwasm-tools-package==1.262.0.0\n"),
        file("README.md", readme),
        file(".gitignore", "/.venv/\n/bindings/\n__pycache__/\n*.wasm\n"),
    ];
    files.extend(WIT.iter().map(|(path, text)| file(path, *text)));
    (files, build)
}

/// The input the README's `rapport plugin run` line uses, valid for the world with or without a
/// fixture, so that the first run works before the author has written any data of their own.
fn input(world: World) -> String {
    let input = match world {
        World::Policy => serde_json::json!({
            "hook": "before",
            "change": {
                "operation": "create",
                "after": {"customer": {"name": "Somchai Jaidee", "email": "somchai@example.co.th", "branch": "bkk-01"}},
                "actor": {"name": "ops", "role": "owner"},
                "origin": "api"
            }
        }),
        // Every customer of the fixture (none without one), scored as of 2025-01-01.
        World::Scorer => serde_json::json!({"now": 1_735_689_600_000_i64}),
        // The params.
        World::Reporter => serde_json::json!({}),
    };
    serde_json::to_string_pretty(&input).expect("json") + "\n"
}

fn readme(name: &str, world: &str, lang: &str, setup: &str, build: &str, wasm: &str, notes: &str) -> String {
    format!(
        "# {name}\n\nA Rapport {world} plugin in {lang}, from `rapport plugin new`.\n\n## Build\n\n```sh\n{setup}\n{build}\n```\n\n\
         The component is `{wasm}`. It imports nothing but the Rapport contract (`rapport:plugin@0.1.0`).\n\n\
         ## Try it\n\n```sh\nrapport plugin check {wasm}\nrapport plugin run {wasm} --input input.json   # add --fixture STORE.json for data; see --help\n\
         rapport plugin install {wasm} --name {name} --url http://127.0.0.1:8080 --org ORG --token KEY\n```\n\n## Notes\n\n{notes}\n"
    )
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
