# shellcheck shell=bash
# tests/integration/pg.sh — a private PostgreSQL 15 cluster for a test, in a temp dir.
#
# Sourced:   source tests/integration/pg.sh; pw_pg_start [NAME]   (then $PW_PG_URL, $PW_PG_DIR)
#            the cluster is stopped and removed on exit (an existing EXIT trap is kept and
#            runs first); pw_pg_stop stops it earlier; pw_pg_psql runs psql against it.
# Command:   tests/integration/pg.sh start DIR   prints the URL of a cluster created in DIR
#            tests/integration/pg.sh stop DIR    stops it (the caller removes DIR)
#            (for test programs in C, which cannot source a shell file)
#
# initdb and pg_ctl run as the `postgres` user (they refuse root), on a free loopback port,
# with the socket in the data dir's parent and trust authentication on 127.0.0.1 only.
# Skips (exit 77) when PostgreSQL 15 is not installed or we are not root.
#
#   PW_PG_BIN    the server binaries (default /usr/lib/postgresql/15/bin)
#   PW_PG_FSYNC  on|off (default off: tests need no power-loss durability; benches set on)
#   PW_PG_OPTS   more server options ("-c name=value ..."), e.g. a bench's
#                "-c shared_preload_libraries=pg_stat_statements"

PW_PG_BIN=${PW_PG_BIN:-/usr/lib/postgresql/15/bin}
PW_PG_DIR=''
PW_PG_URL=''
PW_PG_PORT=''

pw_pg_free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pw_pg_available() {
	[[ -x $PW_PG_BIN/initdb && -x $PW_PG_BIN/pg_ctl ]] && id postgres >/dev/null 2>&1 && [[ $(id -u) == 0 ]]
}

# pw_pg_create DIR — initdb + start in DIR; prints the URL.
pw_pg_create() {
	local dir=$1 port
	mkdir -p "$dir"
	chown postgres: "$dir"
	chmod 700 "$dir"
	runuser -u postgres -- "$PW_PG_BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
		{ echo "pg.sh: initdb failed, see $dir/initdb.log" >&2; return 1; }
	local tries
	for tries in 1 2 3; do
		port=$(pw_pg_free_port)
		if runuser -u postgres -- "$PW_PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
			-o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=${PW_PG_FSYNC:-off} -c max_connections=40 ${PW_PG_OPTS:-}" \
			start >/dev/null 2>&1; then
			echo "postgresql://postgres@127.0.0.1:$port/postgres"
			return 0
		fi
	done
	echo "pg.sh: pg_ctl start failed, see $dir/server.log" >&2
	return 1
}

# pw_pg_destroy DIR — stop the cluster in DIR (fast shutdown).
pw_pg_destroy() {
	local dir=$1
	[[ -n $dir && -d $dir/data ]] || return 0
	runuser -u postgres -- "$PW_PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}

pw_pg_stop() {
	[[ -n $PW_PG_DIR ]] || return 0
	pw_pg_destroy "$PW_PG_DIR"
	rm -rf "$PW_PG_DIR"
	PW_PG_DIR=''
	PW_PG_URL=''
}

pw_pg_psql() {
	PGCONNECT_TIMEOUT=5 psql -X -q -v ON_ERROR_STOP=1 -d "$PW_PG_URL" "$@"
}

# pw_pg_start — create and start a cluster; exports PW_PG_URL, PW_PG_DIR, PW_PG_PORT.
pw_pg_start() {
	if ! pw_pg_available; then
		echo "pg.sh: PostgreSQL 15 ($PW_PG_BIN) not installed or not root: skipping" >&2
		exit 77
	fi
	PW_PG_DIR=$(mktemp -d /tmp/pw-pg.XXXXXX)
	PW_PG_URL=$(pw_pg_create "$PW_PG_DIR") || { rm -rf "$PW_PG_DIR"; return 1; }
	PW_PG_PORT=${PW_PG_URL##*:}
	PW_PG_PORT=${PW_PG_PORT%%/*}
	export PW_PG_URL PW_PG_DIR PW_PG_PORT
	# before whatever EXIT trap the test already has (lib.sh's pw_cleanup ends in `exit`)
	local prev
	prev=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")
	# shellcheck disable=SC2064
	trap "pw__pg_rc=\$?; set +e; pw_pg_stop; (exit \$pw__pg_rc)${prev:+; $prev}" EXIT # keep the test's status for it
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	case ${1:-} in
	start)
		pw_pg_available || exit 77
		pw_pg_create "$2"
		;;
	stop) pw_pg_destroy "$2" ;;
	*)
		echo "usage: $0 start DIR | stop DIR" >&2
		exit 2
		;;
	esac
fi
