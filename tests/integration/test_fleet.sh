#!/usr/bin/env bash
# Issue 9: the central collector, pullwatch-fleet serve, against the real agent on two
# private containerds (two nodes), on SQLite and on PostgreSQL 15 (a private cluster
# started by pg.sh). For each engine:
#   1. web:latest pulled on node A, re-pushed, pulled on node B: the stored state holds
#      both digests with their nodes (and each node's complete inventory);
#   2. the collector is SIGKILLed mid-stream (a tagging burst on both nodes) and
#      restarted: every record the agents printed is stored exactly once
#      (on PostgreSQL the two agents ship to two collectors on one database at once);
#   3. bad input, each with its status and the database unchanged: a malformed line
#      (400 naming the line), an unknown schema (400), a body over the limit (413), a
#      gzip body inflating past it (413), no token or a wrong one (401, no details);
#   4. a database unreachable at start: one line naming it, exit 1;
#   5. the database lost while running (PostgreSQL stopped; SQLite locked by another
#      writer): 503 with Retry-After, then ingest resumes; a full queue: 503;
#   6. SIGTERM with a batch in flight: it is answered 200 and stored, exit 0.
# Then, once: mutual TLS (a client certificate from another CA fails the handshake; the
# right one is accepted and its CN is the cluster), and the agent links none of the
# collector's libraries.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
pw_require_pullwatch
FLEET=${PULLWATCH_FLEET:-$(dirname "$PULLWATCH")/pullwatch-fleet}
[[ -x $FLEET ]] || { echo "test_fleet: $FLEET not built (libmicrohttpd, sqlite3, libpq missing?)"; exit 77; }
pw_available_pg=0
pw_pg_available && pw_available_pg=1
pw_start_all

W=$PW_WORK
R=$PW_REGISTRY
ENGINES=(sqlite)
if ((pw_available_pg)); then
	pw_pg_start
	ENGINES+=(pg)
else
	pw_note "PostgreSQL 15 not available: SQLite only"
fi
[[ -n ${PW_FLEET_ENGINES:-} ]] && read -r -a ENGINES <<<"$PW_FLEET_ENGINES" # e.g. "pg" while debugging

# ------------------------------------------------------- second containerd ----
CTD2_DIR=$W/ctd2
mkdir -p "$CTD2_DIR/root" "$CTD2_DIR/state"
sed -e "s|$W/containerd/root|$CTD2_DIR/root|; s|$W/containerd/state|$CTD2_DIR/state|" \
	-e "s|$W/containerd.sock|$CTD2_DIR/c.sock|; s|$W/containerd-debug.sock|$CTD2_DIR/d.sock|" \
	"$W/containerd/config.toml" >"$CTD2_DIR/config.toml"
containerd --config "$CTD2_DIR/config.toml" >>"$W/containerd2.log" 2>&1 &
PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $!"
SOCK_B=$CTD2_DIR/c.sock
pw_poll 30 ctr -a "$SOCK_B" version || pw_fail "second containerd did not answer" "$(tail -5 "$W/containerd2.log")"
ctr_a() { ctr -a "$PW_SOCK" "$@"; }
ctr_b() { ctr -a "$SOCK_B" "$@"; }

# ------------------------------------------------------------- helpers ----
ENGINE=
DB_URL=
DB_FILE=
dbq() { # SQL — rows as a|b|c lines
	if [[ $ENGINE == sqlite ]]; then
		sqlite3 -batch -noheader -cmd ".timeout 5000" "$DB_FILE" "$1" # the collector may hold a lock a moment
	else
		PGCONNECT_TIMEOUT=5 psql -X -A -t -q -d "$DB_URL" -c "$1"
	fi
}
db_fingerprint() { # what must not change on a rejected request
	dbq "SELECT (SELECT COUNT(*) FROM records) || '/' || (SELECT COUNT(*) FROM node_images) || '/' ||
	     (SELECT COUNT(*) FROM nodes) || '/' || (SELECT COUNT(*) FROM inventory_parts) || '/' ||
	     (SELECT COALESCE(MAX(last_seen_usec), 0) FROM nodes)"
}

