//! Dense kernels: the blocked lower-triangular gram used by the statistics pass, and the
//! pseudo-inverse policy (symmetric eigendecomposition with an explicit threshold,
//! or the top `r` eigenvalues; a Cholesky fast path that is taken only when it provably keeps
//! every eigenvalue, so it gives the same result as the eigendecomposition).

use crate::error::{EtfError, Result};
use faer::linalg::triangular_inverse::invert_lower_triangular;
use faer::{Mat, MatRef, Par, Side};

/// The floating-point precision statistics were built from: it sets the default
/// pseudo-inverse threshold `rtol = n · eps(precision)` (float32 input carries float32 rounding,
/// which an f64 cut would keep as rank).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Precision {
    F32,
    F64,
}

impl Precision {
    /// Machine epsilon of the precision.
    pub fn eps(self) -> f64 {
        match self {
            Precision::F32 => f32::EPSILON as f64,
            Precision::F64 => f64::EPSILON,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "float32",
            Precision::F64 => "float64",
        }
    }
    /// The coarser of two precisions (what merged statistics carry).
    pub fn coarser(self, other: Precision) -> Precision {
        self.min(other)
    }
    /// The coarser of two optional precisions (`None`: no input seen yet).
    pub fn coarser_opt(a: Option<Precision>, b: Option<Precision>) -> Option<Precision> {
        match (a, b) {
            (Some(x), Some(y)) => Some(x.coarser(y)),
            (x, None) => x,
            (None, y) => y,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = EtfError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "float32" => Ok(Precision::F32),
            "float64" => Ok(Precision::F64),
            _ => Err(EtfError::Parameter(format!(
                "precision must be 'float32' or 'float64', got {s:?}"
            ))),
        }
    }
}

/// Floating-point element types accepted for features (f32 and f64).
pub trait Real: Copy + Send + Sync + Default + PartialOrd + 'static {
    const NAME: &'static str;
    const PRECISION: Precision;
    /// Values per 512-bit register: the panel width of the AVX-512 Gram kernel.
    const LANES: usize;

    /// Adds the lower triangle of `X[r0..r1]ᵀ X[r0..r1]` to `acc` (`p × p`, f64), `x` holding
    /// the chunk in panels ([`crate::syrk`]); `false` (nothing done) without AVX-512.
    fn gram_lower_panels(
        x: &[Self],
        layout: &crate::syrk::PanelLayout,
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
                layout: &crate::syrk::PanelLayout,
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
    crate::syrk::gram_lower_panels_f32
);
impl_real!(
    f64,
    "float64",
    Precision::F64,
    matrixmultiply::dgemm,
    8,
    crate::syrk::gram_lower_panels_f64
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

/// How many eigenvalues a pseudo-inverse keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RankPolicy {
    /// Keep eigenvalues `> rtol · λ_max`; `None` means the default `rtol = n · eps(f64)`.
    Rtol(Option<f64>),
    /// Keep exactly the `r` largest eigenvalues (each must be positive).
    Top(usize),
}

impl RankPolicy {
    /// The default `rtol = n · eps(f64)` of a float64 matrix of size `n`.
    pub fn default_rtol(n: usize) -> f64 {
        Self::default_rtol_for(n, Precision::F64)
    }

    /// The default `rtol = n · eps(precision)`.
    pub fn default_rtol_for(n: usize, precision: Precision) -> f64 {
        n.max(1) as f64 * precision.eps()
    }

    /// The policy of the user-facing `(rank, rtol)` options: at most one of them; `rtol` finite
    /// and `>= 0`.
    pub fn from_options(rank: Option<usize>, rtol: Option<f64>) -> Result<Self> {
        match (rank, rtol) {
            (Some(_), Some(_)) => Err(EtfError::Parameter(
                "give either rank or rtol, not both".into(),
            )),
            (Some(r), None) => Ok(RankPolicy::Top(r)),
            (None, Some(t)) if !(t >= 0.0 && t.is_finite()) => Err(EtfError::Parameter(format!(
                "rtol must be finite and >= 0, got {t}"
            ))),
            (None, t) => Ok(RankPolicy::Rtol(t)),
        }
    }

    /// Replaces a default threshold by `rtol = n · eps(precision)`.
    pub fn resolve(self, n: usize, precision: Precision) -> Self {
        match self {
            RankPolicy::Rtol(None) => RankPolicy::Rtol(Some(Self::default_rtol_for(n, precision))),
            other => other,
        }
    }
}

