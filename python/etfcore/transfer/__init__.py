"""Transfer evaluation and model selection: does a backbone transfer, and which one to pick?

- [`linear_probe`][etfcore.transfer.linear_probe]: multinomial logistic regression on frozen
  features (torch L-BFGS, 97-λ warm-started sweep chosen on a validation split, refit); needs torch.
- [`ridge_path`][etfcore.transfer.ridge_path]: the least-squares probe for every ridge ``λ`` from
  one eigendecomposition of the streamed statistics.
- Transferability scores from one streaming pass where the mathematics allows:
  [`hscore`][etfcore.transfer.hscore], [`regularized_hscore`][etfcore.transfer.regularized_hscore],
  [`logme`][etfcore.transfer.logme], [`gbc`][etfcore.transfer.gbc], [`vci`][etfcore.transfer.vci],
  [`probe_mse`][etfcore.transfer.probe_mse]; from the source head's predictions
  [`leep`][etfcore.transfer.leep], [`nce`][etfcore.transfer.nce]; and
  [`ncti`][etfcore.transfer.ncti], [`cm_accuracy`][etfcore.transfer.cm_accuracy].
  [`TransferabilityStats`][etfcore.transfer.TransferabilityStats] streams and merges.
- Rank agreement: [`weighted_kendall_tau`][etfcore.transfer.weighted_kendall_tau] (scipy's
  convention), [`pearson`][etfcore.transfer.pearson], [`spearman`][etfcore.transfer.spearman],
  [`rank_report`][etfcore.transfer.rank_report]; [`mlog`][etfcore.transfer.mlog] and
  [`mlog_report`][etfcore.transfer.mlog_report].
- [`extract_features`][etfcore.transfer.extract_features],
  [`select_classes`][etfcore.transfer.select_classes], [`map_labels`][etfcore.transfer.map_labels]
  (torch for the first); [`load_npy`][etfcore.transfer.load_npy] reads a saved feature or label
  file, checked against its extraction's manifest.
- Model-selection scores of the field, each recording its conventions in its result: sample level
  (seeded stratified subsample) [`knn_accuracy`][etfcore.transfer.knn_accuracy],
  [`parc`][etfcore.transfer.parc], [`nleep`][etfcore.transfer.nleep],
  [`pactran_gauss`][etfcore.transfer.pactran_gauss]; discriminant [`sfda`][etfcore.transfer.sfda],
  [`etran`][etfcore.transfer.etran] (+ [`etran_combine`][etfcore.transfer.etran_combine],
  [`normalise_scores`][etfcore.transfer.normalise_scores]),
  [`transrate`][etfcore.transfer.transrate], [`emms`][etfcore.transfer.emms],
  [`ped`][etfcore.transfer.ped] (+ [`ped_features`][etfcore.transfer.ped_features]); spectral
  [`rankme`][etfcore.transfer.rankme], [`lidar`][etfcore.transfer.lidar] (and their ``*_from_stats``
  forms); all of one matrix by name: [`selection_scores`][etfcore.transfer.selection_scores].
- The ranking report [`rank_models`][etfcore.transfer.rank_models] (τ with bootstrap intervals,
  top-k regret, score-vs-N curves, warnings; Markdown/JSON/CSV/plot) and ground-truth tables as data
  ([`GroundTruth`][etfcore.transfer.GroundTruth],
  [`load_ground_truth`][etfcore.transfer.load_ground_truth]).

Importing this module never imports torch.
"""

from .discriminant_scores import (
    EMMSResult,
    ETranComponents,
    PEDResult,
    SFDAResult,
    TransRateResult,
    emms,
    etran,
    etran_combine,
    normalise_scores,
    ped,
    ped_features,
    sfda,
    transrate,
)
from .features import extract_features, load_npy, map_labels, select_classes
from .ground_truth import GroundTruth, GroundTruthRow, load_ground_truth
from .model_report import MODEL_REPORT_SCORES, ModelReport, ScoreAgreement, rank_models
from .ncti import NCTIComponents, ncti, ncti_components
from .probe import (
    DEFAULT_GRID,
    ProbeResult,
    fit_logistic,
    linear_probe,
    select_strength,
    stratified_split,
)
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
from .sample_scores import (
    KNN_GRID,
    KNNResult,
    NLEEPResult,
    PACTranResult,
    PARCResult,
    gaussian_mixture_em,
    knn_accuracy,
    nleep,
    pactran_gauss,
    parc,
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
from .selection import SELECTION_HIGHER_IS_BETTER, selection_scores
from .source_head import leep, nce, source_joint
from .spectral_scores import (
    LiDARResult,
    RankMeResult,
    lidar,
    lidar_from_stats,
    rankme,
    rankme_from_stats,
)
from .stats_scores import as_collapse_stats, emms_from_stats, ped_from_stats
from .streaming import TransferabilityStats
from .two_pass import TWO_PASS_SCORES, TwoPassResult, TwoPassScores, two_pass_scores

__all__ = [
    "DEFAULT_GRID",
    "EMMSResult",
    "ETranComponents",
    "GroundTruth",
    "GroundTruthRow",
    "HIGHER_IS_BETTER",
    "KNNResult",
    "KNN_GRID",
    "LiDARResult",
    "LogMEResult",
    "MLOGReport",
    "MODEL_REPORT_SCORES",
    "ModelReport",
    "NCTIComponents",
    "NLEEPResult",
    "PACTranResult",
    "PARCResult",
    "PEDResult",
    "ProbeResult",
    "RankAgreement",
    "RankMeResult",
    "RankReport",
    "RidgePath",
    "SELECTION_HIGHER_IS_BETTER",
    "SFDAResult",
    "ScoreAgreement",
    "TransRateResult",
    "TransferabilityStats",
    "TWO_PASS_SCORES",
    "TwoPassResult",
    "TwoPassScores",
    "aggregate_agreement",
    "all_scores",
    "as_collapse_stats",
    "centred_means_classifier",
    "cm_accuracy",
    "emms",
    "emms_from_stats",
    "etran",
    "etran_combine",
    "extract_features",
    "fit_logistic",
    "gaussian_mixture_em",
    "gbc",
    "hscore",
    "hscore_from_stats",
    "knn_accuracy",
    "leep",
    "lidar",
    "lidar_from_stats",
    "load_npy",
    "linear_probe",
    "load_ground_truth",
    "logme",
    "logme_from_stats",
    "map_labels",
    "mean_log_odds",
    "mlog",
    "mlog_report",
    "ncti",
    "ncti_components",
    "nce",
    "nleep",
    "normalise_scores",
    "pactran_gauss",
    "parc",
    "pearson",
    "ped",
    "ped_features",
    "ped_from_stats",
    "probe_mse",
    "rank_agreement",
    "rank_models",
    "rank_report",
    "rankme",
    "rankme_from_stats",
    "regularized_hscore",
    "ridge_path",
    "score_direction",
    "select_classes",
    "selection_scores",
    "sfda",
    "source_joint",
    "spearman",
    "select_strength",
    "stratified_split",
    "transrate",
    "two_pass_scores",
    "vci",
    "weighted_kendall_tau",
]
