#include "ai_stream.h"

#include <ctype.h>
#include <json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ai_stream {
    enum ai_provider provider;
    int state;     /* AI_STREAM_* */
    int skip_lf;   /* the last byte was a CR: a following LF belongs to the same line end */
    size_t fed;    /* bytes fed, for the ceiling */
    buf_t line;    /* the line being read */
    buf_t data;    /* the data lines of the event being read, joined by LF */
    int has_data;  /* the event has at least one data line */
    buf_t text;    /* the whole text so far (sanitised) */
    char carry[4]; /* the start of a UTF-8 sequence that a piece ended in, completed by the next piece */
    size_t ncarry;
    unsigned high;   /* a high surrogate (\uD800-\uDBFF) an event's text ended in, paired by the next; 0 none */
    char reason[48]; /* the finish reason, "" while none */
    int finished;    /* a finish reason or [DONE] was seen */
    int refused;     /* OpenAI: a refusal delta came */
    ai_result_t err; /* AI_STREAM_FAILED: why */
};

ai_stream_t *ai_stream_new(enum ai_provider p)
{
    ai_stream_t *s = xcalloc(1, sizeof *s);
    s->provider = p;
    s->state = AI_STREAM_MORE;
    s->err.retry_after_ms = -1;
    return s;
}

void ai_stream_free(ai_stream_t *s)
{
    if (!s)
        return;
    buf_free(&s->line);
    buf_free(&s->data);
    buf_free(&s->text);
    ai_result_free(&s->err);
    free(s);
}

const char *ai_stream_text(const ai_stream_t *s, size_t *len)
{
    *len = s->text.len;
    return s->text.len ? s->text.data : "";
}

static void fail(ai_stream_t *s, enum ai_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(ai_stream_t *s, enum ai_status st, const char *fmt, ...)
{
    va_list ap;
    ai_result_free(&s->err);
    va_start(ap, fmt);
    vsnprintf(s->err.error, sizeof s->err.error, fmt, ap);
    va_end(ap);
    s->err.status = st;
    s->err.http_status = 200;
    s->state = AI_STREAM_FAILED;
}

/* Keep [A-Za-z0-9_.:-] of an upstream token (a finish reason), cut to fit. */
static void token_copy(char *dst, size_t cap, const char *src)
{
    size_t k = 0;
    for (size_t i = 0; src && src[i] && k + 1 < cap && k < 40; i++) {
        char c = src[i];
        if (isalnum((unsigned char)c) || c == '_' || c == '.' || c == ':' || c == '-')
            dst[k++] = c;
    }
    dst[k] = '\0';
}

/* How many bytes at the end of p[0..len) start a UTF-8 sequence that is not complete yet (a lead byte and fewer
 * continuation bytes than it announces): 0 to 3. */
static size_t open_tail(const char *p, size_t len)
{
    const unsigned char *u = (const unsigned char *)p;
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        unsigned char c = u[len - back];
        if ((c & 0xC0) == 0x80)
            continue; /* a continuation byte: its lead is further back */
        size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 0;
        return need > back ? back : 0;
    }
    return 0;
}

/* Add a piece of text: sanitised, appended to the whole text and to delta. A multi-byte character that a server
 * split across two pieces (they are bytes to some servers) is held back until the next piece completes it,
 * instead of becoming two U+FFFD. */
static void add_text(ai_stream_t *s, const char *p, size_t len, buf_t *delta)
{
    if (len == 0)
        return;
    buf_t joined = {0};
    if (s->ncarry) {
        buf_append(&joined, s->carry, s->ncarry);
        buf_append(&joined, p, len);
        p = joined.data;
        len = joined.len;
        s->ncarry = 0;
    }
    size_t tail = open_tail(p, len);
    size_t before = s->text.len;
    ai_text_sanitise(p, len - tail, &s->text);
    memcpy(s->carry, p + len - tail, tail);
    s->ncarry = tail;
    if (delta)
        buf_append(delta, s->text.data + before, s->text.len - before);
    buf_free(&joined);
}

