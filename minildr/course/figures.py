"""The course's pictures, so that a notebook cell shows the idea, not forty lines of matplotlib.

Each function draws one figure and returns it (Jupyter shows a returned figure
once; `plt.show()` is not needed; some also write it to `path` when given).
Figures drawn from real data take that data as arguments, already measured by
the notebook's own cells: the notebook does the reading (`/proc/self/maps`,
program headers, a relocation's bytes, a benchmark's results, a contract's
layout), this module only draws. Conceptual diagrams (the GOT and PLT, lookup
scopes) take the names and numbers the notebook's run printed, so the picture
and the run agree.

Notebooks 00-04: `plugin_system`, `library_map`, `got_plt`, `registers` (rax
versus eax), `check_pipeline`, `load_timeline`, `file_to_memory`,
`relocation`, `lookup_scopes`. Notebooks 05-07: `vtable_versions`,
`ownership` (who allocates and who frees, a real call as a sequence),
`record_stride` (an array read with the host's sizeof),
`argument_registers` (which register carries which argument), `isolation`,
`load_pipeline`, `boundaries` (one call per boundary, its leagues shaded as
the bands their rows span; the one-time costs, coloured by who pays them).

matplotlib is imported here at module level: only notebooks import this module.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch, Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from ..console import human, times   # re-exported: notebook 07 prints with figures.human

# One colour per permission, the same in every figure of the course.
PERMISSION_COLOURS = {"r-x": "tab:red", "r--": "tab:blue", "rw-": "tab:green", "---": "lightgrey"}
PLUGIN_CODE = "#f4a6a6"      # where plugin code may run
NEUTRAL = "#eeeeee"


def _box(ax, x: float, y: float, w: float, h: float, text: str, colour: str,
         fontsize: float = 9, edge: str = "black", style: str = "round,pad=0.02") -> None:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=style, facecolor=colour, edgecolor=edge))
    if text:
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, start: Tuple[float, float], end: Tuple[float, float], text: str = "",
           dashed: bool = False, dx: float = 0.0, dy: float = 0.0, curve: float = 0.0,
           colour: str = "black", fontsize: float = 8.5) -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14,
                                 connectionstyle=f"arc3,rad={curve}", color=colour,
                                 linestyle="--" if dashed else "-"))
    if text:
        ax.text((start[0] + end[0]) / 2 + dx, (start[1] + end[1]) / 2 + dy, text,
                ha="center", va="center", fontsize=fontsize, color=colour)


def _canvas(width: float, height: float, xlim: Tuple[float, float],
            ylim: Tuple[float, float], title: str = ""):
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.axis("off")
    if title:
        ax.set_title(title)
    plt.close(fig)       # returned, not shown twice
    return fig, ax


# --------------------------------------------------------------------------- 00
def plugin_system(plugin_files: Sequence[str]) -> Figure:
    """Notebook 00: the layers of a plugin load, the process apart from the disk.

    On disk, outside the process: the plugins folder. Inside the host process:
    the host, the plugin manager (minildr.open), the dynamic linker (ld.so,
    user-space code that dlopen runs) and the mapped images. Under the
    process: the kernel, which only maps pages (mmap, mprotect).
    """
    fig, ax = _canvas(12, 6, (-0.3, 12.3), (-0.6, 6.4),
                      "A plugin load, layer by layer: files on disk become images in the host's memory")
    _box(ax, 0.0, 1.6, 2.3, 3.0, "on disk\n\nplugins/\n" + "\n".join(plugin_files), "#fde9c9")
    ax.add_patch(Rectangle((3.0, 0.9), 9.1, 5.1, fill=False, linewidth=1.5))
    ax.text(7.55, 5.75, "the host process (one address space)", ha="center", fontsize=10)
    _box(ax, 4.0, 4.0, 2.8, 1.3, "plugin manager\nminildr.open:\nfind, check, look up", "#d7e8f7")
    _box(ax, 4.0, 1.2, 2.8, 1.2, "host\n(the editor's core)", "#dcefd8")
    _box(ax, 7.4, 2.9, 2.4, 1.4, "dynamic linker\nld.so (dlopen):\nmap, relocate,\nrun initialisers",
         "#e6dcf2")
    _box(ax, 10.2, 1.2, 1.75, 4.0, "mapped\nimages\n(the plugins'\ncode and data,\nin memory)",
         "#fff4c2")
    _box(ax, 3.0, -0.5, 9.1, 0.8, "kernel: mmap and mprotect map file pages into the process",
         NEUTRAL)
    _arrow(ax, (2.35, 4.3), (3.95, 4.6), "1 find files\n2 check bytes", dy=0.45, dx=-0.2)
    _arrow(ax, (6.85, 4.4), (7.6, 4.35), "3 load", dy=0.3, dx=0.1)
    _arrow(ax, (9.85, 3.6), (10.15, 3.6))
    _arrow(ax, (5.4, 2.45), (5.4, 3.95), "4 look up\nnames", dx=-0.6)
    _arrow(ax, (6.85, 1.8), (10.15, 1.8), "5 the host calls the plugin's\ncode, in memory", dy=0.3)
    _arrow(ax, (2.35, 2.2), (5.0, 0.35), "file pages", dashed=True, dx=-0.6, dy=-0.2)
    _arrow(ax, (9.0, 0.35), (10.9, 1.15), "", dashed=True)
    return fig


# --------------------------------------------------------------------------- 01
def library_map(rows: Sequence[Mapping[str, object]], title: str) -> Figure:
    """Notebook 01: one library's mappings to scale, each with its permissions and sections.

    rows: dicts with start and end (offsets from the base), perms ("r-x"...),
    sections (names), relro (bool), and optionally dirty (kB of private dirty pages).
    """
    fig, ax = plt.subplots(figsize=(11, 3.2))
    plt.close(fig)
    end = max(int(r["end"]) for r in rows)
    for r in rows:
        x, width = int(r["start"]) / 1024, (int(r["end"]) - int(r["start"])) / 1024
        ax.add_patch(Rectangle((x, 0), width * 0.98, 1, color=PERMISSION_COLOURS[str(r["perms"])[:3]]))
        label = [str(r["perms"])[:3] + (" RELRO" if r.get("relro") else "")] + list(r["sections"])
        ax.text(x + width / 2, 0.5, "\n".join(label), ha="center", va="center",
                fontsize=8.5, color="white")
    ax.set_xlim(0, end / 1024)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_xlabel("offset from the library's base address (kB)")
    ax.set_title(title)
    used = sorted({str(r["perms"])[:3] for r in rows})
    ax.legend(handles=[Patch(color=PERMISSION_COLOURS[p], label=p) for p in used],
              loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=len(used), frameon=False)
    fig.tight_layout()
    return fig


def got_plt(caller: str, callee: str, plt_at: int, got_at: int) -> Figure:
    """Notebook 01: a call through the PLT and the GOT, with the lazy path.

    The addresses are the ones objdump printed (offsets in the library file).
    """
    fig, ax = _canvas(12, 4.6, (-0.2, 12.2), (-0.3, 4.9),
                      f"{caller} calls {callee}: through a PLT stub (code) and a GOT slot (data)")
    _box(ax, 0.0, 2.8, 2.6, 1.3, f"{caller}\n(code, r-x)\ncall {callee}@plt", "#fbdada")
    _box(ax, 3.3, 2.8, 2.8, 1.3, f"PLT stub at {plt_at:#x}\n(code, r-x)\njmp *GOT[{got_at:#x}]",
         "#fbdada")
    _box(ax, 6.9, 2.8, 2.4, 1.3, f"GOT slot {got_at:#x}\n(data, written\nby the loader)",
         "#d9ecd2")
    _box(ax, 10.0, 2.8, 2.0, 1.3, f"{callee}\nin libc.so.6", "#fff4c2")
    _box(ax, 6.4, 0.1, 3.4, 1.2, "ld.so's resolver: find the name,\nwrite its address into the slot",
         "#e6dcf2")
    _arrow(ax, (2.65, 3.45), (3.25, 3.45))
    _arrow(ax, (6.15, 3.45), (6.85, 3.45), "reads", dy=0.25)
    _arrow(ax, (9.35, 3.6), (9.95, 3.6), "now: the slot holds\nthe address", dy=0.55,
           colour="tab:green")
    _arrow(ax, (8.1, 2.75), (8.1, 1.35), "lazy, first call only:\nthe slot still points back\n"
           "into the PLT", dx=-1.6, colour="tab:purple")
    _arrow(ax, (9.85, 0.7), (11.0, 2.75), "then jumps to it", dx=0.75, colour="tab:purple",
           curve=0.2)
    ax.text(0.0, 1.6, "RTLD_NOW / -z now: every slot is filled\nat load; RTLD_LAZY: at first call.",
            fontsize=8.5)
    return fig


# --------------------------------------------------------------------------- 02
def registers(pointer: int, received: int) -> Figure:
    """Notebook 02: a 64-bit pointer in rax, and the 32 bits a caller expecting an int reads (eax)."""
    fig, ax = _canvas(11, 2.8, (-0.5, 16.8), (-1.4, 2.5),
                      "greet() leaves a 64-bit pointer in rax; a caller that expects an int reads eax")
    data = pointer.to_bytes(8, "big")
    for i, byte in enumerate(data):
        low = i >= 4
        colour = "#f6c177" if low else "#dddddd"
        _box(ax, i * 2.0, 0.6, 1.9, 0.9, f"{byte:02x}", colour, fontsize=11, style="square,pad=0")
    ax.text(-0.4, 1.05, "rax", ha="right", va="center", fontsize=11)
    ax.plot([8.0, 8.0, 15.9, 15.9], [0.45, 0.3, 0.3, 0.45], color="black")
    ax.text(11.95, -0.05, f"eax: the low 32 bits = {received:#010x}, read as an int",
            ha="center", fontsize=9.5)
    ax.plot([0.0, 0.0, 7.9, 7.9], [0.45, 0.3, 0.3, 0.45], color="grey")
    ax.text(3.95, -0.05, "the high 32 bits: lost", ha="center", fontsize=9.5, color="grey")
    ax.text(7.95, 1.9, f"the real pointer {pointer:#x} (most significant byte first)",
            ha="center", fontsize=9.5)
    ax.text(7.95, -0.9, "x86-64 psABI §3.2.3: integers and pointers are returned in rax; "
            "an int is its low half", ha="center", fontsize=8.5, color="dimgrey")
    return fig


# --------------------------------------------------------------------------- 03
CHECK_STEPS = [  # (what is checked, the error when it fails, phase)
    ("the file\nexists", "PluginNotFound", "file"),
    ("a shared library\nfor this\nOS and CPU", "NotAPlugin", "file"),
    ("it carries\na manifest", "NotAPlugin", "file"),
    ("same ABI,\nsame platform", "VersionMismatch", "file"),
    ("same contract\nhashes", "DependencyMismatch", "file"),
    ("dlopen maps,\nrelocates, runs\ninitialisers", "LoadError", "load"),
    ("the name\nis exported", "SymbolNotFound", "lookup"),
    ("the C type\nmatches", "SymbolTypeError", "lookup"),
]


def check_pipeline() -> Figure:
    """Notebook 03: minildr.open's checks in order, and where plugin code may first run."""
    colours = {"file": "#d7e8f7", "load": PLUGIN_CODE, "lookup": "#dcefd8"}
    phases = {"file": "minildr.open: checks 1-5 read bytes (no plugin code runs)",
              "load": "check 6: dlopen\n(plugin code may run)", "lookup": "plugin.lookup"}
    w, step = 1.45, 1.7
    fig, ax = _canvas(13, 3.9, (-0.2, len(CHECK_STEPS) * step), (0, 2.95))
    for i, (what, error, phase) in enumerate(CHECK_STEPS):
        x = i * step
        _box(ax, x, 1, w, 1.1, what, colours[phase], fontsize=8.5, style="round,pad=0.03")
        ax.annotate("", xy=(x + w / 2, 0.45), xytext=(x + w / 2, 0.95),
                    arrowprops=dict(arrowstyle="-|>", color="tab:red"))
        ax.text(x + w / 2, 0.3, error, ha="center", va="center", fontsize=8, color="tab:red")
        if i < len(CHECK_STEPS) - 1:
            ax.annotate("", xy=(x + step - 0.03, 1.55), xytext=(x + w + 0.05, 1.55),
                        arrowprops=dict(arrowstyle="-|>"))
    for phase, title in phases.items():
        xs = [i * step for i, s in enumerate(CHECK_STEPS) if s[2] == phase]
        left, right = xs[0], xs[-1] + w
        ax.plot([left, left, right, right], [2.25, 2.35, 2.35, 2.25], color="black", linewidth=1)
        ax.text((left + right) / 2, 2.55, title, ha="center", fontsize=9)
    return fig


