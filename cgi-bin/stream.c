/* stream: the endpoints that wait for an AI reply (API.md "Chatrooms and messages", "AI replies"/Streaming):
 *
 *   GET /chatroom/{id}/messages/{message_id}[?wait=N]   the message; with wait (1..30 s) answered as soon as it
 *                                                       is no longer pending, or after N s with it pending
 *   GET /chatroom/{id}/messages/{message_id}/stream     text/event-stream: delta / restart events as the worker
 *                                                       writes the reply, then one done (or error) with the stored
 *                                                       message; ids, Last-Event-ID resume, ": keep-alive" every
 *                                                       15 s, at most 120 s per connection
 *
 * Waiting must not cost a process (or a thread) per client, so this program is one event loop: it accepts the
 * web server's FastCGI connections itself (fd 0, non-blocking), parses the FastCGI records (one request per
 * connection at a time, FCGI_KEEP_CONN honoured) and keeps every waiting client as a small struct. A request
 * is authenticated and checked synchronously on arrival (auth_require, chat_message_load: the process's one
 * PostgreSQL and Redis connections, as in every other program); then the client waits on its reply's event
 * stream (lib/replystream). One second Redis connection runs a single XREAD BLOCK over the streams of every
 * reply someone waits for; a client that needs a stream not in the outstanding XREAD interrupts it with
 * CLIENT UNBLOCK. Each waited-for reply is also read from PostgreSQL every 10 s (every second while Redis is
 * down), so an end that was never published (Redis down when the worker stored it) is still seen.
 *
 * Without a FastCGI socket on fd 0 it serves the one CGI request of its environment the same way (a process
 * per stream: fine for development, not for scale). */
#include <errno.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <hiredis.h>
#include <json.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "cache.h"
#include "chat.h"
#include "config.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "replystream.h"
#include "util.h"

#define STREAM_CAP_MS 120000.0 /* a stream ends after this; the client reconnects with Last-Event-ID */
#define KEEPALIVE_MS 15000.0
#define WAIT_MAX_S 30
#define DB_POLL_MS 10000.0     /* a waited-for reply is read from PostgreSQL this often */
#define DB_POLL_FAST_MS 1000.0 /* ... while the XREAD connection is down */
#define RD_UNBLOCK_AGAIN_MS 5  /* the wait before an UNBLOCK that found the XREAD not yet blocking is sent again */
#define OUT_MAX (1u << 20)     /* unsent bytes a client may owe us beyond its largest single piece (out_big) */
#define PARAMS_MAX 65536       /* FastCGI parameters of one request */
#define CATCHUP_MAX 100000     /* entries read back at once for a (re)connecting client */
#define XREAD_BLOCK "10000"
#define XREAD_COUNT "1000"
#define CT_JSON "application/json; charset=utf-8"

/* FastCGI record types and the bits we use (the FastCGI 1.0 specification). */
enum {
    FCGI_BEGIN_REQUEST = 1,
    FCGI_ABORT_REQUEST = 2,
    FCGI_END_REQUEST = 3,
    FCGI_PARAMS = 4,
    FCGI_STDIN = 5,
    FCGI_STDOUT = 6,
    FCGI_GET_VALUES = 9,
    FCGI_GET_VALUES_RESULT = 10,
    FCGI_UNKNOWN_TYPE = 11,
};
#define FCGI_KEEP_CONN 1
#define FCGI_REQUEST_COMPLETE 0
#define FCGI_CANT_MPX_CONN 1

enum kind { K_NONE, K_STREAM, K_WAIT };

typedef struct conn conn_t;
typedef struct watch watch_t;

/* One connection from the web server (or the CGI request), and the request on it. */
struct conn {
    int fd; /* the FastCGI connection; -1 in CGI mode (output on fd 1) */
    /* FastCGI input: the record being read */
    unsigned char hdr[8];
    size_t hdr_got, content_left, pad_left;
    int type;
    unsigned req_id;
    buf_t rec;    /* the content of a BEGIN_REQUEST / GET_VALUES record */
    buf_t params; /* the PARAMS stream */
    int begun, params_done, stdin_done, keep_conn, handled;
    /* output */
    buf_t out;
    size_t out_off;
    size_t out_big; /* the largest single piece queued since out was last empty (a reply of up to 2 MiB of text
                     * is one response or one done event): owed on top of OUT_MAX, never a reason to drop */
    int closing;    /* close once out is written */
    int dead;       /* closed: free at the end of the loop turn */
    /* the request, once it waits */
    enum kind kind;
    int head;
    long long msg_id, room_id;
    char last_id[REPLYSTREAM_ID_MAX]; /* K_STREAM: the last entry sent */
    char request_id[65];
    char method[16];   /* the request's, for its log line and /metrics (cut: metrics count it as OTHER anyway) */
    const char *route; /* its route's pattern (routes[]), or "unmatched" */
    double t0, deadline, next_keepalive;
    watch_t *w;
    conn_t *wprev, *wnext; /* the clients of w */
    conn_t *prev, *next;   /* every connection */
};

/* A reply somebody waits for. */
struct watch {
    long long msg_id, room_id, user_id;
    char key[KEYS_USER_MAX];
    char last_id[REPLYSTREAM_ID_MAX]; /* where the XREAD over its stream continues */
    double next_poll;
    int busy; /* watch_check is finishing its clients: the last one to leave does not free it */
    conn_t *clients;
    watch_t *prev, *next;
};

