//! NC3 (classifier ↔ class means) and the checks of a classifier given by the user.

use super::finite;
use crate::error::{EtfError, Result};
use crate::geometry::ClassGeometry;
use faer::Mat;
use ndarray::{ArrayView1, ArrayView2};

/// NC3 of a classifier against the centred class means.
#[derive(Debug, Clone, PartialEq)]
pub struct Nc3 {
    /// `‖W/‖W‖_F - M̄ᵀ/‖M̄‖_F‖_F²` over the present classes.
    pub distance: f64,
    /// `cos(w_k, μ_k - μ_G)` per present class.
    pub cosines: Vec<f64>,
}

/// Checks a `K × p` classifier (and optional bias) for statistics of `K` classes in `p`
/// dimensions: shape (blaming the classifier), finite weights and bias.
pub fn validate_classifier(
    w: &ArrayView2<'_, f64>,
    bias: Option<&ArrayView1<'_, f64>>,
    num_classes: Option<usize>,
    dim: usize,
) -> Result<()> {
    let (k, q) = w.dim();
    if q != dim {
        return Err(EtfError::Shape(format!(
            "classifier has {q} columns but the features have dim={dim}"
        )));
    }
    if let Some(kk) = num_classes {
        if k != kk {
            return Err(EtfError::Shape(format!(
                "classifier has {k} rows but the statistics have num_classes={kk}"
            )));
        }
    }
    if k == 0 {
        return Err(EtfError::Shape("classifier has no rows".into()));
    }
    if let Some(((i, j), _)) = w.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(EtfError::NonFinite {
            what: "classifier".into(),
            row: i,
            col: j,
        });
    }
    if let Some(b) = bias {
        if b.len() != k {
            return Err(EtfError::Shape(format!(
                "bias has {} entries, classifier has {k} rows",
                b.len()
            )));
        }
        if let Some((i, _)) = b.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(EtfError::NonFinite {
                what: "bias".into(),
                row: 0,
                col: i,
            });
        }
    }
    Ok(())
}

/// NC3: `‖W/‖W‖_F - M̄ᵀ/‖M̄‖_F‖_F²` over the present classes' rows of the `K × p` classifier,
/// and per present class `cos(w_k, μ_k - μ_G)`. A classifier whose present rows are all zero, a
/// zero row of a present class, or a class mean equal to the global mean make it undefined
/// (`Degenerate`).
pub fn nc3(g: &ClassGeometry, classifier: ArrayView2<'_, f64>, num_classes: usize) -> Result<Nc3> {
    let p = g.dim;
    validate_classifier(&classifier, None, Some(num_classes), p)?;
    let kp = g.num_present();
    let wp = Mat::from_fn(kp, p, |j, i| classifier[[g.present[j], i]]);
    let (wn, mn) = (wp.norm_l2(), g.centred_means.norm_l2());
    if !(wn > 0.0) {
        return Err(EtfError::Degenerate(
            "NC3 is undefined: the classifier rows of the present classes are all zero".into(),
        ));
    }
    g.check_separated("NC3")?;
    let mut dist = 0.0;
    let mut cos = Vec::with_capacity(kp);
    for j in 0..kp {
        let (mut dot, mut nw, mut nm) = (0.0, 0.0, 0.0);
        for i in 0..p {
            let (a, b) = (wp[(j, i)], g.centred_means[(i, j)]);
            let d = a / wn - b / mn;
            dist += d * d;
            dot += a * b;
            nw += a * a;
            nm += b * b;
        }
        if !(nw > 0.0) {
            return Err(EtfError::Degenerate(format!(
                "NC3 cosine is undefined: classifier row {} is zero",
                g.present[j]
            )));
        }
        if !(nm > 0.0) {
            return Err(EtfError::Degenerate(format!(
                "NC3 cosine is undefined: the mean of class {} equals the global mean",
                g.present[j]
            )));
        }
        cos.push(finite(dot / (nw.sqrt() * nm.sqrt()), "NC3 cosine")?);
    }
    Ok(Nc3 {
        distance: finite(dist, "NC3")?,
        cosines: cos,
    })
}
