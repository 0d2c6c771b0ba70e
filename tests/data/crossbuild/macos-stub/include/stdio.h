/* The C standard's <stdio.h>, as far as the example plugins use it (see ../README.md). */
#ifndef STUB_STDIO_H
#define STUB_STDIO_H
#include <stddef.h>
int snprintf(char *restrict s, size_t n, const char *restrict format, ...);
#endif
