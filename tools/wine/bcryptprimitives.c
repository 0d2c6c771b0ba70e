/* bcryptprimitives.dll for wine 8 (Debian 12), which lacks it: Rust >= 1.78
 * programs (cryptography's and rpds-py's wheels, Go >= 1.22) import ProcessPrng
 * from it for random bytes. Newer wine has it; this stand-in forwards to
 * RtlGenRandom (advapi32's SystemFunction036). Only for
 * tools/windows-under-wine.sh; never part of the course. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
