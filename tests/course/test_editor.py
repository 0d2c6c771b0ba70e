"""The editor example: a quoted-printable format, a whitespace linter and a broken plugin,
with real files, cross-checked against Python's own quopri module."""
from __future__ import annotations

import contextlib
import io
import os
import quopri
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minildr
from examples.editor import Editor, EditorError, FORMAT, LINTER, build_plugins
from examples.editor.__main__ import main as editor_main
from examples.editor.core import Diagnostic
from minildr.contracts.stubs import protocol_source

from helpers import ROOT, TESTS, build_once, fuzz_examples
from minildr.host import SUFFIX
from platforms import requires_isolation

DATA = TESTS / "data" / "editor"


@pytest.fixture(scope="module")
def plugins_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("editor-plugins")
    build_plugins(folder, build=build_once)
    return folder


@pytest.fixture(scope="module", params=[False, pytest.param(True, marks=requires_isolation)],
                ids=["in-process", "isolated"])
def isolate(request):
    """The format, the linter and the editor, in-process and each plugin in a worker process:
    every test below that uses them must pass both ways."""
    return request.param


@pytest.fixture(scope="module")
def loaded_editor(plugins_dir, isolate):
    """The editor with the folder's plugins, loaded once for the module each way (isolated:
    two workers for the module, not two per test). test_broken_plugin_is_reported_and_skipped
    loads its own, to see a load's report."""
    with Editor(isolate=isolate) as e:
        e.load_plugins(plugins_dir)
        yield e


@pytest.fixture
def editor(loaded_editor):
    """The module's editor, given back as it was loaded: a hook or format a test adds goes."""
    formats, hooks, skipped = (dict(loaded_editor.formats), list(loaded_editor.hooks),
                               list(loaded_editor.skipped))
    yield loaded_editor
    loaded_editor.formats.clear()
    loaded_editor.formats.update(formats)
    loaded_editor.hooks[:], loaded_editor.skipped[:] = hooks, skipped


@pytest.fixture(scope="module")
def qp(loaded_editor):
    """The quoted-printable format plugin's vtable, as the module's editor loaded it."""
    return loaded_editor.formats[".qp"]


@pytest.fixture(scope="module")
def opened_linter(loaded_editor):
    """The linter's vtable, as the module's editor loaded it."""
    return dict(loaded_editor.hooks)["whitespace"]


@pytest.fixture
def lint(opened_linter):
    yield opened_linter
    opened_linter.configure("max-line-length", "79")      # module state: put it back


# ---------------------------------------------------------------------------
# Quoted-printable, with real files
# ---------------------------------------------------------------------------
def test_decodes_a_real_letter(qp):
    assert qp.decode((DATA / "letter.qp").read_bytes()) == (DATA / "letter.txt").read_bytes()


def test_transport_whitespace_is_dropped_where_quopri_keeps_it(qp):
    """RFC 2045 rule 3: trailing whitespace on an encoded line was added in transport."""
    line = b'a=3Db+c   \n'
    assert qp.decode(line) == b"a=b+c\n"
    assert quopri.decodestring(line) == b"a=b+c   \n"


def test_encoded_letter_decodes_back_with_ours_and_with_quopri(qp):
    text = (DATA / "letter.txt").read_bytes()
    encoded = qp.encode(text)
    assert qp.decode(encoded) == text
    assert quopri.decodestring(encoded) == text
    for line in encoded.split(b"\n"):
        assert len(line) <= 76
        assert all(33 <= c <= 126 or c in b" \t" for c in line)
        assert not line.endswith((b" ", b"\t"))


def test_crlf_lines_are_kept(qp):
    assert qp.decode((DATA / "crlf.qp").read_bytes()) == b"first line\r\nsecond = soft break\r\nend"
    assert qp.encode(b"a \r\nb\r\n") == b"a=20\r\nb\r\n"
    assert qp.encode(b"lone\rcr") == b"lone=0Dcr"


@pytest.mark.parametrize("text, encoded", [
    (b"", b""),
    (b"a=b", b"a=3Db"),
    (b"space at end ", b"space at end=20"),
    (b"tab at end\t\n", b"tab at end=09\n"),
    (b"x" * 76, b"x" * 76),                                   # exactly fits
    (b"x" * 77, b"x" * 75 + b"=\n" + b"xx"),                  # one too many
    (b"\xc3\xa9" * 13, b"=C3=A9" * 12 + b"=C3=\n=A9"),        # 78 > 76: breaks between escapes
])
def test_encoding_edge_cases(qp, text, encoded):
    assert qp.encode(text) == encoded
    assert qp.decode(encoded) == text


