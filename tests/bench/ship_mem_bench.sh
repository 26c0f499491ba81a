#!/usr/bin/env bash
# tests/bench/ship_mem_bench.sh — the agent's memory with an HTTPS endpoint (issue 12,
# item 6), as root, on one private containerd + registry (tests/integration/lib.sh),
# shipping to tests/integration/receiver.py over TLS with a client certificate
# (mTLS, a CA made for the run). For each of
#   none    no endpoint (the floor)
#   curl    --endpoint-transport curl   (libcurl loaded on demand, the old shipper)
#   native  --endpoint-transport native (agent/httpc.c + GnuTLS loaded on demand)
# and each store (SMALL images: a handful of records; KNOWN images: their inventory
# shipped too), a fresh agent runs until every record it printed reached the receiver
# and its spool is empty, then idles; its Rss and Private_Dirty come from
# /proc/PID/smaps_rollup. All runs share this script's load: the load average is
# printed beside the figures. Figures only: nothing here asserts a size.
#
# Environment: PULLWATCH (default build/pullwatch), KNOWN=1000, SMALL=8,
#   SETTLE=4 (seconds of grace for the agent's timers before idle is measured),
#   RUNS=1 (runs per cell; the median is printed), STORES="small known",
#   TRANSPORTS="none curl native", BENCH_MAPS=1 (also Private_Dirty by mapping),
#   PW_KEEP_WORK=1 keeps the work dir.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
KNOWN=${KNOWN:-1000}
SMALL=${SMALL:-8}
SETTLE=${SETTLE:-4}
RUNS=${RUNS:-1}
export PULLWATCH=${PULLWATCH:-$ROOT/build/pullwatch}

