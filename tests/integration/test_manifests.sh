#!/usr/bin/env bash
# The Kubernetes manifests (issue 11, items 2 and 3): the overlay the image build wrote
# (build/kubernetes) renders with kustomize; every object validates against the
# Kubernetes OpenAPI schemas (kubernetes-models from npm, pinned in tests/k8s); every
# image is referenced by the digest of the layout just built; the securityContext is
# as tight as the DaemonSet promises; and pullwatch's own `check` judges the images the
# manifests deploy clean. A broken manifest is rejected by the same validator.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

pw_require_pullwatch
SRC=$(cd "${PW_SOURCE_DIR:-$PW_LIB_DIR/../..}" && pwd)
B=$(dirname "$PULLWATCH")
W=$PW_WORK
# kubectl (with kustomize >= v4) comes with this machine image; Debian's kubernetes-client
# 1.20 embeds kustomize v2, which cannot take a directory as a resource
if ! command -v kubectl >/dev/null || ! kubectl kustomize --help >/dev/null 2>&1; then
	echo "[$PW_TEST_NAME] SKIP: no kubectl with kustomize here" >&2
	exit 77
fi
[[ -d $SRC/tests/k8s/node_modules/kubernetes-models ]] ||
	pw_fail "the schema validator is not installed: npm ci --prefix tests/k8s (tests/run does it)"

cmake --build "$B" --target image >"$W/image.log" 2>&1 || pw_fail "cmake --build --target image failed" "$(grep -v '^gmake' "$W/image.log" | tail -3)"
kubectl kustomize "$B/kubernetes" >"$W/all.yaml" 2>"$W/kustomize.err" || pw_fail "kustomize cannot render $B/kubernetes" "$(cat "$W/kustomize.err")"
pw_pass "kubectl kustomize renders the overlay"
V=$(node "$SRC/tests/k8s/validate.mjs" <"$W/all.yaml") || pw_fail "Kubernetes schema validation failed" "$V"
pw_assert_match "$V" '^[0-9]+ valid, 0 invalid$' "every object validates against the Kubernetes schemas ($V)"
# the validator can fail: a wrong hostPath type and a non-quantity memory are rejected
sed -e 's/type: Socket/type: UnixSocket/' -e 's/memory: 16Mi/memory: sixteen/' "$W/all.yaml" >"$W/bad.yaml"
st=0; BADV=$(node "$SRC/tests/k8s/validate.mjs" <"$W/bad.yaml") || st=$?
pw_assert_eq "$st" 1 "a broken manifest fails validation"
pw_assert_match "$BADV" 'hostPath/type' "naming the bad field"

# what the manifests deploy: by digest, the layout's digest, tight securityContext
"$PW_PY" - "$W/all.yaml" "$B/image-digests.json" >"$W/facts" <<'EOF'
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
built = {b["name"]: b["digest"] for b in json.load(open(sys.argv[2]))}
for d in docs:
    if d["kind"] not in ("DaemonSet", "Deployment", "StatefulSet"):
        continue
    pod = d["spec"]["template"]["spec"]
    for c in pod["containers"]:
        name, _, digest = c["image"].partition("@")
        sc = c.get("securityContext", {})
        print(d["kind"], c["name"], "image", c["image"])
        print(d["kind"], c["name"], "digest-matches", built.get(name.rsplit("/", 1)[-1]) == digest)
        print(d["kind"], c["name"], "readOnlyRootFilesystem", sc.get("readOnlyRootFilesystem"))
        print(d["kind"], c["name"], "allowPrivilegeEscalation", sc.get("allowPrivilegeEscalation"))
        print(d["kind"], c["name"], "drop", ",".join(sc.get("capabilities", {}).get("drop", [])))
        print(d["kind"], c["name"], "add", ",".join(sc.get("capabilities", {}).get("add", [])))
        print(d["kind"], c["name"], "seccomp", (sc.get("seccompProfile") or pod.get("securityContext", {}).get("seccompProfile", {})).get("type"))
        print(d["kind"], c["name"], "privileged", sc.get("privileged", False))
        print(d["kind"], c["name"], "memory-limit", c.get("resources", {}).get("limits", {}).get("memory"))
EOF
n=$(grep -c ' image ' "$W/facts")
pw_assert_ge "$n" 1 "the manifests run $n container(s)"
pw_assert_eq "$(grep -c ' digest-matches True' "$W/facts")" "$n" "every image is REPOSITORY/NAME@DIGEST of the layout just built"
pw_assert_eq "$(grep -c ' readOnlyRootFilesystem True' "$W/facts")" "$n" "read-only root file systems"
pw_assert_eq "$(grep -c ' allowPrivilegeEscalation False' "$W/facts")" "$n" "no privilege escalation"
pw_assert_eq "$(grep -c ' drop ALL$' "$W/facts")" "$n" "every capability dropped"
pw_assert_eq "$(grep -c ' add $' "$W/facts")" "$n" "no capability added"
pw_assert_eq "$(grep -c ' seccomp RuntimeDefault' "$W/facts")" "$n" "seccomp RuntimeDefault"
pw_assert_eq "$(grep -c ' privileged False' "$W/facts")" "$n" "not privileged"
pw_assert_eq "$(grep -c ' memory-limit [0-9]' "$W/facts")" "$n" "a memory limit on every container"

# the agent accepts the ConfigMap's config (unknown keys are rejected) and pins
"$PW_PY" - "$W/all.yaml" "$W" <<'EOF2'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "pullwatch-config":
        for k, v in d["data"].items():
            open(f"{sys.argv[2]}/cm-{k}", "w").write(v)
EOF2
st=0; "$PULLWATCH" check --config "$W/cm-config.json" --pins "$W/cm-pins.json" docker.io/library/nginx:1.25.3 >"$W/cm.out" 2>&1 || st=$?
pw_assert_eq "$st" 0 "the agent accepts the ConfigMap's config.json and pins.json" 
st=0; "$PULLWATCH" check --config "$W/cm-config.json" --pins "$W/cm-pins.json" docker.io/library/nginx >/dev/null 2>&1 || st=$?
pw_assert_eq "$st" 1 "and judges with it (an implied :latest is a finding)"

# pullwatch judges its own deployment: every image reference is clean
awk '$3 == "image" { print $4 }' "$W/facts" >"$W/refs"
st=0; "$PULLWATCH" check - <"$W/refs" >"$W/check.out" 2>&1 || st=$?
pw_assert_eq "$st" 0 "pullwatch check judges its own manifests clean ($(tr '\n' ' ' <"$W/refs"))"
# and the check is not blind: the base alone, naming the image by role, is not clean
kubectl kustomize "$SRC/packaging/kubernetes" | "$PW_PY" -c '
import sys, yaml
for d in yaml.safe_load_all(sys.stdin):
    for c in ((d or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])):
        print(c["image"])' >"$W/base-refs"
st=0; "$PULLWATCH" check - <"$W/base-refs" >/dev/null 2>&1 || st=$?
pw_assert_eq "$st" 1 "the base alone (image by role, :latest implied) is a finding"
pw_done
