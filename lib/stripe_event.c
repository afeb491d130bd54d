#include "stripe_event.h"

#include <stdio.h>
#include <string.h>

#include "jsonv.h"
#include "util.h"

/* ---------------------------------------------------------------------------------------------------- */
/* JSON helpers */

json_object *stripe_json_get(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!o || !json_object_is_type(o, json_type_object))
        return NULL;
    if (!json_object_object_get_ex(o, key, &v))
        return NULL;
    if (json_object_is_type(v, json_type_null))
        return NULL;
    return v;
}

/* A string field, or an expanded object's "id". NULL if absent or of another type. */
static const char *jstr_or_id(json_object *o, const char *key, size_t *len)
{
    json_object *v = stripe_json_get(o, key);
    if (v && json_object_is_type(v, json_type_object))
        v = stripe_json_get(v, "id");
    if (!v || !json_object_is_type(v, json_type_string))
        return NULL;
    *len = (size_t)json_object_get_string_len(v);
    return json_object_get_string(v);
}

int stripe_json_copy(json_object *o, const char *key, char *dst, size_t dstsize)
{
    size_t len = 0;
    const char *s = jstr_or_id(o, key, &len);
    dst[0] = '\0';
    if (!s)
        return 0;
    if (len >= dstsize || memchr(s, '\0', len))
        return -1;
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 0;
}

/* A status-like word (Stripe's enums are short): like copy_field, but a value too long for dst reads as
 * "unknown" (an unknown status denies access) rather than refusing the event, which Stripe would then
 * redeliver for days. */
static int copy_word(json_object *o, const char *key, char *dst, size_t dstsize)
{
    size_t len = 0;
    const char *s = jstr_or_id(o, key, &len);
    if (s && len >= dstsize && !memchr(s, '\0', len)) {
        snprintf(dst, dstsize, "unknown");
        return 0;
    }
    return stripe_json_copy(o, key, dst, dstsize);
}

/* A positive user id from a string (or integer) value; 0 if absent or not one. The whole string counts: "42\u0000x"
 * is not 42. */
static long long user_id_of(json_object *v)
{
    long long id = 0;
    if (!v)
        return 0;
    if (json_object_is_type(v, json_type_int)) {
        id = json_object_get_int64(v);
        return id > 0 ? id : 0;
    }
    if (!json_object_is_type(v, json_type_string))
        return 0;
    const char *s = json_object_get_string(v);
    if (strlen(s) != (size_t)json_object_get_string_len(v) || parse_ll(s, 1, INT64_MAX, &id) < 0)
        return 0;
    return id;
}

static long long int_field(json_object *o, const char *key)
{
    json_object *v = stripe_json_get(o, key);
    if (!v || !json_object_is_type(v, json_type_int))
        return 0;
    long long x = json_object_get_int64(v);
    return x > 0 ? x : 0;
}

/* ---------------------------------------------------------------------------------------------------- */
/* events */

static const struct {
    const char *type;
    int kind;
} event_kinds[] = {
    {"checkout.session.completed", STRIPE_EV_CHECKOUT_COMPLETED},
    {"customer.subscription.created", STRIPE_EV_SUBSCRIPTION_CREATED},
    {"customer.subscription.updated", STRIPE_EV_SUBSCRIPTION_UPDATED},
    {"customer.subscription.deleted", STRIPE_EV_SUBSCRIPTION_DELETED},
    {"invoice.payment_failed", STRIPE_EV_INVOICE_PAYMENT_FAILED},
    {"checkout.session.async_payment_succeeded", STRIPE_EV_CHECKOUT_ASYNC_SUCCEEDED},
    {"checkout.session.async_payment_failed", STRIPE_EV_CHECKOUT_ASYNC_FAILED},
    {"checkout.session.expired", STRIPE_EV_CHECKOUT_EXPIRED},
};

