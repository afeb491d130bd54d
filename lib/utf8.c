/* utf8: strict UTF-8 validation and code point counting (RFC 3629, Unicode Table 3-7 "well-formed byte
 * sequences"). Declared in util.h. */
#include <stddef.h>

#include "util.h"

long utf8_length(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    long n = 0;

    if (!s)
        return len == 0 ? 0 : -1;
    while (i < len) {
        unsigned char c = p[i];
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the first continuation byte */

        if (c < 0x80) {
            need = 0;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1; /* C0/C1 would only encode overlong ASCII */
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* below: overlong 3-byte forms */
            else if (c == 0xED)
                hi = 0x9F; /* above: surrogates U+D800..U+DFFF */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90; /* below: overlong 4-byte forms */
            else if (c == 0xF4)
                hi = 0x8F; /* above: past U+10FFFF */
        } else {
            return -1; /* stray continuation byte, C0, C1 or F5..FF */
        }
        if (need > len - i - 1)
            return -1; /* truncated sequence */
        for (size_t k = 1; k <= need; k++) {
            unsigned char cc = p[i + k];
            if (k == 1 ? (cc < lo || cc > hi) : (cc < 0x80 || cc > 0xBF))
                return -1;
        }
        i += need + 1;
        n++;
    }
    return n;
}
