/* early.c: a plugin whose code runs inside dlopen, before dlopen refuses it.
 *
 * fast_answer is an IFUNC: the dynamic linker calls its resolver,
 * choose_answer, while it relocates the library, to learn which function
 * fast_answer stands for. `pick` holds fast_answer's address, so relocating
 * `pick` calls the resolver. Relocation then reaches answer()'s call to
 * missing_function, which nothing defines, and dlopen (RTLD_NOW) refuses the
 * library: after the resolver has run. */
int missing_function(void);                   /* declared, defined nowhere */

/* write(1, text, size) as a raw system call: during relocation the plugin's
 * own calls into the C library are not linked yet. */
static long say(const char *text, long size)
{
    long done;
#if defined(__x86_64__)
    __asm__ volatile ("syscall" : "=a"(done) : "a"(1L), "D"(1L), "S"(text), "d"(size)
                      : "rcx", "r11", "memory");
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = 64, x0 __asm__("x0") = 1;
    register long x1 __asm__("x1") = (long)text, x2 __asm__("x2") = size;
    __asm__ volatile ("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    done = x0;
#else
    done = size;   /* elsewhere: run silently */
#endif
    return done;
}

static int real_answer(void) { return 42; }

static int (*choose_answer(void))(void)       /* the IFUNC resolver */
{
    static const char text[] = "early.so: my IFUNC resolver is running inside dlopen\n";
    say(text, sizeof text - 1);
    return real_answer;
}

int fast_answer(void) __attribute__((ifunc("choose_answer")));
int (*pick)(void) = fast_answer;              /* filled during relocation */

int answer(void) { return missing_function(); }
