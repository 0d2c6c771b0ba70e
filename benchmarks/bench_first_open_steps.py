"""Where a first open's time goes: each step it cannot skip, timed beside the benchmark's floor.

    python benchmarks/bench_first_open_steps.py [SMALL_ROUNDS] [BIG_ROUNDS]

For greet.so (~15 kB) and big.so (~20 MB), round by round on a copy with new
last bytes (as bench_loader.py's first opens): the floor's parts (read,
SHA-256, a raw cffi dlopen + dlclose), then what minildr.open must do besides
(a stat for its cache, a sealed memfd, a bare dlopen + dlclose of it) and the
two readings of the bytes every first open makes (formats/survey.py, the
manifest's JSON), and minildr.open + close itself. Medians, in microseconds
and as a share of the floor: the sum of the steps that cannot be skipped
shows how close to the floor a first open can come (issue 16's 1.3x goal).
The steps are timed one after another in one thread; a first open hashes a
large file in a thread of its own, beside the memfd copy, so where a core
is free it costs less than the serial sum.
"""
import sys, os, time, statistics, hashlib, fcntl, tempfile
from pathlib import Path

import cffi
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "benchmarks"))
import minildr
from timing import built_greet
import bench_loader as B
from minildr import libdl, image as images, manifest as M
from minildr.formats.survey import survey
L = libdl.lib; FL = os.RTLD_NOW | os.RTLD_LOCAL
raw = cffi.FFI()
def memfd(data):
    fd = os.memfd_create("x", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    v = memoryview(data)
    while v: v = v[os.write(fd, v):]
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
    return fd
def run(path, n):
    name = str(path)
    with open(path, "ab") as f: f.write(bytes(8))
    T = {}
    clock = time.perf_counter_ns
    for i in range(n):
        B.stamp(path, i + 1); images.clear_cache()
        t0 = clock()
        with open(name, "rb") as f: data = f.read()
        t1 = clock(); hashlib.sha256(data).digest(); t2 = clock()
        raw.dlclose(raw.dlopen(name)); t3 = clock()
        os.stat(name); t4 = clock()
        fd = memfd(data); t5 = clock()
        p = f"/proc/self/fd/{fd}".encode()
        t6 = clock(); L.dlclose(L.dlopen(p, FL)); t7 = clock()
        os.close(fd)
        t8 = clock(); s = survey(data); t9 = clock(); M.Manifest.decode(s.manifest, name); t10 = clock()
        B.stamp(path, n + i + 1); images.clear_cache()
        t11 = clock(); minildr.open(name).close(); t12 = clock()
        for k, v in (("read", t1 - t0), ("sha256", t2 - t1), ("raw dlopen+dlclose (cffi FFI)", t3 - t2),
                     ("stat", t4 - t3), ("memfd create+write+seal", t5 - t4),
                     ("bare dlopen+dlclose of the memfd", t7 - t6), ("survey (one pass)", t9 - t8),
                     ("manifest decode", t10 - t9), ("minildr.open+close, first open", t12 - t11)):
            T.setdefault(k, []).append(v)
    med = {k: statistics.median(v) / 1e3 for k, v in T.items()}
    floor = med["read"] + med["sha256"] + med["raw dlopen+dlclose (cffi FFI)"]
    print(f"{path.name}, {path.stat().st_size:,} bytes; {n} rounds; medians in us")
    for k, v in med.items():
        print(f"  {k:40s} {v:10.1f}  {v / floor:5.2f} of the floor")
    must = med["read"] + med["sha256"] + med["stat"] + med["memfd create+write+seal"] + med["bare dlopen+dlclose of the memfd"]
    print(f"  {'floor (read + sha256 + raw)':40s} {floor:10.1f}")
    print(f"  {'read+sha256+stat+memfd+bare dlopen':40s} {must:10.1f}  {must / floor:5.2f} of the floor")
    print(f"  + survey + manifest decode               {must + med['survey (one pass)'] + med['manifest decode']:10.1f}  {(must + med['survey (one pass)'] + med['manifest decode']) / floor:5.2f} of the floor")
with built_greet() as small, tempfile.TemporaryDirectory(prefix="minildr-bench-big-") as d:
    run(Path(small), int(sys.argv[1]) if len(sys.argv) > 1 else 400)
    big = B.build_big(Path(d))
    run(Path(big), int(sys.argv[2]) if len(sys.argv) > 2 else 20)
print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
