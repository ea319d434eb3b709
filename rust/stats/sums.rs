//! [`Sums`]: the additive part of the statistics, shared by a pass's partial results and the
//! accumulated state, with the one "add, or change nothing" rule both use.

use crate::alloc::try_zeros;
use crate::error::{EtfError, Result};

/// Per-class sums and the scatter, over a list of class *slots*: all `K` classes in the state,
/// the classes present in a batch in a pass's partial (so a batch costs `O(min(K, N) · p)`
/// memory beside the scatter, not `O(K · p)` per worker). Everything relative to one shift `c`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sums {
    pub dim: usize,
    /// `n_k`.
    pub counts: Vec<u64>,
    /// `s_k = Σ (h_i - c)` (slots × p, row-major).
    pub class_sums: Vec<f64>,
    /// `q_k = Σ ‖h_i - c‖²`.
    pub class_sq_norms: Vec<f64>,
    /// `u_k = Σ h_i/‖h_i‖` (slots × p).
    pub class_unit_sums: Vec<f64>,
    /// All-zero rows per class (they have no direction).
    pub class_zero_rows: Vec<u64>,
    /// Lower triangle (row-major `p × p`) of `S = Σ (h_i - c)(h_i - c)ᵀ`, the upper triangle
    /// kept at zero; empty in a partial that does not want it.
    pub scatter: Vec<f64>,
    /// Lower triangles of the per-class `S_k` (slots × p × p), when tracked.
    pub class_scatter: Option<Vec<f64>>,
}

