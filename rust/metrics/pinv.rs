//! The metrics of `Σ_T^†`: VCI and the linear probe's least-squares loss. Both read the
//! geometry's one pseudo-inverse of `Σ_T` (and its quadratic forms of the centred means).

use super::{finite, PinvMetric, VciNormalizer};
use crate::error::{EtfError, Result};
use crate::geometry::factor::{total_pinv, TotalPinv};
use crate::geometry::{between_spectrum, BetweenSpectrum, ClassGeometry, Weighting};
use crate::linalg::kept_rank;

/// Variability Collapse Index `1 - Tr[Σ_T^† Σ_B] / r` (Xu & Liu).
pub fn vci(
    g: &ClassGeometry,
    normalizer: VciNormalizer,
    rank: Option<usize>,
    rtol: Option<f64>,
) -> Result<PinvMetric> {
    let t = total_pinv(g, g.policy(rank, rtol)?)?;
    let spec = match normalizer {
        VciNormalizer::Numerical => Some(between_spectrum(g)?),
        _ => None,
    };
    vci_from(g, normalizer, &t, spec.as_deref())
}

pub(crate) fn vci_from(
    g: &ClassGeometry,
    normalizer: VciNormalizer,
    t: &TotalPinv,
    spec: Option<&BetweenSpectrum>,
) -> Result<PinvMetric> {
    g.check_separated("VCI")?;
    let tr: f64 = t
        .quad_forms
        .iter()
        .zip(&g.weights)
        .map(|(d, w)| d * w)
        .sum();
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
        rank: t.pinv.rank,
        method: t.pinv.method,
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
    let t = total_pinv(g, g.policy(rank, rtol)?)?;
    probe_mse_from(g, &t)
}

pub(crate) fn probe_mse_from(g: &ClassGeometry, t: &TotalPinv) -> Result<PinvMetric> {
    let s2: f64 = g.weights.iter().map(|w| w * w).sum();
    let sd: f64 = g
        .weights
        .iter()
        .zip(&t.quad_forms)
        .map(|(w, d)| w * w * d)
        .sum();
    Ok(PinvMetric {
        value: finite(0.5 * (1.0 - s2) - 0.5 * sd, "probe_mse")?,
        rank: t.pinv.rank,
        method: t.pinv.method,
        normalizer: t.pinv.rank,
    })
}
