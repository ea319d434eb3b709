//! Conversions between numpy/Python values and the core's types, without copies where the
//! input allows, and the read-write lock shared by the stateful classes.

use super::errors::{DTypeError, ParameterError, ShapeError};
use crate::metrics::PinvMetric;
use ndarray::{Array1, Array2};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A 2-D float32 or float64 array, borrowed without copying.
pub(super) enum Features<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

pub(super) fn features<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Features<'py>> {
    if let Ok(a) = obj.extract::<PyReadonlyArray2<'py, f32>>() {
        return Ok(Features::F32(a));
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray2<'py, f64>>() {
        return Ok(Features::F64(a));
    }
    let desc = match obj.cast::<numpy::PyUntypedArray>() {
        Ok(a) => format!("a {}-D array of dtype {}", a.ndim(), a.dtype()),
        Err(_) => format!("an object of type {}", obj.get_type().name()?),
    };
    Err(DTypeError::new_err(format!(
        "{what} must be a 2-D float32 or float64 numpy array, got {desc}"
    )))
}

/// Runs `$body` with `$h` bound to an `ArrayView2` of the right element type.
macro_rules! with_features {
    ($f:expr, $h:ident => $body:expr) => {
        match &$f {
            Features::F32(a) => {
                let $h = a.as_array();
                $body
            }
            Features::F64(a) => {
                let $h = a.as_array();
                $body
            }
        }
    };
}

pub(super) fn matrix64<'py>(
    obj: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<PyReadonlyArray2<'py, f64>> {
    obj.extract::<PyReadonlyArray2<'py, f64>>()
        .map_err(|_| DTypeError::new_err(format!("{what} must be a 2-D float64 numpy array")))
}

pub(super) fn indices<'py>(py: Python<'py>, v: Vec<usize>) -> Bound<'py, PyArray1<i64>> {
    v.into_iter()
        .map(|k| k as i64)
        .collect::<Array1<i64>>()
        .into_pyarray(py)
}

pub(super) fn counts<'py>(py: Python<'py>, v: &[u64]) -> Bound<'py, PyArray1<i64>> {
    v.iter()
        .map(|&c| c as i64)
        .collect::<Array1<i64>>()
        .into_pyarray(py)
}

pub(super) fn square<'py>(
    py: Python<'py>,
    v: Vec<f64>,
    n: usize,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    Ok(Array2::from_shape_vec((n, n), v)
        .map_err(|e| ShapeError::new_err(e.to_string()))?
        .into_pyarray(py))
}

pub(super) fn rows<'py>(
    py: Python<'py>,
    v: Vec<f64>,
    r: usize,
    c: usize,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    Ok(Array2::from_shape_vec((r, c), v)
        .map_err(|e| ShapeError::new_err(e.to_string()))?
        .into_pyarray(py))
}

pub(super) fn faer_to_numpy<'py>(
    py: Python<'py>,
    m: faer::MatRef<'_, f64>,
) -> Bound<'py, PyArray2<f64>> {
    crate::linalg::to_ndarray(m).into_pyarray(py)
}

/// `p × K` (columns are classes) → `K × p` (rows are classes).
pub(super) fn columns_as_rows<'py>(
    py: Python<'py>,
    m: faer::MatRef<'_, f64>,
) -> Bound<'py, PyArray2<f64>> {
    Array2::from_shape_fn((m.ncols(), m.nrows()), |(i, j)| m[(j, i)]).into_pyarray(py)
}

/// int64 → u64, refusing negative values.
pub(super) fn unsigned(a: &PyReadonlyArray1<'_, i64>, what: &str) -> PyResult<Vec<u64>> {
    a.as_array()
        .iter()
        .map(|&v| {
            u64::try_from(v)
                .map_err(|_| ParameterError::new_err(format!("{what} must be >= 0, got {v}")))
        })
        .collect()
}

pub(super) type PinvTuple = (f64, usize, &'static str, usize);

pub(super) fn pinv_tuple(m: PinvMetric) -> PinvTuple {
    (m.value, m.rank, m.method.as_str(), m.normalizer)
}

/// A VCI normaliser as Python passes it: a name or a positive int.
#[derive(FromPyObject)]
pub(super) enum NormalizerArg {
    Int(usize),
    Name(String),
}
pub(super) use with_features;

/// A Python object whose core state sits behind a read-write lock (the statistics classes).
pub(super) trait Locked: Sized {
    type State;
    fn lock(&self) -> &RwLock<Self::State>;
    fn from_lock(lock: RwLock<Self::State>) -> Self;

    fn wrap(s: Self::State) -> Self {
        Self::from_lock(RwLock::new(s))
    }
    // A poisoned lock only means a panic happened in a reader or writer; every mutation of the
    // core is all-or-nothing, so the state is still consistent.
    fn read(&self) -> RwLockReadGuard<'_, Self::State> {
        self.lock().read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, Self::State> {
        self.lock().write().unwrap_or_else(|e| e.into_inner())
    }
}
