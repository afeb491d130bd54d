/* Unit tests for lib/ai.c: request building, response classification, retry timing, offline stand-in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ai.h"

#define T(role, s)                                                                                                     \
    {                                                                                                                  \
        (role), (s), sizeof(s) - 1                                                                                     \
    }
#define U AI_ROLE_USER
#define M AI_ROLE_MODEL

static json_object *parse(const buf_t *b)
{
    json_object *o = json_tokener_parse(b->data);
    assert_non_null(o);
    return o;
}

static json_object *at(json_object *o, const char *key)
{
    json_object *v = NULL;
    assert_true(json_object_object_get_ex(o, key, &v));
    return v;
}

static int has(json_object *o, const char *key)
{
    return json_object_object_get_ex(o, key, NULL);
}

static const char *str_at(json_object *o, const char *key)
{
    json_object *v = at(o, key);
    assert_true(json_object_is_type(v, json_type_string));
    return json_object_get_string(v);
}

/* ---- normalise / request building ---- */

static void test_normalise_skips_and_trims(void **state)
{
    (void)state;
    ai_turn_t in[] = {T(M, "greeting from a cut window"),
                      T(U, "a"),
                      T(M, ""),
                      T(U, "b"),
                      T(M, "c"),
                      {U, NULL, 0},
                      T(U, "d"),
                      T(M, "")};
    ai_turn_t out[8];
    size_t n = 99;
    assert_int_equal(ai_normalise(in, 8, out, &n), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(out[0].text, "a", 1);
    assert_memory_equal(out[1].text, "b", 1);
    assert_int_equal(out[2].role, M);
    assert_memory_equal(out[3].text, "d", 1);

    ai_turn_t only_model[] = {T(U, ""), T(M, "x")};
    assert_int_equal(ai_normalise(only_model, 2, out, &n), -1);
    assert_int_equal(n, 0);
    assert_int_equal(ai_normalise(NULL, 0, out, &n), -1);

    /* trailing model turns are dropped: the last turn sent is always the user's */
    ai_turn_t trailing[] = {T(U, "q"), T(M, "answer")};
    assert_int_equal(ai_normalise(trailing, 2, out, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].role, U);
}

static void test_gemini_body(void **state)
{
    (void)state;
    ai_turn_t h[] = {T(U, "hi"), T(M, ""), T(U, "are you there?"), T(M, "yes \"quoted\" </b>"), T(U, "q\n\u00e9")};
    buf_t b = {0};
    assert_int_equal(ai_build_request(AI_PROVIDER_GEMINI, h, 5, "Be brief.", "ignored", &b), 0);
    json_object *o = parse(&b);
    json_object *contents = at(o, "contents");
    assert_int_equal(json_object_array_length(contents), 3);
    /* the two user rows around the empty (pending) reply merge into one content with two parts */
    json_object *c0 = json_object_array_get_idx(contents, 0);
    assert_string_equal(str_at(c0, "role"), "user");
    json_object *p0 = at(c0, "parts");
    assert_int_equal(json_object_array_length(p0), 2);
    assert_string_equal(str_at(json_object_array_get_idx(p0, 0), "text"), "hi");
    assert_string_equal(str_at(json_object_array_get_idx(p0, 1), "text"), "are you there?");
    json_object *c1 = json_object_array_get_idx(contents, 1);
    assert_string_equal(str_at(c1, "role"), "model");
    assert_string_equal(str_at(json_object_array_get_idx(at(c1, "parts"), 0), "text"), "yes \"quoted\" </b>");
    json_object *c2 = json_object_array_get_idx(contents, 2);
    assert_string_equal(str_at(c2, "role"), "user");
    assert_string_equal(str_at(json_object_array_get_idx(at(c2, "parts"), 0), "text"), "q\n\u00e9");
    json_object *si = at(o, "systemInstruction");
    assert_false(has(si, "role"));
    assert_string_equal(str_at(json_object_array_get_idx(at(si, "parts"), 0), "text"), "Be brief.");
    json_object *mot = at(at(o, "generationConfig"), "maxOutputTokens");
    assert_true(json_object_is_type(mot, json_type_int));
    assert_true(json_object_get_int(mot) >= 2048);
    assert_false(has(o, "model"));
    /* plain output, '/' not escaped */
    assert_non_null(strstr(b.data, "</b>"));
    json_object_put(o);

    /* no system prompt: no systemInstruction */
    buf_reset(&b);
    assert_int_equal(ai_build_request(AI_PROVIDER_GEMINI, h, 1, NULL, NULL, &b), 0);
    o = parse(&b);
    assert_false(has(o, "systemInstruction"));
    json_object_put(o);
    buf_reset(&b);
    assert_int_equal(ai_build_request(AI_PROVIDER_GEMINI, h, 1, "", NULL, &b), 0);
    o = parse(&b);
    assert_false(has(o, "systemInstruction"));
    json_object_put(o);
    buf_free(&b);
}

static void test_openai_body(void **state)
{
    (void)state;
    ai_turn_t h[] = {T(M, "leading"), T(U, "one"), T(U, "two"), T(M, "ans"), T(M, "more"), T(U, "three")};
    buf_t b = {0};
    assert_int_equal(ai_build_request(AI_PROVIDER_OPENAI, h, 6, "sys", "llama-3", &b), 0);
    json_object *o = parse(&b);
    assert_string_equal(str_at(o, "model"), "llama-3");
    json_object *st = at(o, "stream");
    assert_true(json_object_is_type(st, json_type_boolean));
    assert_false(json_object_get_boolean(st));
    json_object *msgs = at(o, "messages");
    assert_int_equal(json_object_array_length(msgs), 4);
    const char *roles[] = {"system", "user", "assistant", "user"};
    const char *texts[] = {"sys", "one\n\ntwo", "ans\n\nmore", "three"};
    for (size_t i = 0; i < 4; i++) {
        json_object *m = json_object_array_get_idx(msgs, i);
        assert_string_equal(str_at(m, "role"), roles[i]);
        assert_string_equal(str_at(m, "content"), texts[i]);
    }
    json_object_put(o);

    buf_reset(&b);
    assert_int_equal(ai_build_request(AI_PROVIDER_OPENAI, h + 1, 1, NULL, NULL, &b), 0);
    o = parse(&b);
    assert_false(has(o, "model"));
    assert_int_equal(json_object_array_length(at(o, "messages")), 1);
    json_object_put(o);
    buf_free(&b);
}

static void test_build_request_refuses(void **state)
{
    (void)state;
    ai_turn_t h[] = {T(U, ""), T(M, "only a model turn")};
    buf_t b = {0};
    assert_int_equal(ai_build_request(AI_PROVIDER_GEMINI, h, 2, NULL, NULL, &b), -1);
    assert_int_equal(ai_build_request(AI_PROVIDER_OPENAI, h, 2, NULL, NULL, &b), -1);
    ai_turn_t ok[] = {T(U, "x")};
    assert_int_equal(ai_build_request(AI_PROVIDER_OFFLINE, ok, 1, NULL, NULL, &b), -1);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static void test_embedded_nul_survives(void **state)
{
    (void)state;
    ai_turn_t h[] = {{U, "a\0b", 3}};
    buf_t b = {0};
    assert_int_equal(ai_build_request(AI_PROVIDER_OPENAI, h, 1, NULL, "m", &b), 0);
    assert_non_null(strstr(b.data, "a\\u0000b"));
    buf_free(&b);
}

static void test_url_and_auth(void **state)
{
    (void)state;
    buf_t b = {0};
    assert_int_equal(ai_build_url(AI_PROVIDER_GEMINI, "https://g.example", "gemini-3.5-flash", &b), 0);
    assert_string_equal(b.data, "https://g.example/v1beta/models/gemini-3.5-flash:generateContent");
    buf_reset(&b);
    assert_int_equal(ai_build_url(AI_PROVIDER_GEMINI, "http://127.0.0.1:9/", "models/m-1.0_x", &b), 0);
    assert_string_equal(b.data, "http://127.0.0.1:9/v1beta/models/m-1.0_x:generateContent");
    buf_reset(&b);
    assert_int_equal(ai_build_url(AI_PROVIDER_OPENAI, "http://h/v1/", NULL, &b), 0);
    assert_string_equal(b.data, "http://h/v1/chat/completions");
    buf_reset(&b);
    assert_int_equal(ai_build_url(AI_PROVIDER_GEMINI, "http://h", "../../x", &b), -1);
    assert_int_equal(ai_build_url(AI_PROVIDER_GEMINI, "http://h", "a?key=1", &b), -1);
    assert_int_equal(ai_build_url(AI_PROVIDER_GEMINI, "http://h", NULL, &b), -1);
    assert_int_equal(ai_build_url(AI_PROVIDER_GEMINI, "", "m", &b), -1);
    assert_int_equal(ai_build_url(AI_PROVIDER_OPENAI, "/", "m", &b), -1);
    assert_int_equal(ai_build_url(AI_PROVIDER_OFFLINE, "http://h", "m", &b), -1);
    assert_int_equal(b.len, 0);

    assert_int_equal(ai_auth_header(AI_PROVIDER_GEMINI, "k-1", &b), 0);
    assert_string_equal(b.data, "x-goog-api-key: k-1");
    buf_reset(&b);
    assert_int_equal(ai_auth_header(AI_PROVIDER_OPENAI, "sk-2", &b), 0);
    assert_string_equal(b.data, "Authorization: Bearer sk-2");
    buf_reset(&b);
    assert_int_equal(ai_auth_header(AI_PROVIDER_OPENAI, NULL, &b), 1);
    assert_int_equal(ai_auth_header(AI_PROVIDER_OPENAI, "", &b), 1);
    assert_int_equal(ai_auth_header(AI_PROVIDER_GEMINI, "k\r\nX-Evil: 1", &b), -1);
    assert_int_equal(ai_auth_header(AI_PROVIDER_GEMINI, "k x", &b), -1);
    assert_int_equal(ai_auth_header(AI_PROVIDER_OFFLINE, "k", &b), -1);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

/* ---- responses ---- */

static void parse_str(enum ai_provider p, long st, const char *body, const char *ra, ai_result_t *r)
{
    ai_parse_response(p, st, body, body ? strlen(body) : 0, ra, r);
}

static void test_gemini_success(void **state)
{
    (void)state;
    ai_result_t r;
    parse_str(AI_PROVIDER_GEMINI, 200,
              "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"thinking...\",\"thought\":"
              "true},{\"text\":\"Hello \"},{\"text\":\"world\",\"thoughtSignature\":\"abc\"}]},\"finishReason\":"
              "\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":3},\"modelVersion\":\"m\","
              "\"responseId\":\"r\"}",
              NULL, &r);
    assert_int_equal(r.status, AI_OK);
    assert_string_equal(r.text, "Hello world");
    assert_int_equal(r.text_len, 11);
    assert_false(r.truncated);
    assert_int_equal(r.http_status, 200);
    ai_result_free(&r);
    assert_null(r.text);

    /* MAX_TOKENS with text is a usable, truncated answer */
    parse_str(AI_PROVIDER_GEMINI, 200,
              "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"partial\"}]},\"finishReason\":\"MAX_TOKENS\"}]}",
              NULL, &r);
    assert_int_equal(r.status, AI_OK);
    assert_string_equal(r.text, "partial");
    assert_true(r.truncated);
    ai_result_free(&r);
}

static void test_gemini_no_answer(void **state)
{
    (void)state;
    ai_result_t r;
    /* prompt blocked: no candidates */
    parse_str(AI_PROVIDER_GEMINI, 200, "{\"promptFeedback\":{\"blockReason\":\"PROHIBITED_CONTENT\"}}", NULL, &r);
    assert_int_equal(r.status, AI_PERMANENT);
    assert_null(r.text);
    assert_non_null(strstr(r.error, "blocked"));
    assert_non_null(strstr(r.error, "PROHIBITED_CONTENT"));
    ai_result_free(&r);
    parse_str(AI_PROVIDER_GEMINI, 200, "{\"candidates\":[]}", NULL, &r);
    assert_int_equal(r.status, AI_PERMANENT);
    ai_result_free(&r);
    /* MAX_TOKENS while thinking: candidate without content */
    parse_str(AI_PROVIDER_GEMINI, 200, "{\"candidates\":[{\"finishReason\":\"MAX_TOKENS\",\"index\":0}]}", NULL, &r);
    assert_int_equal(r.status, AI_PERMANENT);
    assert_non_null(strstr(r.error, "no text"));
    assert_non_null(strstr(r.error, "MAX_TOKENS"));
    ai_result_free(&r);
    /* SAFETY, even with some text */
    parse_str(AI_PROVIDER_GEMINI, 200,
              "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"bad\"}]},\"finishReason\":\"SAFETY\"}]}", NULL,
              &r);
    assert_int_equal(r.status, AI_PERMANENT);
    assert_non_null(strstr(r.error, "SAFETY"));
    assert_null(r.text);
    ai_result_free(&r);
    /* only thoughts, or empty text */
    parse_str(AI_PROVIDER_GEMINI, 200,
              "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"t\",\"thought\":true},{\"text\":\"\"}]},"
              "\"finishReason\":\"STOP\"}]}",
              NULL, &r);
    assert_int_equal(r.status, AI_PERMANENT);
    ai_result_free(&r);
    /* wrong shapes everywhere: never crash, never accept */
    const char *shapes[] = {
        "{\"candidates\":{}}",
        "{\"candidates\":[1]}",
        "{\"candidates\":[{\"content\":[]}]}",
        "{\"candidates\":[{\"content\":{\"parts\":{\"text\":\"x\"}}}]}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":5}]}}]}",
        "{\"candidates\":[{\"content\":{\"parts\":[\"x\", null]}}]}",
        "{\"promptFeedback\":7}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},\"finishReason\":\"RECITATION\"}]}",
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        parse_str(AI_PROVIDER_GEMINI, 200, shapes[i], NULL, &r);
        assert_int_equal(r.status, AI_PERMANENT);
        assert_null(r.text);
        assert_true(strlen(r.error) > 0);
        ai_result_free(&r);
    }
    /* not JSON, or not an object, or trailing garbage: transient (a proxy's page, a cut body) */
    const char *junk[] = {"<html>oops</html>", "[1,2]", "\"str\"", "{\"candidates\":[", "", "{} trailing"};
    for (size_t i = 0; i < sizeof junk / sizeof *junk; i++) {
        parse_str(AI_PROVIDER_GEMINI, 200, junk[i], NULL, &r);
        assert_int_equal(r.status, AI_TRANSIENT);
        ai_result_free(&r);
    }
    ai_parse_response(AI_PROVIDER_GEMINI, 200, NULL, 0, NULL, &r);
    assert_int_equal(r.status, AI_TRANSIENT);
    ai_result_free(&r);
}

