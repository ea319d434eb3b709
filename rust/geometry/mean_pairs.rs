//! The pairs of class means, visited once: every sum over `k < l` that CDNV and NC2 need,
//! computed from the Gram `G = M̄ᵀM̄` of the centred means (`M̄` is `p × K`) without ever
//! forming it whole when `K > p`, and cached with the geometry (so CDNV and NC2 share one visit).
//!
//! Three routes, chosen by [`PairRoute::for_geometry`]:
//!
//! - [`PairRoute::Whole`] (`K ≤ p`): `G` formed at once in f64.
//! - [`PairRoute::F64Blocks`] (`K > p`, float64 input or no AVX-512): row slabs of `G` in f64,
//!   `O(block · K)` memory.
//! - [`PairRoute::F32Tiles`] (`K > p`, float32 input, AVX-512): the statistics pass's packed
//!   kernel on tiles of `G`: the centred means rounded once to f32, products formed in f32
//!   over runs of at most [`KC`] coordinates and each run's sums added in f64, tiles of
//!   [`TILE_ROWS`] × [`TILE_COLS`] reduced as soon as they are complete (no `K × K` matrix, no
//!   second pass over `G`), row slabs on all threads, combined in a fixed order (the result does
//!   not depend on the thread count).
//!
//! **Error of the float32 route.** With `u = 2⁻²⁴`, each entry obeys
//! `|Ĝ_kl − G_kl| ≤ ε ‖μ̄_k‖ ‖μ̄_l‖` with `ε = 2u + γ_KC`, `γ_n = nu/(1 − nu)` — about
//! `1.55·10⁻⁵` ([`f32_gram_error_bound`]); the norms `‖μ̄_k‖²` are exact f64 sums. Hence a cosine
//! is off by at most `ε` (so are NC2's equiangularity, a standard deviation, and its mean
//! absolute deviation), and a squared distance `d̂²_kl = ‖μ̄_k‖² + ‖μ̄_l‖² − 2Ĝ_kl` by at most
//! `ε (‖μ̄_k‖² + ‖μ̄_l‖²)`. A pair whose `d̂²` falls below [`F32_EXACT_RTOL`] times that scale is
//! recomputed by exact f64 differences, so every CDNV term, and CDNV, is within a relative
//! `ε / (F32_EXACT_RTOL − ε) ≈ 10⁻³`. These are worst-case bounds; rounding errors of random
//! sign make the measured errors far smaller (about `10⁻⁷` relative in the tests). NC2's ETF
//! error uses `‖G/‖G‖_F − P/‖P‖_F‖²_F = 2 − 2⟨G, P⟩/(‖G‖_F ‖P‖_F)` with `⟨G, P⟩ = tr G − ‖Σ_k μ̄_k‖²/K`
//! (both exact) and `‖G‖²_F` summed from the tiles.

use super::ClassGeometry;
use crate::linalg::syrk::{avx512_available, gram_block_panels_f32, PanelLayout, KC};
use crate::linalg::Precision;
use faer::{Mat, MatRef};
use rayon::prelude::*;

/// Rows of the `K × K` Gram formed at a time on the float64 route when `K > p`.
pub const PAIR_BLOCK: usize = 256;
/// Rows of a tile of the float32 route (a multiple of 8).
pub const TILE_ROWS: usize = 96;
/// Columns of a tile of the float32 route (a multiple of 48).
pub const TILE_COLS: usize = 768;
/// Float64 routes: a pair whose expanded squared distance is below this share of
/// `‖μ̄_k‖² + ‖μ̄_l‖²` is recomputed by exact differences (cancellation).
pub const F64_EXACT_RTOL: f64 = 1e-6;
/// Float32 route: the same threshold, set by the error bound (see the module notes).
pub const F32_EXACT_RTOL: f64 = 1.0 / 64.0;

/// `ε = 2u + γ_KC` (`u = 2⁻²⁴`): the bound on `|Ĝ_kl − G_kl| / (‖μ̄_k‖ ‖μ̄_l‖)` of the float32
/// route.
pub fn f32_gram_error_bound() -> f64 {
    let u = (f32::EPSILON as f64) / 2.0;
    let n = KC as f64;
    2.0 * u + n * u / (1.0 - n * u)
}

