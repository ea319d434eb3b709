//! Transfer evaluation from streaming statistics: the ridge-probe path, H-score, the regularised
//! (Ledoit–Wolf) H-score, LogME and GBC, and [`TransferabilityStats`], a [`CollapseStats`] with the
//! few extra accumulators those scores need. Everything here is linear algebra on mergeable sums;
//! it reads [`CollapseStats`] only through its public accessors.
//!
//! Conventions: features `h_i` (rows), labels in `0..K`; only classes with samples take part;
//! covariances are population (`1/N`) and weighted (`π_k = n_k/N`):
//! `Σ_T = (1/N) Σ (h_i-μ_G)(h_i-μ_G)ᵀ`, `Σ_B = Σ_k π_k d_k d_kᵀ`, `d_k = μ_k - μ_G`.

use crate::error::{check_dense_size, try_zeros, EtfError, Result};
use crate::linalg::{kept_rank, sym_eig_desc, RankPolicy, Real, SymPinv};
use crate::stats::CollapseStats;
use faer::Mat;
use ndarray::{ArrayView1, ArrayView2};
use rayon::prelude::*;

/// The weighted class geometry of a [`CollapseStats`]: present classes, `π_k`, `μ_G`, the
/// centred means `d_k` (columns of a `p × K'` matrix) and `Σ_T`.
pub struct Centred {
    pub present: Vec<usize>,
    pub counts: Vec<f64>,
    pub n: f64,
    pub pi: Vec<f64>,
    pub global_mean: Vec<f64>,
    pub centred_means: Mat<f64>,
    pub total_cov: Mat<f64>,
}

fn too_few(present: usize) -> EtfError {
    EtfError::TooFewClasses { present, needed: 2 }
}

/// Shift, class sums and the sum of all shifted rows.
fn sums(stats: &CollapseStats) -> (Vec<f64>, Vec<f64>) {
    let (k, p) = (stats.num_classes(), stats.dim());
    let c = stats
        .shift()
        .map(|s| s.to_vec())
        .unwrap_or_else(|| vec![0.0; p]);
    let cs = stats.class_sums();
    let mut s = vec![0.0; p];
    for kk in 0..k {
        for j in 0..p {
            s[j] += cs[kk * p + j];
        }
    }
    (c, s)
}

impl Centred {
    pub fn new(stats: &CollapseStats) -> Result<Self> {
        let p = stats.dim();
        let counts_all = stats.counts();
        let present: Vec<usize> = (0..stats.num_classes())
            .filter(|&k| counts_all[k] > 0)
            .collect();
        if present.len() < 2 {
            return Err(too_few(present.len()));
        }
        let n = stats.num_samples() as f64;
        let (c, s) = sums(stats);
        let cs = stats.class_sums();
        let counts: Vec<f64> = present.iter().map(|&k| counts_all[k] as f64).collect();
        let pi: Vec<f64> = counts.iter().map(|&m| m / n).collect();
        let centred_means = Mat::from_fn(p, present.len(), |j, i| {
            let k = present[i];
            cs[k * p + j] / counts[i] - s[j] / n
        });
        let sc = stats.scatter();
        let total_cov = Mat::from_fn(p, p, |a, b| (sc[a * p + b] - s[a] * s[b] / n) / n);
        let global_mean = (0..p).map(|j| c[j] + s[j] / n).collect();
        Ok(Centred {
            present,
            counts,
            n,
            pi,
            global_mean,
            centred_means,
            total_cov,
        })
    }

    /// `Σ_k π_k d_kᵀ A^† d_k = tr(A^† Σ_B)` for a pseudo-inverse `A^†`.
    fn between_trace(&self, pinv: &SymPinv) -> f64 {
        let q = pinv.quad_forms(self.centred_means.as_ref());
        q.iter().zip(&self.pi).map(|(a, b)| a * b).sum()
    }
}

/// The pseudo-inverse policy of the `(rank, rtol)` options for statistics `stats`: the core's
/// resolution, whose default threshold `rtol = p · eps` follows the precision the statistics were
/// built from (float32 input: float32 eps). `rank = 0` is refused (an empty pseudo-inverse).
fn policy(stats: &CollapseStats, rank: Option<usize>, rtol: Option<f64>) -> Result<RankPolicy> {
    if rank == Some(0) {
        return Err(EtfError::Parameter("rank must be >= 1, got 0".into()));
    }
    Ok(RankPolicy::from_options(rank, rtol)?.resolve(stats.dim(), stats.effective_precision()))
}

