"""Fixed C declarations made once into cffi's out-of-line ABI mode (minildr/outofline.py)."""
from __future__ import annotations

import subprocess
import sys

import _cffi_backend
import cffi

from minildr import libdl, outofline

DECLARATIONS = "int abs(int j); long labs(long j);"


def fresh_name() -> str:
    return f"test_{len(sys.modules)}_{id(object())}"


def test_declarations_are_made_into_a_module_once_then_loaded(monkeypatch, tmp_path):
    monkeypatch.setattr(outofline, "cache_folder", lambda: tmp_path)
    name = fresh_name()
    ffi = outofline.declared(name, DECLARATIONS)
    assert isinstance(ffi, _cffi_backend.FFI) and not isinstance(ffi, cffi.FFI)
    assert ffi.dlopen(None).labs(-7) == 7
    written = tmp_path / f"{outofline.module_name(name, DECLARATIONS)}.py"
    assert written.exists() and [p.name for p in tmp_path.glob("*.py")] == [written.name]
    before = written.stat().st_mtime_ns
    assert outofline.declared(name, DECLARATIONS).dlopen(None).abs(-3) == 3
    assert written.stat().st_mtime_ns == before              # loaded, not made again


def test_the_module_name_changes_with_the_declarations():
    assert outofline.module_name("x", DECLARATIONS) != outofline.module_name("x", "int abs(int);")
    assert outofline.module_name("x", DECLARATIONS) == outofline.module_name("x", DECLARATIONS)


def test_without_a_cache_folder_the_declarations_are_read_in_line(monkeypatch):
    monkeypatch.setattr(outofline, "cache_folder", lambda: None)
    ffi = outofline.declared(fresh_name(), DECLARATIONS)
    assert isinstance(ffi, cffi.FFI) and ffi.dlopen(None).abs(-3) == 3


def test_a_cffi_that_writes_to_file_names_only_leaves_the_declarations_in_line(monkeypatch, tmp_path):
    """cffi before 1.16 (Debian 12's 1.15.1, the AArch64 harness's sysroot) takes a file
    name, not a file object, and raises TypeError: the declarations are read in line and
    no file is left (before: `import minildr` itself failed there)."""
    import cffi.recompiler

    def old_make_py_source(ffi, module_name, target_py_file, verbose=False):
        with open(target_py_file, "w"):              # what 1.15.1 does with a StringIO
            pass

    monkeypatch.setattr(outofline, "cache_folder", lambda: tmp_path)
    monkeypatch.setattr(cffi.recompiler, "make_py_source", old_make_py_source)
    ffi = outofline.declared(fresh_name(), DECLARATIONS)
    assert isinstance(ffi, cffi.FFI) and ffi.dlopen(None).abs(-3) == 3
    assert not list(tmp_path.iterdir())


def test_a_damaged_module_is_read_in_line_instead(monkeypatch, tmp_path):
    monkeypatch.setattr(outofline, "cache_folder", lambda: tmp_path)
    name = fresh_name()
    (tmp_path / f"{outofline.module_name(name, DECLARATIONS)}.py").write_text("ffi = 1/0\n")
    ffi = outofline.declared(name, DECLARATIONS)
    assert isinstance(ffi, cffi.FFI) and ffi.dlopen(None).abs(-3) == 3


def test_the_loaders_binding_needs_no_c_parser_and_minildr_ffi_stays_in_line():
    """libdl's FFI is out-of-line (no pycparser in a process that only binds it), and
    the public minildr.ffi is cffi's in-line FFI a learner knows (cdef and all)."""
    assert isinstance(libdl.ffi, _cffi_backend.FFI) and not isinstance(libdl.ffi, cffi.FFI)
    code = ("import sys, importlib.util; sys.modules['minildr'] = importlib.util.module_from_spec("
            "importlib.util.find_spec('minildr')); import minildr.libdl as l; "
            "print(l.lib.dlsym(l.RTLD_DEFAULT, b'abs') != 0, 'pycparser' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split() == ["True", "False"], done.stderr
    import minildr
    assert isinstance(minildr.ffi, cffi.FFI)
    assert minildr.ffi.typeof("Dl_info *").item.cname == "Dl_info"
