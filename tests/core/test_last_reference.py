"""A closed plugin unmaps when the last thing handed out from it is dropped: at once, by its
reference count, with the garbage collector switched off.

close() while a function, pointer or proxy from the plugin is alive leaves it
mapped (lifetime.py); the unmap then happens when that object goes. If anything
minildr hands out sat in a reference cycle (a proxy holding its plugin holding
a cache of its proxies, a closure holding itself), "when it goes" would mean
"at some later collection", run by whatever thread allocates then: with a
thread the plugin did not start but that appeared since (a numerical library's
pool, say), the unmap is refused with a LeftMapped warning and the plugin stays
mapped for good. So every test below runs with `gc` disabled: each object must
free the plugin through its reference count alone.
"""
from __future__ import annotations

import gc
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

import minildr
from minildr.errors import PluginCallError

import conftest                     # the suite's own teardown hook, run as pytest runs it
from helpers import EXAMPLES, build_once
from platforms import requires_isolation, requires_native_loader, requires_proc

pytestmark = requires_proc

GREET_T = "const char *(void)"
COMMAND = minildr.Contract.from_header(EXAMPLES / "command" / "command.h", name="command",
                                       version="1.1")


def mapped(path: Path) -> int:
    """How many mappings of this process come from `path`: a minildr image of it (the
    sealed copy open() loads) or the file itself (what minildr.native.load maps)."""
    names = (f"minildr:{path.name}", os.fspath(path))
    with open("/proc/self/maps") as maps:
        return sum(any(name in line for name in names) for line in maps)


