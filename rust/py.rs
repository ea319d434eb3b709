//! The Python binding: converts arguments, releases the GIL around heavy work and maps
//! [`EtfError`] once onto the `etfcore` exception hierarchy. No logic lives here.

use crate::error::EtfError;
use crate::linalg::{to_ndarray, RankPolicy, SymPinv};
use crate::metrics::{self, ClassGeometry, PinvMetric, VciNormalizer, Weighting};
use crate::rf::{self, Activation, D2Convention, Projection};
use crate::stats::CollapseStats;
use crate::{etf, samples};
use ndarray::{Array1, Array2, ArrayView2};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::collections::HashMap;
use std::sync::Arc;

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
    "A dimension too small for the object (e.g. an ETF with dim < K-1)."
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
    "A numerical routine failed."
);

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

fn weighting(s: &str) -> PyResult<Weighting> {
    s.parse().py()
}

fn pinv_tuple(m: PinvMetric) -> (f64, usize, &'static str, usize) {
    (m.value, m.rank, m.method.as_str(), m.normalizer)
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
    let w = py
        .detach(|| {
            if canonical {
                etf::canonical_simplex_etf(num_classes, dim, lengths.as_deref())
            } else {
                etf::simplex_etf(num_classes, dim, seed, lengths.as_deref())
            }
        })
        .py()?;
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
    let w = py
        .detach(|| etf::orthogonal_frame(num_classes, dim, seed, lengths.as_deref()))
        .py()?;
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
    let (n, m) = v.dim();
    if n != m {
        return Err(ShapeError::new_err(format!(
            "matrix must be square, got ({n}, {m})"
        )));
    }
    if let Some(((i, j), _)) = v.indexed_iter().find(|(_, x)| !x.is_finite()) {
        return Err(to_py(EtfError::NonFinite {
            what: "matrix".into(),
            row: i,
            col: j,
        }));
    }
    let policy = match (rank, rtol) {
        (Some(_), Some(_)) => {
            return Err(ParameterError::new_err(
                "give either rank or rtol, not both",
            ))
        }
        (Some(r), None) => RankPolicy::Top(r),
        (None, t) => RankPolicy::Rtol(t),
    };
    let res = py
        .detach(|| {
            let f = faer::Mat::from_fn(n, n, |i, j| v[[i, j]]);
            SymPinv::new(f.as_ref(), policy, true)
                .map(|p| (to_ndarray(p.matrix().as_ref()), p.rank, p.method.as_str()))
        })
        .py()?;
    Ok((res.0.into_pyarray(py), res.1, res.2))
}

#[pyfunction]
#[pyo3(signature = (features, labels, num_classes, centred=false))]
fn numerical_rank<'py>(
    py: Python<'py>,
    features: &Bound<'py, PyAny>,
    labels: PyReadonlyArray1<'py, i64>,
    num_classes: usize,
    centred: bool,
) -> PyResult<(f64, Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f64>>)> {
    let f = self::features(features, "features")?;
    let y = labels.as_array();
    let (mean, per) =
        with_features!(f, h => py.detach(|| samples::numerical_rank(h, y, num_classes, centred)))
            .py()?;
    let cls: Array1<i64> = per.iter().map(|(k, _)| *k as i64).collect();
    let val: Array1<f64> = per.iter().map(|(_, v)| *v).collect();
    Ok((mean, cls.into_pyarray(py), val.into_pyarray(py)))
}

/// The raw statistics object; `etfcore.CollapseStats` wraps it with the documented API.
#[pyclass(module = "etfcore._core", name = "RawCollapseStats")]
struct PyCollapseStats {
    inner: CollapseStats,
    balanced_scatter: Option<Vec<f64>>,
    cache: HashMap<Weighting, Arc<ClassGeometry>>,
}

impl PyCollapseStats {
    fn invalidate(&mut self) {
        self.cache.clear();
        self.balanced_scatter = None;
    }

    fn geometry(&mut self, py: Python<'_>, w: &str) -> PyResult<Arc<ClassGeometry>> {
        let w = weighting(w)?;
        if let Some(g) = self.cache.get(&w) {
            return Ok(g.clone());
        }
        let (inner, bs) = (&self.inner, self.balanced_scatter.as_deref());
        let g = Arc::new(py.detach(|| ClassGeometry::new(inner, w, bs)).py()?);
        self.cache.insert(w, g.clone());
        Ok(g)
    }
}

