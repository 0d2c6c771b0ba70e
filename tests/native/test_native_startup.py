"""What a library's initialisers and finalisers see: the initial process stack, and NODELETE.

glibc calls initialisers with (argc, argv, envp) pointing into the stack the
kernel laid out (initstack.py): after argv's NULL come the environment, its
NULL and the auxiliary vector, and some libraries walk there (Go's runtime
does). A library marked NODELETE is never unloaded: dlclose does nothing,
and so does the native loader's close. Each test runs its loads in a fresh
child process, since a wrong layout makes the walk read stray memory.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import ROOT, run_python
from native_util import native_host

pytestmark = native_host

WALKER_C = r"""
#include <elf.h>
static int argc_seen = -1;
static long env_at = -1, env_count = -1;
static unsigned long pagesize;
static const char *arg0;

/* What a program's start-up code may assume (the psABI's initial stack): the
   environment follows argv's NULL, and the auxiliary vector the environment's. */
__attribute__((constructor)) static void walk(int argc, char **argv, char **envp) {
    argc_seen = argc;
    arg0 = argc > 0 ? argv[0] : 0;
    env_at = envp - argv;
    char **p = argv + argc + 1;
    while (*p) p++;
    env_count = p - (argv + argc + 1);
    for (unsigned long *aux = (unsigned long *)(p + 1); aux[0] != AT_NULL; aux += 2)
        if (aux[0] == AT_PAGESZ) pagesize = aux[1];
}
int walked_argc(void) { return argc_seen; }
const char *walked_arg0(void) { return arg0; }
long walked_env_at(void) { return env_at; }
long walked_env_count(void) { return env_count; }
unsigned long walked_pagesize(void) { return pagesize; }
"""

NODELETE_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((destructor)) static void bye(void) {
    FILE *f = fopen(getenv("FINI_MARKER"), "w");
    if (f) { fputs("finaliser ran\n", f); fclose(f); }
}
int answer(void) { return 42; }
"""


def gcc(tmp_path, name: str, source: str, *flags: str) -> str:
    (tmp_path / f"{name}.c").write_text(source)
    out = tmp_path / f"lib{name}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(tmp_path / f"{name}.c"),
                    *flags], check=True)
    return str(out)


WALK = """
import ctypes, os, sys, minildr.native
from minildr.native.libc import ffi, libc
AT_PAGESZ = 6
if sys.argv[2] == "native":
    lib = minildr.native.load(sys.argv[1])
    get = lambda name, ctype: lib.lookup(name, ctype)
else:
    lib = ctypes.CDLL(sys.argv[1])
    def get(name, ctype):
        f = getattr(lib, name)
        f.restype = {"long": ctypes.c_long, "int": ctypes.c_int, "unsigned long": ctypes.c_ulong,
                     "const char *": ctypes.c_char_p}[ctype.split(" (")[0]]
        return f
arg0 = get("walked_arg0", "const char * (void)")()
arg0 = ffi.string(arg0) if sys.argv[2] == "native" else arg0
print("argc", get("walked_argc", "int (void)")() == len(sys.orig_argv))
print("arg0", arg0 == os.fsencode(sys.orig_argv[0]))
print("envp", get("walked_env_at", "long (void)")() == len(sys.orig_argv) + 1)
print("environment", get("walked_env_count", "long (void)")() == len(os.environ))
print("pagesize", get("walked_pagesize", "unsigned long (void)")(), libc.getauxval(AT_PAGESZ))
"""


def test_initialisers_get_argv_then_the_environment_then_the_auxiliary_vector(tmp_path):
    """The initialiser walks from argv past the environment to AT_NULL: through either
    loader it finds the program's arguments and AT_PAGESZ as getauxval says it."""
    plugin = gcc(tmp_path, "walker", WALKER_C)
    for loader in ("native", "system"):
        result = run_python(WALK, plugin, loader)
        assert result.returncode == 0, (loader, result.returncode, result.stderr[-2000:])
        lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
        assert {k: lines[k] for k in ("argc", "arg0", "envp", "environment")} == dict.fromkeys(
            ("argc", "arg0", "envp", "environment"), "True"), (loader, lines)
        found, expected = lines["pagesize"].split()
        assert found == expected and int(expected) >= 4096, (loader, lines)


