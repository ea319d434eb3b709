//! Every collapse metric, one family per file, each a function of the class geometry (and of
//! the samples, for the few that need them):
//!
//! - [`pinv`]: VCI and the probe MSE (through `Σ_T^†`);
//! - [`nc1`]: NC1 and its split (through `Σ_B^†`);
//! - [`pairs`]: the squared distance, CDNV and NC2 (through the Gram of the class means);
//! - [`classifier`]: NC3 and the classifier checks;
//! - [`cosine`]: Kornblith et al.'s cosine statistics;
//! - [`samples`]: NCC, NC4 and the per-class numerical rank (they need the samples);
//! - [`report`]: every statistics metric at once, sharing the factorisations.
//!
//! Metrics read `geometry` (and `stats` for the cosine sums); nothing here caches or mutates.

pub mod classifier;
pub mod cosine;
pub mod nc1;
pub mod pairs;
pub mod pinv;
pub mod report;
pub mod samples;
#[cfg(test)]
mod tests;

pub use crate::geometry::{between_spectrum, BetweenSpectrum, ClassGeometry, Weighting};
pub use classifier::{nc3, validate_classifier, Nc3};
pub use cosine::cosine_metrics;
pub use nc1::{nc1, nc1_split};
pub use pairs::{cdnv, nc2, squared_distance, within_trace_per_dim, Nc2, PAIR_BLOCK};
pub use pinv::{probe_mse, vci};
pub use report::{report, Cosine, Nc1Split, Report};

use crate::error::{EtfError, Result};
use crate::linalg::PinvMethod;
use std::str::FromStr;

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

/// A finite value, or `Degenerate` naming the metric (the guard against a silent NaN/inf).
pub(crate) fn finite(v: f64, metric: &str) -> Result<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(EtfError::Degenerate(format!(
            "{metric} is not finite on these statistics ({v}); the class geometry is degenerate"
        )))
    }
}
