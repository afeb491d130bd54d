/* password: Argon2id (libargon2, m=19456 KiB, t=2, p=1, 16-byte salt from RAND_bytes, 32-byte hash) in the
 * self-describing encoded form "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>". */
#ifndef GB_PASSWORD_H
#define GB_PASSWORD_H

#include <stddef.h>

#define PASSWORD_MIN_CHARS 8
#define PASSWORD_MAX_CHARS 128
#define PASSWORD_ENCODED_MAX 128

/* 0 if pw is acceptable: valid UTF-8 of 8..128 code points, no NUL. Else -1 with a sentence in err. */
int password_policy(const char *pw, size_t len, char *err, size_t errlen);

/* Hash into out (at least PASSWORD_ENCODED_MAX bytes). 0 ok, -1 failure. */
int password_hash(const char *pw, size_t len, char *out, size_t outlen);

/* 1 match, 0 mismatch, -1 error (malformed encoded string). Constant time inside libargon2. */
int password_verify(const char *encoded, const char *pw, size_t len);

#endif
