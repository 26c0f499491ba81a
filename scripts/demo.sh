#!/usr/bin/env bash
# pullwatch demo, on a fresh Debian 12 machine, as root:
#   installs what is missing, builds pullwatch into build/, starts a private
#   systemd-journald (when none runs), docker-registry and containerd, runs the
#   agent, pushes and pulls a few images the way it happens in life, shows the
#   journal entries, the --stdout JSON and a `pullwatch scan`; then the fleet: a second
#   containerd and agent, both shipping to one pullwatch-fleet collector, a tag that
#   diverges between the two nodes, and the HTML fleet report written to a file whose
#   path it prints (kept after the demo); then stops
#   everything it started. Nothing outside a temporary dir (and build/) is touched:
#   the private containerd and registry use their own socket, port and storage.
#
#   PW_SKIP_INSTALL=1   don't apt-get
#   PW_SKIP_BUILD=1     use an existing build/pullwatch (or $PULLWATCH) and build/pullwatch-fleet
#                       (or $PULLWATCH_FLEET)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

[[ $(id -u) == 0 ]] || { echo "demo.sh: run as root (it starts containerd and journald)" >&2; exit 1; }

PACKAGES=(containerd docker-registry skopeo systemd python3
          build-essential cmake pkg-config libcurl4-openssl-dev libjansson-dev libsystemd-dev
          libprotobuf-c-dev protobuf-c-compiler libcmocka-dev zlib1g-dev libnghttp2-dev
          libmicrohttpd-dev libsqlite3-dev libpq-dev)
