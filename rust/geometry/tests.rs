//! The geometry against direct references: covariances from two-pass sums, and merged or
//! streamed statistics against one pass.

use super::*;
use crate::geometry::factor::total_pinv;
use crate::test_util::lcg_data as data;
use ndarray::{Array1, Array2};

/// Direct two-pass reference of the weighted Σ_W.
fn naive_within(h: &Array2<f64>, y: &Array1<i64>, k: usize) -> Array2<f64> {
    let (n, p) = h.dim();
    let mut mu = Array2::<f64>::zeros((k, p));
    let mut cnt = vec![0.0; k];
    for i in 0..n {
        let c = y[i] as usize;
        cnt[c] += 1.0;
        for j in 0..p {
            mu[[c, j]] += h[[i, j]];
        }
    }
    for c in 0..k {
        for j in 0..p {
            mu[[c, j]] /= cnt[c];
        }
    }
    Array2::from_shape_fn((p, p), |(a, b)| {
        (0..n)
            .map(|i| (h[[i, a]] - mu[[y[i] as usize, a]]) * (h[[i, b]] - mu[[y[i] as usize, b]]))
            .sum::<f64>()
            / n as f64
    })
}

#[test]
fn within_matches_naive_for_both_precisions() {
    let (h, y) = data(2500, 9, 4, 1);
    let want = naive_within(&h, &y, 4);
    let mut s = CollapseStats::new(4, 9, false).unwrap();
    s.update(h.view(), y.view()).unwrap();
    let g = ClassGeometry::new(&s, Weighting::Weighted, None).unwrap();
    let h32 = h.mapv(|v| v as f32);
    let mut s32 = CollapseStats::new(4, 9, false).unwrap();
    s32.update(h32.view(), y.view()).unwrap();
    let g32 = ClassGeometry::new(&s32, Weighting::Weighted, None).unwrap();
    for a in 0..9 {
        for b in 0..9 {
            assert!((g.within.as_ref().unwrap()[(a, b)] - want[[a, b]]).abs() < 1e-10);
            assert!((g32.within.as_ref().unwrap()[(a, b)] - want[[a, b]]).abs() < 2e-4);
        }
    }
}

#[test]
fn merge_and_streaming_equal_one_pass() {
    let (h, y) = data(3000, 6, 3, 2);
    let mut one = CollapseStats::new(3, 6, true).unwrap();
    one.update(h.view(), y.view()).unwrap();
    let mut a = CollapseStats::new(3, 6, true).unwrap();
    let mut b = CollapseStats::new(3, 6, true).unwrap();
    a.update(
        h.slice(ndarray::s![..1000, ..]),
        y.slice(ndarray::s![..1000]),
    )
    .unwrap();
    b.update(
        h.slice(ndarray::s![1000.., ..]),
        y.slice(ndarray::s![1000..]),
    )
    .unwrap();
    b.merge(&a).unwrap(); // different shifts
    let (g1, g2) = (
        ClassGeometry::new(&one, Weighting::Balanced, None).unwrap(),
        ClassGeometry::new(&b, Weighting::Balanced, None).unwrap(),
    );
    // tr(Σ_T^† Σ_B) (VCI's trace) and the covariances themselves agree.
    let trace = |g: &ClassGeometry| -> f64 {
        let t = total_pinv(g, g.policy(None, None).unwrap()).unwrap();
        t.quad_forms
            .iter()
            .zip(&g.weights)
            .map(|(d, w)| d * w)
            .sum()
    };
    let (v1, v2) = (trace(&g1), trace(&g2));
    let (w1, w2) = (g1.within().unwrap(), g2.within().unwrap());
    for i in 0..6 {
        for j in 0..6 {
            assert!((w1[(i, j)] - w2[(i, j)]).abs() < 1e-10 * (1.0 + w1[(i, j)].abs()));
            let (b1, b2) = (g1.between[(i, j)], g2.between[(i, j)]);
            assert!((b1 - b2).abs() < 1e-10 * (1.0 + b1.abs()));
        }
    }
    assert!((v1 - v2).abs() < 1e-10, "{v1} {v2}");
    assert_eq!(one.counts(), b.counts());
}
