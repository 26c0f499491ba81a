/* The fleet store on both engines: every case runs on SQLite (a fresh file) and, when a
 * private PostgreSQL 15 can be started (root, postgresql installed), on a fresh database of
 * one cluster started for the whole run by tests/integration/pg.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <pthread.h>
#include <unistd.h>

#include "pullwatch/record.h"
#include "pullwatch/report.h"
#include "pullwatch/store.h"
#include "pullwatch/util.h"

static char pg_dir[64];
static char pg_url[256]; /* "" when PostgreSQL is not available: the SQLite half still runs */
static char sq_dir[64];
static int db_counter;

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

/* A fresh, empty database of the engine: SQLite file or PostgreSQL database. */
static void fresh_url(StoreEngine e, char *buf, size_t size) {
        db_counter++;
        if (e == STORE_SQLITE) {
                snprintf(buf, size, "sqlite:%s/t%d.db", sq_dir, db_counter);
                return;
        }
        PGconn *c = PQconnectdb(pg_url);
        assert_int_equal(PQstatus(c), CONNECTION_OK);
        char sql[64];
        snprintf(sql, sizeof sql, "CREATE DATABASE t%d", db_counter);
        PGresult *res = PQexec(c, sql);
        assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
        PQfinish(c);
        char base[256];
        snprintf(base, sizeof base, "%s", pg_url);
        *strrchr(base, '/') = 0;
        snprintf(buf, size, "%s/t%d", base, db_counter);
}

static size_t n_engines(void) {
        return pg_url[0] ? 2 : 1;
}

static Store *open_fresh(StoreEngine e) {
        char url[512], err[512] = "";
        fresh_url(e, url, sizeof url);
        Store *s = NULL;
        int r = store_open(&s, url, err, sizeof err);
        if (r < 0)
                fail_msg("store_open(%s): %s", url, err);
        assert_int_equal(store_engine(s), e);
        return s;
}

/* Query result as one string: rows separated by ';', columns by '|'. */
typedef struct Out {
        char text[8192];
        size_t rows;
} Out;

static int out_row(void *userdata, size_t ncols, const char *const *values) {
        Out *o = userdata;
        size_t l = strlen(o->text);
        if (o->rows)
                l += (size_t) snprintf(o->text + l, sizeof o->text - l, ";");
        for (size_t i = 0; i < ncols; i++)
                l += (size_t) snprintf(o->text + l, sizeof o->text - l, "%s%s", i ? "|" : "",
                                       values[i] ? values[i] : "NULL");
        o->rows++;
        return 0;
}

static const char *q(Store *s, const char *sql, size_t n, const char *const *params, Out *o) {
        char err[512] = "";
        memset(o, 0, sizeof *o);
        int r = store_query(s, sql, n, params, out_row, o, err, sizeof err);
        if (r < 0)
                fail_msg("%s: %s", sql, err);
        return o->text;
}

/* Decode a batch of JSON lines into records. */
static size_t decode(const char *const *lines, size_t n, Record *recs) {
        for (size_t i = 0; i < n; i++) {
                char err[256] = "";
                int r = record_from_json(lines[i], strlen(lines[i]), &recs[i], err, sizeof err);
                if (r < 0)
                        fail_msg("line %zu: %s", i + 1, err);
        }
        return n;
}

static StoreIngestResult ingest(Store *s, const char *cluster, const char *const *lines, size_t n) {
        Record recs[8];
        char err[512] = "";
        StoreIngestResult res = {0};
        assert_true(n <= ELEMENTSOF(recs));
        decode(lines, n, recs);
        int r = store_ingest(s, cluster, recs, n, 1800000000000000ULL, &res, err, sizeof err);
        for (size_t i = 0; i < n; i++)
                record_done(&recs[i]);
        if (r < 0)
                fail_msg("store_ingest: %s", err);
        return res;
}

#define PULL(id, node, ref, tag, digest, t)                                                                       \
        "{\"schema\":1,\"id\":\"" id "\",\"kind\":\"pull\",\"severity\":\"info\",\"time\":\"" t "\",\"node\":\"" \
        node "\",\"namespace\":\"k8s.io\",\"image\":{\"ref\":\"" ref "\",\"name\":\"docker.io/library/web\","    \
        "\"tag\":\"" tag "\",\"digest\":\"" digest "\"},\"message\":\"pulled\"}"
#define LATEST(id, node, ref, digest, t)                                                                          \
        "{\"schema\":1,\"id\":\"" id "\",\"kind\":\"latest_tag\",\"severity\":\"medium\",\"time\":\"" t           \
        "\",\"node\":\"" node "\",\"namespace\":\"k8s.io\",\"image\":{\"ref\":\"" ref                           \
        "\",\"name\":\"docker.io/library/web\",\"tag\":\"latest\",\"digest\":\"" digest "\"},"                   \
        "\"workload\":{\"namespace\":\"shop\",\"pod\":\"web-0\",\"container\":\"web\"},\"message\":\"latest\"}"

/* The secondary indexes of `records` (migration 2 keeps only what the report and retention use). */
static const char *const records_indexes[] = {
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records' AND sql IS NOT NULL"
        " ORDER BY name",
        "SELECT indexname FROM pg_indexes WHERE tablename = 'records' AND indexname <> 'records_pkey'"
        " ORDER BY indexname",
};

/* A database of schema version 1 (as collectors before migration 2 left it) upgrades in
 * place: its rows stay, the unused indexes go, and retention still deletes by time. */
