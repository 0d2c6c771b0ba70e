/* add_loop.c: add() called from a compiled host, `add_loop N` times, through
 * a function pointer (as a host calls a plugin's function after dlsym).
 * Prints the nanoseconds per call: what an in-process boundary costs when
 * the caller is C rather than Python. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "add_decl.h"

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000000L;
    int (*volatile call)(int, int) = add;     /* volatile: the compiler may not inline it */
    struct timespec start, end;
    int sum = 0;
    timespec_get(&start, TIME_UTC);
    for (long i = 0; i < n; i++)
        sum += call(2, 3);
    timespec_get(&end, TIME_UTC);
    double ns = (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec);
    printf("%.3f %d\n", ns / (double)n, sum == 5 * (int)n);
    return 0;
}
