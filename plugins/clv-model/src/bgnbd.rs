//! The BG/NBD model of purchase counts: Fader, Hardie & Lee (2005), "'Counting your customers'
//! the easy way: an alternative to the Pareto/NBD model", Marketing Science 24(2), 275–284.
//!
//! While alive, a customer buys as a Poisson process of rate λ ~ Gamma(r, α); after each repeat
//! purchase they drop out for good with probability p ~ Beta(a, b). A customer's history is
//! (x, t_x, T): x repeat purchases (distinct days after the first), the last at t_x, observed
//! until T, all in weeks since their first purchase.

use crate::special::{digamma, hyp2f1, ln_gamma};
use crate::{History, optimize};

/// The four BG/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

impl BgNbd {
    /// ln L(r, α, a, b | x, t_x, T) of one customer: the paper's eq. (6),
    ///
    /// L = Γ(r+x) α^r / Γ(r) · Γ(a+b) Γ(b+x) / (Γ(b) Γ(a+b+x))
    ///     · [ (α+T)^−(r+x) + δ(x>0) a/(b+x−1) (α+t_x)^−(r+x) ],
    ///
    /// with the bracket summed in log space (log-sum-exp) so that long histories do not underflow.
    pub fn log_likelihood(&self, x: f64, t_x: f64, t: f64) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let common = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln() + ln_gamma(a + b) + ln_gamma(b + x)
            - ln_gamma(b)
            - ln_gamma(a + b + x);
        let l3 = -(r + x) * (alpha + t).ln();
        if x > 0.0 {
            let l4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + t_x).ln();
            common + log_add_exp(l3, l4)
        } else {
            common + l3
        }
    }

    /// P(alive at T | x, t_x, T): the probability the customer has not dropped out by the end of
    /// the calibration period. The 2005 paper gives no expression for it; Fader, Hardie & Lee
    /// (2008), "Computing P(alive) using the BG/NBD model", derive it by Bayes' theorem from the
    /// two terms of the likelihood (eq. (6) here, eq. (1) of the note: alive at T vs. dropped out
    /// right after t_x):
    ///
    /// P(alive) = 1 / (1 + δ(x>0) a/(b+x−1) ((α+T)/(α+t_x))^(r+x)).
    ///
    /// A customer without repeat purchases is alive for sure: BG/NBD customers drop out only
    /// right after a repeat purchase.
    pub fn p_alive(&self, x: f64, t_x: f64, t: f64) -> f64 {
        if x <= 0.0 {
            return 1.0;
        }
        let BgNbd { r, alpha, a, b } = *self;
        let ln_odds = a.ln() - (b + x - 1.0).ln() + (r + x) * ((alpha + t).ln() - (alpha + t_x).ln());
        1.0 / (1.0 + ln_odds.exp())
    }

    /// E[X(t)]: the expected number of repeat purchases in (0, t] for a customer picked at
    /// random (the paper's eq. (9)):
    ///
    /// E[X(t)] = (a+b−1)/(a−1) · [1 − (α/(α+t))^r ₂F₁(r, b; a+b−1; t/(α+t))].
    pub fn expected_purchases(&self, t: f64) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let a = away_from_one(a);
        (a + b - 1.0) / (a - 1.0) * (1.0 - (alpha / (alpha + t)).powf(r) * hyp2f1(r, b, a + b - 1.0, t / (alpha + t)))
    }

    /// E[Y(t) | x, t_x, T]: the expected number of purchases in the `t` weeks after T of a
    /// customer with history (x, t_x, T) (the paper's eq. (10)):
    ///
    /// E[Y(t) | …] = (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))]
    ///               / [1 + δ(x>0) a/(b+x−1) ((α+T)/(α+t_x))^(r+x)].
    ///
    /// The denominator is 1 / P(alive), so this is P(alive) times the expectation of a customer
    /// known to be alive.
    pub fn conditional_expected_purchases(&self, t: f64, x: f64, t_x: f64, big_t: f64) -> f64 {
        let BgNbd { r, alpha, b, .. } = *self;
        let a = away_from_one(self.a);
        let z = t / (alpha + big_t + t);
        let ratio = ((alpha + big_t) / (alpha + big_t + t)).powf(r + x);
        let alive_part = (a + b + x - 1.0) / (a - 1.0) * (1.0 - ratio * hyp2f1(r + x, b + x, a + b + x - 1.0, z));
        alive_part * self.p_alive(x, t_x, big_t)
    }
}