fn col_major_to_rows(m: faer::MatRef<'_, f64>) -> Array2<f64> {
    // p × K (columns are classes) → K × p (rows are classes)
    Array2::from_shape_fn((m.ncols(), m.nrows()), |(i, j)| m[(j, i)])
}

#[pymethods]
impl PyCollapseStats {
    #[new]
    #[pyo3(signature = (num_classes, dim, track_class_scatter=false))]
    fn new(num_classes: usize, dim: usize, track_class_scatter: bool) -> PyResult<Self> {
        Ok(PyCollapseStats {
            inner: CollapseStats::new(num_classes, dim, track_class_scatter).py()?,
            balanced_scatter: None,
            cache: HashMap::new(),
        })
    }

    fn update(
        &mut self,
        py: Python<'_>,
        features: &Bound<'_, PyAny>,
        labels: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<()> {
        let f = self::features(features, "features")?;
        let y = labels.as_array();
        let inner = &mut self.inner;
        with_features!(f, h => py.detach(|| inner.update(h, y))).py()?;
        self.invalidate();
        Ok(())
    }

    fn merge(&mut self, py: Python<'_>, other: PyRef<'_, PyCollapseStats>) -> PyResult<()> {
        let (inner, o) = (&mut self.inner, &other.inner);
        py.detach(|| inner.merge(o)).py()?;
        self.invalidate();
        Ok(())
    }

    fn reshift(&mut self, shift: Vec<f64>) -> PyResult<()> {
        self.inner.reshift(&shift).py()?;
        self.invalidate();
        Ok(())
    }

    fn copy(&self) -> Self {
        PyCollapseStats {
            inner: self.inner.clone(),
            balanced_scatter: self.balanced_scatter.clone(),
            cache: self.cache.clone(),
        }
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let b = py.detach(|| self.inner.to_bytes());
        PyBytes::new(py, &b)
    }

    /// Statistics accumulated elsewhere; every array is a flat contiguous numpy array (no
    /// per-element conversion in Python).
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    fn from_parts(
        num_classes: usize,
        dim: usize,
        shift: Option<PyReadonlyArray1<'_, f64>>,
        counts: PyReadonlyArray1<'_, i64>,
        class_sums: PyReadonlyArray1<'_, f64>,
        class_sq_norms: PyReadonlyArray1<'_, f64>,
        class_unit_sums: PyReadonlyArray1<'_, f64>,
        class_zero_rows: PyReadonlyArray1<'_, i64>,
        scatter: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<Self> {
        let f = |a: &PyReadonlyArray1<'_, f64>| a.as_array().to_vec();
        let u = |a: &PyReadonlyArray1<'_, i64>, what: &str| -> PyResult<Vec<u64>> {
            a.as_array()
                .iter()
                .map(|&v| {
                    u64::try_from(v).map_err(|_| {
                        ParameterError::new_err(format!("{what} must be >= 0, got {v}"))
                    })
                })
                .collect()
        };
        let inner = CollapseStats::from_parts(
            num_classes,
            dim,
            shift.as_ref().map(f),
            u(&counts, "counts")?,
            f(&class_sums),
            f(&class_sq_norms),
            f(&class_unit_sums),
            u(&class_zero_rows, "class_zero_rows")?,
            f(&scatter),
        )
        .py()?;
        Ok(PyCollapseStats {
            inner,
            balanced_scatter: None,
            cache: HashMap::new(),
        })
    }

    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let inner = py.detach(|| CollapseStats::from_bytes(data)).py()?;
        Ok(PyCollapseStats {
            inner,
            balanced_scatter: None,
            cache: HashMap::new(),
        })
    }

    fn __eq__(&self, other: PyRef<'_, PyCollapseStats>) -> bool {
        self.inner == other.inner
    }

