//! The standard plugins (`plugins/<name>/`): `clv` (scorer) and `clv-fit` (reporter), `consent`
//! (policy) and `rfm` (scorer), in the runtime under the scorer's limits and end to end over HTTP.

use std::time::{Duration, Instant};

use clv_model::sim::{Purchase, simulate};
use clv_model::{BgNbd, DAY_MS, GammaGamma, parse_date};
use rapport::model::{Column, FeatureBatch};
use rapport::plugins::{Meter, World};
use rapport_test_plugins as built;
use serde_json::{Value, json};

use crate::server::{ADMIN, call, install_enabled, json_call, serve};
use crate::{ctx, load, runtime};

/// The paper's CDNOW estimates: the data's true parameters.
const BG: BgNbd = BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };
const GG: GammaGamma = GammaGamma { p: 6.25, q: 3.74, gamma: 15.44 };

/// Simulated purchases from 2023-01-01: a 12-week cohort observed for 78 weeks.
fn purchases(customers: usize, seed: u64) -> (Vec<Purchase>, i64, i64) {
    let start = parse_date("2023-01-01").unwrap();
    let end_day = 78 * 7 - 1;
    (simulate(&BG, &GG, customers, 12.0, end_day, seed), start, end_day)
}

/// A time between 09:00 and 19:00 of a simulated day (milliseconds), varied by `k`.
fn at(start_day: i64, day: i64, k: usize) -> i64 {
    (start_day + day) * DAY_MS + 9 * 3_600_000 + (k % 600) as i64 * 60_000
}

/// The features the host would compute for the clv scorer, in its order (days, first, last, spend).
fn features(purchases: &[Purchase], customers: usize, start: i64) -> FeatureBatch {
    let mut cols = [vec![0.0; customers], vec![f64::NAN; customers], vec![f64::NAN; customers], vec![0.0; customers]];
    let mut last_day = vec![i64::MIN; customers];
    for (k, p) in purchases.iter().enumerate() {
        let c = p.customer;
        let t = at(start, p.day, k) as f64;
        if last_day[c] != p.day {
            cols[0][c] += 1.0;
            last_day[c] = p.day;
        }
        cols[1][c] = cols[1][c].min(t);
        cols[2][c] = cols[2][c].max(t);
        cols[3][c] += (p.value * 100.0).round();
    }
    let names = ["days", "first_at", "last_at", "spend"];
    FeatureBatch {
        ids: (1..=customers as u64).collect(),
        now: 1_800_000_000_000,
        columns: names.iter().zip(cols).map(|(n, values)| Column { name: (*n).into(), values }).collect(),
    }
}

#[test]
fn clv_fits_a_hundred_thousand_customers_within_the_scorer_limits() {
    let n = 100_000;
    let (purchases, start, end_day) = purchases(n, 2026);
    let population = features(&purchases, n, start);
    let rt = runtime(Meter::Epoch);
    let plugin = load(&rt, built::CLV);
    let ctx = ctx(World::Scorer, json!({}));
    let mut session = plugin.session(&ctx);
    let spec = session.describe().unwrap().value;
    assert!(spec.needs_fit);
    let sample: FeatureBatch = FeatureBatch {
        ids: population.ids[..2_000].to_vec(),
        now: population.now,
        columns: population
            .columns
            .iter()
            .map(|c| Column { name: c.name.clone(), values: c.values[..2_000].to_vec() })
            .collect(),
    };
    let fitted = session.fit(population).unwrap_or_else(|e| panic!("fit failed: {e}"));
    let limit = rapport::plugins::Limits::for_world(World::Scorer);
    eprintln!(
        "clv fit on {n} customers: {:.2} s (limit {:?}), peak memory {} MiB; {:?}",
        fitted.trace.duration_us as f64 / 1e6,
        limit.cpu_time,
        fitted.trace.peak_memory_bytes >> 20,
        fitted.trace.logs
    );
    let model = clv_model::Model::decode(&fitted.value).expect("a clv model");
    assert_eq!(model.end_day, start + end_day, "the default calibration end is the newest purchase's day");
    let (bg, gg) = (model.bgnbd, model.gamma_gamma.unwrap());
    for (name, got, want) in [
        ("r", bg.r, BG.r),
        ("alpha", bg.alpha, BG.alpha),
        ("a", bg.a, BG.a),
        ("b", bg.b, BG.b),
        ("p", gg.p, GG.p),
        ("q", gg.q, GG.q),
        ("gamma", gg.gamma, GG.gamma),
    ] {
        assert!((got - want).abs() / want < 0.10, "{name}: fitted {got}, true {want}");
    }

    let scored = session.score(sample, &fitted.value).unwrap().value;
    let column = |name: &str| &scored.scores.iter().find(|c| c.name == name).unwrap().values;
    for (i, ((p, e), v)) in
        column("p_alive").iter().zip(column("expected_purchases")).zip(column("expected_value")).enumerate()
    {
        assert!((0.0..=1.0).contains(p), "customer {i}: p_alive {p}");
        assert!(*e >= 0.0 && e.is_finite(), "customer {i}: expected purchases {e}");
        assert!(*v > 0.0 && v.is_finite(), "customer {i}: expected value {v}");
    }
}

