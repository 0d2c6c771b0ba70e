"""Contract proxies of an isolated plugin: the in-process proxy's API, each call run in the worker.

`minildr.open(path, isolate=True).lookup("upper", command)` gives an object
that looks and fails like the in-process proxy of proxy.py (the same method
names and signatures, `methods`, `has()`, `call()`, the same records and the
same PluginCallError / NotImplementedByPlugin / ContractViolation with the
plugin's name and message), but the vtable lives in the worker process:

    host: RemoteContract                        worker: ContractProxy (proxy.py)
    cmd.run("abc")
      arguments checked as proxy.py checks them
      ── ["method", seq, handle, 0, ["abc"]] ──▶   proxy.call("run", "abc")
      ◀── ["ok", seq, "ABC"] ──                       converts C -> Python
      the reply checked against the contract: "run" returns one str

The host builds the class from its *own* contract, never from what the
worker says: which methods exist, their parameters, and the exact shape of
each result (a str without NUL, bytes, an int that fits its C type, a list of
records with the contract's fields, a char[N] field shorter than N bytes).
A reply of another shape is a protocol violation: the worker is stopped and
the call raises PluginProtocolError, because a worker that sends one wrong
value cannot be believed about the next. The worker's plugin runs untrusted
code; the host believes only what it can check.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Sequence, Tuple

from ..contracts import convention
from ..contracts.convention import Kind
from ..contracts.proxy import ContractProxy, host_ffi
from ..contracts.contract import Contract
from .protocol import CONTRACT, METHOD, ProtocolViolation

Check = Callable[[Any], Any]


# ---------------------------------------------------------------------------
# The proxy object the host holds
# ---------------------------------------------------------------------------
class RemoteContract(ContractProxy):
    """A plugin's vtable in a worker process, with the in-process ContractProxy's API.

    A ContractProxy (isinstance holds), so it offers `methods`, `contract`,
    `has(method)` and `call(method, *args)` beside the methods themselves.
    One difference: the in-process proxy keeps its library mapped after
    `plugin.close()`; closing an isolated plugin ends its worker, so a call
    then raises PluginClosed.
    """

    _shapes: Dict[str, "Shape"] = {}

    def __init__(self, worker: Any, handle: int, plugin_name: str, path: str,
                 contract: Contract, struct: str, available: Sequence[str]) -> None:
        super().__init__(plugin_name, path, contract, struct, tuple(available))
        # Underscored: a contract's methods (often `name`) must not be shadowed.
        self._worker, self._handle = worker, handle

    def _forward(self, method: str, args: tuple) -> Any:
        """One method call, run in the worker; its result checked against the contract."""
        if method not in self._available:
            raise convention.missing(self, method)       # type: ignore[arg-type]
        shape = self._shapes[method]
        wire = shape.arguments(args)
        during = f"{self._struct}.{method}() of plugin {self._plugin_name}"
        worker = self._worker
        # The method by its index in the list both sides agreed on at lookup.
        value = worker.request([METHOD, self._handle, self._numbers[method], wire], during)
        try:
            return shape.result(value)
        except ProtocolViolation as exc:
            raise worker._violated(exc, during) from None

    def __repr__(self) -> str:
        listed = ", ".join(m if m in self._available else m + " (absent)" for m in self._methods)
        return (f"<isolated {type(self).__name__} of plugin {self._plugin_name} "
                f"({self._contract.name} {self._contract.version}), in worker pid "
                f"{self._worker.pid}: {listed}>")


@functools.lru_cache(maxsize=64)
def remote_class(contract: Contract, struct_name: str) -> type:
    """The RemoteContract subclass for one vtable: a method per contract method.

    Each method has the in-process method's signature, annotations and
    docstring (proxy._annotate), so `inspect.signature`, `help()` and a
    wrong argument count behave alike in both.
    """
    struct = contract.declarations.struct(struct_name)
    methods = convention.read_methods(contract, struct)
    namespace: Dict[str, Any] = {
        "_methods": tuple(m.name for m in methods),
        "_numbers": {m.name: number for number, m in enumerate(methods)},   # sent, not names
        "_shapes": {m.name: Shape(contract, struct_name, m) for m in methods},
        "__doc__": f"An isolated plugin's {struct_name}, contract {contract.name} "
                   f"{contract.version}; each call runs in its worker process.",
    }
    for m in methods:
        args = ", ".join(p.name for p in m.params)
        source = (f"def {m.name}(self{', ' if args else ''}{args}):\n"
                  f"    return self._forward({m.name!r}, ({args}{',' if args else ''}))\n")
        scope: Dict[str, Any] = {}
        exec(compile(source, f"<minildr isolated {contract.name}.{m.name}>", "exec"), scope)
        namespace[m.name] = convention.annotate(scope[m.name], m)
    return type(f"{convention.class_name(struct_name)}Remote", (RemoteContract,), namespace)


def bind_remote(plugin: Any, worker: Any, name: str, contract: Contract) -> RemoteContract:
    """Ask the worker to bind `name` to `contract` (every check of proxy.bind runs there),
    then build the host's object from the host's own contract and check the reply."""
    during = f"looking up {name}"
    reply = worker.request([CONTRACT, name, [contract.name, contract.version, contract.text,
                                             contract.filename]], during)
    try:
        export = plugin.manifest.exports.get(name)
        struct = None if export is None else contract.declarations.struct(export.ctype)
        if struct is None:
            raise ProtocolViolation(f"the worker bound {name!r} to contract {contract.name}, "
                                    "which the plugin's manifest says it cannot be")
        cls = remote_class(contract, struct.name)
        handle, available = _contract_reply(reply, cls._methods)
    except ProtocolViolation as exc:
        raise worker._violated(exc, during) from None
    return cls(worker, handle, plugin.name, plugin.path, contract, struct.name, available)


def _contract_reply(reply: Any, methods: Tuple[str, ...]) -> Tuple[int, List[str]]:
    """[handle, methods, available]: the methods must be the host's, available among them."""
    if not (isinstance(reply, list) and len(reply) == 3 and type(reply[0]) is int
            and reply[0] >= 0 and isinstance(reply[2], list)):
        raise ProtocolViolation(f"the contract reply {str(reply)[:80]!r} is not "
                                "[handle, methods, available]")
    handle, theirs, available = reply
    if theirs != list(methods):
        raise ProtocolViolation(f"the worker lists the methods {str(theirs)[:80]} where the "
                                f"contract has {list(methods)}")
    if not all(isinstance(m, str) and m in methods for m in available) \
            or len(set(available)) != len(available):
        raise ProtocolViolation(f"the worker says {str(available)[:80]} are available, not a "
                                f"subset of {list(methods)}")
    return handle, available


