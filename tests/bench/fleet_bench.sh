#!/usr/bin/env bash
# The collector's ingest beside each engine's own bulk load, in one run:
#   1. N pull/finding records (default 200,000) as gzip'd batches of 1,000 from 2
#      concurrent posters into pullwatch-fleet on SQLite and on PostgreSQL, beside
#      `sqlite3 .import` and `psql \copy` of the same rows as CSV into the same table;
#   2. NODES simulated nodes' hourly inventory (default 10,000 × 200 images = 2M rows):
#      ingest time of the first (every row new) and of the next hour's (the same images
#      an hour later, new record ids: the steady state), and the database size, on both engines;
#   3. the collector's peak RSS (VmHWM) in each run.
# Goals (issue 9): ≥ 50,000 records/s on SQLite; ≥ 0.5× \copy on PostgreSQL; 2M inventory
# rows in ≤ 60 s; RSS ≤ 32 MiB. Figures only: nothing here asserts a time.
#   FLEET=build/pullwatch-fleet N=200000 NODES=10000 IMAGES=200 tests/bench/fleet_bench.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
FLEET=$(realpath "${FLEET:-$HERE/../../build/pullwatch-fleet}")
N=${N:-200000}
NODES=${NODES:-10000}
IMAGES=${IMAGES:-200}
# shellcheck source=tests/bench/fleet_lib.sh
. "$HERE/fleet_lib.sh"
fleet_bench_init fleet-bench
fleet_pg_start

echo "generating $N records and $NODES inventories of $IMAGES images ..." >&2
$PY "$HERE/fleet_bench.py" records "$N" "$W/rec"
$PY "$HERE/fleet_bench.py" inventory "$NODES" "$IMAGES" "$W/inv"
$PY "$HERE/fleet_bench.py" inventory "$NODES" "$IMAGES" "$W/inv2" 1

post() { $PY "$HERE/fleet_bench.py" post "http://127.0.0.1:$PORT/v1/records" "$1" 2; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
size_mib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }

# an empty database with the collector's schema: start and stop it once
schema_only() { start "$FLEET" "$1"; stop; }

# ------------------------------------------------------------- records ----
start "$FLEET" "sqlite:$W/sq-rec.db"
read -r s_sec s_n s_retry < <(post "$W/rec")
s_rss=$(hwm_mib)
stop
schema_only "sqlite:$W/sq-import.db"
t0=$(now)
sqlite3 "$W/sq-import.db" <<EOF
PRAGMA synchronous=FULL;
.mode csv
.import $W/rec/records.csv records
EOF
s_imp=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')

pw_pg_psql -c "CREATE DATABASE rec" -c "CREATE DATABASE copy" -c "CREATE DATABASE inv"
start "$FLEET" "$PGB/rec"
read -r p_sec p_n p_retry < <(post "$W/rec")
p_rss=$(hwm_mib)
stop
schema_only "$PGB/copy"
t0=$(now)
psql -X -q -d "$PGB/copy" -c "\\copy records FROM '$W/rec/records.csv' CSV"
p_imp=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')

# ----------------------------------------------------------- inventory ----
rows=$((NODES * IMAGES))
start "$FLEET" "sqlite:$W/sq-inv.db"
read -r si_sec si_n si_retry < <(post "$W/inv")
read -r si2_sec _ _ < <(post "$W/inv2") # the next hour: the same images, an hour later
si_rss=$(hwm_mib)
stop
si_size=$(du -cb "$W"/sq-inv.db* | tail -1 | cut -f1)
si_rows=$(sqlite3 "$W/sq-inv.db" "SELECT COUNT(*) FROM node_images")
start "$FLEET" "$PGB/inv"
read -r pi_sec pi_n pi_retry < <(post "$W/inv")
read -r pi2_sec _ _ < <(post "$W/inv2")
pi_rss=$(hwm_mib)
stop
pi_size=$(psql -X -A -t -d "$PGB/inv" -c "SELECT pg_database_size('inv')")
pi_rows=$(psql -X -A -t -d "$PGB/inv" -c "SELECT COUNT(*) FROM node_images")

printf '\n%-52s %14s %14s\n' "pullwatch-fleet ingest (2 posters, gzip'd 1,000s)" SQLite PostgreSQL
printf '%-52s %14s %14s\n' "records stored / sent" "$s_n/$N" "$p_n/$N"
printf '%-52s %14s %14s\n' "records/s, collector" "$(rate "$N" "$s_sec")" "$(rate "$N" "$p_sec")"
printf '%-52s %14s %14s\n' "records/s, engine's bulk load (.import / \\copy)" "$(rate "$N" "$s_imp")" "$(rate "$N" "$p_imp")"
printf '%-52s %14s %14s\n' "collector ÷ bulk load" "$(awk -v a="$s_imp" -v b="$s_sec" 'BEGIN { printf "%.2f", a / b }')" \
	"$(awk -v a="$p_imp" -v b="$p_sec" 'BEGIN { printf "%.2f", a / b }')"
printf '%-52s %14s %14s\n' "503 retries" "$s_retry" "$p_retry"
printf '%-52s %14s %14s\n' "collector peak RSS, MiB" "$s_rss" "$p_rss"
printf '\n%-52s %14s %14s\n' "inventory: $NODES nodes × $IMAGES images ($rows rows)" SQLite PostgreSQL
printf '%-52s %14s %14s\n' "first inventory (every row new), s" "$si_sec" "$pi_sec"
printf '%-52s %14s %14s\n' "  rows/s" "$(rate "$rows" "$si_sec")" "$(rate "$rows" "$pi_sec")"
printf '%-52s %14s %14s\n' "next hour's inventory (same images), s" "$si2_sec" "$pi2_sec"
printf '%-52s %14s %14s\n' "  rows/s" "$(rate "$rows" "$si2_sec")" "$(rate "$rows" "$pi2_sec")"
printf '%-52s %14s %14s\n' "node_images rows" "$si_rows" "$pi_rows"
printf '%-52s %14s %14s\n' "database size, MiB" "$(size_mib "$si_size")" "$(size_mib "$pi_size")"
printf '%-52s %14s %14s\n' "503 retries" "$si_retry" "$pi_retry"
printf '%-52s %14s %14s\n' "collector peak RSS, MiB" "$si_rss" "$pi_rss"