@pytest.mark.parametrize("name, message", [
    ("bad-escape.qp", "line 2, column 14: '=' must be followed by two hex digits"),
    ("latin1.qp", "the decoded text is not UTF-8 (byte 4"),
    ("control.qp", "line 2, column 6: byte 0x07 may not appear"),
])
def test_bad_files_are_errors_with_a_place(qp, name, message):
    with pytest.raises(minildr.PluginCallError) as err:
        qp.decode((DATA / name).read_bytes())
    assert message in err.value.plugin_message and err.value.plugin == "qp"


@pytest.mark.fuzz
@settings(max_examples=fuzz_examples(50), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"),
               max_size=300))
def test_round_trip_any_text(qp, text):
    data = text.encode()
    encoded = qp.encode(data)
    assert qp.decode(encoded) == data
    assert quopri.decodestring(encoded) == data
    assert max(map(len, encoded.split(b"\n"))) <= 76


# ---------------------------------------------------------------------------
# The linter
# ---------------------------------------------------------------------------
MESSY = [(2, 1, "tab"), (2, 10, "trailing-whitespace"), (3, 80, "line-too-long"),
         (6, 18, "trailing-whitespace"), (7, 1, "trailing-whitespace"),
         (8, 20, "missing-final-newline")]


def test_diagnostics_of_a_real_file(lint):
    found = lint.lint((DATA / "messy.py.txt").read_text(encoding="utf-8"))
    assert sorted((d.line, d.column, d.rule) for d in found) == MESSY
    by_rule = {(d.line, d.rule): d.message for d in found}
    assert by_rule[(2, "trailing-whitespace")] == "3 whitespace character(s) at the end of the line"
    assert by_rule[(3, "line-too-long")] == "line is 81 characters long, more than 79"


def test_clean_and_empty_files_have_no_diagnostics(lint):
    assert lint.lint((DATA / "clean.txt").read_text()) == []
    assert lint.lint("") == []


def test_configure_is_the_1_1_method(lint):
    assert lint.has("configure")
    lint.configure("max-line-length", "10")
    assert [(d.line, d.column) for d in lint.lint("0123456789\n0123456789x\n")] == [(2, 11)]
    with pytest.raises(minildr.PluginCallError, match="unknown option 'colour'"):
        lint.configure("colour", "red")
    with pytest.raises(minildr.PluginCallError, match="whole number from 1 to 100000, not '-3'"):
        lint.configure("max-line-length", "-3")


# ---------------------------------------------------------------------------
# The editor
# ---------------------------------------------------------------------------
def test_broken_plugin_is_reported_and_skipped(plugins_dir, isolate):
    with Editor(isolate=isolate) as editor:
        report = editor.load_plugins(plugins_dir)
        assert sorted(p.name for p in report.loaded) == ["lint", "qp"]
        [(path, error)] = report.failed
        assert path.name == f"broken{SUFFIX}" and isinstance(error, minildr.DependencyMismatch)
        assert "contract format" in str(error) and "same version label" in str(error)
        assert [name for name, _ in editor.skipped] == [f"broken{SUFFIX}"]
        assert set(editor.formats) == {".qp", ".qpt"}
        assert [name for name, _ in editor.hooks] == ["whitespace"]
        workers = {getattr(p, "worker_pid", os.getpid()) for p in report.loaded}
        assert (os.getpid() not in workers and len(workers) == 2) == bool(isolate)


def test_open_edit_save_round_trip(editor, tmp_path):
    path = Path(shutil.copy(DATA / "letter.qp", tmp_path / "letter.qp"))
    buffer = editor.open(path)
    assert buffer.format == "quoted-printable"
    assert buffer.text == (DATA / "letter.txt").read_text(encoding="utf-8")
    buffer.replace(buffer.text + "P.S. ça va ?\n")
    diagnostics = editor.save(buffer)
    assert [(d.line, d.column, d.rule) for d in diagnostics] == [
        (4, 80, "line-too-long"), (5, 20, "trailing-whitespace"), (6, 4, "tab"),
        (6, 33, "trailing-whitespace"), (9, 3, "trailing-whitespace")]
    assert all(isinstance(d, Diagnostic) and d.source == "whitespace" for d in diagnostics)
    again = editor.open(path)
    assert again.text.endswith("P.S. ça va ?\n") and again.text == buffer.text
    assert max(map(len, path.read_bytes().split(b"\n"))) <= 76


