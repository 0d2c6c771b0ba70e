"""`make site`'s copy of the course (tools/site/): what each rewrite promises, on the real course.

Fast and without Sphinx, Node or a browser; `make site-test` opens the built
site in Chromium. Here the mermaid drawing step is replaced by a stand-in that
returns a fixed SVG (drawing needs mermaid-cli and Chromium, which the
site-test has); everything else runs for real on notebooks/, exercises/ and
solutions/ as committed.
"""
from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path, PurePosixPath

import pytest

from tools.site import build, diagrams, rewrite
from tools.site.course import Page, Section, discover

ROOT = Path(__file__).resolve().parents[2]
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'


class StandInRenderer:
    def __init__(self):
        self.sources = []
        self.drawn = 0

    def svg(self, source: str) -> bytes:
        self.sources.append(source)
        return SVG


def _course_files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in ("notebooks", "exercises", "solutions") for p in sorted((root / folder).glob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The real course, prepared into a temporary folder (build/site-src's twin)."""
    out = tmp_path_factory.mktemp("site") / "site"
    before = _course_files(ROOT)
    renderer = StandInRenderer()
    builder = build.Builder(ROOT, out, rewrite.Repository("someone/minildr", "main"), renderer)
    builder.prepare()
    assert _course_files(ROOT) == before, "preparing the site changed committed course files"
    return builder, renderer


def _copies(builder) -> dict[str, dict]:
    return {p.relative_to(builder.src).as_posix(): json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(builder.src.rglob("*.ipynb"))}


def test_every_notebook_of_every_section_is_a_page(built):
    builder, _ = built
    for section in Section:
        on_disk = {p.name for p in (ROOT / section.value).glob("*.ipynb")}
        copied = {p.name for p in (builder.src / section.value).glob("*.ipynb")}
        assert on_disk and copied == on_disk, section
    index = (builder.src / "index.md").read_text(encoding="utf-8")
    for section, pages in builder.pages.items():
        assert f":caption: {section.caption}" in index
        for page in pages:
            assert page.path.with_suffix("").as_posix() in index


def test_pages_are_found_by_glob_so_added_and_renamed_notebooks_appear(tmp_path):
    for section in Section:
        (tmp_path / section.value).mkdir()
    for name in ("notebooks/03-a.ipynb", "notebooks/04-b.ipynb", "notebooks/10-later.ipynb",
                 "exercises/03-a.ipynb", "solutions/03-a.ipynb"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "notebooks" / "glossary.md").write_text("# Glossary\n")
    (tmp_path / "notebooks" / "README.md").write_text("# The course\n")
    pages = discover(tmp_path)
    assert [p.path.as_posix() for p in pages[Section.COURSE]] == [
        "notebooks/README.md", "notebooks/03-a.ipynb", "notebooks/04-b.ipynb",
        "notebooks/10-later.ipynb", "notebooks/glossary.md"]
    shutil.rmtree(tmp_path / "solutions")
    (tmp_path / "solutions").mkdir()
    with pytest.raises(FileNotFoundError, match="solutions/: no notebook"):
        discover(tmp_path)


def test_cell_ids_are_unique_across_the_whole_course(built):
    builder, _ = built
    ids = [cell["id"] for nb in _copies(builder).values() for cell in nb["cells"]]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})[:10]
    assert all(rewrite.CELL_ID.match(i) for i in ids)