/// H-score (Bao et al. 2019) `tr(Σ_T^† Σ_B)`; returns `(value, rank of Σ_T^†)`.
pub fn hscore(
    stats: &CollapseStats,
    rank: Option<usize>,
    rtol: Option<f64>,
) -> Result<(f64, usize)> {
    let g = Centred::new(stats)?;
    let pinv = SymPinv::new(g.total_cov.as_ref(), policy(stats, rank, rtol)?, true)?;
    Ok((g.between_trace(&pinv), pinv.rank))
}

/// The ridge least-squares probe onto one-hot labels for every `λ`, from one eigendecomposition.
///
/// `min_{W,b} (1/2N) Σ_i ‖Wᵀ h_i + b - e_{y_i}‖² + (λ/2)‖W‖²` has
/// `W_λ = (Σ_T + λI)^{-1} C`, `C = Σ_k π_k d_k e_kᵀ`, `b = π - W_λᵀ μ_G`. With `Σ_T = V diag(σ) Vᵀ`
/// and `G = Vᵀ C`, `g_j = ‖G_j‖²`, the training loss is
/// `½(1 - Σπ_k²) - ½ Σ_j g_j (2/(σ_j+λ) - σ_j/(σ_j+λ)²)`; at `λ = 0` the sum runs over the
/// eigenvalues kept by the pseudo-inverse policy (it is then `probe_mse`).
pub struct RidgePath {
    pub present: Vec<usize>,
    pub pi: Vec<f64>,
    pub global_mean: Vec<f64>,
    /// Eigenvalues of `Σ_T`, decreasing (negative rounding clamped to 0).
    pub eigenvalues: Vec<f64>,
    /// Eigenvectors (columns), `p × p`.
    pub eigenvectors: Mat<f64>,
    /// `G = Vᵀ C`, `p × K'`.
    pub projected_targets: Mat<f64>,
    /// Eigenvalues kept at `λ = 0`.
    pub rank: usize,
}

impl RidgePath {
    pub fn new(stats: &CollapseStats, rtol: Option<f64>) -> Result<Self> {
        let g = Centred::new(stats)?;
        let p = stats.dim();
        let pol = policy(stats, None, rtol)?;
        let (vals, vecs) = sym_eig_desc(g.total_cov.as_ref())?;
        let rank = kept_rank(&vals, pol)?.0;
        let kp = g.present.len();
        let c = Mat::from_fn(p, kp, |j, i| g.pi[i] * g.centred_means[(j, i)]);
        let projected_targets = vecs.transpose() * &c;
        Ok(RidgePath {
            present: g.present,
            pi: g.pi,
            global_mean: g.global_mean,
            eigenvalues: vals.iter().map(|v| v.max(0.0)).collect(),
            eigenvectors: vecs,
            projected_targets,
            rank,
        })
    }

    fn g2(&self) -> Vec<f64> {
        let t = &self.projected_targets;
        (0..t.nrows())
            .map(|j| (0..t.ncols()).map(|i| t[(j, i)] * t[(j, i)]).sum())
            .collect()
    }

