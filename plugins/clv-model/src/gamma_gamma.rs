//! The Gamma-Gamma model of spend per transaction: Fader & Hardie (2013), "The Gamma-Gamma
//! model of monetary value" (and Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value curves
//! for customer base analysis", JMR 42(4), §4).
//!
//! A customer's transaction values are Gamma(p, ν) around their own mean p/ν, and ν varies
//! across customers as Gamma(q, γ); spend is independent of the purchase process (BG/NBD). As
//! published, a customer is summarised by their x *repeat* transactions and the mean value m̄ₓ of
//! those (the first purchase left out: it often differs from later ones), the model is fitted on
//! customers with at least one repeat transaction (CDNOW: 946 of 2,357, p = 6.25, q = 3.74,
//! γ = 15.44), and the mean is sufficient for ν. Customers without repeat transactions are
//! valued at the population mean pγ/(q−1), which eq. (5) gives at x = 0.

use crate::bgnbd::Fit;
use crate::special::{digamma, ln_gamma};
use crate::{History, optimize};

/// The three Gamma-Gamma parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

impl GammaGamma {
    /// ln f(m̄ₓ | p, q, γ; x), the marginal density of one customer's mean of x transactions
    /// (Fader & Hardie 2013, eq. (3)):
    ///
    /// f(m̄ₓ) = Γ(px+q) / (Γ(px) Γ(q)) · γ^q m̄ₓ^(px−1) x^(px) / (γ + x m̄ₓ)^(px+q).
    pub fn log_likelihood(&self, x: f64, mean: f64) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        let px = p * x;
        ln_gamma(px + q) - ln_gamma(px) - ln_gamma(q) + q * gamma.ln() + (px - 1.0) * mean.ln() + px * x.ln()
            - (px + q) * (gamma + x * mean).ln()
    }

    /// E(M | p, q, γ, m̄ₓ, x): the expected value of the customer's future transactions given
    /// their history (Fader & Hardie 2013, eq. (5)): a weighted average of the population mean
    /// pγ/(q−1) and the customer's own mean,
    ///
    /// E(M | …) = (q−1)/(px+q−1) · pγ/(q−1) + px/(px+q−1) · m̄ₓ = p(γ + x m̄ₓ) / (px + q − 1).
    pub fn conditional_expected_value(&self, x: f64, mean: f64) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        p * (gamma + x * mean) / (p * x + q - 1.0)
    }

    /// E(M) = pγ/(q−1): the population's mean transaction value (finite only for q > 1).
    pub fn population_mean(&self) -> f64 {
        self.p * self.gamma / (self.q - 1.0)
    }

    /// The expected value of one future transaction of a customer: eq. (5) with their repeat
    /// transactions, the population mean without any (or when their repeat mean is unknown).
    /// A repeat mean below 0 (refunds larger than purchases) counts as 0. NaN for q ≤ 1, where
    /// the population mean does not exist.
    pub fn expected_value_of(&self, h: &History) -> f64 {
        if self.q <= 1.0 {
            return f64::NAN;
        }
        if h.x == 0 || !h.mean_value.is_finite() {
            return self.population_mean();
        }
        self.conditional_expected_value(h.x as f64, h.mean_value.max(0.0))
    }
}

/// The customers a Gamma-Gamma fit sees: those with repeat transactions of positive mean value
/// ([`History::has_repeat_spend`]), with x their repeat transactions.
pub struct Spend {
    x: Vec<f64>,
    ln_x: Vec<f64>,
    mean: Vec<f64>,
    ln_mean: Vec<f64>,
    /// Distinct x values and, per customer, the index of theirs: the Γ terms depend on x alone.
    xs: Vec<f64>,
    x_index: Vec<u32>,
}

impl Spend {
    pub fn new(histories: &[History]) -> Spend {
        let kept: Vec<(f64, f64)> =
            histories.iter().filter(|h| h.has_repeat_spend()).map(|h| (h.x as f64, h.mean_value)).collect();
        let mut xs: Vec<f64> = kept.iter().map(|k| k.0).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        Spend {
            x: kept.iter().map(|k| k.0).collect(),
            ln_x: kept.iter().map(|k| k.0.ln()).collect(),
            mean: kept.iter().map(|k| k.1).collect(),
            ln_mean: kept.iter().map(|k| k.1.ln()).collect(),
            x_index: kept.iter().map(|k| xs.partition_point(|&v| v < k.0) as u32).collect(),
            xs,
        }
    }

