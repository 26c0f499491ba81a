/* metrics: Prometheus text exposition, status.json round trip, atomic writers. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "pullwatch/metrics.h"
#include "pullwatch/util.h"

static MetricsSnapshot sample(void) {
        MetricsSnapshot m;
        metrics_init(&m);
        m.records_spooled_total = 1000;
        m.shipped_total = 990;
        m.retried_total = 3;
        m.dropped_total = 2;
        m.inventory_replaced_total = 40;
        m.dead_lettered_total = 5;
        m.batches_total = 10;
        m.bytes_sent_total = 123456;
        m.spool_bytes = 4096;
        m.spool_pending_records = 3;
        m.last_success_usec = 1714564800123456ULL;
        m.containerd_connected = 1;
        m.updated_usec = 1714564801000000ULL;
        assert_int_equal(metrics_set_findings(&m, "latest_tag", 7), 0);
        assert_int_equal(metrics_set_findings(&m, "we\"ird\\kind", 1), 0);
        strcpy_bounded(m.last_error, sizeof m.last_error, "HTTP 500: boom \"quoted\"");
        return m;
}

static void test_format_exact(void **state) {
        MetricsSnapshot m = sample();
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        assert_int_equal(metrics_format(&m, &text, &len), 0);
        const char *want =
                "# HELP pullwatch_records_spooled_total Records appended to the durable spool.\n"
                "# TYPE pullwatch_records_spooled_total counter\n"
                "pullwatch_records_spooled_total 1000\n"
                "# HELP pullwatch_shipped_total Records acknowledged by the central endpoint.\n"
                "# TYPE pullwatch_shipped_total counter\n"
                "pullwatch_shipped_total 990\n"
                "# HELP pullwatch_retried_total Shipping attempts that failed and were retried.\n"
                "# TYPE pullwatch_retried_total counter\n"
                "pullwatch_retried_total 3\n"
                "# HELP pullwatch_dropped_total Records dropped because the spool was full (oldest first).\n"
                "# TYPE pullwatch_dropped_total counter\n"
                "pullwatch_dropped_total 2\n"
                "# HELP pullwatch_inventory_replaced_total Inventory records replaced unsent by a newer inventory (one is pending at a time).\n"
                "# TYPE pullwatch_inventory_replaced_total counter\n"
                "pullwatch_inventory_replaced_total 40\n"
                "# HELP pullwatch_dead_lettered_total Records the endpoint rejected, moved to the dead-letter file.\n"
                "# TYPE pullwatch_dead_lettered_total counter\n"
                "pullwatch_dead_lettered_total 5\n"
                "# HELP pullwatch_batches_total Batches acknowledged by the endpoint.\n"
                "# TYPE pullwatch_batches_total counter\n"
                "pullwatch_batches_total 10\n"
                "# HELP pullwatch_bytes_sent_total Request body bytes (after gzip) of acknowledged batches.\n"
                "# TYPE pullwatch_bytes_sent_total counter\n"
                "pullwatch_bytes_sent_total 123456\n"
                "# HELP pullwatch_spool_bytes Bytes the spool occupies on disk.\n"
                "# TYPE pullwatch_spool_bytes gauge\n"
                "pullwatch_spool_bytes 4096\n"
                "# HELP pullwatch_spool_pending_records Records in the spool not yet acknowledged.\n"
                "# TYPE pullwatch_spool_pending_records gauge\n"
                "pullwatch_spool_pending_records 3\n"
                "# HELP pullwatch_last_success_timestamp_seconds Time of the last acknowledged batch (0 = never).\n"
                "# TYPE pullwatch_last_success_timestamp_seconds gauge\n"
                "pullwatch_last_success_timestamp_seconds 1714564800.123\n"
                "# HELP pullwatch_findings_total Findings raised, by kind.\n"
                "# TYPE pullwatch_findings_total counter\n"
                "pullwatch_findings_total{kind=\"latest_tag\"} 7\n"
                "pullwatch_findings_total{kind=\"we\\\"ird\\\\kind\"} 1\n"
                "# HELP pullwatch_containerd_connected 1 while the agent is subscribed to containerd's event stream.\n"
                "# TYPE pullwatch_containerd_connected gauge\n"
                "pullwatch_containerd_connected 1\n";
        assert_string_equal(text, want);
        assert_int_equal(len, strlen(want));
}

static void test_format_optional(void **state) {
        static const struct {
                int connected;
                size_t kinds;
                const char *must, *must_not;
        } cases[] = {
                { -1, 0, "pullwatch_last_success_timestamp_seconds 0.000\n", "containerd_connected" },
                { 0, 0, "pullwatch_containerd_connected 0\n", "findings_total" },
                { 5, 1, "pullwatch_containerd_connected 1\n", NULL },
                { -1, 1, "pullwatch_findings_total{kind=\"pull\"} 42\n", "containerd_connected" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                MetricsSnapshot m;
                metrics_init(&m);
                m.containerd_connected = cases[i].connected;
                if (cases[i].kinds)
                        assert_int_equal(metrics_set_findings(&m, "pull", 42), 0);
                _cleanup_free_ char *t = NULL;
                size_t len;
                assert_int_equal(metrics_format(&m, &t, &len), 0);
                if (!strstr(t, cases[i].must))
                        fail_msg("case %zu: missing '%s'", i, cases[i].must);
                if (cases[i].must_not && strstr(t, cases[i].must_not))
                        fail_msg("case %zu: unexpected '%s'", i, cases[i].must_not);
        }
}

static void test_set_findings(void **state) {
        MetricsSnapshot m;
        metrics_init(&m);
        assert_int_equal(metrics_set_findings(&m, "pull", 1), 0);
        assert_int_equal(metrics_set_findings(&m, "pull", 5), 0);
        assert_int_equal(m.n_findings, 1);
        assert_int_equal(m.findings[0].count, 5);
        assert_int_equal(metrics_set_findings(&m, "", 1), -EINVAL);
        assert_int_equal(metrics_set_findings(&m, NULL, 1), -EINVAL);
        assert_int_equal(metrics_set_findings(&m, "0123456789012345678901234567890123", 1), -EINVAL);
        for (int i = 1; i < METRICS_KINDS_MAX; i++) {
                char k[16];
                snprintf(k, sizeof k, "k%d", i);
                assert_int_equal(metrics_set_findings(&m, k, (uint64_t) i), 0);
        }
        assert_int_equal(metrics_set_findings(&m, "one_too_many", 1), -E2BIG);
        assert_int_equal(metrics_set_findings(&m, "k3", 33), 0); /* updating still works */
        assert_int_equal(m.n_findings, METRICS_KINDS_MAX);
}

