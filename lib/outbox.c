#include "outbox.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "db.h"
#include "keys.h"
#include "log.h"
#include "util.h"

static db_stmt_t q_outbox_add = DB_STMT("outbox_add",
                                        "INSERT INTO cache_invalidations (user_id) VALUES ($1) "
                                        "ON CONFLICT (user_id) DO UPDATE SET noted_at = clock_timestamp()",
                                        1);

/* Each row with the user's token version now (NULL: the user is gone). */
static db_stmt_t q_outbox_read =
    DB_STMT("outbox_read",
            "SELECT c.user_id, c.noted_at::text, u.token_version FROM cache_invalidations c "
            "LEFT JOIN users u ON u.id = c.user_id ORDER BY c.noted_at LIMIT $1",
            1);

static db_stmt_t q_outbox_done = DB_STMT("outbox_done",
                                         "DELETE FROM cache_invalidations c USING unnest($1::bigint[], "
                                         "$2::timestamptz[]) AS d(user_id, noted_at) "
                                         "WHERE c.user_id = d.user_id AND c.noted_at = d.noted_at",
                                         2);

/* Store a token version in the mirror, stamped with the epoch (mirror.h), only if it is newer than what the
 * mirror holds under that epoch (or holds nothing valid). Versions only grow, so whichever of two racing writers
 * (a reader mirroring what it read from PostgreSQL, a password change mirroring its new version, the outbox
 * replaying what PostgreSQL holds now) is older can never overwrite the newer; and the mirror is never deleted
 * (a deleted one would let a reader that read PostgreSQL before a change store the old version after it).
 * ARGV[1]: the epoch the reader saw before it read PostgreSQL (the store is refused when another is in force
 * now), or '' for a writer: the epoch in force, whichever. Returns 1 stored, 0 a newer one is there, -1 no
 * epoch to store under. */
static const char authv_raise_lua[] =
    "local e = redis.call('GET', KEYS[2]) "
    "if not e or (ARGV[1] ~= '' and e ~= ARGV[1]) then return -1 end "
    "local p = e .. '|' "
    "local v = redis.call('GET', KEYS[1]) local cur = nil "
    "if v and string.sub(v, 1, #p) == p then cur = tonumber(string.sub(v, #p + 1)) end "
    "if cur == nil or cur < tonumber(ARGV[2]) then "
    "redis.call('SET', KEYS[1], p .. ARGV[2], 'EX', ARGV[3]) return 1 end "
    "return 0";

/* One EVAL of authv_raise_lua, its arguments in its own buffers. */
typedef struct {
    char key[KEYS_USER_MAX], val[16], ttl[16];
    const char *argv[8];
    size_t lens[8];
} authv_cmd_t;

static void authv_cmd(long long user_id, int token_version, const char *epoch, authv_cmd_t *c)
{
    keys_authv(user_id, c->key);
    int n = snprintf(c->val, sizeof c->val, "%d", token_version);
    int m = snprintf(c->ttl, sizeof c->ttl, "%d", KEYS_AUTHV_TTL);
    const char *argv[] = {"EVAL", authv_raise_lua, "2", c->key, KEYS_EPOCH, epoch ? epoch : "", c->val, c->ttl};
    size_t lens[] = {4,
                     sizeof authv_raise_lua - 1,
                     1,
                     strlen(c->key),
                     strlen(KEYS_EPOCH),
                     epoch ? strlen(epoch) : 0,
                     (size_t)n,
                     (size_t)m};
    memcpy(c->argv, argv, sizeof argv);
    memcpy(c->lens, lens, sizeof lens);
}

int outbox_authv_raise(long long user_id, int token_version, const char *epoch)
{
    authv_cmd_t c;
    authv_cmd(user_id, token_version, epoch, &c);
    redisReply *r = cache_cmd(8, c.argv, c.lens);
    int rc = r && r->type == REDIS_REPLY_INTEGER ? (int)r->integer : -2;
    if (r && r->type == REDIS_REPLY_ERROR)
        log_warn("redis: token version mirror refused: %.*s", (int)(r->len < 200 ? r->len : 200), r->str);
    freeReplyObject(r);
    return rc < -1 ? -1 : rc;
}

#define PENDING_MAX 32        /* this process's own lost invalidations (the outbox has them all anyway) */
#define PENDING_RETRY_MS 1000 /* while Redis stays down, retry them at most this often */

static long long pending[PENDING_MAX];
static int npending;
static double pending_retry_at;

int outbox_tombstone(char tomb[OUTBOX_TOMB_SIZE])
{
    tomb[0] = '~';
    return random_hex(tomb + 1, (OUTBOX_TOMB_SIZE - 2) / 2);
}

/* The argv of SET chatrooms:<uid> <tomb> EX KEYS_CHATROOMS_TTL (me: SET me:<uid> ..., the cached GET /user/me,
 * which a change of the user invalidates too); key and ttl are the caller's buffers. */
