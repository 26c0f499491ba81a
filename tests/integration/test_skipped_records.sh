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
/usr/bin/python3 -c 'import grpc' 2>/dev/null || {
	pw_note "SKIP: python3-grpcio missing"
	exit 77
}

SOCK=$PW_WORK/hostile.sock
/usr/bin/python3 - "$SOCK" "$PW_WORK/calls.log" >"$PW_WORK/fake.log" 2>&1 <<'EOF' &
import sys, time
from concurrent import futures
import grpc

sock, log = sys.argv[1], open(sys.argv[2], "a", buffering=1)

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

def ld(field, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data

DIGEST = "sha256:" + "ab" * 32
MT = "application/vnd.oci.image.manifest.v1+json"
def image(name, digest=DIGEST):
    return ld(1, name) + ld(3, ld(1, MT) + ld(2, digest))

VERSION = ld(1, "1.6.20") + ld(2, "fake")
NAMESPACES = ld(1, ld(1, "default"))
BAD = 30000
# no valid digest: the agent reads no config for them (one Content.Read each otherwise)
IMAGES = b"".join(ld(1, image("Bad Name %d" % i, "none")) for i in range(BAD))
IMAGES += b"".join(ld(1, image("registry.example/" + "x" * 600 + str(i))) for i in range(400))
IMAGES += ld(1, image("registry.example/good:v1"))
EVENTS = 300

def envelope(i):
    ev = ld(1, "containerd.services.images.v1.ImageCreate") + ld(2, ld(1, "Evil Event %d" % i))
    return ld(2, "default") + ld(3, "/images/create") + ld(4, ev)

def subscribe(req, ctx):
    for i in range(EVENTS):
        yield envelope(i)
    log.write("events sent\n")
    while ctx.is_active():
        time.sleep(0.2)

def get_image(req, ctx):
    name = req[2:2 + req[1]].decode() if len(req) > 2 and req[0] == 0x0a and req[1] < 0x80 else ""
    return ld(1, image(name, "none"))

class Handler(grpc.GenericRpcHandler):
    def service(self, details):
        m = details.method
        log.write(m + "\n")
        if m.endswith("/Subscribe"):
            return grpc.unary_stream_rpc_method_handler(subscribe)
        if m.endswith("/Version"):
            return grpc.unary_unary_rpc_method_handler(lambda req, ctx: VERSION)
        if m.endswith("Namespaces/List"):
            return grpc.unary_unary_rpc_method_handler(lambda req, ctx: NAMESPACES)
        if m.endswith("Images/List"):
            return grpc.unary_unary_rpc_method_handler(lambda req, ctx: IMAGES)
        if m.endswith("Images/Get"):
            return grpc.unary_unary_rpc_method_handler(get_image)
        if m.endswith("/List"):
            return grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"")
        return None

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[Handler()],
                     options=[("grpc.max_send_message_length", 64 << 20)])
server.add_insecure_port("unix:" + sock)
server.start()
while True:
    time.sleep(3600)
EOF
PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $!"
pw_poll 20 test -S "$SOCK" || pw_fail "the fake containerd did not start" "$(cat "$PW_WORK/fake.log")"

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
