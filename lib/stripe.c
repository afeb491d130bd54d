#include "stripe.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

/* ---------------------------------------------------------------------------------------------------- */
/* form encoding */

void stripe_form_escape(buf_t *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~') {
            buf_append(out, &s[i], 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_append(out, e, 3);
        }
    }
}

void stripe_form_add(buf_t *out, const char *key, const char *value)
{
    if (!key || !value)
        return;
    if (out->len > 0)
        buf_append(out, "&", 1);
    stripe_form_escape(out, key, strlen(key));
    buf_append(out, "=", 1);
    stripe_form_escape(out, value, strlen(value));
}

/* ---------------------------------------------------------------------------------------------------- */
/* signatures */

int stripe_signature_compute(const char *secret, long long t, const char *body, size_t body_len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char mac[EVP_MAX_MD_SIZE];
    char ts[24];
    size_t maclen = 0;
    int rc = -1;
    int n = snprintf(ts, sizeof ts, "%lld.", t);
    EVP_MAC *alg = NULL;
    EVP_MAC_CTX *ctx = NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                           OSSL_PARAM_construct_end()};

    out[0] = '\0';
    if (!secret || n <= 0 || (size_t)n >= sizeof ts)
        goto out;
    alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    ctx = alg ? EVP_MAC_CTX_new(alg) : NULL;
    if (!ctx || EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)ts, (size_t)n) != 1 ||
        (body_len > 0 && EVP_MAC_update(ctx, (const unsigned char *)body, body_len) != 1) ||
        EVP_MAC_final(ctx, mac, &maclen, sizeof mac) != 1 || maclen != 32)
        goto out;
    for (size_t i = 0; i < maclen; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[64] = '\0';
    rc = 0;
out:
    OPENSSL_cleanse(mac, sizeof mac);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(alg);
    return rc;
}

static int parse_unix(const char *s, size_t len, long long *out)
{
    long long v = 0;
    if (len == 0 || len > 12)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int stripe_signature_verify(const char *header, const char *secret, const char *body, size_t body_len, long long now,
                            long tolerance, long long *t_out)
{
    char expected[65];
    long long t = 0;
    int have_t = 0, nv1 = 0, match = 0;
    int rc = STRIPE_SIG_MALFORMED;

    if (!header || !*header)
        return STRIPE_SIG_MISSING;
    if (!secret || !*secret)
        return STRIPE_SIG_MISMATCH;
    size_t hlen = strnlen(header, STRIPE_SIG_HEADER_MAX + 1);
    if (hlen > STRIPE_SIG_HEADER_MAX)
        return STRIPE_SIG_MALFORMED;

    /* First pass: find t (we need it before computing the expected signature). */
    const char *p = header, *end = header + hlen;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        while (p < item_end && (*p == ' ' || *p == '\t'))
            p++;
        const char *ie = item_end;
        while (ie > p && (ie[-1] == ' ' || ie[-1] == '\t'))
            ie--;
        const char *eq = memchr(p, '=', (size_t)(ie - p));
        if (eq) {
            size_t klen = (size_t)(eq - p);
            const char *v = eq + 1;
            size_t vlen = (size_t)(ie - v);
            if (klen == 1 && p[0] == 't') {
                if (have_t || parse_unix(v, vlen, &t) < 0)
                    return STRIPE_SIG_MALFORMED;
                have_t = 1;
            } else if (klen == 2 && p[0] == 'v' && p[1] == '1') {
                nv1++;
            }
        }
        p = comma ? comma + 1 : end;
    }
    if (!have_t || nv1 == 0)
        return STRIPE_SIG_MALFORMED;
    if (t_out)
        *t_out = t;
    if (stripe_signature_compute(secret, t, body, body_len, expected) < 0)
        return STRIPE_SIG_MISMATCH;

    /* Second pass: compare every v1 in constant time; keep going after a match so timing does not say
     * which one matched. */
    p = header;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        while (p < item_end && (*p == ' ' || *p == '\t'))
            p++;
        const char *ie = item_end;
        while (ie > p && (ie[-1] == ' ' || ie[-1] == '\t'))
            ie--;
        if (ie - p == 3 + 64 && p[0] == 'v' && p[1] == '1' && p[2] == '=') {
            if (CRYPTO_memcmp(p + 3, expected, 64) == 0)
                match = 1;
        }
        p = comma ? comma + 1 : end;
    }
    OPENSSL_cleanse(expected, sizeof expected);
    if (!match)
        rc = STRIPE_SIG_MISMATCH;
    else if (now - t > tolerance)
        rc = STRIPE_SIG_STALE;
    else if (t - now > tolerance)
        rc = STRIPE_SIG_FUTURE;
    else
        rc = STRIPE_SIG_OK;
    return rc;
}

