//! NC1 `Tr[Σ_W Σ_B^†]/K` and its split of `tr Σ_W` into the span of the class means and its
//! complement: by the proven Cholesky route of the class-mean Gram when it applies, else from
//! the geometry's spectrum of `Σ_B`.

use super::{finite, PinvMetric};
use crate::error::{EtfError, Result};
use crate::geometry::factor::{nc1_cholesky, Nc1Cholesky};
use crate::geometry::{between_spectrum, BetweenSpectrum, ClassGeometry};
use crate::linalg::{kept_rank, PinvMethod, RankPolicy};

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

pub(crate) fn nc1_of_cholesky(g: &ClassGeometry, c: &Nc1Cholesky) -> Result<PinvMetric> {
    Ok(PinvMetric {
        value: finite(c.trace / g.num_present() as f64, "NC1")?,
        rank: c.rank,
        method: PinvMethod::Cholesky,
        normalizer: c.rank,
    })
}

pub(crate) fn nc1_from(
    g: &ClassGeometry,
    spec: &BetweenSpectrum,
    policy: RankPolicy,
) -> Result<PinvMetric> {
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

pub(crate) fn split_of_cholesky(g: &ClassGeometry, c: &Nc1Cholesky) -> (f64, f64, usize) {
    let tr = g
        .within
        .as_ref()
        .map_or(0.0, |w| (0..g.dim).map(|i| w[(i, i)]).sum());
    (c.inside, tr - c.inside, c.rank)
}

pub(crate) fn nc1_split_from(
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
