#!/usr/bin/env bash
# Issue 3: each finding kind provoked the way it happens in life, checked in
# journald and on --stdout: tag_moved, digest_mismatch (and silence for agreeing
# pins, including a multi-arch index), revision_mismatch (and silence when the
# commit-SHA tag agrees), one record for the CRI's three image records, the pod
# behind a finding, no repeats across an agent restart, a ledger that remembers
# the old digest, and a truncated state file that is survived.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_start_all

R=$PW_REGISTRY
SHA_GOOD=3f2c1ab9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3
# images known before the agent starts, so the pins file can name their digests
d_app1=$(pw_build_image app latest "" app-latest-1)
d_pinbad=$(pw_build_image pinned 1.0.0 "$SHA_GOOD" pinned-seed)
d_pingood=$(pw_build_image good 1.0.0 "$SHA_GOOD" good-seed)
read -r d_idx _ < <(pw_build_index multi 2.0.0 "$SHA_GOOD" multi-seed)
read -r d_idx2 d_idx2_host < <(pw_build_index multihost 2.0.0 "$SHA_GOOD" multihost-seed)
d_shaok=$(pw_build_image sha 3f2c1ab "$SHA_GOOD" sha-ok)
d_shabad=$(pw_build_image sha 9e8d7c6 1111111111111111111111111111111111111111 sha-bad)
d_cri=$(pw_build_image cri 1.2.0 "$SHA_GOOD" cri-seed)
d_web=$(pw_build_image web latest "" web-seed)
d_main=$(pw_build_image app main "$SHA_GOOD" app-main)
wrong=sha256:$(printf 'not the pinned image' | sha256sum | cut -d' ' -f1)

PINS=$PW_WORK/pins.json
cat >"$PINS" <<EOF
{
  "$R/pinned:1.0.0": "$wrong",
  "$R/good:1.0.0": "$d_pingood",
  "$R/multi:2.0.0": "$d_idx",
  "$R/multihost:2.0.0": "$d_idx2_host"
}
EOF

NODE=$(pw_node_name)
pw_start_agent "$NODE" --pins "$PINS"

# --- tag_moved ---------------------------------------------------------------------
pw_pull default "$R/app:latest"
pw_wait_record latest_tag "$R/app:latest" "$d_app1" default
d_app2=$(pw_build_image app latest "" app-latest-2)
pw_assert_ne "$d_app2" "$d_app1" "the re-pushed app:latest differs"
pw_pull default "$R/app:latest"
pw_wait_record tag_moved "$R/app:latest" "$d_app2" default 20 "IMAGE_PREVIOUS_DIGEST=$d_app1"
pw_assert_eq "$(pw_stdout_get image.previous_digest kind=tag_moved "image.digest=$d_app2")" "$d_app1" \
	"stdout: tag_moved carries previous_digest"
# the tag moves back and forth (A→B→A→B): every move is a change, raised each time
d_back=$(pw_build_image app latest "" app-latest-1)
pw_assert_eq "$d_back" "$d_app1" "the same build gives the same digest"
pw_pull default "$R/app:latest"
pw_wait_record tag_moved "$R/app:latest" "$d_app1" default 20 "IMAGE_PREVIOUS_DIGEST=$d_app2"
pw_assert_eq "$(pw_build_image app latest "" app-latest-2)" "$d_app2" "re-pushed B"
pw_pull default "$R/app:latest"
pw_wait_stdout tag_moved 2 20 "image.digest=$d_app2" "image.previous_digest=$d_app1"
pw_assert_eq "$(pw_stdout_count kind=pull "image.ref=$R/app:latest" "image.digest=$d_app2")" 2 \
	"each pull that moved the tag is a pull record"
ids=$(pw_stdout_get id kind=tag_moved "image.digest=$d_app2" | sort | uniq -d)
pw_assert_eq "$ids" "" "the two moves to B are two records with their own ids"

# --- mutable_tag ------------------------------------------------------------------------
pw_pull default "$R/app:main"
pw_wait_record mutable_tag "$R/app:main" "$d_main" default

# --- pins ----------------------------------------------------------------------------------
pw_pull default "$R/pinned:1.0.0"
pw_wait_record digest_mismatch "$R/pinned:1.0.0" "$d_pinbad" default 20 "IMAGE_EXPECTED_DIGEST=$wrong"
pw_assert_eq "$(pw_stdout_get image.expected_digest kind=digest_mismatch "image.ref=$R/pinned:1.0.0")" "$wrong" \
	"stdout: digest_mismatch carries expected_digest"
