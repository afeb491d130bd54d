/* util: the one allocator wrapper, growable buffers, a per-request memory pool, small string helpers.
 * Allocation failure aborts (the process manager restarts us); every *_alloc checks size overflow. */
#ifndef GB_UTIL_H
#define GB_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Growable byte buffer, always NUL-terminated after the first append. Zero-initialise ({0}) to use.
 * buf_free accepts an empty buffer. buf_reset keeps the memory for reuse. */
typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf_t;

void buf_append(buf_t *b, const void *p, size_t n);
void buf_puts(buf_t *b, const char *s);
void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(buf_t *b, const char *fmt, va_list ap);
void buf_reset(buf_t *b);
void buf_free(buf_t *b);
/* A buffer kept from request to request that grew past BUF_KEEP (one big answer or body) is freed instead, so
 * that one big request does not pin its memory: 1 when it was (the caller may malloc_trim), else 0. */
#define BUF_KEEP 65536
int buf_trim(buf_t *b);

/* Per-request pool: many small allocations, all released at once by pool_reset (end of request).
 * The pool keeps its first chunk across resets so a steady-state request allocates nothing from malloc. */
typedef struct pool pool_t;

pool_t *pool_new(void);
void *pool_alloc(pool_t *p, size_t n);       /* 16-byte aligned, zeroed */
char *pool_strdup(pool_t *p, const char *s); /* NULL in, NULL out */
char *pool_strndup(pool_t *p, const char *s, size_t n);
char *pool_printf(pool_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pool_reset(pool_t *p);
void pool_free(pool_t *p); /* accepts NULL */

/* Parse a whole decimal string into [min,max]; 0 ok, -1 if empty, not all digits (an optional leading '-'),
 * or out of range. No atoi. */
int parse_ll(const char *s, long long min, long long max, long long *out);

/* RFC 3339 UTC ("2026-11-22T10:15:00Z") of a Unix time into out (at least 21 bytes). */
void fmt_rfc3339(int64_t unix_seconds, char out[32]);

/* Number of UTF-8 code points in s[0..len), or -1 if s is not valid UTF-8 (overlongs, surrogates and
 * code points past U+10FFFF are invalid). Implemented in utf8.c. */
long utf8_length(const char *s, size_t len);
/* Is s[0..len) well-formed UTF-8 (as utf8_length, without the count)? json-c's own check lets overlongs, encoded
 * surrogates and code points past U+10FFFF through. Implemented in utf8.c. */
int utf8_valid(const char *s, size_t len);
/* The well-formed UTF-8 sequence at the start of s[0..len): its length in bytes (1..4) with its code point in
 * *cp (may be NULL), or 0 when s starts with no well-formed sequence (len 0, truncated, overlong, surrogate,
 * past U+10FFFF, stray continuation byte). Implemented in utf8.c. */
size_t utf8_decode(const char *s, size_t len, unsigned *cp);
/* Is cp Unicode White_Space (PropList.txt: U+0009..000D, U+0020, U+0085, U+00A0, U+1680, U+2000..200A, U+2028,
 * U+2029, U+202F, U+205F, U+3000; not U+200B nor U+FEFF)? */
int utf8_is_space(unsigned cp);

/* url as it may be shown in a log line or --check's report: a password in its userinfo
 * ("https://user:secret@host/...") becomes "***". Appended to out. */
void url_for_log(buf_t *out, const char *url);

/* Lower-case hex of in[0..n) into out (2n characters, then a NUL: out holds at least 2n+1 bytes). */
void hex_encode(const unsigned char *in, size_t n, char *out);
/* The value of one hex digit (either case), -1 for any other character. */
int hex_digit(int c);
/* The value of the 4 hex digits at s (a JSON \u escape's) into *v: 0, or -1 when one is not a hex digit. */
int hex4(const char *s, unsigned *v);
/* n bytes from the kernel's CSPRNG (getrandom(2), which OpenSSL's RAND_bytes seeds from) into out. Not
 * RAND_bytes: it would load OpenSSL 3's provider tables into the chatroom processes (token.c); otp.c and
 * password.c draw with RAND_bytes in the auth program, which has them loaded anyway. 0 ok, -1 none available
 * (out is then unspecified). */
int random_bytes(void *out, size_t n);
/* nbytes random bytes as 2*nbytes lower-case hex digits plus a NUL into out. 0 ok, -1 as random_bytes. */
int random_hex(char *out, size_t nbytes);

/* HMAC-SHA256 (RFC 2104) under key[0..keylen) of a[0..alen) followed by b[0..blen) (b may be NULL when blen is
 * 0) into out: tokens, OTP digests and their key, Stripe signatures. nettle's, not OpenSSL's, whose first HMAC
 * call loads OpenSSL 3's provider and name tables, heap a process keeps for life (lib/token.c); nettle needs no
 * setup and allocates nothing, so this cannot fail. */
#define HMAC_SHA256_LEN 32
void hmac_sha256(const void *key, size_t keylen, const void *a, size_t alen, const void *b, size_t blen,
                 unsigned char out[HMAC_SHA256_LEN]);

/* A body buffer with a ceiling, for libcurl's CURLOPT_WRITEFUNCTION (capped_write) with the capped_t as
 * CURLOPT_WRITEDATA: past max bytes the callback refuses the data (curl ends with CURLE_WRITE_ERROR) and sets
 * too_big. Zero-initialise, set max; buf_free(&c.b) when done. */
typedef struct capped {
    buf_t b;
    size_t max;
    int too_big;
} capped_t;
size_t capped_write(char *data, size_t size, size_t nmemb, void *capped);

/* Monotonic milliseconds, for durations. */
double now_ms(void);
/* Sleep ms milliseconds (ms <= 0: not at all), the whole time even when a signal interrupts it. */
void sleep_ms(long ms);

#endif
