/* ledger: the snapshot's fast path (the body in ledger_format()'s own form, read without
 * jansson) decides nothing: on every input it gives what the jansson path gives — the
 * same ledger, or the same refusal with the same reason. A table of forms the writer
 * never makes (white space, key order, escapes, numbers jansson reads otherwise, schema
 * errors), then every one-byte change of a written snapshot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "pullwatch/ledger.h"
#include "pullwatch/util.h"

#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

/* header + body, with the header's length and CRC right */
static char *framed(const char *body, size_t n, size_t *ret_len) {
        char header[96];
        uLong crc = crc32(crc32(0L, Z_NULL, 0), (const Bytef *) body, (uInt) n);
        int h = snprintf(header, sizeof header, "pullwatch-ledger 1 %zu %08lx\n", n, crc);
        char *buf = malloc((size_t) h + n + 1);
        assert_non_null(buf);
        memcpy(buf, header, (size_t) h);
        memcpy(buf + h, body, n);
        buf[(size_t) h + n] = 0;
        *ret_len = (size_t) h + n;
        return buf;
}

/* Parse with and without the fast path: the same outcome. Returns that outcome. */
static int parse_both(const char *body, size_t n, const char *what) {
        size_t len;
        char *buf = framed(body, n, &len);
        Ledger *fast = NULL, *tree = NULL;
        char ef[256] = "", et[256] = "";
        assert_int_equal(ledger_new(&fast, 1000), 0);
        assert_int_equal(ledger_new(&tree, 1000), 0);
        ledger_set_fast_parse(false);
        int rt = ledger_parse(tree, buf, len, et, sizeof et);
        ledger_set_fast_parse(true);
        int rf = ledger_parse(fast, buf, len, ef, sizeof ef);
        if (rt != rf || (rf < 0 && strcmp(ef, et) != 0))
                fail_msg("%s: fast path %d (%s), jansson %d (%s)", what, rf, ef, rt, et);
        if (rf == 0) {
                char *a = NULL, *b = NULL;
                size_t la = 0, lb = 0;
                assert_int_equal(ledger_format(fast, &a, &la), 0);
                assert_int_equal(ledger_format(tree, &b, &lb), 0);
                if (la != lb || memcmp(a, b, la) != 0)
                        fail_msg("%s: the two paths read different ledgers", what);
                free(a);
                free(b);
        }
        ledger_free(fast);
        ledger_free(tree);
        free(buf);
        return rf;
}

static void test_forms(void **state) {
        static const struct {
                const char *body;
                bool ok;
        } cases[] = {
                /* the writer's form */
                {"{\"version\":1,\"references\":[]}", true},
                {"{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DA
                 "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":1,\"last_seen\":2}],\"raised\":[]}]}",
                 true},
                {"{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DB
                 "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":0,\"last_seen\":9223372036854775807},"
                 "{\"digest\":\"" DB "\",\"first_seen\":3,\"last_seen\":4}],\"raised\":[{\"digest\":\"" DA
                 "\",\"kind\":\"pull\",\"last_raised\":5},{\"digest\":\"" DB "\",\"kind\":\"tag_moved\",\"last_raised\":6}]},"
                 "{\"namespace\":\"default\",\"reference\":\"b\xc3\xa9:1\",\"current\":\"sha512:x\",\"digests\":[{\"digest\":"
                 "\"sha512:x\",\"first_seen\":7,\"last_seen\":7}],\"raised\":[]}]}",
                 true},
                /* valid, not the writer's form: read through jansson */
                {"{ \"version\":1,\"references\":[]}", true},
                {"{\"references\":[],\"version\":1}", true},
                {"{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a\\u0041:1\",\"current\":\"" DA
                 "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":1,\"last_seen\":2}],\"raised\":[]}]}",
                 true},
                {"{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DA
                 "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":1,\"last_seen\":2}]}]}",
                 true}, /* no raised */
                {"{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DA
                 "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":1,\"last_seen\":2,\"x\":0}],\"raised\":[]}]}",
                 true}, /* an extra key */
                /* refused, alike */
                {"{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DA
                 "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":01,\"last_seen\":2}],\"raised\":[]}]}",
                 false}, /* a leading zero */
                {"{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DA
                 "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":1.0,\"last_seen\":2}],\"raised\":[]}]}",
                 false}, /* a real */
                {"{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DA
                 "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":9223372036854775808,\"last_seen\":2}],\"raised\":[]}]}",
                 false}, /* over int64 */
                {"{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DB
                 "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":1,\"last_seen\":2}],\"raised\":[]}]}",
                 false}, /* current not in the history */
                {"{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DA
                 "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":1,\"last_seen\":2},{\"digest\":\"" DA
                 "\",\"first_seen\":1,\"last_seen\":2}],\"raised\":[]}]}",
                 false}, /* a duplicate digest */
                {"{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DA
                 "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":1,\"last_seen\":2}],\"raised\":[]},"
                 "{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DA
                 "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":1,\"last_seen\":2}],\"raised\":[]}]}",
                 false}, /* a duplicate reference */
                {"{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DA
                 "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":1,\"last_seen\":2}],\"raised\":[{\"digest\":\"" DA
                 "\",\"kind\":\"pull\",\"last_raised\":5}{\"digest\":\"" DA "\",\"kind\":\"x\",\"last_raised\":5}]}]}",
                 false}, /* no comma */
                {"{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DA
                 "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":1,\"last_seen\":2}],\"raised\":[{\"digest\":\"" DA
                 "\",\"kind\":\"pull\",\"last_raised\":5},{\"digest\":\"" DA "\",\"kind\":\"pull\",\"last_raised\":6}]}]}",
                 false}, /* raised twice */
                {"{\"version\":1,\"references\":[{\"namespace\":\"\",\"reference\":\"a:1\",\"current\":\"" DA
                 "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":1,\"last_seen\":2}],\"raised\":[]}]}",
                 false}, /* an empty namespace */
                {"{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a\xed\xa0\x80\",\"current\":\"" DA
                 "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":1,\"last_seen\":2}],\"raised\":[]}]}",
                 false}, /* a surrogate in UTF-8 */
                {"{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DA
                 "\",\"digests\":[],\"raised\":[]}]}",
                 false}, /* no history */
                {"{\"version\":1,\"references\":[]} ", true},  /* trailing white space: jansson allows it */
                {"{\"version\":1,\"references\":[]}x", false},
                {"{\"version\":2,\"references\":[]}", false},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char what[32];
                snprintf(what, sizeof what, "case %zu", i);
                int r = parse_both(cases[i].body, strlen(cases[i].body), what);
                if ((r == 0) != cases[i].ok)
                        fail_msg("case %zu: %d, want %s", i, r, cases[i].ok ? "read" : "refused");
        }
}

