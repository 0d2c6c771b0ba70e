"""The calling convention of minildr.h, read from a contract: what each method is.

A contract's vtable holds function pointers; each one's C signature decides
how Python calls it. This module states that rule once, for the in-process
proxies (proxy.py) and the isolated ones (isolation/contracts.py) alike:

    C parameter / result                    Python                      Kind
    const char *  (input)                   str (UTF-8, no NUL)         STR
    const void *data, size_t size (input)   bytes (or str, as UTF-8)    BYTES
    integer / floating-point (input)        int / float                 INT / FLOAT
    char **            (output)             str (plugin-allocated; released)    STR
    minildr_bytes *    (output)             bytes (plugin-allocated; released)  BYTES
    T **items, size_t *count (output)       list of records (one block; released) RECORDS
    integer *          (output)             int                         INT
    minildr_status + minildr_error *err     MINILDR_ERROR -> PluginCallError,
                                            MINILDR_UNSUPPORTED -> NotImplementedByPlugin,
                                            anything else -> ContractViolation
    const char * (returned)                 str (plugin-owned; NULL -> ContractViolation)

Also here: the records (structs a method returns arrays of), the argument
checks, and the errors a broken call raises, each written once.
"""
from __future__ import annotations

import enum
import keyword
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, NamedTuple, Tuple

import _cffi_backend

from ..ctype import FLOAT_TYPES, INTEGER_TYPES, spell
from ..errors import ContractViolation, NotImplementedByPlugin, PluginCallError
from ..lazy_pycparser import c_ast
from . import layout
from .contract import Contract


class Kind(str, enum.Enum):
    """What crosses the boundary for one parameter, output, result or record field.

    A str-valued enum, so that the isolated worker's messages carry kinds as
    their plain values.
    """
    STR = "str"          # const char * in; char ** out; const char * returned
    BYTES = "bytes"      # const void *, size_t in; minildr_bytes * out
    INT = "int"          # any integer or enum (in, out through a pointer, returned)
    FLOAT = "float"
    BOOL = "bool"        # returned _Bool
    NONE = "none"        # returned void (or only a status)
    RECORDS = "records"  # T **items, size_t *count out
    CHARS = "chars"      # a record's char[N] field
    CSTR = "cstr"        # a record's const char * field (the plugin's constant string)


STATUS_TYPE = "minildr_status"
ERROR_TYPE = "minildr_error *"
BYTES_TYPE = "minildr_bytes *"
STATUS_NAMES = {0: "MINILDR_OK", 1: "MINILDR_ERROR", 2: "MINILDR_UNSUPPORTED"}
RESERVED = {"has", "call", "methods", "contract", "plugin"}
_INTEGERS = INTEGER_TYPES | {"char", "_Bool", "bool", STATUS_TYPE}   # as method parameters
_FLOATS = FLOAT_TYPES


# ---------------------------------------------------------------------------
# What each method is: read from the contract's declaration of its field
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    name: str           # the Python parameter name
    kind: Kind          # STR, BYTES, INT or FLOAT


@dataclass(frozen=True)
class Output:
    kind: Kind          # STR, BYTES, RECORDS or INT
    record: str = ""    # for "records": the struct's type name; for "int": the C type


@dataclass(frozen=True)
class Method:
    name: str
    status: bool                   # returns minildr_status and takes minildr_error *err
    params: Tuple[Param, ...]
    outputs: Tuple[Output, ...]
    returns: Kind                  # for direct methods: STR, INT, FLOAT, BOOL or NONE
    ctype: str                     # the field's C type, for messages

    @property
    def allocates(self) -> bool:
        return any(o.kind in (Kind.STR, Kind.BYTES, Kind.RECORDS) for o in self.outputs)


class ContractError(ValueError):
    """The host's contract header does not follow the conventions of minildr.h."""


def read_methods(contract: Contract, struct: layout.Struct) -> List[Method]:
    """Every method of a vtable, classified by its C signature."""
    methods = []
    for f in struct.fields:
        if f.name in ("struct_size", "release"):
            continue
        if not (isinstance(f.node, c_ast.PtrDecl) and isinstance(f.node.type, c_ast.FuncDecl)):
            raise ContractError(f"{contract.filename}: field '{f.name}' of {struct.name} is "
                                f"'{f.ctype}'; after struct_size a vtable holds only function "
                                "pointers (and release)")
        if f.name in RESERVED or f.name.startswith("_"):
            raise ContractError(f"{contract.filename}: a method may not be called '{f.name}' "
                                f"(the proxy uses {', '.join(sorted(RESERVED))} itself)")
        methods.append(_read_method(contract, struct, f))
    return methods


