#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <fcgiapp.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "config.h"
#include "db.h"
#include "jsonv.h"
#include "log.h"
#include "metrics.h"

extern char **environ;

struct http_io {
    FCGX_Request *fcgi; /* NULL in CGI mode: environ, stdin, stdout */
    char **envp;        /* http_req_begin: the caller's parameters (its own event loop does the I/O) */
};

/* ---- request data ---- */

const char *http_param(http_req_t *req, const char *name)
{
    if (req->io && req->io->fcgi)
        return FCGX_GetParam(name, req->io->fcgi->envp);
    if (req->io && req->io->envp)
        return FCGX_GetParam(name, req->io->envp);
    return getenv(name);
}

const char *http_header(http_req_t *req, const char *name)
{
    char key[128];
    size_t n = strlen(name);
    if (strcasecmp(name, "Content-Type") == 0)
        return http_param(req, "CONTENT_TYPE");
    if (strcasecmp(name, "Content-Length") == 0)
        return http_param(req, "CONTENT_LENGTH");
    if (n + 6 > sizeof key)
        return NULL;
    memcpy(key, "HTTP_", 5);
    for (size_t i = 0; i < n; i++)
        key[5 + i] = name[i] == '-' ? '_' : (char)toupper((unsigned char)name[i]);
    key[5 + n] = '\0';
    return http_param(req, key);
}

/* By hand rather than libcurl's curl_easy_unescape: that one call made every FastCGI program load libcurl and the
 * eight libraries it needs (about 140 KiB of private memory per process; bench/soak.sh). */
