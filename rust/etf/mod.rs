//! Fixed frames for classifiers: simplex equiangular tight frames and orthogonal frames here;
//! frames beyond the simplex (more classes than dimensions + 1) in [`codes`], their coherence
//! and the Welch bound in [`coherence`].
//!
//! All frames are `K × p` row-major matrices: row `k` is the class vector of class `k`
//! (the layout of `torch.nn.Linear.weight`).
//!
//! `W = sqrt(K/(K-1)) · B · Q'`, with `B` the `K × (K-1)` Helmert basis of `1^⊥` and `Q'` a
//! `(K-1) × p` matrix with orthonormal rows, Haar-distributed (QR of a Gaussian matrix with the
//! signs of `R`'s diagonal fixed) from an explicit seed. Hence `W Wᵀ = K/(K-1) (I - 11ᵀ/K)`:
//! unit rows, pairwise inner products `-1/(K-1)`, rows summing to zero, and `p = K-1` works.

pub mod codes;
pub mod coherence;

pub use codes::{hypercube_frame, orthoplex_frame, sphere_codes};
pub use coherence::{frame_coherence, min_coherence_frame, welch_bound, Coherence};

use crate::alloc::{check_frame_size, check_work, probe_alloc};
use crate::error::{EtfError, Result};
use faer::{Mat, Par};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use rand_distr::{Distribution, StandardNormal};

fn check_classes(num_classes: usize) -> Result<()> {
    if num_classes < 2 {
        return Err(EtfError::Dimension(format!(
            "a simplex ETF needs at least 2 classes, got num_classes={num_classes}"
        )));
    }
    Ok(())
}

fn check_lengths(lengths: Option<&[f64]>, num_classes: usize) -> Result<()> {
    if let Some(l) = lengths {
        if l.len() != num_classes {
            return Err(EtfError::Shape(format!(
                "lengths has {} entries but num_classes={num_classes}",
                l.len()
            )));
        }
        if let Some((k, v)) = l
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite() || **v <= 0.0)
        {
            return Err(EtfError::Parameter(format!(
                "lengths must be finite and positive; lengths[{k}]={v}"
            )));
        }
    }
    Ok(())
}

/// `r × p` matrix with orthonormal rows drawn from the Haar measure (r ≤ p), seeded.
///
/// QR of a `p × r` standard Gaussian matrix `G = Q R`; the columns of `Q` are multiplied by
/// `sign(R_jj)` so that the distribution is exactly Haar (Mezzadri 2007). The random stream is
/// ChaCha12 seeded with `seed`, so a seed gives the same matrix on every platform.
pub fn haar_orthonormal_rows(r: usize, p: usize, seed: u64) -> Mat<f64> {
    debug_assert!(r <= p);
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    // Fill column by column so the stream order is documented: G[:, 0], G[:, 1], ...
    let g = Mat::<f64>::from_fn(p, r, |_, _| 0.0);
    let mut g = g;
    for j in 0..r {
        for i in 0..p {
            g[(i, j)] = StandardNormal.sample(&mut rng);
        }
    }
    let qr = g.qr();
    let mut q = qr.compute_thin_Q();
    let rmat = qr.thin_R();
    for j in 0..r {
        if rmat[(j, j)] < 0.0 {
            for i in 0..p {
                q[(i, j)] = -q[(i, j)];
            }
        }
    }
    q.transpose().to_owned()
}

/// The `K × (K-1)` Helmert basis of the orthogonal complement of the all-ones vector:
/// column j has `1/sqrt((j+1)(j+2))` in rows `0..=j`, `-(j+1)/sqrt((j+1)(j+2))` in row `j+1`.
pub fn helmert_basis(num_classes: usize) -> Mat<f64> {
    let k = num_classes;
    Mat::<f64>::from_fn(k, k - 1, |i, j| {
        let norm = (((j + 1) * (j + 2)) as f64).sqrt();
        if i <= j {
            1.0 / norm
        } else if i == j + 1 {
            -((j + 1) as f64) / norm
        } else {
            0.0
        }
    })
}