static const char *gemini_err_429 =
    "{\"error\":{\"code\":429,\"message\":\"You exceeded your current quota.\",\"status\":\"RESOURCE_EXHAUSTED\","
    "\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.QuotaFailure\",\"violations\":[{\"quotaMetric\":"
    "\"m\",\"quotaId\":\"GenerateRequestsPerMinutePerProjectPerModel\"}]},{\"@type\":\"type.googleapis.com/"
    "google.rpc.Help\",\"links\":[]},{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":"
    "\"34s\"}]}}";

static void test_gemini_errors(void **state)
{
    (void)state;
    ai_result_t r;
    parse_str(AI_PROVIDER_GEMINI, 429, gemini_err_429, NULL, &r);
    assert_int_equal(r.status, AI_TRANSIENT);
    assert_int_equal(r.retry_after_ms, 34000);
    assert_string_equal(r.error, "upstream error 429 RESOURCE_EXHAUSTED");
    assert_string_equal(r.detail, "You exceeded your current quota.");
    ai_result_free(&r);
    /* the larger of header and body hint wins */
    parse_str(AI_PROVIDER_GEMINI, 429, gemini_err_429, "60", &r);
    assert_int_equal(r.retry_after_ms, 60000);
    ai_result_free(&r);
    parse_str(AI_PROVIDER_GEMINI, 429, gemini_err_429, "2", &r);
    assert_int_equal(r.retry_after_ms, 34000);
    ai_result_free(&r);

    /* a per-day quota does not clear soon: permanent */
    parse_str(AI_PROVIDER_GEMINI, 429,
              "{\"error\":{\"code\":429,\"status\":\"RESOURCE_EXHAUSTED\",\"details\":[{\"@type\":\"type."
              "googleapis.com/google.rpc.QuotaFailure\",\"violations\":[{\"quotaId\":"
              "\"GenerateRequestsPerDayPerProjectPerModel-FreeTier\"}]}]}}",
              NULL, &r);
    assert_int_equal(r.status, AI_PERMANENT);
    assert_non_null(strstr(r.error, "daily quota"));
    ai_result_free(&r);

    /* invalid key: 400 with ErrorInfo; the message is kept for the log only */
    parse_str(AI_PROVIDER_GEMINI, 400,
              "{\"error\":{\"code\":400,\"message\":\"API key not valid. Please pass a valid API key.\",\"status\":"
              "\"INVALID_ARGUMENT\",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\","
              "\"reason\":\"API_KEY_INVALID\",\"domain\":\"googleapis.com\"}]}}",
              NULL, &r);
    assert_int_equal(r.status, AI_PERMANENT);
    assert_string_equal(r.error, "upstream error 400 INVALID_ARGUMENT (API_KEY_INVALID)");
    assert_null(strstr(r.error, "API key not valid"));
    ai_result_free(&r);

    long transient[] = {408, 429, 500, 502, 503, 504, 507, 520, 521, 522, 523, 524, 529, 599};
    for (size_t i = 0; i < sizeof transient / sizeof *transient; i++) {
        parse_str(AI_PROVIDER_GEMINI, transient[i], "<html>busy</html>", NULL, &r);
        assert_int_equal(r.status, AI_TRANSIENT);
        ai_result_free(&r);
    }
    long permanent[] = {301, 400, 401, 403, 404, 409, 413, 422, 501, 505};
    for (size_t i = 0; i < sizeof permanent / sizeof *permanent; i++) {
        parse_str(AI_PROVIDER_GEMINI, permanent[i], "{\"error\":{\"status\":\"X\"}}", NULL, &r);
        assert_int_equal(r.status, AI_PERMANENT);
        assert_int_equal(r.http_status, permanent[i]);
        ai_result_free(&r);
    }
    /* hostile error fields are cut and filtered */
    parse_str(
        AI_PROVIDER_GEMINI, 503,
        "{\"error\":{\"status\":\"UNAVAILABLE\\r\\nSet-Cookie: x=1 \\u0000 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAAAAAAAAAAAAAAA\",\"message\":\"line1\\nline2\",\"details\":\"no\"}}",
        NULL, &r);
    assert_int_equal(r.status, AI_TRANSIENT);
    assert_null(strchr(r.error, '\n'));
    assert_null(strchr(r.error, '\r'));
    assert_true(strlen(r.error) <= AI_ERROR_MAX);
    assert_null(strchr(r.detail, '\n'));
    ai_result_free(&r);
}

