//! What the statistics mean: class means and the covariances `Σ_T`, `Σ_B`, `Σ_W` under one
//! weighting convention ([`ClassGeometry`]), their cached factorisations ([`factor`]), and
//! [`CollapseAnalysis`], the statistics together with everything derived from them.
//!
//! Only classes with samples take part; `K` below is the number of present classes. This layer
//! reads the accumulator (`stats`) and the dense kernels (`linalg`); the metrics and the transfer
//! scores read it.

pub mod analysis;
pub mod factor;
pub mod mean_pairs;
#[cfg(test)]
mod tests;

pub use analysis::CollapseAnalysis;
pub use factor::{between_spectrum, BetweenSpectrum};
pub use mean_pairs::{MeanPairs, PairRoute};

use crate::error::{EtfError, Result};
use crate::linalg::{Precision, RankPolicy};
use crate::stats::CollapseStats;
use factor::FactorCache;
use faer::{Mat, MatRef};
use std::str::FromStr;

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

fn outer_sum(a: MatRef<'_, f64>, w: &[f64]) -> Mat<f64> {
    // Σ_k w_k a_k a_kᵀ = (A diag √w)(A diag √w)ᵀ
    let aw = Mat::from_fn(a.nrows(), a.ncols(), |i, j| a[(i, j)] * w[j].sqrt());
    &aw * aw.transpose()
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
    /// The factorisations every metric and score shares (built on first use).
    pub(crate) factors: FactorCache,
}

/// The present classes, their counts and their means relative to the shift (`p × K`).
fn present_means(stats: &CollapseStats) -> Result<(Vec<usize>, Vec<u64>, Mat<f64>)> {
    let p = stats.dim();
    let present: Vec<usize> = (0..stats.num_classes())
        .filter(|&k| stats.counts()[k] > 0)
        .collect();
    if present.len() < 2 {
        return Err(EtfError::TooFewClasses {
            present: present.len(),
            needed: 2,
        });
    }
    let counts: Vec<u64> = present.iter().map(|&k| stats.counts()[k]).collect();
    let sums = stats.class_sums();
    let rel = Mat::from_fn(p, present.len(), |i, j| {
        sums[present[j] * p + i] / counts[j] as f64
    });
    Ok((present, counts, rel))
}

/// `Σ_W` under `weighting` from the means relative to the shift (`rel`, `p × K`): the weighted
/// one from the scatter; the balanced one from an attached balanced scatter, the per-class
/// scatters, or the scatter when the classes are balanced — `None` otherwise.
fn within_covariance(
    stats: &CollapseStats,
    weighting: Weighting,
    balanced_scatter: Option<&[f64]>,
    present: &[usize],
    counts: &[u64],
    rel: MatRef<'_, f64>,
    weights: &[f64],
) -> Result<Option<Mat<f64>>> {
    let p = stats.dim();
    let (n, kp) = (counts.iter().sum::<u64>(), present.len());
    let class_moment = |scatter_sum: Mat<f64>, scale: f64| -> Mat<f64> {
        // scale · scatter_sum - Σ_k w_k rel_k rel_kᵀ
        let mm = outer_sum(rel, weights);
        Mat::from_fn(p, p, |i, j| scale * scatter_sum[(i, j)] - mm[(i, j)])
    };
    let full_scatter = || {
        let s = stats.scatter();
        Mat::from_fn(p, p, |i, j| s[i * p + j])
    };
    if weighting == Weighting::Weighted {
        return Ok(Some(class_moment(full_scatter(), 1.0 / n as f64)));
    }
    if let Some(bs) = balanced_scatter {
        if bs.len() != p * p {
            return Err(EtfError::Shape(format!(
                "balanced scatter has {} entries, expected {}",
                bs.len(),
                p * p
            )));
        }
        let bs = Mat::from_fn(p, p, |i, j| bs[i * p + j]);
        return Ok(Some(class_moment(bs, 1.0 / kp as f64)));
    }
    if stats.tracks_class_scatter() {
        let mut acc = Mat::<f64>::zeros(p, p);
        for (j, &k) in present.iter().enumerate() {
            let sk = stats.class_scatter(k).expect("tracked");
            let c = counts[j] as f64;
            for a in 0..p {
                for b in 0..p {
                    acc[(a, b)] += sk[a * p + b] / c;
                }
            }
        }
        return Ok(Some(class_moment(acc, 1.0 / kp as f64)));
    }
    if counts.iter().all(|&c| c == counts[0]) {
        return Ok(Some(class_moment(full_scatter(), 1.0 / n as f64)));
    }
    Ok(None)
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
        let (present, counts, rel) = present_means(stats)?;
        let shift = stats.shift().ok_or(EtfError::TooFewClasses {
            present: 0,
            needed: 2,
        })?;
        let kp = present.len();
        let n: u64 = counts.iter().sum();
        let weights: Vec<f64> = match weighting {
            Weighting::Weighted => counts.iter().map(|&c| c as f64 / n as f64).collect(),
            Weighting::Balanced => vec![1.0 / kp as f64; kp],
        };
        let mg_rel: Vec<f64> = (0..p)
            .map(|i| (0..kp).map(|j| weights[j] * rel[(i, j)]).sum())
            .collect();
        let centred = Mat::from_fn(p, kp, |i, j| rel[(i, j)] - mg_rel[i]);
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
        let within = within_covariance(
            stats,
            weighting,
            balanced_scatter,
            &present,
            &counts,
            rel.as_ref(),
            &weights,
        )?;
        Ok(ClassGeometry {
            weighting,
            dim: p,
            precision: stats.effective_precision(),
            num_samples: n,
            between: outer_sum(centred.as_ref(), &weights),
            global_mean: mg_rel.iter().zip(shift).map(|(a, c)| a + c).collect(),
            class_means: Mat::from_fn(p, kp, |i, j| rel[(i, j)] + shift[i]),
            present,
            counts,
            weights,
            centred_means: centred,
            class_variances,
            within,
            within_trace,
            factors: FactorCache::default(),
        })
    }

    pub fn num_present(&self) -> usize {
        self.present.len()
    }

    /// The sums over the pairs of class means (CDNV, NC2), visited once by the route
    /// [`PairRoute::for_geometry`] picks and cached.
    pub fn mean_pairs(&self) -> std::sync::Arc<MeanPairs> {
        self.factors
            .mean_pairs
            .get_or_init(|| {
                std::sync::Arc::new(mean_pairs::visit(self, PairRoute::for_geometry(self)))
            })
            .clone()
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
    pub fn check_separated(&self, metric: &str) -> Result<()> {
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
