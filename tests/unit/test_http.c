/* Unit tests for the pure parts of http.c: path normalisation and routing (404 vs 405 with Allow), query
 * decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "http.h"

static void h(http_req_t *req)
{
    (void)req;
}

static const http_route_t routes[] = {
    {"GET", "/chatroom", h},
    {"POST", "/chatroom", h},
    {"GET", "/chatroom/usage", h},
    {"GET", "/chatroom/{id}", h},
    {"DELETE", "/chatroom/{id}", h},
    {"POST", "/chatroom/{id}/message", h},
    {"GET", "/chatroom/{id}/messages", h},
};
#define N (sizeof routes / sizeof routes[0])

static int match(pool_t *p, const char *method, const char *path, const char **params, int *np, char *allow)
{
    return http_route_match(routes, N, method, path, params, np, allow, 128, p);
}

static void test_normalize(void **state)
{
    (void)state;
    pool_t *p = pool_new();
    assert_string_equal(http_normalize_path(p, "/chatroom/"), "/chatroom");
    assert_string_equal(http_normalize_path(p, "/chatroom"), "/chatroom");
    assert_string_equal(http_normalize_path(p, "/chatroom/5/messages/?limit=3"), "/chatroom/5/messages");
    assert_string_equal(http_normalize_path(p, "/chatroom?x=/"), "/chatroom");
    assert_string_equal(http_normalize_path(p, "/"), "/");
    assert_string_equal(http_normalize_path(p, ""), "/");
    assert_string_equal(http_normalize_path(p, NULL), "/");
    assert_string_equal(http_normalize_path(p, "/a//"), "/a");
    pool_free(p);
}

static void test_routes(void **state)
{
    (void)state;
    pool_t *p = pool_new();
    const char *params[HTTP_MAX_PARAMS];
    int np = -1;
    char allow[128];
    assert_int_equal(match(p, "GET", "/chatroom", params, &np, allow), 0);
    assert_int_equal(np, 0);
    assert_int_equal(match(p, "POST", "/chatroom", params, &np, allow), 1);
    /* a literal segment listed first wins over a capture */
    assert_int_equal(match(p, "GET", "/chatroom/usage", params, &np, allow), 2);
    assert_int_equal(match(p, "GET", "/chatroom/17", params, &np, allow), 3);
    assert_int_equal(np, 1);
    assert_string_equal(params[0], "17");
    assert_int_equal(match(p, "POST", "/chatroom/9/message", params, &np, allow), 5);
    assert_string_equal(params[0], "9");
    /* unknown paths */
    assert_int_equal(match(p, "GET", "/chatroom/9/nope", params, &np, allow), -1);
    assert_int_equal(match(p, "GET", "/chatroomx", params, &np, allow), -1);
    assert_int_equal(match(p, "GET", "/", params, &np, allow), -1);
    assert_int_equal(match(p, "GET", "/chatroom//message", params, &np, allow), -1);
    /* known path, other method: 405 with every allowed method once */
    assert_int_equal(match(p, "PUT", "/chatroom", params, &np, allow), -2);
    assert_string_equal(allow, "GET, HEAD, POST"); /* HEAD is served by the GET route */
    assert_int_equal(match(p, "PATCH", "/chatroom/3", params, &np, allow), -2);
    assert_string_equal(allow, "GET, HEAD, DELETE");
    assert_int_equal(match(p, "GET", "/chatroom/3/message", params, &np, allow), -2);
    assert_string_equal(allow, "POST");
    pool_free(p);
}

