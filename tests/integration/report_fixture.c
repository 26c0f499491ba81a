/* report_fixture URL — the fleet report's fixture store, made through the real schema:
 * store_open() applies the collector's migrations, then rows go in with bound parameters
 * (sqlite3 / libpq directly: the store interface is read-only by design).
 *
 * As of NOW = 2026-11-30T05:00:00Z (pass --now 2026-11-30T05:00:00Z to the report):
 *   clusters prod (node-a, node-b fresh; node-c stale: inventory 3 h old) and staging
 *     (node-s1 fresh; node-s2 never sent a complete inventory);
 *   registry.example/shop/web:latest diverges: W1 on node-a and node-b, W2 on node-c;
 *   registry.example/shop/api:1.4.2 is a multi-arch index A1 on three nodes: not divergent;
 *   registry.example/shop/cart pulled by digest at two digests: not a tag, not divergent;
 *   registry.example/tools/agent:2.0: an index on node-s1, a platform manifest on node-s2
 *     (the store cannot tell whether the index lists it: flagged);
 *   tag_moved (two in the week, one older than 7 days), digest_mismatch, revision_mismatch;
 *   workload_history for shop/web-0 (W0 before W1) and shop/web-1 (W1 before W2);
 *   daily_rollup over five days;
 *   an injection fixture: a reference, a pod and a namespace made of markup.
 * Exit 0, or 1 with one line on stderr. */
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "pullwatch/store.h"
#include "pullwatch/util.h"

#define NOW 1796014800000000LL /* 2026-11-30T05:00:00Z */
#define H (3600LL * 1000000LL)
#define D (24 * H)

#define W0 "sha256:0000000000000000000000000000000000000000000000000000000000000a00"
#define W1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define W2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define A1 "sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
#define C1 "sha256:c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1"
#define C2 "sha256:c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2"
#define E1 "sha256:e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1"
#define K1 "sha256:3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c"
#define X1 "sha256:9191919191919191919191919191919191919191919191919191919191919191"
#define X2 "sha256:9292929292929292929292929292929292929292929292929292929292929292"
#define V1 "sha256:e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7"
#define V2 "sha256:e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8"
#define INDEX "application/vnd.oci.image.index.v1+json"
#define MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define REV "3f2c1ab9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3"

/* the injection fixture: markup in every attacker-controlled place */
#define EVIL_NAME "evil.example/a\"><script>alert(1)</script>"
#define EVIL_REF EVIL_NAME ":1</title><b>x&amp;y"
#define EVIL_NS "x&y'<i>"
#define EVIL_POD "</title><script>alert(2)</script>"

static sqlite3 *lite;
static PGconn *pg;

static int exec(const char *sql, size_t n, const char *const *p) {
        if (pg) {
                PGresult *res = PQexecParams(pg, sql, (int) n, NULL, p, NULL, NULL, 0);
                int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
                if (!ok)
                        fprintf(stderr, "report_fixture: %s", PQerrorMessage(pg));
                PQclear(res);
                return ok ? 0 : -1;
        }
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(lite, sql, -1, &st, NULL) != SQLITE_OK) {
                fprintf(stderr, "report_fixture: %s\n", sqlite3_errmsg(lite));
                return -1;
        }
        for (size_t i = 0; i < n; i++) {
                char name[8];
                snprintf(name, sizeof name, "$%zu", i + 1);
                sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, name), p[i], -1, SQLITE_TRANSIENT);
        }
        int r = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
        if (r < 0)
                fprintf(stderr, "report_fixture: %s\n", sqlite3_errmsg(lite));
        sqlite3_finalize(st);
        return r;
}

static const char *t(long long usec) {
        /* a ring of buffers: a row binds up to a few times at once */
        static char ring[8][24];
        static int i;
        char *b = ring[i++ % 8];
        snprintf(b, 24, "%lld", usec);
        return b;
}

