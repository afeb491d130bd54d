/* Unit tests for lib/ai_stream.c: streamed Gemini and OpenAI-compatible answers fed whole, byte by byte and in
 * every two-piece split, with the deltas, the final classification and the ceilings checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ai_stream.h"

/* Feed body in pieces of `step` bytes (0: whole); collects the deltas joined by '|' into deltas. Returns the
 * final result (caller frees) and the last feed status in *fst. */
static void run(enum ai_provider p, const char *body, size_t step, buf_t *deltas, ai_result_t *r, int *fst)
{
    ai_stream_t *s = ai_stream_new(p);
    size_t len = strlen(body), i = 0;
    buf_t d = {0};
    int st = AI_STREAM_MORE;
    buf_reset(deltas);
    buf_append(deltas, "", 0);
    do {
        size_t n = step && len - i > step ? step : len - i;
        st = ai_stream_feed(s, body + i, n, &d);
        if (d.len) {
            if (deltas->len)
                buf_append(deltas, "|", 1);
            buf_append(deltas, d.data, d.len);
            buf_reset(&d);
        }
        i += n;
    } while (i < len && st == AI_STREAM_MORE);
    ai_stream_finish(s, &d, r);
    if (d.len) {
        if (deltas->len)
            buf_append(deltas, "|", 1);
        buf_append(deltas, d.data, d.len);
    }
    *fst = st;
    buf_free(&d);
    ai_stream_free(s);
}

/* Whole text from the deltas (the '|' separators dropped). */
static void join(const buf_t *deltas, buf_t *out)
{
    buf_reset(out);
    buf_append(out, "", 0);
    for (size_t i = 0; i < deltas->len; i++)
        if (deltas->data[i] != '|')
            buf_append(out, deltas->data + i, 1);
}

#define GEMINI_OK                                                                                                      \
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": \"model\"},\"index\": "         \
    "0}],\"usageMetadata\": {\"promptTokenCount\": 3},\"modelVersion\": \"gemini-3.5-flash\"}\r\n\r\n"                 \
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo, w\\u00f6rld\"}],\"role\": "                   \
    "\"model\"},\"index\": 0}]}\r\n\r\n"                                                                               \
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"!\"}],\"role\": \"model\"},\"finishReason\": "    \
    "\"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 3,\"candidatesTokenCount\": 4}}\r\n\r\n"

static void test_gemini_whole_and_every_split(void **state)
{
    (void)state;
    buf_t deltas = {0}, whole = {0};
    ai_result_t r;
    int st;
    run(AI_PROVIDER_GEMINI, GEMINI_OK, 0, &deltas, &r, &st);
    assert_int_equal(st, AI_STREAM_COMPLETE);
    assert_string_equal(deltas.data, "Hello, w\xc3\xb6rld!"); /* one feed: one delta */
    assert_int_equal(r.status, AI_OK);
    assert_string_equal(r.text, "Hello, w\xc3\xb6rld!");
    assert_false(r.truncated);
    ai_result_free(&r);
    for (size_t step = 1; step < 40; step++) {
        run(AI_PROVIDER_GEMINI, GEMINI_OK, step, &deltas, &r, &st);
        if (step == 1)
            assert_string_equal(deltas.data, "Hel|lo, w\xc3\xb6rld|!"); /* one delta per event */
        join(&deltas, &whole);
        assert_int_equal(r.status, AI_OK);
        assert_string_equal(r.text, "Hello, w\xc3\xb6rld!");
        assert_string_equal(whole.data, r.text); /* the stored text is exactly what was streamed */
        ai_result_free(&r);
    }
    buf_free(&deltas);
    buf_free(&whole);
}

/* Two pieces, cut at every byte: the result never depends on where the network split the body. */
static void test_gemini_two_pieces_anywhere(void **state)
{
    (void)state;
    const char *body = GEMINI_OK;
    size_t len = strlen(body);
    for (size_t cut = 0; cut <= len; cut++) {
        ai_stream_t *s = ai_stream_new(AI_PROVIDER_GEMINI);
        buf_t d = {0};
        ai_result_t r;
        ai_stream_feed(s, body, cut, &d);
        ai_stream_feed(s, body + cut, len - cut, &d);
        ai_stream_finish(s, &d, &r);
        assert_int_equal(r.status, AI_OK);
        assert_string_equal(r.text, "Hello, w\xc3\xb6rld!");
        assert_string_equal(d.data, r.text);
        ai_result_free(&r);
        buf_free(&d);
        ai_stream_free(s);
    }
}

