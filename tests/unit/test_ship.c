/* Pure parts of the shipper: encoders, gzip, verdicts, Retry-After, backoff. No network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <zlib.h>

#include "pullwatch/ship.h"
#include "pullwatch/util.h"

/* ---- label names ---- */

static void test_label_names(void **state) {
        static const struct {
                const char *name;
                bool valid;
        } cases[] = {
                { "node", true },       { "_x", true },          { "Cluster_1", true },
                { "a", true },          { "", false },           { "1abc", false },
                { "kind-x", false },    { "k.x", false },        { "ä", false },
                { "with space", false },
                { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", true },   /* 63 */
                { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false }, /* 64 */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                if (ship_label_name_valid(cases[i].name) != cases[i].valid)
                        fail_msg("label name '%s': expected %d", cases[i].name, cases[i].valid);
        }
        assert_false(ship_label_name_valid(NULL));
}

/* ---- RFC 3339 ---- */

static void test_rfc3339(void **state) {
        static const struct {
                const char *s;
                int r;
                uint64_t ns;
        } cases[] = {
                { "1970-01-01T00:00:00Z", 0, 0 },
                { "2024-05-01T12:00:00Z", 0, 1714564800ULL * 1000000000ULL },
                { "2024-05-01T12:00:00.5Z", 0, 1714564800ULL * 1000000000ULL + 500000000ULL },
                { "2024-05-01T12:00:00.123456789Z", 0, 1714564800ULL * 1000000000ULL + 123456789ULL },
                { "2024-05-01T12:00:00.1234567891Z", 0, 1714564800ULL * 1000000000ULL + 123456789ULL },
                { "2024-05-01T14:00:00+02:00", 0, 1714564800ULL * 1000000000ULL },
                { "2024-05-01T11:30:00-00:30", 0, 1714564800ULL * 1000000000ULL },
                { "2024-05-01t12:00:00z", 0, 1714564800ULL * 1000000000ULL },
                { "2024-02-29T00:00:00Z", 0, 1709164800ULL * 1000000000ULL },
                { "2000-02-29T00:00:00Z", 0, 951782400ULL * 1000000000ULL },
                { "2023-02-29T00:00:00Z", -EINVAL, 0 },
                { "1900-02-29T00:00:00Z", -EINVAL, 0 },
                { "1969-12-31T23:59:59Z", -EINVAL, 0 },
                { "2024-05-01T12:00:00", -EINVAL, 0 },
                { "2024-05-01T12:00:00.Z", -EINVAL, 0 },
                { "2024-05-01T24:00:00Z", -EINVAL, 0 },
                { "2024-13-01T12:00:00Z", -EINVAL, 0 },
                { "2024-05-01T12:00:00Zjunk", -EINVAL, 0 },
                { "2024-5-01T12:00:00Z", -EINVAL, 0 },
                { "", -EINVAL, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint64_t ns = 4242;
                int r = ship_parse_rfc3339_ns(cases[i].s, strlen(cases[i].s), &ns);
                if (r != cases[i].r)
                        fail_msg("'%s': r=%d expected %d", cases[i].s, r, cases[i].r);
                if (r == 0 && ns != cases[i].ns)
                        fail_msg("'%s': ns=%" PRIu64 " expected %" PRIu64, cases[i].s, ns, cases[i].ns);
                if (r < 0 && ns != 4242)
                        fail_msg("'%s': out-param overwritten on failure", cases[i].s);
        }
}

/* ---- JSON lines ---- */

static void test_jsonl(void **state) {
        const ShipRecord recs[] = {
                { 1, "{\"id\":\"a\"}", 10 },
                { 2, "{\"id\":\"b\",\"m\":\"x\\ny\"}", 21 },
        };
        _cleanup_free_ char *body = NULL;
        size_t len = 0;
        assert_int_equal(ship_encode_jsonl(recs, 2, 1024, &body, &len), 0);
        const char *want = "{\"id\":\"a\"}\n{\"id\":\"b\",\"m\":\"x\\ny\"}\n";
        assert_int_equal(len, strlen(want));
        assert_memory_equal(body, want, len);

        /* exactly at the limit fits, one byte less does not */
        char *b2 = NULL;
        size_t l2 = 0;
        assert_int_equal(ship_encode_jsonl(recs, 2, strlen(want), &b2, &l2), 0);
        free(b2);
        b2 = NULL;
        assert_int_equal(ship_encode_jsonl(recs, 2, strlen(want) - 1, &b2, &l2), -E2BIG);
        assert_null(b2);

        /* empty batch: empty body */
        assert_int_equal(ship_encode_jsonl(NULL, 0, 10, &b2, &l2), 0);
        assert_int_equal(l2, 0);
        free(b2);
}

static void test_jsonl_invalid(void **state) {
        static const struct {
                const char *data;
                size_t len;
                bool jsonl, loki;
        } cases[] = {
                { "{\"a\":1}", 7, true, true },
                { "{\"a\":1}\n", 8, false, false },
                { "", 0, false, false },
                { "{\"a\"\0:1}", 8, false, false },
                { "[1,2]", 5, true, false },
                { "not json", 8, true, false },
                { "{\"a\":1", 6, true, false },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                if (ship_record_valid(SHIP_FORMAT_JSONL, cases[i].data, cases[i].len) != cases[i].jsonl)
                        fail_msg("case %zu: jsonl validity", i);
                if (ship_record_valid(SHIP_FORMAT_LOKI, cases[i].data, cases[i].len) != cases[i].loki)
                        fail_msg("case %zu: loki validity", i);
                ShipRecord r = { 1, cases[i].data, cases[i].len };
                char *b = NULL;
                size_t l = 0;
                int ret = ship_encode_jsonl(&r, 1, 1 << 20, &b, &l);
                assert_int_equal(ret, cases[i].jsonl ? 0 : -EBADMSG);
                free(b);
                b = NULL;
                ret = ship_encode_loki(&r, 1, NULL, 0, 7, 1 << 20, &b, &l);
                assert_int_equal(ret, cases[i].loki ? 0 : -EBADMSG);
                free(b);
        }
}

/* ---- Loki ---- */

#define R(seq, kind, sev, node, time, extra)                                                            \
        "{\"id\":\"id" #seq "\",\"kind\":\"" kind "\",\"severity\":\"" sev "\",\"node\":\"" node "\"" \
        time extra "}"

static const char *const loki_recs[] = {
        R(1, "pull", "info", "n1", ",\"time\":\"2024-05-01T12:00:00Z\"", ""),
        R(2, "latest_tag", "medium", "n1", ",\"time\":\"2024-05-01T12:00:01.25Z\"",
          ",\"image\":{\"digest\":\"sha256:abc\"},\"workload\":{\"pod\":\"web-7d9\"}"),
        R(3, "pull", "info", "n1", ",\"time\":\"2024-05-01T12:00:02Z\"", ",\"message\":\"quote \\\" and \\\\ and \\u0001\""),
        R(4, "latest_tag", "medium", "n1", "", ""), /* no time: fallback */
        R(5, "pull", "info", "n2", ",\"time\":\"2024-05-01T14:00:03+02:00\"", ""),
};

static void loki_records(ShipRecord *out) {
        for (size_t i = 0; i < ELEMENTSOF(loki_recs); i++)
                out[i] = (ShipRecord) { i + 1, loki_recs[i], strlen(loki_recs[i]) };
}

/* Checks one stream object: exact label set and exact values. */
static void check_stream(json_t *stream, const char *const *labels, size_t n_labels, const size_t *idx,
                         const uint64_t *ts, size_t n_values) {
        json_t *l = json_object_get(stream, "stream");
        assert_true(json_is_object(l));
        assert_int_equal(json_object_size(l), n_labels);
        for (size_t i = 0; i < n_labels; i++) {
                json_t *v = json_object_get(l, labels[2 * i]);
                if (!json_is_string(v) || !streq_ptr(json_string_value(v), labels[2 * i + 1]))
                        fail_msg("label %s: expected '%s'", labels[2 * i], labels[2 * i + 1]);
        }
        json_t *values = json_object_get(stream, "values");
        assert_true(json_is_array(values));
        assert_int_equal(json_array_size(values), n_values);
        for (size_t i = 0; i < n_values; i++) {
                json_t *pair = json_array_get(values, i);
                assert_true(json_is_array(pair));
                assert_int_equal(json_array_size(pair), 2);
                json_t *t = json_array_get(pair, 0), *line = json_array_get(pair, 1);
                assert_true(json_is_string(t)); /* ns as a string, not a number */
                char want[32];
                snprintf(want, sizeof want, "%" PRIu64, ts[i]);
                assert_string_equal(json_string_value(t), want);
                assert_true(json_is_string(line));
                /* the line is the record, byte for byte */
                assert_int_equal(json_string_length(line), strlen(loki_recs[idx[i]]));
                assert_memory_equal(json_string_value(line), loki_recs[idx[i]], strlen(loki_recs[idx[i]]));
        }
}

static void test_loki_body(void **state) {
        ShipRecord recs[ELEMENTSOF(loki_recs)];
        loki_records(recs);
        const ShipLabel labels[] = { { "cluster", "prod-eu" } };
        const uint64_t fallback = 1700000000123456789ULL, t0 = 1714564800ULL * 1000000000ULL;
        _cleanup_free_ char *body = NULL;
        size_t len = 0;

        assert_int_equal(ship_encode_loki(recs, ELEMENTSOF(recs), labels, 1, fallback, 1 << 20, &body, &len), 0);
        json_error_t e;
        json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
        if (!root)
                fail_msg("body is not JSON: %s: %.*s", e.text, (int) len, body);
        assert_int_equal(json_object_size(root), 1);
        json_t *streams = json_object_get(root, "streams");
        assert_true(json_is_array(streams));
        /* (n1,pull,info), (n1,latest_tag,medium), (n2,pull,info), in order of first appearance */
        assert_int_equal(json_array_size(streams), 3);

        const char *l0[] = { "job", "pullwatch", "cluster", "prod-eu", "node", "n1", "kind", "pull", "severity", "info" };
        const size_t i0[] = { 0, 2 };
        const uint64_t ts0[] = { t0, t0 + 2000000000ULL };
        check_stream(json_array_get(streams, 0), l0, 5, i0, ts0, 2);

        const char *l1[] = { "job", "pullwatch", "cluster", "prod-eu", "node", "n1", "kind", "latest_tag", "severity", "medium" };
        const size_t i1[] = { 1, 3 };
        const uint64_t ts1[] = { t0 + 1250000000ULL, fallback };
        check_stream(json_array_get(streams, 1), l1, 5, i1, ts1, 2);

        const char *l2[] = { "job", "pullwatch", "cluster", "prod-eu", "node", "n2", "kind", "pull", "severity", "info" };
        const size_t i2[] = { 4 };
        const uint64_t ts2[] = { t0 + 3000000000ULL };
        check_stream(json_array_get(streams, 2), l2, 5, i2, ts2, 1);

        /* never a digest or pod name among labels */
        for (size_t s = 0; s < 3; s++) {
                json_t *l = json_object_get(json_array_get(streams, s), "stream");
                assert_null(json_object_get(l, "digest"));
                assert_null(json_object_get(l, "pod"));
        }
        json_decref(root);
}

static void test_loki_static_node(void **state) {
        ShipRecord recs[ELEMENTSOF(loki_recs)];
        loki_records(recs);
        /* a static node label wins over the record's node: n1 and n2 records share streams */
        const ShipLabel labels[] = { { "node", "static-node" }, { "job", "custom" } };
        _cleanup_free_ char *body = NULL;
        size_t len = 0;
        assert_int_equal(ship_encode_loki(recs, ELEMENTSOF(recs), labels, 2, 1, 1 << 20, &body, &len), 0);
        json_t *root = json_loadb(body, len, 0, NULL);
        assert_non_null(root);
        json_t *streams = json_object_get(root, "streams");
        assert_int_equal(json_array_size(streams), 2);
        json_t *s0 = json_array_get(streams, 0);
        json_t *l = json_object_get(s0, "stream");
        assert_int_equal(json_object_size(l), 4);
        assert_string_equal(json_string_value(json_object_get(l, "node")), "static-node");
        assert_string_equal(json_string_value(json_object_get(l, "job")), "custom");
        assert_int_equal(json_array_size(json_object_get(s0, "values")), 3); /* records 1, 3, 5 */
        json_decref(root);
}

static void test_loki_bad_labels(void **state) {
        ShipRecord rec = { 1, loki_recs[0], strlen(loki_recs[0]) };
        static const ShipLabel bad[][2] = {
                { { "bad-name", "x" }, { "ok", "y" } },
                { { "ok", "x" }, { "ok", "y" } },   /* duplicate */
                { { "1x", "x" }, { "ok", "y" } },
                { { "ok", NULL }, { "ok2", "y" } },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *b = NULL;
                size_t l = 0;
                if (ship_encode_loki(&rec, 1, bad[i], 2, 0, 1 << 20, &b, &l) != -EINVAL)
                        fail_msg("bad label set %zu accepted", i);
                assert_null(b);
        }
        /* over-long or non-string record values are left out of the labels */
        char longkind[600];
        int n = snprintf(longkind, sizeof longkind, "{\"kind\":\"%0300d\",\"severity\":7,\"node\":\"n\"}", 0);
        ShipRecord r2 = { 1, longkind, (size_t) n };
        _cleanup_free_ char *body = NULL;
        size_t len;
        assert_int_equal(ship_encode_loki(&r2, 1, NULL, 0, 5, 1 << 20, &body, &len), 0);
        json_t *root = json_loadb(body, len, 0, NULL);
        json_t *l = json_object_get(json_array_get(json_object_get(root, "streams"), 0), "stream");
        assert_int_equal(json_object_size(l), 2); /* job, node */
        assert_null(json_object_get(l, "kind"));
        assert_null(json_object_get(l, "severity"));
        json_decref(root);
}

static void test_loki_limit(void **state) {
        ShipRecord recs[ELEMENTSOF(loki_recs)];
        loki_records(recs);
        char *body = NULL;
        size_t len = 0;
        assert_int_equal(ship_encode_loki(recs, ELEMENTSOF(recs), NULL, 0, 1, 1 << 20, &body, &len), 0);
        free(body);
        body = NULL;
        size_t full = len;
        assert_int_equal(ship_encode_loki(recs, ELEMENTSOF(recs), NULL, 0, 1, full, &body, &len), 0);
        free(body);
        body = NULL;
        assert_int_equal(ship_encode_loki(recs, ELEMENTSOF(recs), NULL, 0, 1, full - 1, &body, &len), -E2BIG);
        assert_null(body);
}

/* ---- gzip ---- */

static void test_gzip(void **state) {
        static const size_t sizes[] = { 0, 1, 100, 70000, 1 << 20 };
        for (size_t c = 0; c < ELEMENTSOF(sizes); c++) {
                size_t n = sizes[c];
                _cleanup_free_ char *in = malloc(n + 1);
                assert_non_null(in);
                for (size_t i = 0; i < n; i++) /* half-compressible */
                        in[i] = (char) ((i % 7 == 0) ? (i * 2654435761u) >> 24 : 'a' + i % 13);
                _cleanup_free_ char *gz = NULL;
                size_t gzlen = 0;
                assert_int_equal(ship_gzip(in, n, -1, &gz, &gzlen), 0);
                assert_true(gzlen >= 18);
                assert_int_equal((unsigned char) gz[0], 0x1f); /* gzip magic, not zlib */
                assert_int_equal((unsigned char) gz[1], 0x8b);
                assert_int_equal(gz[2], 8); /* deflate */

                _cleanup_free_ char *out = malloc(n + 16);
                z_stream z = {};
                assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
                z.next_in = (Bytef *) gz;
                z.avail_in = (uInt) gzlen;
                z.next_out = (Bytef *) out;
                z.avail_out = (uInt) (n + 16);
                assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
                assert_int_equal(z.total_out, n);
                assert_int_equal(z.avail_in, 0);
                inflateEnd(&z);
                if (n)
                        assert_memory_equal(in, out, n);
        }
}

/* ---- verdicts ---- */

static void test_classify(void **state) {
        static const struct {
                bool transport_ok;
                long status;
                ShipVerdict v;
        } cases[] = {
                { true, 200, SHIP_OK },      { true, 204, SHIP_OK },      { true, 299, SHIP_OK },
                { true, 408, SHIP_RETRY },   { true, 429, SHIP_RETRY },   { true, 500, SHIP_RETRY },
                { true, 502, SHIP_RETRY },   { true, 503, SHIP_RETRY },   { true, 599, SHIP_RETRY },
                { true, 400, SHIP_POISON },  { true, 401, SHIP_POISON },  { true, 403, SHIP_POISON },
                { true, 404, SHIP_POISON },  { true, 413, SHIP_POISON },  { true, 301, SHIP_POISON },
                { true, 302, SHIP_POISON },  { true, 100, SHIP_POISON },  { true, 600, SHIP_POISON },
                { true, 0, SHIP_POISON },    { false, 0, SHIP_RETRY },    { false, 200, SHIP_RETRY },
                { false, 400, SHIP_RETRY },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                ShipVerdict v = ship_classify(cases[i].transport_ok, cases[i].status);
                if (v != cases[i].v)
                        fail_msg("transport_ok=%d status=%ld: %s, expected %s", cases[i].transport_ok,
                                 cases[i].status, ship_verdict_to_string(v), ship_verdict_to_string(cases[i].v));
        }
}

/* ---- Retry-After ---- */

static void test_retry_after(void **state) {
        /* now = Sun, 06 Nov 1994 08:49:37 GMT */
        const uint64_t now = 784111777ULL * 1000000ULL + 999999ULL;
        static const struct {
                const char *v;
                int r;
                uint64_t delay;
        } cases[] = {
                { "0", 0, 0 },
                { "1", 0, 1000000ULL },
                { " 120 ", 0, 120000000ULL },
                { "3600", 0, 3600000000ULL },
                { "3601", 0, SHIP_RETRY_AFTER_MAX_USEC },
                { "99999999999999999999999", 0, SHIP_RETRY_AFTER_MAX_USEC },
                { "Sun, 06 Nov 1994 08:49:47 GMT", 0, 10000000ULL },
                { "Sunday, 06-Nov-94 08:49:57 GMT", 0, 20000000ULL },
                { "Sun Nov  6 08:50:07 1994", 0, 30000000ULL },
                { "Sun, 06 Nov 1994 08:49:37 GMT", 0, 0 },
                { "Sat, 05 Nov 1994 08:49:37 GMT", 0, 0 }, /* in the past */
                { "Mon, 07 Nov 1994 08:49:37 GMT", 0, SHIP_RETRY_AFTER_MAX_USEC },
                { "", -EINVAL, 0 },
                { "   ", -EINVAL, 0 },
                { "-1", -EINVAL, 0 },
                { "1.5", -EINVAL, 0 },
                { "12abc", -EINVAL, 0 },
                { "Sun, 06 Nov 1994 08:49:47 UTC", -EINVAL, 0 },
                { "Sun, 31 Feb 1994 08:49:47 GMT", -EINVAL, 0 },
                { "Sun, 06 Foo 1994 08:49:47 GMT", -EINVAL, 0 },
                { "Sun Nov 6 08:50:07 1994", -EINVAL, 0 },
                { "soon", -EINVAL, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint64_t d = 777;
                int r = ship_parse_retry_after(cases[i].v, now, &d);
                if (r != cases[i].r)
                        fail_msg("'%s': r=%d expected %d", cases[i].v, r, cases[i].r);
                if (r == 0 && d != cases[i].delay)
                        fail_msg("'%s': delay=%" PRIu64 " expected %" PRIu64, cases[i].v, d, cases[i].delay);
                if (r < 0 && d != 777)
                        fail_msg("'%s': out-param overwritten", cases[i].v);
        }
}

/* ---- backoff ---- */

static uint64_t rng_const(void *userdata) {
        return *(uint64_t *) userdata;
}

static void test_backoff(void **state) {
        const uint64_t base = 1000, cap = 60000;
        static const struct {
                unsigned attempt;
                uint64_t rng, floor, want;
        } cases[] = {
                /* window = min(cap, base*2^attempt); result = rng % (window+1), at least floor */
                { 0, 1000, 0, 1000 },          /* window 1000: 1000 % 1001 */
                { 0, 1001, 0, 0 },
                { 1, 2000, 0, 2000 },          /* window 2000 */
                { 3, 8000, 0, 8000 },          /* window 8000 */
                { 3, 8001, 0, 0 },
                { 6, 60000, 0, 60000 },        /* 64000 capped to 60000 */
                { 6, 60001, 0, 0 },
                { 63, 60000, 0, 60000 },       /* no shift overflow */
                { 200, 60000, 0, 60000 },
                { 0, 0, 5000, 5000 },          /* Retry-After floor above the window */
                { 5, 12345, 5000, 12345 },     /* floor below the jittered value */
                { 10, 0, 120000, 120000 },     /* floor above the cap still honoured */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint64_t v = cases[i].rng;
                uint64_t got = ship_backoff_usec(cases[i].attempt, base, cap, cases[i].floor, rng_const, &v);
                if (got != cases[i].want)
                        fail_msg("attempt %u rng %" PRIu64 ": %" PRIu64 " expected %" PRIu64, cases[i].attempt,
                                 cases[i].rng, got, cases[i].want);
        }
        /* the window is never exceeded, whatever the rng returns */
        for (unsigned a = 0; a < 70; a++)
                for (uint64_t v = UINT64_MAX - 50; v != 0; v++) {
                        uint64_t w = a < 6 ? base << a : cap;
                        uint64_t got = ship_backoff_usec(a, base, cap, 0, rng_const, &v);
                        if (got > w)
                                fail_msg("attempt %u: %" PRIu64 " > window %" PRIu64, a, got, w);
                }
}

static void test_formats(void **state) {
        assert_int_equal(ship_format_from_string("jsonl"), SHIP_FORMAT_JSONL);
        assert_int_equal(ship_format_from_string("loki"), SHIP_FORMAT_LOKI);
        assert_int_equal(ship_format_from_string("LOKI"), _SHIP_FORMAT_INVALID);
        assert_int_equal(ship_format_from_string(NULL), _SHIP_FORMAT_INVALID);
        assert_string_equal(ship_format_to_string(SHIP_FORMAT_LOKI), "loki");
        assert_null(ship_format_to_string(_SHIP_FORMAT_MAX));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_label_names), cmocka_unit_test(test_rfc3339),
                cmocka_unit_test(test_jsonl),       cmocka_unit_test(test_jsonl_invalid),
                cmocka_unit_test(test_loki_body),   cmocka_unit_test(test_loki_static_node),
                cmocka_unit_test(test_loki_bad_labels), cmocka_unit_test(test_loki_limit),
                cmocka_unit_test(test_gzip),        cmocka_unit_test(test_classify),
                cmocka_unit_test(test_retry_after), cmocka_unit_test(test_backoff),
                cmocka_unit_test(test_formats),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
