//! The standard policies `network-compliance` and `service-standard`, each installed through the
//! API into the generated demo organization (`rapport serve --demo`) and judging real writes.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use rapport_test_plugins as built;
use serde_json::{Value, json};

use crate::server::{ADMIN, call, json_call};

const HOUR: i64 = 3_600_000;

/// `rapport serve --demo`: the demo organization `demo` (generated branches, sponsor tree,
/// customers and history), the server stopped when dropped.
struct Demo {
    child: Child,
    url: String,
    /// The server prints its banner after the first line: its stdout stays open (a closed pipe
    /// would fail its next print).
    _stdout: ChildStdout,
    _dir: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A demo server with the plugin installed and enabled in the demo organization through the API.
fn demo_with(name: &str, wasm: &str) -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(["serve", "--listen", "127.0.0.1:0", "--demo", "true", "--demo-customers", "150", "--data"])
        .arg(dir.path().join("data"))
        .env("RAPPORT_ADMIN_TOKEN", ADMIN)
        .env("RAPPORT_CACHE_DIR", dir.path().join("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rapport serve starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url =
        line.trim().strip_prefix("rapport listening on ").unwrap_or_else(|| panic!("unexpected: {line}")).to_owned();
    let demo = Demo { child, url, _stdout: stdout.into_inner(), _dir: dir };
    install_enabled(&demo.url, name, wasm);
    demo
}

/// Upload a built plugin to the demo organization and enable it, as an admin.
fn install_enabled(url: &str, name: &str, wasm_path: &str) {
    let wasm = std::fs::read(wasm_path).unwrap_or_else(|e| panic!("{wasm_path}: {e}"));
    let plugins = format!("{url}/v1/orgs/demo/plugins");
    let (status, _, out) = call("POST", &format!("{plugins}?name={name}"), Some(ADMIN), "application/wasm", &wasm);
    assert_eq!(status, 201, "installing {name}: {out}");
    let (status, out) = json_call("POST", &format!("{plugins}/{name}/enable"), ADMIN, Value::Null);
    assert_eq!(status, 200, "enabling {name}: {out}");
}

/// How many entries the organization's audit log holds (every accepted write has one).
fn audit_len(s: &Demo) -> usize {
    let mut n = 0;
    let mut cursor = String::new();
    loop {
        let (status, page) = json_call("GET", &format!("{}/v1/orgs/demo/audit{cursor}", s.url), ADMIN, Value::Null);
        assert_eq!(status, 200, "{page}");
        n += page["items"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("?cursor={next}"),
            None => return n,
        }
    }
}

fn timeline(s: &Demo, customer: u64) -> Vec<Value> {
    let url = format!("{}/v1/orgs/demo/customers/{customer}/timeline?limit=1000", s.url);
    let (status, page) = json_call("GET", &url, ADMIN, Value::Null);
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

/// A denial as the API answers it: 422, the policy named in `detail`, and the field.
fn assert_denied(answer: &(u16, Value), plugin: &str, field: &str, says: &str) {
    let (status, out) = answer;
    assert_eq!(*status, 422, "{out}");
    assert_eq!(out["field"], field, "{out}");
    let detail = out["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("denied by policy `{plugin}`")), "{detail}");
    assert!(detail.contains(says), "expected {says:?} in: {detail}");
}

fn id(answer: &(u16, Value)) -> u64 {
    assert!(answer.0 == 200 || answer.0 == 201, "{}", answer.1);
    answer.1["id"].as_u64().unwrap_or_else(|| panic!("no id: {}", answer.1))
}

#[test]
fn network_compliance_keeps_the_demo_sponsor_tree_customers_and_messages_compliant() {
    let s = demo_with("network-compliance", built::NETWORK_COMPLIANCE);
    let api = |path: &str| format!("{}/v1/orgs/demo{path}", s.url);
    // The schema shipped in the component refuses a bad configuration, naming the field.
    let (status, out) =
        json_call("PUT", &api("/plugins/network-compliance/config"), ADMIN, json!({"reassignment": "maybe"}));
    assert_eq!(status, 422, "{out}");
    assert!(out.to_string().contains("reassignment"), "{out}");
    let (status, out) = json_call("PUT", &api("/plugins/network-compliance/config"), ADMIN, json!({}));
    assert_eq!(status, 200, "{out}");
    // A manager's key: managers may not add roots to the tree (owners and admins may).
    let (_, key) = json_call("POST", &api("/keys"), ADMIN, json!({"name": "desk", "role": "manager"}));
    let manager = key["token"].as_str().unwrap().to_owned();
    let m = manager.as_str();

    let (_, tree) = json_call("GET", &api("/distributors?limit=1000"), ADMIN, Value::Null);
    let tree = tree["items"].as_array().unwrap().clone();
    assert!(tree.len() >= 3, "the demo has a sponsor tree: {tree:?}");
    let root = tree.iter().find(|d| d["sponsor"].is_null()).expect("the demo tree has a root")["id"].as_u64().unwrap();
    let distributor = |name: &str, sponsor: Value, notes: &str| {
        json_call(
            "POST",
            &api("/distributors"),
            m,
            json!({"name": name, "sponsor": sponsor, "attributes": {"notes": notes}}),
        )
    };

    // Under the demo's root, a chain Ann ─ Bee ─ Cat lands.
    let ann = id(&distributor("Ann", json!(root), "met at the Bangkok fair"));
    let bee = id(&distributor("Bee", json!(ann), ""));
    let cat = id(&distributor("Cat", json!(bee), ""));
    let (distributors, audit) = (tree.len() + 3, audit_len(&s));
    let count =
        || json_call("GET", &api("/distributors?limit=1000"), ADMIN, Value::Null).1["items"].as_array().unwrap().len();
    assert_eq!(count(), distributors);

    // No sponsor, an unknown sponsor: denied on `sponsor`, and nothing stored.
    assert_denied(&distributor("Dao", Value::Null, ""), "network-compliance", "sponsor", "has no sponsor");
    assert_denied(
        &distributor("Dao", json!(999_999), ""),
        "network-compliance",
        "sponsor",
        "sponsor 999999 is not a distributor of this organization",
    );
    // Notes with a guaranteed-income claim, in Thai with a space typed inside it, or in English.
    assert_denied(
        &distributor("Dao", json!(ann), "บอกลูกทีมว่า รายได้ แน่นอน ทุกเดือน"),
        "network-compliance",
        "attributes.notes",
        "contains the forbidden claim \"รายได้แน่นอน\" (written \"รายได้ แน่นอน\")",
    );
    assert_denied(
        &distributor("Dao", json!(ann), "Promised GUARANTEED income to recruits"),
        "network-compliance",
        "attributes.notes",
        "\"guaranteed income\" (written \"GUARANTEED income\")",
    );
    // Moving Ann under Cat, who is in Ann's own downline: the policy's reason, on `sponsor`.
    let moved = json_call("POST", &api(&format!("/distributors/{ann}/move")), m, json!({"sponsor": cat}));
    assert_denied(
        &moved,
        "network-compliance",
        "sponsor",
        &format!("would make a cycle: {cat} is 2 level(s) below {ann}"),
    );
    // Terminating Bee, who still sponsors Cat, would orphan Cat.
    let bee_record = json!({"name": "Bee", "sponsor": ann, "status": "terminated"});
    let terminated = json_call("PUT", &api(&format!("/distributors/{bee}")), m, bee_record);
    assert_denied(&terminated, "network-compliance", "status", "still sponsors 1 distributor(s)");
    assert_eq!((count(), audit_len(&s)), (distributors, audit), "denied writes store nothing");

    // Moving Bee (with Cat) under the root lands, and the downline moved along.
    let (status, out) = json_call("POST", &api(&format!("/distributors/{bee}/move")), m, json!({"sponsor": root}));
    assert_eq!(status, 200, "{out}");
    let (_, below) = json_call("GET", &api(&format!("/distributors/{bee}/downline")), ADMIN, Value::Null);
    assert_eq!(below["items"][0]["distributor"]["id"], cat, "{below}");
    // A leaf leaves freely; a terminated distributor takes on neither recruits nor customers.
    let (status, out) = json_call(
        "PUT",
        &api(&format!("/distributors/{cat}")),
        m,
        json!({"name": "Cat", "sponsor": bee, "status": "terminated"}),
    );
    assert_eq!(status, 200, "{out}");
    assert_denied(
        &distributor("Eve", json!(cat), ""),
        "network-compliance",
        "sponsor",
        "is terminated and cannot take on recruits",
    );
    let customer =
        |distributor: u64| json!({"name": "Malee Suksan", "phone": "+66812345678", "distributor": distributor});
    let created = json_call("POST", &api("/customers"), m, customer(cat));
    assert_denied(&created, "network-compliance", "distributor", &format!("distributor {cat} (`Cat`) is terminated"));

    // A customer of Ann's; moving them to Bee lands with a warning (one owner at a time).
    let malee = id(&json_call("POST", &api("/customers"), m, customer(ann)));
    let (status, out) = json_call("PUT", &api(&format!("/customers/{malee}")), m, customer(bee));
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["distributor"], bee, "{out}");
    let warning = out["warnings"][0]["message"].as_str().unwrap_or_default();
    assert!(warning.contains(&format!("belongs to distributor {ann}")), "{out}");

    // Messages to a distributor's customer: a claim is denied quoting it, and not stored.
    let message = |customer: u64, body: &str| {
        json_call(
            "POST",
            &api("/interactions"),
            m,
            json!({"customer": customer, "kind": "chat", "channel": "line", "source": "api", "occurred_at": 1_760_000_000_000_i64,
                   "subject": "Business opportunity", "body": body}),
        )
    };
    let before = (timeline(&s, malee).len(), audit_len(&s));
    assert_denied(
        &message(malee, "Join my team and get rich quick!"),
        "network-compliance",
        "body",
        "\"get rich quick\"",
    );
    assert_denied(&message(malee, "สมัครเลย รวยเร็ว แน่นอน"), "network-compliance", "body", "\"รวยเร็ว\"");
    assert_eq!((timeline(&s, malee).len(), audit_len(&s)), before);
    let (status, out) = message(malee, "Thanks for your order, your parcel ships tomorrow");
    assert_eq!(status, 201, "{out}");
    // A customer of nobody's is not a distributor's message (the default scope).
    let (_, page) = json_call("GET", &api("/customers?filter=distributor%20is%20null&limit=1"), ADMIN, Value::Null);
    let nobodys =
        page["items"][0]["id"].as_u64().unwrap_or_else(|| panic!("a demo customer without a distributor: {page}"));
    let (status, out) = message(nobodys, "guaranteed income");
    assert_eq!(status, 201, "{out}");

    // Bee's only recruit, Cat, has left: a terminated recruit holds no one back, so Bee may leave.
    let (status, out) = json_call(
        "PUT",
        &api(&format!("/distributors/{bee}")),
        m,
        json!({"name": "Bee", "sponsor": root, "status": "terminated"}),
    );
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], "terminated", "{out}");

    // The head office (an admin or owner, `root_roles`) may add a root to the tree.
    let (status, out) = json_call("POST", &api("/distributors"), ADMIN, json!({"name": "Head office North"}));
    assert_eq!(status, 201, "{out}");
    assert_eq!(out["sponsor"], Value::Null, "{out}");
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn service_standard_sets_due_times_requires_resolutions_and_escalates_overdue_demo_tickets() {
    let s = demo_with("service-standard", built::SERVICE_STANDARD);
    let api = |path: &str| format!("{}/v1/orgs/demo{path}", s.url);
    let (status, out) = json_call(
        "PUT",
        &api("/plugins/service-standard/config"),
        ADMIN,
        json!({"sla": {"general": {"due_hours": 8, "due_minutes": 30}}}),
    );
    assert_eq!(status, 422, "one of due_hours and due_minutes: {out}");
    // The demo's customers have branches; the manager of one is named.
    let (_, page) = json_call("GET", &api("/customers?filter=tickets.open%20%3E%200&limit=1"), ADMIN, Value::Null);
    let overdue_customer = page["items"][0].clone();
    let branch =
        overdue_customer["branch"].as_str().unwrap_or_else(|| panic!("a demo customer with an open ticket: {page}"));
    let config = json!({"managers": {branch: {"branch-manager": "Khun Somchai"}}});
    let (status, out) = json_call("PUT", &api("/plugins/service-standard/config"), ADMIN, config);
    assert_eq!(status, 200, "{out}");

    let (status, c) = json_call("POST", &api("/customers"), ADMIN, json!({"name": "Napat Wong", "branch": branch}));
    assert_eq!(status, 201, "{c}");
    let customer = c["id"].as_u64().unwrap();
    let now = now_ms();
    let ticket = |occurred_at: i64, subject: &str, ticket: Value| {
        json_call(
            "POST",
            &api("/interactions"),
            ADMIN,
            json!({"customer": customer, "kind": "ticket", "channel": "phone", "source": "api", "occurred_at": occurred_at,
                   "subject": subject, "ticket": ticket}),
        )
    };

    // A new ticket gets its category from a keyword (Thai here) and the standard's due time.
    let (status, out) = ticket(now, "ลูกค้าขอคืนเงินค่าสินค้า", json!({"status": "open"}));
    assert_eq!(status, 201, "{out}");
    assert_eq!(out["ticket"]["category"], "billing", "{out}");
    assert_eq!(out["ticket"]["due_at"], now + 24 * HOUR, "{out}");
    assert_eq!(out["actions"], json!([]), "not overdue: {out}");
    let stored = timeline(&s, customer);
    assert_eq!(stored[0]["ticket"]["category"], "billing");
    assert_eq!(stored[0]["ticket"]["due_at"], now + 24 * HOUR);
    // English keywords match whole words: "prudent" holds "rude" but is no complaint.
    let (status, out) = ticket(now, "A prudent question about the warranty", json!({"status": "open"}));
    assert_eq!(status, 201, "{out}");
    assert_eq!(out["ticket"]["category"], "general", "{out}");

    // Closing without a resolution note, or an unknown category: denied, and nothing stored.
    let before = (timeline(&s, customer).len(), audit_len(&s));
    let closed = ticket(now, "Invoice question", json!({"status": "closed", "resolution": "  "}));
    assert_denied(&closed, "service-standard", "ticket.resolution", "a ticket closes only with a resolution note");
    let odd = ticket(now, "Something", json!({"status": "open", "category": "vibes"}));
    assert_denied(&odd, "service-standard", "ticket.category", "`vibes` is not in the service standard");
    assert_eq!((timeline(&s, customer).len(), audit_len(&s)), before);
    let (status, out) =
        ticket(now, "Invoice question", json!({"status": "closed", "resolution": "Explained the VAT line"}));
    assert_eq!(status, 201, "{out}");
    assert_eq!(out["ticket"]["resolution"], "Explained the VAT line", "{out}");

    // Logged three days late, a delivery ticket (48 h) is already overdue: one escalation task,
    // assigned to the branch's manager, lands on the timeline.
    let (status, out) = ticket(now - 72 * HOUR, "Parcel never arrived", json!({"status": "open"}));
    assert_eq!(status, 201, "{out}");
    let late = out["id"].as_u64().unwrap();
    assert_eq!(out["ticket"]["category"], "delivery", "{out}");
    assert_eq!(out["ticket"]["due_at"], now - 24 * HOUR, "{out}");
    let actions = out["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{out}");
    assert_eq!(actions[0]["action"], "open_task");
    assert_eq!(actions[0]["result"], "applied", "{out}");
    assert_eq!(actions[0]["assignee"], "Khun Somchai");
    let tasks = |customer: u64| -> Vec<Value> {
        timeline(&s, customer).into_iter().filter(|i| i["channel"] == "task").collect()
    };
    let escalated = tasks(customer);
    assert_eq!(escalated.len(), 1, "{escalated:?}");
    assert_eq!(escalated[0]["subject"], format!("Overdue ticket #{late}: Parcel never arrived"));
    assert_eq!(escalated[0]["attributes"]["assignee"], "Khun Somchai");
    assert_eq!(escalated[0]["ticket"]["category"], "escalation");
    assert_eq!(escalated[0]["ticket"]["status"], "open");
    // The next touch does not escalate the same ticket again.
    let call = |customer: u64| {
        json_call(
            "POST",
            &api("/interactions"),
            ADMIN,
            json!({"customer": customer, "kind": "call", "channel": "phone", "source": "api", "occurred_at": now_ms(), "body": "Called back"}),
        )
    };
    let (status, out) = call(customer);
    assert_eq!(status, 201, "{out}");
    assert_eq!(out["actions"], json!([]), "{out}");
    assert_eq!(tasks(customer).len(), 1);

    // The demo's generated history: a customer's open ticket from 2023 is escalated at their
    // next touch, once.
    let demo = overdue_customer["id"].as_u64().unwrap();
    assert!(tasks(demo).is_empty());
    let (status, out) = call(demo);
    assert_eq!(status, 201, "{out}");
    let escalated = tasks(demo);
    assert!(!escalated.is_empty(), "{out}");
    assert!(escalated.iter().all(|t| t["attributes"]["assignee"] == "Khun Somchai"), "{escalated:?}");
    let (_, out) = call(demo);
    assert_eq!(out["actions"], json!([]), "{out}");
    assert_eq!(tasks(demo).len(), escalated.len());

    // A configuration the schema accepts but the policy cannot apply: the write is refused (the
    // policy fails closed) with a message naming the setting to fix, and nothing is stored.
    let config = json!({"default_category": "misc"});
    let (status, out) = json_call("PUT", &api("/plugins/service-standard/config"), ADMIN, config);
    assert_eq!(status, 200, "{out}");
    let before = (timeline(&s, customer).len(), audit_len(&s));
    let (status, out) = ticket(now, "A question", json!({"status": "open"}));
    assert_eq!(status, 422, "{out}");
    let detail = out["detail"].as_str().unwrap();
    assert!(detail.contains("default_category `misc` is not a category of `sla`"), "{detail}");
    assert_eq!((timeline(&s, customer).len(), audit_len(&s)), before);
}
