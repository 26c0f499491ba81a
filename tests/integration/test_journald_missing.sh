#!/usr/bin/env bash
# Issue 7, journald missing: with no socket at /run/systemd/journal/socket,
# sd_journal_sendv() returns 0 and every entry is lost. The agent says so once,
# keeps its other outputs (--stdout), and says when journald answers again, with
# the count of entries lost. The agent runs in a private mount namespace with a
# tmpfs over /run/systemd/journal: the shared journald is never touched.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_start_all
command -v unshare >/dev/null && command -v nsenter >/dev/null || {
	pw_note "SKIP: unshare/nsenter missing"
	exit 77
}

R=$PW_REGISTRY
d1=$(pw_build_image nojournal-a latest "" nojournal-a-seed)
d2=$(pw_build_image nojournal-b latest "" nojournal-b-seed)
d3=$(pw_build_image nojournal-c latest "" nojournal-c-seed)

cat >"$PW_WORK/nojournal.sh" <<'EOF'
#!/bin/sh
# in the agent's own mount namespace: journald's directory, empty
mount -t tmpfs -o mode=0755 tmpfs /run/systemd/journal || exit 99
exec "$@"
EOF
chmod +x "$PW_WORK/nojournal.sh"
NODE=$(pw_node_name)
# shellcheck disable=SC2034 # read by pw_spawn_agent
PW_AGENT_WRAPPER="unshare -m --propagation private $PW_WORK/nojournal.sh"
pw_start_agent "$NODE"

pw_pull default "$R/nojournal-a:latest"
pw_wait_stdout latest_tag 1 20 "image.ref=$R/nojournal-a:latest" "image.digest=$d1"
pw_pull default "$R/nojournal-b:latest"
pw_wait_stdout latest_tag 1 20 "image.ref=$R/nojournal-b:latest" "image.digest=$d2"
said=$(pw_agent_err_since_start | grep -c 'cannot write to journald' || true)
pw_assert_eq "$said" 1 "the agent says once that journald cannot be written ($(pw_agent_err_since_start | grep journald | head -3))"
pw_assert_match "$(pw_agent_err_since_start | grep 'cannot write to journald')" \
	"its socket /run/systemd/journal/socket is missing" "the line names the missing socket"
pw_assert_eq "$(pw_journal_count "$NODE" "")" 0 "nothing reached the shared journald from the private namespace"

# journald comes back, in the agent's namespace: a listening socket at the path
nsenter --mount="/proc/$PW_AGENT_PID/ns/mnt" "$PW_PY" - "$PW_WORK/journal.bin" >"$PW_WORK/fakejournal.log" 2>&1 <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/run/systemd/journal/socket")
with open(sys.argv[1], "ab", buffering=0) as out:
    while True:
        out.write(s.recv(1 << 20) + b"\n--\n")
EOF
PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $!"
pw_poll 10 nsenter --mount="/proc/$PW_AGENT_PID/ns/mnt" test -S /run/systemd/journal/socket ||
	pw_fail "the fake journald did not start" "$(cat "$PW_WORK/fakejournal.log")"

pw_pull default "$R/nojournal-c:latest"
pw_wait_stdout latest_tag 1 20 "image.ref=$R/nojournal-c:latest" "image.digest=$d3"
pw_poll 10 grep -q 'journald works again' "$PW_AGENT_ERR" || pw_fail "the agent did not say journald works again" \
	"$(pw_agent_err_since_start | tail -5)"
lost=$(pw_agent_err_since_start | sed -n 's/.*journald works again; \([0-9]*\) entries could not be written.*/\1/p')
pw_assert_ge "${lost:-0}" 4 "the recovery line counts the entries lost (two pulls, two latest_tag)"
pw_poll 10 grep -q "nojournal-c:latest" "$PW_WORK/journal.bin" || pw_fail "the entry after recovery did not reach journald"
pw_pass "the entry after recovery reached journald"
pw_assert_eq "$(pw_agent_err_since_start | grep -c 'cannot write to journald' || true)" 1 "still said only once"

pw_stop_agent
pw_done