int stripe_event_parse(const char *body, size_t len, stripe_event_t *ev, char *err, size_t errlen)
{
    json_tokener *tok = NULL;
    json_object *root = NULL, *obj = NULL, *v = NULL;
    int rc = -1;

    memset(ev, 0, sizeof *ev);
    if (!body || len == 0) {
        snprintf(err, errlen, "The event body is empty.");
        goto out;
    }
    const char *not_text = jsonv_not_text(body, len); /* U+FFFD in place of a lone surrogate: two ids as one */
    if (not_text) {
        snprintf(err, errlen, "The event %s.", not_text);
        goto out;
    }
    tok = json_tokener_new();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    root = json_tokener_parse_ex(tok, body, (int)len);
    if (!root || json_tokener_get_error(tok) != json_tokener_success || json_tokener_get_parse_end(tok) != len ||
        !json_object_is_type(root, json_type_object)) {
        snprintf(err, errlen, "The event is not a JSON object.");
        goto out;
    }
    if (stripe_json_copy(root, "id", ev->id, sizeof ev->id) < 0 || !ev->id[0]) {
        snprintf(err, errlen, "The event has no valid id.");
        goto out;
    }
    if (stripe_json_copy(root, "type", ev->type, sizeof ev->type) < 0 || !ev->type[0]) {
        snprintf(err, errlen, "The event has no valid type.");
        goto out;
    }
    v = stripe_json_get(root, "created");
    if (!v || !json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0) {
        snprintf(err, errlen, "The event has no valid created time.");
        goto out;
    }
    ev->created = json_object_get_int64(v);

    ev->kind = STRIPE_EV_OTHER;
    for (size_t i = 0; i < sizeof event_kinds / sizeof event_kinds[0]; i++)
        if (strcmp(ev->type, event_kinds[i].type) == 0)
            ev->kind = event_kinds[i].kind;
    if (ev->kind == STRIPE_EV_OTHER) {
        rc = 0;
        goto out;
    }

    obj = stripe_json_get(stripe_json_get(root, "data"), "object");
    if (!obj || !json_object_is_type(obj, json_type_object)) {
        snprintf(err, errlen, "The event has no data.object.");
        goto out;
    }
    if (stripe_json_copy(obj, "customer", ev->customer, sizeof ev->customer) < 0) {
        snprintf(err, errlen, "The event's customer is invalid.");
        goto out;
    }

    switch (ev->kind) {
    case STRIPE_EV_CHECKOUT_COMPLETED:
    case STRIPE_EV_CHECKOUT_ASYNC_SUCCEEDED:
    case STRIPE_EV_CHECKOUT_ASYNC_FAILED:
    case STRIPE_EV_CHECKOUT_EXPIRED:
        ev->user_id = user_id_of(stripe_json_get(obj, "client_reference_id"));
        if (!ev->user_id)
            ev->user_id = user_id_of(stripe_json_get(stripe_json_get(obj, "metadata"), "user_id"));
        if (stripe_json_copy(obj, "id", ev->session, sizeof ev->session) < 0 ||
            stripe_json_copy(obj, "subscription", ev->subscription, sizeof ev->subscription) < 0 ||
            stripe_json_copy(obj, "mode", ev->mode, sizeof ev->mode) < 0 ||
            stripe_json_copy(obj, "payment_status", ev->payment_status, sizeof ev->payment_status) < 0) {
            snprintf(err, errlen, "The checkout session has an invalid field.");
            goto out;
        }
        break;
    case STRIPE_EV_SUBSCRIPTION_CREATED:
    case STRIPE_EV_SUBSCRIPTION_UPDATED:
    case STRIPE_EV_SUBSCRIPTION_DELETED: {
        if (stripe_json_copy(obj, "id", ev->subscription, sizeof ev->subscription) < 0 ||
            copy_word(obj, "status", ev->status, sizeof ev->status) < 0) {
            snprintf(err, errlen, "The subscription has an invalid field.");
            goto out;
        }
        ev->user_id = user_id_of(stripe_json_get(stripe_json_get(obj, "metadata"), "user_id"));
        json_object *items = stripe_json_get(stripe_json_get(obj, "items"), "data");
        if (items && json_object_is_type(items, json_type_array) && json_object_array_length(items) > 0)
            ev->current_period_end = int_field(json_object_array_get_idx(items, 0), "current_period_end");
        if (!ev->current_period_end)
            ev->current_period_end = int_field(obj, "current_period_end");
        ev->current_period_end = stripe_period_end(ev->current_period_end);
        break;
    }
    case STRIPE_EV_INVOICE_PAYMENT_FAILED: {
        json_object *details = stripe_json_get(stripe_json_get(obj, "parent"), "subscription_details");
        if (stripe_json_copy(details, "subscription", ev->subscription, sizeof ev->subscription) < 0 ||
            (!ev->subscription[0] &&
             stripe_json_copy(obj, "subscription", ev->subscription, sizeof ev->subscription) < 0) ||
            stripe_json_copy(obj, "billing_reason", ev->billing_reason, sizeof ev->billing_reason) < 0) {
            snprintf(err, errlen, "The invoice has an invalid field.");
            goto out;
        }
        ev->user_id = user_id_of(stripe_json_get(stripe_json_get(details, "metadata"), "user_id"));
        if (!ev->user_id)
            ev->user_id = user_id_of(
                stripe_json_get(stripe_json_get(stripe_json_get(obj, "subscription_details"), "metadata"), "user_id"));
        break;
    }
    default: break;
    }
    rc = 0;
out:
    json_object_put(root);
    if (tok)
        json_tokener_free(tok);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------- */
/* status policy */

long long stripe_period_end(long long t)
{
    return t >= 1 && t <= STRIPE_TIMESTAMP_MAX ? t : 0;
}

static int is(const char *s, const char *want)
{
    return s && strcmp(s, want) == 0;
}

int stripe_status_grants(const char *status)
{
    return is(status, "active") || is(status, "trialing") || is(status, "past_due");
}

int stripe_status_terminal(const char *status)
{
    return is(status, "canceled") || is(status, "incomplete_expired");
}

int stripe_status_rank(const char *status)
{
    if (is(status, "incomplete"))
        return 0;
    if (is(status, "trialing") || is(status, "active"))
        return 1;
    if (is(status, "past_due"))
        return 2;
    if (stripe_status_terminal(status))
        return 4;
    return 3; /* unpaid, paused, and whatever Stripe adds later */
}

const char *stripe_checkout_status(const char *payment_status)
{
    if (is(payment_status, "unpaid"))
        return "incomplete";
    if (is(payment_status, "no_payment_required"))
        return "trialing";
    return "active";
}

int stripe_event_closes_checkout(const stripe_event_t *ev)
{
    switch (ev->kind) {
    case STRIPE_EV_CHECKOUT_COMPLETED:
    case STRIPE_EV_CHECKOUT_ASYNC_SUCCEEDED:
    case STRIPE_EV_CHECKOUT_ASYNC_FAILED:
    case STRIPE_EV_CHECKOUT_EXPIRED: return ev->session[0] != '\0';
    default: return 0;
    }
}

int stripe_sub_change(const stripe_event_t *ev, const char *row_status, long long row_last, const char **status,
                      const char **why)
{
    const char *next = NULL;

    *status = NULL;
    *why = "";
    if (ev->kind == STRIPE_EV_CHECKOUT_EXPIRED) {
        *why = "an expired checkout session starts no subscription";
        return 0;
    }
    if (!ev->subscription[0]) {
        *why = "it names no subscription";
        return 0;
    }
    switch (ev->kind) {
    case STRIPE_EV_SUBSCRIPTION_CREATED:
    case STRIPE_EV_SUBSCRIPTION_UPDATED:
    case STRIPE_EV_SUBSCRIPTION_DELETED:
        next = ev->kind == STRIPE_EV_SUBSCRIPTION_DELETED ? "canceled" : ev->status;
        if (!next[0]) {
            *why = "it carries no status";
            return 0;
        }
        if (!row_status)
            break;
        if (stripe_status_terminal(row_status)) {
            *why = "the subscription has ended";
            return 1;
        }
        if (ev->created < row_last) {
            *why = "it is older than the last event applied";
            return 1;
        }
        if (ev->created == row_last && stripe_status_rank(next) < stripe_status_rank(row_status)) {
            *why = "it is from the same second as the last event applied and would move the status back";
            return 1;
        }
        break;
    case STRIPE_EV_CHECKOUT_COMPLETED:
    case STRIPE_EV_CHECKOUT_ASYNC_SUCCEEDED:
        if (ev->mode[0] && strcmp(ev->mode, "subscription") != 0) {
            *why = "it is not a subscription checkout";
            return 0;
        }
        /* The delayed payment went through: whatever the session says, it is paid now. */
        next = stripe_checkout_status(ev->kind == STRIPE_EV_CHECKOUT_ASYNC_SUCCEEDED ? "paid" : ev->payment_status);
        if (row_status && !(is(row_status, "incomplete") && !is(next, "incomplete"))) {
            *why = "a checkout only completes an incomplete subscription";
            return 1;
        }
        break;
    case STRIPE_EV_CHECKOUT_ASYNC_FAILED:
    case STRIPE_EV_INVOICE_PAYMENT_FAILED:
        if (ev->kind == STRIPE_EV_CHECKOUT_ASYNC_FAILED && ev->mode[0] && strcmp(ev->mode, "subscription") != 0) {
            *why = "it is not a subscription checkout";
            return 0;
        }
        if (!row_status) { /* a checkout's payment is the first invoice's */
            next = ev->kind == STRIPE_EV_CHECKOUT_ASYNC_FAILED || is(ev->billing_reason, "subscription_create")
                       ? "incomplete"
                       : "past_due";
            break;
        }
        if (!is(row_status, "active") && !is(row_status, "trialing")) {
            *why = "only an active or trialing subscription becomes past_due";
            return 1;
        }
        if (ev->created < row_last) {
            *why = "it is older than the last event applied";
            return 1;
        }
        next = "past_due";
        break;
    default: *why = "its type is not handled"; return 0;
    }
    *status = next;
    return 1;
}
