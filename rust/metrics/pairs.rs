//! The metrics of the class-mean Gram `G = M̄ᵀM̄` (`M̄` the centred means, `p × K`): the
//! squared distance, CDNV and NC2. CDNV and NC2 read one cached visit of the pairs `k < l`
//! ([`ClassGeometry::mean_pairs`]: the whole Gram when `K ≤ p`, else row slabs or float32 tiles,
//! never `K × K`), so asking for both costs one visit.

use super::finite;
use crate::error::{EtfError, Result};
pub use crate::geometry::mean_pairs::PAIR_BLOCK;
use crate::geometry::{ClassGeometry, MeanPairs};

/// `Tr Σ_W / Tr Σ_B` (Hui et al.); `Degenerate` when every class has the same mean.
pub fn squared_distance(g: &ClassGeometry) -> Result<f64> {
    g.check_separated("the squared distance")?;
    finite(g.within_trace / g.between_trace(), "the squared distance")
}

/// `Tr Σ_W / p` (Tiomoko Ali et al., Fig. 3).
pub fn within_trace_per_dim(g: &ClassGeometry) -> f64 {
    g.within_trace / g.dim as f64
}

/// Class-distance normalised variance: mean over k<l of `(σ_k² + σ_l²) / (2‖μ_k - μ_l‖²)`.
///
/// Distances come from the Gram of the centred means, and any pair whose expanded distance is
/// small against the norms (cancellation) is recomputed by exact differences. Two classes with
/// the same mean make it undefined: `Degenerate`, naming them. The time is `O(K² p)` (a sum over
/// pairs, shared with NC2: see [`crate::geometry::mean_pairs`] for the routes and the error
/// bound of the float32 one); memory `O(K · min(K, p))`, never `K × K` when `K > p`.
pub fn cdnv(g: &ClassGeometry) -> Result<f64> {
    cdnv_of(g, &g.mean_pairs())
}

/// NC2 of the centred class means; `Degenerate` when a class mean equals the global mean (its
/// angles are undefined). The spread of the cosines is combined block by block (Chan et al.'s
/// update), and `‖G‖_F` comes from the smaller of `M̄ᵀM̄` and `M̄M̄ᵀ` (or the tiles).
pub fn nc2(g: &ClassGeometry) -> Result<Nc2> {
    nc2_of(g, &g.mean_pairs())
}

/// CDNV from the visited pairs.
pub(crate) fn cdnv_of(g: &ClassGeometry, s: &MeanPairs) -> Result<f64> {
    if let Some((k, l)) = s.equal_means {
        return Err(EtfError::Degenerate(format!(
            "CDNV is undefined: classes {} and {} have the same mean",
            g.present[k], g.present[l]
        )));
    }
    finite(s.cdnv_sum / s.pairs as f64, "CDNV")
}

/// NC2 from the visited pairs.
pub(crate) fn nc2_of(g: &ClassGeometry, s: &MeanPairs) -> Result<Nc2> {
    if let Some(k) = s.norms.iter().position(|&n| !(n > 0.0)) {
        return Err(EtfError::Degenerate(format!(
            "NC2 is undefined: the mean of class {} equals the global mean",
            g.present[k]
        )));
    }
    let (m, sd) = mean_std(&s.norms);
    Ok(Nc2 {
        equinorm: finite(sd / m, "NC2 equinorm")?,
        equiangularity: finite(s.cosines.std(), "NC2 equiangularity")?,
        max_equiangularity: finite(s.cos_absdev / s.cosines.n, "NC2 max-equiangularity")?,
        etf_error: finite(s.etf_error2.sqrt(), "NC2 ETF error")?,
    })
}

/// CDNV and/or NC2 from the one (cached) visit of the class pairs.
pub(crate) fn pairwise(
    g: &ClassGeometry,
    want_cdnv: bool,
    want_nc2: bool,
) -> Result<(Option<f64>, Option<Nc2>)> {
    let s = g.mean_pairs();
    let cdnv = want_cdnv.then(|| cdnv_of(g, &s)).transpose()?;
    let nc2 = want_nc2.then(|| nc2_of(g, &s)).transpose()?;
    Ok((cdnv, nc2))
}

/// [`pairwise`] by a given route, uncached (`block = 0`: the whole Gram; else f64 row slabs of
/// `block` rows).
#[cfg(test)]
pub(crate) fn pairwise_in_blocks(
    g: &ClassGeometry,
    block: usize,
    want_cdnv: bool,
    want_nc2: bool,
) -> Result<(Option<f64>, Option<Nc2>)> {
    use crate::geometry::{mean_pairs::visit, PairRoute};
    let route = if block == 0 {
        PairRoute::Whole
    } else {
        PairRoute::F64Blocks(block)
    };
    let s = visit(g, route);
    let cdnv = want_cdnv.then(|| cdnv_of(g, &s)).transpose()?;
    let nc2 = want_nc2.then(|| nc2_of(g, &s)).transpose()?;
    Ok((cdnv, nc2))
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