static struct {
    int cgi, listen_fd;
    conn_t *conns;
    long nconns;
    watch_t *watches;
    long nwatches;
    redisContext *rd; /* the XREAD connection */
    long long rd_client_id;
    int rd_blocked; /* an XREAD is outstanding */
    int rd_dirty;   /* a stream was added that the outstanding XREAD does not cover */
    double rd_retry_at;
    int rd_down;    /* the XREAD connection failed and has not answered since: poll each second, with the entries */
    http_req_t req; /* the request being handled right now (handling is synchronous) */
    buf_t wire;
    int big_freed; /* a buffer over BUF_KEEP was freed since the last trim (heap_return) */
    volatile sig_atomic_t stop;
} S;

static void on_signal(int sig)
{
    (void)sig;
    S.stop = 1;
}

/* ---- output ---------------------------------------------------------------------------------------------- */

static void fcgi_record(buf_t *b, int type, unsigned id, const char *p, size_t n)
{
    unsigned char h[8] = {1,
                          (unsigned char)type,
                          (unsigned char)(id >> 8),
                          (unsigned char)id,
                          (unsigned char)(n >> 8),
                          (unsigned char)n,
                          0,
                          0};
    buf_append(b, h, 8);
    if (n)
        buf_append(b, p, n);
}

/* Response bytes: FCGI_STDOUT records, or as they are in CGI mode. */
static void out_raw(conn_t *c, const char *p, size_t n)
{
    if (n > c->out_big)
        c->out_big = n;
    if (c->fd < 0) {
        buf_append(&c->out, p, n);
        return;
    }
    while (n) {
        size_t k = n > 65535 ? 65535 : n;
        fcgi_record(&c->out, FCGI_STDOUT, c->req_id, p, k);
        p += k, n -= k;
    }
}

static void watch_detach(conn_t *c);
static void watch_free(watch_t *w);

/* The request's log line and its /metrics count (the route's pattern: the path holds ids only). */
static void log_end(const conn_t *c, int status)
{
    double ms = now_ms() - c->t0;
    const char *route = c->route ? c->route : "unmatched";
    metrics_request(route, c->method, status, ms);
    log_set_context(c->request_id, 0);
    log_request(c->method, route, status, ms);
    log_set_context(NULL, 0);
}

/* The request on c is over: detach it, log it, end it (FastCGI: empty STDOUT, END_REQUEST; the connection stays
 * open for the next request when the web server asked for that). */
static void end_request(conn_t *c, int status)
{
    watch_detach(c);
    if (c->kind != K_NONE || c->handled)
        log_end(c, status);
    if (c->fd >= 0) {
        unsigned char end[8] = {0, 0, 0, 0, FCGI_REQUEST_COMPLETE, 0, 0, 0};
        fcgi_record(&c->out, FCGI_STDOUT, c->req_id, NULL, 0);
        fcgi_record(&c->out, FCGI_END_REQUEST, c->req_id, (const char *)end, 8);
    }
    if (c->fd < 0 || !c->keep_conn)
        c->closing = 1;
    c->kind = K_NONE;
    c->begun = c->params_done = c->stdin_done = c->handled = 0;
    buf_free(&c->params);
}

static void conn_close(conn_t *c)
{
    if (c->dead)
        return;
    if (c->kind != K_NONE) { /* the client (or the web server) went away while it waited */
        log_end(c, 499);
        c->kind = K_NONE;
    }
    watch_detach(c);
    if (c->fd >= 0)
        close(c->fd);
    c->dead = 1;
}

/* Write what c owes. A client that went away (or falls OUT_MAX behind, beyond its largest piece) is closed. */
static void flush(conn_t *c)
{
    int fd = c->fd >= 0 ? c->fd : 1;
    while (!c->dead && c->out_off < c->out.len) {
        ssize_t w = write(fd, c->out.data + c->out_off, c->out.len - c->out_off);
        if (w > 0) {
            c->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (c->out.len - c->out_off > OUT_MAX + c->out_big)
                conn_close(c);
            return;
        }
        conn_close(c); /* EPIPE, ECONNRESET: the client is gone */
        return;
    }
    if (c->dead)
        return;
    buf_reset(&c->out);
    c->out_off = 0;
    c->out_big = 0;
    S.big_freed |= buf_trim(&c->out);
    if (c->closing)
        conn_close(c);
}

/* The ordinary (non-streamed) response S.req holds, then the end of the request. */
static void respond(conn_t *c)
{
    http_response_wire(&S.req, &S.wire, 0);
    out_raw(c, S.wire.data, S.wire.len);
    end_request(c, S.req.status);
}

/* A fresh S.req for a response made later than the request (a long-poll that ends): no parameters left. */
static void late_req(conn_t *c)
{
    http_req_t *req = &S.req;
    http_req_reset(req);
    req->method = c->head ? "HEAD" : "GET";
    memcpy(req->request_id, c->request_id, sizeof req->request_id);
}

static const char *dump(json_object *o, size_t *len)
{
    return json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, len);
}

/* Under plain CGI the program's output goes through fcgiwrap, which keeps it in libfcgi's 8 KiB buffer until
 * that is full or the program exits (gnosek/fcgiwrap#36): a stream would arrive all at once at the end. So in
 * CGI mode every piece of a stream is followed by an SSE comment that fills that buffer and pushes the piece
 * out (8 KiB per event: CGI mode is for development, not for scale). */
#define CGI_PUSH 8192

static void cgi_push(conn_t *c)
{
    static char pad[CGI_PUSH];
    if (c->fd >= 0)
        return;
    if (!pad[0]) {
        memset(pad, ' ', sizeof pad);
        pad[0] = ':';
        pad[sizeof pad - 1] = '\n';
    }
    out_raw(c, pad, sizeof pad);
}

