//! Tests of the accumulator (its geometry is read through `geometry` to compare covariances).

use super::format::{checksum as fnv1a, FLAG_CLASS_SCATTER, FLAG_FLOAT32, FLAG_SHIFT, MAGIC};
use super::rows::{row_kernel_dispatch, Runs};
use super::*;
use crate::test_util::lcg_data as data;
use ndarray::Array1;

#[test]
fn bytes_round_trip_and_corruption() {
    let (h, y) = data(500, 5, 3, 3);
    let mut s = CollapseStats::new(3, 5, false).unwrap();
    s.update(h.view(), y.view()).unwrap();
    let bytes = s.to_bytes();
    assert_eq!(CollapseStats::from_bytes(&bytes).unwrap(), s);
    let mut bad = bytes.clone();
    bad[100] ^= 1;
    assert!(matches!(
        CollapseStats::from_bytes(&bad),
        Err(EtfError::Corrupt(_))
    ));
    assert!(matches!(
        CollapseStats::from_bytes(&bytes[..bytes.len() - 1]),
        Err(EtfError::Corrupt(_))
    ));
}

#[test]
fn failed_update_is_atomic() {
    let (mut h, y) = data(3000, 4, 2, 4);
    let mut s = CollapseStats::new(2, 4, false).unwrap();
    s.update(h.slice(ndarray::s![..10, ..]), y.slice(ndarray::s![..10]))
        .unwrap();
    let before = s.clone();
    h[[2900, 2]] = f64::NAN;
    let e = s.update(h.view(), y.view()).unwrap_err();
    assert_eq!(
        e,
        EtfError::NonFinite {
            what: "features".into(),
            row: 2900,
            col: 2
        }
    );
    assert_eq!(s, before);
    let bad_y: Array1<i64> = y.mapv(|v| if v == 1 { 2 } else { v });
    assert!(matches!(
        s.update(h.view(), bad_y.view()),
        Err(EtfError::Label(_))
    ));
    assert_eq!(s, before);
}

