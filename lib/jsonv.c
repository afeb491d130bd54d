#include "jsonv.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

/* Bytes of the White_Space code point that starts s (0: none). */
static size_t space_prefix(const char *s, size_t len)
{
    unsigned cp;
    size_t n = utf8_decode(s, len, &cp);
    return n && utf8_is_space(cp) ? n : 0;
}

/* Bytes of the White_Space code point that ends s[0..len) (0: none). The last code point starts at the last
 * byte that is not a continuation byte (at most 3 continuation bytes back). */
static size_t space_suffix(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = len;
    unsigned cp;
    while (i > 0 && len - i < 3 && (p[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0)
        return 0;
    size_t n = utf8_decode(s + i - 1, len - i + 1, &cp);
    return n == len - i + 1 && utf8_is_space(cp) ? n : 0;
}

int jsonv_string(json_object *obj, const char *field, int required, int trim, size_t min, size_t max, char *out_buf,
                 size_t out_size, char *err)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(obj, field, &v) || v == NULL) {
        if (required) {
            snprintf(err, JSONV_ERRLEN, "%s is required.", field);
            return -1;
        }
        return 1;
    }
    if (!json_object_is_type(v, json_type_string)) {
        snprintf(err, JSONV_ERRLEN, "%s must be a string.", field);
        return -1;
    }
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    if (memchr(s, '\0', len)) {
        snprintf(err, JSONV_ERRLEN, "%s must not contain NUL characters.", field);
        return -1;
    }
    if (trim) {
        size_t n;
        while ((n = space_prefix(s, len)) > 0)
            s += n, len -= n;
        while ((n = space_suffix(s, len)) > 0)
            len -= n;
    }
    long chars = utf8_length(s, len);
    if (chars < 0) {
        snprintf(err, JSONV_ERRLEN, "%s must be valid UTF-8.", field);
        return -1;
    }
    if ((size_t)chars < min || (size_t)chars > max || len >= out_size) {
        if (min <= 1 && (size_t)chars < min)
            snprintf(err, JSONV_ERRLEN, "%s must not be empty.", field);
        else
            snprintf(err, JSONV_ERRLEN, "%s must be %zu to %zu characters.", field, min, max);
        return -1;
    }
    memcpy(out_buf, s, len);
    out_buf[len] = '\0';
    return 0;
}

int mobile_normalize(const char *in, char out[17])
{
    size_t o = 1, digits = 0;
    int plus = 0;
    if (!in || strlen(in) > 64)
        return -1;
    out[0] = '+';
    for (const char *p = in; *p; p++) {
        if (*p == ' ' || *p == '-')
            continue;
        if (*p == '+' && !plus && digits == 0) {
            plus = 1;
            continue;
        }
        if (*p < '0' || *p > '9' || digits >= 15)
            return -1;
        out[o++] = *p;
        digits++;
    }
    out[o] = '\0';
    return digits >= 8 ? 0 : -1;
}

int jsonv_lone_surrogate(const char *buf, size_t len)
{
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        if (!in_string) {
            in_string = buf[i] == '"';
            continue;
        }
        if (buf[i] == '"') {
            in_string = 0;
            continue;
        }
        if (buf[i] != '\\')
            continue;
        if (i + 1 >= len)
            return 0;
        if (buf[++i] != 'u')
            continue; /* a one-character escape, \\ included: the next byte is ordinary again */
        unsigned cp, lo;
        if (i + 4 >= len || hex4(buf + i + 1, &cp) != 0)
            return 0; /* malformed: the parser refuses it */
        i += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return 1; /* a low surrogate with no high one before it */
        if (cp < 0xD800 || cp > 0xDBFF)
            continue;
        /* a high surrogate: the very next thing must be the \u escape of a low one */
        if (i + 6 >= len || buf[i + 1] != '\\' || buf[i + 2] != 'u' || hex4(buf + i + 3, &lo) != 0 || lo < 0xDC00 ||
            lo > 0xDFFF)
            return 1;
        i += 6;
    }
    return 0;
}

int jsonv_raw_control(const char *buf, size_t len)
{
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (!in_string)
            in_string = c == '"';
        else if (c == '"')
            in_string = 0;
        else if (c == '\\')
            i++; /* the escaped character, whatever it is, is not a raw one */
        else if (c < 0x20)
            return 1;
    }
    return 0;
}

const char *jsonv_not_text(const char *buf, size_t len)
{
    if (!utf8_valid(buf, len))
        return "is not valid UTF-8";
    if (jsonv_lone_surrogate(buf, len))
        return "has a \\u escape of a lone surrogate, which is not text";
    if (jsonv_raw_control(buf, len))
        return "has an unescaped control character in a string";
    return NULL;
}

int jsonv_mobile(json_object *obj, const char *field, char out[17], char *err)
{
    char raw[65];
    int rc = jsonv_string(obj, field, 1, 1, 1, 64, raw, sizeof raw, err);
    if (rc != 0)
        return -1;
    if (mobile_normalize(raw, out) != 0) {
        snprintf(err, JSONV_ERRLEN, "%s must be an optional + then 8 to 15 digits (spaces and dashes allowed).", field);
        return -1;
    }
    return 0;
}

const char *jsonv_dump(json_object *obj, size_t *len)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    if (len)
        *len = n;
    return s;
}
