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
