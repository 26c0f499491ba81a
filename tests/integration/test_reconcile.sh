#!/usr/bin/env bash
# Issue 2: containerd never replays events, so the agent re-lists. A pull made
# while the agent was stopped is reported after it starts; a pull made while
# containerd was restarting is reported after it comes back, and the agent keeps
# running throughout. `pullwatch scan` sees the same images and findings, exits
# 1 with findings and 0 on a clean namespace.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_start_all

R=$PW_REGISTRY
d_v1=$(pw_build_image base 2.0.1 0123456789abcdef0123456789abcdef01234567 base-seed)
d_off=$(pw_build_image offline latest "" offline-seed)
d_rst=$(pw_build_image restart latest "" restart-seed)
d_clean=$(pw_build_image clean 3.1.0 89abcdef0123456789abcdef0123456789abcdef clean-seed)

NODE=$(pw_node_name)
pw_start_agent "$NODE"
pw_pull default "$R/base:2.0.1"
pw_wait_record pull "$R/base:2.0.1" "$d_v1" default

# --- a pull while the agent is stopped -----------------------------------------
pw_stop_agent
pw_pull default "$R/offline:latest"
pw_start_agent "$NODE"
pw_wait_record latest_tag "$R/offline:latest" "$d_off" default
pw_wait_record pull "$R/offline:latest" "$d_off" default

# --- a pull while containerd restarts -------------------------------------------
pw_stop_containerd
pw_assert_cmd "the agent survives containerd going away" pw_agent_alive
pw_start_containerd
pw_pull default "$R/restart:latest" # immediately: the agent may not have reconnected yet
pw_assert_cmd "the agent is still running after containerd came back" pw_agent_alive
pw_wait_record latest_tag "$R/restart:latest" "$d_rst" default 60
pw_wait_record pull "$R/restart:latest" "$d_rst" default 20
# and it is subscribed again, not only re-listing: a new pull arrives as an event
pw_sync_agent default
pw_assert_cmd "the agent is running after the restart scenario" pw_agent_alive

# no finding was raised twice by the reconnect's re-list
dups=$(pw_findings_list | uniq -d)
pw_assert_eq "$dups" "" "no duplicate finding (kind, ref, digest) on stdout after restarts"

# --- scan sees the same -----------------------------------------------------------
pw_assert_status 1 "scan exits 1 when there are findings" \
	"$PULLWATCH" scan --address "$PW_SOCK" --format json
scan_json=$PW_WORK/scan.json
cp "$PW_LAST_OUT" "$scan_json"
"$PW_PY" - "$scan_json" <<'EOF' || pw_fail "scan --format json is not a JSON array of objects" "$(head -c 400 "$scan_json")"
import json, sys
a = json.load(open(sys.argv[1]))
assert isinstance(a, list) and all(isinstance(o, dict) for o in a), a
EOF
pw_pass "scan --format json prints a JSON array"
scan_jsonl=$PW_WORK/scan.jsonl
"$PW_PY" -c 'import json,sys; [print(json.dumps(o)) for o in json.load(open(sys.argv[1]))]' "$scan_json" >"$scan_jsonl"
scan_latest=$(paste -d' ' <(pw_json_field "$scan_jsonl" namespace kind=latest_tag) \
	<(pw_json_field "$scan_jsonl" image.ref kind=latest_tag) <(pw_json_field "$scan_jsonl" image.digest kind=latest_tag) | sort -u)
for want in "default $R/offline:latest $d_off" "default $R/restart:latest $d_rst"; do
	pw_assert_cmd "scan reports latest_tag: $want" grep -qxF "$want" <<<"$scan_latest"
done
# every latest_tag the agent raised is in the scan, with the same digest, and no other
agent_latest=$(paste -d' ' <(pw_journal_get "$NODE" latest_tag CONTAINERD_NAMESPACE) \
	<(pw_journal_get "$NODE" latest_tag IMAGE_REF) <(pw_journal_get "$NODE" latest_tag IMAGE_DIGEST) | sort -u)
pw_assert_eq "$scan_latest" "$agent_latest" "scan's latest_tag findings equal the agent's"
pw_assert_eq "$(pw_json_count "$scan_jsonl" "image.ref=$R/base:2.0.1")" 0 "scan raises nothing for the versioned image"

pw_assert_status 1 "scan --format table exits 1 with findings" "$PULLWATCH" scan --address "$PW_SOCK" --format table
pw_assert_match "$(cat "$PW_LAST_OUT")" "$R/offline:latest" "the table names the :latest image"
pw_assert_status 1 "scan --namespace default exits 1" "$PULLWATCH" scan --address "$PW_SOCK" --namespace default --format json

# a clean namespace
pw_pull clean "$R/clean:3.1.0"
pw_assert_eq "$(pw_image_digest clean "$R/clean:3.1.0")" "$d_clean" "the clean namespace holds the versioned image"
pw_assert_status 0 "scan of a clean namespace exits 0" "$PULLWATCH" scan --address "$PW_SOCK" --namespace clean --format json
pw_assert_eq "$("$PW_PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$PW_LAST_OUT")" 0 \
	"scan of a clean namespace prints an empty array"
pw_assert_status 0 "scan table of a clean namespace exits 0" "$PULLWATCH" scan --address "$PW_SOCK" --namespace clean

pw_assert_stdout_jsonl
pw_stop_agent

# --- report: the ledger the agent kept, with compliance, for fleet reports ----------
pw_assert_status 1 "report exits 1 when a reference is not compliant" "$PULLWATCH" report --state-dir "$PW_STATE_DIR"
report=$PW_WORK/report.json
cp "$PW_LAST_OUT" "$report"
"$PW_PY" - "$report" "$R" "$d_v1" "$d_off" <<'EOF2' || pw_fail "report content" "$(head -c 600 "$report")"
import json, sys
doc = json.load(open(sys.argv[1]))
R, d_v1, d_off = sys.argv[2:5]
imgs = {(i["namespace"], i["reference"]): i for i in doc["images"]}
base = imgs[("default", R + "/base:2.0.1")]
off = imgs[("default", R + "/offline:latest")]
assert base["digest"] == d_v1 and base["compliant"] is True and base["findings"] == [], base
assert off["digest"] == d_off and off["compliant"] is False and "latest_tag" in off["findings"], off
assert doc["references"] == len(doc["images"]) and doc["compliant"] == sum(i["compliant"] for i in doc["images"]), doc
assert doc["compliant"] < doc["references"]
EOF2
pw_pass "report lists the ledger's references with digests and compliance"
pw_assert_status 0 "status reads the counters the agent left in the state dir" "$PULLWATCH" status --state-dir "$PW_STATE_DIR"
pw_assert_match "$(cat "$PW_LAST_OUT")" "pullwatch_containerd_connected" "status prints the Prometheus counters"
pw_done
