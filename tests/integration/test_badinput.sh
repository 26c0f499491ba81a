#!/usr/bin/env bash
# Issue 2, bad input: a missing socket, a socket that is not containerd, a
# reference with a control character, odd image names stored in containerd.
# One clear line and exit 2 for the one-shot commands; `run` stays up, retries
# without flooding its log, and works once containerd appears.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_require_pullwatch
pw_setup_deps_check
pw_start_journald
pw_start_registry

# pw_one_line_error MSG PATTERN — the last command's stderr is exactly one
# non-empty line matching PATTERN (ERE, case-insensitive).
pw_one_line_error() {
	local n
	n=$(grep -c . "$PW_LAST_ERR" || true)
	pw_assert_eq "$n" 1 "$1: exactly one line on stderr (got: $(head -c 300 "$PW_LAST_ERR"))"
	grep -Eiq -- "$2" "$PW_LAST_ERR" || pw_fail "$1: the error does not match /$2/" "stderr: $(cat "$PW_LAST_ERR")"
	pw_pass "$1: the error says /$2/"
}

# --- scan with a missing socket -------------------------------------------------
missing=$PW_WORK/no-such.sock
t0=$(pw_now_ms)
pw_assert_status 2 "scan with a missing socket exits 2" "$PULLWATCH" scan --address "$missing"
pw_assert_le $(($(pw_now_ms) - t0)) 10000 "scan with a missing socket fails within 10 s"
pw_one_line_error "scan, missing socket" "no-such\.sock"

# --- sockets that are not containerd ---------------------------------------------
# one answers garbage bytes and hangs up; one speaks HTTP/1.1
"$PW_PY" - "$PW_WORK/garbage.sock" "$PW_WORK/http1.sock" >"$PW_WORK/fake.log" 2>&1 <<'EOF' &
import os, socket, sys, threading
def serve(path, reply):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path); s.listen(16)
    while True:
        c, _ = s.accept()
        try:
            c.settimeout(2)
            try: c.recv(65536)
            except OSError: pass
            c.sendall(reply)
        except OSError:
            pass
        finally:
            c.close()
garbage = b"\x00\xffTHIS IS NOT HTTP/2\r\n" * 64
http1 = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nbad request"
threading.Thread(target=serve, args=(sys.argv[1], garbage), daemon=True).start()
serve(sys.argv[2], http1)
EOF
PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $!"
pw_poll 10 test -S "$PW_WORK/http1.sock" || pw_fail "the fake socket servers did not start" "$(cat "$PW_WORK/fake.log")"
for fake in garbage http1; do
	t0=$(pw_now_ms)
	pw_assert_status 2 "scan against a $fake socket exits 2" "$PULLWATCH" scan --address "$PW_WORK/$fake.sock"
	pw_assert_le $(($(pw_now_ms) - t0)) 15000 "scan against a $fake socket fails within 15 s"
	pw_one_line_error "scan, $fake socket" "."
done

# --- check: a reference with a control character ----------------------------------
pw_assert_status 2 "check rejects a reference with a control character" "$PULLWATCH" check $'nginx:lat\x01est'
pw_one_line_error "check, control character" "invalid|control|character|malformed|reference"
pw_assert_not_match "$(cat "$PW_LAST_ERR")" $'\x01' "the error does not echo the raw control byte"
pw_assert_status 2 "check rejects an upper-case repository" "$PULLWATCH" check 'Nginx:1.25'
pw_one_line_error "check, upper case" "."
pw_assert_status 0 "check accepts a pinned versioned reference" "$PULLWATCH" check 'docker.io/library/nginx:1.25.3'
pw_assert_status 1 "check flags an implicit latest" "$PULLWATCH" check nginx
pw_assert_status 2 "check - : a bad line makes it exit 2" "$PULLWATCH" check - <<<$'nginx:1.25.3\nngin x'
pw_one_line_error "check -, bad line" "."

# --- run with a missing socket: stays up, retries, not a flood ----------------------
NODE=$(pw_node_name)
# shellcheck disable=SC2034 # read by pw_spawn_agent
PW_AGENT_ADDRESS=$PW_WORK/containerd.sock # where containerd will appear later
pw_spawn_agent "$NODE"
pw_quiesce 4 # a negative check: the agent must NOT exit or flood during this window
pw_assert_cmd "run stays up while the socket is missing" pw_agent_alive
lines=$(pw_agent_err_since_start | grep -c . || true)
pw_assert_ge "$lines" 1 "run says why it cannot connect"
pw_assert_le "$lines" 12 "run logs about one line per retry, not a flood ($lines lines in 4 s)"
pw_start_containerd
pw_wait_agent_ready 45
pw_assert_cmd "run connects once containerd appears" pw_agent_alive

# --- odd names stored in containerd don't stop the agent -----------------------------
R=$PW_REGISTRY
d=$(pw_build_image odd latest "" odd-seed)
pw_pull default "$R/odd:latest"
pw_ctr -n default images tag "$R/odd:latest" 'not a reference' >/dev/null
pw_ctr -n default images tag "$R/odd:latest" "$R/UPPER:Case" >/dev/null
pw_sync_agent default
pw_assert_cmd "the agent survives image names that are not references" pw_agent_alive
pw_wait_record latest_tag "$R/odd:latest" "$d" default

pw_stop_agent

# --- run against a socket that is not containerd: stays up, no flood -----------------
# shellcheck disable=SC2034
PW_AGENT_ADDRESS=$PW_WORK/garbage.sock
pw_spawn_agent "$NODE"
pw_quiesce 4
pw_assert_cmd "run stays up against a garbage socket" pw_agent_alive
lines=$(pw_agent_err_since_start | grep -c . || true)
pw_assert_ge "$lines" 1 "run says the socket is not containerd"
pw_assert_le "$lines" 12 "run does not flood against a garbage socket ($lines lines in 4 s)"
pw_stop_agent
pw_done
