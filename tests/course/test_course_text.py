"""The course's text holds together: every link resolves, every notebook of part 1 keeps the habits.

Found necessary when notebook 03 was split in two and 04-08 became 05-09:
a link to a renamed notebook would otherwise fail only when a learner
clicks it. Part 1 (00-04) is held to the review's rules: a time estimate,
the glossary linked, at most five objectives, about 2,500 words of prose.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from helpers import ROOT

FOLDERS = ("notebooks", "exercises", "solutions")
NOTEBOOKS = sorted(p for folder in FOLDERS for p in (ROOT / folder).glob("*.ipynb"))
PART_ONE = sorted((ROOT / "notebooks").glob("0[0-4]-*.ipynb"))
LINK = re.compile(r"\]\(([^)#\s]+\.(?:ipynb|md))(?:#[^)]*)?\)")
PROSE_WORDS = 2600          # "about 2,500": the review's limit, with a little room


def markdown(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")


@pytest.mark.parametrize("path", NOTEBOOKS + [ROOT / "notebooks" / "glossary.md"],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_relative_link_points_at_a_file(path):
    text = path.read_text() if path.suffix == ".md" else markdown(path)
    broken = [target for target in LINK.findall(text)
              if not target.startswith("http") and not (path.parent / target).exists()]
    assert not broken, f"{path.name}: links to missing files {broken}"


def test_notebooks_are_numbered_without_gaps():
    numbers = sorted(int(p.name[:2]) for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert numbers == list(range(len(numbers))), numbers


@pytest.mark.parametrize("path", PART_ONE, ids=lambda p: p.name)
def test_part_one_keeps_the_habits(path):
    text = markdown(path)
    assert "**Time:**" in text, "a time estimate"
    assert "glossary.md" in text, "a link to the glossary"
    assert "Further reading" in text, "primary sources"
    objectives = text.split("**After this notebook you will be able to**")[1].split("\n\n**")[0]
    assert 1 <= objectives.count("\n- ") <= 5, "at most five objectives"
    words = len(re.findall(r"[A-Za-z0-9][\w'’.\-/`]*", text))
    assert words <= PROSE_WORDS, f"{words} words of prose"


def test_the_glossary_defines_the_words_the_course_leans_on():
    glossary = (ROOT / "notebooks" / "glossary.md").read_text().lower()
    for word in ("loader", "dynamic linker", "symbol", "section", "segment", "relocation",
                 "got", "plt", "relro", "soname", "abi", "interposition"):
        assert f"**{word}" in glossary, word


def test_figures_draw_from_the_data_they_are_given(figures):
    segments = [{"offset": 0, "vaddr": 0, "filesz": 100, "memsz": 100, "prot": "r--"},
                {"offset": 0x2e68, "vaddr": 0x3e68, "filesz": 416, "memsz": 424, "prot": "rw-"}]
    drawn = [
        figures.plugin_system(["a.so"]),
        figures.library_map([{"start": 0, "end": 4096, "perms": "r-xp", "sections": [".text"],
                              "relro": False}], "t"),
        figures.got_plt("f", "strlen", 0x1030, 0x4000),
        figures.registers(0x7F20E50C4000, 0xE50C4000),
        figures.check_pipeline(),
        figures.load_timeline([("checks", "checks"), ("ctor", "plugin")]),
        figures.file_to_memory(segments, [(".data", 0x2e68, 8)], (0x3000, 0x4000), 4096, "t"),
        figures.relocation("R", 0x3e68, 0x10F0, 0x7F0000010F0, 0x7F000000000, "frame_dummy"),
        figures.lookup_scopes(["python", "a.so"], ["b.so"], "name", "a.so", "b.so"),
    ]
    assert all(isinstance(fig, figures.Figure) for fig in drawn)
    texts = [t.get_text() for t in drawn[3].axes[0].texts]
    assert "e5" in texts and any("0xe50c4000" in t for t in texts), "the real bytes are drawn"
    texts = [t.get_text() for t in drawn[6].axes[0].texts]
    assert any("+8 bytes zero-filled" in t for t in texts), "memsz - filesz is shown"


def test_the_ownership_and_stride_pictures_draw_the_run_they_are_given(figures):
    """Notebook 05's pictures: each step of a real call with its count; each side's own stride."""
    own = figures.ownership([{"from": "host", "to": "plugin", "label": "run(x)", "live": 0},
                             {"from": "plugin", "to": "plugin", "label": "malloc: b", "live": None},
                             {"from": "plugin", "to": "host", "label": "the block", "live": 7}])
    texts = [t.get_text() for t in own.axes[0].texts]
    assert {"run(x)", "malloc: b", "the block", "0", "7"} <= set(texts)
    stride = figures.record_stride([(0, "a", 4)], 4, [(0, "a", 4), (4, "b", 2)], 8, count=3)
    texts = [t.get_text() for t in stride.axes[0].texts]
    assert {"0", "4", "8", "16"} <= set(texts), "the records start where each side's sizeof says"
    assert any("starts at byte 4" in t and "ends at 8" in t for t in texts)
    padding = [p for p in stride.axes[0].patches if p.get_hatch() == "..."]
    assert [(p.get_x(), p.get_width()) for p in padding] == [(6, 2), (14, 2), (22, 2)], \
        "the 2 bytes after b in each of the plugin's records; none in the host's"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_each_notebook_ends_by_pointing_at_its_exercise(path):
    """The key points send the learner on to the exercise (04 and 09 once did not)."""
    exercise = ROOT / "exercises" / path.name
    assert exercise.exists(), f"no exercise for {path.name}"
    cells = nbformat.read(path, as_version=4).cells
    starts = [i for i, c in enumerate(cells) if c.cell_type == "markdown"
              and "\n## Key points" in "\n" + c.source]
    assert starts, f"{path.name} has no key points"
    ending = "".join(c.source for c in cells[starts[-1]:] if c.cell_type == "markdown")
    assert f"](../exercises/{path.name})" in ending, \
        f"{path.name}'s key points (and what follows them) do not link exercises/{path.name}"


# Where this machine's paths would show: the home folder, the checkout, Python's own
# install, the temporary folder's pytest and worker folders.
MACHINE_PATH = re.compile(r"/root/|/home/[^/\s]+/|/work/|/Users/[^/\s]+/|\.pyenv/|"
                          r"site-packages/|/tmp/(?:pytest-of-|minildr-|tmp)")


def outputs_text(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append("".join(out.get("text", "")))
            texts.append("".join(out.get("traceback", [])))
            texts.extend("".join(v) for k, v in out.get("data", {}).items()
                         if k.startswith("text/"))
    return "\n".join(texts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_output_shows_a_path_of_the_machine_it_ran_on(path):
    """Nothing a learner sees names the folders of the machine the notebook was run on
    (a warning's file and line, a traceback, a printed path): outputs are committed."""
    found = [m.group(0) for m in MACHINE_PATH.finditer(outputs_text(path))]
    assert not found, f"{path.name}: its outputs name this machine's paths: {found[:5]}"