/// Which factorisation produced a pseudo-inverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinvMethod {
    Eigh,
    Cholesky,
}

impl PinvMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            PinvMethod::Eigh => "eigh",
            PinvMethod::Cholesky => "cholesky",
        }
    }
}

/// Pseudo-inverse of a symmetric PSD matrix `A` (`n × n`) held as a factor `F` with
/// `A^† = Fᵀ F`: `F = Λ_r^{-1/2} V_rᵀ` (r × n) from the eigendecomposition, or `F = L^{-1}`
/// from `A = L Lᵀ` on the fast path.
#[derive(Debug, Clone)]
pub struct SymPinv {
    factor: Mat<f64>,
    pub rank: usize,
    pub method: PinvMethod,
    /// Largest eigenvalue (eigh) or the upper bound of it that the Cholesky path used.
    pub lambda_max: f64,
    /// Threshold actually applied (`rtol · λ_max`), 0 for the `Top` policy.
    pub threshold: f64,
}

/// Scale `s = max |a_ij|` (lower triangle) used to bring a symmetric matrix to unit size
/// before factorising it, so that spectra far below 1e-300 or above 1e300 neither lose their
/// threshold to underflow nor stop the eigensolver from converging; 1 for a zero or
/// non-finite matrix.
fn sym_scale(a: MatRef<'_, f64>) -> f64 {
    let n = a.nrows();
    let mut s: f64 = 0.0;
    for j in 0..n {
        for i in j..n {
            s = s.max(a[(i, j)].abs());
        }
    }
    if s > 0.0 && s.is_finite() {
        s
    } else {
        1.0
    }
}

/// Eigendecomposition of `a / s` (`s` from [`sym_scale`]): `(values of a / s, vectors, s)`.
fn sym_eig_desc_scaled(a: MatRef<'_, f64>) -> Result<(Vec<f64>, Mat<f64>, f64)> {
    let n = a.nrows();
    if n == 0 {
        return Ok((vec![], Mat::zeros(0, 0), 1.0));
    }
    let s = sym_scale(a);
    let scaled = Mat::from_fn(n, n, |i, j| a[(i, j)] / s);
    let evd = scaled
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| EtfError::Numerical(format!("symmetric eigendecomposition failed: {e:?}")))?;
    let ev = evd.S().column_vector();
    let u = evd.U();
    let vals: Vec<f64> = (0..n).rev().map(|i| ev[i]).collect();
    let vecs = Mat::from_fn(n, n, |i, j| u[(i, n - 1 - j)]);
    Ok((vals, vecs, s))
}

/// Eigendecomposition of a symmetric matrix, eigenvalues in decreasing order (only the lower
/// triangle is read). The matrix is divided by its largest entry before the solver runs and
/// the eigenvalues multiplied back, so the result does not depend on the overall scale.
pub fn sym_eig_desc(a: MatRef<'_, f64>) -> Result<(Vec<f64>, Mat<f64>)> {
    let (vals, vecs, s) = sym_eig_desc_scaled(a)?;
    Ok((vals.into_iter().map(|v| v * s).collect(), vecs))
}

/// Number of leading entries of a decreasing spectrum kept by `policy`.
pub fn kept_rank(vals_desc: &[f64], policy: RankPolicy) -> Result<(usize, f64)> {
    let n = vals_desc.len();
    let lmax = vals_desc.first().copied().unwrap_or(0.0).max(0.0);
    match policy {
        RankPolicy::Rtol(rtol) => {
            let rtol = rtol.unwrap_or_else(|| RankPolicy::default_rtol(n));
            if !(rtol >= 0.0) || !rtol.is_finite() {
                return Err(EtfError::Parameter(format!(
                    "rtol must be finite and >= 0, got {rtol}"
                )));
            }
            let thr = rtol * lmax;
            // Compared as a ratio to λ_max: `rtol · λ_max` underflows for spectra near the
            // bottom of the f64 range, and noise would then count as rank.
            let r = vals_desc
                .iter()
                .take_while(|&&v| v > 0.0 && v / lmax > rtol)
                .count();
            Ok((r, thr))
        }
        RankPolicy::Top(r) => {
            if r > n {
                return Err(EtfError::Parameter(format!(
                    "rank={r} exceeds the matrix size {n}"
                )));
            }
            if r > 0 && !(vals_desc[r - 1] > 0.0) {
                let pos = vals_desc.iter().take_while(|&&v| v > 0.0).count();
                return Err(EtfError::Numerical(format!(
                    "rank={r} requested but only {pos} eigenvalues are positive"
                )));
            }
            Ok((r, 0.0))
        }
    }
}

