#include "ai.h"

#include <ctype.h>
#include <stdarg.h>
#include <curl/curl.h>
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OFFLINE_PREFIX "[offline model: no AI provider configured] You said: "

void ai_result_free(ai_result_t *r)
{
    if (!r)
        return;
    free(r->text);
    memset(r, 0, sizeof *r);
    r->retry_after_ms = -1;
}

static void result_reset(ai_result_t *r)
{
    memset(r, 0, sizeof *r);
    r->retry_after_ms = -1;
}

/* ---- requests ---- */

int ai_normalise(const ai_turn_t *turns, size_t n, ai_turn_t *out, size_t *nout)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!turns[i].text || turns[i].len == 0)
            continue;
        if (k == 0 && turns[i].role != AI_ROLE_USER)
            continue; /* the window may open on a model turn: Gemini wants the user first */
        out[k++] = turns[i];
    }
    while (k > 0 && out[k - 1].role != AI_ROLE_USER)
        k--;
    *nout = k;
    return k ? 0 : -1;
}

static json_object *jstr(const char *s, size_t len)
{
    return json_object_new_string_len(s, (int)len);
}

static json_object *text_part(const char *s, size_t len)
{
    json_object *part = json_object_new_object();
    json_object_object_add(part, "text", jstr(s, len));
    return part;
}

static json_object *gemini_body(const ai_turn_t *t, size_t n, const char *system_prompt)
{
    json_object *root = json_object_new_object();
    json_object *contents = json_object_new_array();
    json_object *parts = NULL;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || t[i].role != t[i - 1].role) {
            json_object *content = json_object_new_object();
            json_object_object_add(content, "role",
                                   json_object_new_string(t[i].role == AI_ROLE_USER ? "user" : "model"));
            parts = json_object_new_array();
            json_object_object_add(content, "parts", parts);
            json_object_array_add(contents, content);
        }
        json_object_array_add(parts, text_part(t[i].text, t[i].len));
    }
    json_object_object_add(root, "contents", contents);
    if (system_prompt && *system_prompt) {
        json_object *si = json_object_new_object();
        json_object *sp = json_object_new_array();
        json_object_array_add(sp, text_part(system_prompt, strlen(system_prompt)));
        json_object_object_add(si, "parts", sp);
        json_object_object_add(root, "systemInstruction", si);
    }
    json_object *gc = json_object_new_object();
    json_object_object_add(gc, "maxOutputTokens", json_object_new_int(AI_MAX_OUTPUT_TOKENS));
    json_object_object_add(root, "generationConfig", gc);
    return root;
}

static json_object *openai_message(const char *role, const char *s, size_t len)
{
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string(role));
    json_object_object_add(m, "content", jstr(s, len));
    return m;
}

static json_object *openai_body(const ai_turn_t *t, size_t n, const char *system_prompt, const char *model, int stream)
{
    json_object *root = json_object_new_object();
    if (model && *model)
        json_object_object_add(root, "model", json_object_new_string(model));
    json_object *msgs = json_object_new_array();
    if (system_prompt && *system_prompt)
        json_object_array_add(msgs, openai_message("system", system_prompt, strlen(system_prompt)));
    buf_t joined = {0};
    for (size_t i = 0; i < n; i++) {
        if (joined.len)
            buf_append(&joined, "\n\n", 2);
        buf_append(&joined, t[i].text, t[i].len);
        if (i + 1 == n || t[i + 1].role != t[i].role) {
            json_object_array_add(
                msgs, openai_message(t[i].role == AI_ROLE_USER ? "user" : "assistant", joined.data, joined.len));
            buf_reset(&joined);
        }
    }
    buf_free(&joined);
    json_object_object_add(root, "messages", msgs);
    json_object_object_add(root, "stream", json_object_new_boolean(stream));
    return root;
}

