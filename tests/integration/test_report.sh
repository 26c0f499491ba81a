#!/usr/bin/env bash
# The fleet report end to end, on the fixture store (report_fixture.c) of both engines:
#   - golden JSON, the same file for SQLite and PostgreSQL (tests/integration/report_golden.json,
#     with --workload shop/web: every section filled);
#   - the HTML opened in headless Chromium: a screenshot checked non-blank, and the DOM holding
#     the divergent tag, its nodes and the numbers of the JSON; the injection fixture as text;
#     the style allowed by the hash in its Content-Security-Policy;
#   - --image, CSV, --fail-under exit codes, bad options;
#   - the same live from `serve` (GET /api/v1/report, /report with its CSP header, a token's scope).
# PW_REPORT_UPDATE_GOLDEN=1 rewrites the golden file from SQLite (review the diff!).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"

BIN=$(dirname "${PULLWATCH:-}")
FLEET=${PULLWATCH_FLEET:-$BIN/pullwatch-fleet}
FIXTURE=${PW_REPORT_FIXTURE:-$BIN/report_fixture}
[[ -x $FLEET && -x $FIXTURE ]] || { pw_note "no $FLEET or $FIXTURE: skipping"; exit 77; }
GOLDEN=$PW_LIB_DIR/report_golden.json
NOW=2026-11-30T05:00:00Z
W=$PW_WORK

report() { "$FLEET" report --now "$NOW" "$@"; }

# ---- SQLite: golden JSON
DB=sqlite:$W/fixture.db
"$FIXTURE" "$DB" || pw_fail "fixture on SQLite"
report --db "$DB" --workload shop/web --format json -o "$W/lite.json" || pw_fail "report --format json on SQLite"
if [[ ${PW_REPORT_UPDATE_GOLDEN:-0} == 1 ]]; then
	cp "$W/lite.json" "$GOLDEN"
	pw_note "golden file rewritten: $GOLDEN"
fi
diff -u "$GOLDEN" "$W/lite.json" >&2 || pw_fail "SQLite JSON differs from the golden file"
pw_pass "golden JSON on SQLite"

# ---- the numbers the JSON holds, for the HTML checks below
eval "$("$PW_PY" - "$W/lite.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
h = r["headline"]
print("J_NODES=%d J_STALE=%d J_IMAGES=%d J_PERCENT=%.1f" % (h["nodes"], h["nodes_stale"], h["images"], h["percent"]))
web = [d for d in r["divergence"] if d["ref"] == "registry.example/shop/web:latest"][0]
print("J_WEB_DIGESTS=%d" % len(web["digests"]))
print("J_WEB_NODES='%s'" % " ".join(n for g in web["digests"] for n in g["nodes"]))
shop = [c for c in r["compliance"] if c["cluster"] == "prod" and c["namespace"] == "shop"][0]
print("J_SHOP_PERCENT=%.1f" % shop["percent"])
print("J_TREND_LAST=%.1f" % r["trend"][-1]["percent"])
EOF
)"
pw_assert_eq "$J_WEB_DIGESTS" 2 "web:latest diverges over two digests"
pw_assert_eq "$J_WEB_NODES" "node-a node-b node-c" "the nodes of web:latest's digests"

