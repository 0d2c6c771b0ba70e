/* probe_plugin.c: implements probe.h, correctly and (in two variables) not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

long live = 0;                    /* blocks handed out and not yet released */
long releases = 0;

static void release(void *memory)
{
    releases++;
    if (memory != NULL) { live--; free(memory); }
}

static void *block(size_t size) { void *p = malloc(size); if (p) live++; return p; }

static const char *text(int which)
{
    return which == 0 ? "probe" : which == 1 ? NULL : "caf\xe9";
}

static minildr_status status(int code, const char *message, minildr_error *err)
{
    snprintf(err->message, sizeof err->message, "%s", message);
    return (minildr_status)code;
}

static minildr_status output(int which, const char *line, char **out, minildr_error *err)
{
    if (which == 1) return MINILDR_OK;
    const char *s = which == 0 ? line : "\xff\xfe";
    char *copy = block(strlen(s) + 1);
    if (copy == NULL) return minildr_fail(err, "out of memory");
    strcpy(copy, s);
    *out = copy;
    return MINILDR_OK;
}

static minildr_status items(int which, probe_item **items, size_t *count, minildr_error *err)
{
    if (which == 2) { *count = 3; return MINILDR_OK; }
    if (which == 3) { *items = NULL; *count = 0; return MINILDR_OK; }
    probe_item *a = block(2 * sizeof *a);
    if (a == NULL) return minildr_fail(err, "out of memory");
    a[0] = (probe_item){ 1, 0.5, "first", "alpha" };
    a[1] = (probe_item){ -2, 2.25, which == 1 ? NULL : "second", "b\xc3\xa9ta" };
    *items = a;
    *count = 2;
    return MINILDR_OK;
}

static minildr_status reverse(const void *data, size_t size, minildr_bytes *out,
                              minildr_error *err)
{
    const char *in = data;
    char *r = block(size ? size : 1);
    if (r == NULL) return minildr_fail(err, "out of memory");
    for (size_t i = 0; i < size; i++) r[i] = in[size - 1 - i];
    out->data = r;
    out->size = size;
    return MINILDR_OK;
}

static minildr_status measure(const char *s, size_t *length, int *words, minildr_error *err)
{
    int n = 0, in_word = 0;
    for (const char *p = s; *p; p++) {
        if (*p == ' ') in_word = 0;
        else if (!in_word) { in_word = 1; n++; }
    }
    *length = strlen(s);
    *words = n;
    return MINILDR_OK;
}

static minildr_status nothing(minildr_error *err) { return MINILDR_OK; }
static int add(int a, int b) { return a + b; }
static double half(double x) { return x / 2; }
static _Bool is_even(long n) { return n % 2 == 0; }

const probe_t probe = {
    .struct_size = sizeof(probe_t), .release = release, .text = text, .status = status,
    .output = output, .items = items, .reverse = reverse, .measure = measure,
    .nothing = nothing, .add = add, .half = half, .is_even = is_even, .optional = NULL,
};

/* struct_size not set: the host must refuse to guess the layout. */
const probe_t unsized = { .release = release, .text = text };

/* Hands out memory but gives the host no way to free it. */
const probe_t no_release = { .struct_size = sizeof(probe_t), .output = output };

int not_a_vtable(void) { return 1; }
