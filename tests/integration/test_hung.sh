#!/usr/bin/env bash
# Issue 7, item 17: a containerd that stops answering in the middle of the Subscribe
# stream (a hung daemon keeps its socket open: here SIGSTOP) is detected by an HTTP/2
# PING that gets no ACK, said in one line, and the agent reconnects; once containerd
# answers again (SIGCONT) the agent reconnects and records new pulls.
# A healthy, quiet containerd answers the PINGs and the stream is not dropped.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_start_all

R=$PW_REGISTRY
d_a=$(pw_build_image hung-a 1.0.0 0123456789abcdef0123456789abcdef01234567 hung-a)
d_b=$(pw_build_image hung-b 1.0.0 0123456789abcdef0123456789abcdef01234567 hung-b)

NODE=$(pw_node_name)
pw_start_agent "$NODE" --keepalive-interval 10s --keepalive-timeout 2s
pw_pull default "$R/hung-a:1.0.0"
pw_wait_record pull "$R/hung-a:1.0.0" "$d_a" default

# a quiet but healthy containerd: the first PING (after 10 s of silence) is answered
pw_quiesce 13
pw_assert_not_match "$(pw_agent_err_since_start)" "stopped answering|stream from containerd .* ended" \
	"a quiet, healthy containerd answers the PING: the stream stays up"

kill -STOP "$PW_CTD_PID"
# (a failure from here on leaves containerd stopped: the harness's SIGKILL still ends it)
hung() { pw_agent_err_since_start | grep -q "stopped answering: no HTTP/2 PING ACK within 2000 ms"; }
pw_poll 30 hung || pw_fail "the agent did not notice the hung containerd within 30 s" \
	"$(pw_agent_err_since_start | tail -5)"
pw_pass "a hung containerd is detected by the unanswered PING and said in one line"
pw_assert_eq "$(pw_agent_err_since_start | grep -c 'stopped answering' || true)" 1 \
	"the hang is said once"
pw_assert_cmd "the agent keeps running while containerd is hung" pw_agent_alive

kill -CONT "$PW_CTD_PID"
# subscribed again: a pull made now arrives (as an event, or through the re-list)
pw_pull default "$R/hung-b:1.0.0"
pw_wait_record pull "$R/hung-b:1.0.0" "$d_b" default 60
pw_assert_cmd "the agent is running after containerd recovered" pw_agent_alive
pw_stop_agent
pw_done
