//! Transfer evaluation from streaming statistics: H-score ([`hscore`]), the ridge-probe path
//! ([`ridge`]), LogME ([`logme`]), and [`TransferabilityStats`] ([`streaming`]): statistics with
//! the few extra accumulators of the regularised (Ledoit–Wolf) H-score and GBC. Everything here
//! is linear algebra on mergeable sums; it sits beside the metrics and reads the same geometry
//! and its factorisations (one `Σ_T` factorisation per state, shared with VCI and the probe MSE).
//!
//! Conventions: features `h_i` (rows), labels in `0..K`; only classes with samples take part;
//! covariances are population (`1/N`) and weighted (`π_k = n_k/N`):
//! `Σ_T = (1/N) Σ (h_i-μ_G)(h_i-μ_G)ᵀ`, `Σ_B = Σ_k π_k d_k d_kᵀ`, `d_k = μ_k - μ_G`.

pub mod hscore;
pub mod logme;
pub mod ridge;
pub mod streaming;

pub use hscore::hscore;
pub use logme::{logme, LogMe};
pub use ridge::RidgePath;
pub use streaming::{gbc_from_moments, TransferabilityStats, XFER_FORMAT_VERSION};

use crate::error::{EtfError, Result};
use crate::geometry::ClassGeometry;
use crate::linalg::RankPolicy;

/// The pseudo-inverse policy of the `(rank, rtol)` options on the weighted geometry `g`: the
/// geometry's resolution, whose default threshold `rtol = p · eps` follows the precision the
/// statistics were built from (float32 input: float32 eps). `rank = 0` is refused (an empty
/// pseudo-inverse).
fn policy(g: &ClassGeometry, rank: Option<usize>, rtol: Option<f64>) -> Result<RankPolicy> {
    if rank == Some(0) {
        return Err(EtfError::Parameter("rank must be >= 1, got 0".into()));
    }
    g.policy(rank, rtol)
}

/// `Σ_k π_k d_kᵀ A^† d_k = tr(A^† Σ_B)` from the quadratic forms `d_kᵀ A^† d_k`.
fn weighted_sum(g: &ClassGeometry, quad_forms: &[f64]) -> f64 {
    quad_forms.iter().zip(&g.weights).map(|(a, b)| a * b).sum()
}
