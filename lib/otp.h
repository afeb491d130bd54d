/* otp: one-time codes. 6 digits from OpenSSL's CSPRNG without modulo bias; stored only as
 * HMAC-SHA256(key, purpose ":" mobile ":" code), compared in constant time. */
#ifndef GB_OTP_H
#define GB_OTP_H

#include <stddef.h>

#define OTP_DIGITS 6
#define OTP_HASH_LEN 32

/* Write a fresh code ("012345", NUL-terminated) into out. 0 ok, -1 if the RNG failed. */
int otp_generate(char out[OTP_DIGITS + 1]);

/* The stored digest of a code. 0 ok, -1 failure. */
int otp_hash(const unsigned char *key, size_t keylen, const char *purpose, const char *mobile, const char *code,
             unsigned char out[OTP_HASH_LEN]);

/* 1 if code (any string; not 6 digits means no) hashes to stored (stored_len must be OTP_HASH_LEN), else 0.
 * Constant time in the digest comparison. */
int otp_check(const unsigned char *key, size_t keylen, const char *purpose, const char *mobile, const char *code,
              const unsigned char *stored, size_t stored_len);

#endif
