#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/random.h>

#include <nettle/hmac.h>

static void oom(void)
{
    static const char msg[] = "fatal: out of memory\n";
    (void)!fwrite(msg, 1, sizeof msg - 1, stderr);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom();
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        oom();
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom();
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom();
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ---- buffers ---- */

static void buf_grow(buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        oom();
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void buf_append(buf_t *b, const void *p, size_t n)
{
    buf_grow(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void buf_puts(buf_t *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void buf_vprintf(buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return;
    buf_grow(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void buf_reset(buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void buf_free(buf_t *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int buf_trim(buf_t *b)
{
    if (b->cap <= BUF_KEEP)
        return 0;
    buf_free(b);
    return 1;
}

/* ---- pool ---- */

#define POOL_CHUNK 16384

struct chunk {
    struct chunk *next;
    size_t size, used;
    _Alignas(16) unsigned char mem[];
};

struct pool {
    struct chunk *head; /* current chunk; the last one in the list is the first, kept across resets */
};

static struct chunk *chunk_new(size_t size)
{
    struct chunk *c = xmalloc(sizeof *c + size);
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

pool_t *pool_new(void)
{
    pool_t *p = xmalloc(sizeof *p);
    p->head = chunk_new(POOL_CHUNK);
    return p;
}

void *pool_alloc(pool_t *p, size_t n)
{
    if (n > SIZE_MAX - 32)
        oom();
    n = (n + 15) & ~(size_t)15;
    struct chunk *c = p->head;
    if (c->size - c->used < n) {
        c = chunk_new(n > POOL_CHUNK ? n : POOL_CHUNK);
        c->next = p->head;
        p->head = c;
    }
    void *r = c->mem + c->used;
    c->used += n;
    memset(r, 0, n);
    return r;
}

char *pool_strndup(pool_t *p, const char *s, size_t n)
{
    if (!s)
        return NULL;
    char *r = pool_alloc(p, n + 1);
    memcpy(r, s, n);
    r[n] = '\0';
    return r;
}

char *pool_strdup(pool_t *p, const char *s)
{
    return s ? pool_strndup(p, s, strlen(s)) : NULL;
}

char *pool_printf(pool_t *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return pool_strdup(p, "");
    char *r = pool_alloc(p, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(r, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return r;
}

void pool_reset(pool_t *p)
{
    struct chunk *c = p->head;
    while (c->next) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    c->used = 0;
    p->head = c;
}

void pool_free(pool_t *p)
{
    if (!p)
        return;
    pool_reset(p);
    free(p->head);
    free(p);
}

/* ---- small helpers ---- */

int parse_ll(const char *s, long long min, long long max, long long *out)
{
    if (!s || !*s)
        return -1;
    const char *q = s;
    int neg = 0;
    if (*q == '-') {
        neg = 1;
        q++;
    }
    if (!*q)
        return -1;
    unsigned long long v = 0;
    for (; *q; q++) {
        if (*q < '0' || *q > '9')
            return -1;
        unsigned d = (unsigned)(*q - '0');
        if (v > (9223372036854775808ULL - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    long long r;
    if (neg)
        r = v == 9223372036854775808ULL ? (long long)(-9223372036854775807LL - 1) : -(long long)v;
    else if (v > 9223372036854775807ULL)
        return -1;
    else
        r = (long long)v;
    if (r < min || r > max)
        return -1;
    *out = r;
    return 0;
}

void fmt_rfc3339(int64_t unix_seconds, char out[32])
{
    time_t t = (time_t)unix_seconds;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void url_for_log(buf_t *out, const char *url)
{
    const char *auth = strstr(url, "://");
    if (!auth) {
        buf_puts(out, url);
        return;
    }
    auth += 3;
    size_t authlen = strcspn(auth, "/?#");
    const char *at = memrchr(auth, '@', authlen), *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (!colon) {
        buf_puts(out, url);
        return;
    }
    buf_append(out, url, (size_t)(colon + 1 - url));
    buf_puts(out, "***");
    buf_puts(out, at);
}

void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int hex_digit(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

int hex4(const char *s, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit((unsigned char)s[i]);
        if (d < 0)
            return -1;
        *v = *v << 4 | (unsigned)d;
    }
    return 0;
}

int random_bytes(void *out, size_t n)
{
    unsigned char *p = out;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0 && errno != EINTR)
            return -1;
        if (got > 0) {
            p += got;
            n -= (size_t)got;
        }
    }
    return 0;
}

int random_hex(char *out, size_t nbytes)
{
    unsigned char tmp[64];
    if (nbytes > sizeof tmp || random_bytes(tmp, nbytes) != 0)
        return -1;
    hex_encode(tmp, nbytes, out);
    return 0;
}

void hmac_sha256(const void *key, size_t keylen, const void *a, size_t alen, const void *b, size_t blen,
                 unsigned char out[HMAC_SHA256_LEN])
{
    struct hmac_sha256_ctx ctx;

    hmac_sha256_set_key(&ctx, keylen, key);
    hmac_sha256_update(&ctx, alen, a);
    if (blen > 0)
        hmac_sha256_update(&ctx, blen, b);
    hmac_sha256_digest(&ctx, HMAC_SHA256_LEN, out);
    explicit_bzero(&ctx, sizeof ctx); /* the key's inner and outer states */
}

size_t capped_write(char *data, size_t size, size_t nmemb, void *capped)
{
    capped_t *c = capped;
    size_t n = size * nmemb;
    if (n > c->max - c->b.len) {
        c->too_big = 1;
        return 0;
    }
    buf_append(&c->b, data, n);
    return n;
}

double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

void sleep_ms(long ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}
