//! Collapse metrics of SPEC §5 computed from [`CollapseStats`].
//!
//! [`ClassGeometry`] turns the statistics into class means and the covariances
//! `Σ_T`, `Σ_B`, `Σ_W` for one weighting convention (SPEC §2); each metric is a function of it.
//! Only classes with samples take part; `K` below is the number of present classes.

use crate::error::{EtfError, Result};
use crate::linalg::{kept_rank, mat_ref, sym_eig_desc, PinvMethod, RankPolicy, SymPinv};
use crate::stats::CollapseStats;
use faer::{Mat, MatRef};
use std::str::FromStr;

/// Covariance convention (SPEC §2).
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
        let shift = stats.shift().expect("non-empty statistics have a shift");
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
            // scale · scatter_sum - Σ_k w'_k rel_k rel_kᵀ
            let w2: Vec<f64> = match weighting {
                Weighting::Weighted => weights.clone(),
                Weighting::Balanced => vec![1.0 / kp as f64; kp],
            };
            let mm = outer_sum(rel.as_ref(), &w2);
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
}

fn rank_policy(rank: Option<usize>, rtol: Option<f64>) -> Result<RankPolicy> {
    match (rank, rtol) {
        (Some(_), Some(_)) => Err(EtfError::Parameter(
            "give either rank or rtol, not both".into(),
        )),
        (Some(r), None) => Ok(RankPolicy::Top(r)),
        (None, rtol) => Ok(RankPolicy::Rtol(rtol)),
    }
}

/// `Σ_k w_k (μ_k-μ_G)ᵀ Σ_T^† (μ_k-μ_G) = Tr[Σ_T^† Σ_B]` with the pseudo-inverse used, and the
/// per-class quadratic forms `d_k`.
fn total_quad_forms(g: &ClassGeometry, policy: RankPolicy) -> Result<(Vec<f64>, SymPinv)> {
    let total = g.total()?;
    let pinv = SymPinv::new(total.as_ref(), policy, true)?;
    Ok((pinv.quad_forms(g.centred_means.as_ref()), pinv))
}

/// Eigen-structure of `Σ_B` restricted to its positive part: eigenvalues (decreasing) and,
/// for each, `v_jᵀ Σ_W v_j` (when Σ_W is available).
pub struct BetweenSpectrum {
    pub values: Vec<f64>,
    pub within_quad: Option<Vec<f64>>,
}