def _read_method(contract: Contract, struct: layout.Struct, f: layout.Field) -> Method:
    func: c_ast.FuncDecl = f.node.type
    where = f"{contract.filename}: {struct.name}.{f.name} ({f.ctype})"
    params = [] if func.args is None else list(func.args.params)
    if len(params) == 1 and spell(params[0].type) == "void":
        params = []
    if any(isinstance(p, c_ast.EllipsisParam) for p in params):
        raise ContractError(f"{where}: variadic methods cannot be called safely")
    types = [spell(p.type) for p in params]
    names = [_python_name(p.name or f"arg{i + 1}") for i, p in enumerate(params)]
    result = spell(func.type)
    status = result == STATUS_TYPE
    if status:
        if not types or types[-1] != ERROR_TYPE:
            raise ContractError(f"{where}: a method returning minildr_status takes "
                                "'minildr_error *err' as its last parameter")
        types, names = types[:-1], names[:-1]
        returns = Kind.NONE
    else:
        returns = _result_kind(result, where)
    inputs: List[Param] = []
    outputs: List[Output] = []
    i = 0
    while i < len(types):
        t, name = types[i], names[i]
        if outputs or _is_output(t):
            if not status:
                raise ContractError(f"{where}: a method with outputs must return minildr_status "
                                    "(outputs are valid only with MINILDR_OK)")
            if t == "char **":
                outputs.append(Output(Kind.STR))
            elif t == BYTES_TYPE:
                outputs.append(Output(Kind.BYTES))
            elif t.endswith(" **") and i + 1 < len(types) and types[i + 1] == "size_t *":
                record = t[:-3]
                if contract.declarations.struct(record) is None:
                    raise ContractError(f"{where}: '{name}' points to {record}, which the "
                                        "contract does not declare as a struct")
                outputs.append(Output(Kind.RECORDS, record))
                i += 1
            elif t.endswith(" *") and t[:-2] in _INTEGERS:
                outputs.append(Output(Kind.INT, t[:-2]))
            else:
                raise ContractError(f"{where}: cannot use the output parameter '{name}' of type "
                                    f"'{t}'; see the table in minildr/contracts/convention.py")
        elif t == "const char *":
            inputs.append(Param(name, Kind.STR))
        elif t == "const void *" and i + 1 < len(types) and types[i + 1] == "size_t":
            inputs.append(Param(name, Kind.BYTES))
            i += 1
        elif t in _INTEGERS or _is_enum(contract, t):
            inputs.append(Param(name, Kind.INT))
        elif t in _FLOATS:
            inputs.append(Param(name, Kind.FLOAT))
        else:
            raise ContractError(f"{where}: cannot pass the parameter '{name}' of type '{t}'; "
                                "see the table in minildr/contracts/convention.py")
        i += 1
    return Method(f.name, status, tuple(inputs), tuple(outputs), returns, f.ctype)


def _result_kind(result: str, where: str) -> str:
    if result == "const char *":
        return Kind.STR
    if result in ("_Bool", "bool"):
        return Kind.BOOL
    if result in _INTEGERS:
        return Kind.INT
    if result in _FLOATS:
        return Kind.FLOAT
    if result == "void":
        return Kind.NONE
    raise ContractError(f"{where}: a method returns minildr_status, an integer, a "
                        f"floating-point number, void or 'const char *', not '{result}'")


def _is_output(t: str) -> bool:
    return t.endswith("*") and not t.startswith("const ")


def _is_enum(contract: Contract, t: str) -> bool:
    return t.startswith("enum ") or contract.declarations.others.get(t, "").startswith("enum")


def _python_name(name: str) -> str:
    return f"{name}_" if keyword.iskeyword(name) or name in RESERVED else name


# ---------------------------------------------------------------------------
# Records: the structs a method returns arrays of
# ---------------------------------------------------------------------------
_RECORDS: Dict[Tuple[str, Tuple[str, ...]], type] = {}


def record_class(name: str, fields: Tuple[str, ...]) -> type:
    """A NamedTuple class for a C struct, the same class for the same name and fields."""
    key = (name, fields)
    cls = _RECORDS.get(key)
    if cls is None:
        cls = NamedTuple(class_name(name), [(f, Any) for f in fields])
        cls.__module__ = __name__
        cls.__reduce__ = lambda self: (_record, (name, fields, tuple(self)))
        _RECORDS[key] = cls
    return cls


def _record(name: str, fields: Tuple[str, ...], values: tuple) -> Any:
    return record_class(name, fields)(*values)


def class_name(c_name: str) -> str:
    base = re.sub(r"^(struct|enum)\s+", "", c_name)
    base = re.sub(r"_t$", "", base)
    return "".join(part[:1].upper() + part[1:] for part in base.split("_") if part) or "Record"


