//! The standard churn scorer and reporters (`plugins/churn-risk`, `churn-fit`, `service-report`,
//! `segments-summary`, `downline-report`, `campaign-targets`), each installed through the HTTP API
//! into an organization loaded with the demo generator's data. Every expected number is computed
//! here from the generated NDJSON (and what the API says about the organization), not copied from
//! a run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rapport::demo::{DemoSpec, write};
use rapport_test_plugins as built;
use serde_json::{Value, json};

use crate::server::{ADMIN, Server, call, install_enabled, json_call, serve};

const DAY: i64 = 86_400_000;

/// The demo organization's data as the generator wrote it, and how to reach it over HTTP.
struct Demo {
    s: Server,
    org: String,
    token: String,
    distributors: Vec<Value>,
    customers: Vec<Value>,
    interactions: Vec<Value>,
    /// Host customer id by the demo's external id ("c-12"), and the customer as the API lists it.
    by_external: HashMap<String, Value>,
}

fn ndjson(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A server with an organization `org` holding `n` generated customers (imported over HTTP) and
/// these plugins installed and enabled.
fn demo(org: &str, n: u64, plugins: &[(&str, &str)]) -> Demo {
    demo_seeded(org, 7, n, plugins)
}

fn demo_seeded(org: &str, seed: u64, n: u64, plugins: &[(&str, &str)]) -> Demo {
    let s = serve();
    let dir = tempfile::tempdir().unwrap();
    let files = write(&DemoSpec::new(seed, n), dir.path()).unwrap();
    let url = |path: &str| format!("{}/v1/orgs/{org}{path}", s.url);
    let (status, out) = json_call("POST", &format!("{}/v1/orgs", s.url), ADMIN, json!({"slug": org, "name": org}));
    assert_eq!(status, 201, "{out}");
    let (_, key) = json_call("POST", &url("/keys"), ADMIN, json!({"name": "ops", "role": "owner"}));
    let token = key["token"].as_str().unwrap().to_owned();
    for (kind, path) in
        [("distributors", &files.distributors), ("customers", &files.customers), ("interactions", &files.interactions)]
    {
        let body = std::fs::read(path).unwrap();
        let (status, _, out) =
            call("POST", &url(&format!("/import?kind={kind}")), Some(&token), "application/x-ndjson", &body);
        assert_eq!(status, 200, "{out}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["rejected"], json!([]), "{kind}: {report}");
    }
    for (name, path) in plugins {
        install_enabled(&s, org, &token, name, path);
    }
    let mut demo = Demo {
        org: org.into(),
        token,
        distributors: ndjson(&files.distributors),
        customers: ndjson(&files.customers),
        interactions: ndjson(&files.interactions),
        by_external: HashMap::new(),
        s,
    };
    for c in demo.list_customers() {
        let ext = c["external_ids"][0]["id"].as_str().unwrap().to_owned();
        demo.by_external.insert(ext, c);
    }
    assert_eq!(demo.by_external.len(), n as usize);
    demo
}

impl Demo {
    fn url(&self, path: &str) -> String {
        format!("{}/v1/orgs/{}{path}", self.s.url, self.org)
    }

    fn get(&self, path: &str) -> Value {
        let (status, out) = json_call("GET", &self.url(path), &self.token, Value::Null);
        assert_eq!(status, 200, "{path}: {out}");
        out
    }

    fn list_customers(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = self.get(&format!("/customers?limit=1000{cursor}"));
            out.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => return out,
            }
        }
    }

    /// Host customer ids of a filter's matches.
    fn matching(&self, filter: &str) -> HashSet<u64> {
        let encoded: String = filter
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let page = self.get(&format!("/customers?limit=1000&filter={encoded}"));
        assert!(page["next_cursor"].is_null(), "one page expected: {filter}");
        page["items"].as_array().unwrap().iter().map(|c| c["id"].as_u64().unwrap()).collect()
    }

    fn id(&self, external: &str) -> u64 {
        self.by_external[external]["id"].as_u64().unwrap()
    }

    fn profile(&self, id: u64) -> Value {
        self.get(&format!("/customers/{id}"))
    }

    fn rescore(&self) {
        let (status, job) = json_call("POST", &self.url("/scores/rescore"), &self.token, Value::Null);
        assert!(status == 201 || status == 202, "{job}");
        let started = Instant::now();
        loop {
            let job = self.get(&format!("/jobs/{}", job["id"]));
            if job["state"] == "done" {
                assert_eq!(job["done"].as_u64(), Some(self.customers.len() as u64), "{job}");
                return;
            }
            assert_ne!(job["state"], "failed", "{job}");
            assert!(started.elapsed() < Duration::from_secs(120), "the job did not finish: {job}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn report(&self, name: &str, params: Value) -> (u16, Value) {
        json_call("POST", &self.url(&format!("/reports/{name}/run")), &self.token, params)
    }

    fn report_ok(&self, name: &str, params: Value) -> Report {
        let (status, out) = self.report(name, params);
        assert_eq!(status, 200, "{name}: {out}");
        Report(out)
    }

    /// The demo's interactions of one customer (by external id).
    fn interactions_of(&self, external: &str) -> Vec<&Value> {
        self.interactions.iter().filter(|i| i["customer"]["external_id"] == external).collect()
    }

    /// Purchases in minor units per external customer id.
    fn spend(&self) -> HashMap<String, i64> {
        let mut out = HashMap::new();
        for i in self.interactions.iter().filter(|i| i["kind"] == "purchase") {
            *out.entry(i["customer"]["external_id"].as_str().unwrap().to_owned()).or_default() +=
                i["amount_minor"].as_i64().unwrap();
        }
        out
    }
}

/// A report's JSON with access by column name.
struct Report(Value);

impl Report {
    fn column(&self, name: &str) -> usize {
        self.0["columns"]
            .as_array()
            .unwrap()
            .iter()
            .position(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no column {name}: {}", self.0["columns"]))
    }

    fn rows(&self) -> &Vec<Value> {
        self.0["rows"].as_array().unwrap()
    }

    fn cell<'a>(&self, row: &'a Value, name: &str) -> &'a Value {
        &row[self.column(name)]
    }
}

/// The detail of a refused report names the param.
fn refused(demo: &Demo, name: &str, params: Value, param: &str) {
    let (status, out) = demo.report(name, params.clone());
    assert_eq!(status, 422, "{name} {params}: {out}");
    let detail = out["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(param), "{name} {params}: the error should name {param}: {out}");
}

/// The default lexicon's reading of the demo's texts: +1 for only positive words, −1 for only
/// negative ones, 0 for none (the generator's phrases; a new phrase must be added here).
fn demo_sentiment(text: &str) -> f64 {
    match text {
        "Asked about delivery" | "Service request" => 0.0,
        "Wants a refund" => -1.0,
        "Happy with the product" | "ขอบคุณมากค่ะ บริการดีมาก" => 1.0,
        other => panic!("a demo phrase this test does not know: {other:?}"),
    }
}

#[test]
fn churn_risk_scores_demo_customers_from_recency_tickets_and_sentiment() {
    let demo = demo("churn", 200, &[("churn-risk", built::CHURN_RISK)]);
    // A bad configuration is refused by the schema the component ships, naming the field, and
    // leaves the configuration as it was.
    let (status, out) =
        json_call("PUT", &demo.url("/plugins/churn-risk/config"), &demo.token, json!({"timeline_limit": 0}));
    assert_eq!(status, 422, "{out}");
    assert!(out.to_string().contains("timeline_limit"), "{out}");
    let config = || {
        let plugins = demo.get("/plugins");
        let items = plugins["items"].as_array().or(plugins.as_array()).cloned().unwrap_or_default();
        items
            .iter()
            .find(|p| p["name"] == "churn-risk")
            .map(|p| p["config"].clone())
            .unwrap_or_else(|| panic!("{plugins}"))
    };
    assert_eq!(config(), json!({}), "a refused configuration is not stored");
    let (status, out) = json_call(
        "PUT",
        &demo.url("/plugins/churn-risk/config"),
        &demo.token,
        json!({"timeline_limit": 500, "explain": true}),
    );
    assert_eq!(status, 200, "{out}");
    assert_eq!(config(), json!({"timeline_limit": 500, "explain": true}));
    // One open ticket that is not overdue (due in 2096), for a customer who has bought: open
    // and overdue counts must then differ for them (every generated open ticket is overdue).
    let buyer = (0..demo.customers.len())
        .map(|k| format!("c-{k}"))
        .find(|ext| demo.interactions_of(ext).iter().any(|i| i["kind"] == "purchase"))
        .unwrap();
    let (status, out) = json_call(
        "POST",
        &demo.url("/interactions"),
        &demo.token,
        json!({"customer": demo.id(&buyer), "kind": "ticket", "channel": "phone", "occurred_at": now(),
               "ticket": {"status": "open", "due_at": 4_000_000_000_000i64}}),
    );
    assert_eq!(status, 201, "{out}");
    let before = now();
    demo.rescore();
    let after = now();

    let (mut checked, mut with_tickets, mut with_text) = (0, 0, 0);
    for k in 0..demo.customers.len() {
        let ext = format!("c-{k}");
        let mine = demo.interactions_of(&ext);
        assert!(mine.len() <= 500, "the timeline read covers every interaction of {ext}");
        let profile = demo.profile(demo.id(&ext));
        let score = |name: &str| profile["scores"][format!("churn-risk.{name}")].as_f64();
        if mine.is_empty() {
            assert_eq!(profile["labels"]["churn-risk.risk"], "no-activity", "{profile}");
            continue;
        }
        let at = |i: &&Value| i["occurred_at"].as_i64().unwrap();
        let last = mine.iter().filter(|i| i["kind"] == "purchase").map(at).max().or_else(|| mine.iter().map(at).max());
        let last = last.unwrap();
        let days = score("recency_days").unwrap();
        assert!(((before - last) / DAY) as f64 <= days && days <= ((after - last) / DAY) as f64, "{ext}: {profile}");

        let tickets: Vec<&&Value> = mine.iter().filter(|i| i["kind"] == "ticket").collect();
        let open = tickets.iter().filter(|t| t["ticket"]["status"] != "closed").count() as f64;
        // Demo tickets were due two days after opening, in the demo's past: every open one is
        // overdue; the buyer's extra ticket is open, recent and not overdue.
        let extra = if ext == buyer { 1.0 } else { 0.0 };
        assert_eq!(score("open_tickets"), Some(open + extra), "{ext}");
        assert_eq!(score("overdue_tickets"), Some(open), "{ext}");
        let recent = tickets.iter().filter(|t| at(t) >= before - 90 * DAY).count() as f64;
        assert_eq!(score("recent_tickets"), Some(recent + extra), "{ext}");
        with_tickets += usize::from(!tickets.is_empty());

        // The newest five texts, newest first.
        let mut texts: Vec<(i64, String)> = mine
            .iter()
            .filter_map(|i| {
                let parts: Vec<&str> = ["subject", "body"].iter().filter_map(|f| i[*f].as_str()).collect();
                (!parts.is_empty()).then(|| (at(i), parts.join(" ")))
            })
            .collect();
        texts.sort_by_key(|t| std::cmp::Reverse(t.0));
        let newest: Vec<f64> = texts.iter().take(5).map(|(_, t)| demo_sentiment(t)).collect();
        let sentiment = (!newest.is_empty()).then(|| newest.iter().sum::<f64>() / newest.len() as f64);
        assert_eq!(score("sentiment"), sentiment, "{ext}: {texts:?}");
        with_text += usize::from(sentiment.is_some());

        // The default weights, each factor's contribution, and the logistic of their sum.
        let expected = [
            ("contribution_recency", 0.5 * days.min(365.0) / 30.0),
            ("contribution_open_tickets", 0.4 * (open + extra)),
            ("contribution_overdue_tickets", 0.8 * open),
            ("contribution_recent_tickets", 0.3 * (recent + extra)),
            ("contribution_sentiment", sentiment.map_or(0.0, |s| -1.5 * s)),
            // 200 customers are fewer than fit.min_labelled: the documented weights, where
            // purchases weigh 0.
            ("contribution_purchases", 0.0),
        ];
        let mut z = -3.0;
        for (name, want) in expected {
            let got = score(name).unwrap();
            assert!((got - want).abs() < 1e-9, "{ext} {name}: {got} != {want}");
            z += want;
        }
        assert!((score("log_odds").unwrap() - z).abs() < 1e-9, "{ext}");
        let p = 1.0 / (1.0 + (-z).exp());
        assert!((score("probability").unwrap() - p).abs() < 1e-9, "{ext}");
        let label = if p >= 0.6 {
            "high"
        } else if p >= 0.3 {
            "medium"
        } else {
            "low"
        };
        assert_eq!(profile["labels"]["churn-risk.risk"], label, "{ext}");
        let why = profile["explanations"]["churn-risk.probability"].as_str().unwrap_or_default();
        assert!(why.starts_with(&format!("churn risk {p:.2} ({label}): ")), "{ext}: {why}");
        assert!(why.ends_with("(default weights)"), "{ext}: {why}");
        checked += 1;
    }
    assert!(checked > 150 && with_tickets > 10 && with_text > 100, "{checked} {with_tickets} {with_text}");
    // The label works in the filter language.
    let high = demo.matching(r#"label.churn-risk.risk = "high""#);
    let scored_high = demo.matching("score.churn-risk.probability >= 0.6");
    assert!(!high.is_empty());
    assert_eq!(high, scored_high);
}

/// The demo organization as `rapport serve --demo` generates it (seed 42, 2 000 customers): the
/// churn model fitted to its history ranks the hold-out customers well (AUC above 0.7), its
/// calibration holds decile by decile, the `churn-fit` report shows the fit the scorer made, and
/// the scorer's explanations say the weights were fitted.
#[test]
fn churn_risk_fits_its_weights_to_the_demo_history() {
    let demo =
        demo_seeded("churn-fit", 42, 2_000, &[("churn-risk", built::CHURN_RISK), ("churn-fit", built::CHURN_FIT)]);
    // The demo's history ends at its newest interaction; the cutoff is 90 days before it, so
    // each customer's next 90 days are known (the scorer's default cutoff is 90 days before the
    // scoring time, which suits a history that runs to today).
    let newest = demo.interactions.iter().map(|i| i["occurred_at"].as_i64().unwrap()).max().unwrap();
    let cutoff = plugin_date((newest - 90 * DAY).div_euclid(DAY) * DAY);
    let config = json!({"fit": {"cutoff": cutoff, "horizon_days": 90}, "explain": true});
    for plugin in ["churn-risk", "churn-fit"] {
        let (status, out) =
            json_call("PUT", &demo.url(&format!("/plugins/{plugin}/config")), &demo.token, config.clone());
        assert_eq!(status, 200, "{plugin}: {out}");
    }
    demo.rescore();

    let report = demo.report_ok("churn-fit", json!({}));
    let rows = report.rows();
    let value = |section: &str, name: &str| {
        let row = rows
            .iter()
            .find(|r| report.cell(r, "section") == section && report.cell(r, "name") == name)
            .unwrap_or_else(|| panic!("no {section} {name}: {}", report.0));
        report.cell(row, "value").as_f64().unwrap_or(f64::NAN)
    };
    let (auc, train, holdout) = (value("model", "auc"), value("model", "train"), value("model", "holdout"));
    eprintln!("churn-fit on the demo: {}", report.0);
    assert_eq!(value("model", "fitted"), 1.0, "{}", report.0);
    // Every demo customer bought in the first year, before the cutoff: all are labelled.
    assert_eq!(value("model", "labelled"), 2_000.0);
    assert_eq!(train + holdout, 2_000.0);
    assert!(auc > 0.7, "hold-out AUC {auc}: {}", report.0);
    // Churned is "no purchase in the 90 days after the cutoff", counted here from the data.
    let bought_after: HashSet<&str> = demo
        .interactions
        .iter()
        .filter(|i| i["kind"] == "purchase")
        .filter(|i| {
            let at = i["occurred_at"].as_i64().unwrap();
            at > (newest - 90 * DAY).div_euclid(DAY) * DAY && at <= (newest - 90 * DAY).div_euclid(DAY) * DAY + 90 * DAY
        })
        .map(|i| i["customer"]["external_id"].as_str().unwrap())
        .collect();
    assert_eq!(value("model", "churned"), (2_000 - bought_after.len()) as f64, "{}", report.0);
    // Frequent buyers stay, long-silent ones leave: the signs the data must give.
    assert!(value("coefficient", "recency_per_30_days") > 0.0, "{}", report.0);
    assert!(value("coefficient", "purchases") < 0.0, "{}", report.0);

    // Calibration on the hold-out: ten deciles covering it, predictions rising, and in each the
    // observed churn rate within three binomial standard errors (plus 0.02) of the mean
    // prediction.
    let deciles: Vec<&Value> = rows.iter().filter(|r| report.cell(r, "section") == "calibration").collect();
    assert_eq!(deciles.len(), 10, "{}", report.0);
    let mut covered = 0;
    let mut previous = 0.0;
    for d in &deciles {
        let n = report.cell(d, "customers").as_f64().unwrap();
        let predicted = report.cell(d, "predicted").as_f64().unwrap();
        let observed = report.cell(d, "observed").as_f64().unwrap();
        let tolerance = 3.0 * (predicted * (1.0 - predicted) / n).sqrt() + 0.02;
        assert!((predicted - observed).abs() <= tolerance, "{d}: |{predicted} − {observed}| > {tolerance}");
        assert!(predicted >= previous, "deciles are ordered by prediction: {}", report.0);
        previous = predicted;
        covered += n as usize;
    }
    assert_eq!(covered as f64, holdout);
    assert_eq!(report.0["chart"]["y"], json!(["predicted", "observed"]));

    // The scorer used the same fit: its explanations quote it.
    let profile = demo.profile(demo.id("c-0"));
    let why = profile["explanations"]["churn-risk.probability"].as_str().unwrap_or_default();
    let fitted = format!("(weights fitted on {train} customers, hold-out AUC {auc:.2})");
    assert!(why.ends_with(&fitted), "{why} does not end with {fitted}");
    // And its log-odds are the fitted weights applied to the customer's factors.
    let score = |name: &str| profile["scores"][format!("churn-risk.{name}")].as_f64().unwrap();
    let w = |name: &str| value("coefficient", name);
    let z = w("intercept")
        + w("recency_per_30_days") * score("recency_days").min(365.0) / 30.0
        + w("open_tickets") * score("open_tickets")
        + w("overdue_tickets") * score("overdue_tickets")
        + w("recent_tickets") * score("recent_tickets")
        - w("negative_sentiment") * profile["scores"]["churn-risk.sentiment"].as_f64().unwrap_or(0.0)
        + w("purchases") * score("purchases");
    assert!((score("log_odds") - z).abs() < 1e-9, "{} vs {z}: {profile}", score("log_odds"));
}

/// `YYYY-MM-DD` of a UTC midnight, as the plugin's configuration takes a date.
fn plugin_date(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).expect("a time in range");
    let (y, m, d) = at.to_calendar_date();
    format!("{y:04}-{:02}-{d:02}", u8::from(m))
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A service group's tickets, open, overdue and closed tickets, and hours to close.
type Expected = (i64, i64, i64, i64, Vec<f64>);

#[test]
fn service_report_counts_demo_tickets_by_branch_channel_and_category() {
    let demo = demo("service", 300, &[("service-report", built::SERVICE_REPORT)]);
    let as_of = "2024-06-01";
    let as_of_ms = 1_717_200_000_000_i64;
    // Expected, from the generated tickets: (branch, channel, category) → tickets, open, overdue,
    // closed, hours to close.
    let branch: HashMap<&str, &str> =
        demo.customers.iter().map(|c| (c["external_id"].as_str().unwrap(), c["branch"].as_str().unwrap())).collect();
    let mut want: BTreeMap<(String, String, String), Expected> = BTreeMap::new();
    for t in demo.interactions.iter().filter(|i| i["kind"] == "ticket") {
        let key = (
            branch[t["customer"]["external_id"].as_str().unwrap()].to_owned(),
            t["channel"].as_str().unwrap().to_owned(),
            t["ticket"]["category"].as_str().unwrap().to_owned(),
        );
        let e = want.entry(key).or_default();
        e.0 += 1;
        if t["ticket"]["status"] == "closed" {
            e.3 += 1;
            let hours =
                (t["ticket"]["closed_at"].as_i64().unwrap() - t["occurred_at"].as_i64().unwrap()) as f64 / 3.6e6;
            e.4.push(hours);
        } else {
            e.1 += 1;
            e.2 += i64::from(t["ticket"]["due_at"].as_i64().unwrap() < as_of_ms);
        }
    }
    assert!(want.len() > 5, "the demo has tickets in several groups: {want:?}");
    let report = demo.report_ok("service-report", json!({"as_of": as_of}));
    assert_eq!(report.0["title"], format!("Service issues, overdue as of {as_of}"));
    assert_eq!(report.rows().len(), want.len(), "{}", report.0);
    for (row, ((b, ch, cat), (tickets, open, overdue, closed, hours))) in report.rows().iter().zip(&want) {
        let text = |name: &str| report.cell(row, name).as_str().unwrap().to_owned();
        assert_eq!((text("branch"), text("channel"), text("category")), (b.clone(), ch.clone(), cat.clone()));
        assert_eq!(text("group"), format!("{b} / {ch} / {cat}"));
        let int = |name: &str| report.cell(row, name).as_i64().unwrap();
        assert_eq!((int("tickets"), int("open"), int("overdue"), int("closed")), (*tickets, *open, *overdue, *closed));
        let mut sorted = hours.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => None,
            _ if n % 2 == 1 => Some(sorted[n / 2]),
            _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
        };
        let got = report.cell(row, "median_hours_to_close").as_f64();
        assert_eq!(got, median.map(|m| (m * 100.0).round() / 100.0), "{b} {ch} {cat}");
    }
    assert_eq!(
        report.0["chart"],
        json!({"kind": "bar", "title": "Open and overdue tickets", "x": "group", "y": ["open", "overdue"]})
    );

    // By branch only, with a filter: the sums of the groups above for that branch.
    let report = demo
        .report_ok("service-report", json!({"group_by": ["branch"], "filter": "branch = \"bkk-01\"", "as_of": as_of}));
    let open: i64 = want.iter().filter(|((b, _, _), _)| b == "bkk-01").map(|(_, v)| v.1).sum();
    assert_eq!(report.rows().len(), 1, "{}", report.0);
    assert_eq!(report.cell(&report.rows()[0], "open").as_i64(), Some(open));
    assert_eq!(report.0["chart"]["x"], "branch");
    // Without as_of, overdue is judged at the newest interaction.
    let report = demo.report_ok("service-report", json!({"group_by": []}));
    let newest = demo.interactions.iter().map(|i| i["occurred_at"].as_i64().unwrap()).max().unwrap();
    let overdue = demo
        .interactions
        .iter()
        .filter(|t| t["kind"] == "ticket" && t["ticket"]["status"] != "closed")
        .filter(|t| t["ticket"]["due_at"].as_i64().unwrap() < newest)
        .count();
    assert_eq!(report.cell(&report.rows()[0], "overdue").as_u64(), Some(overdue as u64));
    // HTML draws the chart; CSV has a line per group.
    let (status, ty, html) = call(
        "POST",
        &demo.url("/reports/service-report/run?format=html"),
        Some(&demo.token),
        "application/json",
        b"{}",
    );
    assert_eq!((status, ty.as_str()), (200, "text/html"), "{html}");
    assert!(html.contains("<svg") && html.contains("Open and overdue tickets"), "{html}");
    let (status, _, csv) = call(
        "POST",
        &demo.url("/reports/service-report/run?format=csv"),
        Some(&demo.token),
        "application/json",
        json!({"as_of": as_of}).to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{csv}");
    assert_eq!(csv.lines().count(), want.len() + 1, "{csv}");

    refused(&demo, "service-report", json!({"group_by": ["colour"]}), "params.group_by");
    refused(&demo, "service-report", json!({"as_of": "yesterday"}), "params.as_of");
    refused(&demo, "service-report", json!({"filter": "branch =="}), "params.filter");
    refused(&demo, "service-report", json!({"colour": "red"}), "colour");
}

#[test]
fn segments_summary_reports_sizes_revenue_clv_and_movement() {
    let demo = demo(
        "segments",
        200,
        &[("rfm", built::RFM), ("clv", built::CLV), ("segments-summary", built::SEGMENTS_SUMMARY)],
    );
    // Before any scoring, everyone is in one row without a label.
    let report = demo.report_ok("segments-summary", json!({}));
    assert_eq!(report.rows().len(), 1, "{}", report.0);
    assert_eq!(report.cell(&report.rows()[0], "segment"), "(no label)");
    assert_eq!(report.cell(&report.rows()[0], "customers").as_u64(), Some(200));

    demo.rescore();
    let labels = |demo: &Demo| -> HashMap<u64, String> {
        demo.list_customers()
            .iter()
            .map(|c| {
                let id = c["id"].as_u64().unwrap();
                (id, demo.profile(id)["labels"]["rfm.segment"].as_str().unwrap().to_owned())
            })
            .collect()
    };
    let first = labels(&demo);
    let report = demo.report_ok("segments-summary", json!({}));
    let spend = demo.spend();
    let ext_of: HashMap<u64, String> =
        demo.by_external.iter().map(|(e, c)| (c["id"].as_u64().unwrap(), e.clone())).collect();
    let check = |report: &Report,
                 now: &HashMap<u64, String>,
                 before: Option<&HashMap<u64, String>>,
                 extra: &HashMap<u64, i64>| {
        let mut segments: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for (id, s) in now {
            segments.entry(s.as_str()).or_default().push(*id);
        }
        for (segment, ids) in &segments {
            let row = report
                .rows()
                .iter()
                .find(|r| report.cell(r, "segment") == *segment)
                .unwrap_or_else(|| panic!("no {segment}: {}", report.0));
            assert_eq!(report.cell(row, "customers").as_u64(), Some(ids.len() as u64), "{segment}");
            let revenue: i64 = ids
                .iter()
                .map(|id| spend.get(&ext_of[id]).copied().unwrap_or(0) + extra.get(id).copied().unwrap_or(0))
                .sum();
            assert_eq!(report.cell(row, "revenue_minor").as_i64(), Some(revenue), "{segment}");
            // A lifetime value is purchases over the horizon times what one is worth, from the
            // scores the API shows (not the plugin's own `clv.value`).
            let clvs: Vec<f64> = ids
                .iter()
                .filter_map(|id| {
                    let scores = &demo.profile(*id)["scores"];
                    Some(scores["clv.expected_purchases"].as_f64()? * scores["clv.expected_value"].as_f64()?)
                })
                .collect();
            let clv =
                (!clvs.is_empty()).then(|| ((clvs.iter().sum::<f64>() / clvs.len() as f64) * 100.0).round() / 100.0);
            let got = report.cell(row, "average_clv").as_f64();
            assert!(
                match (got, clv) {
                    (Some(g), Some(w)) => (g - w).abs() <= 0.011,
                    (g, w) => g == w,
                },
                "{segment}: {got:?} != {clv:?}"
            );
            let int = |name: &str| report.cell(row, name).as_u64().unwrap();
            match before {
                None => assert_eq!(
                    (int("first_scored"), int("moved_in"), int("moved_out"), int("before")),
                    (ids.len() as u64, 0, 0, 0)
                ),
                Some(before) => {
                    let moved_in = ids.iter().filter(|id| before[*id] != *segment).count() as u64;
                    let moved_out =
                        before.iter().filter(|(id, b)| *b == segment && now[*id] != *segment).count() as u64;
                    let was = before.values().filter(|b| *b == segment).count() as u64;
                    assert_eq!(
                        (int("moved_in"), int("moved_out"), int("before"), int("first_scored")),
                        (moved_in, moved_out, was, 0),
                        "{segment}"
                    );
                }
            }
        }
    };
    check(&report, &first, None, &HashMap::new());
    assert!(report.rows().iter().any(|r| report.cell(r, "average_clv").is_f64()), "the clv scorer ran: {}", report.0);
    assert_eq!(report.0["chart"]["kind"], "bar");

    // Twenty customers buy big today: they are rescored at once (with the job's cuts), then a
    // new job refits the cuts. Movement is since each customer's previous scoring: for them, the
    // label right after the purchase.
    let mut extra = HashMap::new();
    for k in 0..20 {
        let id = demo.id(&format!("c-{k}"));
        let (status, out) = json_call(
            "POST",
            &demo.url("/interactions"),
            &demo.token,
            json!({"customer": id, "kind": "purchase", "channel": "store", "source": "pos", "external_id": format!("big-{k}"),
                   "occurred_at": now() - 3_600_000, "amount": {"amount_minor": 2_000_000, "currency": "THB"}}),
        );
        assert_eq!(status, 201, "{out}");
        extra.insert(id, 2_000_000);
    }
    let middle = labels(&demo);
    demo.rescore();
    let last = labels(&demo);
    assert!(last.iter().any(|(id, s)| middle[id] != *s), "the refit moves someone");
    let report = demo.report_ok("segments-summary", json!({}));
    check(&report, &last, Some(&middle), &extra);
    // Segments that emptied still show their departures.
    for (_, segment) in middle.iter().filter(|(_, s)| !last.values().any(|l| l == *s)) {
        assert!(report.rows().iter().any(|r| report.cell(r, "segment") == segment.as_str()), "{segment}");
    }

    refused(&demo, "segments-summary", json!({"label": "segment"}), "params.label");
    refused(&demo, "segments-summary", json!({"filter": "nonsense > 1"}), "params.filter");
}

#[test]
fn downline_report_rolls_up_the_demo_sponsor_tree() {
    let demo = demo("network", 300, &[("downline-report", built::DOWNLINE_REPORT)]);
    // The tree as the API lists it.
    let listed = demo.get("/distributors?limit=1000");
    let tree: Vec<(u64, Option<u64>)> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_u64().unwrap(), d["sponsor"].as_u64()))
        .collect();
    assert_eq!(tree.len(), demo.distributors.len());
    // Each distributor's customers, their spend and whether they bought in the 90 days to as_of.
    // The report reads each customer's last purchase and all-time spend, so as_of is never
    // before the newest purchase: here a month after it (and, by default, the newest interaction).
    let newest_purchase = demo
        .interactions
        .iter()
        .filter(|i| i["kind"] == "purchase")
        .map(|i| i["occurred_at"].as_i64().unwrap())
        .max()
        .unwrap();
    let newest_interaction = demo.interactions.iter().map(|i| i["occurred_at"].as_i64().unwrap()).max().unwrap();
    let as_of_ms = newest_purchase + 30 * DAY;
    let spend = demo.spend();
    let mut last_purchase: HashMap<&str, i64> = HashMap::new();
    for i in demo.interactions.iter().filter(|i| i["kind"] == "purchase") {
        let e = last_purchase.entry(i["customer"]["external_id"].as_str().unwrap()).or_insert(i64::MIN);
        *e = (*e).max(i["occurred_at"].as_i64().unwrap());
    }
    let own_as_of = |as_of: i64| {
        let since = as_of - 90 * DAY;
        let mut own: HashMap<u64, (u64, u64, i64)> = HashMap::new();
        for (ext, c) in &demo.by_external {
            let Some(d) = c["distributor"].as_u64() else { continue };
            let e = own.entry(d).or_default();
            e.0 += 1;
            e.1 += u64::from(last_purchase.get(ext.as_str()).is_some_and(|&t| t >= since));
            e.2 += spend.get(ext).copied().unwrap_or(0);
        }
        own
    };
    let own = own_as_of(as_of_ms);
    let children = |id: u64| tree.iter().filter(move |(_, s)| *s == Some(id)).map(|(d, _)| *d);
    fn group(id: u64, own: &HashMap<u64, (u64, u64, i64)>, tree: &[(u64, Option<u64>)]) -> (i64, u64, u64) {
        let (_, active, volume) = own.get(&id).copied().unwrap_or_default();
        let mut out = (volume, active, 0);
        for (child, _) in tree.iter().filter(|(_, s)| *s == Some(id)) {
            let g = group(*child, own, tree);
            out = (out.0 + g.0, out.1 + g.1, out.2 + g.2 + 1);
        }
        out
    }
    let check = |report: &Report, root: u64, own: &HashMap<u64, (u64, u64, i64)>| {
        // Everyone under the root, with their depth below it.
        let mut want: HashMap<u64, u64> = HashMap::from([(root, 0)]);
        let mut frontier = vec![root];
        while let Some(d) = frontier.pop() {
            for c in children(d) {
                want.insert(c, want[&d] + 1);
                frontier.push(c);
            }
        }
        assert_eq!(report.rows().len(), want.len(), "{}", report.0);
        for row in report.rows() {
            let id = report.cell(row, "distributor").as_u64().unwrap();
            let int = |name: &str| report.cell(row, name).as_i64().unwrap();
            assert_eq!(int("depth") as u64, want[&id], "depth of {id}");
            let (customers, active, volume) = own.get(&id).copied().unwrap_or_default();
            assert_eq!(
                (int("customers") as u64, int("active_customers") as u64, int("personal_volume_minor")),
                (customers, active, volume),
                "{id}"
            );
            let (gv, ga, downline) = group(id, own, &tree);
            assert_eq!(
                (int("group_volume_minor"), int("group_active_customers") as u64, int("downline") as u64),
                (gv, ga, downline),
                "{id}"
            );
            // The tree chart's parent column names the sponsor's node.
            let sponsor = tree.iter().find(|(d, _)| *d == id).unwrap().1;
            if id == root {
                assert!(report.cell(row, "parent").is_null());
            } else {
                let parent_row =
                    report.rows().iter().find(|r| report.cell(r, "distributor").as_u64() == sponsor).unwrap();
                assert_eq!(report.cell(row, "parent"), report.cell(parent_row, "node"));
            }
        }
    };
    // The whole tree: the demo's one root (d-0 sponsors everyone, transitively).
    let roots: Vec<u64> = tree.iter().filter(|(_, s)| s.is_none()).map(|(d, _)| *d).collect();
    assert_eq!(roots.len(), 1);
    // By default as of the newest interaction.
    let report = demo.report_ok("downline-report", json!({}));
    check(&report, roots[0], &own_as_of(newest_interaction));
    let report = demo.report_ok("downline-report", json!({"as_of": as_of_ms}));
    check(&report, roots[0], &own);
    let total: i64 = spend.iter().filter(|(e, _)| demo.by_external[*e]["distributor"].is_u64()).map(|(_, v)| v).sum();
    assert_eq!(report.cell(&report.rows()[0], "group_volume_minor").as_i64(), Some(total));
    assert_eq!(
        report.0["chart"],
        json!({"kind": "tree", "title": "Sponsor tree by group volume", "x": "node", "y": ["parent", "group_volume_minor"]})
    );
    // One distributor's subtree: the one with the largest downline below the root.
    let sub = children(roots[0]).max_by_key(|&c| group(c, &own, &tree).2).unwrap();
    let report = demo.report_ok("downline-report", json!({"as_of": as_of_ms, "distributor": sub, "active_days": 90}));
    check(&report, sub, &own);

    let (status, _, html) = call(
        "POST",
        &demo.url("/reports/downline-report/run?format=html"),
        Some(&demo.token),
        "application/json",
        json!({"distributor": sub}).to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<svg") && html.contains("Sponsor tree by group volume"), "{html}");

    refused(&demo, "downline-report", json!({"distributor": 999_999}), "params.distributor");
    refused(&demo, "downline-report", json!({"active_days": 0}), "params.active_days");
    refused(&demo, "downline-report", json!({"as_of": "2024-13-01"}), "params.as_of");
    // Before the newest purchase the host's aggregates cannot give the state then (a customer who
    // bought in the window and again later would count as inactive): refused, not answered wrong.
    assert!(newest_purchase > 1_727_740_800_000, "the demo's purchases run past 2024-10-01");
    refused(&demo, "downline-report", json!({"as_of": "2024-10-01"}), "params.as_of");
    let (status, out) = demo.report("downline-report", json!({"as_of": newest_purchase - 1}));
    assert_eq!(status, 422, "{out}");
    assert!(out["detail"].as_str().unwrap().contains("before the newest purchase"), "{out}");
    let report = demo.report_ok("downline-report", json!({"as_of": newest_purchase, "distributor": sub}));
    check(&report, sub, &own_as_of(newest_purchase));
}

#[test]
fn campaign_targets_lists_the_segments_customers_whose_consent_permits_the_channel() {
    let demo = demo("campaign", 200, &[("rfm", built::RFM), ("campaign-targets", built::CAMPAIGN_TARGETS)]);
    // Consents beyond the demo's (marketing by email for most): c-0 withdrew everything later;
    // c-1 consents to marketing on every channel; c-2 to SMS only; c-3's consent rests on
    // legitimate interest, which does not permit marketing; c-4 consents to calls only.
    let t0 = 1_700_000_000_000_i64;
    let extra = [
        (
            "c-0",
            json!({"purpose": "marketing", "basis": "consent", "given_at": t0, "withdrawn_at": t0 + DAY, "source": "call"}),
        ),
        ("c-1", json!({"purpose": "marketing", "basis": "consent", "given_at": t0, "source": "branch"})),
        (
            "c-2",
            json!({"purpose": "marketing", "channel": "sms", "basis": "consent", "given_at": t0, "source": "branch"}),
        ),
        (
            "c-3",
            json!({"purpose": "marketing", "channel": "email", "basis": "legitimate-interest", "given_at": t0, "source": "crm"}),
        ),
        (
            "c-4",
            json!({"purpose": "marketing", "channel": "call", "basis": "consent", "given_at": t0, "source": "call"}),
        ),
    ];
    let mut customers: HashMap<String, Value> =
        demo.customers.iter().map(|c| (c["external_id"].as_str().unwrap().to_owned(), c.clone())).collect();
    for (ext, consent) in extra {
        let id = demo.id(ext);
        let mut person = demo.get(&format!("/customers/{id}"));
        let mut consents = person["consents"].as_array().cloned().unwrap_or_default();
        consents.push(consent.clone());
        let body = json!({"name": person["name"], "email": person["email"], "phone": person["phone"],
                          "branch": person["branch"], "distributor": person["distributor"],
                          "external_ids": person["external_ids"], "attributes": person["attributes"], "consents": consents});
        let (status, out) = json_call("PUT", &demo.url(&format!("/customers/{id}")), &demo.token, body);
        assert_eq!(status, 200, "{out}");
        person["consents"] = json!(consents);
        customers.get_mut(ext).unwrap()["consents"] = person["consents"].clone();
    }
    demo.rescore();

    // Independently: the newest marketing consent covering the channel (or the kind) decides.
    let permitted_on = |c: &Value, channels: &[&str]| {
        let newest = c["consents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|k| {
                k["purpose"] == "marketing" && (k["channel"].is_null() || channels.iter().any(|ch| k["channel"] == *ch))
            })
            .max_by_key(|k| k["given_at"].as_i64().unwrap());
        newest.is_some_and(|k| k["withdrawn_at"].is_null() && k["basis"] == "consent")
    };
    let permitted = |c: &Value, channel: &str| permitted_on(c, &[channel]);
    let ext_of: HashMap<u64, &str> =
        demo.by_external.iter().map(|(e, c)| (c["id"].as_u64().unwrap(), e.as_str())).collect();
    for (channel, address) in [("email", "email"), ("sms", "phone")] {
        let report = demo.report_ok("campaign-targets", json!({"channel": channel}));
        let got: BTreeMap<u64, String> = report
            .rows()
            .iter()
            .map(|r| {
                (report.cell(r, "customer").as_u64().unwrap(), report.cell(r, "address").as_str().unwrap().to_owned())
            })
            .collect();
        // The address is what the organization holds (the API's copy: phones are normalized).
        let want: BTreeMap<u64, String> = customers
            .iter()
            .filter(|(_, c)| permitted(c, channel))
            .map(|(e, _)| (demo.id(e), demo.by_external[e][address].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(got, want, "{channel}");
        assert!(!got.is_empty());
        // The consents added above, as the consent policy reads them.
        assert!(!got.contains_key(&demo.id("c-0")), "a newer withdrawal on every channel: {channel}");
        assert!(got.contains_key(&demo.id("c-1")), "a consent on every channel: {channel}");
        assert_eq!(got.contains_key(&demo.id("c-2")), channel == "sms" || permitted(&customers["c-2"], "email"));
        assert!(!got.contains_key(&demo.id("c-3")), "legitimate interest does not permit marketing: {channel}");
    }
    // A segment and a filter narrow the list to the customers with both.
    let segment = demo.profile(demo.id("c-1"))["labels"]["rfm.segment"].as_str().unwrap().to_owned();
    let branch = customers["c-1"]["branch"].as_str().unwrap().to_owned();
    let report = demo.report_ok(
        "campaign-targets",
        json!({"channel": "email", "segment": segment, "filter": format!("branch = \"{branch}\"")}),
    );
    let in_segment = demo.matching(&format!("label.rfm.segment = \"{segment}\" and branch = \"{branch}\""));
    let want: HashSet<u64> = in_segment.into_iter().filter(|id| permitted(&customers[ext_of[id]], "email")).collect();
    let got: HashSet<u64> = report.rows().iter().map(|r| report.cell(r, "customer").as_u64().unwrap()).collect();
    assert_eq!(got, want);
    assert!(got.contains(&demo.id("c-1")));
    assert!(report.rows().iter().all(|r| report.cell(r, "branch") == branch.as_str()));
    // Ready to export: CSV with a header and a line per target.
    let (status, ty, csv) = call(
        "POST",
        &demo.url("/reports/campaign-targets/run?format=csv"),
        Some(&demo.token),
        "application/json",
        json!({"channel": "sms"}).to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{csv}");
    assert!(ty.starts_with("text/csv"), "{ty}");
    assert_eq!(csv.lines().next(), Some("customer,name,channel,address,branch"));

    // A call campaign logged on channel "phone": the consent policy judges it on the channel and
    // the kind, so with `kind` a consent for calls counts; without it, it does not.
    let targets = |params: Value| -> HashSet<u64> {
        let report = demo.report_ok("campaign-targets", params);
        report.rows().iter().map(|r| report.cell(r, "customer").as_u64().unwrap()).collect()
    };
    let want = |channels: &[&str]| -> HashSet<u64> {
        customers.iter().filter(|(_, c)| permitted_on(c, channels)).map(|(e, _)| demo.id(e)).collect()
    };
    let calls = targets(json!({"channel": "phone", "kind": "call"}));
    assert_eq!(calls, want(&["phone", "call"]));
    assert!(calls.contains(&demo.id("c-4")), "a consent for calls covers a call on channel phone");
    let phone = targets(json!({"channel": "phone"}));
    assert_eq!(phone, want(&["phone"]));
    assert!(!phone.contains(&demo.id("c-4")), "without the kind, only the channel's consents count");

    refused(&demo, "campaign-targets", json!({}), "params.channel");
    refused(&demo, "campaign-targets", json!({"channel": "email", "purpose": "surveys"}), "params.purpose");
    refused(&demo, "campaign-targets", json!({"channel": "email", "segment": ""}), "params.segment");
    refused(&demo, "campaign-targets", json!({"channel": "phone", "kind": " "}), "params.kind");
    refused(&demo, "campaign-targets", json!({"channel": "email", "filter": "branch ="}), "params.filter");
}

#[test]
fn label_before_groups_customers_by_their_label_before_the_latest_scoring() {
    use rapport::model::{AggregateQuery, LabelColumn, ScoreBatch};
    let dir = tempfile::tempdir().unwrap();
    let store = rapport::store::Store::open(dir.path()).unwrap();
    store.create_org("seg", "seg").unwrap();
    let org = store.org("seg").unwrap();
    let actor = rapport::model::Actor { name: "test".into(), role: rapport::model::Role::Admin };
    let body: String =
        (0..4).map(|k| json!({"source": "s", "external_id": format!("c-{k}")}).to_string() + "\n").collect();
    crate::import(
        &org,
        &actor,
        rapport::pipeline::ImportKind::Customers,
        rapport::pipeline::ImportFormat::Ndjson,
        body.as_bytes(),
    )
    .unwrap();
    let ids = org.scorable_ids(0, 10).unwrap();
    assert_eq!(ids.len(), 4);
    // Customer k's labels over three scorings, oldest first (`-` = not scored that time).
    let history = [["a", "a", "b"], ["a", "b", "b"], ["-", "-", "a"], ["b", "a", "-"]];
    for (at, run) in [1_000, 2_000, 3_000].into_iter().enumerate() {
        let scored: Vec<(u64, &str)> =
            ids.iter().zip(&history).map(|(&id, h)| (id, h[at])).filter(|(_, l)| *l != "-").collect();
        let batch = ScoreBatch {
            scores: Vec::new(),
            labels: vec![LabelColumn {
                name: "segment".into(),
                categories: vec!["a".into(), "b".into()],
                codes: scored.iter().map(|(_, l)| u32::from(*l == "b")).collect(),
            }],
            explanations: Vec::new(),
        };
        let batch_ids: Vec<u64> = scored.iter().map(|(id, _)| *id).collect();
        org.write(|tx| tx.save_scores("p", &batch, &batch_ids, run)).unwrap();
    }
    let q = |group_by: &[&str]| AggregateQuery {
        filter: String::new(),
        group_by: group_by.iter().map(|g| (*g).to_owned()).collect(),
        aggregations: Vec::new(),
        limit: 100,
    };
    let result = org.aggregate(&q(&["label.p.segment", "label_before.p.segment"])).unwrap();
    let cells: Vec<(Option<String>, Option<String>, u64)> = (0..result.counts.len())
        .map(|i| (result.keys[0].values[i].clone(), result.keys[1].values[i].clone(), result.counts[i]))
        .collect();
    let s = |v: &str| Some(v.to_owned());
    // c-0: b after a; c-1: b after b; c-2: a, scored once; c-3: a after b (its latest scoring was
    // the second; the label before it, the first).
    let mut want = vec![(s("a"), None, 1), (s("a"), s("b"), 1), (s("b"), s("a"), 1), (s("b"), s("b"), 1)];
    want.sort();
    let mut got = cells;
    got.sort();
    assert_eq!(got, want);
    for bad in ["label_before.p", "label_before..segment", "label_before."] {
        let err = org.aggregate(&q(&[bad])).unwrap_err().to_string();
        assert!(err.contains(bad) && err.contains("label_before.<plugin>.<label>"), "{bad}: {err}");
    }
}

/// A host that does not know the `label_before.` key (an older Rapport): everything else is the
/// store's.
struct OlderHost(rapport::store::OrgStore);

impl rapport::plugins::DataSource for OlderHost {
    fn customer(&self, id: u64) -> Result<Option<rapport::model::Customer>, rapport::plugins::DataError> {
        rapport::plugins::DataSource::customer(&self.0, id)
    }
    fn find_customer(
        &self,
        source: &str,
        id: &str,
    ) -> Result<Option<rapport::model::Customer>, rapport::plugins::DataError> {
        rapport::plugins::DataSource::find_customer(&self.0, source, id)
    }
    fn timeline(
        &self,
        customer: u64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<rapport::model::Interaction>, rapport::plugins::DataError> {
        rapport::plugins::DataSource::timeline(&self.0, customer, before, limit)
    }
    fn query_customers(
        &self,
        filter: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Result<rapport::model::CustomerPage, String>, rapport::plugins::DataError> {
        rapport::plugins::DataSource::query_customers(&self.0, filter, cursor, limit)
    }
    fn distributor(&self, id: u64) -> Result<Option<rapport::model::Distributor>, rapport::plugins::DataError> {
        rapport::plugins::DataSource::distributor(&self.0, id)
    }
    fn downline(
        &self,
        distributor: u64,
        max_depth: u32,
    ) -> Result<Vec<rapport::model::DownlineMember>, rapport::plugins::DataError> {
        rapport::plugins::DataSource::downline(&self.0, distributor, max_depth)
    }
    fn aggregate(
        &self,
        q: &rapport::model::AggregateQuery,
    ) -> Result<Result<rapport::model::AggregateResult, String>, rapport::plugins::DataError> {
        match q.group_by.iter().find(|k| k.starts_with("label_before.")) {
            Some(k) => Ok(Err(format!("invalid filter: unknown field `{k}`"))),
            None => rapport::plugins::DataSource::aggregate(&self.0, q),
        }
    }
}

#[test]
fn segments_summary_says_when_the_host_cannot_report_movement() {
    // A host without score history (an older one): the sizes still come, the movement columns
    // are empty and the title says why, rather than zeros that read as "nobody moved".
    use rapport::plugins::{CallContext, Limits, Meter, World};
    let customers: Vec<Value> = (1..=3u64).map(|id| json!({"id": id})).collect();
    let fixture = rapport::fixture::Fixture::parse(&json!({"customers": customers}).to_string()).unwrap();
    let rt = crate::runtime(Meter::Fuel);
    let reporter = crate::load(&rt, built::SEGMENTS_SUMMARY);
    let older = OlderHost(fixture.store().unwrap());
    let ctx = CallContext::new(std::sync::Arc::new(older), &json!({}), Limits::for_world(World::Reporter));
    let report = serde_json::to_value(reporter.run_report(&ctx, &json!({})).unwrap().value).unwrap();
    let report = Report(report);
    assert!(report.0["title"].as_str().unwrap().contains("(no movement: "), "{}", report.0);
    assert_eq!(report.rows().len(), 1, "{}", report.0);
    let row = &report.rows()[0];
    assert_eq!(report.cell(row, "customers"), 3);
    for name in ["before", "moved_in", "moved_out", "first_scored"] {
        assert!(report.cell(row, name).is_null(), "{name}: {}", report.0);
    }

    // `rapport plugin run` reads a real store, which knows the key: nobody in the fixture was
    // ever scored, so nobody moved, and the report says so with numbers.
    let ctx = crate::ctx_with(
        rapport::fixture::Fixture::parse(&json!({"customers": customers}).to_string()).unwrap(),
        World::Reporter,
        json!({}),
    );
    let report = Report(serde_json::to_value(reporter.run_report(&ctx, &json!({})).unwrap().value).unwrap());
    assert!(!report.0["title"].as_str().unwrap().contains("no movement"), "{}", report.0);
    let row = &report.rows()[0];
    assert_eq!(report.cell(row, "customers"), 3);
    for name in ["before", "moved_in", "moved_out", "first_scored"] {
        assert_eq!(report.cell(row, name), 0, "{name}: {}", report.0);
    }
}

/// The consent policy on the demo organization: the generator gave ~70% of customers a marketing
/// consent for email. A marketing email lands for every one of them and is refused (with the
/// reason, nothing stored) for every one without; an email without a purpose needs none; a
/// withdrawal takes effect on the next send.
#[test]
fn consent_judges_the_demo_organizations_marketing_by_each_customers_consents() {
    let demo = demo("consented", 60, &[("consent", built::CONSENT)]);
    let consented = |c: &Value| {
        c["consents"].as_array().is_some_and(|k| {
            k.iter().any(|k| k["purpose"] == "marketing" && k["channel"] == "email" && k["withdrawn_at"].is_null())
        })
    };
    // With a purpose, or without one (a service email: no consent needed).
    let email = |id: u64, purpose: Option<&str>| {
        let attributes = purpose.map_or(json!({}), |p| json!({"purpose": p}));
        json_call(
            "POST",
            &demo.url("/interactions"),
            &demo.token,
            json!({"customer": id, "kind": "email", "channel": "email", "occurred_at": 1_790_000_000_000i64,
                   "subject": "Songkran offers", "attributes": attributes}),
        )
    };
    let timeline_len =
        |id: u64| demo.get(&format!("/customers/{id}/timeline?limit=1000"))["items"].as_array().unwrap().len();
    let (mut allowed, mut denied) = (0, 0);
    for generated in &demo.customers {
        let ext = generated["external_id"].as_str().unwrap();
        let id = demo.id(ext);
        let before = timeline_len(id);
        let (status, out) = email(id, Some("marketing"));
        if consented(generated) {
            assert_eq!(status, 201, "{ext} has a marketing consent for email: {out}");
            allowed += 1;
        } else {
            assert_eq!(status, 422, "{ext} has none: {out}");
            assert!(out["detail"].as_str().unwrap().contains("consent"), "{out}");
            assert_eq!(timeline_len(id), before, "{ext}: nothing stored");
            denied += 1;
            // A service email (no purpose) needs no consent.
            let (status, out) = email(id, None);
            assert_eq!(status, 201, "{out}");
        }
    }
    assert!(allowed > 10 && denied > 5, "both kinds of customer in the demo: {allowed} / {denied}");

    // A withdrawal (read, change, write back) blocks the next marketing email at once.
    let generated = demo.customers.iter().find(|c| consented(c)).unwrap();
    let id = demo.id(generated["external_id"].as_str().unwrap());
    let mut profile = demo.profile(id);
    for extra in ["scores", "labels", "explanations", "segments", "timeline", "timeline_next"] {
        profile.as_object_mut().unwrap().remove(extra);
    }
    profile["consents"][0]["withdrawn_at"] = json!(1_790_000_000_000i64);
    let (status, out) = json_call("PUT", &demo.url(&format!("/customers/{id}")), &demo.token, profile);
    assert_eq!(status, 200, "{out}");
    let (status, out) = email(id, Some("marketing"));
    assert_eq!(status, 422, "withdrawn: {out}");
}
