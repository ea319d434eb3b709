//! Streaming, mergeable sufficient statistics of labelled features — the accumulator. It
//! knows no metric: what the statistics *mean* (class means, covariances, their
//! factorisations) is the `geometry` layer above, and every metric reads that.
//!
//! For a fixed shift vector `c` (the mean of the first non-empty batch) the state is
//! `n_k`, `s_k = Σ_{y_i=k} (h_i - c)`, `q_k = Σ_{y_i=k} ‖h_i - c‖²`, the scatter
//! `S = Σ_i (h_i - c)(h_i - c)ᵀ`, the per-class sums of unit vectors `u_k = Σ_{y_i=k} h_i/‖h_i‖`
//! (cosine metrics) and, optionally, per-class scatters `S_k` (balanced within-class covariance
//! on imbalanced data; `O(K p²)` memory). Everything is accumulated in f64. Memory is
//! `O(K p + p²)`, independent of the number of samples.
//!
//! - [`pass`]: one pass over a batch (validation, row work, chunk Gram products) into partial
//!   [`Sums`](sums::Sums); `update` validates the reduced partial and commits it, so a failed
//!   update leaves the state exactly as it was.
//! - [`balanced`]: the balanced scatter `Σ_k S_k/n_k` from the samples themselves.
//! - [`format`]: the versioned, checksummed bytes.

pub mod balanced;
pub mod format;
pub(crate) mod pass;
mod rows;
pub(crate) mod sums;
#[cfg(test)]
mod tests;

pub use format::FORMAT_VERSION;
pub use pass::validate_batch;

use crate::alloc::{check_dense_size, check_memory, probe_alloc, try_zeros};
use crate::error::{EtfError, Result};
use crate::linalg::{symmetrize_from_lower, Precision, Real};
use ndarray::{ArrayView1, ArrayView2};
pub(crate) use pass::Scratch;
use pass::{first_batch_mean, pass, PassOptions};
use sums::{overflow_error, Sums};

/// Rows per chunk of the statistics pass.
pub const CHUNK_ROWS: usize = 1024;

/// Sufficient statistics of labelled features for every covariance metric: a plain
/// accumulator (equal states compare equal). Metrics read it through
/// `geometry::CollapseAnalysis`, which caches what is derived from it.
#[derive(Debug, Clone, PartialEq)]
pub struct CollapseStats {
    num_classes: usize,
    dim: usize,
    shift: Option<Vec<f64>>,
    sums: Sums,
    /// Precision of the input (the coarsest seen); `None` before any sample.
    precision: Option<Precision>,
    /// The last pass's buffers, for the next one (derived data: not compared, not cloned).
    scratch: Scratch,
}

/// Adds `s δᵀ + δ sᵀ + n δδᵀ` to the lower triangle of a scatter (re-expressing a scatter of
/// `x_i = h_i - c_old` as one of `h_i - c_new = x_i + δ`, `δ = c_old - c_new`).
fn shift_scatter_lower(scatter: &mut [f64], sum: &[f64], n: f64, delta: &[f64]) {
    let p = delta.len();
    for i in 0..p {
        for j in 0..=i {
            scatter[i * p + j] += sum[i] * delta[j] + delta[i] * sum[j] + n * delta[i] * delta[j];
        }
    }
}

