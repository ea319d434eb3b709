"""Random-feature kernels (issue 3) against closed forms, Monte Carlo and plain numpy."""

import numpy as np
import pytest

import etfcore as ec
from etfcore import rf

ACTS = [
    rf.activation("linear"),
    rf.polynomial(1.2, -0.7, 0.3),
    rf.activation("relu"),
    rf.leaky_relu(0.2),
    rf.activation("abs"),
    rf.activation("sign"),
    rf.activation("heaviside"),
    rf.activation("sin"),
    rf.activation("cos"),
    rf.activation("erf"),
    rf.activation("exp"),
    rf.ternary(-0.4, 0.7),
]


@pytest.mark.parametrize("act", ACTS, ids=lambda a: a.name)
def test_closed_form_equals_quadrature(act):
    for tau in (0.05, 0.4, 1.0, 2.2, 5.0):
        cf = rf.coefficients(act, tau)
        q = rf.coefficients(act, tau, method="quadrature")
        np.testing.assert_allclose(cf, q, rtol=1e-8, atol=1e-10)


def test_table_values_and_conventions():
    tau = 1.3
    pi = np.pi
    checks = {
        "relu": (tau * (0.25 - 1 / (2 * pi)), 0.25, 1 / (4 * pi * tau)),
        "abs": (tau * (1 - 2 / pi), 0.0, 1 / (pi * tau)),
        "sign": (1 - 2 / pi, 2 / (pi * tau), 0.0),
        "sin": ((1 - np.exp(-2 * tau)) / 2 - tau * np.exp(-tau), np.exp(-tau), 0.0),
        "cos": ((1 + np.exp(-2 * tau)) / 2 - np.exp(-tau), 0.0, np.exp(-tau) / 2),
        "exp": (np.exp(2 * tau) - (1 + tau) * np.exp(tau), np.exp(tau), np.exp(tau) / 2),
    }
    q = 2 * tau / (2 * tau + 1)
    checks["erf"] = (2 / pi * (np.arcsin(q) - q), 4 / (pi * (2 * tau + 1)), 0.0)
    for name, want in checks.items():
        np.testing.assert_allclose(
            rf.coefficients(name, tau), want, rtol=1e-12, atol=1e-14, err_msg=name
        )
    a = 0.3
    np.testing.assert_allclose(
        rf.coefficients(rf.leaky_relu(a), tau),
        (tau * (1 - a) ** 2 * (pi - 2) / (4 * pi), (1 + a) ** 2 / 4, (1 - a) ** 2 / (4 * pi * tau)),
        rtol=1e-12,
    )
    d0, d1, d2 = rf.coefficients(rf.polynomial(2.0, 0.5), tau)
    assert (d0, d1, d2) == pytest.approx((2 * tau**2 * 4, 0.25, 8.0))
    assert rf.coefficients(rf.polynomial(2.0, 0.5), tau, convention="liao2018")[2] == pytest.approx(
        4.0
    )
    # tanh: quadrature only, odd so F_0 = F_2 = 0
    d0, d1, d2 = rf.coefficients("tanh", tau)
    assert d2 == pytest.approx(0, abs=1e-14) and 0 < d1 < 1


def _mc_kernel(act, X, m=400_000, seed=0):
    W = np.random.default_rng(seed).standard_normal((m, X.shape[1]))
    S = act(X @ W.T)
    return S @ S.T / m


@pytest.mark.parametrize("act", ACTS + [rf.activation("tanh")], ids=lambda a: a.name)
def test_expected_kernel_matches_monte_carlo(act):
    X = np.random.default_rng(1).normal(size=(4, 3)) * 0.6
    K = rf.expected_kernel(X, act)
    Kmc = _mc_kernel(act, X)
    scale = np.abs(K).max()
    assert np.abs(K - Kmc).max() < 0.02 * scale + 1e-3


@pytest.mark.parametrize(
    "act", [a for a in ACTS if a.name not in ("sign", "heaviside", "abs")], ids=lambda a: a.name
)
def test_closed_kernel_equals_hermite_series(act):
    X = np.random.default_rng(2).normal(size=(6, 5)) * 0.4
    np.testing.assert_allclose(
        rf.expected_kernel(X, act),
        rf.expected_kernel(X, act, method="series"),
        rtol=1e-7,
        atol=1e-9,
    )


def test_empirical_kernel_equals_numpy_with_same_projection():
    X = np.random.default_rng(3).normal(size=(300, 40)) / np.sqrt(40)
    for act in (rf.activation("relu"), rf.activation("tanh"), rf.polynomial(0.5)):
        for proj in ("gaussian", "orthogonal", "etf", "sparse_ternary"):
            m = 600  # not a multiple of the 256-row block
            W = rf.projection(m, 40, kind=proj, seed=7)
            S = act(X @ W.T)
            want = S @ S.T / m
            got = rf.kernel(X, act, m, projection=proj, seed=7)
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    got32 = rf.kernel(X.astype(np.float32), "relu", 512, seed=1)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, rf.kernel(X, "relu", 512, seed=1), rtol=1e-4, atol=1e-5)


