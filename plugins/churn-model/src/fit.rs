//! The churn model fitted to one organization's own history.
//!
//! Each labelled customer is a row: their factors as of a cutoff (what the scorer would have
//! computed that day: [`crate::factors`], [`crate::row`]) and whether they then made no purchase
//! in the horizon after it ("churned"). An L2-regularized logistic regression (ridge; Hastie,
//! Tibshirani & Friedman, *The Elements of Statistical Learning*, §4.4.4) is fitted by Newton's
//! method on a training part, and measured on a held-out part: the area under the ROC curve
//! (Hanley & McNeil 1982, the Mann-Whitney statistic) and a calibration table by deciles of the
//! predicted probability. The scorer then uses the training fit's weights, the ones measured.
//!
//! Assumptions, as in any such model: the log-odds of churning are linear in the factors; the
//! customers are independent; and the next horizon behaves like the one after the cutoff (a
//! seasonal business should pick a cutoff a year back, or refit each season).

// Matrix code: indices say which row and column, iterators would hide it.
#![allow(clippy::needless_range_loop)]

use crate::{Config, FACTORS, Factors, Seen, Weights, factors, row};

/// One labelled customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub id: u64,
    /// [`row`] of their factors as of the cutoff.
    pub x: [f64; FACTORS],
    /// No purchase in the horizon after the cutoff.
    pub churned: bool,
}

/// A customer as of `cutoff`, from their newest interactions before `cutoff + horizon` (one
/// timeline read, newest first, up to 500): the label from the purchases in (cutoff, cutoff +
/// horizon], the factors from the newest `timeline_limit` interactions at or before the cutoff.
/// None when none of those is visible (a customer with more than 500 interactions in the
/// horizon; or one who had not appeared by the cutoff).
pub fn sample(config: &Config, cutoff: i64, id: u64, timeline: &[Seen]) -> Option<Sample> {
    let end = cutoff + config.horizon_ms();
    let within = |s: &&Seen| !s.source.starts_with("plugin:") && s.occurred_at <= end;
    let bought = timeline.iter().filter(within).any(|s| s.purchase && s.occurred_at > cutoff);
    let before: Vec<Seen> =
        timeline.iter().filter(|s| s.occurred_at <= cutoff).take(config.timeline_limit as usize).cloned().collect();
    let last_interaction = before.first()?.occurred_at as f64;
    // The newest purchase read; past the interactions read, the oldest of them bounds it.
    let last_purchase = before
        .iter()
        .find(|s| s.purchase)
        .or_else(|| (before.len() == config.timeline_limit as usize).then(|| before.last()).flatten())
        .map_or(f64::NAN, |s| s.occurred_at as f64);
    let f: Factors = factors(config, cutoff, last_purchase, last_interaction, &before);
    Some(Sample { id, x: row(config, &f), churned: !bought })
}

/// A stable pseudo-random number of an id (SplitMix64's finalizer): the hold-out split and the
/// sample of a large organization, the same at every rescore.
pub fn hash(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether a customer is in the hold-out part.
pub fn held_out(id: u64, share: f64) -> bool {
    (hash(id ^ 0x5EED) % 10_000) as f64 / 10_000.0 < share
}

/// One decile of the hold-out customers by predicted probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decile {
    pub customers: usize,
    /// Mean predicted probability of churning.
    pub predicted: f64,
    /// Share that churned.
    pub observed: f64,
}

/// What a fit gives: the weights to score with and how they were found.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub weights: Weights,
    /// False when the documented weights were kept; `reason` says why.
    pub fitted: bool,
    pub reason: String,
    pub labelled: usize,
    pub churned: usize,
    pub train: usize,
    pub holdout: usize,
    /// Area under the ROC curve on the hold-out part (NaN without both classes there).
    pub auc: f64,
    pub calibration: Vec<Decile>,
    pub iterations: usize,
}