#[test]
fn clv_and_clv_fit_run_in_an_organization() {
    let s = serve();
    let api = |path: &str| format!("{}{path}", s.url);
    let (status, org) = json_call("POST", &api("/v1/orgs"), ADMIN, json!({"slug": "shop", "name": "Shop"}));
    assert_eq!(status, 201, "{org}");
    let (_, key) = json_call("POST", &api("/v1/orgs/shop/keys"), ADMIN, json!({"name": "ops", "role": "owner"}));
    let token = key["token"].as_str().unwrap().to_owned();
    let t = token.as_str();

    // Customers and their purchases, with several purchases on some days.
    let n = 3_000;
    let (purchases, start, end_day) = purchases(n, 7);
    let customers: String = (0..n)
        .map(|c| {
            json!({"source": "shop", "external_id": format!("c-{c}"), "name": format!("Customer {c}")}).to_string()
                + "\n"
        })
        .collect();
    let mut orders = String::new();
    for (k, p) in purchases.iter().enumerate() {
        let record = |id: String, minor: i64| {
            json!({"source": "shop", "external_id": id, "customer": {"source": "shop", "external_id": format!("c-{}", p.customer)},
                   "kind": "purchase", "channel": "web", "occurred_at": at(start, p.day, k), "amount_minor": minor, "currency": "USD"})
            .to_string()
                + "\n"
        };
        let minor = (p.value * 100.0).round() as i64;
        if k % 10 == 0 {
            // The same transaction as two orders on one day: still one transaction.
            orders += &record(format!("o-{k}-a"), minor / 2);
            orders += &record(format!("o-{k}-b"), minor - minor / 2);
        } else {
            orders += &record(format!("o-{k}"), minor);
        }
    }
    for (kind, body) in [("customers", customers), ("interactions", orders)] {
        let (status, _, out) = call(
            "POST",
            &api(&format!("/v1/orgs/shop/import?kind={kind}")),
            Some(t),
            "application/x-ndjson",
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{out}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["rejected"], json!([]), "{report}");
    }

    for (name, path) in [("clv", built::CLV), ("clv-fit", built::CLV_FIT)] {
        install_enabled(&s, "shop", t, name, path);
    }
    // The schema shipped in the component refuses a bad configuration.
    let (status, out) = json_call("PUT", &api("/v1/orgs/shop/plugins/clv/config"), t, json!({"horizon_weeks": -1}));
    assert_eq!(status, 422, "{out}");
    let (status, out) = json_call("PUT", &api("/v1/orgs/shop/plugins/clv/config"), t, json!({"horizon_weeks": 52}));
    assert_eq!(status, 200, "{out}");

    let (status, job) = json_call("POST", &api("/v1/orgs/shop/scores/rescore"), t, Value::Null);
    assert!(status == 201 || status == 202, "{job}");
    let job_url = api(&format!("/v1/orgs/shop/jobs/{}", job["id"]));
    let started = Instant::now();
    loop {
        let (_, job) = json_call("GET", &job_url, t, Value::Null);
        if job["state"] == "done" {
            assert_eq!(job["done"], n);
            break;
        }
        assert_ne!(job["state"], "failed", "{job}");
        assert!(started.elapsed() < Duration::from_secs(120), "the job did not finish: {job}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Every customer has scores in range; c-0's summary is its history.
    for c in [0, 1, 2, 100, 2_999] {
        let (_, page) =
            json_call("GET", &api(&format!("/v1/orgs/shop/customers?source=shop&external_id=c-{c}")), t, Value::Null);
        let id = page["items"][0]["id"].as_u64().unwrap();
        let (status, profile) = json_call("GET", &api(&format!("/v1/orgs/shop/customers/{id}")), t, Value::Null);
        assert_eq!(status, 200);
        let score = |name: &str| {
            profile["scores"][format!("clv.{name}")].as_f64().unwrap_or_else(|| panic!("no clv.{name}: {profile}"))
        };
        assert!((0.0..=1.0).contains(&score("p_alive")), "{profile}");
        assert!(score("expected_purchases") >= 0.0, "{profile}");
        assert!(score("expected_value") > 0.0, "{profile}");
        let mine: Vec<&Purchase> = purchases.iter().filter(|p| p.customer == c).collect();
        let mut days: Vec<i64> = mine.iter().map(|p| p.day).collect();
        days.dedup();
        assert_eq!(score("frequency"), (days.len() - 1) as f64, "{profile}");
        assert_eq!(score("age_weeks"), (end_day - days[0]) as f64 / 7.0, "{profile}");
        assert_eq!(score("recency_weeks"), (days[days.len() - 1] - days[0]) as f64 / 7.0, "{profile}");
    }

    // A new purchase rescores its customer at once with the job's model: one more transaction,
    // 30 days after the calibration end.
    let (_, page) = json_call("GET", &api("/v1/orgs/shop/customers?source=shop&external_id=c-0"), t, Value::Null);
    let id = page["items"][0]["id"].as_u64().unwrap();
    let (_, before) = json_call("GET", &api(&format!("/v1/orgs/shop/customers/{id}")), t, Value::Null);
    let (status, out) = json_call(
        "POST",
        &api("/v1/orgs/shop/interactions"),
        t,
        json!({"customer": id, "kind": "purchase", "channel": "store", "source": "pos", "external_id": "late-1",
               "occurred_at": at(start, end_day + 30, 0), "amount": {"amount_minor": 5000, "currency": "USD"}}),
    );
    assert_eq!(status, 201, "{out}");
    let (_, after) = json_call("GET", &api(&format!("/v1/orgs/shop/customers/{id}")), t, Value::Null);
    let f = |p: &Value, name: &str| p["scores"][format!("clv.{name}")].as_f64().unwrap();
    assert_eq!(f(&after, "frequency"), f(&before, "frequency") + 1.0, "{after}");
    // Scored as of the newest purchase (T = t_x): as alive as a customer with x repeat
    // purchases can be, more than before (c-0 had a repeat purchase already).
    assert!(f(&before, "frequency") >= 1.0, "{before}");
    assert_eq!(f(&after, "age_weeks"), f(&after, "recency_weeks"), "{after}");
    assert!(f(&after, "p_alive") > f(&before, "p_alive"), "{before} {after}");

    let (status, report) = json_call("POST", &api("/v1/orgs/shop/reports/clv-fit/run"), t, json!({}));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["columns"], json!([{"name": "parameter", "type": "text"}, {"name": "value", "type": "number"}]));
    let value = |name: &str| {
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no {name}: {report}"))[1]
            .as_f64()
            .unwrap()
    };
    assert_eq!(value("customers_bgnbd"), n as f64);
    assert_eq!(value("customers_gamma_gamma"), n as f64);
    assert!(value("log_likelihood_bgnbd") < 0.0 && value("log_likelihood_gamma_gamma") < 0.0, "{report}");
    // 3 000 customers pin the parameters down loosely; the recovery tests of `clv-model` are
    // the precise ones.
    for (name, truth) in
        [("r", BG.r), ("alpha", BG.alpha), ("a", BG.a), ("b", BG.b), ("p", GG.p), ("q", GG.q), ("gamma", GG.gamma)]
    {
        let got = value(name);
        assert!((got - truth).abs() / truth < 0.5, "{name}: fitted {got}, true {truth}: {report}");
    }
}

#[test]
fn clv_scores_with_configured_parameters_and_no_fit() {
    let rt = runtime(Meter::Fuel);
    let plugin = load(&rt, built::CLV);
    let config = json!({
        "calibration_end": "2023-10-01",
        "horizon_weeks": 39,
        "params": {"r": BG.r, "alpha": BG.alpha, "a": BG.a, "b": BG.b, "p": GG.p, "q": GG.q, "gamma": GG.gamma},
    });
    let ctx = ctx(World::Scorer, config);
    let mut session = plugin.session(&ctx);
    let spec = session.describe().unwrap().value;
    assert!(!spec.needs_fit, "both models are given");
    let end = parse_date("2023-10-01").unwrap();
    assert!(spec.features.iter().all(|f| f.until == Some((end + 1) * DAY_MS - 1)), "{:?}", spec.features);

    // The paper's worked example in whole days: x = 2, t_x = 213 days, T = 272 days; 3 purchase
    // days worth 61.50 in all. And a customer who has not bought yet.
    let first = end - 272;
    let batch = FeatureBatch {
        ids: vec![1, 2],
        now: 1_800_000_000_000,
        columns: vec![
            Column { name: "days".into(), values: vec![3.0, 0.0] },
            Column { name: "first_at".into(), values: vec![(first * DAY_MS + 1) as f64, f64::NAN] },
            Column { name: "last_at".into(), values: vec![((first + 213) * DAY_MS + 5) as f64, f64::NAN] },
            Column { name: "spend".into(), values: vec![6_150.0, 0.0] },
        ],
    };
    let out = session.score(batch, &[]).unwrap().value;
    let score = |name: &str| out.scores.iter().find(|c| c.name == name).unwrap().values.clone();
    let (t_x, t) = (213.0 / 7.0, 272.0 / 7.0);
    assert_eq!(score("p_alive")[0], BG.p_alive(2.0, t_x, t));
    assert!((score("p_alive")[0] - 0.7266).abs() < 1e-3);
    assert_eq!(score("expected_purchases")[0], BG.conditional_expected_purchases(39.0, 2.0, t_x, t));
    assert!((score("expected_purchases")[0] - 1.226).abs() < 2e-3);
    assert_eq!(score("expected_value")[0], GG.conditional_expected_value(3.0, 20.5));
    // The lifetime value over the 39 weeks: ≈ 1.226 purchases of ≈ 22.38 each.
    assert_eq!(
        score("value")[0],
        BG.conditional_expected_purchases(39.0, 2.0, t_x, t) * GG.conditional_expected_value(3.0, 20.5)
    );
    assert!((score("value")[0] - 27.4).abs() < 0.1, "{}", score("value")[0]);
    assert_eq!((score("frequency")[0], score("mean_value")[0]), (2.0, 20.5));
    for name in ["p_alive", "expected_purchases", "expected_value", "value", "frequency"] {
        assert!(score(name)[1].is_nan(), "no purchases, no {name}");
    }
}

/// A new organization with an owner's key and these standard plugins installed and enabled:
/// the server's base URL joined with `path`, and the key.
fn org_with(s: &crate::server::Server, slug: &str, plugins: &[(&str, &str)]) -> String {
    let api = |path: &str| format!("{}{path}", s.url);
    let (status, org) = json_call("POST", &api("/v1/orgs"), ADMIN, json!({"slug": slug, "name": slug}));
    assert_eq!(status, 201, "{org}");
    let (_, key) =
        json_call("POST", &api(&format!("/v1/orgs/{slug}/keys")), ADMIN, json!({"name": "ops", "role": "owner"}));
    let token = key["token"].as_str().unwrap().to_owned();
    for (name, path) in plugins {
        install_enabled(s, slug, &token, name, path);
    }
    token
}

#[test]
fn consent_denies_marketing_without_a_valid_consent_and_allows_service() {
    let s = serve();
    let api = |path: &str| format!("{}/v1/orgs/clinic{path}", s.url);
    let token = org_with(&s, "clinic", &[("consent", built::CONSENT)]);
    let t = token.as_str();
    // The schema shipped in the component refuses an unknown lawful basis, naming the field.
    let (status, out) =
        json_call("PUT", &api("/plugins/consent/config"), t, json!({"purposes": {"marketing": ["maybe"]}}));
    assert_eq!(status, 422, "{out}");
    let config = json!({"marketing_channels": ["sms"], "marketing_tags": {"newsletter": "email"}});
    let (status, out) = json_call("PUT", &api("/plugins/consent/config"), t, config);
    assert_eq!(status, 200, "{out}");

    let person = json!({"name": "Somchai Jaidee", "email": "somchai@example.com", "phone": "+66812345678"});
    let (status, customer) = json_call("POST", &api("/customers"), t, person.clone());
    assert_eq!(status, 201, "{customer}");
    let id = customer["id"].as_u64().unwrap();
    let now = 1_760_000_000_000_i64;
    let touch = |kind: &str, channel: &str, attributes: Value| {
        json_call(
            "POST",
            &api("/interactions"),
            t,
            json!({"customer": id, "kind": kind, "channel": channel, "source": "api", "occurred_at": now,
                   "subject": format!("{kind} on {channel}"), "attributes": attributes}),
        )
    };
    let timeline = || {
        let (status, page) = json_call("GET", &api(&format!("/customers/{id}/timeline")), t, Value::Null);
        assert_eq!(status, 200, "{page}");
        page["items"].as_array().unwrap().iter().map(|i| i["subject"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let marketing = json!({"purpose": "marketing"});

    // No consent: a marketing email is denied with a reason naming the purpose and the channel,
    // and nothing lands.
    let (status, out) = touch("email", "email", marketing.clone());
    assert_eq!(status, 422, "{out}");
    assert_eq!(out["field"], "consents", "{out}");
    let detail = out["detail"].as_str().unwrap();
    assert!(detail.contains("denied by policy `consent`"), "{detail}");
    assert!(detail.contains("no consent for marketing on channel email"), "{detail}");
    // A configured marketing channel is marketing without saying so.
    let (status, out) = touch("chat", "sms", json!({}));
    assert_eq!(status, 422, "{out}");
    assert!(out["detail"].as_str().unwrap().contains("marketing on channel sms"), "{out}");
    assert_eq!(timeline(), Vec::<String>::new());

    // A service call (no marketing purpose) needs no consent.
    let (status, out) = touch("call", "phone", json!({}));
    assert_eq!(status, 201, "{out}");

    // With a consent for marketing by email, the email lands (and SMS is still denied).
    let consent = json!({"purpose": "marketing", "channel": "email", "basis": "consent", "given_at": now - 86_400_000,
                         "source": "web-form"});
    let mut update = person.clone();
    update["consents"] = json!([consent]);
    let (status, out) = json_call("PUT", &api(&format!("/customers/{id}")), t, update.clone());
    assert_eq!(status, 200, "{out}");
    let (status, out) = touch("email", "email", marketing.clone());
    assert_eq!(status, 201, "{out}");
    let (status, _) = touch("chat", "sms", json!({}));
    assert_eq!(status, 422);
    // A marketing tag needs the consent of its channel: email is consented.
    let mut tagged = update.clone();
    tagged["tags"] = json!(["newsletter"]);
    let (status, out) = json_call("PUT", &api(&format!("/customers/{id}")), t, tagged);
    assert_eq!(status, 200, "{out}");

    // Withdrawal blocks at once.
    let mut withdrawn = consent.clone();
    withdrawn["withdrawn_at"] = json!(now - 3_600_000);
    update["consents"] = json!([withdrawn]);
    let (status, out) = json_call("PUT", &api(&format!("/customers/{id}")), t, update.clone());
    assert_eq!(status, 200, "{out}");
    let (status, out) = touch("email", "email", marketing.clone());
    assert_eq!(status, 422, "{out}");
    assert!(out["detail"].as_str().unwrap().contains("withdrew their consent for marketing"), "{out}");
    // Re-adding the newsletter tag is denied now (the update above dropped it).
    let mut tagged = update.clone();
    tagged["tags"] = json!(["newsletter"]);
    let (status, out) = json_call("PUT", &api(&format!("/customers/{id}")), t, tagged);
    assert_eq!(status, 422, "{out}");
    assert!(out["detail"].as_str().unwrap().contains("tag `newsletter`"), "{out}");
    // A consent on a basis not accepted for marketing permits nothing; for service it does.
    update["consents"] = json!([{"purpose": "marketing", "basis": "legitimate-interest", "given_at": now, "source": "crm"},
                                {"purpose": "service", "basis": "contract", "given_at": now, "source": "crm"}]);
    let (status, out) = json_call("PUT", &api(&format!("/customers/{id}")), t, update);
    assert_eq!(status, 200, "{out}");
    let (status, out) = touch("email", "email", marketing);
    assert_eq!(status, 422, "{out}");
    assert!(out["detail"].as_str().unwrap().contains("rests on legitimate-interest"), "{out}");
    let (status, out) = touch("call", "phone", json!({"purpose": "service"}));
    assert_eq!(status, 201, "{out}");

    let mut landed = timeline();
    landed.sort();
    assert_eq!(landed, ["call on phone", "call on phone", "email on email"]);
}

#[test]
fn rfm_scores_quintiles_and_segments_an_organization() {
    let s = serve();
    let api = |path: &str| format!("{}/v1/orgs/shop{path}", s.url);
    let token = org_with(&s, "shop", &[("rfm", built::RFM)]);
    let t = token.as_str();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;

    // c-k (k < 100) bought 1 + k/10 times, each worth 10.00 + k, the last 100 - k days ago: c-99
    // is the best on all three. `dormant` bought once, small, two years ago; `whale` bought often
    // and big, but not for over a year; `browser` never bought.
    let mut customers = String::new();
    let mut orders = String::new();
    let mut order = |customer: &str, n: usize, days_ago: i64, minor: i64| {
        for j in 0..n {
            let at = now - (days_ago + 7 * j as i64) * DAY_MS - 3_600_000;
            orders += &(json!({"source": "shop", "external_id": format!("{customer}-{j}"),
                              "customer": {"source": "shop", "external_id": customer}, "kind": "purchase",
                              "channel": "web", "occurred_at": at, "amount_minor": minor, "currency": "THB"})
            .to_string()
                + "\n");
        }
    };
    for k in 0..100 {
        order(&format!("c-{k}"), 1 + k / 10, 100 - k as i64, 1_000 + 100 * k as i64);
    }
    order("dormant", 1, 730, 500);
    order("whale", 20, 400, 50_000);
    let names: Vec<String> =
        (0..100).map(|k| format!("c-{k}")).chain(["dormant", "whale", "browser"].map(String::from)).collect();
    for name in &names {
        customers += &(json!({"source": "shop", "external_id": name, "name": name}).to_string() + "\n");
    }
    for (kind, body) in [("customers", customers), ("interactions", orders)] {
        let (status, _, out) =
            call("POST", &api(&format!("/import?kind={kind}")), Some(t), "application/x-ndjson", body.as_bytes());
        assert_eq!(status, 200, "{out}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["rejected"], json!([]), "{report}");
    }

    let (status, job) = json_call("POST", &api("/scores/rescore"), t, Value::Null);
    assert!(status == 201 || status == 202, "{job}");
    let started = Instant::now();
    loop {
        let (_, job) = json_call("GET", &api(&format!("/jobs/{}", job["id"])), t, Value::Null);
        if job["state"] == "done" {
            assert_eq!(job["done"], names.len(), "{job}");
            break;
        }
        assert_ne!(job["state"], "failed", "{job}");
        assert!(started.elapsed() < Duration::from_secs(60), "the job did not finish: {job}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let profile = |name: &str| {
        let (_, page) = json_call("GET", &api(&format!("/customers?source=shop&external_id={name}")), t, Value::Null);
        let id = page["items"][0]["id"].as_u64().unwrap_or_else(|| panic!("no {name}: {page}"));
        let (status, profile) = json_call("GET", &api(&format!("/customers/{id}")), t, Value::Null);
        assert_eq!(status, 200, "{profile}");
        profile
    };
    let rfm = |p: &Value| {
        let score = |n: &str| p["scores"][format!("rfm.{n}")].as_f64().unwrap_or_else(|| panic!("no rfm.{n}: {p}"));
        let (r, f, m) = (score("r"), score("f"), score("m"));
        assert_eq!(score("score"), r * 100.0 + f * 10.0 + m, "{p}");
        (r, f, m, p["labels"]["rfm.segment"].as_str().unwrap_or_else(|| panic!("no segment: {p}")).to_owned())
    };

    let best = profile("c-99");
    assert_eq!(rfm(&best), (5.0, 5.0, 5.0, "champions".to_owned()), "{best}");
    assert_eq!(best["scores"]["rfm.frequency"], json!(10.0));
    assert_eq!(best["scores"]["rfm.monetary"], json!(10.0 * 109.0));
    assert_eq!(best["scores"]["rfm.recency_days"], json!(1.0));
    let dormant = profile("dormant");
    assert_eq!(rfm(&dormant), (1.0, 1.0, 1.0, "lost".to_owned()), "{dormant}");
    assert_eq!(dormant["scores"]["rfm.recency_days"], json!(730.0));
    let whale = profile("whale");
    assert_eq!(rfm(&whale), (1.0, 5.0, 5.0, "cant-lose-them".to_owned()), "{whale}");
    // Every score is a quintile and every buyer has a segment.
    for k in (0..100).step_by(7) {
        let (r, f, m, segment) = rfm(&profile(&format!("c-{k}")));
        assert!([r, f, m].iter().all(|q| (1.0..=5.0).contains(q)), "c-{k}: {r} {f} {m}");
        assert_ne!(segment, "no-purchases");
    }
    // Each recency quintile holds a fifth of the buyers (their last purchases are on distinct days):
    // a sample of every fifth customer finds each quintile about equally often.
    let recent = (0..100).filter(|k| k % 5 == 0).map(|k| rfm(&profile(&format!("c-{k}"))).0 as usize);
    let mut per_quintile = [0; 5];
    recent.for_each(|r| per_quintile[r - 1] += 1);
    assert!(per_quintile.iter().all(|&n| n >= 3), "{per_quintile:?}");
    // The label and the combined score work in the filter language.
    let filter = |f: &str| {
        let url = format!("{}?filter={}&limit=500", api("/customers"), f.replace(' ', "%20").replace('"', "%22"));
        let (status, page) = json_call("GET", &url, t, Value::Null);
        assert_eq!(status, 200, "{page}");
        let mut names: Vec<String> =
            page["items"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect();
        names.sort();
        names
    };
    assert_eq!(filter(r#"label.rfm.segment = "cant-lose-them""#), ["whale"]);
    assert!(filter(r#"label.rfm.segment = "champions""#).contains(&"c-99".to_owned()));
    // The bottom fifth on all three: `dormant` and c-0 to c-18 (the 20th-percentile cuts are c-18's
    // last purchase, two purchases and c-19's spend).
    let bottom = filter("score.rfm.score = 111");
    assert_eq!(bottom.len(), 20, "{bottom:?}");
    assert!(bottom.contains(&"dormant".to_owned()) && bottom.contains(&"c-18".to_owned()), "{bottom:?}");
    // No purchases: no scores, and a segment that says so.
    let browser = profile("browser");
    assert!(browser["scores"].get("rfm.r").is_none(), "{browser}");
    assert_eq!(browser["labels"]["rfm.segment"], "no-purchases", "{browser}");
    assert!(best.get("explanations").is_none(), "no explanation text unless asked: {best}");

    // Asked for, explanations reach the profile and the scores route.
    let (status, out) = json_call("PUT", &api("/plugins/rfm/config"), t, json!({"explain": true}));
    assert_eq!(status, 200, "{out}");
    let (status, job) = json_call("POST", &api("/scores/rescore"), t, Value::Null);
    assert_eq!(status, 202, "{job}");
    let started = Instant::now();
    while json_call("GET", &api(&format!("/jobs/{}", job["id"])), t, Value::Null).1["state"] != "done" {
        assert!(started.elapsed() < Duration::from_secs(60), "the job did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    let best = profile("c-99");
    let why = best["explanations"]["rfm.segment"].as_str().unwrap_or_else(|| panic!("no explanation: {best}"));
    assert!(!why.is_empty());
    let id = best["id"].as_u64().unwrap();
    let (_, scores) = json_call("GET", &api(&format!("/customers/{id}/scores")), t, Value::Null);
    assert_eq!(scores["explanations"]["rfm.segment"].as_str(), Some(why), "{scores}");
}

#[test]
fn rfm_explains_each_score_when_asked() {
    let rt = runtime(Meter::Fuel);
    let plugin = load(&rt, built::RFM);
    let ctx = ctx(World::Scorer, json!({"explain": true}));
    let mut session = plugin.session(&ctx);
    let spec = session.describe().unwrap().value;
    assert!(spec.needs_fit);
    assert_eq!(spec.labels, ["segment"]);
    let now = 1_800_000_000_000_i64;
    // Five buyers, one better on each dimension than the last, and one who never bought.
    let batch = FeatureBatch {
        ids: (1..=6).collect(),
        now,
        columns: vec![
            Column {
                name: "last_at".into(),
                values: (0..5).map(|k| (now - (50 - 10 * k) * DAY_MS) as f64).chain([f64::NAN]).collect(),
            },
            Column { name: "purchases".into(), values: vec![1.0, 2.0, 3.0, 4.0, 5.0, 0.0] },
            Column { name: "spend".into(), values: vec![1_000.0, 2_000.0, 3_000.0, 4_000.0, 5_000.0, 0.0] },
        ],
    };
    let model = session.fit(batch.clone()).unwrap_or_else(|e| panic!("fit failed: {e}")).value;
    let out = session.score(batch, &model).unwrap_or_else(|e| panic!("score failed: {e}")).value;
    let score = |name: &str| out.scores.iter().find(|c| c.name == name).unwrap().values.clone();
    assert_eq!(score("r")[..5], [1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(score("score")[4], 555.0);
    assert!(score("score")[5].is_nan());
    let explanation = |name: &str| {
        out.explanations
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no explanation of {name}"))
            .values
            .clone()
    };
    assert_eq!(explanation("r")[4], "last purchase 10 days ago: recency quintile 5 of 5");
    assert_eq!(explanation("f")[0], "1 purchase: frequency quintile 1 of 5");
    assert_eq!(explanation("m")[4], "spent 50.00: monetary quintile 5 of 5");
    assert_eq!(explanation("score")[4], "R 5, F 5, M 5: 555");
    assert!(explanation("segment")[4].starts_with("champions: R 5, FM 5"), "{:?}", explanation("segment"));
    assert!(explanation("segment")[5].starts_with("no-purchases"));
    let segments = &out.labels[0];
    assert_eq!(segments.get(4), "champions");
    assert_eq!(segments.get(0), "lost");
}
