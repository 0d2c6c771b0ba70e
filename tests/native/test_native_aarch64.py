"""The native loader on AArch64, run for real: thread-local storage and relocations.

On an x86_64 machine AArch64 code cannot run natively, so these tests build
AArch64 libraries with Debian's gcc-aarch64-linux-gnu (minildr.build with
CC set, or gcc directly) and load them in Debian's AArch64 Python 3.11 with cffi,
run by qemu-aarch64 (user-mode emulation: AArch64 instructions, this Linux
kernel's system calls, real threads). tools/aarch64-sysroot.sh unpacks that
Python into build/aarch64-sysroot; `make cross-tools` installs qemu-user and
the cross compiler and runs it. On an AArch64 machine the same child runs in
this Python, natively.

One child process (aarch64_child.py) runs every check of this file: emulated,
importing minildr costs seconds, so it is paid once; each test reads its own
check's result. What is checked, with the x86_64 tests each mirrors:

- a `__thread` counter in four threads (two started before the load), built
  three ways: gcc's default on AArch64, TLS descriptors (R_AARCH64_TLSDESC);
  -mtls-dialect=trad (TLS_DTPMOD/TLS_DTPREL and __tls_get_addr); initial-exec
  in the library itself (TLS_TPREL against its own block, in static TLS);
  the same counts through the system loader (test_native_tls.py);
- libm's initial-exec reference to glibc's errno (TLS_TPREL): errno per thread;
- close while other threads run gives the module id back;
- general-dynamic and descriptors into a library glibc loaded; pointers as
  initial values;
- the relocs plugin (every ordinary relocation, IFUNC resolvers run with
  AArch64's hardware capabilities) through both loaders under several flags,
  and the committed tests/data/aarch64 libraries (test_native_loader.py,
  test_native_elf.py, which on x86_64 can only decode them).

Marked `cross`: `make cross-test` runs them (CI, right after `make test`),
`make test` does not: the emulated child costs a minute of both cores.
Without the harness the tests skip and say what installs it;
MINILDR_REQUIRE_CROSS=1 (set by .ci/run after `make cross-tools`) turns that
skip into a failure, so CI cannot pass them silently.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minildr.build import build_for
from minildr.host import HOST, Platform

from helpers import ROOT, cross_tool_missing
from native_util import AARCH64, HERE, SRC, native_host
from tls_threads import (COUNTER_C, COUNTER_H, EXPECTED_COUNTS, IE_COUNTER_C, POINTERS_C,
                         POINTERS_H, PROVIDER_C, USER_C)

pytestmark = [native_host, pytest.mark.cross]     # make cross-test, not make test
SYSROOT = ROOT / "build" / "aarch64-sysroot"
PYTHON = "usr/bin/python3.11"
LIBM = "/lib/aarch64-linux-gnu/libm.so.6"
CROSS_GCC = "aarch64-linux-gnu-gcc"
AARCH64_LINUX = Platform("linux", "aarch64", 64)
RELOCS = (10, b"3 is three", 36, 42, 42, 1, 1, b"many")       # test_native_loader.py's relocs
RELOCS_FLAGS = {"default": (), "now-noplt": ("-fno-plt", "-Wl,-z,now"),
                "hardened": ("-fstack-protector-strong", "-D_FORTIFY_SOURCE=2", "-O2"),
                "sysv": ("-Wl,--hash-style=sysv",)}
COMMITTED = sorted(p.name for p in AARCH64.glob("relocs*.so"))


def harness() -> tuple:
    """(the command that starts an AArch64 Python, the C compiler for AArch64), or skip."""
    if HOST.arch == "aarch64":
        return [sys.executable], os.environ.get("CC", "gcc")
    qemu = shutil.which("qemu-aarch64")
    missing = [what for what, there in (("qemu-aarch64 (Debian: qemu-user)", qemu),
                                        (f"{CROSS_GCC} (Debian: gcc-aarch64-linux-gnu)",
                                         shutil.which(CROSS_GCC)),
                                        (f"an AArch64 Python in {SYSROOT.relative_to(ROOT)}",
                                         (SYSROOT / PYTHON).is_file())) if not there]
    if missing:
        reason = (f"no AArch64 harness here: {', '.join(missing)} missing; `make cross-tools` "
                  "installs them (tools/aarch64-sysroot.sh makes the Python)")
        cross_tool_missing(reason)
    return [qemu, "-L", str(SYSROOT), str(SYSROOT / PYTHON)], CROSS_GCC


def plugin(folder: Path, name: str, source: str, header: str, *cflags: str) -> str:
    """A plugin for AArch64 Linux (minildr.build's steps, its manifest says linux-aarch64)."""
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.c").write_text(source)
    (folder / f"{name}.h").write_text(header)
    return str(build_for(AARCH64_LINUX, None, [folder / f"{name}.c"], name=name,
                         exports=folder / f"{name}.h", out_dir=folder / "out", cflags=cflags))


def gcc(cc: str, folder: Path, name: str, source: str, *flags: str) -> str:
    (folder / f"{name}.c").write_text(source)
    out = folder / f"lib{name}.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(out), str(folder / f"{name}.c"),
                    *flags], check=True)
    return str(out)


