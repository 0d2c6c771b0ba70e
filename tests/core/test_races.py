"""Several processes building and opening one plugin name in one folder at once.

A learner's duplicated notebook, `make check` beside an open notebook, a
class on one hub: each process must load the bytes *its* build made, never
see a half-written source or library, and never be told that a complete
file "changed while it was being read" (the review's race test, made a test:
see race_child.py).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import minildr
from minildr import image

from helpers import write_plugin

HERE = Path(__file__).resolve().parent
PROCESSES, ROUNDS = 4, 50


def race(mode: str, folder: Path) -> None:
    start = time.time() + 2.0              # every process imports minildr, then all start
    children = [subprocess.Popen([sys.executable, str(HERE / "race_child.py"), mode, str(i),
                                  str(ROUNDS), str(folder), str(start)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for i in range(PROCESSES)]
    reports = [(child.communicate(timeout=900)[0], child.returncode) for child in children]
    failures = [line for out, _ in reports for line in out.splitlines() if line.strip()]
    assert not failures, f"{len(failures)} failed round(s), e.g.:\n" + "\n".join(failures[:5])
    assert all(code == 0 for _, code in reports)


@pytest.mark.parametrize("mode", ["build", "cell"])
def test_processes_building_one_name_each_load_their_own(tmp_path, mode):
    race(mode, tmp_path)


def test_open_of_what_build_returned_loads_what_it_built(tmp_path):
    """Another build renames its file over the name between this build and the open."""
    for folder in "ab":
        (tmp_path / folder).mkdir()
    mine = write_plugin(tmp_path / "a", "who", "int who(void) { return 1; }\n",
                        "int who(void);\n")
    theirs = write_plugin(tmp_path / "b", "who", "int who(void) { return 2; }\n",
                          "int who(void);\n")
    theirs.replace(mine)                                 # as another build installs
    with minildr.open(mine) as plugin:                   # the path build returned
        assert plugin.lookup("who", "int (void)")() == 1
    with minildr.open(str(mine)) as plugin:              # the file by its name: the other one
        assert plugin.lookup("who", "int (void)")() == 2
    assert repr(mine) == repr(Path(str(mine)))           # it shows as the Path it is


def test_a_rename_elsewhere_is_not_a_change(tmp_path):
    """A hard link added or removed moves the file's ctime only: same image, no refusal."""
    path = write_plugin(tmp_path, "still", "int still(void) { return 7; }\n",
                        "int still(void);\n")
    first = image.read(str(path))
    link = tmp_path / "link.so"
    link.hardlink_to(path)
    link.unlink()                                        # ctime moved, contents did not
    assert image.read(str(path)) is first


def test_a_file_written_in_place_is_read_again(tmp_path):
    path = write_plugin(tmp_path, "moved", "int moved(void) { return 7; }\n",
                        "int moved(void);\n")
    first = image.read(str(path))
    data = path.read_bytes()
    with open(path, "r+b") as f:                         # same inode, same size, new bytes
        f.write(data[:-1] + bytes([data[-1] ^ 1]))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, first.identity[3]))   # even with the old mtime back
    again = image.read(str(path))
    assert again is not first and again.sha256 != first.sha256


def test_threads_building_one_name_in_one_process_each_succeed(tmp_path):
    """Case 18: the threads of one process building one plugin shared the staged name
    `.NAME.PID.tmp`, and a build raised FileNotFoundError (2 of 12 builds) or installed a file
    another thread was still writing. Each now stages under a name of its own
    (atomic.write_atomically): every build succeeds and what stays installed is whole."""
    from concurrent.futures import ThreadPoolExecutor
    src = tmp_path / "src"
    src.mkdir()
    header = src / "who.h"
    header.write_text("int who(void);\n")
    sources = []
    for i in range(4):
        source = src / f"who{i}.c"
        source.write_text(f"int who(void) {{ return {i}; }}\n")
        sources.append(source)
    out = tmp_path / "out"

    def build(i: int) -> int:
        for _ in range(2):
            minildr.build([sources[i]], name="who", exports=header, out_dir=out)
        return i

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(build, range(4))) == [0, 1, 2, 3]
    assert [p.name for p in out.iterdir()] == [f"who{minildr.SUFFIX}"]    # nothing staged left
    with minildr.open(str(out / f"who{minildr.SUFFIX}")) as plugin:   # whole: it loads
        assert plugin.lookup("who", "int (void)")() in range(4)
