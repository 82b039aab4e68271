//! `rapport serve` as an operator runs it: configuration precedence (flags over environment
//! over the TOML file), the demo organization of `make run`, and a graceful shutdown that lets
//! a running job finish.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rapport_test_plugins as built;
use serde_json::{Value, json};

use crate::server::{ADMIN, call, json_call, serve_args};

/// The status of creating a customer whose JSON body is about 2 KiB.
fn create_big_customer(url: &str) -> u16 {
    let (status, _) = json_call("POST", &format!("{url}/v1/orgs"), ADMIN, json!({"slug": "acme", "name": "Acme"}));
    assert_eq!(status, 201);
    let body = json!({"name": "x".repeat(2000), "email": "x@example.com"}).to_string();
    let (status, _, _) =
        call("POST", &format!("{url}/v1/orgs/acme/customers"), Some(ADMIN), "application/json", body.as_bytes());
    status
}

#[test]
fn flags_override_the_environment_which_overrides_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rapport.toml");
    std::fs::write(&file, "body_limit_kib = 1\nrequest_timeout = 5\n").unwrap();
    let file = file.to_str().unwrap();

    let s = serve_args(&["--config", file], &[]);
    assert_eq!(create_big_customer(&s.url), 413, "the file's 1 KiB limit applies");
    let s = serve_args(&["--config", file], &[("RAPPORT_BODY_LIMIT_KIB", "8")]);
    assert_eq!(create_big_customer(&s.url), 201, "the environment's 8 KiB beats the file");
    let s = serve_args(&["--config", file, "--body-limit-kib", "1"], &[("RAPPORT_BODY_LIMIT_KIB", "8")]);
    assert_eq!(create_big_customer(&s.url), 413, "the flag beats the environment");

    // A bad file is refused at start with its name and the problem.
    std::fs::write(dir.path().join("bad.toml"), "body_limt_kib = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.path().join("bad.toml"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("body_limt_kib"), "{err}");
}

#[test]
fn the_demo_server_starts_with_data_plugins_and_a_working_key() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for path in [built::REQUIRE_CONTACT, built::SPEND_RANK, built::CUSTOMERS_BY_BRANCH] {
        let name = std::path::Path::new(path).file_name().unwrap();
        std::fs::copy(path, plugins.join(name)).unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(["serve", "--listen", "127.0.0.1:0", "--demo", "true", "--demo-customers", "60", "--demo-plugins"])
        .arg(&plugins)
        .arg("--data")
        .arg(dir.path().join("data"))
        .env("RAPPORT_ADMIN_TOKEN", ADMIN)
        .env("RAPPORT_CACHE_DIR", dir.path().join("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = None;
    let mut token = None;
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("rapport listening on ") {
            url = Some(u.to_owned());
        }
        if let Some(t) = line.split("shown once: ").nth(1) {
            token = Some(t.trim_end_matches(')').to_owned());
        }
        printed.push(line);
        if token.is_some() {
            break;
        }
    }
    let (url, token) = (url.expect("the URL is printed"), token.expect("a demo key is printed"));
    assert!(printed.iter().any(|l| l.contains(&format!("{url}/docs"))), "{printed:?}");
    assert!(printed.iter().any(|l| l.contains("console:") && l.contains(&format!("{url}/"))), "{printed:?}");

    let (status, list) = json_call("GET", &format!("{url}/v1/orgs/demo/customers?limit=5"), &token, Value::Null);
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"].as_array().unwrap().len(), 5);
    let (_, plugins) = json_call("GET", &format!("{url}/v1/orgs/demo/plugins"), &token, Value::Null);
    let enabled: Vec<&str> = plugins["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["enabled"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(enabled.len(), 3, "{plugins}");
    // The enabled policy judges writes at once: a customer with no way to reach them is denied.
    let (status, denied) =
        json_call("POST", &format!("{url}/v1/orgs/demo/customers"), &token, json!({"name": "Nobody"}));
    assert_eq!(status, 422, "{denied}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn shutdown_on_sigterm_lets_a_running_job_finish() {
    let s = serve_args(&[], &[]);
    let (status, _) = json_call("POST", &format!("{}/v1/orgs", s.url), ADMIN, json!({"slug": "acme", "name": "Acme"}));
    assert_eq!(status, 201);
    let rows: String = (0..20_000)
        .map(|i| json!({"source": "shop", "external_id": format!("c-{i}"), "name": format!("C {i}"), "email": format!("c{i}@example.com")}).to_string() + "\n")
        .collect();
    let (status, _, body) = call(
        "POST",
        &format!("{}/v1/orgs/acme/import?kind=customers", s.url),
        Some(ADMIN),
        "application/x-ndjson",
        rows.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let bytes = std::fs::read(built::SPEND_RANK).unwrap();
    let (status, _, body) =
        call("POST", &format!("{}/v1/orgs/acme/plugins?name=rank", s.url), Some(ADMIN), "application/wasm", &bytes);
    assert_eq!(status, 201, "{body}");
    let (status, _) = json_call("POST", &format!("{}/v1/orgs/acme/plugins/rank/enable", s.url), ADMIN, Value::Null);
    assert_eq!(status, 200);
    let (status, job) = json_call("POST", &format!("{}/v1/orgs/acme/scores/rescore", s.url), ADMIN, Value::Null);
    assert_eq!(status, 202, "{job}");

    // The job is still running when the server is told to stop.
    let (_, now) = json_call("GET", &format!("{}/v1/orgs/acme/jobs/{}", s.url, job["id"]), ADMIN, Value::Null);
    assert_eq!(now["state"], "running", "the job must still be running for this test to mean anything: {now}");
    let mut s = s;
    let pid = s.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(120);
    let exit = loop {
        if let Some(exit) = s.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    // The job finished before the process ended: no resumption needed.
    let db = rusqlite::Connection::open(s.dir.path().join("rapport.db")).unwrap();
    let (state, done, total): (String, i64, i64) = db
        .query_row("SELECT state, done, total FROM jobs WHERE id = ?1", [job["id"].as_i64().unwrap()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((state.as_str(), done), ("done", total));
}