/// The formulas divide by a − 1, and each bracket vanishes with it: at exactly a = 1 the limit
/// is finite but the expression is 0/0. Nudging a by 1e-9 changes the result far below the
/// parameters' own uncertainty.
fn away_from_one(a: f64) -> f64 {
    if (a - 1.0).abs() < 1e-9 { 1.0 + 1e-9 } else { a }
}

/// ln(eˣ + eʸ) without overflow or underflow.
pub(crate) fn log_add_exp(x: f64, y: f64) -> f64 {
    let (hi, lo) = if x > y { (x, y) } else { (y, x) };
    hi + (lo - hi).exp().ln_1p()
}

/// Histories compressed to distinct (x, t_x, T) in whole days, with how many customers share
/// each: the likelihood is a sum over customers, and day-resolution histories repeat a lot.
pub struct Compressed {
    /// Distinct x values, ascending; `x_index` points into it.
    xs: Vec<u32>,
    x_index: Vec<u16>,
    tx_days: Vec<u32>,
    t_days: Vec<u32>,
    weight: Vec<f64>,
    max_day: u32,
    /// Customers in all (the sum of the weights).
    pub customers: usize,
    /// Σx and ΣT, for a starting point.
    sum_x: f64,
    sum_t: f64,
}

impl Compressed {
    pub fn new(histories: &[History]) -> Compressed {
        let mut keys: Vec<(u32, u32, u32)> = histories.iter().map(|h| (h.x, h.tx_days, h.t_days)).collect();
        keys.sort_unstable();
        let mut xs: Vec<u32> = keys.iter().map(|k| k.0).collect();
        xs.dedup();
        assert!(xs.len() <= u16::MAX as usize, "more distinct purchase counts than fit in u16");
        let mut c = Compressed {
            xs,
            x_index: Vec::new(),
            tx_days: Vec::new(),
            t_days: Vec::new(),
            weight: Vec::new(),
            max_day: 0,
            customers: histories.len(),
            sum_x: 0.0,
            sum_t: 0.0,
        };
        let mut xi = 0;
        for (i, k) in keys.iter().enumerate() {
            c.sum_x += k.0 as f64;
            c.sum_t += k.2 as f64 / 7.0;
            if i > 0 && keys[i - 1] == *k {
                *c.weight.last_mut().expect("a previous key") += 1.0;
                continue;
            }
            while c.xs[xi] != k.0 {
                xi += 1;
            }
            c.x_index.push(xi as u16);
            c.tx_days.push(k.1);
            c.t_days.push(k.2);
            c.weight.push(1.0);
            c.max_day = c.max_day.max(k.2).max(k.1);
        }
        c
    }

    /// Distinct histories: the work per likelihood evaluation.
    pub fn distinct(&self) -> usize {
        self.weight.len()
    }