static void test_upgrade_from_v1(void **state) {
        char url[512], err[512] = "";
        Out o;
        fresh_url(STORE_SQLITE, url, sizeof url);
        Store *s = NULL;
        assert_int_equal(store_open(&s, url, err, sizeof err), 0);
        s = store_free(s);
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open(url + strlen("sqlite:"), &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db,
                                      "CREATE INDEX records_time ON records (time_usec);"
                                      "CREATE INDEX records_cluster_node ON records (cluster, node);"
                                      "CREATE INDEX node_images_digest ON node_images (digest);"
                                      "DROP INDEX nodes_node;"
                                      "ALTER TABLE node_images DROP COLUMN by_inventory;"
                                      "ALTER TABLE workload_history DROP COLUMN by_inventory;"
                                      "DELETE FROM schema_migrations WHERE version >= 2",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        sqlite3_close(db);
        assert_int_equal(store_open(&s, url, err, sizeof err), 0);
        assert_string_equal(q(s, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL, &o), "1;2;3;4;5;6;7;8;9;10;11;12;13");
        assert_string_equal(q(s, records_indexes[0], 0, NULL, &o), "records_kind_time;records_name");
        const char *recs[] = {
                PULL("p1", "node-a", "docker.io/library/c:v1", "v1", D3, "2026-11-25T09:00:00Z"),
                LATEST("l1", "node-a", "docker.io/library/web:latest", D1, "2026-11-25T09:00:00Z"),
                PULL("p2", "node-a", "docker.io/library/c:v1", "v1", D3, "2026-11-28T09:00:00Z"),
        };
        ingest(s, "prod", recs, 3);
        /* 14 days before 2026-12-11T10:00Z: both records of the 25th go, whatever their kind */
        assert_int_equal(store_maintain(s, 1796983200000000ULL, 14, err, sizeof err), 0);
        assert_string_equal(q(s, "SELECT id FROM records ORDER BY id", 0, NULL, &o), "p2");
        store_free(s);
}

/* The secondary indexes of `node_images` (migration 3 drops the digest one). */
static const char *const node_images_indexes[] = {
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'node_images' AND sql IS NOT NULL"
        " ORDER BY name",
        "SELECT indexname FROM pg_indexes WHERE tablename = 'node_images' AND indexname <> 'node_images_pkey'"
        " ORDER BY indexname",
};

/* What the current schema has of them: no (cluster, node, name) index since migration 11
 * (SQLite) and 12 (PostgreSQL). */
static const char *const node_images_indexes_now[] = {"", ""};

/* Run SQL on the database behind url, outside the store (to make an older schema). */
static void raw_sql(StoreEngine e, const char *url, const char *sql) {
        if (e == STORE_SQLITE) {
                sqlite3 *db = NULL;
                assert_int_equal(sqlite3_open(url + strlen("sqlite:"), &db), SQLITE_OK);
                assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
                sqlite3_close(db);
                return;
        }
        PGconn *c = PQconnectdb(url);
        assert_int_equal(PQstatus(c), CONNECTION_OK);
        PGresult *res = PQexec(c, sql);
        assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
        PQfinish(c);
}

/* A store at url (made fresh) holding batch, then taken back to an older schema by sql
 * (as an older collector left it) and opened again: the migrations since run on it. */
static Store *open_as_older(StoreEngine e, char *url, size_t size, const char *const *batch, size_t n,
                            const char *sql) {
        char err[512] = "";
        Store *s = NULL;
        fresh_url(e, url, size);
        assert_int_equal(store_open(&s, url, err, sizeof err), 0);
        ingest(s, "prod", batch, n);
        s = store_free(s);
        raw_sql(e, url, "ALTER TABLE node_images DROP COLUMN by_inventory"); /* migration 9 */
        raw_sql(e, url, "ALTER TABLE workload_history DROP COLUMN by_inventory"); /* migration 10 */
        raw_sql(e, url, sql);
        assert_int_equal(store_open(&s, url, err, sizeof err), 0);
        return s;
}

/* A database of schema version 2 (as collectors before migration 3 left it) upgrades in
 * place, on both engines: its rows stay, node_images_digest goes, ingest goes on. */
static void test_upgrade_from_v2(void **state) {
        for (size_t e = 0; e < n_engines(); e++) {
                char url[512];
                Out o;
                const char *b1[] = {PULL("u1", "node-a", "docker.io/library/web:1", "1", D1, "2026-11-25T09:00:00Z")};
                Store *s = open_as_older((StoreEngine) e, url, sizeof url, b1, 1,
                        "CREATE INDEX node_images_digest ON node_images (digest);"
                        "DELETE FROM schema_migrations WHERE version >= 3; DROP INDEX nodes_node");
                assert_string_equal(q(s, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL, &o),
                                    "1;2;3;4;5;6;7;8;9;10;11;12;13");
                assert_string_equal(q(s, node_images_indexes[e], 0, NULL, &o), node_images_indexes_now[e]);
                const char *b2[] = {PULL("u2", "node-a", "docker.io/library/web:1", "1", D2, "2026-11-25T10:00:00Z")};
                ingest(s, "prod", b2, 1);
                assert_string_equal(q(s, "SELECT id FROM records ORDER BY id", 0, NULL, &o), "u1;u2");
                assert_string_equal(q(s, "SELECT ref, digest FROM node_images", 0, NULL, &o),
                                    "docker.io/library/web:1|" D2);
                store_free(s);
        }
}

/* A node's row is touched once per request (not once per record): what a request's later
 * chunks and the next request of the same transaction see must be as if every record
 * had touched it — last_seen is the latest request's time, per (cluster, node). */
static void test_node_touched_once_per_request(void **state) {
        for (size_t e = 0; e < n_engines(); e++) {
                Store *s = open_fresh((StoreEngine) e);
                Out o;
                char err[512] = "";
                Record a[3], b[1], c[1];
                const char *la[] = {PULL("t1", "node-a", "docker.io/library/web:1", "1", D1, "2026-11-25T09:00:00Z"),
                                    PULL("t2", "node-b", "docker.io/library/web:1", "1", D1, "2026-11-25T09:00:01Z"),
                                    PULL("t3", "node-a", "docker.io/library/web:2", "2", D2, "2026-11-25T09:00:02Z")};
                const char *lb[] = {PULL("t4", "node-a", "docker.io/library/web:3", "3", D3, "2026-11-25T09:00:03Z")};
                const char *lc[] = {PULL("t5", "node-a", "docker.io/library/web:3", "3", D3, "2026-11-25T09:00:04Z")};
                decode(la, 3, a);
                decode(lb, 1, b);
                decode(lc, 1, c);
                StoreIngestResult res[3] = {0};
                assert_int_equal(store_ingest_begin(s, "prod", 1800000000000000ULL, err, sizeof err), 0);
                assert_int_equal(store_ingest_add(s, a, 2, err, sizeof err), 0);
                assert_int_equal(store_ingest_add(s, a + 2, 1, err, sizeof err), 0); /* a second chunk */
                assert_int_equal(store_ingest_next(s, "prod", 1800000000000005ULL, err, sizeof err), 0);
                assert_int_equal(store_ingest_add(s, b, 1, err, sizeof err), 0);
                assert_int_equal(store_ingest_next(s, "test", 1800000000000009ULL, err, sizeof err), 0);
                assert_int_equal(store_ingest_add(s, c, 1, err, sizeof err), 0);
                assert_int_equal(store_ingest_end(s, true, res, err, sizeof err), 0);
                assert_string_equal(q(s,
                                      "SELECT cluster, node, first_seen_usec, last_seen_usec FROM nodes"
                                      " ORDER BY cluster, node",
                                      0, NULL, &o),
                                    "prod|node-a|1800000000000000|1800000000000005;"
                                    "prod|node-b|1800000000000000|1800000000000000;"
                                    "test|node-a|1800000000000009|1800000000000009");
                for (size_t i = 0; i < 3; i++)
                        record_done(&a[i]);
                record_done(&b[0]);
                record_done(&c[0]);
                store_free(s);
        }
}

/* node_images.pods is JSON of what the agent sent: quotes, backslashes, control
 * characters, '/', DEL and non-ASCII in pod names come back as this exact text (the
 * report parses it), on both engines; an image without pods has '[]'. */
static void test_inventory_pods_json(void **state) {
        static const char *const inv[] = {
                "{\"schema\":1,\"id\":\"pj\",\"kind\":\"inventory\",\"severity\":\"info\",\"time\":"
                "\"2026-11-25T10:00:00Z\",\"node\":\"node-a\",\"total\":2,\"compliant\":2,\"part\":1,\"parts\":1,"
                "\"images\":[{\"namespace\":\"k8s.io\",\"ref\":\"docker.io/library/a:1\",\"digest\":\"" D1 "\","
                "\"compliant\":true,\"findings\":[],\"pods\":[{\"namespace\":\"s\\\"q\",\"pod\":"
                "\"a\\\\b/c\\u0001\\n\\t\\r\\b\\f\\u001f\\u007f\",\"container\":\"\\u00e9\\ud83d\\ude00\"},"
                "{\"namespace\":\"\",\"pod\":\"\",\"container\":\"\"},{\"namespace\":\"b\",\"pod\":\"p\"}]},"
                "{\"namespace\":\"k8s.io\",\"ref\":\"docker.io/library/b:1\",\"digest\":\"" D2 "\","
                "\"compliant\":true,\"findings\":[]}]}",
        };
        for (size_t e = 0; e < n_engines(); e++) {
                Store *s = open_fresh((StoreEngine) e);
                Out o;
                ingest(s, "c1", inv, 1);
                assert_string_equal(q(s, "SELECT pods, k8s_namespaces FROM node_images ORDER BY ref", 0, NULL, &o),
                                    "[{\"namespace\":\"s\\\"q\",\"pod\":\"a\\\\b/c\\u0001\\n\\t\\r\\b\\f\\u001F\x7f\","
                                    "\"container\":\"\xc3\xa9\xf0\x9f\x98\x80\"},{\"namespace\":\"\",\"pod\":\"\","
                                    "\"container\":\"\"},{\"namespace\":\"b\",\"pod\":\"p\",\"container\":\"\"}]|b,s\"q;"
                                    "[]|");
                store_free(s);
        }
}

/* A database of schema version 3 upgrades in place, on both engines: its rows stay and
 * nodes gets its (node) index, which the cluster look-up of a record without one uses
 * (it scanned the whole table before). */
static void test_upgrade_from_v3(void **state) {
        static const char *const nodes_indexes[] = {
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'nodes' AND sql IS NOT NULL",
                "SELECT indexname FROM pg_indexes WHERE tablename = 'nodes' AND indexname <> 'nodes_pkey'",
        };
        for (size_t e = 0; e < n_engines(); e++) {
                char url[512];
                Out o;
                const char *b1[] = {PULL("v1", "node-a", "docker.io/library/web:1", "1", D1, "2026-11-25T09:00:00Z")};
                Store *s = open_as_older((StoreEngine) e, url, sizeof url, b1, 1, "DROP INDEX nodes_node; DELETE FROM schema_migrations WHERE version >= 4");
                assert_string_equal(q(s, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL, &o),
                                    "1;2;3;4;5;6;7;8;9;10;11;12;13");
                assert_string_equal(q(s, nodes_indexes[e], 0, NULL, &o), "nodes_node");
                assert_string_equal(q(s, "SELECT cluster, node FROM nodes", 0, NULL, &o), "prod|node-a");
                if (e == STORE_SQLITE) {
                        /* the look-up's statement text (store.c S_NODE_CLUSTER) goes through it */
                        q(s,
                          "EXPLAIN QUERY PLAN SELECT cluster FROM nodes WHERE node = $1 AND cluster <> '' ORDER BY"
                          " last_seen_usec DESC LIMIT 1",
                          1, (const char *[]){"node-a"}, &o);
                        assert_non_null(strstr(o.text, "USING INDEX nodes_node"));
                }
                /* a record without a cluster, from a collector without tokens, finds node-a's */
                const char *b2[] = {PULL("v2", "node-a", "docker.io/library/web:1", "1", D2, "2026-11-25T10:00:00Z")};
                ingest(s, NULL, b2, 1);
                assert_string_equal(q(s, "SELECT cluster FROM records WHERE id = 'v2'", 0, NULL, &o), "prod");
                store_free(s);
        }
}

/* The definition of records_name, as each engine writes it back. */
static const char *const records_name_def[] = {
        "SELECT sql FROM sqlite_master WHERE name = 'records_name'",
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'records_name'",
};

/* A database of schema version 4 (records_name over every record) upgrades in place, on
 * both engines: its rows stay, records_name holds pulls only, and the report's look-up of
 * pulls by name (report_query.c, --image) goes through it and finds the old pull. */
static void test_upgrade_from_v4(void **state) {
        static const char *const pulls_by_name =
                "SELECT cluster, node, ref, digest, MAX(revision), MAX(time_usec) FROM records "
                "WHERE kind = 'pull' AND name = $1 AND ($2 = '' OR cluster = $2) GROUP BY cluster, node, ref, digest";
        for (size_t e = 0; e < n_engines(); e++) {
                char url[512];
                Out o;
                const char *b1[] = {PULL("w1", "node-a", "docker.io/library/web:1", "1", D1, "2026-11-25T09:00:00Z"),
                                    LATEST("w2", "node-a", "docker.io/library/web:latest", D2, "2026-11-25T09:00:01Z")};
                Store *s = open_as_older((StoreEngine) e, url, sizeof url, b1, 2,
                        "DROP INDEX records_name; CREATE INDEX records_name ON records (name);"
                        "DELETE FROM schema_migrations WHERE version >= 5");
                assert_string_equal(q(s, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL, &o),
                                    "1;2;3;4;5;6;7;8;9;10;11;12;13");
                assert_string_equal(q(s, records_indexes[e], 0, NULL, &o), "records_kind_time;records_name");
                q(s, records_name_def[e], 0, NULL, &o);
                assert_non_null(strstr(o.text, e == STORE_SQLITE ? "WHERE kind = 'pull'" : "WHERE (kind = 'pull'::text)"));
                assert_string_equal(q(s, "SELECT id FROM records ORDER BY id", 0, NULL, &o), "w1;w2");
                if (e == STORE_SQLITE) {
                        char plan[1024];
                        snprintf(plan, sizeof plan, "EXPLAIN QUERY PLAN %s", pulls_by_name);
                        q(s, plan, 2, (const char *[]){"docker.io/library/web", ""}, &o);
                        assert_non_null(strstr(o.text, "USING INDEX records_name"));
                }
                const char *b2[] = {PULL("w3", "node-b", "docker.io/library/web:1", "1", D3, "2026-11-25T10:00:00Z")};
                ingest(s, "prod", b2, 1);
                char sorted[1024];
                snprintf(sorted, sizeof sorted, "%s ORDER BY node", pulls_by_name);
                assert_string_equal(q(s, sorted, 2, (const char *[]){"docker.io/library/web", ""}, &o),
                                    "prod|node-a|docker.io/library/web:1|" D1 "||1795597200000000;"
                                    "prod|node-b|docker.io/library/web:1|" D3 "||1795600800000000");
                store_free(s);
        }
}

/* Records carry attacker-controlled text: on PostgreSQL a batch's records travel as array
 * literals, so quotes, backslashes, commas, braces and the word NULL must come back as sent;
 * a duplicate id within one batch is stored once and counted as a duplicate. */
#define ODD(id)                                                                                                 \
        "{\"schema\":1,\"id\":\"" id "\",\"kind\":\"pull\",\"severity\":\"info\",\"time\":"                    \
        "\"2026-11-25T09:00:00Z\",\"node\":\"n,{1}\",\"namespace\":\"k8s.io\",\"image\":{\"ref\":"             \
        "\"docker.io/library/c:v1\",\"name\":\"docker.io/library/c\",\"tag\":\"v1\",\"digest\":\"" D3 "\"},"     \
        "\"message\":\"a \\\"q\\\" \\\\ b,{c} NULL \\u00e9\"}"

static void test_record_text_round_trip(void **state) {
        for (size_t e = 0; e < n_engines(); e++) {
                Store *s = open_fresh((StoreEngine) e);
                Out o;
                const char *recs[] = {ODD("x1"), ODD("x2"), ODD("x1")};
                StoreIngestResult res = ingest(s, "prod", recs, 3);
                assert_int_equal(res.accepted, 2);
                assert_int_equal(res.duplicates, 1);
                assert_string_equal(q(s, "SELECT id, node, message, time_usec FROM records ORDER BY id", 0, NULL, &o),
                                    "x1|n,{1}|a \"q\" \\ b,{c} NULL \xc3\xa9|1795597200000000;"
                                    "x2|n,{1}|a \"q\" \\ b,{c} NULL \xc3\xa9|1795597200000000");
                store_free(s);
        }
}

/* The records path's state on PostgreSQL goes as binary column arrays (store.c
 * arrays_add): text that array literals had to escape or could misread ('"', '\', '{',
 * '}', ',', a "NULL" string, an empty one, tabs, UTF-8, a long one) lands in records,
 * node_images, workload_history and nodes exactly as SQLite (bound natively) stores it,
 * in one request and in two. */
#define ODD_NODE "n\\\"1\\\\{,} NULL"
#define ODD_REF "r.example/a\\\"b\\\\c{d,e}:NULL"
#define ODD_REC(id, kind, t, pod, container)                                                                     \
        "{\"schema\":1,\"id\":\"" id "\",\"kind\":\"" kind "\",\"severity\":\"low\",\"time\":\"" t             \
        "\",\"node\":\"" ODD_NODE "\",\"namespace\":\"k8s.io\",\"image\":{\"ref\":\"" ODD_REF                   \
        "\",\"name\":\"r.example/a\\\"b\\\\c{d,e}\",\"tag\":\"NULL\",\"digest\":\"" D1 "\",\"revision\":"      \
        "\"\\t\\u00e9\"},\"workload\":{\"namespace\":\"ns \\\"x\\\"\",\"pod\":\"" pod "\",\"container\":\""  \
        container "\"},\"message\":\"" ODD_720 "\"}"
#define ODD_12 "{\\\"a\\\",\\\\NULL} " /* {"a",\NULL} and a space */
#define ODD_120 ODD_12 ODD_12 ODD_12 ODD_12 ODD_12 ODD_12 ODD_12 ODD_12 ODD_12 ODD_12
#define ODD_720 ODD_120 ODD_120 ODD_120 ODD_120 ODD_120 ODD_120 /* 720 bytes */

static void test_records_odd_text_both_engines(void **state) {
        static const char *const batch[] = {
                ODD_REC("o1", "pull", "2026-11-25T09:00:00Z", "", ""),
                ODD_REC("o2", "untraceable", "2026-11-25T09:00:01Z", "p\\\\q {1,2}", "NULL"),
                ODD_REC("o3", "latest_tag", "2026-11-25T09:00:02Z", "\\\"", ""),
                ODD_REC("o2", "untraceable", "2026-11-25T09:00:01Z", "p\\\\q {1,2}", "NULL"),
        };
        static const char *const dumps[] = {
                "SELECT id, kind, node, ref, name, tag, revision, k8s_namespace, pod, container, message FROM records"
                " ORDER BY id",
                "SELECT cluster, node, namespace, ref, name, tag, digest, revision, findings, pods, k8s_namespaces,"
                " findings_mask FROM node_images ORDER BY node, ref",
                "SELECT cluster, node, k8s_namespace, pod, container, name, ref, digest, revision FROM workload_history"
                " ORDER BY pod, container",
                "SELECT cluster, node FROM nodes ORDER BY node",
        };
        Out first[ELEMENTSOF(dumps)];
        for (size_t e = 0; e < n_engines(); e++) {
                Store *s = open_fresh((StoreEngine) e);
                Out o;
                StoreIngestResult r = ingest(s, "c,{\"1\"}", batch, 2); /* one request */
                assert_int_equal(r.accepted, 2);
                r = ingest(s, "c,{\"1\"}", batch + 2, 2); /* the next: a new one and a duplicate */
                assert_int_equal(r.accepted, 1);
                assert_int_equal(r.duplicates, 1);
                assert_string_equal(q(s, "SELECT node, tag, length(message) FROM records WHERE id = 'o1'", 0, NULL, &o),
                                    "n\"1\\{,} NULL|NULL|720");
                assert_string_equal(q(s, "SELECT pod, container FROM workload_history ORDER BY pod", 0, NULL, &o),
                                    "\"|;p\\q {1,2}|NULL");
                assert_string_equal(q(s, "SELECT cluster, ref, revision FROM node_images", 0, NULL, &o),
                                    "c,{\"1\"}|r.example/a\"b\\c{d,e}:NULL|\t\xc3\xa9");
                for (size_t d = 0; d < ELEMENTSOF(dumps); d++) {
                        q(s, dumps[d], 0, NULL, &o);
                        if (e == 0)
                                first[d] = o;
                        else
                                assert_string_equal(o.text, first[d].text);
                }
                store_free(s);
        }
}

/* Group commit: several requests in one transaction, each with its own cluster and its
 * own counts; a record two requests both carry counts as the later one's duplicate; a
 * rolled-back group stores nothing of any of its requests. */
static void test_group_commit(void **state) {
        for (size_t e = 0; e < n_engines(); e++) {
                Store *s = open_fresh((StoreEngine) e);
                Out o;
                char err[512] = "";
                Record a[2], b[2];
                const char *la[] = {PULL("g1", "node-a", "docker.io/library/web:1", "1", D1, "2026-11-25T09:00:00Z"),
                                    PULL("g2", "node-a", "docker.io/library/web:2", "2", D2, "2026-11-25T09:00:01Z")};
                const char *lb[] = {PULL("g2", "node-b", "docker.io/library/web:2", "2", D2, "2026-11-25T09:00:01Z"),
                                    PULL("g3", "node-b", "docker.io/library/web:3", "3", D3, "2026-11-25T09:00:02Z")};
                decode(la, 2, a);
                decode(lb, 2, b);
                StoreIngestResult res[2] = {0};
                /* rolled back: nothing of either request */
                assert_int_equal(store_ingest_begin(s, "prod", 1800000000000000ULL, err, sizeof err), 0);
                assert_int_equal(store_ingest_add(s, a, 2, err, sizeof err), 0);
                assert_int_equal(store_ingest_next(s, "test", 1800000000000001ULL, err, sizeof err), 0);
                assert_int_equal(store_ingest_add(s, b, 2, err, sizeof err), 0);
                assert_int_equal(store_ingest_end(s, false, res, err, sizeof err), 0);
                assert_string_equal(q(s, "SELECT COUNT(*) FROM records", 0, NULL, &o), "0");
                assert_string_equal(q(s, "SELECT COUNT(*) FROM nodes", 0, NULL, &o), "0");
                /* committed: one transaction, two answers */
                assert_int_equal(store_ingest_begin(s, "prod", 1800000000000000ULL, err, sizeof err), 0);
                assert_int_equal(store_ingest_add(s, a, 2, err, sizeof err), 0);
                assert_int_equal(store_ingest_next(s, "test", 1800000000000001ULL, err, sizeof err), 0);
                assert_int_equal(store_ingest_add(s, b, 2, err, sizeof err), 0);
                assert_int_equal(store_ingest_end(s, true, res, err, sizeof err), 0);
                assert_int_equal(res[0].accepted, 2);
                assert_int_equal(res[0].duplicates, 0);
                assert_int_equal(res[1].accepted, 1);
                assert_int_equal(res[1].duplicates, 1);
                assert_string_equal(q(s, "SELECT id, cluster, node, received_usec FROM records ORDER BY id", 0, NULL, &o),
                                    "g1|prod|node-a|1800000000000000;g2|prod|node-a|1800000000000000;"
                                    "g3|test|node-b|1800000000000001");
                assert_string_equal(q(s, "SELECT cluster, node, last_seen_usec FROM nodes ORDER BY node", 0, NULL, &o),
                                    "prod|node-a|1800000000000000;test|node-b|1800000000000001");
                assert_string_equal(q(s, "SELECT cluster, node, ref FROM node_images ORDER BY node, ref", 0, NULL, &o),
                                    "prod|node-a|docker.io/library/web:1;prod|node-a|docker.io/library/web:2;"
                                    "test|node-b|docker.io/library/web:2;test|node-b|docker.io/library/web:3");
                for (size_t i = 0; i < 2; i++) {
                        record_done(&a[i]);
                        record_done(&b[i]);
                }
                store_free(s);
        }
}

/* On PostgreSQL a batch's state changes go out as one statement per kind of change (column
 * arrays); on SQLite one statement per record, in order. A batch where one reference
 * moves back and forth, late records arrive, one pod's history key repeats, and an
 * inventory lists a reference and a pod twice must leave the same state on both. */
#define FIND(id, kind, ref, digest, t, pod, rev)                                                                  \
        "{\"schema\":1,\"id\":\"" id "\",\"kind\":\"" kind "\",\"severity\":\"medium\",\"time\":\"" t             \
        "\",\"node\":\"node-a\",\"namespace\":\"k8s.io\",\"image\":{\"ref\":\"" ref                              \
        "\",\"name\":\"docker.io/library/web\",\"tag\":\"latest\",\"digest\":\"" digest "\",\"revision\":\"" rev \
        "\",\"previous_digest\":\"" D1 "\"},\"workload\":{\"namespace\":\"shop\",\"pod\":\"" pod                  \
        "\",\"container\":\"web\"},\"message\":\"m\"}"
#define WEB "docker.io/library/web:latest"
#define INV_IMAGE(ref, digest, rev, pods)                                                                         \
        "{\"namespace\":\"k8s.io\",\"ref\":\"" ref "\",\"digest\":\"" digest "\",\"revision\":\"" rev             \
        "\",\"compliant\":true,\"findings\":[],\"pods\":[" pods "]}"
#define POD(p) "{\"namespace\":\"shop\",\"pod\":\"" p "\",\"container\":\"web\"}"

/* A finding's effect on node_images, each case on both engines: no row yet → a row at the
 * finding's digest with that finding's flags; a row at that digest → the kind is added
 * to what stands; a row at another digest (the tag moved since) → left alone; a replay →
 * nothing changes. Two findings of one row in one batch as well as in two. */
static void test_finding_upsert(void **state) {
        static const char cols[] = "SELECT digest, name, tag, revision, pinned, latest, revision_verified, compliant,"
                                   " findings, pods, k8s_namespaces, updated_usec, findings_mask FROM node_images";
        static const char *const b1[] = {
                FIND("f1", "untraceable", WEB, D1, "2026-11-25T09:00:00Z", "web-0", ""),
        };
        static const char *const b2[] = {
                FIND("f2", "latest_tag", WEB, D1, "2026-11-25T09:01:00Z", "web-0", "r1"),
                FIND("f3", "mutable_tag", WEB, D2, "2026-11-25T09:02:00Z", "web-0", ""),
                FIND("f4", "revision_mismatch", WEB, D1, "2026-11-25T08:00:00Z", "web-1", ""),
        };
        for (size_t e = 0; e < n_engines(); e++) {
                Store *s = open_fresh((StoreEngine) e);
                Out o;
                ingest(s, "c1", b1, 1);
                assert_string_equal(q(s, cols, 0, NULL, &o),
                                    D1 "|docker.io/library/web|latest||1|0|0|0|untraceable|[]||1795597200000000|64");
                ingest(s, "c1", b2, 3);
                /* +latest_tag and +revision_mismatch (an older finding still stands: flags are not
                 * ordered by time, the row's time stays); mutable_tag at D2 is not this row's */
                assert_string_equal(q(s, cols, 0, NULL, &o),
                                    D1 "|docker.io/library/web|latest||0|1|0|0|latest_tag,revision_mismatch,untraceable"
                                       "|[]||1795597200000000|98");
                ingest(s, "c1", b2, 3);
                ingest(s, "c1", b1, 1);
                assert_string_equal(q(s, cols, 0, NULL, &o),
                                    D1 "|docker.io/library/web|latest||0|1|0|0|latest_tag,revision_mismatch,untraceable"
                                       "|[]||1795597200000000|98");
                /* all in one batch on a fresh store: the same state */
                store_free(s);
                s = open_fresh((StoreEngine) e);
                const char *all[] = {b1[0], b2[0], b2[1], b2[2]};
                ingest(s, "c1", all, 4);
                assert_string_equal(q(s, cols, 0, NULL, &o),
                                    D1 "|docker.io/library/web|latest||0|1|0|0|latest_tag,revision_mismatch,untraceable"
                                       "|[]||1795597200000000|98");
                /* a mutable_tag first, at D2: the row is made at D2; D1's findings then miss it */
                store_free(s);
                s = open_fresh((StoreEngine) e);
                const char *other[] = {b2[1], b1[0]};
                ingest(s, "c1", other, 2);
                assert_string_equal(q(s, cols, 0, NULL, &o),
                                    D2 "|docker.io/library/web|latest||0|0|1|0|mutable_tag|[]||1795597320000000|4");
                store_free(s);
        }
}

/* SQLite applies a request's inventories together, each table's rows in index order
 * (store.c inv_flush): the state must be what one record at a time leaves. Eight records
 * as one request and as eight, on each engine: a pull arriving after an inventory of its
 * node with an older time (its new row must survive that inventory), two inventories of
 * one node (the later-arriving one older: a replay that changes no image), a reference and
 * a pod listed twice, and an inventory of another node in between. */
#define INV_OF(id, node, t, images)                                                                               \
        "{\"schema\":1,\"id\":\"" id "\",\"kind\":\"inventory\",\"severity\":\"info\",\"time\":\"" t     \
        "\",\"node\":\"" node "\",\"total\":1,\"compliant\":1,\"part\":1,\"parts\":1,\"images\":[" images "]}"
static void test_inventories_deferred_in_order(void **state) {
        static const char *const batch[] = {
                INV_OF("v1", "node-a", "2026-11-25T10:00:00Z",
                       INV_IMAGE("docker.io/library/x:1", D1, "r1", POD("p1")) "," INV_IMAGE(
                               "docker.io/library/y:1", D2, "", POD("p2"))),
                PULL("u1", "node-a", "docker.io/library/z:9", "9", D3, "2026-11-25T09:30:00Z"),
                INV_OF("v2", "node-b", "2026-11-25T10:00:00Z", INV_IMAGE("docker.io/library/x:1", D2, "", POD("q1"))),
                INV_OF("v3", "node-a", "2026-11-25T11:00:00Z",
                       INV_IMAGE("docker.io/library/x:1", D2, "r2", POD("p1")) "," INV_IMAGE(
                               "docker.io/library/x:1", D1, "", POD("p1") "," POD("p1")) "," INV_IMAGE("docker.io/"
                                                                                                     "library/w:1",
                                                                                                     D3, "", "")),
                PULL("u2", "node-a", "docker.io/library/y:1", "1", D3, "2026-11-25T10:30:00Z"),
                INV_OF("v4", "node-a", "2026-11-25T10:45:00Z", INV_IMAGE("docker.io/library/v:1", D1, "", POD("p9"))),
                INV_OF("v5", "node-c", "2026-11-25T10:00:00Z", ""),
                PULL("u3", "node-c", "docker.io/library/x:1", "1", D2, "2026-11-25T09:00:00Z"),
        };
        static const char *const dumps[] = {
                "SELECT cluster, node, namespace, ref, name, tag, digest, media_type, revision, pinned, latest,"
                " revision_verified, compliant, findings, pods, k8s_namespaces, " STORE_IMAGE_UPDATED_SQL("node_images")
                ", findings_mask FROM node_images ORDER BY node, ref",
                "SELECT cluster, node, k8s_namespace, pod, container, name, ref, digest, revision, first_seen_usec,"
                " " STORE_WORKLOAD_LAST_SEEN_SQL("workload_history") " FROM workload_history ORDER BY node, pod, digest",
                "SELECT cluster, node, last_inventory_usec FROM nodes ORDER BY node",
        };
        const size_t n = ELEMENTSOF(batch);
        Out first[ELEMENTSOF(dumps)];
        for (size_t e = 0; e < n_engines(); e++)
                for (int together = 0; together < 2; together++) {
                        Store *s = open_fresh((StoreEngine) e);
                        if (together) {
                                StoreIngestResult r = ingest(s, "c1", batch, n);
                                assert_int_equal(r.inventories, 5);
                        } else
                                for (size_t i = 0; i < n; i++)
                                        ingest(s, "c1", batch + i, 1);
                        for (size_t d = 0; d < ELEMENTSOF(dumps); d++) {
                                Out o;
                                q(s, dumps[d], 0, NULL, &o);
                                if (e == 0 && !together)
                                        first[d] = o;
                                else
                                        assert_string_equal(o.text, first[d].text);
                        }
                        store_free(s);
                }
        /* one record at a time: node-a holds x:1 (the last listed) and w:1 of v3, and z:9 from
         * the pull older than v1 (it arrived after v1, so v1 did not remove it; v3 did: 09:30 <
         * 11:00); y:1 from the pull after v3 (v3 had removed v1's y:1); the replay v4 changes no
         * image; node-c: the pull older than its inventory, which arrived first */
        assert_string_equal(first[0].text,
                            "c1|node-a|k8s.io|docker.io/library/w:1|docker.io/library/w||" D3
                            "|||1|0|1|1||[]||1795604400000000|0;"
                            "c1|node-a|k8s.io|docker.io/library/x:1|docker.io/library/x||" D1
                            "|||1|0|1|1||[{\"namespace\":\"shop\",\"pod\":\"p1\",\"container\":\"web\"},"
                            "{\"namespace\":\"shop\",\"pod\":\"p1\",\"container\":\"web\"}]|shop|1795604400000000|0;"
                            "c1|node-a|k8s.io|docker.io/library/y:1|docker.io/library/web|1|" D3
                            "|||1|0|1|1||[]||1795602600000000|0;"
                            "c1|node-b|k8s.io|docker.io/library/x:1|docker.io/library/x||" D2
                            "|||1|0|1|1||[{\"namespace\":\"shop\",\"pod\":\"q1\",\"container\":\"web\"}]|shop|"
                            "1795600800000000|0;"
                            "c1|node-c|k8s.io|docker.io/library/x:1|docker.io/library/web|1|" D2
                            "|||1|0|1|1||[]||1795597200000000|0");
        assert_string_equal(first[2].text, "c1|node-a|1795604400000000;c1|node-b|1795600800000000;"
                                           "c1|node-c|1795600800000000");
}

/* SQLite's state queue (store.h, migration 13): the records table is the queue of node
 * state still to apply. A transaction whose caller says more requests are coming leaves
 * the state of its pulls and findings queued; a read sees it applied. */
static StoreIngestResult ingest_deferred(Store *s, const char *cluster, const char *const *lines, size_t n) {
        Record recs[8];
        char err[512] = "";
        StoreIngestResult res = {0};
        assert_true(n <= ELEMENTSOF(recs));
        decode(lines, n, recs);
        int r = store_ingest_begin(s, cluster, 1800000000000000ULL, err, sizeof err);
        if (r >= 0)
                r = store_ingest_add(s, recs, n, err, sizeof err);
        store_ingest_defer(s, true);
        int k = store_ingest_end(s, r >= 0, &res, err, sizeof err);
        for (size_t i = 0; i < n; i++)
                record_done(&recs[i]);
        if (r < 0 || k < 0)
                fail_msg("store_ingest (deferred): %s", err);
        return res;
}

static int raw_row(void *userdata, int ncols, char **values, char **names) {
        (void) names;
        return out_row(userdata, (size_t) ncols, (const char *const *) values);
}

/* A query on the SQLite file behind url through a connection of its own (not the store's:
 * nothing is applied first). */
static const char *raw_q(const char *url, const char *sql, Out *o) {
        sqlite3 *db = NULL;
        memset(o, 0, sizeof *o);
        assert_int_equal(sqlite3_open(url + strlen("sqlite:"), &db), SQLITE_OK);
        char *msg = NULL;
        int rc = sqlite3_exec(db, sql, raw_row, o, &msg);
        if (rc != SQLITE_OK)
                fail_msg("%s: %s", sql, msg ? msg : "?");
        sqlite3_close(db);
        return o->text;
}

static const char *const state_dumps[] = {
        "SELECT cluster, node, namespace, ref, name, tag, digest, media_type, revision, pinned, latest,"
        " revision_verified, compliant, findings, pods, k8s_namespaces, updated_usec, findings_mask FROM node_images"
        " ORDER BY node, ref",
        "SELECT cluster, node, k8s_namespace, pod, container, name, ref, digest, revision, first_seen_usec,"
        " last_seen_usec FROM workload_history ORDER BY node, pod, digest",
        "SELECT cluster, node, last_inventory_usec FROM nodes ORDER BY node",
};

/* The state of lines ingested one request at a time, each applied at its commit. */
static void state_reference(const char *const *lines, size_t n, Out want[static ELEMENTSOF(state_dumps)]) {
        Store *s = open_fresh(STORE_SQLITE);
        for (size_t i = 0; i < n; i++)
                ingest(s, "c1", lines + i, 1);
        for (size_t d = 0; d < ELEMENTSOF(state_dumps); d++)
                q(s, state_dumps[d], 0, NULL, &want[d]);
        store_free(s);
}

static const char *const state_batch[] = {
        PULL("s1", "node-a", "docker.io/library/web:1", "1", D1, "2026-11-25T09:00:00Z"),
        FIND("s2", "latest_tag", WEB, D1, "2026-11-25T09:01:00Z", "web-0", "r1"),
        PULL("s3", "node-a", WEB, "latest", D2, "2026-11-25T09:02:00Z"),
        FIND("s4", "untraceable", WEB, D2, "2026-11-25T09:03:00Z", "web-1", ""),
        FIND("s5", "mutable_tag", WEB, D1, "2026-11-25T09:04:00Z", "web-0", ""), /* D1 no longer the row's */
};

/* Deferred: the records are stored, their state is not, until a reader comes — another
 * store opening the database (a report), or a query on the same store; then it is what
 * applying each at its commit gives. Failed before this store had the queue's readers
 * apply it (store_open, store_query): the state stayed queued. */
static void test_state_deferred_until_read(void **state) {
        (void) state;
        const size_t n = ELEMENTSOF(state_batch);
        Out want[ELEMENTSOF(state_dumps)], o;
        state_reference(state_batch, n, want);
        for (int reader = 0; reader < 2; reader++) {
                char url[512], err[512] = "";
                fresh_url(STORE_SQLITE, url, sizeof url);
                Store *s = NULL;
                assert_int_equal(store_open(&s, url, err, sizeof err), 0);
                for (size_t i = 0; i < n; i++)
                        assert_int_equal(ingest_deferred(s, "c1", state_batch + i, 1).accepted, 1);
                assert_int_equal(store_state_pending(s), n);
                assert_string_equal(raw_q(url, "SELECT COUNT(*) FROM records", &o), "5");
                assert_string_equal(raw_q(url, "SELECT COUNT(*) FROM node_images", &o), "0");
                assert_string_equal(raw_q(url, "SELECT COUNT(*) FROM workload_history", &o), "0");
                assert_string_equal(raw_q(url, "SELECT applied_rowid FROM state_applied", &o), "0");
                if (reader == 0) { /* a report opens its own store */
                        Store *r = NULL;
                        assert_int_equal(store_open(&r, url, err, sizeof err), 0);
                        store_free(r);
                } else /* a query on the store that queued it */
                        q(s, "SELECT 1", 0, NULL, &o);
                for (size_t d = 0; d < ELEMENTSOF(state_dumps); d++)
                        assert_string_equal(raw_q(url, state_dumps[d], &o), want[d].text);
                assert_string_equal(raw_q(url, "SELECT applied_rowid = (SELECT MAX(rowid) FROM records) FROM"
                                               " state_applied", &o), "1");
                store_free(s);
        }
}

/* A collector that stops (or crashes) with state queued: the next open applies it, once —
 * the mark moves with it, so a third open changes nothing (a row changed by hand in
 * between stays as it is). Failed before store_open applied the queue: the state of the
 * deferred records never came. */
static void test_state_applied_once_after_crash(void **state) {
        (void) state;
        const size_t n = ELEMENTSOF(state_batch);
        Out want[ELEMENTSOF(state_dumps)], o;
        state_reference(state_batch, n, want);
        char url[512], err[512] = "";
        fresh_url(STORE_SQLITE, url, sizeof url);
        Store *s = NULL;
        assert_int_equal(store_open(&s, url, err, sizeof err), 0);
        ingest_deferred(s, "c1", state_batch, n);
        store_free(s); /* nothing applied */
        assert_string_equal(raw_q(url, "SELECT COUNT(*) FROM node_images", &o), "0");
        assert_int_equal(store_open(&s, url, err, sizeof err), 0);
        assert_int_equal(store_state_pending(s), 0);
        store_free(s);
        for (size_t d = 0; d < ELEMENTSOF(state_dumps); d++)
                assert_string_equal(raw_q(url, state_dumps[d], &o), want[d].text);
        raw_sql(STORE_SQLITE, url, "UPDATE node_images SET tag = 'by-hand'");
        assert_int_equal(store_open(&s, url, err, sizeof err), 0);
        store_free(s);
        assert_string_equal(raw_q(url, "SELECT DISTINCT tag FROM node_images", &o), "by-hand");
}

/* Retention deletes every record (the mark is at the last of them): the next records'
 * rowids still come above the mark, so their state is applied. Failed with SQLite's own
 * rowids (max(rowid) + 1 = 1 on an empty table: under the mark, never applied). */
static void test_state_mark_after_retention_empties(void **state) {
        (void) state;
        char url[512], err[512] = "";
        Out o;
        fresh_url(STORE_SQLITE, url, sizeof url);
        Store *s = NULL;
        assert_int_equal(store_open(&s, url, err, sizeof err), 0);
        ingest_deferred(s, "c1", state_batch, 3);
        /* 14 days after 2026-11-25: every record goes (their state first) */
        assert_int_equal(store_maintain(s, 1796983200000000ULL, 14, err, sizeof err), 0);
        assert_string_equal(raw_q(url, "SELECT COUNT(*) FROM records", &o), "0");
        assert_string_equal(raw_q(url, "SELECT applied_rowid FROM state_applied", &o), "3");
        assert_string_equal(raw_q(url, "SELECT COUNT(*) FROM node_images", &o), "2");
        static const char *const later[] = {
                PULL("t1", "node-b", "docker.io/library/web:9", "9", D3, "2026-12-10T09:00:00Z"),
        };
        ingest_deferred(s, "c1", later, 1);
        assert_int_equal(store_state_sync(s, err, sizeof err), 0);
        assert_string_equal(raw_q(url, "SELECT rowid > 3 FROM records", &o), "1");
        assert_string_equal(raw_q(url, "SELECT node, ref, digest FROM node_images WHERE node = 'node-b'", &o),
                            "node-b|docker.io/library/web:9|" D3);
        assert_string_equal(raw_q(url, "SELECT applied_rowid > 3 FROM state_applied", &o), "1");
        store_free(s);
}

/* Pulls whose state is queued, then an inventory of their node: the inventory comes after
 * them, as it did when each was applied at its commit (test_inventories_deferred_in_order's
 * records, each its own deferred request). Failed before an inventory applied the queue
 * first: u1 (09:30), applied after v3 (11:00), kept its row. */
static void test_state_queued_before_inventory(void **state) {
        (void) state;
        static const char *const batch[] = {
                INV_OF("v1", "node-a", "2026-11-25T10:00:00Z",
                       INV_IMAGE("docker.io/library/x:1", D1, "r1", POD("p1")) "," INV_IMAGE(
                               "docker.io/library/y:1", D2, "", POD("p2"))),
                PULL("u1", "node-a", "docker.io/library/z:9", "9", D3, "2026-11-25T09:30:00Z"),
                FIND("u0", "latest_tag", WEB, D1, "2026-11-25T09:31:00Z", "web-0", "r1"),
                INV_OF("v3", "node-a", "2026-11-25T11:00:00Z",
                       INV_IMAGE("docker.io/library/x:1", D2, "r2", POD("p1")) "," INV_IMAGE("docker.io/library/w:1",
                                                                                           D3, "", "")),
                PULL("u2", "node-a", "docker.io/library/y:1", "1", D3, "2026-11-25T10:30:00Z"),
                PULL("u3", "node-c", "docker.io/library/x:1", "1", D2, "2026-11-25T09:00:00Z"),
                INV_OF("v5", "node-c", "2026-11-25T10:00:00Z", ""),
        };
        const size_t n = ELEMENTSOF(batch);
        Out want[ELEMENTSOF(state_dumps)], o;
        state_reference(batch, n, want);
        Store *s = open_fresh(STORE_SQLITE);
        for (size_t i = 0; i < n; i++)
                ingest_deferred(s, "c1", batch + i, 1);
        for (size_t d = 0; d < ELEMENTSOF(state_dumps); d++)
                assert_string_equal(q(s, state_dumps[d], 0, NULL, &o), want[d].text);
        /* and the reference is what it was before the queue: z:9 went with v3 */
        assert_null(strstr(want[0].text, "z:9"));
        store_free(s);
}

/* A database of schema version 5 (workload_history (k8s_namespace, pod)) upgrades in
 * place, on both engines: its rows stay, the index is (k8s_namespace) alone, and the
 * report's --workload look-up uses it and finds the same rows. */
static const char *const workload_indexes[] = {
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'workload_history' AND sql IS NOT NULL"
        " ORDER BY name",
        "SELECT indexname FROM pg_indexes WHERE tablename = 'workload_history' AND indexname <>"
        " 'workload_history_pkey' ORDER BY indexname",
};
static const char *const workload_indexes_now[] = {"workload_history_namespace", "workload_history_namespace"};

static void test_upgrade_from_v5(void **state) {
        static const char *const by_workload =
                "SELECT node, pod, container, digest FROM workload_history WHERE k8s_namespace = $1 AND (pod = $2 OR"
                " container = $2 OR substr(pod, 1, length($2) + 1) = $2 || '-') ORDER BY node, pod, digest";
        for (size_t e = 0; e < n_engines(); e++) {
                char url[512];
                Out o;
                const char *b1[] = {
                        LATEST("w1", "node-a", "docker.io/library/web:latest", D2, "2026-11-25T09:00:01Z"),
                        INV_OF("v1", "node-b", "2026-11-25T10:00:00Z",
                               INV_IMAGE("docker.io/library/x:1", D1, "", POD("web-7") "," POD("api-1"))),
                };
                Store *s = open_as_older((StoreEngine) e, url, sizeof url, b1, 2,
                        "DROP INDEX workload_history_namespace;"
                        "CREATE INDEX workload_history_pod ON workload_history (k8s_namespace, pod);"
                        "DELETE FROM schema_migrations WHERE version >= 6");
                assert_string_equal(q(s, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL, &o),
                                    "1;2;3;4;5;6;7;8;9;10;11;12;13");
                assert_string_equal(q(s, workload_indexes[e], 0, NULL, &o), workload_indexes_now[e]);
                if (e == STORE_SQLITE) {
                        char plan[1024];
                        snprintf(plan, sizeof plan, "EXPLAIN QUERY PLAN %s", by_workload);
                        q(s, plan, 2, (const char *[]){"shop", "web"}, &o);
                        assert_non_null(strstr(o.text, "USING INDEX workload_history_namespace (k8s_namespace=?)"));
                }
                const char *b2[] = {FIND("w2", "untraceable", WEB, D1, "2026-11-25T11:00:00Z", "web-0", "")};
                ingest(s, "prod", b2, 1);
                assert_string_equal(q(s, by_workload, 2, (const char *[]){"shop", "web"}, &o),
                                    "node-a|web-0|web|" D1 ";node-a|web-0|web|" D2 ";node-b|api-1|web|" D1
                                    ";node-b|web-7|web|" D1);
                store_free(s);
        }
}

/* A database of schema version 6 upgrades in place: on PostgreSQL the state tables get
 * fillfactor 70 (room for in-place updates of the hourly inventory), on SQLite the
 * version moves on with nothing to change; rows stay and the next inventory applies. */
static void test_upgrade_from_v6(void **state) {
        for (size_t e = 0; e < n_engines(); e++) {
                char url[512];
                Out o;
                const char *b1[] = {INV_OF("v1", "node-b", "2026-11-25T10:00:00Z",
                                           INV_IMAGE("docker.io/library/x:1", D1, "", POD("web-7")))};
                Store *s = open_as_older((StoreEngine) e, url, sizeof url, b1, 1,
                        e == STORE_POSTGRESQL ? "ALTER TABLE node_images RESET (fillfactor);"
                                                "ALTER TABLE workload_history RESET (fillfactor);"
                                                "DELETE FROM schema_migrations WHERE version >= 7"
                                              : "DELETE FROM schema_migrations WHERE version >= 7");
                assert_string_equal(q(s, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL, &o),
                                    "1;2;3;4;5;6;7;8;9;10;11;12;13");
                if (e == STORE_POSTGRESQL)
                        assert_string_equal(q(s,
                                              "SELECT relname, array_to_string(reloptions, ',') FROM pg_class WHERE"
                                              " relname IN ('node_images', 'workload_history') ORDER BY relname",
                                              0, NULL, &o),
                                            "node_images|fillfactor=70;workload_history|fillfactor=70");
                const char *b2[] = {INV_OF("v2", "node-b", "2026-11-25T11:00:00Z",
                                           INV_IMAGE("docker.io/library/x:1", D1, "", POD("web-7")))};
                ingest(s, "prod", b2, 1);
                assert_string_equal(q(s, "SELECT node, ref, updated_usec FROM node_images", 0, NULL, &o),
                                    "node-b|docker.io/library/x:1|1795604400000000");
                assert_string_equal(q(s, "SELECT pod, first_seen_usec, last_seen_usec FROM workload_history", 0, NULL,
                                      &o),
                                    "web-7|1795600800000000|1795604400000000");
                store_free(s);
        }
}

/* The report's look-up of an image by name (report_query.c query_image): nodes joined to
 * node_images by (cluster, node) and name, one range per node. */
static const char *const image_by_name =
        "SELECT i.cluster, i.node, i.ref, i.digest FROM nodes n CROSS JOIN node_images i WHERE i.cluster = n.cluster"
        " AND i.node = n.node AND i.name = $1 ORDER BY i.node, i.ref";

/* Its SQLite plan since migration 11: each node's range of the primary key. */
static const char image_by_name_plan[] = "SEARCH i USING INDEX sqlite_autoindex_node_images_1 (cluster=? AND node=?)";

/* A database of schema version 7 (node_images (ref), (name), workload_history (name):
 * indexes of a global order, written at random by every inventory) upgrades in place, on
 * both engines: its rows stay, the state tables' secondary indexes lead with (cluster,
 * node), the report's look-up by image name goes node by node through them, ingest goes on. */
static void test_upgrade_from_v7(void **state) {
        for (size_t e = 0; e < n_engines(); e++) {
                char url[512];
                Out o;
                const char *b1[] = {INV_OF("v1", "node-b", "2026-11-25T10:00:00Z",
                                           INV_IMAGE("docker.io/library/x:1", D1, "", POD("web-7")) "," INV_IMAGE(
                                                   "docker.io/library/y:2", D2, "", POD("y-0")))};
                Store *s = open_as_older((StoreEngine) e, url, sizeof url, b1, 1,
                        "DROP INDEX IF EXISTS node_images_node_name; DROP INDEX IF EXISTS workload_history_node_name;"
                        "CREATE INDEX node_images_ref ON node_images (ref);"
                        "CREATE INDEX node_images_name ON node_images (name);"
                        "CREATE INDEX workload_history_name ON workload_history (name);"
                        "DELETE FROM schema_migrations WHERE version >= 8");
                assert_string_equal(q(s, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL, &o),
                                    "1;2;3;4;5;6;7;8;9;10;11;12;13");
                assert_string_equal(q(s, node_images_indexes[e], 0, NULL, &o), node_images_indexes_now[e]);
                assert_string_equal(q(s, workload_indexes[e], 0, NULL, &o), workload_indexes_now[e]);
                if (e == STORE_SQLITE) {
                        char plan[1024];
                        snprintf(plan, sizeof plan, "EXPLAIN QUERY PLAN %s", image_by_name);
                        q(s, plan, 1, (const char *[]){"docker.io/library/x"}, &o);
                        assert_non_null(strstr(o.text, image_by_name_plan));
                }
                assert_string_equal(q(s, image_by_name, 1, (const char *[]){"docker.io/library/x"}, &o),
                                    "prod|node-b|docker.io/library/x:1|" D1);
                const char *b2[] = {INV_OF("v2", "node-b", "2026-11-25T11:00:00Z",
                                           INV_IMAGE("docker.io/library/x:1", D2, "", POD("web-7")))};
                ingest(s, "prod", b2, 1);
                assert_string_equal(q(s, image_by_name, 1, (const char *[]){"docker.io/library/x"}, &o),
                                    "prod|node-b|docker.io/library/x:1|" D2);
                assert_string_equal(q(s, "SELECT ref FROM node_images", 0, NULL, &o), "docker.io/library/x:1");
                assert_string_equal(q(s, "SELECT name, digest FROM workload_history ORDER BY pod, digest", 0, NULL, &o),
                                    "docker.io/library/x|" D1 ";docker.io/library/x|" D2 ";docker.io/library/y|" D2);
                store_free(s);
        }
}

/* Every image's time as its readers see it (STORE_IMAGE_UPDATED_SQL), by reference. */
static const char image_times[] = "SELECT ref, digest, " STORE_IMAGE_UPDATED_SQL("node_images")
                                  " FROM node_images ORDER BY ref";
/* Every pod's first and last seen times as the report reads them. */
static const char pod_times[] = "SELECT pod, first_seen_usec, " STORE_WORKLOAD_LAST_SEEN_SQL("workload_history")
                                " FROM workload_history ORDER BY pod";

/* An hourly inventory that names a row unchanged leaves it alone on PostgreSQL (migration
 * 9), and nothing else may tell: its time is the inventory's, so a late pull older than
 * that inventory is refused (a skip read by the row's own updated_usec let it through),
 * a newer one applies, and what a later inventory does not name goes. Both engines. */
static void test_inventory_unchanged_rows(void **state) {
        for (size_t e = 0; e < n_engines(); e++) {
                Store *s = open_fresh((StoreEngine) e);
                Out o;
                const char *i1[] = {INV_OF("v1", "node-b", "2026-11-25T10:00:00Z",
                                           INV_IMAGE("docker.io/library/x:1", D1, "", POD("web-7")) "," INV_IMAGE(
                                                   "docker.io/library/y:2", D2, "", POD("y-0")))};
                const char *i2[] = {INV_OF("v2", "node-b", "2026-11-25T11:00:00Z",
                                           INV_IMAGE("docker.io/library/x:1", D1, "", POD("web-7")) "," INV_IMAGE(
                                                   "docker.io/library/y:2", D2, "", POD("y-0")))};
                ingest(s, "prod", i1, 1);
                ingest(s, "prod", i2, 1);
                assert_string_equal(q(s, image_times, 0, NULL, &o),
                                    "docker.io/library/x:1|" D1 "|1795604400000000;"
                                    "docker.io/library/y:2|" D2 "|1795604400000000");
                if (e == STORE_POSTGRESQL) /* left alone: the first inventory's row version */
                        assert_string_equal(q(s, "SELECT updated_usec, by_inventory FROM node_images ORDER BY ref", 0,
                                              NULL, &o),
                                            "1795600800000000|1;1795600800000000|1");
                /* 10:30, after the first inventory, before the second: refused */
                const char *late[] = {PULL("p1", "node-b", "docker.io/library/x:1", "1", D3, "2026-11-25T10:30:00Z")};
                ingest(s, "prod", late, 1);
                /* 11:30, after both: applied */
                const char *newer[] = {PULL("p2", "node-b", "docker.io/library/y:2", "2", D3, "2026-11-25T11:30:00Z")};
                ingest(s, "prod", newer, 1);
                assert_string_equal(q(s, image_times, 0, NULL, &o),
                                    "docker.io/library/x:1|" D1 "|1795604400000000;"
                                    "docker.io/library/y:2|" D3 "|1795606200000000");
                /* 12:00 names x:1 alone, unchanged: y:2 (pulled before it) goes */
                const char *i3[] = {INV_OF("v3", "node-b", "2026-11-25T12:00:00Z",
                                           INV_IMAGE("docker.io/library/x:1", D1, "", POD("web-7")))};
                ingest(s, "prod", i3, 1);
                assert_string_equal(q(s, image_times, 0, NULL, &o), "docker.io/library/x:1|" D1 "|1795608000000000");
                /* a late pull of a reference the store has no row for keeps its own time (11:45),
                 * and x:1 at 11:45 is refused; the 13:00 inventory (x:1 only) removes z:1 */
                const char *late2[] = {PULL("p3", "node-b", "docker.io/library/z:1", "1", D2, "2026-11-25T11:45:00Z"),
                                       PULL("p4", "node-b", "docker.io/library/x:1", "1", D2, "2026-11-25T11:45:00Z")};
                ingest(s, "prod", late2, 2);
                assert_string_equal(q(s, image_times, 0, NULL, &o),
                                    "docker.io/library/x:1|" D1 "|1795608000000000;"
                                    "docker.io/library/z:1|" D2 "|1795607100000000");
                const char *i4[] = {INV_OF("v4", "node-b", "2026-11-25T13:00:00Z",
                                           INV_IMAGE("docker.io/library/x:1", D1, "", POD("web-7")))};
                ingest(s, "prod", i4, 1);
                assert_string_equal(q(s, image_times, 0, NULL, &o), "docker.io/library/x:1|" D1 "|1795611600000000");
                /* y-0, named until 11:00, last seen then; web-7 named by every one */
                assert_string_equal(q(s, pod_times, 0, NULL, &o),
                                    "web-7|1795600800000000|1795611600000000;y-0|1795600800000000|1795604400000000");
                if (e == STORE_POSTGRESQL) /* web-7 left alone since the first; y-0 written out at 12:00 */
                        assert_string_equal(q(s, "SELECT pod, last_seen_usec, by_inventory FROM workload_history"
                                                 " ORDER BY pod",
                                              0, NULL, &o),
                                            "web-7|1795600800000000|1;y-0|1795604400000000|0");
                /* an older inventory replayed (09:00): web-7 was seen first then, old-1 only then;
                 * nothing of it is the node's last inventory's */
                const char *i0[] = {INV_OF("v0", "node-b", "2026-11-25T09:00:00Z",
                                           INV_IMAGE("docker.io/library/x:1", D1, "", POD("web-7") "," POD("old-1")))};
                ingest(s, "prod", i0, 1);
                assert_string_equal(q(s, pod_times, 0, NULL, &o),
                                    "old-1|1795597200000000|1795597200000000;web-7|1795597200000000|1795611600000000;"
                                    "y-0|1795600800000000|1795604400000000");
                /* a new revision is written at once */
                const char *i5[] = {INV_OF("v5", "node-b", "2026-11-25T14:00:00Z",
                                           INV_IMAGE("docker.io/library/x:1", D1, "r9", POD("web-7")))};
                ingest(s, "prod", i5, 1);
                assert_string_equal(q(s, "SELECT pod, revision, " STORE_WORKLOAD_LAST_SEEN_SQL("workload_history")
                                         " FROM workload_history ORDER BY pod",
                                      0, NULL, &o),
                                    "old-1||1795597200000000;web-7|r9|1795615200000000;y-0||1795604400000000");
                store_free(s);
        }
}

/* A node's first inventory when the node has no rows (PostgreSQL: COPYed in, see
 * store.c apply_inventory_copy) gives what the statements give, on both engines, whether
 * its records come one request at a time or all in one: a reference listed twice (the
 * last wins), a pod listed twice, text that COPY reads specially (tab, newline, carriage
 * return, backslash, "\N", "\.") in node, pod, container, revision and reference; a pull
 * after it in the same request (it must find the inventory's rows), a second inventory
 * of the node in the same request (it must delete what the first wrote and it does not
 * name), a node pulled before its first inventory in the same request (not fresh: the
 * pull is the request's first record, before S_NODES_FRESH's answer is read — that answer
 * made the node fresh again and its inventory was COPYed, keeping the pull's older row), an
 * empty first inventory. */
#define NASTY_POD "{\"namespace\":\"sh\\top\",\"pod\":\"a\\tb\\\\c\\nd\\re\",\"container\":\"\\\\N\"}"
static void test_inventory_fresh_node(void **state) {
        static const char *const batch[] = {
                /* first in the request: S_NODES_FRESH's answer is read after it */
                PULL("h1", "node-h", "docker.io/library/z:1", "1", D3, "2026-11-25T09:00:00Z"),
                INV_OF("f1", "node-\\\\f\\t", "2026-11-25T10:00:00Z",
                       INV_IMAGE("docker.io/library/t:1", D1, "r\\\\.", POD("p1")) "," INV_IMAGE(
                               "docker.io/library/u:1", D2, "\\\\.", NASTY_POD "," POD("p2") "," POD("p2")) ","
                               INV_IMAGE("docker.io/library/t:1", D2, "", POD("p1") "," NASTY_POD)),
                PULL("f2", "node-\\\\f\\t", "docker.io/library/t:1", "1", D3, "2026-11-25T10:30:00Z"),
                INV_OF("g1", "node-g", "2026-11-25T10:00:00Z",
                       INV_IMAGE("docker.io/library/x:1", D1, "", POD("q1")) "," INV_IMAGE("docker.io/library/y:1",
                                                                                        D1, "", POD("q2"))),
                INV_OF("g2", "node-g", "2026-11-25T11:00:00Z", INV_IMAGE("docker.io/library/x:1", D2, "", POD("q1"))),
                INV_OF("h2", "node-h", "2026-11-25T10:00:00Z", INV_IMAGE("docker.io/library/x:1", D1, "", POD("q3"))),
                INV_OF("k1", "node-k", "2026-11-25T10:00:00Z", ""),
        };
        static const char *const dumps[] = {
                "SELECT cluster, node, namespace, ref, name, tag, digest, media_type, revision, pinned, latest,"
                " revision_verified, compliant, findings, pods, k8s_namespaces, " STORE_IMAGE_UPDATED_SQL("node_images")
                ", findings_mask FROM node_images ORDER BY node, ref",
                "SELECT cluster, node, k8s_namespace, pod, container, name, ref, digest, revision, first_seen_usec,"
                " " STORE_WORKLOAD_LAST_SEEN_SQL("workload_history") " FROM workload_history ORDER BY node, pod, digest",
                "SELECT cluster, node, last_inventory_usec FROM nodes ORDER BY node",
        };
        const size_t n = ELEMENTSOF(batch);
        Out first[ELEMENTSOF(dumps)];
        for (size_t e = 0; e < n_engines(); e++)
                for (int together = 0; together < 2; together++) {
                        Store *s = open_fresh((StoreEngine) e);
                        if (together)
                                assert_int_equal(ingest(s, "c\\1\t", batch, n).inventories, 5);
                        else
                                for (size_t i = 0; i < n; i++)
                                        ingest(s, "c\\1\t", batch + i, 1);
                        for (size_t d = 0; d < ELEMENTSOF(dumps); d++) {
                                Out o;
                                q(s, dumps[d], 0, NULL, &o);
                                if (e == 0 && !together)
                                        first[d] = o;
                                else
                                        assert_string_equal(o.text, first[d].text);
                        }
                        Out o;
                        /* the text COPY escapes, back as sent (one row: u:1 and t:1 at D2 name
                         * the same pod; the revision is the last one given) */
                        assert_string_equal(q(s, "SELECT node, pod, container, k8s_namespace, revision FROM"
                                                 " workload_history WHERE pod LIKE 'a%' ORDER BY digest",
                                              0, NULL, &o),
                                            "node-\\f\t|a\tb\\c\nd\re|\\N|sh\top|\\.");
                        /* by an inventory, as the statements mark them (PostgreSQL) */
                        if (e == STORE_POSTGRESQL)
                                assert_string_equal(
                                        q(s, "SELECT node, ref, by_inventory FROM node_images ORDER BY node, ref", 0,
                                          NULL, &o),
                                        "node-\\f\t|docker.io/library/t:1|0;node-\\f\t|docker.io/library/u:1|1;"
                                        "node-g|docker.io/library/x:1|1;node-h|docker.io/library/x:1|1");
                        store_free(s);
                }
        /* node-\f\t: t:1 of the pull after the inventory (which had t:1 last at D2), u:1
         * with its revision; node-g: the second inventory's x:1 alone; node-h: the pull
         * older than its inventory went (not named); node-k: an inventory time, no rows */
        assert_string_equal(first[0].text,
                            "c\\1\t|node-\\f\t|k8s.io|docker.io/library/t:1|docker.io/library/web|1|" D3
                            "|||1|0|1|1||[]||1795602600000000|0;"
                            "c\\1\t|node-\\f\t|k8s.io|docker.io/library/u:1|docker.io/library/u||" D2
                            "||\\.|1|0|1|1||[{\"namespace\":\"sh\\top\",\"pod\":\"a\\tb\\\\c\\nd\\re\",\"container\":"
                            "\"\\\\N\"},{\"namespace\":\"shop\",\"pod\":\"p2\",\"container\":\"web\"},{\"namespace\":"
                            "\"shop\",\"pod\":\"p2\",\"container\":\"web\"}]|sh\top,shop|1795600800000000|0;"
                            "c\\1\t|node-g|k8s.io|docker.io/library/x:1|docker.io/library/x||" D2
                            "|||1|0|1|1||[{\"namespace\":\"shop\",\"pod\":\"q1\",\"container\":\"web\"}]|shop|"
                            "1795604400000000|0;"
                            "c\\1\t|node-h|k8s.io|docker.io/library/x:1|docker.io/library/x||" D1
                            "|||1|0|1|1||[{\"namespace\":\"shop\",\"pod\":\"q3\",\"container\":\"web\"}]|shop|"
                            "1795600800000000|0");
        assert_string_equal(first[2].text, "c\\1\t|node-\\f\t|1795600800000000;c\\1\t|node-g|1795604400000000;"
                                           "c\\1\t|node-h|1795600800000000;c\\1\t|node-k|1795600800000000");
}

typedef struct IngestThread {
        Store *s;
        const char *line;
        int r;
        char err[512];
} IngestThread;

static void *ingest_thread(void *userdata) {
        IngestThread *t = userdata;
        Record rec;
        decode(&t->line, 1, &rec);
        StoreIngestResult res = {0};
        t->r = store_ingest(t->s, "prod", &rec, 1, 1800000000000000ULL, &res, t->err, sizeof t->err);
        record_done(&rec);
        return NULL;
}

/* Two collectors, one PostgreSQL: while one holds a transaction that gave a node a row
 * (a pull, not committed yet), the other's first inventory of that node waits at the
 * node's touch, then sees the row: the node is not fresh, and the pull's reference (older,
 * not named) goes, as in any serial order. Whether a node is fresh is read after its
 * touch; read before (or in the touch's own snapshot) it said "fresh" and the row stayed. */
static void test_inventory_fresh_two_collectors(void **state) {
        if (!pg_url[0])
                skip();
        char url[512], err[512] = "";
        Out o;
        fresh_url(STORE_POSTGRESQL, url, sizeof url);
        Store *a = NULL, *b = NULL;
        assert_int_equal(store_open(&a, url, err, sizeof err), 0);
        assert_int_equal(store_open(&b, url, err, sizeof err), 0);
        Record pull;
        const char *line = PULL("t1", "node-x", "docker.io/library/z:1", "1", D3, "2026-11-25T09:00:00Z");
        decode(&line, 1, &pull);
        assert_int_equal(store_ingest_begin(a, "prod", 1800000000000000ULL, err, sizeof err), 0);
        assert_int_equal(store_ingest_add(a, &pull, 1, err, sizeof err), 0);
        assert_int_equal(store_ingest_wait(a, err, sizeof err), 0); /* run: node-x's row is locked */
        IngestThread t = {.s = b,
                          .line = INV_OF("t2", "node-x", "2026-11-25T10:00:00Z",
                                         INV_IMAGE("docker.io/library/x:1", D1, "", POD("web-0")))};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, ingest_thread, &t), 0);
        /* wait (bounded) until b's backend waits for a's lock */
        PGconn *c = PQconnectdb(url);
        assert_int_equal(PQstatus(c), CONNECTION_OK);
        bool waiting = false;
        for (int i = 0; i < 3000 && !waiting; i++) {
                PGresult *res = PQexec(c, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                          " AND wait_event_type = 'Lock'");
                waiting = PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "0") != 0;
                PQclear(res);
                if (!waiting)
                        usleep(10000);
        }
        PQfinish(c);
        assert_true(waiting);
        StoreIngestResult res = {0};
        assert_int_equal(store_ingest_end(a, true, &res, err, sizeof err), 0);
        record_done(&pull);
        assert_int_equal(pthread_join(th, NULL), 0);
        if (t.r < 0)
                fail_msg("store_ingest: %s", t.err);
        assert_string_equal(q(a, "SELECT ref, digest FROM node_images ORDER BY ref", 0, NULL, &o),
                            "docker.io/library/x:1|" D1);
        assert_string_equal(q(a, "SELECT pod FROM workload_history", 0, NULL, &o), "web-0");
        store_free(a);
        store_free(b);
}

