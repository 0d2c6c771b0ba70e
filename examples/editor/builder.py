"""Build the editor's example plugins (C, in plugins/) into a plugins folder.

    qp       the quoted-printable file format     (contract format 1.0)
    lint     the whitespace linter                 (contract linter 1.1)
    broken   a format built against an outdated copy of format.h: the
             editor must report it and carry on
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict

import minildr

from .contracts import FORMAT, LINTER

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "plugins"


def plugin_contracts() -> Dict[str, list]:
    """Each plugin, with the contracts it is compiled against."""
    outdated = minildr.Contract.from_header(SOURCES / "broken" / "format.h",
                                            name="format", version="1.0")
    return {"qp": [FORMAT], "lint": [LINTER], "broken": [outdated]}


def build_plugins(out_dir: "os.PathLike[str] | str", *,
                  build: Callable[..., Path] = minildr.build) -> Dict[str, Path]:
    """Compile every example plugin into out_dir; {name: path}.

    `build` compiles one plugin (minildr.build's arguments): the course's tests
    pass one that reuses an identical earlier build (tests/helpers.build_once).
    """
    built = {}
    for name, contracts in plugin_contracts().items():
        folder = SOURCES / name
        built[name] = build(sorted(folder.glob("*.c")), name=name,
                            exports=folder / f"{name}.h", contracts=contracts,
                            out_dir=out_dir)
    return built
