//! Installs the web console's front-end packages (`console/package.json`, pinned by its lock)
//! so that `src/console` can embed them with `include_bytes!`: the binary carries every asset
//! and the console never reaches a CDN.

use std::path::Path;
use std::process::Command;

fn main() {
    let console = Path::new(env!("CARGO_MANIFEST_DIR")).join("../console");
    println!("cargo:rerun-if-changed={}", console.join("package-lock.json").display());
    println!("cargo:rerun-if-changed={}", console.join("node_modules/htmx.org/package.json").display());
    if console.join("node_modules/htmx.org/dist/htmx.min.js").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(&console)
        .status()
        .unwrap_or_else(|e| {
            panic!("the console's assets need npm (Node.js) to install `console/package.json`; cannot run npm: {e}")
        });
    assert!(status.success(), "`npm ci` in {} failed: see its output above", console.display());
}
