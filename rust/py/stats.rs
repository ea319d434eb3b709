//! `RawCollapseStats`: the statistics with their cached geometry (a core `CollapseAnalysis`)
//! behind a read-write lock, and every metric read from them.

use super::convert::{
    self as convert, columns_as_rows, counts, faer_to_numpy, indices, matrix64, pinv_tuple, rows,
    square, unsigned, with_features, Features, Locked, NormalizerArg, PinvTuple,
};
use super::errors::{detach, IntoPyResult};
use crate::geometry::CollapseAnalysis;
use crate::linalg::Precision;
use crate::metrics::{self, samples, Report, VciNormalizer, Weighting};
use crate::stats::CollapseStats;
use ndarray::Array1;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::sync::RwLock;

/// The statistics object; `etfcore.CollapseStats` wraps it with the documented API.
///
/// The state sits behind a read-write lock, so one object is safe to share between threads:
/// updates and merges serialise (every batch lands), metrics read concurrently. Locks are
/// only taken with the GIL released (inside [`detach`]).
#[pyclass(module = "etfcore._core", name = "RawCollapseStats", frozen)]
pub(super) struct PyCollapseStats {
    inner: RwLock<CollapseAnalysis>,
}

impl Locked for PyCollapseStats {
    type State = CollapseAnalysis;
    fn lock(&self) -> &RwLock<CollapseAnalysis> {
        &self.inner
    }
    fn from_lock(inner: RwLock<CollapseAnalysis>) -> Self {
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
            CollapseAnalysis::new(num_classes, dim, track_class_scatter)
        })?;
        Ok(Self::wrap(s))
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

    /// Adds `other` (a snapshot of it, so `s.merge(s)` doubles and two objects merging into
    /// each other from two threads cannot deadlock).
    fn merge(&self, py: Python<'_>, other: &Bound<'_, PyCollapseStats>) -> PyResult<()> {
        let o = other.get();
        detach(py, || {
            let snapshot = o.read().stats().clone();
            self.write().merge(&snapshot)
        })
    }

    fn reshift(&self, py: Python<'_>, shift: PyReadonlyArray1<'_, f64>) -> PyResult<()> {
        let v = shift.as_array();
        detach(py, || self.write().reshift(&v.to_vec()))
    }

    fn buffer_bytes(&self, py: Python<'_>) -> PyResult<usize> {
        detach(py, || Ok(self.read().stats().buffer_bytes()))
    }

    fn release_buffers(&self, py: Python<'_>) -> PyResult<()> {
        detach(py, || {
            self.write().release_buffers();
            Ok(())
        })
    }

    fn copy(&self, py: Python<'_>) -> PyResult<Self> {
        Ok(Self::wrap(detach(py, || Ok(self.read().clone()))?))
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let b = detach(py, || Ok(self.read().stats().to_bytes()))?;
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
                .map(CollapseAnalysis::from)
        })?;
        Ok(Self::wrap(s))
    }

    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        Ok(Self::wrap(detach(py, || {
            CollapseStats::from_bytes(data).map(CollapseAnalysis::from)
        })?))
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyCollapseStats>) -> PyResult<bool> {
        let o = other.get();
        if std::ptr::eq(self, o) {
            return Ok(true);
        }
        detach(py, || {
            let snapshot = o.read().stats().clone();
            Ok(*self.read().stats() == snapshot)
        })
    }

    #[getter]
    fn num_classes(&self, py: Python<'_>) -> PyResult<usize> {
        detach(py, || Ok(self.read().stats().num_classes()))
    }
    #[getter]
    fn dim(&self, py: Python<'_>) -> PyResult<usize> {
        detach(py, || Ok(self.read().stats().dim()))
    }
    #[getter]
    fn num_samples(&self, py: Python<'_>) -> PyResult<u64> {
        detach(py, || Ok(self.read().stats().num_samples()))
    }
    #[getter]
    fn track_class_scatter(&self, py: Python<'_>) -> PyResult<bool> {
        detach(py, || Ok(self.read().stats().tracks_class_scatter()))
    }
    #[getter]
    fn precision(&self, py: Python<'_>) -> PyResult<Option<&'static str>> {
        detach(py, || {
            Ok(self.read().stats().precision().map(Precision::as_str))
        })
    }
    #[getter]
    fn class_counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let c = detach(py, || Ok(self.read().stats().counts().to_vec()))?;
        Ok(counts(py, &c))
    }
    #[getter]
    fn shift<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArray1<f64>>>> {
        let s = detach(py, || Ok(self.read().stats().shift().map(|s| s.to_vec())))?;
        Ok(s.map(|s| Array1::from(s).into_pyarray(py)))
    }
    #[getter]
    fn class_sums<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (v, k, p) = detach(py, || {
            let a = self.read();
            let s = a.stats();
            Ok((s.class_sums().to_vec(), s.num_classes(), s.dim()))
        })?;
        rows(py, v, k, p)
    }
    #[getter]
    fn class_unit_sums<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (v, k, p) = detach(py, || {
            let a = self.read();
            let s = a.stats();
            Ok((s.class_unit_sums().to_vec(), s.num_classes(), s.dim()))
        })?;
        rows(py, v, k, p)
    }
    #[getter]
    fn class_sq_norms<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let v = detach(py, || Ok(self.read().stats().class_sq_norms().to_vec()))?;
        Ok(Array1::from(v).into_pyarray(py))
    }
    #[getter]
    fn class_zero_rows<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let c = detach(py, || Ok(self.read().stats().class_zero_rows().to_vec()))?;
        Ok(counts(py, &c))
    }
    #[getter]
    fn scatter<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (v, p) = detach(py, || {
            let a = self.read();
            let s = a.stats();
            Ok((s.scatter(), s.dim()))
        })?;
        square(py, v, p)
    }
    fn class_scatter<'py>(&self, py: Python<'py>, k: usize) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (v, p) = detach(py, || {
            let a = self.read();
            let s = a.stats();
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
            let a = self.read();
            let s = a.stats();
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
        let f = convert::features(features, "features")?;
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
            let a = self.read();
            let s = a.stats();
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
            let a = self.read();
            let s = a.stats();
            metrics::nc3(&*a.geometry(w)?, cv, s.num_classes())
        })?;
        Ok((r.distance, Array1::from(r.cosines).into_pyarray(py)))
    }
    fn cosine_metrics(&self, py: Python<'_>) -> PyResult<(f64, f64, f64)> {
        detach(py, || metrics::cosine_metrics(self.read().stats()))
    }
    #[pyo3(signature = (features, classifier, bias=None))]
    fn nc4(
        &self,
        py: Python<'_>,
        features: &Bound<'_, PyAny>,
        classifier: &Bound<'_, PyAny>,
        bias: Option<PyReadonlyArray1<'_, f64>>,
    ) -> PyResult<f64> {
        let f = convert::features(features, "features")?;
        let w = matrix64(classifier, "classifier")?;
        let (wv, bv) = (w.as_array(), bias.as_ref().map(|b| b.as_array()));
        with_features!(f, h => detach(py, || {
            let a = self.read();
            let s = a.stats();
            samples::nc4(h, &*a.geometry(Weighting::Weighted)?, s.num_classes(), wv, bv)
        }))
    }
    fn nearest_class_mean<'py>(
        &self,
        py: Python<'py>,
        features: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let f = convert::features(features, "features")?;
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

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCollapseStats>()?;
    m.add("FORMAT_VERSION", crate::stats::FORMAT_VERSION)?;
    m.add("CHUNK_ROWS", crate::stats::CHUNK_ROWS)?;
    Ok(())
}
