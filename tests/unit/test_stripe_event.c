/* Unit tests of lib/stripe_event.c: event parsing (both API layouts), the status policy and ranks, and the
 * per-subscription ordering rules (stripe_sub_change). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stripe_event.h"

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
    assert_string_equal(ev.session, "cs_test_a");
    assert_true(stripe_event_closes_checkout(&ev));

    /* no client_reference_id (or a useless one): metadata.user_id; expanded customer object */
    j = "{\"id\":\"evt_2\",\"created\":5,\"type\":\"checkout.session.completed\",\"data\":{\"object\":"
        "{\"client_reference_id\":\"abc\",\"customer\":{\"id\":\"cus_B\",\"object\":\"customer\"},"
        "\"subscription\":null,\"metadata\":{\"user_id\":\"23\"}}}}";
    assert_int_equal(parse(j, &ev), 0);
    assert_int_equal(ev.user_id, 23);
    assert_string_equal(ev.customer, "cus_B");
    assert_string_equal(ev.subscription, "");
    assert_string_equal(ev.session, ""); /* no id: no session to close */
    assert_false(stripe_event_closes_checkout(&ev));

    j = "{\"id\":\"evt_3\",\"created\":5,\"type\":\"checkout.session.completed\",\"data\":{\"object\":"
        "{\"client_reference_id\":\"-4\",\"metadata\":{}}}}";
    assert_int_equal(parse(j, &ev), 0);
    assert_int_equal(ev.user_id, 0);

    /* a string with a NUL in it is no user id, not the digits before the NUL (fuzz/stripe_event.c checks it) */
    j = "{\"id\":\"evt_4\",\"created\":5,\"type\":\"checkout.session.completed\",\"data\":{\"object\":"
        "{\"client_reference_id\":\"42\\u0000x\",\"metadata\":{\"user_id\":\"7\\u0000\"}}}}";
    assert_int_equal(parse(j, &ev), 0);
    assert_int_equal(ev.user_id, 0);
}

/* checkout.session.async_payment_succeeded / _failed carry the Checkout Session like completed does. */
static void test_event_checkout_async(void **state)
{
    (void)state;
    stripe_event_t ev;
    const char *j = "{\"id\":\"evt_as\",\"object\":\"event\",\"created\":1790000100,"
                    "\"type\":\"checkout.session.async_payment_succeeded\",\"data\":{\"object\":"
                    "{\"id\":\"cs_test_a\",\"object\":\"checkout.session\",\"client_reference_id\":\"17\","
                    "\"customer\":\"cus_A\",\"subscription\":\"sub_A\",\"mode\":\"subscription\","
                    "\"status\":\"complete\",\"payment_status\":\"paid\",\"metadata\":{\"user_id\":\"17\"}}}}";
    assert_int_equal(parse(j, &ev), 0);
    assert_int_equal(ev.kind, STRIPE_EV_CHECKOUT_ASYNC_SUCCEEDED);
    assert_int_equal(ev.user_id, 17);
    assert_string_equal(ev.customer, "cus_A");
    assert_string_equal(ev.subscription, "sub_A");
    assert_string_equal(ev.mode, "subscription");
    assert_string_equal(ev.payment_status, "paid");

    j = "{\"id\":\"evt_af\",\"created\":5,\"type\":\"checkout.session.async_payment_failed\",\"data\":{\"object\":"
        "{\"id\":\"cs_test_b\",\"object\":\"checkout.session\",\"customer\":\"cus_B\",\"subscription\":\"sub_B\","
        "\"mode\":\"subscription\",\"status\":\"complete\",\"payment_status\":\"unpaid\","
        "\"metadata\":{\"user_id\":\"23\"}}}}";
    assert_int_equal(parse(j, &ev), 0);
    assert_int_equal(ev.kind, STRIPE_EV_CHECKOUT_ASYNC_FAILED);
    assert_int_equal(ev.user_id, 23); /* metadata.user_id when there is no client_reference_id */
    assert_string_equal(ev.subscription, "sub_B");
    assert_string_equal(ev.payment_status, "unpaid");

    assert_string_equal(ev.session, "cs_test_b");
    assert_true(stripe_event_closes_checkout(&ev));

    /* a known type: its data.object is required */
    j = "{\"id\":\"evt_ax\",\"created\":5,\"type\":\"checkout.session.async_payment_failed\",\"data\":{}}";
    assert_int_equal(parse(j, &ev), -1);
}

