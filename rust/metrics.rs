//! Collapse metrics computed from [`CollapseStats`].
//!
//! [`ClassGeometry`] turns the statistics into class means and the covariances
//! `Σ_T`, `Σ_B`, `Σ_W` for one weighting convention (weighted by class frequency or balanced); each metric is a function of it.
//! Only classes with samples take part; `K` below is the number of present classes.

use crate::error::{EtfError, Result};
use crate::linalg::{kept_rank, sym_eig_desc, PinvMethod, Precision, RankPolicy, SymPinv};
use crate::stats::CollapseStats;
use faer::linalg::triangular_inverse::invert_lower_triangular;
use faer::{Mat, MatRef};
use faer::{Par, Side};
use ndarray::{ArrayView1, ArrayView2};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

/// Covariance convention: classes weighted by their frequency or equally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Weighting {
    /// `μ_G` the sample mean, classes weighted by `π_k = n_k/N`; `Σ_T = Σ_W + Σ_B` for any balance.
    Weighted,
    /// `μ_G = mean_k μ_k`, every class weighted `1/K` (Papyan et al.).
    Balanced,
}

impl FromStr for Weighting {
    type Err = EtfError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "weighted" => Ok(Weighting::Weighted),
            "balanced" => Ok(Weighting::Balanced),
            _ => Err(EtfError::Parameter(format!(
                "weighting must be 'weighted' or 'balanced', got {s:?}"
            ))),
        }
    }
}

/// Class means and covariances of the present classes under one weighting.
#[derive(Debug, Clone)]
pub struct ClassGeometry {
    pub weighting: Weighting,
    pub dim: usize,
    /// Input precision of the statistics: default thresholds are `n · eps(precision)`.
    pub precision: Precision,
    pub num_samples: u64,
    /// Indices (in `0..num_classes`) of the classes with samples.
    pub present: Vec<usize>,
    pub counts: Vec<u64>,
    /// Class weights: `π_k` (weighted) or `1/K` (balanced).
    pub weights: Vec<f64>,
    pub global_mean: Vec<f64>,
    /// `p × K`, column k the mean of present class k.
    pub class_means: Mat<f64>,
    /// `p × K`, `μ_k - μ_G`.
    pub centred_means: Mat<f64>,
    /// `tr C_k` per present class.
    pub class_variances: Vec<f64>,
    pub between: Mat<f64>,
    /// `None` for the balanced convention on imbalanced classes without per-class scatters.
    pub within: Option<Mat<f64>>,
    pub within_trace: f64,
    /// `Σ_T`'s pseudo-inverse and the quadratic forms `d_k` under one policy (VCI and the probe
    /// MSE share it), built on first use.
    total_pinv: OnceLock<(RankPolicy, Arc<TotalPinv>)>,
    /// `Σ_B`'s spectrum (NC1, its split and VCI's numerical normaliser share it).
    spectrum: OnceLock<Arc<BetweenSpectrum>>,
    /// NC1 and its split by the Cholesky route under one policy (`None`: not provable).
    nc1_cholesky: OnceLock<(RankPolicy, Option<Nc1Cholesky>)>,
}

/// The quadratic forms `d_k = (μ_k - μ_G)ᵀ Σ_T^† (μ_k - μ_G)` and the pseudo-inverse.
type TotalPinv = (Vec<f64>, SymPinv);

/// `(Tr[Σ_W Σ_B^†], tr(P_B Σ_W), rank)` from the Cholesky route.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Nc1Cholesky {
    trace: f64,
    inside: f64,
    rank: usize,
}

/// The metric's value with the pseudo-inverse that produced it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PinvMetric {
    pub value: f64,
    /// Number of eigenvalues the pseudo-inverse kept.
    pub rank: usize,
    pub method: PinvMethod,
    /// For VCI: the `r` of `1 - Tr[Σ_T^†Σ_B]/r`; otherwise the same as `rank`.
    pub normalizer: usize,
}

/// How VCI normalises `Tr[Σ_T^† Σ_B]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VciNormalizer {
    /// `r = min(p, K-1)` (default).
    MinDimClasses,
    /// `r = rank(Σ_B)` by the default threshold.
    Numerical,
    Fixed(usize),
}

impl FromStr for VciNormalizer {
    type Err = EtfError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "min" => Ok(VciNormalizer::MinDimClasses),
            "numerical" => Ok(VciNormalizer::Numerical),
            _ => Err(EtfError::Parameter(format!(
                "normalizer must be 'min', 'numerical' or a positive int, got {s:?}"
            ))),
        }
    }
}

impl VciNormalizer {
    /// A fixed `r`, which must be positive.
    pub fn fixed(r: usize) -> Result<Self> {
        if r == 0 {
            return Err(EtfError::Parameter(
                "the VCI normaliser r must be positive".into(),
            ));
        }
        Ok(VciNormalizer::Fixed(r))
    }
}

fn outer_sum(a: MatRef<'_, f64>, w: &[f64]) -> Mat<f64> {
    // Σ_k w_k a_k a_kᵀ = (A diag √w)(A diag √w)ᵀ
    let aw = Mat::from_fn(a.nrows(), a.ncols(), |i, j| a[(i, j)] * w[j].sqrt());
    &aw * aw.transpose()
}

impl ClassGeometry {
    /// Builds the geometry. `balanced_scatter` optionally gives
    /// `Σ_k S_k/n_k = Σ_i (1/n_{y_i}) (h_i - c)(h_i - c)ᵀ` (same shift, `p × p`), which makes the
    /// balanced `Σ_W` available on imbalanced data without tracking per-class scatters.
    pub fn new(
        stats: &CollapseStats,
        weighting: Weighting,
        balanced_scatter: Option<&[f64]>,
    ) -> Result<Self> {
        let p = stats.dim();
        let present: Vec<usize> = (0..stats.num_classes())
            .filter(|&k| stats.counts()[k] > 0)
            .collect();
        let kp = present.len();
        if kp < 2 {
            return Err(EtfError::TooFewClasses {
                present: kp,
                needed: 2,
            });
        }
        let shift = stats.shift().ok_or(EtfError::TooFewClasses {
            present: 0,
            needed: 2,
        })?;
        let counts: Vec<u64> = present.iter().map(|&k| stats.counts()[k]).collect();
        let n: u64 = counts.iter().sum();
        let sums = stats.class_sums();
        // Means relative to the shift, p × K.
        let rel = Mat::from_fn(p, kp, |i, j| sums[present[j] * p + i] / counts[j] as f64);
        let weights: Vec<f64> = match weighting {
            Weighting::Weighted => counts.iter().map(|&c| c as f64 / n as f64).collect(),
            Weighting::Balanced => vec![1.0 / kp as f64; kp],
        };
        let mg_rel: Vec<f64> = (0..p)
            .map(|i| (0..kp).map(|j| weights[j] * rel[(i, j)]).sum())
            .collect();
        let centred = Mat::from_fn(p, kp, |i, j| rel[(i, j)] - mg_rel[i]);
        let between = outer_sum(centred.as_ref(), &weights);
        let class_variances: Vec<f64> = (0..kp)
            .map(|j| {
                let m2: f64 = (0..p).map(|i| rel[(i, j)] * rel[(i, j)]).sum();
                (stats.class_sq_norms()[present[j]] / counts[j] as f64 - m2).max(0.0)
            })
            .collect();
        let within_trace: f64 = weights
            .iter()
            .zip(&class_variances)
            .map(|(w, v)| w * v)
            .sum();
        let balanced_data = counts.iter().all(|&c| c == counts[0]);
        let class_moment = |scatter_sum: Mat<f64>, scale: f64| -> Mat<f64> {
            // scale · scatter_sum - Σ_k w_k rel_k rel_kᵀ
            let mm = outer_sum(rel.as_ref(), &weights);
            Mat::from_fn(p, p, |i, j| scale * scatter_sum[(i, j)] - mm[(i, j)])
        };
        let full_scatter = || {
            let s = stats.scatter();
            Mat::from_fn(p, p, |i, j| s[i * p + j])
        };
        let within = match weighting {
            Weighting::Weighted => Some(class_moment(full_scatter(), 1.0 / n as f64)),
            Weighting::Balanced => {
                if let Some(bs) = balanced_scatter {
                    if bs.len() != p * p {
                        return Err(EtfError::Shape(format!(
                            "balanced scatter has {} entries, expected {}",
                            bs.len(),
                            p * p
                        )));
                    }
                    Some(class_moment(
                        Mat::from_fn(p, p, |i, j| bs[i * p + j]),
                        1.0 / kp as f64,
                    ))
                } else if stats.tracks_class_scatter() {
                    let mut acc = Mat::<f64>::zeros(p, p);
                    for (j, &k) in present.iter().enumerate() {
                        let sk = stats.class_scatter(k).unwrap();
                        let c = counts[j] as f64;
                        for a in 0..p {
                            for b in 0..p {
                                acc[(a, b)] += sk[a * p + b] / c;
                            }
                        }
                    }
                    Some(class_moment(acc, 1.0 / kp as f64))
                } else if balanced_data {
                    Some(class_moment(full_scatter(), 1.0 / n as f64))
                } else {
                    None
                }
            }
        };
        let global_mean: Vec<f64> = mg_rel.iter().zip(shift).map(|(a, c)| a + c).collect();
        let class_means = Mat::from_fn(p, kp, |i, j| rel[(i, j)] + shift[i]);
        Ok(ClassGeometry {
            weighting,
            dim: p,
            precision: stats.effective_precision(),
            num_samples: n,
            present,
            counts,
            weights,
            global_mean,
            class_means,
            centred_means: centred,
            class_variances,
            between,
            within,
            within_trace,
            total_pinv: OnceLock::new(),
            spectrum: OnceLock::new(),
            nc1_cholesky: OnceLock::new(),
        })
    }