def load_timeline(events: Sequence[Tuple[str, str]]) -> Figure:
    """Notebooks 03 and 04: everything that happens in one load, in order.

    events: (what, who runs) pairs in order; who is "checks", "loader" or "plugin".
    Plugin steps are red: the first red box is where plugin code can first run.
    """
    colours = {"checks": "#d7e8f7", "loader": "#e6dcf2", "plugin": PLUGIN_CODE, "host": "#dcefd8"}
    w, step = 1.5, 1.65
    fig, ax = _canvas(max(8, 1.65 * len(events) + 0.5), 2.6,
                      (-0.2, len(events) * step), (0.1, 2.5),
                      "One load, in order: the first red box is where the plugin's own code can run")
    first = next((i for i, (_, who) in enumerate(events) if who == "plugin"), None)
    for i, (what, who) in enumerate(events):
        x = i * step
        _box(ax, x, 0.6, w, 1.1, what, colours[who], fontsize=8, style="round,pad=0.03")
        if i < len(events) - 1:
            ax.annotate("", xy=(x + step - 0.03, 1.15), xytext=(x + w + 0.05, 1.15),
                        arrowprops=dict(arrowstyle="-|>"))
    if first is not None:
        x = first * step + w / 2
        ax.annotate("plugin code can run from here on", xy=(x, 1.75), xytext=(x, 2.2),
                    ha="center", fontsize=9, color="tab:red",
                    arrowprops=dict(arrowstyle="-|>", color="tab:red"))
    ax.legend(handles=[Patch(color=c, label=k) for k, c in colours.items()
                       if any(who == k for _, who in events)],
              loc="lower center", bbox_to_anchor=(0.5, -0.25), ncol=4, frameon=False)
    return fig


