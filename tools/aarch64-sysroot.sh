#!/usr/bin/env bash
# An AArch64 Debian Python with cffi in a folder, run under qemu-user on an x86_64 machine:
# the native loader's AArch64 code (relocations, TLS variant I, TLS descriptors) is tested
# by running it (tests/native/test_native_aarch64.py), not only by decoding files.
#
#   tools/aarch64-sysroot.sh [SYSROOT]        # default build/aarch64-sysroot; idempotent
#
# What it needs (make cross-tools installs them): qemu-user (qemu-aarch64) and
# gcc-aarch64-linux-gnu from Debian. What it does, as root: adds the arm64 architecture
# to dpkg's list (dpkg --add-architecture: only lets apt see arm64 packages; nothing of
# arm64 is installed into the system), `apt-get download`s the arm64 .debs of Python, cffi
# and the C libraries they use, and unpacks them with `dpkg -x` into SYSROOT, never into /.
# Then, with PYTHONPATH at this worktree:
#
#   qemu-aarch64 -L SYSROOT SYSROOT/usr/bin/python3.11 -c 'import minildr.native'
#
# qemu-aarch64 -L looks every absolute path up in SYSROOT first (the interpreter
# /lib/ld-linux-aarch64.so.1, libc, /usr/lib/python3.11), then in the real root (tmp files).
set -euo pipefail
cd "$(dirname "$0")/.."
SYSROOT=${1:-build/aarch64-sysroot}
PY=python3.11
STAMP=$SYSROOT/.minildr-sysroot
# Python (minimal and its standard library with their C libraries), cffi, and what
# `import minildr` needs besides (packaging); libgcc-s1 for unwinding and thread exit.
PACKAGES="libc6 libgcc-s1 libffi8 zlib1g libexpat1 libssl3 libbz2-1.0 liblzma5 libuuid1
  $PY-minimal lib$PY-minimal lib$PY-stdlib
  python3-cffi-backend python3-cffi python3-pycparser python3-ply python3-packaging"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(echo $PACKAGES)" ]; then
  exit 0
fi
command -v qemu-aarch64 >/dev/null || { echo "aarch64-sysroot: qemu-aarch64 missing (apt-get install qemu-user)" >&2; exit 1; }
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "aarch64-sysroot: dpkg --add-architecture arm64 (apt may now list arm64 packages)"
  dpkg --add-architecture arm64
  apt-get update -qq
fi
debs=$(mktemp -d)
trap 'rm -rf "$debs"' EXIT
chmod 755 "$debs"                  # apt-get download writes as user _apt
echo "aarch64-sysroot: downloading the arm64 packages into $SYSROOT"
names=""
for p in $PACKAGES; do
  # arch-independent packages (cffi's Python half, pycparser, ...) have no :arm64 version
  if apt-cache show --no-all-versions "$p" 2>/dev/null | grep -x 'Architecture: all' >/dev/null; then
    names="$names $p"; else names="$names $p:arm64"; fi
done
(cd "$debs" && apt-get download -qq $names) || { apt-get update -qq && (cd "$debs" && apt-get download -qq $names); }
rm -rf "$SYSROOT"
mkdir -p "$SYSROOT"
for deb in "$debs"/*.deb; do dpkg -x "$deb" "$SYSROOT"; done
# Debian's python3.11 finds the packages in /usr/lib/python3/dist-packages (in SYSROOT).
qemu-aarch64 -L "$SYSROOT" "$SYSROOT/usr/bin/$PY" -c 'import cffi, _cffi_backend, packaging, ctypes; print("aarch64-sysroot: python", __import__("sys").version.split()[0], "cffi", cffi.__version__, __import__("platform").machine())'
echo $PACKAGES > "$STAMP"
