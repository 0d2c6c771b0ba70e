"""The package's shape: no import cycles, and no function-level import without a reason.

A function-level import makes a reader ask "is there a cycle here?". The
only ones allowed are for optional or slow dependencies, or for what exists
on one platform only; each is listed below with its reason, and a new one
fails this test until it is listed (or moved to the top of its module).
"""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

from minildr.isolation.process import BOOT, BOOT_IMPORT, dependency_folders

from helpers import ROOT, run_python

PACKAGE = ROOT / "minildr"

# imported module (as written) -> why it is imported inside a function
ALLOWED_LATE = {
    "IPython": "optional: only inside a notebook",
    "IPython.display": "optional: only inside a notebook",
    "tqdm.auto": "optional: progress bars",
    "nbformat": "course tooling only: running notebooks",
    "nbclient": "course tooling only: running notebooks",
    "traitlets.config": "course tooling only: running notebooks",
    "cryptography.hazmat.primitives.asymmetric": "slow to import; only a trust check needs it",
    "cryptography.hazmat.primitives": "slow to import; only a trust check needs it",
    "cryptography.exceptions": "slow to import; only a trust check needs it",
    "fcntl": "POSIX only (sealing a memfd)",
    ".native": "Linux only: binds libc's mmap and dlvsym",
    "..native": "Linux only: binds libc's mmap and dlvsym",
    ".course.magic": "IPython only where %load_ext asks",
    "cffi.recompiler": "slow (cffi's code generator imports pycparser); only the first run "
                       "on a machine generates an out-of-line module (minildr/outofline.py)",
    ".contracts.proxy": "slow to import (the calling convention's records and enums, ~5 ms of "
                        "an isolated worker's start); only a contract lookup needs it",
    ".isolation.plugin": "slow to import (a worker's process handling: sockets, ctypes, PID "
                         "namespaces, the sandbox; ~15 ms of every `import minildr`); only "
                         "open(isolate=True) needs it",
    "packaging.version": "slow to import (its version regular expression, ~2 ms of every "
                         "`import minildr`); only a trust store's version floor needs it",
    "pycparser": "slow to import (its lexer's regular expressions, ~14 ms); only reading C text "
                 "needs it, which an isolated worker of plain C types never does "
                 "(minildr/lazy_pycparser.py)",
}


def late_imports():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        yield path, node.lineno, alias.name
                elif isinstance(node, ast.ImportFrom):
                    module = "." * node.level + (node.module or "")
                    if node.level and not node.module:          # from . import native
                        for alias in node.names:
                            yield path, node.lineno, "." * node.level + alias.name
                    else:
                        yield path, node.lineno, module