static int node(const char *cluster, const char *name, long long inventory) {
        const char *p[] = {cluster, name, t(NOW - 30 * D), t(NOW - 60LL * 1000000LL), t(inventory)};
        return exec("INSERT INTO nodes (cluster, node, first_seen_usec, last_seen_usec, last_inventory_usec) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    5, p);
}

/* flags: pinned latest revision_verified compliant */
static int image(const char *cluster, const char *nodename, const char *ref, const char *name, const char *tag,
                 const char *digest, const char *media_type, const char *revision, const char *flags,
                 const char *findings, const char *pods, const char *k8s_namespaces) {
        char f[4][2] = {{flags[0], 0}, {flags[1], 0}, {flags[2], 0}, {flags[3], 0}};
        const char *p[] = {cluster, nodename, "k8s.io", ref, name, tag, digest, media_type, revision,
                           f[0], f[1], f[2], f[3], findings, pods, k8s_namespaces, t(NOW - H)};
        return exec("INSERT INTO node_images (cluster, node, namespace, ref, name, tag, digest, media_type, revision, "
                    "pinned, latest, revision_verified, compliant, findings, pods, k8s_namespaces, updated_usec) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CAST($10 AS INTEGER), CAST($11 AS INTEGER), "
                    "CAST($12 AS INTEGER), CAST($13 AS INTEGER), $14, $15, $16, CAST($17 AS BIGINT))",
                    17, p);
}

static int record(const char *id, const char *kind, const char *severity, long long when, const char *cluster,
                  const char *nodename, const char *ref, const char *name, const char *tag, const char *digest,
                  const char *previous, const char *expected, const char *revision, const char *k8s_ns,
                  const char *pod, const char *message) {
        const char *p[] = {id, kind, severity, t(when), t(when + 1000000), cluster, nodename, "k8s.io", ref, name,
                           tag, digest, previous, expected, revision, "", k8s_ns, pod, pod[0] ? "app" : "",
                           "", message};
        return exec("INSERT INTO records (id, kind, severity, time_usec, received_usec, cluster, node, namespace, "
                    "ref, name, tag, digest, previous_digest, expected_digest, revision, media_type, k8s_namespace, "
                    "pod, container, container_id, message) VALUES ($1, $2, $3, CAST($4 AS BIGINT), "
                    "CAST($5 AS BIGINT), $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
                    21, p);
}

static int history(const char *cluster, const char *nodename, const char *ns, const char *pod, const char *container,
                   const char *name, const char *ref, const char *digest, const char *revision, long long first,
                   long long last) {
        const char *p[] = {cluster, nodename, ns, pod, container, name, ref, digest, revision, t(first), t(last)};
        return exec("INSERT INTO workload_history (cluster, node, k8s_namespace, pod, container, name, ref, digest, "
                    "revision, first_seen_usec, last_seen_usec) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
                    "CAST($10 AS BIGINT), CAST($11 AS BIGINT))",
                    11, p);
}

static int rollup(const char *day, const char *cluster, const char *ns, int images, int compliant) {
        char i[16], c[16];
        snprintf(i, sizeof i, "%d", images);
        snprintf(c, sizeof c, "%d", compliant);
        const char *p[] = {day, cluster, ns, i, c};
        return exec("INSERT INTO daily_rollup (day, cluster, k8s_namespace, images, compliant, pinned, latest, "
                    "revision_verified, findings) VALUES ($1, $2, $3, CAST($4 AS INTEGER), CAST($5 AS INTEGER), 0, "
                    "0, 0, 0)",
                    5, p);
}

#define WEB "registry.example/shop/web"
#define API "registry.example/shop/api"
#define CART "registry.example/shop/cart"
#define WORKER "registry.example/shop/worker"
#define AGENT "registry.example/tools/agent"
#define REDIS "docker.io/library/redis"

static int fill(void) {
        int r = 0;
        r |= node("prod", "node-a", NOW - 20LL * 60 * 1000000);
        r |= node("prod", "node-b", NOW - 50LL * 60 * 1000000);
        r |= node("prod", "node-c", NOW - 3 * H);
        r |= node("staging", "node-s1", NOW - 10LL * 60 * 1000000);
        r |= node("staging", "node-s2", 0);

        /* the divergent tag */
        r |= image("prod", "node-a", WEB ":latest", WEB, "latest", W1, MANIFEST, "", "0100", "latest_tag,untraceable",
                   "[{\"namespace\":\"shop\",\"pod\":\"web-0\",\"container\":\"web\"}]", "shop");
        r |= image("prod", "node-b", WEB ":latest", WEB, "latest", W1, MANIFEST, "", "0100", "latest_tag,untraceable",
                   "[]", "");
        r |= image("prod", "node-c", WEB ":latest", WEB, "latest", W2, MANIFEST, "", "0100",
                   "latest_tag,tag_moved,untraceable",
                   "[{\"namespace\":\"shop\",\"pod\":\"web-1\",\"container\":\"web\"}]", "shop");
        /* multi-arch, same index everywhere: not divergent */
        r |= image("prod", "node-a", API ":1.4.2", API, "1.4.2", A1, INDEX, REV, "1011", "",
                   "[{\"namespace\":\"shop\",\"pod\":\"api-0\",\"container\":\"api\"}]", "shop");
        r |= image("prod", "node-b", API ":1.4.2", API, "1.4.2", A1, INDEX, REV, "1011", "",
                   "[{\"namespace\":\"shop\",\"pod\":\"api-1\",\"container\":\"api\"},"
                   "{\"namespace\":\"batch\",\"pod\":\"report-7\",\"container\":\"api\"}]",
                   "batch,shop");
        r |= image("staging", "node-s1", API ":1.4.2", API, "1.4.2", A1, INDEX, REV, "1011", "", "[]", "");
        /* pulled by digest: no tag to diverge */
        r |= image("prod", "node-a", CART "@" C1, CART, "", C1, MANIFEST, REV, "1011", "",
                   "[{\"namespace\":\"shop\",\"pod\":\"cart-0\",\"container\":\"cart\"}]", "shop");
        r |= image("prod", "node-b", CART "@" C2, CART, "", C2, MANIFEST, REV, "1011", "", "[]", "");
        /* the pin says E1, the node pulled K1 */
        r |= image("prod", "node-a", CART ":2.0.0", CART, "2.0.0", K1, MANIFEST, REV, "1010", "digest_mismatch",
                   "[{\"namespace\":\"shop\",\"pod\":\"cart-1\",\"container\":\"cart\"}]", "shop");
        /* a commit tag that lies */
        r |= image("prod", "node-b", WORKER ":3f2c1ab", WORKER, "3f2c1ab", V1, MANIFEST,
                   "0000000000000000000000000000000000000000", "1000", "revision_mismatch",
                   "[{\"namespace\":\"batch\",\"pod\":\"worker-0\",\"container\":\"worker\"}]", "batch");
        /* an index on one node, a platform manifest on the other */
        r |= image("staging", "node-s1", AGENT ":2.0", AGENT, "2.0", X1, INDEX, REV, "1011", "", "[]", "");
        r |= image("staging", "node-s2", AGENT ":2.0", AGENT, "2.0", X2, MANIFEST, REV, "1011", "", "[]", "");
        r |= image("staging", "node-s1", REDIS ":7.2.4", REDIS, "7.2.4", V2, INDEX, REV, "1011", "",
                   "[{\"namespace\":\"cache\",\"pod\":\"redis-0\",\"container\":\"redis\"}]", "cache");
        /* injection: a divergent reference, a pod and a namespace of markup */
        r |= image("prod", "node-a", EVIL_REF, EVIL_NAME, "1</title><b>x&amp;y", W1, MANIFEST, "", "0000",
                   "mutable_tag,untraceable",
                   "[{\"namespace\":\"" EVIL_NS "\",\"pod\":\"" EVIL_POD "\",\"container\":\"c\"}]", EVIL_NS);
        r |= image("prod", "node-b", EVIL_REF, EVIL_NAME, "1</title><b>x&amp;y", W2, MANIFEST, "", "0000",
                   "mutable_tag,untraceable", "[]", "");

        /* records: the week's moves, one too old, the critical findings, a plain pull */
        r |= record("m1", "tag_moved", "high", NOW - 2 * H, "prod", "node-c", WEB ":latest", WEB, "latest", W2, W1,
                    "", "", "shop", "web-1", "tag moved from W1 to W2");
        r |= record("m2", "tag_moved", "high", NOW - 3 * D, "prod", "node-a", WEB ":latest", WEB, "latest", W1, W0,
                    "", "", "", "", "tag moved from W0 to W1");
        r |= record("m3", "tag_moved", "high", NOW - 3 * D + H, "prod", "node-b", WEB ":latest", WEB, "latest", W1,
                    W0, "", "", "", "", "tag moved from W0 to W1");
        r |= record("m4", "tag_moved", "high", NOW - 10 * D, "prod", "node-a", WEB ":latest", WEB, "latest", W0, W2,
                    "", "", "", "", "older than the period");
        r |= record("d1", "digest_mismatch", "critical", NOW - H, "prod", "node-a", CART ":2.0.0", CART, "2.0.0", K1,
                    "", E1, REV, "shop", "cart-1", "pulled K1, CI pinned E1");
        r |= record("v1", "revision_mismatch", "high", NOW - 5 * H, "prod", "node-b", WORKER ":3f2c1ab", WORKER,
                    "3f2c1ab", V1, "", "", "0000000000000000000000000000000000000000", "batch", "worker-0",
                    "tag 3f2c1ab, revision 0000000");
        r |= record("p1", "pull", "info", NOW - H, "prod", "node-a", API ":1.4.2", API, "1.4.2", A1, "", "", REV, "",
                    "", "pull");
        /* node-b's pulls of web:latest: no pod history there, so --image reads what ran before from these */
        r |= record("p2", "pull", "info", NOW - 4 * D, "prod", "node-b", WEB ":latest", WEB, "latest", W0, "", "", "r0",
                    "", "", "pull");
        r |= record("p3", "pull", "info", NOW - 3 * D + H, "prod", "node-b", WEB ":latest", WEB, "latest", W1, "", "",
                    "", "", "", "pull");
        r |= record("x1", "tag_moved", "high", NOW - 4 * H, "prod", "node-b", EVIL_REF, EVIL_NAME,
                    "1</title><b>x&amp;y", W2, W1, "", "", EVIL_NS, EVIL_POD, "<script>alert(3)</script>");

        /* what ran where: web-0 ran W0 (revision r0) before W1; web-1 ran W1 before W2 */
        r |= history("prod", "node-a", "shop", "web-0", "web", WEB, WEB ":latest", W0, "r0", NOW - 5 * D, NOW - 3 * D);
        r |= history("prod", "node-a", "shop", "web-0", "web", WEB, WEB ":latest", W1, "", NOW - 3 * D, NOW - H);
        r |= history("prod", "node-c", "shop", "web-1", "web", WEB, WEB ":latest", W1, "r1", NOW - 3 * D, NOW - 2 * H);
        r |= history("prod", "node-c", "shop", "web-1", "web", WEB, WEB ":latest", W2, "", NOW - 2 * H, NOW - H);
        r |= history("prod", "node-a", "shop", "api-0", "api", API, API ":1.4.2", A1, REV, NOW - 4 * D, NOW - H);

        /* the trend: five days, two clusters, the shop namespace too */
        static const struct {
                const char *day;
                int prod, prod_ok, staging, staging_ok, shop, shop_ok;
        } days[] = {
                {"2026-11-26", 10, 2, 4, 4, 5, 1}, {"2026-11-27", 10, 3, 4, 4, 5, 2}, {"2026-11-28", 12, 4, 4, 3, 6, 2},
                {"2026-11-29", 12, 6, 4, 4, 6, 3}, {"2026-11-30", 12, 5, 4, 4, 6, 2},
                {"2026-10-01", 10, 0, 4, 0, 5, 0}, /* older than 30 days: not in the trend */
        };
        for (size_t i = 0; i < ELEMENTSOF(days); i++) {
                r |= rollup(days[i].day, "prod", "", days[i].prod, days[i].prod_ok);
                r |= rollup(days[i].day, "staging", "", days[i].staging, days[i].staging_ok);
                r |= rollup(days[i].day, "prod", "shop", days[i].shop, days[i].shop_ok);
        }
        return r ? -1 : 0;
}

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "usage: report_fixture sqlite:PATH|postgresql://…\n");
                return 2;
        }
        char err[512] = "";
        Store *s = NULL;
        if (store_open(&s, argv[1], err, sizeof err) < 0) {
                fprintf(stderr, "report_fixture: %s\n", err);
                return 1;
        }
        bool is_pg = store_engine(s) == STORE_POSTGRESQL;
        store_free(s);
        if (is_pg) {
                pg = PQconnectdb(argv[1]);
                if (PQstatus(pg) != CONNECTION_OK) {
                        fprintf(stderr, "report_fixture: %s", PQerrorMessage(pg));
                        return 1;
                }
        } else if (sqlite3_open(argv[1] + strlen("sqlite:"), &lite) != SQLITE_OK) {
                fprintf(stderr, "report_fixture: cannot open %s\n", argv[1]);
                return 1;
        }
        int r = exec("BEGIN", 0, NULL);
        if (r == 0)
                r = fill();
        /* SQLite: the records above state_applied are the collector's queue of node state
         * still to apply (store.h); the state here is made by hand: none is queued */
        if (r == 0 && !is_pg)
                r = exec("UPDATE state_applied SET applied_rowid = (SELECT MAX(rowid) FROM records)", 0, NULL);
        if (r == 0)
                r = exec("COMMIT", 0, NULL);
        if (pg)
                PQfinish(pg);
        if (lite)
                sqlite3_close(lite);
        return r == 0 ? 0 : 1;
}
