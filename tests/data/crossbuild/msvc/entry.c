/* entry.c: the DLL entry point that MSVC's C runtime would otherwise provide.
 * There is no MSVC runtime on Linux, so the clang-cl build links none (/Zl)
 * and only builds plugins that call no C library function (greet). */
int __stdcall _DllMainCRTStartup(void *module, unsigned long reason, void *reserved)
{
    (void)module; (void)reason; (void)reserved;
    return 1;
}
