/* password: policy check and Argon2id hashing (REFERENCE.md 7.1, 7.3). */
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include <argon2.h>
#include <openssl/rand.h>

#include "password.h"
#include "util.h"

#define PW_T_COST 2
#define PW_M_COST_KIB 19456
#define PW_PARALLELISM 1
#define PW_SALT_LEN 16
#define PW_HASH_LEN 32
/* 128 code points are at most 512 bytes; longer input is refused before any work. */
#define PW_MAX_BYTES (PASSWORD_MAX_CHARS * 4)

/* Argon2 allocates its PW_M_COST_KIB (19 MiB) in one block per hash. glibc serves a block that large with mmap
 * and returns it on free, but then raises its mmap threshold past it (the dynamic threshold), so the next hash
 * comes from the heap and stays resident: an auth process would keep 19 MiB after its second password. A fixed
 * threshold keeps every block this large mapped, and unmapped on free. */
static void hash_memory_returned(void)
{
    static int set;
    if (!set) {
        mallopt(M_MMAP_THRESHOLD, 1 << 20);
        set = 1;
    }
}

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

int password_policy(const char *pw, size_t len, char *err, size_t errlen)
{
    long n;

    set_err(err, errlen, "");
    if (!pw) {
        set_err(err, errlen, "password is required");
        return -1;
    }
    if (len > PW_MAX_BYTES) {
        set_err(err, errlen, "password must be 8 to 128 characters");
        return -1;
    }
    if (memchr(pw, '\0', len)) {
        set_err(err, errlen, "password must not contain NUL characters");
        return -1;
    }
    n = utf8_length(pw, len);
    if (n < 0) {
        set_err(err, errlen, "password must be valid UTF-8");
        return -1;
    }
    if (n < PASSWORD_MIN_CHARS || n > PASSWORD_MAX_CHARS) {
        set_err(err, errlen, "password must be 8 to 128 characters");
        return -1;
    }
    return 0;
}

int password_hash(const char *pw, size_t len, char *out, size_t outlen)
{
    unsigned char salt[PW_SALT_LEN];
    int rc = -1;

    if (out && outlen > 0)
        out[0] = '\0';
    if (!out ||
        outlen < argon2_encodedlen(PW_T_COST, PW_M_COST_KIB, PW_PARALLELISM, PW_SALT_LEN, PW_HASH_LEN, Argon2_id))
        goto out;
    if ((!pw && len > 0) || len > PW_MAX_BYTES)
        goto out;
    if (RAND_bytes(salt, (int)sizeof salt) != 1)
        goto out;
    hash_memory_returned();
    if (argon2id_hash_encoded(PW_T_COST, PW_M_COST_KIB, PW_PARALLELISM, pw ? pw : "", len, salt, sizeof salt,
                              PW_HASH_LEN, out, outlen) != ARGON2_OK) {
        out[0] = '\0';
        goto out;
    }
    rc = 0;
out:
    explicit_bzero(salt, sizeof salt);
    return rc;
}

int password_verify(const char *encoded, const char *pw, size_t len)
{
    int r;

    if (!encoded || strnlen(encoded, PASSWORD_ENCODED_MAX) >= PASSWORD_ENCODED_MAX)
        return -1;
    if (strncmp(encoded, "$argon2id$", 10) != 0)
        return -1;
    if (!pw && len > 0)
        return -1;
    if (len > PW_MAX_BYTES)
        return 0; /* never hashed: password_hash refuses it */
    hash_memory_returned();
    r = argon2id_verify(encoded, pw ? pw : "", len);
    if (r == ARGON2_OK)
        return 1;
    if (r == ARGON2_VERIFY_MISMATCH)
        return 0;
    return -1;
}