def test_attachments_become_files_with_the_attached_bytes(built):
    builder, _ = built
    attached = {}
    for path in sorted(ROOT.glob("*/*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            for name, bundle in cell.get("attachments", {}).items():
                data = next(iter(bundle.values()))
                attached[(path.relative_to(ROOT).parent.as_posix(), name)] = base64.b64decode(
                    "".join(data) if isinstance(data, list) else data)
    for nb in _copies(builder).values():
        for cell in nb["cells"]:
            assert "attachments" not in cell and "attachment:" not in "".join(cell["source"])
    if not attached:
        pytest.skip("no committed notebook has a cell attachment (the synthetic test below still runs)")
    for (folder, name), data in attached.items():
        files = [p for p in (builder.src / folder).rglob(f"attachment-*-{name}") if p.read_bytes() == data]
        assert files, f"{folder}: attachment {name} was not written with its bytes"


def test_an_attachment_becomes_a_file_beside_the_page(tmp_path):
    data = b"<svg xmlns='http://www.w3.org/2000/svg'/>"
    nb = {"cells": [{"cell_type": "markdown", "id": "c05", "source": "![fig](attachment:fig.svg)",
                     "attachments": {"fig.svg": {"image/svg+xml": [base64.b64encode(data).decode()]}}}]}
    written = rewrite.attachments_to_files(nb, tmp_path / "_attachments" / "07", "_attachments/07")
    assert [p.read_bytes() for p in written] == [data]
    assert nb["cells"][0] == {"cell_type": "markdown", "id": "c05",
                              "source": "![fig](_attachments/07/attachment-c05-fig.svg)"}


def test_widget_outputs_become_their_final_text_and_no_widget_state_is_left(built):
    builder, _ = built
    for where, nb in _copies(builder).items():
        assert "widgets" not in nb["metadata"], where
        for cell in nb["cells"]:
            for output in cell.get("outputs", []):
                assert set(output.get("data", {})) <= rewrite.STATIC_MIME_TYPES, (where, cell["id"])


def _tqdm_notebook(with_state: bool = True) -> dict:
    state = {
        "box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_left", "IPY_MODEL_bar",
                                                                  "IPY_MODEL_right"]}},
        "left": {"model_name": "HTMLModel", "state": {"value": "calls: 100%"}},
        "bar": {"model_name": "FloatProgressModel", "state": {"min": 0, "max": 40, "value": 40}},
        "right": {"model_name": "HTMLModel", "state": {"value": "\u200740/40\u2007[00:00&lt;00:00]"}},
    }
    return {"metadata": {"widgets": {rewrite.WIDGET_STATE: {"state": state if with_state else {}}}},
            "cells": [{"cell_type": "code", "id": "c1", "source": "", "outputs": [{
                "output_type": "display_data", "metadata": {},
                "data": {rewrite.WIDGET_VIEW: {"model_id": "box"}, "text/plain": "calls:   0%|  | 0/40"}}]}]}


def test_a_progress_bar_shows_its_final_state_from_the_saved_widget_state():
    nb = _tqdm_notebook()
    assert rewrite.widgets_to_text(nb, "x.ipynb") == 1
    assert nb["cells"][0]["outputs"][0]["data"] == {"text/plain": "calls: 100%|██████████| 40/40 [00:00<00:00]"}
    assert "widgets" not in nb["metadata"]


def test_a_widget_without_saved_state_is_an_error_not_a_stale_zero_percent():
    with pytest.raises(ValueError, match=r"x.ipynb, cell c1: a widget output whose state was not saved"):
        rewrite.widgets_to_text(_tqdm_notebook(with_state=False), "x.ipynb")


