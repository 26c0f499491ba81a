#!/usr/bin/env bash
# Issue 3: the pins file (reference → digest, as a CI job or a ConfigMap writes it) is
# reloaded without a restart: when the file is replaced the way a ConfigMap update does
# it (a new file renamed over the old one), and on SIGHUP. A bad file keeps the pins
# loaded before, with one clear line.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_start_all

R=$PW_REGISTRY
SHA=3f2c1ab9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3
d_one=$(pw_build_image one 1.0.0 "$SHA" one-seed)
d_two=$(pw_build_image two 1.0.0 "$SHA" two-seed)
d_three=$(pw_build_image three 1.0.0 "$SHA" three-seed)
wrong=sha256:$(printf 'not what was pulled' | sha256sum | cut -d' ' -f1)

PINDIR=$PW_WORK/pins
mkdir -p "$PINDIR"
PINS=$PINDIR/pins.json
printf '{ "%s": "%s" }\n' "$R/one:1.0.0" "$d_one" >"$PINS"

NODE=$(pw_node_name)
pw_start_agent "$NODE" --pins "$PINS"
pw_pull default "$R/one:1.0.0"
pw_wait_record pull "$R/one:1.0.0" "$d_one" default
pw_assert_eq "$(pw_findings_count "$R/one:1.0.0")" 0 "a pin that agrees: no finding"

# --- replaced like a ConfigMap: write a new file, rename it over the old one ---------
printf '{ "%s": "%s", "%s": "%s" }\n' "$R/one:1.0.0" "$d_one" "$R/two:1.0.0" "$wrong" >"$PINDIR/.pins.new"
mv "$PINDIR/.pins.new" "$PINS"
pw_poll 10 grep -q "loaded 2 pins from $PINS (file changed)" "$PW_AGENT_ERR" ||
	pw_fail "the agent did not reload the replaced pins file" "$(tail -n 5 "$PW_AGENT_ERR")"
pw_pass "a replaced pins file is reloaded"
pw_pull default "$R/two:1.0.0"
pw_wait_record digest_mismatch "$R/two:1.0.0" "$d_two" default 20 "IMAGE_EXPECTED_DIGEST=$wrong"

# --- a broken file keeps what was loaded ---------------------------------------------
printf '{ "%s": "not-a-digest" }\n' "$R/three:1.0.0" >"$PINDIR/.pins.new"
mv "$PINDIR/.pins.new" "$PINS"
pw_poll 10 grep -q "cannot reload pins (file changed).*keeping the 2 pins loaded before" "$PW_AGENT_ERR" ||
	pw_fail "no clear line for a bad pins file" "$(tail -n 5 "$PW_AGENT_ERR")"
pw_pass "a bad pins file keeps the pins loaded before, with one clear line"
pw_assert_cmd "the agent survives a bad pins file" pw_agent_alive

# --- SIGHUP ---------------------------------------------------------------------------
printf '{ "%s": "%s" }\n' "$R/three:1.0.0" "$wrong" >"$PINDIR/.pins.new"
mv "$PINDIR/.pins.new" "$PINS"
pw_poll 10 grep -q "loaded 1 pins from $PINS (file changed)" "$PW_AGENT_ERR" || true
kill -HUP "$PW_AGENT_PID"
pw_poll 10 grep -q "loaded 1 pins from $PINS (SIGHUP)" "$PW_AGENT_ERR" ||
	pw_fail "SIGHUP did not reload the pins" "$(tail -n 5 "$PW_AGENT_ERR")"
pw_pass "SIGHUP reloads the pins"
pw_pull default "$R/three:1.0.0"
pw_wait_record digest_mismatch "$R/three:1.0.0" "$d_three" default 20 "IMAGE_EXPECTED_DIGEST=$wrong"

pw_stop_agent
pw_done