static void test_openai_responses(void **state)
{
    (void)state;
    ai_result_t r;
    parse_str(AI_PROVIDER_OPENAI, 200,
              "{\"id\":\"c\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,"
              "\"message\":{\"role\":\"assistant\",\"content\":\"Hi there\"},\"finish_reason\":\"stop\"}],"
              "\"usage\":{\"prompt_tokens\":1}}",
              NULL, &r);
    assert_int_equal(r.status, AI_OK);
    assert_string_equal(r.text, "Hi there");
    assert_false(r.truncated);
    ai_result_free(&r);
    parse_str(AI_PROVIDER_OPENAI, 200,
              "{\"choices\":[{\"message\":{\"content\":\"cut\"},\"finish_reason\":\"length\"}]}", NULL, &r);
    assert_int_equal(r.status, AI_OK);
    assert_true(r.truncated);
    ai_result_free(&r);
    const char *bad[] = {
        "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]},"
        "\"finish_reason\":\"tool_calls\"}]}",
        "{\"choices\":[{\"message\":{\"content\":\"x\"},\"finish_reason\":\"content_filter\"}]}",
        "{\"choices\":[{\"message\":{\"content\":null,\"refusal\":\"no\"}}]}",
        "{\"choices\":[]}",
        "{\"choices\":[{\"message\":{\"content\":\"\"}}]}",
        "{\"choices\":[{\"message\":{\"content\":[1]}}]}",
        "{}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        parse_str(AI_PROVIDER_OPENAI, 200, bad[i], NULL, &r);
        assert_int_equal(r.status, AI_PERMANENT);
        assert_null(r.text);
        ai_result_free(&r);
    }
    parse_str(AI_PROVIDER_OPENAI, 401,
              "{\"error\":{\"message\":\"Incorrect API key provided: sk-****abcd.\",\"type\":"
              "\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}",
              NULL, &r);
    assert_int_equal(r.status, AI_PERMANENT);
    assert_string_equal(r.error, "upstream error 401 invalid_api_key");
    ai_result_free(&r);
    parse_str(AI_PROVIDER_OPENAI, 429, "{\"error\":{\"message\":\"Rate limit\",\"type\":\"requests\",\"code\":null}}",
              "7", &r);
    assert_int_equal(r.status, AI_TRANSIENT);
    assert_int_equal(r.retry_after_ms, 7000);
    assert_string_equal(r.error, "upstream error 429 requests");
    ai_result_free(&r);
}