    /// The total log-likelihood Σ ln L (eq. (6)) over the customers, arranged for speed: the
    /// Γ terms depend on x alone and are computed once per distinct x, and ln(α + d/7) once per
    /// day d; per history remain two table look-ups and a log-sum-exp.
    pub fn log_likelihood(&self, m: &BgNbd) -> f64 {
        let BgNbd { r, alpha, a, b } = *m;
        if !(r > 0.0 && alpha > 0.0 && a > 0.0 && b > 0.0) {
            return f64::NAN;
        }
        let base = -ln_gamma(r) + r * alpha.ln() + ln_gamma(a + b) - ln_gamma(b);
        let per_x: Vec<(f64, f64, f64)> = self
            .xs
            .iter()
            .map(|&x| {
                let x = x as f64;
                let common = base + ln_gamma(r + x) + ln_gamma(b + x) - ln_gamma(a + b + x);
                let drop = if x > 0.0 { a.ln() - (b + x - 1.0).ln() } else { f64::NEG_INFINITY };
                (common, drop, r + x)
            })
            .collect();
        let ln_alpha_plus: Vec<f64> = (0..=self.max_day).map(|d| (alpha + d as f64 / 7.0).ln()).collect();
        let mut total = 0.0;
        for i in 0..self.weight.len() {
            let (common, drop, rx) = per_x[self.x_index[i] as usize];
            let l3 = -rx * ln_alpha_plus[self.t_days[i] as usize];
            let ll = if drop == f64::NEG_INFINITY {
                common + l3
            } else {
                common + log_add_exp(l3, drop - rx * ln_alpha_plus[self.tx_days[i] as usize])
            };
            total += self.weight[i] * ll;
        }
        total
    }

    /// The total log-likelihood and its gradient in (r, α, a, b), from eq. (6) differentiated:
    /// with ω the posterior weight of "dropped out right after t_x" (the bracket's second term
    /// over the bracket), per customer
    ///
    /// ∂/∂r = ψ(r+x) − ψ(r) + ln α − (1−ω) ln(α+T) − ω ln(α+t_x),
    /// ∂/∂α = r/α − (r+x) ((1−ω)/(α+T) + ω/(α+t_x)),
    /// ∂/∂a = ψ(a+b) − ψ(a+b+x) + ω/a,
    /// ∂/∂b = ψ(a+b) + ψ(b+x) − ψ(b) − ψ(a+b+x) − ω/(b+x−1).
    ///
    /// One exp and one ln_1p per distinct history, as for the value alone.
    pub fn log_likelihood_and_gradient(&self, m: &BgNbd) -> (f64, [f64; 4]) {
        let BgNbd { r, alpha, a, b } = *m;
        if !(r > 0.0 && alpha > 0.0 && a > 0.0 && b > 0.0) {
            return (f64::NAN, [f64::NAN; 4]);
        }
        let base = -ln_gamma(r) + r * alpha.ln() + ln_gamma(a + b) - ln_gamma(b);
        let (psi_r, psi_ab, psi_b) = (digamma(r), digamma(a + b), digamma(b));
        // Per distinct x: the value's common part and the gradient's parts that depend on x alone.
        struct PerX {
            common: f64,
            drop: f64,
            rx: f64,
            dr: f64,
            da: f64,
            db: f64,
            inv_bx1: f64,
        }
        let per_x: Vec<PerX> = self
            .xs
            .iter()
            .map(|&x| {
                let x = x as f64;
                let psi_abx = digamma(a + b + x);
                PerX {
                    common: base + ln_gamma(r + x) + ln_gamma(b + x) - ln_gamma(a + b + x),
                    drop: if x > 0.0 { a.ln() - (b + x - 1.0).ln() } else { f64::NEG_INFINITY },
                    rx: r + x,
                    dr: digamma(r + x) - psi_r + alpha.ln(),
                    da: psi_ab - psi_abx,
                    db: psi_ab + digamma(b + x) - psi_b - psi_abx,
                    inv_bx1: if x > 0.0 { 1.0 / (b + x - 1.0) } else { 0.0 },
                }
            })
            .collect();
        let days = 0..=self.max_day;
        let ln_alpha_plus: Vec<f64> = days.clone().map(|d| (alpha + d as f64 / 7.0).ln()).collect();
        let inv_alpha_plus: Vec<f64> = days.map(|d| 1.0 / (alpha + d as f64 / 7.0)).collect();
        let (mut total, mut g) = (0.0, [0.0; 4]);
        for i in 0..self.weight.len() {
            let px = &per_x[self.x_index[i] as usize];
            let w = self.weight[i];
            let (t, tx) = (self.t_days[i] as usize, self.tx_days[i] as usize);
            let l3 = -px.rx * ln_alpha_plus[t];
            let (ll, omega) = if px.drop == f64::NEG_INFINITY {
                (px.common + l3, 0.0)
            } else {
                let l4 = px.drop - px.rx * ln_alpha_plus[tx];
                let e = (-(l4 - l3).abs()).exp();
                let omega = if l4 > l3 { 1.0 / (1.0 + e) } else { e / (1.0 + e) };
                (px.common + l3.max(l4) + e.ln_1p(), omega)
            };
            total += w * ll;
            g[0] += w * (px.dr - (1.0 - omega) * ln_alpha_plus[t] - omega * ln_alpha_plus[tx]);
            g[1] += w * (r / alpha - px.rx * ((1.0 - omega) * inv_alpha_plus[t] + omega * inv_alpha_plus[tx]));
            g[2] += w * (px.da + omega / a);
            g[3] += w * (px.db - omega * px.inv_bx1);
        }
        (total, g)
    }

