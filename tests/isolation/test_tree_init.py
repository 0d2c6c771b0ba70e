"""The PID namespace's init (minildr/isolation/tree.py, run_init and reap) at its start:
however early the server ends, the init reports how and ends.

Forced orderings, not luck: tree.run_init runs in a child of this test, and the
server it forks ends exactly where each case says, relative to the init's first
steps (blocking SIGCHLD, the first reap, the first sigwaitinfo): a stand-in for
the step waits (waitid WNOWAIT: without reaping) until the server has ended, then
takes it. The init is not process 1 of a namespace here; its SIGCHLD is at its
default (ignored, as in a worker: process.BOOT), so a SIGCHLD that came while it was
not blocked is discarded, and only a reap that looks before it waits can see that
end. The init must write the server's wait status (exit 7) to the status pipe and
exit 0 within the deadline.
"""
from __future__ import annotations

import os
import signal
import struct
import time
import types

import pytest

from minildr.isolation import tree
from platforms import requires_linux

pytestmark = requires_linux("the keeper's tree and its init are Linux's")

DEADLINE = 30.0        # seconds: only a lost SIGCHLD (an init waiting for ever) reaches it


def _until_a_child_ended() -> None:
    """Wait, without reaping, until a child of this process has ended."""
    os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)


def _after_the_server_ended(real):
    """`real`, called only once the server has ended (the first call; later ones as is)."""
    calls = []

    def stand_in(*args):
        if not calls:
            _until_a_child_ended()
        calls.append(1)
        return real(*args)
    return stand_in


def _run_init(order: str, status_w: int, go_r: int, go_w: int) -> None:
    """In the test's child: force `order`, then become the init (never returns there);
    in the server, end with code 7 when told (go_w closed by the init), or at once."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)             # as a worker has it
    if order == "before the block":
        tree.signal = types.SimpleNamespace(**{**vars(signal), "pthread_sigmask":
                                               _after_the_server_ended(signal.pthread_sigmask)})
    elif order == "before the first reap":
        tree.reap = _after_the_server_ended(tree.reap)
    elif order == "between the first reap and the wait":
        real_wait = signal.sigwaitinfo

        def told_then_wait(*args):
            os.close(go_w)                                        # the server may end now
            _until_a_child_ended()
            return real_wait(*args)
        tree.signal = types.SimpleNamespace(**{**vars(signal), "sigwaitinfo": told_then_wait})
    tree.run_init(status_w, [], "", os.pidfd_open(os.getppid()))    # the test: its keeper
    # the server (run_init returns in it only)
    if order == "between the first reap and the wait":
        os.close(go_w)
        os.read(go_r, 1)                                      # end-of-file: told to end
    os._exit(7)


@pytest.mark.parametrize("order", ["before the block", "before the first reap",
                                   "between the first reap and the wait"])
def test_the_init_reports_a_server_that_ended_at_any_point_of_its_start(order):
    status_r, status_w = os.pipe()
    go_r, go_w = os.pipe()
    init = os.fork()
    if init == 0:
        try:
            os.close(status_r)
            _run_init(order, status_w, go_r, go_w)
        finally:
            os._exit(99)
    os.close(status_w)
    os.close(go_w)                 # (the init holds its own copy until it tells the server)
    os.close(go_r)
    deadline = time.monotonic() + DEADLINE
    ended = 0
    while time.monotonic() < deadline:
        ended, status = os.waitpid(init, os.WNOHANG)
        if ended:
            break
        time.sleep(0.01)
    if not ended:
        os.kill(init, signal.SIGKILL)                 # its server dies with it (PDEATHSIG)
        os.waitpid(init, 0)
    told = os.read(status_r, 4)
    os.close(status_r)
    assert ended, f"the init missed the server's end ({order}): still waiting after {DEADLINE} s"
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(told) == 4 and os.waitstatus_to_exitcode(struct.unpack("i", told)[0]) == 7
