//! The Python binding: converts arguments and results, releases the GIL around core work and
//! maps [`EtfError`] once onto the `etfcore` exception hierarchy. No logic lives here: parsing
//! (`FromStr`), validation, caches and state are the core's.
//!
//! Conventions for every binding (appended ones included):
//! - arrays arrive as borrowed numpy arrays (`features()` for float32/float64 matrices,
//!   `PyReadonlyArray{1,2}<f64|i64>` otherwise), viewed with `as_array()`, never copied;
//! - the core call runs inside [`detach`]: GIL released, a panic turned into an
//!   `EtfcoreError` subclass (a safety net only: the core refuses bad input itself), and the
//!   core's `Result` mapped by [`to_py`];
//! - results go back as numpy arrays (`into_pyarray`), tuples or dicts of plain values.

use crate::error::EtfError;
use crate::linalg::{pinv_psd as core_pinv_psd, Precision, RankPolicy};
use crate::metrics::{self, PinvMetric, Report, VciNormalizer, Weighting};
use crate::rf::{self, Activation, D2Convention, Projection};
use crate::stats::CollapseStats;
use crate::{etf, samples};
use ndarray::{Array1, Array2};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

create_exception!(
    etfcore,
    EtfcoreError,
    PyValueError,
    "Base class of every etfcore error (a ValueError)."
);
create_exception!(
    etfcore,
    ShapeError,
    EtfcoreError,
    "Wrong number of dimensions, wrong shape or mismatched lengths."
);
create_exception!(
    etfcore,
    DTypeError,
    EtfcoreError,
    "An array of an unsupported dtype."
);
create_exception!(
    etfcore,
    NonFiniteError,
    EtfcoreError,
    "NaN or Inf in an input."
);
create_exception!(
    etfcore,
    LabelError,
    EtfcoreError,
    "Labels negative, not below num_classes, or not integers."
);
create_exception!(
    etfcore,
    TooFewClassesError,
    EtfcoreError,
    "Fewer than two classes with samples."
);
create_exception!(
    etfcore,
    DimensionError,
    EtfcoreError,
    "A dimension too small for the object (e.g. an ETF with dim < K-1), or sizes too large."
);
create_exception!(
    etfcore,
    IncompatibleStatsError,
    EtfcoreError,
    "Statistics that cannot be merged (K, dim, options or format version differ)."
);
create_exception!(
    etfcore,
    CorruptDataError,
    EtfcoreError,
    "Serialised statistics that are truncated or modified."
);
create_exception!(
    etfcore,
    ParameterError,
    EtfcoreError,
    "A parameter outside its domain."
);
create_exception!(
    etfcore,
    DegenerateInputError,
    EtfcoreError,
    "Input valid in form but degenerate for the metric."
);
create_exception!(
    etfcore,
    NumericalError,
    EtfcoreError,
    "A numerical routine failed (or overflowed)."
);

/// The one mapping of core errors onto the exception hierarchy.
fn to_py(e: EtfError) -> PyErr {
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

trait IntoPyResult<T> {
    fn py(self) -> PyResult<T>;
}
impl<T> IntoPyResult<T> for crate::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

/// Runs core work with the GIL released; a panic (a bug: the core validates its input) becomes
/// a `NumericalError` instead of a `PanicException`, and core errors are mapped by [`to_py`].
fn detach<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: FnOnce() -> crate::Result<T> + Send,
    T: Send,
{
    py.detach(|| catch_unwind(AssertUnwindSafe(f)))
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

/// A 2-D float32 or float64 array, borrowed without copying.
enum Features<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

fn features<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Features<'py>> {
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

fn matrix64<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<PyReadonlyArray2<'py, f64>> {
    obj.extract::<PyReadonlyArray2<'py, f64>>()
        .map_err(|_| DTypeError::new_err(format!("{what} must be a 2-D float64 numpy array")))
}

fn indices<'py>(py: Python<'py>, v: Vec<usize>) -> Bound<'py, PyArray1<i64>> {
    v.into_iter()
        .map(|k| k as i64)
        .collect::<Array1<i64>>()
        .into_pyarray(py)
}

fn counts<'py>(py: Python<'py>, v: &[u64]) -> Bound<'py, PyArray1<i64>> {
    v.iter()
        .map(|&c| c as i64)
        .collect::<Array1<i64>>()
        .into_pyarray(py)
}

fn square<'py>(py: Python<'py>, v: Vec<f64>, n: usize) -> PyResult<Bound<'py, PyArray2<f64>>> {
    Ok(Array2::from_shape_vec((n, n), v)
        .map_err(|e| ShapeError::new_err(e.to_string()))?
        .into_pyarray(py))
}

fn rows<'py>(
    py: Python<'py>,
    v: Vec<f64>,
    r: usize,
    c: usize,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    Ok(Array2::from_shape_vec((r, c), v)
        .map_err(|e| ShapeError::new_err(e.to_string()))?
        .into_pyarray(py))
}

