//! Streaming, mergeable sufficient statistics of labelled features.
//!
//! For a fixed shift vector `c` (the mean of the first non-empty batch) the state is
//! `n_k`, `s_k = Σ_{y_i=k} (h_i - c)`, `q_k = Σ_{y_i=k} ‖h_i - c‖²`, the scatter
//! `S = Σ_i (h_i - c)(h_i - c)ᵀ`, the per-class sums of unit vectors `u_k = Σ_{y_i=k} h_i/‖h_i‖`
//! (cosine metrics) and, optionally, per-class scatters `S_k` (balanced within-class covariance
//! on imbalanced data; `O(K p²)` memory). Everything is accumulated in f64. Memory is
//! `O(K p + p²)`, independent of the number of samples.
//!
//! One `update` is one pass over the batch, split into chunks of rows processed by
//! `rayon::current_num_threads()` workers, each with its own partial statistics; the chunk's
//! shifted rows are copied once into a per-worker buffer (so any input strides work) and the
//! scatter of a chunk is computed by a blocked triangular GEMM in the input precision, then
//! added in f64. The partials are validated and reduced before anything is written, so a
//! failed update leaves the state exactly as it was.

use crate::error::{check_dense_size, probe_alloc, try_zeros, EtfError, Result};
use crate::linalg::{symmetrize_from_lower, Precision, Real};
use crate::metrics::{ClassGeometry, Weighting};
use crate::syrk::PanelLayout;
use ndarray::{ArrayView1, ArrayView2};
use rayon::prelude::*;
use std::sync::{Arc, OnceLock};

/// Rows per chunk of the statistics pass.
pub const CHUNK_ROWS: usize = 1024;

/// Format version written by [`CollapseStats::to_bytes`] (version 1, without the precision
/// flag, is still read, as float64 statistics).
pub const FORMAT_VERSION: u32 = 2;
const MAGIC: &[u8; 8] = b"ETFCSTAT";
const FLAG_SHIFT: u32 = 1;
const FLAG_CLASS_SCATTER: u32 = 2;
/// Version 2: the statistics were built (at least partly) from float32 input.
const FLAG_FLOAT32: u32 = 4;

/// Class geometries computed from the current state, one per weighting; built on first use
/// (through `&self`, thread-safe) and dropped by every mutation.
#[derive(Debug, Clone, Default)]
struct GeometryCache {
    weighted: OnceLock<Arc<ClassGeometry>>,
    balanced: OnceLock<Arc<ClassGeometry>>,
}

/// Sufficient statistics of labelled features for every covariance metric.
///
/// Metrics read a cached [`ClassGeometry`] ([`geometry`](Self::geometry), `&self`); `update`,
/// `merge`, `reshift` and `attach_balanced_scatter` invalidate it.
#[derive(Debug, Clone)]
pub struct CollapseStats {
    num_classes: usize,
    dim: usize,
    shift: Option<Vec<f64>>,
    counts: Vec<u64>,
    class_sums: Vec<f64>,
    class_sq_norms: Vec<f64>,
    class_unit_sums: Vec<f64>,
    class_zero_rows: Vec<u64>,
    /// Lower triangle (row-major `p × p`) of `S`; the upper triangle is kept at zero.
    scatter: Vec<f64>,
    /// Lower triangles of the `S_k` (`K × p × p`), when tracked.
    class_scatter: Option<Vec<f64>>,
    /// Precision of the input (the coarsest seen); `None` before any sample.
    precision: Option<Precision>,
    /// `Σ_k S_k/n_k` (full `p × p`) computed from the very samples, for the balanced `Σ_W`.
    balanced_scatter: Option<Vec<f64>>,
    cache: GeometryCache,
}

impl PartialEq for CollapseStats {
    /// Equal statistics (the cache and the attached balanced scatter are derived data).
    fn eq(&self, o: &Self) -> bool {
        self.num_classes == o.num_classes
            && self.dim == o.dim
            && self.shift == o.shift
            && self.counts == o.counts
            && self.class_sums == o.class_sums
            && self.class_sq_norms == o.class_sq_norms
            && self.class_unit_sums == o.class_unit_sums
            && self.class_zero_rows == o.class_zero_rows
            && self.scatter == o.scatter
            && self.class_scatter == o.class_scatter
            && self.precision == o.precision
    }
}

/// Per-worker partial statistics of one pass. The per-class arrays hold only the classes
/// present in the batch (`classes`, increasing), so a batch costs `O(min(K, N) · p)` memory
/// beside the scatter, not `O(K · p)` per worker.
pub(crate) struct Partial<T> {
    classes: Arc<Vec<usize>>,
    counts: Vec<u64>,
    sums: Vec<f64>,
    sq: Vec<f64>,
    unit: Vec<f64>,
    zeros: Vec<u64>,
    pub(crate) scatter: Vec<f64>,
    class_scatter: Option<Vec<f64>>,
    buf: Vec<T>,
    work: Vec<T>,
}

impl<T: Real> Partial<T> {
    /// Whether every accumulated value is finite (finite inputs whose squares overflow are not).
    fn is_finite(&self) -> bool {
        let fin = |v: &[f64]| v.iter().all(|x| x.is_finite());
        fin(&self.sums)
            && fin(&self.sq)
            && fin(&self.unit)
            && fin(&self.scatter)
            && self.class_scatter.as_deref().is_none_or(fin)
    }

    /// Zeroed partial statistics; every buffer is allocated fallibly (a worker's share of a
    /// large pass becomes a `Dimension` error, not an abort).
    fn new(classes: Arc<Vec<usize>>, p: usize, track: bool, want_scatter: bool) -> Result<Self> {
        let k = classes.len();
        let mut buf = Vec::new();
        buf.try_reserve_exact(
            PanelLayout::new(CHUNK_ROWS, p, T::LANES)
                .len()
                .max(CHUNK_ROWS * p),
        )
        .map_err(|_| EtfError::Dimension("a chunk buffer cannot be allocated".into()))?;
        Ok(Partial {
            classes,
            counts: try_zeros(k, "partial counts")?,
            sums: try_zeros(k * p, "partial class sums")?,
            sq: try_zeros(k, "partial norms")?,
            unit: try_zeros(k * p, "partial unit sums")?,
            zeros: try_zeros(k, "partial zero rows")?,
            scatter: if want_scatter {
                try_zeros(p * p, "a partial scatter")?
            } else {
                vec![]
            },
            class_scatter: if track {
                Some(try_zeros(k * p * p, "partial per-class scatters")?)
            } else {
                None
            },
            buf,
            work: vec![],
        })
    }

    fn add(&mut self, o: &Partial<T>) {
        add_into(&mut self.sums, &o.sums);
        add_into(&mut self.sq, &o.sq);
        add_into(&mut self.unit, &o.unit);
        add_into(&mut self.scatter, &o.scatter);
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        for (a, b) in self.zeros.iter_mut().zip(&o.zeros) {
            *a += b;
        }
        if let (Some(a), Some(b)) = (self.class_scatter.as_mut(), o.class_scatter.as_ref()) {
            add_into(a, b);
        }
    }
}