def jobs(cc: str, folder: Path) -> list:
    """Build the AArch64 libraries and say which check runs on which: (name, check, args)."""
    os.environ["CC"] = cc                             # minildr.build's compiler (restored below)
    counter = {"desc": plugin(folder / "desc", "counter", COUNTER_C, COUNTER_H),
               "trad": plugin(folder / "trad", "counter", COUNTER_C, COUNTER_H, "-mtls-dialect=trad"),
               "ie": plugin(folder / "ie", "counter", IE_COUNTER_C, COUNTER_H)}
    pointers = plugin(folder / "pointers", "pointers", POINTERS_C, POINTERS_H)
    relocs = {flags: str(build_for(AARCH64_LINUX, None, [SRC / "relocs.c"], name="relocs",
                                   exports=SRC / "relocs.h", out_dir=folder / f"relocs-{flags}",
                                   cflags=cflags))
              for flags, cflags in RELOCS_FLAGS.items()}
    provider = gcc(cc, folder, "provider", PROVIDER_C)
    link = (f"-L{folder}", "-lprovider", "-Wl,-rpath,$ORIGIN")
    user = {"trad": gcc(cc, folder, "user", USER_C, "-mtls-dialect=trad", *link),
            "desc": gcc(cc, folder, "userdesc", USER_C, *link)}
    # A provider using __tls_get_addr itself (no descriptors): glibc leaves its block in
    # dynamic TLS; the user reaches it through a descriptor (gcc's default)
    dynamic = gcc(cc, folder, "providerdyn", PROVIDER_C, "-mtls-dialect=trad")
    user["desc dynamic"] = gcc(cc, folder, "userdyn", USER_C + VECTOR_C, "-O2", f"-L{folder}",
                               "-lproviderdyn", "-Wl,-rpath,$ORIGIN")
    return ([("machine", "machine", ())]
            + [(f"trace {d}", "trace", (p,)) for d, p in counter.items()]
            + [(f"counts {d} {loader}", "counts", (p, loader)) for d, p in counter.items()
               for loader in ("native", "system")]
            + [("errno", "libm_errno", (LIBM,)), ("close", "close_and_reload", (counter["desc"],)),
               ("shared", "shared_variable", (user["trad"], provider)),
               ("shared desc", "shared_variable", (user["desc"], provider)),
               ("shared desc dynamic", "shared_in_dynamic_tls", (user["desc dynamic"], dynamic))]
            + [(f"pointers {loader}", "pointers", (pointers, loader)) for loader in ("native", "system")]
            + [(f"relocs {f} {loader}", "relocs_plugin", (p, loader)) for f, p in relocs.items()
               for loader in ("native", "system")]
            + [(f"committed {name}", "relocs_library", (str(AARCH64 / name),)) for name in COMMITTED])


@pytest.fixture(scope="module")
def aarch64(tmp_path_factory):
    """Every check's result, from one AArch64 child: {name: result}."""
    command, cc = harness()
    before = os.environ.get("CC")
    try:
        planned = jobs(cc, tmp_path_factory.mktemp("aarch64"))
    finally:
        os.environ.pop("CC") if before is None else os.environ.__setitem__("CC", before)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([*command, str(HERE / "aarch64_child.py"), repr(planned)], env=env,
                          capture_output=True, text=True, timeout=900, cwd=HERE)
    assert proc.returncode == 0 and proc.stdout.strip(), \
        f"the AArch64 child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return ast.literal_eval(proc.stdout.strip().splitlines()[-1])


def result(aarch64: dict, name: str):
    status, value = aarch64[name]
    assert status == "ok", f"{name} failed in the AArch64 child:\n{value}"
    return value


