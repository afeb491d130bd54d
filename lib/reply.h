/* reply: the AI reply rows as the worker writes them. A reply is a messages row with role 'model' and status
 * 'pending' until its outcome is stored. To work on one a worker first takes a lease on the row (lease_until,
 * lease_owner, attempts + 1) with a conditional UPDATE, so two workers never call upstream for one reply; the
 * outcome is stored with UPDATE ... WHERE status = 'pending' AND lease_owner = the worker, so a second result
 * changes nothing (exactly-once effect), nor does the result of a worker whose lease ran out and was taken by
 * another (whose restarted answer the reply's event stream is showing). Transient failures go back to the database with
 * their retry time (next_attempt_at).
 *
 * Every function runs one or two statements on the process's db connection. After a -1 (or REPLY_DB_DOWN /
 * REPLY_DB_ERROR), db_unavailable() and db_sqlstate() tell why. Nothing here logs or touches Redis. */
#ifndef GB_REPLY_H
#define GB_REPLY_H

#include <stddef.h>

/* One reply this worker now holds a lease on. */
typedef struct reply_lease {
    long long reply_id, chatroom_id, user_id;
    long attempt; /* the attempt this lease is for (attempts after the lease) */
} reply_lease_t;

/* Lease those of ids[0..n) that are claimable: pending, a model reply, no live lease, no retry scheduled for
 * later. A row another worker is leasing at this very moment is skipped (theirs). The lease lasts lease_ms
 * and names owner. On success *out is a malloc'd array (free it; NULL when 0) and the count is returned;
 * -1 on failure (*out NULL). */
int reply_claim(const long long *ids, int n, long lease_ms, const char *owner, reply_lease_t **out);

/* The recovery sweep: lease up to limit claimable replies, oldest first, that were created more than
 * older_than_s seconds ago or have a retry scheduled (and due). older_than_s 0 takes every claimable reply.
 * Returns the count with *out as for reply_claim, or -1. */
int reply_sweep(long older_than_s, long lease_ms, const char *owner, long limit, reply_lease_t **out);

/* reply_store results */
#define REPLY_STORED 1      /* the outcome is stored */
#define REPLY_NOT_PENDING 0 /* nothing changed: the reply was finished elsewhere, deleted, or leased by another */
#define REPLY_DB_DOWN (-1)  /* PostgreSQL is unreachable: nothing stored, try again later */
#define REPLY_DB_ERROR                                                                                                 \
    (-2) /* the statement failed (not an outage, e.g. a value PostgreSQL refuses) and would fail                       \
            again: nothing stored; the caller may store a failure instead */

/* Store the final outcome of a reply whose lease owner holds (the lease may have run out, as long as nobody
 * took it since): completed with text as its content (ok != 0), or failed with text as its error. Clears the
 * lease and any scheduled retry. Returns one of the REPLY_* codes above. */
int reply_store(long long reply_id, const char *owner, int ok, const char *text);

/* A transient failure: schedule the next attempt in delay_ms and give up the lease (only while owner holds
 * it). 0 ok (also when nothing matched), -1 failure: the lease then runs out by itself. */
int reply_retry(long long reply_id, long delay_ms, const char *owner);

/* Give the lease back (shutdown). uncount != 0: the aborted call does not count as an attempt. 0 ok, -1
 * failure (the lease runs out by itself). */
int reply_release(long long reply_id, const char *owner, int uncount);

#endif