    /// Maximum-likelihood estimates: BFGS on (ln r, ln α, ln a, ln b) with the analytic gradient,
    /// then Nelder-Mead from there should BFGS stop short (it has not on any data seen so far;
    /// the fallback keeps a bad surface from returning an unconverged fit).
    pub fn fit(&self) -> Fit<BgNbd> {
        // Start at r = a = b = 1 with α matching the mean purchase rate (E[λ] = r/α).
        let alpha0 = if self.sum_x > 0.0 { (self.sum_t / self.sum_x).clamp(0.1, 1e4) } else { 1.0 };
        let start = [0.0, alpha0.ln(), 0.0, 0.0];
        let params = |v: &[f64]| BgNbd { r: v[0].exp(), alpha: v[1].exp(), a: v[2].exp(), b: v[3].exp() };
        let objective = |v: &[f64]| {
            let m = params(v);
            let (ll, g) = self.log_likelihood_and_gradient(&m);
            // d/d ln θ = θ d/dθ; minimizing −ll.
            (-ll, vec![-g[0] * m.r, -g[1] * m.alpha, -g[2] * m.a, -g[3] * m.b])
        };
        let gtol = 1e-9 * (self.customers as f64).max(1.0);
        let mut m = optimize::bfgs(objective, &start, gtol, 500);
        if !m.converged {
            let from = if m.value.is_finite() { m.x.clone() } else { start.to_vec() };
            let polished = optimize::nelder_mead(|v| -self.log_likelihood(&params(v)), &from, 0.1, 1e-12, 1e-7, 4_000);
            m = optimize::Minimum { evaluations: m.evaluations + polished.evaluations, ..polished };
        }
        Fit {
            params: params(&m.x),
            log_likelihood: -m.value,
            customers: self.customers,
            evaluations: m.evaluations,
            converged: m.converged,
        }
    }
}

