//! The transfer scores against direct references on small data.

use super::*;
use crate::geometry::factor::{factorisation_counts, total_pinv};
use crate::linalg::RankPolicy;
use crate::metrics::{self, VciNormalizer};
use crate::transfer::{hscore, logme, RidgePath};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn data(n: usize, p: usize, k: usize, seed: u64, offset: f64) -> (Array2<f64>, Array1<i64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let means: Vec<f64> = (0..k * p)
        .map(|_| rng.random::<f64>() * 2.0 - 1.0)
        .collect();
    let y = Array1::from_shape_fn(n, |i| (i % k) as i64);
    let h = Array2::from_shape_fn((n, p), |(i, j)| {
        offset + means[(i % k) * p + j] + rng.random::<f64>() - 0.5
    });
    (h, y)
}

fn dense_total_cov(h: &Array2<f64>) -> Mat<f64> {
    let (n, p) = h.dim();
    let m: Vec<f64> = (0..p).map(|j| h.column(j).sum() / n as f64).collect();
    Mat::from_fn(p, p, |a, b| {
        (0..n)
            .map(|i| (h[[i, a]] - m[a]) * (h[[i, b]] - m[b]))
            .sum::<f64>()
            / n as f64
    })
}

#[test]
fn ridge_path_at_zero_is_the_pinv_probe_and_decreases_in_lambda() {
    let (h, y) = data(300, 6, 3, 1, 5.0);
    let mut st = CollapseAnalysis::new(3, 6, false).unwrap();
    st.update(h.view(), y.view()).unwrap();
    let path = RidgePath::new(&st, None).unwrap();
    let mse = path.train_mse(&[0.0, 1e-3, 1.0, 1e6]).unwrap();
    // direct: least squares with bias on the raw features
    let t = dense_total_cov(&h);
    let pinv = SymPinv::new(t.as_ref(), RankPolicy::Rtol(None), false).unwrap();
    let g = st.geometry(Weighting::Weighted).unwrap();
    let pi2: f64 = g.weights.iter().map(|x| x * x).sum();
    let d: Vec<f64> = pinv.quad_forms(g.centred_means.as_ref());
    let probe = 0.5 * (1.0 - pi2)
        - 0.5
            * d.iter()
                .zip(&g.weights)
                .map(|(a, b)| a * b * b)
                .sum::<f64>();
    assert!((mse[0] - probe).abs() < 1e-12, "{} {}", mse[0], probe);
    assert!(mse.windows(2).all(|w| w[0] <= w[1] + 1e-15));
    assert!((mse[3] - 0.5 * (1.0 - pi2)).abs() < 1e-6);
}

#[test]
fn merged_transferability_stats_equal_one_pass() {
    let (h, y) = data(500, 5, 4, 2, 3.0);
    let mut one = TransferabilityStats::new(4, 5).unwrap();
    one.update(h.view(), y.view()).unwrap();
    let mut a = TransferabilityStats::new(4, 5).unwrap();
    let mut b = TransferabilityStats::new(4, 5).unwrap();
    a.update(h.slice(ndarray::s![..123, ..]), y.slice(ndarray::s![..123]))
        .unwrap();
    b.update(h.slice(ndarray::s![123.., ..]), y.slice(ndarray::s![123..]))
        .unwrap();
    a.merge(&b).unwrap();
    let rel = |x: f64, y: f64| (x - y).abs() / y.abs().max(1e-300);
    // the raw sums are relative to different shifts; re-expressed to one shift they agree
    let c1 = one.inner.stats().shift().unwrap().to_vec();
    let c2 = a.inner.stats().shift().unwrap().to_vec();
    let e: Vec<f64> = c2.iter().zip(&c1).map(|(x, y)| x - y).collect();
    let (f4, cub, csq) = reexpress(a.inner.stats(), a.fourth, &a.cubic, &a.class_sq, &e);
    assert!(rel(f4, one.fourth) < 1e-10, "{f4} {}", one.fourth);
    for (x, y) in cub.iter().zip(&one.cubic) {
        assert!((x - y).abs() < 1e-9 * (1.0 + y.abs()));
    }
    for (x, y) in csq.iter().zip(&one.class_sq) {
        assert!((x - y).abs() < 1e-9 * (1.0 + y.abs()));
    }
    let r1 = one.regularized_hscore(None).unwrap();
    let r2 = a.regularized_hscore(None).unwrap();
    assert!(rel(r1.0, r2.0) < 1e-9 && rel(r1.1, r2.1) < 1e-9);
    assert!(rel(one.gbc(None).unwrap(), a.gbc(None).unwrap()) < 1e-9);
    let bytes = a.to_bytes();
    assert_eq!(TransferabilityStats::from_bytes(&bytes).unwrap(), a);
    let mut bad = bytes.clone();
    bad[30] ^= 1;
    assert!(matches!(
        TransferabilityStats::from_bytes(&bad),
        Err(EtfError::Corrupt(_))
    ));
    assert!(TransferabilityStats::from_bytes(&bytes[..bytes.len() - 3]).is_err());
}

