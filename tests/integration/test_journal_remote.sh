#!/usr/bin/env bash
# journald's own fleet path (issue 11, item 6): systemd-journal-upload on the node sends
# the journal to systemd-journal-remote on a "central" host (Debian's
# systemd-journal-remote); pullwatch's entries arrive with every field intact, and
# `journalctl -x` on the receiving side, with pullwatch's catalog installed there (the catalog of
# this machine, standing in for the central host),
# explains them.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

JR=/lib/systemd/systemd-journal-remote
JU=/lib/systemd/systemd-journal-upload
[[ -x $JR && -x $JU ]] || pw_fail "systemd-journal-remote missing (Debian's systemd-journal-remote; tests/run installs it)"
pw_start_all
SRC=$(cd "${PW_SOURCE_DIR:-$PW_LIB_DIR/../..}" && pwd)
W=$PW_WORK
R=$W/central # the receiving host's journal directory
mkdir -p "$R"
# The receiving host's catalog is this machine's: journalctl -x reads only
# /var/lib/systemd/catalog/database (no --root for it in systemd 252). Installed for the
# test unless already there (the .deb, an admin), and removed again.
CAT=/usr/lib/systemd/catalog/pullwatch.catalog
CAT_OURS=0
if [[ ! -e $CAT ]]; then
	install -m644 "$SRC/packaging/pullwatch.catalog" "$CAT"
	CAT_OURS=1
fi
journalctl --update-catalog || pw_fail "journalctl --update-catalog failed"
jr_cleanup() { if [[ $CAT_OURS == 1 ]]; then rm -f "$CAT"; journalctl --update-catalog || true; fi; }
trap 'rc=$?; jr_cleanup; (exit $rc); pw_cleanup' EXIT

PORT=$(pw_free_port)
"$JR" --listen-http="127.0.0.1:$PORT" --output="$R/" >"$W/remote.log" 2>&1 &
PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $!"
pw_poll 10 eval "ss -ltn | grep -q 127.0.0.1:$PORT" || pw_fail "journal-remote did not listen" "$(tail -3 "$W/remote.log")"

# everything from here on is uploaded
CURSOR=$(journalctl -n 1 -q --show-cursor -o cat | sed -n 's/^-- cursor: //p')
[[ -n $CURSOR ]] || pw_fail "no cursor in the local journal"
pw_start_agent "$(pw_node_name)"
D1=$(pw_build_image jr 1.0 "" "jr-1-$RANDOM")
pw_pull default "$PW_REGISTRY/jr:1.0"
pw_wait_record pull "$PW_REGISTRY/jr:1.0" "$D1" default
pw_ctr images rm "$PW_REGISTRY/jr:1.0" >/dev/null 2>&1 || true
# the tag moves: a tag_moved entry carries the most fields (previous digest, message with both)
D2=$(pw_build_image jr 1.0 "" "jr-2-$RANDOM")
pw_pull default "$PW_REGISTRY/jr:1.0"
pw_wait_journal "$PW_NODE" tag_moved 1 20 "IMAGE_DIGEST=$D2"
pw_stop_agent

"$JU" --url="http://127.0.0.1:$PORT" --after-cursor="$CURSOR" --follow=no >"$W/upload.log" 2>&1 ||
	pw_fail "systemd-journal-upload failed" "$(tail -5 "$W/upload.log")"
pw_pass "systemd-journal-upload sent the node's journal"

local_json() { journalctl -q -o json --no-pager SYSLOG_IDENTIFIER=pullwatch "NODE_NAME=$PW_NODE"; }
remote_json() { journalctl --directory="$R" -q -o json --no-pager SYSLOG_IDENTIFIER=pullwatch "NODE_NAME=$PW_NODE"; }
n_local=$(local_json | wc -l)
pw_poll 10 eval '[[ $(remote_json | wc -l) -ge $n_local ]]' ||
	pw_fail "the central journal holds $(remote_json | wc -l) of the node's $n_local pullwatch entries" "$(tail -3 "$W/remote.log")"
pw_pass "all $n_local pullwatch entries of the node arrived"

# every field intact: the same entries, field by field (the cursor names a place in a
# journal file, so it is the one field that differs by design)
local_json >"$W/local.json"
remote_json >"$W/remote.json"
"$PW_PY" - "$W/local.json" "$W/remote.json" <<'EOF' || pw_fail "fields differ between the node and the central journal" "$(cat "$W/diff.txt" 2>/dev/null)"
import json, sys
load = lambda p: {e["PULLWATCH_ID"] + e["__REALTIME_TIMESTAMP"]: {k: v for k, v in e.items() if k != "__CURSOR"}
                  for e in map(json.loads, open(p))}
a, b = load(sys.argv[1]), load(sys.argv[2])
bad = []
for k, e in a.items():
    if k not in b:
        bad.append(f"missing centrally: {e.get('MESSAGE')}")
    elif e != b[k]:
        bad.append(f"{e.get('PULLWATCH_KIND')}: " + ", ".join(f for f in sorted(set(e) | set(b[k])) if e.get(f) != b[k].get(f)))
if bad:
    print("\n".join(bad))
sys.exit(1 if bad else 0)
EOF
fields=$(head -1 "$W/remote.json" | "$PW_PY" -c 'import json,sys; print(len(json.load(sys.stdin)))')
pw_pass "every field of every entry is intact ($fields fields in the first)"
pw_assert_match "$(remote_json | "$PW_PY" "$PW_LIB_DIR/jsonl.py" get - IMAGE_PREVIOUS_DIGEST PULLWATCH_KIND=tag_moved)" "^$D1" \
	"the central tag_moved entry names the previous digest"

# journalctl -x on the receiving side explains them from the catalog
X=$(journalctl --directory="$R" -x -q --no-pager PULLWATCH_KIND=tag_moved "NODE_NAME=$PW_NODE")
pw_assert_match "$X" "Subject: Tag $PW_REGISTRY/jr:1.0 moved to a new digest" "central journalctl -x: the catalog's subject, fields substituted"
pw_assert_match "$X" "someone pushed a different image to the same" "central journalctl -x: the catalog's explanation"
pw_assert_match "$X" "as $D1 and now" "central journalctl -x: the previous digest substituted from the entry"
pw_done
