"""The compiler driver: commands per platform, the manifest as C, build errors, the CLI."""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

import minildr
from minildr import cli as minildr_cli, ctype, host, manifest
from minildr.formats import elf
from minildr.build import Compiler

# `minildr.build` is the function; the module it comes from:
builder = importlib.import_module("minildr.build")

from helpers import EXAMPLES, ROOT, build_example, run_python, write_plugin
from platforms import requires_elf, requires_linux, requires_posix

SUFFIX = minildr.SUFFIX
EXPORT_CHECK = requires_linux("minildr.build checks the exports against the ELF dynamic "
                              "symbol table, on Linux only")

GCC = Compiler("/usr/bin/gcc", "gcc", "gcc 12")
CLANG = Compiler("/usr/bin/clang", "clang", "clang 16")
MSVC = Compiler("C:/VS/cl.exe", "msvc", "MSVC cl")


# ---------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------
def command(compiler: Compiler, os_name: str) -> list:
    return builder.compile_command(
        compiler, os_name, [Path("a.c"), Path("b.c")], Path("out/p.so"),
        forced_includes=[Path("exports.h")], include_dirs=[Path("inc")],
        defines={"MINILDR_PLUGIN_NAME": '"p"'}, cflags=["-O3"], def_file=Path("p.def"))


@pytest.mark.parametrize("compiler, os_name, wanted, unwanted", [
    (GCC, "linux", ["-shared", "-fPIC", "-fvisibility=hidden"], ["-dynamiclib", "p.def"]),
    (CLANG, "darwin", ["-dynamiclib", "-fvisibility=hidden"], ["-shared", "p.def"]),
    (GCC, "windows", ["-shared", "-fvisibility=hidden", "p.def", "-Wl,--no-insert-timestamp",
                      "-Wl,--disable-auto-image-base"], ["-fPIC", "-dynamiclib"]),
    (MSVC, "windows", ["/LD", "/DEF:p.def", "/link", "/Brepro", "/Fe:" + str(Path("out/p.so"))],
     ["-shared", "-o"]),
])
def test_compile_command_flags(compiler, os_name, wanted, unwanted):
    cmd = command(compiler, os_name)
    assert cmd[0] == compiler.path
    assert set(wanted) <= set(cmd)
    assert not set(unwanted) & set(cmd)


@pytest.mark.parametrize("compiler, os_name", [(GCC, "linux"), (CLANG, "darwin"),
                                               (GCC, "windows")])
def test_gcc_style_command_order(compiler, os_name):
    cmd = command(compiler, os_name)
    include = cmd.index("-include")
    assert cmd[include + 1] == "exports.h"
    assert include < cmd.index("-Iinc") < cmd.index("-O3") < cmd.index("a.c") < cmd.index("b.c")
    assert cmd.index('-DMINILDR_PLUGIN_NAME="p"') < cmd.index("a.c")
    assert cmd[-2:] == ["-o", str(Path("out/p.so"))]


def test_msvc_command_order():
    cmd = command(MSVC, "windows")
    assert cmd.index("/FIexports.h") < cmd.index("a.c") < cmd.index("b.c")
    assert cmd.index("b.c") < cmd.index("/Fe:" + str(Path("out/p.so"))) < cmd.index("/link")
    assert cmd[-1] == "/DEF:p.def"


def test_preprocess_command_uses_fake_libc():
    cmd = builder.preprocess_command(GCC, Path("x.h"), [Path("inc")], ["-DX=1", "-O2"],
                                     [Path("c.h")])
    assert {"-E", "-nostdinc"} <= set(cmd)
    assert cmd[cmd.index("-nostdinc") + 1:cmd.index("-nostdinc") + 3] == ["-I",
                                                                        str(ctype.FAKE_LIBC)]
    assert cmd[cmd.index("-include") + 1] == "c.h"
    assert "-DX=1" in cmd and "-O2" not in cmd
    assert cmd[-1] == "x.h"


def test_preprocess_command_msvc():
    cmd = builder.preprocess_command(MSVC, Path("x.h"), [Path("inc")], ["/DX=1"],
                                     [Path("c.h")])
    assert {"/E", "/X", "/Iinc", "/FIc.h", "/DX=1"} <= set(cmd)
    assert cmd[cmd.index("/X") + 1:cmd.index("/X") + 3] == ["/I", str(ctype.FAKE_LIBC)]
    assert cmd[-1] == "x.h"
    # cl's /D cannot define a function-like macro: a forced include does it.
    assert not [arg for arg in cmd if arg.startswith("/D") and "(" in arg]
    assert cmd.index(f"/FI{ctype.FAKE_LIBC / '_msvc.h'}") < cmd.index("/FIc.h")


