//! A real `rapport serve` process on a loopback port, and plain-HTTP calls against it: the
//! harness of every end-to-end test of the API, the CLI client and webhooks.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub const ADMIN: &str = "admin-token-for-tests";

pub struct Server {
    pub child: Child,
    pub url: String,
    /// The data directory (removed when the server is dropped).
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve() -> Server {
    serve_with(&[])
}

/// A server with extra environment variables (`RAPPORT_WEBHOOK_RETRY_MS` for quick retries).
pub fn serve_with(envs: &[(&str, &str)]) -> Server {
    serve_args(&[], envs)
}

/// A server with extra flags and environment variables.
pub fn serve_args(args: &[&str], envs: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .args(args)
        .env("RAPPORT_ADMIN_TOKEN", ADMIN)
        .env("RAPPORT_CACHE_DIR", dir.path().join("cache"))
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rapport serve starts");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url =
        line.trim().strip_prefix("rapport listening on ").unwrap_or_else(|| panic!("unexpected: {line}")).to_owned();
    Server { child, url, dir }
}

/// One request: (status, content type, body). Errors are answers here, not failures.
pub fn call(method: &str, url: &str, token: Option<&str>, content_type: &str, body: &[u8]) -> (u16, String, String) {
    let mut req = ureq::request(method, url);
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    if !content_type.is_empty() {
        req = req.set("Content-Type", content_type);
    }
    let resp = match req.send_bytes(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let (status, ty) = (resp.status(), resp.content_type().to_owned());
    (status, ty, resp.into_string().unwrap())
}

pub fn json_call(method: &str, url: &str, token: &str, body: Value) -> (u16, Value) {
    let text = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
    let (status, _, out) = call(method, url, Some(token), "application/json", &text);
    (status, serde_json::from_str(&out).unwrap_or(Value::String(out)))
}
