/* The fleet store: what pullwatch-fleet keeps of every node's truth, on SQLite (the
 * embedded default, one file in WAL mode) or PostgreSQL (several collectors, one
 * database). One interface, two engines, the same schema and semantics on both.
 *
 * This header is the contract between the collector (ingest, fleet/store*.c) and the
 * report (fleet/report*.c): the report reads only through store_query() and the tables
 * below; the collector writes only through store_ingest().
 *
 * Schema (version 12; migrations are applied at open, in order, each in a transaction,
 * recorded in schema_migrations; on PostgreSQL one collector migrates at a time under
 * pg_advisory_lock). Times are CLOCK_REALTIME microseconds since the epoch (BIGINT /
 * INTEGER). Booleans are INTEGER 0/1 on both engines. Every text column is NOT NULL,
 * '' when unknown. `cluster` is what the agent's bearer token names (tokens file), or,
 * when the collector runs without authentication, the record's own `cluster` field.
 *
 *   schema_migrations(version INTEGER PRIMARY KEY, applied_usec BIGINT NOT NULL)
 *
 *   records        -- every pull and finding record, once (by id); never inventories
 *     id TEXT PRIMARY KEY,            -- the agent's stable record id
 *     kind TEXT,                      -- pull | latest_tag | mutable_tag | tag_moved |
 *                                     -- digest_mismatch | revision_mismatch | untraceable
 *     severity TEXT, time_usec BIGINT, received_usec BIGINT,
 *     cluster TEXT, node TEXT, namespace TEXT,               -- containerd namespace
 *     ref TEXT, name TEXT, tag TEXT, digest TEXT,            -- image.*
 *     previous_digest TEXT, expected_digest TEXT, revision TEXT, media_type TEXT,
 *     k8s_namespace TEXT, pod TEXT, container TEXT, container_id TEXT,  -- workload.*
 *     message TEXT
 *     indexes: (kind, time_usec), (name) of pulls only  [(time_usec), (cluster, node) until schema 2;
 *              (name) of every record until schema 5]
 *
 *   nodes          -- one row per node that ever reported
 *     cluster TEXT, node TEXT, PRIMARY KEY (cluster, node),
 *     first_seen_usec BIGINT, last_seen_usec BIGINT,  -- any accepted record
 *     last_inventory_usec BIGINT                      -- 0 until a complete inventory
 *     indexes: (node)  [from schema 4]
 *
 *   node_images    -- each node's current state: which digest each reference is at now
 *     cluster TEXT, node TEXT, namespace TEXT, ref TEXT,
 *     PRIMARY KEY (cluster, node, namespace, ref),
 *     name TEXT, tag TEXT, digest TEXT, media_type TEXT, revision TEXT,
 *     pinned INTEGER,             -- by digest, or by a tag the agent judged immutable
 *     latest INTEGER,             -- a latest_tag finding stands for this digest
 *     revision_verified INTEGER,  -- neither untraceable nor revision_mismatch
 *     compliant INTEGER,          -- no finding stands (record_image_compliant())
 *     findings TEXT,              -- finding kinds that stand, sorted, comma-separated
 *     pods TEXT,                  -- JSON array of {"namespace","pod","container"}, '[]'
 *     k8s_namespaces TEXT,        -- the pods' namespaces, sorted, comma-separated
 *     updated_usec BIGINT,        -- read it as STORE_IMAGE_UPDATED_SQL() (schema 9)
 *     by_inventory INTEGER        -- 1: set by a complete inventory, as it stands in the
 *                                 -- node's last one (PostgreSQL; 0 on SQLite)  [schema 9]
 *     indexes: none [(cluster, node, name) from schema 8 until 11 (SQLite) and 12
 *              (PostgreSQL); (ref), (name) until schema 8; (digest) until schema 3]
 *     A pull record upserts its row at once; its findings update `findings` and the
 *     flags of the row whose digest they name. A complete inventory (all parts 1..N of
 *     one snapshot) replaces the node's rows wholesale; a part alone replaces nothing.
 *
 *   inventory_parts -- staging until every part of a snapshot is there
 *     cluster TEXT, node TEXT, snapshot TEXT, part INTEGER, parts INTEGER,
 *     time_usec BIGINT, images TEXT (the part's JSON array), received_usec BIGINT,
 *     PRIMARY KEY (cluster, node, snapshot, part)
 *
 *   workload_history -- what ran where, and what ran before (the rollback target)
 *     cluster TEXT, node TEXT, k8s_namespace TEXT, pod TEXT, container TEXT,
 *     name TEXT, ref TEXT, digest TEXT, revision TEXT,
 *     first_seen_usec BIGINT, last_seen_usec BIGINT,  -- read it as STORE_WORKLOAD_LAST_SEEN_SQL()
 *     by_inventory INTEGER,       -- 1: named by the node's last complete inventory
 *                                 -- (PostgreSQL; 0 on SQLite)  [schema 10]
 *     PRIMARY KEY (cluster, node, k8s_namespace, pod, container, digest)
 *     indexes: (k8s_namespace) [(cluster, node, name) from schema 8 until 11 (SQLite) and
 *              12 (PostgreSQL); (k8s_namespace, pod) until schema 6; (name) until schema 8]
 *     Every node_images and workload_history row's (cluster, node) has a nodes row (ingest
 *     touches the node first): the report reads these tables node by node, nodes joined to
 *     the primary keys' (cluster, node) ranges.
 *
 *   daily_rollup   -- compliance per day, kept past --retention (the trend)
 *     day TEXT ('YYYY-MM-DD', UTC), cluster TEXT, k8s_namespace TEXT ('' = all images
 *     on nodes of the cluster, else images in use by that namespace's pods),
 *     images INTEGER, compliant INTEGER, pinned INTEGER, latest INTEGER,
 *     revision_verified INTEGER, findings INTEGER,
 *     PRIMARY KEY (day, cluster, k8s_namespace)
 *
 * Retention: records older than --retention days are deleted; daily_rollup is not. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* When a node_images row I (a table name or alias) was last set, and when a
 * workload_history row I was last seen: a row that the node's complete inventories keep
 * naming unchanged is not rewritten each time (PostgreSQL: every UPDATE writes a new row
 * version); by_inventory = 1 marks it, and its time is then the node's last inventory's
 * (schema 9 and 10). Both engines, every reader of those columns. */
