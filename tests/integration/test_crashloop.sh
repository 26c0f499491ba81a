#!/usr/bin/env bash
# Issue 7, item 8: a crash-looping agent (killed before its ledger save, 2 s after
# activity) makes every record of its start-up listing again on each restart, with the
# same ids. With the endpoint down those piled up in the spool, one copy per restart
# (28 copies each in 30 kills). Now a record still pending in the spool is not spooled
# again: after 4 kills the spool holds each record once; journald and stdout still get
# every record; once the endpoint is up each arrives once.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_start_all
R=$PW_REGISTRY
for i in 1 2 3 4 5 6; do
	pw_build_image "loop$i" latest "" "loop-$i" >/dev/null
	pw_pull default "$R/loop$i:latest"
done
port=$(pw_free_port) # nothing listens there: the endpoint is down
NODE=$(pw_node_name)
args=(--endpoint "http://127.0.0.1:$port/v1/records" --inventory-interval 0)

# records in the spool (nothing is acknowledged while the endpoint is down): frames counted
# in the segment files, whatever status.json last said
pending() { cat "$PW_STATE_DIR"/spool/*.seg 2>/dev/null | grep -a -o '"kind":"[a-z_]*"' | grep -vc inventory || true; }
first=
for k in 1 2 3 4; do
	pw_start_agent "$NODE" "${args[@]}"
	# every record of the listing is emitted (stdout), then SIGKILL before the 2 s ledger save
	pw_poll 20 eval '(( $(pw_stdout_count kind=pull "image.ref~=loop") >= 6 * k ))' ||
		pw_fail "start $k: the listing's pull records did not all appear"
	kill -KILL "$PW_AGENT_PID"
	wait "$PW_AGENT_PID" 2>/dev/null || true
	PW_AGENT_PID=
	# the kill landed before the ledger's save (2 s after activity): deterministic here by
	# removing what a later save may have written, as a crash loop's agent never saves it
	rm -f "$PW_STATE_DIR/ledger.json"
	[[ -n $first ]] || first=$(pending)
done
pw_assert_ge "$first" 12 "the first start spooled the listing (pull and latest_tag per image: $first)"
pw_assert_eq "$(pending)" "$first" "after 4 kills the spool still holds each record once"
pw_assert_eq "$(pw_stdout_count kind=pull "image.ref~=loop")" 24 "stdout got every record at every start"

# the endpoint comes up: each record arrives once (and by id)
"$PW_PY" "$PW_LIB_DIR/receiver.py" --port "$port" --records "$PW_WORK/received.jsonl" >"$PW_WORK/receiver.log" 2>&1 &
PW_EXTRA_PIDS="$!"
pw_start_agent "$NODE" "${args[@]}"
pw_poll 30 eval '(( $(pw_json_count "$PW_WORK/received.jsonl" record.kind=pull "record.image.ref~=loop") >= 6 ))' ||
	pw_fail "the records did not reach the endpoint"
pw_sync_agent default
pw_quiesce 2
pw_assert_eq "$(pw_json_count "$PW_WORK/received.jsonl" record.kind=pull "record.image.ref~=loop")" 6 "each pull record arrives once"
pw_stop_agent
pw_done