fn finish(mut w: Mat<f64>, lengths: Option<&[f64]>) -> Array2<f64> {
    if let Some(l) = lengths {
        for (k, &s) in l.iter().enumerate() {
            for j in 0..w.ncols() {
                w[(k, j)] *= s;
            }
        }
    }
    Array2::from_shape_fn((w.nrows(), w.ncols()), |(i, j)| w[(i, j)])
}

fn simplex_from_rows(num_classes: usize, rows: Mat<f64>, lengths: Option<&[f64]>) -> Array2<f64> {
    let k = num_classes as f64;
    let b = helmert_basis(num_classes);
    let scale = (k / (k - 1.0)).sqrt();
    let w = scale * (&b * &rows);
    let _ = Par::Seq;
    finish(w, lengths)
}

/// Refuses frames whose size or QR work is absurd, and checks that the working memory of the
/// dense routines (a few copies of the frame) can be allocated before calling them.
fn check_frame_resources(num_classes: usize, dim: usize) -> Result<()> {
    check_frame_size(num_classes, dim, "the frame")?;
    check_work(
        dim as u128 * num_classes as u128 * num_classes as u128,
        "the frame's QR factorisation",
    )?;
    probe_alloc(
        4 * 8 * num_classes as u128 * dim as u128,
        "the frame's factorisation",
    )
}

fn check_simplex_dim(num_classes: usize, dim: usize) -> Result<()> {
    check_classes(num_classes)?;
    check_frame_resources(num_classes, dim)?;
    if dim < num_classes - 1 {
        return Err(EtfError::Dimension(format!(
            "a simplex ETF for K={num_classes} classes needs dim >= K-1 = {}, got dim={dim}",
            num_classes - 1
        )));
    }
    Ok(())
}

/// Haar-random simplex ETF, `K × p`, from `seed`. Optional per-class `lengths`.
pub fn simplex_etf(
    num_classes: usize,
    dim: usize,
    seed: u64,
    lengths: Option<&[f64]>,
) -> Result<Array2<f64>> {
    check_simplex_dim(num_classes, dim)?;
    check_lengths(lengths, num_classes)?;
    let q = haar_orthonormal_rows(num_classes - 1, dim, seed);
    Ok(simplex_from_rows(num_classes, q, lengths))
}

/// Deterministic simplex ETF for parity with public code.
///
/// For `p ≥ K`: `W = sqrt(K/(K-1)) (I_K - 11ᵀ/K) [I_K 0]`. For `p = K-1` (no room for
/// `[I_K 0]`) the regular simplex `sqrt(K/(K-1)) · B` with the Helmert basis `B`.
pub fn canonical_simplex_etf(
    num_classes: usize,
    dim: usize,
    lengths: Option<&[f64]>,
) -> Result<Array2<f64>> {
    check_simplex_dim(num_classes, dim)?;
    check_lengths(lengths, num_classes)?;
    let k = num_classes;
    let scale = (k as f64 / (k as f64 - 1.0)).sqrt();
    if dim >= k {
        let w = Mat::<f64>::from_fn(k, dim, |i, j| {
            if j >= k {
                0.0
            } else {
                scale * (if i == j { 1.0 } else { 0.0 } - 1.0 / k as f64)
            }
        });
        Ok(finish(w, lengths))
    } else {
        let rows = Mat::<f64>::identity(k - 1, dim);
        Ok(simplex_from_rows(k, rows, lengths))
    }
}