    pub fn customers(&self) -> usize {
        self.x.len()
    }

    /// Σ ln f over the customers (eq. (3)), with the Γ terms computed once per distinct x.
    pub fn log_likelihood(&self, m: &GammaGamma) -> f64 {
        let GammaGamma { p, q, gamma } = *m;
        if !(p > 0.0 && q > 0.0 && gamma > 0.0) {
            return f64::NAN;
        }
        let base = -ln_gamma(q) + q * gamma.ln();
        let per_x: Vec<f64> = self.xs.iter().map(|&x| base + ln_gamma(p * x + q) - ln_gamma(p * x)).collect();
        let mut total = 0.0;
        for i in 0..self.x.len() {
            let px = p * self.x[i];
            total += per_x[self.x_index[i] as usize] + (px - 1.0) * self.ln_mean[i] + px * self.ln_x[i]
                - (px + q) * (gamma + self.x[i] * self.mean[i]).ln();
        }
        total
    }

    /// Σ ln f and its gradient in (p, q, γ), eq. (3) differentiated, per customer:
    ///
    /// ∂/∂p = x (ψ(px+q) − ψ(px) + ln m̄ₓ + ln x − ln(γ + x m̄ₓ)),
    /// ∂/∂q = ψ(px+q) − ψ(q) + ln γ − ln(γ + x m̄ₓ),
    /// ∂/∂γ = q/γ − (px+q)/(γ + x m̄ₓ).
    pub fn log_likelihood_and_gradient(&self, m: &GammaGamma) -> (f64, [f64; 3]) {
        let GammaGamma { p, q, gamma } = *m;
        if !(p > 0.0 && q > 0.0 && gamma > 0.0) {
            return (f64::NAN, [f64::NAN; 3]);
        }
        let base = -ln_gamma(q) + q * gamma.ln();
        let (psi_q, ln_gamma_param) = (digamma(q), gamma.ln());
        // Per distinct x: the Γ terms of the value and the ψ terms of the gradient.
        let per_x: Vec<(f64, f64, f64)> = self
            .xs
            .iter()
            .map(|&x| {
                let (px, pxq) = (p * x, p * x + q);
                let psi_pxq = digamma(pxq);
                (base + ln_gamma(pxq) - ln_gamma(px), psi_pxq - digamma(px), psi_pxq - psi_q + ln_gamma_param)
            })
            .collect();
        let (mut total, mut g) = (0.0, [0.0; 3]);
        for i in 0..self.x.len() {
            let (x, ln_m, ln_x) = (self.x[i], self.ln_mean[i], self.ln_x[i]);
            let (common, dp, dq) = per_x[self.x_index[i] as usize];
            let (px, denominator) = (p * x, gamma + x * self.mean[i]);
            let ln_d = denominator.ln();
            total += common + (px - 1.0) * ln_m + px * ln_x - (px + q) * ln_d;
            g[0] += x * (dp + ln_m + ln_x - ln_d);
            g[1] += dq - ln_d;
            g[2] += q / gamma - (px + q) / denominator;
        }
        (total, g)
    }

