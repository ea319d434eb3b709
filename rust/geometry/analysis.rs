//! [`CollapseAnalysis`]: statistics together with what is derived from them — the attached
//! balanced scatter and the cached geometries (with their factorisations), one per weighting.
//!
//! Its four mutators (`update`, `merge`, `reshift`, `attach_balanced_scatter`) are the only
//! ways to change the statistics, and each drops what it invalidates, so a cached value can
//! never describe another state. Clones share the cache (an `Arc`): a copy of a state and the
//! state itself factorise `Σ_T` once between them.

use super::{ClassGeometry, Weighting};
use crate::error::Result;
use crate::linalg::Real;
use crate::stats::{balanced::balanced_scatter, CollapseStats};
use ndarray::{ArrayView1, ArrayView2};
use std::sync::{Arc, OnceLock};

/// Class geometries computed from the current state, one per weighting; built on first use
/// (through `&self`, thread-safe).
#[derive(Debug, Default)]
struct GeometryCache {
    weighted: OnceLock<Arc<ClassGeometry>>,
    balanced: OnceLock<Arc<ClassGeometry>>,
}

/// Statistics, the balanced scatter attached to them, and the cached geometries.
#[derive(Debug, Clone)]
pub struct CollapseAnalysis {
    stats: CollapseStats,
    /// `Σ_k S_k/n_k` (full `p × p`) computed from the very samples, for the balanced `Σ_W`.
    balanced_scatter: Option<Arc<Vec<f64>>>,
    cache: Arc<GeometryCache>,
}

impl PartialEq for CollapseAnalysis {
    /// Equal statistics (the balanced scatter and the cache are derived data).
    fn eq(&self, o: &Self) -> bool {
        self.stats == o.stats
    }
}

impl From<CollapseStats> for CollapseAnalysis {
    fn from(stats: CollapseStats) -> Self {
        CollapseAnalysis {
            stats,
            balanced_scatter: None,
            cache: Arc::default(),
        }
    }
}

impl CollapseAnalysis {
    /// Empty statistics for `num_classes` classes of `dim`-dimensional features.
    pub fn new(num_classes: usize, dim: usize, track_class_scatter: bool) -> Result<Self> {
        Ok(CollapseStats::new(num_classes, dim, track_class_scatter)?.into())
    }

    /// The statistics (read-only: the mutators below keep the cache consistent).
    pub fn stats(&self) -> &CollapseStats {
        &self.stats
    }

    /// The attached balanced scatter `Σ_k S_k/n_k`, if any.
    pub fn balanced_scatter(&self) -> Option<&[f64]> {
        self.balanced_scatter.as_deref().map(|v| v.as_slice())
    }

    /// The class geometry under `weighting`, computed once per state and cached.
    pub fn geometry(&self, weighting: Weighting) -> Result<Arc<ClassGeometry>> {
        let cell = match weighting {
            Weighting::Weighted => &self.cache.weighted,
            Weighting::Balanced => &self.cache.balanced,
        };
        if let Some(g) = cell.get() {
            return Ok(g.clone());
        }
        let g = Arc::new(ClassGeometry::new(
            &self.stats,
            weighting,
            self.balanced_scatter(),
        )?);
        Ok(cell.get_or_init(|| g).clone())
    }

    /// Drops every derived value (after the statistics changed).
    fn invalidate(&mut self) {
        self.cache = Arc::default();
        self.balanced_scatter = None;
    }

    /// [`CollapseStats::update`]; all-or-nothing (a failed update keeps the cache too).
    pub fn update<T: Real>(&mut self, h: ArrayView2<'_, T>, y: ArrayView1<'_, i64>) -> Result<()> {
        let before = self.stats.num_samples();
        self.stats.update(h, y)?;
        if self.stats.num_samples() != before {
            self.invalidate();
        }
        Ok(())
    }

    /// [`CollapseStats::release_buffers`] (the statistics do not change).
    pub fn release_buffers(&mut self) {
        self.stats.release_buffers();
    }

    /// [`CollapseStats::merge`]; all-or-nothing.
    pub fn merge(&mut self, other: &CollapseStats) -> Result<()> {
        self.stats.merge(other)?;
        if other.num_samples() > 0 {
            self.invalidate();
        }
        Ok(())
    }

    /// [`CollapseStats::reshift`]; all-or-nothing.
    pub fn reshift(&mut self, new_shift: &[f64]) -> Result<()> {
        self.stats.reshift(new_shift)?;
        self.invalidate();
        Ok(())
    }

    /// Computes and keeps `Σ_k S_k/n_k` from the very samples of these statistics (one pass),
    /// which makes the balanced `Σ_W` available on imbalanced classes. The weighted geometry
    /// does not depend on it and stays cached.
    pub fn attach_balanced_scatter<T: Real>(
        &mut self,
        h: ArrayView2<'_, T>,
        y: ArrayView1<'_, i64>,
    ) -> Result<()> {
        let s = balanced_scatter(&self.stats, h, y)?;
        let cache = GeometryCache::default();
        if let Some(g) = self.cache.weighted.get() {
            let _ = cache.weighted.set(g.clone());
        }
        self.cache = Arc::new(cache);
        self.balanced_scatter = Some(Arc::new(s));
        Ok(())
    }
}
