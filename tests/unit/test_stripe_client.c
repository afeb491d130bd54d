/* Unit tests of lib/stripe_client.c: form encoding, the Checkout form, the response and error parsers,
 * failure sentences, and the client against a scripted local HTTP server (failure classes, the overall
 * deadline). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "stripe_client.h"

/* ---- form encoding ---- */

static void test_form_escape_matches_curl(void **state)
{
    (void)state;
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    buf_t b = {0};
    stripe_form_escape(&b, all, sizeof all);
    CURL *h = curl_easy_init();
    assert_non_null(h);
    char *ref = curl_easy_escape(h, all, (int)sizeof all);
    assert_non_null(ref);
    assert_string_equal(b.data, ref);
    curl_free(ref);
    curl_easy_cleanup(h);
    buf_free(&b);

    stripe_form_escape(&b, "a b&c=d/\xc3\xa9~._-Z9", strlen("a b&c=d/\xc3\xa9~._-Z9"));
    assert_string_equal(b.data, "a%20b%26c%3Dd%2F%C3%A9~._-Z9");
    buf_free(&b);
}

static void test_form_add(void **state)
{
    (void)state;
    buf_t b = {0};
    stripe_form_add(&b, "mode", "subscription");
    stripe_form_add(&b, "line_items[0][price]", "price_x");
    stripe_form_add(&b, "skipped", NULL);
    stripe_form_add(&b, "success_url", "https://h/p?session_id={CHECKOUT_SESSION_ID}");
    assert_string_equal(b.data, "mode=subscription&line_items%5B0%5D%5Bprice%5D=price_x"
                                "&success_url=https%3A%2F%2Fh%2Fp%3Fsession_id%3D%7BCHECKOUT_SESSION_ID%7D");
    buf_free(&b);
}

/* Decode application/x-www-form-urlencoded value of key in form into out; 0 found. */
static int form_get(const char *form, const char *key, char *out, size_t outsize)
{
    const char *p = form;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        if (eq) {
            char *k = curl_easy_unescape(NULL, p, (int)(eq - p), NULL);
            char *v = curl_easy_unescape(NULL, eq + 1, (int)(p + plen - eq - 1), NULL);
            int hit = strcmp(k, key) == 0;
            if (hit)
                snprintf(out, outsize, "%s", v);
            curl_free(k);
            curl_free(v);
            if (hit)
                return 0;
        }
        p = amp ? amp + 1 : NULL;
    }
    return -1;
}

static void test_checkout_form(void **state)
{
    (void)state;
    stripe_checkout_req_t req = {.api_base = "http://x",
                                 .secret_key = "sk_test_k",
                                 .price_id = "price_p&1",
                                 .public_url = "https://app.example.com/",
                                 .user_id = 42};
    buf_t b = {0};
    char v[512];
    stripe_checkout_form(&req, &b);
    assert_null(strstr(b.data, "sk_test_k"));
    assert_int_equal(form_get(b.data, "mode", v, sizeof v), 0);
    assert_string_equal(v, "subscription");
    assert_int_equal(form_get(b.data, "line_items[0][price]", v, sizeof v), 0);
    assert_string_equal(v, "price_p&1");
    assert_int_equal(form_get(b.data, "line_items[0][quantity]", v, sizeof v), 0);
    assert_string_equal(v, "1");
    assert_int_equal(form_get(b.data, "success_url", v, sizeof v), 0);
    assert_string_equal(v, "https://app.example.com/payment/success?session_id={CHECKOUT_SESSION_ID}");
    assert_int_equal(form_get(b.data, "cancel_url", v, sizeof v), 0);
    assert_string_equal(v, "https://app.example.com/payment/cancel");
    assert_int_equal(form_get(b.data, "client_reference_id", v, sizeof v), 0);
    assert_string_equal(v, "42");
    assert_int_equal(form_get(b.data, "metadata[user_id]", v, sizeof v), 0);
    assert_string_equal(v, "42");
    assert_int_equal(form_get(b.data, "subscription_data[metadata][user_id]", v, sizeof v), 0);
    assert_string_equal(v, "42");
    assert_int_not_equal(form_get(b.data, "customer_email", v, sizeof v), 0);
    assert_int_not_equal(form_get(b.data, "customer", v, sizeof v), 0);   /* none given: Checkout makes one */
    assert_int_not_equal(form_get(b.data, "expires_at", v, sizeof v), 0); /* none given: Stripe's 24 h */
    buf_free(&b);

    /* a customer to reuse (never with customer_email: Stripe refuses both) and an explicit expiry */
    req.customer = "cus_Abc123";
    req.expires_at = 1790003600;
    stripe_checkout_form(&req, &b);
    assert_int_equal(form_get(b.data, "customer", v, sizeof v), 0);
    assert_string_equal(v, "cus_Abc123");
    assert_int_not_equal(form_get(b.data, "customer_email", v, sizeof v), 0);
    assert_int_equal(form_get(b.data, "expires_at", v, sizeof v), 0);
    assert_string_equal(v, "1790003600");
    assert_int_equal(form_get(b.data, "client_reference_id", v, sizeof v), 0); /* the rest unchanged */
    assert_string_equal(v, "42");
    buf_free(&b);
    req.customer = ""; /* empty is none */
    req.expires_at = 0;
    stripe_checkout_form(&req, &b);
    assert_int_not_equal(form_get(b.data, "customer", v, sizeof v), 0);
    assert_int_not_equal(form_get(b.data, "expires_at", v, sizeof v), 0);
    buf_free(&b);
}

