#!/usr/bin/env bash
# The .deb and the hardened unit (issue 11, items 4 and 5):
#   cmake --build BUILD --target package; lintian reports no error; dpkg -i installs the
#   binary, the unit, the catalog (journalctl -x explains a finding the installed agent
#   raised), the commented /etc/default/pullwatch (a conffile the agent reads) and the
#   state directory; the unit scores <= 2.0 with `systemd-analyze security --offline`
#   and passes `systemd-analyze verify`; the installed agent runs under the unit's own
#   seccomp filter, address families, empty capability set and no_new_privs, and still
#   subscribes, notifies READY=1 and WATCHDOG=1, records, reloads pins (inotify) and
#   ships; dpkg -r removes everything but the state; dpkg -P removes the state.
# The same for pullwatch-fleet when it is built: its .deb, its unit (DynamicUser), and
# the collector under its unit's filter, as an unprivileged user, receiving what the
# sandboxed agent ships.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

pw_start_all
# a sanitizer binary is no release artifact: its package would depend on libasan
if ldd "$PULLWATCH" | grep -q libasan; then
	echo "[$PW_TEST_NAME] SKIP: the package is built once, from the plain build" >&2
	exit 77
fi
for t in dpkg lintian systemd-analyze setpriv; do
	command -v "$t" >/dev/null || pw_fail "missing tool $t (tests/run installs it)"
done
/usr/bin/python3 -c 'import seccomp' 2>/dev/null || pw_fail "python3-seccomp missing (tests/run installs it)"
B=$(dirname "$PULLWATCH")
W=$PW_WORK
UNIT=/usr/lib/systemd/system/pullwatch.service
LATEST_ID=dfb3dbaf166e412ebb19028f9c104543

dpkg -s pullwatch >/dev/null 2>&1 && pw_fail "a pullwatch package is already installed here; remove it first (dpkg -P pullwatch)"
pkg_cleanup() { dpkg -P pullwatch pullwatch-fleet >/dev/null 2>&1 || true; }
trap 'rc=$?; pkg_cleanup; (exit $rc); pw_cleanup' EXIT

# ------------------------------------------------------------ build, lint ----
cmake --build "$B" --target package >"$W/cpack.log" 2>&1 || pw_fail "cmake --build --target package failed" "$(tail -5 "$W/cpack.log")"
DEB=$B/pullwatch_$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$B/CMakeCache.txt")_$(dpkg --print-architecture).deb
FDEB=${DEB/pullwatch_/pullwatch-fleet_}
[[ -f $DEB ]] || pw_fail "no $DEB after cmake --build --target package" "$(tail -3 "$W/cpack.log")"
HAVE_FLEET=0
[[ -x $B/pullwatch-fleet ]] && HAVE_FLEET=1
[[ $HAVE_FLEET == 0 || -f $FDEB ]] || pw_fail "pullwatch-fleet is built but $FDEB was not made"
DEBS=("$DEB")
[[ $HAVE_FLEET == 1 ]] && DEBS+=("$FDEB")
# one lintian run for both (its start-up is most of its time)
lintian --fail-on error "${DEBS[@]}" >"$W/lintian.log" 2>&1 || pw_fail "lintian reports errors" "$(grep '^E:' "$W/lintian.log")"
pw_assert_eq "$(grep -c '^E:' "$W/lintian.log" || true)" 0 "lintian ${DEBS[*]##*/}: no error ($(grep -c '^W:' "$W/lintian.log" || true) warnings)"

# ---------------------------------------------------------------- install ----
dpkg -i "${DEBS[@]}" >"$W/dpkg.log" 2>&1 || pw_fail "dpkg -i failed" "$(tail -5 "$W/dpkg.log")"
for f in /usr/bin/pullwatch "$UNIT" /usr/lib/systemd/catalog/pullwatch.catalog /etc/default/pullwatch; do
	pw_assert_cmd "installed: $f" test -s "$f"
done
pw_assert_eq "$(stat -c %a /var/lib/pullwatch)" 700 "state directory /var/lib/pullwatch, mode 0700"
pw_assert_match "$(dpkg-query -W -f='${Conffiles}' pullwatch)" '/etc/default/pullwatch' "/etc/default/pullwatch is a conffile"
pw_assert_match "$(journalctl --list-catalog 2>/dev/null | grep $LATEST_ID)" 'uses the tag latest' "postinst ran journalctl --update-catalog"