# --------------------------------------------------------------------------- 04
def file_to_memory(segments: Sequence[Mapping[str, int]], sections: Sequence[Tuple[str, int, int]],
                   relro: Optional[Tuple[int, int]], page: int, title: str) -> Figure:
    """Notebook 04: the file (offsets) above, memory (offsets from the base) below.

    segments: PT_LOAD program headers as dicts (offset, vaddr, filesz, memsz, prot).
    sections: (name, file offset, size) of the sections inside them, for labels.
    Each segment's file bytes go to a page-aligned place in memory; memsz past
    filesz is zero-filled (.bss); the RELRO span is drawn over memory.
    """
    fig, ax = plt.subplots(figsize=(12, 4.6))
    plt.close(fig)
    span = max(s["vaddr"] + s["memsz"] for s in segments)
    span = -(-span // page) * page
    file_end = max(s["offset"] + s["filesz"] for s in segments)
    file_y, mem_y, h = 2.6, 0.3, 0.8
    for s in segments:
        colour = PERMISSION_COLOURS[s["prot"]]
        ax.add_patch(Rectangle((s["offset"] / 1024, file_y), s["filesz"] / 1024, h, color=colour,
                               alpha=0.85))
        ax.add_patch(Rectangle((s["vaddr"] / 1024, mem_y), s["filesz"] / 1024, h, color=colour))
        if s["memsz"] > s["filesz"]:
            ax.add_patch(Rectangle(((s["vaddr"] + s["filesz"]) / 1024, mem_y),
                                   (s["memsz"] - s["filesz"]) / 1024, h, facecolor="white",
                                   edgecolor=colour, hatch="///"))
            ax.text((s["vaddr"] + s["memsz"]) / 1024 + 0.05, mem_y + h + 0.08,
                    f"+{s['memsz'] - s['filesz']} bytes zero-filled (.bss)", fontsize=8)
        page_start = s["vaddr"] // page * page
        page_end = -(-(s["vaddr"] + s["memsz"]) // page) * page
        level = mem_y - 0.12 - 0.1 * (segments.index(s) % 2)
        ax.plot([page_start / 1024 + 0.05, page_end / 1024 - 0.05], [level, level],
                color=colour, linewidth=3)
        ax.annotate("", xy=(s["vaddr"] / 1024 + 0.02, mem_y + h + 0.02),
                    xytext=(s["offset"] / 1024 + 0.02, file_y - 0.02),
                    arrowprops=dict(arrowstyle="-|>", color="dimgrey"))
        label = f"file {s['offset']:#x}\n-> base+{s['vaddr']:#x}"
        ax.text((s["offset"] + s["vaddr"]) / 2048 + 0.08, (file_y + mem_y + h) / 2, label,
                fontsize=7.5, color="dimgrey")
    shown = [(n, o, z) for n, o, z in sections
             if n in (".dynsym", ".text", ".rodata", ".eh_frame", ".got", ".data")]
    for i, (name, offset, size) in enumerate(shown):
        ax.text((offset + size / 2) / 1024, file_y + h + 0.1 + 0.25 * (i % 2), name,
                fontsize=7.5, ha="center", va="bottom")
    if relro:
        left, right = relro[0] / 1024, relro[1] / 1024
        ax.add_patch(Rectangle((left, mem_y - 0.02), right - left, h + 0.04, fill=False,
                               edgecolor="black", linewidth=2, linestyle="--"))
        ax.text(left, mem_y - 0.45, "RELRO page: read-only after relocation", fontsize=8)
    ax.text(-0.1, file_y + h / 2, "file", ha="right", va="center", fontsize=10)
    ax.text(-0.1, mem_y + h / 2, "memory", ha="right", va="center", fontsize=10)
    ax.set_xlim(-0.9, max(span, file_end) / 1024 + 1.6)
    ax.set_ylim(-0.7, 4.2)
    ax.set_yticks([])
    for x in range(0, span + 1, page):
        ax.axvline(x / 1024, color="lightgrey", linewidth=0.6, zorder=0)
    ax.set_xlabel(f"kB (grey lines: {page // 1024} kB pages; bars under memory: the whole pages each segment maps)")
    ax.set_title(title)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return fig


def relocation(label: str, slot: int, file_word: int, written: int, base: int,
               target: str) -> Figure:
    """Notebook 04: one RELATIVE relocation, the 8 bytes before and after."""
    fig, ax = _canvas(11, 3.0, (-3.2, 17), (-0.6, 3.3),
                      f"{label} at base+{slot:#x}: the file's offset becomes an address")
    for row, (name, word) in enumerate((("in the file", file_word), ("after relocation", written))):
        y = 2.0 - row * 1.6
        ax.text(-0.3, y + 0.4, name, ha="right", va="center", fontsize=9.5)
        for i, byte in enumerate(word.to_bytes(8, "little")):
            changed = row == 1 and byte != file_word.to_bytes(8, "little")[i]
            _box(ax, i * 1.6, y, 1.5, 0.8, f"{byte:02x}", "#f6c177" if changed else "#dddddd",
                 fontsize=10, style="square,pad=0")
        ax.text(13.2, y + 0.4, f"= {word:#x}", va="center", fontsize=9.5)
    ax.annotate("", xy=(6.4, 1.25), xytext=(6.4, 1.95), arrowprops=dict(arrowstyle="-|>"))
    ax.text(6.7, 1.6, f"B + A: base {base:#x} + addend {file_word:#x} = the address of {target}",
            fontsize=8.5, va="center")
    ax.text(0, -0.45, "bytes lowest address first (little-endian); orange: written by the loader",
            fontsize=8, color="dimgrey")
    return fig


def lookup_scopes(global_scope: Sequence[str], local_scope: Sequence[str], name: str,
                  bound_to: str, wanted: str) -> Figure:
    """Notebook 04: the global scope searched before a library's own, and the interposition arrow."""
    fig, ax = _canvas(12, 4.2, (-0.3, 12.3), (-0.4, 4.4),
                      f"Where ld.so looks for `{name}`: the global scope first, then the library's own")
    ax.text(0, 3.9, "1. global scope (the program, its libraries, everything loaded RTLD_GLOBAL)",
            fontsize=9.5)
    for i, lib in enumerate(global_scope):
        colour = PLUGIN_CODE if lib == bound_to else "#d7e8f7"
        _box(ax, i * 2.4, 2.6, 2.2, 0.9, lib, colour, fontsize=8.5)
        if i:
            _arrow(ax, (i * 2.4 - 0.2, 3.05), (i * 2.4 - 0.02, 3.05))
    ax.text(0, 1.75, "2. the library's local scope (itself, then its DT_NEEDED)", fontsize=9.5)
    for i, lib in enumerate(local_scope):
        colour = "#dcefd8" if lib == wanted else "#d7e8f7"
        _box(ax, i * 2.4, 0.5, 2.2, 0.9, lib, colour, fontsize=8.5)
    index = list(global_scope).index(bound_to)
    _arrow(ax, (1.1 + list(local_scope).index(wanted) * 2.4, 1.45),
           (1.1 + index * 2.4, 2.55), f"`{name}` bound here: first definition found",
           dx=2.6, colour="tab:red", curve=-0.2)
    ax.text(0, -0.3, f"{wanted} asked for its own `{name}` and got {bound_to}'s: interposition. "
            "Cures: hidden or protected visibility, -Bsymbolic, RTLD_DEEPBIND, RTLD_LOCAL.",
            fontsize=8.5)
    return fig


# ---------------------------------------------------------------------------
# Notebooks 05-07: contracts, isolation, the cost of each boundary
# ---------------------------------------------------------------------------
PathLike = Union[str, "os.PathLike[str]"]

# The leagues: boundaries grouped by what a call does (stays in the process;
# talks to another process or the disk; starts a process), each drawn as the
# band its rows span in one run. Bands, not fixed bounds: a busy machine
# stretches the costs unevenly, and the run shows where the gaps really are.
IN_PROCESS = "in-process"
ANOTHER_PROCESS = "another process or the disk"
NEW_PROCESS = "a new process"
LEAGUE_OF = {"python": IN_PROCESS, "cffi-api": IN_PROCESS, "plugin": IN_PROCESS,
             "contract": IN_PROCESS, "config-once": IN_PROCESS,
             "isolated": ANOTHER_PROCESS, "config-reread": ANOTHER_PROCESS,
             "process": NEW_PROCESS}
LEAGUE_SHADES = {IN_PROCESS: "#e8f1e4", ANOTHER_PROCESS: "#fdf1d8", NEW_PROCESS: "#f8e0dc"}

# Who pays a one-time cost (notebook 06's second chart).
PAYER = {
    "cffi-api-compile": "the author, at build time",
    "plugin-build": "the author, at build time",
    "process-compile": "the author, at build time",
    "raw-dlopen": "for comparison",
    "python-start": "for comparison",
    "c-start": "for comparison",
}
PAYER_COLOURS = {"the author, at build time": "#8172b3", "the host, at start-up": "#dd8452",
                 "for comparison": "#b0b0b0"}


def league(key: str) -> str:
    """The league of one boundary of the benchmark, by its key."""
    return LEAGUE_OF[key]


def league_spans(calls: Sequence[Dict[str, Any]]) -> List[Tuple[str, float, float]]:
    """(league, cheapest, dearest) per league, in order of cost: the bands of one run."""
    spans: Dict[str, List[float]] = {}
    for row in calls:
        spans.setdefault(league(row["key"]), []).append(row["seconds"])
    return sorted(((name, min(v), max(v)) for name, v in spans.items()), key=lambda s: s[1])


def _seconds_axis(ax: Any, label: str) -> None:
    """A log axis of durations: a grid line at each power of ten, labelled as the bars
    are ('10 ns', '1 ms'), no minor ticks.

    Matplotlib's own log labels are mathtext ('$10^{-7}$'), and its minor ticks are
    dozens of tick objects: the two made each chart of notebook 07 cost ~0.7 CPU s
    to draw; the labels in units cost ~0.4 and read like the bars beside them.
    """
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda seconds, _: human(seconds)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(axis="x", color="#d0d0d0", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_xlabel(label)


def _finish(fig: Any, path: Optional[PathLike]) -> Any:
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


# ---------------------------------------------------------------------------
# notebook 06
# ---------------------------------------------------------------------------
def boundaries(results: Any, path: Optional[PathLike] = None, *, calls: bool = True,
               loads: bool = True) -> Any:
    """Per-call costs (log scale, leagues shaded) and/or one-time costs (who pays)."""
    panels = [draw for draw, wanted in ((_calls, calls), (_loads, loads)) if wanted]
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 4.6), squeeze=False)
    for draw, ax in zip(panels, axes[0]):
        draw(results, ax)
    return _finish(fig, path)


def _calls(results: Any, ax: Any) -> None:
    rows = sorted(results.calls, key=lambda r: r["seconds"], reverse=True)
    seconds = [max(r["seconds"], 1e-10) for r in rows]
    low, high = min(seconds) / 4, max(seconds) * 400
    for name, cheapest, dearest in league_spans(results.calls):
        left, right = max(cheapest, 1e-10) / 1.6, max(dearest, 1e-10) * 1.6   # as the bars
        ax.axvspan(left, right, color=LEAGUE_SHADES[name], zorder=0)
        ax.text((left * right) ** 0.5, len(rows) - 0.45, name.replace(" or ", "\nor "),
                ha="center", va="bottom", fontsize=7.5, color="#555555")
    bars = ax.barh([r["label"] for r in rows], seconds, color="#4c72b0", zorder=2)
    _seconds_axis(ax, "time per call, net of the timing loop (log scale)")
    ax.set_xlim(low, high)
    ax.set_ylim(-0.6, len(rows) + 0.6)
    ax.set_title("one call across each boundary, from Python: add(2, 3)")
    for bar, r in zip(bars, rows):
        ax.text(bar.get_width() * 1.2, bar.get_y() + bar.get_height() / 2,
                _call_label(r), va="center", fontsize=8, zorder=3)


def _call_label(row: Dict[str, Any]) -> str:
    """A bar's words: its net time and its ratio to python, or that this run has neither
    (a net time not above zero, no ratio: bench_boundaries.net_rows)."""
    if row["seconds"] <= 0:
        return "<= 0 (no more than the timing loop)"
    if row["ratio"] is None:
        return f"{human(row['seconds'])}  (no ratio: python's net time <= 0)"
    return f"{human(row['seconds'])}  ({times(row['ratio'])} python)"


def _loads(results: Any, ax: Any) -> None:
    rows: List[Dict[str, Any]] = list(results.loads) + [
        {"key": "discover", "label": f"discover, {r['plugins']} plugin(s)",
         "seconds": r["seconds"]} for r in results.discover]
    rows = sorted(rows, key=lambda r: r["seconds"], reverse=True)
    payers = [PAYER.get(r["key"], "the host, at start-up") for r in rows]
    bars = ax.barh([r["label"] for r in rows], [r["seconds"] for r in rows],
                   color=[PAYER_COLOURS[p] for p in payers])
    _seconds_axis(ax, "time, paid once (log scale)")
    ax.set_title("the price paid once, and who pays it")
    for bar, r in zip(bars, rows):
        ax.text(bar.get_width() * 1.15, bar.get_y() + bar.get_height() / 2,
                human(r["seconds"]), va="center", fontsize=8)
    ax.set_xlim(min(r["seconds"] for r in rows) / 3, max(r["seconds"] for r in rows) * 30)
    ax.legend(handles=[Patch(color=c, label=p) for p, c in PAYER_COLOURS.items()],
              loc="upper right", fontsize=8)


# ---------------------------------------------------------------------------
# notebook 04
# ---------------------------------------------------------------------------
def vtable_versions(old: Sequence[Tuple[int, str]], old_size: int,
                    new: Sequence[Tuple[int, str]], new_size: int,
                    path: Optional[PathLike] = None) -> Any:
    """Two versions of one vtable, as (offset, field) lists, offset 0 at the top."""
    fig, ax = plt.subplots(figsize=(8.5, 4.4))

    def column(fields: Sequence[Tuple[int, str]], x: float, label: str) -> None:
        for offset, name in fields:
            colour = "tab:blue" if name == "struct_size" else "tab:green"
            ax.add_patch(Rectangle((x, -offset - 8), 3, 8, facecolor=colour,
                                   edgecolor="white", alpha=0.8))
            ax.text(x + 1.5, -offset - 4, f"{offset:2}  {name}", ha="center", va="center",
                    color="white")
        ax.text(x + 1.5, 3, label, ha="center", va="bottom")

    column(old, 0, f"a plugin built against 1.0\nits struct_size = {old_size}")
    column(new, 5, f"the host's 1.1\nsizeof(command_t) in the host = {new_size}")
    ax.add_patch(Rectangle((5, -new_size), 3, new_size - old_size, fill=False, hatch="//",
                           edgecolor="tab:red"))
    ax.annotate("beyond the 1.0 plugin's struct_size:\nthe host never reads it\n"
                "→ help is absent", xy=(8, -old_size - 4), xytext=(8.6, -old_size - 4),
                va="center", arrowprops=dict(arrowstyle="->"))
    ax.legend(handles=[Patch(color="tab:blue", alpha=0.8, label="the size field"),
                       Patch(color="tab:green", alpha=0.8, label="function pointers")],
              loc="lower left", fontsize=8)
    ax.set_xlim(-0.5, 15)
    ax.set_ylim(-new_size - 14, 14)
    ax.axis("off")
    ax.set_title("The same vtable, two versions (byte offsets on a 64-bit machine)")
    return _finish(fig, path)


def ownership(steps: Sequence[Mapping[str, Any]], path: Optional[PathLike] = None) -> Any:
    """Who allocates and who frees, across the boundary: a sequence diagram of a real call.

    Each step is {"from": "host" | "plugin", "to": ..., "label": str, "live":
    int or None}: a message from one side to the other, or (from == to) what
    one side does on its own; "live" is the plugin's count of blocks handed
    out and not yet given back, as the host read it after that step.
    """
    lanes = {"host": 1.5, "plugin": 6.5}
    rows = len(steps) + 1
    fig, ax = plt.subplots(figsize=(9, 0.62 * rows + 1.3))
    ax.axis("off")
    for side, x in lanes.items():
        _box(ax, x - 1.1, rows - 0.15, 2.2, 0.6, side, "#e8f1e4" if side == "host" else "#fdf1d8",
             fontsize=10)
        ax.plot([x, x], [0.2, rows - 0.15], color="#999999", linestyle=":", zorder=0)
    ax.text(9.4, rows + 0.15, "live blocks", ha="center", fontsize=8.5, weight="bold")
    for i, step in enumerate(steps):
        y = rows - 1 - i
        start, end = lanes[step["from"]], lanes[step["to"]]
        if start == end:
            _box(ax, start - 1.4, y - 0.25, 2.8, 0.5, step["label"], NEUTRAL, fontsize=8)
        else:
            _arrow(ax, (start, y), (end, y), step["label"], dy=0.2)
        if step.get("live") is not None:
            ax.text(9.4, y, str(step["live"]), ha="center", va="center", fontsize=10,
                    family="monospace")
    ax.text(4.0, -0.35, "never the host's own free(): the block came from the plugin's "
            "allocator,\nwhich may be another C runtime's heap (on Windows each DLL may "
            "bring its own)", ha="center", va="center", fontsize=8, color="tab:red")
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.8, rows + 0.6)
    ax.set_title("Who allocates, who frees: the plugin's block goes back to the plugin")
    return _finish(fig, path)


