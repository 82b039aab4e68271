//! BFGS (the models' fits, with their gradients) and Nelder-Mead, the derivative-free simplex
//! minimizer (Nelder & Mead 1965), written here because
//! no optimization crate fits a dependency-free wasm plugin (`argmin` alone brings a dozen
//! crates). The models are fitted on log-parameters, so every parameter stays positive and the
//! search is unconstrained; that is also how Fader and Hardie fit them (Excel's Solver aside) and
//! how `lifetimes` does (`scipy.optimize.minimize(method="Nelder-Mead")` on log-parameters).

/// The best point found.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    /// Objective evaluations used.
    pub evaluations: usize,
    /// The simplex collapsed within tolerance (rather than running out of evaluations).
    pub converged: bool,
}

/// Minimize `f` from `start`. The initial simplex steps `step` along each axis; the search stops
/// when the simplex's values agree within `ftol` (relative) and its points within `xtol`, or after
/// `max_evals` evaluations. NaN values count as +∞ (a point outside the model's domain).
///
/// Nelder-Mead can stall on a degenerate simplex, so after converging it restarts once from the
/// best point with a fresh simplex and keeps going while that still improves (the usual remedy,
/// Press et al., Numerical Recipes §10.5).
pub fn nelder_mead(
    mut f: impl FnMut(&[f64]) -> f64,
    start: &[f64],
    step: f64,
    ftol: f64,
    xtol: f64,
    max_evals: usize,
) -> Minimum {
    let mut evals = 0;
    let mut eval = |x: &[f64], evals: &mut usize| {
        *evals += 1;
        let v = f(x);
        if v.is_nan() { f64::INFINITY } else { v }
    };
    let mut best = start.to_vec();
    let mut best_value = eval(&best, &mut evals);
    let mut converged = false;
    for _restart in 0..4 {
        let (x, v, ok) = simplex_search(&mut eval, &best, step, ftol, xtol, max_evals, &mut evals);
        let improved = best_value - v > ftol * (best_value.abs() + ftol);
        best = x;
        best_value = v;
        converged = ok;
        if !ok || !improved || evals >= max_evals {
            break;
        }
    }
    Minimum { x: best, value: best_value, evaluations: evals, converged }
}

#[allow(clippy::too_many_arguments)]
fn simplex_search(
    eval: &mut impl FnMut(&[f64], &mut usize) -> f64,
    start: &[f64],
    step: f64,
    ftol: f64,
    xtol: f64,
    max_evals: usize,
    evals: &mut usize,
) -> (Vec<f64>, f64, bool) {
    // Standard coefficients: reflection 1, expansion 2, contraction 1/2, shrink 1/2.
    let n = start.len();
    let mut points: Vec<Vec<f64>> = (0..=n)
        .map(|i| {
            let mut p = start.to_vec();
            if i > 0 {
                p[i - 1] += step;
            }
            p
        })
        .collect();
    let mut values: Vec<f64> = points.iter().map(|p| eval(p, evals)).collect();
    let along =
        |from: &[f64], to: &[f64], t: f64| -> Vec<f64> { from.iter().zip(to).map(|(a, b)| a + t * (b - a)).collect() };
    loop {
        // Order best → worst.
        let mut order: Vec<usize> = (0..=n).collect();
        order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
        points = order.iter().map(|&i| points[i].clone()).collect();
        values = order.iter().map(|&i| values[i]).collect();

        let spread_f = values[n] - values[0];
        let spread_x =
            points[1..].iter().flat_map(|p| p.iter().zip(&points[0]).map(|(a, b)| (a - b).abs())).fold(0.0, f64::max);
        if spread_f <= ftol * (values[0].abs() + ftol) && spread_x <= xtol {
            return (points.swap_remove(0), values[0], true);
        }
        if *evals >= max_evals {
            return (points.swap_remove(0), values[0], false);
        }

        let mut centroid = vec![0.0; n];
        for p in &points[..n] {
            for (c, v) in centroid.iter_mut().zip(p) {
                *c += v / n as f64;
            }
        }
        let worst = points[n].clone();
        let reflected = along(&centroid, &worst, -1.0);
        let fr = eval(&reflected, evals);
        if fr < values[0] {
            let expanded = along(&centroid, &worst, -2.0);
            let fe = eval(&expanded, evals);
            (points[n], values[n]) = if fe < fr { (expanded, fe) } else { (reflected, fr) };
        } else if fr < values[n - 1] {
            (points[n], values[n]) = (reflected, fr);
        } else {
            // Contract: outside when the reflection beat the worst point, inside otherwise.
            let (contracted, limit) = if fr < values[n] {
                (along(&centroid, &reflected, 0.5), fr)
            } else {
                (along(&centroid, &worst, 0.5), values[n])
            };
            let fc = eval(&contracted, evals);
            if fc < limit {
                (points[n], values[n]) = (contracted, fc);
            } else {
                // Shrink everything towards the best point.
                for i in 1..=n {
                    points[i] = along(&points[0], &points[i], 0.5);
                    values[i] = eval(&points[i], evals);
                }
            }
        }
    }
}

