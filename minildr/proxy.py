"""Proxies: a plugin's vtable, called from Python as an object with methods.

`plugin.lookup("upper", command)` gives an object whose `.run(line)` calls
the plugin's `run` through the function pointer in its exported vtable,
converting arguments and results by the rules of `minildr.h`:

    C parameter / result                    Python
    const char *  (input)                   str (UTF-8, no NUL)
    const void *data, size_t size (input)   bytes (or str, sent as UTF-8)
    integer / floating-point (input)        int / float
    char **            (output)             str   (plugin-allocated; released)
    minildr_bytes *    (output)             bytes (plugin-allocated; released)
    T **items, size_t *count (output)       list of records (one block; released)
    integer *          (output)             int
    minildr_status + minildr_error *err     MINILDR_ERROR -> PluginCallError,
                                            MINILDR_UNSUPPORTED -> NotImplementedByPlugin,
                                            anything else -> ContractViolation
    const char * (returned)                 str (plugin-owned; NULL -> ContractViolation)

One output gives a value, several a tuple, none None.

Each method is Python source generated once per contract (see
`method_source`), specialised to its parameters the way `dataclasses`
writes `__init__`: a call does no generic interpretation, which keeps a
contract call close to a raw cffi call (benchmarks/bench_contract.py).

The one path every call takes is `ContractProxy.call(method, *args)`:
(method name, Python arguments) -> Python result or a PluginError.
Results are plain, picklable values, so the same path can run in another
process.
"""
from __future__ import annotations

import functools
import keyword
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, NamedTuple, Tuple

import cffi
from pycparser import c_ast, c_generator

from . import layout
from .contract import Contract
from .errors import (ContractMismatch, ContractViolation, DependencyMismatch,
                     NotImplementedByPlugin, PluginCallError)

STATUS_TYPE = "minildr_status"
ERROR_TYPE = "minildr_error *"
BYTES_TYPE = "minildr_bytes *"
STATUS_NAMES = {0: "MINILDR_OK", 1: "MINILDR_ERROR", 2: "MINILDR_UNSUPPORTED"}
RESERVED = {"has", "call", "methods", "contract", "plugin"}
_INTEGERS = {
    "char", "signed char", "unsigned char", "short", "unsigned short", "int", "unsigned int",
    "long", "unsigned long", "long long", "unsigned long long", "_Bool", "bool", "size_t",
    "ssize_t", "ptrdiff_t", "intptr_t", "uintptr_t", "int8_t", "int16_t", "int32_t",
    "int64_t", "uint8_t", "uint16_t", "uint32_t", "uint64_t", "intmax_t", "uintmax_t",
    STATUS_TYPE,
}
_FLOATS = {"float", "double"}


# ---------------------------------------------------------------------------
# What each method is: read from the contract's declaration of its field
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    name: str           # the Python parameter name
    kind: str           # "str", "bytes", "int", "float"


@dataclass(frozen=True)
class Output:
    kind: str           # "str", "bytes", "records", "int"
    record: str = ""    # for "records": the struct's type name; for "int": the C type


@dataclass(frozen=True)
class Method:
    name: str
    status: bool                   # returns minildr_status and takes minildr_error *err
    params: Tuple[Param, ...]
    outputs: Tuple[Output, ...]
    returns: str                   # for direct methods: "str", "int", "float", "bool", "none"
    ctype: str                     # the field's C type, for messages

    @property
    def allocates(self) -> bool:
        return any(o.kind in ("str", "bytes", "records") for o in self.outputs)


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
    if len(params) == 1 and _spell(params[0].type) == "void":
        params = []
    if any(isinstance(p, c_ast.EllipsisParam) for p in params):
        raise ContractError(f"{where}: variadic methods cannot be called safely")
    types = [_spell(p.type) for p in params]
    names = [_python_name(p.name or f"arg{i + 1}") for i, p in enumerate(params)]
    result = _spell(func.type)
    status = result == STATUS_TYPE
    if status:
        if not types or types[-1] != ERROR_TYPE:
            raise ContractError(f"{where}: a method returning minildr_status takes "
                                "'minildr_error *err' as its last parameter")
        types, names = types[:-1], names[:-1]
        returns = "none"
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
                outputs.append(Output("str"))
            elif t == BYTES_TYPE:
                outputs.append(Output("bytes"))
            elif t.endswith(" **") and i + 1 < len(types) and types[i + 1] == "size_t *":
                record = t[:-3]
                if contract.declarations.struct(record) is None:
                    raise ContractError(f"{where}: '{name}' points to {record}, which the "
                                        "contract does not declare as a struct")
                outputs.append(Output("records", record))
                i += 1
            elif t.endswith(" *") and t[:-2] in _INTEGERS:
                outputs.append(Output("int", t[:-2]))
            else:
                raise ContractError(f"{where}: cannot use the output parameter '{name}' of type "
                                    f"'{t}'; see the table in minildr/proxy.py")
        elif t == "const char *":
            inputs.append(Param(name, "str"))
        elif t == "const void *" and i + 1 < len(types) and types[i + 1] == "size_t":
            inputs.append(Param(name, "bytes"))
            i += 1
        elif t in _INTEGERS or _is_enum(contract, t):
            inputs.append(Param(name, "int"))
        elif t in _FLOATS:
            inputs.append(Param(name, "float"))
        else:
            raise ContractError(f"{where}: cannot pass the parameter '{name}' of type '{t}'; "
                                "see the table in minildr/proxy.py")
        i += 1
    return Method(f.name, status, tuple(inputs), tuple(outputs), returns, f.ctype)


