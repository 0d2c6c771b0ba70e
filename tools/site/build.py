"""`make site`: copy the course with the rewrites a static page needs, run Sphinx, check the HTML.

Nothing is executed: the pages show the outputs committed with the notebooks.
The copy lives in build/site-src/, the site in build/site/, drawn diagrams
are cached in build/site-cache/. The build fails on any Sphinx warning (a
broken link, a missing image) and on any page that would fetch a script,
style, font or image from outside the site.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

from . import diagrams, rewrite
from .course import Page, Section, discover, partner

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


class Builder:
    def __init__(self, root: Path, out: Path, repo: rewrite.Repository, renderer: diagrams.Renderer):
        self.root, self.out, self.repo, self.renderer = root, out, repo, renderer
        self.src = out.parent / f"{out.name}-src"
        self.pages = discover(root)
        self.site_paths = {p.path.as_posix() for pages in self.pages.values() for p in pages}
        self.cell_ids: dict[str, str] = {}
        self.diagrams = 0
        self.widgets = 0
        self.attachments = 0

    # -- one page ---------------------------------------------------------------------
    def _markdown(self, text: str, page: PurePosixPath) -> str:
        text = rewrite.remote_images_to_links(text)
        text = rewrite.rewrite_links(text, page.parent, self.root, self.site_paths, self.repo)
        text, drawn = diagrams.replace_blocks(text, lambda source: self._draw(source, page))
        self.diagrams += drawn
        return text

    def _draw(self, source: str, page: PurePosixPath) -> str:
        svg = self.renderer.svg(source)
        name = f"_diagrams/mermaid-{hashlib.sha256(svg).hexdigest()[:12]}.svg"
        target = self.src / page.parent / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(svg)
        return name

    def _notebook(self, page: Page) -> None:
        where = page.path.as_posix()
        nb = json.loads((self.root / page.path).read_text(encoding="utf-8"))
        for cell_id in rewrite.unique_cell_ids(nb, rewrite.id_prefix(page)):
            if cell_id in self.cell_ids:
                raise ValueError(f"cell id {cell_id} is in both {self.cell_ids[cell_id]} and {where}")
            self.cell_ids[cell_id] = where
        folder = f"_attachments/{page.path.stem}"
        self.attachments += len(rewrite.attachments_to_files(
            nb, self.src / page.path.parent / folder, folder))
        self.widgets += rewrite.widgets_to_text(nb, where)
        rewrite.static_outputs_only(nb, where)
        rewrite.map_markdown(nb, lambda text: self._markdown(text, PurePosixPath(where)))
        if page.section is Section.SOLUTIONS:
            rewrite.retitle_solution(nb)
        partners = {s: PurePosixPath(p.as_posix()) for s in Section if s is not page.section
                    for p in [partner(self.root, page, s)] if p}
        rewrite.add_below_title(nb, rewrite.launch_box(page, self.repo, partners),
                                f"{rewrite.id_prefix(page)}-launch")
        target = self.src / page.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(nb, ensure_ascii=False, indent=1), encoding="utf-8")

    def _markdown_page(self, page: Page) -> None:
        text = (self.root / page.path).read_text(encoding="utf-8")
        target = self.src / page.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self._markdown(text, PurePosixPath(page.path.as_posix())), encoding="utf-8")

    # -- the whole site ---------------------------------------------------------------
    def _index(self) -> None:
        """The README as the home page, then one table of contents per section."""
        readme = self._markdown((self.root / "README.md").read_text(encoding="utf-8"),
                                PurePosixPath("README.md"))
        tocs = []
        for section, pages in self.pages.items():
            entries = "\n".join(p.path.with_suffix("").as_posix() for p in pages)
            tocs.append(f"```{{toctree}}\n:caption: {section.caption}\n:maxdepth: 1\n:hidden:\n\n{entries}\n```\n")
        (self.src / "index.md").write_text(readme.rstrip() + "\n\n" + "\n".join(tocs), encoding="utf-8")

    def prepare(self) -> None:
        shutil.rmtree(self.src, ignore_errors=True)
        self.src.mkdir(parents=True)
        for pages in self.pages.values():
            for page in pages:
                (self._notebook if page.is_notebook else self._markdown_page)(page)
        self._index()

    def sphinx(self) -> None:
        shutil.rmtree(self.out, ignore_errors=True)
        env = dict(os.environ, MINILDR_SITE_REPOSITORY=self.repo.name, MINILDR_SITE_BRANCH=self.repo.branch)
        run = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going",
                              "-c", str(HERE), "-d", str(self.out.parent / f"{self.out.name}-doctrees"),
                              str(self.src), str(self.out)], env=env, text=True, capture_output=True)
        if run.returncode != 0:
            raise SystemExit("site: Sphinx failed (warnings are errors: a broken link or image is one):\n"
                             + readable_locations(run.stderr.replace(str(self.src) + os.sep, "")))

    def committed_downloads(self) -> int:
        """The page's download button gives the notebook as committed, not the site's rewritten copy."""
        copied = 0
        for pages in self.pages.values():
            for page in pages:
                target = self.out / "_sources" / page.path
                if target.is_file():
                    shutil.copy2(self.root / page.path, target)
                    copied += 1
        return copied

    def page_count(self) -> int:
        return len(html_pages(self.out))


def readable_locations(log: str) -> str:
    """myst-nb numbers a notebook's lines (cell + 1) * 10000 + line + 1: say `cell 12 (from 0), line 7`."""
    return re.sub(r"\.ipynb:(\d+):",
                  lambda m: f".ipynb, cell {int(m[1]) // 10000 - 1} (from 0), line {int(m[1]) % 10000 - 1}:",
                  log)


