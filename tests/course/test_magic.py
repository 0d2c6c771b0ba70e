"""The %%minildr cell magic, driven through IPython's own API as a notebook would."""
from __future__ import annotations

import os
import tempfile

import pytest

import minildr
from minildr.errors import CellBuildFailed
from platforms import requires_posix


@pytest.fixture
def ip(tmp_path, monkeypatch):
    # IPython (optional: skipped without it) imported by the first test that drives a
    # shell, not by every xdist worker that collects this file (~40 ms of CPU each).
    interactiveshell = pytest.importorskip("IPython.core.interactiveshell")
    shell = interactiveshell.InteractiveShell.instance()   # one per session, as in a notebook
    shell.run_line_magic("load_ext", "minildr")
    monkeypatch.chdir(tmp_path)           # the default build folder is ./build/cells
    yield shell
    for plugin in list(shell.find_cell_magic("minildr").__self__.plugins.values()):
        plugin.close()


def run(ip, line: str, cell: str):
    """Run a %%minildr cell the way the notebook does; return (result, printed text)."""
    return ip.run_cell(f"%%minildr {line}\n{cell}")


GREET = '''\
#include <stddef.h>
static int offset = 1;          /* static: stays inside the plugin */
int calls = 0;                  /* exported, as extern int calls */
const char *hello(void) { calls++; return "hello from a cell"; }
size_t add(size_t a, size_t b) { return a + b + offset - 1; }
'''


def test_cell_is_built_opened_and_bound(ip, capsys):
    result = run(ip, "cellgreet", GREET)
    assert result.success, result.error_in_exec
    plugin = ip.user_ns["cellgreet"]
    assert isinstance(plugin, minildr.Plugin) and not plugin.closed
    assert "cellgreet 0.1.0: built and opened" in capsys.readouterr().out
    hello = plugin.lookup("hello", "const char *(void)")
    assert minildr.ffi.string(hello()) == b"hello from a cell"
    assert plugin.lookup("add", "size_t (size_t, size_t)")(40, 2) == 42
    assert plugin.lookup("calls", "int")[0] == 1


def test_exports_are_what_the_cell_defines_without_static(ip):
    run(ip, "cellexports", GREET)
    exports = ip.user_ns["cellexports"].manifest.exports
    assert {name: e.ctype for name, e in exports.items()} == {
        "calls": "int", "hello": "const char *(void)", "add": "size_t (size_t, size_t)"}
    with pytest.raises(minildr.SymbolNotFound):
        ip.user_ns["cellexports"].lookup("offset")


def test_rerunning_an_edited_cell_runs_the_new_code(ip):
    run(ip, "cellreload", "int answer(void) { return 1; }")
    first = ip.user_ns["cellreload"]
    assert first.lookup("answer", "int (void)")() == 1
    run(ip, "cellreload", "int answer(void) { return 2; }")
    second = ip.user_ns["cellreload"]
    assert second is not first and first.closed
    assert second.lookup("answer", "int (void)")() == 2


def test_compiler_errors_show_the_cells_line_numbers(ip):
    run(ip, "cellbroken", "int answer(void) { return 7; }")
    good = ip.user_ns["cellbroken"]
    cell = "int ok(void) { return 1; }\n\nint answer(void) { return missing_name; }\n"
    result = run(ip, "cellbroken", cell)
    assert not result.success
    message = str(result.error_in_exec)
    assert "cell:3:" in message and "missing_name" in message
    assert os.getcwd() not in message and tempfile.gettempdir() not in message
    # The previous build is closed, and the name no longer means it: every use says the
    # cell's last build failed (a check must not go on judging the old code).
    assert good.closed
    failed = ip.user_ns["cellbroken"]
    assert failed is not good and not isinstance(failed, minildr.Plugin)
    for use in (lambda: failed.lookup("answer", "int (void)"), lambda: failed.path,
                lambda: os.fspath(failed), lambda: failed.close(), lambda: failed()):
        with pytest.raises(CellBuildFailed, match=r"`cellbroken`: this cell's last build "
                           r"failed \(cell:3:.*missing_name.*\); fix the cell and run it again"):
            use()
    with pytest.raises(CellBuildFailed):
        with failed:
            pass
    assert "last build failed" in repr(failed)           # shown, not raised, in a notebook
    assert not hasattr(failed, "_repr_html_")             # tools probing it are told "no"
    # Fixed, the cell binds a working plugin again.
    assert run(ip, "cellbroken", "int answer(void) { return 8; }").success
    assert ip.user_ns["cellbroken"].lookup("answer", "int (void)")() == 8


CHECK = """\
from minildr.course.selfcheck import expect, isolated, task
@task("9.1", "answer is 7")
def verdict():
    with isolated(cellcheck) as plugin:
        expect(plugin.lookup("answer", "int (void)")() == 7, "answer() is not 7")
"""


@requires_posix("the check calls the cell's plugin in a worker process")
def test_a_check_after_a_failed_build_does_not_pass_on_the_old_build(ip):
    """The learner's 7 built; then an edit that does not compile: the check must not
    still say done (it would be judging the old build)."""
    assert run(ip, "cellcheck", "int answer(void) { return 7; }").success
    assert ip.run_cell(CHECK).success
    assert ip.user_ns["verdict"].status == "done"
    assert not run(ip, "cellcheck", "int answer(void) { return 7 }").success   # no ';'
    assert ip.run_cell(CHECK).success
    verdict = ip.user_ns["verdict"]
    assert verdict.status == "error", verdict
    assert "CellBuildFailed" in verdict.message and "last build failed" in verdict.message
    assert "fix the cell and run it again" in verdict.message
    # A plain (not isolated) use of the name fails the same way.
    result = ip.run_cell('cellcheck.lookup("answer", "int (void)")()')
    assert isinstance(result.error_in_exec, CellBuildFailed)