/// A fitted model and how the fit went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit<P> {
    pub params: P,
    /// The maximized total log-likelihood.
    pub log_likelihood: f64,
    /// Customers the fit saw.
    pub customers: usize,
    pub evaluations: usize,
    pub converged: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paper's CDNOW estimates (Table 1 / §5).
    const CDNOW: BgNbd = BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };

    fn close(got: f64, want: f64, tol: f64) {
        assert!((got - want).abs() <= tol, "got {got}, want {want} ± {tol}");
    }

    #[test]
    fn compressed_likelihood_equals_the_per_customer_sum() {
        let hs = [
            History { x: 0, tx_days: 0, t_days: 270, mean_value: f64::NAN },
            History { x: 2, tx_days: 213, t_days: 272, mean_value: f64::NAN },
            History { x: 2, tx_days: 213, t_days: 272, mean_value: f64::NAN },
            History { x: 7, tx_days: 40, t_days: 300, mean_value: f64::NAN },
        ];
        let c = Compressed::new(&hs);
        assert_eq!((c.distinct(), c.customers), (3, 4));
        let direct: f64 =
            hs.iter().map(|h| CDNOW.log_likelihood(h.x as f64, h.tx_days as f64 / 7.0, h.t_days as f64 / 7.0)).sum();
        close(c.log_likelihood(&CDNOW), direct, 1e-9);
    }

    #[test]
    fn the_gradient_is_the_likelihoods_derivative() {
        let hs = [
            History { x: 0, tx_days: 0, t_days: 270, mean_value: f64::NAN },
            History { x: 2, tx_days: 213, t_days: 272, mean_value: f64::NAN },
            History { x: 7, tx_days: 40, t_days: 300, mean_value: f64::NAN },
            History { x: 1, tx_days: 270, t_days: 271, mean_value: f64::NAN },
        ];
        let c = Compressed::new(&hs);
        let (ll, g) = c.log_likelihood_and_gradient(&CDNOW);
        close(ll, c.log_likelihood(&CDNOW), 1e-12);
        let h = 1e-6;
        let bumped = |k: usize, d: f64| {
            let mut v = [CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b];
            v[k] += d;
            c.log_likelihood(&BgNbd { r: v[0], alpha: v[1], a: v[2], b: v[3] })
        };
        for (k, got) in g.iter().enumerate() {
            let numeric = (bumped(k, h) - bumped(k, -h)) / (2.0 * h);
            close(*got, numeric, 1e-6 * numeric.abs().max(1.0));
        }
    }

    #[test]
    fn likelihood_matches_a_hand_computation() {
        // x = 2, t_x = 30.43, T = 38.86 with the CDNOW estimates, eq. (6) term by term:
        // A1 = Γ(2.243) 4.414^0.243 / Γ(0.243), A2 = Γ(3.219) Γ(4.426) / (Γ(2.426) Γ(5.219)),
        // A3 = 43.274^−2.243, A4 = 0.793/3.426 · 34.844^−2.243 (values by mpmath, 30 digits).
        close(CDNOW.log_likelihood(2.0, 30.43, 38.86), -9.458_606_307_066_27, 1e-9);
        // x = 0: only A1 · A2 · A3 = (α/(α+T))^r.
        close(CDNOW.log_likelihood(0.0, 0.0, 38.86), 0.243 * (4.414f64 / 43.274).ln(), 1e-12);
    }

    #[test]
    fn p_alive_is_the_closed_form() {
        // 1 / (1 + 0.793/3.426 · (43.274/34.844)^2.243).
        close(CDNOW.p_alive(2.0, 30.43, 38.86), 0.726_578_570_080_673, 1e-9);
        assert_eq!(CDNOW.p_alive(0.0, 0.0, 38.86), 1.0);
        // A customer who last bought long ago is less likely alive than one who just did.
        assert!(CDNOW.p_alive(5.0, 5.0, 70.0) < CDNOW.p_alive(5.0, 69.0, 70.0));
    }

    #[test]
    fn expectations_match_the_paper() {
        // §5 of the paper: E[Y(39) | x = 2, t_x = 30.43, T = 38.86] = 1.226.
        close(CDNOW.conditional_expected_purchases(39.0, 2.0, 30.43, 38.86), 1.226, 5e-4);
        close(CDNOW.conditional_expected_purchases(39.0, 2.0, 30.43, 38.86), 1.226_028_174_767_144, 1e-9);
        // Unconditional E[X(t)], eq. (9), against mpmath at t = 39 and 78 weeks.
        close(CDNOW.expected_purchases(39.0), 1.196_723_193_320_817, 1e-9);
        close(CDNOW.expected_purchases(78.0), 1.860_519_057_942_769, 1e-9);
        // E[Y(0) | …] = 0, and a = 1 exactly does not blow up.
        assert_eq!(CDNOW.conditional_expected_purchases(0.0, 2.0, 30.43, 38.86), 0.0);
        let at_one = BgNbd { a: 1.0, ..CDNOW }.conditional_expected_purchases(39.0, 2.0, 30.43, 38.86);
        assert!(at_one.is_finite() && at_one > 0.0, "{at_one}");
    }
}
