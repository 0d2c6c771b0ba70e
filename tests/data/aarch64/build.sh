#!/bin/sh
# Rebuilds the AArch64 test libraries (needs Debian's gcc-aarch64-linux-gnu).
# (binutils 2.40 ignores -z pack-relative-relocs on AArch64, so no DT_RELR file here.)
# They are committed so that the tests can read real AArch64 files on any machine.
set -e
cd "$(dirname "$0")"
CC=${CC:-aarch64-linux-gnu-gcc}
SRC=../../native_src/relocs.c
COMMON="-shared -fPIC -O2 -g0 -Wl,-z,max-page-size=4096 -Wl,--build-id=none -s"
$CC $COMMON -o relocs.so $SRC
$CC $COMMON -fno-plt -Wl,-z,now -o relocs-noplt-now.so $SRC
$CC $COMMON -fstack-protector-strong -D_FORTIFY_SOURCE=2 -o relocs-hardened.so $SRC
$CC $COMMON -Wl,--hash-style=sysv -o relocs-sysv.so $SRC
printf '__thread int per_thread = 7;\nint get(void) { return per_thread; }\n' > tls.c
$CC $COMMON -o tls.so tls.c
rm tls.c
