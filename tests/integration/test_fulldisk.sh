#!/usr/bin/env bash
# Bad input: a full disk. The state dir sits on a tiny tmpfs while the endpoint is down,
# so the spool fills the file system. The agent keeps running, every record still
# reaches journald and stdout, the failure is said once (not once per record), the
# ledger's failed saves are said once too, and when space comes back spooling resumes
# with one line counting what could not be spooled.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_start_all

R=$PW_REGISTRY
SHA=3f2c1ab9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3
d=$(pw_build_image full 1.0.0 "$SHA" full-seed)
pw_pull default "$R/full:1.0.0" >/dev/null

mkdir -p "$PW_STATE_DIR"
mount -t tmpfs -o size=96k,mode=0700 tmpfs "$PW_STATE_DIR" # private, as the agent requires; lib.sh's cleanup unmounts what is under the work dir

closed_port=$("$PW_PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
NODE=$(pw_node_name)
pw_start_agent "$NODE" --endpoint "http://127.0.0.1:$closed_port/ingest" --inventory-interval 0
pw_wait_record pull "$R/full:1.0.0" "$d" default

N=300
# sh -c SCRIPT SOCK SOURCE NAME...: each batch tags SOURCE under its NAMEs
for i in $(seq 1 "$N"); do echo "$R/full:v$i"; done |
	xargs -P4 -n50 sh -c 'src=$1; shift; for n; do ctr -a "$0" -n default images tag "$src" "$n" >/dev/null; done' \
		"$PW_SOCK" "$R/full:1.0.0"
pw_wait_stdout pull $((N + 1)) 60
pw_wait_journal "$NODE" pull $((N + 1)) 30
pw_assert_cmd "the agent survives a full disk" pw_agent_alive
spool_lines=$(grep -c "cannot spool" "$PW_AGENT_ERR" || true)
pw_assert_eq "$spool_lines" 1 "a full disk is said once, not once per record"
pw_assert_match "$(grep "cannot spool" "$PW_AGENT_ERR")" "No space left on device" "the line names the cause"
ledger_lines=$(grep -c "cannot save the ledger" "$PW_AGENT_ERR" || true)
pw_assert_le "$ledger_lines" 1 "failed ledger saves are said at most once"

# space comes back
mount -o remount,size=16m "$PW_STATE_DIR"
ctr -a "$PW_SOCK" -n default images tag "$R/full:1.0.0" "$R/full:after" >/dev/null
pw_wait_stdout pull 1 20 "image.ref=$R/full:after"
pw_poll 10 grep -q "spooling works again; [1-9][0-9]* records could not be spooled" "$PW_AGENT_ERR" ||
	pw_fail "no line when spooling resumed" "$(tail -n 5 "$PW_AGENT_ERR")"
pw_pass "spooling resumes with one line counting what could not be spooled"
pw_stop_agent
umount "$PW_STATE_DIR"
pw_done
