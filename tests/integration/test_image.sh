#!/usr/bin/env bash
# The agent's own OCI image, run as the DaemonSet runs it (issue 11, items 1 and 2):
# `cmake --build BUILD --target image` makes the layout; its labels name the commit;
# skopeo pushes it to the private registry; ctr pulls it and runs it with a read-only
# root, every capability dropped, the runtime's default seccomp profile, containerd's
# socket, journald's socket and a state directory bind-mounted. The containerized agent
# then records a pull made on the "host" containerd (journald + stdout), ships it over
# HTTPS with the image's own dlopen()ed GnuTLS to the collector's image (pullwatch-fleet,
# same layout, run the same way, SQLite in its bind-mounted state directory), judges
# its own images compliant, and both exit 0 on SIGTERM.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

pw_start_all
command -v runc >/dev/null || { echo "[$PW_TEST_NAME] SKIP: runc not installed (containerd's runtime)" >&2; exit 77; }
B=$(dirname "$PULLWATCH")
SRC=${PW_SOURCE_DIR:-$PW_LIB_DIR/../..}
W=$PW_WORK

# ----------------------------------------------------------------- build ----
if ! cmake --build "$B" --target image >"$W/image-build.log" 2>&1; then
	pw_fail "cmake --build $B --target image failed" "$(grep -v '^gmake' "$W/image-build.log" | tail -3)"
fi
L=$B/image
read -r NAME TAG DIGEST < <("$PW_PY" -c 'import json,sys; d=json.load(open(sys.argv[1]))[0]; print(d["name"], d["tag"], d["digest"])' "$B/image-digests.json")
REV=$(git -C "$SRC" rev-parse HEAD)
pw_assert_eq "$NAME" pullwatch "the layout's first image is the agent"
pw_assert_eq "$TAG" "${REV:0:7}" "the agent image is tagged with the commit's short SHA"

# what the layout says, read independently of mkimage.py
"$PW_PY" - "$L" "$TAG" >"$W/labels" <<'EOF'
import gzip, io, json, sys, tarfile
layout, tag = sys.argv[1], sys.argv[2]
blob = lambda d: open(f"{layout}/blobs/sha256/{d[7:]}", "rb").read()
idx = json.load(open(f"{layout}/index.json"))
m = [m for m in idx["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag][0]
man = json.loads(blob(m["digest"]))
cfg = json.loads(blob(man["config"]["digest"]))
for k, v in sorted(cfg["config"]["Labels"].items()):
    print(f"{k}={v}")
print(f"entrypoint={' '.join(cfg['config']['Entrypoint'])}")
names = tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(man["layers"][0]["digest"])))).getnames()
print("shell=" + ",".join(n for n in names if n.rsplit("/", 1)[-1] in ("sh", "bash", "dash", "busybox")))
print("libgnutls=" + ",".join(n for n in names if "libgnutls.so" in n))
print("libcurl=" + ",".join(n for n in names if "libcurl.so" in n))
print("files=%d" % len(names))
EOF
label() { sed -n "s/^$1=//p" "$W/labels"; }
pw_assert_eq "$(label org.opencontainers.image.revision)" "$REV" "revision label = the full commit SHA"
pw_assert_eq "$(label org.opencontainers.image.created)" \
	"$(TZ=UTC git -C "$SRC" log -1 --date=format-local:%Y-%m-%dT%H:%M:%SZ --format=%cd)" "created label = the commit time"
pw_assert_match "$(label org.opencontainers.image.source)" '^https://' "source label set"
pw_assert_match "$(label org.opencontainers.image.version)" '^[0-9]+\.[0-9]+\.[0-9]+' "version label set"
pw_assert_eq "$(label shell)" "" "no shell in the image"
pw_assert_match "$(label libgnutls)" 'libgnutls\.so\.30' "the dlopen()ed GnuTLS is in the image"
pw_assert_eq "$(label libcurl)" "" "no libcurl in the image (the native shipper needs none)"