/* One Server-Sent Event. data is one line (JSON never holds a raw newline). */
static void sse(conn_t *c, const char *id, const char *event, const char *data, size_t len)
{
    buf_t *b = &S.wire;
    buf_reset(b);
    buf_printf(b, "id: %s\nevent: %s\ndata: ", id, event);
    buf_append(b, data, len);
    buf_append(b, "\n\n", 2);
    out_raw(c, b->data, b->len);
    cgi_push(c);
}

/* ---- finishing with the stored message -------------------------------------------------------------------- */

/* The message is no longer pending (msg): a stream gets done / error with it, a long-poll gets it. */
static void finish_with(conn_t *c, json_object *msg, const char *id)
{
    size_t len;
    const char *s = dump(msg, &len);
    if (c->kind == K_STREAM) {
        json_object *st = NULL;
        json_object_object_get_ex(msg, "status", &st);
        int failed = st && strcmp(json_object_get_string(st), "failed") == 0;
        sse(c, id, failed ? "error" : "done", s, len);
        end_request(c, 200);
    } else {
        late_req(c);
        http_raw(&S.req, 200, CT_JSON, s, len);
        respond(c);
    }
}

static void watch_entries(watch_t *w, const redisReply *entries, int ends);

/* What w's event stream holds past w->last_id, to w's stream clients (its end, if there, is left to the
 * caller). -1 Redis failed. */
static int watch_catchup(watch_t *w)
{
    const conn_t *s = w->clients;
    while (s && s->kind != K_STREAM)
        s = s->wnext;
    if (!s)
        return 0; /* long-polls only */
    redisReply *rr = NULL;
    int rc = replystream_range(w->msg_id, w->last_id, CATCHUP_MAX, &rr);
    if (rc == 0)
        watch_entries(w, rr, 0);
    if (rr)
        freeReplyObject(rr);
    return rc;
}

/* Read w's message; when it is no longer pending, finish every client of w with it (and w goes away). id: the
 * entry id a stream's done / error carries. catchup: the end was not read from the event stream (a periodic
 * read of PostgreSQL), so its last entries may not have reached the clients yet (the XREAD answer holding them
 * still unread, the XREAD connection down while Redis is up): they are read first. 1 finished, 0 still
 * pending, -1 the database failed (the clients are ended: a stream reconnects, a long-poll gets 503). */
static int watch_check(watch_t *w, const char *id, int catchup)
{
    json_object *msg = NULL;
    int pending = 0;
    int rc = chat_message_load(w->user_id, w->room_id, w->msg_id, &msg, &pending);
    if (rc == 1 && pending) {
        json_object_put(msg);
        return 0;
    }
    if (rc == 1 && catchup)
        watch_catchup(w);
    w->busy = 1;
    while (w->clients) {
        conn_t *c = w->clients;
        if (rc == 1) {
            finish_with(c, msg, id);
        } else if (c->kind == K_STREAM) {
            end_request(c, 200); /* deleted, or the database failed: the client reconnects and learns which */
        } else {
            late_req(c);
            if (rc == 0)
                http_not_found(&S.req);
            else
                http_db_failed(&S.req);
            respond(c);
        }
    }
    json_object_put(msg);
    w->busy = 0;
    watch_free(w);
    return rc == 1 ? 1 : -1;
}

/* ---- watches ------------------------------------------------------------------------------------------- */

static watch_t *watch_find(long long msg_id)
{
    for (watch_t *w = S.watches; w; w = w->next)
        if (w->msg_id == msg_id)
            return w;
    return NULL;
}

static void watch_free(watch_t *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        S.watches = w->next;
    if (w->next)
        w->next->prev = w->prev;
    S.nwatches--;
    free(w);
}

static void watch_detach(conn_t *c)
{
    watch_t *w = c->w;
    if (!w)
        return;
    if (c->wprev)
        c->wprev->wnext = c->wnext;
    else
        w->clients = c->wnext;
    if (c->wnext)
        c->wnext->wprev = c->wprev;
    c->w = NULL;
    c->wprev = c->wnext = NULL;
    if (!w->clients && !w->busy)
        watch_free(w); /* the outstanding XREAD may still name it: its entries are then simply dropped */
}

/* c waits on msg_id's stream from `from` on. */
static void watch_attach(conn_t *c, long long user_id, const char *from)
{
    watch_t *w = watch_find(c->msg_id);
    if (!w) {
        w = xcalloc(1, sizeof *w);
        w->msg_id = c->msg_id;
        w->room_id = c->room_id;
        w->user_id = user_id;
        keys_reply_events(w->msg_id, w->key);
        snprintf(w->last_id, sizeof w->last_id, "%s", from);
        w->next = S.watches;
        if (S.watches)
            S.watches->prev = w;
        S.watches = w;
        S.nwatches++;
        S.rd_dirty = 1;
    }
    w->next_poll = now_ms() + (S.rd_down ? DB_POLL_FAST_MS : DB_POLL_MS);
    c->w = w;
    c->wnext = w->clients;
    if (w->clients)
        w->clients->wprev = c;
    w->clients = c;
}

/* ---- events to clients ------------------------------------------------------------------------------------ */

/* Send ev to a stream client unless it has had it. Returns 1 when ev is the end (done / error). */
static int deliver(conn_t *c, const replystream_event_t *ev)
{
    if (ev->type == REPLYSTREAM_DONE || ev->type == REPLYSTREAM_ERROR)
        return 1;
    if (c->kind != K_STREAM || replystream_id_cmp(ev->id, c->last_id) <= 0)
        return 0;
    snprintf(c->last_id, sizeof c->last_id, "%s", ev->id);
    if (ev->type == REPLYSTREAM_DELTA) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "text", json_object_new_string_len(ev->text, (int)ev->len));
        size_t len;
        const char *s = dump(o, &len);
        sse(c, ev->id, "delta", s, len);
        json_object_put(o);
    } else if (ev->type == REPLYSTREAM_RESTART) {
        sse(c, ev->id, "restart", "{}", 2);
    }
    return 0;
}