static void tmpdir(char *buf, size_t size) {
        snprintf(buf, size, "/tmp/pw-test-metrics-XXXXXX");
        assert_non_null(mkdtemp(buf));
}

static size_t count_entries(const char *dir) {
        DIR *d = opendir(dir);
        size_t n = 0;
        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d));)
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

static void rm_rf(const char *dir) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
}

static void test_status_roundtrip(void **state) {
        char dir[64];
        tmpdir(dir, sizeof dir);
        MetricsSnapshot m = sample(), back;
        memset(&back, 0xa5, sizeof back);

        assert_int_equal(metrics_status_read(dir, &back), -ENOENT);
        assert_int_equal(metrics_status_write(dir, &m), 0);
        assert_int_equal(metrics_status_write(dir, &m), 0); /* replace */
        assert_int_equal(count_entries(dir), 1);           /* no temp file left */
        memset(&back, 0, sizeof back);
        assert_int_equal(metrics_status_read(dir, &back), 0);
        assert_int_equal(back.records_spooled_total, 1000);
        assert_int_equal(back.shipped_total, 990);
        assert_int_equal(back.retried_total, 3);
        assert_int_equal(back.dropped_total, 2);
        assert_int_equal(back.inventory_replaced_total, 40);
        assert_int_equal(back.dead_lettered_total, 5);
        assert_int_equal(back.batches_total, 10);
        assert_int_equal(back.bytes_sent_total, 123456);
        assert_int_equal(back.spool_bytes, 4096);
        assert_int_equal(back.spool_pending_records, 3);
        assert_int_equal(back.last_success_usec, 1714564800123456ULL);
        assert_int_equal(back.updated_usec, 1714564801000000ULL);
        assert_int_equal(back.containerd_connected, 1);
        assert_string_equal(back.last_error, m.last_error);
        assert_int_equal(back.n_findings, 2);
        assert_string_equal(back.findings[0].kind, "latest_tag");
        assert_int_equal(back.findings[0].count, 7);
        assert_string_equal(back.findings[1].kind, "we\"ird\\kind");

        /* unknown containerd state round-trips as -1 */
        m.containerd_connected = -1;
        assert_int_equal(metrics_status_write(dir, &m), 0);
        assert_int_equal(metrics_status_read(dir, &back), 0);
        assert_int_equal(back.containerd_connected, -1);
        rm_rf(dir);
}