def test_projections():
    p = 64
    for kind in ("gaussian", "orthogonal", "etf", "sparse_ternary"):
        W = rf.projection(2000, p, kind=kind, seed=3)
        assert abs(np.mean(W**2) - 1) < 0.05, kind
        np.testing.assert_array_equal(W, rf.projection(2000, p, kind=kind, seed=3))
    O = rf.projection(p, p, kind="orthogonal", seed=0)
    np.testing.assert_allclose(O @ O.T / p, np.eye(p), atol=1e-12)
    E = rf.projection(p + 1, p, kind="etf", seed=0) / np.sqrt(p)
    np.testing.assert_allclose(E @ E.T, (p + 1) / p * (np.eye(p + 1) - 1 / (p + 1)), atol=1e-12)
    T = rf.projection(3000, p, kind="sparse_ternary", seed=0, density=0.1)
    assert abs(np.mean(T != 0) - 0.1) < 0.01


def test_monte_carlo_kernel_converges_to_expected():
    X = np.random.default_rng(4).normal(size=(50, 30)) / np.sqrt(30)
    K = rf.expected_kernel(X, "relu")
    errs = [
        np.linalg.norm(rf.kernel(X, "relu", m, seed=0) - K, 2) / np.linalg.norm(K, 2)
        for m in (256, 4096, 65536)
    ]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.02


def _gmm(p, seed=0):
    """3 equal classes, n ≈ 2p, μ_a = 2.5 e_a, C ∈ {I, (1+6/√p) I, diag(1 ± 0.9)};
    x = (μ + C^{1/2}z)/√p."""
    rng = np.random.default_rng(seed)
    n_a = (2 * p) // 3
    diag3 = np.where(np.arange(p) % 2 == 0, 1.9, 0.1)
    scales = [np.ones(p), np.full(p, 1 + 6 / np.sqrt(p)), diag3]
    X, y = [], []
    for a in range(3):
        mu = np.zeros(p)
        mu[a] = 2.5
        X.append((mu + np.sqrt(scales[a]) * rng.standard_normal((n_a, p))) / np.sqrt(p))
        y.append(np.full(n_a, a))
    means = np.array([np.eye(p)[a] * 2.5 / np.sqrt(p) for a in range(3)])
    covs = [np.diag(s) / p for s in scales]
    return np.vstack(X), np.concatenate(y), means, covs


def test_linear_is_exact():
    X, y, _, _ = _gmm(64)
    eq = rf.equivalent_kernel(X, y, "linear")
    np.testing.assert_allclose(eq.kernel, X @ X.T, atol=1e-12)
    np.testing.assert_allclose(rf.expected_kernel(X, "linear"), X @ X.T, atol=1e-12)
    assert eq.covariance_share() == 0.0


@pytest.mark.parametrize("p", [256, 512])
def test_equivalent_kernel_accuracy_relu(p):
    errs = {}
    for which in ("oracle", "estimated"):
        X, y, means, covs = _gmm(p)
        K = rf.expected_kernel(X, "relu")
        kw = dict(class_means=means, class_covariances=covs) if which == "oracle" else {}
        eq = rf.equivalent_kernel(X, y, "relu", **kw)
        errs[which] = rf.centred_relative_error(K, eq.kernel)
        assert errs[which] < 2.5 / np.sqrt(p), (which, errs[which])
        # without the d2 part the error is far larger
        assert rf.centred_relative_error(K, eq.kernel - eq.d2_part) > 3 * errs[which]
    assert errs["oracle"] < 0.06


def test_equivalent_kernel_error_decreases_with_p():
    errs = []
    for p in (256, 512):
        X, y, _, _ = _gmm(p, seed=1)
        errs.append(
            rf.centred_relative_error(
                rf.expected_kernel(X, "relu"), rf.equivalent_kernel(X, y, "relu").kernel
            )
        )
    assert errs[1] < errs[0]


@pytest.mark.slow
def test_equivalent_kernel_p1024():
    X, y, _, _ = _gmm(1024)
    err = rf.centred_relative_error(
        rf.expected_kernel(X, "relu"), rf.equivalent_kernel(X, y, "relu").kernel
    )
    assert err < 2.5 / 32


def test_odd_activation_needs_no_centring():
    X, y, means, covs = _gmm(256)
    for name in ("tanh", "erf"):
        K = rf.expected_kernel(X, name)
        eq = rf.equivalent_kernel(X, y, name, class_means=means, class_covariances=covs)
        assert np.linalg.norm(K - eq.kernel, 2) / np.linalg.norm(K, 2) < 2.5 / 16


