//! LogME (You et al. 2021) from the statistics: the evidence of Bayesian linear regression of
//! each one-hot label column on the raw features, maximised over `(α, β)` by MacKay's fixed
//! point, all from `FᵀF` (uncentred) and `Fᵀy_k`, re-expressed from the shifted state.

use super::policy;
use crate::error::{EtfError, Result};
use crate::geometry::factor::total_eigen;
use crate::geometry::{ClassGeometry, CollapseAnalysis, Weighting};
use crate::linalg::{kept_rank, sym_eig_desc, RankPolicy};
use crate::stats::CollapseStats;
use faer::Mat;
use rayon::prelude::*;

/// Result of [`logme`]: the mean evidence per sample over classes, and per class.
pub struct LogMe {
    pub value: f64,
    pub per_class: Vec<f64>,
    pub present: Vec<usize>,
    /// Largest number of fixed-point iterations over the classes.
    pub iterations: usize,
    /// Whether every class reached the stopping rule.
    pub converged: bool,
    /// Eigenvalues of `FᵀF` used.
    pub rank: usize,
}

/// Rank of `FᵀF` (eigenvalues `vals`, decreasing) kept by LogME. The statistics are accumulated on
/// shifted rows, so their rounding sits at the scale of the *centred* scatter `N Σ_T`; the mean
/// direction inflates `λ_max(FᵀF)` by about `N ‖μ‖²`, and a cut relative to it would drop real
/// directions of offset features. So under a threshold policy the kept eigenvalues are those
/// above `rtol · λ_max(N Σ_T)` (the precision-aware `rtol` of the statistics), `λ_max(Σ_T)` read
/// from the geometry's one eigendecomposition of `Σ_T`.
fn logme_rank(g: &ClassGeometry, vals: &[f64], pol: RankPolicy) -> Result<usize> {
    let RankPolicy::Rtol(rtol) = pol else {
        return Ok(kept_rank(vals, pol)?.0);
    };
    let rtol = rtol.unwrap_or_else(|| RankPolicy::default_rtol(g.dim));
    let centred = total_eigen(g)?.values();
    let top = centred.first().copied().unwrap_or(0.0) * g.num_samples as f64;
    if !(top > 0.0) {
        return Ok(kept_rank(vals, pol)?.0);
    }
    Ok(vals
        .iter()
        .take_while(|&&v| v > 0.0 && v / top > rtol)
        .count())
}

/// `FᵀF` and `Fᵀy_k` (columns: the present classes) from the shifted statistics:
/// `FᵀF = S + s cᵀ + c sᵀ + N c cᵀ` (`h = a + c`, `s = Σ a_i`), `Fᵀy_k = s_k + n_k c`.
fn raw_moments(stats: &CollapseStats, present: &[usize]) -> (Mat<f64>, Mat<f64>) {
    let p = stats.dim();
    let n = stats.num_samples() as f64;
    let c = stats.shift().map_or_else(|| vec![0.0; p], |s| s.to_vec());
    let cs = stats.class_sums();
    let counts = stats.counts();
    let mut s = vec![0.0; p];
    for kk in 0..stats.num_classes() {
        for j in 0..p {
            s[j] += cs[kk * p + j];
        }
    }
    let sc = stats.scatter();
    let gram = Mat::from_fn(p, p, |a, b| {
        sc[a * p + b] + s[a] * c[b] + c[a] * s[b] + n * c[a] * c[b]
    });
    let fy = Mat::from_fn(p, present.len(), |j, i| {
        let kk = present[i];
        cs[kk * p + j] + counts[kk] as f64 * c[j]
    });
    (gram, fy)
}

/// One class's regression in the eigenbasis of `FᵀF`: `σ_j` (kept), `x_j = z_j²/σ_j` and the
/// residual of `y` outside the kept span.
struct ClassFit<'a> {
    sigma: &'a [f64],
    x2: Vec<f64>,
    res_x2: f64,
    n: f64,
}

