//! The metrics against brute force on small data (explicit covariances and pseudo-inverses).

use super::nc1::nc1_split_from;
use super::pairs::{self, pairwise_in_blocks};
use super::*;
use crate::geometry::CollapseAnalysis;
use crate::geometry::PairRoute;
use crate::linalg::{PinvMethod, Precision};
use crate::test_util::{mixture, pinv, solve};
use ndarray::{Array1, Array2};

/// Plain-loop class geometry: (present means, weights, μ_G, Σ_B, Σ_W, per-class covariances).
struct Brute {
    means: Vec<Array1<f64>>,
    weights: Vec<f64>,
    mg: Array1<f64>,
    sb: Array2<f64>,
    sw: Array2<f64>,
    covs: Vec<Array2<f64>>,
}

fn brute(h: &Array2<f64>, y: &Array1<i64>, k: usize, w: Weighting) -> Brute {
    let (n, p) = h.dim();
    let mut sums = vec![Array1::<f64>::zeros(p); k];
    let mut cnt = vec![0.0; k];
    for i in 0..n {
        let c = y[i] as usize;
        cnt[c] += 1.0;
        sums[c] = &sums[c] + &h.row(i);
    }
    let means: Vec<Array1<f64>> = (0..k).map(|c| &sums[c] / cnt[c]).collect();
    let weights: Vec<f64> = match w {
        Weighting::Weighted => cnt.iter().map(|c| c / n as f64).collect(),
        Weighting::Balanced => vec![1.0 / k as f64; k],
    };
    let mut mg = Array1::<f64>::zeros(p);
    for c in 0..k {
        mg = mg + weights[c] * &means[c];
    }
    let outer = |a: &Array1<f64>| Array2::from_shape_fn((p, p), |(i, j)| a[i] * a[j]);
    let mut sb = Array2::<f64>::zeros((p, p));
    for c in 0..k {
        sb = sb + weights[c] * outer(&(&means[c] - &mg));
    }
    let mut covs = vec![Array2::<f64>::zeros((p, p)); k];
    for i in 0..n {
        let c = y[i] as usize;
        covs[c] = &covs[c] + &(outer(&(&h.row(i).to_owned() - &means[c])) / cnt[c]);
    }
    let mut sw = Array2::<f64>::zeros((p, p));
    for c in 0..k {
        sw = sw + weights[c] * &covs[c];
    }
    Brute {
        means,
        weights,
        mg,
        sb,
        sw,
        covs,
    }
}

fn stats_of(h: &Array2<f64>, y: &Array1<i64>, k: usize) -> CollapseAnalysis {
    let mut s = CollapseAnalysis::new(k, h.ncols(), true).unwrap();
    s.update(h.view(), y.view()).unwrap();
    s
}