fn faer_to_numpy<'py>(py: Python<'py>, m: faer::MatRef<'_, f64>) -> Bound<'py, PyArray2<f64>> {
    crate::linalg::to_ndarray(m).into_pyarray(py)
}

/// `p × K` (columns are classes) → `K × p` (rows are classes).
fn columns_as_rows<'py>(py: Python<'py>, m: faer::MatRef<'_, f64>) -> Bound<'py, PyArray2<f64>> {
    Array2::from_shape_fn((m.ncols(), m.nrows()), |(i, j)| m[(j, i)]).into_pyarray(py)
}

/// int64 → u64, refusing negative values.
fn unsigned(a: &PyReadonlyArray1<'_, i64>, what: &str) -> PyResult<Vec<u64>> {
    a.as_array()
        .iter()
        .map(|&v| {
            u64::try_from(v)
                .map_err(|_| ParameterError::new_err(format!("{what} must be >= 0, got {v}")))
        })
        .collect()
}

type PinvTuple = (f64, usize, &'static str, usize);

fn pinv_tuple(m: PinvMetric) -> PinvTuple {
    (m.value, m.rank, m.method.as_str(), m.normalizer)
}

/// A VCI normaliser as Python passes it: a name or a positive int.
#[derive(FromPyObject)]
enum NormalizerArg {
    Int(usize),
    Name(String),
}

#[pyfunction]
#[pyo3(signature = (num_classes, dim, seed, lengths=None, canonical=false))]
fn simplex_etf<'py>(
    py: Python<'py>,
    num_classes: usize,
    dim: usize,
    seed: u64,
    lengths: Option<Vec<f64>>,
    canonical: bool,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let w = detach(py, || {
        if canonical {
            etf::canonical_simplex_etf(num_classes, dim, lengths.as_deref())
        } else {
            etf::simplex_etf(num_classes, dim, seed, lengths.as_deref())
        }
    })?;
    Ok(w.into_pyarray(py))
}

#[pyfunction]
#[pyo3(signature = (num_classes, dim, seed, lengths=None))]
fn orthogonal_frame<'py>(
    py: Python<'py>,
    num_classes: usize,
    dim: usize,
    seed: u64,
    lengths: Option<Vec<f64>>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let w = detach(py, || {
        etf::orthogonal_frame(num_classes, dim, seed, lengths.as_deref())
    })?;
    Ok(w.into_pyarray(py))
}

/// `(pinv, rank, method)` of a symmetric PSD matrix under the explicit policy.
#[pyfunction]
#[pyo3(signature = (matrix, rank=None, rtol=None))]
fn pinv_psd<'py>(
    py: Python<'py>,
    matrix: &Bound<'py, PyAny>,
    rank: Option<usize>,
    rtol: Option<f64>,
) -> PyResult<(Bound<'py, PyArray2<f64>>, usize, &'static str)> {
    let a = matrix64(matrix, "matrix")?;
    let v = a.as_array();
    let (m, r, method) = detach(py, || {
        core_pinv_psd(v, RankPolicy::from_options(rank, rtol)?)
    })?;
    Ok((m.into_pyarray(py), r, method.as_str()))
}

/// `(mean, classes, values)` of `numerical_rank`.
type RankResult<'py> = (f64, Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f64>>);

#[pyfunction]
#[pyo3(signature = (features, labels, num_classes, centred=false))]
fn numerical_rank<'py>(
    py: Python<'py>,
    features: &Bound<'py, PyAny>,
    labels: PyReadonlyArray1<'py, i64>,
    num_classes: usize,
    centred: bool,
) -> PyResult<RankResult<'py>> {
    let f = self::features(features, "features")?;
    let y = labels.as_array();
    let (mean, per) = with_features!(f, h => detach(py, || {
        samples::numerical_rank(h, y, num_classes, centred)
    }))?;
    let cls: Vec<usize> = per.iter().map(|(k, _)| *k).collect();
    let val: Array1<f64> = per.iter().map(|(_, v)| *v).collect();
    Ok((mean, indices(py, cls), val.into_pyarray(py)))
}

#[pyfunction]
#[pyo3(signature = (features, classifier, bias=None))]
fn classifier_predictions<'py>(
    py: Python<'py>,
    features: &Bound<'py, PyAny>,
    classifier: &Bound<'py, PyAny>,
    bias: Option<PyReadonlyArray1<'py, f64>>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let f = self::features(features, "features")?;
    let w = matrix64(classifier, "classifier")?;
    let (wv, bv) = (w.as_array(), bias.as_ref().map(|b| b.as_array()));
    let out = with_features!(f, h => detach(py, || samples::classifier_predictions(h, wv, bv)))?;
    Ok(indices(py, out))
}

/// The statistics object; `etfcore.CollapseStats` wraps it with the documented API.
///
/// The state sits behind a read-write lock, so one object is safe to share between threads:
/// updates and merges serialise (every batch lands), metrics read concurrently. Locks are
/// only taken with the GIL released (inside [`detach`]).
#[pyclass(module = "etfcore._core", name = "RawCollapseStats", frozen)]
struct PyCollapseStats {
    inner: RwLock<CollapseStats>,
}

