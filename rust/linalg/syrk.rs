//! The packed lower-triangular Gram `Xᵀ X` of the statistics pass (AVX-512, runtime-detected).
//!
//! A chunk of `m` shifted rows is written once, by the statistics pass itself, into *panels*
//! of `W` columns (`W` = 16 for f32, 8 for f64, one 512-bit register): element `(r, j)` lies at
//! `(j / W) · m · W + r · W + j % W`, columns past `p` are zero. The product then reads
//! every operand straight from that buffer: a register tile is `8` rows `i` (broadcast from
//! one panel) by `3 W` columns `j` (three panels, vector loads), 24 accumulators, formed over
//! `KC` rows in the input precision and added in f64 into the row-major lower triangle of
//! `acc` (so the accumulation across depth blocks and chunks is f64, as in the portable path).
//! Tiles cover only `j ≤ i + 7`; the store masks keep `j ≤ i` and `i < p`.
//!
//! Without AVX-512 the statistics pass keeps rows in row-major order and
//! [`Real::accumulate_gram`](crate::linalg::Real::accumulate_gram) (a blocked library GEMM) forms
//! the same sums.

/// Rows of one register-tile pass: products over `KC` rows accumulate in the input precision,
/// then are added in f64.
pub const KC: usize = 256;

/// Whether the AVX-512 kernels can run on this CPU (detected once, at run time).
pub fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Where the elements of an `m × p` chunk lie in a panel buffer of width `w`.
///
/// Rows are cut into blocks of [`KC`] rows; within a block, panel `g` (columns
/// `g·w .. g·w + w`) holds its rows one after the other, `w` values each, and consecutive
/// panels are one `w`-run apart more than their length (so the panels a tile reads do not
/// fall on the same cache sets). Columns past `p` hold zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PanelLayout {
    pub m: usize,
    pub p: usize,
    pub w: usize,
    groups: usize,
}

impl PanelLayout {
    pub fn new(m: usize, p: usize, w: usize) -> Self {
        PanelLayout {
            m,
            p,
            w,
            groups: p.div_ceil(w),
        }
    }
    /// Number of panels (`⌈p / w⌉`).
    pub fn groups(&self) -> usize {
        self.groups
    }
    /// Rows of the block starting at row `k0` (a multiple of `KC`).
    fn block_rows(&self, k0: usize) -> usize {
        KC.min(self.m - k0)
    }
    /// Distance between consecutive panels of the block starting at `k0`.
    #[inline(always)]
    pub fn panel_stride(&self, k0: usize) -> usize {
        (self.block_rows(k0) + 1) * self.w
    }
    /// Offset of row `r`, column `g · w` (the start of its `w`-run in panel `g`).
    #[inline(always)]
    pub fn offset(&self, r: usize, g: usize) -> usize {
        let k0 = r - r % KC;
        k0 * self.groups * self.w
            + (k0 / KC) * self.groups * self.w
            + g * self.panel_stride(k0)
            + (r - k0) * self.w
    }
    /// Offset of element `(r, j)`.
    #[inline(always)]
    pub fn index(&self, r: usize, j: usize) -> usize {
        self.offset(r, j / self.w) + j % self.w
    }
    /// Length of the buffer.
    pub fn len(&self) -> usize {
        if self.m == 0 {
            return 0;
        }
        let k0 = (self.m - 1) / KC * KC;
        self.offset(k0, 0) + self.groups * self.panel_stride(k0)
    }
    pub fn is_empty(&self) -> bool {
        self.m == 0
    }
}

/// Adds the lower triangle of `X[r0..r1]ᵀ X[r0..r1]` to `acc` (`p × p` row-major f64), `x`
/// holding the chunk in f32 panels of width 16 (`layout`). Returns `false` (and does nothing)
/// without AVX-512.
pub fn gram_lower_panels_f32(
    x: &[f32],
    layout: &PanelLayout,
    r0: usize,
    r1: usize,
    acc: &mut [f64],
) -> bool {
    let (m, p) = (layout.m, layout.p);
    assert!(layout.w == 16 && r0 <= r1 && r1 <= m && x.len() >= layout.len());
    assert!(acc.len() >= p * p);
    #[cfg(target_arch = "x86_64")]
    if avx512_available() {
        // SAFETY: AVX-512F is present; the sizes were checked above.
        unsafe { x86::gram_f32(x.as_ptr(), layout, r0, r1, acc.as_mut_ptr()) };
        return true;
    }
    false
}

