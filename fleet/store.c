/* The fleet store: one interface over SQLite and PostgreSQL (see store.h for the schema).
 *
 * Both engines run the same SQL text: placeholders are $1..$n (SQLite reads "$1" as a
 * named parameter, bound here by name), upserts are INSERT … ON CONFLICT … DO UPDATE
 * (SQLite ≥ 3.24), and every state change is a write that needs no read first, so that
 * on PostgreSQL a whole batch goes out in libpq's pipeline mode: one round trip per
 * few hundred statements instead of one per statement. State updates are idempotent and
 * ordered by record time (a replayed older record never reverts a newer state), so a
 * duplicate record may re-apply its update harmlessly; only the `records` insert needs
 * the id check, and ON CONFLICT (id) DO NOTHING does it. */
#include "pullwatch/store.h"

#include <assert.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <time.h>

#include "pullwatch/record.h"
#include "pullwatch/util.h"
#include "pullwatch/walbuf.h"

#define STORE_SCHEMA_VERSION 13
#define PG_MIGRATION_LOCK 0x70776174636800LL /* "pwatch": one collector migrates at a time */
#define PG_PIPELINE_CHUNK 256                /* statements queued before results are read */
#define NODE_CACHE_SIZE 4096                 /* node → cluster, unauthenticated collectors only */
#define NODE_CACHE_PROBE 8                   /* slots a node may take, from its hash on */

/* ------------------------------------------------------------------ schema ---- */

/* Migration 1: the schema of store.h. Text the same on both engines. */
static const char *const migration_1[] = {
        "CREATE TABLE records (id TEXT PRIMARY KEY, kind TEXT NOT NULL, severity TEXT NOT NULL,"
        " time_usec BIGINT NOT NULL, received_usec BIGINT NOT NULL, cluster TEXT NOT NULL, node TEXT NOT NULL,"
        " namespace TEXT NOT NULL, ref TEXT NOT NULL, name TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL,"
        " previous_digest TEXT NOT NULL, expected_digest TEXT NOT NULL, revision TEXT NOT NULL,"
        " media_type TEXT NOT NULL, k8s_namespace TEXT NOT NULL, pod TEXT NOT NULL, container TEXT NOT NULL,"
        " container_id TEXT NOT NULL, message TEXT NOT NULL)",
        "CREATE INDEX records_time ON records (time_usec)",
        "CREATE INDEX records_kind_time ON records (kind, time_usec)",
        "CREATE INDEX records_cluster_node ON records (cluster, node)",
        "CREATE INDEX records_name ON records (name)",
        "CREATE TABLE nodes (cluster TEXT NOT NULL, node TEXT NOT NULL, first_seen_usec BIGINT NOT NULL,"
        " last_seen_usec BIGINT NOT NULL, last_inventory_usec BIGINT NOT NULL DEFAULT 0,"
        " PRIMARY KEY (cluster, node))",
        "CREATE TABLE node_images (cluster TEXT NOT NULL, node TEXT NOT NULL, namespace TEXT NOT NULL,"
        " ref TEXT NOT NULL, name TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL,"
        " media_type TEXT NOT NULL, revision TEXT NOT NULL, pinned INTEGER NOT NULL, latest INTEGER NOT NULL,"
        " revision_verified INTEGER NOT NULL, compliant INTEGER NOT NULL, findings TEXT NOT NULL,"
        " pods TEXT NOT NULL, k8s_namespaces TEXT NOT NULL, updated_usec BIGINT NOT NULL,"
        " findings_mask INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (cluster, node, namespace, ref))",
        "CREATE INDEX node_images_ref ON node_images (ref)",
        "CREATE INDEX node_images_name ON node_images (name)",
        "CREATE INDEX node_images_digest ON node_images (digest)",
        "CREATE TABLE inventory_parts (cluster TEXT NOT NULL, node TEXT NOT NULL, snapshot TEXT NOT NULL,"
        " part INTEGER NOT NULL, parts INTEGER NOT NULL, time_usec BIGINT NOT NULL, images TEXT NOT NULL,"
        " received_usec BIGINT NOT NULL, PRIMARY KEY (cluster, node, snapshot, part))",
        "CREATE TABLE workload_history (cluster TEXT NOT NULL, node TEXT NOT NULL, k8s_namespace TEXT NOT NULL,"
        " pod TEXT NOT NULL, container TEXT NOT NULL, name TEXT NOT NULL, ref TEXT NOT NULL, digest TEXT NOT NULL,"
        " revision TEXT NOT NULL, first_seen_usec BIGINT NOT NULL, last_seen_usec BIGINT NOT NULL,"
        " PRIMARY KEY (cluster, node, k8s_namespace, pod, container, digest))",
        "CREATE INDEX workload_history_pod ON workload_history (k8s_namespace, pod)",
        "CREATE INDEX workload_history_name ON workload_history (name)",
        "CREATE TABLE daily_rollup (day TEXT NOT NULL, cluster TEXT NOT NULL, k8s_namespace TEXT NOT NULL,"
        " images INTEGER NOT NULL, compliant INTEGER NOT NULL, pinned INTEGER NOT NULL, latest INTEGER NOT NULL,"
        " revision_verified INTEGER NOT NULL, findings INTEGER NOT NULL, PRIMARY KEY (day, cluster, k8s_namespace))",
        NULL,
};

/* Migration 2: fewer indexes on `records`, each a B-tree every insert updates. The report
 * reads records by (kind, time) and by name (kind 'pull'); retention deletes by kind and
 * time through records_kind_time. Nothing reads by (cluster, node) or by time alone. */
static const char *const migration_2[] = {
        "DROP INDEX records_cluster_node",
        "DROP INDEX records_time",
        NULL,
};

/* Migration 3: node_images (digest) goes. No query reads by digest alone (the report reads
 * by ref and by name), and every pull of a new reference, every finding about one and every
 * image of a first inventory inserted into it: one random B-tree insert per row, and one
 * more dirty page per row at every commit (issue 9's ingest goals). */
static const char *const migration_3[] = {
        "DROP INDEX node_images_digest",
        NULL,
};

/* Migration 4: nodes (node). A collector without authentication takes a record's
 * cluster from the node's row when the record names none (S_NODE_CLUSTER, by node
 * alone): without this index every node not in the collector's cache scanned the whole
 * nodes table (at 1,000 nodes, 43 % of the writer's instructions for the bench's first
 * 10,000 records; at 10,000 nodes, past the 4,096-slot cache, on every record). The
 * column never changes, so the index costs one insert per new node. */
static const char *const migration_4[] = {
        "CREATE INDEX nodes_node ON nodes (node)",
        NULL,
};

/* Migration 5: records (name) holds pulls only. Its one reader (the report's --image,
 * "kind = 'pull' AND name = $1") names the kind, so a partial index serves it the same;
 * the findings (four of the bench's seven records) no longer each insert into it at a
 * random place (a random leaf page dirtied per record, and written at every commit). */
static const char *const migration_5[] = {
        "DROP INDEX records_name",
        "CREATE INDEX records_name ON records (name) WHERE kind = 'pull'",
        NULL,
};

/* Migration 6: workload_history (k8s_namespace, pod) becomes (k8s_namespace). Its one
 * reader (the report's --workload: "k8s_namespace = $1 AND (pod = $2 OR container = $2 OR
 * pod LIKE $2-…)") can use the namespace only — the OR with container stops a range on
 * pod — so the plan is the same. Entries of one namespace are then in row order, and a
 * new row (the largest rowid) goes to the end of its namespace's range: ~one hot page per
 * namespace instead of a random page per row of every inventory and pull (the last index
 * of the inventory path written in random order: store.c inv_flush orders the others).
 * IF EXISTS: the older-version tests rebuild only what their migration changed. */
static const char *const migration_6[] = {
        "DROP INDEX IF EXISTS workload_history_pod",
        "CREATE INDEX IF NOT EXISTS workload_history_namespace ON workload_history (k8s_namespace)",
        NULL,
};

/* Migration 7 (PostgreSQL only: "pg:" statements are skipped on SQLite, which has no
 * fillfactor): node_images and workload_history pages keep 30 % free. Every hourly
 * inventory updates every row of its node (updated_usec, last_seen_usec); with full pages
 * each new row version went to another page, so every index got a new entry too. With
 * room on the page PostgreSQL updates in place (HOT: no index entry) — 43 % of the next
 * hour's updates in the first hour after a fresh load, more as pages are pruned; the next
 * hour of 200,000 rows took 15.9 s, then 8.2-11.4 s (fleet_bench.py inventory 1000 200).
 * Pages written before the migration keep their fill until rewritten (VACUUM FULL). */
static const char *const migration_7[] = {
        "pg:ALTER TABLE node_images SET (fillfactor = 70)",
        "pg:ALTER TABLE workload_history SET (fillfactor = 70)",
        NULL,
};

/* Migration 8: the per-node state's secondary indexes lead with (cluster, node), like its
 * primary keys. node_images (ref), node_images (name) and workload_history (name) each
 * needed a global order that has nothing to do with arrival: every node's inventory put
 * its 200 entries on ~200 random leaf pages of indexes far larger than the 8 MiB page
 * cache, so the first inventory of 2M rows wrote 133 GB (66 KB per row, growing with the
 * table). Their readers (the report's divergent tags, --image) go node by node instead:
 * nodes joined to (cluster, node, name) — one short range per node (report_query.c). A
 * node's entries are contiguous in these indexes, so an inventory dirties a few pages
 * per node, as it does in the primary keys. */
static const char *const migration_8[] = {
        "DROP INDEX IF EXISTS node_images_ref",
        "DROP INDEX IF EXISTS node_images_name",
        "DROP INDEX IF EXISTS workload_history_name",
        "CREATE INDEX IF NOT EXISTS node_images_node_name ON node_images (cluster, node, name)",
        "CREATE INDEX IF NOT EXISTS workload_history_node_name ON workload_history (cluster, node, name)",
        NULL,
};

/* Migration 9: node_images.by_inventory. The hourly inventory mostly names every image
 * as it stands; PostgreSQL rewrote each row anyway (a new row version, WAL, a dead tuple
 * to vacuum) only to move updated_usec to the inventory's time. A row the inventory
 * names unchanged is now left alone when it was set by an inventory (by_inventory = 1):
 * its time is the node's last_inventory_usec (STORE_IMAGE_UPDATED_SQL, which every
 * reader and every late-pull condition uses). A pull sets it back to 0 with its own
 * time. SQLite keeps writing updated_usec (its rewrite is in place) and leaves it 0. */
static const char *const migration_9[] = {
        "ALTER TABLE node_images ADD COLUMN by_inventory INTEGER NOT NULL DEFAULT 0",
        NULL,
};

/* Migration 10: workload_history.by_inventory, as node_images' (migration 9): a pod the
 * node's inventories keep naming at the same digest and revision is not rewritten every
 * hour to move last_seen_usec on; while it is named by the node's last inventory, its
 * last seen time is that inventory's (STORE_WORKLOAD_LAST_SEEN_SQL). When an inventory no
 * longer names it, its last seen time is written out and by_inventory goes back to 0. */
static const char *const migration_10[] = {
        "ALTER TABLE workload_history ADD COLUMN by_inventory INTEGER NOT NULL DEFAULT 0",
        NULL,
};

/* Migration 11 (SQLite only: "sqlite:" statements are skipped on PostgreSQL): the
 * (cluster, node, name) indexes of migration 8 go. On the records path nearly every pull
 * and finding inserts a new node_images row and a new workload_history row, each a random
 * insert into these indexes as well as into the primary key's, and a commit writes every
 * page it dirtied to the WAL: they were 2 of the 6 B-trees a record inserts into at a
 * random place. Without them a collector taking 50,000 records
 * (tests/bench/records_ab_bench.sh) writes 0.23 GB instead of 0.56 and its writer takes
 * 35-60 % less CPU. Their readers (the report's look-ups by image name, report_query.c)
 * read each node's range of the primary key instead, (cluster, node) then the name
 * filtered: every row of the node, not the name's alone (the 200,000- and 2M-row
 * reports took about the same CPU either way: inventory_ab_bench.sh).
 * PostgreSQL kept both until migration 12. */
static const char *const migration_11[] = {
        "sqlite:DROP INDEX IF EXISTS node_images_node_name",
        "sqlite:DROP INDEX IF EXISTS workload_history_node_name",
        NULL,
};

/* Migration 12 (PostgreSQL only): migration 11's indexes go on PostgreSQL too. Of the
 * records path's B-tree work there, they were two of the three index entries of every
 * new node_images and workload_history row (most pulls and findings make one of each):
 * 10 % of the backend's instructions on the bench's records (callgrind, 10,000 records:
 * 3.18 → 2.85 G). Their one reader, the report's look-up by image name (report_query.c
 * query_image and the divergent tags' nodes), is planned without them as one hash join
 * over a parallel scan of the table: at 10,000 nodes × 200 images 317 ms where the
 * 10,000 range probes of node_images_node_name took 677 ms; at 1,000 nodes × 200, 78 ms
 * against 13 ms (EXPLAIN ANALYZE, load 4-8), the whole report --image 0.27 → 0.52 s. The
 * reports (json, --image, --workload) came out byte-identical. */
static const char *const migration_12[] = {
        "pg:DROP INDEX IF EXISTS node_images_node_name",
        "pg:DROP INDEX IF EXISTS workload_history_node_name",
        NULL,
};

/* Migration 13 (SQLite only): the records table becomes the queue of the node state
 * (node_images, workload_history) still to be derived from it. state_applied holds the
 * rowid up to which every pull and finding record's state is in those tables; the
 * records above it are applied later, in large sorted chunks (sq_apply), in the same
 * transaction that moves the mark. The records stored so far have had their state
 * applied at their commit: the mark starts at the last of them. (IF NOT EXISTS, OR IGNORE:
 * the older-version tests re-run the migrations after theirs on a current schema.) */
static const char *const migration_13[] = {
        "sqlite:CREATE TABLE IF NOT EXISTS state_applied (id INTEGER PRIMARY KEY CHECK (id = 1), applied_rowid INTEGER NOT NULL)",
        "sqlite:INSERT OR IGNORE INTO state_applied (id, applied_rowid) SELECT 1, COALESCE(MAX(rowid), 0) FROM records",
        NULL,
};

static const char *const *const migrations[STORE_SCHEMA_VERSION] = {
        migration_1, migration_2, migration_3,  migration_4,  migration_5,  migration_6, migration_7,
        migration_8, migration_9, migration_10, migration_11, migration_12, migration_13};

/* --------------------------------------------------------------- statements ---- */

/* The flags of a node_images row from its findings mask M (an SQL expression). The
 * findings text is the kinds sorted by name, as record_findings_text() writes it. */
#define FLAGS_FROM(M)                                                                                       \
        "pinned = CASE WHEN ((" M ") & 6) = 0 THEN 1 ELSE 0 END, "                                         \
        "latest = CASE WHEN ((" M ") & 2) <> 0 THEN 1 ELSE 0 END, "                                        \
        "revision_verified = CASE WHEN ((" M ") & 96) = 0 THEN 1 ELSE 0 END, "                             \
        "compliant = CASE WHEN ((" M ") & 126) = 0 THEN 1 ELSE 0 END, "                                    \
        "findings = ltrim("                                                                                \
        "CASE WHEN ((" M ") & 16) <> 0 THEN ',digest_mismatch' ELSE '' END || "                            \
        "CASE WHEN ((" M ") & 2) <> 0 THEN ',latest_tag' ELSE '' END || "                                  \
        "CASE WHEN ((" M ") & 4) <> 0 THEN ',mutable_tag' ELSE '' END || "                                 \
        "CASE WHEN ((" M ") & 32) <> 0 THEN ',revision_mismatch' ELSE '' END || "                          \
        "CASE WHEN ((" M ") & 8) <> 0 THEN ',tag_moved' ELSE '' END || "                                   \
        "CASE WHEN ((" M ") & 64) <> 0 THEN ',untraceable' ELSE '' END, ','), "                            \
        "findings_mask = (" M ")"

_Static_assert(FINDING_LATEST_TAG == 1 && FINDING_MUTABLE_TAG == 2 && FINDING_TAG_MOVED == 3 &&
                       FINDING_DIGEST_MISMATCH == 4 && FINDING_REVISION_MISMATCH == 5 && FINDING_UNTRACEABLE == 6,
               "the SQL flag expressions hard-code the bits of the finding kinds");

typedef enum StmtId {
        S_RECORD_INSERT,
        S_NODE_TOUCH,
        S_PULL_UPSERT,
        S_FINDING_UPSERT,
        S_WORKLOAD_UPSERT,
        S_INVENTORY_IMAGE,
        S_NODE_NEWER_INVENTORY,
        S_INVENTORY_CHANGED,
        S_INVENTORY_DELETE,
        S_NODE_INVENTORY,
        S_PART_INSERT,
        S_PART_SELECT,
        S_PART_DELETE,
        S_NODE_CLUSTER,
        S_RECORD_INSERT_MANY,
        S_INVENTORY_IMAGES_MANY,
        S_WORKLOAD_MANY,
        S_NODE_TOUCH_MANY,
        S_PULL_MANY,
        S_FINDING_MANY,
        S_WORKLOAD_TIMED_MANY,
        S_INVENTORY_DELETE_MANY,
        S_WORKLOAD_UNNAMED,
        S_NODES_FRESH,
        /* SQLite only (never prepared on PostgreSQL): the state queue, migration 13 */
        S_SQ_RECORD_INSERT,
        S_SQ_APPLIED,
        S_SQ_PENDING_IMAGES,
        S_SQ_PENDING_WORKLOADS,
        S_SQ_APPLIED_SET,
        _S_MAX,
} StmtId;
#define S_SQLITE_ONLY S_SQ_RECORD_INSERT /* this id and the ones after it */

/* What a pull does to its node_images row, per record (SQLite) and per batch (PostgreSQL). */
#define PULL_UPSERT_SET \
        " name = excluded.name, tag = excluded.tag, media_type = CASE WHEN" \
        " excluded.media_type <> '' THEN excluded.media_type WHEN node_images.digest =" \
        " excluded.digest THEN node_images.media_type ELSE '' END, revision = CASE WHEN" \
        " excluded.revision <> '' THEN excluded.revision WHEN node_images.digest =" \
        " excluded.digest THEN node_images.revision ELSE '' END, pods = CASE WHEN" \
        " node_images.digest = excluded.digest THEN node_images.pods ELSE '[]' END," \
        " k8s_namespaces = CASE WHEN node_images.digest = excluded.digest THEN" \
        " node_images.k8s_namespaces ELSE '' END, updated_usec = excluded.updated_usec, " \
        FLAGS_FROM("CASE WHEN node_images.digest = excluded.digest THEN node_images.findings_mask" \
        " ELSE 0 END") ", digest = excluded.digest"
/* PostgreSQL: the inventory at $3 is the node's latest ($1, $2: cluster, node): every
 * statement of a complete inventory writes only then */
#define INVENTORY_LATEST_PG \
        "NOT EXISTS (SELECT 1 FROM nodes n WHERE n.cluster = $1::text AND n.node = $2::text AND" \
        " n.last_inventory_usec > $3::bigint)"
/* PostgreSQL: a pull not older than the row's time (by_inventory: the node's last inventory's) */
#define PULL_UPSERT_WHERE_PG " WHERE excluded.updated_usec >= " STORE_IMAGE_UPDATED_SQL("node_images")

