#!/usr/bin/env bash
# What PostgreSQL itself can do with issue 9's records load, beside the collector: is
# "≥ 0.5× \copy" reachable while a record also updates its node's state?
# Per round, alternating, each into a fresh database with the collector's schema (fsync on):
#   copy      `psql \copy` of the N records as CSV into `records` alone (issue 9's peer);
#   one-shot  the engine's own floor for the state the collector keeps: in ONE transaction,
#             `\copy` into `records`, then three set-based statements deriving the state from
#             them — node_images (each node's newest digest per reference, ON CONFLICT DO
#             UPDATE), workload_history (each pod/container/digest, ON CONFLICT DO UPDATE),
#             nodes (last seen) — no client parsing, no per-request transactions, one sort
#             per table: cheaper than anything a collector answering per request can do;
#   batched   the same statements per 1,000 records (one transaction each, as the agents'
#             requests are), from a `\copy` into a temp staging table;
#   collector pullwatch-fleet taking the same records as gzip'd batches of 1,000 from 2
#             posters (fleet_bench.py), as fleet_bench.sh does.
# The state statements compute no compliance flags (constants), so they undercount what
# the collector does. Prints wall seconds, records/s and the ratio to the round's \copy,
# with the load. Figures only: nothing here asserts a time.
#   FLEET=build/pullwatch-fleet N=200000 ROUNDS=2 tests/bench/pg_state_ceiling_bench.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
FLEET=$(realpath "${FLEET:-$HERE/../../build/pullwatch-fleet}")
N=${N:-200000}
ROUNDS=${ROUNDS:-2}
# shellcheck source=tests/bench/fleet_lib.sh
. "$HERE/fleet_lib.sh"
fleet_bench_init pg-ceiling
fleet_pg_start

echo "generating $N records ..." >&2
$PY "$HERE/fleet_bench.py" records "$N" "$W/rec"
split -l 1000 -d -a 4 "$W/rec/records.csv" "$W/rec/part."

# The state a record keeps, derived set-based from table $1 (records or the staging st).
state_sql() {
	cat <<SQL
INSERT INTO node_images (cluster, node, namespace, ref, name, tag, digest, media_type, revision, pinned,
  latest, revision_verified, compliant, findings, pods, k8s_namespaces, updated_usec, findings_mask, by_inventory)
SELECT DISTINCT ON (cluster, node, namespace, ref) cluster, node, namespace, ref, name, tag, digest, media_type,
  revision, 0, (tag = 'latest')::int, 0, 0, '', pod, k8s_namespace, time_usec, 0, 0
FROM $1 ORDER BY cluster, node, namespace, ref, time_usec DESC
ON CONFLICT (cluster, node, namespace, ref) DO UPDATE SET digest = excluded.digest, tag = excluded.tag,
  updated_usec = excluded.updated_usec, pods = excluded.pods, k8s_namespaces = excluded.k8s_namespaces;
INSERT INTO workload_history (cluster, node, k8s_namespace, pod, container, name, ref, digest, revision,
  first_seen_usec, last_seen_usec)
SELECT DISTINCT ON (cluster, node, k8s_namespace, pod, container, digest) cluster, node, k8s_namespace, pod,
  container, name, ref, digest, revision, time_usec, time_usec
FROM $1 WHERE pod <> '' ORDER BY cluster, node, k8s_namespace, pod, container, digest, time_usec DESC
ON CONFLICT (cluster, node, k8s_namespace, pod, container, digest) DO UPDATE SET last_seen_usec = excluded.last_seen_usec;
INSERT INTO nodes (cluster, node, first_seen_usec, last_seen_usec)
SELECT cluster, node, min(time_usec), max(time_usec) FROM $1 GROUP BY cluster, node
ON CONFLICT (cluster, node) DO UPDATE SET last_seen_usec = excluded.last_seen_usec;
SQL
}
{
	echo "BEGIN;"
	echo "\\copy records FROM '$W/rec/records.csv' CSV"
	state_sql records
	echo "COMMIT;"
} >"$W/oneshot.sql"
{
	echo "CREATE TEMP TABLE st (LIKE records);"
	for f in "$W"/rec/part.*; do
		echo "BEGIN; TRUNCATE st;"
		echo "\\copy st FROM '$f' CSV"
		state_sql st
		echo "INSERT INTO records SELECT * FROM st ON CONFLICT (id) DO NOTHING;"
		echo "COMMIT;"
	done
} >"$W/batched.sql"

since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
rate() { awk -v n="$N" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
counts() { # rows kept: records / node_images / workload_history / nodes
	psql -X -A -t -d "$1" -c "SELECT (SELECT COUNT(*) FROM records) || '/' || (SELECT COUNT(*) FROM node_images)
	  || '/' || (SELECT COUNT(*) FROM workload_history) || '/' || (SELECT COUNT(*) FROM nodes)"
}

printf '%-6s %-10s %9s %10s %8s %6s  %s\n' round run seconds records/s "÷copy" load "rows: records/node_images/workload_history/nodes"
for r in $(seq "$ROUNDS"); do
	db=$(schema_db "$FLEET")
	t=$(now)
	psql -X -q -d "$db" -c "\\copy records FROM '$W/rec/records.csv' CSV"
	c=$(since "$t")
	printf '%-6s %-10s %9s %10s %8s %6s  %s\n' "$r" copy "$c" "$(rate "$c")" 1.00 "$(load)" "$(counts "$db")"
	db=$(schema_db "$FLEET")
	t=$(now)
	psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$W/oneshot.sql" >/dev/null
	s=$(since "$t")
	printf '%-6s %-10s %9s %10s %8s %6s  %s\n' "$r" one-shot "$s" "$(rate "$s")" "$(ratio "$c" "$s")" "$(load)" "$(counts "$db")"
	db=$(schema_db "$FLEET")
	t=$(now)
	psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$W/batched.sql" >/dev/null
	s=$(since "$t")
	printf '%-6s %-10s %9s %10s %8s %6s  %s\n' "$r" batched "$s" "$(rate "$s")" "$(ratio "$c" "$s")" "$(load)" "$(counts "$db")"
	db=$(schema_db "$FLEET")
	start "$FLEET" "$db"
	read -r s n _ < <($PY "$HERE/fleet_bench.py" post "http://127.0.0.1:$PORT/v1/records" "$W/rec" 2)
	stop
	[[ $n == "$N" ]] || echo "collector stored $n of $N records" >&2
	printf '%-6s %-10s %9s %10s %8s %6s  %s\n' "$r" collector "$s" "$(rate "$s")" "$(ratio "$c" "$s")" "$(load)" "$(counts "$db")"
done
