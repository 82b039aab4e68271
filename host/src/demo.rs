//! Demo data: an organization with branches, a distributor tree and customers whose purchases
//! follow a buy-till-you-die process, plus calls, chats and tickets. Deterministic from a seed.
//!
//! Purchases follow the BG/NBD story (Fader, Hardie & Lee 2005): while alive, a customer buys as a
//! Poisson process with rate λ ~ Gamma(r, α) per week; after each purchase they drop out for good
//! with probability p ~ Beta(a, b). The true parameters are written beside the data, so the clv
//! plugin's fit can be checked against them.
//!
//! The generator writes NDJSON files (the reference scenario's record shapes) and streams them
//! through the same import as any other source.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Exp, Gamma};
use serde::Serialize;
use serde_json::json;

const WEEK_MS: f64 = 7.0 * 86_400_000.0;

/// What to generate.
#[derive(Debug, Clone, Serialize)]
pub struct DemoSpec {
    pub seed: u64,
    pub customers: u64,
    pub branches: u32,
    pub distributors: u32,
    /// First day of the history (unix ms) and its length in weeks.
    pub start: i64,
    pub weeks: f64,
    /// BG/NBD parameters of the purchase process.
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    /// Mean purchase amount in minor units (Gamma-distributed per customer).
    pub mean_amount_minor: f64,
}

impl DemoSpec {
    /// About `interactions / customers` ≈ 10 touchpoints per customer with these defaults.
    pub fn new(seed: u64, customers: u64) -> DemoSpec {
        DemoSpec {
            seed,
            customers,
            branches: 5,
            distributors: (customers / 50).clamp(3, 20_000) as u32,
            start: 1_672_531_200_000, // 2023-01-01
            weeks: 104.0,
            r: 0.8,
            alpha: 8.0,
            a: 0.8,
            b: 2.5,
            mean_amount_minor: 150_000.0,
        }
    }
}

/// The files written, and how many records each holds.
#[derive(Debug, Clone, Serialize)]
pub struct DemoFiles {
    pub distributors: PathBuf,
    pub customers: PathBuf,
    pub interactions: PathBuf,
    pub counts: (u64, u64, u64),
}

const BRANCH_NAMES: [&str; 8] = ["bkk-01", "bkk-02", "cnx-01", "hkt-01", "kkn-01", "hdy-01", "pty-01", "ayu-01"];
const FIRST: [&str; 12] =
    ["Somchai", "Suda", "Anan", "Malee", "Niran", "Ploy", "Ann", "Ben", "Chloe", "David", "Emi", "Farid"];
const LAST: [&str; 10] =
    ["Jaidee", "Srisuk", "Wongsa", "Thongdee", "Smith", "Tanaka", "Nguyen", "Garcia", "Kaewmanee", "Boonmee"];