/* An {id} capture takes only ASCII digits: /chatroom/usage is its own resource, never an id. */
static void test_capture_digits(void **state)
{
    (void)state;
    pool_t *p = pool_new();
    const char *params[HTTP_MAX_PARAMS];
    int np = -1;
    char allow[128];
    /* /chatroom/usage with another method: 405 naming only its own method */
    assert_int_equal(match(p, "DELETE", "/chatroom/usage", params, &np, allow), -2);
    assert_string_equal(allow, "GET, HEAD");
    assert_int_equal(match(p, "POST", "/chatroom/usage", params, &np, allow), -2);
    assert_string_equal(allow, "GET, HEAD");
    /* non-numeric segments are no route at all */
    static const char *bad[] = {"abc", "-1", "1.5", "00x1", "12a", "+3", " 1", "%31", "１"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "/chatroom/%s", bad[i]);
        assert_int_equal(match(p, "GET", path, params, &np, allow), -1);
        assert_int_equal(match(p, "PATCH", path, params, &np, allow), -1);
        snprintf(path, sizeof path, "/chatroom/%s/message", bad[i]);
        assert_int_equal(match(p, "POST", path, params, &np, allow), -1);
        snprintf(path, sizeof path, "/chatroom/%s/messages", bad[i]);
        assert_int_equal(match(p, "GET", path, params, &np, allow), -1);
    }
    assert_int_equal(match(p, "POST", "/chatroom/usage/message", params, &np, allow), -1);
    /* digits that are not ids still reach the handler (which answers 404) */
    assert_int_equal(match(p, "GET", "/chatroom/0", params, &np, allow), 3);
    assert_string_equal(params[0], "0");
    assert_int_equal(match(p, "DELETE", "/chatroom/007", params, &np, allow), 4);
    assert_string_equal(params[0], "007");
    assert_int_equal(match(p, "GET", "/chatroom/99999999999999999999/messages", params, &np, allow), 6);
    assert_string_equal(params[0], "99999999999999999999");
    assert_int_equal(match(p, "PATCH", "/chatroom/0", params, &np, allow), -2);
    assert_string_equal(allow, "GET, HEAD, DELETE");
    pool_free(p);
}

static void test_param_id(void **state)
{
    (void)state;
    http_req_t req;
    memset(&req, 0, sizeof req);
    req.nparams = 1;
    const char *cases[] = {"1", "42", "0", "-1", "abc", "007", "99999999999999999999", "12a", ""};
    long long want[] = {1, 42, 0, 0, 0, 0, 0, 0, 0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        req.params[0] = cases[i];
        assert_int_equal(http_param_id(&req, 0), want[i]);
    }
    assert_int_equal(http_param_id(&req, 1), 0); /* no such capture */
}

static void test_cors_allowed(void **state)
{
    (void)state;
    const char *list = "https://app.example.com, http://localhost:5173,https://b.example";
    assert_int_equal(http_cors_allowed(list, "https://app.example.com"), 1);
    assert_int_equal(http_cors_allowed(list, "http://localhost:5173"), 1);
    assert_int_equal(http_cors_allowed(list, "https://b.example"), 1);
    assert_int_equal(http_cors_allowed(list, "HTTPS://APP.example.com"), 1);
    assert_int_equal(http_cors_allowed(list, "https://app.example.com.evil.test"), 0);
    assert_int_equal(http_cors_allowed(list, "https://app.example.co"), 0);
    assert_int_equal(http_cors_allowed(list, "http://app.example.com"), 0);
    assert_int_equal(http_cors_allowed(list, "http://localhost:5174"), 0);
    assert_int_equal(http_cors_allowed(list, "null"), 0);
    assert_int_equal(http_cors_allowed(list, ""), 0);
    assert_int_equal(http_cors_allowed(list, NULL), 0);
    assert_int_equal(http_cors_allowed(NULL, "https://app.example.com"), 0);
    assert_int_equal(http_cors_allowed("", "https://app.example.com"), 0);
}

static void test_server_error_code(void **state)
{
    (void)state;
    assert_string_equal(http_server_error_code(411), "length_required");
    assert_string_equal(http_server_error_code(505), "http_version_not_supported"); /* not internal_error */
    assert_string_equal(http_server_error_code(413), "payload_too_large");
    assert_string_equal(http_server_error_code(404), "not_found");
    assert_string_equal(http_server_error_code(400), "validation_error");
    assert_string_equal(http_server_error_code(418), "bad_request"); /* a 4xx with no code of its own */
    assert_string_equal(http_server_error_code(431), "headers_too_large");
    assert_string_equal(http_server_error_code(503), "unavailable");
    assert_string_equal(http_server_error_code(500), "internal_error");
    assert_null(http_server_error_code(200));
    assert_null(http_server_error_code(302));
    /* the web server's own 500 (its program died mid-request) is answered 503, never 500 */
    assert_int_equal(http_server_error_status(500), 503);
    assert_string_equal(http_server_error_code(http_server_error_status(500)), "unavailable");
    assert_int_equal(http_server_error_status(413), 413);
    assert_int_equal(http_server_error_status(403), 404); /* a directory of the web root: not there */
    assert_int_equal(http_server_error_status(502), 502);
    assert_null(http_server_error_code(600));
}

