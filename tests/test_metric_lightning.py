"""CollapseMetrics as torchmetrics users call it, inside a real LightningModule: forward in
``validation_step`` on class-sorted batches (one class per batch), ``log_dict(compute())`` at the
epoch end, on one process and on two (Lightning's DDP on the CPU, gloo)."""

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")

import etfcore as ec  # noqa: E402
from etfcore.training import CollapseMetrics  # noqa: E402

MODULE = r'''
import json, sys, warnings
import numpy as np, torch, lightning as L
import etfcore as ec
from etfcore.training import CollapseMetrics

K, P, N = 3, 5, 60


def data():
    H, y = ec.data.gaussian_mixture(K, P, N // K, seed=4)
    order = np.argsort(y, kind="stable")  # class-sorted, as an unshuffled ImageFolder gives
    return torch.from_numpy(H[order]).float(), torch.from_numpy(y[order])


class Net(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(P, P, bias=False)
        torch.nn.init.eye_(self.lin.weight)
        self.val_nc = CollapseMetrics(K, P)
        self.batch_values = []

    def training_step(self, batch, _):
        return self.lin(batch[0]).sum() * 0.0

    def validation_step(self, batch, _):
        h, y = batch
        out = self.val_nc(self.lin(h), y)  # torchmetrics' forward: accumulate + batch value
        self.batch_values.append(sorted(out))

    def on_validation_epoch_end(self):
        self.log_dict(self.val_nc.compute())
        self.val_nc.reset()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def run(devices, out):
    H, y = data()
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(H, y), batch_size=10)
    net = Net()
    trainer = L.Trainer(accelerator="cpu", devices=devices, max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        strategy="ddp" if devices > 1 else "auto", use_distributed_sampler=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.validate(net, dl, verbose=False)
    if trainer.global_rank == 0:
        logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
        json.dump({"logged": logged, "batches": net.batch_values,
                   "warnings": [str(w.message) for w in caught]}, open(out, "w"))


if __name__ == "__main__":
    run(int(sys.argv[1]), sys.argv[2])
'''


def _reference():
    H, y = ec.data.gaussian_mixture(3, 5, 20, seed=4)
    return ec.CollapseStats(3, 5).update(H.astype(np.float32), y)


def _run(tmp_path, devices):
    script = tmp_path / "net.py"
    script.write_text(MODULE)
    out = tmp_path / "out.json"
    r = subprocess.run([sys.executable, str(script), str(devices), str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("devices", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_log_dict_of_compute_in_a_lightning_module(tmp_path, devices):
    got = _run(tmp_path, devices)
    ref = _reference().metrics()
    logged = got["logged"]
    # every batch (one class each) was counted; on two processes each rank saw every batch
    assert logged["num_samples"] == 60 * devices
    assert logged["num_classes_present"] == 3
    for name in ("vci", "nc1", "cdnv", "nc2_etf_error", "vci_rank"):
        assert logged[name] == pytest.approx(ref[name], rel=1e-5, abs=1e-9), name
    # one-class batches give an empty batch value, never an error
    assert got["batches"] and all(b == [] for b in got["batches"])
    assert not any("TooFewClasses" in w for w in got["warnings"])


def test_forward_always_accumulates_and_returns_scalars_or_nothing():
    H, y = ec.data.gaussian_mixture(3, 4, 10, seed=0)
    h, lab = torch.from_numpy(H), torch.from_numpy(y)
    m = CollapseMetrics(3, 4)
    assert m(h[lab == 0], lab[lab == 0]) == {}  # one class: undefined for the batch alone
    mixed = m(h[lab != 0], lab[lab != 0])
    assert set(mixed) >= {"vci", "nc1", "num_samples"} and float(mixed["num_samples"]) == 20
    out = m.compute()
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in out.values())
    assert float(out["num_samples"]) == 30  # the one-class batch was counted
    report = m.compute_report()
    assert report["weighting"] == "weighted" and report["global_mean"].shape == (4,)
    assert set(out) == {k for k, v in report.items() if isinstance(v, (int, float))}
    ref = ec.CollapseStats(3, 4).update(H, y)
    assert float(out["vci"]) == pytest.approx(ref.vci().value, rel=1e-10)
    with pytest.raises(ec.TooFewClassesError):  # outside forward, the epoch value still raises
        CollapseMetrics(3, 4).compute()


# ------------------------------------------------------------------ self.log of one named scalar
class _ItemNet(L.LightningModule):
    """Logs single collapse metrics as metric objects: ``nc1`` and ``vci`` through items taken in
    ``__init__``, ``cdnv`` through ``metric_attribute``."""

    def __init__(self, k, p):
        super().__init__()
        self.lin = torch.nn.Linear(p, p, bias=False)
        torch.nn.init.eye_(self.lin.weight)
        self.val_nc = CollapseMetrics(k, p)
        self.val_nc1, self.val_vci = self.val_nc["nc1"], self.val_nc["vci"]

    def training_step(self, batch, _):
        return self.lin(batch[0]).sum() * 0.0

    def validation_step(self, batch, _):
        h, y = batch
        self.val_nc(self.lin(h), y)  # one class per batch: the batch alone gives {}
        self.log("val/nc1", self.val_nc["nc1"])  # the same object as self.val_nc1
        self.log("val/vci", self.val_vci)
        self.log("val/cdnv", self.val_nc["cdnv"], metric_attribute="val_nc")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_single_metrics_logged_as_metric_objects_in_a_lightning_module(tmp_path):
    k, p = 3, 5
    H, y = ec.data.gaussian_mixture(k, p, 20, seed=4)
    order = np.argsort(y, kind="stable")
    H, y = H[order], y[order]
    ds = torch.utils.data.TensorDataset(torch.from_numpy(H).float(), torch.from_numpy(y))
    dl = torch.utils.data.DataLoader(ds, batch_size=10)
    net = _ItemNet(k, p)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, default_root_dir=str(tmp_path))
    trainer.fit(net, dl, dl)
    logged = {n: float(v) for n, v in trainer.callback_metrics.items()}
    # the reference: the metrics of every validation row at once, float64 (features were float32)
    ref = ec.CollapseStats(k, p).update(H.astype(np.float32).astype(np.float64), y).metrics()
    for name in ("nc1", "vci", "cdnv"):
        assert logged[f"val/{name}"] == pytest.approx(ref[name], rel=1e-5), name
    assert int(net.val_nc.counts.sum()) == 0  # Lightning reset the shared states at epoch end


def test_metric_items_share_the_states_and_name_their_errors():
    from etfcore.errors import ParameterError

    m = CollapseMetrics(3, 4)
    assert m["nc1"] is m["nc1"] and m["nc1"] is not m["vci"]
    g = torch.Generator().manual_seed(0)
    h, y = torch.randn(12, 4, generator=g, dtype=torch.float64), torch.arange(12) % 3
    out = m["vci"](h, y)  # forward through the item: the batch's own value, states updated
    assert float(out) == pytest.approx(ec.CollapseStats(3, 4).update(h.numpy(), y.numpy()).vci())
    assert int(m.counts.sum()) == 12
    assert m["vci"](h[y == 0], y[y == 0]) is None  # one class: undefined for the batch alone
    assert int(m.counts.sum()) == 16  # but counted
    assert float(m["nc1"].compute()) == float(m.compute()["nc1"])
    with pytest.raises(ParameterError, match="nc1"):
        m["nc_one"].compute()
    with pytest.raises(ParameterError):
        m[0]
