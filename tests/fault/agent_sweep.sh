#!/usr/bin/env bash
# Agent-level fault sweep (issue 7, item 16, the long one; `tests/run --long`, not CI).
# The real agent against a private containerd (tests/integration/lib.sh): 500 images
# known at start, 200 pulls as events, the shipping endpoint down then up, SIGTERM. The
# LD_PRELOAD injector (faultinject.c) fails the Nth durable-I/O call under the state
# directory with ENOSPC or EIO, once or from there on. Invariants at every N:
#   - no spin: the agent's CPU over a quiet second stays under 50 %, and it exits
#     within 10 s of SIGTERM;
#   - no crash: no signal, no sanitizer report; exit 0 (or 1 with a line saying why,
#     when start-up itself could not get its state directory);
#   - every record reaches stdout (--stdout): 700 pull records;
#   - nothing the spool took as durable is lost: every pull on stdout is at the endpoint
#     or still in the spool, but for as many as the agent says it could not spool;
#   - the ledger is the old or the new version: `pullwatch report` reads it (exit != 2);
#   - said once: no warning or error line (numbers aside) repeats more than twice
#     (a failure and its recovery).
# First a run without faults counts the failure points (the count varies a little with
# timing); then N is swept over SAMPLES values spread evenly over 1..points (every N when
# SAMPLES >= points), each with the 4 modes.
#   agent_sweep.sh FAULTINJECT_SO      (PULLWATCH=path/to/pullwatch; as root)
#   SAMPLES=24  N values swept (default 24: 96 runs)
set -euo pipefail
SHIM=$(realpath "$1")
. "$(dirname "$0")/../integration/lib.sh"
pw_start_all
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
SAMPLES=${SAMPLES:-24}
NODE=$(pw_node_name)
R=$PW_REGISTRY
KNOWN=500 EVENTS=200 TOTAL=700
t_start=$(pw_now_ms)

# 500 images known at start: one pulled image, 500 names (ctr images tag, 50 per call)
BASE=$R/sweep/base:v1
pw_build_image sweep/base v1 "" sweep-base >/dev/null
pw_pull default "$BASE"
SRC=$BASE
tag_many() { # PREFIX COUNT
	seq -f "$R/sweep/$1-%05g:v1" 1 "$2" | xargs -P 4 -n 50 ctr -a "$PW_SOCK" images tag "$SRC" >/dev/null
}
untag_many() {
	seq -f "$R/sweep/$1-%05g:v1" 1 "$2" | xargs -P 4 -n 50 ctr -a "$PW_SOCK" images rm >/dev/null 2>&1 || true
}
tag_many known "$KNOWN"
ctr -a "$PW_SOCK" images rm "$BASE" >/dev/null # exactly the 500 names
SRC=$R/sweep/known-00001:v1
pw_note "500 images known in $(($(pw_now_ms) - t_start)) ms"

