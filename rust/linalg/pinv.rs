//! The pseudo-inverse policy: which eigenvalues a pseudo-inverse keeps, the symmetric
//! eigendecomposition it is built from, and the proven Cholesky fast path.

use super::{to_ndarray, Precision};
use crate::error::{EtfError, Result};
use faer::linalg::triangular_inverse::invert_lower_triangular;
use faer::{Mat, MatRef, Par, Side};

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
}

/// `L⁻¹` (upper triangle zeroed) of the Cholesky factor `A = L Lᵀ` of a PSD matrix, returned
/// only when the bounds prove `λ_min(A) > bound`: `λ_min ≥ 1/tr(A⁻¹) = 1/‖L⁻¹‖_F²`, or, when that
/// does not suffice, the tighter `λ_min ≥ 1/‖A⁻¹‖_F` with `A⁻¹ = L⁻ᵀL⁻¹` formed (`n³/3` more
/// flops; skipped when even `‖A⁻¹‖_F ≥ tr(A⁻¹)/√n` cannot prove it). `None` when the
/// factorisation fails or the proof does not hold. The one proof of both Cholesky routes (the
/// pseudo-inverse here, NC1 through the class-mean Gram in `geometry::factor`).
pub fn proven_cholesky_inverse(a: &Mat<f64>, bound: f64) -> Option<Mat<f64>> {
    let n = a.nrows();
    let llt = a.llt(Side::Lower).ok()?;
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
    let proven = tr_inv.is_finite()
        && tr_inv > 0.0
        && (1.0 / tr_inv > bound || {
            let hopeless = (n as f64).sqrt() / tr_inv <= bound;
            let f = if hopeless {
                f64::INFINITY
            } else {
                (linv.transpose() * &linv).norm_l2()
            };
            f.is_finite() && f > 0.0 && 1.0 / f > bound
        });
    proven.then_some(linv)
}

/// `min(‖A‖_F, max_i Σ_j |a_ij|, tr A) ≥ λ_max` of the PSD matrix whose lower triangle is `a`
/// (the symmetric matrix the factorisation reads).
fn lambda_max_bound(a: MatRef<'_, f64>) -> f64 {
    let n = a.nrows();
    let (mut frob2, mut row_max) = (0.0f64, 0.0f64);
    for i in 0..n {
        let mut row = 0.0;
        for j in 0..n {
            let v = if j <= i { a[(i, j)] } else { a[(j, i)] };
            frob2 += v * v;
            row += v.abs();
        }
        row_max = row_max.max(row);
    }
    let trace: f64 = (0..n).map(|i| a[(i, i)]).sum();
    trace.min(frob2.sqrt()).min(row_max)
}

/// The eigendecomposition of a symmetric matrix `A`, computed for `A/s` (`s` its largest entry,
/// so the result does not depend on the overall scale) and kept so that every pseudo-inverse,
/// spectrum or path of the same matrix reads the one factorisation.
#[derive(Debug, Clone)]
pub struct SymEigen {
    /// Eigenvalues of `A/s`, decreasing.
    scaled_values: Vec<f64>,
    /// Eigenvectors (columns), in the order of the values.
    pub vectors: Mat<f64>,
    /// The scale `s`.
    pub scale: f64,
}

impl SymEigen {
    /// Decomposes the symmetric matrix whose lower triangle is `a`.
    pub fn new(a: MatRef<'_, f64>) -> Result<Self> {
        let (scaled_values, vectors, scale) = sym_eig_desc_scaled(a)?;
        Ok(SymEigen {
            scaled_values,
            vectors,
            scale,
        })
    }

    /// The eigenvalues of `A`, decreasing.
    pub fn values(&self) -> Vec<f64> {
        self.scaled_values.iter().map(|v| v * self.scale).collect()
    }

    /// The pseudo-inverse of `A` under `policy` from this decomposition (method `Eigh`).
    pub fn pinv(&self, policy: RankPolicy) -> Result<SymPinv> {
        let n = self.scaled_values.len();
        let (vals, vecs) = (&self.scaled_values, &self.vectors);
        let (r, _) = kept_rank(vals, policy)?;
        let root = self.scale.sqrt();
        let factor = Mat::from_fn(r, n, |i, j| vecs[(j, i)] / (vals[i].sqrt() * root));
        Ok(SymPinv {
            factor,
            rank: r,
            method: PinvMethod::Eigh,
        })
    }
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
        if let (RankPolicy::Rtol(rtol), true) = (policy, allow_cholesky) {
            let rtol = rtol.unwrap_or_else(|| RankPolicy::default_rtol(a.nrows()));
            if let Some(pinv) = Self::try_cholesky(a, rtol) {
                return Ok(pinv);
            }
        }
        SymEigen::new(a)?.pinv(policy)
    }

    /// The Cholesky route of [`new`](Self::new) under threshold `rtol`: `Some` only when the
    /// bounds prove that every eigenvalue exceeds `rtol · λ_max` (then the pseudo-inverse is
    /// the inverse), `None` when the factorisation fails or the proof does not hold.
    pub fn try_cholesky(a: MatRef<'_, f64>, rtol: f64) -> Option<Self> {
        let n = a.nrows();
        if n == 0 {
            return None;
        }
        // Factorise `a / s` (s = largest entry) and scale back: `A^† = (A/s)^† / s`, so the
        // factor of `A^†` is the factor of `(A/s)^†` divided by `√s`.
        let s = sym_scale(a);
        let root = s.sqrt();
        let scaled = Mat::from_fn(n, n, |i, j| a[(i, j)] / s);
        let upper = lambda_max_bound(scaled.as_ref());
        let mut linv = proven_cholesky_inverse(&scaled, rtol * upper * (1.0 + 1e-6))?;
        for j in 0..n {
            for i in j..n {
                linv[(i, j)] /= root;
            }
        }
        Some(SymPinv {
            factor: linv,
            rank: n,
            method: PinvMethod::Cholesky,
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
    crate::alloc::check_dense_size(n, n, "the matrix")?;
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
