/* The C standard's <ctype.h>, as far as the example plugins use it (see ../README.md). */
#ifndef STUB_CTYPE_H
#define STUB_CTYPE_H
int toupper(int c);
#endif
