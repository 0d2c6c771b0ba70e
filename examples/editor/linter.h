/* linter.h: contract "linter", version 1.1. Checks run when the editor saves.
 *
 *   1.0  struct_size, release, name, lint
 *   1.1  configure                 (appended: a 1.0 linter simply lacks it)
 *
 * Rules: see minildr.h.
 */
#ifndef LINTER_H
#define LINTER_H

#include <stdint.h>
#include "minildr.h"

/* One finding. Lines and columns count from 1; columns count characters
 * (UTF-8 code points), not bytes. */
typedef struct lint_diagnostic {
    uint32_t line;
    uint32_t column;
    const char *rule;              /* the plugin's constant string, e.g. "trailing-whitespace" */
    char message[160];             /* NUL-terminated */
} lint_diagnostic;

typedef struct linter {
    size_t struct_size;            /* sizeof(linter_t) as the plugin compiled it */
    void (*release)(void *memory); /* frees the array lint() returned */
    const char *(*name)(void);     /* the plugin's constant string */
    /* Check `text`; on MINILDR_OK, *items is ONE block of *count diagnostics
     * (NULL when there are none) that the host gives back with release(). */
    minildr_status (*lint)(const char *text, lint_diagnostic **items, size_t *count,
                           minildr_error *err);
    /* --- 1.1 --- set an option, e.g. ("max-line-length", "100"). */
    minildr_status (*configure)(const char *key, const char *value, minildr_error *err);
} linter_t;

#endif
