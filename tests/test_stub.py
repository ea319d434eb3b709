"""The hand-written `_core.pyi` names exactly what the extension exports."""

import ast
import pathlib

import etfcore._core as core

STUB = pathlib.Path(core.__file__).with_name("_core.pyi")


def _names(body):
    return {n.name for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef))} | {
        t.target.id for t in body if isinstance(t, ast.AnnAssign)
    }


def test_stub_matches_extension():
    tree = ast.parse(STUB.read_text())
    public = {n for n in dir(core) if not n.startswith("_")}
    assert _names(tree.body) - {"_F", "_Pinv"} == public
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RawCollapseStats")
    assert _names(cls.body) - {"__init__", "__new__"} == {
        n for n in dir(core.RawCollapseStats) if not n.startswith("_")
    }