def record_stride(host: Sequence[Tuple[int, str, int]], host_size: int,
                  plugin: Sequence[Tuple[int, str, int]], plugin_size: int,
                  count: int = 3, path: Optional[PathLike] = None) -> Any:
    """An array of records as the plugin wrote it and as the host steps through it.

    `host` and `plugin` are the record's (offset, field, size) in each
    side's layout, `host_size` and `plugin_size` each side's sizeof: the
    host finds record i at i * host_size, whatever the plugin wrote.
    """
    names = list(dict.fromkeys([f[1] for f in plugin] + [f[1] for f in host]))
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:red", "tab:brown"]
    colours = {name: palette[i % len(palette)] for i, name in enumerate(names)}
    total = count * max(host_size, plugin_size)
    fig, ax = plt.subplots(figsize=(11, 3.4))
    ax.axis("off")

    def row(fields, size, y, label):
        for i in range(count):
            base = i * size
            used = 0
            for offset, name, width in fields:
                ax.add_patch(Rectangle((base + offset, y), width, 0.8, facecolor=colours[name],
                                       edgecolor="white", alpha=0.85))
                used = max(used, offset + width)
            if used < size:                          # padding up to sizeof
                ax.add_patch(Rectangle((base + used, y), size - used, 0.8, facecolor="white",
                                       edgecolor="grey", hatch="..."))
            ax.add_patch(Rectangle((base, y), size, 0.8, fill=False, edgecolor="black", lw=1.5))
            ax.text(base + size / 2, y + 0.4, f"record {i}", ha="center", va="center",
                    color="white", weight="bold", fontsize=9)
            ax.text(base, y + (0.95 if y > 1 else -0.25), str(base), ha="center",
                    va="center", fontsize=8, family="monospace")
        ax.text(-4, y + 0.4, label, ha="right", va="center", fontsize=9)

    row(plugin, plugin_size, 2.2, f"the plugin wrote\n(sizeof = {plugin_size})")
    row(host, host_size, 0.6, f"the host reads\n(sizeof = {host_size})")
    for i in range(1, count):
        ax.plot([i * host_size] * 2, [0.6, 3.0], color="tab:red", linestyle="--")
    ax.annotate(f"the host's record 1 starts at byte {host_size},\n"
                f"inside the plugin's record 0 (it ends at {plugin_size})",
                xy=(host_size, 1.9), xytext=((count - 1) * host_size + 0.03 * total, 1.7),
                fontsize=8.5, color="tab:red", va="center",
                arrowprops=dict(arrowstyle="->", color="tab:red"))
    ax.legend(handles=[Patch(color=colours[n], alpha=0.85, label=n) for n in names]
              + [Patch(facecolor="white", edgecolor="grey", hatch="...", label="padding")],
              loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=len(names) + 1, fontsize=8)
    ax.set_xlim(-0.28 * total, total * 1.02)
    ax.set_ylim(-0.2, 3.5)
    ax.set_title("An array of records: the host's stride is its own sizeof, compiled in "
                 "(byte offsets)")
    return _finish(fig, path)


