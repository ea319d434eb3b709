//! [`TransferabilityStats`]: statistics plus the accumulators of the regularised (Ledoit–Wolf)
//! H-score and GBC, mergeable and serialisable like the statistics themselves.

use super::{policy, weighted_sum};
use crate::alloc::{check_dense_size, try_zeros};
use crate::error::{EtfError, Result};
use crate::geometry::{ClassGeometry, CollapseAnalysis, Weighting};
use crate::linalg::{Real, SymPinv};
use crate::stats::format::checksum;
use crate::stats::CollapseStats;
use faer::Mat;
use ndarray::{ArrayView1, ArrayView2};
use rayon::prelude::*;
use std::sync::Arc;

const XMAGIC: &[u8; 8] = b"ETFCXFER";
/// Format version of [`TransferabilityStats::to_bytes`].
pub const XFER_FORMAT_VERSION: u32 = 1;

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

/// Statistics (a [`CollapseAnalysis`], so the scores share its geometry) plus the accumulators that the regularised H-score and GBC need, all
/// relative to the same shift `c` (`a_i = h_i - c`): `Σ ‖a_i‖⁴`, `Σ ‖a_i‖² a_i` (`p`) and the
/// per-class, per-dimension `Σ_{y_i=k} a_i²` (`K × p`). Mergeable: another's sums are
/// re-expressed to this shift exactly (they are polynomials in the shift).
#[derive(Debug, Clone, PartialEq)]
pub struct TransferabilityStats {
    inner: CollapseAnalysis,
    fourth: f64,
    cubic: Vec<f64>,
    class_sq: Vec<f64>,
}

/// `Σ_i (h_i - c)`: the sum of all shifted rows.
fn shifted_total(stats: &CollapseStats) -> Vec<f64> {
    let p = stats.dim();
    let cs = stats.class_sums();
    let mut s = vec![0.0; p];
    for kk in 0..stats.num_classes() {
        for j in 0..p {
            s[j] += cs[kk * p + j];
        }
    }
    s
}

/// `(Σ‖a+e‖⁴, Σ‖a+e‖²(a+e), Σ_k (a+e)²)` from the sums relative to `c` and `e = c - c'`.
fn reexpress(
    st: &CollapseStats,
    fourth: f64,
    cubic: &[f64],
    class_sq: &[f64],
    e: &[f64],
) -> (f64, Vec<f64>, Vec<f64>) {
    let (k, p) = (st.num_classes(), st.dim());
    let n = st.num_samples() as f64;
    let s = shifted_total(st);
    let q: f64 = st.class_sq_norms().iter().sum();
    let sc = st.scatter();
    let se: Vec<f64> = (0..p)
        .map(|a| (0..p).map(|b| sc[a * p + b] * e[b]).sum())
        .collect();
    let ee: f64 = e.iter().map(|v| v * v).sum();
    let te: f64 = cubic.iter().zip(e).map(|(a, b)| a * b).sum();
    let ese: f64 = e.iter().zip(&se).map(|(a, b)| a * b).sum();
    let s_e: f64 = s.iter().zip(e).map(|(a, b)| a * b).sum();
    let f4 = fourth + 4.0 * te + 4.0 * ese + 2.0 * ee * q + 4.0 * ee * s_e + n * ee * ee;
    let cub: Vec<f64> = (0..p)
        .map(|j| cubic[j] + q * e[j] + 2.0 * se[j] + 2.0 * e[j] * s_e + ee * s[j] + n * ee * e[j])
        .collect();
    let cs = st.class_sums();
    let counts = st.counts();
    let mut csq = class_sq.to_vec();
    for kk in 0..k {
        let nk = counts[kk] as f64;
        for j in 0..p {
            csq[kk * p + j] += 2.0 * e[j] * cs[kk * p + j] + nk * e[j] * e[j];
        }
    }
    (f4, cub, csq)
}

impl TransferabilityStats {
    pub fn new(num_classes: usize, dim: usize) -> Result<Self> {
        check_dense_size(num_classes, dim, "per-class sums of squares")?;
        Ok(TransferabilityStats {
            inner: CollapseAnalysis::new(num_classes, dim, false)?,
            fourth: 0.0,
            cubic: try_zeros(dim, "Σ‖a‖²a")?,
            class_sq: try_zeros(num_classes * dim, "per-class sums of squares")?,
        })
    }