static void test_gemini_lf_only_and_thoughts_and_multiline_data(void **state)
{
    (void)state;
    buf_t deltas = {0};
    ai_result_t r;
    int st;
    const char *body = ": a comment\n"
                       "event: message\nid: 7\n"
                       "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"thinking\",\"thought\":true},\n"
                       "data: {\"text\":\"A\"}]}}]}\n\n"
                       "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"B\"}]},\"finishReason\":"
                       "\"MAX_TOKENS\"}]}\n\n";
    for (size_t step = 0; step < 5; step++) {
        run(AI_PROVIDER_GEMINI, body, step, &deltas, &r, &st);
        assert_string_equal(deltas.data, step ? "A|B" : "AB");
        assert_int_equal(r.status, AI_OK);
        assert_string_equal(r.text, "AB");
        assert_true(r.truncated);
        ai_result_free(&r);
    }
    buf_free(&deltas);
}

static void test_gemini_failures(void **state)
{
    (void)state;
    buf_t deltas = {0};
    ai_result_t r;
    int st;

    run(AI_PROVIDER_GEMINI, "data: {\"promptFeedback\":{\"blockReason\":\"SAFETY\"}}\r\n\r\n", 3, &deltas, &r, &st);
    assert_int_equal(st, AI_STREAM_FAILED);
    assert_int_equal(r.status, AI_PERMANENT);
    assert_string_equal(r.error, "prompt blocked by the model (SAFETY)");
    ai_result_free(&r);

    run(AI_PROVIDER_GEMINI,
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"so\"}]}}]}\r\n\r\n"
        "data: {\"candidates\":[{\"finishReason\":\"SAFETY\"}]}\r\n\r\n",
        1, &deltas, &r, &st);
    assert_string_equal(deltas.data, "so");
    assert_int_equal(r.status, AI_PERMANENT);
    assert_string_equal(r.error, "model stopped without an answer (finishReason SAFETY)");
    ai_result_free(&r);

    /* cut off before the finish reason: transient, so the job is retried */
    run(AI_PROVIDER_GEMINI, "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"so\"}]}}]}\r\n\r\n", 2,
        &deltas, &r, &st);
    assert_int_equal(st, AI_STREAM_MORE);
    assert_int_equal(r.status, AI_TRANSIENT);
    assert_string_equal(r.error, "upstream stream ended early");
    ai_result_free(&r);

    /* an error chunk mid-stream is classified by its code */
    run(AI_PROVIDER_GEMINI,
        "data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}\r\n\r\n",
        5, &deltas, &r, &st);
    assert_int_equal(st, AI_STREAM_FAILED);
    assert_int_equal(r.status, AI_TRANSIENT);
    assert_string_equal(r.error, "upstream error 503 UNAVAILABLE");
    ai_result_free(&r);

    run(AI_PROVIDER_GEMINI, "data: {\"error\":{\"code\":400,\"status\":\"INVALID_ARGUMENT\"}}\n\n", 0, &deltas, &r,
        &st);
    assert_int_equal(r.status, AI_PERMANENT);
    ai_result_free(&r);

    run(AI_PROVIDER_GEMINI, "data: <html>\n\n", 0, &deltas, &r, &st);
    assert_int_equal(r.status, AI_TRANSIENT);
    assert_string_equal(r.error, "malformed upstream stream chunk");
    ai_result_free(&r);

    run(AI_PROVIDER_GEMINI, "data: {\"candidates\":[{\"content\":{\"role\":\"model\"},\"finishReason\":\"STOP\"}]}\n\n",
        0, &deltas, &r, &st);
    assert_int_equal(r.status, AI_PERMANENT);
    assert_string_equal(r.error, "model returned no text (finishReason STOP)");
    ai_result_free(&r);

    run(AI_PROVIDER_GEMINI, "", 0, &deltas, &r, &st);
    assert_int_equal(r.status, AI_TRANSIENT);
    ai_result_free(&r);
    buf_free(&deltas);
}

#define OPENAI_OK                                                                                                      \
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"         \
    "\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"                                                    \
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n"      \
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"},\"finish_reason\":null}]}\n\n"  \
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"                    \
    "data: [DONE]\n\n"