static void test_oversized_body_refused(void **state)
{
    (void)state;
    size_t n = AI_MAX_RESPONSE_BYTES + 10;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    const char *ok = "{\"choices\":[{\"message\":{\"content\":\"x\"}}]}";
    memcpy(big, ok, strlen(ok));
    ai_result_t r;
    ai_parse_response(AI_PROVIDER_OPENAI, 200, big, n, NULL, &r);
    assert_int_not_equal(r.status, AI_OK);
    ai_result_free(&r);
    free(big);
}

static void test_transport_errors(void **state)
{
    (void)state;
    ai_result_t r;
    int transient[] = {CURLE_OPERATION_TIMEDOUT,   CURLE_COULDNT_CONNECT, CURLE_RECV_ERROR,   CURLE_SEND_ERROR,
                       CURLE_COULDNT_RESOLVE_HOST, CURLE_GOT_NOTHING,     CURLE_PARTIAL_FILE, CURLE_SSL_CONNECT_ERROR};
    for (size_t i = 0; i < sizeof transient / sizeof *transient; i++) {
        ai_transport_error(transient[i], &r);
        assert_int_equal(r.status, AI_TRANSIENT);
        assert_int_equal(r.http_status, 0);
        assert_true(strlen(r.error) > 0);
        ai_result_free(&r);
    }
    ai_transport_error(CURLE_OPERATION_TIMEDOUT, &r);
    assert_string_equal(r.error, "upstream timed out");
    ai_result_free(&r);
    int permanent[] = {CURLE_WRITE_ERROR, CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL};
    for (size_t i = 0; i < sizeof permanent / sizeof *permanent; i++) {
        ai_transport_error(permanent[i], &r);
        assert_int_equal(r.status, AI_PERMANENT);
        ai_result_free(&r);
    }
    ai_result_free(NULL);
}

