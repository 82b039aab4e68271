//! The standard plugins (`plugins/<name>/`): `clv` (scorer) and `clv-fit` (reporter), `consent`
//! (policy) and `rfm` (scorer), in the runtime under the scorer's limits and end to end over HTTP.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clv_model::sim::{Purchase, simulate};
use clv_model::{BgNbd, DAY_MS, GammaGamma, parse_date};
use rapport::model::{
    AggregateQuery, AggregateResult, Column, Customer, CustomerPage, Distributor, DownlineMember, FeatureBatch, Id,
    Interaction, Timestamp,
};
use rapport::plugins::{CallContext, DataError, DataSource, Empty, Limits, Meter, World};
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

/// The simulated purchases as the store holds them, for the clv scorer's timeline reads (the
/// first purchase day's spend): customer `c` is id `c + 1`, as in [`features`]. A map per customer,
/// not a `Fixture`, whose timeline scans every interaction per call.
struct Timelines(HashMap<Id, Vec<Interaction>>);

impl Timelines {
    fn new(purchases: &[Purchase], start: i64) -> Timelines {
        let mut map: HashMap<Id, Vec<Interaction>> = HashMap::new();
        for (k, p) in purchases.iter().enumerate() {
            let i: Interaction = serde_json::from_value(json!({
                "id": k + 1, "customer": p.customer + 1, "kind": "purchase", "occurred_at": at(start, p.day, k),
                "amount": {"amount_minor": (p.value * 100.0).round() as i64, "currency": "USD"},
            }))
            .unwrap();
            map.entry(i.customer).or_default().push(i);
        }
        for items in map.values_mut() {
            items.sort_by(|a, b| b.occurred_at.cmp(&a.occurred_at).then(b.id.cmp(&a.id)));
        }
        Timelines(map)
    }
}

impl DataSource for Timelines {
    fn customer(&self, id: Id) -> Result<Option<Customer>, DataError> {
        Empty.customer(id)
    }
    fn find_customer(&self, source: &str, external_id: &str) -> Result<Option<Customer>, DataError> {
        Empty.find_customer(source, external_id)
    }
    fn timeline(&self, customer: Id, before: Option<Timestamp>, limit: u32) -> Result<Vec<Interaction>, DataError> {
        let items = self.0.get(&customer).map(Vec::as_slice).unwrap_or_default();
        Ok(items.iter().filter(|i| before.is_none_or(|b| i.occurred_at < b)).take(limit as usize).cloned().collect())
    }
    fn query_customers(&self, f: &str, c: Option<&str>, limit: u32) -> Result<Result<CustomerPage, String>, DataError> {
        Empty.query_customers(f, c, limit)
    }
    fn distributor(&self, id: Id) -> Result<Option<Distributor>, DataError> {
        Empty.distributor(id)
    }
    fn downline(&self, distributor: Id, max_depth: u32) -> Result<Vec<DownlineMember>, DataError> {
        Empty.downline(distributor, max_depth)
    }
    fn aggregate(&self, query: &AggregateQuery) -> Result<Result<AggregateResult, String>, DataError> {
        Empty.aggregate(query)
    }
}