    /// Training loss `(1/2N) Σ ‖Wᵀh + b - e_y‖²` at each `λ ≥ 0`.
    pub fn train_mse(&self, lambdas: &[f64]) -> Result<Vec<f64>> {
        if let Some(l) = lambdas.iter().find(|l| !(l.is_finite() && **l >= 0.0)) {
            return Err(EtfError::Parameter(format!(
                "ridge strengths must be finite and >= 0, got {l}"
            )));
        }
        let base = 0.5 * (1.0 - self.pi.iter().map(|x| x * x).sum::<f64>());
        let g2 = self.g2();
        Ok(lambdas
            .iter()
            .map(|&l| {
                let mut acc = 0.0;
                for (j, (&s, &g)) in self.eigenvalues.iter().zip(&g2).enumerate() {
                    if l == 0.0 {
                        if j < self.rank {
                            acc += g / s;
                        }
                    } else {
                        let d = s + l;
                        acc += g * (2.0 / d - s / (d * d));
                    }
                }
                base - 0.5 * acc
            })
            .collect())
    }
}

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
/// above `rtol · λ_max(N Σ_T)` (the precision-aware `rtol` of the statistics).
fn logme_rank(stats: &CollapseStats, vals: &[f64], pol: RankPolicy) -> Result<usize> {
    let RankPolicy::Rtol(rtol) = pol else {
        return Ok(kept_rank(vals, pol)?.0);
    };
    let rtol = rtol.unwrap_or_else(|| RankPolicy::default_rtol(stats.dim()));
    let (centred, _) = sym_eig_desc(Centred::new(stats)?.total_cov.as_ref())?;
    let top = centred.first().copied().unwrap_or(0.0) * stats.num_samples() as f64;
    if !(top > 0.0) {
        return Ok(kept_rank(vals, pol)?.0);
    }
    Ok(vals
        .iter()
        .take_while(|&&v| v > 0.0 && v / top > rtol)
        .count())
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
    stats: &CollapseStats,
    parity: bool,
    tol: f64,
    max_iter: usize,
    rtol: Option<f64>,
) -> Result<LogMe> {
    let (k, p) = (stats.num_classes(), stats.dim());
    let counts = stats.counts();
    let present: Vec<usize> = (0..k).filter(|&i| counts[i] > 0).collect();
    if present.len() < 2 {
        return Err(too_few(present.len()));
    }
    if !(tol > 0.0 && tol.is_finite()) || max_iter == 0 {
        return Err(EtfError::Parameter(format!(
            "tol must be positive and max_iter >= 1, got tol={tol}, max_iter={max_iter}"
        )));
    }
    let pol = policy(stats, None, rtol)?;
    let n = stats.num_samples() as f64;
    let (c, s) = sums(stats);
    let sc = stats.scatter();
    // FᵀF = S + s cᵀ + c sᵀ + N c cᵀ (h = a + c)
    let gram = Mat::from_fn(p, p, |a, b| {
        sc[a * p + b] + s[a] * c[b] + c[a] * s[b] + n * c[a] * c[b]
    });
    let (vals, vecs) = sym_eig_desc(gram.as_ref())?;
    let cs = stats.class_sums();
    let fy = Mat::from_fn(p, present.len(), |j, i| {
        let kk = present[i];
        cs[kk * p + j] + counts[kk] as f64 * c[j]
    });
    let z = vecs.transpose() * &fy;
    // F has rank ≤ min(N, p): eigenvalues of FᵀF beyond that are rounding (the reference code
    // takes the thin SVD of F when N ≤ p and never sees them); the precision-aware cut drops
    // the rounding below the top ones as well.
    let kept = logme_rank(stats, &vals, pol)?.min(stats.num_samples() as usize);
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
    let log2pi = (2.0 * std::f64::consts::PI).ln();
    let results: Vec<(f64, usize, bool)> = (0..present.len())
        .into_par_iter()
        .map(|i| {
            let ny = counts[present[i]] as f64; // ‖y_k‖² of a one-hot column
            let x2: Vec<f64> = (0..rank)
                .map(|j| z[(j, i)] * z[(j, i)] / sigma[j])
                .collect();
            let res_x2 = (ny - x2.iter().sum::<f64>()).max(0.0);
            let terms = |t: f64| {
                let mut gamma = 0.0;
                let mut m2 = 0.0;
                let mut res2 = res_x2;
                for (s, x) in sigma.iter().zip(&x2) {
                    gamma += s / (s + t);
                    m2 += s * x / ((t + s) * (t + s));
                    let r = t / (t + s);
                    res2 += x * r * r;
                }
                (gamma, m2, res2)
            };
            let evidence = |alpha: f64, beta: f64, m2: f64, res2: f64, d: f64| {
                let logdet: f64 = sigma.iter().map(|s| (alpha + beta * s).ln()).sum();
                (d / 2.0 * alpha.ln() + n / 2.0 * beta.ln()
                    - 0.5 * logdet
                    - beta / 2.0 * res2
                    - alpha / 2.0 * m2
                    - n / 2.0 * log2pi)
                    / n
            };
            let (mut alpha, mut beta) = (1.0f64, 1.0f64);
            if parity {
                let (mut m2, mut res2) = (0.0, 0.0);
                let mut it = 0;
                let mut conv = false;
                while it < 11 {
                    it += 1;
                    let t = alpha / beta;
                    let (gamma, mm, rr) = terms(t);
                    m2 = mm;
                    res2 = rr;
                    alpha = gamma / (m2 + 1e-5);
                    beta = (n - gamma) / (res2 + 1e-5);
                    if ((alpha / beta - t) / t).abs() <= 1e-3 {
                        conv = true;
                        break;
                    }
                }
                (evidence(alpha, beta, m2, res2, p as f64), it, conv)
            } else {
                let mut it = 0;
                let mut conv = false;
                while it < max_iter {
                    it += 1;
                    let t = alpha / beta;
                    let (gamma, m2, res2) = terms(t);
                    if !(m2 > 0.0 && res2 > 0.0) {
                        break;
                    }
                    alpha = gamma / m2;
                    beta = (n - gamma) / res2;
                    if ((alpha / beta - t) / t).abs() <= tol {
                        conv = true;
                        break;
                    }
                }
                // evaluate at the fixed point: (m, residual) at the final α/β, α and β from them
                let t = alpha / beta;
                let (gamma, m2, res2) = terms(t);
                if m2 > 0.0 && res2 > 0.0 {
                    alpha = gamma / m2;
                    beta = (n - gamma) / res2;
                }
                (evidence(alpha, beta, m2, res2, rank as f64), it, conv)
            }
        })
        .collect();
    let per_class: Vec<f64> = results.iter().map(|r| r.0).collect();
    if let Some(i) = per_class.iter().position(|v| !v.is_finite()) {
        return Err(EtfError::Numerical(format!(
            "LogME evidence of class {} is not finite (the fixed point diverged: the features \
             fit this class exactly or not at all)",
            present[i]
        )));
    }
    Ok(LogMe {
        value: per_class.iter().sum::<f64>() / per_class.len() as f64,
        per_class,
        present,
        iterations: results.iter().map(|r| r.1).max().unwrap_or(0),
        converged: results.iter().all(|r| r.2),
        rank,
    })
}

