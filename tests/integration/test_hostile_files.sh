#!/usr/bin/env bash
# Issue 7, hostile files: what another user can plant where root reads and writes.
# A state directory another user can write to (or owns) is refused at start, with
# one line naming it. A FIFO in place of a file the agent reads (config, pins,
# the spool's ack, status.json) is refused at once, never waited on: the process
# stays responsive to SIGTERM. No containerd is needed: every case happens before
# or without a connection.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_require_pullwatch

# pw_one_line_error MSG PATTERN — the last command's stderr is exactly one
# non-empty line matching PATTERN (ERE, case-insensitive).
pw_one_line_error() {
	local n
	n=$(grep -c . "$PW_LAST_ERR" || true)
	pw_assert_eq "$n" 1 "$1: exactly one line on stderr (got: $(head -c 300 "$PW_LAST_ERR"))"
	grep -Eiq -- "$2" "$PW_LAST_ERR" || pw_fail "$1: the error does not match /$2/" "stderr: $(cat "$PW_LAST_ERR")"
	pw_pass "$1: the error says /$2/"
}

NOSOCK=$PW_WORK/no-containerd.sock
# accepted DIR [ARGS...] — `pullwatch run` with DIR as its state directory gets as far
# as trying containerd (its stderr in $PW_LAST_ERR), then is stopped.
accepted() {
	local dir=$1 pid ok=0
	shift
	PW_LAST_ERR=$PW_WORK/last.err
	"$PULLWATCH" run --address "$NOSOCK" --state-dir "$dir" --node n1 "$@" 2>"$PW_LAST_ERR" &
	pid=$!
	pw_poll 10 eval "! kill -0 $pid 2>/dev/null || grep -q 'cannot reach containerd' '$PW_LAST_ERR'" || true
	grep -q 'cannot reach containerd' "$PW_LAST_ERR" && ok=1
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" || true
	((ok))
}

# --- the state directory ------------------------------------------------------------
sd=$PW_WORK/state-ok
mkdir -m 0700 "$sd"
pw_assert_cmd "a private state directory is accepted" accepted "$sd"
pw_assert_not_match "$(cat "$PW_LAST_ERR")" "state directory" "nothing is said about a private state directory"

for mode in 0777 0770 0722 1777; do
	sd=$PW_WORK/state-$mode
	mkdir -m 0700 "$sd"
	chmod "$mode" "$sd"
	pw_assert_status 1 "a state directory of mode $mode is refused" \
		timeout 20 "$PULLWATCH" run --address "$NOSOCK" --state-dir "$sd" --node n1
	pw_one_line_error "state directory $mode" "state directory .*state-$mode.* writable by (group|others)"
	[[ ! -e $sd/ledger.json ]] || pw_fail "the refused state directory $mode was written to"
	pw_pass "nothing written to the refused state directory $mode"
done

sd=$PW_WORK/state-nobody
mkdir -m 0700 "$sd"
chown nobody "$sd"
pw_assert_status 1 "a state directory owned by another user is refused" \
	timeout 20 "$PULLWATCH" run --address "$NOSOCK" --state-dir "$sd" --node n1
pw_one_line_error "state directory owned by nobody" "state directory .*state-nobody.* owned by uid [0-9]+"

# the spool under it, when there is one, is held to the same rule
sd=$PW_WORK/state-spool
mkdir -m 0700 "$sd" "$sd/spool"
chmod 0777 "$sd/spool"
pw_assert_status 1 "a world-writable spool directory is refused" \
	timeout 20 "$PULLWATCH" run --address "$NOSOCK" --state-dir "$sd" --node n1 --endpoint http://127.0.0.1:9/ingest
pw_one_line_error "spool directory 0777" "state directory .*state-spool/spool.* writable by"

# --- FIFOs where files are read ---------------------------------------------------------
mkfifo "$PW_WORK/config.fifo"
t0=$(pw_now_ms)
pw_assert_status 2 "a FIFO as the config file is refused" timeout 20 "$PULLWATCH" check --config "$PW_WORK/config.fifo" nginx:1.25
pw_assert_le $(($(pw_now_ms) - t0)) 5000 "a FIFO as the config file is refused at once"
pw_one_line_error "config FIFO" "config.fifo: not a regular file"

mkfifo "$PW_WORK/pins.fifo"
pw_assert_status 2 "a FIFO as the pins file is refused at start" timeout 20 "$PULLWATCH" check --pins "$PW_WORK/pins.fifo" nginx:1.25
pw_one_line_error "pins FIFO at start" "pins.fifo: not a regular file"

sd=$PW_WORK/state-status
mkdir -m 0700 "$sd"
mkfifo "$sd/status.json"
t0=$(pw_now_ms)
pw_assert_status 2 "pullwatch status with a FIFO as status.json exits 2" timeout 20 "$PULLWATCH" status --state-dir "$sd"
pw_assert_le $(($(pw_now_ms) - t0)) 5000 "pullwatch status with a FIFO is refused at once"
pw_one_line_error "status.json FIFO" "status.json: not a regular file"

