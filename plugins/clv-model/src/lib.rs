//! Customer lifetime value for Rapport: the BG/NBD model of purchase counts (Fader, Hardie & Lee
//! 2005) and the Gamma-Gamma model of spend (Fader & Hardie 2013), fitted by maximum likelihood.
//!
//! Shared by the `clv` scorer (fits during the rescore's `fit` phase, scores every customer) and
//! the `clv-fit` reporter (fits and shows the parameters). Free of the plugin SDK, so its tests
//! and benchmark run natively: `cargo test -p clv-model --target x86_64-unknown-linux-gnu`.
//!
//! Units, as in the papers: time in weeks, measured in whole days (several purchases on one day
//! are one transaction, so a history is made of distinct purchase days).

pub mod bgnbd;
pub mod gamma_gamma;
pub mod optimize;
pub mod sim;
pub mod special;

pub use bgnbd::{BgNbd, Compressed, Fit};
pub use gamma_gamma::{GammaGamma, Spend};

pub const DAY_MS: i64 = 86_400_000;

/// The UTC day (days since 1970-01-01) of a unix-millisecond time.
pub fn day_of(ms: f64) -> i64 {
    (ms / DAY_MS as f64).floor() as i64
}

/// One customer's purchase history as both models need it: Fader & Hardie's summary (the
/// `lifetimes` package's `frequency`, `recency`, `T` and `monetary_value`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct History {
    /// Repeat transactions: purchase days after the first.
    pub x: u32,
    /// Days from the first purchase day to the last (t_x · 7).
    pub tx_days: u32,
    /// Days from the first purchase day to the end of calibration (T · 7).
    pub t_days: u32,
    /// Mean value of the repeat transactions (a day's purchases, the first day left out), in
    /// currency units; NaN without repeat transactions or when the first day's spend is unknown.
    pub mean_value: f64,
}

impl History {
    /// A history from the scorer's features: distinct purchase days, first and last purchase
    /// time (ms), total spend and the first purchase day's spend (minor units), up to and
    /// including `end_day`. None for a customer without purchases by then.
    ///
    /// The mean value is over the repeat transactions only, as Fader & Hardie define it: the first
    /// purchase is often unlike later ones (a sign-up bundle, a trial), and the Gamma-Gamma model
    /// is fitted on repeat customers' repeat spend. A zero-amount purchase day is a transaction
    /// worth 0 (it counts in x and in the mean, as in `lifetimes`), so the mean can be 0 when
    /// every repeat day was free; [`Spend`] leaves such customers out of the fit. `first_day_minor`
    /// NaN (not read) leaves the mean unknown.
    pub fn from_features(
        days: f64,
        first_at: f64,
        last_at: f64,
        spend_minor: f64,
        first_day_minor: f64,
        end_day: i64,
        minor_per_unit: f64,
    ) -> Option<History> {
        if !(days >= 1.0 && first_at.is_finite() && last_at.is_finite()) {
            return None;
        }
        let (first, last) = (day_of(first_at), day_of(last_at));
        if first > end_day {
            return None;
        }
        let x = days.round() as u32 - 1;
        let repeat_spend = (spend_minor - first_day_minor) / minor_per_unit;
        Some(History {
            x,
            tx_days: (last.min(end_day) - first).max(0) as u32,
            t_days: (end_day - first) as u32,
            mean_value: if x > 0 { repeat_spend / x as f64 } else { f64::NAN },
        })
    }

    /// A history from its summary in weeks (the `clv` scorer's `frequency`, `recency_weeks`,
    /// `age_weeks` and `mean_value` scores, which the `clv-fit` reporter reads back).
    pub fn from_summary(frequency: f64, recency_weeks: f64, age_weeks: f64, mean_value: f64) -> Option<History> {
        if !(frequency >= 0.0 && recency_weeks >= 0.0 && age_weeks >= recency_weeks) {
            return None;
        }
        let x = frequency.round() as u32;
        Some(History {
            x,
            tx_days: (recency_weeks * 7.0).round() as u32,
            t_days: (age_weeks * 7.0).round() as u32,
            mean_value: if x > 0 { mean_value } else { f64::NAN },
        })
    }

    /// Whether the history is one the Gamma-Gamma fit uses: repeat transactions with a positive
    /// mean (the model's values are Gamma-distributed, so a mean of 0 has no density).
    pub fn has_repeat_spend(&self) -> bool {
        self.x > 0 && self.mean_value.is_finite() && self.mean_value > 0.0
    }

