"""tests/lazy_iri.py: the test processes import nbformat without building RFC 3987's grammar,
and jsonschema's iri checks still answer as the real rfc3987_syntax does."""
from __future__ import annotations

import sys

import hypothesis  # noqa: F401  (imported as every xdist worker does: for the trio check below)

import lazy_iri
from helpers import TESTS, run_python

# Taken as this module is collected: pytest's plugins and hypothesis's entry points have
# run by then (a test run later may import trio for itself: an inner pytest, a kernel client).
TRIO_AT_COLLECTION = "trio" in sys.modules


def test_this_test_process_got_the_stand_in_before_nbformat():
    """Loaded by pytest (-p lazy_iri) before nbval imported nbformat, jsonschema and rfc3987_syntax."""
    assert "nbformat" in sys.modules and "jsonschema" in sys.modules
    assert sys.modules[lazy_iri.NAME].is_valid_syntax is lazy_iri.is_valid_syntax


def test_this_test_process_did_not_import_trio():
    """Nor trio (installed for jupyter's sake, used by no test): anyio's pytest plugin is off
    (-p no:anyio) and hypothesis runs no entry points (HYPOTHESIS_NO_PLUGINS, conftest.py),
    each of which imported all of it in every test process."""
    assert not TRIO_AT_COLLECTION


# Each of these, checked as "iri" and as "iri-reference" (valid and not, both ways).
VALUES = ["http://example.com/ä?q=1#f", "urn:isbn:0451450523", "::bad", "a b", "/rel/x",
          "http://[::1]:80/", "http://[::zz]/"]

CHECK = """
import sys
sys.path.insert(0, sys.argv[1])
import lazy_iri
import nbformat, jsonschema
built_at_import = "rfc3987_syntax.syntax_helpers" in sys.modules
checker = jsonschema.FormatChecker()
registered = {"iri", "iri-reference"} <= set(checker.checkers)
ours = [[value, checker.conforms(value, "iri"), checker.conforms(value, "iri-reference")]
        for value in %r]
from rfc3987_syntax.syntax_helpers import is_valid_syntax      # the real module's function
real = [[value, is_valid_syntax("iri", value), is_valid_syntax("iri_reference", value)]
        for value in %r]
print(built_at_import, registered, ours == real, ours)
""" % (VALUES, VALUES)


def test_the_grammar_is_built_at_the_first_check_and_answers_as_before():
    """Not built when nbformat imports jsonschema; jsonschema's checks registered, and each
    answer the real rfc3987_syntax.is_valid_syntax's (what jsonschema calls without us)."""
    done = run_python(CHECK, TESTS)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("False True True ["), done.stdout
    answers = done.stdout.split(" ", 3)[3]
    assert "['http://example.com/ä?q=1#f', True, True]" in answers      # some valid,
    assert "['::bad', False, False]" in answers and "['/rel/x', False, True]" in answers