def test_syntax_errors_come_from_the_compiler_too(ip):
    result = run(ip, "cellsyntax", "int f(void)\n{\n    return 1\n}\n")
    assert not result.success
    message = str(result.error_in_exec)
    assert "cell:" in message and "expected" in message


def test_an_exports_header_can_be_given(ip, tmp_path):
    header = tmp_path / "only.h"
    header.write_text("int visible(void);\n")
    # helper is not static, but only what the header declares is exported.
    cell = "int visible(void) { return 5; }\nint helper(void) { return 6; }\n"
    assert run(ip, f"cellheader --exports {header} --version 2.0", cell).success
    plugin = ip.user_ns["cellheader"]
    assert plugin.version == "2.0" and list(plugin.exports) == ["visible"]
    assert plugin.lookup("visible", "int (void)")() == 5
    with pytest.raises(minildr.SymbolNotFound):
        plugin.lookup("helper")
    # The header is checked against the cell by the compiler.
    result = run(ip, f"cellheader --exports {header}", "long visible(void) { return 5; }\n")
    assert not result.success and "conflicting types" in str(result.error_in_exec)


def test_contracts_are_compiled_in_and_recorded(ip, tmp_path):
    contract = tmp_path / "shape.h"
    contract.write_text("typedef struct { int w, h; } shape_size;\n")
    cell = "int area(shape_size s) { return s.w * s.h; }\n"
    assert run(ip, f"cellshape --contract {contract}:Shape:1.0", cell).success
    plugin = ip.user_ns["cellshape"]
    assert plugin.manifest.contracts["Shape"].version == "1.0"
    assert plugin.manifest.exports["area"].ctype == "int (shape_size)"


@pytest.mark.parametrize("line, expected", [
    ("", "usage: %%minildr NAME"),
    ("not-a-name", "is not a Python name"),
    ("x --bogus", "usage: %%minildr NAME"),
])
def test_bad_magic_lines_say_how_to_use_it(ip, line, expected):
    result = run(ip, line, "int f(void) { return 1; }")
    assert not result.success and expected in str(result.error_in_exec)


def test_a_cell_that_exports_nothing_is_refused_clearly(ip):
    result = run(ip, "cellnothing", "static int f(void) { return 1; }")
    assert not result.success
    assert "defines no function or variable to export" in str(result.error_in_exec)


# -- Windows paths in the magic line and in --contract --------------------------
@pytest.mark.parametrize("windows, line, words", [
    (False, "x --exports 'my dir/h.h'", ["x", "--exports", "my dir/h.h"]),
    (True, r"x --exports C:\Users\me\h.h", ["x", "--exports", r"C:\Users\me\h.h"]),
    (True, r'x --contract "C:\My Files\c.h:C:1.0"', ["x", "--contract",
                                                     r"C:\My Files\c.h:C:1.0"]),
])
def test_the_magic_line_keeps_windows_backslashes(windows, line, words):
    from minildr.course.magic import split_line
    assert split_line(line, windows=windows) == words


def test_a_contract_spec_takes_an_absolute_path(tmp_path):
    """FILE:NAME:VERSION with this machine's absolute path (C:\\... on Windows)."""
    from minildr import Contract
    header = tmp_path / "shape.h"
    header.write_text("typedef struct { int w, h; } shape_size;\n")
    contract = Contract.from_spec(f"{header}:Shape:1.0")
    assert (contract.name, contract.version) == ("Shape", "1.0")


@requires_posix("makes a file whose name holds a colon and backslashes, as C:\\... reads")
def test_a_contract_path_may_start_with_a_drive_letter(tmp_path, monkeypatch):
    """A Windows path's drive colon is not the FILE:NAME separator."""
    from minildr import Contract
    monkeypatch.chdir(tmp_path)
    name = r"C:\course\shape.h"            # here: one file name; on Windows: a drive and folders
    (tmp_path / name).write_text("typedef struct { int w, h; } shape_size;\n")
    contract = Contract.from_spec(f"{name}:Shape:1.0")
    assert (contract.name, contract.version) == ("Shape", "1.0")


# The endless loop waits (pause) instead of spinning: to the timeout a hang is a hang,
# without a core burnt until it (as tests/exercise_answers.py's).
CRASHY = '''\
#include <stddef.h>
extern int pause(void);      /* <unistd.h>'s */
int write_null(int i) { int *out = NULL; out[i] = 1; return 0; }
int endless(void) { for (;;) pause(); return 0; }
'''


@pytest.mark.parametrize("line", ["cellcrash --isolate", "cellcrash --isolate 2"])
@requires_posix("isolate=True needs a POSIX worker")
def test_isolate_makes_a_learners_crash_an_error_not_a_dead_kernel(ip, capsys, line):
    """A classic C bug (a NULL write) and an endless loop, in a cell opened with --isolate."""
    result = run(ip, line, CRASHY)
    assert result.success, result.error_in_exec
    assert "built and opened in a worker process" in capsys.readouterr().out
    plugin = ip.user_ns["cellcrash"]
    with pytest.raises(minildr.PluginCrashed, match="SIGSEGV"):
        plugin.lookup("write_null", "int (int)")(3)
    if line.endswith("2"):
        run(ip, line, CRASHY)                      # a fresh worker after the crash
        plugin = ip.user_ns["cellcrash"]
        assert plugin.timeout == 2                 # the magic's number, as isolate=2
        plugin._worker.timeout = 0.5               # (the hang itself need not last 2 s)
        with pytest.raises(minildr.PluginTimeout):
            plugin.lookup("endless", "int (void)")()
