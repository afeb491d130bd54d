/* jsonv: validation of fields of a JSON request object. Each getter returns 0 ok, 1 absent-and-optional,
 * or -1 invalid, writing a human sentence naming the field into err (for 400 validation_error).
 * Strings returned point into the json object (valid while it lives). */
#ifndef GB_JSONV_H
#define GB_JSONV_H

#include <stddef.h>
#include <json-c/json.h>

#define JSONV_ERRLEN 160

/* String field; required=1 makes absence an error. min/max bound its length in characters (UTF-8 code
 * points) after trimming surrounding whitespace when trim=1 (every Unicode White_Space code point: ASCII
 * whitespace, U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000; not U+200B or
 * U+FEFF); *out is then the trimmed copy placed in the
 * buffer provided by the caller through out_buf/out_size (so no allocation). null is treated as absent. */
int jsonv_string(json_object *obj, const char *field, int required, int trim, size_t min, size_t max, char *out_buf,
                 size_t out_size, char *err);

/* Mobile number: an optional '+' then 8..15 digits once spaces and dashes are stripped. out gets the
 * normalised form, always E.164 with the '+' ("15551234567" and "+1 555-123-4567" both give "+15551234567";
 * 17 bytes at most, NUL included). */
int jsonv_mobile(json_object *obj, const char *field, char out[17], char *err);
/* The same check on a plain string (exposed for tests). 0 ok, -1 invalid. */
int mobile_normalize(const char *in, char out[17]);

/* 1 if the JSON text buf[0..len) has a string with a \u escape of a lone surrogate (a high one, U+D800..U+DBFF,
 * not immediately followed by the \u escape of a low one, U+DC00..U+DFFF, or a low one on its own), else 0.
 * json-c would silently turn those into U+FFFD; the API refuses them (400 invalid_json). Only escapes inside
 * strings count; a text that is not JSON at all is left to the parser (0). */
int jsonv_lone_surrogate(const char *buf, size_t len);
/* 1 if a string of the JSON text buf[0..len) holds a raw control character (U+0000..U+001F: a tab or a line
 * break typed into the string), which RFC 8259 forbids and json-c's parser lets through, even in strict mode;
 * else 0. */
int jsonv_raw_control(const char *buf, size_t len);
/* Why buf[0..len) is not text whatever its JSON syntax says, as the end of a sentence ("is not valid UTF-8", "has
 * a \u escape of a lone surrogate, which is not text", "has an unescaped control character in a string"), or
 * NULL when it is. json-c's own UTF-8 check lets overlongs, encoded surrogates and code points past U+10FFFF
 * through, it turns lone surrogate escapes into U+FFFD, and it takes raw control characters in strings: every
 * body the API parses goes through this first (400 invalid_json). */
const char *jsonv_not_text(const char *buf, size_t len);

/* Serialize without spaces and without escaping '/'. The string belongs to obj. */
const char *jsonv_dump(json_object *obj, size_t *len);

#endif
