//! Outbound webhooks end to end: a real `rapport serve` delivering to a receiver on loopback that
//! refuses the first delivery, and to an endpoint that is down.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rapport_test_plugins as built;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::server::{ADMIN, call, install_enabled, json_call, serve_with};

/// One request the receiver got, and what it answered.
#[derive(Clone, Debug)]
struct Received {
    status: u16,
    /// Lower-cased names.
    headers: HashMap<String, String>,
    body: String,
}

type Log = Arc<Mutex<Vec<Received>>>;

/// A minimal HTTP/1.1 receiver: answers 500 to the very first request, 200 to the rest.
fn receiver() -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/rapport", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some((headers, body)) = read_request(&stream) else { continue };
            let status = {
                let mut log = seen.lock().unwrap();
                let status = if log.is_empty() { 500 } else { 200 };
                log.push(Received { status, headers, body });
                status
            };
            let _ = write!(stream, "HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, log)
}

fn read_request(stream: &TcpStream) -> Option<(HashMap<String, String>, String)> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    assert!(line.starts_with("POST /hooks/rapport "), "{line}");
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let Some((name, value)) = line.trim_end().split_once(':') else { break };
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((headers, String::from_utf8(body).ok()?))
}

/// The events acknowledged (answered 200), once each, in the order they arrived.
fn delivered(log: &Log) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for r in log.lock().unwrap().iter().filter(|r| r.status == 200) {
        let v: Value = serde_json::from_str(&r.body).unwrap();
        if !seen.contains(&v["id"]) {
            seen.push(v["id"].clone());
            out.push(v);
        }
    }
    out
}

/// Poll until `done` holds for the acknowledged events; no timing is asserted, only a deadline.
fn wait_for(log: &Log, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let events = delivered(log);
        if done(&events) {
            return events;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "no {what} delivered; got {events:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn verify(secret: &str, r: &Received) {
    let signature = &r.headers["rapport-signature"];
    let (t, v1) = signature
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("malformed signature {signature}"));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", r.body).as_bytes());
    assert_eq!(hex::encode(mac.finalize().into_bytes()), v1, "bad signature on {}", r.body);
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(r.headers["rapport-event"], body["type"].as_str().unwrap());
    assert!(r.headers["rapport-delivery"].parse::<u64>().is_ok(), "{:?}", r.headers);
}

