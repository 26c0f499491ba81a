/* sha256: the FIPS 180-2 / NIST example vectors, whole and fed in every split; the digest
 * text packed to bytes and back (case, length, junk). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pullwatch/sha256.h"
#include "pullwatch/util.h"

static void hex(const uint8_t d[SHA256_DIGEST_SIZE], char out[2 * SHA256_DIGEST_SIZE + 1]) {
        for (size_t i = 0; i < SHA256_DIGEST_SIZE; i++)
                snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static const struct {
        const char *in;
        size_t repeat;
        const char *digest;
} vectors[] = {
        {"", 1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         1, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
        {"a", 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
        /* 55, 56 and 64 bytes: the padding's edge cases */
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1,
         "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1,
         "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1,
         "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
};

static void test_vectors(void **state) {
        for (size_t v = 0; v < sizeof vectors / sizeof vectors[0]; v++) {
                Sha256 s;
                uint8_t d[SHA256_DIGEST_SIZE];
                char h[2 * SHA256_DIGEST_SIZE + 1];
                size_t len = strlen(vectors[v].in);
                sha256_init(&s);
                for (size_t r = 0; r < vectors[v].repeat; r++)
                        sha256_update(&s, vectors[v].in, len);
                sha256_final(&s, d);
                hex(d, h);
                assert_string_equal(h, vectors[v].digest);
        }
}

/* The x86 SHA extensions and the portable rounds agree: every length from 0 to 300 bytes
 * (every padding case, one to five blocks) of pseudo-random bytes, and the NIST vectors
 * each way. Skipped where the CPU has no SHA extensions. */
static void test_accel_matches_portable(void **state) {
        if (!sha256_set_accel(true))
                skip();
        uint8_t msg[300];
        uint32_t x = 2463534242u;
        for (size_t i = 0; i < sizeof msg; i++) {
                x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                msg[i] = (uint8_t) x;
        }
        for (size_t len = 0; len <= sizeof msg; len++) {
                uint8_t ni[SHA256_DIGEST_SIZE], portable[SHA256_DIGEST_SIZE];
                assert_true(sha256_set_accel(true));
                sha256(msg, len, ni);
                assert_false(sha256_set_accel(false));
                sha256(msg, len, portable);
                if (memcmp(ni, portable, sizeof ni) != 0)
                        fail_msg("length %zu: the SHA extensions and the portable rounds differ", len);
        }
        assert_false(sha256_set_accel(false));
        test_vectors(state);
        assert_true(sha256_set_accel(true));
        test_vectors(state);
}

/* every split of a 130-byte message into two updates gives the one-shot digest */
static void test_splits(void **state) {
        char msg[131];
        uint8_t whole[SHA256_DIGEST_SIZE], part[SHA256_DIGEST_SIZE];
        for (size_t i = 0; i < 130; i++)
                msg[i] = (char) ('A' + i % 53);
        msg[130] = 0;
        sha256(msg, 130, whole);
        for (size_t cut = 0; cut <= 130; cut++) {
                Sha256 s;
                sha256_init(&s);
                sha256_update(&s, msg, cut);
                sha256_update(&s, msg + cut, 130 - cut);
                sha256_final(&s, part);
                assert_memory_equal(whole, part, sizeof whole);
        }
}

/* The digest text of the ledger and the facts file: lowercase only, exactly 64 digits,
 * round-trips. */
static void test_digest_pack(void **state) {
        (void) state;
        static const struct {
                const char *in;
                bool ok;
        } cases[] = {
                {"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", true},
                {"sha256:0000000000000000000000000000000000000000000000000000000000000000", true},
                {"sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", false},
                {"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015aD", false},
                {"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a", false},
                {"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0", false},
                {"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a\n", false},
                {"sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", false},
                {"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", false},
                {"sha256:", false},
                {"", false},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                uint8_t b[SHA256_DIGEST_SIZE];
                char back[SHA256_TEXT_SIZE];
                assert_int_equal(sha256_digest_pack(cases[i].in, b), cases[i].ok);
                if (!cases[i].ok)
                        continue;
                sha256_digest_unpack(b, back);
                assert_string_equal(back, cases[i].in);
        }
        uint8_t b[SHA256_DIGEST_SIZE];
        assert_false(sha256_digest_pack(NULL, b));
        assert_int_equal(SHA256_TEXT_SIZE, strlen("sha256:") + 64 + 1);
        /* every byte value at an even and at an odd digit: only 0-9 and a-f pack (the
         * table against the rule it replaced) */
        for (unsigned c = 1; c < 256; c++)
                for (size_t at = 7; at <= 8; at++) {
                        char d[] = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
                        d[at] = (char) c;
                        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                        assert_int_equal(sha256_digest_pack(d, b), hex);
                        if (hex)
                                assert_int_equal(b[0] >> (at == 7 ? 4 : 0) & 15, unhexchar((char) c));
                }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vectors),
                cmocka_unit_test(test_splits),
                cmocka_unit_test(test_accel_matches_portable),
                cmocka_unit_test(test_digest_pack),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