/* A database of schema 8 (no by_inventory) upgrades in place on both engines: its rows
 * read as set by a pull (by_inventory 0, their own time); the next inventory takes them
 * over, and a late pull is refused by that inventory's time. */
static void test_upgrade_from_v8(void **state) {
        for (size_t e = 0; e < n_engines(); e++) {
                char url[512];
                Out o;
                const char *b1[] = {INV_OF("v1", "node-b", "2026-11-25T10:00:00Z",
                                           INV_IMAGE("docker.io/library/x:1", D1, "", POD("web-7")))};
                Store *s = open_as_older((StoreEngine) e, url, sizeof url, b1, 1,
                                         "DELETE FROM schema_migrations WHERE version >= 9");
                assert_string_equal(q(s, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL, &o),
                                    "1;2;3;4;5;6;7;8;9;10;11;12;13");
                assert_string_equal(q(s, "SELECT ref, by_inventory FROM node_images", 0, NULL, &o),
                                    "docker.io/library/x:1|0");
                assert_string_equal(q(s, image_times, 0, NULL, &o), "docker.io/library/x:1|" D1 "|1795600800000000");
                const char *b2[] = {INV_OF("v2", "node-b", "2026-11-25T11:00:00Z",
                                           INV_IMAGE("docker.io/library/x:1", D1, "", POD("web-7"))),
                                    PULL("p1", "node-b", "docker.io/library/x:1", "1", D3, "2026-11-25T10:30:00Z")};
                ingest(s, "prod", b2, 2);
                assert_string_equal(q(s, image_times, 0, NULL, &o), "docker.io/library/x:1|" D1 "|1795604400000000");
                store_free(s);
        }
}