static const struct {
        const char *sql;
        unsigned nparams;
} stmts[_S_MAX] = {
        [S_RECORD_INSERT] = {"INSERT INTO records (id, kind, severity, time_usec, received_usec, cluster, node,"
                             " namespace, ref, name, tag, digest, previous_digest, expected_digest, revision,"
                             " media_type, k8s_namespace, pod, container, container_id, message) VALUES ($1, $2,"
                             " $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,"
                             " $21) ON CONFLICT (id) DO NOTHING",
                             21},
        [S_NODE_TOUCH] = {"INSERT INTO nodes (cluster, node, first_seen_usec, last_seen_usec, last_inventory_usec)"
                          " VALUES ($1, $2, $3, $3, 0) ON CONFLICT (cluster, node) DO UPDATE SET last_seen_usec ="
                          " CASE WHEN excluded.last_seen_usec > nodes.last_seen_usec THEN excluded.last_seen_usec"
                          " ELSE nodes.last_seen_usec END",
                          3},
        /* A pull sets the reference's digest at once. A new digest starts with no finding
         * (the pull's findings follow it); the same digest again keeps what stands. */
        [S_PULL_UPSERT] = {"INSERT INTO node_images (cluster, node, namespace, ref, name, tag, digest, media_type,"
                           " revision, pinned, latest, revision_verified, compliant, findings, pods, k8s_namespaces,"
                           " updated_usec, findings_mask) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, 0, 1, 1,"
                           " '', '[]', '', $10, 0) ON CONFLICT (cluster, node, namespace, ref) DO UPDATE SET"
                           PULL_UPSERT_SET " WHERE excluded.updated_usec >= node_images.updated_usec",
                           10},
        /* A finding: a reference the store has no row for yet (pulled before the collector
         * knew the node) gets one at the finding's digest with its flags ($11..$16, from
         * record_image_*() of the finding's bit); a row at that digest adds the bit to its
         * mask; a row at another digest (the tag moved since) is left alone. */
        [S_FINDING_UPSERT] = {"INSERT INTO node_images (cluster, node, namespace, ref, name, tag, digest,"
                              " media_type, revision, pinned, latest, revision_verified, compliant, findings, pods,"
                              " k8s_namespaces, updated_usec, findings_mask) VALUES ($1, $2, $3, $4, $5, $6, $7, $8,"
                              " $9, $11, $12, $13, $14, $15, '[]', '', $10, $16) ON CONFLICT (cluster, node,"
                              " namespace, ref) DO UPDATE SET " FLAGS_FROM("node_images.findings_mask |"
                              " excluded.findings_mask") " WHERE node_images.digest = excluded.digest",
                              16},
        [S_WORKLOAD_UPSERT] = {"INSERT INTO workload_history (cluster, node, k8s_namespace, pod, container, name,"
                               " ref, digest, revision, first_seen_usec, last_seen_usec) VALUES ($1, $2, $3, $4, $5,"
                               " $6, $7, $8, $9, $10, $10) ON CONFLICT (cluster, node, k8s_namespace, pod,"
                               " container, digest) DO UPDATE SET last_seen_usec = CASE WHEN"
                               " excluded.last_seen_usec > workload_history.last_seen_usec THEN"
                               " excluded.last_seen_usec ELSE workload_history.last_seen_usec END,"
                               " first_seen_usec = CASE WHEN excluded.first_seen_usec <"
                               " workload_history.first_seen_usec THEN excluded.first_seen_usec ELSE"
                               " workload_history.first_seen_usec END, revision = CASE WHEN excluded.revision <> ''"
                               " THEN excluded.revision ELSE workload_history.revision END",
                               10},
        /* A complete inventory taken at $17 replaces what the node reported before: every
         * image is upserted, then what it did not name (older than $17) is deleted; a pull
         * recorded after it stays. An inventory older than the node's last one (a replay)
         * changes nothing. The hourly inventory mostly repeats the last one: the upsert
         * then rewrites no indexed column (SQLite rewrites an index entry whenever its
         * column is assigned, same value or not), and S_INVENTORY_CHANGED handles the
         * references whose digest or name did change.
         * The guard "no newer inventory of the node" is read once per inventory
         * (S_NODE_NEWER_INVENTORY: nothing changes it before S_NODE_INVENTORY), so the
         * upsert is an INSERT … VALUES: one row, for which SQLite needs no statement
         * journal (as an INSERT … SELECT carrying the guard, it copied every page it
         * touched into one first: ~20 % of the writer's instructions on inventories). */
        [S_INVENTORY_IMAGE] = {"INSERT INTO node_images (cluster, node, namespace, ref, name, tag, digest,"
                               " media_type, revision, pinned, latest, revision_verified, compliant, findings,"
                               " pods, k8s_namespaces, updated_usec, findings_mask) VALUES (CAST($1 AS TEXT),"
                               " CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS TEXT), CAST($5 AS TEXT), CAST($6"
                               " AS TEXT), CAST($7 AS TEXT), CAST($8 AS TEXT), CAST($9 AS TEXT), CAST($10 AS"
                               " INTEGER), CAST($11 AS INTEGER), CAST($12 AS INTEGER), CAST($13 AS INTEGER),"
                               " CAST($14 AS TEXT), CAST($15 AS TEXT), CAST($16 AS TEXT), CAST($17 AS BIGINT),"
                               " CAST($18 AS INTEGER)) ON CONFLICT (cluster, node, namespace, ref) DO UPDATE SET"
                               " tag = excluded.tag, media_type = excluded.media_type, revision ="
                               " excluded.revision, pinned = excluded.pinned, latest = excluded.latest,"
                               " revision_verified = excluded.revision_verified, compliant = excluded.compliant,"
                               " findings = excluded.findings, pods = excluded.pods, k8s_namespaces ="
                               " excluded.k8s_namespaces, updated_usec = excluded.updated_usec, findings_mask ="
                               " excluded.findings_mask WHERE excluded.updated_usec >= node_images.updated_usec"
                               " AND node_images.digest = excluded.digest AND node_images.name = excluded.name",
                               18},
        [S_NODE_NEWER_INVENTORY] = {"SELECT 1 FROM nodes WHERE cluster = $1 AND node = $2 AND last_inventory_usec >"
                                    " $3",
                                    3},
        [S_INVENTORY_CHANGED] = {"UPDATE node_images SET name = CAST($5 AS TEXT), tag = CAST($6 AS TEXT), digest ="
                                 " CAST($7 AS TEXT), media_type = CAST($8 AS TEXT), revision = CAST($9 AS TEXT),"
                                 " pinned = CAST($10 AS INTEGER), latest = CAST($11 AS INTEGER), revision_verified ="
                                 " CAST($12 AS INTEGER), compliant = CAST($13 AS INTEGER), findings = CAST($14 AS"
                                 " TEXT), pods = CAST($15 AS TEXT), k8s_namespaces = CAST($16 AS TEXT),"
                                 " updated_usec = CAST($17 AS BIGINT), findings_mask = CAST($18 AS INTEGER)"
                                 " WHERE cluster = CAST($1 AS TEXT) AND node = CAST($2 AS TEXT) AND namespace ="
                                 " CAST($3 AS TEXT) AND ref = CAST($4 AS TEXT) AND updated_usec <= CAST($17 AS"
                                 " BIGINT) AND (digest <> CAST($7 AS TEXT) OR name <> CAST($5 AS TEXT)) AND NOT"
                                 " EXISTS (SELECT 1 FROM nodes n WHERE n.cluster = CAST($1 AS TEXT) AND n.node ="
                                 " CAST($2 AS TEXT) AND n.last_inventory_usec > CAST($17 AS BIGINT))",
                                 18},
        [S_INVENTORY_DELETE] = {"DELETE FROM node_images WHERE cluster = $1 AND node = $2 AND updated_usec < $3"
                                " AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.cluster = $1 AND n.node = $2 AND"
                                " n.last_inventory_usec > $3)",
                                3},
        [S_NODE_INVENTORY] = {"UPDATE nodes SET last_inventory_usec = $3 WHERE cluster = $1 AND node = $2 AND"
                              " last_inventory_usec <= $3",
                              3},
        [S_PART_INSERT] = {"INSERT INTO inventory_parts (cluster, node, snapshot, part, parts, time_usec, images,"
                           " received_usec) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (cluster, node,"
                           " snapshot, part) DO NOTHING",
                           8},
        [S_PART_SELECT] = {"SELECT part, parts, images FROM inventory_parts WHERE cluster = $1 AND node = $2 AND"
                           " snapshot = $3 ORDER BY part",
                           3},
        [S_PART_DELETE] = {"DELETE FROM inventory_parts WHERE cluster = $1 AND node = $2 AND snapshot = $3", 3},
        /* PostgreSQL: a batch's records as one statement, each column an array literal
         * (arrays_add); a duplicate id, within the batch too, is skipped. The arrays are
         * unnested in the select list (a ProjectSet: a row at a time, in order), as are the
         * state statements' below: unnest() in FROM is a function scan, which first copies
         * every row into a tuplestore — 8.8 % of the backend's instructions on the bench's
         * records (callgrind, 10,000 records: 3.18 → 2.90 G). */
        [S_RECORD_INSERT_MANY] = {"INSERT INTO records (id, kind, severity, time_usec, received_usec, cluster, node,"
                                  " namespace, ref, name, tag, digest, previous_digest, expected_digest, revision,"
                                  " media_type, k8s_namespace, pod, container, container_id, message) SELECT"
                                  " unnest($1::text[]), unnest($2::text[]), unnest($3::text[]), unnest($4::bigint[]),"
                                  " unnest($5::bigint[]), unnest($6::text[]), unnest($7::text[]), unnest($8::text[]),"
                                  " unnest($9::text[]), unnest($10::text[]), unnest($11::text[]), unnest($12::text[]),"
                                  " unnest($13::text[]), unnest($14::text[]), unnest($15::text[]), unnest($16::text[]),"
                                  " unnest($17::text[]), unnest($18::text[]), unnest($19::text[]), unnest($20::text[]),"
                                  " unnest($21::text[]) ON CONFLICT (id) DO NOTHING",
                                  21},
        [S_NODE_CLUSTER] = {"SELECT cluster FROM nodes WHERE node = $1 AND cluster <> '' ORDER BY last_seen_usec"
                            " DESC LIMIT 1",
                            1},
        /* PostgreSQL: a complete inventory's images as one statement, each column an array
         * ($1 cluster, $2 node, $3 time): S_INVENTORY_IMAGE and S_INVENTORY_CHANGED in one
         * (together they update every column when the row is not newer than the inventory).
         * A reference listed twice: the last one wins, as it did one statement at a time.
         * A row that an inventory set and that this one names unchanged is left as it is
         * (migration 9): its time moves on with the node's last_inventory_usec. */
        [S_INVENTORY_IMAGES_MANY] = {"INSERT INTO node_images (cluster, node, namespace, ref, name, tag, digest,"
                                     " media_type, revision, pinned, latest, revision_verified, compliant, findings,"
                                     " pods, k8s_namespaces, updated_usec, findings_mask, by_inventory) SELECT"
                                     " $1::text, $2::text, d.ns, d.ref, d.name, d.tag, d.digest, d.mt, d.rev,"
                                     " d.pinned, d.latest, d.verified, d.compliant, d.findings, d.pods, d.k8sns,"
                                     " $3::bigint, d.mask, 1 FROM (SELECT DISTINCT ON (u.ns, u.ref) u.* FROM"
                                     " unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],"
                                     " $10::text[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[],"
                                     " $15::text[], $16::text[], $17::text[], $18::bigint[]) WITH ORDINALITY AS u(ns, ref, name, tag,"
                                     " digest, mt, rev, pinned, latest, verified, compliant, findings, pods, k8sns,"
                                     " mask, ord) ORDER BY u.ns, u.ref, u.ord DESC) AS d WHERE " INVENTORY_LATEST_PG
                                     " AND NOT EXISTS (SELECT 1 FROM node_images"
                                     " x WHERE x.cluster = $1::text AND x.node = $2::text AND x.namespace = d.ns AND"
                                     " x.ref = d.ref AND x.by_inventory = 1 AND x.name = d.name AND x.tag = d.tag AND"
                                     " x.digest = d.digest AND x.media_type = d.mt AND x.revision = d.rev AND"
                                     " x.pinned = d.pinned AND x.latest = d.latest AND x.revision_verified ="
                                     " d.verified AND x.compliant = d.compliant AND x.findings = d.findings AND"
                                     " x.pods = d.pods AND x.k8s_namespaces = d.k8sns AND x.findings_mask = d.mask)"
                                     " ON CONFLICT (cluster, node, namespace, ref) DO UPDATE SET name ="
                                     " excluded.name, tag = excluded.tag, digest = excluded.digest, media_type ="
                                     " excluded.media_type, revision = excluded.revision, pinned = excluded.pinned,"
                                     " latest = excluded.latest, revision_verified = excluded.revision_verified,"
                                     " compliant = excluded.compliant, findings = excluded.findings, pods ="
                                     " excluded.pods, k8s_namespaces = excluded.k8s_namespaces, updated_usec ="
                                     " excluded.updated_usec, findings_mask = excluded.findings_mask, by_inventory = 1"
                                     " WHERE excluded.updated_usec >= " STORE_IMAGE_UPDATED_SQL("node_images"),
                                     18},
        /* PostgreSQL: what the inventory ($4 namespaces, $5 references) did not name and
         * was set before it goes (S_INVENTORY_DELETE, with the rows it left alone named
         * rather than timed). NOT IN: a hashed subplan (NOT EXISTS over the arrays was a
         * nested loop, rows × names string comparisons: 5 ms a node). The row's own time
         * first (never later than what readers see): the rows just written pass on it. */
        [S_INVENTORY_DELETE_MANY] = {"DELETE FROM node_images i WHERE i.cluster = $1::text AND i.node = $2::text AND"
                                     " i.updated_usec < $3::bigint AND " STORE_IMAGE_UPDATED_SQL("i") " < $3::bigint AND " INVENTORY_LATEST_PG
                                     " AND (i.namespace, i.ref) NOT IN (SELECT * FROM unnest($4::text[],"
                                     " $5::text[]))",
                                     5},
        /* PostgreSQL: S_WORKLOAD_UPSERT for many pods at one time $3, each key once
         * (apply_inventory_pg merges a key listed twice as one statement at a time did:
         * name and ref of the first, the revision of the last that has one). From the
         * node's latest inventory (no newer one): the rows it names get by_inventory = 1,
         * and one that has it already, at this revision and seen first no later, is left
         * alone (migration 10). NOT IN: two hashed subplans over the node's rows (as an
         * EXISTS, a nested loop of rows × rows or an index range scan per row). */
        [S_WORKLOAD_MANY] = {"INSERT INTO workload_history (cluster, node, k8s_namespace, pod, container, name, ref,"
                             " digest, revision, first_seen_usec, last_seen_usec, by_inventory) SELECT $1::text,"
                             " $2::text, u.k, u.p, u.c, u.name, u.ref, u.d, u.rev, $3::bigint, $3::bigint, CASE WHEN"
                             " " INVENTORY_LATEST_PG " THEN 1 ELSE 0 END FROM unnest($4::text[], $5::text[], $6::text[],"
                             " $7::text[], $8::text[], $9::text[], $10::text[]) AS u(k, p, c, name, ref, d, rev) WHERE"
                             " CASE WHEN u.rev = '' THEN (u.k, u.p, u.c, u.d) NOT IN (SELECT x.k8s_namespace, x.pod,"
                             " x.container, x.digest FROM workload_history x WHERE x.cluster = $1::text AND x.node ="
                             " $2::text AND x.by_inventory = 1 AND x.first_seen_usec <= $3::bigint AND "
                             INVENTORY_LATEST_PG ") ELSE (u.k, u.p, u.c, u.d, u.rev) NOT IN (SELECT x.k8s_namespace,"
                             " x.pod, x.container, x.digest, x.revision FROM workload_history x WHERE x.cluster ="
                             " $1::text AND x.node = $2::text AND x.by_inventory = 1 AND x.first_seen_usec <="
                             " $3::bigint AND " INVENTORY_LATEST_PG ") END ON CONFLICT (cluster, node,"
                             " k8s_namespace, pod, container, digest) DO UPDATE SET last_seen_usec = CASE WHEN"
                             " excluded.last_seen_usec > workload_history.last_seen_usec THEN"
                             " excluded.last_seen_usec ELSE workload_history.last_seen_usec END, first_seen_usec ="
                             " CASE WHEN excluded.first_seen_usec < workload_history.first_seen_usec THEN"
                             " excluded.first_seen_usec ELSE workload_history.first_seen_usec END, revision = CASE"
                             " WHEN excluded.revision <> '' THEN excluded.revision ELSE workload_history.revision END,"
                             " by_inventory = CASE WHEN excluded.by_inventory = 1 THEN 1 ELSE"
                             " workload_history.by_inventory END",
                             10},
        /* PostgreSQL: before the node's latest inventory ($3) becomes its last, the rows the
         * last one named and this one does not ($4..$7: namespace, pod, container, digest)
         * get their last seen time written out (the last inventory's) and by_inventory 0.
         * A node's first inventory has none (its rows just written are skipped unread). */
        [S_WORKLOAD_UNNAMED] = {"UPDATE workload_history w SET last_seen_usec = " STORE_WORKLOAD_LAST_SEEN_SQL("w")
                                ", by_inventory = 0 WHERE w.cluster = $1::text AND w.node = $2::text AND"
                                " w.by_inventory = 1 AND " INVENTORY_LATEST_PG " AND EXISTS (SELECT 1 FROM nodes n"
                                " WHERE n.cluster = $1::text AND n.node = $2::text AND n.last_inventory_usec > 0)"
                                " AND (w.k8s_namespace, w.pod,"
                                " w.container, w.digest) NOT IN (SELECT * FROM unnest($4::text[], $5::text[],"
                                " $6::text[], $7::text[]))",
                                7},
        /* PostgreSQL, a batch's state changes of pull and finding records, one statement
         * per kind of change, each column an array (see state_add for when one is sent
         * early so that the result is that of one statement per record, in order). */
        [S_NODE_TOUCH_MANY] = {"INSERT INTO nodes (cluster, node, first_seen_usec, last_seen_usec,"
                               " last_inventory_usec) SELECT DISTINCT u.c, u.n, $3::bigint, $3::bigint, 0::bigint"
                               " FROM (SELECT unnest($1::text[]) AS c, unnest($2::text[]) AS n) AS u ORDER BY 1, 2"
                               " ON CONFLICT (cluster, node) DO UPDATE SET last_seen_usec = CASE WHEN"
                               " excluded.last_seen_usec > nodes.last_seen_usec THEN excluded.last_seen_usec ELSE"
                               " nodes.last_seen_usec END",
                               3},
        [S_PULL_MANY] = {"INSERT INTO node_images (cluster, node, namespace, ref, name, tag, digest, media_type,"
                         " revision, pinned, latest, revision_verified, compliant, findings, pods, k8s_namespaces,"
                         " updated_usec, findings_mask) SELECT u.c, u.n, u.ns, u.ref, u.name, u.tag, u.d, u.mt, u.rev,"
                         " 1, 0, 1, 1, '', '[]', '', u.t, 0 FROM (SELECT unnest($1::text[]) AS c, unnest($2::text[])"
                         " AS n, unnest($3::text[]) AS ns, unnest($4::text[]) AS ref, unnest($5::text[]) AS name,"
                         " unnest($6::text[]) AS tag, unnest($7::text[]) AS d, unnest($8::text[]) AS mt,"
                         " unnest($9::text[]) AS rev, unnest($10::bigint[]) AS t) AS u ON CONFLICT (cluster, node,"
                         " namespace, ref) DO UPDATE SET by_inventory = 0," PULL_UPSERT_SET PULL_UPSERT_WHERE_PG,
                         10},
        [S_FINDING_MANY] = {"INSERT INTO node_images (cluster, node, namespace, ref, name, tag, digest,"
                            " media_type, revision, pinned, latest, revision_verified, compliant, findings, pods,"
                            " k8s_namespaces, updated_usec, findings_mask) SELECT u.c, u.n, u.ns, u.ref, u.name,"
                            " u.tag, u.d, u.mt, u.rev, u.pinned, u.latest, u.verified, u.compliant, u.findings, '[]',"
                            " '', u.t, u.m FROM (SELECT unnest($1::text[]) AS c, unnest($2::text[]) AS n,"
                            " unnest($3::text[]) AS ns, unnest($4::text[]) AS ref, unnest($5::text[]) AS name,"
                            " unnest($6::text[]) AS tag, unnest($7::text[]) AS d, unnest($8::text[]) AS mt,"
                            " unnest($9::text[]) AS rev, unnest($10::bigint[]) AS t, unnest($11::bigint[]) AS"
                            " pinned, unnest($12::bigint[]) AS latest, unnest($13::bigint[]) AS verified,"
                            " unnest($14::bigint[]) AS compliant, unnest($15::text[]) AS findings,"
                            " unnest($16::bigint[]) AS m) AS u ON CONFLICT"
                            " (cluster, node, namespace, ref) DO UPDATE SET " FLAGS_FROM("node_images.findings_mask |"
                            " excluded.findings_mask") " WHERE node_images.digest = excluded.digest",
                            16},
        [S_WORKLOAD_TIMED_MANY] = {"INSERT INTO workload_history (cluster, node, k8s_namespace, pod, container, name,"
                                   " ref, digest, revision, first_seen_usec, last_seen_usec) SELECT u.c, u.n, u.k, u.p,"
                                   " u.ct, u.name, u.ref, u.d, u.rev, u.t, u.t FROM (SELECT unnest($1::text[]) AS c,"
                                   " unnest($2::text[]) AS n, unnest($3::text[]) AS k, unnest($4::text[]) AS p,"
                                   " unnest($5::text[]) AS ct, unnest($6::text[]) AS name, unnest($7::text[]) AS ref,"
                                   " unnest($8::text[]) AS d, unnest($9::text[]) AS rev, unnest($10::bigint[]) AS t)"
                                   " AS u ON CONFLICT (cluster, node, k8s_namespace, pod, container, digest) DO UPDATE"
                                   " SET last_seen_usec = CASE WHEN excluded.last_seen_usec >"
                                   " workload_history.last_seen_usec THEN excluded.last_seen_usec ELSE"
                                   " workload_history.last_seen_usec END, first_seen_usec = CASE WHEN"
                                   " excluded.first_seen_usec < workload_history.first_seen_usec THEN"
                                   " excluded.first_seen_usec ELSE workload_history.first_seen_usec END, revision ="
                                   " CASE WHEN excluded.revision <> '' THEN excluded.revision ELSE"
                                   " workload_history.revision END",
                                   10},
        /* PostgreSQL: which of the nodes ($1 clusters, $2 nodes) are fresh — no complete
         * inventory yet and no row in node_images or workload_history — so that their
         * inventory can be COPYed in (see apply_inventory_copy; every writer of a node's
         * rows holds its nodes row locked from the touch to its commit, so what this
         * statement reads after the touch holds until the commit). */
        [S_NODES_FRESH] = {"SELECT u.c, u.n FROM unnest($1::text[], $2::text[]) AS u(c, n) WHERE NOT EXISTS"
                           " (SELECT 1 FROM nodes x WHERE x.cluster = u.c AND x.node = u.n AND"
                           " x.last_inventory_usec <> 0) AND NOT EXISTS (SELECT 1 FROM node_images i WHERE"
                           " i.cluster = u.c AND i.node = u.n) AND NOT EXISTS (SELECT 1 FROM workload_history w"
                           " WHERE w.cluster = u.c AND w.node = u.n)",
                           2},
        /* S_RECORD_INSERT with the rowid given ($22): the records of a group go in by id
         * (sq_flush), their rowids in order of arrival, above every rowid used before —
         * the state queue's order (S_SQ_PENDING) is the order the records came in */
        [S_SQ_RECORD_INSERT] = {"INSERT INTO records (rowid, id, kind, severity, time_usec, received_usec, cluster,"
                                " node, namespace, ref, name, tag, digest, previous_digest, expected_digest, revision,"
                                " media_type, k8s_namespace, pod, container, container_id, message) VALUES ($22, $1,"
                                " $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,"
                                " $20, $21) ON CONFLICT (id) DO NOTHING",
                                22},
        /* the mark, and the last rowid used (records' rowids only grow: S_SQ_RECORD_INSERT
         * starts above both, so retention emptying the table cannot bring one back under
         * the mark) */
        [S_SQ_APPLIED] = {"SELECT applied_rowid, (SELECT COALESCE(MAX(rowid), 0) FROM records) FROM state_applied", 0},
        /* the records of a rowid range whose state has a node_images row, in its key order
         * (same key: in order of arrival), and those with a workload_history row, in its:
         * what sq_flush's sorts give (sq_cmp_image, sq_cmp_workload), sorted by SQLite */
        [S_SQ_PENDING_IMAGES] = {"SELECT rowid, kind, time_usec, cluster, node, namespace, ref, name, tag, digest,"
                                 " previous_digest, revision, media_type, k8s_namespace, pod, container FROM records"
                                 " WHERE rowid > $1 AND rowid <= $2 AND (kind = 'pull' OR ref <> '')"
                                 " ORDER BY cluster, node, namespace, ref, rowid",
                                 2},
        [S_SQ_PENDING_WORKLOADS] = {"SELECT rowid, kind, time_usec, cluster, node, namespace, ref, name, tag, digest,"
                                    " previous_digest, revision, media_type, k8s_namespace, pod, container FROM"
                                    " records WHERE rowid > $1 AND rowid <= $2 AND kind <> 'pull' AND ref <> '' AND"
                                    " (pod <> '' OR container <> '') ORDER BY cluster, node, k8s_namespace, pod,"
                                    " container, CASE WHEN kind = 'tag_moved' AND previous_digest <> '' THEN"
                                    " previous_digest ELSE digest END, rowid",
                                    2},
        [S_SQ_APPLIED_SET] = {"UPDATE state_applied SET applied_rowid = $1", 1},
};

