"""The site's copy of a page: what a static renderer needs that a notebook in JupyterLab does not.

Each function takes a notebook (the nbformat JSON as a dict) or a Markdown
text and returns or changes the copy; the committed files are never written.
Why each step exists:

* cell ids: nbformat asks them to be unique per notebook only; the course
  reuses `c00`, `01-03`, … across notebooks and between exercises and
  solutions, and site generators make them site-wide anchors;
* attachments: myst-nb does not resolve `attachment:NAME` images
  (executablebooks/MyST-NB#492), so they become files beside the page;
* widgets: a tqdm progress bar is saved as a widget view plus its state; its
  HTML rendering needs require.js and the widget manager from a CDN, so the
  copy shows the bar's final text, read from the saved state;
* remote images (the Binder badge) would be fetched by every reader's
  browser; links to repository files outside the site would be dead.
"""
from __future__ import annotations

import base64
import copy
import html
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from .course import Page, Section

# nbformat 4.5: 1 to 64 characters from this set.
CELL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ATTACHMENT_REF = re.compile(r"attachment:([^)\s\"']+)")
# [text](target "title") not preceded by "!" (an image), target without spaces.
LINK = re.compile(r"(?<!!)\[(?P<text>[^\]\n]*)\]\((?P<target>[^)\s]+)(?P<title>\s+\"[^\"]*\")?\)")
# ![alt](http…) alone, or as the text of a link: [![alt](http…)](target).
REMOTE_IMAGE_LINK = re.compile(r"\[!\[(?P<alt>[^\]]*)\]\(https?://[^)]+\)\]\((?P<target>[^)]+)\)")
REMOTE_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<src>https?://[^)]+)\)")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
BAR_WIDTH = 10


@dataclass(frozen=True)
class Repository:
    """Where the course is published: the Binder and "view the file" links point there."""
    name: str = "OWNER/minildr"          # owner/name on GitHub, as in the README's Binder badge
    branch: str = "HEAD"

    def binder(self, path: PurePosixPath) -> str:
        return (f"https://mybinder.org/v2/gh/{self.name}/{self.branch}"
                f"?urlpath={quote('lab/tree/' + str(path), safe='/')}")

    def file(self, path: PurePosixPath, is_dir: bool) -> str:
        kind = "tree" if is_dir else "blob"
        return f"https://github.com/{self.name}/{kind}/{self.branch}/{quote(str(path))}"


LOCAL_LAB = "http://localhost:8888/lab/tree/"     # `make lab`'s address (its root is the repository)


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _set_source(cell: dict, text: str) -> None:
    cell["source"] = text


# ---- cell ids -------------------------------------------------------------------------

def id_prefix(page: Page) -> str:
    """`notebooks-02` for notebooks/02-smallest-plugin.ipynb: the section and the notebook's number."""
    number = page.path.stem.split("-", 1)[0]
    return f"{page.section.value}-{number}"


def unique_cell_ids(nb: dict, prefix: str) -> list[str]:
    """Prefix every cell id (`c05` → `notebooks-02-c05`); ids stay valid nbformat ids."""
    ids = []
    for index, cell in enumerate(nb["cells"]):
        new = f"{prefix}-{cell.get('id') or index}"
        if not CELL_ID.match(new):
            new = f"{prefix}-{index}"
        cell["id"] = new
        ids.append(new)
    if len(set(ids)) != len(ids):
        raise ValueError(f"{prefix}: cell ids repeat within the notebook: "
                         f"{sorted({i for i in ids if ids.count(i) > 1})}")
    return ids


# ---- attachments ----------------------------------------------------------------------

def attachments_to_files(nb: dict, folder: Path, relative: str) -> list[Path]:
    """Write each cell attachment to `folder` and point the cell's `attachment:NAME` at it.

    `relative` is the folder as seen from the page (e.g. `_attachments/07-capstone-editor`).
    Two cells may attach different files under one name, so each file is
    named after its cell.
    """
    written = []
    for cell in nb["cells"]:
        attachments = cell.pop("attachments", None)
        if not attachments:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        names = {}
        for name, bundle in attachments.items():
            mime, data = next(iter(bundle.items()))
            raw = "".join(data) if isinstance(data, list) else data
            target = folder / f"attachment-{cell.get('id', 'cell')}-{name}"
            target.write_bytes(base64.b64decode(raw))
            names[name] = f"{relative}/{target.name}"
            written.append(target)
        text = ATTACHMENT_REF.sub(lambda m: names.get(m.group(1), m.group(0)), _source(cell))
        missing = [m.group(1) for m in ATTACHMENT_REF.finditer(text)]
        if missing:
            raise ValueError(f"cell {cell.get('id')}: refers to attachments it does not carry: {missing}")
        _set_source(cell, text)
    return written


# ---- widgets --------------------------------------------------------------------------

