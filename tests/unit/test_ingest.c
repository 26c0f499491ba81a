/* The collector's body decoding: ingest_pack_body packs what ingest_parse_body decodes
 * (the MHD thread decodes once; the writer unpacks, no JSON), with the same errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../fuzz/record_equal.h"
#include "pullwatch/ingest.h"
#include "pullwatch/util.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

static const char body[] =
        "{\"schema\":1,\"id\":\"aaaa\",\"kind\":\"tag_moved\",\"severity\":\"high\",\"time\":"
        "\"2026-11-25T09:00:00.123456Z\",\"node\":\"node-1\",\"cluster\":\"prod\",\"namespace\":\"k8s.io\","
        "\"image\":{\"ref\":\"docker.io/library/web:latest\",\"name\":\"docker.io/library/web\",\"tag\":\"latest\","
        "\"tag_implicit\":true,\"digest\":\"" D2 "\",\"previous_digest\":\"" D1 "\",\"expected_digest\":\"" D1 "\","
        "\"revision\":\"abc\",\"media_type\":\"application/vnd.oci.image.index.v1+json\"},\"workload\":"
        "{\"namespace\":\"shop\",\"pod\":\"web-0\",\"container\":\"web\",\"container_id\":\"c0ffee\"},"
        "\"message\":\"moved \\\"q\\\" \\\\ \\u00e9\"}\r\n"
        "\n"
        "{\"schema\":1,\"id\":\"cccc\",\"kind\":\"inventory\",\"severity\":\"info\",\"time\":\"2026-11-25T10:00:00Z\","
        "\"node\":\"node-1\",\"snapshot\":\"dddddddddddddddddddddddddddddddd\",\"total\":3,\"compliant\":1,"
        "\"part\":2,\"parts\":3,\"images\":[{\"namespace\":\"k8s.io\",\"ref\":\"docker.io/library/a:1\",\"tag\":"
        "\"1\",\"digest\":\"" D1 "\",\"media_type\":\"mt\",\"revision\":\"r1\",\"compliant\":true,\"findings\":[],"
        "\"pods\":[{\"namespace\":\"shop\",\"pod\":\"p1\",\"container\":\"web\"},{\"namespace\":\"blog\",\"pod\":"
        "\"p2\",\"container\":\"w\"}]},{\"namespace\":\"moby\",\"ref\":\"docker.io/library/b:latest\",\"tag\":"
        "\"latest\",\"digest\":\"" D2 "\",\"compliant\":false,\"findings\":[\"latest_tag\",\"untraceable\"]}]}\n"
        "{\"schema\":1,\"id\":\"eeee\",\"kind\":\"inventory\",\"severity\":\"info\",\"time\":\"2026-11-25T11:00:00Z\","
        "\"node\":\"node-3\",\"total\":0,\"compliant\":0,\"part\":1,\"parts\":1,\"images\":[]}\n"
        "{\"schema\":1,\"id\":\"bbbb\",\"kind\":\"pull\",\"severity\":\"info\",\"time\":\"2026-11-25T09:00:01Z\","
        "\"node\":\"node-2\",\"namespace\":\"k8s.io\",\"image\":{\"ref\":\"docker.io/library/c:v1\",\"name\":"
        "\"docker.io/library/c\",\"tag\":\"v1\",\"digest\":\"" D1 "\"},\"message\":\"pulled\"}";

typedef struct Kept {
        Record recs[8];
        size_t n, next;
} Kept;

static int keep(void *userdata, Record *rec) {
        Kept *k = userdata;
        assert_true(k->n < ELEMENTSOF(k->recs));
        k->recs[k->n++] = *rec;
        rec->inventory.images = NULL; /* ours now */
        rec->inventory.n_images = 0;
        return 0;
}

static int compare(void *userdata, Record *rec) {
        Kept *k = userdata;
        assert_true(k->next < k->n);
        assert_true(record_equal(&k->recs[k->next], rec));
        k->next++;
        return 0;
}

static int stop_at_second(void *userdata, Record *rec) {
        size_t *n = userdata;
        return ++*n == 2 ? -ECANCELED : 0;
}

