#!/usr/bin/env bash
# Fault sweep (issue 7, item 16): every failure point of a ledger save and of spool
# appends/syncs/acks, failed in turn with ENOSPC and with EIO, once (a transient error)
# and from there on (a disk that stays full), each run checked by fault_driver's
# invariants. A hang (no exit within 20 s) or a crash is a failure too.
#   sweep.sh DRIVER SHIM [SCENARIO...]     default scenarios: ledger spool
set -uo pipefail
driver=$(realpath "$1") shim=$(realpath "$2")
shift 2
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(ledger spool)
work=$(mktemp -d /tmp/pw-fault-XXXXXX)
trap 'rm -rf "$work"' EXIT
# the ASan build's driver: our shim is preloaded ahead of the sanitizer runtime
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"

fail=0 total_runs=0
for sc in "${scenarios[@]}"; do
	d="$work/$sc-count"
	mkdir -p "$d"
	rm -f "$work/log"
	if ! PW_FAULT_DIR="$d" PW_FAULT_ARMED=0 PW_FAULT_LOG="$work/log" \
		timeout 20 env LD_PRELOAD="$shim" "$driver" "$sc" "$d"; then
		echo "FAIL: $sc without faults"
		fail=1
		continue
	fi
	points=$(sed -n 's/^points=\([0-9]*\).*/\1/p' "$work/log" | tail -1)
	if [ -z "$points" ] || [ "$points" -lt 1 ]; then
		echo "FAIL: $sc: the injector counted no failure points (is the shim preloaded?)"
		fail=1
		continue
	fi
	runs=0 bad=0
	for n in $(seq 1 "$points"); do
		for e in ENOSPC EIO; do
			for m in once persist; do
				d="$work/$sc-$n-$e-$m"
				mkdir -p "$d"
				rm -f "$work/log"
				out=$(PW_FAULT_DIR="$d" PW_FAULT_ARMED=0 PW_FAULT_N=$n PW_FAULT_ERRNO=$e PW_FAULT_MODE=$m \
					PW_FAULT_LOG="$work/log" timeout 20 env LD_PRELOAD="$shim" "$driver" "$sc" "$d" 2>&1)
				rc=$?
				runs=$((runs + 1))
				failed=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' "$work/log" 2>/dev/null | tail -1)
				if [ "$rc" != 0 ]; then
					why=$out
					[ "$rc" = 124 ] && why="hung (no exit within 20 s)"
					[ "$rc" -gt 128 ] && [ "$rc" != 124 ] && why="killed by signal $((rc - 128)): $out"
					echo "FAIL: $sc point $n/$points $e $m: exit $rc: $why"
					bad=$((bad + 1))
				elif [ "${failed:-0}" -lt 1 ]; then
					echo "FAIL: $sc point $n/$points $e $m: the fault was never injected (nondeterministic point count)"
					bad=$((bad + 1))
				fi
				rm -rf "$d"
			done
		done
	done
	total_runs=$((total_runs + runs))
	echo "fault sweep: $sc: $points failure points x 2 errnos x 2 modes = $runs runs, $bad violated"
	[ "$bad" = 0 ] || fail=1
done
echo "fault sweep: $total_runs runs in all"
exit $fail
