//! Store benchmarks: `cargo bench -p rapport --bench store` (figures go to BENCHMARKS.md).
//!
//! 1. Import throughput of interactions (NDJSON through `Pipeline::import`: parse, validate,
//!    resolve the customer, idempotency check, insert, audit) against the raw limit: the same
//!    rows, already parsed, inserted with one prepared statement in one transaction, no checks,
//!    into the same schema. Measured side by side on the same generated data.
//! 2. Profile load (customer + 50 timeline items + scores + segments): p50 and p99 over random
//!    customers of the imported store, and the database's size on disk.
//!
//! `BENCH_CUSTOMERS` sets the size (default 170 000 customers ≈ 1M interactions);
//! `BENCH_LOYAL=1` makes customers loyal (lower drop-out, faster buying: ≈ 20 interactions each),
//! so `BENCH_CUSTOMERS=1000000 BENCH_LOYAL=1` builds the 1M-customer / 20M-interaction store.

use std::io::BufRead;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rapport::demo::DemoSpec;
use rapport::model::Actor;
use rapport::pipeline::{ImportFormat, ImportKind};
use rapport::store::Store;

fn main() {
    let customers: u64 = std::env::var("BENCH_CUSTOMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(170_000);
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DemoSpec::new(7, customers);
    if std::env::var_os("BENCH_LOYAL").is_some() {
        (spec.alpha, spec.a, spec.b) = (2.5, 0.3, 6.0);
    }
    let start = Instant::now();
    let files = rapport::demo::write(&spec, &dir.path().join("files")).unwrap();
    println!(
        "generated {} customers, {} interactions in {:.1} s",
        files.counts.1,
        files.counts.2,
        start.elapsed().as_secs_f64()
    );

    let store = Store::open(&dir.path().join("data")).unwrap();
    store.create_org("bench", "Bench").unwrap();
    let org = store.org("bench").unwrap();
    let actor = Actor { name: "bench".into(), role: rapport::model::Role::Admin };
    // Records come in through the write pipeline (with no plugins installed here).
    let runtime = rapport::plugins::Runtime::new(rapport::plugins::RuntimeConfig::default()).unwrap();
    let pipeline = rapport::pipeline::Pipeline::new(store.clone(), runtime, Default::default());
    let import = |_: &rapport::store::OrgStore, actor: &Actor, kind, format, reader| {
        pipeline.import("bench", actor, kind, format, reader, |_| {}, false)
    };
    let open = |p: &std::path::Path| std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(p).unwrap());
    for (file, kind) in [(&files.distributors, ImportKind::Distributors), (&files.customers, ImportKind::Customers)] {
        import(&org, &actor, kind, ImportFormat::Ndjson, open(file)).unwrap();
    }

    let start = Instant::now();
    let report =
        import(&org, &actor, ImportKind::Interactions, ImportFormat::Ndjson, open(&files.interactions)).unwrap();
    let import = start.elapsed();
    assert!(report.rejected.is_empty(), "{:?}", &report.rejected[..1]);
    let rows = report.created;

    let raw = raw_insert(&dir.path().join("raw"), &files.interactions);
    let per_sec = |d: Duration| rows as f64 / d.as_secs_f64();
    println!("import {rows} interactions (NDJSON, batches of {}):", rapport::pipeline::BATCH);
    println!("  rapport import: {:>9.0} rows/s ({:.2} s)", per_sec(import), import.as_secs_f64());
    println!("  raw insert:     {:>9.0} rows/s ({:.2} s)", per_sec(raw), raw.as_secs_f64());
    println!("  ratio to the raw limit: {:.2}x", raw.as_secs_f64() / import.as_secs_f64());

    // Profile loads of random customers.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let ids: Vec<u64> = org.list_customers("", None, 1).unwrap().items.iter().map(|c| c.id).collect();
    let first = ids[0];
    let mut times = Vec::with_capacity(5_000);
    for _ in 0..5_000 {
        let id = first + rng.random_range(0..customers);
        let start = Instant::now();
        let profile = org.profile(id, 50).unwrap();
        times.push(start.elapsed());
        assert!(profile.is_some());
    }
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    let size: u64 =
        std::fs::read_dir(dir.path().join("data")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    println!(
        "profile load (customer + 50 timeline items + scores + segments), {customers} customers / {rows} interactions: \
         p50 {:.3} ms, p99 {:.3} ms; database {:.0} MiB",
        pct(0.5),
        pct(0.99),
        size as f64 / (1 << 20) as f64
    );
}

/// The physical limit: parse nothing at insert time, check nothing, one statement, one transaction.
fn raw_insert(dir: &std::path::Path, file: &std::path::Path) -> Duration {
    // Rows are parsed before the clock starts; only the inserts are timed.
    let rows: Vec<(i64, String, String, i64, Option<i64>)> =
        std::io::BufReader::new(std::fs::File::open(file).unwrap())
            .lines()
            .enumerate()
            .map(|(n, line)| {
                let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
                (
                    (n % 1000) as i64 + 1,
                    v["kind"].as_str().unwrap().to_owned(),
                    v["external_id"].as_str().unwrap().to_owned(),
                    v["occurred_at"].as_i64().unwrap(),
                    v["amount_minor"].as_i64(),
                )
            })
            .collect();
    let store = Store::open(dir).unwrap();
    drop(store);
    let mut conn = rusqlite::Connection::open(dir.join("rapport.db")).unwrap();
    conn.execute_batch(
        "PRAGMA foreign_keys = OFF; PRAGMA synchronous = NORMAL; INSERT INTO orgs (slug, name, created_at) VALUES ('raw', 'Raw', 0);",
    )
    .unwrap();
    let start = Instant::now();
    let tx = conn.transaction().unwrap();
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO interactions (org_id, customer_id, kind, channel, source, external_id, occurred_at, amount_minor, currency) \
                 VALUES (1, ?1, ?2, 'web', 'shop', ?3, ?4, ?5, 'THB')",
            )
            .unwrap();
        for (customer, kind, ext, at, amount) in &rows {
            stmt.execute(rusqlite::params![customer, kind, ext, at, amount]).unwrap();
        }
    }
    tx.commit().unwrap();
    start.elapsed()
}
