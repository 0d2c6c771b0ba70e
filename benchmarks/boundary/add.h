/* add.h: what the boundary plugin exports: the function itself, and the same
 * function behind the "adder" contract's vtable. */
#ifndef ADD_H
#define ADD_H

int add(int a, int b);
extern const adder_t adder;

#endif
