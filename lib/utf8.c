/* utf8: strict UTF-8 decoding and code point counting (RFC 3629: no overlongs, surrogates or code points past
 * U+10FFFF) on libunistring's u8_* functions. Declared in util.h. */
#include <stddef.h>
#include <unictype.h>
#include <unistr.h>

#include "util.h"

size_t utf8_decode(const char *s, size_t len, unsigned *cp)
{
    ucs4_t uc;
    if (!s || len == 0)
        return 0;
    int n = u8_mbtoucr(&uc, (const uint8_t *)s, len); /* -1 invalid, -2 truncated */
    if (n <= 0)
        return 0;
    if (cp)
        *cp = uc;
    return (size_t)n;
}

long utf8_length(const char *s, size_t len)
{
    if (!s)
        return len == 0 ? 0 : -1;
    if (u8_check((const uint8_t *)s, len) != NULL)
        return -1;
    return (long)u8_mbsnlen((const uint8_t *)s, len);
}

int utf8_valid(const char *s, size_t len)
{
    return len == 0 || (s && u8_check((const uint8_t *)s, len) == NULL);
}

int utf8_is_space(unsigned cp)
{
    return uc_is_property_white_space(cp);
}
