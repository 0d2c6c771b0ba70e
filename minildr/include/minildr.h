/* minildr.h: what every minildr plugin may include.
 *
 * A plugin is built with `minildr.build` (or `python -m minildr build`),
 * which compiles your sources with these rules:
 *
 *   - Everything is hidden by default (-fvisibility=hidden). Only what the
 *     exports header declares is visible to the host; a `static` function,
 *     or any function the header does not declare, cannot be looked up.
 *   - The exports header is included into every source file first, so the
 *     compiler checks each definition against its declaration.
 *   - Exported variables are declared `extern` in the exports header and
 *     defined in exactly one source file.
 *   - MINILDR_PLUGIN_NAME and MINILDR_PLUGIN_VERSION are defined as string
 *     literals with the name and version given to build().
 *
 * The host compares MINILDR_ABI_VERSION (stamped into the plugin's
 * manifest) with its own before loading anything.
 */
#ifndef MINILDR_H
#define MINILDR_H

#define MINILDR_ABI_VERSION 1

#ifndef MINILDR_PLUGIN_NAME
#define MINILDR_PLUGIN_NAME "unknown"
#endif
#ifndef MINILDR_PLUGIN_VERSION
#define MINILDR_PLUGIN_VERSION "0.0.0"
#endif

/* ---------------------------------------------------------------------------
 * Contracts: how a host and a plugin call each other through a vtable.
 *
 * A contract is a header, shared by host and plugins, that declares a struct
 * of function pointers (a "vtable"). A plugin defines one variable of that
 * type, declares it `extern` in its exports header, and the host calls the
 * plugin only through it. minildr's Python proxies (minildr/proxy.py) follow
 * these rules; a host written in C would follow the same ones.
 *
 * 1. Size first. The vtable's first field is `size_t struct_size`, which the
 *    plugin sets to sizeof(its struct): `.struct_size = sizeof(command_t)`.
 *    The host reads it before anything else.
 *
 * 2. Append only (the rule behind Win32's cbSize structs: a struct that
 *    states its own size can grow at its end). Version MAJOR.MINOR of a contract only ever ADDS
 *    fields at the END of its structs. Then:
 *      - a host built against 1.2 loads a plugin built against 1.1: a method
 *        that lies beyond the plugin's struct_size is absent (the host never
 *        reads past it), and so is a method the plugin left NULL;
 *      - a host built against 1.1 loads a plugin built against 1.2: it sees
 *        the 1.1 prefix and ignores the rest.
 *    Changing, removing or reordering a field, or changing a type the
 *    methods use, needs a new MAJOR version; a plugin built against another
 *    major version is refused before it is loaded.
 *
 * 3. Errors are values. A method that can fail returns minildr_status and
 *    takes `minildr_error *err` as its LAST parameter: on failure it writes a
 *    NUL-terminated message (at most sizeof err->message bytes, truncated if
 *    longer) and returns MINILDR_ERROR. MINILDR_UNSUPPORTED means "this
 *    plugin does not do that". Any other value is a broken plugin.
 *    A method that cannot fail may return a value directly: an integer, or
 *    a `const char *` the plugin owns (never NULL).
 *
 * 4. Who owns what (strings are UTF-8):
 *    - inputs (`const char *`, `const void *data, size_t size`) belong to
 *      the host and are valid only during the call: copy what you keep;
 *    - a returned `const char *` belongs to the plugin and stays valid while
 *      it is loaded: the host copies it and never frees it;
 *    - outputs written through pointers (`char **`, `minildr_bytes *`, and
 *      `T **items, size_t *count` for an array of records) are allocated by
 *      the plugin, in ONE block each, and handed to the host, which copies
 *      them and then calls the vtable's `void (*release)(void *memory)`
 *      exactly once per block. A contract with such outputs must have a
 *      `release` field. Never free() memory from the other side: host and
 *      plugin may use different C runtimes;
 *    - outputs are the host's only when the status is MINILDR_OK. On any
 *      other status the host neither reads nor releases them, so the plugin
 *      frees what it allocated before failing.
 *    - a record (`T` above) holds integers, char arrays, and `const char *`
 *      fields that point at the plugin's own constant strings.
 * ------------------------------------------------------------------------- */
#include <stddef.h>

typedef enum minildr_status {
    MINILDR_OK = 0,            /* done; the outputs are the host's */
    MINILDR_ERROR = 1,         /* failed; err->message says why */
    MINILDR_UNSUPPORTED = 2    /* this plugin does not do that */
} minildr_status;

typedef struct minildr_error {
    char message[256];         /* written by the plugin, NUL-terminated */
} minildr_error;

typedef struct minildr_bytes {
    char *data;                /* allocated by the plugin, given back with release() */
    size_t size;               /* may contain NUL bytes */
} minildr_bytes;

/* `return minildr_fail(err, "line %d: %s", n, why);` (needs <stdio.h>). */
#define minildr_fail(err, ...) \
    (snprintf((err)->message, sizeof (err)->message, __VA_ARGS__), MINILDR_ERROR)

#endif /* MINILDR_H */
