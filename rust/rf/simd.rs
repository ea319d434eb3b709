//! The AVX-512 float32 path of the empirical kernel: one register-blocked micro-kernel for both
//! products, the activation fused into the projection's output tiles.
//!
//! The float32 kernel on CPUs with AVX-512 (detected at run time).
//!
//! Both products use one register-blocked micro-kernel (8 × 48 outputs in 24 zmm accumulators,
//! the 8-side broadcast from memory, depth cut into chunks of `KC` so the 48-wide operand stays
//! in L1): `Z_b = σ(W_b Xᵀ)` is written straight into panels of 48 samples
//! (`Z[panel][feature][lane]`, σ applied as each tile leaves the registers), which is already
//! the packed layout the Gram `K += Z_bᵀ Z_b / m` streams, so the features are never copied or
//! re-packed. Products are formed in f32 over one block of `FEATURE_BLOCK` features, as the
//! portable path does, and added to `K` block by block.

use super::empirical::SyncPtr;
use super::{projection_rows, Activation, Projection, PROJECTION_BLOCK};
use crate::alloc::try_zeros;
use crate::error::{EtfError, Result};
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
unsafe fn add_tile(k: *mut f32, n: usize, i0: usize, j0: usize, scale: f32, tile: &[f32; TILE]) {
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
        activated_panels(act, x, n, p, &ws, rows, &mut z, &scratch)?;
        add_block_gram(&mut k, &z, n, rows, scale);
        r0 += rows;
    }
    Ok(k)
}

/// Per-thread scratch of [`activated_panels`]: one transposed input panel and the projection's
/// tiles.
type Scratch = Result<(Vec<Line>, Vec<[f32; TILE]>)>;

/// `Z = σ(W_b Xᵀ)` for one block of `rows ≤ FEATURE_BLOCK` projection rows (`ws`, packed in
/// strips of `MR`), panel by panel of `NR` samples: panel `q` of `z` holds
/// `σ(W_b X[q·NR .. q·NR + NR]ᵀ)` (`FEATURE_BLOCK × NR` floats).
#[allow(clippy::too_many_arguments)]
fn activated_panels(
    act: &Activation,
    x: &[f32],
    n: usize,
    p: usize,
    ws: &[f32],
    rows: usize,
    z: &mut [Line],
    scratch: &(impl Fn() -> Scratch + Sync + Send),
) -> Result<()> {
    let panels = n.div_ceil(NR);
    let used = rows.div_ceil(MR);
    // Panel q of Z = σ(W_b X[q·NR .. q·NR + NR]ᵀ).
    let zp = SyncPtr(z.as_mut_ptr() as *mut f32);
    let wsr = ws;
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
            let xp = unsafe { std::slice::from_raw_parts_mut(xp.as_mut_ptr() as *mut f32, p * NR) };
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
                std::slice::from_raw_parts_mut(zp.0.add(q * FEATURE_BLOCK * NR), FEATURE_BLOCK * NR)
            };
            for (r, dst) in panel[..rows * NR].chunks_exact_mut(NR).enumerate() {
                activate(act, &tiles[r / MR][(r % MR) * NR..(r % MR + 1) * NR], dst);
            }
            Ok(())
        })
}

/// `K[i, j] += scale · Σ_r z[r, i] z[r, j]` on the lower triangle for one block of `rows`
/// features, by panels of rows `i` (largest first), each against every panel of columns `j` at
/// or left of it.
fn add_block_gram(k: &mut [f32], z: &[Line], n: usize, rows: usize, scale: f32) {
    let panels = n.div_ceil(NR);
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
}
