//! Kornblith et al.'s cosine statistics, from the per-class sums of unit vectors.

use super::finite;
use crate::error::{EtfError, Result};
use crate::stats::CollapseStats;

/// Kornblith et al.'s cosine statistics from the per-class unit-vector sums:
/// `(d_within, d_total, class_separation)`.
pub fn cosine_metrics(stats: &CollapseStats) -> Result<(f64, f64, f64)> {
    let p = stats.dim();
    let zeros: u64 = stats.class_zero_rows().iter().sum();
    if zeros > 0 {
        return Err(EtfError::Degenerate(format!(
            "cosine metrics need non-zero feature rows; {zeros} all-zero rows were seen"
        )));
    }
    let present: Vec<usize> = (0..stats.num_classes())
        .filter(|&k| stats.counts()[k] > 0)
        .collect();
    if present.len() < 2 {
        return Err(EtfError::TooFewClasses {
            present: present.len(),
            needed: 2,
        });
    }
    let u = stats.class_unit_sums();
    let mut total = vec![0.0; p];
    let mut dw = 0.0;
    for &k in &present {
        let row = &u[k * p..(k + 1) * p];
        let n = stats.counts()[k] as f64;
        dw += 1.0 - row.iter().map(|x| x * x).sum::<f64>() / (n * n);
        for (t, x) in total.iter_mut().zip(row) {
            *t += x;
        }
    }
    dw /= present.len() as f64;
    let n = stats.num_samples() as f64;
    let dt = 1.0 - total.iter().map(|x| x * x).sum::<f64>() / (n * n);
    // d_total is a mean of 1 - cos over pairs: at rounding level every row has the same
    // direction and class_separation = 1 - d_within/d_total is undefined.
    if !(dt > 64.0 * f64::EPSILON) {
        return Err(EtfError::Degenerate(format!(
            "class_separation is undefined: every feature row has the same direction \
             (d_total = {dt:e})"
        )));
    }
    Ok((dw, dt, finite(1.0 - dw / dt, "class_separation")?))
}