/* The entries of one stream, as XREAD / XRANGE return them, for watch w. ends: an end entry (done / error)
 * finishes w's clients (w may be gone after this); 0: it is left to the caller. */
static void watch_entries(watch_t *w, const redisReply *entries, int ends)
{
    for (size_t i = 0; entries && i < entries->elements; i++) {
        replystream_event_t ev;
        if (replystream_parse_entry(entries->element[i], &ev) != 0)
            continue;
        if (replystream_id_cmp(ev.id, w->last_id) > 0)
            snprintf(w->last_id, sizeof w->last_id, "%s", ev.id);
        int end = 0;
        for (conn_t *c = w->clients; c; c = c->wnext)
            end |= deliver(c, &ev);
        if (end && ends) {
            if (watch_check(w, ev.id, 0) != 0)
                return; /* w is gone */
        }
    }
}

/* ---- the XREAD connection --------------------------------------------------------------------------------- */

static void rd_drop(const char *why)
{
    double now = now_ms();
    if (!S.rd_down) /* once per outage: a refusal repeats each second */
        log_warn("stream: the XREAD connection to Redis failed (%s); waiting replies are polled in PostgreSQL", why);
    S.rd_down = 1;
    if (S.rd)
        redisFree(S.rd);
    S.rd = NULL;
    S.rd_blocked = 0;
    S.rd_retry_at = now + 1000;
    for (watch_t *w = S.watches; w; w = w->next) /* nothing comes through Redis now: poll PostgreSQL soon */
        if (w->next_poll > now + DB_POLL_FAST_MS)
            w->next_poll = now + DB_POLL_FAST_MS;
}

static void rd_connect(void)
{
    if (S.rd || now_ms() < S.rd_retry_at)
        return;
    S.rd = cache_connect_new();
    if (!S.rd) {
        rd_drop("cannot connect");
        return;
    }
    redisReply *r = redisCommand(S.rd, "CLIENT ID");
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        if (r)
            freeReplyObject(r);
        rd_drop("CLIENT ID");
        return;
    }
    S.rd_client_id = r->integer;
    freeReplyObject(r);
    S.rd_blocked = 0;
    S.rd_dirty = 1;
}

/* Send XREAD BLOCK over every watched stream, unless one is outstanding. */
static void rd_send(void)
{
    if (!S.rd || S.rd_blocked || !S.watches)
        return;
    int n = (int)S.nwatches, argc = 6 + 2 * n;
    const char **argv = xcalloc((size_t)argc, sizeof *argv);
    size_t *lens = xcalloc((size_t)argc, sizeof *lens);
    argv[0] = "XREAD", argv[1] = "COUNT", argv[2] = XREAD_COUNT, argv[3] = "BLOCK", argv[4] = XREAD_BLOCK;
    argv[5] = "STREAMS";
    int i = 0;
    for (watch_t *w = S.watches; w && i < n; w = w->next, i++) {
        argv[6 + i] = w->key;
        argv[6 + n + i] = w->last_id[0] ? w->last_id : "0-0";
    }
    for (int k = 0; k < argc; k++)
        lens[k] = strlen(argv[k]);
    int done = 0;
    int ok = redisAppendCommandArgv(S.rd, argc, argv, lens) == REDIS_OK;
    while (ok && !done)
        ok = redisBufferWrite(S.rd, &done) == REDIS_OK;
    free(argv);
    free(lens);
    if (!ok) {
        rd_drop("write");
        return;
    }
    S.rd_blocked = 1;
    S.rd_dirty = 0;
}

/* A stream was added while an XREAD blocks without it: make that XREAD return now (it answers nil, and the
 * next XREAD names every stream). UNBLOCK answers 0 while the XREAD is still on its way to Redis (not blocking
 * yet): then it is asked again at the next loop turn, a few ms later (the loop's wait is cut short while
 * rd_dirty stays), not left to block up to 10 s without the new stream. No answer at all (the main
 * connection failed): the XREAD connection is dropped and rebuilt, the replies polled in PostgreSQL meanwhile. */
static void rd_interrupt(void)
{
    if (!S.rd || !S.rd_blocked || !S.rd_dirty)
        return;
    char id[24];
    snprintf(id, sizeof id, "%lld", S.rd_client_id);
    const char *argv[] = {"CLIENT", "UNBLOCK", id};
    size_t lens[] = {6, 7, strlen(id)};
    redisReply *r = cache_cmd(3, argv, lens);
    if (!r) {
        rd_drop("CLIENT UNBLOCK got no answer");
        return;
    }
    int not_yet = r->type == REDIS_REPLY_INTEGER && r->integer == 0;
    freeReplyObject(r);
    if (!not_yet)
        S.rd_dirty = 0;
}

