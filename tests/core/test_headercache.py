"""The exports header's preprocessing remembered within a process (minildr.headercache).

Each test counts the preprocessor runs, so that a remembered result is shown
to be used, and then changes one thing the preprocessor reads or searches:
the rebuilt plugin's manifest must say what the changed files say. A key or
fingerprint that missed that thing would give the old declarations back.
"""
from __future__ import annotations

import importlib
import os
import shutil
import time
from pathlib import Path
from typing import List, Tuple

import pytest

import minildr
from minildr import files, headercache

from helpers import EXAMPLES
from platforms import requires_posix

builder = importlib.import_module("minildr.build")

pytestmark = requires_posix("GCC-style compilers only (MSVC's preprocessing is not remembered)")


@pytest.fixture
def preprocessed(monkeypatch):
    """The list of preprocessor runs (-E commands) made from now on, from a clean cache.

    The files these tests write are new, and what was read from a file changed less
    than files.SETTLED_NS before is never remembered: the clock the build reads
    (headercache.now_ns) is moved on by that much less 50 ms, as if each file had been
    written that long before, while a change made during a run still shows.
    """
    headercache.clear()
    runs = []
    real = builder.run_tool
    clock = headercache.now_ns
    monkeypatch.setattr(headercache, "now_ns",
                        lambda: clock() + files.SETTLED_NS - MARGIN_NS)

    def counting(cmd, **kwargs):
        if "-E" in cmd:
            runs.append(cmd)
        return real(cmd, **kwargs)
    monkeypatch.setattr(builder, "run_tool", counting)
    yield runs
    headercache.clear()


def project(tmp_path: Path, header: str, source: str, **files: str) -> Path:
    """tmp_path/src with p.h, p.c and `files` (name: text, "sub/x.h" allowed)."""
    src = tmp_path / "src"
    for name, text in {"p.h": header, "p.c": source, **files}.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    settle(tmp_path)
    return src


MARGIN_NS = 50_000_000      # `preprocessed`: a file changed this recently counts as changed


def settle(folder: Path) -> None:
    """Let what was just written under `folder` age past the `preprocessed` fixture's
    "changed since it started" margin, so that a result is not left unremembered for that
    reason alone: until the clock is MARGIN_NS past the newest ctime there (a file's times
    step with the kernel's tick, so they lag the clock, never lead it)."""
    newest = max(path.lstat().st_ctime_ns for path in [folder, *folder.rglob("*")])
    while time.time_ns() <= newest + MARGIN_NS:
        time.sleep(0.005)


@pytest.fixture
def fake_libc(tmp_path, monkeypatch) -> Path:
    """A copy of the stand-in standard headers, used instead of the package's: a folder
    the preprocessor searches by name (it is not staged), that a test may change."""
    from minildr import ctype
    fake = tmp_path / "fake_libc"
    shutil.copytree(ctype.FAKE_LIBC, fake)
    monkeypatch.setattr(ctype, "FAKE_LIBC", fake)
    return fake


def ret_project(tmp_path: Path) -> Tuple[Path, List[str]]:
    """An exports header including <ret.h>, found in an -I folder (where the compiler proper
    finds it too) unless the stand-in headers' folder, searched first, has one."""
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "ret.h").write_text("#define RET int\n")
    src = project(tmp_path, "#include <ret.h>\nRET f(void);\n", "RET f(void) { return 1; }\n")
    return src, [f"-I{inc}"]


def build(src: Path, tmp_path: Path, **kwargs) -> minildr.Manifest:
    path = minildr.build([src / "p.c"], name="p", exports=src / "p.h",
                         out_dir=tmp_path / "out", **kwargs)
    return minildr.read_manifest(path)


def ctype_of(manifest: minildr.Manifest) -> str:
    return manifest.exports["f"].ctype


def test_the_same_header_built_again_is_preprocessed_once(tmp_path, preprocessed):
    for _ in range(3):
        path = minildr.build([EXAMPLES / "greet/greet.c"], name="greet",
                             exports=EXAMPLES / "greet/greet.h", out_dir=tmp_path)
        assert minildr.read_manifest(path).exports["greet"].ctype == "const char *(void)"
    assert len(preprocessed) == 1


def test_what_was_read_from_a_file_just_changed_is_not_remembered(tmp_path, preprocessed,
                                                                  monkeypatch):
    """A file changed less than files.SETTLED_NS before the run may change again with the
    same times on a coarse clock (racy-git.txt): its preprocessing is run again."""
    monkeypatch.setattr(headercache, "now_ns", time.time_ns)        # the real clock
    include = tmp_path / "inc"
    include.mkdir()
    (include / "types.h").write_text("typedef int number;\n")
    exports = tmp_path / "f.h"
    exports.write_text('#include "types.h"\nnumber f(void);\n')
    source = tmp_path / "f.c"
    source.write_text('#include "types.h"\nnumber f(void) { return 1; }\n')
    time.sleep(0.2)              # older than a kernel tick, younger than files.SETTLED_NS
    for _ in range(2):
        minildr.build([source], name="f", exports=exports, out_dir=tmp_path / "out",
                      cflags=["-I", str(include)])
    assert len(preprocessed) == 2


