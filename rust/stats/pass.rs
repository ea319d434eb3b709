//! One pass over a batch: validation, the label order, the per-row work and the chunk Gram
//! products, split over `rayon::current_num_threads()` workers, each with its own partial
//! [`Sums`]. Chunks of [`CHUNK_ROWS`] rows are visited in label order; each chunk's shifted rows
//! are copied once into a per-worker buffer (so any input strides work) — straight into the
//! packed kernel's panels with AVX-512, row-major for the portable blocked GEMM otherwise —
//! and its scatter is formed in the input precision, then added in f64. Nothing is written to
//! the state here: the caller validates the reduced partial and commits it.

use super::rows::{add_row, prefetch_row, row_kernel_dispatch, scaled_norm, Runs, PREFETCH_ROWS};
use super::sums::{add_into, Sums};
use super::CHUNK_ROWS;
use crate::alloc::try_zeros;
use crate::error::{EtfError, Result};
use crate::linalg::syrk::{avx512_available, PanelLayout};
use crate::linalg::Real;
use ndarray::{ArrayView1, ArrayView2};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Arc;

/// Checks shapes and labels of a batch; labels must lie in `0..num_classes`.
pub fn validate_batch<T>(
    h: &ArrayView2<'_, T>,
    y: &ArrayView1<'_, i64>,
    num_classes: usize,
    dim: usize,
) -> Result<()> {
    let (n, p) = h.dim();
    if p != dim {
        return Err(EtfError::Shape(format!(
            "features have {p} columns but the statistics were created with dim={dim}"
        )));
    }
    if y.len() != n {
        return Err(EtfError::Shape(format!(
            "features have {n} rows but labels have {} entries",
            y.len()
        )));
    }
    if let Some((i, &v)) = y
        .iter()
        .enumerate()
        .find(|(_, &v)| v < 0 || v as u64 >= num_classes as u64)
    {
        return Err(EtfError::Label(format!(
            "label {v} at index {i} is outside 0..{num_classes} (num_classes={num_classes})"
        )));
    }
    Ok(())
}

/// Column means of `h` in f64, checking finiteness. Rows are summed branch-free in fixed
/// blocks of `CHUNK_ROWS` (in parallel; the blocks are added in order, so the result does not
/// depend on the number of threads); a non-finite sum sends it to the checking path.
pub(crate) fn first_batch_mean<T: Real>(h: &ArrayView2<'_, T>, what: &str) -> Result<Vec<f64>> {
    let (n, p) = h.dim();
    let block_sum = |b: usize| -> Vec<f64> {
        let mut m = vec![0.0; p];
        for row in h.rows().into_iter().skip(b * CHUNK_ROWS).take(CHUNK_ROWS) {
            match row.as_slice() {
                Some(sl) => add_row(&mut m, sl),
                None => m
                    .iter_mut()
                    .zip(row.iter())
                    .for_each(|(a, v)| *a += v.to_f64()),
            }
        }
        m
    };
    let blocks: Vec<Vec<f64>> = (0..n.div_ceil(CHUNK_ROWS))
        .into_par_iter()
        .map(block_sum)
        .collect();
    let mut m = vec![0.0; p];
    for b in &blocks {
        add_into(&mut m, b);
    }
    if m.iter().all(|v| v.is_finite()) {
        for v in m.iter_mut() {
            *v /= n as f64;
        }
        return Ok(m);
    }
    for (i, row) in h.rows().into_iter().enumerate() {
        if let Some(j) = row.iter().position(|v| !v.to_f64().is_finite()) {
            return Err(EtfError::NonFinite {
                what: what.into(),
                row: i,
                col: j,
            });
        }
    }
    // The plain sum overflowed: sum the scaled values instead.
    m.iter_mut().for_each(|v| *v = 0.0);
    let inv = 1.0 / n as f64;
    for row in h.rows() {
        for (acc, v) in m.iter_mut().zip(row.iter()) {
            *acc += v.to_f64() * inv;
        }
    }
    Ok(m)
}

/// The first non-finite value of `h` in row-major order (the error path only).
fn first_non_finite<T: Real>(h: &ArrayView2<'_, T>) -> EtfError {
    for (i, row) in h.rows().into_iter().enumerate() {
        if let Some(j) = row.iter().position(|v| !v.to_f64().is_finite()) {
            return EtfError::NonFinite {
                what: "features".into(),
                row: i,
                col: j,
            };
        }
    }
    EtfError::NonFinite {
        what: "features".into(),
        row: 0,
        col: 0,
    }
}