static void rd_readable(void)
{
    if (redisBufferRead(S.rd) != REDIS_OK) {
        rd_drop(S.rd->errstr);
        return;
    }
    for (;;) {
        void *v = NULL;
        if (redisGetReplyFromReader(S.rd, &v) != REDIS_OK) {
            rd_drop("protocol");
            return;
        }
        if (!v)
            return;
        redisReply *r = v;
        S.rd_blocked = 0;
        if (r->type != REDIS_REPLY_ERROR && S.rd_down) {
            log_info("stream: the XREAD connection to Redis works again");
            S.rd_down = 0;
        }
        if (r->type == REDIS_REPLY_ARRAY) {
            for (size_t i = 0; i < r->elements; i++) {
                redisReply *kv = r->element[i];
                if (kv->type != REDIS_REPLY_ARRAY || kv->elements != 2 || kv->element[0]->type != REDIS_REPLY_STRING)
                    continue;
                long long id;
                const char *key = kv->element[0]->str;
                size_t pl = strlen(KEYS_REPLY_EVENTS_PREFIX);
                if (strncmp(key, KEYS_REPLY_EVENTS_PREFIX, pl) != 0 || parse_ll(key + pl, 1, INT64_MAX, &id) != 0)
                    continue;
                watch_t *w = watch_find(id);
                if (w)
                    watch_entries(w, kv->element[1], 1);
            }
        } else if (r->type == REDIS_REPLY_ERROR) {
            /* refused (an ACL without XREAD, ...): it would be refused again at once; PostgreSQL meanwhile */
            char why[160];
            snprintf(why, sizeof why, "XREAD refused: %.120s", r->str);
            freeReplyObject(r);
            rd_drop(why);
            return;
        }
        freeReplyObject(r);
    }
}

/* ---- requests ---------------------------------------------------------------------------------------------- */

static const http_route_t routes[] = {
    {"GET", "/chatroom/{id}/messages/{message_id}", NULL},
    {"GET", "/chatroom/{id}/messages/{message_id}/stream", NULL},
};

/* GET .../stream of a message that exists: the header block, then what is known now, then wait. */
static void stream_start(conn_t *c, json_object *msg, int pending)
{
    http_req_t *req = &S.req;
    http_set_header(req, "Content-Type", "text/event-stream; charset=utf-8");
    http_set_header(req, "Cache-Control", "no-cache");
    http_set_header(req, "X-Accel-Buffering", "no"); /* nginx: pass it through at once */
    req->status = 200;
    req->responded = 1;
    http_response_wire(req, &S.wire, 1);
    out_raw(c, S.wire.data, S.wire.len);
    c->kind = K_STREAM;
    if (!c->head)
        cgi_push(c); /* the headers now, not with the first event */
    if (c->head) {
        end_request(c, 200);
        return;
    }
    /* A finished reply: done at once, unless the client resumes (Last-Event-ID): then it gets what it missed
     * first, as far as the reply's event stream still holds it. */
    const char *lei = http_header(req, "Last-Event-ID");
    unsigned long long ms, seq;
    int resume = lei && replystream_id_parse(lei, &ms, &seq) == 0;
    if (!pending && !resume) {
        finish_with(c, msg, "done");
        return;
    }
    snprintf(c->last_id, sizeof c->last_id, "%s", resume ? lei : "0-0");
    c->deadline = c->t0 + STREAM_CAP_MS;
    c->next_keepalive = now_ms() + KEEPALIVE_MS;
    /* A new watch reads the stream from its start; the catch-up below moves it to the newest entry. Never to
     * the client's Last-Event-ID: a watch is shared, and an id past the newest entry (a bogus or future one)
     * made the other clients of the reply miss deltas and wait for done. */
    watch_attach(c, req->user_id, "0-0");
    /* What the stream already holds past the client's last event (everything for a new client). */
    redisReply *rr = NULL;
    if (replystream_range(c->msg_id, c->last_id, CATCHUP_MAX, &rr) != 0) {
        rd_drop("Redis is unreachable");
    } else {
        watch_entries(c->w, rr, 1); /* may finish c (and every client of w) */
    }
    if (rr)
        freeReplyObject(rr);
    if (!pending && c->w) /* finished, and its end is no longer in the stream (expired, Redis down) */
        watch_check(c->w, "done", 0);
}

/* A complete request on c: its parameters are envp. */
static void handle(conn_t *c, char **envp)
{
    http_req_t *req = &S.req;
    json_object *msg = NULL;
    late_req(c);
    http_req_begin(req, envp);
    memcpy(c->request_id, req->request_id, sizeof c->request_id);
    c->t0 = now_ms();
    c->handled = 1;
    c->head = strcmp(req->method, "HEAD") == 0;
    snprintf(c->method, sizeof c->method, "%s", req->method);
    c->route = http_route_label(routes, sizeof routes / sizeof routes[0], req->path, req->pool); /* a pattern */
    char allow[64];
    int r = http_route_match(routes, sizeof routes / sizeof routes[0], c->head ? "GET" : req->method, req->path,
                             req->params, &req->nparams, allow, sizeof allow, req->pool);
    if (r == -1) {
        http_not_found(req);
        goto out;
    }
    const char *origin = http_header(req, "Origin");
    if (r == -2 && strcmp(req->method, "OPTIONS") == 0 && http_header(req, "Access-Control-Request-Method") &&
        http_cors_allowed(g_config.cors_allowed_origins, origin)) {
        /* a CORS preflight from an allowed origin, answered as http_serve does for the other programs */
        http_set_header(req, "Access-Control-Allow-Methods", "GET");
        http_set_header(req, "Access-Control-Allow-Headers",
                        "Authorization, Content-Type, Idempotency-Key, X-Request-Id, Last-Event-ID");
        http_set_header(req, "Access-Control-Max-Age", "600");
        http_empty(req, 204);
        goto out;
    }
    if (r == -2) {
        http_set_header(req, "Allow", "GET, HEAD");
        http_error(req, 405, "method_not_allowed", "This method is not allowed on this resource.");
        goto out;
    }
    if (auth_require(req) != 0)
        goto out;
    c->room_id = http_param_id(req, 0);
    c->msg_id = http_param_id(req, 1);
    int pending = 0;
    int rc = chat_message_load(req->user_id, c->room_id, c->msg_id, &msg, &pending);
    if (rc < 0) {
        http_db_failed(req);
        goto out;
    }
    if (rc == 0) {
        http_not_found(req);
        goto out;
    }
    if (r == 1) {
        stream_start(c, msg, pending);
        goto done;
    }
    const char *wait = http_query(req, "wait");
    long long secs = 0;
    if (wait && parse_ll(wait, 0, WAIT_MAX_S, &secs) != 0) {
        http_error(req, 400, "validation_error", "wait must be a whole number of seconds, 30 at most.");
        goto out;
    }
    if (!pending || secs == 0) {
        http_json(req, 200, msg);
        msg = NULL;
        goto out;
    }
    c->kind = K_WAIT;
    c->deadline = c->t0 + (double)secs * 1000.0;
    watch_attach(c, req->user_id, "$");
    /* "$" would skip an end published between our read and the XREAD: start from the stream's last entry */
    redisReply *rr = NULL;
    if (replystream_range(c->msg_id, NULL, CATCHUP_MAX, &rr) == 0 && rr->elements) {
        replystream_event_t ev;
        if (replystream_parse_entry(rr->element[rr->elements - 1], &ev) == 0) {
            if (strcmp(c->w->last_id, "$") == 0) /* a new watch (one streamed to already keeps its place) */
                snprintf(c->w->last_id, sizeof c->w->last_id, "%s", ev.id);
            if (ev.type == REPLYSTREAM_DONE || ev.type == REPLYSTREAM_ERROR)
                watch_check(c->w, ev.id, 1);
        }
    } else {
        if (!rr)
            rd_drop("Redis is unreachable");
        if (c->w && strcmp(c->w->last_id, "$") == 0)
            snprintf(c->w->last_id, sizeof c->w->last_id, "0-0");
    }
    if (rr)
        freeReplyObject(rr);
    goto done;
out:
    respond(c);
done:
    json_object_put(msg);
}