# collector NAME PORT [ARGS...] — start pullwatch-fleet serve; pid in COLL_<NAME>
collector() {
	local name=$1 port=$2
	shift 2
	: >"$W/fleet-$name.err"
	"$FLEET" serve --listen "127.0.0.1:$port" --db "$DB_URL" "$@" >>"$W/fleet-$name.out" 2>>"$W/fleet-$name.err" &
	local pid=$!
	printf -v "COLL_$name" '%s' "$pid"
	PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $pid"
	pw_poll 15 pw_http_ok "http://127.0.0.1:$port/healthz" ||
		pw_fail "collector $name did not answer /healthz" "$(tail -5 "$W/fleet-$name.err")"
}
collector_stop() { # NAME — SIGTERM, require exit 0
	local var=COLL_$1
	pw_kill_wait "${!var}" 35
	pw_assert_eq "$PW_KILL_STATUS" 0 "$ENGINE: collector $1 exits 0 on SIGTERM"
}

# http METHOD URL [curl args...] — sets HTTP_CODE, HTTP_BODY, HTTP_HEADERS
http() {
	local method=$1 url=$2
	shift 2
	HTTP_CODE=$(curl -s -o "$W/http.body" -D "$W/http.headers" -w '%{http_code}' -X "$method" "$@" "$url") || true
	HTTP_BODY=$(cat "$W/http.body" 2>/dev/null || true)
	HTTP_HEADERS=$(tr -d '\r' <"$W/http.headers" 2>/dev/null || true)
}

# agent NAME SOCK NODE PORT TOKENFILE — a pullwatch run with its own state; pid in AGENT_<NAME>
agent() {
	local name=$1 sock=$2 node=$3 port=$4 tok=$5
	mkdir -p "$W/$ENGINE-$name"
	"$PULLWATCH" run --address "$sock" --state-dir "$W/$ENGINE-$name" --node "$node" --stdout --namespace web \
		--endpoint "http://127.0.0.1:$port/v1/records" --endpoint-token-file "$tok" --batch-max-age 100ms \
		--batch-max-records 50 --retry-max-backoff 1s >>"$W/$ENGINE-$name.out" 2>>"$W/$ENGINE-$name.err" </dev/null &
	local pid=$!
	printf -v "AGENT_$name" '%s' "$pid"
	PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $pid"
	pw_poll 20 grep -q 'subscribed to containerd events' "$W/$ENGINE-$name.err" ||
		pw_fail "agent $name did not subscribe" "$(tail -5 "$W/$ENGINE-$name.err")"
}
agent_stop() {
	local var=AGENT_$1
	pw_kill_wait "${!var}" 10
	pw_assert_eq "$PW_KILL_STATUS" 0 "$ENGINE: agent $1 exits 0 on SIGTERM"
}

# every id the agents printed (pull and finding records), unique, sorted
printed_ids() { cat "$W/$ENGINE-a.out" "$W/$ENGINE-b.out" | "$PW_PY" "$PW_LIB_DIR/jsonl.py" get - id | sort -u; }
stored_ids() { dbq "SELECT id FROM records ORDER BY id" | sort; }
all_stored() { [[ $(printed_ids | wc -l) -gt 0 && "$(printed_ids)" == "$(stored_ids)" ]]; }
stored_more_than() { (($(dbq "SELECT COUNT(*) FROM records") > $1)); }

# tag_burst CTR_FN PREFIX N — N new names of the seed image, one ctr call each
tag_burst() {
	local fn=$1 prefix=$2 n=$3 i
	for ((i = 1; i <= n; i++)); do
		$fn -n web images tag "$SEED" "$R/$prefix-$i:1.$i" >>"$W/ctr-burst.log" 2>&1 || return 1
	done
}

echo token-a >"$W/token-a"
echo token-b >"$W/token-b"
MAXB=4M

