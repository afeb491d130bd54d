/* Fuzz target: lib/utf8.c (utf8_decode, utf8_length, utf8_valid), the UTF-8 check behind every text field, and
 * ai_text_sanitise, which makes upstream answers storable. Differential: a decoder written the other way
 * round (decode by bit pattern, then refuse overlong, surrogate and out-of-range values) must agree at every
 * offset. */
#include "fuzz.h"

#include "ai.h"
#include "util.h"

static size_t ref_decode(const unsigned char *p, size_t n, unsigned *cp)
{
    static const unsigned min_value[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t len;
    unsigned v;
    if (n == 0)
        return 0;
    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    if ((p[0] & 0xE0) == 0xC0)
        len = 2, v = p[0] & 0x1Fu;
    else if ((p[0] & 0xF0) == 0xE0)
        len = 3, v = p[0] & 0x0Fu;
    else if ((p[0] & 0xF8) == 0xF0)
        len = 4, v = p[0] & 0x07u;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (p[i] & 0x3Fu);
    }
    if (v < min_value[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    long count = 0;
    int valid = 1, has_nul = memchr(data, 0, size) != NULL;

    for (size_t i = 0; i < size; i++) {
        unsigned cp = 0xFFFFFFFFu, ref_cp = 0xFFFFFFFFu;
        size_t k = utf8_decode(s + i, size - i, &cp), ref = ref_decode(data + i, size - i, &ref_cp);
        FUZZ_CHECK(k == ref);
        FUZZ_CHECK(k == 0 || cp == ref_cp);
        FUZZ_CHECK(k == 0 || utf8_decode(s + i, k, NULL) == k); /* needs no byte past its own */
    }
    for (size_t i = 0; i < size && valid;) { /* the reference count */
        unsigned cp;
        size_t k = ref_decode(data + i, size - i, &cp);
        if (k == 0)
            valid = 0;
        i += k, count++;
    }
    FUZZ_CHECK(utf8_length(s, size) == (valid ? count : -1));
    FUZZ_CHECK(utf8_valid(s, size) == valid);
    FUZZ_CHECK(utf8_length(s, 0) == 0);

    buf_t out = {0};
    ai_text_sanitise(s, size, &out);
    FUZZ_CHECK(out.data != NULL);
    FUZZ_CHECK(utf8_length(out.data, out.len) >= 0);
    FUZZ_CHECK(memchr(out.data, 0, out.len) == NULL);
    FUZZ_CHECK(out.len <= 3 * size);
    if (valid && !has_nul)
        FUZZ_CHECK(out.len == size && memcmp(out.data, data, size) == 0);
    buf_free(&out);
    return 0;
}