    #[getter]
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    #[getter]
    fn num_samples(&self) -> u64 {
        self.inner.num_samples()
    }
    #[getter]
    fn track_class_scatter(&self) -> bool {
        self.inner.tracks_class_scatter()
    }
    #[getter]
    fn class_counts<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        self.inner
            .counts()
            .iter()
            .map(|&c| c as i64)
            .collect::<Array1<i64>>()
            .into_pyarray(py)
    }
    #[getter]
    fn shift<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray1<f64>>> {
        self.inner
            .shift()
            .map(|s| Array1::from(s.to_vec()).into_pyarray(py))
    }
    #[getter]
    fn class_sums<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f64>> {
        let (k, p) = (self.inner.num_classes(), self.inner.dim());
        Array2::from_shape_vec((k, p), self.inner.class_sums().to_vec())
            .unwrap()
            .into_pyarray(py)
    }
    #[getter]
    fn class_unit_sums<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f64>> {
        let (k, p) = (self.inner.num_classes(), self.inner.dim());
        Array2::from_shape_vec((k, p), self.inner.class_unit_sums().to_vec())
            .unwrap()
            .into_pyarray(py)
    }
    #[getter]
    fn class_sq_norms<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        Array1::from(self.inner.class_sq_norms().to_vec()).into_pyarray(py)
    }
    #[getter]
    fn class_zero_rows<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        self.inner
            .class_zero_rows()
            .iter()
            .map(|&c| c as i64)
            .collect::<Array1<i64>>()
            .into_pyarray(py)
    }
    #[getter]
    fn scatter<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f64>> {
        let p = self.inner.dim();
        Array2::from_shape_vec((p, p), self.inner.scatter())
            .unwrap()
            .into_pyarray(py)
    }
    fn class_scatter<'py>(&self, py: Python<'py>, k: usize) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let p = self.inner.dim();
        if k >= self.inner.num_classes() {
            return Err(to_py(EtfError::Label(format!(
                "class {k} is outside 0..{}",
                self.inner.num_classes()
            ))));
        }
        let s = self.inner.class_scatter(k).ok_or_else(|| {
            ParameterError::new_err("per-class scatters are not tracked: create the statistics with track_class_scatter=True")
        })?;
        Ok(Array2::from_shape_vec((p, p), s).unwrap().into_pyarray(py))
    }

    /// Computes the balanced within-class scatter from the very samples of these statistics.
    fn attach_balanced_scatter(
        &mut self,
        py: Python<'_>,
        features: &Bound<'_, PyAny>,
        labels: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<()> {
        let f = self::features(features, "features")?;
        let y = labels.as_array();
        let inner = &self.inner;
        let s =
            with_features!(f, h => py.detach(|| samples::balanced_scatter(inner, h, y))).py()?;
        self.cache.remove(&Weighting::Balanced);
        self.balanced_scatter = Some(s);
        Ok(())
    }

    /// `dict` of the geometry: present classes, counts, weights, means and covariances.
    fn geometry_dict<'py>(
        &mut self,
        py: Python<'py>,
        weighting: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let g = self.geometry(py, weighting)?;
        let d = PyDict::new(py);
        d.set_item(
            "present",
            g.present
                .iter()
                .map(|&k| k as i64)
                .collect::<Array1<i64>>()
                .into_pyarray(py),
        )?;
        d.set_item(
            "counts",
            g.counts
                .iter()
                .map(|&k| k as i64)
                .collect::<Array1<i64>>()
                .into_pyarray(py),
        )?;
        d.set_item("weights", Array1::from(g.weights.clone()).into_pyarray(py))?;
        d.set_item(
            "global_mean",
            Array1::from(g.global_mean.clone()).into_pyarray(py),
        )?;
        d.set_item(
            "class_means",
            col_major_to_rows(g.class_means.as_ref()).into_pyarray(py),
        )?;
        d.set_item(
            "centred_means",
            col_major_to_rows(g.centred_means.as_ref()).into_pyarray(py),
        )?;
        d.set_item(
            "class_variances",
            Array1::from(g.class_variances.clone()).into_pyarray(py),
        )?;
        d.set_item("within_trace", g.within_trace)?;
        d.set_item("between_trace", g.between_trace())?;
        Ok(d)
    }

    fn between_class_covariance<'py>(
        &mut self,
        py: Python<'py>,
        weighting: &str,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let g = self.geometry(py, weighting)?;
        Ok(to_ndarray(g.between.as_ref()).into_pyarray(py))
    }
    fn within_class_covariance<'py>(
        &mut self,
        py: Python<'py>,
        weighting: &str,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let g = self.geometry(py, weighting)?;
        Ok(to_ndarray(g.within().py()?.as_ref()).into_pyarray(py))
    }
    fn total_covariance<'py>(
        &mut self,
        py: Python<'py>,
        weighting: &str,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let g = self.geometry(py, weighting)?;
        Ok(to_ndarray(g.total().py()?.as_ref()).into_pyarray(py))
    }

    #[pyo3(signature = (weighting, normalizer, rank=None, rtol=None))]
    fn vci(
        &mut self,
        py: Python<'_>,
        weighting: &str,
        normalizer: &Bound<'_, PyAny>,
        rank: Option<usize>,
        rtol: Option<f64>,
    ) -> PyResult<(f64, usize, &'static str, usize)> {
        let norm = if let Ok(r) = normalizer.extract::<usize>() {
            VciNormalizer::Fixed(r)
        } else {
            match normalizer.extract::<String>()?.as_str() {
                "min" => VciNormalizer::MinDimClasses,
                "numerical" => VciNormalizer::Numerical,
                other => {
                    return Err(ParameterError::new_err(format!(
                        "normalizer must be 'min', 'numerical' or a positive int, got {other:?}"
                    )))
                }
            }
        };
        let g = self.geometry(py, weighting)?;
        py.detach(|| metrics::vci(&g, norm, rank, rtol))
            .py()
            .map(pinv_tuple)
    }
    #[pyo3(signature = (rank=None, rtol=None))]
    fn probe_mse(
        &mut self,
        py: Python<'_>,
        rank: Option<usize>,
        rtol: Option<f64>,
    ) -> PyResult<(f64, usize, &'static str, usize)> {
        let g = self.geometry(py, "weighted")?;
        py.detach(|| metrics::probe_mse(&g, rank, rtol))
            .py()
            .map(pinv_tuple)
    }
    #[pyo3(signature = (weighting, rank=None, rtol=None))]
    fn nc1(
        &mut self,
        py: Python<'_>,
        weighting: &str,
        rank: Option<usize>,
        rtol: Option<f64>,
    ) -> PyResult<(f64, usize, &'static str, usize)> {
        let g = self.geometry(py, weighting)?;
        py.detach(|| metrics::nc1(&g, rank, rtol))
            .py()
            .map(pinv_tuple)
    }
    #[pyo3(signature = (weighting, rtol=None))]
    fn nc1_split(
        &mut self,
        py: Python<'_>,
        weighting: &str,
        rtol: Option<f64>,
    ) -> PyResult<(f64, f64, usize)> {
        let g = self.geometry(py, weighting)?;
        py.detach(|| metrics::nc1_split(&g, rtol)).py()
    }
    fn squared_distance(&mut self, py: Python<'_>, weighting: &str) -> PyResult<f64> {
        Ok(metrics::squared_distance(&*self.geometry(py, weighting)?))
    }
    fn within_trace_per_dim(&mut self, py: Python<'_>, weighting: &str) -> PyResult<f64> {
        Ok(metrics::within_trace_per_dim(
            &*self.geometry(py, weighting)?,
        ))
    }
    fn cdnv(&mut self, py: Python<'_>, weighting: &str) -> PyResult<f64> {
        let g = self.geometry(py, weighting)?;
        Ok(py.detach(|| metrics::cdnv(&g)))
    }
    fn nc2(&mut self, py: Python<'_>, weighting: &str) -> PyResult<(f64, f64, f64, f64)> {
        let g = self.geometry(py, weighting)?;
        let r = py.detach(|| metrics::nc2(&g));
        Ok((
            r.equinorm,
            r.equiangularity,
            r.max_equiangularity,
            r.etf_error,
        ))
    }
    fn nc3<'py>(
        &mut self,
        py: Python<'py>,
        weighting: &str,
        classifier: &Bound<'py, PyAny>,
    ) -> PyResult<(f64, Bound<'py, PyArray1<f64>>)> {
        let w = matrix64(classifier, "classifier")?;
        let k = self.inner.num_classes();
        if w.shape() != [k, self.inner.dim()] {
            return Err(ShapeError::new_err(format!(
                "classifier must have shape ({k}, {}), got {:?}",
                self.inner.dim(),
                w.shape()
            )));
        }
        let wv = w.as_array().to_owned();
        let g = self.geometry(py, weighting)?;
        let (v, cos) = py
            .detach(|| metrics::nc3(&g, wv.as_slice().unwrap(), k))
            .py()?;
        Ok((v, Array1::from(cos).into_pyarray(py)))
    }
    fn cosine_metrics(&self) -> PyResult<(f64, f64, f64)> {
        metrics::cosine_metrics(&self.inner).py()
    }
    #[pyo3(signature = (features, classifier, bias=None))]
    fn nc4(
        &mut self,
        py: Python<'_>,
        features: &Bound<'_, PyAny>,
        classifier: &Bound<'_, PyAny>,
        bias: Option<PyReadonlyArray1<'_, f64>>,
    ) -> PyResult<f64> {
        let f = self::features(features, "features")?;
        let w = matrix64(classifier, "classifier")?;
        let g = self.geometry(py, "weighted")?;
        let (wv, bv) = (w.as_array(), bias.as_ref().map(|b| b.as_array()));
        with_features!(f, h => py.detach(|| samples::nc4(h, &g, wv, bv))).py()
    }
    fn nearest_class_mean<'py>(
        &mut self,
        py: Python<'py>,
        features: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let f = self::features(features, "features")?;
        let g = self.geometry(py, "weighted")?;
        let out = with_features!(f, h => py.detach(|| samples::nearest_class_mean(h, &g))).py()?;
        Ok(out
            .into_iter()
            .map(|k| k as i64)
            .collect::<Array1<i64>>()
            .into_pyarray(py))
    }
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
    let (wv, bv): (ArrayView2<'_, f64>, _) = (w.as_array(), bias.as_ref().map(|b| b.as_array()));
    let out =
        with_features!(f, h => py.detach(|| samples::classifier_predictions(h, wv, bv))).py()?;
    Ok(out
        .into_iter()
        .map(|k| k as i64)
        .collect::<Array1<i64>>()
        .into_pyarray(py))
}

