"""The native loader's teaching API: plan(), the reserve event, relocation data, Plugin.trace.

What notebook 04 relies on to follow a load without private attributes:
`minildr.native.plan(path)` reads a library into its Plan and runs nothing;
the trace opens the mapping with a "reserve" event carrying the base; each
"relocate" event names its symbol and the word it replaced; and a Plugin
says which loader loaded it (`loader`, `trace`, its repr).
"""
from __future__ import annotations

import ctypes
import importlib
import json
import os
import struct

import pytest

import minildr
import minildr.native
from minildr.native.classes import Rel
from minildr.formats.reader import VIEWS_FROM
from minildr.native.parse import parse

from helpers import write_plugin
from platforms import requires_elf, requires_isolation, requires_proc
from native_util import (AARCH64, build_relocs, linker_supports, mapped_range, mappings_of,
                         native_host, system_library)

GREET_T = "const char *(void)"
ffi = minildr.ffi

CTOR_C = """
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void start(void)
{ int fd = creat(MARKER, 0644); if (fd >= 0) close(fd); }
int answer(void) { return 42; }
"""


# -- plan(path): step 1 alone -----------------------------------------------------
@requires_elf
@requires_proc
def test_plan_reads_the_file_and_runs_nothing(tmp_path):
    marker = tmp_path / "constructor-ran"
    source = f"#define MARKER {json.dumps(str(marker))}\n" + CTOR_C
    path = write_plugin(tmp_path, "planned", source, "int answer(void);\n")
    plan = minildr.native.plan(path)
    assert isinstance(plan, minildr.native.Plan)
    assert plan.path == os.fspath(path)
    expected = parse(path.read_bytes(), os.fspath(path))
    assert (plan.span, plan.relro, plan.needed, plan.names, plan.relocations, plan.init) == \
        (expected.span, expected.relro, expected.needed, expected.names,
         expected.relocations, expected.init)
    assert [tag for tag, _ in plan.init][-1] == "DT_INIT_ARRAY"    # the constructor: listed...
    assert not marker.exists()                                        # ...but never run
    assert not mappings_of(path.name)                                 # and nothing mapped