/* ---- retry timing ---- */

static void test_retry_after(void **state)
{
    (void)state;
    assert_int_equal(ai_parse_retry_after("1"), 1000);
    assert_int_equal(ai_parse_retry_after(" 30 "), 30000);
    assert_int_equal(ai_parse_retry_after("0"), 0);
    assert_int_equal(ai_parse_retry_after("99999999999999999999"), AI_RETRY_HINT_CAP_MS);
    assert_int_equal(ai_parse_retry_after(NULL), -1);
    assert_int_equal(ai_parse_retry_after(""), -1);
    assert_int_equal(ai_parse_retry_after("1.5"), -1);
    assert_int_equal(ai_parse_retry_after("-1"), -1);
    assert_int_equal(ai_parse_retry_after("soon"), -1);
    assert_int_equal(ai_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), 0); /* past */
    char date[64];
    time_t future = time(NULL) + 120;
    struct tm tm;
    gmtime_r(&future, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    long ms = ai_parse_retry_after(date);
    assert_true(ms >= 118000 && ms <= 120000);
}

static void test_duration(void **state)
{
    (void)state;
#define D(s) ai_parse_duration((s), strlen(s))
    assert_int_equal(D("34s"), 34000);
    assert_int_equal(D("1s"), 1000);
    assert_int_equal(D("1.5s"), 1500);
    assert_int_equal(D("0.250s"), 250);
    assert_int_equal(D("0.000001s"), 1); /* rounded up */
    assert_int_equal(D("0s"), 0);
    assert_int_equal(D("999999999s"), AI_RETRY_HINT_CAP_MS);
    assert_int_equal(D("s"), -1);
    assert_int_equal(D("34"), -1);
    assert_int_equal(D("1.s"), -1);
    assert_int_equal(D(".5s"), -1);
    assert_int_equal(D("-1s"), -1);
    assert_int_equal(D("1ms"), -1);
    assert_int_equal(D("1.0000000001s"), -1);
    assert_int_equal(ai_parse_duration(NULL, 0), -1);
#undef D
}

