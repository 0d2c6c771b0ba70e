/* greet.h: what the greet plugin exports, and nothing else. */
#ifndef GREET_H
#define GREET_H

/* A greeting owned by the plugin: the caller must not free it. */
const char *greet(void);

#endif
