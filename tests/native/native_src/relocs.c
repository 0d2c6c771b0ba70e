/* relocs.c: a plugin that makes the compiler and linker emit every kind of
 * dynamic relocation an ordinary C library has: pointers to its own data and
 * functions (RELATIVE, or DT_RELR when packed), pointers to libc's functions
 * in data (64), calls into libc (JUMP_SLOT, or GLOB_DAT with -fno-plt), an
 * exported variable (GLOB_DAT), an IFUNC (IRELATIVE), and libc entries the
 * stack protector and _FORTIFY_SOURCE bring in. */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

int counter = 0;
static const char *words[] = {"zero", "one", "two", "three", "four", "five", "six", "seven"};
static int table[] = {1, 2, 3, 4, 5, 6, 7, 8};
static int *pointers[] = {&table[0], &table[1], &table[2], &table[3], &table[4], &table[5],
                          &table[6], &table[7]};
size_t (*libc_strlen)(const char *) = strlen;      /* R_X86_64_64 against strlen */

/* An IFUNC: the loader calls the resolver, which picks the implementation. */
static int answer_generic(void) { return 42; }
static int (*resolve_answer(void))(void) { return answer_generic; }
int answer(void) __attribute__((ifunc("resolve_answer")));          /* exported: GLOB_DAT */
static int twice_generic(int x) { return 2 * x; }
static int (*resolve_twice(void))(int) { return twice_generic; }
__attribute__((visibility("hidden"))) int twice(int) __attribute__((ifunc("resolve_twice")));
                                                 /* internal (hidden): IRELATIVE */

int double_it(int x)
{
    return twice(x);
}

const char *word(int i)
{
    counter++;
    return (i >= 0 && i < 8) ? words[i] : "many";
}

int sum_table(void)
{
    int sum = 0;
    for (int i = 0; i < 8; i++)
        sum += *pointers[i];
    return sum;
}

int describe(int n, char *out, size_t size)
{
    char local[64];
    snprintf(local, sizeof local, "%d is %s", n, word(n));
    size_t len = libc_strlen(local);
    if (len >= size)
        len = size - 1;
    memcpy(out, local, len);
    out[len] = '\0';
    return (int)len;
}

int ptr_is_libc_strlen(void)
{
    return libc_strlen == strlen;
}