pw_pull default "$R/good:1.0.0"
pw_pull default "$R/multi:2.0.0"
pw_pull default "$R/multihost:2.0.0"
pw_wait_record pull "$R/multi:2.0.0" "$d_idx" default
pw_wait_record pull "$R/multihost:2.0.0" "$d_idx2" default

# --- revision against a commit-SHA tag ----------------------------------------------------
pw_pull default "$R/sha:3f2c1ab"
pw_pull default "$R/sha:9e8d7c6"
pw_wait_record pull "$R/sha:3f2c1ab" "$d_shaok" default
pw_wait_record revision_mismatch "$R/sha:9e8d7c6" "$d_shabad" default 20 IMAGE_REVISION=1111111111111111111111111111111111111111

# --- CRI: three image records for one pull -----------------------------------------------
read -r got_cri _ < <(pw_cri_style_pull k8s.io "$R/cri:1.2.0")
pw_assert_eq "$got_cri" "$d_cri" "CRI-style pull stored the pushed digest"

pw_sync_agent default
pw_assert_eq "$(pw_findings_count "$R/good:1.0.0")" 0 "a pin that agrees: no finding"
pw_assert_eq "$(pw_findings_count "$R/multi:2.0.0")" 0 "a multi-arch index pinned at the index digest: no finding"
pw_assert_eq "$(pw_findings_count "$R/multihost:2.0.0")" 0 "a multi-arch index pinned at the host manifest digest: no finding"
pw_assert_eq "$(pw_findings_count "$R/sha:3f2c1ab")" 0 "a commit-SHA tag matching its revision label: no finding"
pw_assert_eq "$(pw_journal_count "$NODE" pull CONTAINERD_NAMESPACE=k8s.io "IMAGE_DIGEST=$d_cri")" 1 \
	"CRI's three records for one pull: one pull record in journald"
pw_assert_eq "$(pw_stdout_count kind=pull namespace=k8s.io "image.digest=$d_cri")" 1 \
	"CRI's three records for one pull: one pull record on stdout"
pw_assert_eq "$(pw_journal_count "$NODE" "" 'PULLWATCH_KIND!=pull' CONTAINERD_NAMESPACE=k8s.io "IMAGE_DIGEST=$d_cri")" 0 \
	"a versioned CRI pull with a revision label: no finding"

# a CRI pull of :latest: one record, one latest_tag
d_cril=$(pw_build_image crilatest latest "" crilatest-seed)
pw_cri_style_pull k8s.io "$R/crilatest:latest" >/dev/null
pw_wait_record latest_tag "$R/crilatest:latest" "$d_cril" k8s.io
pw_sync_agent k8s.io
pw_assert_eq "$(pw_journal_count "$NODE" pull CONTAINERD_NAMESPACE=k8s.io "IMAGE_DIGEST=$d_cril")" 1 "CRI :latest pull: one pull record"
pw_assert_eq "$(pw_journal_count "$NODE" latest_tag CONTAINERD_NAMESPACE=k8s.io "IMAGE_DIGEST=$d_cril")" 1 "CRI :latest pull: one latest_tag finding"

# --- the pod behind a finding --------------------------------------------------------------
pw_pull k8s.io "$R/web:latest"
pw_ctr -n k8s.io containers create --label io.kubernetes.pod.name=web-0 \
	--label io.kubernetes.pod.namespace=shop --label io.kubernetes.container.name=web \
	"$R/web:latest" web-0-cid >/dev/null
pw_wait_journal "$NODE" "" 1 20 'PULLWATCH_KIND!=pull' K8S_POD=web-0 K8S_NAMESPACE=shop K8S_CONTAINER=web "IMAGE_DIGEST=$d_web"
pw_wait_stdout latest_tag 1 20 workload.pod=web-0 workload.namespace=shop workload.container=web "image.digest=$d_web"
# a pod's sandbox (pause) container, as the CRI plugin labels it, is not a workload: no
# finding names its pod, while the workload container created after it is named
pw_ctr -n k8s.io containers create --label io.kubernetes.pod.name=web-1 \
	--label io.kubernetes.pod.namespace=shop --label io.cri-containerd.kind=sandbox \
	"$R/web:latest" web-1-sandbox >/dev/null
pw_ctr -n k8s.io containers create --label io.kubernetes.pod.name=web-1 \
	--label io.kubernetes.pod.namespace=shop --label io.kubernetes.container.name=web \
	--label io.cri-containerd.kind=container "$R/web:latest" web-1-cid >/dev/null
