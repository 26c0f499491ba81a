/* The report's pure parts: model order, renderers (JSON, HTML, CSV cells), escaping, and
 * the parsers of durations and times. The store-backed half is test_report_query.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>

#include "pullwatch/report.h"
#include "pullwatch/util.h"

#define EVIL_REF "evil.example/x:<script>alert(1)</script>"
#define EVIL_POD "ns/\"><img src=x onerror=alert(1)></title>&amp;'"

static char *xdup(const char *s) {
        char *c = strdup(s);
        assert_non_null(c);
        return c;
}

/* A small model by hand: two clusters, one divergent tag with an injected reference. */
static ReportModel *sample_model(void) {
        ReportModel *m = report_model_new();
        assert_non_null(m);
        m->generated_usec = 1764474000000000ULL; /* 2025-11-30T03:40:00Z */
        m->nodes = 3;
        m->nodes_stale = 1;
        assert_int_equal(report_strings_add(&m->stale_nodes, "b/node-c"), 0);
        m->total = (ReportCount) {.images = 4, .in_use = 2, .pinned = 2, .latest = 1, .revision_verified = 3,
                                  .compliant = 1, .findings = 5};

        ReportCompliance *c;
        assert_int_equal(report_model_append(m, compliance, &c), 0);
        c->cluster = xdup("b");
        c->k8s_namespace = xdup("shop");
        c->count = (ReportCount) {.images = 3, .compliant = 1};
        assert_int_equal(report_model_append(m, compliance, &c), 0);
        c->cluster = xdup("a");
        c->k8s_namespace = xdup("");
        c->count = (ReportCount) {.images = 2, .compliant = 2};

        ReportDivergence *d;
        assert_int_equal(report_model_append(m, divergence, &d), 0);
        d->ref = xdup(EVIL_REF);
        d->digests = calloc(2, sizeof *d->digests);
        assert_non_null(d->digests);
        d->n_digests = 2;
        d->digests[0].digest = xdup("sha256:aaaa");
        d->digests[0].media_type = xdup("");
        assert_int_equal(report_strings_add(&d->digests[0].nodes, "node-a"), 0);
        assert_int_equal(report_strings_add(&d->digests[0].pods, EVIL_POD), 0);
        d->digests[1].digest = xdup("sha256:bbbb");
        d->digests[1].media_type = xdup("");
        assert_int_equal(report_strings_add(&d->digests[1].nodes, "node-c"), 0);
        assert_int_equal(report_strings_add(&d->digests[1].nodes, "node-b"), 0);

        ReportEvent *e;
        assert_int_equal(report_model_append(m, moves, &e), 0);
        e->kind = xdup("tag_moved");
        e->ref = xdup(EVIL_REF);
        e->digest = xdup("sha256:bbbb");
        e->previous_digest = xdup("sha256:aaaa");
        e->expected_digest = xdup("");
        e->revision = xdup("");
        e->message = xdup("");
        e->first_usec = e->last_usec = 1764400000000000ULL;
        assert_int_equal(report_strings_add(&e->nodes, "node-b"), 0);

        ReportDay *t;
        for (int i = 0; i < 3; i++) {
                assert_int_equal(report_model_append(m, trend, &t), 0);
                snprintf(t->day, sizeof t->day, "2025-11-%02d", 29 - i);
                t->images = 10;
                t->compliant = (uint64_t) (5 + i);
        }
        ReportOffender *o;
        assert_int_equal(report_model_append(m, offender_images, &o), 0);
        o->name = xdup("evil.example/x</title>");
        o->findings = 5;
        o->images = 2;
        report_model_sort(m);
        return m;
}

static void test_sort(void **state) {
        ReportModel *m = sample_model();
        /* compliance by cluster, then namespace */
        assert_string_equal(m->compliance[0].cluster, "a");
        assert_string_equal(m->compliance[1].cluster, "b");
        /* the digest on most nodes first, its nodes sorted */
        assert_string_equal(m->divergence[0].digests[0].digest, "sha256:bbbb");
        assert_string_equal(m->divergence[0].digests[0].nodes.v[0], "node-b");
        /* trend oldest first */
        assert_string_equal(m->trend[0].day, "2025-11-27");
        assert_string_equal(m->trend[2].day, "2025-11-29");
        report_model_free(m);
}

static void test_permille(void **state) {
        static const struct {
                uint64_t images, compliant;
                int permille;
        } table[] = {
                {0, 0, -1}, {1, 1, 1000}, {3, 1, 333}, {3, 2, 667}, {2000, 1999, 1000}, {2001, 1999, 999},
                {8, 1, 125}, {10000, 0, 0},
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                ReportCount c = {.images = table[i].images, .compliant = table[i].compliant};
                assert_int_equal(report_count_permille(&c), table[i].permille);
        }
}

