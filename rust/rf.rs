//! Random-feature kernels (Tiomoko Ali et al., fixed random classifier; Liao & Couillet 2018). Samples are rows.
//!
//! - [`Activation`]: σ, with `F_k(τ) = τ^{-k/2} E[σ(√τ ξ) He_k(ξ)]` by quadrature for any σ
//!   and in closed form where one exists, and the coefficients `d0, d1, d2`.
//! - [`expected_kernel`]: `K_ij = E_w[σ(wᵀx_i) σ(wᵀx_j)]` for Gaussian `w`, closed forms or the
//!   Hermite (Mehler) series.
//! - [`empirical_kernel`]: `(1/m) σ(X Wᵀ) σ(X Wᵀ)ᵀ` in blocks of projection rows, generated
//!   block by block from the seed (never holding the `n × m` features nor `W`).

use crate::error::{check_dense_size, check_work, probe_alloc, try_zeros, EtfError, Result};
use crate::linalg::Real;
use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
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

fn phi(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
}
fn big_phi(x: f64) -> f64 {
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
    fn kinks(&self) -> Vec<f64> {
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

    /// Is σ odd (so `F_0 = F_2 = 0`)?
    pub fn is_odd(&self) -> bool {
        match *self {
            Activation::Linear
            | Activation::Sign
            | Activation::Sin
            | Activation::Erf
            | Activation::Tanh => true,
            Activation::Polynomial { a0, a2, .. } => a0 == 0.0 && a2 == 0.0,
            Activation::LeakyRelu { slope } => slope == 1.0,
            Activation::Ternary { lower, upper } => lower == -upper,
            _ => false,
        }
    }
}

/// Gauss–Legendre nodes and weights on [-1, 1] (Newton on the Legendre recurrence).
fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut x = vec![0.0; n];
    let mut w = vec![0.0; n];
    for i in 0..n.div_ceil(2) {
        let mut z = (PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut dp = 0.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, z);
            for k in 2..=n {
                let p2 = ((2 * k - 1) as f64 * z * p1 - (k - 1) as f64 * p0) / k as f64;
                p0 = p1;
                p1 = p2;
            }
            let pn = if n == 1 { z } else { p1 };
            let pnm1 = if n == 1 { 1.0 } else { p0 };
            dp = n as f64 * (z * pn - pnm1) / (z * z - 1.0);
            let dz = pn / dp;
            z -= dz;
            if dz.abs() < 1e-16 {
                break;
            }
        }
        x[i] = -z;
        x[n - 1 - i] = z;
        w[i] = 2.0 / ((1.0 - z * z) * dp * dp);
        w[n - 1 - i] = w[i];
    }
    (x, w)
}

/// Nodes and weights for `E[f(ξ)]`, ξ ~ N(0,1): composite Gauss–Legendre on panels of
/// `[-L, L]`, split at `breaks` (σ's kinks in ξ units) so each panel integrand is smooth.
pub struct GaussianQuadrature {
    pub nodes: Vec<f64>,
    pub weights: Vec<f64>,
}

impl GaussianQuadrature {
    pub fn new(breaks: &[f64], centre: f64) -> Self {
        let half = 40.0 + centre.abs();
        let mut cuts: Vec<f64> = vec![-half, half];
        let panel = 1.0;
        let mut c = -half;
        while c < half {
            cuts.push(c);
            c += panel;
        }
        cuts.extend(breaks.iter().copied().filter(|b| b.abs() < half));
        cuts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        cuts.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
        let (gx, gw) = gauss_legendre(24);
        let mut nodes = vec![];
        let mut weights = vec![];
        for win in cuts.windows(2) {
            let (a, b) = (win[0], win[1]);
            let (m, h) = ((a + b) / 2.0, (b - a) / 2.0);
            for (x, w) in gx.iter().zip(&gw) {
                let xi = m + h * x;
                let dens = phi(xi);
                if dens > 0.0 {
                    nodes.push(xi);
                    weights.push(w * h * dens);
                }
            }
        }
        GaussianQuadrature { nodes, weights }
    }

    /// Quadrature for `E[g(σ(s ξ))·…]` with σ's kinks mapped to ξ units (`s = √τ`).
    pub fn for_activation(act: &Activation, s: f64) -> Self {
        let breaks: Vec<f64> = if s > 0.0 {
            act.kinks().iter().map(|k| k / s).collect()
        } else {
            vec![]
        };
        let centre = if let Activation::Exp = act {
            2.0 * s
        } else {
            0.0
        };
        Self::new(&breaks, centre)
    }
}

/// `h_k(r) = E[σ(√r ξ) He_k(ξ)]` for k = 0..=kmax, and `E[σ²(√r ξ)]`.
pub fn hermite_moments(act: &Activation, r: f64, kmax: usize) -> (Vec<f64>, f64) {
    let s = r.max(0.0).sqrt();
    let q = GaussianQuadrature::for_activation(act, s);
    let mut h = vec![0.0; kmax + 1];
    let mut e2 = 0.0;
    for (&x, &w) in q.nodes.iter().zip(&q.weights) {
        let f = act.apply(s * x);
        e2 += w * f * f;
        let (mut he0, mut he1) = (1.0, x);
        h[0] += w * f;
        if kmax >= 1 {
            h[1] += w * f * x;
        }
        for (k, hk) in h.iter_mut().enumerate().skip(2) {
            let he2 = x * he1 - (k - 1) as f64 * he0;
            *hk += w * f * he2;
            he0 = he1;
            he1 = he2;
        }
    }
    (h, e2)
}

