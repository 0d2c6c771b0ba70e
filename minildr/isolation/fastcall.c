/* The worker's hot path in C: serve binary call frames to numbers-only functions.
 *
 * minildr/isolation/fastcall.py compiles this file once per machine with the C
 * compiler the course already requires and loads it in the worker (cffi, ABI
 * mode: the GIL is released while mldr_serve runs, so the lifeline thread can
 * still end the worker). Python registers each function whose parameters and
 * result are integers, _Bool, char or double (at most MLDR_INTS integer and 8
 * double parameters, all passed in registers); mldr_serve then reads the socket
 * and answers every call frame to such a function itself (read, check, call,
 * fflush(NULL), reply: what worker.Server.call_frame does), and returns to
 * Python with the first bytes it does not handle (a JSON request, a call to any
 * other function, a frame that does not match, an argument out of its type's
 * range: Python's path then answers exactly as before, errors included).
 *
 * How a function of any such signature is called without a stub per signature:
 * on both machines integer and floating-point arguments go in two separate
 * register sequences, each in order (System V AMD64 psABI section 3.2.3,
 * "Parameter Passing": INTEGER class in %rdi, %rsi, %rdx, %rcx, %r8, %r9, SSE
 * class in %xmm0-%xmm7; AAPCS64 section 6.8.2, "Parameter passing rules": NGRN
 * over x0-x7, NSRN over v0-v7), so f(int a, double b, long c) receives what
 * g(int64 a, int64 c, ..., double b, ...) passes. Each integer is passed
 * sign- or zero-extended from its own type, so a callee reading only its low
 * bits, or relying on the extension clang expects, reads the right value.
 * Results come back in %rax / x0 (integers, read through their own type
 * here: the upper bits are unspecified) or %xmm0 / d0 (double).
 * Elsewhere this file is not built (fastcall.py says why).
 *
 * A frame to MLDR_ECHO (protocol.ECHO_HANDLE) is the bare round trip benchmarks
 * compare calls with, answered by this same loop with nothing called.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#if defined(__x86_64__)
#define MLDR_INTS 6
#elif defined(__aarch64__)
#define MLDR_INTS 8
#else
#error "fastcall.c knows the calling conventions of x86_64 and aarch64 only"
#endif
#define MLDR_DOUBLES 8
#define MLDR_PARAMS 16
#define MLDR_HANDLES 65536
#define MLDR_ECHO 0xFFFF             /* protocol.ECHO_HANDLE: a bare round trip, no call */

/* Type codes (fastcall.py TYPE_CODES): integers by size and signedness. */
enum { T_VOID = 'v', T_BOOL = '?', T_CHAR = 'c', T_DOUBLE = 'd',
       T_I8 = 'b', T_U8 = 'B', T_I16 = 'h', T_U16 = 'H',
       T_I32 = 'i', T_U32 = 'I', T_I64 = 'q', T_U64 = 'Q' };

struct function {
    void *address;
    int count;                       /* parameters */
    char result;                     /* a type code */
    char params[MLDR_PARAMS];        /* type codes */
    char wire[MLDR_PARAMS];          /* each one's kind in the frame: q, d or c */
    size_t length;                   /* the call frame's payload length */
};

static struct function *table[MLDR_HANDLES];
/* A call frame with no arguments to MLDR_ECHO is answered with a void reply and nothing
 * called (protocol.ECHO_HANDLE): the bare round trip benchmarks compare calls with. */
static const struct function echo = { NULL, 0, T_VOID, {0}, {0}, 7 };

typedef int64_t (*int_fn)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                          int64_t, double, double, double, double, double, double, double,
                          double);
typedef double (*double_fn)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                            int64_t, double, double, double, double, double, double, double,
                            double);

static int is_integer(char t)
{
    return strchr("bBhHiIqQ", t) != NULL && t != 0;
}

