//! The metrics of the class-mean Gram `G = M̄ᵀM̄` (`M̄` the centred means, `p × K`): the
//! squared distance, CDNV and NC2, through one route — the pairs `k < l` visited in row blocks
//! of `G` (the whole Gram as one block when `K ≤ p`, [`PAIR_BLOCK`] rows at a time otherwise:
//! `O(PAIR_BLOCK · K)` memory, never `K × K`), with both metrics' sums fused into one visit.

use super::finite;
use crate::error::{EtfError, Result};
use crate::geometry::ClassGeometry;
use faer::{Mat, MatRef};

/// `Tr Σ_W / Tr Σ_B` (Hui et al.); `Degenerate` when every class has the same mean.
pub fn squared_distance(g: &ClassGeometry) -> Result<f64> {
    g.check_separated("the squared distance")?;
    finite(g.within_trace / g.between_trace(), "the squared distance")
}

/// `Tr Σ_W / p` (Tiomoko Ali et al., Fig. 3).
pub fn within_trace_per_dim(g: &ClassGeometry) -> f64 {
    g.within_trace / g.dim as f64
}

/// `‖μ_k - μ_l‖²` of present classes `k`, `l` by exact differences.
fn mean_distance2(g: &ClassGeometry, k: usize, l: usize) -> f64 {
    (0..g.dim)
        .map(|i| (g.centred_means[(i, k)] - g.centred_means[(i, l)]).powi(2))
        .sum()
}

/// Class-distance normalised variance: mean over k<l of `(σ_k² + σ_l²) / (2‖μ_k - μ_l‖²)`.
///
/// Distances come from the Gram of the centred means, and any pair whose expanded distance is
/// small against the norms (cancellation) is recomputed by exact differences. Two classes with
/// the same mean make it undefined: `Degenerate`, naming them. The time is `O(K² p)` (a sum over
/// pairs); memory `O(K · min(K, PAIR_BLOCK))`.
pub fn cdnv(g: &ClassGeometry) -> Result<f64> {
    Ok(pairwise(g, true, false)?.0.expect("asked"))
}

/// NC2 of the centred class means; `Degenerate` when a class mean equals the global mean (its
/// angles are undefined). The spread of the cosines is combined block by block (Chan et al.'s
/// update), and `‖G‖_F` comes from the smaller of `M̄ᵀM̄` and `M̄M̄ᵀ`.
pub fn nc2(g: &ClassGeometry) -> Result<Nc2> {
    Ok(pairwise(g, false, true)?.1.expect("asked"))
}

/// Rows of the `K × K` Gram of the centred means formed at a time when `K > p`.
pub const PAIR_BLOCK: usize = 256;

/// Running count, mean and sum of squared deviations, combined batch by batch (Chan, Golub &
/// LeVeque's parallel update: each batch's own two-pass moments, then the exact combination).
#[derive(Debug, Default, Clone, Copy)]
struct Moments {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn add_batch(&mut self, xs: &[f64]) {
        if xs.is_empty() {
            return;
        }
        let nb = xs.len() as f64;
        let mb = xs.iter().sum::<f64>() / nb;
        let m2b: f64 = xs.iter().map(|x| (x - mb) * (x - mb)).sum();
        let n = self.n + nb;
        let d = mb - self.mean;
        self.mean += d * nb / n;
        self.m2 += m2b + d * d * self.n * nb / n;
        self.n = n;
    }
    fn std(&self) -> f64 {
        (self.m2 / self.n).sqrt()
    }
}