char *http_url_decode(pool_t *pool, const char *s, size_t n)
{
    char *out = pool_alloc(pool, n + 1), *o = out;

    for (size_t i = 0; i < n && s[i]; i++) {
        int hi, lo;
        if (s[i] == '+') {
            *o++ = ' ';
        } else if (s[i] == '%' && i + 2 < n && (hi = hex_digit((unsigned char)s[i + 1])) >= 0 &&
                   (lo = hex_digit((unsigned char)s[i + 2])) >= 0 && (hi | lo) != 0) {
            *o++ = (char)(hi << 4 | lo); /* "%00" is kept as it is (the else): a NUL would cut the string */
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

const char *http_query(http_req_t *req, const char *name)
{
    size_t nl = strlen(name);
    const char *q = req->query;
    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        size_t kl = eq ? (size_t)(eq - q) : len;
        char *key = http_url_decode(req->pool, q, kl);
        if (strlen(key) == nl && memcmp(key, name, nl) == 0)
            return eq ? http_url_decode(req->pool, eq + 1, len - kl - 1) : "";
        q = amp ? amp + 1 : NULL;
    }
    return NULL;
}

const char *http_normalize_path(pool_t *pool, const char *uri)
{
    if (!uri || !*uri)
        return "/";
    size_t n = strcspn(uri, "?#");
    while (n > 1 && uri[n - 1] == '/')
        n--;
    return pool_strndup(pool, uri, n);
}

long long http_param_id(http_req_t *req, int i)
{
    long long v;
    if (i < 0 || i >= req->nparams || parse_ll(req->params[i], 1, 9007199254740991LL, &v) != 0)
        return 0;
    if (req->params[i][0] == '0') /* "007" is not an id */
        return 0;
    return v;
}

/* ---- responses ---- */

static const char *status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

static int header_safe(const char *s)
{
    for (; *s; s++)
        if (*s == '\r' || *s == '\n')
            return 0;
    return 1;
}

void http_set_header(http_req_t *req, const char *name, const char *value)
{
    if (!header_safe(name) || !header_safe(value))
        return;
    buf_puts(&req->headers, name);
    buf_append(&req->headers, ": ", 2);
    buf_puts(&req->headers, value);
    buf_append(&req->headers, "\r\n", 2);
}

static const char *content_type_json = "application/json; charset=utf-8";

void http_raw(http_req_t *req, int status, const char *content_type, const char *body, size_t len)
{
    buf_reset(&req->out);
    req->status = status;
    if (content_type)
        http_set_header(req, "Content-Type", content_type);
    if (len)
        buf_append(&req->out, body, len);
    req->responded = 1;
}

void http_json(http_req_t *req, int status, json_object *obj)
{
    size_t len;
    const char *s = jsonv_dump(obj, &len);
    http_raw(req, status, content_type_json, s, len);
    json_object_put(obj);
}

void http_empty(http_req_t *req, int status)
{
    http_raw(req, status, NULL, NULL, 0);
}

void http_error(http_req_t *req, int status, const char *code, const char *message)
{
    /* Every 401 names its scheme (RFC 9110 11.6.1): a wrong password or code is answered like a refused token. */
    if (status == 401 && !(req->headers.len && memmem(req->headers.data, req->headers.len, "WWW-Authenticate:", 17)))
        http_set_header(req, "WWW-Authenticate", "Bearer");
    json_object *err = json_object_new_object();
    json_object_object_add(err, "code", json_object_new_string(code));
    json_object_object_add(err, "message", json_object_new_string(message));
    json_object *root = json_object_new_object();
    json_object_object_add(root, "error", err);
    http_json(req, status, root);
}

void http_unavailable(http_req_t *req)
{
    http_set_header(req, "Retry-After", "1");
    http_error(req, 503, "unavailable", "A backing service is temporarily unavailable; try again shortly.");
}

void http_internal(http_req_t *req)
{
    http_error(req, 500, "internal_error", "Something went wrong on our side.");
}

void http_db_failed(http_req_t *req)
{
    if (db_unavailable() || db_conflict())
        http_unavailable(req);
    else
        http_internal(req);
}

void http_not_found(http_req_t *req)
{
    http_error(req, 404, "not_found", "No such resource.");
}

/* json-c reads NaN, Infinity and -Infinity even in strict mode; JSON (RFC 8259) has no such numbers. The
 * parser's depth limit (32) bounds the recursion. */
static int all_finite(json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_double: return isfinite(json_object_get_double(o));
    case json_type_array:
        for (size_t i = 0, n = json_object_array_length(o); i < n; i++)
            if (!all_finite(json_object_array_get_idx(o, i)))
                return 0;
        return 1;
    case json_type_object: {
        json_object_object_foreach(o, k, v)
        {
            (void)k;
            if (!all_finite(v))
                return 0;
        }
        return 1;
    }
    default: return 1;
    }
}

json_object *http_json_body(http_req_t *req)
{
    json_object *obj = NULL;
    const char *not_text = jsonv_not_text(req->body, req->body_len);
    if (not_text) {
        char msg[96];
        snprintf(msg, sizeof msg, "The request body %s.", not_text);
        http_error(req, 400, "invalid_json", msg);
        return NULL;
    }
    json_tokener *tok = json_tokener_new();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    if (req->body_len > 0)
        obj = json_tokener_parse_ex(tok, req->body, (int)req->body_len);
    int bad = !obj || json_tokener_get_error(tok) != json_tokener_success ||
              json_tokener_get_parse_end(tok) != req->body_len || !all_finite(obj);
    json_tokener_free(tok);
    if (bad) {
        json_object_put(obj);
        http_error(req, 400, "invalid_json", "The request body must be a valid JSON object.");
        return NULL;
    }
    if (!json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        http_error(req, 400, "invalid_json", "The request body must be a JSON object.");
        return NULL;
    }
    return obj;
}

int http_idem_key_valid(const char *key)
{
    size_t n = 0;
    if (!key)
        return 0;
    for (; key[n]; n++) {
        unsigned char c = (unsigned char)key[n];
        if (c < 0x21 || c > 0x7e || n >= HTTP_IDEM_KEY_MAX)
            return 0;
    }
    return n > 0;
}

int http_idem_key(http_req_t *req, const char **key)
{
    *key = http_header(req, "Idempotency-Key");
    if (*key && !http_idem_key_valid(*key)) {
        http_error(req, 400, "validation_error", "Idempotency-Key must be 1 to 255 visible ASCII characters.");
        return -1;
    }
    return 0;
}

int http_json_body_optional(http_req_t *req)
{
    if (req->body_len == 0)
        return 0;
    json_object *body = http_json_body(req);
    if (!body)
        return -1;
    json_object_put(body);
    return 0;
}

/* ---- routing ---- */

static int all_digits(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return len > 0;
}

/* Does pattern match path? Fills params (pointers into the pool). A capture takes only a segment of ASCII
 * digits, so "/chatroom/usage" is never an {id} and a non-numeric segment is no route at all. */
static int pattern_match(const char *pattern, const char *path, const char **params, int *nparams, pool_t *pool)
{
    int n = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p != '/' || *s != '/')
            return 0;
        p++, s++;
        const char *pe = strchr(p, '/'), *se = strchr(s, '/');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p), sl = se ? (size_t)(se - s) : strlen(s);
        if (pl >= 2 && p[0] == '{' && p[pl - 1] == '}') {
            if (!all_digits(s, sl) || n >= HTTP_MAX_PARAMS)
                return 0;
            if (params)
                params[n] = pool_strndup(pool, s, sl);
            n++;
        } else if (pl != sl || memcmp(p, s, sl) != 0)
            return 0;
        p += pl, s += sl;
    }
    if (*p || *s)
        return 0;
    if (nparams)
        *nparams = n;
    return 1;
}