impl ClassFit<'_> {
    /// `(γ, ‖m‖², ‖y - Fm‖²)` at `t = α/β`.
    fn terms(&self, t: f64) -> (f64, f64, f64) {
        let (mut gamma, mut m2, mut res2) = (0.0, 0.0, self.res_x2);
        for (s, x) in self.sigma.iter().zip(&self.x2) {
            gamma += s / (s + t);
            m2 += s * x / ((t + s) * (t + s));
            let r = t / (t + s);
            res2 += x * r * r;
        }
        (gamma, m2, res2)
    }

    /// The evidence per sample at `(α, β)` with `d` the dimension term.
    fn evidence(&self, alpha: f64, beta: f64, m2: f64, res2: f64, d: f64) -> f64 {
        let n = self.n;
        let log2pi = (2.0 * std::f64::consts::PI).ln();
        let logdet: f64 = self.sigma.iter().map(|s| (alpha + beta * s).ln()).sum();
        (d / 2.0 * alpha.ln() + n / 2.0 * beta.ln()
            - 0.5 * logdet
            - beta / 2.0 * res2
            - alpha / 2.0 * m2
            - n / 2.0 * log2pi)
            / n
    }

    /// The reference implementation's iteration: at most 11 steps, stop at a relative change of
    /// `α/β` ≤ 1e-3, `1e-5` added to both denominators, the evidence from the last `(α, β)`
    /// and the previous `(‖m‖², ‖y-Fm‖²)`. Returns `(evidence, iterations, converged)`.
    fn parity(&self, p: usize) -> (f64, usize, bool) {
        let (mut alpha, mut beta, mut m2, mut res2) = (1.0f64, 1.0f64, 0.0, 0.0);
        for it in 1..=11 {
            let t = alpha / beta;
            let (gamma, mm, rr) = self.terms(t);
            m2 = mm;
            res2 = rr;
            alpha = gamma / (m2 + 1e-5);
            beta = (self.n - gamma) / (res2 + 1e-5);
            if ((alpha / beta - t) / t).abs() <= 1e-3 {
                return (self.evidence(alpha, beta, m2, res2, p as f64), it, true);
            }
        }
        (self.evidence(alpha, beta, m2, res2, p as f64), 11, false)
    }

    /// MacKay's fixed point to a relative change of `α/β` ≤ `tol` (at most `max_iter` steps),
    /// the evidence evaluated at the fixed point. Returns `(evidence, iterations, converged)`.
    fn fixed_point(&self, tol: f64, max_iter: usize) -> (f64, usize, bool) {
        let (mut alpha, mut beta) = (1.0f64, 1.0f64);
        let (mut it, mut conv) = (0, false);
        while it < max_iter {
            it += 1;
            let t = alpha / beta;
            let (gamma, m2, res2) = self.terms(t);
            if !(m2 > 0.0 && res2 > 0.0) {
                break;
            }
            alpha = gamma / m2;
            beta = (self.n - gamma) / res2;
            if ((alpha / beta - t) / t).abs() <= tol {
                conv = true;
                break;
            }
        }
        // evaluate at the fixed point: (m, residual) at the final α/β, α and β from them
        let t = alpha / beta;
        let (gamma, m2, res2) = self.terms(t);
        if m2 > 0.0 && res2 > 0.0 {
            alpha = gamma / m2;
            beta = (self.n - gamma) / res2;
        }
        let d = self.sigma.len() as f64;
        (self.evidence(alpha, beta, m2, res2, d), it, conv)
    }
}

