/* qp.h: the quoted-printable file format (RFC 2045, section 6.7), contract format 1.0. */
#ifndef QP_H
#define QP_H

#include <stdint.h>

extern const file_format_t quoted_printable;

/* Blocks handed to the host and not yet released (for tests). */
extern int64_t live_blocks;

#endif