/* An {"error":{...}} chunk: classified as an HTTP answer with the error's own code (500 when it has none, so
 * that an unexplained failure is retried). */
static void error_chunk(ai_stream_t *s, json_object *err, const char *raw, size_t len)
{
    json_object *code = ai_json_get(err, "code", json_type_int);
    long st = code ? (long)json_object_get_int64(code) : 500;
    if (st < 400 || st > 599)
        st = 500;
    ai_result_free(&s->err);
    ai_parse_response(s->provider, st, raw, len, NULL, &s->err);
    s->state = AI_STREAM_FAILED;
}

/* add_text for ai_gemini_parts. */
typedef struct {
    ai_stream_t *s;
    buf_t *delta;
} part_ctx_t;

static void add_part(void *ctx, const char *p, size_t len)
{
    part_ctx_t *pc = ctx;
    add_text(pc->s, p, len, pc->delta);
}

static void gemini_chunk(ai_stream_t *s, json_object *root, buf_t *delta)
{
    const char *block = ai_json_str(ai_json_get(root, "promptFeedback", json_type_object), "blockReason");
    json_object *cands = ai_json_get(root, "candidates", json_type_array);
    json_object *c0 = cands && json_object_array_length(cands) > 0 ? json_object_array_get_idx(cands, 0) : NULL;
    char reason[48];
    if (block && !c0) {
        token_copy(reason, sizeof reason, block);
        fail(s, AI_PERMANENT, "prompt blocked by the model (%s)", reason);
        return;
    }
    part_ctx_t pc = {s, delta};
    ai_gemini_parts(c0, add_part, &pc);
    const char *finish = ai_json_str(c0, "finishReason");
    if (!finish)
        return;
    token_copy(s->reason, sizeof s->reason, finish);
    s->finished = 1;
    int usable = strcmp(finish, "STOP") == 0 || strcmp(finish, "MAX_TOKENS") == 0 ||
                 strcmp(finish, "FINISH_REASON_UNSPECIFIED") == 0;
    if (!usable)
        fail(s, AI_PERMANENT, "model stopped without an answer (finishReason %s)", s->reason);
    else
        s->state = AI_STREAM_COMPLETE;
}

static void openai_chunk(ai_stream_t *s, json_object *root, buf_t *delta)
{
    json_object *choices = ai_json_get(root, "choices", json_type_array);
    json_object *c0 = choices && json_object_array_length(choices) > 0 ? json_object_array_get_idx(choices, 0) : NULL;
    json_object *d = ai_json_get(c0, "delta", json_type_object);
    json_object *content = ai_json_get(d, "content", json_type_string);
    if (content)
        add_text(s, json_object_get_string(content), (size_t)json_object_get_string_len(content), delta);
    if (ai_json_str(d, "refusal"))
        s->refused = 1;
    const char *finish = ai_json_str(c0, "finish_reason");
    if (!finish)
        return;
    /* The finish reason ends the answer: what may follow (a usage chunk, [DONE]) carries no text, and a server
     * that then keeps the connection open or resets it must not cost the answer. */
    token_copy(s->reason, sizeof s->reason, finish);
    s->finished = 1;
    if (strcmp(finish, "content_filter") == 0)
        fail(s, AI_PERMANENT, "model stopped without an answer (finish_reason %s)", s->reason);
    else
        s->state = AI_STREAM_COMPLETE;
}

/* The offset in d[0..n) of the first \u escape of a high surrogate that ends a JSON string (the escape's
 * backslash not itself escaped), with the code unit in *cu; -1 none. */
static long ending_high(const char *d, size_t n, unsigned *cu)
{
    for (size_t i = 0; i + 7 <= n; i++) {
        unsigned v;
        if (d[i] != '\\' || d[i + 1] != 'u' || d[i + 6] != '"' || hex4(d + i + 2, &v) != 0 || v < 0xD800 || v > 0xDBFF)
            continue;
        size_t bs = 0;
        while (bs < i && d[i - 1 - bs] == '\\')
            bs++;
        if (bs % 2 == 0) {
            *cu = v;
            return (long)i;
        }
    }
    return -1;
}

