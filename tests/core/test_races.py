"""Several processes building and opening one plugin name in one folder at once.

A learner's duplicated notebook, `make check` beside an open notebook, a
class on one hub: each process must load the bytes *its* build made, never
see a half-written source or library, and never be told that a complete
file "changed while it was being read" (the review's race test, made a test:
see race_child.py).

The two races of PROCESSES processes run ROUNDS rounds each: 10 in make test
(about 3 CPU s per race: a build is ~60 ms of compiler runs; the processes
are forked from one that imported minildr, ~0.3 s of start and import paid
once, not four times), 50 in make fuzz (helpers.stress), where rarer
interleavings show up (issue 16's inode-number reuse showed at round 33).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import minildr
from minildr import files, image

from helpers import stress, write_plugin

HERE = Path(__file__).resolve().parent
PROCESSES, ROUNDS = 4, stress(10, 50)


def race(mode: str, folder: Path) -> None:
    """PROCESSES processes race ROUNDS rounds: forked from one Python once it has imported
    minildr (race_child.fork_racers), so that they pay one start and one import."""
    start = time.time() + 1.0              # minildr imported, the racers forked, then all start
    racers = subprocess.run([sys.executable, str(HERE / "race_child.py"), mode, "fork",
                             str(ROUNDS), str(folder), str(start), str(PROCESSES)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=900)
    failures = [line for line in racers.stdout.splitlines() if line.strip()]
    assert not failures, f"{len(failures)} failed round(s), e.g.:\n" + "\n".join(failures[:5])
    assert racers.returncode == 0


@pytest.mark.fuzz
@pytest.mark.parametrize("mode", ["build", "cell"])
def test_processes_building_one_name_each_load_their_own(tmp_path, mode):
    race(mode, tmp_path)


def _two_builds_of_one_name(tmp_path: Path) -> tuple:
    """`who` built in two folders: ours (who() = 1) and another process's (who() = 2)."""
    for folder in "ab":
        (tmp_path / folder).mkdir()
    mine = write_plugin(tmp_path / "a", "who", "int who(void) { return 1; }\n",
                        "int who(void);\n")
    theirs = write_plugin(tmp_path / "b", "who", "int who(void) { return 2; }\n",
                          "int who(void);\n")
    return mine, theirs


def test_open_of_what_build_returned_loads_what_it_built(tmp_path):
    """Another build renames its file over the name between this build and the open."""
    mine, theirs = _two_builds_of_one_name(tmp_path)
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


def _install_on_a_reused_inode(target: Path, data: bytes) -> bool:
    """Put `data` at `target` the way a third build can on ext4: in a new file that gets
    the inode number `target`'s file had, renamed over the name.

    A filler renamed over `target` frees its inode (as a second build installing
    does); ext4 gives the lowest free number of the folder's group to the next
    file created, usually that one. Files that got another number are kept
    until the end, so that the next try comes closer. Whether the number was
    reused is returned: a file system that never reuses one cannot show this race.
    """
    old = target.stat()
    filler = target.with_name(".filler")
    filler.write_bytes(b"filler")
    filler.replace(target)                            # frees the old inode
    missed = []
    try:
        for attempt in range(50):
            staged = target.with_name(f".staged{attempt}")
            staged.write_bytes(data)                  # a new file: maybe the freed number
            st = staged.stat()
            if (st.st_dev, st.st_ino) == (old.st_dev, old.st_ino):
                os.utime(staged, ns=(old.st_atime_ns, old.st_mtime_ns + 10**9))  # a later build
                staged.replace(target)
                return True
            missed.append(staged)
        return False
    finally:
        for path in missed:
            path.unlink()


def test_another_build_on_our_reused_inode_number_is_not_taken_for_ours(tmp_path):
    """Issue 16's `round 33: built 3, called back 2`: a newer build of another process
    was written to a file that got the inode number of this process's freed
    build, and was taken for this build's file changed in place."""
    mine, theirs = _two_builds_of_one_name(tmp_path)
    with open(mine, "rb") as f:
        if files.generation(f.fileno()) is None:
            pytest.skip("this file system keeps no inode generation numbers (tmpfs, "
                        "overlayfs, NFS): a reused number cannot be told from an edit")
    if not _install_on_a_reused_inode(mine, theirs.read_bytes()):
        pytest.skip("this file system did not reuse a freed inode number in 50 tries")
    with minildr.open(mine) as plugin:                   # the path build returned
        assert plugin.lookup("who", "int (void)")() == 1
    with minildr.open(str(mine)) as plugin:              # the file by its name: the other one
        assert plugin.lookup("who", "int (void)")() == 2


def test_a_built_file_edited_in_place_is_read_again(tmp_path):
    """The user who patches the file build returned (a tampering demo) loads the patch."""
    mine = write_plugin(tmp_path, "who", "int who(void) { return 1; }\n", "int who(void);\n")
    built = image.read(mine)
    data = mine.read_bytes()
    with open(mine, "r+b") as f:                         # same inode object, new bytes
        f.write(data + b"\0patched")
    again = image.read(mine)
    assert again.data == data + b"\0patched" and again.sha256 != built.sha256
    with minildr.open(mine) as plugin:
        assert plugin.sha256 == again.sha256 and plugin.lookup("who", "int (void)")() == 1


def test_where_the_file_system_keeps_no_generation_a_built_file_edited_in_place_is_read_again(
        tmp_path, monkeypatch, caplog):
    """tmpfs, overlayfs, NFS: no generation number, so a file with our inode number is
    taken for our file edited in place (a learner tampering with a built plugin must
    see the tampered bytes refused, on any file system), and the log says what this
    file system cannot tell apart."""
    monkeypatch.setattr(files, "generation", lambda fd: None)
    mine = write_plugin(tmp_path, "who", "int who(void) { return 1; }\n", "int who(void);\n")
    data = mine.read_bytes()
    with open(mine, "r+b") as f:                         # our inode, edited in place
        f.write(data + b"\0patched")
    with caplog.at_level("INFO", logger="minildr"):
        assert image.read(mine).data == data + b"\0patched"
    assert "keeps no generation numbers" in caplog.text
    assert image.read(str(mine)).data == data + b"\0patched"


def test_reading_the_same_file_checks_the_descriptor_read(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"one")
    st = path.stat()
    with open(path, "rb") as f:
        gen = files.generation(f.fileno())
    if gen is None:
        pytest.skip("this file system keeps no inode generation numbers")
    assert files.read_same_file(path, 100, (st.st_dev, st.st_ino, gen))[0] == b"one"
    assert files.read_same_file(path, 100, (st.st_dev, st.st_ino, gen ^ 1)) is None
    (tmp_path / "g").write_bytes(b"two")
    (tmp_path / "g").replace(path)
    assert files.read_same_file(path, 100, (st.st_dev, st.st_ino, gen)) is None


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