/* ---- client parsers ---- */

static void test_parse_checkout_session(void **state)
{
    (void)state;
    stripe_checkout_session_t s;
    char err[200];
    const char *ok = "{\"id\":\"cs_test_abc\",\"object\":\"checkout.session\",\"url\":"
                     "\"https://checkout.stripe.com/c/pay/cs_test_abc\",\"mode\":\"subscription\"}";
    assert_int_equal(stripe_parse_checkout_session(ok, strlen(ok), &s, err, sizeof err), 0);
    assert_string_equal(s.id, "cs_test_abc");
    assert_string_equal(s.url, "https://checkout.stripe.com/c/pay/cs_test_abc");
    assert_int_equal(s.expires_at, 0); /* not in the answer */
    const char *exp = "{\"id\":\"cs_test_e\",\"url\":\"https://checkout.stripe.com/c/pay/cs_test_e\","
                      "\"expires_at\":1790003600}";
    assert_int_equal(stripe_parse_checkout_session(exp, strlen(exp), &s, err, sizeof err), 0);
    assert_int_equal(s.expires_at, 1790003600LL);
    /* an expires_at we cannot use is no expiry (the one asked for is stored then), not a failed call */
    const char *odd[] = {"\"1790003600\"", "-5", "0", "1e10", "null", "99999999999999"};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        char body[200];
        snprintf(body, sizeof body, "{\"id\":\"cs_test_e\",\"url\":\"https://x/\",\"expires_at\":%s}", odd[i]);
        assert_int_equal(stripe_parse_checkout_session(body, strlen(body), &s, err, sizeof err), 0);
        assert_int_equal(s.expires_at, 0);
    }
    const char *nourl = "{\"id\":\"cs_test_abc\",\"url\":null}";
    assert_int_equal(stripe_parse_checkout_session(nourl, strlen(nourl), &s, err, sizeof err), -1);
    const char *badid = "{\"id\":\"pi_1\",\"url\":\"https://x\"}";
    assert_int_equal(stripe_parse_checkout_session(badid, strlen(badid), &s, err, sizeof err), -1);
    assert_int_equal(stripe_parse_checkout_session("<html>", 6, &s, err, sizeof err), -1);
}

