/* Fuzz target: JSON request bodies as the handlers see them: jsonv_lone_surrogate, jsonv_raw_control and
 * jsonv_not_text over the raw bytes, json-c's strict parse (as http_json_body does it), then the field validators
 * of lib/jsonv.c (jsonv_string with and without trimming, jsonv_mobile) on the fields the API reads. Checked: what
 * a validator accepts is valid UTF-8 within its bounds, trimmed when asked, and fits the caller's buffer; what it
 * refuses has a message. */
#include "fuzz.h"

#include <json-c/json.h>

#include "jsonv.h"
#include "util.h"

/* Does s[0..len) start or end with a Unicode White_Space code point? */
static int edge_space(const char *s, size_t len)
{
    static const unsigned ws[] = {0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
    unsigned first = 0, last = 0;
    size_t i = 0, k;
    if (len == 0)
        return 0;
    utf8_decode(s, len, &first);
    while (i < len && (k = utf8_decode(s + i, len - i, &last)) > 0)
        i += k;
    for (int e = 0; e < 2; e++) {
        unsigned cp = e ? last : first;
        if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || (cp >= 0x2000 && cp <= 0x200A))
            return 1;
        for (size_t j = 0; j < sizeof ws / sizeof ws[0]; j++)
            if (cp == ws[j])
                return 1;
    }
    return 0;
}

static void check_string(json_object *obj, const char *field, int required, int trim, size_t min, size_t max,
                         size_t out_size)
{
    char out[16400], err[JSONV_ERRLEN];
    memset(err, 0, sizeof err);
    int rc = jsonv_string(obj, field, required, trim, min, max, out, out_size, err);
    FUZZ_CHECK(rc == 0 || rc == 1 || rc == -1);
    if (rc == 0) {
        size_t len = strlen(out);
        long chars = utf8_length(out, len);
        FUZZ_CHECK(len < out_size);
        FUZZ_CHECK(chars >= 0 && (size_t)chars >= min && (size_t)chars <= max);
        FUZZ_CHECK(!trim || !edge_space(out, len));
    } else if (rc == 1) {
        FUZZ_CHECK(!required);
    } else {
        FUZZ_CHECK(err[0] != '\0' && memchr(err, '\0', sizeof err) != NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    int lone = jsonv_lone_surrogate(s, size);
    FUZZ_CHECK(lone == 0 || lone == 1);
    const char *not_text = jsonv_not_text(s, size);
    int raw = jsonv_raw_control(s, size);
    FUZZ_CHECK(raw == 0 || raw == 1);
    FUZZ_CHECK((not_text != NULL) == (!utf8_valid(s, size) || lone || raw));

    json_tokener *tok = json_tokener_new();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *obj = size ? json_tokener_parse_ex(tok, s, (int)size) : NULL;
    int ok = obj && json_tokener_get_error(tok) == json_tokener_success && json_tokener_get_parse_end(tok) == size &&
             json_object_is_type(obj, json_type_object);
    json_tokener_free(tok);
    if (ok) {
        char mobile[17], err[JSONV_ERRLEN];
        check_string(obj, "content", 1, 1, 1, 4096, 4097 * 4); /* a message */
        check_string(obj, "name", 0, 1, 1, 100, 401);          /* a user's name */
        check_string(obj, "title", 0, 1, 1, 100, 401);         /* a chatroom's title */
        check_string(obj, "password", 0, 0, 8, 128, 513);      /* not trimmed */
        check_string(obj, "otp", 1, 1, 6, 6, 8);               /* a tight buffer */
        check_string(obj, "content", 0, 1, 0, 10, 11);
        if (jsonv_mobile(obj, "mobile", mobile, err) == 0) {
            char again[17];
            FUZZ_CHECK(mobile_normalize(mobile, again) == 0 && strcmp(again, mobile) == 0);
        }
        size_t len = 0;
        const char *dump = jsonv_dump(obj, &len);
        FUZZ_CHECK(dump && strlen(dump) == len);
    }
    json_object_put(obj);
    return 0;
}