/// Buffers of earlier passes (partial sums, chunk buffers), reused by the next pass of the
/// same state so that a stream of batches does not fault in fresh pages for them every time
/// (at `K = 50 000`, `p = 4096` that was a third of a batch's CPU time). It holds at most one
/// pass's working memory; it is derived data: equal states compare equal whatever it holds, and
/// a clone starts without it.
#[derive(Default)]
pub(crate) struct Scratch {
    sums: Vec<Sums>,
    /// Chunk buffers (a `Vec<f32>` or `Vec<f64>` each) with their sizes in bytes.
    bufs: Vec<(usize, Box<dyn Any + Send + Sync>)>,
}

impl Scratch {
    fn take_sums(&mut self) -> Option<Sums> {
        self.sums.pop()
    }
    fn take_buf<T: Real>(&mut self) -> Vec<T> {
        match self.bufs.iter().position(|(_, b)| b.is::<Vec<T>>()) {
            Some(i) => *self
                .bufs
                .swap_remove(i)
                .1
                .downcast::<Vec<T>>()
                .expect("checked type"),
            None => Vec::new(),
        }
    }
    /// Keeps `sums` for the next pass.
    pub fn give_sums(&mut self, sums: Sums) {
        self.sums.push(sums);
    }
    fn give_buf<T: Real>(&mut self, buf: Vec<T>) {
        if buf.capacity() > 0 {
            let bytes = buf.capacity() * std::mem::size_of::<T>();
            self.bufs.push((bytes, Box::new(buf)));
        }
    }
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        let sums: usize = self.sums.iter().map(Sums::capacity_bytes).sum();
        sums + self.bufs.iter().map(|(b, _)| b).sum::<usize>()
    }
}

impl Clone for Scratch {
    fn clone(&self) -> Self {
        Scratch::default()
    }
}

impl PartialEq for Scratch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Scratch({} partial sums, {} buffers)",
            self.sums.len(),
            self.bufs.len()
        )
    }
}

/// Options of one statistics pass.
pub(crate) struct PassOptions<'a> {
    pub track_class_scatter: bool,
    /// Multiply the rows of class k by `row_scale[k]` before the scatter product (so the
    /// scatter is `Σ_i row_scale[y_i]² (h_i - c)(h_i - c)ᵀ`); sums are unaffected.
    pub row_scale: Option<&'a [f64]>,
}

/// Per-worker partial statistics of one pass: [`Sums`] over the classes present in the batch
/// (`classes`, increasing) and the worker's chunk buffers.
pub(crate) struct Partial<T> {
    pub classes: Arc<Vec<usize>>,
    pub sums: Sums,
    buf: Vec<T>,
    work: Vec<T>,
}

impl<T: Real> Partial<T> {
    /// Zeroed partial statistics, reusing the buffers of an earlier pass where given; every
    /// buffer is grown fallibly (a worker's share of a large pass becomes a `Dimension` error,
    /// not an abort).
    fn new(
        classes: Arc<Vec<usize>>,
        p: usize,
        track: bool,
        want_scatter: bool,
        reuse: (Option<Sums>, Vec<T>),
    ) -> Result<Self> {
        let (old_sums, mut buf) = reuse;
        let want = PanelLayout::new(CHUNK_ROWS, p, T::LANES)
            .len()
            .max(CHUNK_ROWS * p);
        buf.clear();
        buf.try_reserve_exact(want)
            .map_err(|_| EtfError::Dimension("a chunk buffer cannot be allocated".into()))?;
        let sums = match old_sums {
            Some(mut s) => {
                s.reset(classes.len(), p, track, want_scatter)?;
                s
            }
            None => Sums::zeros(classes.len(), p, track, want_scatter)?,
        };
        Ok(Partial {
            classes,
            sums,
            buf,
            work: vec![],
        })
    }
}