@pytest.fixture
def gc_off():
    """The collector off for the test: only reference counts may free anything."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@pytest.fixture(scope="module")
def upper_built(tmp_path_factory) -> Path:
    folder = EXAMPLES / "command"
    return build_once([folder / "upper.c"], name="upper", exports=folder / "upper.h",
                      contracts=[COMMAND], out_dir=tmp_path_factory.mktemp("upper"))


@pytest.fixture
def upper_so(upper_built, tmp_path) -> Path:
    """A copy of its own per test: a file another test left mapped is not this one (the
    system loader would hand that library out again, and nothing new would be mapped)."""
    return Path(shutil.copy(upper_built, tmp_path / upper_built.name))


def failed_call(proxy: Any) -> PluginCallError:
    """The error a method raised (its traceback holds the method's frame, so the proxy)."""
    try:
        proxy.run("a\x01b")                   # upper refuses control characters
    except PluginCallError as exc:
        return exc
    raise AssertionError("upper accepted a control character")


# What a user may hold of an open plugin: name -> (file fixture, how to get it from a Plugin).
HELD: Dict[str, "tuple[str, Callable[[minildr.Plugin], Any]]"] = {
    "function returning a pointer": ("greet_so", lambda p: p.lookup("greet", GREET_T)),
    "pointer a function returned": ("greet_so", lambda p: p.lookup("greet", GREET_T)()),
    "function returning a number": ("echo_so", lambda p: p.lookup(
        "run", "size_t (const char *, char *, size_t)")),
    "pointer to a variable": ("echo_so", lambda p: p.lookup("calls", "int")),
    "contract proxy": ("upper_so", lambda p: p.lookup("upper", COMMAND)),
    "proxy's bound method": ("upper_so", lambda p: p.lookup("upper", COMMAND).run),
    "proxy after calls": ("upper_so", lambda p: _called(p.lookup("upper", COMMAND))),
    "error a method raised": ("upper_so", lambda p: failed_call(p.lookup("upper", COMMAND))),
}


def _called(proxy: Any) -> Any:
    assert proxy.run("abc") == "ABC" and proxy.call("name") == "upper"
    assert isinstance(failed_call(proxy), PluginCallError)
    return proxy


@pytest.mark.parametrize("loader", ["system", pytest.param("native",
                                                           marks=requires_native_loader)])
@pytest.mark.parametrize("kind", list(HELD))
def test_the_last_reference_unmaps_a_closed_plugin_at_once(kind, loader, request, gc_off):
    fixture, take = HELD[kind]
    path = request.getfixturevalue(fixture)
    before = mapped(path)
    plugin = minildr.open(path, contracts=[COMMAND] if fixture == "upper_so" else (),
                          loader=loader)
    held = take(plugin)
    plugin.close()
    assert mapped(path) > before, f"{kind}: unmapped while still held"
    del held
    assert mapped(path) == before, f"{kind}: still mapped after its last reference went"


def test_a_symbol_holds_nothing(greet_so, gc_off):
    before = mapped(greet_so)
    with minildr.open(greet_so) as plugin:
        symbol = plugin.lookup("greet")
    assert mapped(greet_so) == before and symbol.address != 0


@requires_native_loader
def test_native_load_unmaps_with_the_last_function(greet_so, gc_off):
    """minildr.native.load's library: the learner's loader follows the same rule."""
    before = mapped(greet_so)
    library = minildr.native.load(greet_so)
    greet = library.lookup("greet", GREET_T)
    library.close()
    assert mapped(greet_so) > before
    assert minildr.ffi.string(greet()).startswith(b"Hello")
    del greet
    assert library.unloaded and mapped(greet_so) == before


def test_threads_dropping_at_once_unmap_exactly_once(upper_so, gc_off):
    """Eight threads each hold a bound method and drop it together: the last one unmaps."""
    before = mapped(upper_so)
    plugin = minildr.open(upper_so, contracts=[COMMAND])
    held = [plugin.lookup("upper", COMMAND).run for _ in range(8)]
    plugin.close()
    start, errors = threading.Barrier(len(held)), []

    def drop(box: list) -> None:
        try:
            assert box[0]("x") == "X"
            start.wait()
            box.clear()
        except BaseException as exc:         # pragma: no cover - reported below
            errors.append(exc)

    boxes = [[method] for method in held]
    del held
    threads = [threading.Thread(target=drop, args=(box,)) for box in boxes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert mapped(upper_so) == before


@requires_isolation
def test_closing_an_isolated_plugin_ends_its_worker_while_its_objects_are_held(upper_so,
                                                                               greet_so, gc_off):
    """Isolated: nothing is mapped in the host; close() ends the worker there and then, and
    what is still held raises PluginClosed."""
    plugins = [minildr.open(upper_so, contracts=[COMMAND], isolate=True),
               minildr.open(greet_so, isolate=True)]
    held = [plugins[0].lookup("upper", COMMAND), plugins[1].lookup("greet", GREET_T)]
    pids = [p.worker_pid for p in plugins]
    for p in plugins:
        p.close()
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), "the worker outlived close()"
    with pytest.raises(minildr.PluginClosed):
        held[0].run("abc")
    with pytest.raises(minildr.PluginClosed):
        held[1]()


def test_the_suite_collects_a_tests_own_cycle_that_holds_a_closed_plugin(greet_so, gc_off):
    """Where the held object is in a cycle of the caller's, only a collection frees it: the
    shape of many tests (a function from the plugin in a local, `pytest.raises(...) as err`
    in the same frame). tests/conftest.py collects after such a test, so the plugin is
    unmapped in that test, not at a later collection under another test's threads."""
    def a_test() -> None:
        with minildr.open(greet_so) as plugin:
            greet = plugin.lookup("greet", GREET_T)
        with pytest.raises(ZeroDivisionError) as err:
            1 / 0
        assert greet() and err.value    # frame -> err -> traceback -> frame: a cycle

    before = mapped(greet_so)
    a_test()
    assert mapped(greet_so) > before, "the cycle did not hold the function: nothing shown"
    teardown = conftest.pytest_runtest_teardown(None, None)
    next(teardown)
    with pytest.raises(StopIteration):
        teardown.send(None)
    assert mapped(greet_so) == before


@requires_isolation
def test_an_isolated_plugin_dropped_without_close_ends_its_worker_at_once(upper_so, greet_so,
                                                                          gc_off):
    """Dropping the last reference to an isolated plugin, and what came from it (a typed
    function, a contract proxy), ends its worker by reference counts alone: nothing of the
    host's worker object may sit in a cycle (a table of its own bound methods did: the
    worker lived until a collection)."""
    plugin = minildr.open(greet_so, isolate=True)
    greet = plugin.lookup("greet", GREET_T)
    assert greet()
    pid = plugin.worker_pid
    del plugin, greet
    assert not os.path.exists(f"/proc/{pid}"), "the worker outlived its last reference"

    plugin = minildr.open(upper_so, contracts=[COMMAND], isolate=True)
    upper = plugin.lookup("upper", COMMAND)
    pid = plugin.worker_pid
    del plugin
    assert os.path.exists(f"/proc/{pid}"), "the proxy did not keep its worker"
    assert upper.run("abc") is not None
    del upper
    assert not os.path.exists(f"/proc/{pid}"), "the worker outlived its proxy"