/// A Python object whose core state sits behind a read-write lock (the statistics classes).
trait Locked: Sized {
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

impl Locked for PyCollapseStats {
    type State = CollapseStats;
    fn lock(&self) -> &RwLock<CollapseStats> {
        &self.inner
    }
    fn from_lock(inner: RwLock<CollapseStats>) -> Self {
        PyCollapseStats { inner }
    }
}

fn report_dict<'py>(py: Python<'py>, r: Report) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("precision", r.precision.as_str())?;
    d.set_item("num_samples", r.num_samples)?;
    d.set_item("num_classes_present", r.num_classes_present)?;
    d.set_item("dim", r.dim)?;
    d.set_item("vci", pinv_tuple(r.vci))?;
    d.set_item("probe_mse", pinv_tuple(r.probe_mse))?;
    d.set_item("nc1", pinv_tuple(r.nc1))?;
    let s = r.nc1_split;
    d.set_item("nc1_split", (s.between_span, s.orthogonal, s.rank))?;
    d.set_item("squared_distance", r.squared_distance)?;
    d.set_item("within_trace_per_dim", r.within_trace_per_dim)?;
    d.set_item("cdnv", r.cdnv)?;
    let n = r.nc2;
    d.set_item(
        "nc2",
        (
            n.equinorm,
            n.equiangularity,
            n.max_equiangularity,
            n.etf_error,
        ),
    )?;
    d.set_item(
        "cosine",
        r.cosine.map(|c| (c.within, c.total, c.class_separation)),
    )?;
    match r.nc3 {
        Some(n3) => d.set_item(
            "nc3",
            (n3.distance, Array1::from(n3.cosines).into_pyarray(py)),
        )?,
        None => d.set_item("nc3", py.None())?,
    }
    Ok(d)
}

#[pymethods]
impl PyCollapseStats {
    #[new]
    #[pyo3(signature = (num_classes, dim, track_class_scatter=false))]
    fn new(
        py: Python<'_>,
        num_classes: usize,
        dim: usize,
        track_class_scatter: bool,
    ) -> PyResult<Self> {
        let s = detach(py, || {
            CollapseStats::new(num_classes, dim, track_class_scatter)
        })?;
        Ok(Self::wrap(s))
    }

    fn update(
        &self,
        py: Python<'_>,
        features: &Bound<'_, PyAny>,
        labels: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<()> {
        let f = self::features(features, "features")?;
        let y = labels.as_array();
        with_features!(f, h => detach(py, || self.write().update(h, y)))
    }

    /// Adds `other` (a snapshot of it, so `s.merge(s)` doubles and two objects merging into
    /// each other from two threads cannot deadlock).
    fn merge(&self, py: Python<'_>, other: &Bound<'_, PyCollapseStats>) -> PyResult<()> {
        let o = other.get();
        detach(py, || {
            let snapshot = o.read().clone();
            self.write().merge(&snapshot)
        })
    }

    fn reshift(&self, py: Python<'_>, shift: PyReadonlyArray1<'_, f64>) -> PyResult<()> {
        let v = shift.as_array();
        detach(py, || self.write().reshift(&v.to_vec()))
    }

    fn copy(&self, py: Python<'_>) -> PyResult<Self> {
        Ok(Self::wrap(detach(py, || Ok(self.read().clone()))?))
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let b = detach(py, || Ok(self.read().to_bytes()))?;
        Ok(PyBytes::new(py, &b))
    }

    /// Statistics accumulated elsewhere; every array is a flat contiguous numpy array (no
    /// per-element conversion in Python).
    #[staticmethod]
    #[pyo3(signature = (num_classes, dim, shift, counts, class_sums, class_sq_norms, class_unit_sums, class_zero_rows, scatter, precision=None))]
    #[allow(clippy::too_many_arguments)]
    fn from_parts(
        py: Python<'_>,
        num_classes: usize,
        dim: usize,
        shift: Option<PyReadonlyArray1<'_, f64>>,
        counts: PyReadonlyArray1<'_, i64>,
        class_sums: PyReadonlyArray1<'_, f64>,
        class_sq_norms: PyReadonlyArray1<'_, f64>,
        class_unit_sums: PyReadonlyArray1<'_, f64>,
        class_zero_rows: PyReadonlyArray1<'_, i64>,
        scatter: PyReadonlyArray1<'_, f64>,
        precision: Option<&str>,
    ) -> PyResult<Self> {
        let precision: Option<Precision> = precision.map(str::parse).transpose().py()?;
        let f = |a: &PyReadonlyArray1<'_, f64>| a.as_array().to_vec();
        let (sh, c, cs, sq, us, zr, sc) = (
            shift.as_ref().map(f),
            unsigned(&counts, "counts")?,
            f(&class_sums),
            f(&class_sq_norms),
            f(&class_unit_sums),
            unsigned(&class_zero_rows, "class_zero_rows")?,
            f(&scatter),
        );
        let s = detach(py, || {
            CollapseStats::from_parts(num_classes, dim, sh, c, cs, sq, us, zr, sc, precision)
        })?;
        Ok(Self::wrap(s))
    }

    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        Ok(Self::wrap(detach(py, || CollapseStats::from_bytes(data))?))
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyCollapseStats>) -> PyResult<bool> {
        let o = other.get();
        if std::ptr::eq(self, o) {
            return Ok(true);
        }
        detach(py, || {
            let snapshot = o.read().clone();
            Ok(*self.read() == snapshot)
        })
    }