RUN=$PW_WORK/run
pulls() { grep -c '"kind":"pull"' "$RUN/out" 2>/dev/null || true; }
received() { grep -c '"kind":"pull"' "$RUN/received.jsonl" 2>/dev/null || true; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# ids of the pull records: on stdout / at the endpoint / in any frame of the spool
ids_stdout() { "$PW_PY" -c 'import json,sys
for l in open(sys.argv[1]):
    try: o = json.loads(l)
    except ValueError: continue
    if o.get("kind") == "pull": print(o["id"])' "$RUN/out" | sort -u; }
ids_received() { [[ -f $RUN/received.jsonl ]] && "$PW_PY" -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l).get("record") or {}
    if r.get("kind") == "pull": print(r["id"])' "$RUN/received.jsonl" | sort -u || true; }
ids_spool() { "$PW_PY" -c 'import glob,json,struct,sys
for f in glob.glob(sys.argv[1] + "/*.seg") + glob.glob(sys.argv[1] + "/latest"):
    b = open(f, "rb").read(); o = 0
    while o + 20 <= len(b):
        magic, n = struct.unpack_from("<II", b, o)
        if magic != 0x31535750: o += 1; continue
        try: r = json.loads(b[o + 20:o + 20 + n])
        except ValueError: r = {}
        if r.get("kind") == "pull": print(r["id"])
        o += 20 + n' "$RUN/state/spool" 2>/dev/null | sort -u || true; }

# run_one N ERRNO MODE — one run of the scenario; prints "ok", "unreached" or "VIOLATED: why"
run_one() {
	local n=$1 e=$2 m=$3 port pid st t0 c0 c1 why=() lost missing
	local t_run
	t_run=$(pw_now_ms)
	rm -rf "$RUN" && mkdir -p "$RUN/state"
	port=$(pw_free_port)
	PW_FAULT_DIR=$RUN/state PW_FAULT_N=$n PW_FAULT_ERRNO=$e PW_FAULT_MODE=$m PW_FAULT_LOG=$RUN/fault.log \
		LD_PRELOAD=$SHIM "$PULLWATCH" run --address "$PW_SOCK" --state-dir "$RUN/state" --node "$NODE" --stdout \
		--endpoint "http://127.0.0.1:$port/v1/records" --inventory-interval 0 --retry-max-backoff 1s \
		--batch-max-age 10ms >"$RUN/out" 2>"$RUN/err" </dev/null &
	pid=$!
	pw_poll 60 eval "grep -q 'subscribed to containerd events' '$RUN/err' || ! pw_proc_alive $pid" || true
	if pw_proc_alive "$pid"; then
		tag_many "ev$n" "$EVENTS" || why+=("setup: ctr images tag failed")
		pw_poll 60 eval "(( \$(pulls) >= TOTAL )) || ! pw_proc_alive $pid" || true
		# the endpoint comes up: wait for every pull, or for the deliveries to stop
		"$PW_PY" "$PW_LIB_DIR/receiver.py" --port "$port" --records "$RUN/received.jsonl" >"$RUN/receiver.log" 2>&1 &
		local rpid=$! last=-1 same=0
		for _ in $(seq 1 60); do
			local k
			k=$(received)
			((k >= TOTAL)) && break
			if ((k == last)); then same=$((same + 1)); else same=0; fi
			((same >= 6)) && break # 3 s without a delivery
			last=$k
			pw_proc_alive "$pid" || break
			sleep 0.5
		done
		if pw_proc_alive "$pid"; then
			c0=$(cpu_ticks "$pid")
			sleep 1 # a negative check: the agent must NOT burn the CPU while idle
			c1=$(cpu_ticks "$pid")
			(((c1 - c0) * 100 / $(getconf CLK_TCK) < 50)) || why+=("spins: $((c1 - c0)) ticks of CPU in a quiet second")
		fi
		kill -TERM "$rpid" 2>/dev/null || true
		wait "$rpid" 2>/dev/null || true
	fi
	t0=$(pw_now_ms)
	kill -TERM "$pid" 2>/dev/null || true
	pw_poll 10 eval "! pw_proc_alive $pid" || {
		why+=("did not exit within 10 s of SIGTERM")
		kill -KILL "$pid" 2>/dev/null || true
	}
	wait "$pid" && st=0 || st=$?
	local failed
	failed=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' "$RUN/fault.log" 2>/dev/null | tail -1)
	if ((st > 128)); then why+=("killed by signal $((st - 128))"); fi
	if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$RUN/err"; then why+=("sanitizer report"); fi
	if ((st != 0 && st <= 128)); then
		# start-up could not use its state directory: fine if it said why, in a line
		if (($(pulls) > 0)) || ! grep -qE 'cannot|error' "$RUN/err"; then
			why+=("exit $st: $(tail -1 "$RUN/err")")
		fi
	elif (($(pulls) < TOTAL)); then
		why+=("only $(pulls) of $TOTAL pull records on stdout")
	fi
	if ((st == 0)); then
		lost=$(sed -n 's/.*since start, \([0-9]*\) records could not be spooled.*/\1/p' "$RUN/err" | tail -1)
		missing=$(comm -23 <(ids_stdout) <(sort -u <(ids_received) <(ids_spool)) | wc -l)
		((missing <= ${lost:-0})) ||
			why+=("$missing pull records neither at the endpoint nor in the spool; the agent said ${lost:-0} could not be spooled")
	fi
	local rc=0
	"$PULLWATCH" report --state-dir "$RUN/state" >/dev/null 2>"$RUN/report.err" || rc=$?
	((rc != 2)) || why+=("the ledger is unreadable: $(head -1 "$RUN/report.err")")
	local rep
	rep=$(grep -E '^pullwatch: ' "$RUN/err" | grep -viE 'connected to|subscribed to|^pullwatch: ledger: |inventory: ' |
		sed -E 's/[0-9]+/N/g' | sort | uniq -c | awk '$1 > 2' | head -1)
	[[ -z $rep ]] || why+=("said more than twice: $rep")
	untag_many "ev$n" "$EVENTS"
	echo "$n $e $m $(($(pw_now_ms) - t_run)) ms ${why[*]}" >>"$PW_WORK/runs.log"
	if ((${#why[@]})); then
		echo "VIOLATED: ${why[*]}"
		mkdir -p "$PW_WORK/violations" && cp -r "$RUN" "$PW_WORK/violations/$n-$e-$m"
	elif [[ ${failed:-0} -lt 1 ]]; then
		echo "unreached"
	else
		echo "ok"
	fi
}

# count the failure points of one run without faults
r=$(run_one 0 ENOSPC once)
points=$(sed -n 's/^points=\([0-9]*\).*/\1/p' "$RUN/fault.log" | tail -1)
[[ $r == unreached && -n $points && $points -gt 0 ]] ||
	pw_fail "the run without faults: $r (points=${points:-?})" "$(tail -5 "$RUN/err")"
pw_note "one scenario run: $points failure points under the state dir ($(($(pw_now_ms) - t_start)) ms so far)"

ns=()
if ((SAMPLES >= points)); then
	mapfile -t ns < <(seq 1 "$points")
elif ((SAMPLES < 2)); then
	ns=(1)
else
	for ((i = 0; i < SAMPLES; i++)); do ns+=($((1 + i * (points - 1) / (SAMPLES - 1)))); done
fi
runs=0 ok=0 unreached=0 bad=0
for n in "${ns[@]}"; do
	for e in ENOSPC EIO; do
		for m in once persist; do
			r=$(run_one "$n" "$e" "$m")
			runs=$((runs + 1))
			case $r in
			ok) ok=$((ok + 1)) ;;
			unreached) unreached=$((unreached + 1)) ;;
			*)
				bad=$((bad + 1))
				pw_note "N=$n $e $m: $r"
				;;
			esac
		done
	done
done
secs=$((($(pw_now_ms) - t_start) / 1000))
pw_note "agent sweep: ${#ns[@]} of $points failure points (N = ${ns[*]}) x 2 errnos x 2 modes = $runs runs in ${secs} s: $ok ok, $unreached not reached (the run had fewer points), $bad violated"
[[ ${PW_KEEP_WORK:-0} == 1 && $bad -gt 0 ]] && pw_note "violations kept in $PW_WORK/violations"
((bad == 0)) || pw_fail "$bad runs broke an invariant"
pw_pass "agent sweep"
pw_done
