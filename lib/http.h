/* http: one request/response over libfcgi (FastCGI, persistent) or plain CGI (one request per process),
 * a small router, and the JSON error helper. All strings reachable from http_req_t live in req->pool and
 * die at the end of the request. */
#ifndef GB_HTTP_H
#define GB_HTTP_H

#include <stddef.h>
#include <json-c/json.h>

#include "util.h"

#define HTTP_MAX_BODY 131072          /* bytes (128 KiB); larger bodies get 413 payload_too_large */
#define HTTP_MAX_BODY_WEBHOOK 1048576 /* bytes (1 MiB): the cap of POST /webhook/stripe (http_set_max_body) */
#define HTTP_MAX_PARAMS 4

typedef struct http_io http_io_t; /* FastCGI or CGI, private to http.c */

typedef struct http_req {
    pool_t *pool;
    const char *method; /* "GET", ... */
    const char *path;   /* from REQUEST_URI (or SCRIPT_NAME+PATH_INFO), no query, no trailing slash */
    const char *query;  /* raw QUERY_STRING, "" if none */
    const char *body;   /* NUL-terminated copy of the body ("" if none) */
    size_t body_len;
    char request_id[65];                 /* the client's X-Request-Id if sane, else a random one */
    const char *params[HTTP_MAX_PARAMS]; /* {name} captures of the matched route, in order */
    int nparams;
    long long user_id;   /* set by auth_require */
    int token_version;   /* set by auth_require */
    long long token_iat; /* set by auth_require: when the token was issued (Unix seconds) */

    /* response, filled by the handler */
    int status;
    buf_t headers; /* extra "Name: value\r\n" lines */
    buf_t out;     /* response body */
    int responded;

    http_io_t *io;
} http_req_t;

typedef void (*http_handler_fn)(http_req_t *req);

/* A route: method and pattern. Pattern segments "{name}" capture one path segment into req->params; a
 * capture matches only a non-empty segment of ASCII digits [0-9]+ (so "/chatroom/usage" or "/chatroom/abc"
 * never fill an {id}; "0", "007" or a number too large for an id still do, and the handler answers 404 through
 * http_param_id). The router answers 404 not_found for an unknown path and 405 method_not_allowed with Allow
 * for a known path and another method. HEAD runs the GET route; its response goes out without the body. */
typedef struct http_route {
    const char *method;
    const char *pattern;
    http_handler_fn fn;
} http_route_t;

/* Request header by its HTTP name ("Authorization"); NULL if absent. */
const char *http_header(http_req_t *req, const char *name);
/* Raw CGI/FastCGI parameter ("REQUEST_METHOD"); NULL if absent. */
const char *http_param(http_req_t *req, const char *name);
/* Query parameter, percent-decoded, in the pool; NULL if absent. */
const char *http_query(http_req_t *req, const char *name);
/* s[0..n) percent-decoded, '+' read as a space (query and form rules; an encoded "%2B" stays '+'), NUL-terminated,
 * in the pool. A '%' without two hex digits is kept as it is, and so is "%00" (a NUL would cut the string); a NUL
 * byte in s ends it. Never NULL (allocation failure aborts, as everywhere). */
char *http_url_decode(pool_t *pool, const char *s, size_t n);

/* Add a response header (name and value must not contain CR/LF; such values are dropped). */
void http_set_header(http_req_t *req, const char *name, const char *value);

/* Respond with a JSON body; takes ownership of obj (json_object_put). */
void http_json(http_req_t *req, int status, json_object *obj);
/* Respond with bytes already serialized (e.g. a cached JSON document). */
void http_raw(http_req_t *req, int status, const char *content_type, const char *body, size_t len);
/* 204 or another bodiless status. */
void http_empty(http_req_t *req, int status);
/* The one error shape: {"error":{"code":code,"message":message}}. */
void http_error(http_req_t *req, int status, const char *code, const char *message);
/* Shorthands for the common failures. */
void http_unavailable(http_req_t *req); /* 503 unavailable */
void http_internal(http_req_t *req);    /* 500 internal_error, nothing leaked */
void http_not_found(http_req_t *req);   /* 404 not_found */
/* After a failed db_ call: 503 unavailable when PostgreSQL is unreachable, else 500 internal_error. */
void http_db_failed(http_req_t *req);

/* Parse the body as a strict JSON object. NULL after answering 400 invalid_json (not JSON, trailing
 * garbage, not an object, invalid UTF-8). The caller owns the result (json_object_put). */
json_object *http_json_body(http_req_t *req);
/* For an endpoint that needs no body: 0 when there is none or it is a JSON object (ignored), -1 after answering
 * 400 as http_json_body does (API.md: a body that is not a JSON object is refused, nothing written). */
int http_json_body_optional(http_req_t *req);

