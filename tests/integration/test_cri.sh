#!/usr/bin/env bash
# Issue 12, item 2: the kubelet's pull path. containerd's CRI plugin, enabled with a
# registry hosts.toml, pulls through runtime.v1.ImageService/PullImage called from a real
# gRPC client (python3-grpcio). The plugin writes three image records per pull (tag,
# repo digest, image id): the agent makes one pull record and one finding of it; pulling
# the same digest again is silent; a re-push of the tag pulled again is one tag_moved.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
export PW_CONTAINERD_CRI=1
pw_start_all
pw_cri_registry_hosts
"$PW_PY" -c 'import grpc' 2>/dev/null || pw_fail "python3-grpcio is missing (apt-get install python3-grpcio)"

R=$PW_REGISTRY
cri_pull() {
	"$PW_PY" "$PW_LIB_DIR/cri_pull.py" "$PW_SOCK" "$1" >"$PW_WORK/cri.out" 2>"$PW_WORK/cri.err" ||
		pw_fail "CRI PullImage $1 failed" "$(cat "$PW_WORK/cri.err")"
}
d1=$(pw_build_image kube-web latest 0123456789abcdef0123456789abcdef01234567 kube-web-1)

NODE=$(pw_node_name)
pw_start_agent "$NODE"
cri_pull "$R/kube-web:latest"
pw_assert_match "$(cat "$PW_WORK/cri.out")" "^sha256:[0-9a-f]{64}$" "PullImage answers an image id"
pw_assert_eq "$(pw_image_digest k8s.io "$R/kube-web:latest")" "$d1" "the CRI plugin stored the tag in k8s.io"
pw_wait_record latest_tag "$R/kube-web:latest" "$d1" k8s.io
pw_wait_record pull "$R/kube-web:latest" "$d1" k8s.io
pw_sync_agent k8s.io # everything the plugin wrote for that pull has been judged
pw_assert_eq "$(pw_stdout_count kind=pull "image.digest=$d1")" 1 "one CRI pull, one pull record (not one per image record)"
pw_assert_eq "$(pw_stdout_count kind=latest_tag "image.digest=$d1")" 1 "one CRI pull, one latest_tag finding"
pw_assert_eq "$(pw_stdout_count "image.digest=$d1" "kind!=pull" "kind!=latest_tag")" 0 "and no other finding"

# the same digest again: silent
cri_pull "$R/kube-web:latest"
pw_sync_agent k8s.io
pw_assert_eq "$(pw_stdout_count "image.digest=$d1")" 2 "a re-pull of the same digest adds nothing"

# re-pushed and pulled again: one tag_moved to the new digest
d2=$(pw_build_image kube-web latest 89abcdef0123456789abcdef0123456789abcdef kube-web-2)
pw_assert_ne "$d2" "$d1" "the re-push changed the digest"
cri_pull "$R/kube-web:latest"
pw_wait_record tag_moved "$R/kube-web:latest" "$d2" k8s.io
pw_sync_agent k8s.io
pw_assert_eq "$(pw_stdout_count kind=tag_moved "image.digest=$d2")" 1 "one tag_moved for the re-push"
pw_assert_eq "$(pw_stdout_get image.previous_digest kind=tag_moved "image.digest=$d2")" "$d1" \
	"tag_moved names the previous digest"
pw_assert_eq "$(pw_stdout_count kind=pull "image.digest=$d2")" 1 "one pull record for the new digest"
pw_stop_agent
pw_done
