"""C types as text: read declarations from a header, and compare types exactly.

A plugin's manifest records the C type of each export as written in its
exports header, in one canonical spelling ("const char *(void)"), so that a
typed lookup can compare the host's expectation with the plugin's
declaration as text, before any call is made.

Canonical means: what pycparser's C generator prints for the type with
parameter names and storage classes removed. So `char const* (void)` and
`const char *(void)` are the same type, and `int (int)` and `long (int)`
are not. Typedef names are kept as written, not expanded: `int32_t (void)`
matches only `int32_t (void)`.
"""
from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Tuple

import _cffi_backend
import cffi

from .interrupts import under_lock
from .lazy_pycparser import c_ast, c_generator, c_parser

FAKE_LIBC = Path(__file__).with_name("fake_libc")
# The typedefs of the stand-in standard headers: every type string may use them.
STANDARD_TYPES = (FAKE_LIBC / "_types.h").read_text()
STANDARD_TYPES = "\n".join(line for line in STANDARD_TYPES.splitlines()
                            if not line.startswith("#"))


# Every integer type by its C spelling: one table for the proxies (contracts/)
# and the isolated marshalling (isolation/). Plain `char` is left out: as a
# value it may be a character, and each side says what it makes of it.
INTEGER_TYPES = frozenset(
    {"signed char", "unsigned char", "short", "unsigned short", "int", "unsigned int",
     "long", "unsigned long", "long long", "unsigned long long", "size_t", "ssize_t",
     "ptrdiff_t", "intptr_t", "uintptr_t", "intmax_t", "uintmax_t"}
    | {f"{u}int{n}_t" for u in ("", "u") for n in (8, 16, 32, 64)}
    | {f"{u}int_{k}{n}_t" for u in ("", "u") for k in ("least", "fast") for n in (8, 16, 32, 64)})
FLOAT_TYPES = frozenset({"float", "double"})


class CTypeError(ValueError):
    """Text that is not a C type or declaration pycparser can read."""


# pycparser's CParser keeps the state of a parse in the parser object, and
# cffi shares one CParser among all its FFI instances: two threads parsing at
# once corrupt each other's parse and may get each other's types back, with
# no error. So every parse minildr makes, its own (`parse`) and cffi's (a
# cdef, or a type given as text: `cffi_cdef`, `cffi_type`), holds this lock.
PARSE_LOCK = threading.RLock()

# The deepest nesting of brackets and pointers a type text may have. Readers
# and printers of C types recurse once per level: without a bound, a manifest
# nesting 600 deep would raise RecursionError instead of a clear error.
MAX_NESTING = 64


def check_nesting(text: str) -> None:
    """CTypeError if `text` nests brackets or pointers deeper than MAX_NESTING (linear time)."""
    depth, stars, levels = 0, 0, []
    for ch in text:
        if ch in "([{":
            levels.append(stars)
            depth, stars = depth + 1, 0
        elif ch in ")]}":
            depth = max(0, depth - 1)
            stars = levels.pop() if levels else 0
        elif ch == "*":
            stars += 1
        elif ch in ",;":
            stars = 0
        if depth + stars + len(levels) > 2 * MAX_NESTING or depth > MAX_NESTING \
                or stars > MAX_NESTING:
            raise CTypeError(f"the C text nests brackets or pointers more than {MAX_NESTING} "
                             "levels deep")


def cffi_cdef(ffi: Any, text: str) -> None:
    """`ffi.cdef(text)`, thread-safe, and any failure of cffi's as CTypeError."""
    check_nesting(text)
    under_lock(PARSE_LOCK, _cdef, ffi, text)


def _cdef(ffi: Any, text: str) -> None:
    try:
        ffi.cdef(text)
    except Exception as exc:        # CDefError, FFIError, ZeroDivisionError ('1/0'), ...
        raise CTypeError(f"cffi cannot read these declarations: {type(exc).__name__}: "
                         f"{exc}") from None
    except RecursionError as exc:   # pragma: no cover - check_nesting bounds the depth
        raise CTypeError(f"the declarations nest too deeply ({exc})") from None


