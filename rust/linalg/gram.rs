//! The portable lower-triangular Gram kernel (a blocked library GEMM in the input precision,
//! added in f64) and the element types features may have.

use super::syrk::PanelLayout;
use super::Precision;

/// Floating-point element types accepted for features (f32 and f64).
pub trait Real: Copy + Send + Sync + Default + PartialOrd + 'static {
    const NAME: &'static str;
    const PRECISION: Precision;
    /// Values per 512-bit register: the panel width of the AVX-512 Gram kernel.
    const LANES: usize;

    /// Adds the lower triangle of `X[r0..r1]ᵀ X[r0..r1]` to `acc` (`p × p`, f64), `x` holding
    /// the chunk in panels ([`super::syrk`]); `false` (nothing done) without AVX-512.
    fn gram_lower_panels(
        x: &[Self],
        layout: &PanelLayout,
        r0: usize,
        r1: usize,
        acc: &mut [f64],
    ) -> bool;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;

    /// `C (m×n) = α A (m×k) B (k×n) + β C` with arbitrary strides (matrixmultiply's s/dgemm).
    ///
    /// # Safety
    /// Every pointer/stride pair must address valid elements for the given sizes, and `c` must
    /// not alias `a` or `b`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );

    /// Adds the lower triangle (with diagonal) of `xᵀ x` to `acc` (`p × p`, row-major, f64),
    /// `x` being `m × p` row-major. The product of one chunk is formed in the input precision
    /// (the data are already shifted, so chunk sums are well scaled) by column blocks
    /// `C[j0.., j0..j0+b] = X[:, j0..]ᵀ X[:, j0..j0+b]` (about half the flops of the full
    /// product), then added in f64: f64 accumulation across chunks. `work` is scratch.
    fn accumulate_gram(x: &[Self], m: usize, p: usize, work: &mut Vec<Self>, acc: &mut [f64]) {
        assert!(x.len() >= m * p && acc.len() >= p * p);
        work.resize(p * p, Self::default());
        let mut j0 = 0;
        while j0 < p {
            let b = GRAM_BLOCK.min(p - j0);
            // SAFETY: the pointers address `x` (m × p) and `work` (p × p) within bounds; blocks of
            // `work` written by different iterations are disjoint.
            unsafe {
                Self::gemm(
                    p - j0,
                    m,
                    b,
                    Self::from_f64(1.0),
                    x.as_ptr().add(j0),
                    1,
                    p as isize,
                    x.as_ptr().add(j0),
                    p as isize,
                    1,
                    Self::from_f64(0.0),
                    work.as_mut_ptr().add(j0 * p + j0),
                    p as isize,
                    1,
                );
            }
            j0 += b;
        }
        add_lower(work, acc, p);
    }
}

/// Column-block width of the blocked triangular product.
const GRAM_BLOCK: usize = 128;

macro_rules! impl_real {
    ($t:ty, $name:literal, $prec:expr, $gemm:path, $lanes:expr, $panels:path) => {
        impl Real for $t {
            const NAME: &'static str = $name;
            const PRECISION: Precision = $prec;
            const LANES: usize = $lanes;
            fn gram_lower_panels(
                x: &[$t],
                layout: &PanelLayout,
                r0: usize,
                r1: usize,
                acc: &mut [f64],
            ) -> bool {
                $panels(x, layout, r0, r1, acc)
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            unsafe fn gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: $t,
                a: *const $t,
                rsa: isize,
                csa: isize,
                b: *const $t,
                rsb: isize,
                csb: isize,
                beta: $t,
                c: *mut $t,
                rsc: isize,
                csc: isize,
            ) {
                $gemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
            }
        }
    };
}

impl_real!(
    f32,
    "float32",
    Precision::F32,
    matrixmultiply::sgemm,
    16,
    super::syrk::gram_lower_panels_f32
);
impl_real!(
    f64,
    "float64",
    Precision::F64,
    matrixmultiply::dgemm,
    8,
    super::syrk::gram_lower_panels_f64
);

/// `acc[i, j] += work[i, j]` for `j ≤ i` (the upper triangle of `acc` stays untouched).
fn add_lower<T: Real>(work: &[T], acc: &mut [f64], p: usize) {
    for i in 0..p {
        let (src, dst) = (&work[i * p..i * p + i + 1], &mut acc[i * p..i * p + i + 1]);
        for (d, s) in dst.iter_mut().zip(src) {
            *d += s.to_f64();
        }
    }
}

/// Copies the lower triangle of a row-major `p × p` matrix to its upper triangle.
pub fn symmetrize_from_lower(a: &mut [f64], p: usize) {
    for i in 0..p {
        for j in 0..i {
            a[j * p + i] = a[i * p + j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_kernels_match_naive() {
        for &(m, p) in &[(1usize, 1usize), (7, 5), (300, 200), (33, 257)] {
            let x64: Vec<f64> = (0..m * p)
                .map(|i| ((i * 7919 % 113) as f64) / 50.0 - 1.0)
                .collect();
            let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
            let mut a64 = vec![0.0; p * p];
            let mut a32 = vec![0.0; p * p];
            f64::accumulate_gram(&x64, m, p, &mut vec![], &mut a64);
            f32::accumulate_gram(&x32, m, p, &mut vec![], &mut a32);
            for i in 0..p {
                for j in 0..=i {
                    let want: f64 = (0..m).map(|r| x64[r * p + i] * x64[r * p + j]).sum();
                    assert!((a64[i * p + j] - want).abs() < 1e-10 * (1.0 + want.abs()));
                    assert!((a32[i * p + j] - want).abs() < 1e-4 * (1.0 + want.abs()));
                }
            }
        }
    }
}