    #[getter]
    fn num_classes(&self, py: Python<'_>) -> PyResult<usize> {
        detach(py, || Ok(self.read().num_classes()))
    }
    #[getter]
    fn dim(&self, py: Python<'_>) -> PyResult<usize> {
        detach(py, || Ok(self.read().dim()))
    }
    #[getter]
    fn num_samples(&self, py: Python<'_>) -> PyResult<u64> {
        detach(py, || Ok(self.read().num_samples()))
    }
    #[getter]
    fn track_class_scatter(&self, py: Python<'_>) -> PyResult<bool> {
        detach(py, || Ok(self.read().tracks_class_scatter()))
    }
    #[getter]
    fn precision(&self, py: Python<'_>) -> PyResult<Option<&'static str>> {
        detach(py, || Ok(self.read().precision().map(Precision::as_str)))
    }
    #[getter]
    fn class_counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let c = detach(py, || Ok(self.read().counts().to_vec()))?;
        Ok(counts(py, &c))
    }
    #[getter]
    fn shift<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArray1<f64>>>> {
        let s = detach(py, || Ok(self.read().shift().map(|s| s.to_vec())))?;
        Ok(s.map(|s| Array1::from(s).into_pyarray(py)))
    }
    #[getter]
    fn class_sums<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (v, k, p) = detach(py, || {
            let s = self.read();
            Ok((s.class_sums().to_vec(), s.num_classes(), s.dim()))
        })?;
        rows(py, v, k, p)
    }
    #[getter]
    fn class_unit_sums<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (v, k, p) = detach(py, || {
            let s = self.read();
            Ok((s.class_unit_sums().to_vec(), s.num_classes(), s.dim()))
        })?;
        rows(py, v, k, p)
    }
    #[getter]
    fn class_sq_norms<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let v = detach(py, || Ok(self.read().class_sq_norms().to_vec()))?;
        Ok(Array1::from(v).into_pyarray(py))
    }
    #[getter]
    fn class_zero_rows<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let c = detach(py, || Ok(self.read().class_zero_rows().to_vec()))?;
        Ok(counts(py, &c))
    }
    #[getter]
    fn scatter<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (v, p) = detach(py, || {
            let s = self.read();
            Ok((s.scatter(), s.dim()))
        })?;
        square(py, v, p)
    }
    fn class_scatter<'py>(&self, py: Python<'py>, k: usize) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (v, p) = detach(py, || {
            let s = self.read();
            Ok((s.try_class_scatter(k)?, s.dim()))
        })?;
        square(py, v, p)
    }
    fn class_covariance<'py>(
        &self,
        py: Python<'py>,
        k: usize,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (v, p) = detach(py, || {
            let s = self.read();
            Ok((s.class_covariance(k)?, s.dim()))
        })?;
        square(py, v, p)
    }

    /// Computes the balanced within-class scatter from the very samples of these statistics.
    fn attach_balanced_scatter(
        &self,
        py: Python<'_>,
        features: &Bound<'_, PyAny>,
        labels: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<()> {
        let f = self::features(features, "features")?;
        let y = labels.as_array();
        with_features!(f, h => detach(py, || self.write().attach_balanced_scatter(h, y)))
    }

    /// `dict` of the geometry: present classes, counts, weights, means and covariances.
    fn geometry_dict<'py>(&self, py: Python<'py>, weighting: &str) -> PyResult<Bound<'py, PyDict>> {
        let w: Weighting = weighting.parse().py()?;
        let g = detach(py, || self.read().geometry(w))?;
        let d = PyDict::new(py);
        d.set_item("present", indices(py, g.present.clone()))?;
        d.set_item("counts", counts(py, &g.counts))?;
        d.set_item("weights", Array1::from(g.weights.clone()).into_pyarray(py))?;
        d.set_item(
            "global_mean",
            Array1::from(g.global_mean.clone()).into_pyarray(py),
        )?;
        d.set_item("class_means", columns_as_rows(py, g.class_means.as_ref()))?;
        d.set_item(
            "centred_means",
            columns_as_rows(py, g.centred_means.as_ref()),
        )?;
        d.set_item(
            "class_variances",
            Array1::from(g.class_variances.clone()).into_pyarray(py),
        )?;
        d.set_item("within_trace", g.within_trace)?;
        d.set_item("between_trace", g.between_trace())?;
        Ok(d)
    }

    /// Class means `K × p` (rows of classes without samples are NaN).
    fn class_means<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (v, k, p) = detach(py, || {
            let s = self.read();
            Ok((s.class_means()?, s.num_classes(), s.dim()))
        })?;
        rows(py, v, k, p)
    }

    fn between_class_covariance<'py>(
        &self,
        py: Python<'py>,
        weighting: &str,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let w: Weighting = weighting.parse().py()?;
        let g = detach(py, || self.read().geometry(w))?;
        Ok(faer_to_numpy(py, g.between.as_ref()))
    }
    fn within_class_covariance<'py>(
        &self,
        py: Python<'py>,
        weighting: &str,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let w: Weighting = weighting.parse().py()?;
        let g = detach(py, || self.read().geometry(w))?;
        Ok(faer_to_numpy(py, g.within().py()?.as_ref()))
    }
    fn total_covariance<'py>(
        &self,
        py: Python<'py>,
        weighting: &str,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let w: Weighting = weighting.parse().py()?;
        let t = detach(py, || self.read().geometry(w)?.total())?;
        Ok(faer_to_numpy(py, t.as_ref()))
    }

    #[pyo3(signature = (weighting, normalizer, rank=None, rtol=None))]
    fn vci(
        &self,
        py: Python<'_>,
        weighting: &str,
        normalizer: NormalizerArg,
        rank: Option<usize>,
        rtol: Option<f64>,
    ) -> PyResult<PinvTuple> {
        let w: Weighting = weighting.parse().py()?;
        let norm: VciNormalizer = match normalizer {
            NormalizerArg::Int(r) => VciNormalizer::fixed(r),
            NormalizerArg::Name(s) => s.parse(),
        }
        .py()?;
        let m = detach(py, || {
            metrics::vci(&*self.read().geometry(w)?, norm, rank, rtol)
        })?;
        Ok(pinv_tuple(m))
    }
    #[pyo3(signature = (rank=None, rtol=None))]
    fn probe_mse(
        &self,
        py: Python<'_>,
        rank: Option<usize>,
        rtol: Option<f64>,
    ) -> PyResult<PinvTuple> {
        let m = detach(py, || {
            metrics::probe_mse(&*self.read().geometry(Weighting::Weighted)?, rank, rtol)
        })?;
        Ok(pinv_tuple(m))
    }
    #[pyo3(signature = (weighting, rank=None, rtol=None))]
    fn nc1(
        &self,
        py: Python<'_>,
        weighting: &str,
        rank: Option<usize>,
        rtol: Option<f64>,
    ) -> PyResult<PinvTuple> {
        let w: Weighting = weighting.parse().py()?;
        let m = detach(py, || metrics::nc1(&*self.read().geometry(w)?, rank, rtol))?;
        Ok(pinv_tuple(m))
    }
    #[pyo3(signature = (weighting, rtol=None))]
    fn nc1_split(
        &self,
        py: Python<'_>,
        weighting: &str,
        rtol: Option<f64>,
    ) -> PyResult<(f64, f64, usize)> {
        let w: Weighting = weighting.parse().py()?;
        detach(py, || metrics::nc1_split(&*self.read().geometry(w)?, rtol))
    }
    fn squared_distance(&self, py: Python<'_>, weighting: &str) -> PyResult<f64> {
        let w: Weighting = weighting.parse().py()?;
        detach(py, || metrics::squared_distance(&*self.read().geometry(w)?))
    }
    fn within_trace_per_dim(&self, py: Python<'_>, weighting: &str) -> PyResult<f64> {
        let w: Weighting = weighting.parse().py()?;
        detach(py, || {
            Ok(metrics::within_trace_per_dim(&*self.read().geometry(w)?))
        })
    }
    fn cdnv(&self, py: Python<'_>, weighting: &str) -> PyResult<f64> {
        let w: Weighting = weighting.parse().py()?;
        detach(py, || metrics::cdnv(&*self.read().geometry(w)?))
    }
    fn nc2(&self, py: Python<'_>, weighting: &str) -> PyResult<(f64, f64, f64, f64)> {
        let w: Weighting = weighting.parse().py()?;
        let r = detach(py, || metrics::nc2(&*self.read().geometry(w)?))?;
        Ok((
            r.equinorm,
            r.equiangularity,
            r.max_equiangularity,
            r.etf_error,
        ))
    }
    fn nc3<'py>(
        &self,
        py: Python<'py>,
        weighting: &str,
        classifier: &Bound<'py, PyAny>,
    ) -> PyResult<(f64, Bound<'py, PyArray1<f64>>)> {
        let w: Weighting = weighting.parse().py()?;
        let c = matrix64(classifier, "classifier")?;
        let cv = c.as_array();
        let r = detach(py, || {
            let s = self.read();
            metrics::nc3(&*s.geometry(w)?, cv, s.num_classes())
        })?;
        Ok((r.distance, Array1::from(r.cosines).into_pyarray(py)))
    }
    fn cosine_metrics(&self, py: Python<'_>) -> PyResult<(f64, f64, f64)> {
        detach(py, || metrics::cosine_metrics(&self.read()))
    }
    #[pyo3(signature = (features, classifier, bias=None))]
    fn nc4(
        &self,
        py: Python<'_>,
        features: &Bound<'_, PyAny>,
        classifier: &Bound<'_, PyAny>,
        bias: Option<PyReadonlyArray1<'_, f64>>,
    ) -> PyResult<f64> {
        let f = self::features(features, "features")?;
        let w = matrix64(classifier, "classifier")?;
        let (wv, bv) = (w.as_array(), bias.as_ref().map(|b| b.as_array()));
        with_features!(f, h => detach(py, || {
            let s = self.read();
            samples::nc4(h, &*s.geometry(Weighting::Weighted)?, s.num_classes(), wv, bv)
        }))
    }
    fn nearest_class_mean<'py>(
        &self,
        py: Python<'py>,
        features: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let f = self::features(features, "features")?;
        let out = with_features!(f, h => detach(py, || {
            samples::nearest_class_mean(h, &*self.read().geometry(Weighting::Weighted)?)
        }))?;
        Ok(indices(py, out))
    }

    /// Every statistics metric in one pass (see `metrics::report`), as a dict.
    #[pyo3(signature = (weighting, rtol=None, classifier=None))]
    fn report<'py>(
        &self,
        py: Python<'py>,
        weighting: &str,
        rtol: Option<f64>,
        classifier: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let w: Weighting = weighting.parse().py()?;
        let c = classifier.map(|c| matrix64(c, "classifier")).transpose()?;
        let cv = c.as_ref().map(|c| c.as_array());
        let r = detach(py, || metrics::report(&self.read(), w, rtol, cv))?;
        report_dict(py, r)
    }
}