/* 1 if it is registered; 0 if its signature cannot be called from here. */
int mldr_register(int handle, void *address, char result, const char *params, int count)
{
    int ints = 0, doubles = 0;
    struct function *f;
    if (handle < 0 || handle >= MLDR_ECHO || count < 0 || count > MLDR_PARAMS)
        return 0;
    if (result != T_VOID && result != T_BOOL && result != T_CHAR && result != T_DOUBLE
        && !is_integer(result))
        return 0;
    f = calloc(1, sizeof *f);
    if (f == NULL)
        return 0;
    f->address = address;
    f->count = count;
    f->result = result;
    f->length = 7 + (size_t)count;
    for (int i = 0; i < count; i++) {
        char t = params[i];
        f->params[i] = t;
        if (t == T_DOUBLE) {
            doubles++;
            f->wire[i] = 'd';
            f->length += 8;
        } else if (t == T_CHAR) {
            ints++;
            f->wire[i] = 'c';
            f->length += 1;
        } else if (t == T_BOOL || is_integer(t)) {
            ints++;
            f->wire[i] = 'q';
            f->length += 8;
        } else {
            free(f);
            return 0;
        }
    }
    if (ints > MLDR_INTS || doubles > MLDR_DOUBLES) {
        free(f);
        return 0;
    }
    free(table[handle]);
    table[handle] = f;
    return 1;
}

void mldr_clear(void)
{
    for (int i = 0; i < MLDR_HANDLES; i++) {
        free(table[i]);
        table[i] = NULL;
    }
}

/* Does v fit the integer type t (as cffi checks an argument)? */
static int fits(char t, int64_t v)
{
    switch (t) {
    case T_BOOL: return v == 0 || v == 1;
    case T_I8: return v >= INT8_MIN && v <= INT8_MAX;
    case T_U8: return v >= 0 && v <= UINT8_MAX;
    case T_I16: return v >= INT16_MIN && v <= INT16_MAX;
    case T_U16: return v >= 0 && v <= UINT16_MAX;
    case T_I32: return v >= INT32_MIN && v <= INT32_MAX;
    case T_U32: return v >= 0 && v <= (int64_t)UINT32_MAX;
    case T_I64: return 1;
    case T_U64: return v >= 0;       /* larger ones come by JSON */
    default: return 0;
    }
}

/* The integer result in register r, read through its own type. */
static int64_t narrow(char t, int64_t r, int *unsigned_big)
{
    *unsigned_big = 0;
    switch (t) {
    case T_BOOL: return (uint8_t)r != 0;
    case T_I8: return (int8_t)r;
    case T_U8: return (uint8_t)r;
    case T_I16: return (int16_t)r;
    case T_U16: return (uint16_t)r;
    case T_I32: return (int32_t)r;
    case T_U32: return (uint32_t)r;
    case T_U64: *unsigned_big = r < 0; return r;
    default: return r;
    }
}

