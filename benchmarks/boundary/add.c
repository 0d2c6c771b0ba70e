/* add.c: the one small function every boundary in bench_boundaries.py calls.
 *
 * It is compiled four ways: into a minildr plugin (with adder.c), into a
 * cffi API-mode extension module, into a command-line program (add_main.c)
 * and into a C caller's timing loop (add_loop.c), so each boundary runs
 * exactly the same machine code. */
#include "add_decl.h"

int add(int a, int b)
{
    return a + b;
}