fn activation(name: &str, params: Vec<f64>) -> PyResult<Activation> {
    Activation::from_name(name, &params).py()
}

#[pyfunction]
#[pyo3(signature = (name, params, tau, convention="tiomoko_ali", closed_form=true))]
fn rf_coefficients(
    name: &str,
    params: Vec<f64>,
    tau: f64,
    convention: &str,
    closed_form: bool,
) -> PyResult<(f64, f64, f64)> {
    let act = activation(name, params)?;
    let conv: D2Convention = convention.parse().py()?;
    let [d0, d1, d2] = rf::coefficients(&act, tau, conv, closed_form).py()?;
    Ok((d0, d1, d2))
}

#[pyfunction]
#[pyo3(signature = (name, params, tau, closed_form=true))]
fn rf_moments(
    name: &str,
    params: Vec<f64>,
    tau: f64,
    closed_form: bool,
) -> PyResult<(f64, f64, f64, f64)> {
    let act = activation(name, params)?;
    let [a, b, c, d] = rf::moments(&act, tau, closed_form).py()?;
    Ok((a, b, c, d))
}

#[pyfunction]
fn rf_has_closed_form(name: &str, params: Vec<f64>) -> PyResult<bool> {
    Ok(activation(name, params)?.has_closed_form())
}

