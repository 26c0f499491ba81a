#!/usr/bin/env bash
# tests/bench/images_lookup_bench.sh — what containerd spends on the agent's look-up of an
# image event: one Images.Get per name, against Images.List calls carrying K names as
# OR'ed `name=="…"` filters (the coalescing a burst of /images/create events could use).
# containerd 1.6's List with filters reads every image record of the namespace and
# matches each, so its cost grows with the store, not with K. For each store size in
# SIZES: N look-ups of existing names, containerd's CPU per name and the wall time per
# call (images_lookup_bench.py). As root; prints figures only.
#   SIZES="1000 3000"  images in the store
#   N=400              names looked up
#   KS="1 4 16"        names per List call
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SIZES=${SIZES:-1000 3000}
N=${N:-400}
KS=${KS:-1 4 16}
# shellcheck disable=SC2034 # read by lib.sh
PW_TEST_NAME=images_lookup_bench PW_NO_SUMMARY=1
# shellcheck source=tests/integration/lib.sh
. "$ROOT/tests/integration/lib.sh"
pw_setup_deps_check
pw_start_registry
pw_start_containerd
R=$PW_REGISTRY
BASE=$R/bench/base:1.0.0
pw_build_image bench/base 1.0.0 0123456789abcdef0123456789abcdef01234567 "bench-$RANDOM$RANDOM" >/dev/null
pw_pull default "$BASE"
for size in $SIZES; do
	have=$(pw_ctr images ls -q | wc -l)
	((size > have)) && seq -f "$R/bench/k-%05g:1.0.0" "$have" $((size - 1)) |
		xargs -P 4 -n 100 ctr -a "$PW_SOCK" images tag "$BASE" >/dev/null
	((N < size)) || pw_fail "N=$N must be below the store size $size"
	echo "== $(pw_ctr images ls -q | wc -l) images in the store, $N look-ups, load average $(cut -d' ' -f1-3 /proc/loadavg)"
	# shellcheck disable=SC2086 # KS is a list
	"$PW_PY" "$HERE/images_lookup_bench.py" "$PW_SOCK" "$PW_CTD_PID" "$R/bench/k-%05d:1.0.0" "$N" $KS
done
pw_done
