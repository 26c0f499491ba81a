#!/usr/bin/env bash
# Issue 12, item 5: `run` loads its ledger on a thread while it connects to containerd and
# asks for the listing (a restart's load no longer comes before its first call). What the
# load decides must not change: a restart on the saved ledger records nothing new; a
# corrupt ledger is still said in one line, moved aside and rebuilt from containerd; with
# containerd down the ledger is still loaded and said (the failed connect waits for it),
# the agent keeps retrying and stops cleanly; stopped as it connects, it exits 0 and its
# ledger loads as before.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_setup_deps_check
pw_start_journald
pw_containerd_config
pw_start_containerd

# three images of distinct digests, no registry needed
"$PW_PY" "$PW_LIB_DIR/../bench/mkscale.py" "$PW_WORK/three.tar" 3 ledger.test/start/img
pw_ctr -n default images import --no-unpack "$PW_WORK/three.tar" >/dev/null || pw_fail "ctr images import failed"
NODE=$(pw_node_name)
pulls() { pw_stdout_count kind=pull; }

# --- fresh: every image recorded once --------------------------------------------------
pw_start_agent "$NODE"
pw_poll 20 eval '(( $(pulls) == 3 ))' || pw_fail "a fresh start did not record the 3 images" "$(pulls) pulls"
pw_stop_agent
pw_assert_match "$(cat "$PW_STATE_DIR/ledger.json")" "ledger.test/start/img-00003" "the ledger was saved at exit"

# --- restart on the saved ledger: loaded, said, and nothing new ----------------------
pw_start_agent "$NODE"
pw_assert_match "$(pw_agent_err_since_start)" "ledger: 3 references" "the restart says what its ledger holds"
sleep 1 # the listing is judged before "subscribed"; nothing may follow it either
pw_assert_eq "$(pulls)" 3 "a restart on the saved ledger records nothing new"
pw_stop_agent

# --- a corrupt ledger: one line, moved aside, rebuilt from containerd ----------------
printf 'pullwatch-ledger 1 999 00000000\n{"version":1,' >"$PW_STATE_DIR/ledger.json"
pw_start_agent "$NODE"
err=$(pw_agent_err_since_start)
pw_assert_eq "$(grep -c 'rebuilding the view from containerd' <<<"$err")" 1 "a corrupt ledger is said in one line"
pw_assert_match "$(ls "$PW_STATE_DIR")" "ledger.json.corrupt-" "the corrupt ledger is moved aside"
pw_poll 20 eval '(( $(pulls) == 6 ))' || pw_fail "the view was not rebuilt from containerd" "$(pulls) pulls"
pw_stop_agent

# --- containerd down: the ledger is loaded and said; the agent retries, stops cleanly --
pw_stop_containerd
pw_spawn_agent "$NODE"
pw_poll 20 eval 'pw_agent_err_since_start | grep -q "cannot reach containerd"' ||
	pw_fail "no 'cannot reach containerd' line" "$(pw_agent_err_since_start | tail -5)"
pw_poll 20 eval 'pw_agent_err_since_start | grep -q "ledger: 3 references"' ||
	pw_fail "with containerd down the ledger was not loaded" "$(pw_agent_err_since_start | tail -5)"
pw_assert_cmd "the agent keeps retrying with containerd down" pw_agent_alive
pw_stop_agent

# --- stopped as it connects, its listing not judged yet: exits 0, the ledger intact ---
pw_start_containerd
pw_spawn_agent "$NODE"
# its signals are handled once it connects (a SIGTERM before that kills it, as always)
pw_poll 20 eval 'pw_agent_err_since_start | grep -q "connected to containerd"' ||
	pw_fail "the agent did not connect" "$(pw_agent_err_since_start | tail -5)"
pw_stop_agent
pw_start_agent "$NODE"
pw_assert_match "$(pw_agent_err_since_start)" "ledger: 3 references" "the ledger survives a stop before any listing"
sleep 1
pw_assert_eq "$(pulls)" 6 "and the next start records nothing new"
pw_stop_agent
pw_pass "the ledger loaded beside the first calls decides as before"
pw_done
