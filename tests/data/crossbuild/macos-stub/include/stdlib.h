/* The C standard's <stdlib.h>, as far as the example plugins use it (see ../README.md). */
#ifndef STUB_STDLIB_H
#define STUB_STDLIB_H
#include <stddef.h>
void *malloc(size_t size);
void free(void *ptr);
#endif
