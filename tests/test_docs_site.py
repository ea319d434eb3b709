"""The built documentation site reads as documentation: what a reader sees in the browser.

Checks every page of the site that `mkdocs build --strict` writes (API pages come from the
docstrings): no Sphinx role or directive left as text (`:func:`, `.. math::`), every `>>>` example
inside a code block (not folded into nested quotes), every formula typeset by the vendored KaTeX
(no CDN) and no `$` math left unconverted, no unresolved cross-reference, and no parameter table
that gives two parameters one shared description.

The site is `$ETFCORE_DOCS_SITE` when set (`./dev test` builds `out/site` just before pytest and
points here); otherwise this module builds it once into a temporary folder (a few seconds).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")

# Sphinx/reST markup that markdown leaves as text: roles (`:func:`, `:py:class:`, ...) and
# directives (`.. math::`, `.. note::`, ...).
ROLE = re.compile(
    r"(?<![\w:]):(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const|math|ref|doc|term|eq):"
)
DIRECTIVE = re.compile(r"(?m)(?:^|\s)\.\. [a-z][a-z-]*::")
# An unresolved markdown cross-reference stays as text: [`name`][etfcore.module.name].
UNRESOLVED_REF = re.compile(r"\]\[[\w.]+\]")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
CODE = {"pre", "code", "kbd", "samp"}
HIDDEN = {"script", "style", "template", "svg"}


class _Page(HTMLParser):
    """Splits a page's visible text into prose and code, and collects its scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: List[Tuple[str, bool]] = []  # (tag, opens an arithmatex element)
        self.prose: List[str] = []
        self.code: List[str] = []
        self.scripts: List[str] = []
        self.arithmatex = 0

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, str | None]]) -> None:
        a: Dict[str, str] = {k: v or "" for k, v in attrs}
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        if tag in VOID:
            return
        math = "arithmatex" in a.get("class", "").split()
        self.arithmatex += math
        self.stack.append((tag, math))

    def handle_startendtag(self, tag: str, attrs: List[Tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"])

    def handle_endtag(self, tag: str) -> None:
        tags = [t for t, _ in self.stack]
        if tag not in tags:
            return
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        tags = {t for t, _ in self.stack}
        if tags & HIDDEN:
            return
        in_math = any(m for _, m in self.stack)
        (self.code if tags & CODE or in_math else self.prose).append(data)


def _pages(site: Path) -> List[Path]:
    pages = [
        p
        for p in sorted(site.rglob("*.html"))
        if p.name != "404.html" and "assets" not in p.relative_to(site).parts
    ]
    assert pages, f"no HTML page under {site}"
    return pages


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("ETFCORE_DOCS_SITE")
    if given:
        path = Path(given)
        assert (path / "index.html").is_file(), f"ETFCORE_DOCS_SITE={given} holds no built site"
        return path
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "python")] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    # not -q: with -q, mkdocs 1.6 exits 0 on warnings even in strict mode
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout}\n{run.stderr}"
    return out


@pytest.fixture(scope="module")
def parsed(site: Path) -> Dict[str, Tuple[str, _Page]]:
    out = {}
    for p in _pages(site):
        html = p.read_text(encoding="utf-8")
        page = _Page()
        page.feed(html)
        page.close()
        out[str(p.relative_to(site))] = (html, page)
    return out


def _report(found: Dict[str, List[str]]) -> str:
    lines = [f"{len(v)} on {k}: {v[:5]}" for k, v in sorted(found.items()) if v]
    return "\n".join(lines)


def _snippets(pattern: re.Pattern[str], text: str) -> List[str]:
    return [text[max(0, m.start() - 40) : m.end() + 30] for m in pattern.finditer(text)]


def test_no_raw_sphinx_markup(parsed: Dict[str, Tuple[str, _Page]]) -> None:
    found = {}
    for name, (_, page) in parsed.items():
        prose = " ".join(page.prose)
        found[name] = _snippets(ROLE, prose) + _snippets(DIRECTIVE, prose)
    assert not any(found.values()), "Sphinx roles/directives shown as text:\n" + _report(found)


