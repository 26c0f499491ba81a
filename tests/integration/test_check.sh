#!/usr/bin/env bash
# pullwatch check for CI pipelines: a manifest's image: values judged offline, in the
# text, json and sarif formats, with the manifest's line numbers; invalid references
# named (escaped) with their line; exit 0 clean, 1 findings, 2 error. No daemons.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_require_pullwatch

D=sha256:$(printf 'a%.0s' {1..64})
M=$PW_WORK/web.yaml
# line numbers matter: the pinned image is on line 8, latest on 11, the invalid one on 15,
# the mutable tag on 17
cat >"$M" <<YAML
apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      initContainers:
        - name: init
          image: "busybox:latest@$D"
      containers:
        - name: web
          image: nginx:latest   # floating
          imagePullPolicy: Always
        - name: side
          image: 'ghcr.io/acme/side:1.2.3'
        - image: "evil\"ref\x01:1"
          name: bad
        - image: ghcr.io/acme/tool:main
YAML

# --- text ---------------------------------------------------------------------------
pw_assert_status 2 "an invalid reference in the manifest makes check exit 2" "$PULLWATCH" check --file "$M"
out=$(cat "$PW_LAST_OUT") err=$(cat "$PW_LAST_ERR")
pw_assert_match "$out" "web.yaml:8: ok    busybox:latest@$D" "the digest-pinned :latest is ok, on its line"
pw_assert_match "$out" "web.yaml:11: medium latest_tag: docker.io/library/nginx:latest" "latest_tag on line 11"
pw_assert_match "$out" "web.yaml:17: low    mutable_tag: " "mutable_tag on line 17"
pw_assert_eq "$(grep -c . "$PW_LAST_ERR")" 1 "one error line for the one invalid reference"
pw_assert_match "$err" 'web\.yaml:15: invalid reference "evil\\"ref\\x01:1": control character' \
	"the error names the file, the line and the escaped reference"
pw_assert_not_match "$err" $'\x01' "the raw control byte is not echoed"
pw_assert_eq "$(grep -c 'busybox.*latest_tag' "$PW_LAST_OUT" || true)" 0 "no latest_tag for the pinned reference"

# --- json ---------------------------------------------------------------------------
pw_assert_status 2 "json: exit 2 with the invalid reference" "$PULLWATCH" check --format json --file "$M"
got=$("$PW_PY" - "$PW_LAST_OUT" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
assert isinstance(a, list), "not one array"
print(" ".join("%s@%s" % (o["kind"], o.get("line")) for o in a))
bad = [o for o in a if o["kind"] == "invalid_reference"][0]
print(bad["reference"])
PY
)
pw_assert_eq "$(head -1 <<<"$got")" "latest_tag@11 invalid_reference@15 mutable_tag@17" \
	"json: one array with the findings and the error, in manifest order, with lines"
pw_assert_eq "$(tail -1 <<<"$got")" 'evil\"ref\x01:1' "json: the invalid reference is escaped"

# --- sarif --------------------------------------------------------------------------
pw_assert_status 2 "sarif: exit 2 with the invalid reference" "$PULLWATCH" check --format=sarif --file "$M"
got=$("$PW_PY" - "$PW_LAST_OUT" "$M" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["version"] == "2.1.0"
run, = doc["runs"]
rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
for need in ("latest_tag", "mutable_tag", "digest_mismatch", "invalid_reference"):
    assert need in rules, need
out = []
for r in run["results"]:
    assert rules[r["ruleIndex"]] == r["ruleId"]
    assert r["message"]["text"]
    loc, = r["locations"]
    pl = loc["physicalLocation"]
    assert pl["artifactLocation"]["uri"] == sys.argv[2].lstrip("/") or pl["artifactLocation"]["uri"] == sys.argv[2]
    out.append("%s:%s:%d" % (r["ruleId"], r["level"], pl["region"]["startLine"]))
print(" ".join(out))
PY
)
pw_assert_eq "$got" "latest_tag:warning:11 invalid_reference:error:15 mutable_tag:note:17" \
	"sarif: rules, levels and the manifest lines"

# --- exit codes -------------------------------------------------------------------
grep -v 'evil' "$M" >"$PW_WORK/findings.yaml"
pw_assert_status 1 "findings but no error: exit 1" "$PULLWATCH" check --file "$PW_WORK/findings.yaml"
printf '      image: "busybox:latest@%s"\n      image: ghcr.io/acme/side:1.2.3\n' "$D" >"$PW_WORK/clean.yaml"
pw_assert_status 0 "clean manifest (a pinned :latest included): exit 0" "$PULLWATCH" check --file "$PW_WORK/clean.yaml"
pw_assert_status 0 "a reference with a digest is pinned whatever its tag says" "$PULLWATCH" check "nginx:latest@$D"
pw_assert_status 0 "sarif with nothing to say: exit 0" "$PULLWATCH" check --format sarif "nginx:1.25@$D"
pw_assert_eq "$("$PW_PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["runs"][0]["results"]))' "$PW_LAST_OUT")" 0 \
	"sarif: an empty results array"

# --- stdin: line numbers, and a NUL byte hides nothing ------------------------------
pw_assert_status 2 "stdin: a line with a NUL byte is an error" "$PULLWATCH" check - < <(printf 'nginx:1.25\nnginx:1.25\0;rm -rf /\n# comment\n\nNginx\n')
err=$(cat "$PW_LAST_ERR")
pw_assert_match "$err" '<stdin>:2: invalid reference "nginx:1\.25\\x00;rm -rf /": contains a NUL byte' \
	"the NUL line is named by its number, the text after the NUL shown"
pw_assert_match "$err" '<stdin>:5: invalid reference "Nginx": repository name must be lowercase' \
	"line numbers count comments and blank lines"
pw_assert_eq "$(cat "$PW_LAST_OUT")" "ok    nginx:1.25" "stdin's valid line is judged as before"
pw_assert_status 2 "stdin manifests work too" "$PULLWATCH" check --format json - <"$M"
pw_assert_match "$(cat "$PW_LAST_OUT")" '"file": "-"' "stdin is named -"

# --- bounded: a flood of references is an error, not memory ------------------------
pw_assert_status 2 "more than 10000 references: exit 2" "$PULLWATCH" check - < <(yes nginx:1.25 | head -n 10001)
pw_assert_match "$(cat "$PW_LAST_ERR")" 'more than 10000 references, the rest not judged' "the cap is named"
pw_assert_eq "$(grep -c '^ok ' "$PW_LAST_OUT")" 10000 "the first 10000 are judged"

# --- usage errors -------------------------------------------------------------------
pw_assert_status 2 "an unknown format" "$PULLWATCH" check --format xml nginx
pw_assert_match "$(cat "$PW_LAST_ERR")" 'must be text, json or sarif, not "xml"' "the bad format is named"
pw_assert_status 2 "a missing file" "$PULLWATCH" check --file "$PW_WORK/nope.yaml"
pw_assert_match "$(cat "$PW_LAST_ERR")" 'cannot open ".*nope\.yaml": No such file' "the missing file is named"
pw_done