/// A blob with a valid checksum (the attacker recomputes it) and the given header fields.
fn crafted(version: u32, flags: u32, k: u64, p: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&k.to_le_bytes());
    out.extend_from_slice(&p.to_le_bytes());
    out.extend_from_slice(body);
    let sum = fnv1a(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

#[test]
fn crafted_blobs_are_refused_without_panicking() {
    // Header sizes whose products wrap in usize.
    for (k, p) in [
        (1u64 << 32, 1u64 << 24),
        (u64::MAX, u64::MAX),
        (3, 1u64 << 40),
    ] {
        let b = crafted(2, FLAG_CLASS_SCATTER | FLAG_SHIFT, k, p, &[0u8; 64]);
        assert!(matches!(
            CollapseStats::from_bytes(&b),
            Err(EtfError::Corrupt(_))
        ));
    }
    // Valid layout, counts whose sum wraps u64.
    let mut s = CollapseStats::new(2, 1, false).unwrap();
    let (h, y) = data(4, 1, 2, 1);
    s.update(h.view(), y.view()).unwrap();
    let mut b = s.to_bytes();
    let off = 32 + 8; // after the header and the shift (p = 1)
    b[off..off + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    b[off + 8..off + 16].copy_from_slice(&2u64.to_le_bytes());
    let n = b.len();
    let sum = fnv1a(&b[..n - 8]);
    b[n - 8..].copy_from_slice(&sum.to_le_bytes());
    assert!(matches!(
        CollapseStats::from_bytes(&b),
        Err(EtfError::Corrupt(_))
    ));
    // Samples without a shift.
    let e = CollapseStats::new(2, 1, false).unwrap().to_bytes();
    let mut body = e[32..e.len() - 8].to_vec();
    body[..8].copy_from_slice(&5u64.to_le_bytes());
    assert!(matches!(
        CollapseStats::from_bytes(&crafted(2, 0, 2, 1, &body)),
        Err(EtfError::Corrupt(_))
    ));
    // Unknown version.
    assert!(matches!(
        CollapseStats::from_bytes(&crafted(9, 0, 2, 1, &body)),
        Err(EtfError::Incompatible(_))
    ));
}

#[test]
fn version_1_reads_as_float64_and_float32_round_trips() {
    let (h, y) = data(50, 3, 2, 5);
    let h32 = h.mapv(|v| v as f32);
    let mut s = CollapseStats::new(2, 3, false).unwrap();
    s.update(h32.view(), y.view()).unwrap();
    assert_eq!(s.precision(), Some(Precision::F32));
    let b = s.to_bytes();
    assert_eq!(CollapseStats::from_bytes(&b).unwrap(), s);
    // The same body under version 1 without the float32 flag is float64.
    let flags = u32::from_le_bytes(b[12..16].try_into().unwrap()) & !FLAG_FLOAT32;
    let v1 = crafted(1, flags, 2, 3, &b[32..b.len() - 8]);
    let r = CollapseStats::from_bytes(&v1).unwrap();
    assert_eq!(r.precision(), Some(Precision::F64));
    assert_eq!(r.counts(), s.counts());
    // Version 1 never had the float32 flag.
    let bad = crafted(1, flags | FLAG_FLOAT32, 2, 3, &b[32..b.len() - 8]);
    assert!(CollapseStats::from_bytes(&bad).is_err());
}

#[test]
fn overflowing_squares_are_refused_or_computed_safely() {
    // float64 values whose squares overflow: refused, state unchanged.
    let (h, y) = data(40, 3, 2, 6);
    let mut s = CollapseStats::new(2, 3, false).unwrap();
    s.update(h.view(), y.view()).unwrap();
    let before = s.clone();
    let big = h.mapv(|v| v * 1e200);
    assert!(matches!(
        s.update(big.view(), y.view()),
        Err(EtfError::Numerical(_))
    ));
    assert_eq!(s, before);
    let mut fresh = CollapseStats::new(2, 3, false).unwrap();
    assert!(fresh.update(big.view(), y.view()).is_err());
    assert_eq!(fresh, CollapseStats::new(2, 3, false).unwrap());
    // float32 values whose float32 products overflow: computed in float64 instead.
    let h32 = h.mapv(|v| (v * 1e18) as f32);
    let mut s32 = CollapseStats::new(2, 3, false).unwrap();
    s32.update(h32.view(), y.view()).unwrap();
    let h64 = h32.mapv(|v| v as f64);
    let mut s64 = CollapseStats::new(2, 3, false).unwrap();
    s64.update(h64.view(), y.view()).unwrap();
    let scale = s64.scatter().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (a, b) in s32.scatter().iter().zip(s64.scatter()) {
        assert!(a.is_finite() && (a - b).abs() <= 1e-5 * scale);
    }
    // float32 near its maximum: finite statistics.
    let top = h.mapv(|v| (v.signum() * 3e38) as f32);
    let mut st = CollapseStats::new(2, 3, false).unwrap();
    st.update(top.view(), y.view()).unwrap();
    assert!(st.scatter().iter().all(|v| v.is_finite()));
}

#[test]
fn subnormal_and_huge_rows_keep_their_direction() {
    let h = ndarray::arr2(&[[1e-310, 0.0], [0.0, 2e-310], [1e150, 1e150], [-1e150, 0.0]]);
    let y = ndarray::arr1(&[0i64, 0, 1, 1]);
    let mut s = CollapseStats::new(2, 2, false).unwrap();
    s.update(h.view(), y.view()).unwrap();
    assert_eq!(s.class_zero_rows(), &[0, 0]);
    let u = s.class_unit_sums();
    let r = 0.5f64.sqrt();
    let want = [1.0, 1.0, r - 1.0, r];
    for (a, b) in u.iter().zip(want) {
        assert!((a - b).abs() < 1e-12, "{u:?}");
    }
}

/// The portable row work (used without AVX-512) against the AVX-512 one and a plain loop,
/// for row-major runs and for panel runs with a ragged last panel.
#[test]
fn portable_and_avx512_row_work_agree() {
    let p = 37;
    let src: Vec<f32> = (0..p)
        .map(|j| (j as f32 * 0.37).sin() * 3.0 + 1.0)
        .collect();
    let shift: Vec<f64> = (0..p).map(|j| 0.5 + j as f64 * 0.01).collect();
    let want: Vec<f64> = (0..p).map(|j| src[j] as f64 - shift[j]).collect();
    let norm = src.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    for runs in [
        Runs {
            base: 0,
            stride: p,
            w: p,
        },
        Runs {
            base: 3,
            stride: 17,
            w: 16,
        },
    ] {
        let mut outs = vec![];
        for simd in [false, true] {
            if simd && !crate::linalg::syrk::avx512_available() {
                continue;
            }
            let (mut sums, mut unit) = (vec![1.0; p], vec![0.0; p]);
            let mut buf = vec![9.0f32; 3 + 17 * 3];
            let (sq, raw, done) = row_kernel_dispatch(
                simd, &src, &shift, &mut sums, &mut unit, &mut buf, runs, 2.0,
            );
            assert!(done);
            assert!((sq - want.iter().map(|x| x * x).sum::<f64>()).abs() < 1e-9);
            assert!((raw - norm * norm).abs() < 1e-9);
            for j in 0..p {
                assert!((sums[j] - 1.0 - want[j]).abs() < 1e-12);
                assert!((unit[j] - src[j] as f64 / norm).abs() < 1e-12);
                let at = runs.base + (j / runs.w) * runs.stride + j % runs.w;
                assert_eq!(buf[at], (want[j] * 2.0) as f32);
            }
            if runs.w == 16 {
                // Zeros past p in the last panel.
                assert!(buf[3 + 2 * 17 + 5..3 + 2 * 17 + 16]
                    .iter()
                    .all(|&v| v == 0.0));
            }
            outs.push((sums, unit, buf));
        }
        if outs.len() == 2 {
            assert_eq!(outs[0].2, outs[1].2);
        }
    }
}

#[test]
fn merging_a_copy_of_itself_doubles() {
    let (h, y) = data(100, 4, 3, 7);
    let mut s = CollapseStats::new(3, 4, false).unwrap();
    s.update(h.view(), y.view()).unwrap();
    let copy = s.clone();
    s.merge(&copy).unwrap();
    let mut twice = CollapseStats::new(3, 4, false).unwrap();
    twice.update(h.view(), y.view()).unwrap();
    twice.update(h.view(), y.view()).unwrap();
    assert_eq!(s.counts(), twice.counts());
    for (a, b) in s.scatter().iter().zip(twice.scatter()) {
        assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()));
    }
}