/* A bound value: text, or an integer (bound natively on SQLite, as decimal text on PG),
 * or (PG) len bytes of a value in PostgreSQL's binary format (the column arrays). sized:
 * len is s's length in bytes (a binary value always; SQLite binds a sized text as is,
 * without strlen()). */
typedef struct Val {
        const char *s;
        int64_t i;
        bool is_int;
        bool binary;
        bool sized;
        size_t len;
} Val;
#define T(x) ((Val){.s = (x)})
#define I(x) ((Val){.i = (int64_t) (x), .is_int = true})

/* A PostgreSQL statement sent in pipeline mode whose result is not read yet. */
typedef struct Pending {
        size_t *affected; /* add the command's row count here, or NULL */
        store_row_t row;  /* rows go here, or NULL */
        void *userdata;
} Pending;

typedef struct NodeCacheEntry {
        char node[PW_NODE_MAX];
        char cluster[RECORD_CLUSTER_MAX];
} NodeCacheEntry;

#define REC_COLUMNS 21
#define REC_ARRAY_ROWS 1000 /* records per multi-row statement (PostgreSQL) */
#define ARRAYS_COLUMNS_MAX 21

/* PostgreSQL: rows not sent yet, one array per column in PostgreSQL's binary format: a
 * 20-byte header, then each element's length (-1: NULL) and bytes, big-endian (read by
 * array_recv; integers as int8). The text form ("{"a","b"}") costs the server more than
 * the binary one: array_in scans every element character by character, twice (~1,000
 * instructions an element, 15 % of the backend's on the bench's records). */
#define ARRAY_HEADER 20
typedef struct ColArrays {
        char *col[ARRAYS_COLUMNS_MAX];
        size_t len[ARRAYS_COLUMNS_MAX], alloc[ARRAYS_COLUMNS_MAX];
        size_t rows;
        bool has_null[ARRAYS_COLUMNS_MAX], is_int[ARRAYS_COLUMNS_MAX];
} ColArrays;

/* PostgreSQL: the state changes of pull and finding records waiting to go out as one
 * statement each. keys: hashes of the node_images keys (cluster, node, namespace, ref)
 * the pulls and the findings name, and of the workload_history keys, 0 = free slot (a
 * collision only sends the arrays early). */
#define STATE_KEYS 4096 /* > 2 × REC_ARRAY_ROWS: the sets stay sparse */
typedef struct StateArrays {
        ColArrays touch, pull, finding, workload;
        uint64_t pull_keys[STATE_KEYS], finding_keys[STATE_KEYS], workload_keys[STATE_KEYS];
} StateArrays;

/* PostgreSQL: rows for COPY … FROM STDIN (text format), one line each; sent when the
 * two buffers hold more than COPY_FLUSH_BYTES, else at the end of the transaction's
 * requests (and before anything that reads or writes the same rows). */
#define COPY_FLUSH_BYTES (2U << 20)
typedef struct CopyRows {
        char *buf;
        size_t len, alloc, rows;
} CopyRows;

/* PostgreSQL: a node that one store_ingest_add() call has an inventory for; fresh: the
 * node had no inventory and no rows when S_NODES_FRESH read it; changed: a record of this
 * call has changed its rows since the touch (then it is not fresh, whenever S_NODES_FRESH's
 * answer is read: a record before the call's first inventory comes before that read).
 * Pointers into the call's records and clusters. */
typedef struct FreshNode {
        const char *cluster, *node;
        bool fresh, changed;
} FreshNode;

/* One request of a transaction: its cluster, its time, its counts. */
typedef struct IngestRequest {
        bool has_cluster;
        char cluster[RECORD_CLUSTER_MAX];
        uint64_t received_usec;
        StoreIngestResult res; /* .inventories */
        size_t inserted;       /* finding records inserted (PG: summed at each sync, so the
                                * slot must stay put until the commit: an array, not a list) */
        size_t findings, parts;
} IngestRequest;

/* The (cluster, node) pairs one request has touched already: a node's row is touched
 * once per request, not once per record (the touch sets last_seen_usec to the request's
 * time, so a second one in the same request changes nothing). Keyed by two independent
 * 64-bit hashes of the pair (a false "seen" needs both to collide: 2^-128); slots are
 * not reused within a request, and past 3/4 full a pair not found is simply touched. */
#define TOUCHED_SLOTS 2048
typedef struct Touched {
        uint64_t h1[TOUCHED_SLOTS], h2[TOUCHED_SLOTS];
        size_t n;
} Touched;

/* One transaction, from store_ingest_begin to store_ingest_end (the lock is held in
 * between): STORE_GROUP_MAX requests at most, started by begin and each _next. */
/* SQLite: a request's complete inventories, applied together at the end of the request
 * (or before anything else that reads or writes the same rows), each table's rows in the
 * order of its random secondary indexes (see inv_flush). Pointers into the request's
 * records, which outlive the flush; the cluster and node strings likewise. */
typedef struct InvNode {
        const char *cluster, *node;
        uint64_t time_usec;
        bool newer; /* the node has a newer inventory: its images stay */
} InvNode;

typedef struct InvRow {
        const InventoryImage *im;
        const InventoryPod *pod; /* workload rows: the pod; image rows: NULL */
        uint32_t node;           /* index in InvPending.nodes */
        uint32_t seq;            /* order of arrival: same-key rows keep it */
} InvRow;

typedef struct InvPending {
        InvNode *nodes;
        size_t n_nodes, alloc_nodes;
        InvRow *images, *pods;
        size_t n_images, alloc_images, n_pods, alloc_pods;
} InvPending;

/* SQLite: a group's writes of pull and finding records (records, node_images,
 * workload_history rows), applied together by sq_flush, each table's in key order. The
 * values are copies (the records they came from are a writer's chunk, reused). */
typedef enum SqTable { SQ_RECORDS, SQ_IMAGES, SQ_WORKLOADS, _SQ_MAX } SqTable;

typedef struct SqRow {
        StmtId id;
        uint32_t seq;      /* order of arrival: same-key rows keep it */
        size_t *affected;  /* the request's inserted count (records), or NULL */
        const Val *v;      /* stmts[id].nparams values, in the arena */
} SqRow;

typedef struct SqBlock {
        struct SqBlock *next;
        size_t used, size;
        max_align_t data[];
} SqBlock;

typedef struct SqPending {
        SqRow *rows[_SQ_MAX];
        size_t n[_SQ_MAX], alloc[_SQ_MAX];
        uint32_t seq;
        SqBlock *blocks; /* the newest first */
} SqPending;

static void sq_reset(SqPending *p);
static int state_sync_locked(Store *s, char *err, size_t errlen);

typedef struct IngestState {
        bool active;
        size_t n_req;
        IngestRequest req[STORE_GROUP_MAX];
        int error;
} IngestState;

struct Store {
        StoreEngine engine;
        pthread_mutex_t lock;
        char name[512];

        sqlite3 *db;
        int page_size;       /* bytes */
        int wal_frames;      /* frames in the WAL after the last commit (sqlite_wal_hook) */
        int ckpt_frames;     /* store_checkpoint() copies the WAL back from this many on */
        int ckpt_frames_max; /* and a commit itself from this many */
        sqlite3_stmt *stmt[_S_MAX];
        int pidx[_S_MAX][24]; /* SQLite parameter index of $1..$n */

        PGconn *pg;
        char *conninfo;
        bool prepared[_S_MAX];
        Pending *pending;
        size_t n_pending, alloc_pending;
        bool pipeline;
        char pg_error[512]; /* the first error met while reading pipeline results */
        int pg_errno;

        NodeCacheEntry *node_cache; /* NODE_CACHE_SIZE slots, by hash of the node name */
        IngestState ing;            /* the batch between store_ingest_begin and _end */
        ColArrays rec_arrays;       /* PostgreSQL: records of the batch not sent yet */
        ColArrays inv_images, inv_pods; /* PostgreSQL: one inventory's images and their pods */
        InvRow *inv_pod_rows;           /* PostgreSQL: one inventory's pods, sorted by key */
        size_t alloc_inv_pod_rows;
        InvRow *inv_image_rows;         /* PostgreSQL: one fresh node's images, sorted by key */
        size_t alloc_inv_image_rows;
        CopyRows copy_images, copy_pods; /* PostgreSQL: fresh nodes' rows not COPYed yet */
        FreshNode *fresh;               /* PostgreSQL: the nodes of this call's inventories */
        size_t n_fresh, alloc_fresh;
        bool fresh_unread;              /* S_NODES_FRESH is queued, its rows not read yet */
        ColArrays fresh_query;
        uint64_t *inv_known;            /* PostgreSQL: nodes given an inventory (see inv_known_add) */
        size_t n_inv_known;
        StateArrays state;              /* PostgreSQL: state changes of the batch not sent yet */
        Touched *touched;               /* nodes the current request touched (lazily allocated) */
        InvPending inv;                 /* SQLite: the request's inventory writes not applied yet */
        SqPending sq;                   /* SQLite: the group's record writes not applied yet */
        _Atomic size_t state_pending;   /* SQLite: records above the state mark, as last read */
        bool state_defer;               /* SQLite: this transaction may leave the state queued */
};

StoreEngine store_engine(const Store *s) {
        return s->engine;
}

void store_set_checkpoint_bytes(Store *s, size_t bytes) {
        if (s->engine != STORE_SQLITE || s->page_size <= 0)
                return;
        size_t frames = bytes / (size_t) s->page_size;
        if (frames < 1)
                frames = 1;
        if (frames > INT_MAX / STORE_CHECKPOINT_HARD_FACTOR)
                frames = INT_MAX / STORE_CHECKPOINT_HARD_FACTOR;
        s->ckpt_frames = (int) frames;
        s->ckpt_frames_max = (int) frames * STORE_CHECKPOINT_HARD_FACTOR;
}

void store_set_lock_timeout(Store *s, unsigned msec) {
        if (s->engine == STORE_SQLITE && s->db)
                sqlite3_busy_timeout(s->db, (int) msec);
}

const char *store_name(const Store *s) {
        return s->name;
}

/* One printable line from a library's message (PostgreSQL's end in "\n", some have two lines). */
static int fail_db(Store *s, char *err, size_t errlen, int error, const char *what, const char *msg) {
        char line[512];
        snprintf(line, sizeof line, "%s", msg ? msg : "unknown error");
        char *nl = strchr(line, '\n');
        if (nl)
                *nl = 0;
        return errbuf_fail(err, errlen, error, "%s: %s: %s", s->name, what, line);
}

/* ------------------------------------------------------------------ SQLite ---- */

static int sqlite_errno(int rc) {
        switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_CANTOPEN:
        case SQLITE_NOTADB:
                return -ENOTCONN;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_IOERR:
                return -ENOTCONN; /* the file went away or its disk failed: "try later" */
        case SQLITE_NOMEM:
                return -ENOMEM;
        default:
                return -EIO;
        }
}

static int sqlite_exec(Store *s, const char *sql, char *err, size_t errlen) {
        char *msg = NULL;
        int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
        if (rc != SQLITE_OK) {
                int r = fail_db(s, err, errlen, sqlite_errno(rc), sql, msg ? msg : sqlite3_errmsg(s->db));
                sqlite3_free(msg);
                return r;
        }
        return 0;
}

/* Bind $1..$n by name: "$1" is a named parameter to SQLite, numbered in order of first use. */
static int sqlite_bind(Store *s, sqlite3_stmt *st, const int *idx, const Val *v, size_t n) {
        for (size_t i = 0; i < n; i++) {
                int rc;
                if (idx[i] <= 0)
                        continue; /* not used by this statement's text */
                if (v[i].is_int)
                        rc = sqlite3_bind_int64(st, idx[i], v[i].i);
                else if (v[i].s)
                        rc = sqlite3_bind_text(st, idx[i], v[i].s, v[i].sized ? (int) v[i].len : -1, SQLITE_STATIC);
                else
                        rc = sqlite3_bind_null(st, idx[i]);
                if (rc != SQLITE_OK)
                        return sqlite_errno(rc);
        }
        return 0;
}

static int sqlite_param_index(sqlite3_stmt *st, size_t n, int *idx) {
        for (size_t i = 0; i < n; i++) {
                char name[16];
                snprintf(name, sizeof name, "$%zu", i + 1);
                idx[i] = sqlite3_bind_parameter_index(st, name);
        }
        return 0;
}

/* Run a statement; rows (if any) to row(). Returns the changes count in *affected. */
static int sqlite_run(Store *s, sqlite3_stmt *st, const int *idx, const Val *v, size_t n, store_row_t row,
                      void *userdata, size_t *affected, char *err, size_t errlen) {
        int r = sqlite_bind(s, st, idx, v, n);
        if (r < 0) {
                sqlite3_reset(st);
                return fail_db(s, err, errlen, r, "bind", sqlite3_errmsg(s->db));
        }
        for (;;) {
                int rc = sqlite3_step(st);
                if (rc == SQLITE_DONE)
                        break;
                if (rc != SQLITE_ROW) {
                        r = fail_db(s, err, errlen, sqlite_errno(rc), "query", sqlite3_errmsg(s->db));
                        sqlite3_reset(st);
                        sqlite3_clear_bindings(st);
                        return r;
                }
                if (!row)
                        continue;
                size_t nc = (size_t) sqlite3_column_count(st);
                const char *vals[64];
                if (nc > ELEMENTSOF(vals)) {
                        sqlite3_reset(st);
                        return errbuf_fail(err, errlen, -E2BIG, "%s: query returns more than 64 columns", s->name);
                }
                for (size_t c = 0; c < nc; c++)
                        vals[c] = (const char *) sqlite3_column_text(st, (int) c);
                r = row(userdata, nc, vals);
                if (r != 0) {
                        sqlite3_reset(st);
                        sqlite3_clear_bindings(st);
                        if (r < 0)
                                return errbuf_fail(err, errlen, r, "%s: row callback: %s", s->name, strerror(-r));
                        return 0;
                }
        }
        if (affected)
                *affected += (size_t) sqlite3_changes(s->db);
        /* no sqlite3_clear_bindings(): every run binds each parameter its statement uses
         * before it steps, and clearing them (a loop over the values) cost the records
         * path ~10 % of its rate (records_ab_bench.sh, A/B at load 7-9) */
        sqlite3_reset(st);
        return 0;
}

/* Process-wide, before SQLite initialises: no memory statistics. With them on (the
 * default) every one of SQLite's allocations (~90 per inventory row stored) takes and
 * releases a global mutex to count bytes that nothing here reads. Ignored (SQLITE_MISUSE)
 * if SQLite was initialised already. */
static void sqlite_global_config(void) {
        (void) sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* After each commit (SQLite calls it with the WAL's frame count; it replaces
 * wal_autocheckpoint): note the size for store_checkpoint(), and past the hard bound
 * checkpoint here, as wal_autocheckpoint did, so that the log stays bounded without it. */
static int sqlite_wal_hook(void *userdata, sqlite3 *db, const char *dbname, int frames) {
        Store *s = userdata;
        s->wal_frames = frames;
        if (frames >= s->ckpt_frames_max &&
            sqlite3_wal_checkpoint_v2(db, dbname, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL) == SQLITE_OK)
                s->wal_frames = 0;
        return SQLITE_OK;
}

static int sqlite_open(Store *s, const char *path, char *err, size_t errlen) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        (void) pthread_once(&once, sqlite_global_config);
        snprintf(s->name, sizeof s->name, "sqlite:%s", path);
        /* the WAL's frames written 7 at a time instead of two pwrite()s each (walbuf.h);
         * without the VFS (none registered), SQLite's default */
        int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 walbuf_register() >= 0 ? WALBUF_VFS_NAME : NULL);
        if (rc != SQLITE_OK)
                return fail_db(s, err, errlen, -ENOTCONN, "cannot open", s->db ? sqlite3_errmsg(s->db) : "");
        sqlite3_busy_timeout(s->db, STORE_LOCK_TIMEOUT_MSEC);
        /* WAL: readers (the report) never block the writer. synchronous=FULL: a 2xx is an
         * fsync'ed commit, as the agent deletes its copy on 2xx (NORMAL could lose the last
         * commits on power loss; the cost is one fsync per batch). */
        /* 16 KiB pages for a new database (an existing one keeps its size: WAL mode cannot
         * change it). Every batch inserts at random places of the id index and of
         * node_images' indexes, so a commit writes as many WAL frames as it touched pages,
         * each its own pwrite(), and reads back as many evicted ones: with 16 KiB pages the
         * trees are a level shallower and a 1,000-record batch makes a quarter of the
         * syscalls of 4 KiB pages (17,900 vs 72,600 writes for 20,000 records) for 10 %
         * fewer bytes; 32 and 64 KiB write more bytes again (tests/bench/fleet_bench.sh). */
        int r = sqlite_exec(s, "PRAGMA page_size=16384", err, errlen);
        if (r >= 0)
                r = sqlite_exec(s, "PRAGMA journal_mode=WAL", err, errlen);
        if (r >= 0)
                r = sqlite_exec(s, "PRAGMA synchronous=FULL", err, errlen);
        if (r >= 0)
                r = sqlite_exec(s, "PRAGMA foreign_keys=OFF", err, errlen);
        /* 8 MiB of page cache (default 2 MiB): a batch touches pages of records' five
         * indexes and node_images' four; with the default most of them were re-read from
         * the WAL by pread() on every batch (40 % of the collector's CPU in the kernel). */
        if (r >= 0)
                r = sqlite_exec(s, "PRAGMA cache_size=-8192", err, errlen);
        /* sorts and temporary b-trees (none on the ingest path, some in the report) in memory */
        if (r >= 0)
                r = sqlite_exec(s, "PRAGMA temp_store=MEMORY", err, errlen);
        /* checkpoint every 64 MiB of WAL (default 4 MiB): a hot index page rewritten by many
         * batches is copied back to the database file, and fsync'ed, once per checkpoint,
         * not once per batch. A 1,000-record commit writes ~20 MB of frames, so at 16 MiB
         * every commit also checkpointed (two fsyncs per request, 104 for 50,000 records:
         * 1.4 s); at 64 MiB a checkpoint holds ~4 commits (58 fsyncs, 1.0 s) and writes
         * 12 % fewer bytes (1.07 -> 0.94 GB, fleet_bench.py records, 50,000). The WAL file
         * keeps the size of the largest transaction either way (an inventory batch: more).
         * Not inside the commit (wal_autocheckpoint): store_checkpoint(), which the
         * collector calls after the answers; sqlite_wal_hook only notes the log's size
         * (and checkpoints itself past the hard bound, if nobody calls it). */
        if (r >= 0) {
                s->page_size = 4096;
                sqlite3_stmt *st = NULL;
                if (sqlite3_prepare_v2(s->db, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
                    sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) > 0)
                        s->page_size = sqlite3_column_int(st, 0);
                sqlite3_finalize(st);
                store_set_checkpoint_bytes(s, STORE_CHECKPOINT_BYTES);
                (void) sqlite3_wal_hook(s->db, sqlite_wal_hook, s); /* replaces wal_autocheckpoint */
        }
        return r;
}

