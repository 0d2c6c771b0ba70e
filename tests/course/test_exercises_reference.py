"""minildr.course.reference: the references some exercise checks compare answers with."""
from __future__ import annotations

import ctypes

from minildr.course import reference
from minildr.native.trace import Trace
from platforms import requires_proc

LD_DEBUG = """\
      4242:	binding file ./x.so [0] to /lib/x86_64-linux-gnu/libc.so.6 [0]: normal symbol `puts' [GLIBC_2.2.5]
      4242:	binding file /lib/libm.so.6 [0] to /lib/libc.so.6 [0]: normal symbol `errno' [GLIBC_PRIVATE]
      4242:	binding file ./x.so [0] to ./x.so [0]: normal symbol `answer'
      4242:	binding file /a/b/x.so [0] to /lib/ld-linux-x86-64.so.2 [0]: normal symbol `_dl_x'
      4242:	calling init: ./x.so
"""


def test_ld_debug_bindings_keeps_the_files_bindings_elsewhere():
    assert reference.ld_debug_bindings(LD_DEBUG, "x.so") == {"puts": "GLIBC_2.2.5",
                                                             "_dl_x": None}
    assert reference.ld_debug_bindings(LD_DEBUG, "libm.so.6") == {"errno": "GLIBC_PRIVATE"}


def test_native_bindings_keeps_named_symbols_found_somewhere():
    trace = Trace(True)
    trace.event("resolve", "puts", symbol="puts", version="GLIBC_2.2.5", source="the host process")
    trace.event("resolve", "w", symbol="__gmon_start__", version=None, source="nowhere (weak: 0)")
    trace.event("resolve", "3 symbols -> the host process", source="the host process", count=3)
    trace.event("relocate", "x", type="R_X86_64_RELATIVE")
    assert reference.native_bindings(trace) == {"puts": "GLIBC_2.2.5"}


@requires_proc
def test_mapping_at_finds_code_data_and_nothing():
    libc = ctypes.CDLL(None)
    code = ctypes.cast(libc.getpid, ctypes.c_void_p).value
    permissions, name = reference.mapping_at(code)
    assert permissions.startswith("r-x") and name
    buffer = ctypes.create_string_buffer(64)
    assert reference.mapping_at(ctypes.addressof(buffer))[0].startswith("rw")
    assert reference.mapping_at(0) is None
