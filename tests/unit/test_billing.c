/* Unit tests of lib/billing.c's decisions that need no database: the tier derived from a user's subscription
 * statuses, what an event does to a subscription row and its user (billing_plan, on top of stripe_sub_change),
 * the checkout claim's outcome and pause, the session id check, the status body, and the Stripe settings check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "billing.h"
#include "config.h"

/* ---- tier ---- */

static void test_tier(void **state)
{
    (void)state;
    const char *none[] = {NULL};
    assert_string_equal(billing_tier(none, 0), "basic"); /* never subscribed */

    const char *granting[] = {"active", "trialing", "past_due"};
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(billing_tier(&granting[i], 1), "pro");

    const char *denying[] = {"incomplete", "incomplete_expired", "unpaid", "canceled", "paused", "", "someday"};
    assert_string_equal(billing_tier(denying, 7), "basic");

    /* one granting subscription among ended ones is enough, wherever it is (B1: two checkout tabs) */
    const char *mixed[] = {"canceled", "unpaid", "active"};
    assert_string_equal(billing_tier(mixed, 3), "pro");
    const char *first[] = {"past_due", "canceled"};
    assert_string_equal(billing_tier(first, 2), "pro");
    /* ... and only the first n count */
    assert_string_equal(billing_tier(mixed, 2), "basic");
}

/* ---- what an event does to a row ---- */

static stripe_event_t event(int kind, long long created, long long user_id, const char *customer, const char *status)
{
    stripe_event_t ev;
    memset(&ev, 0, sizeof ev);
    snprintf(ev.id, sizeof ev.id, "evt_t");
    snprintf(ev.subscription, sizeof ev.subscription, "sub_1");
    ev.kind = kind;
    ev.created = created;
    ev.user_id = user_id;
    snprintf(ev.customer, sizeof ev.customer, "%s", customer);
    snprintf(ev.status, sizeof ev.status, "%s", status);
    snprintf(ev.mode, sizeof ev.mode, "subscription");
    return ev;
}

static billing_sub_row_t row(long long user_id, int has_customer, const char *status, long long last)
{
    billing_sub_row_t r;
    memset(&r, 0, sizeof r);
    r.user_id = user_id;
    r.has_customer = has_customer;
    snprintf(r.status, sizeof r.status, "%s", status);
    r.last = last;
    return r;
}

static void test_plan_new_row(void **state)
{
    (void)state;
    billing_plan_t p;
    stripe_event_t ev = event(STRIPE_EV_SUBSCRIPTION_UPDATED, 100, 7, "cus_1", "active");

    /* just inserted, its user exists: link it and recompute their tier */
    assert_int_equal(billing_plan(&ev, NULL, 7, &p), 1);
    assert_null(p.status); /* the insert stored it already */
    assert_true(p.link);
    assert_int_equal(p.user_id, 7);
    assert_false(p.link_customer); /* stored by the insert too */
    assert_true(p.write);
    assert_false(p.conflict);

    /* just inserted, nobody to link: nothing more (the row waits for an event that says whose it is) */
    assert_int_equal(billing_plan(&ev, NULL, 0, &p), 0);
    assert_int_equal(p.user_id, 0);
    assert_false(p.write);
}

static void test_plan_existing_row(void **state)
{
    (void)state;
    billing_plan_t p;
    stripe_event_t up = event(STRIPE_EV_SUBSCRIPTION_UPDATED, 200, 7, "cus_1", "unpaid");
    billing_sub_row_t r = row(7, 1, "active", 100);

    /* a newer status for a linked row: store it, recompute the user's tier */
    assert_int_equal(billing_plan(&up, &r, 0, &p), 1);
    assert_string_equal(p.status, "unpaid");
    assert_int_equal(p.user_id, 7);
    assert_false(p.link);
    assert_true(p.write);

    /* an older event: the status stays, nothing to link: nothing at all (the tier is not touched) */
    r.last = 300;
    assert_int_equal(billing_plan(&up, &r, 0, &p), 0);
    assert_null(p.status);
    assert_true(p.why[0] != '\0');
    assert_false(p.write);

    /* ... but a row without a customer takes the event's: an update, and the tier is recomputed */
    r.has_customer = 0;
    assert_int_equal(billing_plan(&up, &r, 0, &p), 1);
    assert_null(p.status);
    assert_true(p.link_customer);
    assert_int_equal(p.user_id, 7);
    /* ... unless the event names no customer either */
    stripe_event_t nocus = event(STRIPE_EV_SUBSCRIPTION_UPDATED, 200, 7, "", "unpaid");
    assert_int_equal(billing_plan(&nocus, &r, 0, &p), 0);
}

