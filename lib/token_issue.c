/* token_issue: signing our access tokens with libjwt 1.10 (REFERENCE.md section 3). Apart from token.c so that
 * the programs that only verify (chatroom, stream) link neither this nor OpenSSL's HMAC: see token.c. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>

#include "token.h"
#include "util.h"

char *token_issue(const unsigned char *key, size_t keylen, long long user_id, int token_version, time_t now, long ttl)
{
    jwt_t *j = NULL;
    char *tok = NULL, *res = NULL;
    char sub[24], jti[2 * TOKEN_JTI_BYTES + 1];
    long long iat = (long long)now;

    if (!key || keylen == 0 || keylen > INT_MAX || user_id <= 0 || token_version < 0 || ttl <= 0)
        goto out;
    if (iat < 0 || iat > LONG_MAX - ttl)
        goto out;
    snprintf(sub, sizeof sub, "%lld", user_id);
    if (random_hex(jti, TOKEN_JTI_BYTES) != 0)
        goto out;

    if (jwt_new(&j) != 0)
        goto out;
    if (jwt_add_grant(j, "sub", sub) != 0 || jwt_add_grant_int(j, "iat", (long)iat) != 0 ||
        jwt_add_grant_int(j, "exp", (long)(iat + ttl)) != 0 || jwt_add_grant(j, "jti", jti) != 0 ||
        jwt_add_grant_int(j, "tv", (long)token_version) != 0 || jwt_add_grant(j, "typ_use", TOKEN_USE) != 0)
        goto out;
    if (jwt_set_alg(j, JWT_ALG_HS256, key, (int)keylen) != 0)
        goto out;
    tok = jwt_encode_str(j);
    if (!tok || strlen(tok) > TOKEN_MAX_LEN)
        goto out;
    res = tok;
    tok = NULL;
out:
    free(tok);
    jwt_free(j);
    return res;
}