int store_checkpoint(Store *s, char *err, size_t errlen) {
        if (!s)
                return -EINVAL;
        if (s->engine != STORE_SQLITE)
                return 0;
        pthread_mutex_lock(&s->lock);
        int r = 0;
        if (s->db && s->wal_frames >= s->ckpt_frames && sqlite3_get_autocommit(s->db)) {
                int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
                if (rc == SQLITE_OK) {
                        s->wal_frames = 0; /* the next commit restarts the log (unless a reader holds it) */
                        r = 1;
                } else if ((rc & 0xff) != SQLITE_BUSY) /* busy: another checkpoint; the next call retries */
                        r = fail_db(s, err, errlen, sqlite_errno(rc), "checkpoint", sqlite3_errmsg(s->db));
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

static int sqlite_prepare(Store *s, StmtId id, char *err, size_t errlen) {
        if (s->stmt[id])
                return 0;
        int rc = sqlite3_prepare_v3(s->db, stmts[id].sql, -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[id], NULL);
        if (rc != SQLITE_OK)
                return fail_db(s, err, errlen, sqlite_errno(rc), "prepare", sqlite3_errmsg(s->db));
        return sqlite_param_index(s->stmt[id], stmts[id].nparams, s->pidx[id]);
}

/* -------------------------------------------------------------- PostgreSQL ---- */

static void pg_notice(void *arg, const char *message) {
        /* CREATE … IF NOT EXISTS and the like: nothing an operator needs on stderr */
}

static bool pg_connection_lost(Store *s) {
        return !s->pg || PQstatus(s->pg) != CONNECTION_OK;
}

/* Reconnect if the connection broke; prepared statements are per connection. */
static int pg_ensure(Store *s, char *err, size_t errlen) {
        if (!pg_connection_lost(s))
                return 0;
        if (s->pg)
                PQreset(s->pg);
        else
                s->pg = PQconnectdb(s->conninfo);
        memset(s->prepared, 0, sizeof s->prepared);
        s->pipeline = false;
        s->n_pending = 0;
        if (!s->pg)
                return errbuf_fail(err, errlen, -ENOMEM, "%s: out of memory", s->name);
        if (PQstatus(s->pg) != CONNECTION_OK)
                return fail_db(s, err, errlen, -ENOTCONN, "cannot connect", PQerrorMessage(s->pg));
        PQsetNoticeProcessor(s->pg, pg_notice, NULL);
        return 0;
}

static int pg_result_errno(Store *s, const PGresult *res) {
        if (pg_connection_lost(s))
                return -ENOTCONN;
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        if (state && (startswith(state, "08") || startswith(state, "57P") || startswith(state, "53")))
                return -ENOTCONN; /* connection exception, operator intervention, insufficient resources */
        if (state && (streq_ptr(state, "40001") || streq_ptr(state, "40P01") || streq_ptr(state, "55P03")))
                return -EBUSY; /* serialization failure, deadlock, lock not available: retry */
        return -EIO;
}

/* What a failed result says, or the connection's message when it says nothing (res may
 * be NULL). */
static const char *pg_result_message(Store *s, const PGresult *res) {
        const char *m = res ? PQresultErrorMessage(res) : NULL;
        return m && m[0] ? m : PQerrorMessage(s->pg);
}

/* Rows of one result to row(); *stop gets its first non-zero return. */
static int pg_rows(Store *s, const PGresult *res, store_row_t row, void *userdata, int *stop, char *err,
                   size_t errlen) {
        size_t nc = (size_t) PQnfields(res);
        const char *vals[64];
        if (nc > ELEMENTSOF(vals))
                return errbuf_fail(err, errlen, -E2BIG, "%s: query returns more than 64 columns", s->name);
        for (int t = 0; t < PQntuples(res) && *stop == 0; t++) {
                for (size_t c = 0; c < nc; c++)
                        vals[c] = PQgetisnull(res, t, (int) c) ? NULL : PQgetvalue(res, t, (int) c);
                *stop = row(userdata, nc, vals);
        }
        return 0;
}

/* Every result of what was sent is read, after an error or a stop too: the connection is
 * then idle. Rows go to row() (when given) until it stops (*stop: its first non-zero
 * return); r is the error so far, kept; a result that failed, or the connection lost,
 * fails as `what`. */
static int pg_drain(Store *s, int r, const char *what, store_row_t row, void *userdata, int *stop, char *err,
                    size_t errlen) {
        PGresult *res;
        while ((res = PQgetResult(s->pg))) {
                ExecStatusType st = PQresultStatus(res);
                if (st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK) {
                        if (row && r >= 0 && *stop == 0)
                                r = pg_rows(s, res, row, userdata, stop, err, errlen);
                } else if (st != PGRES_COMMAND_OK && r >= 0)
                        r = fail_db(s, err, errlen, pg_result_errno(s, res), what, pg_result_message(s, res));
                PQclear(res);
                if (pg_connection_lost(s))
                        break;
        }
        if (r >= 0 && pg_connection_lost(s))
                r = fail_db(s, err, errlen, -ENOTCONN, what, PQerrorMessage(s->pg));
        return r;
}

/* Plain (non-pipeline) command; rows to row(), one at a time as they arrive (libpq's
 * single-row mode: a report's result is never held whole — 2M node_images rows for the
 * CSV, ~485,000 for ~970 divergent tags took 212 MiB that way). */
static int pg_exec_params(Store *s, const char *sql, size_t n, const char *const *params, store_row_t row,
                          void *userdata, char *err, size_t errlen) {
        int r = pg_ensure(s, err, errlen);
        if (r < 0)
                return r;
        if (PQsendQueryParams(s->pg, sql, (int) n, NULL, params, NULL, NULL, 0) != 1)
                return fail_db(s, err, errlen, pg_connection_lost(s) ? -ENOTCONN : -EIO, "query",
                               PQerrorMessage(s->pg));
        if (row)
                (void) PQsetSingleRowMode(s->pg); /* else the whole result at once: the same rows */
        int stop = 0;
        r = pg_drain(s, r, "query", row, userdata, &stop, err, errlen);
        if (r < 0)
                return r;
        if (stop < 0)
                return errbuf_fail(err, errlen, stop, "%s: row callback: %s", s->name, strerror(-stop));
        return 0;
}

static int pg_exec(Store *s, const char *sql, char *err, size_t errlen) {
        return pg_exec_params(s, sql, 0, NULL, NULL, NULL, err, errlen);
}

static int pg_prepare(Store *s, StmtId id, char *err, size_t errlen) {
        if (s->prepared[id])
                return 0;
        char name[16];
        snprintf(name, sizeof name, "pw%d", (int) id);
        PGresult *res = PQprepare(s->pg, name, stmts[id].sql, (int) stmts[id].nparams, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                int r = fail_db(s, err, errlen, pg_result_errno(s, res), "prepare",
                                res ? PQresultErrorMessage(res) : PQerrorMessage(s->pg));
                PQclear(res);
                return r;
        }
        PQclear(res);
        s->prepared[id] = true;
        return 0;
}

static void pg_note_error(Store *s, int error, const char *msg) {
        if (s->pg_errno < 0)
                return; /* keep the first: the rest are "pipeline aborted" */
        s->pg_errno = error;
        snprintf(s->pg_error, sizeof s->pg_error, "%s", msg ? msg : "unknown error");
        char *nl = strchr(s->pg_error, '\n');
        if (nl)
                *nl = 0;
}

static void pg_take_result(Store *s, const Pending *p, PGresult *res) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_ABORTED) {
                pg_note_error(s, -EIO, "pipeline aborted");
                return;
        }
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                pg_note_error(s, pg_result_errno(s, res), pg_result_message(s, res));
                return;
        }
        if (p->affected)
                *p->affected += (size_t) strtoull(PQcmdTuples(res), NULL, 10);
        if (!p->row || st != PGRES_TUPLES_OK)
                return;
        size_t nc = (size_t) PQnfields(res);
        const char *vals[64];
        if (nc > ELEMENTSOF(vals)) {
                pg_note_error(s, -E2BIG, "query returns more than 64 columns");
                return;
        }
        for (int t = 0; t < PQntuples(res); t++) {
                for (size_t c = 0; c < nc; c++)
                        vals[c] = PQgetisnull(res, t, (int) c) ? NULL : PQgetvalue(res, t, (int) c);
                int r = p->row(p->userdata, nc, vals);
                if (r < 0)
                        pg_note_error(s, r, strerror(-r));
                if (r != 0)
                        break;
        }
}

/* Send a sync and read every pending result up to it. */
static int pg_sync(Store *s, char *err, size_t errlen) {
        if (!s->pipeline)
                return 0;
        if (PQpipelineSync(s->pg) != 1)
                pg_note_error(s, -ENOTCONN, PQerrorMessage(s->pg));
        else {
                for (size_t i = 0; i < s->n_pending && !pg_connection_lost(s); i++) {
                        PGresult *res;
                        while ((res = PQgetResult(s->pg))) {
                                pg_take_result(s, &s->pending[i], res);
                                PQclear(res);
                        }
                }
                /* then the sync marker itself */
                while (!pg_connection_lost(s)) {
                        PGresult *res = PQgetResult(s->pg);
                        if (!res)
                                continue;
                        ExecStatusType st = PQresultStatus(res);
                        PQclear(res);
                        if (st == PGRES_PIPELINE_SYNC)
                                break;
                }
        }
        if (pg_connection_lost(s))
                pg_note_error(s, -ENOTCONN, PQerrorMessage(s->pg));
        s->n_pending = 0;
        if (s->pg_errno < 0) {
                int r = pg_connection_lost(s) ? -ENOTCONN : s->pg_errno;
                return errbuf_fail(err, errlen, r, "%s: %s", s->name, s->pg_error);
        }
        return 0;
}

static int pg_queue(Store *s, StmtId id, const Val *v, size_t n, size_t *affected, store_row_t row, void *userdata,
                    char *err, size_t errlen) {
        char nums[24][24];
        const char *params[24];
        int lengths[24], formats[24];
        if (n > ELEMENTSOF(params))
                return errbuf_fail(err, errlen, -E2BIG, "%s: too many parameters", s->name);
        for (size_t i = 0; i < n; i++) {
                formats[i] = v[i].binary;
                lengths[i] = 0;
                if (v[i].binary) {
                        if (v[i].len > INT_MAX)
                                return errbuf_fail(err, errlen, -E2BIG, "%s: parameter over 2 GiB", s->name);
                        params[i] = v[i].s;
                        lengths[i] = (int) v[i].len;
                } else if (v[i].is_int) {
                        snprintf(nums[i], sizeof nums[i], "%" PRId64, v[i].i);
                        params[i] = nums[i];
                } else
                        params[i] = v[i].s;
        }
        int r = greedy_realloc((void **) &s->pending, &s->alloc_pending, s->n_pending + 1, sizeof *s->pending, 64);
        if (r < 0)
                return errbuf_fail(err, errlen, r, "%s: out of memory", s->name);
        char name[16];
        snprintf(name, sizeof name, "pw%d", (int) id);
        if (PQsendQueryPrepared(s->pg, name, (int) n, params, lengths, formats, 0) != 1) {
                pg_note_error(s, pg_connection_lost(s) ? -ENOTCONN : -EIO, PQerrorMessage(s->pg));
                return pg_sync(s, err, errlen);
        }
        s->pending[s->n_pending++] = (Pending){.affected = affected, .row = row, .userdata = userdata};
        if (s->n_pending >= PG_PIPELINE_CHUNK)
                return pg_sync(s, err, errlen);
        return 0;
}

static int pg_open(Store *s, const char *url, char *err, size_t errlen) {
        /* a database host that drops packets must not hang the writer for minutes on a
         * reconnect: 10 s unless the URL or the environment says otherwise */
        (void) setenv("PGCONNECT_TIMEOUT", "10", 0);
        s->conninfo = strdup(url);
        if (!s->conninfo)
                return -ENOMEM;
        s->pg = PQconnectdb(url);
        if (!s->pg)
                return errbuf_fail(err, errlen, -ENOMEM, "postgresql: out of memory");
        const char *host = PQhost(s->pg), *port = PQport(s->pg), *db = PQdb(s->pg);
        snprintf(s->name, sizeof s->name, "postgresql://%s%s%s/%s", host && host[0] != '/' ? host : "localhost",
                 port && port[0] ? ":" : "", port ? port : "", db ? db : "");
        if (PQstatus(s->pg) != CONNECTION_OK)
                return fail_db(s, err, errlen, -ENOTCONN, "cannot connect", PQerrorMessage(s->pg));
        PQsetNoticeProcessor(s->pg, pg_notice, NULL);
        return 0;
}

/* ------------------------------------------------------ engine-neutral core ---- */

static int db_exec_sql(Store *s, const char *sql, char *err, size_t errlen) {
        return s->engine == STORE_SQLITE ? sqlite_exec(s, sql, err, errlen) : pg_exec(s, sql, err, errlen);
}

/* Queue (PG) or run (SQLite) a write; *affected gets its row count (PG: at the next sync). */
static int db_write(Store *s, StmtId id, const Val *v, size_t n, size_t *affected, char *err, size_t errlen) {
        if (s->engine == STORE_SQLITE) {
                assert(n == stmts[id].nparams); /* each parameter bound every run (sqlite_run) */
                int r = sqlite_prepare(s, id, err, errlen);
                if (r < 0)
                        return r;
                return sqlite_run(s, s->stmt[id], s->pidx[id], v, n, NULL, NULL, affected, err, errlen);
        }
        return pg_queue(s, id, v, n, affected, NULL, NULL, err, errlen);
}

/* A read inside a write transaction: everything queued before it is executed first. */
static int db_read(Store *s, StmtId id, const Val *v, size_t n, store_row_t row, void *userdata, char *err,
                   size_t errlen) {
        if (s->engine == STORE_SQLITE) {
                assert(n == stmts[id].nparams); /* each parameter bound every run (sqlite_run) */
                int r = sqlite_prepare(s, id, err, errlen);
                if (r < 0)
                        return r;
                return sqlite_run(s, s->stmt[id], s->pidx[id], v, n, row, userdata, NULL, err, errlen);
        }
        int r = pg_queue(s, id, v, n, NULL, row, userdata, err, errlen);
        if (r < 0)
                return r;
        return pg_sync(s, err, errlen);
}

static int db_begin(Store *s, char *err, size_t errlen) {
        if (s->engine == STORE_SQLITE)
                return sqlite_exec(s, "BEGIN IMMEDIATE", err, errlen);
        int r = pg_ensure(s, err, errlen);
        if (r < 0)
                return r;
        for (int id = 0; id < S_SQLITE_ONLY; id++) {
                r = pg_prepare(s, (StmtId) id, err, errlen);
                if (r < 0)
                        return r;
        }
        if (PQenterPipelineMode(s->pg) != 1)
                return fail_db(s, err, errlen, -EIO, "pipeline mode", PQerrorMessage(s->pg));
        s->pipeline = true;
        s->pg_errno = 0;
        s->pg_error[0] = 0;
        s->n_pending = 0;
        if (PQsendQueryParams(s->pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) != 1) {
                pg_note_error(s, -ENOTCONN, PQerrorMessage(s->pg));
                return pg_sync(s, err, errlen);
        }
        r = greedy_realloc((void **) &s->pending, &s->alloc_pending, 1, sizeof *s->pending, 64);
        if (r < 0)
                return errbuf_fail(err, errlen, r, "%s: out of memory", s->name);
        s->pending[s->n_pending++] = (Pending){};
        return 0;
}

static void pg_leave_pipeline(Store *s) {
        if (s->pipeline && s->pg && !pg_connection_lost(s))
                (void) PQexitPipelineMode(s->pg);
        s->pipeline = false;
}

static int db_commit(Store *s, char *err, size_t errlen) {
        if (s->engine == STORE_SQLITE)
                return sqlite_exec(s, "COMMIT", err, errlen);
        int r = 0;
        if (PQsendQueryParams(s->pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) != 1)
                pg_note_error(s, -ENOTCONN, PQerrorMessage(s->pg));
        else {
                r = greedy_realloc((void **) &s->pending, &s->alloc_pending, s->n_pending + 1, sizeof *s->pending, 64);
                if (r >= 0)
                        s->pending[s->n_pending++] = (Pending){};
        }
        r = pg_sync(s, err, errlen);
        pg_leave_pipeline(s);
        return r;
}

static void db_rollback(Store *s) {
        if (s->engine == STORE_SQLITE) {
                if (!sqlite3_get_autocommit(s->db))
                        (void) sqlite_exec(s, "ROLLBACK", NULL, 0);
                return;
        }
        if (s->pipeline && !pg_connection_lost(s)) {
                (void) pg_sync(s, NULL, 0); /* drain what is queued; errors already reported */
                pg_leave_pipeline(s);
        }
        s->pipeline = false;
        s->n_pending = 0;
        if (!pg_connection_lost(s) && PQtransactionStatus(s->pg) != PQTRANS_IDLE)
                (void) pg_exec(s, "ROLLBACK", NULL, 0);
}

/* ------------------------------------------------------------------ open ---- */

typedef struct VersionCtx {
        long version;
} VersionCtx;

static int version_row(void *userdata, size_t ncols, const char *const *values) {
        VersionCtx *c = userdata;
        c->version = ncols > 0 && values[0] ? strtol(values[0], NULL, 10) : 0;
        return 1;
}

static int db_query_plain(Store *s, const char *sql, store_row_t row, void *userdata, char *err, size_t errlen) {
        if (s->engine == STORE_POSTGRESQL)
                return pg_exec_params(s, sql, 0, NULL, row, userdata, err, errlen);
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return fail_db(s, err, errlen, sqlite_errno(rc), "prepare", sqlite3_errmsg(s->db));
        int r = sqlite_run(s, st, NULL, NULL, 0, row, userdata, NULL, err, errlen);
        sqlite3_finalize(st);
        return r;
}

static int migrate(Store *s, char *err, size_t errlen) {
        int r;
        if (s->engine == STORE_POSTGRESQL) {
                char sql[128];
                snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%lld)", (long long) PG_MIGRATION_LOCK);
                r = pg_exec(s, sql, err, errlen);
                if (r < 0)
                        return r;
        }
        r = db_exec_sql(s,
                        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                        " applied_usec BIGINT NOT NULL)",
                        err, errlen);
        VersionCtx v = {0};
        if (r >= 0)
                r = db_query_plain(s, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", version_row, &v, err,
                                   errlen);
        if (r >= 0 && v.version > STORE_SCHEMA_VERSION)
                r = errbuf_fail(err, errlen, -EPROTONOSUPPORT,
                                "%s: schema version %ld is newer than this collector's (%d)", s->name, v.version,
                                STORE_SCHEMA_VERSION);
        /* SQLite: a migration's CREATE INDEX sorts the whole table; with temp_store=MEMORY
         * (sqlite_open) the sort is held in memory, growing with the table (migration 8 on
         * 200,000 rows: 48 MiB peak RSS, against 25 MiB with this), so while migrating,
         * sorts spill to temporary files as SQLite's do by default. */
        bool spill = s->engine == STORE_SQLITE && r >= 0 && v.version < STORE_SCHEMA_VERSION;
        if (spill)
                r = sqlite_exec(s, "PRAGMA temp_store=FILE", err, errlen);
        for (long ver = v.version + 1; r >= 0 && ver <= STORE_SCHEMA_VERSION; ver++) {
                r = db_exec_sql(s, s->engine == STORE_SQLITE ? "BEGIN IMMEDIATE" : "BEGIN", err, errlen);
                for (const char *const *q = migrations[ver - 1]; r >= 0 && *q; q++) {
                        const char *sql = *q;
                        if (startswith(sql, "pg:")) {
                                if (s->engine != STORE_POSTGRESQL)
                                        continue;
                                sql += strlen("pg:");
                        } else if (startswith(sql, "sqlite:")) {
                                if (s->engine != STORE_SQLITE)
                                        continue;
                                sql += strlen("sqlite:");
                        }
                        r = db_exec_sql(s, sql, err, errlen);
                }
                if (r >= 0) {
                        char sql[160];
                        snprintf(sql, sizeof sql,
                                 "INSERT INTO schema_migrations (version, applied_usec) VALUES (%ld, %" PRIu64 ")",
                                 ver, now_usec_realtime());
                        r = db_exec_sql(s, sql, err, errlen);
                }
                if (r >= 0)
                        r = db_exec_sql(s, "COMMIT", err, errlen);
                else
                        (void) db_exec_sql(s, "ROLLBACK", NULL, 0);
        }
        if (spill && r >= 0)
                r = sqlite_exec(s, "PRAGMA temp_store=MEMORY", err, errlen);
        if (s->engine == STORE_POSTGRESQL) {
                char sql[128];
                snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(%lld)", (long long) PG_MIGRATION_LOCK);
                (void) pg_exec(s, sql, NULL, 0);
        }
        return r;
}