/// The f64 counterpart of [`gram_lower_panels_f32`] (panels of width 8).
pub fn gram_lower_panels_f64(
    x: &[f64],
    layout: &PanelLayout,
    r0: usize,
    r1: usize,
    acc: &mut [f64],
) -> bool {
    let (m, p) = (layout.m, layout.p);
    assert!(layout.w == 8 && r0 <= r1 && r1 <= m && x.len() >= layout.len());
    assert!(acc.len() >= p * p);
    #[cfg(target_arch = "x86_64")]
    if avx512_available() {
        // SAFETY: AVX-512F is present; the sizes were checked above.
        unsafe { x86::gram_f64(x.as_ptr(), layout, r0, r1, acc.as_mut_ptr()) };
        return true;
    }
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{PanelLayout, KC};
    use std::arch::x86_64::*;

    /// Rows `i` of a tile (broadcast operand).
    pub(super) const MR: usize = 8;

    /// Where a tile's f64 sums go: element `(i, j)` is added at
    /// `acc[(i - i_base) · ldc + (j - j_base)]` for `i < i_end`, `j < j_end` and, when
    /// `lower`, `j ≤ i`.
    #[derive(Clone, Copy)]
    pub(super) struct Out {
        pub acc: *mut f64,
        pub ldc: usize,
        pub i_base: usize,
        pub j_base: usize,
        pub i_end: usize,
        pub j_end: usize,
        pub lower: bool,
    }
    const PF: usize = 24;

    /// Lane mask of the first `n` (≤ 8) lanes.
    #[inline(always)]
    fn mask8(n: usize) -> __mmask8 {
        ((1u32 << n.min(8)) - 1) as __mmask8
    }

    /// `acc[row .. row+8] += v` on the first `n` lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn add_masked_pd(row: *mut f64, v: __m512d, n: usize) {
        if n == 0 {
            return;
        }
        let k = mask8(n);
        let old = _mm512_maskz_loadu_pd(k, row);
        _mm512_mask_storeu_pd(row, k, _mm512_add_pd(old, v));
    }

    macro_rules! tile_fn {
        ($name:ident, $t:ty, $v:ty, $w:expr, $zero:ident, $load:ident, $set1:ident, $fma:ident,
         $store:ident) => {
            /// One `8 × NP·W` tile over `kc` rows: `a` points at row `k0` of the first column
            /// panel, `b` at row `k0` of the row panel (offset to the tile's first row), `ld`
            /// the panel stride; the sums of rows `i0..i0+8`, columns `j0..j0+NP·W` are added to
            /// `out` (see [`Out`]).
            #[inline]
            #[target_feature(enable = "avx512f")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $name<const NP: usize>(
                a: *const $t,
                b: *const $t,
                ld: usize,
                kc: usize,
                out: Out,
                i0: usize,
                j0: usize,
            ) {
                let mut c = [[$zero(); NP]; MR];
                let mut ap = a;
                let mut bp = b;
                for _ in 0..kc {
                    let mut av = [$zero(); NP];
                    for q in 0..NP {
                        av[q] = $load(ap.add(q * ld));
                        _mm_prefetch::<_MM_HINT_T0>(ap.add(q * ld + PF * $w) as *const i8);
                    }
                    for r in 0..MR {
                        let bb = $set1(*bp.add(r));
                        for q in 0..NP {
                            c[r][q] = $fma(av[q], bb, c[r][q]);
                        }
                    }
                    ap = ap.add($w);
                    bp = bp.add($w);
                }
                for r in 0..MR {
                    let i = i0 + r;
                    if i >= out.i_end {
                        break;
                    }
                    let row = out.acc.add((i - out.i_base) * out.ldc);
                    for q in 0..NP {
                        let jq = j0 + $w * q;
                        if jq >= out.j_end || (out.lower && jq > i) {
                            break;
                        }
                        let mut n = (out.j_end - jq).min($w);
                        if out.lower {
                            n = n.min(i - jq + 1);
                        }
                        $store(row.add(jq - out.j_base), c[r][q], n);
                    }
                }
            }
        };
    }

    /// Adds the 16 f32 lanes of `v` (first `n`) to `row[0..16]` in f64.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store_f32(row: *mut f64, v: __m512, n: usize) {
        let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
            _mm512_castps_pd(v),
        )));
        add_masked_pd(row, lo, n.min(8));
        add_masked_pd(row.add(8), hi, n.saturating_sub(8));
    }

    /// Adds the 8 f64 lanes of `v` (first `n`) to `row[0..8]`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store_f64(row: *mut f64, v: __m512d, n: usize) {
        add_masked_pd(row, v, n.min(8));
    }

    tile_fn!(
        tile_f32,
        f32,
        __m512,
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        store_f32
    );
    tile_fn!(
        tile_f64,
        f64,
        __m512d,
        8,
        _mm512_setzero_pd,
        _mm512_loadu_pd,
        _mm512_set1_pd,
        _mm512_fmadd_pd,
        store_f64
    );

    macro_rules! gram_fn {
        ($name:ident, $t:ty, $w:expr, $tile:ident) => {
            /// # Safety
            /// AVX-512F must be present; `x` holds the chunk in `layout` (width `W`), `acc` is
            /// `p × p`, `r0 ≤ r1 ≤ m`.
            #[target_feature(enable = "avx512f")]
            pub(super) unsafe fn $name(
                x: *const $t,
                layout: &PanelLayout,
                r0: usize,
                r1: usize,
                acc: *mut f64,
            ) {
                const W: usize = $w;
                let (p, groups) = (layout.p, layout.groups());
                let mut k = r0;
                while k < r1 {
                    // The rows k..k_end of one layout block.
                    let k0 = k - k % KC;
                    let k_end = r1.min(k0 + KC);
                    let (kc, ld) = (k_end - k, layout.panel_stride(k0));
                    let base = x.add(layout.offset(k, 0));
                    // Row blocks of 8 outside, column blocks of 3 panels inside: the 8 rows'
                    // run of the row panel stays in L1 while the column panels stream.
                    let out = Out {
                        acc,
                        ldc: p,
                        i_base: 0,
                        j_base: 0,
                        i_end: p,
                        j_end: p,
                        lower: true,
                    };
                    let mut i0 = 0;
                    while i0 < p {
                        let b = base.add((i0 / W) * ld + i0 % W);
                        let mut g0 = 0;
                        while g0 < groups && g0 * W < i0 + MR {
                            let np = 3.min(groups - g0);
                            let (a, j0) = (base.add(g0 * ld), g0 * W);
                            match np {
                                3 => $tile::<3>(a, b, ld, kc, out, i0, j0),
                                2 => $tile::<2>(a, b, ld, kc, out, i0, j0),
                                _ => $tile::<1>(a, b, ld, kc, out, i0, j0),
                            }
                            g0 += np;
                        }
                        i0 += MR;
                    }
                    k = k_end;
                }
            }
        };
    }

    gram_fn!(gram_f32, f32, 16, tile_f32);
    gram_fn!(gram_f64, f64, 8, tile_f64);

    /// # Safety
    /// AVX-512F must be present; `x` holds all `m` rows in `layout` (width 16); the ranges are
    /// checked by [`super::gram_block_panels_f32`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block_f32(
        x: *const f32,
        layout: &PanelLayout,
        (i_lo, i_hi): (usize, usize),
        (j_lo, j_hi): (usize, usize),
        acc: *mut f64,
        ldc: usize,
    ) {
        const W: usize = 16;
        let lower = j_hi > i_lo;
        let out = Out {
            acc,
            ldc,
            i_base: i_lo,
            j_base: j_lo,
            i_end: i_hi,
            j_end: j_hi,
            lower,
        };
        let (g_lo, g_hi) = (j_lo / W, j_hi.div_ceil(W));
        let mut k0 = 0;
        while k0 < layout.m {
            let (kc, ld) = (KC.min(layout.m - k0), layout.panel_stride(k0));
            let base = x.add(layout.offset(k0, 0));
            let mut i0 = i_lo;
            while i0 < i_hi {
                let b = base.add((i0 / W) * ld + i0 % W);
                let mut g0 = g_lo;
                while g0 < g_hi && (!lower || g0 * W < i0 + MR) {
                    let np = 3.min(g_hi - g0);
                    let (a, j0) = (base.add(g0 * ld), g0 * W);
                    match np {
                        3 => tile_f32::<3>(a, b, ld, kc, out, i0, j0),
                        2 => tile_f32::<2>(a, b, ld, kc, out, i0, j0),
                        _ => tile_f32::<1>(a, b, ld, kc, out, i0, j0),
                    }
                    g0 += np;
                }
                i0 += MR;
            }
            k0 += kc;
        }
    }
}