/* A database of schema 9 (workload_history without by_inventory) upgrades in place on
 * both engines: its pods read as last seen at their own time until an inventory names
 * them again. */
static void test_upgrade_from_v9(void **state) {
        for (size_t e = 0; e < n_engines(); e++) {
                char url[512];
                Out o;
                const char *b1[] = {INV_OF("v1", "node-b", "2026-11-25T10:00:00Z",
                                           INV_IMAGE("docker.io/library/x:1", D1, "", POD("web-7") "," POD("y-0")))};
                Store *s = open_as_older((StoreEngine) e, url, sizeof url, b1, 1,
                                         "ALTER TABLE node_images ADD COLUMN by_inventory INTEGER NOT NULL DEFAULT 0;"
                                         "DELETE FROM schema_migrations WHERE version >= 10");
                assert_string_equal(q(s, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL, &o),
                                    "1;2;3;4;5;6;7;8;9;10;11;12;13");
                assert_string_equal(q(s, "SELECT pod, by_inventory FROM workload_history ORDER BY pod", 0, NULL, &o),
                                    "web-7|0;y-0|0");
                const char *b2[] = {INV_OF("v2", "node-b", "2026-11-25T11:00:00Z",
                                           INV_IMAGE("docker.io/library/x:1", D1, "", POD("web-7")))};
                ingest(s, "prod", b2, 1);
                assert_string_equal(q(s, pod_times, 0, NULL, &o),
                                    "web-7|1795600800000000|1795604400000000;y-0|1795600800000000|1795600800000000");
                store_free(s);
        }
}

