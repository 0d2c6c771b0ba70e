"""Ctrl-C at any line of open, lookup, close, build and discover leaves nothing half-done.

The reliability review injected KeyboardInterrupt at random line events inside
minildr; this is that campaign, deterministic. For each operation,
interrupt_child.py counts the line events the operation runs inside the minildr
package, then raises KeyboardInterrupt at each of them (or at an even spread
of them when there are more than the budget), and after each interrupt checks
that no descriptor, mapping of the plugin or of its sealed copy, child process,
thread, or staged file in the build folder is left, and that the same
operation then works. One child process per operation: what one case leaks
must not hide in, or be blamed on, the next.

`make test` tries a short spread (SHORT interrupt points per operation);
`make fuzz` twenty times as many (fuzz_examples), which covers every line event
of the shorter operations.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import fuzz_examples
from platforms import requires_native_loader, requires_proc

HERE = Path(__file__).resolve().parent
SHORT = 6                    # interrupt points per operation in make test


def campaign(operation: str, folder: Path, cases: int, timeout: float = 900) -> dict:
    done = subprocess.run([sys.executable, str(HERE / "interrupt_child.py"), operation,
                           str(folder), str(cases)], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


IN_PROCESS = ["open", "lookup", "close", "build", "discover"]


@requires_proc
@pytest.mark.fuzz
@pytest.mark.parametrize("operation", IN_PROCESS)
def test_an_interrupt_at_any_line_leaves_nothing_behind(operation, tmp_path):
    """The review's campaign (4,650 random interrupts) found open(), close() and discover
    leaving the library mapped: a library made in load_library lost when prepare()'s
    exit was interrupted, the plugin lost at open's `return`, and close() forgetting the
    library before closing it (so an interrupted close could never be finished)."""
    result = campaign(operation, tmp_path, fuzz_examples(SHORT))
    assert result["events"] > 10 and result["tried"] >= min(SHORT, result["events"])
    assert result["problems"] == []


@requires_native_loader
@pytest.mark.fuzz
def test_an_interrupt_at_any_line_of_a_native_lookup_leaves_nothing_behind(tmp_path):
    """keep_mapped_while counted a function before registering its release: an interrupt
    in between kept the library mapped for good. Now the release comes first."""
    result = campaign("lookup-native", tmp_path, fuzz_examples(SHORT))
    assert result["events"] > 10 and result["problems"] == []


def test_the_interrupt_points_spread_over_the_whole_operation():
    sys.path.insert(0, str(HERE))
    try:
        from interrupt_child import interrupt_points
    finally:
        sys.path.remove(str(HERE))
    assert interrupt_points(5, 12) == [1, 2, 3, 4, 5]
    points = interrupt_points(1000, 12)
    assert len(points) == 12 and points[0] == 1 and points[-1] == 1000