if [[ ${PW_SKIP_INSTALL:-0} != 1 ]]; then
	missing=()
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if ((${#missing[@]})); then
		echo "== installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
fi

if [[ ${PW_SKIP_BUILD:-0} != 1 ]]; then
	echo "== building pullwatch in build/"
	cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build "$ROOT/build" -j"$(nproc)" --target pullwatch pullwatch-fleet >/dev/null
fi
export PULLWATCH=${PULLWATCH:-$ROOT/build/pullwatch}
[[ -x $PULLWATCH ]] || { echo "demo.sh: $PULLWATCH was not built" >&2; exit 1; }

PW_TEST_NAME=demo PW_NO_SUMMARY=1
. "$ROOT/tests/integration/lib.sh"
# a wait that shows what is missing instead of ending the demo
soft() { ("$@") || echo "   (not seen: $*)"; }

pw_setup_deps_check
echo "== starting journald (if needed), docker-registry, containerd in $PW_WORK"
pw_start_journald
pw_start_registry
pw_start_containerd
R=$PW_REGISTRY
echo "   registry $R, containerd $PW_SOCK"

echo "== building and pushing images"
SHA=3f2c1ab9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3
d_latest=$(pw_build_image shop/web latest "" web-1)
d_pinned=$(pw_build_image shop/api 1.4.2 "$SHA" api-1)
d_liar=$(pw_build_image shop/worker 3f2c1ab 0000000000000000000000000000000000000000 worker-1)
printf '   %-34s %s\n' "$R/shop/web:latest" "$d_latest" "$R/shop/api:1.4.2" "$d_pinned" \
	"$R/shop/worker:3f2c1ab" "$d_liar"
# CI built and pinned shop/cart:2.0.0; then someone pushed another image over the tag
d_cart_ci=$(pw_build_image shop/cart 2.0.0 "$SHA" cart-1)
d_cart=$(pw_build_image shop/cart 2.0.0 "$SHA" cart-tampered)
printf '   %-34s %s (CI pinned %s)\n' "$R/shop/cart:2.0.0" "$d_cart" "$d_cart_ci"
PINS=$PW_WORK/pins.json
printf '{ "%s": "%s", "%s": "%s" }\n' "$R/shop/api:1.4.2" "$d_pinned" "$R/shop/cart:2.0.0" "$d_cart_ci" >"$PINS"
echo "   pins file (as CI would write it): $(cat "$PINS")"

NODE=demo-$(uname -n | cut -d. -f1)-$(head -c 3 /dev/urandom | od -An -tx1 | tr -d " \n")
echo "== starting: pullwatch run --node $NODE --stdout --pins pins.json"
pw_start_agent "$NODE" --pins "$PINS"
echo "   subscribed to containerd events after ${PW_AGENT_READY_MS} ms"

echo "== pulling with ctr (namespace k8s.io, as the kubelet would)"
pw_pull k8s.io "$R/shop/web:latest"
pw_pull k8s.io "$R/shop/api:1.4.2"
pw_pull k8s.io "$R/shop/worker:3f2c1ab" # commit-SHA tag, but the image says another revision
pw_pull k8s.io "$R/shop/cart:2.0.0"      # not what CI pinned
soft pw_wait_record latest_tag "$R/shop/web:latest" "$d_latest" k8s.io
soft pw_wait_record pull "$R/shop/api:1.4.2" "$d_pinned" k8s.io
soft pw_wait_record revision_mismatch "$R/shop/worker:3f2c1ab" "$d_liar" k8s.io
soft pw_wait_record digest_mismatch "$R/shop/cart:2.0.0" "$d_cart" k8s.io

echo "== someone re-pushes shop/web:latest; a pod restarts on this node and pulls it again"
d_moved=$(pw_build_image shop/web latest "" web-2)
echo "   $R/shop/web:latest now $d_moved"
pw_pull k8s.io "$R/shop/web:latest"
pw_ctr -n k8s.io containers create --label io.kubernetes.pod.name=web-7d9f-x2x4q \
	--label io.kubernetes.pod.namespace=shop --label io.kubernetes.container.name=web \
	"$R/shop/web:latest" demo-web-container >/dev/null
soft pw_wait_record tag_moved "$R/shop/web:latest" "$d_moved" k8s.io
soft pw_wait_journal "$NODE" "" 1 10 'PULLWATCH_KIND!=pull' K8S_POD=web-7d9f-x2x4q

echo
echo "== journald: journalctl SYSLOG_IDENTIFIER=pullwatch NODE_NAME=$NODE"
journalctl -q -o json --no-pager SYSLOG_IDENTIFIER=pullwatch "NODE_NAME=$NODE" | "$PW_PY" -c '
import json, sys
fmt = "%-3s %-17s %-44s %-19s %-15s %s"
print(fmt % ("PRI", "PULLWATCH_KIND", "IMAGE_REF", "IMAGE_DIGEST", "K8S_POD", "MESSAGE"))
for line in sys.stdin:
    if not line.strip():
        continue
    e = json.loads(line)
    g = lambda k: str(e.get(k, ""))
    print(fmt % (g("PRIORITY"), g("PULLWATCH_KIND"), g("IMAGE_REF")[-44:], g("IMAGE_DIGEST")[:19],
                 g("K8S_POD"), g("MESSAGE")))
'
echo
echo "== one entry in full: journalctl -o json-pretty ... PULLWATCH_KIND=tag_moved"
journalctl -q -o json-pretty --no-pager SYSLOG_IDENTIFIER=pullwatch "NODE_NAME=$NODE" PULLWATCH_KIND=tag_moved -n 1 |
	grep -vE '"(__CURSOR|__MONOTONIC_TIMESTAMP|_BOOT_ID|_MACHINE_ID|_CAP_EFFECTIVE|_TRANSPORT|_RUNTIME_SCOPE|_SOURCE_REALTIME_TIMESTAMP)"' || true
echo
echo "== pullwatch run --stdout (JSON lines)"
cat "$PW_AGENT_OUT"
echo
echo "== pullwatch scan --address $PW_SOCK"
st=0
"$PULLWATCH" scan --address "$PW_SOCK" || st=$?
echo "   (exit status $st: 0 clean, 1 findings, 2 error)"
echo
echo "== pullwatch check (offline, as a CI job would)"
st=0
"$PULLWATCH" check --pins "$PINS" nginx "$R/shop/api:1.4.2" "registry.example.com/team/app@$d_pinned" || st=$?
echo "   (exit status $st)"

echo
echo "== the fleet: a second node, both agents shipping to one collector, the fleet report"
FLEET=${PULLWATCH_FLEET:-$(dirname "$PULLWATCH")/pullwatch-fleet}
if [[ ! -x $FLEET ]]; then
	echo "   ($FLEET was not built: skipping the fleet)"
else
	FPORT=$(pw_free_port)
	"$FLEET" serve --listen "127.0.0.1:$FPORT" --db "sqlite:$PW_WORK/fleet.db" >"$PW_WORK/fleet.log" 2>&1 &
	PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $!"
	soft pw_poll 20 pw_http_ok "http://127.0.0.1:$FPORT/readyz"
	echo "   collector: pullwatch-fleet serve --listen 127.0.0.1:$FPORT --db sqlite:fleet.db"
	# node 1: the agent above, now shipping (its start-up inventory carries what it holds)
	pw_stop_agent >/dev/null
	pw_start_agent "$NODE" --pins "$PINS" --cluster demo --endpoint "http://127.0.0.1:$FPORT/v1/records" \
		--batch-max-age 200ms
	# node 2: its own containerd and agent
	NODE2=$NODE-b
	D2=$PW_WORK/node2
	mkdir -p "$D2/containerd/root" "$D2/containerd/state" "$D2/state"
	sed "s|$PW_WORK/containerd|$D2/containerd|g; s|$PW_WORK/containerd.sock|$D2/containerd.sock|g; s|$PW_WORK/containerd-debug.sock|$D2/containerd-debug.sock|g" \
		"$PW_WORK/containerd/config.toml" >"$D2/containerd/config.toml"
	containerd --config "$D2/containerd/config.toml" >"$D2/containerd.log" 2>&1 &
	PW_EXTRA_PIDS="$PW_EXTRA_PIDS $!"
	soft pw_poll 30 ctr -a "$D2/containerd.sock" version
	"$PULLWATCH" run --address "$D2/containerd.sock" --state-dir "$D2/state" --node "$NODE2" --cluster demo \
		--endpoint "http://127.0.0.1:$FPORT/v1/records" --batch-max-age 200ms >"$D2/agent.out" 2>"$D2/agent.err" </dev/null &
	PW_EXTRA_PIDS="$PW_EXTRA_PIDS $!"
	soft pw_poll 20 grep -q 'subscribed to containerd events' "$D2/agent.err"
	# shop/web:latest is pushed once more; node 2 pulls it and starts a pod on it; then the
	# tag is re-pushed under that pod, node 2 pulls again and the pod restarts on the new
	# digest: node 1 keeps the one it has
	ctr2() { ctr -a "$D2/containerd.sock" -n k8s.io "$@"; }
	d_web3=$(pw_build_image shop/web latest "" web-3)
	ctr2 images pull --plain-http "$R/shop/web:latest" >/dev/null
	ctr2 containers create --label io.kubernetes.pod.name=web-5c8d-q7k2p --label io.kubernetes.pod.namespace=shop \
		--label io.kubernetes.container.name=web "$R/shop/web:latest" demo-web-b >/dev/null
	d_web4=$(pw_build_image shop/web latest "" web-4)
	ctr2 images pull --plain-http "$R/shop/web:latest" >/dev/null
	# the pod's container restarts and runs what the tag says now
	ctr2 containers create --label io.kubernetes.pod.name=web-5c8d-q7k2p --label io.kubernetes.pod.namespace=shop \
		--label io.kubernetes.container.name=web "$R/shop/web:latest" demo-web-b2 >/dev/null
	echo "   $NODE holds $R/shop/web:latest at $d_moved"
	echo "   $NODE2 pulled it at $d_web3 (pod shop/web-5c8d-q7k2p), then at $d_web4 (the pod restarted on it)"
	reported() {
		"$FLEET" report --db "sqlite:$PW_WORK/fleet.db" --format json 2>/dev/null |
			"$PW_PY" -c 'import json, sys; r = json.load(sys.stdin); sys.exit(not (any(d["ref"] == sys.argv[1] for d in r["divergence"]) and r["moves"]))' "$R/shop/web:latest"
	}
	soft pw_poll 30 reported
	REPORT_HTML=$(mktemp /tmp/pullwatch-fleet-report.XXXXXX.html)
	"$FLEET" report --db "sqlite:$PW_WORK/fleet.db" --format html -o "$REPORT_HTML" && chmod 644 "$REPORT_HTML"
	echo "   curl http://127.0.0.1:$FPORT/api/v1/report?workload=shop/web (the live report's JSON):"
	curl -sf "http://127.0.0.1:$FPORT/api/v1/report?workload=shop/web" | "$PW_PY" -c '
import json, sys
r = json.load(sys.stdin)
h = r["headline"]
print("   nodes %d (stale %d), images %d, compliance %s %%" % (h["nodes"], h["nodes_stale"], h["images"], h["percent"]))
print("   divergent tags:")
for d in r["divergence"]:
    print("     %s" % d["ref"])
    for g in d["digests"]:
        print("        %s  on %s" % (g["digest"][:19], ", ".join(g["nodes"])))
print("   tag moves:")
for m in r["moves"]:
    print("     %s  %s -> %s  on %s" % (m["first"][:19], m["previous_digest"][:19], m["digest"][:19], ", ".join(m["nodes"])))
print("   what runs where (?workload=shop/web), and the rollback target:")
for p in r["placements"]:
    prev = p["previous"]["digest"][:19] if p["previous"] else "-"
    print("     %s %s/%s: now %s, before %s" % (p["node"], p["namespace"], p["pod"], (p["digest"] or "")[:19], prev))'
	echo "   the HTML report (one self-contained file): $REPORT_HTML"
	echo "   (the collector serves the same live at /report; the demo stops it below)"
fi

echo
echo "== stopping"
pw_stop_agent >/dev/null
echo "   the journal entries stay readable with: journalctl SYSLOG_IDENTIFIER=pullwatch NODE_NAME=$NODE"
pw_done
