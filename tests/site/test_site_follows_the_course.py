"""The site follows the course as others change it: renamed and added notebooks, a glossary, a broken link.

Notebooks are being split and renumbered while the site is built from them,
and a glossary page may appear in notebooks/. This builds a small course
(real notebooks, copied under new names, plus a glossary) with the real
Sphinx run `make site` uses, and checks that every file became a page, that
links to the glossary and to repository files work, and that a link left
pointing at an old name fails the build, naming the notebook and cell.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tools.site import build, diagrams, rewrite

ROOT = Path(__file__).resolve().parents[2]
MMDC = ROOT / "build" / "site-node" / "node_modules" / ".bin" / "mmdc"
GLOSSARY = """# Glossary

(term-loader)=
loader
: the code that maps a shared library and binds its symbols; see [the checks](03-the-checks.ipynb).
"""


def _first(folder: str) -> Path:
    return sorted((ROOT / folder).glob("0[1-9]-*.ipynb"))[0]


def _course(tmp_path: Path, link: str) -> Path:
    root = tmp_path / "course"
    for folder in ("notebooks", "exercises", "solutions"):
        (root / folder).mkdir(parents=True)
        for new in ("03-the-checks.ipynb", "04-loading-by-hand.ipynb"):
            nb = json.loads(_first(folder).read_text(encoding="utf-8"))
            for cell in nb["cells"]:       # the copies' own links point at their old neighbours
                if cell["cell_type"] == "markdown":
                    cell["source"] = re.sub(r"\[([^\]]*)\]\([^)]*\.ipynb(#[^)]*)?\)", r"\1",
                                            "".join(cell["source"]))
            if folder == "notebooks":       # the glossary is beside the notebooks
                nb["cells"].insert(1, {"cell_type": "markdown", "id": "x-link", "metadata": {},
                                       "source": "First line.\n\n" + link})
            (root / folder / new).write_text(json.dumps(nb), encoding="utf-8")
    (root / "notebooks" / "glossary.md").write_text(GLOSSARY, encoding="utf-8")
    shutil.copy2(ROOT / "README.md", root / "README.md")
    (root / "examples").mkdir()
    (root / "examples" / "x.c").write_text("int x;\n")
    return root


def _build(tmp_path: Path, root: Path) -> build.Builder:
    renderer = diagrams.Renderer(MMDC, Path(shutil.which("chromium") or "/usr/bin/chromium"),
                                 ROOT / "build" / "site-cache")
    builder = build.Builder(root, tmp_path / "site", rewrite.Repository("someone/minildr", "main"), renderer)
    builder.prepare()
    builder.sphinx()
    return builder


def test_renamed_notebooks_and_a_glossary_become_linked_pages(tmp_path):
    link = "A [loader](glossary.md#term-loader), the [glossary](glossary.md), [a file](../examples/x.c)."
    builder = _build(tmp_path, _course(tmp_path, link))
    pages = {p.relative_to(builder.out).as_posix() for p in build.html_pages(builder.out)}
    assert pages == {"index.html", "notebooks/glossary.html"} | {
        f"{folder}/{stem}.html" for folder in ("notebooks", "exercises", "solutions")
        for stem in ("03-the-checks", "04-loading-by-hand")}
    page = (builder.out / "notebooks" / "03-the-checks.html").read_text(encoding="utf-8")
    assert 'href="glossary.html#term-loader"' in page and 'href="glossary.html"' in page
    assert 'href="https://github.com/someone/minildr/blob/main/examples/x.c"' in page
    glossary = (builder.out / "notebooks" / "glossary.html").read_text(encoding="utf-8")
    assert 'id="term-loader"' in glossary and "<dl" in glossary
    assert 'href="03-the-checks.html"' in glossary


def test_a_link_to_a_notebook_that_was_renamed_fails_the_build_and_says_where(tmp_path):
    root = _course(tmp_path, "Back to [notebook 03](03-how-the-loader-works.ipynb).")
    with pytest.raises(SystemExit, match=r"notebooks/03-the-checks\.ipynb, cell 1 \(from 0\), line 3: "
                                         r"WARNING: .*03-how-the-loader-works\.ipynb"):
        _build(tmp_path, root)
