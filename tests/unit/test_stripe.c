/* Unit tests of the pure parts of lib/stripe.c: form encoding, Stripe-Signature verification, event
 * parsing, the status policy and per-subscription ordering, the response/error parsers, and the client
 * against a scripted local HTTP server (failure classes, the overall deadline). */
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

#include "stripe.h"

/* REFERENCE.md 2.3 test vector (stripe-node and openssl agree). */
#define VEC_SECRET "whsec_test_secret"
#define VEC_T 1700000000LL
#define VEC_BODY "{\"id\":\"evt_test_webhook\",\"object\":\"event\"}"
#define VEC_SIG "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"
#define VEC_HEADER "t=1700000000,v1=" VEC_SIG
#define WRONG_SIG "0000000000000000000000000000000000000000000000000000000000000000"

static int verify(const char *header, const char *body, long long now)
{
    return stripe_signature_verify(header, VEC_SECRET, body, strlen(body), now, STRIPE_SIG_TOLERANCE, NULL);
}

/* ---- signatures ---- */

static void test_sig_compute_vector(void **state)
{
    (void)state;
    char hex[65];
    assert_int_equal(stripe_signature_compute(VEC_SECRET, VEC_T, VEC_BODY, strlen(VEC_BODY), hex), 0);
    assert_string_equal(hex, VEC_SIG);
    /* the key is the whole string, prefix included */
    assert_int_equal(stripe_signature_compute("test_secret", VEC_T, VEC_BODY, strlen(VEC_BODY), hex), 0);
    assert_string_not_equal(hex, VEC_SIG);
    /* t is part of the signed payload */
    assert_int_equal(stripe_signature_compute(VEC_SECRET, VEC_T + 1, VEC_BODY, strlen(VEC_BODY), hex), 0);
    assert_string_not_equal(hex, VEC_SIG);
}

static void test_sig_vector_accepted(void **state)
{
    (void)state;
    long long t = 0;
    assert_int_equal(
        stripe_signature_verify(VEC_HEADER, VEC_SECRET, VEC_BODY, strlen(VEC_BODY), VEC_T, STRIPE_SIG_TOLERANCE, &t),
        STRIPE_SIG_OK);
    assert_int_equal(t, VEC_T);
    /* the body is the raw bytes: a length shorter than the string is a different payload */
    assert_int_equal(stripe_signature_verify(VEC_HEADER, VEC_SECRET, VEC_BODY, strlen(VEC_BODY) - 1, VEC_T,
                                             STRIPE_SIG_TOLERANCE, NULL),
                     STRIPE_SIG_MISMATCH);
}

static void test_sig_tolerance(void **state)
{
    (void)state;
    assert_int_equal(verify(VEC_HEADER, VEC_BODY, VEC_T + 300), STRIPE_SIG_OK);
    assert_int_equal(verify(VEC_HEADER, VEC_BODY, VEC_T + 301), STRIPE_SIG_STALE);
    assert_int_equal(verify(VEC_HEADER, VEC_BODY, VEC_T + 86400), STRIPE_SIG_STALE);
    assert_int_equal(verify(VEC_HEADER, VEC_BODY, VEC_T - 300), STRIPE_SIG_OK);
    assert_int_equal(verify(VEC_HEADER, VEC_BODY, VEC_T - 301), STRIPE_SIG_FUTURE);
    /* real time: the vector is years old */
    assert_int_equal(stripe_signature_verify(VEC_HEADER, VEC_SECRET, VEC_BODY, strlen(VEC_BODY), (long long)time(NULL),
                                             STRIPE_SIG_TOLERANCE, NULL),
                     STRIPE_SIG_STALE);
}

static void test_sig_fresh_roundtrip(void **state)
{
    (void)state;
    char hex[65], header[128];
    const char *body = "{\"id\":\"evt_1\",\"type\":\"x\",\"created\":1}\n";
    long long now = 1800000000LL;
    assert_int_equal(stripe_signature_compute("whsec_abc", now, body, strlen(body), hex), 0);
    snprintf(header, sizeof header, "t=%lld,v1=%s", now, hex);
    assert_int_equal(stripe_signature_verify(header, "whsec_abc", body, strlen(body), now, 300, NULL), 0);
    assert_int_equal(stripe_signature_verify(header, "whsec_abd", body, strlen(body), now, 300, NULL),
                     STRIPE_SIG_MISMATCH);
    /* empty body is still a payload */
    assert_int_equal(stripe_signature_compute("whsec_abc", now, "", 0, hex), 0);
    snprintf(header, sizeof header, "t=%lld,v1=%s", now, hex);
    assert_int_equal(stripe_signature_verify(header, "whsec_abc", "", 0, now, 300, NULL), 0);
}

