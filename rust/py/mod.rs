//! The Python binding: converts arguments and results, releases the GIL around core work and
//! maps `EtfError` once onto the `etfcore` exception hierarchy. No logic lives here: parsing
//! (`FromStr`), validation, caches and state are the core's.
//!
//! Conventions for every binding (appended ones included):
//! - arrays arrive as borrowed numpy arrays (`features()` for float32/float64 matrices,
//!   `PyReadonlyArray{1,2}<f64|i64>` otherwise), viewed with `as_array()`, never copied;
//! - the core call runs inside `detach`: GIL released, a panic turned into an
//!   `EtfcoreError` subclass (a safety net only: the core refuses bad input itself), and the
//!   core's `Result` mapped by `to_py`;
//! - results go back as numpy arrays (`into_pyarray`), tuples or dicts of plain values.
//!
//! One file per area: `errors` (the exception list, `to_py`, `detach`), `convert` (numpy
//! ↔ core), `functions`, `stats` (`RawCollapseStats`), `transfer`, `rf`.

mod convert;
mod errors;
mod functions;
mod rf;
mod stats;
mod transfer;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    functions::register(m)?;
    stats::register(m)?;
    rf::register(m)?;
    errors::register(m)?;
    transfer::register(m)?;
    Ok(())
}