fn activation(name: &str, params: Vec<f64>) -> PyResult<Activation> {
    Activation::from_name(name, &params).py()
}

fn projection(name: &str, density: f64) -> PyResult<Projection> {
    Ok(match name {
        "gaussian" => Projection::Gaussian,
        "orthogonal" => Projection::Orthogonal,
        "etf" => Projection::Etf,
        "sparse_ternary" => Projection::SparseTernary { density },
        other => {
            return Err(ParameterError::new_err(format!(
            "projection must be 'gaussian', 'orthogonal', 'etf' or 'sparse_ternary', got {other:?}"
        )))
        }
    })
}

#[pyfunction]
#[pyo3(signature = (name, params, tau, convention="paper000", closed_form=true))]
fn rf_coefficients(
    name: &str,
    params: Vec<f64>,
    tau: f64,
    convention: &str,
    closed_form: bool,
) -> PyResult<(f64, f64, f64)> {
    let act = activation(name, params)?;
    let conv = match convention {
        "paper000" => D2Convention::Paper000,
        "liao2018" => D2Convention::Liao2018,
        other => {
            return Err(ParameterError::new_err(format!(
                "convention must be 'paper000' or 'liao2018', got {other:?}"
            )))
        }
    };
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
    if !(tau > 0.0) || !tau.is_finite() {
        return Err(ParameterError::new_err(format!(
            "tau must be finite and > 0, got {tau}"
        )));
    }
    let m = if closed_form {
        rf::closed_form_moments(&act, tau).unwrap_or_else(|| rf::quadrature_moments(&act, tau))
    } else {
        rf::quadrature_moments(&act, tau)
    };
    Ok((m[0], m[1], m[2], m[3]))
}