# the default file documents every key of the installed binary, and the agent reads it
keys=$(/usr/bin/pullwatch --help 2>&1 | grep -c ', key "' || true)
pw_assert_eq "$(grep -c '^#[A-Z0-9_]*=' /etc/default/pullwatch)" "$keys" "/etc/default/pullwatch lists all $keys keys"
st=0; (set -a; . /etc/default/pullwatch; exec /usr/bin/pullwatch check docker.io/library/nginx:latest) >/dev/null 2>&1 || st=$?
pw_assert_eq "$st" 1 "with the default file as shipped, :latest is a finding"
sed 's/^#PULLWATCH_SEVERITY_LATEST_TAG=.*/PULLWATCH_SEVERITY_LATEST_TAG=off/' /etc/default/pullwatch >"$W/default"
st=0; (set -a; . "$W/default"; exec /usr/bin/pullwatch check docker.io/library/nginx:latest) >/dev/null 2>&1 || st=$?
pw_assert_eq "$st" 0 "an uncommented line of the default file takes effect"

# -------------------------------------------------------------- the unit ----
FUNIT=/usr/lib/systemd/system/pullwatch-fleet.service
UNITS=("$UNIT")
[[ $HAVE_FLEET == 1 ]] && UNITS+=("$FUNIT")
for u in "${UNITS[@]}"; do
	n=$(basename "$u")
	SCORE=$(systemd-analyze security --offline=true "$u" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	pw_assert_match "$SCORE" '^[0-9]+\.[0-9]$' "systemd-analyze security scores $n ($SCORE)"
	awk -v s="$SCORE" 'BEGIN { exit !(s <= 2.0) }' || pw_fail "$n exposure $SCORE > 2.0" \
		"$(systemd-analyze security --offline=true "$u" 2>&1 | grep '✗')"
	pw_pass "$n exposure $SCORE <= 2.0"
	systemd-analyze verify "$u" >"$W/verify.log" 2>&1 || pw_fail "systemd-analyze verify $n failed" "$(cat "$W/verify.log")"
	pw_assert_eq "$(grep -vE '(containerd|postgresql)\.service' "$W/verify.log" || true)" "" "systemd-analyze verify $n: no complaint"
done

# ------------------------- the installed agent under the unit's own sandbox ----
# What systemd would apply that a process can apply to itself: the seccomp filter and
# address families (seccomp_run.py reads them from the unit), an empty capability
# bounding set, no_new_privs. A notify socket stands in for PID 1.
"$PW_PY" - "$W/notify.sock" "$W/notify.log" >/dev/null 2>&1 <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "ab", buffering=0) as f:
    while True:
        f.write(s.recv(4096).replace(b"\n", b" ") + b"\n")
EOF
PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $!"
pw_poll 5 test -S "$W/notify.sock" || pw_fail "notify socket did not appear"
PORT=$(pw_free_port)
SANDBOX=(setpriv --no-new-privs --bounding-set=-all --inh-caps=-all --ambient-caps=-all)
if [[ $HAVE_FLEET == 1 ]]; then
	# the collector as the unit runs it: an unprivileged user (DynamicUser= stands in as
	# nobody), no capability, its unit's filter, its database in its own directory
	mkdir -p "$W/fleet-state"
	chown nobody:nogroup "$W/fleet-state"
	chmod 755 "$W"
	"${SANDBOX[@]}" --reuid nobody --regid nogroup --clear-groups /usr/bin/python3 "$PW_LIB_DIR/seccomp_run.py" "$FUNIT" -- \
		/usr/bin/pullwatch-fleet serve --listen "127.0.0.1:$PORT" --db "sqlite:$W/fleet-state/fleet.db" \
		>"$W/fleet.out" 2>"$W/fleet.err" &
	FLEET_PID=$!
	PW_EXTRA_PIDS="$PW_EXTRA_PIDS $FLEET_PID"
	pw_poll 15 pw_http_ok "http://127.0.0.1:$PORT/readyz" || pw_fail "the sandboxed collector did not answer /readyz" "$(tail -5 "$W/fleet.err")"
	pw_assert_match "$(grep seccomp_run: "$W/fleet.err")" 'allowed by pullwatch-fleet.service' "the collector runs under its unit's filter"
	pw_assert_eq "$(awk '$1 == "CapEff:" { print $2 }' "/proc/$FLEET_PID/status")" 0000000000000000 "the collector holds no capability"
	ENDPOINT=http://127.0.0.1:$PORT/v1/records
else
	"$PW_PY" "$PW_LIB_DIR/receiver.py" --port "$PORT" --port-file "$W/recv.port" --records "$W/recv.records" >>"$W/receiver.log" 2>&1 &
	PW_EXTRA_PIDS="$PW_EXTRA_PIDS $!"
	pw_poll 10 test -s "$W/recv.port" || pw_fail "receiver did not listen"
	ENDPOINT=http://127.0.0.1:$PORT/ingest