/// Minimize `f` (which returns the value and its gradient) from `start` with BFGS (Nocedal &
/// Wright, *Numerical Optimization*, Algorithm 6.1) and a backtracking line search (Armijo's
/// condition); a step whose value is not finite counts as too long. Stops when every gradient
/// component is within `gtol`, when a step no longer changes the value (relative 1e-15), or after
/// `max_iter` iterations.
///
/// The likelihoods here are smooth, and their gradients cost about what their values do, so a
/// quasi-Newton search converges in tens of evaluations where Nelder-Mead takes hundreds: this is
/// what makes the fits several times faster than `lifetimes` on the same data (BENCHMARKS.md).
pub fn bfgs(mut f: impl FnMut(&[f64]) -> (f64, Vec<f64>), start: &[f64], gtol: f64, max_iter: usize) -> Minimum {
    let n = start.len();
    let mut x = start.to_vec();
    let (mut fx, mut g) = f(&x);
    let mut evaluations = 1;
    if !fx.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return Minimum { x, value: f64::INFINITY, evaluations, converged: false };
    }
    // The inverse Hessian's estimate; the first step is scaled to move at most 1 (the parameters
    // are logarithms: a factor e).
    let scale = 1.0 / g.iter().fold(1e-12_f64, |m, v| m.max(v.abs()));
    let mut h: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| if i == j { scale } else { 0.0 }).collect()).collect();
    for _ in 0..max_iter {
        if g.iter().all(|v| v.abs() <= gtol) {
            return Minimum { x, value: fx, evaluations, converged: true };
        }
        let mut d: Vec<f64> = (0..n).map(|i| -(0..n).map(|j| h[i][j] * g[j]).sum::<f64>()).collect();
        let mut slope: f64 = d.iter().zip(&g).map(|(a, b)| a * b).sum();
        if slope >= 0.0 {
            // Not a descent direction (the estimate went bad): restart from steepest descent.
            h = (0..n).map(|i| (0..n).map(|j| if i == j { scale } else { 0.0 }).collect()).collect();
            d = g.iter().map(|v| -scale * v).collect();
            slope = d.iter().zip(&g).map(|(a, b)| a * b).sum();
        }
        let mut t = 1.0;
        let (x_new, f_new, g_new) = loop {
            let candidate: Vec<f64> = x.iter().zip(&d).map(|(a, b)| a + t * b).collect();
            let (fc, gc) = f(&candidate);
            evaluations += 1;
            if fc.is_finite() && gc.iter().all(|v| v.is_finite()) && fc <= fx + 1e-4 * t * slope {
                break (candidate, fc, gc);
            }
            t *= 0.5;
            if t < 1e-12 {
                return Minimum { x, value: fx, evaluations, converged: false };
            }
        };
        let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let stalled = (fx - f_new).abs() <= 1e-15 * fx.abs().max(1.0);
        (x, fx, g) = (x_new, f_new, g_new);
        if stalled {
            return Minimum { x, value: fx, evaluations, converged: g.iter().all(|v| v.abs() <= gtol.sqrt()) };
        }
        let sy: f64 = s.iter().zip(&y).map(|(a, b)| a * b).sum();
        if sy > 1e-300 {
            // H ← (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ, ρ = 1 / (yᵀ s).
            let rho = 1.0 / sy;
            let hy: Vec<f64> = (0..n).map(|i| (0..n).map(|j| h[i][j] * y[j]).sum()).collect();
            let yhy: f64 = y.iter().zip(&hy).map(|(a, b)| a * b).sum();
            for i in 0..n {
                for j in 0..n {
                    h[i][j] += -rho * (hy[i] * s[j] + s[i] * hy[j]) + (rho * rho * yhy + rho) * s[i] * s[j];
                }
            }
        }
    }
    Minimum { x, value: fx, evaluations, converged: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_rosenbrock_minimum() {
        let rosenbrock = |x: &[f64]| (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2);
        let m = nelder_mead(rosenbrock, &[-1.2, 1.0], 0.5, 1e-14, 1e-9, 10_000);
        assert!(m.converged, "{m:?}");
        assert!((m.x[0] - 1.0).abs() < 1e-6 && (m.x[1] - 1.0).abs() < 1e-6, "{m:?}");
    }

    #[test]
    fn bfgs_finds_the_rosenbrock_minimum() {
        let f = |x: &[f64]| {
            let (a, b) = (x[0], x[1]);
            let value = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
            (value, vec![-2.0 * (1.0 - a) - 400.0 * a * (b - a * a), 200.0 * (b - a * a)])
        };
        let m = bfgs(f, &[-1.2, 1.0], 1e-10, 1_000);
        assert!(m.converged, "{m:?}");
        assert!((m.x[0] - 1.0).abs() < 1e-6 && (m.x[1] - 1.0).abs() < 1e-6, "{m:?}");
        // Non-finite values beyond x = 2 are stepped back from.
        let walled = |x: &[f64]| {
            if x[0] > 2.0 { (f64::NAN, vec![f64::NAN]) } else { ((x[0] - 1.5).powi(2), vec![2.0 * (x[0] - 1.5)]) }
        };
        let m = bfgs(walled, &[-30.0], 1e-12, 100);
        assert!((m.x[0] - 1.5).abs() < 1e-9, "{m:?}");
    }

    #[test]
    fn treats_nan_as_outside_the_domain() {
        // ln is NaN below 0: the search must stay on the valid side and still find x = 1.
        let f = |x: &[f64]| (x[0] - 1.0).powi(2) + (x[0] - 0.5).ln() * 0.0;
        let m = nelder_mead(f, &[3.0], 1.0, 1e-14, 1e-9, 10_000);
        assert!((m.x[0] - 1.0).abs() < 1e-6, "{m:?}");
    }
}
