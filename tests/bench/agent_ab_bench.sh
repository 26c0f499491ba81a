#!/usr/bin/env bash
# tests/bench/agent_ab_bench.sh BINARY[,OPTION...]... — several pullwatch builds (or one
# build with different options: `build/pullwatch,--lookup-delay=2ms`) at once on one
# private containerd, each its own agent (own state, own node name) subscribed to the
# same events: N paced `ctr images tag` (one at a time), then per agent its CPU per
# event (thread run time, /proc/PID/schedstat; utime+stime in ticks) and context
# switches per event, and each agent's event → journald latency (median / p99 / max, as
# agent_bench.sh measures it). Across separate agent_bench.sh runs the machine's load moves the
# figures more than a change does; here every build sees the same events under the
# same load; and each agent's minor page faults per event (flt/ev). As root. Prints
# figures only (exit 0 unless setup fails).
#   N=200     events
#   GAP=0.05  seconds between two events (after each ctr process exits)
#   BURST=1   instead: a burst, as agent_bench.sh makes it (xargs -P 4, 50 names
#             per ctr process)
#   GEN=grpc  the events made by one long-lived gRPC client (images_create.py, GAP apart;
#             with BURST=1 back to back) instead of a `ctr` process per event: what the
#             agent costs when no fresh process runs between two events
#   AB_PERF=1    profile the first build's agent over the events (perf record -g, kernel
#                too) and print its top functions by self time and the call graph to
#                $AB_OUT (default /tmp/ab_bench.perf.txt)
#   AB_SCHED=1   record every CPU's context switches over the events (perf record -e
#                sched:sched_switch -a -g) to $AB_OUT.sched (perf script), the first
#                agent's pid in $AB_OUT.sched.pid
#   AB_STRACE=1  trace the first build's agent's system calls over the events
#                (strace -f -tt -T, to $AB_OUT.strace; it slows that agent: its CPU
#                figures are not comparable)
#   AB_CTR=1     also run `ctr events` beside the agents (writing to a FIFO read by
#                linestamp.c, as agent_bench.sh does) and print its CPU and context
#                switches per event and each agent's CPU as a ratio of it: the issue's
#                "× ctr events" on the same events, for several builds at once
#   AB_KNOWN=0   images made before the agents start (each agent lists them; the
#                issue's setting is 1000, as agent_bench.sh's KNOWN)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
(($#)) || { echo "usage: $0 BINARY[,OPTION...]..." >&2; exit 2; }
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
if ((${AB_KNOWN:-0} > 0)); then
	seq -f "$R/bench/known-%05g:1.0.0" 1 "$AB_KNOWN" | xargs -P 4 -n 50 ctr -a "$PW_SOCK" images tag "$BASE" >/dev/null
fi

ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
minflt() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $8 }'; }
run_ns() { awk '{ print $1 }' "/proc/$1/schedstat"; }
csw() { awk '$1 ~ /^(non)?voluntary_ctxt_switches:$/ { s += $2 } END { print s }' "/proc/$1/status"; }
pids=() nodes=()
for spec in "$@"; do
	IFS=, read -r -a argv <<<"$spec"
	bin=${argv[0]}
	node=ab-$RANDOM$RANDOM
	"$bin" run --address "$PW_SOCK" --state-dir "$PW_WORK/state-$node" --node "$node" "${argv[@]:1}" \
		>"$PW_WORK/$node.out" 2>"$PW_WORK/$node.err" </dev/null &
	pids+=($!) nodes+=("$node")
	pw_poll 30 grep -q 'subscribed to containerd events' "$PW_WORK/$node.err" ||
		pw_fail "$bin did not subscribe" "$(tail -5 "$PW_WORK/$node.err")"
done
CTR_PID=
if [[ ${AB_CTR:-0} == 1 ]]; then
	pw_linestamp
	mkfifo "$PW_WORK/ctr.fifo"
	"$PW_WORK/linestamp" <"$PW_WORK/ctr.fifo" >"$PW_WORK/ctr.events" &
	STAMP_PID=$!
	ctr -a "$PW_SOCK" events >"$PW_WORK/ctr.fifo" 2>"$PW_WORK/ctr.err" &
	CTR_PID=$!
	# ctr events prints nothing until an event arrives: make one, wait for it
	pw_poll 10 eval "ctr -a '$PW_SOCK' images tag --force '$BASE' '$R/bench/ctr-ready:1.0.0' >/dev/null 2>&1; grep -q ctr-ready '$PW_WORK/ctr.events'" ||
		pw_fail "ctr events printed no event within 10 s" "$(cat "$PW_WORK/ctr.err")"
fi
# shellcheck disable=SC2034 # lib.sh's EXIT trap stops them
PW_EXTRA_PIDS="${pids[*]} $CTR_PID ${STAMP_PID:-}"
sleep 4 # the catch-up listing 3 s after subscribing
declare -A t0 n0 c0
declare -A f0
for p in "${pids[@]}"; do t0[$p]=$(ticks "$p") n0[$p]=$(run_ns "$p") c0[$p]=$(csw "$p") f0[$p]=$(minflt "$p"); done
all_ns() { local s=0 a f; for f in /proc/"$1"/task/*/schedstat; do read -r a _ <"$f" 2>/dev/null && s=$((s + a)); done; echo "$s"; }
ctd_t0=$(ticks "$PW_CTD_PID") ctd_n0=$(all_ns "$PW_CTD_PID")
all_csw() { local s=0 f; for f in /proc/"$1"/task/*/status; do s=$((s + $(awk '$1 ~ /^(non)?voluntary_ctxt_switches:$/ { s += $2 } END { print s }' "$f" 2>/dev/null || echo 0))); done; echo "$s"; }
[[ -z $CTR_PID ]] || ctr_n0=$(all_ns "$CTR_PID") ctr_c0=$(all_csw "$CTR_PID")
AB_OUT=${AB_OUT:-/tmp/ab_bench.perf.txt}
if [[ ${AB_PERF:-0} == 1 ]]; then
	perf record -q -g -F 10000 -p "${pids[0]}" -o "$PW_WORK/perf.data" >/dev/null 2>"$PW_WORK/perf.err" &
	PERF_PID=$!
fi
if [[ ${AB_SCHED:-0} == 1 ]]; then
	perf record -q -e sched:sched_switch -g -a -o "$PW_WORK/sched.data" >/dev/null 2>"$PW_WORK/sched.err" &
	SCHED_PID=$!
fi
if [[ ${AB_STRACE:-0} == 1 ]]; then
	strace -f -tt -T -p "${pids[0]}" -o "$AB_OUT.strace" 2>/dev/null &
	STRACE_PID=$!
fi
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
if [[ -n ${PERF_PID:-} ]]; then
	kill -INT "$PERF_PID" && wait "$PERF_PID" || true
	cp "$PW_WORK/perf.data" "$AB_OUT.data" 2>/dev/null || true
	{
		perf report -i "$PW_WORK/perf.data" --no-children --sort dso --stdio -g none
		perf report -i "$PW_WORK/perf.data" --no-children --sort dso,sym --percent-limit 0.5 --stdio -g none
		perf report -i "$PW_WORK/perf.data" --children --sort sym --percent-limit 3 --stdio -g caller,0.5,callee
	} >"$AB_OUT" 2>/dev/null || true
fi
if [[ -n ${STRACE_PID:-} ]]; then
	kill -INT "$STRACE_PID" && wait "$STRACE_PID" || true
fi
if [[ -n ${SCHED_PID:-} ]]; then
	kill -INT "$SCHED_PID" && wait "$SCHED_PID" || true
	# the first agent's switches away: how (sleeping S, preempted R) and by whom
	perf script -i "$PW_WORK/sched.data" -F comm,pid,event,trace,ip,sym 2>/dev/null >"$AB_OUT.sched" || true
	echo "${pids[0]}" >"$AB_OUT.sched.pid"
fi
echo "== $N $what, load average $(cut -d' ' -f1-3 /proc/loadavg)"
ctr_us=
if [[ -n $CTR_PID ]]; then
	# every thread of ctr events (Go: several), as containerd's below
	ctr_us=$("$PW_PY" -c "print(($(all_ns "$CTR_PID") - $ctr_n0) / 1e3 / $N)")
	printf '%-40s %9.1f µs %12s %8.2f %22s\n' "ctr events (all threads)" "$ctr_us" - \
		"$("$PW_PY" -c "print(($(all_csw "$CTR_PID") - $ctr_c0) / $N)")" \
		"$("$PW_PY" "$HERE/agent_bench.py" ctr-lat "$PW_WORK/ctr.events" bench/ab- |
			"$PW_PY" -c "import sys; n, med, p99, mx = sys.stdin.read().split(); print('%.2f/%.2f/%.2f ms' % (float(med) / 1e3, float(p99) / 1e3, float(mx) / 1e3) if med != '-' else '-')")"
