/* The C standard's <string.h>, as far as the example plugins use it (see ../README.md). */
#ifndef STUB_STRING_H
#define STUB_STRING_H
#include <stddef.h>
size_t strlen(const char *s);
#endif