def cffi_type(ffi: Any, text: str) -> Any:
    """`ffi.typeof(text)`, thread-safe, and any failure of cffi's as CTypeError."""
    check_nesting(text)
    return under_lock(PARSE_LOCK, _typeof, ffi, text)


def _typeof(ffi: Any, text: str) -> Any:
    try:
        return ffi.typeof(text)
    except Exception as exc:
        raise CTypeError(f"cffi cannot read the type {text!r}: {type(exc).__name__}: "
                         f"{exc}") from None


# An FFI with no declarations: its typeof reads C types with cffi's backend alone
# (its own C parser, not pycparser), knowing C's types and the standard typedef
# names cffi knows (size_t, int32_t, ...), but no name a manifest declares.
_BACKEND = _cffi_backend.FFI()
# The longest type text worth giving it: it reads at most ~600 parts of one type
# ("internal type complexity limit reached": a function of 597 int parameters is
# the most, ~3,000 characters), and a longer type is slow to spell for it anyway.
PLAIN_TYPE_TEXT = 2000


def plain_type(text: str) -> Any:
    """The cffi type `text` spells, read without pycparser (see _BACKEND); CTypeError if
    the backend cannot read it (a struct, a name declared elsewhere, a function type
    not spelled as a pointer). Types are the backend's own: the same object whichever
    FFI made them."""
    check_nesting(text)
    try:
        return _BACKEND.typeof(text)
    except Exception as exc:        # ffi.error, TypeError, ...
        raise CTypeError(f"cffi's backend cannot read the type {text[:200]!r}: "
                         f"{type(exc).__name__}: {str(exc)[-200:]}") from None


@dataclass(frozen=True)
class Declaration:
    """One declaration of an exports header: 'function' or 'data', and its type."""
    name: str
    kind: str
    ctype: str


@functools.lru_cache(maxsize=None)
def _parser() -> c_parser.CParser:
    return c_parser.CParser()


def parse(text: str, filename: str = "<header>") -> c_ast.FileAST:
    """The AST of C declarations; any text pycparser cannot read is CTypeError."""
    check_nesting(text)
    return under_lock(PARSE_LOCK, _parse, text, filename)


def _parse(text: str, filename: str) -> c_ast.FileAST:
    try:
        return _parser().parse(text, filename)
    except c_parser.ParseError as exc:
        raise CTypeError(str(exc)) from None
    except (RecursionError, IndexError, AttributeError, TypeError,
            AssertionError) as exc:           # pycparser's own failures on odd text
        raise CTypeError(f"cannot read the C text ({type(exc).__name__}: {exc})") from None


# C11 6.7.2p2: the lists of type specifiers that name a basic type, in any
# order. pycparser accepts any list ('int int'), and prints it as written
# ('long int', 'int long'); each basic type gets the first spelling of its group.
_BASIC_TYPES: Dict[Tuple[str, ...], List[str]] = {}
for _group in ("void", "char", "signed char", "unsigned char", "_Bool", "float", "double",
               "long double", "float _Complex", "double _Complex", "long double _Complex",
               "short|signed short|short int|signed short int",
               "unsigned short|unsigned short int", "int|signed|signed int",
               "unsigned int|unsigned", "long|signed long|long int|signed long int",
               "unsigned long|unsigned long int",
               "long long|signed long long|long long int|signed long long int",
               "unsigned long long|unsigned long long int",
               "__int128|signed __int128", "unsigned __int128"):
    _spellings = _group.split("|")
    for _spelling in _spellings:
        _BASIC_TYPES[tuple(sorted(_spelling.split()))] = _spellings[0].split()


def _specifiers(names: List[str]) -> List[str]:
    key = tuple(sorted(names))
    if key in _BASIC_TYPES:
        return list(_BASIC_TYPES[key])
    if len(names) == 1:                    # a typedef name
        return names
    raise CTypeError(f"'{' '.join(names)}' is not a C type")


def _copy_node(node: Any) -> Any:
    """A copy of an AST (nodes and lists copied, strings and positions shared).

    copy.deepcopy did the same at about 2 ms per 10 parameters: the price of
    a 10,000-parameter export was seconds at every reading of its type.
    Recursion is as deep as the type nests (check_nesting bounds it).
    """
    if isinstance(node, list):
        return [_copy_node(item) for item in node]
    if not isinstance(node, c_ast.Node):
        return node
    copied = object.__new__(type(node))
    for slot in type(node).__slots__:
        if slot != "__weakref__" and hasattr(node, slot):
            setattr(copied, slot, _copy_node(getattr(node, slot)))
    return copied