/// How the pairs are visited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairRoute {
    /// `G` at once, f64.
    Whole,
    /// Row slabs of `G` of the given height, f64.
    F64Blocks(usize),
    /// Tiles of `G` from float32 products with float64 accumulation.
    F32Tiles,
}

impl PairRoute {
    /// The route for this geometry: `Whole` when `K ≤ p`; otherwise `F32Tiles` for statistics
    /// of float32 input on a CPU with AVX-512, else `F64Blocks(PAIR_BLOCK)`.
    pub fn for_geometry(g: &ClassGeometry) -> PairRoute {
        if g.num_present() <= g.dim {
            PairRoute::Whole
        } else if g.precision == Precision::F32 && avx512_available() {
            PairRoute::F32Tiles
        } else {
            PairRoute::F64Blocks(PAIR_BLOCK)
        }
    }
}

/// Count, mean and sum of squared deviations, combined batch by batch (Chan, Golub &
/// LeVeque's parallel update: each batch's own two-pass moments, then the exact combination).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Moments {
    pub n: f64,
    pub mean: f64,
    pub m2: f64,
}

impl Moments {
    pub fn add_batch(&mut self, xs: &[f64]) {
        if xs.is_empty() {
            return;
        }
        let nb = xs.len() as f64;
        let mb = xs.iter().sum::<f64>() / nb;
        let m2b: f64 = xs.iter().map(|x| (x - mb) * (x - mb)).sum();
        self.merge(&Moments {
            n: nb,
            mean: mb,
            m2: m2b,
        });
    }
    pub fn merge(&mut self, o: &Moments) {
        if o.n == 0.0 {
            return;
        }
        let n = self.n + o.n;
        let d = o.mean - self.mean;
        self.mean += d * o.n / n;
        self.m2 += o.m2 + d * d * self.n * o.n / n;
        self.n = n;
    }
    /// Population standard deviation.
    pub fn std(&self) -> f64 {
        (self.m2 / self.n).sqrt()
    }
}

/// Every sum over the pairs of present classes that CDNV and NC2 are made of.
#[derive(Debug, Clone, PartialEq)]
pub struct MeanPairs {
    pub route: PairRoute,
    /// `K(K − 1)/2`.
    pub pairs: usize,
    /// `‖μ̄_k‖` per present class (exact f64).
    pub norms: Vec<f64>,
    /// `Σ_{k<l} (σ_k² + σ_l²) / (2‖μ̄_k − μ̄_l‖²)` over the pairs with distinct means.
    pub cdnv_sum: f64,
    /// The first pair (present indices, visit order) whose means are equal.
    pub equal_means: Option<(usize, usize)>,
    /// Moments of `cos(μ̄_k, μ̄_l)` over the pairs (empty when a norm is zero).
    pub cosines: Moments,
    /// `Σ_{k<l} |cos + 1/(K − 1)|`.
    pub cos_absdev: f64,
    /// `‖G/‖G‖_F − P/‖P‖_F‖²_F` (NC2's squared ETF error; `P = I − 11ᵀ/K`), when no norm is zero.
    pub etf_error2: f64,
    /// Pairs recomputed by exact differences because of cancellation.
    pub exact_distances: usize,
}

/// What every pair's work reads.
struct Ctx<'a> {
    g: &'a ClassGeometry,
    diag: Vec<f64>,
    norms: Vec<f64>,
    rtol: f64,
    cosines: bool,
    target: f64,
    /// `‖G‖_F` and `‖P‖_F` on the f64 routes (the ETF error is summed pair by pair there).
    gf: f64,
    pf: f64,
}

/// The sums of one part of the visit; parts are combined in a fixed order.
#[derive(Default)]
struct Part {
    cdnv_sum: f64,
    equal_means: Option<(usize, usize)>,
    cosines: Moments,
    absdev: f64,
    /// f64 routes: `Σ` of the ETF error's terms; f32 route: `Σ_{k≠l} Ĝ²_kl`.
    etf_or_g2: f64,
    exact: usize,
}

