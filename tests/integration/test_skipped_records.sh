#!/usr/bin/env bash
# Issue 7 item 5, second half: per-record warnings are said once per reply, listing or
# window of events, not once per record. A hostile containerd (a fake, python3-grpcio)
# lists 30,000 images whose names are not references, 400 whose names are too long
# and one good one, then streams 300 /images/create events of bad names. Before, that
# was ~30,300 "ignoring image record" lines on stderr and as many journald entries
# (and the 400 too-long records vanished without a word); now a handful of lines, each
# with the count and the first reason.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_require_pullwatch

SOCK=$PW_WORK/hostile.sock
pw_fake_containerd "$SOCK" <<'EOF'
import sys
from fakectrd import ld, image, image_create, idle, serve

BAD = 30000
# no valid digest: the agent reads no config for them (one Content.Read each otherwise)
IMAGES = b"".join(ld(1, image("Bad Name %d" % i, "none")) for i in range(BAD))
IMAGES += b"".join(ld(1, image("registry.example/" + "x" * 600 + str(i))) for i in range(400))
IMAGES += ld(1, image("registry.example/good:v1"))
EVENTS = 300
log = open(sys.argv[2], "a", buffering=1)

def subscribe(req, ctx):
    for i in range(EVENTS):
        yield image_create("Evil Event %d" % i)
    log.write("events sent\n")
    idle(ctx)

def get_image(req, ctx):
    name = req[2:2 + req[1]].decode() if len(req) > 2 and req[0] == 0x0a and req[1] < 0x80 else ""
    return ld(1, image(name, "none"))

serve(images=IMAGES, subscribe=subscribe, get=get_image, max_send=64 << 20)
EOF
NODE=$(pw_node_name)
# shellcheck disable=SC2034 # read by pw_spawn_agent
PW_AGENT_ADDRESS=$SOCK
pw_start_agent "$NODE" --inventory-interval 0
# the listing is over (ready) and so is every event's lookup: the good image's pull is
# on stdout, and the fake sent its events before the agent's last lookup
pw_wait_stdout pull 1 20 image.ref=registry.example/good:v1
pw_poll 30 grep -q 'events sent' "$PW_WORK/calls.log" || pw_fail "the fake never sent its events"
gets() { grep -c 'Images/Get' "$PW_WORK/calls.log" || true; }
pw_poll 60 eval '(($(gets) >= 300))' || pw_fail "the agent looked up $(gets) of the 300 events"
# the last lookup's answer is judged: the line for the first event is there and the
# agent is idle (a negative check follows: no more lines than these)
pw_poll 20 eval "pw_agent_err_since_start | grep -q 'Evil Event 0'" ||
	pw_fail "the agent said nothing about the bad events" "$(pw_agent_err_since_start | tail -5)"
pw_quiesce 1

err=$(pw_agent_err_since_start)
skiplines=$(grep -cE 'ignoring image record|records? skipped|a field too long' <<<"$err" || true)
lists=$(grep -c 'Images/List' "$PW_WORK/calls.log" || true)
pw_note "$skiplines stderr lines about skipped records ($lists listings of 30,000 + 400 bad records, 300 bad events)"
# per listing: one line for the reply's too-long records, one for the bad references;
# one for the first bad event (the start's listing and the catch-up one: 2 listings)
pw_assert_le "$skiplines" $((2 * lists + 1)) "per-record warnings are aggregated ($skiplines lines; was one per record)"
pw_assert_le "$(wc -l <<<"$err")" 40 "the agent's stderr stays short ($(wc -l <<<"$err") lines)"
pw_assert_match "$(grep 'Images.List' <<<"$err" || true)" "Images.List: 400 records skipped: record 30000 has a field too long" \
	"the too-long records are said, with their count and the first one"
# (30,000 per listing: the start's listing and the catch-up one may overlap into one)
pw_assert_match "$err" "[36]0000 records skipped: ignoring image record \"Bad Name 0\"" \
	"the listing's bad references are one line with the count and the first reason"
pw_assert_match "$err" "ignoring image record \"Evil Event 0\"" "the first bad event is said at once"
jl=$(journalctl -q -o cat --no-pager SYSLOG_IDENTIFIER=pullwatch "NODE_NAME=$NODE" 2>/dev/null |
	grep -cE 'ignoring image record|records? skipped' || true)
pw_assert_le "$jl" $((2 * lists + 1)) "journald gets as few ($jl entries)"
pw_assert_cmd "the agent stays up" pw_agent_alive
pw_stop_agent
# the events counted in the window are said at exit, in one line
pw_assert_match "$(pw_agent_err_since_start | tail -3)" "299 records skipped: ignoring image record \"Evil Event 1\"" \
	"the other bad events are said at exit, in one line with their count"
pw_done
