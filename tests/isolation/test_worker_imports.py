"""An isolated worker imports only what it serves with: no C parser for plain C types.

Each worker is a new Python, and every module it imports is paid for at
every start (benchmarks/bench_worker_start.py). pycparser was the largest
(~14 ms of CPU: its lexer's regular expressions), imported by cffi's
in-line FFIs and by minildr's readers of C text; socket.py and site cost
~3 and ~15 ms. A worker serving a plugin of plain C types needs none of
them: its fixed C functions are declared out of line (minildr/outofline.py)
and its host sends a typed lookup compared (worker.lookup_compared).
No worker needs `logging` either (~6 ms with traceback and string): what the
loader modules log there went to a NullHandler; they log through
minildr/logger.py, which only a host attaches to the "minildr" logger.

What a worker imported is written by an exit function its boot line
registers (helpers.run_in_worker_first), which the server runs at its end.
"""
from __future__ import annotations

import subprocess
import sys

import minildr
import pytest
from minildr.isolation import process

from helpers import ROOT, run_in_worker_first
from platforms import requires_linux

# Never imported by a worker that serves a plain plugin.
HEAVY = ("pycparser", "cffi.cparser", "cffi.recompiler", "socket", "site")
# Never imported by any worker.
NEVER = ("logging", "base64", "traceback", "string")
DUMP = ("import atexit, sys; atexit.register(lambda: open({path!r}, 'w').write("
        "'\\n'.join(sorted(sys.modules))))")


def imported_by_worker(monkeypatch, tmp_path, plugin, use) -> set:
    """The modules of the worker that opened `plugin` isolated and ran `use(plugin)`."""
    dump = tmp_path / "modules.txt"
    run_in_worker_first(monkeypatch, DUMP.format(path=str(dump)))
    with minildr.open(plugin, isolate=True) as opened:
        use(opened)
    return set(dump.read_text().split())


def imported_at_boot(tmp_path) -> set:
    """The modules of a worker right after its boot line's imports (process.BOOT_IMPORT)."""
    done = subprocess.run([sys.executable, "-I", "-S", "-c",
                           process.BOOT_IMPORT + "; print('\\n'.join(sorted(sys.modules)))",
                           str(ROOT), process.dependency_folders()],
                          capture_output=True, text=True, env={}, cwd=tmp_path, check=True)
    return set(done.stdout.split())


def greet_twice(plugin) -> None:
    greet = plugin.lookup("greet", "const char *(void)")
    assert minildr.ffi.string(greet()).startswith(b"Hello")
    spelled_otherwise = plugin.lookup("greet", "char const*(void)")
    assert minildr.ffi.string(spelled_otherwise()) == minildr.ffi.string(greet())
    assert plugin.lookup("greet").ctype == "const char *(void)"


@requires_linux("the worker's exit functions run in its server (tree.py)")
def test_a_worker_serving_plain_c_types_imports_no_c_parser(monkeypatch, tmp_path, greet_so):
    modules = imported_by_worker(monkeypatch, tmp_path, greet_so, greet_twice)
    assert "minildr.isolation.worker" in modules and "minildr.checks" in modules
    assert [m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY] == []


@requires_linux("the worker's exit functions run in its server (tree.py)")
def test_the_import_check_sees_a_worker_that_parses(monkeypatch, tmp_path, greet_so):
    """The check above can fail: a lookup with another type is answered by the worker in
    full (the host compares nothing it would refuse), which reads the type with pycparser."""
    def wrong_type(plugin) -> None:
        with pytest.raises(minildr.SymbolTypeError, match="declared as 'const char \\*\\(void\\)' "
                                                          "but was looked up as 'int \\(void\\)'"):
            plugin.lookup("greet", "int (void)")
    assert "pycparser" in imported_by_worker(monkeypatch, tmp_path, greet_so, wrong_type)


@requires_linux("the worker's exit functions run in its server (tree.py)")
def test_no_worker_imports_logging(monkeypatch, tmp_path, greet_so):
    """Neither at boot (the modules a sandboxed worker has too: it reads no file after)
    nor while it opens, looks up, calls and closes."""
    assert [m for m in imported_at_boot(tmp_path) if m.split(".")[0] in NEVER] == []
    modules = imported_by_worker(monkeypatch, tmp_path, greet_so, greet_twice)
    assert "minildr.plugin" in modules and "minildr.logger" in modules
    assert [m for m in modules if m.split(".")[0] in NEVER] == []
