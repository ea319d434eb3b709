//! The balanced scatter `Σ_k S_k/n_k` from the very samples of a state: one more pass with each
//! row scaled by `1/√n_{y_i}`, which makes the balanced within-class covariance available on
//! imbalanced classes without tracking the `K` per-class scatters.

use super::pass::{pass, validate_batch, PassOptions};
use super::CollapseStats;
use crate::error::{EtfError, Result};
use crate::linalg::{symmetrize_from_lower, Real};
use ndarray::{ArrayView1, ArrayView2};

/// `Σ_i (1/n_{y_i}) (h_i - c)(h_i - c)ᵀ` with the shift and counts of `stats`, which must have
/// been accumulated from exactly these samples. One pass; feeds `ClassGeometry::new` for the
/// balanced within-class covariance of imbalanced classes.
pub fn balanced_scatter<T: Real>(
    stats: &CollapseStats,
    h: ArrayView2<'_, T>,
    y: ArrayView1<'_, i64>,
) -> Result<Vec<f64>> {
    validate_batch(&h, &y, stats.num_classes(), stats.dim())?;
    let mut counts = vec![0u64; stats.num_classes()];
    y.iter().for_each(|&v| counts[v as usize] += 1);
    if counts != stats.counts() {
        return Err(EtfError::Incompatible(
            "balanced_scatter needs the very samples the statistics were accumulated from".into(),
        ));
    }
    let shift = stats.shift().ok_or(EtfError::TooFewClasses {
        present: 0,
        needed: 2,
    })?;
    let scale: Vec<f64> = counts
        .iter()
        .map(|&c| if c > 0 { 1.0 / (c as f64).sqrt() } else { 0.0 })
        .collect();
    let opts = PassOptions {
        track_class_scatter: false,
        row_scale: Some(&scale),
    };
    let mut scratch = super::pass::Scratch::default();
    let part = pass(
        &h,
        &y,
        stats.num_classes(),
        shift,
        &opts,
        true,
        &mut scratch,
    )?;
    let p = stats.dim();
    let mut s = part.sums.scatter;
    symmetrize_from_lower(&mut s, p);
    Ok(s)
}