static void test_sig_multiple_v1(void **state)
{
    (void)state;
    assert_int_equal(verify("t=1700000000,v1=" WRONG_SIG ",v1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_OK);
    assert_int_equal(verify("t=1700000000,v1=" VEC_SIG ",v1=" WRONG_SIG, VEC_BODY, VEC_T), STRIPE_SIG_OK);
    assert_int_equal(verify("v1=" WRONG_SIG ",t=1700000000,v0=" WRONG_SIG ",v1=" VEC_SIG, VEC_BODY, VEC_T),
                     STRIPE_SIG_OK);
    assert_int_equal(verify("t=1700000000,v1=" WRONG_SIG ",v1=" WRONG_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MISMATCH);
    /* optional whitespace after commas */
    assert_int_equal(verify("t=1700000000, v1=" WRONG_SIG ", v1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_OK);
}

static void test_sig_other_schemes_ignored(void **state)
{
    (void)state;
    /* v0 carrying the right value is not accepted: only v1 counts (downgrade protection) */
    assert_int_equal(verify("t=1700000000,v0=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=1700000000,v0=" VEC_SIG ",v1=" WRONG_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MISMATCH);
    assert_int_equal(verify("t=1700000000,v2=" VEC_SIG ",v1=" WRONG_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MISMATCH);
    assert_int_equal(verify("t=1700000000,V1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=1700000000,v1x=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
}

static void test_sig_tampered(void **state)
{
    (void)state;
    assert_int_equal(verify(VEC_HEADER, "{\"id\":\"evt_test_webhook\",\"object\":\"evenT\"}", VEC_T),
                     STRIPE_SIG_MISMATCH);
    assert_int_equal(verify(VEC_HEADER, VEC_BODY " ", VEC_T), STRIPE_SIG_MISMATCH);
    /* a moved timestamp with the old signature */
    assert_int_equal(verify("t=1700000001,v1=" VEC_SIG, VEC_BODY, 1700000001), STRIPE_SIG_MISMATCH);
    /* uppercase hex or a truncated/extended signature never matches */
    char upper[] = VEC_HEADER;
    for (char *p = upper + 16; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    assert_int_equal(verify(upper, VEC_BODY, VEC_T), STRIPE_SIG_MISMATCH);
    char shorter[] = VEC_HEADER;
    shorter[strlen(shorter) - 1] = '\0';
    assert_int_equal(verify(shorter, VEC_BODY, VEC_T), STRIPE_SIG_MISMATCH);
    assert_int_equal(verify(VEC_HEADER "0", VEC_BODY, VEC_T), STRIPE_SIG_MISMATCH);
}

static void test_sig_missing_and_malformed(void **state)
{
    (void)state;
    assert_int_equal(verify(NULL, VEC_BODY, VEC_T), STRIPE_SIG_MISSING);
    assert_int_equal(verify("", VEC_BODY, VEC_T), STRIPE_SIG_MISSING);
    assert_int_equal(verify("v1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=1700000000", VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=1700000000,", VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=,v1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=17000x0000,v1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=-1700000000,v1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=99999999999999999999,v1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=1700000000,t=1700000000,v1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("garbage", VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify(",,,", VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t 1700000000 v1 " VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);

    /* a header past the ceiling is refused even if it would verify */
    size_t n = STRIPE_SIG_HEADER_MAX + 100;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'x', n);
    memcpy(big, VEC_HEADER ",", strlen(VEC_HEADER ","));
    big[n] = '\0';
    assert_int_equal(verify(big, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    free(big);

    /* no secret configured: nothing verifies */
    assert_int_not_equal(stripe_signature_verify(VEC_HEADER, "", VEC_BODY, strlen(VEC_BODY), VEC_T, 300, NULL),
                         STRIPE_SIG_OK);
    assert_int_not_equal(stripe_signature_verify(VEC_HEADER, NULL, VEC_BODY, strlen(VEC_BODY), VEC_T, 300, NULL),
                         STRIPE_SIG_OK);
    assert_non_null(stripe_sig_strerror(STRIPE_SIG_STALE));
}

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
    buf_free(&b);
}

/* ---- events ---- */

static int parse(const char *json, stripe_event_t *ev)
{
    char err[160] = "";
    int rc = stripe_event_parse(json, strlen(json), ev, err, sizeof err);
    if (rc < 0)
        assert_true(err[0] != '\0');
    return rc;
}

static void test_event_checkout(void **state)
{
    (void)state;
    stripe_event_t ev;
    const char *j = "{\"id\":\"evt_1\",\"object\":\"event\",\"api_version\":\"2026-10-28.endive\","
                    "\"created\":1790000000,\"type\":\"checkout.session.completed\",\"data\":{\"object\":"
                    "{\"id\":\"cs_test_a\",\"object\":\"checkout.session\",\"client_reference_id\":\"17\","
                    "\"customer\":\"cus_A\",\"subscription\":\"sub_A\",\"mode\":\"subscription\","
                    "\"metadata\":{\"user_id\":\"99\"},\"status\":\"complete\"}}}";
    assert_int_equal(parse(j, &ev), 0);
    assert_string_equal(ev.id, "evt_1");
    assert_string_equal(ev.type, "checkout.session.completed");
    assert_int_equal(ev.kind, STRIPE_EV_CHECKOUT_COMPLETED);
    assert_int_equal(ev.created, 1790000000LL);
    assert_int_equal(ev.user_id, 17); /* client_reference_id wins */
    assert_string_equal(ev.customer, "cus_A");
    assert_string_equal(ev.subscription, "sub_A");
    assert_string_equal(ev.mode, "subscription");

    /* no client_reference_id (or a useless one): metadata.user_id; expanded customer object */
    j = "{\"id\":\"evt_2\",\"created\":5,\"type\":\"checkout.session.completed\",\"data\":{\"object\":"
        "{\"client_reference_id\":\"abc\",\"customer\":{\"id\":\"cus_B\",\"object\":\"customer\"},"
        "\"subscription\":null,\"metadata\":{\"user_id\":\"23\"}}}}";
    assert_int_equal(parse(j, &ev), 0);
    assert_int_equal(ev.user_id, 23);
    assert_string_equal(ev.customer, "cus_B");
    assert_string_equal(ev.subscription, "");

    j = "{\"id\":\"evt_3\",\"created\":5,\"type\":\"checkout.session.completed\",\"data\":{\"object\":"
        "{\"client_reference_id\":\"-4\",\"metadata\":{}}}}";
    assert_int_equal(parse(j, &ev), 0);
    assert_int_equal(ev.user_id, 0);
}

static void test_event_subscription_layouts(void **state)
{
    (void)state;
    stripe_event_t ev;
    /* basil and later: period end per item */
    const char *basil = "{\"id\":\"evt_s1\",\"created\":1790000001,\"type\":\"customer.subscription.updated\","
                        "\"data\":{\"object\":{\"id\":\"sub_X\",\"object\":\"subscription\",\"customer\":"
                        "\"cus_X\",\"status\":\"past_due\",\"metadata\":{\"user_id\":\"7\"},\"items\":{"
                        "\"object\":\"list\",\"data\":[{\"id\":\"si_1\",\"current_period_end\":1792592000,"
                        "\"price\":{\"id\":\"price_test_pro\"}}]}},\"previous_attributes\":{\"status\":"
                        "\"active\"}}}";
    assert_int_equal(parse(basil, &ev), 0);
    assert_int_equal(ev.kind, STRIPE_EV_SUBSCRIPTION_UPDATED);
    assert_string_equal(ev.subscription, "sub_X");
    assert_string_equal(ev.customer, "cus_X");
    assert_string_equal(ev.status, "past_due");
    assert_int_equal(ev.user_id, 7);
    assert_int_equal(ev.current_period_end, 1792592000LL);

    /* before basil: top level */
    const char *old = "{\"id\":\"evt_s2\",\"created\":1,\"type\":\"customer.subscription.created\",\"data\":"
                      "{\"object\":{\"id\":\"sub_Y\",\"customer\":\"cus_Y\",\"status\":\"active\","
                      "\"current_period_end\":1700003600,\"items\":{\"data\":[{\"id\":\"si_2\"}]},"
                      "\"metadata\":{}}}}";
    assert_int_equal(parse(old, &ev), 0);
    assert_int_equal(ev.kind, STRIPE_EV_SUBSCRIPTION_CREATED);
    assert_int_equal(ev.current_period_end, 1700003600LL);
    assert_int_equal(ev.user_id, 0);

    /* both present: the item wins */
    const char *both = "{\"id\":\"evt_s3\",\"created\":1,\"type\":\"customer.subscription.deleted\",\"data\":"
                       "{\"object\":{\"id\":\"sub_Z\",\"status\":\"canceled\",\"current_period_end\":111,"
                       "\"items\":{\"data\":[{\"current_period_end\":222}]}}}}";
    assert_int_equal(parse(both, &ev), 0);
    assert_int_equal(ev.kind, STRIPE_EV_SUBSCRIPTION_DELETED);
    assert_int_equal(ev.current_period_end, 222);
    assert_string_equal(ev.status, "canceled");
    assert_string_equal(ev.customer, "");
}

static void test_event_invoice_layouts(void **state)
{
    (void)state;
    stripe_event_t ev;
    const char *basil = "{\"id\":\"evt_i1\",\"created\":9,\"type\":\"invoice.payment_failed\",\"data\":{"
                        "\"object\":{\"id\":\"in_1\",\"customer\":\"cus_I\",\"parent\":{\"type\":"
                        "\"subscription_details\",\"subscription_details\":{\"subscription\":\"sub_I\","
                        "\"metadata\":{\"user_id\":\"31\"}}}}}}";
    assert_int_equal(parse(basil, &ev), 0);
    assert_int_equal(ev.kind, STRIPE_EV_INVOICE_PAYMENT_FAILED);
    assert_string_equal(ev.subscription, "sub_I");
    assert_string_equal(ev.customer, "cus_I");
    assert_int_equal(ev.user_id, 31);

    const char *old = "{\"id\":\"evt_i2\",\"created\":9,\"type\":\"invoice.payment_failed\",\"data\":{"
                      "\"object\":{\"id\":\"in_2\",\"customer\":\"cus_J\",\"subscription\":\"sub_J\","
                      "\"subscription_details\":{\"metadata\":{\"user_id\":\"32\"}}}}}";
    assert_int_equal(parse(old, &ev), 0);
    assert_string_equal(ev.subscription, "sub_J");
    assert_int_equal(ev.user_id, 32);

    const char *none = "{\"id\":\"evt_i3\",\"created\":9,\"type\":\"invoice.payment_failed\",\"data\":{"
                       "\"object\":{\"id\":\"in_3\",\"customer\":\"cus_K\",\"parent\":null}}}";
    assert_int_equal(parse(none, &ev), 0);
    assert_string_equal(ev.subscription, "");
    assert_int_equal(ev.user_id, 0);
}

static void test_event_other_and_invalid(void **state)
{
    (void)state;
    stripe_event_t ev;
    assert_int_equal(parse("{\"id\":\"evt_o\",\"created\":3,\"type\":\"charge.refunded\"}", &ev), 0);
    assert_int_equal(ev.kind, STRIPE_EV_OTHER);
    assert_string_equal(ev.type, "charge.refunded");

    assert_int_equal(parse("", &ev), -1);
    assert_int_equal(parse("not json", &ev), -1);
    assert_int_equal(parse("[1,2]", &ev), -1);
    assert_int_equal(parse("{\"id\":\"evt_o\",\"created\":3,\"type\":\"x\"} trailing", &ev), -1);
    assert_int_equal(parse("{\"id\":\"evt_o\",\"created\":3,\"type\":\"x\"", &ev), -1);
    assert_int_equal(parse("{\"created\":3,\"type\":\"x\"}", &ev), -1);
    assert_int_equal(parse("{\"id\":\"evt_o\",\"type\":\"x\"}", &ev), -1);
    assert_int_equal(parse("{\"id\":\"evt_o\",\"created\":\"3\",\"type\":\"x\"}", &ev), -1);
    assert_int_equal(parse("{\"id\":\"evt_o\",\"created\":3}", &ev), -1);
    assert_int_equal(parse("{\"id\":5,\"created\":3,\"type\":\"x\"}", &ev), -1);
    assert_int_equal(parse("{\"id\":\"evt_\xff\",\"created\":3,\"type\":\"x\"}", &ev), -1);
    /* a known type needs its object */
    assert_int_equal(parse("{\"id\":\"evt_o\",\"created\":3,\"type\":\"customer.subscription.updated\"}", &ev), -1);
    assert_int_equal(parse("{\"id\":\"evt_o\",\"created\":3,\"type\":\"invoice.payment_failed\",\"data\":"
                           "{\"object\":\"in_1\"}}",
                           &ev),
                     -1);
    /* an id past the ceiling */
    char big[600];
    int n = snprintf(big, sizeof big, "{\"id\":\"evt_");
    memset(big + n, 'a', 300);
    snprintf(big + n + 300, sizeof big - (size_t)n - 300, "\",\"created\":3,\"type\":\"x\"}");
    assert_int_equal(parse(big, &ev), -1);
}

static void test_status_policy(void **state)
{
    (void)state;
    const char *grant[] = {"active", "trialing", "past_due"};
    const char *deny[] = {"canceled", "unpaid", "incomplete", "incomplete_expired", "paused", "", "someday", "Active"};
    for (size_t i = 0; i < sizeof grant / sizeof grant[0]; i++)
        assert_true(stripe_status_grants(grant[i]));
    for (size_t i = 0; i < sizeof deny / sizeof deny[0]; i++)
        assert_false(stripe_status_grants(deny[i]));
    assert_false(stripe_status_grants(NULL));
    assert_true(stripe_status_terminal("canceled"));
    assert_true(stripe_status_terminal("incomplete_expired"));
    assert_false(stripe_status_terminal("active"));
    assert_false(stripe_status_terminal("unpaid"));
    assert_false(stripe_status_terminal(NULL));
}

/* The SQL list the tier and the status endpoint use names exactly the statuses stripe_status_grants grants. */
static void test_granting_sql_agrees(void **state)
{
    (void)state;
    const char *sql = STRIPE_GRANTING_SQL;
    const char *all[] = {"active", "trialing",   "past_due",           "canceled",
                         "unpaid", "incomplete", "incomplete_expired", "paused"};
    size_t listed = 0;
    for (const char *p = sql; (p = strchr(p, '\'')) != NULL;) {
        const char *q = strchr(p + 1, '\'');
        assert_non_null(q);
        char name[32];
        assert_true((size_t)(q - p - 1) < sizeof name);
        memcpy(name, p + 1, (size_t)(q - p - 1));
        name[q - p - 1] = '\0';
        assert_true(stripe_status_grants(name));
        listed++;
        p = q + 1;
    }
    size_t granting = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        granting += (size_t)stripe_status_grants(all[i]);
    assert_int_equal(listed, granting);
}

static void test_status_rank(void **state)
{
    (void)state;
    assert_int_equal(stripe_status_rank("incomplete"), 0);
    assert_int_equal(stripe_status_rank("trialing"), 1);
    assert_int_equal(stripe_status_rank("active"), 1);
    assert_int_equal(stripe_status_rank("past_due"), 2);
    assert_int_equal(stripe_status_rank("unpaid"), 3);
    assert_int_equal(stripe_status_rank("paused"), 3);
    assert_int_equal(stripe_status_rank("someday"), 3);
    assert_int_equal(stripe_status_rank(""), 3);
    assert_int_equal(stripe_status_rank(NULL), 3);
    assert_int_equal(stripe_status_rank("canceled"), 4);
    assert_int_equal(stripe_status_rank("incomplete_expired"), 4);
}

static void test_checkout_status(void **state)
{
    (void)state;
    assert_string_equal(stripe_checkout_status("paid"), "active");
    assert_string_equal(stripe_checkout_status("unpaid"), "incomplete");
    assert_string_equal(stripe_checkout_status("no_payment_required"), "trialing");
    assert_string_equal(stripe_checkout_status(""), "active");
    assert_string_equal(stripe_checkout_status(NULL), "active");
}

static void test_period_end_bound(void **state)
{
    (void)state;
    assert_int_equal(stripe_period_end(1792592000LL), 1792592000LL);
    assert_int_equal(stripe_period_end(1), 1);
    assert_int_equal(stripe_period_end(STRIPE_TIMESTAMP_MAX), STRIPE_TIMESTAMP_MAX);
    assert_int_equal(stripe_period_end(STRIPE_TIMESTAMP_MAX + 1), 0);
    assert_int_equal(stripe_period_end(99999999999999LL), 0);
    assert_int_equal(stripe_period_end(0), 0);
    assert_int_equal(stripe_period_end(-5), 0);

    /* the parser applies it, in both layouts */
    stripe_event_t ev;
    char err[160];
    const char *item =
        "{\"id\":\"evt_p\",\"created\":1,\"type\":\"customer.subscription.updated\",\"data\":{\"object\":"
        "{\"id\":\"sub_P\",\"status\":\"active\",\"items\":{\"data\":[{\"current_period_end\":"
        "99999999999999}]}}}}";
    assert_int_equal(stripe_event_parse(item, strlen(item), &ev, err, sizeof err), 0);
    assert_int_equal(ev.current_period_end, 0);
    const char *top = "{\"id\":\"evt_p\",\"created\":1,\"type\":\"customer.subscription.updated\",\"data\":{\"object\":"
                      "{\"id\":\"sub_P\",\"status\":\"active\",\"current_period_end\":253402300800}}}";
    assert_int_equal(stripe_event_parse(top, strlen(top), &ev, err, sizeof err), 0);
    assert_int_equal(ev.current_period_end, 0);
    const char *max = "{\"id\":\"evt_p\",\"created\":1,\"type\":\"customer.subscription.updated\",\"data\":{\"object\":"
                      "{\"id\":\"sub_P\",\"status\":\"active\",\"current_period_end\":253402300799}}}";
    assert_int_equal(stripe_event_parse(max, strlen(max), &ev, err, sizeof err), 0);
    assert_int_equal(ev.current_period_end, STRIPE_TIMESTAMP_MAX);

    /* a status too long for us is an unknown status (denies), not a refused event Stripe would redeliver */
    const char *longst = "{\"id\":\"evt_l\",\"created\":1,\"type\":\"customer.subscription.updated\",\"data\":"
                         "{\"object\":{\"id\":\"sub_L\",\"status\":\"a_future_status_much_longer_than_31_bytes\"}}}";
    assert_int_equal(stripe_event_parse(longst, strlen(longst), &ev, err, sizeof err), 0);
    assert_string_equal(ev.status, "unknown");
    assert_int_equal(stripe_status_grants(ev.status), 0);
}

/* ---- per-subscription ordering ---- */

static stripe_event_t event(int kind, long long created, const char *sub, const char *status)
{
    stripe_event_t ev;
    memset(&ev, 0, sizeof ev);
    snprintf(ev.id, sizeof ev.id, "evt_t");
    ev.kind = kind;
    ev.created = created;
    snprintf(ev.subscription, sizeof ev.subscription, "%s", sub);
    snprintf(ev.status, sizeof ev.status, "%s", status);
    return ev;
}

/* The status stripe_sub_change stores, "" when it keeps the row's, "-" when the event is not about a
 * subscription. */
static const char *change(const stripe_event_t *ev, const char *row_status, long long row_last)
{
    const char *status = NULL, *why = NULL;
    int r = stripe_sub_change(ev, row_status, row_last, &status, &why);
    assert_non_null(why);
    if (!r) {
        assert_null(status);
        assert_true(why[0] != '\0');
        return "-";
    }
    if (!status)
        assert_true(why[0] != '\0');
    return status ? status : "";
}

static void test_sub_change_status_events(void **state)
{
    (void)state;
    stripe_event_t up = event(STRIPE_EV_SUBSCRIPTION_UPDATED, 100, "sub_1", "active");
    stripe_event_t cr = event(STRIPE_EV_SUBSCRIPTION_CREATED, 100, "sub_1", "incomplete");
    stripe_event_t del = event(STRIPE_EV_SUBSCRIPTION_DELETED, 100, "sub_1", "");

    /* no row: inserted with the event's status; deleted means canceled whatever it says */
    assert_string_equal(change(&up, NULL, 0), "active");
    assert_string_equal(change(&cr, NULL, 0), "incomplete");
    assert_string_equal(change(&del, NULL, 0), "canceled");
    /* newer: applied, forwards or back */
    assert_string_equal(change(&up, "past_due", 99), "active");
    assert_string_equal(change(&cr, "active", 99), "incomplete");
    /* older: kept */
    assert_string_equal(change(&up, "unpaid", 101), "");
    assert_string_equal(change(&del, "active", 101), "");
    /* same second: only forwards (or sideways) in rank */
    assert_string_equal(change(&cr, "active", 100), ""); /* B2: updated(active, t) then created(incomplete, t) */
    assert_string_equal(change(&up, "incomplete", 100), "active");
    assert_string_equal(change(&up, "trialing", 100), "active");
    assert_string_equal(change(&up, "past_due", 100), "");
    stripe_event_t pd = event(STRIPE_EV_SUBSCRIPTION_UPDATED, 100, "sub_1", "past_due");
    assert_string_equal(change(&pd, "active", 100), "past_due");
    assert_string_equal(change(&del, "unpaid", 100), "canceled");
    /* terminal: never changed again, not even by a newer event */
    stripe_event_t later = event(STRIPE_EV_SUBSCRIPTION_UPDATED, 500, "sub_1", "active");
    assert_string_equal(change(&later, "canceled", 100), "");
    assert_string_equal(change(&later, "incomplete_expired", 100), "");
    assert_string_equal(change(&del, "canceled", 100), "");
    /* not about a subscription we track */
    stripe_event_t nostatus = event(STRIPE_EV_SUBSCRIPTION_UPDATED, 100, "sub_1", "");
    assert_string_equal(change(&nostatus, NULL, 0), "-");
    stripe_event_t nosub = event(STRIPE_EV_SUBSCRIPTION_UPDATED, 100, "", "active");
    assert_string_equal(change(&nosub, NULL, 0), "-");
    stripe_event_t other = event(STRIPE_EV_OTHER, 100, "sub_1", "active");
    assert_string_equal(change(&other, NULL, 0), "-");
}

static void test_sub_change_checkout(void **state)
{
    (void)state;
    stripe_event_t co = event(STRIPE_EV_CHECKOUT_COMPLETED, 100, "sub_1", "");
    snprintf(co.mode, sizeof co.mode, "subscription");
    snprintf(co.payment_status, sizeof co.payment_status, "paid");
    assert_string_equal(change(&co, NULL, 0), "active");
    /* a paid checkout completes an incomplete subscription, whatever the times */
    assert_string_equal(change(&co, "incomplete", 100), "active");
    assert_string_equal(change(&co, "incomplete", 300), "active");
    /* any other status is kept: trialing stays trialing (D1), an ended one stays ended (B3) */
    assert_string_equal(change(&co, "trialing", 50), "");
    assert_string_equal(change(&co, "active", 50), "");
    assert_string_equal(change(&co, "past_due", 50), "");
    assert_string_equal(change(&co, "canceled", 200), "");
    assert_string_equal(change(&co, "incomplete_expired", 50), "");

    snprintf(co.payment_status, sizeof co.payment_status, "unpaid");
    assert_string_equal(change(&co, NULL, 0), "incomplete");
    assert_string_equal(change(&co, "incomplete", 50), "");
    assert_string_equal(change(&co, "active", 50), "");
    snprintf(co.payment_status, sizeof co.payment_status, "no_payment_required");
    assert_string_equal(change(&co, NULL, 0), "trialing");
    assert_string_equal(change(&co, "incomplete", 50), "trialing");

    /* without a subscription, or in another mode: ignored */
    stripe_event_t pay = co;
    snprintf(pay.mode, sizeof pay.mode, "payment");
    assert_string_equal(change(&pay, NULL, 0), "-");
    stripe_event_t nosub = co;
    nosub.subscription[0] = '\0';
    assert_string_equal(change(&nosub, NULL, 0), "-");
}

static void test_sub_change_invoice_failed(void **state)
{
    (void)state;
    stripe_event_t inv = event(STRIPE_EV_INVOICE_PAYMENT_FAILED, 100, "sub_1", "");
    assert_string_equal(change(&inv, NULL, 0), "past_due");
    snprintf(inv.billing_reason, sizeof inv.billing_reason, "subscription_create");
    assert_string_equal(change(&inv, NULL, 0), "incomplete");
    snprintf(inv.billing_reason, sizeof inv.billing_reason, "subscription_cycle");
    assert_string_equal(change(&inv, NULL, 0), "past_due");
    assert_string_equal(change(&inv, "active", 100), "past_due");
    assert_string_equal(change(&inv, "trialing", 50), "past_due");
    assert_string_equal(change(&inv, "active", 101), ""); /* older than the last applied */
    const char *kept[] = {"incomplete", "past_due", "unpaid", "paused", "canceled", "incomplete_expired"};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
        assert_string_equal(change(&inv, kept[i], 50), "");
    /* D2: no subscription id, only a customer: ignored */
    stripe_event_t nosub = event(STRIPE_EV_INVOICE_PAYMENT_FAILED, 100, "", "");
    snprintf(nosub.customer, sizeof nosub.customer, "cus_1");
    assert_string_equal(change(&nosub, NULL, 0), "-");
}

static void test_event_new_fields(void **state)
{
    (void)state;
    stripe_event_t ev;
    char err[160];
    const char *co = "{\"id\":\"evt_c\",\"created\":5,\"type\":\"checkout.session.completed\",\"data\":{\"object\":"
                     "{\"subscription\":\"sub_C\",\"mode\":\"subscription\",\"payment_status\":\"unpaid\"}}}";
    assert_int_equal(stripe_event_parse(co, strlen(co), &ev, err, sizeof err), 0);
    assert_string_equal(ev.payment_status, "unpaid");
    const char *inv = "{\"id\":\"evt_i\",\"created\":5,\"type\":\"invoice.payment_failed\",\"data\":{\"object\":"
                      "{\"subscription\":\"sub_I\",\"billing_reason\":\"subscription_create\"}}}";
    assert_int_equal(stripe_event_parse(inv, strlen(inv), &ev, err, sizeof err), 0);
    assert_string_equal(ev.billing_reason, "subscription_create");
    assert_string_equal(ev.subscription, "sub_I");
    const char *bad = "{\"id\":\"evt_i\",\"created\":5,\"type\":\"checkout.session.completed\",\"data\":{\"object\":"
                      "{\"payment_status\":\"a very long payment status that does not fit\"}}}";
    assert_int_equal(stripe_event_parse(bad, strlen(bad), &ev, err, sizeof err), -1);
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

static void test_failure_sentences(void **state)
{
    (void)state;
    int classes[] = {STRIPE_FAIL_REFUSED, STRIPE_FAIL_UNREACHABLE, STRIPE_FAIL_TIMEOUT, STRIPE_FAIL_UNEXPECTED, 99};
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
    assert_int_equal(r.failure, STRIPE_FAIL_REFUSED);
    assert_int_equal(r.http_status, 500);
    reap(pid);
    stripe_cleanup();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sig_compute_vector),
        cmocka_unit_test(test_sig_vector_accepted),
        cmocka_unit_test(test_sig_tolerance),
        cmocka_unit_test(test_sig_fresh_roundtrip),
        cmocka_unit_test(test_sig_multiple_v1),
        cmocka_unit_test(test_sig_other_schemes_ignored),
        cmocka_unit_test(test_sig_tampered),
        cmocka_unit_test(test_sig_missing_and_malformed),
        cmocka_unit_test(test_form_escape_matches_curl),
        cmocka_unit_test(test_form_add),
        cmocka_unit_test(test_checkout_form),
        cmocka_unit_test(test_event_checkout),
        cmocka_unit_test(test_event_subscription_layouts),
        cmocka_unit_test(test_event_invoice_layouts),
        cmocka_unit_test(test_event_other_and_invalid),
        cmocka_unit_test(test_status_policy),
        cmocka_unit_test(test_granting_sql_agrees),
        cmocka_unit_test(test_status_rank),
        cmocka_unit_test(test_checkout_status),
        cmocka_unit_test(test_period_end_bound),
        cmocka_unit_test(test_sub_change_status_events),
        cmocka_unit_test(test_sub_change_checkout),
        cmocka_unit_test(test_sub_change_invoice_failed),
        cmocka_unit_test(test_event_new_fields),
        cmocka_unit_test(test_parse_checkout_session),
        cmocka_unit_test(test_error_message),
        cmocka_unit_test(test_failure_sentences),
        cmocka_unit_test(test_client_unconfigured),
        cmocka_unit_test(test_client_classes),
        cmocka_unit_test(test_client_overall_deadline),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
