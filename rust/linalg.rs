//! Dense kernels: the blocked lower-triangular gram used by the statistics pass, and the
//! pseudo-inverse policy of SPEC §4 (symmetric eigendecomposition with an explicit threshold,
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
    ($t:ty, $name:literal, $prec:expr, $gemm:path) => {
        impl Real for $t {
            const NAME: &'static str = $name;
            const PRECISION: Precision = $prec;
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

impl_real!(f32, "float32", Precision::F32, matrixmultiply::sgemm);
impl_real!(f64, "float64", Precision::F64, matrixmultiply::dgemm);

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

/// How many eigenvalues a pseudo-inverse keeps (SPEC §4).
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
    /// Largest eigenvalue (eigh) or an upper bound `tr A` (Cholesky path).
    pub lambda_max: f64,
    /// Threshold actually applied (`rtol · λ_max`), 0 for the `Top` policy.
    pub threshold: f64,
}

/// Eigendecomposition of a symmetric matrix, eigenvalues in decreasing order.
pub fn sym_eig_desc(a: MatRef<'_, f64>) -> Result<(Vec<f64>, Mat<f64>)> {
    let n = a.nrows();
    if n == 0 {
        return Ok((vec![], Mat::zeros(0, 0)));
    }
    let evd = a
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| EtfError::Numerical(format!("symmetric eigendecomposition failed: {e:?}")))?;
    let s = evd.S().column_vector();
    let u = evd.U();
    let vals: Vec<f64> = (0..n).rev().map(|i| s[i]).collect();
    let vecs = Mat::from_fn(n, n, |i, j| u[(i, n - 1 - j)]);
    Ok((vals, vecs))
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
            let r = vals_desc
                .iter()
                .take_while(|&&v| v > thr && v > 0.0)
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
    /// it is accepted only if `1 / tr(A⁻¹) > rtol · tr(A)`. Since `λ_min ≥ 1/tr(A⁻¹)` and
    /// `λ_max ≤ tr(A)`, every eigenvalue then exceeds the threshold, so the eigen-route would
    /// have kept all of them: both routes give `A⁻¹`.
    pub fn new(a: MatRef<'_, f64>, policy: RankPolicy, allow_cholesky: bool) -> Result<Self> {
        let n = a.nrows();
        if let (RankPolicy::Rtol(rtol), true) = (policy, allow_cholesky && n > 0) {
            let rtol = rtol.unwrap_or_else(|| RankPolicy::default_rtol(n));
            let trace: f64 = (0..n).map(|i| a[(i, i)]).sum();
            if let Ok(llt) = a.llt(Side::Lower) {
                let mut linv = Mat::<f64>::zeros(n, n);
                invert_lower_triangular(linv.as_mut(), llt.L(), Par::rayon(0));
                let mut tr_inv = 0.0;
                for j in 0..n {
                    for i in j..n {
                        tr_inv += linv[(i, j)] * linv[(i, j)];
                    }
                }
                if tr_inv.is_finite() && tr_inv > 0.0 && 1.0 / tr_inv > rtol * trace * (1.0 + 1e-6)
                {
                    for j in 0..n {
                        for i in 0..j {
                            linv[(i, j)] = 0.0;
                        }
                    }
                    return Ok(SymPinv {
                        factor: linv,
                        rank: n,
                        method: PinvMethod::Cholesky,
                        lambda_max: trace,
                        threshold: rtol * trace,
                    });
                }
            }
        }
        let (vals, vecs) = sym_eig_desc(a)?;
        let (r, thr) = kept_rank(&vals, policy)?;
        let factor = Mat::from_fn(r, n, |i, j| vecs[(j, i)] / vals[i].sqrt());
        Ok(SymPinv {
            factor,
            rank: r,
            method: PinvMethod::Eigh,
            lambda_max: vals.first().copied().unwrap_or(0.0),
            threshold: thr,
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
    let f = Mat::from_fn(n, n, |i, j| a[[i, j]]);
    let p = SymPinv::new(f.as_ref(), policy, true)?;
    Ok((to_ndarray(p.matrix().as_ref()), p.rank, p.method))
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
}
