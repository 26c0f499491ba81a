#!/usr/bin/env bash
# Issue 7, reply amplification: a hostile containerd (a fake, python3-grpcio) answers
# Images.List with 1M empty images in 2 MiB (2 bytes each). Decoded, that was ~1 GB
# (protobuf-c's structs, then a 790-byte CtrdImage each). The agent refuses the reply
# in one line, stays small and stays up.
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
VERSION = b"\x0a\x061.6.20\x12\x04fake"
NAMESPACES = b"\x0a\x09\x0a\x07default"   # [Namespace{name: "default"}]
IMAGES = b"\x0a\x00" * ((2 << 20) // 2 - 16)  # ~1M empty Image records, just under 2 MiB

def subscribe(req, ctx):
    while ctx.is_active():
        time.sleep(0.2)
    return iter(())

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
pw_poll 10 test -S "$SOCK" || pw_fail "the fake containerd did not start" "$(cat "$PW_WORK/fake.log")"

NODE=$(pw_node_name)
# shellcheck disable=SC2034 # read by pw_spawn_agent
PW_AGENT_ADDRESS=$SOCK
pw_spawn_agent "$NODE" --max-message-bytes 4MiB --inventory-interval 0
pw_poll 20 grep -q 'Images/List' "$PW_WORK/calls.log" || pw_fail "the agent never listed images" "$(pw_agent_err_since_start | tail -5)"
pw_poll 20 eval "pw_agent_err_since_start | grep -q 'Images.List'" ||
	pw_fail "the agent said nothing about the reply" "$(pw_agent_err_since_start | tail -5)"
pw_assert_match "$(pw_agent_err_since_start | grep 'Images.List' | head -1)" \
	"decodes to more than 16 times its size|more than 65536" "the agent says why it refuses the reply"
pw_assert_cmd "the agent stays up" pw_agent_alive
hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$PW_AGENT_PID/status")
pw_note "agent peak RSS ${hwm} kB"
pw_assert_le "$hwm" 200000 "the agent's peak memory stays under 200 MB (was ~1 GB)"
pw_stop_agent
pw_done
