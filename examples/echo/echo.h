/* echo.h: a command plugin. A command has a name and runs on a line of text. */
#ifndef ECHO_H
#define ECHO_H

#include <stddef.h>

/* The command's name, owned by the plugin: do not free it. */
const char *name(void);

/* Copy `input` into `out` (at most `size` bytes, always NUL-terminated),
 * the way the command transforms it. Returns the length of the full
 * result, which is >= size when it did not fit (like snprintf). */
size_t run(const char *input, char *out, size_t size);

/* How many times run() was called since the plugin was loaded. */
extern int calls;

#endif
