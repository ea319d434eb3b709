//! How well a frame separates its classes: the coherence `max_{k≠l} |cos(w_k, w_l)|`, the
//! largest cosine, the Welch bound `√((K - p)/(p (K - 1)))` that no `K` unit vectors in `p`
//! dimensions can beat (for `K > p`), and a frame of low coherence found by optimisation.

use super::codes::sphere_codes;
use crate::alloc::{check_dense_size, check_frame_size, check_work};
use crate::error::{EtfError, Result};
use crate::linalg::Real;
use faer::Mat;
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

/// Rows of the cosine matrix formed at a time by [`frame_coherence`].
const COHERENCE_BLOCK: usize = 512;

/// The separation of a frame's rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coherence {
    /// `max_{k≠l} |cos(w_k, w_l)|`.
    pub max_abs_cosine: f64,
    /// `max_{k≠l} cos(w_k, w_l)` (the worst pair for a classifier).
    pub max_cosine: f64,
    /// The Welch bound of `K` vectors in `p` dimensions (0 when `K ≤ p`).
    pub welch_bound: f64,
}

/// `√((K - p)/(p (K - 1)))` for `K > p`, else 0: no `K` unit vectors in `p` dimensions have a
/// smaller coherence (Welch 1974); a simplex ETF (`K = p + 1`) attains it, `1/(K - 1)`.
pub fn welch_bound(num_classes: usize, dim: usize) -> f64 {
    let (k, p) = (num_classes as f64, dim as f64);
    if num_classes <= dim || num_classes < 2 {
        0.0
    } else {
        ((k - p) / (p * (k - 1.0))).sqrt()
    }
}

/// The rows of `w` scaled to unit norm (f64, `K × p`), refusing zero and non-finite rows.
fn unit_rows<T: Real>(w: &ArrayView2<'_, T>) -> Result<Mat<f64>> {
    let (k, p) = w.dim();
    if k < 2 || p < 1 {
        return Err(EtfError::Shape(format!(
            "a frame needs at least 2 rows and 1 column, got ({k}, {p})"
        )));
    }
    check_frame_size(k, p, "the frame")?;
    let mut u = Mat::<f64>::zeros(k, p);
    for (i, row) in w.rows().into_iter().enumerate() {
        if let Some(j) = row.iter().position(|v| !v.to_f64().is_finite()) {
            return Err(EtfError::NonFinite {
                what: "frame".into(),
                row: i,
                col: j,
            });
        }
        let norm = row.iter().map(|v| v.to_f64().powi(2)).sum::<f64>().sqrt();
        if !(norm > 0.0) {
            return Err(EtfError::Degenerate(format!(
                "row {i} of the frame is zero: its cosines are undefined"
            )));
        }
        for (j, v) in row.iter().enumerate() {
            u[(i, j)] = v.to_f64() / norm;
        }
    }
    Ok(u)
}

/// `(max |cos|, max cos)` over the pairs `k < l` of unit rows, in row blocks of the cosine
/// matrix (`O(COHERENCE_BLOCK · K)` memory beside the rows).
fn pair_extremes(u: &Mat<f64>) -> (f64, f64) {
    let k = u.nrows();
    let starts: Vec<usize> = (0..k).step_by(COHERENCE_BLOCK).collect();
    starts
        .par_iter()
        .map(|&i0| {
            let b = COHERENCE_BLOCK.min(k - i0);
            let slab = u.subrows(i0, b) * u.subrows(i0, k - i0).transpose();
            let (mut a, mut m) = (0.0f64, f64::NEG_INFINITY);
            for r in 0..b {
                for c in (r + 1)..(k - i0) {
                    let v = slab[(r, c)];
                    a = a.max(v.abs());
                    m = m.max(v);
                }
            }
            (a, m)
        })
        .reduce(
            || (0.0, f64::NEG_INFINITY),
            |x, y| (x.0.max(y.0), x.1.max(y.1)),
        )
}

