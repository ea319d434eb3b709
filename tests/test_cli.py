import json

import numpy as np

import etfcore as ec
from etfcore.cli import main


def test_report_embedded(capsys):
    assert main(["report"]) == 0
    out = capsys.readouterr().out
    assert "digits (pixels)" in out and "VCI" in out and "NC1" in out


def test_report_saved_features_json(tmp_path, capsys):
    H, y = ec.data.gaussian_mixture(3, 6, 20, seed=0)
    np.save(tmp_path / "h.npy", H)
    np.save(tmp_path / "y.npy", y)
    assert main(["report", "--features", str(tmp_path / "h.npy"), "--labels", str(tmp_path / "y.npy"), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)[str(tmp_path / "h.npy")]
    assert abs(m["vci"] - ec.collapse_metrics(H, y)["vci"]) < 1e-12


def test_report_bad_input_is_a_clean_error(tmp_path, capsys):
    np.save(tmp_path / "h.npy", np.ones((4, 3)))
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, -1]))
    assert main(["report", "--features", str(tmp_path / "h.npy"), "--labels", str(tmp_path / "y.npy")]) == 2
    assert "LabelError" in capsys.readouterr().err


def test_data_helpers():
    np.testing.assert_array_equal(ec.data.long_tail_counts(3, 100, 0.1), [100, 31, 10])
    x, y = ec.data.load_digits()
    assert x.shape == (1797, 64) and np.bincount(y).size == 10


def test_report_plots_and_metrics_alias(tmp_path, capsys):
    H, y = ec.data.gaussian_mixture(3, 6, 20, seed=0)
    np.save(tmp_path / "h.npy", H)
    np.save(tmp_path / "y.npy", y)
    assert main(["metrics", "--features", str(tmp_path / "h.npy"), "--labels", str(tmp_path / "y.npy"), "--plots", str(tmp_path / "p")]) == 0
    assert len(list((tmp_path / "p").glob("*.png"))) == 2
