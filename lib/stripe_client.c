#include "stripe_client.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

/* ---------------------------------------------------------------------------------------------------- */
/* form encoding */

void stripe_form_escape(buf_t *out, const char *s, size_t len)
{
    /* curl_easy_escape takes an int length: a longer value (none of ours comes near) goes in pieces. */
    while (len > 0) {
        int n = len > (size_t)(INT_MAX / 4) ? INT_MAX / 4 : (int)len;
        char *e = curl_easy_escape(NULL, s, n); /* libcurl >= 7.82 ignores the handle */
        if (!e)
            abort(); /* allocation failure: the project's out-of-memory policy (util.h) */
        buf_append(out, e, strlen(e));
        curl_free(e);
        s += n;
        len -= (size_t)n;
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
/* Checkout Sessions */

void stripe_checkout_form(const stripe_checkout_req_t *req, buf_t *out)
{
    char uid[24], expires[24];
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
    if (req->customer && req->customer[0])
        stripe_form_add(out, "customer", req->customer);
    if (req->expires_at > 0) {
        snprintf(expires, sizeof expires, "%lld", req->expires_at);
        stripe_form_add(out, "expires_at", expires);
    }
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
    if (stripe_json_copy(root, "id", out->id, sizeof out->id) < 0 || strncmp(out->id, "cs_", 3) != 0 ||
        stripe_json_copy(root, "url", out->url, sizeof out->url) < 0 || strncmp(out->url, "https://", 8) != 0) {
        memset(out, 0, sizeof *out);
        snprintf(err, errlen, "Stripe returned a Checkout Session without an id or url.");
        goto out;
    }
    json_object *exp = stripe_json_get(root, "expires_at");
    if (exp && json_object_is_type(exp, json_type_int))
        out->expires_at = stripe_period_end(json_object_get_int64(exp));
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
    json_object *e = stripe_json_get(root, "error");
    json_object *type = stripe_json_get(e, "type"), *msg = stripe_json_get(e, "message");
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

/* A token-like string field of obj into out ("" when absent, not a string or holding another byte). */
static void token_field(json_object *obj, const char *key, char *out, size_t outlen)
{
    json_object *v = stripe_json_get(obj, key);
    const char *str = v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
    size_t n = 0;
    if (outlen == 0)
        return;
    for (; str[n] && n + 1 < outlen; n++) {
        char c = str[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("_.[]-", c))) {
            n = 0;
            break;
        }
        out[n] = c;
    }
    out[n] = '\0';
}

void stripe_error_fields(const char *body, size_t len, char *code, size_t codelen, char *param, size_t paramlen)
{
    json_tokener *tok = json_tokener_new();
    json_object *root = body && tok ? json_tokener_parse_ex(tok, body, (int)len) : NULL;
    json_object *e = stripe_json_get(root, "error");
    token_field(e, "code", code, codelen);
    token_field(e, "param", param, paramlen);
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
    case STRIPE_FAIL_BUSY: return "Stripe is failing or busy; try again shortly.";
    case STRIPE_FAIL_UNREACHABLE: return "Stripe is unreachable.";
    case STRIPE_FAIL_TIMEOUT: return "Stripe timed out.";
    default: return "Stripe answered unexpectedly.";
    }
}

/* Retrying with less time than this left is not worth it: the last failure stands. */
#define STRIPE_RETRY_MIN_MS 250
/* The pause before retrying a 429 or 409: Stripe asks for a slower pace, or the key's first use still runs. */
#define STRIPE_RETRY_PAUSE_MS 500

/* A status worth one more try with the same Idempotency-Key: Stripe's own failure, its rate limit, or a
 * conflict that passes (a concurrent request with the same key, a lock timeout). */
static int stripe_status_transient(long status)
{
    return (status >= 500 && status < 600) || status == 429 || status == 409;
}

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
    long budget = req->timeout_ms > 0 ? req->timeout_ms : STRIPE_CHECKOUT_BUDGET_MS;
    double deadline = now_ms() + (double)budget;
    for (int attempt = 0; attempt < 2; attempt++) {
        CURLcode cc;
        long left = (long)(deadline - now_ms());
        if (attempt > 0 && (status == 429 || status == 409)) {
            long pause =
                left - STRIPE_RETRY_MIN_MS < STRIPE_RETRY_PAUSE_MS ? left - STRIPE_RETRY_MIN_MS : STRIPE_RETRY_PAUSE_MS;
            sleep_ms(pause);
            left = (long)(deadline - now_ms());
        }
        if (attempt > 0 && left < STRIPE_RETRY_MIN_MS)
            break; /* the first attempt's failure stands */
        if (left < 1)
            left = 1;
        buf_reset(&resp.b);
        resp.too_big = 0;
        errbuf[0] = '\0';
        status = 0;
        result->error_code[0] = result->error_param[0] = '\0'; /* only the last attempt's refusal counts */
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
        stripe_error_fields(resp.b.data, resp.b.len, result->error_code, sizeof result->error_code, result->error_param,
                            sizeof result->error_param);
        result->failure = stripe_status_transient(status) ? STRIPE_FAIL_BUSY
                          : status >= 400 && status < 500 ? STRIPE_FAIL_REFUSED
                                                          : STRIPE_FAIL_UNEXPECTED;
        if (!stripe_status_transient(status))
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
