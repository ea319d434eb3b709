//! Gaussian moments of an activation: Gauss–Legendre quadrature on its smooth pieces, Hermite
//! coefficients, closed forms where they exist, and the coefficients `d0, d1, d2`.

use super::activation::{big_phi, phi, Activation};
use crate::error::{EtfError, Result};
use std::f64::consts::PI;

/// Gauss–Legendre nodes and weights on [-1, 1] (Newton on the Legendre recurrence).
pub(crate) fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
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
