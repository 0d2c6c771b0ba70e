"""A check's time limit for a learner's code (minildr/course/selfcheck.py): CALL_SECONDS, read
when the check runs, so that a test typing a hang into an exercise may shorten it in the
kernel (exercise_answers' set_up) while a learner keeps the 5 s."""
from __future__ import annotations

import time

import pytest

import minildr
from minildr.course import selfcheck

from helpers import EXAMPLES, build_once
from platforms import requires_isolation, requires_posix


def test_a_learner_has_five_seconds():
    assert selfcheck.CALL_SECONDS == 5.0


def test_a_host_process_is_stopped_at_call_seconds_as_it_is_when_the_check_runs(monkeypatch):
    monkeypatch.setattr(selfcheck, "CALL_SECONDS", 0.5)
    with pytest.raises(minildr.PluginTimeout, match=r"no answer within 0\.5 s during the host"):
        selfcheck.host_process("import time; time.sleep(30)")


@requires_posix("in_child forks")
def test_a_function_in_a_child_is_stopped_at_call_seconds_as_it_is_when_the_check_runs(
        monkeypatch):
    monkeypatch.setattr(selfcheck, "CALL_SECONDS", 0.5)
    with pytest.raises(minildr.PluginTimeout, match=r"no answer within 0\.5 s during sleep"):
        selfcheck.in_child(time.sleep, 30, during="sleep")


@requires_isolation
def test_an_isolated_check_has_call_seconds_as_it_is_when_the_check_runs(tmp_path, monkeypatch):
    path = build_once([EXAMPLES / "greet/greet.c"], name="greet",
                      exports=EXAMPLES / "greet/greet.h", out_dir=tmp_path)
    monkeypatch.setattr(selfcheck, "CALL_SECONDS", 0.5)
    with selfcheck.isolated(path) as plugin:
        assert plugin.timeout == 0.5
    with selfcheck.isolated(path, seconds=3) as plugin:      # a check's own limit stays its own
        assert plugin.timeout == 3
