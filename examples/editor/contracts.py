"""The editor's two contracts: what a file format and an on-save linter must provide.

The headers next to this file are the contracts' source of truth; plugins
are compiled against them (minildr.build(..., contracts=[FORMAT])) and the
editor opens plugins with them (minildr.open(..., contracts=CONTRACTS)).
"""
from __future__ import annotations

from pathlib import Path

import minildr

HERE = Path(__file__).resolve().parent

FORMAT = minildr.Contract.from_header(HERE / "format.h", name="format", version="1.0")
LINTER = minildr.Contract.from_header(HERE / "linter.h", name="linter", version="1.1")
CONTRACTS = (FORMAT, LINTER)