int http_route_match(const http_route_t *routes, size_t n, const char *method, const char *path, const char **params,
                     int *nparams, char *allow, size_t allowlen, pool_t *pool)
{
    int path_found = 0;
    size_t used = 0;
    if (allowlen)
        allow[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!pattern_match(routes[i].pattern, path, NULL, NULL, pool))
            continue;
        if (strcmp(routes[i].method, method) == 0) {
            pattern_match(routes[i].pattern, path, params, nparams, pool);
            return (int)i;
        }
        path_found = 1;
        if (strstr(allow, routes[i].method) == NULL) { /* no duplicates in Allow */
            /* HEAD is served wherever GET is (the GET route, without the body), so Allow names it too. */
            int get = strcmp(routes[i].method, "GET") == 0;
            int w = snprintf(allow + used, allowlen - used, "%s%s%s", used ? ", " : "", routes[i].method,
                             get ? ", HEAD" : "");
            if (w > 0 && (size_t)w < allowlen - used)
                used += (size_t)w;
        }
    }
    return path_found ? -2 : -1;
}

const char *http_route_label(const http_route_t *routes, size_t n, const char *path, pool_t *pool)
{
    for (size_t i = 0; i < n; i++)
        if (pattern_match(routes[i].pattern, path, NULL, NULL, pool))
            return routes[i].pattern;
    return "unmatched";
}

/* ---- the static files ---- */

/* Is path one of the static files' (the web client and the API reference: "/", /docs, /docs/..., /static/...,
 * /openapi.yaml)? The web servers serve them for GET and HEAD; any other method reaches the app, which answers
 * 405 with their Allow. */
static int static_path(const char *path)
{
    return strcmp(path, "/") == 0 || strcmp(path, "/docs") == 0 || strncmp(path, "/docs/", 6) == 0 ||
           strncmp(path, "/static/", 8) == 0 || strcmp(path, "/openapi.yaml") == 0;
}

static void static_method_refused(http_req_t *req)
{
    http_set_header(req, "Allow", "GET, HEAD");
    http_error(req, 405, "method_not_allowed", "The static files are served to GET and HEAD only.");
}

/* ---- errors of the web server, handed to us ---- */

const char *http_server_error_code(int status)
{
    switch (status) {
    case 400: return "validation_error"; /* API.md's code of a request that is malformed, not its JSON */
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 408: return "request_timeout";
    case 411: return "length_required";
    case 413: return "payload_too_large";
    case 414: return "uri_too_long";
    case 431: return "headers_too_large";
    case 501: return "not_implemented";
    case 505: return "http_version_not_supported";
    case 502:
    case 503:
    case 504: return "unavailable";
    default: break;
    }
    if (status >= 400 && status <= 499)
        return "bad_request";
    if (status >= 500 && status <= 599)
        return "internal_error";
    return NULL;
}

