/* keys: every Redis key name the project uses, in one place, with the builders of the per-user ones.
 * A per-user key is a prefix followed by the user id in decimal; KEYS_USER_MAX bytes hold any of them
 * (the longest prefix plus the 19 digits of LLONG_MAX plus the NUL, with room). */
#ifndef GB_KEYS_H
#define GB_KEYS_H

#include <stdio.h>

#define KEYS_USER_MAX 48

/* "chatrooms:<uid>": the user's cached chatroom list (a JSON object), or a tombstone written by an
 * invalidation (outbox.h). Both live KEYS_CHATROOMS_TTL seconds. */
#define KEYS_CHATROOMS_PREFIX "chatrooms:"
#define KEYS_CHATROOMS_TTL 600

/* "authv:<uid>": the Redis mirror of users.token_version (auth.h), a decimal integer stamped with the epoch; it
 * only ever moves up (outbox_authv_raise) and expires so that a write lost while Redis was down cannot keep a
 * revoked token alive for longer than KEYS_AUTHV_TTL seconds. */
#define KEYS_AUTHV_PREFIX "authv:"
#define KEYS_AUTHV_TTL 600

/* "me:<uid>": the cached GET /user/me body, stamped "<epoch>|<token_version>|<json>" (account.h), or a tombstone
 * written with the list's (outbox.h: every invalidation of a user's list invalidates it too). */
#define KEYS_ME_PREFIX "me:"
#define KEYS_ME_TTL 600

/* "gb:epoch": the freshness epoch of the Redis copies above (mirror.h): "<run_id>.<random hex>". */
#define KEYS_EPOCH "gb:epoch"

/* The stream that carries AI reply jobs to the workers (queue.h). */
#define KEYS_REPLY_STREAM "gb:replies"

/* "replyev:<message id>": the short-lived stream of one AI reply's events as the worker produces them
 * (replystream.h); it lives KEYS_REPLY_EVENTS_TTL seconds after its last write. */
#define KEYS_REPLY_EVENTS_PREFIX "replyev:"
#define KEYS_REPLY_EVENTS_TTL 600

/* The key of user_id's cached chatroom list ("chatrooms:<uid>") into out. */
static inline void keys_chatrooms(long long user_id, char out[KEYS_USER_MAX])
{
    snprintf(out, KEYS_USER_MAX, KEYS_CHATROOMS_PREFIX "%lld", user_id);
}

/* The key of user_id's cached user ("me:<uid>") into out. */
static inline void keys_me(long long user_id, char out[KEYS_USER_MAX])
{
    snprintf(out, KEYS_USER_MAX, KEYS_ME_PREFIX "%lld", user_id);
}

/* The key of user_id's token version mirror ("authv:<uid>") into out. */
static inline void keys_authv(long long user_id, char out[KEYS_USER_MAX])
{
    snprintf(out, KEYS_USER_MAX, KEYS_AUTHV_PREFIX "%lld", user_id);
}

/* The key of reply_id's event stream ("replyev:<id>") into out. */
static inline void keys_reply_events(long long reply_id, char out[KEYS_USER_MAX])
{
    snprintf(out, KEYS_USER_MAX, KEYS_REPLY_EVENTS_PREFIX "%lld", reply_id);
}

#endif
