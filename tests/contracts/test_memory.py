"""Ownership across the boundary: many calls of each allocating method, no leak,
no double release (30,000 calls in make test, 100,000 in make fuzz).

Two witnesses: the plugins count the blocks they hand out and get back (a
leak leaves the count above zero, a double release takes it below), and the
process's resident memory, which a leak of even 32 bytes a call would grow
by megabytes. A control test leaks on purpose, to show the RSS check sees it.
"""
from __future__ import annotations

import gc

import pytest

import minildr
from examples.editor import FORMAT, LINTER, build_plugins

from helpers import build_once, stress
from platforms import requires_proc
from test_proxy import COMMAND, PROBE, upper_so, probe_so  # noqa: F401  (fixtures)

pytestmark = [requires_proc,               # resident memory, from /proc/self/statm
              pytest.mark.fuzz]            # make fuzz: the long run
CALLS = stress(30_000, 100_000)
EDITOR_CALLS = stress(15_000, 30_000)
PAGE = 4096


def rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def grows(call, n: int = CALLS) -> int:
    """Resident memory growth over n calls, after a warm-up that fills caches and pools."""
    for _ in range(10_000):
        call()
    before = rss()
    for _ in range(n):
        call()
    return rss() - before


# 1 MiB; leaking one 32-byte block a call (a 48-byte heap chunk) would be over
# 1.3 MiB at 30,000 calls (make test), over 4.5 MiB at 100,000 (make fuzz).
LIMIT = 1 << 20


def test_string_outputs_are_released_once_each(upper_so):
    with minildr.open(upper_so) as plugin:
        cmd = plugin.lookup("upper", COMMAND)
        live = plugin.lookup("live_outputs", "int64_t")
        line = "a line of text, long enough to matter: " + "x" * 40
        assert grows(lambda: cmd.run(line)) < LIMIT
        assert live[0] == 0


def test_failing_calls_do_not_leak(upper_so):
    with minildr.open(upper_so) as plugin:
        cmd = plugin.lookup("upper", COMMAND)

        def fail():
            try:
                cmd.run("bad\x01line")
            except minildr.PluginCallError:
                pass
        assert grows(fail) < LIMIT
        assert plugin.lookup("live_outputs", "int64_t")[0] == 0


def test_bytes_and_records_are_released_once_each(probe_so):
    with minildr.open(probe_so) as plugin:
        probe = plugin.lookup("probe", PROBE)
        live, releases = plugin.lookup("live", "long"), plugin.lookup("releases", "long")
        start = releases[0]
        assert grows(lambda: probe.reverse(b"\x00bytes\x00" * 8)) < LIMIT
        assert grows(lambda: probe.items(0)) < LIMIT
        assert live[0] == 0
        assert releases[0] - start == 2 * (CALLS + 10_000)       # exactly once per call


def test_editor_plugins_over_many_calls(tmp_path):
    built = build_plugins(tmp_path, build=build_once)
    with minildr.open(built["qp"]) as qp_plugin, minildr.open(built["lint"]) as lint_plugin:
        qp = qp_plugin.lookup("quoted_printable", FORMAT)
        linter = lint_plugin.lookup("whitespace", LINTER)
        text = "caf\u00e9 \t\n" * 20
        assert grows(lambda: qp.decode(qp.encode(text)), EDITOR_CALLS) < LIMIT
        assert grows(lambda: linter.lint(text), EDITOR_CALLS) < LIMIT
        assert qp_plugin.lookup("live_blocks", "int64_t")[0] == 0
        assert lint_plugin.lookup("live_blocks", "int64_t")[0] == 0


def test_the_rss_check_sees_a_leak(upper_so):
    """Control: call run() through raw cffi and never release: the check must notice."""
    with minildr.open(upper_so) as plugin:
        address = plugin.lookup("upper").address
        ffi = minildr.contracts.proxy.host_ffi(COMMAND)
        run = ffi.cast("command_t *", address).run
        line = b"y" * 1000
        out, err = ffi.new("char *[1]"), ffi.new("minildr_error *")
        assert grows(lambda: run(line, out, err), 20_000) > 8 * LIMIT
        assert plugin.lookup("live_outputs", "int64_t")[0] == 30_000