#[test]
fn webhooks_are_signed_retried_in_order_per_customer_and_forget_erased_people() {
    let (hook_url, log) = receiver();
    let dead_url = {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/down", closed.local_addr().unwrap())
    };
    let s = serve_with(&[("RAPPORT_WEBHOOK_RETRY_MS", "50")]);
    let api = |path: &str| format!("{}{path}", s.url);
    json_call("POST", &api("/v1/orgs"), ADMIN, json!({"slug": "shop", "name": "Shop"}));
    let (_, key) = json_call("POST", &api("/v1/orgs/shop/keys"), ADMIN, json!({"name": "boss", "role": "owner"}));
    let t = key["token"].as_str().unwrap().to_owned();
    let t = t.as_str();
    for (name, path) in [("contact", built::REQUIRE_CONTACT), ("rank", built::SPEND_RANK)] {
        install_enabled(&s, "shop", t, name, path);
    }

    // Registration checks what it is given, and names the field.
    let hooks = api("/v1/orgs/shop/webhooks");
    let (status, v) = json_call("POST", &hooks, t, json!({"url": "ftp://example.com/x", "events": ["job.finished"]}));
    assert_eq!((status, v["field"].clone()), (400, json!("url")), "{v}");
    let (status, v) =
        json_call("POST", &hooks, t, json!({"url": "http://example.com/x", "events": ["customer.deleted"]}));
    assert_eq!((status, v["field"].clone()), (400, json!("events")), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("customer.erased"), "the detail lists the kinds: {v}");

    let all = [
        "customer.created",
        "customer.updated",
        "customer.erased",
        "interaction.added",
        "policy.denied",
        "score.changed",
        "job.finished",
    ];
    let (status, hook) = json_call("POST", &hooks, t, json!({"url": hook_url, "events": all}));
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let (status, down) = json_call(
        "POST",
        &hooks,
        t,
        json!({"url": dead_url, "events": ["customer.created", "customer.updated", "customer.erased"]}),
    );
    assert_eq!(status, 201, "{down}");
    let (status, list) = json_call("GET", &hooks, t, Value::Null);
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    assert!(!list.to_string().contains(&secret) && list["items"][0].get("secret").is_none(), "{list}");

    // Writes: a customer (the policy lower-cases the email and tags them `new`), a rescore job,
    // an update, a purchase, an import, and a write the policy denies.
    let (status, c) =
        json_call("POST", &api("/v1/orgs/shop/customers"), t, json!({"name": "Mali", "email": "MALI@example.com"}));
    assert_eq!(status, 201, "{c}");
    let mali = c["id"].as_u64().unwrap();
    let (_, job) = json_call("POST", &api("/v1/orgs/shop/scores/rescore"), t, Value::Null);
    let job_url = api(&format!("/v1/orgs/shop/jobs/{}", job["id"]));
    let start = Instant::now();
    while json_call("GET", &job_url, t, Value::Null).1["state"] != "done" {
        assert!(start.elapsed() < Duration::from_secs(60), "the rescore job did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, out) = json_call(
        "PUT",
        &api(&format!("/v1/orgs/shop/customers/{mali}")),
        t,
        json!({"name": "Mali", "email": "mali@example.com", "phone": "+66812345678", "tags": ["new"]}),
    );
    assert_eq!(status, 200, "{out}");
    let (status, out) = json_call(
        "POST",
        &api("/v1/orgs/shop/interactions"),
        t,
        json!({"customer": mali, "kind": "purchase", "occurred_at": 1_700_000_000_000i64,
               "amount": {"amount_minor": 120000, "currency": "THB"}, "body": "paid by card ending 4242"}),
    );
    assert_eq!(status, 201, "{out}");
    let row = json!({"source": "pos", "external_id": "p-1", "name": "Anan", "email": "anan@example.com"});
    let (status, _, out) = call(
        "POST",
        &api("/v1/orgs/shop/import?kind=customers"),
        Some(t),
        "application/x-ndjson",
        format!("{row}\n").as_bytes(),
    );
    assert_eq!(status, 200, "{out}");
    let (status, v) = json_call("POST", &api("/v1/orgs/shop/customers"), t, json!({"name": "Nobody Reachable"}));
    assert_eq!(status, 422, "{v}");

    let of = |events: &[Value], kind: &str| events.iter().filter(|e| e["type"] == kind).cloned().collect::<Vec<_>>();
    let spend_changed = |e: &Value| e["customer"] == mali && e["changes"]["rank.spend"]["new"] == json!(1200.0);
    let events = wait_for(&log, "write events", |events| {
        !of(events, "policy.denied").is_empty()
            && !of(events, "job.finished").is_empty()
            && of(events, "score.changed").iter().any(spend_changed)
            && of(events, "customer.created").iter().any(|e| e["changes"]["name"]["new"] == "Anan")
    });

    // Every request is signed with the endpoint's secret; the first was refused and retried.
    let requests = log.lock().unwrap().clone();
    requests.iter().for_each(|r| verify(&secret, r));
    assert_eq!(requests[0].status, 500);
    let retried = &requests[0].headers["rapport-delivery"];
    assert!(requests[1..].iter().any(|r| &r.headers["rapport-delivery"] == retried && r.status == 200));

    // One customer's events arrive in the order they happened, with the fields they changed.
    let mine: Vec<&Value> = events.iter().filter(|e| e["customer"] == mali).collect();
    let ids: Vec<u64> = mine.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order: {mine:#?}");
    let kinds: Vec<&str> = mine.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let position = |kind: &str, field: &str| {
        mine.iter().position(|e| e["type"] == kind && e["changes"].get(field).is_some()).unwrap_or_else(|| {
            panic!("no {kind} changing {field} in {mine:#?}");
        })
    };
    let (created, tagged, phoned, bought) = (
        position("customer.created", "email"),
        position("customer.updated", "tags"),
        position("customer.updated", "phone"),
        position("interaction.added", "amount"),
    );
    assert!(created < tagged && tagged < phoned && phoned < bought, "{kinds:?}");
    assert_eq!(mine[created]["changes"]["email"], json!({"old": null, "new": "mali@example.com"}));
    assert_eq!(mine[tagged]["changes"]["tags"], json!({"old": [], "new": ["new"]}));
    assert_eq!(mine[phoned]["changes"], json!({"phone": {"old": null, "new": "+66812345678"}}));
    assert_eq!(mine[phoned]["org"], "shop");
    assert!(mine[phoned]["occurred_at"].is_i64());
    let spend = mine.iter().position(|e| spend_changed(e)).unwrap();
    assert!(spend > bought, "{kinds:?}");
    assert_ne!(mine[spend]["changes"]["rank.spend"]["old"], json!(1200.0));

    // A denial: who denied what and why, not the record.
    let denied = &of(&events, "policy.denied")[0];
    assert_eq!((denied["plugin"].clone(), denied["field"].clone()), (json!("contact"), json!("email")), "{denied}");
    assert!(denied["reason"].as_str().unwrap().contains("email or a phone"));
    assert!(denied["customer"].is_null() && !denied.to_string().contains("Nobody"), "{denied}");
    let job = &of(&events, "job.finished")[0];
    assert_eq!((job["kind"].clone(), job["state"].clone()), (json!("rescore"), json!("done")), "{job}");

    // The delivery log shows the refused attempt, then the success; the dead endpoint's, why.
    let (status, deliveries) =
        json_call("GET", &api(&format!("/v1/orgs/shop/webhooks/{}/deliveries", hook["id"])), t, Value::Null);
    assert_eq!(status, 200, "{deliveries}");
    let first =
        deliveries["items"].as_array().unwrap().iter().find(|d| d["id"].as_u64() == retried.parse().ok()).unwrap();
    assert_eq!((first["state"].clone(), first["attempts"].clone()), (json!("delivered"), json!(2)), "{first}");
    assert_eq!(first["last_status"], 200);
    assert!(first["last_error"].as_str().unwrap().contains("HTTP 500"), "{first}");
    let (_, stuck) =
        json_call("GET", &api(&format!("/v1/orgs/shop/webhooks/{}/deliveries", down["id"])), t, Value::Null);
    let stuck = stuck["items"].as_array().unwrap().clone();
    assert!(!stuck.is_empty());
    for d in &stuck {
        assert!(d["state"] == "queued" || d["state"] == "failed", "{d}");
        assert!(d["last_status"].is_null(), "{d}");
    }
    assert!(stuck.iter().any(|d| d["last_error"].as_str().is_some_and(|e| e.contains("cannot reach"))), "{stuck:?}");

    // Erasure: the event says who, nothing else; and no webhook table keeps her data, including
    // the events the dead endpoint has not received.
    let (status, _, _) = call("DELETE", &api(&format!("/v1/orgs/shop/customers/{mali}")), Some(t), "", b"");
    assert_eq!(status, 204);
    let events = wait_for(&log, "customer.erased", |events| !of(events, "customer.erased").is_empty());
    let erased = &of(&events, "customer.erased")[0];
    let mut fields: Vec<&str> = erased.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(fields, ["customer", "id", "occurred_at", "org", "type"], "{erased}");
    assert!(erased["id"].as_u64().unwrap() > *ids.last().unwrap());
    let db = rusqlite::Connection::open_with_flags(
        s.dir.path().join("rapport.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let dump: String = db
        .query_row(
            "SELECT group_concat(v.kind || ' ' || v.payload || ' ' || coalesce(d.last_error, ''), char(10)) \
             FROM webhook_events v LEFT JOIN webhook_deliveries d ON d.event_id = v.id",
            [],
            |r| r.get(0),
        )
        .unwrap();
    for personal in ["Mali", "mali@example.com", "+66812345678", "4242"] {
        assert!(!dump.contains(personal), "`{personal}` is still in the webhook tables:\n{dump}");
    }
    assert!(dump.contains("Anan"), "others' events are kept:\n{dump}");
    let unsent: Vec<String> = db
        .prepare(
            "SELECT v.payload FROM webhook_deliveries d JOIN webhook_events v ON v.id = d.event_id \
             WHERE d.endpoint_id = ?1 AND v.customer_id = ?2 AND v.kind = 'customer.created'",
        )
        .unwrap()
        .query_map([down["id"].as_i64().unwrap(), mali as i64], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(unsent.len(), 1);
    assert_eq!(serde_json::from_str::<Value>(&unsent[0]).unwrap(), json!({"customer": mali, "erased": true}));

    // Deleting an endpoint removes it and its log.
    let down_url = api(&format!("/v1/orgs/shop/webhooks/{}", down["id"]));
    assert_eq!(call("DELETE", &down_url, Some(t), "", b"").0, 204);
    assert_eq!(call("DELETE", &down_url, Some(t), "", b"").0, 404);
    assert_eq!(call("GET", &format!("{down_url}/deliveries"), Some(t), "", b"").0, 404);
    assert_eq!(json_call("GET", &hooks, t, Value::Null).1["items"].as_array().unwrap().len(), 1);
}