def test_ridge_theory_matches_simulation():
    """σ = a2 t² + t, 2-class GMM (RANDOM_FEATURES.md, Fig. 2 setting at p = 128)."""
    p, n = 128, 256
    rng = np.random.default_rng(5)
    mu = rng.standard_normal(p)
    mu *= 0.6 / np.linalg.norm(mu)

    def sample(k):
        yy = np.where(np.arange(k) % 2 == 0, 1.0, -1.0)
        return yy[:, None] * mu + rng.standard_normal((k, p)) / np.sqrt(p), yy

    Xtr, ytr = sample(n)
    Xte, yte = sample(n)
    r0 = rf.ridge_test_mse(Xtr, ytr, Xte, yte, rf.polynomial(0.0), n, 0.1, seeds=range(12))
    # Linear σ: the deterministic equivalent is sharp.
    assert abs(r0["theory"] - r0["simulation_mean"]) < 3 * r0["simulation_std"], r0
    r1 = rf.ridge_test_mse(Xtr, ytr, Xte, yte, rf.polynomial(1.0), n, 0.1, seeds=range(12))
    # Quadratic σ (not Lipschitz): within the simulation's spread (3 std) at this size.
    assert abs(r1["theory"] - r1["simulation_mean"]) < 3 * r1["simulation_std"], r1
    assert r1["theory"] > 2 * r0["theory"]  # the quadratic term hurts, as in paper 000 Fig. 2


def test_rf_errors():
    with pytest.raises(ec.ParameterError, match="unknown activation"):
        rf.coefficients("swish", 1.0)
    with pytest.raises(ec.ParameterError, match="takes 3 parameter"):
        rf.coefficients("polynomial", 1.0)
    with pytest.raises(ec.ParameterError, match="takes 1"):
        rf.activation("leaky_relu")
    with pytest.raises(ec.ParameterError, match="lower <= upper"):
        rf.ternary(1.0, -1.0)
    with pytest.raises(ec.ParameterError, match="tau"):
        rf.coefficients("relu", 0.0)
    with pytest.raises(ec.ParameterError, match="no closed form"):
        rf.coefficients("tanh", 1.0, method="closed")
    X = np.ones((3, 2))
    with pytest.raises(ec.ParameterError, match="num_features"):
        rf.kernel(X, "relu", 0, seed=0)
    with pytest.raises(ec.ParameterError, match="projection"):
        rf.kernel(X, "relu", 8, projection="hadamard", seed=0)
    with pytest.raises(ec.ParameterError, match="density"):
        rf.kernel(X, "relu", 8, projection="sparse_ternary", density=0.0, seed=0)
    bad = X.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ec.NonFiniteError):
        rf.kernel(bad, "relu", 8, seed=0)
    with pytest.raises(ec.ShapeError):
        rf.expected_kernel(X, "relu", np.ones((2, 3)))
    with pytest.raises(ec.ParameterError):
        rf.RandomFeatureRidge("relu", 8, gamma=0.0, seed=0)


def test_non_gaussian_projection_shift_depends_on_axis_alignment():
    """Sparse ternary W (E w⁴ = 1/density) matches the Gaussian-W kernel on dense (rotated) data,
    but not on data whose variance is concentrated on few coordinates, where the (E w⁴ - 3)
    fourth-cumulant terms of RANDOM_FEATURES.md do not average out."""
    rng = np.random.default_rng(0)
    p, n, m = 64, 40, 65536
    act = rf.activation("relu")
    sparse_rows = np.zeros((n, p))
    sparse_rows[np.arange(n), rng.integers(0, p, n)] = 1.0  # axis-aligned: x_i = e_{j(i)}
    sparse_rows[:, 0] += 0.3
    Q = np.linalg.qr(rng.normal(size=(p, p)))[0]
    dense_rows = sparse_rows @ Q.T  # the same Gram matrix, rotated away from the axes
    errs = {}
    for name, X in (("dense", dense_rows), ("axis", sparse_rows)):
        K = rf.expected_kernel(X, act)
        Kt = rf.kernel(X, act, m, projection="sparse_ternary", density=0.1, seed=1)
        Kg = rf.kernel(X, act, m, projection="gaussian", seed=1)
        errs[name] = (
            np.abs(Kt - K).max() / np.abs(K).max(),
            np.abs(Kg - K).max() / np.abs(K).max(),
        )
    assert errs["dense"][0] < 0.03 and errs["axis"][1] < 0.03  # ternary on dense, Gaussian anywhere
    assert errs["axis"][0] > 5 * errs["dense"][0]  # ternary on axis-aligned data: shifted