/* A database of schema 10 upgrades in place: on SQLite the (cluster, node, name) indexes
 * of node_images and workload_history go (migration 11), on PostgreSQL they stay. Rows
 * stay; a pull updates its reference's row and adds a new one; the report's look-ups by
 * image name (now and before) find the same rows through each node's range of the
 * primary keys, and the report goes on. */
static void test_upgrade_from_v10(void **state) {
        static const char *const history_by_name =
                "SELECT w.node, w.pod, w.digest FROM nodes n CROSS JOIN workload_history w WHERE w.cluster ="
                " n.cluster AND w.node = n.node AND w.name = $1 ORDER BY w.node, w.pod, w.digest";
        for (size_t e = 0; e < n_engines(); e++) {
                char url[512];
                Out o;
                const char *b1[] = {
                        INV_OF("v1", "node-b", "2026-11-25T10:00:00Z",
                               INV_IMAGE("docker.io/library/x:1", D1, "", POD("web-7")) "," INV_IMAGE(
                                       "docker.io/library/y:2", D2, "", POD("y-0"))),
                        PULL("p1", "node-a", WEB, "latest", D1, "2026-11-25T10:00:00Z"),
                        LATEST("l1", "node-a", WEB, D1, "2026-11-25T10:00:01Z"),
                };
                /* open_as_older dropped both by_inventory columns (schemas 9, 10): back */
                Store *s = open_as_older(
                        (StoreEngine) e, url, sizeof url, b1, 3,
                        "ALTER TABLE node_images ADD COLUMN by_inventory INTEGER NOT NULL DEFAULT 0;"
                        "ALTER TABLE workload_history ADD COLUMN by_inventory INTEGER NOT NULL DEFAULT 0;"
                        "CREATE INDEX IF NOT EXISTS node_images_node_name ON node_images (cluster, node, name);"
                        "CREATE INDEX IF NOT EXISTS workload_history_node_name ON workload_history (cluster, node, name);"
                        "DELETE FROM schema_migrations WHERE version >= 11");
                assert_string_equal(q(s, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL, &o),
                                    "1;2;3;4;5;6;7;8;9;10;11;12;13");
                assert_string_equal(q(s, node_images_indexes[e], 0, NULL, &o), node_images_indexes_now[e]);
                assert_string_equal(q(s, workload_indexes[e], 0, NULL, &o), workload_indexes_now[e]);
                assert_string_equal(q(s, "SELECT node, ref, digest, findings FROM node_images ORDER BY node, ref", 0,
                                      NULL, &o),
                                    "node-a|" WEB "|" D1 "|latest_tag;node-b|docker.io/library/x:1|" D1
                                    "|;node-b|docker.io/library/y:2|" D2 "|");
                if (e == STORE_SQLITE) {
                        char plan[1024];
                        snprintf(plan, sizeof plan, "EXPLAIN QUERY PLAN %s", image_by_name);
                        q(s, plan, 1, (const char *[]){"docker.io/library/x"}, &o);
                        assert_non_null(strstr(o.text, image_by_name_plan));
                        snprintf(plan, sizeof plan, "EXPLAIN QUERY PLAN %s", history_by_name);
                        q(s, plan, 1, (const char *[]){"docker.io/library/x"}, &o);
                        assert_non_null(strstr(o.text, "SEARCH w USING INDEX sqlite_autoindex_workload_history_1"
                                                       " (cluster=? AND node=?)"));
                }
                const char *b2[] = {
                        PULL("p2", "node-a", WEB, "latest", D2, "2026-11-25T11:00:00Z"),
                        PULL("p3", "node-a", "docker.io/library/web:2", "2", D3, "2026-11-25T11:00:01Z"),
                        FIND("f1", "untraceable", "docker.io/library/web:2", D3, "2026-11-25T11:00:02Z", "web-9", ""),
                };
                ingest(s, "prod", b2, 3);
                assert_string_equal(q(s, "SELECT ref, digest, findings FROM node_images WHERE node = 'node-a'"
                                         " ORDER BY ref",
                                      0, NULL, &o),
                                    "docker.io/library/web:2|" D3 "|untraceable;" WEB "|" D2 "|");
                assert_string_equal(q(s, image_by_name, 1, (const char *[]){"docker.io/library/x"}, &o),
                                    "prod|node-b|docker.io/library/x:1|" D1);
                assert_string_equal(q(s, image_by_name, 1, (const char *[]){"docker.io/library/web"}, &o),
                                    "prod|node-a|docker.io/library/web:2|" D3 ";prod|node-a|" WEB "|" D2);
                assert_string_equal(q(s, history_by_name, 1, (const char *[]){"docker.io/library/web"}, &o),
                                    "node-a|web-0|" D1 ";node-a|web-9|" D3);
                ReportFilter f;
                report_filter_init(&f);
                f.now_usec = 1795608000000000ULL;
                f.image = (char *) "docker.io/library/web";
                ReportModel *m = NULL;
                char err[512] = "";
                if (report_query(s, &f, &m, err, sizeof err) < 0)
                        fail_msg("report_query: %s", err);
                assert_int_equal(m->nodes, 2);
                assert_int_equal(m->n_placements, 2); /* node-a holds both references of the name */
                report_model_free(m);
                store_free(s);
        }
}

/* A database of schema 11 (PostgreSQL still with migration 8's (cluster, node, name)
 * indexes) upgrades in place on both engines: the indexes go (SQLite had none left), the
 * look-ups by image name find the same rows before and after more records, and the
 * report by image sees both nodes. */
static void test_upgrade_from_v11(void **state) {
        static const char *const history_by_name =
                "SELECT w.node, w.pod, w.digest FROM nodes n CROSS JOIN workload_history w WHERE w.cluster ="
                " n.cluster AND w.node = n.node AND w.name = $1 ORDER BY w.node, w.pod, w.digest";
        for (size_t e = 0; e < n_engines(); e++) {
                char url[512];
                Out o;
                const char *b1[] = {
                        INV_OF("v1", "node-b", "2026-11-25T10:00:00Z",
                               INV_IMAGE("docker.io/library/x:1", D1, "", POD("web-7"))),
                        PULL("p1", "node-a", WEB, "latest", D1, "2026-11-25T10:00:00Z"),
                        FIND("f1", "untraceable", WEB, D1, "2026-11-25T10:00:01Z", "web-0", ""),
                };
                Store *s = open_as_older(
                        (StoreEngine) e, url, sizeof url, b1, 3,
                        "ALTER TABLE node_images ADD COLUMN by_inventory INTEGER NOT NULL DEFAULT 0;"
                        "ALTER TABLE workload_history ADD COLUMN by_inventory INTEGER NOT NULL DEFAULT 0;"
                        "DELETE FROM schema_migrations WHERE version >= 12");
                if (e == STORE_POSTGRESQL) /* as schema 11 left PostgreSQL */
                        raw_sql((StoreEngine) e, url,
                                "CREATE INDEX node_images_node_name ON node_images (cluster, node, name);"
                                "CREATE INDEX workload_history_node_name ON workload_history (cluster, node, name);"
                                "DELETE FROM schema_migrations WHERE version >= 12");
                s = store_free(s);
                char err[512] = "";
                assert_int_equal(store_open(&s, url, err, sizeof err), 0);
                assert_string_equal(q(s, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL, &o),
                                    "1;2;3;4;5;6;7;8;9;10;11;12;13");
                assert_string_equal(q(s, node_images_indexes[e], 0, NULL, &o), "");
                assert_string_equal(q(s, workload_indexes[e], 0, NULL, &o), "workload_history_namespace");
                assert_string_equal(q(s, image_by_name, 1, (const char *[]){"docker.io/library/web"}, &o),
                                    "prod|node-a|" WEB "|" D1);
                const char *b2[] = {
                        PULL("p2", "node-b", WEB, "latest", D2, "2026-11-25T11:00:00Z"),
                        FIND("f2", "latest_tag", WEB, D2, "2026-11-25T11:00:01Z", "web-9", ""),
                };
                ingest(s, "prod", b2, 2);
                assert_string_equal(q(s, image_by_name, 1, (const char *[]){"docker.io/library/web"}, &o),
                                    "prod|node-a|" WEB "|" D1 ";prod|node-b|" WEB "|" D2);
                assert_string_equal(q(s, image_by_name, 1, (const char *[]){"docker.io/library/x"}, &o),
                                    "prod|node-b|docker.io/library/x:1|" D1);
                assert_string_equal(q(s, history_by_name, 1, (const char *[]){"docker.io/library/web"}, &o),
                                    "node-a|web-0|" D1 ";node-a|web-9|" D2);
                ReportFilter f;
                report_filter_init(&f);
                f.now_usec = 1795608000000000ULL;
                f.image = (char *) "docker.io/library/web";
                ReportModel *m = NULL;
                if (report_query(s, &f, &m, err, sizeof err) < 0)
                        fail_msg("report_query: %s", err);
                assert_int_equal(m->n_placements, 2);
                report_model_free(m);
                store_free(s);
        }
}

