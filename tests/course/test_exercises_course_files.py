"""course_files: the exercise notebooks find the course's examples from any folder.

nbgrader runs them in source/, release/ and autograded/<student>/, a hub in a
student's clone with minildr installed for everyone: none has ../examples.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from minildr.course import course_files
from helpers import ROOT


def fake_checkout(folder: Path) -> Path:
    (folder / "minildr").mkdir(parents=True)
    (folder / "examples").mkdir()
    (folder / "pyproject.toml").write_text('[project]\nname = "minildr"\nversion = "9.9"\n')
    return folder


def test_from_a_folder_outside_the_course_the_imported_packages_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(course_files.COURSE_VARIABLE, raising=False)
    assert course_files.examples() == ROOT / "examples"
    assert (course_files.examples() / "greet" / "greet.c").is_file()


def test_the_checkout_holding_the_current_folder_comes_first(tmp_path, monkeypatch):
    clone = fake_checkout(tmp_path / "clone")
    (clone / "exercises").mkdir()
    monkeypatch.chdir(clone / "exercises")
    monkeypatch.delenv(course_files.COURSE_VARIABLE, raising=False)
    assert course_files.examples() == (clone / "examples").resolve()


def test_the_variable_names_the_course_and_a_wrong_one_is_a_clear_error(tmp_path, monkeypatch):
    other = fake_checkout(tmp_path / "other")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(course_files.COURSE_VARIABLE, str(other))
    assert course_files.examples() == (other / "examples").resolve()
    monkeypatch.setenv(course_files.COURSE_VARIABLE, str(tmp_path / "nowhere"))
    with pytest.raises(course_files.CourseNotFound, match="MINILDR_COURSE=.*nowhere"):
        course_files.examples()


def test_an_installed_package_finds_the_folder_pip_installed_it_from(tmp_path, monkeypatch):
    """A hub's shared venv: minildr in site-packages, not in a checkout (PEP 610's record)."""
    source = fake_checkout(tmp_path / "image-source")
    monkeypatch.setattr(course_files, "PACKAGE", tmp_path / "site-packages" / "minildr")
    monkeypatch.setattr(course_files, "_installed_from", lambda: source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(course_files.COURSE_VARIABLE, raising=False)
    assert course_files.examples() == (source / "examples").resolve()
    monkeypatch.setattr(course_files, "_installed_from", lambda: None)
    with pytest.raises(course_files.CourseNotFound, match="set the environment variable "
                                                          "MINILDR_COURSE"):
        course_files.examples()


def test_pips_record_of_this_install_is_read():
    assert course_files._installed_from() in (ROOT, None)
