#include "jsonv.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
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
        while (len && is_space(*s))
            s++, len--;
        while (len && is_space(s[len - 1]))
            len--;
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
    size_t o = 0, digits = 0;
    if (!in || strlen(in) > 64)
        return -1;
    for (const char *p = in; *p; p++) {
        if (*p == ' ' || *p == '-')
            continue;
        if (*p == '+' && o == 0) {
            out[o++] = '+';
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
