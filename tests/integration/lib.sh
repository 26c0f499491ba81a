# shellcheck shell=bash
# tests/integration/lib.sh — harness for the pullwatch integration suite.
#
# Sourced by every tests/integration/test_*.sh (and scripts/demo.sh). Starts
# private daemons — containerd, docker-registry, and systemd-journald when none
# is running — under one mktemp -d work dir, and an EXIT trap stops every daemon
# it started and removes the work dir. Safe under `set -euo pipefail`.
#
# Environment (all optional):
#   PULLWATCH          the binary under test (pw_require_pullwatch skips with 77 without it)
#   PW_KEEP_WORK=1     keep the work dir on exit (its path is printed)
#   PW_STOP_JOURNALD=1 stop on exit a journald we started (by default it is left running:
#                      it is the machine's journald, which a later test or a second suite
#                      on the machine may be writing to)
#   PW_AGENT_WRAPPER   command prefix for the agent, e.g. "valgrind -q"
#   PW_VERBOSE=1       print the harness's progress lines
#   PW_NO_SUMMARY=1    no "N passed, M failed" line on success (the demo)
#   PW_CONTAINERD_BIN  the containerd daemon to start (default: containerd on PATH); the
#                      suite's second run points it at Debian 13's 1.7 (fetch-containerd-trixie.sh).
#                      ctr stays the system's: its pulls go through the client (events are
#                      published); tests of the 1.7 Transfer path call that ctr themselves.
#   PW_REGISTRY_TLS=1  the registry speaks HTTPS with a certificate from a CA made for the run
#                      ($PW_WORK/tls/ca.crt), which containerd trusts (SSL_CERT_FILE)
#   PW_CONTAINERD_CRI=1 enable the CRI plugin (the kubelet's pull path) with a registry
#                      hosts.toml for the private registry under $PW_WORK/certs.d
#
# Conventions: timeouts are in seconds (fractions allowed); every wait polls
# with a short interval and a bound; failures print one clear line and exit 1.

PW_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PW_TEST_NAME=${PW_TEST_NAME:-$(basename "${0%.sh}")}
# the system python: a pyenv/venv shim on PATH can cost 0.3 s per call, and the waits call it often
if [[ -z ${PW_PY:-} ]]; then
	PW_PY=python3
	[[ -x /usr/bin/python3 ]] && PW_PY=/usr/bin/python3
fi
PW_POLL_INTERVAL=${PW_POLL_INTERVAL:-0.05}
PW_PASSED=0
PW_FAILED=0
PW_WORK=$(mktemp -d /tmp/pw-it.XXXXXX) # short: unix socket paths must fit in 108 bytes
chmod 755 "$PW_WORK"

PW_JOURNALD_PID='' PW_JOURNALD_STARTED=0
PW_REGISTRY_PID='' PW_REGISTRY=''
PW_CTD_PID='' PW_SOCK=''
PW_AGENT_PID='' PW_AGENT_STATUS=''
PW_AGENT_OUT=$PW_WORK/agent.out
PW_AGENT_ERR=$PW_WORK/agent.err
PW_STATE_DIR=$PW_WORK/state
PW_NODE=
export PW_WORK PW_SOCK PW_REGISTRY PW_STATE_DIR

# ---------------------------------------------------------------- basics ----

pw_log() { [[ ${PW_VERBOSE:-0} == 1 ]] && echo "[$PW_TEST_NAME] $*" >&2; return 0; }
pw_note() { echo "[$PW_TEST_NAME] $*" >&2; }

# Milliseconds since the epoch.
pw_now_ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }

# pw_poll TIMEOUT CMD... — run CMD every PW_POLL_INTERVAL until it succeeds;
# return 1 when TIMEOUT seconds pass first.
pw_poll() {
	local timeout=$1 deadline
	shift
	deadline=$(($(pw_now_ms) + $(awk -v t="$timeout" 'BEGIN { printf "%d", t * 1000 }')))
	while :; do
		"$@" >/dev/null 2>&1 && return 0
		(($(pw_now_ms) >= deadline)) && return 1
		sleep "$PW_POLL_INTERVAL"
	done
}

# pw_proc_alive PID — true while PID exists and is not a zombie.
pw_proc_alive() {
	local st
	[[ -n ${1:-} && -r /proc/$1/stat ]] || return 1
	st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[[ -n $st && $st != Z && $st != X ]]
}

# pw_kill_wait PID [TIMEOUT] — SIGTERM, wait up to TIMEOUT (10 s), then SIGKILL.
# Sets PW_KILL_STATUS to the exit status when PID was our child (never call it
# in $(...): a subshell cannot reap the parent's children).
pw_kill_wait() {
	local pid=$1 timeout=${2:-10}
	PW_KILL_STATUS=
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	if ! pw_poll "$timeout" eval "! pw_proc_alive $pid"; then
		pw_note "pid $pid ignored SIGTERM for ${timeout}s, sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		pw_poll 5 eval "! pw_proc_alive $pid" || true
	fi
	wait "$pid" 2>/dev/null && PW_KILL_STATUS=0 || PW_KILL_STATUS=$?
	return 0
}

# ------------------------------------------------------------ assertions ----

pw_pass() { PW_PASSED=$((PW_PASSED + 1)); pw_log "ok: $*"; }

# pw_fail MSG [DETAIL...] — print a failure and exit 1 (the trap prints the summary).
pw_fail() {
	PW_FAILED=$((PW_FAILED + 1))
	echo "[$PW_TEST_NAME] FAIL: $1" >&2
	shift
	local d
	for d in "$@"; do printf '    %s\n' "$d" >&2; done
	exit 1
}