    pub fn t_x(&self) -> f64 {
        self.tx_days as f64 / 7.0
    }

    pub fn t(&self) -> f64 {
        self.t_days as f64 / 7.0
    }
}

/// Both models' parameters and the calibration they were fitted for: the `clv` scorer's model
/// bytes, handed from `fit` to every `score` call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    pub bgnbd: BgNbd,
    /// None when no customer had a purchase amount.
    pub gamma_gamma: Option<GammaGamma>,
    /// The calibration end, as a UTC day (see [`day_of`]).
    pub end_day: i64,
}

/// `clv2`: the Gamma-Gamma parameters are the published model's (repeat transactions only);
/// `clv1` bytes (every transaction's mean) are refused, so a stale model is refitted.
const MAGIC: &[u8; 4] = b"clv2";

impl Model {
    /// Little-endian: magic, the 7 parameters as f64 (NaN for an absent Gamma-Gamma), end day.
    pub fn encode(&self) -> Vec<u8> {
        let gg = self.gamma_gamma.unwrap_or(GammaGamma { p: f64::NAN, q: f64::NAN, gamma: f64::NAN });
        let mut out = MAGIC.to_vec();
        for v in [self.bgnbd.r, self.bgnbd.alpha, self.bgnbd.a, self.bgnbd.b, gg.p, gg.q, gg.gamma] {
            out.extend(v.to_le_bytes());
        }
        out.extend(self.end_day.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Model> {
        let body = bytes.strip_prefix(MAGIC.as_slice())?;
        if body.len() != 8 * 8 {
            return None;
        }
        let f = |i: usize| f64::from_le_bytes(body[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let gg = GammaGamma { p: f(4), q: f(5), gamma: f(6) };
        Some(Model {
            bgnbd: BgNbd { r: f(0), alpha: f(1), a: f(2), b: f(3) },
            gamma_gamma: (!gg.p.is_nan()).then_some(gg),
            end_day: i64::from_le_bytes(body[56..64].try_into().expect("8 bytes")),
        })
    }
}

/// One customer's forecast over a horizon: what the `clv` scorer stores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    pub p_alive: f64,
    /// Transactions over the horizon (BG/NBD).
    pub expected_purchases: f64,
    /// Value of one future transaction, in currency units (Gamma-Gamma, eq. (5) of the 2013
    /// note): the population mean for a customer without repeat spend; NaN without a model.
    pub expected_value: f64,
    /// The lifetime value over the horizon, in currency units: expected purchases × expected
    /// value (undiscounted, before margin). `expected_value` alone is a transaction's worth, not
    /// a customer's, so reports that rank or average customers by value need this product.
    pub value: f64,
}

impl Model {
    /// The forecast for one history over the next `horizon_weeks`.
    pub fn forecast(&self, h: &History, horizon_weeks: f64) -> Forecast {
        let (x, t_x, t) = (h.x as f64, h.t_x(), h.t());
        let expected_purchases = self.bgnbd.conditional_expected_purchases(horizon_weeks, x, t_x, t);
        let expected_value = self.gamma_gamma.map_or(f64::NAN, |gg| gg.expected_value_of(h));
        Forecast {
            p_alive: self.bgnbd.p_alive(x, t_x, t),
            expected_purchases,
            expected_value,
            value: expected_purchases * expected_value,
        }
    }
}

/// Both fits over a population, and what they saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fitted {
    pub bgnbd: Fit<BgNbd>,
    pub gamma_gamma: Option<Fit<GammaGamma>>,
    /// Distinct (x, t_x, T) histories: the BG/NBD likelihood's work per evaluation.
    pub distinct_histories: usize,
    /// Customers with repeat transactions; of those, the ones whose repeat transactions were
    /// worth 0 in all, and the ones whose repeat mean is not known (the scorer's fit reads a
    /// sample of the first days): both left out of the Gamma-Gamma fit.
    pub repeat_customers: usize,
    pub repeat_without_spend: usize,
    pub repeat_unknown: usize,
}

/// Fit both models by maximum likelihood. None without customers.
pub fn fit(histories: &[History]) -> Option<Fitted> {
    if histories.is_empty() {
        return None;
    }
    let compressed = Compressed::new(histories);
    let repeat = || histories.iter().filter(|h| h.x > 0);
    let repeat_unknown = repeat().filter(|h| !h.mean_value.is_finite()).count();
    let spend = Spend::new(histories);
    Some(Fitted {
        bgnbd: compressed.fit(),
        gamma_gamma: spend.fit(),
        distinct_histories: compressed.distinct(),
        repeat_customers: repeat().count(),
        repeat_without_spend: repeat().count() - repeat_unknown - spend.customers(),
        repeat_unknown,
    })
}

/// The UTC day of an ISO date `YYYY-MM-DD` (config's `calibration_end`); None if it is not one.
pub fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month[(m - 1) as usize] {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2023-01-01"), Some(1_672_531_200_000 / DAY_MS));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2023-1-01"), None);
        assert_eq!(day_of(-1.0), -1);
    }

    #[test]
    fn histories_count_days_from_the_first_purchase() {
        let day = DAY_MS as f64;
        // Three purchase days (the first on day 10, 30.00 of the 90.00 spent), the last on day
        // 24, calibration ends day 38: two repeat transactions worth 30.00 on average.
        let h = History::from_features(3.0, 10.0 * day + 5.0, 24.0 * day + 7.0, 9_000.0, 3_000.0, 38, 100.0).unwrap();
        assert_eq!(h, History { x: 2, tx_days: 14, t_days: 28, mean_value: 30.0 });
        assert_eq!((h.t_x(), h.t()), (2.0, 4.0));
        assert!(h.has_repeat_spend());
        // The first day is left out of the mean: a large first order does not raise it.
        let big_first = History::from_features(3.0, 10.0 * day, 24.0 * day, 56_000.0, 50_000.0, 38, 100.0).unwrap();
        assert_eq!(big_first.mean_value, 30.0);
        assert_eq!(History::from_features(0.0, f64::NAN, f64::NAN, 0.0, 0.0, 38, 100.0), None);
        assert_eq!(History::from_features(1.0, 40.0 * day, 40.0 * day, 0.0, 0.0, 38, 100.0), None);
        // One purchase day: no repeat transactions, no repeat mean.
        let once = History::from_features(1.0, 10.0 * day, 10.0 * day, 4_000.0, 4_000.0, 38, 100.0).unwrap();
        assert!(once.mean_value.is_nan() && !once.has_repeat_spend());
        // Repeat days worth nothing: a mean of 0, outside the Gamma-Gamma fit.
        let free = History::from_features(2.0, 10.0 * day, 20.0 * day, 4_000.0, 4_000.0, 38, 100.0).unwrap();
        assert!(free.mean_value == 0.0 && !free.has_repeat_spend());
        // The first day's spend not read: the mean is unknown.
        assert!(
            History::from_features(3.0, 10.0 * day, 24.0 * day, 9_000.0, f64::NAN, 38, 100.0)
                .unwrap()
                .mean_value
                .is_nan()
        );
        assert_eq!(History::from_summary(2.0, 2.0, 4.0, 30.0), Some(h));
        assert!(History::from_summary(0.0, 0.0, 4.0, 30.0).unwrap().mean_value.is_nan());
    }

    /// Twelve customers of the CDNOW sample (every 200th of `lifetimes`' summary), with the
    /// parameters `lifetimes` 0.11.3 fitted and what it computes for them, printed by
    /// `target/py-clv/bin/python plugins/clv-model/reference/lifetimes_cdnow.py` (its docstring
    /// says how to install it): (id, x, t_x days, T days, repeat mean, P(alive), E[Y(39)], E(M)).
    type Reference = (u32, u32, u32, u32, f64, f64, f64, f64);
    const LIFETIMES_CDNOW: [Reference; 12] = [
        (4, 2, 213, 272, 22.345, 0.7266202977882552, 1.2259944296717102, 24.65391871323576),
        (2087, 0, 0, 264, 0.0, 1.0, 0.19954614671453377, 35.17037133045392),
        (4005, 1, 99, 256, 24.74, 0.5333547420623989, 0.5354075856586402, 27.922558214671497),
        (5939, 2, 203, 249, 46.35, 0.7428350720209784, 1.3399414753846646, 44.33736011792117),
        (7967, 3, 115, 243, 13.300000000000002, 0.41997766380706547, 1.0966152564681917, 16.09241501819416),
        (10081, 0, 0, 236, 0.0, 1.0, 0.21820196136828554, 35.17037133045392),
        (12083, 1, 85, 190, 25.34, 0.5785343535239279, 0.7253948921163937, 28.339483723044573),
        (13995, 0, 0, 223, 0.0, 1.0, 0.22811998803324374, 35.17037133045392),
        (15953, 8, 201, 216, 117.4575, 0.8764095019441349, 6.084094081987855, 113.17591237692199),
        (18035, 7, 196, 209, 12.888571428571428, 0.8765143667697579, 5.495205894294169, 14.203792907454845),
        (20072, 0, 0, 202, 0.0, 1.0, 0.24622855591852927, 35.17037133045392),
        (22037, 0, 0, 195, 0.0, 1.0, 0.2529314199354323, 35.17037133045392),
    ];

    #[test]
    fn forecasts_match_lifetimes_on_the_cdnow_sample() {
        let m = Model {
            bgnbd: BgNbd {
                r: 0.24259454342106734,
                alpha: 4.413602716077379,
                a: 0.7929218333478742,
                b: 2.4259057287217503,
            },
            gamma_gamma: Some(GammaGamma { p: 6.24957227763445, q: 3.744224674758553, gamma: 15.443521018367175 }),
            end_day: 0,
        };
        for (id, x, tx_days, t_days, mean, p_alive, purchases, value) in LIFETIMES_CDNOW {
            // lifetimes writes 0 for "no repeat transactions"; the summary here says NaN.
            let mean_value = if x > 0 { mean } else { f64::NAN };
            let f = m.forecast(&History { x, tx_days, t_days, mean_value }, 39.0);
            let rel = |got: f64, want: f64| (got - want).abs() / want;
            assert!(rel(f.p_alive, p_alive) < 1e-9, "customer {id}: P(alive) {} vs {p_alive}", f.p_alive);
            assert!(
                rel(f.expected_purchases, purchases) < 1e-9,
                "customer {id}: {} vs {purchases}",
                f.expected_purchases
            );
            assert!(rel(f.expected_value, value) < 1e-9, "customer {id}: E(M) {} vs {value}", f.expected_value);
        }
    }

    #[test]
    fn the_lifetime_value_is_purchases_times_transaction_value() {
        // The papers' CDNOW customer: x = 2, t_x = 30.43, T = 38.86 weeks (as whole days), whose
        // repeat transactions averaged 20.50. Over 39 weeks BG/NBD expects ≈ 1.226 purchases (§5)
        // and Gamma-Gamma values one at 6.25 (15.44 + 2·20.5) / (6.25·2 + 2.74) = 352.75 / 15.24.
        let m = Model {
            bgnbd: BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 },
            gamma_gamma: Some(GammaGamma { p: 6.25, q: 3.74, gamma: 15.44 }),
            end_day: 19_000,
        };
        let h = History { x: 2, tx_days: 213, t_days: 272, mean_value: 20.5 };
        let f = m.forecast(&h, 39.0);
        let per_transaction = 352.75 / 15.24;
        assert!((f.expected_value - per_transaction).abs() < 1e-9, "{f:?}");
        assert!((f.expected_purchases - 1.226).abs() < 2e-3, "{f:?}");
        assert!((f.value - f.expected_purchases * per_transaction).abs() < 1e-9, "{f:?}");
        // ≈ 28.4 over the horizon: a customer's worth, not one transaction's (≈ 23.1).
        assert!((f.value - 28.4).abs() < 0.1, "{f:?}");
        // A longer horizon is worth more; a customer whose repeat spend is unknown is valued at
        // the population mean; no Gamma-Gamma model means no value.
        assert!(m.forecast(&h, 78.0).value > f.value);
        let unknown = m.forecast(&History { mean_value: f64::NAN, ..h }, 39.0);
        assert!((unknown.expected_value - m.gamma_gamma.unwrap().population_mean()).abs() < 1e-12);
        assert!(Model { gamma_gamma: None, ..m }.forecast(&h, 39.0).value.is_nan());
        assert_eq!(m.forecast(&h, 0.0).value, 0.0);
    }

    #[test]
    fn the_model_round_trips_through_bytes() {
        let m = Model {
            bgnbd: BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 },
            gamma_gamma: Some(GammaGamma { p: 6.25, q: 3.74, gamma: 15.44 }),
            end_day: 19_000,
        };
        assert_eq!(Model::decode(&m.encode()), Some(m));
        let none = Model { gamma_gamma: None, ..m };
        assert_eq!(Model::decode(&none.encode()), Some(none));
        assert_eq!(Model::decode(b"clv1"), None);
    }
}