def _html_text(value: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", value)).replace("\u2007", " ").replace("\u200b", "")


def _model_text(models: dict, model_id: str) -> str:
    """A widget's visible text: labels as text, a progress bar as a tqdm-style bar."""
    model = models.get(model_id)
    if model is None:
        raise KeyError(model_id)
    name, state = model.get("model_name", ""), model.get("state", {})
    if name in ("HBoxModel", "VBoxModel", "BoxModel"):
        children = [c.removeprefix("IPY_MODEL_") for c in state.get("children", [])]
        return "".join(_model_text(models, child) for child in children)
    if name in ("FloatProgressModel", "IntProgressModel"):
        low, high, value = state.get("min", 0), state.get("max", 100), state.get("value", 0)
        filled = round(BAR_WIDTH * (value - low) / (high - low)) if high > low else BAR_WIDTH
        return "|" + "█" * filled + " " * (BAR_WIDTH - filled) + "|"
    if "value" in state and isinstance(state["value"], str):
        return _html_text(state["value"])
    return _html_text(str(state.get("description", "")))


def widgets_to_text(nb: dict, where: str) -> int:
    """Replace each widget output by its final text (from the saved widget state); drop the state.

    Without the saved state there is no final text to show, only the bar as it
    started (its text/plain); that is an error, not a silent "0%".
    """
    state = nb.get("metadata", {}).pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    replaced = 0
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                continue
            try:
                text = _model_text(state, view["model_id"])
            except KeyError as missing:
                raise ValueError(f"{where}, cell {cell.get('id')}: a widget output whose state was not "
                                 f"saved (model {missing}); save the notebook with its widget state "
                                 "(JupyterLab: Settings → Save Widget State Automatically)") from None
            output["data"] = {"text/plain": text}
            replaced += 1
    return replaced


# ---- output types ---------------------------------------------------------------------

# What a static page shows (myst-nb's HTML renderers, widgets excepted: see above).
STATIC_MIME_TYPES = {"text/plain", "text/html", "text/markdown", "text/latex",
                     "image/png", "image/jpeg", "image/gif", "image/svg+xml"}


def static_outputs_only(nb: dict, where: str) -> int:
    """Drop representations no static page can show when the output has one it can.

    The course's check cells display `application/vnd.minildr.check+json`
    (for JupyterLab) beside its text/plain form; the site shows the text.
    """
    dropped = 0
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not data:
                continue
            keep = {k: v for k, v in data.items() if k in STATIC_MIME_TYPES}
            if not keep:
                raise ValueError(f"{where}, cell {cell.get('id')}: an output with nothing a static page "
                                 f"can show ({sorted(data)}); give it a text/plain form")
            dropped += len(data) - len(keep)
            output["data"] = keep
    return dropped


# ---- the launch line and titles -------------------------------------------------------

def launch_box(page: Page, repo: Repository, partners: dict[Section, PurePosixPath]) -> str:
    """Markdown: open this notebook on Binder or in your JupyterLab, and its companion pages."""
    path = PurePosixPath(page.path.as_posix())
    links = [f"[Open in JupyterLab on Binder]({repo.binder(path)})",
             f"[open in your JupyterLab]({LOCAL_LAB}{quote(str(path))}) (after `make lab`)"]
    for section, other in partners.items():
        label = {Section.COURSE: "notebook", Section.EXERCISES: "exercise",
                 Section.SOLUTIONS: "solution"}[section]
        links.append(f"[{label} {other.stem.split('-', 1)[0]}](../{other})")
    return ("```{admonition} Run this notebook\n:class: tip minildr-launch\n\n"
            + " · ".join(links) + "\n```\n")


def add_below_title(nb: dict, markdown: str, cell_id: str) -> None:
    """At the end of the title cell, so that cells keep their numbers (build errors name them);
    in a cell of its own first when the notebook has no title cell."""
    first = nb["cells"][0] if nb["cells"] else None
    if first and first["cell_type"] == "markdown" and _source(first).lstrip().startswith("# "):
        _set_source(first, _source(first).rstrip("\n") + "\n\n" + markdown)
    else:
        nb["cells"].insert(0, {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": markdown})


def retitle_solution(nb: dict) -> None:
    """Exercise and solution share their title; the solution page says it is one."""
    for cell in nb["cells"]:
        text = _source(cell)
        if cell["cell_type"] == "markdown" and text.lstrip().startswith("# "):
            head, _, rest = text.lstrip().partition("\n")
            title = head[2:]
            title = ("Solution" + title[len("Exercise"):]) if title.startswith("Exercise") \
                else f"Solution: {title}"
            _set_source(cell, f"# {title}\n{rest}")
            return


# ---- Markdown text --------------------------------------------------------------------

def remote_images_to_links(text: str) -> str:
    """A badge `[![alt](https://…)](target)` becomes the link `[alt](target)`; a lone remote image is an error.

    Readers' browsers must fetch nothing from outside the site.
    """
    text = REMOTE_IMAGE_LINK.sub(lambda m: f"[{m.group('alt')}]({m.group('target')})", text)
    found = REMOTE_IMAGE.search(text)
    if found:
        raise ValueError(f"an image from the network: {found.group('src')}; "
                         "commit the picture and refer to it by its path")
    return text


def rewrite_links(text: str, page_dir: PurePosixPath, root: Path, site: set[str],
                  repo: Repository) -> str:
    """A relative link to a repository file that is not a page of the site points at the repository."""
    def fix(m: re.Match) -> str:
        target = m.group("target")
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target, re.I):
            return m.group(0)
        path, _, anchor = target.partition("#")
        resolved = PurePosixPath(_normalise(page_dir / path))
        if str(resolved) in site or str(resolved).startswith(".."):
            return m.group(0)
        on_disk = root / resolved
        if not on_disk.exists():
            return m.group(0)          # left for Sphinx to report as a broken link
        url = repo.file(resolved, on_disk.is_dir()) + (f"#{anchor}" if anchor else "")
        return f"[{m.group('text')}]({url}{m.group('title') or ''})"
    return LINK.sub(fix, text)


def _normalise(path: PurePosixPath) -> str:
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            else:
                parts.append(part)
        elif part != ".":
            parts.append(part)
    return "/".join(parts) or "."


def markdown_cells(nb: dict):
    return [cell for cell in nb["cells"] if cell["cell_type"] == "markdown"]


def map_markdown(nb: dict, change) -> None:
    for cell in markdown_cells(nb):
        _set_source(cell, change(_source(cell)))


def copy_of(nb: dict) -> dict:
    return copy.deepcopy(nb)