# x86-64 System V: the first integer or pointer arguments, in order.
SYSV_REGISTERS = ("rdi", "rsi", "rdx", "rcx")


def argument_registers(host: Sequence[str], plugin: Sequence[str],
                       path: Optional[PathLike] = None,
                       title: str = "") -> Any:
    """Argument registers, by position: what the host puts there, what the plugin reads."""
    fig, ax = plt.subplots(figsize=(8.5, 2.9))
    ax.axis("off")
    ax.text(1.0, 4.4, "register", weight="bold", ha="center")
    ax.text(3.9, 4.4, "the host (1.2) puts", weight="bold", ha="center")
    ax.text(7.4, 4.4, "the plugin (1.1) reads it as", weight="bold", ha="center")
    for i, reg in enumerate(SYSV_REGISTERS):
        y = 3.4 - i
        h, p = (host[i] if i < len(host) else "—"), (plugin[i] if i < len(plugin) else "—")
        clash = h.split()[-1] != p.split()[-1] and "—" not in (h, p)
        colour = "#f8e0dc" if clash else "#e8f1e4"
        for x0, width, text in ((0.3, 1.4, reg), (2.2, 3.4, h), (5.8, 3.2, p)):
            ax.add_patch(FancyBboxPatch((x0, y - 0.35), width, 0.7,
                                        boxstyle="round,pad=0.02", facecolor=colour,
                                        edgecolor="#999999"))
            ax.text(x0 + width / 2, y, text, ha="center", va="center", family="monospace",
                    fontsize=9)
    ax.set_xlim(0, 9.3)
    ax.set_ylim(-0.2, 4.8)
    ax.set_title(title or "arguments travel by position (x86-64 System V: rdi, rsi, rdx, rcx)")
    return _finish(fig, path)


