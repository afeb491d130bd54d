/* upstream: the AI provider and the calls to it. Calls run concurrently (up to WORKER_CONCURRENCY) on one
 * libcurl multi handle in the worker's single thread. Request bodies, URLs, auth headers and the
 * classification of an answer come from lib/ai (pure); this file does the HTTP.
 *
 * Calls are streamed (Gemini streamGenerateContent?alt=sse, OpenAI "stream": true). A call's response body
 * reaches call_body() piece by piece as it arrives: a 2xx text/event-stream body goes through lib/ai_stream,
 * and the text it adds is collected per call and published to the reply's event stream (lib/replystream) once
 * per loop turn (upstream_perform), so a burst of small pieces costs one Redis round trip. Any other body (an
 * error status, a server that answers a plain JSON document) is collected under AI_MAX_RESPONSE_BYTES and
 * classified whole by ai_parse_response as before. When the transfer ends call_result() classifies it and the
 * job gets the result (job_call_done), which stores the reply once, complete. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ai_stream.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "replystream.h"
#include "util.h"
#include "worker.h"

#define CONNECT_TIMEOUT_MS 10000
#define RESUME_EVERY_MS 1000.0 /* publishing that stopped is tried again at most this often */

struct upstream_call {
    job_t *job;
    long long reply_id; /* for log lines */
    CURL *easy;
    struct curl_slist *headers;
    buf_t request;
    capped_t resp; /* the response body, capped at AI_MAX_RESPONSE_BYTES */
    char errbuf[CURL_ERROR_SIZE];
    char retry_after[32]; /* the Retry-After header of the last response, "" when none */
    int sse;              /* the body is a 2xx event stream (decided at its first byte): -1 undecided, 0 no, 1 yes */
    ai_stream_t *stream;  /* sse: the parser */
    buf_t delta;          /* sse: text not yet published */
    int publish;          /* publishing to the reply's event stream works (Redis answered begin) */
    double resume_at;     /* !publish: not before this is publishing tried again */
    double complete_at;   /* sse: when the parser had the whole answer; 0 not yet */
    double started_at;    /* when the transfer was started (an ended lingering call's duration for /metrics) */
    struct upstream_call *prev, *next; /* the calls in flight */
};

static struct {
    enum ai_provider provider;
    const char *model, *key;
    buf_t url, auth;
    CURLM *multi;
    upstream_call_t *calls; /* in flight */
} U;

int upstream_init(void)
{
    int p = ai_provider_parse(g_config.ai_provider);
    if (p < 0) {
        fprintf(stderr, "worker: AI_PROVIDER must be gemini, openai or offline\n");
        return -1;
    }
    U.provider = (enum ai_provider)p;
    U.multi = curl_multi_init();
    if (!U.multi) {
        fprintf(stderr, "worker: curl_multi_init failed\n");
        return -1;
    }
    curl_multi_setopt(U.multi, CURLMOPT_MAXCONNECTS, g_worker.concurrency);
    if (U.provider == AI_PROVIDER_OFFLINE) {
        log_info("AI provider: offline (answers are a labelled local stand-in)");
        return 0;
    }
    int gemini = U.provider == AI_PROVIDER_GEMINI;
    const char *base = gemini ? g_config.gemini_api_base : g_config.openai_api_base;
    U.model = gemini ? g_config.gemini_model : g_config.openai_model;
    U.key = gemini ? g_config.gemini_api_key : g_config.openai_api_key;
    if (U.provider == AI_PROVIDER_OPENAI && !U.model) {
        /* Chat completions servers (OpenAI, Groq, Ollama) refuse a request without "model": every reply would
         * fail with a 400. */
        fprintf(stderr, "worker: configuration error: AI_PROVIDER=openai needs OPENAI_MODEL (the model every "
                        "request names, e.g. gpt-4o-mini or llama-3.1-8b-instant)\n");
        return -1;
    }
    if (ai_build_stream_url(U.provider, base, U.model, &U.url) != 0) {
        fprintf(stderr, "worker: cannot build the %s URL: check %s and the model name\n", ai_provider_name(U.provider),
                gemini ? "GEMINI_API_BASE" : "OPENAI_API_BASE");
        return -1;
    }
    if (ai_auth_header(U.provider, U.key, &U.auth) < 0) {
        fprintf(stderr, "worker: the %s API key holds spaces or control characters\n", ai_provider_name(U.provider));
        return -1;
    }
    buf_t shown = {0};
    url_for_log(&shown, U.url.data);
    log_info("AI provider: %s at %s (model %s)", ai_provider_name(U.provider), shown.data, U.model ? U.model : "-");
    buf_free(&shown);
    return 0;
}

void upstream_cleanup(void)
{
    if (U.multi)
        curl_multi_cleanup(U.multi);
    U.multi = NULL;
    buf_free(&U.url);
    buf_free(&U.auth);
}

const char *upstream_name(void)
{
    return ai_provider_name(U.provider);
}

static int big_freed; /* a call's buffers over BUF_KEEP were freed since upstream_big_freed() */