int http_server_error_status(int status)
{
    /* The web server's own 500 is a failure of the server or of its FastCGI program (lighttpd: the program died
     * in the middle of the request; ours would have answered itself), not of the request: the client may retry,
     * and with an Idempotency-Key the retry tells whether the first one committed. */
    if (status == 500)
        return 503;
    /* Nothing here is forbidden to someone and open to others: the servers' 403 is a directory or a hidden file
     * of the web root, a resource that is not there (and API.md never reveals what exists). */
    return status == 403 ? 404 : status;
}

static const char *server_error_message(int status)
{
    switch (status) {
    case 404: return "No such resource.";
    case 405: return "This method is not allowed on this resource.";
    case 408: return "The request took too long to arrive.";
    case 411: return "This request needs a Content-Length header (Content-Length: 0 for an empty body).";
    case 413: return "The request body is too large.";
    case 414: return "The request URI is too long.";
    case 431: return "The request headers are too large.";
    case 501: return "This method is not supported.";
    case 505: return "This HTTP version is not supported: use HTTP/1.1 (or 1.0).";
    case 502:
    case 503:
    case 504: return "A backing service is temporarily unavailable; try again shortly.";
    default: return status < 500 ? "The request is malformed." : "Something went wrong on our side.";
    }
}

/* The web server answered the request itself with an error (a body over its own limit, lighttpd's 411 for a
 * POST without Content-Length, a backend it could not reach, ...) and routed that error to us (lighttpd
 * server.error-handler, nginx error_page, Apache ErrorDocument) so that the client still gets our JSON shape and
 * an X-Request-Id. The status comes as the CGI variable REDIRECT_STATUS, which no client can set (headers
 * arrive as HTTP_*). Returns the status, or 0 for an ordinary request. */
static int server_error_status(http_req_t *req)
{
    long long st;
    const char *rs = http_param(req, "REDIRECT_STATUS");
    if (!rs || parse_ll(rs, 400, 599, &st) != 0)
        return 0;
    return (int)st;
}

/* ---- CORS ---- */

int http_cors_allowed(const char *list, const char *origin)
{
    size_t olen = origin ? strlen(origin) : 0;
    if (!list || olen == 0)
        return 0;
    for (const char *p = list; p;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, ",");
        while (n && p[n - 1] == ' ')
            n--;
        if (n == olen && strncasecmp(p, origin, n) == 0)
            return 1;
        p = strchr(p, ',');
        if (p)
            p++;
    }
    return 0;
}

/* The request headers a browser may send cross-origin, and the response headers its script may read. */
#define CORS_ALLOW_HEADERS "Authorization, Content-Type, Idempotency-Key, X-Request-Id"
#define CORS_EXPOSE_HEADERS "X-Request-Id, Retry-After, X-Cache, Idempotent-Replayed, WWW-Authenticate"
#define CORS_MAX_AGE "600"

/* The request's Origin when CORS_ALLOWED_ORIGINS lists it, else NULL. */
static const char *cors_origin(http_req_t *req)
{
    const char *origin = http_header(req, "Origin");
    if (!g_config.cors_allowed_origins || !http_cors_allowed(g_config.cors_allowed_origins, origin))
        return NULL;
    return header_safe(origin) ? origin : NULL;
}

/* A preflight from an allowed origin for a known path: 204 with what may follow. allow is the path's methods. */
static void cors_preflight(http_req_t *req, const char *allow)
{
    http_set_header(req, "Access-Control-Allow-Methods", allow);
    http_set_header(req, "Access-Control-Allow-Headers", CORS_ALLOW_HEADERS);
    http_set_header(req, "Access-Control-Max-Age", CORS_MAX_AGE);
    http_empty(req, 204);
}

