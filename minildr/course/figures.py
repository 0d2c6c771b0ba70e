"""The course's pictures: drawn here, so that notebook cells show one call, not plotting code.

Each function returns a matplotlib Figure (and writes it to `path` when
given). What a picture shows is computed by the caller (a benchmark's
results, a contract's layout); this module only draws.

- `boundaries`      notebook 06: one call per boundary, its leagues shaded
                    as the bands their rows span; and the one-time costs,
                    coloured by who pays them.
- `vtable_versions` notebook 04: one vtable at two versions, byte offsets.
- `argument_registers` notebook 04: which register carries which argument, as
                    the host passes them and as the plugin reads them.
- `load_pipeline`   notebook 05: the steps of an open, and where plugin code runs.
- `isolation`       notebook 05: the host and its worker process.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch, Patch, Rectangle

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


def _finish(fig: Any, path: Optional[PathLike]) -> Any:
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def human(seconds: float) -> str:
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def times(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.2g}x"


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
        left, right = max(cheapest, 1e-10) / 1.6, dearest * 1.6
        ax.axvspan(left, right, color=LEAGUE_SHADES[name], zorder=0)
        ax.text((left * right) ** 0.5, len(rows) - 0.45, name.replace(" or ", "\nor "),
                ha="center", va="bottom", fontsize=7.5, color="#555555")
    bars = ax.barh([r["label"] for r in rows], seconds, color="#4c72b0", zorder=2)
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(-0.6, len(rows) + 0.6)
    ax.set_xlabel("seconds per call, net of the timing loop (log scale)")
    ax.set_title("one call across each boundary, from Python: add(2, 3)")
    for bar, r in zip(bars, rows):
        ax.text(bar.get_width() * 1.2, bar.get_y() + bar.get_height() / 2,
                f"{human(r['seconds'])}  ({times(r['ratio'])} python)", va="center",
                fontsize=8, zorder=3)


def _loads(results: Any, ax: Any) -> None:
    rows: List[Dict[str, Any]] = list(results.loads) + [
        {"key": "discover", "label": f"discover, {r['plugins']} plugin(s)",
         "seconds": r["seconds"]} for r in results.discover]
    rows = sorted(rows, key=lambda r: r["seconds"], reverse=True)
    payers = [PAYER.get(r["key"], "the host, at start-up") for r in rows]
    bars = ax.barh([r["label"] for r in rows], [r["seconds"] for r in rows],
                   color=[PAYER_COLOURS[p] for p in payers])
    ax.set_xscale("log")
    ax.set_xlabel("seconds, paid once (log scale)")
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
              "same user, same files;\nenvironment: see notebook 07 §7"))
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
