#!/usr/bin/env bash
# The node inventory as the endpoint receives it: a snapshot id shared by its parts,
# per image the repository name, media type, revision (when known), compliance with
# its finding kinds, and the pods the agent knows are running its digest.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_start_all

R=$PW_REGISTRY
W=$PW_WORK
SHA=3f2c1ab9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3
d_web=$(pw_build_image invweb latest "" invweb-seed)
d_app=$(pw_build_image invapp 1.0.0 "$SHA" invapp-seed)

rm -f "$W/inv.port"
"$PW_PY" "$PW_LIB_DIR/receiver.py" --port 0 --port-file "$W/inv.port" --records "$W/inv.records" \
	>>"$W/receiver.log" 2>&1 &
RECV_PID=$!
PW_EXTRA_PIDS="${PW_EXTRA_PIDS:-} $RECV_PID"
pw_poll 10 test -s "$W/inv.port" || pw_fail "receiver did not listen within 10 s" "$(tail -5 "$W/receiver.log")"
URL="http://127.0.0.1:$(cat "$W/inv.port")/ingest"

# inventories received so far
inv_count() { grep -c '"kind": *"inventory"' "$W/inv.records" 2>/dev/null || true; }

NODE=$(pw_node_name)
pw_start_agent "$NODE" --endpoint "$URL" --cluster inv-cluster
pw_pull k8s.io "$R/invweb:latest"
pw_pull k8s.io "$R/invapp:1.0.0"
pw_ctr -n k8s.io containers create --label io.kubernetes.pod.name=web-0 \
	--label io.kubernetes.pod.namespace=shop --label io.kubernetes.container.name=web \
	"$R/invweb:latest" inv-web-0 >/dev/null
pw_wait_stdout latest_tag 1 20 workload.pod=web-0 "image.digest=$d_web"
pw_stop_agent

# a restart lists everything again: its inventory names the pod from the containers
# listing (the ledger, saved at exit, says which digest the container's image is)
before=$(inv_count)
pw_start_agent "$NODE" --endpoint "$URL" --cluster inv-cluster
pw_poll 20 eval '(( $(inv_count) > before ))' || pw_fail "no inventory after the restart" "$(tail -5 "$PW_AGENT_ERR")"

"$PW_PY" - "$W/inv.records" "$R" "$d_web" "$d_app" "$SHA" "$NODE" <<'PY' || pw_fail "inventory record check failed"
import json, re, sys
path, reg, d_web, d_app, sha, node = sys.argv[1:]
recs = [json.loads(l)["record"] for l in open(path)]
inv = [r for r in recs if r.get("kind") == "inventory"]
last = inv[-1]
snap = last["snapshot"]
assert re.fullmatch(r"[0-9a-f]{32}", snap), snap
parts = [r for r in inv if r["snapshot"] == snap]
assert len(parts) == last["parts"] == 1 and last["part"] == 1, (len(parts), last["parts"])
assert len({r["snapshot"] for r in inv}) == len(inv), "every snapshot has its own id"
assert last["node"] == node and last["cluster"] == "inv-cluster", last
imgs = {i["ref"]: i for i in last["images"] if i["namespace"] == "k8s.io"}
web, app = imgs[reg + "/invweb:latest"], imgs[reg + "/invapp:1.0.0"]
assert web["name"] == reg + "/invweb" and web["digest"] == d_web and web["tag"] == "latest", web
assert web["media_type"] == "application/vnd.oci.image.manifest.v1+json", web
assert "revision" not in web, web
assert web["compliant"] is False and "latest_tag" in web["findings"], web
assert web["pods"] == [{"namespace": "shop", "pod": "web-0", "container": "web"}], web["pods"]
assert app["name"] == reg + "/invapp" and app["digest"] == d_app and app["revision"] == sha, app
assert app["compliant"] is True and app["findings"] == [] and app["pods"] == [], app
assert last["total"] == len(last["images"]), last["total"]
assert last["compliant"] == sum(1 for i in last["images"] if i["compliant"]), last["compliant"]
print("inventory ok: snapshot %s, %d images" % (snap, last["total"]))
PY
pw_pass "inventory: snapshot id, name, media_type, revision, compliance and pods"
pw_stop_agent
pw_done
