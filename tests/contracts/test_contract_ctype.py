"""Contracts (a header identified by its tokens) and C types as canonical text."""
from __future__ import annotations

import importlib
import subprocess

import pytest

import minildr
from minildr import ctype
from minildr.contracts.contract import canonical_text

builder = importlib.import_module("minildr.build")

BASE = """\
#define GREETER_VERSION 2
/* A greeter: what a plugin fills in. */
typedef struct greeter {
    const char *(*greet)(const char *who);   // who is greeted
    int flags;
} greeter;
static const char *const GREETER_TAG = "a  b";
"""


def sha(text: str) -> str:
    return minildr.Contract.from_header(text, name="greeter").sha256


# ---------------------------------------------------------------------------
# Contract.from_header
# ---------------------------------------------------------------------------
def test_from_text_needs_a_name():
    with pytest.raises(ValueError, match="name="):
        minildr.Contract.from_header(BASE)
    c = minildr.Contract.from_header(BASE, name="greeter", version="2.0")
    assert (c.name, c.version, c.filename, c.text) == ("greeter", "2.0", "greeter.h", BASE)


@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_from_header_file(tmp_path, as_str):
    path = tmp_path / "shapes.h"
    path.write_text(BASE)
    c = minildr.Contract.from_header(str(path) if as_str else path)
    assert (c.name, c.filename, c.text) == ("shapes", "shapes.h", BASE)
    assert c.sha256 == sha(BASE)


def test_from_header_file_with_explicit_name(tmp_path):
    path = tmp_path / "shapes.h"
    path.write_text(BASE)
    assert minildr.Contract.from_header(path, name="geometry").name == "geometry"


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b"])
def test_contract_name_must_be_identifier(name):
    with pytest.raises(ValueError):
        minildr.Contract(name=name, version="1", text=BASE)


# ---------------------------------------------------------------------------
# The hash: tokens count, layout does not
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("variant", [
    BASE.replace("/* A greeter: what a plugin fills in. */", ""),
    BASE.replace("// who is greeted", ""),
    BASE.replace("// who is greeted", "/* multi\n line */"),
    BASE.replace("    ", "\t\t"),
    BASE.replace("int flags;", "int\n   flags  ;"),
    BASE.replace("(*greet)(const char *who)", "( * greet ) ( const char * who )"),
    BASE.replace("typedef struct greeter {", "typedef struct greeter\n{"),
    "\n\n" + BASE + "\n\n",
    BASE.replace("\n", "\r\n"),
    BASE.replace("#define GREETER_VERSION 2", "#  define   GREETER_VERSION /* v */ 2"),
], ids=["block-comment", "line-comment", "comment-newlines", "tabs", "newline-in-decl",
        "spaces", "brace-on-next-line", "blank-lines", "crlf", "directive-spacing"])
def test_hash_ignores_layout_and_comments(variant):
    assert sha(variant) == sha(BASE)


@pytest.mark.parametrize("variant", [
    BASE.replace("int flags;", "long flags;"),
    BASE.replace("int flags;", "int options;"),
    BASE.replace("    const char *(*greet)(const char *who);   // who is greeted\n"
                 "    int flags;\n",
                 "    int flags;\n    const char *(*greet)(const char *who);\n"),
    BASE.replace("GREETER_VERSION 2", "GREETER_VERSION 3"),
    BASE.replace('"a  b"', '"a b"'),
    BASE.replace("const char *who", "char *who"),
    BASE.replace("const char *who", "const char *whom"),
], ids=["field-type", "field-name", "field-order", "define-value", "literal-space",
        "param-type", "param-name"])
def test_hash_changes_with_any_token(variant):
    assert sha(variant) != sha(BASE)


def test_unterminated_comment_is_refused():
    with pytest.raises(ValueError, match="never closed"):
        minildr.Contract.from_header(BASE + "/* oops\nint x;\n", name="greeter")


def test_directive_ends_at_its_line():
    assert sha("#define A 1\nint x;") != sha("#define A 1 int x;")
    assert canonical_text("#define A 1\nint x;") == "# define A 1\nint x ;"


def test_continued_directive_is_one_line():
    assert sha("#define A 1 \\\n + 2\nint x;") == sha("#define A 1 + 2\nint x;")


# ---------------------------------------------------------------------------
# ctype.canonical and pointer_to
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("a, b", [
    ("char const* (void)", "const char *(void)"),
    ("const char*(void)", "const char *(void)"),
    ("int (int a)", "int (int)"),
    ("size_t (const char *input, char *out, size_t size)", "size_t (const char *, char *, size_t)"),
    ("int (*cb)(int x)", "int (*)(int)"),
    ("int x[3]", "int [3]"),
    ("int const *const", "const int * const"),
])
def test_same_type_same_spelling(a, b):
    assert ctype.canonical(a) == ctype.canonical(b) == b