#[test]
fn clv_fits_a_hundred_thousand_customers_within_the_scorer_limits() {
    let n = 100_000;
    let (purchases, start, end_day) = purchases(n, 2026);
    let population = features(&purchases, n, start);
    let rt = runtime(Meter::Epoch);
    let plugin = load(&rt, built::CLV);
    let data = Arc::new(Timelines::new(&purchases, start));
    let ctx = CallContext::new(data, &json!({}), Limits::for_world(World::Scorer));
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
    let limit = Limits::for_world(World::Scorer);
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
    // The Gamma-Gamma fit reads the first purchase day of at most 9 000 repeat customers (one
    // host call each, inside the 10 000 of a call) and this population has about 50 000: its
    // sampling error is that of 9 000 customers, hence the wider tolerance.
    assert!(
        fitted.trace.logs.iter().any(|l| l.message.contains("a sample of 9000 repeat customers")),
        "{:?}",
        fitted.trace.logs
    );
    for (name, got, want, tolerance) in [
        ("r", bg.r, BG.r, 0.10),
        ("alpha", bg.alpha, BG.alpha, 0.10),
        ("a", bg.a, BG.a, 0.10),
        ("b", bg.b, BG.b, 0.10),
        ("p", gg.p, GG.p, 0.20),
        ("q", gg.q, GG.q, 0.20),
        ("gamma", gg.gamma, GG.gamma, 0.20),
    ] {
        assert!((got - want).abs() / want < tolerance, "{name}: fitted {got}, true {want}");
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
    // The Gamma-Gamma model is fitted on the customers with a repeat purchase day, as published.
    let mut days_of: HashMap<usize, Vec<i64>> = HashMap::new();
    for p in &purchases {
        days_of.entry(p.customer).or_default().push(p.day);
    }
    let repeat = days_of
        .values_mut()
        .map(|d| {
            d.dedup();
            d.len()
        })
        .filter(|&days| days > 1)
        .count();
    assert!(repeat > n / 4 && repeat < n, "{repeat}");
    assert_eq!(value("customers_bgnbd"), n as f64);
    assert_eq!(value("customers_gamma_gamma"), repeat as f64);
    assert_eq!(value("customers_repeat"), repeat as f64);
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
    let end = parse_date("2023-10-01").unwrap();
    let first = end - 272;
    // Customer 1's purchases: 20.00 on the first day, then 41.00 over two repeat days (and one
    // after the calibration end, which is not seen).
    let fixture = rapport::fixture::Fixture::parse(
        &json!({
            "customers": [{"id": 1, "name": "A"}, {"id": 2, "name": "B"}],
            "interactions": [
                {"id": 1, "customer": 1, "kind": "purchase", "occurred_at": first * DAY_MS + 1,
                 "amount": {"amount_minor": 2_000, "currency": "USD"}},
                {"id": 2, "customer": 1, "kind": "purchase", "occurred_at": (first + 100) * DAY_MS,
                 "amount": {"amount_minor": 1_500, "currency": "USD"}},
                {"id": 3, "customer": 1, "kind": "purchase", "occurred_at": (first + 213) * DAY_MS + 5,
                 "amount": {"amount_minor": 2_600, "currency": "USD"}},
                {"id": 4, "customer": 1, "kind": "purchase", "occurred_at": (end + 3) * DAY_MS,
                 "amount": {"amount_minor": 90_000, "currency": "USD"}},
            ],
        })
        .to_string(),
    )
    .unwrap();
    let ctx = crate::ctx_with(fixture, World::Scorer, config);
    let mut session = plugin.session(&ctx);
    let spec = session.describe().unwrap().value;
    assert!(!spec.needs_fit, "both models are given");
    assert!(spec.features.iter().all(|f| f.until == Some((end + 1) * DAY_MS - 1)), "{:?}", spec.features);

    // The paper's worked example in whole days: x = 2, t_x = 213 days, T = 272 days; 3 purchase
    // days worth 61.00 in all, 41.00 of it on the repeat days. And a customer who has not bought yet.
    let batch = FeatureBatch {
        ids: vec![1, 2],
        now: 1_800_000_000_000,
        columns: vec![
            Column { name: "days".into(), values: vec![3.0, 0.0] },
            Column { name: "first_at".into(), values: vec![(first * DAY_MS + 1) as f64, f64::NAN] },
            Column { name: "last_at".into(), values: vec![((first + 213) * DAY_MS + 5) as f64, f64::NAN] },
            Column { name: "spend".into(), values: vec![6_100.0, 0.0] },
        ],
    };
    let out = session.score(batch, &[]).unwrap().value;
    let score = |name: &str| out.scores.iter().find(|c| c.name == name).unwrap().values.clone();
    let (t_x, t) = (213.0 / 7.0, 272.0 / 7.0);
    assert_eq!(score("p_alive")[0], BG.p_alive(2.0, t_x, t));
    assert!((score("p_alive")[0] - 0.7266).abs() < 1e-3);
    assert_eq!(score("expected_purchases")[0], BG.conditional_expected_purchases(39.0, 2.0, t_x, t));
    assert!((score("expected_purchases")[0] - 1.226).abs() < 2e-3);
    // Gamma-Gamma over the two repeat transactions' mean (20.50), the first day left out.
    assert_eq!(score("expected_value")[0], GG.conditional_expected_value(2.0, 20.5));
    // The lifetime value over the 39 weeks: ≈ 1.226 purchases of ≈ 23.15 each.
    assert_eq!(
        score("value")[0],
        BG.conditional_expected_purchases(39.0, 2.0, t_x, t) * GG.conditional_expected_value(2.0, 20.5)
    );
    assert!((score("value")[0] - 28.4).abs() < 0.1, "{}", score("value")[0]);
    assert_eq!((score("frequency")[0], score("mean_value")[0]), (2.0, 20.5));
    for name in ["p_alive", "expected_purchases", "expected_value", "value", "frequency"] {
        assert!(score(name)[1].is_nan(), "no purchases, no {name}");
    }
}

/// A CDNOW file, as `make setup-test` fetches it (tests/data/fetch_cdnow.py). Missing is a
/// failure, not a skip: these tests are what shows the models are the published ones.
fn cdnow(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cdnow").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make setup-test` (it fetches the CDNOW files)", path.display()))
}