static void test_error_message(void **state)
{
    (void)state;
    char err[300];
    const char *body = "{\"error\":{\"type\":\"invalid_request_error\",\"code\":\"resource_missing\","
                       "\"message\":\"No such price: 'price_x'; key sk_test_SECRET123 used\\nnext\","
                       "\"param\":\"line_items[0][price]\"}}";
    stripe_error_message(body, strlen(body), 400, "sk_test_SECRET123", err, sizeof err);
    assert_non_null(strstr(err, "400"));
    assert_non_null(strstr(err, "invalid_request_error"));
    assert_non_null(strstr(err, "No such price: 'price_x'"));
    assert_null(strstr(err, "sk_test_SECRET123"));
    assert_null(strchr(err, '\n'));
    stripe_error_message("oops", 4, 503, "sk_test_SECRET123", err, sizeof err);
    assert_string_equal(err, "Stripe answered 503.");
    /* small buffers truncate without overflowing */
    char tiny[16];
    stripe_error_message(body, strlen(body), 400, NULL, tiny, sizeof tiny);
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
    /* a complete trailing multibyte character is kept; a cut one is dropped */
    const char *utf = "{\"error\":{\"type\":\"api_error\",\"message\":\"caf\u00e9\"}}";
    stripe_error_message(utf, strlen(utf), 500, NULL, err, sizeof err);
    assert_non_null(strstr(err, "caf\xc3\xa9"));
    char cut[sizeof "Stripe answered 500 (api_error): caf"]; /* room for "caf" and the NUL only... */
    char cut2[sizeof cut + 1];                               /* ...and one byte of the two of e-acute */
    stripe_error_message(utf, strlen(utf), 500, NULL, cut, sizeof cut);
    assert_string_equal(cut, "Stripe answered 500 (api_error): caf");
    stripe_error_message(utf, strlen(utf), 500, NULL, cut2, sizeof cut2);
    assert_string_equal(cut2, "Stripe answered 500 (api_error): caf");
}

/* error.code and error.param of a refusal: what billing_checkout reads to tell a deleted customer. */
static void test_error_fields(void **state)
{
    (void)state;
    char code[48], param[48], tiny[8];
    const char *gone = "{\"error\":{\"type\":\"invalid_request_error\",\"code\":\"resource_missing\","
                       "\"message\":\"No such customer: 'cus_x'\",\"param\":\"customer\"}}";
    stripe_error_fields(gone, strlen(gone), code, sizeof code, param, sizeof param);
    assert_string_equal(code, "resource_missing");
    assert_string_equal(param, "customer");
    const char *item = "{\"error\":{\"code\":\"resource_missing\",\"param\":\"line_items[0][price]\"}}";
    stripe_error_fields(item, strlen(item), code, sizeof code, param, sizeof param);
    assert_string_equal(param, "line_items[0][price]");
    /* absent, not strings, odd bytes, not JSON: empty */
    const char *odd = "{\"error\":{\"code\":7,\"param\":\"cus tomer\"}}";
    stripe_error_fields(odd, strlen(odd), code, sizeof code, param, sizeof param);
    assert_string_equal(code, "");
    assert_string_equal(param, "");
    stripe_error_fields("{\"error\":{}}", 12, code, sizeof code, param, sizeof param);
    assert_string_equal(code, "");
    stripe_error_fields("oops", 4, code, sizeof code, param, sizeof param);
    assert_string_equal(code, "");
    assert_string_equal(param, "");
    stripe_error_fields(NULL, 0, code, sizeof code, param, sizeof param);
    assert_string_equal(code, "");
    /* cut to the buffer */
    stripe_error_fields(gone, strlen(gone), tiny, sizeof tiny, param, sizeof param);
    assert_string_equal(tiny, "resourc");
}

static void test_failure_sentences(void **state)
{
    (void)state;
    int classes[] = {STRIPE_FAIL_REFUSED, STRIPE_FAIL_BUSY,       STRIPE_FAIL_UNREACHABLE,
                     STRIPE_FAIL_TIMEOUT, STRIPE_FAIL_UNEXPECTED, 99};
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
        const char *m = stripe_failure_sentence(classes[i]);
        assert_non_null(m);
        assert_true(strncmp(m, "Stripe ", 7) == 0);
        for (size_t j = 0; j < i; j++)
            if (classes[j] != 99 && classes[i] != 99)
                assert_string_not_equal(m, stripe_failure_sentence(classes[j]));
    }
}

