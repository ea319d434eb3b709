//! The ridge least-squares probe for every `λ` from the geometry's one eigendecomposition of
//! `Σ_T`.

use super::policy;
use crate::error::{EtfError, Result};
use crate::geometry::factor::total_eigen;
use crate::geometry::{CollapseAnalysis, Weighting};
use crate::linalg::kept_rank;
use faer::Mat;

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
    pub fn new(analysis: &CollapseAnalysis, rtol: Option<f64>) -> Result<Self> {
        let g = analysis.geometry(Weighting::Weighted)?;
        let pol = policy(&g, None, rtol)?;
        let eigen = total_eigen(&g)?;
        let vals = eigen.values();
        let rank = kept_rank(&vals, pol)?.0;
        let (p, kp) = (g.dim, g.num_present());
        let c = Mat::from_fn(p, kp, |j, i| g.weights[i] * g.centred_means[(j, i)]);
        let projected_targets = eigen.vectors.transpose() * &c;
        Ok(RidgePath {
            present: g.present.clone(),
            pi: g.weights.clone(),
            global_mean: g.global_mean.clone(),
            eigenvalues: vals.iter().map(|v| v.max(0.0)).collect(),
            eigenvectors: eigen.vectors.clone(),
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