/// Fit the weights to `samples` (see the module's doc), or keep `config.weights` when there are
/// too few labelled customers.
pub fn fit(config: &Config, samples: &[Sample]) -> Fitted {
    let churned = samples.iter().filter(|s| s.churned).count();
    let (train, test): (Vec<&Sample>, Vec<&Sample>) = samples.iter().partition(|s| !held_out(s.id, config.fit.holdout));
    let mut out = Fitted {
        weights: config.weights.clone(),
        fitted: false,
        reason: String::new(),
        labelled: samples.len(),
        churned,
        train: train.len(),
        holdout: test.len(),
        auc: f64::NAN,
        calibration: Vec::new(),
        iterations: 0,
    };
    let train_churned = train.iter().filter(|s| s.churned).count();
    if samples.len() < config.fit.min_labelled || train_churned.min(train.len() - train_churned) < 20 {
        out.reason = format!(
            "{} labelled customers ({churned} churned): fewer than fit.min_labelled ({}) or than 20 of either \
             class; the documented weights are used",
            samples.len(),
            config.fit.min_labelled
        );
        return out;
    }
    let (beta, iterations) = logistic(&train, config.fit.l2);
    out.weights = Weights::from_array(beta);
    out.fitted = true;
    out.iterations = iterations;
    let scored: Vec<(f64, bool)> = test.iter().map(|s| (probability(&beta, &s.x), s.churned)).collect();
    out.auc = auc(&scored);
    out.calibration = calibration(&scored);
    out.reason = format!("fitted on {} customers, hold-out AUC {:.3} on {}", train.len(), out.auc, test.len());
    out
}

/// P(churn) under weights `beta` (intercept first).
pub fn probability(beta: &[f64; FACTORS + 1], x: &[f64; FACTORS]) -> f64 {
    let z = beta[0] + x.iter().zip(&beta[1..]).map(|(a, b)| a * b).sum::<f64>();
    1.0 / (1.0 + (-z).exp())
}

/// Ridge logistic regression by Newton's method (iteratively reweighted least squares) on the
/// standardized factors, the penalty λ/2 · Σ β² on all but the intercept; returns the weights
/// in the factors' own units and the iterations. Standardizing makes one λ mean the same for a
/// count of tickets and a recency in months, and keeps Newton's steps well conditioned; a factor
/// constant over the customers gets weight 0.
fn logistic(samples: &[&Sample], l2: f64) -> ([f64; FACTORS + 1], usize) {
    const P: usize = FACTORS + 1;
    let n = samples.len() as f64;
    let mut mean = [0.0; FACTORS];
    let mut sd = [0.0; FACTORS];
    for s in samples {
        for k in 0..FACTORS {
            mean[k] += s.x[k] / n;
        }
    }
    for s in samples {
        for k in 0..FACTORS {
            sd[k] += (s.x[k] - mean[k]).powi(2) / n;
        }
    }
    let sd = sd.map(|v| if v > 1e-12 { v.sqrt() } else { 0.0 });
    let z = |s: &Sample| -> [f64; P] {
        let mut r = [1.0; P];
        for k in 0..FACTORS {
            r[k + 1] = if sd[k] > 0.0 { (s.x[k] - mean[k]) / sd[k] } else { 0.0 };
        }
        r
    };
    let rows: Vec<([f64; P], f64)> = samples.iter().map(|s| (z(s), if s.churned { 1.0 } else { 0.0 })).collect();
    let mut beta = [0.0; P];
    let mut iterations = 0;
    for _ in 0..100 {
        iterations += 1;
        let mut gradient = [0.0; P];
        let mut hessian = [[0.0; P]; P];
        for (x, y) in &rows {
            let eta: f64 = x.iter().zip(&beta).map(|(a, b)| a * b).sum();
            let mu = 1.0 / (1.0 + (-eta).exp());
            let w = mu * (1.0 - mu);
            for i in 0..P {
                gradient[i] += (y - mu) * x[i];
                for j in 0..=i {
                    hessian[i][j] += w * x[i] * x[j];
                }
            }
        }
        for i in 1..P {
            gradient[i] -= l2 * beta[i];
            hessian[i][i] += l2;
        }
        for i in 0..P {
            for j in 0..i {
                hessian[j][i] = hessian[i][j];
            }
        }
        let step = solve(hessian, gradient);
        for i in 0..P {
            beta[i] += step[i];
        }
        if step.iter().all(|d| d.abs() < 1e-10) {
            break;
        }
    }
    // Back to the factors' units: β_k / sd_k, and the intercept absorbs the means.
    let mut w = [0.0; P];
    w[0] = beta[0];
    for k in 0..FACTORS {
        if sd[k] > 0.0 {
            w[k + 1] = beta[k + 1] / sd[k];
            w[0] -= w[k + 1] * mean[k];
        }
    }
    (w, iterations)
}

