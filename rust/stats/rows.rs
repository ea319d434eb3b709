//! The per-row work of the statistics pass: the shifted row written into the chunk buffer,
//! the class sums, and the unit-vector sums, in one branch-free loop (portable, or AVX-512
//! intrinsics where the CPU has them).

use crate::linalg::{Precision, Real};
use ndarray::ArrayView2;

/// Where one row goes in the chunk buffer: run `g` (columns `g·w .. g·w + w`) starts at
/// `base + g · stride` (row-major: one run of `w = p`).
#[derive(Clone, Copy)]
pub(crate) struct Runs {
    pub base: usize,
    pub stride: usize,
    pub w: usize,
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
pub(crate) fn row_kernel_dispatch<T: Real>(
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
pub(crate) const PREFETCH_ROWS: usize = 3;

/// Asks the CPU to bring row `i` of `h` into cache (contiguous rows only; a hint, never a
/// fault).
#[inline(always)]
pub(crate) fn prefetch_row<T: Real>(h: &ArrayView2<'_, T>, i: usize) {
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

/// `m += row` in f64 (vectorised with AVX-512 where available).
pub(crate) fn add_row<T: Real>(m: &mut [f64], row: &[T]) {
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
    if crate::linalg::syrk::avx512_available() {
        // SAFETY: AVX-512F was detected.
        return unsafe { body_avx512(m, row) };
    }
    body(m, row)
}

/// `‖v‖` of a row whose plain sum of squares overflowed or underflowed (scaled by `max |v|`).
pub(crate) fn scaled_norm<T: Real>(src: &[T]) -> f64 {
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