# ---------------------------------------------------------------------------
# notebook 05
# ---------------------------------------------------------------------------
def isolation(path: Optional[PathLike] = None) -> Any:
    """The host process and its worker: what crosses, and what happens on a crash."""
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.axis("off")
    boxes = ((0.2, "your process (the host)", "#e8f1e4",
              "minildr.open(path, isolate=True)\n→ an IsolatedPlugin\n\n"
              "lookup(name, type): checked\nagainst the manifest, here"),
             (6.0, "the worker process", "#fdf1d8",
              "a Python that opened the plugin\n(dlopen: its code runs HERE)\n\n"
              "same user, same files;\nan empty environment"))
    for x0, title, colour, body in boxes:
        ax.add_patch(FancyBboxPatch((x0, 0.3), 3.8, 2.7, boxstyle="round,pad=0.05",
                                    facecolor=colour, edgecolor="#888888"))
        ax.text(x0 + 1.9, 2.75, title, ha="center", weight="bold")
        ax.text(x0 + 1.9, 1.5, body, ha="center", va="center", fontsize=8.5)
    ax.annotate("", xy=(6.0, 2.0), xytext=(4.0, 2.0), arrowprops=dict(arrowstyle="->"))
    ax.text(5.0, 2.15, "call: name + argument values\n(copied, a message)", ha="center",
            va="bottom", fontsize=8)
    ax.annotate("", xy=(4.0, 1.3), xytext=(6.0, 1.3), arrowprops=dict(arrowstyle="->"))
    ax.text(5.0, 1.15, "result values (copied)\nor: the worker died →\nPluginCrashed here",
            ha="center", va="top", fontsize=8)
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 3.4)
    ax.set_title("isolate=True: one socket, two processes; only plain values cross")
    return _finish(fig, path)