def test_mermaid_blocks_become_pictures_and_no_source_is_left(built):
    builder, renderer = built
    sources = [cell for nb in _copies(builder).values() for cell in nb["cells"]
               if "```mermaid" in "".join(cell["source"])]
    assert not sources
    committed = sum("".join(c["source"]).count("```mermaid") for p in ROOT.glob("*/*.ipynb")
                    for c in json.loads(p.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "markdown")
    assert builder.diagrams == committed == len(renderer.sources)


def test_a_mermaid_block_becomes_an_image_with_its_labels_as_alt_text():
    text = 'Before.\n\n```mermaid\nflowchart TD\n  A{"Is it C?"} -- yes --> B["cffi API mode<br>(compiled)"]\n```\n\nAfter.'
    out, count = diagrams.replace_blocks(text, lambda source: "_diagrams/mermaid-x.svg")
    assert count == 1
    assert out == "Before.\n\n![flowchart: Is it C?; cffi API mode (compiled)](_diagrams/mermaid-x.svg)\n\nAfter."


def test_drawn_svg_gets_a_size_an_img_can_use():
    svg = b'<svg id="my-svg" width="100%" viewBox="0 0 522.7 694" style="max-width: 522px;"></svg>'
    assert diagrams.with_intrinsic_size(svg) == \
        b'<svg width="523" height="694" id="my-svg" viewBox="0 0 522.7 694" style="max-width: 522px;"></svg>'


def test_every_notebook_page_gets_binder_and_jupyterlab_links_and_its_companions(built):
    builder, _ = built
    for where, nb in _copies(builder).items():
        launch = [c for c in nb["cells"] if "minildr-launch" in "".join(c["source"])]
        assert len(launch) == 1, where
        text = launch[0]["source"]
        assert f"https://mybinder.org/v2/gh/someone/minildr/main?urlpath=lab/tree/{where}" in text
        assert f"http://localhost:8888/lab/tree/{where}" in text
        if where.startswith("exercises/"):
            name = where.split("/")[1]
            assert f"(../notebooks/{name})" in text and f"(../solutions/{name})" in text


def test_cells_keep_their_numbers_so_build_errors_point_at_the_committed_cell(built):
    builder, _ = built
    for where, nb in _copies(builder).items():
        committed = json.loads((ROOT / where).read_text(encoding="utf-8"))
        assert len(nb["cells"]) == len(committed["cells"]), where


def test_solution_pages_are_titled_as_solutions(built):
    builder, _ = built
    for where, nb in _copies(builder).items():
        if where.startswith("solutions/"):
            assert "".join(nb["cells"][0]["source"]).startswith("# Solution"), where


def test_the_readme_badge_becomes_a_link_and_a_lone_remote_image_is_refused():
    badge = "[![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/OWNER/minildr/HEAD)"
    assert rewrite.remote_images_to_links(badge) == "[Binder](https://mybinder.org/v2/gh/OWNER/minildr/HEAD)"
    with pytest.raises(ValueError, match="an image from the network: https://example.org/x.png"):
        rewrite.remote_images_to_links("![x](https://example.org/x.png)")


def test_links_to_repository_files_outside_the_site_point_at_the_repository():
    repo = rewrite.Repository("someone/minildr", "main")
    site = {"notebooks/02-smallest-plugin.ipynb", "exercises/02-smallest-plugin.ipynb"}
    text = ("[ex](../exercises/02-smallest-plugin.ipynb#task) [src](../examples/greet/greet.c) "
            "[dir](../examples/greet) [web](https://example.org) [gone](../nowhere.txt) [here](#top)")
    out = rewrite.rewrite_links(text, PurePosixPath("notebooks"), ROOT, site, repo)
    assert out == ("[ex](../exercises/02-smallest-plugin.ipynb#task) "
                   "[src](https://github.com/someone/minildr/blob/main/examples/greet/greet.c) "
                   "[dir](https://github.com/someone/minildr/tree/main/examples/greet) "
                   "[web](https://example.org) [gone](../nowhere.txt) [here](#top)")


def test_outside_resources_in_html_or_css_are_found(tmp_path):
    (tmp_path / "a.html").write_text('<script src="https://cdn.example/require.js"></script>'
                                     '<link rel="stylesheet" href="//fonts.example/x.css">'
                                     '<img src="_images/ok.png"><a href="https://example.org">fine</a>')
    (tmp_path / "s.css").write_text("@font-face { src: url('https://fonts.example/f.woff2') }")
    assert build.external_resources(tmp_path) == {
        "a.html": ["<script> https://cdn.example/require.js", "<link> //fonts.example/x.css"],
        "s.css": ["https://fonts.example/f.woff2"]}