    pub fn collapse_stats(&self) -> &CollapseAnalysis {
        &self.inner
    }

    pub fn fourth_moment(&self) -> f64 {
        self.fourth
    }

    pub fn cubic_sum(&self) -> &[f64] {
        &self.cubic
    }

    /// `Σ_{y_i=k} (h_i - c)²` per class and dimension (`K × p` row-major).
    pub fn class_sq_sums(&self) -> &[f64] {
        &self.class_sq
    }

    /// Adds one batch; all-or-nothing (the inner update validates everything first).
    pub fn update<T: Real>(&mut self, h: ArrayView2<'_, T>, y: ArrayView1<'_, i64>) -> Result<()> {
        self.inner.update(h, y)?;
        let Some(c) = self.inner.stats().shift().map(|s| s.to_vec()) else {
            return Ok(());
        };
        let (k, p) = (self.inner.stats().num_classes(), self.inner.stats().dim());
        let n = h.nrows();
        const ROWS: usize = 512;
        // Per block of rows: (Σ‖a‖⁴, Σ‖a‖²a, per-class Σa² for the classes the block holds).
        type BlockSums = (f64, Vec<f64>, Vec<(usize, Vec<f64>)>);
        let parts: Vec<BlockSums> = (0..n.div_ceil(ROWS))
            .into_par_iter()
            .map(|blk| {
                let mut f4 = 0.0;
                let mut cub = vec![0.0; p];
                let mut per: Vec<(usize, Vec<f64>)> = Vec::new();
                let mut a = vec![0.0; p];
                for i in blk * ROWS..((blk + 1) * ROWS).min(n) {
                    let row = h.row(i);
                    let mut n2 = 0.0;
                    for j in 0..p {
                        a[j] = row[j].to_f64() - c[j];
                        n2 += a[j] * a[j];
                    }
                    f4 += n2 * n2;
                    for (cj, aj) in cub.iter_mut().zip(&a) {
                        *cj += n2 * aj;
                    }
                    let lab = y[i] as usize;
                    let slot = match per.iter().position(|(l, _)| *l == lab) {
                        Some(s) => s,
                        None => {
                            per.push((lab, vec![0.0; p]));
                            per.len() - 1
                        }
                    };
                    let q = &mut per[slot].1;
                    for j in 0..p {
                        q[j] += a[j] * a[j];
                    }
                }
                (f4, cub, per)
            })
            .collect();
        debug_assert!(parts.iter().all(|pt| pt.2.iter().all(|(l, _)| *l < k)));
        for (f4, cub, per) in parts {
            self.fourth += f4;
            for (dst, v) in self.cubic.iter_mut().zip(&cub) {
                *dst += v;
            }
            for (lab, q) in per {
                let row = &mut self.class_sq[lab * p..(lab + 1) * p];
                for (dst, v) in row.iter_mut().zip(&q) {
                    *dst += v;
                }
            }
        }
        Ok(())
    }

    /// Adds `other`: the same as one pass over both inputs, to rounding.
    pub fn merge(&mut self, other: &TransferabilityStats) -> Result<()> {
        self.inner.stats().check_compatible(other.inner.stats())?;
        let Some(oc) = other.inner.stats().shift().map(|s| s.to_vec()) else {
            return Ok(());
        };
        self.inner.merge(other.inner.stats())?;
        let mine = self.inner.stats().shift().expect("set by merge").to_vec();
        let e: Vec<f64> = oc.iter().zip(&mine).map(|(a, b)| a - b).collect();
        let (f4, cub, csq) = reexpress(
            other.inner.stats(),
            other.fourth,
            &other.cubic,
            &other.class_sq,
            &e,
        );
        self.fourth += f4;
        for (a, b) in self.cubic.iter_mut().zip(&cub) {
            *a += b;
        }
        for (a, b) in self.class_sq.iter_mut().zip(&csq) {
            *a += b;
        }
        Ok(())
    }

