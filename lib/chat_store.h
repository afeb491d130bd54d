/* chat_store: the chat SQL (chatrooms, messages, daily usage, the post function of schema step 7) and the
 * contract's JSON shapes of its rows. No HTTP here: chat.c answers requests with what these return.
 *
 * Return convention: 0 ok, CHAT_STORE_NOT_FOUND when the row is not the user's (or does not exist), -1 when
 * a statement failed (db_unavailable() tells 503 from 500). Returned json_object trees are the caller's
 * (json_object_put). */
#ifndef GB_CHAT_STORE_H
#define GB_CHAT_STORE_H

#include <json-c/json.h>
#include <stddef.h>

#define CHAT_STORE_NOT_FOUND 1
#define CHAT_STORE_FULL 2 /* chat_store_room_create: the user has max_rooms rooms already */

/* Insert a chatroom of user_id unless the user has max_rooms already (CHAT_STORE_FULL; exact under concurrent
 * creates: they are serialised on the user's row); CHAT_STORE_NOT_FOUND when the user does not exist. *room: the
 * chatroom object. */
int chat_store_room_create(long long user_id, const char *title, long max_rooms, json_object **room);
/* One page of user_id's chatrooms, newest activity first: at most limit rooms after the room before (0: from the
 * start; a room that is not the user's gives an empty page). *list: {"chatrooms":[...], "next_before": the last
 * room's id when more follow, else null}. */
int chat_store_room_list(long long user_id, long long before, long limit, json_object **list);
/* Message message_id of room room_id of user_id: *msg (the contract's message object) and whether it is still
 * pending. */
int chat_store_message_get(long long user_id, long long room_id, long long message_id, json_object **msg, int *pending);
/* Room room_id of user_id with its latest max_messages messages (oldest first) under "messages". */
int chat_store_room_get(long long user_id, long long room_id, int max_messages, json_object **room);
/* Delete room room_id of user_id (its messages cascade). The ids of its replies that were still pending go to
 * pending[0..*npending) (at most max_pending of them). */
int chat_store_room_delete(long long user_id, long long room_id, long long *pending, int max_pending, int *npending);
/* A page of room room_id: the newest limit messages with id < before, oldest first.
 * *page: {"messages":[...], "next_before": id or null}. */
int chat_store_messages_page(long long user_id, long long room_id, long limit, long long before, json_object **page);
/* The user's tier (*pro: 1 for "pro") and messages used on day ("YYYY-MM-DD"). NOT_FOUND: no such user. */
int chat_store_usage(long long user_id, const char *day, int *pro, long long *used);

/* ---- the post (one statement: schema.sql steps 7 and 10, chat_post) ---- */

typedef enum {
    CHAT_POST_CREATED,      /* body: the 202 response; reply_id: the pending reply to queue */
    CHAT_POST_REPLAYED,     /* body/status: the stored first response of the Idempotency-Key */
    CHAT_POST_NOT_FOUND,    /* the room is not the user's */
    CHAT_POST_LIMIT,        /* the daily limit is reached; nothing stored */
    CHAT_POST_KEY_CONFLICT, /* the key was first used with another request; nothing stored */
    CHAT_POST_KEY_BUSY,     /* the key is held by a request without a committed response */
} chat_post_outcome_t;

typedef struct {
    long long user_id, room_id;
    const char *content;     /* trimmed, valid */
    const char *day;         /* the UTC day counted, "YYYY-MM-DD" */
    long daily_limit;        /* the basic tier's limit (pro: unlimited, still counted) */
    const char *idem_key;    /* Idempotency-Key, NULL for none */
    const char *fingerprint; /* with idem_key: chat_idem_fingerprint of the request, hex */
} chat_post_in_t;

typedef struct {
    chat_post_outcome_t outcome;
    int status;       /* the HTTP status of body (CREATED: 202; REPLAYED: the stored one) */
    const char *body; /* CREATED/REPLAYED: the response body, NUL-terminated; owned by res */
    size_t body_len;
    long long reply_id; /* CREATED */
    void *res;          /* the result holding body; chat_store_post_free releases it */
} chat_post_out_t;

/* Run the post in one round trip, atomically: replay a committed key, lock the room, take one message from
 * the day's count (exact under concurrency), insert the message and its pending reply, store the response
 * under the key. Two round trips when a concurrent request with the same key committed first: the second
 * answers with its result. 0 with *out filled (free with chat_store_post_free), -1 when the statement failed:
 * nothing was written, or (db_unavailable(), the connection lost after sending) it may have committed and
 * only a retry with the same Idempotency-Key can tell. */
int chat_store_post(const chat_post_in_t *in, chat_post_out_t *out);
/* Release what chat_store_post left in out. Safe on a zeroed or already freed out. */
void chat_store_post_free(chat_post_out_t *out);

#endif
