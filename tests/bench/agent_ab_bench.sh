#!/usr/bin/env bash
# tests/bench/agent_ab_bench.sh BINARY... — several pullwatch builds at once on one
# private containerd, each its own agent (own state, own node name) subscribed to the
# same events: N paced `ctr images tag` (one at a time), then per agent its CPU per
# event (thread run time, /proc/PID/schedstat; utime+stime in ticks) and context
# switches per event. Across separate agent_bench.sh runs the machine's load moves the
# figures more than a change does; here every build sees the same events under the
# same load. As root. Prints figures only (exit 0 unless setup fails).
#   N=200     events
#   GAP=0.05  seconds between two events (after each ctr process exits)
#   BURST=1   instead: a burst, as agent_bench.sh makes it (xargs -P 4, 50 names
#             per ctr process)
#   GEN=grpc  the events made by one long-lived gRPC client (images_create.py, GAP apart;
#             with BURST=1 back to back) instead of a `ctr` process per event: what the
#             agent costs when no fresh process runs between two events
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
(($#)) || { echo "usage: $0 BINARY..." >&2; exit 2; }
N=${N:-200}
GAP=${GAP:-0.05}
# shellcheck disable=SC2034 # read by lib.sh
PW_TEST_NAME=ab_bench PW_NO_SUMMARY=1
# shellcheck source=tests/integration/lib.sh
. "$ROOT/tests/integration/lib.sh"
pw_setup_deps_check
pw_start_journald
pw_start_registry
pw_start_containerd
R=$PW_REGISTRY
BASE=$R/bench/base:1.0.0
pw_build_image bench/base 1.0.0 0123456789abcdef0123456789abcdef01234567 "bench-$RANDOM$RANDOM" >/dev/null
pw_pull default "$BASE"

ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
run_ns() { awk '{ print $1 }' "/proc/$1/schedstat"; }
csw() { awk '$1 ~ /^(non)?voluntary_ctxt_switches:$/ { s += $2 } END { print s }' "/proc/$1/status"; }
pids=()
for bin in "$@"; do
	node=ab-$RANDOM$RANDOM
	"$bin" run --address "$PW_SOCK" --state-dir "$PW_WORK/state-$node" --node "$node" \
		>"$PW_WORK/$node.out" 2>"$PW_WORK/$node.err" </dev/null &
	pids+=($!)
	pw_poll 30 grep -q 'subscribed to containerd events' "$PW_WORK/$node.err" ||
		pw_fail "$bin did not subscribe" "$(tail -5 "$PW_WORK/$node.err")"
done
# shellcheck disable=SC2034 # lib.sh's EXIT trap stops them
PW_EXTRA_PIDS="${pids[*]}"
sleep 4 # the catch-up listing 3 s after subscribing
declare -A t0 n0 c0
for p in "${pids[@]}"; do t0[$p]=$(ticks "$p") n0[$p]=$(run_ns "$p") c0[$p]=$(csw "$p"); done
all_ns() { local s=0 a f; for f in /proc/"$1"/task/*/schedstat; do read -r a _ <"$f" 2>/dev/null && s=$((s + a)); done; echo "$s"; }
ctd_t0=$(ticks "$PW_CTD_PID") ctd_n0=$(all_ns "$PW_CTD_PID")
if [[ ${GEN:-ctr} == grpc ]]; then
	what="events from one gRPC client ($([[ ${BURST:-0} == 1 ]] && echo "back to back" || echo "${GAP}s apart"))"
	"$PW_PY" "$HERE/images_create.py" "$PW_SOCK" "$BASE" "$R/bench/ab" "$N" "$([[ ${BURST:-0} == 1 ]] && echo 0 || echo "$GAP")"
elif [[ ${BURST:-0} == 1 ]]; then
	what="events in a burst (xargs -P 4)"
	seq -f "$R/bench/ab-%05g:1.0.0" 1 "$N" | xargs -P 4 -n 50 ctr -a "$PW_SOCK" images tag "$BASE" >/dev/null
else
	what="paced events"
	for ((i = 1; i <= N; i++)); do
		ctr -a "$PW_SOCK" images tag "$BASE" "$R/bench/ab-$i:1.0.0" >/dev/null
		sleep "$GAP"
	done
fi
sleep 3 # the last reply, the ledger's save 2 s after the last change
echo "== $N $what, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-40s %12s %12s %10s\n' binary "run time/ev" "ticks/ev" "csw/ev"
i=0
for p in "${pids[@]}"; do
	bin=${*:$((i + 1)):1}
	printf '%-40s %9.1f µs %9.1f µs %10.2f\n' "$bin" \
		"$("$PW_PY" -c "print(($(run_ns "$p") - ${n0[$p]}) / 1e3 / $N)")" \
		"$("$PW_PY" -c "print(($(ticks "$p") - ${t0[$p]}) * 1e6 / $(getconf CLK_TCK) / $N)")" \
		"$("$PW_PY" -c "print(($(csw "$p") - ${c0[$p]}) / $N)")"
	i=$((i + 1))
done
# containerd's own threads (it answers every agent's look-ups, ctr's calls too): what a
# change moves onto it shows here when the runs compared differ only in that change
printf '%-40s %9.1f µs %9.1f µs\n' "containerd (all threads, all agents)" \
	"$("$PW_PY" -c "print(($(all_ns "$PW_CTD_PID") - $ctd_n0) / 1e3 / $N)")" \
	"$("$PW_PY" -c "print(($(ticks "$PW_CTD_PID") - $ctd_t0) * 1e6 / $(getconf CLK_TCK) / $N)")"
