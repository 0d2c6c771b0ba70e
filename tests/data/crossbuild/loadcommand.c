/* loadcommand.c: a Windows host for the echo and upper DLLs: exported
 * variables and a contract's vtable, as a C program would use them.
 *
 *   loadcommand.exe echo.dll upper.dll
 *
 * echo exports functions and a variable (`calls`); upper exports one
 * `command_t` (contract "command", examples/command/command.h), a const
 * struct of function pointers that the Windows loader must relocate to
 * wherever it put the DLL. tests/test_crossbuild.py builds this with MinGW
 * and runs it under Wine. */
#include <windows.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include "command.h"

static FARPROC need(HMODULE dll, const char *name)
{
    FARPROC found = GetProcAddress(dll, name);
    if (found == NULL) {
        printf("GetProcAddress(%s) failed: error %lu\n", name, GetLastError());
        exit(1);
    }
    return found;
}

int wmain(int argc, wchar_t **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: loadcommand ECHO_DLL UPPER_DLL\n");
        return 2;
    }
    HMODULE echo = LoadLibraryW(argv[1]), upper = LoadLibraryW(argv[2]);
    if (echo == NULL || upper == NULL) {
        printf("LoadLibraryW failed: error %lu\n", GetLastError());
        return 1;
    }

    /* echo: two functions and a variable, each found by name. */
    size_t (*run)(const char *, char *, size_t) =
        (size_t (*)(const char *, char *, size_t))need(echo, "run");
    int *calls = (int *)need(echo, "calls");
    char out[32];
    run("hello", out, sizeof out);
    run("again", out, sizeof out);
    printf("echo run: %s, calls: %d\n", out, *calls);

    /* upper: the contract's vtable, called through its pointers. */
    const command_t *cmd = (const command_t *)need(upper, "upper");
    int64_t *live = (int64_t *)need(upper, "live_outputs");
    char *output = NULL;
    minildr_error err;
    minildr_status status = cmd->run("hi from wine", &output, &err);
    printf("upper %s: status %d, output %s, live outputs %" PRId64 "\n", cmd->name(),
           (int)status, output, *live);
    cmd->release(output);
    status = cmd->run("bad\x01line", &output, &err);
    printf("upper refuses: status %d, %s; live outputs %" PRId64 "\n", (int)status,
           err.message, *live);
    printf("struct_size %s\n", cmd->struct_size == sizeof(command_t) ? "ok" : "wrong");
    return FreeLibrary(upper) && FreeLibrary(echo) ? 0 : 1;
}
