//! The one error type of the core. The Python binding maps each variant once to an
//! `etfcore.EtfcoreError` subclass (all of them `ValueError`s).

use std::fmt;

/// Everything that can go wrong in the core. Each message names the problem and,
/// where it helps, the offending position or value.
#[derive(Debug, Clone, PartialEq)]
pub enum EtfError {
    /// Wrong number of dimensions, wrong shape, or lengths that do not match.
    Shape(String),
    /// An array of a type the core does not accept.
    DType(String),
    /// NaN or infinity in an input, with its position.
    NonFinite {
        what: String,
        row: usize,
        col: usize,
    },
    /// A label that is negative, not below the number of classes, or not an integer.
    Label(String),
    /// Fewer than two classes with samples (a metric needs at least two).
    TooFewClasses { present: usize, needed: usize },
    /// A dimension that cannot hold the requested object (e.g. an ETF with p < K-1).
    Dimension(String),
    /// Two statistics that cannot be combined (different K, p, options or format version).
    Incompatible(String),
    /// Serialised bytes that are truncated, tampered with or of an unknown version.
    Corrupt(String),
    /// A parameter outside its domain (an unknown weighting, a negative rank, ...).
    Parameter(String),
    /// Input that is valid in form but degenerate for the requested metric (zero rows for a cosine).
    Degenerate(String),
    /// A numerical routine failed (an eigendecomposition that did not converge).
    Numerical(String),
}

pub type Result<T> = std::result::Result<T, EtfError>;

impl fmt::Display for EtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtfError::Shape(m)
            | EtfError::DType(m)
            | EtfError::Label(m)
            | EtfError::Dimension(m)
            | EtfError::Incompatible(m)
            | EtfError::Corrupt(m)
            | EtfError::Parameter(m)
            | EtfError::Degenerate(m)
            | EtfError::Numerical(m) => f.write_str(m),
            EtfError::NonFinite { what, row, col } => {
                write!(
                    f,
                    "{what} contains a non-finite value (NaN or Inf) at row {row}, column {col}"
                )
            }
            EtfError::TooFewClasses { present, needed } => write!(
                f,
                "at least {needed} classes with samples are needed, but only {present} present"
            ),
        }
    }
}

impl std::error::Error for EtfError {}
