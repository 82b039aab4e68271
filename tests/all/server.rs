//! A real `rapport serve` process on a loopback port, and plain-HTTP calls against it: the
//! harness of every end-to-end test of the API, the CLI client and webhooks.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN: &str = "admin-token-for-tests";

pub struct Server {
    pub child: Child,
    pub url: String,
    /// The data directory (removed when the server is dropped), unless started with
    /// [`serve_data`] on a directory of the caller's.
    pub dir: tempfile::TempDir,
    /// The data directory the server runs on.
    pub data: PathBuf,
    /// Where its stderr (the log lines) goes, for [`serve_logged`].
    pub log: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Stop it as an operator does (SIGTERM: requests and jobs in flight finish), and wait until
    /// the process has exited, so that its database is closed.
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the server did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything it has logged so far ([`serve_logged`] only).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.as_ref().expect("started with serve_logged")).unwrap()
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
    let data = dir.path().to_owned();
    spawn(dir, data, args, envs, None)
}

/// A server on an existing data directory: to start again after a stop or a restore.
pub fn serve_data(data: &Path, envs: &[(&str, &str)]) -> Server {
    spawn(tempfile::tempdir().unwrap(), data.to_owned(), &[], envs, None)
}

/// A server whose stderr goes to a file (`Server::log_text`): for tests of what it logs. Set the
/// level with `RAPPORT_LOG` in `envs`.
pub fn serve_logged(envs: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    spawn(dir, data, &[], envs, Some(log))
}

fn spawn(dir: tempfile::TempDir, data: PathBuf, args: &[&str], envs: &[(&str, &str)], log: Option<PathBuf>) -> Server {
    let stderr = match &log {
        Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
        None => Stdio::null(),
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .args(args)
        .env("RAPPORT_ADMIN_TOKEN", ADMIN)
        .env("RAPPORT_CACHE_DIR", dir.path().join("cache"))
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("rapport serve starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // Keep reading what it prints later (demo lines), as a terminal would.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let url =
        line.trim().strip_prefix("rapport listening on ").unwrap_or_else(|| panic!("unexpected: {line}")).to_owned();
    Server { child, url, dir, data, log }
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

/// Upload a built plugin to an organization under `name` and enable it (asserting both work).
pub fn install_enabled(s: &Server, org: &str, token: &str, name: &str, wasm_path: &str) {
    let wasm = std::fs::read(wasm_path).unwrap_or_else(|e| panic!("{wasm_path}: {e}"));
    let url = format!("{}/v1/orgs/{org}/plugins", s.url);
    let (status, _, out) = call("POST", &format!("{url}?name={name}"), Some(token), "application/wasm", &wasm);
    assert_eq!(status, 201, "installing {name}: {out}");
    let (status, out) = json_call("POST", &format!("{url}/{name}/enable"), token, Value::Null);
    assert_eq!(status, 200, "enabling {name}: {out}");
}

/// `text` percent-encoded for a URL path segment or query value (every byte but unreserved ones).
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