def record_fields(contract: Contract, record: str) -> List[Tuple[str, str]]:
    """(field name, kind) for a record: "int", "float", "chars" (char[N]) or "cstr" (const char *)."""
    struct = contract.declarations.struct(record)
    kinds = []
    for f in struct.fields:
        if f.ctype in _INTEGERS or _is_enum(contract, f.ctype):
            kinds.append((f.name, Kind.INT))
        elif f.ctype in _FLOATS:
            kinds.append((f.name, Kind.FLOAT))
        elif re.fullmatch(r"char \[\d+\]", f.ctype):
            kinds.append((f.name, Kind.CHARS))
        elif f.ctype == "const char *":
            kinds.append((f.name, Kind.CSTR))
        else:
            raise ContractError(f"{contract.filename}: field '{f.name}' of the record {record} "
                                f"is '{f.ctype}'; a record holds integers, char arrays and "
                                "'const char *' pointing at the plugin's constant strings")
    return kinds



ANNOTATION = {Kind.STR: "str", Kind.BYTES: "bytes", Kind.INT: "int", Kind.FLOAT: "float",
              Kind.BOOL: "bool", Kind.NONE: "None"}


# ---------------------------------------------------------------------------
# Argument checks and the errors of a broken call (the generated code calls
# these only on its slow or failing paths; the isolated proxy calls them too)
# ---------------------------------------------------------------------------
def check_text(value: Any, name: str) -> str:
    raise TypeError(f"argument {name!r} must be str, not {type(value).__name__}")


def check_data(value: Any, name: str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"argument {name!r} must be bytes or str, not {type(value).__name__}")


def refuse_nul(name: str) -> None:
    raise ValueError(f"argument {name!r} contains a NUL character, which a C string cannot "
                     "carry; pass bytes to a method that takes data and a size")


def decode_text(proxy: Any, method: str, raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        not_utf8(proxy, method, exc)


def not_utf8(proxy: Any, method: str, exc: UnicodeDecodeError) -> None:
    violation(proxy, method, f"returned text that is not UTF-8 ({exc.reason} at byte "
                              f"{exc.start}); minildr.h says strings are UTF-8")


def record_text(proxy: Any, method: str, pointer: Any, name: str) -> str:
    if not pointer:
        violation(proxy, method, f"returned a record whose '{name}' is NULL where a string "
                                  "is required")
    return decode_text(proxy, method, _ffi.string(pointer))


def violation(proxy: Any, method: str, what: str) -> None:
    raise ContractViolation(proxy._path, (
        f"plugin {proxy._plugin_name}: {proxy._struct}.{method} {what}: the plugin breaks "
        "the calling convention of minildr.h; fix the plugin"),
        plugin=proxy._plugin_name, method=method, status=-1)


def failed(proxy: Any, method: str, status: int, err: Any) -> None:
    message = _ffi.string(err.message).decode("utf-8", "replace")
    if status >= 2 ** 31:          # cffi reads the enum as unsigned: show what C returned
        status -= 2 ** 32
    if status == 1:
        raise PluginCallError(proxy._path, (
            f"plugin {proxy._plugin_name}: {method}() failed: "
            f"{message or '(the plugin gave no message)'}"),
            plugin=proxy._plugin_name, method=method, status=status, plugin_message=message)
    if status == 2:
        raise NotImplementedByPlugin(proxy._path, (
            f"plugin {proxy._plugin_name} does not support {method}()"
            f"{': ' + message if message else ''} (it answered MINILDR_UNSUPPORTED)"),
            plugin=proxy._plugin_name, method=method, status=status, plugin_message=message)
    known = ", ".join(f"{v} {k}" for v, k in STATUS_NAMES.items())
    raise ContractViolation(proxy._path, (
        f"plugin {proxy._plugin_name}: {method}() returned status {status}, which minildr.h "
        f"does not define ({known}): the plugin is broken; fix it"),
        plugin=proxy._plugin_name, method=method, status=status, plugin_message=message)


_ffi = _cffi_backend.FFI()   # for ffi.string on any cdata (cffi.FFI() would import its parser)



def missing(proxy: Any, method: str) -> NotImplementedByPlugin:
    return NotImplementedByPlugin(proxy._path, (
        f"plugin {proxy._plugin_name} does not implement {method}() of contract "
        f"{proxy._contract.name} {proxy._contract.version}: it was built against an older "
        f"version of the contract, or left the method NULL; check proxy.has({method!r}) first"),
        plugin=proxy._plugin_name, method=method, status=2)


def annotate(function: Callable, method: Method) -> Callable:
    function.__annotations__ = {p.name: ANNOTATION[p.kind] for p in method.params}
    function.__annotations__["return"] = return_annotation(method)
    function.__doc__ = f"{method.name}: {method.ctype}"
    return function


def return_annotation(method: Method) -> str:
    if not method.status:
        return ANNOTATION[method.returns]
    kinds = [f"List[{class_name(o.record)}]" if o.kind is Kind.RECORDS else ANNOTATION[o.kind]
             for o in method.outputs]
    if not kinds:
        return "None"
    return kinds[0] if len(kinds) == 1 else f"Tuple[{', '.join(kinds)}]"