#[test]
fn hscore_is_trace_and_logme_converges() {
    let (h, y) = data(400, 4, 3, 3, 0.5);
    let mut st = CollapseAnalysis::new(3, 4, false).unwrap();
    st.update(h.view(), y.view()).unwrap();
    let (v, r) = hscore(&st, None, None).unwrap();
    assert_eq!(r, 4);
    assert!(v > 0.0 && v <= 2.0 + 1e-12);
    let l = logme(&st, false, 1e-12, 10_000, None).unwrap();
    assert!(l.converged && l.value.is_finite());
    let lp = logme(&st, true, 1e-12, 10_000, None).unwrap();
    assert!((lp.value - l.value).abs() < 1e-2);
    let empty = CollapseAnalysis::new(3, 4, false).unwrap();
    assert!(matches!(
        hscore(&empty, None, None),
        Err(EtfError::TooFewClasses { .. })
    ));
}

/// One factorisation of `Σ_T` per state, whatever asks: VCI, the probe MSE, H-score, the ridge
/// path and LogME's rank cut share the cached Cholesky route and eigendecomposition — also
/// through a clone of the state (clones share the cache) and through `TransferabilityStats`.
#[test]
fn every_score_shares_one_factorisation_of_the_total_covariance() {
    let (h, y) = data(600, 8, 4, 5, 2.0);
    let mut st = TransferabilityStats::new(4, 8).unwrap();
    st.update(h.view(), y.view()).unwrap();
    let a = st.collapse_stats().clone();
    let g = a.geometry(Weighting::Weighted).unwrap();
    assert_eq!(factorisation_counts(&g), (0, 0));
    let v = metrics::vci(&g, VciNormalizer::MinDimClasses, None, None).unwrap();
    metrics::probe_mse(&g, None, None).unwrap();
    let (hs, _) = hscore(st.collapse_stats(), None, None).unwrap();
    assert_eq!(factorisation_counts(&g), (0, 1), "the Cholesky route, once");
    RidgePath::new(&a.clone(), None).unwrap();
    logme(&a, false, 1e-12, 10_000, None).unwrap();
    metrics::report(&a, Weighting::Weighted, None, None).unwrap();
    hscore(&a, None, None).unwrap();
    assert_eq!(
        factorisation_counts(&g),
        (1, 1),
        "one eigendecomposition, shared"
    );
    // H = r (1 - VCI) with the same pseudo-inverse, r = min(p, K - 1).
    assert!((hs - 3.0 * (1.0 - v.value)).abs() < 1e-12);
    // An explicit rank reads the cached eigendecomposition.
    let t = total_pinv(&g, RankPolicy::Top(8)).unwrap();
    assert_eq!(t.pinv.rank, 8);
    assert_eq!(factorisation_counts(&g), (1, 1));
    // A new batch drops the cache: the next geometry starts afresh.
    st.update(h.view(), y.view()).unwrap();
    let g2 = st.collapse_stats().geometry(Weighting::Weighted).unwrap();
    assert_eq!(factorisation_counts(&g2), (0, 0));
}
