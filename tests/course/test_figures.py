"""The course's pictures (minildr.course.figures) draw what they are given."""
from __future__ import annotations

from types import SimpleNamespace

import pytest


def test_leagues_are_bands_of_the_rows_they_hold(figures, results):
    assert figures.league("contract") == figures.IN_PROCESS
    assert figures.league_spans(results.calls) == [
        (figures.IN_PROCESS, 40e-9, 40e-9), (figures.ANOTHER_PROCESS, 40e-6, 40e-6),
        (figures.NEW_PROCESS, 0.6e-3, 0.6e-3)]


@pytest.fixture
def results():
    calls = [{"key": "python", "label": "python", "seconds": 40e-9, "ratio": 1.0},
             {"key": "isolated", "label": "isolated", "seconds": 40e-6, "ratio": 1000.0},
             {"key": "process", "label": "process", "seconds": 0.6e-3, "ratio": 15000.0}]
    loads = [{"key": "plugin-build", "label": "build", "seconds": 0.3},
             {"key": "plugin-open", "label": "open", "seconds": 1e-4},
             {"key": "c-start", "label": "C", "seconds": 1e-3}]
    return SimpleNamespace(calls=calls, loads=loads, discover=[{"plugins": 3, "seconds": 1e-3}])


def test_the_boundary_charts_are_written(figures, results, tmp_path):
    fig = figures.boundaries(results, tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    assert len(fig.axes) == 2
    bars = fig.axes[1].patches
    colours = {tuple(round(c, 3) for c in bar.get_facecolor()[:3]) for bar in bars}
    assert len(colours) == 3          # who pays: the author, the host, for comparison
    assert len(figures.boundaries(results, calls=False).axes) == 1


def test_a_row_at_or_below_the_timing_loop_still_draws(figures, results):
    """Net of the timing loop a cheap row can come out at or below zero on a loaded
    machine: it is drawn at the axis' floor like any bar, and the chart is still made
    (its league's band once took the square root of a negative number: a TypeError)."""
    results.calls[0]["seconds"] = -2e-9
    fig = figures.boundaries(results, loads=False)
    assert len(fig.axes) == 1


def test_the_boundary_charts_read_durations_in_units_at_each_power_of_ten(figures, results):
    """As the bars are labelled ('40 ns'), not as mathtext ('$10^{-8}$'), one grid line
    per decade (the notebook's prose: each grid line is ten times the one before)."""
    fig = figures.boundaries(results)
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.xaxis.get_major_ticks() if ax.get_xlim()[0] <= t.get_loc() <= ax.get_xlim()[1]]
        locs = [t.get_loc() for t in ticks]
        assert len(locs) >= 3 and all(abs(b / a - 10) < 1e-6 for a, b in zip(locs, locs[1:])), locs
        labels = [t.label1.get_text() for t in ticks]
        assert labels == [figures.human(x) for x in locs], labels
        assert all(t.gridline.get_visible() for t in ticks)
        assert not ax.xaxis.get_minor_locator()()


@pytest.mark.parametrize("draw", [
    lambda f, p: f.vtable_versions([(0, "struct_size"), (8, "run")], 16,
                                   [(0, "struct_size"), (8, "run"), (16, "help")], 24, p),
    lambda f, p: f.argument_registers(["a", "b"], ["a", "c"], p),
    lambda f, p: f.isolation(p),
    lambda f, p: f.load_pipeline(p),
])
def test_each_picture_is_drawn(figures, draw, tmp_path):
    draw(figures, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