static int build_request(enum ai_provider p, const ai_turn_t *turns, size_t n, const char *system_prompt,
                         const char *model, int stream, buf_t *out)
{
    int rc = -1;
    ai_turn_t *norm = NULL;
    json_object *root = NULL;
    size_t k = 0;

    if (p != AI_PROVIDER_GEMINI && p != AI_PROVIDER_OPENAI)
        goto out;
    norm = xcalloc(n ? n : 1, sizeof *norm);
    if (ai_normalise(turns, n, norm, &k) != 0)
        goto out;
    root = p == AI_PROVIDER_GEMINI ? gemini_body(norm, k, system_prompt)
                                   : openai_body(norm, k, system_prompt, model, stream);
    size_t len = 0;
    const char *s =
        json_object_to_json_string_length(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (!s)
        goto out;
    buf_append(out, s, len);
    rc = 0;
out:
    json_object_put(root);
    free(norm);
    return rc;
}

int ai_build_request(enum ai_provider p, const ai_turn_t *turns, size_t n, const char *system_prompt, const char *model,
                     buf_t *out)
{
    return build_request(p, turns, n, system_prompt, model, 0, out);
}

int ai_build_stream_request(enum ai_provider p, const ai_turn_t *turns, size_t n, const char *system_prompt,
                            const char *model, buf_t *out)
{
    return build_request(p, turns, n, system_prompt, model, 1, out);
}

/* ---- responses ---- */

/* Copy an upstream token (status, reason) keeping only [A-Za-z0-9_.:-], at most max bytes. */
static void token_copy(char *dst, size_t cap, const char *src, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; src && src[i] && k + 1 < cap && k < max; i++) {
        char c = src[i];
        if (isalnum((unsigned char)c) || c == '_' || c == '.' || c == ':' || c == '-')
            dst[k++] = c;
    }
    dst[k] = '\0';
}

/* Copy upstream prose for the log: printable ASCII only, cut to the field. */
static void detail_copy(ai_result_t *r, const char *src)
{
    size_t k = 0;
    for (size_t i = 0; src && src[i] && k + 1 < sizeof r->detail; i++) {
        unsigned char c = (unsigned char)src[i];
        r->detail[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    r->detail[k] = '\0';
}

static void set_error(ai_result_t *r, enum ai_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_error(ai_result_t *r, enum ai_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap); /* truncation is fine: the field is a ceiling */
    va_end(ap);
    r->status = st;
}

json_object *ai_json_get(json_object *o, const char *key, json_type type)
{
    json_object *v = NULL;
    if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v))
        return NULL;
    return json_object_is_type(v, type) ? v : NULL;
}

const char *ai_json_str(json_object *o, const char *key)
{
    json_object *v = ai_json_get(o, key, json_type_string);
    return v ? json_object_get_string(v) : NULL;
}

void ai_gemini_parts(json_object *candidate, void (*emit)(void *ctx, const char *text, size_t len), void *ctx)
{
    json_object *parts = ai_json_get(ai_json_get(candidate, "content", json_type_object), "parts", json_type_array);
    size_t np = parts ? json_object_array_length(parts) : 0;
    for (size_t i = 0; i < np; i++) {
        json_object *part = json_object_array_get_idx(parts, i);
        json_object *thought = ai_json_get(part, "thought", json_type_boolean);
        json_object *t = ai_json_get(part, "text", json_type_string);
        if (t && !(thought && json_object_get_boolean(thought)))
            emit(ctx, json_object_get_string(t), (size_t)json_object_get_string_len(t));
    }
}

static json_object *parse_json(const char *body, size_t len)
{
    if (!body || len == 0 || len > AI_MAX_RESPONSE_BYTES)
        return NULL;
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return NULL;
    json_object *o = json_tokener_parse_ex(tok, body, (int)len);
    if (o && json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(o);
        o = NULL;
    }
    for (size_t end = o ? json_tokener_get_parse_end(tok) : len; end < len; end++)
        if (!isspace((unsigned char)body[end])) { /* trailing garbage: not the body we were promised */
            json_object_put(o);
            o = NULL;
            break;
        }
    json_tokener_free(tok);
    if (o && !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        o = NULL;
    }
    return o;
}

/* API.md: 429, 5xx and timeouts are retried: every 5xx (proxies in front of OpenAI-compatible servers answer
 * 520-524, Cloudflare's, and 529, overloaded, for what passes) but 501 and 505, which no retry changes. */
static int is_transient_status(long st)
{
    return st == 408 || st == 429 || (st >= 500 && st <= 599 && st != 501 && st != 505);
}

/* The answer text, sanitised; an answer with nothing left (only NULs) is no answer: finish names the finish
 * reason's field and reason its value, for the error. */
