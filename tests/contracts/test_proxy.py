"""Contract proxies: every conversion rule of minildr.h, errors as values, and the checks
that refuse a vtable whose layout is not the contract's."""
from __future__ import annotations

import gc
import inspect
import os
import pickle
from pathlib import Path

import pytest

import minildr
from minildr.contracts import convention as proxies
from minildr.contracts.stubs import protocol_source

from helpers import DATA, EXAMPLES, build_once, write_plugin
from platforms import requires_isolation

HERE = DATA / "contracts"
PROBE = minildr.Contract.from_header(HERE / "probe.h", version="1.0")
COMMAND = minildr.Contract.from_header(EXAMPLES / "command" / "command.h", version="1.1")


@pytest.fixture(scope="module")
def probe_so(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe")
    return build_once([HERE / "probe_plugin.c"], name="probe", exports=HERE / "probe_plugin.h",
                      contracts=[PROBE], out_dir=out)


@pytest.fixture(params=[False, pytest.param(True, marks=requires_isolation)], ids=["in-process", "isolated"])
def isolate(request):
    """Every test that takes this runs twice: in-process, and through a worker process
    (minildr.isolation.contracts), which must give the same results and the same errors."""
    return request.param


@pytest.fixture(scope="module")
def isolated_probe_plugin(probe_so):
    """One worker for every isolated case: each looks up its own proxy in it, and a
    contract violation is an error value, which leaves the worker serving."""
    with minildr.open(probe_so, contracts=[PROBE], isolate=True) as p:
        yield p


@pytest.fixture
def plugin(request, probe_so, isolate):
    """The probe plugin: in-process, opened for the test; isolated, the module's worker,
    checked before each test to be serving with no output left unreleased."""
    if not isolate:
        with minildr.open(probe_so, contracts=[PROBE]) as p:
            yield p
        return
    p = request.getfixturevalue("isolated_probe_plugin")
    assert p._worker.alive and live(p) == 0, \
        "an earlier test stopped the shared worker or left one of its outputs unreleased"
    yield p


@pytest.fixture
def probe(plugin):
    return plugin.lookup("probe", PROBE)


@pytest.fixture(scope="module")
def upper_so(tmp_path_factory):
    out = tmp_path_factory.mktemp("upper")
    folder = EXAMPLES / "command"
    return build_once([folder / "upper.c"], name="upper", exports=folder / "upper.h",
                      contracts=[COMMAND], out_dir=out)


def live(plugin):
    return plugin.lookup("live", "long")[0]


# ---------------------------------------------------------------------------
# The command example: what a learner types
# ---------------------------------------------------------------------------
def test_command_methods_take_and_return_python_values(upper_so, isolate):
    with minildr.open(upper_so, contracts=[COMMAND], isolate=isolate) as plugin:
        cmd = plugin.lookup("upper", COMMAND)
        assert cmd.name() == "upper"
        assert cmd.run("hello, wörld") == "HELLO, WöRLD"
        assert cmd.help().startswith("upper LINE")
        assert cmd.has("help") and cmd.methods == ("name", "run", "help")
        assert plugin.lookup("live_outputs", "int64_t")[0] == 0


def test_plugin_error_is_a_value_with_the_plugins_message_and_name(upper_so, isolate):
    with minildr.open(upper_so, contracts=[COMMAND], isolate=isolate) as plugin:
        cmd = plugin.lookup("upper", COMMAND)
        with pytest.raises(minildr.PluginCallError) as err:
            cmd.run("tab\there")
        e = err.value
        assert e.plugin == "upper" and e.method == "run" and e.status == 1
        assert e.plugin_message == ("control character 0x09 at byte 4: a command takes one "
                                    "line of text")
        assert e.plugin_message in str(e) and os.fspath(upper_so) in str(e)
        assert isinstance(e, minildr.PluginError)
        assert cmd.run("still works") == "STILL WORKS"       # nothing half-done
        copy = pickle.loads(pickle.dumps(e))                  # can cross a process boundary
        assert (type(copy), str(copy), copy.plugin_message) == (type(e), str(e), e.plugin_message)


def test_proxy_methods_have_the_headers_signatures(upper_so, isolate):
    with minildr.open(upper_so, isolate=isolate) as plugin:
        cmd = plugin.lookup("upper", COMMAND)
        assert str(inspect.signature(cmd.run)) == "(line: 'str') -> 'str'"
        assert "run" in dir(cmd) and "minildr_status" in cmd.run.__doc__
        assert "upper" in repr(cmd) and "command 1.1" in repr(cmd)


def test_call_by_name_is_the_same_call(upper_so, isolate):
    with minildr.open(upper_so, isolate=isolate) as plugin:
        cmd = plugin.lookup("upper", COMMAND)
        assert cmd.call("run", "abc") == "ABC"
        with pytest.raises(AttributeError, match="has no method 'fly'"):
            cmd.call("fly")
        with pytest.raises(AttributeError, match="name, run, help"):
            cmd.has("fly")


# ---------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------
def test_strings_in_and_out(probe, plugin):
    assert probe.text(0) == "probe"
    assert probe.output(0, "ünïcode ✓") == "ünïcode ✓"
    assert live(plugin) == 0


def test_bytes_keep_nul_bytes_and_accept_str(probe, plugin):
    assert probe.reverse(b"a\x00b\xff") == b"\xffb\x00a"
    assert probe.reverse("é") == "é".encode()[::-1]
    assert probe.reverse(bytearray(b"xy")) == b"yx"
    assert probe.reverse(b"") == b""
    assert live(plugin) == 0


def test_records_come_back_as_named_tuples(probe, plugin):
    items = probe.items(0)
    assert [tuple(i) for i in items] == [(1, 0.5, "first", "alpha"), (-2, 2.25, "second", "béta")]
    assert items[1].label == "béta" and items[0]._fields == ("id", "weight", "kind", "label")
    assert pickle.loads(pickle.dumps(items)) == items
    assert probe.items(3) == []
    assert live(plugin) == 0


def test_several_outputs_give_a_tuple_none_gives_none(probe):
    assert probe.measure("two  words") == (10, 2)
    assert probe.nothing() is None


def test_numbers_in_and_out(probe):
    assert probe.add(2, 40) == 42
    assert probe.half(3.0) == 1.5
    assert probe.is_even(10) is True and probe.is_even(7) is False


class Seven:
    def __index__(self):
        return 7


class Half:
    def __float__(self):
        return 0.5


def test_number_arguments_are_taken_as_cffi_takes_them(probe):
    """The isolated proxy checks numbers in the host: it must accept and refuse what cffi does."""
    assert probe.add(True, 1) == 2 and probe.half(Half()) == 0.25 and probe.half(1) == 0.5
    with pytest.raises(TypeError, match="an integer is required"):
        probe.add(Seven(), 1)
    with pytest.raises(TypeError, match="an integer is required"):
        probe.add(1.5, 1)
    with pytest.raises(TypeError, match="must be real number, not str"):
        probe.half("1")
    with pytest.raises(OverflowError, match="does not fit 'int'"):
        probe.add(2 ** 40, 1)


def test_bad_arguments_are_python_errors_before_any_call(probe, plugin):
    before = plugin.lookup("releases", "long")[0]
    with pytest.raises(ValueError, match="NUL character"):
        probe.output(0, "a\x00b")
    with pytest.raises(TypeError, match="must be str, not bytes"):
        probe.output(0, b"abc")
    with pytest.raises(TypeError, match="must be bytes or str, not int"):
        probe.reverse(3)
    with pytest.raises(TypeError):
        probe.add("1", 2)
    assert plugin.lookup("releases", "long")[0] == before


# ---------------------------------------------------------------------------
# Status codes and broken plugins: clear errors, not crashes
# ---------------------------------------------------------------------------
def test_error_status_carries_the_message(probe):
    with pytest.raises(minildr.PluginCallError, match=r"status\(\) failed: disk full") as err:
        probe.status(1, "disk full")
    assert err.value.plugin == "probe" and err.value.plugin_message == "disk full"


def test_error_without_a_message_says_so(probe):
    with pytest.raises(minildr.PluginCallError, match="the plugin gave no message"):
        probe.status(1, "")


def test_unsupported_is_not_implemented(probe):
    with pytest.raises(minildr.NotImplementedByPlugin, match="does not support status") as err:
        probe.status(2, "only decoding")
    assert isinstance(err.value, NotImplementedError) and "only decoding" in str(err.value)


@pytest.mark.parametrize("code", [3, 99, -1])
def test_unknown_status_is_a_contract_violation(probe, code):
    with pytest.raises(minildr.ContractViolation, match=f"returned status {code}, which "
                                                       "minildr.h does not define") as err:
        probe.status(code, "whatever")
    assert isinstance(err.value, minildr.PluginCallError)


def test_null_where_a_string_is_required(probe):
    with pytest.raises(minildr.ContractViolation, match="returned NULL where a string is required"):
        probe.text(1)
    with pytest.raises(minildr.ContractViolation, match="left its string output NULL"):
        probe.output(1, "x")
    with pytest.raises(minildr.ContractViolation, match="'kind' is NULL"):
        probe.items(1)
    with pytest.raises(minildr.ContractViolation, match="NULL array and a non-zero count"):
        probe.items(2)


def test_violations_still_release_what_was_handed_out(probe, plugin):
    with pytest.raises(minildr.ContractViolation, match="not UTF-8"):
        probe.output(2, "x")
    with pytest.raises(minildr.ContractViolation):
        probe.items(1)
    assert live(plugin) == 0


def test_text_that_is_not_utf8(probe):
    with pytest.raises(minildr.ContractViolation, match="text that is not UTF-8"):
        probe.text(2)


def test_null_method_is_absent(probe):
    assert not probe.has("optional") and probe.has("add")
    with pytest.raises(minildr.NotImplementedByPlugin, match="optional"):
        probe.optional()


# ---------------------------------------------------------------------------
# Lookup: the vtable must be the contract's
# ---------------------------------------------------------------------------
def test_struct_size_not_set_is_refused(plugin):
    with pytest.raises(minildr.ContractMismatch, match=r"struct_size = 0, but its own probe_t "
                                                       r"is \d+ bytes"):
        plugin.lookup("unsized", PROBE)


def test_outputs_without_release_are_refused(plugin):
    with pytest.raises(minildr.ContractMismatch, match="leaves 'release' NULL.*output"):
        plugin.lookup("no_release", PROBE)


def test_a_function_is_not_a_vtable(plugin):
    with pytest.raises(minildr.ContractMismatch, match="'not_a_vtable' is a function"):
        plugin.lookup("not_a_vtable", PROBE)


def test_a_variable_of_another_type_is_refused(plugin):
    with pytest.raises(minildr.ContractMismatch, match=r"'live' is a 'long', a type contract "
                                                       r"probe does not declare.*probe_t"):
        plugin.lookup("live", PROBE)


def test_vtable_of_another_contract_is_refused(plugin):
    with pytest.raises(minildr.ContractMismatch, match="'const probe_t'.*contract command does "
                                                       "not declare.*command_t"):
        plugin.lookup("probe", COMMAND)


IMPOSTOR_H = """
#include <stddef.h>
typedef struct command {
    size_t struct_size;
    void (*release)(void *memory);
    int (*name)(void);
} command_t;
extern const command_t impostor;
"""
IMPOSTOR_C = """
static int name(void) { return 7; }
const command_t impostor = { sizeof(command_t), 0, name };
"""


def test_same_type_name_other_fields_names_the_field(tmp_path, isolate):
    """Built without the contract (so no hash to compare), caught by the layout check."""
    path = write_plugin(tmp_path, "impostor", IMPOSTOR_C, IMPOSTOR_H, once=True)
    with minildr.open(path, contracts=[COMMAND], isolate=isolate) as plugin:
        with pytest.raises(minildr.ContractMismatch) as err:
            plugin.lookup("impostor", COMMAND)
    message = str(err.value)
    assert "field 3 of command_t is 'const char *(*name)(void)' in the host's contract but " \
           "'int (*name)(void)' in the plugin" in message
    assert os.fspath(path) in message and "command.h" in message


def test_proxy_keeps_the_plugin_mapped_after_close(probe_so):
    plugin = minildr.open(probe_so)
    p = plugin.lookup("probe", PROBE)
    plugin.close()
    assert p.add(1, 2) == 3                     # still mapped: no crash
    with pytest.raises(minildr.PluginClosed):
        plugin.lookup("probe", PROBE)
    del p
    gc.collect()


# ---------------------------------------------------------------------------
# The host's contract header must follow the conventions
# ---------------------------------------------------------------------------
def _contract(body: str) -> minildr.Contract:
    return minildr.Contract.from_header('#include "minildr.h"\n' + body, name="bad")


@pytest.mark.parametrize("body, message", [
    ("typedef struct v { size_t struct_size; minildr_status (*f)(int x); } v_t;",
     "takes 'minildr_error \\*err' as its last parameter"),
    ("typedef struct v { size_t struct_size; int (*f)(char **out); } v_t;",
     "outputs must return minildr_status"),
    ("typedef struct v { size_t struct_size; int (*f)(int *p[2]); } v_t;", "cannot"),
    ("typedef struct v { size_t struct_size; char *(*f)(void); } v_t;", "not 'char \\*'"),
    ("typedef struct v { size_t struct_size; int (*f)(int, ...); } v_t;", "variadic"),
    ("typedef struct v { size_t struct_size; int count; } v_t;", "only function pointers"),
    ("typedef struct v { size_t struct_size; int (*has)(void); } v_t;", "may not be called 'has'"),
])
def test_contract_that_breaks_the_conventions_is_refused(body, message):
    contract = _contract(body)
    with pytest.raises(proxies.ContractError, match=message):
        proxies.read_methods(contract, contract.declarations.struct("v_t"))


@pytest.mark.parametrize("text, message", [
    ('#include "other.h"\n', "must be self-contained"),
    ("#if X > 1\n#endif\n", "more than minildr reads"),
    ("#ifndef A\nint x;\n", "never closed"),
    ("#endif\n", "#endif without #if"),
])
def test_contract_header_preprocessing_refuses_what_it_cannot_follow(text, message):
    with pytest.raises(ValueError, match=message):
        minildr.Contract.from_header(text, name="bad").declarations


def test_contract_header_macros_and_conditions_are_followed():
    c = minildr.Contract.from_header(
        "#ifndef G\n#define G\n#define N 4\n#define F(x) x\n#ifdef NOPE\nint bad[;\n#else\n"
        "typedef struct r { char name[N]; } r_t;\n#endif\n#endif\n", name="ok")
    assert c.declarations.struct("r_t").fields[0].ctype == "char [4]"


def test_protocol_source_is_valid_python_naming_every_method():
    namespace: dict = {}
    exec(protocol_source(PROBE), namespace)
    methods = {n for n in vars(namespace["Probe"]) if not n.startswith("_")}
    assert methods == {"has", "text", "status", "output", "items", "reverse", "measure",
                       "nothing", "add", "half", "is_even", "optional"}
    assert namespace["ProbeItem"]._fields == ("id", "weight", "kind", "label")


def test_command_line_writes_the_protocols(tmp_path, capsys):
    from minildr import cli
    spec = f"{EXAMPLES / 'command' / 'command.h'}:command:1.1"
    assert cli.main(["protocol", spec]) == 0
    namespace: dict = {}
    exec(capsys.readouterr().out, namespace)
    assert {"name", "run", "help", "has"} <= set(vars(namespace["Command"]))
    out = tmp_path / "command_types.py"
    assert cli.main(["protocol", spec, "-o", str(out)]) == 0
    assert out.read_text() == protocol_source(COMMAND)
    assert cli.main(["protocol", str(tmp_path / "missing.h")]) == 2
    assert "cannot read the contract" in capsys.readouterr().err
