"""The worker's side of the C call loop (fastcall.c): load it, register functions, serve.

fastcall.py builds the library on the host (with the compiler: build.py);
the worker only loads the file the host names and hands it the functions
whose parameters and result are numbers. Two modules, so that a worker
imports neither the compiler driver nor anything the host needs to build.
"""
from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple

from .. import ctype, outofline

# Every C function the worker calls itself: the C library's (worker.py) and the loop's.
DECLARATIONS = """
int fflush(void *stream);
void exit(int status);
int mldr_register(int handle, void *address, char result, const char *params, int count);
void mldr_clear(void);
long mldr_serve(int sock, char *buf, long capacity, long have);
"""
ffi = outofline.declared("worker", DECLARATIONS)    # no C parser in a worker: outofline.py
libc = ffi.dlopen(None)


class Loop:
    """The C loop in a worker: register functions, serve."""

    def __init__(self, path: str) -> None:
        self.ffi = ffi
        self.lib = ffi.dlopen(path)

    def register(self, handle: int, function: Any, codes: Tuple[str, str]) -> bool:
        """Serve calls of `function` (a cffi function pointer) in C, if its signature
        allows (codes: from type_codes)."""
        result, params = codes
        address = self.ffi.cast("void *", function)
        return bool(self.lib.mldr_register(handle, address, result.encode(), params.encode(),
                                           len(params)))

    def clear(self) -> None:
        self.lib.mldr_clear()

    def serve(self, sock: int, inbox: Any, have: int = 0) -> int:
        """Answer calls until bytes come that Python must handle: how many (at the start of
        `inbox`, a writable buffer), 0 at end of file; OSError if the socket failed."""
        got = self.lib.mldr_serve(sock, self.ffi.from_buffer(inbox), len(inbox), have)
        if got < 0:
            raise OSError(-got, os.strerror(-got))
        return got


def load(path: str) -> Tuple[Optional[Loop], str]:
    """The loop from the library the host built ('' if none), or None and why not."""
    if not path:
        return None, "the host passed no C call loop"
    try:
        return Loop(path), ""
    except OSError as exc:
        return None, f"the C call loop could not be loaded ({exc})"


# Integer types by (size, signed) -> fastcall.c's type codes
_INTEGERS = {(1, True): "b", (1, False): "B", (2, True): "h", (2, False): "H",
             (4, True): "i", (4, False): "I", (8, True): "q", (8, False): "Q"}


def _code_of(ffi: Any, spelling: str) -> Optional[str]:
    if spelling == "void":
        return "v"
    try:
        t = ffi.typeof(spelling)
    except Exception:            # cffi raises several types for types it cannot use
        return None
    return _code(ffi, t)


def _code(ffi: Any, t: Any) -> Optional[str]:
    """fastcall.c's code for a value of the cffi type `t`, None if it takes no numbers."""
    if t.kind == "void":
        return "v"
    if t.kind == "primitive" and t.cname in ("char", "_Bool", "double"):
        return {"char": "c", "_Bool": "?", "double": "d"}[t.cname]
    if t.kind == "enum" or (t.kind == "primitive" and t.cname in ctype.INTEGER_TYPES):
        if t.kind == "enum":     # cffi gives an enum a signed type only for negative values
            signed = any(value < 0 for value in t.elements)
        else:
            signed = int(ffi.cast(t, -1)) < 0
        return _INTEGERS.get((ffi.sizeof(t), signed))
    return None                  # float, long double, pointers: Python's path


def type_codes(ffi: Any, declaration: str, types: str) -> Optional[Tuple[str, str]]:
    """(result code, parameter codes) of a function for fastcall.c, or None if the C loop
    cannot call it (a float, a string, a pointer: Python's path serves it)."""
    result, params, variadic = ctype.signature(declaration, types)
    if variadic:
        return None
    return _joined([_code_of(ffi, spelling) for spelling in (result, *params)])


def codes_of(function: Any) -> Optional[Tuple[str, str]]:
    """type_codes, from the function's cffi type (a worker reads no C text: worker.py)."""
    if function.kind != "function" or function.ellipsis:
        return None
    return _joined([_code(ffi, t) for t in (function.result, *function.args)])


def _joined(codes: List[Optional[str]]) -> Optional[Tuple[str, str]]:
    if None in codes or "v" in codes[1:]:
        return None
    return codes[0], "".join(codes[1:])            # type: ignore[arg-type]
