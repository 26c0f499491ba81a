#!/usr/bin/env bash
# Two pullwatch-fleet builds, A and B, on the same hourly inventories, alternating in one
# run so both see the same machine load (issue 9: the first inventory of 2M rows ≤ 60 s):
#   for each build, ROUNDS times: a fresh database; the first inventory of NODES nodes ×
#   IMAGES images (every row new), then the next hour's (the same images an hour later);
#   then the fleet report on that database (full JSON, --image, --workload).
# Per step: the collector's wall time, CPU (utime + stime from /proc/PID/stat; and its
# busiest thread's, the writer, from /proc/PID/task) and bytes written (wchar from
# /proc/PID/io, WAL and checkpoints included), its peak RSS (VmHWM),
# the database size; per report: wall and CPU (user + sys). The load average is printed
# beside each round. Figures only: nothing here asserts a time.
# DB=pg: a fifth figure per step, the server's CPU (every process of the cluster, exited
# backends included: the postmaster's own and its children's); PG_STATS=1 also loads
# pg_stat_statements and prints, per step, the statements by total execution time (and
# planning time) — where the server's time goes, statement by statement.
#   FLEET_A=old/pullwatch-fleet FLEET_B=build/pullwatch-fleet NODES=1000 IMAGES=200 \
#     ROUNDS=1 DB=sqlite tests/bench/inventory_ab_bench.sh        (DB=pg: PostgreSQL 15)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
FLEET_A=$(realpath "${FLEET_A:?FLEET_A=path of build A}")
FLEET_B=$(realpath "${FLEET_B:-$HERE/../../build/pullwatch-fleet}")
NODES=${NODES:-1000}
IMAGES=${IMAGES:-200}
ROUNDS=${ROUNDS:-1}
DB=${DB:-sqlite}
# shellcheck source=tests/bench/fleet_lib.sh
. "$HERE/fleet_lib.sh"
fleet_bench_init inv-ab
if [[ $DB == pg ]]; then
	[[ -n ${PG_STATS:-} ]] &&
		export PW_PG_OPTS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on -c pg_stat_statements.max=1000"
	fleet_pg_start
fi

echo "generating $NODES inventories of $IMAGES images, two hours ..." >&2
$PY "$HERE/fleet_bench.py" inventory "$NODES" "$IMAGES" "$W/inv"
$PY "$HERE/fleet_bench.py" inventory "$NODES" "$IMAGES" "$W/inv2" 1

# the PostgreSQL cluster's CPU, s: the postmaster's own and its reaped children's, and
# every live child's (the collector's backend, the WAL writer, the checkpointer ...)
pg_cpu_s() {
	[[ $DB == pg ]] || { echo 0; return; }
	local pm
	pm=$(head -1 "$PW_PG_DIR/data/postmaster.pid")
	{
		awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat"
		for c in $(ps --ppid "$pm" -o pid=); do awk '{ print $14 + $15 }' "/proc/$c/stat" 2>/dev/null || true; done
	} | awk -v t="$tck" '{ s += $1 } END { printf "%.2f", s / t }'
}
# PG_STATS: statements of the step, by total execution time
pg_stats_reset() { [[ -z ${PG_STATS:-} ]] || psql -X -A -t -q -d "$1" -c "SELECT pg_stat_statements_reset()" >/dev/null; }
pg_stats_print() { # URL TITLE
	[[ -z ${PG_STATS:-} ]] && return 0
	echo "  $2: calls, exec s, plan s, rows, statement" >&2
	psql -X -A -t -F ' ' -d "$1" -c "SELECT lpad(calls::text, 7), lpad(round(total_exec_time::numeric / 1000, 2)::text, 7),
		lpad(round(total_plan_time::numeric / 1000, 2)::text, 6), lpad(rows::text, 8),
		left(regexp_replace(query, '\s+', ' ', 'g'), 90) FROM pg_stat_statements
		WHERE total_exec_time + total_plan_time > 10 ORDER BY total_exec_time + total_plan_time DESC LIMIT 12" | sed 's/^/    /' >&2
}
# post DIR → "wall cpu GB busiest[ server]" of the collector for it (busiest: the CPU of its
# busiest thread, the writer: what bounds the wall time when the other threads have a
# core; server: the PostgreSQL cluster's CPU, DB=pg)
post() {
	local c0 w0 c1 w1 p0 p1 sec
	c0=$(cpu_s) w0=$(wchar) p0=$(pg_cpu_s)
	threads >"$W/threads0"
	read -r sec _ _ < <($PY "$HERE/fleet_bench.py" post "http://127.0.0.1:$PORT/v1/records" "$1" 2)
	c1=$(cpu_s) w1=$(wchar) p1=$(pg_cpu_s)
	threads >"$W/threads1"
	local busiest
	busiest=$(awk -v hz="$tck" 'NR == FNR { a[$1] = $2; next } { d = ($2 - a[$1]) / hz; if (d > m) m = d } END { printf "%.1f", m }' \
		"$W/threads0" "$W/threads1")
	awk -v s="$sec" -v a="$c0" -v b="$c1" -v x="$w0" -v y="$w1" -v t="$busiest" -v p="$DB" -v u="$p0" -v v="$p1" \
		'BEGIN { printf "%.1f/%.1f/%.2f/%s", s, b - a, (y - x) / 1e9, t; if (p == "pg") printf "/%.1f", v - u }'
}
# report FLEET DB_URL OUT ARGS... → "wall/cpu/MiB" of one report run (JSON to OUT; MiB: its peak RSS)
report() {
	local f=$1 u=$2 out=$3
	shift 3
	/usr/bin/time -f "%e %U %S %M" -o "$W/time" "$f" report --db "$u" --format json -o "$out" "$@" ||
		{ echo "report failed: $*" >&2; exit 1; }
	awk '{ printf "%.1f/%.1f/%.0f", $1, $2 + $3, $4 / 1024 }' "$W/time"
}
size_mib() {
	if [[ $DB == pg ]]; then
		psql -X -A -t -d "$1" -c "SELECT pg_database_size(current_database()) / 1048576"
	else
		du -cb "${1#sqlite:}"* | tail -1 | awk '{ printf "%.0f", $1 / 1048576 }'
	fi
}
IMAGE=registry.example/team-1/svc-1
WORKLOAD=ns-1/svc-1