Store *store_free(Store *s) {
        if (!s)
                return NULL;
        for (int i = 0; i < _S_MAX; i++)
                if (s->stmt[i])
                        sqlite3_finalize(s->stmt[i]);
        if (s->db)
                sqlite3_close_v2(s->db);
        if (s->pg)
                PQfinish(s->pg);
        if (s->conninfo) {
                explicit_bzero(s->conninfo, strlen(s->conninfo)); /* may hold a password */
                free(s->conninfo);
        }
        free(s->pending);
        free(s->inv.nodes);
        free(s->inv.images);
        free(s->inv.pods);
        sq_reset(&s->sq);
        for (size_t t = 0; t < _SQ_MAX; t++)
                free(s->sq.rows[t]);
        for (size_t i = 0; i < ARRAYS_COLUMNS_MAX; i++) {
                free(s->rec_arrays.col[i]);
                free(s->inv_images.col[i]);
                free(s->inv_pods.col[i]);
                free(s->state.touch.col[i]);
                free(s->state.pull.col[i]);
                free(s->state.finding.col[i]);
                free(s->state.workload.col[i]);
        }
        free(s->inv_pod_rows);
        free(s->inv_image_rows);
        free(s->copy_images.buf);
        free(s->copy_pods.buf);
        free(s->fresh);
        free(s->inv_known);
        for (size_t i = 0; i < ARRAYS_COLUMNS_MAX; i++)
                free(s->fresh_query.col[i]);
        free(s->node_cache);
        free(s->touched);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(Store *, store_free);

int store_open(Store **ret, const char *url, char *err, size_t errlen) {
        if (!ret || !url)
                return -EINVAL;
        _cleanup_(store_freep) Store *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        pthread_mutex_init(&s->lock, NULL);
        int r;
        if (startswith(url, "sqlite:")) {
                s->engine = STORE_SQLITE;
                const char *path = url + strlen("sqlite:");
                if (startswith(path, "//"))
                        path += 2; /* sqlite:///var/lib/x.db as well as sqlite:/var/lib/x.db */
                if (!*path)
                        return errbuf_fail(err, errlen, -EINVAL, "sqlite: no file name in %s", url);
                r = sqlite_open(s, path, err, errlen);
        } else if (startswith(url, "postgresql://") || startswith(url, "postgres://")) {
                s->engine = STORE_POSTGRESQL;
                r = pg_open(s, url, err, errlen);
        } else
                return errbuf_fail(err, errlen, -EINVAL,
                                   "unknown database URL (want sqlite:PATH or postgresql://…): %.64s", url);
        if (r < 0)
                return r;
        r = migrate(s, err, errlen);
        if (r < 0)
                return r;
        /* SQLite: what a collector left queued (stopped, or crashed, before applying it)
         * is applied before anything reads the state: this is also how a report, which
         * opens its own store, sees every record stored */
        r = state_sync_locked(s, err, errlen);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

/* ------------------------------------------------------------------ query ---- */

int store_query(Store *s, const char *sql, size_t nparams, const char *const *params, store_row_t row,
                void *userdata, char *err, size_t errlen) {
        if (!s || !sql)
                return -EINVAL;
        pthread_mutex_lock(&s->lock);
        int r = 0;
        /* SQLite: a read of the state on the store that queued it sees it applied */
        if (s->engine == STORE_SQLITE && atomic_load(&s->state_pending) > 0)
                r = state_sync_locked(s, err, errlen);
        if (r < 0) {
                pthread_mutex_unlock(&s->lock);
                return r;
        }
        if (s->engine == STORE_SQLITE) {
                sqlite3_stmt *st = NULL;
                int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
                if (rc != SQLITE_OK)
                        r = fail_db(s, err, errlen, sqlite_errno(rc) == -EIO ? -EIO : sqlite_errno(rc), "prepare",
                                    sqlite3_errmsg(s->db));
                else if (!sqlite3_stmt_readonly(st))
                        r = errbuf_fail(err, errlen, -EPERM, "%s: store_query runs read-only statements only",
                                        s->name);
                else {
                        int idx[64];
                        Val v[64];
                        if (nparams > ELEMENTSOF(v))
                                r = errbuf_fail(err, errlen, -E2BIG, "%s: more than 64 parameters", s->name);
                        else {
                                for (size_t i = 0; i < nparams; i++)
                                        v[i] = T(params[i]);
                                sqlite_param_index(st, nparams, idx);
                                r = sqlite_run(s, st, idx, v, nparams, row, userdata, NULL, err, errlen);
                        }
                }
                sqlite3_finalize(st);
        } else {
                /* a read-only transaction, so a report can never write, on either engine */
                r = pg_exec(s, "BEGIN READ ONLY", err, errlen);
                if (r >= 0) {
                        r = pg_exec_params(s, sql, nparams, params, row, userdata, err, errlen);
                        if (r >= 0)
                                r = pg_exec(s, "COMMIT", err, errlen);
                        else if (!pg_connection_lost(s))
                                (void) pg_exec(s, "ROLLBACK", NULL, 0);
                }
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

int store_ping(Store *s, char *err, size_t errlen) {
        pthread_mutex_lock(&s->lock);
        int r = db_query_plain(s, "SELECT 1", NULL, NULL, err, errlen);
        pthread_mutex_unlock(&s->lock);
        return r < 0 ? (r == -EIO ? -ENOTCONN : r) : 0;
}

/* ------------------------------------------------------------------ ingest ---- */

static uint64_t hash_str(const char *p) {
        uint64_t h = 0xcbf29ce484222325ULL;
        for (; *p; p++)
                h = (h ^ (unsigned char) *p) * 0x100000001b3ULL;
        return h;
}

/* The slot of node: the one holding it, else a free one, else (all NODE_CACHE_PROBE slots
 * taken by other nodes) the first, whose node is then replaced. Probing several slots: with
 * one slot per hash, 1,000 nodes in 4,096 slots left ~220 pairs sharing a slot and evicting
 * each other at every record, each miss a query (on PostgreSQL a round trip: 5,117 for the
 * bench's 50,000 records from 1,000 nodes, instead of 1,000). */
static NodeCacheEntry *node_cache_slot(Store *s, const char *node) {
        if (!s->node_cache) {
                s->node_cache = calloc(NODE_CACHE_SIZE, sizeof *s->node_cache);
                if (!s->node_cache)
                        return NULL;
        }
        size_t home = hash_str(node) % NODE_CACHE_SIZE;
        NodeCacheEntry *free_slot = NULL;
        for (size_t k = 0; k < NODE_CACHE_PROBE; k++) {
                NodeCacheEntry *e = &s->node_cache[(home + k) % NODE_CACHE_SIZE];
                if (!e->node[0]) {
                        if (!free_slot)
                                free_slot = e;
                } else if (streq_ptr(e->node, node))
                        return e;
        }
        return free_slot ? free_slot : &s->node_cache[home];
}

static int cluster_row(void *userdata, size_t ncols, const char *const *values) {
        char *buf = userdata;
        if (ncols > 0 && values[0])
                (void) strcpy_bounded(buf, RECORD_CLUSTER_MAX, values[0]);
        return 1;
}

/* The cluster of a record when the request's credentials name none. */
static int resolve_cluster(Store *s, const Record *rec, char ret[RECORD_CLUSTER_MAX], char *err, size_t errlen) {
        const char *node = rec->finding.node;
        NodeCacheEntry *e = node_cache_slot(s, node);
        if (rec->cluster[0]) {
                if (e && !streq_ptr(e->node, node)) {
                        (void) strcpy_bounded(e->node, sizeof e->node, node);
                        (void) strcpy_bounded(e->cluster, sizeof e->cluster, rec->cluster);
                } else if (e)
                        (void) strcpy_bounded(e->cluster, sizeof e->cluster, rec->cluster);
                memcpy(ret, rec->cluster, RECORD_CLUSTER_MAX);
                return 0;
        }
        if (e && streq_ptr(e->node, node) && e->node[0]) {
                memcpy(ret, e->cluster, RECORD_CLUSTER_MAX);
                return 0;
        }
        char found[RECORD_CLUSTER_MAX] = "";
        int r = db_read(s, S_NODE_CLUSTER, (Val[]){T(node)}, 1, cluster_row, found, err, errlen);
        if (r < 0)
                return r;
        if (e) {
                (void) strcpy_bounded(e->node, sizeof e->node, node);
                memcpy(e->cluster, found, sizeof found);
        }
        memcpy(ret, found, RECORD_CLUSTER_MAX);
        return 0;
}

/* Append s as a JSON string, escaped as jansson's json_dumps escapes (the text the pods
 * column always had): '"' '\\' and \b \f \n \r \t by name, other bytes below 0x20 as
 * \u00XX, everything else (UTF-8, '/', DEL) as is. buf has room (json_string_room). */
static char *json_string_put(char *p, const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        *p++ = '"';
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;
                const char *esc = NULL;
                switch (c) {
                case '"': esc = "\\\""; break;
                case '\\': esc = "\\\\"; break;
                case '\b': esc = "\\b"; break;
                case '\f': esc = "\\f"; break;
                case '\n': esc = "\\n"; break;
                case '\r': esc = "\\r"; break;
                case '\t': esc = "\\t"; break;
                default: break;
                }
                if (esc)
                        p = stpcpy(p, esc);
                else if (c < 0x20) {
                        p = stpcpy(p, "\\u00");
                        *p++ = hex[c >> 4];
                        *p++ = hex[c & 15];
                } else
                        *p++ = (char) c;
        }
        *p++ = '"';
        return p;
}

/* Bytes json_string_put may write for s: 6 per byte at most, and the quotes. */
static size_t json_string_room(const char *s) {
        return 6 * strlen(s) + 2;
}

/* The pods as a JSON array of {"namespace","pod","container"} (compact, in order: as
 * json_dumps wrote it, written directly: jansson's objects cost ~15k instructions per
 * image, a fifth of the writer's work on an inventory), and their namespaces. */
static int pods_to_json(const InventoryImage *im, char **ret_pods, char **ret_namespaces) {
        /* namespaces: sorted, unique, comma-separated; at most RECORD_PODS_MAX */
        const char *ns[RECORD_PODS_MAX];
        size_t nns = 0, len = 1, room = 3;
        for (size_t i = 0; i < im->n_pods; i++) {
                const InventoryPod *p = &im->pods[i];
                room += sizeof "{\"namespace\":,\"pod\":,\"container\":}," + json_string_room(p->namespace) +
                        json_string_room(p->pod) + json_string_room(p->container);
                if (!p->namespace[0])
                        continue;
                size_t k;
                for (k = 0; k < nns && strcmp(ns[k], p->namespace) < 0; k++)
                        ;
                if (k < nns && streq_ptr(ns[k], p->namespace))
                        continue;
                if (nns >= ELEMENTSOF(ns))
                        continue;
                memmove(&ns[k + 1], &ns[k], (nns - k) * sizeof *ns);
                ns[k] = p->namespace;
                nns++;
                len += strlen(p->namespace) + 1;
        }
        char *pods = malloc(room);
        char *names = malloc(len);
        if (!pods || !names) {
                free(pods);
                free(names);
                return -ENOMEM;
        }
        char *w = pods;
        *w++ = '[';
        for (size_t i = 0; i < im->n_pods; i++) {
                const InventoryPod *p = &im->pods[i];
                w = stpcpy(w, i ? ",{\"namespace\":" : "{\"namespace\":");
                w = json_string_put(w, p->namespace);
                w = stpcpy(w, ",\"pod\":");
                w = json_string_put(w, p->pod);
                w = stpcpy(w, ",\"container\":");
                w = json_string_put(w, p->container);
                *w++ = '}';
        }
        *w++ = ']';
        *w = 0;
        assert((size_t) (w - pods) < room);
        names[0] = 0;
        char *n = names;
        for (size_t k = 0; k < nns; k++) {
                if (k)
                        *n++ = ',';
                n = stpcpy(n, ns[k]);
        }
        *ret_pods = pods;
        *ret_namespaces = names;
        return 0;
}

/* An inventory image's node_images values from namespace to k8s_namespaces (14, in the
 * table's column order: namespace, ref, name, tag, digest, media_type, revision, pinned,
 * latest, revision_verified, compliant, findings, pods, k8s_namespaces); the texts they
 * point to are t's (freed by image_texts_done: a _cleanup_ of t). */
#define IMAGE_VALUES 14
typedef struct ImageTexts {
        char findings[RECORD_FINDINGS_TEXT_MAX];
        char *pods, *namespaces;
} ImageTexts;

static void image_texts_done(ImageTexts *t) {
        free(t->pods);
        free(t->namespaces);
        t->pods = t->namespaces = NULL;
}

static int image_values(const InventoryImage *im, ImageTexts *t, Val v[static IMAGE_VALUES]) {
        record_findings_text(im->findings, t->findings, sizeof t->findings);
        int r = pods_to_json(im, &t->pods, &t->namespaces);
        if (r < 0)
                return r;
        const Val w[IMAGE_VALUES] = {
                T(im->namespace), T(im->ref), T(im->name), T(im->tag), T(im->digest), T(im->media_type),
                T(im->revision), I(record_image_pinned(im->findings)), I(record_image_latest(im->findings)),
                I(record_image_revision_verified(im->findings)), I(record_image_compliant(im->findings)),
                T(t->findings), T(t->pods), T(t->namespaces),
        };
        memcpy(v, w, sizeof w);
        return 0;
}

static int images_to_json(const InventoryImage *images, size_t n, char **ret) {
        json_t *a = json_array();
        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const InventoryImage *im = &images[i];
                json_t *kinds = json_array(), *pods = json_array();
                for (int k = 0; k < _FINDING_KIND_MAX; k++)
                        if (im->findings & (1u << k))
                                json_array_append_new(kinds, json_string(finding_kind_to_string((FindingKind) k)));
                for (size_t p = 0; p < im->n_pods; p++)
                        json_array_append_new(pods, json_pack("{s:s, s:s, s:s}", "namespace", im->pods[p].namespace,
                                                              "pod", im->pods[p].pod, "container",
                                                              im->pods[p].container));
                json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:o, s:o}", "namespace",
                                                   im->namespace, "ref", im->ref, "name", im->name, "tag", im->tag,
                                                   "digest", im->digest, "media_type", im->media_type, "revision",
                                                   im->revision, "compliant", im->compliant, "findings", kinds,
                                                   "pods", pods));
        }
        char *s = json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(a);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static void put_be32(char *p, uint32_t x) {
        for (int k = 3; k >= 0; k--, x >>= 8)
                p[k] = (char) (x & 0xff);
}

/* Append a row of ncols values to the column arrays: each element as its length and bytes
 * (integers: int8; NULL: length -1), the first after room for the header. */
static int arrays_add(ColArrays *a, const Val *v, size_t ncols) {
        assert(ncols <= ARRAYS_COLUMNS_MAX);
        for (size_t c = 0; c < ncols; c++) {
                const char *x = v[c].s;
                size_t l = v[c].is_int ? 8 : x ? strlen(x) : 0;
                if (l > INT32_MAX)
                        return -E2BIG;
                int r = greedy_realloc((void **) &a->col[c], &a->alloc[c], a->len[c] + ARRAY_HEADER + 4 + l, 1, 4096);
                if (r < 0)
                        return r;
                char *p = a->col[c] + a->len[c];
                if (!a->rows)
                        p += ARRAY_HEADER; /* arrays_finish writes it */
                a->is_int[c] = v[c].is_int;
                if (v[c].is_int) {
                        put_be32(p, 8);
                        put_be32(p + 4, (uint32_t) ((uint64_t) v[c].i >> 32));
                        put_be32(p + 8, (uint32_t) v[c].i);
                } else if (!x) {
                        put_be32(p, UINT32_MAX); /* -1: NULL */
                        a->has_null[c] = true;
                } else {
                        put_be32(p, (uint32_t) l);
                        memcpy(p + 4, x, l);
                }
                a->len[c] = (size_t) (p + 4 + l - a->col[c]);
        }
        a->rows++;
        return 0;
}

/* Close the arrays (rows > 0) into v[first..first+ncols-1]; arrays_reset after sending. */
static void arrays_finish(ColArrays *a, size_t ncols, Val *v) {
        for (size_t c = 0; c < ncols; c++) {
                char *h = a->col[c];
                put_be32(h, 1);                          /* dimensions */
                put_be32(h + 4, a->has_null[c]);         /* has NULLs */
                put_be32(h + 8, a->is_int[c] ? 20 : 25); /* element type: int8, text */
                put_be32(h + 12, (uint32_t) a->rows);    /* length */
                put_be32(h + 16, 1);                     /* lower bound */
                v[c] = (Val){.s = h, .len = a->len[c], .binary = true, .sized = true};
        }
}

static void arrays_reset(ColArrays *a) {
        for (size_t c = 0; c < ARRAYS_COLUMNS_MAX; c++) {
                a->len[c] = 0;
                a->has_null[c] = false;
        }
        a->rows = 0;
}

/* PostgreSQL: workload_history rows by key (namespace, pod, container, digest), same-key
 * rows in arrival order. */
static int cmp_pod_key(const InvRow *x, const InvRow *y) {
        int c = strcmp(x->pod->namespace, y->pod->namespace);
        if (!c)
                c = strcmp(x->pod->pod, y->pod->pod);
        if (!c)
                c = strcmp(x->pod->container, y->pod->container);
        return c ? c : strcmp(x->im->digest, y->im->digest);
}

/* Same-key rows in the order SQLite's inv_flush applies them (cmp_inv_pod: by image name,
 * then arrival), so that both engines keep the same name and ref for a pod listed under
 * two images of one digest (say a mirror's name and the origin's). */
