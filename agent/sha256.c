/* See include/pullwatch/sha256.h. Straight from FIPS 180-4, section 6.2. */
#include "pullwatch/sha256.h"

#include <string.h>

#include "pullwatch/util.h"

static const uint32_t K[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror(uint32_t x, unsigned n) {
        return (x >> n) | (x << (32 - n));
}

static void compress_portable(uint32_t h[8], const uint8_t b[64]) {
        uint32_t w[64];
        for (unsigned i = 0; i < 16; i++)
                w[i] = (uint32_t) b[4 * i] << 24 | (uint32_t) b[4 * i + 1] << 16 | (uint32_t) b[4 * i + 2] << 8 |
                       (uint32_t) b[4 * i + 3];
        for (unsigned i = 16; i < 64; i++) {
                uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
                uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
                w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
        for (unsigned i = 0; i < 64; i++) {
                uint32_t t1 = hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
                uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
                hh = g;
                g = f;
                f = e;
                e = d + t1;
                d = c;
                c = bb;
                bb = a;
                a = t1 + t2;
        }
        h[0] += a;
        h[1] += bb;
        h[2] += c;
        h[3] += d;
        h[4] += e;
        h[5] += f;
        h[6] += g;
        h[7] += hh;
}

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

/* The x86 SHA extensions (Intel since Goldmont and Ice Lake, AMD since Zen): 2 rounds an
 * instruction; a fresh reconcile hashes two blobs an image, 13 % of its instructions
 * with compress_portable(). The message schedule and round order of Intel's white paper
 * ("Intel SHA Extensions", 2013), written as a loop over the 16 groups of four rounds. */
__attribute__((target("sha,sse4.1,ssse3"))) static void compress_ni(uint32_t h[8], const uint8_t b[64]) {
        const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
        __m128i tmp = _mm_loadu_si128((const __m128i *) &h[0]);
        __m128i state1 = _mm_loadu_si128((const __m128i *) &h[4]);
        tmp = _mm_shuffle_epi32(tmp, 0xb1);            /* CDAB */
        state1 = _mm_shuffle_epi32(state1, 0x1b);      /* EFGH */
        __m128i state0 = _mm_alignr_epi8(tmp, state1, 8); /* ABEF */
        state1 = _mm_blend_epi16(state1, tmp, 0xf0);   /* CDGH */
        const __m128i abef = state0, cdgh = state1;
        __m128i w[4];
#pragma GCC unroll 16
        for (unsigned g = 0; g < 16; g++) {
                if (g < 4)
                        w[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *) (b + 16 * g)), mask);
                __m128i msg = _mm_add_epi32(w[g % 4], _mm_loadu_si128((const __m128i *) &K[4 * g]));
                state1 = _mm_sha256rnds2_epu32(state1, state0, msg);
                if (g >= 3 && g <= 14) {
                        __m128i t = _mm_alignr_epi8(w[g % 4], w[(g + 3) % 4], 4);
                        w[(g + 1) % 4] = _mm_sha256msg2_epu32(_mm_add_epi32(w[(g + 1) % 4], t), w[g % 4]);
                }
                msg = _mm_shuffle_epi32(msg, 0x0e);
                state0 = _mm_sha256rnds2_epu32(state0, state1, msg);
                if (g >= 1 && g <= 12)
                        w[(g + 3) % 4] = _mm_sha256msg1_epu32(w[(g + 3) % 4], w[g % 4]);
        }
        state0 = _mm_add_epi32(state0, abef);
        state1 = _mm_add_epi32(state1, cdgh);
        tmp = _mm_shuffle_epi32(state0, 0x1b);         /* FEBA */
        state1 = _mm_shuffle_epi32(state1, 0xb1);      /* DCHG */
        state0 = _mm_blend_epi16(tmp, state1, 0xf0);   /* DCBA */
        state1 = _mm_alignr_epi8(state1, tmp, 8);      /* ABEF */
        _mm_storeu_si128((__m128i *) &h[0], state0);
        _mm_storeu_si128((__m128i *) &h[4], state1);
}

static bool cpu_has_sha(void) {
        unsigned a, b, c, d;
        if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3))
                return false;
        return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_SHA);
}
#endif

/* 0 not asked yet, 1 portable, 2 the SHA extensions. Both threads that hash (the loop,
 * the resolve worker) may ask at once: they store the same answer. */