/// Calls `f(k0, slab)` for consecutive row blocks `k0..k0+b` of the upper part of the Gram
/// `G = M̄ᵀM̄` of the centred means: `slab[(r, c)] = G[k0 + r, k0 + c]` (`b × (K - k0)`).
fn for_each_gram_block(
    g: &ClassGeometry,
    block: usize,
    mut f: impl FnMut(usize, MatRef<'_, f64>) -> Result<()>,
) -> Result<()> {
    let kp = g.num_present();
    let c = g.centred_means.as_ref();
    let mut k0 = 0;
    while k0 < kp {
        let b = block.max(1).min(kp - k0);
        let slab = c.subcols(k0, b).transpose() * c.subcols(k0, kp - k0);
        f(k0, slab.as_ref())?;
        k0 += b;
    }
    Ok(())
}

/// The running sums of one visit of the pairs.
struct PairSums {
    kp: usize,
    diag: Vec<f64>,
    norms: Vec<f64>,
    /// `‖G‖_F` (NC2's ETF error).
    gf: f64,
    cdnv: f64,
    moments: Moments,
    absdev: f64,
    etf_error2: f64,
    cosines: Vec<f64>,
}

impl PairSums {
    /// Adds the pairs of one slab of rows `k0..` of the Gram (see [`for_each_gram_block`]).
    fn add_slab(
        &mut self,
        g: &ClassGeometry,
        k0: usize,
        slab: MatRef<'_, f64>,
        want_cdnv: bool,
        want_nc2: bool,
    ) -> Result<()> {
        let kp = self.kp;
        let target = -1.0 / (kp as f64 - 1.0);
        let pf = ((kp - 1) as f64).sqrt();
        let nc2_pairs = want_nc2 && self.norms.iter().all(|&n| n > 0.0);
        self.cosines.clear();
        for r in 0..slab.nrows() {
            let k = k0 + r;
            if want_nc2 {
                let d = self.diag[k] / self.gf - (1.0 - 1.0 / kp as f64) / pf;
                self.etf_error2 += d * d;
            }
            for l in (k + 1)..kp {
                let gkl = slab[(r, l - k0)];
                if want_cdnv {
                    let scale = self.diag[k] + self.diag[l];
                    let mut d2 = scale - 2.0 * gkl;
                    if !(d2 > 1e-6 * scale) {
                        d2 = mean_distance2(g, k, l);
                    }
                    if !(d2 > 0.0) {
                        return Err(EtfError::Degenerate(format!(
                            "CDNV is undefined: classes {} and {} have the same mean",
                            g.present[k], g.present[l]
                        )));
                    }
                    self.cdnv += (g.class_variances[k] + g.class_variances[l]) / (2.0 * d2);
                }
                if nc2_pairs {
                    let cos = gkl / (self.norms[k] * self.norms[l]);
                    self.cosines.push(cos);
                    self.absdev += (cos - target).abs();
                    let d = gkl / self.gf + (1.0 / kp as f64) / pf;
                    self.etf_error2 += 2.0 * d * d;
                }
            }
        }
        self.moments.add_batch(&self.cosines);
        Ok(())
    }

    fn nc2(&self, g: &ClassGeometry) -> Result<Nc2> {
        if let Some(k) = (0..self.kp).find(|&k| !(self.norms[k] > 0.0)) {
            return Err(EtfError::Degenerate(format!(
                "NC2 is undefined: the mean of class {} equals the global mean",
                g.present[k]
            )));
        }
        let (m, s) = mean_std(&self.norms);
        Ok(Nc2 {
            equinorm: finite(s / m, "NC2 equinorm")?,
            equiangularity: finite(self.moments.std(), "NC2 equiangularity")?,
            max_equiangularity: finite(self.absdev / self.moments.n, "NC2 max-equiangularity")?,
            etf_error: finite(self.etf_error2.sqrt(), "NC2 ETF error")?,
        })
    }
}

/// CDNV and/or NC2 from one visit of the class pairs.
pub(crate) fn pairwise(
    g: &ClassGeometry,
    want_cdnv: bool,
    want_nc2: bool,
) -> Result<(Option<f64>, Option<Nc2>)> {
    pairwise_in_blocks(
        g,
        if g.num_present() <= g.dim {
            0
        } else {
            PAIR_BLOCK
        },
        want_cdnv,
        want_nc2,
    )
}

/// [`pairwise`] with row blocks of `block` rows (`0`: the whole Gram at once).
pub(crate) fn pairwise_in_blocks(
    g: &ClassGeometry,
    block: usize,
    want_cdnv: bool,
    want_nc2: bool,
) -> Result<(Option<f64>, Option<Nc2>)> {
    let kp = g.num_present();
    let c = &g.centred_means;
    let diag: Vec<f64> = (0..kp)
        .map(|k| (0..g.dim).map(|i| c[(i, k)] * c[(i, k)]).sum())
        .collect();
    let whole: Option<Mat<f64>> = (block == 0).then(|| c.transpose() * c);
    // ‖G‖_F = ‖M̄ᵀM̄‖_F = ‖M̄M̄ᵀ‖_F: from the Gram when it is formed whole, else the p × p product.
    let gf = match (&whole, want_nc2) {
        (_, false) => 1.0,
        (Some(gram), true) => gram.norm_l2(),
        (None, true) => (c * c.transpose()).norm_l2(),
    };
    let mut sums = PairSums {
        kp,
        norms: diag.iter().map(|d| d.max(0.0).sqrt()).collect(),
        diag,
        gf,
        cdnv: 0.0,
        moments: Moments::default(),
        absdev: 0.0,
        etf_error2: 0.0,
        cosines: Vec::new(),
    };
    match &whole {
        Some(gram) => sums.add_slab(g, 0, gram.as_ref(), want_cdnv, want_nc2)?,
        None => for_each_gram_block(g, block, |k0, slab| {
            sums.add_slab(g, k0, slab, want_cdnv, want_nc2)
        })?,
    }
    let cdnv = if want_cdnv {
        Some(finite(sums.cdnv / (kp * (kp - 1) / 2) as f64, "CDNV")?)
    } else {
        None
    };
    let nc2 = if want_nc2 { Some(sums.nc2(g)?) } else { None };
    Ok((cdnv, nc2))
}

/// NC2 statistics of the centred class means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nc2 {
    /// std/mean of `‖μ_k - μ_G‖`.
    pub equinorm: f64,
    /// std of `cos(μ_k-μ_G, μ_l-μ_G)` over pairs k<l.
    pub equiangularity: f64,
    /// mean over pairs of `|cos + 1/(K-1)|`.
    pub max_equiangularity: f64,
    /// `‖G/‖G‖_F - P_K/‖P_K‖_F‖_F`.
    pub etf_error: f64,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt())
}
