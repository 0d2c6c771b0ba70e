/* upper.c: a command that upper-cases ASCII letters, and refuses control characters.
 *
 * Its output is allocated with malloc and freed only by its own release(),
 * which the host calls once per output; live_outputs counts the difference
 * so that a test can see a leak or a double release. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t live_outputs = 0;

static void release(void *memory)
{
    if (memory != NULL) {
        live_outputs--;
        free(memory);
    }
}

static const char *name(void)
{
    return "upper";
}

static minildr_status run(const char *line, char **output, minildr_error *err)
{
    size_t n = strlen(line);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c == 0x7f)
            return minildr_fail(err, "control character 0x%02x at byte %zu: a command "
                                "takes one line of text", c, i + 1);
    }
    char *out = malloc(n + 1);
    if (out == NULL)
        return minildr_fail(err, "out of memory (%zu bytes)", n + 1);
    for (size_t i = 0; i < n; i++) {
        char c = line[i];
        out[i] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
    }
    out[n] = '\0';
    live_outputs++;
    *output = out;
    return MINILDR_OK;
}

static const char *help(void)
{
    return "upper LINE: the line with its ASCII letters in capitals";
}

const command_t upper = {
    .struct_size = sizeof(command_t),
    .release = release,
    .name = name,
    .run = run,
    .help = help,
};
