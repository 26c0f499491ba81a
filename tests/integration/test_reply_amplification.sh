#!/usr/bin/env bash
# Issue 7, reply amplification: a hostile containerd (a fake, python3-grpcio) answers
# Images.List with 1M empty images in 2 MiB (2 bytes each). Decoded, that was ~1 GB
# (protobuf-c's structs, then a 790-byte CtrdImage each). The agent refuses the reply
# in one line, stays small and stays up.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_require_pullwatch

SOCK=$PW_WORK/hostile.sock
pw_fake_containerd "$SOCK" <<'EOF'
from fakectrd import serve
IMAGES = b"\x0a\x00" * ((2 << 20) // 2 - 16)  # ~1M empty Image records, just under 2 MiB
serve(images=IMAGES, max_send=64 << 20)
EOF
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