def test_a_changed_include_is_seen(tmp_path, preprocessed):
    src = project(tmp_path, '#include "num.h"\nnum f(void);\n', "num f(void) { return 1; }\n",
                  **{"num.h": "typedef int num;\n"})
    assert ctype_of(build(src, tmp_path)) == "num (void)"
    assert build(src, tmp_path).types == "typedef int num;" and len(preprocessed) == 1
    (src / "num.h").write_text("typedef long num;\n")         # same size? no matter: its bytes
    assert build(src, tmp_path).types == "typedef long num;"
    assert len(preprocessed) == 2


def test_a_changed_include_of_the_same_size_and_time_is_seen(tmp_path, preprocessed):
    src = project(tmp_path, '#include "num.h"\nnum f(void);\n', "num f(void) { return 1; }\n",
                  **{"num.h": "typedef int  num;\n"})
    build(src, tmp_path)
    st = (src / "num.h").stat()
    (src / "num.h").write_text("typedef long num;\n")
    os.utime(src / "num.h", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert build(src, tmp_path).types == "typedef long num;"


def test_a_header_put_in_front_of_the_one_found_is_seen(tmp_path, preprocessed):
    """"num.h" found through -I first; then one beside the exports header, searched before."""
    src = project(tmp_path, '#include "num.h"\nnum f(void);\n', "num f(void) { return 1; }\n")
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "num.h").write_text("typedef int num;\n")
    assert build(src, tmp_path, cflags=[f"-I{inc}"]).types == "typedef int num;"
    (src / "num.h").write_text("typedef short num;\n")
    assert build(src, tmp_path, cflags=[f"-I{inc}"]).types == "typedef short num;"
    assert len(preprocessed) == 2


