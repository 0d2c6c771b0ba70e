/* greet.c: the smallest plugin. */
#include <minildr.h>

/* Not in greet.h, so not exported: the host cannot look it up. */
static const char *message(void)
{
    return "Hello from the greet plugin (version " MINILDR_PLUGIN_VERSION ")";
}

const char *greet(void)
{
    return message();
}
