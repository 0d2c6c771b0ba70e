/* gcc.exe for a Windows Python running under wine: hands its command line to
 * the Linux side (tools/wine/cc_bridge.py), which runs Debian's MinGW-w64 gcc
 * on it, and replays that gcc's output and exit status as its own.
 *
 * Why a bridge: wine cannot start a Linux program as a child it can wait on,
 * and zig's Windows build needs file locking that wine 8 lacks. Only used by
 * tools/windows-under-wine.sh; never part of the course.
 *
 * Protocol (files in the folder "spool" beside this exe):
 *   <id>.req  UTF-8: the current directory, then each argument, each ended by NUL
 *   <id>.res  written by the bridge: "<exit status>\n<stdout length>\n",
 *             then stdout's bytes, then stderr's bytes
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <shellapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_utf8(FILE *f, const wchar_t *w) {
    int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, NULL, 0, NULL, NULL);
    char *buf = malloc(n);
    WideCharToMultiByte(CP_UTF8, 0, w, -1, buf, n, NULL, NULL);
    fwrite(buf, 1, n, f);          /* n counts the NUL: the field separator */
    free(buf);
}

static void write_all(HANDLE h, const char *p, size_t n) {
    DWORD done;
    while (n > 0 && WriteFile(h, p, (DWORD)n, &done, NULL) && done > 0) { p += done; n -= done; }
}

int wmain(void) {
    int argc;
    wchar_t **argv = CommandLineToArgvW(GetCommandLineW(), &argc);
    wchar_t spool[MAX_PATH], alive[MAX_PATH], tmp[MAX_PATH], req[MAX_PATH], res[MAX_PATH];
    wchar_t cwd[MAX_PATH];
    GetModuleFileNameW(NULL, spool, MAX_PATH);
    wcsrchr(spool, L'\\')[1] = 0;
    wcscat(spool, L"spool");
    swprintf(alive, MAX_PATH, L"%ls\\bridge.alive", spool);
    if (GetFileAttributesW(alive) == INVALID_FILE_ATTRIBUTES) {
        fprintf(stderr, "gcc (wine bridge): the bridge is not running; start it with "
                        "tools/windows-under-wine.sh\n");
        return 127;
    }
    unsigned long long id = ((unsigned long long)GetCurrentProcessId() << 32) ^ GetTickCount64();
    swprintf(tmp, MAX_PATH, L"%ls\\%llx.tmp", spool, id);
    swprintf(req, MAX_PATH, L"%ls\\%llx.req", spool, id);
    swprintf(res, MAX_PATH, L"%ls\\%llx.res", spool, id);

    FILE *f = _wfopen(tmp, L"wb");
    if (!f) { fprintf(stderr, "gcc (wine bridge): cannot write to the spool\n"); return 127; }
    GetCurrentDirectoryW(MAX_PATH, cwd);
    put_utf8(f, cwd);
    for (int i = 1; i < argc; i++) put_utf8(f, argv[i]);
    fclose(f);
    MoveFileW(tmp, req);

    for (int waited = 0; GetFileAttributesW(res) == INVALID_FILE_ATTRIBUTES; waited += 5) {
        if (waited > 600000) { fprintf(stderr, "gcc (wine bridge): no answer in 10 min\n"); return 127; }
        Sleep(5);
    }
    f = _wfopen(res, L"rb");
    int status = 127;
    size_t out_len = 0;
    if (!f || fscanf(f, "%d\n%zu\n", &status, &out_len) != 2) {
        fprintf(stderr, "gcc (wine bridge): unreadable answer\n");
        return 127;
    }
    char buf[65536];
    size_t n, left = out_len;
    HANDLE out = GetStdHandle(STD_OUTPUT_HANDLE), err = GetStdHandle(STD_ERROR_HANDLE);
    while ((n = fread(buf, 1, left && left < sizeof buf ? left : sizeof buf, f)) > 0) {
        if (left) { write_all(out, buf, n); left -= n; }
        else write_all(err, buf, n);
    }
    fclose(f);
    DeleteFileW(res);
    return status;
}
