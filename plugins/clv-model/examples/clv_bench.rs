//! The clv fit benchmark's Rust side (see `bench/clv.sh`): simulate customers from the CDNOW
//! estimates, write their summaries as CSV for `lifetimes`, then time the BG/NBD and
//! Gamma-Gamma fits of this crate on the same data.
//!
//! cargo run --release -p clv-model --example clv_bench --target x86_64-unknown-linux-gnu -- 100000 target/clv-bench

use std::io::Write;
use std::time::Instant;

use clv_model::sim::{histories, simulate};
use clv_model::{BgNbd, Compressed, GammaGamma, Spend};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let customers: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = std::path::PathBuf::from(args.get(2).cloned().unwrap_or_else(|| "target/clv-bench".into()));
    std::fs::create_dir_all(&dir).expect("the output directory");

    let bg = BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };
    let gg = GammaGamma { p: 6.25, q: 3.74, gamma: 15.44 };
    let end_day = 78 * 7 - 1;
    let hs = histories(&simulate(&bg, &gg, customers, 12.0, end_day, 2005), end_day);

    // lifetimes' columns: frequency = repeat transactions, recency = t_x, T, all in weeks, and
    // monetary_value = the repeat transactions' mean (0 without any, as lifetimes writes it).
    let mut csv = std::io::BufWriter::new(std::fs::File::create(dir.join("summary.csv")).unwrap());
    writeln!(csv, "frequency,recency,T,monetary_value").unwrap();
    for h in &hs {
        let mean = if h.mean_value.is_finite() { h.mean_value } else { 0.0 };
        writeln!(csv, "{},{},{},{}", h.x, h.t_x(), h.t(), mean).unwrap();
    }
    csv.flush().unwrap();

    // Each fit timed from the histories, data preparation (compression) included; best of 3.
    let time = |f: &mut dyn FnMut()| {
        (0..3)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let mut bg_fit = None;
    let bg_s = time(&mut || bg_fit = Some(Compressed::new(&hs).fit()));
    let mut gg_fit = None;
    let gg_s = time(&mut || gg_fit = Spend::new(&hs).fit());
    let (b, g) = (bg_fit.unwrap(), gg_fit.unwrap());
    let out = format!(
        "{{\"customers\": {}, \"distinct_histories\": {}, \"gamma_gamma_customers\": {}, \"bgnbd_seconds\": {bg_s}, \"gamma_gamma_seconds\": {gg_s}, \
         \"bgnbd\": {{\"r\": {}, \"alpha\": {}, \"a\": {}, \"b\": {}, \"ll\": {}, \"evaluations\": {}}}, \
         \"gamma_gamma\": {{\"p\": {}, \"q\": {}, \"gamma\": {}, \"ll\": {}, \"evaluations\": {}}}}}",
        hs.len(),
        Compressed::new(&hs).distinct(),
        g.customers,
        b.params.r,
        b.params.alpha,
        b.params.a,
        b.params.b,
        b.log_likelihood,
        b.evaluations,
        g.params.p,
        g.params.q,
        g.params.gamma,
        g.log_likelihood,
        g.evaluations
    );
    std::fs::write(dir.join("rust.json"), &out).unwrap();
    println!("{out}");
}