def test_a_changed_environment_gets_a_block_of_its_own_and_the_first_stays():
    result = run_python("""
import os, minildr.native
from minildr.native import initstack
from minildr.native.libc import ffi
first = initstack.initial_stack()
assert initstack.initial_stack() is first            # once per environment, not per load
os.environ["MINILDR_TEST_NEW"] = "1"
second = initstack.initial_stack()
def names(block):
    found, i = [], 0
    while block.envp[i] != ffi.NULL:
        found.append(ffi.string(block.envp[i]).split(b"=")[0])
        i += 1
    return found
print(second is not first, b"MINILDR_TEST_NEW" in names(second),
      b"MINILDR_TEST_NEW" in names(first),
      ffi.string(first.argv[0]) == os.fsencode(__import__("sys").orig_argv[0]))
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "False", "True"]


def test_while_environ_is_the_kernels_array_initialisers_get_the_initial_stack_itself():
    """What glibc passes (__libc_argv, __environ): while environ is still the array the kernel
    wrote, argv and envp point into the initial stack itself (found from __libc_stack_end),
    no block is built; once unsetenv has shortened that array in place (the auxiliary
    vector no longer follows its NULL) a block is built, without the removed name, laid out
    as the stack (argv's NULL, envp, its NULL, then AT_NULL-terminated pairs); and setenv
    (environ moved to the heap) gets a block too."""
    code = """
import os, sys
from minildr.native import initstack
from minildr.native.libc import ffi, libc
stack = ffi.cast("uintptr_t *", ffi.cast("uintptr_t *", libc.dlsym(ffi.NULL, b"__libc_stack_end"))[0])
environ = ffi.cast("uintptr_t *", libc.dlsym(ffi.NULL, b"environ"))[0]
first = initstack.initial_stack()
def address(pointer):
    return int(ffi.cast("uintptr_t", pointer))
def names(block):
    found, i = [], 0
    while block.envp[i] != ffi.NULL:
        found.append(ffi.string(block.envp[i]).split(b"=")[0])
        i += 1
    return found, block.envp + i + 1
kernels = (address(first.argv) == address(stack + 1) and address(first.envp) == environ
           and first.argc == len(sys.orig_argv) and not initstack._blocks)
del os.environ["MINILDR_TEST_GONE"]                  # unsetenv: the array shortened in place
second = initstack.initial_stack()
found, vector = names(second)
vector, pairs = ffi.cast("uintptr_t *", vector), {}
while vector[0]:
    pairs[vector[0]] = vector[1]
    vector += 2
os.environ["MINILDR_TEST_NEW"] = "1"                 # setenv: environ moved to the heap
third = initstack.initial_stack()
print(kernels, address(second.envp) != environ, b"MINILDR_TEST_GONE" not in found,
      b"MINILDR_TEST_KEPT" in found, second.argv[second.argc] == ffi.NULL,
      pairs.get(6) == libc.getauxval(6), third is not second, b"MINILDR_TEST_NEW" in names(third)[0])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "MINILDR_TEST_GONE": "1", "MINILDR_TEST_KEPT": "1"},
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"] * 8


@pytest.mark.parametrize("environment", ["inherited", "empty"])
def test_the_auxiliary_vector_found_on_the_initial_stack_is_the_kernels(environment):
    """initstack.from_initial_stack (after argv and envp, from __libc_stack_end) gives the
    vector /proc/self/auxv gives, also once the environment has moved off the stack
    (setenv reallocates it), with an empty environment, and when argc disagrees: None."""
    code = """
import os, sys
from minildr.native import initstack
first = initstack.from_initial_stack()
os.environ["MINILDR_TEST_MOVED"] = "x" * 100
for i in range(50):
    os.environ[f"MINILDR_TEST_{i}"] = "1"              # environ reallocated on the heap
again = initstack.from_initial_stack()
sys.orig_argv = sys.orig_argv + ["one more"]
print(len(first) > 10, first == initstack.read_auxv(), again == first,
      initstack.from_initial_stack() is None)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, env={} if environment == "empty" else None, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True", "True"]


def test_without_proc_the_auxiliary_vector_comes_from_getauxval():
    result = run_python("""
from minildr.native import initstack
from minildr.native.libc import libc
initstack.AUXV = "/nonexistent/auxv"
initstack.from_initial_stack = lambda: None       # as if __libc_stack_end were not there
words = initstack.auxiliary_vector()
pairs = dict(zip(words[::2], words[1::2]))
print(words[-2:] == [0, 0], pairs[6] == libc.getauxval(6), pairs[25] == libc.getauxval(25))
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True"]


def test_a_nodelete_library_stays_mapped_and_runs_no_finaliser_on_close(tmp_path):
    """-z nodelete: the native close does what dlclose does, nothing; a plain build of the
    same source (the control) runs its finaliser and is unmapped."""
    code = """
import os, sys, minildr.native
os.environ["FINI_MARKER"] = sys.argv[2]
lib = minildr.native.load(sys.argv[1])
assert lib.lookup("answer", "int (void)")() == 42
lib.close()
print("closed", lib.closed if hasattr(lib, "closed") else lib.unloaded)
print("marker", os.path.exists(sys.argv[2]))
print("mapped", any(sys.argv[1] in line for line in open("/proc/self/maps")))
print("events", [e.message for e in lib.trace.events if e.step in ("fini", "unmap")])
"""
    kept = gcc(tmp_path, "kept", NODELETE_C, "-Wl,-z,nodelete")
    plain = gcc(tmp_path, "plain", NODELETE_C)
    results = {}
    for name, plugin in (("kept", kept), ("plain", plain)):
        result = run_python(code, plugin, tmp_path / f"{name}.marker")
        assert result.returncode == 0, (name, result.stderr[-2000:])
        results[name] = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert results["kept"]["marker"] == "False" and results["kept"]["mapped"] == "True"
    assert "kept mapped: NODELETE (DF_1_NODELETE)" in results["kept"]["events"]
    assert "fini" not in results["kept"]["events"] and "DT_FINI" not in results["kept"]["events"]
    assert results["plain"]["marker"] == "True" and results["plain"]["mapped"] == "False"