/// `a += b` element by element.
pub(crate) fn add_into(a: &mut [f64], b: &[f64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// Whether `a + b` is finite element by element (checked before committing a sum).
fn sum_finite(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| (x + y).is_finite())
}

/// The error of a sum that would leave the float64 range.
pub(crate) fn overflow_error() -> EtfError {
    EtfError::Numerical(
        "the statistics would overflow float64 (the squares of the features are too large); \
         rescale the features"
            .into(),
    )
}

impl Sums {
    /// Zeroed sums over `slots` classes; every buffer is allocated fallibly.
    pub fn zeros(slots: usize, p: usize, track: bool, want_scatter: bool) -> Result<Self> {
        Ok(Sums {
            dim: p,
            counts: try_zeros(slots, "class counts")?,
            class_sums: try_zeros(slots * p, "class sums")?,
            class_sq_norms: try_zeros(slots, "class norms")?,
            class_unit_sums: try_zeros(slots * p, "class unit-vector sums")?,
            class_zero_rows: try_zeros(slots, "class zero rows")?,
            scatter: if want_scatter {
                try_zeros(p * p, "the scatter")?
            } else {
                vec![]
            },
            class_scatter: if track {
                Some(try_zeros(slots * p * p, "per-class scatters")?)
            } else {
                None
            },
        })
    }

    /// Zeroed sums over `slots` classes in the buffers of `self` (grown fallibly where needed:
    /// reusing a buffer faults in no fresh pages).
    pub fn reset(&mut self, slots: usize, p: usize, track: bool, want_scatter: bool) -> Result<()> {
        fn zeroed(v: &mut Vec<f64>, len: usize, what: &str) -> Result<()> {
            v.clear();
            v.try_reserve_exact(len)
                .map_err(|_| EtfError::Dimension(format!("{what} cannot be allocated")))?;
            v.resize(len, 0.0);
            Ok(())
        }
        fn zeroed_u64(v: &mut Vec<u64>, len: usize) {
            v.clear();
            v.resize(len, 0);
        }
        self.dim = p;
        zeroed_u64(&mut self.counts, slots);
        zeroed_u64(&mut self.class_zero_rows, slots);
        zeroed(&mut self.class_sums, slots * p, "class sums")?;
        zeroed(&mut self.class_sq_norms, slots, "class norms")?;
        zeroed(
            &mut self.class_unit_sums,
            slots * p,
            "class unit-vector sums",
        )?;
        zeroed(
            &mut self.scatter,
            if want_scatter { p * p } else { 0 },
            "the scatter",
        )?;
        match (track, self.class_scatter.as_mut()) {
            (true, Some(cs)) => zeroed(cs, slots * p * p, "per-class scatters")?,
            (true, None) => {
                self.class_scatter = Some(try_zeros(slots * p * p, "per-class scatters")?)
            }
            (false, _) => self.class_scatter = None,
        }
        Ok(())
    }

    /// Bytes of the buffers' capacities.
    pub fn capacity_bytes(&self) -> usize {
        8 * (self.counts.capacity()
            + self.class_sums.capacity()
            + self.class_sq_norms.capacity()
            + self.class_unit_sums.capacity()
            + self.class_zero_rows.capacity()
            + self.scatter.capacity()
            + self.class_scatter.as_ref().map_or(0, |v| v.capacity()))
    }

    /// Whether every accumulated value is finite (finite inputs whose squares overflow are not).
    pub fn is_finite(&self) -> bool {
        let fin = |v: &[f64]| v.iter().all(|x| x.is_finite());
        fin(&self.class_sums)
            && fin(&self.class_sq_norms)
            && fin(&self.class_unit_sums)
            && fin(&self.scatter)
            && self.class_scatter.as_deref().is_none_or(fin)
    }

    /// The slot of `self` that slot `l` of another's sums goes to (`map[l]`, or `l` itself).
    fn slot(map: Option<&[usize]>, l: usize) -> usize {
        map.map_or(l, |m| m[l])
    }

    /// Checks that adding `o` (its slot `l` into slot `map[l]` of `self`) keeps every value
    /// finite and every count (and their total) within `u64`: the check before a commit, so a
    /// refused one changes nothing.
    pub fn check_add(&self, o: &Sums, map: Option<&[usize]>) -> Result<()> {
        let p = self.dim;
        let pp = p * p;
        let rows = |c: usize| c * p..(c + 1) * p;
        let finite = sum_finite(&self.scatter, &o.scatter)
            && (0..o.counts.len()).all(|l| {
                let c = Self::slot(map, l);
                sum_finite(&self.class_sums[rows(c)], &o.class_sums[rows(l)])
                    && sum_finite(&self.class_unit_sums[rows(c)], &o.class_unit_sums[rows(l)])
                    && (self.class_sq_norms[c] + o.class_sq_norms[l]).is_finite()
                    && match (self.class_scatter.as_ref(), o.class_scatter.as_ref()) {
                        (Some(a), Some(b)) => {
                            sum_finite(&a[c * pp..(c + 1) * pp], &b[l * pp..(l + 1) * pp])
                        }
                        _ => true,
                    }
            });
        if !finite {
            return Err(overflow_error());
        }
        let mut added = vec![0u64; self.counts.len()];
        for (l, &n) in o.counts.iter().enumerate() {
            added[Self::slot(map, l)] = n;
        }
        let total = self.counts.iter().zip(&added).try_fold(0u64, |t, (a, b)| {
            a.checked_add(*b).and_then(|c| t.checked_add(c))
        });
        if total.is_none() {
            return Err(EtfError::Incompatible(
                "the sample counts would overflow u64".into(),
            ));
        }
        Ok(())
    }

    /// `self += o` (slot `l` of `o` into slot `map[l]`); call [`check_add`](Self::check_add)
    /// first where it can fail.
    pub fn add(&mut self, o: &Sums, map: Option<&[usize]>) {
        let p = self.dim;
        let pp = p * p;
        let rows = |c: usize| c * p..(c + 1) * p;
        add_into(&mut self.scatter, &o.scatter);
        if map.is_none() {
            add_into(&mut self.class_sums, &o.class_sums);
            add_into(&mut self.class_unit_sums, &o.class_unit_sums);
            add_into(&mut self.class_sq_norms, &o.class_sq_norms);
            if let (Some(a), Some(b)) = (self.class_scatter.as_mut(), o.class_scatter.as_ref()) {
                add_into(a, b);
            }
        } else {
            for l in 0..o.counts.len() {
                let c = Self::slot(map, l);
                add_into(&mut self.class_sums[rows(c)], &o.class_sums[rows(l)]);
                add_into(
                    &mut self.class_unit_sums[rows(c)],
                    &o.class_unit_sums[rows(l)],
                );
                self.class_sq_norms[c] += o.class_sq_norms[l];
                if let (Some(a), Some(b)) = (self.class_scatter.as_mut(), o.class_scatter.as_ref())
                {
                    add_into(&mut a[c * pp..(c + 1) * pp], &b[l * pp..(l + 1) * pp]);
                }
            }
        }
        for l in 0..o.counts.len() {
            let c = Self::slot(map, l);
            self.counts[c] += o.counts[l];
            self.class_zero_rows[c] += o.class_zero_rows[l];
        }
    }
}