#[pyfunction]
fn rf_apply<'py>(
    py: Python<'py>,
    name: &str,
    params: Vec<f64>,
    values: PyReadonlyArray2<'py, f64>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let act = activation(name, params)?;
    let v = values.as_array();
    let out = detach(py, || Ok(act.apply_all(v)))?;
    Ok(out.into_pyarray(py))
}

#[pyfunction]
#[pyo3(signature = (name, params, x, y=None, series=false, order=40))]
fn rf_expected_kernel<'py>(
    py: Python<'py>,
    name: &str,
    params: Vec<f64>,
    x: PyReadonlyArray2<'py, f64>,
    y: Option<PyReadonlyArray2<'py, f64>>,
    series: bool,
    order: usize,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let act = activation(name, params)?;
    let (xv, yv) = (x.as_array(), y.as_ref().map(|a| a.as_array()));
    let k = detach(py, || rf::expected_kernel(&act, xv, yv, series, order))?;
    Ok(k.into_pyarray(py))
}

#[pyfunction]
#[pyo3(signature = (name, params, x, num_features, projection="gaussian", density=1.0/3.0, seed=0))]
#[allow(clippy::too_many_arguments)]
fn rf_empirical_kernel<'py>(
    py: Python<'py>,
    name: &str,
    params: Vec<f64>,
    x: &Bound<'py, PyAny>,
    num_features: usize,
    projection: &str,
    density: f64,
    seed: u64,
) -> PyResult<Bound<'py, PyAny>> {
    let act = activation(name, params)?;
    let proj = Projection::parse(projection, density).py()?;
    let f = self::features(x, "x")?;
    Ok(with_features!(f, v => detach(py, || {
        rf::empirical_kernel(&act, v, num_features, proj, seed)
    })?
    .into_pyarray(py)
    .into_any()))
}

