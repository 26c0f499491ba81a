#!/usr/bin/env bash
# tests/bench/wakeup_bench.sh — the cost of one wake-up on this machine (wakeup_bench.c:
# two processes pass a byte back and forth over a unix socketpair, each in epoll_wait()
# then recv() as the agent's loop does), beside the load average. Prints figures only.
#   N=20000  round trips
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
N=${N:-20000}
BIN=$(mktemp /tmp/wakeup_bench.XXXXXX)
trap 'rm -f "$BIN"' EXIT
gcc -O2 -Wall -Wextra -Werror -o "$BIN" "$HERE/wakeup_bench.c"
echo "== $N round trips, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN" "$N"
