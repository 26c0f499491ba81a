#!/usr/bin/env bash
# Issue 9 (collector throughput): batches that arrive while the writer stores another
# join its transaction — one commit (one fsync) for all of them — and each is answered
# only after that commit, with its own counts. On SQLite and on PostgreSQL:
#   the database is held by another session; batch A is taken by the writer, which waits
#   for the database; batches B and C queue behind it; the database is released → all
#   three are stored in ONE commit (pullwatch_fleet_commit_seconds_count goes up by 1;
#   before, A committed alone and B and C in a second transaction), each answered 200
#   with its own accepted/duplicates (C repeats one of B's ids), and nothing is answered
#   while the transaction is open.
# Only the collector runs here (no containerd, no agent): seconds, not minutes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
pw_require_pullwatch
FLEET=${PULLWATCH_FLEET:-$(dirname "$PULLWATCH")/pullwatch-fleet}
[[ -x $FLEET ]] || { echo "test_fleet_group: $FLEET not built"; exit 77; }
W=$PW_WORK
ENGINES=(sqlite)
if pw_pg_available; then
	pw_pg_start
	ENGINES+=(pg)
else
	pw_note "PostgreSQL 15 not available: SQLite only"
fi

line() { # ID NODE — one pull record
	printf '{"schema":1,"id":"%s","kind":"pull","severity":"info","time":"2026-11-25T10:00:00Z","node":"%s","namespace":"k8s.io","image":{"ref":"r.example/x:1","name":"r.example/x","tag":"1","digest":"sha256:11"},"message":"m"}\n' "$1" "$2"
}
dbq() {
	if [[ $ENGINE == sqlite ]]; then sqlite3 -batch -noheader "$DB_FILE" "$1"; else psql -X -A -t -q -d "$DB_URL" -c "$1"; fi
}
metric() { curl -s "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
queued() { [[ $(metric pullwatch_fleet_queue_depth) == "$1" ]]; }
post_bg() { # NAME FILE — POST in the background; code to $W/NAME.code, body to $W/NAME.body
	curl -s -o "$W/$1.body" -w '%{http_code}' -H 'Authorization: Bearer tok' --data-binary @"$2" \
		"http://127.0.0.1:$PORT/v1/records" >"$W/$1.code" &
	PIDS_BG+=("$!")
}
hold() { # take the database away from the collector's writer
	coproc HOLD { if [[ $ENGINE == sqlite ]]; then sqlite3 "$DB_FILE"; else psql -X -q -d "$DB_URL"; fi; }
	if [[ $ENGINE == sqlite ]]; then
		echo 'BEGIN IMMEDIATE; SELECT 1;' >&"${HOLD[1]}"
	else
		echo 'BEGIN; LOCK TABLE nodes IN ACCESS EXCLUSIVE MODE; SELECT 1;' >&"${HOLD[1]}"
	fi
	read -r -t 10 _ <&"${HOLD[0]}" || pw_fail "$ENGINE: could not hold the database"
}
release() {
	echo 'ROLLBACK;' >&"${HOLD[1]}"
	exec {HOLD[1]}>&-
	wait "$HOLD_PID" 2>/dev/null || true
}

printf 'tok prod\n' >"$W/tokens"
for ENGINE in "${ENGINES[@]}"; do
	if [[ $ENGINE == sqlite ]]; then
		DB_FILE=$W/group.db
		DB_URL=sqlite:$DB_FILE
	else
		pw_pg_psql -c "CREATE DATABASE grp"
		DB_URL=${PW_PG_URL%/*}/grp
	fi
	PORT=$(pw_free_port)
	"$FLEET" serve --listen "127.0.0.1:$PORT" --db "$DB_URL" --tokens "$W/tokens" --db-lock-timeout 600 \
		2>>"$W/fleet-$ENGINE.err" &
	FPID=$!
	PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $FPID"
	pw_poll 15 pw_http_ok "http://127.0.0.1:$PORT/healthz" || pw_fail "$ENGINE: collector did not start"

	{ line a-1 node-a; line a-2 node-b; } >"$W/a"
	{ line b-1 node-a; line b-2 node-c; } >"$W/b"
	{ line c-1 node-d; line b-1 node-a; } >"$W/c" # b-1 again: a duplicate within the group
	c0=$(metric pullwatch_fleet_commit_seconds_count)
	PIDS_BG=()
	hold
	post_bg a "$W/a"
	# the writer took A off the queue's head and waits for the database with it
	pw_poll 10 queued 1 || pw_fail "$ENGINE: A was not queued"
	post_bg b "$W/b"
	pw_poll 10 queued 2 || pw_fail "$ENGINE: B was not queued"
	post_bg c "$W/c"
	pw_poll 10 queued 3 || pw_fail "$ENGINE: C was not queued"
	pw_assert_eq "$(cat "$W/a.code" "$W/b.code" "$W/c.code" 2>/dev/null)" "" "$ENGINE: nothing answered before the commit"
	release
	for p in "${PIDS_BG[@]}"; do wait "$p" || true; done
	pw_assert_eq "$(cat "$W/a.code") $(cat "$W/b.code") $(cat "$W/c.code")" "200 200 200" "$ENGINE: A, B, C answered 200"
	pw_assert_match "$(cat "$W/a.body")" '"accepted":2,"duplicates":0' "$ENGINE: A's own counts"
	pw_assert_match "$(cat "$W/b.body")" '"accepted":2,"duplicates":0' "$ENGINE: B's own counts"
	pw_assert_match "$(cat "$W/c.body")" '"accepted":1,"duplicates":1' "$ENGINE: C's own counts (b-1 again)"
	pw_assert_eq "$(($(metric pullwatch_fleet_commit_seconds_count) - c0))" 1 \
		"$ENGINE: B and C, queued while A was being stored, joined A's transaction: one commit"
	pw_assert_eq "$(dbq "SELECT COUNT(*) FROM records")" 5 "$ENGINE: five records stored once each"
	pw_assert_eq "$(dbq "SELECT COUNT(*) FROM nodes")" 4 "$ENGINE: every node touched"

	pw_kill_wait "$FPID" 35
	pw_assert_eq "$PW_KILL_STATUS" 0 "$ENGINE: collector exits 0 on SIGTERM"
done
pw_done