static void test_openai_ok_and_splits(void **state)
{
    (void)state;
    buf_t deltas = {0}, whole = {0};
    ai_result_t r;
    int st;
    for (size_t step = 0; step < 30; step++) {
        run(AI_PROVIDER_OPENAI, OPENAI_OK, step, &deltas, &r, &st);
        assert_int_equal(st, AI_STREAM_COMPLETE);
        if (step == 0)
            assert_string_equal(deltas.data, "Hi there");
        if (step == 1)
            assert_string_equal(deltas.data, "Hi| there");
        join(&deltas, &whole);
        assert_int_equal(r.status, AI_OK);
        assert_string_equal(r.text, "Hi there");
        assert_string_equal(whole.data, "Hi there");
        ai_result_free(&r);
    }
    /* after [DONE] the rest is ignored */
    run(AI_PROVIDER_OPENAI, OPENAI_OK "data: {\"choices\":[{\"delta\":{\"content\":\"late\"}}]}\n\n", 0, &deltas, &r,
        &st);
    assert_string_equal(r.text, "Hi there");
    ai_result_free(&r);
    buf_free(&deltas);
    buf_free(&whole);
}

static void test_openai_failures(void **state)
{
    (void)state;
    buf_t deltas = {0};
    ai_result_t r;
    int st;
    /* finish_reason without [DONE] (llama.cpp and others stop there): complete at once, so that a connection
     * kept open or reset after it costs nothing (the worker stops reading when the feed says COMPLETE) */
    run(AI_PROVIDER_OPENAI,
        "data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}\r\n\r\n"
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\r\n\r\n",
        1, &deltas, &r, &st);
    assert_int_equal(st, AI_STREAM_COMPLETE);
    assert_int_equal(r.status, AI_OK);
    assert_true(r.truncated);
    ai_result_free(&r);

    run(AI_PROVIDER_OPENAI,
        "data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}\n\n"
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"content_filter\"}]}\n\n",
        0, &deltas, &r, &st);
    assert_int_equal(st, AI_STREAM_FAILED);
    assert_int_equal(r.status, AI_PERMANENT);
    ai_result_free(&r);

    run(AI_PROVIDER_OPENAI,
        "data: {\"choices\":[{\"delta\":{\"refusal\":\"no\"},\"finish_reason\":null}]}\n\n"
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
        0, &deltas, &r, &st);
    assert_int_equal(r.status, AI_PERMANENT);
    assert_string_equal(r.error, "model refused to answer");
    ai_result_free(&r);

    run(AI_PROVIDER_OPENAI, "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n", 0, &deltas, &r,
        &st);
    assert_int_equal(r.status, AI_TRANSIENT);
    assert_string_equal(r.error, "upstream error 500 server_error");
    ai_result_free(&r);

    run(AI_PROVIDER_OPENAI, "data: {\"choices\":[{\"delta\":{\"content\":\"par\"}}]}\n\n", 0, &deltas, &r, &st);
    assert_int_equal(r.status, AI_TRANSIENT);
    ai_result_free(&r);
    buf_free(&deltas);
}

/* NULs and broken UTF-8 in a piece never reach a delta; a last event without its blank line counts. */
static void test_sanitised_and_unterminated(void **state)
{
    (void)state;
    buf_t deltas = {0};
    ai_result_t r;
    int st;
    run(AI_PROVIDER_OPENAI,
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\\u0000b\"}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"content\":\"c\xff\"},\"finish_reason\":\"stop\"}]}",
        0, &deltas, &r, &st);
    assert_string_equal(deltas.data, "ab|c\xef\xbf\xbd");
    assert_int_equal(r.status, AI_OK);
    assert_string_equal(r.text, "abc\xef\xbf\xbd");
    ai_result_free(&r);
    buf_free(&deltas);
}

/* Fed in pieces of step bytes (0: whole), body's answer is want, and its deltas join to it. */
static void expect_text(enum ai_provider p, const char *body, size_t step, const char *want)
{
    buf_t deltas = {0}, whole = {0};
    ai_result_t r;
    int st;
    run(p, body, step, &deltas, &r, &st);
    join(&deltas, &whole);
    assert_int_equal(r.status, AI_OK);
    assert_string_equal(r.text, want);
    assert_string_equal(whole.data, r.text);
    ai_result_free(&r);
    buf_free(&deltas);
    buf_free(&whole);
}

/* A character split across two pieces (raw bytes: some servers cut their byte buffers anywhere) is whole, at
 * every split of the body too; one the answer never completes ends it as U+FFFD. */