    pub fn num_present(&self) -> usize {
        self.present.len()
    }

    /// `Σ_W`, or an error that says how to get it.
    pub fn within(&self) -> Result<&Mat<f64>> {
        self.within.as_ref().ok_or_else(|| {
            EtfError::Parameter(
                "the balanced within-class covariance of imbalanced classes is not a function of \
                 (n_k, s_k, S): create CollapseStats(..., track_class_scatter=True), compute it from \
                 arrays (collapse_metrics), or use weighting='weighted'"
                    .into(),
            )
        })
    }

    /// `Σ_T = Σ_W + Σ_B`.
    pub fn total(&self) -> Result<Mat<f64>> {
        Ok(self.within()? + &self.between)
    }

    pub fn between_trace(&self) -> f64 {
        (0..self.dim).map(|i| self.between[(i, i)]).sum()
    }

    /// The pseudo-inverse policy of the `(rank, rtol)` options, the default threshold being
    /// `p · eps` of the precision the statistics were built from.
    pub fn policy(&self, rank: Option<usize>, rtol: Option<f64>) -> Result<RankPolicy> {
        Ok(RankPolicy::from_options(rank, rtol)?.resolve(self.dim, self.precision))
    }

    /// Refuses identical class means (`Σ_B = 0`), for which every between-class ratio is
    /// undefined.
    fn check_separated(&self, metric: &str) -> Result<()> {
        if self.between_trace() > 0.0 {
            return Ok(());
        }
        let c = &self.centred_means;
        let means_differ = (0..c.ncols()).any(|j| (0..c.nrows()).any(|i| c[(i, j)] != 0.0));
        if means_differ {
            return Err(EtfError::Degenerate(format!(
                "{metric} is undefined here: the class means differ but the features are too \
                 small (their squares underflow to Σ_B = 0); rescale the features"
            )));
        }
        Err(EtfError::Degenerate(format!(
            "{metric} is undefined: every class has the same mean (Σ_B = 0)"
        )))
    }
}

/// A finite value, or `Degenerate` naming the metric (the guard against a silent NaN/inf).
fn finite(v: f64, metric: &str) -> Result<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(EtfError::Degenerate(format!(
            "{metric} is not finite on these statistics ({v}); the class geometry is degenerate"
        )))
    }
}

/// `Σ_k w_k (μ_k-μ_G)ᵀ Σ_T^† (μ_k-μ_G) = Tr[Σ_T^† Σ_B]` with the pseudo-inverse used, and the
/// per-class quadratic forms `d_k`.
fn total_quad_forms(g: &ClassGeometry, policy: RankPolicy) -> Result<(Vec<f64>, SymPinv)> {
    if let Some((p, cached)) = g.total_pinv.get() {
        if *p == policy {
            return Ok(((cached.0).clone(), (cached.1).clone()));
        }
    }
    let total = g.total()?;
    let pinv = SymPinv::new(total.as_ref(), policy, true)?;
    let d = pinv.quad_forms(g.centred_means.as_ref());
    // The first policy computed is kept (the default one, in practice).
    let _ = g
        .total_pinv
        .set((policy, Arc::new((d.clone(), pinv.clone()))));
    Ok((d, pinv))
}

/// Eigen-structure of `Σ_B` restricted to its positive part: eigenvalues (decreasing) and,
/// for each, `v_jᵀ Σ_W v_j` (when Σ_W is available).
#[derive(Debug, Clone)]
pub struct BetweenSpectrum {
    pub values: Vec<f64>,
    pub within_quad: Option<Vec<f64>>,
}

/// Spectrum of `Σ_B` through the smaller of the `K × K` Gram `AᵀA` (A = centred means · diag √w)
/// and `Σ_B` itself; only the first `min(p, K-1)` eigenpairs with positive eigenvalues are kept.
/// Computed once per geometry and shared.
pub fn between_spectrum(g: &ClassGeometry) -> Result<Arc<BetweenSpectrum>> {
    if let Some(s) = g.spectrum.get() {
        return Ok(s.clone());
    }
    let s = Arc::new(between_spectrum_uncached(g)?);
    Ok(g.spectrum.get_or_init(|| s).clone())
}

fn between_spectrum_uncached(g: &ClassGeometry) -> Result<BetweenSpectrum> {
    let (p, kp) = (g.dim, g.num_present());
    let cap = p.min(kp - 1);
    let a = Mat::from_fn(p, kp, |i, j| g.centred_means[(i, j)] * g.weights[j].sqrt());
    let (vals, vecs): (Vec<f64>, Mat<f64>) = if kp <= p {
        let gram = a.transpose() * &a;
        let (vals, u) = sym_eig_desc(gram.as_ref())?;
        let r = vals.iter().take(cap).take_while(|&&v| v > 0.0).count();
        // v_j = A u_j / sqrt(λ_j)
        let au = &a * u.as_ref().subcols(0, r);
        let v = Mat::from_fn(p, r, |i, j| au[(i, j)] / vals[j].sqrt());
        (vals[..r].to_vec(), v)
    } else {
        let (vals, v) = sym_eig_desc(g.between.as_ref())?;
        let r = vals.iter().take(cap).take_while(|&&v| v > 0.0).count();
        (vals[..r].to_vec(), v.as_ref().subcols(0, r).to_owned())
    };
    let within_quad = match &g.within {
        Some(w) => {
            let wv = w * &vecs;
            Some(
                (0..vals.len())
                    .map(|j| (0..p).map(|i| vecs[(i, j)] * wv[(i, j)]).sum())
                    .collect(),
            )
        }
        None => None,
    };
    Ok(BetweenSpectrum {
        values: vals,
        within_quad,
    })
}

/// Variability Collapse Index `1 - Tr[Σ_T^† Σ_B] / r` (Xu & Liu).
pub fn vci(
    g: &ClassGeometry,
    normalizer: VciNormalizer,
    rank: Option<usize>,
    rtol: Option<f64>,
) -> Result<PinvMetric> {
    let (d, pinv) = total_quad_forms(g, g.policy(rank, rtol)?)?;
    let spec = match normalizer {
        VciNormalizer::Numerical => Some(between_spectrum(g)?),
        _ => None,
    };
    vci_from(g, normalizer, &d, &pinv, spec.as_deref())
}

