//! Every statistics metric from one report, sharing the geometry's factorisations.

use super::classifier::{nc3, validate_classifier, Nc3};
use super::cosine::cosine_metrics;
use super::nc1::{nc1_from, nc1_of_cholesky, nc1_split_from, split_of_cholesky};
use super::pairs::{pairwise, squared_distance, within_trace_per_dim, Nc2};
use super::pinv::{probe_mse_from, vci_from};
use super::{PinvMetric, VciNormalizer};
use crate::error::Result;
use crate::geometry::factor::{nc1_cholesky, total_pinv};
use crate::geometry::{between_spectrum, CollapseAnalysis, Weighting};
use crate::linalg::Precision;
use ndarray::ArrayView2;

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
/// analysis), one pseudo-inverse of `Σ_T` shared by VCI and the probe MSE (the weighted
/// geometry's, for the probe, when the weighting is balanced), one spectrum of `Σ_B` (or the
/// Cholesky route) shared by NC1 and its split, and one pass over the class pairs for CDNV and
/// NC2. `rtol` as for each metric (default `p · eps(precision)`).
pub fn report(
    analysis: &CollapseAnalysis,
    weighting: Weighting,
    rtol: Option<f64>,
    classifier: Option<ArrayView2<'_, f64>>,
) -> Result<Report> {
    let stats = analysis.stats();
    let g = analysis.geometry(weighting)?;
    let policy = g.policy(None, rtol)?;
    g.within()?;
    if let Some(w) = &classifier {
        validate_classifier(w, None, Some(stats.num_classes()), stats.dim())?;
    }
    let t = total_pinv(&g, policy)?;
    let vci = vci_from(&g, VciNormalizer::MinDimClasses, &t, None)?;
    let probe = if weighting == Weighting::Weighted {
        probe_mse_from(&g, &t)?
    } else {
        let gw = analysis.geometry(Weighting::Weighted)?;
        probe_mse_from(&gw, &*total_pinv(&gw, gw.policy(None, rtol)?)?)?
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
    let (cdnv, nc2) = pairwise(&g, true, true)?;
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
        cdnv: cdnv.expect("asked"),
        nc2: nc2.expect("asked"),
        cosine,
        nc3: match classifier {
            Some(w) => Some(nc3(&g, w, stats.num_classes())?),
            None => None,
        },
    })
}
