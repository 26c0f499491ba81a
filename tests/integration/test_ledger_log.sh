#!/usr/bin/env bash
# Issue 12, item 4: the ledger's change log through the real agent. A pull after the
# first save is appended to ledger.log (the snapshot ledger.json is not rewritten); a
# SIGKILL after that save loses nothing: the restarted agent replays the log and does not
# report the pull again; `report` reads the log too, changing nothing; a torn record at
# the log's end (an append that never returned) is dropped with one line; a clean stop
# folds the log into the snapshot.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_start_all
R=$PW_REGISTRY
NODE=$(pw_node_name)
SNAP=$PW_STATE_DIR/ledger.json
LOG=$PW_STATE_DIR/ledger.log
args=(--inventory-interval 0 --relist-interval 0)
pw_build_image logapp v1 "" "log-1" >/dev/null
pw_build_image logapp v2 "" "log-2" >/dev/null
pw_build_image logapp v3 "" "log-3" >/dev/null
pw_build_image logapp v4 "" "log-4" >/dev/null
v2() { pw_stdout_count kind=pull "image.ref~=logapp:v2"; }

pw_start_agent "$NODE" "${args[@]}"
pw_pull default "$R/logapp:v1"
pw_wait_stdout pull 1 20 "image.ref~=logapp:v1"
# the first save writes the snapshot (and an empty log)
pw_poll 20 grep -q "logapp:v1" "$SNAP" || pw_fail "the first save did not write logapp:v1 to ledger.json"
pw_poll 20 test -s "$LOG" || pw_fail "no ledger.log beside the snapshot"
snap_sum=$(sha256sum <"$SNAP")

pw_pull default "$R/logapp:v2"
pw_wait_stdout pull 1 20 "image.ref~=logapp:v2"
pw_poll 20 grep -aq "logapp:v2" "$LOG" || pw_fail "the save after the second pull did not append it to ledger.log"
pw_assert_eq "$(sha256sum <"$SNAP")" "$snap_sum" "the save appended to the log, the snapshot was not rewritten"

# killed after the save: nothing saved is lost
kill -KILL "$PW_AGENT_PID"
wait "$PW_AGENT_PID" 2>/dev/null || true
PW_AGENT_PID=
before=$(cd "$PW_STATE_DIR" && sha256sum ledger.json ledger.log)
pw_assert_status 0 "report reads the ledger (snapshot + log)" "$PULLWATCH" report --state-dir "$PW_STATE_DIR"
pw_assert_match "$(cat "$PW_LAST_OUT")" "logapp:v2" "report sees the pull that is only in the log"
pw_assert_eq "$(cd "$PW_STATE_DIR" && sha256sum ledger.json ledger.log)" "$before" "report changed nothing on disk"

pw_start_agent "$NODE" "${args[@]}"
pw_assert_match "$(pw_agent_err_since_start)" "\([1-9][0-9]* changes replayed from its log\)" "the restart replayed the log"
# the start-up listing judges logapp:v1 and v2 again: known, so nothing is reported.
# Jobs are judged in order: once a pull made after the listing is reported, so was it.
pw_pull default "$R/logapp:v3"
pw_wait_stdout pull 1 20 "image.ref~=logapp:v3"
pw_assert_eq "$(v2)" 1 "the pull saved in the log is not reported again after SIGKILL"

# a torn record at the end: dropped with one line, the rest stands
kill -KILL "$PW_AGENT_PID"
wait "$PW_AGENT_PID" 2>/dev/null || true
PW_AGENT_PID=
printf 'PWL1\x40\x00\x00' >>"$LOG"
pw_start_agent "$NODE" "${args[@]}"
pw_assert_eq "$(pw_agent_err_since_start | grep -c 'ledger.log: a torn record')" 1 "one line says the torn record was dropped"
pw_pull default "$R/logapp:v4"
pw_wait_stdout pull 1 20 "image.ref~=logapp:v4"
pw_assert_eq "$(v2)" 1 "after the torn tail, the pull is still known"

# a clean stop compacts: the log holds no record, the snapshot everything
pw_stop_agent
pw_assert_eq "$(grep -ac logapp "$LOG" || true)" 0 "after a clean stop the log holds no record"
pw_assert_cmd "after a clean stop the snapshot holds the last pull" grep -q "logapp:v2" "$SNAP"
pw_start_agent "$NODE" "${args[@]}"
pw_assert_match "$(pw_agent_err_since_start)" "\(0 changes replayed from its log\)" "nothing to replay after a clean stop"
pw_stop_agent
pw_assert_eq "$(v2)" 1 "one pull record for logapp:v2 in all"
pw_done
