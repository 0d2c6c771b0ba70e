/* broken.c: a plugin built against an outdated copy of the format contract.
 *
 * It compiles and would even run, but its decode() reads a NUL-terminated
 * string where the host passes bytes and a size: called through the host's
 * contract, it would read the wrong arguments. minildr refuses it at open,
 * because its recorded contract hash is not the host's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void release(void *memory) { free(memory); }
static const char *name(void) { return "rot13"; }
static const char *suffixes(void) { return ".rot13"; }

static minildr_status rotate(const char *in, minildr_bytes *out, minildr_error *err)
{
    size_t n = strlen(in);
    char *s = malloc(n + 1);
    if (s == NULL) return minildr_fail(err, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c >= 'a' && c <= 'z') c = (char)('a' + (c - 'a' + 13) % 26);
        else if (c >= 'A' && c <= 'Z') c = (char)('A' + (c - 'A' + 13) % 26);
        s[i] = c;
    }
    out->data = s;
    out->size = n;
    return MINILDR_OK;
}

const file_format_t rot13 = {
    .struct_size = sizeof(file_format_t),
    .release = release,
    .name = name,
    .suffixes = suffixes,
    .decode = rotate,
    .encode = rotate,
};