# ---- HTML in headless Chromium
report --db "$DB" --format html -o "$W/report.html" || pw_fail "report --format html"
size=$(stat -c %s "$W/report.html")
pw_assert_le "$size" 200000 "the HTML report stays small ($size bytes)"
# the one <style> is allowed by the hash its policy names (a stale hash would unstyle the page)
style_hash=$("$PW_PY" -c '
import base64, hashlib, re, sys
s = open(sys.argv[1]).read()
print(base64.b64encode(hashlib.sha256(re.search(r"<style>(.*?)</style>", s, re.S).group(1).encode()).digest()).decode())' "$W/report.html")
grep -qF "style-src 'sha256-$style_hash'" "$W/report.html" || pw_fail "the CSP does not allow the page's own <style> (hash $style_hash)"
pw_pass "CSP hash matches the style"

if ! command -v chromium >/dev/null; then
	pw_note "chromium not installed: the browser checks are skipped"
else
	chrome() {
		local profile
		profile=$(mktemp -d "$W/chromium.XXXXXX")
		timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
			--disable-background-networking --disable-component-update --disable-sync \
			--user-data-dir="$profile" --window-size=1280,2400 "$@" 2>>"$W/chromium.log"
	}
	chrome --screenshot="$W/report.png" "file://$W/report.html" >/dev/null || pw_fail "chromium --screenshot" "$(tail -5 "$W/chromium.log")"
	read -r pw ph ink colours < <("$PW_PY" "$PW_LIB_DIR/pngstat.py" "$W/report.png") || pw_fail "screenshot unreadable"
	pw_note "screenshot ${pw}x${ph}, ink $ink, $colours colours: $W/report.png"
	pw_assert_eq "$pw" 1280 "screenshot width"
	awk -v i="$ink" 'BEGIN { exit !(i > 0.02) }' || pw_fail "screenshot is blank (ink $ink)"
	pw_assert_ge "$colours" 8 "the screenshot has the charts' colours"
	[[ -n ${PW_REPORT_SCREENSHOT:-} ]] && cp "$W/report.png" "$PW_REPORT_SCREENSHOT"
	pw_pass "screenshot not blank"

	chrome --dump-dom "file://$W/report.html" >"$W/dom.html" || pw_fail "chromium --dump-dom"
	dom=$(cat "$W/dom.html")
	pw_assert_match "$dom" '<h3>registry\.example/shop/web:latest</h3>' "the DOM names the divergent tag"
	for n in node-a node-b node-c; do
		pw_assert_match "$dom" "<td>([^<]*, )?$n(, [^<]*)?</td>" "the DOM lists $n under web:latest"
	done
	pw_assert_match "$dom" 'id="overall">'"${J_PERCENT}"'&nbsp;%' "the DOM holds the overall compliance ($J_PERCENT %)"
	pw_assert_match "$dom" "Nodes reporting</th><td class=\"n big\">$J_NODES<" "the DOM holds the node count"
	pw_assert_match "$dom" "twice the interval\\)</th><td class=\"n big bad\">$J_STALE<" "the DOM holds the stale count"
	pw_assert_match "$dom" "<td>shop</td>(<td class=\"n\">[0-9,]*</td>){7}<td class=\"n\">${J_SHOP_PERCENT}&nbsp;%" "the DOM holds prod/shop's compliance"
	pw_assert_match "$dom" "${J_TREND_LAST}&nbsp;%" "the DOM holds the trend's last day"
	# the injection fixture renders as text: no element came out of a record
	pw_assert_eq "$(grep -c '<script' "$W/dom.html" || true)" 0 "no <script> element in the DOM"
	pw_assert_not_match "$dom" '<(b|i)>' "no <b>/<i> element from the injected names"
	pw_assert_match "$dom" 'evil\.example/a.&gt;&lt;script&gt;alert\(1\)&lt;/script&gt;:1&lt;/title&gt;&lt;b&gt;x&amp;amp;y' "the injected reference shows as text"
	pw_assert_match "$dom" 'x&amp;y&#39;&lt;i&gt;/&lt;/title&gt;&lt;script&gt;alert\(2\)&lt;/script&gt;|x&amp;y.&lt;i&gt;/&lt;/title&gt;&lt;script&gt;alert\(2\)&lt;/script&gt;' "the injected pod shows as text"
	pw_pass "DOM holds the divergent tag, its nodes, the JSON's numbers; injection is text"
fi

# ---- --image: now and before, per node
report --db "$DB" --image registry.example/shop/web --format json -o "$W/image.json" || pw_fail "report --image"
got=$("$PW_PY" -c '
import json, sys
for p in json.load(open(sys.argv[1]))["placements"]:
    prev = p["previous"]["digest"][7:11] if p["previous"] else "-"
    print(p["node"], p["digest"][7:11], prev)' "$W/image.json" | tr '\n' ';')
# node-a and node-c from their pods' history, node-b (no pod) from its pull records
pw_assert_eq "$got" "node-a 1111 0000;node-b 1111 0000;node-c 2222 1111;" "--image: digest now and before on each node"

# ---- CSV: one row per image per node, formula cells defused
report --db "$DB" --format csv -o "$W/report.csv" || pw_fail "report --format csv"
pw_assert_eq "$(head -1 "$W/report.csv" | cut -d, -f1-4)" "cluster,node,namespace,ref" "CSV header"
pw_assert_eq "$(($(wc -l <"$W/report.csv") - 1))" "$J_IMAGES" "one CSV row per image per node"
"$PW_PY" -c 'import csv, sys; rows = list(csv.DictReader(open(sys.argv[1]))); assert any(r["ref"].startswith("evil.example/a\"") for r in rows)' "$W/report.csv" ||
	pw_fail "CSV does not parse back"

# ---- -o to a path that is not a regular file (a FIFO here; /dev/null as root alike): written
# through, not replaced by a rename (the FIFO must still be one, and its reader gets the CSV)
mkfifo "$W/out.fifo"
cat "$W/out.fifo" >"$W/fifo.csv" &
FIFO_READER=$!
report --db "$DB" --format csv -o "$W/out.fifo" || pw_fail "report -o FIFO"
if [[ ! -p $W/out.fifo ]]; then
	kill "$FIFO_READER" 2>/dev/null || true
	pw_fail "report -o replaced the FIFO with a file"
fi
wait "$FIFO_READER"
pw_assert_eq "$(cmp -s "$W/fifo.csv" "$W/report.csv" && echo same)" "same" "the FIFO's reader got the report"

# ---- --fail-under, and errors
pw_assert_status 0 "--fail-under 10 passes" report --db "$DB" --fail-under 10 -o "$W/x.json"
pw_assert_status 1 "--fail-under 90 fails" report --db "$DB" --fail-under 90 -o "$W/x.json"
pw_assert_status 1 "--fail-under with no image matching fails" report --db "$DB" --cluster nope --fail-under 1 -o "$W/x.json"
pw_assert_status 2 "a bad duration is an error" report --db "$DB" --since 3x
pw_assert_match "$(cat "$PW_LAST_ERR")" "since" "the error names the option"
pw_assert_status 2 "a missing database is an error" report --db "sqlite:$W/nonexistent/dir/x.db"
pw_assert_status 2 "a bad workload is an error" report --db "$DB" --workload noslash

# ---- live from serve: GET /api/v1/report and /report, the same numbers as the command
serve_check() { # TOKENS-FILE or ""
	local port args=(--db "$DB") pid
	port=$(pw_free_port)
	[[ -n $1 ]] && args+=(--tokens "$1")
	"$FLEET" serve --listen "127.0.0.1:$port" "${args[@]}" >>"$W/serve.log" 2>&1 &
	pid=$!
	PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $pid"
	pw_poll 20 curl -sf "http://127.0.0.1:$port/healthz" || pw_fail "serve did not start" "$(tail -5 "$W/serve.log")"
	SERVE=http://127.0.0.1:$port
}
serve_check ""
curl -sf "$SERVE/api/v1/report?cluster=prod&since=30d" -o "$W/http.json" || pw_fail "GET /api/v1/report"
report --db "$DB" --cluster prod --since 30d -o "$W/cli.json"
same=$("$PW_PY" -c '
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
# "now" differs (the server uses the clock): compare what does not depend on it
print(all(a[k] == b[k] for k in ("divergence", "compliance", "offenders")) and a["filter"]["cluster"] == "prod")' "$W/http.json" "$W/cli.json")
pw_assert_eq "$same" True "GET /api/v1/report?cluster=prod holds what report --cluster prod does"
headers=$(curl -sf -D - -o "$W/http.html" "$SERVE/report?namespace=shop") || pw_fail "GET /report"
pw_assert_match "$headers" "Content-Security-Policy: default-src 'none'; style-src 'sha256-$style_hash'" "GET /report carries the CSP"
pw_assert_match "$(cat "$W/http.html")" 'href="/api/v1/report\?namespace=shop"' "the HTML links to its JSON"
pw_assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "$SERVE/api/v1/report?since=soon")" 400 "a bad parameter answers 400"
pw_assert_eq "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$SERVE/report")" 405 "POST /report answers 405"
# with tokens, a credential reads its own cluster only
printf 'tok-prod prod\n' >"$W/tokens"
serve_check "$W/tokens"
pw_assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "$SERVE/api/v1/report")" 401 "no token, no report"
curl -sf -H "Authorization: Bearer tok-prod" "$SERVE/api/v1/report" -o "$W/scoped.json" || pw_fail "scoped report"
pw_assert_eq "$("$PW_PY" -c 'import json, sys; r = json.load(open(sys.argv[1])); print(sorted({c["cluster"] for c in r["compliance"]}))' "$W/scoped.json")" "['prod']" "a prod token sees prod only"
pw_assert_eq "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer tok-prod" "$SERVE/api/v1/report?cluster=staging")" 403 "a prod token cannot read staging"

# ---- PostgreSQL: the same golden JSON
if pw_pg_available; then
	pw_pg_start
	"$FIXTURE" "$PW_PG_URL" || pw_fail "fixture on PostgreSQL"
	report --db "$PW_PG_URL" --workload shop/web --format json -o "$W/pg.json" || pw_fail "report on PostgreSQL"
	diff -u "$GOLDEN" "$W/pg.json" >&2 || pw_fail "PostgreSQL JSON differs from the golden file"
	pw_pass "golden JSON on PostgreSQL"
else
	pw_note "PostgreSQL not available: its golden check is skipped"
fi
pw_done