/// Adds `Σ_r X[r, i] X[r, j]` over all `m` rows, for `i` in `rows`, `j` in `cols` (and `j ≤ i`
/// where the block meets the diagonal), to `acc[(i - rows.0) · ldc + (j - cols.0)]`: a block
/// of the lower triangle of `XᵀX` (`p × p`, `p` the layout's column count) with `x` in f32
/// panels of width 16. Products are formed in f32 over runs of at most [`KC`] rows and each
/// run's sums added in f64 — the statistics pass's kernel, on a block of the output.
///
/// `rows.0` must be a multiple of 8 and `cols.0` of 16. Returns `false` (and does nothing)
/// without AVX-512.
pub fn gram_block_panels_f32(
    x: &[f32],
    layout: &PanelLayout,
    rows: (usize, usize),
    cols: (usize, usize),
    acc: &mut [f64],
    ldc: usize,
) -> bool {
    let ((i_lo, i_hi), (j_lo, j_hi)) = (rows, cols);
    assert!(layout.w == 16 && x.len() >= layout.len());
    assert!(i_lo % 8 == 0 && j_lo % 16 == 0 && i_lo <= i_hi && j_lo <= j_hi);
    assert!(i_hi <= layout.p && j_hi <= layout.p && j_hi - j_lo <= ldc);
    assert!(i_hi == i_lo || acc.len() >= (i_hi - i_lo - 1) * ldc + (j_hi - j_lo));
    #[cfg(target_arch = "x86_64")]
    if avx512_available() {
        // SAFETY: AVX-512F is present; the ranges and sizes were checked above.
        unsafe { x86::block_f32(x.as_ptr(), layout, rows, cols, acc.as_mut_ptr(), ldc) };
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack<T: Copy + Default>(x: &[T], l: &PanelLayout) -> Vec<T> {
        let mut out = vec![T::default(); l.len()];
        for r in 0..l.m {
            for j in 0..l.p {
                out[l.index(r, j)] = x[r * l.p + j];
            }
        }
        out
    }

    #[test]
    fn block_kernel_matches_naive_on_and_off_the_diagonal() {
        if !avx512_available() {
            return;
        }
        for &(m, p) in &[(1usize, 70usize), (300, 130), (513, 97), (256, 200)] {
            let x64: Vec<f64> = (0..m * p)
                .map(|i| ((i * 7919 % 113) as f64) / 50.0 - 1.0)
                .collect();
            let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
            let l = PanelLayout::new(m, p, 16);
            let packed = pack(&x32, &l);
            // diagonal blocks, off-diagonal blocks, ragged ends, an empty block
            for (rows, cols) in [
                ((0, p), (0, p)),
                ((16, 40), (0, 16)),
                ((64, p), (16, 64)),
                ((48, 56), (32, p)),
                ((8, 8), (0, 16)),
            ] {
                let ldc = cols.1 - cols.0 + 3;
                let mut acc = vec![0.25; (rows.1 - rows.0).max(1) * ldc];
                assert!(gram_block_panels_f32(
                    &packed, &l, rows, cols, &mut acc, ldc
                ));
                for i in rows.0..rows.1 {
                    for j in cols.0..cols.1 + 3 {
                        let got = acc[(i - rows.0) * ldc + (j - cols.0)];
                        if j >= cols.1 || j > i {
                            assert_eq!(got, 0.25, "untouched ({i}, {j})");
                            continue;
                        }
                        let want: f64 = 0.25
                            + (0..m)
                                .map(|r| x32[r * p + i] as f64 * x32[r * p + j] as f64)
                                .sum::<f64>();
                        // f32 products over runs of KC rows: |error| ≤ γ_KC Σ|x_i x_j|
                        let bound: f64 = 2.0
                            * (KC as f64)
                            * (f32::EPSILON as f64 / 2.0)
                            * (0..m)
                                .map(|r| (x32[r * p + i] as f64 * x32[r * p + j] as f64).abs())
                                .sum::<f64>();
                        assert!((got - want).abs() <= bound + 1e-12, "{m} {p} ({i}, {j})");
                    }
                }
            }
        }
    }

    #[test]
    fn panel_kernels_match_naive_on_ragged_shapes() {
        if !avx512_available() {
            return;
        }
        for &(m, p) in &[
            (1usize, 1usize),
            (3, 7),
            (300, 15),
            (257, 16),
            (40, 17),
            (513, 47),
            (600, 40),
            (9, 48),
            (20, 49),
            (64, 100),
            (33, 257),
        ] {
            let x64: Vec<f64> = (0..m * p)
                .map(|i| ((i * 7919 % 113) as f64) / 50.0 - 1.0)
                .collect();
            let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
            let (l64, l32) = (PanelLayout::new(m, p, 8), PanelLayout::new(m, p, 16));
            let (p64, p32) = (pack(&x64, &l64), pack(&x32, &l32));
            for (r0, r1) in [(0, m), (m / 3, m - m / 4)] {
                let mut a64 = vec![0.5; p * p];
                let mut a32 = vec![0.5; p * p];
                assert!(gram_lower_panels_f64(&p64, &l64, r0, r1, &mut a64));
                assert!(gram_lower_panels_f32(&p32, &l32, r0, r1, &mut a32));
                for i in 0..p {
                    for j in 0..p {
                        if j > i {
                            // The upper triangle is never touched.
                            assert_eq!((a64[i * p + j], a32[i * p + j]), (0.5, 0.5));
                            continue;
                        }
                        let want: f64 = 0.5
                            + (r0..r1)
                                .map(|r| x64[r * p + i] * x64[r * p + j])
                                .sum::<f64>();
                        let (g64, g32) = (a64[i * p + j], a32[i * p + j]);
                        assert!((g64 - want).abs() < 1e-10 * (1.0 + want.abs()), "{m} {p}");
                        assert!((g32 - want).abs() < 1e-4 * (1.0 + want.abs()), "{m} {p}");
                    }
                }
            }
        }
    }
}