/* Every byte of a written snapshot's body replaced by bytes that matter to the grammar,
 * and deleted: both paths agree every time. */
static void test_every_byte(void **state) {
        Ledger *l = NULL;
        assert_int_equal(ledger_new(&l, 1000), 0);
        assert_int_equal(ledger_record(l, "k8s.io", "docker.io/library/nginx:latest", DA, 10, NULL, NULL), 0);
        assert_int_equal(ledger_record(l, "k8s.io", "docker.io/library/nginx:latest", DB, 20, NULL, NULL), 0);
        assert_int_equal(ledger_mark_raised(l, "k8s.io", "docker.io/library/nginx:latest", DB, "tag_moved", 21), 0);
        assert_int_equal(ledger_mark_raised(l, "k8s.io", "docker.io/library/nginx:latest", DA, "pull", 11), 0);
        assert_int_equal(ledger_record(l, "d", "r\xc3\xa9@" DA, DA, 30, NULL, NULL), 0);
        char *text = NULL;
        size_t len = 0;
        assert_int_equal(ledger_format(l, &text, &len), 0);
        ledger_free(l);
        const char *body = strchr(text, '\n') + 1;
        size_t n = len - (size_t) (body - text);
        assert_int_equal(parse_both(body, n, "as written"), 0);

        static const char alphabet[] = {'"', ',', '}', ']', '0', '.', ' ', '\\', '\x01', '\xc3'};
        char *m = malloc(n + 1);
        assert_non_null(m);
        size_t read = 0, refused = 0;
        for (size_t i = 0; i < n; i++) {
                char what[64];
                /* three of the alphabet (in turn, so every byte meets each one at some
                 * positions), and the deletion */
                for (size_t v = 0; v < 4; v++) {
                        size_t k = v == 3 ? sizeof alphabet : (i * 3 + v) % sizeof alphabet, mn = n;
                        memcpy(m, body, n);
                        if (k == sizeof alphabet) { /* deleted */
                                memmove(m + i, m + i + 1, n - i - 1);
                                mn = n - 1;
                        } else if (body[i] == alphabet[k])
                                continue;
                        else
                                m[i] = alphabet[k];
                        snprintf(what, sizeof what, "byte %zu -> %zu", i, k);
                        if (parse_both(m, mn, what) == 0)
                                read++;
                        else
                                refused++;
                }
        }
        /* both outcomes were exercised */
        assert_true(read > 0);
        assert_true(refused > 0);
        free(m);
        free(text);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_forms),
                cmocka_unit_test(test_every_byte),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
