//! Brute-force references for the unit tests (plain loops, no library routines).

use ndarray::{Array1, Array2};

/// Deterministic pseudo-random numbers in [-0.5, 0.5) (an LCG).
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407))
    }
    pub fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }
}

/// `n` samples of `k` classes in `p` dimensions: class means spread by `spread`, unit-ish noise,
/// an `offset` added to every value; class `c` gets about `(c + 1)` parts of the samples.
pub fn mixture(
    n: usize,
    p: usize,
    k: usize,
    spread: f64,
    offset: f64,
    seed: u64,
) -> (Array2<f64>, Array1<i64>) {
    let mut r = Lcg::new(seed);
    let means: Vec<f64> = (0..k * p).map(|_| spread * r.next()).collect();
    let parts: usize = (1..=k).sum();
    let y: Array1<i64> = (0..n)
        .map(|i| {
            let mut t = i % parts;
            let mut c = 0;
            while t > c {
                t -= c + 1;
                c += 1;
            }
            c as i64
        })
        .collect();
    let h = Array2::from_shape_fn((n, p), |(i, j)| {
        offset + means[y[i] as usize * p + j] + r.next()
    });
    (h, y)
}

/// Eigenvalues and eigenvectors (columns) of a symmetric matrix by cyclic Jacobi rotations,
/// eigenvalues in decreasing order.
pub fn jacobi_eig(a: &Array2<f64>) -> (Vec<f64>, Array2<f64>) {
    let n = a.nrows();
    let mut a = a.clone();
    let mut v = Array2::<f64>::eye(n);
    for _ in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[[i, j]] * a[[i, j]])
            .sum();
        if off < 1e-30 {
            break;
        }
        for pp in 0..n {
            for q in pp + 1..n {
                if a[[pp, q]].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[[q, q]] - a[[pp, pp]]) / (2.0 * a[[pp, q]]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for kk in 0..n {
                    let (akp, akq) = (a[[kk, pp]], a[[kk, q]]);
                    a[[kk, pp]] = c * akp - s * akq;
                    a[[kk, q]] = s * akp + c * akq;
                }
                for kk in 0..n {
                    let (apk, aqk) = (a[[pp, kk]], a[[q, kk]]);
                    a[[pp, kk]] = c * apk - s * aqk;
                    a[[q, kk]] = s * apk + c * aqk;
                }
                for kk in 0..n {
                    let (vkp, vkq) = (v[[kk, pp]], v[[kk, q]]);
                    v[[kk, pp]] = c * vkp - s * vkq;
                    v[[kk, q]] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&i, &j| a[[j, j]].partial_cmp(&a[[i, i]]).unwrap());
    let vals = idx.iter().map(|&i| a[[i, i]]).collect();
    let vecs = Array2::from_shape_fn((n, n), |(r, c)| v[[r, idx[c]]]);
    (vals, vecs)
}

/// Pseudo-inverse keeping eigenvalues above `rtol · λ_max` (and at most `cap` of them).
pub fn pinv(a: &Array2<f64>, rtol: f64, cap: usize) -> Array2<f64> {
    let (vals, vecs) = jacobi_eig(a);
    let n = a.nrows();
    let thr = rtol * vals[0].max(0.0);
    let mut out = Array2::<f64>::zeros((n, n));
    for (k, &l) in vals.iter().enumerate().take(cap) {
        if l > thr && l > 0.0 {
            for i in 0..n {
                for j in 0..n {
                    out[[i, j]] += vecs[[i, k]] * vecs[[j, k]] / l;
                }
            }
        }
    }
    out
}

/// Solves `A x = b` by Gauss–Jordan elimination with partial pivoting.
pub fn solve(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
    let n = a.nrows();
    let m = b.ncols();
    let mut a = a.clone();
    let mut b = b.clone();
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&i, &j| a[[i, col]].abs().partial_cmp(&a[[j, col]].abs()).unwrap())
            .unwrap();
        for k in 0..n {
            a.swap([col, k], [piv, k]);
        }
        for k in 0..m {
            b.swap([col, k], [piv, k]);
        }
        let d = a[[col, col]];
        for r in 0..n {
            if r != col {
                let f = a[[r, col]] / d;
                for k in 0..n {
                    a[[r, k]] -= f * a[[col, k]];
                }
                for k in 0..m {
                    b[[r, k]] -= f * b[[col, k]];
                }
            }
        }
    }
    Array2::from_shape_fn((n, m), |(i, k)| b[[i, k]] / a[[i, i]])
}

/// `n` rows in `k` classes (labels `i % k`) of offset 100, class means of scale 4 and unit
/// uniform noise, from a seeded LCG (independent of `rand`).
pub fn lcg_data(n: usize, p: usize, k: usize, seed: u64) -> (Array2<f64>, Array1<i64>) {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    };
    let y: Array1<i64> = (0..n).map(|i| (i % k) as i64).collect();
    let means: Vec<f64> = (0..k * p).map(|_| 4.0 * next()).collect();
    let h = Array2::from_shape_fn((n, p), |(i, j)| 100.0 + means[(i % k) * p + j] + next());
    (h, y)
}