static void test_backoff(void **state)
{
    (void)state;
    /* the window doubles from BASE and stops at CAP; the wait is rnd modulo (window + 1) */
    for (long attempt = 1; attempt <= 40; attempt++) {
        long window = AI_BACKOFF_BASE_MS;
        for (long i = 1; i < attempt && window < AI_BACKOFF_CAP_MS; i++)
            window *= 2;
        if (window > AI_BACKOFF_CAP_MS)
            window = AI_BACKOFF_CAP_MS;
        assert_int_equal(ai_backoff_ms(attempt, -1, 0), 0);
        assert_int_equal(ai_backoff_ms(attempt, -1, (uint64_t)window), window);
        assert_int_equal(ai_backoff_ms(attempt, -1, (uint64_t)window + 1), 0);
        assert_int_equal(ai_backoff_ms(attempt, -1, UINT64_MAX), (long)(UINT64_MAX % (uint64_t)(window + 1)));
    }
    assert_int_equal(ai_backoff_ms(1, -1, 1000), 1000);
    assert_int_equal(ai_backoff_ms(3, -1, 4000), 4000);
    assert_int_equal(ai_backoff_ms(3, -1, 4001), 0);
    assert_int_equal(ai_backoff_ms(100, -1, 60000), AI_BACKOFF_CAP_MS);
    /* random draws stay in [0, window] and use the whole range */
    srand(7);
    long lo = 1L << 30, hi = -1;
    for (int i = 0; i < 2000; i++) {
        uint64_t rnd = ((uint64_t)rand() << 32) ^ (uint64_t)rand();
        long w = ai_backoff_ms(2, -1, rnd);
        assert_true(w >= 0 && w <= 2000);
        lo = w < lo ? w : lo;
        hi = w > hi ? w : hi;
    }
    assert_true(lo < 200 && hi > 1800);
    /* never below Retry-After; Retry-After itself capped */
    assert_int_equal(ai_backoff_ms(1, 5000, 10), 5000);
    assert_int_equal(ai_backoff_ms(1, 5000, 999), 5000);
    assert_int_equal(ai_backoff_ms(7, 1000, 30000), 30000);
    assert_int_equal(ai_backoff_ms(1, AI_RETRY_HINT_CAP_MS * 10, 0), AI_RETRY_HINT_CAP_MS);
    /* attempt 0 or negative behaves like the first */
    assert_true(ai_backoff_ms(0, -1, 12345) <= AI_BACKOFF_BASE_MS);
}