@pytest.mark.parametrize("a, b", [
    ("long (int)", "int (int)"),
    ("int (int)", "int (int, int)"),
    ("char *(void)", "const char *(void)"),
    ("int [3]", "int [4]"),
    ("int *", "int"),
    ("int32_t (void)", "int (void)"),
    ("size_t", "unsigned long"),
    ("char", "signed char"),
    ("long", "long long"),
    ("unsigned int", "int"),
])
def test_different_types_differ(a, b):
    assert ctype.canonical(a) != ctype.canonical(b)


@pytest.mark.parametrize("t", ["size_t (void)", "int32_t (int64_t)", "uint8_t *(void)",
                               "FILE *(const char *)"])
def test_typedef_names_are_kept(t):
    assert ctype.canonical(t) == t


@pytest.mark.parametrize("spellings", [
    ["unsigned int", "unsigned", "int unsigned"],
    ["long", "long int", "int long", "signed long int"],
    ["unsigned long long", "long long unsigned int", "unsigned long long int"],
    ["short", "short int", "signed short"],
    ["int", "signed", "signed int"],
    ["signed char", "char signed"],
    ["long double", "double long"],
])
def test_basic_type_specifiers_in_any_order(spellings):
    assert {ctype.canonical(f"{s} (long int x)") for s in spellings} == {
        f"{spellings[0]} (long)"}


def test_user_types_are_kept():
    types = "typedef struct point { int x, y; } point;"
    assert ctype.canonical("point (point p, int dx)", types) == "point (point, int)"
    with pytest.raises(ctype.CTypeError):
        ctype.canonical("point (void)")         # unknown without its typedef


@pytest.mark.parametrize("garbage", ["int int x", "", "   ", "int; system()", "x y z",
                                     "int a, int b", "struct { int x; }", "int (...)",
                                     "size_t int", "short char", "unsigned signed",
                                     "long long long", "int (int int)"])
def test_garbage_is_a_ctype_error(garbage):
    with pytest.raises(ctype.CTypeError):
        ctype.canonical(garbage)


@pytest.mark.parametrize("t, pointer", [
    ("const char *(void)", "const char *(*)(void)"),
    ("int", "int *"),
    ("int [3]", "int (*)[3]"),
    ("int (*)(int)", "int (**)(int)"),
    ("size_t (const char *, char *, size_t)", "size_t (*)(const char *, char *, size_t)"),
])
def test_pointer_to(t, pointer):
    assert ctype.pointer_to(t) == pointer


def test_canonical_output_is_a_fixed_point():
    for t in ["char const *(*)(int a)", "int (*(void))[3]", "unsigned long *", "const void *"]:
        once = ctype.canonical(t)
        assert ctype.canonical(once) == once


def test_standard_types_come_from_fake_libc():
    std = ctype.standard_types()
    assert std["size_t"] == "unsigned long"
    assert std["int32_t"] == "int"


# ---------------------------------------------------------------------------
# parse_header, through the real preprocessor
# ---------------------------------------------------------------------------
HEADER = """\
#include <stddef.h>
#include <stdint.h>
typedef struct point { int32_t x, y; } point;
enum color { RED, GREEN };
static inline int helper(void) { return 1; }
point move(point p, int dx);
extern int counter;
size_t count(const char *s);
static int hidden(void);
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory):
    header = tmp_path_factory.mktemp("hdr") / "shapes.h"
    header.write_text(HEADER)
    cmd = builder.preprocess_command(builder.find_compiler(), header, [builder.INCLUDE_DIR])
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return ctype.parse_header(done.stdout, str(header))


def test_parse_header_records_functions_and_extern_data(parsed):
    declarations, _ = parsed
    assert [(d.name, d.kind, d.ctype) for d in declarations] == [
        ("move", "function", "point (point, int)"),
        ("counter", "data", "int"),
        ("count", "function", "size_t (const char *)"),
    ]


def test_parse_header_keeps_user_types_only(parsed):
    _, types = parsed
    assert "typedef struct point" in types and "enum color" in types
    assert "size_t" not in types and "int32_t x" in types
    assert "typedef int int32_t" not in types
    assert "helper" not in types


def test_parse_header_types_make_types_readable(parsed):
    declarations, types = parsed
    for d in declarations:
        assert ctype.canonical(d.ctype, types) == d.ctype


def test_parse_header_refuses_a_definition():
    text = '# 1 "x.h"\nint counter;\n'
    with pytest.raises(ctype.CTypeError, match="extern int counter;"):
        ctype.parse_header(text, "x.h")
