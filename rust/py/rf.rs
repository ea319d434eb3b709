//! The random-feature kernels (`etfcore.rf`).

use super::convert::{self as convert, with_features, Features};
use super::errors::{detach, IntoPyResult};
use crate::rf::{self, Activation, D2Convention, Projection};
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray2};
use pyo3::prelude::*;

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
    let f = convert::features(x, "x")?;
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
    convert::rows(py, w, rows, dim)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(rf_coefficients, m)?)?;
    m.add_function(wrap_pyfunction!(rf_moments, m)?)?;
    m.add_function(wrap_pyfunction!(rf_has_closed_form, m)?)?;
    m.add_function(wrap_pyfunction!(rf_apply, m)?)?;
    m.add_function(wrap_pyfunction!(rf_expected_kernel, m)?)?;
    m.add_function(wrap_pyfunction!(rf_empirical_kernel, m)?)?;
    m.add_function(wrap_pyfunction!(rf_projection, m)?)?;
    Ok(())
}
