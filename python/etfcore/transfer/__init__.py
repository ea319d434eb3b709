"""Transfer evaluation and model selection (placeholder docstring, rewritten below)."""

from .probe import DEFAULT_GRID, ProbeResult, fit_logistic, linear_probe, stratified_split

__all__ = ["DEFAULT_GRID", "ProbeResult", "fit_logistic", "linear_probe", "stratified_split"]