/// `ĥ_k(r) = E[σ(√r ξ) He_k(ξ)] / √(k!)` for k = 0..=kmax, by the normalised recurrence
/// `He_k/√k! = (x He_{k-1}/√(k-1)! - √(k-1) He_{k-2}/√(k-2)!)/√k`, which neither overflows
/// nor loses the factorial at high order (the Mehler series is `Σ ρ^k ĥ_k(r_i) ĥ_k(r_j)`).
pub fn hermite_moments_normalized(act: &Activation, r: f64, kmax: usize) -> (Vec<f64>, f64) {
    let s = r.max(0.0).sqrt();
    let q = GaussianQuadrature::for_activation(act, s);
    let mut h = vec![0.0; kmax + 1];
    let mut e2 = 0.0;
    let sq: Vec<f64> = (0..=kmax + 1).map(|k| (k as f64).sqrt()).collect();
    for (&x, &w) in q.nodes.iter().zip(&q.weights) {
        let f = act.apply(s * x);
        e2 += w * f * f;
        let (mut he0, mut he1) = (1.0, x);
        h[0] += w * f;
        if kmax >= 1 {
            h[1] += w * f * x;
        }
        for k in 2..=kmax {
            let he2 = (x * he1 - sq[k - 1] * he0) / sq[k];
            h[k] += w * f * he2;
            he0 = he1;
            he1 = he2;
        }
    }
    (h, e2)
}

/// Largest order of the Mehler series accepted by [`expected_kernel`].
pub const MAX_SERIES_ORDER: usize = 2000;

/// `(F_0, F_1, F_2, E σ²(√τ ξ))` at variance `tau` (closed form where one exists and
/// `closed_form`, else quadrature).
pub fn moments(act: &Activation, tau: f64, closed_form: bool) -> Result<[f64; 4]> {
    if !(tau > 0.0) || !tau.is_finite() {
        return Err(EtfError::Parameter(format!(
            "tau must be finite and > 0, got {tau}"
        )));
    }
    Ok(if closed_form {
        closed_form_moments(act, tau).unwrap_or_else(|| quadrature_moments(act, tau))
    } else {
        quadrature_moments(act, tau)
    })
}

/// Convention of `d2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum D2Convention {
    /// `d2 = F_2²/2` (Tiomoko Ali et al.: `σ = a2 t² + a1 t` gives `d2 = 2 a2²`).
    TiomokoAli,
    /// `d2 = F_2²/4` (Liao & Couillet 2018, ternary-features code).
    Liao2018,
}

impl std::str::FromStr for D2Convention {
    type Err = EtfError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tiomoko_ali" | "paper000" => Ok(D2Convention::TiomokoAli),
            "liao2018" => Ok(D2Convention::Liao2018),
            _ => Err(EtfError::Parameter(format!(
                "convention must be 'tiomoko_ali' or 'liao2018', got {s:?}"
            ))),
        }
    }
}

/// `(F_0, F_1, F_2, E σ²)` at variance τ, in closed form when one exists.
pub fn closed_form_moments(act: &Activation, tau: f64) -> Option<[f64; 4]> {
    let s = tau.sqrt();
    let e = (-tau).exp();
    Some(match *act {
        Activation::Linear => [0.0, 1.0, 0.0, tau],
        Activation::Polynomial { a0, a1, a2 } => [
            a2 * tau + a0,
            a1,
            2.0 * a2,
            3.0 * a2 * a2 * tau * tau + a1 * a1 * tau + a0 * a0 + 2.0 * a0 * a2 * tau,
        ],
        Activation::Relu => [
            s / (2.0 * PI).sqrt(),
            0.5,
            1.0 / (2.0 * PI * tau).sqrt(),
            tau / 2.0,
        ],
        Activation::LeakyRelu { slope: a } => [
            (1.0 - a) * s / (2.0 * PI).sqrt(),
            (1.0 + a) / 2.0,
            (1.0 - a) / (2.0 * PI * tau).sqrt(),
            tau * (1.0 + a * a) / 2.0,
        ],
        Activation::Abs => [(2.0 * tau / PI).sqrt(), 0.0, (2.0 / (PI * tau)).sqrt(), tau],
        Activation::Sign => [0.0, (2.0 / (PI * tau)).sqrt(), 0.0, 1.0],
        Activation::Heaviside => [0.5, 1.0 / (2.0 * PI * tau).sqrt(), 0.0, 0.5],
        Activation::Sin => [0.0, e.sqrt(), 0.0, (1.0 - e * e) / 2.0],
        Activation::Cos => [e.sqrt(), 0.0, -e.sqrt(), (1.0 + e * e) / 2.0],
        Activation::Erf => {
            let q = 2.0 * tau / (2.0 * tau + 1.0);
            [
                0.0,
                2.0 / (PI * (1.0 + 2.0 * tau)).sqrt(),
                0.0,
                2.0 / PI * q.asin(),
            ]
        }
        Activation::Exp => {
            let h = (tau / 2.0).exp();
            [h, h, h, (2.0 * tau).exp()]
        }
        Activation::Ternary { lower, upper } => {
            let (a, b) = (upper / s, lower / s);
            [
                (1.0 - big_phi(a)) - big_phi(b),
                (phi(a) + phi(b)) / s,
                (a * phi(a) + b * phi(b)) / tau,
                (1.0 - big_phi(a)) + big_phi(b),
            ]
        }
        Activation::Tanh => return None,
    })
}

/// `(F_0, F_1, F_2, E σ²)` by quadrature.
pub fn quadrature_moments(act: &Activation, tau: f64) -> [f64; 4] {
    let (h, e2) = hermite_moments(act, tau, 2);
    [h[0], h[1] / tau.sqrt(), h[2] / tau, e2]
}

