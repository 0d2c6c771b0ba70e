"""What some exercise checks compare a learner's answer with, kept out of the notebooks.

A check cell is shown to the learner, in full, right under the task. A check
that computed its reference in the cell would print the answer's code next
to the question; so the few references that are themselves an answer live
here. Each is written as plainly as the task asks for, and tested on its own
(tests/course/test_exercises_reference.py).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

MAPS = Path("/proc/self/maps")
# "  4242:	binding file ./x.so [0] to /lib/libc.so.6 [0]: normal symbol `puts' [GLIBC_2.2.5]"
_BINDING = re.compile(r"binding file (?P<file>\S+) \[\d+\] to (?P<to>\S+) \[\d+\]: "
                      r"\w+ symbol `(?P<symbol>[^']+)'(?: \[(?P<version>[^\]]+)\])?")


def mapping_at(address: int) -> Optional[Tuple[str, str]]:
    """(permissions, name) of this process's mapping that holds `address`; None if none."""
    for line in MAPS.read_text().splitlines():
        span, permissions, *rest = line.split(None, 5)
        low, high = (int(part, 16) for part in span.split("-"))
        if low <= address < high:
            return permissions, rest[3].strip() if len(rest) > 3 else ""
    return None


def ld_debug_bindings(stderr: str, library: str) -> Dict[str, Optional[str]]:
    """From LD_DEBUG=bindings output: {symbol: version} for the bindings `library` made.

    `library` is the file's name (the end of the path the loader prints);
    a binding of the library to itself (a lookup of its own export) is left out.
    """
    found: Dict[str, Optional[str]] = {}
    for match in _BINDING.finditer(stderr):
        if Path(match["file"]).name == library and Path(match["to"]).name != library:
            found[match["symbol"]] = match["version"]
    return found


def native_bindings(trace: Any) -> Dict[str, Optional[str]]:
    """From a native load's trace: {symbol: version} for each name found in another library.

    The trace must be detailed (`load(path, trace=True)`): otherwise resolve
    events are one per source, with a count, and name no symbol.

    Weak names that resolved nowhere (their `source` says so) are left out:
    the system loader makes no binding for them either.
    """
    return {e.data["symbol"]: e.data["version"] for e in trace.events
            if e.step == "resolve" and "symbol" in e.data
            and not e.data["source"].startswith("nowhere")}


# Task 09.3's written "why": what decides Go's verdict, in the learner's words.
# A sentence can be long and still wrong; each pattern below is a wrong idea that
# the four builds of the task refute, with the build that refutes it.
_WHAT_GO_COMPARES = re.compile(r"export[\s-]*data|fingerprint|\bhash")
_EXPORTED = re.compile(r"\bexport(s|ed|ing)?\b|\bapi\b|\bpublic\b|\bcapital|\bupper[\s-]*case")
_POSITIONS = re.compile(r"\blines?\b|\bposition")
_WRONG_IDEAS = [
    (re.compile(r"\b(any|every|all)\s+(\w+\s+)?(change|edit|difference)s?\b"),
     "not every change is refused: comment-end and unexported-end changed the file and loaded"),
    (re.compile(r"comments?\b[^.;]{0,30}\b(never\s+matters?|do(es)?\s+not\s+matter|"
                r"do(es)?n't\s+matter|makes?\s+no\s+difference|cannot\s+matter)"),
     "a comment can matter: comment-top was refused"),
    (re.compile(r"\b(hash|checksum|fingerprint|digest)\s+of\s+the\s+(whole\s+)?"
                r"(source|file|text|code)"),
     "the fingerprint is not of the file's text: comment-end changed the text and loaded"),
    (re.compile(r"\b(any|every)\s+(new\s+)?(function|func)\b"),
     "not every new function: unexported-end added helper() and loaded"),
    (re.compile(r"\b(different|another|newer|older|other)\s+(go\s+)?(toolchain|compiler|"
                r"go\s+version|version\s+of\s+go)"),
     "all four were built by the same Go: the toolchain is not what differs"),
]
_DENIED = re.compile(r"\b(not|no|never|n't)\W+(\w+\W+)?$")     # "not a hash of the file"


def _claims(pattern: "re.Pattern[str]", text: str) -> bool:
    """Whether `text` states what `pattern` matches (not denies it: "not every change")."""
    return any(not _DENIED.search(text[max(0, m.start() - 16):m.start()])
               for m in pattern.finditer(text))


def fingerprint_why_problem(why: object) -> str:
    """What is missing or wrong in a written reason for task 09.3's verdicts; "" if none.

    A right reason names what plugin.Open compares (the export data, or its
    fingerprint) and why each refused build changed it: exported-end adds to
    the exported API, comment-top moves the line positions that -trimpath
    records. A long sentence built on a wrong idea ("any change is refused",
    "comments are ignored", "a hash of the file") is refused, naming the
    build that shows it wrong.
    """
    if not isinstance(why, str) or len(why.split()) < 5:
        return "in why, say in a sentence what makes the refused builds different"
    text = " ".join(why.lower().split())
    for pattern, problem in _WRONG_IDEAS:
        if _claims(pattern, text):
            return problem
    if not _WHAT_GO_COMPARES.search(text):
        return ("say what plugin.Open compares for a shared package (notebook 09 §7), not "
                "only what each build changed")
    if not _EXPORTED.search(_WHAT_GO_COMPARES.sub(" ", text)):
        return "say why exported-end is refused: what did it add that other packages can see?"
    if not _POSITIONS.search(text):
        return ("say why comment-top is refused although comments compile to nothing: "
                "what did it move, that -trimpath records?")
    return ""
