/* qp.c: quoted-printable (RFC 2045, section 6.7) as an editor file format.
 *
 * Encoded, a file is lines of at most 76 characters of printable ASCII.
 * Decoding follows the RFC's rules:
 *   =XX         the byte with hex value XX (lower-case hex digits accepted)
 *   = at EOL    a soft line break: the line continues on the next one
 *   spaces and tabs at the end of a line were added in transport: dropped
 *   CRLF or LF  a line break of the text, kept as it was
 * and refuses, with the line and column, a '=' not followed by two hex
 * digits or a line break, and a byte that may not appear in encoded text.
 * The decoded bytes must be UTF-8, since the editor edits UTF-8 text.
 *
 * Encoding writes '=' as =3D, a space or tab at the end of a line as =20
 * or =09, other bytes outside '!'..'~' as =XX, and breaks lines longer than
 * 76 characters with soft line breaks, never inside an =XX.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t live_blocks = 0;

static void release(void *memory)
{
    if (memory != NULL) {
        live_blocks--;
        free(memory);
    }
}

static const char *name(void) { return "quoted-printable"; }
static const char *suffixes(void) { return ".qp .qpt"; }

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The offset of the first byte that is not valid UTF-8, or n if all are. */
static size_t utf8_error_at(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len; unsigned min;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) { len = 2; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; min = 0x10000; }
        else return i;
        if (i + len > n) return i;
        unsigned cp = c & (0x7F >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return n;
}

static minildr_status decode(const void *data, size_t size, minildr_bytes *text,
                             minildr_error *err)
{
    const unsigned char *in = data;
    unsigned char *out = malloc(size + 1);
    size_t o = 0, line = 1, start = 0;          /* start: offset of the current line */
    if (out == NULL)
        return minildr_fail(err, "out of memory (%zu bytes)", size + 1);
    while (start < size) {
        size_t eol = start, next;               /* [start, eol) is the line's content */
        while (eol < size && in[eol] != '\n') eol++;
        next = eol < size ? eol + 1 : eol;
        size_t brk = eol;                       /* where the line break starts */
        if (eol < size && eol > start && in[eol - 1] == '\r') brk = eol - 1;
        size_t end = brk;                       /* drop transport-added whitespace */
        while (end > start && (in[end - 1] == ' ' || in[end - 1] == '\t')) end--;
        int soft = end > start && in[end - 1] == '=';
        if (soft) end--;
        for (size_t i = start; i < end; i++) {
            unsigned char c = in[i];
            if (c == '=') {
                int hi = i + 1 < end ? hex_value(in[i + 1]) : -1;
                int lo = i + 2 < end ? hex_value(in[i + 2]) : -1;
                if (hi < 0 || lo < 0) {
                    free(out);
                    return minildr_fail(err, "line %zu, column %zu: '=' must be followed by "
                                        "two hex digits (=3D is '=') or end the line",
                                        line, i - start + 1);
                }
                out[o++] = (unsigned char)(hi * 16 + lo);
                i += 2;
            } else if ((c >= 33 && c <= 126) || c == ' ' || c == '\t') {
                out[o++] = c;
            } else {
                free(out);
                return minildr_fail(err, "line %zu, column %zu: byte 0x%02x may not appear in "
                                    "quoted-printable text (it must be written =%02X)",
                                    line, i - start + 1, c, c);
            }
        }
        if (!soft && eol < size)                /* a hard line break, kept as it was */
            for (size_t i = brk; i <= eol; i++) out[o++] = in[i];
        start = next;
        line++;
    }
    size_t bad = utf8_error_at(out, o);
    if (bad < o) {
        free(out);
        return minildr_fail(err, "the decoded text is not UTF-8 (byte %zu of the decoded "
                            "text); this editor edits UTF-8 files only", bad + 1);
    }
    live_blocks++;
    text->data = (char *)out;
    text->size = o;
    return MINILDR_OK;
}

#define MAX_LINE 76

static minildr_status encode(const void *text, size_t size, minildr_bytes *data,
                             minildr_error *err)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *in = text;
    /* Worst case: every byte is =XX, and a 3-byte soft break every 25 of them. */
    size_t capacity = 3 * size + 3 * (size / 24 + 1) + 8;
    char *out = malloc(capacity);
    size_t o = 0, col = 0;
    if (out == NULL)
        return minildr_fail(err, "out of memory (%zu bytes)", capacity);
    for (size_t i = 0; i < size; i++) {
        unsigned char c = in[i];
        if (c == '\n' || (c == '\r' && i + 1 < size && in[i + 1] == '\n')) {
            if (c == '\r') out[o++] = in[i++];  /* CRLF stays CRLF */
            out[o++] = '\n';
            col = 0;
            continue;
        }
        /* Where this line ends, to know if c is its last byte. */
        int last = i + 1 == size || in[i + 1] == '\n' ||
                   (in[i + 1] == '\r' && i + 2 < size && in[i + 2] == '\n');
        char token[3];
        size_t len;
        if (((c >= 33 && c <= 126) && c != '=') || ((c == ' ' || c == '\t') && !last)) {
            token[0] = (char)c; len = 1;
        } else {
            token[0] = '='; token[1] = hex[c >> 4]; token[2] = hex[c & 15]; len = 3;
        }
        /* Room for a soft break ('=') unless this token ends the line. */
        if (col + len > (last ? MAX_LINE : MAX_LINE - 1)) {
            out[o++] = '=';
            out[o++] = '\n';
            col = 0;
        }
        memcpy(out + o, token, len);
        o += len;
        col += len;
    }
    live_blocks++;
    data->data = out;
    data->size = o;
    return MINILDR_OK;
}

const file_format_t quoted_printable = {
    .struct_size = sizeof(file_format_t),
    .release = release,
    .name = name,
    .suffixes = suffixes,
    .decode = decode,
    .encode = encode,
};
