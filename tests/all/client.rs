//! The `rapport` binary as a client of a running server: the everyday tasks of an organization,
//! from its first key to a rescore, and the errors a user meets, each as one clear line.

use std::path::Path;
use std::process::{Command, Output};

use rapport_test_plugins as built;
use serde_json::{Value, json};

use crate::server::{ADMIN, serve};

/// Run `rapport ARGS --url URL --token TOKEN`, with no connection settings from the environment.
fn rapport(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(args)
        .args(["--url", url, "--token", token])
        .env_remove("RAPPORT_URL")
        .env_remove("RAPPORT_TOKEN")
        .env_remove("RAPPORT_ORG")
        .env_remove("RAPPORT_DATA")
        .output()
        .expect("run rapport")
}

/// The command succeeded; its stdout is JSON.
fn ok(url: &str, token: &str, args: &[&str]) -> Value {
    let out = rapport(url, token, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rapport {args:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("rapport {args:?}: stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))
    })
}

/// The command failed with exit code 1; its stderr (one line, the reason).
fn failed(url: &str, token: &str, args: &[&str]) -> String {
    let out = rapport(url, token, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "rapport {args:?} should fail: {stderr}");
    assert!(out.stdout.is_empty(), "a failure prints no data: {}", String::from_utf8_lossy(&out.stdout));
    stderr
}

/// The arguments, for organization `acme`.
fn at<'a>(args: &[&'a str]) -> Vec<&'a str> {
    [args, &["--org", "acme"]].concat()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn an_organization_goes_from_its_first_key_to_a_rescore_through_the_cli() {
    let s = serve();
    let dir = tempfile::tempdir().unwrap();
    let url = s.url.as_str();

    // An organization and an owner key, with the admin token.
    let org = ok(url, ADMIN, &["org", "create", "acme", "Acme Direct"]);
    assert_eq!(org["slug"], "acme", "{org}");
    let orgs = ok(url, ADMIN, &["orgs", "list"]);
    assert_eq!(orgs["items"][0]["slug"], "acme", "{orgs}");
    let key = ok(url, ADMIN, &["key", "create", "ops", "--role", "owner", "--org", "acme"]);
    let token = key["token"].as_str().expect("the new key's token").to_owned();
    let t = token.as_str();

    // Import: the file streams to the server, bad lines are reported by number while the others
    // land.
    let customers = [
        json!({"source": "shop", "external_id": "c-1", "name": "Somchai", "email": "somchai@example.com", "branch": "BKK"}),
        json!({"source": "shop", "external_id": "c-2", "name": "Suda", "phone": "+66812345678", "branch": "CNX"}),
        json!({"source": "shop", "external_id": "c-3", "name": "Broken", "email": 42}),
    ]
    .iter()
    .map(|c| format!("{c}\n"))
    .collect::<String>();
    let file = write(dir.path(), "customers.ndjson", &customers);
    let report = ok(url, t, &at(&["import", &file, "--kind", "customers"]));
    assert_eq!((report["accepted"].clone(), report["created"].clone()), (json!(2), json!(2)), "{report}");
    assert_eq!(report["rejected"][0]["line"], 3, "{report}");
    // CSV too: one purchase for c-1.
    let orders = "source,external_id,customer_source,customer_external_id,kind,channel,occurred_at,amount_minor,currency\n\
                  shop,o-1,shop,c-1,purchase,web,1997-01-01T00:00:00Z,2933,USD\n";
    let file = write(dir.path(), "orders.csv", orders);
    assert_eq!(ok(url, t, &at(&["import", &file, "--kind", "interactions"]))["accepted"], 1);

    // Find by external id: the customer itself, ready for `jq .id`.
    let somchai = ok(url, t, &at(&["customers", "find", "--source", "shop", "--external-id", "c-1"]));
    assert_eq!(somchai["name"], "Somchai", "{somchai}");
    let id = somchai["id"].as_u64().unwrap().to_string();
    let page = ok(url, t, &at(&["customer", "list", "--filter", "branch = \"CNX\""]));
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");

    // A policy, installed and enabled: a create it denies shows its reason and field, exit 1.
    let installed = ok(url, t, &at(&["plugin", "install", built::REQUIRE_CONTACT, "--name", "contact"]));
    assert_eq!(installed["name"], "contact", "{installed}");
    assert_eq!(ok(url, t, &at(&["plugin", "enable", "contact"]))["enabled"], true);
    let nobody = write(dir.path(), "nobody.json", r#"{"name": "Nobody"}"#);
    let denied = failed(url, t, &at(&["customer", "create", "--file", &nobody]));
    assert!(denied.contains("HTTP 422 Denied by a policy: "), "{denied}");
    assert!(denied.contains("denied by policy `contact`") && denied.contains("email or a phone"), "{denied}");
    assert!(denied.trim_end().ends_with("(field: email)"), "{denied}");
    let mali = write(dir.path(), "mali.json", r#"{"name": "Mali", "email": "MALI@example.com", "branch": "CNX"}"#);
    assert_eq!(ok(url, t, &at(&["customer", "create", "--file", &mali]))["email"], "mali@example.com");
    // Its trace shows both calls; a bad configuration names the field.
    let logs = ok(url, t, &at(&["plugin", "logs", "contact"]));
    assert!(logs["items"].as_array().unwrap().len() >= 2, "{logs}");
    let bad = write(dir.path(), "bad-config.json", r#"{"welcome_tag": 5}"#);
    let refused = failed(url, t, &at(&["plugin", "config", "contact", "--file", &bad]));
    assert!(refused.contains("HTTP 422") && refused.contains("(field: /welcome_tag)"), "{refused}");
    // A second version, then a rollback to the first.
    let second = ok(
        url,
        t,
        &at(&["plugin", "install", built::TEMPLATE_POLICY_TEMPLATE, "--name", "contact", "--version", "2.0.0"]),
    );
    assert_eq!(second["active_version"], 2, "{second}");
    let versions = ok(url, t, &at(&["plugin", "versions", "contact"]));
    assert_eq!(versions["items"].as_array().unwrap().len(), 2, "{versions}");
    assert!(versions.to_string().contains("2.0.0"), "{versions}");
    assert_eq!(ok(url, t, &at(&["plugin", "rollback", "contact"]))["active_version"], 1);

    // A report, written as CSV to a file.
    ok(url, t, &at(&["plugin", "install", built::CUSTOMERS_BY_BRANCH, "--name", "branches"]));
    ok(url, t, &at(&["plugin", "enable", "branches"]));
    let csv_path = dir.path().join("branches.csv");
    let out =
        rapport(url, t, &at(&["report", "run", "branches", "--format", "csv", "--out", csv_path.to_str().unwrap()]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert!(csv.starts_with("branch,customers"), "{csv}");
    assert!(csv.contains("BKK,1") && csv.contains("CNX,2"), "{csv}");

    // A scorer, then a rescore followed to the end; the profile carries the score.
    ok(url, t, &at(&["plugin", "install", built::SPEND_RANK, "--name", "clv"]));
    ok(url, t, &at(&["plugin", "enable", "clv"]));
    let job = ok(url, t, &at(&["rescore", "--wait"]));
    assert_eq!((job["state"].clone(), job["done"].clone()), (json!("done"), json!(3)), "{job}");
    let profile = ok(url, t, &at(&["customer", "get", &id]));
    assert_eq!(profile["scores"]["clv.spend"], json!(29.33), "{profile}");

    // Keys: listed without their tokens; a revoked key stops working at once.
    let temp = ok(url, t, &at(&["key", "create", "temp", "--role", "read-only"]));
    let keys = ok(url, t, &at(&["keys", "list"]));
    assert_eq!(keys["items"].as_array().unwrap().len(), 2, "{keys}");
    assert!(!keys.to_string().contains(t), "a key list shows a token: {keys}");
    let temp_id = temp["id"].to_string();
    let out = rapport(url, t, &at(&["key", "revoke", &temp_id]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let revoked = failed(url, temp["token"].as_str().unwrap(), &at(&["customer", "get", &id]));
    assert!(revoked.contains("HTTP 401"), "{revoked}");
}

#[test]
fn errors_say_what_went_wrong_and_how_to_fix_it() {
    let s = serve();
    let url = s.url.as_str();
    ok(url, ADMIN, &["org", "create", "acme", "Acme Direct"]);

    // A wrong token: the server's reason, and where the token comes from.
    let wrong = failed(url, "not-a-token", &["customer", "list", "--org", "acme"]);
    assert!(wrong.starts_with("error: HTTP 401 Unauthorized: this token is not valid"), "{wrong}");
    assert!(wrong.contains("--token or RAPPORT_TOKEN"), "{wrong}");
    // An organization that does not exist; a key of too weak a role.
    let missing = failed(url, ADMIN, &["plugin", "list", "--org", "nowhere"]);
    assert!(missing.contains("HTTP 404") && missing.contains("nowhere"), "{missing}");
    let reader = ok(url, ADMIN, &["key", "create", "viewer", "--role", "read-only", "--org", "acme"]);
    let weak = failed(url, reader["token"].as_str().unwrap(), &["rescore", "--org", "acme"]);
    assert!(weak.contains("HTTP 403") && weak.contains("needs `manager`"), "{weak}");
    // No customer behind an external id.
    let none = failed(url, ADMIN, &["customer", "find", "--source", "shop", "--external-id", "x", "--org", "acme"]);
    assert!(none.contains("no customer") && none.contains("`x`"), "{none}");
    // No server at that address: which address, and how to choose another.
    let down = failed("http://127.0.0.1:9", ADMIN, &["customer", "list", "--org", "acme"]);
    assert!(down.contains("request failed: http://127.0.0.1:9/") && down.contains("--url or RAPPORT_URL"), "{down}");
}