const XMAGIC: &[u8; 8] = b"ETFCXFER";
/// Format version of [`TransferabilityStats::to_bytes`].
pub const XFER_FORMAT_VERSION: u32 = 1;

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// A [`CollapseStats`] plus the accumulators that the regularised H-score and GBC need, all
/// relative to the same shift `c` (`a_i = h_i - c`): `Σ ‖a_i‖⁴`, `Σ ‖a_i‖² a_i` (`p`) and the
/// per-class, per-dimension `Σ_{y_i=k} a_i²` (`K × p`). Mergeable: another's sums are
/// re-expressed to this shift exactly (they are polynomials in the shift).
#[derive(Debug, Clone, PartialEq)]
pub struct TransferabilityStats {
    inner: CollapseStats,
    fourth: f64,
    cubic: Vec<f64>,
    class_sq: Vec<f64>,
}

/// `(Σ‖a+e‖⁴, Σ‖a+e‖²(a+e), Σ_k (a+e)²)` from the sums relative to `c` and `e = c - c'`.
fn reexpress(
    st: &CollapseStats,
    fourth: f64,
    cubic: &[f64],
    class_sq: &[f64],
    e: &[f64],
) -> (f64, Vec<f64>, Vec<f64>) {
    let (k, p) = (st.num_classes(), st.dim());
    let n = st.num_samples() as f64;
    let (_, s) = sums(st);
    let q: f64 = st.class_sq_norms().iter().sum();
    let sc = st.scatter();
    let se: Vec<f64> = (0..p)
        .map(|a| (0..p).map(|b| sc[a * p + b] * e[b]).sum())
        .collect();
    let ee: f64 = e.iter().map(|v| v * v).sum();
    let te: f64 = cubic.iter().zip(e).map(|(a, b)| a * b).sum();
    let ese: f64 = e.iter().zip(&se).map(|(a, b)| a * b).sum();
    let s_e: f64 = s.iter().zip(e).map(|(a, b)| a * b).sum();
    let f4 = fourth + 4.0 * te + 4.0 * ese + 2.0 * ee * q + 4.0 * ee * s_e + n * ee * ee;
    let cub: Vec<f64> = (0..p)
        .map(|j| cubic[j] + q * e[j] + 2.0 * se[j] + 2.0 * e[j] * s_e + ee * s[j] + n * ee * e[j])
        .collect();
    let cs = st.class_sums();
    let counts = st.counts();
    let mut csq = class_sq.to_vec();
    for kk in 0..k {
        let nk = counts[kk] as f64;
        for j in 0..p {
            csq[kk * p + j] += 2.0 * e[j] * cs[kk * p + j] + nk * e[j] * e[j];
        }
    }
    (f4, cub, csq)
}