static int accel;

static int accel_get(void) {
        int a = __atomic_load_n(&accel, __ATOMIC_RELAXED);
        if (a == 0) {
#if defined(__x86_64__)
                a = cpu_has_sha() ? 2 : 1;
#else
                a = 1;
#endif
                __atomic_store_n(&accel, a, __ATOMIC_RELAXED);
        }
        return a;
}

bool sha256_set_accel(bool enable) {
        int a = accel_get();
#if defined(__x86_64__)
        a = enable && cpu_has_sha() ? 2 : 1;
#endif
        __atomic_store_n(&accel, a, __ATOMIC_RELAXED);
        return a == 2;
}

static void compress(uint32_t h[8], const uint8_t b[64]) {
#if defined(__x86_64__)
        if (accel_get() == 2) {
                compress_ni(h, b);
                return;
        }
#endif
        compress_portable(h, b);
}

void sha256_init(Sha256 *s) {
        static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                       0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
        memcpy(s->h, iv, sizeof iv);
        s->length = 0;
        s->used = 0;
}

void sha256_update(Sha256 *s, const void *data, size_t len) {
        const uint8_t *p = data;
        s->length += len;
        if (s->used > 0) {
                size_t take = 64 - s->used < len ? 64 - s->used : len;
                memcpy(s->block + s->used, p, take);
                s->used += take;
                p += take;
                len -= take;
                if (s->used < 64)
                        return;
                compress(s->h, s->block);
                s->used = 0;
        }
        for (; len >= 64; p += 64, len -= 64)
                compress(s->h, p);
        memcpy(s->block, p, len);
        s->used = len;
}

void sha256_final(Sha256 *s, uint8_t out[SHA256_DIGEST_SIZE]) {
        uint64_t bits = s->length * 8;
        s->block[s->used++] = 0x80;
        if (s->used > 56) {
                memset(s->block + s->used, 0, 64 - s->used);
                compress(s->h, s->block);
                s->used = 0;
        }
        memset(s->block + s->used, 0, 56 - s->used);
        for (unsigned i = 0; i < 8; i++)
                s->block[56 + i] = (uint8_t) (bits >> (56 - 8 * i));
        compress(s->h, s->block);
        for (unsigned i = 0; i < 8; i++) {
                out[4 * i] = (uint8_t) (s->h[i] >> 24);
                out[4 * i + 1] = (uint8_t) (s->h[i] >> 16);
                out[4 * i + 2] = (uint8_t) (s->h[i] >> 8);
                out[4 * i + 3] = (uint8_t) s->h[i];
        }
}

void sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST_SIZE]) {
        Sha256 s;
        sha256_init(&s);
        sha256_update(&s, data, len);
        sha256_final(&s, out);
}

/* A byte's value as a lowercase hex digit plus one, 0 for any other byte (NUL and
 * uppercase included: the text must round-trip through sha256_digest_unpack()). A table:
 * the digest of every blob, ledger atom and facts entry is packed (unhexchar()'s
 * branches were 5 % of a 10,000-image scan). */
static const uint8_t lower_hex1[256] = {
        ['0'] = 1, ['1'] = 2, ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
        ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

bool sha256_digest_pack(const char *d, uint8_t out[SHA256_DIGEST_SIZE]) {
        if (!d || !startswith(d, SHA256_PREFIX))
                return false;
        const unsigned char *p = (const unsigned char *) d + strlen(SHA256_PREFIX);
        for (size_t i = 0; i < SHA256_DIGEST_SIZE; i++) {
                /* a NUL maps to 0: the loop stops there, never reading past it */
                unsigned hi = lower_hex1[p[2 * i]];
                if (!hi)
                        return false;
                unsigned lo = lower_hex1[p[2 * i + 1]];
                if (!lo)
                        return false;
                out[i] = (uint8_t) ((hi - 1) << 4 | (lo - 1));
        }
        return p[2 * SHA256_DIGEST_SIZE] == 0;
}

void sha256_digest_unpack(const uint8_t in[SHA256_DIGEST_SIZE], char *out) {
        char *p = stpcpy(out, SHA256_PREFIX);
        for (size_t i = 0; i < SHA256_DIGEST_SIZE; i++) {
                *p++ = hexchar(in[i] >> 4);
                *p++ = hexchar(in[i]);
        }
        *p = 0;
}
