/* payload.c: a function whose argument is data, to measure what crossing a
 * boundary costs per byte: it reads every byte of `text` once. */
#include <stdint.h>

int64_t count_spaces(const char *text)
{
    int64_t n = 0;
    for (; *text; text++)
        n += (*text == ' ');
    return n;
}
