"""The model-selection scores by name: which direction is better, and every per-model value of one
feature matrix in one call (for a ranking report). Zoo-level steps (ETran's combination) are not
here: they need every candidate's components ([`etran_combine`][etfcore.transfer.etran_combine])."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Optional

from .._validation import as_index
from ..errors import ParameterError
from .discriminant_scores import emms, etran, ped, sfda, transrate
from .sample_scores import knn_accuracy, nleep, pactran_gauss, parc
from .spectral_scores import lidar, rankme

__all__ = ["SELECTION_HIGHER_IS_BETTER", "selection_scores"]

#: Direction of every name `selection_scores` returns (all higher-is-better: PACTran's
#: bound is negated in its ``value``).
SELECTION_HIGHER_IS_BETTER: Dict[str, bool] = {
    name: True
    for name in (
        "knn_accuracy", "parc", "nleep", "pactran_gauss", "sfda", "etran_energy", "etran_lda",
        "etran_svd", "transrate", "emms", "ped_logme", "ped_gbc", "rankme", "lidar",
    )
}


def _runners(seed: int) -> Dict[str, Callable[[Any, Any], Dict[str, float]]]:
    def et(f, y):
        c = etran(f, y)
        return {"etran_energy": c.energy, "etran_lda": c.lda, "etran_svd": c.svd}

    return {
        "knn_accuracy": lambda f, y: {"knn_accuracy": knn_accuracy(f, y, seed=seed).accuracy},
        "parc": lambda f, y: {"parc": parc(f, y, seed=seed).value},
        "nleep": lambda f, y: {"nleep": nleep(f, y, seed=seed).value},
        "pactran_gauss": lambda f, y: {"pactran_gauss": pactran_gauss(f, y, seed=seed).value},
        "sfda": lambda f, y: {"sfda": sfda(f, y).value},
        "etran": et,
        "transrate": lambda f, y: {"transrate": transrate(f, y).value},
        "emms": lambda f, y: {"emms": emms(f, y).value},
        "ped_logme": lambda f, y: {"ped_logme": ped(f, y, score="logme").value},
        "ped_gbc": lambda f, y: {"ped_gbc": ped(f, y, score="gbc").value},
        "rankme": lambda f, y: {"rankme": rankme(f).value},
        "lidar": lambda f, y: {"lidar": lidar(f, y).value},
    }


def selection_scores(
    features: Any, labels: Any, *, names: Optional[Iterable[str]] = None, seed: int = 0
) -> Dict[str, float]:
    """Every model-selection score of one feature matrix with default conventions (``names``
    picks some: ``"etran"`` gives its three terms, ``"ped_logme"``/``"ped_gbc"`` the wrapper).
    ``seed`` seeds the sample-level scores. Higher is better for every value
    (`SELECTION_HIGHER_IS_BETTER`)."""
    runners = _runners(as_index(seed, "seed"))
    chosen = list(runners) if names is None else list(names)
    unknown = sorted(set(chosen) - set(runners))
    if unknown:
        raise ParameterError(f"unknown selection scores {unknown}; known: {sorted(runners)}")
    out: Dict[str, float] = {}
    for name in chosen:
        out.update(runners[name](features, labels))
    return out