# ------------------------------------------------------ push, pull, run ----
REF=$PW_REGISTRY/pullwatch:$TAG
skopeo copy --quiet --insecure-policy --dest-tls-verify=false --digestfile "$W/pushed" \
	"oci:$L:$TAG" "docker://$REF" >>"$W/skopeo.log" 2>&1 || pw_fail "skopeo could not push the layout" "$(tail -3 "$W/skopeo.log")"
pw_assert_eq "$(cat "$W/pushed")" "$DIGEST" "the registry stores the layout's manifest digest"
NS=pwsys
pw_pull "$NS" "$REF"
pw_assert_eq "$(pw_image_digest "$NS" "$REF")" "$DIGEST" "containerd pulled the same digest"

# an HTTPS receiver, with a CA of the test's own, to prove the image's GnuTLS tree
T=$W/tls
mkdir -p "$T" "$W/etc" "$W/cstate"
ossl() { openssl "$@" >>"$T/openssl.log" 2>&1 || pw_fail "openssl $1 failed" "$(tail -5 "$T/openssl.log")"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=pullwatch image test CA" \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -keyout "$T/ca.key" -out "$T/ca.crt"
ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" -keyout "$T/server.key" -out "$T/server.csr"
printf 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$T/server.ext"
ossl x509 -req -in "$T/server.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" -CAcreateserial -days 2 -extfile "$T/server.ext" -out "$T/server.crt"
cp "$T/ca.crt" "$W/etc/ca.crt"
PW_NODE=$(pw_node_name)
ENV=(--env "NODE_NAME=$PW_NODE")
# a sanitizer build's image: LeakSanitizer needs ptrace, which no capability allows here
ldd "$PULLWATCH" | grep -q libasan && ENV+=(--env ASAN_OPTIONS=detect_leaks=0)
CID=pullwatch-agent FID=pullwatch-fleet
CTR_PID= FLEET_PID=
img_cleanup() {
	local id pid
	for id in "$CID" "$FID"; do
		pw_ctr -n "$NS" task kill -s KILL "$id" >/dev/null 2>&1 || true
	done
	for pid in $CTR_PID $FLEET_PID; do pw_poll 10 eval "! pw_proc_alive $pid" || true; done
	for id in "$CID" "$FID"; do
		pw_ctr -n "$NS" task rm -f "$id" >/dev/null 2>&1 || true
		pw_ctr -n "$NS" container rm "$id" >/dev/null 2>&1 || true
	done
}
trap 'rc=$?; img_cleanup; (exit $rc); pw_cleanup' EXIT
# ctr has no "drop ALL": drop each capability of its default set, then check CapEff is 0
CAPS=()
for c in CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP NET_BIND_SERVICE \
	SYS_CHROOT KILL AUDIT_WRITE; do CAPS+=(--cap-drop "CAP_$c"); done
# status_of PID FIELD — a field of /proc/PID/status
status_of() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
task_pid() { pw_ctr -n "$NS" task ls | awk -v c="$1" '$1 == c { print $2 }'; }

# ------------------------------------------------- the collector's image ----
HAVE_FLEET=0
if FREF_TAG=$("$PW_PY" -c 'import json,sys; print([d["tag"] for d in json.load(open(sys.argv[1])) if d["name"] == "pullwatch-fleet"][0])' "$B/image-digests.json" 2>/dev/null); then
	HAVE_FLEET=1
	FDIGEST=$("$PW_PY" -c 'import json,sys; print([d["digest"] for d in json.load(open(sys.argv[1])) if d["name"] == "pullwatch-fleet"][0])' "$B/image-digests.json")
	pw_assert_eq "$FREF_TAG" "fleet-${REV:0:7}" "the collector's image is tagged fleet-SHORT in the same layout"
	FREF=$PW_REGISTRY/pullwatch-fleet:${REV:0:7}
	skopeo copy --quiet --insecure-policy --dest-tls-verify=false --digestfile "$W/fpushed" \
		"oci:$L:$FREF_TAG" "docker://$FREF" >>"$W/skopeo.log" 2>&1 || pw_fail "skopeo could not push the collector's image"
	pw_assert_eq "$(cat "$W/fpushed")" "$FDIGEST" "the registry stores the collector's manifest digest"
	pw_pull "$NS" "$FREF"
	mkdir -p "$W/fstate" "$W/fetc"
	cp "$T/server.crt" "$T/server.key" "$W/fetc/"
	PORT=$(pw_free_port)
	pw_ctr -n "$NS" run --rm --read-only --seccomp "${CAPS[@]}" --net-host "${ENV[@]}" \
		--mount "type=bind,src=$W/fstate,dst=/var/lib/pullwatch-fleet,options=rbind:rw" \
		--mount "type=bind,src=$W/fetc,dst=/etc/pullwatch-fleet,options=rbind:ro" \
		"$FREF" "$FID" /usr/bin/pullwatch-fleet serve --listen "127.0.0.1:$PORT" \
		--db sqlite:/var/lib/pullwatch-fleet/fleet.db \
		--tls-cert /etc/pullwatch-fleet/server.crt --tls-key /etc/pullwatch-fleet/server.key \
		>"$W/fleet.out" 2>"$W/fleet.err" </dev/null &
	FLEET_PID=$!
	https_ok() { "$PW_PY" -c 'import ssl, sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2, context=ssl.create_default_context(cafile=sys.argv[2]))' "$1" "$T/ca.crt" 2>/dev/null; }
	pw_poll 20 https_ok "https://127.0.0.1:$PORT/readyz" || pw_fail "the containerized collector did not answer /readyz over HTTPS" "$(tail -5 "$W/fleet.err")"
	pw_pass "the containerized collector answers /readyz over HTTPS"
	FPID=$(task_pid "$FID")
	pw_assert_eq "$(status_of "$FPID" CapEff)" 0000000000000000 "the collector runs with no capability"
	ENDPOINT=https://127.0.0.1:$PORT/v1/records
else
	pw_note "no pullwatch-fleet in the layout (not built here): the agent ships to receiver.py"
	PORT=$(pw_free_port)
	"$PW_PY" "$PW_LIB_DIR/receiver.py" --port "$PORT" --port-file "$W/recv.port" --records "$W/recv.records" \
		--cert "$T/server.crt" --key "$T/server.key" >>"$W/receiver.log" 2>&1 &
	PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $!"
	pw_poll 10 test -s "$W/recv.port" || pw_fail "receiver did not listen" "$(tail -3 "$W/receiver.log")"
	ENDPOINT=https://127.0.0.1:$PORT/ingest
fi

# --net-host only to reach the loopback receiver; the DaemonSet uses the pod network
pw_ctr -n "$NS" run --rm --read-only --seccomp "${CAPS[@]}" --net-host "${ENV[@]}" \
	--mount "type=bind,src=$PW_SOCK,dst=/run/containerd/containerd.sock,options=rbind:rw" \
	--mount "type=bind,src=$PW_JOURNAL_SOCKET,dst=/run/systemd/journal/socket,options=rbind:rw" \
	--mount "type=bind,src=$W/cstate,dst=/var/lib/pullwatch,options=rbind:rw" \
	--mount "type=bind,src=$W/etc,dst=/etc/pullwatch,options=rbind:ro" \
	"$REF" "$CID" /usr/bin/pullwatch run --stdout --endpoint "$ENDPOINT" \
	--endpoint-ca-file /etc/pullwatch/ca.crt --batch-max-age 100ms \
	>"$PW_AGENT_OUT" 2>"$PW_AGENT_ERR" </dev/null &
CTR_PID=$!
PW_AGENT_ERR_MARK=0
pw_poll 30 grep -q 'subscribed to containerd events' "$PW_AGENT_ERR" ||
	pw_fail "the containerized agent did not subscribe within 30 s" "$(tail -5 "$PW_AGENT_ERR")"
pw_pass "the containerized agent subscribed to the host containerd"
APID=$(task_pid "$CID")
pw_assert_eq "$(status_of "$APID" CapEff)" 0000000000000000 "the agent runs with no capability"
pw_assert_eq "$(status_of "$APID" CapBnd)" 0000000000000000 "and none in its bounding set"
pw_assert_eq "$(status_of "$APID" Seccomp)" 2 "under a seccomp filter"
pw_assert_eq "$(status_of "$APID" NoNewPrivs)" 1 "with no_new_privs"

# its own image, seen in the first listing: a pull record, and no finding at all
pw_wait_stdout pull 1 20 "image.ref=$REF" "image.digest=$DIGEST"
# a pull on the host containerd, recorded by the containerized agent in journald + stdout
D=$(pw_build_image app latest "" "image-test-$RANDOM")
pw_pull default "$PW_REGISTRY/app:latest"
pw_wait_record latest_tag "$PW_REGISTRY/app:latest" "$D" default
pw_assert_eq "$(pw_stdout_count "image.ref=$REF" "kind!=pull")" 0 "pullwatch raises no finding about its own image"
# shipped over HTTPS by the image's GnuTLS (agent/httpc.c)
ID=$(pw_stdout_get id kind=latest_tag "image.ref=$PW_REGISTRY/app:latest" | head -1)
if [[ $HAVE_FLEET == 1 ]]; then
	pw_wait_stdout pull 1 20 "image.ref=$FREF" "image.digest=$FDIGEST"
	pw_assert_eq "$(pw_stdout_count "image.ref=$FREF" "kind!=pull")" 0 "pullwatch raises no finding about the collector's image"
	stored() { [[ $(sqlite3 "file:$W/fstate/fleet.db?mode=ro" "SELECT count(*) FROM records WHERE id = '$1'" 2>/dev/null) == 1 ]]; }
	pw_poll 20 stored "$ID" || pw_fail "the containerized collector did not store record $ID" \
		"$(grep -i ship "$PW_AGENT_ERR" | tail -3)" "$(tail -3 "$W/fleet.err")"
	pw_pass "the record went agent image -> HTTPS -> collector image -> SQLite"
	pw_note "RSS in the containers: agent $(status_of "$APID" VmRSS) kB (GnuTLS loaded), collector $(status_of "$FPID" VmRSS) kB"
else
	pw_poll 20 grep -q "\"id\": *\"$ID\"" "$W/recv.records" ||
		pw_fail "the receiver did not get record $ID over HTTPS" "$(grep -i ship "$PW_AGENT_ERR" | tail -3)"
	pw_pass "the record reached the HTTPS endpoint"
fi

# and pullwatch is not blind to its own label: the same image pushed under another
# commit's tag is a revision_mismatch
LIE=deadbee
[[ ${REV:0:7} == "$LIE" ]] && LIE=c0ffee1
skopeo copy --quiet --insecure-policy --dest-tls-verify=false "oci:$L:$TAG" "docker://$PW_REGISTRY/pullwatch:$LIE" >>"$W/skopeo.log" 2>&1
pw_pull default "$PW_REGISTRY/pullwatch:$LIE"
pw_wait_record revision_mismatch "$PW_REGISTRY/pullwatch:$LIE" "$DIGEST" default
pw_assert_eq "$(pw_stdout_get image.revision kind=revision_mismatch "image.ref=$PW_REGISTRY/pullwatch:$LIE")" "$REV" \
	"the finding names the commit the image really comes from"

pw_ctr -n "$NS" task kill -s TERM "$CID" >/dev/null
pw_poll 15 eval "! pw_proc_alive $CTR_PID" || pw_fail "the containerized agent ignored SIGTERM"
st=0
wait "$CTR_PID" || st=$?
CTR_PID=
pw_assert_eq "$st" 0 "the containerized agent exits 0 on SIGTERM"
pw_assert_cmd "the state directory holds the ledger" test -s "$W/cstate/ledger.json"
if [[ $HAVE_FLEET == 1 ]]; then
	pw_ctr -n "$NS" task kill -s TERM "$FID" >/dev/null
	pw_poll 30 eval "! pw_proc_alive $FLEET_PID" || pw_fail "the containerized collector ignored SIGTERM"
	st=0
	wait "$FLEET_PID" || st=$?
	FLEET_PID=
	pw_assert_eq "$st" 0 "the containerized collector exits 0 on SIGTERM"
fi
pw_done