static void test_client_unconfigured(void **state)
{
    (void)state;
    stripe_checkout_req_t req = {.api_base = "http://127.0.0.1:1", .user_id = 1};
    stripe_checkout_session_t s;
    stripe_call_result_t r;
    assert_int_equal(stripe_create_checkout_session(&req, &s, &r), -1);
    assert_int_equal(r.http_status, 0);
    assert_int_not_equal(r.failure, STRIPE_FAIL_NONE);
    /* configured, but nothing listens: unreachable, retried once, the detail names no key */
    req.secret_key = "sk_test_nolisten";
    req.price_id = "price_p";
    req.public_url = "http://127.0.0.1";
    req.timeout_ms = 2000;
    assert_int_equal(stripe_create_checkout_session(&req, &s, &r), -1);
    assert_int_equal(r.http_status, 0);
    assert_int_equal(r.failure, STRIPE_FAIL_UNREACHABLE);
    assert_int_equal(r.attempts, 2);
    assert_null(strstr(r.detail, "sk_test_nolisten"));
    assert_true(strlen(r.detail) > 0);
    assert_null(strstr(stripe_failure_sentence(r.failure), "127.0.0.1"));
    stripe_cleanup();
    stripe_cleanup();
}

/* ---- the client against a scripted local HTTP server (a child process) ---- */

typedef struct canned {
    int delay_ms; /* before answering */
    int status;
    const char *body;
} canned_t;

/* Read one HTTP request (headers and Content-Length body) so that closing does not reset the connection. */
static void read_request(int c)
{
    char buf[65536];
    size_t n = 0, need = 0;
    char *end = NULL;
    while (n < sizeof buf - 1) {
        ssize_t k = read(c, buf + n, sizeof buf - 1 - n);
        if (k <= 0)
            return;
        n += (size_t)k;
        buf[n] = '\0';
        if (!end && (end = strstr(buf, "\r\n\r\n")) != NULL) {
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            need = (size_t)(end + 4 - buf) + (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
        }
        if (end && n >= need)
            return;
    }
}

/* Serve script (one connection per entry, then exit) on a free 127.0.0.1 port; returns the child's pid. */
static pid_t serve(const canned_t *script, int n, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    *port = ntohs(a.sin_port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGPIPE, SIG_IGN); /* the client may have given up */
        alarm(30);
        for (int i = 0; i < n; i++) {
            char head[256];
            int c = accept(fd, NULL, NULL);
            if (c < 0)
                _exit(1);
            read_request(c);
            usleep((useconds_t)script[i].delay_ms * 1000);
            int hl = snprintf(head, sizeof head,
                              "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                              "Connection: close\r\n\r\n",
                              script[i].status, strlen(script[i].body));
            if (write(c, head, (size_t)hl) < 0 || write(c, script[i].body, strlen(script[i].body)) < 0) {
                /* the client went away */
            }
            close(c);
        }
        _exit(0);
    }
    close(fd);
    return pid;
}

