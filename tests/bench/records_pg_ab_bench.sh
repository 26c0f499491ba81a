#!/usr/bin/env bash
# Two pullwatch-fleet builds, A and B, on issue 9's records load on PostgreSQL, alternating
# in one run with `psql \copy` of the same rows, so that all three see the same machine load:
#   per round: `\copy` of the rows as CSV into the collector's `records` table, then A and B
#   (B first in even rounds), each a fresh database of one cluster (fsync on, as
#   fleet_bench.sh's) taking N pull/finding records as gzip'd batches of 1,000 from 2
#   concurrent posters (fleet_bench.py).
# Per run: records/s, its ratio to the round's \copy, the CPU of the collector's PostgreSQL
# backend and of the collector (utime + stime), the statements' execution time summed
# (pg_stat_statements), 503 retries; the load average before-after; cp/bk: the server CPU
# of the round's \copy (its backend's, read before its session ends) ÷ this run's backend
# CPU, server work per record relative to \copy's, which the load moves less than ÷copy
# (one pair of builds, 9 rounds at load 2–4: ÷copy 0.41–1.10, cp/bk 0.43–0.73; \copy's rate
# alone 41,000–119,000/s). Then the same records
# posted by 1 poster to A and B: the fleet report on both databases (each by its own
# build) must be identical (JSON). Figures only: nothing here asserts a time.
# Goal (issue 9): ≥ 0.5× \copy.
#   FLEET_A=/tmp/main-build/pullwatch-fleet FLEET_B=build/pullwatch-fleet N=50000 ROUNDS=3 \
#     tests/bench/records_pg_ab_bench.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
FLEET_A=$(realpath "${FLEET_A:?FLEET_A=path of build A}")
FLEET_B=$(realpath "${FLEET_B:-$HERE/../../build/pullwatch-fleet}")
N=${N:-50000}
ROUNDS=${ROUNDS:-3}
# shellcheck source=tests/bench/fleet_lib.sh
. "$HERE/fleet_lib.sh"
fleet_bench_init rec-pg-ab
PW_PG_OPTS="-c shared_preload_libraries=pg_stat_statements" fleet_pg_start

echo "generating $N records ..." >&2
$PY "$HERE/fleet_bench.py" records "$N" "$W/rec"

cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
sql() { psql -X -A -t -q -d "$1" -c "$2"; }
# run FLEET → "rec/s backend-CPU-s collector-CPU-s statements-s retries"
run() {
	local db
	db=$(newdb)
	start "$1" "$db"
	sql "$db" "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
	sql "$db" "SELECT pg_stat_statements_reset()" >/dev/null
	# the collector's connection: its one backend on this database
	local bp c0 b0 sec n retry c1 b1 st
	bp=$(sql "$db" "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'" | head -1)
	c0=$(cpu "$FPID") b0=$(cpu "$bp")
	read -r sec n retry < <($PY "$HERE/fleet_bench.py" post "http://127.0.0.1:$PORT/v1/records" "$W/rec" 2)
	c1=$(cpu "$FPID") b1=$(cpu "$bp")
	st=$(sql "$db" "SELECT COALESCE(SUM(total_exec_time), 0) / 1000 FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
	stop
	[[ $n == "$N" ]] || { echo "stored $n of $N records" >&2; exit 1; }
	awk -v s="$sec" -v n="$N" -v c="$((c1 - c0))" -v b="$((b1 - b0))" -v hz="$tck" -v st="$st" -v r="$retry" \
		'BEGIN { printf "%.0f %.2f %.2f %.2f %s\n", n / s, b / hz, c / hz, st, r }'
}
copy() { # → "rec/s backend-CPU-s"
	local db t0 t1 ticks
	db=$(schema_db "$FLEET_A")
	t0=$(now)
	# its backend's CPU, read by psql's shell escape before the session ends
	ticks=$(psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$db" <<SQL
SELECT pg_backend_pid() AS bp \\gset
\\setenv PW_BP :bp
\\copy records FROM '$W/rec/records.csv' CSV
\\! awk '{ print \$14 + \$15 }' /proc/\$PW_BP/stat
SQL
)
	t1=$(now)
	awk -v a="$t0" -v b="$t1" -v n="$N" -v c="$ticks" -v hz="$tck" 'BEGIN { printf "%.0f %.2f\n", n / (b - a), c / hz }'
}

printf '%-5s %-6s %-11s | %9s %6s | %8s %9s %8s %5s %6s\n' round run load rec/s ÷copy backend collector stmts retry cp/bk
for round in $(seq "$ROUNDS"); do
	l0=$(load)
	read -r cp_rate cp_back < <(copy)
	[[ -n ${cp_back:-} ]] || { echo "\\copy failed" >&2; exit 1; }
	printf '%-5s %-6s %-11s | %9s %6s | %8s %9s %8s %5s %6s\n' "$round" '\copy' "$l0-$(load)" "$cp_rate" 1.00 \
		"$cp_back" '' '' '' 1.00
	order="A B"
	((round % 2 == 0)) && order="B A"
	for ab in $order; do
		f=$FLEET_A
		[[ $ab == B ]] && f=$FLEET_B
		l0=$(load)
		read -r rate back coll st retry < <(run "$f")
		printf '%-5s %-6s %-11s | %9s %6s | %8s %9s %8s %5s %6s\n' "$round" "$ab" "$l0-$(load)" "$rate" \
			"$(awk -v a="$rate" -v b="$cp_rate" 'BEGIN { printf "%.2f", a / b }')" "$back" "$coll" "$st" "$retry" \
			"$(awk -v a="$back" -v b="$cp_back" 'BEGIN { printf "%.2f", b / a }')"
	done
	for d in $(seq $(($(cat "$W/dbn") - 2)) "$(cat "$W/dbn")"); do pw_pg_psql -c "DROP DATABASE d$d"; done
done
# the same records through 1 poster (2 posters' arrival order varies from run to run, and
# with it the state) must leave databases the fleet report renders identically
for ab in A B; do
	f=$FLEET_A
	[[ $ab == B ]] && f=$FLEET_B
	db=$(newdb)
	start "$f" "$db"
	$PY "$HERE/fleet_bench.py" post "http://127.0.0.1:$PORT/v1/records" "$W/rec" 1 >/dev/null
	stop
	"$f" report --db "$db" --format json --now 2026-11-25T12:00:00Z -o "$W/rep-$ab.json"
done
if cmp -s "$W/rep-A.json" "$W/rep-B.json"; then
	echo "report on A's and B's databases (1 poster): identical ($(stat -c %s "$W/rep-A.json") bytes)"
else
	echo "report on A's and B's databases (1 poster): DIFFER"
	[[ -n ${KEEP_DIFF:-} ]] && cp "$W/rep-A.json" "$W/rep-B.json" "$KEEP_DIFF/"
fi
echo "(rec/s: N ÷ wall time of the 2 posters; ÷copy: ÷ the round's \\copy; backend: CPU seconds of the"
echo " collector's PostgreSQL backend; collector: its own; stmts: seconds the statements executed,"
echo " pg_stat_statements; cp/bk: \\copy's backend CPU ÷ the run's backend CPU, server work per record"
echo " relative to \\copy's, less load-sensitive than ÷copy)"