static void test_pack_round_trip(void **state) {
        Kept k = {0};
        char err[256] = "";
        size_t n = 0;
        assert_int_equal(ingest_parse_body(body, strlen(body), 100, keep, &k, &n, err, sizeof err), 0);
        assert_int_equal(n, 4);
        /* what the JSON said, so that the comparison below compares something */
        assert_string_equal(k.recs[0].finding.workload.container_id, "c0ffee");
        assert_true(k.recs[0].finding.image.tag_implicit);
        assert_string_equal(k.recs[0].cluster, "prod");
        assert_int_equal(k.recs[1].inventory.n_images, 2);
        assert_int_equal(k.recs[1].inventory.images[0].n_pods, 2);
        assert_int_equal(k.recs[1].inventory.images[1].findings, (1u << FINDING_LATEST_TAG) | (1u << FINDING_UNTRACEABLE));

        char *packed = NULL;
        size_t len = 0, pn = 0, un = 0;
        assert_int_equal(ingest_pack_body(body, strlen(body), 100, &packed, &len, &pn, err, sizeof err), 0);
        assert_int_equal(pn, 4);
        assert_true(len > 0 && len < strlen(body)); /* smaller than the JSON: what the queue counts */
        assert_int_equal(ingest_unpack(packed, len, compare, &k, &un, err, sizeof err), 0);
        assert_int_equal(un, 4);
        assert_int_equal(k.next, 4);

        /* every cut of the packed form is an error naming the record, never a record made
         * up; except a cut between two records, which is the records before it */
        size_t whole = 0;
        for (size_t cut = 0; cut < len; cut++) {
                size_t m = 99;
                err[0] = 0;
                int r = ingest_unpack(packed, cut, NULL, NULL, &m, err, sizeof err);
                if (r == 0) {
                        assert_int_equal(m, whole);
                        whole++;
                        continue;
                }
                assert_int_equal(r, -EBADMSG);
                assert_non_null(strstr(err, "packed records truncated"));
        }
        assert_int_equal(whole, 4); /* at 0 and after records 1, 2 and 3 */
        /* a callback's error stops the walk and names the record */
        size_t calls = 0;
        assert_int_equal(ingest_unpack(packed, len, stop_at_second, &calls, NULL, err, sizeof err), -ECANCELED);
        assert_int_equal(calls, 2);
        assert_true(startswith(err, "record 2: "));
        free(packed);
        for (size_t i = 0; i < k.n; i++)
                record_done(&k.recs[i]);
}

/* A bad line: ingest_pack_body fails as ingest_parse_body does (the 400's "line N: …"), and
 * leaves nothing to free; more than max_records records: -E2BIG with its line. */
static void test_pack_errors(void **state) {
        static const struct {
                const char *body;
                size_t max;
                int error;
                const char *msg;
        } cases[] = {
                {"{\"schema\":1}\n\nnot json\n", 100, -EBADMSG, "line 1: "},
                {"\n\n{\"schema\":2,\"id\":\"x\"}", 100, -EPROTONOSUPPORT, "line 3: "},
                {"{\"schema\":1,\"id\":\"bbbb\",\"kind\":\"pull\",\"severity\":\"info\",\"time\":\"2026-11-25T09:00:01Z\","
                 "\"node\":\"n\",\"namespace\":\"k8s.io\",\"image\":{\"ref\":\"c:v1\",\"name\":\"c\",\"tag\":\"v1\","
                 "\"digest\":\"" D1 "\"},\"message\":\"m\"}\n{}",
                 1, -E2BIG, "line 2: more than 1 records in one request"},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char e1[256] = "", e2[256] = "";
                char *packed = NULL;
                size_t len = 0, n = 0;
                int r1 = ingest_parse_body(cases[i].body, strlen(cases[i].body), cases[i].max, NULL, NULL, NULL, e1,
                                           sizeof e1);
                int r2 = ingest_pack_body(cases[i].body, strlen(cases[i].body), cases[i].max, &packed, &len, &n, e2,
                                          sizeof e2);
                assert_int_equal(r1, cases[i].error);
                assert_int_equal(r2, cases[i].error);
                assert_string_equal(e1, e2);
                assert_true(startswith(e2, cases[i].msg));
                assert_null(packed);
        }
        /* an empty body packs to nothing, and unpacks to no record */
        char *packed = NULL, err[128] = "";
        size_t len = 1, n = 1;
        assert_int_equal(ingest_pack_body("\n\r\n", 3, 10, &packed, &len, &n, err, sizeof err), 0);
        assert_non_null(packed);
        assert_int_equal(len, 0);
        assert_int_equal(n, 0);
        assert_int_equal(ingest_unpack(packed, len, NULL, NULL, &n, err, sizeof err), 0);
        assert_int_equal(n, 0);
        free(packed);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_pack_round_trip),
                cmocka_unit_test(test_pack_errors),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