def load_pipeline(path: Optional[PathLike] = None) -> Any:
    """The steps of minildr.open in order, coloured by whose code runs in each."""
    steps = [("read the file\n(once)", "check"), ("manifest,\nversions,\ncontracts", "check"),
             ("trust:\ndigest or\nsignature", "check"),
             ("dlopen: map,\nrelocate\n(IFUNC resolvers)", "load"),
             ("constructors\nrun", "code"), ("lookup", "host"), ("call", "code")]
    colours = {"check": "tab:blue", "load": "tab:grey", "code": "tab:red", "host": "tab:green"}
    fig, ax = plt.subplots(figsize=(11, 2.9))
    for i, (label, kind) in enumerate(steps):
        ax.add_patch(Rectangle((i * 1.5, 0), 1.3, 1, color=colours[kind], alpha=0.85))
        ax.text(i * 1.5 + 0.65, 0.5, label, ha="center", va="center", color="white", fontsize=9)
        if i:
            ax.annotate("", xy=(i * 1.5, 0.5), xytext=(i * 1.5 - 0.2, 0.5),
                        arrowprops=dict(arrowstyle="->"))
    ax.annotate("UntrustedPlugin\nstops here", xy=(3.6, 1.02), xytext=(3.6, 1.6), ha="center",
                arrowprops=dict(arrowstyle="->", color="tab:blue"), color="tab:blue")
    ax.annotate("raw dlopen\nstarts here", xy=(5.1, 1.02), xytext=(5.1, 1.6), ha="center",
                arrowprops=dict(arrowstyle="->"))
    ax.annotate("the plugin's code may run from here on\n(a GNU IFUNC resolver runs "
                "while relocating)", xy=(4.55, -0.02), xytext=(5.9, -0.75), ha="center",
                arrowprops=dict(arrowstyle="->", color="tab:red"), color="tab:red")
    ax.set_xlim(-0.2, len(steps) * 1.5)
    ax.set_ylim(-1.2, 2.2)
    ax.axis("off")
    ax.set_title("blue: reads bytes only · grey: the system loader · red: the plugin's code "
                 "· green: the host")
    return _finish(fig, path)