impl SymPinv {
    /// Builds the pseudo-inverse of the symmetric PSD matrix `a` (only its lower triangle is read).
    ///
    /// With `RankPolicy::Rtol` a Cholesky factorisation is tried first when `allow_cholesky`:
    /// it is accepted only if `λ₋ > rtol · λ₊ · (1 + 10⁻⁶)` for a lower bound `λ₋ ≤ λ_min` and
    /// an upper bound `λ₊ ≥ λ_max`: every eigenvalue then exceeds the threshold, so the
    /// eigen-route would have kept all of them and both routes give `A⁻¹`. The bounds:
    /// `λ₊ = min(‖A‖_F, max_i Σ_j |a_ij|)` (both at most `tr A` for a PSD matrix) and
    /// `λ₋ = 1/tr(A⁻¹) = 1/‖L⁻¹‖_F²`, or, when that does not prove it, the tighter
    /// `λ₋ = 1/‖A⁻¹‖_F` with `A⁻¹ = L⁻ᵀL⁻¹` formed (`n³/3` more flops, far below an
    /// eigendecomposition; this is what lets float32 statistics, cut at `n · eps(float32)`,
    /// take the fast path when they are well conditioned).
    pub fn new(a: MatRef<'_, f64>, policy: RankPolicy, allow_cholesky: bool) -> Result<Self> {
        let n = a.nrows();
        // Factorise `a / s` (s = largest entry) and scale back: `A^† = (A/s)^† / s`, so the
        // factor of `A^†` is the factor of `(A/s)^†` divided by `√s`.
        let s = sym_scale(a);
        let root = s.sqrt();
        if let (RankPolicy::Rtol(rtol), true) = (policy, allow_cholesky && n > 0) {
            let rtol = rtol.unwrap_or_else(|| RankPolicy::default_rtol(n));
            let scaled = Mat::from_fn(n, n, |i, j| a[(i, j)] / s);
            // Upper bounds of λ_max of the PSD matrix (the symmetric matrix from its lower
            // triangle, as the factorisation reads it).
            let (mut frob2, mut row_max) = (0.0f64, 0.0f64);
            for i in 0..n {
                let mut row = 0.0;
                for j in 0..n {
                    let v = if j <= i {
                        scaled[(i, j)]
                    } else {
                        scaled[(j, i)]
                    };
                    frob2 += v * v;
                    row += v.abs();
                }
                row_max = row_max.max(row);
            }
            let trace: f64 = (0..n).map(|i| scaled[(i, i)]).sum();
            let upper = trace.min(frob2.sqrt()).min(row_max);
            if let Ok(llt) = scaled.llt(Side::Lower) {
                let mut linv = Mat::<f64>::zeros(n, n);
                invert_lower_triangular(linv.as_mut(), llt.L(), Par::rayon(0));
                let mut tr_inv = 0.0;
                for j in 0..n {
                    for i in 0..n {
                        if i < j {
                            linv[(i, j)] = 0.0;
                        } else {
                            tr_inv += linv[(i, j)] * linv[(i, j)];
                        }
                    }
                }
                let bound = rtol * upper * (1.0 + 1e-6);
                let proven = tr_inv.is_finite()
                    && tr_inv > 0.0
                    && (1.0 / tr_inv > bound || {
                        // ‖A⁻¹‖_F ≥ tr(A⁻¹)/√n: skip the product when even that cannot prove it.
                        let hopeless = (n as f64).sqrt() / tr_inv <= bound;
                        let f = if hopeless {
                            f64::INFINITY
                        } else {
                            (linv.transpose() * &linv).norm_l2()
                        };
                        f.is_finite() && f > 0.0 && 1.0 / f > bound
                    });
                if proven {
                    for j in 0..n {
                        for i in 0..n {
                            linv[(i, j)] = if i < j { 0.0 } else { linv[(i, j)] / root };
                        }
                    }
                    return Ok(SymPinv {
                        factor: linv,
                        rank: n,
                        method: PinvMethod::Cholesky,
                        lambda_max: upper * s,
                        threshold: rtol * upper * s,
                    });
                }
            }
        }
        let (vals, vecs, _) = sym_eig_desc_scaled(a)?;
        let (r, thr) = kept_rank(&vals, policy)?;
        let factor = Mat::from_fn(r, n, |i, j| vecs[(j, i)] / (vals[i].sqrt() * root));
        Ok(SymPinv {
            factor,
            rank: r,
            method: PinvMethod::Eigh,
            lambda_max: vals.first().copied().unwrap_or(0.0) * s,
            threshold: thr * s,
        })
    }

