#!/usr/bin/env bash
# Bad input is said, not dropped silently: a containerd (a fake, fakectrd.py) whose event
# stream carries 100 envelopes that do not decode (truncated protobuf) and 100 with an
# ImageCreate payload that does not decode, between two good /images/create. Before,
# each undecodable event vanished without a word; now the first is said at once, with
# why, the rest with their count in one line (at the latest at exit), and the good
# events around them still make their pulls.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_require_pullwatch

SOCK=$PW_WORK/hostile.sock
pw_fake_containerd "$SOCK" <<'EOF'
import sys
from fakectrd import ld, envelope, image, image_create, idle, serve

log = open(sys.argv[2], "a", buffering=1)
GOOD = ["registry.example/bad-events/first:v1", "registry.example/bad-events/last:v1"]

def subscribe(req, ctx):
    yield image_create(GOOD[0])
    for i in range(100):
        yield image_create("registry.example/cut:v%d" % i)[:-3]  # truncated: not protobuf
    for i in range(100):  # the envelope decodes, its ImageCreate does not (field 1 cut short)
        yield envelope("/images/create", "containerd.services.images.v1.ImageCreate", b"\x0a\x7fshort")
    yield image_create(GOOD[1])
    log.write("events sent\n")
    idle(ctx)

def get_image(req, ctx):
    name = req[2:2 + req[1]].decode() if len(req) > 2 and req[0] == 0x0a and req[1] < 0x80 else ""
    return ld(1, image(name))

serve(subscribe=subscribe, get=get_image)
EOF

NODE=$(pw_node_name)
# shellcheck disable=SC2034 # read by pw_spawn_agent
PW_AGENT_ADDRESS=$SOCK
pw_start_agent "$NODE" --inventory-interval 0
pw_poll 30 grep -q 'events sent' "$PW_WORK/calls.log" || pw_fail "the fake never sent its events"
pw_wait_stdout pull 1 20 image.ref=registry.example/bad-events/first:v1
pw_wait_stdout pull 1 20 image.ref=registry.example/bad-events/last:v1
pw_poll 20 eval "pw_agent_err_since_start | grep -q 'could not be decoded'" ||
	pw_fail "the agent said nothing about the undecodable events" "$(pw_agent_err_since_start | tail -5)"
pw_assert_match "$(pw_agent_err_since_start | grep 'could not be decoded' | head -1)" \
	"event from containerd could not be decoded: malformed protobuf" "the first one is said, with why"
pw_assert_cmd "the agent stays up" pw_agent_alive
pw_stop_agent
err=$(pw_agent_err_since_start)
pw_assert_le "$(grep -c 'could not be decoded' <<<"$err")" 3 "said once and then counted, not once each"
pw_assert_match "$(tail -3 <<<"$err")" "199 records skipped: event from containerd could not be decoded" \
	"the other 199 are said at exit, in one line with their count"
pw_done
