#!/bin/bash
# Ledger memory per reference and ledger_save() peak/time; then the cost of a save per
# change, the full rewrite (what every save did before the change log; ledger_compact()
# now) beside the log append, at 1,000 and 10,000 references, and the load time with a
# log; see ledger_bench.c.
# usage: tests/bench/ledger_bench.sh [DIR]   (DIR's file system decides the fsync cost)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-/var/tmp/pw-ledger-bench}
bin=$(mktemp /tmp/ledger_bench.XXXXXX)
trap 'rm -f "$bin"; rm -rf "$dir"' EXIT
gcc -O2 -std=gnu11 -D_GNU_SOURCE -I"$src/include" -o "$bin" "$src/tests/bench/ledger_bench.c" "$src/agent/ledger.c" \
	"$src/agent/pool.c" "$src/agent/sha256.c" "$src/core/utf8.c" \
	"$src/core/fileio.c" "$src/core/timefmt.c" "$src/core/ref.c" "$src/core/finding.c" \
	-ljansson -lsystemd -lz
for n in 1000 10000; do
	for shared in 0 1; do
		rm -rf "$dir" && mkdir -p "$dir"
		"$bin" "$dir" "$n" "$shared"
	done
done
mkdir -p "$dir"
echo "save cost in $dir ($(stat -f -c %T "$dir")), load average $(cut -d' ' -f1-3 /proc/loadavg):"
for n in 1000 10000; do
	rm -rf "$dir" && mkdir -p "$dir"
	"$bin" --save "$dir" "$n"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