# the spool's ack a FIFO: treated as unreadable (every record sent again), said, and replaced
sd=$PW_WORK/state-ack
mkdir -m 0700 "$sd" "$sd/spool"
mkfifo "$sd/spool/ack"
pw_assert_cmd "an agent with a FIFO as the spool's ack file starts" accepted "$sd" --endpoint http://127.0.0.1:9/ingest
pw_assert_match "$(cat "$PW_LAST_ERR")" "spool .*: the ack file was unreadable" "the agent says the ack file was unreadable"
[[ -f $sd/spool/ack && ! -p $sd/spool/ack ]] || pw_fail "the FIFO at spool/ack was not replaced by a state file"
pw_pass "the FIFO at spool/ack is replaced by a state file"

# pins replaced by a FIFO while the agent runs: the reload refuses it in one line, keeps
# the pins it had, and SIGTERM still stops the agent at once (it froze for 23 minutes)
sd=$PW_WORK/state-pins
mkdir -m 0700 "$sd"
echo '{"nginx:1.25": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}' >"$PW_WORK/pins.json"
"$PULLWATCH" run --address "$NOSOCK" --state-dir "$sd" --node n1 --pins "$PW_WORK/pins.json" 2>"$PW_WORK/pins-run.err" &
agent=$!
PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $agent"
pw_poll 10 grep -q 'cannot reach containerd' "$PW_WORK/pins-run.err" || pw_fail "the agent with pins did not start" "$(cat "$PW_WORK/pins-run.err")"
rm "$PW_WORK/pins.json"
mkfifo "$PW_WORK/pins.json"
pw_poll 10 grep -q 'cannot reload pins' "$PW_WORK/pins-run.err" || pw_fail "the agent did not try the FIFO" "$(cat "$PW_WORK/pins-run.err")"
pw_assert_match "$(grep 'cannot reload pins' "$PW_WORK/pins-run.err")" "pins.json: not a regular file; keeping the 1 pins" \
	"the reload refuses the FIFO in one line and keeps the pins"
t0=$(pw_now_ms)
kill -TERM "$agent"
st=0
timeout 10 tail --pid="$agent" -f /dev/null || st=$?
pw_assert_eq "$st" 0 "the agent exits on SIGTERM after the FIFO (within 10 s)"
pw_assert_le $(($(pw_now_ms) - t0)) 5000 "the agent exits on SIGTERM at once"

# --- read-only commands leave a corrupt ledger where it is ---------------------------------
# report's data is the ledger: an unreadable one is an error (exit 2, one line), never "all
# compliant"; scan carries on from containerd. Neither renames, creates or deletes anything.
sd=$PW_WORK/state-corrupt
mkdir -m 0700 "$sd"
printf 'pullwatch-ledger 1 999 00000000\n{"version":1,' >"$sd/ledger.json"
echo junk >"$sd/ledger.json.tmp"
before=$(cd "$sd" && ls -la --time-style=+%s.%N && sha256sum ledger.json ledger.json.tmp)
pw_assert_status 2 "report on a corrupt ledger exits 2" timeout 20 "$PULLWATCH" report --state-dir "$sd"
pw_one_line_error "report, corrupt ledger" "ledger.*ledger.json: truncated"
pw_assert_eq "$(cat "$PW_LAST_OUT")" "" "report prints no document for a corrupt ledger"
pw_assert_status 2 "scan against no containerd exits 2" timeout 20 "$PULLWATCH" scan --state-dir "$sd" --address "$NOSOCK"
pw_assert_match "$(cat "$PW_LAST_ERR")" "ledger.json: truncated" "scan says the ledger is unreadable"
after=$(cd "$sd" && ls -la --time-style=+%s.%N && sha256sum ledger.json ledger.json.tmp)
pw_assert_eq "$after" "$before" "report and scan change nothing in the state directory"

# --- check -: a NUL byte inside a line rejects the line ------------------------------------
# (everything after the NUL was ignored: "nginx:1.25.3\0evil:latest" passed with exit 0)
pw_assert_status 2 "check - rejects a line with a NUL byte" \
	bash -c 'printf "nginx:1.25.3\\0evil:latest\\n" | "$0" check -' "$PULLWATCH"
pw_one_line_error "check -, NUL byte" "line 1: NUL byte"
pw_assert_status 2 "check - rejects a NUL byte after a good line" \
	bash -c 'printf "redis:7.2.4\\nnginx:1.25.3\\0\\n" | "$0" check -' "$PULLWATCH"
pw_one_line_error "check -, NUL byte on line 2" "line 2: NUL byte"
pw_assert_status 0 "check - still accepts clean lines" bash -c 'printf "nginx:1.25.3\\n# comment\\n\\n" | "$0" check -' "$PULLWATCH"

pw_done