def _result_kind(result: str, where: str) -> str:
    if result == "const char *":
        return "str"
    if result in ("_Bool", "bool"):
        return "bool"
    if result in _INTEGERS:
        return "int"
    if result in _FLOATS:
        return "float"
    if result == "void":
        return "none"
    raise ContractError(f"{where}: a method returns minildr_status, an integer, a "
                        f"floating-point number, void or 'const char *', not '{result}'")


def _is_output(t: str) -> bool:
    return t.endswith("*") and not t.startswith("const ")


def _is_enum(contract: Contract, t: str) -> bool:
    return t.startswith("enum ") or contract.declarations.others.get(t, "").startswith("enum")


def _spell(node: c_ast.Node) -> str:
    from .ctype import _spell as spell
    return spell(node)


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
        cls = NamedTuple(_class_name(name), [(f, Any) for f in fields])
        cls.__module__ = __name__
        cls.__reduce__ = lambda self: (_record, (name, fields, tuple(self)))
        _RECORDS[key] = cls
    return cls


def _record(name: str, fields: Tuple[str, ...], values: tuple) -> Any:
    return record_class(name, fields)(*values)


def _class_name(c_name: str) -> str:
    base = re.sub(r"^(struct|enum)\s+", "", c_name)
    base = re.sub(r"_t$", "", base)
    return "".join(part[:1].upper() + part[1:] for part in base.split("_") if part) or "Record"


def _record_fields(contract: Contract, record: str) -> List[Tuple[str, str]]:
    """(field name, kind) for a record: "int", "float", "chars" (char[N]) or "cstr" (const char *)."""
    struct = contract.declarations.struct(record)
    kinds = []
    for f in struct.fields:
        if f.ctype in _INTEGERS or _is_enum(contract, f.ctype):
            kinds.append((f.name, "int"))
        elif f.ctype in _FLOATS:
            kinds.append((f.name, "float"))
        elif re.fullmatch(r"char \[\d+\]", f.ctype):
            kinds.append((f.name, "chars"))
        elif f.ctype == "const char *":
            kinds.append((f.name, "cstr"))
        else:
            raise ContractError(f"{contract.filename}: field '{f.name}' of the record {record} "
                                f"is '{f.ctype}'; a record holds integers, char arrays and "
                                "'const char *' pointing at the plugin's constant strings")
    return kinds


# ---------------------------------------------------------------------------
# Code generation: one specialised Python function per method
# ---------------------------------------------------------------------------
_ANNOTATION = {"str": "str", "bytes": "bytes", "int": "int", "float": "float",
               "bool": "bool", "none": "None"}


