//! Transfer evaluation (`etfcore.transfer`): H-score, LogME and the ridge-probe path read from
//! a `RawCollapseStats` (sharing its cached factorisations), and `RawTransferabilityStats`.

use super::convert::{self as convert, with_features, Features, Locked};
use super::errors::{detach, IntoPyResult};
use super::stats::PyCollapseStats;
use crate::linalg::to_ndarray;
use crate::transfer::{self as xfer, TransferabilityStats};
use ndarray::Array1;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::RwLock;

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
        let f = convert::features(features, "features")?;
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
            Ok((
                st.stats().num_classes(),
                st.stats().dim(),
                s.class_sq_sums().to_vec(),
            ))
        })?;
        convert::rows(py, v, k, p)
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

/// GBC from per-class moments (`classes × p` means and population variances).
#[pyfunction]
#[pyo3(signature = (means, variances, var_floor=None))]
fn transfer_gbc_from_moments(
    py: Python<'_>,
    means: PyReadonlyArray2<'_, f64>,
    variances: PyReadonlyArray2<'_, f64>,
    var_floor: Option<f64>,
) -> PyResult<f64> {
    let (m, v) = (means.as_array(), variances.as_array());
    detach(py, || xfer::gbc_from_moments(m, v, var_floor))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(transfer_hscore, m)?)?;
    m.add_function(wrap_pyfunction!(transfer_logme, m)?)?;
    m.add_function(wrap_pyfunction!(transfer_ridge_path, m)?)?;
    m.add_function(wrap_pyfunction!(transfer_gbc_from_moments, m)?)?;
    m.add_class::<PyTransferabilityStats>()?;
    m.add("XFER_FORMAT_VERSION", xfer::XFER_FORMAT_VERSION)?;
    Ok(())
}
