/* format.h as an old fork had it: decode took a C string, so NUL bytes were
 * lost. Still labelled 1.0, so its hash differs from the host's format 1.0:
 * the editor must refuse this plugin before loading it. */
#ifndef FORMAT_H
#define FORMAT_H

#include "minildr.h"

typedef struct file_format {
    size_t struct_size;
    void (*release)(void *memory);
    const char *(*name)(void);
    const char *(*suffixes)(void);
    minildr_status (*decode)(const char *data, minildr_bytes *text, minildr_error *err);
    minildr_status (*encode)(const char *text, minildr_bytes *data, minildr_error *err);
} file_format_t;

#endif
