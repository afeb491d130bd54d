/* replystream: the events of one AI reply while it is being written, in a short-lived Redis stream per reply
 * ("replyev:<reply id>", keys.h). The worker appends (XADD) one entry per event; readers (the stream program)
 * read from an entry id on (XRANGE, XREAD BLOCK), so a reader that reconnects continues where it left off.
 *
 *   restart  a new attempt begins and earlier entries are gone: forget the text so far (a client never sees
 *            two answers mixed; the worker crashed mid-answer, or a transient failure is being retried)
 *   delta    field "t": the next piece of text
 *   done     the reply is stored as completed (read it from PostgreSQL: the stored reply is the truth)
 *   error    the reply is stored as failed, or is gone with its chatroom (a reader finds out from PostgreSQL)
 *
 * Each write renews the key's TTL (KEYS_REPLY_EVENTS_TTL); PostgreSQL stays the source of truth, so a lost
 * stream (Redis down or flushed) costs only liveness: readers fall back to reading the stored reply. Writers
 * return -1 when Redis is down and never block the caller past the cache's 1 s command timeout. */
#ifndef GB_REPLYSTREAM_H
#define GB_REPLYSTREAM_H

#include <stddef.h>

#include "keys.h"

#define REPLYSTREAM_ID_MAX 48 /* "<ms>-<seq>" fits with room */

enum replystream_type {
    REPLYSTREAM_UNKNOWN = 0,
    REPLYSTREAM_DELTA,
    REPLYSTREAM_RESTART,
    REPLYSTREAM_DONE,
    REPLYSTREAM_ERROR,
};

/* ---- writer side (the worker) ---- */

/* An attempt at reply_id begins. When the stream already holds entries (an earlier attempt published some),
 * or retry is set (this is not the reply's first attempt), a restart entry is appended and every entry before
 * it trimmed away, in one step (a Lua script), so a reader from the start sees only this attempt. retry makes
 * the restart come even when the stream is gone (Redis flushed or restarted empty since the earlier attempt):
 * a reader may hold that attempt's pieces. 0 ok, -1 Redis down. */
int replystream_begin(long long reply_id, int retry);
/* Publishing an attempt resumes after it stopped (Redis was down when it began, or a write failed): a restart
 * entry, every entry before it trimmed away, then one delta with text[0..len), the whole text so far (none
 * when len is 0), in one step. The restart comes even when the stream is gone (Redis restarted empty), since a
 * reader may hold pieces of the attempt from before. 0 ok, -1 Redis down. */
int replystream_resume(long long reply_id, const char *text, size_t len);
/* Append a delta with text[0..len). 0 ok (len 0: nothing to do), -1 Redis down. */
int replystream_delta(long long reply_id, const char *text, size_t len);
/* The outcome is stored: append done (ok != 0) or error (also when the reply was deleted with its chatroom).
 * 0 ok, -1 Redis down. */
int replystream_end(long long reply_id, int ok);

/* ---- reader side ---- */

/* One event as read back: pointers into the redisReply it came from (valid while that reply lives). */
typedef struct replystream_event {
    const char *id; /* the entry id, "<ms>-<seq>" */
    enum replystream_type type;
    const char *text; /* delta: the text (not NUL-terminated), else NULL */
    size_t len;
} replystream_event_t;

struct redisReply;

/* Parse one entry of an XRANGE / XREAD answer ([id, [field, value, ...]]) into ev. 0 ok, -1 not an entry.
 * An entry with an unknown event name parses with type REPLYSTREAM_UNKNOWN (skip it). */
int replystream_parse_entry(const struct redisReply *entry, replystream_event_t *ev);

/* The entries of reply_id's stream after id `after` (exclusive; NULL or "" = from the start), oldest first, at
 * most max: *out is the array reply of XRANGE (freeReplyObject it), empty when the stream does not exist.
 * 0 ok, -1 Redis down. */
int replystream_range(long long reply_id, const char *after, long max, struct redisReply **out);

/* Parse a stream entry id "<ms>-<seq>" (both decimal, no sign). 0 ok, -1 malformed (e.g. a made-up
 * Last-Event-ID). */
int replystream_id_parse(const char *s, unsigned long long *ms, unsigned long long *seq);
/* Order of two entry ids: <0, 0, >0. A malformed id sorts as "0-0". */
int replystream_id_cmp(const char *a, const char *b);
/* The event's name on the wire ("delta", "restart", "done", "error"); "" for unknown. */
const char *replystream_type_name(enum replystream_type t);

#endif
