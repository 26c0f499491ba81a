#!/usr/bin/env bash
# Fuzz every target under libFuzzer (clang, ASan+UBSan) for a while each, then merge what
# it found into the committed corpus (only inputs that add coverage: -merge=1), so the
# replay tests in ctest carry it from then on. Outside CI: it takes SECONDS x targets.
#   tests/fuzz/run-libfuzzer.sh [SECONDS] [TARGET...]      default 600 s, every target
# Crashes, leaks, timeouts and OOMs are left as tests/fuzz/{crash,leak,timeout,oom}-* (git-ignored
# crash-/leak-) and listed at the end; the script exits 1 if there are any.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-600}
shift || true
build=${PW_FUZZ_BUILD:-build-fuzz}
CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPW_FUZZ=ON -DPW_INTEGRATION=OFF >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	for f in tests/fuzz/fuzz_*.c; do t=${f##*/fuzz_}; targets+=("${t%.c}"); done
fi
cmake --build "$build" -j"$(nproc)" --target "${targets[@]/#/fuzz_}" >/dev/null
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
summary=()
bad=0
for t in "${targets[@]}"; do
	corpus=tests/fuzz/corpus/$t
	new=$(mktemp -d /tmp/pw-fuzz-$t.XXXXXX)
	log=$new.log
	echo "== fuzz_$t for ${secs}s"
	# -rss_limit_mb: the targets are bounded parsers; -max_len a little over the largest seed
	"$build/fuzz_$t" "$new" "$corpus" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
		-print_final_stats=1 -artifact_prefix=tests/fuzz/ >"$log" 2>&1 || bad=1
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	before=$(find "$corpus" -type f | wc -l)
	"$build/fuzz_$t" -merge=1 "$corpus" "$new" >/dev/null 2>&1 || true
	after=$(find "$corpus" -type f | wc -l)
	summary+=("fuzz_$t: ${execs:-?} executions in ${secs}s, corpus $before -> $after")
	grep -E "^==[0-9]+==ERROR|SUMMARY:|deadly signal|out-of-memory|Timeout" "$log" | head -5 || true
	rm -rf "$new" "$log"
done
printf '%s\n' "${summary[@]}"
ls tests/fuzz/crash-* tests/fuzz/leak-* tests/fuzz/timeout-* tests/fuzz/oom-* 2>/dev/null && bad=1
exit $bad
