/* command.h: contract "command", version 1.1.
 *
 * What the host calls a command: it has a name and runs on a line of text.
 * Follows the rules in minildr.h: size first, append only, errors as values,
 * plugin-allocated outputs given back with release().
 *
 *   1.0  struct_size, release, name, run
 *   1.1  help                      (appended: a 1.0 plugin simply lacks it)
 */
#ifndef COMMAND_H
#define COMMAND_H

#include "minildr.h"

typedef struct command {
    size_t struct_size;            /* sizeof(command_t) as the plugin compiled it */
    void (*release)(void *memory); /* frees what run() hands out */
    /* The command's name: the plugin's constant string, never NULL. */
    const char *(*name)(void);
    /* Run on `line`; on MINILDR_OK, *output is a NUL-terminated UTF-8 string
     * the plugin allocated and the host gives back with release(). */
    minildr_status (*run)(const char *line, char **output, minildr_error *err);
    /* --- 1.1 --- one line of help: the plugin's constant string. */
    const char *(*help)(void);
} command_t;

#endif