def method_source(contract: Contract, method: Method) -> str:
    """The Python source of a proxy method: readable, and what actually runs."""
    args = ", ".join(["self"] + [p.name for p in method.params])
    lines = [f"def {method.name}({args}):"]
    call_args: List[str] = []
    for p in method.params:
        if p.kind == "str":
            lines += [f"    if {p.name}.__class__ is not str: {p.name} = _text({p.name}, {p.name!r})",
                      f"    if '\\0' in {p.name}: _nul({p.name!r})",    # on str: 5x faster
                      f"    {p.name} = {p.name}.encode()"]
            call_args.append(p.name)
        elif p.kind == "bytes":
            lines.append(f"    if {p.name}.__class__ is not bytes: {p.name} = _data({p.name}, {p.name!r})")
            call_args += [p.name, f"len({p.name})"]
        else:
            call_args.append(p.name)
    for n, out in enumerate(method.outputs):
        if out.kind == "str":
            lines.append(f"    o{n} = new('char *[1]')")
            call_args.append(f"o{n}")
        elif out.kind == "bytes":
            lines.append(f"    o{n} = new('minildr_bytes *')")
            call_args.append(f"o{n}")
        elif out.kind == "records":
            lines += [f"    o{n} = new('{out.record} *[1]')", f"    c{n} = new('size_t *')"]
            call_args += [f"o{n}", f"c{n}"]
        else:
            lines.append(f"    o{n} = new('{out.record} *')")
            call_args.append(f"o{n}")
    if not method.status:
        call = f"fn({', '.join(call_args)})"
        if method.returns == "str":
            lines += [f"    r = {call}",
                      "    if not r: _violation(self, NAME, 'returned NULL where a string is required')",
                      "    r = string(r)",
                      "    try: return r.decode()",
                      "    except UnicodeDecodeError as e: _not_utf8(self, NAME, e)"]
        elif method.returns == "bool":
            lines.append(f"    return bool({call})")
        elif method.returns == "none":
            lines.append(f"    {call}")
        else:
            lines.append(f"    return {call}")
        return "\n".join(lines) + "\n"
    call_args.append("err")
    lines += ["    err = new('minildr_error *')",
              f"    status = fn({', '.join(call_args)})",
              "    if status: _failed(self, NAME, status, err)"]
    results = []
    frees = []
    for n, out in enumerate(method.outputs):
        if out.kind == "str":
            lines.append(f"    p{n} = o{n}[0]")
            frees.append(f"p{n}")
            results.append(f"r{n}")
        elif out.kind == "bytes":
            lines.append(f"    p{n} = o{n}.data")
            frees.append(f"p{n}")
            results.append(f"r{n}")
        elif out.kind == "records":
            lines.append(f"    p{n} = o{n}[0]")
            frees.append(f"p{n}")
            results.append(f"r{n}")
        else:
            results.append(f"o{n}[0]")
    if frees:
        lines.append("    try:")
        for n, out in enumerate(method.outputs):
            if out.kind == "str":
                lines.append(f"        r{n} = string(p{n}) if p{n} else None")
            elif out.kind == "bytes":
                lines.append(f"        r{n} = buffer(p{n}, o{n}.size)[:] if p{n} else "
                             f"(b'' if o{n}.size == 0 else None)")
            elif out.kind == "records":
                lines.append(f"        r{n} = {_records_expression(contract, out, n)} if p{n} "
                             f"else ([] if c{n}[0] == 0 else None)")
        lines.append("    finally:")
        lines += [f"        if {p}: release({p})" for p in frees]
        for n, out in enumerate(method.outputs):
            if out.kind == "str":
                lines += [f"    if r{n} is None: _violation(self, NAME, 'returned MINILDR_OK "
                          f"but left its string output NULL')",
                          f"    try: r{n} = r{n}.decode()",
                          f"    except UnicodeDecodeError as e: _not_utf8(self, NAME, e)"]
            elif out.kind == "bytes":
                lines.append(f"    if r{n} is None: _violation(self, NAME, 'returned MINILDR_OK "
                             f"with a NULL data pointer and a non-zero size')")
            elif out.kind == "records":
                lines.append(f"    if r{n} is None: _violation(self, NAME, 'returned MINILDR_OK "
                             f"with a NULL array and a non-zero count')")
    if not results:
        lines.append("    return None")
    elif len(results) == 1:
        lines.append(f"    return {results[0]}")
    else:
        lines.append(f"    return ({', '.join(results)},)")
    return "\n".join(lines) + "\n"


def _records_expression(contract: Contract, out: Output, n: int) -> str:
    fields = _record_fields(contract, out.record)
    parts = []
    for name, kind in fields:
        if kind in ("int", "float"):
            parts.append(f"e.{name}")
        elif kind == "chars":
            parts.append(f"_decode(self, NAME, string(e.{name}))")
        else:
            parts.append(f"_field(self, NAME, e.{name}, {name!r})")
    return f"[R{n}({', '.join(parts)}) for e in (p{n}[i] for i in range(c{n}[0]))]"