/* ---- the request cycle ---- */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void set_request_id(http_req_t *req)
{
    static const char hex[] = "0123456789abcdef";
    const char *rid = http_header(req, "X-Request-Id");
    size_t n = rid ? strlen(rid) : 0;
    int sane = n >= 1 && n <= 64;
    for (size_t i = 0; sane && i < n; i++)
        sane = isalnum((unsigned char)rid[i]) || rid[i] == '-' || rid[i] == '_' || rid[i] == '.' || rid[i] == ':';
    if (sane) {
        memcpy(req->request_id, rid, n + 1);
        return;
    }
    for (int half = 0; half < 2; half++) {
        uint64_t r = rng_next();
        for (int i = 0; i < 16; i++, r >>= 4)
            req->request_id[half * 16 + i] = hex[r & 15];
    }
    req->request_id[32] = '\0';
}

/* A body over the limit is still read and dropped, up to this many bytes, before the 413 goes out: fcgiwrap
 * (plain CGI behind nginx) answers 502 instead of our 413 when the program exits without taking its input,
 * and a FastCGI connection closed with unread input may be reset under the server's feet. */
#define HTTP_DRAIN_MAX ((long long)8 << 20)

/* Read and drop up to `left` more body bytes (-1: until the end of the stream), never more than
 * HTTP_DRAIN_MAX. */
static void drain_body(http_req_t *req, long long left)
{
    char chunk[8192];
    if (left < 0 || left > HTTP_DRAIN_MAX)
        left = HTTP_DRAIN_MAX;
    while (left > 0) {
        int n, room = left < (long long)sizeof chunk ? (int)left : (int)sizeof chunk;
        if (req->io->fcgi)
            n = FCGX_GetStr(chunk, room, req->io->fcgi->in);
        else
            n = (int)fread(chunk, 1, (size_t)room, stdin);
        if (n <= 0)
            break;
        left -= n;
    }
}

static size_t max_body = HTTP_MAX_BODY;

void http_set_max_body(size_t bytes)
{
    max_body = bytes;
}

/* Read the body with a ceiling (max_body). In FastCGI the stream ends with the body; in CGI only CONTENT_LENGTH says
 * how much to read. Returns 0 ok, 1 too large (the rest of the body drained), -1 read error. */
static int read_body(http_req_t *req, buf_t *body)
{
    char chunk[8192];
    long long want = -1;
    const char *cl = http_param(req, "CONTENT_LENGTH");
    if (cl && *cl && parse_ll(cl, 0, (long long)1 << 40, &want) != 0)
        want = -1;
    if (!req->io->fcgi && want <= 0)
        return 0; /* CGI without a length: no body */
    if (want > (long long)max_body) {
        drain_body(req, want);
        return 1;
    }
    for (;;) {
        int n;
        size_t room = sizeof chunk;
        if (!req->io->fcgi) {
            if ((long long)body->len >= want)
                break;
            if ((long long)room > want - (long long)body->len)
                room = (size_t)(want - (long long)body->len);
            n = (int)fread(chunk, 1, room, stdin);
        } else
            n = FCGX_GetStr(chunk, (int)room, req->io->fcgi->in);
        if (n <= 0)
            break;
        if (body->len + (size_t)n > max_body) {
            drain_body(req, want < 0 ? -1 : want - (long long)body->len - n);
            return 1;
        }
        buf_append(body, chunk, (size_t)n);
    }
    return 0;
}

/* The CGI header block of req's response into wire; streamed: no Content-Length (the body follows as it is
 * made). */
static void head_wire(http_req_t *req, buf_t *wire, int streamed)
{
    char num[24];
    buf_reset(wire);
    buf_puts(wire, "Status: ");
    snprintf(num, sizeof num, "%d ", req->status);
    buf_puts(wire, num);
    buf_puts(wire, status_text(req->status));
    buf_puts(wire, "\r\nX-Request-Id: ");
    buf_puts(wire, req->request_id);
    buf_append(wire, "\r\n", 2);
    if (req->headers.len)
        buf_append(wire, req->headers.data, req->headers.len);
    if (g_config.cors_allowed_origins) { /* the answer depends on Origin whenever CORS is on: caches must know */
        const char *origin = cors_origin(req);
        buf_puts(wire, "Vary: Origin\r\n");
        if (origin) {
            buf_puts(wire, "Access-Control-Allow-Origin: ");
            buf_puts(wire, origin);
            buf_puts(wire, "\r\nAccess-Control-Expose-Headers: " CORS_EXPOSE_HEADERS "\r\n");
        }
    }
    if (req->status != 204 && !streamed) {
        snprintf(num, sizeof num, "%zu", req->out.len);
        buf_puts(wire, "Content-Length: ");
        buf_puts(wire, num);
        buf_append(wire, "\r\n", 2);
    }
    buf_append(wire, "\r\n", 2);
}