    /// Versioned little-endian bytes: magic `ETFCXFER`, `u32` version, `u64` length and bytes
    /// of the inner statistics, `Σ‖a‖⁴`, `Σ‖a‖²a`, the class sums of squares, FNV-1a-64.
    pub fn to_bytes(&self) -> Vec<u8> {
        let inner = self.inner.stats().to_bytes();
        let mut out =
            Vec::with_capacity(inner.len() + 8 * (2 + self.cubic.len() + self.class_sq.len()) + 32);
        out.extend_from_slice(XMAGIC);
        out.extend_from_slice(&XFER_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(inner.len() as u64).to_le_bytes());
        out.extend_from_slice(&inner);
        out.extend_from_slice(&self.fourth.to_le_bytes());
        for v in self.cubic.iter().chain(&self.class_sq) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let h = checksum(&out);
        out.extend_from_slice(&h.to_le_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let corrupt = |m: &str| EtfError::Corrupt(format!("transferability statistics: {m}"));
        if bytes.len() < 8 + 4 + 8 + 8 || &bytes[..8] != XMAGIC {
            return Err(corrupt(
                "not etfcore transferability statistics (bad magic or too short)",
            ));
        }
        let ver = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
        if ver != XFER_FORMAT_VERSION {
            return Err(EtfError::Incompatible(format!(
                "transferability statistics format version {ver}, this build reads \
                 {XFER_FORMAT_VERSION}"
            )));
        }
        let body = &bytes[..bytes.len() - 8];
        let stored = u64::from_le_bytes(bytes[bytes.len() - 8..].try_into().unwrap());
        if checksum(body) != stored {
            return Err(corrupt("checksum mismatch (truncated or modified)"));
        }
        let len = u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize;
        if 20 + len > body.len() {
            return Err(corrupt("truncated"));
        }
        let inner = CollapseStats::from_bytes(&bytes[20..20 + len])?;
        let (k, p) = (inner.num_classes(), inner.dim());
        let rest = &body[20 + len..];
        if rest.len() != 8 * (1 + p + k * p) {
            return Err(corrupt("length does not match num_classes and dim"));
        }
        let vals: Vec<f64> = rest
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        if vals.iter().any(|v| !v.is_finite()) {
            return Err(corrupt("non-finite value"));
        }
        Ok(TransferabilityStats {
            inner: inner.into(),
            fourth: vals[0],
            cubic: vals[1..1 + p].to_vec(),
            class_sq: vals[1 + p..].to_vec(),
        })
    }

    /// Ledoit–Wolf shrinkage `δ` of `Σ_T` (as scikit-learn's `ledoit_wolf`):
    /// `δ = min(1, b̄²/d²)`, `d² = ‖Σ_T - μI‖_F²`, `μ = tr Σ_T/p`,
    /// `b̄² = (Σ_i ‖x_i‖⁴/N - ‖Σ_T‖_F²)/N` with `x_i = h_i - μ_G`. Returns `δ` with the weighted
    /// geometry and its `Σ_T`.
    pub fn ledoit_wolf_shrinkage(&self) -> Result<(f64, Arc<ClassGeometry>, Mat<f64>)> {
        let g = self.inner.geometry(Weighting::Weighted)?;
        let stats = self.inner.stats();
        let p = stats.dim();
        let n = g.num_samples as f64;
        let c = stats.shift().expect("samples present");
        let e: Vec<f64> = (0..p).map(|j| c[j] - g.global_mean[j]).collect();
        let (f4, _, _) = reexpress(stats, self.fourth, &self.cubic, &self.class_sq, &e);
        let t = g.total()?;
        let mu = (0..p).map(|j| t[(j, j)]).sum::<f64>() / p as f64;
        let mut fro = 0.0;
        let mut d2 = 0.0;
        for a in 0..p {
            for b in 0..p {
                let v = t[(a, b)];
                fro += v * v;
                let w = if a == b { v - mu } else { v };
                d2 += w * w;
            }
        }
        let b2 = ((f4 / n - fro) / n).max(0.0);
        let delta = if d2 > 0.0 { (b2 / d2).min(1.0) } else { 0.0 };
        Ok((delta, g, t))
    }

    /// Regularised H-score (Ibrahim et al. 2022): `tr(Σ_LW^{-1} (1-δ) Σ_B)` with the Ledoit–Wolf
    /// estimate `Σ_LW = (1-δ)Σ_T + δ (tr Σ_T/p) I`. Returns `(value, δ, rank)`.
    pub fn regularized_hscore(&self, rtol: Option<f64>) -> Result<(f64, f64, usize)> {
        let (delta, g, total) = self.ledoit_wolf_shrinkage()?;
        let p = g.dim;
        let mu = (0..p).map(|j| total[(j, j)]).sum::<f64>() / p as f64;
        let lw = Mat::from_fn(p, p, |a, b| {
            (1.0 - delta) * total[(a, b)] + if a == b { delta * mu } else { 0.0 }
        });
        let pinv = SymPinv::new(lw.as_ref(), policy(&g, None, rtol)?, true)?;
        let between = weighted_sum(&g, &pinv.quad_forms(g.centred_means.as_ref()));
        Ok(((1.0 - delta) * between, delta, pinv.rank))
    }

    /// GBC (Pándy et al. 2022): `-Σ_{k≠l} exp(-D_B(k,l))` with the Bhattacharyya distance of
    /// diagonal Gaussians `D_B = ⅛ Σ_d (μ_kd-μ_ld)²/σ̄_d + ½ Σ_d ln(σ̄_d/√(σ_kd σ_ld))`,
    /// `σ̄ = (σ_k+σ_l)/2`, `σ_kd` the population variance of dimension `d` in class `k`.
    /// Variances are floored at `var_floor` (default `1e-12 ×` the largest variance) so that a
    /// constant dimension does not give an infinite distance.
    pub fn gbc(&self, var_floor: Option<f64>) -> Result<f64> {
        let stats = self.inner.stats();
        let (k, p) = (stats.num_classes(), stats.dim());
        let counts = stats.counts();
        let present: Vec<usize> = (0..k).filter(|&i| counts[i] > 0).collect();
        if present.len() < 2 {
            return Err(EtfError::TooFewClasses {
                present: present.len(),
                needed: 2,
            });
        }
        let cs = stats.class_sums();
        let mut means = vec![0.0; present.len() * p];
        let mut vars = vec![0.0; present.len() * p];
        for (i, &kk) in present.iter().enumerate() {
            let nk = counts[kk] as f64;
            for j in 0..p {
                let m = cs[kk * p + j] / nk;
                means[i * p + j] = m; // relative to the shift: differences are all we need
                vars[i * p + j] = (self.class_sq[kk * p + j] / nk - m * m).max(0.0);
            }
        }
        let shape = (present.len(), p);
        let means = ArrayView2::from_shape(shape, &means).expect("class rows × p");
        let vars = ArrayView2::from_shape(shape, &vars).expect("class rows × p");
        gbc_from_moments(means, vars, var_floor)
    }
}

/// GBC (Pándy et al. 2022) from per-class moments: `means` and `vars` are `classes × p` (the
/// same shape, at least two classes), `vars` the population per-dimension variances. `-Σ_{k≠l} exp(-D_B(k,l))` with
/// `D_B = ⅛ Σ_d (μ_kd-μ_ld)²/σ̄_d + ½ Σ_d ln(σ̄_d/√(σ_kd σ_ld))`, `σ̄ = (σ_k+σ_l)/2`; variances
/// floored at `var_floor` (default `1e-12 ×` the largest). What
/// [`TransferabilityStats::gbc`] computes from its accumulators, and what PED computes after
/// moving the class means.
pub fn gbc_from_moments(
    means: ArrayView2<f64>,
    vars: ArrayView2<f64>,
    var_floor: Option<f64>,
) -> Result<f64> {
    let (kp, p) = means.dim();
    if means.dim() != vars.dim() || p == 0 {
        return Err(EtfError::Shape(format!(
            "GBC needs class means and variances of one shape (classes × dimension ≥ 1), got \
             {:?} and {:?}",
            means.dim(),
            vars.dim()
        )));
    }
    if kp < 2 {
        return Err(EtfError::TooFewClasses {
            present: kp,
            needed: 2,
        });
    }
    for (what, values) in [
        ("GBC's class means", &means),
        ("GBC's class variances", &vars),
    ] {
        if let Some(((row, col), _)) = values.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(EtfError::NonFinite {
                what: what.into(),
                row,
                col,
            });
        }
    }
    if let Some(((row, col), v)) = vars.indexed_iter().find(|(_, &v)| v < 0.0) {
        return Err(EtfError::Parameter(format!(
            "GBC's class variances must be >= 0, got {v} at class row {row}, dimension {col}"
        )));
    }
    // Rows padded by one cache line, the variances offset by another: the four rows a pair
    // reads (two means, two variances) never sit a multiple of 4 KiB apart, whose cache-set
    // conflicts made this loop an order of magnitude slower under some heap layouts.
    let ps = p + GBC_PAD;
    let row = |a: usize| a * ps..a * ps + p;
    let vrow = |a: usize| GBC_PAD + a * ps..GBC_PAD + a * ps + p;
    let mut padded_means = vec![0.0; kp * ps];
    let mut padded_vars = vec![0.0; kp * ps + GBC_PAD];
    for a in 0..kp {
        for (dst, src) in padded_means[row(a)].iter_mut().zip(means.row(a)) {
            *dst = *src;
        }
        for (dst, src) in padded_vars[vrow(a)].iter_mut().zip(vars.row(a)) {
            *dst = *src;
        }
    }
    let (means, mut vars) = (padded_means, padded_vars);
    let vmax = vars.iter().cloned().fold(0.0, f64::max);
    let floor = match var_floor {
        Some(f) if f.is_finite() && f >= 0.0 => f,
        Some(f) => {
            return Err(EtfError::Parameter(format!(
                "var_floor must be finite and >= 0, got {f}"
            )))
        }
        None => 1e-12 * vmax,
    };
    if !(vmax > 0.0 || floor > 0.0) {
        return Err(EtfError::Degenerate(
            "every class has zero variance in every dimension: GBC is undefined".into(),
        ));
    }
    for v in vars.iter_mut() {
        *v = v.max(floor);
    }
    // D_B(k, l) = Σ_d [⅛ (μ_kd-μ_ld)²/σ̄_d + ½ ln σ̄_d] - ¼ Σ_d ln σ_kd - ¼ Σ_d ln σ_ld: the
    // class terms once per class, each unordered pair once (D_B is symmetric).
    let class_logs: Vec<f64> = (0..kp)
        .map(|a| 0.25 * vars[vrow(a)].iter().map(|v| v.ln()).sum::<f64>())
        .collect();
    let vscale = vmax.max(floor);
    let total: f64 = (0..kp)
        .into_par_iter()
        .map(|a| {
            crate::linalg::clear_upper_vector_state();
            let (ma, va) = (&means[row(a)], &vars[vrow(a)]);
            let mut acc = 0.0;
            for b in (a + 1)..kp {
                let (mb, vb) = (&means[row(b)], &vars[vrow(b)]);
                let (quad, log_mean_var) = bhattacharyya_sums(ma, va, mb, vb, vscale);
                let db = 0.125 * quad + 0.5 * log_mean_var - class_logs[a] - class_logs[b];
                acc += (-db).exp();
            }
            2.0 * acc
        })
        .sum();
    Ok(-total)
}

