"""Contract methods through an isolated plugin, end to end: the same results and errors as
in-process, crashes and hangs inside a method, a worker that lies, errors across the pipe."""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minildr
from minildr import errors
from minildr.isolation import contracts as remote, marshal, protocol as isolate
from examples.editor import Editor, EditorError, FORMAT, LINTER, build_plugins

from helpers import EXAMPLES, build_once, fuzz_examples, run_in_worker_first, write_plugin
from platforms import requires_isolation

COMMAND = minildr.Contract.from_header(EXAMPLES / "command" / "command.h", name="command",
                                       version="1.1")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("isocontract")
    folder = EXAMPLES / "command"
    paths = build_plugins(out / "editor", build=build_once)
    paths["upper"] = build_once([folder / "upper.c"], name="upper",
                                exports=folder / "upper.h", contracts=[COMMAND], out_dir=out)
    return paths


@pytest.fixture(scope="module")
def both(built):
    """Each example vtable twice: in-process and isolated, opened once for the module."""
    opened, pairs = [], {}
    for key, path, contract, export in [("upper", built["upper"], COMMAND, "upper"),
                                        ("qp", built["qp"], FORMAT, "quoted_printable"),
                                        ("lint", built["lint"], LINTER, "whitespace")]:
        local = minildr.open(path, contracts=[contract])
        isolated = minildr.open(path, contracts=[contract], isolate=True)
        opened += [local, isolated]
        pairs[key] = (local.lookup(export, contract), isolated.lookup(export, contract))
    yield pairs
    for plugin in opened:
        plugin.close()


def outcome(fn, *args):
    """What a call gives: its value with the exact types inside, or its error's whole state."""
    try:
        value = fn(*args)
    except minildr.PluginError as exc:
        return ("raised", type(exc), str(exc), vars(exc))
    return ("value", value, typed(value))


def typed(value):
    if isinstance(value, (list, tuple)):
        return (type(value), [typed(v) for v in value])
    return type(value)


# ---------------------------------------------------------------------------
# The same answers, the same errors
# ---------------------------------------------------------------------------
TEXT = st.text(alphabet=st.sampled_from(list("ab=é \t\r\n\x01✓")), max_size=120)


@requires_isolation
@pytest.mark.fuzz
@settings(max_examples=fuzz_examples(50), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT, data=st.binary(max_size=120))
def test_in_process_and_isolated_agree_on_every_call(both, text, data):
    for key, calls in [("upper", [("run", text), ("name",), ("help",)]),
                       ("qp", [("decode", data), ("decode", text.encode()), ("encode", data),
                               ("name",), ("suffixes",)]),
                       ("lint", [("lint", text), ("name",)])]:
        local, isolated = both[key]
        for method, *args in calls:
            assert outcome(getattr(isolated, method), *args) == \
                outcome(getattr(local, method), *args), (key, method, args)


@requires_isolation
def test_records_are_the_in_process_class(both):
    local, isolated = both["lint"]
    mine, theirs = local.lint("x \n\tz"), isolated.lint("x \n\tz")
    assert mine == theirs and len(theirs) == 3
    assert type(theirs[0]) is type(mine[0]) and type(theirs[0]).__name__ == "LintDiagnostic"
    assert pickle.loads(pickle.dumps(theirs)) == theirs


@requires_isolation
def test_the_isolated_proxy_has_the_proxy_api(both):
    import inspect
    local, isolated = both["lint"]
    assert isinstance(isolated, minildr.ContractProxy)
    assert isolated.methods == local.methods == ("name", "lint", "configure")
    assert isolated.contract is local.contract is LINTER
    for m in local.methods:
        assert isolated.has(m) == local.has(m)
        assert inspect.signature(getattr(isolated, m)) == inspect.signature(getattr(local, m))
        assert getattr(isolated, m).__doc__ == getattr(local, m).__doc__
    with pytest.raises(AttributeError, match="has no method 'fly'"):
        isolated.has("fly")
    with pytest.raises(AttributeError, match="has no method 'fly'"):
        isolated.call("fly")
    with pytest.raises(AttributeError):
        isolated.fly
    with pytest.raises(TypeError, match="lint"):
        isolated.lint()                          # the argument count, checked in the host
    assert isolated.call("name") == "whitespace"
    assert "worker pid" in repr(isolated) and "linter 1.1" in repr(isolated)