pw_wait_stdout latest_tag 1 20 workload.pod=web-1 workload.container=web
pw_assert_eq "$(pw_stdout_count kind=latest_tag workload.pod=web-1)" 1 \
	"the sandbox container gives no finding, its pod's workload container one"
pw_assert_eq "$(pw_stdout_count workload.container_id=web-1-sandbox)" 0 "no record names the sandbox container"
# web:latest moves while web-0 and web-1 still run the old digest: tag_moved names them
d_web2=$(pw_build_image web latest "" web-seed-2)
pw_pull k8s.io "$R/web:latest"
pw_wait_record tag_moved "$R/web:latest" "$d_web2" k8s.io 20 "IMAGE_PREVIOUS_DIGEST=$d_web"
pw_assert_match "$(pw_stdout_get message kind=tag_moved "image.digest=$d_web2")" \
	"still running the previous digest: .*shop/web-0" "tag_moved names the pods still on the old digest"
pw_assert_match "$(pw_stdout_get workload.pod kind=tag_moved "image.digest=$d_web2")" "^web-[01]$" \
	"tag_moved carries one of those pods as its workload"

# --- restart the agent: no repeated findings, the ledger remembers ---------------------------
pw_sync_agent default
before=$(pw_findings_list)
jbefore=$(pw_journal_count "$NODE" "" 'PULLWATCH_KIND!=pull')
pw_stop_agent
pw_assert_cmd "the ledger is written to STATE_DIR/ledger.json" test -s "$PW_STATE_DIR/ledger.json"
# what resolving each image found is kept by digest: the restart's reconcile reads no
# blob of a known digest, and must judge exactly as before (the checks below)
pw_assert_cmd "the images' config facts are written to STATE_DIR/facts" test -s "$PW_STATE_DIR/facts"
pw_start_agent "$NODE" --pins "$PINS"
pw_sync_agent default
sync_ref=$PW_SYNC_REF
after=$(pw_findings_list "image.ref!=$sync_ref")
pw_assert_eq "$after" "$before" "no finding is raised again after an agent restart (stdout)"
pw_assert_eq "$(pw_journal_count "$NODE" "" 'PULLWATCH_KIND!=pull' "IMAGE_REF!=$sync_ref")" "$jbefore" \
	"no finding is raised again after an agent restart (journald)"
d_app3=$(pw_build_image app latest "" app-latest-3)
pw_pull default "$R/app:latest"
pw_wait_record tag_moved "$R/app:latest" "$d_app3" default 20 "IMAGE_PREVIOUS_DIGEST=$d_app2"
pw_pass "after a restart the ledger still knows app:latest was $d_app2"

# --- a truncated state file ------------------------------------------------------------------
pw_stop_agent
size=$(stat -c %s "$PW_STATE_DIR/ledger.json")
truncate -s $((size / 2)) "$PW_STATE_DIR/ledger.json"
fsize=$(stat -c %s "$PW_STATE_DIR/facts")
truncate -s $((fsize - 1)) "$PW_STATE_DIR/facts"
pw_start_agent "$NODE" --pins "$PINS"
pw_assert_cmd "a damaged facts file is moved aside, said in one line" \
	eval "pw_agent_err_since_start | grep -q 'facts is corrupt (.*): moved aside as facts.corrupt-'"
# saved right after the agent says it is subscribed (the save follows readiness)
pw_poll 10 test -s "$PW_STATE_DIR/facts"
pw_assert_cmd "and rebuilt from the images" test -s "$PW_STATE_DIR/facts"
pw_assert_cmd "the agent says the state file is damaged" \
	eval "pw_agent_err_since_start | grep -Eiq 'ledger|state'"
pw_note "stderr about the damaged state: $(pw_agent_err_since_start | grep -Ei 'ledger|state' | head -1)"
pw_assert_cmd "the damaged state file is kept aside for inspection" \
	eval "ls -A '$PW_STATE_DIR' | grep -v '^ledger\.json$' | grep -q ledger"
pw_assert_cmd "the agent keeps running" pw_agent_alive
# the current state is rebuilt from containerd: app:latest is known at d_app3
d_app4=$(pw_build_image app latest "" app-latest-4)
pw_pull default "$R/app:latest"
pw_wait_record tag_moved "$R/app:latest" "$d_app4" default 20 "IMAGE_PREVIOUS_DIGEST=$d_app3"
pw_pass "after a truncated state file the current digest of app:latest was rebuilt from containerd"

pw_assert_stdout_jsonl
pw_stop_agent
pw_assert_cmd "a ledger.json is written again" test -s "$PW_STATE_DIR/ledger.json"
pw_done
