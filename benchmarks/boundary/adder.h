/* adder.h: contract "adder", version 1.0: one method that cannot fail, so it
 * returns its value directly (rule 3 of minildr.h). */
#ifndef ADDER_H
#define ADDER_H

#include "minildr.h"

typedef struct adder {
    size_t struct_size;            /* sizeof(adder_t) as the plugin compiled it */
    int (*add)(int a, int b);
} adder_t;

#endif