/* ---- FastCGI input ------------------------------------------------------------------------------------------ */

/* Read one FastCGI name-value length at p[*i..n). -1 when cut short. */
static long nv_len(const unsigned char *p, size_t n, size_t *i)
{
    if (*i >= n)
        return -1;
    if (!(p[*i] & 0x80))
        return p[(*i)++];
    if (*i + 4 > n)
        return -1;
    long v = ((long)(p[*i] & 0x7f) << 24) | ((long)p[*i + 1] << 16) | ((long)p[*i + 2] << 8) | p[*i + 3];
    *i += 4;
    return v;
}

/* The PARAMS stream into "NAME=value" strings: envp (malloc'd array, NULL-terminated) over strings in *store. */
static char **params_envp(const buf_t *params, buf_t *store)
{
    const unsigned char *p = (const unsigned char *)params->data;
    size_t n = params->len, i = 0, count = 0;
    buf_reset(store);
    while (i < n) {
        long nl = nv_len(p, n, &i), vl = nl < 0 ? -1 : nv_len(p, n, &i);
        if (nl < 0 || vl < 0 || (size_t)nl > n - i || (size_t)vl > n - i - (size_t)nl)
            break;
        buf_append(store, p + i, (size_t)nl);
        buf_append(store, "=", 1);
        buf_append(store, p + i + nl, (size_t)vl);
        buf_append(store, "", 1);
        i += (size_t)nl + (size_t)vl;
        count++;
    }
    char **envp = xcalloc(count + 1, sizeof *envp);
    for (size_t k = 0, off = 0; k < count; k++) {
        envp[k] = store->data + off;
        off += strlen(envp[k]) + 1;
    }
    return envp;
}

static void maybe_handle(conn_t *c)
{
    if (!c->begun || !c->params_done || !c->stdin_done || c->handled || c->kind != K_NONE)
        return;
    buf_t store = {0};
    char **envp = params_envp(&c->params, &store);
    buf_free(&c->params);
    handle(c, envp);
    free(envp);
    buf_free(&store);
}

/* A complete record's content (for the types whose content we keep) or its end. */
static void record_done(conn_t *c)
{
    switch (c->type) {
    case FCGI_BEGIN_REQUEST: {
        const unsigned char *b = (const unsigned char *)c->rec.data;
        if (c->begun) { /* one request per connection at a time */
            unsigned char end[8] = {0, 0, 0, 0, FCGI_CANT_MPX_CONN, 0, 0, 0};
            fcgi_record(&c->out, FCGI_END_REQUEST, c->req_id, (const char *)end, 8);
            break;
        }
        c->begun = 1;
        c->keep_conn = c->rec.len >= 3 && (b[2] & FCGI_KEEP_CONN);
        break;
    }
    case FCGI_GET_VALUES: {
        /* FCGI_MAX_CONNS / FCGI_MAX_REQS / FCGI_MPXS_CONNS: many connections, one request each */
        static const char vals[] = "\x0e\x04"
                                   "FCGI_MAX_CONNS"
                                   "4096"
                                   "\x0d\x04"
                                   "FCGI_MAX_REQS"
                                   "4096"
                                   "\x0f\x01"
                                   "FCGI_MPXS_CONNS"
                                   "0";
        fcgi_record(&c->out, FCGI_GET_VALUES_RESULT, 0, vals, sizeof vals - 1);
        break;
    }
    default: break;
    }
    buf_reset(&c->rec);
}

