/* utf8: strict UTF-8 validation and code point counting (RFC 3629, Unicode Table 3-7 "well-formed byte
 * sequences"). Declared in util.h. */
#include <stddef.h>

#include "util.h"

size_t utf8_decode(const char *s, size_t len, unsigned *cp)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the first continuation byte */
    unsigned v;

    if (!s || len == 0)
        return 0;
    unsigned char c = p[0];
    if (c < 0x80) {
        need = 0, v = c;
    } else if (c >= 0xC2 && c <= 0xDF) {
        need = 1, v = c & 0x1Fu; /* C0/C1 would only encode overlong ASCII */
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2, v = c & 0x0Fu;
        if (c == 0xE0)
            lo = 0xA0; /* below: overlong 3-byte forms */
        else if (c == 0xED)
            hi = 0x9F; /* above: surrogates U+D800..U+DFFF */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3, v = c & 0x07u;
        if (c == 0xF0)
            lo = 0x90; /* below: overlong 4-byte forms */
        else if (c == 0xF4)
            hi = 0x8F; /* above: past U+10FFFF */
    } else {
        return 0; /* stray continuation byte, C0, C1 or F5..FF */
    }
    if (need > len - 1)
        return 0; /* truncated sequence */
    for (size_t k = 1; k <= need; k++) {
        unsigned char cc = p[k];
        if (k == 1 ? (cc < lo || cc > hi) : (cc < 0x80 || cc > 0xBF))
            return 0;
        v = v << 6 | (cc & 0x3Fu);
    }
    if (cp)
        *cp = v;
    return need + 1;
}

long utf8_length(const char *s, size_t len)
{
    size_t i = 0;
    long n = 0;

    if (!s)
        return len == 0 ? 0 : -1;
    while (i < len) {
        size_t k = utf8_decode(s + i, len - i, NULL);
        if (k == 0)
            return -1;
        i += k;
        n++;
    }
    return n;
}
