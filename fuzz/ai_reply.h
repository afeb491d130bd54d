/* ai_reply.h: the body of the two reply targets (fuzz/ai_gemini.c, fuzz/ai_openai.c), which differ only in
 * the provider. Input: a first line "STATUS[ RETRY-AFTER]" (the HTTP status and the Retry-After header value;
 * a line that is not a status means 200 and is part of the body), then the body as the upstream sent it.
 * ai_parse_response classifies it as the worker does. Checked: a text answer is non-empty valid UTF-8 without
 * NULs; the error and the log detail are bounded, printable and NUL-terminated; the wait hint is -1 or within
 * its cap; a 2xx is never called a quota error and a 4xx other than 408/429 is never retried. */
#ifndef GB_FUZZ_AI_REPLY_H
#define GB_FUZZ_AI_REPLY_H

#include "fuzz.h"

#include "ai.h"
#include "util.h"

static int ai_reply_one(enum ai_provider provider, const uint8_t *data, size_t size)
{
    size_t rest, k = fuzz_line(data, size, &rest);
    long long status = 200;
    char line[64], *retry_after = NULL;
    const char *body = (const char *)data;
    size_t len = size;

    if (k >= 3 && k < sizeof line) {
        memcpy(line, data, k);
        line[k] = '\0';
        char *sp = strchr(line, ' ');
        if (sp) {
            *sp = '\0';
            retry_after = sp + 1;
        }
        if (parse_ll(line, 100, 599, &status) == 0) {
            body = (const char *)data + rest;
            len = size - rest;
        } else {
            status = 200;
            retry_after = NULL;
        }
    }

    ai_result_t r;
    ai_parse_response(provider, (long)status, body, len, retry_after, &r);
    FUZZ_CHECK(r.status == AI_OK || r.status == AI_TRANSIENT || r.status == AI_PERMANENT);
    FUZZ_CHECK(r.http_status == status);
    FUZZ_CHECK(r.retry_after_ms >= -1 && r.retry_after_ms <= AI_RETRY_HINT_CAP_MS);
    if (r.status == AI_OK) {
        FUZZ_CHECK(status >= 200 && status < 300);
        FUZZ_CHECK(r.text && r.text_len > 0 && strlen(r.text) == r.text_len);
        FUZZ_CHECK(utf8_length(r.text, r.text_len) > 0);
    } else {
        FUZZ_CHECK(r.text == NULL);
        FUZZ_CHECK(r.error[0] != '\0' && memchr(r.error, '\0', sizeof r.error) != NULL);
        FUZZ_CHECK(memchr(r.detail, '\0', sizeof r.detail) != NULL);
        for (const char *c = r.detail; *c; c++)
            FUZZ_CHECK(*c >= 0x20 && *c < 0x7f);
        if (status >= 400 && status < 500 && status != 408 && status != 429)
            FUZZ_CHECK(r.status == AI_PERMANENT);
    }
    ai_result_free(&r);
    FUZZ_CHECK(r.text == NULL && r.retry_after_ms == -1);

    /* the two hint parsers on their own, over the same bytes */
    long d = ai_parse_duration(body, len);
    FUZZ_CHECK(d >= -1 && d <= AI_RETRY_HINT_CAP_MS);
    if (retry_after) {
        long ra = ai_parse_retry_after(retry_after);
        FUZZ_CHECK(ra >= -1 && ra <= AI_RETRY_HINT_CAP_MS);
    }
    return 0;
}

#endif