def test_symbol_columns_picked_from_views_are_the_rows_unpacked():
    """Table.columns_at (fields picked from strided views of the table, from VIEWS_FROM rows
    on) gives, field by field, what unpacking each row gives, in the order asked, repeats
    and all; and so does its row-by-row path for a few rows."""
    plan = minildr.native.plan(AARCH64 / "relocs.so")
    count = len(plan.symbols)
    many, few = [*range(count - 1, 0, -1)] * (VIEWS_FROM // count + 2), [1, count - 1, 1]
    assert len(few) < VIEWS_FROM <= len(many)
    for indices in (many, few):
        columns = plan.symbols.columns_at(indices)
        assert [list(c) for c in columns] == [list(field) for field in zip(
            *(plan.symbols[i] for i in indices))]


def test_plan_of_a_library_for_another_machine_only_reads_it():
    """Reading runs nothing, so a plan of an AArch64 library works on any host."""
    plan = minildr.native.plan(AARCH64 / "relocs.so")
    assert plan.arch.MACHINE == "aarch64"
    assert plan.relocations and plan.loads


def test_plan_columns_agree_with_the_rows():
    """Plan.groups (columns per type and table) and Plan.used hold what the rows say; setting
    Plan.other regroups them (how a test or a learner loads fewer relocations)."""
    plan = minildr.native.plan(AARCH64 / "relocs-noplt-now.so")
    rows = plan.other
    assert rows and all(r.type != plan.arch.RELATIVE or r.symbol for r in rows)
    assert [(g.table, g.type) for g in plan.groups] == list(dict.fromkeys(
        (r.table, r.type) for r in rows))                   # one group each, in the file's order
    assert plan.used == {r.symbol: plan.symbols[r.symbol] for r in rows if r.symbol}
    assert list(plan.used) == list(dict.fromkeys(r.symbol for r in rows if r.symbol))
    assert plan.symbols.rows_at(list(plan.used)) == [plan.symbols[i] for i in plan.used]
    kept = [r for r in rows if r.table == "JMPREL"]
    plan.other = kept
    assert plan.other == kept and {g.table for g in plan.groups} == {"JMPREL"}
    assert set(plan.used) == {r.symbol for r in kept if r.symbol}
    plan.other = [rows[0]._replace(addend=-8)]                # a signed addend survives too
    assert plan.other == [rows[0]._replace(addend=-8)]
    plan.other = rows
    assert plan.other == rows


def test_plan_errors_name_the_file(tmp_path):
    missing = tmp_path / "no-such.so"
    with pytest.raises(minildr.LoadError, match="cannot be read") as err:
        minildr.native.plan(missing)
    assert os.fspath(missing) in str(err.value)
    text = tmp_path / "notes.so"
    text.write_text("not a library\n")
    with pytest.raises(minildr.NotAPlugin) as err:
        minildr.native.plan(text)
    assert os.fspath(text) in str(err.value)
    riscv = tmp_path / "riscv.so"                  # e_machine 243: EM_RISCV
    riscv.write_bytes((AARCH64 / "tls.so").read_bytes()[:18] + (243).to_bytes(2, "little")
                      + (AARCH64 / "tls.so").read_bytes()[20:])
    with pytest.raises(minildr.UnsupportedELF, match="x86_64 and aarch64 libraries only") as err:
        minildr.native.plan(riscv)
    assert os.fspath(riscv) in str(err.value)
    assert minildr.native.plan(AARCH64 / "tls.so").tls is not None     # TLS on AArch64 is read


# -- the garbage collector: paused during a load, left as it was found ------------
@native_host
@native_host
def test_an_interrupt_as_the_load_ends_leaves_nothing_loaded_and_the_collector_resumed(greet_so):
    """A KeyboardInterrupt at each line a finished load still runs (NativeLibrary's own
    lines and the ones after the initialisers): it reaches the caller, nothing of the
    library stays mapped, the collector is running again. (When the collector was
    resumed in a `finally` after the load, an interrupt there left the library mapped
    with no one holding it: the load-native campaign, event 2306 of 2309.)"""
    import gc
    import sys
    from minildr.native import library
    init, load = library.NativeLibrary.__init__.__code__, library.NativeLibrary._load.__code__
    last = max(load.co_lines(), key=lambda row: row[2] or 0)[2]            # the load's last line
    ends = [n for n, line in enumerate(open(load.co_filename).read().splitlines(), 1)
            if load.co_firstlineno <= n <= last and "self._run_initialisers(" in line]
    assert len(ends) == 1
    points = 0
    for point in range(1, 30):
        seen = [0]

        def interrupt(frame, event, arg, point=point):
            if event == "line" and (frame.f_code is init or (
                    frame.f_code is load and frame.f_lineno > ends[0])):
                seen[0] += 1
                if seen[0] == point:
                    raise KeyboardInterrupt
            return interrupt

        gc.enable()
        sys.settrace(lambda frame, event, arg: interrupt if frame.f_code in (init, load) else None)
        try:
            minildr.native.load(greet_so).close()
        except KeyboardInterrupt:
            points += 1
        else:
            break
        finally:
            sys.settrace(None)
        assert not mappings_of(str(greet_so)) and gc.isenabled(), point
    assert points >= 4


def test_a_load_pauses_the_collector_and_leaves_it_as_it_found_it(tmp_path, greet_so):
    """NativeLibrary pauses gc for the load (library.py says why): no collection runs
    between its first trace event and its last, even with a threshold of one allocation,
    and afterwards gc is enabled or disabled as before, after a refused load too."""
    import gc
    collections, during = [], []
    broken = tmp_path / "broken.so"
    broken.write_bytes(greet_so.read_bytes()[:4096])           # truncated: refused in step 1
    gc.callbacks.append(lambda phase, info: collections.append(phase))
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            gc.set_threshold(1)                                 # any allocation would collect
            try:
                with minildr.native.load(greet_so, trace=lambda event: during.append(
                        (gc.isenabled(), len(collections)))):
                    assert gc.isenabled() is enabled
                    loading = during[:]                         # (close's events come after)
                with pytest.raises(minildr.PluginError):
                    minildr.native.load(broken)
                assert gc.isenabled() is enabled
            finally:
                gc.set_threshold(700, 10, 10)
                gc.enable()
            assert len(loading) > 5 and not any(running for running, _ in loading)
            assert len({count for _, count in loading}) == 1, "a collection ran during the load"
            during.clear()
    finally:
        gc.callbacks.pop()


# -- the reserve event: the base, before any segment is mapped ---------------------
@native_host
def test_reserve_event_gives_the_base_before_the_segments(greet_so):
    seen = []

    def watch(event):
        if event.step == "reserve":          # reserved, inaccessible; nothing mapped yet
            rows = mapped_range(event.data["base"], event.data["base"] + event.data["span"])
            seen.append((event, [line.split()[1] for line in rows]))
        elif event.step == "map":
            seen.append((event, None))

    with minildr.native.load(greet_so, trace=watch) as lib:
        steps = [e.step for e in lib.trace.events]
        reserve, protections = seen[0]
        assert reserve.step == "reserve" and steps.count("reserve") == 1
        assert steps.index("resolve") < steps.index("reserve") < steps.index("map")
        assert reserve.data == {"base": lib.base, "span": lib.plan.span}
        assert protections and all(p == "---p" for p in protections)
        for event, _ in seen[1:]:             # every map event's address is base + its offset
            assert event.data["address"] == reserve.data["base"] + event.data["start"]


# -- relocate events: the symbol, and the word before -------------------------------
@pytest.fixture(scope="module")
def relocs_libs(tmp_path_factory):
    out = tmp_path_factory.mktemp("api-relocs")
    libs = {"plain": build_relocs(out / "plain")}
    if linker_supports("pack-relative-relocs"):
        libs["relr"] = build_relocs(out / "relr", ["-Wl,-z,pack-relative-relocs"])
    return libs


def file_word(plan, offset):
    """The 8 bytes the file holds at load offset `offset`, or None if past the file's part."""
    for ph in plan.loads:
        if ph.p_vaddr <= offset and offset + 8 <= ph.p_vaddr + ph.p_filesz:
            at = ph.p_offset + offset - ph.p_vaddr
            return struct.unpack_from("<Q", plan.elf.data, at)[0]
    return None


@native_host
@pytest.mark.parametrize("kind", ["plain", "relr"])
def test_relocate_events_name_the_symbol_and_the_word_before(relocs_libs, kind):
    if kind not in relocs_libs:
        pytest.skip("needs a linker with -z pack-relative-relocs")
    with minildr.native.load(relocs_libs[kind], trace=True) as lib:
        events = [e for e in lib.trace.events if e.step == "relocate"]
        relocations = [r for r in lib.plan.relocations if lib.plan.rel_class(r) is not Rel.NONE]
        assert len(events) == len(relocations)
        by_offset = {r.offset: r for r in relocations}
        tables = set()
        for e in events:
            r = by_offset[e.data["offset"]]
            tables.add(e.data["table"])
            assert e.data["symbol"] == (lib.plan.names[r.symbol] if r.symbol else None)
            assert e.data["before"] == file_word(lib.plan, r.offset), e   # mapped, untouched
            memory = ffi.buffer(ffi.cast("char *", lib.base + r.offset), 8)
            word = struct.unpack("<Q", bytes(memory))[0]
            assert word == e.data["value"] & 0xFFFFFFFFFFFFFFFF                # what it wrote
            if e.data["table"] == "RELR":                                   # the addend is the word
                assert e.data["value"] == lib.base + e.data["before"] and e.data["symbol"] is None
        assert ("RELR" in tables) == (kind == "relr")
        strlen = [e for e in events if e.data["symbol"] == "strlen"]
        assert strlen, "relocs.c stores strlen's address (libc_strlen = strlen)"
        libc_strlen = ctypes.cast(ctypes.CDLL(None).strlen, ctypes.c_void_p).value
        assert all(e.data["value"] == libc_strlen for e in strlen)
        relative = [e for e in events if e.data["type"].endswith("_RELATIVE")]
        assert relative and all(e.data["symbol"] is None for e in relative)


@native_host
@pytest.mark.parametrize("kind", ["plain", "relr", "libz"])
def test_bulk_relocation_writes_the_image_the_one_by_one_path_writes(relocs_libs, kind):
    """The default load (relocations written by class, in bulk) and the detailed one
    (trace=True: every write one at a time, with its event) leave the same writable
    image, word for word, once each is read relative to its own base; and every
    RELATIVE word is B + A as the relocation rows say."""
    if kind == "libz":
        path = system_library("libz.so.1")
    elif kind not in relocs_libs:
        pytest.skip("needs a linker with -z pack-relative-relocs")
    else:
        path = relocs_libs[kind]
    images = []
    for detailed in (False, True):
        with minildr.native.load(path, trace=detailed) as lib:
            span, base = lib.plan.span, lib.base
            words = []
            for ph in lib.plan.loads:
                if ph.p_flags & 2:                                          # PF_W
                    memory = ffi.buffer(ffi.cast("char *", base + ph.p_vaddr), ph.p_memsz // 8 * 8)
                    words += [w - base if base <= w < base + span else w
                              for (w,) in struct.iter_unpack("<Q", bytes(memory))]
            for r in lib.plan.relocations:
                if lib.plan.rel_class(r) is Rel.RELATIVE:
                    word = struct.unpack("<Q", bytes(ffi.buffer(ffi.cast("char *", base + r.offset), 8)))[0]
                    addend = r.addend if r.table == "RELA" else file_word(lib.plan, r.offset)
                    assert word == (base + addend) % 2**64, r
            images.append(words)
    assert len(images[0]) > 0 and images[0] == images[1]


# -- Plugin.loader, Plugin.trace, repr ---------------------------------------------
def test_system_plugin_says_system_and_has_no_trace(greet_so):
    with minildr.open(greet_so) as plugin:
        assert plugin.loader == "system" and plugin.trace is None
        assert repr(plugin) == f"<Plugin greet 0.1.0 from {plugin.path} (open)>"   # unchanged
    assert repr(plugin) == f"<Plugin greet 0.1.0 from {plugin.path} (closed)>"


@native_host
def test_native_plugin_shows_its_loader_and_trace(greet_so):
    with minildr.open(greet_so, loader="native") as plugin:
        assert plugin.loader == "native"
        assert repr(plugin) == f"<Plugin greet 0.1.0 from {plugin.path} (native loader, open)>"
        steps = [e.step for e in plugin.trace.events]
        assert steps[-1] == "init" and "reserve" in steps and "relocate" in steps
        reserve = next(e.data for e in plugin.trace.events if e.step == "reserve")
        greet = plugin.lookup("greet")               # the function lies in the reserved span
        assert reserve["base"] <= greet.address < reserve["base"] + reserve["span"]
    assert repr(plugin) == f"<Plugin greet 0.1.0 from {plugin.path} (native loader, closed)>"
    assert plugin.trace.events[-1].step == "unmap"      # the trace outlives the plugin


@requires_isolation
def test_isolated_plugin_says_isolated(greet_so):
    with minildr.open(greet_so, isolate=True) as plugin:
        assert plugin.loader == "isolated" and plugin.trace is None
        assert repr(plugin) == \
            f"<Plugin greet 0.1.0 from {plugin.path} (isolated, worker pid {plugin.worker_pid})>"
        assert ffi.string(plugin.lookup("greet", GREET_T)()).startswith(b"Hello")
    assert plugin.loader == "isolated" and plugin.trace is None


# -- the step numbers are the order a load runs ---------------------------------------
@native_host
def test_step_numbers_follow_the_order_a_load_runs(echo_so):
    """Each step module's docstring number matches when its first event happens."""
    steps = [("parse", None), ("resolve", "resolve"), ("mapping", "map"), ("relocate", "relocate"),
             ("initfini", "init"), ("lookup", None)]
    for number, (module, _) in enumerate(steps, 1):
        doc = importlib.import_module(f"minildr.native.{module}").__doc__
        assert doc.startswith(f"Step {number}, "), (module, doc.splitlines()[0])
    listed = [line.split()[1] for line in minildr.native.__doc__.splitlines()
              if line.strip()[:2] in {f"{n} " for n in range(1, 7)}]
    assert listed == [f"{module}.py" for module, _ in steps]
    with minildr.native.load(echo_so) as lib:
        order = [e.step for e in lib.trace.events]
        firsts = [order.index(event) for _, event in steps if event]
        assert firsts == sorted(firsts)
        assert order.index("reserve") < order.index("map") and order.index("relocate") < \
            order.index("relro") < order.index("init")


# -- a large file is read in parts: the tables, not the machine code -----------------
def big_plugin(tmp_path, name, cflags=()):
    """A plugin of about 400 KB: 1,500 functions of code, a 300 KB constant table in
    read-only data, and a pointer table relocated at load time.

    Compiled at -O0 (after build's -O2): the code is there to take room, and
    optimising 1,500 functions took ~2.5 s of compiler CPU of the ~3 s a build took."""
    functions = "".join(f"int f{i}(int x) {{ return x * {i} + (x >> {i % 7}) + {i}; }}\n"
                        for i in range(1500))
    source = (functions + "const unsigned char table[300000] = {[0 ... 299998] = 7, [299999] = 9};\n"
              "int (*const calls[])(int) = {" + ", ".join(f"f{i}" for i in range(0, 1500, 50))
              + "};\nint call(int i, int x) { return calls[i](x) + table[299999]; }\n")
    return write_plugin(tmp_path, name, source, "int call(int i, int x);\n",
                        cflags=("-O0", *cflags))


def code_segment(plan):
    return next(ph for ph in plan.loads if ph.p_flags & 1)          # PF_X


@native_host
@pytest.mark.parametrize("layout", ["separate code", "code with the tables"])
def test_a_large_file_is_read_in_parts_and_planned_as_if_read_whole(tmp_path, layout):
    """files.read_ranges with sparse.file_ranges: a plugin over SPARSE_FROM bytes is read
    without its machine code (zeros in the copy) yet plans exactly as the whole file
    does, and loads and runs; linked with the tables in its code segment
    (-z noseparate-code), that segment is read too."""
    import mmap
    from minildr import files
    from minildr.native import sparse
    separate = layout == "separate code"
    if not separate and not linker_supports("noseparate-code"):
        pytest.skip("this linker has no -z noseparate-code")
    path = big_plugin(tmp_path, "big", () if separate else ("-Wl,-z,noseparate-code",))
    whole = path.read_bytes()
    assert len(whole) >= files.SPARSE_FROM
    parts, _ = files.read_ranges(str(path), files.MAX_PLUGIN_BYTES, sparse.file_ranges)
    assert isinstance(parts, mmap.mmap) and len(parts) == len(whole)
    full, sparse_plan = parse(whole, str(path)), parse(parts, str(path))
    code = code_segment(full)
    span = slice(code.p_offset, code.p_offset + code.p_filesz)
    assert any(whole[span])
    if separate:
        assert not any(parts[span]), "the machine code was read"
        table = whole.find(b"\x07" * 4096)            # read-only data, no table in it
        assert table > 0 and parts[table:table + 4096] == bytes(4096), "read-only data was read"
    else:
        assert parts[span] == whole[span], "the code segment holds the tables: read whole"
    for name in ("relocations", "needed", "versions", "init", "fini", "loads", "span", "relro"):
        assert getattr(sparse_plan, name) == getattr(full, name), name
    assert dict(sparse_plan.used) == dict(full.used)
    assert [sparse_plan.names[i] for i in sparse_plan.used] == [full.names[i] for i in full.used]
    with minildr.native.load(path) as lib:
        call = lib.lookup("call", "int(int, int)")
        assert [call(i, 3) for i in (0, 1, 29)] == [3 + 0 + 0 + 9, 3 * 50 + (3 >> 1) + 50 + 9,
                                                     3 * 1450 + (3 >> (1450 % 7)) + 1450 + 9]


def test_reading_in_parts_keeps_the_checks_of_every_read(tmp_path):
    """files.read_ranges refuses what read_regular refuses, naming the file: a file that
    grows or shrinks while its parts are read (FileChanged), one over the limit
    (FileTooLarge), a FIFO or a device (NotARegularFile); a file that is not ELF is read
    whole; a small file is read as bytes."""
    import mmap
    from minildr import files
    from minildr.errors import FileChanged, FileTooLarge, NotARegularFile
    from minildr.native import sparse
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 2048)                       # 512 KiB, not ELF
    data, _ = files.read_ranges(str(big), files.MAX_PLUGIN_BYTES, sparse.file_ranges)
    assert isinstance(data, mmap.mmap) and data[:] == big.read_bytes()

    def growing(pread, size):
        with open(big, "ab") as f:
            f.write(b"more")
        return [(0, 4096)]

    def shrinking(pread, size):
        os.truncate(big, 4096)
        return [(0, size)]
    for change in (growing, shrinking):
        with pytest.raises(FileChanged) as err:
            files.read_ranges(str(big), files.MAX_PLUGIN_BYTES, change)
        assert str(big) in str(err.value)
        big.write_bytes(bytes(range(256)) * 2048)
    with pytest.raises(FileTooLarge, match="more than the 300,000"):
        files.read_ranges(str(big), 300_000, sparse.file_ranges)
    fifo = tmp_path / "fifo.so"
    os.mkfifo(fifo)
    device = tmp_path / "zero.so"
    device.symlink_to("/dev/zero")
    for path in (fifo, device):
        with pytest.raises(NotARegularFile) as err:
            files.read_ranges(str(path), files.MAX_PLUGIN_BYTES, sparse.file_ranges)
        assert str(path) in str(err.value)
    small = tmp_path / "small.bin"
    small.write_bytes(b"\x7fELF" + bytes(100))
    assert files.read_ranges(str(small), files.MAX_PLUGIN_BYTES, sparse.file_ranges)[0] \
        == small.read_bytes()
