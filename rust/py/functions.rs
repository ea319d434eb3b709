//! The module-level functions: frames, the pseudo-inverse, and the sample-level metrics that
//! need no statistics.

use super::convert::{self as convert, indices, matrix64, with_features, Features};
use super::errors::{detach, ParameterError};
use crate::etf;
use crate::linalg::{pinv_psd as core_pinv_psd, RankPolicy};
use crate::metrics::samples;
use ndarray::Array1;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::prelude::*;

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
    let f = convert::features(features, "features")?;
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
    let f = convert::features(features, "features")?;
    let w = matrix64(classifier, "classifier")?;
    let (wv, bv) = (w.as_array(), bias.as_ref().map(|b| b.as_array()));
    let out = with_features!(f, h => detach(py, || samples::classifier_predictions(h, wv, bv)))?;
    Ok(indices(py, out))
}

/// A frame in float32 or float64, as numpy.
fn frame_array<'py>(
    py: Python<'py>,
    float32: bool,
    make32: impl FnOnce() -> crate::Result<ndarray::Array2<f32>> + Send,
    make64: impl FnOnce() -> crate::Result<ndarray::Array2<f64>> + Send,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(if float32 {
        detach(py, make32)?.into_pyarray(py).into_any()
    } else {
        detach(py, make64)?.into_pyarray(py).into_any()
    })
}

#[pyfunction]
#[pyo3(signature = (num_classes, dim, seed, float32=false))]
fn sphere_codes<'py>(
    py: Python<'py>,
    num_classes: usize,
    dim: usize,
    seed: u64,
    float32: bool,
) -> PyResult<Bound<'py, PyAny>> {
    frame_array(
        py,
        float32,
        || etf::sphere_codes::<f32>(num_classes, dim, seed),
        || etf::sphere_codes::<f64>(num_classes, dim, seed),
    )
}

/// The hypercube (`kind = "hypercube"`) or cross-polytope (`"orthoplex"`) vertices.
#[pyfunction]
#[pyo3(signature = (kind, num_classes, dim, float32=false))]
fn vertex_frame<'py>(
    py: Python<'py>,
    kind: &str,
    num_classes: usize,
    dim: usize,
    float32: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let orthoplex = match kind {
        "hypercube" => false,
        "orthoplex" => true,
        _ => {
            return Err(ParameterError::new_err(format!(
                "kind must be 'hypercube' or 'orthoplex', got {kind:?}"
            )))
        }
    };
    frame_array(
        py,
        float32,
        || match orthoplex {
            true => etf::orthoplex_frame::<f32>(num_classes, dim),
            false => etf::hypercube_frame::<f32>(num_classes, dim),
        },
        || match orthoplex {
            true => etf::orthoplex_frame::<f64>(num_classes, dim),
            false => etf::hypercube_frame::<f64>(num_classes, dim),
        },
    )
}

/// `(max |cos|, max cos, Welch bound)` of the rows of a float32/float64 frame.
#[pyfunction]
fn frame_coherence(py: Python<'_>, frame: &Bound<'_, PyAny>) -> PyResult<(f64, f64, f64)> {
    let f = convert::features(frame, "frame")?;
    let c = with_features!(f, w => detach(py, || etf::frame_coherence(w)))?;
    Ok((c.max_abs_cosine, c.max_cosine, c.welch_bound))
}

type OptimisedFrame<'py> = (Bound<'py, PyArray2<f64>>, f64, f64, f64);

/// A low-coherence frame with `(max |cos|, max cos, Welch bound)`.
#[pyfunction]
#[pyo3(signature = (num_classes, dim, seed, steps))]
fn min_coherence_frame<'py>(
    py: Python<'py>,
    num_classes: usize,
    dim: usize,
    seed: u64,
    steps: usize,
) -> PyResult<OptimisedFrame<'py>> {
    let (w, c) = detach(py, || {
        etf::min_coherence_frame(num_classes, dim, seed, steps)
    })?;
    Ok((
        w.into_pyarray(py),
        c.max_abs_cosine,
        c.max_cosine,
        c.welch_bound,
    ))
}

/// The checksum (FNV-1a, 64-bit) that every serialised state ends with, for statistics
/// assembled outside the core.
#[pyfunction]
fn format_checksum(py: Python<'_>, data: &[u8]) -> u64 {
    py.detach(|| crate::stats::format::checksum(data))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(format_checksum, m)?)?;
    m.add_function(wrap_pyfunction!(simplex_etf, m)?)?;
    m.add_function(wrap_pyfunction!(orthogonal_frame, m)?)?;
    m.add_function(wrap_pyfunction!(sphere_codes, m)?)?;
    m.add_function(wrap_pyfunction!(vertex_frame, m)?)?;
    m.add_function(wrap_pyfunction!(frame_coherence, m)?)?;
    m.add_function(wrap_pyfunction!(min_coherence_frame, m)?)?;
    m.add_function(wrap_pyfunction!(pinv_psd, m)?)?;
    m.add_function(wrap_pyfunction!(numerical_rank, m)?)?;
    m.add_function(wrap_pyfunction!(classifier_predictions, m)?)?;
    Ok(())
}
