#!/usr/bin/env bash
# Two pullwatch-fleet builds, A and B, on issue 9's records load on SQLite, alternating in
# one run with `sqlite3 .import` of the same rows, so all three see the same machine load:
#   per round: `sqlite3 .import` of the rows as CSV (synchronous=FULL, the collector's
#   schema), then A, then B, each a fresh database taking N pull/finding records as gzip'd
#   batches of 1,000 from 2 concurrent posters (fleet_bench.py).
# Per run: records/s, its ratio to the round's .import, the collector's CPU (utime + stime)
# and its busiest thread's (the writer), bytes written (wchar: WAL and checkpoints), 503
# retries, peak RSS (VmHWM); the load average before-after. Then the same records posted
# by 1 poster to A and B: the fleet report on both databases (each by its own build) must
# be identical (JSON). Figures only: nothing here
# asserts a time. Goal (issue 9): ≥ 50,000 records/s; RSS ≤ 32 MiB.
#   FLEET_A=/tmp/main-build/pullwatch-fleet FLEET_B=build/pullwatch-fleet N=50000 ROUNDS=3 \
#     tests/bench/records_ab_bench.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
FLEET_A=$(realpath "${FLEET_A:?FLEET_A=path of build A}")
FLEET_B=$(realpath "${FLEET_B:-$HERE/../../build/pullwatch-fleet}")
N=${N:-50000}
ROUNDS=${ROUNDS:-3}
# shellcheck source=tests/bench/fleet_lib.sh
. "$HERE/fleet_lib.sh"
fleet_bench_init rec-ab

echo "generating $N records ..." >&2
$PY "$HERE/fleet_bench.py" records "$N" "$W/rec"

# run FLEET DB → "rec/s cpu GB writer retries rss"
run() {
	start "$1" "sqlite:$2"
	local c0 w0 c1 w1 sec n retry
	c0=$(cpu_s) w0=$(wchar)
	threads >"$W/threads0"
	read -r sec n retry < <($PY "$HERE/fleet_bench.py" post "http://127.0.0.1:$PORT/v1/records" "$W/rec" 2)
	# a build that leaves node state queued under load (SQLite, store.h) applies it once
	# idle: the time until none is queued counts (polled every 10 ms; 0 for a build
	# without the gauge)
	local t0 p
	t0=$(now)
	while p=$(curl -sf "http://127.0.0.1:$PORT/metrics" |
		awk '$1 == "pullwatch_fleet_state_pending_records" { print $2 }') && [[ -n $p && $p != 0 ]]; do
		sleep 0.01
	done
	sec=$(awk -v s="$sec" -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f", s + b - a }')
	c1=$(cpu_s) w1=$(wchar)
	threads >"$W/threads1"
	local busiest rss
	busiest=$(awk -v hz="$tck" 'NR == FNR { a[$1] = $2; next } { d = ($2 - a[$1]) / hz; if (d > m) m = d } END { printf "%.1f", m }' \
		"$W/threads0" "$W/threads1")
	rss=$(hwm_mib)
	# the writer's time per group, begin to commit (what the posters wait for), summed
	local store_s
	store_s=$(curl -sf "http://127.0.0.1:$PORT/metrics" | awk '/^pullwatch_fleet_commit_seconds_sum/ { s = $2 }
		/^pullwatch_fleet_commit_seconds_count/ { n = $2 } END { printf "%.2f/%d", s, n }')
	stop
	[[ $n == "$N" ]] || { echo "stored $n of $N records" >&2; exit 1; }
	awk -v s="$sec" -v n="$N" -v a="$c0" -v b="$c1" -v x="$w0" -v y="$w1" -v t="$busiest" -v r="$retry" -v m="$rss" -v g="$store_s" \
		'BEGIN { printf "%.0f %.1f %.2f %s %s %s %s\n", n / s, b - a, (y - x) / 1e9, t, r, m, g }'
}
import() { # DB → rec/s
	start "$FLEET_A" "sqlite:$1"
	stop # the collector's schema
	local t0
	t0=$(now)
	sqlite3 "$1" <<SQL
PRAGMA synchronous=FULL;
.mode csv
.import $W/rec/records.csv records
SQL
	awk -v a="$t0" -v b="$(now)" -v n="$N" 'BEGIN { printf "%.0f", n / (b - a) }'
}

printf '%-5s %-7s %-11s | %9s %6s | %6s %6s %9s %5s %6s %5s\n' round run load rec/s ÷imp CPU-s writer stored GB retry RSS
for round in $(seq "$ROUNDS"); do
	l0=$(load)
	imp=$(import "$W/imp-$round.db")
	printf '%-5s %-7s %-11s | %9s %6s |\n' "$round" .import "$l0-$(load)" "$imp" 1.00
	for ab in A B; do
		f=$FLEET_A
		[[ $ab == B ]] && f=$FLEET_B
		l0=$(load)
		read -r rate cpu gb writer retry rss stored < <(run "$f" "$W/$ab-$round.db")
		printf '%-5s %-7s %-11s | %9s %6s | %6s %6s %9s %5s %6s %5s\n' "$round" "$ab" "$l0-$(load)" "$rate" \
			"$(awk -v a="$rate" -v b="$imp" 'BEGIN { printf "%.2f", a / b }')" "$cpu" "$writer" "$stored" "$gb" \
			"$retry" "$rss"
	done
	rm -f "$W"/*-"$round".db*
done
# the same records through 1 poster (the arrival order of 2 concurrent posters varies
# from run to run, and with it the state: a finding before or after its pull) must leave
# databases the fleet report renders identically
for ab in A B; do
	f=$FLEET_A
	[[ $ab == B ]] && f=$FLEET_B
	start "$f" "sqlite:$W/$ab-seq.db"
	$PY "$HERE/fleet_bench.py" post "http://127.0.0.1:$PORT/v1/records" "$W/rec" 1 >/dev/null
	stop
	# each by its own build: a newer schema is one an older build refuses to read
	"$f" report --db "sqlite:$W/$ab-seq.db" --format json --now 2026-11-25T12:00:00Z -o "$W/rep-$ab.json"
done
if cmp -s "$W/rep-A.json" "$W/rep-B.json"; then
	echo "report on A's and B's databases (1 poster): identical ($(stat -c %s "$W/rep-A.json") bytes)"
else
	echo "report on A's and B's databases (1 poster): DIFFER"
	[[ -n ${KEEP_DIFF:-} ]] && cp "$W/rep-A.json" "$W/rep-B.json" "$KEEP_DIFF/"
fi
echo "(rec/s: N ÷ wall time of the 2 posters, until no node state is left queued; ÷imp: ÷ the round's .import; CPU-s: the collector's"
echo " user+sys; writer: its busiest thread's; stored: seconds/groups the writer spent storing groups,"
echo " begin to commit, what the posters waited for (/metrics commit_seconds); GB: bytes it wrote;"
echo " RSS: its peak MiB)"