/// Solve A x = b for a symmetric positive-definite A (Cholesky: A = L Lᵀ).
fn solve<const P: usize>(a: [[f64; P]; P], b: [f64; P]) -> [f64; P] {
    let mut l = [[0.0; P]; P];
    for i in 0..P {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            l[i][j] = if i == j { (a[i][i] - sum).max(1e-300).sqrt() } else { (a[i][j] - sum) / l[j][j] };
        }
    }
    let mut y = [0.0; P];
    for i in 0..P {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = [0.0; P];
    for i in (0..P).rev() {
        x[i] = (y[i] - (i + 1..P).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    x
}

/// The area under the ROC curve of predictions for "churned": the probability that a random
/// churned customer is predicted above a random retained one, ties counting half (the
/// Mann-Whitney U over the product of the class sizes). NaN without both classes.
pub fn auc(scored: &[(f64, bool)]) -> f64 {
    let mut sorted: Vec<(f64, bool)> = scored.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = sorted.iter().filter(|s| s.1).count() as f64;
    let negatives = sorted.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return f64::NAN;
    }
    // Sum of the positives' ranks (1-based, ties given their average rank).
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        let average = (i + 1 + j) as f64 / 2.0;
        rank_sum += average * sorted[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// Ten groups of (nearly) equal size by predicted probability, lowest first: each one's mean
/// prediction and observed churn rate. A well-calibrated model has the two close in every row.
pub fn calibration(scored: &[(f64, bool)]) -> Vec<Decile> {
    let mut sorted: Vec<(f64, bool)> = scored.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = sorted.len();
    (0..10)
        .map(|d| {
            let part = &sorted[d * n / 10..(d + 1) * n / 10];
            let count = part.len().max(1) as f64;
            Decile {
                customers: part.len(),
                predicted: part.iter().map(|s| s.0).sum::<f64>() / count,
                observed: part.iter().filter(|s| s.1).count() as f64 / count,
            }
        })
        .filter(|d| d.customers > 0)
        .collect()
}

/// The scorer's model bytes: the weights and the two numbers its explanations quote.
const MAGIC: &[u8; 4] = b"chn1";

/// What `score` needs from `fit`.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub weights: Weights,
    pub fitted: bool,
    pub train: usize,
    pub auc: f64,
}

impl Model {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for v in self.weights.to_array() {
            out.extend(v.to_le_bytes());
        }
        out.push(u8::from(self.fitted));
        out.extend((self.train as u64).to_le_bytes());
        out.extend(self.auc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Model> {
        let body = bytes.strip_prefix(MAGIC.as_slice())?;
        if body.len() != 8 * (FACTORS + 1) + 1 + 16 {
            return None;
        }
        let f = |i: usize| f64::from_le_bytes(body[i..i + 8].try_into().expect("8 bytes"));
        let w: [f64; FACTORS + 1] = std::array::from_fn(|k| f(8 * k));
        let at = 8 * (FACTORS + 1);
        Some(Model {
            weights: Weights::from_array(w),
            fitted: body[at] == 1,
            train: u64::from_le_bytes(body[at + 1..at + 9].try_into().expect("8 bytes")) as usize,
            auc: f(at + 9),
        })
    }

    /// Where the weights come from, for explanations.
    pub fn source(&self) -> String {
        if self.fitted {
            format!("weights fitted on {} customers, hold-out AUC {:.2}", self.train, self.auc)
        } else {
            "default weights".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DAY_MS, TicketSeen};

    #[test]
    fn auc_is_the_share_of_correctly_ordered_pairs() {
        // Perfect, reversed, and a hand-counted mix: 3 churned × 2 retained = 6 pairs; (0.9
        // beats both, 0.4 beats 0.3, 0.2 beats none), one tie at 0.4 counts half.
        assert_eq!(auc(&[(0.1, false), (0.2, false), (0.8, true), (0.9, true)]), 1.0);
        assert_eq!(auc(&[(0.9, false), (0.8, false), (0.2, true), (0.1, true)]), 0.0);
        let mixed = [(0.9, true), (0.4, true), (0.2, true), (0.4, false), (0.3, false)];
        assert_eq!(auc(&mixed), (2.0 + 1.5 + 0.0) / 6.0);
        assert!(auc(&[(0.5, true)]).is_nan());
    }

    #[test]
    fn calibration_groups_by_predicted_deciles() {
        let scored: Vec<(f64, bool)> = (0..100).map(|i| (i as f64 / 100.0, i % 10 < i / 10)).collect();
        let c = calibration(&scored);
        assert_eq!(c.len(), 10);
        assert!(c.iter().all(|d| d.customers == 10));
        // Decile d holds predictions d/10 .. d/10 + 0.09 and d churned of its 10.
        for (d, decile) in c.iter().enumerate() {
            assert!((decile.predicted - (d as f64 / 10.0 + 0.045)).abs() < 1e-12, "{decile:?}");
            assert_eq!(decile.observed, d as f64 / 10.0);
        }
    }

    /// Customers whose churn follows a known logistic law in two factors: the fit must find the
    /// law's coefficients (within their sampling error) and rank the hold-out as well as the law.
    #[test]
    fn the_regression_recovers_a_known_law() {
        let config = Config { fit: crate::FitConfig { l2: 1e-3, ..Default::default() }, ..Config::default() };
        let truth = [-1.0, 0.8, 0.0, 0.0, 0.0, 0.0, -0.5];
        let mut state = 7u64;
        let mut uniform = || {
            state = hash(state);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let samples: Vec<Sample> = (0..20_000)
            .map(|id| {
                let x = [uniform() * 6.0, 0.0, 0.0, 0.0, 0.0, (uniform() * 5.0).floor()];
                let churned = uniform() < probability(&truth, &x);
                Sample { id, x, churned }
            })
            .collect();
        let f = fit(&config, &samples);
        assert!(f.fitted, "{f:?}");
        let w = f.weights.to_array();
        for (k, (got, want)) in w.iter().zip(truth).enumerate() {
            assert!((got - want).abs() < 0.08, "weight {k}: {got} vs {want}: {f:?}");
        }
        let holdout: Vec<&Sample> = samples.iter().filter(|s| held_out(s.id, 0.2)).collect();
        assert_eq!(f.holdout, holdout.len());
        assert!((holdout.len() as f64 / 20_000.0 - 0.2).abs() < 0.01);
        let law = auc(&holdout.iter().map(|s| (probability(&truth, &s.x), s.churned)).collect::<Vec<_>>());
        assert!((f.auc - law).abs() < 0.01, "{} vs the law's {law}", f.auc);
        for d in &f.calibration {
            assert!((d.predicted - d.observed).abs() < 0.1, "{d:?}");
        }
        // Strong regularization shrinks every factor's weight towards 0.
        let shrunk =
            fit(&Config { fit: crate::FitConfig { l2: 1e5, ..Default::default() }, ..Config::default() }, &samples);
        assert!(shrunk.weights.recency_per_30_days.abs() < 0.1 * w[1].abs(), "{shrunk:?}");
    }

    #[test]
    fn too_few_labelled_customers_keep_the_documented_weights() {
        let config = Config::default();
        let samples: Vec<Sample> = (0..400)
            .map(|id| Sample { id, x: [id as f64 / 100.0, 0.0, 0.0, 0.0, 0.0, 0.0], churned: id % 2 == 0 })
            .collect();
        let f = fit(&config, &samples);
        assert!(!f.fitted && f.weights == Weights::default(), "{f:?}");
        assert!(f.reason.contains("400 labelled customers"), "{}", f.reason);
        // Enough customers, but all of one class: nothing to learn either.
        let all: Vec<Sample> = (0..2_000).map(|id| Sample { id, x: [1.0; FACTORS], churned: true }).collect();
        assert!(!fit(&config, &all).fitted);
    }

    #[test]
    fn a_sample_is_the_customer_as_of_the_cutoff() {
        let config = Config::default();
        let day = DAY_MS as i64;
        let cutoff = 1_000 * day;
        let at = |t: i64, purchase: bool, ticket: Option<TicketSeen>| Seen {
            occurred_at: t,
            source: "shop".into(),
            text: String::new(),
            ticket,
            purchase,
        };
        // Bought 40 and 100 days before the cutoff; a ticket opened 5 days before it and closed
        // after it (open as of the cutoff); a purchase 30 days after the cutoff.
        let ticket =
            TicketSeen { occurred_at: cutoff - 5 * day, open: false, due_at: None, closed_at: Some(cutoff + day) };
        let timeline = [
            at(cutoff + 30 * day, true, None),
            at(cutoff - 5 * day, false, Some(ticket)),
            at(cutoff - 40 * day, true, None),
            at(cutoff - 100 * day, true, None),
        ];
        let s = sample(&config, cutoff, 9, &timeline).unwrap();
        assert_eq!(s.x, [40.0 / 30.0, 1.0, 0.0, 1.0, 0.0, 2.0]);
        assert!(!s.churned, "bought within the 90 days after the cutoff");
        // The purchase after the horizon does not count: churned.
        let late = [at(cutoff + 120 * day, true, None), at(cutoff - 40 * day, true, None)];
        assert!(sample(&config, cutoff, 9, &late).unwrap().churned);
        // Nothing by the cutoff: not a sample.
        assert_eq!(sample(&config, cutoff, 9, &[at(cutoff + day, true, None)]), None);
    }

    #[test]
    fn the_model_round_trips_through_bytes() {
        let m =
            Model { weights: Weights { purchases: -0.3, ..Weights::default() }, fitted: true, train: 812, auc: 0.78 };
        assert_eq!(Model::decode(&m.encode()), Some(m.clone()));
        assert_eq!(m.source(), "weights fitted on 812 customers, hold-out AUC 0.78");
        assert_eq!(Model::decode(b"chn1"), None);
    }
}