# ---------------------------------------------------------------------------
# Shapes: what each method takes and what it may return, from the contract
# ---------------------------------------------------------------------------
class Shape:
    """One method's arguments (checked as proxy.py checks them) and result (checked strictly)."""

    def __init__(self, contract: Contract, struct_name: str, method: convention.Method) -> None:
        self.method = method
        ffi = host_ffi(contract)
        self.params = tuple((p.name, p.kind) for p in method.params)
        if method.status:
            checks = [_output_check(contract, ffi, o) for o in method.outputs]
            if not checks:
                self.result = _exactly_none
            elif len(checks) == 1:
                self.result = checks[0]
            else:
                self.result = _tuple_check(checks)
        else:
            self.result = _direct_check(ffi, struct_name, method)

    def arguments(self, args: tuple) -> List[Any]:
        """The arguments as JSON values; a wrong one is the in-process proxy's error."""
        wire: List[Any] = []
        for (name, kind), value in zip(self.params, args):
            if kind is Kind.STR:
                if value.__class__ is not str:
                    convention.check_text(value, name)
                if "\0" in value:
                    convention.refuse_nul(name)
                wire.append(value)
            elif kind is Kind.BYTES:
                if value.__class__ is not bytes:
                    value = convention.check_data(value, name)
                wire.append({"bytes": value.decode("latin-1")})
            elif kind is Kind.INT:          # what cffi takes: int (and bool), no __index__
                if not isinstance(value, int):
                    raise TypeError("an integer is required")
                wire.append(int(value))
            else:                        # what cffi takes: as float() would, but no str
                if isinstance(value, float):
                    wire.append(value)
                elif hasattr(value, "__float__") or hasattr(value, "__index__"):
                    wire.append(float(value))
                else:
                    raise TypeError(f"must be real number, not {type(value).__name__}")
        return wire


def _bad(what: str, value: Any) -> ProtocolViolation:
    return ProtocolViolation(f"the worker returned {str(value)[:80]!r} where the contract "
                             f"says {what}")


