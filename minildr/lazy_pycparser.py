"""pycparser's modules (c_ast, c_generator, c_parser), imported at their first use.

Importing pycparser compiles its lexer's regular expressions: ~14 ms of CPU,
the largest single import an isolated worker made at every start. Several
modules read C text with it (ctype.py, contracts/), but a process may never
parse any: a worker serving a plugin of plain C types (its host compared
the types: isolation/worker.py) calls C through cffi's backend alone. So
those modules import these stand-ins instead, each of which imports the
real module the first time one of its names is asked for and then takes
all its names, so that later uses cost what a module's attribute costs.
(tests/isolation/test_worker_imports.py checks that such a worker never
imports pycparser.)
"""
from __future__ import annotations

import types
from typing import Any, Dict


def _load() -> Dict[str, types.ModuleType]:
    from pycparser import c_ast, c_generator, c_parser    # slow: see the module's docstring
    return {"c_ast": c_ast, "c_generator": c_generator, "c_parser": c_parser}


class _Deferred(types.ModuleType):
    """A module that becomes pycparser's module `name` at its first attribute access."""

    def __getattr__(self, attr: str) -> Any:      # only for names not copied in yet
        real = _load()[self.__name__.rpartition(".")[2]]
        self.__dict__.update({k: v for k, v in vars(real).items() if k != "__name__"})
        return getattr(real, attr)


c_ast = _Deferred("pycparser.c_ast")
c_generator = _Deferred("pycparser.c_generator")
c_parser = _Deferred("pycparser.c_parser")