/// LogME (You et al. 2021): for each present class `k`, the evidence of Bayesian linear
/// regression of the one-hot column `y_k` on the raw features `F` (no bias), maximised over
/// `(α, β)` by MacKay's fixed point `α = γ/‖m‖²`, `β = (N-γ)/‖y-Fm‖²`,
/// `γ = Σ_j βσ_j/(α+βσ_j)`, `σ_j` the eigenvalues of `FᵀF`;
/// `L = r/2 log α + N/2 log β - ½ Σ_{σ_j>0} log(α+βσ_j) - β/2‖y-Fm‖² - α/2‖m‖² - N/2 log 2π`
/// divided by `N` (`r` = rank of `F`: the `p - r` zero eigenvalues cancel in the
/// `p/2 log α - ½ Σ_j log(α+βσ_j)` of the definition), averaged over classes.
///
/// Needs only `FᵀF` (uncentred), `Fᵀy_k` and `n_k`, all re-expressed from the shifted state.
/// `parity = true` reproduces the reference implementation: at most 11 iterations, stop at a
/// relative change of `α/β` ≤ 1e-3, `1e-5` added to both denominators, eigenvalues with
/// `√σ ≤ 1e-10` dropped but `p/2 log α` kept, and the evidence evaluated with the last updated
/// `(α, β)` and the previous `(‖m‖², ‖y-Fm‖²)`. Otherwise the iteration runs until the relative
/// change is ≤ `tol` (at most `max_iter`), eigenvalues `≤ rtol·σ_max` are treated as zero, and
/// the evidence is evaluated at the fixed point.
pub fn logme(
    analysis: &CollapseAnalysis,
    parity: bool,
    tol: f64,
    max_iter: usize,
    rtol: Option<f64>,
) -> Result<LogMe> {
    let g = analysis.geometry(Weighting::Weighted)?;
    if !(tol > 0.0 && tol.is_finite()) || max_iter == 0 {
        return Err(EtfError::Parameter(format!(
            "tol must be positive and max_iter >= 1, got tol={tol}, max_iter={max_iter}"
        )));
    }
    let stats = analysis.stats();
    let pol = policy(&g, None, rtol)?;
    let n = g.num_samples as f64;
    let (gram, fy) = raw_moments(stats, &g.present);
    let (vals, vecs) = sym_eig_desc(gram.as_ref())?;
    let z = vecs.transpose() * &fy;
    // F has rank ≤ min(N, p): eigenvalues of FᵀF beyond that are rounding (the reference code
    // takes the thin SVD of F when N ≤ p and never sees them); the precision-aware cut drops
    // the rounding below the top ones as well.
    let kept = logme_rank(&g, &vals, pol)?.min(g.num_samples as usize);
    let rank = if parity {
        vals.iter()
            .take_while(|&&v| v.max(0.0).sqrt() > 1e-10)
            .count()
            .min(kept)
    } else {
        kept
    };
    if !parity && rank as f64 >= n {
        return Err(EtfError::Numerical(format!(
            "LogME is unbounded here: rank(F) = {rank} ≥ N = {n}, so F m fits every one-hot \
             column exactly and the evidence grows without limit as β → ∞; use parity=True \
             (the reference code's 11 damped iterations) or more samples than dimensions"
        )));
    }
    let sigma = &vals[..rank];
    let results: Vec<(f64, usize, bool)> = (0..g.num_present())
        .into_par_iter()
        .map(|i| {
            let ny = g.counts[i] as f64; // ‖y_k‖² of a one-hot column
            let x2: Vec<f64> = (0..rank)
                .map(|j| z[(j, i)] * z[(j, i)] / sigma[j])
                .collect();
            let res_x2 = (ny - x2.iter().sum::<f64>()).max(0.0);
            let fit = ClassFit {
                sigma,
                x2,
                res_x2,
                n,
            };
            if parity {
                fit.parity(stats.dim())
            } else {
                fit.fixed_point(tol, max_iter)
            }
        })
        .collect();
    let per_class: Vec<f64> = results.iter().map(|r| r.0).collect();
    if let Some(i) = per_class.iter().position(|v| !v.is_finite()) {
        return Err(EtfError::Numerical(format!(
            "LogME evidence of class {} is not finite (the fixed point diverged: the features \
             fit this class exactly or not at all)",
            g.present[i]
        )));
    }
    Ok(LogMe {
        value: per_class.iter().sum::<f64>() / per_class.len() as f64,
        per_class,
        present: g.present.clone(),
        iterations: results.iter().map(|r| r.1).max().unwrap_or(0),
        converged: results.iter().all(|r| r.2),
        rank,
    })
}
