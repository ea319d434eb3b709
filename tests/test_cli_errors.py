"""The command line maps failures to exit statuses once, in `etfcore.cli.main`, for every
command group: a user's mistake is `etfcore: error: ...` and 2, Ctrl-C 130, a bug a traceback."""

import pytest

from etfcore import cli
from etfcore.cli import report as report_cli


def test_every_command_belongs_to_one_group():
    _, subs = cli.build_parser()
    owners = {name: [g for g in cli.GROUPS if name in g.COMMANDS] for name in subs}
    assert all(len(o) == 1 for o in owners.values()), owners


def test_a_missing_file_is_an_error_message(tmp_path, capsys):
    missing = str(tmp_path / "nope.npy")
    assert cli.main(["report", "--features", missing, "--labels", missing]) == 2
    err = capsys.readouterr().err
    assert err.startswith("etfcore: error:") and "nope.npy" in err and "Traceback" not in err
    assert cli.main(["rank", "--target", missing, "--candidates", missing, missing]) == 2
    assert capsys.readouterr().err.startswith("etfcore: error: ParameterError")


def test_options_that_go_together_are_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["report", "--features", "f.npy"])
    assert e.value.code == 2
    assert "--features and --labels go together" in capsys.readouterr().err


def test_ctrl_c_is_130_and_a_bug_keeps_its_traceback(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_cli, "run", interrupted)
    assert cli.main(["report"]) == 130
    assert "etfcore: interrupted" in capsys.readouterr().err

    def bug(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(report_cli, "run", bug)
    with pytest.raises(ZeroDivisionError):
        cli.main(["report"])


def test_a_missing_training_dependency_names_the_extra(monkeypatch, capsys):
    def no_torch(args):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(report_cli, "run", no_torch)
    assert cli.main(["report"]) == 2
    assert "pip install 'etfcore[train]'" in capsys.readouterr().err


def test_no_abbreviated_flags_and_device_names_the_lightning_flags(capsys):
    """argparse's prefix matching once turned `--device cuda` into `--devices cuda`."""
    from etfcore.cli import build_parser, main

    parser, subs = build_parser()
    assert parser.allow_abbrev is False and all(not p.allow_abbrev for p in subs.values())
    for cmd in ("train", "finetune", "demo", "reproduce"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--device", "cuda"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "--accelerator" in err and "--devices" in err, (cmd, err)
    with pytest.raises(SystemExit):  # a prefix of a real flag is not that flag
        main(["train", "--accel", "cpu"])
    assert "unrecognized arguments: --accel" in capsys.readouterr().err
    # probe and extract keep their own --device (a torch device)
    assert subs["extract"].parse_args(["r", "--out", "o", "--device", "cpu"]).device == "cpu"
    got = subs["probe"].parse_args(["--train", "a", "b", "--test", "c", "d", "--device", "cpu"])
    assert got.device == "cpu"