impl TransferabilityStats {
    pub fn new(num_classes: usize, dim: usize) -> Result<Self> {
        check_dense_size(num_classes, dim, "per-class sums of squares")?;
        Ok(TransferabilityStats {
            inner: CollapseStats::new(num_classes, dim, false)?,
            fourth: 0.0,
            cubic: try_zeros(dim, "Σ‖a‖²a")?,
            class_sq: try_zeros(num_classes * dim, "per-class sums of squares")?,
        })
    }

    pub fn collapse_stats(&self) -> &CollapseStats {
        &self.inner
    }
    pub fn fourth_moment(&self) -> f64 {
        self.fourth
    }
    pub fn cubic_sum(&self) -> &[f64] {
        &self.cubic
    }
    /// `Σ_{y_i=k} (h_i - c)²` per class and dimension (`K × p` row-major).
    pub fn class_sq_sums(&self) -> &[f64] {
        &self.class_sq
    }

    /// Adds one batch; all-or-nothing (the inner update validates everything first).
    pub fn update<T: Real>(&mut self, h: ArrayView2<'_, T>, y: ArrayView1<'_, i64>) -> Result<()> {
        self.inner.update(h, y)?;
        let Some(c) = self.inner.shift().map(|s| s.to_vec()) else {
            return Ok(());
        };
        let (k, p) = (self.inner.num_classes(), self.inner.dim());
        let n = h.nrows();
        const ROWS: usize = 512;
        // Per block of rows: (Σ‖a‖⁴, Σ‖a‖²a, per-class Σa² for the classes the block holds).
        type BlockSums = (f64, Vec<f64>, Vec<(usize, Vec<f64>)>);
        let parts: Vec<BlockSums> = (0..n.div_ceil(ROWS))
            .into_par_iter()
            .map(|blk| {
                let mut f4 = 0.0;
                let mut cub = vec![0.0; p];
                let mut per: Vec<(usize, Vec<f64>)> = Vec::new();
                let mut a = vec![0.0; p];
                for i in blk * ROWS..((blk + 1) * ROWS).min(n) {
                    let row = h.row(i);
                    let mut n2 = 0.0;
                    for j in 0..p {
                        a[j] = row[j].to_f64() - c[j];
                        n2 += a[j] * a[j];
                    }
                    f4 += n2 * n2;
                    for (cj, aj) in cub.iter_mut().zip(&a) {
                        *cj += n2 * aj;
                    }
                    let lab = y[i] as usize;
                    let slot = match per.iter().position(|(l, _)| *l == lab) {
                        Some(s) => s,
                        None => {
                            per.push((lab, vec![0.0; p]));
                            per.len() - 1
                        }
                    };
                    let q = &mut per[slot].1;
                    for j in 0..p {
                        q[j] += a[j] * a[j];
                    }
                }
                (f4, cub, per)
            })
            .collect();
        debug_assert!(parts.iter().all(|pt| pt.2.iter().all(|(l, _)| *l < k)));
        for (f4, cub, per) in parts {
            self.fourth += f4;
            for (dst, v) in self.cubic.iter_mut().zip(&cub) {
                *dst += v;
            }
            for (lab, q) in per {
                let row = &mut self.class_sq[lab * p..(lab + 1) * p];
                for (dst, v) in row.iter_mut().zip(&q) {
                    *dst += v;
                }
            }
        }
        Ok(())
    }

    /// Adds `other`: the same as one pass over both inputs, to rounding.
    pub fn merge(&mut self, other: &TransferabilityStats) -> Result<()> {
        self.inner.check_compatible(&other.inner)?;
        let Some(oc) = other.inner.shift().map(|s| s.to_vec()) else {
            return Ok(());
        };
        self.inner.merge(&other.inner)?;
        let mine = self.inner.shift().expect("set by merge").to_vec();
        let e: Vec<f64> = oc.iter().zip(&mine).map(|(a, b)| a - b).collect();
        let (f4, cub, csq) = reexpress(
            &other.inner,
            other.fourth,
            &other.cubic,
            &other.class_sq,
            &e,
        );
        self.fourth += f4;
        for (a, b) in self.cubic.iter_mut().zip(&cub) {
            *a += b;
        }
        for (a, b) in self.class_sq.iter_mut().zip(&csq) {
            *a += b;
        }
        Ok(())
    }