/* One line per divergent tag: ref, then per digest "digest media_type nodes clusters pods". */
static void divergence_text(const ReportModel *m, char *buf, size_t size) {
        size_t l = 0;
        buf[0] = 0;
        for (size_t i = 0; i < m->n_divergence; i++) {
                const ReportDivergence *d = &m->divergence[i];
                l += (size_t) snprintf(buf + l, size - l, "%s%s%s", i ? ";" : "", d->ref,
                                       d->index_relation_unknown ? " (index?)" : "");
                for (size_t j = 0; j < d->n_digests; j++) {
                        const ReportDigest *g = &d->digests[j];
                        l += (size_t) snprintf(buf + l, size - l, " %.13s", g->digest);
                        const ReportStrings *lists[] = {&g->nodes, &g->clusters, &g->pods};
                        for (size_t k = 0; k < ELEMENTSOF(lists); k++)
                                for (size_t x = 0; x < lists[k]->n; x++)
                                        l += (size_t) snprintf(buf + l, size - l, "%s%s", x ? "," : " ",
                                                               lists[k]->v[x]);
                }
        }
}

/* The divergent tags' nodes and pods, read node by node (report_query.c
 * query_divergent_tags) by either plan: one range per node and image name when the
 * table is large against nodes × names (here 2 nodes × 1 name × 2 ≤ 22 rows), each node's
 * whole range otherwise (2 rows): the same tags, digests, nodes, clusters and pods, on
 * both engines. A reference by digest (no tag) held at another digest on each node is no
 * divergent tag. */
static void test_report_divergence_node_by_node(void **state) {
#define EXTRAS(n)                                                                                                  \
        INV_IMAGE("docker.io/library/e0:1", D3, "", "") "," INV_IMAGE("docker.io/library/e1:1", D3, "", "") ","  \
                INV_IMAGE("docker.io/library/e2:1", D3, "", "") "," INV_IMAGE("docker.io/library/e3:1", D3, "", "") \
                "," INV_IMAGE("docker.io/library/e4:1", D3, "", "") "," INV_IMAGE("docker.io/library/e5:1", D3, "",  \
                                                                                 "") "," INV_IMAGE("docker.io/library/" \
                                                                                                  "e6:1",           \
                                                                                                  D3, "", "") ","   \
                INV_IMAGE("docker.io/library/e7:1", D3, "", "") "," INV_IMAGE("docker.io/library/e8:1", D3, "", "") \
                "," INV_IMAGE("docker.io/library/by@" n, n, "", "")
#define TAGGED(digest, pods)                                                                                      \
        "{\"namespace\":\"k8s.io\",\"ref\":\"" WEB "\",\"tag\":\"latest\",\"digest\":\"" digest             \
        "\",\"compliant\":true,\"findings\":[],\"pods\":[" pods "]}"
        static const char *const small[] = {
                INV_OF("a1", "node-a", "2026-11-25T10:00:00Z", TAGGED(D1, POD("web-0"))),
                INV_OF("b1", "node-b", "2026-11-25T10:00:00Z", TAGGED(D2, POD("web-1") "," POD("web-2"))),
        };
        static const char *const large[] = {
                INV_OF("a1", "node-a", "2026-11-25T10:00:00Z", TAGGED(D1, POD("web-0")) "," EXTRAS(D1)),
                INV_OF("b1", "node-b", "2026-11-25T10:00:00Z", TAGGED(D2, POD("web-1") "," POD("web-2")) "," EXTRAS(D2)),
        };
#undef EXTRAS
#undef TAGGED
        static const char *const want =
                WEB " sha256:111111 node-a prod shop/web-0 sha256:222222 node-b prod shop/web-1,shop/web-2";
        for (size_t e = 0; e < n_engines(); e++)
                for (int big = 0; big < 2; big++) {
                        Store *s = open_fresh((StoreEngine) e);
                        ingest(s, "prod", big ? large : small, 2);
                        ReportFilter f;
                        report_filter_init(&f);
                        f.now_usec = 1795600800000000ULL;
                        ReportModel *m = NULL;
                        char err[512] = "", text[1024];
                        if (report_query(s, &f, &m, err, sizeof err) < 0)
                                fail_msg("report_query (%s): %s", e == STORE_SQLITE ? "SQLite" : "PostgreSQL", err);
                        assert_int_equal(m->nodes, 2);
                        assert_int_equal(m->total.images, big ? 22 : 2);
                        divergence_text(m, text, sizeof text);
                        assert_string_equal(text, want);
                        report_model_free(m);
                        /* and with a namespace filter no node of the tag passes */
                        f.k8s_namespace = (char *) "nope";
                        assert_int_equal(report_query(s, &f, &m, err, sizeof err), 0);
                        assert_int_equal(m->n_divergence, 0);
                        report_model_free(m);
                        f.k8s_namespace = NULL;
                        /* --image: both nodes, by the same join */
                        f.image = (char *) "docker.io/library/web";
                        assert_int_equal(report_query(s, &f, &m, err, sizeof err), 0);
                        assert_int_equal(m->n_placements, 2); /* one per node holding it */
                        report_model_free(m);
                        store_free(s);
                }
}

/* A divergent tag's pods are the ones its nodes report now: the last complete inventory's
 * (node_images.pods) and the ones a record named since (a finding's workload: a pod started
 * after the hourly inventory). Before, only the inventory's were listed, so a pod started
 * after it showed as none until the next inventory (the demo's node b: "—"). Not listed: a
 * pod named before the node's last inventory that the inventory no longer names, and a pod
 * on another digest than the node's (a tag_moved's pod still runs the previous one). A
 * node that never sent an inventory lists what its records name. Both engines. */
#define WFIND(id, node, digest, t, pod)                                                                           \
        "{\"schema\":1,\"id\":\"" id "\",\"kind\":\"latest_tag\",\"severity\":\"medium\",\"time\":\"" t            \
        "\",\"node\":\"" node "\",\"namespace\":\"k8s.io\",\"image\":{\"ref\":\"" WEB                            \
        "\",\"name\":\"docker.io/library/web\",\"tag\":\"latest\",\"digest\":\"" digest "\"},\"workload\":"     \
        "{\"namespace\":\"shop\",\"pod\":\"" pod "\",\"container\":\"web\"},\"message\":\"m\"}"
#define WIMG(digest, pods)                                                                                        \
        "{\"namespace\":\"k8s.io\",\"ref\":\"" WEB "\",\"tag\":\"latest\",\"digest\":\"" digest             \
        "\",\"compliant\":true,\"findings\":[],\"pods\":[" pods "]}"
static void test_report_divergence_pods_since_inventory(void **state) {
        static const char *const b1[] = {
                /* before node-b's inventory: a pod the inventory no longer names */
                WFIND("w0", "node-b", D1, "2026-11-25T09:00:00Z", "web-old"),
                INV_OF("a1", "node-a", "2026-11-25T10:00:00Z", WIMG(D1, POD("web-0"))),
                INV_OF("b1", "node-b", "2026-11-25T10:00:00Z", WIMG(D1, "")),
                /* after it: the tag moves on node-b and a pod starts on the new digest */
                PULL("p1", "node-b", WEB, "latest", D2, "2026-11-25T11:00:00Z"),
                WFIND("w1", "node-b", D2, "2026-11-25T11:00:05Z", "web-9"),
                /* node-c never sent an inventory */
                PULL("p2", "node-c", WEB, "latest", D2, "2026-11-25T11:10:00Z"),
                WFIND("w2", "node-c", D2, "2026-11-25T11:10:05Z", "web-c"),
        };
        /* a pod on node-a on D2 while node-a holds D1: not D1's, and node-a has no D2 */
        static const char *const b2[] = {WFIND("w3", "node-a", D2, "2026-11-25T11:20:00Z", "web-x")};
        static const char *const want = WEB " sha256:222222 node-b,node-c prod shop/web-9,shop/web-c sha256:111111 "
                                            "node-a prod shop/web-0";
        for (size_t e = 0; e < n_engines(); e++)
                for (int split = 0; split < 2; split++) {
                        Store *s = open_fresh((StoreEngine) e);
                        if (split)
                                for (size_t i = 0; i < ELEMENTSOF(b1); i++)
                                        ingest(s, "prod", &b1[i], 1);
                        else
                                ingest(s, "prod", b1, ELEMENTSOF(b1));
                        ingest(s, "prod", b2, 1);
                        ReportFilter f;
                        report_filter_init(&f);
                        f.now_usec = 1795611600000000ULL; /* 2026-11-25T13:00:00Z */
                        ReportModel *m = NULL;
                        char err[512] = "", text[1024];
                        if (report_query(s, &f, &m, err, sizeof err) < 0)
                                fail_msg("report_query (%s): %s", e == STORE_SQLITE ? "SQLite" : "PostgreSQL", err);
                        divergence_text(m, text, sizeof text);
                        assert_string_equal(text, want);
                        report_model_free(m);
                        /* node-b's next inventory no longer names web-9: it is gone from the list */
                        const char *b3[] = {INV_OF("b2", "node-b", "2026-11-25T12:00:00Z", WIMG(D2, ""))};
                        ingest(s, "prod", b3, 1);
                        assert_int_equal(report_query(s, &f, &m, err, sizeof err), 0);
                        divergence_text(m, text, sizeof text);
                        assert_string_equal(text, WEB " sha256:222222 node-b,node-c prod shop/web-c sha256:111111 node-a "
                                                      "prod shop/web-0");
                        report_model_free(m);
                        store_free(s);
                }
}
#undef WFIND
#undef WIMG

static void test_batch_same_on_both_engines(void **state) {
        static const char *const batch[] = {
                PULL("s1", "node-a", WEB, "latest", D1, "2026-11-25T09:00:00Z"),
                FIND("s2", "latest_tag", WEB, D1, "2026-11-25T09:00:00Z", "web-0", "r1"),
                PULL("s3", "node-a", WEB, "latest", D2, "2026-11-25T09:05:00Z"),
                FIND("s4", "latest_tag", WEB, D2, "2026-11-25T09:05:00Z", "web-0", ""),
                FIND("s5", "untraceable", WEB, D1, "2026-11-25T09:01:00Z", "web-1", ""),
                PULL("s6", "node-a", WEB, "latest", D1, "2026-11-25T08:00:00Z"),
                FIND("s7", "untraceable", WEB, D1, "2026-11-25T09:02:00Z", "web-0", "r2"),
                FIND("s8", "untraceable", WEB, D2, "2026-11-25T09:06:00Z", "web-0", "r3"),
                FIND("s9", "tag_moved", WEB, D2, "2026-11-25T09:07:00Z", "web-2", ""),
                PULL("s1", "node-a", WEB, "latest", D1, "2026-11-25T09:00:00Z"),
                /* a finding about the digest the next pull brings: it does not stand yet */
                FIND("s10", "untraceable", WEB, D3, "2026-11-25T09:08:00Z", "web-3", ""),
                PULL("s11", "node-a", WEB, "latest", D3, "2026-11-25T09:10:00Z"),
        };
        static const char *const inv[] = {
                "{\"schema\":1,\"id\":\"v1\",\"kind\":\"inventory\",\"severity\":\"info\",\"time\":"
                "\"2026-11-25T10:00:00Z\",\"node\":\"node-b\",\"total\":3,\"compliant\":3,\"part\":1,\"parts\":1,"
                "\"images\":[" INV_IMAGE("docker.io/library/a:1", D1, "ra", POD("p1")) "," INV_IMAGE(
                        "docker.io/library/a:1", D2, "", POD("p1")) "," INV_IMAGE("docker.io/library/b:1", D2, "rb",
                                                                                 POD("p1") "," POD("p1") "," POD(
                                                                                         "p2")) "]}",
        };
        static const char *const dumps[] = {
                "SELECT cluster, node, namespace, ref, name, tag, digest, media_type, revision, pinned, latest,"
                " revision_verified, compliant, findings, pods, k8s_namespaces, updated_usec, findings_mask"
                " FROM node_images ORDER BY node, ref",
                "SELECT cluster, node, k8s_namespace, pod, container, name, ref, digest, revision, first_seen_usec,"
                " last_seen_usec FROM workload_history ORDER BY node, pod, digest",
                "SELECT cluster, node, first_seen_usec, last_seen_usec, last_inventory_usec FROM nodes ORDER BY node",
        };
        Out first[ELEMENTSOF(dumps)];
        for (size_t e = 0; e < n_engines(); e++) {
                Store *s = open_fresh((StoreEngine) e);
                StoreIngestResult r = ingest(s, "c1", batch, 8);
                assert_int_equal(r.accepted, 8);
                r = ingest(s, "c1", batch + 8, 4);
                assert_int_equal(r.accepted, 3);
                assert_int_equal(r.duplicates, 1);
                r = ingest(s, "c1", inv, 1);
                assert_int_equal(r.inventories, 1);
                for (size_t d = 0; d < ELEMENTSOF(dumps); d++) {
                        Out o;
                        q(s, dumps[d], 0, NULL, &o);
                        if (e == 0)
                                first[d] = o;
                        else
                                assert_string_equal(o.text, first[d].text);
                }
                store_free(s);
        }
        /* and what that state is (one statement per record, in order) */
        assert_string_equal(first[0].text,
                            "c1|node-a|k8s.io|" WEB "|docker.io/library/web|latest|" D3
                            "|||1|0|1|1||[]||1795597800000000|0;"
                            "c1|node-b|k8s.io|docker.io/library/a:1|docker.io/library/a||" D2
                            "|||1|0|1|1||[{\"namespace\":\"shop\",\"pod\":\"p1\",\"container\":\"web\"}]|shop|"
                            "1795600800000000|0;"
                            "c1|node-b|k8s.io|docker.io/library/b:1|docker.io/library/b||" D2
                            "||rb|1|0|1|1||[{\"namespace\":\"shop\",\"pod\":\"p1\",\"container\":\"web\"},"
                            "{\"namespace\":\"shop\",\"pod\":\"p1\",\"container\":\"web\"},"
                            "{\"namespace\":\"shop\",\"pod\":\"p2\",\"container\":\"web\"}]|shop|1795600800000000|0");
        assert_string_equal(first[1].text,
                            "c1|node-a|shop|web-0|web|docker.io/library/web|" WEB "|" D1
                            "|r2|1795597200000000|1795597320000000;"
                            "c1|node-a|shop|web-0|web|docker.io/library/web|" WEB "|" D2
                            "|r3|1795597500000000|1795597560000000;"
                            "c1|node-a|shop|web-1|web|docker.io/library/web|" WEB "|" D1
                            "||1795597260000000|1795597260000000;"
                            "c1|node-a|shop|web-2|web|docker.io/library/web|" WEB "|" D1
                            "||1795597620000000|1795597620000000;"
                            "c1|node-a|shop|web-3|web|docker.io/library/web|" WEB "|" D3
                            "||1795597680000000|1795597680000000;"
                            "c1|node-b|shop|p1|web|docker.io/library/a|docker.io/library/a:1|" D1
                            "|ra|1795600800000000|1795600800000000;"
                            "c1|node-b|shop|p1|web|docker.io/library/a|docker.io/library/a:1|" D2
                            "|rb|1795600800000000|1795600800000000;"
                            "c1|node-b|shop|p2|web|docker.io/library/b|docker.io/library/b:1|" D2
                            "|rb|1795600800000000|1795600800000000");
}

/* SQLite keeps a group's record writes and does them at its end, each table's rows in key
 * order (store.c, sq_flush); PostgreSQL sends them as arrays. Either way the state must be
 * that of one record at a time in arrival order. A group of three requests (one with an
 * inventory between its records, one naming ids seen before) over interleaved nodes,
 * references, digests and pods, against the same records stored one per transaction at
 * their request's time: the same rows in every table, the same counts per request. */
static int dump_row(void *userdata, size_t ncols, const char *const *values) {
        FILE *f = userdata;
        for (size_t i = 0; i < ncols; i++)
                fprintf(f, "%s%s", i ? "|" : "", values[i] ? values[i] : "NULL");
        fputc('\n', f);
        return 0;
}

static char *dump_state(Store *s) {
        static const char *const sql[] = {
                "SELECT * FROM node_images ORDER BY cluster, node, namespace, ref",
                "SELECT * FROM workload_history ORDER BY cluster, node, k8s_namespace, pod, container, digest",
                "SELECT * FROM nodes ORDER BY cluster, node",
                "SELECT id, kind, severity, time_usec, received_usec, cluster, node, namespace, ref, name, tag, digest,"
                " previous_digest, revision, k8s_namespace, pod, container, message FROM records ORDER BY id",
        };
        char *text = NULL, err[512] = "";
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);
        assert_non_null(f);
        for (size_t i = 0; i < ELEMENTSOF(sql); i++) {
                fprintf(f, "-- %s\n", sql[i]);
                if (store_query(s, sql[i], 0, NULL, dump_row, f, err, sizeof err) < 0)
                        fail_msg("%s: %s", sql[i], err);
        }
        fclose(f);
        return text;
}