static void take_text(ai_result_t *r, buf_t *text, int truncated, const char *finish, const char *reason)
{
    buf_t clean = {0};
    ai_text_sanitise(text->data, text->len, &clean);
    buf_free(text);
    if (clean.len == 0) {
        buf_free(&clean);
        set_error(r, AI_PERMANENT, "model returned no text (%s %s)", finish, reason);
        return;
    }
    r->status = AI_OK;
    r->text = clean.data;
    r->text_len = clean.len;
    r->truncated = truncated;
}

void ai_text_sanitise(const char *s, size_t len, buf_t *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* run: start of the pending stretch of good bytes */
    buf_append(out, "", 0);
    while (i < len) {
        size_t k = u[i] ? utf8_decode(s + i, len - i, NULL) : 0;
        if (k) {
            i += k;
            continue;
        }
        buf_append(out, s + run, i - run);
        if (u[i])
            buf_append(out, "\xEF\xBF\xBD", 3);
        run = ++i;
    }
    buf_append(out, s + run, i - run);
}

static void append_part(void *text, const char *p, size_t len)
{
    buf_append(text, p, len);
}

static void gemini_ok(json_object *root, ai_result_t *r)
{
    buf_t text = {0};
    char reason[48];
    json_object *cands = ai_json_get(root, "candidates", json_type_array);
    json_object *c0 = cands && json_object_array_length(cands) > 0 ? json_object_array_get_idx(cands, 0) : NULL;
    if (!c0 || !json_object_is_type(c0, json_type_object)) {
        const char *block = ai_json_str(ai_json_get(root, "promptFeedback", json_type_object), "blockReason");
        if (block) {
            token_copy(reason, sizeof reason, block, 40);
            set_error(r, AI_PERMANENT, "prompt blocked by the model (%s)", reason);
        } else {
            set_error(r, AI_PERMANENT, "model returned no candidates");
        }
        goto out;
    }
    const char *finish = ai_json_str(c0, "finishReason");
    token_copy(reason, sizeof reason, finish ? finish : "none", 40);
    ai_gemini_parts(c0, append_part, &text);
    int usable = !finish || strcmp(finish, "STOP") == 0 || strcmp(finish, "MAX_TOKENS") == 0 ||
                 strcmp(finish, "FINISH_REASON_UNSPECIFIED") == 0;
    if (!usable) {
        set_error(r, AI_PERMANENT, "model stopped without an answer (finishReason %s)", reason);
        goto out;
    }
    if (text.len == 0) {
        set_error(r, AI_PERMANENT, "model returned no text (finishReason %s)", reason);
        goto out;
    }
    take_text(r, &text, finish && strcmp(finish, "MAX_TOKENS") == 0, "finishReason", reason);
out:
    buf_free(&text);
}

static void openai_ok(json_object *root, ai_result_t *r)
{
    char reason[48];
    json_object *choices = ai_json_get(root, "choices", json_type_array);
    json_object *c0 = choices && json_object_array_length(choices) > 0 ? json_object_array_get_idx(choices, 0) : NULL;
    if (!c0 || !json_object_is_type(c0, json_type_object)) {
        set_error(r, AI_PERMANENT, "model returned no choices");
        return;
    }
    const char *finish = ai_json_str(c0, "finish_reason");
    token_copy(reason, sizeof reason, finish ? finish : "none", 40);
    json_object *msg = ai_json_get(c0, "message", json_type_object);
    json_object *content = ai_json_get(msg, "content", json_type_string);
    const char *refusal = ai_json_str(msg, "refusal");
    if (finish && strcmp(finish, "content_filter") == 0) {
        set_error(r, AI_PERMANENT, "model stopped without an answer (finish_reason %s)", reason);
        return;
    }
    if (!content || json_object_get_string_len(content) == 0) {
        if (refusal)
            set_error(r, AI_PERMANENT, "model refused to answer");
        else
            set_error(r, AI_PERMANENT, "model returned no text (finish_reason %s)", reason);
        return;
    }
    buf_t text = {0};
    buf_append(&text, json_object_get_string(content), (size_t)json_object_get_string_len(content));
    take_text(r, &text, finish && strcmp(finish, "length") == 0, "finish_reason", reason);
}

