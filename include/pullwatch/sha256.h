/* SHA-256 (FIPS 180-4), for checking that a blob read straight from containerd's
 * content store is the one its digest names. Pure; no allocation. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_SIZE 32
#define SHA256_PREFIX "sha256:"
#define SHA256_TEXT_SIZE (sizeof SHA256_PREFIX - 1 + 2 * SHA256_DIGEST_SIZE + 1) /* with the NUL */

typedef struct Sha256 {
        uint32_t h[8];
        uint64_t length; /* bytes hashed so far */
        uint8_t block[64];
        size_t used; /* bytes waiting in block */
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t len);
void sha256_final(Sha256 *s, uint8_t out[SHA256_DIGEST_SIZE]);
/* Whether the x86 SHA extensions are used from now on (the default where the CPU has
 * them): false turns them off, true on if the CPU has them. For tests, which compare. */
bool sha256_set_accel(bool enable);
/* One call: the digest of data. */
void sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST_SIZE]);
/* "sha256:" + exactly 64 lowercase hex digits (an OCI digest as containerd writes it) →
 * its 32 bytes; false for anything else (NULL included). */
bool sha256_digest_pack(const char *digest, uint8_t out[SHA256_DIGEST_SIZE]);
/* The inverse: out gets SHA256_TEXT_SIZE bytes ("sha256:" + 64 lowercase hex + NUL). */
void sha256_digest_unpack(const uint8_t in[SHA256_DIGEST_SIZE], char *out);
