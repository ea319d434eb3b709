//! The expected kernel `K_ij = E_w[σ(wᵀx_i) σ(wᵀx_j)]` for Gaussian `w`: closed forms or the
//! Hermite (Mehler) series.

use super::activation::Activation;
use super::moments::{closed_form_moments, hermite_moments_normalized, MAX_SERIES_ORDER};
use crate::alloc::{check_dense_size, check_work};
use crate::error::{EtfError, Result};
use crate::linalg::Real;
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use std::f64::consts::PI;

/// Exact expected kernel `E_w[σ(wᵀx_i) σ(wᵀx_j)]`, w ~ N(0, I_p), for the rows of `x` (and `y`):
/// closed forms for linear, polynomial, ReLU, leaky ReLU, |t|, sign, Heaviside, erf, sin, cos,
/// exp; otherwise (or with `series = true`) the Mehler series
/// `Σ_{k ≤ kmax} ρ^k/k! h_k(r_i) h_k(r_j)` off the diagonal and `E σ²(‖x_i‖ ξ)` on it.
pub fn expected_kernel<T: Real>(
    act: &Activation,
    x: ArrayView2<'_, T>,
    y: Option<ArrayView2<'_, T>>,
    series: bool,
    kmax: usize,
) -> Result<Array2<f64>> {
    let yv = y.unwrap_or(x.view());
    let (xf, yf) = checked_inputs(x, yv, kmax)?;
    let g = Inner {
        c: xf.dot(&yf.t()),
        rx: xf.rows().into_iter().map(|r| r.dot(&r)).collect(),
        ry: yf.rows().into_iter().map(|r| r.dot(&r)).collect(),
    };
    let closed = !series
        && closed_form_moments(act, 1.0).is_some()
        && !matches!(act, Activation::Ternary { .. });
    let k = if closed {
        closed_kernel(act, &g)
    } else {
        series_kernel(act, &g, y.is_none(), kmax)
    };
    check_kernel_finite(&k, "the expected kernel")?;
    Ok(k)
}

/// The inner products `x_iᵀy_j` and squared norms of both sides.
struct Inner {
    c: Array2<f64>,
    rx: Vec<f64>,
    ry: Vec<f64>,
}

/// Checks shapes, the series order, the size and work, and finiteness; the inputs in f64.
fn checked_inputs<T: Real>(
    x: ArrayView2<'_, T>,
    y: ArrayView2<'_, T>,
    kmax: usize,
) -> Result<(Array2<f64>, Array2<f64>)> {
    let p = x.ncols();
    if y.ncols() != p {
        return Err(EtfError::Shape(format!(
            "x has {p} columns but y has {}",
            y.ncols()
        )));
    }
    if kmax > MAX_SERIES_ORDER {
        return Err(EtfError::Parameter(format!(
            "order={kmax} exceeds the largest series order {MAX_SERIES_ORDER}"
        )));
    }
    check_dense_size(x.nrows(), y.nrows(), "the kernel")?;
    check_work(
        x.nrows() as u128 * y.nrows() as u128 * (p as u128 + kmax as u128 + 1),
        "the expected kernel",
    )?;
    let xf = x.mapv(|v| v.to_f64());
    let yf = y.mapv(|v| v.to_f64());
    for (name, m) in [("x", &xf), ("y", &yf)] {
        if let Some(((i, j), _)) = m.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(EtfError::NonFinite {
                what: name.into(),
                row: i,
                col: j,
            });
        }
    }
    Ok((xf, yf))
}

/// The kernel from the closed form of each pair.
fn closed_kernel(act: &Activation, g: &Inner) -> Array2<f64> {
    let (n1, n2) = g.c.dim();
    let mut k = Array2::<f64>::zeros((n1, n2));
    k.axis_iter_mut(ndarray::Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut row)| {
            for j in 0..n2 {
                row[j] = closed_pair(act, g.rx[i], g.ry[j], g.c[[i, j]]);
            }
        });
    k
}

/// The kernel from the Mehler series of order `kmax` (`same`: `y` is `x`, whose diagonal is
/// `E σ²(‖x_i‖ ξ)` exactly).
fn series_kernel(act: &Activation, g: &Inner, same: bool, kmax: usize) -> Array2<f64> {
    let (n1, n2) = g.c.dim();
    let mx: Vec<(Vec<f64>, f64)> =
        g.rx.par_iter()
            .map(|&r| hermite_moments_normalized(act, r, kmax))
            .collect();
    let my: Vec<(Vec<f64>, f64)> = if same {
        mx.clone()
    } else {
        g.ry.par_iter()
            .map(|&r| hermite_moments_normalized(act, r, kmax))
            .collect()
    };
    let mut k = Array2::<f64>::zeros((n1, n2));
    k.axis_iter_mut(ndarray::Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut row)| {
            for j in 0..n2 {
                if same && i == j {
                    row[j] = mx[i].1;
                    continue;
                }
                let denom = (g.rx[i] * g.ry[j]).sqrt();
                let rho = if denom > 0.0 {
                    (g.c[[i, j]] / denom).clamp(-1.0, 1.0)
                } else {
                    0.0
                };
                let (hx, hy) = (&mx[i].0, &my[j].0);
                let mut acc = 0.0;
                let mut rp = 1.0;
                for kk in 0..=kmax {
                    acc += rp * hx[kk] * hy[kk];
                    rp *= rho;
                }
                row[j] = acc;
            }
        });
    k
}

/// `Numerical` error naming the first non-finite kernel entry (an activation that overflows
/// or loses its argument at this input scale) instead of returning it.
pub(crate) fn check_kernel_finite(k: &Array2<f64>, what: &str) -> Result<()> {
    if let Some(((i, j), v)) = k.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(EtfError::Numerical(format!(
            "{what} is not finite at ({i}, {j}) ({v}): the activation overflows or the input \
             norms leave the f64 range at this scale; rescale the inputs"
        )));
    }
    Ok(())
}

pub(crate) fn closed_pair(act: &Activation, ri: f64, rj: f64, c: f64) -> f64 {
    let nn = (ri * rj).sqrt();
    let rho = if nn > 0.0 {
        (c / nn).clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let theta = rho.acos();
    let relu = |th: f64| nn * (th.sin() + (PI - th) * th.cos()) / (2.0 * PI);
    match *act {
        Activation::Linear => c,
        Activation::Polynomial { a0, a1, a2 } => {
            a2 * a2 * (ri * rj + 2.0 * c * c) + a1 * a1 * c + a0 * a2 * (ri + rj) + a0 * a0
        }
        Activation::Relu => relu(theta),
        Activation::LeakyRelu { slope: a } => {
            (1.0 + a * a) * relu(theta)
                - 2.0 * a * nn * (theta.sin() - theta * theta.cos()) / (2.0 * PI)
        }
        Activation::Abs => 2.0 / PI * nn * ((1.0 - rho * rho).max(0.0).sqrt() + rho * rho.asin()),
        Activation::Sign => 2.0 / PI * rho.asin(),
        Activation::Heaviside => (PI - theta) / (2.0 * PI),
        Activation::Erf => {
            2.0 / PI * (2.0 * c / ((1.0 + 2.0 * ri) * (1.0 + 2.0 * rj)).sqrt()).asin()
        }
        Activation::Sin => (-(ri + rj) / 2.0).exp() * c.sinh(),
        Activation::Cos => (-(ri + rj) / 2.0).exp() * c.cosh(),
        Activation::Exp => ((ri + rj + 2.0 * c) / 2.0).exp(),
        Activation::Tanh | Activation::Ternary { .. } => unreachable!(),
    }
}
