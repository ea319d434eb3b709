//! The factorisations that the metrics and the transfer scores share, each computed at most once
//! per geometry (lazily, thread-safe, through `&ClassGeometry`):
//!
//! - `Σ_T`: its eigendecomposition ([`total_eigen`]: the ridge path, LogME's rank cut, any
//!   explicit `rank`) and its pseudo-inverse with the quadratic forms of the centred means
//!   ([`total_pinv`]: VCI, the probe MSE, H-score). Under a threshold policy the pseudo-inverse
//!   takes the proven Cholesky route when the bounds allow it, else it is read from the one
//!   eigendecomposition; so a state factorises `Σ_T` at most once each way, whatever asks.
//! - `Σ_B`: its positive spectrum with `v_jᵀ Σ_W v_j` ([`between_spectrum`]: NC1's eigen route,
//!   its split, VCI's numerical normaliser), and NC1 by the Cholesky route of the class-mean Gram
//!   ([`nc1_cholesky`]).
//!
//! [`factorisation_counts`] reports how many factorisations of `Σ_T` a geometry has run (for
//! tests and for users who want to check that their calls share them).

use super::ClassGeometry;
use crate::error::Result;
use crate::linalg::{proven_cholesky_inverse, sym_eig_desc, RankPolicy, SymEigen, SymPinv};
use faer::{Mat, MatRef};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// `Σ_T`'s pseudo-inverse under one policy, with the quadratic forms
/// `d_k = (μ_k - μ_G)ᵀ Σ_T^† (μ_k - μ_G)` of the present classes.
#[derive(Debug, Clone)]
pub struct TotalPinv {
    pub policy: RankPolicy,
    pub pinv: SymPinv,
    pub quad_forms: Vec<f64>,
}

/// The cached factorisations of one geometry (see the module documentation).
#[derive(Debug, Default)]
pub struct FactorCache {
    total_eigen: OnceLock<Arc<SymEigen>>,
    /// The pseudo-inverse of the first policy asked (the default one, in practice).
    total_pinv: OnceLock<Arc<TotalPinv>>,
    total_cholesky: OnceLock<(f64, Option<SymPinv>)>,
    spectrum: OnceLock<Arc<BetweenSpectrum>>,
    nc1_cholesky: OnceLock<(RankPolicy, Option<Nc1Cholesky>)>,
    /// The one visit of the class-mean pairs (CDNV and NC2 share it).
    pub(super) mean_pairs: OnceLock<Arc<super::mean_pairs::MeanPairs>>,
    eigendecompositions: AtomicUsize,
    cholesky_attempts: AtomicUsize,
}

impl Clone for FactorCache {
    fn clone(&self) -> Self {
        FactorCache {
            total_eigen: self.total_eigen.clone(),
            total_pinv: self.total_pinv.clone(),
            total_cholesky: self.total_cholesky.clone(),
            spectrum: self.spectrum.clone(),
            nc1_cholesky: self.nc1_cholesky.clone(),
            mean_pairs: self.mean_pairs.clone(),
            eigendecompositions: AtomicUsize::new(self.eigendecompositions.load(Ordering::Relaxed)),
            cholesky_attempts: AtomicUsize::new(self.cholesky_attempts.load(Ordering::Relaxed)),
        }
    }
}

/// How many factorisations of `Σ_T` this geometry has computed:
/// `(eigendecompositions, Cholesky attempts)`. Each is at most 1 for the calls that share the
/// default policy.
pub fn factorisation_counts(g: &ClassGeometry) -> (usize, usize) {
    let f = &g.factors;
    (
        f.eigendecompositions.load(Ordering::Relaxed),
        f.cholesky_attempts.load(Ordering::Relaxed),
    )
}

/// The eigendecomposition of `Σ_T`, computed once per geometry.
pub fn total_eigen(g: &ClassGeometry) -> Result<Arc<SymEigen>> {
    if let Some(e) = g.factors.total_eigen.get() {
        return Ok(e.clone());
    }
    let total = g.total()?;
    g.factors
        .eigendecompositions
        .fetch_add(1, Ordering::Relaxed);
    let e = Arc::new(SymEigen::new(total.as_ref())?);
    Ok(g.factors.total_eigen.get_or_init(|| e).clone())
}

/// `Σ_T^†` by the proven Cholesky route under threshold `rtol` (`None`: not provable), tried
/// once per geometry and threshold.
fn total_cholesky(g: &ClassGeometry, rtol: f64) -> Result<Option<SymPinv>> {
    if let Some((t, p)) = g.factors.total_cholesky.get() {
        if *t == rtol {
            return Ok(p.clone());
        }
    }
    let total = g.total()?;
    g.factors.cholesky_attempts.fetch_add(1, Ordering::Relaxed);
    let p = SymPinv::try_cholesky(total.as_ref(), rtol);
    let _ = g.factors.total_cholesky.set((rtol, p.clone()));
    Ok(p)
}

