//! Metrics that need the samples themselves: nearest-class-mean predictions, NC4 and the
//! per-class numerical rank.

use super::classifier::validate_classifier;
use crate::error::{EtfError, Result};
use crate::geometry::ClassGeometry;
use crate::linalg::{sym_eig_desc, Real};
use crate::stats::pass::validate_batch;
use crate::stats::CHUNK_ROWS;
use faer::Mat;
use ndarray::{ArrayView1, ArrayView2};
use rayon::prelude::*;

fn check_features<T: Real>(h: &ArrayView2<'_, T>, dim: usize) -> Result<()> {
    if h.ncols() != dim {
        return Err(EtfError::Shape(format!(
            "features have {} columns, expected dim={dim}",
            h.ncols()
        )));
    }
    for (i, row) in h.rows().into_iter().enumerate() {
        if let Some(j) = row.iter().position(|v| !v.to_f64().is_finite()) {
            return Err(EtfError::NonFinite {
                what: "features".into(),
                row: i,
                col: j,
            });
        }
    }
    Ok(())
}

/// Nearest class mean of each row among the present classes (indices into `0..num_classes`),
/// by exact differences `Σ_j (h_j - μ_kj)²`: the expanded square `‖h‖² - 2hᵀμ + ‖μ‖²`
/// (one GEMM) only screens; every class whose screened distance lies within a rigorous rounding
/// bound of the minimum is re-evaluated exactly. Ties go to the lowest class index.
pub fn nearest_class_mean<T: Real>(h: ArrayView2<'_, T>, g: &ClassGeometry) -> Result<Vec<usize>> {
    let p = g.dim;
    check_features(&h, p)?;
    let kp = g.num_present();
    let means = &g.class_means; // p × K
    let mnorm: Vec<f64> = (0..kp)
        .map(|k| (0..p).map(|i| means[(i, k)] * means[(i, k)]).sum())
        .collect();
    let mmax = mnorm.iter().cloned().fold(0.0, f64::max);
    let n = h.nrows();
    let mut out = vec![0usize; n];
    out.par_chunks_mut(CHUNK_ROWS)
        .enumerate()
        .for_each(|(c, dst)| {
            let r0 = c * CHUNK_ROWS;
            let m = dst.len();
            let x = Mat::from_fn(m, p, |i, j| h[[r0 + i, j]].to_f64());
            let dots = &x * means;
            for i in 0..m {
                let hn: f64 = (0..p).map(|j| x[(i, j)] * x[(i, j)]).sum();
                let d: Vec<f64> = (0..kp)
                    .map(|k| hn - 2.0 * dots[(i, k)] + mnorm[k])
                    .collect();
                let dmin = d.iter().cloned().fold(f64::INFINITY, f64::min);
                // |error| of each screened distance ≤ 2(p+2)·eps·(‖h‖² + ‖μ‖²)·(1 + slack)
                let tol = 4.0 * (p as f64 + 2.0) * f64::EPSILON * (hn + mmax) + f64::MIN_POSITIVE;
                let mut best = (f64::INFINITY, usize::MAX);
                for k in 0..kp {
                    if d[k] <= dmin + 2.0 * tol {
                        let exact: f64 = (0..p).map(|j| (x[(i, j)] - means[(j, k)]).powi(2)).sum();
                        if exact < best.0 {
                            best = (exact, k);
                        }
                    }
                }
                dst[i] = g.present[best.1];
            }
        });
    Ok(out)
}

/// Argmax of `W h + b` per row (ties to the lowest index).
pub fn classifier_predictions<T: Real>(
    h: ArrayView2<'_, T>,
    weight: ArrayView2<'_, f64>,
    bias: Option<ArrayView1<'_, f64>>,
) -> Result<Vec<usize>> {
    let (k, p) = weight.dim();
    validate_classifier(&weight, bias.as_ref(), None, h.ncols())?;
    check_features(&h, p)?;
    let wt = Mat::from_fn(p, k, |i, j| weight[[j, i]]);
    let n = h.nrows();
    let mut out = vec![0usize; n];
    out.par_chunks_mut(CHUNK_ROWS)
        .enumerate()
        .for_each(|(c, dst)| {
            let r0 = c * CHUNK_ROWS;
            let x = Mat::from_fn(dst.len(), p, |i, j| h[[r0 + i, j]].to_f64());
            let z = &x * &wt;
            for (i, d) in dst.iter_mut().enumerate() {
                let mut best = (f64::NEG_INFINITY, 0usize);
                for j in 0..k {
                    let v = z[(i, j)] + bias.as_ref().map_or(0.0, |b| b[j]);
                    if v > best.0 {
                        best = (v, j);
                    }
                }
                *d = best.1;
            }
        });
    Ok(out)
}

