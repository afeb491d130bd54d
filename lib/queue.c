#include "queue.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "log.h"
#include "util.h"

int queue_enqueue(long long reply_id)
{
    char id[24];
    int n = snprintf(id, sizeof id, "%lld", reply_id);
    const char *argv[] = {"XADD", QUEUE_STREAM, "MAXLEN", "~", QUEUE_MAXLEN, "*", "reply_id", id};
    size_t lens[] = {4, strlen(QUEUE_STREAM), 6, 1, strlen(QUEUE_MAXLEN), 1, 8, (size_t)n};
    redisReply *r = cache_cmd(8, argv, lens);
    int rc = (r && r->type == REDIS_REPLY_STRING) ? 0 : -1;
    freeReplyObject(r);
    return rc;
}

/* ---- consumer side ---- */

static int is_error(const redisReply *r, const char *prefix)
{
    return r && r->type == REDIS_REPLY_ERROR && r->str && strncmp(r->str, prefix, strlen(prefix)) == 0;
}

int queue_group_create(void)
{
    const char *argv[] = {"XGROUP", "CREATE", QUEUE_STREAM, QUEUE_GROUP, "0", "MKSTREAM"};
    size_t lens[] = {6, 6, strlen(QUEUE_STREAM), strlen(QUEUE_GROUP), 1, 8};
    redisReply *r = cache_cmd(6, argv, lens);
    int rc = r && (r->type == REDIS_REPLY_STATUS || is_error(r, "BUSYGROUP")) ? 0 : -1;
    if (r && rc != 0)
        log_warn("queue: XGROUP CREATE refused: %.120s", r->str ? r->str : "?");
    freeReplyObject(r);
    return rc;
}

static long long parse_reply_id(const redisReply *fields)
{
    if (!fields || fields->type != REDIS_REPLY_ARRAY)
        return 0;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (!k || !v || k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (k->len != 8 || memcmp(k->str, "reply_id", 8) != 0)
            continue;
        char num[24];
        long long id;
        if (v->len == 0 || v->len >= sizeof num)
            return 0;
        memcpy(num, v->str, v->len);
        num[v->len] = '\0';
        return parse_ll(num, 1, INT64_MAX, &id) == 0 ? id : 0;
    }
    return 0;
}

int queue_parse_entries(const redisReply *entries, int max, queue_entry_t *out)
{
    int n = 0;
    if (!entries || entries->type != REDIS_REPLY_ARRAY)
        return 0;
    for (size_t i = 0; i < entries->elements && n < max; i++) {
        const redisReply *e = entries->element[i];
        if (!e || e->type != REDIS_REPLY_ARRAY || e->elements < 2)
            continue;
        const redisReply *id = e->element[0], *fields = e->element[1];
        if (!id || id->type != REDIS_REPLY_STRING || id->len == 0 || id->len >= QUEUE_ID_MAX)
            continue;
        if (!fields || fields->type != REDIS_REPLY_ARRAY) /* deleted while pending: nothing to do */
            continue;
        memcpy(out[n].id, id->str, id->len);
        out[n].id[id->len] = '\0';
        out[n].reply_id = parse_reply_id(fields);
        n++;
    }
    return n;
}