/// `Σ_T^†` under `policy` (resolved: see [`ClassGeometry::policy`]) with the quadratic forms
/// of the centred means. A threshold policy takes the proven Cholesky route when the bounds
/// allow it (the same result as the eigen route, at a fraction of the cost); otherwise, and for
/// an explicit rank, the pseudo-inverse is read from the one eigendecomposition of `Σ_T`.
pub fn total_pinv(g: &ClassGeometry, policy: RankPolicy) -> Result<Arc<TotalPinv>> {
    if let Some(t) = g.factors.total_pinv.get() {
        if t.policy == policy {
            return Ok(t.clone());
        }
    }
    let cholesky = match policy {
        RankPolicy::Rtol(rtol) => {
            let rtol = rtol.unwrap_or_else(|| RankPolicy::default_rtol(g.dim));
            total_cholesky(g, rtol)?
        }
        RankPolicy::Top(_) => None,
    };
    let pinv = match cholesky {
        Some(p) => p,
        None => total_eigen(g)?.pinv(policy)?,
    };
    let quad_forms = pinv.quad_forms(g.centred_means.as_ref());
    let t = Arc::new(TotalPinv {
        policy,
        pinv,
        quad_forms,
    });
    let _ = g.factors.total_pinv.set(t.clone());
    Ok(t)
}

/// Eigen-structure of `Σ_B` restricted to its positive part: eigenvalues (decreasing) and,
/// for each, `v_jᵀ Σ_W v_j` (when Σ_W is available).
#[derive(Debug, Clone)]
pub struct BetweenSpectrum {
    pub values: Vec<f64>,
    pub within_quad: Option<Vec<f64>>,
}

/// Spectrum of `Σ_B` through the smaller of the `K × K` Gram `AᵀA` (A = centred means · diag √w)
/// and `Σ_B` itself; only the first `min(p, K-1)` eigenpairs with positive eigenvalues are kept.
/// Computed once per geometry and shared.
pub fn between_spectrum(g: &ClassGeometry) -> Result<Arc<BetweenSpectrum>> {
    if let Some(s) = g.factors.spectrum.get() {
        return Ok(s.clone());
    }
    let s = Arc::new(between_spectrum_uncached(g)?);
    Ok(g.factors.spectrum.get_or_init(|| s).clone())
}

fn between_spectrum_uncached(g: &ClassGeometry) -> Result<BetweenSpectrum> {
    let (p, kp) = (g.dim, g.num_present());
    let cap = p.min(kp - 1);
    let a = Mat::from_fn(p, kp, |i, j| g.centred_means[(i, j)] * g.weights[j].sqrt());
    let (vals, vecs): (Vec<f64>, Mat<f64>) = if kp <= p {
        let gram = a.transpose() * &a;
        let (vals, u) = sym_eig_desc(gram.as_ref())?;
        let r = vals.iter().take(cap).take_while(|&&v| v > 0.0).count();
        // v_j = A u_j / sqrt(λ_j)
        let au = &a * u.as_ref().subcols(0, r);
        let v = Mat::from_fn(p, r, |i, j| au[(i, j)] / vals[j].sqrt());
        (vals[..r].to_vec(), v)
    } else {
        let (vals, v) = sym_eig_desc(g.between.as_ref())?;
        let r = vals.iter().take(cap).take_while(|&&v| v > 0.0).count();
        (vals[..r].to_vec(), v.as_ref().subcols(0, r).to_owned())
    };
    let within_quad = match &g.within {
        Some(w) => {
            let wv = w * &vecs;
            Some(
                (0..vals.len())
                    .map(|j| (0..p).map(|i| vecs[(i, j)] * wv[(i, j)]).sum())
                    .collect(),
            )
        }
        None => None,
    };
    Ok(BetweenSpectrum {
        values: vals,
        within_quad,
    })
}

/// `(Tr[Σ_W Σ_B^†], tr(P_B Σ_W), rank)` from the Cholesky route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nc1Cholesky {
    pub trace: f64,
    pub inside: f64,
    pub rank: usize,
}