# ================================================================ engines ====
for ENGINE in "${ENGINES[@]}"; do
	pw_note "engine $ENGINE"
	printf 'token-a prod\ntoken-b prod\n# a comment\ntoken-c staging\n' >"$W/tokens"
	if [[ $ENGINE == sqlite ]]; then
		DB_FILE=$W/fleet.db
		DB_URL=sqlite:$DB_FILE
	else
		pw_pg_psql -c "CREATE DATABASE fleet"
		DB_URL=${PW_PG_URL%/*}/fleet
	fi
	P1=$(pw_free_port)
	P2=$P1
	collector c1 "$P1" --tokens "$W/tokens" --max-body "$MAXB"
	if [[ $ENGINE == pg ]]; then
		P2=$(pw_free_port)
		collector c2 "$P2" --tokens "$W/tokens" --max-body "$MAXB"
	fi

	# ---------------------------------------------- 1. one tag, two digests ----
	web=web-$ENGINE
	D1=$(pw_build_image "$web" latest "" "$web-one")
	SEED_NAME=seed-$ENGINE
	pw_build_image "$SEED_NAME" 1.0 "rev1" "$SEED_NAME" >/dev/null
	SEED=$R/$SEED_NAME:1.0
	agent a "$PW_SOCK" node-a "$P1" "$W/token-a"
	agent b "$SOCK_B" node-b "$P2" "$W/token-b"
	ctr_a -n web images pull --plain-http "$R/$web:latest" >/dev/null
	D2=$(pw_build_image "$web" latest "" "$web-two")
	pw_assert_ne "$D1" "$D2" "$ENGINE: the re-push changed the digest"
	ctr_b -n web images pull --plain-http "$R/$web:latest" >/dev/null
	ctr_a -n web images pull --plain-http "$SEED" >/dev/null
	ctr_b -n web images pull --plain-http "$SEED" >/dev/null
	two_digests() { [[ $(dbq "SELECT COUNT(*) FROM node_images WHERE ref = '$R/$web:latest'") == 2 ]]; }
	pw_poll 20 two_digests || pw_fail "$ENGINE: the stored state never held web:latest on both nodes" \
		"$(dbq "SELECT node, ref, digest FROM node_images")"
	pw_assert_eq "$(dbq "SELECT cluster, node, digest, latest, compliant FROM node_images WHERE ref = '$R/$web:latest' ORDER BY node")" \
		"prod|node-a|$D1|1|0
prod|node-b|$D2|1|0" "$ENGINE: web:latest runs as $D1 on node-a and $D2 on node-b, both flagged latest"
	pw_poll 10 all_stored || pw_fail "$ENGINE: not every printed record stored" "$(diff <(printed_ids) <(stored_ids) | head)"
	pw_pass "$ENGINE: every record printed by both agents is stored ($(stored_ids | wc -l))"
	# each agent shipped its start inventory: both nodes have a complete one
	pw_assert_eq "$(dbq "SELECT node FROM nodes WHERE last_inventory_usec > 0 ORDER BY node" | tr '\n' ' ')" \
		"node-a node-b " "$ENGINE: both nodes' inventories were applied"
	# a restarted agent sends a new inventory: it replaces node-a's state, which stays the same
	t_inv=$(dbq "SELECT last_inventory_usec FROM nodes WHERE node = 'node-a'")
	agent_stop a
	agent a "$PW_SOCK" node-a "$P1" "$W/token-a"
	# (a row the inventory names unchanged keeps its row version on PostgreSQL: its time is
	# the node's last inventory's, as the collector's STORE_IMAGE_UPDATED_SQL reads it)
	inv_newer() { (($(dbq "SELECT COUNT(*) FROM node_images i WHERE node = 'node-a' AND CASE WHEN by_inventory = 0 THEN updated_usec ELSE (SELECT last_inventory_usec FROM nodes n WHERE n.cluster = i.cluster AND n.node = i.node) END > $1") >= 2)); }
	pw_poll 20 inv_newer "$t_inv" || pw_fail "$ENGINE: node-a's restart inventory did not replace its state"
	pw_assert_eq "$(dbq "SELECT digest, pinned, compliant FROM node_images WHERE node = 'node-a' ORDER BY ref" | tr '\n' ' ')" \
		"$(pw_image_digest web "$SEED")|1|1 $D1|0|0 " "$ENGINE: node-a's inventory: seed pinned and compliant, web:latest at $D1 (latest)"

	# ------------------------------------- 2. SIGKILL mid-stream, restart ----
	N=${PW_FLEET_BURST:-80}
	before=$(dbq "SELECT COUNT(*) FROM records")
	(tag_burst ctr_a burst-a "$N") &
	ta=$!
	(tag_burst ctr_b burst-b "$N") &
	tb=$!
	pw_poll 30 stored_more_than $((before + 20)) || pw_fail "$ENGINE: the burst did not reach the collector"
	kill -KILL "$COLL_c1"
	wait "$COLL_c1" 2>/dev/null || true
	at_kill=$(dbq "SELECT COUNT(*) FROM records")
	pw_note "$ENGINE: collector c1 SIGKILLed with $at_kill records stored"
	# the agents keep producing while it is down
	printed_more_than() { (($(printed_ids | wc -l) > $1)); }
	pw_poll 30 printed_more_than "$at_kill" || true
	collector c1 "$P1" --tokens "$W/tokens" --max-body "$MAXB"
	wait "$ta" || pw_fail "$ENGINE: tagging on node-a failed" "$(tail -3 "$W/ctr-burst.log")"
	wait "$tb" || pw_fail "$ENGINE: tagging on node-b failed" "$(tail -3 "$W/ctr-burst.log")"
	pw_poll 60 all_stored || pw_fail "$ENGINE: after the SIGKILL some records never arrived" \
		"$(diff <(printed_ids) <(stored_ids) | head -5)"
	printed=$(printed_ids | wc -l)
	pw_assert_ge "$printed" $((2 * N)) "$ENGINE: the burst printed >= $((2 * N)) records"
	pw_assert_eq "$(dbq "SELECT COUNT(*) FROM records")" "$printed" "$ENGINE: stored exactly once: $printed records, no more"
	pw_assert_eq "$(dbq "SELECT COUNT(DISTINCT id) FROM records")" "$printed" "$ENGINE: no id twice"
	dups=$(curl -s "http://127.0.0.1:$P1/metrics" | awk '/^pullwatch_fleet_records_duplicate_total/ { print $2 }')
	pw_note "$ENGINE: duplicates re-sent after the kill and dropped by the restarted c1: $dups"
	if [[ $ENGINE == pg ]]; then
		pw_assert_eq "$(dbq "SELECT COUNT(DISTINCT node) FROM records WHERE ref LIKE '%/burst-%'")" 2 \
			"pg: two collectors on one database stored both agents' bursts"
	fi
	agent_stop a
	agent_stop b
	# the next engine's agents start from an empty namespace
	ctr_a -n web images rm $(ctr_a -n web images ls -q) >/dev/null
	ctr_b -n web images rm $(ctr_b -n web images ls -q) >/dev/null

	# -------------------------------------------------------- 3. bad input ----
	U=http://127.0.0.1:$P1/v1/records
	GOOD='{"schema":1,"id":"bad-input-1","kind":"pull","severity":"info","time":"2026-11-25T10:00:00Z","node":"node-x","namespace":"k8s.io","image":{"ref":"r.example/x:1","name":"r.example/x","tag":"1","digest":"sha256:11"},"message":"m"}'
	fp=$(db_fingerprint)
	printf '%s\n{"schema":1,\n' "$GOOD" >"$W/bad1"
	http POST "$U" -H 'Authorization: Bearer token-a' --data-binary @"$W/bad1"
	pw_assert_eq "$HTTP_CODE" 400 "$ENGINE: a malformed line: 400"
	pw_assert_match "$HTTP_BODY" '"line 2: not JSON' "$ENGINE: the 400 names line 2 and the reason"
	printf '%s\n%s\n' "$GOOD" '{"schema":9,"id":"z"}' >"$W/bad2"
	http POST "$U" -H 'Authorization: Bearer token-a' --data-binary @"$W/bad2"
	pw_assert_eq "$HTTP_CODE" 400 "$ENGINE: an unknown schema: 400"
	pw_assert_match "$HTTP_BODY" 'line 2: schema: version 9 unknown' "$ENGINE: ... saying which version"
	head -c $((5 << 20)) /dev/zero | tr '\0' ' ' >"$W/big"
	http POST "$U" -H 'Authorization: Bearer token-a' --data-binary @"$W/big"
	pw_assert_eq "$HTTP_CODE" 413 "$ENGINE: a body over --max-body: 413"
	head -c $((64 << 20)) /dev/zero | gzip -c >"$W/bomb.gz"
	http POST "$U" -H 'Authorization: Bearer token-a' -H 'Content-Encoding: gzip' --data-binary @"$W/bomb.gz"
	pw_assert_eq "$HTTP_CODE" 413 "$ENGINE: a gzip body of $(stat -c %s "$W/bomb.gz") bytes inflating to 64 MiB: 413"
	pw_assert_match "$HTTP_BODY" 'inflates to more than' "$ENGINE: ... saying so"
	printf '%s\n' "$GOOD" >"$W/good"
	http POST "$U" --data-binary @"$W/good"
	pw_assert_eq "$HTTP_CODE" 401 "$ENGINE: no token: 401"
	pw_assert_eq "$HTTP_BODY" '{"error":"unauthorized"}' "$ENGINE: the 401 gives no details"
	pw_assert_match "$HTTP_HEADERS" 'WWW-Authenticate: Bearer' "$ENGINE: ... and asks for a bearer token"
	http POST "$U" -H 'Authorization: Bearer token-z' --data-binary @"$W/good"
	pw_assert_eq "$HTTP_CODE" 401 "$ENGINE: a wrong token: 401"
	pw_assert_eq "$(db_fingerprint)" "$fp" "$ENGINE: none of the rejected requests changed the database"
	# the token, not the body, names the cluster; a new token works once the file changes
	printf '%s\n' "${GOOD/\"node\":\"node-x\"/\"node\":\"node-x\",\"cluster\":\"forged\"}" >"$W/good"
	printf 'token-a prod\ntoken-d dev\n' >"$W/tokens.new"
	mv "$W/tokens.new" "$W/tokens"
	token_d_works() { http POST "$U" -H 'Authorization: Bearer token-d' --data-binary @"$W/good"; [[ $HTTP_CODE == 200 ]]; }
	pw_poll 5 token_d_works || pw_fail "$ENGINE: a token added to the file was not accepted" "$HTTP_CODE $HTTP_BODY"
	pw_assert_eq "$(dbq "SELECT cluster FROM records WHERE id = 'bad-input-1'")" dev "$ENGINE: the cluster is the token's (dev), not the body's (forged)"
	http POST "$U" -H 'Authorization: Bearer token-b' --data-binary @"$W/good"
	pw_assert_eq "$HTTP_CODE" 401 "$ENGINE: a token removed from the file is refused"

	# ---------------------------------------- 4. database unreachable at start ----
	if [[ $ENGINE == sqlite ]]; then bad_db=sqlite:$W/no/such/dir/x.db; else bad_db=postgresql://postgres@127.0.0.1:1/x; fi
	st=0
	"$FLEET" serve --listen "127.0.0.1:$(pw_free_port)" --db "$bad_db" >"$W/unreach.out" 2>"$W/unreach.err" || st=$?
	pw_assert_eq "$st" 1 "$ENGINE: a database unreachable at start: exit 1"
	pw_assert_eq "$(wc -l <"$W/unreach.err")" 1 "$ENGINE: ... with one line"
	pw_assert_match "$(cat "$W/unreach.err")" "${bad_db%%\?*}|127.0.0.1:1/x|no/such/dir" "$ENGINE: ... naming the database"

	# ------------------------------------------------ 5. database lost, queue full ----
	printf '%s\n' "${GOOD/bad-input-1/lost-1}" >"$W/lost"
	if [[ $ENGINE == pg ]]; then
		runuser -u postgres -- "$PW_PG_BIN/pg_ctl" -D "$PW_PG_DIR/data" -m fast -w stop >/dev/null
		http POST "$U" -H 'Authorization: Bearer token-a' --data-binary @"$W/lost"
		pw_assert_eq "$HTTP_CODE" 503 "pg: database stopped: 503"
		pw_assert_match "$HTTP_HEADERS" 'Retry-After: [0-9]+' "pg: ... with Retry-After"
		http GET "http://127.0.0.1:$P1/readyz"
		pw_assert_eq "$HTTP_CODE" 503 "pg: /readyz says not ready"
		pw_assert_match "$HTTP_BODY" 'database unreachable' "pg: ... because of the database"
		runuser -u postgres -- "$PW_PG_BIN/pg_ctl" -D "$PW_PG_DIR/data" -l "$PW_PG_DIR/server.log" -w \
			-o "-c listen_addresses=127.0.0.1 -p $PW_PG_PORT -k $PW_PG_DIR -c fsync=off" start >/dev/null
		lost_ok() { http POST "$U" -H 'Authorization: Bearer token-a' --data-binary @"$W/lost"; [[ $HTTP_CODE == 200 ]]; }
		pw_poll 20 lost_ok || pw_fail "pg: ingest did not resume after the database came back" "$HTTP_CODE $HTTP_BODY"
		pw_assert_eq "$(dbq "SELECT COUNT(*) FROM records WHERE id = 'lost-1'")" 1 "pg: database back: ingest resumes"
		pw_assert_match "$(cat "$W/fleet-c1.err")" 'reachable again' "pg: the collector says the database is back"
	else
		# another writer holds SQLite's write lock for longer than the collector waits
		coproc LOCKER { sqlite3 "$DB_FILE"; }
		echo 'BEGIN IMMEDIATE; SELECT 1;' >&"${LOCKER[1]}"
		read -r -t 5 _ <&"${LOCKER[0]}" || pw_fail "sqlite: could not take the write lock"
		http POST "$U" -H 'Authorization: Bearer token-a' --data-binary @"$W/lost"
		pw_assert_eq "$HTTP_CODE" 503 "sqlite: database locked by another writer past the busy timeout: 503"
		pw_assert_match "$HTTP_HEADERS" 'Retry-After: [0-9]+' "sqlite: ... with Retry-After"
		echo 'ROLLBACK;' >&"${LOCKER[1]}"
		exec {LOCKER[1]}>&-
		wait "$LOCKER_PID" 2>/dev/null || true
		http POST "$U" -H 'Authorization: Bearer token-a' --data-binary @"$W/lost"
		pw_assert_eq "$HTTP_CODE" 200 "sqlite: lock released: ingest resumes"
	fi
	# a full queue: a collector with a one-byte queue while the database is held
	collector_stop c1
	P3=$(pw_free_port)
	# the writer waits for the held lock as long as this scenario needs (with SQLite's
	# default 5 s it answered 503 when the steps below took longer, as under load)
	collector q "$P3" --tokens "$W/tokens" --queue-bytes 1 --db-lock-timeout 600
	coproc LOCK2 { if [[ $ENGINE == sqlite ]]; then sqlite3 "$DB_FILE"; else psql -X -q -d "$DB_URL"; fi; }
	if [[ $ENGINE == sqlite ]]; then
		echo 'BEGIN IMMEDIATE; SELECT 1;' >&"${LOCK2[1]}"
	else
		echo 'BEGIN; LOCK TABLE nodes IN ACCESS EXCLUSIVE MODE; SELECT 1;' >&"${LOCK2[1]}"
	fi
	read -r -t 5 _ <&"${LOCK2[0]}" || pw_fail "$ENGINE: could not hold the database"
	printf '%s\n' "${GOOD/bad-input-1/queued-1}" >"$W/q1"
	curl -s -o "$W/q1.body" -w '%{http_code}' -H 'Authorization: Bearer token-a' --data-binary @"$W/q1" \
		"http://127.0.0.1:$P3/v1/records" >"$W/q1.code" &
	qpid=$!
	queued() { curl -s "http://127.0.0.1:$P3/metrics" | grep -q '^pullwatch_fleet_queue_depth 1$'; }
	pw_poll 5 queued || pw_fail "$ENGINE: the first request was not queued"
	printf '%s\n' "${GOOD/bad-input-1/queued-2}" >"$W/q2"
	http POST "http://127.0.0.1:$P3/v1/records" -H 'Authorization: Bearer token-a' --data-binary @"$W/q2"
	pw_assert_eq "$HTTP_CODE" 503 "$ENGINE: queue full: 503 at once"
	pw_assert_match "$HTTP_HEADERS" 'Retry-After: [0-9]+' "$ENGINE: ... with Retry-After"
	# 6. SIGTERM while the first one is in flight: it is still answered, after its commit
	kill -TERM "$COLL_q"
	pw_poll 5 grep -q 'stopping' "$W/fleet-q.err" || pw_fail "$ENGINE: collector q did not start stopping"
	echo 'ROLLBACK;' >&"${LOCK2[1]}"
	exec {LOCK2[1]}>&-
	wait "$LOCK2_PID" 2>/dev/null || true
	wait "$qpid" || true
	pw_assert_eq "$(cat "$W/q1.code")" 200 "$ENGINE: SIGTERM: the batch in flight is answered 200"
	pw_assert_eq "$(dbq "SELECT COUNT(*) FROM records WHERE id = 'queued-1'")" 1 "$ENGINE: ... and stored"
	pw_assert_eq "$(dbq "SELECT COUNT(*) FROM records WHERE id = 'queued-2'")" 0 "$ENGINE: the 503'd batch is not"
	pw_kill_wait "$COLL_q" 35
	pw_assert_eq "$PW_KILL_STATUS" 0 "$ENGINE: collector q exits 0 after draining"
	[[ $ENGINE == pg ]] && collector_stop c2
done

# ============================================================== mutual TLS ====
ENGINE=sqlite
DB_FILE=$W/tls.db
DB_URL=sqlite:$DB_FILE
T=$W/tls
mkdir -p "$T"
mkcert() { # NAME CN [CA] — key + cert (self-signed CA, or signed by CA)
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$2" \
		-keyout "$T/$1.key" -out "$T/$1.crt" ${3:+-CA "$T/$3.crt" -CAkey "$T/$3.key"} \
		${4:+-addext "subjectAltName=IP:127.0.0.1"} 2>/dev/null
}
mkcert ca "pullwatch test CA"
mkcert other-ca "someone else"
mkcert server 127.0.0.1 ca san
mkcert client prod-eu ca
mkcert stranger prod-eu other-ca
PT=$(pw_free_port)
"$FLEET" serve --listen "127.0.0.1:$PT" --db "$DB_URL" --tls-cert "$T/server.crt" --tls-key "$T/server.key" \
	--client-ca "$T/ca.crt" >>"$W/fleet-tls.out" 2>>"$W/fleet-tls.err" &
COLL_tls=$!
PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $COLL_tls"
tls_up() { curl -sf -o /dev/null --cacert "$T/ca.crt" --cert "$T/client.crt" --key "$T/client.key" "https://127.0.0.1:$PT/healthz"; }
pw_poll 15 tls_up || pw_fail "the TLS collector did not answer /healthz" "$(tail -5 "$W/fleet-tls.err")"
GOOD='{"schema":1,"id":"tls-1","kind":"pull","severity":"info","time":"2026-11-25T10:00:00Z","node":"n","cluster":"forged","namespace":"k8s.io","image":{"ref":"r.example/x:1","digest":"sha256:11"}}'
printf '%s\n' "$GOOD" >"$W/tls.body"
st=0
curl -s -o /dev/null --cacert "$T/ca.crt" --cert "$T/stranger.crt" --key "$T/stranger.key" \
	--data-binary @"$W/tls.body" "https://127.0.0.1:$PT/v1/records" || st=$?
pw_assert_ne "$st" 0 "mTLS: a client certificate from another CA: the TLS handshake fails (curl exit $st)"
st=0
curl -s -o /dev/null --cacert "$T/ca.crt" --data-binary @"$W/tls.body" "https://127.0.0.1:$PT/v1/records" || st=$?
pw_assert_ne "$st" 0 "mTLS: no client certificate: the TLS handshake fails (curl exit $st)"
pw_assert_eq "$(dbq "SELECT COUNT(*) FROM records")" 0 "mTLS: nothing stored from those"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$T/ca.crt" --cert "$T/client.crt" --key "$T/client.key" \
	--data-binary @"$W/tls.body" "https://127.0.0.1:$PT/v1/records")
pw_assert_eq "$code" 200 "mTLS: the right client certificate: 200"
pw_assert_eq "$(dbq "SELECT cluster FROM records WHERE id = 'tls-1'")" prod-eu "mTLS: the certificate's CN is the cluster"
collector_stop tls

# ============================================== the agent's footprint stays ====
libs=$(ldd "$PULLWATCH")
pw_assert_not_match "$libs" 'microhttpd|sqlite|libpq|gnutls' "the agent links none of the collector's libraries"
pw_done
