/* loadgreet.c: a Windows host for the greet DLL, as a C program would use it.
 *
 *   loadgreet.exe greet.dll
 *
 * Loads the DLL with LoadLibraryW, calls greet() through GetProcAddress,
 * checks that what greet.h does not declare is not exported, and finds the
 * minildr manifest section in the DLL as the Windows loader mapped it.
 * tests/test_crossbuild.py builds it with MinGW and runs it under Wine. */
#include <windows.h>
#include <stdio.h>
#include <string.h>

int wmain(int argc, wchar_t **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: loadgreet DLL\n");
        return 2;
    }
    HMODULE dll = LoadLibraryW(argv[1]);
    if (dll == NULL) {
        printf("LoadLibraryW failed: error %lu\n", GetLastError());
        return 1;
    }
    const char *(*greet)(void) = (const char *(*)(void))GetProcAddress(dll, "greet");
    if (greet == NULL) {
        printf("GetProcAddress(greet) failed: error %lu\n", GetLastError());
        return 1;
    }
    printf("greet: %s\n", greet());
    printf("message exported: %s\n", GetProcAddress(dll, "message") ? "yes" : "no");
    printf("minildr_manifest exported: %s\n",
           GetProcAddress(dll, "minildr_manifest") ? "yes" : "no");

    /* The HMODULE is the DLL's base address: its headers, then its sections. */
    IMAGE_NT_HEADERS *nt = (IMAGE_NT_HEADERS *)((char *)dll + ((IMAGE_DOS_HEADER *)dll)->e_lfanew);
    IMAGE_SECTION_HEADER *section = IMAGE_FIRST_SECTION(nt);
    for (WORD i = 0; i < nt->FileHeader.NumberOfSections; i++, section++) {
        if (memcmp(section->Name, ".minildr", 8) == 0) {
            const char *note = (const char *)dll + section->VirtualAddress;
            printf("manifest section mapped: owner %s, %u bytes of JSON\n",
                   note + 12, ((const unsigned *)note)[1]);
        }
    }
    return FreeLibrary(dll) ? 0 : 1;
}