#define STORE_INVENTORY_TIME_SQL(I, COL)                                                            \
        "(CASE WHEN " I ".by_inventory = 0 THEN " I "." COL " ELSE COALESCE((SELECT CASE WHEN"       \
        " n_.last_inventory_usec > " I "." COL " THEN n_.last_inventory_usec ELSE " I "." COL       \
        " END FROM nodes n_ WHERE n_.cluster = " I ".cluster AND n_.node = " I ".node), " I "." COL \
        ") END)"
#define STORE_IMAGE_UPDATED_SQL(I) STORE_INVENTORY_TIME_SQL(I, "updated_usec")
#define STORE_WORKLOAD_LAST_SEEN_SQL(I) STORE_INVENTORY_TIME_SQL(I, "last_seen_usec")

typedef struct Store Store;

typedef enum StoreEngine {
        STORE_SQLITE,
        STORE_POSTGRESQL,
} StoreEngine;

/* Open the store named by url: "sqlite:PATH" or "postgresql://…" (any libpq URI or
 * "postgres://…"). Applies pending migrations. On failure a one-line reason naming the
 * database goes to err (errlen bytes) and a negative errno is returned. *ret is owned
 * by the caller, released with store_free(). */
int store_open(Store **ret, const char *url, char *err, size_t errlen);
Store *store_free(Store *s); /* accepts NULL, returns NULL */

/* SQLite: how long a statement waits for the write lock another process holds before it
 * fails (the collector then answers 503 + Retry-After). PostgreSQL waits for row and table
 * locks as its server is configured (lock_timeout); this is a no-op there. */
#define STORE_LOCK_TIMEOUT_MSEC 5000
void store_set_lock_timeout(Store *s, unsigned msec);
StoreEngine store_engine(const Store *s);

/* One row of a query result: ncols values as text (NULL for SQL NULL), borrowed for the
 * call only. Return 0 to go on, > 0 to stop early, < 0 to abort with that error. */
typedef int (*store_row_t)(void *userdata, size_t ncols, const char *const *values);

/* Run one read-only, parameterised query. Placeholders are $1..$n on both engines;
 * params are text (NULL binds SQL NULL). -EIO with a one-line reason in err on a
 * database error; -ENOTCONN when the database is unreachable. */
int store_query(Store *s, const char *sql, size_t nparams, const char *const *params, store_row_t row,
                void *userdata, char *err, size_t errlen);

/* ---- additions by the collector (issue 9); nothing above is renamed ----
 *
 * Added columns: node_images.findings_mask INTEGER (the kinds that stand, 1 << FindingKind,
 * kept beside `findings` so a finding record updates the flags in one statement).
 * daily_rollup.findings counts the findings that stand (an image with two kinds counts 2).
 *
 * A Store is one database connection guarded by a mutex: calls from several threads are
 * serialised, never interleaved. */

typedef struct Record Record;

typedef struct StoreIngestResult {
        size_t accepted;   /* pull and finding records stored now, plus inventory parts */
        size_t duplicates; /* pull and finding records whose id was already stored */
        size_t inventories; /* inventories completed (all parts there) and applied */
} StoreIngestResult;

