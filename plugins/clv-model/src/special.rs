//! The special functions the models need: ln Γ and the Gauss hypergeometric function ₂F₁.
//!
//! Written here rather than taken from a crate: `std` has no stable `ln_gamma`, and the crates
//! that have both (`statrs`, `special`, `puruspe`) either pull in dependencies that do not build
//! for `wasm32-wasip2` without work or bring far more than two functions. `f64::ln`, `exp`,
//! `ln_1p` and `sin` from `std` compile to wasm (libm) and are all the arithmetic used.

use std::f64::consts::PI;

/// Lanczos coefficients for g = 7, n = 9 (Numerical Recipes 3rd ed., §6.1; Godfrey's set):
/// about 15 significant digits of Γ over the positive reals.
const LANCZOS_G: f64 = 7.0;
const LANCZOS: [f64; 9] = [
    0.999_999_999_999_809_9,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_1,
    -176.615_029_162_140_6,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_572e-6,
    1.505_632_735_149_311_6e-7,
];

/// ln Γ(x) for x > 0 (NaN otherwise). The likelihoods only ever take Γ of positive arguments
/// (r + x, a + b + x, p·x + q, ...), so no sign is tracked.
pub fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx); keeps the series in its accurate range.
        return (PI / (PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = LANCZOS[0];
    for (i, c) in LANCZOS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + LANCZOS_G + 0.5;
    0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// ψ(x) = d/dx ln Γ(x) for x > 0 (NaN otherwise), for the likelihoods' gradients: the
/// recurrence ψ(x) = ψ(x + 1) − 1/x up to x ≥ 12, then the asymptotic series (Abramowitz & Stegun
/// 6.3.18), about 15 significant digits.
pub fn digamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    let (mut x, mut acc) = (x, 0.0);
    while x < 12.0 {
        acc -= 1.0 / x;
        x += 1.0;
    }
    let f = 1.0 / (x * x);
    let series = f * (1.0 / 12.0 - f * (1.0 / 120.0 - f * (1.0 / 252.0 - f * (1.0 / 240.0 - f * (1.0 / 132.0)))));
    acc + x.ln() - 0.5 / x - series
}

/// The Gauss hypergeometric function ₂F₁(a, b; c; z) for 0 ≤ z < 1, by its defining series
/// Σₙ (a)ₙ (b)ₙ / (c)ₙ zⁿ / n!.
///
/// The BG/NBD formulas only evaluate it at z = t / (α + T + t) ∈ [0, 1), where the series
/// converges (geometrically, like zⁿ); terms are summed until they no longer change the sum.
/// Returns NaN if it has not converged after `MAX_TERMS` terms (z extremely close to 1), rather
/// than a wrong number.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    const MAX_TERMS: usize = 1_000_000;
    if !(0.0..1.0).contains(&z) {
        return f64::NAN;
    }
    let (mut term, mut sum) = (1.0_f64, 1.0_f64);
    for n in 0..MAX_TERMS {
        let n = n as f64;
        term *= (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z;
        sum += term;
        if !sum.is_finite() {
            return f64::NAN;
        }
        // Past the terms' peak (they grow while (a+n)(b+n)z > (c+n)(n+1)), stop once negligible.
        if term.abs() <= 1e-17 * sum.abs() && (a + n) * (b + n) * z <= (c + n) * (n + 1.0) {
            return sum;
        }
    }
    f64::NAN
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn ln_gamma_matches_known_values() {
        // Γ(n) = (n − 1)!, Γ(1/2) = √π, Γ(0.243) from the reflection branch (computed with mpmath).
        assert!(ln_gamma(1.0).abs() < 1e-14);
        assert!(ln_gamma(2.0).abs() < 1e-14);
        assert!(close(ln_gamma(5.0), 24f64.ln(), 1e-14));
        assert!(close(ln_gamma(171.0), 706.573_062_245_787_4, 1e-14));
        assert!(close(ln_gamma(0.5), 0.5 * PI.ln(), 1e-14));
        assert!(close(ln_gamma(0.243), 1.318_043_584_699_67, 1e-13), "{}", ln_gamma(0.243));
        assert!(close(ln_gamma(1e-8), 18.420_680_738_180_21, 1e-12));
        assert!(ln_gamma(0.0).is_nan() && ln_gamma(-1.0).is_nan());
    }

    #[test]
    fn digamma_matches_known_values() {
        // ψ(1) = −γ (Euler-Mascheroni), ψ(1/2) = −γ − 2 ln 2, ψ(n + 1) = ψ(n) + 1/n; ψ(0.243) and
        // ψ(40.5) by mpmath.
        let euler = 0.577_215_664_901_532_9;
        assert!(close(digamma(1.0), -euler, 1e-14));
        assert!(close(digamma(0.5), -euler - 2.0 * 2f64.ln(), 1e-14));
        assert!(close(digamma(5.0), -euler + 1.0 + 0.5 + 1.0 / 3.0 + 0.25, 1e-14));
        assert!(close(digamma(0.243), -4.351_093_864_423_211, 1e-13), "{}", digamma(0.243));
        assert!(close(digamma(40.5), 3.688_905_492_933_234, 1e-14), "{}", digamma(40.5));
        // The derivative of ln Γ, numerically.
        for x in [0.3, 2.7, 11.0] {
            let h = 1e-6;
            assert!(close(digamma(x), (ln_gamma(x + h) - ln_gamma(x - h)) / (2.0 * h), 1e-7), "x = {x}");
        }
        assert!(digamma(0.0).is_nan());
    }

    #[test]
    fn hyp2f1_matches_closed_forms() {
        // ₂F₁(1, 1; 2; z) = −ln(1 − z)/z; ₂F₁(a, b; b; z) = (1 − z)^(−a).
        for z in [0.0_f64, 0.1, 0.5, 0.9, 0.99] {
            let want = if z == 0.0 { 1.0 } else { -(1.0 - z).ln() / z };
            assert!(close(hyp2f1(1.0, 1.0, 2.0, z), want, 1e-12), "z = {z}");
            assert!(close(hyp2f1(0.7, 2.3, 2.3, z), (1.0 - z).powf(-0.7), 1e-12), "z = {z}");
        }
        assert!(hyp2f1(1.0, 1.0, 2.0, 1.0).is_nan());
    }
}
