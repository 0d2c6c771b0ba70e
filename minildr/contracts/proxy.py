"""Proxies: a plugin's vtable, called from Python as an object with methods.

`plugin.lookup("upper", command)` gives an object whose `.run(line)` calls
the plugin's `run` through the function pointer in its exported vtable,
converting arguments and results by the rules of `minildr.h`, which
convention.py reads from the contract (one output gives a value, several a
tuple, none None).

Each method is Python source generated once per contract (see
`method_source`), specialised to its parameters the way `dataclasses`
writes `__init__`: a call does no generic interpretation, which keeps a
contract call close to a raw cffi call (benchmarks/bench_contract.py).

The one path every call takes is `ContractProxy.call(method, *args)`:
(method name, Python arguments) -> Python result or a PluginError.
Results are plain, picklable values, so the same path can run in another
process (isolation/contracts.py).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Tuple

import cffi

from . import layout
from .contract import Contract, dependency_mismatch
from .convention import (Kind, Method, Output, annotate, check_data, check_text, class_name,
                         decode_text, failed, missing, not_utf8, read_methods, record_class,
                         record_fields, record_text, refuse_nul, violation)
from ..errors import ContractMismatch
from ..lazy_pycparser import c_generator


# ---------------------------------------------------------------------------
# Code generation: one specialised Python function per method
# ---------------------------------------------------------------------------
def method_source(contract: Contract, method: Method) -> str:
    """The Python source of a proxy method: readable, and what actually runs."""
    args = ", ".join(["self"] + [p.name for p in method.params])
    lines = [f"def {method.name}({args}):"]
    call_args: List[str] = []
    for p in method.params:
        if p.kind is Kind.STR:
            lines += [f"    if {p.name}.__class__ is not str: {p.name} = check_text({p.name}, {p.name!r})",
                      f"    if '\\0' in {p.name}: refuse_nul({p.name!r})",    # on str: 5x faster
                      f"    {p.name} = {p.name}.encode()"]
            call_args.append(p.name)
        elif p.kind is Kind.BYTES:
            lines.append(f"    if {p.name}.__class__ is not bytes: {p.name} = check_data({p.name}, {p.name!r})")
            call_args += [p.name, f"len({p.name})"]
        else:
            call_args.append(p.name)
    for n, out in enumerate(method.outputs):
        if out.kind is Kind.STR:
            lines.append(f"    o{n} = new('char *[1]')")
            call_args.append(f"o{n}")
        elif out.kind is Kind.BYTES:
            lines.append(f"    o{n} = new('minildr_bytes *')")
            call_args.append(f"o{n}")
        elif out.kind is Kind.RECORDS:
            lines += [f"    o{n} = new('{out.record} *[1]')", f"    c{n} = new('size_t *')"]
            call_args += [f"o{n}", f"c{n}"]
        else:
            lines.append(f"    o{n} = new('{out.record} *')")
            call_args.append(f"o{n}")
    if not method.status:
        call = f"fn({', '.join(call_args)})"
        if method.returns is Kind.STR:
            lines += [f"    r = {call}",
                      "    if not r: violation(self, NAME, 'returned NULL where a string is required')",
                      "    r = string(r)",
                      "    try: return r.decode()",
                      "    except UnicodeDecodeError as e: not_utf8(self, NAME, e)"]
        elif method.returns is Kind.BOOL:
            lines.append(f"    return bool({call})")
        elif method.returns is Kind.NONE:
            lines.append(f"    {call}")
        else:
            lines.append(f"    return {call}")
        return "\n".join(lines) + "\n"
    call_args.append("err")
    lines += ["    err = new('minildr_error *')",
              f"    status = fn({', '.join(call_args)})",
              "    if status: failed(self, NAME, status, err)"]
    results = []
    frees = []
    for n, out in enumerate(method.outputs):
        if out.kind is Kind.STR:
            lines.append(f"    p{n} = o{n}[0]")
            frees.append(f"p{n}")
            results.append(f"r{n}")
        elif out.kind is Kind.BYTES:
            lines.append(f"    p{n} = o{n}.data")
            frees.append(f"p{n}")
            results.append(f"r{n}")
        elif out.kind is Kind.RECORDS:
            lines.append(f"    p{n} = o{n}[0]")
            frees.append(f"p{n}")
            results.append(f"r{n}")
        else:
            results.append(f"o{n}[0]")
    if frees:
        lines.append("    try:")
        for n, out in enumerate(method.outputs):
            if out.kind is Kind.STR:
                lines.append(f"        r{n} = string(p{n}) if p{n} else None")
            elif out.kind is Kind.BYTES:
                lines.append(f"        r{n} = buffer(p{n}, o{n}.size)[:] if p{n} else "
                             f"(b'' if o{n}.size == 0 else None)")
            elif out.kind is Kind.RECORDS:
                lines.append(f"        r{n} = {_records_expression(contract, out, n)} if p{n} "
                             f"else ([] if c{n}[0] == 0 else None)")
        lines.append("    finally:")
        lines += [f"        if {p}: release({p})" for p in frees]
        for n, out in enumerate(method.outputs):
            if out.kind is Kind.STR:
                lines += [f"    if r{n} is None: violation(self, NAME, 'returned MINILDR_OK "
                          f"but left its string output NULL')",
                          f"    try: r{n} = r{n}.decode()",
                          "    except UnicodeDecodeError as e: not_utf8(self, NAME, e)"]
            elif out.kind is Kind.BYTES:
                lines.append(f"    if r{n} is None: violation(self, NAME, 'returned MINILDR_OK "
                             f"with a NULL data pointer and a non-zero size')")
            elif out.kind is Kind.RECORDS:
                lines.append(f"    if r{n} is None: violation(self, NAME, 'returned MINILDR_OK "
                             f"with a NULL array and a non-zero count')")
    if not results:
        lines.append("    return None")
    elif len(results) == 1:
        lines.append(f"    return {results[0]}")
    else:
        lines.append(f"    return ({', '.join(results)},)")
    return "\n".join(lines) + "\n"


def _records_expression(contract: Contract, out: Output, n: int) -> str:
    fields = record_fields(contract, out.record)
    parts = []
    for name, kind in fields:
        if kind in (Kind.INT, Kind.FLOAT):
            parts.append(f"e.{name}")
        elif kind is Kind.CHARS:
            parts.append(f"decode_text(self, NAME, string(e.{name}))")
        else:
            parts.append(f"record_text(self, NAME, e.{name}, {name!r})")
    return f"[R{n}({', '.join(parts)}) for e in (p{n}[i] for i in range(c{n}[0]))]"


@functools.lru_cache(maxsize=256)
def _factory(contract: Contract, struct_name: str, method_name: str) -> Callable[..., Callable]:
    """Compile a method's source once; the factory binds it to one plugin's function."""
    struct = contract.declarations.struct(struct_name)
    method = next(m for m in read_methods(contract, struct) if m.name == method_name)
    body = method_source(contract, method)
    records = {f"R{n}": record_class(o.record, tuple(f for f, _ in record_fields(contract, o.record)))
               for n, o in enumerate(method.outputs) if o.kind is Kind.RECORDS}
    inner = "\n".join("    " + line for line in body.splitlines())
    names = ", ".join(["fn", "release", "new", "string", "buffer", *records])
    source = f"def factory({names}):\n    NAME = {method_name!r}\n{inner}\n    return {method_name}\n"
    namespace = {f.__name__: f for f in (check_text, check_data, refuse_nul, decode_text,
                                         record_text, violation, failed, not_utf8)}
    exec(compile(source, f"<minildr proxy {contract.name}.{method_name}>", "exec"), namespace)
    factory = namespace["factory"]
    return functools.partial(factory, **records) if records else factory


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
              f"    raise missing(self, {method.name!r})\n")
    namespace = {"missing": missing}
    exec(source, namespace)
    return namespace[method.name]


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
        raise dependency_mismatch(path, contract, ref, why)
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
            namespace[m.name] = annotate(_absent(m), m)
        else:
            namespace[m.name] = annotate(
                _factory(contract, host.name, m.name)(fn, release, ffi.new, ffi.string,
                                                      ffi.buffer), m)
    cls = type(f"{class_name(host.name)}Proxy", (ContractProxy,), namespace)
    proxy = cls(plugin.name, plugin.path, contract, host.name, tuple(available))
    plugin._library.keep_mapped_while(proxy)
    return proxy


