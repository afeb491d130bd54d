/* Fuzz target: the HTTP request layer (lib/http.c) end to end, through http_handle_request over in-memory
 * FastCGI streams: the CGI parameters, path normalisation and routing with {id} captures, headers, the query
 * string, the body read in FastCGI records of varying size under the cap (413 and the drain), REDIRECT_STATUS,
 * CORS, and the JSON body parse with the field validators, the bearer token and the Stripe webhook behind it.
 *
 * Input, like an HTTP/1.1 request:
 *     METHOD URI[ anything]            the request line (URI with its query string)
 *     Name: value                      a header, as HTTP_NAME (Content-Type/-Length as CONTENT_TYPE/_LENGTH)
 *     @NAME: value                     a raw CGI parameter (REDIRECT_STATUS, CONTENT_LENGTH, SCRIPT_NAME, ...)
 *     (an empty line)
 *     body
 * Checked on the response as written to the wire: a status line, a head that ends, only header names the
 * service sends (nothing a request smuggled in), and a Content-Length that matches the body. */
#include "fuzz.h"

#include <ctype.h>
#include <fcgiapp.h>
#include <strings.h>

#include "../tests/unit/fcgi_mem.h"
#include "config.h"
#include "http.h"
#include "jsonv.h"
#include "log.h"
#include "stripe.h"
#include "token.h"

#define MAX_BODY 1024 /* small, so that inputs reach the 413 */
#define KEY "fuzz-key-0123456789abcdef0123456789abcdef"
#define WEBHOOK_SECRET "whsec_fuzz0123456789abcdef"
#define NOW 1800000000LL

/* ---- the routes: thin handlers like cgi-bin's, over the parsers ---- */

static int hexval(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decode s[0..n) into out ('+' a space; a '%' without two hex digits stays as it is, and so does "%00": a
 * C string cannot hold a NUL). Returns the length. */
static size_t ref_decode(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+')
            out[o++] = ' ';
        else if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0 &&
                 hexval(s[i + 1]) + hexval(s[i + 2]) > 0) {
            out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else
            out[o++] = s[i];
    }
    return o;
}

/* The documented http_query: the first '&'-separated pair whose decoded name is name, its value decoded (length in
 * *vn; "" for a pair without '='); -1 when there is none. */
static int ref_query(const char *q, const char *name, char *v, size_t *vn)
{
    char key[4096];
    for (const char *p = q; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t kl = ref_decode(p, eq ? (size_t)(eq - p) : len, key);
        if (kl == strlen(name) && memcmp(key, name, kl) == 0) {
            *vn = eq ? ref_decode(eq + 1, len - (size_t)(eq - p) - 1, v) : 0;
            return 0;
        }
        p = amp ? amp + 1 : NULL;
    }
    return -1;
}

static void h_list(http_req_t *req)
{
    json_object *o = json_object_new_object();
    const char *names[] = {"limit", "before", "cursor", ""};
    char ref[4096];
    size_t rn = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = http_query(req, names[i]);
        int r = strlen(req->query) < sizeof ref ? ref_query(req->query, names[i], ref, &rn) : 1;
        /* the handler gets the whole decoded value or nothing: never one cut at a NUL */
        if (r == 0)
            FUZZ_CHECK(v && strlen(v) == rn && memcmp(v, ref, rn) == 0);
        else if (r == -1)
            FUZZ_CHECK(v == NULL);
        if (v)
            json_object_object_add(o, names[i], json_object_new_string(v));
    }
    http_json(req, 200, o);
}

static void h_messages(http_req_t *req)
{
    long long id = http_param_id(req, 0), limit;
    const char *l = http_query(req, "limit");
    if (!id) {
        http_not_found(req);
        return;
    }
    if (l && parse_ll(l, 1, 100, &limit) != 0) {
        http_error(req, 400, "validation_error", "limit must be 1 to 100.");
        return;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_int64(id));
    http_json(req, 200, o);
}

static void h_post_message(http_req_t *req)
{
    char content[4097 * 4], err[JSONV_ERRLEN];
    json_object *body = http_json_body(req);
    if (!body)
        return;
    if (!http_param_id(req, 0) || jsonv_string(body, "content", 1, 1, 1, 4096, content, sizeof content, err) != 0) {
        http_error(req, 400, "validation_error", "content");
    } else {
        const char *key = http_header(req, "Idempotency-Key");
        json_object *o = json_object_new_object();
        json_object_object_add(o, "content", json_object_new_string(content));
        if (key)
            http_set_header(req, "Idempotent-Replayed", "false");
        http_json(req, 202, o);
    }
    json_object_put(body);
}