@functools.lru_cache(maxsize=256)
def _factory(contract: Contract, struct_name: str, method_name: str) -> Callable[..., Callable]:
    """Compile a method's source once; the factory binds it to one plugin's function."""
    struct = contract.declarations.struct(struct_name)
    method = next(m for m in read_methods(contract, struct) if m.name == method_name)
    body = method_source(contract, method)
    records = {f"R{n}": record_class(o.record, tuple(f for f, _ in _record_fields(contract, o.record)))
               for n, o in enumerate(method.outputs) if o.kind == "records"}
    inner = "\n".join("    " + line for line in body.splitlines())
    names = ", ".join(["fn", "release", "new", "string", "buffer", *records])
    source = f"def factory({names}):\n    NAME = {method_name!r}\n{inner}\n    return {method_name}\n"
    namespace = {"_text": _text, "_data": _data, "_nul": _nul, "_decode": _decode,
                 "_field": _field, "_violation": _violation, "_failed": _failed,
                 "_not_utf8": _not_utf8}
    exec(compile(source, f"<minildr proxy {contract.name}.{method_name}>", "exec"), namespace)
    factory = namespace["factory"]
    return functools.partial(factory, **records) if records else factory


# -- helpers the generated code calls (only on the slow or failing paths) ----
def _text(value: Any, name: str) -> str:
    raise TypeError(f"argument {name!r} must be str, not {type(value).__name__}")


def _data(value: Any, name: str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"argument {name!r} must be bytes or str, not {type(value).__name__}")


def _nul(name: str) -> None:
    raise ValueError(f"argument {name!r} contains a NUL character, which a C string cannot "
                     "carry; pass bytes to a method that takes data and a size")


def _decode(proxy: "ContractProxy", method: str, raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        _not_utf8(proxy, method, exc)


def _not_utf8(proxy: "ContractProxy", method: str, exc: UnicodeDecodeError) -> None:
    _violation(proxy, method, f"returned text that is not UTF-8 ({exc.reason} at byte "
                              f"{exc.start}); minildr.h says strings are UTF-8")


def _field(proxy: "ContractProxy", method: str, pointer: Any, name: str) -> str:
    if not pointer:
        _violation(proxy, method, f"returned a record whose '{name}' is NULL where a string "
                                  "is required")
    return _decode(proxy, method, _ffi.string(pointer))


def _violation(proxy: "ContractProxy", method: str, what: str) -> None:
    raise ContractViolation(proxy._path, (
        f"plugin {proxy._plugin_name}: {proxy._struct}.{method} {what}: the plugin breaks "
        "the calling convention of minildr.h; fix the plugin"),
        plugin=proxy._plugin_name, method=method, status=-1)


def _failed(proxy: "ContractProxy", method: str, status: int, err: Any) -> None:
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


_ffi = cffi.FFI()       # for ffi.string on any cdata


# ---------------------------------------------------------------------------
# The proxy
# ---------------------------------------------------------------------------
class ContractProxy:
    """A plugin's vtable as a Python object: one method per contract method.

    `has(name)` says whether the plugin provides a method; calling one it
    lacks raises NotImplementedByPlugin. `call(name, *args)` is the same call
    by name (what a worker process would forward).
    """

    _methods: Tuple[str, ...] = ()

    def __init__(self, plugin_name: str, path: str, contract: Contract, struct: str,
                 available: Tuple[str, ...]) -> None:
        self._plugin_name = plugin_name
        self._path = path
        self._contract = contract
        self._struct = struct
        self._available = frozenset(available)

    @property
    def contract(self) -> Contract:
        return self._contract

    @property
    def methods(self) -> Tuple[str, ...]:
        """Every method of the contract, in vtable order (present or not)."""
        return self._methods

    def has(self, method: str) -> bool:
        """Does the plugin provide `method`? False beyond its struct_size, or if NULL."""
        if method not in self._methods:
            raise AttributeError(f"contract {self._contract.name} ({self._struct}) has no "
                                 f"method {method!r}; it has {', '.join(self._methods)}")
        return method in self._available

    def call(self, method: str, *args: Any) -> Any:
        """`proxy.call("run", "x")` is `proxy.run("x")`: the forwardable form."""
        if method not in self._methods:
            self.has(method)            # raises the AttributeError above
        return getattr(self, method)(*args)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} of plugin {self._plugin_name} "
                f"({self._contract.name} {self._contract.version}): "
                f"{', '.join(m if m in self._available else m + ' (absent)' for m in self._methods)}>")


def _absent(method: Method) -> Callable:
    args = ", ".join(["self"] + [p.name for p in method.params])
    source = (f"def {method.name}({args}):\n"
              f"    raise _missing(self, {method.name!r})\n")
    namespace = {"_missing": _missing}
    exec(source, namespace)
    return namespace[method.name]