/// NC4: the fraction of rows where the classifier's argmax differs from the nearest class mean.
pub fn nc4<T: Real>(
    h: ArrayView2<'_, T>,
    g: &ClassGeometry,
    num_classes: usize,
    weight: ArrayView2<'_, f64>,
    bias: Option<ArrayView1<'_, f64>>,
) -> Result<f64> {
    if h.nrows() == 0 {
        return Err(EtfError::Shape("NC4 needs at least one sample".into()));
    }
    validate_classifier(&weight, bias.as_ref(), Some(num_classes), g.dim)?;
    let a = nearest_class_mean(h.view(), g)?;
    let b = classifier_predictions(h, weight, bias)?;
    Ok(a.iter().zip(&b).filter(|(x, y)| x != y).count() as f64 / a.len() as f64)
}

/// Per present class `‖H_k‖_*² / ‖H_k‖_F²` (optionally of the class-centred `H_k`), and their mean.
/// Singular values come from the eigenvalues of the smaller Gram of `H_k` (cost per class
/// `O(n_k p min(n_k, p))`); classes whose matrix is zero are skipped.
pub fn numerical_rank<T: Real>(
    h: ArrayView2<'_, T>,
    y: ArrayView1<'_, i64>,
    num_classes: usize,
    centred: bool,
) -> Result<(f64, Vec<(usize, f64)>)> {
    let p = h.ncols();
    validate_batch(&h, &y, num_classes, p)?;
    check_features(&h, p)?;
    // Rows grouped by label through one sort (memory O(N) whatever num_classes; only the classes
    // present are visited).
    let mut order: Vec<usize> = Vec::new();
    order
        .try_reserve_exact(y.len())
        .map_err(|_| EtfError::Dimension("too many rows to group by class".into()))?;
    order.extend(0..y.len());
    order.sort_by_key(|&i| y[i]);
    let mut groups: Vec<(usize, &[usize])> = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let c = y[order[start]];
        let end = start + order[start..].iter().take_while(|&&i| y[i] == c).count();
        groups.push((c as usize, &order[start..end]));
        start = end;
    }
    let per: Vec<Result<Option<(usize, f64)>>> = groups
        .par_iter()
        .map(|&(k, rows)| {
            let nk = rows.len();
            let mut x = Mat::from_fn(nk, p, |i, j| h[[rows[i], j]].to_f64());
            if centred {
                for j in 0..p {
                    let mu = (0..nk).map(|i| x[(i, j)]).sum::<f64>() / nk as f64;
                    for i in 0..nk {
                        x[(i, j)] -= mu;
                    }
                }
            }
            let gram = if nk <= p {
                &x * x.transpose()
            } else {
                x.transpose() * &x
            };
            let (vals, _) = sym_eig_desc(gram.as_ref())?;
            let fro2: f64 = vals.iter().map(|v| v.max(0.0)).sum();
            if fro2 <= 0.0 {
                return Ok(None);
            }
            let nuc: f64 = vals.iter().map(|v| v.max(0.0).sqrt()).sum();
            Ok(Some((k, nuc * nuc / fro2)))
        })
        .collect();
    let mut out = vec![];
    for r in per {
        if let Some(v) = r? {
            out.push(v);
        }
    }
    if out.is_empty() {
        return Err(EtfError::Degenerate(
            "every class's feature matrix is zero".into(),
        ));
    }
    let mean = out.iter().map(|(_, v)| v).sum::<f64>() / out.len() as f64;
    Ok((mean, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{CollapseAnalysis, Weighting};
    use crate::stats::balanced::balanced_scatter;
    use crate::test_util::{jacobi_eig, mixture};
    use ndarray::{Array1, Array2};

    fn stats_of(h: &Array2<f64>, y: &Array1<i64>, k: usize) -> CollapseAnalysis {
        let mut s = CollapseAnalysis::new(k, h.ncols(), false).unwrap();
        s.update(h.view(), y.view()).unwrap();
        s
    }

    fn brute_means(h: &Array2<f64>, y: &Array1<i64>, k: usize) -> Vec<Vec<f64>> {
        let p = h.ncols();
        let mut m = vec![vec![0.0; p]; k];
        let mut c = vec![0.0; k];
        for (i, row) in h.rows().into_iter().enumerate() {
            let l = y[i] as usize;
            c[l] += 1.0;
            for j in 0..p {
                m[l][j] += row[j];
            }
        }
        for l in 0..k {
            m[l].iter_mut().for_each(|v| *v /= c[l]);
        }
        m
    }

    #[test]
    fn nearest_class_mean_matches_exact_differences_with_a_large_offset() {
        let (k, p) = (5, 8);
        let (h, y) = mixture(500, p, k, 0.5, 1e8, 7);
        let s = stats_of(&h, &y, k);
        let g = s.geometry(Weighting::Weighted).unwrap();
        let got = nearest_class_mean(h.view(), &g).unwrap();
        // Brute force with the same means the core holds (exact differences).
        let means: Vec<Vec<f64>> = (0..k)
            .map(|c| (0..p).map(|i| g.class_means[(i, c)]).collect())
            .collect();
        for (i, row) in h.rows().into_iter().enumerate() {
            let d: Vec<f64> = means
                .iter()
                .map(|m| (0..p).map(|j| (row[j] - m[j]).powi(2)).sum())
                .collect();
            let best = (0..k).fold(0, |b, c| if d[c] < d[b] { c } else { b });
            assert_eq!(got[i], best, "row {i}");
        }
        let _ = brute_means(&h, &y, k);
    }

    #[test]
    fn classifier_predictions_and_nc4_match_brute_force() {
        let (k, p) = (4, 6);
        let (h, y) = mixture(300, p, k, 2.0, 0.0, 8);
        let w = Array2::from_shape_fn((k, p), |(i, j)| ((i * 7 + j * 3) % 5) as f64 - 2.0);
        let b = Array1::from(vec![0.1, -0.2, 0.3, 0.0]);
        let got = classifier_predictions(h.view(), w.view(), Some(b.view())).unwrap();
        let s = stats_of(&h, &y, k);
        let g = s.geometry(Weighting::Weighted).unwrap();
        let ncc = nearest_class_mean(h.view(), &g).unwrap();
        let mut differ = 0;
        for (i, row) in h.rows().into_iter().enumerate() {
            let z: Vec<f64> = (0..k)
                .map(|c| (0..p).map(|j| w[[c, j]] * row[j]).sum::<f64>() + b[c])
                .collect();
            let best = (0..k).fold(0, |bb, c| if z[c] > z[bb] { c } else { bb });
            assert_eq!(got[i], best);
            differ += (best != ncc[i]) as usize;
        }
        let nc4v = nc4(h.view(), &g, k, w.view(), Some(b.view())).unwrap();
        assert_eq!(nc4v, differ as f64 / h.nrows() as f64);
    }

    #[test]
    fn numerical_rank_matches_singular_values() {
        let (k, p) = (3, 5);
        let (h, y) = mixture(60, p, k, 2.0, 1.0, 9);
        let (mean, per) = numerical_rank(h.view(), y.view(), k, false).unwrap();
        let mut total = 0.0;
        for (c, v) in &per {
            let rows: Vec<usize> = (0..h.nrows()).filter(|&i| y[i] as usize == *c).collect();
            let x = Array2::from_shape_fn((rows.len(), p), |(i, j)| h[[rows[i], j]]);
            let (ev, _) = jacobi_eig(&x.t().dot(&x));
            let nuc: f64 = ev.iter().map(|l| l.max(0.0).sqrt()).sum();
            let fro: f64 = x.iter().map(|v| v * v).sum();
            let want = nuc * nuc / fro;
            assert!((v - want).abs() < 1e-9 * want, "{v} {want}");
            total += want;
        }
        assert!((mean - total / k as f64).abs() < 1e-9);
    }

    #[test]
    fn balanced_scatter_matches_direct_sum() {
        let (k, p) = (3, 4);
        let (h, y) = mixture(90, p, k, 2.0, 3.0, 10);
        let s = stats_of(&h, &y, k);
        let got = balanced_scatter(s.stats(), h.view(), y.view()).unwrap();
        let c = s.stats().shift().unwrap();
        let counts = s.stats().counts();
        for a in 0..p {
            for b in 0..p {
                let want: f64 = (0..h.nrows())
                    .map(|i| (h[[i, a]] - c[a]) * (h[[i, b]] - c[b]) / counts[y[i] as usize] as f64)
                    .sum();
                assert!((got[a * p + b] - want).abs() < 1e-10 * (1.0 + want.abs()));
            }
        }
    }

    #[test]
    fn bad_classifiers_are_typed_errors() {
        let (h, y) = mixture(40, 3, 2, 2.0, 0.0, 11);
        let s = stats_of(&h, &y, 2);
        let g = s.geometry(Weighting::Weighted).unwrap();
        let mut w = Array2::<f64>::ones((2, 3));
        w[[0, 0]] = f64::NAN;
        assert!(matches!(
            nc4(h.view(), &g, 2, w.view(), None),
            Err(EtfError::NonFinite { .. })
        ));
        let w = Array2::<f64>::ones((3, 3));
        assert!(matches!(
            nc4(h.view(), &g, 2, w.view(), None),
            Err(EtfError::Shape(_))
        ));
        let w = Array2::<f64>::ones((2, 4));
        match classifier_predictions(h.view(), w.view(), None) {
            Err(EtfError::Shape(m)) => assert!(m.starts_with("classifier"), "{m}"),
            other => panic!("{other:?}"),
        }
        let b = Array1::from(vec![f64::INFINITY, 0.0]);
        let w = Array2::<f64>::ones((2, 3));
        assert!(matches!(
            classifier_predictions(h.view(), w.view(), Some(b.view())),
            Err(EtfError::NonFinite { .. })
        ));
    }
}