fn vci_from(
    g: &ClassGeometry,
    normalizer: VciNormalizer,
    d: &[f64],
    pinv: &SymPinv,
    spec: Option<&BetweenSpectrum>,
) -> Result<PinvMetric> {
    g.check_separated("VCI")?;
    let tr: f64 = d.iter().zip(&g.weights).map(|(d, w)| d * w).sum();
    let r = match normalizer {
        VciNormalizer::MinDimClasses => g.dim.min(g.num_present() - 1),
        VciNormalizer::Numerical => {
            let values = &spec.expect("spectrum given").values;
            kept_rank(values, g.policy(None, None)?)?.0
        }
        VciNormalizer::Fixed(r) => r,
    };
    if r == 0 {
        return Err(EtfError::Parameter(
            "the VCI normaliser r must be positive".into(),
        ));
    }
    Ok(PinvMetric {
        value: finite(1.0 - tr / r as f64, "VCI")?,
        rank: pinv.rank,
        method: pinv.method,
        normalizer: r,
    })
}

/// Minimum of the linear-probe least-squares loss `(1/2N) Σ‖W h_i + b - e_{y_i}‖²` by the
/// closed form `½(1 - Σπ_k²) - ½ Σ π_k² d_k` (Xu & Liu, Thm 5.1, any balance). Always the
/// weighted convention (it is the loss over the samples).
pub fn probe_mse(g: &ClassGeometry, rank: Option<usize>, rtol: Option<f64>) -> Result<PinvMetric> {
    if g.weighting != Weighting::Weighted {
        return Err(EtfError::Parameter(
            "probe_mse is defined with the weighted geometry".into(),
        ));
    }
    let (d, pinv) = total_quad_forms(g, g.policy(rank, rtol)?)?;
    probe_mse_from(g, &d, &pinv)
}

fn probe_mse_from(g: &ClassGeometry, d: &[f64], pinv: &SymPinv) -> Result<PinvMetric> {
    let s2: f64 = g.weights.iter().map(|w| w * w).sum();
    let sd: f64 = g.weights.iter().zip(d).map(|(w, d)| w * w * d).sum();
    Ok(PinvMetric {
        value: finite(0.5 * (1.0 - s2) - 0.5 * sd, "probe_mse")?,
        rank: pinv.rank,
        method: pinv.method,
        normalizer: pinv.rank,
    })
}

/// NC1 and its split without an eigendecomposition, when `K ≤ p` and the threshold provably
/// keeps all `K - 1` non-zero eigenvalues of `Σ_B` (then the result equals the eigen-route's).
///
/// `Σ_B = A Aᵀ` with `A = M̄ diag(√w)` (`p × K`), and the `K × K` Gram `G = AᵀA` has the known
/// null vector `v = √w` (`Σ_k w_k (μ_k - μ_G) = 0`, `‖v‖ = 1`). With `G` scaled to unit trace,
/// `G' = G + vvᵀ/K` equals `G` on `v⊥` and has `v` as an eigenvector; it is factorised
/// `G' = L Lᵀ`. Since `λ_min(G') ≥ 1/tr(G'⁻¹) = 1/‖L⁻¹‖_F²` (or the tighter `1/‖G'⁻¹‖_F`,
/// formed when the first does not suffice) and `λ_max(G) ≤ min(tr G, ‖G‖_F)`, the route is
/// taken only if that lower bound exceeds `rtol` times that upper bound (with a 1e-6 margin):
/// every non-zero eigenvalue then exceeds `rtol · λ_max`. As `A v = 0`, `Σ_B^† = A G'^{-2} Aᵀ` and
/// `P_B = A G'^{-1} Aᵀ`, so with `Y = A G'^{-1}`: `Tr[Σ_W Σ_B^†] = Σ Y ∘ (Σ_W Y)` and
/// `tr(P_B Σ_W) = Σ A ∘ (Σ_W Y)`. Any other policy, or a failed proof, returns `None`.
fn nc1_cholesky(g: &ClassGeometry, policy: RankPolicy) -> Result<Option<Nc1Cholesky>> {
    if let Some((p, r)) = g.nc1_cholesky.get() {
        if *p == policy {
            return Ok(*r);
        }
    }
    let r = nc1_cholesky_uncached(g, policy)?;
    let _ = g.nc1_cholesky.set((policy, r));
    Ok(r)
}

fn nc1_cholesky_uncached(g: &ClassGeometry, policy: RankPolicy) -> Result<Option<Nc1Cholesky>> {
    let RankPolicy::Rtol(Some(rtol)) = policy else {
        return Ok(None);
    };
    let (p, kp) = (g.dim, g.num_present());
    let w = g.within()?;
    if kp > p || kp < 2 {
        return Ok(None);
    }
    // Brought to unit size first (features near the ends of the f64 range): `A/s_a`, `Σ_W/s_w`.
    let a = Mat::from_fn(p, kp, |i, j| g.centred_means[(i, j)] * g.weights[j].sqrt());
    let max_abs = |m: MatRef<'_, f64>| {
        let mut s = 0.0f64;
        for j in 0..m.ncols() {
            for i in 0..m.nrows() {
                s = s.max(m[(i, j)].abs());
            }
        }
        s
    };
    let (sa, sw) = (max_abs(a.as_ref()), max_abs(w.as_ref()));
    if !(sa > 0.0 && sw > 0.0 && sa.is_finite() && sw.is_finite()) {
        return Ok(None);
    }
    let a = Mat::from_fn(p, kp, |i, j| a[(i, j)] / sa);
    let w = Mat::from_fn(p, p, |i, j| w[(i, j)] / sw);
    let gram = a.transpose() * &a;
    let tr: f64 = (0..kp).map(|i| gram[(i, i)]).sum();
    if !(tr > 0.0 && tr.is_finite()) {
        return Ok(None);
    }
    let norm_w: f64 = g.weights.iter().sum::<f64>().sqrt();
    let v: Vec<f64> = g.weights.iter().map(|w| w.sqrt() / norm_w).collect();
    let c = 1.0 / kp as f64;
    let gs = Mat::from_fn(kp, kp, |i, j| gram[(i, j)] / tr + c * v[i] * v[j]);
    let Ok(llt) = gs.llt(Side::Lower) else {
        return Ok(None);
    };
    let mut linv = Mat::<f64>::zeros(kp, kp);
    invert_lower_triangular(linv.as_mut(), llt.L(), Par::rayon(0));
    let mut tr_inv = 0.0;
    for j in 0..kp {
        for i in 0..kp {
            if i < j {
                linv[(i, j)] = 0.0;
            } else {
                tr_inv += linv[(i, j)] * linv[(i, j)];
            }
        }
    }
    // λ_max(G/tr) ≤ min(1, ‖G/tr‖_F); λ_min(G') ≥ 1/tr(G'⁻¹), or the tighter 1/‖G'⁻¹‖_F.
    let frob: f64 = gram.norm_l2() / tr;
    let bound = rtol * frob.min(1.0) * (1.0 + 1e-6);
    let proven = tr_inv.is_finite()
        && tr_inv > 0.0
        && (1.0 / tr_inv > bound || {
            // ‖G'⁻¹‖_F ≥ tr(G'⁻¹)/√K: skip the product when even that cannot prove it.
            let hopeless = (kp as f64).sqrt() / tr_inv <= bound;
            let f = if hopeless {
                f64::INFINITY
            } else {
                (linv.transpose() * &linv).norm_l2()
            };
            f.is_finite() && f > 0.0 && 1.0 / f > bound
        });
    if !proven {
        return Ok(None);
    }
    // Y = A G'^{-1} = A (L⁻ᵀ L⁻¹) / tr.
    let ab = &a * linv.transpose();
    let y = &ab * &linv;
    let wy = &w * &y;
    let (mut t, mut inside) = (0.0, 0.0);
    for j in 0..kp {
        for i in 0..p {
            t += y[(i, j)] * wy[(i, j)];
            inside += a[(i, j)] * wy[(i, j)];
        }
    }
    // Back to the original scale: Tr[Σ_W Σ_B^†] scales as s_w/s_a², tr(P_B Σ_W) as s_w.
    Ok(Some(Nc1Cholesky {
        trace: t / (tr * tr) * (sw / sa) / sa,
        inside: inside / tr * sw,
        rank: kp - 1,
    }))
}

