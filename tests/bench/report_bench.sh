#!/usr/bin/env bash
# The fleet report over NODES × IMAGES node_images rows (default 10,000 × 200 = 2M), on
# SQLite and on PostgreSQL, beside the core aggregate (compliance per cluster and
# namespace, and the divergent tags) written as one SQL query run by sqlite3 / psql.
# Goals (issue 10): the report ≤ 10 s, and ≤ 2× the plain query.
#
#   PULLWATCH_FLEET=build/pullwatch-fleet tests/bench/report_bench.sh
#   NODES=1000 IMAGES=50 …   a smaller fleet;   PW_BENCH_PG=0   SQLite only;   RUNS=3
#   PW_BENCH_SQLITE=FILE      keep (and reuse) the SQLite database
#   PULLWATCH_FLEET_B=BINARY  also another build's report on the same databases, right
#                             after the first's, each beside its own peer runs (an A/B)
# The schema is made by pullwatch-fleet itself (store_open applies the migrations); the
# rows are generated inside each database (recursive CTE / generate_series): 1 % of the
# nodes hold a different digest of five tags, 40 Kubernetes namespaces, 4 clusters; every
# other image is in use by a pod (node_images.pods and a workload_history row as the
# node's last inventory named it), and each node of a different digest has a pod started
# on it since that inventory (a workload_history row only).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
FLEET=${PULLWATCH_FLEET:-$ROOT/build/pullwatch-fleet}
FLEET_B=${PULLWATCH_FLEET_B:-}
NODES=${NODES:-10000}
IMAGES=${IMAGES:-200}
RUNS=${RUNS:-3}
[[ -x $FLEET ]] || { echo "report_bench: build $FLEET first" >&2; exit 1; }
W=$(mktemp -d /tmp/pw-report-bench.XXXXXX)
trap '[[ ${PW_KEEP_WORK:-0} == 1 ]] || rm -rf "$W"' EXIT

NOW_S=$(date -u +%s)
NOW_US=$((NOW_S * 1000000))
NOW=$(date -u -d "@$NOW_S" +%Y-%m-%dT%H:%M:%SZ)

