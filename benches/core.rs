//! Criterion benches of the metric kernels: statistics update (f32/f64), merge, the
//! pseudo-inverse metrics (VCI, NC1) and ETF construction. Pure Rust, no Python needed.
//! The side-by-side comparison against numpy/torch/research loops is `benches/compare.py`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use etfcore::metrics::{self, ClassGeometry, VciNormalizer, Weighting};
use etfcore::{etf, CollapseStats};
use ndarray::{Array1, Array2};
use std::hint::black_box;

fn data(n: usize, p: usize, k: usize) -> (Array2<f32>, Array1<i64>) {
    let mut s = 0x9E3779B97F4A7C15u64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let means: Vec<f32> = (0..k * p).map(|_| 3.0 * next()).collect();
    let y: Array1<i64> = (0..n).map(|i| (i % k) as i64).collect();
    let h = Array2::from_shape_fn((n, p), |(i, j)| 5.0 + means[(i % k) * p + j] + next());
    (h, y)
}

fn bench_update(c: &mut Criterion) {
    let mut g = c.benchmark_group("stats_update");
    g.sample_size(10);
    for &(n, p, k) in &[(20_000usize, 256usize, 100usize), (20_000, 1024, 1000)] {
        let (h, y) = data(n, p, k);
        let h64 = h.mapv(|v| v as f64);
        g.throughput(Throughput::Elements((n * p) as u64));
        g.bench_with_input(
            BenchmarkId::new("f32", format!("{n}x{p}_K{k}")),
            &(),
            |b, _| {
                b.iter(|| {
                    let mut s = CollapseStats::new(k, p, false).unwrap();
                    s.update(h.view(), y.view()).unwrap();
                    black_box(s.num_samples())
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("f64", format!("{n}x{p}_K{k}")),
            &(),
            |b, _| {
                b.iter(|| {
                    let mut s = CollapseStats::new(k, p, false).unwrap();
                    s.update(h64.view(), y.view()).unwrap();
                    black_box(s.num_samples())
                })
            },
        );
    }
    g.finish();
}

/// One chunk's lower-triangular Gram (`m·p(p+1)/2` multiply-adds): the AVX-512 panel kernel
/// against the portable blocked library GEMM, f32 and f64.
fn bench_gram(c: &mut Criterion) {
    use etfcore::linalg::Real;
    use etfcore::syrk::{self, PanelLayout};
    let mut g = c.benchmark_group("chunk_gram");
    g.sample_size(10);
    let (m, p) = (1024usize, 1024usize);
    let (h, _) = data(m, p, 7);
    let x32: Vec<f32> = h.iter().copied().collect();
    let x64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
    let (l32, l64) = (PanelLayout::new(m, p, 16), PanelLayout::new(m, p, 8));
    let mut p32 = vec![0.0f32; l32.len()];
    let mut p64 = vec![0.0f64; l64.len()];
    for r in 0..m {
        for j in 0..p {
            p32[l32.index(r, j)] = x32[r * p + j];
            p64[l64.index(r, j)] = x64[r * p + j];
        }
    }
    let mut acc = vec![0.0f64; p * p];
    g.throughput(Throughput::Elements((m * p * (p + 1) / 2) as u64));
    let id = format!("m{m}_p{p}");
    g.bench_function(BenchmarkId::new("portable_f32", &id), |b| {
        let mut work = vec![];
        b.iter(|| f32::accumulate_gram(&x32, m, p, &mut work, &mut acc))
    });
    g.bench_function(BenchmarkId::new("portable_f64", &id), |b| {
        let mut work = vec![];
        b.iter(|| f64::accumulate_gram(&x64, m, p, &mut work, &mut acc))
    });
    if syrk::avx512_available() {
        g.bench_function(BenchmarkId::new("avx512_panels_f32", &id), |b| {
            b.iter(|| syrk::gram_lower_panels_f32(&p32, &l32, 0, m, &mut acc))
        });
        g.bench_function(BenchmarkId::new("avx512_panels_f64", &id), |b| {
            b.iter(|| syrk::gram_lower_panels_f64(&p64, &l64, 0, m, &mut acc))
        });
    }
    black_box(&acc);
    g.finish();
}

fn bench_merge_and_metrics(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics");
    g.sample_size(10);
    for &(p, k) in &[(256usize, 100usize), (1024, 1000)] {
        let (h, y) = data(4 * k + 2 * p, p, k);
        let mut s = CollapseStats::new(k, p, false).unwrap();
        s.update(h.view(), y.view()).unwrap();
        let mut other = CollapseStats::new(k, p, false).unwrap();
        other
            .update(h.slice(ndarray::s![..k, ..]), y.slice(ndarray::s![..k]))
            .unwrap();
        g.bench_function(BenchmarkId::new("merge", format!("p{p}_K{k}")), |b| {
            b.iter(|| {
                let mut a = s.clone();
                a.merge(&other).unwrap();
                black_box(a.num_samples())
            })
        });
        g.bench_function(BenchmarkId::new("geometry", format!("p{p}_K{k}")), |b| {
            b.iter(|| black_box(ClassGeometry::new(&s, Weighting::Weighted, None).unwrap()))
        });
        let geo = ClassGeometry::new(&s, Weighting::Weighted, None).unwrap();
        g.bench_function(BenchmarkId::new("vci", format!("p{p}_K{k}")), |b| {
            b.iter(|| {
                black_box(metrics::vci(&geo, VciNormalizer::MinDimClasses, None, None).unwrap())
            })
        });
        g.bench_function(BenchmarkId::new("nc1", format!("p{p}_K{k}")), |b| {
            b.iter(|| black_box(metrics::nc1(&geo, None, None).unwrap()))
        });
    }
    g.finish();
}

fn bench_etf(c: &mut Criterion) {
    let mut g = c.benchmark_group("etf");
    g.sample_size(10);
    for &(k, p) in &[(100usize, 512usize), (1000, 1024)] {
        g.bench_function(BenchmarkId::new("simplex_etf", format!("K{k}_p{p}")), |b| {
            b.iter(|| black_box(etf::simplex_etf(k, p, 0, None).unwrap()))
        });
    }
    g.finish();
}

fn bench_rf(c: &mut Criterion) {
    use etfcore::rf::{empirical_kernel, Activation, Projection};
    let mut g = c.benchmark_group("rf");
    g.sample_size(10);
    let (x, _) = data(2048, 256, 2);
    g.bench_function("empirical_kernel_relu_n2048_p256_m1024", |b| {
        b.iter(|| {
            black_box(
                empirical_kernel(&Activation::Relu, x.view(), 1024, Projection::Gaussian, 0)
                    .unwrap(),
            )
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_gram,
    bench_update,
    bench_merge_and_metrics,
    bench_etf,
    bench_rf
);
criterion_main!(benches);