static void test_plan_linking(void **state)
{
    (void)state;
    billing_plan_t p;
    stripe_event_t up = event(STRIPE_EV_SUBSCRIPTION_UPDATED, 200, 9, "cus_1", "active");

    /* a row with no user yet: the candidate is linked even when the status stays (B3: an older checkout
     * delivered after deleted links the user, the row stays canceled) */
    billing_sub_row_t r = row(0, 1, "canceled", 300);
    stripe_event_t co = event(STRIPE_EV_CHECKOUT_COMPLETED, 250, 9, "cus_1", "");
    snprintf(co.payment_status, sizeof co.payment_status, "paid");
    assert_int_equal(billing_plan(&co, &r, 9, &p), 1);
    assert_null(p.status);
    assert_true(p.link);
    assert_int_equal(p.user_id, 9);

    /* no user and no candidate: the status is stored, no tier to recompute */
    r = row(0, 1, "incomplete", 100);
    assert_int_equal(billing_plan(&up, &r, 0, &p), 1);
    assert_string_equal(p.status, "active");
    assert_int_equal(p.user_id, 0);
    assert_false(p.link);

    /* a linked user is never replaced: the event's other user is a conflict, the candidate is unused */
    r = row(7, 1, "active", 100);
    assert_int_equal(billing_plan(&up, &r, 9, &p), 1); /* newer: stored again (last_event_created moves) */
    assert_string_equal(p.status, "active");
    assert_true(p.conflict);
    assert_int_equal(p.user_id, 7);
    assert_false(p.link);
    stripe_event_t del = event(STRIPE_EV_SUBSCRIPTION_DELETED, 200, 9, "cus_1", "canceled");
    assert_int_equal(billing_plan(&del, &r, 9, &p), 1);
    assert_string_equal(p.status, "canceled");
    assert_int_equal(p.user_id, 7); /* the row's user loses it, not the event's */
    assert_true(p.conflict);
    /* the same user, or none named: no conflict */
    stripe_event_t same = event(STRIPE_EV_SUBSCRIPTION_UPDATED, 200, 7, "cus_1", "active");
    billing_plan(&same, &r, 0, &p);
    assert_false(p.conflict);
    stripe_event_t anon = event(STRIPE_EV_SUBSCRIPTION_UPDATED, 200, 0, "cus_1", "active");
    billing_plan(&anon, &r, 0, &p);
    assert_false(p.conflict);
}

/* The async checkout events reach the user like checkout.session.completed (item: API.md subscriptions). */
static void test_plan_async_checkout(void **state)
{
    (void)state;
    billing_plan_t p;
    stripe_event_t ok = event(STRIPE_EV_CHECKOUT_ASYNC_SUCCEEDED, 200, 7, "cus_1", "");
    snprintf(ok.payment_status, sizeof ok.payment_status, "paid");
    stripe_event_t ko = event(STRIPE_EV_CHECKOUT_ASYNC_FAILED, 200, 7, "cus_1", "");
    snprintf(ko.payment_status, sizeof ko.payment_status, "unpaid");

    /* an unpaid checkout left the row incomplete: succeeded completes it (the user becomes pro) */
    billing_sub_row_t r = row(7, 1, "incomplete", 100);
    assert_int_equal(billing_plan(&ok, &r, 0, &p), 1);
    assert_string_equal(p.status, "active");
    assert_int_equal(p.user_id, 7);
    const char *after[] = {p.status};
    assert_string_equal(billing_tier(after, 1), "pro");
    /* failed leaves it incomplete: nothing written, the user stays basic */
    assert_int_equal(billing_plan(&ko, &r, 0, &p), 0);
    assert_null(p.status);
    /* an unlinked incomplete row: failed still links the user it names */
    r = row(0, 1, "incomplete", 100);
    assert_int_equal(billing_plan(&ko, &r, 7, &p), 1);
    assert_true(p.link);
    assert_null(p.status);
}

/* ---- checkout helpers ---- */

/* What checkout_claim() answers, read back. */
static void test_claim_outcome(void **state)
{
    (void)state;
    assert_int_equal(billing_claim_outcome("open"), BILLING_CLAIM_OPEN);
    assert_int_equal(billing_claim_outcome("claimed"), BILLING_CLAIM_CLAIMED);
    assert_int_equal(billing_claim_outcome("busy"), BILLING_CLAIM_BUSY);
    assert_int_equal(billing_claim_outcome("awaiting"), BILLING_CLAIM_AWAITING);
    assert_int_equal(billing_claim_outcome(""), BILLING_CLAIM_UNKNOWN);
    assert_int_equal(billing_claim_outcome("Open"), BILLING_CLAIM_UNKNOWN);
    assert_int_equal(billing_claim_outcome("open "), BILLING_CLAIM_UNKNOWN);
    assert_int_equal(billing_claim_outcome(NULL), BILLING_CLAIM_UNKNOWN);
}

/* The pause between two asks while another request holds the claim: short at first (the usual Stripe call is
 * a few hundred ms), capped, never past the wait. */