const char *stripe_sig_strerror(int rc)
{
    switch (rc) {
    case STRIPE_SIG_OK: return "signature valid";
    case STRIPE_SIG_MISSING: return "Missing Stripe-Signature header.";
    case STRIPE_SIG_MALFORMED: return "Malformed Stripe-Signature header: it needs a timestamp t and a v1 signature.";
    case STRIPE_SIG_MISMATCH: return "No v1 signature matches the payload.";
    case STRIPE_SIG_STALE: return "The Stripe-Signature timestamp is too old.";
    case STRIPE_SIG_FUTURE: return "The Stripe-Signature timestamp is too far in the future.";
    default: return "Invalid Stripe-Signature header.";
    }
}

/* ---------------------------------------------------------------------------------------------------- */
/* events */

static json_object *jget(json_object *o, const char *key)
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
    json_object *v = jget(o, key);
    if (v && json_object_is_type(v, json_type_object))
        v = jget(v, "id");
    if (!v || !json_object_is_type(v, json_type_string))
        return NULL;
    *len = (size_t)json_object_get_string_len(v);
    return json_object_get_string(v);
}

/* Copy string field key of o into dst. 0 ok or absent (dst ""), -1 too long or contains NUL. */
static int copy_field(json_object *o, const char *key, char *dst, size_t dstsize)
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
    return copy_field(o, key, dst, dstsize);
}

/* A positive user id from a string (or integer) value; 0 if absent or not one. */
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
    if (parse_ll(json_object_get_string(v), 1, INT64_MAX, &id) < 0)
        return 0;
    return id;
}

static long long int_field(json_object *o, const char *key)
{
    json_object *v = jget(o, key);
    if (!v || !json_object_is_type(v, json_type_int))
        return 0;
    long long x = json_object_get_int64(v);
    return x > 0 ? x : 0;
}

