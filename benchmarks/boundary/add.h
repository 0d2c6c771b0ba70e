/* add.h: what the boundary plugin exports: the function itself, the same
 * function behind the "adder" contract's vtable, and count_spaces (payload.c),
 * whose argument is data. */
#ifndef ADD_H
#define ADD_H

#include <stdint.h>

int add(int a, int b);
extern const adder_t adder;
int64_t count_spaces(const char *text);

#endif