static void tomb_argv_of(int me, long long user_id, const char *tomb, char key[KEYS_USER_MAX], char ttl[16],
                         const char *argv[5], size_t lens[5])
{
    int n = snprintf(ttl, 16, "%d", KEYS_CHATROOMS_TTL);

    if (me)
        keys_me(user_id, key);
    else
        keys_chatrooms(user_id, key);
    argv[0] = "SET", argv[1] = key, argv[2] = tomb, argv[3] = "EX", argv[4] = ttl;
    lens[0] = 3, lens[1] = strlen(key), lens[2] = strlen(tomb), lens[3] = 2, lens[4] = (size_t)n;
}

static void tomb_argv(long long user_id, const char *tomb, char key[KEYS_USER_MAX], char ttl[16], const char *argv[5],
                      size_t lens[5])
{
    tomb_argv_of(0, user_id, tomb, key, ttl, argv, lens);
}

/* Replace user_id's cached list, and with with_me its cached user (me:<uid>) too, by a new tombstone (returned
 * in tomb_out when not NULL), in one round trip. 0 written, -1 Redis down or refusing. */
static int tomb_write(long long user_id, int with_me, char *tomb_out)
{
    char key[2][KEYS_USER_MAX], ttl[2][16], tomb[OUTBOX_TOMB_SIZE];
    const char *argv[2][5], **argvp[2] = {argv[0], argv[1]};
    size_t lens[2][5];
    const size_t *lensp[2] = {lens[0], lens[1]};
    int argc[2] = {5, 5}, n = with_me ? 2 : 1;
    redisReply *r[2] = {NULL, NULL};
    int rc;

    if (outbox_tombstone(tomb) != 0) {
        /* Without a unique tombstone fall back to DEL (still right unless a reader races this one). */
        keys_chatrooms(user_id, key[0]);
        keys_me(user_id, key[1]);
        if (tomb_out)
            tomb_out[0] = '\0';
        if (cache_del(key[0]) != 0 || (with_me && cache_del(key[1]) != 0))
            return -1;
        cache_note_invalidation();
        return 0;
    }
    for (int i = 0; i < n; i++)
        tomb_argv_of(i, user_id, tomb, key[i], ttl[i], argv[i], lens[i]);
    rc = cache_pipeline(n, argc, argvp, lensp, r) == 0 && r[0]->type == REDIS_REPLY_STATUS &&
                 (n == 1 || r[1]->type == REDIS_REPLY_STATUS)
             ? 0
             : -1;
    if (r[0] && rc != 0)
        log_warn("outbox: SET %s refused", key[0]);
    freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    if (rc == 0 && tomb_out)
        memcpy(tomb_out, tomb, OUTBOX_TOMB_SIZE);
    if (rc == 0)
        cache_note_invalidation();
    return rc;
}

static int pending_find(long long user_id)
{
    for (int i = 0; i < npending; i++)
        if (pending[i] == user_id)
            return i;
    return -1;
}

static void pending_drop(int i)
{
    pending[i] = pending[--npending];
}

static void pending_add(long long user_id)
{
    if (pending_find(user_id) >= 0)
        return;
    if (npending == PENDING_MAX)
        pending_drop(0); /* the outbox still has it; the worker replays it */
    pending[npending++] = user_id;
    pending_retry_at = now_ms() + PENDING_RETRY_MS;
}

int outbox_retry(long long self, char self_tomb[OUTBOX_TOMB_SIZE])
{
    int me = pending_find(self), rc = 0;

    if (npending == 0 || (me < 0 && now_ms() < pending_retry_at))
        return 0;
    if (me >= 0) {
        if (tomb_write(self, 1, self_tomb) != 0) {
            pending_retry_at = now_ms() + PENDING_RETRY_MS;
            return -1;
        }
        pending_drop(me);
        rc = 1;
    }
    for (int i = npending - 1; i >= 0; i--) {
        if (tomb_write(pending[i], 1, NULL) != 0) {
            pending_retry_at = now_ms() + PENDING_RETRY_MS; /* Redis still down: the rest waits */
            break;
        }
        pending_drop(i);
    }
    return rc;
}

void outbox_note(long long user_id)
{
    char uid[24];

    snprintf(uid, sizeof uid, "%lld", user_id);
    const char *params[] = {uid};
    PGresult *res = db_query(&q_outbox_add, params);
    if (res)
        log_warn("cache: the Redis state of user %lld could not be updated (Redis down); recorded for replay", user_id);
    else
        log_error("cache: the Redis state of user %lld could not be updated: Redis down and the outbox insert "
                  "failed (sqlstate %s); it may stay stale until its TTL",
                  user_id, db_sqlstate());
    PQclear(res);
}

static void invalidate(long long user_id, int with_me)
{
    int i;

    outbox_retry(0, NULL);
    if (tomb_write(user_id, with_me, NULL) == 0) {
        if ((i = pending_find(user_id)) >= 0)
            pending_drop(i); /* this tombstone covers the older change too */
        return;
    }
    pending_add(user_id);
    outbox_note(user_id);
}

