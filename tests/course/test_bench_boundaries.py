"""The boundary benchmark (benchmarks/bench_boundaries.py) runs, and writes what it says.

Only that it works: its figures are measured by running it (`make bench`),
never asserted here (timings are not tests).
"""
from __future__ import annotations

import csv
import gc
import json
import shutil
import sys

import pytest

from helpers import ROOT
from minildr import lifetime
from platforms import requires_isolation, requires_native_loader

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_boundaries as bench  # noqa: E402


# The benchmark times every boundary, the native loader and isolation included.
def needs_every_boundary(test):
    return requires_isolation(requires_native_loader(test))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """One short run, with the collector off: what it leaves mapped is then seen (below)."""
    out = tmp_path_factory.mktemp("boundaries")
    was = gc.isenabled()
    gc.disable()
    try:
        res = bench.run(out, calls=200, rounds=1, repeats=2, discover_counts=(1, 3),
                        payload_sizes=(16, 4096), compiled_calls=1000, show=False)
        res.left_for_a_collection = lifetime.awaiting_unload()
    finally:
        if was:
            gc.enable()
    return out, res


@needs_every_boundary
def test_the_run_unmaps_its_plugin_when_it_ends(results):
    """Not at a later collection: notebook 07 draws its chart next, and matplotlib's
    import starts threads, under which a deferred unload is refused (LeftMapped). The
    functions it looked up went with close(), and none sat in a frame that cffi's
    compile leaves in a cycle."""
    _, res = results
    assert res.left_for_a_collection == 0


@needs_every_boundary
def test_every_boundary_is_timed_against_python(results):
    _, res = results
    keys = [r["key"] for r in res.calls]
    assert keys == ["python", "cffi-api", "plugin", "contract", "isolated", "process",
                    "config-once", "config-reread"]
    # (no ratio in a run whose python row was lost in the harness: see below)
    assert res.ratios()["python"] == (1.0 if res.call_seconds()["python"] > 0 else None)
    # seconds are net of the timing loop: raw minus the harness row, which is measured too
    assert res.harness > 0
    assert all(r["raw"] > 0 and abs(r["raw"] - res.harness - r["seconds"]) < 1e-15
               for r in res.calls)
    assert all(r["seconds"] > 0 for r in res.loads + res.discover)
    assert [r["plugins"] for r in res.discover] == [1, 3]


@needs_every_boundary
def test_payloads_compiled_calls_and_cold_opens_are_measured(results):
    _, res = results
    assert [r["bytes"] for r in res.payloads] == [16, 4096]
    assert all(r["in_process"] > 0 and r["isolated"] > 0 for r in res.payloads)
    assert res.compiled_call > 0
    once = res.loads_by_key()
    assert {"plugin-open-cold", "plugin-open", "python-start", "c-start"} <= set(once)
    started = {r["key"]: r["cpu_seconds"] for r in res.loads if "cpu_seconds" in r}
    assert set(started) == {"python-start", "c-start"} and all(s > 0 for s in started.values())
    assert res.meta["plugin_bytes"] > 0
    summary = res.summary()
    for line in ("timing harness", "from a C caller", "4 kB: in process", "open      cold",
                 "a bare Python"):
        assert line in summary, line


@needs_every_boundary
def test_results_written_as_json_and_csv_and_read_back(results):
    out, res = results
    json_path, csv_path = bench.write(res, out)
    assert bench.load(json_path) == res
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["kind"] for r in rows].count("call") == len(res.calls)
    assert {r["key"] for r in rows} >= {"python", "plugin-open", "discover-3"}
    assert json.loads(json_path.read_text())["meta"]["calls"] == 200


