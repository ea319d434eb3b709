//! etfcore: neural-collapse geometry.
//!
//! - [`etf`]: simplex equiangular tight frames and orthogonal frames (SPEC §6).
//! - [`stats`]: streaming, mergeable sufficient statistics of labelled features (SPEC §3).
//! - [`metrics`]: class geometry and every collapse metric computed from the statistics (SPEC §5).
//! - [`samples`]: metrics that need the samples themselves (NC4, numerical rank).
//! - [`syrk`]: the packed AVX-512 Gram kernel of the statistics pass.
//! - [`linalg`]: the portable gram kernel and the explicit pseudo-inverse policy (SPEC §4).
//! - [`error`]: the one error type.
//!
//! The crate knows nothing of Python; `py` (feature `python`) is the thin binding.

// `!(x > 0.0)` is the NaN-rejecting comparison, used on purpose throughout.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod error;
pub mod etf;
pub mod linalg;
pub mod metrics;
pub mod rf;
pub mod samples;
pub mod stats;
pub mod syrk;
#[cfg(test)]
pub(crate) mod test_util;
pub mod transfer;

#[cfg(feature = "python")]
mod py;

pub use error::{EtfError, Result};
pub use metrics::{ClassGeometry, Weighting};
pub use stats::CollapseStats;