/* ---- offline ---- */

static void test_offline(void **state)
{
    (void)state;
    ai_turn_t h[] = {T(U, "first"), T(M, "model said"), T(U, "hello there"), T(M, "")};
    buf_t b = {0};
    ai_offline_reply(h, 4, &b);
    assert_string_equal(b.data, "[offline model: no AI provider configured] You said: hello there");
    buf_reset(&b);

    /* 250 two-byte characters: cut after 200 code points, on a character boundary, with an ellipsis */
    char long_text[500];
    for (int i = 0; i < 250; i++) {
        long_text[2 * i] = (char)0xC3;
        long_text[2 * i + 1] = (char)0xA9;
    }
    ai_turn_t l[] = {{U, long_text, sizeof long_text}};
    ai_offline_reply(l, 1, &b);
    const char *prefix = "[offline model: no AI provider configured] You said: ";
    assert_int_equal(strncmp(b.data, prefix, strlen(prefix)), 0);
    assert_int_equal(b.len, strlen(prefix) + 400 + 3);
    assert_memory_equal(b.data + b.len - 3, "\xE2\x80\xA6", 3);
    assert_memory_equal(b.data + strlen(prefix), long_text, 400);
    buf_reset(&b);

    /* exactly 200 ASCII characters: no ellipsis */
    char exact[200];
    memset(exact, 'x', sizeof exact);
    ai_turn_t e[] = {{U, exact, sizeof exact}};
    ai_offline_reply(e, 1, &b);
    assert_int_equal(b.len, strlen(prefix) + 200);
    buf_reset(&b);

    ai_offline_reply(NULL, 0, &b);
    assert_string_equal(b.data, prefix);
    buf_free(&b);
}