# shellcheck disable=SC2034 # read by lib.sh
PW_TEST_NAME=shipmem PW_NO_SUMMARY=1
# shellcheck source=tests/integration/lib.sh
. "$ROOT/tests/integration/lib.sh"
pw_require_pullwatch
pw_start_all
R=$PW_REGISTRY
W=$PW_WORK
sc() { "$PW_PY" "$PW_LIB_DIR/shipcheck.py" "$@"; }
smaps() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/smaps_rollup"; } # PID FIELD — kB
cpu_ns() {
	local s=0 a f
	for f in /proc/"$1"/task/*/schedstat; do read -r a _ <"$f" 2>/dev/null && s=$((s + a)); done
	echo "$s"
}
wait_idle() { # PID — until it used < 2 ms of CPU over 0.5 s (bounded: 20 s)
	local prev cur i
	prev=$(cpu_ns "$1")
	for ((i = 0; i < 40; i++)); do
		sleep 0.5
		cur=$(cpu_ns "$1")
		((cur - prev < 2000000)) && return 0
		prev=$cur
	done
	pw_note "pid $1 still busy after 20 s (measuring anyway)"
}

# ---- TLS material: a CA, the receiver's certificate for 127.0.0.1, a client certificate
T=$W/tls
mkdir -p "$T"
ossl() { openssl "$@" >>"$T/openssl.log" 2>&1 || pw_fail "openssl $1 failed" "$(tail -5 "$T/openssl.log")"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=pullwatch bench CA" \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
	-keyout "$T/ca.key" -out "$T/ca.crt"
mkleaf() { # NAME CN EXTENSIONS
	ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" -keyout "$T/$1.key" -out "$T/$1.csr"
	printf '%b' "$3" >"$T/$1.ext"
	ossl x509 -req -in "$T/$1.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" -CAcreateserial -days 2 \
		-extfile "$T/$1.ext" -out "$T/$1.crt"
}
mkleaf server 127.0.0.1 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
mkleaf client pullwatch-agent 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n'

# ---- the stores: namespace "small" (SMALL names of one image, half :latest) and
# namespace "known" (KNOWN names)
SRC=$R/shipmem/base:1.0
pw_build_image shipmem/base 1.0 "" "shipmem-$RANDOM$RANDOM" >/dev/null
tag_names() { # NS PREFIX COUNT
	local i names=()
	for ((i = 1; i <= $3; i++)); do
		if ((i % 2 == 0)); then names+=("$R/$2-$i:latest"); else names+=("$R/$2-$i:1.$i"); fi
	done
	printf '%s\n' "${names[@]}" | xargs -n 100 ctr -a "$PW_SOCK" -n "$1" images tag "$SRC" >/dev/null ||
		pw_fail "ctr images tag failed"
}
pw_pull small "$SRC"
tag_names small small "$SMALL"
pw_pull known "$SRC"
tag_names known known "$KNOWN"

RESULTS=$W/results
: >"$RESULTS"

# run_one NS TRANSPORT — one fresh agent; appends "NS TRANSPORT records rss pd" to RESULTS
run_one() {
	local ns=$1 tr=$2 port rpid args=() delivered n frames
	PW_STATE_DIR=$W/state-$ns-$tr-$RANDOM
	PW_AGENT_OUT=$W/out-$ns-$tr
	PW_AGENT_ERR=$W/err-$ns-$tr
	: >"$PW_AGENT_OUT"
	if [[ $tr != none ]]; then
		rm -f "$W/port" "$W/records"
		"$PW_PY" "$PW_LIB_DIR/receiver.py" --port-file "$W/port" --records "$W/records" \
			--cert "$T/server.crt" --key "$T/server.key" --client-ca "$T/ca.crt" >>"$W/receiver.log" 2>&1 &
		rpid=$!
		PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $rpid"
		pw_poll 15 test -s "$W/port" || pw_fail "the receiver did not listen" "$(tail -5 "$W/receiver.log")"
		port=$(cat "$W/port")
		args=(--endpoint "https://127.0.0.1:$port/ingest" --endpoint-transport "$tr"
			--endpoint-ca-file "$T/ca.crt" --endpoint-cert-file "$T/client.crt"
			--endpoint-key-file "$T/client.key" --batch-max-age 100ms)
	fi
	pw_start_agent "shipmem-$ns" --namespace "$ns" "${args[@]}"
	# everything listed at start is printed (pulls, findings) and, with an endpoint, shipped
	local want=$SMALL
	[[ $ns == known ]] && want=$KNOWN
	pw_poll 120 eval "(( \$(wc -l <'$PW_AGENT_OUT') >= $want ))" ||
		pw_fail "$ns/$tr: the agent printed only $(wc -l <"$PW_AGENT_OUT") records"
	if [[ $tr != none ]]; then
		pw_poll 120 sc delivered --quiet --expect "$PW_AGENT_OUT" --received "$W/records" ||
			pw_fail "$ns/$tr: not everything arrived" "$(sc delivered --expect "$PW_AGENT_OUT" --received "$W/records")"
		pw_poll 60 eval 'test "$(sc frames "$PW_STATE_DIR/spool")" = 0' ||
			pw_fail "$ns/$tr: the spool did not drain" "$(pw_agent_err_since_start | tail -5)"
		n=$(wc -l <"$W/records")
	else
		n=$(wc -l <"$PW_AGENT_OUT")
	fi
	sleep "$SETTLE" # grace for the agent's own timers (ledger save, catch-up listing), then poll for idle
	wait_idle "$PW_AGENT_PID"
	echo "$ns $tr $n $(smaps "$PW_AGENT_PID" Rss) $(smaps "$PW_AGENT_PID" Private_Dirty) $(cut -d' ' -f1 /proc/loadavg)" >>"$RESULTS"
	if [[ -n ${BENCH_IDLE_HOOK:-} ]]; then # a command run at idle with the agent's PID and "NS-TRANSPORT"
		$BENCH_IDLE_HOOK "$PW_AGENT_PID" "$ns-$tr"
	fi
	if [[ -n ${BENCH_MAPS:-} ]]; then
		awk '/^[0-9a-f]+-/ { name = $6 } /^Private_Dirty:/ && $2 > 0 { pd[name] += $2 } END { for (n in pd) print pd[n], n }' \
			"/proc/$PW_AGENT_PID/smaps" | sort -rn | head -12 >"$W/maps-$ns-$tr"
	fi
	if [[ -n ${BENCH_MALLOC_STATS:-} ]]; then # glibc's arena figures on the agent's stderr: in use vs held
		gdb -p "$PW_AGENT_PID" -batch -ex 'call (void) malloc_stats()' >/dev/null 2>&1 || true
		echo "-- malloc_stats $ns/$tr:" >>"$W/malloc-stats"
		pw_agent_err_since_start | grep -E 'system bytes|in use bytes|Arena' >>"$W/malloc-stats" || true
		gdb -p "$PW_AGENT_PID" -batch -ex 'call (int) malloc_trim(0)' >/dev/null 2>&1 || true
		echo "after a malloc_trim(0) from gdb: Rss $(smaps "$PW_AGENT_PID" Rss) kB, Private_Dirty $(smaps "$PW_AGENT_PID" Private_Dirty) kB" >>"$W/malloc-stats"
	fi
	pw_stop_agent
	if [[ $tr != none ]]; then
		pw_kill_wait "$rpid" 5
		local p keep=
		for p in ${PW_EXTRA_PIDS:-}; do [[ $p == "$rpid" ]] || keep="$keep $p"; done
		PW_EXTRA_PIDS=$keep
	fi
}

for ((run = 1; run <= RUNS; run++)); do
	for ns in ${STORES:-small known}; do
		for tr in ${TRANSPORTS:-none curl native}; do run_one "$ns" "$tr"; done
	done
done

echo "== agent memory after shipping over HTTPS (mTLS, CA file), idle; $(nproc) cores, load average at each measure in []"
printf '%-34s %22s %22s %22s\n' "" "no endpoint" "libcurl (curl)" "httpc+GnuTLS (native)"
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
cell() { # NS TR COLUMN(4 rss, 5 pd) — "X.XX MiB [load]"
	local v l
	v=$(awk -v ns="$1" -v tr="$2" -v c="$3" '$1 == ns && $2 == tr { print $c }' "$RESULTS" | median)
	l=$(awk -v ns="$1" -v tr="$2" '$1 == ns && $2 == tr { print $6 }' "$RESULTS" | tail -1)
	printf '%.2f MiB [%s]' "$(echo "$v / 1024" | bc -l)" "$l"
}
records() { awk -v ns="$1" -v tr="$2" '$1 == ns && $2 == tr { print $3 }' "$RESULTS" | tail -1; }
for ns in ${STORES:-small known}; do
	label=$([[ $ns == small ]] && echo "$SMALL images" || echo "$KNOWN images")
	printf '%-34s %22s %22s %22s\n' "records shipped, $label" "($(records "$ns" none) printed)" \
		"$(records "$ns" curl)" "$(records "$ns" native)"
	printf '%-34s %22s %22s %22s\n' "RSS, $label" "$(cell "$ns" none 4)" "$(cell "$ns" curl 4)" "$(cell "$ns" native 4)"
	printf '%-34s %22s %22s %22s\n' "Private_Dirty, $label" "$(cell "$ns" none 5)" "$(cell "$ns" curl 5)" \
		"$(cell "$ns" native 5)"
done
echo "goal (issue 12 item 6): RSS <= 8 MiB, Private_Dirty <= 1.5 MiB with an HTTPS endpoint configured and shipping"
[[ -s $W/malloc-stats ]] && cat "$W/malloc-stats"
if [[ -n ${BENCH_MAPS:-} ]]; then
	for f in "$W"/maps-*; do
		echo "-- Private_Dirty by mapping (kB), ${f##*/maps-}"
		cat "$f"
	done
fi