static void h_signup(http_req_t *req)
{
    char mobile[17], name[401], err[JSONV_ERRLEN];
    json_object *body = http_json_body(req);
    if (!body)
        return;
    if (jsonv_mobile(body, "mobile", mobile, err) != 0 ||
        jsonv_string(body, "name", 0, 1, 1, 100, name, sizeof name, err) < 0)
        http_error(req, 400, "validation_error", err);
    else
        http_error(req, 409, "conflict", mobile);
    json_object_put(body);
}

static void h_me(http_req_t *req)
{
    token_claims_t c;
    const char *t = token_from_header(http_header(req, "Authorization"));
    if (!t || token_verify((const unsigned char *)KEY, sizeof KEY - 1, t, NOW, &c) != 0) {
        http_set_header(req, "WWW-Authenticate", "Bearer");
        http_error(req, 401, "unauthorized", "token");
        return;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_int64(c.user_id));
    http_json(req, 200, o);
}

static void h_webhook(http_req_t *req)
{
    stripe_event_t ev;
    char err[160];
    int rc = stripe_signature_verify(http_header(req, "Stripe-Signature"), WEBHOOK_SECRET, req->body, req->body_len,
                                     NOW, STRIPE_SIG_TOLERANCE, NULL);
    if (rc != STRIPE_SIG_OK)
        http_error(req, 400, "invalid_signature", stripe_sig_strerror(rc));
    else if (stripe_event_parse(req->body, req->body_len, &ev, err, sizeof err) != 0)
        http_error(req, 400, "invalid_event", err);
    else
        http_empty(req, 204);
}

static void h_echo(http_req_t *req)
{
    const char *v = http_header(req, "X-Echo");
    if (v)
        http_set_header(req, "X-Echo", v); /* CR/LF in it must not make a second header */
    http_raw(req, 200, "text/plain", req->body, req->body_len);
}

static void h_delete(http_req_t *req)
{
    if (!http_param_id(req, 0))
        http_not_found(req);
    else
        http_empty(req, 204);
}

static const http_route_t routes[] = {
    {"GET", "/chatroom", h_list},
    {"GET", "/chatroom/{id}/messages", h_messages},
    {"POST", "/chatroom/{id}/message", h_post_message},
    {"DELETE", "/chatroom/{id}", h_delete},
    {"POST", "/auth/signup", h_signup},
    {"GET", "/user/me", h_me},
    {"POST", "/webhook/stripe", h_webhook},
    {"PUT", "/echo/{a}/{b}/{c}/{d}", h_echo},
    {"POST", "/echo", h_echo},
};

/* ---- the response check ---- */

static int allowed_header(const char *name, size_t n)
{
    static const char *const names[] = {"X-Request-Id",
                                        "Content-Type",
                                        "Content-Length",
                                        "Allow",
                                        "Vary",
                                        "Retry-After",
                                        "WWW-Authenticate",
                                        "Idempotent-Replayed",
                                        "X-Echo",
                                        "Access-Control-Allow-Origin",
                                        "Access-Control-Expose-Headers",
                                        "Access-Control-Allow-Methods",
                                        "Access-Control-Allow-Headers",
                                        "Access-Control-Max-Age"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == n && memcmp(names[i], name, n) == 0)
            return 1;
    return 0;
}

static void check_response(const char *w, size_t len, int head)
{
    const char *end = NULL;
    long long status, clen = -1;
    char num[4];
    for (size_t i = 0; i + 3 < len && !end; i++)
        if (memcmp(w + i, "\r\n\r\n", 4) == 0)
            end = w + i + 2; /* just past the last header line */
    FUZZ_CHECK(end != NULL);
    FUZZ_CHECK(len > 12 && memcmp(w, "Status: ", 8) == 0);
    memcpy(num, w + 8, 3);
    num[3] = '\0';
    FUZZ_CHECK(parse_ll(num, 200, 599, &status) == 0 && w[11] == ' ');
    int seen_rid = 0;
    for (const char *line = memchr(w, '\n', len) + 1; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        FUZZ_CHECK(eol && eol > line && eol[-1] == '\r');
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        FUZZ_CHECK(colon && colon[1] == ' ');
        FUZZ_CHECK(allowed_header(line, (size_t)(colon - line)));
        FUZZ_CHECK(memchr(line, '\r', (size_t)(eol - 1 - line)) == NULL);
        if (colon - line == 12 && memcmp(line, "X-Request-Id", 12) == 0)
            seen_rid++;
        if (colon - line == 14 && memcmp(line, "Content-Length", 14) == 0) {
            char v[24];
            size_t vn = (size_t)(eol - 1 - (colon + 2));
            FUZZ_CHECK(vn < sizeof v);
            memcpy(v, colon + 2, vn);
            v[vn] = '\0';
            FUZZ_CHECK(parse_ll(v, 0, 1LL << 40, &clen) == 0);
        }
        line = eol + 1;
    }
    FUZZ_CHECK(seen_rid == 1);
    size_t body = len - (size_t)(end + 2 - w);
    if (status == 204)
        FUZZ_CHECK(clen == -1 && body == 0);
    else if (head) /* the GET's Content-Length, no body */
        FUZZ_CHECK(clen >= 0 && body == 0);
    else
        FUZZ_CHECK(clen >= 0 && (size_t)clen == body);
}