rows=$((NODES * IMAGES))
steps="s/CPU/GB/writer"
[[ $DB == pg ]] && steps+="/server"
printf '%-5s %-2s %5s | %-24s | %-24s | %5s %6s | %-14s %-14s %-14s\n' round AB load \
	"first: $steps" "next: $steps" "RSS" "MiB" "report" "--image" "--workload"
n=0
for round in $(seq "$ROUNDS"); do
	for ab in A B; do
		f=$FLEET_A
		[[ $ab == B ]] && f=$FLEET_B
		n=$((n + 1))
		if [[ $DB == pg ]]; then
			pw_pg_psql -c "CREATE DATABASE ab$n" >/dev/null
			url="$PGB/ab$n"
		else
			url="sqlite:$W/ab$n.db"
		fi
		l0=$(load)
		start "$f" "$url"
		if [[ $DB == pg && -n ${PG_STATS:-} ]]; then
			psql -X -q -d "$url" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
		fi
		pg_stats_reset "$url"
		first=$(post "$W/inv")
		pg_stats_print "$url" "round $round $ab, first inventory"
		pg_stats_reset "$url"
		next=$(post "$W/inv2")
		pg_stats_print "$url" "round $round $ab, next hour"
		rss=$(hwm_mib)
		stop
		mib=$(size_mib "$url")
		rep=$(report "$f" "$url" "$W/full-$ab.json" --now 2026-11-25T12:00:00Z)
		img=$(report "$f" "$url" "$W/image-$ab.json" --now 2026-11-25T12:00:00Z --image "$IMAGE")
		wl=$(report "$f" "$url" "$W/workload-$ab.json" --now 2026-11-25T12:00:00Z --workload "$WORKLOAD")
		printf '%-5s %-2s %5s | %-24s | %-24s | %5s %6s | %-14s %-14s %-14s\n' "$round" "$ab" "$l0-$(load)" \
			"$first" "$next" "$rss" "$mib" "$rep" "$img" "$wl"
		if [[ $DB == pg ]]; then
			pw_pg_psql -c "DROP DATABASE ab$n" >/dev/null
		else
			rm -f "$W/ab$n.db"*
		fi
	done
	# the same inventories must give the same reports, byte for byte
	for k in full image workload; do
		if cmp -s "$W/$k-A.json" "$W/$k-B.json"; then
			echo "round $round: report $k: A and B identical ($(stat -c %s "$W/$k-A.json") bytes)"
		else
			echo "round $round: report $k: A and B DIFFER"
			[[ -n ${KEEP_DIFF:-} ]] && cp "$W/$k-A.json" "$W/$k-B.json" "$KEEP_DIFF/"
		fi
	done
done
echo "($rows rows per inventory; wall s / CPU s / GB written by the collector / CPU s of its busiest"
echo " thread, the writer[ / CPU s of the PostgreSQL cluster]; RSS: its peak, MiB;"
echo " MiB: database size; report columns: wall s / CPU s / peak RSS MiB of pullwatch-fleet report)"
