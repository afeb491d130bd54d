/* Unit tests of the whole request cycle of http.c through http_handle_request, over in-memory FastCGI streams
 * (the seam fuzz/http.c uses): a body that arrives in many FastCGI records, the body cap (413, also from
 * CONTENT_LENGTH alone), the query string and {id} captures, the request id, and REDIRECT_STATUS. The
 * streams are fcgi_mem.h's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcgiapp.h>
#include <stdio.h>
#include <string.h>

#include "fcgi_mem.h"
#include "http.h"
#include "log.h"

static void h_echo(http_req_t *req)
{
    http_raw(req, 200, "text/plain", req->body, req->body_len);
}

static void h_room(http_req_t *req)
{
    const char *limit = http_query(req, "limit");
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_int64(http_param_id(req, 0)));
    json_object_object_add(o, "limit", limit ? json_object_new_string(limit) : NULL);
    http_json(req, 200, o);
}

static const http_route_t routes[] = {
    {"POST", "/echo", h_echo},
    {"GET", "/chatroom/{id}", h_room},
};

/* Serve one request; the response as written to the wire goes into out (caller frees). */
static void serve(char **envp, const char *body, size_t len, size_t chunk, buf_t *out)
{
    fcgi_mem_serve(envp, body, len, chunk, routes, sizeof routes / sizeof routes[0], out);
}

/* The response body (after the empty line). */
static const char *body_of(const buf_t *b)
{
    const char *p = strstr(b->data, "\r\n\r\n");
    assert_non_null(p);
    return p + 4;
}

static void test_body_in_records(void **state)
{
    (void)state;
    char body[3001];
    for (size_t i = 0; i < sizeof body - 1; i++)
        body[i] = (char)('a' + i % 26);
    body[sizeof body - 1] = '\0';
    char *envp[] = {"REQUEST_METHOD=POST", "REQUEST_URI=/echo", "CONTENT_LENGTH=3000", NULL};
    size_t chunks[] = {1, 7, 4096};
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        buf_t out;
        serve(envp, body, 3000, chunks[i], &out);
        assert_true(strncmp(out.data, "Status: 200 OK\r\n", 16) == 0);
        assert_non_null(strstr(out.data, "\r\nContent-Length: 3000\r\n"));
        assert_string_equal(body_of(&out), body);
        buf_free(&out);
    }
}

static void test_body_cap(void **state)
{
    (void)state;
    char body[101];
    memset(body, 'x', sizeof body);
    char *streamed[] = {"REQUEST_METHOD=POST", "REQUEST_URI=/echo", NULL};
    char *announced[] = {"REQUEST_METHOD=POST", "REQUEST_URI=/echo", "CONTENT_LENGTH=5000", NULL};
    buf_t out;
    http_set_max_body(100);
    serve(streamed, body, 100, 30, &out); /* at the cap: served */
    assert_true(strncmp(out.data, "Status: 200 ", 12) == 0);
    buf_free(&out);
    serve(streamed, body, 101, 30, &out); /* one byte over, no length announced */
    assert_true(strncmp(out.data, "Status: 413 ", 12) == 0);
    assert_non_null(strstr(body_of(&out), "\"payload_too_large\""));
    buf_free(&out);
    serve(announced, body, 10, 30, &out); /* over by its Content-Length alone */
    assert_true(strncmp(out.data, "Status: 413 ", 12) == 0);
    buf_free(&out);
    http_set_max_body(HTTP_MAX_BODY);
}

static void test_query_id_request_id(void **state)
{
    (void)state;
    char *envp[] = {"REQUEST_METHOD=GET", "REQUEST_URI=/chatroom/42/?limit=5%20x", "QUERY_STRING=limit=5%20x",
                    "HTTP_X_REQUEST_ID=abc-123", NULL};
    char *bad_id[] = {"REQUEST_METHOD=GET", "REQUEST_URI=/chatroom/42", "HTTP_X_REQUEST_ID=a b", NULL};
    buf_t out;
    serve(envp, "", 0, 1, &out);
    assert_true(strncmp(out.data, "Status: 200 OK\r\nX-Request-Id: abc-123\r\n", 39) == 0);
    assert_string_equal(body_of(&out), "{\"id\":42,\"limit\":\"5 x\"}");
    buf_free(&out);
    serve(bad_id, "", 0, 1, &out); /* not a sane id: a random one of 32 hex digits instead */
    const char *rid = strstr(out.data, "X-Request-Id: ");
    assert_non_null(rid);
    assert_int_equal(strspn(rid + 14, "0123456789abcdef"), 32);
    buf_free(&out);
}

/* "%00" is not decoded: a NUL would cut the value (limit=5%00x read as 5) or the name (limit%00x=7 read as limit). */
static void test_query_nul(void **state)
{
    (void)state;
    char *value[] = {"REQUEST_METHOD=GET", "REQUEST_URI=/chatroom/1", "QUERY_STRING=limit=5%00abc", NULL};
    char *name[] = {"REQUEST_METHOD=GET", "REQUEST_URI=/chatroom/1", "QUERY_STRING=limit%00x=7&limit=2%41", NULL};
    buf_t out;
    serve(value, "", 0, 1, &out);
    assert_string_equal(body_of(&out), "{\"id\":1,\"limit\":\"5%00abc\"}");
    buf_free(&out);
    serve(name, "", 0, 1, &out);
    assert_string_equal(body_of(&out), "{\"id\":1,\"limit\":\"2A\"}");
    buf_free(&out);
}

static void test_redirect_status(void **state)
{
    (void)state;
    char *envp[] = {"REQUEST_METHOD=GET", "REQUEST_URI=/no/such/path", "REDIRECT_STATUS=414", NULL};
    buf_t out;
    serve(envp, "", 0, 1, &out);
    assert_true(strncmp(out.data, "Status: 414 URI Too Long\r\n", 26) == 0);
    assert_non_null(strstr(body_of(&out), "\"uri_too_long\""));
    buf_free(&out);
}

int main(void)
{
    log_init("test_http_request", LOG_WARN); /* no access lines */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_in_records),     cmocka_unit_test(test_body_cap),
        cmocka_unit_test(test_query_id_request_id), cmocka_unit_test(test_query_nul),
        cmocka_unit_test(test_redirect_status),
    };
    return cmocka_run_group_tests_name("http_request", tests, NULL, NULL);
}
