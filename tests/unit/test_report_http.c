/* GET /report and /api/v1/report: the query string as filters, the answers' status and
 * type, bad input as 400 with one line, on a fresh (empty) SQLite store. The numbers over
 * a filled store are checked end to end by tests/integration/test_report.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>

#include "pullwatch/report.h"
#include "pullwatch/store.h"
#include "pullwatch/util.h"
#include "tmpdir.h"

static Store *open_store(const char *dir) {
        char url[512], err[512] = "";
        snprintf(url, sizeof url, "sqlite:%s/r.db", dir);
        Store *s = NULL;
        if (store_open(&s, url, err, sizeof err) < 0)
                fail_msg("store_open: %s", err);
        return s;
}

static void test_routes(void **state) {
        Store *s = open_store(*state);
        static const struct {
                const char *path, *query;
                int status;
                const char *type; /* prefix */
                const char *body; /* substring */
        } table[] = {
                {"/api/v1/report", NULL, 200, "application/json", "\"schema\": 1"},
                {"/api/v1/report", "", 200, "application/json", "\"divergence\": []"},
                {"/api/v1/report", "cluster=prod&namespace=shop&since=24h", 200, "application/json",
                 "\"cluster\": \"prod\""},
                {"/api/v1/report", "namespace=a%2Fb+c", 200, "application/json", "\"namespace\": \"a/b c\""},
                {"/api/v1/report", "workload=shop/web", 200, "application/json", "\"placements\": []"},
                {"/api/v1/report", "image=registry.example/shop/web", 200, "application/json", "\"placements\": []"},
                {"/api/v1/report", "inventory_interval=30m", 200, "application/json",
                 "\"inventory_interval_seconds\": 1800"},
                {"/report", NULL, 200, "text/html", "<!DOCTYPE html>"},
                {"/report", "cluster=prod", 200, "text/html", "href=\"/api/v1/report?cluster=prod\""},
                {"/report", "cluster=%3Cscript%3E", 200, "text/html", "cluster <code>&lt;script&gt;</code>"},
                /* bad input: 400, one line, the caller's text not echoed where it is not ours */
                {"/api/v1/report", "since=forever", 400, "application/json", "since: bad since duration"},
                {"/api/v1/report", "bogus=1", 400, "application/json", "unknown parameter"},
                {"/api/v1/report", "%3Cscript%3E=1", 400, "application/json", "unknown parameter"},
                {"/api/v1/report", "cluster=%zz", 400, "application/json", "percent-encoding"},
                {"/api/v1/report", "cluster=%00", 400, "application/json", "percent-encoding"},
                {"/api/v1/report", "cluster=", 400, "application/json", "empty cluster"},
                {"/api/v1/report", "workload=noslash", 400, "application/json", "NAMESPACE/NAME"},
                {"/api/v1/report", "image=a&workload=b/c", 400, "application/json", "exclude each other"},
                {"/api/v1/report", "now=2026-11-30T05:00:00Z", 400, "application/json", "unknown parameter"},
                {"/report", "since=0", 400, "text/plain", "since"},
                {"/reports", NULL, 404, "text/plain", "not found"},
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                int status = 0;
                const char *type = NULL;
                char *body = NULL;
                size_t len = 0;
                assert_int_equal(fleet_report_http(s, table[i].path, table[i].query, NULL, &status, &type, &body, &len), 0);
                if (status != table[i].status || !startswith(type, table[i].type) || !strstr(body, table[i].body))
                        fail_msg("case %zu (%s?%s): %d %s\n%.400s", i, table[i].path, table[i].query ? table[i].query : "",
                                 status, type, body);
                assert_int_equal(strlen(body), len);
                if (startswith(type, "application/json")) {
                        json_t *j = json_loads(body, 0, NULL);
                        assert_non_null(j); /* errors are JSON too */
                        json_decref(j);
                }
                free(body);
        }
        store_free(s);
}

static void test_query_too_long(void **state) {
        Store *s = open_store(*state);
        char q[5000];
        memset(q, 'a', sizeof q - 1);
        q[sizeof q - 1] = 0;
        memcpy(q, "cluster=", 8);
        int status;
        const char *type;
        char *body;
        size_t len;
        assert_int_equal(fleet_report_http(s, "/api/v1/report", q, NULL, &status, &type, &body, &len), 0);
        assert_int_equal(status, 400);
        free(body);
        store_free(s);
}

/* A caller authenticated as one cluster reads that cluster only. */
static void test_scope(void **state) {
        Store *s = open_store(*state);
        static const struct {
                const char *query;
                int status;
                const char *body;
        } table[] = {
                {NULL, 200, "\"cluster\": \"prod\""},
                {"cluster=prod", 200, "\"cluster\": \"prod\""},
                {"cluster=staging", 403, "own cluster"},
                {"namespace=shop", 200, "\"cluster\": \"prod\""},
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                int status = 0;
                const char *type = NULL;
                char *body = NULL;
                size_t len = 0;
                assert_int_equal(fleet_report_http(s, "/api/v1/report", table[i].query, "prod", &status, &type, &body,
                                                   &len),
                                 0);
                if (status != table[i].status || !strstr(body, table[i].body))
                        fail_msg("case %zu: %d %.300s", i, status, body);
                free(body);
        }
        store_free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_routes, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_query_too_long, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_scope, setup_dir, teardown_dir),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