void outbox_invalidate_list(long long user_id)
{
    invalidate(user_id, 0);
}

void outbox_invalidate_user(long long user_id)
{
    invalidate(user_id, 1);
}

int outbox_drain(int max)
{
    PGresult *res = NULL;
    char lim[24];
    int n, rc = OUTBOX_DB_FAILED, done = 0;
    buf_t ids = {0}, stamps = {0};

    snprintf(lim, sizeof lim, "%d", max > 0 ? max : 1);
    const char *params[] = {lim};
    res = db_query(&q_outbox_read, params);
    if (!res)
        goto out;
    n = PQntuples(res);
    if (n == 0) {
        rc = 0;
        goto out;
    }

    /* One pipelined round trip: for row i, command 3i writes the list's tombstone, 3i+1 raises the token
     * version mirror to the version PostgreSQL holds now (auth_token_version_changed records its lost writes
     * here too; a user who is gone gets OUTBOX_AUTHV_GONE, which no token carries) and 3i+2 writes the cached
     * user's tombstone. The argument buffers of row i live in cmds[i]. */
    struct tomb_cmd {
        char key[KEYS_USER_MAX], ttl[16], tomb[OUTBOX_TOMB_SIZE];
        char me_key[KEYS_USER_MAX], me_ttl[16];
        const char *argv[5], *me_argv[5];
        size_t lens[5], me_lens[5];
        authv_cmd_t authv;
    } *cmds = xcalloc((size_t)n, sizeof *cmds);
    int *argc = xcalloc(3 * (size_t)n, sizeof *argc);
    const char ***argv = xcalloc(3 * (size_t)n, sizeof *argv);
    const size_t **lens = xcalloc(3 * (size_t)n, sizeof *lens);
    redisReply **replies = xcalloc(3 * (size_t)n, sizeof *replies);
    long long *uids = xcalloc((size_t)n, sizeof *uids);
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        struct tomb_cmd *c = &cmds[i];
        if (parse_ll(PQgetvalue(res, i, 0), 1, LLONG_MAX, &uids[i]) != 0 || outbox_tombstone(c->tomb) != 0) {
            ok = 0;
            break;
        }
        long long tv = OUTBOX_AUTHV_GONE;
        if (!PQgetisnull(res, i, 2))
            parse_ll(PQgetvalue(res, i, 2), 0, OUTBOX_AUTHV_GONE, &tv); /* a database integer: well-formed */
        tomb_argv(uids[i], c->tomb, c->key, c->ttl, c->argv, c->lens);
        authv_cmd(uids[i], (int)tv, NULL, &c->authv);
        tomb_argv_of(1, uids[i], c->tomb, c->me_key, c->me_ttl, c->me_argv, c->me_lens);
        argc[3 * i] = 5, argv[3 * i] = c->argv, lens[3 * i] = c->lens;
        argc[3 * i + 1] = 8, argv[3 * i + 1] = c->authv.argv, lens[3 * i + 1] = c->authv.lens;
        argc[3 * i + 2] = 5, argv[3 * i + 2] = c->me_argv, lens[3 * i + 2] = c->me_lens;
    }
    if (!ok) {
        log_error("outbox: cannot replay lost invalidations (bad row or no randomness)");
        rc = OUTBOX_REDIS_DOWN;
    } else if (cache_pipeline(3 * n, argc, argv, lens, replies) != 0) {
        rc = OUTBOX_REDIS_DOWN; /* the rows stay for the next drain */
    } else {
        buf_puts(&ids, "{");
        buf_puts(&stamps, "{");
        for (int i = 0; i < n; i++) {
            if (replies[3 * i]->type != REDIS_REPLY_STATUS || replies[3 * i + 1]->type != REDIS_REPLY_INTEGER ||
                replies[3 * i + 2]->type != REDIS_REPLY_STATUS)
                continue;
            buf_printf(&ids, "%s%lld", done ? "," : "", uids[i]);
            buf_printf(&stamps, "%s\"%s\"", done ? "," : "", PQgetvalue(res, i, 1));
            done++;
        }
        buf_puts(&ids, "}");
        buf_puts(&stamps, "}");
        rc = done == n ? 0 : OUTBOX_REDIS_DOWN;
        cache_note_invalidation();
        cache_settle(); /* the local copies are gone everywhere before the rows are */
    }
    for (int i = 0; i < 3 * n; i++)
        freeReplyObject(replies[i]);
    free(cmds);
    free(argc);
    free(argv);
    free(lens);
    free(replies);
    free(uids);
    PQclear(res);
    res = NULL;
    if (done > 0) {
        const char *dp[] = {ids.data, stamps.data};
        res = db_query(&q_outbox_done, dp);
        if (!res)
            rc = OUTBOX_DB_FAILED; /* replayed; the rows go at the next drain (one more tombstone) */
        else if (rc == 0)
            rc = done;
    }
out:
    PQclear(res);
    buf_free(&ids);
    buf_free(&stamps);
    return rc;
}