@needs_every_boundary
def test_plot_writes_a_png(results, tmp_path):
    _, res = results
    fig = bench.plot(res, tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    assert len(fig.axes) == 2
    assert len(bench.plot(res, calls=False).axes) == 1


def test_cffi_api_mode_refuses_a_definition_that_disagrees_with_the_header(tmp_path,
                                                                         monkeypatch):
    sources = tmp_path / "src"
    shutil.copytree(bench.SOURCES, sources)
    (sources / "add.c").write_text('#include "add_decl.h"\n'
                                   "double add(double a, double b) { return a + b; }\n")
    monkeypatch.setattr(bench, "SOURCES", sources)
    with pytest.raises(Exception, match=r"(?i)conflicting types|error"):
        bench.build_cffi_api(tmp_path)


def test_a_program_that_does_not_compile_is_an_error(tmp_path, monkeypatch):
    sources = tmp_path / "src"
    shutil.copytree(bench.SOURCES, sources)
    (sources / "add_main.c").write_text("int main(void) { return nope; }\n")
    monkeypatch.setattr(bench, "SOURCES", sources)
    with pytest.raises(RuntimeError, match=r"(?s)compiling add(\.exe)? failed:.*nope"):
        bench.build_program(tmp_path)


@needs_every_boundary
def test_a_boundary_computing_the_wrong_sum_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "OPERATIONS", {"add": lambda a, b: a - b})
    with pytest.raises(AssertionError, match=r"config-once: add\(2, 3\) gave -1, not 5"):
        bench.Bench(tmp_path, repeats=1)


ONCE = ["plugin-open-cold", "plugin-open", "raw-dlopen", "isolated-open", "python-start",
        "c-start"]


def _results_of(raw: dict) -> "bench.Results":
    named = [(key, key) for key in raw if key != "harness"]
    loads = [{"key": key, "label": key, "seconds": 1e-3, "repeats": 1} for key in ONCE]
    return bench.Results({"plugin_bytes": 16000}, bench.net_rows(raw, named), loads,
                         harness=raw["harness"])


@pytest.mark.parametrize("python", [50e-9, 45e-9], ids=["as slow as", "faster than"])
def test_a_python_row_lost_in_the_harness_gives_no_ratio_and_the_summary_says_why(
        python, tmp_path):
    """Under a heavy load the harness's best batch can be as slow as python's or slower:
    python's net time is then 0 (the ratios were a ZeroDivisionError) or negative (every
    ratio negative, "-60x of python"). Now no row has a ratio, and the summary, the
    table, the CSV and the figure say so."""
    res = _results_of({"harness": 50e-9, "python": python, "plugin": 350e-9,
                       "isolated": 20e-6})
    assert set(res.ratios().values()) == {None}
    summary = res.summary()
    assert "no ratio to python in this run" in summary and "of python" not in summary
    assert "per call  python              <= 0         - (no ratio)" in summary
    assert "per call  plugin            300 ns         - (no ratio)" in summary
    table = res.table().splitlines()
    assert table[1].split() == ["python", "<=", "0", "-"] and table[2].split() == [
        "plugin", "300", "-"]
    _, csv_path = bench.write(res, tmp_path)
    assert [r["ratio_to_python"] for r in csv.DictReader(csv_path.open())][:3] == [""] * 3
    assert bench.load(tmp_path / "boundaries.json") == res
    texts = [t.get_text() for t in bench.plot(res, calls=True).axes[0].texts]
    assert "<= 0 (no more than the timing loop)" in texts
    assert "300 ns  (no ratio: python's net time <= 0)" in texts


def test_a_row_lost_in_the_harness_has_no_ratio_the_others_keep_theirs():
    res = _results_of({"harness": 50e-9, "python": 100e-9, "cffi-api": 49e-9,
                       "plugin": 350e-9})
    assert res.ratios() == {"python": 1.0, "cffi-api": None, "plugin": 6.0}
    summary = res.summary()
    assert "no ratio to python" not in summary
    assert "a row at <= 0 measured no more than the timing harness alone" in summary
    assert "per call  plugin            300 ns        6x of python" in summary