    /// Maximum-likelihood estimates: BFGS on (ln p, ln q, ln γ) with the analytic gradient
    /// (Nelder-Mead from there should it stop short). None without customers.
    pub fn fit(&self) -> Option<Fit<GammaGamma>> {
        if self.x.is_empty() {
            return None;
        }
        // Start at p = 1, q = 2 and γ matching the observed mean value (E(M) = pγ/(q−1)).
        let mean = self.mean.iter().sum::<f64>() / self.mean.len() as f64;
        let start = [0.0, 2f64.ln(), mean.ln()];
        let params = |v: &[f64]| GammaGamma { p: v[0].exp(), q: v[1].exp(), gamma: v[2].exp() };
        let objective = |v: &[f64]| {
            let m = params(v);
            let (ll, g) = self.log_likelihood_and_gradient(&m);
            (-ll, vec![-g[0] * m.p, -g[1] * m.q, -g[2] * m.gamma])
        };
        let gtol = 1e-9 * self.x.len() as f64;
        let mut m = optimize::bfgs(objective, &start, gtol, 500);
        if !m.converged {
            let from = if m.value.is_finite() { m.x.clone() } else { start.to_vec() };
            let polished = optimize::nelder_mead(|v| -self.log_likelihood(&params(v)), &from, 0.1, 1e-12, 1e-7, 3_000);
            m = optimize::Minimum { evaluations: m.evaluations + polished.evaluations, ..polished };
        }
        Some(Fit {
            params: params(&m.x),
            log_likelihood: -m.value,
            customers: self.x.len(),
            evaluations: m.evaluations,
            converged: m.converged,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fader & Hardie (2013)'s CDNOW estimates.
    const CDNOW: GammaGamma = GammaGamma { p: 6.25, q: 3.74, gamma: 15.44 };

    fn close(got: f64, want: f64, tol: f64) {
        assert!((got - want).abs() <= tol, "got {got}, want {want} ± {tol}");
    }

    #[test]
    fn expected_value_matches_the_note() {
        // The population mean pγ/(q−1) = 35.22 (the note's §3), and eq. (5) by hand:
        // 6.25 (15.44 + 2·20.5) / (6.25·2 + 2.74) = 352.75 / 15.24.
        close(CDNOW.population_mean(), 35.218_978_102_189_78, 1e-12);
        close(CDNOW.conditional_expected_value(2.0, 20.5), 352.75 / 15.24, 1e-12);
        close(CDNOW.conditional_expected_value(1.0, 35.0), 35.066_740_823_136_82, 1e-12);
        // Many transactions: the customer's own mean dominates.
        close(CDNOW.conditional_expected_value(10.0, 50.0), 49.379_215_205_395_46, 1e-12);
    }

    #[test]
    fn customers_without_repeat_spend_get_the_population_mean() {
        let h = |x, mean_value| History { x, tx_days: 0, t_days: 0, mean_value };
        close(CDNOW.expected_value_of(&h(0, f64::NAN)), CDNOW.population_mean(), 1e-12);
        close(CDNOW.expected_value_of(&h(3, f64::NAN)), CDNOW.population_mean(), 1e-12);
        close(CDNOW.expected_value_of(&h(2, 20.5)), 352.75 / 15.24, 1e-12);
        // Every repeat day free: eq. (5) at m̄ = 0 pulls the value below the population mean.
        close(CDNOW.expected_value_of(&h(2, 0.0)), 6.25 * 15.44 / 15.24, 1e-12);
        close(CDNOW.expected_value_of(&h(2, -5.0)), 6.25 * 15.44 / 15.24, 1e-12);
        assert!(GammaGamma { q: 0.9, ..CDNOW }.expected_value_of(&h(0, f64::NAN)).is_nan());
    }

    #[test]
    fn the_gradient_is_the_likelihoods_derivative() {
        let h = |x, mean_value| History { x, tx_days: 0, t_days: 0, mean_value };
        let spend = Spend::new(&[h(2, 20.5), h(1, 35.0), h(5, 12.25), h(2, 80.0)]);
        let (ll, g) = spend.log_likelihood_and_gradient(&CDNOW);
        close(ll, spend.log_likelihood(&CDNOW), 1e-12);
        let step = 1e-6;
        let bumped = |k: usize, d: f64| {
            let mut v = [CDNOW.p, CDNOW.q, CDNOW.gamma];
            v[k] += d;
            spend.log_likelihood(&GammaGamma { p: v[0], q: v[1], gamma: v[2] })
        };
        for (k, got) in g.iter().enumerate() {
            let numeric = (bumped(k, step) - bumped(k, -step)) / (2.0 * step);
            close(*got, numeric, 1e-6 * numeric.abs().max(1.0));
        }
    }

    #[test]
    fn likelihood_matches_mpmath() {
        close(CDNOW.log_likelihood(2.0, 20.5), -3.513_741_159_906_18, 1e-11);
        close(CDNOW.log_likelihood(1.0, 35.0), -4.182_118_026_033_014, 1e-11);
        let h = |x, mean_value| History { x, tx_days: 0, t_days: 0, mean_value };
        let spend = Spend::new(&[h(2, 20.5), h(1, 35.0), h(3, f64::NAN), h(1, 0.0), h(0, 12.0)]);
        assert_eq!(spend.customers(), 2, "customers without repeat transactions of positive mean are left out");
        close(spend.log_likelihood(&CDNOW), -3.513_741_159_906_18 - 4.182_118_026_033_014, 1e-11);
    }
}