static void test_split_character(void **state)
{
    (void)state;
    const char *body = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"smile \xF0\x9F\"}]}}]}\n\n"
                       "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\x98\x80 \xC3\"}]}}]}\n\n"
                       "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\xA9 done\"}]},"
                       "\"finishReason\":\"STOP\"}]}\n\n";
    for (size_t step = 0; step < 12; step++)
        expect_text(AI_PROVIDER_GEMINI, body, step, "smile \xF0\x9F\x98\x80 \xC3\xA9 done");
    expect_text(AI_PROVIDER_OPENAI,
                "data: {\"choices\":[{\"delta\":{\"content\":\"x \xE2\x82\"}}]}\n\n"
                "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
                0, "x \xEF\xBF\xBD\xEF\xBF\xBD"); /* a U+FFFD per byte, as in any piece */

    /* ... and one cut as UTF-16 halves, escaped: "\ud83d" ends one event, "\ude00" starts the next */
    const char *halves = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"smile \\ud83d\"}]}}]}\n\n"
                         "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\\ude00 a\\\\ud83d\"}]},"
                         "\"finishReason\":\"STOP\"}]}\n\n";
    for (size_t step = 0; step < 12; step++) /* an escaped backslash before "ud83d" stays text */
        expect_text(AI_PROVIDER_GEMINI, halves, step, "smile \xF0\x9F\x98\x80 a\\ud83d");
    /* a high half the next event does not pair, or that ends the answer: U+FFFD, in its place */
    expect_text(AI_PROVIDER_OPENAI,
                "data: {\"choices\":[{\"delta\":{\"content\":\"a\\ud83d\"}}]}\n\n"
                "data: {\"choices\":[{\"delta\":{\"content\":\"b\\ud83d\"}}]}\n\n"
                "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
                0,
                "a\xEF\xBF\xBD"
                "b\xEF\xBF\xBD");
}

static void test_ceiling(void **state)
{
    (void)state;
    ai_stream_t *s = ai_stream_new(AI_PROVIDER_GEMINI);
    char *chunk = malloc(65536);
    memset(chunk, 'x', 65536);
    int st = AI_STREAM_MORE;
    for (int i = 0; i < 40 && st == AI_STREAM_MORE; i++)
        st = ai_stream_feed(s, chunk, 65536, NULL);
    assert_int_equal(st, AI_STREAM_FAILED);
    ai_result_t r;
    ai_stream_finish(s, NULL, &r);
    assert_int_equal(r.status, AI_PERMANENT);
    assert_string_equal(r.error, "upstream response too large");
    ai_result_free(&r);
    ai_stream_free(s);
    ai_stream_free(NULL);
    free(chunk);
}

static void test_stream_urls_and_bodies(void **state)
{
    (void)state;
    buf_t b = {0};
    assert_int_equal(ai_build_stream_url(AI_PROVIDER_GEMINI, "https://g.example/", "gemini-3.5-flash", &b), 0);
    assert_string_equal(b.data, "https://g.example/v1beta/models/gemini-3.5-flash:streamGenerateContent?alt=sse");
    buf_reset(&b);
    assert_int_equal(ai_build_stream_url(AI_PROVIDER_OPENAI, "http://o.example/v1", NULL, &b), 0);
    assert_string_equal(b.data, "http://o.example/v1/chat/completions");
    buf_reset(&b);
    ai_turn_t t[] = {{AI_ROLE_USER, "hi", 2}};
    assert_int_equal(ai_build_stream_request(AI_PROVIDER_OPENAI, t, 1, NULL, "m", &b), 0);
    assert_non_null(strstr(b.data, "\"stream\":true"));
    buf_reset(&b);
    assert_int_equal(ai_build_request(AI_PROVIDER_OPENAI, t, 1, NULL, "m", &b), 0);
    assert_non_null(strstr(b.data, "\"stream\":false"));
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemini_whole_and_every_split),
        cmocka_unit_test(test_gemini_two_pieces_anywhere),
        cmocka_unit_test(test_gemini_lf_only_and_thoughts_and_multiline_data),
        cmocka_unit_test(test_gemini_failures),
        cmocka_unit_test(test_openai_ok_and_splits),
        cmocka_unit_test(test_openai_failures),
        cmocka_unit_test(test_sanitised_and_unterminated),
        cmocka_unit_test(test_split_character),
        cmocka_unit_test(test_ceiling),
        cmocka_unit_test(test_stream_urls_and_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