@requires_isolation
@pytest.mark.parametrize("method, args, error, fragment", [
    ("run", (b"x",), TypeError, "argument 'line' must be str, not bytes"),
    ("run", ("a\x00b",), ValueError, "NUL character"),
    ("run", (None,), TypeError, "must be str, not NoneType"),
])
def test_bad_arguments_fail_in_the_host_as_in_process(both, method, args, error, fragment):
    local, isolated = both["upper"]
    for proxy in (local, isolated):
        with pytest.raises(error, match=fragment):
            getattr(proxy, method)(*args)
    assert isolated.run("fine") == "FINE"


@requires_isolation
def test_bytes_arguments_accept_what_in_process_accepts(both):
    local, isolated = both["qp"]
    for value in (b"a=3Db", bytearray(b"a=3Db"), memoryview(b"a=3Db"), "a=3Db"):
        assert isolated.decode(value) == local.decode(value) == b"a=b"
    with pytest.raises(TypeError, match="must be bytes or str, not int"):
        isolated.decode(3)


@requires_isolation
def test_a_closed_isolated_plugin_says_so(built):
    plugin = minildr.open(built["upper"], contracts=[COMMAND], isolate=True)
    cmd = plugin.lookup("upper", COMMAND)
    plugin.close()
    with pytest.raises(minildr.PluginClosed, match="open the plugin again"):
        cmd.run("x")
    assert cmd.has("run")                        # answered by the host: no worker needed


# ---------------------------------------------------------------------------
# A method that crashes or hangs
# ---------------------------------------------------------------------------
CRASH_C = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static void release(void *memory) { free(memory); }
static const char *name(void) { return "crashcmd"; }
static minildr_status run(const char *line, char **output, minildr_error *err)
{
    if (strcmp(line, "segv") == 0) {
        fprintf(stderr, "crashcmd: about to read address 0\n");
        fflush(stderr);
        volatile int *nowhere = 0;
        return *nowhere;
    }
    if (strcmp(line, "abort") == 0) abort();
    if (strcmp(line, "exit") == 0) exit(3);
    if (strcmp(line, "hang") == 0) for (;;) pause();
    *output = strdup(line);
    return *output ? MINILDR_OK : minildr_fail(err, "out of memory");
}
const command_t crashcmd = { .struct_size = sizeof(command_t), .release = release,
                             .name = name, .run = run };
"""


@pytest.fixture(scope="module")
def crashcmd(tmp_path_factory):
    return write_plugin(tmp_path_factory.mktemp("crashcmd"), "crashcmd", CRASH_C,
                        "extern const command_t crashcmd;\n", contracts=[COMMAND])


@requires_isolation
@pytest.mark.parametrize("line, signal, exit_code", [("segv", "SIGSEGV", None),
                                                    ("abort", "SIGABRT", None),
                                                    ("exit", None, 3)])
def test_a_method_that_crashes_is_plugin_crashed_and_the_host_goes_on(crashcmd, both, line,
                                                                     signal, exit_code):
    other = both["upper"][1]            # another isolated plugin's proxy: the module's worker
    plugin = minildr.open(crashcmd, contracts=[COMMAND], isolate=True)
    cmd = plugin.lookup("crashcmd", COMMAND)
    assert cmd.run("fine") == "fine" and not cmd.has("help")
    with pytest.raises(minildr.PluginCrashed) as err:
        cmd.run(line)
    e = err.value
    assert (e.signal, e.exit_code) == (signal, exit_code)
    assert "during command_t.run() of plugin crashcmd" in str(e) and os.fspath(crashcmd) in str(e)
    if line == "segv":
        assert e.stderr == ["crashcmd: about to read address 0"]
    with pytest.raises(minildr.PluginCrashed):         # the worker stays gone
        cmd.name()
    assert plugin.closed and not isinstance(e, minildr.PluginProtocolError)
    assert other.run("alive") == "ALIVE"                                # another plugin
    with minildr.open(crashcmd, contracts=[COMMAND], isolate=True) as again:   # reopened
        assert again.lookup("crashcmd", COMMAND).run("back") == "back"
    plugin.close()


@requires_isolation
def test_a_method_that_hangs_times_out(crashcmd):
    # The open and the lookup under the default timeout: on a loaded machine the worker's
    # first contract lookup (its first C parse) took longer than 0.5 s and timed out
    # instead of the hanging call. Only the call that hangs gets 0.5 s.
    with minildr.open(crashcmd, contracts=[COMMAND], isolate=True) as plugin:
        cmd = plugin.lookup("crashcmd", COMMAND)
        assert cmd.run("fine") == "fine"
        plugin._worker.timeout = 0.5
        with pytest.raises(minildr.PluginTimeout, match=r"no answer within 0\.5 s during "
                                                        "command_t.run"):
            cmd.run("hang")


CRASHLINT_C = r"""
#include <stdlib.h>
#include <string.h>
static void release(void *memory) { free(memory); }
static const char *name(void) { return "crashlint"; }
static minildr_status lint(const char *text, lint_diagnostic **items, size_t *count,
                           minildr_error *err)
{
    if (strstr(text, "CRASH") != NULL) {
        volatile int *nowhere = 0;
        return *nowhere;
    }
    *items = NULL;
    *count = 0;
    return MINILDR_OK;
}
const linter_t crashlint = { .struct_size = sizeof(linter_t), .release = release,
                             .name = name, .lint = lint };
