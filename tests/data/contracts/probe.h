/* probe.h: a test contract with one method per conversion rule of minildr.h. */
#ifndef PROBE_H
#define PROBE_H

#include <stdint.h>
#include "minildr.h"

#define PROBE_NAME_SIZE 16

typedef struct probe_item {
    int32_t id;
    double weight;
    const char *kind;                 /* the plugin's constant string */
    char label[PROBE_NAME_SIZE];
} probe_item;

typedef struct probe {
    size_t struct_size;
    void (*release)(void *memory);
    /* 0: "probe"  1: NULL  2: bytes that are not UTF-8 */
    const char *(*text)(int which);
    /* returns `code`, with `message` in err */
    minildr_status (*status)(int code, const char *message, minildr_error *err);
    /* 0: a copy of `line`  1: OK but NULL  2: not UTF-8 */
    minildr_status (*output)(int which, const char *line, char **out, minildr_error *err);
    /* 0: two items  1: an item whose kind is NULL  2: NULL array, count 3  3: none */
    minildr_status (*items)(int which, probe_item **items, size_t *count, minildr_error *err);
    /* the bytes reversed, NUL bytes included */
    minildr_status (*reverse)(const void *data, size_t size, minildr_bytes *out,
                              minildr_error *err);
    /* several outputs: length in bytes and words of `s` */
    minildr_status (*measure)(const char *s, size_t *length, int *words, minildr_error *err);
    minildr_status (*nothing)(minildr_error *err);
    int (*add)(int a, int b);
    double (*half)(double x);
    _Bool (*is_even)(long n);
    void (*optional)(void);           /* left NULL by the plugin: absent */
} probe_t;

#endif
