"""Output on a narrow encoding, and paths shown short (minildr/console.py).

Found by running the course on Windows (tools/windows-under-wine.sh): there a
pipe's encoding is cp1252 unless UTF-8 mode is on, and the commands died with
UnicodeEncodeError halfway through their output. PYTHONIOENCODING=cp1252 gives
any machine that encoding, so the real failure is triggered here too.
"""
from __future__ import annotations

import io
import ntpath
import os
import posixpath
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from minildr import SUFFIX
from minildr.console import shown_path, tolerant_output
from minildr.course.selfcheck import NotebookResult, report
from helpers import ROOT, python_m

NARROW = {**os.environ, "PYTHONIOENCODING": "cp1252", "PYTHONPATH": str(ROOT)}


def cp1252_stream(errors: str = "strict", encoding: str = "cp1252") -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors=errors, newline="\n")


@pytest.mark.parametrize("errors", ["strict", "surrogateescape"])   # Windows under wine: the latter
def test_a_narrow_stream_escapes_what_it_cannot_encode(errors):
    stream = cp1252_stream(errors)
    tolerant_output(stream)
    print("\u2705 done, Zo\u00eb", file=stream)
    stream.flush()
    assert stream.buffer.getvalue() == b"\\u2705 done, Zo\xeb\n"


def test_a_utf8_stream_keeps_its_error_handler():
    stream = cp1252_stream("surrogateescape", "utf-8")
    tolerant_output(stream)
    assert stream.errors == "surrogateescape"


def test_without_it_the_narrow_stream_fails():
    """What the commands died of: the bug this module exists for."""
    with pytest.raises(UnicodeEncodeError):
        print("\u2705", file=cp1252_stream())


def test_streams_without_reconfigure_are_left_alone():
    class KernelStream:          # ipykernel's OutStream has no reconfigure
        errors = "strict"
    tolerant_output(KernelStream())


def test_cli_prints_a_path_outside_the_code_page(built, tmp_path):
    folder = tmp_path / "plugins \u2713"
    folder.mkdir()
    plugin = shutil.copy(built["greet"], folder / f"greet{SUFFIX}")
    done = subprocess.run([sys.executable, "-m", "minildr", "inspect", str(plugin)],
                          capture_output=True, env=NARROW, timeout=120)
    assert done.returncode == 0, done.stderr.decode("cp1252", "replace")
    assert b"plugins \\u2713" in done.stdout and b"plugin    greet 0.1.0" in done.stdout


def test_editor_shows_text_outside_the_code_page(tmp_path):
    note = tmp_path / "note.txt"
    note.write_text("Dear Zo\u00eb \u263a\n", encoding="utf-8")
    (tmp_path / "no-plugins").mkdir()
    done = subprocess.run([sys.executable, "-m", "examples.editor", str(note),
                           "--plugins", str(tmp_path / "no-plugins")],
                          capture_output=True, env=NARROW, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr.decode("cp1252", "replace")
    assert b"Dear Zo\xeb \\u263a" in done.stdout


def test_selfcheck_table_on_a_narrow_pipe(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3",
                                                           "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_code_cell("from minildr.course.selfcheck import task\n"
                                          "@task('9.1', 'first')\ndef _(): pass")]
    nbformat.write(nb, tmp_path / "09-one.ipynb")
    done = subprocess.run(python_m("minildr.course.selfcheck", tmp_path),
                          capture_output=True, env=NARROW, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr.decode("cp1252", "replace")
    assert b"\\u2705 9.1" in done.stdout and b"1/1 tasks done" in done.stdout


def test_a_path_on_another_windows_drive_is_shown_whole():
    """ntpath.relpath raises ValueError across drives (checkout on D:, temp on C:)."""
    path = r"C:\Users\runner\AppData\Local\Temp\09-one.ipynb"
    assert shown_path(path, r"D:\a\course", ntpath) == path
    assert shown_path(r"D:\a\course\exercises\01.ipynb", r"D:\a\course", ntpath) == \
        r"exercises\01.ipynb"
    assert shown_path("/tmp/x/09.ipynb", "/tmp", posixpath) == "x/09.ipynb"


def test_the_progress_table_names_a_notebook_relative_to_here():
    here = Path("exercises") / "02-smallest-plugin.ipynb"
    assert report([NotebookResult(here.resolve(), [])]).splitlines()[0] == str(here)