#[pyfunction]
fn rf_has_closed_form(name: &str, params: Vec<f64>) -> PyResult<bool> {
    Ok(rf::closed_form_moments(&activation(name, params)?, 1.0).is_some())
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
    let out = py.detach(|| v.mapv(|t| act.apply(t)));
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
    let k = py
        .detach(|| rf::expected_kernel(&act, xv, yv, series, order))
        .py()?;
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
    let proj = self::projection(projection, density)?;
    let f = self::features(x, "x")?;
    Ok(match &f {
        Features::F32(a) => {
            let v = a.as_array();
            py.detach(|| rf::empirical_kernel(&act, v, num_features, proj, seed))
                .py()?
                .into_pyarray(py)
                .into_any()
        }
        Features::F64(a) => {
            let v = a.as_array();
            py.detach(|| rf::empirical_kernel(&act, v, num_features, proj, seed))
                .py()?
                .into_pyarray(py)
                .into_any()
        }
    })
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
    let proj = self::projection(projection, density)?;
    if dim == 0 {
        return Err(ParameterError::new_err("dim must be positive"));
    }
    let w = py
        .detach(|| rf::projection_rows(proj, start, rows, dim, seed))
        .py()?;
    Ok(Array2::from_shape_vec((rows, dim), w)
        .unwrap()
        .into_pyarray(py))
}

