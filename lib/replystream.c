#include "replystream.h"

#include <hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "util.h"

/* KEYS[1] the stream, ARGV[1] the TTL in seconds, ARGV[2] "1": always, "0": only when the stream has entries,
 * ARGV[3] a first delta ("" none). Append restart and drop everything before it (XTRIM MINID keeps the stream's
 * last id, so ids stay increasing for readers blocked on an older one), then the delta. */
static const char restart_lua[] =
    "if ARGV[2] == '0' and redis.call('EXISTS', KEYS[1]) == 0 then return false end "
    "local id = redis.call('XADD', KEYS[1], '*', 'e', 'restart') "
    "redis.call('XTRIM', KEYS[1], 'MINID', id) "
    "if ARGV[3] ~= '' then redis.call('XADD', KEYS[1], '*', 'e', 'delta', 't', ARGV[3]) end "
    "redis.call('EXPIRE', KEYS[1], ARGV[1]) return id";

static void ttl_str(char out[24])
{
    snprintf(out, 24, "%d", KEYS_REPLY_EVENTS_TTL);
}

static int restart(long long reply_id, int always, const char *text, size_t len)
{
    char key[KEYS_USER_MAX], ttl[24];
    keys_reply_events(reply_id, key);
    ttl_str(ttl);
    const char *argv[] = {"EVAL", restart_lua, "1", key, ttl, always ? "1" : "0", len ? text : ""};
    size_t lens[] = {4, sizeof restart_lua - 1, 1, strlen(key), strlen(ttl), 1, len};
    redisReply *r = cache_cmd(7, argv, lens);
    int rc = r && r->type != REDIS_REPLY_ERROR ? 0 : -1;
    if (r)
        freeReplyObject(r);
    return rc;
}

int replystream_begin(long long reply_id, int retry)
{
    return restart(reply_id, retry, NULL, 0);
}

int replystream_resume(long long reply_id, const char *text, size_t len)
{
    return restart(reply_id, 1, text, len);
}

/* XADD key * e <event> [t <text>] and EXPIRE in one round trip. */
static int append(long long reply_id, const char *event, const char *text, size_t len)
{
    char key[KEYS_USER_MAX], ttl[24];
    keys_reply_events(reply_id, key);
    ttl_str(ttl);
    const char *xadd[] = {"XADD", key, "*", "e", event, "t", text};
    size_t xlens[] = {4, strlen(key), 1, 1, strlen(event), 1, len};
    const char *exp[] = {"EXPIRE", key, ttl};
    size_t elens[] = {6, strlen(key), strlen(ttl)};
    int argc[] = {text ? 7 : 5, 3};
    const char **argv[] = {xadd, exp};
    const size_t *lens[] = {xlens, elens};
    redisReply *replies[2];
    if (cache_pipeline(2, argc, argv, lens, replies) != 0)
        return -1;
    int rc = replies[0]->type == REDIS_REPLY_STRING ? 0 : -1;
    freeReplyObject(replies[0]);
    freeReplyObject(replies[1]);
    return rc;
}

int replystream_delta(long long reply_id, const char *text, size_t len)
{
    if (len == 0)
        return 0;
    return append(reply_id, "delta", text, len);
}

int replystream_end(long long reply_id, int ok)
{
    return append(reply_id, ok ? "done" : "error", NULL, 0);
}

const char *replystream_type_name(enum replystream_type t)
{
    switch (t) {
    case REPLYSTREAM_DELTA: return "delta";
    case REPLYSTREAM_RESTART: return "restart";
    case REPLYSTREAM_DONE: return "done";
    case REPLYSTREAM_ERROR: return "error";
    default: return "";
    }
}

static enum replystream_type type_of(const char *s, size_t n)
{
    for (int t = REPLYSTREAM_DELTA; t <= REPLYSTREAM_ERROR; t++) {
        const char *name = replystream_type_name((enum replystream_type)t);
        if (strlen(name) == n && memcmp(name, s, n) == 0)
            return (enum replystream_type)t;
    }
    return REPLYSTREAM_UNKNOWN;
}

int replystream_parse_entry(const redisReply *entry, replystream_event_t *ev)
{
    memset(ev, 0, sizeof *ev);
    if (!entry || entry->type != REDIS_REPLY_ARRAY || entry->elements != 2)
        return -1;
    const redisReply *id = entry->element[0], *fields = entry->element[1];
    if (!id || id->type != REDIS_REPLY_STRING || !fields || fields->type != REDIS_REPLY_ARRAY)
        return -1;
    ev->id = id->str;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *f = fields->element[i], *v = fields->element[i + 1];
        if (!f || !v || f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || f->len != 1)
            continue;
        if (f->str[0] == 'e')
            ev->type = type_of(v->str, v->len);
        else if (f->str[0] == 't') {
            ev->text = v->str;
            ev->len = v->len;
        }
    }
    if (ev->type != REPLYSTREAM_DELTA) {
        ev->text = NULL;
        ev->len = 0;
    } else if (!ev->text) {
        ev->text = "";
    }
    return 0;
}

int replystream_range(long long reply_id, const char *after, long max, redisReply **out)
{
    char key[KEYS_USER_MAX], start[REPLYSTREAM_ID_MAX + 2], count[24];
    *out = NULL;
    keys_reply_events(reply_id, key);
    if (after && *after)
        snprintf(start, sizeof start, "(%s", after);
    else
        snprintf(start, sizeof start, "-");
    snprintf(count, sizeof count, "%ld", max);
    const char *argv[] = {"XRANGE", key, start, "+", "COUNT", count};
    size_t lens[] = {6, strlen(key), strlen(start), 1, 5, strlen(count)};
    redisReply *r = cache_cmd(6, argv, lens);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    *out = r;
    return 0;
}

int replystream_id_parse(const char *s, unsigned long long *ms, unsigned long long *seq)
{
    unsigned long long v[2] = {0, 0};
    if (!s)
        return -1;
    for (int part = 0; part < 2; part++) {
        int digits = 0;
        while (*s >= '0' && *s <= '9') {
            if (digits >= 19)
                return -1;
            v[part] = v[part] * 10 + (unsigned long long)(*s++ - '0');
            digits++;
        }
        if (!digits)
            return -1;
        if (part == 0 && *s++ != '-')
            return -1;
    }
    if (*s)
        return -1;
    *ms = v[0];
    *seq = v[1];
    return 0;
}

int replystream_id_cmp(const char *a, const char *b)
{
    unsigned long long am = 0, as = 0, bm = 0, bs = 0;
    if (replystream_id_parse(a, &am, &as) != 0)
        am = as = 0;
    if (replystream_id_parse(b, &bm, &bs) != 0)
        bm = bs = 0;
    if (am != bm)
        return am < bm ? -1 : 1;
    if (as != bs)
        return as < bs ? -1 : 1;
    return 0;
}
