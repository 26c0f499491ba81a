#!/usr/bin/env bash
# tests/bench/scale_ab_bench.sh BINARY... — the agent's reconcile at scale for several
# pullwatch builds, interleaved on one private containerd holding N images of distinct
# digests (the store scale_bench.sh makes; SCALE_ROOT to reuse it): per round, for each
# build in turn, `ctr images ls -q`, then `pullwatch run` from start to "subscribed" with
# a fresh state dir, then again restarted on the ledger it saved; then its idle
# Private_Dirty. Across separate scale_bench.sh runs the machine's load moved `ctr`'s own
# time 0.5-2.1 s; here every build runs beside the others, round after round. Medians over
# ROUNDS, each beside the median `ctr images ls -q` of the same rounds. As root. Prints
# figures only (exit 0 unless setup fails).
#   N=10000   images (the store must hold them: run scale_bench.sh once to make it)
#   NS=scale  their namespace
#   ROUNDS=3
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
(($#)) || { echo "usage: $0 BINARY..." >&2; exit 2; }
N=${N:-10000}
NS=${NS:-scale}
ROUNDS=${ROUNDS:-3}
# shellcheck disable=SC2034 # read by lib.sh
PW_TEST_NAME=scale_ab_bench PW_NO_SUMMARY=1
# shellcheck source=tests/integration/lib.sh
. "$ROOT/tests/integration/lib.sh"
pw_setup_deps_check
pw_start_journald
pw_containerd_config
if [[ -n ${SCALE_ROOT:-} ]]; then
	mkdir -p "$SCALE_ROOT"
	sed -i "s|^root = .*|root = \"$SCALE_ROOT\"|" "$PW_WORK/containerd/config.toml"
fi
pw_start_containerd
have=$(ctr -a "$PW_SOCK" -n "$NS" images ls -q | grep -c '^bench.local/scale/img-' || true)
((have == N)) || pw_fail "the store has $have images, not $N: make it with scale_bench.sh (same SCALE_ROOT)"

AGENT_PID= START_MS=
start_agent() { # BINARY STATE_DIR — AGENT_PID, START_MS (ms until "subscribed"), START_CPU
	pw_run_until_subscribed "$1" "$2" scale-ab "$NS"
	AGENT_PID=$PW_SUB_PID START_MS=$PW_SUB_MS
	# its CPU until the wait saw the line (user + system, every thread's, in ms)
	START_CPU=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($14 + $15) * 1000 / hz }' "/proc/$AGENT_PID/stat")
}
# idle (pw_wait_idle, as scale_bench.sh waits): right after "subscribed" a listing cut by
# a save can leave no timer armed while its journald backlog (mapped, MiBs) still drains,
# and Private_Dirty read then was that backlog's
idle_pd() {
	pw_wait_idle "$AGENT_PID" 30
	awk '$1 == "Private_Dirty:" { print $2 }' "/proc/$AGENT_PID/smaps_rollup"
}
# warm-up, not timed: the store's 20,000 blobs into the page cache, so that the first
# build's first scan does not pay the disk alone (a cold store: a fresh start 2.5 s once)
rm -rf "$PW_WORK/state" && mkdir -p "$PW_WORK/state"
"$1" scan --address "$PW_SOCK" --state-dir "$PW_WORK/state" --namespace "$NS" >/dev/null 2>&1 || true
: >"$PW_WORK/runs"
for ((round = 1; round <= ROUNDS; round++)); do
	k=0
	for bin in "$@"; do
		k=$((k + 1))
		t=${EPOCHREALTIME/./}
		ctr -a "$PW_SOCK" -n "$NS" images ls -q >/dev/null
		pw_ms_since "$t"
		echo "$k ctr $PW_MS" >>"$PW_WORK/runs"
		rm -rf "$PW_WORK/state" && mkdir -p "$PW_WORK/state"
		t=${EPOCHREALTIME/./}
		st=0
		/usr/bin/time -o "$PW_WORK/scan.time" -f '%U %S' \
			"$bin" scan --address "$PW_SOCK" --state-dir "$PW_WORK/state" --namespace "$NS" \
			>"$PW_WORK/scan-$k.out" 2>"$PW_WORK/scan.err" || st=$?
		pw_ms_since "$t"
		echo "$k scan $PW_MS" >>"$PW_WORK/runs"
		echo "$k scan_cpu $(awk '{ printf "%d", ($1 + $2) * 1000 }' "$PW_WORK/scan.time")" >>"$PW_WORK/runs"
		((st <= 1)) || pw_fail "pullwatch scan failed (status $st)" "$(tail -3 "$PW_WORK/scan.err")"
		cmp -s "$PW_WORK/scan-1.out" "$PW_WORK/scan-$k.out" || pw_fail "scan's table differs between build 1 and $bin"
		t=${EPOCHREALTIME/./}
		ctr -a "$PW_SOCK" -n "$NS" images ls -q >/dev/null
		pw_ms_since "$t"
		echo "$k ctr $PW_MS" >>"$PW_WORK/runs"
		rm -rf "$PW_WORK/state"
		start_agent "$bin" "$PW_WORK/state"
		echo "$k fresh $START_MS" >>"$PW_WORK/runs"
		echo "$k fresh_cpu $START_CPU" >>"$PW_WORK/runs"
		echo "$k fresh_pd $(idle_pd)" >>"$PW_WORK/runs"
		pw_kill_wait "$AGENT_PID" 30
		start_agent "$bin" "$PW_WORK/state"
		echo "$k known $START_MS" >>"$PW_WORK/runs"
		echo "$k known_cpu $START_CPU" >>"$PW_WORK/runs"
		echo "$k known_pd $(idle_pd)" >>"$PW_WORK/runs"
		pw_kill_wait "$AGENT_PID" 30
		PW_EXTRA_PIDS=
	done
done
med() { # BUILD KEY
	awk -v b="$1" -v k="$2" '$1 == b && $2 == k { print $3 }' "$PW_WORK/runs" | sort -n |
		awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
all() { awk -v b="$1" -v k="$2" '$1 == b && $2 == k { printf "%s%s", s, $3; s = " " }' "$PW_WORK/runs"; }
pooled=$(awk '$2 == "ctr" { print $3 }' "$PW_WORK/runs" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
echo "== $N images, $ROUNDS rounds, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   ctr images ls -q over every round of every build: median $pooled ms"
k=0
for bin in "$@"; do
	k=$((k + 1))
	c=$(med $k ctr)
	x() { awk -v a="$1" -v b="$pooled" 'BEGIN { printf "%.2f", a / b }'; }
	printf '%s\n  ctr images ls -q %s ms (%s)\n  scan %s ms (%s), %s x ctr\n  fresh reconcile %s ms (%s), %s x ctr\n  known reconcile %s ms (%s), %s x ctr\n  idle Private_Dirty fresh %s kB, known %s kB\n' \
		"$bin" "$c" "$(all $k ctr)" "$(med $k scan)" "$(all $k scan)" \
		"$(awk -v a="$(med $k scan)" -v b="$c" 'BEGIN { printf "%.2f", a / b }')" \
		"$(med $k fresh)" "$(all $k fresh)" \
		"$(awk -v a="$(med $k fresh)" -v b="$c" 'BEGIN { printf "%.2f", a / b }')" \
		"$(med $k known)" "$(all $k known)" \
		"$(awk -v a="$(med $k known)" -v b="$c" 'BEGIN { printf "%.2f", a / b }')" \
		"$(med $k fresh_pd)" "$(med $k known_pd)"
	printf '  (pooled ctr) scan %s x, fresh %s x, known %s x; CPU to done/subscribed: scan %s ms, fresh %s ms, known %s ms\n' \
		"$(x "$(med $k scan)")" "$(x "$(med $k fresh)")" "$(x "$(med $k known)")" \
		"$(med $k scan_cpu)" "$(med $k fresh_cpu)" "$(med $k known_cpu)"
done
pw_done