/// Spectrum of `Σ_B` through the smaller of the `K × K` Gram `AᵀA` (A = centred means · diag √w)
/// and `Σ_B` itself; only the first `min(p, K-1)` eigenpairs with positive eigenvalues are kept.
pub fn between_spectrum(g: &ClassGeometry) -> Result<BetweenSpectrum> {
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

/// Variability Collapse Index `1 - Tr[Σ_T^† Σ_B] / r` (paper 003).
pub fn vci(
    g: &ClassGeometry,
    normalizer: VciNormalizer,
    rank: Option<usize>,
    rtol: Option<f64>,
) -> Result<PinvMetric> {
    let (d, pinv) = total_quad_forms(g, rank_policy(rank, rtol)?)?;
    let tr: f64 = d.iter().zip(&g.weights).map(|(d, w)| d * w).sum();
    let r = match normalizer {
        VciNormalizer::MinDimClasses => g.dim.min(g.num_present() - 1),
        VciNormalizer::Numerical => {
            let spec = between_spectrum(g)?;
            kept_rank(&spec.values, RankPolicy::Rtol(None))?.0
        }
        VciNormalizer::Fixed(r) => r,
    };
    if r == 0 {
        return Err(EtfError::Parameter(
            "the VCI normaliser r must be positive".into(),
        ));
    }
    Ok(PinvMetric {
        value: 1.0 - tr / r as f64,
        rank: pinv.rank,
        method: pinv.method,
        normalizer: r,
    })
}

/// Minimum of the linear-probe least-squares loss `(1/2N) Σ‖W h_i + b - e_{y_i}‖²` by the
/// closed form `½(1 - Σπ_k²) - ½ Σ π_k² d_k` (paper 003 Thm 5.1, any balance). Always the
/// weighted convention (it is the loss over the samples).
pub fn probe_mse(g: &ClassGeometry, rank: Option<usize>, rtol: Option<f64>) -> Result<PinvMetric> {
    if g.weighting != Weighting::Weighted {
        return Err(EtfError::Parameter(
            "probe_mse is defined with the weighted geometry".into(),
        ));
    }
    let (d, pinv) = total_quad_forms(g, rank_policy(rank, rtol)?)?;
    let s2: f64 = g.weights.iter().map(|w| w * w).sum();
    let sd: f64 = g.weights.iter().zip(&d).map(|(w, d)| w * w * d).sum();
    Ok(PinvMetric {
        value: 0.5 * (1.0 - s2) - 0.5 * sd,
        rank: pinv.rank,
        method: pinv.method,
        normalizer: pinv.rank,
    })
}

/// NC1 `Tr[Σ_W Σ_B^†] / K`, `Σ_B^†` over its top `min(p, K-1)` eigenvalues that also exceed
/// `rtol · λ_max` (or exactly the top `rank`).
pub fn nc1(g: &ClassGeometry, rank: Option<usize>, rtol: Option<f64>) -> Result<PinvMetric> {
    g.within()?;
    let spec = between_spectrum(g)?;
    let policy = rank_policy(rank, rtol)?;
    if let RankPolicy::Top(r) = policy {
        if r > spec.values.len() {
            return Err(EtfError::Parameter(format!(
                "rank={r} but Σ_B has only {} positive eigenvalues (at most min(p, K-1))",
                spec.values.len()
            )));
        }
    }
    let (r, _) = kept_rank(&spec.values, policy)?;
    let q = spec.within_quad.as_ref().unwrap();
    let s: f64 = (0..r).map(|j| q[j] / spec.values[j]).sum();
    Ok(PinvMetric {
        value: s / g.num_present() as f64,
        rank: r,
        method: PinvMethod::Eigh,
        normalizer: r,
    })
}

/// `(tr(P_B Σ_W), tr Σ_W - tr(P_B Σ_W), rank of P_B)`, P_B the projector on span{μ_k - μ_G}.
pub fn nc1_split(g: &ClassGeometry, rtol: Option<f64>) -> Result<(f64, f64, usize)> {
    let w = g.within()?;
    let spec = between_spectrum(g)?;
    let (r, _) = kept_rank(&spec.values, RankPolicy::Rtol(rtol))?;
    let inside: f64 = spec.within_quad.as_ref().unwrap()[..r].iter().sum();
    let tr: f64 = (0..g.dim).map(|i| w[(i, i)]).sum();
    Ok((inside, tr - inside, r))
}

/// `Tr Σ_W / Tr Σ_B` (Hui et al.).
pub fn squared_distance(g: &ClassGeometry) -> f64 {
    g.within_trace / g.between_trace()
}

/// `Tr Σ_W / p` (paper 000 Fig. 3).
pub fn within_trace_per_dim(g: &ClassGeometry) -> f64 {
    g.within_trace / g.dim as f64
}

fn centred_gram(g: &ClassGeometry) -> Mat<f64> {
    g.centred_means.transpose() * &g.centred_means
}

/// Class-distance normalised variance: mean over k<l of `(σ_k² + σ_l²) / (2‖μ_k - μ_l‖²)`.
pub fn cdnv(g: &ClassGeometry) -> f64 {
    let c = centred_gram(g);
    let kp = g.num_present();
    let mut total = 0.0;
    for k in 0..kp {
        for l in (k + 1)..kp {
            let d2 = (c[(k, k)] + c[(l, l)] - 2.0 * c[(k, l)]).max(0.0);
            total += (g.class_variances[k] + g.class_variances[l]) / (2.0 * d2);
        }
    }
    total / (kp * (kp - 1) / 2) as f64
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

pub fn nc2(g: &ClassGeometry) -> Nc2 {
    let c = centred_gram(g);
    let kp = g.num_present();
    let norms: Vec<f64> = (0..kp).map(|k| c[(k, k)].max(0.0).sqrt()).collect();
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
    Nc2 {
        equinorm: s / m,
        equiangularity: cs,
        max_equiangularity: maxeq,
        etf_error: e.sqrt(),
    }
}

/// NC3: `‖W/‖W‖_F - M̄ᵀ/‖M̄‖_F‖_F²` over the present classes' rows of the `K × p` classifier,
/// and per present class `cos(w_k, μ_k - μ_G)`.
pub fn nc3(g: &ClassGeometry, classifier: &[f64], num_classes: usize) -> Result<(f64, Vec<f64>)> {
    let p = g.dim;
    if classifier.len() != num_classes * p {
        return Err(EtfError::Shape(format!(
            "classifier must be ({num_classes}, {p}), got {} values",
            classifier.len()
        )));
    }
    let w = mat_ref(classifier, num_classes, p);
    let kp = g.num_present();
    let wp = Mat::from_fn(kp, p, |j, i| w[(g.present[j], i)]);
    let (wn, mn) = (wp.norm_l2(), g.centred_means.norm_l2());
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
        cos.push(dot / (nw.sqrt() * nm.sqrt()));
    }
    Ok((dist, cos))
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
    Ok((dw, dt, 1.0 - dw / dt))
}
