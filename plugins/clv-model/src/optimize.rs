//! Nelder-Mead, the derivative-free simplex minimizer (Nelder & Mead 1965), written here because
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
    fn treats_nan_as_outside_the_domain() {
        // ln is NaN below 0: the search must stay on the valid side and still find x = 1.
        let f = |x: &[f64]| (x[0] - 1.0).powi(2) + (x[0] - 0.5).ln() * 0.0;
        let m = nelder_mead(f, &[3.0], 1.0, 1e-14, 1e-9, 10_000);
        assert!((m.x[0] - 1.0).abs() < 1e-6, "{m:?}");
    }
}
