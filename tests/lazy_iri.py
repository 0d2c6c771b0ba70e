"""An early pytest plugin (`-p lazy_iri` in pyproject's addopts): rfc3987_syntax built on first use.

Every process that imports nbformat imports jsonschema, and jsonschema's
format checks import `rfc3987_syntax` (when the `rfc3987` package is absent)
for the "iri" and "iri-reference" formats. That module builds an Earley parser
of RFC 3987's grammar, three times, at import: 1.7-2.5 s of CPU in each test
process (the xdist controller, each worker), while no test validates an IRI.

Here `rfc3987_syntax` is a stand-in package with the same files
(`__path__`) whose `is_valid_syntax` (all that jsonschema takes from it)
imports the real `rfc3987_syntax.syntax_helpers`, grammar and all, on its
first call; any other name comes from there too. So jsonschema still
registers its iri checks, and they answer exactly as before: only the moment
the grammar is built moves. It must be loaded before the first import of
nbformat (nbval, a pytest11 entry point, imports it): pytest imports `-p`
plugins, with the ini's `pythonpath` already on sys.path, before the entry
points. tests/package/test_lazy_iri.py checks both halves.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

NAME = "rfc3987_syntax"
REAL = f"{NAME}.syntax_helpers"         # the package's __init__ is `from .syntax_helpers import *`


def _real() -> types.ModuleType:
    return importlib.import_module(REAL)


def is_valid_syntax(term: str, value: str) -> bool:
    """rfc3987_syntax.is_valid_syntax, its grammar built at the first call."""
    return _real().is_valid_syntax(term, value)


def _getattr(name: str):
    return getattr(_real(), name)


def install() -> None:
    """Put the stand-in in sys.modules, unless the real one is there or there is none."""
    if NAME in sys.modules:
        return
    spec = importlib.util.find_spec(NAME)
    if spec is None or not spec.submodule_search_locations:
        return
    stand_in = types.ModuleType(NAME, __doc__)
    stand_in.__spec__ = spec
    stand_in.__path__ = list(spec.submodule_search_locations)    # its submodules: the real files
    stand_in.__file__ = spec.origin
    stand_in.is_valid_syntax = is_valid_syntax
    stand_in.__getattr__ = _getattr
    sys.modules[NAME] = stand_in


install()