/* An Idempotency-Key: 1..HTTP_IDEM_KEY_MAX bytes, each visible ASCII (0x21..0x7e). 1 valid, 0 not. */
#define HTTP_IDEM_KEY_MAX 255
int http_idem_key_valid(const char *key);
/* The request's Idempotency-Key into *key (NULL when it sent none): 0 ok; -1 answered 400 validation_error
 * (a key that is not valid). */
int http_idem_key(http_req_t *req, const char **key);

/* Route captured parameter {name} at index i as a positive id; 0 if it is not a positive integer. */
long long http_param_id(http_req_t *req, int i);

/* Body cap of this program from now on (default HTTP_MAX_BODY); call it before http_serve. A body over the cap
 * is answered 413 payload_too_large before any route runs. */
void http_set_max_body(size_t bytes);

/* The program's main loop: config_load_or_die(prog), then serve FastCGI requests until SIGTERM, or one
 * CGI request when stdin is not a FastCGI listening socket. init (may be NULL) runs once before serving.
 * Returns the process exit status. Around the routes, for every request:
 *  - a REDIRECT_STATUS of 400..599 (the web server's own error handed to us) is answered with that status in
 *    the JSON error shape, whatever the path (http_server_error_code);
 *  - a CORS preflight (OPTIONS with Origin and Access-Control-Request-Method) from an origin of
 *    CORS_ALLOWED_ORIGINS is answered 204 with the Access-Control-Allow-* headers for a known path;
 *  - every response to an allowed Origin carries Access-Control-Allow-Origin, -Expose-Headers and Vary. */
int http_serve(const char *prog, const http_route_t *routes, size_t nroutes, void (*init)(void));

/* For a program that runs its own event loop over the FastCGI socket (cgi-bin/stream.c) instead of http_serve:
 * start req (its pool set, the rest zeroed) over envp, "NAME=value" strings ending with NULL, which stay the
 * caller's and must outlive every use of req. Sets method, path, query and request_id as http_serve does; no
 * body is read (body ""). The handler helpers (auth_require, http_error, ...) then work as usual. */
void http_req_begin(http_req_t *req, char **envp);
/* Empty req for the next request (or a late response): everything zeroed (io too: http_req_begin's is in the
 * pool) but its pool (reset) and its header and output buffers (emptied, their memory kept). */
void http_req_reset(http_req_t *req);
/* The response set on req as http_serve writes it (Status, X-Request-Id, the extra headers, CORS, then
 * Content-Length and the body) into wire (reset first). streamed: the header block only, without
 * Content-Length, for a body the caller writes as it is made. */
void http_response_wire(http_req_t *req, buf_t *wire, int streamed);

/* Exposed for unit tests: route matching. Returns the route index, -1 for no path match (404), -2 for a
 * path match with another method (then allow is filled with "GET, POST"). */
int http_route_match(const http_route_t *routes, size_t n, const char *method, const char *path, const char **params,
                     int *nparams, char *allow, size_t allowlen, pool_t *pool);
/* The metrics label of a request: the pattern of the first route its path names, whatever its method (a
 * refused one counts under its endpoint too), else "unmatched". */
const char *http_route_label(const http_route_t *routes, size_t n, const char *path, pool_t *pool);
/* Exposed for unit tests: is origin (an Origin header value) one of list (CORS_ALLOWED_ORIGINS: comma-separated,
 * spaces around commas allowed; NULL or "" allows none)? Exact match, ASCII case-insensitive. 1 yes, 0 no. */
int http_cors_allowed(const char *list, const char *origin);
/* Exposed for unit tests: the error code answered for a status the web server hands over through
 * REDIRECT_STATUS (its own error, routed to us by server.error-handler / error_page / ErrorDocument), e.g.
 * 413 "payload_too_large", 411 "length_required"; NULL unless status is 400..599. */
const char *http_server_error_code(int status);
/* Exposed for unit tests: the status answered for a status the web server hands over through REDIRECT_STATUS:
 * the same, except its own 500 (its FastCGI program died mid-request, e.g. killed) which is 503 unavailable, so
 * that a crash is never a 500 and the client retries. */
int http_server_error_status(int status);
/* Exposed for unit tests: normalise a request path (drop query, collapse a trailing slash) into the pool. */
const char *http_normalize_path(pool_t *pool, const char *uri);

/* Exposed for fuzzing and tests: serve the one request fr describes exactly as http_serve's loop does (path,
 * query, headers, body read with the cap, REDIRECT_STATUS, CORS, routing, the response written to fr->out), with
 * buffers of its own that are freed before it returns. fr needs only envp, in and out: an accepted FastCGI
 * request, or one built in memory over FCGX_Streams of the caller's (fuzz/http.c). */
struct FCGX_Request;
void http_handle_request(struct FCGX_Request *fr, const http_route_t *routes, size_t nroutes);

#endif
