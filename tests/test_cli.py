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
    assert (
        main(
            [
                "report",
                "--features",
                str(tmp_path / "h.npy"),
                "--labels",
                str(tmp_path / "y.npy"),
                "--json",
            ]
        )
        == 0
    )
    m = json.loads(capsys.readouterr().out)[str(tmp_path / "h.npy")]
    assert abs(m["vci"] - ec.collapse_metrics(H, y)["vci"]) < 1e-12


def test_report_bad_input_is_a_clean_error(tmp_path, capsys):
    np.save(tmp_path / "h.npy", np.ones((4, 3)))
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, -1]))
    assert (
        main(["report", "--features", str(tmp_path / "h.npy"), "--labels", str(tmp_path / "y.npy")])
        == 2
    )
    assert "LabelError" in capsys.readouterr().err


def test_data_helpers():
    np.testing.assert_array_equal(ec.data.long_tail_counts(3, 100, 0.1), [100, 31, 10])
    x, y = ec.data.load_digits()
    assert x.shape == (1797, 64) and np.bincount(y).size == 10


def test_report_plots_and_metrics_alias(tmp_path, capsys):
    H, y = ec.data.gaussian_mixture(3, 6, 20, seed=0)
    np.save(tmp_path / "h.npy", H)
    np.save(tmp_path / "y.npy", y)
    assert (
        main(
            [
                "metrics",
                "--features",
                str(tmp_path / "h.npy"),
                "--labels",
                str(tmp_path / "y.npy"),
                "--plots",
                str(tmp_path / "p"),
            ]
        )
        == 0
    )
    assert len(list((tmp_path / "p").glob("*.png"))) == 2


def test_markdown_and_run_report(tmp_path, capsys):
    H, y = ec.data.gaussian_mixture(3, 6, 20, seed=0)
    np.save(tmp_path / "h.npy", H)
    np.save(tmp_path / "y.npy", y)
    md = tmp_path / "m.md"
    assert (
        main(
            [
                "report",
                "--features",
                str(tmp_path / "h.npy"),
                "--labels",
                str(tmp_path / "y.npy"),
                "--markdown",
                str(md),
            ]
        )
        == 0
    )
    text = md.read_text()
    assert "| VCI |" in text and f"{ec.collapse_metrics(H, y)['vci']:.6g}" in text
    run = tmp_path / "run"
    run.mkdir()
    rows = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "test_acc": 0.5 + 0.1 * e,
            "train_vci": 0.3 / e,
            "test_vci": 0.4 / e,
            "train_nc1": 1.0 / e,
            "test_nc1": 1.5 / e,
        }
        for e in (1, 2, 3)
    ]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["report", "--run", str(run)]) == 0
    summary = (run / "summary.md").read_text()
    assert "3 epochs" in summary and "| test_acc | 0.8 |" in summary
    assert (run / "curves.png").exists()
    assert main(["report", "--run", str(tmp_path / "missing")]) == 2
