//! The random-feature kernels against closed forms, brute force and published tables.

use super::*;
use ndarray::Array2;
use std::f64::consts::PI;

const ALL: [Activation; 13] = [
    Activation::Linear,
    Activation::Polynomial {
        a0: 0.3,
        a1: -0.7,
        a2: 1.2,
    },
    Activation::Relu,
    Activation::LeakyRelu { slope: 0.2 },
    Activation::Abs,
    Activation::Sign,
    Activation::Heaviside,
    Activation::Sin,
    Activation::Cos,
    Activation::Erf,
    Activation::Tanh,
    Activation::Exp,
    Activation::Ternary {
        lower: -0.4,
        upper: 0.7,
    },
];

#[test]
fn closed_forms_equal_quadrature() {
    for act in ALL {
        for &tau in &[0.05, 0.3, 1.0, 2.5, 6.0] {
            if let Some(cf) = closed_form_moments(&act, tau) {
                let q = quadrature_moments(&act, tau);
                for i in 0..4 {
                    assert!(
                        (cf[i] - q[i]).abs() < 1e-10 * (1.0 + cf[i].abs()),
                        "{act:?} tau={tau} i={i}: {} vs {}",
                        cf[i],
                        q[i]
                    );
                }
            }
        }
    }
}

#[test]
fn empirical_kernel_matches_naive() {
    let (n, p, m) = (37usize, 11usize, 300usize);
    let x = Array2::from_shape_fn((n, p), |(i, j)| ((i * 31 + j * 7) % 13) as f64 / 13.0 - 0.5);
    for proj in [
        Projection::Gaussian,
        Projection::Orthogonal,
        Projection::Etf,
        Projection::SparseTernary { density: 0.3 },
    ] {
        let act = Activation::Relu;
        let k = empirical_kernel(&act, x.view(), m, proj, 9).unwrap();
        let w = projection_rows(proj, 0, m, p, 9).unwrap();
        for i in 0..n {
            for j in 0..n {
                let want: f64 = (0..m)
                    .map(|r| {
                        let zi: f64 = (0..p).map(|c| w[r * p + c] * x[[i, c]]).sum();
                        let zj: f64 = (0..p).map(|c| w[r * p + c] * x[[j, c]]).sum();
                        act.apply(zi) * act.apply(zj)
                    })
                    .sum::<f64>()
                    / m as f64;
                assert!(
                    (k[[i, j]] - want).abs() < 1e-10 * (1.0 + want.abs()),
                    "{proj:?}"
                );
            }
        }
    }
}

/// The float32 kernel (AVX-512 where the CPU has it) against a float64 brute force, on
/// sizes that leave partial panels, tiles, depth chunks and feature blocks everywhere.
#[test]
fn float32_kernel_matches_naive_on_ragged_sizes() {
    let (n, p, m) = (101usize, 150usize, 603usize);
    let x = Array2::from_shape_fn((n, p), |(i, j)| {
        (((i * 37 + j * 11) % 17) as f32 / 17.0 - 0.45) / (p as f32).sqrt()
    });
    let proj = Projection::Gaussian;
    let w = projection_rows(proj, 0, m, p, 4).unwrap();
    let z: Vec<f64> = (0..m)
        .flat_map(|r| {
            let w = &w;
            let x = &x;
            (0..n).map(move |i| (0..p).map(|c| w[r * p + c] * x[[i, c]] as f64).sum())
        })
        .collect();
    for act in [Activation::Relu, Activation::Linear, Activation::Tanh] {
        let k = empirical_kernel(&act, x.view(), m, proj, 4).unwrap();
        let portable = portable_kernel(&act, x.as_slice().unwrap(), n, p, m, proj, 4).unwrap();
        let mut worst = 0f64;
        for i in 0..n {
            for j in 0..n {
                let want: f64 = (0..m)
                    .map(|r| act.apply(z[r * n + i]) * act.apply(z[r * n + j]))
                    .sum::<f64>()
                    / m as f64;
                worst = worst.max((k[[i, j]] as f64 - want).abs() / (1e-3 + want.abs()));
                assert_eq!(k[[i, j]], k[[j, i]]);
                let d = (k[[i, j]] - portable[[i, j]]).abs() as f64;
                assert!(d <= 1e-5 * (1e-3 + want.abs()), "{act:?} ({i}, {j})");
            }
        }
        assert!(worst < 1e-5, "{act:?}: {worst}");
    }
}

#[test]
fn table_values() {
    let tau = 1.7;
    let [d0, d1, d2] =
        coefficients(&Activation::Relu, tau, D2Convention::TiomokoAli, true).unwrap();
    assert!((d0 - tau * (0.25 - 1.0 / (2.0 * PI))).abs() < 1e-14);
    assert!((d1 - 0.25).abs() < 1e-14 && (d2 - 1.0 / (4.0 * PI * tau)).abs() < 1e-14);
    let [_, d1, d2] = coefficients(
        &Activation::Polynomial {
            a0: 0.0,
            a1: 0.5,
            a2: 3.0,
        },
        tau,
        D2Convention::TiomokoAli,
        true,
    )
    .unwrap();
    assert!((d1 - 0.25).abs() < 1e-14 && (d2 - 18.0).abs() < 1e-12);
    let [_, _, d2l] = coefficients(
        &Activation::Polynomial {
            a0: 0.0,
            a1: 0.5,
            a2: 3.0,
        },
        tau,
        D2Convention::Liao2018,
        true,
    )
    .unwrap();
    assert!((d2l - 9.0).abs() < 1e-12);
}