def test_a_header_added_to_a_folder_the_compiler_reads_by_name_is_seen(tmp_path, preprocessed,
                                                                        monkeypatch):
    """CPATH's folders are searched by the preprocessor itself (no mirror in the command):
    a header added to one searched before is found there."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    (second / "num.h").write_text("typedef int num;\n")
    monkeypatch.setenv("CPATH", f"{first}{os.pathsep}{second}")
    src = project(tmp_path, "#include <num.h>\nnum f(void);\n", "num f(void) { return 1; }\n")
    assert build(src, tmp_path).types == "typedef int num;"
    (first / "num.h").write_text("typedef char num;\n")
    os.utime(first, ns=(0, 0))                                 # an old folder time: no matter
    assert build(src, tmp_path).types == "typedef char num;"
    assert len(preprocessed) == 2


def test_other_flags_or_environment_are_another_preprocessing(tmp_path, preprocessed,
                                                              monkeypatch):
    src = project(tmp_path, "#ifdef WIDE\nlong f(void);\n#else\nint f(void);\n#endif\n",
                  "#ifdef WIDE\nlong f(void) { return 1; }\n#else\nint f(void) { return 1; }\n"
                  "#endif\n")
    assert ctype_of(build(src, tmp_path)) == "int (void)"
    assert ctype_of(build(src, tmp_path, cflags=["-DWIDE"])) == "long (void)"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert ctype_of(build(src, tmp_path)) == "int (void)"
    assert len(preprocessed) == 3


@pytest.mark.parametrize("header, files", [
    ('#include "sub/num.h"\nnum f(void);\n', {"sub/num.h": "typedef int num;\n"}),
    ('#define NUM "num.h"\n#include NUM\nnum f(void);\n', {"num.h": "typedef int num;\n"}),
    ("typedef int num;\nnum f(void);\nextern char when[sizeof __DATE__];\n", {}),
], ids=["folder-in-name", "macro-include", "date"])
def test_what_the_folders_listed_cannot_vouch_for_is_never_remembered(tmp_path, preprocessed,
                                                                      header, files):
    source = "num f(void) { return 1; }\n" + ("char when[sizeof __DATE__];\n" if "DATE" in header
                                              else "")
    src = project(tmp_path, header, source, **files)
    flags = [f"-I{src}"]                     # where a name made by a macro is found
    build(src, tmp_path, cflags=flags)
    build(src, tmp_path, cflags=flags)
    assert len(preprocessed) == 2


def test_a_fifo_in_place_of_an_include_read_before_is_not_waited_for(tmp_path, preprocessed):
    """The fingerprint reads files through files.py: a FIFO is refused, not opened."""
    src = project(tmp_path, '#include "num.h"\nnum f(void);\n', "num f(void) { return 1; }\n")
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "num.h").write_text("typedef int num;\n")
    flags = ["-iquote", str(inc)]
    build(src, tmp_path, cflags=flags)
    # The header outside the stage's reach: an -iquote folder is mirrored, so put the FIFO
    # where the fingerprint reads it, the staged copy's original.
    (inc / "num.h").unlink()
    os.mkfifo(inc / "num.h")
    with pytest.raises(minildr.BuildError, match="num.h"):
        build(src, tmp_path, cflags=flags)


def test_dependency_lists_with_escaped_names_are_not_read(tmp_path):
    deps = tmp_path / "d"
    deps.write_text("x.o: /a/b.h \\\n /c/d.h\n")
    assert headercache.dependencies(deps) == ["/a/b.h", "/c/d.h"]
    deps.write_text("x.o: /a/with\\ space.h /c/d.h\n")
    assert headercache.dependencies(deps) is None
    deps.write_text("x.o: /a/cost$$.h\n")
    assert headercache.dependencies(deps) is None


@pytest.mark.parametrize("cflags, kept", [
    (["-I/a", "-O2", "-DX=1"], ["-I/a", "-DX=1"]),
    (["-I", "/a", "-isystem", "/b", "-U", "Y"], ["-I", "/a", "-isystem", "/b", "-U", "Y"]),
    (["-iquote/q", "-idirafter", "/z", "-Wall", "-I-"], ["-iquote/q", "-idirafter", "/z"]),
])
def test_the_preprocessor_gets_each_folder_flag_with_its_folder(cflags, kept):
    assert builder.preprocessor_flags(cflags) == kept


@pytest.mark.parametrize("flags", [["-I{inc}"], ["-I", "{inc}"], ["-isystem", "{inc}"]])
def test_an_exports_header_including_through_a_folder_flag_builds(tmp_path, flags):
    """On main the preprocessor lost the folder of a flag HeaderStage had split in two."""
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "num.h").write_text("typedef int num;\n")
    src = project(tmp_path, "#include <num.h>\nnum f(void);\n", "num f(void) { return 1; }\n")
    manifest = build(src, tmp_path, cflags=[f.format(inc=inc) for f in flags])
    assert manifest.types == "typedef int num;" and ctype_of(manifest) == "num (void)"


def test_a_file_changed_while_the_preprocessor_runs_is_not_remembered_as_read(
        tmp_path, preprocessed, fake_libc, monkeypatch):
    """A header read by name (here from the stand-in standard headers, which are not staged)
    changes after the preprocessor read it and before its fingerprint is taken: the result
    is not kept under the new bytes' fingerprint (the next build preprocesses again)."""
    (fake_libc / "ret.h").write_text("#define RET int\n")
    src, flags = ret_project(tmp_path)
    real = builder.run_tool

    def changing(cmd, **kwargs):
        done = real(cmd, **kwargs)
        if "-E" in cmd and len(preprocessed) == 1:
            (fake_libc / "ret.h").write_text("#define RET long\n")
        return done
    monkeypatch.setattr(builder, "run_tool", changing)
    assert ctype_of(build(src, tmp_path, cflags=flags)) == "int (void)"
    settle(tmp_path)
    assert ctype_of(build(src, tmp_path, cflags=flags)) == "long (void)"


def test_a_header_added_in_front_in_a_folder_read_by_name_is_seen(tmp_path, preprocessed,
                                                                   fake_libc):
    """The files read are unchanged; only a folder searched before the one they were found
    in has a new entry: the folder's listing is part of the fingerprint."""
    src, flags = ret_project(tmp_path)
    assert ctype_of(build(src, tmp_path, cflags=flags)) == "int (void)"
    assert ctype_of(build(src, tmp_path, cflags=flags)) == "int (void)"
    assert len(preprocessed) == 1
    (fake_libc / "ret.h").write_text("#define RET long\n")
    settle(tmp_path)
    assert ctype_of(build(src, tmp_path, cflags=flags)) == "long (void)"


def test_a_folder_in_front_turned_into_a_header_of_that_name_is_seen(tmp_path, preprocessed,
                                                                     fake_libc):
    """Same names in the folder, another kind of entry: a folder named ret.h is passed over
    by the preprocessor, a file named ret.h is read."""
    (fake_libc / "ret.h").mkdir()
    src, flags = ret_project(tmp_path)
    assert ctype_of(build(src, tmp_path, cflags=flags)) == "int (void)"
    (fake_libc / "ret.h").rmdir()
    (fake_libc / "ret.h").write_text("#define RET long\n")
    settle(tmp_path)
    assert ctype_of(build(src, tmp_path, cflags=flags)) == "long (void)"
    assert len(preprocessed) == 2
