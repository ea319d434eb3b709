//! The one mapping of core errors onto Python: the exception hierarchy (listed once, created
//! and registered from that list), [`to_py`], and [`detach`], which runs core work with the GIL
//! released.

use crate::error::EtfError;
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Creates each exception and the function that registers all of them on the module.
macro_rules! exceptions {
    ($(($name:ident, $parent:ident, $doc:literal),)*) => {
        $(create_exception!(etfcore, $name, $parent, $doc);)*

        /// Adds every exception type to the module.
        pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
            let py = m.py();
            $(m.add(stringify!($name), py.get_type::<$name>())?;)*
            Ok(())
        }
    };
}

exceptions! {
    (EtfcoreError, PyValueError, "Base class of every etfcore error (a ValueError)."),
    (ShapeError, EtfcoreError, "Wrong number of dimensions, wrong shape or mismatched lengths."),
    (DTypeError, EtfcoreError, "An array of an unsupported dtype."),
    (NonFiniteError, EtfcoreError, "NaN or Inf in an input."),
    (LabelError, EtfcoreError, "Labels negative, not below num_classes, or not integers."),
    (TooFewClassesError, EtfcoreError, "Fewer than two classes with samples."),
    (DimensionError, EtfcoreError, "A dimension too small for the object (e.g. an ETF with dim < K-1), or sizes too large."),
    (IncompatibleStatsError, EtfcoreError, "Statistics that cannot be merged (K, dim, options or format version differ)."),
    (CorruptDataError, EtfcoreError, "Serialised statistics that are truncated or modified."),
    (ParameterError, EtfcoreError, "A parameter outside its domain."),
    (DegenerateInputError, EtfcoreError, "Input valid in form but degenerate for the metric."),
    (NumericalError, EtfcoreError, "A numerical routine failed (or overflowed)."),
}

/// The one mapping of core errors onto the exception hierarchy.
pub(super) fn to_py(e: EtfError) -> PyErr {
    let msg = e.to_string();
    match e {
        EtfError::Shape(_) => ShapeError::new_err(msg),
        EtfError::DType(_) => DTypeError::new_err(msg),
        EtfError::NonFinite { .. } => NonFiniteError::new_err(msg),
        EtfError::Label(_) => LabelError::new_err(msg),
        EtfError::TooFewClasses { .. } => TooFewClassesError::new_err(msg),
        EtfError::Dimension(_) => DimensionError::new_err(msg),
        EtfError::Incompatible(_) => IncompatibleStatsError::new_err(msg),
        EtfError::Corrupt(_) => CorruptDataError::new_err(msg),
        EtfError::Parameter(_) => ParameterError::new_err(msg),
        EtfError::Degenerate(_) => DegenerateInputError::new_err(msg),
        EtfError::Numerical(_) => NumericalError::new_err(msg),
    }
}

pub(super) trait IntoPyResult<T> {
    fn py(self) -> PyResult<T>;
}
impl<T> IntoPyResult<T> for crate::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

/// Runs core work with the GIL released; a panic (a bug: the core validates its input) becomes
/// a `NumericalError` instead of a `PanicException`, and core errors are mapped by [`to_py`].
pub(super) fn detach<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: FnOnce() -> crate::Result<T> + Send,
    T: Send,
{
    // Leave the calling thread's vector registers clean for the Python code that follows (see
    // `clear_upper_vector_state`: numpy measured 3× slower after an eigendecomposition without it).
    py.detach(|| {
        let r = catch_unwind(AssertUnwindSafe(f));
        crate::linalg::clear_upper_vector_state();
        r
    })
    .map_err(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        NumericalError::new_err(format!(
            "internal error in etfcore (please report it): {what}"
        ))
    })?
    .py()
}