/* status.json a FIFO: `pullwatch status` is refused at once instead of waiting for a
 * writer; alarm() turns a hang into a failed test. */
static void test_status_fifo(void **state) {
        char dir[64], path[128];
        tmpdir(dir, sizeof dir);
        snprintf(path, sizeof path, "%s/status.json", dir);
        assert_int_equal(mkfifo(path, 0600), 0);
        MetricsSnapshot back;
        alarm(10);
        int r = metrics_status_read(dir, &back);
        alarm(0);
        assert_int_equal(r, -EINVAL);
        unlink(path);
        rmdir(dir);
}

static void test_status_bad(void **state) {
        static const char *const cases[] = {
                "",
                "not json",
                "[]",
                "{\"shipped_total\":-1}",
                "{\"shipped_total\":\"12\"}",
                "{\"shipped_total\":1.5}",
                "{\"containerd_connected\":1}",
                "{\"findings\":[]}",
                "{\"findings\":{\"pull\":\"x\"}}",
                "{\"findings\":{\"\":1}}",
                "{\"last_error\":5}",
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                MetricsSnapshot m;
                memset(&m, 0x5a, sizeof m);
                int r = metrics_status_from_json(cases[i], strlen(cases[i]), &m);
                if (r != -EBADMSG)
                        fail_msg("'%s': r=%d", cases[i], r);
                assert_int_equal(m.shipped_total, 0x5a5a5a5a5a5a5a5aULL); /* untouched */
        }
        /* unknown members are ignored, missing ones are zero */
        MetricsSnapshot m;
        const char *ok = "{\"future\":[1,2],\"shipped_total\":9}";
        assert_int_equal(metrics_status_from_json(ok, strlen(ok), &m), 0);
        assert_int_equal(m.shipped_total, 9);
        assert_int_equal(m.retried_total, 0);
        assert_int_equal(m.containerd_connected, -1);
}

static void test_textfile(void **state) {
        char dir[64], path[128];
        tmpdir(dir, sizeof dir);
        snprintf(path, sizeof path, "%s/pullwatch.prom", dir);
        MetricsSnapshot m = sample();
        assert_int_equal(metrics_write_textfile(path, &m), 0);
        m.shipped_total = 991;
        assert_int_equal(metrics_write_textfile(path, &m), 0);
        assert_int_equal(count_entries(dir), 1);

        _cleanup_free_ char *want = NULL;
        size_t len;
        assert_int_equal(metrics_format(&m, &want, &len), 0);
        char got[8192];
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        size_t n = fread(got, 1, sizeof got - 1, f);
        fclose(f);
        got[n] = 0;
        assert_string_equal(got, want);
        assert_non_null(strstr(got, "pullwatch_shipped_total 991\n"));

        assert_int_equal(metrics_write_textfile("/nonexistent-dir/x.prom", &m), -ENOENT);
        rm_rf(dir);
}

static void test_from_ship_stats(void **state) {
        ShipStats st = {
                .shipped = 4, .retried = 5, .dead_lettered = 6, .batches = 7, .bytes_sent = 8, .last_success_usec = 9,
                .spool = { .appended = 10, .dropped_total = 11, .pending_records = 12, .disk_bytes = 13, .replaced = 14 },
        };
        strcpy_bounded(st.last_error, sizeof st.last_error, "x");
        MetricsSnapshot m;
        metrics_init(&m);
        metrics_from_ship_stats(&m, &st);
        assert_int_equal(m.shipped_total, 4);
        assert_int_equal(m.retried_total, 5);
        assert_int_equal(m.dead_lettered_total, 6);
        assert_int_equal(m.batches_total, 7);
        assert_int_equal(m.bytes_sent_total, 8);
        assert_int_equal(m.last_success_usec, 9);
        assert_int_equal(m.records_spooled_total, 10);
        assert_int_equal(m.dropped_total, 11);
        assert_int_equal(m.spool_pending_records, 12);
        assert_int_equal(m.spool_bytes, 13);
        assert_int_equal(m.inventory_replaced_total, 14);
        assert_string_equal(m.last_error, "x");
        assert_int_equal(m.containerd_connected, -1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_format_exact),   cmocka_unit_test(test_format_optional),
                cmocka_unit_test(test_set_findings),   cmocka_unit_test(test_status_roundtrip),
                cmocka_unit_test(test_status_bad),     cmocka_unit_test(test_textfile),
                cmocka_unit_test(test_status_fifo),
                cmocka_unit_test(test_from_ship_stats),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