def test_msvc_keywords_header_takes_out_declspec(tmp_path):
    compiler = builder.find_compiler()
    if compiler.family == "msvc":
        pytest.skip("cl preprocesses with /E, not -E -P: this checks a gcc-style preprocessor")
    (tmp_path / "x.h").write_text("__declspec(dllexport) int f(void);\n")
    done = subprocess.run([compiler.path, "-E", "-P", "-include", str(ctype.FAKE_LIBC / "_msvc.h"),
                           str(tmp_path / "x.h")], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "int f(void);"


def test_def_file_lists_exports():
    text = builder.def_file_text("echo", ["name", "run", "calls"])
    assert text.splitlines() == ['LIBRARY "echo.dll"', "EXPORTS", "    name", "    run",
                                 "    calls"]


def test_def_file_marks_variables_data():
    text = builder.def_file_text("echo", ["name", "run", "calls"], data=["calls"])
    assert text.splitlines()[2:] == ["    name", "    run", "    calls DATA"]


def test_dylib_install_name_is_not_the_build_folder():
    """ld64 records -o's path as the dylib's name unless told: a temporary folder here."""
    cmd = builder.compile_command(CLANG, "darwin", [Path("a.c")], Path("/tmp/x/p.dylib"),
                                  forced_includes=[], include_dirs=[], defines={})
    assert "-Wl,-install_name,@rpath/p.dylib" in cmd
    assert not any("/tmp/x" in arg for arg in cmd[:-1])


def test_target_flags_reach_both_commands():
    cross = builder.Compiler("/usr/bin/clang", "clang", "clang 14",
                             target_flags=("-target", "arm64-apple-macos11"))
    compile_cmd = command(cross, "darwin")
    preprocess_cmd = builder.preprocess_command(cross, Path("x.h"), [Path("inc")])
    for cmd in (compile_cmd, preprocess_cmd):
        assert cmd[1:3] == ["-target", "arm64-apple-macos11"]


# ---------------------------------------------------------------------------
# The manifest, as C, compiled for real
# ---------------------------------------------------------------------------
PAYLOADS = [
    b'{"name":"plain"}',
    b'{"q":"say \\"hi\\"","b":"C:\\\\dir\\\\","t":"??= ??/ ??\' ??( ??) ??!"}',
    b'{"long":"' + b'\\\\' * 99 + b'\\"' + b"??=" * 60 + b'"}',    # escapes at chunk edges
]


def test_manifest_source_names_every_format_section():
    source = builder.manifest_source(b"{}")
    for section in ("__TEXT,__minildr", ".minildr", ".note.minildr"):
        assert f'"{section}"' in source


@requires_elf
@pytest.mark.parametrize("std", ["-std=gnu11", "-std=c11"])     # c11: trigraphs are on
@pytest.mark.parametrize("payload", PAYLOADS, ids=["plain", "quotes-backslashes", "long"])
def test_manifest_source_compiles_to_note(tmp_path, payload, std):
    (tmp_path / "m.c").write_text(builder.manifest_source(payload))
    done = subprocess.run(["cc", std, "-Wall", "-Werror", "-c", "m.c", "-o", "m.o"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    data = (tmp_path / "m.o").read_bytes()
    sh = elf.ElfFile(data, "m.o").section(".note.minildr")
    raw = data[sh.sh_offset:sh.sh_offset + sh.sh_size]
    assert manifest.parse_note(raw, "m.o") == payload
    with open(tmp_path / "m.o", "rb") as stream:
        assert ELFFile(stream).get_section_by_name(".note.minildr").data() == raw


# The manifest appended to the first C source: whatever that source leaves open, the
# note is compiled in as before, nothing else is exported, and an error stays the source's.
LEFT_OPEN = {
    "no-final-newline": "int f(void) { return 1; }",
    "backslash-comment": "int f(void) { return 1; }\n// a comment that goes on \\",
    "visibility-pushed": '#pragma GCC visibility push(default)\nint f(void) { return 1; }\n',
    "pack-1": "#pragma pack(1)\nint f(void) { return 1; }\n",
    "macros": "".join(f"#define {word} oops\n" for word in (
        "name", "desc", "type", "namesz", "descsz", "used", "section", "aligned",
        "MINILDR_MANIFEST_SECTION")) + "int f(void) { return 1; }\n",
}


@requires_elf
@pytest.mark.parametrize("ending", sorted(LEFT_OPEN))
def test_the_manifest_appended_to_a_source_is_compiled_whatever_the_source_leaves_open(
        tmp_path, ending):
    # A trailing backslash is a warning of its own (-Wcomment, or backslash-newline at end
    # of file without the appendix): no -Werror there.
    strict = [] if "backslash" in ending else ["-Werror"]
    path = write_plugin(tmp_path, "open", LEFT_OPEN[ending], "int f(void);\n",
                        cflags=["-Wall", "-Wextra", *strict])
    assert list(minildr.read_manifest(path).exports) == ["f"]
    f = elf.ElfFile(path.read_bytes(), path)
    assert {s.name for s in f.exported_symbols()} - builder._LINKER_SYMBOLS == {"f"}
    assert [n.name for n in f.notes()].count("minildr") == 1
    with minildr.open(path) as plugin:
        assert plugin.lookup("f", "int (void)")() == 1


def test_a_source_ending_in_an_unterminated_comment_still_fails_naming_it(tmp_path):
    """The appended note holds no comment: the source's open one runs to the end of the
    file, and the compiler says so at the source's line."""
    with pytest.raises(minildr.BuildError) as err:
        write_plugin(tmp_path, "cut", "int f(void) { return 1; }\n/* never closed\n",
                     "int f(void);\n")
    assert re.search(r"cut\.c:2:\d+: error: unterminated comment", str(err.value)), err.value


@requires_elf
def test_the_appended_manifest_is_the_note_manifest_source_makes(tmp_path):
    """Same bytes in .note.minildr from the appendix after C text as from the file of its own."""
    payload = PAYLOADS[1]
    notes = []
    for name, text in [("own.c", builder.manifest_source(payload)),
                       ("tail.c", LEFT_OPEN["macros"] + builder.manifest_appendix(payload))]:
        (tmp_path / name).write_text(text)
        done = subprocess.run(["cc", "-Wall", "-Werror", "-c", name, "-o", name + ".o"],
                              cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        data = (tmp_path / (name + ".o")).read_bytes()
        sh = elf.ElfFile(data, name).section(".note.minildr")
        notes.append(data[sh.sh_offset:sh.sh_offset + sh.sh_size])
    assert notes[0] == notes[1] and manifest.parse_note(notes[1], "tail.c.o") == payload


@pytest.mark.parametrize("compiler, sources, host", [
    (GCC, ["a.c", "b.c"], 0),
    (CLANG, ["a.S", "b.c"], 1),          # the first C source, not the first source
    (GCC, ["a.cpp", "b.S"], None),       # no C source: the manifest gets a file of its own
    (MSVC, ["a.c"], None),               # cl needs the external name /include: keeps
])
def test_the_manifest_goes_into_the_first_c_source(compiler, sources, host):
    assert builder.manifest_host([Path(s) for s in sources], compiler) == host


def test_suffixes():
    assert minildr.SUFFIX == {"linux": ".so", "darwin": ".dylib", "win32": ".dll"}[sys.platform]
    assert host.SUFFIXES == {"linux": ".so", "darwin": ".dylib", "windows": ".dll"}


# ---------------------------------------------------------------------------
# Finding a compiler
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("os_name, advice", [("linux", "apt"), ("darwin", "xcode-select"),
                                             ("windows", "Visual Studio")])
def test_no_compiler_says_how_to_install_one(tmp_path, os_name, advice):
    with pytest.raises(minildr.CompilerNotFound) as err:
        builder.find_compiler(os_name, environ={"PATH": str(tmp_path), "CC": ""})
    assert advice in str(err.value)
    assert "no C compiler found" in str(err.value)


def test_cc_pointing_nowhere_is_named(tmp_path):
    with pytest.raises(minildr.CompilerNotFound, match="/nonexistent/cc"):
        builder.find_compiler("linux", environ={"PATH": str(tmp_path), "CC": "/nonexistent/cc"})


def test_cc_is_used_when_set(tmp_path):
    cc = builder.find_compiler().path          # this machine's compiler, whatever its name
    assert builder.find_compiler("linux", environ={"PATH": str(tmp_path), "CC": cc}).path == cc


@pytest.mark.parametrize("program, family", [("clang-cl", "msvc"), ("clang", "clang"),
                                             ("gcc", "gcc")])
@requires_posix("the stand-in compilers are sh scripts, which Windows cannot start")
def test_clang_cl_takes_cl_command_lines(tmp_path, program, family):
    """clang-cl answers --version like clang, but wants cl's options (/LD, /Fe:)."""
    fake = tmp_path / program
    fake.write_text("#!/bin/sh\necho 'clang version 17.0.6'\n" if "clang" in program
                    else "#!/bin/sh\necho 'gcc (Debian 12.2.0-14) 12.2.0'\n")
    fake.chmod(0o755)
    found = builder._identify(str(fake))
    assert found.family == family
    assert found.version.startswith(("clang version", "gcc"))


def test_build_without_compiler_raises(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("CC", str(empty / "cc"))
    builder._identify.cache_clear()
    advice = builder.HOW_TO_GET_A_COMPILER[minildr.HOST.os]
    with pytest.raises(minildr.CompilerNotFound, match=re.escape(advice)):
        build_example("greet", tmp_path / "out")
    assert not (tmp_path / "out" / f"greet{SUFFIX}").exists()


# ---------------------------------------------------------------------------
# Real builds
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("plugin, export, kind, ctype_", [
    ("echo", "run", "function", "size_t (const char *, char *, size_t)"),
    ("echo", "name", "function", "const char *(void)"),
    ("echo", "calls", "data", "int"),
    ("greet", "greet", "function", "const char *(void)"),
])
def test_header_types_are_recorded(built, plugin, export, kind, ctype_):
    e = minildr.read_manifest(built[plugin]).exports[export]
    assert (e.kind, e.ctype) == (kind, ctype_)


def test_header_spelling_does_not_matter_to_lookup(tmp_path):
    path = write_plugin(tmp_path, "spell",
                        "long unsigned int twice(unsigned x) { return 2ul * x; }\n",
                        "long unsigned int twice(unsigned x);\n")
    assert minildr.read_manifest(path).exports["twice"].ctype == "unsigned long (unsigned int)"
    with minildr.open(path) as plugin:
        assert plugin.lookup("twice", "unsigned long int (unsigned int)")(21) == 42


@pytest.mark.parametrize("source, header, message", [
    ("long f(int x) { return x; }\n", "int f(int);\n", "conflicting types"),
    pytest.param("int f(int x) { return x; }\n", "int f(int);\nint g(void);\n",
                 "declares g but", marks=EXPORT_CHECK),
    ("int counter;\n", "int counter;\n", "extern int counter;"),
    pytest.param("int f(int x) { return x; }\n"
                 '__attribute__((visibility("default"))) int helper(void) { return 1; }\n',
                 "int f(int);\n", "also exports helper", marks=EXPORT_CHECK),
], ids=["conflict", "undefined", "not-extern", "undeclared-export"])
def test_bad_plugin_is_a_build_error(tmp_path, source, header, message):
    with pytest.raises(minildr.BuildError) as err:
        write_plugin(tmp_path, "bad", source, header)
    assert message in str(err.value)
    assert not (tmp_path / "out" / f"bad{SUFFIX}").exists()


def test_syntax_error_shows_compiler_output(tmp_path):
    with pytest.raises(minildr.BuildError) as err:
        write_plugin(tmp_path, "syn", "int f(int x)\n{\n    return x\n}\n", "int f(int);\n")
    text = str(err.value)
    assert "the C compiler failed" in text
    assert re.search(r"syn\.c:[34]:\d+: error", text), text


def test_missing_source_is_named(tmp_path):
    with pytest.raises(minildr.BuildError, match="source file not found") as err:
        minildr.build([tmp_path / "nope.c"], name="x", exports=EXAMPLES / "greet/greet.h")
    assert str(tmp_path / "nope.c") in str(err.value)


def test_missing_header_is_named(tmp_path):
    with pytest.raises(minildr.BuildError, match="exports header not found") as err:
        minildr.build([EXAMPLES / "greet/greet.c"], name="x", exports=tmp_path / "nope.h",
                      out_dir=tmp_path)
    assert str(tmp_path / "nope.h") in str(err.value)


@pytest.mark.parametrize("name", ["a/b", "", "../x", "a b"])
def test_bad_plugin_name(tmp_path, name):
    with pytest.raises(minildr.BuildError, match="plugin names"):
        minildr.build([EXAMPLES / "greet/greet.c"], name=name,
                      exports=EXAMPLES / "greet/greet.h", out_dir=tmp_path)


@requires_posix("replaces a file another handle has open; Windows refuses while it is in use")
def test_rebuild_replaces_file_atomically(tmp_path):
    first = build_example("greet", tmp_path, version="1.0")
    before = first.read_bytes()
    with open(first, "rb") as old:                  # a reader of the old file...
        inode = os.fstat(old.fileno()).st_ino
        second = build_example("greet", tmp_path, version="2.0")
        assert old.read() == before                 # ...still sees the old bytes, whole
    assert second == first
    assert os.stat(second).st_ino != inode
    assert minildr.read_manifest(second).version == "2.0"
    assert [p.name for p in tmp_path.iterdir()] == [f"greet{SUFFIX}"]   # no temporary left


def test_plugin_sees_its_name_and_version(tmp_path):
    source = ("const char *plugin_name(void) { return MINILDR_PLUGIN_NAME; }\n"
              "const char *plugin_version(void) { return MINILDR_PLUGIN_VERSION; }\n")
    header = "const char *plugin_name(void);\nconst char *plugin_version(void);\n"
    path = write_plugin(tmp_path, "named", source, header, version="3.1.4-rc1")
    with minildr.open(path) as plugin:
        assert minildr.ffi.string(plugin.lookup("plugin_name", "const char *(void)")()) \
            == b"named"
        assert minildr.ffi.string(plugin.lookup("plugin_version", "const char *(void)")()) \
            == b"3.1.4-rc1"


def test_abi_version_header_matches_python():
    text = (ROOT / "minildr/include/minildr.h").read_text()
    [value] = re.findall(r"^#define MINILDR_ABI_VERSION (\d+)$", text, re.MULTILINE)
    assert int(value) == minildr.ABI_VERSION


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------
def python_m_minildr(*args, cwd=None) -> subprocess.CompletedProcess:
    """`python -m minildr ARGS`, the real command."""
    return subprocess.run([sys.executable, "-m", "minildr", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """`python -m minildr ARGS` as its process would end (status, stdout, stderr), run by
    cli.main in this process: a Python and `import minildr` less (~0.3 s of CPU) per
    command. test_cli_build_prints_path runs the real command. The minildr logger's
    level, which main sets, is put back."""
    out, err = io.StringIO(), io.StringIO()
    log, level, folder = logging.getLogger("minildr"), logging.getLogger("minildr").level, os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = minildr_cli.main([str(a) for a in args])
            except SystemExit as exc:                   # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(folder)
        log.setLevel(level)
    return subprocess.CompletedProcess(["python", "-m", "minildr", *map(str, args)], code,
                                       out.getvalue(), err.getvalue())


def test_cli_build_prints_path(tmp_path):
    done = python_m_minildr("build", EXAMPLES / "greet/greet.c", "--name", "greet", "--version", "1.2",
               "--exports", EXAMPLES / "greet/greet.h", "--out-dir", tmp_path / "out",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "out" / f"greet{SUFFIX}")
    assert minildr.read_manifest(tmp_path / "out" / f"greet{SUFFIX}").version == "1.2"


def test_cli_build_error_exits_1(tmp_path):
    done = cli("build", tmp_path / "nope.c", "--name", "x", "--exports", "x.h")
    assert done.returncode == 1
    assert done.stderr.startswith("error:") and "nope.c" in done.stderr


@pytest.fixture
def marker_plugin(tmp_path):
    """A plugin whose constructor creates a file: proof that its code ran."""
    marker = tmp_path / "marker"
    source = ('#include <stdio.h>\n'
              '__attribute__((constructor)) static void mark(void)\n'
              f'{{ FILE *f = fopen("{marker.as_posix()}", "w"); if (f) fclose(f); }}\n'
              'int answer(void) { return 42; }\n')
    return write_plugin(tmp_path, "marked", source, "int answer(void);\n"), marker


def test_cli_inspect_does_not_run_the_plugin(marker_plugin):
    path, marker = marker_plugin
    done = cli("inspect", path)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^  answer\s+function\s+int \(void\)$", done.stdout, re.MULTILINE)
    assert hashlib.sha256(path.read_bytes()).hexdigest() in done.stdout
    assert "plugin    marked 0.1.0" in done.stdout
    assert not marker.exists()
    with minildr.open(path):                 # the check above can fail: opening runs it
        assert marker.exists()


def test_cli_inspect_json(built):
    done = cli("inspect", "--json", built["echo"])
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["sha256"] == hashlib.sha256(built["echo"].read_bytes()).hexdigest()
    assert doc["manifest"]["exports"]["calls"] == {"kind": "data", "ctype": "int"}
    assert doc["manifest"] == minildr.read_manifest(built["echo"]).to_json()


def test_cli_inspect_bad_file(tmp_path):
    bad = tmp_path / "bad.so"
    bad.write_text("not a library\n")
    done = cli("inspect", bad)
    assert done.returncode == 1
    assert done.stderr.startswith("error:")
    assert str(bad) in done.stderr
    assert done.stdout == ""


def test_cli_scan(built, tmp_path):
    for p in built.values():
        shutil.copy(p, tmp_path)
    done = cli("scan", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(rf"^echo{re.escape(SUFFIX)}\s+loaded\s+echo 0\.1\.0", done.stdout,
                     re.MULTILINE)
    assert "2 loaded, 0 failed" in done.stdout

    (tmp_path / f"broken{SUFFIX}").write_bytes(b"\x7fELF")
    done = cli("scan", tmp_path)
    assert done.returncode == 1
    assert re.search(rf"^broken{re.escape(SUFFIX)}\s+NotAPlugin\s+", done.stdout, re.MULTILINE)
    assert "2 loaded, 1 failed" in done.stdout


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["build", "x.c"], ["inspect"],
                                  ["scan", "a", "b"]])
def test_cli_usage_error_exits_2(args):
    done = cli(*args)
    assert done.returncode == 2
    assert "usage:" in done.stderr


IGNORED_SIGCHLD = r"""
import signal, sys
import minildr
signal.signal(signal.SIGCHLD, signal.SIG_IGN)      # a host that never reaps its children
folder = sys.argv[1]
try:
    minildr.build([folder + "/bad.c"], name="bad", exports=folder + "/bad.h", out_dir=folder)
    print("built")
except minildr.BuildError as exc:
    print("refused:", "the C compiler failed" in str(exc), "bad.c" in str(exc))
good = minildr.build([folder + "/good.c"], name="good", exports=folder + "/good.h", out_dir=folder)
with minildr.open(good) as plugin:
    print("good:", plugin.lookup("answer", "int (void)")())
print("still ignored:", signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN)
"""


@requires_posix("SIGCHLD")
def test_a_failing_compiler_is_a_failure_when_the_host_ignores_sigchld(tmp_path):
    """Under signal.signal(SIGCHLD, SIG_IGN) the kernel reaps the compiler itself, and
    subprocess reported its exit as 0: a failed build went on as if it had succeeded."""
    (tmp_path / "bad.c").write_text("int answer(void) { return }\n")
    (tmp_path / "bad.h").write_text("int answer(void);\n")
    (tmp_path / "good.c").write_text("int answer(void) { return 42; }\n")
    (tmp_path / "good.h").write_text("int answer(void);\n")
    done = subprocess.run([sys.executable, "-c", IGNORED_SIGCHLD, str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.stdout.splitlines() == ["refused: True True", "good: 42",
                                        "still ignored: True"], done.stderr[-2000:]


@requires_posix("FIFOs")
def test_a_fifo_as_a_source_is_refused_by_name_without_blocking(tmp_path):
    """A named pipe put where a source was: the compiler would wait for a writer forever."""
    fifo = tmp_path / "stuck.c"
    os.mkfifo(fifo)
    (tmp_path / "stuck.h").write_text("int answer(void);\n")
    with pytest.raises(minildr.BuildError, match="named pipe") as err:
        minildr.build([fifo], name="stuck", exports=tmp_path / "stuck.h", out_dir=tmp_path)
    assert str(fifo) in str(err.value)


def test_a_compiler_error_names_the_source_as_given_and_includes_beside_it_work(tmp_path):
    """Sources are compiled from the bytes read (files.py); messages still name the file as
    given, and a quoted #include finds the header beside the source."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "local.h").write_text("#define ANSWER 42\n")
    (src / "ok.c").write_text('#include "local.h"\nint answer(void) { return ANSWER; }\n')
    (src / "ok.h").write_text("int answer(void);\n")
    with minildr.open(minildr.build([src / "ok.c"], name="ok", exports=src / "ok.h",
                                    out_dir=tmp_path)) as plugin:
        assert plugin.lookup("answer", "int (void)")() == 42
    (src / "ok.c").write_text('#include "local.h"\nint answer(void) { return ANSWER }\n')
    with pytest.raises(minildr.BuildError) as err:
        minildr.build([src / "ok.c"], name="ok", exports=src / "ok.h", out_dir=tmp_path)
    assert f"{src / 'ok.c'}:2:" in str(err.value)
    assert "minildr-build-" not in str(err.value)


def header_tree(folder: Path) -> Path:
    """A source including "val.h", which includes "sub/inner.h": 41 + 1."""
    (folder / "sub").mkdir(parents=True)
    (folder / "val.h").write_text('#include "sub/inner.h"\n#define VAL (INNER + 1)\n')
    (folder / "sub" / "inner.h").write_text("#define INNER 41\n")
    (folder / "v.c").write_text('#include "val.h"\nint value(void) { return VAL; }\n')
    (folder / "v.h").write_text("int value(void);\n")
    return folder / "v.c"


def test_headers_compiled_are_the_headers_read_even_if_replaced_while_building(
        tmp_path, monkeypatch):
    """Each #included header is read once (files.py) and compiled from that copy: a header
    rewritten between the read and the compiler's run does not reach the plugin."""
    src = header_tree(tmp_path / "src")
    builder = importlib.import_module("minildr.build")
    real_run = builder.run_tool

    def rewrite_then_run(cmd, **kwargs):
        if "-o" in cmd:                             # the compile, after every read
            (src.parent / "sub" / "inner.h").write_text("#define INNER 1000\n")
            (src.parent / "val.h").write_text("#define VAL 7\n")
        return real_run(cmd, **kwargs)
    monkeypatch.setattr(builder, "run_tool", rewrite_then_run)
    with minildr.open(minildr.build([src], name="v", exports=src.parent / "v.h",
                                    out_dir=tmp_path / "out")) as plugin:
        assert plugin.lookup("value", "int (void)")() == 42


def test_a_header_error_names_the_header_as_read(tmp_path):
    src = header_tree(tmp_path / "src")
    (src.parent / "sub" / "inner.h").write_text(
        "#define INNER 41\nstatic int broken(void) { return undeclared_name; }\n")
    with pytest.raises(minildr.BuildError) as err:
        minildr.build([src], name="v", exports=src.parent / "v.h", out_dir=tmp_path / "out")
    assert f"{src.parent / 'sub' / 'inner.h'}:2:" in str(err.value)
    assert "minildr-build-" not in str(err.value)


@requires_posix("FIFOs")
def test_a_fifo_named_like_an_included_header_is_refused_by_name_without_blocking(tmp_path):
    """The compiler would wait for a writer forever; the stage reads each header first.
    Run in a child: if that regressed, only the child would hang (and be killed)."""
    src = header_tree(tmp_path / "src")
    os.unlink(src.parent / "sub" / "inner.h")
    os.mkfifo(src.parent / "sub" / "inner.h")
    done = run_python("""
import sys, minildr
try:
    minildr.build([sys.argv[1]], name="v", exports=sys.argv[2], out_dir=sys.argv[3])
except minildr.BuildError as exc:
    print("refused:", exc)
""", src, src.parent / "v.h", tmp_path / "out", timeout=60)
    assert "refused:" in done.stdout, done.stderr[-2000:]
    assert str(src.parent / "sub" / "inner.h") in done.stdout and "named pipe" in done.stdout


def test_an_exports_header_including_a_header_beside_it_is_staged_too(tmp_path, monkeypatch):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "types.h").write_text("typedef int score_t;\n")
    (folder / "s.h").write_text('#include "types.h"\nscore_t score(void);\n')
    (folder / "s.c").write_text('int score(void) { return 5; }\n')
    with minildr.open(minildr.build([folder / "s.c"], name="s", exports=folder / "s.h",
                                    out_dir=tmp_path / "out")) as plugin:
        assert plugin.lookup("score", "score_t (void)")() == 5


def test_relative_sources_and_exports_header_build_from_their_staged_copies(tmp_path,
                                                                           monkeypatch):
    """Paths as a notebook gives them (relative): the exports header's declarations are
    read from its staged copy, which its #line names by the header's full path."""
    header_tree(tmp_path / "src")
    monkeypatch.chdir(tmp_path)
    with minildr.open(minildr.build(["src/v.c"], name="v", exports="src/v.h",
                                    out_dir="out")) as plugin:
        assert plugin.lookup("value", "int (void)")() == 42


def _up_a_folder(root: Path):
    """A source including "../shared/inner.h": outside its own folder."""
    (root / "shared").mkdir(parents=True)
    (root / "shared" / "inner.h").write_text("#define INNER 41\n")
    (root / "src").mkdir()
    (root / "src" / "v.c").write_text('#include "../shared/inner.h"\n'
                                      "int value(void) { return INNER + 1; }\n")
    return root / "src" / "v.c", root / "shared" / "inner.h", []


def _absolute(root: Path):
    """A source including a header by its absolute path."""
    _, inner, _ = _up_a_folder(root)
    (root / "src" / "v.c").write_text(f'#include "{inner}"\n'
                                      "int value(void) { return INNER + 1; }\n")
    return root / "src" / "v.c", inner, []


def _flag(flag: str, quoted: bool, joined: bool = False):
    def layout(root: Path):
        (root / "inc").mkdir(parents=True)
        (root / "inc" / "inner.h").write_text("#define INNER 41\n")
        (root / "src").mkdir()
        name = '"inner.h"' if quoted else "<inner.h>"
        (root / "src" / "v.c").write_text(f"#include {name}\n"
                                          "int value(void) { return INNER + 1; }\n")
        folder = str(root / "inc")
        return (root / "src" / "v.c", root / "inc" / "inner.h",
                [flag + folder] if joined else [flag, folder])
    return layout


def _environment(variable: str):
    def layout(root: Path):
        source, inner, _ = _flag("-I", quoted=False)(root)
        return source, inner, ("env", variable, str(root / "inc"))
    return layout


LAYOUTS = {"../": _up_a_folder, "absolute": _absolute,
           "-iquote": _flag("-iquote", quoted=True), "-isystem": _flag("-isystem", quoted=False),
           "-idirafter": _flag("-idirafter", quoted=False),
           "-Idir": _flag("-I", quoted=False, joined=True), "-I dir": _flag("-I", quoted=False),
           "CPATH": _environment("CPATH"), "C_INCLUDE_PATH": _environment("C_INCLUDE_PATH")}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_headers_found_up_a_folder_by_absolute_name_or_by_folder_flags_are_staged(
        tmp_path, monkeypatch, layout):
    """A header reached by "../", by its absolute path, through -iquote, -isystem, -idirafter
    or -I given to build, or through CPATH / C_INCLUDE_PATH, is compiled from the bytes read:
    rewritten between the read and the compiler's run, the change does not reach the plugin."""
    source, inner, cflags = LAYOUTS[layout](tmp_path / "tree")
    if cflags and cflags[0] == "env":
        monkeypatch.setenv(cflags[1], cflags[2])
        cflags = []
    (source.parent / "v.h").write_text("int value(void);\n")
    builder = importlib.import_module("minildr.build")
    real_run = builder.run_tool

    def rewrite_then_run(cmd, **kwargs):
        if "-o" in cmd:                             # the compile, after every read
            inner.write_text("#define INNER 1000\n")
        return real_run(cmd, **kwargs)
    monkeypatch.setattr(builder, "run_tool", rewrite_then_run)
    with minildr.open(minildr.build([source], name="v", exports=source.parent / "v.h",
                                    out_dir=tmp_path / "out", cflags=cflags)) as plugin:
        assert plugin.lookup("value", "int (void)")() == 42


def test_a_header_error_up_a_folder_names_the_header_as_read(tmp_path):
    source, inner, _ = _up_a_folder(tmp_path / "tree")
    (source.parent / "v.h").write_text("int value(void);\n")
    inner.write_text("#define INNER 41\nstatic int broken(void) { return undeclared_name; }\n")
    with pytest.raises(minildr.BuildError) as err:
        minildr.build([source], name="v", exports=source.parent / "v.h", out_dir=tmp_path / "o")
    assert f"{inner}:2:" in str(err.value)
    assert "minildr-build-" not in str(err.value)