impl Part {
    #[inline]
    fn add_pair(&mut self, c: &Ctx, k: usize, l: usize, gkl: f64, cos_buf: &mut Vec<f64>) {
        let scale = c.diag[k] + c.diag[l];
        let mut d2 = scale - 2.0 * gkl;
        if !(d2 > c.rtol * scale) {
            d2 = exact_distance2(c.g, k, l);
            self.exact += 1;
        }
        if d2 > 0.0 {
            self.cdnv_sum += (c.g.class_variances[k] + c.g.class_variances[l]) / (2.0 * d2);
        } else if self.equal_means.is_none() {
            self.equal_means = Some((k.min(l), k.max(l)));
        }
        if c.cosines {
            let cos = gkl / (c.norms[k] * c.norms[l]);
            cos_buf.push(cos);
            self.absdev += (cos - c.target).abs();
        }
    }
    fn merge(&mut self, o: &Part) {
        self.cdnv_sum += o.cdnv_sum;
        self.equal_means = self.equal_means.or(o.equal_means);
        self.cosines.merge(&o.cosines);
        self.absdev += o.absdev;
        self.etf_or_g2 += o.etf_or_g2;
        self.exact += o.exact;
    }
}

/// `‖μ̄_k − μ̄_l‖²` by exact differences.
fn exact_distance2(g: &ClassGeometry, k: usize, l: usize) -> f64 {
    let c = &g.centred_means;
    (0..g.dim).map(|i| (c[(i, k)] - c[(i, l)]).powi(2)).sum()
}

/// The pairs of `g` by `route` (uncached; [`ClassGeometry::mean_pairs`] caches the default
/// route's result).
pub fn visit(g: &ClassGeometry, route: PairRoute) -> MeanPairs {
    let kp = g.num_present();
    let c = g.centred_means.as_ref();
    let diag: Vec<f64> = (0..kp)
        .map(|k| (0..g.dim).map(|i| c[(i, k)] * c[(i, k)]).sum())
        .collect();
    let norms: Vec<f64> = diag.iter().map(|d| d.max(0.0).sqrt()).collect();
    let cosines = norms.iter().all(|&n| n > 0.0);
    let whole: Option<Mat<f64>> = (route == PairRoute::Whole).then(|| c.transpose() * c);
    // ‖G‖_F = ‖M̄ᵀM̄‖_F = ‖M̄M̄ᵀ‖_F: from the Gram when it is formed whole, else the p × p product.
    let gf = match (&whole, route, cosines) {
        (_, PairRoute::F32Tiles, _) | (_, _, false) => 1.0,
        (Some(gram), _, true) => gram.norm_l2(),
        (None, _, true) => (c * c.transpose()).norm_l2(),
    };
    let ctx = Ctx {
        g,
        rtol: if route == PairRoute::F32Tiles {
            F32_EXACT_RTOL
        } else {
            F64_EXACT_RTOL
        },
        cosines,
        target: -1.0 / (kp as f64 - 1.0),
        gf,
        pf: ((kp - 1) as f64).sqrt(),
        diag,
        norms,
    };
    let part = match (route, &whole) {
        (PairRoute::F32Tiles, _) => f32_tiles(&ctx),
        (_, Some(gram)) => f64_slab(&ctx, 0, gram.as_ref()),
        (PairRoute::F64Blocks(block), None) => f64_blocks(&ctx, block),
        (PairRoute::Whole, None) => unreachable!("the whole Gram is formed above"),
    };
    let etf_error2 = if !cosines {
        f64::NAN
    } else if route == PairRoute::F32Tiles {
        // 2 − 2⟨G, P⟩/(‖G‖_F ‖P‖_F), ⟨G, P⟩ = tr G − ‖Σ_k μ̄_k‖²/K
        let trace: f64 = ctx.diag.iter().sum();
        let gf2 = ctx.diag.iter().map(|d| d * d).sum::<f64>() + 2.0 * part.etf_or_g2;
        let s2: f64 = (0..g.dim)
            .map(|i| (0..kp).map(|k| c[(i, k)]).sum::<f64>().powi(2))
            .sum();
        (2.0 - 2.0 * (trace - s2 / kp as f64) / (gf2.sqrt() * ctx.pf)).max(0.0)
    } else {
        part.etf_or_g2
    };
    MeanPairs {
        route,
        pairs: kp * (kp - 1) / 2,
        norms: ctx.norms.clone(),
        cdnv_sum: part.cdnv_sum,
        equal_means: part.equal_means,
        cosines: part.cosines,
        cos_absdev: part.absdev,
        etf_error2,
        exact_distances: part.exact,
    }
}