void http_response_wire(http_req_t *req, buf_t *wire, int streamed)
{
    head_wire(req, wire, streamed);
    if (!streamed && req->status != 204 && req->out.len && strcmp(req->method, "HEAD") != 0)
        buf_append(wire, req->out.data, req->out.len);
}

static void write_response(http_req_t *req, buf_t *wire)
{
    head_wire(req, wire, 0);
    if (req->status != 204 && req->out.len && strcmp(req->method, "HEAD") != 0)
        buf_append(wire, req->out.data, req->out.len); /* HEAD: the headers of the GET, Content-Length included */
    if (req->io->fcgi)
        FCGX_PutStr(wire->data, (int)wire->len, req->io->fcgi->out);
    else {
        fwrite(wire->data, 1, wire->len, stdout);
        fflush(stdout);
    }
}

/* Method, path, query string and request id from the CGI parameters (REQUEST_URI is the original target; plain
 * CGI from a shell has only SCRIPT_NAME + PATH_INFO). */
static void request_line(http_req_t *req)
{
    const char *uri = http_param(req, "REQUEST_URI");
    if (!uri || !*uri) { /* plain CGI from a shell: SCRIPT_NAME + PATH_INFO */
        const char *sn = http_param(req, "SCRIPT_NAME"), *pi = http_param(req, "PATH_INFO");
        uri = pool_printf(req->pool, "%s%s", sn ? sn : "", pi ? pi : "");
    }
    req->method = http_param(req, "REQUEST_METHOD");
    if (!req->method)
        req->method = "GET";
    req->path = http_normalize_path(req->pool, uri);
    req->query = http_param(req, "QUERY_STRING");
    if (!req->query)
        req->query = "";
    set_request_id(req);
}

/* What the access line needs once the answer is out (handle's method points into the FastCGI parameters, which
 * finishing the request frees). */
typedef struct {
    char method[16];
    int status;
    double ms;
} served_t;

/* The access line of a request handle() served, written after the answer is delivered: the log's write can wait
 * on the file system, the client need not. */
static void served_log(const http_req_t *req, const served_t *sv)
{
    log_set_context(req->request_id, req->user_id);
    log_request(sv->method, req->path, sv->status, sv->ms);
    log_set_context(NULL, 0);
}

/* A body sent with a Content-Encoding other than identity (gzip, br, ...): none of the web servers decodes one,
 * so the app would read compressed bytes as JSON and answer "not valid UTF-8"; RFC 9110 says 415. */
static int encoded_body(http_req_t *req)
{
    const char *ce = http_header(req, "Content-Encoding");
    if (!ce)
        return 0;
    while (*ce == ' ' || *ce == '\t')
        ce++;
    size_t n = strlen(ce);
    while (n && (ce[n - 1] == ' ' || ce[n - 1] == '\t'))
        n--;
    return n && !(n == 8 && strncasecmp(ce, "identity", 8) == 0);
}

