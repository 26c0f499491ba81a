/* SHA-256 (FIPS 180-4), for checking that a blob read straight from containerd's
 * content store is the one its digest names. Pure; no allocation. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_SIZE 32

typedef struct Sha256 {
        uint32_t h[8];
        uint64_t length; /* bytes hashed so far */
        uint8_t block[64];
        size_t used; /* bytes waiting in block */
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t len);
void sha256_final(Sha256 *s, uint8_t out[SHA256_DIGEST_SIZE]);
/* One call: the digest of data. */
void sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST_SIZE]);
/* Whether data hashes to hex (64 hex digits, either case; anything else: false). */
bool sha256_matches_hex(const void *data, size_t len, const char *hex);