    /// Versioned little-endian bytes: magic `ETFCXFER`, `u32` version, `u64` length and bytes
    /// of the inner statistics, `Σ‖a‖⁴`, `Σ‖a‖²a`, the class sums of squares, FNV-1a-64.
    pub fn to_bytes(&self) -> Vec<u8> {
        let inner = self.inner.to_bytes();
        let mut out =
            Vec::with_capacity(inner.len() + 8 * (2 + self.cubic.len() + self.class_sq.len()) + 32);
        out.extend_from_slice(XMAGIC);
        out.extend_from_slice(&XFER_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(inner.len() as u64).to_le_bytes());
        out.extend_from_slice(&inner);
        out.extend_from_slice(&self.fourth.to_le_bytes());
        for v in self.cubic.iter().chain(&self.class_sq) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let h = fnv1a(&out);
        out.extend_from_slice(&h.to_le_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let corrupt = |m: &str| EtfError::Corrupt(format!("transferability statistics: {m}"));
        if bytes.len() < 8 + 4 + 8 + 8 || &bytes[..8] != XMAGIC {
            return Err(corrupt(
                "not etfcore transferability statistics (bad magic or too short)",
            ));
        }
        let ver = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
        if ver != XFER_FORMAT_VERSION {
            return Err(EtfError::Incompatible(format!(
                "transferability statistics format version {ver}, this build reads \
                 {XFER_FORMAT_VERSION}"
            )));
        }
        let body = &bytes[..bytes.len() - 8];
        let stored = u64::from_le_bytes(bytes[bytes.len() - 8..].try_into().unwrap());
        if fnv1a(body) != stored {
            return Err(corrupt("checksum mismatch (truncated or modified)"));
        }
        let len = u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize;
        if 20 + len > body.len() {
            return Err(corrupt("truncated"));
        }
        let inner = CollapseStats::from_bytes(&bytes[20..20 + len])?;
        let (k, p) = (inner.num_classes(), inner.dim());
        let rest = &body[20 + len..];
        if rest.len() != 8 * (1 + p + k * p) {
            return Err(corrupt("length does not match num_classes and dim"));
        }
        let vals: Vec<f64> = rest
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        if vals.iter().any(|v| !v.is_finite()) {
            return Err(corrupt("non-finite value"));
        }
        Ok(TransferabilityStats {
            inner,
            fourth: vals[0],
            cubic: vals[1..1 + p].to_vec(),
            class_sq: vals[1 + p..].to_vec(),
        })
    }

    /// Ledoit–Wolf shrinkage `δ` of `Σ_T` (as scikit-learn's `ledoit_wolf`):
    /// `δ = min(1, b̄²/d²)`, `d² = ‖Σ_T - μI‖_F²`, `μ = tr Σ_T/p`,
    /// `b̄² = (Σ_i ‖x_i‖⁴/N - ‖Σ_T‖_F²)/N` with `x_i = h_i - μ_G`.
    pub fn ledoit_wolf_shrinkage(&self) -> Result<(f64, Centred)> {
        let g = Centred::new(&self.inner)?;
        let p = self.inner.dim();
        let n = g.n;
        let (c, _) = sums(&self.inner);
        let e: Vec<f64> = (0..p).map(|j| c[j] - g.global_mean[j]).collect();
        let (f4, _, _) = reexpress(&self.inner, self.fourth, &self.cubic, &self.class_sq, &e);
        let t = &g.total_cov;
        let mu = (0..p).map(|j| t[(j, j)]).sum::<f64>() / p as f64;
        let mut fro = 0.0;
        let mut d2 = 0.0;
        for a in 0..p {
            for b in 0..p {
                let v = t[(a, b)];
                fro += v * v;
                let w = if a == b { v - mu } else { v };
                d2 += w * w;
            }
        }
        let b2 = ((f4 / n - fro) / n).max(0.0);
        let delta = if d2 > 0.0 { (b2 / d2).min(1.0) } else { 0.0 };
        Ok((delta, g))
    }

    /// Regularised H-score (Ibrahim et al. 2022): `tr(Σ_LW^{-1} (1-δ) Σ_B)` with the Ledoit–Wolf
    /// estimate `Σ_LW = (1-δ)Σ_T + δ (tr Σ_T/p) I`. Returns `(value, δ, rank)`.
    pub fn regularized_hscore(&self, rtol: Option<f64>) -> Result<(f64, f64, usize)> {
        let (delta, g) = self.ledoit_wolf_shrinkage()?;
        let p = self.inner.dim();
        let mu = (0..p).map(|j| g.total_cov[(j, j)]).sum::<f64>() / p as f64;
        let lw = Mat::from_fn(p, p, |a, b| {
            (1.0 - delta) * g.total_cov[(a, b)] + if a == b { delta * mu } else { 0.0 }
        });
        let pinv = SymPinv::new(lw.as_ref(), policy(&self.inner, None, rtol)?, true)?;
        Ok(((1.0 - delta) * g.between_trace(&pinv), delta, pinv.rank))
    }

    /// GBC (Pándy et al. 2022): `-Σ_{k≠l} exp(-D_B(k,l))` with the Bhattacharyya distance of
    /// diagonal Gaussians `D_B = ⅛ Σ_d (μ_kd-μ_ld)²/σ̄_d + ½ Σ_d ln(σ̄_d/√(σ_kd σ_ld))`,
    /// `σ̄ = (σ_k+σ_l)/2`, `σ_kd` the population variance of dimension `d` in class `k`.
    /// Variances are floored at `var_floor` (default `1e-12 ×` the largest variance) so that a
    /// constant dimension does not give an infinite distance.
    pub fn gbc(&self, var_floor: Option<f64>) -> Result<f64> {
        let (k, p) = (self.inner.num_classes(), self.inner.dim());
        let counts = self.inner.counts();
        let present: Vec<usize> = (0..k).filter(|&i| counts[i] > 0).collect();
        if present.len() < 2 {
            return Err(too_few(present.len()));
        }
        let cs = self.inner.class_sums();
        let mut means = vec![0.0; present.len() * p];
        let mut vars = vec![0.0; present.len() * p];
        for (i, &kk) in present.iter().enumerate() {
            let nk = counts[kk] as f64;
            for j in 0..p {
                let m = cs[kk * p + j] / nk;
                means[i * p + j] = m; // relative to the shift: differences are all we need
                vars[i * p + j] = (self.class_sq[kk * p + j] / nk - m * m).max(0.0);
            }
        }
        let vmax = vars.iter().cloned().fold(0.0, f64::max);
        let floor = match var_floor {
            Some(f) if f.is_finite() && f >= 0.0 => f,
            Some(f) => {
                return Err(EtfError::Parameter(format!(
                    "var_floor must be finite and >= 0, got {f}"
                )))
            }
            None => 1e-12 * vmax,
        };
        if !(vmax > 0.0 || floor > 0.0) {
            return Err(EtfError::Degenerate(
                "every class has zero variance in every dimension: GBC is undefined".into(),
            ));
        }
        for v in vars.iter_mut() {
            *v = v.max(floor);
        }
        let kp = present.len();
        let total: f64 = (0..kp)
            .into_par_iter()
            .map(|a| {
                let mut acc = 0.0;
                for b in 0..kp {
                    if a == b {
                        continue;
                    }
                    let mut db = 0.0;
                    for j in 0..p {
                        let (va, vb) = (vars[a * p + j], vars[b * p + j]);
                        let v = 0.5 * (va + vb);
                        let d = means[a * p + j] - means[b * p + j];
                        db += 0.125 * d * d / v + 0.5 * (v.ln() - 0.5 * (va.ln() + vb.ln()));
                    }
                    acc += (-db).exp();
                }
                acc
            })
            .sum();
        Ok(-total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn data(n: usize, p: usize, k: usize, seed: u64, offset: f64) -> (Array2<f64>, Array1<i64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let means: Vec<f64> = (0..k * p)
            .map(|_| rng.random::<f64>() * 2.0 - 1.0)
            .collect();
        let y = Array1::from_shape_fn(n, |i| (i % k) as i64);
        let h = Array2::from_shape_fn((n, p), |(i, j)| {
            offset + means[(i % k) * p + j] + rng.random::<f64>() - 0.5
        });
        (h, y)
    }

    fn dense_total_cov(h: &Array2<f64>) -> Mat<f64> {
        let (n, p) = h.dim();
        let m: Vec<f64> = (0..p).map(|j| h.column(j).sum() / n as f64).collect();
        Mat::from_fn(p, p, |a, b| {
            (0..n)
                .map(|i| (h[[i, a]] - m[a]) * (h[[i, b]] - m[b]))
                .sum::<f64>()
                / n as f64
        })
    }

    #[test]
    fn ridge_path_at_zero_is_the_pinv_probe_and_decreases_in_lambda() {
        let (h, y) = data(300, 6, 3, 1, 5.0);
        let mut st = CollapseStats::new(3, 6, false).unwrap();
        st.update(h.view(), y.view()).unwrap();
        let path = RidgePath::new(&st, None).unwrap();
        let mse = path.train_mse(&[0.0, 1e-3, 1.0, 1e6]).unwrap();
        // direct: least squares with bias on the raw features
        let t = dense_total_cov(&h);
        let pinv = SymPinv::new(t.as_ref(), RankPolicy::Rtol(None), false).unwrap();
        let g = Centred::new(&st).unwrap();
        let pi2: f64 = g.pi.iter().map(|x| x * x).sum();
        let d: Vec<f64> = pinv.quad_forms(g.centred_means.as_ref());
        let probe =
            0.5 * (1.0 - pi2) - 0.5 * d.iter().zip(&g.pi).map(|(a, b)| a * b * b).sum::<f64>();
        assert!((mse[0] - probe).abs() < 1e-12, "{} {}", mse[0], probe);
        assert!(mse.windows(2).all(|w| w[0] <= w[1] + 1e-15));
        assert!((mse[3] - 0.5 * (1.0 - pi2)).abs() < 1e-6);
    }

    #[test]
    fn merged_transferability_stats_equal_one_pass() {
        let (h, y) = data(500, 5, 4, 2, 3.0);
        let mut one = TransferabilityStats::new(4, 5).unwrap();
        one.update(h.view(), y.view()).unwrap();
        let mut a = TransferabilityStats::new(4, 5).unwrap();
        let mut b = TransferabilityStats::new(4, 5).unwrap();
        a.update(h.slice(ndarray::s![..123, ..]), y.slice(ndarray::s![..123]))
            .unwrap();
        b.update(h.slice(ndarray::s![123.., ..]), y.slice(ndarray::s![123..]))
            .unwrap();
        a.merge(&b).unwrap();
        let rel = |x: f64, y: f64| (x - y).abs() / y.abs().max(1e-300);
        // the raw sums are relative to different shifts; re-expressed to one shift they agree
        let c1 = one.inner.shift().unwrap().to_vec();
        let c2 = a.inner.shift().unwrap().to_vec();
        let e: Vec<f64> = c2.iter().zip(&c1).map(|(x, y)| x - y).collect();
        let (f4, cub, csq) = reexpress(&a.inner, a.fourth, &a.cubic, &a.class_sq, &e);
        assert!(rel(f4, one.fourth) < 1e-10, "{f4} {}", one.fourth);
        for (x, y) in cub.iter().zip(&one.cubic) {
            assert!((x - y).abs() < 1e-9 * (1.0 + y.abs()));
        }
        for (x, y) in csq.iter().zip(&one.class_sq) {
            assert!((x - y).abs() < 1e-9 * (1.0 + y.abs()));
        }
        let r1 = one.regularized_hscore(None).unwrap();
        let r2 = a.regularized_hscore(None).unwrap();
        assert!(rel(r1.0, r2.0) < 1e-9 && rel(r1.1, r2.1) < 1e-9);
        assert!(rel(one.gbc(None).unwrap(), a.gbc(None).unwrap()) < 1e-9);
        let bytes = a.to_bytes();
        assert_eq!(TransferabilityStats::from_bytes(&bytes).unwrap(), a);
        let mut bad = bytes.clone();
        bad[30] ^= 1;
        assert!(matches!(
            TransferabilityStats::from_bytes(&bad),
            Err(EtfError::Corrupt(_))
        ));
        assert!(TransferabilityStats::from_bytes(&bytes[..bytes.len() - 3]).is_err());
    }

    #[test]
    fn hscore_is_trace_and_logme_converges() {
        let (h, y) = data(400, 4, 3, 3, 0.5);
        let mut st = CollapseStats::new(3, 4, false).unwrap();
        st.update(h.view(), y.view()).unwrap();
        let (v, r) = hscore(&st, None, None).unwrap();
        assert_eq!(r, 4);
        assert!(v > 0.0 && v <= 2.0 + 1e-12);
        let l = logme(&st, false, 1e-12, 10_000, None).unwrap();
        assert!(l.converged && l.value.is_finite());
        let lp = logme(&st, true, 1e-12, 10_000, None).unwrap();
        assert!((lp.value - l.value).abs() < 1e-2);
        let empty = CollapseStats::new(3, 4, false).unwrap();
        assert!(matches!(
            hscore(&empty, None, None),
            Err(EtfError::TooFewClasses { .. })
        ));
    }
}