pw_assert_eq() { # ACTUAL EXPECTED MSG
	[[ $1 == "$2" ]] || pw_fail "$3" "expected: '$2'" "actual:   '$1'"
	pw_pass "$3"
}
pw_assert_ne() { # ACTUAL UNEXPECTED MSG
	[[ $1 != "$2" ]] || pw_fail "$3" "got the value it must differ from: '$1'"
	pw_pass "$3"
}
pw_assert_match() { # STRING ERE MSG
	[[ $1 =~ $2 ]] || pw_fail "$3" "pattern: $2" "actual:  '$1'"
	pw_pass "$3"
}
pw_assert_not_match() { # STRING ERE MSG
	[[ ! $1 =~ $2 ]] || pw_fail "$3" "pattern must not match: $2" "actual: '$1'"
	pw_pass "$3"
}
pw_assert_ge() { # ACTUAL MIN MSG
	[[ $1 =~ ^[0-9]+$ && $1 -ge $2 ]] || pw_fail "$3" "expected >= $2, got '$1'"
	pw_pass "$3"
}
pw_assert_le() { # ACTUAL MAX MSG
	[[ $1 =~ ^[0-9]+$ && $1 -le $2 ]] || pw_fail "$3" "expected <= $2, got '$1'"
	pw_pass "$3"
}
pw_assert_cmd() { # MSG CMD... — CMD must succeed
	local msg=$1; shift
	"$@" || pw_fail "$msg" "command failed: $*"
	pw_pass "$msg"
}
pw_assert_status() { # EXPECTED MSG CMD... — CMD must exit with EXPECTED (output in $PW_LAST_OUT/$PW_LAST_ERR)
	local want=$1 msg=$2 st=0; shift 2
	PW_LAST_OUT=$PW_WORK/last.out PW_LAST_ERR=$PW_WORK/last.err
	"$@" >"$PW_LAST_OUT" 2>"$PW_LAST_ERR" || st=$?
	[[ $st == "$want" ]] || pw_fail "$msg" "command: $*" "exit status $st, expected $want" \
		"stdout: $(head -c 600 "$PW_LAST_OUT")" "stderr: $(head -c 600 "$PW_LAST_ERR")"
	pw_pass "$msg"
}

# pw_start_all — what every agent scenario starts with: the binary (or skip), the
# tools, journald, a registry and a private containerd.
pw_start_all() {
	pw_require_pullwatch
	pw_setup_deps_check
	pw_start_journald
	pw_start_registry
	pw_start_containerd
}

# pw_done — print the summary line and exit 0.
pw_done() { exit 0; }

# ----------------------------------------------------------- lifecycle ----

pw_cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	if [[ $rc != 0 && $rc != 77 ]]; then
		pw_dump_logs
	fi
	if [[ -n $PW_AGENT_PID ]]; then pw_kill_wait "$PW_AGENT_PID" 5 ; fi
	if [[ -n ${PW_EXTRA_PIDS:-} ]]; then
		local p
		for p in $PW_EXTRA_PIDS; do pw_kill_wait "$p" 5; done
	fi
	if [[ -n $PW_CTD_PID ]]; then pw_kill_wait "$PW_CTD_PID" 10 ; fi
	if [[ -n $PW_REGISTRY_PID ]]; then pw_kill_wait "$PW_REGISTRY_PID" 5 ; fi
	if [[ $PW_JOURNALD_STARTED == 1 && ${PW_STOP_JOURNALD:-0} == 1 ]]; then
		pw_kill_wait "$PW_JOURNALD_PID" 5
	fi
	if [[ ${PW_KEEP_WORK:-0} == 1 ]]; then
		pw_note "work dir kept: $PW_WORK"
	else
		# containerd leaves no mounts without tasks, but be safe before rm -rf
		grep -o " $PW_WORK/[^ ]*" /proc/self/mounts 2>/dev/null | sort -r | while read -r m; do umount -l "$m"; done
		rm -rf "$PW_WORK"
	fi
	if [[ $rc == 77 ]]; then
		echo "$PW_TEST_NAME: skipped"
	else
		[[ $rc != 0 && $PW_FAILED == 0 ]] && PW_FAILED=1
		[[ $rc == 0 && ${PW_NO_SUMMARY:-0} == 1 ]] ||
			echo "$PW_TEST_NAME: $PW_PASSED passed, $PW_FAILED failed"
	fi
	exit "$rc"
}
# name the failing command when set -e stops a test outside the pw_assert helpers
set -o errtrace
trap 'pw__on_err $? "${BASH_SOURCE[0]}" $LINENO "$BASH_COMMAND"' ERR
pw__on_err() {
	[[ $- == *e* && $BASH_SUBSHELL == 0 ]] || return 0
	echo "[$PW_TEST_NAME] FAIL: command exited with status $1 at ${2##*/}:$3: $4" >&2
}
trap pw_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pw_dump_logs() {
	local f
	for f in agent.err containerd.log registry.log journald.log; do
		[[ -s $PW_WORK/$f ]] || continue
		echo "---- last lines of $f ----" >&2
		grep -v 'blob unknown' "$PW_WORK/$f" | tail -n 25 | cut -c1-300 >&2
	done
	if [[ -s $PW_AGENT_OUT ]]; then
		echo "---- last lines of agent stdout ----" >&2
		tail -n 15 "$PW_AGENT_OUT" | cut -c1-400 >&2
	fi
}

# pw_require_pullwatch — skip (exit 77) unless $PULLWATCH is an executable.
pw_require_pullwatch() {
	if [[ -z ${PULLWATCH:-} || ! -x ${PULLWATCH:-} ]]; then
		echo "[$PW_TEST_NAME] SKIP: \$PULLWATCH is unset or not executable ('${PULLWATCH:-}')" >&2
		exit 77
	fi
}