#define GROUP_RECORDS 72
static void test_group_same_as_one_by_one(void **state) {
        static const char *const kinds[] = {"pull", "latest_tag", "untraceable", "tag_moved", "pull", "mutable_tag"};
        static const char *const digests[] = {D1, D2, D3};
        static char lines[GROUP_RECORDS + 1][1024];
        const char *line[GROUP_RECORDS + 1];
        size_t req_of[GROUP_RECORDS + 1], inv_at = GROUP_RECORDS / 2;
        uint32_t x = 12345;
        for (size_t i = 0, k = 0; i <= GROUP_RECORDS; i++) {
                size_t req = i < 24 ? 0 : i <= 48 ? 1 : 2;
                req_of[i] = req;
                line[i] = lines[i];
                if (i == inv_at) { /* node-1's inventory, in the middle of request 1 */
                        snprintf(lines[i], sizeof lines[i],
                                 "{\"schema\":1,\"id\":\"inv\",\"kind\":\"inventory\",\"severity\":\"info\",\"time\":"
                                 "\"2026-11-25T09:30:00Z\",\"node\":\"node-1\",\"total\":2,\"compliant\":2,\"part\":1,"
                                 "\"parts\":1,\"images\":[" INV_IMAGE("r.example/app-0:1", D2, "rv", POD("p1")) ","
                                 INV_IMAGE("r.example/app-2:1", D1, "", POD("p0") "," POD("p2")) "]}");
                        continue;
                }
                x = x * 1103515245u + 12345u;
                unsigned node = (x >> 8) % 3, img = (x >> 12) % 3, dig = (x >> 16) % 3, pod = (x >> 20) % 3;
                const char *kind = kinds[(x >> 24) % ELEMENTSOF(kinds)];
                char id[32];
                if (k >= 7 && k % 7 == 0)
                        snprintf(id, sizeof id, "g%zu", k - 5); /* a duplicate: within or across requests */
                else
                        snprintf(id, sizeof id, "g%zu", k);
                k++;
                char workload[160] = "";
                if (strcmp(kind, "pull") != 0)
                        snprintf(workload, sizeof workload,
                                 ",\"workload\":{\"namespace\":\"shop\",\"pod\":\"p%u\",\"container\":\"web\"}", pod);
                snprintf(lines[i], sizeof lines[i],
                         "{\"schema\":1,\"id\":\"%s\",\"kind\":\"%s\",\"severity\":\"medium\",\"time\":"
                         "\"2026-11-25T09:%02zu:00Z\",\"node\":\"node-%u\",\"namespace\":\"k8s.io\",\"image\":{\"ref\":"
                         "\"r.example/app-%u:1\",\"name\":\"r.example/app-%u\",\"tag\":\"1\",\"digest\":\"%s\","
                         "\"revision\":\"%s\",\"previous_digest\":\"%s\"}%s,\"message\":\"m\"}",
                         id, kind, (i * 7) % 60, node, img, img, digests[dig], (x >> 28) % 2 ? "rev" : "",
                         digests[(dig + 1) % 3], workload);
        }
        static const uint64_t req_time[] = {1800000000000000ULL, 1800000000000007ULL, 1800000000000003ULL};
        char *want[2] = {0};
        for (size_t e = 0; e < n_engines(); e++) {
                char err[512] = "";
                StoreIngestResult group[3] = {0}, one[3] = {0};
                for (int how = 0; how < 2; how++) {
                        Store *s = open_fresh((StoreEngine) e);
                        Record *recs = calloc(GROUP_RECORDS + 1, sizeof *recs);
                        assert_non_null(recs);
                        decode(line, GROUP_RECORDS + 1, recs);
                        if (how == 0) { /* one group: three requests, added in chunks of 5 */
                                size_t i = 0;
                                for (size_t req = 0; req < 3; req++) {
                                        int r = req == 0 ? store_ingest_begin(s, "c1", req_time[req], err, sizeof err)
                                                         : store_ingest_next(s, "c1", req_time[req], err, sizeof err);
                                        assert_int_equal(r, 0);
                                        while (i <= GROUP_RECORDS && req_of[i] == req) {
                                                size_t n = 0;
                                                while (n < 5 && i + n <= GROUP_RECORDS && req_of[i + n] == req)
                                                        n++;
                                                if (store_ingest_add(s, recs + i, n, err, sizeof err) < 0)
                                                        fail_msg("store_ingest_add: %s", err);
                                                i += n;
                                        }
                                }
                                if (store_ingest_end(s, true, group, err, sizeof err) < 0)
                                        fail_msg("store_ingest_end: %s", err);
                        } else /* each record alone, at its request's time */
                                for (size_t i = 0; i <= GROUP_RECORDS; i++) {
                                        StoreIngestResult res = {0};
                                        if (store_ingest(s, "c1", recs + i, 1, req_time[req_of[i]], &res, err,
                                                         sizeof err) < 0)
                                                fail_msg("store_ingest: %s", err);
                                        one[req_of[i]].accepted += res.accepted;
                                        one[req_of[i]].duplicates += res.duplicates;
                                        one[req_of[i]].inventories += res.inventories;
                                }
                        for (size_t i = 0; i <= GROUP_RECORDS; i++)
                                record_done(&recs[i]);
                        free(recs);
                        want[how] = dump_state(s);
                        store_free(s);
                }
                for (size_t req = 0; req < 3; req++) {
                        assert_int_equal(group[req].accepted, one[req].accepted);
                        assert_int_equal(group[req].duplicates, one[req].duplicates);
                        assert_int_equal(group[req].inventories, one[req].inventories);
                }
                assert_int_equal(group[1].inventories, 1);
                assert_true(group[0].duplicates + group[1].duplicates + group[2].duplicates > 0);
                assert_string_equal(want[0], want[1]);
                free(want[0]);
                free(want[1]);
        }
}

static void test_open_migrates_once(void **state) {
        for (size_t e = 0; e < n_engines(); e++) {
                char url[512], err[512] = "";
                Out o;
                fresh_url((StoreEngine) e, url, sizeof url);
                Store *s = NULL;
                assert_int_equal(store_open(&s, url, err, sizeof err), 0);
                assert_string_equal(q(s, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL, &o),
                                    "1;2;3;4;5;6;7;8;9;10;11;12;13");
                s = store_free(s);
                /* a second open finds version 13 and applies nothing */
                assert_int_equal(store_open(&s, url, err, sizeof err), 0);
                assert_string_equal(q(s, "SELECT COUNT(*) FROM schema_migrations", 0, NULL, &o), "13");
                if (e == STORE_SQLITE) {
                        /* a new SQLite database has 16 KiB pages (fewer WAL frames per commit) */
                        sqlite3 *db = NULL;
                        sqlite3_stmt *st = NULL;
                        assert_int_equal(sqlite3_open(url + strlen("sqlite:"), &db), SQLITE_OK);
                        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, NULL), SQLITE_OK);
                        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
                        assert_int_equal(sqlite3_column_int(st, 0), 16384);
                        sqlite3_finalize(st);
                        sqlite3_close(db);
                }
                assert_string_equal(q(s, records_indexes[e], 0, NULL, &o), "records_kind_time;records_name");
                /* every table of the contract is there and empty */
                static const char *const tables[] = {"records", "nodes", "node_images", "inventory_parts",
                                                     "workload_history", "daily_rollup"};
                for (size_t i = 0; i < ELEMENTSOF(tables); i++) {
                        char sql[64];
                        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", tables[i]);
                        assert_string_equal(q(s, sql, 0, NULL, &o), "0");
                }
                assert_int_equal(store_ping(s, err, sizeof err), 0);
                store_free(s);
        }
}

static void test_open_failures(void **state) {
        static const struct {
                const char *url;
                int error;
                const char *names;
        } table[] = {
                {"mysql://x", -EINVAL, "unknown database URL"},
                {"sqlite:", -EINVAL, "no file name"},
                {"sqlite:/nonexistent-dir/x.db", -ENOTCONN, "sqlite:/nonexistent-dir/x.db"},
                {"postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2", -ENOTCONN,
                 "postgresql://127.0.0.1:1/postgres"},
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                Store *s = NULL;
                char err[512] = "";
                assert_int_equal(store_open(&s, table[i].url, err, sizeof err), table[i].error);
                assert_null(s);
                if (!strstr(err, table[i].names))
                        fail_msg("%s: reason \"%s\" does not name \"%s\"", table[i].url, err, table[i].names);
                assert_null(strchr(err, '\n'));
        }
}

static int stop_after_two(void *userdata, size_t ncols, const char *const *values) {
        return ++*(size_t *) userdata == 2 ? 1 : 0;
}

static int fail_at_two(void *userdata, size_t ncols, const char *const *values) {
        return ++*(size_t *) userdata == 2 ? -ENOSPC : 0;
}

static void test_query_bound_and_read_only(void **state) {
        for (size_t e = 0; e < n_engines(); e++) {
                Store *s = open_fresh((StoreEngine) e);
                Out o;
                const char *lines[] = {PULL("a1", "node-a", "docker.io/library/web:latest", "latest", D1,
                                            "2026-11-25T10:00:00.000001Z")};
                ingest(s, "prod", lines, 1);
                /* an attacker-shaped parameter is a value, never SQL */
                const char *p1[] = {"node-a' OR '1'='1"};
                assert_string_equal(q(s, "SELECT COUNT(*) FROM records WHERE node = $1", 1, p1, &o), "0");
                const char *p2[] = {"prod", "node-a"};
                assert_string_equal(q(s, "SELECT node, cluster FROM records WHERE node = $2 AND cluster = $1", 2, p2,
                                      &o),
                                    "node-a|prod");
                /* NULL binds SQL NULL */
                const char *p3[] = {NULL};
                assert_string_equal(q(s, "SELECT COALESCE($1, 'null')", 1, p3, &o), "null");
                char err[512] = "";
                int r = store_query(s, "DELETE FROM records", 0, NULL, NULL, NULL, err, sizeof err);
                assert_true(r < 0);
                assert_string_equal(q(s, "SELECT COUNT(*) FROM records", 0, NULL, &o), "1");
                r = store_query(s, "SELECT nonsense FROM", 0, NULL, NULL, NULL, err, sizeof err);
                assert_int_equal(r, -EIO);
                assert_non_null(strstr(err, store_name(s)));
                /* rows come one at a time (PostgreSQL: single-row mode): a callback that stops
                 * or fails ends the query, and the next one runs on the same connection */
                static const char five[] = "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE"
                                           " x < 5) SELECT x FROM g";
                size_t calls = 0;
                assert_int_equal(store_query(s, five, 0, NULL, stop_after_two, &calls, err, sizeof err), 0);
                assert_int_equal(calls, 2);
                calls = 0;
                assert_int_equal(store_query(s, five, 0, NULL, fail_at_two, &calls, err, sizeof err), -ENOSPC);
                assert_int_equal(calls, 2);
                assert_string_equal(q(s, five, 0, NULL, &o), "1;2;3;4;5");
                if (e == STORE_POSTGRESQL) { /* an error after rows were delivered is the query's */
                        r = store_query(s,
                                        "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 5)"
                                        " SELECT 10 / (3 - x) FROM g",
                                        0, NULL, out_row, &(Out){0}, err, sizeof err);
                        assert_int_equal(r, -EIO);
                        assert_non_null(strstr(err, "division by zero"));
                        assert_string_equal(q(s, five, 0, NULL, &o), "1;2;3;4;5");
                }
                store_free(s);
        }
}

static void test_pull_and_findings(void **state) {
        for (size_t e = 0; e < n_engines(); e++) {
                Store *s = open_fresh((StoreEngine) e);
                Out o;
                const char *b1[] = {
                        PULL("p1", "node-a", "docker.io/library/web:latest", "latest", D1, "2026-11-25T10:00:00Z"),
                        LATEST("f1", "node-a", "docker.io/library/web:latest", D1, "2026-11-25T10:00:01Z"),
                };
                StoreIngestResult r = ingest(s, "prod", b1, 2);
                assert_int_equal(r.accepted, 2);
                assert_int_equal(r.duplicates, 0);
                assert_string_equal(q(s,
                                      "SELECT cluster, node, ref, digest, pinned, latest, revision_verified, compliant,"
                                      " findings FROM node_images",
                                      0, NULL, &o),
                                    "prod|node-a|docker.io/library/web:latest|" D1 "|0|1|1|0|latest_tag");
                assert_string_equal(q(s, "SELECT k8s_namespace, pod, container, digest FROM workload_history", 0,
                                      NULL, &o),
                                    "shop|web-0|web|" D1);
                /* the same batch again: accepted, nothing stored twice, state unchanged */
                r = ingest(s, "prod", b1, 2);
                assert_int_equal(r.accepted, 0);
                assert_int_equal(r.duplicates, 2);
                assert_string_equal(q(s, "SELECT COUNT(*) FROM records", 0, NULL, &o), "2");
                assert_string_equal(q(s, "SELECT findings, compliant FROM node_images", 0, NULL, &o), "latest_tag|0");
                /* the tag moves: the row points at the new digest at once, findings start over */
                const char *b2[] = {
                        PULL("p2", "node-a", "docker.io/library/web:latest", "latest", D2, "2026-11-25T11:00:00Z")};
                ingest(s, "prod", b2, 1);
                assert_string_equal(q(s, "SELECT digest, findings FROM node_images", 0, NULL, &o), D2 "|");
                /* an older pull replayed late does not turn the state back */
                const char *b3[] = {
                        PULL("p0", "node-a", "docker.io/library/web:latest", "latest", D3, "2026-11-25T09:00:00Z")};
                ingest(s, "prod", b3, 1);
                assert_string_equal(q(s, "SELECT digest FROM node_images", 0, NULL, &o), D2);
                assert_string_equal(q(s, "SELECT COUNT(*) FROM records", 0, NULL, &o), "4");
                /* a tag_moved names the pods still on the PREVIOUS digest: their history is at
                 * that digest, not at the new one (it was, so --workload showed them too early) */
                const char *b4[] = {
                        "{\"schema\":1,\"id\":\"m1\",\"kind\":\"tag_moved\",\"severity\":\"high\",\"time\":"
                        "\"2026-11-25T11:00:01Z\",\"node\":\"node-a\",\"namespace\":\"k8s.io\",\"image\":{\"ref\":"
                        "\"docker.io/library/web:latest\",\"name\":\"docker.io/library/web\",\"tag\":\"latest\","
                        "\"digest\":\"" D2 "\",\"previous_digest\":\"" D1 "\"},\"workload\":{\"namespace\":"
                        "\"shop\",\"pod\":\"web-1\",\"container\":\"web\"},\"message\":\"moved\"}"};
                ingest(s, "prod", b4, 1);
                assert_string_equal(q(s, "SELECT digest FROM workload_history WHERE pod = 'web-1'", 0, NULL, &o), D1);
                /* nodes: first and last seen */
                assert_string_equal(q(s, "SELECT cluster, node, last_seen_usec, last_inventory_usec FROM nodes", 0,
                                      NULL, &o),
                                    "prod|node-a|1800000000000000|0");
                store_free(s);
        }
}

static void test_inventory(void **state) {
        for (size_t e = 0; e < n_engines(); e++) {
                Store *s = open_fresh((StoreEngine) e);
                Out o;
                /* state before: two references from pulls */
                const char *b1[] = {
                        PULL("p1", "node-a", "docker.io/library/old:1", "1", D1, "2026-11-25T09:00:00Z"),
                        PULL("p2", "node-a", "docker.io/library/web:latest", "latest", D1, "2026-11-25T09:00:00Z"),
                };
                ingest(s, "c1", b1, 2);
                /* part 1 of 2 alone replaces nothing */
                const char *i1[] = {
                        "{\"schema\":1,\"id\":\"i1\",\"kind\":\"inventory\",\"severity\":\"info\",\"time\":"
                        "\"2026-11-25T10:00:00.5Z\",\"node\":\"node-a\",\"total\":2,\"compliant\":1,\"part\":1,"
                        "\"parts\":2,\"images\":[{\"namespace\":\"k8s.io\",\"ref\":\"docker.io/library/web:latest\","
                        "\"tag\":\"latest\",\"digest\":\"" D2 "\",\"compliant\":false,\"findings\":[\"latest_tag\","
                        "\"untraceable\"],\"pods\":[{\"namespace\":\"shop\",\"pod\":\"web-1\",\"container\":\"web\"},"
                        "{\"namespace\":\"blog\",\"pod\":\"w\",\"container\":\"w\"}]}]}"};
                StoreIngestResult r = ingest(s, "c1", i1, 1);
                assert_int_equal(r.inventories, 0);
                assert_string_equal(q(s, "SELECT COUNT(*) FROM node_images", 0, NULL, &o), "2");
                assert_string_equal(q(s, "SELECT COUNT(*) FROM inventory_parts", 0, NULL, &o), "1");
                /* part 2: the inventory is whole; old:1 is gone, web:latest at D2, app:v1 new */
                const char *i2[] = {
                        "{\"schema\":1,\"id\":\"i2\",\"kind\":\"inventory\",\"severity\":\"info\",\"time\":"
                        "\"2026-11-25T10:00:00.5Z\",\"node\":\"node-a\",\"total\":2,\"compliant\":1,\"part\":2,"
                        "\"parts\":2,\"images\":[{\"namespace\":\"k8s.io\",\"ref\":\"docker.io/library/app:v1\","
                        "\"tag\":\"v1\",\"digest\":\"" D3 "\",\"compliant\":true,\"findings\":[]}]}"};
                r = ingest(s, "c1", i2, 1);
                assert_int_equal(r.inventories, 1);
                assert_string_equal(q(s,
                                      "SELECT ref, name, digest, pinned, latest, revision_verified, compliant, findings,"
                                      " k8s_namespaces FROM node_images ORDER BY ref",
                                      0, NULL, &o),
                                    "docker.io/library/app:v1|docker.io/library/app|" D3 "|1|0|1|1||;"
                                    "docker.io/library/web:latest|docker.io/library/web|" D2
                                    "|0|1|0|0|latest_tag,untraceable|blog,shop");
                assert_string_equal(q(s, "SELECT COUNT(*) FROM inventory_parts", 0, NULL, &o), "0");
                assert_string_equal(q(s, "SELECT last_inventory_usec FROM nodes", 0, NULL, &o), "1795600800500000");
                assert_string_equal(q(s, "SELECT pod FROM workload_history ORDER BY pod", 0, NULL, &o), "w;web-1");
                /* an older one-part inventory replayed later changes nothing */
                const char *i3[] = {
                        "{\"schema\":1,\"id\":\"i3\",\"kind\":\"inventory\",\"severity\":\"info\",\"time\":"
                        "\"2026-11-25T08:00:00Z\",\"node\":\"node-a\",\"total\":0,\"compliant\":0,\"part\":1,"
                        "\"parts\":1,\"images\":[]}"};
                ingest(s, "c1", i3, 1);
                assert_string_equal(q(s, "SELECT COUNT(*) FROM node_images", 0, NULL, &o), "2");
                /* a pull after the inventory updates at once; a newer empty inventory empties */
                const char *b2[] = {
                        PULL("p3", "node-a", "docker.io/library/web:latest", "latest", D1, "2026-11-25T10:30:00Z")};
                ingest(s, "c1", b2, 1);
                assert_string_equal(
                        q(s, "SELECT digest FROM node_images WHERE ref = 'docker.io/library/web:latest'", 0, NULL, &o),
                        D1);
                const char *i4[] = {
                        "{\"schema\":1,\"id\":\"i4\",\"kind\":\"inventory\",\"severity\":\"info\",\"time\":"
                        "\"2026-11-25T11:00:00Z\",\"node\":\"node-a\",\"total\":0,\"compliant\":0,\"part\":1,"
                        "\"parts\":1,\"images\":[]}"};
                ingest(s, "c1", i4, 1);
                assert_string_equal(q(s, "SELECT COUNT(*) FROM node_images", 0, NULL, &o), "0");
                store_free(s);
        }
}