/* The offset in d[0..n) of the first \u escape of a low surrogate that starts a JSON value string (its quote
 * after ':', ',' or '['), with the code unit in *cu; -1 none. */
static long starting_low(const char *d, size_t n, unsigned *cu)
{
    for (size_t i = 1; i + 8 <= n; i++) {
        unsigned v;
        if (d[i] != '"' || d[i + 1] != '\\' || d[i + 2] != 'u' || hex4(d + i + 3, &v) != 0 || v < 0xDC00 || v > 0xDFFF)
            continue;
        size_t k = i;
        while (k > 0 && isspace((unsigned char)d[k - 1]))
            k--;
        if (k > 0 && (d[k - 1] == ':' || d[k - 1] == ',' || d[k - 1] == '[')) {
            *cu = v;
            return (long)i + 1;
        }
    }
    return -1;
}

/* A character some servers cut between two events as UTF-16 halves ("...\ud83d" then "\ude00..."), which
 * json-c would turn into two U+FFFD: the high half is taken out of the event that ends in it and put back,
 * paired, as UTF-8 into the next one's first value (or as U+FFFD when that does not start with the low half). */
static void pair_surrogates(ai_stream_t *s, buf_t *d, buf_t *delta)
{
    unsigned cu;
    long at;
    if (s->high) {
        if ((at = starting_low(d->data, d->len, &cu)) >= 0) {
            unsigned cp = 0x10000 + ((s->high - 0xD800) << 10) + (cu - 0xDC00);
            char u8[4] = {(char)(0xF0 | (cp >> 18)), (char)(0x80 | ((cp >> 12) & 0x3F)),
                          (char)(0x80 | ((cp >> 6) & 0x3F)), (char)(0x80 | (cp & 0x3F))};
            memcpy(d->data + at, u8, 4); /* 6 bytes of escape become 4 of UTF-8 */
            memmove(d->data + at + 4, d->data + at + 6, d->len - (size_t)at - 6);
            d->len -= 2;
        } else {
            add_text(s, "\xEF\xBF\xBD", 3, delta);
        }
        s->high = 0;
    }
    if ((at = ending_high(d->data, d->len, &cu)) >= 0) {
        memmove(d->data + at, d->data + at + 6, d->len - (size_t)at - 6);
        d->len -= 6;
        s->high = cu;
    }
    d->data[d->len] = '\0';
}

/* One complete event: its data lines joined in s->data. */
static void dispatch(ai_stream_t *s, buf_t *delta)
{
    const char *p = s->data.data ? s->data.data : "";
    size_t len = s->data.len;
    int had = s->has_data;
    s->has_data = 0;
    if (!had)
        return;
    while (len && isspace((unsigned char)*p))
        p++, len--;
    if (len == 0)
        goto out;
    if (s->provider == AI_PROVIDER_OPENAI && len >= 6 && strncmp(p, "[DONE]", 6) == 0) {
        s->finished = 1;
        s->state = AI_STREAM_COMPLETE;
        goto out;
    }
    size_t lead = (size_t)(p - s->data.data);
    pair_surrogates(s, &s->data, delta);
    p = s->data.data + lead;
    len = s->data.len - lead;
    json_tokener *tok = json_tokener_new();
    json_object *root = json_tokener_parse_ex(tok, p, (int)len);
    int bad =
        !root || json_tokener_get_error(tok) != json_tokener_success || !json_object_is_type(root, json_type_object);
    for (size_t end = root ? json_tokener_get_parse_end(tok) : len; !bad && end < len; end++)
        bad = !isspace((unsigned char)p[end]);
    json_tokener_free(tok);
    if (bad) {
        fail(s, AI_TRANSIENT, "malformed upstream stream chunk");
    } else {
        json_object *err = ai_json_get(root, "error", json_type_object);
        if (err)
            error_chunk(s, err, p, len);
        else if (s->provider == AI_PROVIDER_GEMINI)
            gemini_chunk(s, root, delta);
        else
            openai_chunk(s, root, delta);
    }
    json_object_put(root);
out:
    buf_reset(&s->data);
}

