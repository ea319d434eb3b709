//! Frames for more classes than a simplex allows (`K > p + 1`): random codes on the sphere, the
//! vertices of a hypercube and of a cross-polytope (orthoplex). Rows are the class vectors, unit
//! norm, `K × p`; each frame is written straight into its output (never formed twice), the
//! random one block of rows at a time, each block from its own seeded stream, so the result does
//! not depend on the number of threads.

use crate::alloc::check_frame_size;
use crate::error::{EtfError, Result};
use crate::linalg::Real;
use ndarray::{Array2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// Rows of a random code drawn from one seeded stream.
pub const CODE_BLOCK: usize = 256;

fn check_size(num_classes: usize, dim: usize) -> Result<()> {
    if num_classes < 2 || dim < 1 {
        return Err(EtfError::Dimension(format!(
            "a frame needs at least 2 classes and 1 dimension, got num_classes={num_classes}, \
             dim={dim}"
        )));
    }
    check_frame_size(num_classes, dim, "the frame")
}

/// The stream of row block `block` of the code of `seed` (distinct blocks and seeds give
/// unrelated streams).
fn block_rng(seed: u64, block: usize) -> ChaCha12Rng {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    rng.set_stream(block as u64 + 1);
    rng
}

/// `K` unit vectors drawn uniformly on the sphere `S^{p-1}` (normalised standard Gaussian rows),
/// from `seed`: the random code of fixed-classifier work at vocabulary scale. Its coherence is
/// about `√(2 ln(K²)/p)` for large `p` (see [`super::frame_coherence`]).
pub fn sphere_codes<T: Real>(num_classes: usize, dim: usize, seed: u64) -> Result<Array2<T>> {
    check_size(num_classes, dim)?;
    let mut w = Array2::<T>::default((num_classes, dim));
    w.axis_chunks_iter_mut(Axis(0), CODE_BLOCK)
        .into_par_iter()
        .enumerate()
        .for_each(|(b, mut rows)| {
            let mut rng = block_rng(seed, b);
            let mut v = vec![0.0f64; dim];
            for mut row in rows.rows_mut() {
                // A zero vector has probability 0; redraw rather than divide by it.
                let norm = loop {
                    v.iter_mut()
                        .for_each(|x| *x = StandardNormal.sample(&mut rng));
                    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
                    if n > 0.0 {
                        break n;
                    }
                };
                for (dst, x) in row.iter_mut().zip(&v) {
                    *dst = T::from_f64(x / norm);
                }
            }
        });
    Ok(w)
}

/// `K` vertices of the `d`-cube `{±1}^d/√d`, `d = ⌈log₂ K⌉ ≤ p`, in the first `d` coordinates
/// (zeros after): row `k` has `-1/√d` in coordinate `j` where bit `j` of `k` is set. Pairwise
/// cosines are `1 - 2h/d` (`h` the Hamming distance of the labels), so the coherence is
/// `(d-2)/d` once `K > 2`.
pub fn hypercube_frame<T: Real>(num_classes: usize, dim: usize) -> Result<Array2<T>> {
    check_size(num_classes, dim)?;
    let d = (usize::BITS - (num_classes - 1).leading_zeros()) as usize;
    if d > dim {
        return Err(EtfError::Dimension(format!(
            "a hypercube frame of K={num_classes} vertices needs dim >= ceil(log2 K) = {d}, got \
             dim={dim}"
        )));
    }
    let s = 1.0 / (d as f64).sqrt();
    Ok(Array2::from_shape_fn((num_classes, dim), |(k, j)| {
        T::from_f64(match j {
            j if j >= d => 0.0,
            j if (k >> j) & 1 == 1 => -s,
            _ => s,
        })
    }))
}

/// `K` vertices of the cross-polytope: rows `2i` and `2i+1` are `e_i` and `-e_i`, so `p ≥ ⌈K/2⌉`.
/// Distinct rows are orthogonal or opposite: the largest cosine between two classes is 0, the
/// coherence (largest `|cos|`) 1.
pub fn orthoplex_frame<T: Real>(num_classes: usize, dim: usize) -> Result<Array2<T>> {
    check_size(num_classes, dim)?;
    if dim < num_classes.div_ceil(2) {
        return Err(EtfError::Dimension(format!(
            "an orthoplex frame of K={num_classes} vertices needs dim >= ceil(K/2) = {}, got \
             dim={dim}",
            num_classes.div_ceil(2)
        )));
    }
    Ok(Array2::from_shape_fn((num_classes, dim), |(k, j)| {
        T::from_f64(match (j == k / 2, k % 2) {
            (false, _) => 0.0,
            (true, 0) => 1.0,
            (true, _) => -1.0,
        })
    }))
}