/// The coherence of the rows of `w` (`K × p`, any scale), exactly, by blocks of the cosine
/// matrix: `K² p / 2` multiply-adds.
pub fn frame_coherence<T: Real>(w: ArrayView2<'_, T>) -> Result<Coherence> {
    let (k, p) = w.dim();
    check_work(
        k as u128 * k as u128 * p as u128 / 2,
        "the frame's coherence",
    )?;
    let u = unit_rows(&w)?;
    let (max_abs_cosine, max_cosine) = pair_extremes(&u);
    Ok(Coherence {
        max_abs_cosine,
        max_cosine,
        welch_bound: welch_bound(k, p),
    })
}

/// Largest number of classes [`min_coherence_frame`] optimises (it holds the `K × K` Gram).
pub const MAX_OPTIMISED_CLASSES: usize = 20_000;

/// A `K × p` frame of low coherence: from [`sphere_codes`] of `seed`, `steps` steps of projected
/// gradient descent on the sphere on the smooth maximum `(1/β) log Σ_{k≠l} exp(β cos²_{kl})`,
/// `β` rising geometrically from 10 to `10⁴` (so the objective tends to the largest `cos²`),
/// each step of length `η_t = 0.2 (1 - t/steps) + 0.002` against the largest row gradient.
/// The iterate of smallest coherence is returned with its [`Coherence`]; compare
/// `max_abs_cosine` with `welch_bound`. Work `O(steps · K² p)`; `K ≤ 20 000`.
pub fn min_coherence_frame(
    num_classes: usize,
    dim: usize,
    seed: u64,
    steps: usize,
) -> Result<(Array2<f64>, Coherence)> {
    let (k, p) = (num_classes, dim);
    if k > MAX_OPTIMISED_CLASSES {
        return Err(EtfError::Dimension(format!(
            "min_coherence_frame holds the K × K Gram: K={k} is above {MAX_OPTIMISED_CLASSES}; \
             use sphere_codes for larger vocabularies"
        )));
    }
    check_dense_size(k, k, "the frame's Gram")?;
    check_work(
        2 * (steps as u128 + 1) * k as u128 * k as u128 * p as u128,
        "the coherence optimisation",
    )?;
    let start = sphere_codes::<f64>(k, p, seed)?;
    let mut u = unit_rows(&start.view())?;
    let mut best = (pair_extremes(&u).0, u.clone());
    for t in 0..steps {
        let frac = t as f64 / steps.max(1) as f64;
        let beta = 10.0 * 1000f64.powf(frac);
        let eta = 0.2 * (1.0 - frac) + 0.002;
        let gram = &u * u.transpose();
        let mut cmax2 = 0.0f64;
        for j in 0..k {
            for i in 0..k {
                if i != j {
                    cmax2 = cmax2.max(gram[(i, j)] * gram[(i, j)]);
                }
            }
        }
        if cmax2.sqrt() < best.0 {
            best = (cmax2.sqrt(), u.clone());
        }
        // d/du_k of the smooth maximum ∝ Σ_l w_kl cos_kl u_l, w_kl = exp(β (cos²_kl - max cos²)).
        let weighted = Mat::from_fn(k, k, |i, j| {
            if i == j {
                0.0
            } else {
                let c = gram[(i, j)];
                (beta * (c * c - cmax2)).exp() * c
            }
        });
        let mut grad = &weighted * &u;
        let mut gmax = 0.0f64;
        for i in 0..k {
            let along: f64 = (0..p).map(|j| grad[(i, j)] * u[(i, j)]).sum();
            let mut n2 = 0.0;
            for j in 0..p {
                grad[(i, j)] -= along * u[(i, j)];
                n2 += grad[(i, j)] * grad[(i, j)];
            }
            gmax = gmax.max(n2.sqrt());
        }
        if !(gmax > 0.0) {
            break;
        }
        for i in 0..k {
            let mut n2 = 0.0;
            for j in 0..p {
                u[(i, j)] -= eta * grad[(i, j)] / gmax;
                n2 += u[(i, j)] * u[(i, j)];
            }
            let n = n2.sqrt();
            for j in 0..p {
                u[(i, j)] /= n;
            }
        }
    }
    if pair_extremes(&u).0 < best.0 {
        best = (pair_extremes(&u).0, u);
    }
    let w = Array2::from_shape_fn((k, p), |(i, j)| best.1[(i, j)]);
    let c = frame_coherence(w.view())?;
    Ok((w, c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etf::{hypercube_frame, orthoplex_frame, simplex_etf};

    /// Brute-force `(max |cos|, max cos)` of the rows.
    fn brute(w: &Array2<f64>) -> (f64, f64) {
        let (k, _) = w.dim();
        let (mut a, mut m) = (0.0f64, f64::NEG_INFINITY);
        for i in 0..k {
            for j in (i + 1)..k {
                let (x, y) = (w.row(i), w.row(j));
                let c = x.dot(&y) / (x.dot(&x).sqrt() * y.dot(&y).sqrt());
                a = a.max(c.abs());
                m = m.max(c);
            }
        }
        (a, m)
    }

    #[test]
    fn coherence_matches_brute_force_across_blocks() {
        let w = sphere_codes::<f64>(1100, 7, 3).unwrap(); // three row blocks
        let c = frame_coherence(w.view()).unwrap();
        let (a, m) = brute(&w);
        assert!((c.max_abs_cosine - a).abs() < 1e-12 && (c.max_cosine - m).abs() < 1e-12);
        assert!((c.welch_bound - ((1100.0 - 7.0) / (7.0 * 1099.0f64)).sqrt()).abs() < 1e-15);
        assert!(c.max_abs_cosine >= c.welch_bound);
    }

    #[test]
    fn sphere_codes_are_unit_seeded_and_float32_equal_float64() {
        let a = sphere_codes::<f64>(600, 5, 9).unwrap();
        let b = sphere_codes::<f64>(600, 5, 9).unwrap();
        let c = sphere_codes::<f64>(600, 5, 10).unwrap();
        let f = sphere_codes::<f32>(600, 5, 9).unwrap();
        assert_eq!(a, b);
        assert!(a != c);
        for (row, rf) in a.rows().into_iter().zip(f.rows()) {
            assert!((row.dot(&row) - 1.0).abs() < 1e-12);
            for (x, y) in row.iter().zip(rf.iter()) {
                assert_eq!(*y, *x as f32);
            }
        }
    }

    #[test]
    fn hypercube_and_orthoplex_have_their_closed_form_cosines() {
        let h = hypercube_frame::<f64>(8, 5).unwrap(); // d = 3
        let c = frame_coherence(h.view()).unwrap();
        assert!((c.max_abs_cosine - 1.0).abs() < 1e-12); // k and 7-k are antipodal
        assert!((c.max_cosine - 1.0 / 3.0).abs() < 1e-12); // (d-2)/d
        assert!(h.column(3).iter().all(|&v| v == 0.0));
        let o = orthoplex_frame::<f64>(7, 4).unwrap();
        let c = frame_coherence(o.view()).unwrap();
        assert_eq!((c.max_abs_cosine, c.max_cosine), (1.0, 0.0));
        assert!(hypercube_frame::<f64>(9, 3).is_err());
        assert!(orthoplex_frame::<f64>(9, 4).is_err());
    }

    #[test]
    fn optimised_frames_approach_the_welch_bound() {
        // Six equiangular lines in R³ attain the bound 1/√5; a simplex attains 1/(K-1).
        let (w, c) = min_coherence_frame(6, 3, 0, 3000).unwrap();
        assert!(c.max_abs_cosine >= c.welch_bound - 1e-12);
        assert!(c.max_abs_cosine < 1.05 * c.welch_bound, "{c:?}");
        assert!((brute(&w).0 - c.max_abs_cosine).abs() < 1e-12);
        let (_, s) = min_coherence_frame(5, 4, 1, 3000).unwrap();
        let etf = frame_coherence(simplex_etf(5, 4, 0, None).unwrap().view()).unwrap();
        assert!((etf.max_abs_cosine - 0.25).abs() < 1e-12);
        assert!(s.max_abs_cosine < 1.05 * 0.25, "{s:?}");
        // Larger: better than the random start.
        let start = frame_coherence(sphere_codes::<f64>(200, 20, 4).unwrap().view()).unwrap();
        let (_, o) = min_coherence_frame(200, 20, 4, 300).unwrap();
        assert!(
            o.max_abs_cosine < 0.8 * start.max_abs_cosine,
            "{o:?} {start:?}"
        );
        assert!(o.max_abs_cosine >= o.welch_bound);
    }
}