def _strip_names(node: c_ast.Node) -> c_ast.Node:
    """A copy of a declarator with every declared name removed (an abstract type)."""
    node = _copy_node(node)

    def visit(n: c_ast.Node) -> None:
        if isinstance(n, c_ast.IdentifierType):
            n.names = _specifiers(n.names)
        if isinstance(n, c_ast.TypeDecl):
            n.declname = None
        if isinstance(n, c_ast.Decl):          # a named parameter
            n.name, n.storage, n.funcspec = None, [], []
        for _, child in n.children():
            visit(child)

    visit(node)
    return node


def spell(type_node: c_ast.Node) -> str:
    try:
        typename = c_ast.Typename(name=None, quals=[], align=None, type=_strip_names(type_node))
        return c_generator.CGenerator().visit(typename)
    except RecursionError:                 # pragma: no cover - check_nesting bounds the depth
        raise CTypeError("the C type nests too deeply to be printed") from None


def parse_header(preprocessed: str, header: str) -> Tuple[List[Declaration], str]:
    """The declarations a header makes itself, and the type declarations it relies on.

    `preprocessed` is the header after the C preprocessor (with its line
    markers), `header` the path the markers give for the header itself.
    Returns the functions and `extern` variables declared in that file, in
    order, and the text of the typedefs, structs and enums (from it and the
    user headers it includes) that a reader of those types needs.
    """
    ast = parse(preprocessed, header)
    gen = c_generator.CGenerator()
    declarations: List[Declaration] = []
    types: List[str] = []
    for node in ast.ext:
        from_header = Path(node.coord.file) == Path(header) if node.coord else False
        standard = node.coord is not None and Path(node.coord.file).parent == FAKE_LIBC
        if isinstance(node, c_ast.Typedef) or (isinstance(node, c_ast.Decl) and not node.name):
            if not standard:
                types.append(gen.visit(node) + ";")
            continue
        if not isinstance(node, c_ast.Decl) or not from_header or "static" in node.storage:
            continue
        if isinstance(node.type, c_ast.FuncDecl):
            declarations.append(Declaration(node.name, "function", spell(node.type)))
        elif "extern" in node.storage:
            declarations.append(Declaration(node.name, "data", spell(node.type)))
        else:
            raise CTypeError(
                f"{header}:{node.coord.line}: '{gen.visit(node)}' defines a variable in a "
                f"header; declare it 'extern {gen.visit(node)};' there and define it in one "
                "source file")
    return declarations, "\n".join(types)


@functools.lru_cache(maxsize=1024)
def canonical(ctype: str, types: str = "") -> str:
    """The canonical spelling of a C type written as text, e.g. 'const char *(void)'."""
    # A type is parsed as the parameter of a probe function: that is the one
    # place where C's grammar accepts a bare type such as 'int (void)'.
    return spell(_probe(ctype, types).type)


@functools.lru_cache(maxsize=1024)
def pointer_to(ctype: str, types: str = "") -> str:
    """The type of a pointer to `ctype`: 'int (*)(int)' for 'int (int)', 'int *' for 'int'.

    Cached: a typed lookup asks for it every time, and parsing a manifest's
    types again each time would cost seconds for a large one.
    """
    return spell(c_ast.PtrDecl(quals=[], type=_probe(ctype, types).type))


