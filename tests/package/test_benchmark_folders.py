"""The benchmarks' temporary builds go when the benchmark ends (issue 16).

benchmarks/timing.build_greet used to build into a folder of its own and
hand back only the plugin's path: every run of bench_native left a
minildr-bench-* folder in the temp folder. `built_greet` is a `with`.
"""
from __future__ import annotations

import contextlib
import sys
import tempfile

import pytest

from helpers import ROOT

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import timing  # noqa: E402  (benchmarks/timing.py)


@pytest.mark.parametrize("ending", ["normally", "by an error"])
def test_the_greet_build_leaves_no_folder_behind(tmp_path, monkeypatch, ending):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(RuntimeError) if ending == "by an error" else contextlib.nullcontext():
        with timing.built_greet() as plugin:
            assert plugin.is_file() and plugin.parent.parent == tmp_path
            if ending == "by an error":
                raise RuntimeError("the benchmark failed")
    assert list(tmp_path.iterdir()) == []