static void handle(http_req_t *req, const http_route_t *routes, size_t nroutes, buf_t *body, buf_t *wire, served_t *sv)
{
    double t0 = now_ms();
    request_line(req);
    log_set_context(req->request_id, 0);

    buf_reset(body);
    int rb = read_body(req, body);
    req->body = body->data ? body->data : "";
    req->body_len = body->len;

    char allow[128];
    const char *route = "unmatched"; /* the metrics label: the matched route's pattern */
    int server_status = http_server_error_status(server_error_status(req));
    if ((server_status == 405 || server_status == 501) && static_path(req->path)) {
        static_method_refused(req); /* nginx's and Apache's own 405 (or 501) of a static file */
    } else if (server_status) {
        if (server_status == 503) /* a program that is down (restarting, crashed): soon back */
            http_set_header(req, "Retry-After", "1");
        http_error(req, server_status, http_server_error_code(server_status), server_error_message(server_status));
    } else if (rb == 1) {
        char msg[80];
        snprintf(msg, sizeof msg, "The request body is larger than %zu bytes.", max_body);
        http_error(req, 413, "payload_too_large", msg);
        route = http_route_label(routes, nroutes, req->path, req->pool);
    } else if (rb < 0) {
        http_error(req, 400, "invalid_json", "The request body could not be read.");
        route = http_route_label(routes, nroutes, req->path, req->pool);
    } else if (body->len && encoded_body(req)) {
        http_error(req, 415, "unsupported_media_type",
                   "Compressed request bodies are not accepted (Content-Encoding): send the body as plain JSON.");
        route = http_route_label(routes, nroutes, req->path, req->pool);
    } else {
        /* HEAD is served by the GET route; write_response leaves the body out. */
        const char *method = strcmp(req->method, "HEAD") == 0 ? "GET" : req->method;
        int preflight = strcmp(method, "OPTIONS") == 0 && http_header(req, "Access-Control-Request-Method") &&
                        cors_origin(req) != NULL;
        int r = http_route_match(routes, nroutes, method, req->path, req->params, &req->nparams, allow, sizeof allow,
                                 req->pool);
        if (preflight && r == -2)
            cors_preflight(req, allow);
        else if (r == -1 && strcmp(method, "GET") != 0 && static_path(req->path))
            static_method_refused(req); /* lighttpd hands them to the app */
        else if (r == -1)
            http_not_found(req);
        else if (r == -2) {
            http_set_header(req, "Allow", allow);
            http_error(req, 405, "method_not_allowed", "This method is not allowed on this resource.");
            route = http_route_label(routes, nroutes, req->path, req->pool);
        } else {
            route = routes[r].pattern;
            routes[r].fn(req);
            db_rollback();  /* a handler that returned mid-transaction leaves nothing half-done */
            cache_settle(); /* what it invalidated is gone from every process's local copies */
            if (!req->responded) {
                log_error("handler for %s %s did not respond", req->method, req->path);
                buf_reset(&req->headers);
                http_internal(req);
            }
        }
    }
    write_response(req, wire);
    snprintf(sv->method, sizeof sv->method, "%s", req->method);
    sv->status = req->status;
    sv->ms = now_ms() - t0;
    /* counted before the answer leaves (shared memory, no system call): a scrape after it sees it */
    metrics_request(route, req->method, req->status, sv->ms);
}

/* How a FastCGI connection ends. libfcgi closes it "lingering": shutdown, then wait (up to 2 s) for the server
 * to close its side, reading what still comes, then close. That keeps a server that is still sending (a body
 * answered before it was read: 413, 401) from being reset, but costs every request a wakeup and three system
 * calls after the answer. When the request's input has all been taken (its end-of-stream record seen) and
 * nothing more waits in the socket, the server sends nothing more on this connection: a plain close cannot
 * reset it. A request without a body gets its end-of-stream record right behind its parameters (lighttpd,
 * nginx and Apache send it at once, as the protocol asks), so it is taken here first. */
static void finish_fcgi(FCGX_Request *fr)
{
    const char *cl = FCGX_GetParam("CONTENT_LENGTH", fr->envp);
    int avail = 1;

    if (!FCGX_HasSeenEOF(fr->in) && (!cl || !*cl || strcmp(cl, "0") == 0)) {
        char c;
        (void)FCGX_GetStr(&c, 1, fr->in);
    }
    if (FCGX_HasSeenEOF(fr->in) && !FCGX_GetError(fr->in) && ioctl(fr->ipcFd, FIONREAD, &avail) == 0 && avail == 0)
        FCGX_Detach(fr); /* FCGX_Finish_r then closes without the lingering wait */
    FCGX_Finish_r(fr);
}