#[pymodule]
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

use crate::transfer::{self as xfer, TransferabilityStats};

/// `(value, rank of Σ_T^†)` of the H-score `tr(Σ_T^† Σ_B)`.
#[pyfunction]
#[pyo3(signature = (stats, rank=None, rtol=None))]
fn transfer_hscore(
    py: Python<'_>,
    stats: PyRef<'_, PyCollapseStats>,
    rank: Option<usize>,
    rtol: Option<f64>,
) -> PyResult<(f64, usize)> {
    let inner = &stats.inner;
    py.detach(|| xfer::hscore(inner, rank, rtol)).py()
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
    stats: PyRef<'py, PyCollapseStats>,
    parity: bool,
    tol: f64,
    max_iter: usize,
    rtol: Option<f64>,
) -> PyResult<LogMeTuple<'py>> {
    let inner = &stats.inner;
    let r = py
        .detach(|| xfer::logme(inner, parity, tol, max_iter, rtol))
        .py()?;
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
    stats: PyRef<'py, PyCollapseStats>,
    lambdas: Vec<f64>,
    rtol: Option<f64>,
) -> PyResult<RidgeTuple<'py>> {
    let inner = &stats.inner;
    let (path, mse) = py
        .detach(|| {
            let path = xfer::RidgePath::new(inner, rtol)?;
            let mse = path.train_mse(&lambdas)?;
            Ok::<_, EtfError>((path, mse))
        })
        .py()?;
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

/// The raw transferability statistics; `etfcore.transfer.TransferabilityStats` wraps it.
#[pyclass(module = "etfcore._core", name = "RawTransferabilityStats")]
struct PyTransferabilityStats {
    inner: TransferabilityStats,
}

#[pymethods]
impl PyTransferabilityStats {
    #[new]
    fn new(num_classes: usize, dim: usize) -> PyResult<Self> {
        Ok(PyTransferabilityStats {
            inner: TransferabilityStats::new(num_classes, dim).py()?,
        })
    }
    fn update(
        &mut self,
        py: Python<'_>,
        features: &Bound<'_, PyAny>,
        labels: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<()> {
        let f = self::features(features, "features")?;
        let y = labels.as_array();
        let inner = &mut self.inner;
        with_features!(f, h => py.detach(|| inner.update(h, y))).py()
    }
    fn merge(&mut self, py: Python<'_>, other: PyRef<'_, PyTransferabilityStats>) -> PyResult<()> {
        let (inner, o) = (&mut self.inner, &other.inner);
        py.detach(|| inner.merge(o)).py()
    }
    fn copy(&self) -> Self {
        PyTransferabilityStats {
            inner: self.inner.clone(),
        }
    }
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let inner = py.detach(|| TransferabilityStats::from_bytes(data)).py()?;
        Ok(PyTransferabilityStats { inner })
    }
    fn __eq__(&self, other: PyRef<'_, PyTransferabilityStats>) -> bool {
        self.inner == other.inner
    }
    /// A copy of the inner collapse statistics.
    fn collapse_stats(&self) -> PyCollapseStats {
        PyCollapseStats {
            inner: self.inner.collapse_stats().clone(),
            balanced_scatter: None,
            cache: HashMap::new(),
        }
    }
    #[getter]
    fn fourth_moment(&self) -> f64 {
        self.inner.fourth_moment()
    }
    #[getter]
    fn cubic_sum<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        Array1::from(self.inner.cubic_sum().to_vec()).into_pyarray(py)
    }
    #[getter]
    fn class_sq_sums<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f64>> {
        let st = self.inner.collapse_stats();
        Array2::from_shape_vec(
            (st.num_classes(), st.dim()),
            self.inner.class_sq_sums().to_vec(),
        )
        .expect("K × p")
        .into_pyarray(py)
    }
    #[pyo3(signature = (rtol=None))]
    fn regularized_hscore(&self, py: Python<'_>, rtol: Option<f64>) -> PyResult<(f64, f64, usize)> {
        let inner = &self.inner;
        py.detach(|| inner.regularized_hscore(rtol)).py()
    }
    #[pyo3(signature = (var_floor=None))]
    fn gbc(&self, py: Python<'_>, var_floor: Option<f64>) -> PyResult<f64> {
        let inner = &self.inner;
        py.detach(|| inner.gbc(var_floor)).py()
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