fn trace(a: &Array2<f64>) -> f64 {
    a.diag().sum()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

#[test]
fn geometry_and_metrics_match_brute_force() {
    let (k, p) = (4, 6);
    let (h, y) = mixture(300, p, k, 6.0, 5.0, 1);
    let s = stats_of(&h, &y, k);
    for w in [Weighting::Weighted, Weighting::Balanced] {
        let b = brute(&h, &y, k, w);
        let g = s.geometry(w).unwrap();
        let sw = g.within().unwrap();
        for i in 0..p {
            assert!(close(g.global_mean[i], b.mg[i], 1e-12));
            for j in 0..p {
                assert!(close(g.between[(i, j)], b.sb[[i, j]], 1e-11), "{w:?} Σ_B");
                assert!(close(sw[(i, j)], b.sw[[i, j]], 1e-11), "{w:?} Σ_W");
            }
        }
        let st = &b.sw + &b.sb;
        let r = p.min(k - 1);
        let eps = p as f64 * f64::EPSILON;
        let want_vci = 1.0 - trace(&pinv(&st, eps, p).dot(&b.sb)) / r as f64;
        let v = vci(&g, VciNormalizer::MinDimClasses, None, None).unwrap();
        assert!(close(v.value, want_vci, 1e-10), "{} {want_vci}", v.value);
        let want_nc1 = trace(&b.sw.dot(&pinv(&b.sb, eps, r))) / k as f64;
        let n1 = nc1(&g, None, None).unwrap();
        assert!(close(n1.value, want_nc1, 1e-9), "{} {want_nc1}", n1.value);
        assert_eq!(n1.rank, r);
        let sd = squared_distance(&g).unwrap();
        assert!(close(sd, trace(&b.sw) / trace(&b.sb), 1e-11));
        let mut want_cdnv = 0.0;
        for a in 0..k {
            for c in a + 1..k {
                let d = &b.means[a] - &b.means[c];
                want_cdnv += (trace(&b.covs[a]) + trace(&b.covs[c])) / (2.0 * d.dot(&d));
            }
        }
        want_cdnv /= (k * (k - 1) / 2) as f64;
        assert!(close(cdnv(&g).unwrap(), want_cdnv, 1e-10));
        // NC2 from the centred means directly.
        let cm: Vec<Array1<f64>> = b.means.iter().map(|m| m - &b.mg).collect();
        let norms: Vec<f64> = cm.iter().map(|m| m.dot(m).sqrt()).collect();
        let mean = norms.iter().sum::<f64>() / k as f64;
        let sd_n = (norms.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / k as f64).sqrt();
        let n2 = nc2(&g).unwrap();
        assert!(close(n2.equinorm, sd_n / mean, 1e-10));
        let _ = &b.weights;
    }
}

#[test]
fn nc1_cholesky_route_equals_eigen_route() {
    let (k, p) = (12, 20);
    let (h, y) = mixture(60 * k, p, k, 3.0, 2.0, 9);
    let s = stats_of(&h, &y, k);
    for w in [Weighting::Weighted, Weighting::Balanced] {
        let g = s.geometry(w).unwrap();
        let n1 = nc1(&g, None, None).unwrap();
        assert_eq!((n1.method, n1.rank), (PinvMethod::Cholesky, k - 1));
        // rank = K - 1 forces the eigen-route with the same eigenvalues.
        let e = nc1(&g, Some(k - 1), None).unwrap();
        assert_eq!(e.method, PinvMethod::Eigh);
        assert!(close(n1.value, e.value, 1e-10), "{} {}", n1.value, e.value);
        let spec = between_spectrum(&g).unwrap();
        let policy = g.policy(None, None).unwrap();
        let (a0, b0, r0) = nc1_split_from(&g, &spec, policy).unwrap();
        let (a, b, r) = nc1_split(&g, None).unwrap();
        assert_eq!(r, r0);
        assert!(close(a, a0, 1e-10) && close(b, b0, 1e-10));
    }
    // A near-duplicate class mean: the proof fails and the eigen-route decides the rank.
    let mut h2 = h.clone();
    for i in 0..h2.nrows() {
        if y[i] == 1 {
            for j in 0..p {
                h2[[i, j]] +=
                    s.stats().class_means().unwrap()[j] - s.stats().class_means().unwrap()[p + j];
            }
        }
    }
    let s2 = stats_of(&h2, &y, k);
    let g2 = s2.geometry(Weighting::Weighted).unwrap();
    let n2 = nc1(&g2, None, None).unwrap();
    assert_eq!(n2.method, PinvMethod::Eigh);
    assert!(n2.rank < k - 1);
}

#[test]
fn blocked_pairwise_route_equals_dense_route() {
    // K ≤ p, so cdnv/nc2 take the dense route; the blocked one must agree for any block.
    let (k, p) = (23, 30);
    let (h, y) = mixture(40 * k, p, k, 4.0, 1.0, 8);
    let s = stats_of(&h, &y, k);
    for w in [Weighting::Weighted, Weighting::Balanced] {
        let g = s.geometry(w).unwrap();
        let (c0, n0) = (cdnv(&g).unwrap(), nc2(&g).unwrap());
        for block in [1, 5, 23, 64] {
            let (c, n) = pairwise_in_blocks(&g, block, true, true).unwrap();
            let (c, n) = (c.unwrap(), n.unwrap());
            assert!(close(c, c0, 1e-12), "{c} {c0}");
            assert!(close(n.equinorm, n0.equinorm, 1e-12));
            assert!(close(n.equiangularity, n0.equiangularity, 1e-10));
            assert!(close(n.max_equiangularity, n0.max_equiangularity, 1e-12));
            assert!(close(n.etf_error, n0.etf_error, 1e-10));
        }
    }
}

#[test]
fn float32_tile_route_is_within_its_error_bound() {
    use crate::geometry::mean_pairs::{f32_gram_error_bound, visit, F32_EXACT_RTOL};
    if !crate::linalg::syrk::avx512_available() {
        return;
    }
    // K > p and float32 input: the tile route; its reference is the f64 whole-Gram visit of the
    // same geometry. Sizes cross tile edges (96 × 768) and the KC = 256 depth runs.
    let (k, p, n) = (900, 300, 2700);
    let mut r = crate::test_util::Lcg::new(11);
    let means: Vec<f64> = (0..k * p).map(|_| 2.0 * r.next()).collect();
    let y = Array1::from_shape_fn(n, |i| ((i * 7) % k) as i64);
    let h32 = Array2::from_shape_fn((n, p), |(i, j)| {
        (3.0 + means[y[i] as usize * p + j] + r.next()) as f32
    });
    let mut s = CollapseAnalysis::new(k, p, false).unwrap();
    s.update(h32.view(), y.view()).unwrap();
    for w in [Weighting::Weighted, Weighting::Balanced] {
        let g = s.geometry(w).unwrap();
        assert_eq!(g.precision, Precision::F32);
        assert_eq!(PairRoute::for_geometry(&g), PairRoute::F32Tiles);
        let (c32, n32) = (cdnv(&g).unwrap(), nc2(&g).unwrap());
        assert_eq!(g.mean_pairs().route, PairRoute::F32Tiles);
        let exact = visit(&g, PairRoute::Whole);
        let c64 = pairs::cdnv_of(&g, &exact).unwrap();
        let n64 = pairs::nc2_of(&g, &exact).unwrap();
        let eps = f32_gram_error_bound();
        let cdnv_bound = eps / (F32_EXACT_RTOL - eps);
        assert!((c32 - c64).abs() <= cdnv_bound * c64, "{c32} {c64}");
        assert!((n32.equiangularity - n64.equiangularity).abs() <= eps);
        assert!((n32.max_equiangularity - n64.max_equiangularity).abs() <= eps);
        assert_eq!(n32.equinorm, n64.equinorm); // the norms are exact f64 sums
        assert!((n32.etf_error - n64.etf_error).abs() <= 1e-3 * n64.etf_error);
        // and far inside the worst case in practice
        assert!((c32 - c64).abs() <= 1e-5 * c64, "{c32} {c64}");
        // the same result whatever the thread count
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let again = one.install(|| visit(&g, PairRoute::F32Tiles));
        assert_eq!(again, *g.mean_pairs());
    }
}

#[test]
fn cdnv_and_nc2_share_one_visit() {
    let (k, p) = (40, 8);
    let (h, y) = mixture(20 * k, p, k, 3.0, 0.0, 5);
    let s = stats_of(&h, &y, k);
    let g = s.geometry(Weighting::Weighted).unwrap();
    let _ = cdnv(&g).unwrap();
    let first = std::sync::Arc::as_ptr(&g.mean_pairs());
    let _ = nc2(&g).unwrap();
    assert_eq!(first, std::sync::Arc::as_ptr(&g.mean_pairs()));
}

#[test]
fn probe_mse_equals_least_squares() {
    let (k, p, n) = (3, 5, 240);
    let (h, y) = mixture(n, p, k, 3.0, -2.0, 2);
    let s = stats_of(&h, &y, k);
    let g = s.geometry(Weighting::Weighted).unwrap();
    // min over (W, b) of (1/2N) Σ ‖W h_i + b - e_{y_i}‖² by the normal equations.
    let x = Array2::from_shape_fn((n, p + 1), |(i, j)| if j < p { h[[i, j]] } else { 1.0 });
    let t = Array2::from_shape_fn((n, k), |(i, c)| (y[i] as usize == c) as i32 as f64);
    let beta = solve(&x.t().dot(&x), &x.t().dot(&t));
    let r = x.dot(&beta) - &t;
    let want = r.iter().map(|v| v * v).sum::<f64>() / (2.0 * n as f64);
    let got = probe_mse(&g, None, None).unwrap().value;
    assert!(close(got, want, 1e-9), "{got} {want}");
}

#[test]
fn report_equals_each_metric() {
    let (k, p) = (5, 7);
    let (h, y) = mixture(400, p, k, 4.0, 1.0, 3);
    let s = stats_of(&h, &y, k);
    let w = Array2::from_shape_fn((k, p), |(i, j)| ((i * 3 + j) % 5) as f64 - 2.0);
    for wt in [Weighting::Weighted, Weighting::Balanced] {
        let r = report(&s, wt, None, Some(w.view())).unwrap();
        let g = s.geometry(wt).unwrap();
        let gw = s.geometry(Weighting::Weighted).unwrap();
        assert_eq!(
            r.vci,
            vci(&g, VciNormalizer::MinDimClasses, None, None).unwrap()
        );
        assert_eq!(r.probe_mse, probe_mse(&gw, None, None).unwrap());
        assert_eq!(r.nc1, nc1(&g, None, None).unwrap());
        let (a, b, rk) = nc1_split(&g, None).unwrap();
        assert_eq!(
            r.nc1_split,
            Nc1Split {
                between_span: a,
                orthogonal: b,
                rank: rk
            }
        );
        assert_eq!(r.squared_distance, squared_distance(&g).unwrap());
        assert_eq!(r.cdnv, cdnv(&g).unwrap());
        assert_eq!(r.nc2, nc2(&g).unwrap());
        assert_eq!(r.nc3.unwrap(), nc3(&g, w.view(), k).unwrap());
        let (cw, ct, cs) = cosine_metrics(s.stats()).unwrap();
        assert_eq!(
            r.cosine.unwrap(),
            Cosine {
                within: cw,
                total: ct,
                class_separation: cs
            }
        );
    }
}

#[test]
fn cosine_metrics_match_rows() {
    let (k, p) = (3, 4);
    let (h, y) = mixture(90, p, k, 2.0, 0.5, 4);
    let s = stats_of(&h, &y, k);
    let unit: Vec<Array1<f64>> = h
        .rows()
        .into_iter()
        .map(|r| &r / r.dot(&r).sqrt())
        .collect();
    let mut dw = 0.0;
    let mut tot = Array1::<f64>::zeros(p);
    for c in 0..k {
        let mut sc = Array1::<f64>::zeros(p);
        let mut nc = 0.0;
        for (i, u) in unit.iter().enumerate() {
            if y[i] as usize == c {
                sc += u;
                nc += 1.0;
            }
        }
        dw += 1.0 - sc.dot(&sc) / (nc * nc);
        tot = tot + sc;
    }
    dw /= k as f64;
    let n = h.nrows() as f64;
    let dt = 1.0 - tot.dot(&tot) / (n * n);
    let (a, b, c) = cosine_metrics(s.stats()).unwrap();
    assert!(close(a, dw, 1e-12) && close(b, dt, 1e-12) && close(c, 1.0 - dw / dt, 1e-10));
}

#[test]
fn degenerate_geometry_is_refused_not_nan() {
    // Two classes with the very same samples: identical means.
    let h = Array2::from_shape_fn((8, 3), |(i, j)| ((i % 4) * 3 + j) as f64);
    let y: Array1<i64> = (0..8).map(|i| (i / 4) as i64).collect();
    let s = stats_of(&h, &y, 2);
    let g = s.geometry(Weighting::Weighted).unwrap();
    let deg = |r: Result<f64>| matches!(r, Err(EtfError::Degenerate(_)));
    assert!(deg(squared_distance(&g)));
    assert!(deg(cdnv(&g)));
    assert!(deg(nc2(&g).map(|n| n.equinorm)));
    assert!(deg(
        vci(&g, VciNormalizer::MinDimClasses, None, None).map(|v| v.value)
    ));
    assert!(deg(nc1(&g, None, None).map(|v| v.value)));
    assert!(deg(
        report(&s, Weighting::Weighted, None, None).map(|r| r.cdnv)
    ));
    // Rows that all point the same way: class separation is undefined.
    let h = Array2::from_shape_fn((6, 2), |(i, _)| 1.0 + i as f64);
    let y: Array1<i64> = (0..6).map(|i| (i % 2) as i64).collect();
    let s = stats_of(&h, &y, 2);
    assert!(deg(cosine_metrics(s.stats()).map(|c| c.2)));
}

#[test]
fn classifier_is_validated_and_blamed() {
    let (h, y) = mixture(60, 4, 3, 3.0, 0.0, 5);
    let s = stats_of(&h, &y, 3);
    let g = s.geometry(Weighting::Weighted).unwrap();
    let wide = Array2::<f64>::ones((3, 5));
    match nc3(&g, wide.view(), 3) {
        Err(EtfError::Shape(m)) => assert!(m.starts_with("classifier"), "{m}"),
        other => panic!("{other:?}"),
    }
    let short = Array2::<f64>::ones((2, 4));
    assert!(matches!(nc3(&g, short.view(), 3), Err(EtfError::Shape(_))));
    let mut nan = Array2::<f64>::ones((3, 4));
    nan[[1, 2]] = f64::NAN;
    assert!(matches!(
        nc3(&g, nan.view(), 3),
        Err(EtfError::NonFinite { .. })
    ));
    let zero = Array2::<f64>::zeros((3, 4));
    assert!(matches!(
        nc3(&g, zero.view(), 3),
        Err(EtfError::Degenerate(_))
    ));
}

#[test]
fn float32_statistics_cut_at_float32_precision() {
    // p > N: Σ_T has rank N - 1; float32 rounding must not count as rank.
    let (k, p, n) = (4, 60, 24);
    let (h, y) = mixture(n, p, k, 3.0, 10.0, 6);
    let h32 = h.mapv(|v| v as f32);
    let mut s = CollapseAnalysis::new(k, p, false).unwrap();
    s.update(h32.view(), y.view()).unwrap();
    assert_eq!(s.stats().precision(), Some(Precision::F32));
    let g = s.geometry(Weighting::Weighted).unwrap();
    let v = vci(&g, VciNormalizer::MinDimClasses, None, None).unwrap();
    assert_eq!(v.rank, n - 1);
    // N ≤ p: a linear probe separates the classes exactly, so VCI is 0 up to rounding.
    assert!(v.value.abs() < 1e-6, "{}", v.value);
    // The float64 cut keeps float32 noise as rank.
    let tight = vci(
        &g,
        VciNormalizer::MinDimClasses,
        None,
        Some(p as f64 * f64::EPSILON),
    );
    assert!(tight.unwrap().rank > n - 1);
}
