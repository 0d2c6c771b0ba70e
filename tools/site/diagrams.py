"""Mermaid diagrams as SVG pictures, drawn at build time by mermaid-cli (npm) in Debian's Chromium.

A static page cannot run mermaid.js without fetching it, and Sphinx prints a
```mermaid block as code. mermaid-cli (`mmdc`) draws the same diagram
JupyterLab draws, headless, with the browser we already use for tests; its
puppeteer is told to use that browser and never downloads one. Each picture
is cached by the hash of its source, so an unchanged diagram costs nothing.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

BLOCK = re.compile(r"^(?P<fence>```+|~~~+)[ \t]*\{?mermaid\}?[ \t]*\n(?P<body>.*?)^(?P=fence)[ \t]*$",
                   re.M | re.S)
QUOTED_LABEL = re.compile(r'"(?P<label>[^"]+)"')
BARE_LABEL = re.compile(r"[\[{(]+(?P<label>[^\]})\"]+)[\]})]+")
VIEWBOX = re.compile(r'viewBox="[-\d.]+ [-\d.]+ (?P<w>[\d.]+) (?P<h>[\d.]+)"')
# Labels as SVG text rather than HTML in <foreignObject>: the picture then
# draws the same in an <img> in every browser.
MERMAID_CONFIG = {"theme": "default", "flowchart": {"htmlLabels": False}}
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class MermaidError(RuntimeError):
    pass


class Renderer:
    """Draws mermaid sources to SVG files in `out_dir` with `mmdc`, caching in `cache_dir`."""

    def __init__(self, mmdc: Path, chromium: Path, cache_dir: Path):
        self.mmdc, self.chromium, self.cache_dir = mmdc, chromium, cache_dir
        self.drawn = 0

    def _configs(self) -> tuple[Path, Path]:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        puppeteer = self.cache_dir / "puppeteer.json"
        puppeteer.write_text(json.dumps({"executablePath": str(self.chromium), "args": CHROMIUM_FLAGS}))
        mermaid = self.cache_dir / "mermaid.json"
        mermaid.write_text(json.dumps(MERMAID_CONFIG))
        return puppeteer, mermaid

    def svg(self, source: str) -> bytes:
        key = hashlib.sha256(json.dumps([source, MERMAID_CONFIG]).encode()).hexdigest()[:16]
        cached = self.cache_dir / f"{key}.svg"
        if not cached.exists():
            if not self.mmdc.exists():
                raise MermaidError(f"{self.mmdc} not found: `make site` installs mermaid-cli from npm")
            puppeteer, mermaid = self._configs()
            src = self.cache_dir / f"{key}.mmd"
            src.write_text(source)
            tmp = self.cache_dir / f"{key}.tmp.svg"
            run = subprocess.run([str(self.mmdc), "--quiet", "-p", str(puppeteer), "-c", str(mermaid),
                                  "-b", "white", "-i", str(src), "-o", str(tmp)],
                                 capture_output=True, text=True, timeout=180)
            if run.returncode != 0 or not tmp.exists():
                raise MermaidError(f"mermaid-cli could not draw the diagram:\n{source}\n{run.stderr[-2000:]}")
            tmp.write_bytes(with_intrinsic_size(tmp.read_bytes()))
            tmp.replace(cached)
            self.drawn += 1
        return cached.read_bytes()


def with_intrinsic_size(svg: bytes) -> bytes:
    """mmdc writes width="100%"; an <img> needs a real size (naturalWidth), taken from the viewBox."""
    text = svg.decode()
    box = VIEWBOX.search(text)
    if box:
        width, height = float(box["w"]), float(box["h"])
        text = re.sub(r'(<svg\b[^>]*?)\swidth="100%"', r"\1", text, count=1)
        text = text.replace("<svg ", f'<svg width="{width:.0f}" height="{height:.0f}" ', 1)
    return text.encode()


def alt_text(source: str) -> str:
    """The diagram's labels in order, for readers who do not see the picture."""
    pattern = QUOTED_LABEL if QUOTED_LABEL.search(source) else BARE_LABEL
    labels = [re.sub(r"<br\s*/?>", " ", m["label"]).strip() for m in pattern.finditer(source)]
    kind = source.strip().split()[0] if source.strip() else "diagram"
    text = f"{kind}: " + "; ".join(dict.fromkeys(label for label in labels if label))
    return text.replace("[", "(").replace("]", ")")[:400]


def replace_blocks(text: str, draw) -> tuple[str, int]:
    """Each ```mermaid block becomes an image; `draw(source)` returns the picture's path from the page."""
    count = 0

    def picture(m: re.Match) -> str:
        nonlocal count
        count += 1
        return f"![{alt_text(m['body'])}]({draw(m['body'])})"
    return BLOCK.sub(picture, text), count