static int cmp_inv_pod_key(const void *a, const void *b) {
        const InvRow *x = a, *y = b;
        int c = cmp_pod_key(x, y);
        if (!c)
                c = strcmp(x->im->name, y->im->name);
        return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

/* A merged workload_history row of an inventory: namespace, pod, container, name, ref,
 * digest, revision. */
typedef int (*pod_emit_t)(Store *s, const Val w[7], void *userdata);

static int pod_to_arrays(Store *s, const Val w[7], void *userdata) {
        return arrays_add(&s->inv_pods, w, 7);
}

/* PostgreSQL: the inventory's pods to emit(), each key once, in key order: the name and
 * ref of its first row, the revision of its last row that has one, rows of a key taken
 * by image name, then in arrival order (what SQLite's one upsert per row leaves). One INSERT … ON CONFLICT may not touch a row twice (and
 * COPY would fail on the key); merged here, the statement needs no GROUP BY (its
 * array_agg sorts took more server time than the inserts). */
static int inventory_pods_merge(Store *s, const InventoryImage *images, size_t n, pod_emit_t emit, void *userdata) {
        size_t npods = 0;
        for (size_t i = 0; i < n; i++)
                npods += images[i].n_pods;
        if (npods == 0)
                return 0;
        if (npods >= UINT32_MAX ||
            greedy_realloc((void **) &s->inv_pod_rows, &s->alloc_inv_pod_rows, npods, sizeof *s->inv_pod_rows, 256) < 0)
                return -ENOMEM;
        InvRow *rows = s->inv_pod_rows;
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
                for (size_t p = 0; p < images[i].n_pods; p++, k++)
                        rows[k] = (InvRow){&images[i], &images[i].pods[p], 0, (uint32_t) k};
        qsort(rows, npods, sizeof *rows, cmp_inv_pod_key);
        int r = 0;
        for (size_t i = 0; r >= 0 && i < npods;) {
                size_t j = i + 1;
                const char *rev = rows[i].im->revision;
                for (; j < npods && cmp_pod_key(&rows[i], &rows[j]) == 0; j++)
                        if (rows[j].im->revision[0])
                                rev = rows[j].im->revision;
                const InventoryImage *im = rows[i].im;
                const InventoryPod *pod = rows[i].pod;
                Val w[] = {T(pod->namespace), T(pod->pod), T(pod->container), T(im->name),
                           T(im->ref),        T(im->digest), T(rev)};
                r = emit(s, w, userdata);
                i = j;
        }
        return r;
}

/* ---- PostgreSQL: a fresh node's first inventory by COPY ----
 *
 * A node's first complete inventory, when the node has no row yet in node_images or
 * workload_history, only inserts: there is nothing to conflict with, nothing unchanged to
 * skip, nothing unnamed to delete or write out. Its rows then go in by COPY … FROM STDIN
 * (heap pages filled a batch at a time, no ON CONFLICT pre-check of the key, no array
 * parsing, no per-node statement): the same rows S_INVENTORY_IMAGES_MANY and
 * S_WORKLOAD_MANY would insert, each key once, by_inventory = 1. Whether a node is fresh
 * is read by S_NODES_FRESH inside the transaction, after the touch of its nodes row: the
 * touch (an INSERT … ON CONFLICT DO UPDATE) keeps that row locked until the commit, and
 * every writer of a node's state touches the node first, so no other collector can add a
 * row of the node before this transaction ends (a second one waits at its touch, then
 * reads what this one committed). COPY is not allowed in libpq's pipeline mode: the
 * rows wait in two buffers and copy_flush() leaves the pipeline to send them, before
 * anything that reads or writes those rows is sent, and at the end of each
 * store_ingest_add() call. */

/* One field in COPY's text format, then end ('\t' or '\n'): backslash, tab, newline
 * and carriage return escaped (all the format reads specially; no value can then end
 * the data or read as NULL). */
static int copy_text(CopyRows *c, const char *x, char end) {
        size_t l = strlen(x);
        int r = greedy_realloc((void **) &c->buf, &c->alloc, c->len + 2 * l + 2, 1, 65536);
        if (r < 0)
                return r;
        char *p = c->buf + c->len;
        for (; *x; x++) {
                char e = *x == '\\' ? '\\' : *x == '\t' ? 't' : *x == '\n' ? 'n' : *x == '\r' ? 'r' : 0;
                if (e) {
                        *p++ = '\\';
                        *p++ = e;
                } else
                        *p++ = *x;
        }
        *p++ = end;
        c->len = (size_t) (p - c->buf);
        return 0;
}

/* A row of n values (texts and integers) as one line. */
static int copy_row(CopyRows *c, const Val *v, size_t n) {
        int r = 0;
        for (size_t i = 0; r >= 0 && i < n; i++) {
                char num[24];
                const char *x = v[i].s;
                if (v[i].is_int) {
                        snprintf(num, sizeof num, "%" PRId64, v[i].i);
                        x = num;
                }
                r = copy_text(c, x, i + 1 < n ? '\t' : '\n');
        }
        if (r >= 0)
                c->rows++;
        return r;
}

static void copy_reset(Store *s) {
        s->copy_images.len = s->copy_images.rows = 0;
        s->copy_pods.len = s->copy_pods.rows = 0;
}

/* COPY the rows of c with the statement sql (outside pipeline mode). */
static int copy_send(Store *s, CopyRows *c, const char *sql, char *err, size_t errlen) {
        if (!c->rows)
                return 0;
        PGresult *res = PQexec(s->pg, sql);
        if (PQresultStatus(res) != PGRES_COPY_IN) {
                int r = fail_db(s, err, errlen, pg_result_errno(s, res), "copy", pg_result_message(s, res));
                PQclear(res);
                return r;
        }
        PQclear(res);
        int r = 0;
        for (size_t off = 0; r >= 0 && off < c->len;) {
                size_t k = c->len - off < ((size_t) 1 << 20) ? c->len - off : (size_t) 1 << 20;
                if (PQputCopyData(s->pg, c->buf + off, (int) k) != 1)
                        r = fail_db(s, err, errlen, pg_connection_lost(s) ? -ENOTCONN : -EIO, "copy",
                                    PQerrorMessage(s->pg));
                off += k;
        }
        if (PQputCopyEnd(s->pg, r < 0 ? "not sent whole" : NULL) != 1 && r >= 0)
                r = fail_db(s, err, errlen, pg_connection_lost(s) ? -ENOTCONN : -EIO, "copy", PQerrorMessage(s->pg));
        int stop = 0;
        return pg_drain(s, r, "copy", NULL, NULL, &stop, err, errlen);
}

/* Send the fresh nodes' rows waiting: everything queued before them runs first (a sync),
 * then the two COPYs, then the pipeline goes on. */
static int copy_flush(Store *s, char *err, size_t errlen) {
        if (!s->copy_images.rows && !s->copy_pods.rows)
                return 0;
        int r = pg_sync(s, err, errlen);
        if (r >= 0) {
                if (PQexitPipelineMode(s->pg) != 1)
                        r = fail_db(s, err, errlen, pg_connection_lost(s) ? -ENOTCONN : -EIO, "pipeline mode",
                                    PQerrorMessage(s->pg));
                else
                        s->pipeline = false;
        }
        if (r >= 0)
                r = copy_send(s, &s->copy_images, "COPY node_images (cluster, node, namespace, ref, name, tag, digest,"
                              " media_type, revision, pinned, latest, revision_verified, compliant, findings, pods,"
                              " k8s_namespaces, updated_usec, findings_mask, by_inventory) FROM STDIN", err, errlen);
        if (r >= 0)
                r = copy_send(s, &s->copy_pods, "COPY workload_history (cluster, node, k8s_namespace, pod, container,"
                              " name, ref, digest, revision, first_seen_usec, last_seen_usec, by_inventory) FROM STDIN",
                              err, errlen);
        copy_reset(s);
        if (!s->pipeline && !pg_connection_lost(s)) {
                if (PQenterPipelineMode(s->pg) == 1)
                        s->pipeline = true;
                else if (r >= 0)
                        r = fail_db(s, err, errlen, -EIO, "pipeline mode", PQerrorMessage(s->pg));
        }
        return r;
}

/* S_NODES_FRESH's rows: the fresh ones of s->fresh. */
static int fresh_row(void *userdata, size_t ncols, const char *const *v) {
        Store *s = userdata;
        if (ncols < 2 || !v[0] || !v[1])
                return -EIO;
        for (size_t i = 0; i < s->n_fresh; i++)
                if (streq_ptr(s->fresh[i].cluster, v[0]) && streq_ptr(s->fresh[i].node, v[1]))
                        s->fresh[i].fresh = true;
        return 0;
}

static FreshNode *fresh_find(Store *s, const char *cluster, const char *node) {
        for (size_t i = 0; i < s->n_fresh; i++)
                if (streq_ptr(s->fresh[i].node, node) && streq_ptr(s->fresh[i].cluster, cluster))
                        return &s->fresh[i];
        return NULL;
}

/* Nodes this collector gave a complete inventory: never fresh again (nodes rows are never
 * deleted and last_inventory_usec only grows), so the hourly inventories of a node skip
 * S_NODES_FRESH and its round trip. Only a hint, noted before the commit: a node noted by
 * a transaction that then rolled back, or one whose hash collides, takes the statements,
 * which are right for any node; a full set notes no more. */
#define INV_KNOWN_SLOTS 16384
static uint64_t key_hash(const char *const *parts, size_t n);

static bool inv_known(Store *s, const char *cluster, const char *node) {
        if (!s->inv_known)
                return false;
        uint64_t h = key_hash((const char *[]){cluster, node}, 2);
        for (size_t i = h % INV_KNOWN_SLOTS; s->inv_known[i]; i = (i + 1) % INV_KNOWN_SLOTS)
                if (s->inv_known[i] == h)
                        return true;
        return false;
}

static void inv_known_add(Store *s, const char *cluster, const char *node) {
        if (!s->inv_known && !(s->inv_known = calloc(INV_KNOWN_SLOTS, sizeof *s->inv_known)))
                return;
        if (s->n_inv_known >= INV_KNOWN_SLOTS / 4 * 3)
                return;
        uint64_t h = key_hash((const char *[]){cluster, node}, 2);
        size_t i = h % INV_KNOWN_SLOTS;
        for (; s->inv_known[i]; i = (i + 1) % INV_KNOWN_SLOTS)
                if (s->inv_known[i] == h)
                        return;
        s->inv_known[i] = h;
        s->n_inv_known++;
}

/* Note (cluster, node) for S_NODES_FRESH; both stay valid until fresh_reset(). */
static int fresh_add(Store *s, const char *cluster, const char *node) {
        if (fresh_find(s, cluster, node) || inv_known(s, cluster, node))
                return 0;
        if (greedy_realloc((void **) &s->fresh, &s->alloc_fresh, s->n_fresh + 1, sizeof *s->fresh, 16) < 0 ||
            arrays_add(&s->fresh_query, (Val[]){T(cluster), T(node)}, 2) < 0)
                return -ENOMEM;
        s->fresh[s->n_fresh++] = (FreshNode){cluster, node, false, false};
        return 0;
}

/* Queue S_NODES_FRESH for the nodes noted (after their touch: see above). */
static int fresh_send(Store *s, char *err, size_t errlen) {
        if (!s->fresh_query.rows)
                return 0;
        Val v[2];
        arrays_finish(&s->fresh_query, 2, v);
        int r = pg_queue(s, S_NODES_FRESH, v, 2, NULL, fresh_row, s, err, errlen);
        arrays_reset(&s->fresh_query);
        s->fresh_unread = r >= 0;
        return r;
}

static void fresh_reset(Store *s) {
        s->n_fresh = 0;
        s->fresh_unread = false;
        arrays_reset(&s->fresh_query);
}

/* Whether (cluster, node) is fresh; from now on it is not (its rows are being written). */
static int fresh_take(Store *s, const char *cluster, const char *node, bool *ret, char *err, size_t errlen) {
        *ret = false;
        FreshNode *f = fresh_find(s, cluster, node);
        if (!f)
                return 0;
        if (s->fresh_unread) {
                int r = pg_sync(s, err, errlen);
                if (r < 0)
                        return r;
                s->fresh_unread = false;
        }
        *ret = f->fresh && !f->changed;
        f->changed = true;
        return 0;
}

/* A fresh node's images by key (namespace, reference), same-key rows in arrival order. */
static int cmp_inv_image_key(const void *a, const void *b) {
        const InvRow *x = a, *y = b;
        int c = strcmp(x->im->namespace, y->im->namespace);
        if (!c)
                c = strcmp(x->im->ref, y->im->ref);
        return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

typedef struct CopyPodCtx {
        const char *cluster, *node;
        uint64_t time_usec;
} CopyPodCtx;

static int pod_to_copy(Store *s, const Val w[7], void *userdata) {
        const CopyPodCtx *c = userdata;
        Val row[] = {T(c->cluster), T(c->node), w[0], w[1], w[2], w[3], w[4], w[5], w[6],
                     I(c->time_usec), I(c->time_usec), I(1)};
        return copy_row(&s->copy_pods, row, ELEMENTSOF(row));
}

/* A fresh node's complete inventory: its rows to the COPY buffers (a reference listed
 * twice: the last one, as S_INVENTORY_IMAGES_MANY's DISTINCT ON keeps), its inventory
 * time queued now (it reads and writes only the node's own row, which nothing sent
 * before the COPY reads: copy_flush runs before anything else about the node). */
static int apply_inventory_copy(Store *s, const char *cluster, const char *node, uint64_t time_usec,
                                const InventoryImage *images, size_t n, char *err, size_t errlen) {
        int r = 0;
        if (n > 0 && (n >= UINT32_MAX || greedy_realloc((void **) &s->inv_image_rows, &s->alloc_inv_image_rows, n,
                                                        sizeof *s->inv_image_rows, 256) < 0))
                r = -ENOMEM;
        InvRow *rows = s->inv_image_rows;
        for (size_t i = 0; r >= 0 && i < n; i++)
                rows[i] = (InvRow){&images[i], NULL, 0, (uint32_t) i};
        if (r >= 0 && n > 1)
                qsort(rows, n, sizeof *rows, cmp_inv_image_key);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (i + 1 < n && streq_ptr(rows[i].im->namespace, rows[i + 1].im->namespace) &&
                    streq_ptr(rows[i].im->ref, rows[i + 1].im->ref))
                        continue; /* a later one of the same key follows */
                const InventoryImage *im = rows[i].im;
                _cleanup_(image_texts_done) ImageTexts t = {0};
                Val v[2 + IMAGE_VALUES + 3] = {T(cluster), T(node)};
                r = image_values(im, &t, v + 2);
                if (r >= 0) {
                        v[2 + IMAGE_VALUES] = I(time_usec);
                        v[2 + IMAGE_VALUES + 1] = I(im->findings);
                        v[2 + IMAGE_VALUES + 2] = I(1);
                        r = copy_row(&s->copy_images, v, ELEMENTSOF(v));
                }
        }
        if (r >= 0)
                r = inventory_pods_merge(s, images, n, pod_to_copy, &(CopyPodCtx){cluster, node, time_usec});
        if (r < 0) {
                copy_reset(s);
                return errbuf_fail(err, errlen, r, "%s: out of memory", s->name);
        }
        return db_write(s, S_NODE_INVENTORY, (Val[]){T(cluster), T(node), I(time_usec)}, 3, NULL, err, errlen);
}

/* PostgreSQL: the inventory's images and pods as two statements of column arrays, the
 * delete of what it did not name and the node's inventory time between them. */
static int apply_inventory_pg(Store *s, const char *cluster, const char *node, uint64_t time_usec,
                              const InventoryImage *images, size_t n, char *err, size_t errlen) {
        bool fresh;
        int r = fresh_take(s, cluster, node, &fresh, err, errlen);
        inv_known_add(s, cluster, node);
        if (r >= 0 && fresh)
                return apply_inventory_copy(s, cluster, node, time_usec, images, n, err, errlen);
        /* the statements below read the node's rows: any COPY before them goes first */
        if (r >= 0)
                r = copy_flush(s, err, errlen);
        if (r < 0)
                return r;
        ColArrays *ia = &s->inv_images, *pa = &s->inv_pods;
        arrays_reset(ia);
        arrays_reset(pa);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                const InventoryImage *im = &images[i];
                _cleanup_(image_texts_done) ImageTexts t = {0};
                Val v[IMAGE_VALUES + 1];
                r = image_values(im, &t, v);
                if (r >= 0) {
                        v[IMAGE_VALUES] = I(im->findings);
                        r = arrays_add(ia, v, ELEMENTSOF(v));
                }
        }
        if (r >= 0)
                r = inventory_pods_merge(s, images, n, pod_to_arrays, NULL);
        if (r < 0) {
                arrays_reset(ia);
                arrays_reset(pa);
                return errbuf_fail(err, errlen, r, "%s: out of memory", s->name);
        }
        Val v[3 + 15] = {T(cluster), T(node), I(time_usec)};
        /* what it did not name goes (by the namespace and reference arrays) */
        Val del[5] = {v[0], v[1], v[2], T("{}"), T("{}")};
        if (ia->rows > 0) {
                arrays_finish(ia, 15, v + 3);
                del[3] = v[3];
                del[4] = v[4];
                r = db_write(s, S_INVENTORY_IMAGES_MANY, v, 18, NULL, err, errlen);
        }
        if (r >= 0)
                r = db_write(s, S_INVENTORY_DELETE_MANY, del, 5, NULL, err, errlen);
        /* the pods: named ones upserted, the last inventory's others written out, both
         * before the node's inventory time moves on (they read it) */
        Val unnamed[7] = {v[0], v[1], v[2], T("{}"), T("{}"), T("{}"), T("{}")};
        if (r >= 0 && pa->rows > 0) {
                arrays_finish(pa, 7, v + 3);
                unnamed[3] = v[3];
                unnamed[4] = v[4];
                unnamed[5] = v[5];
                unnamed[6] = v[8];
                r = db_write(s, S_WORKLOAD_MANY, v, 10, NULL, err, errlen);
        }
        if (r >= 0)
                r = db_write(s, S_WORKLOAD_UNNAMED, unnamed, 7, NULL, err, errlen);
        if (r >= 0)
                r = db_write(s, S_NODE_INVENTORY, v, 3, NULL, err, errlen);
        arrays_reset(ia);
        arrays_reset(pa);
        return r;
}

static int found_row(void *userdata, size_t ncols, const char *const *values) {
        *(bool *) userdata = true;
        return 1;
}

static void inv_reset(InvPending *p) {
        p->n_nodes = p->n_images = p->n_pods = 0;
}