def _exactly_none(value: Any) -> None:
    if value is not None:
        raise _bad("nothing (None)", value)
    return None


def _text_check(limit: int = 0) -> Check:
    """A str as proxy.py makes one: decoded UTF-8, no NUL (C stops there), under `limit` bytes."""
    def check(value: Any) -> str:
        if type(value) is not str or "\0" in value:
            raise _bad("a str", value)
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise _bad("UTF-8 text", value) from None
        if limit and size >= limit:
            raise _bad(f"text shorter than its char[{limit}] field", value)
        return value
    return check


def _bytes_check(value: Any) -> bytes:
    if not (isinstance(value, dict) and len(value) == 1 and type(value.get("bytes")) is str):
        raise _bad("bytes", value)
    try:
        return value["bytes"].encode("latin-1")
    except UnicodeEncodeError:
        raise _bad("bytes", value) from None


def _int_check(ffi: Any, ctype: Any) -> Check:
    """An int within the range of its C type (as cffi would have read it in-process)."""
    t = ctype if not isinstance(ctype, str) else ffi.typeof(ctype)
    bits = 8 * ffi.sizeof(t)
    if t.kind == "enum":            # cffi may read an enum as signed or unsigned
        low, high = -(1 << (bits - 1)), (1 << bits) - 1
    elif t.cname in ("_Bool", "bool"):
        low, high = 0, 1
    elif int(ffi.cast(t, -1)) < 0:
        low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        low, high = 0, (1 << bits) - 1
    name = t.cname

    def check(value: Any) -> int:
        if type(value) not in (int, bool) or not low <= value <= high:
            raise _bad(f"an int that fits {name}", value)
        return value
    return check


def _float_check(value: Any) -> float:
    if type(value) is not float:
        raise _bad("a float", value)
    return value


def _bool_check(value: Any) -> bool:
    if type(value) is not bool:
        raise _bad("a bool", value)
    return value


def _direct_check(ffi: Any, struct_name: str, method: convention.Method) -> Check:
    kind = method.returns
    if kind is Kind.STR:
        return _text_check()
    if kind is Kind.FLOAT:
        return _float_check
    if kind is Kind.BOOL:
        return _bool_check
    if kind is Kind.NONE:
        return _exactly_none
    fields = dict(ffi.typeof(struct_name).fields)
    return _int_check(ffi, fields[method.name].type.result)


def _output_check(contract: Contract, ffi: Any, output: convention.Output) -> Check:
    if output.kind is Kind.STR:
        return _text_check()
    if output.kind is Kind.BYTES:
        return _bytes_check
    if output.kind is Kind.INT:
        return _int_check(ffi, output.record)
    return _records_check(contract, ffi, output.record)


def _tuple_check(checks: List[Check]) -> Check:
    def check(value: Any) -> tuple:
        items = value.get("tuple") if isinstance(value, dict) and len(value) == 1 else None
        if not isinstance(items, list) or len(items) != len(checks):
            raise _bad(f"a tuple of {len(checks)} values", value)
        return tuple(c(v) for c, v in zip(checks, items))
    return check


def _records_check(contract: Contract, ffi: Any, record: str) -> Check:
    """A list of the records proxy.py makes: the same class, each field of its kind."""
    kinds = convention.record_fields(contract, record)
    names = tuple(name for name, _ in kinds)
    cls = convention.record_class(record, names)
    c_fields = dict(ffi.typeof(record).fields)
    checks: List[Check] = []
    for name, kind in kinds:
        t = c_fields[name].type
        if kind is Kind.INT:
            checks.append(_int_check(ffi, t))
        elif kind is Kind.FLOAT:
            checks.append(_float_check)
        elif kind is Kind.CHARS:
            checks.append(_text_check(limit=t.length))
        else:
            checks.append(_text_check())
    expected = {"record": cls.__name__, "fields": list(names)}

    def one(item: Any) -> Any:
        if not (isinstance(item, dict) and len(item) == 3
                and item.get("record") == expected["record"]
                and item.get("fields") == expected["fields"]
                and isinstance(item.get("values"), list) and len(item["values"]) == len(checks)):
            raise _bad(f"a {cls.__name__} record {expected['fields']}", item)
        return cls(*(c(v) for c, v in zip(checks, item["values"])))

    def check(value: Any) -> list:
        if not isinstance(value, list):
            raise _bad(f"a list of {cls.__name__} records", value)
        return [one(item) for item in value]
    return check