static void test_json(void **state) {
        ReportModel *m = sample_model();
        _cleanup_free_ char *s = NULL;
        size_t n;
        assert_int_equal(report_render_json(m, &s, &n), 0);
        assert_int_equal(strlen(s), n);
        json_error_t e;
        json_t *root = json_loads(s, 0, &e);
        assert_non_null(root);
        assert_int_equal(json_integer_value(json_object_get(root, "schema")), REPORT_SCHEMA_VERSION);
        assert_string_equal(json_string_value(json_object_get(root, "generated")), "2025-11-30T03:40:00.000000Z");
        json_t *head = json_object_get(root, "headline");
        assert_int_equal(json_integer_value(json_object_get(head, "nodes")), 3);
        assert_int_equal(json_integer_value(json_object_get(head, "nodes_stale")), 1);
        assert_true(json_real_value(json_object_get(head, "percent")) == 25.0);
        json_t *div = json_array_get(json_object_get(root, "divergence"), 0);
        assert_string_equal(json_string_value(json_object_get(div, "ref")), EVIL_REF);
        json_t *d0 = json_array_get(json_object_get(div, "digests"), 0);
        assert_string_equal(json_string_value(json_object_get(d0, "digest")), "sha256:bbbb");
        assert_int_equal(json_array_size(json_object_get(d0, "nodes")), 2);
        json_t *d1 = json_array_get(json_object_get(div, "digests"), 1);
        assert_string_equal(json_string_value(json_array_get(json_object_get(d1, "pods"), 0)), EVIL_POD);
        json_t *c1 = json_array_get(json_object_get(root, "compliance"), 1);
        assert_string_equal(json_string_value(json_object_get(c1, "namespace")), "shop");
        /* 1 of 3 prints as 33.3, not 33.299999999999997 */
        assert_non_null(strstr(s, "\"percent\": 33.3\n"));
        assert_int_equal(json_array_size(json_object_get(root, "trend")), 3);
        assert_null(json_object_get(root, "placements")); /* not asked for */
        json_decref(root);
        report_model_free(m);
}

