"""Install: the extras are complete and named as users expect, and every optional import fails
with one typed error (etfcore.MissingDependencyError) that names the extra to install."""

import os
import re
import subprocess
import sys

import pytest

import etfcore as ec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _extras():
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python < 3.11
        tomllib = pytest.importorskip("tomli")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    name = lambda req: re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower()  # noqa: E731
    return {k: {name(r) for r in v} for k, v in extras.items()}


def test_extras_are_named_as_users_expect_and_complete():
    extras = _extras()
    assert {"torch", "train", "docs", "all"} <= set(extras)
    # the presets and the demo: Lightning, torchmetrics, MNIST-1D, digits (scikit-learn), plots
    assert {"torch", "lightning", "torchmetrics", "torchvision", "mnist1d", "scikit-learn",
            "matplotlib"} <= extras["train"]
    assert {"mkdocs", "mkdocs-material", "mkdocstrings"} <= extras["docs"]
    everything = set().union(*(v for k, v in extras.items() if k != "all"))
    assert everything <= extras["all"], everything - extras["all"]
    # every package the development requirements list for running etfcore is in some extra
    with open(os.path.join(ROOT, "requirements-dev.txt")) as f:
        dev = {re.match(r"[A-Za-z0-9_.-]+", s).group(0).lower() for s in f
               if s.strip() and not s.startswith("#")}
    tools = {"maturin", "numpy", "ruff"}
    assert dev - tools <= extras["all"], dev - tools - extras["all"]


def test_require_raises_one_typed_error_naming_the_extra():
    with pytest.raises(ec.MissingDependencyError, match=r"pip install 'etfcore\[train\]'") as e:
        ec.errors.require("etfcore_no_such_module.sub", "train", "the example")
    assert isinstance(e.value, ValueError) and isinstance(e.value, ImportError)
    assert isinstance(e.value, ec.EtfcoreError)
    assert e.value.name == "etfcore_no_such_module" and e.value.extra == "train"
    assert "the example needs etfcore_no_such_module" in str(e.value)


BLOCKED = """
import sys
for name in sys.argv[2].split(","):
    sys.modules[name] = None  # as if not installed
import etfcore as ec
try:
    exec(sys.argv[1])
except ec.MissingDependencyError as e:
    print("MissingDependencyError:", e)
"""


@pytest.mark.parametrize(
    "code, blocked, extra",
    [
        ("ec.data.load_digits()", "sklearn,sklearn.datasets", "train"),
        ("import etfcore.training", "lightning", "train"),
        ("import etfcore.training", "torchmetrics", "train"),
        ("import etfcore.nn", "torch", "torch"),
        ("from etfcore import transfer; transfer.linear_probe([[0.0]], [0], [[0.0]], [0], seed=0)",
         "torch", "torch"),
    ],
)
def test_missing_optional_packages_name_their_extra(code, blocked, extra):
    out = subprocess.run([sys.executable, "-c", BLOCKED, code, blocked], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "MissingDependencyError:" in out.stdout, out.stdout
    assert f"pip install 'etfcore[{extra}]'" in out.stdout


def test_cli_reports_a_missing_package_in_one_line():
    code = ("import sys; sys.modules['sklearn'] = None; sys.modules['sklearn.datasets'] = None\n"
            "from etfcore.cli import main; sys.exit(main(['report']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    lines = [s for s in out.stderr.splitlines() if s.startswith("etfcore: error:")]
    assert len(lines) == 1 and "MissingDependencyError" in lines[0]
    assert "etfcore[train]" in lines[0] and lines[0].count("pip install 'etfcore") == 1