/* ---- the target ---- */

static int debug; /* FUZZ_DEBUG=1: print each response (build-fuzz/fuzz/http FILE shows what a seed does) */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    debug = getenv("FUZZ_DEBUG") != NULL;
    log_init("fuzz", LOG_ERROR + 1); /* the access log of every request would drown the fuzzer's output */
    g_config.cors_allowed_origins = "https://app.example.com, http://localhost:5173";
    http_set_max_body(MAX_BODY);
    return 0;
}

#define MAX_PARAMS 64

/* "NAME=value" from NAME and value[0..n), malloc'd. */
static char *param(const char *name, size_t name_len, const char *value, size_t n)
{
    char *p = malloc(name_len + n + 2);
    if (!p)
        abort();
    memcpy(p, name, name_len);
    p[name_len] = '=';
    memcpy(p + name_len + 1, value, n);
    p[name_len + 1 + n] = '\0';
    return p;
}

/* A header line "Name: value" as its CGI parameter (HTTP_NAME, CONTENT_TYPE, ...; "@NAME: value" as NAME). */
static char *header_param(const char *line, size_t n)
{
    char name[128];
    const char *colon = memchr(line, ':', n);
    size_t nl = colon ? (size_t)(colon - line) : n, o = 0;
    const char *v = colon ? colon + 1 : line + n;
    size_t vn = (size_t)(line + n - v);
    while (vn && (*v == ' ' || *v == '\t'))
        v++, vn--;
    if (nl == 0 || nl + 6 > sizeof name)
        return NULL;
    if (line[0] == '@') {
        memcpy(name, line + 1, nl - 1);
        o = nl - 1;
    } else {
        if (!((nl == 12 && strncasecmp(line, "Content-Type", 12) == 0) ||
              (nl == 14 && strncasecmp(line, "Content-Length", 14) == 0))) {
            memcpy(name, "HTTP_", 5);
            o = 5;
        }
        for (size_t i = 0; i < nl; i++)
            name[o++] = line[i] == '-' ? '_' : (char)toupper((unsigned char)line[i]);
    }
    return param(name, o, v, vn);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    char *params[MAX_PARAMS + 1];
    int np = 0, head = 0;
    size_t rest, k = fuzz_line(data, size, &rest), pos;

    /* the request line: METHOD URI */
    const char *sp = memchr(in, ' ', k);
    if (sp) {
        const char *uri = sp + 1, *end = in + k, *sp2 = memchr(uri, ' ', (size_t)(end - uri));
        if (sp2)
            end = sp2;
        const char *q = memchr(uri, '?', (size_t)(end - uri));
        params[np++] = param("REQUEST_METHOD", 14, in, (size_t)(sp - in));
        params[np++] = param("REQUEST_URI", 11, uri, (size_t)(end - uri));
        if (q)
            params[np++] = param("QUERY_STRING", 12, q + 1, (size_t)(end - q - 1));
        head = strcmp(params[0] + 15, "HEAD") == 0; /* as http.c reads it: up to a NUL */
    }
    /* headers up to the empty line */
    for (pos = rest; pos < size && np < MAX_PARAMS;) {
        k = fuzz_line(data + pos, size - pos, &rest);
        if (k == 0) {
            pos += rest;
            break;
        }
        char *p = header_param(in + pos, k);
        if (p)
            params[np++] = p;
        pos += rest;
    }
    params[np] = NULL;

    /* the body in FastCGI records of a size the input chooses (fcgi_mem.h: the unit tests' streams) */
    buf_t wire;
    fcgi_mem_serve(params, data + pos, size - pos, 1 + (size % 509), routes, sizeof routes / sizeof routes[0], &wire);
    if (debug)
        fprintf(stderr, "----\n%.*s\n", (int)wire.len, wire.data);
    check_response(wire.data, wire.len, head);

    buf_free(&wire);
    for (int i = 0; i < np; i++)
        free(params[i]);
    return 0;
}
