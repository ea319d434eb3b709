r"""Random-feature kernels and their large-dimensional equivalent (Tiomoko Ali et al., "fixed
random classifier", §3.1).

Samples are **rows** in every API (the random-matrix literature writes $X$ as $p \times n$).
Features should be scaled so that $\lVert x_i \rVert^2$ is of order one (e.g.
$x_i = (\mu_a + C_a^{1/2} z_i)/\sqrt p$).

- [`coefficients`][etfcore.rf.coefficients]: $(d_0, d_1, d_2)$ of an activation at variance
  $\tau$, with $F_k = \tau^{-k/2}\, \mathbb E[\sigma(\sqrt\tau\, \xi)\, \mathrm{He}_k(\xi)]$,
  $d_1 = F_1^2$, $d_2 = F_2^2/2$ (Tiomoko Ali et al.; ``convention="liao2018"`` gives
  $F_2^2/4$), $d_0 = \mathbb E\, \sigma^2(\sqrt\tau\, \xi) - F_0^2 - \tau F_1^2$.
- [`kernel`][etfcore.rf.kernel]: the empirical kernel
  $\frac1m\, \sigma(X W^\top)\, \sigma(X W^\top)^\top$.
- [`expected_kernel`][etfcore.rf.expected_kernel]:
  $\mathbb E_w[\sigma(w^\top x_i)\, \sigma(w^\top x_j)]$ for Gaussian $w$ (closed forms or the
  Hermite series).
- [`equivalent_kernel`][etfcore.rf.equivalent_kernel]: the deterministic equivalent $\tilde K$ with
  its $d_1$, $d_2$, $d_0$ parts.
- [`RandomFeatureRidge`][etfcore.rf.RandomFeatureRidge],
  [`ridge_test_mse_theory`][etfcore.rf.ridge_test_mse_theory],
  [`ridge_test_mse`][etfcore.rf.ridge_test_mse]: random-feature ridge regression and its
  deterministic test MSE.

Examples
--------
>>> import numpy as np
>>> from etfcore import rf
>>> d0, d1, d2 = rf.coefficients("relu", tau=1.0)
>>> round(d1, 6), round(d2, 6)
(0.25, 0.079577)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from ._io import save_with
from ._validation import (
    as_features,
    as_flat64,
    as_float,
    as_index,
    as_labels,
    as_str,
)
from .errors import NonFiniteError, ParameterError, ShapeError
from .stats import CollapseStats


@dataclasses.dataclass(frozen=True)
class Activation:
    """An activation σ by name with its parameters: ``polynomial (a0, a1, a2)``,
    ``leaky_relu (slope,)``, ``ternary (lower, upper)``; the others take none."""

    name: str
    params: Tuple[float, ...] = ()

    def __post_init__(self) -> None:
        # Validates the name and parameters in the core.
        _core.rf_coefficients(as_str(self.name, "activation"), list(self.params), 1.0)

    def __call__(self, t: Any) -> np.ndarray:
        a = np.asarray(t, dtype=np.float64)
        flat = np.ascontiguousarray(a.reshape(1, -1))
        return _core.rf_apply(self.name, list(self.params), flat).reshape(a.shape)

    @property
    def has_closed_form(self) -> bool:
        return _core.rf_has_closed_form(self.name, list(self.params))


ActivationLike = Union[str, Activation]


def activation(name: str, *params: float) -> Activation:
    return Activation(name, tuple(as_float(p, "activation parameter") for p in params))


def polynomial(a2: float, a1: float = 1.0, a0: float = 0.0) -> Activation:
    """``σ(t) = a2 t² + a1 t + a0`` (Tiomoko Ali et al. Fig. 2 use ``a2 t² + t``)."""
    return Activation("polynomial", (float(a0), float(a1), float(a2)))


def leaky_relu(slope: float) -> Activation:
    return Activation("leaky_relu", (float(slope),))


def ternary(lower: float, upper: float) -> Activation:
    """``1{t > upper} - 1{t < lower}``."""
    return Activation("ternary", (float(lower), float(upper)))


def _act(a: ActivationLike) -> Activation:
    if isinstance(a, Activation):
        return a
    if isinstance(a, str):
        return Activation(a)
    raise ParameterError(f"activation must be a name or rf.Activation, got {type(a).__name__}")


def coefficients(
    activation: ActivationLike,
    tau: float,
    *,
    convention: str = "tiomoko_ali",
    method: str = "auto",
) -> Tuple[float, float, float]:
    """``(d0, d1, d2)`` at variance ``tau``. ``method="quadrature"`` forces composite
    Gauss–Legendre quadrature against the Gaussian density (panels split at σ's kinks, exact to
    ~1e-12 for every activation); ``"auto"`` uses the closed form where one exists."""
    a = _act(activation)
    if method not in ("auto", "closed", "quadrature"):
        raise ParameterError(f"method must be 'auto', 'closed' or 'quadrature', got {method!r}")
    if method == "closed" and not a.has_closed_form:
        raise ParameterError(f"{a.name} has no closed form; use method='quadrature'")
    return _core.rf_coefficients(
        a.name,
        list(a.params),
        as_float(tau, "tau"),
        as_str(convention, "convention"),
        method != "quadrature",
    )


def moments(
    activation: ActivationLike, tau: float, *, method: str = "auto"
) -> Tuple[float, float, float, float]:
    """``(F_0, F_1, F_2, E σ²(√τ ξ))``."""
    a = _act(activation)
    return _core.rf_moments(a.name, list(a.params), as_float(tau, "tau"), method != "quadrature")


def projection(
    num_features: int, dim: int, *, kind: str = "gaussian", seed: int, density: float = 1 / 3
) -> np.ndarray:
    """The ``(num_features, dim)`` projection ``W`` of unit-variance entries used by
    [`kernel`][etfcore.rf.kernel] (``gaussian``, ``orthogonal`` rows × √p, simplex ``etf`` rows ×
    √p, ``sparse_ternary``).

    Examples
    --------
    >>> from etfcore import rf
    >>> rf.projection(3, 4, seed=0).shape
    (3, 4)
    """
    return _core.rf_projection(
        as_str(kind, "kind"),
        as_index(num_features, "num_features"),
        as_index(dim, "dim"),
        as_index(seed, "seed"),
        0,
        as_float(density, "density"),
    )


def features(
    X: Any,
    activation: ActivationLike,
    num_features: int,
    *,
    projection_kind: str = "gaussian",
    seed: int,
    density: float = 1 / 3,
) -> np.ndarray:
    """Random features ``σ(X Wᵀ)``, shape ``(n, num_features)`` (materialised; for kernels use
    [`kernel`][etfcore.rf.kernel], which never holds them)."""
    a = _act(activation)
    x = as_features(X, "X").astype(np.float64, copy=False)
    W = projection(num_features, x.shape[1], kind=projection_kind, seed=seed, density=density)
    return _core.rf_apply(a.name, list(a.params), np.ascontiguousarray(x @ W.T))


def kernel(
    X: Any,
    activation: ActivationLike,
    num_features: int,
    *,
    projection: str = "gaussian",
    seed: int,
    density: float = 1 / 3,
) -> np.ndarray:
    """Empirical kernel ``K_m = (1/m) σ(X Wᵀ) σ(X Wᵀ)ᵀ`` (``n × n``, dtype of ``X``).

    Computed in the core in blocks of 256 projection rows generated from ``seed`` (block ``b``
    depends only on ``(seed, b)``), multithreaded, GIL released; extra memory beside the output is
    ``O(256·(n + p))``. Sums are in the input precision, as numpy's would be.
    """
    a = _act(activation)
    return _core.rf_empirical_kernel(
        a.name,
        list(a.params),
        as_features(X, "X"),
        as_index(num_features, "num_features"),
        as_str(projection, "projection"),
        as_float(density, "density"),
        as_index(seed, "seed"),
    )


def expected_kernel(
    X: Any, activation: ActivationLike, Y: Any = None, *, method: str = "auto", order: int = 40
) -> np.ndarray:
    """Exact ``E_w[σ(wᵀx_i) σ(wᵀy_j)]``, ``w ~ N(0, I_p)``: closed forms (linear, polynomial,
    ReLU, leaky ReLU, |t|, sign, Heaviside, erf, sin, cos, exp) or, for the rest or with
    ``method="series"``, ``Σ_{k≤order} ρ^k/k! h_k(r_i) h_k(r_j)`` with
    ``h_k(r) = E[σ(√r ξ) He_k(ξ)]`` (and ``E σ²(‖x_i‖ξ)`` on the diagonal when ``Y`` is None),
    computed with normalised Hermite polynomials ``He_k/√k!`` (stable at any order up to
    2000)."""
    a = _act(activation)
    x = as_features(X, "X").astype(np.float64, copy=False)
    y = None if Y is None else as_features(Y, "Y").astype(np.float64, copy=False)
    if method not in ("auto", "series"):
        raise ParameterError(f"method must be 'auto' or 'series', got {method!r}")
    return _core.rf_expected_kernel(
        a.name, list(a.params), x, y, method == "series", as_index(order, "order")
    )


@dataclasses.dataclass
class EquivalentKernel:
    r"""$\tilde K = d_1 X X^\top + d_2\text{-part} + d_0 I$ and what it was built from.

    ``d1_part`` $= d_1 X X^\top$ (class means and noise Gram),
    ``d2_part`` $= \frac{d_2}{2} (\psi + J t/\sqrt p)(\psi + J t/\sqrt p)^\top + \frac{d_2}{p} J T
    J^\top$ (covariance information only), ``d0_part`` $= d_0 I$.
    """

    kernel: np.ndarray
    d1_part: np.ndarray
    d2_part: np.ndarray
    d0_part: np.ndarray
    coefficients: Tuple[float, float, float]
    tau: float
    t: np.ndarray
    T: np.ndarray
    psi: np.ndarray

    def covariance_share(self) -> float:
        """``‖P d2_part P‖_F / ‖P K̃ P‖_F``: how much of the (centred) kernel carries covariance
        information."""
        n = self.kernel.shape[0]
        P = np.eye(n) - 1.0 / n
        return float(np.linalg.norm(P @ self.d2_part @ P) / np.linalg.norm(P @ self.kernel @ P))


def _unbiased_cov_products(covs, counts):
    """``tr(C_a C_b)`` with an unbiased diagonal (Gaussian data): for ``a = b``,
    ``(n-1)²/((n-2)(n+1)) [tr S² - (tr S)²/(n-1)]`` with ``S`` the unbiased sample covariance."""
    K = len(covs)
    Q = np.empty((K, K))
    for a in range(K):
        for b in range(a, K):
            Q[a, b] = Q[b, a] = np.sum(covs[a] * covs[b])
        n = counts[a]
        if n > 3:
            S = covs[a]
            factor = (n - 1) ** 2 / ((n - 2) * (n + 1))
            Q[a, a] = factor * (np.sum(S * S) - np.trace(S) ** 2 / (n - 1))
    return Q


def _class_moments(
    x: np.ndarray,
    labels: np.ndarray,
    K: int,
    counts: np.ndarray,
    class_means: Optional[np.ndarray],
    class_covariances: Optional[Sequence[np.ndarray]],
) -> Tuple[np.ndarray, List[np.ndarray]]:
    """The class means and covariances [`equivalent_kernel`][etfcore.rf.equivalent_kernel] uses: the
    given population values, or estimates from the rows (unbiased covariances, ``1/(n_k - 1)``)."""
    p = x.shape[1]
    if class_means is None or class_covariances is None:
        stats = CollapseStats(K, p, track_class_scatter=True).update(x, labels)
        covs = [
            stats.class_covariance(k) * counts[k] / max(counts[k] - 1, 1)
            if counts[k]
            else np.zeros((p, p))
            for k in range(K)
        ]
        return stats.class_means(), covs
    means = np.asarray(class_means, dtype=np.float64) / 1.0
    covs = [np.asarray(C, dtype=np.float64) for C in class_covariances]
    if means.shape != (K, p) or len(covs) != K:
        raise ShapeError(f"class_means must be ({K}, {p}) and class_covariances {K} matrices")
    return means, covs


def equivalent_kernel(
    X: Any,
    y: Any,
    activation: ActivationLike,
    *,
    num_classes: Optional[int] = None,
    class_means: Optional[np.ndarray] = None,
    class_covariances: Optional[Sequence[np.ndarray]] = None,
    tau: Optional[float] = None,
    convention: str = "tiomoko_ali",
) -> EquivalentKernel:
    r"""Deterministic equivalent of the random-feature kernel:

    $$
    \tilde K = d_1 XX^\top + \tfrac{d_2}{2}(\psi + Jt/\sqrt p)(\psi + Jt/\sqrt p)^\top
    + \tfrac{d_2}{p} J T J^\top + d_0 I_n
    $$

    ``X`` ``(n, p)`` with rows ``x_i = (μ_a + C_a^{1/2} z_i)/√p``. By default every quantity is
    estimated from the data through the core's class statistics (``CollapseStats`` with per-class
    scatters): ``Σ_a`` the class covariance of the rows (``= C_a/p``), ``τ = tr C°/p``,
    ``t_a = √p (tr Σ_a - tr Σ°)``, ``T_ab = p·tr(Σ_a° Σ_b°)`` with an unbiased estimate of
    ``tr Σ_a²``, ``ω_i = x_i - x̄_{y_i}`` and ``ψ_i = ‖ω_i‖² - tr Σ_{y_i}``. Pass ``class_means``
    ``(K, p)`` and ``class_covariances`` (``K`` matrices, of the rows' distribution, i.e. ``C_a/p``)
    to use known population values instead.
    """
    a = _act(activation)
    x = as_features(X, "X").astype(np.float64, copy=False)
    labels = as_labels(y)
    if labels.shape[0] != x.shape[0]:
        raise ShapeError(f"X has {x.shape[0]} rows but y has {labels.shape[0]} entries")
    n, p = x.shape
    K = as_index(num_classes, "num_classes") if num_classes is not None else int(labels.max()) + 1
    counts = np.bincount(labels, minlength=K)
    present = np.flatnonzero(counts)
    if present.size < 1:
        raise ParameterError("equivalent_kernel needs at least one sample")
    c = counts / n
    means, covs = _class_moments(x, labels, K, counts, class_means, class_covariances)
    traces = np.array([np.trace(C) for C in covs])
    tr_circ = float(c @ traces)
    tau_hat = tr_circ if tau is None else float(tau)
    if class_covariances is None:
        Q = _unbiased_cov_products(covs, counts)
    else:
        Q = np.array([[np.sum(A * B) for B in covs] for A in covs])
    # tr(Σ_a° Σ_b°) with Σ° = Σ_c c_c Σ_c
    Qc = Q - (Q @ c)[:, None] - (Q @ c)[None, :] + c @ Q @ c
    T = p * Qc
    t = np.sqrt(p) * (traces - tr_circ)
    omega = x - means[labels]
    psi = np.einsum("ij,ij->i", omega, omega) - traces[labels]
    d0, d1, d2_user = coefficients(a, tau_hat, convention=convention)
    d2 = d2_user * (2.0 if convention == "liao2018" else 1.0)  # the formula's d2 convention
    v = psi + t[labels] / np.sqrt(p)
    d1_part = d1 * (x @ x.T)
    d2_part = (d2 / 2.0) * np.outer(v, v) + (d2 / p) * T[np.ix_(labels, labels)]
    d0_part = d0 * np.eye(n)
    return EquivalentKernel(
        d1_part + d2_part + d0_part,
        d1_part,
        d2_part,
        d0_part,
        (d0, d1, d2_user),
        tau_hat,
        t,
        T,
        psi,
    )


def centred_relative_error(K: np.ndarray, K_approx: np.ndarray) -> float:
    """``‖P(K - K̃)P‖₂ / ‖P K P‖₂`` with ``P = I - 11ᵀ/n`` (operator norms)."""
    n = K.shape[0]
    P = np.eye(n) - 1.0 / n
    return float(np.linalg.norm(P @ (K - K_approx) @ P, 2) / np.linalg.norm(P @ K @ P, 2))


class RandomFeatureRidge:
    r"""Random-feature ridge regression: $\beta = \Sigma\, (\Sigma^\top \Sigma / n + \gamma I)^{-1}
    y / n$ with $\Sigma = \sigma(W X^\top)$ ($N \times n$, Gaussian $W$ from ``seed``), predictions
    $\hat\Sigma^\top \beta$."""

    def __init__(
        self,
        activation: ActivationLike,
        num_features: int,
        gamma: float,
        *,
        seed: int,
        projection_kind: str = "gaussian",
    ):
        self.gamma = _check_gamma(gamma)
        self.activation = _act(activation)
        self.num_features = as_index(num_features, "num_features")
        self.seed = as_index(seed, "seed")
        self.projection_kind = projection_kind
        self.beta_: Optional[np.ndarray] = None

    def _features(self, X: np.ndarray) -> np.ndarray:
        return features(
            X,
            self.activation,
            self.num_features,
            projection_kind=self.projection_kind,
            seed=self.seed,
        ).T

    def fit(self, X: Any, y: Any) -> RandomFeatureRidge:
        x = as_features(X, "X").astype(np.float64, copy=False)
        t = _targets(y, x.shape[0], "y")
        S = self._features(x)
        n = x.shape[0]
        self.beta_ = S @ np.linalg.solve(S.T @ S / n + self.gamma * np.eye(n), t) / n
        return self

    def predict(self, X: Any) -> np.ndarray:
        if self.beta_ is None:
            raise ParameterError("call fit before predict")
        return self._features(as_features(X, "X").astype(np.float64, copy=False)).T @ self.beta_


def _check_gamma(gamma: Any) -> float:
    g = as_float(gamma, "gamma")
    if not (np.isfinite(g) and g > 0):
        raise ParameterError(f"gamma must be finite and > 0, got {g}")
    return g


def _targets(y: Any, n: int, name: str) -> np.ndarray:
    """Finite float64 regression targets, one per row of the features."""
    t = as_flat64(y, name)
    if t.shape[0] != n:
        raise ShapeError(f"the features have {n} rows but {name} has {t.shape[0]} entries")
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        raise NonFiniteError(f"{name} contains a non-finite value at index {bad[0]}")
    return t


def ridge_test_mse_theory(
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    activation: ActivationLike,
    num_features: int,
    gamma: float,
) -> float:
    """Deterministic equivalent of the test MSE of
    [`RandomFeatureRidge`][etfcore.rf.RandomFeatureRidge] through the exact uncentred expected
    kernel (Louart, Liao & Couillet's random-feature ridge regression)."""
    a = _act(activation)
    gamma = _check_gamma(gamma)
    X = as_features(X_train, "X_train").astype(np.float64, copy=False)
    Xh = as_features(X_test, "X_test").astype(np.float64, copy=False)
    y = _targets(y_train, X.shape[0], "y_train")
    yh = _targets(y_test, Xh.shape[0], "y_test")
    n, N = X.shape[0], as_index(num_features, "num_features")
    Kxx = expected_kernel(X, a)
    Khx = expected_kernel(Xh, a, X)
    # K(x̂, x̂) = E σ²(‖x̂‖ ξ): only the diagonal of the test kernel is needed.
    kh_diag = np.array(
        [moments(a, max(float(r), 1e-300))[3] for r in np.einsum("ij,ij->i", Xh, Xh)]
    )
    delta = 0.0
    I = np.eye(n)
    for _ in range(500):
        new = np.trace(Kxx @ np.linalg.inv(N / n * Kxx / (1 + delta) + gamma * I)) / n
        if abs(new - delta) < 1e-12 * max(1.0, abs(new)):
            delta = new
            break
        delta = new
    theta = N / (n * (1 + delta))
    Kb, Khb = theta * Kxx, theta * Khx
    Qb = np.linalg.inv(Kb + gamma * I)
    D = 1 - np.trace(Kb @ Qb @ Kb @ Qb) / N
    bias = np.sum((yh - Khb @ Qb @ y) ** 2) / Xh.shape[0]
    var = (y @ Qb @ Kb @ Qb @ y) / (N * D)
    spread = (theta * kh_diag.sum() - np.trace(Khb @ (Qb + gamma * Qb @ Qb) @ Khb.T)) / Xh.shape[0]
    return float(bias + var * spread)


def ridge_test_mse(
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    activation: ActivationLike,
    num_features: int,
    gamma: float,
    *,
    seeds: Sequence[int] = tuple(range(10)),
) -> Dict[str, float]:
    """Simulated test MSE over ``seeds`` (mean, std) beside
    [`ridge_test_mse_theory`][etfcore.rf.ridge_test_mse_theory]."""
    yh = np.asarray(y_test, dtype=np.float64)
    sims = []
    for s in seeds:
        model = RandomFeatureRidge(activation, num_features, gamma, seed=s).fit(X_train, y_train)
        sims.append(np.mean((model.predict(X_test) - yh) ** 2))
    return {
        "simulation_mean": float(np.mean(sims)),
        "simulation_std": float(np.std(sims)),
        "theory": ridge_test_mse_theory(
            X_train, y_train, X_test, y_test, activation, num_features, gamma
        ),
    }


def test_mse_curve(
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    a2_values: Sequence[float],
    *,
    num_features: int,
    gamma: float,
    seeds: Sequence[int] = tuple(range(5)),
) -> Dict[str, np.ndarray]:
    """Test MSE against ``a2`` for ``σ(t) = a2 t² + t`` (theory and simulation), the curve of
    Tiomoko Ali et al.'s Fig. 2."""
    rows = [
        ridge_test_mse(
            X_train, y_train, X_test, y_test, polynomial(a2), num_features, gamma, seeds=seeds
        )
        for a2 in a2_values
    ]
    return {
        "a2": np.asarray(a2_values, dtype=float),
        "theory": np.array([r["theory"] for r in rows]),
        "simulation_mean": np.array([r["simulation_mean"] for r in rows]),
        "simulation_std": np.array([r["simulation_std"] for r in rows]),
    }


test_mse_curve.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def plot_test_mse_curve(curve: Dict[str, np.ndarray], path: str, title: str = "") -> None:
    """Draws [`test_mse_curve`][etfcore.rf.test_mse_curve]'s output to ``path`` (needs matplotlib).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(curve["a2"], curve["theory"], "-", label="theory (deterministic equivalent)")
    ax.errorbar(
        curve["a2"],
        curve["simulation_mean"],
        yerr=curve["simulation_std"],
        fmt="o",
        ms=4,
        capsize=2,
        label="simulation",
    )
    ax.set_xlabel(r"$a_2$ in $\sigma(t) = a_2 t^2 + t$")
    ax.set_ylabel("test MSE")
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    save_with(path, lambda f: fig.savefig(f, dpi=120, format="png"))
    plt.close(fig)