"""


CRASHFMT_C = r"""
#include <stdlib.h>
#include <string.h>
static void release(void *memory) { free(memory); }
static const char *name(void) { return "crashfmt"; }
static const char *suffixes(void) { return ".crash"; }
static minildr_status copy(const void *data, size_t size, minildr_bytes *out, minildr_error *err)
{
    if (size >= 5 && memcmp(data, "CRASH", 5) == 0) {
        volatile int *nowhere = 0;
        return *nowhere;
    }
    out->data = malloc(size + 1);
    memcpy(out->data, data, size);
    out->size = size;
    return MINILDR_OK;
}
const file_format_t crashfmt = { .struct_size = sizeof(file_format_t), .release = release,
                                 .name = name, .suffixes = suffixes, .decode = copy,
                                 .encode = copy };
"""


@requires_isolation
def test_isolated_editor_survives_a_crashing_linter_and_format(built, tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(built["qp"], folder)
    shutil.copy(built["lint"], folder)
    shutil.copy(write_plugin(tmp_path, "crashlint", CRASHLINT_C,
                             "extern const linter_t crashlint;\n", contracts=[LINTER]), folder)
    shutil.copy(write_plugin(tmp_path, "crashfmt", CRASHFMT_C,
                             "extern const file_format_t crashfmt;\n", contracts=[FORMAT]), folder)
    (tmp_path / "ok.crash").write_text("fine\n")
    (tmp_path / "bad.crash").write_text("CRASH\n")
    with Editor(isolate=True) as editor:
        editor.load_plugins(folder)
        assert sorted(name for name, _ in editor.hooks) == ["crashlint", "whitespace"]
        assert editor.open(tmp_path / "ok.crash").text == "fine\n"
        with pytest.raises(EditorError, match="bad.crash: its format plugin failed: .*SIGSEGV"):
            editor.open(tmp_path / "bad.crash")
        with pytest.raises(EditorError, match="ok.crash: its format plugin failed"):
            editor.open(tmp_path / "ok.crash")          # that worker is gone: still an error
        buffer = editor.open(Path(shutil.copy(EXAMPLES.parent / "tests" / "data" / "editor"
                                              / "letter.qp", tmp_path / "letter.qp")))
        buffer.replace("fine\nCRASH here \n")
        found = editor.save(buffer)
        failed = [d for d in found if d.rule == "linter-failed"]
        assert len(failed) == 1 and failed[0].source == "crashlint"
        assert "SIGSEGV" in failed[0].message and "lint()" in failed[0].message
        assert [(d.line, d.rule) for d in found if d.source == "whitespace"] == \
            [(2, "trailing-whitespace")]                   # the other linter still ran
        assert editor.open(buffer.path).text == "fine\nCRASH here \n"   # format still works
        with pytest.raises(EditorError, match="copy.crash: its format plugin failed"):
            editor.save(buffer, tmp_path / "copy.crash")
        assert not (tmp_path / "copy.crash").exists()


# ---------------------------------------------------------------------------
# A worker that lies: every reply is checked against the host's contract
# ---------------------------------------------------------------------------
# Run by the worker's Python at start (helpers.run_in_worker_first): every contract method's
# result (or, with MINILDR_TEST_LIE_SEQ=N, the Nth reply) is replaced, on the
# wire, by the JSON text in the file MINILDR_TEST_LIE.
SITECUSTOMIZE = '''
import os
if os.environ.get("MINILDR_TEST_LIE"):
    from minildr.isolation import protocol as isolate
    with open(os.environ["MINILDR_TEST_LIE"]) as f:
        LIE = f.read()
    SEQ = int(os.environ.get("MINILDR_TEST_LIE_SEQ", "0"))
    real_frame, SENTINEL = isolate.frame, "\\0lie"
    def encode_value(value):
        return SENTINEL
    def frame(message):
        if message[0] == "ok" and (message[2] == SENTINEL or message[1] == SEQ):
            payload = ('["ok",%d,%s]' % (message[1], LIE)).encode()
            return isolate.HEADER.pack(isolate.MAGIC, len(payload)) + payload
        return real_frame(message)
    isolate.encode_value, isolate.frame = encode_value, frame
'''


def record(values, name="LintDiagnostic", fields=("line", "column", "rule", "message")):
    return {"record": name, "fields": list(fields), "values": values}


LIES = [
    ("upper", '7', "a str"),
    ("upper", 'null', "a str"),
    ("upper", '"a\\u0000b"', "a str"),
    ("upper", '"\\ud800"', "UTF-8 text"),
    ("upper", '{"bytes": "x"}', "a str"),
    ("upper", '["A"]', "a str"),
    ("qp", '"text"', "bytes"),
    ("qp", '{"bytes": "\\u0100"}', "bytes"),
    ("qp", '{"bytes": "x", "more": 1}', "bytes"),
    ("lint", '"not a list"', "a list of LintDiagnostic records"),
    ("lint", json.dumps([record([1, 1, "r", "m" * 160])]), "shorter than its char[160]"),
    ("lint", json.dumps([record([-1, 1, "r", "m"])]), "an int that fits uint32_t"),
    ("lint", json.dumps([record([2 ** 32, 1, "r", "m"])]), "an int that fits uint32_t"),
    ("lint", json.dumps([record([1.0, 1, "r", "m"])]), "an int that fits uint32_t"),
    ("lint", json.dumps([record([1, 1, 5, "m"])]), "a str"),
    ("lint", json.dumps([record([1, 1, "r"])]), "a LintDiagnostic record"),
    ("lint", json.dumps([record([1, 1, "r", "m"], name="Other")]), "a LintDiagnostic record"),
    ("lint", json.dumps([record([1, 1, "r", "m"], fields=("a", "b", "c", "d"))]),
     "a LintDiagnostic record"),
    ("lint", "[" * 50_000 + "]" * 50_000, "not JSON"),
]
CALLS = {"upper": (COMMAND, "upper", "run", "x"), "qp": (FORMAT, "quoted_printable", "decode", b"x"),
         "lint": (LINTER, "whitespace", "lint", "x")}


@pytest.fixture
def liar(tmp_path, monkeypatch):
    def lie(text, seq=0):
        (tmp_path / "lie.json").write_text(text)
        settings = {"MINILDR_TEST_LIE": str(tmp_path / "lie.json"),
                    "MINILDR_TEST_LIE_SEQ": str(seq)}
        run_in_worker_first(monkeypatch, f"import os; os.environ.update({settings!r})\n"
                            + SITECUSTOMIZE)
    return lie


@requires_isolation
@pytest.mark.parametrize("key, lie, fragment", LIES)
def test_a_reply_the_contract_does_not_allow_stops_the_worker(built, liar, key, lie, fragment):
    contract, export, method, argument = CALLS[key]
    liar(lie)
    with minildr.open(built[key], contracts=[contract], isolate=True) as plugin:
        proxy = plugin.lookup(export, contract)
        with pytest.raises(minildr.PluginProtocolError) as err:
            getattr(proxy, method)(argument)
        assert fragment in str(err.value) and "was stopped" in str(err.value)
        assert plugin.closed
        with pytest.raises(minildr.PluginProtocolError):
            proxy.name()


@requires_isolation
@pytest.mark.parametrize("key, lie, expected", [
    ("upper", '"LIE"', "LIE"),                  # the shape is checked, not the truth
    ("lint", json.dumps([record([1, 2, "r", "m" * 159])]), [(1, 2, "r", "m" * 159)]),
    ("qp", '{"bytes": "\\u00ff"}', b"\xff"),
])
def test_a_reply_of_the_right_shape_is_accepted(built, liar, key, lie, expected):
    contract, export, method, argument = CALLS[key]
    liar(lie)
    with minildr.open(built[key], contracts=[contract], isolate=True) as plugin:
        assert getattr(plugin.lookup(export, contract), method)(argument) == expected


LOOKUP_SEQ = 3          # ready, open, then the lookup


@requires_isolation
@pytest.mark.parametrize("lie, wanted, fragment", [
    ('[0, ["name", "run"], []]', COMMAND, "where the contract has"),
    ('[0, ["name", "run", "help"], ["fly"]]', COMMAND, "not a subset"),
    ('"0"', "int64_t", "is not a number"),
    ('-4', None, "is not a number"),
])
def test_a_lookup_reply_is_checked(built, liar, lie, wanted, fragment):
    liar(lie, seq=LOOKUP_SEQ)
    name = "upper" if wanted is COMMAND else "live_outputs"
    with minildr.open(built["upper"], contracts=[COMMAND], isolate=True) as plugin:
        with pytest.raises(minildr.PluginProtocolError, match=fragment):
            plugin.lookup(name, wanted)
        assert plugin.closed


@pytest.mark.parametrize("reply, fragment", [
    ([0, ["name", "run"], []], "where the contract has"),
    ([0, ["name", "run", "help"], ["fly"]], "not a subset"),
    ([0, ["name", "run", "help"], ["run", "run"]], "not a subset"),
    (["0", ["name", "run", "help"], []], r"is not \[handle"),
    ([-1, ["name", "run", "help"], []], r"is not \[handle"),
    ({"handle": 0}, r"is not \[handle"),
])
def test_a_contract_lookup_reply_is_checked(reply, fragment):
    with pytest.raises(isolate.ProtocolViolation, match=fragment):
        remote._contract_reply(reply, ("name", "run", "help"))


# ---------------------------------------------------------------------------
# Errors across the pipe (JSON frames) and through pickle
# ---------------------------------------------------------------------------
def every_error():
    for name in errors.__all__:
        cls = getattr(errors, name)
        if issubclass(cls, errors.PluginCallError):
            yield cls("/p/x.so", f"plugin x: run() failed: {name}", plugin="x", method="run",
                      status=7, plugin_message="disk full")
        else:
            yield cls("/p/x.so", f"{name}: what to do")


def across(exc, path="/p/x.so"):
    """The error as the worker sends it and the host raises it."""
    reader = isolate.FrameReader()
    reader.feed(isolate.frame(isolate.error_reply(5, exc)))
    with pytest.raises(BaseException) as raised:
        isolate.read_reply(reader.next(), 5, path)
    return raised.value


@pytest.mark.parametrize("exc", list(every_error()), ids=lambda e: type(e).__name__)
def test_every_error_class_crosses_the_pipe_and_pickles(exc):
    for copy in (across(exc), pickle.loads(pickle.dumps(exc))):
        assert type(copy) is type(exc) and str(copy) == str(exc) and vars(copy) == vars(exc)


def test_python_errors_cross_as_themselves_and_others_as_runtime_error():
    for exc in (TypeError("t"), ValueError("v"), OverflowError("o"), AttributeError("a")):
        copy = across(exc)
        assert type(copy) is type(exc) and str(copy) == str(exc)
    copy = across(KeyError("k"))
    assert type(copy) is RuntimeError and "KeyError in the isolated plugin's worker" in str(copy)


def test_crash_details_survive_pickling():
    e = minildr.PluginCrashed("/p/x.so", "its worker was killed by SIGSEGV")
    e.signal, e.exit_code, e.stderr, e.pid = "SIGSEGV", None, ["last words"], 42
    assert vars(pickle.loads(pickle.dumps(e))) == vars(e)


DETAILS = {"plugin": "x", "method": "run", "status": 1, "plugin_message": "m"}


@pytest.mark.parametrize("reply", [
    ["error", 5, "PluginCallError", "text"],                                   # no details
    ["error", 5, "PluginCallError", "text", {**DETAILS, "status": "1"}],
    ["error", 5, "PluginCallError", "text", {**DETAILS, "extra": 1}],
    ["error", 5, "ContractViolation", "text", {k: v for k, v in DETAILS.items() if k != "method"}],
    ["error", 5, "NotImplementedByPlugin", "text",
     {**DETAILS, "plugin_message": "m" * (isolate.MAX_ERROR_TEXT + 1)}],
    ["error", 5, "PluginNotFound", "text", DETAILS],                          # details of what?
    ["error", 5, "TypeError", "x" * (isolate.MAX_ERROR_TEXT + 1)],
    ["error", 5, 3, "text"],
    ["error", 5, "TypeError", None],
])
def test_an_error_reply_that_does_not_add_up_is_a_violation(reply):
    with pytest.raises(isolate.ProtocolViolation):
        isolate.read_reply(reply, 5, "/p/x.so")


def test_json_nested_too_deep_is_not_a_frame():
    payload = b"[" * 100_000 + b"]" * 100_000
    reader = isolate.FrameReader()
    reader.feed(isolate.HEADER.pack(isolate.MAGIC, len(payload)) + payload)
    with pytest.raises(isolate.ProtocolViolation, match="not JSON"):
        reader.next()