/// Padding (in f64) of GBC's per-class rows: one cache line.
const GBC_PAD: usize = 8;

/// Lanes of [`bhattacharyya_sums`] (independent accumulators the compiler can vectorise).
const GBC_LANES: usize = 8;

/// `(Σ_d (μ_ad-μ_bd)²/σ̄_d, Σ_d ln σ̄_d)` with `σ̄ = (σ_a+σ_b)/2`. The logarithms are taken of
/// products of 8 consecutive `σ̄_d/scale` per lane (`scale` ≥ every variance, so each factor is
/// in `(0, 1]` and a product of 8 stays far inside the float64 range for factors above
/// `10⁻³⁸`; the default variance floor is `10⁻¹²` of the largest), one logarithm per 8
/// dimensions instead of one per dimension; `ln(Π v/scale) + n ln scale` is the same sum up
/// to rounding.
fn bhattacharyya_sums(ma: &[f64], va: &[f64], mb: &[f64], vb: &[f64], scale: f64) -> (f64, f64) {
    const L: usize = GBC_LANES;
    const BLOCK: usize = 8 * L;
    let p = ma.len();
    let inv = 1.0 / scale;
    let mut quad = [0.0f64; L];
    let mut logs = 0.0;
    let mut j = 0;
    while j + BLOCK <= p {
        let mut prod = [1.0f64; L];
        for s in 0..8 {
            let o = j + s * L;
            for l in 0..L {
                let v = 0.5 * (va[o + l] + vb[o + l]);
                let d = ma[o + l] - mb[o + l];
                quad[l] += d * d / v;
                prod[l] *= v * inv;
            }
        }
        logs += prod.iter().map(|x| x.ln()).sum::<f64>();
        j += BLOCK;
    }
    let mut tail_quad = 0.0;
    for i in j..p {
        let v = 0.5 * (va[i] + vb[i]);
        let d = ma[i] - mb[i];
        tail_quad += d * d / v;
        logs += (v * inv).ln();
    }
    (
        quad.iter().sum::<f64>() + tail_quad,
        logs + p as f64 * scale.ln(),
    )
}

