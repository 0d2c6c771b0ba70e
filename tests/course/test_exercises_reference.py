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


# Task 09.3's written reason. Right ones name what Go compares and why each refused
# build changed it, in words of their own; wrong ones may be long and sound sure.
RIGHT_WHYS = [
    "the refused ones change the export data: a new exported function is new API, and a "
    "line above the code moves the positions of everything exported",
    "Go hashes the export data; Reset is exported so it changes, and the top comment "
    "shifts every line number down",
    "Not every change is refused: the fingerprint covers the public API and, with -trimpath, "
    "positions, so Reset and a comment at the top change it",
    "comments are ignored by the compiler, but the comment at the top moves every line down, "
    "and the line positions are in the export data; Reset is exported",
]
WRONG_WHYS = {
    "any change to counter.go makes the package's fingerprint differ, so the plugin is "
    "refused by plugin.Open": "not every change is refused",
    "comments do not matter to Go, but a new exported function changes the export data and "
    "its line": "a comment can matter",
    "Go compares a hash of the source file, so exported functions and lines change it":
        "not of the file's text",
    "Go refuses a plugin when any new function is added to the package's export data at "
    "some line": "not every new function",
    "the refused builds were compiled by a different Go version, so their export data and "
    "exported lines differ": "the toolchain is not what differs",
    "the refused ones change the export data of the package in some way": "exported-end",
    "the refused builds change the export data because Reset is exported": "comment-top",
    "because the refused ones are just different builds of it": "what plugin.Open compares",
    "export data": "in a sentence",
}


def test_a_right_why_names_what_go_compares_and_both_causes():
    for why in RIGHT_WHYS:
        assert reference.fingerprint_why_problem(why) == "", why


def test_a_long_but_wrong_why_is_refused_with_what_shows_it_wrong():
    for why, problem in WRONG_WHYS.items():
        assert problem in reference.fingerprint_why_problem(why), why
    assert "in a sentence" in reference.fingerprint_why_problem(None)
