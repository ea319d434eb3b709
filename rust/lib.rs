//! etfcore: neural-collapse geometry. The crate knows nothing of Python; `py` (feature
//! `python`) is the thin binding. Layers, each importing only those above it in this list:
//!
//! - [`error`], [`alloc`]: the one error type; size and memory guards.
//! - [`linalg`]: precision, the Gram kernels (the packed AVX-512 one in [`linalg::syrk`]),
//!   the pseudo-inverse policy and symmetric eigendecompositions.
//! - [`etf`]: simplex equiangular tight frames and orthogonal frames.
//! - [`rf`]: random-feature kernels.
//! - [`stats`]: the accumulator — streaming, mergeable sufficient statistics (knows no metric).
//! - [`geometry`]: what the statistics mean — class means, covariances, their cached
//!   factorisations, and [`CollapseAnalysis`] (statistics + everything derived from them).
//! - [`metrics`] and [`transfer`], side by side: every collapse metric; the transferability
//!   scores. Both read the geometry and share its factorisations.
//!
//! `docs/architecture.md` draws the same layers for the whole project.

// `!(x > 0.0)` is the NaN-rejecting comparison, used on purpose throughout.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod alloc;
pub mod error;
pub mod etf;
pub mod geometry;
pub mod linalg;
pub mod metrics;
pub mod rf;
pub mod stats;
pub mod transfer;

#[cfg(feature = "python")]
mod py;
#[cfg(test)]
pub(crate) mod test_util;

pub use error::{EtfError, Result};
pub use geometry::{ClassGeometry, CollapseAnalysis, Weighting};
pub use stats::CollapseStats;

// Former paths, kept so that code written against them compiles unchanged.
/// The packed Gram kernel (now `linalg::syrk`).
pub use linalg::syrk;
/// The sample-level metrics (now `metrics::samples`).
pub use metrics::samples;