impl CollapseStats {
    /// Empty statistics for `num_classes` classes of `dim`-dimensional features.
    pub fn new(num_classes: usize, dim: usize, track_class_scatter: bool) -> Result<Self> {
        if num_classes < 1 {
            return Err(EtfError::Parameter("num_classes must be at least 1".into()));
        }
        if dim < 1 {
            return Err(EtfError::Parameter("dim must be at least 1".into()));
        }
        let (k, p) = (num_classes, dim);
        let cells = (k as u128) * (p as u128) * (p as u128);
        if track_class_scatter && cells > (1u128 << 31) {
            return Err(EtfError::Dimension(format!(
                "track_class_scatter needs K·p² = {cells} f64 values ({:.1} GiB); too large",
                cells as f64 * 8.0 / (1u64 << 30) as f64
            )));
        }
        check_dense_size(k, p, "class sums (num_classes × dim)")?;
        check_dense_size(p, p, "the scatter (dim × dim)")?;
        // Every buffer together (f64/u64 values), against one budget.
        let values = 2 * (k as u128) * (p as u128)
            + (p as u128) * (p as u128)
            + 3 * (k as u128)
            + if track_class_scatter { cells } else { 0 };
        check_memory(values * 8, "these statistics")?;
        Ok(CollapseStats {
            num_classes: k,
            dim: p,
            shift: None,
            sums: Sums::zeros(k, p, track_class_scatter, true)?,
            precision: None,
            scratch: Scratch::default(),
        })
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Bytes of working memory kept from the last update for the next one (partial sums and
    /// chunk buffers: at most one update's working memory).
    pub fn buffer_bytes(&self) -> usize {
        self.scratch.bytes()
    }

    /// Frees the working memory kept between updates (the next update allocates it again).
    pub fn release_buffers(&mut self) {
        self.scratch = Scratch::default();
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn tracks_class_scatter(&self) -> bool {
        self.sums.class_scatter.is_some()
    }

    pub fn shift(&self) -> Option<&[f64]> {
        self.shift.as_deref()
    }

    pub fn counts(&self) -> &[u64] {
        &self.sums.counts
    }

    /// `N = Σ n_k` (validated not to overflow on every path that changes the counts).
    pub fn num_samples(&self) -> u64 {
        self.sums
            .counts
            .iter()
            .fold(0u64, |a, &c| a.saturating_add(c))
    }

    /// `s_k` (K × p row-major), relative to the shift.
    pub fn class_sums(&self) -> &[f64] {
        &self.sums.class_sums
    }

    /// `q_k = Σ ‖h_i - c‖²` per class.
    pub fn class_sq_norms(&self) -> &[f64] {
        &self.sums.class_sq_norms
    }

    /// `u_k = Σ h_i/‖h_i‖` per class (K × p).
    pub fn class_unit_sums(&self) -> &[f64] {
        &self.sums.class_unit_sums
    }

    /// Number of all-zero rows seen per class (they have no direction; cosine metrics refuse them).
    pub fn class_zero_rows(&self) -> &[u64] {
        &self.sums.class_zero_rows
    }

    /// The full symmetric scatter `S` (p × p row-major), relative to the shift.
    pub fn scatter(&self) -> Vec<f64> {
        let mut s = self.sums.scatter.clone();
        symmetrize_from_lower(&mut s, self.dim);
        s
    }

    /// The full symmetric `S_k` (p × p), when tracked.
    pub fn class_scatter(&self, k: usize) -> Option<Vec<f64>> {
        let p = self.dim;
        if k >= self.num_classes {
            return None;
        }
        self.sums.class_scatter.as_ref().map(|cs| {
            let mut s = cs[k * p * p..(k + 1) * p * p].to_vec();
            symmetrize_from_lower(&mut s, p);
            s
        })
    }

    /// The full symmetric `S_k` of class `k` (`p × p`), or an error naming what is missing.
    pub fn try_class_scatter(&self, k: usize) -> Result<Vec<f64>> {
        if k >= self.num_classes {
            return Err(EtfError::Label(format!(
                "class {k} is outside 0..{}",
                self.num_classes
            )));
        }
        self.class_scatter(k).ok_or_else(|| {
            EtfError::Parameter("per-class scatters need track_class_scatter=True".into())
        })
    }

    /// The covariance `C_k = S_k/n_k - m_k m_kᵀ` of class `k` (`p × p`, `m_k = s_k/n_k`, both
    /// relative to the shift), which needs per-class scatters and samples in class `k`.
    pub fn class_covariance(&self, k: usize) -> Result<Vec<f64>> {
        let s = self.try_class_scatter(k)?;
        let n = self.sums.counts[k];
        if n == 0 {
            return Err(EtfError::Degenerate(format!("class {k} has no samples")));
        }
        let p = self.dim;
        let m: Vec<f64> = self.sums.class_sums[k * p..(k + 1) * p]
            .iter()
            .map(|v| v / n as f64)
            .collect();
        Ok((0..p * p)
            .map(|ij| s[ij] / n as f64 - m[ij / p] * m[ij % p])
            .collect())
    }

    /// Class means `μ_k = c + s_k/n_k` as a `K × p` row-major matrix; rows of classes without
    /// samples are NaN.
    pub fn class_means(&self) -> Result<Vec<f64>> {
        let p = self.dim;
        let mut out = try_zeros(self.num_classes * p, "the class means")?;
        out.iter_mut().for_each(|v| *v = f64::NAN);
        let Some(shift) = self.shift.as_deref() else {
            return Ok(out);
        };
        for (k, &n) in self.sums.counts.iter().enumerate() {
            if n > 0 {
                for i in 0..p {
                    out[k * p + i] = self.sums.class_sums[k * p + i] / n as f64 + shift[i];
                }
            }
        }
        Ok(out)
    }

    /// The precision of the input the statistics were built from (the coarsest when merged);
    /// `None` before the first sample.
    pub fn precision(&self) -> Option<Precision> {
        self.precision
    }
    /// The precision that sets default thresholds (float64 before any sample).
    pub fn effective_precision(&self) -> Precision {
        self.precision.unwrap_or(Precision::F64)
    }

    /// Accumulates one batch (`h`: `N × p`, `y`: `N` labels in `0..K`). All-or-nothing: on any
    /// error (shape, label, non-finite value, overflow) the state is unchanged.
    ///
    /// float32 chunks whose float32 product overflows are recomputed in float64; float64 input
    /// whose squares overflow float64 is refused with `EtfError::Numerical`.
    pub fn update<T: Real>(&mut self, h: ArrayView2<'_, T>, y: ArrayView1<'_, i64>) -> Result<()> {
        validate_batch(&h, &y, self.num_classes, self.dim)?;
        if h.nrows() == 0 {
            return Ok(());
        }
        let new_shift = match &self.shift {
            Some(_) => None,
            None => Some(first_batch_mean(&h, "features")?),
        };
        let shift: Vec<f64> = new_shift
            .as_deref()
            .or(self.shift.as_deref())
            .expect("shift set")
            .to_vec();
        let shift = shift.as_slice();
        if !shift.iter().all(|v| v.is_finite()) {
            return Err(overflow_error());
        }
        let opts = PassOptions {
            track_class_scatter: self.sums.class_scatter.is_some(),
            row_scale: None,
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        let part = pass(&h, &y, self.num_classes, shift, &opts, true, &mut scratch)?;
        let mut done = None;
        if part.sums.is_finite() {
            done = Some(self.commit(&part.sums, &part.classes, new_shift.clone(), T::PRECISION));
        }
        scratch.give_sums(part.sums);
        if done.is_none() && T::PRECISION == Precision::F32 {
            // The float32 product overflowed: redo this batch in float64 (one copy of it).
            let (n, p) = h.dim();
            probe_alloc(8 * n as u128 * p as u128, "a float64 copy of the batch")?;
            let h64 = h.mapv(|v| v.to_f64());
            let part = pass(
                &h64.view(),
                &y,
                self.num_classes,
                shift,
                &opts,
                true,
                &mut scratch,
            )?;
            if part.sums.is_finite() {
                done = Some(self.commit(&part.sums, &part.classes, new_shift, T::PRECISION));
            }
            scratch.give_sums(part.sums);
        }
        self.scratch = scratch;
        done.unwrap_or_else(|| Err(overflow_error()))
    }

    /// Adds a pass's partial sums (slot `l` is class `classes[l]`), or changes nothing.
    fn commit(
        &mut self,
        part: &Sums,
        classes: &[usize],
        new_shift: Option<Vec<f64>>,
        precision: Precision,
    ) -> Result<()> {
        self.sums.check_add(part, Some(classes))?;
        // Commit: nothing below can fail.
        if let Some(s) = new_shift {
            self.shift = Some(s);
        }
        self.sums.add(part, Some(classes));
        self.precision = Precision::coarser_opt(self.precision, Some(precision));
        Ok(())
    }

    /// Re-expresses the statistics relative to a new shift vector (exact up to rounding).
    /// All-or-nothing.
    pub fn reshift(&mut self, new_shift: &[f64]) -> Result<()> {
        let p = self.dim;
        if new_shift.len() != p {
            return Err(EtfError::Shape(format!(
                "shift has {} entries, dim={p}",
                new_shift.len()
            )));
        }
        if let Some((j, _)) = new_shift.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(EtfError::NonFinite {
                what: "shift".into(),
                row: 0,
                col: j,
            });
        }
        let Some(old) = self.shift.as_ref() else {
            // No samples: the shift is not used.
            return Ok(());
        };
        let delta: Vec<f64> = old.iter().zip(new_shift).map(|(a, b)| a - b).collect();
        let dd: f64 = delta.iter().map(|d| d * d).sum();
        let mut class_sums = self.sums.class_sums.clone();
        let mut class_sq_norms = self.sums.class_sq_norms.clone();
        let mut class_scatter = self.sums.class_scatter.clone();
        let mut scatter = self.sums.scatter.clone();
        let mut total = vec![0.0; p];
        for k in 0..self.num_classes {
            let n = self.sums.counts[k] as f64;
            let s = &mut class_sums[k * p..(k + 1) * p];
            let ds: f64 = s.iter().zip(&delta).map(|(a, b)| a * b).sum();
            if let Some(cs) = class_scatter.as_mut() {
                shift_scatter_lower(&mut cs[k * p * p..(k + 1) * p * p], s, n, &delta);
            }
            class_sq_norms[k] += 2.0 * ds + n * dd;
            for ((t, si), d) in total.iter_mut().zip(s.iter_mut()).zip(&delta) {
                *t += *si;
                *si += n * d;
            }
        }
        let nt = self.num_samples() as f64;
        shift_scatter_lower(&mut scatter, &total, nt, &delta);
        let fin = |v: &[f64]| v.iter().all(|x| x.is_finite());
        if !(fin(&class_sums)
            && fin(&class_sq_norms)
            && fin(&scatter)
            && class_scatter.as_deref().is_none_or(fin))
        {
            return Err(overflow_error());
        }
        self.sums.class_sums = class_sums;
        self.sums.class_sq_norms = class_sq_norms;
        self.sums.class_scatter = class_scatter;
        self.sums.scatter = scatter;
        self.shift = Some(new_shift.to_vec());
        Ok(())
    }

    /// Checks that `other` can be merged into `self`.
    pub fn check_compatible(&self, other: &CollapseStats) -> Result<()> {
        if self.num_classes != other.num_classes || self.dim != other.dim {
            return Err(EtfError::Incompatible(format!(
                "cannot merge statistics of (num_classes={}, dim={}) with (num_classes={}, dim={})",
                self.num_classes, self.dim, other.num_classes, other.dim
            )));
        }
        if self.tracks_class_scatter() != other.tracks_class_scatter() {
            return Err(EtfError::Incompatible(
                "cannot merge statistics with and without track_class_scatter".into(),
            ));
        }
        Ok(())
    }

    /// Adds `other` (re-expressed to this shift): the same as one pass over both inputs. The
    /// precision becomes the coarser of the two. All-or-nothing.
    pub fn merge(&mut self, other: &CollapseStats) -> Result<()> {
        self.check_compatible(other)?;
        let Some(other_shift) = other.shift.as_ref() else {
            return Ok(());
        };
        let Some(my_shift) = self.shift.clone() else {
            *self = other.clone();
            return Ok(());
        };
        let mut o = other.clone();
        if other_shift != &my_shift {
            o.reshift(&my_shift)?;
        }
        self.sums.check_add(&o.sums, None)?;
        self.sums.add(&o.sums, None);
        self.precision = Precision::coarser_opt(self.precision, o.precision);
        Ok(())
    }

    /// Checks every invariant of a state built from outside data (`from_parts`, `from_bytes`):
    /// finite values, a total count that fits in `u64`, a shift exactly when there are samples,
    /// no more zero rows than samples, non-negative squared norms and scatter diagonals, and
    /// all-zero sums for classes without samples. Returns a description of the first violation.
    fn check_invariants(&self) -> std::result::Result<(), String> {
        let p = self.dim;
        let mut n = 0u64;
        for &c in &self.sums.counts {
            n = n
                .checked_add(c)
                .ok_or("the class counts sum to more than 2^64 - 1")?;
        }
        if (n > 0) != self.shift.is_some() {
            return Err("a shift is required exactly when there are samples".into());
        }
        if (n > 0) != self.precision.is_some() {
            return Err("a precision is recorded exactly when there are samples".into());
        }
        let fields: [(&str, &[f64]); 6] = [
            ("shift", self.shift.as_deref().unwrap_or(&[])),
            ("class_sums", &self.sums.class_sums),
            ("class_sq_norms", &self.sums.class_sq_norms),
            ("class_unit_sums", &self.sums.class_unit_sums),
            ("scatter", &self.sums.scatter),
            (
                "class_scatter",
                self.sums.class_scatter.as_deref().unwrap_or(&[]),
            ),
        ];
        for (name, v) in fields {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(format!("{name} has a non-finite value at index {i}"));
            }
        }
        for k in 0..self.num_classes {
            if self.sums.class_zero_rows[k] > self.sums.counts[k] {
                return Err(format!("class {k} has more zero rows than samples"));
            }
            if self.sums.class_sq_norms[k] < 0.0 {
                return Err(format!("class {k} has a negative sum of squared norms"));
            }
            if self.sums.counts[k] == 0 {
                let row = k * p..(k + 1) * p;
                if self.sums.class_sq_norms[k] != 0.0
                    || self.sums.class_sums[row.clone()].iter().any(|&v| v != 0.0)
                    || self.sums.class_unit_sums[row].iter().any(|&v| v != 0.0)
                {
                    return Err(format!("class {k} has no samples but non-zero sums"));
                }
            }
        }
        if let Some(i) = (0..p).find(|&i| self.sums.scatter[i * p + i] < 0.0) {
            return Err(format!("the scatter has a negative diagonal entry at {i}"));
        }
        Ok(())
    }

    /// Statistics accumulated elsewhere (e.g. on a GPU by torch), validated. `scatter` is the full
    /// symmetric `p × p` matrix (row-major); only its lower triangle is kept. `precision` is
    /// the input precision (float64 when `None` and there are samples).
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        num_classes: usize,
        dim: usize,
        shift: Option<Vec<f64>>,
        counts: Vec<u64>,
        class_sums: Vec<f64>,
        class_sq_norms: Vec<f64>,
        class_unit_sums: Vec<f64>,
        class_zero_rows: Vec<u64>,
        scatter: Vec<f64>,
        precision: Option<Precision>,
    ) -> Result<Self> {
        let (k, p) = (num_classes, dim);
        let mut s = CollapseStats::new(k, p, false)?;
        let check = |name: &str, len: usize, want: usize| -> Result<()> {
            if len != want {
                return Err(EtfError::Shape(format!(
                    "{name} has {len} values, expected {want}"
                )));
            }
            Ok(())
        };
        check("counts", counts.len(), k)?;
        check("class_sums", class_sums.len(), k * p)?;
        check("class_sq_norms", class_sq_norms.len(), k)?;
        check("class_unit_sums", class_unit_sums.len(), k * p)?;
        check("class_zero_rows", class_zero_rows.len(), k)?;
        check("scatter", scatter.len(), p * p)?;
        if let Some(sh) = &shift {
            check("shift", sh.len(), p)?;
        }
        for (name, v) in [
            ("shift", shift.as_deref().unwrap_or(&[])),
            ("class_sums", &class_sums[..]),
            ("class_sq_norms", &class_sq_norms[..]),
            ("class_unit_sums", &class_unit_sums[..]),
            ("scatter", &scatter[..]),
        ] {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(EtfError::NonFinite {
                    what: name.into(),
                    row: i / p.max(1),
                    col: i % p.max(1),
                });
            }
        }
        let has_samples = counts.iter().any(|&c| c > 0);
        s.shift = shift;
        s.sums.counts = counts;
        s.sums.class_sums = class_sums;
        s.sums.class_sq_norms = class_sq_norms;
        s.sums.class_unit_sums = class_unit_sums;
        s.sums.class_zero_rows = class_zero_rows;
        s.precision = if has_samples {
            Some(precision.unwrap_or(Precision::F64))
        } else {
            None
        };
        for i in 0..p {
            for j in 0..=i {
                s.sums.scatter[i * p + j] = scatter[i * p + j];
            }
        }
        s.check_invariants().map_err(EtfError::Incompatible)?;
        Ok(s)
    }
}
