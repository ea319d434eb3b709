"""Feature extraction, class subsets / label maps, and the probe / rank command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

import etfcore as ec
from etfcore import transfer
from etfcore.cli import main

torch = pytest.importorskip("torch")


def test_extract_features_streams_to_stats_and_memmap(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(103, 6, generator=g)
    y = torch.arange(103) % 4
    ds = torch.utils.data.TensorDataset(x, y)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh()).train()
    st = ec.CollapseStats(4, 5)
    xs = transfer.TransferabilityStats(4, 5)

    class Both:
        def update(self, f, lab):
            st.update(f, lab)
            xs.update(f, lab)

    path = tmp_path / "feat.npy"
    r = transfer.extract_features(net, ds, batch_size=16, stats=Both(), out=path, device="cpu")
    assert net.training  # mode restored
    with torch.no_grad():
        ref = net(x).numpy()
    np.testing.assert_allclose(np.load(path), ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(r.labels, y.numpy())
    whole = ec.CollapseStats(4, 5).update(ref, y.numpy())
    assert st.num_samples == 103
    assert float(st.vci()) == pytest.approx(float(whole.vci()), rel=1e-6)
    # float32 batches of 16 vs one batch: the same float32-rounding level as the VCI check above
    # (hscore = r(1 - VCI) with 1 - VCI ≈ 0.04 magnifies VCI's relative error ~25×)
    assert xs.hscore() == pytest.approx(whole.hscore(), rel=3e-5)
    loader = torch.utils.data.DataLoader(ds, batch_size=50)
    r2 = transfer.extract_features(net, loader, keep=False, device="cpu")
    assert r2.features is None and r2.labels.size == 103


def test_extract_features_float64_and_short_loader(tmp_path):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64)
    y = torch.arange(40) % 2
    ds = torch.utils.data.TensorDataset(x, y)
    net = torch.nn.Linear(6, 3).double()
    r = transfer.extract_features(net, ds, batch_size=16, dtype=np.float64, device="cpu")
    with torch.no_grad():
        ref = net(x).numpy()
    np.testing.assert_allclose(r.features, ref, rtol=1e-14, atol=1e-14)  # no float32 round

    class Short(torch.utils.data.DataLoader):  # yields 32 of the 40 rows
        def __iter__(self):
            return iter(list(super().__iter__())[:2])

    with pytest.raises(ec.ShapeError, match="yielded 32 rows"):
        transfer.extract_features(net, Short(ds, batch_size=16), out=tmp_path / "f.npy",
                                  dtype=np.float64, device="cpu")


def test_select_classes_and_map_labels_arrays_and_datasets():
    f = np.arange(20.0).reshape(10, 2)
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    fs, ys = transfer.select_classes(f, y, [3, 1])
    np.testing.assert_array_equal(ys, [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(fs[:, 0], [2, 6, 10, 14, 18])
    np.testing.assert_array_equal(transfer.map_labels(y, [0, 0, 1, 1]), [0, 0, 1, 1] * 2 + [0, 0])
    ds = torch.utils.data.TensorDataset(torch.from_numpy(f), torch.from_numpy(y))
    sub = transfer.select_classes(ds, [2, 0])
    assert len(sub) == 5 and [int(sub[i][1]) for i in range(5)] == [1, 0, 1, 0, 1]
    coarse = transfer.map_labels(ds, {0: 0, 1: 0, 2: 1, 3: 1})
    assert [coarse[i][1] for i in range(4)] == [0, 0, 1, 1]
    with pytest.raises(ec.LabelError, match="no samples"):
        transfer.select_classes(f, y, [7])
    with pytest.raises(ec.LabelError, match="no entry"):
        transfer.map_labels(y, [0, 1])
    with pytest.raises(ec.ParameterError, match="repeats"):
        transfer.select_classes(f, y, [1, 1])


def _save(tmp_path, name, arr):
    p = tmp_path / name
    np.save(p, arr)
    return str(p)


def test_cli_probe_and_rank(tmp_path, capsys):
    x, y = ec.data.load_digits()
    x = (x / 16.0).astype(np.float32)
    ftr, ytr = _save(tmp_path, "ftr.npy", x[:1200]), _save(tmp_path, "ytr.npy", y[:1200])
    fte, yte = _save(tmp_path, "fte.npy", x[1200:]), _save(tmp_path, "yte.npy", y[1200:])
    png = str(tmp_path / "curve.png")
    assert main(["probe", "--train", ftr, ytr, "--test", fte, yte, "--json", "--plot", png]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["top1"] > 0.85 and len(out["validation_curve"]) == 97
    assert (tmp_path / "curve.png").exists()
    rng = np.random.default_rng(0)
    cands = []
    for i, noise in enumerate([0.1, 0.5, 2.0]):
        f = x + noise * rng.normal(size=x.shape).astype(np.float32)
        cands.append(_save(tmp_path, f"cand{i}.npy", f))
    tgt = _save(tmp_path, "y.npy", y)
    scatter = str(tmp_path / "scatter.png")
    rc = main(["rank", "--target", tgt, "--candidates", *cands, "--accuracies", "0.9", "0.8",
               "0.5", "--source-accuracies", "0.7", "0.71", "0.72", "--json", "--plot", scatter])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert set(rep["scores"]) >= {"hscore", "logme", "gbc", "ncti", "vci", "source_accuracy"}
    tau = {a["score"]: a["weighted_tau"] for a in rep["agreement"]}
    assert tau["hscore"] == pytest.approx(1.0) and tau["source_accuracy"] == pytest.approx(-1.0)
    assert (tmp_path / "scatter.png").exists()
    assert main(["rank", "--target", tgt, "--candidates", *cands[:2]]) == 0
    assert "logme" in capsys.readouterr().out


def test_cli_errors_exit_2(tmp_path, capsys):
    x, y = ec.data.load_digits()
    f = _save(tmp_path, "f.npy", x[:300].astype(np.float32))
    f3 = _save(tmp_path, "f3.npy", x[:300, :30].astype(np.float32))
    lab = _save(tmp_path, "y.npy", y[:300])
    probs = _save(tmp_path, "p.npy", np.full((290, 4), 0.25))
    cases = [
        ["probe", "--train", f, lab, "--test", f3, lab],
        ["probe", "--train", f, lab, "--test", str(tmp_path / "missing.npy"), lab],
        ["rank", "--target", lab, "--candidates", f],
        ["rank", "--target", lab, "--candidates", f, f, "--accuracies", "0.5"],
        ["rank", "--target", lab, "--candidates", f, f, "--plot", str(tmp_path / "p.png")],
        # source probabilities with 290 rows for 300 target labels
        ["rank", "--target", lab, "--candidates", f, f, "--source-probs", probs, probs],
        # an OSError (the plot's folder does not exist) is an error message, not a traceback
        ["probe", "--train", f, lab, "--test", f, lab, "--plot",
         str(tmp_path / "no" / "such" / "dir" / "c.png")],
    ]
    for argv in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("etfcore: error:") and "Traceback" not in err
