#!/usr/bin/env bash
# Issue 7 item 6, second half: inventories never evict pulls from a full spool. A fake
# containerd (python3-grpcio) whose event stream ends at once makes the agent reconnect
# (with backoff) and re-list 40 images each time, and each listing makes an inventory;
# the endpoint is down and the spool is at its smallest (64 KiB). Then the stream stays
# open and delivers one /images/create: a pull made after the storm. Before, ~6
# inventories of ~10 KiB piled up and evicted the first listing's pull records
# (dropped_total > 0) and the endpoint later got every inventory; now one inventory is
# pending at a time (a newer one replaces it) and a full spool drops an inventory, never
# a record: on recovery every pull arrives, the late one too, and one inventory only,
# the newest, whole.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_require_pullwatch

SOCK=$PW_WORK/flaky.sock
SETTLE=$PW_WORK/settle # present: the stream stays open and carries the late pull
pw_fake_containerd "$SOCK" "$SETTLE" <<'EOF'
import os, sys
from fakectrd import ld, image, image_create, idle, serve

settle, log = sys.argv[3], open(sys.argv[2], "a", buffering=1)
IMAGES = b"".join(ld(1, image("registry.example/storm/app-%02d:v1" % i, "sha256:%064x" % (i + 1)))
                  for i in range(40))
LATE = "registry.example/storm/late:v1"

def subscribe(req, ctx):
    if not os.path.exists(settle):
        return  # the storm: the stream ends at once
    yield image_create(LATE)
    log.write("late event sent\n")
    idle(ctx)

# Content.Read is not answered: the images are judged without config
serve(images=IMAGES, subscribe=subscribe, get=lambda req, ctx: ld(1, image(LATE, "sha256:%064x" % 99)))
EOF
NODE=$(pw_node_name)
port=$(pw_free_port) # nothing listens there yet: the endpoint is down
# shellcheck disable=SC2034 # read by pw_spawn_agent
PW_AGENT_ADDRESS=$SOCK
pw_spawn_agent "$NODE" --endpoint "http://127.0.0.1:$port/v1/records" --spool-max-bytes 64KiB \
	--inventory-interval 0 --batch-max-age 10ms --retry-max-backoff 1s
inventories() { pw_agent_err_since_start | grep -c 'inventory: 40 image records' || true; }
# 6 listings (0, 0.25, 0.75, 1.75, 3.75, 7.75 s): ~6 inventories of ~10 KiB beside the
# 40 pull records (~28 KiB), in 64 KiB
pw_poll 30 eval '(($(inventories) >= 6))' ||
	pw_fail "the agent made $(inventories) inventories, not 6" "$(pw_agent_err_since_start | tail -5)"
pw_wait_stdout pull 40 20 "image.ref~=storm/app-"
touch "$SETTLE"
pw_wait_stdout pull 1 40 image.ref=registry.example/storm/late:v1
made=$(inventories)
# the newest inventory, pending in the spool (none arrives before the endpoint is up)
newest=$(grep -ao '"snapshot":"[0-9a-f]*"' "$PW_STATE_DIR"/spool/latest 2>/dev/null | head -1 | cut -d'"' -f4 || true)

# the endpoint comes up
"$PW_PY" "$PW_LIB_DIR/receiver.py" --port "$port" --records "$PW_WORK/received.jsonl" >"$PW_WORK/receiver.log" 2>&1 &
PW_EXTRA_PIDS="$PW_EXTRA_PIDS $!"
got() { pw_json_count "$PW_WORK/received.jsonl" "$@" 2>/dev/null || echo 0; }
pw_poll 60 eval '(($(got record.kind=pull) >= 41))' ||
	pw_fail "the pulls did not all reach the endpoint: $(got record.kind=pull) of 41" \
		"$(pw_agent_err_since_start | grep -iE 'spool|drop|inventory' | tail -5)"
# the endpoint got what was pending; wait for the spool to drain, then count
pw_poll 30 eval '! ls "$PW_STATE_DIR"/spool/latest >/dev/null 2>&1' || true
pw_quiesce 1
pw_assert_eq "$(got record.kind=pull "record.image.ref~=storm/app-")" 40 "every pull of the first listing arrives (none evicted)"
pw_assert_eq "$(got record.kind=pull record.image.ref=registry.example/storm/late:v1)" 1 "the pull made after the storm arrives"
snaps=$("$PW_PY" - "$PW_WORK/received.jsonl" <<'EOF'
import json, sys
parts = {}
for line in open(sys.argv[1]):
    r = json.loads(line)["record"]
    if r.get("kind") == "inventory":
        parts.setdefault(r.get("snapshot") or r.get("time"), []).append(r)
for snap, ps in parts.items():
    whole = sorted(p.get("part") for p in ps) == list(range(1, (ps[0].get("parts") or 1) + 1))
    print(snap, len(ps), "whole" if whole else "partial", max(p.get("time") for p in ps))
EOF
)
pw_note "made $made inventories with the endpoint down; received: ${snaps:-none}"
n=$(grep -c . <<<"$snaps" || true)
pw_assert_le "$n" 1 "at most one inventory arrives ($n snapshots; $made were made)"
pw_assert_match "$snaps" " whole " "the inventory that arrives is whole (every part)"
pw_assert_match "$snaps" "^${newest:-no-pending-inventory} " "it is the newest one made"
pw_assert_cmd "the agent stays up" pw_agent_alive
pw_stop_agent
pw_done