@functools.lru_cache(maxsize=16)
def _probe(ctype: str, types: str) -> c_ast.Node:
    """`ctype` read as the one parameter of a probe function, in the scope of `types`.

    Only the typedef names the text uses are declared before it (as `int`:
    to the grammar a typedef name is a typedef name, whatever it stands
    for), so the cost is the length of `ctype`, not of `types`, which are
    read once per manifest (`type_names`).

    The last few readings are kept: canonical, pointer_to and signature read
    the same text one after the other (a typed lookup canonicalises the type
    asked for, which is the export's own spelling; isolation then reads the
    export's signature to marshal it), and each parsed it again: ~0.6 s apiece
    for a 10,000-parameter type. The node is shared, so no caller may change
    it (spell() strips names from a copy). A text that fails is read again
    each time (lru_cache keeps no exception).
    """
    if not ctype.strip() or re.search(r"[;{}]", ctype):
        raise CTypeError(f"{ctype!r} is not a C type")
    used = sorted(set(re.findall(r"[A-Za-z_]\w*", ctype)) & type_names(types))
    ast = parse("".join(f"typedef int {name};\n" for name in used)
                + f"void __minildr_probe__({ctype});", "<type>")
    probe = ast.ext[-1] if ast.ext else None
    func = getattr(probe, "type", None)
    params = func.args.params if isinstance(func, c_ast.FuncDecl) and func.args else []
    # a bare unknown name reads as an old-style parameter name (c_ast.ID), not a type
    if len(params) != 1 or not isinstance(params[0], (c_ast.Decl, c_ast.Typename)):
        raise CTypeError(f"{ctype!r} is not a single C type")
    return params[0]


def _probe_all(ctypes: List[str], types: str) -> List[c_ast.Node]:
    """Each of `ctypes` read as one parameter of a single probe function (one parse).

    One text alone is the text `_probe` parses: its kept reading is used when
    it has one (a plugin's first typed lookup canonicalised the very text of
    its one export type); a text `_probe` refuses is read here, as before.
    """
    if not ctypes:
        return []
    if len(ctypes) == 1:
        try:
            return [_probe(ctypes[0], types)]
        except CTypeError:
            pass                               # this function's own reading and error
    text = ", ".join(ctypes)
    used = sorted(set(re.findall(r"[A-Za-z_]\w*", text)) & type_names(types))
    ast = parse("".join(f"typedef int {name};\n" for name in used)
                + f"void __minildr_probe__({text});", "<types>")
    params = ast.ext[-1].type.args.params
    if len(params) != len(ctypes) or any(isinstance(p, c_ast.EllipsisParam) for p in params):
        raise CTypeError("the export types are not one C type each")
    return params


@functools.lru_cache(maxsize=64)
def type_names(types: str = "") -> FrozenSet[str]:
    """The typedef names in scope after the standard types and `types` (CTypeError if unreadable).

    Read once per manifest: asking for the type of each of a plugin's
    exports used to parse all of its declarations again each time, so a
    manifest with N declarations and N exports cost N * N.
    """
    return under_lock(PARSE_LOCK, _type_names, types)


def _type_names(types: str) -> FrozenSet[str]:
    parse(f"{STANDARD_TYPES}\n{types}", "<types>")
    # pycparser's file scope after the parse: name -> is it a type. This
    # is exactly what decides how a later text that uses the names parses.
    scope = _parser()._scope_stack[0]
    return frozenset(name for name, is_type in scope.items() if is_type)


def _one_parameter(text: str) -> bool:
    """`text` can stand as one parameter of a C function: brackets balanced, no ',' or '...'
    outside them, no ';', '{' or '}' (linear time: it is checked for every export)."""
    depth = 0
    for number, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                return False
        elif ch in ";{}" or (depth == 0 and (ch == "," or text.startswith("...", number))):
            return False
    return depth == 0 and bool(text.strip())