static void sanitised(const char *in, size_t len, const char *want, size_t want_len)
{
    buf_t b = {0};
    ai_text_sanitise(in, len, &b);
    assert_int_equal(b.len, want_len);
    assert_memory_equal(b.data, want, want_len);
    assert_int_equal(b.data[b.len], '\0');
    buf_free(&b);
}
#define S(in, want) sanitised((in), sizeof(in) - 1, (want), sizeof(want) - 1)
#define FFFD "\xEF\xBF\xBD"

static void test_sanitise(void **state)
{
    (void)state;
    S("", "");
    S("plain ascii", "plain ascii");
    S("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF",
      "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF");
    S("a\0b\0", "ab");                          /* NULs dropped */
    S("\xC0\xAF", FFFD FFFD);                   /* overlong '/' */
    S("\xE0\x80\xAF", FFFD FFFD FFFD);          /* overlong, three bytes */
    S("\xED\xA0\x80", FFFD FFFD FFFD);          /* surrogate U+D800 */
    S("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD); /* past U+10FFFF */
    S("x\xC3", "x" FFFD);                       /* cut short at the end */
    S("\xE2\x82x", FFFD FFFD "x");              /* cut short in the middle */
    S("\xFF\xFEok", FFFD FFFD "ok");
    S("\x80", FFFD); /* lone continuation byte */

    /* a 200 answer carrying bad bytes is stored clean */
    const char body[] = "{\"choices\":[{\"message\":{\"content\":\"a\\u0000b\xC3(\"}}]}";
    ai_result_t r;
    ai_parse_response(AI_PROVIDER_OPENAI, 200, body, sizeof body - 1, NULL, &r);
    assert_int_equal(r.status, AI_OK);
    assert_int_equal(r.text_len, 2 + 3 + 1);
    assert_memory_equal(r.text, "ab" FFFD "(", 6);
    ai_result_free(&r);

    /* an answer of NULs only is no answer (it was "completed" with empty text; found by fuzzing ai_openai) */
    const char *nuls[] = {"{\"choices\":[{\"message\":{\"content\":\"\\u0000\"},\"finish_reason\":\"stop\"}]}",
                          "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\\u0000\"},{\"text\":\"\\u0000\"}]},"
                          "\"finishReason\":\"STOP\"}]}"};
    for (int i = 0; i < 2; i++) {
        ai_parse_response(i ? AI_PROVIDER_GEMINI : AI_PROVIDER_OPENAI, 200, nuls[i], strlen(nuls[i]), NULL, &r);
        assert_int_equal(r.status, AI_PERMANENT);
        assert_null(r.text);
        assert_non_null(strstr(r.error, "no text"));
        ai_result_free(&r);
    }
}
#undef S

static void test_provider_names(void **state)
{
    (void)state;
    assert_int_equal(ai_provider_parse("gemini"), AI_PROVIDER_GEMINI);
    assert_int_equal(ai_provider_parse("openai"), AI_PROVIDER_OPENAI);
    assert_int_equal(ai_provider_parse("offline"), AI_PROVIDER_OFFLINE);
    assert_int_equal(ai_provider_parse("Gemini"), -1);
    assert_int_equal(ai_provider_parse(NULL), -1);
    assert_string_equal(ai_provider_name(AI_PROVIDER_GEMINI), "gemini");
    assert_string_equal(ai_provider_name(AI_PROVIDER_OPENAI), "openai");
    assert_string_equal(ai_provider_name(AI_PROVIDER_OFFLINE), "offline");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalise_skips_and_trims),
        cmocka_unit_test(test_gemini_body),
        cmocka_unit_test(test_openai_body),
        cmocka_unit_test(test_build_request_refuses),
        cmocka_unit_test(test_embedded_nul_survives),
        cmocka_unit_test(test_url_and_auth),
        cmocka_unit_test(test_gemini_success),
        cmocka_unit_test(test_gemini_no_answer),
        cmocka_unit_test(test_gemini_errors),
        cmocka_unit_test(test_openai_responses),
        cmocka_unit_test(test_oversized_body_refused),
        cmocka_unit_test(test_transport_errors),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_offline),
        cmocka_unit_test(test_sanitise),
        cmocka_unit_test(test_provider_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