static void test_cluster_without_token(void **state) {
        for (size_t e = 0; e < n_engines(); e++) {
                Store *s = open_fresh((StoreEngine) e);
                Out o;
                /* the inventory names the cluster; the node's later pull (no cluster field) joins it */
                const char *i1[] = {
                        "{\"schema\":1,\"id\":\"i1\",\"kind\":\"inventory\",\"severity\":\"info\",\"time\":"
                        "\"2026-11-25T10:00:00Z\",\"node\":\"node-a\",\"cluster\":\"east\",\"total\":0,"
                        "\"compliant\":0,\"part\":1,\"parts\":1,\"images\":[]}"};
                ingest(s, NULL, i1, 1);
                const char *b1[] = {
                        PULL("p1", "node-a", "docker.io/library/web:1", "1", D1, "2026-11-25T10:30:00Z"),
                        PULL("p2", "node-b", "docker.io/library/web:1", "1", D1, "2026-11-25T10:30:00Z"),
                };
                ingest(s, NULL, b1, 2);
                assert_string_equal(q(s, "SELECT cluster, node FROM node_images ORDER BY node", 0, NULL, &o),
                                    "east|node-a;|node-b");
                /* a token's cluster wins over the body's */
                ingest(s, "west", i1, 1);
                assert_string_equal(q(s, "SELECT cluster FROM nodes ORDER BY cluster", 0, NULL, &o), ";east;west");
                store_free(s);
        }
}

/* Without a token, a record naming no cluster joins its node's (cached node → cluster).
 * More nodes than the cache has slots (4,096, probed from each node's hash): nodes sharing
 * slots and evicted ones must still each get their own cluster, never a neighbour's. */
static void test_cluster_cache_many_nodes(void **state) {
        enum { NODES = 5000, CHUNK = 250 };
        for (size_t e = 0; e < n_engines(); e++) {
                Store *s = open_fresh((StoreEngine) e);
                Out o;
                Record *recs = calloc(CHUNK, sizeof *recs);
                assert_non_null(recs);
                for (int pass = 0; pass < 2; pass++)
                        for (int base = 0; base < NODES; base += CHUNK) {
                                for (int i = 0; i < CHUNK; i++) {
                                        char line[512], cluster[40] = "";
                                        int n = base + i;
                                        /* the first pass names the cluster, the second leaves it out */
                                        if (pass == 0)
                                                snprintf(cluster, sizeof cluster, ",\"cluster\":\"c%d\"", n % 7);
                                        snprintf(line, sizeof line,
                                                 "{\"schema\":1,\"id\":\"p%d-%d\",\"kind\":\"pull\",\"severity\":"
                                                 "\"info\",\"time\":\"2026-11-25T10:00:00Z\",\"node\":\"node-%d\"%s,"
                                                 "\"namespace\":\"k8s.io\",\"image\":{\"ref\":\"r.example/p%d:1\","
                                                 "\"name\":\"r.example/p%d\",\"tag\":\"1\",\"digest\":\"" D1 "\"}}",
                                                 pass, n, n, cluster, pass, pass);
                                        const char *lines[] = {line};
                                        decode(lines, 1, &recs[i]);
                                }
                                char err[512] = "";
                                StoreIngestResult res = {0};
                                int r = store_ingest(s, NULL, recs, CHUNK, 1800000000000000ULL, &res, err, sizeof err);
                                for (int i = 0; i < CHUNK; i++)
                                        record_done(&recs[i]);
                                if (r < 0)
                                        fail_msg("store_ingest: %s", err);
                                assert_int_equal(res.accepted, CHUNK);
                        }
                free(recs);
                /* every second-pass pull in its node's cluster: c(N mod 7) for node-N */
                assert_string_equal(q(s, "SELECT COUNT(*) FROM node_images WHERE ref = 'r.example/p1:1' AND cluster ="
                                         " 'c' || CAST(CAST(substr(node, 6) AS INTEGER) % 7 AS TEXT)", 0, NULL, &o),
                                    "5000");
                assert_string_equal(q(s, "SELECT COUNT(*) FROM node_images", 0, NULL, &o), "10000");
                store_free(s);
        }
}

/* The records of a SQLite database as its main file alone has them (copied without its
 * WAL): what checkpoints have copied back so far. */
static long main_file_records(const char *path) {
        char copy[600], cmd[1400];
        snprintf(copy, sizeof copy, "%s.main-only", path);
        snprintf(cmd, sizeof cmd, "rm -f '%s'* && cp '%s' '%s'", copy, path, copy);
        assert_int_equal(system(cmd), 0);
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(copy, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        sqlite3_stmt *st = NULL;
        long n = -1;
        if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM records", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
                n = sqlite3_column_int64(st, 0);
        else
                n = -2; /* no records table: the schema is not there either */
        sqlite3_finalize(st);
        sqlite3_close(db);
        return n;
}

static void ingest_pulls(Store *s, int from, int n) {
        Record *recs = calloc((size_t) n, sizeof *recs);
        assert_non_null(recs);
        for (int i = 0; i < n; i++) {
                char line[512];
                snprintf(line, sizeof line,
                         "{\"schema\":1,\"id\":\"ck%d\",\"kind\":\"pull\",\"severity\":\"info\",\"time\":"
                         "\"2026-11-25T10:00:00Z\",\"node\":\"node-%d\",\"namespace\":\"k8s.io\",\"image\":"
                         "{\"ref\":\"r.example/p%d:1\",\"name\":\"r.example/p%d\",\"tag\":\"1\",\"digest\":\"" D1
                         "\"}}",
                         from + i, (from + i) % 50, from + i, from + i);
                const char *lines[] = {line};
                decode(lines, 1, &recs[i]);
        }
        char err[512] = "";
        StoreIngestResult res = {0};
        int r = store_ingest(s, "prod", recs, (size_t) n, 1800000000000000ULL, &res, err, sizeof err);
        for (int i = 0; i < n; i++)
                record_done(&recs[i]);
        free(recs);
        if (r < 0)
                fail_msg("store_ingest: %s", err);
        assert_int_equal(res.accepted, n);
}

/* SQLite: a commit does not copy the WAL back into the database file (its clients wait
 * for it); store_checkpoint(), called after the answers, does once the log holds the
 * threshold — and a commit does past STORE_CHECKPOINT_HARD_FACTOR times it, so the log
 * stays bounded when nobody calls store_checkpoint(). PostgreSQL: nothing to do. */
static void test_checkpoint_after_commit(void **state) {
        for (size_t e = 0; e < n_engines(); e++) {
                Store *s = open_fresh((StoreEngine) e);
                char err[512] = "";
                if (e == STORE_POSTGRESQL) {
                        ingest_pulls(s, 0, 3);
                        assert_int_equal(store_checkpoint(s, err, sizeof err), 0);
                        store_free(s);
                        continue;
                }
                char path[512];
                snprintf(path, sizeof path, "%s/t%d.db", sq_dir, db_counter);
                /* 16 KiB pages: 4 frames, then 16 for the commit's own bound */
                store_set_checkpoint_bytes(s, 64 << 10);
                assert_int_equal(store_checkpoint(s, err, sizeof err), 1); /* the migrations' frames */
                assert_int_equal(main_file_records(path), 0);
                /* a commit of a few frames (≥ 4, < 16): stays in the WAL until store_checkpoint */
                ingest_pulls(s, 0, 3);
                assert_int_equal(main_file_records(path), 0);
                assert_int_equal(store_checkpoint(s, err, sizeof err), 1);
                assert_int_equal(main_file_records(path), 3);
                assert_int_equal(store_checkpoint(s, err, sizeof err), 0); /* nothing new */
                assert_int_equal(main_file_records(path), 3);
                /* a commit of more than 16 frames checkpoints itself */
                ingest_pulls(s, 3, 2000);
                assert_int_equal(main_file_records(path), 2003);
                assert_int_equal(store_checkpoint(s, err, sizeof err), 0);
                store_free(s);
        }
}

static void test_rollup_and_retention(void **state) {
        for (size_t e = 0; e < n_engines(); e++) {
                Store *s = open_fresh((StoreEngine) e);
                Out o;
                char err[512] = "";
                const char *i1[] = {
                        "{\"schema\":1,\"id\":\"i1\",\"kind\":\"inventory\",\"severity\":\"info\",\"time\":"
                        "\"2026-11-25T10:00:00Z\",\"node\":\"node-a\",\"total\":3,\"compliant\":1,\"part\":1,"
                        "\"parts\":1,\"images\":[{\"namespace\":\"k8s.io\",\"ref\":\"docker.io/library/a:latest\","
                        "\"tag\":\"latest\",\"digest\":\"" D1 "\",\"compliant\":false,\"findings\":[\"latest_tag\","
                        "\"untraceable\"],\"pods\":[{\"namespace\":\"shop\",\"pod\":\"a\",\"container\":\"a\"}]},"
                        "{\"namespace\":\"k8s.io\",\"ref\":\"docker.io/library/b:main\",\"tag\":\"main\",\"digest\":\"" D2
                        "\",\"compliant\":false,\"findings\":[\"mutable_tag\"],\"pods\":[{\"namespace\":\"shop\","
                        "\"pod\":\"b\",\"container\":\"b\"},{\"namespace\":\"blog\",\"pod\":\"b\",\"container\":\"b\"}]},"
                        "{\"namespace\":\"k8s.io\",\"ref\":\"docker.io/library/c:v1\",\"tag\":\"v1\",\"digest\":\"" D3
                        "\",\"compliant\":true,\"findings\":[]}]}",
                        PULL("p1", "node-a", "docker.io/library/c:v1", "v1", D3, "2026-11-25T09:00:00Z"),
                        PULL("p2", "node-a", "docker.io/library/c:v1", "v1", D3, "2026-11-28T09:00:00Z"),
                };
                ingest(s, "prod", i1, 3);
                uint64_t now = 1796983200000000ULL; /* 2026-12-11T10:00:00Z */
                assert_int_equal(store_maintain(s, now, 14, err, sizeof err), 0);
                assert_string_equal(q(s,
                                      "SELECT day, cluster, k8s_namespace, images, compliant, pinned, latest,"
                                      " revision_verified, findings FROM daily_rollup ORDER BY k8s_namespace",
                                      0, NULL, &o),
                                    "2026-12-11|prod||3|1|1|1|2|3;"
                                    "2026-12-11|prod|blog|1|0|0|0|1|1;"
                                    "2026-12-11|prod|shop|2|0|0|1|1|3");
                /* 14 days: the pull of 2026-11-25 goes, the one of 2026-11-28 stays; the rollup stays */
                assert_string_equal(q(s, "SELECT id FROM records", 0, NULL, &o), "p2");
                assert_int_equal(store_maintain(s, now + 40ULL * 86400000000ULL, 14, err, sizeof err), 0);
                assert_string_equal(q(s, "SELECT COUNT(*) FROM records", 0, NULL, &o), "0");
                assert_string_equal(q(s, "SELECT COUNT(DISTINCT day) FROM daily_rollup", 0, NULL, &o), "2");
                store_free(s);
        }
}

static int start_pg(void) {
        snprintf(pg_dir, sizeof pg_dir, "/tmp/pw-pgunit-XXXXXX");
        if (!mkdtemp(pg_dir) || chmod(pg_dir, 0755) < 0) /* the postgres user must reach pg_dir/pg */
                return -errno;
        char cmd[512];
        snprintf(cmd, sizeof cmd, "bash %s/tests/integration/pg.sh start %s/pg 2>/dev/null", PW_SOURCE_DIR, pg_dir);
        FILE *p = popen(cmd, "r");
        if (!p)
                return -errno;
        if (!fgets(pg_url, sizeof pg_url, p))
                pg_url[0] = 0;
        int st = pclose(p);
        pg_url[strcspn(pg_url, "\n")] = 0;
        if (st != 0 || !startswith(pg_url, "postgresql://")) {
                pg_url[0] = 0;
                return -ENOENT;
        }
        return 0;
}

static void stop_pg(void) {
        if (!pg_dir[0])
                return;
        char cmd[512];
        snprintf(cmd, sizeof cmd, "bash %s/tests/integration/pg.sh stop %s/pg; rm -rf %s", PW_SOURCE_DIR, pg_dir,
                 pg_dir);
        if (system(cmd) != 0)
                fprintf(stderr, "test_store: could not stop PostgreSQL in %s\n", pg_dir);
}

int main(void) {
        snprintf(sq_dir, sizeof sq_dir, "/tmp/pw-squnit-XXXXXX");
        if (!mkdtemp(sq_dir))
                return 1;
        if (getenv("PW_NO_POSTGRESQL") || start_pg() < 0)
                fprintf(stderr, "test_store: PostgreSQL not available, SQLite only\n");
        else
                fprintf(stderr, "test_store: SQLite and PostgreSQL (%s)\n", pg_url);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_open_migrates_once), cmocka_unit_test(test_upgrade_from_v1),
                cmocka_unit_test(test_upgrade_from_v2),          cmocka_unit_test(test_upgrade_from_v3),
                cmocka_unit_test(test_upgrade_from_v4),     cmocka_unit_test(test_upgrade_from_v5),
                cmocka_unit_test(test_upgrade_from_v6),     cmocka_unit_test(test_upgrade_from_v7),
                cmocka_unit_test(test_upgrade_from_v8),     cmocka_unit_test(test_inventory_unchanged_rows),
                cmocka_unit_test(test_upgrade_from_v9), cmocka_unit_test(test_upgrade_from_v10),
                cmocka_unit_test(test_upgrade_from_v11),
                cmocka_unit_test(test_inventory_fresh_node),
                cmocka_unit_test(test_inventory_fresh_two_collectors),
                cmocka_unit_test(test_report_divergence_node_by_node),
                cmocka_unit_test(test_report_divergence_pods_since_inventory),
                cmocka_unit_test(test_record_text_round_trip),
                cmocka_unit_test(test_records_odd_text_both_engines),  cmocka_unit_test(test_open_failures),
                cmocka_unit_test(test_query_bound_and_read_only), cmocka_unit_test(test_pull_and_findings),
                cmocka_unit_test(test_inventory),           cmocka_unit_test(test_cluster_without_token),
                cmocka_unit_test(test_rollup_and_retention), cmocka_unit_test(test_cluster_cache_many_nodes), cmocka_unit_test(test_group_commit),
                cmocka_unit_test(test_batch_same_on_both_engines), cmocka_unit_test(test_group_same_as_one_by_one), cmocka_unit_test(test_finding_upsert),
                cmocka_unit_test(test_inventories_deferred_in_order),
                cmocka_unit_test(test_state_deferred_until_read), cmocka_unit_test(test_state_applied_once_after_crash),
                cmocka_unit_test(test_state_mark_after_retention_empties), cmocka_unit_test(test_state_queued_before_inventory),
                cmocka_unit_test(test_node_touched_once_per_request), cmocka_unit_test(test_checkpoint_after_commit), cmocka_unit_test(test_inventory_pods_json),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        stop_pg();
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", sq_dir);
        if (system(cmd) != 0)
                r = 1;
        return r;
}