fn add_into(a: &mut [f64], b: &[f64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// Options of one statistics pass.
pub(crate) struct PassOptions<'a> {
    pub track_class_scatter: bool,
    /// Multiply the rows of class k by `row_scale[k]` before the scatter product (so the
    /// scatter is `Σ_i row_scale[y_i]² (h_i - c)(h_i - c)ᵀ`); sums are unaffected.
    pub row_scale: Option<&'a [f64]>,
}

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
fn first_batch_mean<T: Real>(h: &ArrayView2<'_, T>, what: &str) -> Result<Vec<f64>> {
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

/// `m += row` in f64 (vectorised with AVX-512 where available).
fn add_row<T: Real>(m: &mut [f64], row: &[T]) {
    #[inline(always)]
    fn body<T: Real>(m: &mut [f64], row: &[T]) {
        for (a, v) in m.iter_mut().zip(row) {
            *a += v.to_f64();
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn body_avx512<T: Real>(m: &mut [f64], row: &[T]) {
        body(m, row)
    }
    #[cfg(target_arch = "x86_64")]
    if crate::syrk::avx512_available() {
        // SAFETY: AVX-512F was detected.
        return unsafe { body_avx512(m, row) };
    }
    body(m, row)
}

/// `‖v‖` of a row whose plain sum of squares overflowed or underflowed (scaled by `max |v|`).
fn scaled_norm<T: Real>(src: &[T]) -> f64 {
    let m = src.iter().fold(0.0f64, |a, v| a.max(v.to_f64().abs()));
    if m == 0.0 {
        return 0.0;
    }
    m * src
        .iter()
        .map(|v| (v.to_f64() / m).powi(2))
        .sum::<f64>()
        .sqrt()
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

/// Where one row goes in the chunk buffer: run `g` (columns `g·w .. g·w + w`) starts at
/// `base + g · stride` (row-major: one run of `w = p`).
#[derive(Clone, Copy)]
struct Runs {
    base: usize,
    stride: usize,
    w: usize,
}

/// The per-row work of the pass, branch-free so that it vectorises: writes
/// `(src[j] - shift[j]) · scale` (in `T`) into the buffer runs (zeros past `p` in the last run),
/// adds `src - shift` to the class sums and, when `‖src‖²` is finite and not tiny, `src/‖src‖`
/// to the unit sums. Returns `(‖src - shift‖², ‖src‖², whether the unit vector was added)`;
/// a NaN/Inf makes `‖src‖²` non-finite.
#[inline(always)]
fn row_kernel<T: Real>(
    src: &[T],
    shift: &[f64],
    sums: &mut [f64],
    unit: &mut [f64],
    buf: &mut [T],
    runs: Runs,
    scale: f64,
) -> (f64, f64, bool) {
    const L: usize = 8;
    let p = src.len();
    let (mut sq, mut raw) = ([0.0f64; L], [0.0f64; L]);
    let mut j0 = 0;
    let mut off = runs.base;
    while j0 < p {
        let j1 = (j0 + runs.w).min(p);
        let n = j1 - j0;
        let dst = &mut buf[off..off + runs.w];
        let (s, c, su) = (&src[j0..j1], &shift[j0..j1], &mut sums[j0..j1]);
        let mut blocks = s
            .chunks_exact(L)
            .zip(c.chunks_exact(L))
            .zip(su.chunks_exact_mut(L))
            .zip(dst[..n].chunks_exact_mut(L));
        for (((s, c), su), d) in &mut blocks {
            for l in 0..L {
                let v = s[l].to_f64();
                let x = v - c[l];
                su[l] += x;
                sq[l] += x * x;
                raw[l] += v * v;
                d[l] = T::from_f64(x * scale);
            }
        }
        let t = n - n % L;
        for l in t..n {
            let v = s[l].to_f64();
            let x = v - c[l];
            su[l] += x;
            sq[0] += x * x;
            raw[0] += v * v;
            dst[l] = T::from_f64(x * scale);
        }
        dst[n..].fill(T::default());
        j0 = j1;
        off += runs.stride;
    }
    let (sq, raw): (f64, f64) = (sq.iter().sum(), raw.iter().sum());
    // Squares of huge values overflow and of tiny ones underflow: the caller rescales then.
    let unit_done = raw.is_finite() && raw >= 1e-280;
    if unit_done {
        let inv = 1.0 / raw.sqrt();
        for (u, &v) in unit.iter_mut().zip(src) {
            *u += v.to_f64() * inv;
        }
    }
    (sq, raw, unit_done)
}

/// [`row_kernel`] in AVX-512 intrinsics (the same sums; `x²` and `v²` accumulate through
/// fused multiply-adds in eight f64 lanes).
///
/// # Safety
/// AVX-512F must be present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_kernel_avx512<T: Real>(
    src: &[T],
    shift: &[f64],
    sums: &mut [f64],
    unit: &mut [f64],
    buf: &mut [T],
    runs: Runs,
    scale: f64,
) -> (f64, f64, bool) {
    use std::arch::x86_64::*;
    let f32 = T::PRECISION == Precision::F32;
    // Eight values of `T` at `p` (lanes of `k`) as f64, and back.
    let load = |p: *const T, k: __mmask8| -> __m512d {
        if f32 {
            let v = _mm512_maskz_loadu_ps(k as __mmask16, p as *const f32);
            _mm512_cvtps_pd(_mm512_castps512_ps256(v))
        } else {
            _mm512_maskz_loadu_pd(k, p as *const f64)
        }
    };
    let store = |p: *mut T, k: __mmask8, v: __m512d| {
        if f32 {
            let v = _mm512_castps256_ps512(_mm512_cvtpd_ps(v));
            _mm512_mask_storeu_ps(p as *mut f32, k as __mmask16, v);
        } else {
            _mm512_mask_storeu_pd(p as *mut f64, k, v);
        }
    };
    let p = src.len();
    assert!(shift.len() >= p && sums.len() >= p && unit.len() >= p);
    assert!(runs.base + (p.div_ceil(runs.w) - 1) * runs.stride + runs.w <= buf.len());
    let (sp, cp, sup, up, bp) = (
        src.as_ptr(),
        shift.as_ptr(),
        sums.as_mut_ptr(),
        unit.as_mut_ptr(),
        buf.as_mut_ptr(),
    );
    let vscale = _mm512_set1_pd(scale);
    let (mut sq, mut raw) = (_mm512_setzero_pd(), _mm512_setzero_pd());
    let (mut j0, mut off) = (0, runs.base);
    while j0 < p {
        let n = runs.w.min(p - j0);
        let mut t = 0;
        while t < n {
            let k: __mmask8 = if t + 8 <= n {
                0xff
            } else {
                ((1u32 << (n - t)) - 1) as __mmask8
            };
            let j = j0 + t;
            let v = load(sp.add(j), k);
            let x = _mm512_sub_pd(v, _mm512_maskz_loadu_pd(k, cp.add(j)));
            let s = _mm512_add_pd(_mm512_maskz_loadu_pd(k, sup.add(j)), x);
            _mm512_mask_storeu_pd(sup.add(j), k, s);
            sq = _mm512_fmadd_pd(x, x, sq);
            raw = _mm512_fmadd_pd(v, v, raw);
            store(bp.add(off + t), k, _mm512_mul_pd(x, vscale));
            t += 8;
        }
        for l in n..runs.w {
            *bp.add(off + l) = T::default();
        }
        j0 += n;
        off += runs.stride;
    }
    let (sq, raw) = (_mm512_reduce_add_pd(sq), _mm512_reduce_add_pd(raw));
    let unit_done = raw.is_finite() && raw >= 1e-280;
    if unit_done {
        let inv = _mm512_set1_pd(1.0 / raw.sqrt());
        let mut j = 0;
        while j < p {
            let k: __mmask8 = if j + 8 <= p {
                0xff
            } else {
                ((1u32 << (p - j)) - 1) as __mmask8
            };
            let u = _mm512_fmadd_pd(load(sp.add(j), k), inv, _mm512_maskz_loadu_pd(k, up.add(j)));
            _mm512_mask_storeu_pd(up.add(j), k, u);
            j += 8;
        }
    }
    (sq, raw, unit_done)
}

/// [`row_kernel`] in the best instruction set available (`simd`: AVX-512 detected).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn row_kernel_dispatch<T: Real>(
    simd: bool,
    src: &[T],
    shift: &[f64],
    sums: &mut [f64],
    unit: &mut [f64],
    buf: &mut [T],
    runs: Runs,
    scale: f64,
) -> (f64, f64, bool) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is set only when AVX-512F was detected.
        return unsafe { row_kernel_avx512(src, shift, sums, unit, buf, runs, scale) };
    }
    let _ = simd;
    row_kernel(src, shift, sums, unit, buf, runs, scale)
}

/// How many rows ahead the pass asks for the row it will read.
const PREFETCH_ROWS: usize = 3;

/// Asks the CPU to bring row `i` of `h` into cache (contiguous rows only; a hint, never a
/// fault).
#[inline(always)]
fn prefetch_row<T: Real>(h: &ArrayView2<'_, T>, i: usize) {
    #[cfg(target_arch = "x86_64")]
    if h.ncols() == 1 || h.strides()[1] == 1 {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = h.row(i).as_ptr() as *const i8;
        let bytes = h.ncols() * std::mem::size_of::<T>();
        let mut off = 0;
        while off < bytes {
            // SAFETY: a prefetch never faults; the address lies inside the row.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(off)) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (h, i);
}

/// One pass over `h` with shift `c`: the partial statistics, or the first error in row order.
pub(crate) fn pass<T: Real>(
    h: &ArrayView2<'_, T>,
    y: &ArrayView1<'_, i64>,
    num_classes: usize,
    shift: &[f64],
    opts: &PassOptions<'_>,
    want_scatter: bool,
) -> Result<Partial<T>> {
    let (n, p) = h.dim();
    let k = num_classes;
    // Rows are visited in label order (stable): consecutive rows then update the same class
    // rows of the K × p sums, which stay in cache. The scatter does not depend on the order.
    let mut sorted: Vec<usize> = (0..n).collect();
    sorted.sort_by_key(|&i| y[i]);
    let sorted = &sorted;
    // The classes of the batch (increasing) and each one's row in the partial sums.
    let mut local = try_zeros::<u32>(k, "the class index")?;
    let mut classes = Vec::new();
    for &i in sorted {
        let c = y[i] as usize;
        if classes.last() != Some(&c) {
            local[c] = classes.len() as u32;
            classes.push(c);
        }
    }
    let classes = Arc::new(classes);
    let local = &local;
    let nchunks = n.div_ceil(CHUNK_ROWS);
    // With AVX-512 the shifted rows go straight into the Gram kernel's panels; otherwise
    // they are kept row-major for the portable blocked GEMM.
    let simd = crate::syrk::avx512_available();
    let panels = (want_scatter || opts.track_class_scatter) && simd;
    let workers = rayon::current_num_threads().clamp(1, nchunks.max(1));
    let results: Vec<Result<Partial<T>>> = (0..workers)
        .into_par_iter()
        .map(|w| {
            let mut part =
                Partial::<T>::new(classes.clone(), p, opts.track_class_scatter, want_scatter)?;
            let mut order: Vec<usize> = Vec::with_capacity(CHUNK_ROWS);
            let mut ci = w;
            while ci < nchunks {
                let r0 = ci * CHUNK_ROWS;
                let r1 = (r0 + CHUNK_ROWS).min(n);
                order.clear();
                order.extend_from_slice(&sorted[r0..r1]);
                let m = r1 - r0;
                let layout = panels.then(|| PanelLayout::new(m, p, T::LANES));
                part.buf
                    .resize(layout.map_or(m * p, |l| l.len()), T::default());
                let mut rowbuf: Vec<T> = Vec::new();
                for (r, &i) in order.iter().enumerate() {
                    if let Some(&ahead) = order.get(r + PREFETCH_ROWS) {
                        // Rows are read in label order, which the hardware cannot predict.
                        prefetch_row(h, ahead);
                    }
                    let cls = y[i] as usize;
                    let lc = local[cls] as usize;
                    let row = h.row(i);
                    // Contiguous rows are read in place; strided rows are gathered once.
                    let src: &[T] = match row.as_slice() {
                        Some(sl) => sl,
                        None => {
                            rowbuf.clear();
                            rowbuf.extend(row.iter().copied());
                            &rowbuf
                        }
                    };
                    let scale = opts.row_scale.map_or(1.0, |s| s[cls]);
                    let runs = match &layout {
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
                    let (sq, raw_sq, unit_done) = row_kernel_dispatch(
                        simd,
                        src,
                        shift,
                        &mut part.sums[lc * p..(lc + 1) * p],
                        &mut part.unit[lc * p..(lc + 1) * p],
                        &mut part.buf,
                        runs,
                        scale,
                    );
                    if !raw_sq.is_finite() && src.iter().any(|v| !v.to_f64().is_finite()) {
                        // Rows are visited in label order: report the first bad value row-major.
                        return Err(first_non_finite(h));
                    }
                    part.sq[lc] += sq;
                    part.counts[lc] += 1;
                    if unit_done {
                        continue;
                    }
                    // ‖src‖² overflowed or underflowed: the norm by rescaling.
                    let norm = scaled_norm(src);
                    if norm > 0.0 {
                        let unit = &mut part.unit[lc * p..(lc + 1) * p];
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
                    } else {
                        part.zeros[lc] += 1;
                    }
                }
                // The chunk's Gram over rows r0..r1 of the buffer, into `acc`.
                let gram = |buf: &[T], work: &mut Vec<T>, a: usize, b: usize, acc: &mut [f64]| {
                    match &layout {
                        Some(l) => {
                            T::gram_lower_panels(buf, l, a, b, acc);
                        }
                        None => T::accumulate_gram(&buf[a * p..b * p], b - a, p, work, acc),
                    }
                };
                if want_scatter {
                    gram(&part.buf, &mut part.work, 0, m, &mut part.scatter);
                }
                if let Some(cs) = part.class_scatter.as_mut() {
                    let mut start = 0;
                    while start < m {
                        let cls = y[order[start]] as usize;
                        let lc = local[cls] as usize;
                        let mut end = start;
                        while end < m && y[order[end]] as usize == cls {
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
                ci += workers;
            }
            Ok(part)
        })
        .collect();
    let mut parts = Vec::with_capacity(results.len());
    for r in results {
        parts.push(r?);
    }
    let mut it = parts.into_iter();
    let mut total = match it.next() {
        Some(t) => t,
        None => Partial::new(classes, p, opts.track_class_scatter, want_scatter)?,
    };
    for part in it {
        total.add(&part);
    }
    Ok(total)
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

/// Whether `a + b` is finite element by element (checked before committing a sum).
fn sum_finite(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| (x + y).is_finite())
}

fn overflow_error() -> EtfError {
    EtfError::Numerical(
        "the statistics would overflow float64 (the squares of the features are too large); \
         rescale the features"
            .into(),
    )
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
        crate::error::check_memory(values * 8, "these statistics")?;
        Ok(CollapseStats {
            num_classes: k,
            dim: p,
            shift: None,
            counts: try_zeros(k, "class counts")?,
            class_sums: try_zeros(k * p, "class sums")?,
            class_sq_norms: try_zeros(k, "class norms")?,
            class_unit_sums: try_zeros(k * p, "class unit-vector sums")?,
            class_zero_rows: try_zeros(k, "class zero rows")?,
            scatter: try_zeros(p * p, "the scatter")?,
            class_scatter: if track_class_scatter {
                Some(try_zeros(k * p * p, "per-class scatters")?)
            } else {
                None
            },
            precision: None,
            balanced_scatter: None,
            cache: GeometryCache::default(),
        })
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }
    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn tracks_class_scatter(&self) -> bool {
        self.class_scatter.is_some()
    }
    pub fn shift(&self) -> Option<&[f64]> {
        self.shift.as_deref()
    }
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }
    /// `N = Σ n_k` (validated not to overflow on every path that changes the counts).
    pub fn num_samples(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.saturating_add(c))
    }
    /// `s_k` (K × p row-major), relative to the shift.
    pub fn class_sums(&self) -> &[f64] {
        &self.class_sums
    }
    /// `q_k = Σ ‖h_i - c‖²` per class.
    pub fn class_sq_norms(&self) -> &[f64] {
        &self.class_sq_norms
    }
    /// `u_k = Σ h_i/‖h_i‖` per class (K × p).
    pub fn class_unit_sums(&self) -> &[f64] {
        &self.class_unit_sums
    }
    /// Number of all-zero rows seen per class (they have no direction; cosine metrics refuse them).
    pub fn class_zero_rows(&self) -> &[u64] {
        &self.class_zero_rows
    }
    /// The full symmetric scatter `S` (p × p row-major), relative to the shift.
    pub fn scatter(&self) -> Vec<f64> {
        let mut s = self.scatter.clone();
        symmetrize_from_lower(&mut s, self.dim);
        s
    }
    /// The full symmetric `S_k` (p × p), when tracked.
    pub fn class_scatter(&self, k: usize) -> Option<Vec<f64>> {
        let p = self.dim;
        if k >= self.num_classes {
            return None;
        }
        self.class_scatter.as_ref().map(|cs| {
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
        let n = self.counts[k];
        if n == 0 {
            return Err(EtfError::Degenerate(format!("class {k} has no samples")));
        }
        let p = self.dim;
        let m: Vec<f64> = self.class_sums[k * p..(k + 1) * p]
            .iter()
            .map(|v| v / n as f64)
            .collect();
        Ok((0..p * p)
            .map(|ij| s[ij] / n as f64 - m[ij / p] * m[ij % p])
            .collect())
    }

    /// Class means `μ_k` as a `K × p` row-major matrix; rows of classes without samples are NaN.
    pub fn class_means(&self) -> Result<Vec<f64>> {
        let g = self.geometry(Weighting::Weighted)?;
        let p = self.dim;
        let mut out = try_zeros(self.num_classes * p, "the class means")?;
        out.iter_mut().for_each(|v| *v = f64::NAN);
        for (j, &c) in g.present.iter().enumerate() {
            for i in 0..p {
                out[c * p + i] = g.class_means[(i, j)];
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
    /// The attached balanced scatter `Σ_k S_k/n_k`, if any.
    pub fn balanced_scatter(&self) -> Option<&[f64]> {
        self.balanced_scatter.as_deref()
    }

    /// The class geometry under `weighting`, computed once per state and cached (thread-safe;
    /// every mutation drops the cache).
    pub fn geometry(&self, weighting: Weighting) -> Result<Arc<ClassGeometry>> {
        let cell = match weighting {
            Weighting::Weighted => &self.cache.weighted,
            Weighting::Balanced => &self.cache.balanced,
        };
        if let Some(g) = cell.get() {
            return Ok(g.clone());
        }
        let g = Arc::new(ClassGeometry::new(
            self,
            weighting,
            self.balanced_scatter.as_deref(),
        )?);
        Ok(cell.get_or_init(|| g).clone())
    }

    fn invalidate(&mut self) {
        self.cache = GeometryCache::default();
        self.balanced_scatter = None;
    }

    /// Computes and keeps `Σ_k S_k/n_k` from the very samples of these statistics (one pass),
    /// which makes the balanced `Σ_W` available on imbalanced classes.
    pub fn attach_balanced_scatter<T: Real>(
        &mut self,
        h: ArrayView2<'_, T>,
        y: ArrayView1<'_, i64>,
    ) -> Result<()> {
        let s = crate::samples::balanced_scatter(self, h, y)?;
        self.cache.balanced = OnceLock::new();
        self.balanced_scatter = Some(s);
        Ok(())
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
        let shift = new_shift
            .as_deref()
            .or(self.shift.as_deref())
            .expect("shift set");
        if !shift.iter().all(|v| v.is_finite()) {
            return Err(overflow_error());
        }
        let opts = PassOptions {
            track_class_scatter: self.class_scatter.is_some(),
            row_scale: None,
        };
        let part = pass(&h, &y, self.num_classes, shift, &opts, true)?;
        if part.is_finite() {
            return self.commit(&part, new_shift, T::PRECISION);
        }
        if T::PRECISION == Precision::F32 {
            // The float32 product overflowed: redo this batch in float64 (one copy of it).
            let (n, p) = h.dim();
            probe_alloc(8 * n as u128 * p as u128, "a float64 copy of the batch")?;
            let h64 = h.mapv(|v| v.to_f64());
            let part = pass(&h64.view(), &y, self.num_classes, shift, &opts, true)?;
            if part.is_finite() {
                return self.commit(&part, new_shift, T::PRECISION);
            }
        }
        Err(overflow_error())
    }

    fn commit<T: Real>(
        &mut self,
        part: &Partial<T>,
        new_shift: Option<Vec<f64>>,
        precision: Precision,
    ) -> Result<()> {
        let p = self.dim;
        let pp = p * p;
        let rows = |c: usize| c * p..(c + 1) * p;
        let ok = sum_finite(&self.scatter, &part.scatter)
            && part.classes.iter().enumerate().all(|(l, &c)| {
                sum_finite(&self.class_sums[rows(c)], &part.sums[rows(l)])
                    && sum_finite(&self.class_unit_sums[rows(c)], &part.unit[rows(l)])
                    && (self.class_sq_norms[c] + part.sq[l]).is_finite()
                    && match (self.class_scatter.as_ref(), part.class_scatter.as_ref()) {
                        (Some(a), Some(b)) => {
                            sum_finite(&a[c * pp..(c + 1) * pp], &b[l * pp..(l + 1) * pp])
                        }
                        _ => true,
                    }
            });
        if !ok {
            return Err(overflow_error());
        }
        let mut dense = vec![0u64; self.num_classes];
        for (l, &c) in part.classes.iter().enumerate() {
            dense[c] = part.counts[l];
        }
        let counts = add_counts(&self.counts, &dense)?;
        // Commit: nothing below can fail.
        if let Some(s) = new_shift {
            self.shift = Some(s);
        }
        self.counts = counts;
        add_into(&mut self.scatter, &part.scatter);
        for (l, &c) in part.classes.iter().enumerate() {
            add_into(&mut self.class_sums[rows(c)], &part.sums[rows(l)]);
            add_into(&mut self.class_unit_sums[rows(c)], &part.unit[rows(l)]);
            self.class_sq_norms[c] += part.sq[l];
            self.class_zero_rows[c] += part.zeros[l];
            if let (Some(a), Some(b)) = (self.class_scatter.as_mut(), part.class_scatter.as_ref()) {
                add_into(&mut a[c * pp..(c + 1) * pp], &b[l * pp..(l + 1) * pp]);
            }
        }
        self.precision = Precision::coarser_opt(self.precision, Some(precision));
        self.invalidate();
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
        let mut class_sums = self.class_sums.clone();
        let mut class_sq_norms = self.class_sq_norms.clone();
        let mut class_scatter = self.class_scatter.clone();
        let mut scatter = self.scatter.clone();
        let mut total = vec![0.0; p];
        for k in 0..self.num_classes {
            let n = self.counts[k] as f64;
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
        self.class_sums = class_sums;
        self.class_sq_norms = class_sq_norms;
        self.class_scatter = class_scatter;
        self.scatter = scatter;
        self.shift = Some(new_shift.to_vec());
        self.invalidate();
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
            self.invalidate();
            return Ok(());
        };
        let mut o = other.clone();
        if other_shift != &my_shift {
            o.reshift(&my_shift)?;
        }
        let ok = sum_finite(&self.class_sums, &o.class_sums)
            && sum_finite(&self.class_sq_norms, &o.class_sq_norms)
            && sum_finite(&self.class_unit_sums, &o.class_unit_sums)
            && sum_finite(&self.scatter, &o.scatter)
            && match (self.class_scatter.as_ref(), o.class_scatter.as_ref()) {
                (Some(a), Some(b)) => sum_finite(a, b),
                _ => true,
            };
        if !ok {
            return Err(overflow_error());
        }
        let counts = add_counts(&self.counts, &o.counts)?;
        let zeros = add_counts(&self.class_zero_rows, &o.class_zero_rows)?;
        self.counts = counts;
        self.class_zero_rows = zeros;
        add_into(&mut self.class_sums, &o.class_sums);
        add_into(&mut self.class_sq_norms, &o.class_sq_norms);
        add_into(&mut self.class_unit_sums, &o.class_unit_sums);
        add_into(&mut self.scatter, &o.scatter);
        if let (Some(a), Some(b)) = (self.class_scatter.as_mut(), o.class_scatter.as_ref()) {
            add_into(a, b);
        }
        self.precision = Precision::coarser_opt(self.precision, o.precision);
        self.invalidate();
        Ok(())
    }

    /// Checks every invariant of a state built from outside data (`from_parts`, `from_bytes`):
    /// finite values, a total count that fits in `u64`, a shift exactly when there are samples,
    /// no more zero rows than samples, non-negative squared norms and scatter diagonals, and
    /// all-zero sums for classes without samples. Returns a description of the first violation.
    fn check_invariants(&self) -> std::result::Result<(), String> {
        let p = self.dim;
        let mut n = 0u64;
        for &c in &self.counts {
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
            ("class_sums", &self.class_sums),
            ("class_sq_norms", &self.class_sq_norms),
            ("class_unit_sums", &self.class_unit_sums),
            ("scatter", &self.scatter),
            (
                "class_scatter",
                self.class_scatter.as_deref().unwrap_or(&[]),
            ),
        ];
        for (name, v) in fields {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(format!("{name} has a non-finite value at index {i}"));
            }
        }
        for k in 0..self.num_classes {
            if self.class_zero_rows[k] > self.counts[k] {
                return Err(format!("class {k} has more zero rows than samples"));
            }
            if self.class_sq_norms[k] < 0.0 {
                return Err(format!("class {k} has a negative sum of squared norms"));
            }
            if self.counts[k] == 0 {
                let row = k * p..(k + 1) * p;
                if self.class_sq_norms[k] != 0.0
                    || self.class_sums[row.clone()].iter().any(|&v| v != 0.0)
                    || self.class_unit_sums[row].iter().any(|&v| v != 0.0)
                {
                    return Err(format!("class {k} has no samples but non-zero sums"));
                }
            }
        }
        if let Some(i) = (0..p).find(|&i| self.scatter[i * p + i] < 0.0) {
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
        s.counts = counts;
        s.class_sums = class_sums;
        s.class_sq_norms = class_sq_norms;
        s.class_unit_sums = class_unit_sums;
        s.class_zero_rows = class_zero_rows;
        s.precision = if has_samples {
            Some(precision.unwrap_or(Precision::F64))
        } else {
            None
        };
        for i in 0..p {
            for j in 0..=i {
                s.scatter[i * p + j] = scatter[i * p + j];
            }
        }
        s.check_invariants().map_err(EtfError::Incompatible)?;
        Ok(s)
    }

    /// Serialises to a versioned little-endian format with an FNV-1a checksum.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (k, p) = (self.num_classes, self.dim);
        let mut out = Vec::with_capacity(64 + 8 * (3 * k * p + p * p / 2 + 4 * k + p));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let mut flags = 0u32;
        if self.shift.is_some() {
            flags |= FLAG_SHIFT;
        }
        if self.class_scatter.is_some() {
            flags |= FLAG_CLASS_SCATTER;
        }
        if self.precision == Some(Precision::F32) {
            flags |= FLAG_FLOAT32;
        }
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&(k as u64).to_le_bytes());
        out.extend_from_slice(&(p as u64).to_le_bytes());
        let put = |out: &mut Vec<u8>, v: &[f64]| {
            v.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()))
        };
        if let Some(s) = &self.shift {
            put(&mut out, s);
        }
        self.counts
            .iter()
            .for_each(|c| out.extend_from_slice(&c.to_le_bytes()));
        put(&mut out, &self.class_sums);
        put(&mut out, &self.class_sq_norms);
        put(&mut out, &self.class_unit_sums);
        self.class_zero_rows
            .iter()
            .for_each(|c| out.extend_from_slice(&c.to_le_bytes()));
        let lower = |out: &mut Vec<u8>, s: &[f64]| {
            for i in 0..p {
                for j in 0..=i {
                    out.extend_from_slice(&s[i * p + j].to_le_bytes());
                }
            }
        };
        lower(&mut out, &self.scatter);
        if let Some(cs) = &self.class_scatter {
            for c in 0..k {
                lower(&mut out, &cs[c * p * p..(c + 1) * p * p]);
            }
        }
        let sum = fnv1a(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Parses bytes written by [`to_bytes`](Self::to_bytes) (format version 1 or 2), validating
    /// the header with checked arithmetic, the length, the checksum and every invariant of the
    /// state before anything is allocated or returned.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let corrupt = |m: &str| EtfError::Corrupt(format!("invalid CollapseStats bytes: {m}"));
        if bytes.len() < 40 {
            return Err(corrupt(&format!(
                "{} bytes is too short for the header",
                bytes.len()
            )));
        }
        if &bytes[..8] != MAGIC {
            return Err(corrupt("wrong magic (not an etfcore CollapseStats blob)"));
        }
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
        let version = u32_at(8);
        if version != 1 && version != FORMAT_VERSION {
            return Err(EtfError::Incompatible(format!(
                "CollapseStats format version {version} is not supported (this etfcore reads \
                 versions 1 to {FORMAT_VERSION})"
            )));
        }
        let flags = u32_at(12);
        let known = if version == 1 {
            FLAG_SHIFT | FLAG_CLASS_SCATTER
        } else {
            FLAG_SHIFT | FLAG_CLASS_SCATTER | FLAG_FLOAT32
        };
        if flags & !known != 0 {
            return Err(corrupt(&format!("unknown flags {flags:#x}")));
        }
        let (k64, p64) = (u64_at(16), u64_at(24));
        if k64 == 0 || p64 == 0 {
            return Err(corrupt(&format!(
                "implausible num_classes={k64}, dim={p64}"
            )));
        }
        let has_shift = flags & FLAG_SHIFT != 0;
        let track = flags & FLAG_CLASS_SCATTER != 0;
        // Sizes in u128: no product of header fields can wrap.
        let (k, p) = (k64 as u128, p64 as u128);
        let tri = p * (p + 1) / 2;
        let words = (if has_shift { p } else { 0 })
            + 3 * k // counts, squared norms, zero rows
            + 2 * k * p // class sums, unit sums
            + tri
            + if track { k * tri } else { 0 };
        let expected = 32 + 8 * words + 8;
        if bytes.len() as u128 != expected {
            return Err(corrupt(&format!(
                "length {} but the header implies {expected}",
                bytes.len()
            )));
        }
        // Every size is now bounded by the length of the input.
        let (k, p, tri) = (k as usize, p as usize, tri as usize);
        check_dense_size(p, p, "the scatter")?;
        if track {
            check_dense_size(k * p, p, "the per-class scatters")?;
        }
        let body = &bytes[..bytes.len() - 8];
        if fnv1a(body) != u64_at(bytes.len() - 8) {
            return Err(corrupt("checksum mismatch (truncated or modified)"));
        }
        let mut rd = Reader { bytes, off: 32 };
        let shift = if has_shift { Some(rd.f64s(p)?) } else { None };
        let counts = rd.u64s(k);
        let class_sums = rd.f64s(k * p)?;
        let class_sq_norms = rd.f64s(k)?;
        let class_unit_sums = rd.f64s(k * p)?;
        let class_zero_rows = rd.u64s(k);
        let unpack = |v: Vec<f64>| -> Result<Vec<f64>> {
            let mut s = try_zeros(p * p, "the scatter")?;
            let mut it = v.into_iter();
            for i in 0..p {
                for j in 0..=i {
                    s[i * p + j] = it.next().unwrap_or(0.0);
                }
            }
            Ok(s)
        };
        let scatter = unpack(rd.f64s(tri)?)?;
        let class_scatter = if track {
            let mut cs = Vec::new();
            cs.try_reserve_exact(k * p * p)
                .map_err(|_| corrupt("per-class scatters too large to allocate"))?;
            for _ in 0..k {
                cs.extend(unpack(rd.f64s(tri)?)?);
            }
            Some(cs)
        } else {
            None
        };
        let has_samples = counts.iter().any(|&c| c > 0);
        let precision = match (has_samples, flags & FLAG_FLOAT32 != 0) {
            (false, false) => None,
            (false, true) => return Err(corrupt("a precision flag without samples")),
            (true, true) => Some(Precision::F32),
            (true, false) => Some(Precision::F64),
        };
        let s = CollapseStats {
            num_classes: k,
            dim: p,
            shift,
            counts,
            class_sums,
            class_sq_norms,
            class_unit_sums,
            class_zero_rows,
            scatter,
            class_scatter,
            precision,
            balanced_scatter: None,
            cache: GeometryCache::default(),
        };
        s.check_invariants().map_err(|m| corrupt(&m))?;
        Ok(s)
    }
}

/// `a + b` element by element, refusing counts that would overflow `u64`.
fn add_counts(a: &[u64], b: &[u64]) -> Result<Vec<u64>> {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.checked_add(*y))
        .collect::<Option<Vec<u64>>>()
        .filter(|v| v.iter().try_fold(0u64, |s, &c| s.checked_add(c)).is_some())
        .ok_or_else(|| EtfError::Incompatible("the sample counts would overflow u64".into()))
}

struct Reader<'a> {
    bytes: &'a [u8],
    off: usize,
}

impl Reader<'_> {
    fn u64s(&mut self, n: usize) -> Vec<u64> {
        let b = &self.bytes[self.off..self.off + 8 * n];
        self.off += 8 * n;
        b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
    fn f64s(&mut self, n: usize) -> Result<Vec<f64>> {
        let v: Vec<f64> = self.u64s(n).into_iter().map(f64::from_bits).collect();
        if v.iter().any(|x| !x.is_finite()) {
            return Err(EtfError::Corrupt(
                "invalid CollapseStats bytes: non-finite value".into(),
            ));
        }
        Ok(v)
    }
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{self, ClassGeometry, VciNormalizer, Weighting};
    use ndarray::{Array1, Array2};

    fn data(n: usize, p: usize, k: usize, seed: u64) -> (Array2<f64>, Array1<i64>) {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        let y: Array1<i64> = (0..n).map(|i| (i % k) as i64).collect();
        let means: Vec<f64> = (0..k * p).map(|_| 4.0 * next()).collect();
        let h = Array2::from_shape_fn((n, p), |(i, j)| 100.0 + means[(i % k) * p + j] + next());
        (h, y)
    }

    /// Direct two-pass reference of the weighted Σ_W.
    fn naive_within(h: &Array2<f64>, y: &Array1<i64>, k: usize) -> Array2<f64> {
        let (n, p) = h.dim();
        let mut mu = Array2::<f64>::zeros((k, p));
        let mut cnt = vec![0.0; k];
        for i in 0..n {
            let c = y[i] as usize;
            cnt[c] += 1.0;
            for j in 0..p {
                mu[[c, j]] += h[[i, j]];
            }
        }
        for c in 0..k {
            for j in 0..p {
                mu[[c, j]] /= cnt[c];
            }
        }
        Array2::from_shape_fn((p, p), |(a, b)| {
            (0..n)
                .map(|i| {
                    (h[[i, a]] - mu[[y[i] as usize, a]]) * (h[[i, b]] - mu[[y[i] as usize, b]])
                })
                .sum::<f64>()
                / n as f64
        })
    }

    #[test]
    fn within_matches_naive_for_both_precisions() {
        let (h, y) = data(2500, 9, 4, 1);
        let want = naive_within(&h, &y, 4);
        let mut s = CollapseStats::new(4, 9, false).unwrap();
        s.update(h.view(), y.view()).unwrap();
        let g = ClassGeometry::new(&s, Weighting::Weighted, None).unwrap();
        let h32 = h.mapv(|v| v as f32);
        let mut s32 = CollapseStats::new(4, 9, false).unwrap();
        s32.update(h32.view(), y.view()).unwrap();
        let g32 = ClassGeometry::new(&s32, Weighting::Weighted, None).unwrap();
        for a in 0..9 {
            for b in 0..9 {
                assert!((g.within.as_ref().unwrap()[(a, b)] - want[[a, b]]).abs() < 1e-10);
                assert!((g32.within.as_ref().unwrap()[(a, b)] - want[[a, b]]).abs() < 2e-4);
            }
        }
    }

    #[test]
    fn merge_and_streaming_equal_one_pass() {
        let (h, y) = data(3000, 6, 3, 2);
        let mut one = CollapseStats::new(3, 6, true).unwrap();
        one.update(h.view(), y.view()).unwrap();
        let mut a = CollapseStats::new(3, 6, true).unwrap();
        let mut b = CollapseStats::new(3, 6, true).unwrap();
        a.update(
            h.slice(ndarray::s![..1000, ..]),
            y.slice(ndarray::s![..1000]),
        )
        .unwrap();
        b.update(
            h.slice(ndarray::s![1000.., ..]),
            y.slice(ndarray::s![1000..]),
        )
        .unwrap();
        b.merge(&a).unwrap(); // different shifts
        let (g1, g2) = (
            ClassGeometry::new(&one, Weighting::Balanced, None).unwrap(),
            ClassGeometry::new(&b, Weighting::Balanced, None).unwrap(),
        );
        let v1 = metrics::vci(&g1, VciNormalizer::MinDimClasses, None, None)
            .unwrap()
            .value;
        let v2 = metrics::vci(&g2, VciNormalizer::MinDimClasses, None, None)
            .unwrap()
            .value;
        assert!((v1 - v2).abs() < 1e-10, "{v1} {v2}");
        assert_eq!(one.counts(), b.counts());
    }

    #[test]
    fn bytes_round_trip_and_corruption() {
        let (h, y) = data(500, 5, 3, 3);
        let mut s = CollapseStats::new(3, 5, false).unwrap();
        s.update(h.view(), y.view()).unwrap();
        let bytes = s.to_bytes();
        assert_eq!(CollapseStats::from_bytes(&bytes).unwrap(), s);
        let mut bad = bytes.clone();
        bad[100] ^= 1;
        assert!(matches!(
            CollapseStats::from_bytes(&bad),
            Err(EtfError::Corrupt(_))
        ));
        assert!(matches!(
            CollapseStats::from_bytes(&bytes[..bytes.len() - 1]),
            Err(EtfError::Corrupt(_))
        ));
    }

    #[test]
    fn failed_update_is_atomic() {
        let (mut h, y) = data(3000, 4, 2, 4);
        let mut s = CollapseStats::new(2, 4, false).unwrap();
        s.update(h.slice(ndarray::s![..10, ..]), y.slice(ndarray::s![..10]))
            .unwrap();
        let before = s.clone();
        h[[2900, 2]] = f64::NAN;
        let e = s.update(h.view(), y.view()).unwrap_err();
        assert_eq!(
            e,
            EtfError::NonFinite {
                what: "features".into(),
                row: 2900,
                col: 2
            }
        );
        assert_eq!(s, before);
        let bad_y: Array1<i64> = y.mapv(|v| if v == 1 { 2 } else { v });
        assert!(matches!(
            s.update(h.view(), bad_y.view()),
            Err(EtfError::Label(_))
        ));
        assert_eq!(s, before);
    }

    /// A blob with a valid checksum (the attacker recomputes it) and the given header fields.
    fn crafted(version: u32, flags: u32, k: u64, p: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&k.to_le_bytes());
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(body);
        let sum = fnv1a(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    #[test]
    fn crafted_blobs_are_refused_without_panicking() {
        // Header sizes whose products wrap in usize.
        for (k, p) in [
            (1u64 << 32, 1u64 << 24),
            (u64::MAX, u64::MAX),
            (3, 1u64 << 40),
        ] {
            let b = crafted(2, FLAG_CLASS_SCATTER | FLAG_SHIFT, k, p, &[0u8; 64]);
            assert!(matches!(
                CollapseStats::from_bytes(&b),
                Err(EtfError::Corrupt(_))
            ));
        }
        // Valid layout, counts whose sum wraps u64.
        let mut s = CollapseStats::new(2, 1, false).unwrap();
        let (h, y) = data(4, 1, 2, 1);
        s.update(h.view(), y.view()).unwrap();
        let mut b = s.to_bytes();
        let off = 32 + 8; // after the header and the shift (p = 1)
        b[off..off + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        b[off + 8..off + 16].copy_from_slice(&2u64.to_le_bytes());
        let n = b.len();
        let sum = fnv1a(&b[..n - 8]);
        b[n - 8..].copy_from_slice(&sum.to_le_bytes());
        assert!(matches!(
            CollapseStats::from_bytes(&b),
            Err(EtfError::Corrupt(_))
        ));
        // Samples without a shift.
        let e = CollapseStats::new(2, 1, false).unwrap().to_bytes();
        let mut body = e[32..e.len() - 8].to_vec();
        body[..8].copy_from_slice(&5u64.to_le_bytes());
        assert!(matches!(
            CollapseStats::from_bytes(&crafted(2, 0, 2, 1, &body)),
            Err(EtfError::Corrupt(_))
        ));
        // Unknown version.
        assert!(matches!(
            CollapseStats::from_bytes(&crafted(9, 0, 2, 1, &body)),
            Err(EtfError::Incompatible(_))
        ));
    }

    #[test]
    fn version_1_reads_as_float64_and_float32_round_trips() {
        let (h, y) = data(50, 3, 2, 5);
        let h32 = h.mapv(|v| v as f32);
        let mut s = CollapseStats::new(2, 3, false).unwrap();
        s.update(h32.view(), y.view()).unwrap();
        assert_eq!(s.precision(), Some(Precision::F32));
        let b = s.to_bytes();
        assert_eq!(CollapseStats::from_bytes(&b).unwrap(), s);
        // The same body under version 1 without the float32 flag is float64.
        let flags = u32::from_le_bytes(b[12..16].try_into().unwrap()) & !FLAG_FLOAT32;
        let v1 = crafted(1, flags, 2, 3, &b[32..b.len() - 8]);
        let r = CollapseStats::from_bytes(&v1).unwrap();
        assert_eq!(r.precision(), Some(Precision::F64));
        assert_eq!(r.counts(), s.counts());
        // Version 1 never had the float32 flag.
        let bad = crafted(1, flags | FLAG_FLOAT32, 2, 3, &b[32..b.len() - 8]);
        assert!(CollapseStats::from_bytes(&bad).is_err());
    }

    #[test]
    fn overflowing_squares_are_refused_or_computed_safely() {
        // float64 values whose squares overflow: refused, state unchanged.
        let (h, y) = data(40, 3, 2, 6);
        let mut s = CollapseStats::new(2, 3, false).unwrap();
        s.update(h.view(), y.view()).unwrap();
        let before = s.clone();
        let big = h.mapv(|v| v * 1e200);
        assert!(matches!(
            s.update(big.view(), y.view()),
            Err(EtfError::Numerical(_))
        ));
        assert_eq!(s, before);
        let mut fresh = CollapseStats::new(2, 3, false).unwrap();
        assert!(fresh.update(big.view(), y.view()).is_err());
        assert_eq!(fresh, CollapseStats::new(2, 3, false).unwrap());
        // float32 values whose float32 products overflow: computed in float64 instead.
        let h32 = h.mapv(|v| (v * 1e18) as f32);
        let mut s32 = CollapseStats::new(2, 3, false).unwrap();
        s32.update(h32.view(), y.view()).unwrap();
        let h64 = h32.mapv(|v| v as f64);
        let mut s64 = CollapseStats::new(2, 3, false).unwrap();
        s64.update(h64.view(), y.view()).unwrap();
        let scale = s64.scatter().iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (a, b) in s32.scatter().iter().zip(s64.scatter()) {
            assert!(a.is_finite() && (a - b).abs() <= 1e-5 * scale);
        }
        // float32 near its maximum: finite statistics.
        let top = h.mapv(|v| (v.signum() * 3e38) as f32);
        let mut st = CollapseStats::new(2, 3, false).unwrap();
        st.update(top.view(), y.view()).unwrap();
        assert!(st.scatter().iter().all(|v| v.is_finite()));
    }

    #[test]
    fn subnormal_and_huge_rows_keep_their_direction() {
        let h = ndarray::arr2(&[[1e-310, 0.0], [0.0, 2e-310], [1e150, 1e150], [-1e150, 0.0]]);
        let y = ndarray::arr1(&[0i64, 0, 1, 1]);
        let mut s = CollapseStats::new(2, 2, false).unwrap();
        s.update(h.view(), y.view()).unwrap();
        assert_eq!(s.class_zero_rows(), &[0, 0]);
        let u = s.class_unit_sums();
        let r = 0.5f64.sqrt();
        let want = [1.0, 1.0, r - 1.0, r];
        for (a, b) in u.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{u:?}");
        }
    }

    /// The portable row work (used without AVX-512) against the AVX-512 one and a plain loop,
    /// for row-major runs and for panel runs with a ragged last panel.
    #[test]
    fn portable_and_avx512_row_work_agree() {
        let p = 37;
        let src: Vec<f32> = (0..p)
            .map(|j| (j as f32 * 0.37).sin() * 3.0 + 1.0)
            .collect();
        let shift: Vec<f64> = (0..p).map(|j| 0.5 + j as f64 * 0.01).collect();
        let want: Vec<f64> = (0..p).map(|j| src[j] as f64 - shift[j]).collect();
        let norm = src.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        for runs in [
            Runs {
                base: 0,
                stride: p,
                w: p,
            },
            Runs {
                base: 3,
                stride: 17,
                w: 16,
            },
        ] {
            let mut outs = vec![];
            for simd in [false, true] {
                if simd && !crate::syrk::avx512_available() {
                    continue;
                }
                let (mut sums, mut unit) = (vec![1.0; p], vec![0.0; p]);
                let mut buf = vec![9.0f32; 3 + 17 * 3];
                let (sq, raw, done) = row_kernel_dispatch(
                    simd, &src, &shift, &mut sums, &mut unit, &mut buf, runs, 2.0,
                );
                assert!(done);
                assert!((sq - want.iter().map(|x| x * x).sum::<f64>()).abs() < 1e-9);
                assert!((raw - norm * norm).abs() < 1e-9);
                for j in 0..p {
                    assert!((sums[j] - 1.0 - want[j]).abs() < 1e-12);
                    assert!((unit[j] - src[j] as f64 / norm).abs() < 1e-12);
                    let at = runs.base + (j / runs.w) * runs.stride + j % runs.w;
                    assert_eq!(buf[at], (want[j] * 2.0) as f32);
                }
                if runs.w == 16 {
                    // Zeros past p in the last panel.
                    assert!(buf[3 + 2 * 17 + 5..3 + 2 * 17 + 16]
                        .iter()
                        .all(|&v| v == 0.0));
                }
                outs.push((sums, unit, buf));
            }
            if outs.len() == 2 {
                assert_eq!(outs[0].2, outs[1].2);
            }
        }
    }

    #[test]
    fn merging_a_copy_of_itself_doubles() {
        let (h, y) = data(100, 4, 3, 7);
        let mut s = CollapseStats::new(3, 4, false).unwrap();
        s.update(h.view(), y.view()).unwrap();
        let copy = s.clone();
        s.merge(&copy).unwrap();
        let mut twice = CollapseStats::new(3, 4, false).unwrap();
        twice.update(h.view(), y.view()).unwrap();
        twice.update(h.view(), y.view()).unwrap();
        assert_eq!(s.counts(), twice.counts());
        for (a, b) in s.scatter().iter().zip(twice.scatter()) {
            assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()));
        }
    }
}
