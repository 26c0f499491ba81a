#!/usr/bin/env bash
# Alerting rules (issue 11, item 6): packaging/prometheus/pullwatch.rules.yml is valid
# (promtool check rules), every alert fires on the series that should raise it and not
# on a quiet node (promtool test rules, Debian's prometheus package), every pullwatch
# metric the rules use is one the agent or the collector writes, and a weakened rule fails the tests.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

command -v promtool >/dev/null || pw_fail "promtool missing (Debian's prometheus package; tests/run installs it)"
SRC=$(cd "${PW_SOURCE_DIR:-$PW_LIB_DIR/../..}" && pwd)
P=$SRC/packaging/prometheus
W=$PW_WORK
promtool check rules "$P/pullwatch.rules.yml" >"$W/check.log" 2>&1 || pw_fail "promtool check rules" "$(cat "$W/check.log")"
pw_pass "promtool check rules: $(grep -o '[0-9]* rules found' "$W/check.log")"
(cd "$P" && promtool test rules pullwatch.rules.test.yml) >"$W/test.log" 2>&1 || pw_fail "promtool test rules" "$(tail -20 "$W/test.log")"
pw_pass "promtool test rules: every alert fires where it should and nowhere else"

for m in $(grep -o 'pullwatch_[a-z_]*' "$P/pullwatch.rules.yml" | sort -u); do
	case $m in
	pullwatch_fleet_*) f=fleet/serve.c ;;
	*) f=agent/metrics.c ;;
	esac
	grep -q "$m" "$SRC/$f" || pw_fail "the rules use $m, which $f does not write"
done
pw_pass "every metric the rules use is one the agent or the collector writes"

# the tests can fail: a rule that no longer sees a single digest_mismatch is caught
mkdir -p "$W/weak"
sed 's/kind="digest_mismatch"}\[10m\]) > 0/kind="digest_mismatch"}[10m]) > 5/' "$P/pullwatch.rules.yml" >"$W/weak/pullwatch.rules.yml"
cp "$P/pullwatch.rules.test.yml" "$W/weak/"
cmp -s "$P/pullwatch.rules.yml" "$W/weak/pullwatch.rules.yml" && pw_fail "the weakening edit did not apply"
if (cd "$W/weak" && promtool test rules pullwatch.rules.test.yml) >/dev/null 2>&1; then
	pw_fail "promtool test rules passed with a weakened digest_mismatch rule"
fi
pw_pass "a weakened rule fails promtool test rules"
pw_done