# The generated rows, in SQL both engines run (only the series source differs).
fill_sql() { # SERIES_NODES SERIES_IMAGES SERIES_DAYS
	cat <<EOF
INSERT INTO nodes (cluster, node, first_seen_usec, last_seen_usec, last_inventory_usec)
SELECT 'c' || (n % 4), 'node-' || n, $NOW_US - 86400000000, $NOW_US,
       CASE WHEN n % 100 = 7 THEN $NOW_US - 3 * 3600000000 ELSE $NOW_US - 600000000 END FROM $1;
INSERT INTO node_images (cluster, node, namespace, ref, name, tag, digest, media_type, revision, pinned, latest,
                         revision_verified, compliant, findings, pods, k8s_namespaces, updated_usec)
SELECT 'c' || (n % 4), 'node-' || n, 'k8s.io',
       'registry.example/team' || (i % 20) || '/app' || i || CASE WHEN i % 10 = 0 THEN ':latest' ELSE ':v1' END,
       'registry.example/team' || (i % 20) || '/app' || i,
       CASE WHEN i % 10 = 0 THEN 'latest' ELSE 'v1' END,
       'sha256:' || CASE WHEN i < 5 AND n % 100 = 0 THEN 'bb' ELSE 'aa' END || i,
       'application/vnd.oci.image.index.v1+json', 'rev' || i,
       CASE WHEN i % 3 = 0 OR i % 10 = 0 THEN 0 ELSE 1 END, CASE WHEN i % 10 = 0 THEN 1 ELSE 0 END,
       CASE WHEN i % 7 = 0 THEN 0 ELSE 1 END,
       CASE WHEN i % 3 = 0 OR i % 10 = 0 OR i % 7 = 0 THEN 0 ELSE 1 END,
       CASE WHEN i % 10 = 0 THEN 'latest_tag' WHEN i % 3 = 0 THEN 'mutable_tag' WHEN i % 7 = 0 THEN 'untraceable' ELSE '' END,
       CASE WHEN i % 2 = 0 THEN '[{"namespace":"ns' || (i % 40) || '","pod":"app' || i || '-' || n || '","container":"app"}]' ELSE '[]' END,
       CASE WHEN i % 2 = 0 THEN 'ns' || (i % 40) ELSE '' END,
       $NOW_US
FROM $1 CROSS JOIN $2;
INSERT INTO workload_history (cluster, node, k8s_namespace, pod, container, name, ref, digest, revision,
                              first_seen_usec, last_seen_usec)
SELECT 'c' || (n % 4), 'node-' || n, 'ns' || (i % 40), 'app' || i || '-' || n, 'app',
       'registry.example/team' || (i % 20) || '/app' || i,
       'registry.example/team' || (i % 20) || '/app' || i || CASE WHEN i % 10 = 0 THEN ':latest' ELSE ':v1' END,
       'sha256:' || CASE WHEN i < 5 AND n % 100 = 0 THEN 'bb' ELSE 'aa' END || i, 'rev' || i, $NOW_US - 86400000000,
       CASE WHEN n % 100 = 7 THEN $NOW_US - 3 * 3600000000 ELSE $NOW_US - 600000000 END
FROM $1 CROSS JOIN $2 WHERE i % 2 = 0
UNION ALL
SELECT 'c' || (n % 4), 'node-' || n, 'ns' || (i % 40), 'late' || i || '-' || n, 'app',
       'registry.example/team' || (i % 20) || '/app' || i,
       'registry.example/team' || (i % 20) || '/app' || i || CASE WHEN i % 10 = 0 THEN ':latest' ELSE ':v1' END,
       'sha256:bb' || i, 'rev' || i, $NOW_US - 60000000, $NOW_US - 60000000
FROM $1 CROSS JOIN $2 WHERE i < 5 AND n % 100 = 0;
INSERT INTO records (id, kind, severity, time_usec, received_usec, cluster, node, namespace, ref, name, tag, digest,
                     previous_digest, expected_digest, revision, media_type, k8s_namespace, pod, container,
                     container_id, message)
SELECT 'm' || n, 'tag_moved', 'high', $NOW_US - CAST(n AS BIGINT) * 1000000, $NOW_US, 'c' || (n % 4), 'node-' || n, 'k8s.io',
       'registry.example/team0/app0:latest', 'registry.example/team0/app0', 'latest', 'sha256:bb0', 'sha256:aa0', '',
       '', '', '', '', '', '', 'moved'
FROM $1 WHERE n % 100 = 0;
INSERT INTO daily_rollup (day, cluster, k8s_namespace, images, compliant, pinned, latest, revision_verified, findings)
SELECT d, 'c' || c, '', 500000, 250000 + c * 1000, 0, 0, 0, 0 FROM $3 CROSS JOIN (SELECT 0 AS c UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) cs;
EOF
}

# The peer: the report's core as one SQL query, written the way the report does it — one
# grouped pass over node_images (materialised), then compliance per cluster and namespace
# set, and the nodes per digest of every tag held at more than one digest. (A first
# version with "ref IN (… HAVING COUNT(DISTINCT digest) > 1)" walked the ref index row by
# row: 3-4× slower, a peer too easy to beat.)
PEER_SQL="WITH g AS MATERIALIZED (SELECT cluster, k8s_namespaces, ref, tag, digest, COUNT(*) AS n, SUM(compliant) AS c,
                                      SUM(pinned) AS p, SUM(latest) AS l, SUM(revision_verified) AS v
                               FROM node_images GROUP BY cluster, k8s_namespaces, ref, tag, digest),
     d AS (SELECT ref FROM (SELECT DISTINCT ref, digest FROM g WHERE tag <> '') x GROUP BY ref HAVING COUNT(*) > 1)
SELECT 'c', cluster, k8s_namespaces, SUM(n), SUM(c), SUM(p), SUM(l), SUM(v) FROM g GROUP BY cluster, k8s_namespaces
UNION ALL
SELECT 'd', g.ref, g.digest, SUM(n), 0, 0, 0, 0 FROM g JOIN d ON d.ref = g.ref GROUP BY g.ref, g.digest;"

ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }
# best CMD... — "WALL CPU" in ms, each the best of RUNS runs (CPU = user + sys of the
# command and its children: on a shared machine the wall time also holds others' load)
best() {
	local bw=999999999 bc=999999999 t
	for _ in $(seq "$RUNS"); do
		t=$( { TIMEFORMAT='%R %U %S'; time "$@" >/dev/null; } 2>&1 | tail -1)
		read -r w u s <<<"$t"
		w=$(awk -v w="$w" 'BEGIN { printf "%d", w * 1000 }')
		c=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%d", (u + s) * 1000 }')
		((w < bw)) && bw=$w
		((c < bc)) && bc=$c
	done
	echo "$bw $bc"
}