/// `K × p` frame with orthonormal rows (Haar), `p ≥ K`: the orthogonal-classifier baseline.
pub fn orthogonal_frame(
    num_classes: usize,
    dim: usize,
    seed: u64,
    lengths: Option<&[f64]>,
) -> Result<Array2<f64>> {
    if num_classes < 1 {
        return Err(EtfError::Dimension(
            "an orthogonal frame needs num_classes >= 1".into(),
        ));
    }
    if dim < num_classes {
        return Err(EtfError::Dimension(format!(
            "an orthogonal frame for K={num_classes} classes needs dim >= K = {num_classes}, got dim={dim}"
        )));
    }
    check_lengths(lengths, num_classes)?;
    check_frame_resources(num_classes, dim)?;
    Ok(finish(
        haar_orthonormal_rows(num_classes, dim, seed),
        lengths,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gram(w: &Array2<f64>) -> Array2<f64> {
        w.dot(&w.t())
    }

    #[test]
    fn simplex_properties() {
        for &(k, p) in &[(2usize, 1usize), (3, 2), (10, 9), (10, 64), (100, 128)] {
            let w = simplex_etf(k, p, 7, None).unwrap();
            assert_eq!(w.dim(), (k, p));
            let g = gram(&w);
            for i in 0..k {
                for j in 0..k {
                    let want = if i == j { 1.0 } else { -1.0 / (k as f64 - 1.0) };
                    assert!(
                        (g[[i, j]] - want).abs() < 1e-12,
                        "K={k} p={p} G[{i},{j}]={}",
                        g[[i, j]]
                    );
                }
            }
            for j in 0..p {
                let s: f64 = (0..k).map(|i| w[[i, j]]).sum();
                assert!(s.abs() < 1e-12);
            }
        }
    }

    #[test]
    fn seeds_reproduce_and_differ() {
        let a = simplex_etf(5, 8, 1, None).unwrap();
        let b = simplex_etf(5, 8, 1, None).unwrap();
        let c = simplex_etf(5, 8, 2, None).unwrap();
        assert_eq!(a, b);
        assert!((&a - &c).iter().map(|v| v.abs()).sum::<f64>() > 1e-3);
    }

    #[test]
    fn canonical_matches_formula() {
        let (k, p) = (4usize, 6usize);
        let w = canonical_simplex_etf(k, p, None).unwrap();
        let s = (k as f64 / (k as f64 - 1.0)).sqrt();
        for i in 0..k {
            for j in 0..p {
                let want = if j < k {
                    s * ((i == j) as i32 as f64 - 0.25)
                } else {
                    0.0
                };
                assert!((w[[i, j]] - want).abs() < 1e-15);
            }
        }
        let w = canonical_simplex_etf(k, k - 1, None).unwrap();
        let g = gram(&w);
        assert!((g[[0, 1]] + 1.0 / 3.0).abs() < 1e-12 && (g[[2, 2]] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn lengths_scale_rows() {
        let l = [1.0, 2.0, 3.0];
        let w = simplex_etf(3, 5, 0, Some(&l)).unwrap();
        for (k, &lk) in l.iter().enumerate() {
            let n: f64 = w.row(k).iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!((n - lk).abs() < 1e-12);
        }
        assert!(simplex_etf(3, 5, 0, Some(&[1.0, -1.0, 1.0])).is_err());
        assert!(simplex_etf(3, 5, 0, Some(&[1.0])).is_err());
    }

    #[test]
    fn errors() {
        assert!(matches!(
            simplex_etf(10, 8, 0, None),
            Err(EtfError::Dimension(_))
        ));
        assert!(matches!(
            simplex_etf(1, 8, 0, None),
            Err(EtfError::Dimension(_))
        ));
        assert!(matches!(
            orthogonal_frame(10, 9, 0, None),
            Err(EtfError::Dimension(_))
        ));
    }

    #[test]
    fn orthogonal_rows() {
        let w = orthogonal_frame(6, 10, 3, None).unwrap();
        let g = gram(&w);
        for i in 0..6 {
            for j in 0..6 {
                assert!((g[[i, j]] - (i == j) as i32 as f64).abs() < 1e-12);
            }
        }
    }
}