void http_handle_request(struct FCGX_Request *fr, const http_route_t *routes, size_t nroutes)
{
    http_req_t req;
    http_io_t io = {.fcgi = fr};
    buf_t body = {0}, wire = {0};
    memset(&req, 0, sizeof req);
    req.pool = pool_new();
    req.io = &io;
    served_t sv;
    handle(&req, routes, nroutes, &body, &wire, &sv);
    served_log(&req, &sv);
    pool_free(req.pool);
    buf_free(&req.headers);
    buf_free(&req.out);
    buf_free(&body);
    buf_free(&wire);
}

void http_req_begin(http_req_t *req, char **envp)
{
    http_io_t *io = pool_alloc(req->pool, sizeof *io);
    io->envp = envp;
    req->io = io;
    req->body = "";
    req->body_len = 0;
    if (!rng_state && getrandom(&rng_state, sizeof rng_state, 0) != (ssize_t)sizeof rng_state)
        rng_state = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    request_line(req);
}

void http_req_reset(http_req_t *req)
{
    pool_t *pool = req->pool;
    buf_t headers = req->headers, out = req->out;
    pool_reset(pool);
    buf_reset(&headers);
    buf_reset(&out);
    memset(req, 0, sizeof *req);
    req->pool = pool;
    req->headers = headers;
    req->out = out;
}

int http_serve(const char *prog, const http_route_t *routes, size_t nroutes, void (*init)(void))
{
    config_load_or_die(prog);
    db_init(g_config.database_url);
    if (cache_init(g_config.redis_url) != 0) {
        fprintf(stderr, "%s: configuration error: REDIS_URL is not a redis:// or unix:// URL\n", prog);
        return 2;
    }
    if (getrandom(&rng_state, sizeof rng_state, 0) != (ssize_t)sizeof rng_state)
        rng_state = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    if (init)
        init();

    http_req_t req;
    http_io_t io = {0};
    buf_t body = {0}, wire = {0};
    memset(&req, 0, sizeof req);
    req.pool = pool_new();
    req.io = &io;

    if (FCGX_Init() != 0) {
        log_error("FCGX_Init failed");
        return 1;
    }
    metrics_open(g_config.metrics_dir, prog, FCGX_IsCGI()); /* CGI: one request per process, one file per program */
    served_t sv;
    if (FCGX_IsCGI()) {
        handle(&req, routes, nroutes, &body, &wire, &sv);
        served_log(&req, &sv);
    } else {
        FCGX_Request fr;
        FCGX_InitRequest(&fr, 0, FCGI_FAIL_ACCEPT_ON_INTR);
        io.fcgi = &fr;
        cache_use_local_copies(1); /* persistent: worth tracking what it reads (cache_local.h) */
        log_info("serving FastCGI");
        while (FCGX_Accept_r(&fr) >= 0) {
            handle(&req, routes, nroutes, &body, &wire, &sv);
            finish_fcgi(&fr); /* the answer is delivered before its access line is written */
            served_log(&req, &sv);
            http_req_reset(&req);
            req.io = &io;
            /* A big answer or body (a room of long messages: its rows, their JSON) leaves the heap grown and
             * holed by what it freed, and glibc keeps that: a 680 KB room left 1.3 MB more private memory for
             * good. malloc_trim hands the free pages back (bench/soak.sh reads such a room); only after such a
             * request, as it walks the whole heap. The same after a row or statement that grew libpq's buffers
             * (db_trim closes that connection). */
            if (buf_trim(&req.out) | buf_trim(&req.headers) | buf_trim(&body) | buf_trim(&wire) | db_trim())
                malloc_trim(0);
        }
        FCGX_Free(&fr, 1);
        log_info("shutting down");
    }
    pool_free(req.pool);
    buf_free(&req.headers);
    buf_free(&req.out);
    buf_free(&body);
    buf_free(&wire);
    db_close();
    cache_close();
    return 0;
}
