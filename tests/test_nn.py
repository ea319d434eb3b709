"""etfcore.nn: the papers' training knobs against independent references (numpy float64, brute
force, closed forms, the Rust core's statistics, parameter counts)."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import etfcore as ec  # noqa: E402
import etfcore.nn as enn  # noqa: E402

F = torch.nn.functional


def _log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


# ---------------------------------------------------------------- mixup
def test_mixup_returns_permuted_hard_labels_and_lambda():
    x = torch.randn(16, 5)
    y = torch.arange(16) % 4
    xm, yp, lam = enn.mixup(x, y, alpha=0.4, generator=torch.Generator().manual_seed(0))
    assert yp.dtype == torch.int64 and sorted(yp.tolist()) == sorted(y.tolist())
    assert 0.0 <= lam <= 1.0
    # xm = λ x + (1-λ) x[π] for the permutation π that gave y[π]: recover π row by row.
    rows = ((xm - lam * x) / (1 - lam)).numpy()
    perm = [int(np.argmin(((x.numpy() - r) ** 2).sum(1))) for r in rows]
    assert torch.equal(y[perm], yp)
    x0, y0, lam0 = enn.mixup(x, y, alpha=0.0)
    assert x0 is x and y0 is y and lam0 == 1.0
    with pytest.raises(ec.ParameterError):
        enn.mixup(x, y, alpha=-1.0)


def test_mixup_is_reproducible_from_its_generator():
    # Today's λ came from the global torch RNG whatever the generator: a seeded generator must
    # reproduce λ and the permutation even when the global RNG moves in between.
    x, y = torch.randn(8, 3), torch.arange(8)
    a = enn.mixup(x, y, 0.4, generator=torch.Generator().manual_seed(7))
    torch.rand(100)
    b = enn.mixup(x, y, 0.4, generator=torch.Generator().manual_seed(7))
    assert a[2] == b[2] and torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])


def test_mixup_lambda_follows_beta():
    g = torch.Generator().manual_seed(1)
    alpha = 0.4
    z, y = torch.zeros(2, 1), torch.arange(2)
    lams = np.array([enn.mixup(z, y, alpha, g)[2] for _ in range(3000)])
    # Beta(α, α): mean 1/2, variance 1/(4(2α+1)); 3000 draws → standard errors ≈ 0.007 / 0.003.
    assert abs(lams.mean() - 0.5) < 0.03
    assert abs(lams.var() - 1 / (4 * (2 * alpha + 1))) < 0.015


def _all_losses(W, counts):
    return [
        enn.CrossEntropy(),
        enn.CrossEntropy(class_weights=torch.tensor([1.0, 2.0, 0.5, 1.0]), label_smoothing=0.1),
        enn.CrossEntropy(temperature=0.3),
        enn.MSELoss(),
        enn.DotRegressionLoss(W),
        enn.HingeCrossEntropy(W),
        enn.GeneralisedLabelsLoss(counts),
    ]


@pytest.mark.filterwarnings("ignore:DotRegressionLoss")
def test_mixup_combination_works_for_every_loss():
    # λ L(out, y) + (1-λ) L(out, y[π]) for every loss: finite, differentiable; label smoothing and
    # class weights keep their own normalisation in each term (checked in numpy for CE).
    W = torch.from_numpy(ec.etf(4, 6, seed=0)).float()
    x, y = torch.randn(12, 6), torch.arange(12) % 4
    xm, yp, lam = enn.mixup(x, y, 0.5, generator=torch.Generator().manual_seed(3))
    for crit in _all_losses(W, [30, 20, 10, 5]):
        out = xm.clone().requires_grad_(True)
        if not crit.uses_features:
            out = (xm @ W.T).requires_grad_(True)
        loss = lam * crit(out, y) + (1 - lam) * crit(out, yp)
        (g,) = torch.autograd.grad(loss, out)
        assert torch.isfinite(loss) and torch.isfinite(g).all() and float(g.abs().sum()) > 0
    crit = _all_losses(W, [1, 1, 1, 1])[1]
    z = (xm @ W.T).double().numpy()
    a, eps = np.array([1.0, 2.0, 0.5, 1.0]), 0.1

    def ref(t):  # torch's convention: smoothed target weighted per class, normalised by Σ a_y
        q = (1 - eps) * np.eye(4)[t] + eps / 4
        return -((q * a[None, :]) * _log_softmax(z)).sum() / a[t].sum()

    want = lam * ref(y.numpy()) + (1 - lam) * ref(yp.numpy())
    zt = torch.from_numpy(z)
    got = lam * crit(zt, y) + (1 - lam) * crit(zt, yp)
    assert float(got) == pytest.approx(want, rel=1e-10)


# ---------------------------------------------------------------- labels
@pytest.mark.filterwarnings("ignore:DotRegressionLoss")
@pytest.mark.parametrize("bad", [-1, 4])
def test_every_loss_rejects_labels_outside_the_classes(bad):
    # DotRegressionLoss used to read w[-1] = w_{K-1} silently for label -1.
    W = torch.from_numpy(ec.etf(4, 6, seed=0)).float()
    y = torch.tensor([0, 1, bad])
    for crit in _all_losses(W, [3, 3, 3, 3]) + [enn.WithinClassCosineRegulariser()]:
        if isinstance(crit, enn.WithinClassCosineRegulariser) and bad == 4:
            continue  # the regulariser needs no class count: any non-negative label is a class
        out = torch.randn(3, 6) if crit.uses_features else torch.randn(3, 4)
        with pytest.raises(ec.LabelError, match=str(bad)):
            crit(out, y)
    with pytest.raises(ec.LabelError, match="integer"):
        enn.CrossEntropy()(torch.randn(3, 4), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ec.ShapeError):
        enn.DotRegressionLoss(W)(torch.randn(3, 6), torch.tensor([0, 1]))


def test_dot_regression_warns_once_on_unnormalised_features():
    W = torch.from_numpy(ec.etf(4, 6, seed=0)).float()
    y = torch.arange(4)
    crit = enn.DotRegressionLoss(W)
    with pytest.warns(RuntimeWarning, match="normalise"):
        crit(3 * torch.randn(4, 6), y)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        crit(3 * torch.randn(4, 6), y)  # once only
        enn.DotRegressionLoss(W)(F.normalize(torch.randn(4, 6), dim=1), y)


# ---------------------------------------------------------------- CE with temperature, MSE
def test_cross_entropy_temperature_against_numpy():
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((9, 5)), rng.integers(0, 5, 9)
    for tau in (0.1, 0.5, 1.0, 3.0):
        want = -_log_softmax(z / tau)[np.arange(9), y].mean()
        got = enn.CrossEntropy(temperature=tau)(torch.from_numpy(z), torch.from_numpy(y))
        assert float(got) == pytest.approx(want, rel=1e-12)
    with pytest.raises(ec.ParameterError):
        enn.CrossEntropy(temperature=0.0)


def test_mse_loss_scaling_matches_probe_mse_of_the_core():
    # A linear head fitted by least squares on frozen features reaches exactly probe_mse.
    H, y = ec.data.gaussian_mixture(4, 6, [30, 20, 15, 10], seed=0, dtype=np.float64)
    Y = np.eye(4)[y]
    A = np.hstack([H, np.ones((len(y), 1))])
    coef = np.linalg.lstsq(A, Y, rcond=None)[0]
    z = torch.from_numpy(A @ coef)
    got = float(enn.MSELoss()(z, torch.from_numpy(y)))
    stats = ec.CollapseStats(4, 6)
    stats.update(H, y)
    assert got == pytest.approx(float(stats.probe_mse()), rel=1e-9)
    zz = torch.randn(5, 3)
    yy = torch.tensor([0, 1, 2, 0, 1])
    want = torch.nn.MSELoss()(zz, F.one_hot(yy, 3).float()) * 3 / 2
    assert float(enn.MSELoss()(zz, yy)) == pytest.approx(float(want), rel=1e-6)


# ---------------------------------------------------------------- within-class cosine regulariser
def _pair_loop_cosines(H, y):
    """Per class: (sum of cos over all ordered pairs incl. self-pairs, n_c), by a double loop."""
    out = {}
    for c in sorted(set(y.tolist())):
        rows = [H[i] for i in range(len(y)) if y[i] == c]
        total = 0.0
        for a in rows:
            for b in rows:
                total += float(a @ b) / (math.sqrt(a @ a) * math.sqrt(b @ b))
        out[c] = (total, len(rows))
    return out


def test_within_class_cosine_regulariser_brute_force_and_core():
    # Xu & Liu: "the average within-class cosine similarity divided by the number of data points
    # of each class in the batch" (default), or the plain average ("mean").
    rng = np.random.default_rng(0)
    H = rng.standard_normal((23, 5))
    y = rng.integers(0, 4, 23)
    y[:4] = [0, 1, 2, 3]
    lam = 2.5
    pairs = _pair_loop_cosines(H, y)
    average = {c: s / n**2 for c, (s, n) in pairs.items()}
    literal = lam * np.mean([average[c] / n for c, (_, n) in pairs.items()])
    plain = lam * np.mean(list(average.values()))
    Ht, yt = torch.from_numpy(H), torch.from_numpy(y)
    reg = enn.WithinClassCosineRegulariser(weight=lam)
    assert reg.normalization == "per_class_count"
    assert float(reg(Ht, yt)) == pytest.approx(literal, rel=1e-12)
    mean_reg = enn.WithinClassCosineRegulariser(weight=lam, normalization="mean")
    assert float(mean_reg(Ht, yt)) == pytest.approx(plain, rel=1e-12)
    assert literal != pytest.approx(plain, rel=1e-3)
    stats = ec.CollapseStats(4, 5)
    stats.update(H, y)
    d_within = stats.cosine_metrics()["cosine_within"]
    assert plain / lam == pytest.approx(1 - d_within, rel=1e-9)
    # Classes absent from the batch do not count; only present ones are averaged.
    only2 = (torch.from_numpy(H[y == 2]), torch.from_numpy(y[y == 2]))
    assert float(reg(*only2)) == pytest.approx(lam * average[2] / pairs[2][1], rel=1e-12)
    assert float(mean_reg(*only2)) == pytest.approx(lam * average[2], rel=1e-12)
    with pytest.raises(ec.ParameterError, match="normalization"):
        enn.WithinClassCosineRegulariser(normalization="sum")


# ---------------------------------------------------------------- hinge CE
def test_hinge_tau_plus_defaults():
    assert enn.HINGE_TAU_PLUS == pytest.approx(
        {
            "cifar100-lt": 40 * math.pi / 180,
            "cifar10-lt": 60 * math.pi / 180,
            "imagenet-lt": 50 * math.pi / 180,
            "imagenet": 65 * math.pi / 180,
        }
    )


def test_hinge_logits_against_a_numpy_loop():
    # τ⁺ and τ⁻ are both per-class vectors indexed by the sample's TRUE class y_i (τ⁻ of the
    # true class sets the floor of every other class's logit).
    W = ec.etf(5, 7, seed=2, lengths=[1, 2, 1, 0.5, 1])
    rng = np.random.default_rng(1)
    u, y = rng.standard_normal((12, 7)), np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 2, 2])
    tp = [0.2, 0.0, 0.7, 0.4, 1.0]
    tm = [2.5, 1.2, 3.0, 0.9, 2.0]
    crit = enn.HingeCrossEntropy(torch.from_numpy(W), tau_plus=tp, tau_minus=tm)
    want = np.empty((12, 5))
    for i in range(12):
        for k in range(5):
            dot, s = W[k] @ u[i], np.linalg.norm(u[i]) * np.linalg.norm(W[k])
            if k == y[i]:
                want[i, k] = min(dot, s * math.cos(tp[y[i]]))
            else:
                want[i, k] = max(dot, s * math.cos(tm[y[i]]))
    got = crit.logits(torch.from_numpy(u), torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # the vector matters: some floors are active, and indexing τ⁻ by k instead would differ
    assert (want > np.einsum("kp,ip->ik", W, u) + 1e-9).any()
    wrong = crit.logits(torch.from_numpy(u), torch.from_numpy(np.roll(y, 1))).numpy()
    assert not np.allclose(wrong, want)


def _inside_cones(W, y, tau_plus, rng):
    """Features at a random angle < τ⁺_y from w_y (τ⁺ may be per class)."""
    Wn = W / np.linalg.norm(W, axis=1, keepdims=True)
    out = []
    for c in y:
        d = rng.standard_normal(W.shape[1])
        d -= (d @ Wn[c]) * Wn[c]
        d /= np.linalg.norm(d)
        a = rng.uniform(0, 0.95) * tau_plus[c]
        out.append(rng.uniform(0.5, 3) * (math.cos(a) * Wn[c] + math.sin(a) * d))
    return np.array(out)


@pytest.mark.parametrize("K,p", [(4, 6), (10, 9), (10, 32)])
def test_hinge_theorem1_zero_gradient_needs_tau_minus_theta_minus_tau_plus(K, p):
    W = ec.etf(K, p, seed=K)
    theta = math.acos(-1 / (K - 1))
    rng = np.random.default_rng(K)
    y = np.arange(3 * K) % K
    tp = rng.uniform(0.1, 0.6, K)
    Wt = torch.from_numpy(W)
    crit = enn.HingeCrossEntropy.theorem1(Wt, tau_plus=tp.tolist())
    assert enn.HingeCrossEntropy.frame_angle(Wt) == pytest.approx(theta, abs=1e-9)
    np.testing.assert_allclose(crit.tau_minus, theta - tp, atol=1e-9)
    u = torch.from_numpy(_inside_cones(W, y, tp, rng)).requires_grad_(True)
    (g,) = torch.autograd.grad(crit(u, torch.from_numpy(y)), u)
    assert float(g.abs().max()) == 0.0
    # The practical τ⁻ = π: the other classes' logits keep ⟨w_k, u⟩, so the gradient is not zero.
    practical = enn.HingeCrossEntropy(Wt, tau_plus=tp.tolist(), tau_minus=math.pi)
    (g,) = torch.autograd.grad(practical(u, torch.from_numpy(y)), u)
    assert float(g.abs().max()) > 1e-3
    # Outside the cones the theorem-1 loss still trains.
    out = torch.randn(3 * K, p, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(crit(out, torch.from_numpy(y)), out)
    assert float(g.abs().max()) > 0
    with pytest.raises(ec.ParameterError):
        enn.HingeCrossEntropy.theorem1(Wt, tau_plus=theta + 0.1)


# ---------------------------------------------------------------- heads
def test_class_count_lengths_and_the_head_uses_them():
    # Yang et al.'s E_W lengths ‖w_k‖ = √((N/K)/n_k), checked by its defining properties in a
    # plain loop: n_k ‖w_k‖² is the same for every class and equals the mean class count N/K.
    counts = [500, 158, 50, 16, 5]
    L = enn.class_count_lengths(np.array(counts))
    mean_count = sum(counts) / len(counts)  # 145.8
    for n, length in zip(counts, L):
        assert n * length**2 == pytest.approx(mean_count, rel=1e-14)
    assert L[0] < 1 < L[-1]  # head classes shorter, tail classes longer
    # hand-computed: counts (1, 3) → N/K = 2 → (√2, √(2/3)); balanced counts → all 1
    np.testing.assert_allclose(enn.class_count_lengths([1, 3]), [2**0.5, (2 / 3) ** 0.5])
    np.testing.assert_allclose(enn.class_count_lengths([7, 7, 7]), 1.0)
    np.testing.assert_allclose(enn.class_count_lengths([10, 30]), enn.class_count_lengths([1, 3]))
    head = enn.FixedETFHead(5, 8, seed=0, lengths=L)
    np.testing.assert_allclose(head.weight.norm(dim=1).numpy(), L, rtol=1e-6)
    Wn = head.weight.double() / head.weight.double().norm(dim=1, keepdim=True)
    np.testing.assert_allclose((Wn @ Wn.T).numpy(), np.eye(5) * 1.25 - 0.25, atol=1e-6)
    for bad in ([1, 0], [5], [[1, 2]]):
        with pytest.raises(ec.ParameterError):
            enn.class_count_lengths(bad)


def test_bn_then_l2_feature_head_matches_numpy():
    head = enn.FixedETFHead(4, 6, seed=0, batch_norm=True, normalize=True).double()
    with torch.no_grad():
        head.bn.weight.copy_(torch.linspace(0.5, 2, 6, dtype=torch.float64))
        head.bn.bias.copy_(torch.linspace(-1, 1, 6, dtype=torch.float64))
    h = np.random.default_rng(0).standard_normal((10, 6)) * 3 + 1
    bn = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5) * np.linspace(0.5, 2, 6) + np.linspace(-1, 1, 6)
    want = bn / np.linalg.norm(bn, axis=1, keepdims=True)
    got = head.features(torch.from_numpy(h)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10)
    logits = head(torch.from_numpy(h)).detach().numpy()
    np.testing.assert_allclose(logits, want @ head.weight.numpy().T)


# ---------------------------------------------------------------- backbones
def _cifar_resnet_params(n, classes=None):
    # conv3×3 weights (no bias) + BatchNorm (γ, β) per layer; option-A shortcuts have none.
    total = 3 * 16 * 9 + 2 * 16
    c = 16
    for w in (16, 32, 64):
        for _ in range(n):
            total += c * w * 9 + w * w * 9 + 4 * w
            c = w
    return total + (0 if classes is None else 64 * classes + classes)


def test_resnet32_parameter_count_and_features():
    net = enn.resnet32()
    count = sum(p.numel() for p in net.parameters())
    assert count == _cifar_resnet_params(5) == 463_504
    with_fc = sum(p.numel() for p in enn.resnet32(feature_dim=10).parameters())
    assert with_fc == _cifar_resnet_params(5, 10)
    assert round(with_fc / 1e6, 2) == 0.46  # He et al. (2016), Table 6
    r20 = sum(p.numel() for p in enn.CifarResNet(20, feature_dim=10).parameters())
    assert r20 == _cifar_resnet_params(3, 10) and round(r20 / 1e6, 2) == 0.27
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 64) and net.feature_dim == 64
    n_conv = sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    assert n_conv == 31  # 31 convolutions + the classifier = 32 weighted layers
    with pytest.raises(ec.ParameterError):
        enn.CifarResNet(30)


def test_resnet_with_switchable_whitening_in_the_early_layers():
    pytest.importorskip("torchvision")
    net = enn.resnet("resnet18", norm="sw", feature_dim=16)
    sw = enn.SwitchableWhitening
    assert isinstance(net.bn1, sw)
    assert all(isinstance(m, sw) for b in net.layer1 for m in (b.bn1, b.bn2))
    assert not any(isinstance(m, sw) for m in net.layer2.modules())
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert n_bn == 20 - 5  # resnet18 has 20 BatchNorm2d: stem + 4 in layer1 became SW
    out = net(torch.randn(2, 3, 8, 8))
    out.sum().backward()
    assert out.shape == (2, 16) and net.bn1.mean_logits.grad is not None
    full = enn.resnet("resnet18", norm="sw", sw_stages=range(5))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in full.modules())
    with pytest.raises(ec.ParameterError):
        enn.resnet("resnet18", norm="gn")


def test_lengths_in_training_only_predict_with_the_unit_frame():
    counts = [400, 100, 25, 5]
    lengths = enn.class_count_lengths(counts)
    head = enn.FixedETFHead(4, 8, seed=3, lengths=lengths, lengths_in_training_only=True)
    plain = enn.FixedETFHead(4, 8, seed=3, lengths=lengths)
    u = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    w = plain.weight.double()
    head.train()
    torch.testing.assert_close(head(u).double(), u.double() @ w.T, rtol=1e-5, atol=1e-5)
    head.eval()
    unit = w / w.norm(dim=1, keepdim=True)
    torch.testing.assert_close(head(u).double(), u.double() @ unit.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(unit.norm(dim=1).numpy(), 1.0, rtol=1e-6)
    # the rare class's long vector wins in training mode on an input equidistant in angle
    assert (plain.eval()(u).argmax(1) != head(u).argmax(1)).any()
    # restored exactly from a state dict
    again = enn.FixedETFHead(4, 8, seed=3, lengths=lengths, lengths_in_training_only=True)
    again.load_state_dict(head.state_dict())
    torch.testing.assert_close(again.eval()(u), head(u))


def test_class_counts_train_config_builds_that_head():
    from etfcore.training.build import build_head
    from etfcore.training.config import TrainConfig

    cfg = TrainConfig(head="etf", etf_lengths="class_counts_train", feature_dim=8)
    head = build_head(cfg, 4, np.array([400, 100, 25, 5]))
    assert head.lengths_in_training_only
    np.testing.assert_allclose(
        head.weight.norm(dim=1).numpy(), enn.class_count_lengths([400, 100, 25, 5]), rtol=1e-5
    )