# pw_fake_containerd SOCK [ARG...] — start a fake containerd (the python script on stdin, built on
# fakectrd.py: `from fakectrd import ...; serve(...)`) listening on SOCK; every gRPC method
# it is called with goes to $PW_WORK/calls.log; ARGs follow as sys.argv[3:]. Skips (77) without python3-grpcio; fails
# if the socket does not appear. Stopped with the test's other processes.
pw_fake_containerd() {
	local sock=$1 script
	"$PW_PY" -c 'import grpc' 2>/dev/null || {
		pw_note "SKIP: python3-grpcio missing"
		exit 77
	}
	script=$(cat)
	PYTHONPATH=$PW_LIB_DIR "$PW_PY" -c "$script" "$sock" "$PW_WORK/calls.log" "${@:2}" >"$PW_WORK/fake.log" 2>&1 &
	PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $!"
	pw_poll 20 test -S "$sock" || pw_fail "the fake containerd did not start" "$(cat "$PW_WORK/fake.log")"
}

# pw_timer_due_within PID SECONDS — true if a timerfd of PID expires within SECONDS
# ("it_value: (SEC, NSEC)" in its fdinfo is the time left; (0, 0) is disarmed).
pw_timer_due_within() {
	local fd link sec nsec
	for fd in /proc/"$1"/fd/*; do
		link=$(readlink "$fd" 2>/dev/null) || continue
		[[ $link == 'anon_inode:[timerfd]' ]] || continue
		read -r sec nsec < <(sed -nE 's/^it_value: \(([0-9]+), ([0-9]+)\)$/\1 \2/p' "/proc/$1/fdinfo/${fd##*/}")
		((${sec:-0} == 0 && ${nsec:-0} == 0)) && continue
		((sec < $2)) && return 0
	done
	return 1
}

# pw_wait_idle PID MAX_SECONDS — until PID is idle, for a bench's idle-memory reading: no
# timer due within 60 s (the catch-up listing, the ledger save, the health files; bounded:
# 180 s), then < 2 ms of CPU over 1 s (bounded: MAX_SECONDS; on a loaded machine a starved
# agent looked idle by CPU alone, and right after "subscribed" a journald backlog may still
# drain with no timer armed). A bound passed is said on stderr; the caller measures anyway.
pw_wait_idle() {
	local prev cur i
	pw_poll 180 eval "! pw_timer_due_within $1 60" || pw_note "pid $1 still has a timer due within 60 s after 180 s"
	read -r prev _ <"/proc/$1/schedstat"
	for ((i = 0; i < $2; i++)); do
		sleep 1
		read -r cur _ <"/proc/$1/schedstat"
		((cur - prev < 2000000)) && return 0
		prev=$cur
	done
	pw_note "pid $1 still busy after $2 s (measuring anyway)"
}

# pw_linestamp — build tests/bench/linestamp.c into $PW_WORK/linestamp (once): a filter that
# prefixes each line with the wall-clock microseconds at which it was read.
pw_linestamp() {
	[[ -x $PW_WORK/linestamp ]] && return 0
	command -v gcc >/dev/null || pw_fail "gcc is needed to build tests/bench/linestamp.c"
	gcc -O2 -Wall -Wextra -Werror -o "$PW_WORK/linestamp" "$PW_LIB_DIR/../bench/linestamp.c" ||
		pw_fail "could not build tests/bench/linestamp.c"
}

# pw_start_stamped OUTFILE CMD... — start CMD in the background (PW_STAMPED_PID) with its
# stderr through tests/bench/linestamp.c into OUTFILE: each line prefixed with the wall-clock
# microseconds at which it arrived. PW_STAMPED_T0 is the time just before the start, so a
# bench times a line with pw_stamp_ms however late its wait notices the line (a poll seeing
# it by grep and sed forks every 5 ms was 33-123 ms late on this 2-core machine).
pw_start_stamped() {
	local out=$1
	shift
	pw_linestamp
	: >"$out"
	PW_STAMPED_T0=${EPOCHREALTIME/./}
	"$@" >/dev/null 2> >("$PW_WORK/linestamp" >"$out") </dev/null &
	PW_STAMPED_PID=$!
}

# pw_stamp_ms FILE TEXT — ms from PW_STAMPED_T0 to the arrival of FILE's first line holding
# TEXT (FILE written by pw_start_stamped); empty when there is none.
pw_stamp_ms() {
	awk -v t="$PW_STAMPED_T0" -v p="$2" 'index($0, p) { printf "%d", ($1 - t) / 1000; exit }' "$1"
}

# pw_ms_since T — PW_MS: ms since T (µs since the epoch, ${EPOCHREALTIME/./}); no fork at
# either end of what a bench times.
pw_ms_since() { PW_MS=$(((${EPOCHREALTIME/./} - $1) / 1000)); }

# pw_run_until_subscribed BINARY STATE_DIR NODE NS — `BINARY run` on $PW_SOCK for NS, its
# stderr stamped into $PW_WORK/agent.err (pw_start_stamped), until it logs "subscribed to
# containerd events" (its first listing judged); fails the script after 600 s or when it
# exits. PW_SUB_PID: its pid (also PW_EXTRA_PIDS: killed on exit); PW_SUB_MS: ms from its
# start to that line's arrival (stamped: not when the wait saw the line).
# The wait does not poll: tail follows the file by inotify (and ends with the agent:
# --pid) and grep takes the first match. A pw_poll here forked five processes (date,
# grep, sed, cut, sleep) every 20-50 ms on the two cores the agent was being timed on,
# and ctr, its peer, ran without one (same binary, scale_ab: fresh 2.05x with it, 1.37x
# without).
pw_run_until_subscribed() {
	pw_start_stamped "$PW_WORK/agent.err" "$1" run --address "$PW_SOCK" --state-dir "$2" --node "$3" --namespace "$4"
	PW_SUB_PID=$PW_STAMPED_PID
	PW_EXTRA_PIDS=$PW_SUB_PID
	if ! timeout 600 grep -m1 -q 'subscribed to containerd events' \
		< <(tail -n +1 -F --pid="$PW_SUB_PID" "$PW_WORK/agent.err" 2>/dev/null); then
		pw_proc_alive "$PW_SUB_PID" || pw_fail "pullwatch exited" "$(tail -3 "$PW_WORK/agent.err")"
		pw_fail "pullwatch did not subscribe within 600 s" "$(tail -3 "$PW_WORK/agent.err")"
	fi
	PW_SUB_MS=$(pw_stamp_ms "$PW_WORK/agent.err" 'subscribed to containerd events')
}