def _missing(proxy: ContractProxy, method: str) -> NotImplementedByPlugin:
    return NotImplementedByPlugin(proxy._path, (
        f"plugin {proxy._plugin_name} does not implement {method}() of contract "
        f"{proxy._contract.name} {proxy._contract.version}: it was built against an older "
        f"version of the contract, or left the method NULL; check proxy.has({method!r}) first"),
        plugin=proxy._plugin_name, method=method, status=2)


def _annotate(function: Callable, method: Method) -> Callable:
    function.__annotations__ = {p.name: _ANNOTATION[p.kind] for p in method.params}
    function.__annotations__["return"] = _return_annotation(method)
    function.__doc__ = f"{method.name}: {method.ctype}"
    return function


def _return_annotation(method: Method) -> str:
    if not method.status:
        return _ANNOTATION[method.returns]
    kinds = [f"List[{_class_name(o.record)}]" if o.kind == "records" else _ANNOTATION[o.kind]
             for o in method.outputs]
    if not kinds:
        return "None"
    return kinds[0] if len(kinds) == 1 else f"Tuple[{', '.join(kinds)}]"


# ---------------------------------------------------------------------------
# bind(): from an exported variable to a proxy, checking the layout first
# ---------------------------------------------------------------------------
def host_ffi_source(contract: Contract) -> str:
    """The contract's declarations as cffi's cdef reads them (preprocessed, C only)."""
    gen = c_generator.CGenerator()
    return "\n".join(gen.visit(node) + ";" for node in contract.declarations.nodes)


@functools.lru_cache(maxsize=64)
def host_ffi(contract: Contract) -> cffi.FFI:
    """cffi, taught the contract's types as the host declares them."""
    ffi = cffi.FFI()
    ffi.cdef(host_ffi_source(contract))
    return ffi


def bind(plugin: Any, name: str, export: Any, address: int, contract: Contract) -> ContractProxy:
    """The proxy for the vtable `name` at `address`, after checking it fits `contract`."""
    path = plugin.path
    if export.kind != "data":
        raise ContractMismatch(path, (
            f"'{name}' is a function ({export.ctype}), but contract {contract.name} is "
            "implemented by a variable holding a vtable; export one and look that up"))
    host = contract.declarations.struct(export.ctype)
    if host is None:
        known = ", ".join(s.name for s in contract.vtables()) or "none"
        raise ContractMismatch(path, (
            f"'{name}' is a '{export.ctype}', a type contract {contract.name} does not "
            f"declare (its vtables: {known}); the plugin implements another contract"))
    ref = plugin.manifest.contracts.get(contract.name)
    why = None if ref is None else contract.compatible_with(ref, plugin.manifest.types)
    if why is not None:                 # open() checks this too, if given the contract
        raise DependencyMismatch(path, (
            f"plugin was built with a different version of contract {contract.name}: the "
            f"plugin has {contract.name} {ref.version}, the host has {contract.name} "
            f"{contract.version}: {why}; rebuild the plugin against the host's "
            f"{contract.filename}"))
    methods = read_methods(contract, host)
    try:
        theirs = _manifest_declarations(plugin.manifest.types)
    except Exception as exc:        # a damaged manifest: nothing to compare with
        raise ContractMismatch(path, f"its recorded declarations cannot be read ({exc})") from None
    if theirs.struct(export.ctype) is None:
        raise ContractMismatch(path, f"its manifest does not declare the struct of '{name}' "
                                     f"({export.ctype}); rebuild it with minildr.build")
    own = contract.declarations
    problem = layout.compare(own, theirs, [host.name] + [n for n in own.names() if n != host.name])
    if problem:
        raise ContractMismatch(path, (
            f"'{name}' does not have the layout of contract {contract.name} "
            f"{contract.version}: {problem}; rebuild the plugin against the host's "
            f"{contract.filename}"))
    ffi = host_ffi(contract)
    size = _vtable_size(plugin, name, export, address, host, ffi)
    vtable = ffi.cast(f"{host.name} *", address)
    available = {}
    for m in methods:
        if ffi.offsetof(host.name, m.name) + ffi.sizeof("void *") <= size:
            fn = getattr(vtable, m.name)
            if fn:
                available[m.name] = fn
    release = None
    if host.field("release") is not None and \
            ffi.offsetof(host.name, "release") + ffi.sizeof("void *") <= size:
        release = vtable.release or None
    needing = [m.name for m in methods if m.allocates and m.name in available]
    if needing and release is None:
        raise ContractMismatch(path, (
            f"'{name}' leaves 'release' NULL (or lacks it), but its method(s) "
            f"{', '.join(needing)} hand memory to the host, which could then never free it; "
            "set .release to the function that frees what the plugin allocates"))
    return _make_proxy(plugin, contract, host, methods, available, release, ffi)