/* Store a batch in one transaction: every record or none. cluster: what the request's
 * credentials name, or NULL when the collector runs without authentication (then each
 * record's own `cluster`, else the cluster its node last reported with, else "").
 * received_usec stamps the records and the nodes' last_seen. Idempotent by record id;
 * inventory parts are staged until all parts of a snapshot are there, then replace the
 * node's node_images wholesale. -ENOTCONN (database unreachable) and -EBUSY (locked)
 * mean "try again later"; -EIO any other database error; the reason goes to err. */
int store_ingest(Store *s, const char *cluster, const Record *records, size_t n, uint64_t received_usec,
                 StoreIngestResult *ret, char *err, size_t errlen);

/* The same in pieces, for a batch decoded a chunk at a time: begin takes the store's lock,
 * opens the transaction and starts its first request; add stores records of the current
 * request (an error makes every later call and the end fail); end commits (commit = true)
 * or rolls back, and releases the lock.
 *
 * Group commit: _next starts another request in the same transaction (its own cluster
 * and received time, its own counts), at most STORE_GROUP_MAX per transaction; one
 * commit, one fsync for all of them. end then fills ret[0..requests-1], one result per
 * request in order (ret may be NULL). A duplicate id within the group counts as a
 * duplicate of the request that comes later. */
#define STORE_GROUP_MAX 64
int store_ingest_begin(Store *s, const char *cluster, uint64_t received_usec, char *err, size_t errlen);
int store_ingest_next(Store *s, const char *cluster, uint64_t received_usec, char *err, size_t errlen);
int store_ingest_add(Store *s, const Record *records, size_t n, char *err, size_t errlen);
int store_ingest_end(Store *s, bool commit, StoreIngestResult *ret, char *err, size_t errlen);
/* Between _add and _next or _end: return once the database has done everything added so
 * far (PostgreSQL sends statements in pipeline mode and would otherwise do them while the
 * caller goes on; SQLite keeps a group's record writes to do them sorted, at _end or
 * here). The transaction stays open. The caller
 * learns when the work of the requests so far is over — the moment to look for more
 * requests to join the group. An error is that of the transaction, as with _add. */
int store_ingest_wait(Store *s, char *err, size_t errlen);

/* SQLite: the node state (node_images, workload_history) of pull and finding records is
 * derived from the records table, which is its queue: the records above a mark kept in
 * the database (state_applied) are applied, in order of arrival and in large sorted
 * chunks, in the transaction that moves the mark. store_ingest_end applies everything
 * queued before its commit, unless the caller said, between _begin and _end, that more
 * requests are coming (defer = true): then only while more than STORE_STATE_DEFER_MAX
 * records wait. Everything queued is applied before an inventory, by store_maintain,
 * store_open (a crash's leftovers; a report's own store) and store_query on this store,
 * and by store_state_sync. No-ops on PostgreSQL (its state is written with the records). */
#define STORE_STATE_DEFER_MAX 50000
void store_ingest_defer(Store *s, bool defer);
int store_state_sync(Store *s, char *err, size_t errlen);
/* Records whose state is queued, as last read (a gauge; any thread; 0 on PostgreSQL). */
size_t store_state_pending(Store *s);

/* SQLite: copy the write-ahead log back into the database file (a PASSIVE checkpoint)
 * once it holds STORE_CHECKPOINT_BYTES of frames; a commit never does it itself below
 * STORE_CHECKPOINT_HARD_FACTOR times that (then it does, as SQLite's wal_autocheckpoint
 * would: the log stays bounded if nobody calls this). The collector's writer calls it
 * after answering each group, so the copy and its fsync are no longer inside a commit
 * that clients wait for. Durability does not depend on it: a commit is fsync'ed in the
 * log. Returns 1 if it checkpointed, 0 if there was nothing to do (always on PostgreSQL),
 * or a negative errno with the reason in err. */
#define STORE_CHECKPOINT_BYTES (64U << 20)
#define STORE_CHECKPOINT_HARD_FACTOR 4
int store_checkpoint(Store *s, char *err, size_t errlen);
/* The threshold in bytes instead of STORE_CHECKPOINT_BYTES (the commit's own bound follows:
 * STORE_CHECKPOINT_HARD_FACTOR times it); a no-op on PostgreSQL. */
void store_set_checkpoint_bytes(Store *s, size_t bytes);

/* Upkeep, called periodically by the collector: today's daily_rollup rows (UTC day of
 * now_usec) from the current node_images; records older than retention_days deleted
 * (0 keeps everything); inventory parts staged more than a day ago dropped. */
int store_maintain(Store *s, uint64_t now_usec, unsigned retention_days, char *err, size_t errlen);

/* 0 when the database answers a trivial query now (reconnecting if needed), else
 * -ENOTCONN with the reason in err. */
int store_ping(Store *s, char *err, size_t errlen);

/* A printable name of the database for messages: "sqlite:PATH" or
 * "postgresql://HOST:PORT/DB" (never a password). Borrowed from s. */
const char *store_name(const Store *s);
