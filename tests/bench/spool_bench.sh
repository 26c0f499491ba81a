#!/bin/bash
# Spool append throughput per fsync policy, beside peers doing the same writes on the
# same file system: dd with oflag=dsync (one synchronous write per record, as ALWAYS)
# and python appending with an fsync every BATCH records (as BATCH).
# usage: tests/bench/spool_bench.sh [DIR] [RECORDS] [BATCH]
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-/var/tmp/pw-spool-bench}
n=${2:-100000}
batch=${3:-500}
n_always=$(( n > 10000 ? 10000 : n ))
mkdir -p "$dir"
bin=$(mktemp /tmp/spool_bench.XXXXXX)
trap 'rm -f "$bin"; rm -rf "$dir"' EXIT
gcc -O2 -std=gnu11 -D_GNU_SOURCE -I"$src/include" -o "$bin" "$src/tests/bench/spool_bench.c" "$src/agent/spool.c" "$src/core/fileio.c" -lz

"$bin" "$dir" "$n" "$batch"

t0=$(date +%s.%N)
dd if=/dev/zero of="$dir/dd.out" bs=620 count="$n_always" oflag=dsync status=none
t1=$(date +%s.%N)
awk -v n="$n_always" -v a="$t0" -v b="$t1" 'BEGIN { printf "%-28s %10.0f appends/s %9.0f fsyncs/s\n", "peer: dd oflag=dsync", n/(b-a), n/(b-a) }'

python3 - "$dir/py.out" "$n" "$batch" <<'PY'
import os, sys, time
path, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rec = b"x" * 620
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
t = time.monotonic(); syncs = 0
for i in range(1, n + 1):
    os.write(fd, rec)
    if i % batch == 0:
        os.fdatasync(fd); syncs += 1
dt = time.monotonic() - t
os.close(fd)
print("%-28s %10.0f appends/s %9.0f fsyncs/s" % ("peer: python write+fdatasync/batch", n / dt, syncs / dt))
PY
