/* scan: the table `pullwatch scan` prints (one row per image record judged, in order,
 * its findings' kinds joined; the count line), the JSON array of findings (pull records
 * left out), and the count of findings the exit status comes from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pullwatch/scan.h"

static Observation obs(const char *ns, const char *ref, const char *digest) {
        Observation o = {0};
        snprintf(o.namespace, sizeof o.namespace, "%s", ns);
        snprintf(o.ref, sizeof o.ref, "%s", ref);
        snprintf(o.digest, sizeof o.digest, "%s", digest);
        return o;
}

static Finding finding(FindingKind kind, const char *ref) {
        Finding f = {.kind = kind, .severity = SEVERITY_HIGH};
        snprintf(f.namespace, sizeof f.namespace, "%s", "default");
        snprintf(f.image.ref, sizeof f.image.ref, "%s", ref);
        return f;
}

static char *print(const ScanReport *s, ScanFormat format, size_t *ret_findings) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        assert_non_null(f);
        *ret_findings = scan_report_print(s, format, f);
        fclose(f);
        return text;
}

static void test_table(void **state) {
        ScanReport *s = NULL;
        assert_int_equal(scan_report_new(&s, true), 0);
        Observation a = obs("default", "docker.io/library/nginx:latest",
                            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        Finding fa[] = {finding(FINDING_LATEST_TAG, a.ref), finding(FINDING_UNTRACEABLE, a.ref)};
        Observation b = obs("k8s.io", "registry.example/shop/web:1.2.3", "");
        Finding pull = finding(FINDING_PULL, b.ref);
        scan_report_row(s, &a, fa, 2);
        scan_report_finding(s, &fa[0]);
        scan_report_finding(s, &fa[1]);
        scan_report_row(s, &b, NULL, 0);
        scan_report_finding(s, &pull); /* not a finding: left out */
        /* wider than their columns: printed whole, the columns after pushed right */
        Observation c = obs("a-namespace-longer-than-twelve",
                            "registry.example/a/very/long/repository/path/that/goes/past/sixty/columns:v1", "sha256:ab");
        Finding fc[] = {finding(FINDING_MUTABLE_TAG, c.ref)};
        scan_report_row(s, &c, fc, 1);

        size_t n;
        char *text = print(s, SCAN_FORMAT_TABLE, &n);
        assert_int_equal(n, 2);
        char want[1024];
        snprintf(want, sizeof want, "%-12s %-60s %-20s %s\n%-12s %-60s %-20s %s\n%-12s %-60s %-20s %s\n%-12s %-60s %-20s %s\n%s\n",
                 "NAMESPACE", "IMAGE", "DIGEST", "FINDINGS", "default", "docker.io/library/nginx:latest",
                 "sha256:0123456789ab", "latest_tag,untraceable", "k8s.io", "registry.example/shop/web:1.2.3", "", "-",
                 c.namespace, c.ref, "sha256:ab", "mutable_tag", "3 image records, 2 findings");
        assert_string_equal(text, want);
        free(text);

        text = print(s, SCAN_FORMAT_JSON, &n);
        assert_int_equal(n, 2);
        assert_non_null(strstr(text, "\"latest_tag\""));
        assert_non_null(strstr(text, "\"untraceable\""));
        assert_null(strstr(text, "\"pull\""));
        free(text);
        scan_report_free(s);
}

/* Without rows (--format json): counted, not kept; the table has its header and count only. */
static void test_counted_only(void **state) {
        ScanReport *s = NULL;
        assert_int_equal(scan_report_new(&s, false), 0);
        Observation a = obs("default", "busybox:1", "sha256:00");
        scan_report_row(s, &a, NULL, 0);
        scan_report_row(s, &a, NULL, 0);
        size_t n;
        char *text = print(s, SCAN_FORMAT_TABLE, &n);
        assert_int_equal(n, 0);
        assert_non_null(strstr(text, "2 image records, 0 findings\n"));
        assert_null(strstr(text, "busybox"));
        free(text);
        text = print(s, SCAN_FORMAT_JSON, &n);
        assert_string_equal(text, "[]\n");
        free(text);
        scan_report_free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_table),
                cmocka_unit_test(test_counted_only),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
