/* add_main.c: add() as a program: `add 2 3` prints 5. The boundary is a new
 * process per call: fork, exec, arguments as text, the answer as text. */
#include <stdio.h>
#include <stdlib.h>

#include "add_decl.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: add A B\n");
        return 2;
    }
    printf("%d\n", add(atoi(argv[1]), atoi(argv[2])));
    return 0;
}