run_engine() { # NAME URL PEER-CMD... (for PostgreSQL the server's CPU is not in the CPU column)
	local name=$1 url=$2
	shift 2
	local json html peer f label
	for f in "$FLEET" ${FLEET_B:+"$FLEET_B"}; do
		label=$name
		[[ -n $FLEET_B ]] && label="$name $([[ $f == "$FLEET" ]] && echo A || echo B)"
		read -r jw jc <<<"$(best "$f" report --db "$url" --now "$NOW" --format json -o "$W/r.json")"
		read -r hw hc <<<"$(best "$f" report --db "$url" --now "$NOW" --format html -o "$W/r.html")"
		read -r pw pc <<<"$(best "$@")"
		printf '%-13s wall ms: report json %6d  html %6d  one SQL query %6d  ratio %s | CPU ms: json %6d  html %6d  query %6d | json %s, html %s\n' \
			"$label" "$jw" "$hw" "$pw" "$(awk -v a="$jw" -v b="$pw" 'BEGIN { printf "%.2f", a / b }')" "$jc" "$hc" "$pc" \
			"$(du -h "$W/r.json" | cut -f1)" "$(du -h "$W/r.html" | cut -f1)"
	done
}

echo "== fleet: $NODES nodes × $IMAGES images = $((NODES * IMAGES)) node_images rows; best of $RUNS runs"

# ---- SQLite
# PW_BENCH_SQLITE=FILE keeps the filled database there and reuses it when it exists
DB=${PW_BENCH_SQLITE:-$W/bench.db}
if [[ -s $DB ]]; then
	echo "   SQLite: reusing $DB"
else
"$FLEET" report --db "sqlite:$DB" --format json >/dev/null # creates the schema
t0=$(ms)
{
	echo "PRAGMA journal_mode=WAL; BEGIN;"
	echo "CREATE TEMP TABLE sn AS WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n + 1 < $NODES) SELECT n FROM s;"
	echo "CREATE TEMP TABLE si AS WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < $IMAGES) SELECT i FROM s;"
	echo "CREATE TEMP TABLE sd AS WITH RECURSIVE s(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM s WHERE k + 1 < 30) SELECT date($NOW_S - k * 86400, 'unixepoch') AS d FROM s;"
	fill_sql sn si sd
	# schema 13: the records above state_applied are the collector's queue of node state
	# to apply (store.h); the state here is generated whole: none is queued
	[[ -n $(sqlite3 "$DB" "SELECT 1 FROM sqlite_master WHERE name = 'state_applied'") ]] &&
		echo "UPDATE state_applied SET applied_rowid = (SELECT MAX(rowid) FROM records);"
	echo "COMMIT; ANALYZE;"
} | sqlite3 "$DB" >/dev/null
echo "   SQLite filled in $(($(ms) - t0)) ms ($(du -h "$DB" | cut -f1))"
fi
run_engine SQLite "sqlite:$DB" sqlite3 "$DB" "$PEER_SQL"

# ---- PostgreSQL
if [[ ${PW_BENCH_PG:-1} == 1 ]]; then
	PW_PG_FSYNC=on
	. "$ROOT/tests/integration/pg.sh"
	pw_pg_start
	"$FLEET" report --db "$PW_PG_URL" --format json >/dev/null
	t0=$(ms)
	{
		echo "BEGIN;"
		echo "CREATE TEMP TABLE sn AS SELECT generate_series(0, $NODES - 1) AS n;"
		echo "CREATE TEMP TABLE si AS SELECT generate_series(0, $IMAGES - 1) AS i;"
		echo "CREATE TEMP TABLE sd AS SELECT to_char(to_timestamp($NOW_S) AT TIME ZONE 'UTC' - k * interval '1 day', 'YYYY-MM-DD') AS d FROM generate_series(0, 29) AS k;"
		fill_sql sn si sd
		echo "COMMIT; VACUUM ANALYZE;"
	} | pw_pg_psql >/dev/null
	echo "   PostgreSQL filled in $(($(ms) - t0)) ms"
	# the report sets work_mem = 64MB for its session (fleet/report_query.c): the peer too
	run_engine PostgreSQL "$PW_PG_URL" psql -X -q -d "$PW_PG_URL" -c "SET work_mem = '64MB'; $PEER_SQL"
fi