def test_save_reports_every_rule(editor, tmp_path):
    buffer = editor.open(DATA / "messy.py.txt")
    assert buffer.format is None
    diagnostics = editor.save(buffer, tmp_path / "messy.txt")
    assert [(d.line, d.column, d.rule) for d in diagnostics] == MESSY
    assert (tmp_path / "messy.txt").read_bytes() == (DATA / "messy.py.txt").read_bytes()


def test_a_bad_file_is_an_editor_error_and_the_editor_goes_on(editor):
    with pytest.raises(EditorError, match="bad-escape.qp: not valid quoted-printable: line 2"):
        editor.open(DATA / "bad-escape.qp")
    with pytest.raises(EditorError, match="cannot open"):
        editor.open(DATA / "missing.qp")
    assert editor.open(DATA / "clean.txt").text == "all good\n\nhere\n"


class FailingLinter:
    def name(self) -> str:
        return "flaky"

    def lint(self, text: str):
        raise minildr.PluginCallError("flaky.so", "plugin flaky: lint() failed: boom",
                                      plugin="flaky", method="lint", plugin_message="boom")


def test_a_failing_hook_is_a_diagnostic_not_a_crash(editor, tmp_path):
    editor.add_hook(FailingLinter())
    buffer = editor.open(DATA / "clean.txt")
    [d] = editor.save(buffer, tmp_path / "clean.txt")
    assert (d.rule, d.source) == ("linter-failed", "flaky") and "boom" in d.message


@pytest.mark.parametrize("options", [[], pytest.param(["--isolate"], marks=requires_isolation),
                                     pytest.param(["--isolate", "--timeout", "5"],
                                                  marks=requires_isolation)])
def test_command_line(plugins_dir, tmp_path, options):
    """Without options, the real `python -m examples.editor`; with them, its main() run in
    this process (a Python and its imports less, ~0.3 s of CPU each)."""
    path = Path(shutil.copy(DATA / "letter.qp", tmp_path / "note.qp"))
    argv = [str(path), "--plugins", str(plugins_dir), "--append", "new line  ", *options]
    if options:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = editor_main(argv)
        done = subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
    else:
        done = subprocess.run([sys.executable, "-m", "examples.editor", *argv],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert f"broken{SUFFIX}  DependencyMismatch" in out and "2 loaded, 1 failed" in out
    assert "Dear Zoë," in out and "(quoted-printable, 10 lines)" in out
    assert "note.qp:11:9: trailing-whitespace: 2 whitespace character(s)" in out
    assert "--- saved note.qp: 6 diagnostic(s) ---" in out
    assert ("isolated: 2 plugin(s), each in its own worker process" in out) == bool(options)
    assert editor_text(plugins_dir, path).endswith("new line  \n")


def editor_text(plugins_dir, path):
    with Editor() as e:
        e.load_plugins(plugins_dir)
        return e.open(path).text


def test_protocols_module_is_generated_from_the_headers():
    committed = (ROOT / "examples" / "editor" / "protocols.py").read_text()
    assert committed == protocol_source(FORMAT, LINTER), \
        "regenerate examples/editor/protocols.py with minildr.contracts.stubs.protocol_source(FORMAT, LINTER)"


@pytest.mark.fuzz
@settings(max_examples=fuzz_examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200) | st.text(alphabet="=AF09az \t\r\n\x00\xff", max_size=60).map(
    lambda s: s.encode("latin-1")))
def test_decoding_any_bytes_is_text_or_an_error_value(qp, data):
    try:
        text = qp.decode(data)
    except minildr.PluginCallError as exc:
        assert exc.plugin_message.startswith(("line ", "the decoded text is not UTF-8"))
    else:
        text.decode("utf-8")
        assert len(text) <= len(data)


@pytest.mark.fuzz
@settings(max_examples=fuzz_examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from(list("ab é\t\r\n")), max_size=120))
def test_diagnostics_point_into_the_text(lint, text):
    lines = text.split("\n")
    for d in lint.lint(text):
        assert 1 <= d.line <= len(lines)
        line = lines[d.line - 1]
        if d.line < len(lines) and line.endswith("\r"):
            line = line[:-1]
        if d.rule == "line-too-long":
            assert len(line) > 79 and d.column == 80
        elif d.rule == "missing-final-newline":
            assert d.line == len(lines) and d.column == len(line) + 1
        elif d.rule == "tab":
            assert line[d.column - 1] == "\t" and "\t" not in line[:d.column - 1]
        else:
            assert d.rule == "trailing-whitespace"
            assert line[d.column - 1:].strip(" \t") == "" and line[d.column - 2:d.column - 1] \
                not in (" ", "\t")