static int send_all(int sock, const char *data, size_t size)
{
    while (size) {
        ssize_t n = send(sock, data, size, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

static void put32(char *p, uint32_t v) { memcpy(p, &v, 4); }

/* The reply of a void function, nothing called (an echo's). */
static size_t void_reply(uint32_t seq, char *out)
{
    memcpy(out, "MLDr", 4);
    put32(out + 4, 5);
    put32(out + 8, seq);
    out[12] = 'v';
    return 13;
}

/* Call f with the frame's values; write its reply frame into out; its size, or 0 if
 * an argument is out of range (Python answers that call: nothing was called). */
static size_t call(const struct function *f, const char *values, uint32_t seq, char *out)
{
    int64_t ints[8] = {0};
    double doubles[8] = {0};
    int ni = 0, nd = 0, big;
    for (int i = 0; i < f->count; i++) {
        char t = f->params[i];
        if (t == T_DOUBLE) {
            memcpy(&doubles[nd++], values, 8);
            values += 8;
        } else if (t == T_CHAR) {
            ints[ni++] = (char)values[0];
            values += 1;
        } else {
            int64_t v;
            memcpy(&v, values, 8);
            if (!fits(t, v))
                return 0;
            ints[ni++] = v;
            values += 8;
        }
    }
    memcpy(out, "MLDr", 4);
    put32(out + 8, seq);
    if (f->result == T_DOUBLE) {
        double r = ((double_fn)f->address)(ints[0], ints[1], ints[2], ints[3], ints[4],
                                           ints[5], ints[6], ints[7], doubles[0], doubles[1],
                                           doubles[2], doubles[3], doubles[4], doubles[5],
                                           doubles[6], doubles[7]);
        fflush(NULL);                /* what the plugin printed goes before the reply */
        put32(out + 4, 13);
        out[12] = 'd';
        memcpy(out + 13, &r, 8);
        return 21;
    }
    int64_t r = ((int_fn)f->address)(ints[0], ints[1], ints[2], ints[3], ints[4], ints[5],
                                     ints[6], ints[7], doubles[0], doubles[1], doubles[2],
                                     doubles[3], doubles[4], doubles[5], doubles[6],
                                     doubles[7]);
    fflush(NULL);
    if (f->result == T_VOID) {
        put32(out + 4, 5);
        out[12] = 'v';
        return 13;
    }
    if (f->result == T_CHAR) {
        put32(out + 4, 6);
        out[12] = 'c';
        out[13] = (char)r;
        return 14;
    }
    r = narrow(f->result, r, &big);
    if (big) {                       /* beyond int64: the JSON reply Python would send */
        int n = snprintf(out + 8, 64, "[\"ok\",%u,%llu]", seq, (unsigned long long)r);
        memcpy(out, "MLDR", 4);
        put32(out + 4, (uint32_t)n);
        return 8 + (size_t)n;
    }
    put32(out + 4, 13);
    out[12] = 'q';
    memcpy(out + 13, &r, 8);
    return 21;
}

/* A call frame at data[0..have) that this loop answers: its function, else NULL.
 * *need: how many bytes it takes (0: not one of ours; larger than have: read on). */
static const struct function *ours(const char *data, size_t have, size_t *need)
{
    uint32_t length, seq;
    uint16_t handle;
    const struct function *f;
    *need = 0;
    if (have < 4)
        return memcmp(data, "MLDc", have) == 0 ? (*need = 15, NULL) : NULL;
    if (memcmp(data, "MLDc", 4) != 0)
        return NULL;
    if (have < 15) {
        *need = 15;
        return NULL;
    }
    memcpy(&length, data + 4, 4);
    memcpy(&seq, data + 8, 4);
    memcpy(&handle, data + 12, 2);
    f = handle == MLDR_ECHO ? &echo : table[handle];
    if (f == NULL || length != f->length || (unsigned char)data[14] != f->count)
        return NULL;
    *need = 8 + (size_t)length;
    if (have < *need)
        return NULL;
    if (memcmp(data + 15, f->wire, (size_t)f->count) != 0) {
        *need = 0;
        return NULL;
    }
    return f;
}

/* Serve calls on sock until bytes come that Python must handle.
 * buf holds *have bytes already read. Returns how many bytes (at buf's start) Python
 * takes, 0 at end of file, -errno if the socket failed. */
long mldr_serve(int sock, char *buf, long capacity, long have)
{
    char reply[96];
    for (;;) {
        size_t need;
        const struct function *f = ours(buf, (size_t)have, &need);
        if (f != NULL) {
            uint32_t seq;
            memcpy(&seq, buf + 8, 4);
            size_t size = f == &echo ? void_reply(seq, reply) : call(f, buf + 15 + f->count,
                                                                     seq, reply);
            if (size == 0)
                return have;                 /* out of range: Python's path says so */
            int failed = send_all(sock, reply, size);
            if (failed)
                return failed;
            memmove(buf, buf + need, (size_t)have - need);
            have -= (long)need;
            continue;
        }
        if (have > 0 && (need == 0 || need > (size_t)capacity))
            return have;                     /* not a call of ours */
        ssize_t n = recv(sock, buf + have, (size_t)(capacity - have), 0);
        if (n == 0)
            return have > 0 ? have : 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return have > 0 ? have : -errno;
        }
        have += n;
    }
}
