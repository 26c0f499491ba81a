#!/usr/bin/env bash
# The agent's own OCI image, run as the DaemonSet runs it (issue 11, items 1 and 2):
# `cmake --build BUILD --target image` makes the layout; its labels name the commit;
# skopeo pushes it to the private registry; ctr pulls it and runs it with a read-only
# root, every capability dropped, the runtime's default seccomp profile, containerd's
# socket, journald's socket and a state directory bind-mounted. The containerized agent
# then records a pull made on the "host" containerd (journald + stdout), ships it over
# HTTPS with the image's own dlopen()ed libcurl, judges its own image compliant, and
# exits 0 on SIGTERM.
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
pw_assert_match "$(label libcurl)" 'libcurl\.so\.4' "the dlopen()ed libcurl is in the image"

# ------------------------------------------------------ push, pull, run ----
REF=$PW_REGISTRY/pullwatch:$TAG
skopeo copy --quiet --insecure-policy --dest-tls-verify=false --digestfile "$W/pushed" \
	"oci:$L:$TAG" "docker://$REF" >>"$W/skopeo.log" 2>&1 || pw_fail "skopeo could not push the layout" "$(tail -3 "$W/skopeo.log")"
pw_assert_eq "$(cat "$W/pushed")" "$DIGEST" "the registry stores the layout's manifest digest"
NS=pwsys
pw_pull "$NS" "$REF"
pw_assert_eq "$(pw_image_digest "$NS" "$REF")" "$DIGEST" "containerd pulled the same digest"

# an HTTPS receiver, with a CA of the test's own, to prove the image's libcurl + TLS tree
T=$W/tls
mkdir -p "$T" "$W/etc" "$W/cstate"
ossl() { openssl "$@" >>"$T/openssl.log" 2>&1 || pw_fail "openssl $1 failed" "$(tail -5 "$T/openssl.log")"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=pullwatch image test CA" \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -keyout "$T/ca.key" -out "$T/ca.crt"
ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" -keyout "$T/server.key" -out "$T/server.csr"
printf 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$T/server.ext"
ossl x509 -req -in "$T/server.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" -CAcreateserial -days 2 -extfile "$T/server.ext" -out "$T/server.crt"
cp "$T/ca.crt" "$W/etc/ca.crt"
PORT=$(pw_free_port)
"$PW_PY" "$PW_LIB_DIR/receiver.py" --port "$PORT" --port-file "$W/recv.port" --records "$W/recv.records" \
	--cert "$T/server.crt" --key "$T/server.key" >>"$W/receiver.log" 2>&1 &
PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $!"
pw_poll 10 test -s "$W/recv.port" || pw_fail "receiver did not listen" "$(tail -3 "$W/receiver.log")"

CID=pullwatch-agent
CTR_PID=
img_cleanup() {
	[[ -n $CTR_PID ]] || return 0
	pw_ctr -n "$NS" task kill -s KILL "$CID" >/dev/null 2>&1 || true
	pw_poll 10 eval "! pw_proc_alive $CTR_PID" || true
	pw_ctr -n "$NS" task rm -f "$CID" >/dev/null 2>&1 || true
	pw_ctr -n "$NS" container rm "$CID" >/dev/null 2>&1 || true
}
trap 'rc=$?; img_cleanup; (exit $rc); pw_cleanup' EXIT

PW_NODE=$(pw_node_name)
ENV=(--env "NODE_NAME=$PW_NODE")
# a sanitizer build's image: LeakSanitizer needs ptrace, which no capability allows here
ldd "$PULLWATCH" | grep -q libasan && ENV+=(--env ASAN_OPTIONS=detect_leaks=0)
# --net-host only to reach the loopback receiver; the DaemonSet uses the pod network
# ctr has no "drop ALL": drop each capability of its default set, then check CapEff is 0
CAPS=()
for c in CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP NET_BIND_SERVICE \
	SYS_CHROOT KILL AUDIT_WRITE; do CAPS+=(--cap-drop "CAP_$c"); done
pw_ctr -n "$NS" run --rm --read-only --seccomp "${CAPS[@]}" --net-host "${ENV[@]}" \
	--mount "type=bind,src=$PW_SOCK,dst=/run/containerd/containerd.sock,options=rbind:rw" \
	--mount "type=bind,src=$PW_JOURNAL_SOCKET,dst=/run/systemd/journal/socket,options=rbind:rw" \
	--mount "type=bind,src=$W/cstate,dst=/var/lib/pullwatch,options=rbind:rw" \
	--mount "type=bind,src=$W/etc,dst=/etc/pullwatch,options=rbind:ro" \
	"$REF" "$CID" /usr/bin/pullwatch run --stdout --endpoint "https://127.0.0.1:$PORT/ingest" \
	--endpoint-ca-file /etc/pullwatch/ca.crt --batch-max-age 100ms \
	>"$PW_AGENT_OUT" 2>"$PW_AGENT_ERR" </dev/null &
CTR_PID=$!
PW_AGENT_ERR_MARK=0
pw_poll 30 grep -q 'subscribed to containerd events' "$PW_AGENT_ERR" ||
	pw_fail "the containerized agent did not subscribe within 30 s" "$(tail -5 "$PW_AGENT_ERR")"
pw_pass "the containerized agent subscribed to the host containerd"
APID=$(pw_ctr -n "$NS" task ls | awk -v c="$CID" '$1 == c { print $2 }')
pw_assert_eq "$(awk '/^CapEff:/ { print $2 }' "/proc/$APID/status")" 0000000000000000 "the agent runs with no capability"
pw_assert_eq "$(awk '/^CapBnd:/ { print $2 }' "/proc/$APID/status")" 0000000000000000 "and none in its bounding set"
pw_assert_eq "$(awk '/^Seccomp:/ { print $2 }' "/proc/$APID/status")" 2 "under a seccomp filter"
pw_assert_eq "$(awk '/^NoNewPrivs:/ { print $2 }' "/proc/$APID/status")" 1 "with no_new_privs"

# its own image, seen in the first listing: a pull record, and no finding at all
pw_wait_stdout pull 1 20 "image.ref=$REF" "image.digest=$DIGEST"
# a pull on the host containerd, recorded by the containerized agent in journald + stdout
D=$(pw_build_image app latest "" "image-test-$RANDOM")
pw_pull default "$PW_REGISTRY/app:latest"
pw_wait_record latest_tag "$PW_REGISTRY/app:latest" "$D" default
pw_assert_eq "$(pw_stdout_count "image.ref=$REF" "kind!=pull")" 0 "pullwatch raises no finding about its own image"
# shipped over HTTPS by the image's libcurl
ID=$(pw_stdout_get id kind=latest_tag "image.ref=$PW_REGISTRY/app:latest" | head -1)
pw_poll 20 grep -q "\"id\": *\"$ID\"" "$W/recv.records" ||
	pw_fail "the receiver did not get record $ID over HTTPS" "$(grep -i ship "$PW_AGENT_ERR" | tail -3)"
pw_pass "the record reached the HTTPS endpoint"

pw_ctr -n "$NS" task kill -s TERM "$CID" >/dev/null
pw_poll 15 eval "! pw_proc_alive $CTR_PID" || pw_fail "the containerized agent ignored SIGTERM"
st=0
wait "$CTR_PID" || st=$?
CTR_PID=
pw_assert_eq "$st" 0 "the containerized agent exits 0 on SIGTERM"
pw_assert_cmd "the state directory holds the ledger" test -s "$W/cstate/ledger.json"
pw_done
