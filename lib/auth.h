/* auth: the authentication of a request (the bearer-token gate shared by every authenticated endpoint) and
 * the Redis mirror of users.token_version that makes revocation cheap to check. Account flows (signup, login,
 * passwords) are account.h's. */
#ifndef GB_AUTH_H
#define GB_AUTH_H

#include <stddef.h>

#include "http.h"

/* Verify "Authorization: Bearer <jwt>" and that the token is not revoked (its tv equals the user's current
 * token_version: Redis key "authv:<uid>" (keys.h), falling back to PostgreSQL). On success sets req->user_id
 * and req->token_version and returns 0. Otherwise it has answered (401 unauthorized with WWW-Authenticate:
 * Bearer, or 503 when neither store can say) and returns -1. */
int auth_require(http_req_t *req);

/* auth_require plus a Redis GET of key_prefix + "<user id>" in the same round trip (the hot path of cached
 * per-user reads). On success returns 0 with *val a malloc'd copy of the cached value (caller frees) and *len,
 * or *val NULL on a miss or when Redis is down. On failure it has answered like auth_require and returns -1. */
int auth_require_cached(http_req_t *req, const char *key_prefix, char **val, size_t *len);

/* Record a user's new token_version in the Redis mirror after the database committed it (outside a
 * transaction). A mirror only ever moves to a newer version; when Redis takes no write, the user goes into
 * the outbox (outbox_note) and the worker drops the stale mirror once Redis answers. Never fails. */
void auth_token_version_changed(long long user_id, int token_version);

/* After an authenticated request found none of the caller's data (no row where one was expected, a foreign key
 * violation on the user): was the token's user deleted meanwhile (in SQL, by an operator)? 1 when it has
 * answered: 401 unauthorized (the user no longer exists) or 503 (PostgreSQL cannot say); 0 when the user exists
 * and the caller answers (404, ...). Call it outside a transaction or inside the caller's. */
int auth_user_gone(http_req_t *req);

#endif