/// Write the demo organization's data as NDJSON files into `dir`.
pub fn write(spec: &DemoSpec, dir: &Path) -> std::io::Result<DemoFiles> {
    std::fs::create_dir_all(dir)?;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let files = DemoFiles {
        distributors: dir.join("distributors.ndjson"),
        customers: dir.join("customers.ndjson"),
        interactions: dir.join("interactions.ndjson"),
        counts: (0, 0, 0),
    };
    let branches = &BRANCH_NAMES[..spec.branches.clamp(1, BRANCH_NAMES.len() as u32) as usize];

    // A sponsor tree: each distributor is sponsored by an earlier one, favouring recent recruits.
    let mut out = BufWriter::new(std::fs::File::create(&files.distributors)?);
    for d in 0..spec.distributors {
        let sponsor = (d > 0).then(|| rng.random_range(d.saturating_sub(50)..d));
        let rank = ["member", "silver", "gold", "diamond"][(rng.random::<f64>().powi(3) * 4.0) as usize];
        let mut record = json!({
            "source": "mlm", "external_id": format!("d-{d}"), "name": name(&mut rng), "rank": rank,
            "branch": branches[d as usize % branches.len()],
        });
        if let Some(s) = sponsor {
            record["sponsor"] = json!(format!("d-{s}"));
        }
        writeln!(out, "{record}")?;
    }
    out.flush()?;

    let gamma_rate = Gamma::new(spec.r, 1.0 / spec.alpha).expect("valid Gamma(r, alpha)");
    let beta_dropout = Beta::new(spec.a, spec.b).expect("valid Beta(a, b)");
    let mut customers = BufWriter::new(std::fs::File::create(&files.customers)?);
    let mut interactions = BufWriter::new(std::fs::File::create(&files.interactions)?);
    let mut n_interactions = 0u64;
    let end = spec.start as f64 + spec.weeks * WEEK_MS;
    for c in 0..spec.customers {
        let id = format!("c-{c}");
        let who = name(&mut rng);
        let branch = branches[rng.random_range(0..branches.len())];
        let mut record = json!({
            "source": "shop", "external_id": id, "name": who,
            "email": format!("{}.{c}@example.com", who.to_lowercase().replace(' ', ".")),
            "phone": format!("+668{:08}", rng.random_range(0..100_000_000u32)),
            "branch": branch,
            "attributes": { "age": rng.random_range(18..80), "channel_pref": pick(&mut rng, &["line", "email", "sms"]) },
        });
        if spec.distributors > 0 && rng.random::<f64>() < 0.6 {
            record["distributor"] =
                json!({ "source": "mlm", "external_id": format!("d-{}", rng.random_range(0..spec.distributors)) });
        }
        if rng.random::<f64>() < 0.7 {
            record["consents"] = json!([{ "purpose": "marketing", "channel": "email", "basis": "consent",
                "given_at": spec.start, "source": "web-form" }]);
        }
        writeln!(customers, "{record}")?;

        // Purchases: first at a uniform time, then Poisson(λ) while alive.
        let lambda: f64 = gamma_rate.sample(&mut rng).max(1e-6);
        let p: f64 = beta_dropout.sample(&mut rng);
        let spend = Gamma::new(4.0, spec.mean_amount_minor / 4.0).expect("valid spend Gamma");
        let per_week = Exp::new(lambda).expect("positive rate");
        let mut t = spec.start as f64 + rng.random::<f64>() * spec.weeks * WEEK_MS * 0.5;
        let mut k = 0;
        loop {
            let amount: f64 = spend.sample(&mut rng);
            writeln!(
                interactions,
                "{}",
                json!({ "source": "shop", "external_id": format!("o-{c}-{k}"), "customer": { "source": "shop", "external_id": id },
                    "kind": "purchase", "channel": pick(&mut rng, &["web", "store", "line"]),
                    "occurred_at": t as i64, "amount_minor": amount.round() as i64, "currency": "THB" })
            )?;
            n_interactions += 1;
            k += 1;
            if rng.random::<f64>() < p {
                break;
            }
            t += per_week.sample(&mut rng) * WEEK_MS;
            if t >= end {
                break;
            }
        }
        // Service touchpoints: a few calls and chats, sometimes a ticket.
        for j in 0..rng.random_range(0..4) {
            let at = spec.start as f64 + rng.random::<f64>() * spec.weeks * WEEK_MS;
            let kind = if rng.random::<f64>() < 0.5 { "call" } else { "chat" };
            let body = pick(
                &mut rng,
                &["Asked about delivery", "ขอบคุณมากค่ะ บริการดีมาก", "Wants a refund", "Happy with the product"],
            );
            writeln!(
                interactions,
                "{}",
                json!({ "source": "callcenter", "external_id": format!("s-{c}-{j}"), "customer": { "source": "shop", "external_id": id },
                    "kind": kind, "channel": if kind == "call" { "phone" } else { "line" }, "occurred_at": at as i64, "body": body })
            )?;
            n_interactions += 1;
        }
        if rng.random::<f64>() < 0.15 {
            let at = spec.start as f64 + rng.random::<f64>() * spec.weeks * WEEK_MS;
            let closed = rng.random::<f64>() < 0.7;
            let mut ticket = json!({ "status": if closed { "closed" } else { "open" },
                "category": pick(&mut rng, &["delivery", "billing", "product"]),
                "due_at": (at + 2.0 * 86_400_000.0) as i64 });
            if closed {
                ticket["resolution"] = json!("resolved by phone");
                ticket["closed_at"] = json!((at + rng.random::<f64>() * 4.0 * 86_400_000.0) as i64);
            }
            writeln!(
                interactions,
                "{}",
                json!({ "source": "callcenter", "external_id": format!("t-{c}"), "customer": { "source": "shop", "external_id": id },
                    "kind": "ticket", "channel": "phone", "occurred_at": at as i64, "subject": "Service request", "ticket": ticket })
            )?;
            n_interactions += 1;
        }
    }
    customers.flush()?;
    interactions.flush()?;
    std::fs::write(dir.join("truth.json"), serde_json::to_string_pretty(spec).expect("a spec serializes"))?;
    Ok(DemoFiles { counts: (spec.distributors as u64, spec.customers, n_interactions), ..files })
}

fn name(rng: &mut ChaCha8Rng) -> String {
    format!("{} {}", pick(rng, &FIRST), pick(rng, &LAST))
}

fn pick<'a>(rng: &mut ChaCha8Rng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}
