# shellcheck shell=bash
# tests/bench/fleet_lib.sh — what the collector's benches share (fleet_bench.sh and the
# A/B scripts). Sourced by a script that has set HERE (its own directory) and `set -euo
# pipefail`:
#   fleet_bench_init NAME   $PY (Debian's python3), a work dir $W (mode 755: PostgreSQL's
#                           server reads CSV files there by \copy; removed on exit) and the
#                           EXIT trap that stops whatever the script started
#   fleet_pg_start          a private PostgreSQL 15 (tests/integration/pg.sh; fsync on, as
#                           a database in service; the caller may set PW_PG_OPTS) and $PGB,
#                           its URL without the database
#   newdb                   a fresh PostgreSQL database (d1, d2, ...); prints its URL
#   schema_db FLEET         the same with the collector's schema (FLEET started and stopped
#                           on it: its migrations), for a peer's bulk load; prints its URL
#   start FLEET DB_URL      `FLEET serve` on a free loopback port ($PORT, $FPID), retention
#                           off, its stderr appended to $W/fleet.err; exits the script
#                           when it does not answer /healthz within 10 s
#   stop                    SIGTERM to it, and wait
#   cpu_s wchar hwm_mib     the running collector's CPU seconds, bytes written, peak RSS
#   threads                 its threads' CPU ticks, "tid ticks" lines
#   load now                the 1-minute load average; the time, seconds since the epoch

fleet_bench_init() { # NAME
	PY=python3
	[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3
	W=$(mktemp -d "${TMPDIR:-/tmp}/pw-$1.XXXXXX")
	chmod 755 "$W"
	FPID=
	PORT=
	PGB=
	echo 0 >"$W/dbn" # newdb runs in $(...): the count lives in a file
	trap fleet_cleanup EXIT
}

fleet_cleanup() {
	[[ -n ${FPID:-} ]] && kill "$FPID" 2>/dev/null || true
	[[ -n ${PW_PG_DIR:-} ]] && pw_pg_stop
	rm -rf "$W"
}

fleet_pg_start() {
	# shellcheck source=tests/integration/pg.sh
	. "$HERE/../integration/pg.sh"
	PW_PG_FSYNC=on pw_pg_start
	trap fleet_cleanup EXIT # pg.sh chained its own; ours stops the cluster too
	PGB=${PW_PG_URL%/*}
}

newdb() {
	local n=$(($(cat "$W/dbn") + 1))
	echo "$n" >"$W/dbn"
	pw_pg_psql -c "CREATE DATABASE d$n" >/dev/null
	echo "$PGB/d$n"
}

schema_db() { # FLEET
	local db
	db=$(newdb)
	start "$1" "$db" >&2 && stop >&2
	echo "$db"
}

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # FLEET DB_URL
	PORT=$(free_port)
	"$1" serve --listen "127.0.0.1:$PORT" --db "$2" --retention 0 2>>"$W/fleet.err" &
	FPID=$!
	for _ in $(seq 200); do
		curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "collector did not start: $(tail -3 "$W/fleet.err")" >&2
	exit 1
}

stop() { kill -TERM "$FPID"; wait "$FPID" || true; FPID=; }

tck=$(getconf CLK_TCK)
cpu_s() { awk -v t="$tck" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$FPID/stat"; }
wchar() { awk '/^wchar/ { print $2 }' "/proc/$FPID/io"; }
hwm_mib() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$FPID/status"; }
threads() { for t in /proc/"$FPID"/task/*; do awk -v t="${t##*/}" '{ print t, $14 + $15 }' "$t/stat"; done; }
load() { cut -d' ' -f1 /proc/loadavg; }
now() { date +%s.%N; }
