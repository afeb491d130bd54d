/* fcgi_mem.h: one FastCGI request served through http_handle_request over in-memory libfcgi streams, the
 * seam shared by tests/unit/test_http_request.c and fuzz/http.c. The body is handed out in records of `chunk`
 * bytes and the response is written through a 64-byte buffer, so both cross many record and flush boundaries.
 * Header-only (static functions), for test and fuzz programs only. */
#ifndef GB_FCGI_MEM_H
#define GB_FCGI_MEM_H

#include <fcgiapp.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "util.h"

typedef struct fcgi_mem_reader {
    const unsigned char *body;
    size_t len, pos, chunk;
} fcgi_mem_reader_t;

typedef struct fcgi_mem_writer {
    unsigned char buf[64];
    buf_t wire;
} fcgi_mem_writer_t;

/* The next FastCGI record of the body, or the end of the stream. */
static void fcgi_mem_fill(FCGX_Stream *s)
{
    fcgi_mem_reader_t *r = s->data;
    if (r->pos >= r->len) {
        s->isClosed = 1;
        return;
    }
    size_t n = r->len - r->pos < r->chunk ? r->len - r->pos : r->chunk;
    s->rdNext = s->stopUnget = (unsigned char *)r->body + r->pos;
    s->stop = s->rdNext + n;
    r->pos += n;
}

static void fcgi_mem_empty(FCGX_Stream *s, int close)
{
    fcgi_mem_writer_t *w = s->data;
    (void)close;
    buf_append(&w->wire, w->buf, (size_t)(s->wrNext - w->buf));
    s->wrNext = w->buf;
}

/* Serve one request (params envp, body of len bytes in records of chunk >= 1 bytes) with routes; the response
 * as written to the wire goes into out, NUL-terminated (the caller frees it with buf_free). The writer is on
 * the heap, so that AddressSanitizer sees an overrun of its buffer. */
static void fcgi_mem_serve(char **envp, const void *body, size_t len, size_t chunk, const http_route_t *routes,
                           size_t nroutes, buf_t *out)
{
    fcgi_mem_reader_t r = {body, len, 0, chunk};
    fcgi_mem_writer_t *w = calloc(1, sizeof *w);
    if (!w)
        abort();
    FCGX_Stream in = {.isReader = 1, .fillBuffProc = fcgi_mem_fill, .data = &r};
    in.rdNext = in.stop = in.stopUnget = (unsigned char *)body;
    FCGX_Stream outs = {.wrNext = w->buf, .stop = w->buf + sizeof w->buf, .emptyBuffProc = fcgi_mem_empty, .data = w};
    FCGX_Request fr;
    memset(&fr, 0, sizeof fr);
    fr.in = &in;
    fr.out = &outs;
    fr.envp = envp;
    http_handle_request(&fr, routes, nroutes);
    fcgi_mem_empty(&outs, 1);
    buf_append(&w->wire, "", 0);
    *out = w->wire;
    free(w);
}

#endif
