"""C++ plugins through the native loader, with the same results as through the system loader.

The plugin (built with g++, linked against libstdc++) has static
constructors, a std::vector<std::string>, an exception thrown and caught
inside it (so the unwinder must find its .eh_frame: native/unwind.py
registers it), thread_local variables (its own TLS block, native/tls.py),
and a global object whose destructor, registered with __cxa_atexit, runs
at close (__cxa_finalize with the library's DSO handle, from its
finalisers). Skipped, saying so, where g++ is not installed.
"""
from __future__ import annotations

import ctypes
import re
import shutil

import _ctypes
import subprocess
import threading

import pytest

import minildr.native
from helpers import run_python, write_plugin
from native_util import native_host

pytestmark = [native_host, pytest.mark.skipif(shutil.which("g++") is None,
                                               reason="needs g++ (Debian: apt install g++)")]

SOURCE = r"""
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

static std::vector<std::string> names = {"alpha", "beta", "gamma"};
static int constructed;
struct Global {
    Global() { constructed++; }
    ~Global() {
        const char *marker = std::getenv("CXX_PLUGIN_MARKER");
        if (marker) { FILE *f = std::fopen(marker, "a"); if (f) { std::fputs("destroyed\n", f); std::fclose(f); } }
    }
} global;
thread_local int tl_count;
#ifdef WITH_THREAD_LOCAL_STRING
thread_local std::string tl_name = "t";
extern "C" int cxx_tl_len(void) { tl_name += "x"; return (int)tl_name.size(); }
#else
extern "C" int cxx_tl_len(void) { return 2; }
#endif

extern "C" int cxx_constructed(void) { return constructed; }
extern "C" int cxx_names_total(void) { size_t n = 0; for (auto &s : names) n += s.size(); return (int)n; }
extern "C" int cxx_caught(int depth) {
    try {
        if (depth > 0) throw std::runtime_error(std::string(depth, '!'));
        return 0;
    } catch (const std::exception &e) {
        return (int)std::string(e.what()).size() + 100;
    }
}
extern "C" int cxx_tl_bump(void) { return ++tl_count; }
"""
INT = "int (void)"


def build(folder, *flags):
    (folder / "plugin.cpp").write_text(SOURCE)
    path = folder / "libcxxplugin.so"
    subprocess.run(["g++", "-shared", "-fPIC", "-O2", *flags, "-o", str(path),
                    str(folder / "plugin.cpp")], check=True)
    return path


@pytest.fixture(scope="module")
def cxx_plugin(tmp_path_factory):
    return build(tmp_path_factory.mktemp("cxx"))


@pytest.fixture(scope="module")
def cxx_string_plugin(tmp_path_factory):
    """With a thread_local std::string: its destructor is registered per thread at first use."""
    return build(tmp_path_factory.mktemp("cxx-string"), "-DWITH_THREAD_LOCAL_STRING")


def exercise(call) -> tuple:
    """What the plugin answers, in this thread and in two more; call(name, *args) -> int."""
    per_thread = {}

    def worker(i: int) -> None:
        per_thread[i] = (max(call("cxx_tl_bump") for _ in range(i + 2)),
                         call("cxx_tl_len"), call("cxx_caught", i + 1))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (call("cxx_constructed"), call("cxx_names_total"), call("cxx_caught", 0),
            call("cxx_caught", 5), call("cxx_tl_bump"), call("cxx_tl_bump"), call("cxx_tl_len"),
            per_thread)


def run_both(path, tmp_path, monkeypatch) -> dict:
    results = {}
    for loader in ("system", "native"):
        marker = tmp_path / f"{loader}-destroyed"
        monkeypatch.setenv("CXX_PLUGIN_MARKER", str(marker))
        if loader == "system":
            lib = ctypes.CDLL(str(path))
            results[loader] = exercise(lambda name, *args: getattr(lib, name)(*args))
            _ctypes.dlclose(lib._handle)
        else:
            with minildr.native.load(path) as native:
                results[loader] = exercise(
                    lambda name, *args: native.lookup(name, "int (int)" if args else INT)(*args))
                steps = {e.step for e in native.trace.events}
            assert {"tls", "unwind"} <= steps
        results[loader + " destroyed"] = marker.exists() and marker.read_text()
    return results


def test_cxx_plugin_same_results_through_both_loaders(cxx_plugin, tmp_path, monkeypatch):
    results = run_both(cxx_plugin, tmp_path, monkeypatch)
    assert results["native"] == results["system"] == (
        1, 14, 0, 105, 1, 2, 2, {0: (2, 2, 101), 1: (3, 2, 102)})
    # the global's destructor, registered with __cxa_atexit, ran at close in both
    assert results["native destroyed"] == results["system destroyed"] == "destroyed\n"


def test_cxx_thread_local_string_same_results_and_stays_mapped(cxx_string_plugin, tmp_path,
                                                               monkeypatch):
    """A thread_local std::string registers a destructor for thread exit (__cxa_thread_atexit).

    glibc then keeps the library loaded at dlclose (its l_tls_dtor_count), running no
    finalisers; the native loader runs the finalisers but keeps the code and TLS mapped,
    since it cannot count those registrations (native/library.py). The calls agree.
    """
    results = run_both(cxx_string_plugin, tmp_path, monkeypatch)
    assert results["native"] == results["system"] == (
        1, 14, 0, 105, 1, 2, 2, {0: (2, 2, 101), 1: (3, 2, 102)})
    assert results["system destroyed"] is False                  # glibc: not unloaded yet


def test_an_uncaught_throw_is_still_caught_inside_after_many_loads(cxx_plugin):
    """Registration and deregistration pair up: load, throw, close, again."""
    for _ in range(3):
        with minildr.native.load(cxx_plugin) as native:
            assert native.lookup("cxx_caught", "int (int)")(7) == 107


WAITS = r"""
import sys
import minildr.native
from minildr.native import unwind
c = minildr.native.load(sys.argv[1], trace=True)
print("c:", [e.message.split(" (")[0] for e in c.trace.events if e.step == "unwind"])
print("pending:", len(unwind.PENDING))
cxx = minildr.native.load(sys.argv[2], trace=True)          # brings libgcc_s with libstdc++
print("c:", [e.message.split(" (")[0] for e in c.trace.events if e.step == "unwind"][1:])
print("pending:", len(unwind.PENDING))
print("caught:", cxx.lookup("cxx_caught", "int (int)")(7))
c.close(); cxx.close()
print("after close:", len(unwind.PENDING))
"""


def test_a_library_loaded_before_the_unwinder_is_registered_when_it_comes(cxx_plugin, tmp_path):
    """A C library waits (no library it needs brings libgcc_s; loading or looking for the
    unwinder would cost more than dlopen's whole load of it); the C++ library that brings
    libgcc_s registers it, at its own load."""
    c_library = write_plugin(tmp_path, "plain", "int answer(void) { return 42; }\n",
                             "int answer(void);\n")
    out = run_python(WAITS, c_library, cxx_plugin)
    assert out.returncode == 0, out.stderr
    where = re.search(r"base\+0x[0-9a-f]+", out.stdout).group()
    assert out.stdout.splitlines() == [
        f"c: ['.eh_frame at {where} waits for the unwinder']", "pending: 1",
        f"c: ['.eh_frame at {where} registered with the unwinder']", "pending: 0",
        "caught: 107", "after close: 0"]
