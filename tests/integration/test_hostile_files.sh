#!/usr/bin/env bash
# Issue 7, hostile files: what another user can plant where root reads and writes.
# A state directory another user can write to (or owns) is refused at start, with
# one line naming it. No containerd is needed: every case fails (or not) before
# the agent connects.
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

pw_done
