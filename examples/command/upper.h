/* upper.h: the upper plugin exports one command (contract command 1.1). */
#ifndef UPPER_H
#define UPPER_H

#include <stdint.h>

extern const command_t upper;

/* How many output strings are allocated and not yet released (for tests). */
extern int64_t live_outputs;

#endif
