/* lint.h: the whitespace linter, contract linter 1.1. */
#ifndef LINT_H
#define LINT_H

#include <stdint.h>

extern const linter_t whitespace;

/* Blocks handed to the host and not yet released (for tests). */
extern int64_t live_blocks;

#endif
