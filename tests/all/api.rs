//! The HTTP API end to end: a real `rapport serve` process on a loopback port, real plugins
//! built from source, plain HTTP. The reference scenario of `design.md`, step by step, then the
//! errors a client meets on the way.

use std::time::{Duration, Instant};

use rapport_test_plugins as built;
use serde_json::{Value, json};

use crate::server::{ADMIN, call, json_call, serve, urlencode};

#[test]
fn the_reference_scenario_works_as_written() {
    let s = serve();
    let api = |path: &str| format!("{}{path}", s.url);

    // 1. An organization.
    let (status, org) = json_call("POST", &api("/v1/orgs"), ADMIN, json!({"slug": "acme", "name": "Acme Direct"}));
    assert_eq!(status, 201, "{org}");
    assert_eq!(org["slug"], "acme");
    // 2. An owner key, shown once.
    let (status, key) = json_call("POST", &api("/v1/orgs/acme/keys"), ADMIN, json!({"name": "ops", "role": "owner"}));
    assert_eq!(status, 201, "{key}");
    let token = key["token"].as_str().unwrap().to_owned();
    let t = token.as_str();

    // 3. Customers as NDJSON; re-running changes nothing.
    let customers = [
        json!({"source": "shop", "external_id": "c-1", "name": "Somchai", "email": "somchai@example.com", "phone": "+66812345678", "branch": "BKK", "attributes": {"tier": "gold"}}),
        json!({"source": "shop", "external_id": "c-2", "name": "Suda", "email": "suda@example.com", "branch": "CNX"}),
        json!({"source": "shop", "external_id": "c-3", "name": "Broken", "email": 42}),
    ]
    .iter()
    .map(|v| v.to_string() + "\n")
    .collect::<String>();
    let import = |kind: &str, body: &str| {
        let (status, _, out) = call(
            "POST",
            &api(&format!("/v1/orgs/acme/import?kind={kind}")),
            Some(t),
            "application/x-ndjson",
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{out}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let report = import("customers", &customers);
    assert_eq!(report["accepted"], 2);
    assert_eq!(report["rejected"][0]["line"], 3, "{report}");
    let again = import("customers", &customers);
    assert_eq!(
        (again["accepted"].clone(), again["created"].clone(), again["updated"].clone()),
        (json!(2), json!(0), json!(0))
    );

    // 4. Interactions, the same report.
    let orders = [("c-1", "o-1", 2933), ("c-1", "o-2", 1500), ("c-2", "o-3", 990)]
        .iter()
        .map(|(c, o, amount)| {
            json!({"source": "shop", "external_id": o, "customer": {"source": "shop", "external_id": c}, "kind": "purchase",
                   "channel": "web", "occurred_at": "1997-01-01T00:00:00Z", "amount_minor": amount, "currency": "USD"})
            .to_string()
                + "\n"
        })
        .collect::<String>();
    assert_eq!(import("interactions", &orders)["accepted"], 3);

    // 5. A scorer uploaded as `clv`, configured, enabled.
    let wasm = std::fs::read(built::SPEND_RANK).unwrap();
    let (status, _, out) = call("POST", &api("/v1/orgs/acme/plugins?name=clv"), Some(t), "application/wasm", &wasm);
    assert_eq!(status, 201, "{out}");
    let (status, out) = json_call("PUT", &api("/v1/orgs/acme/plugins/clv/config"), t, json!({}));
    assert_eq!(status, 200, "{out}");
    let (status, out) = json_call("POST", &api("/v1/orgs/acme/plugins/clv/enable"), t, Value::Null);
    assert_eq!((status, out["enabled"].clone()), (200, json!(true)), "{out}");

    // 6. A rescore job, polled until done.
    let (status, job) = json_call("POST", &api("/v1/orgs/acme/scores/rescore"), t, Value::Null);
    assert!(status == 201 || status == 202, "{job}");
    let job_url = api(&format!("/v1/orgs/acme/jobs/{}", job["id"]));
    let start = Instant::now();
    loop {
        let (status, job) = json_call("GET", &job_url, t, Value::Null);
        assert_eq!(status, 200, "{job}");
        if job["state"] == "done" {
            assert_eq!(job["done"], 2);
            break;
        }
        assert_ne!(job["state"], "failed", "{job}");
        assert!(start.elapsed() < Duration::from_secs(60), "the job did not finish: {job}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // 7. Find by external id; the profile carries the scores.
    let (status, page) = json_call("GET", &api("/v1/orgs/acme/customers?source=shop&external_id=c-1"), t, Value::Null);
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert!(page.get("next_cursor").is_some());
    let id = page["items"][0]["id"].as_u64().unwrap();
    let (status, profile) = json_call("GET", &api(&format!("/v1/orgs/acme/customers/{id}")), t, Value::Null);
    assert_eq!(status, 200);
    assert_eq!(profile["scores"]["clv.spend"], json!(44.33), "{profile}");
    assert_eq!(profile["timeline"].as_array().unwrap().len(), 2);

    // 8. A report as JSON, CSV and HTML.
    let reporter = std::fs::read(built::BRANCH_STANDARD).unwrap();
    let (status, _, out) =
        call("POST", &api("/v1/orgs/acme/plugins?name=branches"), Some(t), "application/wasm", &reporter);
    assert_eq!(status, 201, "{out}");
    json_call("POST", &api("/v1/orgs/acme/plugins/branches/enable"), t, Value::Null);
    let (status, report) = json_call("POST", &api("/v1/orgs/acme/reports/branches/run"), t, json!({}));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["columns"][0], json!({"name": "branch", "type": "text"}));
    assert_eq!(report["rows"][0][0], "BKK");
    assert!(report.get("chart").is_some());
    let (status, ty, csv) =
        call("POST", &api("/v1/orgs/acme/reports/branches/run?format=csv"), Some(t), "application/json", b"{}");
    assert_eq!((status, ty.as_str()), (200, "text/csv"));
    assert!(csv.starts_with("branch,customers,open_tickets"), "{csv}");
    let (status, ty, html) =
        call("POST", &api("/v1/orgs/acme/reports/branches/run?format=html"), Some(t), "application/json", b"{}");
    assert_eq!((status, ty.as_str()), (200, "text/html"));
    assert!(html.contains("<svg") && html.contains("BKK"));
}

#[test]
fn errors_are_problem_json_and_keys_stay_in_their_organization() {
    let s = serve();
    let api = |path: &str| format!("{}{path}", s.url);
    for slug in ["acme", "globex"] {
        let (status, _) = json_call("POST", &api("/v1/orgs"), ADMIN, json!({"slug": slug, "name": slug}));
        assert_eq!(status, 201);
    }
    let key = |org: &str, role: &str| {
        let (_, k) =
            json_call("POST", &api(&format!("/v1/orgs/{org}/keys")), ADMIN, json!({"name": role, "role": role}));
        k["token"].as_str().unwrap().to_owned()
    };
    let (owner, agent, other) = (key("acme", "owner"), key("acme", "agent"), key("globex", "owner"));

    let problem = |status: u16, ty: &str, body: &str| -> Value {
        assert_eq!(ty, "application/problem+json", "{status} {body}");
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], status);
        assert!(!v["detail"].as_str().unwrap().is_empty());
        v
    };
    // No token, a bad token.
    let (status, ty, body) = call("GET", &api("/v1/orgs/acme/customers"), None, "", b"");
    assert_eq!(status, 401);
    problem(401, &ty, &body);
    let (status, ty, body) = call("GET", &api("/v1/orgs/acme/customers"), Some("nope"), "", b"");
    problem(status, &ty, &body);
    assert_eq!(status, 401);
    // Another organization's key: 404, as for an organization that does not exist.
    let (status, ty, body) = call("GET", &api("/v1/orgs/acme/customers"), Some(&other), "", b"");
    assert_eq!(status, 404);
    let v = problem(404, &ty, &body);
    let (status, ty, missing) = call("GET", &api("/v1/orgs/nowhere/customers"), Some(ADMIN), "", b"");
    assert_eq!(status, 404);
    assert_eq!(
        problem(404, &ty, &missing)["detail"].as_str().unwrap().replace("nowhere", "acme"),
        v["detail"].as_str().unwrap()
    );
    // A role too weak. The server answers before reading the body, so a large one races the
    // client's write (a client that sends all of it first may see the connection closed); the
    // role is checked whatever the bytes are.
    let (status, ty, body) =
        call("POST", &api("/v1/orgs/acme/plugins?name=contact"), Some(&agent), "application/wasm", b"\0asm");
    assert_eq!(status, 403);
    problem(403, &ty, &body);
    // Bad JSON, an unknown field, a bad filter, the wrong content type, bad wasm.
    let (status, ty, body) =
        call("POST", &api("/v1/orgs/acme/customers"), Some(&agent), "application/json", b"{not json");
    assert_eq!(status, 400);
    problem(400, &ty, &body);
    let (status, ty, body) =
        call("POST", &api("/v1/orgs/acme/customers"), Some(&agent), "application/json", br#"{"nmae": "typo"}"#);
    assert_eq!(status, 400);
    assert!(problem(400, &ty, &body)["detail"].as_str().unwrap().contains("nmae"));
    let (status, ty, body) =
        call("GET", &api("/v1/orgs/acme/customers?filter=colour%20%3D%201"), Some(&agent), "", b"");
    assert_eq!(status, 400);
    assert!(problem(400, &ty, &body)["detail"].as_str().unwrap().contains("colour"));
    let (status, ty, body) =
        call("POST", &api("/v1/orgs/acme/import?kind=customers"), Some(&owner), "text/plain", b"x");
    assert_eq!(status, 415);
    problem(415, &ty, &body);
    let (status, ty, body) =
        call("POST", &api("/v1/orgs/acme/plugins?name=junk"), Some(&owner), "application/wasm", b"not wasm");
    assert_eq!(status, 422);
    assert!(problem(422, &ty, &body)["detail"].as_str().unwrap().contains("WebAssembly"));

    // A policy's denial: 422 with its reason and field; nothing lands.
    let wasm = std::fs::read(built::REQUIRE_CONTACT).unwrap();
    let (status, _, out) =
        call("POST", &api("/v1/orgs/acme/plugins?name=contact"), Some(&owner), "application/wasm", &wasm);
    assert_eq!(status, 201, "{out}");
    json_call("POST", &api("/v1/orgs/acme/plugins/contact/enable"), &owner, Value::Null);
    let (status, ty, body) =
        call("POST", &api("/v1/orgs/acme/customers"), Some(&agent), "application/json", br#"{"name": "Nobody"}"#);
    assert_eq!(status, 422);
    let v = problem(422, &ty, &body);
    assert_eq!(v["field"], "email");
    assert!(v["detail"].as_str().unwrap().contains("denied by policy `contact`"));
    let (_, page) = json_call("GET", &api("/v1/orgs/acme/customers"), &agent, Value::Null);
    assert_eq!(page["items"], json!([]));
    // A bad config names the field.
    let (status, v) = json_call("PUT", &api("/v1/orgs/acme/plugins/contact/config"), &owner, json!({"welcome_tag": 5}));
    assert_eq!((status, v["field"].clone()), (422, json!("/welcome_tag")), "{v}");
}

#[test]
fn a_new_organization_goes_from_keys_to_erasure_and_the_audit_shows_it_all() {
    let s = serve();
    let api = |path: &str| format!("{}{path}", s.url);
    json_call("POST", &api("/v1/orgs"), ADMIN, json!({"slug": "dealer", "name": "Dealer"}));
    let (_, key) = json_call("POST", &api("/v1/orgs/dealer/keys"), ADMIN, json!({"name": "boss", "role": "owner"}));
    let owner = key["token"].as_str().unwrap().to_owned();
    let t = owner.as_str();
    let upload = |name: &str, path: &str| {
        let (status, _, out) = call(
            "POST",
            &api(&format!("/v1/orgs/dealer/plugins?name={name}&version=1.0.0")),
            Some(t),
            "application/wasm",
            &std::fs::read(path).unwrap(),
        );
        assert_eq!(status, 201, "{out}");
        let (status, out) = json_call("POST", &api(&format!("/v1/orgs/dealer/plugins/{name}/enable")), t, Value::Null);
        assert_eq!(status, 200, "{out}");
    };
    upload("contact", built::REQUIRE_CONTACT);
    upload("rank", built::SPEND_RANK);
    upload("branches", built::BRANCH_STANDARD);

    // Import through the policies: the unreachable row is reported, the others land tagged.
    let rows = "source,external_id,name,email,branch\nshop,c-1,Anan,ANAN@example.com,BKK\nshop,c-2,Nobody,,CNX\n";
    let (status, _, out) =
        call("POST", &api("/v1/orgs/dealer/import?kind=customers"), Some(t), "text/csv", rows.as_bytes());
    assert_eq!(status, 200, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["accepted"], 1);
    assert!(report["rejected"][0]["error"].as_str().unwrap().contains("denied by policy `contact`"), "{report}");

    // A single write: denied with its reason, then one that lands (patched, tagged).
    let (status, v) = json_call("POST", &api("/v1/orgs/dealer/customers"), t, json!({"name": "No Contact"}));
    assert_eq!((status, v["field"].clone()), (422, json!("email")), "{v}");
    let (status, c) = json_call(
        "POST",
        &api("/v1/orgs/dealer/customers"),
        t,
        json!({"name": "Mali", "email": "MALI@example.com", "branch": "CNX"}),
    );
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["email"], "mali@example.com");
    assert_eq!(c["actions"][0]["result"], "applied");
    let mali = c["id"].as_u64().unwrap();
    let (status, i) = json_call(
        "POST",
        &api("/v1/orgs/dealer/interactions"),
        t,
        json!({"customer": mali, "kind": "purchase", "channel": "store", "source": "pos", "external_id": "r-1",
               "occurred_at": 1_700_000_000_000i64, "amount": {"amount_minor": 120000, "currency": "THB"},
               "body": "Mali paid by card ending 4242"}),
    );
    assert_eq!(status, 201, "{i}");

    // Rescore, then the report as CSV and HTML.
    let (_, job) = json_call("POST", &api("/v1/orgs/dealer/scores/rescore"), t, Value::Null);
    let job_url = api(&format!("/v1/orgs/dealer/jobs/{}", job["id"]));
    let start = Instant::now();
    while json_call("GET", &job_url, t, Value::Null).1["state"] != "done" {
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, profile) = json_call("GET", &api(&format!("/v1/orgs/dealer/customers/{mali}")), t, Value::Null);
    assert_eq!(profile["scores"]["rank.spend"], json!(1200.0), "{profile}");
    let (status, _, csv) =
        call("POST", &api("/v1/orgs/dealer/reports/branches/run?format=csv"), Some(t), "application/json", b"{}");
    assert_eq!(status, 200);
    assert!(csv.contains("CNX,1,0,0,120000"), "{csv}");
    let (status, _, html) =
        call("POST", &api("/v1/orgs/dealer/reports/branches/run?format=html"), Some(t), "application/json", b"{}");
    assert!(status == 200 && html.contains("<svg"));

    // Try a candidate: a dry-run of the template policy against the recent changes.
    let (status, _, out) = call(
        "POST",
        &api("/v1/orgs/dealer/plugins?name=contact&activate=false"),
        Some(t),
        "application/wasm",
        &std::fs::read(built::TEMPLATE_POLICY_TEMPLATE).unwrap(),
    );
    assert_eq!(status, 201, "{out}");
    let (status, run) = json_call("POST", &api("/v1/orgs/dealer/plugins/contact/dry-run"), t, json!({"version": 2}));
    assert_eq!(status, 200, "{run}");
    assert!(run["compared"].as_u64().unwrap() >= 2, "{run}");

    // The person's data: exported, then erased.
    let (status, doc) = json_call("GET", &api(&format!("/v1/orgs/dealer/customers/{mali}/export")), t, Value::Null);
    assert_eq!(status, 200);
    assert!(doc.to_string().contains("mali@example.com"));
    let (status, _, _) = call("DELETE", &api(&format!("/v1/orgs/dealer/customers/{mali}")), Some(t), "", b"");
    assert_eq!(status, 204);
    let (_, doc) = json_call("GET", &api(&format!("/v1/orgs/dealer/customers/{mali}/export")), t, Value::Null);
    assert!(!doc.to_string().contains("mali@example.com"), "{doc}");
    // Nothing of hers is left in the audit log either: records, patched values, note texts.
    let (_, audit) = json_call("GET", &api("/v1/orgs/dealer/audit"), t, Value::Null);
    let text = audit.to_string();
    assert!(!text.contains("mali@example.com") && !text.contains("4242") && !text.contains("\"Mali\""), "{audit}");

    // The audit log shows it all.
    let (status, audit) = json_call("GET", &api("/v1/orgs/dealer/audit"), t, Value::Null);
    assert_eq!(status, 200);
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for wanted in
        ["plugin.install", "plugin.enable", "import", "customer.create", "interaction.create", "job.done", "erase"]
    {
        assert!(actions.contains(&wanted), "no `{wanted}` in {actions:?}");
    }

    // A revoked key stops working.
    let (_, k) = json_call("POST", &api("/v1/orgs/dealer/keys"), t, json!({"name": "temp", "role": "read-only"}));
    let temp = k["token"].as_str().unwrap().to_owned();
    assert_eq!(call("GET", &api("/v1/orgs/dealer/customers"), Some(&temp), "", b"").0, 200);
    let (_, keys) = json_call("GET", &api("/v1/orgs/dealer/keys"), t, Value::Null);
    let listed = keys["items"].as_array().unwrap().iter().find(|x| x["id"] == k["id"]).cloned();
    assert!(listed.unwrap()["last_used_at"].is_i64(), "{keys}");
    assert!(!keys.to_string().contains(&temp), "tokens are never listed");
    let (status, _, _) = call("DELETE", &api(&format!("/v1/orgs/dealer/keys/{}", k["id"])), Some(t), "", b"");
    assert_eq!(status, 204);
    assert_eq!(call("GET", &api("/v1/orgs/dealer/customers"), Some(&temp), "", b"").0, 401);
}

/// A ticket's service state changes after it is recorded (closed, recategorized); the rest of
/// the interaction is a fact. The branch service standard judges the change: closing without a
/// resolution note is refused at its field and changes nothing; with one, the ticket closes,
/// `closed_at` is set and the audit log says so. Only tickets change, and only in the caller's
/// scope.
#[test]
fn a_ticket_closes_through_the_service_standard_and_facts_stay_facts() {
    let s = serve();
    let api = |path: &str| format!("{}/v1/orgs/acme{path}", s.url);
    let (status, _) = json_call("POST", &format!("{}/v1/orgs", s.url), ADMIN, json!({"slug": "acme", "name": "Acme"}));
    assert_eq!(status, 201);
    let key = |body: Value| {
        let (status, k) = json_call("POST", &api("/keys"), ADMIN, body);
        assert_eq!(status, 201, "{k}");
        k["token"].as_str().unwrap().to_owned()
    };
    let owner = key(json!({"name": "ops", "role": "owner"}));
    crate::server::install_enabled(&s, "acme", &owner, "service-standard", built::SERVICE_STANDARD);
    let customer = |name: &str, branch: &str| {
        let (status, c) = json_call(
            "POST",
            &api("/customers"),
            &owner,
            json!({"name": name, "email": format!("{name}@x.th"), "branch": branch}),
        );
        assert_eq!(status, 201, "{c}");
        c["id"].as_u64().unwrap()
    };
    let bkk = customer("anan", "BKK");
    let add = |body: Value| {
        let (status, i) = json_call("POST", &api("/interactions"), &owner, body);
        assert_eq!(status, 201, "{i}");
        i
    };
    let ticket =
        add(json!({"customer": bkk, "kind": "ticket", "channel": "phone", "occurred_at": 1_790_000_000_000i64,
        "subject": "Broken fan", "ticket": {"status": "open"}}));
    let id = ticket["id"].as_u64().unwrap();
    assert_eq!(ticket["ticket"]["category"], "product", "the standard categorized it: {ticket}");
    let stored = || {
        let (_, page) = json_call("GET", &api(&format!("/customers/{bkk}/timeline")), &owner, Value::Null);
        page["items"].as_array().unwrap().iter().find(|i| i["id"] == id).cloned().unwrap()
    };
    let audited = || {
        let (_, page) = json_call("GET", &api("/audit?limit=1000"), &owner, Value::Null);
        page["items"].as_array().unwrap().iter().filter(|a| a["action"] == "ticket.update").count()
    };

    // Closing without a note: refused at the field, nothing changes.
    let closing = json!({"status": "closed", "category": "product", "due_at": ticket["ticket"]["due_at"]});
    let (status, out) = json_call("PUT", &api(&format!("/interactions/{id}/ticket")), &owner, closing.clone());
    assert_eq!((status, out["field"].as_str()), (422, Some("ticket.resolution")), "{out}");
    assert_eq!(stored()["ticket"]["status"], "open");
    assert_eq!(audited(), 0);

    // With the note it closes; `closed_at` is the write's time; the facts are untouched.
    let mut resolved = closing.clone();
    resolved["resolution"] = json!("Replaced the fan");
    let (status, out) = json_call("PUT", &api(&format!("/interactions/{id}/ticket")), &owner, resolved);
    assert_eq!(status, 200, "{out}");
    let now = stored();
    assert_eq!(
        (now["ticket"]["status"].as_str(), now["ticket"]["resolution"].as_str()),
        (Some("closed"), Some("Replaced the fan"))
    );
    assert!(now["ticket"]["closed_at"].as_i64().unwrap() > 1_790_000_000_000, "{now}");
    assert_eq!((&now["subject"], &now["occurred_at"]), (&ticket["subject"], &ticket["occurred_at"]));
    assert_eq!(audited(), 1);

    // A purchase has no ticket to change; a missing id is a 404.
    let purchase = add(json!({"customer": bkk, "kind": "purchase", "occurred_at": 1_790_000_000_000i64,
        "amount": {"amount_minor": 100, "currency": "THB"}}));
    let (status, out) = json_call(
        "PUT",
        &api(&format!("/interactions/{}/ticket", purchase["id"])),
        &owner,
        json!({"status": "closed"}),
    );
    assert_eq!(status, 400, "{out}");
    assert!(out["detail"].as_str().unwrap().contains("not a ticket"), "{out}");
    let (status, _) = json_call("PUT", &api("/interactions/999999/ticket"), &owner, json!({"status": "open"}));
    assert_eq!(status, 404);

    // An agent of CNX: BKK's ticket reads as missing.
    let agent = key(json!({"name": "cnx", "role": "agent", "branch": "CNX"}));
    let (status, _) = json_call("PUT", &api(&format!("/interactions/{id}/ticket")), &agent, json!({"status": "open"}));
    assert_eq!(status, 404);
    assert_eq!(stored()["ticket"]["status"], "closed");
}

/// An agent's list is its filter narrowed to its scope. Concatenated unchecked, a filter with
/// unbalanced parentheses (`a) or (b`) would turn `(…) and scope` into `(a) or (b and scope)` and
/// list customers outside the scope: it is refused at the `filter` field instead.
#[test]
fn a_scoped_agents_filter_cannot_lift_its_scope_with_parentheses() {
    let s = serve();
    let api = |path: &str| format!("{}/v1/orgs/acme{path}", s.url);
    let (status, _) = json_call("POST", &format!("{}/v1/orgs", s.url), ADMIN, json!({"slug": "acme", "name": "Acme"}));
    assert_eq!(status, 201);
    let mut ids = Vec::new();
    for (name, branch) in [("anan", "BKK"), ("boon", "CNX")] {
        let (status, c) = json_call("POST", &api("/customers"), ADMIN, json!({"name": name, "branch": branch}));
        assert_eq!(status, 201, "{c}");
        ids.push(c["id"].as_u64().unwrap());
    }
    let (status, k) = json_call("POST", &api("/keys"), ADMIN, json!({"name": "cnx", "role": "agent", "branch": "CNX"}));
    assert_eq!(status, 201, "{k}");
    let agent = k["token"].as_str().unwrap();
    for filter in [r#"name = "anan") or (name = "anan""#, "id > 0) or (id > 0", r#"name = "x\") or (id > 0"#] {
        let url = format!("{}?filter={}", api("/customers"), urlencode(filter));
        let (status, out) = json_call("GET", &url, agent, Value::Null);
        assert_eq!((status, out["field"].as_str()), (400, Some("filter")), "{filter}: {out}");
    }
    let (_, page) = json_call("GET", &api("/customers?filter=id%20%3E%200"), agent, Value::Null);
    let seen: Vec<u64> = page["items"].as_array().unwrap().iter().map(|c| c["id"].as_u64().unwrap()).collect();
    assert_eq!(seen, [ids[1]], "only the CNX customer");
}

/// Every route that reads or writes customers answers a scoped agent within its scope: counts,
/// lists and errors say nothing of the customers outside it (route × scope table).
#[test]
fn a_scoped_agent_gets_scoped_counts_lists_and_errors_on_every_route() {
    let s = serve();
    let api = |path: &str| format!("{}/v1/orgs/acme{path}", s.url);
    let (status, _) = json_call("POST", &format!("{}/v1/orgs", s.url), ADMIN, json!({"slug": "acme", "name": "Acme"}));
    assert_eq!(status, 201);
    let distributors = [
        json!({"source": "mlm", "external_id": "d-1", "name": "Dao"}),
        json!({"source": "mlm", "external_id": "d-2", "name": "Daeng", "sponsor": "d-1"}),
        json!({"source": "mlm", "external_id": "d-3", "name": "Other"}),
    ];
    let customers = [
        json!({"source": "shop", "external_id": "c-mine", "name": "Anan", "branch": "BKK",
               "distributor": {"source": "mlm", "external_id": "d-1"}}),
        json!({"source": "shop", "external_id": "c-theirs", "name": "Boon", "branch": "CNX",
               "distributor": {"source": "mlm", "external_id": "d-3"}}),
    ];
    for (kind, lines) in [("distributors", &distributors[..]), ("customers", &customers[..])] {
        let body: String = lines.iter().map(|l| l.to_string() + "\n").collect();
        let (status, _, out) =
            call("POST", &api(&format!("/import?kind={kind}")), Some(ADMIN), "application/x-ndjson", body.as_bytes());
        assert_eq!(status, 200, "{out}");
    }
    let find = |path: &str| json_call("GET", &api(path), ADMIN, Value::Null).1;
    let mine = find("/customers?source=shop&external_id=c-mine")["items"][0]["id"].as_u64().unwrap();
    let theirs = find("/customers?source=shop&external_id=c-theirs")["items"][0]["id"].as_u64().unwrap();
    let d = |n: usize| find("/distributors")["items"][n]["id"].as_u64().unwrap();
    let (d1, d3) = (d(0), d(2));
    let (status, _) = json_call("PUT", &api("/segments/everyone"), ADMIN, json!({"filter": "id > 0"}));
    assert_eq!(status, 200);
    let ticket = json_call(
        "POST",
        &api("/interactions"),
        ADMIN,
        json!({"customer": theirs, "kind": "ticket", "occurred_at": 1_790_000_000_000i64}),
    )
    .1["id"]
        .as_u64()
        .unwrap();
    let key = |scope: Value| {
        let mut body = json!({"name": "k", "role": "agent"});
        body.as_object_mut().unwrap().extend(scope.as_object().unwrap().clone());
        json_call("POST", &api("/keys"), ADMIN, body).1["token"].as_str().unwrap().to_owned()
    };
    let callers = [
        ("whole org", ADMIN.to_owned()),
        ("branch BKK", key(json!({"branch": "BKK"}))),
        ("distributor d-1", key(json!({"distributor": d1}))),
    ];
    let scoped = |who: &str| who != "whole org";
    for (who, token) in &callers {
        let get = |path: &str| json_call("GET", &api(path), token, Value::Null);
        let ids =
            |v: &Value| v["items"].as_array().unwrap().iter().map(|c| c["id"].as_u64().unwrap()).collect::<Vec<_>>();
        let expect_customers: Vec<u64> = if scoped(who) { vec![mine] } else { vec![mine, theirs] };
        // (route, what it answers) — every row says the same about the customer outside the scope.
        let (status, out) = get("/customers");
        assert_eq!((status, ids(&out)), (200, expect_customers.clone()), "{who}: list");
        let (_, out) = get("/customers?source=shop&external_id=c-theirs");
        assert_eq!(ids(&out).len(), usize::from(!scoped(who)), "{who}: find by external id");
        let (_, out) = get("/segments/everyone");
        assert_eq!(out["count"], expect_customers.len(), "{who}: segment count");
        for path in [
            format!("/customers/{theirs}"),
            format!("/customers/{theirs}/timeline"),
            format!("/customers/{theirs}/scores"),
        ] {
            let (status, out) = get(&path);
            let expected = if scoped(who) { 404 } else { 200 };
            assert_eq!(status, expected, "{who}: GET {path}: {out}");
            if scoped(who) {
                assert_eq!(out["detail"], format!("customer {theirs} does not exist"), "{who}: {path}");
            }
        }
        let (status, out) = get("/distributors");
        let listed = out["items"].as_array().unwrap().len();
        let expected = match *who {
            "whole org" => 3,
            "distributor d-1" => 2,
            _ => 0,
        };
        assert_eq!((status, listed), (200, expected), "{who}: distributors {out}");
        let (status, _) = get(&format!("/distributors/{d3}"));
        assert_eq!(status, if scoped(who) { 404 } else { 200 }, "{who}: another's distributor");
        // Writes: another's customer and ticket read as missing; a key in use says nothing of whose.
        let (status, out) = json_call(
            "POST",
            &api("/interactions"),
            token,
            json!({"customer": theirs, "kind": "call", "occurred_at": 1_790_000_000_000i64}),
        );
        assert_eq!(status, if scoped(who) { 404 } else { 201 }, "{who}: interaction for another's customer: {out}");
        let (status, _) =
            json_call("PUT", &api(&format!("/interactions/{ticket}/ticket")), token, json!({"status": "open"}));
        assert_eq!(status, if scoped(who) { 404 } else { 200 }, "{who}: another's ticket");
        let (status, out) = json_call(
            "POST",
            &api("/customers"),
            token,
            json!({"name": "Copy", "external_ids": [{"source": "shop", "id": "c-theirs"}]}),
        );
        assert_eq!(status, 409, "{who}: {out}");
        let detail = out["detail"].as_str().unwrap();
        assert!(!detail.contains(&theirs.to_string()) && !detail.contains("Boon"), "{who}: {detail}");
    }
}

/// Authenticating only reads. A GET with a key never used before answers 200 while another
/// connection holds SQLite's write lock (as another organization's long import would); before,
/// recording the first use waited out the busy timeout and answered 500 "database is locked".
/// The use shows in the key list at once, and reaches the database by a clean shutdown.
#[test]
fn authenticating_needs_no_write_lock_and_key_use_is_still_recorded() {
    let mut s = serve();
    let api = |path: &str| format!("{}/v1/orgs/quiet{path}", s.url);
    let (status, out) = json_call("POST", &format!("{}/v1/orgs", s.url), ADMIN, json!({"slug": "quiet", "name": "Q"}));
    assert_eq!(status, 201, "{out}");
    let (status, key) = json_call("POST", &api("/keys"), ADMIN, json!({"name": "reader", "role": "read-only"}));
    assert_eq!(status, 201, "{key}");
    let token = key["token"].as_str().unwrap().to_owned();
    let listed =
        |keys: &Value| keys["items"].as_array().unwrap().iter().find(|k| k["id"] == key["id"]).cloned().unwrap();
    let (_, keys) = json_call("GET", &api("/keys"), ADMIN, Value::Null);
    assert!(listed(&keys)["last_used_at"].is_null(), "never used yet: {keys}");

    // Another writer holds the database.
    let db = s.data.join("rapport.db");
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE; UPDATE settings SET value = value;").unwrap();
    let (answered, answer) = std::sync::mpsc::channel();
    let url = api("/customers");
    let reader = token.clone();
    std::thread::spawn(move || answered.send(call("GET", &url, Some(&reader), "", b"")));
    // A bound on the wait, so that a hang fails the test instead of the CI run; not a timing claim.
    let (status, _, body) = answer.recv_timeout(Duration::from_secs(120)).expect("the GET never answered");
    assert_eq!(status, 200, "a read with a fresh key while the write lock is held: {body}");
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);

    let (_, keys) = json_call("GET", &api("/keys"), ADMIN, Value::Null);
    let used = listed(&keys)["last_used_at"].as_i64().unwrap_or_else(|| panic!("use not shown: {keys}"));
    assert!(used >= key["created_at"].as_i64().unwrap(), "{keys}");

    s.stop();
    let stored: Option<i64> = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT last_used_at FROM api_keys WHERE id = ?1", [key["id"].as_i64().unwrap()], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, Some(used), "the use is written by shutdown at the latest");
}