int queue_read(const char *consumer, int max, long block_ms, queue_entry_t *out)
{
    char count[16], block[24];
    snprintf(count, sizeof count, "%d", max > 0 ? max : 1);
    snprintf(block, sizeof block, "%ld", block_ms);
    const char *argv[11] = {"XREADGROUP", "GROUP", QUEUE_GROUP, consumer, "COUNT", count};
    int argc = 6;
    if (block_ms > 0) {
        argv[argc++] = "BLOCK";
        argv[argc++] = block;
    }
    argv[argc++] = "STREAMS";
    argv[argc++] = QUEUE_STREAM;
    argv[argc++] = ">";
    size_t lens[11];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = cache_cmd(argc, argv, lens);
    int n = -1;
    if (!r)
        goto out;
    /* UNBLOCKED: the stream was deleted (FLUSHALL) while we waited in BLOCK */
    if (is_error(r, "NOGROUP") || is_error(r, "UNBLOCKED")) {
        n = QUEUE_NOGROUP;
        goto out;
    }
    if (r->type == REDIS_REPLY_NIL) {
        n = 0;
        goto out;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        log_warn("queue: XREADGROUP: unexpected reply: %.120s", r->type == REDIS_REPLY_ERROR ? r->str : "?");
        goto out;
    }
    n = 0;
    /* [[stream, [entries...]]] */
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *s = r->element[i];
        if (s && s->type == REDIS_REPLY_ARRAY && s->elements == 2)
            n += queue_parse_entries(s->element[1], max - n, out + n);
    }
out:
    freeReplyObject(r);
    return n;
}

int queue_claim_stale(const char *consumer, long min_idle_ms, char cursor[QUEUE_ID_MAX], int max, queue_entry_t *out)
{
    char idle[24], count[16];
    snprintf(idle, sizeof idle, "%ld", min_idle_ms > 0 ? min_idle_ms : 0);
    snprintf(count, sizeof count, "%d", max > 0 ? max : 1);
    if (!cursor[0])
        snprintf(cursor, QUEUE_ID_MAX, "0-0");
    const char *argv[] = {"XAUTOCLAIM", QUEUE_STREAM, QUEUE_GROUP, consumer, idle, cursor, "COUNT", count};
    size_t lens[8];
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = cache_cmd(8, argv, lens);
    int n = -1;
    if (!r)
        goto out;
    if (is_error(r, "NOGROUP")) {
        n = QUEUE_NOGROUP;
        snprintf(cursor, QUEUE_ID_MAX, "0-0");
        goto out;
    }
    /* Redis 7: [next-cursor, [entries...], [deleted ids...]] */
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || !r->element[0] ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= QUEUE_ID_MAX) {
        log_warn("queue: XAUTOCLAIM: unexpected reply (type %d)", r->type);
        goto out;
    }
    memcpy(cursor, r->element[0]->str, r->element[0]->len);
    cursor[r->element[0]->len] = '\0';
    n = queue_parse_entries(r->element[1], max, out);
out:
    freeReplyObject(r);
    return n;
}

int queue_ack(const char *const *ids, int n)
{
    if (n <= 0)
        return 0;
    int rc = -1;
    const char **ack = xcalloc((size_t)n + 3, sizeof *ack);
    const char **del = xcalloc((size_t)n + 2, sizeof *del);
    size_t *ack_len = xcalloc((size_t)n + 3, sizeof *ack_len);
    size_t *del_len = xcalloc((size_t)n + 2, sizeof *del_len);
    ack[0] = "XACK", ack[1] = QUEUE_STREAM, ack[2] = QUEUE_GROUP;
    del[0] = "XDEL", del[1] = QUEUE_STREAM;
    for (int i = 0; i < n; i++)
        ack[i + 3] = del[i + 2] = ids[i];
    for (int i = 0; i < n + 3; i++)
        ack_len[i] = strlen(ack[i]);
    for (int i = 0; i < n + 2; i++)
        del_len[i] = strlen(del[i]);
    int argc[2] = {n + 3, n + 2};
    const char **argv[2] = {ack, del};
    const size_t *argvlen[2] = {ack_len, del_len};
    redisReply *replies[2] = {NULL, NULL};
    if (cache_pipeline(2, argc, argv, argvlen, replies) != 0)
        goto out;
    /* NOGROUP after a flush: nothing left to ack, which is fine */
    rc = replies[0]->type == REDIS_REPLY_INTEGER || is_error(replies[0], "NOGROUP") ? 0 : -1;
out:
    for (int i = 0; i < 2; i++)
        if (replies[i])
            freeReplyObject(replies[i]);
    free(ack);
    free(del);
    free(ack_len);
    free(del_len);
    return rc;
}