/* ---- query decoding ---- */

static void test_url_decode(void **state)
{
    (void)state;
    pool_t *p = pool_new();
    struct {
        const char *in, *want;
    } cases[] = {
        {"", ""},
        {"plain", "plain"},
        {"a%20b", "a b"},
        {"a+b", "a b"},                /* '+' is a space in a query */
        {"1%2B1", "1+1"},              /* an encoded '+' stays a '+' */
        {"%e2%82%AC", "\xe2\x82\xac"}, /* either case of hex, bytes as they are (the euro sign) */
        {"100%", "100%"},              /* '%' without two hex digits is kept */
        {"%4", "%4"},
        {"%zz%4g", "%zz%4g"},
        {"cs_test_%7BID%7D", "cs_test_{ID}"},
        {"a%00b", "a%00b"}, /* %00 stays as it is: a NUL would cut the string */
        {"%%41%", "%A%"},
        {"%2500", "%00"}, /* decoded once: "%25" is the '%' */
        {"%41%4", "A%4"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_string_equal(http_url_decode(p, cases[i].in, strlen(cases[i].in)), cases[i].want);
    assert_string_equal(http_url_decode(p, "ab%41cd", 4), "ab%4"); /* only s[0..n) is read */
    assert_string_equal(http_url_decode(p, "a\0%41", 4), "a");     /* a NUL byte ends it */
    pool_free(p);
}

static void test_query(void **state)
{
    (void)state;
    http_req_t req;
    memset(&req, 0, sizeof req);
    req.pool = pool_new();
    req.query = "limit=20&before=&session%5Fid=cs%5Ftest+1&flag&x=a%26b%3Dc";
    assert_string_equal(http_query(&req, "limit"), "20");
    assert_string_equal(http_query(&req, "before"), "");
    assert_string_equal(http_query(&req, "session_id"), "cs_test 1"); /* the name is decoded too */
    assert_string_equal(http_query(&req, "flag"), "");                /* present without a value */
    assert_string_equal(http_query(&req, "x"), "a&b=c");              /* encoded separators stay data */
    assert_null(http_query(&req, "missing"));
    assert_null(http_query(&req, "lim"));
    req.query = "";
    assert_null(http_query(&req, "limit"));
    pool_free(req.pool);
}

/* Idempotency-Key (POST message, POST /subscribe/pro): 1..255 visible ASCII. */
static void test_idem_key(void **state)
{
    char k[HTTP_IDEM_KEY_MAX + 2];
    (void)state;

    assert_true(http_idem_key_valid("a"));
    assert_true(http_idem_key_valid("3f1c2a9e-0b7d-4c3e-9a51-6b2f8f0e1d22"));
    assert_true(http_idem_key_valid("!~{}[]\"'"));
    assert_false(http_idem_key_valid(NULL));
    assert_false(http_idem_key_valid(""));
    assert_false(http_idem_key_valid("has space"));
    assert_false(http_idem_key_valid("tab\there"));
    assert_false(http_idem_key_valid("del\x7f"));
    assert_false(http_idem_key_valid("caf\xc3\xa9")); /* non-ASCII */

    memset(k, 'x', HTTP_IDEM_KEY_MAX);
    k[HTTP_IDEM_KEY_MAX] = '\0';
    assert_true(http_idem_key_valid(k)); /* exactly 255 */
    k[HTTP_IDEM_KEY_MAX] = 'x';
    k[HTTP_IDEM_KEY_MAX + 1] = '\0';
    assert_false(http_idem_key_valid(k)); /* 256 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_idem_key),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_capture_digits),
        cmocka_unit_test(test_param_id),
        cmocka_unit_test(test_cors_allowed),
        cmocka_unit_test(test_server_error_code),
        cmocka_unit_test(test_url_decode),
        cmocka_unit_test(test_query),
    };
    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