static void test_checkout_pause(void **state)
{
    (void)state;
    assert_int_equal(billing_checkout_pause_ms(0, 10000), 20);
    assert_int_equal(billing_checkout_pause_ms(1, 10000), 40);
    assert_int_equal(billing_checkout_pause_ms(2, 10000), 80);
    assert_int_equal(billing_checkout_pause_ms(3, 10000), 160);
    assert_int_equal(billing_checkout_pause_ms(4, 10000), 160);
    assert_int_equal(billing_checkout_pause_ms(1000000, 10000), 160); /* no overflow however long it waits */
    assert_int_equal(billing_checkout_pause_ms(3, 55.9), 55);         /* what is left of the wait */
    assert_int_equal(billing_checkout_pause_ms(0, 0.5), 0);           /* nothing left: stop waiting */
    assert_int_equal(billing_checkout_pause_ms(0, -3), 0);
    /* the claim's lease outlives the Stripe call, and a waiter waits at least as long as the call */
    assert_true(BILLING_CHECKOUT_LEASE_S * 1000 > STRIPE_CHECKOUT_BUDGET_MS);
    assert_true(BILLING_CHECKOUT_WAIT_MS >= STRIPE_CHECKOUT_BUDGET_MS);
    /* Stripe takes expires_at 30 min to 24 h ahead; a session is handed out only while some of it is left */
    assert_true(BILLING_CHECKOUT_TTL_S >= 1800 && BILLING_CHECKOUT_TTL_S <= 86400);
    assert_true(BILLING_CHECKOUT_MIN_LEFT_S > 0 && BILLING_CHECKOUT_MIN_LEFT_S < BILLING_CHECKOUT_TTL_S);
}

static void test_session_id(void **state)
{
    (void)state;
    char id[300];
    assert_true(billing_session_id_valid("cs_test_a1B2c3"));
    assert_false(billing_session_id_valid(NULL));
    assert_false(billing_session_id_valid("cs_"));
    assert_false(billing_session_id_valid("pi_123"));
    assert_false(billing_session_id_valid("cs_<script>"));
    assert_false(billing_session_id_valid("cs_a-b"));
    memset(id, 'a', sizeof id);
    memcpy(id, "cs_", 3);
    id[255] = '\0';
    assert_true(billing_session_id_valid(id));
    id[255] = 'a';
    id[256] = '\0';
    assert_false(billing_session_id_valid(id));
}

/* ---- status body ---- */

static void test_status_json(void **state)
{
    (void)state;
    billing_status_t st;
    memset(&st, 0, sizeof st);
    snprintf(st.status, sizeof st.status, "none");
    json_object *o = billing_status_json(&st, 5);
    assert_string_equal(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                        "{\"tier\":\"basic\",\"status\":\"none\",\"current_period_end\":null,\"daily_limit\":5}");
    json_object_put(o);

    st.pro = 1;
    snprintf(st.status, sizeof st.status, "past_due");
    snprintf(st.period_end, sizeof st.period_end, "2030-01-01T00:00:00Z");
    o = billing_status_json(&st, 5);
    assert_string_equal(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                        "{\"tier\":\"pro\",\"status\":\"past_due\",\"current_period_end\":\"2030-01-01T00:00:00Z\","
                        "\"daily_limit\":null}");
    json_object_put(o);
}

/* ---- settings ---- */

static void test_stripe_missing(void **state)
{
    (void)state;
    char out[128];
    config_t saved = g_config;

    g_config.stripe_secret_key = "sk_test_x";
    g_config.stripe_price_id = "price_x";
    g_config.stripe_webhook_secret = "whsec_x";
    assert_int_equal(billing_stripe_missing(out, sizeof out), 0);
    assert_string_equal(out, "");

    g_config.stripe_price_id = ""; /* empty counts as unset */
    assert_int_equal(billing_stripe_missing(out, sizeof out), BILLING_NOT_CONFIGURED);
    assert_string_equal(out, "STRIPE_PRICE_ID");

    g_config.stripe_secret_key = NULL;
    g_config.stripe_webhook_secret = NULL;
    assert_int_equal(billing_stripe_missing(out, sizeof out), BILLING_NOT_CONFIGURED);
    assert_string_equal(out, "STRIPE_SECRET_KEY, STRIPE_PRICE_ID, STRIPE_WEBHOOK_SECRET");

    /* a short buffer truncates the list, never the verdict */
    assert_int_equal(billing_stripe_missing(out, 10), BILLING_NOT_CONFIGURED);
    assert_int_equal(strlen(out), 9);
    g_config = saved;
}

int main(void)
{
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tier),
        cmocka_unit_test(test_plan_new_row),
        cmocka_unit_test(test_plan_existing_row),
        cmocka_unit_test(test_plan_linking),
        cmocka_unit_test(test_plan_async_checkout),
        cmocka_unit_test(test_claim_outcome),
        cmocka_unit_test(test_checkout_pause),
        cmocka_unit_test(test_session_id),
        cmocka_unit_test(test_status_json),
        cmocka_unit_test(test_stripe_missing),
    };
    /* clang-format on */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