int queue_consumer_delete(const char *consumer)
{
    const char *pargv[] = {"XPENDING", QUEUE_STREAM, QUEUE_GROUP, "-", "+", "1", consumer};
    size_t plens[] = {8, strlen(QUEUE_STREAM), strlen(QUEUE_GROUP), 1, 1, 1, strlen(consumer)};
    redisReply *p = cache_cmd(7, pargv, plens);
    if (!p)
        return -1;
    int pending = p->type != REDIS_REPLY_ARRAY || p->elements > 0;
    if (is_error(p, "NOGROUP"))
        pending = 0;
    freeReplyObject(p);
    if (pending)
        return 1;
    const char *argv[] = {"XGROUP", "DELCONSUMER", QUEUE_STREAM, QUEUE_GROUP, consumer};
    size_t lens[] = {6, 11, strlen(QUEUE_STREAM), strlen(QUEUE_GROUP), strlen(consumer)};
    redisReply *r = cache_cmd(5, argv, lens);
    int rc = r && (r->type == REDIS_REPLY_INTEGER || is_error(r, "NOGROUP")) ? 0 : -1;
    freeReplyObject(r);
    return rc;
}

/* The value of field name in a flat [name, value, ...] array, or NULL. */
static const redisReply *field(const redisReply *map, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + 1 < map->elements; i += 2) {
        const redisReply *k = map->element[i];
        if (k && k->type == REDIS_REPLY_STRING && k->len == nl && memcmp(k->str, name, nl) == 0)
            return map->element[i + 1];
    }
    return NULL;
}

int queue_select_dead_consumers(const redisReply *xinfo, const char *self, long long min_idle_ms, const char **names,
                                int max)
{
    int n = 0;
    if (!xinfo || xinfo->type != REDIS_REPLY_ARRAY)
        return 0;
    for (size_t i = 0; i < xinfo->elements && n < max; i++) {
        const redisReply *c = xinfo->element[i];
        if (!c || c->type != REDIS_REPLY_ARRAY)
            continue;
        const redisReply *name = field(c, "name"), *pending = field(c, "pending"), *idle = field(c, "idle");
        if (!name || name->type != REDIS_REPLY_STRING || !name->str || name->len == 0 ||
            strlen(name->str) != name->len || !pending || pending->type != REDIS_REPLY_INTEGER || !idle ||
            idle->type != REDIS_REPLY_INTEGER)
            continue;
        if (pending->integer != 0 || idle->integer <= min_idle_ms || (self && strcmp(name->str, self) == 0))
            continue;
        names[n++] = name->str;
    }
    return n;
}

#define REAP_MAX 256 /* consumers deleted per call; the next housekeeping round takes the rest */

int queue_reap_consumers(const char *self, long long min_idle_ms)
{
    const char *argv[] = {"XINFO", "CONSUMERS", QUEUE_STREAM, QUEUE_GROUP};
    size_t lens[] = {5, 9, strlen(QUEUE_STREAM), strlen(QUEUE_GROUP)};
    redisReply *r = cache_cmd(4, argv, lens);
    const char *names[REAP_MAX];
    int n, deleted = 0;

    if (!r)
        return -1;
    if (is_error(r, "NOGROUP") || is_error(r, "ERR no such key")) {
        freeReplyObject(r);
        return QUEUE_NOGROUP;
    }
    n = queue_select_dead_consumers(r, self, min_idle_ms, names, REAP_MAX);
    for (int i = 0; i < n; i++) {
        int rc = queue_consumer_delete(names[i]);
        if (rc < 0) {
            deleted = deleted ? deleted : -1;
            break;
        }
        if (rc == 0) {
            log_info("queue: deleted consumer %.100s (idle over %lld s, nothing pending)", names[i],
                     min_idle_ms / 1000);
            deleted++;
        }
    }
    freeReplyObject(r);
    return deleted;
}