/* Read {"error":{...}} of either provider into r->error / r->detail / hints. Returns 1 for a Gemini daily
 * quota 429 (retrying soon will not help), else 0. */
static int upstream_error(enum ai_provider p, long st, json_object *root, ai_result_t *r, enum ai_status cls)
{
    char status[48] = "", reason[48] = "";
    int daily = 0;
    json_object *err = ai_json_get(root, "error", json_type_object);
    if (err) {
        detail_copy(r, ai_json_str(err, "message"));
        if (p == AI_PROVIDER_GEMINI) {
            token_copy(status, sizeof status, ai_json_str(err, "status"), 40);
            json_object *details = ai_json_get(err, "details", json_type_array);
            size_t nd = details ? json_object_array_length(details) : 0;
            for (size_t i = 0; i < nd; i++) {
                json_object *d = json_object_array_get_idx(details, i);
                const char *type = ai_json_str(d, "@type");
                if (!type)
                    continue;
                if (strstr(type, "google.rpc.ErrorInfo") && ai_json_str(d, "reason")) {
                    token_copy(reason, sizeof reason, ai_json_str(d, "reason"), 40);
                } else if (strstr(type, "google.rpc.RetryInfo")) {
                    json_object *delay = ai_json_get(d, "retryDelay", json_type_string);
                    long ms = delay ? ai_parse_duration(json_object_get_string(delay),
                                                        (size_t)json_object_get_string_len(delay))
                                    : -1;
                    if (ms > r->retry_after_ms)
                        r->retry_after_ms = ms;
                } else if (strstr(type, "google.rpc.QuotaFailure")) {
                    json_object *v = ai_json_get(d, "violations", json_type_array);
                    size_t nv = v ? json_object_array_length(v) : 0;
                    for (size_t j = 0; j < nv; j++) {
                        const char *q = ai_json_str(json_object_array_get_idx(v, j), "quotaId");
                        if (q && strstr(q, "PerDay"))
                            daily = 1;
                    }
                }
            }
        } else {
            const char *code = ai_json_str(err, "code");
            token_copy(status, sizeof status, code ? code : ai_json_str(err, "type"), 40);
        }
    }
    if (daily && st == 429) {
        set_error(r, AI_PERMANENT, "upstream daily quota exhausted (429 %s)", status);
        return 1;
    }
    if (*status && *reason)
        set_error(r, cls, "upstream error %ld %s (%s)", st, status, reason);
    else if (*status)
        set_error(r, cls, "upstream error %ld %s", st, status);
    else
        set_error(r, cls, "upstream error %ld", st);
    return 0;
}

void ai_parse_response(enum ai_provider p, long http_status, const char *body, size_t len, const char *retry_after,
                       ai_result_t *r)
{
    result_reset(r);
    r->http_status = http_status;
    r->retry_after_ms = ai_parse_retry_after(retry_after);
    json_object *root = parse_json(body, len);

    if (http_status >= 200 && http_status < 300) {
        if (!root)
            set_error(r, AI_TRANSIENT, "malformed upstream response (HTTP %ld)", http_status);
        else if (p == AI_PROVIDER_GEMINI)
            gemini_ok(root, r);
        else if (p == AI_PROVIDER_OPENAI)
            openai_ok(root, r);
        else
            set_error(r, AI_PERMANENT, "no AI provider configured");
    } else {
        upstream_error(p, http_status, root, r, is_transient_status(http_status) ? AI_TRANSIENT : AI_PERMANENT);
    }
    if (r->retry_after_ms > AI_RETRY_HINT_CAP_MS)
        r->retry_after_ms = AI_RETRY_HINT_CAP_MS;
    json_object_put(root);
}

void ai_transport_error(int curl_code, ai_result_t *r)
{
    result_reset(r);
    switch ((CURLcode)curl_code) {
    case CURLE_OPERATION_TIMEDOUT: set_error(r, AI_TRANSIENT, "upstream timed out"); break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT: set_error(r, AI_TRANSIENT, "upstream unreachable (curl %d)", curl_code); break;
    case CURLE_WRITE_ERROR: set_error(r, AI_PERMANENT, "upstream response too large"); break;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_TOO_MANY_REDIRECTS: set_error(r, AI_PERMANENT, "upstream misconfigured (curl %d)", curl_code); break;
    default: set_error(r, AI_TRANSIENT, "upstream transport error (curl %d)", curl_code); break;
    }
    detail_copy(r, curl_easy_strerror((CURLcode)curl_code));
}