static void reap(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* Call the scripted server; *ms gets the call's duration. */
static int call(int port, long timeout_ms, stripe_checkout_session_t *s, stripe_call_result_t *r, double *ms)
{
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
    stripe_checkout_req_t req = {.api_base = base,
                                 .secret_key = "sk_test_SCRIPTED",
                                 .price_id = "price_p",
                                 .public_url = "http://127.0.0.1",
                                 .user_id = 1,
                                 .timeout_ms = timeout_ms};
    double t0 = now_ms();
    int rc = stripe_create_checkout_session(&req, s, r);
    *ms = now_ms() - t0;
    return rc;
}

#define SESSION_OK "{\"id\":\"cs_test_ok\",\"url\":\"https://checkout.stripe.com/c/pay/cs_test_ok\"}"

static void test_client_classes(void **state)
{
    (void)state;
    stripe_checkout_session_t s;
    stripe_call_result_t r;
    double ms;
    int port;
    pid_t pid;

    /* success, and a 500 retried into a success */
    canned_t ok[] = {{0, 500, "{\"error\":{\"type\":\"api_error\",\"message\":\"boom\"}}"}, {0, 200, SESSION_OK}};
    pid = serve(ok, 2, &port);
    assert_int_equal(call(port, 5000, &s, &r, &ms), 0);
    assert_string_equal(s.id, "cs_test_ok");
    assert_int_equal(r.failure, STRIPE_FAIL_NONE);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(r.http_status, 200);
    reap(pid);

    /* a 4xx: refused, not retried; Stripe's message (price id, key) is only in the detail, the key masked */
    canned_t refused[] = {{0, 400,
                           "{\"error\":{\"type\":\"invalid_request_error\",\"code\":\"resource_missing\","
                           "\"message\":\"No such price: 'price_p' (key sk_test_SCRIPTED)\"}}"}};
    pid = serve(refused, 1, &port);
    assert_int_equal(call(port, 5000, &s, &r, &ms), -1);
    assert_int_equal(r.failure, STRIPE_FAIL_REFUSED);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.http_status, 400);
    assert_non_null(strstr(r.detail, "No such price"));
    assert_null(strstr(r.detail, "sk_test_SCRIPTED"));
    assert_null(strstr(stripe_failure_sentence(r.failure), "price"));
    reap(pid);

    /* Stripe's rate limit (429) and a concurrent use of the key (409): retried once after a pause */
    canned_t limited[] = {{0, 429, "{\"error\":{\"type\":\"rate_limit_error\"}}"}, {0, 200, SESSION_OK}};
    pid = serve(limited, 2, &port);
    assert_int_equal(call(port, 5000, &s, &r, &ms), 0);
    assert_int_equal(r.attempts, 2);
    assert_true(ms >= 450);
    reap(pid);
    canned_t conflict[] = {{0, 409, "{\"error\":{\"type\":\"idempotency_error\"}}"},
                           {0, 409, "{\"error\":{\"type\":\"idempotency_error\"}}"}};
    pid = serve(conflict, 2, &port);
    assert_int_equal(call(port, 5000, &s, &r, &ms), -1);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(r.failure, STRIPE_FAIL_BUSY);
    assert_int_equal(r.http_status, 409);
    reap(pid);

    /* a 2xx we cannot use */
    canned_t odd[] = {{0, 200, "<html>hello</html>"}};
    pid = serve(odd, 1, &port);
    assert_int_equal(call(port, 5000, &s, &r, &ms), -1);
    assert_int_equal(r.failure, STRIPE_FAIL_UNEXPECTED);
    reap(pid);

    /* no answer in time */
    canned_t slow[] = {{2000, 200, SESSION_OK}};
    pid = serve(slow, 1, &port);
    assert_int_equal(call(port, 500, &s, &r, &ms), -1);
    assert_int_equal(r.failure, STRIPE_FAIL_TIMEOUT);
    assert_int_equal(r.attempts, 1);
    reap(pid);
    stripe_cleanup();
}

/* M3: a slow 5xx is retried only within what is left of the one budget. */
static void test_client_overall_deadline(void **state)
{
    (void)state;
    stripe_checkout_session_t s;
    stripe_call_result_t r;
    double ms;
    int port;
    canned_t slow500[] = {{600, 500, "{\"error\":{\"type\":\"api_error\",\"message\":\"slow\"}}"},
                          {600, 500, "{\"error\":{\"type\":\"api_error\",\"message\":\"slow\"}}"}};
    pid_t pid = serve(slow500, 2, &port);
    assert_int_equal(call(port, 1000, &s, &r, &ms), -1);
    /* the retry had about 400 ms of the 1000: it times out (a fresh budget would get the second 500 at
     * 1200 ms) */
    assert_int_equal(r.attempts, 2);
    assert_int_equal(r.failure, STRIPE_FAIL_TIMEOUT);
    assert_true(ms < 1250);
    reap(pid);

    /* a first attempt that left less than the retry floor (250 ms) is not retried at all */
    canned_t late500[] = {{850, 500, "{\"error\":{\"type\":\"api_error\",\"message\":\"late\"}}"}};
    pid = serve(late500, 1, &port);
    assert_int_equal(call(port, 1000, &s, &r, &ms), -1);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.failure, STRIPE_FAIL_BUSY);
    assert_int_equal(r.http_status, 500);
    reap(pid);
    stripe_cleanup();
}

int main(void)
{
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_form_escape_matches_curl),
        cmocka_unit_test(test_form_add),
        cmocka_unit_test(test_checkout_form),
        cmocka_unit_test(test_parse_checkout_session),
        cmocka_unit_test(test_error_message),
        cmocka_unit_test(test_error_fields),
        cmocka_unit_test(test_failure_sentences),
        cmocka_unit_test(test_client_unconfigured),
        cmocka_unit_test(test_client_classes),
        cmocka_unit_test(test_client_overall_deadline),
    };
    /* clang-format on */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