static const struct {
    const char *type;
    int kind;
} event_kinds[] = {
    {"checkout.session.completed", STRIPE_EV_CHECKOUT_COMPLETED},
    {"customer.subscription.created", STRIPE_EV_SUBSCRIPTION_CREATED},
    {"customer.subscription.updated", STRIPE_EV_SUBSCRIPTION_UPDATED},
    {"customer.subscription.deleted", STRIPE_EV_SUBSCRIPTION_DELETED},
    {"invoice.payment_failed", STRIPE_EV_INVOICE_PAYMENT_FAILED},
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
    tok = json_tokener_new();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    root = json_tokener_parse_ex(tok, body, (int)len);
    if (!root || json_tokener_get_error(tok) != json_tokener_success || json_tokener_get_parse_end(tok) != len ||
        !json_object_is_type(root, json_type_object)) {
        snprintf(err, errlen, "The event is not a JSON object.");
        goto out;
    }
    if (copy_field(root, "id", ev->id, sizeof ev->id) < 0 || !ev->id[0]) {
        snprintf(err, errlen, "The event has no valid id.");
        goto out;
    }
    if (copy_field(root, "type", ev->type, sizeof ev->type) < 0 || !ev->type[0]) {
        snprintf(err, errlen, "The event has no valid type.");
        goto out;
    }
    v = jget(root, "created");
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

    obj = jget(jget(root, "data"), "object");
    if (!obj || !json_object_is_type(obj, json_type_object)) {
        snprintf(err, errlen, "The event has no data.object.");
        goto out;
    }
    if (copy_field(obj, "customer", ev->customer, sizeof ev->customer) < 0) {
        snprintf(err, errlen, "The event's customer is invalid.");
        goto out;
    }

    switch (ev->kind) {
    case STRIPE_EV_CHECKOUT_COMPLETED:
        ev->user_id = user_id_of(jget(obj, "client_reference_id"));
        if (!ev->user_id)
            ev->user_id = user_id_of(jget(jget(obj, "metadata"), "user_id"));
        if (copy_field(obj, "subscription", ev->subscription, sizeof ev->subscription) < 0 ||
            copy_field(obj, "mode", ev->mode, sizeof ev->mode) < 0 ||
            copy_field(obj, "payment_status", ev->payment_status, sizeof ev->payment_status) < 0) {
            snprintf(err, errlen, "The checkout session has an invalid field.");
            goto out;
        }
        break;
    case STRIPE_EV_SUBSCRIPTION_CREATED:
    case STRIPE_EV_SUBSCRIPTION_UPDATED:
    case STRIPE_EV_SUBSCRIPTION_DELETED: {
        if (copy_field(obj, "id", ev->subscription, sizeof ev->subscription) < 0 ||
            copy_word(obj, "status", ev->status, sizeof ev->status) < 0) {
            snprintf(err, errlen, "The subscription has an invalid field.");
            goto out;
        }
        ev->user_id = user_id_of(jget(jget(obj, "metadata"), "user_id"));
        json_object *items = jget(jget(obj, "items"), "data");
        if (items && json_object_is_type(items, json_type_array) && json_object_array_length(items) > 0)
            ev->current_period_end = int_field(json_object_array_get_idx(items, 0), "current_period_end");
        if (!ev->current_period_end)
            ev->current_period_end = int_field(obj, "current_period_end");
        ev->current_period_end = stripe_period_end(ev->current_period_end);
        break;
    }
    case STRIPE_EV_INVOICE_PAYMENT_FAILED: {
        json_object *details = jget(jget(obj, "parent"), "subscription_details");
        if (copy_field(details, "subscription", ev->subscription, sizeof ev->subscription) < 0 ||
            (!ev->subscription[0] && copy_field(obj, "subscription", ev->subscription, sizeof ev->subscription) < 0) ||
            copy_field(obj, "billing_reason", ev->billing_reason, sizeof ev->billing_reason) < 0) {
            snprintf(err, errlen, "The invoice has an invalid field.");
            goto out;
        }
        ev->user_id = user_id_of(jget(jget(details, "metadata"), "user_id"));
        if (!ev->user_id)
            ev->user_id = user_id_of(jget(jget(jget(obj, "subscription_details"), "metadata"), "user_id"));
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

int stripe_sub_change(const stripe_event_t *ev, const char *row_status, long long row_last, const char **status,
                      const char **why)
{
    const char *next = NULL;

    *status = NULL;
    *why = "";
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
        if (ev->mode[0] && strcmp(ev->mode, "subscription") != 0) {
            *why = "it is not a subscription checkout";
            return 0;
        }
        next = stripe_checkout_status(ev->payment_status);
        if (row_status && !(is(row_status, "incomplete") && !is(next, "incomplete"))) {
            *why = "a checkout only completes an incomplete subscription";
            return 1;
        }
        break;
    case STRIPE_EV_INVOICE_PAYMENT_FAILED:
        if (!row_status) {
            next = is(ev->billing_reason, "subscription_create") ? "incomplete" : "past_due";
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

/* ---------------------------------------------------------------------------------------------------- */
/* client */

void stripe_checkout_form(const stripe_checkout_req_t *req, buf_t *out)
{
    char uid[24];
    const char *base = req->public_url ? req->public_url : "";
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    snprintf(uid, sizeof uid, "%lld", req->user_id);

    buf_t success = {0}, cancel = {0};
    buf_append(&success, base, blen);
    buf_puts(&success, "/payment/success?session_id={CHECKOUT_SESSION_ID}");
    buf_append(&cancel, base, blen);
    buf_puts(&cancel, "/payment/cancel");

    stripe_form_add(out, "mode", "subscription");
    stripe_form_add(out, "line_items[0][price]", req->price_id);
    stripe_form_add(out, "line_items[0][quantity]", "1");
    stripe_form_add(out, "success_url", success.data);
    stripe_form_add(out, "cancel_url", cancel.data);
    stripe_form_add(out, "client_reference_id", uid);
    stripe_form_add(out, "metadata[user_id]", uid);
    stripe_form_add(out, "subscription_data[metadata][user_id]", uid);
    buf_free(&success);
    buf_free(&cancel);
}

int stripe_parse_checkout_session(const char *body, size_t len, stripe_checkout_session_t *out, char *err,
                                  size_t errlen)
{
    json_tokener *tok = json_tokener_new();
    json_object *root = NULL;
    int rc = -1;

    memset(out, 0, sizeof *out);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    root = body ? json_tokener_parse_ex(tok, body, (int)len) : NULL;
    if (!root || json_tokener_get_error(tok) != json_tokener_success || !json_object_is_type(root, json_type_object)) {
        snprintf(err, errlen, "Stripe returned an unreadable Checkout Session.");
        goto out;
    }
    if (copy_field(root, "id", out->id, sizeof out->id) < 0 || strncmp(out->id, "cs_", 3) != 0 ||
        copy_field(root, "url", out->url, sizeof out->url) < 0 || strncmp(out->url, "https://", 8) != 0) {
        memset(out, 0, sizeof *out);
        snprintf(err, errlen, "Stripe returned a Checkout Session without an id or url.");
        goto out;
    }
    rc = 0;
out:
    json_object_put(root);
    json_tokener_free(tok);
    return rc;
}

/* Copy src into dst (dstsize > 0) truncating at a UTF-8 character boundary. */
static void copy_utf8(char *dst, size_t dstsize, const char *src)
{
    size_t len = strlen(src), o = len < dstsize ? len : dstsize - 1;
    if (o < len) {
        size_t k = o; /* src[o] is the first byte dropped: back up over a cut sequence */
        while (k > 0 && ((unsigned char)src[k] & 0xC0) == 0x80)
            k--;
        if (k < o && ((unsigned char)src[k] & 0xC0) == 0xC0)
            o = k;
    }
    memcpy(dst, src, o);
    dst[o] = '\0';
}

/* Copy s[0..len) into dst (dstsize) replacing control bytes and every occurrence of secret with
 * "[redacted]"; truncates at a UTF-8 boundary. */
static void sanitize(const char *s, size_t len, const char *secret, char *dst, size_t dstsize)
{
    size_t slen = secret ? strlen(secret) : 0;
    buf_t b = {0};
    for (size_t i = 0; i < len && b.len < dstsize + 8;) {
        if (slen >= 4 && len - i >= slen && memcmp(s + i, secret, slen) == 0) {
            buf_puts(&b, "[redacted]");
            i += slen;
            continue;
        }
        char c = s[i++];
        if ((unsigned char)c < 0x20 || c == 0x7f || c == '\0')
            c = ' ';
        buf_append(&b, &c, 1);
    }
    copy_utf8(dst, dstsize, b.data ? b.data : "");
    buf_free(&b);
}

void stripe_error_message(const char *body, size_t len, long status, const char *secret, char *err, size_t errlen)
{
    json_tokener *tok = json_tokener_new();
    json_object *root = body ? json_tokener_parse_ex(tok, body, (int)len) : NULL;
    json_object *e = jget(root, "error");
    json_object *type = jget(e, "type"), *msg = jget(e, "message");
    char t[64] = "", m[240] = "";

    if (type && json_object_is_type(type, json_type_string))
        sanitize(json_object_get_string(type), (size_t)json_object_get_string_len(type), secret, t, sizeof t);
    if (msg && json_object_is_type(msg, json_type_string))
        sanitize(json_object_get_string(msg), (size_t)json_object_get_string_len(msg), secret, m, sizeof m);
    char full[sizeof t + sizeof m + 64];
    if (m[0])
        snprintf(full, sizeof full, "Stripe answered %ld (%s): %s", status, t[0] ? t : "error", m);
    else
        snprintf(full, sizeof full, "Stripe answered %ld.", status);
    if (errlen > 0)
        copy_utf8(err, errlen, full);
    json_object_put(root);
    json_tokener_free(tok);
}

static CURL *g_curl;

static void random_key(char out[40])
{
    memcpy(out, "gb-", 3);
    if (random_hex(out + 3, 16) != 0) {
        /* Practically never; a clock-derived key still differs between calls. */
        snprintf(out + 3, 37, "%032.0f", now_ms() * 1000.0);
    }
}

const char *stripe_failure_sentence(int failure)
{
    switch (failure) {
    case STRIPE_FAIL_NONE: return "Stripe answered.";
    case STRIPE_FAIL_REFUSED: return "Stripe refused the request.";
    case STRIPE_FAIL_UNREACHABLE: return "Stripe is unreachable.";
    case STRIPE_FAIL_TIMEOUT: return "Stripe timed out.";
    default: return "Stripe answered unexpectedly.";
    }
}

/* Retrying with less time than this left is not worth it: the last failure stands. */
#define STRIPE_RETRY_MIN_MS 250

int stripe_create_checkout_session(const stripe_checkout_req_t *req, stripe_checkout_session_t *out,
                                   stripe_call_result_t *result)
{
    buf_t form = {0}, url = {0}, hdr = {0}, idem = {0};
    capped_t resp = {.max = STRIPE_MAX_RESPONSE};
    struct curl_slist *headers = NULL;
    char errbuf[CURL_ERROR_SIZE];
    char key[40];
    long status = 0;
    int rc = -1;

    memset(out, 0, sizeof *out);
    memset(result, 0, sizeof *result);
    result->failure = STRIPE_FAIL_UNREACHABLE;
    if (!req->api_base || !req->secret_key || !req->price_id || !req->public_url) {
        snprintf(result->detail, sizeof result->detail, "Stripe is not configured.");
        goto out;
    }
    if (!g_curl && !(g_curl = curl_easy_init())) {
        snprintf(result->detail, sizeof result->detail, "Could not start an HTTP client for Stripe.");
        goto out;
    }

    size_t blen = strlen(req->api_base);
    while (blen > 0 && req->api_base[blen - 1] == '/')
        blen--;
    buf_append(&url, req->api_base, blen);
    buf_puts(&url, "/v1/checkout/sessions");
    stripe_checkout_form(req, &form);

    buf_puts(&hdr, "Authorization: Bearer ");
    buf_puts(&hdr, req->secret_key);
    if (req->idempotency_key && req->idempotency_key[0]) {
        buf_printf(&idem, "Idempotency-Key: %s", req->idempotency_key);
    } else {
        random_key(key);
        buf_printf(&idem, "Idempotency-Key: %s", key);
    }
    headers = curl_slist_append(headers, hdr.data);
    headers = curl_slist_append(headers, "Stripe-Version: " STRIPE_API_VERSION);
    headers = curl_slist_append(headers, idem.data);
    headers = curl_slist_append(headers, "Accept: application/json");
    headers = curl_slist_append(headers, "Expect:");

    /* One budget for the whole call: a retry only gets what the first attempt left. */
    long budget = req->timeout_ms > 0 ? req->timeout_ms : 10000;
    double deadline = now_ms() + (double)budget;
    for (int attempt = 0; attempt < 2; attempt++) {
        CURLcode cc;
        long left = (long)(deadline - now_ms());
        if (attempt > 0 && left < STRIPE_RETRY_MIN_MS)
            break; /* the first attempt's failure stands */
        if (left < 1)
            left = 1;
        buf_reset(&resp.b);
        resp.too_big = 0;
        errbuf[0] = '\0';
        status = 0;
        result->attempts = attempt + 1;
        curl_easy_reset(g_curl);
        curl_easy_setopt(g_curl, CURLOPT_URL, url.data);
        curl_easy_setopt(g_curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(g_curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(g_curl, CURLOPT_CONNECTTIMEOUT_MS, left < 5000 ? left : 5000L);
        curl_easy_setopt(g_curl, CURLOPT_TIMEOUT_MS, left);
        curl_easy_setopt(g_curl, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(g_curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(g_curl, CURLOPT_POST, 1L);
        curl_easy_setopt(g_curl, CURLOPT_POSTFIELDS, form.data);
        curl_easy_setopt(g_curl, CURLOPT_POSTFIELDSIZE, (long)form.len);
        curl_easy_setopt(g_curl, CURLOPT_WRITEFUNCTION, capped_write);
        curl_easy_setopt(g_curl, CURLOPT_WRITEDATA, &resp);
        curl_easy_setopt(g_curl, CURLOPT_USERAGENT, "gemini-backend/1.0");
        cc = curl_easy_perform(g_curl);
        if (cc == CURLE_OK)
            curl_easy_getinfo(g_curl, CURLINFO_RESPONSE_CODE, &status);
        result->http_status = (int)status;

        if (cc != CURLE_OK) {
            if (resp.too_big) {
                result->failure = STRIPE_FAIL_UNEXPECTED;
                snprintf(result->detail, sizeof result->detail, "Stripe's response was larger than %d bytes.",
                         STRIPE_MAX_RESPONSE);
                goto out;
            }
            const char *why = errbuf[0] ? errbuf : curl_easy_strerror(cc);
            char clean[CURL_ERROR_SIZE];
            sanitize(why, strlen(why), req->secret_key, clean, sizeof clean);
            result->failure = cc == CURLE_OPERATION_TIMEDOUT ? STRIPE_FAIL_TIMEOUT : STRIPE_FAIL_UNREACHABLE;
            snprintf(result->detail, sizeof result->detail, "Could not reach Stripe (curl %d): %s", (int)cc, clean);
            /* Retry only failures where the request surely did not reach Stripe, or a 5xx below. */
            if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST)
                continue;
            goto out;
        }
        if (status >= 200 && status < 300) {
            char *d = result->detail;
            if (stripe_parse_checkout_session(resp.b.data, resp.b.len, out, d, sizeof result->detail) < 0) {
                result->failure = STRIPE_FAIL_UNEXPECTED;
                goto out;
            }
            result->failure = STRIPE_FAIL_NONE;
            result->detail[0] = '\0';
            rc = 0;
            goto out;
        }
        stripe_error_message(resp.b.data, resp.b.len, status, req->secret_key, result->detail, sizeof result->detail);
        result->failure = status >= 400 && status < 600 ? STRIPE_FAIL_REFUSED : STRIPE_FAIL_UNEXPECTED;
        if (status < 500 || status >= 600)
            goto out;
    }
out:
    if (hdr.data)
        OPENSSL_cleanse(hdr.data, hdr.len);
    curl_slist_free_all(headers);
    buf_free(&form);
    buf_free(&url);
    buf_free(&hdr);
    buf_free(&idem);
    buf_free(&resp.b);
    return rc;
}

void stripe_cleanup(void)
{
    if (g_curl)
        curl_easy_cleanup(g_curl);
    g_curl = NULL;
}