/// `(d0, d1, d2)` at τ; `closed_form = false` forces quadrature.
pub fn coefficients(
    act: &Activation,
    tau: f64,
    convention: D2Convention,
    closed_form: bool,
) -> Result<[f64; 3]> {
    let [f0, f1, f2, e2] = moments(act, tau, closed_form)?;
    let d1 = f1 * f1;
    let d2 = match convention {
        D2Convention::TiomokoAli => f2 * f2 / 2.0,
        D2Convention::Liao2018 => f2 * f2 / 4.0,
    };
    let out = [e2 - f0 * f0 - tau * f1 * f1, d1, d2];
    if out.iter().any(|v| !v.is_finite()) {
        return Err(EtfError::Numerical(format!(
            "the kernel coefficients (d0, d1, d2) = {out:?} overflow f64 for these activation \
             parameters and tau = {tau}; use smaller parameters or a smaller tau"
        )));
    }
    Ok(out)
}

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
    let p = x.ncols();
    let yv = y.unwrap_or(x.view());
    if yv.ncols() != p {
        return Err(EtfError::Shape(format!(
            "x has {p} columns but y has {}",
            yv.ncols()
        )));
    }
    let same = y.is_none();
    if kmax > MAX_SERIES_ORDER {
        return Err(EtfError::Parameter(format!(
            "order={kmax} exceeds the largest series order {MAX_SERIES_ORDER}"
        )));
    }
    check_dense_size(x.nrows(), yv.nrows(), "the kernel")?;
    check_work(
        x.nrows() as u128 * yv.nrows() as u128 * (p as u128 + kmax as u128 + 1),
        "the expected kernel",
    )?;
    let xf = x.mapv(|v| v.to_f64());
    let yf = yv.mapv(|v| v.to_f64());
    for (name, m) in [("x", &xf), ("y", &yf)] {
        if let Some(((i, j), _)) = m.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(EtfError::NonFinite {
                what: name.into(),
                row: i,
                col: j,
            });
        }
    }
    let c = xf.dot(&yf.t());
    let rx: Vec<f64> = xf.rows().into_iter().map(|r| r.dot(&r)).collect();
    let ry: Vec<f64> = yf.rows().into_iter().map(|r| r.dot(&r)).collect();
    let (n1, n2) = c.dim();
    let closed = !series
        && closed_form_moments(act, 1.0).is_some()
        && !matches!(act, Activation::Ternary { .. });
    let mut k = Array2::<f64>::zeros((n1, n2));
    if closed {
        k.axis_iter_mut(ndarray::Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(i, mut row)| {
                for j in 0..n2 {
                    row[j] = closed_pair(act, rx[i], ry[j], c[[i, j]]);
                }
            });
    } else {
        let mx: Vec<(Vec<f64>, f64)> = rx
            .par_iter()
            .map(|&r| hermite_moments_normalized(act, r, kmax))
            .collect();
        let my: Vec<(Vec<f64>, f64)> = if same {
            mx.clone()
        } else {
            ry.par_iter()
                .map(|&r| hermite_moments_normalized(act, r, kmax))
                .collect()
        };
        k.axis_iter_mut(ndarray::Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(i, mut row)| {
                for j in 0..n2 {
                    if same && i == j {
                        row[j] = mx[i].1;
                        continue;
                    }
                    let denom = (rx[i] * ry[j]).sqrt();
                    let rho = if denom > 0.0 {
                        (c[[i, j]] / denom).clamp(-1.0, 1.0)
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
    }
    check_kernel_finite(&k, "the expected kernel")?;
    Ok(k)
}

/// `Numerical` error naming the first non-finite kernel entry (an activation that overflows
/// or loses its argument at this input scale) instead of returning it.
fn check_kernel_finite(k: &Array2<f64>, what: &str) -> Result<()> {
    if let Some(((i, j), v)) = k.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(EtfError::Numerical(format!(
            "{what} is not finite at ({i}, {j}) ({v}): the activation overflows or the input \
             norms leave the f64 range at this scale; rescale the inputs"
        )));
    }
    Ok(())
}

fn closed_pair(act: &Activation, ri: f64, rj: f64, c: f64) -> f64 {
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

/// Random projections `W` (`m × p`), every entry of unit variance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Projection {
    Gaussian,
    /// Orthonormal rows scaled by √p (independent Haar blocks of at most p rows).
    Orthogonal,
    /// Rows of simplex ETFs scaled by √p (independent blocks of at most p+1 rows).
    Etf,
    /// Entries 0 with probability `1 - density`, else ±1/√density.
    SparseTernary {
        density: f64,
    },
}

impl Projection {
    /// Parses a projection name; `density` is used (and checked) by `"sparse_ternary"` only.
    pub fn parse(name: &str, density: f64) -> Result<Self> {
        let proj = match name {
            "gaussian" => Projection::Gaussian,
            "orthogonal" => Projection::Orthogonal,
            "etf" => Projection::Etf,
            "sparse_ternary" => Projection::SparseTernary { density },
            other => {
                return Err(EtfError::Parameter(format!(
                    "projection must be 'gaussian', 'orthogonal', 'etf' or 'sparse_ternary', \
                     got {other:?}"
                )))
            }
        };
        proj.validate()?;
        Ok(proj)
    }

    fn validate(&self) -> Result<()> {
        if let Projection::SparseTernary { density } = *self {
            if !(density > 0.0 && density <= 1.0) {
                return Err(EtfError::Parameter(format!(
                    "sparse ternary density must be in (0, 1], got {density}"
                )));
            }
        }
        Ok(())
    }
}

/// Rows per generated block of `W` (and per pass of the empirical kernel).
pub const PROJECTION_BLOCK: usize = 256;

fn block_seed(seed: u64, block: usize) -> u64 {
    seed ^ (block as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
}

/// Rows `[r0, r0 + rows)` of the projection matrix, row-major. Block `b` of
/// `PROJECTION_BLOCK` rows depends only on `(seed, b)`, so any row range is reproducible.
pub fn projection_rows(
    proj: Projection,
    r0: usize,
    rows: usize,
    p: usize,
    seed: u64,
) -> Result<Vec<f64>> {
    if p == 0 {
        return Err(EtfError::Parameter("dim must be positive".into()));
    }
    proj.validate()?;
    crate::error::check_frame_size(rows, p, "the projection")?;
    let end = r0
        .checked_add(rows)
        .ok_or_else(|| EtfError::Parameter(format!("rows {r0} + {rows} overflow")))?;
    let mut out = Vec::new();
    out.try_reserve_exact(rows * p).map_err(|_| {
        EtfError::Dimension(format!("the projection ({rows} × {p}) cannot be allocated"))
    })?;
    let b0 = r0 / PROJECTION_BLOCK;
    let b1 = end.div_ceil(PROJECTION_BLOCK);
    for b in b0..b1 {
        let upto = ((b + 1) * PROJECTION_BLOCK).min(end) - b * PROJECTION_BLOCK;
        let blk = projection_block(proj, b, p, seed, upto)?;
        let start = (b * PROJECTION_BLOCK).max(r0) - b * PROJECTION_BLOCK;
        let end = ((b + 1) * PROJECTION_BLOCK).min(end) - b * PROJECTION_BLOCK;
        out.extend_from_slice(&blk[start * p..end * p]);
    }
    Ok(out)
}

/// The first `upto` rows (at most `PROJECTION_BLOCK`) of block `b`: the stream of a block is
/// sequential, so they do not depend on `upto`.
fn projection_block(
    proj: Projection,
    b: usize,
    p: usize,
    seed: u64,
    upto: usize,
) -> Result<Vec<f64>> {
    let n = upto.min(PROJECTION_BLOCK);
    let mut rng = ChaCha12Rng::seed_from_u64(block_seed(seed, b));
    let sp = (p as f64).sqrt();
    let mut out: Vec<f64> = Vec::new();
    out.try_reserve_exact(n * p).map_err(|_| {
        EtfError::Dimension(format!(
            "a block of the projection ({n} × {p}) cannot be allocated"
        ))
    })?;
    match proj {
        Projection::Gaussian => out.extend((0..n * p).map(|_| {
            let v: f64 = StandardNormal.sample(&mut rng);
            v
        })),
        Projection::SparseTernary { density } => {
            let v = 1.0 / density.sqrt();
            out.extend((0..n * p).map(|_| {
                let u: f64 = rng.random();
                if u < density / 2.0 {
                    v
                } else if u < density {
                    -v
                } else {
                    0.0
                }
            }))
        }
        Projection::Orthogonal | Projection::Etf => {
            // Independent sub-blocks of at most p (orthogonal) or p+1 (ETF) rows of the full
            // block; the QR of each needs a few times its size.
            let cap = if let Projection::Etf = proj { p + 1 } else { p };
            probe_alloc(
                4 * 8 * (cap.clamp(2, PROJECTION_BLOCK) as u128) * p as u128,
                "an orthogonal block of the projection",
            )?;
            let mut sub = 0u64;
            while out.len() < n * p {
                let rows = cap
                    .min(PROJECTION_BLOCK - out.len() / p)
                    .max(if let Projection::Etf = proj { 2 } else { 1 });
                let s = block_seed(block_seed(seed, b), sub as usize + 1);
                let m = if let Projection::Etf = proj {
                    crate::etf::simplex_etf(rows, p, s, None)?
                } else {
                    crate::etf::orthogonal_frame(rows, p, s, None)?
                };
                let take = rows.min(n - out.len() / p);
                out.extend(m.iter().take(take * p).map(|v| v * sp));
                sub += 1;
            }
        }
    }
    Ok(out)
}

/// A raw pointer that may cross threads (each thread writes disjoint blocks).
#[derive(Clone, Copy)]
struct SyncPtr<T>(*mut T);
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}

/// Empirical random-feature kernel `K = (1/m) σ(X Wᵀ) σ(X Wᵀ)ᵀ` (`n × n`, in `T`), `X` `n × p`.
///
/// W is generated block by block (`PROJECTION_BLOCK` rows, reproducible from `seed`); for each
/// block the `block × n` features `σ(W_b Xᵀ)` are formed and their Gram added to the lower
/// triangle of `K` by column blocks in parallel. Extra memory: `O(block · (n + p))` beside `K`.
pub fn empirical_kernel<T: Real>(
    act: &Activation,
    x: ArrayView2<'_, T>,
    num_features: usize,
    proj: Projection,
    seed: u64,
) -> Result<Array2<T>> {
    let (n, p) = x.dim();
    if num_features == 0 {
        return Err(EtfError::Parameter("num_features must be positive".into()));
    }
    if p == 0 {
        return Err(EtfError::Shape("x must have at least one column".into()));
    }
    proj.validate()?;
    check_dense_size(PROJECTION_BLOCK, p, "a block of the projection")?;
    // W X^T for every block plus the Gram of the features: ~ m·n·(p + n/2) multiply-adds.
    check_work(
        num_features as u128 * n as u128 * (p as u128 + n as u128 / 2 + 1),
        "the empirical kernel",
    )?;
    if let Some(((i, j), _)) = x.indexed_iter().find(|(_, v)| !v.to_f64().is_finite()) {
        return Err(EtfError::NonFinite {
            what: "features".into(),
            row: i,
            col: j,
        });
    }
    let xs = x.as_standard_layout();
    let xs = xs.as_slice().unwrap();
    check_dense_size(n, n, "the kernel")?;
    #[cfg(target_arch = "x86_64")]
    if T::PRECISION == crate::linalg::Precision::F32
        && std::mem::size_of::<T>() == 4
        && simd::available()
    {
        // SAFETY: T is f32 (same name, precision and size), so the slice and the vector may be
        // reinterpreted in place.
        let xf = unsafe { std::slice::from_raw_parts(xs.as_ptr() as *const f32, xs.len()) };
        let k = simd::empirical_kernel_f32(act, xf, n, p, num_features, proj, seed)?;
        let mut k = std::mem::ManuallyDrop::new(k);
        let mut k = unsafe { Vec::from_raw_parts(k.as_mut_ptr() as *mut T, k.len(), k.capacity()) };
        symmetrize_lower(&mut k, n);
        return finish_kernel(k, n);
    }
    portable_kernel(act, xs, n, p, num_features, proj, seed)
}

/// The portable path of [`empirical_kernel`] (any CPU, f32 or f64; inputs already checked):
/// per block of projection rows, `Z = σ(W_b Xᵀ)` by matrixmultiply's GEMM in column panels,
/// then its Gram added to the lower triangle of `K` by column blocks in parallel.
#[doc(hidden)]
pub fn portable_kernel<T: Real>(
    act: &Activation,
    xs: &[T],
    n: usize,
    p: usize,
    num_features: usize,
    proj: Projection,
    seed: u64,
) -> Result<Array2<T>> {
    let mut k: Vec<T> = try_zeros(n * n, "the kernel")?;
    let mut z: Vec<T> = try_zeros(PROJECTION_BLOCK * n, "a block of random features")?;
    let scale = 1.0 / num_features as f64;
    let mut r0 = 0;
    while r0 < num_features {
        let rows = PROJECTION_BLOCK.min(num_features - r0);
        let w: Vec<T> = projection_rows(proj, r0, rows, p, seed)?
            .into_iter()
            .map(T::from_f64)
            .collect();
        // Z (rows × n) = W_b Xᵀ, then σ in place; parallel over column panels of Z.
        let zp = SyncPtr(z.as_mut_ptr());
        let panels = n.div_ceil(256);
        (0..panels).into_par_iter().for_each(|pi| {
            let c0 = pi * 256;
            let cols = 256.min(n - c0);
            #[allow(clippy::redundant_locals)] // capture the Send wrapper, not its raw field
            let zp = zp;
            // SAFETY: panel `pi` writes only columns c0..c0+cols of Z.
            unsafe {
                T::gemm(
                    rows,
                    p,
                    cols,
                    T::from_f64(1.0),
                    w.as_ptr(),
                    p as isize,
                    1,
                    xs.as_ptr().add(c0 * p),
                    1,
                    p as isize,
                    T::from_f64(0.0),
                    zp.0.add(c0),
                    n as isize,
                    1,
                );
                for r in 0..rows {
                    for c in c0..c0 + cols {
                        let v = zp.0.add(r * n + c);
                        *v = T::from_f64(act.apply((*v).to_f64()));
                    }
                }
            }
        });
        // K[lower] += Zᵀ Z / m by column blocks of K.
        let kp = SyncPtr(k.as_mut_ptr());
        let nb = n.div_ceil(128);
        let zr = &z;
        (0..nb).into_par_iter().for_each(|bi| {
            let j0 = bi * 128;
            let b = 128.min(n - j0);
            #[allow(clippy::redundant_locals)] // capture the Send wrapper, not its raw field
            let kp = kp;
            // SAFETY: block `bi` writes only K[j0.., j0..j0+b], disjoint across blocks.
            unsafe {
                T::gemm(
                    n - j0,
                    rows,
                    b,
                    T::from_f64(scale),
                    zr.as_ptr().add(j0),
                    1,
                    n as isize,
                    zr.as_ptr().add(j0),
                    n as isize,
                    1,
                    T::from_f64(1.0),
                    kp.0.add(j0 * n + j0),
                    n as isize,
                    1,
                );
            }
        });
        r0 += rows;
    }
    symmetrize_lower(&mut k, n);
    finish_kernel(k, n)
}

/// Copies the lower triangle of the row-major `n × n` kernel to its upper triangle, in
/// parallel over row blocks, tile by tile (each block writes only its own rows).
fn symmetrize_lower<T: Real>(k: &mut [T], n: usize) {
    const B: usize = 64;
    let kp = SyncPtr(k.as_mut_ptr());
    (0..n.div_ceil(B)).into_par_iter().for_each(|bi| {
        #[allow(clippy::redundant_locals)] // capture the Send wrapper, not its raw field
        let kp = kp;
        let i0 = bi * B;
        let i1 = (i0 + B).min(n);
        let mut j0 = i0;
        while j0 < n {
            let j1 = (j0 + B).min(n);
            for i in i0..i1 {
                for j in j0.max(i + 1)..j1 {
                    // SAFETY: writes K[i, j] (j > i, a row of this block), reads the lower
                    // triangle, which no block writes.
                    unsafe { *kp.0.add(i * n + j) = *kp.0.add(j * n + i) };
                }
            }
            j0 = j1;
        }
    });
}

/// Rejects a non-finite kernel (the activation overflowed) and shapes the result.
fn finish_kernel<T: Real>(k: Vec<T>, n: usize) -> Result<Array2<T>> {
    let bad = k
        .par_chunks(n.max(1))
        .enumerate()
        .find_map_first(|(i, row)| {
            row.iter()
                .position(|v| !v.to_f64().is_finite())
                .map(|j| (i, j))
        });
    if let Some((i, j)) = bad {
        return Err(EtfError::Numerical(format!(
            "the random-feature kernel is not finite at ({i}, {j}): the activation overflows {} \
             at this input scale; rescale the inputs",
            T::NAME
        )));
    }
    Ok(Array2::from_shape_vec((n, n), k).unwrap())
}

/// The float32 kernel on CPUs with AVX-512 (detected at run time).
///
/// Both products use one register-blocked micro-kernel (8 × 48 outputs in 24 zmm accumulators,
/// the 8-side broadcast from memory, depth cut into chunks of `KC` so the 48-wide operand stays
/// in L1): `Z_b = σ(W_b Xᵀ)` is written straight into panels of 48 samples
/// (`Z[panel][feature][lane]`, σ applied as each tile leaves the registers), which is already
/// the packed layout the Gram `K += Z_bᵀ Z_b / m` streams, so the features are never copied or
/// re-packed. Products are formed in f32 over one block of `FEATURE_BLOCK` features, as the
/// portable path does, and added to `K` block by block.
#[cfg(target_arch = "x86_64")]
// The AVX-512 intrinsics are stable since Rust 1.89 (the crate's `rust-version`).
mod simd {
    use super::{projection_rows, Activation, Projection, SyncPtr, PROJECTION_BLOCK};
    use crate::error::{try_zeros, EtfError, Result};
    use rayon::prelude::*;
    use std::arch::x86_64::*;

    /// Samples per panel (three 16-lane vectors).
    const NR: usize = 48;
    /// Rows of one micro-kernel tile (the broadcast side).
    const MR: usize = 8;
    /// Strips of `MR` rows in a panel.
    const STRIPS: usize = NR / MR;
    /// Depth of one micro-kernel call: a `KC × NR` chunk (24 KiB) stays in L1.
    const KC: usize = 128;
    /// Features per block: the depth of one Gram update.
    pub const FEATURE_BLOCK: usize = 2 * PROJECTION_BLOCK;
    const TILE: usize = MR * NR;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f")
    }

    /// A 64-byte-aligned group of 16 floats (panels start on cache lines).
    #[derive(Clone, Copy, Default)]
    #[repr(C, align(64))]
    struct Line([f32; 16]);

    fn aligned(len: usize, what: &str) -> Result<Vec<Line>> {
        try_zeros::<Line>(len.div_ceil(16), what)
    }

    /// `tile[r][l] += Σ_d b[d·bs + r] · a[d·NR + l]` for `r < MR`, `l < NR`.
    ///
    /// # Safety
    /// `a` addresses `depth × NR` floats, `b` `depth` rows of stride `bs` holding `MR` floats.
    #[target_feature(enable = "avx512f")]
    unsafe fn micro(depth: usize, a: *const f32, b: *const f32, bs: usize, tile: &mut [f32; TILE]) {
        let mut c = [_mm512_setzero_ps(); 3 * MR];
        for (v, t) in c.iter_mut().zip(tile.chunks_exact(16)) {
            *v = _mm512_loadu_ps(t.as_ptr());
        }
        for d in 0..depth {
            let ap = a.add(d * NR);
            let a0 = _mm512_loadu_ps(ap);
            let a1 = _mm512_loadu_ps(ap.add(16));
            let a2 = _mm512_loadu_ps(ap.add(32));
            let bp = b.add(d * bs);
            for r in 0..MR {
                let bv = _mm512_set1_ps(*bp.add(r));
                c[3 * r] = _mm512_fmadd_ps(a0, bv, c[3 * r]);
                c[3 * r + 1] = _mm512_fmadd_ps(a1, bv, c[3 * r + 1]);
                c[3 * r + 2] = _mm512_fmadd_ps(a2, bv, c[3 * r + 2]);
            }
        }
        for (v, out) in c.iter().zip(tile.chunks_exact_mut(16)) {
            _mm512_storeu_ps(out.as_mut_ptr(), *v);
        }
    }

    /// `K[i0 + r, j0..j0+NR] += scale · tile[r]` for rows `< n` and columns `< n`.
    ///
    /// # Safety
    /// `k` addresses `n × n` floats; `i0 < n`, `j0 < n`.
    #[target_feature(enable = "avx512f")]
    unsafe fn add_tile(
        k: *mut f32,
        n: usize,
        i0: usize,
        j0: usize,
        scale: f32,
        tile: &[f32; TILE],
    ) {
        let s = _mm512_set1_ps(scale);
        for r in 0..MR.min(n - i0) {
            let row = k.add((i0 + r) * n);
            for v in 0..3 {
                let j = j0 + 16 * v;
                if j >= n {
                    break;
                }
                let t = _mm512_loadu_ps(tile.as_ptr().add(r * NR + 16 * v));
                let m: __mmask16 = if j + 16 <= n {
                    0xffff
                } else {
                    ((1u32 << (n - j)) - 1) as u16
                };
                let old = _mm512_maskz_loadu_ps(m, row.add(j));
                _mm512_mask_storeu_ps(row.add(j), m, _mm512_fmadd_ps(t, s, old));
            }
        }
    }

    /// σ of a tile row into a panel row.
    fn activate(act: &Activation, src: &[f32], dst: &mut [f32]) {
        match *act {
            Activation::Relu => {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = s.max(0.0);
                }
            }
            Activation::Linear => dst.copy_from_slice(src),
            _ => {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = act.apply(*s as f64) as f32;
                }
            }
        }
    }

    /// Rows `r0..r0 + rows` of W in strips of `MR` features: `ws[t][c][r] = W[r0 + t·MR + r, c]`
    /// (zero past `rows`), so the broadcast side of the projection is read contiguously.
    fn pack_projection(
        proj: Projection,
        r0: usize,
        rows: usize,
        p: usize,
        seed: u64,
        ws: &mut [f32],
    ) -> Result<()> {
        let w = projection_rows(proj, r0, rows, p, seed)?;
        ws.iter_mut().for_each(|v| *v = 0.0);
        for (r, wr) in w.chunks_exact(p).enumerate() {
            let strip = &mut ws[(r / MR) * p * MR..];
            for (c, v) in wr.iter().enumerate() {
                strip[c * MR + r % MR] = *v as f32;
            }
        }
        Ok(())
    }

    /// Samples `i0..i0 + NR` of `x` transposed (`xp[c][l] = x[i0 + l, c]`, zero past `n`).
    fn pack_input(x: &[f32], n: usize, p: usize, i0: usize, xp: &mut [f32]) {
        let lanes = NR.min(n - i0);
        for l in 0..NR {
            if l < lanes {
                for (c, v) in x[(i0 + l) * p..(i0 + l + 1) * p].iter().enumerate() {
                    xp[c * NR + l] = *v;
                }
            } else {
                for c in 0..p {
                    xp[c * NR + l] = 0.0;
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn empirical_kernel_f32(
        act: &Activation,
        x: &[f32],
        n: usize,
        p: usize,
        num_features: usize,
        proj: Projection,
        seed: u64,
    ) -> Result<Vec<f32>> {
        let panels = n.div_ceil(NR);
        let strips = FEATURE_BLOCK / MR;
        let mut k: Vec<f32> = try_zeros(n * n, "the kernel")?;
        let mut z = aligned(panels * FEATURE_BLOCK * NR, "a block of random features")?;
        let mut ws: Vec<f32> = try_zeros(p * FEATURE_BLOCK, "a block of the projection")?;
        // Per-thread scratch: one transposed input panel and the projection's tiles.
        let scratch = || -> Result<(Vec<Line>, Vec<[f32; TILE]>)> {
            Ok((
                aligned(p * NR, "a panel of the input")?,
                vec![[0f32; TILE]; strips],
            ))
        };
        scratch()?; // fail here, not in a worker, when even one set cannot be allocated
        let scale = (1.0 / num_features as f64) as f32;
        let mut r0 = 0;
        while r0 < num_features {
            let rows = FEATURE_BLOCK.min(num_features - r0);
            pack_projection(proj, r0, rows, p, seed, &mut ws)?;
            let used = rows.div_ceil(MR);
            // Panel q of Z = σ(W_b X[q·NR .. q·NR + NR]ᵀ).
            let zp = SyncPtr(z.as_mut_ptr() as *mut f32);
            let wsr = &ws;
            (0..panels)
                .into_par_iter()
                .try_for_each_init(scratch, |buf, q| {
                    #[allow(clippy::redundant_locals)] // capture the Send wrapper
                    let zp = zp;
                    let (xp, tiles) = match buf {
                        Ok((xp, tiles)) => (xp, tiles),
                        Err(e) => return Err(EtfError::Dimension(e.to_string())),
                    };
                    // SAFETY: Line is 16 plain floats, so the buffer is p × NR floats.
                    let xp = unsafe {
                        std::slice::from_raw_parts_mut(xp.as_mut_ptr() as *mut f32, p * NR)
                    };
                    pack_input(x, n, p, q * NR, xp);
                    tiles.iter_mut().for_each(|t| t.fill(0.0));
                    let mut d0 = 0;
                    while d0 < p {
                        let kc = KC.min(p - d0);
                        for (t, tile) in tiles[..used].iter_mut().enumerate() {
                            // SAFETY: xp holds p × NR floats; strip t of ws holds p × MR floats.
                            unsafe {
                                micro(
                                    kc,
                                    xp.as_ptr().add(d0 * NR),
                                    wsr.as_ptr().add(t * p * MR + d0 * MR),
                                    MR,
                                    tile,
                                )
                            };
                        }
                        d0 += kc;
                    }
                    // SAFETY: panel q of z (FEATURE_BLOCK × NR floats) is written by this task only.
                    let panel = unsafe {
                        std::slice::from_raw_parts_mut(
                            zp.0.add(q * FEATURE_BLOCK * NR),
                            FEATURE_BLOCK * NR,
                        )
                    };
                    for (r, dst) in panel[..rows * NR].chunks_exact_mut(NR).enumerate() {
                        activate(act, &tiles[r / MR][(r % MR) * NR..(r % MR + 1) * NR], dst);
                    }
                    Ok(())
                })?;
            // K[i, j] += Σ_r z[r, i] z[r, j] / m on the lower triangle, by panels of rows i
            // (largest first), each against every panel of columns j at or left of it.
            let kp = SyncPtr(k.as_mut_ptr());
            let zr = SyncPtr(z.as_ptr() as *mut f32);
            (0..panels).into_par_iter().rev().for_each(|qi| {
                #[allow(clippy::redundant_locals)] // capture the Send wrappers
                let (kp, zr) = (kp, zr);
                let mut tiles = [[0f32; TILE]; STRIPS];
                let live = STRIPS.min((n - qi * NR).div_ceil(MR));
                // SAFETY: panels hold FEATURE_BLOCK × NR floats and rows ≤ FEATURE_BLOCK; this
                // task writes rows qi·NR.. of K only.
                unsafe {
                    let zi = zr.0.add(qi * FEATURE_BLOCK * NR);
                    for qj in 0..=qi {
                        let zj = zr.0.add(qj * FEATURE_BLOCK * NR);
                        tiles.iter_mut().for_each(|t| t.fill(0.0));
                        let mut d0 = 0;
                        while d0 < rows {
                            let kc = KC.min(rows - d0);
                            for (s, tile) in tiles[..live].iter_mut().enumerate() {
                                micro(kc, zj.add(d0 * NR), zi.add(d0 * NR + s * MR), NR, tile);
                            }
                            d0 += kc;
                        }
                        for (s, tile) in tiles[..live].iter().enumerate() {
                            add_tile(kp.0, n, qi * NR + s * MR, qj * NR, scale, tile);
                        }
                    }
                }
            });
            r0 += rows;
        }
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Activation; 13] = [
        Activation::Linear,
        Activation::Polynomial {
            a0: 0.3,
            a1: -0.7,
            a2: 1.2,
        },
        Activation::Relu,
        Activation::LeakyRelu { slope: 0.2 },
        Activation::Abs,
        Activation::Sign,
        Activation::Heaviside,
        Activation::Sin,
        Activation::Cos,
        Activation::Erf,
        Activation::Tanh,
        Activation::Exp,
        Activation::Ternary {
            lower: -0.4,
            upper: 0.7,
        },
    ];

    #[test]
    fn closed_forms_equal_quadrature() {
        for act in ALL {
            for &tau in &[0.05, 0.3, 1.0, 2.5, 6.0] {
                if let Some(cf) = closed_form_moments(&act, tau) {
                    let q = quadrature_moments(&act, tau);
                    for i in 0..4 {
                        assert!(
                            (cf[i] - q[i]).abs() < 1e-10 * (1.0 + cf[i].abs()),
                            "{act:?} tau={tau} i={i}: {} vs {}",
                            cf[i],
                            q[i]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn empirical_kernel_matches_naive() {
        let (n, p, m) = (37usize, 11usize, 300usize);
        let x = Array2::from_shape_fn((n, p), |(i, j)| ((i * 31 + j * 7) % 13) as f64 / 13.0 - 0.5);
        for proj in [
            Projection::Gaussian,
            Projection::Orthogonal,
            Projection::Etf,
            Projection::SparseTernary { density: 0.3 },
        ] {
            let act = Activation::Relu;
            let k = empirical_kernel(&act, x.view(), m, proj, 9).unwrap();
            let w = projection_rows(proj, 0, m, p, 9).unwrap();
            for i in 0..n {
                for j in 0..n {
                    let want: f64 = (0..m)
                        .map(|r| {
                            let zi: f64 = (0..p).map(|c| w[r * p + c] * x[[i, c]]).sum();
                            let zj: f64 = (0..p).map(|c| w[r * p + c] * x[[j, c]]).sum();
                            act.apply(zi) * act.apply(zj)
                        })
                        .sum::<f64>()
                        / m as f64;
                    assert!(
                        (k[[i, j]] - want).abs() < 1e-10 * (1.0 + want.abs()),
                        "{proj:?}"
                    );
                }
            }
        }
    }

    /// The float32 kernel (AVX-512 where the CPU has it) against a float64 brute force, on
    /// sizes that leave partial panels, tiles, depth chunks and feature blocks everywhere.
    #[test]
    fn float32_kernel_matches_naive_on_ragged_sizes() {
        let (n, p, m) = (101usize, 150usize, 603usize);
        let x = Array2::from_shape_fn((n, p), |(i, j)| {
            (((i * 37 + j * 11) % 17) as f32 / 17.0 - 0.45) / (p as f32).sqrt()
        });
        let proj = Projection::Gaussian;
        let w = projection_rows(proj, 0, m, p, 4).unwrap();
        let z: Vec<f64> = (0..m)
            .flat_map(|r| {
                let w = &w;
                let x = &x;
                (0..n).map(move |i| (0..p).map(|c| w[r * p + c] * x[[i, c]] as f64).sum())
            })
            .collect();
        for act in [Activation::Relu, Activation::Linear, Activation::Tanh] {
            let k = empirical_kernel(&act, x.view(), m, proj, 4).unwrap();
            let portable = portable_kernel(&act, x.as_slice().unwrap(), n, p, m, proj, 4).unwrap();
            let mut worst = 0f64;
            for i in 0..n {
                for j in 0..n {
                    let want: f64 = (0..m)
                        .map(|r| act.apply(z[r * n + i]) * act.apply(z[r * n + j]))
                        .sum::<f64>()
                        / m as f64;
                    worst = worst.max((k[[i, j]] as f64 - want).abs() / (1e-3 + want.abs()));
                    assert_eq!(k[[i, j]], k[[j, i]]);
                    let d = (k[[i, j]] - portable[[i, j]]).abs() as f64;
                    assert!(d <= 1e-5 * (1e-3 + want.abs()), "{act:?} ({i}, {j})");
                }
            }
            assert!(worst < 1e-5, "{act:?}: {worst}");
        }
    }

    #[test]
    fn table_values() {
        let tau = 1.7;
        let [d0, d1, d2] =
            coefficients(&Activation::Relu, tau, D2Convention::TiomokoAli, true).unwrap();
        assert!((d0 - tau * (0.25 - 1.0 / (2.0 * PI))).abs() < 1e-14);
        assert!((d1 - 0.25).abs() < 1e-14 && (d2 - 1.0 / (4.0 * PI * tau)).abs() < 1e-14);
        let [_, d1, d2] = coefficients(
            &Activation::Polynomial {
                a0: 0.0,
                a1: 0.5,
                a2: 3.0,
            },
            tau,
            D2Convention::TiomokoAli,
            true,
        )
        .unwrap();
        assert!((d1 - 0.25).abs() < 1e-14 && (d2 - 18.0).abs() < 1e-12);
        let [_, _, d2l] = coefficients(
            &Activation::Polynomial {
                a0: 0.0,
                a1: 0.5,
                a2: 3.0,
            },
            tau,
            D2Convention::Liao2018,
            true,
        )
        .unwrap();
        assert!((d2l - 9.0).abs() < 1e-12);
    }
}