/* checkout.session.expired: the abandoned session is closed, and nothing else happens. */
static void test_event_checkout_expired(void **state)
{
    (void)state;
    stripe_event_t ev;
    const char *status = NULL, *why = NULL;
    const char *j = "{\"id\":\"evt_ex\",\"object\":\"event\",\"created\":1790003600,"
                    "\"type\":\"checkout.session.expired\",\"data\":{\"object\":"
                    "{\"id\":\"cs_test_x\",\"object\":\"checkout.session\",\"client_reference_id\":\"17\","
                    "\"customer\":null,\"subscription\":null,\"mode\":\"subscription\",\"status\":\"expired\","
                    "\"payment_status\":\"unpaid\",\"metadata\":{\"user_id\":\"17\"}}}}";
    assert_int_equal(parse(j, &ev), 0);
    assert_int_equal(ev.kind, STRIPE_EV_CHECKOUT_EXPIRED);
    assert_string_equal(ev.session, "cs_test_x");
    assert_int_equal(ev.user_id, 17);
    assert_string_equal(ev.subscription, "");
    assert_true(stripe_event_closes_checkout(&ev));
    assert_int_equal(stripe_sub_change(&ev, NULL, 0, &status, &why), 0); /* no subscription to track */
    assert_null(status);
    assert_string_equal(why, "an expired checkout session starts no subscription");
    /* ... even if it named one */
    snprintf(ev.subscription, sizeof ev.subscription, "sub_X");
    assert_int_equal(stripe_sub_change(&ev, "active", 0, &status, &why), 0);
    assert_null(status);

    /* its data.object is required, like every known type's */
    j = "{\"id\":\"evt_ey\",\"created\":5,\"type\":\"checkout.session.expired\",\"data\":{}}";
    assert_int_equal(parse(j, &ev), -1);
    /* a session id too long for Stripe is a refused event */
    char big[600];
    snprintf(big, sizeof big,
             "{\"id\":\"evt_ez\",\"created\":5,\"type\":\"checkout.session.expired\",\"data\":{\"object\":"
             "{\"id\":\"cs_%0300d\"}}}",
             0);
    assert_int_equal(parse(big, &ev), -1);

    /* events about subscriptions and invoices close no session */
    stripe_event_t other;
    memset(&other, 0, sizeof other);
    snprintf(other.session, sizeof other.session, "cs_test_y");
    for (int kind = STRIPE_EV_OTHER; kind <= STRIPE_EV_CHECKOUT_EXPIRED; kind++) {
        other.kind = kind;
        int closes = kind == STRIPE_EV_CHECKOUT_COMPLETED || kind == STRIPE_EV_CHECKOUT_ASYNC_SUCCEEDED ||
                     kind == STRIPE_EV_CHECKOUT_ASYNC_FAILED || kind == STRIPE_EV_CHECKOUT_EXPIRED;
        assert_int_equal(stripe_event_closes_checkout(&other), closes);
    }
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
    /* a lone surrogate is refused, not replaced by U+FFFD (which would make evt_x\ud800 and evt_x\udc00 one id) */
    assert_int_equal(parse("{\"id\":\"evt_x\\ud800\",\"created\":3,\"type\":\"x\"}", &ev), -1);
    assert_int_equal(parse("{\"id\":\"evt_x\",\"created\":3,\"type\":\"x\",\"data\":{\"n\":\"\\udc00\"}}", &ev), -1);
    assert_int_equal(parse("{\"id\":\"evt_x\\ud83d\\ude00\",\"created\":3,\"type\":\"x\"}", &ev), 0);
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

static void test_sub_change_checkout_async(void **state)
{
    (void)state;
    stripe_event_t ok = event(STRIPE_EV_CHECKOUT_ASYNC_SUCCEEDED, 100, "sub_1", "");
    snprintf(ok.mode, sizeof ok.mode, "subscription");
    snprintf(ok.payment_status, sizeof ok.payment_status, "paid");
    /* like a paid checkout: a new subscription is active, an incomplete one is completed */
    assert_string_equal(change(&ok, NULL, 0), "active");
    assert_string_equal(change(&ok, "incomplete", 50), "active");
    assert_string_equal(change(&ok, "incomplete", 300), "active");
    /* ... whatever payment_status the session carries: the event says the payment went through */
    snprintf(ok.payment_status, sizeof ok.payment_status, "unpaid");
    assert_string_equal(change(&ok, "incomplete", 50), "active");
    assert_string_equal(change(&ok, NULL, 0), "active");
    /* any other row is kept: an ended subscription is not revived */
    assert_string_equal(change(&ok, "canceled", 50), "");
    assert_string_equal(change(&ok, "incomplete_expired", 50), "");
    assert_string_equal(change(&ok, "past_due", 50), "");

    stripe_event_t ko = event(STRIPE_EV_CHECKOUT_ASYNC_FAILED, 100, "sub_1", "");
    snprintf(ko.mode, sizeof ko.mode, "subscription");
    snprintf(ko.payment_status, sizeof ko.payment_status, "unpaid");
    /* like a failed first invoice: a new subscription is incomplete */
    assert_string_equal(change(&ko, NULL, 0), "incomplete");
    /* an incomplete one stays incomplete (the user stays basic) */
    assert_string_equal(change(&ko, "incomplete", 50), "");
    /* an active or trialing one becomes past_due, unless the event is older */
    assert_string_equal(change(&ko, "active", 50), "past_due");
    assert_string_equal(change(&ko, "trialing", 100), "past_due");
    assert_string_equal(change(&ko, "active", 101), "");
    assert_string_equal(change(&ko, "canceled", 50), "");
    assert_string_equal(change(&ko, "unpaid", 50), "");

    /* another mode, or no subscription: not tracked */
    stripe_event_t pay = ko;
    snprintf(pay.mode, sizeof pay.mode, "payment");
    assert_string_equal(change(&pay, NULL, 0), "-");
    pay = ok;
    snprintf(pay.mode, sizeof pay.mode, "payment");
    assert_string_equal(change(&pay, NULL, 0), "-");
    stripe_event_t nosub = ko;
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

int main(void)
{
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_checkout),
        cmocka_unit_test(test_event_checkout_async),
        cmocka_unit_test(test_event_checkout_expired),
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
        cmocka_unit_test(test_sub_change_checkout_async),
        cmocka_unit_test(test_sub_change_invoice_failed),
        cmocka_unit_test(test_event_new_fields),
    };
    /* clang-format on */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
