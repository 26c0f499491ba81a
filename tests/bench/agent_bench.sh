#!/usr/bin/env bash
# tests/bench/agent_bench.sh — pullwatch run beside `ctr events`, on one private
# containerd, as root. Prints for each (no judgement: exit 0 unless setup fails):
#   1. RSS and Private_Dirty (/proc/PID/smaps_rollup) idle with KNOWN images known,
#      and again idle after the burst;
#   2. CPU per image event over a burst of BURST `ctr images tag` (xargs -P) and
#      over PACED ones made one at a time: utime+stime from /proc/PID/stat
#      (process-wide, clock ticks) and the sum of the threads' run time from
#      /proc/PID/task/*/schedstat (ns); context switches per event (voluntary +
#      nonvoluntary, summed over /proc/PID/task/*/status: each voluntary one is a
#      wake-up after blocking);
#   2b. wake-ups while idle: context switches over IDLE seconds with nothing
#      happening (after the burst settled; the agent's periodic work shows here);
#   3. latency: pullwatch = journald's receive time (__REALTIME_TIMESTAMP) minus
#      PULLWATCH_EVENT_USEC (containerd's envelope timestamp) per entry;
#      ctr events = arrival time of its stdout line at a reader (linestamp.c,
#      stamping each line as read from a FIFO) minus the envelope timestamp ctr
#      prints first on the line. Median/p99/max, for the burst and for PACED
#      events made one at a time (sequential ctr processes: no queueing).
#
# Environment:
#   PULLWATCH     the binary (default: build/pullwatch);
#                 when none is executable, only ctr events is measured
#   KNOWN=1000    images present before the agent starts (it lists them)
#   BURST=2000    image events in the burst (>= 1000)
#   PACED=300     image events made one at a time (sequential ctr processes)
#   IDLE=30       seconds of idleness over which wake-ups are counted
#   PARALLEL=4    xargs -P for the burst (each ctr tags 50 names)
#   SETTLE=4      seconds of grace before "idle" is measured (the agent's catch-up
#                 listing runs 3 s after subscribing, its ledger save 2 s after a change)
#   BENCH_STDOUT=1  also pass --stdout to the agent (default: journald only)
#   BENCH_MASSIF=1  afterwards, rerun the agent under valgrind massif (fresh
#                 state, lists every image, a 200-event burst) and print its peak heap
#   BENCH_PERF=1  profile the agent over the burst (perf record -g) and print its top
#                 functions by self time
#   BENCH_STRACE=1  count the agent's system calls over the burst (strace -c -f; it
#                 slows the agent: that run's CPU figures are not comparable)
#   PW_KEEP_WORK=1  keep the work dir (logs, journal export, ctr lines)
# Runtime: well under a minute (plus ~1-2 minutes with BENCH_MASSIF=1).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
KNOWN=${KNOWN:-1000}
BURST=${BURST:-2000}
PACED=${PACED:-300}
IDLE=${IDLE:-30}
PARALLEL=${PARALLEL:-4}
SETTLE=${SETTLE:-4}

if [[ -z ${PULLWATCH:-} ]]; then
	for c in "$ROOT/build/pullwatch"; do
		[[ -x $c ]] && { PULLWATCH=$c; break; }
	done
fi
export PULLWATCH=${PULLWATCH:-}
HAVE_PW=0
[[ -n $PULLWATCH && -x $PULLWATCH ]] && HAVE_PW=1

# shellcheck disable=SC2034 # read by lib.sh
PW_TEST_NAME=bench PW_NO_SUMMARY=1
# shellcheck source=tests/integration/lib.sh
. "$ROOT/tests/integration/lib.sh"
RES=$PW_WORK/results
: >"$RES"
res() { echo "$1=$2" >>"$RES"; }
say() { echo "== $*"; }
CLK_TCK=$(getconf CLK_TCK)

pw_setup_deps_check
pw_linestamp

# ------------------------------------------------------------- measures ----

