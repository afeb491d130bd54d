/* token: our JWTs (HS256 only; issued by libjwt in token_issue.c, verified in token.c). Named token_ because
 * libjwt owns the jwt_ prefix.
 * Claims: sub (user id, string), iat, exp, jti (random), tv (the user's token version: changing or
 * resetting the password bumps it, which revokes every older token), typ_use "access". */
#ifndef GB_TOKEN_H
#define GB_TOKEN_H

#include <stddef.h>
#include <time.h>

#define TOKEN_MAX_LEN 2048 /* longer Authorization values are refused before decoding */
#define TOKEN_JTI_BYTES 16 /* random bytes of jti, written as 32 lower-case hex digits */
#define TOKEN_USE "access" /* typ_use: keeps any other kind of token we might sign from passing as access */

typedef struct token_claims {
    long long user_id;
    int token_version;
    long long iat;
    long long exp;
    long long nbf; /* "not before", 0 when absent (tokens we issue carry none) */
    char jti[33];
} token_claims_t;

/* Issue a token for user_id/token_version valid ttl seconds from now. Returns a malloc'd string (caller
 * frees) or NULL on failure. key must be >= 1 byte (the config enforces >= 32 outside development). */
char *token_issue(const unsigned char *key, size_t keylen, long long user_id, int token_version, time_t now, long ttl);

/* Verify: signature with key (HMAC-SHA256), alg pinned to HS256 (the header's "alg" exactly "HS256": "hs256",
 * none, HS384, HS512, RS* refused), exp present and in the future (no leeway), iat present and not in the
 * future (60 s leeway), nbf when present not in the future (60 s leeway), no "crit" header, sub a positive
 * integer string, tv present. 0 ok (claims filled), -1 invalid. Does not check revocation (the caller compares
 * tv). */
int token_verify(const unsigned char *key, size_t keylen, const char *token, time_t now, token_claims_t *out);

/* Extract the token from an "Authorization: Bearer <t>" value (scheme case-insensitive). NULL if malformed
 * or longer than TOKEN_MAX_LEN. Returns a pointer into value. */
const char *token_from_header(const char *value);

#endif