    /// `F x` for `x` of shape `n × c`, so that `x_jᵀ A^† x_j = ‖(F x)_j‖²`.
    pub fn half_apply(&self, x: MatRef<'_, f64>) -> Mat<f64> {
        &self.factor * x
    }

    /// `x_jᵀ A^† x_j` for each column `j` of `x` (`n × c`).
    pub fn quad_forms(&self, x: MatRef<'_, f64>) -> Vec<f64> {
        let y = self.half_apply(x);
        (0..y.ncols())
            .map(|j| (0..y.nrows()).map(|i| y[(i, j)] * y[(i, j)]).sum())
            .collect()
    }

    /// The explicit pseudo-inverse `Fᵀ F` (`n × n`).
    pub fn matrix(&self) -> Mat<f64> {
        self.factor.transpose() * &self.factor
    }
}

/// Pseudo-inverse of a symmetric PSD `n × n` matrix (row-major) under the explicit policy:
/// `(A^†, rank used, method)`. The default threshold is `n · eps(f64)`.
pub fn pinv_psd(
    a: ndarray::ArrayView2<'_, f64>,
    policy: RankPolicy,
) -> Result<(ndarray::Array2<f64>, usize, PinvMethod)> {
    let (n, m) = a.dim();
    if n != m {
        return Err(EtfError::Shape(format!(
            "matrix must be square, got ({n}, {m})"
        )));
    }
    if let Some(((i, j), _)) = a.indexed_iter().find(|(_, x)| !x.is_finite()) {
        return Err(EtfError::NonFinite {
            what: "matrix".into(),
            row: i,
            col: j,
        });
    }
    crate::error::check_dense_size(n, n, "the matrix")?;
    check_symmetric(a, "the matrix")?;
    let f = Mat::from_fn(n, n, |i, j| a[[i, j]]);
    let p = SymPinv::new(f.as_ref(), policy, true)?;
    Ok((to_ndarray(p.matrix().as_ref()), p.rank, p.method))
}

/// Relative tolerance on `|a_ij - a_ji|` (against `max |a|`) of [`check_symmetric`].
pub const SYMMETRY_RTOL: f64 = 1e-8;

/// `Shape` error unless `|a_ij - a_ji| ≤ SYMMETRY_RTOL · max |a|` for every pair: a matrix
/// read through one triangle must not silently drop the other.
pub fn check_symmetric(a: ndarray::ArrayView2<'_, f64>, what: &str) -> Result<()> {
    let n = a.nrows();
    let amax = a.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    for i in 0..n {
        for j in 0..i {
            let d = (a[[i, j]] - a[[j, i]]).abs();
            if d > SYMMETRY_RTOL * amax {
                return Err(EtfError::Shape(format!(
                    "{what} must be symmetric: entries ({i}, {j}) = {} and ({j}, {i}) = {} differ",
                    a[[i, j]],
                    a[[j, i]]
                )));
            }
        }
    }
    Ok(())
}

/// Row-major slice → faer view.
pub fn mat_ref(data: &[f64], nrows: usize, ncols: usize) -> MatRef<'_, f64> {
    MatRef::from_row_major_slice(data, nrows, ncols)
}