/* ---- retry timing ---- */

long ai_parse_retry_after(const char *v)
{
    if (!v)
        return -1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r' || v[n - 1] == '\n'))
        n--;
    if (n == 0)
        return -1;
    if (isdigit((unsigned char)v[0])) {
        long long secs = 0;
        for (size_t i = 0; i < n; i++) {
            if (!isdigit((unsigned char)v[i]))
                return -1;
            if (secs < 1000000000LL)
                secs = secs * 10 + (v[i] - '0');
        }
        if (secs > AI_RETRY_HINT_CAP_MS / 1000)
            secs = AI_RETRY_HINT_CAP_MS / 1000;
        return (long)(secs * 1000);
    }
    char date[64];
    if (n >= sizeof date)
        return -1;
    memcpy(date, v, n);
    date[n] = '\0';
    time_t t = curl_getdate(date, NULL);
    if (t == -1)
        return -1;
    time_t now = time(NULL);
    if (t <= now)
        return 0;
    if (t - now > AI_RETRY_HINT_CAP_MS / 1000)
        return AI_RETRY_HINT_CAP_MS;
    return (long)(t - now) * 1000;
}

long ai_parse_duration(const char *s, size_t len)
{
    if (!s || len < 2 || s[len - 1] != 's')
        return -1;
    len--;
    long long whole = 0, frac_ms = 0;
    size_t i = 0;
    int digits = 0;
    for (; i < len && isdigit((unsigned char)s[i]); i++, digits++)
        if (whole < 100000000LL)
            whole = whole * 10 + (s[i] - '0');
    if (digits == 0)
        return -1;
    int round_up = 0;
    if (i < len && s[i] == '.') {
        i++;
        int fd = 0;
        for (; i < len && isdigit((unsigned char)s[i]); i++, fd++) {
            if (fd < 3)
                frac_ms = frac_ms * 10 + (s[i] - '0');
            else if (s[i] != '0')
                round_up = 1;
        }
        if (fd == 0 || fd > 9)
            return -1;
        for (; fd < 3; fd++)
            frac_ms *= 10;
    }
    if (i != len)
        return -1;
    long long ms = whole * 1000 + frac_ms + round_up;
    return ms > AI_RETRY_HINT_CAP_MS ? AI_RETRY_HINT_CAP_MS : (long)ms;
}

long ai_backoff_ms(long attempt, long retry_after_ms, uint64_t rnd)
{
    long window = AI_BACKOFF_BASE_MS;
    for (long i = 1; i < attempt && window < AI_BACKOFF_CAP_MS; i++)
        window *= 2;
    if (window > AI_BACKOFF_CAP_MS)
        window = AI_BACKOFF_CAP_MS;
    long wait = (long)(rnd % (uint64_t)(window + 1));
    if (retry_after_ms > AI_RETRY_HINT_CAP_MS)
        retry_after_ms = AI_RETRY_HINT_CAP_MS;
    return wait < retry_after_ms ? retry_after_ms : wait;
}

/* ---- offline ---- */

void ai_offline_reply(const ai_turn_t *turns, size_t n, buf_t *out)
{
    const ai_turn_t *last = NULL;
    for (size_t i = n; i-- > 0;)
        if (turns[i].role == AI_ROLE_USER && turns[i].text && turns[i].len) {
            last = &turns[i];
            break;
        }
    buf_puts(out, OFFLINE_PREFIX);
    if (!last)
        return;
    /* cut after AI_OFFLINE_ECHO_CHARS code points, never inside a UTF-8 sequence */
    size_t end = 0, cps = 0;
    const unsigned char *s = (const unsigned char *)last->text;
    while (end < last->len && cps < AI_OFFLINE_ECHO_CHARS) {
        end++;
        while (end < last->len && (s[end] & 0xC0) == 0x80)
            end++;
        cps++;
    }
    buf_append(out, last->text, end);
    if (end < last->len)
        buf_puts(out, "\xE2\x80\xA6"); /* U+2026 */
}