/// The batch's row indices in label order (stable: consecutive rows then update the same
/// class rows of the `K × p` sums, which stay in cache; the scatter does not depend on the
/// order), its classes (increasing), and `local[c]`, the slot of class `c` in the partial sums.
fn label_order(y: &ArrayView1<'_, i64>, k: usize) -> Result<(Vec<usize>, Vec<usize>, Vec<u32>)> {
    let mut sorted: Vec<usize> = (0..y.len()).collect();
    sorted.sort_by_key(|&i| y[i]);
    let mut local = try_zeros::<u32>(k, "the class index")?;
    let mut classes = Vec::new();
    for &i in &sorted {
        let c = y[i] as usize;
        if classes.last() != Some(&c) {
            local[c] = classes.len() as u32;
            classes.push(c);
        }
    }
    Ok((sorted, classes, local))
}

/// What every worker of one pass reads.
struct Batch<'a, 'v, T> {
    h: &'a ArrayView2<'v, T>,
    y: &'a ArrayView1<'v, i64>,
    sorted: &'a [usize],
    local: &'a [u32],
    shift: &'a [f64],
    opts: &'a PassOptions<'a>,
    want_scatter: bool,
    /// The shifted rows go straight into the packed kernel's panels (AVX-512).
    panels: bool,
    /// AVX-512 row work.
    simd: bool,
}

/// The row work of one chunk (rows `order`, in label order): class sums, unit sums, squared
/// norms and counts into `part`, the shifted (and scaled) rows into its buffer. A non-finite
/// value is reported at its first position in row-major order.
fn accumulate_rows<T: Real>(
    b: &Batch<'_, '_, T>,
    part: &mut Partial<T>,
    order: &[usize],
    layout: Option<&PanelLayout>,
) -> Result<()> {
    let p = b.h.ncols();
    let mut rowbuf: Vec<T> = Vec::new();
    for (r, &i) in order.iter().enumerate() {
        if let Some(&ahead) = order.get(r + PREFETCH_ROWS) {
            // Rows are read in label order, which the hardware cannot predict.
            prefetch_row(b.h, ahead);
        }
        let cls = b.y[i] as usize;
        let lc = b.local[cls] as usize;
        let row = b.h.row(i);
        // Contiguous rows are read in place; strided rows are gathered once.
        let src: &[T] = match row.as_slice() {
            Some(sl) => sl,
            None => {
                rowbuf.clear();
                rowbuf.extend(row.iter().copied());
                &rowbuf
            }
        };
        let scale = b.opts.row_scale.map_or(1.0, |s| s[cls]);
        let runs = match layout {
            None => Runs {
                base: r * p,
                stride: p,
                w: p,
            },
            Some(l) => Runs {
                base: l.offset(r, 0),
                stride: l.offset(r, 1.min(l.groups() - 1)) - l.offset(r, 0),
                w: T::LANES,
            },
        };
        let sums = &mut part.sums;
        let (sq, raw_sq, unit_done) = row_kernel_dispatch(
            b.simd,
            src,
            b.shift,
            &mut sums.class_sums[lc * p..(lc + 1) * p],
            &mut sums.class_unit_sums[lc * p..(lc + 1) * p],
            &mut part.buf,
            runs,
            scale,
        );
        if !raw_sq.is_finite() && src.iter().any(|v| !v.to_f64().is_finite()) {
            return Err(first_non_finite(b.h));
        }
        sums.class_sq_norms[lc] += sq;
        sums.counts[lc] += 1;
        if !unit_done {
            // ‖src‖² overflowed or underflowed: the norm by rescaling.
            if !add_unit_rescaled(src, &mut sums.class_unit_sums[lc * p..(lc + 1) * p]) {
                sums.class_zero_rows[lc] += 1;
            }
        }
    }
    Ok(())
}

/// `unit += src/‖src‖` with the norm computed by rescaling; `false` (nothing added) for an
/// all-zero row.
fn add_unit_rescaled<T: Real>(src: &[T], unit: &mut [f64]) -> bool {
    let norm = scaled_norm(src);
    if !(norm > 0.0) {
        return false;
    }
    if norm >= 1e-140 {
        let inv = 1.0 / norm;
        for (u, &v) in unit.iter_mut().zip(src) {
            *u += v.to_f64() * inv;
        }
    } else {
        // 1/norm would overflow for subnormal rows.
        for (u, &v) in unit.iter_mut().zip(src) {
            *u += v.to_f64() / norm;
        }
    }
    true
}