#[pyfunction]
#[pyo3(signature = (projection, rows, dim, seed, start=0, density=1.0/3.0))]
fn rf_projection<'py>(
    py: Python<'py>,
    projection: &str,
    rows: usize,
    dim: usize,
    seed: u64,
    start: usize,
    density: f64,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let proj = Projection::parse(projection, density).py()?;
    let w = detach(py, || rf::projection_rows(proj, start, rows, dim, seed))?;
    self::rows(py, w, rows, dim)
}

#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(simplex_etf, m)?)?;
    m.add_function(wrap_pyfunction!(orthogonal_frame, m)?)?;
    m.add_function(wrap_pyfunction!(pinv_psd, m)?)?;
    m.add_function(wrap_pyfunction!(numerical_rank, m)?)?;
    m.add_function(wrap_pyfunction!(classifier_predictions, m)?)?;
    m.add_class::<PyCollapseStats>()?;
    m.add_function(wrap_pyfunction!(rf_coefficients, m)?)?;
    m.add_function(wrap_pyfunction!(rf_moments, m)?)?;
    m.add_function(wrap_pyfunction!(rf_has_closed_form, m)?)?;
    m.add_function(wrap_pyfunction!(rf_apply, m)?)?;
    m.add_function(wrap_pyfunction!(rf_expected_kernel, m)?)?;
    m.add_function(wrap_pyfunction!(rf_empirical_kernel, m)?)?;
    m.add_function(wrap_pyfunction!(rf_projection, m)?)?;
    m.add("FORMAT_VERSION", crate::stats::FORMAT_VERSION)?;
    m.add("CHUNK_ROWS", crate::stats::CHUNK_ROWS)?;
    m.add("EtfcoreError", py.get_type::<EtfcoreError>())?;
    m.add("ShapeError", py.get_type::<ShapeError>())?;
    m.add("DTypeError", py.get_type::<DTypeError>())?;
    m.add("NonFiniteError", py.get_type::<NonFiniteError>())?;
    m.add("LabelError", py.get_type::<LabelError>())?;
    m.add("TooFewClassesError", py.get_type::<TooFewClassesError>())?;
    m.add("DimensionError", py.get_type::<DimensionError>())?;
    m.add(
        "IncompatibleStatsError",
        py.get_type::<IncompatibleStatsError>(),
    )?;
    m.add("CorruptDataError", py.get_type::<CorruptDataError>())?;
    m.add("ParameterError", py.get_type::<ParameterError>())?;
    m.add(
        "DegenerateInputError",
        py.get_type::<DegenerateInputError>(),
    )?;
    m.add("NumericalError", py.get_type::<NumericalError>())?;
    register_transfer(m)?;
    Ok(())
}

// ================================================================================================
// Transfer evaluation (`etfcore.transfer`): scores and the ridge-probe path from the statistics,
// and the raw `TransferabilityStats`. A self-contained block; registered in `_core` by
// `register_transfer`.
// ================================================================================================

use crate::linalg::to_ndarray;
use crate::transfer::{self as xfer, TransferabilityStats};

/// `(value, rank of Σ_T^†)` of the H-score `tr(Σ_T^† Σ_B)`.
#[pyfunction]
#[pyo3(signature = (stats, rank=None, rtol=None))]
fn transfer_hscore(
    py: Python<'_>,
    stats: &Bound<'_, PyCollapseStats>,
    rank: Option<usize>,
    rtol: Option<f64>,
) -> PyResult<(f64, usize)> {
    let s = stats.get();
    detach(py, || xfer::hscore(&s.read(), rank, rtol))
}

type LogMeTuple<'py> = (
    f64,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<i64>>,
    usize,
    bool,
    usize,
);

/// LogME from the statistics: `(value, per-class evidence, present classes, iterations,
/// converged, rank of FᵀF used)`.
#[pyfunction]
#[pyo3(signature = (stats, parity=false, tol=1e-12, max_iter=10000, rtol=None))]
fn transfer_logme<'py>(
    py: Python<'py>,
    stats: &Bound<'py, PyCollapseStats>,
    parity: bool,
    tol: f64,
    max_iter: usize,
    rtol: Option<f64>,
) -> PyResult<LogMeTuple<'py>> {
    let s = stats.get();
    let r = detach(py, || xfer::logme(&s.read(), parity, tol, max_iter, rtol))?;
    let present: Array1<i64> = r.present.iter().map(|&k| k as i64).collect();
    Ok((
        r.value,
        Array1::from(r.per_class).into_pyarray(py),
        present.into_pyarray(py),
        r.iterations,
        r.converged,
        r.rank,
    ))
}

type RidgeTuple<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray2<f64>>,
    Bound<'py, PyArray2<f64>>,
    usize,
    Bound<'py, PyArray1<f64>>,
);

