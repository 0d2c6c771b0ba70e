/* relocs.h: what the relocs test plugin exports. */
#include <stddef.h>
extern int counter;
const char *word(int i);
int sum_table(void);
int describe(int n, char *out, size_t size);
int answer(void);
int ptr_is_libc_strlen(void);
int double_it(int x);
extern size_t (*libc_strlen)(const char *);