def test_no_import_cycles():
    """The review's checker (module- and function-level imports alike) finds none."""
    script = pathlib.Path(__file__).with_name("import_cycles.py")
    done = subprocess.run([sys.executable, str(script), str(PACKAGE)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("0 cycle"), done.stdout


def test_every_function_level_import_has_a_reason():
    unexplained = [f"{path.relative_to(ROOT)}:{line}: {module}"
                   for path, line, module in late_imports() if module not in ALLOWED_LATE]
    assert not unexplained, ("import these at the top of their module, or add them to "
                             "ALLOWED_LATE with the reason:\n" + "\n".join(unexplained))


def test_the_cycle_checker_finds_a_cycle(tmp_path):
    """The checker this test relies on can fail: a two-module cycle is reported."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from . import a\n")
    checker = pathlib.Path(__file__).with_name("import_cycles.py")
    done = subprocess.run([sys.executable, str(checker), str(package)], capture_output=True,
                          text=True, timeout=60)
    assert "1 cycle" in done.stdout.splitlines()[-1]


def test_import_minildr_then_native_works():
    """`import minildr` then `minildr.native.load(...)`, as a learner will type it."""
    done = subprocess.run([sys.executable, "-c", "import minildr; print(minildr.native.load.__name__)"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.stdout.strip() == "load", done.stderr



# What `import minildr` must not import: each is slow, and most processes that import
# minildr (every test's child, pytest worker, Jupyter kernel) never use it. They come
# at their first use: pycparser (cffi's C parser, ~25 ms) with `minildr.ffi`, the
# isolated worker's host side (~15 ms) with the first open(isolate=True), packaging
# (~2 ms) with the first version floor, the contracts' proxies (~3 ms) with the first
# contract lookup or `minildr.ContractProxy`.
NOT_AT_IMPORT = ("pycparser", "cffi.cparser", "minildr.isolation.plugin",
                 "minildr.isolation.process", "minildr.isolation.sandbox", "packaging",
                 "minildr.contracts.proxy", "minildr.contracts.convention")


def test_import_minildr_imports_nothing_it_makes_at_first_use():
    """`import minildr` imports none of NOT_AT_IMPORT; `minildr.ContractProxy` and
    `minildr.ffi` then come at their first use, as before: the same objects however
    they are asked for, the ffi cffi's in-line FFI (cdef, string, dlopen)."""
    done = run_python(
        "import sys, cffi, minildr; print(sorted(m for m in sys.modules if any("
        "m == n or m.startswith(n + '.') for n in sys.argv[1:]))); "
        "assert {'ffi', 'ContractProxy', 'native'} <= set(dir(minildr)); "
        "from minildr import ContractProxy; assert ContractProxy is minildr.ContractProxy; "
        "assert ContractProxy.__module__ == 'minildr.contracts.proxy'; "
        "ffi = minildr.ffi; from minildr import ffi as again; ffi.cdef('int abs(int);'); "
        "print(isinstance(ffi, cffi.FFI), again is ffi is minildr.ffi, "
        "ffi.string(ffi.new('char[]', b'hi')).decode(), ffi.dlopen(None).abs(-4), "
        "'pycparser' in sys.modules)", *NOT_AT_IMPORT, timeout=60)
    assert done.stdout.splitlines() == ["[]", "True True hi 4 True"], done.stderr


def test_minildr_ffi_is_made_once_when_threads_ask_at_once():
    """Eight threads asking for `minildr.ffi` at once get one FFI, made once (its
    making is slowed down so that, without the lock, several threads would make one)."""
    done = run_python(
        "import threading, time, minildr\n"
        "made = []\n"
        "real = minildr.inline\n"
        "def slow(declarations):\n"
        "    made.append(1); time.sleep(0.05); return real(declarations)\n"
        "minildr.inline = slow\n"
        "minildr._loaders_ffi = object()       # as where the loader's binding is out-of-line\n"
        "start = threading.Barrier(8); got = []\n"
        "def ask():\n"
        "    start.wait(); got.append(minildr.ffi)\n"
        "threads = [threading.Thread(target=ask) for _ in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(len(made), len(got), len({id(f) for f in got}))\n", timeout=60)
    assert done.stdout.split() == ["1", "8", "1"], done.stderr

# What an isolated worker must not import: the host's side of the package. Each
# worker is a new Python (isolation/process.py), and what it imports it pays for at
# every start. pycparser is not in the list: cffi.FFI() imports it (cffi's parser),
# so every process that calls C through cffi has it.
NOT_IN_A_WORKER = ("minildr.build", "minildr.loader", "minildr.discover", "minildr.cli",
                   "minildr.course", "minildr.trust", "minildr.edwards", "packaging",
                   "minildr.isolation.process", "minildr.isolation.plugin",
                   "minildr.isolation.contracts", "minildr.isolation.fastcall", "minildr.native")


def imported_by(code: str) -> set:
    """The modules a fresh `python -I -S -c code ROOT FOLDERS` has at its end (minildr from
    this clone, cffi and pycparser from the host's folders), as a worker starts."""
    done = subprocess.run([sys.executable, "-I", "-S", "-c",
                           code + "; print('\\n'.join(sys.modules))", str(ROOT),
                           dependency_folders()], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def host_side(modules: set) -> list:
    return sorted(m for m in modules
                  if any(m == n or m.startswith(n + ".") for n in NOT_IN_A_WORKER))


def test_an_isolated_worker_imports_none_of_the_hosts_side():
    """The worker's own start (process.BOOT's imports) brings only the worker's side.

    BOOT registers the package without running minildr/__init__.py (the
    host's API) and minildr/isolation/__init__.py is lazy, so a worker
    imports neither the compiler driver, the trust store, the host's process
    handling nor the native loader.
    """
    assert BOOT.startswith(BOOT_IMPORT)
    modules = imported_by(BOOT_IMPORT)
    assert "minildr.isolation.worker" in modules and "minildr.checks" in modules
    assert host_side(modules) == []


def test_the_worker_import_check_sees_the_hosts_side():
    """The check above can fail: the same import through the package's __init__ brings it."""
    modules = imported_by("import sys, os; sys.path.insert(0, sys.argv[1]); "
                          "sys.path += sys.argv[2].split(os.pathsep); "
                          "import minildr.isolation.worker")
    assert {"minildr.build", "minildr.loader", "minildr.trust"} <= set(host_side(modules))
