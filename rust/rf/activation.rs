//! Activation functions σ: parsing, evaluation, and which have closed-form moments.

use super::moments::closed_form_moments;
use crate::error::{EtfError, Result};
use ndarray::{Array2, ArrayView2};
use std::f64::consts::{PI, SQRT_2};

/// Activation functions σ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Linear,
    /// `a2 t² + a1 t + a0`
    Polynomial {
        a0: f64,
        a1: f64,
        a2: f64,
    },
    Relu,
    /// `max(t, 0) + slope · min(t, 0)`
    LeakyRelu {
        slope: f64,
    },
    Abs,
    Sign,
    /// `1{t > 0}`
    Heaviside,
    Sin,
    Cos,
    Erf,
    Tanh,
    Exp,
    /// `1{t > θ₊} - 1{t < θ₋}` with `θ₋ ≤ θ₊`.
    Ternary {
        lower: f64,
        upper: f64,
    },
}

pub(crate) fn phi(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
}

pub(crate) fn big_phi(x: f64) -> f64 {
    0.5 * libm::erfc(-x / SQRT_2)
}

impl Activation {
    /// Parses a name; parameters come separately.
    pub fn from_name(name: &str, params: &[f64]) -> Result<Self> {
        let need = |n: usize| -> Result<()> {
            if params.len() != n {
                return Err(EtfError::Parameter(format!(
                    "activation {name:?} takes {n} parameter(s), got {}",
                    params.len()
                )));
            }
            Ok(())
        };
        let a = match name {
            "linear" => {
                need(0)?;
                Activation::Linear
            }
            "polynomial" => {
                need(3)?;
                Activation::Polynomial {
                    a0: params[0],
                    a1: params[1],
                    a2: params[2],
                }
            }
            "relu" => {
                need(0)?;
                Activation::Relu
            }
            "leaky_relu" => {
                need(1)?;
                Activation::LeakyRelu { slope: params[0] }
            }
            "abs" => {
                need(0)?;
                Activation::Abs
            }
            "sign" => {
                need(0)?;
                Activation::Sign
            }
            "heaviside" => {
                need(0)?;
                Activation::Heaviside
            }
            "sin" => {
                need(0)?;
                Activation::Sin
            }
            "cos" => {
                need(0)?;
                Activation::Cos
            }
            "erf" => {
                need(0)?;
                Activation::Erf
            }
            "tanh" => {
                need(0)?;
                Activation::Tanh
            }
            "exp" => {
                need(0)?;
                Activation::Exp
            }
            "ternary" => {
                need(2)?;
                Activation::Ternary {
                    lower: params[0],
                    upper: params[1],
                }
            }
            _ => {
                return Err(EtfError::Parameter(format!(
                "unknown activation {name:?}; known: linear, polynomial, relu, leaky_relu, abs, \
                     sign, heaviside, sin, cos, erf, tanh, exp, ternary"
            )))
            }
        };
        if params.iter().any(|v| !v.is_finite()) {
            return Err(EtfError::Parameter(format!(
                "activation {name:?} parameters must be finite"
            )));
        }
        if let Activation::Ternary { lower, upper } = a {
            if lower > upper {
                return Err(EtfError::Parameter(format!(
                    "ternary thresholds need lower <= upper, got lower={lower}, upper={upper}"
                )));
            }
        }
        Ok(a)
    }

    /// σ applied to every entry.
    pub fn apply_all(&self, values: ArrayView2<'_, f64>) -> Array2<f64> {
        values.mapv(|t| self.apply(t))
    }

    /// Whether `(F_0, F_1, F_2, E σ²)` have a closed form (otherwise quadrature is used).
    pub fn has_closed_form(&self) -> bool {
        closed_form_moments(self, 1.0).is_some()
    }

    #[inline]
    pub fn apply(&self, t: f64) -> f64 {
        match *self {
            Activation::Linear => t,
            Activation::Polynomial { a0, a1, a2 } => (a2 * t + a1) * t + a0,
            Activation::Relu => t.max(0.0),
            Activation::LeakyRelu { slope } => {
                if t > 0.0 {
                    t
                } else {
                    slope * t
                }
            }
            Activation::Abs => t.abs(),
            Activation::Sign => {
                if t > 0.0 {
                    1.0
                } else if t < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Activation::Heaviside => (t > 0.0) as i32 as f64,
            Activation::Sin => t.sin(),
            Activation::Cos => t.cos(),
            Activation::Erf => libm::erf(t),
            Activation::Tanh => t.tanh(),
            Activation::Exp => t.exp(),
            Activation::Ternary { lower, upper } => {
                (t > upper) as i32 as f64 - (t < lower) as i32 as f64
            }
        }
    }

    /// Points where σ is not smooth (quadrature panels are split there).
    pub(crate) fn kinks(&self) -> Vec<f64> {
        match *self {
            Activation::Relu
            | Activation::LeakyRelu { .. }
            | Activation::Abs
            | Activation::Sign
            | Activation::Heaviside => {
                vec![0.0]
            }
            Activation::Ternary { lower, upper } => vec![lower, upper],
            _ => vec![],
        }
    }
}
