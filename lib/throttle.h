/* throttle: counters of the events an attacker repeats (failed password logins, failed OTP verifications,
 * signups with a password) per subject (a user id or a client address), and the bound on concurrent Argon2
 * work. Both live in PostgreSQL (table auth_throttle, schema step 8; advisory locks), not Redis, so that every
 * FastCGI process and every machine shares them and they do not depend on Redis at all: with Redis down they
 * count exactly as before. With PostgreSQL down every function reports it (-1) and the caller answers 503, so a
 * limit never fails open (the requests it guards need PostgreSQL anyway).
 *
 * A rule counts events in windows: the first event opens a window of `window` seconds, and the count restarts
 * with the first event after it. From the max-th event of a window on, each event blocks the subject: for
 * `backoff` seconds doubled per event beyond max (30, 60, 120, ... up to backoff_max), or, with backoff 0, until
 * the window ends (a daily cap). A blocked request is refused before it costs anything and is not counted.
 * An event is taken before the work it guards (throttle_take) and given back when it turns out not to be a
 * failure (throttle_release, or throttle_reset for a successful login). */
#ifndef GB_THROTTLE_H
#define GB_THROTTLE_H

typedef struct throttle_rule {
    const char *scope; /* what is counted (auth_throttle.scope), e.g. "login_user"; a fixed string */
    long window;       /* seconds a window of counts lasts, from its first event */
    long max;          /* events of one window before blocking starts (>= 1) */
    long backoff;      /* seconds of the first block, doubling; 0: blocked until the window ends */
    long backoff_max;  /* the longest block when backoff > 0 */
} throttle_rule_t;

/* Pure: the seconds a subject is blocked after the count-th event of a window that has window_left seconds
 * to run. 0 when count < rule->max. */
long throttle_block_seconds(const throttle_rule_t *rule, long count, long window_left);

/* One event taken by throttle_take: what throttle_release needs to give it back. */
typedef struct throttle_claim {
    char window_start[48];  /* the window the event was counted in (timestamptz as text) */
    char blocked_until[48]; /* the block this event started (timestamptz as text), "" none */
} throttle_claim_t;

/* Take one event of subject under rule before its outcome is known (a password about to be hashed, a code about
 * to be compared): counted at once, as a failure, with the block it starts when it is the max-th. Must run inside
 * a transaction: the subject's row stays locked until it ends, so concurrent takes of one subject queue, and each
 * sees the counts and blocks of those before it. Parallel tries can then never get more events past the limit
 * than one at a time would (checking first and counting after the slow part let every request in flight pass).
 * A process that dies before the outcome leaves its event counted, which is the safe side.
 * Returns 0 taken (claim filled), > 0 the seconds subject is still blocked (nothing counted; refuse with them),
 * -1 PostgreSQL down. When a block starts it logs one warning line naming the scope, the subject (a user id or an
 * address, never a number, code or password) and the block. */
long throttle_take(const throttle_rule_t *rule, const char *subject, throttle_claim_t *claim);

/* Give back an event taken by throttle_take that was not a failure (a right password, a request refused for
 * another reason): one less in its window, and the block it started (if any, and still the same) lifted. Inside or
 * outside a transaction. 0 ok, -1 PostgreSQL down (the event then stays counted). */
int throttle_release(const throttle_rule_t *rule, const char *subject, const throttle_claim_t *claim);

/* Forget subject's count under rule (a successful login). 0 ok, -1 PostgreSQL down. */
int throttle_reset(const throttle_rule_t *rule, const char *subject);

/* Take one of the PASSWORD_HASH_CONCURRENCY Argon2 slots shared by every process of the database (a
 * session-level PostgreSQL advisory lock, so a process that dies frees its slot). 1 taken (a process holds at
 * most one: taking it again is a no-op), 0 every slot stayed busy for 0.5 s (answer 503 with Retry-After), -1
 * PostgreSQL down. Release it with throttle_hash_release once the hash is done, on every path. */
int throttle_hash_acquire(void);
/* Release the slot taken by throttle_hash_acquire; no-op when none is held. */
void throttle_hash_release(void);

#endif
