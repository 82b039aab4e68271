//! The Gamma-Gamma model of spend per transaction: Fader & Hardie (2013), "The Gamma-Gamma
//! model of monetary value" (and Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value curves
//! for customer base analysis", JMR 42(4), §4).
//!
//! A customer's transaction values are Gamma(p, ν) around their own mean p/ν, and ν varies
//! across customers as Gamma(q, γ). A customer is summarised by x transactions and their mean
//! value m̄ₓ; the mean is sufficient for ν.

use crate::bgnbd::Fit;
use crate::special::ln_gamma;
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
}

/// The customers a Gamma-Gamma fit sees: those with at least one transaction of positive value.
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
        let kept: Vec<(f64, f64)> = histories
            .iter()
            .filter(|h| h.transactions > 0 && h.mean_value.is_finite() && h.mean_value > 0.0)
            .map(|h| (h.transactions as f64, h.mean_value))
            .collect();
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

    /// Maximum-likelihood estimates: Nelder-Mead on (ln p, ln q, ln γ). None without customers.
    pub fn fit(&self) -> Option<Fit<GammaGamma>> {
        if self.x.is_empty() {
            return None;
        }
        // Start at p = 1, q = 2 and γ matching the observed mean value (E(M) = pγ/(q−1)).
        let mean = self.mean.iter().sum::<f64>() / self.mean.len() as f64;
        let start = [0.0, 2f64.ln(), mean.ln()];
        let params = |v: &[f64]| GammaGamma { p: v[0].exp(), q: v[1].exp(), gamma: v[2].exp() };
        let m = optimize::nelder_mead(|v| -self.log_likelihood(&params(v)), &start, 0.5, 1e-12, 1e-7, 3_000);
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
    fn likelihood_matches_mpmath() {
        close(CDNOW.log_likelihood(2.0, 20.5), -3.513_741_159_906_18, 1e-11);
        close(CDNOW.log_likelihood(1.0, 35.0), -4.182_118_026_033_014, 1e-11);
        let h = |transactions, mean_value| History { x: 0, tx_days: 0, t_days: 0, mean_value, transactions };
        let spend = Spend::new(&[h(2, 20.5), h(1, 35.0), h(3, f64::NAN), h(1, 0.0)]);
        assert_eq!(spend.customers(), 2, "customers without a positive mean are left out");
        close(spend.log_likelihood(&CDNOW), -3.513_741_159_906_18 - 4.182_118_026_033_014, 1e-11);
    }
}