/// The ridge-probe path: `(present, π, μ_G, eigenvalues of Σ_T, eigenvectors (columns),
/// G = VᵀC, rank kept at λ=0, training MSE at each λ)`.
#[pyfunction]
#[pyo3(signature = (stats, lambdas, rtol=None))]
fn transfer_ridge_path<'py>(
    py: Python<'py>,
    stats: &Bound<'py, PyCollapseStats>,
    lambdas: Vec<f64>,
    rtol: Option<f64>,
) -> PyResult<RidgeTuple<'py>> {
    let s = stats.get();
    let (path, mse) = detach(py, || {
        let path = xfer::RidgePath::new(&s.read(), rtol)?;
        let mse = path.train_mse(&lambdas)?;
        Ok((path, mse))
    })?;
    let present: Array1<i64> = path.present.iter().map(|&k| k as i64).collect();
    Ok((
        present.into_pyarray(py),
        Array1::from(path.pi.clone()).into_pyarray(py),
        Array1::from(path.global_mean.clone()).into_pyarray(py),
        Array1::from(path.eigenvalues.clone()).into_pyarray(py),
        to_ndarray(path.eigenvectors.as_ref()).into_pyarray(py),
        to_ndarray(path.projected_targets.as_ref()).into_pyarray(py),
        path.rank,
        Array1::from(mse).into_pyarray(py),
    ))
}

/// The raw transferability statistics; `etfcore.transfer.TransferabilityStats` wraps it. Like
/// `RawCollapseStats`, the state sits behind a read-write lock taken with the GIL released, so one
/// object is safe to share between threads.
#[pyclass(module = "etfcore._core", name = "RawTransferabilityStats", frozen)]
struct PyTransferabilityStats {
    inner: RwLock<TransferabilityStats>,
}

impl Locked for PyTransferabilityStats {
    type State = TransferabilityStats;
    fn lock(&self) -> &RwLock<TransferabilityStats> {
        &self.inner
    }
    fn from_lock(inner: RwLock<TransferabilityStats>) -> Self {
        PyTransferabilityStats { inner }
    }
}

#[pymethods]
impl PyTransferabilityStats {
    #[new]
    fn new(num_classes: usize, dim: usize) -> PyResult<Self> {
        Ok(Self::wrap(
            TransferabilityStats::new(num_classes, dim).py()?,
        ))
    }
    fn update(
        &self,
        py: Python<'_>,
        features: &Bound<'_, PyAny>,
        labels: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<()> {
        let f = self::features(features, "features")?;
        let y = labels.as_array();
        with_features!(f, h => detach(py, || self.write().update(h, y)))
    }
    /// Adds a snapshot of `other` (so `s.merge(s)` doubles and cross merges cannot deadlock).
    fn merge(&self, py: Python<'_>, other: &Bound<'_, PyTransferabilityStats>) -> PyResult<()> {
        let o = other.get();
        detach(py, || {
            let snapshot = o.read().clone();
            self.write().merge(&snapshot)
        })
    }
    fn copy(&self, py: Python<'_>) -> PyResult<Self> {
        detach(py, || Ok(Self::wrap(self.read().clone())))
    }
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let b = detach(py, || Ok(self.read().to_bytes()))?;
        Ok(PyBytes::new(py, &b))
    }
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        detach(py, || TransferabilityStats::from_bytes(data)).map(Self::wrap)
    }
    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyTransferabilityStats>) -> PyResult<bool> {
        let o = other.get();
        if std::ptr::eq(self, o) {
            return Ok(true);
        }
        detach(py, || {
            let snapshot = o.read().clone();
            Ok(*self.read() == snapshot)
        })
    }
    /// A copy of the inner collapse statistics.
    fn collapse_stats(&self, py: Python<'_>) -> PyResult<PyCollapseStats> {
        detach(py, || {
            Ok(PyCollapseStats::wrap(self.read().collapse_stats().clone()))
        })
    }
    #[getter]
    fn fourth_moment(&self, py: Python<'_>) -> PyResult<f64> {
        detach(py, || Ok(self.read().fourth_moment()))
    }
    #[getter]
    fn cubic_sum<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let v = detach(py, || Ok(self.read().cubic_sum().to_vec()))?;
        Ok(Array1::from(v).into_pyarray(py))
    }
    #[getter]
    fn class_sq_sums<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (k, p, v) = detach(py, || {
            let s = self.read();
            let st = s.collapse_stats();
            Ok((st.num_classes(), st.dim(), s.class_sq_sums().to_vec()))
        })?;
        self::rows(py, v, k, p)
    }
    #[pyo3(signature = (rtol=None))]
    fn regularized_hscore(&self, py: Python<'_>, rtol: Option<f64>) -> PyResult<(f64, f64, usize)> {
        detach(py, || self.read().regularized_hscore(rtol))
    }
    #[pyo3(signature = (var_floor=None))]
    fn gbc(&self, py: Python<'_>, var_floor: Option<f64>) -> PyResult<f64> {
        detach(py, || self.read().gbc(var_floor))
    }
}

fn register_transfer(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(transfer_hscore, m)?)?;
    m.add_function(wrap_pyfunction!(transfer_logme, m)?)?;
    m.add_function(wrap_pyfunction!(transfer_ridge_path, m)?)?;
    m.add_class::<PyTransferabilityStats>()?;
    m.add("XFER_FORMAT_VERSION", xfer::XFER_FORMAT_VERSION)?;
    Ok(())
}
