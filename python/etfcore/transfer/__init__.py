"""Transfer evaluation and model selection: does a backbone transfer, and which one to pick?

- :func:`linear_probe`: multinomial logistic regression on frozen features (torch L-BFGS,
  97-λ warm-started sweep chosen on a validation split, refit); needs torch.
- :func:`ridge_path`: the least-squares probe for every ridge ``λ`` from one eigendecomposition
  of the streamed statistics.
- Transferability scores from one streaming pass where the mathematics allows:
  :func:`hscore`, :func:`regularized_hscore`, :func:`logme`, :func:`gbc`, :func:`vci`,
  :func:`probe_mse`; from the source head's predictions :func:`leep`, :func:`nce`; and
  :func:`ncti`, :func:`cm_accuracy`. :class:`TransferabilityStats` streams and merges.
- Rank agreement: :func:`weighted_kendall_tau` (scipy's convention), :func:`pearson`,
  :func:`spearman`, :func:`rank_report`; :func:`mlog` and :func:`mlog_report`.
- :func:`extract_features`, :func:`select_classes`, :func:`map_labels` (torch for the first);
  :func:`load_npy` reads a saved feature or label file, checked against its extraction's
  manifest.

Importing this module never imports torch.
"""

from .features import extract_features, load_npy, map_labels, select_classes
from .ncti import NCTIComponents, ncti, ncti_components
from .probe import DEFAULT_GRID, ProbeResult, fit_logistic, linear_probe, stratified_split
from .ranking import (
    MLOGReport,
    RankAgreement,
    RankReport,
    aggregate_agreement,
    mean_log_odds,
    mlog,
    mlog_report,
    pearson,
    rank_agreement,
    rank_report,
    spearman,
    weighted_kendall_tau,
)
from .scores import (
    HIGHER_IS_BETTER,
    LogMEResult,
    RidgePath,
    all_scores,
    centred_means_classifier,
    cm_accuracy,
    gbc,
    hscore,
    hscore_from_stats,
    logme,
    logme_from_stats,
    probe_mse,
    regularized_hscore,
    ridge_path,
    score_direction,
    vci,
)
from .source_head import leep, nce, source_joint
from .streaming import TransferabilityStats

__all__ = [
    "DEFAULT_GRID",
    "HIGHER_IS_BETTER",
    "LogMEResult",
    "MLOGReport",
    "NCTIComponents",
    "ProbeResult",
    "RankAgreement",
    "RankReport",
    "RidgePath",
    "TransferabilityStats",
    "aggregate_agreement",
    "all_scores",
    "centred_means_classifier",
    "cm_accuracy",
    "extract_features",
    "fit_logistic",
    "gbc",
    "hscore",
    "hscore_from_stats",
    "leep",
    "load_npy",
    "linear_probe",
    "logme",
    "logme_from_stats",
    "map_labels",
    "mean_log_odds",
    "mlog",
    "mlog_report",
    "ncti",
    "ncti_components",
    "nce",
    "pearson",
    "probe_mse",
    "rank_agreement",
    "rank_report",
    "regularized_hscore",
    "ridge_path",
    "score_direction",
    "select_classes",
    "source_joint",
    "spearman",
    "stratified_split",
    "vci",
    "weighted_kendall_tau",
]