/* The bytes p[0..n) that arrived on c. */
static void conn_input(conn_t *c, const unsigned char *p, size_t n)
{
    while (n && !c->dead) {
        if (c->hdr_got < 8) {
            size_t k = 8 - c->hdr_got < n ? 8 - c->hdr_got : n;
            memcpy(c->hdr + c->hdr_got, p, k);
            c->hdr_got += k, p += k, n -= k;
            if (c->hdr_got < 8)
                return;
            c->type = c->hdr[1];
            unsigned id = ((unsigned)c->hdr[2] << 8) | c->hdr[3];
            c->content_left = ((size_t)c->hdr[4] << 8) | c->hdr[5];
            c->pad_left = c->hdr[6];
            if (c->type == FCGI_BEGIN_REQUEST && !c->begun)
                c->req_id = id;
            else if (c->type != FCGI_GET_VALUES && id != c->req_id)
                c->type = -1; /* a record of a request we do not serve: skip it */
            if (c->type == FCGI_PARAMS && c->content_left == 0)
                c->params_done = 1;
            if (c->type == FCGI_STDIN && c->content_left == 0)
                c->stdin_done = 1;
            if (c->type == FCGI_ABORT_REQUEST && c->begun)
                end_request(c, 499); /* the client went away */
            if (c->type != FCGI_BEGIN_REQUEST && c->type != FCGI_GET_VALUES && c->type != FCGI_PARAMS &&
                c->type != FCGI_STDIN && c->type != FCGI_ABORT_REQUEST && c->type != -1) {
                unsigned char u[8] = {(unsigned char)c->type, 0, 0, 0, 0, 0, 0, 0};
                fcgi_record(&c->out, FCGI_UNKNOWN_TYPE, 0, (const char *)u, 8);
            }
        }
        if (c->content_left) {
            size_t k = c->content_left < n ? c->content_left : n;
            if (c->type == FCGI_PARAMS) {
                if (c->params.len + k > PARAMS_MAX) {
                    conn_close(c);
                    return;
                }
                buf_append(&c->params, p, k);
            } else if (c->type == FCGI_BEGIN_REQUEST || c->type == FCGI_GET_VALUES) {
                if (c->rec.len + k <= 65536)
                    buf_append(&c->rec, p, k);
            } /* STDIN (a GET has no body worth reading) and anything else: dropped */
            c->content_left -= k, p += k, n -= k;
            if (c->content_left)
                return;
        }
        if (c->pad_left) {
            size_t k = c->pad_left < n ? c->pad_left : n;
            c->pad_left -= k, p += k, n -= k;
            if (c->pad_left)
                return;
        }
        record_done(c);
        c->hdr_got = 0;
        maybe_handle(c);
    }
}