fi
echo '{}' >"$W/pins.json"
export NOTIFY_SOCKET=$W/notify.sock WATCHDOG_USEC=1000000
PULLWATCH_SAVED=$PULLWATCH
PULLWATCH=/usr/bin/pullwatch
PW_AGENT_WRAPPER="${SANDBOX[*]} /usr/bin/python3 $PW_LIB_DIR/seccomp_run.py $UNIT --"
pw_start_agent "$(pw_node_name)" --pins "$W/pins.json" --endpoint "$ENDPOINT" --batch-max-age 100ms
unset NOTIFY_SOCKET WATCHDOG_USEC
pw_assert_match "$(pw_agent_err_since_start | grep seccomp_run:)" 'system calls allowed by pullwatch.service' "the agent runs under the unit's filter"
for k in CapBnd CapEff; do
	pw_assert_eq "$(awk -v k="$k:" '$1 == k { print $2 }' "/proc/$PW_AGENT_PID/status")" 0000000000000000 "$k is empty"
done
pw_assert_eq "$(awk '$1 == "Seccomp:" { print $2 }' "/proc/$PW_AGENT_PID/status")" 2 "seccomp filter mode"
pw_poll 10 grep -q 'READY=1' "$W/notify.log" || pw_fail "no READY=1 on the notify socket" "$(cat "$W/notify.log")"
pw_pass "sd_notify READY=1 under the filter"
pw_poll 10 grep -q 'WATCHDOG=1' "$W/notify.log" || pw_fail "no WATCHDOG=1 on the notify socket"
pw_pass "sd_notify WATCHDOG=1 under the filter"
D=$(pw_build_image pkg latest "" "pkg-$RANDOM")
pw_pull default "$PW_REGISTRY/pkg:latest"
pw_wait_record latest_tag "$PW_REGISTRY/pkg:latest" "$D" default
printf '{"%s": "%s"}\n' "$PW_REGISTRY/pkg:latest" "sha256:$(printf '0%.0s' {1..64})" >"$W/pins.json.new"
mv "$W/pins.json.new" "$W/pins.json"
pw_poll 10 eval 'pw_agent_err_since_start | grep -q "loaded 1 pins"' ||
	pw_fail "the pins file change was not picked up (inotify) under the filter" "$(pw_agent_err_since_start | tail -3)"
pw_pass "pins reloaded through inotify under the filter"
ID=$(pw_stdout_get id kind=latest_tag "image.ref=$PW_REGISTRY/pkg:latest" | head -1)
if [[ $HAVE_FLEET == 1 ]]; then
	stored() { [[ $(sqlite3 "file:$W/fleet-state/fleet.db?mode=ro" "SELECT count(*) FROM records WHERE id = '$1'" 2>/dev/null) == 1 ]]; }
	pw_poll 20 stored "$ID" || pw_fail "record $ID not stored by the sandboxed collector" "$(tail -3 "$W/fleet.err")"
	pw_pass "GnuTLS loaded and shipped under the filter, stored by the collector under its own"
	pw_kill_wait "$FLEET_PID" 15
	pw_assert_eq "$PW_KILL_STATUS" 0 "the sandboxed collector drains and exits 0 on SIGTERM"
else
	pw_poll 20 grep -q "\"id\": *\"$ID\"" "$W/recv.records" || pw_fail "record $ID not shipped under the filter"
	pw_pass "GnuTLS loaded and shipped under the filter"
fi
pw_stop_agent
PULLWATCH=$PULLWATCH_SAVED
PW_AGENT_WRAPPER=

# the catalog explains what the installed agent wrote
X=$(journalctl -x --no-pager -q "MESSAGE_ID=$LATEST_ID" "NODE_NAME=$PW_NODE" 2>/dev/null)
pw_assert_match "$X" "Subject: Image $PW_REGISTRY/pkg:latest uses the tag latest" "journalctl -x: the catalog's subject, with the entry's fields"
pw_assert_match "$X" 'moves with every push' "journalctl -x: the catalog's explanation"

# ------------------------------------------------------------- remove, purge ----
echo keep >/var/lib/pullwatch/ledger.json
dpkg -r pullwatch pullwatch-fleet >"$W/dpkg-r.log" 2>&1 || pw_fail "dpkg -r failed" "$(tail -5 "$W/dpkg-r.log")"
for f in /usr/bin/pullwatch "$UNIT" /usr/lib/systemd/catalog/pullwatch.catalog /usr/bin/pullwatch-fleet "$FUNIT"; do
	pw_assert_cmd "dpkg -r removed $f" test ! -e "$f"
done
pw_assert_eq "$(journalctl --list-catalog 2>/dev/null | grep -c $LATEST_ID || true)" 0 "dpkg -r: the catalog database forgot pullwatch"
pw_assert_eq "$(cat /var/lib/pullwatch/ledger.json)" keep "dpkg -r keeps the state"
dpkg -P pullwatch pullwatch-fleet >"$W/dpkg-p.log" 2>&1 || pw_fail "dpkg -P failed" "$(tail -5 "$W/dpkg-p.log")"
pw_assert_cmd "dpkg -P removes the state" test ! -e /var/lib/pullwatch
pw_assert_cmd "dpkg -P removes the conffile" test ! -e /etc/default/pullwatch
pw_done