/* Outside markup, an attacker's string may appear only escaped. */
static void test_html_injection(void **state) {
        ReportModel *m = sample_model();
        _cleanup_free_ char *s = NULL;
        size_t n;
        assert_int_equal(report_render_html(m, "/api/v1/report?x=\"><script>", &s, &n), 0);
        assert_int_equal(strlen(s), n);
        assert_null(strstr(s, "<script"));
        assert_null(strstr(s, "<img"));
        assert_null(strstr(s, "onerror=alert(1)>"));
        assert_non_null(strstr(s, "evil.example/x:&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert_non_null(strstr(s, "ns/&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&lt;/title&gt;&amp;amp;&#39;"));
        /* </title> of an image name cannot close the chart's <title> either */
        assert_non_null(strstr(s, "evil.example/x&lt;/title&gt;"));
        /* one <title> per chart in the head, the rest balanced */
        size_t open = 0, close = 0;
        for (const char *p = s; (p = strstr(p, "<title")); p++)
                open++;
        for (const char *p = s; (p = strstr(p, "</title>")); p++)
                close++;
        assert_int_equal(open, close);
        assert_non_null(strstr(s, "href=\"/api/v1/report?x=&quot;&gt;&lt;script&gt;\""));
        report_model_free(m);
}

static void test_html_self_contained(void **state) {
        ReportModel *m = sample_model();
        _cleanup_free_ char *s = NULL;
        size_t n;
        assert_int_equal(report_render_html(m, NULL, &s, &n), 0);
        /* nothing fetched from anywhere: no script, no external reference */
        static const char *const banned[] = {"<script", "<link", "@import", "url(", "src=\"http", "<iframe",
                                             "javascript:", "<img"};
        for (size_t i = 0; i < ELEMENTSOF(banned); i++)
                assert_null(strstr(s, banned[i]));
        assert_non_null(strstr(s, report_html_csp()));
        /* three charts: compliance, the divergent tag's split, the trend; each with a title */
        size_t svgs = 0;
        for (const char *p = s; (p = strstr(p, "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\"")); p++) {
                svgs++;
                const char *end = strstr(p, "</svg>");
                const char *title = strstr(p, "<title");
                assert_non_null(end);
                assert_true(title && title < end);
        }
        assert_int_equal(svgs, 3);
        /* the numbers the JSON holds */
        assert_non_null(strstr(s, "25.0&#160;%"));
        assert_non_null(strstr(s, "33.3&#160;%"));
        report_model_free(m);
}

/* 10,000 nodes behind one digest: the HTML names a dozen and counts the rest. */
static void test_html_caps(void **state) {
        ReportModel *m = sample_model();
        ReportDigest *g = &m->divergence[0].digests[0];
        for (int i = 0; i < 10000; i++) {
                char node[32];
                snprintf(node, sizeof node, "node-%05d", i);
                assert_int_equal(report_strings_add(&g->nodes, node), 0);
        }
        _cleanup_free_ char *s = NULL;
        size_t n;
        assert_int_equal(report_render_html(m, NULL, &s, &n), 0);
        assert_true(n < 64 * 1024);
        assert_non_null(strstr(s, "and 9,990 more (all in the JSON)"));
        assert_null(strstr(s, "node-09999"));
        report_model_free(m);
}

static void test_html_escape(void **state) {
        static const struct {
                const char *in, *out;
        } table[] = {
                {"plain", "plain"},
                {"<script>", "&lt;script&gt;"},
                {"a&b", "a&amp;b"},
                {"\"'", "&quot;&#39;"},
                {"</title>", "&lt;/title&gt;"},
                {"tab\there", "tab\there"},
                {"nl\nx", "nl\xef\xbf\xbdx"},
                {"ünï", "ünï"},
                {"", ""},
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                char *buf = NULL;
                size_t len = 0;
                FILE *f = open_memstream(&buf, &len);
                assert_non_null(f);
                assert_int_equal(report_html_escape(f, table[i].in), 0);
                fclose(f);
                assert_string_equal(buf, table[i].out);
                free(buf);
        }
}

static void test_csv_field(void **state) {
        static const struct {
                const char *in, *out;
        } table[] = {
                {"plain", "plain"},
                {"a,b", "\"a,b\""},
                {"say \"hi\"", "\"say \"\"hi\"\"\""},
                {"line\nbreak", "\"line\nbreak\""},
                {"=HYPERLINK(\"http://x\")", "\"'=HYPERLINK(\"\"http://x\"\")\""},
                {"+1", "\"'+1\""},
                {"-cmd", "\"'-cmd\""},
                {"@SUM(A1)", "\"'@SUM(A1)\""},
                {"sha256:ab", "sha256:ab"},
                {"", ""},
                {NULL, ""},
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                char *buf = NULL;
                size_t len = 0;
                FILE *f = open_memstream(&buf, &len);
                assert_non_null(f);
                assert_int_equal(report_csv_field(f, table[i].in), 0);
                fclose(f);
                assert_string_equal(buf, table[i].out);
                free(buf);
        }
}

static void test_duration(void **state) {
        static const struct {
                const char *in;
                int r;
                uint64_t usec;
        } table[] = {
                {"30", 0, 30000000ULL},         {"30s", 0, 30000000ULL},       {"15m", 0, 900000000ULL},
                {"1h", 0, 3600000000ULL},       {"7d", 0, 604800000000ULL},     {"2w", 0, 1209600000000ULL},
                {"", -EINVAL, 0},               {"h", -EINVAL, 0},             {"-1h", -EINVAL, 0},
                {"1y", -EINVAL, 0},             {"1h ", -EINVAL, 0},           {"0", -ERANGE, 0},
                {"99999999999d", -ERANGE, 0},   {"99999999999999999999999", -EINVAL, 0},
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                uint64_t v = 0;
                assert_int_equal(report_parse_duration(table[i].in, &v), table[i].r);
                if (table[i].r == 0)
                        assert_int_equal(v, table[i].usec);
        }
}

static void test_time(void **state) {
        static const struct {
                const char *in;
                int r;
                uint64_t usec;
        } table[] = {
                {"2025-11-30T03:40:00Z", 0, 1764474000000000ULL},
                {"2025-11-30T03:40:00.5Z", 0, 1764474000500000ULL},
                {"2025-11-30T03:40:00.123456Z", 0, 1764474000123456ULL},
                {"2025-11-30T03:40:00.1234567Z", 0, 1764474000123456ULL},
                {"2025-11-30T03:40:00", -EINVAL, 0},
                {"2025-11-30T03:40:00+01:00", -EINVAL, 0},
                {"2025-11-30T03:40:00.Z", -EINVAL, 0},
                {"yesterday", -EINVAL, 0},
                {"", -EINVAL, 0},
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                uint64_t v = 0;
                assert_int_equal(report_parse_time(table[i].in, &v), table[i].r);
                if (table[i].r == 0) {
                        assert_int_equal(v, table[i].usec);
                        char buf[40];
                        assert_int_equal(report_format_time(v, buf, sizeof buf), 0);
                        uint64_t back;
                        assert_int_equal(report_parse_time(buf, &back), 0);
                        assert_int_equal(back, v);
                }
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sort),           cmocka_unit_test(test_permille),
                cmocka_unit_test(test_json),           cmocka_unit_test(test_html_injection),
                cmocka_unit_test(test_html_self_contained), cmocka_unit_test(test_html_caps),
                cmocka_unit_test(test_html_escape),    cmocka_unit_test(test_csv_field),
                cmocka_unit_test(test_duration),       cmocka_unit_test(test_time),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
