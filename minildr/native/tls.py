"""Thread-local storage: variables with one copy per thread (`__thread`, C11 `_Thread_local`).

Source: Ulrich Drepper, "ELF Handling For Thread-Local Storage" (2013
revision). Each module with a PT_TLS segment has a TLS *block*, an image
(.tdata, then zeros for .tbss) copied once per thread (section 2). On
x86-64 (variant II, section 3.4.6 and figure 2) the thread pointer, %fs,
points at the thread's control block, whose first word points at itself;
the blocks of the libraries loaded at start-up sit just below it at fixed
offsets, the "static TLS", so code compiled for the initial-exec model
(section 4.3.6) reaches a variable at %fs plus a constant that the loader
writes into the GOT: R_X86_64_TPOFF64, "the offset of the variable from
the thread pointer" (section 4.3.6 and the relocation table of 4.4).

What this loader does, and why it is enough for what libraries ask:

- initial-exec references into libraries the system loader already
  loaded (libm's and libstdc++'s `errno`, libc's resolver state):
  `dlvsym` on a TLS symbol returns the variable's address *in the calling
  thread*; minus this thread's thread pointer it is the TPOFF64 value, the
  same in every thread because the block is in static TLS. It checks that
  the address really lies in the static TLS area just below the thread
  pointer, and refuses otherwise (a library glibc itself loaded later has
  its block elsewhere, and no constant offset reaches it).
- a library's own PT_TLS block (the general-dynamic model: DTPMOD64,
  DTPOFF64 and calls to __tls_get_addr, section 4.1.6) is not
  implemented: such a library is refused before anything is mapped.
"""
from __future__ import annotations

from .libc import THREAD_SELF, ffi, libc

STATIC_TLS_LIMIT = 1 << 20          # static TLS is small: start-up modules plus glibc's surplus


def thread_pointer() -> int:
    """This thread's thread pointer (x86-64's %fs base).

    glibc's pthread_self() is the address of the thread's `struct pthread`,
    whose first member is the TCB (tcbhead_t) the thread pointer points at:
    on x86-64 the two are one address, and its first word points at itself
    (Drepper, section 3.4.6), which is checked.
    """
    tp = libc.pthread_self()
    if ffi.cast(THREAD_SELF, tp)[0] != tp:
        raise RuntimeError("the thread pointer is not where glibc on x86-64 keeps it")
    return tp


def tp_offset(address: int) -> int | None:
    """TPOFF64 for a variable at `address` in this thread: its offset from the thread pointer,
    or None if it is not in static TLS (then no constant offset reaches it in every thread)."""
    offset = address - thread_pointer()
    return offset if -STATIC_TLS_LIMIT <= offset < 0 else None