/* Rows node by node, each node's in key order (kx, ky), same-key rows in arrival order. */
static int cmp_inv_rows(const InvRow *x, const InvRow *y, const char *kx, const char *ky) {
        if (x->node != y->node)
                return x->node < y->node ? -1 : 1;
        int c = strcmp(kx, ky);
        return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

/* Image rows node by node, each node's in reference order: node_images' primary key is
 * then walked front to back within each node's range. */
static int cmp_inv_image(const void *a, const void *b) {
        const InvRow *x = a, *y = b;
        return cmp_inv_rows(x, y, x->im->ref, y->im->ref);
}

/* Workload rows node by node (a node's rows are one range of workload_history's primary
 * key), each node's in image name order (see inv_flush). */
static int cmp_inv_pod(const void *a, const void *b) {
        const InvRow *x = a, *y = b;
        return cmp_inv_rows(x, y, x->im->name, y->im->name);
}

/* Apply the pending inventories: every image upsert (node by node, in reference order),
 * then each node's delete of what its inventory did not name and its inventory time (in
 * arrival order), then the workload upserts (node by node, in image name order). The
 * same statements as one inventory at a time, in another order that changes no result: rows of two nodes never share a key, and a
 * key listed twice keeps its order (seq); workload_history is read by none of the others; a
 * node is pending once at most (inv_defer flushes first), so its guard read at deferral
 * still holds. Why: a request of ~3,600 new images inserted in arrival order dirtied pages
 * all over node_images' and workload_history's secondary indexes, each larger than the page
 * cache, so a commit spilled and re-dirtied them several times (6.8 GB written for the
 * bench's 200,000 first-inventory rows); in key order each index page is dirtied once.
 * Since schema 8 every index of these tables but workload_history (k8s_namespace) (whose
 * new entries go to the end of their namespace's range) leads with (cluster, node), so a
 * node's rows land on a few pages of each; since schema 11 those are the primary keys. */
static int inv_flush(Store *s, char *err, size_t errlen) {
        InvPending *p = &s->inv;
        int r = 0;
        if (p->n_images > 1)
                qsort(p->images, p->n_images, sizeof *p->images, cmp_inv_image);
        for (size_t i = 0; r >= 0 && i < p->n_images; i++) {
                const InventoryImage *im = p->images[i].im;
                const InvNode *nd = &p->nodes[p->images[i].node];
                _cleanup_(image_texts_done) ImageTexts t = {0};
                Val v[2 + IMAGE_VALUES + 2] = {T(nd->cluster), T(nd->node)};
                r = image_values(im, &t, v + 2);
                if (r < 0) {
                        r = errbuf_fail(err, errlen, r, "%s: out of memory", s->name);
                        break;
                }
                v[2 + IMAGE_VALUES] = I(nd->time_usec);
                v[2 + IMAGE_VALUES + 1] = I(im->findings);
                size_t changed = 0;
                r = db_write(s, S_INVENTORY_IMAGE, v, ELEMENTSOF(v), &changed, err, errlen);
                /* a row the upsert inserted or updated is this image already; only one it
                 * left alone can have another digest or name (or be newer: then this is a no-op) */
                if (r >= 0 && changed == 0)
                        r = db_write(s, S_INVENTORY_CHANGED, v, ELEMENTSOF(v), NULL, err, errlen);
        }
        /* what each inventory did not name goes; then the node's inventory time moves on */
        for (size_t i = 0; r >= 0 && i < p->n_nodes; i++) {
                const InvNode *nd = &p->nodes[i];
                Val v[] = {T(nd->cluster), T(nd->node), I(nd->time_usec)};
                r = db_write(s, S_INVENTORY_DELETE, v, 3, NULL, err, errlen);
                if (r >= 0)
                        r = db_write(s, S_NODE_INVENTORY, v, 3, NULL, err, errlen);
        }
        if (r >= 0 && p->n_pods > 1)
                qsort(p->pods, p->n_pods, sizeof *p->pods, cmp_inv_pod);
        for (size_t i = 0; r >= 0 && i < p->n_pods; i++) {
                const InventoryImage *im = p->pods[i].im;
                const InventoryPod *pod = p->pods[i].pod;
                const InvNode *nd = &p->nodes[p->pods[i].node];
                Val w[] = {T(nd->cluster), T(nd->node),   T(pod->namespace), T(pod->pod),     T(pod->container),
                           T(im->name),    T(im->ref),    T(im->digest),     T(im->revision), I(nd->time_usec)};
                r = db_write(s, S_WORKLOAD_UPSERT, w, ELEMENTSOF(w), NULL, err, errlen);
        }
        inv_reset(p);
        return r;
}

/* SQLite: queue a complete inventory of the node taken at time_usec (inv_flush applies it).
 * images, cluster and node must stay valid until then. */
static int inv_defer(Store *s, const char *cluster, const char *node, uint64_t time_usec,
                     const InventoryImage *images, size_t n, char *err, size_t errlen) {
        InvPending *p = &s->inv;
        int r = 0;
        for (size_t i = 0; r >= 0 && i < p->n_nodes; i++)
                if (streq_ptr(p->nodes[i].node, node) && streq_ptr(p->nodes[i].cluster, cluster))
                        r = inv_flush(s, err, errlen); /* its guard reads what the earlier one writes */
        bool newer = false;
        if (r >= 0 && n > 0)
                r = db_read(s, S_NODE_NEWER_INVENTORY, (Val[]){T(cluster), T(node), I(time_usec)}, 3, found_row,
                            &newer, err, errlen);
        if (r < 0)
                return r;
        size_t npods = 0;
        for (size_t i = 0; i < n; i++)
                npods += images[i].n_pods;
        if (p->n_nodes >= UINT32_MAX || p->n_images + n >= UINT32_MAX || p->n_pods + npods >= UINT32_MAX ||
            greedy_realloc((void **) &p->nodes, &p->alloc_nodes, p->n_nodes + 1, sizeof *p->nodes, 16) < 0 ||
            greedy_realloc((void **) &p->images, &p->alloc_images, p->n_images + n, sizeof *p->images, 256) < 0 ||
            greedy_realloc((void **) &p->pods, &p->alloc_pods, p->n_pods + npods, sizeof *p->pods, 256) < 0)
                return errbuf_fail(err, errlen, -ENOMEM, "%s: out of memory", s->name);
        uint32_t k = (uint32_t) p->n_nodes;
        p->nodes[p->n_nodes++] = (InvNode){cluster, node, time_usec, newer};
        for (size_t i = 0; i < n; i++) {
                if (!newer) {
                        p->images[p->n_images] = (InvRow){&images[i], NULL, k, (uint32_t) p->n_images};
                        p->n_images++;
                }
                for (size_t j = 0; j < images[i].n_pods; j++) {
                        p->pods[p->n_pods] = (InvRow){&images[i], &images[i].pods[j], k, (uint32_t) p->n_pods};
                        p->n_pods++;
                }
        }
        return 0;
}

/* Replace the node's images with a complete inventory taken at time_usec (SQLite: queued,
 * see inv_defer). */
static int apply_inventory(Store *s, const char *cluster, const char *node, uint64_t time_usec,
                           const InventoryImage *images, size_t n, char *err, size_t errlen) {
        if (s->engine == STORE_POSTGRESQL)
                return apply_inventory_pg(s, cluster, node, time_usec, images, n, err, errlen);
        return inv_defer(s, cluster, node, time_usec, images, n, err, errlen);
}

typedef struct PartsCtx {
        unsigned parts_seen, parts_expected;
        bool bad;
        InventoryImage *images;
        size_t n_images;
        char *err;
        size_t errlen;
} PartsCtx;

static int part_row(void *userdata, size_t ncols, const char *const *values) {
        PartsCtx *c = userdata;
        if (ncols < 3 || !values[0] || !values[1] || !values[2])
                return -EIO;
        unsigned part = (unsigned) strtoul(values[0], NULL, 10);
        if (part != c->parts_seen + 1 || (unsigned) strtoul(values[1], NULL, 10) != c->parts_expected) {
                c->bad = true;
                return 1;
        }
        c->parts_seen++;
        InventoryImage *im = NULL;
        size_t n = 0;
        int r = record_images_from_json(values[2], strlen(values[2]), &im, &n, c->err, c->errlen);
        if (r < 0)
                return r;
        InventoryImage *all = realloc(c->images, (c->n_images + n) * sizeof *all + 1);
        if (!all) {
                record_images_free(im, n);
                return -ENOMEM;
        }
        memcpy(all + c->n_images, im, n * sizeof *im);
        free(im); /* the pods moved with the structs */
        c->images = all;
        c->n_images += n;
        return 0;
}

static int ingest_inventory(Store *s, const char *cluster, const Record *rec, uint64_t received_usec,
                            StoreIngestResult *res, char *err, size_t errlen) {
        const Inventory *inv = &rec->inventory;
        const char *node = rec->finding.node;
        int r;
        if (inv->parts == 1) {
                r = apply_inventory(s, cluster, node, rec->finding.time_usec, inv->images, inv->n_images, err,
                                    errlen);
                if (r >= 0)
                        res->inventories++;
                return r;
        }
        /* Parts of one inventory share the snapshot (newer agents) or the time and count. */
        char snapshot[64];
        if (inv->snapshot[0])
                snprintf(snapshot, sizeof snapshot, "%s", inv->snapshot);
        else
                snprintf(snapshot, sizeof snapshot, "t%" PRIu64 "/%u", rec->finding.time_usec, inv->parts);
        _cleanup_free_ char *images = NULL;
        r = images_to_json(inv->images, inv->n_images, &images);
        if (r < 0)
                return errbuf_fail(err, errlen, r, "%s: out of memory", s->name);
        Val v[] = {T(cluster), T(node), T(snapshot), I(inv->part), I(inv->parts), I(rec->finding.time_usec),
                   T(images), I(received_usec)};
        r = db_write(s, S_PART_INSERT, v, ELEMENTSOF(v), NULL, err, errlen);
        if (r < 0)
                return r;
        PartsCtx c = {.parts_expected = inv->parts, .err = err, .errlen = errlen};
        r = db_read(s, S_PART_SELECT, (Val[]){T(cluster), T(node), T(snapshot)}, 3, part_row, &c, err, errlen);
        if (r >= 0 && !c.bad && c.parts_seen == inv->parts) {
                r = apply_inventory(s, cluster, node, rec->finding.time_usec, c.images, c.n_images, err, errlen);
                /* the images are freed below */
                if (r >= 0 && s->engine == STORE_SQLITE)
                        r = inv_flush(s, err, errlen);
                if (r >= 0)
                        r = db_write(s, S_PART_DELETE, (Val[]){T(cluster), T(node), T(snapshot)}, 3, NULL, err,
                                     errlen);
                if (r >= 0)
                        res->inventories++;
        }
        record_images_free(c.images, c.n_images);
        return r;
}

/* Queue the pending records as one statement; their inserted count adds to *inserted at the sync. */
static int rec_arrays_flush(Store *s, size_t *inserted, char *err, size_t errlen) {
        ColArrays *a = &s->rec_arrays;
        if (!a->rows)
                return 0;
        Val v[REC_COLUMNS];
        arrays_finish(a, REC_COLUMNS, v);
        /* libpq copies the parameters into its output buffer: the arrays can be reused */
        int r = db_write(s, S_RECORD_INSERT_MANY, v, REC_COLUMNS, inserted, err, errlen);
        arrays_reset(a);
        return r;
}

/* ---- PostgreSQL: a batch's state changes as column arrays ---- */

static uint64_t key_hash(const char *const *parts, size_t n) {
        uint64_t h = 0xcbf29ce484222325ULL;
        for (size_t i = 0; i < n; i++) {
                for (const char *p = parts[i]; *p; p++)
                        h = (h ^ (unsigned char) *p) * 0x100000001b3ULL;
                h = (h ^ 0xff) * 0x100000001b3ULL; /* no byte of UTF-8 text: "a","bc" ≠ "ab","c" */
        }
        return h ? h : 1;
}

static bool key_seen(const uint64_t *set, uint64_t h) {
        for (size_t i = h % STATE_KEYS;; i = (i + 1) % STATE_KEYS) {
                if (set[i] == h)
                        return true;
                if (!set[i])
                        return false;
        }
}

static void key_add(uint64_t *set, uint64_t h) {
        size_t i = h % STATE_KEYS;
        while (set[i] && set[i] != h)
                i = (i + 1) % STATE_KEYS;
        set[i] = h;
}

static void state_reset(StateArrays *st) {
        arrays_reset(&st->pull);
        arrays_reset(&st->finding);
        arrays_reset(&st->workload);
        memset(st->pull_keys, 0, sizeof st->pull_keys);
        memset(st->finding_keys, 0, sizeof st->finding_keys);
        memset(st->workload_keys, 0, sizeof st->workload_keys);
}

static int state_send(Store *s, ColArrays *a, StmtId id, size_t ncols, char *err, size_t errlen) {
        if (!a->rows)
                return 0;
        Val v[ARRAYS_COLUMNS_MAX];
        arrays_finish(a, ncols, v);
        int r = db_write(s, id, v, ncols, NULL, err, errlen);
        arrays_reset(a);
        return r;
}

/* Send what waits, in the order one statement per record would have changed things: every
 * pull before every finding is exact because state_add_* sends first whenever a record
 * names a node_images row that a pending pull or finding names after it (or a pull one
 * that a pending finding names), so rows of one key never meet in one statement. */
static int state_flush(Store *s, char *err, size_t errlen) {
        StateArrays *st = &s->state;
        int r = 0;
        /* a fresh node's COPYed inventory comes before the pulls and findings after it */
        if (st->pull.rows || st->finding.rows || st->workload.rows)
                r = copy_flush(s, err, errlen);
        if (r >= 0)
                r = state_send(s, &st->pull, S_PULL_MANY, 10, err, errlen);
        if (r >= 0)
                r = state_send(s, &st->finding, S_FINDING_MANY, 16, err, errlen);
        if (r >= 0)
                r = state_send(s, &st->workload, S_WORKLOAD_TIMED_MANY, 10, err, errlen);
        state_reset(st);
        return r;
}

static int state_add_pull(Store *s, const Val row[10], char *err, size_t errlen) {
        StateArrays *st = &s->state;
        uint64_t h = key_hash((const char *[]){row[0].s, row[1].s, row[2].s, row[3].s}, 4);
        int r = 0;
        if (key_seen(st->pull_keys, h) || key_seen(st->finding_keys, h) || st->pull.rows >= REC_ARRAY_ROWS)
                r = state_flush(s, err, errlen);
        if (r >= 0)
                r = arrays_add(&st->pull, row, 10);
        if (r == -ENOMEM)
                return errbuf_fail(err, errlen, r, "%s: out of memory", s->name);
        key_add(st->pull_keys, h);
        return r;
}

static int state_add_finding(Store *s, const Val row[16], const Val *workload, char *err, size_t errlen) {
        StateArrays *st = &s->state;
        uint64_t h = key_hash((const char *[]){row[0].s, row[1].s, row[2].s, row[3].s}, 4), hw = 0;
        if (workload)
                hw = key_hash((const char *[]){workload[0].s, workload[1].s, workload[2].s, workload[3].s,
                                               workload[4].s, workload[7].s},
                              6);
        int r = 0;
        if (key_seen(st->finding_keys, h) || (workload && key_seen(st->workload_keys, hw)) ||
            st->finding.rows >= REC_ARRAY_ROWS || st->workload.rows >= REC_ARRAY_ROWS)
                r = state_flush(s, err, errlen);
        if (r >= 0)
                r = arrays_add(&st->finding, row, 16);
        if (r >= 0 && workload)
                r = arrays_add(&st->workload, workload, 10);
        if (r == -ENOMEM)
                return errbuf_fail(err, errlen, r, "%s: out of memory", s->name);
        key_add(st->finding_keys, h);
        if (workload)
                key_add(st->workload_keys, hw);
        return r;
}

/* SQLite: record writes wait in SqPending for up to SQ_FLUSH_ROWS rows (a group of
 * requests, bounded), then go out table by table, each table's rows sorted by its primary
 * key. Why: the bench's records (random ids, random nodes and references) insert at
 * random places of three primary-key B-trees, each larger than the page cache; in arrival
 * order a commit's 2,000 records came back to the same leaf pages many times, each time
 * evicted and read again (pread: 18 % of the collector's CPU); in key order each leaf is
 * read once and left. The result is that of one statement per record in arrival order:
 * each statement reads and writes only the row of its own key in its own table, the rows
 * of one key keep their order (seq), and anything else that reads these tables inside
 * the transaction (an inventory) comes after sq_flush. */
#define SQ_FLUSH_ROWS 6144 /* rows of the three tables: ~2,000 records, ~3 MiB of copies */
#define SQ_BLOCK_BYTES (256U << 10)

static void sq_reset(SqPending *p) {
        while (p->blocks) {
                SqBlock *b = p->blocks;
                p->blocks = b->next;
                free(b);
        }
        for (size_t t = 0; t < _SQ_MAX; t++)
                p->n[t] = 0;
        p->seq = 0;
}

static void *sq_alloc(SqPending *p, size_t size) {
        size = (size + _Alignof(max_align_t) - 1) / _Alignof(max_align_t) * _Alignof(max_align_t);
        SqBlock *b = p->blocks;
        if (!b || b->size - b->used < size) {
                size_t cap = size > SQ_BLOCK_BYTES ? size : SQ_BLOCK_BYTES;
                b = malloc(sizeof *b + cap);
                if (!b)
                        return NULL;
                *b = (SqBlock){.next = p->blocks, .size = cap};
                p->blocks = b;
        }
        void *x = (char *) b->data + b->used;
        b->used += size;
        return x;
}

/* Queue a write of table t (its values copied). */
static int sq_defer(Store *s, SqTable t, StmtId id, const Val *v, size_t n, size_t *affected, char *err,
                    size_t errlen) {
        SqPending *p = &s->sq;
        size_t bytes = n * sizeof(Val), len1[REC_COLUMNS + 1];
        assert(n <= REC_COLUMNS + 1);
        for (size_t i = 0; i < n; i++) {
                len1[i] = !v[i].is_int && v[i].s ? strlen(v[i].s) + 1 : 0;
                if (len1[i] > UINT32_MAX)
                        return errbuf_fail(err, errlen, -E2BIG, "%s: a value longer than 4 GiB", s->name);
                bytes += len1[i];
        }
        Val *c = sq_alloc(p, bytes);
        if (!c || greedy_realloc((void **) &p->rows[t], &p->alloc[t], p->n[t] + 1, sizeof *p->rows[t], 1024) < 0)
                return errbuf_fail(err, errlen, -ENOMEM, "%s: out of memory", s->name);
        char *text = (char *) (c + n);
        for (size_t i = 0; i < n; i++) {
                c[i] = v[i];
                if (len1[i]) {
                        c[i].s = memcpy(text, v[i].s, len1[i]);
                        c[i].len = len1[i] - 1;
                        c[i].sized = true;
                        text += len1[i];
                }
        }
        p->rows[t][p->n[t]++] = (SqRow){id, p->seq++, affected, c};
        return 0;
}

/* Rows of one table by its key: the values at the key's positions, then arrival. */
static int sq_cmp_keys(const SqRow *x, const SqRow *y, const unsigned *cols, size_t n) {
        for (size_t i = 0; i < n; i++) {
                int c = strcmp(x->v[cols[i]].s, y->v[cols[i]].s);
                if (c)
                        return c;
        }
        return (x->seq > y->seq) - (x->seq < y->seq);
}

static int sq_cmp_record(const void *a, const void *b) { /* records (id) */
        return sq_cmp_keys(a, b, (const unsigned[]){0}, 1);
}

static int sq_cmp_image(const void *a, const void *b) { /* node_images (cluster, node, namespace, ref) */
        return sq_cmp_keys(a, b, (const unsigned[]){0, 1, 2, 3}, 4);
}

static int sq_cmp_workload(const void *a, const void *b) {
        /* workload_history (cluster, node, k8s_namespace, pod, container, digest) */
        return sq_cmp_keys(a, b, (const unsigned[]){0, 1, 2, 3, 4, 7}, 6);
}

/* n values in one allocation, their strings copied after them (free() it). */
static Val *vals_copy(const Val *v, size_t n) {
        size_t bytes = n * sizeof(Val);
        for (size_t i = 0; i < n; i++)
                if (!v[i].is_int && v[i].s)
                        bytes += strlen(v[i].s) + 1;
        Val *c = malloc(bytes);
        if (!c)
                return NULL;
        char *text = (char *) (c + n);
        for (size_t i = 0; i < n; i++) {
                c[i] = v[i];
                if (!v[i].is_int && v[i].s) {
                        size_t len = strlen(v[i].s);
                        c[i].s = memcpy(text, v[i].s, len + 1);
                        c[i].len = len;
                        c[i].sized = true;
                        text += len + 1;
                }
        }
        return c;
}

static int cmp_dup_rowid(const void *a, const void *b) {
        int64_t x = (*(Val *const *) a)[REC_COLUMNS].i, y = (*(Val *const *) b)[REC_COLUMNS].i;
        return (x > y) - (x < y);
}

/* What a pull or finding record changes in the node state: its node_images row and, for a
 * finding naming a pod, its workload_history row. From the record as received (PostgreSQL,
 * into the batch's arrays) or as read back from `records` (SQLite, sq_apply: deferred). */
typedef struct StateIn {
        FindingKind kind;
        uint64_t time_usec;
        const char *cluster, *node, *namespace, *ref, *name, *tag, *digest, *previous_digest, *revision,
                *media_type, *w_namespace, *pod, *container;
} StateIn;
static int state_of(Store *s, const StateIn *x, SqTable only, char *err, size_t errlen);
static int sq_apply_to(Store *s, size_t keep, int64_t upto, char *err, size_t errlen);

/* The state mark and the last rowid of records (S_SQ_APPLIED). */
typedef struct SqMark {
        int64_t applied, last;
        bool found;
} SqMark;

static int sq_mark_row(void *userdata, size_t ncols, const char *const *v) {
        SqMark *m = userdata;
        if (ncols != 2 || !v[0] || !v[1])
                return -EBADMSG;
        m->applied = strtoll(v[0], NULL, 10);
        m->last = strtoll(v[1], NULL, 10);
        m->found = true;
        return 0;
}

static int sq_mark(Store *s, SqMark *m, char *err, size_t errlen) {
        *m = (SqMark){0};
        int r = db_read(s, S_SQ_APPLIED, NULL, 0, sq_mark_row, m, err, errlen);
        if (r >= 0 && !m->found)
                r = errbuf_fail(err, errlen, -EIO, "%s: state_applied has no row", s->name);
        if (r >= 0)
                atomic_store(&s->state_pending, (size_t) (m->last > m->applied ? m->last - m->applied : 0));
        return r;
}

static int sq_flush(Store *s, char *err, size_t errlen) {
        static int (*const cmp[_SQ_MAX])(const void *, const void *) = {
                [SQ_RECORDS] = sq_cmp_record, [SQ_IMAGES] = sq_cmp_image, [SQ_WORKLOADS] = sq_cmp_workload};
        SqPending *p = &s->sq;
        int r = 0;
        if (p->n[SQ_RECORDS] > 0) {
                /* rowids in order of arrival (the rows are not sorted yet), above the mark
                 * and above every rowid there is */
                SqMark m;
                r = sq_mark(s, &m, err, errlen);
                int64_t base = m.applied > m.last ? m.applied : m.last;
                for (size_t i = 0; r >= 0 && i < p->n[SQ_RECORDS]; i++)
                        ((Val *) p->rows[SQ_RECORDS][i].v)[REC_COLUMNS] = I(base + 1 + (int64_t) i);
        }
        Val **dups = NULL; /* copies of the records already stored (same id) */
        size_t n_dups = 0, alloc_dups = 0;
        for (size_t t = 0; r >= 0 && t < _SQ_MAX; t++) {
                if (p->n[t] > 1)
                        qsort(p->rows[t], p->n[t], sizeof *p->rows[t], cmp[t]);
                for (size_t i = 0; r >= 0 && i < p->n[t]; i++) {
                        const SqRow *w = &p->rows[t][i];
                        r = db_write(s, w->id, w->v, stmts[w->id].nparams, w->affected, err, errlen);
                        if (r >= 0 && t == SQ_RECORDS && sqlite3_changes(s->db) == 0) {
                                Val *c = vals_copy(w->v, REC_COLUMNS + 1);
                                if (!c || greedy_realloc((void **) &dups, &alloc_dups, n_dups + 1, sizeof *dups, 8) < 0) {
                                        free(c);
                                        r = errbuf_fail(err, errlen, -ENOMEM, "%s: out of memory", s->name);
                                } else
                                        dups[n_dups++] = c;
                        }
                }
        }
        sq_reset(p);
        /* a record received again changes the node state again, as it did when the state
         * was written with the records (and still does on PostgreSQL): in its place in the
         * order of arrival, i.e. after everything queued before it */
        if (n_dups > 1)
                qsort(dups, n_dups, sizeof *dups, cmp_dup_rowid);
        for (size_t i = 0; r >= 0 && i < n_dups; i++) {
                const Val *v = dups[i];
                int64_t rowid = v[REC_COLUMNS].i;
                r = sq_apply_to(s, 0, rowid - 1, err, errlen);
                StateIn x = {.kind = finding_kind_from_string(v[1].s), .time_usec = (uint64_t) v[3].i,
                             .cluster = v[5].s, .node = v[6].s, .namespace = v[7].s, .ref = v[8].s, .name = v[9].s,
                             .tag = v[10].s, .digest = v[11].s, .previous_digest = v[12].s, .revision = v[14].s,
                             .media_type = v[15].s, .w_namespace = v[16].s, .pod = v[17].s, .container = v[18].s};
                if (r >= 0 && x.kind >= 0)
                        r = state_of(s, &x, _SQ_MAX, err, errlen);
                if (r >= 0)
                        r = sq_flush(s, err, errlen);
                if (r >= 0)
                        r = db_write(s, S_SQ_APPLIED_SET, (Val[]){I(rowid)}, 1, NULL, err, errlen);
        }
        for (size_t i = 0; i < n_dups; i++)
                free(dups[i]);
        free(dups);
        if (r < 0)
                sq_reset(p);
        return r;
}

static size_t sq_rows(const SqPending *p) {
        return p->n[SQ_RECORDS] + p->n[SQ_IMAGES] + p->n[SQ_WORKLOADS];
}

/* SQLite: a state row of table t queued for sq_flush (only = _SQ_MAX), or written now if
 * t is the table only names (the apply's passes, each over its table's key order). */
static int sq_put(Store *s, SqTable t, SqTable only, StmtId id, const Val *v, size_t n, char *err, size_t errlen) {
        if (only == _SQ_MAX)
                return sq_defer(s, t, id, v, n, NULL, err, errlen);
        return only == t ? db_write(s, id, v, n, NULL, err, errlen) : 0;
}

static int state_of(Store *s, const StateIn *x, SqTable only, char *err, size_t errlen) {
        Val row[] = {T(x->cluster), T(x->node),   T(x->namespace),  T(x->ref),      T(x->name),
                     T(x->tag),     T(x->digest), T(x->media_type), T(x->revision), I(x->time_usec)};
        if (x->kind == FINDING_PULL)
                return s->engine == STORE_POSTGRESQL
                               ? state_add_pull(s, row, err, errlen)
                               : sq_put(s, SQ_IMAGES, only, S_PULL_UPSERT, row, ELEMENTSOF(row), err, errlen);
        if (!x->ref[0])
                return 0; /* an offline check's finding: no node state to change */
        unsigned bit = 1u << x->kind;
        char findings[RECORD_FINDINGS_TEXT_MAX];
        record_findings_text(bit, findings, sizeof findings);
        Val frow[] = {T(x->cluster),       T(x->node),         T(x->namespace),  T(x->ref),
                      T(x->name),          T(x->tag),          T(x->digest),     T(x->media_type),
                      T(x->revision),      I(x->time_usec),    I(record_image_pinned(bit)),
                      I(record_image_latest(bit)), I(record_image_revision_verified(bit)),
                      I(record_image_compliant(bit)), T(findings), I(bit)};
        /* a tag_moved names a pod still running the previous digest (and its revision is
         * not in the record): that is what the pod's history gets */
        bool moved = x->kind == FINDING_TAG_MOVED && x->previous_digest[0];
        Val wv[] = {T(x->cluster), T(x->node), T(x->w_namespace), T(x->pod), T(x->container), T(x->name),
                    T(x->ref), T(moved ? x->previous_digest : x->digest), T(moved ? "" : x->revision),
                    I(x->time_usec)};
        bool has_workload = x->pod[0] || x->container[0];
        if (s->engine == STORE_POSTGRESQL)
                return state_add_finding(s, frow, has_workload ? wv : NULL, err, errlen);
        int r = sq_put(s, SQ_IMAGES, only, S_FINDING_UPSERT, frow, ELEMENTSOF(frow), err, errlen);
        if (r >= 0 && has_workload)
                r = sq_put(s, SQ_WORKLOADS, only, S_WORKLOAD_UPSERT, wv, ELEMENTSOF(wv), err, errlen);
        return r;
}

/* A pull or finding record: its row in `records`, and (PostgreSQL) its node state. On
 * SQLite the state follows from the record later, in order of arrival (sq_apply). */
static int ingest_finding(Store *s, const char *cluster, const Finding *f, uint64_t received_usec,
                          size_t *inserted, char *err, size_t errlen) {
        const FindingImage *im = &f->image;
        const FindingWorkload *w = &f->workload;
        Val rec[] = {
                T(f->id),           T(finding_kind_to_string(f->kind)), T(severity_to_string(f->severity)),
                I(f->time_usec),    I(received_usec),    T(cluster),    T(f->node),
                T(f->namespace),    T(im->ref),          T(im->name),   T(im->tag),
                T(im->digest),      T(im->previous_digest), T(im->expected_digest), T(im->revision),
                T(im->media_type),  T(w->namespace),     T(w->pod),     T(w->container),
                T(w->container_id), T(f->message),
                I(0), /* SQLite: the rowid, given by sq_flush */
        };
        _Static_assert(ELEMENTSOF(rec) == REC_COLUMNS + 1, "one array per column of records, and the rowid");
        if (s->engine == STORE_SQLITE)
                return sq_defer(s, SQ_RECORDS, S_SQ_RECORD_INSERT, rec, ELEMENTSOF(rec), inserted, err, errlen);
        /* sent in batches of REC_ARRAY_ROWS; PG adds the inserted rows at the next sync */
        int r = arrays_add(&s->rec_arrays, rec, REC_COLUMNS);
        if (r < 0)
                return errbuf_fail(err, errlen, r, "%s: out of memory", s->name);
        if (s->rec_arrays.rows >= REC_ARRAY_ROWS)
                r = rec_arrays_flush(s, inserted, err, errlen);
        if (r < 0)
                return r;
        StateIn x = {.kind = f->kind, .time_usec = f->time_usec, .cluster = cluster, .node = f->node,
                     .namespace = f->namespace, .ref = im->ref, .name = im->name, .tag = im->tag,
                     .digest = im->digest, .previous_digest = im->previous_digest, .revision = im->revision,
                     .media_type = im->media_type, .w_namespace = w->namespace, .pod = w->pod,
                     .container = w->container};
        return state_of(s, &x, _SQ_MAX, err, errlen);
}

/* SQLite: the node state of the records above the mark (migration 13), applied in
 * chunks of SQ_APPLY_CHUNK rowids, all in the caller's transaction: the chunk's records
 * read back twice, in node_images' key order and in workload_history's (same key: in
 * order of arrival), SQLite sorting them, each record's upsert written as ingest wrote
 * it before (state_of: the same statements), then the mark moved to the chunk's end.
 * Why: applied per group (2,000 records) the upserts land at random places of
 * node_images and workload_history, B-trees far larger than the page cache, and each
 * group read and wrote most of their leaf pages again; applied many groups at a time,
 * in key order, a leaf is read and written once per chunk. 20,000: the collector's peak
 * RSS 29.3 MiB and 0.90 GB written for 200,000 records (records_ab_bench.sh; at 5,000:
 * 26.2 MiB and 1.40 GB; at 50,000: 34.8 MiB, 0.82 GB). Sorted in C instead (sq_flush
 * over copies, ~1.3 KB per record) 5,000 already took 28 MiB.
 * keep: chunks are applied while more than keep records wait (0: all of them). */
#define SQ_APPLY_CHUNK 20000

typedef struct SqApply {
        Store *s;
        SqTable only;
        char *err;
        size_t errlen;
} SqApply;

static int sq_apply_row(void *userdata, size_t ncols, const char *const *v) {
        SqApply *a = userdata;
        if (ncols != 16)
                return -EBADMSG;
        for (size_t i = 0; i < ncols; i++)
                if (!v[i])
                        return -EBADMSG;
        StateIn x = {.kind = finding_kind_from_string(v[1]), .time_usec = strtoull(v[2], NULL, 10),
                     .cluster = v[3], .node = v[4], .namespace = v[5], .ref = v[6], .name = v[7], .tag = v[8],
                     .digest = v[9], .previous_digest = v[10], .revision = v[11], .media_type = v[12],
                     .w_namespace = v[13], .pod = v[14], .container = v[15]};
        if (x.kind < 0)
                return 0; /* not a record this collector wrote: no state */
        int r = state_of(a->s, &x, a->only, a->err, a->errlen);
        return r < 0 ? r : 0;
}

/* ... up to rowid upto at most */
static int sq_apply_to(Store *s, size_t keep, int64_t upto, char *err, size_t errlen) {
        assert(s->engine == STORE_SQLITE);
        for (;;) {
                SqMark m;
                int r = sq_mark(s, &m, err, errlen);
                if (r < 0)
                        return r;
                int64_t last = m.last < upto ? m.last : upto;
                if (last <= m.applied || (size_t) (last - m.applied) <= keep)
                        return 0;
                if (last - m.applied > SQ_APPLY_CHUNK)
                        last = m.applied + SQ_APPLY_CHUNK;
                Val range[] = {I(m.applied), I(last)};
                SqApply a = {.s = s, .only = SQ_IMAGES, .err = err, .errlen = errlen};
                r = db_read(s, S_SQ_PENDING_IMAGES, range, 2, sq_apply_row, &a, err, errlen);
                a.only = SQ_WORKLOADS;
                if (r >= 0)
                        r = db_read(s, S_SQ_PENDING_WORKLOADS, range, 2, sq_apply_row, &a, err, errlen);
                if (r >= 0)
                        r = db_write(s, S_SQ_APPLIED_SET, (Val[]){I(last)}, 1, NULL, err, errlen);
                if (r < 0)
                        return r;
        }
}

static int sq_apply(Store *s, size_t keep, char *err, size_t errlen) {
        return sq_apply_to(s, keep, INT64_MAX, err, errlen);
}

static int ingest_request_start(Store *s, const char *cluster, uint64_t received_usec, char *err, size_t errlen) {
        IngestState *g = &s->ing;
        if (g->n_req >= STORE_GROUP_MAX)
                return errbuf_fail(err, errlen, -E2BIG, "more than %d requests in one transaction", STORE_GROUP_MAX);
        IngestRequest *q = &g->req[g->n_req];
        *q = (IngestRequest){.has_cluster = cluster != NULL, .received_usec = received_usec};
        if (cluster && strcpy_bounded(q->cluster, sizeof q->cluster, cluster) < 0)
                return errbuf_fail(err, errlen, -ENAMETOOLONG, "cluster name longer than %d bytes",
                                   RECORD_CLUSTER_MAX - 1);
        g->n_req++;
        if (s->touched && s->touched->n > 0)
                memset(s->touched, 0, sizeof *s->touched);
        return 0;
}

/* True if this request touched (cluster, node) already; else notes it (when there is room). */
static bool touched_before(Store *s, const char *cluster, const char *node) {
        if (!s->touched) {
                s->touched = calloc(1, sizeof *s->touched);
                if (!s->touched)
                        return false; /* then every record touches, as before */
        }
        Touched *t = s->touched;
        uint64_t h1 = 0xcbf29ce484222325ULL, h2 = 0x84222325cbf29ce4ULL;
        for (const char *const *part = (const char *const[]){cluster, node, NULL}; *part; part++) {
                for (const unsigned char *c = (const unsigned char *) *part; *c; c++) {
                        h1 = (h1 ^ *c) * 0x100000001b3ULL;
                        h2 = (h2 + *c) * 0x9e3779b97f4a7c15ULL;
                        h2 ^= h2 >> 29;
                }
                h1 = (h1 ^ 0xff) * 0x100000001b3ULL; /* no byte of UTF-8 text: "a","bc" ≠ "ab","c" */
                h2 = (h2 + 0xff) * 0x9e3779b97f4a7c15ULL;
                h2 ^= h2 >> 29;
        }
        h1 |= 1; /* 0 = free slot */
        size_t i = h1 % TOUCHED_SLOTS;
        for (; t->h1[i]; i = (i + 1) % TOUCHED_SLOTS)
                if (t->h1[i] == h1 && t->h2[i] == h2)
                        return true;
        if (t->n < TOUCHED_SLOTS / 4 * 3) {
                t->h1[i] = h1;
                t->h2[i] = h2;
                t->n++;
        }
        return false;
}

int store_ingest_begin(Store *s, const char *cluster, uint64_t received_usec, char *err, size_t errlen) {
        if (!s)
                return -EINVAL;
        pthread_mutex_lock(&s->lock);
        s->ing.active = true;
        s->ing.n_req = 0;
        s->ing.error = 0;
        int r = ingest_request_start(s, cluster, received_usec, err, errlen);
        if (r >= 0) {
                r = db_begin(s, err, errlen);
                if (r < 0)
                        db_rollback(s);
        }
        if (r < 0) {
                s->ing.active = false;
                pthread_mutex_unlock(&s->lock);
        }
        return r;
}

int store_ingest_next(Store *s, const char *cluster, uint64_t received_usec, char *err, size_t errlen) {
        if (!s || !s->ing.active)
                return -EINVAL;
        if (s->ing.error < 0)
                return s->ing.error;
        int r = ingest_request_start(s, cluster, received_usec, err, errlen);
        if (r < 0)
                s->ing.error = r;
        return r;
}

int store_ingest_add(Store *s, const Record *records, size_t n, char *err, size_t errlen) {
        if (!s || !s->ing.active || (!records && n > 0))
                return -EINVAL;
        if (s->ing.error < 0)
                return s->ing.error;
        IngestRequest *g = &s->ing.req[s->ing.n_req - 1];
        char(*clusters)[RECORD_CLUSTER_MAX] = NULL;
        int r = 0;
        if (!g->has_cluster) {
                clusters = calloc(n ? n : 1, sizeof *clusters);
                if (!clusters)
                        r = errbuf_fail(err, errlen, -ENOMEM, "%s: out of memory", s->name);
                for (size_t i = 0; r >= 0 && i < n; i++)
                        r = resolve_cluster(s, &records[i], clusters[i], err, errlen);
        }
        /* nodes first: an inventory's guard reads its node's row */
        for (size_t i = 0; r >= 0 && i < n; i++) {
                const char *cl = g->has_cluster ? g->cluster : clusters[i];
                if (touched_before(s, cl, records[i].finding.node))
                        continue;
                if (s->engine == STORE_POSTGRESQL) {
                        r = arrays_add(&s->state.touch, (Val[]){T(cl), T(records[i].finding.node)}, 2);
                        if (r < 0)
                                r = errbuf_fail(err, errlen, r, "%s: out of memory", s->name);
                } else
                        r = db_write(s, S_NODE_TOUCH,
                                     (Val[]){T(cl), T(records[i].finding.node), I(g->received_usec)}, 3, NULL, err,
                                     errlen);
        }
        if (r >= 0 && s->state.touch.rows > 0) {
                Val v[3] = {[2] = I(g->received_usec)};
                arrays_finish(&s->state.touch, 2, v);
                r = db_write(s, S_NODE_TOUCH_MANY, v, 3, NULL, err, errlen);
        }
        arrays_reset(&s->state.touch);
        /* PostgreSQL: which inventories' nodes are fresh, read after their touch */
        for (size_t i = 0; r >= 0 && s->engine == STORE_POSTGRESQL && i < n; i++)
                if (records[i].type == RECORD_INVENTORY &&
                    fresh_add(s, g->has_cluster ? g->cluster : clusters[i], records[i].finding.node) < 0)
                        r = errbuf_fail(err, errlen, -ENOMEM, "%s: out of memory", s->name);
        if (r >= 0 && s->engine == STORE_POSTGRESQL)
                r = fresh_send(s, err, errlen);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                const char *cl = g->has_cluster ? g->cluster : clusters[i];
                if (records[i].type == RECORD_INVENTORY) {
                        /* the pulls and findings before it change the node's state first
                         * (SQLite: all of those still queued, stored or of this call) */
                        if (s->engine == STORE_POSTGRESQL)
                                r = state_flush(s, err, errlen);
                        else {
                                r = sq_flush(s, err, errlen);
                                if (r >= 0)
                                        r = sq_apply(s, 0, err, errlen);
                        }
                        if (r >= 0)
                                r = ingest_inventory(s, cl, &records[i], g->received_usec, &g->res, err, errlen);
                        g->parts++;
                } else {
                        /* the inventories before it change the node's state first */
                        if (s->inv.n_nodes > 0)
                                r = inv_flush(s, err, errlen);
                        if (r >= 0)
                                r = ingest_finding(s, cl, &records[i].finding, g->received_usec, &g->inserted,
                                                   err, errlen);
                        g->findings++;
                }
                /* its rows are no longer what S_NODES_FRESH read */
                FreshNode *f = s->n_fresh ? fresh_find(s, cl, records[i].finding.node) : NULL;
                if (f)
                        f->changed = true;
        }
        /* before the records and the clusters they point into go */
        if (r >= 0 && s->inv.n_nodes > 0)
                r = inv_flush(s, err, errlen);
        inv_reset(&s->inv);
        if (r >= 0 && sq_rows(&s->sq) >= SQ_FLUSH_ROWS)
                r = sq_flush(s, err, errlen);
        if (r >= 0 && s->engine == STORE_POSTGRESQL)
                r = state_flush(s, err, errlen);
        /* fresh nodes' rows wait for the end of the transaction's requests (a COPY is a
         * round trip that nothing overlaps) unless they take more than COPY_FLUSH_BYTES */
        if (r >= 0 && s->copy_images.len + s->copy_pods.len > COPY_FLUSH_BYTES)
                r = copy_flush(s, err, errlen);
        /* S_NODES_FRESH's rows are read before its nodes are forgotten (an inventory in
         * parts that is not complete yet never asked): none can fall on the next call's */
        if (r >= 0 && s->fresh_unread)
                r = pg_sync(s, err, errlen);
        fresh_reset(s);
        if (r >= 0)
                r = rec_arrays_flush(s, &g->inserted, err, errlen);
        arrays_reset(&s->rec_arrays);
        if (r < 0) {
                state_reset(&s->state); /* after an error: nothing half-built is sent with the next batch */
                copy_reset(s);
                sq_reset(&s->sq);
        }
        free(clusters);
        if (r < 0)
                s->ing.error = r;
        return r;
}