int upstream_big_freed(void)
{
    int was = big_freed;
    big_freed = 0;
    return was;
}

void upstream_call_free(upstream_call_t *c)
{
    if (!c)
        return;
    big_freed |= c->request.cap > BUF_KEEP || c->resp.b.cap > BUF_KEEP || c->delta.cap > BUF_KEEP;
    if (c->easy) {
        curl_multi_remove_handle(U.multi, c->easy);
        curl_easy_cleanup(c->easy);
    }
    if (c->prev)
        c->prev->next = c->next;
    else if (U.calls == c)
        U.calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    curl_slist_free_all(c->headers);
    buf_free(&c->request);
    buf_free(&c->resp.b);
    buf_free(&c->delta);
    ai_stream_free(c->stream);
    free(c);
}

/* Is the response of c a 2xx event stream? Asked at the first byte of the body, when the headers are in. */
static int is_event_stream(upstream_call_t *c)
{
    long status = 0;
    char *type = NULL;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c->easy, CURLINFO_CONTENT_TYPE, &type);
    return status >= 200 && status < 300 && type && strncasecmp(type, "text/event-stream", 17) == 0;
}

/* The body seam: data[0..len) is the next piece of c's response body, split wherever the network split it.
 * 0 go on, -1 stop the transfer (curl then ends it with CURLE_WRITE_ERROR: a plain body too large, or a stream
 * the parser gave up on, whose own reason call_result then reports). A stream whose answer is complete is read
 * on to its end, so that the connection is reused (a new TLS handshake per reply otherwise); the time it is
 * complete is noted, and upstream_perform ends a transfer that then lingers (AFTER_FINISH_MS). */
static int call_body(upstream_call_t *c, const char *data, size_t len)
{
    if (c->sse < 0) {
        c->sse = is_event_stream(c);
        if (c->sse)
            c->stream = ai_stream_new(U.provider);
    }
    if (!c->sse)
        return capped_write((char *)data, 1, len, &c->resp) == len ? 0 : -1;
    int st = ai_stream_feed(c->stream, data, len, c->publish ? &c->delta : NULL);
    if (st == AI_STREAM_COMPLETE && !c->complete_at)
        c->complete_at = now_ms();
    return st == AI_STREAM_FAILED ? -1 : 0;
}

/* Publish what c's answer added since the last time. A Redis failure stops publishing for this call until
 * resume() starts it again (readers meanwhile wait, and get the stored reply at the end in any case), and tells
 * the whole worker that Redis is down (upkeep), so that no other call waits on it meanwhile; the answer itself
 * is not affected. */
static void publish(upstream_call_t *c)
{
    if (!c->publish || !c->delta.len)
        return;
    int ready = upkeep_redis_ready(now_ms());
    if (!ready || replystream_delta(c->reply_id, c->delta.data, c->delta.len) != 0) {
        if (ready) {
            log_warn("reply %lld: cannot publish to its event stream (Redis); trying again once it answers",
                     c->reply_id);
            upkeep_redis_down();
        }
        c->publish = 0;
        c->resume_at = now_ms() + RESUME_EVERY_MS;
    }
    buf_reset(&c->delta);
}

/* Publishing stopped (Redis down when the call began, or a write failed) and Redis answers again: start the
 * reply's event stream over (restart) with the whole text so far, then go on piece by piece. At most once a
 * second per call, and only while the worker believes Redis is up. */
static void resume(upstream_call_t *c)
{
    double now = now_ms();
    if (c->publish || c->sse == 0 || now < c->resume_at || upkeep_redis_down_now())
        return;
    c->resume_at = now + RESUME_EVERY_MS;
    size_t len = 0;
    const char *text = c->stream ? ai_stream_text(c->stream, &len) : "";
    if (replystream_resume(c->reply_id, text, len) != 0)
        return;
    c->publish = 1;
    buf_reset(&c->delta);
    log_info("reply %lld: published again, from the start of the attempt", c->reply_id);
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    size_t len = size * n;
    return call_body(arg, data, len) == 0 ? len : 0;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    upstream_call_t *c = arg;
    size_t len = size * n;
    if (len >= 12 && strncasecmp(data, "retry-after:", 12) == 0) {
        size_t v = len - 12;
        if (v >= sizeof c->retry_after)
            v = sizeof c->retry_after - 1;
        memcpy(c->retry_after, data + 12, v);
        c->retry_after[v] = '\0';
    } else if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        c->retry_after[0] = '\0'; /* a new response (after a 100 Continue) */
    }
    return len;
}

static int start_transfer(upstream_call_t *c)
{
    CURL *e = curl_easy_init();
    if (!e)
        return -1;
    c->easy = e;
    c->headers = curl_slist_append(c->headers, "Content-Type: application/json");
    c->headers = curl_slist_append(c->headers, "Expect:");
    if (U.auth.len)
        c->headers = curl_slist_append(c->headers, U.auth.data);
    curl_easy_setopt(e, CURLOPT_URL, U.url.data);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->request.data);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->request.len);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, g_config.ai_timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     g_config.ai_timeout_ms < CONNECT_TIMEOUT_MS ? g_config.ai_timeout_ms : CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* gzip etc.; the ceiling applies to the decoded body */
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "gemini-backend-worker/1");
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    c->errbuf[0] = '\0';
    if (curl_multi_add_handle(U.multi, e) != CURLM_OK)
        return -1;
    c->next = U.calls;
    if (U.calls)
        U.calls->prev = c;
    U.calls = c;
    return 0;
}

