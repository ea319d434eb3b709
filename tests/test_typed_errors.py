"""Nothing raw: every user or environment failure of the transfer, training and CLI surfaces is a
typed etfcore error (a one-line `etfcore: error:` and exit 2 on the command line), never a
traceback, a silent NaN or a wrong value."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest

import etfcore as ec
from etfcore import transfer
from etfcore._validation import as_count, torch_device

torch = pytest.importorskip("torch")

RNG_SEED = 11
BAD_DEVICES = ["bogus", "cuda:99", "cpu:x"] + ([] if torch.cuda.is_available() else ["cuda"])


def _data(seed=RNG_SEED, n=60, p=4, k=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, p)), np.arange(n) % k


# ------------------------------------------------------------------------------------- devices
@pytest.mark.parametrize("device", BAD_DEVICES)
def test_one_device_check_for_every_surface(device):
    from etfcore.training import CollapseMetrics, TorchCollapseStats

    x, y = _data()
    ds = torch.utils.data.TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))
    calls = {
        "validator": lambda: torch_device(device),
        "linear_probe": lambda: transfer.linear_probe(x, y, x, y, seed=0, device=device,
                                                      grid=[1.0]),
        "fit_logistic": lambda: transfer.fit_logistic(x, y, 1.0, device=device),
        "extract_features": lambda: transfer.extract_features(torch.nn.Identity(), ds,
                                                              device=device),
        "TorchCollapseStats": lambda: TorchCollapseStats(3, 4, device=device),
        "CollapseMetrics.to": lambda: CollapseMetrics(3, 4).to(device),
        "CollapseMetrics.to(device=)": lambda: CollapseMetrics(3, 4).to(device=device),
    }
    for name, call in calls.items():
        with pytest.raises(ec.ParameterError, match="device") as info:
            call()
        assert repr(device) in str(info.value), name


def test_good_devices_pass_the_check():
    assert torch_device("cpu").type == "cpu"
    assert torch_device(" CPU ".lower()).type == "cpu"
    assert torch_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert torch_device(torch.device("cpu")).type == "cpu"
    from etfcore.training import CollapseMetrics

    m = CollapseMetrics(3, 4).to("cpu")
    assert m.scatter.device.type == "cpu"
    assert m.to(torch.float64) is m  # a dtype is not a device


def test_the_cli_checks_the_device_before_reading_data(tmp_path, capsys):
    from etfcore.cli import main

    x, y = _data()
    np.save(tmp_path / "f.npy", x.astype(np.float32))
    np.save(tmp_path / "y.npy", y)
    files = [str(tmp_path / "f.npy"), str(tmp_path / "y.npy")]
    for device in BAD_DEVICES:
        assert main(["probe", "--train", *files, "--test", *files, "--device", device]) == 2
        err = capsys.readouterr().err
        assert err.startswith("etfcore: error: ParameterError") and repr(device) in err


# ------------------------------------------------------------------------------ integer options
@pytest.mark.parametrize("value", [0, -1, 2.5, "3", True, None])
def test_counts_are_integers_of_at_least_one(value):
    with pytest.raises(ec.ParameterError, match="integer >= 1"):
        as_count(value, "chunk_rows")


@pytest.mark.parametrize("k, p", [(3, 0), (2.5, 4), (0, 4), (3, -2), ("3", 4)])
def test_collapse_metrics_refuses_bad_sizes(k, p):
    from etfcore.training import CollapseMetrics

    with pytest.raises(ec.ParameterError):
        CollapseMetrics(k, p)


@pytest.mark.parametrize("kw, match", [
    (dict(chunk_rows=0), "chunk_rows"), (dict(chunk_rows=-1), "chunk_rows"),
    (dict(seed=-1), "seed"), (dict(seed=1.5), "seed"), (dict(history_size=0), "history_size"),
    (dict(max_iter=0), "max_iter"),
])
def test_probe_integer_options(kw, match):
    x, y = _data()
    args = dict(seed=0, device="cpu", grid=[1.0])
    args.update(kw)
    with pytest.raises(ec.ParameterError, match=match):
        transfer.linear_probe(x, y, x, y, **args)


def test_stratified_split_seed_and_fraction_are_checked():
    from etfcore.splits import stratified_validation_mask

    y = np.repeat([0, 1], 10)
    for seed in (-1, 2.5, "0"):
        with pytest.raises(ec.ParameterError, match="seed"):
            stratified_validation_mask(y, 0.2, seed)
    for frac in (float("nan"), "0.2"):
        with pytest.raises(ec.ParameterError, match="val_fraction"):
            stratified_validation_mask(y, frac, 0)


# --------------------------------------------------------------------------------- NaN inputs
def test_probe_overflow_is_not_called_a_nan():
    x, y = _data()
    big = x.copy()
    big[3, 1] = 1e39  # finite in float64, beyond float32
    with pytest.raises(ec.NonFiniteError, match="overflows float32") as info:
        transfer.linear_probe(big, y, x, y, seed=0, device="cpu", grid=[1.0])
    assert "row 3, column 1" in str(info.value)
    # float64 holds it: no error
    r = transfer.linear_probe(big, y, x, y, seed=0, device="cpu", grid=[1.0], dtype="float64")
    assert math.isfinite(r.top1)
    nan = x.copy()
    nan[5, 2] = np.nan
    with pytest.raises(ec.NonFiniteError, match="NaN or Inf") as info:
        transfer.linear_probe(nan, y, x, y, seed=0, device="cpu", grid=[1.0])
    assert "row 5, column 2" in str(info.value)


def test_probe_refuses_an_empty_test_set():
    x, y = _data()
    with pytest.raises(ec.ParameterError, match="test_features has no rows"):
        transfer.linear_probe(x, y, x[:0], y[:0], seed=0, device="cpu", grid=[1.0])


def test_ridge_path_validation_features_and_lambda_must_be_finite():
    x, y = _data()
    st = ec.CollapseStats(3, 4).update(x, y)
    bad = x.copy()
    bad[7, 0] = np.nan
    with pytest.raises(ec.NonFiniteError, match="row 7, column 0"):
        transfer.ridge_path(st, val_features=bad, val_labels=y)
    path = transfer.ridge_path(st)
    for lam in (float("nan"), float("inf"), -1.0, "1", None):
        with pytest.raises(ec.ParameterError, match="λ"):
            path.weights(lam)
    w, b = path.weights(np.float32(0.5))
    assert np.isfinite(w).all() and np.isfinite(b).all()


def test_nce_and_ncti_refuse_nan():
    x, y = _data()
    probs = np.full((60, 5), 0.2)
    probs[0, 0] = np.nan
    with pytest.raises(ec.ParameterError, match="finite"):
        transfer.nce(probs, y)
    good = transfer.NCTIComponents(1.0, 0.5, 0.2, 0.0)
    for bad in (transfer.NCTIComponents(float("nan"), 0.5, 0.2, 0.0),
                transfer.NCTIComponents(1.0, "x", 0.2, 0.0)):
        with pytest.raises(ec.ParameterError, match="finite number"):
            transfer.ncti([good, bad])
    nanx = x.copy()
    nanx[1, 1] = np.nan
    with pytest.raises(ec.NonFiniteError):
        transfer.ncti_components(nanx, y)
    for pca in (0, -1, 2.5):
        with pytest.raises(ec.ParameterError, match="pca_dim"):
            transfer.ncti_components(x, y, pca_dim=pca)


@pytest.mark.parametrize("scores", [["a", "b", "c"], [1.0, None, 3.0], [True, False, True]])
def test_weighted_kendall_tau_refuses_non_numbers(scores):
    with pytest.raises(ec.ParameterError, match="scores must be numbers"):
        transfer.weighted_kendall_tau(scores, [0.1, 0.2, 0.3])
    assert transfer.weighted_kendall_tau([3, 1, 2], [0.3, 0.1, 0.2]) == pytest.approx(1.0)


# ------------------------------------------------------------------- TransferabilityStats copies
def test_transferability_stats_pickle_and_copy_by_value():
    x, y = _data()
    xs = transfer.TransferabilityStats(3, 4).update(x, y)
    for other in (pickle.loads(pickle.dumps(xs)), copy.deepcopy(xs), copy.copy(xs), xs.copy()):
        assert other == xs and other is not xs
        other.update(x, y)
        assert other.num_samples == 2 * xs.num_samples == 120
    assert xs.num_samples == 60
    assert pickle.loads(pickle.dumps(xs)).gbc() == xs.gbc()


# ------------------------------------------------------------------------------- empty batches
def _losses():
    from etfcore.nn import losses

    w = torch.from_numpy(ec.etf(4, 6, seed=0)).float()
    return [
        (losses.CrossEntropy(), 4),
        (losses.CrossEntropy(class_weights=torch.ones(4), label_smoothing=0.1), 4),
        (losses.MSELoss(), 4),
        (losses.GeneralisedLabelsLoss([5, 4, 3, 2], 0.1), 4),
        (losses.DotRegressionLoss(w), 6),
        (losses.HingeCrossEntropy(w), 6),
        (losses.WithinClassCosineRegulariser(), 6),
    ]


@pytest.mark.parametrize("i", range(7))
def test_losses_of_an_empty_batch_are_zero_with_zero_gradient(i):
    crit, width = _losses()[i]
    lin = torch.nn.Linear(3, width)
    out = lin(torch.zeros(0, 3))
    loss = crit(out, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert float(loss) == 0.0
    assert lin.weight.grad is not None and torch.equal(lin.weight.grad,
                                                      torch.zeros_like(lin.weight))
    # a non-empty batch still gives the loss its usual positive value
    g = torch.Generator().manual_seed(RNG_SEED)
    value = crit(torch.randn(5, width, generator=g), torch.arange(5) % 4)
    assert math.isfinite(float(value)) and float(value) != 0.0


# ------------------------------------------------------------------------------ command line
def test_cli_maps_damaged_inputs_to_messages_and_debug_shows_the_traceback(tmp_path, capsys):
    from etfcore.cli import main

    (tmp_path / "bin.toml").write_bytes(bytes(range(256)) * 2)
    assert main(["train", "--config", str(tmp_path / "bin.toml"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bin.toml" in err and "not text" in err and "Traceback" not in err
    x, y = _data()
    np.save(tmp_path / "f.npy", x.astype(np.float32))
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "t.npy").write_bytes((tmp_path / "f.npy").read_bytes()[:200])
    files = [str(tmp_path / "t.npy"), str(tmp_path / "y.npy")]
    assert main(["probe", "--train", *files, "--test", *files]) == 2
    err = capsys.readouterr().err
    assert err.startswith("etfcore: error: CorruptDataError") and "t.npy" in err
    with pytest.raises(ec.CorruptDataError):
        main(["--debug", "probe", "--train", *files, "--test", *files])
    assert main(["report", "--features", str(tmp_path / "missing.npy"), "--labels",
                 str(tmp_path / "y.npy")]) == 2
    assert "missing.npy" in capsys.readouterr().err


def test_cli_refuses_checkpoints_missing_keys_or_of_other_shapes(tmp_path, capsys):
    pytest.importorskip("lightning")
    from etfcore.cli import main
    from etfcore.training import TrainConfig, Trainer

    t = Trainer(TrainConfig(epochs=1, feature_dim=16, progress=False, accelerator="cpu"),
                out_dir=str(tmp_path / "o"))
    t.fit()
    good = f"{t.run_dir}/checkpoints/last.ckpt"
    ck = torch.load(good, weights_only=False)
    name = next(k for k in ck["state_dict"] if k.startswith("backbone."))
    wrong = dict(ck, state_dict={**ck["state_dict"], name: torch.zeros(3, 3)})
    torch.save(wrong, tmp_path / "shape.ckpt")
    torch.save({k: v for k, v in ck.items() if k != "etfcore_input_shape"},
               tmp_path / "noshape.ckpt")
    torch.save({k: v for k, v in ck.items() if k != "optimizer_states"}, tmp_path / "noopt.ckpt")
    torch.save(torch.zeros(3), tmp_path / "tensor.ckpt")
    cases = [
        (["extract", str(tmp_path / "shape.ckpt")], "ShapeError"),
        (["extract", str(tmp_path / "noshape.ckpt")], "etfcore_input_shape"),
        (["extract", str(tmp_path / "tensor.ckpt")], "not a checkpoint"),
        (["train", "--resume", str(tmp_path / "shape.ckpt")], "shapes differ"),
        (["train", "--resume", str(tmp_path / "noopt.ckpt")], "optimizer_states"),
    ]
    for args, expected in cases:
        code = main([*args, "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err
        assert code == 2 and expected in err and "Traceback" not in err, (args, err)


def test_collapse_metrics_blames_a_classifier_with_too_few_rows():
    H, y = ec.data.gaussian_mixture(4, 8, 20, seed=0)
    with pytest.raises(ec.ShapeError, match=r"classifier has 3 rows .* up to 3 \(4 classes\)"):
        ec.collapse_metrics(H, y, classifier=ec.etf(3, 8, seed=0))
    assert ec.collapse_metrics(H, y, classifier=ec.etf(4, 8, seed=0))["nc3"] >= 0
