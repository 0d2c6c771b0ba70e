"""minildr.course.version: the first cell's note when the kernel's minildr is not the course's.

A course checkout is faked in tmp_path (a pyproject.toml naming minildr and
a minildr/ folder), the "installed" package is another folder, so every
case (same, older, newer, same version but other code) is really computed.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from minildr.course import version
from minildr.course.version import Match

ROOT = Path(__file__).resolve().parents[2]


def course(folder: Path, number: str, code: str = "X = 1\n") -> Path:
    (folder / "minildr").mkdir(parents=True)
    (folder / "minildr" / "__init__.py").write_text(code)
    (folder / "notebooks").mkdir()
    (folder / "pyproject.toml").write_text(f'[project]\nname = "minildr"\nversion = "{number}"\n')
    return folder / "notebooks"


def installed(folder: Path, code: str = "X = 1\n") -> Path:
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(code)
    return folder


def test_this_checkout_matches_the_minildr_it_imports(capsys):
    assert version.check_course_version(ROOT / "notebooks") is Match.SAME
    assert capsys.readouterr().out == ""            # silent: the notebooks' outputs stay as saved


def test_an_older_install_says_so_and_what_to_do(tmp_path):
    notebooks = course(tmp_path / "clone", "0.3.0")
    match = version.compare(notebooks, installed(tmp_path / "site"), installed="0.2.9")
    assert match == (Match.OLDER, "0.3.0", "0.2.9")
    text = version.message(*match)
    assert "needs minildr 0.3.0" in text and "0.2.9, an older one" in text
    assert "ask your teacher to rebuild the hub's image" in text.lower()
    assert str(tmp_path) not in text                 # no path of this machine


def test_a_newer_install_asks_to_update_the_copy(tmp_path):
    notebooks = course(tmp_path / "clone", "0.1.0")
    match = version.compare(notebooks, installed(tmp_path / "site"), installed="0.2.0")
    assert match[0] is Match.NEWER
    assert "Update your copy" in version.message(*match)


def test_same_version_other_code_is_caught_by_the_digest(tmp_path):
    notebooks = course(tmp_path / "clone", "0.1.0", code="X = 2\n")
    site = installed(tmp_path / "site", code="X = 1\n")
    assert version.compare(notebooks, site, installed="0.1.0")[0] is Match.DIFFERENT
    shutil.copy(notebooks.parent / "minildr" / "__init__.py", site / "__init__.py")
    (site / "__pycache__").mkdir()
    (site / "__pycache__" / "x.pyc").write_bytes(b"compiled")     # not source: ignored
    assert version.compare(notebooks, site, installed="0.1.0")[0] is Match.SAME


def test_outside_a_course_there_is_nothing_to_compare(tmp_path, capsys):
    assert version.check_course_version(tmp_path) is Match.NO_COURSE
    assert capsys.readouterr().out == ""


def test_the_check_prints_the_note(tmp_path, capsys, monkeypatch):
    notebooks = course(tmp_path / "clone", "9.0.0")
    monkeypatch.setattr(version, "installed_version", lambda: "0.1.0")
    monkeypatch.setattr(version, "PACKAGE", installed(tmp_path / "site"))
    monkeypatch.setattr(version.compare, "__defaults__", (Path("."), version.PACKAGE, None))
    assert version.check_course_version(notebooks) is Match.OLDER
    assert capsys.readouterr().out.startswith("Note: this course needs minildr 9.0.0")


def test_every_notebook_checks_in_its_first_cell_that_imports_minildr():
    for path in sorted((ROOT / "notebooks").glob("0*.ipynb")):
        cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
                 if c["cell_type"] == "code"]
        first = next(c for c in cells if re.search(r"(?m)^(import|from) minildr",
                                                   "".join(c["source"])))
        assert "check_course_version()" in "".join(first["source"]), path.name
