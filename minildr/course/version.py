"""Is this kernel's minildr the one this copy of the course was written for?

On a hub the package is installed once, read-only, in the image, and each
student pulls the notebooks (nbgitpuller) into a clone of their own. A
teacher who pushes new notebooks that need a newer minildr, and forgets to
rebuild the image, gives every student notebooks that fail half-way, for no
reason they can see. So each notebook's first cell calls
`check_course_version()`: silent when the two match, otherwise one note
that says which is older and what to do, before anything fails.

Two signals, from the course's checkout (the folder above the notebook that
holds minildr's pyproject.toml) and from the installed package:
the version numbers, which say which is older; and a digest of the
package's sources, which catches a changed package whose version was not
bumped. An editable install (`make`) imports the checkout itself: always
the same.
"""
from __future__ import annotations

import enum
import hashlib
import importlib.metadata
import re
from pathlib import Path
from typing import Optional, Tuple

PACKAGE = Path(__file__).resolve().parents[1]       # the minildr this kernel imports
SOURCES = ("*.py", "*.h")                            # what makes the package behave


class Match(enum.Enum):
    SAME = "same"              # the installed minildr is this course's
    OLDER = "older"            # installed version < the course's
    NEWER = "newer"            # installed version > the course's
    DIFFERENT = "different"    # same version number, other code
    NO_COURSE = "no course"    # not run from a course checkout: nothing to compare


def find_course(start: Path) -> Optional[Path]:
    """The course checkout holding `start`: the nearest folder with minildr's pyproject.toml."""
    here = start.resolve()
    for folder in (here, *here.parents):
        project = folder / "pyproject.toml"
        if project.is_file() and (folder / "minildr").is_dir() and \
                re.search(r'(?m)^name\s*=\s*"minildr"', project.read_text(encoding="utf-8")):
            return folder
    return None


def project_version(pyproject: Path) -> str:
    """The [project] version of a pyproject.toml (its first `version = "..."` line)."""
    found = re.search(r'(?m)^version\s*=\s*"([^"]+)"', pyproject.read_text(encoding="utf-8"))
    return found.group(1) if found else "0"


def installed_version() -> str:
    try:
        return importlib.metadata.version("minildr")
    except importlib.metadata.PackageNotFoundError:     # imported from a folder, not installed
        return "0"


def _number(version: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def source_digest(package: Path) -> str:
    """SHA-256 over the package's source files (relative names and contents)."""
    digest = hashlib.sha256()
    files = sorted({p for pattern in SOURCES for p in package.rglob(pattern)
                    if "__pycache__" not in p.parts})
    for path in files:
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def compare(start: Path = Path("."), package: Path = PACKAGE,
            installed: Optional[str] = None) -> Tuple[Match, str, str]:
    """(how they match, the course's version, the installed version)."""
    course = find_course(start)
    installed = installed or installed_version()
    if course is None:
        return Match.NO_COURSE, "", installed
    wanted = project_version(course / "pyproject.toml")
    if (course / "minildr").resolve() == package.resolve():
        return Match.SAME, wanted, installed
    if _number(installed) < _number(wanted):
        return Match.OLDER, wanted, installed
    if _number(installed) > _number(wanted):
        return Match.NEWER, wanted, installed
    if source_digest(course / "minildr") != source_digest(package):
        return Match.DIFFERENT, wanted, installed
    return Match.SAME, wanted, installed


def message(match: Match, wanted: str, installed: str) -> str:
    """What to tell the learner ('' when all is well). No path of the machine in it."""
    if match is Match.OLDER:
        return (f"Note: this course needs minildr {wanted}, but this kernel imports minildr "
                f"{installed}, an older one, so some cells will fail. Ask your teacher to "
                "rebuild the hub's image (on your own machine: run `make` in the course "
                "folder), then restart the kernel.")
    if match is Match.NEWER:
        return (f"Note: this kernel's minildr {installed} is newer than this copy of the "
                f"course ({wanted}). Update your copy: open the course link again "
                "(nbgitpuller), or `git pull` in the course folder.")
    if match is Match.DIFFERENT:
        return (f"Note: this kernel's minildr {installed} was not installed from this copy "
                "of the course (its code differs from the course's minildr/ folder), so a "
                "cell may fail. Open the course link again to update your copy; if cells "
                "still fail, ask your teacher to rebuild the hub's image.")
    return ""


def check_course_version(start: Path = Path(".")) -> Match:
    """Print a note if this kernel's minildr does not match the course; silent if it does."""
    match, wanted, installed = compare(start)
    text = message(match, wanted, installed)
    if text:
        print(text)
    return match
