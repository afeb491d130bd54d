/* Fuzz target: Stripe webhook events (lib/stripe_event.c: stripe_event_parse), the payload a signed delivery
 * hands to billing, and the per-subscription decision (stripe_sub_change) on what was parsed, against every
 * kind of row on record. Checked: a parsed event has an id, a type and a kind that matches the type; a user id
 * is one of the places a user id may come from, read whole (a JSON integer, or a string of digits only); only a
 * checkout event names a session, and only such an event closes one, naming it; every decision names a reason,
 * and a status to store is never empty (an expired checkout never has one). */
#include "fuzz.h"

#include <limits.h>

#include "stripe_event.h"

static const char *const kinds[] = {
    "", /* STRIPE_EV_OTHER */
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.payment_failed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
};

/* Is v (a member of a JSON object) user id id: a JSON integer equal to it, or a string of nothing but digits whose
 * value it is? */
static int is_user_id(json_object *v, long long id)
{
    if (json_object_is_type(v, json_type_int))
        return json_object_get_int64(v) == id;
    if (!json_object_is_type(v, json_type_string))
        return 0;
    const char *s = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    long long x = 0;
    if (n == 0 || strspn(s, "0123456789") != n)
        return 0;
    while (n > 1 && *s == '0') /* leading zeros say nothing */
        s++, n--;
    if (n > 19)
        return 0;
    for (size_t i = 0; i < n; i++)
        x = x * 10 + (s[i] - '0');
    return x == id;
}

/* Somewhere user_id may come from (stripe_event.h) holds it. */
static int user_id_sourced(const char *body, size_t len, long long id)
{
    static const char *const paths[][5] = {{"client_reference_id"},
                                           {"metadata", "user_id"},
                                           {"parent", "subscription_details", "metadata", "user_id"},
                                           {"subscription_details", "metadata", "user_id"}};
    json_tokener *tok = json_tokener_new();
    json_object *root = json_tokener_parse_ex(tok, body, (int)len);
    int found = 0;
    json_tokener_free(tok);
    json_object *obj = stripe_json_get(stripe_json_get(root, "data"), "object");
    for (size_t i = 0; i < sizeof paths / sizeof paths[0] && !found; i++) {
        json_object *v = obj;
        for (size_t k = 0; k < 5 && paths[i][k]; k++)
            v = stripe_json_get(v, paths[i][k]);
        found = v && is_user_id(v, id);
    }
    json_object_put(root);
    return found;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const rows[] = {NULL,     "incomplete", "trialing",           "active", "past_due", "unpaid",
                                       "paused", "canceled",   "incomplete_expired", "x"};
    stripe_event_t ev;
    char err[160];
    err[0] = '\0';
    int rc = stripe_event_parse((const char *)data, size, &ev, err, sizeof err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        FUZZ_CHECK(err[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(ev.id[0] && strlen(ev.id) < sizeof ev.id);
    FUZZ_CHECK(ev.type[0] && strlen(ev.type) < sizeof ev.type);
    FUZZ_CHECK(ev.kind >= 0 && ev.kind < (int)(sizeof kinds / sizeof kinds[0]));
    FUZZ_CHECK(ev.kind == 0 ? 1 : strcmp(ev.type, kinds[ev.kind]) == 0);
    FUZZ_CHECK(ev.created >= 0 && ev.user_id >= 0);
    FUZZ_CHECK(ev.user_id == 0 || user_id_sourced((const char *)data, size, ev.user_id));
    FUZZ_CHECK(ev.current_period_end == stripe_period_end(ev.current_period_end));
    FUZZ_CHECK(strlen(ev.customer) < sizeof ev.customer && strlen(ev.subscription) < sizeof ev.subscription);
    FUZZ_CHECK(strlen(ev.status) < sizeof ev.status && strlen(ev.mode) < sizeof ev.mode);
    FUZZ_CHECK(strlen(ev.payment_status) < sizeof ev.payment_status);
    FUZZ_CHECK(strlen(ev.billing_reason) < sizeof ev.billing_reason);
    int checkout = ev.kind == STRIPE_EV_CHECKOUT_COMPLETED || ev.kind == STRIPE_EV_CHECKOUT_ASYNC_SUCCEEDED ||
                   ev.kind == STRIPE_EV_CHECKOUT_ASYNC_FAILED || ev.kind == STRIPE_EV_CHECKOUT_EXPIRED;
    FUZZ_CHECK(strlen(ev.session) < sizeof ev.session && (checkout || ev.session[0] == '\0'));
    FUZZ_CHECK(stripe_event_closes_checkout(&ev) == (checkout && ev.session[0] != '\0'));
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        for (long long d = -1; d <= 1; d++) {
            const char *status = NULL, *why = NULL;
            long long last = d > 0 && ev.created == LLONG_MAX ? ev.created : ev.created + d;
            int tracked = stripe_sub_change(&ev, rows[i], last, &status, &why);
            FUZZ_CHECK(tracked == 0 || tracked == 1);
            FUZZ_CHECK(why != NULL);
            FUZZ_CHECK(!status || status[0] != '\0');
            FUZZ_CHECK(status || why[0] != '\0');
            FUZZ_CHECK(tracked == 1 || status == NULL);
            FUZZ_CHECK(ev.kind != STRIPE_EV_CHECKOUT_EXPIRED || tracked == 0);
            if (status)
                FUZZ_CHECK(stripe_status_rank(status) >= 0 && stripe_status_rank(status) <= 4);
        }
    return 0;
}