fi
printf '%-40s %12s %12s %8s %22s %8s %8s\n' binary "run time/ev" "ticks/ev" "csw/ev" "latency med/p99/max" "× ctr" "flt/ev"
i=0
for p in "${pids[@]}"; do
	spec=${*:$((i + 1)):1}
	# shellcheck disable=SC2034 # n is the count
	read -r n med p99 max < <(journalctl -q -o json --no-pager SYSLOG_IDENTIFIER=pullwatch "NODE_NAME=${nodes[$i]}" \
		PULLWATCH_KIND=pull 2>/dev/null | "$PW_PY" "$HERE/agent_bench.py" journal-lat bench/ab-)
	us=$("$PW_PY" -c "print(($(run_ns "$p") - ${n0[$p]}) / 1e3 / $N)")
	lat=-
	[[ ${med:--} == - ]] || lat=$("$PW_PY" -c "print('%.2f/%.2f/%.2f ms' % ($med / 1e3, $p99 / 1e3, $max / 1e3))")
	printf '%-40s %9.1f µs %9.1f µs %8.2f %22s %8s %8.2f\n' "$spec" "$us" \
		"$("$PW_PY" -c "print(($(ticks "$p") - ${t0[$p]}) * 1e6 / $(getconf CLK_TCK) / $N)")" \
		"$("$PW_PY" -c "print(($(csw "$p") - ${c0[$p]}) / $N)")" "$lat" \
		"$([[ -z $ctr_us ]] && echo - || "$PW_PY" -c "print('%.2fx' % ($us / $ctr_us))")" \
		"$("$PW_PY" -c "print(($(minflt "$p") - ${f0[$p]}) / $N)")"
	i=$((i + 1))
done
# containerd's own threads (it answers every agent's look-ups, ctr's calls too): what a
# change moves onto it shows here when the runs compared differ only in that change
printf '%-40s %9.1f µs %9.1f µs\n' "containerd (all threads, all agents)" \
	"$("$PW_PY" -c "print(($(all_ns "$PW_CTD_PID") - $ctd_n0) / 1e3 / $N)")" \
	"$("$PW_PY" -c "print(($(ticks "$PW_CTD_PID") - $ctd_t0) * 1e6 / $(getconf CLK_TCK) / $N)")"