/// NC1 and its split without an eigendecomposition, when `K ≤ p` and the threshold provably
/// keeps all `K - 1` non-zero eigenvalues of `Σ_B` (then the result equals the eigen-route's).
///
/// `Σ_B = A Aᵀ` with `A = M̄ diag(√w)` (`p × K`), and the `K × K` Gram `G = AᵀA` has the known
/// null vector `v = √w` (`Σ_k w_k (μ_k - μ_G) = 0`, `‖v‖ = 1`). With `G` scaled to unit trace,
/// `G' = G + vvᵀ/K` equals `G` on `v⊥` and has `v` as an eigenvector; it is factorised
/// `G' = L Lᵀ`. Since `λ_min(G') ≥ 1/tr(G'⁻¹) = 1/‖L⁻¹‖_F²` (or the tighter `1/‖G'⁻¹‖_F`,
/// formed when the first does not suffice) and `λ_max(G) ≤ min(tr G, ‖G‖_F)`, the route is
/// taken only if that lower bound exceeds `rtol` times that upper bound (with a 1e-6 margin):
/// every non-zero eigenvalue then exceeds `rtol · λ_max`. As `A v = 0`, `Σ_B^† = A G'^{-2} Aᵀ` and
/// `P_B = A G'^{-1} Aᵀ`, so with `Y = A G'^{-1}`: `Tr[Σ_W Σ_B^†] = Σ Y ∘ (Σ_W Y)` and
/// `tr(P_B Σ_W) = Σ A ∘ (Σ_W Y)`. Any other policy, or a failed proof, returns `None`.
pub fn nc1_cholesky(g: &ClassGeometry, policy: RankPolicy) -> Result<Option<Nc1Cholesky>> {
    if let Some((p, r)) = g.factors.nc1_cholesky.get() {
        if *p == policy {
            return Ok(*r);
        }
    }
    let r = nc1_cholesky_uncached(g, policy)?;
    let _ = g.factors.nc1_cholesky.set((policy, r));
    Ok(r)
}

fn nc1_cholesky_uncached(g: &ClassGeometry, policy: RankPolicy) -> Result<Option<Nc1Cholesky>> {
    let RankPolicy::Rtol(Some(rtol)) = policy else {
        return Ok(None);
    };
    let (p, kp) = (g.dim, g.num_present());
    let w = g.within()?;
    if kp > p || kp < 2 {
        return Ok(None);
    }
    // Brought to unit size first (features near the ends of the f64 range): `A/s_a`, `Σ_W/s_w`.
    let a = Mat::from_fn(p, kp, |i, j| g.centred_means[(i, j)] * g.weights[j].sqrt());
    let max_abs = |m: MatRef<'_, f64>| {
        let mut s = 0.0f64;
        for j in 0..m.ncols() {
            for i in 0..m.nrows() {
                s = s.max(m[(i, j)].abs());
            }
        }
        s
    };
    let (sa, sw) = (max_abs(a.as_ref()), max_abs(w.as_ref()));
    if !(sa > 0.0 && sw > 0.0 && sa.is_finite() && sw.is_finite()) {
        return Ok(None);
    }
    let a = Mat::from_fn(p, kp, |i, j| a[(i, j)] / sa);
    let w = Mat::from_fn(p, p, |i, j| w[(i, j)] / sw);
    let gram = a.transpose() * &a;
    let tr: f64 = (0..kp).map(|i| gram[(i, i)]).sum();
    if !(tr > 0.0 && tr.is_finite()) {
        return Ok(None);
    }
    let norm_w: f64 = g.weights.iter().sum::<f64>().sqrt();
    let v: Vec<f64> = g.weights.iter().map(|w| w.sqrt() / norm_w).collect();
    let c = 1.0 / kp as f64;
    let gs = Mat::from_fn(kp, kp, |i, j| gram[(i, j)] / tr + c * v[i] * v[j]);
    // λ_max(G/tr) ≤ min(1, ‖G/tr‖_F): every non-zero eigenvalue exceeds rtol · λ_max when
    // λ_min(G') does, and G' is factorised only through that proof.
    let frob: f64 = gram.norm_l2() / tr;
    let Some(linv) = proven_cholesky_inverse(&gs, rtol * frob.min(1.0) * (1.0 + 1e-6)) else {
        return Ok(None);
    };
    // Y = A G'^{-1} = A (L⁻ᵀ L⁻¹) / tr.
    let ab = &a * linv.transpose();
    let y = &ab * &linv;
    let wy = &w * &y;
    let (mut t, mut inside) = (0.0, 0.0);
    for j in 0..kp {
        for i in 0..p {
            t += y[(i, j)] * wy[(i, j)];
            inside += a[(i, j)] * wy[(i, j)];
        }
    }
    // Back to the original scale: Tr[Σ_W Σ_B^†] scales as s_w/s_a², tr(P_B Σ_W) as s_w.
    Ok(Some(Nc1Cholesky {
        trace: t / (tr * tr) * (sw / sa) / sa,
        inside: inside / tr * sw,
        rank: kp - 1,
    }))
}