int upstream_start(job_t *j, long long reply_id, int retry, const ai_turn_t *turns, size_t n, upstream_call_t **call,
                   buf_t *answer)
{
    *call = NULL;
    if (U.provider == AI_PROVIDER_OFFLINE) {
        ai_turn_t *norm = xcalloc(n ? n : 1, sizeof *norm);
        size_t k = 0;
        int rc = UPSTREAM_NOTHING;
        if (ai_normalise(turns, n, norm, &k) == 0) {
            ai_offline_reply(norm, k, answer);
            rc = UPSTREAM_ANSWERED;
        }
        free(norm);
        return rc;
    }
    upstream_call_t *c = xcalloc(1, sizeof *c);
    c->job = j;
    c->reply_id = reply_id;
    c->resp.max = AI_MAX_RESPONSE_BYTES;
    c->sse = -1;
    if (ai_build_stream_request(U.provider, turns, n, g_config.ai_system_prompt, U.model, &c->request) != 0) {
        upstream_call_free(c);
        return UPSTREAM_NOTHING;
    }
    c->started_at = now_ms();
    if (start_transfer(c) != 0) {
        upstream_call_free(c);
        return UPSTREAM_FAILED;
    }
    /* A new attempt: readers drop whatever an earlier one streamed (restart). */
    int ready = upkeep_redis_ready(now_ms());
    c->publish = ready && replystream_begin(reply_id, retry) == 0;
    if (ready && !c->publish)
        upkeep_redis_down(); /* the other calls do not wait on it too */
    if (!c->publish) {
        log_warn("reply %lld: not published as it is written (Redis down); trying again once it answers", reply_id);
        c->resume_at = now_ms() + RESUME_EVERY_MS;
    }
    *call = c;
    return UPSTREAM_STARTED;
}

/* The transfer of c ended with code: classify it into r (the caller frees it with ai_result_free). */
static void call_result(upstream_call_t *c, CURLcode code, ai_result_t *r)
{
    if (c->sse == 1 &&
        (code == CURLE_OK || code == CURLE_WRITE_ERROR || ai_stream_state(c->stream) == AI_STREAM_COMPLETE)) {
        /* the stream ended, or the parser stopped it (or had the whole answer before the transport failed): its
         * own verdict (complete, refused, cut short, ...) */
        resume(c);
        ai_stream_finish(c->stream, c->publish ? &c->delta : NULL, r);
        publish(c);
        if (r->status != AI_OK)
            log_warn("reply %lld: %s%s%s", c->reply_id, r->error, r->detail[0] ? ": " : "", r->detail);
        return;
    }
    if (code != CURLE_OK) {
        ai_transport_error((int)code, r);
        log_warn("reply %lld: %s: %s", c->reply_id, r->error, c->errbuf[0] ? c->errbuf : r->detail);
        return;
    }
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    ai_parse_response(U.provider, status, c->resp.b.data, c->resp.b.len, c->retry_after[0] ? c->retry_after : NULL, r);
    if (r->status != AI_OK)
        log_warn("reply %lld: %s%s%s", c->reply_id, r->error, r->detail[0] ? ": " : "", r->detail);
}

/* How long a transfer may go on after its answer is complete (the server keeps the connection open without
 * ending the response) before it is ended and the answer taken. */
#define AFTER_FINISH_MS 1000

void upstream_perform(void)
{
    int running = 0;
    curl_multi_perform(U.multi, &running);
    for (upstream_call_t *c = U.calls; c; c = c->next) {
        resume(c);
        publish(c);
    }
    double now = now_ms();
    for (upstream_call_t *c = U.calls, *next; c; c = next) {
        next = c->next;
        if (!c->complete_at || now - c->complete_at < AFTER_FINISH_MS)
            continue;
        log_info("reply %lld: the answer is whole but the upstream keeps the connection open; ending it", c->reply_id);
        metrics_upstream(c->complete_at - c->started_at); /* ended here, curl never reports it */
        ai_result_t r;
        call_result(c, CURLE_OK, &r);
        job_call_done(c->job, &r); /* frees c */
        ai_result_free(&r);
    }
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(U.multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        upstream_call_t *c = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        if (!c)
            continue;
        curl_off_t us = 0;
        if (curl_easy_getinfo(m->easy_handle, CURLINFO_TOTAL_TIME_T, &us) == CURLE_OK)
            metrics_upstream((double)us / 1000.0);
        ai_result_t r;
        call_result(c, m->data.result, &r);
        job_call_done(c->job, &r); /* frees c */
        ai_result_free(&r);
    }
}

void upstream_wait(long timeout_ms)
{
    curl_multi_poll(U.multi, NULL, 0, (int)timeout_ms, NULL);
}
