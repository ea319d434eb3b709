"""The documentation pages that are generated from the code are current."""

from __future__ import annotations

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_cli_reference_page_is_current():
    from etfcore.cli import reference_markdown

    page = (ROOT / "docs" / "cli.md").read_text()
    assert page == reference_markdown(), (
        "docs/cli.md is stale: regenerate it with\n  python -c \"from etfcore.cli import "
        "reference_markdown as r; print(r(), end='')\" > docs/cli.md"
    )


def test_every_subcommand_is_in_the_reference():
    from etfcore.cli import build_parser

    _, subs = build_parser()
    page = (ROOT / "docs" / "cli.md").read_text()
    for name, sp in subs.items():
        assert f"## `etfcore {name}`" in page or sp.prog.split()[-1] != name  # aliases share a page
