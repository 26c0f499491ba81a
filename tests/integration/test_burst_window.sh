#!/usr/bin/env bash
# Issue 12 item 3: the burst window (--burst-window) changes when containerd's socket is
# read, never what is recorded. Two agents watch the same containerd, one without a
# window and one with a 50 ms window; a burst of image events (four ctr processes at
# once) reaches both. Their journald entries — kind and reference of every pull and
# finding, in order — are the same, and the windowed agent says at exit that reads did
# wait for the window (so the window was in play, not idle).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_require_pullwatch
pw_setup_deps_check
pw_start_journald
pw_start_containerd

# a few tiny images of distinct digests (no registry needed), then names for the burst
"$PW_PY" "$PW_LIB_DIR/../bench/mkscale.py" "$PW_WORK/few.tar" 3 burst.test/app >/dev/null
pw_ctr -n default images import --no-unpack "$PW_WORK/few.tar" >/dev/null
BASE=burst.test/app-00001:1.0.0
N=80

REF_NODE=$(pw_node_name)-ref
mkdir -p "$PW_WORK/state-ref"
"$PULLWATCH" run --address "$PW_SOCK" --state-dir "$PW_WORK/state-ref" --node "$REF_NODE" \
	>"$PW_WORK/ref.out" 2>"$PW_WORK/ref.err" </dev/null &
REF_PID=$!
# shellcheck disable=SC2034 # lib.sh's EXIT trap stops it
PW_EXTRA_PIDS=$REF_PID
pw_poll 20 grep -q 'subscribed to containerd events' "$PW_WORK/ref.err" ||
	pw_fail "the reference agent did not subscribe" "$(tail -5 "$PW_WORK/ref.err")"
NODE=$(pw_node_name)
pw_start_agent "$NODE" --burst-window 50ms
pw_wait_journal "$REF_NODE" pull 3 20
pw_wait_journal "$NODE" pull 3 20

# the burst: tags of one image, a :latest one among them (a finding too), from 4 processes
{
	seq -f "burst.test/b-%05g:1.0.0" 1 $((N - 1))
	echo burst.test/b-latest:latest
} | xargs -P 4 -n 10 ctr -a "$PW_SOCK" images tag "$BASE" >/dev/null
pw_wait_journal "$REF_NODE" pull $((3 + N)) 60
pw_wait_journal "$NODE" pull $((3 + N)) 60
pw_wait_journal "$REF_NODE" latest_tag 1 20
pw_wait_journal "$NODE" latest_tag 1 20

entries() { # NODE — kind and reference of every entry, in journald's order
	journalctl -q -o json --no-pager SYSLOG_IDENTIFIER=pullwatch "NODE_NAME=$1" 2>/dev/null |
		"$PW_PY" -c 'import json, sys
for line in sys.stdin:
    e = json.loads(line)
    print(e.get("PULLWATCH_KIND"), e.get("IMAGE_REF"), e.get("IMAGE_DIGEST"))'
}
ref=$(entries "$REF_NODE")
got=$(entries "$NODE")
pw_assert_eq "$(wc -l <<<"$got")" "$(wc -l <<<"$ref")" "as many entries with the window as without"
pw_assert_eq "$got" "$ref" "the same entries, in the same order, with the window as without"

pw_stop_agent
waited=$(grep -o 'burst window: [0-9]* reads' "$PW_AGENT_ERR" | tail -1 | awk '{print $3}')
pw_assert_ge "${waited:-0}" 1 "reads waited for the burst window (it was in play)"
pw_done
