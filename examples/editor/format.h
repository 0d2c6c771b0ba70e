/* format.h: contract "format", version 1.0. A file format the editor can open and save.
 *
 * decode() turns the bytes of a file into the text the editor shows;
 * encode() turns the text back into the file's bytes. Both hand their result
 * to the host as a minildr_bytes the plugin allocated; the host copies it
 * and gives it back with release(). Rules: see minildr.h.
 */
#ifndef FORMAT_H
#define FORMAT_H

#include "minildr.h"

typedef struct file_format {
    size_t struct_size;            /* sizeof(file_format_t) as the plugin compiled it */
    void (*release)(void *memory); /* frees the data of a minildr_bytes this plugin returned */
    /* The format's name, e.g. "quoted-printable": the plugin's constant string. */
    const char *(*name)(void);
    /* File name suffixes it handles, space-separated, e.g. ".qp .qpt". */
    const char *(*suffixes)(void);
    /* File bytes -> text (UTF-8). MINILDR_ERROR with the line and column of bad input. */
    minildr_status (*decode)(const void *data, size_t size, minildr_bytes *text,
                             minildr_error *err);
    /* Text -> file bytes. */
    minildr_status (*encode)(const void *text, size_t size, minildr_bytes *data,
                             minildr_error *err);
} file_format_t;

#endif
