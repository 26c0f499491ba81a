#!/usr/bin/env bash
# Item 18 of the reliability issue: flakiness is a defect. Runs the integration suite RUNS times
# in a row (default 5) while stress-ng keeps every core busy, and prints the pass count of each
# run and the tests that failed. Outside CI (it takes RUNS x the suite under load).
#   tests/load/under-load.sh [BUILD_DIR] [RUNS] [CTEST_REGEX]
# BUILD_DIR defaults to build (configured and built by the README's build); the stress is
# `stress-ng --cpu $(nproc)` at normal priority, as a busy node would be.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
runs=${2:-5}
regex=${3:-^integration/}
command -v stress-ng >/dev/null || { echo "under-load: stress-ng is not installed (apt-get install stress-ng)" >&2; exit 2; }
[ -x "$build/pullwatch" ] || { echo "under-load: $build/pullwatch not built" >&2; exit 2; }
# test_manifests' schema validator, as tests/run installs it
[ -d tests/k8s/node_modules ] || npm ci --prefix tests/k8s --silent --no-audit --no-fund >/dev/null
out=$(mktemp -d /tmp/pw-load.XXXXXX)
stress-ng --cpu "$(nproc)" --cpu-method matrixprod --timeout 0 --quiet &
stress=$!
trap 'kill $stress 2>/dev/null; wait $stress 2>/dev/null || true' EXIT
total=0
for i in $(seq 1 "$runs"); do
	start=$(date +%s)
	ctest --test-dir "$build" -R "$regex" -j1 --output-on-failure >"$out/run$i.log" 2>&1 || true
	secs=$(( $(date +%s) - start ))
	line=$(grep -E '^[0-9]+% tests passed' "$out/run$i.log" || echo "no summary")
	echo "run $i: $line (${secs}s, load $(cut -d' ' -f1 /proc/loadavg))"
	# ctest lists failures and skips (test_transfer needs containerd 1.7) after a header each
	sed -n '/^The following tests FAILED:/,/^$/p' "$out/run$i.log" | grep -E '^\s+[0-9]+ - ' |
		sed 's/^\s*/    failed: /' || true
	sed -n '/^The following tests did not run:/,/^$/p' "$out/run$i.log" | grep -E '^\s+[0-9]+ - ' |
		sed 's/^\s*/    did not run: /' || true
	grep -qE '^100% tests passed' "$out/run$i.log" && total=$((total + 1))
done
echo "clean runs: $total of $runs (logs in $out)"
[ "$total" -eq "$runs" ]