int store_ingest_wait(Store *s, char *err, size_t errlen) {
        if (!s || !s->ing.active)
                return -EINVAL;
        if (s->ing.error < 0)
                return s->ing.error;
        int r = 0;
        if (s->engine == STORE_POSTGRESQL) {
                r = copy_flush(s, err, errlen);
                if (r >= 0)
                        r = pg_sync(s, err, errlen);
        } else
                r = sq_flush(s, err, errlen);
        if (r < 0)
                s->ing.error = r;
        return r;
}

int store_ingest_end(Store *s, bool commit, StoreIngestResult *ret, char *err, size_t errlen) {
        if (!s || !s->ing.active)
                return -EINVAL;
        IngestState *g = &s->ing;
        int r = g->error;
        if (commit && r >= 0)
                r = s->engine == STORE_POSTGRESQL ? copy_flush(s, err, errlen) : sq_flush(s, err, errlen);
        /* SQLite: the state of the records queued so far, unless the caller said more
         * requests are coming (then only what is past the bound) */
        if (commit && r >= 0 && s->engine == STORE_SQLITE)
                r = sq_apply(s, s->state_defer ? STORE_STATE_DEFER_MAX : 0, err, errlen);
        s->state_defer = false;
        if (commit && r >= 0)
                r = db_commit(s, err, errlen);
        copy_reset(s);
        sq_reset(&s->sq);
        if (!commit || r < 0)
                db_rollback(s);
        for (size_t i = 0; commit && r >= 0 && ret && i < g->n_req; i++) {
                /* PG counts inserted rows at sync time: only now is .inserted final */
                const IngestRequest *q = &g->req[i];
                ret[i] = q->res;
                ret[i].accepted = q->inserted + q->parts;
                ret[i].duplicates = q->findings - q->inserted;
        }
        g->active = false;
        pthread_mutex_unlock(&s->lock);
        return commit ? r : 0;
}

void store_ingest_defer(Store *s, bool defer) {
        if (s && s->ing.active)
                s->state_defer = defer;
}

size_t store_state_pending(Store *s) {
        return s ? atomic_load(&s->state_pending) : 0;
}

/* SQLite, lock held, no transaction open: the queued state applied, in a transaction of
 * its own (none taken when nothing is queued) */
static int state_sync_locked(Store *s, char *err, size_t errlen) {
        if (s->engine != STORE_SQLITE)
                return 0;
        SqMark m;
        int r = sq_mark(s, &m, err, errlen);
        if (r < 0 || m.last <= m.applied)
                return r;
        r = sqlite_exec(s, "BEGIN IMMEDIATE", err, errlen);
        if (r >= 0)
                r = sq_apply(s, 0, err, errlen);
        if (r >= 0)
                r = sqlite_exec(s, "COMMIT", err, errlen);
        if (r < 0 && !sqlite3_get_autocommit(s->db))
                (void) sqlite_exec(s, "ROLLBACK", NULL, 0);
        return r;
}

int store_state_sync(Store *s, char *err, size_t errlen) {
        if (!s)
                return -EINVAL;
        pthread_mutex_lock(&s->lock);
        int r = state_sync_locked(s, err, errlen);
        pthread_mutex_unlock(&s->lock);
        return r;
}

int store_ingest(Store *s, const char *cluster, const Record *records, size_t n, uint64_t received_usec,
                 StoreIngestResult *ret, char *err, size_t errlen) {
        int r = store_ingest_begin(s, cluster, received_usec, err, errlen);
        if (r < 0)
                return r;
        r = store_ingest_add(s, records, n, err, errlen);
        int k = store_ingest_end(s, r >= 0, ret, err, errlen);
        return r < 0 ? r : k;
}

/* ------------------------------------------------------------------ upkeep ---- */

typedef struct RollupAcc {
        char cluster[RECORD_CLUSTER_MAX];
        char k8s_namespace[PW_K8S_NAME_MAX];
        int64_t images, compliant, pinned, latest, verified, findings;
} RollupAcc;

typedef struct RollupCtx {
        RollupAcc *acc;
        size_t n, alloc;
        int error;
} RollupCtx;

static RollupAcc *rollup_get(RollupCtx *c, const char *cluster, const char *ns) {
        for (size_t i = 0; i < c->n; i++)
                if (streq_ptr(c->acc[i].cluster, cluster) && streq_ptr(c->acc[i].k8s_namespace, ns))
                        return &c->acc[i];
        if (greedy_realloc((void **) &c->acc, &c->alloc, c->n + 1, sizeof *c->acc, 16) < 0)
                return NULL;
        RollupAcc *a = &c->acc[c->n++];
        *a = (RollupAcc){0};
        (void) strcpy_bounded(a->cluster, sizeof a->cluster, cluster);
        (void) strcpy_bounded(a->k8s_namespace, sizeof a->k8s_namespace, ns);
        return a;
}

/* One row per (cluster, k8s_namespaces, findings_mask) group: the counts it adds. */
static int rollup_row(void *userdata, size_t ncols, const char *const *v) {
        RollupCtx *c = userdata;
        if (ncols < 4 || !v[0] || !v[1] || !v[2] || !v[3])
                return -EIO;
        unsigned mask = (unsigned) strtoul(v[2], NULL, 10);
        int64_t count = strtoll(v[3], NULL, 10);
        int64_t nfind = __builtin_popcount(mask & ~(1u << FINDING_PULL));
        /* '' = every image on the cluster's nodes; then once per namespace using it */
        const char *list = v[1];
        char ns[PW_K8S_NAME_MAX];
        for (const char *p = NULL;;) {
                const char *name = "";
                if (p) {
                        const char *end = strchr(p, ',');
                        size_t l = end ? (size_t) (end - p) : strlen(p);
                        if (l >= sizeof ns)
                                l = sizeof ns - 1;
                        memcpy(ns, p, l);
                        ns[l] = 0;
                        name = ns;
                }
                RollupAcc *a = rollup_get(c, v[0], name);
                if (!a)
                        return -ENOMEM;
                a->images += count;
                a->compliant += record_image_compliant(mask) ? count : 0;
                a->pinned += record_image_pinned(mask) ? count : 0;
                a->latest += record_image_latest(mask) ? count : 0;
                a->verified += record_image_revision_verified(mask) ? count : 0;
                a->findings += nfind * count;
                if (!p) {
                        if (!*list)
                                break;
                        p = list;
                } else {
                        const char *end = strchr(p, ',');
                        if (!end)
                                break;
                        p = end + 1;
                }
        }
        return 0;
}

int store_maintain(Store *s, uint64_t now_usec, unsigned retention_days, char *err, size_t errlen) {
        char day[16], cutoff[24], stale[24];
        time_t sec = (time_t) (now_usec / 1000000ULL);
        struct tm tm;
        gmtime_r(&sec, &tm);
        strftime(day, sizeof day, "%Y-%m-%d", &tm);
        uint64_t keep = (uint64_t) retention_days * 86400ULL * 1000000ULL;
        snprintf(cutoff, sizeof cutoff, "%" PRIu64, retention_days && now_usec > keep ? now_usec - keep : 0);
        snprintf(stale, sizeof stale, "%" PRIu64, now_usec > 86400000000ULL ? now_usec - (uint64_t) 86400000000ULL : (uint64_t) 0);

        RollupCtx c = {0};
        pthread_mutex_lock(&s->lock);
        /* the rollup reads the state; retention may delete records still queued */
        int r = state_sync_locked(s, err, errlen);
        if (r >= 0)
                r = db_query_plain(s,
                               "SELECT cluster, k8s_namespaces, findings_mask, COUNT(*) FROM node_images"
                               " GROUP BY cluster, k8s_namespaces, findings_mask",
                               rollup_row, &c, err, errlen);
        if (r >= 0)
                r = db_exec_sql(s, s->engine == STORE_SQLITE ? "BEGIN IMMEDIATE" : "BEGIN", err, errlen);
        if (r >= 0) {
                const char *p[] = {day};
                r = s->engine == STORE_SQLITE ? 0 : 0;
                /* today's rows are recomputed whole: a cluster that lost its images drops to 0 rows */
                if (s->engine == STORE_POSTGRESQL)
                        r = pg_exec_params(s, "DELETE FROM daily_rollup WHERE day = $1", 1, p, NULL, NULL, err,
                                           errlen);
                else {
                        sqlite3_stmt *st = NULL;
                        int idx[1];
                        if (sqlite3_prepare_v2(s->db, "DELETE FROM daily_rollup WHERE day = $1", -1, &st, NULL) !=
                            SQLITE_OK)
                                r = fail_db(s, err, errlen, -EIO, "prepare", sqlite3_errmsg(s->db));
                        else {
                                sqlite_param_index(st, 1, idx);
                                r = sqlite_run(s, st, idx, (Val[]){T(day)}, 1, NULL, NULL, NULL, err, errlen);
                        }
                        sqlite3_finalize(st);
                }
        }
        static const char ins[] = "INSERT INTO daily_rollup (day, cluster, k8s_namespace, images, compliant, pinned,"
                                  " latest, revision_verified, findings) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        _Static_assert(_FINDING_KIND_MAX == 7, "the retention statement names every finding kind");
        /* every kind named, so that records_kind_time serves the range (migration 2) */
        static const char del_records[] = "DELETE FROM records WHERE kind IN ('latest_tag', 'mutable_tag',"
                                          " 'tag_moved', 'digest_mismatch', 'revision_mismatch', 'untraceable',"
                                          " 'pull') AND time_usec < $1";
        static const char del_parts[] = "DELETE FROM inventory_parts WHERE received_usec < $1";
        for (size_t i = 0; r >= 0 && i <= c.n + 1; i++) {
                char nums[6][24];
                const char *p[9];
                size_t np;
                const char *sql;
                if (i < c.n) {
                        RollupAcc *a = &c.acc[i];
                        int64_t x[6] = {a->images, a->compliant, a->pinned, a->latest, a->verified, a->findings};
                        for (int k = 0; k < 6; k++)
                                snprintf(nums[k], sizeof nums[k], "%" PRId64, x[k]);
                        p[0] = day, p[1] = a->cluster, p[2] = a->k8s_namespace;
                        for (int k = 0; k < 6; k++)
                                p[3 + k] = nums[k];
                        np = 9;
                        sql = ins;
                } else if (i == c.n) {
                        if (!retention_days)
                                continue;
                        p[0] = cutoff, np = 1, sql = del_records;
                } else
                        p[0] = stale, np = 1, sql = del_parts;
                if (s->engine == STORE_POSTGRESQL)
                        r = pg_exec_params(s, sql, np, p, NULL, NULL, err, errlen);
                else {
                        sqlite3_stmt *st = NULL;
                        int idx[9];
                        Val v[9];
                        if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
                                r = fail_db(s, err, errlen, -EIO, "prepare", sqlite3_errmsg(s->db));
                        else {
                                for (size_t k = 0; k < np; k++)
                                        v[k] = T(p[k]);
                                sqlite_param_index(st, np, idx);
                                r = sqlite_run(s, st, idx, v, np, NULL, NULL, NULL, err, errlen);
                        }
                        sqlite3_finalize(st);
                }
        }
        if (r >= 0)
                r = db_exec_sql(s, "COMMIT", err, errlen);
        else if (s->engine == STORE_SQLITE ? !sqlite3_get_autocommit(s->db)
                                           : (!pg_connection_lost(s) && PQtransactionStatus(s->pg) != PQTRANS_IDLE))
                (void) db_exec_sql(s, "ROLLBACK", NULL, 0);
        pthread_mutex_unlock(&s->lock);
        free(c.acc);
        return r;
}