@functools.lru_cache(maxsize=64)
def _manifest_declarations(types: str) -> layout.Declarations:
    return layout.Declarations(types, "<the plugin's manifest>")


def _vtable_size(plugin: Any, name: str, export: Any, address: int, host: layout.Struct,
                 ffi: cffi.FFI) -> int:
    """How many bytes of the vtable the plugin really has: its struct_size, checked."""
    if not host.evolvable:
        return ffi.sizeof(host.name)
    stated = ffi.cast("size_t *", address)[0]
    expected = plugin._cffi().sizeof(host.name)
    if stated != expected:
        raise ContractMismatch(plugin.path, (
            f"'{name}' says struct_size = {stated}, but its own {host.name} is {expected} "
            f"bytes; initialise it with .struct_size = sizeof({host.name})"))
    return stated


def _make_proxy(plugin: Any, contract: Contract, host: layout.Struct, methods: List[Method],
                available: Dict[str, Any], release: Any, ffi: cffi.FFI) -> ContractProxy:
    namespace: Dict[str, Any] = {"_methods": tuple(m.name for m in methods),
                                 "__doc__": f"Plugin {plugin.name}'s {host.name}, contract "
                                            f"{contract.name} {contract.version}.",
                                 "__slots__": ()}
    for m in methods:
        fn = available.get(m.name)
        if fn is None:
            namespace[m.name] = _annotate(_absent(m), m)
        else:
            namespace[m.name] = _annotate(
                _factory(contract, host.name, m.name)(fn, release, ffi.new, ffi.string,
                                                      ffi.buffer), m)
    cls = type(f"{_class_name(host.name)}Proxy", (ContractProxy,), namespace)
    proxy = cls(plugin.name, plugin.path, contract, host.name, tuple(available))
    plugin._library.keep_mapped_while(proxy)
    return proxy


# ---------------------------------------------------------------------------
# typing.Protocol source, for editors
# ---------------------------------------------------------------------------
def protocol_source(*contracts: Contract) -> str:
    """Python source declaring a Protocol per vtable and a NamedTuple per record.

    A proxy is built at run time, so an editor cannot see its methods; this
    module text can be saved beside the host and used as the proxy's type:
    `fmt: FileFormat = plugin.lookup("qp", FORMAT)`.
    """
    names = ", ".join(f"{c.name} {c.version} ({c.filename})" for c in contracts)
    lines = [f'"""Type hints for contract(s) {names}.',
             "", "Generated by minildr.proxy.protocol_source: do not edit.", '"""',
             "from __future__ import annotations", "",
             "from typing import List, NamedTuple, Protocol, Tuple", ""]
    for contract in contracts:
        lines += _protocol_lines(contract)
    return "\n".join(lines).rstrip() + "\n"


def _protocol_lines(contract: Contract) -> List[str]:
    lines: List[str] = []
    records: Dict[str, None] = {}
    vtables = contract.vtables()
    for struct in vtables:
        for m in read_methods(contract, struct):
            for o in m.outputs:
                if o.kind == "records":
                    records[o.record] = None
    for record in records:
        lines += ["", f"class {_class_name(record)}(NamedTuple):",
                  f'    """{record}, as a record returned by contract {contract.name}."""', ""]
        for fname, kind in _record_fields(contract, record):
            lines.append(f"    {fname}: {'str' if kind in ('chars', 'cstr') else kind}")
        lines.append("")
    for struct in vtables:
        lines += ["", f"class {_class_name(struct.name)}(Protocol):",
                  f'    """What plugin.lookup(name, {contract.name}) gives for a {struct.name} '
                  f'(contract {contract.name} {contract.version})."""',
                  "", "    def has(self, method: str) -> bool: ...", ""]
        for m in read_methods(contract, struct):
            args = ", ".join(["self"] + [f"{p.name}: {_ANNOTATION[p.kind]}" for p in m.params])
            lines += [f"    def {m.name}({args}) -> {_return_annotation(m)}:",
                      f'        """{m.ctype}"""', "        ...", ""]
    return lines
