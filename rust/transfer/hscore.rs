//! H-score (Bao et al. 2019), `tr(Σ_T^† Σ_B)`: the weighted sum of the quadratic forms of the
//! geometry's one pseudo-inverse of `Σ_T` (the same one VCI reads: `H = r (1 - VCI)`).

use super::{policy, weighted_sum};
use crate::error::Result;
use crate::geometry::factor::total_pinv;
use crate::geometry::{CollapseAnalysis, Weighting};

/// H-score `tr(Σ_T^† Σ_B)`; returns `(value, rank of Σ_T^†)`.
pub fn hscore(
    analysis: &CollapseAnalysis,
    rank: Option<usize>,
    rtol: Option<f64>,
) -> Result<(f64, usize)> {
    let g = analysis.geometry(Weighting::Weighted)?;
    let t = total_pinv(&g, policy(&g, rank, rtol)?)?;
    Ok((weighted_sum(&g, &t.quad_forms), t.pinv.rank))
}
