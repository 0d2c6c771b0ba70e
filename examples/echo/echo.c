/* echo.c: a command plugin that echoes its input back, louder. */
#include <ctype.h>
#include <string.h>

int calls = 0;

const char *name(void)
{
    return "echo";
}

size_t run(const char *input, char *out, size_t size)
{
    size_t n = strlen(input);
    calls++;
    for (size_t i = 0; size > 0 && i < size - 1 && i < n; i++)
        out[i] = (char)toupper((unsigned char)input[i]);
    if (size > 0)
        out[n < size ? n : size - 1] = '\0';
    return n;
}