/// NC1 `Tr[Σ_W Σ_B^†] / K`, `Σ_B^†` over its top `min(p, K-1)` eigenvalues that also exceed
/// `rtol · λ_max` (or exactly the top `rank`).
pub fn nc1(g: &ClassGeometry, rank: Option<usize>, rtol: Option<f64>) -> Result<PinvMetric> {
    g.within()?;
    let policy = g.policy(rank, rtol)?;
    g.check_separated("NC1")?;
    if let Some(c) = nc1_cholesky(g, policy)? {
        return nc1_of_cholesky(g, &c);
    }
    let spec = between_spectrum(g)?;
    nc1_from(g, &spec, policy)
}

fn nc1_of_cholesky(g: &ClassGeometry, c: &Nc1Cholesky) -> Result<PinvMetric> {
    Ok(PinvMetric {
        value: finite(c.trace / g.num_present() as f64, "NC1")?,
        rank: c.rank,
        method: PinvMethod::Cholesky,
        normalizer: c.rank,
    })
}

fn nc1_from(g: &ClassGeometry, spec: &BetweenSpectrum, policy: RankPolicy) -> Result<PinvMetric> {
    g.within()?;
    g.check_separated("NC1")?;
    if let RankPolicy::Top(r) = policy {
        if r > spec.values.len() {
            return Err(EtfError::Parameter(format!(
                "rank={r} but Σ_B has only {} positive eigenvalues (at most min(p, K-1))",
                spec.values.len()
            )));
        }
    }
    let (r, _) = kept_rank(&spec.values, policy)?;
    if r == 0 {
        return Err(EtfError::Degenerate(
            "NC1 is undefined: Σ_B keeps no eigenvalue above the threshold".into(),
        ));
    }
    let q = spec.within_quad.as_ref().expect("Σ_W available");
    let s: f64 = (0..r).map(|j| q[j] / spec.values[j]).sum();
    Ok(PinvMetric {
        value: finite(s / g.num_present() as f64, "NC1")?,
        rank: r,
        method: PinvMethod::Eigh,
        normalizer: r,
    })
}

/// `(tr(P_B Σ_W), tr Σ_W - tr(P_B Σ_W), rank of P_B)`, P_B the projector on span{μ_k - μ_G}.
pub fn nc1_split(g: &ClassGeometry, rtol: Option<f64>) -> Result<(f64, f64, usize)> {
    g.within()?;
    let policy = g.policy(None, rtol)?;
    if g.between_trace() > 0.0 {
        if let Some(c) = nc1_cholesky(g, policy)? {
            return Ok(split_of_cholesky(g, &c));
        }
    }
    let spec = between_spectrum(g)?;
    nc1_split_from(g, &spec, policy)
}

fn split_of_cholesky(g: &ClassGeometry, c: &Nc1Cholesky) -> (f64, f64, usize) {
    let tr = g
        .within
        .as_ref()
        .map_or(0.0, |w| (0..g.dim).map(|i| w[(i, i)]).sum());
    (c.inside, tr - c.inside, c.rank)
}

fn nc1_split_from(
    g: &ClassGeometry,
    spec: &BetweenSpectrum,
    policy: RankPolicy,
) -> Result<(f64, f64, usize)> {
    let w = g.within()?;
    let (r, _) = kept_rank(&spec.values, policy)?;
    let inside: f64 = spec.within_quad.as_ref().expect("Σ_W available")[..r]
        .iter()
        .sum();
    let tr: f64 = (0..g.dim).map(|i| w[(i, i)]).sum();
    Ok((inside, tr - inside, r))
}

/// `Tr Σ_W / Tr Σ_B` (Hui et al.); `Degenerate` when every class has the same mean.
pub fn squared_distance(g: &ClassGeometry) -> Result<f64> {
    g.check_separated("the squared distance")?;
    finite(g.within_trace / g.between_trace(), "the squared distance")
}

/// `Tr Σ_W / p` (Tiomoko Ali et al., Fig. 3).
pub fn within_trace_per_dim(g: &ClassGeometry) -> f64 {
    g.within_trace / g.dim as f64
}

fn centred_gram(g: &ClassGeometry) -> Mat<f64> {
    g.centred_means.transpose() * &g.centred_means
}

/// `‖μ_k - μ_l‖²` of present classes `k`, `l` by exact differences.
fn mean_distance2(g: &ClassGeometry, k: usize, l: usize) -> f64 {
    (0..g.dim)
        .map(|i| (g.centred_means[(i, k)] - g.centred_means[(i, l)]).powi(2))
        .sum()
}

/// Class-distance normalised variance: mean over k<l of `(σ_k² + σ_l²) / (2‖μ_k - μ_l‖²)`.
///
/// Distances come from the Gram of the centred means, and any pair whose expanded distance is
/// small against the norms (cancellation) is recomputed by exact differences. Two classes with
/// the same mean make it undefined: `Degenerate`, naming them. With more classes than
/// dimensions the Gram is formed [`PAIR_BLOCK`] rows at a time (`O(PAIR_BLOCK · K)` memory;
/// the time stays `O(K² p)`: the metric is a sum over pairs).
pub fn cdnv(g: &ClassGeometry) -> Result<f64> {
    if g.num_present() > g.dim {
        return Ok(pairwise_blocked(g, PAIR_BLOCK, true, false)?
            .0
            .expect("asked"));
    }
    let c = centred_gram(g);
    let kp = g.num_present();
    let mut total = 0.0;
    for k in 0..kp {
        for l in (k + 1)..kp {
            let scale = c[(k, k)] + c[(l, l)];
            let mut d2 = c[(k, k)] + c[(l, l)] - 2.0 * c[(k, l)];
            if !(d2 > 1e-6 * scale) {
                d2 = mean_distance2(g, k, l);
            }
            if !(d2 > 0.0) {
                return Err(EtfError::Degenerate(format!(
                    "CDNV is undefined: classes {} and {} have the same mean",
                    g.present[k], g.present[l]
                )));
            }
            total += (g.class_variances[k] + g.class_variances[l]) / (2.0 * d2);
        }
    }
    finite(total / (kp * (kp - 1) / 2) as f64, "CDNV")
}

/// Rows of the `K × K` Gram of the centred means formed at a time when `K > p` (the blocked
/// route of [`cdnv`] and [`nc2`]: `O(PAIR_BLOCK · K)` memory instead of `K²`).
pub const PAIR_BLOCK: usize = 256;

/// Running count, mean and sum of squared deviations, combined batch by batch (Chan, Golub &
/// LeVeque's parallel update: each batch's own two-pass moments, then the exact combination).
#[derive(Debug, Default, Clone, Copy)]
struct Moments {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn add_batch(&mut self, xs: &[f64]) {
        if xs.is_empty() {
            return;
        }
        let nb = xs.len() as f64;
        let mb = xs.iter().sum::<f64>() / nb;
        let m2b: f64 = xs.iter().map(|x| (x - mb) * (x - mb)).sum();
        let n = self.n + nb;
        let d = mb - self.mean;
        self.mean += d * nb / n;
        self.m2 += m2b + d * d * self.n * nb / n;
        self.n = n;
    }
    fn std(&self) -> f64 {
        (self.m2 / self.n).sqrt()
    }
}

