//! Random projections (Gaussian, Rademacher, sparse, ETF and orthogonal rows), generated block
//! by block from a seed so any block can be regenerated without the others.

use crate::alloc::probe_alloc;
use crate::error::{EtfError, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rand_distr::{Distribution, StandardNormal};

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

    pub(crate) fn validate(&self) -> Result<()> {
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

pub(crate) fn block_seed(seed: u64, block: usize) -> u64 {
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
    crate::alloc::check_frame_size(rows, p, "the projection")?;
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
pub(crate) fn projection_block(
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