def test_examples_are_code_blocks(parsed: Dict[str, Tuple[str, _Page]]) -> None:
    found = {}
    for name, (html, page) in parsed.items():
        prose = " ".join(page.prose)
        # `>>>` in prose, or the nested quotes markdown makes of a `>>>` line.
        hits = _snippets(re.compile(r">>>|^\s*\.\.\. ", re.M), prose)
        hits += [
            "nested <blockquote>: " + re.sub(r"<[^>]+>|\s+", " ", m.group(0))[:80]
            for m in re.finditer(r"<blockquote>\s*<blockquote>.{0,200}", html, re.S)
        ]
        found[name] = hits
    assert not any(found.values()), "doctest examples outside code blocks:\n" + _report(found)


def test_math_is_typeset_offline(site: Path, parsed: Dict[str, Tuple[str, _Page]]) -> None:
    pages_with_math = 0
    found = {}
    for name, (_, page) in parsed.items():
        hits = []
        # `$...$` that arithmatex did not take (e.g. a backslash eaten by a non-raw docstring)
        hits += _snippets(re.compile(r"\$[^$\s][^$]*\$"), " ".join(page.prose))
        if page.arithmatex:
            pages_with_math += 1
            katex = [s for s in page.scripts if s.split("?")[0].endswith("katex.min.js")]
            if not katex:
                hits.append(f"{page.arithmatex} formulas and no KaTeX script")
            if not any(s.split("?")[0].endswith("assets/math.js") for s in page.scripts):
                hits.append("no math.js (the script that typesets the arithmatex elements)")
            for src in katex:
                if re.match(r"(?i)^(https?:)?//", src):
                    hits.append(f"KaTeX from the network: {src}")
                elif not (site / name).parent.joinpath(src.split("?")[0]).resolve().is_file():
                    hits.append(f"KaTeX script {src} missing from the site")
        found[name] = hits
    assert not any(found.values()), "formulas a reader cannot see:\n" + _report(found)
    assert pages_with_math > 0, "no page has a formula: is pymdownx.arithmatex still configured?"
    css = site / "assets" / "katex" / "katex.min.css"
    fonts = re.findall(r"url\(([^)]+)\)", css.read_text(encoding="utf-8"))
    assert fonts and all((css.parent / f.strip("'\"")).is_file() for f in fonts), fonts


def test_no_unresolved_cross_references(parsed: Dict[str, Tuple[str, _Page]]) -> None:
    found = {n: _snippets(UNRESOLVED_REF, " ".join(p.prose)) for n, (_, p) in parsed.items()}
    assert not any(found.values()), "unresolved cross-references:\n" + _report(found)


_PARAM_TABLE = re.compile(
    r'<span class="doc-section-title">Parameters:</span>.*?<table>(.*?)</table>', re.S
)
_ROW = re.compile(r'<tr class="doc-section-item">(.*?)</tr>', re.S)
_NAME = re.compile(r"<td>\s*<code>(.*?)</code>", re.S)
_DESC = re.compile(r'<div class="doc-md-description">(.*?)</div>', re.S)


def test_parameter_tables_describe_each_parameter(parsed: Dict[str, Tuple[str, _Page]]) -> None:
    found: Dict[str, List[str]] = {}
    tables = 0
    for name, (html, _) in parsed.items():
        hits = []
        for table in _PARAM_TABLE.finditer(html):
            tables += 1
            seen: Dict[str, str] = {}
            for row in _ROW.finditer(table.group(1)):
                n, d = _NAME.search(row.group(1)), _DESC.search(row.group(1))
                if not n or not d:
                    continue
                desc = re.sub(r"\s+", " ", d.group(1)).strip()
                if desc and desc in seen:
                    hits.append(f"{seen[desc]} and {n.group(1)} share '{desc[:60]}'")
                seen.setdefault(desc, n.group(1))
        found[name] = hits
    assert tables > 0, "no parameter table found: has the mkdocstrings layout changed?"
    assert not any(found.values()), "one description for two parameters:\n" + _report(found)
