"""Which files make the site, found by glob so that added or renamed notebooks need no edit here.

Other people add, split and renumber notebooks; a hard-coded list would drop
a new one silently. A section is a folder of the repository; its pages are its
notebooks in name order (the names start with their number), then its other
Markdown files (a glossary, say), with the folder's README.md first.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path


class Section(enum.Enum):
    """The folders of the course the site shows, in the order of its sidebar."""
    COURSE = "notebooks"
    EXERCISES = "exercises"
    SOLUTIONS = "solutions"

    @property
    def caption(self) -> str:
        return {"notebooks": "Course", "exercises": "Exercises", "solutions": "Solutions"}[self.value]


@dataclass(frozen=True)
class Page:
    section: Section
    path: Path                      # relative to the repository root, e.g. notebooks/02-smallest-plugin.ipynb

    @property
    def is_notebook(self) -> bool:
        return self.path.suffix == ".ipynb"


def section_pages(root: Path, section: Section) -> list[Page]:
    """README.md first, then the notebooks in name order, then the other Markdown files."""
    folder = root / section.value
    notebooks = sorted(folder.glob("*.ipynb"))
    markdown = sorted(p for p in folder.glob("*.md") if p.name != "README.md")
    readme = [folder / "README.md"] if (folder / "README.md").is_file() else []
    return [Page(section, p.relative_to(root)) for p in readme + notebooks + markdown]


def discover(root: Path) -> dict[Section, list[Page]]:
    """Every page of every section; a section with no notebook is an error (a moved folder, a typo)."""
    found = {section: section_pages(root, section) for section in Section}
    for section, pages in found.items():
        if not any(page.is_notebook for page in pages):
            raise FileNotFoundError(f"{section.value}/: no notebook found (*.ipynb); "
                                    "run `make site` from the repository's root")
    return found


def partner(root: Path, page: Page, section: Section) -> Path | None:
    """The same-named file in another section (notebook 02 ↔ exercise 02 ↔ its solution), if there is one."""
    other = root / section.value / page.path.name
    return other.relative_to(root) if other.is_file() else None
