/* add_decl.h: the one declaration of add(), included by add.c itself and by
 * every caller compiled with it (the cffi API-mode wrapper, add_main.c,
 * add_loop.c), so the compiler checks the definition against the very
 * declaration the callers use: a mismatch is a compile error. */
#ifndef ADD_DECL_H
#define ADD_DECL_H

int add(int a, int b);

#endif
