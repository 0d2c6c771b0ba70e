/* lint.c: a linter for the whitespace mistakes every editor warns about.
 *
 * Rules (the names a diagnostic carries):
 *   trailing-whitespace    spaces or tabs before the end of a line
 *   tab                    a tab character (the first one of each line)
 *   line-too-long          more than max-line-length characters (default 79)
 *   missing-final-newline  a non-empty text that does not end with a newline
 * Lines end with LF or CRLF; columns count UTF-8 characters, from 1.
 * configure("max-line-length", "N") sets the limit (contract linter 1.1).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t live_blocks = 0;
static unsigned long max_line_length = 79;

static void release(void *memory)
{
    if (memory != NULL) {
        live_blocks--;
        free(memory);
    }
}

static const char *name(void) { return "whitespace"; }

/* A growing array of diagnostics: one block, as the contract requires. */
struct list { lint_diagnostic *items; size_t count, capacity; };

static int add(struct list *l, size_t line, size_t column, const char *rule,
               const char *message)
{
    if (l->count == l->capacity) {
        size_t capacity = l->capacity ? 2 * l->capacity : 16;
        lint_diagnostic *items = realloc(l->items, capacity * sizeof *items);
        if (items == NULL) return -1;
        l->items = items;
        l->capacity = capacity;
    }
    lint_diagnostic *d = &l->items[l->count++];
    d->line = (uint32_t)line;
    d->column = (uint32_t)column;
    d->rule = rule;
    snprintf(d->message, sizeof d->message, "%s", message);
    return 0;
}

static int is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

static minildr_status lint(const char *text, lint_diagnostic **items, size_t *count,
                           minildr_error *err)
{
    struct list l = { NULL, 0, 0 };
    size_t n = strlen(text), start = 0, line = 1;
    int failed = 0;
    while (start < n && !failed) {
        size_t eol = start;
        while (eol < n && text[eol] != '\n') eol++;
        size_t end = eol;                           /* the line without its CR */
        if (eol < n && end > start && text[end - 1] == '\r') end--;
        size_t chars = 0, first_tab = 0, trailing = 0;  /* columns, 0 = none */
        for (size_t i = start; i < end; i++) {
            unsigned char c = (unsigned char)text[i];
            if (is_continuation(c)) continue;
            chars++;
            if (c == '\t' && !first_tab) first_tab = chars;
            if (c == ' ' || c == '\t') { if (!trailing) trailing = chars; }
            else trailing = 0;
        }
        char message[160];
        if (trailing) {
            snprintf(message, sizeof message, "%zu whitespace character(s) at the end of "
                     "the line", chars - trailing + 1);
            failed |= add(&l, line, trailing, "trailing-whitespace", message);
        }
        if (first_tab)
            failed |= add(&l, line, first_tab, "tab", "tab character; indent with spaces");
        if (chars > max_line_length) {
            snprintf(message, sizeof message, "line is %zu characters long, more than %lu",
                     chars, max_line_length);
            failed |= add(&l, line, max_line_length + 1, "line-too-long", message);
        }
        if (eol == n)                               /* the last line, with no newline */
            failed |= add(&l, line, chars + 1, "missing-final-newline",
                          "no newline at the end of the file");
        start = eol + 1;
        line++;
    }
    if (failed) {
        free(l.items);
        return minildr_fail(err, "out of memory after %zu diagnostics", l.count);
    }
    if (l.count) live_blocks++;
    *items = l.items;
    *count = l.count;
    return MINILDR_OK;
}

static minildr_status configure(const char *key, const char *value, minildr_error *err)
{
    if (strcmp(key, "max-line-length") != 0)
        return minildr_fail(err, "unknown option '%s'; this linter has: max-line-length", key);
    char *end;
    unsigned long v = strtoul(value, &end, 10);
    if (*value == '\0' || *end != '\0' || *value == '-' || v == 0 || v > 100000)
        return minildr_fail(err, "max-line-length must be a whole number from 1 to 100000, "
                            "not '%s'", value);
    max_line_length = v;
    return MINILDR_OK;
}

const linter_t whitespace = {
    .struct_size = sizeof(linter_t),
    .release = release,
    .name = name,
    .lint = lint,
    .configure = configure,
};