/// faer matrix → ndarray (row-major, owned).
pub fn to_ndarray(m: MatRef<'_, f64>) -> ndarray::Array2<f64> {
    ndarray::Array2::from_shape_fn((m.nrows(), m.ncols()), |(i, j)| m[(i, j)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spd(n: usize, cond: f64) -> Mat<f64> {
        // Q diag Qᵀ with a Haar Q and eigenvalues geometrically from 1 to 1/cond.
        let q = crate::etf::haar_orthonormal_rows(n, n, 11);
        let d: Vec<f64> = (0..n)
            .map(|i| cond.powf(-(i as f64) / (n - 1) as f64))
            .collect();
        Mat::from_fn(n, n, |i, j| {
            (0..n).map(|k| q[(k, i)] * d[k] * q[(k, j)]).sum()
        })
    }

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

    #[test]
    fn cholesky_and_eigh_agree_when_well_conditioned() {
        let a = spd(20, 10.0);
        let c = SymPinv::new(a.as_ref(), RankPolicy::Rtol(None), true).unwrap();
        let e = SymPinv::new(a.as_ref(), RankPolicy::Rtol(None), false).unwrap();
        assert_eq!(c.method, PinvMethod::Cholesky);
        assert_eq!(e.method, PinvMethod::Eigh);
        assert_eq!((c.rank, e.rank), (20, 20));
        let (mc, me) = (c.matrix(), e.matrix());
        let prod = &a * &mc;
        for i in 0..20 {
            for j in 0..20 {
                assert!((mc[(i, j)] - me[(i, j)]).abs() < 1e-9);
                assert!((prod[(i, j)] - (i == j) as i32 as f64).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn frobenius_bound_proves_the_cholesky_path_where_the_trace_bound_does_not() {
        // 200 eigenvalues in [1, 2]: 1/tr(A⁻¹) ≈ 1/140 is below 1e-4 · tr A ≈ 0.03, while
        // 1/‖A⁻¹‖_F ≈ 1/10 exceeds 1e-4 · ‖A‖_F ≈ 2e-3.
        let a = spd(200, 2.0);
        let rtol = RankPolicy::Rtol(Some(1e-4));
        let c = SymPinv::new(a.as_ref(), rtol, true).unwrap();
        let e = SymPinv::new(a.as_ref(), rtol, false).unwrap();
        assert_eq!((c.method, c.rank, e.rank), (PinvMethod::Cholesky, 200, 200));
        let (mc, me) = (c.matrix(), e.matrix());
        for i in 0..200 {
            for j in 0..200 {
                assert!((mc[(i, j)] - me[(i, j)]).abs() < 1e-10);
            }
        }
        // Ill-conditioned beyond the cut: the eigen-route decides.
        let bad = spd(50, 1e6);
        let b = SymPinv::new(bad.as_ref(), rtol, true).unwrap();
        assert_eq!(b.method, PinvMethod::Eigh);
        assert!(b.rank < 50);
    }

    #[test]
    fn threshold_drops_small_eigenvalues_and_reports_rank() {
        // cond 1e20: the smallest eigenvalues fall below n·eps·λ_max.
        let a = spd(12, 1e20);
        let e = SymPinv::new(a.as_ref(), RankPolicy::Rtol(None), true).unwrap();
        assert_eq!(e.method, PinvMethod::Eigh);
        assert!(e.rank < 12 && e.rank > 5, "rank {}", e.rank);
        let t = SymPinv::new(a.as_ref(), RankPolicy::Top(3), true).unwrap();
        assert_eq!(t.rank, 3);
        assert!(SymPinv::new(a.as_ref(), RankPolicy::Top(13), true).is_err());
        let z = Mat::<f64>::zeros(4, 4);
        assert_eq!(
            SymPinv::new(z.as_ref(), RankPolicy::Rtol(None), true)
                .unwrap()
                .rank,
            0
        );
    }

    #[test]
    fn rank_and_pinv_do_not_depend_on_the_scale() {
        // Rank 3 of 6: B Bᵀ with B 6 × 3.
        let b = crate::etf::haar_orthonormal_rows(3, 6, 5);
        let base = Mat::from_fn(6, 6, |i, j| {
            (0..3).map(|k| b[(k, i)] * (k + 1) as f64 * b[(k, j)]).sum()
        });
        let p0 = SymPinv::new(base.as_ref(), RankPolicy::Rtol(None), true).unwrap();
        assert_eq!(p0.rank, 3);
        let x = Mat::from_fn(6, 2, |i, j| b[(j, i)] + 0.1 * b[(2, i)]);
        let q0 = p0.quad_forms(x.as_ref());
        for &scale in &[1e-300, 1e-306, 1e300] {
            let a = Mat::from_fn(6, 6, |i, j| base[(i, j)] * scale);
            let p = SymPinv::new(a.as_ref(), RankPolicy::Rtol(None), true).unwrap();
            assert_eq!(p.rank, 3, "scale {scale}");
            let q = p.quad_forms(x.as_ref());
            for (u, v) in q.iter().zip(&q0) {
                assert!(
                    (u * scale - v).abs() < 1e-6 * v.abs(),
                    "scale {scale}: {u} {v}"
                );
            }
            let (vals, _) = sym_eig_desc(a.as_ref()).unwrap();
            assert!((vals[0] / scale - 3.0).abs() < 1e-6, "scale {scale}");
        }
        let full = spd(5, 10.0);
        let small = Mat::from_fn(5, 5, |i, j| full[(i, j)] * 1e-310);
        let p = SymPinv::new(small.as_ref(), RankPolicy::Rtol(None), true).unwrap();
        assert_eq!(p.rank, 5);
    }
}