pw_journald_bin() {
	local b
	for b in /lib/systemd/systemd-journald /usr/lib/systemd/systemd-journald; do
		[[ -x $b ]] && { echo "$b"; return 0; }
	done
	return 1
}

# pw_setup_deps_check — fail with one clear line per missing tool.
pw_setup_deps_check() {
	local missing=() t
	for t in containerd ctr skopeo docker-registry journalctl systemd-cat "$PW_PY"; do
		command -v "$t" >/dev/null 2>&1 || missing+=("$t")
	done
	pw_journald_bin >/dev/null || missing+=("systemd-journald (/lib/systemd/systemd-journald)")
	if ((${#missing[@]})); then
		pw_fail "missing tools: ${missing[*]}" \
			"on Debian 12: apt-get install containerd docker-registry skopeo systemd python3"
	fi
	[[ $(id -u) == 0 ]] || pw_fail "the integration suite must run as root (containerd, journald)"
}

# pw_node_name — a unique NODE_NAME for this test run, e.g. it-latest-1a2b3c4d.
pw_node_name() {
	local r
	r=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
	echo "it-${PW_TEST_NAME#test_}-$r"
}

# --------------------------------------------------------------- journald ----

PW_JOURNAL_SOCKET=/run/systemd/journal/socket

# pw_journald_alive — the native socket accepts a connection.
pw_journald_alive() {
	"$PW_PY" - "$PW_JOURNAL_SOCKET" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(sys.argv[1])
EOF
}

# pw_start_journald — make sure journald listens; start our own when the socket
# is absent or dead (no systemd as PID 1). Without systemd it keeps the journal
# in /run/log/journal (volatile: nobody asks it to flush to /var), which
# journalctl reads just the same.
pw_start_journald() {
	if pw_journald_alive; then
		PW_JOURNALD_STARTED=0
		pw_log "journald already running"
		return 0
	fi
	local bin lock=/run/pullwatch-it-journald.lock t0
	bin=$(pw_journald_bin) || pw_fail "systemd-journald binary not found"
	exec {PW_JLOCK_FD}>"$lock"
	flock -w 30 "$PW_JLOCK_FD" || pw_fail "could not lock $lock"
	if pw_journald_alive; then # someone else started one while we waited
		exec {PW_JLOCK_FD}>&-
		return 0
	fi
	t0=$(pw_now_ms)
	mkdir -p /run/systemd/journal /run/log/journal
	"$bin" >"$PW_WORK/journald.log" 2>&1 &
	PW_JOURNALD_PID=$!
	PW_JOURNALD_STARTED=1
	pw_poll 15 pw_journald_alive || {
		exec {PW_JLOCK_FD}>&-
		pw_fail "systemd-journald did not open $PW_JOURNAL_SOCKET within 15 s" "$(tail -5 "$PW_WORK/journald.log")"
	}
	exec {PW_JLOCK_FD}>&-
	PW_JOURNALD_START_MS=$(($(pw_now_ms) - t0))
	pw_log "journald started (pid $PW_JOURNALD_PID) in ${PW_JOURNALD_START_MS} ms"
}

# pw_journal_entries NODE [KIND] [COND...] — pullwatch's journal entries for NODE
# (journalctl -o json, one object per line), optionally of one kind and matching
# jsonl.py conditions on the journal fields (e.g. IMAGE_TAG=latest).
pw_journal_entries() {
	local node=$1 kind=${2:-}
	shift; (($#)) && shift
	local m=(SYSLOG_IDENTIFIER=pullwatch "NODE_NAME=$node")
	[[ -n $kind ]] && m+=("PULLWATCH_KIND=$kind")
	journalctl -q -o json --no-pager "${m[@]}" 2>/dev/null | "$PW_PY" "$PW_LIB_DIR/jsonl.py" lines - "$@"
}

# pw_journal_count NODE [KIND] [COND...]
pw_journal_count() { pw_journal_entries "$@" | wc -l; }

# pw_journal_get NODE KIND FIELD [COND...] — FIELD of each matching entry, one per line.
pw_journal_get() {
	local node=$1 kind=$2 field=$3
	shift 3
	pw_journal_entries "$node" "$kind" | "$PW_PY" "$PW_LIB_DIR/jsonl.py" get - "$field" "$@"
}

# pw_wait_journal NODE KIND COUNT [TIMEOUT] [COND...] — until at least COUNT
# matching entries exist (default timeout 20 s); fails the test otherwise.
pw_wait_journal() {
	local node=$1 kind=$2 want=$3 timeout=${4:-20}
	shift 3; (($#)) && shift
	if ! pw_poll "$timeout" pw__journal_at_least "$node" "$kind" "$want" "$@"; then
		pw_fail "journald: fewer than $want '$kind' entries for node $node ${*:+($*)} after ${timeout}s" \
			"have $(pw_journal_count "$node" "$kind" "$@"); all pullwatch entries of this node:" \
			"$(pw_journal_entries "$node" | "$PW_PY" "$PW_LIB_DIR/jsonl.py" get - MESSAGE | head -20)"
	fi
	pw_pass "journald has >= $want '$kind' entries ${*:+($*)}"
}
pw__journal_at_least() {
	local node=$1 kind=$2 want=$3
	shift 3
	(($(pw_journal_count "$node" "$kind" "$@") >= want))
}

# --------------------------------------------------------------- registry ----

pw_free_port() {
	"$PW_PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pw_http_ok() { # URL — 2xx answer
	"$PW_PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null
}
pw_https_ok() { # URL CAFILE — 2xx answer over TLS verified against CAFILE
	"$PW_PY" -c 'import ssl, sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2, context=ssl.create_default_context(cafile=sys.argv[2]))' "$1" "$2" 2>/dev/null
}

# pw_start_registry — docker-registry on 127.0.0.1:<free port>, storage in the
# work dir. Exports PW_REGISTRY=127.0.0.1:PORT.
pw_start_registry() {
	local port t0 _try
	for _try in 1 2 3; do
		port=$(pw_free_port)
		mkdir -p "$PW_WORK/registry"
		cat >"$PW_WORK/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $PW_WORK/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: pullwatch-integration
EOF
		if [[ ${PW_REGISTRY_TLS:-0} == 1 ]]; then
			pw__registry_tls_cert
			cat >>"$PW_WORK/registry.yml" <<EOF
  tls:
    certificate: $PW_WORK/tls/registry.crt
    key: $PW_WORK/tls/registry.key
EOF
		fi
		t0=$(pw_now_ms)
		docker-registry serve "$PW_WORK/registry.yml" >>"$PW_WORK/registry.log" 2>&1 &
		PW_REGISTRY_PID=$!
		local probe=(pw_http_ok "http://127.0.0.1:$port/v2/")
		[[ ${PW_REGISTRY_TLS:-0} == 1 ]] && probe=(pw_https_ok "https://127.0.0.1:$port/v2/" "$PW_WORK/tls/ca.crt")
		if pw_poll 20 "${probe[@]}"; then
			export PW_REGISTRY=127.0.0.1:$port
			PW_REGISTRY_START_MS=$(($(pw_now_ms) - t0))
			pw_log "registry on $PW_REGISTRY (pid $PW_REGISTRY_PID) in ${PW_REGISTRY_START_MS} ms"
			return 0
		fi
		pw_kill_wait "$PW_REGISTRY_PID" 2
		PW_REGISTRY_PID=
	done
	pw_fail "docker-registry did not answer /v2/" "$(tail -5 "$PW_WORK/registry.log")"
}

# ------------------------------------------------------------- containerd ----

# pw__registry_tls_cert — a CA made for this run ($PW_WORK/tls/ca.crt) and a server
# certificate for 127.0.0.1 signed by it (PW_REGISTRY_TLS=1). containerd is started with
# SSL_CERT_FILE pointing at the CA, so the daemon itself (the Transfer service) trusts the
# registry without --plain-http or a skip-verify.
pw__registry_tls_cert() {
	local d=$PW_WORK/tls
	[[ -f $d/registry.crt ]] && return 0
	mkdir -p "$d"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=pullwatch test CA" \
		-keyout "$d/ca.key" -out "$d/ca.crt" >/dev/null 2>&1 || pw_fail "openssl: cannot make the test CA"
	openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$d/registry.key" -out "$d/registry.csr" \
		>/dev/null 2>&1 || pw_fail "openssl: cannot make the registry key"
	printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$d/ext.cnf"
	openssl x509 -req -in "$d/registry.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
		-extfile "$d/ext.cnf" -out "$d/registry.crt" >/dev/null 2>&1 || pw_fail "openssl: cannot sign the registry certificate"
	cat /etc/ssl/certs/ca-certificates.crt "$d/ca.crt" >"$d/bundle.crt" 2>/dev/null || cp "$d/ca.crt" "$d/bundle.crt"
}

pw_containerd_config() {
	local d=$PW_WORK/containerd cri_disabled='"io.containerd.grpc.v1.cri",'
	mkdir -p "$d/root" "$d/state"
	[[ ${PW_CONTAINERD_CRI:-0} == 1 ]] && cri_disabled=''
	cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
# no CRI unless asked (needs CNI, a sandbox image); no snapshotters that need special filesystems
disabled_plugins = [$cri_disabled "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$PW_WORK/containerd.sock"

[ttrpc]
  address = "$PW_WORK/containerd.sock.ttrpc"

[debug]
  address = "$PW_WORK/containerd-debug.sock"
  level = "info"

[plugins."io.containerd.gc.v1.scheduler"]
  startup_delay = "100ms"
EOF
	if [[ ${PW_CONTAINERD_CRI:-0} == 1 ]]; then
		cat >>"$d/config.toml" <<EOF

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  sandbox_image = "pause.invalid/pause:3.9"
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "$PW_WORK/cni/bin"
  conf_dir = "$PW_WORK/cni/conf"
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "$PW_WORK/certs.d"
EOF
		mkdir -p "$PW_WORK/cni/bin" "$PW_WORK/cni/conf"
	fi
}

# pw_cri_registry_hosts — a hosts.toml telling the CRI plugin (and ctr --hosts-dir) how
# to reach the private registry ($PW_REGISTRY): plain HTTP, or HTTPS with the run's CA.
pw_cri_registry_hosts() {
	local scheme=http ca=''
	[[ ${PW_REGISTRY_TLS:-0} == 1 ]] && scheme=https ca="  ca = \"$PW_WORK/tls/ca.crt\""
	mkdir -p "$PW_WORK/certs.d/$PW_REGISTRY"
	cat >"$PW_WORK/certs.d/$PW_REGISTRY/hosts.toml" <<EOF
server = "$scheme://$PW_REGISTRY"

[host."$scheme://$PW_REGISTRY"]
  capabilities = ["pull", "resolve"]
$ca
EOF
}

pw_ctr() { ctr -a "$PW_SOCK" "$@"; }

# pw_start_containerd — private containerd on $PW_WORK/containerd.sock (exports
# PW_SOCK), log appended to $PW_WORK/containerd.log; returns when `ctr version`
# answers. Falls back to the native snapshotter when overlayfs is unusable.
pw_start_containerd() {
	[[ -f $PW_WORK/containerd/config.toml ]] || pw_containerd_config
	export PW_SOCK=$PW_WORK/containerd.sock
	[[ -z $PW_CTD_PID ]] || pw_fail "pw_start_containerd: already running (pid $PW_CTD_PID)"
	local t0
	t0=$(pw_now_ms)
	echo "==== start $(date -u +%FT%T.%NZ)" >>"$PW_WORK/containerd.log"
	local ssl=()
	[[ ${PW_REGISTRY_TLS:-0} == 1 && -f $PW_WORK/tls/bundle.crt ]] && ssl=("SSL_CERT_FILE=$PW_WORK/tls/bundle.crt")
	env "${ssl[@]}" "${PW_CONTAINERD_BIN:-containerd}" --config "$PW_WORK/containerd/config.toml" \
		>>"$PW_WORK/containerd.log" 2>&1 &
	PW_CTD_PID=$!
	if ! pw_poll 30 pw_ctr version; then
		pw_fail "containerd did not answer on $PW_SOCK within 30 s" "$(tail -5 "$PW_WORK/containerd.log")"
	fi
	PW_CTD_START_MS=$(($(pw_now_ms) - t0))
	pw_log "containerd up (pid $PW_CTD_PID) in ${PW_CTD_START_MS} ms"
	local plugins
	plugins=$(pw_ctr plugins ls 2>/dev/null || true)
	if [[ -z ${CONTAINERD_SNAPSHOTTER:-} ]] &&
		! grep -Eq 'io\.containerd\.snapshotter\.v1[[:space:]]+overlayfs[[:space:]].*[[:space:]]ok' <<<"$plugins"; then
		export CONTAINERD_SNAPSHOTTER=native
		pw_note "overlayfs snapshotter unavailable here, ctr uses the native snapshotter"
	fi
}

# pw_stop_containerd — SIGTERM and wait (SIGKILL after 10 s).
pw_stop_containerd() {
	[[ -n $PW_CTD_PID ]] || return 0
	local t0
	t0=$(pw_now_ms)
	pw_kill_wait "$PW_CTD_PID" 10
	PW_CTD_PID=
	PW_CTD_STOP_MS=$(($(pw_now_ms) - t0))
	pw_log "containerd stopped in ${PW_CTD_STOP_MS} ms"
}

pw_restart_containerd() { pw_stop_containerd; pw_start_containerd; }

# ----------------------------------------------------------------- images ----

# pw_build_image NAME TAG REVISION [SEED] — build a one-layer OCI image for the
# host platform (config label org.opencontainers.image.revision=REVISION unless
# REVISION is empty; SEED, default NAME:TAG, changes the layer and so the
# digest), push it to $PW_REGISTRY/NAME:TAG; print the manifest digest.
pw_build_image() {
	local name=$1 tag=$2 rev=$3 seed=${4:-$1:$2} dir out digest
	dir=$(mktemp -d "$PW_WORK/oci.XXXXXX")
	out=$("$PW_PY" "$PW_LIB_DIR/mkoci.py" image "$dir" "$tag" "$rev" "$seed") || pw_fail "mkoci.py image failed"
	digest=${out%% *}
	pw__push "$dir" "$name" "$tag" "$digest" ""
	echo "$digest"
}

# pw_build_index NAME TAG REVISION [SEED] — a multi-arch OCI index (host
# platform + one other), pushed with skopeo --all; prints
# "INDEX_DIGEST HOST_MANIFEST_DIGEST".
pw_build_index() {
	local name=$1 tag=$2 rev=$3 seed=${4:-$1:$2} dir out idx host
	dir=$(mktemp -d "$PW_WORK/oci.XXXXXX")
	out=$("$PW_PY" "$PW_LIB_DIR/mkoci.py" index "$dir" "$tag" "$rev" "$seed") || pw_fail "mkoci.py index failed"
	read -r idx host _ <<<"$out"
	pw__push "$dir" "$name" "$tag" "$idx" --all
	echo "$idx $host"
}

pw__push() { # DIR NAME TAG EXPECTED_DIGEST [--all]
	local dir=$1 name=$2 tag=$3 want=$4 all=${5:-} got
	[[ -n $PW_REGISTRY ]] || pw_fail "pw_build_image: no registry (call pw_start_registry)"
	# shellcheck disable=SC2086
	if ! skopeo copy --quiet --insecure-policy --dest-tls-verify=false $all \
		--digestfile "$dir/pushed.digest" "oci:$dir:$tag" "docker://$PW_REGISTRY/$name:$tag" \
		>>"$PW_WORK/skopeo.log" 2>&1; then
		pw_fail "skopeo could not push $name:$tag" "$(tail -5 "$PW_WORK/skopeo.log")"
	fi
	got=$(cat "$dir/pushed.digest")
	[[ $got == "$want" ]] || pw_fail "skopeo pushed $name:$tag as $got, the layout says $want (did it convert the manifest?)"
}

# pw_pull NS REF — ctr images pull --plain-http (host platform only).
pw_pull() {
	local ns=$1 ref=$2
	shift 2
	local how=(--plain-http)
	# ctr takes a loopback registry for plain HTTP unless a hosts.toml says https
	[[ ${PW_REGISTRY_TLS:-0} == 1 ]] && pw_cri_registry_hosts && how=(--hosts-dir "$PW_WORK/certs.d")
	if ! pw_ctr -n "$ns" images pull "${how[@]}" "$@" "$ref" >"$PW_WORK/pull.log" 2>&1; then
		pw_fail "ctr could not pull $ref into $ns" "$(tail -5 "$PW_WORK/pull.log")"
	fi
}

# pw_image_digest NS REF — the target digest containerd stores for REF (empty if absent).
pw_image_digest() {
	pw_ctr -n "$1" images ls "name==$2" 2>/dev/null | awk -v r="$2" 'NR > 1 && $1 == r { print $3 }'
}

# pw_image_config_digest NS REF — the config digest of REF's host-platform
# manifest, read from containerd's content store (as the CRI image id is).
pw_image_config_digest() {
	local ns=$1 ref=$2 target blob
	target=$(pw_image_digest "$ns" "$ref")
	[[ -n $target ]] || return 1
	blob=$(pw_ctr -n "$ns" content get "$target") || return 1
	if [[ $blob == *'"manifests"'* ]]; then
		target=$("$PW_PY" -c '
import json, sys
arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(sys.argv[1], sys.argv[1])
for m in json.load(sys.stdin)["manifests"]:
    p = m.get("platform", {})
    if p.get("os") == "linux" and p.get("architecture") == arch:
        print(m["digest"])
        break
' "$(uname -m)" <<<"$blob")
		[[ -n $target ]] || return 1
		blob=$(pw_ctr -n "$ns" content get "$target") || return 1
	fi
	"$PW_PY" -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])' <<<"$blob"
}

# pw_cri_style_pull NS REF — what the CRI plugin does for one pull: pull the tag
# ref (labelled io.cri-containerd.image=managed), then create the repo-digest
# name (NAME@sha256:...) and the image-id name (sha256:<config hex>) with the
# same target, all three labelled. Prints "MANIFEST_DIGEST CONFIG_DIGEST".
pw_cri_style_pull() {
	local ns=$1 ref=$2 repo digest cfg n
	pw_pull "$ns" "$ref" --label io.cri-containerd.image=managed
	digest=$(pw_image_digest "$ns" "$ref")
	cfg=$(pw_image_config_digest "$ns" "$ref") || pw_fail "no config digest for $ref in $ns"
	repo=${ref%@*}
	[[ ${repo##*/} == *:* ]] && repo=${repo%:*}
	for n in "$cfg" "$repo@$digest"; do
		pw_ctr -n "$ns" images tag --force "$ref" "$n" >>"$PW_WORK/ctr.log" 2>&1 ||
			pw_fail "ctr images tag $ref $n refused" "$(tail -3 "$PW_WORK/ctr.log")"
	done
	for n in "$cfg" "$repo@$digest"; do
		[[ $(pw_ctr -n "$ns" images ls "name==$n" | awk 'NR > 1 { print $NF }') == *io.cri-containerd.image=managed* ]] && continue
		pw_ctr -n "$ns" images label "$n" io.cri-containerd.image=managed >>"$PW_WORK/ctr.log" 2>&1 ||
			pw_fail "ctr images label $n refused" "$(tail -3 "$PW_WORK/ctr.log")"
	done
	echo "$digest $cfg"
}

# ------------------------------------------------------------------ agent ----

# pw_spawn_agent NODE [ARGS...] — start `pullwatch run` in the background
# (stdout appended to $PW_AGENT_OUT, stderr to $PW_AGENT_ERR, state in
# $PW_STATE_DIR) without waiting. PW_AGENT_ADDRESS overrides --address.
pw_spawn_agent() {
	pw_require_pullwatch
	local node=$1
	shift
	[[ -z $PW_AGENT_PID ]] || pw_fail "pw_start_agent: an agent is already running (pid $PW_AGENT_PID)"
	PW_NODE=$node
	mkdir -p "$PW_STATE_DIR"
	touch "$PW_AGENT_ERR" "$PW_AGENT_OUT"
	PW_AGENT_ERR_MARK=$(wc -l <"$PW_AGENT_ERR")
	echo "==== start $(date -u +%FT%T.%NZ)" >>"$PW_AGENT_ERR"
	PW_AGENT_ERR_MARK=$((PW_AGENT_ERR_MARK + 1))
	# shellcheck disable=SC2086
	${PW_AGENT_WRAPPER:-} "$PULLWATCH" run --address "${PW_AGENT_ADDRESS:-$PW_SOCK}" \
		--state-dir "$PW_STATE_DIR" --node "$node" --stdout "$@" \
		>>"$PW_AGENT_OUT" 2>>"$PW_AGENT_ERR" </dev/null &
	PW_AGENT_PID=$!
	PW_AGENT_T0=$(pw_now_ms)
}

# pw_agent_err_since_start — the agent's stderr since its last start.
pw_agent_err_since_start() { tail -n "+$((PW_AGENT_ERR_MARK + 1))" "$PW_AGENT_ERR" 2>/dev/null; }

pw__agent_ready() {
	pw_proc_alive "$PW_AGENT_PID" || return 2
	pw_agent_err_since_start | grep -q 'subscribed to containerd events'
}

# pw_wait_agent_ready [TIMEOUT] — until the agent's stderr (since its last
# start) says "subscribed to containerd events"; fails if it exits first.
pw_wait_agent_ready() {
	local timeout=${1:-20}
	pw_poll "$timeout" eval 'pw__agent_ready || ! pw_proc_alive $PW_AGENT_PID'
	pw_proc_alive "$PW_AGENT_PID" || {
		local st
		wait "$PW_AGENT_PID" && st=0 || st=$?
		PW_AGENT_PID=
		pw_fail "pullwatch run exited (status $st) before subscribing" "$(pw_agent_err_since_start | tail -10)"
	}
	pw__agent_ready || pw_fail "pullwatch run did not report 'subscribed to containerd events' within ${timeout}s" \
		"$(pw_agent_err_since_start | tail -10)"
	PW_AGENT_READY_MS=$(($(pw_now_ms) - PW_AGENT_T0))
	pw_log "agent ready in ${PW_AGENT_READY_MS} ms"
}

# pw_start_agent NODE [ARGS...] — pw_spawn_agent, then wait until subscribed.
pw_start_agent() {
	pw_spawn_agent "$@"
	pw_wait_agent_ready "${PW_AGENT_READY_TIMEOUT:-20}"
}

# pw_agent_alive — the agent process is still running.
pw_agent_alive() { pw_proc_alive "$PW_AGENT_PID"; }

# pw_stop_agent — SIGTERM, wait (10 s), and require exit status 0.
pw_stop_agent() {
	[[ -n $PW_AGENT_PID ]] || pw_fail "pw_stop_agent: no agent running"
	pw_proc_alive "$PW_AGENT_PID" || {
		local st
		wait "$PW_AGENT_PID" && st=0 || st=$?
		PW_AGENT_PID=
		pw_fail "pullwatch run had already exited (status $st) before SIGTERM" "$(pw_agent_err_since_start | tail -10)"
	}
	pw_kill_wait "$PW_AGENT_PID" 10
	PW_AGENT_STATUS=$PW_KILL_STATUS
	PW_AGENT_PID=
	pw_assert_eq "$PW_AGENT_STATUS" 0 "pullwatch run exits 0 on SIGTERM"
}

# pw_stdout_count [COND...] — agent stdout JSON objects matching (jsonl.py conditions).
pw_stdout_count() { "$PW_PY" "$PW_LIB_DIR/jsonl.py" count "$PW_AGENT_OUT" "$@"; }

# pw_stdout_get FIELD [COND...]
pw_stdout_get() { "$PW_PY" "$PW_LIB_DIR/jsonl.py" get "$PW_AGENT_OUT" "$@"; }

# pw_wait_stdout KIND COUNT [TIMEOUT] [COND...] — until the agent has printed at
# least COUNT objects of KIND (matching COND, e.g. image.tag=latest).
pw_wait_stdout() {
	local kind=$1 want=$2 timeout=${3:-20}
	shift 2; (($#)) && shift
	if ! pw_poll "$timeout" pw__stdout_at_least "$want" "kind=$kind" "$@"; then
		pw_fail "stdout: fewer than $want '$kind' objects ${*:+($*)} after ${timeout}s" \
			"have $(pw_stdout_count "kind=$kind" "$@"); agent stdout:" "$(tail -n 10 "$PW_AGENT_OUT" 2>/dev/null | cut -c1-300)"
	fi
	pw_pass "stdout has >= $want '$kind' objects ${*:+($*)}"
}
pw__stdout_at_least() {
	local want=$1
	shift
	(($(pw_stdout_count "$@") >= want))
}

# pw_assert_stdout_jsonl — every line the agent printed is a JSON object.
pw_assert_stdout_jsonl() {
	local bad
	bad=$("$PW_PY" "$PW_LIB_DIR/jsonl.py" check "$PW_AGENT_OUT") || pw_fail "agent stdout is not JSON lines" "$bad"
	pw_pass "agent stdout is JSON lines"
}

# pw_json_field FILE FIELD [COND...] — FIELD of each JSON line of FILE matching COND.
pw_json_field() { "$PW_PY" "$PW_LIB_DIR/jsonl.py" get "$@"; }

# pw_json_count FILE [COND...]
pw_json_count() { "$PW_PY" "$PW_LIB_DIR/jsonl.py" count "$@"; }

# pw_quiesce [SECONDS] — a bounded grace period used only to assert that
# something does NOT happen (a duplicate finding, a flood of log lines); it is
# never used to wait for an event. Default 1 s.
pw_quiesce() { sleep "${1:-1}"; }

# ---------------------------------------------------- records and findings ----
# These check journald (fields) and the agent's --stdout JSON together.

# pw_wait_record KIND REF DIGEST [NS] [TIMEOUT] [EXTRA_JOURNAL_COND...] — wait
# until journald and stdout both hold a KIND entry for REF at DIGEST (in
# containerd namespace NS when not empty), for node $PW_NODE.
pw_wait_record() {
	local kind=$1 ref=$2 digest=$3 ns=${4:-} timeout=${5:-20}
	shift 3; (($#)) && shift; (($#)) && shift
	local jc=("IMAGE_REF=$ref" "IMAGE_DIGEST=$digest") sc=("image.ref=$ref" "image.digest=$digest")
	[[ -n $ns ]] && jc+=("CONTAINERD_NAMESPACE=$ns") && sc+=("namespace=$ns")
	pw_wait_journal "$PW_NODE" "$kind" 1 "$timeout" "${jc[@]}" "$@"
	pw_wait_stdout "$kind" 1 "$timeout" "${sc[@]}" "node=$PW_NODE"
}

# pw_findings_count REF [NS] — findings (every kind but pull) about REF in
# journald plus on stdout, for node $PW_NODE.
pw_findings_count() {
	local ref=$1 ns=${2:-} j s
	local jc=("IMAGE_REF=$ref" "PULLWATCH_KIND!=pull") sc=("image.ref=$ref" "kind!=pull")
	[[ -n $ns ]] && jc+=("CONTAINERD_NAMESPACE=$ns") && sc+=("namespace=$ns")
	j=$(pw_journal_count "$PW_NODE" "" "${jc[@]}")
	s=$(pw_stdout_count "${sc[@]}")
	echo $((j + s))
}

# pw_findings_list [COND...] — "kind ref digest" of every finding on stdout, sorted.
pw_findings_list() {
	"$PW_PY" "$PW_LIB_DIR/jsonl.py" lines "$PW_AGENT_OUT" "kind!=pull" "$@" |
		"$PW_PY" -c 'import json,sys
for l in sys.stdin:
    o = json.loads(l); i = o.get("image") or {}
    print(o.get("kind"), i.get("ref"), i.get("digest"))' | sort
}

# pw_sync_agent [NS] — a barrier: push and pull a fresh :latest image and wait
# for its latest_tag finding. The agent handles events in order, so everything
# pulled before has been handled too. Prints nothing; sets PW_SYNC_REF.
PW_SYNC_SEQ=0
pw_sync_agent() {
	local ns=${1:-default} d
	PW_SYNC_SEQ=$((PW_SYNC_SEQ + 1))
	PW_SYNC_REF=$PW_REGISTRY/sync-$PW_SYNC_SEQ:latest
	d=$(pw_build_image "sync-$PW_SYNC_SEQ" latest "" "sync-$PW_SYNC_SEQ-$RANDOM")
	pw_pull "$ns" "$PW_SYNC_REF"
	pw_wait_journal "$PW_NODE" latest_tag 1 20 "IMAGE_REF=$PW_SYNC_REF" "IMAGE_DIGEST=$d"
}
