#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "config.h"
#include "db.h"
#include "keys.h"
#include "log.h"
#include "mirror.h"
#include "outbox.h"
#include "token.h"
#include "util.h"

static void unauthorized(http_req_t *req, const char *message, int invalid_token)
{
    http_set_header(req, "WWW-Authenticate", invalid_token ? "Bearer error=\"invalid_token\"" : "Bearer");
    http_error(req, 401, "unauthorized", message);
}

/* outbox_authv_raise; every process's local copy of the older value goes before the client hears. 0 stored or a
 * newer one is there, -1 Redis down or no epoch to store under. */
static int authv_raise(long long uid, int token_version, const char *epoch)
{
    int rc = outbox_authv_raise(uid, token_version, epoch);
    if (rc == 1)
        cache_note_invalidation();
    return rc < 0 ? -1 : 0;
}

void auth_token_version_changed(long long user_id, int token_version)
{
    /* The write did not reach Redis: the mirror may still hold the old version (a Redis that refuses writes
     * but serves reads, or one that comes back with its data). Reads refuse it: Redis refuses them as it
     * refuses writes, and once the local copies read before have aged out (cache_wait_out_copies) the old
     * token is refused everywhere. The outbox has the worker raise it to what PostgreSQL holds as soon as
     * Redis takes writes again. */
    if (authv_raise(user_id, token_version, NULL) != 0) {
        outbox_note(user_id);
        cache_wait_out_copies();
    } else
        cache_note_invalidation(); /* every process's local copy goes before the client hears of it */
}

/* The user's current token version from PostgreSQL, mirrored into Redis. 0 ok, 1 no such user, -1 down. */
static int token_version_from_db(long long uid, int *tv)
{
    static db_stmt_t q = DB_STMT("auth_token_version", "SELECT token_version FROM users WHERE id = $1", 1);
    char id[24];
    snprintf(id, sizeof id, "%lld", uid);
    const char *params[] = {id};
    PGresult *res = db_query(&q, params);
    if (!res)
        return -1;
    int rc = 1;
    if (PQntuples(res) == 1) {
        *tv = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10); /* a database integer: well-formed */
        rc = 0;
    }
    PQclear(res);
    if (rc == 0 && mirror_epoch())
        authv_raise(uid, *tv, mirror_epoch()); /* best effort: the next request reads PostgreSQL again */
    return rc;
}

/* Shared body of the two gates. key_prefix may be NULL (no cached document wanted). */
static int require(http_req_t *req, const char *key_prefix, char **val, size_t *len)
{
    token_claims_t c;
    const char *hdr = http_header(req, "Authorization");
    if (val)
        *val = NULL;
    if (!hdr) {
        unauthorized(req, "Missing bearer token.", 0);
        return -1;
    }
    const char *tok = token_from_header(hdr);
    if (!tok ||
        token_verify((const unsigned char *)g_config.jwt_secret, g_config.jwt_secret_len, tok, time(NULL), &c) != 0) {
        unauthorized(req, "The token is malformed, expired or invalid.", 1);
        return -1;
    }

    /* One Redis command, or none when the process holds valid local copies (cache_local.h): the token version
     * mirror, for cached reads the cached document, and the epoch that says whether either may be trusted
     * (mirror.h). */
    char key[KEYS_USER_MAX], doc[128];
    keys_authv(c.user_id, key);
    const char *cache_key = NULL;
    if (key_prefix) {
        int n = snprintf(doc, sizeof doc, "%s%lld", key_prefix, c.user_id);
        cache_key = n > 0 && (size_t)n < sizeof doc ? doc : NULL;
    }
    const char *keys[] = {key, cache_key ? cache_key : KEYS_EPOCH, KEYS_EPOCH};
    char *v[3] = {NULL, NULL, NULL};
    size_t vl[3] = {0, 0, 0};
    int nkeys = cache_key ? 3 : 2, current = -1, known = 0;
    mirror_reset();
    if (cache_mget(nkeys, keys, v, vl) == 0) {
        const char *payload;
        size_t plen;
        long long n;
        char num[16];
        mirror_observe(v[nkeys - 1], vl[nkeys - 1]);
        if (v[0] && mirror_unwrap(v[0], vl[0], &payload, &plen) && plen > 0 && plen < sizeof num) {
            memcpy(num, payload, plen);
            num[plen] = '\0';
            if (parse_ll(num, 0, 2147483647, &n) == 0) {
                current = (int)n;
                known = 1;
            }
        }
        if (cache_key && v[1] && val) {
            *val = v[1]; /* handed over */
            v[1] = NULL;
            if (len)
                *len = vl[1];
        }
    }
    for (int i = 0; i < nkeys; i++)
        free(v[i]);

    /* A token newer than the mirror means the mirror is behind (a password change whose Redis write failed):
     * PostgreSQL decides. An older one is revoked. */
    if (!known || c.token_version > current) {
        int rc = token_version_from_db(c.user_id, &current);
        if (rc < 0) {
            http_unavailable(req);
            goto fail;
        }
        if (rc > 0) {
            unauthorized(req, "The token's user no longer exists.", 1);
            goto fail;
        }
    }
    if (current != c.token_version) {
        unauthorized(req, "The token has been revoked.", 1);
        goto fail;
    }
    req->user_id = c.user_id;
    log_set_context(req->request_id, c.user_id); /* every later line of the request names the user */
    req->token_version = c.token_version;
    req->token_iat = c.iat;
    return 0;
fail:
    if (val) {
        free(*val);
        *val = NULL;
    }
    return -1;
}

int auth_require(http_req_t *req)
{
    return require(req, NULL, NULL, NULL);
}

int auth_require_cached(http_req_t *req, const char *key_prefix, char **val, size_t *len)
{
    return require(req, key_prefix, val, len);
}

int auth_user_gone(http_req_t *req)
{
    static db_stmt_t q = DB_STMT("auth_user_exists", "SELECT 1 FROM users WHERE id = $1", 1);
    char id[24];
    snprintf(id, sizeof id, "%lld", req->user_id);
    const char *params[] = {id};
    PGresult *res = db_query(&q, params);
    int gone = 1;
    if (!res)
        http_unavailable(req); /* a failed SELECT 1 by primary key: PostgreSQL is not answering */
    else if (PQntuples(res) == 1)
        gone = 0;
    else
        unauthorized(req, "The token's user no longer exists.", 1);
    PQclear(res);
    return gone;
}