/// Rows `k0..` of the Gram (`slab[(r, c)] = G[k0 + r, k0 + c]`), pairs `l > k`, f64.
fn f64_slab(c: &Ctx, k0: usize, slab: MatRef<'_, f64>) -> Part {
    let kp = c.diag.len();
    let mut part = Part::default();
    let mut cos = Vec::new();
    for r in 0..slab.nrows() {
        let k = k0 + r;
        if c.cosines {
            let d = c.diag[k] / c.gf - (1.0 - 1.0 / kp as f64) / c.pf;
            part.etf_or_g2 += d * d;
        }
        for l in (k + 1)..kp {
            let gkl = slab[(r, l - k0)];
            part.add_pair(c, k, l, gkl, &mut cos);
            if c.cosines {
                let d = gkl / c.gf + (1.0 / kp as f64) / c.pf;
                part.etf_or_g2 += 2.0 * d * d;
            }
        }
    }
    part.cosines.add_batch(&cos);
    part
}

/// Row slabs of `block` rows of the upper part of the Gram, f64.
fn f64_blocks(c: &Ctx, block: usize) -> Part {
    let kp = c.diag.len();
    let m = c.g.centred_means.as_ref();
    let mut total = Part::default();
    let mut k0 = 0;
    while k0 < kp {
        let b = block.max(1).min(kp - k0);
        let slab = m.subcols(k0, b).transpose() * m.subcols(k0, kp - k0);
        total.merge(&f64_slab(c, k0, slab.as_ref()));
        k0 += b;
    }
    total
}

/// The centred means (`p × K`) in f32 panels of width 16, as the statistics pass lays out a
/// chunk: row `r` is coordinate `r`, column `j` is class `j`.
fn pack_means_f32(m: MatRef<'_, f64>, layout: &PanelLayout) -> Vec<f32> {
    let mut buf = vec![0f32; layout.len()];
    let (p, kp, w, groups) = (layout.m, layout.p, layout.w, layout.groups());
    let block_len = groups * (KC + 1) * w;
    buf.par_chunks_mut(block_len)
        .enumerate()
        .for_each(|(b, block)| {
            let k0 = b * KC;
            let rows = KC.min(p - k0);
            let stride = layout.panel_stride(k0);
            for g in 0..groups {
                for jj in 0..w.min(kp - g * w) {
                    let col = m.col(g * w + jj);
                    for r in 0..rows {
                        block[g * stride + r * w + jj] = col[k0 + r] as f32;
                    }
                }
            }
        });
    buf
}

/// The float32 route: slabs of [`TILE_ROWS`] classes on all threads, tiles reduced as formed.
fn f32_tiles(c: &Ctx) -> Part {
    let kp = c.diag.len();
    let layout = PanelLayout::new(c.g.dim, kp, 16);
    let packed = pack_means_f32(c.g.centred_means.as_ref(), &layout);
    let parts: Vec<Part> = (0..kp.div_ceil(TILE_ROWS))
        .into_par_iter()
        .with_max_len(1)
        .map(|s| {
            crate::linalg::clear_upper_vector_state();
            let (i_lo, i_hi) = (s * TILE_ROWS, ((s + 1) * TILE_ROWS).min(kp));
            let mut part = Part::default();
            let mut tile = vec![0f64; TILE_ROWS * TILE_COLS];
            let mut cos = Vec::with_capacity(TILE_ROWS * TILE_COLS);
            let mut j_lo = 0;
            while j_lo < i_hi {
                let j_hi = (j_lo + TILE_COLS).min(i_hi);
                tile.fill(0.0);
                let done = gram_block_panels_f32(
                    &packed,
                    &layout,
                    (i_lo, i_hi),
                    (j_lo, j_hi),
                    &mut tile,
                    TILE_COLS,
                );
                assert!(done, "the float32 route runs only with AVX-512");
                cos.clear();
                for i in i_lo..i_hi {
                    let row = &tile[(i - i_lo) * TILE_COLS..];
                    for j in j_lo..j_hi.min(i) {
                        let gij = row[j - j_lo];
                        part.add_pair(c, i, j, gij, &mut cos);
                        part.etf_or_g2 += gij * gij;
                    }
                }
                part.cosines.add_batch(&cos);
                j_lo = j_hi;
            }
            part
        })
        .collect();
    let mut total = Part::default();
    for p in &parts {
        total.merge(p);
    }
    total
}