/// Calls `f(k0, slab)` for consecutive row blocks `k0..k0+b` of the upper part of the Gram
/// `G = M̄ᵀM̄` of the centred means: `slab[(r, c)] = G[k0 + r, k0 + c]` (`b × (K - k0)`).
fn for_each_gram_block(
    g: &ClassGeometry,
    block: usize,
    mut f: impl FnMut(usize, MatRef<'_, f64>) -> Result<()>,
) -> Result<()> {
    let kp = g.num_present();
    let c = g.centred_means.as_ref();
    let mut k0 = 0;
    while k0 < kp {
        let b = block.max(1).min(kp - k0);
        let slab = c.subcols(k0, b).transpose() * c.subcols(k0, kp - k0);
        f(k0, slab.as_ref())?;
        k0 += b;
    }
    Ok(())
}

/// The pairwise sums of [`cdnv`] and [`nc2`] through blocks of the Gram (never the whole
/// `K × K` matrix): the same pairs in the same order as the dense route.
fn pairwise_blocked(
    g: &ClassGeometry,
    block: usize,
    want_cdnv: bool,
    want_nc2: bool,
) -> Result<(Option<f64>, Option<Nc2>)> {
    let kp = g.num_present();
    let p = g.dim;
    let c = &g.centred_means;
    let diag: Vec<f64> = (0..kp)
        .map(|k| (0..p).map(|i| c[(i, k)] * c[(i, k)]).sum())
        .collect();
    let norms: Vec<f64> = diag.iter().map(|d| d.max(0.0).sqrt()).collect();
    let zero_norm = (0..kp).find(|&k| !(norms[k] > 0.0));
    // ‖G‖_F = ‖M̄ M̄ᵀ‖_F, through the p × p product (p < K on this route).
    let gf = if want_nc2 {
        (c * c.transpose()).norm_l2()
    } else {
        1.0
    };
    let target = -1.0 / (kp as f64 - 1.0);
    let pf = ((kp - 1) as f64).sqrt();
    let (mut total, mut moments, mut absdev, mut e) = (0.0, Moments::default(), 0.0, 0.0);
    let mut cosines = Vec::new();
    for_each_gram_block(g, block, |k0, slab| {
        cosines.clear();
        for r in 0..slab.nrows() {
            let k = k0 + r;
            if want_nc2 {
                let d = diag[k] / gf - (1.0 - 1.0 / kp as f64) / pf;
                e += d * d;
            }
            for l in (k + 1)..kp {
                let gkl = slab[(r, l - k0)];
                if want_cdnv {
                    let scale = diag[k] + diag[l];
                    let mut d2 = scale - 2.0 * gkl;
                    if !(d2 > 1e-6 * scale) {
                        d2 = mean_distance2(g, k, l);
                    }
                    if !(d2 > 0.0) {
                        return Err(EtfError::Degenerate(format!(
                            "CDNV is undefined: classes {} and {} have the same mean",
                            g.present[k], g.present[l]
                        )));
                    }
                    total += (g.class_variances[k] + g.class_variances[l]) / (2.0 * d2);
                }
                if want_nc2 && zero_norm.is_none() {
                    let cos = gkl / (norms[k] * norms[l]);
                    cosines.push(cos);
                    absdev += (cos - target).abs();
                    let d = gkl / gf + (1.0 / kp as f64) / pf;
                    e += 2.0 * d * d;
                }
            }
        }
        moments.add_batch(&cosines);
        Ok(())
    })?;
    let cd = if want_cdnv {
        Some(finite(total / (kp * (kp - 1) / 2) as f64, "CDNV")?)
    } else {
        None
    };
    let nc2 = if want_nc2 {
        if let Some(k) = zero_norm {
            return Err(EtfError::Degenerate(format!(
                "NC2 is undefined: the mean of class {} equals the global mean",
                g.present[k]
            )));
        }
        let (m, s) = mean_std(&norms);
        Some(Nc2 {
            equinorm: finite(s / m, "NC2 equinorm")?,
            equiangularity: finite(moments.std(), "NC2 equiangularity")?,
            max_equiangularity: finite(absdev / moments.n, "NC2 max-equiangularity")?,
            etf_error: finite(e.sqrt(), "NC2 ETF error")?,
        })
    } else {
        None
    };
    Ok((cd, nc2))
}

/// NC2 statistics of the centred class means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nc2 {
    /// std/mean of `‖μ_k - μ_G‖`.
    pub equinorm: f64,
    /// std of `cos(μ_k-μ_G, μ_l-μ_G)` over pairs k<l.
    pub equiangularity: f64,
    /// mean over pairs of `|cos + 1/(K-1)|`.
    pub max_equiangularity: f64,
    /// `‖G/‖G‖_F - P_K/‖P_K‖_F‖_F`.
    pub etf_error: f64,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt())
}

/// NC2 of the centred class means; `Degenerate` when a class mean equals the global mean (its
/// angles are undefined). With more classes than dimensions the pairs are visited through
/// blocks of the Gram (as for [`cdnv`]) and the spread of the cosines is combined block by
/// block; `‖G‖_F` is then `‖M̄ M̄ᵀ‖_F` (a `p × p` product).
pub fn nc2(g: &ClassGeometry) -> Result<Nc2> {
    if g.num_present() > g.dim {
        return Ok(pairwise_blocked(g, PAIR_BLOCK, false, true)?
            .1
            .expect("asked"));
    }
    let c = centred_gram(g);
    let kp = g.num_present();
    let norms: Vec<f64> = (0..kp).map(|k| c[(k, k)].max(0.0).sqrt()).collect();
    if let Some(k) = (0..kp).find(|&k| !(norms[k] > 0.0)) {
        return Err(EtfError::Degenerate(format!(
            "NC2 is undefined: the mean of class {} equals the global mean",
            g.present[k]
        )));
    }
    let (m, s) = mean_std(&norms);
    let mut cosines = Vec::with_capacity(kp * (kp - 1) / 2);
    for k in 0..kp {
        for l in (k + 1)..kp {
            cosines.push(c[(k, l)] / (norms[k] * norms[l]));
        }
    }
    let (_, cs) = mean_std(&cosines);
    let target = -1.0 / (kp as f64 - 1.0);
    let maxeq = cosines.iter().map(|x| (x - target).abs()).sum::<f64>() / cosines.len() as f64;
    let gf = c.norm_l2();
    let pf = ((kp - 1) as f64).sqrt();
    let mut e = 0.0;
    for k in 0..kp {
        for l in 0..kp {
            let pk = if k == l { 1.0 } else { 0.0 } - 1.0 / kp as f64;
            let d = c[(k, l)] / gf - pk / pf;
            e += d * d;
        }
    }
    Ok(Nc2 {
        equinorm: finite(s / m, "NC2 equinorm")?,
        equiangularity: finite(cs, "NC2 equiangularity")?,
        max_equiangularity: finite(maxeq, "NC2 max-equiangularity")?,
        etf_error: finite(e.sqrt(), "NC2 ETF error")?,
    })
}

/// NC3 of a classifier against the centred class means.
#[derive(Debug, Clone, PartialEq)]
pub struct Nc3 {
    /// `‖W/‖W‖_F - M̄ᵀ/‖M̄‖_F‖_F²` over the present classes.
    pub distance: f64,
    /// `cos(w_k, μ_k - μ_G)` per present class.
    pub cosines: Vec<f64>,
}

/// Checks a `K × p` classifier (and optional bias) for statistics of `K` classes in `p`
/// dimensions: shape (blaming the classifier), finite weights and bias.
pub fn validate_classifier(
    w: &ArrayView2<'_, f64>,
    bias: Option<&ArrayView1<'_, f64>>,
    num_classes: Option<usize>,
    dim: usize,
) -> Result<()> {
    let (k, q) = w.dim();
    if q != dim {
        return Err(EtfError::Shape(format!(
            "classifier has {q} columns but the features have dim={dim}"
        )));
    }
    if let Some(kk) = num_classes {
        if k != kk {
            return Err(EtfError::Shape(format!(
                "classifier has {k} rows but the statistics have num_classes={kk}"
            )));
        }
    }
    if k == 0 {
        return Err(EtfError::Shape("classifier has no rows".into()));
    }
    if let Some(((i, j), _)) = w.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(EtfError::NonFinite {
            what: "classifier".into(),
            row: i,
            col: j,
        });
    }
    if let Some(b) = bias {
        if b.len() != k {
            return Err(EtfError::Shape(format!(
                "bias has {} entries, classifier has {k} rows",
                b.len()
            )));
        }
        if let Some((i, _)) = b.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(EtfError::NonFinite {
                what: "bias".into(),
                row: 0,
                col: i,
            });
        }
    }
    Ok(())
}