class CffiTypes:
    """A manifest's declarations in one cffi FFI, with the pointer type of each export.

    cffi reads a type given as text by parsing it after a line for every
    typedef, having sorted every declaration the FFI knows: asking it for
    one export's type at a time costs the size of the whole manifest for
    each export, and so did reading it with pycparser after the manifest's
    declarations. So the first typed lookup reads all the exports' types at
    once, as the parameters of one function type (pycparser, then cffi), and
    takes each pointer type from that function's arguments: a few parses
    per manifest, whatever its size.

    One type cffi cannot take spoils the batch: then each half is read as a
    batch of its own, and so on down to the types that fail alone, whose
    verdict (the CTypeError) is kept too. So a broken export costs a few
    batches (about log2 N for one among N), once, and no lookup of any
    export of that plugin reads its types again.
    """

    def __init__(self, types: str, exports: Tuple[str, ...]) -> None:
        self.ffi = cffi.FFI()
        if types:
            cffi_cdef(self.ffi, types)
        self._types = types
        self._pointers: Dict[str, Any] = {}
        self._refused: Dict[str, str] = {}      # the types that fail on their own: why
        self._read([text for text in dict.fromkeys(exports) if _one_parameter(text)])

    def _read(self, texts: List[str]) -> None:
        """Read `texts` as one batch; if that fails, find the ones that fail alone by halving:
        the first half is read; if it fails it is halved again and the second half read as
        well, else the second half (which must hold the culprit) is halved at once."""
        pending: List[Tuple[List[str], bool]] = [(texts, False)]    # (batch, known to fail)
        while pending:
            batch, fails = pending.pop()
            if not fails:
                try:
                    self._read_batch(batch)
                    continue
                except CTypeError as exc:
                    if len(batch) == 1:
                        self._refused[batch[0]] = str(exc)
                        continue
            if len(batch) == 1:                   # known to fail: read it to know why
                pending.append((batch, False))
                continue
            first, second = batch[:len(batch) // 2], batch[len(batch) // 2:]
            try:
                self._read_batch(first)
            except CTypeError as exc:
                if len(first) == 1:
                    self._refused[first[0]] = str(exc)
                else:
                    pending.append((first, True))
                pending.append((second, False))
            else:
                pending.append((second, True))

    def _read_batch(self, texts: List[str]) -> None:
        """The pointer types of `texts`, as the parameters of one function type."""
        if not texts:
            return
        try:
            pointers = [spell(c_ast.PtrDecl(quals=[], type=param.type))
                        for param in _probe_all(texts, self._types)]
        except CTypeError:
            raise
        except Exception as exc:           # pycparser's own errors, as a CTypeError
            raise CTypeError(f"{', '.join(texts)[:200]!r}: {type(exc).__name__}: {exc}") \
                from None
        args = cffi_type(self.ffi, "void (*)(" + ", ".join(pointers) + ")").args
        if len(args) != len(texts):
            raise CTypeError("the export types are not one C type each")
        self._pointers.update(zip(texts, args))

    def pointer(self, ctype: str) -> Any:
        """The cffi type of a pointer to `ctype` (an export's type, as its manifest spells it)."""
        found = self._pointers.get(ctype)
        if found is None:
            refused = self._refused.get(ctype)
            if refused is not None:               # the verdict of the first reading
                raise CTypeError(refused)
            found = cffi_type(self.ffi, pointer_to(ctype, self._types))
        return found


@functools.lru_cache(maxsize=64)
def cffi_types(types: str, exports: Tuple[str, ...]) -> CffiTypes:
    """The CffiTypes of a manifest (its `types`, its exports' types), shared by equal ones.

    An FFI only holds types, so plugins whose manifests declare the same
    types (every build of the same plugin, every plugin of one contract) share one.
    """
    return CffiTypes(types, exports)


def standard_types() -> Dict[str, str]:
    """Typedef name -> its stand-in definition (for documentation and tests)."""
    result = {}
    for node in parse(STANDARD_TYPES).ext:
        if isinstance(node, c_ast.Typedef):
            result[node.name] = spell(node.type)
    return result


@functools.lru_cache(maxsize=1024)
def signature(ctype: str, types: str = "") -> Tuple[str, Tuple[str, ...], bool]:
    """A function type's parts, each spelled canonically: (result, parameters, variadic).

    `signature('size_t (const char *, char *, size_t)')` gives
    ('size_t', ['const char *', 'char *', 'size_t'], False); `(void)` has no parameters.
    Isolation (isolation/marshal.py) reads it to decide how each argument crosses to the worker.
    """
    func = _probe(ctype, types).type
    if not isinstance(func, c_ast.FuncDecl):
        raise CTypeError(f"{ctype!r} is not a function type")
    params: List[str] = []
    variadic = False
    for param in func.args.params if func.args else []:
        if isinstance(param, c_ast.EllipsisParam):
            variadic = True
        elif (spelled := spell(param.type)) != "void":
            params.append(spelled)
    return spell(func.type), tuple(params), variadic