/// Import a CDNOW transaction file into a new organization through the HTTP import: one
/// customer per CDNOW id (external id = the id as a number), one purchase per line at noon UTC
/// of its date. The sample's lines are `id index date cds value`, the master file's `id date cds
/// value` under a header. Returns the server's URL prefix of the organization and its key.
fn import_cdnow(s: &crate::server::Server, slug: &str, text: &str) -> (String, String, usize) {
    let token = org_with(s, slug, &[("clv", built::CLV), ("clv-fit", built::CLV_FIT)]);
    let (mut customers, mut orders) = (Vec::<u64>::new(), String::new());
    for (n, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (id, date, value) = match f.len() {
            5 => (f[0], f[2], f[4]),
            4 if f[0].bytes().all(|b| b.is_ascii_digit()) => (f[0], f[1], f[3]),
            _ => continue, // the master file's header
        };
        let id: u64 = id.parse().unwrap();
        if customers.last() != Some(&id) {
            customers.push(id);
        }
        let day = parse_date(&format!("{}-{}-{}", &date[..4], &date[4..6], &date[6..])).unwrap();
        let cents = (value.parse::<f64>().unwrap() * 100.0).round() as i64;
        orders += &json!({"source": "cdnow", "external_id": format!("t-{n}"),
            "customer": {"source": "cdnow", "external_id": id.to_string()}, "kind": "purchase", "channel": "web",
            "occurred_at": day * DAY_MS + 43_200_000, "amount_minor": cents, "currency": "USD"})
        .to_string();
        orders.push('\n');
    }
    customers.sort_unstable();
    customers.dedup();
    let people: String = customers
        .iter()
        .map(|id| {
            json!({"source": "cdnow", "external_id": id.to_string(), "name": format!("CDNOW {id}")}).to_string() + "\n"
        })
        .collect();
    let base = format!("{}/v1/orgs/{slug}", s.url);
    for (kind, body) in [("customers", people), ("interactions", orders)] {
        let url = format!("{base}/import?kind={kind}");
        let (status, _, out) = call("POST", &url, Some(&token), "application/x-ndjson", body.as_bytes());
        assert_eq!(status, 200, "{out}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["rejected"], json!([]), "{report}");
    }
    (base, token, customers.len())
}

/// Run a rescore job and wait for it.
fn rescore(base: &str, token: &str, customers: usize) {
    let (status, job) = json_call("POST", &format!("{base}/scores/rescore"), token, Value::Null);
    assert!(status == 201 || status == 202, "{job}");
    let job_url = format!("{base}/jobs/{}", job["id"]);
    let started = Instant::now();
    loop {
        let (_, job) = json_call("GET", &job_url, token, Value::Null);
        if job["state"] == "done" {
            assert_eq!(job["done"], customers, "{job}");
            return;
        }
        assert_ne!(job["state"], "failed", "{job}");
        assert!(started.elapsed() < Duration::from_secs(600), "the job did not finish: {job}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The `clv-fit` report's rows as a map.
fn clv_fit_report(base: &str, token: &str) -> HashMap<String, f64> {
    let (status, report) = json_call("POST", &format!("{base}/reports/clv-fit/run"), token, json!({}));
    assert_eq!(status, 200, "{report}");
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_f64().unwrap_or(f64::NAN)))
        .collect()
}

/// A CDNOW customer's clv scores.
fn clv_scores(base: &str, token: &str, id: u64) -> Value {
    let (_, page) = json_call("GET", &format!("{base}/customers?source=cdnow&external_id={id}"), token, Value::Null);
    let customer = page["items"][0]["id"].as_u64().unwrap_or_else(|| panic!("no CDNOW customer {id}: {page}"));
    let (status, profile) = json_call("GET", &format!("{base}/customers/{customer}"), token, Value::Null);
    assert_eq!(status, 200, "{profile}");
    profile
}

/// The published estimates on the CDNOW sample (2 357 customers, calibration to 1997-09-30):
/// BG/NBD (Fader, Hardie & Lee 2005, to 3 decimals) and Gamma-Gamma (Fader & Hardie 2013, to 2
/// decimals, on the 946 customers with a repeat transaction), found by the `clv` scorer's rescore
/// and the `clv-fit` report after the file went through the HTTP import.
#[test]
fn clv_finds_the_published_estimates_on_the_cdnow_sample() {
    let s = serve();
    let (base, token, customers) = import_cdnow(&s, "cdnow", &cdnow("CDNOW_sample.txt"));
    assert_eq!(customers, 2_357);
    let (status, out) = json_call(
        "PUT",
        &format!("{base}/plugins/clv/config"),
        &token,
        json!({"calibration_end": "1997-09-30", "explain": true}),
    );
    assert_eq!(status, 200, "{out}");
    rescore(&base, &token, customers);
    let fit = clv_fit_report(&base, &token);
    eprintln!("clv-fit on the CDNOW sample: {fit:?}");
    let at = |name: &str, decimals: i32| {
        let v = fit[name];
        (v * 10f64.powi(decimals)).round() / 10f64.powi(decimals)
    };
    assert_eq!([at("r", 3), at("alpha", 3), at("a", 3), at("b", 3)], [0.243, 4.414, 0.793, 2.426], "{fit:?}");
    assert_eq!([at("p", 2), at("q", 2), at("gamma", 2)], [6.25, 3.74, 15.44], "{fit:?}");
    assert_eq!(fit["customers_bgnbd"], 2_357.0, "{fit:?}");
    assert_eq!((fit["customers_gamma_gamma"], fit["customers_repeat"]), (946.0, 946.0), "{fit:?}");
    assert_eq!((fit["customers_repeat_without_spend"], fit["customers_repeat_unknown_spend"]), (0.0, 0.0));
    assert_eq!(fit["converged"], 1.0, "{fit:?}");

    // The scorer's own scores against `lifetimes` 0.11.3 on the same file (values from
    // plugins/clv-model/reference/lifetimes_cdnow.py): customer 4 (x = 2), 4005 (x = 1) and 2087
    // (no repeat purchase: the population mean, pγ/(q−1)). Both fits stop at their optimizer's
    // tolerance (the estimates agree to about 1e-7), so the scores agree closely, not exactly.
    for (id, frequency, p_alive, purchases, value) in [
        (4, 2.0, 0.7266202977882552, 1.2259944296717102, 24.65391871323576),
        (4005, 1.0, 0.5333547420623989, 0.5354075856586402, 27.922558214671497),
        (2087, 0.0, 1.0, 0.19954614671453377, 35.17037133045392),
    ] {
        let profile = clv_scores(&base, &token, id);
        let score = |name: &str| profile["scores"][format!("clv.{name}")].as_f64().unwrap_or(f64::NAN);
        assert_eq!(score("frequency"), frequency, "{id}: {profile}");
        for (name, want) in [("p_alive", p_alive), ("expected_purchases", purchases), ("expected_value", value)] {
            let got = score(name);
            assert!((got - want).abs() / want < 1e-5, "customer {id}: clv.{name} {got}, lifetimes {want}");
        }
        // The explanation names the quantities the value comes from.
        let why = profile["explanations"]["clv.value"].as_str().unwrap_or_else(|| panic!("{profile}"));
        assert!(why.contains(&format!("x = {frequency} repeat purchase days")), "{why}");
        let spend = if frequency > 0.0 { "repeat transactions averaging" } else { "population mean" };
        assert!(why.contains(spend), "{why}");
    }
    // Customer 4's repeat mean: (29.73 on 1997-01-18 + 14.96 on 1997-08-02) / 2, the first day
    // (29.33) left out.
    let four = clv_scores(&base, &token, 4);
    assert!((four["scores"]["clv.mean_value"].as_f64().unwrap() - 22.345).abs() < 1e-9, "{four}");
}

/// The full CDNOW master file (23 570 customers, 69 659 transactions, 80 of them worth 0) fits
/// without error, to the estimates `lifetimes` 0.11.3 finds on it (within 1e-5; the reference script run on
/// CDNOW_master.txt): BG/NBD r = 0.251624, α = 4.788945, a = 0.723433, b = 2.161087; Gamma-Gamma
/// p = 6.275359, q = 3.624450, γ = 14.983689 on 9 450 of the 9 451 repeat customers (one has
/// repeat transactions worth 0 in all, which the Gamma-Gamma model cannot hold).
#[test]
fn clv_fits_the_cdnow_master_file() {
    let s = serve();
    let (base, token, customers) = import_cdnow(&s, "cdnow-master", &cdnow("CDNOW_master.txt"));
    assert_eq!(customers, 23_570);
    let (status, out) =
        json_call("PUT", &format!("{base}/plugins/clv/config"), &token, json!({"calibration_end": "1997-09-30"}));
    assert_eq!(status, 200, "{out}");
    rescore(&base, &token, customers);
    let fit = clv_fit_report(&base, &token);
    eprintln!("clv-fit on the CDNOW master file: {fit:?}");
    assert_eq!(fit["customers_bgnbd"], 23_570.0, "{fit:?}");
    assert_eq!(fit["customers_repeat"], 9_451.0, "{fit:?}");
    assert_eq!(fit["customers_repeat_without_spend"], 1.0, "{fit:?}");
    assert_eq!(fit["customers_repeat_unknown_spend"], 0.0, "{fit:?}");
    assert_eq!(fit["customers_gamma_gamma"], 9_450.0, "{fit:?}");
    assert_eq!(fit["converged"], 1.0, "{fit:?}");
    for (name, want) in [
        ("r", 0.251624011424104),
        ("alpha", 4.788945170327028),
        ("a", 0.7234330357288162),
        ("b", 2.161086981372379),
        ("p", 6.275358592836066),
        ("q", 3.624450210391096),
        ("gamma", 14.983688961951682),
    ] {
        assert!((fit[name] - want).abs() / want < 1e-5, "{name}: {} vs lifetimes {want}: {fit:?}", fit[name]);
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