def test_the_child_runs_aarch64_code(aarch64):
    assert result(aarch64, "machine") == "aarch64"


@pytest.mark.parametrize("dialect, types, static", [
    ("desc", {"R_AARCH64_TLSDESC"}, True),                        # gcc's default on AArch64
    ("trad", {"R_AARCH64_TLS_DTPMOD"}, False),       # local-dynamic: the offsets are constants
    ("ie", {"R_AARCH64_TLS_TPREL"}, True)])
def test_a_thread_counter_counts_per_thread_on_aarch64(aarch64, dialect, types, static):
    """Four threads, two started before the load: each its own count, as under glibc; the
    block is glibc's under a borrowed module id, in static TLS where constant offsets reach it."""
    counts, tls_events = result(aarch64, f"trace {dialect}")
    assert types <= {name for name in counts if "TLS" in name}
    assert [e["static"] for e in tls_events] == [static]
    native = result(aarch64, f"counts {dialect} native")
    assert native == result(aarch64, f"counts {dialect} system") == EXPECTED_COUNTS


def test_libm_errno_is_per_thread_on_aarch64(aarch64):
    """Initial-exec into libc: libm's R_AARCH64_TLS_TPREL against errno (variant I: positive)."""
    tprel, per_thread = result(aarch64, "errno")
    assert tprel == 1
    assert per_thread == {"early0": (33, 33), "early1": (0, 0),      # EDOM, ERANGE on Linux
                          "late0": (34, 34), "late1": (0, 0)}


def test_close_while_threads_run_gives_the_module_back_on_aarch64(aarch64):
    assert result(aarch64, "close") == ((1, 2), "tls", 3, 1)


def test_general_dynamic_into_a_library_glibc_loaded_on_aarch64(aarch64):
    counts, here, there, after = result(aarch64, "shared")
    assert counts["R_AARCH64_TLS_DTPMOD"] == counts["R_AARCH64_TLS_DTPREL"] == 1
    assert (here, there, after) == ((1, 2, 2), (8, 8), 2)


def test_descriptors_into_a_library_glibc_loaded_on_aarch64(aarch64):
    """gcc's default on AArch64 (descriptors) against the provider's variable: glibc put the
    provider's block in static TLS when it relocated the provider's own descriptors (its
    TRY_STATIC_TLS), so the variable's offset from the thread pointer is a constant."""
    counts, here, there, after = result(aarch64, "shared desc")
    assert counts["R_AARCH64_TLSDESC"] == 2                        # one descriptor: two words
    assert (here, there, after) == ((1, 2, 2), (8, 8), 2)


VECTOR_C = "double bump_twice_keeping(double a, double b) { shared += 2; return a * b + shared; }\n"


def test_descriptors_into_a_block_in_dynamic_tls_on_aarch64(aarch64):
    """A descriptor against a variable whose block glibc left in dynamic TLS (the provider
    uses __tls_get_addr itself): no constant offset reaches it, so the descriptor's function
    calls __tls_get_addr({module, offset}) per use, saving x1-x18 and q0-q31 (the AArch64
    descriptor convention: only x0 changes). It was refused with a LoadError before."""
    counts, here, there, after, kept, dynamic = result(aarch64, "shared desc dynamic")
    assert dynamic, "the provider's block must be in dynamic TLS for this test"
    assert counts["R_AARCH64_TLSDESC"] == 2          # one descriptor (one variable): two words
    assert (here, there, after, kept) == ((1, 2, 2), (8, 8), 2, 1.5 * 2.0 + 2)


def test_pointers_as_initial_values_on_aarch64(aarch64):
    assert result(aarch64, "pointers native") == result(aarch64, "pointers system") \
        == ([20, 30, 5], [20, 5])


@pytest.mark.parametrize("flags", RELOCS_FLAGS)
def test_relocs_plugin_agrees_across_loaders_on_aarch64(aarch64, flags):
    """Every ordinary relocation (relocs.c), IFUNC resolvers run with AArch64's arguments."""
    assert result(aarch64, f"relocs {flags} native") == result(aarch64, f"relocs {flags} system") \
        == RELOCS


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_aarch64_libraries_run(aarch64, name):
    """tests/data/aarch64's files, which x86_64 tests only decode, run natively loaded."""
    assert result(aarch64, f"committed {name}") == RELOCS
