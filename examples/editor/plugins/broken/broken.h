/* broken.h: a "rot13" format built against the wrong format.h (see format.h here). */
#ifndef BROKEN_H
#define BROKEN_H

extern const file_format_t rot13;

#endif