#[test]
fn reused_buffers_give_bit_identical_statistics() {
    // Batches with different class sets and sizes, with and without per-class scatters: a
    // state that reuses its buffers equals one that frees them before every update, bit for
    // bit (the buffers are zeroed, whatever an earlier batch left in them).
    for track in [false, true] {
        let mut reused = CollapseStats::new(7, 6, track).unwrap();
        let mut fresh = CollapseStats::new(7, 6, track).unwrap();
        for (i, &(n, k)) in [(900usize, 7usize), (40, 2), (5000, 7), (3, 1), (700, 5)]
            .iter()
            .enumerate()
        {
            let (h, y) = data(n, 6, k, 10 + i as u64);
            let h32 = h.mapv(|v| v as f32);
            reused.update(h.view(), y.view()).unwrap();
            reused.update(h32.view(), y.view()).unwrap();
            fresh.release_buffers();
            fresh.update(h.view(), y.view()).unwrap();
            fresh.release_buffers();
            fresh.update(h32.view(), y.view()).unwrap();
            assert!(reused.buffer_bytes() > 0);
            assert_eq!(reused.sums, fresh.sums);
        }
        fresh.release_buffers();
        assert_eq!(fresh.buffer_bytes(), 0);
        assert_eq!(reused, fresh);
    }
}