def html_pages(out: Path) -> list[Path]:
    """The site's pages: every .html except Sphinx's search and index helpers."""
    skip = {"search.html", "genindex.html", "py-modindex.html"}
    return sorted(p for p in out.rglob("*.html") if p.name not in skip and "_static" not in p.parts)


class _ExternalResources(HTMLParser):
    """Scripts, styles, images, frames and fonts a page would load from another host."""
    LOADS = {"script": "src", "img": "src", "iframe": "src", "source": "src", "embed": "src",
             "video": "src", "audio": "src", "object": "data"}

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        url = attrs.get(self.LOADS.get(tag, ""), "") if tag in self.LOADS else ""
        if tag == "link" and set((attrs.get("rel") or "").split()) & {"stylesheet", "preload", "icon",
                                                                          "modulepreload", "prefetch"}:
            url = attrs.get("href", "")
        if re.match(r"^(https?:)?//", url or ""):
            self.found.append(f"<{tag}> {url}")


def external_resources(out: Path) -> dict[str, list[str]]:
    """Page → what it would fetch from outside the site (HTML tags and url() in CSS)."""
    found = {}
    for page in sorted(out.rglob("*.html")):
        parser = _ExternalResources()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        if parser.found:
            found[page.relative_to(out).as_posix()] = parser.found
    for sheet in sorted(out.rglob("*.css")):
        urls = re.findall(r"url\(\s*['\"]?((?:https?:)?//[^'\")]+)", sheet.read_text(errors="replace"))
        if urls:
            found[sheet.relative_to(out).as_posix()] = urls
    return found


def git_repository(root: Path) -> str | None:
    """owner/name from `git remote get-url origin` when it is on GitHub."""
    try:
        url = subprocess.run(["git", "-C", str(root), "remote", "get-url", "origin"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return None
    m = re.search(r"github\.com[:/](?P<name>[^/]+/[^/]+?)(?:\.git)?$", url)
    return m["name"] if m else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.site", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site")
    parser.add_argument("--repository", default=os.environ.get("SITE_REPOSITORY") or None,
                        help="owner/name on GitHub for the Binder links (default: the git remote "
                             "'origin' if on GitHub, else OWNER/minildr as in the README's badge)")
    parser.add_argument("--branch", default="HEAD")
    parser.add_argument("--mmdc", type=Path, default=ROOT / "build" / "site-node" / "node_modules" / ".bin" / "mmdc")
    parser.add_argument("--chromium", type=Path, default=Path(shutil.which("chromium") or "/usr/bin/chromium"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    repo = rewrite.Repository(args.repository or git_repository(ROOT) or rewrite.Repository.name, args.branch)
    renderer = diagrams.Renderer(args.mmdc, args.chromium, args.out.parent / "site-cache")
    builder = Builder(ROOT, args.out.resolve(), repo, renderer)
    try:
        builder.prepare()
    except (ValueError, diagrams.MermaidError, FileNotFoundError) as error:
        print(f"site: {error}", file=sys.stderr)
        return 1
    builder.sphinx()
    builder.committed_downloads()
    outside = external_resources(builder.out)
    if outside:
        print("site: these pages would fetch from outside the site:", file=sys.stderr)
        for page, urls in outside.items():
            print(f"  {page}: {', '.join(urls)}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    pages = builder.page_count()
    report = {"pages": pages, "seconds": round(seconds, 1), "diagrams": builder.diagrams,
              "diagrams_drawn_now": renderer.drawn, "widgets_as_text": builder.widgets,
              "attachments": builder.attachments, "cell_ids": len(builder.cell_ids),
              "repository": repo.name}
    (builder.out / "_site.json").write_text(json.dumps(report, indent=1))
    print(f"site: {pages} pages in {seconds:.1f} s → {builder.out.relative_to(ROOT) if builder.out.is_relative_to(ROOT) else builder.out}/index.html "
          f"({builder.diagrams} diagrams, {renderer.drawn} drawn now; {builder.widgets} progress bars as text; "
          f"{builder.attachments} attachments; {len(builder.cell_ids)} cell ids, all unique)")
    return 0