/// Adds the Gram of the chunk's buffered rows to the partial scatter and, class run by class
/// run (the rows are in label order), to the per-class scatters.
fn chunk_scatter<T: Real>(
    b: &Batch<'_, '_, T>,
    part: &mut Partial<T>,
    order: &[usize],
    layout: Option<&PanelLayout>,
) {
    let p = b.h.ncols();
    let m = order.len();
    let gram = |buf: &[T], work: &mut Vec<T>, r0: usize, r1: usize, acc: &mut [f64]| match layout {
        Some(l) => {
            T::gram_lower_panels(buf, l, r0, r1, acc);
        }
        None => T::accumulate_gram(&buf[r0 * p..r1 * p], r1 - r0, p, work, acc),
    };
    if b.want_scatter {
        gram(&part.buf, &mut part.work, 0, m, &mut part.sums.scatter);
    }
    if let Some(cs) = part.sums.class_scatter.as_mut() {
        let mut start = 0;
        while start < m {
            let cls = b.y[order[start]] as usize;
            let lc = b.local[cls] as usize;
            let mut end = start;
            while end < m && b.y[order[end]] as usize == cls {
                end += 1;
            }
            gram(
                &part.buf,
                &mut part.work,
                start,
                end,
                &mut cs[lc * p * p..(lc + 1) * p * p],
            );
            start = end;
        }
    }
}

/// Worker `w` of `workers`: chunks `w, w + workers, …` of the label order.
fn worker<T: Real>(
    b: &Batch<'_, '_, T>,
    classes: Arc<Vec<usize>>,
    w: usize,
    workers: usize,
    reuse: (Option<Sums>, Vec<T>),
) -> Result<Partial<T>> {
    let (n, p) = b.h.dim();
    let nchunks = n.div_ceil(CHUNK_ROWS);
    let mut part = Partial::<T>::new(
        classes,
        p,
        b.opts.track_class_scatter,
        b.want_scatter,
        reuse,
    )?;
    let mut ci = w;
    while ci < nchunks {
        let r0 = ci * CHUNK_ROWS;
        let r1 = (r0 + CHUNK_ROWS).min(n);
        let order = &b.sorted[r0..r1];
        let layout = b.panels.then(|| PanelLayout::new(r1 - r0, p, T::LANES));
        part.buf.resize(
            layout.as_ref().map_or((r1 - r0) * p, |l| l.len()),
            T::default(),
        );
        accumulate_rows(b, &mut part, order, layout.as_ref())?;
        chunk_scatter(b, &mut part, order, layout.as_ref());
        ci += workers;
    }
    Ok(part)
}

/// One pass over `h` with shift `c`: the partial statistics (reduced over the workers), or the
/// first error in row order. Buffers come from `scratch` and the workers' go back to it; the
/// caller may give the returned sums back too.
pub(crate) fn pass<T: Real>(
    h: &ArrayView2<'_, T>,
    y: &ArrayView1<'_, i64>,
    num_classes: usize,
    shift: &[f64],
    opts: &PassOptions<'_>,
    want_scatter: bool,
    scratch: &mut Scratch,
) -> Result<Partial<T>> {
    let (n, p) = h.dim();
    let (sorted, classes, local) = label_order(y, num_classes)?;
    let classes = Arc::new(classes);
    let simd = avx512_available();
    let b = Batch {
        h,
        y,
        sorted: &sorted,
        local: &local,
        shift,
        opts,
        want_scatter,
        panels: (want_scatter || opts.track_class_scatter) && simd,
        simd,
    };
    let nchunks = n.div_ceil(CHUNK_ROWS);
    let workers = rayon::current_num_threads().clamp(1, nchunks.max(1));
    let reuse: Vec<(Option<Sums>, Vec<T>)> = (0..workers)
        .map(|_| (scratch.take_sums(), scratch.take_buf::<T>()))
        .collect();
    let results: Vec<Result<Partial<T>>> = reuse
        .into_par_iter()
        .enumerate()
        .map(|(w, r)| worker(&b, classes.clone(), w, workers, r))
        .collect();
    let mut parts = Vec::with_capacity(results.len());
    for r in results {
        parts.push(r?);
    }
    let mut it = parts.into_iter();
    let mut total = match it.next() {
        Some(t) => t,
        None => Partial::new(
            classes,
            p,
            opts.track_class_scatter,
            want_scatter,
            (scratch.take_sums(), scratch.take_buf::<T>()),
        )?,
    };
    for part in it {
        total.sums.add(&part.sums, None);
        scratch.give_sums(part.sums);
        scratch.give_buf(part.buf);
    }
    scratch.give_buf(std::mem::take(&mut total.buf));
    Ok(total)
}
