"""Where the course's own files are: its examples and headers, from any folder.

An exercise notebook runs in many places: `exercises/` or `solutions/` of a
checkout, nbgrader's `source/`, `release/` and `autograded/<student>/`
folders (which hold the notebooks but not `examples/`), a student's clone
on a hub whose minildr is installed once for everyone. A path such as
`../examples` holds in the first of these only. So the notebooks ask here:

    from minildr.course import course_files
    EXAMPLES = course_files.examples()      # a Path; EXAMPLES / "greet" / "greet.c"

and this looks, in order, for a course checkout (a folder with minildr's
pyproject.toml and an examples/ folder):

1. named by the environment variable MINILDR_COURSE (a teacher's override);
2. holding the current folder (a clone, exercises/, solutions/);
3. holding the minildr this kernel imports (an editable install: `make`);
4. the folder pip installed minildr from (a hub's or Binder's image keeps
   its source: pip records it in the installed package's direct_url.json).
"""
from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import unquote, urlparse

from .version import PACKAGE, find_course

COURSE_VARIABLE = "MINILDR_COURSE"


class CourseNotFound(FileNotFoundError):
    """No course checkout with an examples/ folder was found from here."""


def _installed_from() -> Optional[Path]:
    """The local folder pip installed minildr from, if it recorded one (PEP 610)."""
    try:
        text = importlib.metadata.distribution("minildr").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    url = urlparse(json.loads(text).get("url", ""))
    return Path(unquote(url.path)) if url.scheme == "file" else None


def _candidates(start: Path) -> Iterator[Optional[Path]]:
    named = os.environ.get(COURSE_VARIABLE)
    if named:
        found = find_course(Path(named))
        if found is None or not (found / "examples").is_dir():
            raise CourseNotFound(f"{COURSE_VARIABLE}={named} is not a course folder (one "
                                 "that holds examples/ and minildr's pyproject.toml): "
                                 "correct it, or unset it")
        yield found
    yield find_course(start)
    yield find_course(PACKAGE.parent)
    source = _installed_from()
    if source is not None and source.is_dir():
        yield find_course(source)


def course_root(start: Path = Path(".")) -> Path:
    """The course checkout this notebook belongs to (see the module docstring)."""
    for folder in _candidates(start):
        if folder is not None and (folder / "examples").is_dir():
            return folder
    raise CourseNotFound(
        "cannot find the course's examples/ folder: run the notebook inside the course "
        "folder, or set the environment variable MINILDR_COURSE to the course folder "
        "(the one that holds examples/ and pyproject.toml)")


def examples(start: Path = Path(".")) -> Path:
    """The course's examples/ folder (C sources, headers, the editor, the Go modules)."""
    return course_root(start) / "examples"