#[cfg(test)]
mod gbc_tests {
    use super::{bhattacharyya_sums, gbc_from_moments};
    use crate::error::EtfError;
    use ndarray::Array2;

    #[test]
    fn gbc_from_moments_equals_the_pairwise_sum() {
        let (k, p) = (5usize, 11usize);
        let f = |i: usize, j: usize, s: f64| (((i * 31 + j * 17) % 13) as f64 / 13.0 + 0.05) * s;
        let means = Array2::from_shape_fn((k, p), |(i, j)| f(i, j, 2.0) - 1.0);
        let vars = Array2::from_shape_fn((k, p), |(i, j)| f(i + 3, j, 0.7));
        let mut want = 0.0;
        for a in 0..k {
            for b in 0..k {
                if a == b {
                    continue;
                }
                let mut db = 0.0;
                for d in 0..p {
                    let vb = 0.5 * (vars[(a, d)] + vars[(b, d)]);
                    db += 0.125 * (means[(a, d)] - means[(b, d)]).powi(2) / vb
                        + 0.5 * (vb / (vars[(a, d)] * vars[(b, d)]).sqrt()).ln();
                }
                want -= (-db).exp();
            }
        }
        let got = gbc_from_moments(means.view(), vars.view(), None).unwrap();
        assert!((got - want).abs() <= 1e-12 * want.abs(), "{got} {want}");
    }