static void conn_readable(conn_t *c)
{
    unsigned char buf[16384];
    for (;;) {
        ssize_t r = read(c->fd, buf, sizeof buf);
        if (r > 0) {
            conn_input(c, buf, (size_t)r);
            if (c->dead || (size_t)r < sizeof buf)
                return;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_close(c); /* the web server closed it: the client went away */
        return;
    }
}

static conn_t *conn_new(int fd)
{
    conn_t *c = xcalloc(1, sizeof *c);
    c->fd = fd;
    c->next = S.conns;
    if (S.conns)
        S.conns->prev = c;
    S.conns = c;
    S.nconns++;
    return c;
}

static void conn_free(conn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        S.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    S.nconns--;
    S.big_freed |= c->out.cap > BUF_KEEP || c->params.cap > BUF_KEEP;
    buf_free(&c->rec);
    buf_free(&c->params);
    buf_free(&c->out);
    free(c);
}

/* After a big answer (a long reply: its row, its JSON, its response of up to 2 MiB of text) the process keeps
 * nothing of it: S.req's and S.wire's buffers, kept from request to request, are freed when it made them big
 * (they stayed at 1 MiB each after one 600 KB message, for good), libpq's buffers with the connection that
 * carried it (db_trim), and the heap that all of it grew and holed goes back to the system (malloc_trim): a
 * stream process serving such messages went from 1.4 MB to 7-8 MB private and stayed there. */
static void heap_return(void)
{
    S.big_freed |= buf_trim(&S.req.out) | buf_trim(&S.req.headers) | buf_trim(&S.wire) | db_trim();
    if (S.big_freed)
        malloc_trim(0);
    S.big_freed = 0;
}

static void accept_all(void)
{
    for (;;) {
        int fd = accept4(S.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("stream: accept: %s", strerror(errno));
            return;
        }
        conn_new(fd);
    }
}

/* ---- timers ------------------------------------------------------------------------------------------------ */

/* Deadlines, keep-alives and the PostgreSQL polls; returns the ms until the next one is due (at most 1000). */
static int timers(void)
{
    double now = now_ms(), next = now + 1000;
    for (conn_t *c = S.conns; c; c = c->next) {
        if (c->dead || c->kind == K_NONE)
            continue;
        if (now >= c->deadline) {
            if (c->kind == K_STREAM) {
                end_request(c, 200); /* the 120 s cap: the client reconnects with Last-Event-ID */
            } else {
                /* the wait is over: the message as it is now (still pending, unless it just finished) */
                json_object *msg = NULL;
                int pending;
                int rc = chat_message_load(c->w ? c->w->user_id : 0, c->room_id, c->msg_id, &msg, &pending);
                late_req(c);
                if (rc == 1) {
                    size_t len;
                    const char *s = dump(msg, &len);
                    http_raw(&S.req, 200, CT_JSON, s, len);
                } else if (rc == 0) {
                    http_not_found(&S.req);
                } else {
                    http_db_failed(&S.req);
                }
                json_object_put(msg);
                respond(c);
            }
            continue;
        }
        if (c->kind == K_STREAM && now >= c->next_keepalive) {
            out_raw(c, ": keep-alive\n\n", 14);
            cgi_push(c);
            c->next_keepalive = now + KEEPALIVE_MS;
        }
        if (c->deadline < next)
            next = c->deadline;
        if (c->kind == K_STREAM && c->next_keepalive < next)
            next = c->next_keepalive;
    }
    watch_t *w = S.watches;
    int redis_ok = 1; /* while Redis is down, one failed read per pass, not one per watch */
    while (w) {
        watch_t *wn = w->next;
        if (now >= w->next_poll) {
            w->next_poll = now + (S.rd_down ? DB_POLL_FAST_MS : DB_POLL_MS);
            if (S.rd_down && redis_ok)
                redis_ok = watch_catchup(w) == 0; /* no XREAD: the pieces come with the polls */
            watch_check(w, "done", 1);            /* w may be gone after this */
        } else if (w->next_poll < next) {
            next = w->next_poll;
        }
        w = wn;
    }
    double ms = next - now_ms();
    return ms < 0 ? 0 : (int)ms + 1;
}

/* ---- main ---------------------------------------------------------------------------------------------------- */

static void reap(void)
{
    conn_t *c = S.conns;
    while (c) {
        conn_t *cn = c->next;
        if (c->dead)
            conn_free(c);
        c = cn;
    }
}

static void loop(void)
{
    struct pollfd *pfd = NULL;
    conn_t **who = NULL;
    size_t cap = 0;
    while (!S.stop) {
        rd_connect();
        rd_interrupt();
        rd_send();
        int timeout = timers();
        if (S.rd && S.rd_blocked && S.rd_dirty && timeout > RD_UNBLOCK_AGAIN_MS)
            timeout = RD_UNBLOCK_AGAIN_MS; /* an UNBLOCK that came too early is sent again soon */
        for (conn_t *c = S.conns; c; c = c->next)
            if (!c->dead && c->out_off < c->out.len)
                flush(c);
        reap();
        if (S.cgi && !S.conns)
            break;
        size_t need = (size_t)S.nconns + 2;
        if (need > cap) {
            cap = need * 2;
            pfd = xrealloc(pfd, cap * sizeof *pfd);
            who = xrealloc(who, cap * sizeof *who);
        }
        size_t n = 0;
        int rd_at = -1, listen_at = -1;
        if (S.listen_fd >= 0) {
            listen_at = (int)n;
            pfd[n++] = (struct pollfd){.fd = S.listen_fd, .events = POLLIN};
        }
        if (S.rd) { /* also while idle: a Redis restart shows as end of file now, not at the next XREAD */
            rd_at = (int)n;
            pfd[n++] = (struct pollfd){.fd = S.rd->fd, .events = POLLIN};
        }
        size_t first = n;
        for (conn_t *c = S.conns; c; c = c->next) {
            short ev = (short)(c->fd >= 0 ? POLLIN : 0);
            if (c->out_off < c->out.len)
                ev |= POLLOUT;
            who[n] = c;
            pfd[n++] = (struct pollfd){.fd = c->fd >= 0 ? c->fd : 1, .events = ev};
        }
        int pr = poll(pfd, (nfds_t)n, timeout);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            log_error("stream: poll: %s", strerror(errno));
            break;
        }
        if (listen_at >= 0 && (pfd[listen_at].revents & POLLIN))
            accept_all();
        if (rd_at >= 0 && pfd[rd_at].revents)
            rd_readable();
        for (size_t i = first; i < n; i++) {
            conn_t *c = who[i];
            if (c->dead || !pfd[i].revents)
                continue;
            if (c->fd >= 0 && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                conn_readable(c);
            else if (c->fd < 0 && (pfd[i].revents & (POLLHUP | POLLERR)))
                conn_close(c); /* CGI: the web server closed our stdout */
            if (!c->dead && (pfd[i].revents & POLLOUT))
                flush(c);
        }
        reap();
        heap_return();
    }
    /* shutdown: every open request ends now (streams are reconnected by their clients; a long-poll, whose
     * answer has not begun, gets a whole 503 to retry on, not an empty one the web server would call a 502) */
    for (conn_t *c = S.conns; c; c = c->next) {
        if (c->dead)
            continue;
        if (c->kind == K_WAIT) {
            late_req(c);
            http_unavailable(&S.req); /* with Retry-After: 1 */
            respond(c);
        } else if (c->kind != K_NONE) {
            end_request(c, 503);
        }
        c->closing = 1;
        flush(c);
    }
    reap();
    free(pfd);
    free(who);
}

int main(void)
{
    config_load_or_die("stream");
    db_init(g_config.database_url);
    if (cache_init(g_config.redis_url) != 0) {
        fprintf(stderr, "stream: configuration error: REDIS_URL is not a redis:// or unix:// URL\n");
        return 2;
    }
    metrics_open(g_config.metrics_dir, "stream", 0);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max; /* every waiting client is a descriptor */
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    S.req.pool = pool_new();
    S.rd_retry_at = 0;
    S.listen_fd = -1;

    if (FCGX_Init() != 0) {
        log_error("FCGX_Init failed");
        return 1;
    }
    if (FCGX_IsCGI()) {
        S.cgi = 1;
        extern char **environ;
        conn_t *c = conn_new(-1);
        handle(c, environ);
    } else {
        S.listen_fd = 0;
        int fl = fcntl(0, F_GETFL);
        fcntl(0, F_SETFL, fl | O_NONBLOCK);
        log_info("serving FastCGI (event loop)");
    }
    loop();
    while (S.watches)
        watch_free(S.watches);
    if (S.rd)
        redisFree(S.rd);
    pool_free(S.req.pool);
    buf_free(&S.req.headers);
    buf_free(&S.req.out);
    buf_free(&S.wire);
    db_close();
    cache_close();
    log_info("shutting down");
    return 0;
}
