#!/usr/bin/env bash
# Issue 7, reconnect storm: a containerd whose event stream ends right after it
# starts (here a fake one, fakectrd.py: Version answers, Subscribe ends at once with
# OK, the lists are empty). The backoff is reset only after a stream lived a while,
# so the agent backs off (0.25 s, 0.5 s, 1 s...) instead of reconnecting, re-listing
# and logging every 0.25 s forever.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_require_pullwatch

SOCK=$PW_WORK/flaky.sock
pw_fake_containerd "$SOCK" <<'EOF'
from fakectrd import serve
serve(namespaces=b"", subscribe=lambda req, ctx: iter(()))
EOF
NODE=$(pw_node_name)
# shellcheck disable=SC2034 # read by pw_spawn_agent
PW_AGENT_ADDRESS=$SOCK
pw_spawn_agent "$NODE" --inventory-interval 0
pw_poll 10 grep -q 'Subscribe' "$PW_WORK/calls.log" || pw_fail "the agent never subscribed" "$(pw_agent_err_since_start | tail -5)"
t0=$(pw_now_ms)
pw_quiesce 6 # a negative check: the agent must NOT reconnect every 0.25 s in this window
subs=$(grep -c 'Subscribe' "$PW_WORK/calls.log" || true)
ms=$(($(pw_now_ms) - t0))
pw_note "$subs subscriptions in the first $((ms + 0)) ms after the first one"
# backing off: ~0, 0.25, 0.75, 1.75, 3.75 s → 5 or so; without: one every ~0.25 s → 20+
pw_assert_le "$subs" 8 "the agent backs off from a stream that keeps ending ($subs subscriptions in ~6 s)"
pw_assert_ge "$subs" 2 "the agent still reconnects"
lines=$(pw_agent_err_since_start | grep -c 'event stream from containerd' || true)
pw_assert_le "$lines" 8 "its log is not flooded ($lines 'stream ended' lines)"
pw_assert_cmd "the agent stays up" pw_agent_alive
pw_stop_agent
pw_done