/// NC3: `‖W/‖W‖_F - M̄ᵀ/‖M̄‖_F‖_F²` over the present classes' rows of the `K × p` classifier,
/// and per present class `cos(w_k, μ_k - μ_G)`. A classifier whose present rows are all zero, a
/// zero row of a present class, or a class mean equal to the global mean make it undefined
/// (`Degenerate`).
pub fn nc3(g: &ClassGeometry, classifier: ArrayView2<'_, f64>, num_classes: usize) -> Result<Nc3> {
    let p = g.dim;
    validate_classifier(&classifier, None, Some(num_classes), p)?;
    let kp = g.num_present();
    let wp = Mat::from_fn(kp, p, |j, i| classifier[[g.present[j], i]]);
    let (wn, mn) = (wp.norm_l2(), g.centred_means.norm_l2());
    if !(wn > 0.0) {
        return Err(EtfError::Degenerate(
            "NC3 is undefined: the classifier rows of the present classes are all zero".into(),
        ));
    }
    g.check_separated("NC3")?;
    let mut dist = 0.0;
    let mut cos = Vec::with_capacity(kp);
    for j in 0..kp {
        let (mut dot, mut nw, mut nm) = (0.0, 0.0, 0.0);
        for i in 0..p {
            let (a, b) = (wp[(j, i)], g.centred_means[(i, j)]);
            let d = a / wn - b / mn;
            dist += d * d;
            dot += a * b;
            nw += a * a;
            nm += b * b;
        }
        if !(nw > 0.0) {
            return Err(EtfError::Degenerate(format!(
                "NC3 cosine is undefined: classifier row {} is zero",
                g.present[j]
            )));
        }
        if !(nm > 0.0) {
            return Err(EtfError::Degenerate(format!(
                "NC3 cosine is undefined: the mean of class {} equals the global mean",
                g.present[j]
            )));
        }
        cos.push(finite(dot / (nw.sqrt() * nm.sqrt()), "NC3 cosine")?);
    }
    Ok(Nc3 {
        distance: finite(dist, "NC3")?,
        cosines: cos,
    })
}

/// Kornblith et al.'s cosine statistics from the per-class unit-vector sums:
/// `(d_within, d_total, class_separation)`.
pub fn cosine_metrics(stats: &CollapseStats) -> Result<(f64, f64, f64)> {
    let p = stats.dim();
    let zeros: u64 = stats.class_zero_rows().iter().sum();
    if zeros > 0 {
        return Err(EtfError::Degenerate(format!(
            "cosine metrics need non-zero feature rows; {zeros} all-zero rows were seen"
        )));
    }
    let present: Vec<usize> = (0..stats.num_classes())
        .filter(|&k| stats.counts()[k] > 0)
        .collect();
    if present.len() < 2 {
        return Err(EtfError::TooFewClasses {
            present: present.len(),
            needed: 2,
        });
    }
    let u = stats.class_unit_sums();
    let mut total = vec![0.0; p];
    let mut dw = 0.0;
    for &k in &present {
        let row = &u[k * p..(k + 1) * p];
        let n = stats.counts()[k] as f64;
        dw += 1.0 - row.iter().map(|x| x * x).sum::<f64>() / (n * n);
        for (t, x) in total.iter_mut().zip(row) {
            *t += x;
        }
    }
    dw /= present.len() as f64;
    let n = stats.num_samples() as f64;
    let dt = 1.0 - total.iter().map(|x| x * x).sum::<f64>() / (n * n);
    // d_total is a mean of 1 - cos over pairs: at rounding level every row has the same
    // direction and class_separation = 1 - d_within/d_total is undefined.
    if !(dt > 64.0 * f64::EPSILON) {
        return Err(EtfError::Degenerate(format!(
            "class_separation is undefined: every feature row has the same direction \
             (d_total = {dt:e})"
        )));
    }
    Ok((dw, dt, finite(1.0 - dw / dt, "class_separation")?))
}

/// The NC1 split of [`report`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nc1Split {
    pub between_span: f64,
    pub orthogonal: f64,
    pub rank: usize,
}

/// Kornblith et al.'s cosine statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cosine {
    pub within: f64,
    pub total: f64,
    pub class_separation: f64,
}

/// Every metric computable from the statistics under one weighting (see [`report`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub weighting: Weighting,
    pub precision: Precision,
    pub num_samples: u64,
    pub num_classes_present: usize,
    pub dim: usize,
    pub vci: PinvMetric,
    pub probe_mse: PinvMetric,
    pub nc1: PinvMetric,
    pub nc1_split: Nc1Split,
    pub squared_distance: f64,
    pub within_trace_per_dim: f64,
    pub cdnv: f64,
    pub nc2: Nc2,
    /// `None` when all-zero rows were seen (they have no direction).
    pub cosine: Option<Cosine>,
    /// With a classifier.
    pub nc3: Option<Nc3>,
}