/* One complete line (without its end). */
static void line(ai_stream_t *s, const char *l, size_t n, buf_t *delta)
{
    if (n == 0) {
        dispatch(s, delta);
        return;
    }
    if (l[0] == ':')
        return; /* a comment */
    const char *colon = memchr(l, ':', n);
    size_t fl = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vl = colon ? n - fl - 1 : 0;
    if (vl && *v == ' ')
        v++, vl--;
    if (fl == 4 && memcmp(l, "data", 4) == 0) {
        if (s->has_data)
            buf_append(&s->data, "\n", 1);
        buf_append(&s->data, v, vl);
        s->has_data = 1;
    }
    /* event:, id:, retry: and unknown fields carry nothing we use */
}

int ai_stream_feed(ai_stream_t *s, const char *data, size_t len, buf_t *delta)
{
    if (s->state != AI_STREAM_MORE)
        return s->state;
    s->fed += len;
    if (s->fed > AI_MAX_RESPONSE_BYTES) {
        fail(s, AI_PERMANENT, "upstream response too large");
        return s->state;
    }
    size_t i = 0;
    while (i < len && s->state == AI_STREAM_MORE) {
        if (s->skip_lf) {
            s->skip_lf = 0;
            if (data[i] == '\n') {
                i++;
                continue;
            }
        }
        const char *end = NULL;
        for (size_t k = i; k < len; k++)
            if (data[k] == '\n' || data[k] == '\r') {
                end = data + k;
                break;
            }
        if (!end) {
            buf_append(&s->line, data + i, len - i);
            break;
        }
        size_t n = (size_t)(end - (data + i));
        s->skip_lf = *end == '\r';
        if (s->line.len) {
            buf_append(&s->line, data + i, n);
            line(s, s->line.data, s->line.len, delta);
            buf_reset(&s->line);
        } else {
            line(s, data + i, n, delta);
        }
        i += n + 1;
    }
    return s->state;
}

int ai_stream_state(const ai_stream_t *s)
{
    return s->state;
}

void ai_stream_finish(ai_stream_t *s, buf_t *delta, ai_result_t *r)
{
    memset(r, 0, sizeof *r);
    r->retry_after_ms = -1;
    if (s->state == AI_STREAM_MORE) { /* a last event without its blank line still counts */
        if (s->line.len) {
            line(s, s->line.data, s->line.len, delta);
            buf_reset(&s->line);
        }
        if (s->state == AI_STREAM_MORE)
            dispatch(s, delta);
    }
    if (s->state == AI_STREAM_FAILED) {
        *r = s->err;
        r->text = NULL; /* an error result has no text: nothing is shared with s */
        r->text_len = 0;
        return;
    }
    if (s->high) { /* a high surrogate the answer never paired */
        add_text(s, "\xEF\xBF\xBD", 3, delta);
        s->high = 0;
    }
    if (s->ncarry) { /* a character the answer never completed */
        size_t before = s->text.len;
        ai_text_sanitise(s->carry, s->ncarry, &s->text);
        if (delta)
            buf_append(delta, s->text.data + before, s->text.len - before);
        s->ncarry = 0;
    }
    r->http_status = 200;
    const char *reason = s->reason[0] ? s->reason : "none";
    if (!s->finished) {
        snprintf(r->error, sizeof r->error, "upstream stream ended early");
        r->status = AI_TRANSIENT;
    } else if (s->text.len == 0) {
        if (s->refused)
            snprintf(r->error, sizeof r->error, "model refused to answer");
        else
            snprintf(r->error, sizeof r->error, "model returned no text (%s %s)",
                     s->provider == AI_PROVIDER_GEMINI ? "finishReason" : "finish_reason", reason);
        r->status = AI_PERMANENT;
    } else {
        r->status = AI_OK;
        r->text = xstrndup(s->text.data, s->text.len);
        r->text_len = s->text.len;
        r->truncated = strcmp(reason, "MAX_TOKENS") == 0 || strcmp(reason, "length") == 0;
    }
}
