"""The Python package in layers: a module imports only from its own layer or the layers below
(imports inside functions included), and `import etfcore` never imports torch."""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "python" / "etfcore"

# Bottom to top. A module of layer i may import from layers 0..i.
LAYERS = [
    {"_core", "errors", "_validation", "_io", "_progress", "data", "frames"},
    {"stats", "metrics", "rf", "splits"},
    {"nn"},
    {"transfer"},
    {"training"},
    {"experiments", "cli", "__init__"},
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def _top(parts):
    """The top-level unit (module file or subpackage) of ``etfcore.<parts...>``."""
    return parts[0] if parts else "__init__"


def _imports(path):
    rel = path.relative_to(PKG).with_suffix("").parts
    pkg = rel[:-1]  # the package a relative import starts from
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[: len(pkg) - (node.level - 1)])
                target = base + (node.module.split(".") if node.module else [])
                names = [target + [a.name] for a in node.names] if not node.module else [target]
            elif (node.module or "").startswith("etfcore"):
                names = [node.module.split(".")[1:]]
            else:
                continue
            for t in names:
                yield node.lineno, t
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("etfcore."):
                    yield node.lineno, a.name.split(".")[1:]


def test_nothing_is_imported_upward():
    upward = []
    for path in sorted(PKG.rglob("*.py")):
        me = _top(path.relative_to(PKG).with_suffix("").parts)
        mine = LAYER_OF[me]
        for line, target in _imports(path):
            other = _top(target)
            if other == "__version__":  # the package's version string
                continue
            if other not in LAYER_OF:
                pytest.fail(f"{path}:{line}: etfcore.{'.'.join(target)} has no layer in LAYERS")
            if LAYER_OF[other] > mine:
                upward.append(f"{path.relative_to(ROOT)}:{line} ({me}) imports {other}")
    assert not upward, "\n".join(upward)


def test_the_layer_table_covers_the_package():
    units = {p.stem if p.is_file() else p.name for p in PKG.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert units - {"_core"} <= set(LAYER_OF), units - set(LAYER_OF)


def test_importing_the_lower_layers_and_the_cli_never_imports_torch():
    code = (
        "import sys; import etfcore, etfcore.stats, etfcore.splits, etfcore.transfer, "
        "etfcore.cli; print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT / "python")}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# The Rust core, bottom to top: a module may use (`crate::x`) only its own layer or those below;
# `metrics` and `transfer` sit side by side and use neither each other. Test code (`tests.rs`,
# `test_util.rs`, `#[cfg(test)]` modules) is exempt: it may compare against anything.
RUST = ROOT / "rust"
RUST_LAYERS = [
    {"error", "alloc"},
    {"linalg"},
    {"etf"},
    {"rf", "stats"},
    {"geometry"},
    {"metrics", "transfer"},
    {"py"},
]
RUST_LAYER_OF = {name: i for i, names in enumerate(RUST_LAYERS) for name in names}
RUST_SIDE_BY_SIDE = {("metrics", "transfer"), ("transfer", "metrics")}


def _rust_unit(path):
    rel = path.relative_to(RUST).parts
    return rel[0][:-3] if len(rel) == 1 else rel[0]


def test_rust_core_is_in_layers():
    import re

    assert set(RUST_LAYER_OF) | {"lib", "test_util"} == {
        _rust_unit(p) for p in RUST.rglob("*.rs")
    }, "every Rust module has a layer"
    upward = []
    for path in sorted(RUST.rglob("*.rs")):
        me = _rust_unit(path)
        if me in ("lib", "test_util") or path.name == "tests.rs":
            continue
        text = re.sub(r"//[^\n]*", "", path.read_text(encoding="utf-8"))
        text = text.split("#[cfg(test)]")[0]
        for other in sorted(set(re.findall(r"\bcrate::(\w+)", text))):
            if other not in RUST_LAYER_OF or other == me:
                continue
            if RUST_LAYER_OF[other] > RUST_LAYER_OF[me] or (me, other) in RUST_SIDE_BY_SIDE:
                upward.append(f"{path.relative_to(ROOT)}: {me} uses {other}")
    assert not upward, "\n".join(upward)