cpu_ticks() { # PID — utime+stime of the whole process (ticks)
	local f
	f=$(sed 's/^.*) //' "/proc/$1/stat")
	# after "comm) ": state is field 1, utime field 12, stime field 13
	awk '{ print $12 + $13 }' <<<"$f"
}
cpu_ns() { # PID — sum of the live threads' run time (ns)
	local s=0 a f
	for f in /proc/"$1"/task/*/schedstat; do
		read -r a _ <"$f" 2>/dev/null && s=$((s + a))
	done
	echo "$s"
}
csw() { # PID — voluntary + nonvoluntary context switches of the live threads
	local s=0 f v n
	for f in /proc/"$1"/task/*/status; do
		v=$(awk '$1 == "voluntary_ctxt_switches:" { v = $2 } $1 == "nonvoluntary_ctxt_switches:" { n = $2 }
			END { print v + n }' "$f" 2>/dev/null) || continue
		s=$((s + ${v:-0}))
	done
	echo "$s"
}
smaps() { # PID FIELD — kB
	awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/smaps_rollup"
}
# wait_idle PID — until PID used < 2 ms of CPU over 0.5 s (bounded: 20 s)
wait_idle() {
	local pid=$1 prev cur i
	prev=$(cpu_ns "$pid")
	for ((i = 0; i < 40; i++)); do
		sleep 0.5
		cur=$(cpu_ns "$pid")
		((cur - prev < 2000000)) && return 0
		prev=$cur
	done
	pw_note "pid $pid still busy after 20 s (measuring anyway)"
}
# pw_pulls NODE — pullwatch's pull entries for NODE in journald
pw_pulls() {
	journalctl -q -o cat --no-pager SYSLOG_IDENTIFIER=pullwatch "NODE_NAME=$1" PULLWATCH_KIND=pull 2>/dev/null | wc -l
}
# shellcheck disable=SC2317 # called through wait_count
ctr_seen() { # MARKER — /images/create lines of ctr events naming MARKER
	grep -c "/images/create .*$1" "$PW_WORK/ctr.events" 2>/dev/null || true
}
# wait_count TIMEOUT WANT CMD... — poll CMD's number until >= WANT; echo the last
# value. Gives up after TIMEOUT seconds, or after 30 s without progress.
wait_count() {
	local timeout=$1 want=$2 deadline n last=-1 moved now
	shift 2
	deadline=$(($(pw_now_ms) + timeout * 1000))
	moved=$(pw_now_ms)
	while :; do
		n=$("$@")
		((n >= want)) && break
		now=$(pw_now_ms)
		((n != last)) && last=$n moved=$now
		((now >= deadline || now - moved >= 30000)) && break
		sleep 0.2
	done
	echo "$n"
}
# journald's socket is shared with anything else on the machine (another test
# harness may stop and restart journald): note it when it changed under us
journald_id() { stat -c %i "$PW_JOURNAL_SOCKET" 2>/dev/null || echo none; }

# bench_start_agent NODE STATE_DIR READY_TIMEOUT [WRAPPER...] — pullwatch run,
# journald only unless BENCH_STDOUT=1; waits for "subscribed to containerd events".
bench_start_agent() {
	local node=$1 state=$2 timeout=$3 extra=()
	shift 3
	[[ ${BENCH_STDOUT:-0} == 1 ]] && extra+=(--stdout)
	mkdir -p "$state"
	: >"$PW_WORK/agent.err"
	"$@" "$PULLWATCH" run --address "$PW_SOCK" --state-dir "$state" --node "$node" "${extra[@]}" \
		>"$PW_WORK/agent.out" 2>"$PW_WORK/agent.err" </dev/null &
	PW_AGENT_PID=$!
	# with a wrapper (valgrind) $! is the wrapper, which execs the agent: same pid
	if ! pw_poll "$timeout" eval "grep -q 'subscribed to containerd events' '$PW_WORK/agent.err' || ! pw_proc_alive $PW_AGENT_PID"; then
		pw_fail "pullwatch did not subscribe within ${timeout}s" "$(tail -5 "$PW_WORK/agent.err")"
	fi
	pw_proc_alive "$PW_AGENT_PID" || pw_fail "pullwatch exited before subscribing" "$(tail -5 "$PW_WORK/agent.err")"
}

# ---------------------------------------------------------------- setup ----

T0=$(pw_now_ms)
say "setup: journald (if none runs), docker-registry, containerd in $PW_WORK"
pw_start_journald
JOURNALD_ID=$(journald_id)
pw_start_registry
pw_start_containerd
R=$PW_REGISTRY
BASE=$R/bench/base:1.0.0
# with a revision label, as a traceable image has: one record (a pull) per event, no finding
pw_build_image bench/base 1.0.0 0123456789abcdef0123456789abcdef01234567 "bench-$RANDOM$RANDOM" >/dev/null
pw_pull default "$BASE"
# many names per ctr process, a few processes at once
tag_many() { # PREFIX COUNT — COUNT new names PREFIX-00001:1.0.0 ... for BASE
	seq -f "$R/bench/$1-%05g:1.0.0" 1 "$2" | xargs -P "$PARALLEL" -n 50 ctr -a "$PW_SOCK" images tag "$BASE" >/dev/null
}
t=$(pw_now_ms)
tag_many known "$KNOWN" || pw_fail "ctr images tag failed"
say "created $KNOWN images (ctr images tag, xargs -P $PARALLEL) in $(($(pw_now_ms) - t)) ms"
ALL=$((KNOWN + 1))

# ------------------------------------------------------------- the peers ----

mkfifo "$PW_WORK/ctr.fifo"
"$PW_WORK/linestamp" <"$PW_WORK/ctr.fifo" >"$PW_WORK/ctr.events" &
STAMP_PID=$!
ctr -a "$PW_SOCK" events >"$PW_WORK/ctr.fifo" 2>"$PW_WORK/ctr.err" &
CTR_PID=$!
# shellcheck disable=SC2034 # lib.sh's EXIT trap stops them
PW_EXTRA_PIDS="$CTR_PID $STAMP_PID"
# ctr events prints nothing until an event arrives: make one, wait for it
pw_poll 10 eval "ctr -a '$PW_SOCK' images tag --force '$BASE' '$R/bench/ctr-ready:1.0.0' >/dev/null 2>&1; grep -q ctr-ready '$PW_WORK/ctr.events'" ||
	pw_fail "ctr events printed no event within 10 s" "$(cat "$PW_WORK/ctr.err")"
ALL=$((ALL + 1))

NODE=bench-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
if ((HAVE_PW)); then
	say "starting: $PULLWATCH run --node $NODE$([[ ${BENCH_STDOUT:-0} == 1 ]] && echo " --stdout")"
	t=$(pw_now_ms)
	bench_start_agent "$NODE" "$PW_WORK/state" 30
	say "pullwatch subscribed after $(($(pw_now_ms) - t)) ms"
	n=$(wait_count 120 "$ALL" pw_pulls "$NODE")
	say "pullwatch recorded $n pulls of $ALL images present at start after $(($(pw_now_ms) - t)) ms"
	((n >= ALL)) || res pw_note "only $n of the $ALL images present at start were recorded in journald within 120 s"
else
	say "pullwatch not built (PULLWATCH='$PULLWATCH'): measuring ctr events alone"
	res pw_note "pullwatch binary not available: its column is empty"
fi

pids=("$CTR_PID")
((HAVE_PW)) && pids+=("$PW_AGENT_PID")
# settle: a grace period for the agent's timers, not a wait for an event: it lists
# again 3 s after subscribing (catch-up) and saves its ledger 2 s after a change;
# both belong to "idle" memory and to the burst's CPU. Then poll for idleness.
settle() {
	sleep "$SETTLE"
	local p
	for p in "${pids[@]}"; do wait_idle "$p"; done
}
settle
snap_mem() { # SUFFIX
	# idle memory once the work events leave behind is done: the ledger save, the health
	# files and the heap trim (which waits for the health files' timer while events come,
	# up to 15 s after the last one): no timer of the agent due within 60 s
	if ((HAVE_PW)); then
		pw_poll 45 eval "! pw_timer_due_within $PW_AGENT_PID 60" ||
			res pw_note "the agent still had a timer due within 60 s after 45 s of quiet"
	fi
	res "ctr_$1_rss" "$(smaps "$CTR_PID" Rss)"
	res "ctr_$1_pd" "$(smaps "$CTR_PID" Private_Dirty)"
	if ((HAVE_PW)); then
		res "pw_$1_rss" "$(smaps "$PW_AGENT_PID" Rss)"
		res "pw_$1_pd" "$(smaps "$PW_AGENT_PID" Private_Dirty)"
	fi
}
snap_mem idle
res known "$KNOWN"
res burst "$BURST"
res paced "$PACED"

# --------------------------------------------------------------- burst ----

# --------------------------------------------------------------- idle ----

# what an event leaves behind (the ledger save 2 s later, the health files 15 s after
# the last activity) is the event's cost, not idleness: wait (at most 45 s) until no
# timer of the agent is due within 60 s — only liveness timers stay armed
if ((HAVE_PW)); then
	pw_poll 45 eval "! pw_timer_due_within $PW_AGENT_PID 60" ||
		res pw_note "the agent still had a timer due within 60 s after 45 s of quiet"
fi
say "idle: $IDLE s with nothing happening"
ctr_c0=$(csw "$CTR_PID")
((HAVE_PW)) && pw_c0=$(csw "$PW_AGENT_PID")
sleep "$IDLE"
res ctr_idle_csw $(($(csw "$CTR_PID") - ctr_c0))
((HAVE_PW)) && res pw_idle_csw $(($(csw "$PW_AGENT_PID") - pw_c0))
res idle "$IDLE"

ctr_t0=$(cpu_ticks "$CTR_PID") ctr_n0=$(cpu_ns "$CTR_PID") ctr_c0=$(csw "$CTR_PID")
if ((HAVE_PW)); then
	pw_base=$(pw_pulls "$NODE")
	pw_t0=$(cpu_ticks "$PW_AGENT_PID") pw_n0=$(cpu_ns "$PW_AGENT_PID") pw_c0=$(csw "$PW_AGENT_PID")
fi
if ((HAVE_PW)) && [[ ${BENCH_PERF:-0} == 1 ]]; then # a profile of the agent over the burst and its settling
	perf record -q -g -F 2000 -p "$PW_AGENT_PID" -o "$PW_WORK/perf.data" >/dev/null 2>"$PW_WORK/perf.err" &
	PERF_PID=$!
fi
if ((HAVE_PW)) && [[ ${BENCH_STRACE:-0} == 1 ]]; then # the agent's system calls over the burst and its settling
	strace -c -f -p "$PW_AGENT_PID" -o "$PW_WORK/strace.txt" 2>/dev/null &
	STRACE_PID=$!
fi
say "burst: $BURST new names (ctr images tag, 50 per process, xargs -P $PARALLEL)"
t=$(pw_now_ms)
tag_many burst "$BURST" || pw_fail "ctr images tag failed during the burst"
gen_ms=$(($(pw_now_ms) - t))
say "burst generated in $gen_ms ms ($((BURST * 1000 / (gen_ms > 0 ? gen_ms : 1))) events/s)"
ALL=$((ALL + BURST))
n=$(wait_count 120 "$BURST" ctr_seen "bench/burst-")
res ctr_burst_seen "$n"
say "ctr events printed $n burst events after $(($(pw_now_ms) - t)) ms"
if ((HAVE_PW)); then
	n=$(wait_count 180 $((pw_base + BURST)) pw_pulls "$NODE")
	res pw_burst_seen $((n - pw_base))
	say "pullwatch wrote $((n - pw_base)) burst entries to journald after $(($(pw_now_ms) - t)) ms"
fi
settle
# per_event PREFIX N — CPU (ticks, ns) and context switches since the *_t0/_n0/_c0 marks
per_event() {
	local p=$1 n=$2 pid t0 n0 c0 t1 n1 c1
	if [[ $p == ctr ]]; then pid=$CTR_PID t0=$ctr_t0 n0=$ctr_n0 c0=$ctr_c0; else pid=$PW_AGENT_PID t0=$pw_t0 n0=$pw_n0 c0=$pw_c0; fi
	t1=$(cpu_ticks "$pid") n1=$(cpu_ns "$pid") c1=$(csw "$pid")
	res "${p}_${3}cpu_stat_us" "$("$PW_PY" -c "print(($t1 - $t0) * 1e6 / $CLK_TCK / $n)")"
	res "${p}_${3}cpu_sched_us" "$("$PW_PY" -c "print(($n1 - $n0) / 1e3 / $n)")"
	res "${p}_${3}csw" "$("$PW_PY" -c "print(($c1 - $c0) / $n)")"
}
per_event ctr "$BURST" ""
((HAVE_PW)) && per_event pw "$BURST" ""
if [[ -n ${PERF_PID:-} ]]; then
	kill -INT "$PERF_PID" && wait "$PERF_PID" || true
	perf report -i "$PW_WORK/perf.data" --no-children --percent-limit 1.5 --stdio -g none 2>/dev/null |
		grep -v '^#' | grep -v '^$' | head -40 >"$PW_WORK/perf.top" || true
fi
if [[ -n ${STRACE_PID:-} ]]; then
	kill -INT "$STRACE_PID" && wait "$STRACE_PID" || true
fi
snap_mem after

# ---------------------------------------------------------------- paced ----

say "paced: $PACED new names, one ctr images tag at a time"
ctr_t0=$(cpu_ticks "$CTR_PID") ctr_n0=$(cpu_ns "$CTR_PID") ctr_c0=$(csw "$CTR_PID")
((HAVE_PW)) && pw_t0=$(cpu_ticks "$PW_AGENT_PID") pw_n0=$(cpu_ns "$PW_AGENT_PID") pw_c0=$(csw "$PW_AGENT_PID")
t=$(pw_now_ms)
for ((i = 1; i <= PACED; i++)); do
	ctr -a "$PW_SOCK" images tag "$BASE" "$(printf '%s/bench/paced-%05d:1.0.0' "$R" "$i")" >/dev/null ||
		pw_fail "ctr images tag failed (paced)"
done
gen_ms=$(($(pw_now_ms) - t))
say "paced events made in $gen_ms ms (one every $((gen_ms / (PACED > 0 ? PACED : 1))) ms)"
ALL=$((ALL + PACED))
wait_count 60 "$PACED" ctr_seen "bench/paced-" >/dev/null
((HAVE_PW)) && wait_count 60 $((pw_base + BURST + PACED)) pw_pulls "$NODE" >/dev/null
settle
per_event ctr "$PACED" paced_
((HAVE_PW)) && per_event pw "$PACED" paced_

# -------------------------------------------------------------- latency ----

lat_res() { # PREFIX "n median p99 max"
	local n med p99 max
	read -r n med p99 max <<<"$2"
	res "${1}_n" "$n"
	res "${1}_median" "$med"
	res "${1}_p99" "$p99"
	res "${1}_max" "$max"
}
lat_res ctr_burst "$("$PW_PY" "$HERE/agent_bench.py" ctr-lat "$PW_WORK/ctr.events" bench/burst-)"
lat_res ctr_paced "$("$PW_PY" "$HERE/agent_bench.py" ctr-lat "$PW_WORK/ctr.events" bench/paced-)"
if ((HAVE_PW)); then
	journalctl -q -o json --no-pager SYSLOG_IDENTIFIER=pullwatch "NODE_NAME=$NODE" PULLWATCH_KIND=pull \
		>"$PW_WORK/journal.json" 2>/dev/null || true
	lat_res pw_burst "$("$PW_PY" "$HERE/agent_bench.py" journal-lat bench/burst- <"$PW_WORK/journal.json")"
	lat_res pw_paced "$("$PW_PY" "$HERE/agent_bench.py" journal-lat bench/paced- <"$PW_WORK/journal.json")"
fi

[[ $(journald_id) == "$JOURNALD_ID" ]] ||
	res pw_note "journald's socket was replaced during the run (another process restarted journald): entries sent meanwhile may be lost"
if ((HAVE_PW)); then
	# journalctl has no "!=": count every entry and subtract the pulls
	n=$(($(journalctl -q -o cat --no-pager SYSLOG_IDENTIFIER=pullwatch "NODE_NAME=$NODE" 2>/dev/null | wc -l) - $(pw_pulls "$NODE")))
	((n == 0)) || res pw_findings "$n"
fi

# --------------------------------------------------------------- massif ----

if ((HAVE_PW)) && [[ ${BENCH_MASSIF:-0} == 1 ]]; then
	if command -v valgrind >/dev/null; then
		pw_kill_wait "$PW_AGENT_PID" 10
		PW_AGENT_PID=
		MNODE=$NODE-massif
		say "massif: fresh agent under valgrind --tool=massif, lists $ALL images, then a 200-event burst"
		t=$(pw_now_ms)
		bench_start_agent "$MNODE" "$PW_WORK/state-massif" 120 \
			valgrind -q --tool=massif --massif-out-file="$PW_WORK/massif.out"
		n=$(wait_count 300 "$ALL" pw_pulls "$MNODE")
		say "massif: $n of $ALL listed images recorded after $(($(pw_now_ms) - t)) ms"
		tag_many massif 200
		n=$(wait_count 120 $((ALL + 200)) pw_pulls "$MNODE")
		pw_kill_wait "$PW_AGENT_PID" 30
		PW_AGENT_PID=
		if [[ -s $PW_WORK/massif.out ]]; then
			res pw_massif_peak "$("$PW_PY" "$HERE/agent_bench.py" massif-peak "$PW_WORK/massif.out")"
			ms_print "$PW_WORK/massif.out" >"$PW_WORK/massif.txt" 2>/dev/null || true
		else
			res pw_massif_peak "no massif output"
		fi
	else
		res pw_massif_peak "valgrind not installed"
	fi
fi

# ---------------------------------------------------------------- table ----

echo
say "results (containerd $(containerd --version | awk '{print $3}'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $((($(pw_now_ms) - T0) / 1000)) s)"
"$PW_PY" "$HERE/agent_bench.py" table "$RES"
if [[ -s $PW_WORK/perf.top ]]; then
	echo "-- pullwatch's profile over the burst (perf, self time, >= 1.5%):"
	cat "$PW_WORK/perf.top"
fi
if [[ -s $PW_WORK/strace.txt ]]; then
	echo "-- pullwatch's system calls over the burst (strace -c -f; strace slows it: CPU figures of this run are not comparable):"
	head -30 "$PW_WORK/strace.txt"
fi
pw_done
