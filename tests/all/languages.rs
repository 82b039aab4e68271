//! Plugins in other languages: the TypeScript data-quality policy (`plugins/js`, QuickJS) and the
//! Python engagement scorer (`plugins/python`, componentize-py), built from source by
//! `rapport-test-plugins`, installed into a generated demo organization over HTTP; and
//! `rapport plugin new` for every world and language.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rapport_test_plugins as built;
use serde_json::{Value, json};

use crate::server::{ADMIN, Server, call, install_enabled, json_call, serve_args};

fn rapport(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(args)
        .env("RAPPORT_CACHE_DIR", std::env::temp_dir().join("rapport-test-cache"))
        .output()
        .expect("run rapport")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `rapport serve --demo` (generated customers with purchase and service history) and an owner
/// key of its `demo` organization.
fn demo() -> (Server, String) {
    let s = serve_args(&["--demo", "true", "--demo-customers", "150"], &[]);
    let (status, key) =
        json_call("POST", &format!("{}/v1/orgs/demo/keys", s.url), ADMIN, json!({"name": "ops", "role": "owner"}));
    assert_eq!(status, 201, "{key}");
    let token = key["token"].as_str().unwrap().to_owned();
    (s, token)
}

/// Customers of the demo organization matching a filter.
fn count(s: &Server, t: &str, filter: &str) -> usize {
    let encoded: String = filter.bytes().map(|b| format!("%{b:02X}")).collect();
    let (status, page) =
        json_call("GET", &format!("{}/v1/orgs/demo/customers?filter={encoded}", s.url), t, Value::Null);
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().len()
}

/// The plugin's execution trace, newest first.
fn traces(s: &Server, t: &str, plugin: &str) -> Vec<Value> {
    let (status, page) = json_call("GET", &format!("{}/v1/orgs/demo/plugins/{plugin}/logs", s.url), t, Value::Null);
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

fn rescore(s: &Server, t: &str) -> Value {
    let api = |path: &str| format!("{}/v1/orgs/demo{path}", s.url);
    let (status, job) = json_call("POST", &api("/scores/rescore"), t, Value::Null);
    assert_eq!(status, 202, "{job}");
    let started = Instant::now();
    loop {
        let (_, job) = json_call("GET", &api(&format!("/jobs/{}", job["id"])), t, Value::Null);
        if job["state"] != "running" {
            return job;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the rescore did not finish: {job}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn js_and_python_plugins_import_nothing_but_the_contract() {
    for (path, world, exports) in [
        (built::JS_DATA_QUALITY, "policy", vec!["before", "after"]),
        (built::PY_ENGAGEMENT, "scorer", vec!["describe", "fit", "score"]),
    ] {
        let out = rapport(&["plugin", "check", "--json", path]);
        assert!(out.status.success(), "{path}: {}", text(&out.stderr));
        let info: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info["world"], world, "{info}");
        assert_eq!(info["exports"], json!(exports), "{info}");
        let imports: Vec<&str> = info["imports"].as_array().unwrap().iter().map(|i| i.as_str().unwrap()).collect();
        assert!(!imports.is_empty(), "{info}");
        // Not even the inert WASI stubs Rust's std needs: only the contract.
        assert!(
            imports.iter().all(|i| i.starts_with("rapport:plugin/") && i.ends_with("@0.1.0")),
            "{path}: {imports:?}"
        );
    }
}

#[test]
fn a_component_importing_wasi_the_host_does_not_grant_is_refused_by_check_and_by_install() {
    // The same TypeScript policy, built without --stub-wasi: QuickJS imports clocks, the
    // filesystem and randomness.
    let out = rapport(&["plugin", "check", built::JS_WITH_WASI]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("imports `wasi:") && err.contains("which Rapport does not grant"), "{err}");

    let (s, token) = demo();
    let url = format!("{}/v1/orgs/demo/plugins", s.url);
    let wasm = std::fs::read(built::JS_WITH_WASI).unwrap();
    let (status, _, body) = call("POST", &format!("{url}?name=leaky"), Some(&token), "application/wasm", &wasm);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("wasi:") && body.contains("does not grant"), "{body}");
    let (_, list) = json_call("GET", &url, &token, Value::Null);
    assert!(!list.to_string().contains("leaky"), "nothing is installed: {list}");
}

#[test]
fn typescript_policy_denies_warns_and_patches_in_a_demo_organization() {
    let (s, token) = demo();
    let t = token.as_str();
    install_enabled(&s, "demo", t, "data-quality", built::JS_DATA_QUALITY);
    let customers = format!("{}/v1/orgs/demo/customers", s.url);
    let create = |body: Value| json_call("POST", &customers, t, body);

    // Typed in capitals with stray spaces: stored in title case.
    let (status, out) =
        create(json!({"name": "SOMCHAI   JAIDEE", "email": "somchai@example.com", "phone": "+66812345678"}));
    assert_eq!(status, 201, "{out}");
    assert_eq!(out["name"], "Somchai Jaidee", "{out}");
    // A disposable inbox: denied on the email, and nothing stored.
    let (status, out) = create(json!({"name": "Dan", "email": "dan@Mailinator.com", "phone": "+66811111111"}));
    assert_eq!(status, 422, "{out}");
    assert_eq!(out["field"], "email", "{out}");
    let detail = out["detail"].as_str().unwrap();
    assert!(detail.contains("denied by policy `data-quality`"), "{detail}");
    assert!(detail.contains("mailinator.com is a disposable email service"), "{detail}");
    assert_eq!(count(&s, t, r#"name = "Dan""#), 0);
    // No phone: the write lands with a warning.
    let (status, out) = create(json!({"name": "Nok", "email": "nok@example.com"}));
    assert_eq!(status, 201, "{out}");
    assert!(out["warnings"].to_string().contains("no phone number"), "{out}");

    // The organization's own list replaces the default one.
    let config = format!("{}/v1/orgs/demo/plugins/data-quality/config", s.url);
    let (status, out) =
        json_call("PUT", &config, t, json!({"blocked_domains": ["Example.org"], "warn_missing_phone": false}));
    assert_eq!(status, 200, "{out}");
    let (status, out) = create(json!({"name": "Lek", "email": "lek@mail.example.org"}));
    assert_eq!(status, 422, "{out}");
    assert!(out["detail"].as_str().unwrap().contains("example.org is a disposable"), "{out}");
    let consent =
        json!({"purpose": "marketing", "channel": "email", "basis": "consent", "given_at": 1000, "source": "web"});
    let (status, out) = create(json!({"name": "Dan", "email": "dan@mailinator.com", "consents": [consent]}));
    assert_eq!(status, 201, "{out}");
    assert_eq!(out["warnings"], json!([]), "{out}");
    let dan = format!("{customers}/{}", out["id"]);

    // A configuration of the wrong shape is refused by the schema the component ships, naming
    // the setting, and the one in force stays.
    let (status, out) = json_call("PUT", &config, t, json!({"blocked_domains": "mailinator.com"}));
    assert_eq!(status, 422, "{out}");
    assert!(out.to_string().contains("blocked_domains"), "{out}");
    let (status, out) = create(json!({"name": "Ploy", "email": "ploy@example.org"}));
    assert_eq!(status, 422, "{out}");
    assert_eq!(count(&s, t, r#"name = "Ploy""#), 0);

    // `console.log` lines reach the execution trace of the call that wrote them.
    let traces = traces(&s, t, "data-quality");
    let patched = traces.iter().find(|tr| tr["outcome"] == "patch").unwrap_or_else(|| panic!("{traces:?}"));
    assert!(patched["logs"].to_string().contains("normalised name of customer 0: SOMCHAI   JAIDEE -> Somchai Jaidee"));
    let denied = traces.iter().find(|tr| tr["outcome"] == "deny").unwrap();
    assert!(denied["logs"].to_string().contains("denied customer 0 on email"), "{denied}");
    let warned = traces.iter().find(|tr| tr["outcome"] == "warn").unwrap();
    assert!(warned["logs"].to_string().contains("\"warn\""), "console.warn logs at warn: {warned}");

    // Mailinator blocked again: Dan's stored address is now disposable, yet an update that leaves
    // it alone — his consent withdrawal — lands; changing it to another disposable one does not.
    let (status, out) = json_call("PUT", &config, t, json!({"warn_missing_phone": false}));
    assert_eq!(status, 200, "{out}");
    let withdrawn = json!([{"purpose": "marketing", "channel": "email", "basis": "consent", "given_at": 1000,
                            "withdrawn_at": 2000, "source": "web"}]);
    let (status, out) =
        json_call("PUT", &dan, t, json!({"name": "Dan", "email": "dan@mailinator.com", "consents": withdrawn}));
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["consents"][0]["withdrawn_at"], 2000, "{out}");
    let (status, out) =
        json_call("PUT", &dan, t, json!({"name": "Dan", "email": "dan@yopmail.com", "consents": withdrawn}));
    assert_eq!(status, 422, "{out}");
    assert_eq!(out["field"], "email", "{out}");
    let (_, stored) = json_call("GET", &dan, t, Value::Null);
    assert_eq!(stored["email"], "dan@mailinator.com", "{stored}");
}

#[test]
fn an_uncaught_exception_in_a_typescript_policy_is_a_clear_plugin_error() {
    let (s, token) = demo();
    let t = token.as_str();
    install_enabled(&s, "demo", t, "data-quality", built::JS_DATA_QUALITY);
    // Not a regular expression: `new RegExp` throws a SyntaxError the policy does not catch.
    let (status, out) = json_call(
        "PUT",
        &format!("{}/v1/orgs/demo/plugins/data-quality/config", s.url),
        t,
        json!({"phone_pattern": "(["}),
    );
    assert_eq!(status, 200, "{out}");
    let person = json!({"name": "Arun", "email": "arun@example.com", "phone": "+66812345678"});
    let (status, out) = json_call("POST", &format!("{}/v1/orgs/demo/customers", s.url), t, person);
    assert_eq!(status, 422, "{out}");
    let detail = out["detail"].as_str().unwrap();
    assert!(detail.contains("data-quality") && detail.contains("uncaught SyntaxError"), "{detail}");
    assert_eq!(count(&s, t, r#"name = "Arun""#), 0, "the write failed closed");
    // The trace keeps the error and the stack the SDK logged.
    let traces = traces(&s, t, "data-quality");
    let failed = traces.iter().find(|tr| tr["outcome"] == "error").unwrap_or_else(|| panic!("{traces:?}"));
    assert!(failed["error"].as_str().unwrap().contains("uncaught SyntaxError"), "{failed}");
    assert!(failed["logs"].to_string().contains("at judge"), "{failed}");
}

#[test]
fn python_scorer_scores_a_demo_organization_with_explanations() {
    let (s, token) = demo();
    let t = token.as_str();
    let api = |path: &str| format!("{}/v1/orgs/demo{path}", s.url);
    install_enabled(&s, "demo", t, "engagement", built::PY_ENGAGEMENT);
    let (status, out) = json_call("PUT", &api("/plugins/engagement/config"), t, json!({"explain": true}));
    assert_eq!(status, 200, "{out}");
    let job = rescore(&s, t);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["done"], job["total"], "{job}");

    let (_, page) = json_call("GET", &api("/customers?limit=60"), t, Value::Null);
    let mut engaged_somewhat = 0;
    for customer in page["items"].as_array().unwrap() {
        let (status, scores) = json_call("GET", &api(&format!("/customers/{}/scores", customer["id"])), t, Value::Null);
        assert_eq!(status, 200, "{scores}");
        let score = scores["scores"]["engagement.engagement"].as_f64().unwrap_or_else(|| panic!("{scores}"));
        assert!((0.0..=100.0).contains(&score), "{scores}");
        let level = scores["labels"]["engagement.level"].as_str().unwrap();
        let want = if score >= 60.0 {
            "engaged"
        } else if score >= 25.0 {
            "cooling"
        } else {
            "dormant"
        };
        assert_eq!(level, want, "{scores}");
        let why = scores["explanations"]["engagement.engagement"].as_str().unwrap();
        assert!(why.contains(" contact day") && why.contains(" purchase"), "{why}");
        engaged_somewhat += usize::from(score > 0.0);
    }
    assert!(engaged_somewhat > 0, "the demo's history gives someone a score: {page}");

    // A write rescores its customer at once: one purchase yesterday is recency 50 × 0.5^(1/30)
    // plus one sixth of the purchase part's 20.
    let (status, c) = json_call("POST", &api("/customers"), t, json!({"name": "Fresh", "email": "fresh@example.com"}));
    assert_eq!(status, 201, "{c}");
    let id = c["id"].as_u64().unwrap();
    let yesterday =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 - 86_400_000;
    let purchase = json!({"customer": id, "kind": "purchase", "channel": "web", "source": "api",
                          "occurred_at": yesterday, "amount": {"amount_minor": 1000, "currency": "THB"}});
    let (status, out) = json_call("POST", &api("/interactions"), t, purchase);
    assert_eq!(status, 201, "{out}");
    let (_, scores) = json_call("GET", &api(&format!("/customers/{id}/scores")), t, Value::Null);
    let score = scores["scores"]["engagement.engagement"].as_f64().unwrap_or_else(|| panic!("{scores}"));
    let want = 50.0 * 0.5f64.powf(1.0 / 30.0) + 20.0 / 6.0;
    assert!((score - want).abs() < 0.3, "{score} vs {want}: {scores}");
    assert_eq!(scores["labels"]["engagement.level"], "cooling", "{scores}");
    let why = scores["explanations"]["engagement.engagement"].as_str().unwrap();
    assert!(
        why.starts_with("last interaction 1 day ago") && why.contains("0 contact days (+0.0), 1 purchase (+3.3)"),
        "{why}"
    );

    // `print()` reaches the trace.
    let traces = traces(&s, t, "engagement");
    assert!(
        traces.iter().any(|tr| tr["hook"] == "score" && tr["logs"].to_string().contains("customers,")),
        "{traces:?}"
    );

    // A bad setting is refused by the schema the component ships, naming it; the one in force
    // stays and the next rescore still explains.
    let (status, out) = json_call("PUT", &api("/plugins/engagement/config"), t, json!({"half_life_days": 0}));
    assert_eq!(status, 422, "{out}");
    assert!(out.to_string().contains("half_life_days"), "{out}");
    let job = rescore(&s, t);
    assert_eq!(job["state"], "done", "{job}");
    let (_, scores) = json_call("GET", &api(&format!("/customers/{id}/scores")), t, Value::Null);
    assert!(scores["explanations"]["engagement.engagement"].is_string(), "{scores}");
}

/// The plugins' own unit tests, natively, so that `cargo test` runs them: the data-quality rules
/// in Node (`npm test` in plugins/js) and the engagement rules with pytest.
#[test]
fn js_and_python_rules_pass_their_unit_tests() {
    let root = root();
    let node = run(Command::new("npm").current_dir(root.join("plugins/js")).args(["test", "--silent"]));
    assert!(node.contains("# fail 0") && !node.contains("# pass 0"), "{node}");
    let pytest = run(Command::new(root.join("target/py/bin/python"))
        .current_dir(&root)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "plugins/python"]));
    assert!(pytest.contains(" passed") && !pytest.contains("failed"), "{pytest}");
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}: {}\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

fn check_world(wasm: &Path, world: &str) {
    let out = rapport(&["plugin", "check", "--json", wasm.to_str().unwrap()]);
    assert!(out.status.success(), "{}: {}", wasm.display(), text(&out.stderr));
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["world"], world, "{info}");
}

/// Runs the `rapport plugin run` line of a generated project's README in the project, with the
/// component built elsewhere (the shared target directory) in place of the README's path.
fn readme_run(project: &Path, wasm: &Path) -> Value {
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    let line = readme.lines().find(|l| l.starts_with("rapport plugin run ")).expect("a run line");
    let args: Vec<&str> = line
        .split('#')
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|a| if a.ends_with(".wasm") { wasm.to_str().unwrap() } else { a })
        .collect();
    assert!(project.join("input.json").exists(), "{line} needs input.json");
    let out = Command::new(env!("CARGO_BIN_EXE_rapport"))
        .current_dir(project)
        .args(&args)
        .env("RAPPORT_CACHE_DIR", std::env::temp_dir().join("rapport-test-cache"))
        .output()
        .expect("run rapport");
    assert!(out.status.success(), "{line}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn plugin_new_writes_a_project_for_every_world_and_language_that_builds() {
    let dir = tempfile::tempdir().unwrap();
    let root = root();
    for lang in ["rust", "js", "python"] {
        for world in ["policy", "scorer", "reporter"] {
            let name = format!("my-{world}-{lang}");
            let project = dir.path().join(&name);
            let out = rapport(&[
                "plugin",
                "new",
                &name,
                "--world",
                world,
                "--lang",
                lang,
                "--dir",
                project.to_str().unwrap(),
            ]);
            assert!(out.status.success(), "{name}: {}", text(&out.stderr));
            let printed = text(&out.stdout);
            assert!(printed.contains("build it: cd "), "{printed}");
            let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
            assert!(readme.contains(&format!("A Rapport {world} plugin")), "{readme}");
            let build = printed.lines().last().unwrap().split(" && ").skip(1).collect::<Vec<_>>().join(" && ");
            assert!(readme.contains(build.trim_start_matches("npm install && ")), "{readme} lacks {build}");
        }
    }
    // Again into the same place: refused, and what is there is kept.
    let again = dir.path().join("my-policy-rust");
    let out = rapport(&["plugin", "new", "x", "--world", "policy", "--dir", again.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("already exists and is not empty"), "{}", text(&out.stderr));
    assert!(again.join("src/lib.rs").exists());
    let out =
        rapport(&["plugin", "new", "Not_A_Name", "--world", "policy", "--dir", dir.path().join("n").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("lower-case letters, digits and hyphens"), "{}", text(&out.stderr));
    assert!(!dir.path().join("n").exists());

    // Rust: each world builds (sharing the plugins' target directory and lock, so only the
    // template itself compiles) into a component the host admits.
    let target = root.join("target/plugins");
    for world in ["policy", "scorer", "reporter"] {
        let project = dir.path().join(format!("my-{world}-rust"));
        std::fs::copy(root.join("plugins/Cargo.lock"), project.join("Cargo.lock")).unwrap();
        run(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&project)
            .args(["build", "--quiet", "--release"])
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET"));
        let wasm = target.join(format!("wasm32-wasip2/release/my_{world}_rust.wasm"));
        check_world(&wasm, world);
        // The README's `rapport plugin run` line works as written, with the input.json beside it.
        let ran = readme_run(&project, &wasm);
        match world {
            "policy" => assert_eq!(ran["output"]["decision"], "allow", "{ran}"),
            "scorer" => assert_eq!(ran["output"]["customers"], json!([]), "no fixture, no customers: {ran}"),
            _ => assert_eq!(ran["output"]["rows"].as_array().map(Vec::len), Some(1), "{ran}"),
        }
    }

    // TypeScript: the scorer builds with plugins/js's installed tools, is admitted and scores.
    let project = dir.path().join("my-scorer-js");
    std::os::unix::fs::symlink(root.join("plugins/js/node_modules"), project.join("node_modules")).unwrap();
    run(Command::new("npm").current_dir(&project).args(["run", "--silent", "build"]));
    let wasm = project.join("dist/my-scorer-js.wasm");
    check_world(&wasm, "scorer");
    let fixture = root.join("plugins/examples/demo-store.json");
    let input = dir.path().join("scorer-input.json");
    std::fs::write(&input, r#"{"customers": [1, 2], "now": 1735689600000}"#).unwrap();
    let out = rapport(&[
        "plugin",
        "run",
        wasm.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--fixture",
        fixture.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ran: Value = serde_json::from_slice(&out.stdout).unwrap();
    let purchases = &ran["output"]["customers"][0]["scores"]["purchases"];
    assert!(purchases.as_f64().is_some_and(|n| n >= 1.0), "customer 1 of the demo store bought: {ran}");

    // Python: every template imports against its world's typed bindings (`componentize-py
    // bindings`, as the README says), natively; building one takes ~30 s, and the engagement
    // scorer of plugins/python shows the whole path.
    let venv = root.join("target/py/bin");
    for world in ["policy", "scorer", "reporter"] {
        let project = dir.path().join(format!("my-{world}-python"));
        run(Command::new(venv.join("componentize-py"))
            .current_dir(&project)
            .args(["-d", "wit", "-w", world, "bindings", "bindings"]));
        run(Command::new(venv.join("python"))
            .current_dir(&project)
            .env("PYTHONPATH", "bindings:.")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .args(["-c", "import app; assert app.wit_world.WitWorld in app.WitWorld.__mro__"]));
    }
}