/// Every statistics metric in one pass over the factorisations: the geometry (cached by the
/// statistics), one pseudo-inverse of `Σ_T` shared by VCI and the probe MSE (two when the
/// weighting is balanced, since the probe is always weighted), and one spectrum of `Σ_B`
/// shared by NC1 and its split. `rtol` as for each metric (default `p · eps(precision)`).
pub fn report(
    stats: &CollapseStats,
    weighting: Weighting,
    rtol: Option<f64>,
    classifier: Option<ArrayView2<'_, f64>>,
) -> Result<Report> {
    let g = stats.geometry(weighting)?;
    let policy = g.policy(None, rtol)?;
    g.within()?;
    if let Some(w) = &classifier {
        validate_classifier(w, None, Some(stats.num_classes()), stats.dim())?;
    }
    let (d, pinv) = total_quad_forms(&g, policy)?;
    let vci = vci_from(&g, VciNormalizer::MinDimClasses, &d, &pinv, None)?;
    let probe = if weighting == Weighting::Weighted {
        probe_mse_from(&g, &d, &pinv)?
    } else {
        let gw = stats.geometry(Weighting::Weighted)?;
        let (dw, pw) = total_quad_forms(&gw, gw.policy(None, rtol)?)?;
        probe_mse_from(&gw, &dw, &pw)?
    };
    g.check_separated("NC1")?;
    let (nc1, (a, b, r)) = match nc1_cholesky(&g, policy)? {
        Some(c) => (nc1_of_cholesky(&g, &c)?, split_of_cholesky(&g, &c)),
        None => {
            let spec = between_spectrum(&g)?;
            (
                nc1_from(&g, &spec, policy)?,
                nc1_split_from(&g, &spec, policy)?,
            )
        }
    };
    let (cdnv, nc2) = if g.num_present() > g.dim {
        // One blocked pass over the class pairs for both.
        let (c, n) = pairwise_blocked(&g, PAIR_BLOCK, true, true)?;
        (c.expect("asked"), n.expect("asked"))
    } else {
        (cdnv(&g)?, nc2(&g)?)
    };
    let cosine = if stats.class_zero_rows().iter().all(|&z| z == 0) {
        let (within, total, class_separation) = cosine_metrics(stats)?;
        Some(Cosine {
            within,
            total,
            class_separation,
        })
    } else {
        None
    };
    Ok(Report {
        weighting,
        precision: g.precision,
        num_samples: g.num_samples,
        num_classes_present: g.num_present(),
        dim: g.dim,
        vci,
        probe_mse: probe,
        nc1,
        nc1_split: Nc1Split {
            between_span: a,
            orthogonal: b,
            rank: r,
        },
        squared_distance: squared_distance(&g)?,
        within_trace_per_dim: within_trace_per_dim(&g),
        cdnv,
        nc2,
        cosine,
        nc3: match classifier {
            Some(w) => Some(nc3(&g, w, stats.num_classes())?),
            None => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{mixture, pinv, solve};
    use ndarray::{Array1, Array2};

    /// Plain-loop class geometry: (present means, weights, μ_G, Σ_B, Σ_W, per-class covariances).
    struct Brute {
        means: Vec<Array1<f64>>,
        weights: Vec<f64>,
        mg: Array1<f64>,
        sb: Array2<f64>,
        sw: Array2<f64>,
        covs: Vec<Array2<f64>>,
    }

    fn brute(h: &Array2<f64>, y: &Array1<i64>, k: usize, w: Weighting) -> Brute {
        let (n, p) = h.dim();
        let mut sums = vec![Array1::<f64>::zeros(p); k];
        let mut cnt = vec![0.0; k];
        for i in 0..n {
            let c = y[i] as usize;
            cnt[c] += 1.0;
            sums[c] = &sums[c] + &h.row(i);
        }
        let means: Vec<Array1<f64>> = (0..k).map(|c| &sums[c] / cnt[c]).collect();
        let weights: Vec<f64> = match w {
            Weighting::Weighted => cnt.iter().map(|c| c / n as f64).collect(),
            Weighting::Balanced => vec![1.0 / k as f64; k],
        };
        let mut mg = Array1::<f64>::zeros(p);
        for c in 0..k {
            mg = mg + weights[c] * &means[c];
        }
        let outer = |a: &Array1<f64>| Array2::from_shape_fn((p, p), |(i, j)| a[i] * a[j]);
        let mut sb = Array2::<f64>::zeros((p, p));
        for c in 0..k {
            sb = sb + weights[c] * outer(&(&means[c] - &mg));
        }
        let mut covs = vec![Array2::<f64>::zeros((p, p)); k];
        for i in 0..n {
            let c = y[i] as usize;
            covs[c] = &covs[c] + &(outer(&(&h.row(i).to_owned() - &means[c])) / cnt[c]);
        }
        let mut sw = Array2::<f64>::zeros((p, p));
        for c in 0..k {
            sw = sw + weights[c] * &covs[c];
        }
        Brute {
            means,
            weights,
            mg,
            sb,
            sw,
            covs,
        }
    }

    fn stats_of(h: &Array2<f64>, y: &Array1<i64>, k: usize) -> CollapseStats {
        let mut s = CollapseStats::new(k, h.ncols(), true).unwrap();
        s.update(h.view(), y.view()).unwrap();
        s
    }

    fn trace(a: &Array2<f64>) -> f64 {
        a.diag().sum()
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn geometry_and_metrics_match_brute_force() {
        let (k, p) = (4, 6);
        let (h, y) = mixture(300, p, k, 6.0, 5.0, 1);
        let s = stats_of(&h, &y, k);
        for w in [Weighting::Weighted, Weighting::Balanced] {
            let b = brute(&h, &y, k, w);
            let g = s.geometry(w).unwrap();
            let sw = g.within().unwrap();
            for i in 0..p {
                assert!(close(g.global_mean[i], b.mg[i], 1e-12));
                for j in 0..p {
                    assert!(close(g.between[(i, j)], b.sb[[i, j]], 1e-11), "{w:?} Σ_B");
                    assert!(close(sw[(i, j)], b.sw[[i, j]], 1e-11), "{w:?} Σ_W");
                }
            }
            let st = &b.sw + &b.sb;
            let r = p.min(k - 1);
            let eps = p as f64 * f64::EPSILON;
            let want_vci = 1.0 - trace(&pinv(&st, eps, p).dot(&b.sb)) / r as f64;
            let v = vci(&g, VciNormalizer::MinDimClasses, None, None).unwrap();
            assert!(close(v.value, want_vci, 1e-10), "{} {want_vci}", v.value);
            let want_nc1 = trace(&b.sw.dot(&pinv(&b.sb, eps, r))) / k as f64;
            let n1 = nc1(&g, None, None).unwrap();
            assert!(close(n1.value, want_nc1, 1e-9), "{} {want_nc1}", n1.value);
            assert_eq!(n1.rank, r);
            let sd = squared_distance(&g).unwrap();
            assert!(close(sd, trace(&b.sw) / trace(&b.sb), 1e-11));
            let mut want_cdnv = 0.0;
            for a in 0..k {
                for c in a + 1..k {
                    let d = &b.means[a] - &b.means[c];
                    want_cdnv += (trace(&b.covs[a]) + trace(&b.covs[c])) / (2.0 * d.dot(&d));
                }
            }
            want_cdnv /= (k * (k - 1) / 2) as f64;
            assert!(close(cdnv(&g).unwrap(), want_cdnv, 1e-10));
            // NC2 from the centred means directly.
            let cm: Vec<Array1<f64>> = b.means.iter().map(|m| m - &b.mg).collect();
            let norms: Vec<f64> = cm.iter().map(|m| m.dot(m).sqrt()).collect();
            let mean = norms.iter().sum::<f64>() / k as f64;
            let sd_n = (norms.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / k as f64).sqrt();
            let n2 = nc2(&g).unwrap();
            assert!(close(n2.equinorm, sd_n / mean, 1e-10));
            let _ = &b.weights;
        }
    }

    #[test]
    fn nc1_cholesky_route_equals_eigen_route() {
        let (k, p) = (12, 20);
        let (h, y) = mixture(60 * k, p, k, 3.0, 2.0, 9);
        let s = stats_of(&h, &y, k);
        for w in [Weighting::Weighted, Weighting::Balanced] {
            let g = s.geometry(w).unwrap();
            let n1 = nc1(&g, None, None).unwrap();
            assert_eq!((n1.method, n1.rank), (PinvMethod::Cholesky, k - 1));
            // rank = K - 1 forces the eigen-route with the same eigenvalues.
            let e = nc1(&g, Some(k - 1), None).unwrap();
            assert_eq!(e.method, PinvMethod::Eigh);
            assert!(close(n1.value, e.value, 1e-10), "{} {}", n1.value, e.value);
            let spec = between_spectrum(&g).unwrap();
            let policy = g.policy(None, None).unwrap();
            let (a0, b0, r0) = nc1_split_from(&g, &spec, policy).unwrap();
            let (a, b, r) = nc1_split(&g, None).unwrap();
            assert_eq!(r, r0);
            assert!(close(a, a0, 1e-10) && close(b, b0, 1e-10));
        }
        // A near-duplicate class mean: the proof fails and the eigen-route decides the rank.
        let mut h2 = h.clone();
        for i in 0..h2.nrows() {
            if y[i] == 1 {
                for j in 0..p {
                    h2[[i, j]] += s.class_means().unwrap()[j] - s.class_means().unwrap()[p + j];
                }
            }
        }
        let s2 = stats_of(&h2, &y, k);
        let g2 = s2.geometry(Weighting::Weighted).unwrap();
        let n2 = nc1(&g2, None, None).unwrap();
        assert_eq!(n2.method, PinvMethod::Eigh);
        assert!(n2.rank < k - 1);
    }

    #[test]
    fn blocked_pairwise_route_equals_dense_route() {
        // K ≤ p, so cdnv/nc2 take the dense route; the blocked one must agree for any block.
        let (k, p) = (23, 30);
        let (h, y) = mixture(40 * k, p, k, 4.0, 1.0, 8);
        let s = stats_of(&h, &y, k);
        for w in [Weighting::Weighted, Weighting::Balanced] {
            let g = s.geometry(w).unwrap();
            let (c0, n0) = (cdnv(&g).unwrap(), nc2(&g).unwrap());
            for block in [1, 5, 23, 64] {
                let (c, n) = pairwise_blocked(&g, block, true, true).unwrap();
                let (c, n) = (c.unwrap(), n.unwrap());
                assert!(close(c, c0, 1e-12), "{c} {c0}");
                assert!(close(n.equinorm, n0.equinorm, 1e-12));
                assert!(close(n.equiangularity, n0.equiangularity, 1e-10));
                assert!(close(n.max_equiangularity, n0.max_equiangularity, 1e-12));
                assert!(close(n.etf_error, n0.etf_error, 1e-10));
            }
        }
    }

    #[test]
    fn probe_mse_equals_least_squares() {
        let (k, p, n) = (3, 5, 240);
        let (h, y) = mixture(n, p, k, 3.0, -2.0, 2);
        let s = stats_of(&h, &y, k);
        let g = s.geometry(Weighting::Weighted).unwrap();
        // min over (W, b) of (1/2N) Σ ‖W h_i + b - e_{y_i}‖² by the normal equations.
        let x = Array2::from_shape_fn((n, p + 1), |(i, j)| if j < p { h[[i, j]] } else { 1.0 });
        let t = Array2::from_shape_fn((n, k), |(i, c)| (y[i] as usize == c) as i32 as f64);
        let beta = solve(&x.t().dot(&x), &x.t().dot(&t));
        let r = x.dot(&beta) - &t;
        let want = r.iter().map(|v| v * v).sum::<f64>() / (2.0 * n as f64);
        let got = probe_mse(&g, None, None).unwrap().value;
        assert!(close(got, want, 1e-9), "{got} {want}");
    }

    #[test]
    fn report_equals_each_metric() {
        let (k, p) = (5, 7);
        let (h, y) = mixture(400, p, k, 4.0, 1.0, 3);
        let s = stats_of(&h, &y, k);
        let w = Array2::from_shape_fn((k, p), |(i, j)| ((i * 3 + j) % 5) as f64 - 2.0);
        for wt in [Weighting::Weighted, Weighting::Balanced] {
            let r = report(&s, wt, None, Some(w.view())).unwrap();
            let g = s.geometry(wt).unwrap();
            let gw = s.geometry(Weighting::Weighted).unwrap();
            assert_eq!(
                r.vci,
                vci(&g, VciNormalizer::MinDimClasses, None, None).unwrap()
            );
            assert_eq!(r.probe_mse, probe_mse(&gw, None, None).unwrap());
            assert_eq!(r.nc1, nc1(&g, None, None).unwrap());
            let (a, b, rk) = nc1_split(&g, None).unwrap();
            assert_eq!(
                r.nc1_split,
                Nc1Split {
                    between_span: a,
                    orthogonal: b,
                    rank: rk
                }
            );
            assert_eq!(r.squared_distance, squared_distance(&g).unwrap());
            assert_eq!(r.cdnv, cdnv(&g).unwrap());
            assert_eq!(r.nc2, nc2(&g).unwrap());
            assert_eq!(r.nc3.unwrap(), nc3(&g, w.view(), k).unwrap());
            let (cw, ct, cs) = cosine_metrics(&s).unwrap();
            assert_eq!(
                r.cosine.unwrap(),
                Cosine {
                    within: cw,
                    total: ct,
                    class_separation: cs
                }
            );
        }
    }

    #[test]
    fn cosine_metrics_match_rows() {
        let (k, p) = (3, 4);
        let (h, y) = mixture(90, p, k, 2.0, 0.5, 4);
        let s = stats_of(&h, &y, k);
        let unit: Vec<Array1<f64>> = h
            .rows()
            .into_iter()
            .map(|r| &r / r.dot(&r).sqrt())
            .collect();
        let mut dw = 0.0;
        let mut tot = Array1::<f64>::zeros(p);
        for c in 0..k {
            let mut sc = Array1::<f64>::zeros(p);
            let mut nc = 0.0;
            for (i, u) in unit.iter().enumerate() {
                if y[i] as usize == c {
                    sc += u;
                    nc += 1.0;
                }
            }
            dw += 1.0 - sc.dot(&sc) / (nc * nc);
            tot = tot + sc;
        }
        dw /= k as f64;
        let n = h.nrows() as f64;
        let dt = 1.0 - tot.dot(&tot) / (n * n);
        let (a, b, c) = cosine_metrics(&s).unwrap();
        assert!(close(a, dw, 1e-12) && close(b, dt, 1e-12) && close(c, 1.0 - dw / dt, 1e-10));
    }

    #[test]
    fn degenerate_geometry_is_refused_not_nan() {
        // Two classes with the very same samples: identical means.
        let h = Array2::from_shape_fn((8, 3), |(i, j)| ((i % 4) * 3 + j) as f64);
        let y: Array1<i64> = (0..8).map(|i| (i / 4) as i64).collect();
        let s = stats_of(&h, &y, 2);
        let g = s.geometry(Weighting::Weighted).unwrap();
        let deg = |r: Result<f64>| matches!(r, Err(EtfError::Degenerate(_)));
        assert!(deg(squared_distance(&g)));
        assert!(deg(cdnv(&g)));
        assert!(deg(nc2(&g).map(|n| n.equinorm)));
        assert!(deg(
            vci(&g, VciNormalizer::MinDimClasses, None, None).map(|v| v.value)
        ));
        assert!(deg(nc1(&g, None, None).map(|v| v.value)));
        assert!(deg(
            report(&s, Weighting::Weighted, None, None).map(|r| r.cdnv)
        ));
        // Rows that all point the same way: class separation is undefined.
        let h = Array2::from_shape_fn((6, 2), |(i, _)| 1.0 + i as f64);
        let y: Array1<i64> = (0..6).map(|i| (i % 2) as i64).collect();
        let s = stats_of(&h, &y, 2);
        assert!(deg(cosine_metrics(&s).map(|c| c.2)));
    }

    #[test]
    fn classifier_is_validated_and_blamed() {
        let (h, y) = mixture(60, 4, 3, 3.0, 0.0, 5);
        let s = stats_of(&h, &y, 3);
        let g = s.geometry(Weighting::Weighted).unwrap();
        let wide = Array2::<f64>::ones((3, 5));
        match nc3(&g, wide.view(), 3) {
            Err(EtfError::Shape(m)) => assert!(m.starts_with("classifier"), "{m}"),
            other => panic!("{other:?}"),
        }
        let short = Array2::<f64>::ones((2, 4));
        assert!(matches!(nc3(&g, short.view(), 3), Err(EtfError::Shape(_))));
        let mut nan = Array2::<f64>::ones((3, 4));
        nan[[1, 2]] = f64::NAN;
        assert!(matches!(
            nc3(&g, nan.view(), 3),
            Err(EtfError::NonFinite { .. })
        ));
        let zero = Array2::<f64>::zeros((3, 4));
        assert!(matches!(
            nc3(&g, zero.view(), 3),
            Err(EtfError::Degenerate(_))
        ));
    }

    #[test]
    fn float32_statistics_cut_at_float32_precision() {
        // p > N: Σ_T has rank N - 1; float32 rounding must not count as rank.
        let (k, p, n) = (4, 60, 24);
        let (h, y) = mixture(n, p, k, 3.0, 10.0, 6);
        let h32 = h.mapv(|v| v as f32);
        let mut s = CollapseStats::new(k, p, false).unwrap();
        s.update(h32.view(), y.view()).unwrap();
        assert_eq!(s.precision(), Some(Precision::F32));
        let g = s.geometry(Weighting::Weighted).unwrap();
        let v = vci(&g, VciNormalizer::MinDimClasses, None, None).unwrap();
        assert_eq!(v.rank, n - 1);
        // N ≤ p: a linear probe separates the classes exactly, so VCI is 0 up to rounding.
        assert!(v.value.abs() < 1e-6, "{}", v.value);
        // The float64 cut keeps float32 noise as rank.
        let tight = vci(
            &g,
            VciNormalizer::MinDimClasses,
            None,
            Some(p as f64 * f64::EPSILON),
        );
        assert!(tight.unwrap().rank > n - 1);
    }
}