    #[test]
    fn gbc_from_moments_refuses_bad_moments() {
        let m = Array2::<f64>::zeros((3, 4));
        let v = Array2::<f64>::ones((3, 4));
        let short = Array2::<f64>::ones((3, 5));
        assert!(matches!(
            gbc_from_moments(m.view(), short.view(), None),
            Err(EtfError::Shape(_))
        ));
        let one = Array2::<f64>::ones((1, 4));
        assert!(matches!(
            gbc_from_moments(one.view(), one.view(), None),
            Err(EtfError::TooFewClasses { present: 1, .. })
        ));
        let mut nan = v.clone();
        nan[(2, 1)] = f64::NAN;
        assert!(matches!(
            gbc_from_moments(m.view(), nan.view(), None),
            Err(EtfError::NonFinite { row: 2, col: 1, .. })
        ));
        let mut neg = v.clone();
        neg[(1, 3)] = -1.0;
        assert!(matches!(
            gbc_from_moments(m.view(), neg.view(), None),
            Err(EtfError::Parameter(_))
        ));
        assert!(matches!(
            gbc_from_moments(m.view(), v.view(), Some(-1.0)),
            Err(EtfError::Parameter(_))
        ));
        let zero = Array2::<f64>::zeros((3, 4));
        assert!(matches!(
            gbc_from_moments(m.view(), zero.view(), None),
            Err(EtfError::Degenerate(_))
        ));
    }

    #[test]
    fn blocked_logs_equal_one_log_per_dimension() {
        for p in [1usize, 7, 64, 65, 130, 2048] {
            let f = |i: usize, s: f64| ((i * 7919 % 97) as f64 / 97.0 + 0.01) * s;
            let (ma, mb): (Vec<f64>, Vec<f64>) = (
                (0..p).map(|i| f(i, 3.0)).collect(),
                (0..p).map(|i| f(i + 5, -2.0)).collect(),
            );
            let (va, vb): (Vec<f64>, Vec<f64>) = (
                (0..p).map(|i| f(i + 1, 1e-3)).collect(),
                (0..p).map(|i| f(i + 2, 5.0)).collect(),
            );
            let scale = va.iter().chain(&vb).cloned().fold(0.0, f64::max);
            let (q, l) = bhattacharyya_sums(&ma, &va, &mb, &vb, scale);
            let q0: f64 = (0..p)
                .map(|i| (ma[i] - mb[i]).powi(2) / (0.5 * (va[i] + vb[i])))
                .sum();
            let l0: f64 = (0..p).map(|i| (0.5 * (va[i] + vb[i])).ln()).sum();
            assert!((q - q0).abs() <= 1e-12 * q0.abs(), "{p}: {q} {q0}");
            assert!((l - l0).abs() <= 1e-12 * (1.0 + l0.abs()), "{p}: {l} {l0}");
        }
    }
}
