//! Dense linear algebra: the precision model, the portable blocked Gram kernel and the packed
//! AVX-512 one ([`syrk`]) of the statistics pass, and the explicit pseudo-inverse policy
//! (symmetric eigendecomposition with an explicit threshold, or the top `r` eigenvalues; a
//! Cholesky fast path taken only when it provably keeps every eigenvalue, so it gives the same
//! result as the eigendecomposition).
//!
//! Nothing here knows about statistics or metrics: this is the bottom layer beside `error` and
//! `alloc`.

mod gram;
mod pinv;
pub mod syrk;

pub use gram::{symmetrize_from_lower, Real};
pub use pinv::{
    check_symmetric, kept_rank, pinv_psd, proven_cholesky_inverse, sym_eig_desc, PinvMethod,
    RankPolicy, SymEigen, SymPinv, SYMMETRY_RTOL,
};

use crate::error::{EtfError, Result};
use faer::MatRef;

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

/// Clears the upper halves of the vector registers (`vzeroupper`) on a CPU with AVX.
///
/// Code compiled for baseline x86-64 (SSE, as this crate's scalar loops and the C library's
/// `exp`/`log` are) runs several times slower on a thread whose wide registers were left
/// dirty by AVX code that did not clear them — measured: GBC's pair loop 13× slower on the
/// threads that had just run a faer eigendecomposition. Scalar-heavy parallel loops call this
/// at the start of each task.
#[inline]
pub fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx")]
        unsafe fn zeroupper() {
            std::arch::x86_64::_mm256_zeroupper();
        }
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: AVX is present.
            unsafe { zeroupper() };
        }
    }
}

/// Row-major slice → faer view.
pub fn mat_ref(data: &[f64], nrows: usize, ncols: usize) -> MatRef<'_, f64> {
    MatRef::from_row_major_slice(data, nrows, ncols)
}

/// faer matrix → ndarray (row-major, owned).
pub fn to_ndarray(m: MatRef<'_, f64>) -> ndarray::Array2<f64> {
    ndarray::Array2::from_shape_fn((m.nrows(), m.ncols()), |(i, j)| m[(i, j)])
}
