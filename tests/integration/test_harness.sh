#!/usr/bin/env bash
# The harness itself, without pullwatch: journald, registry and containerd come
# up, images built by mkoci.py are pushed by skopeo and pulled by ctr with the
# digests we computed, CRI-style records and Kubernetes-labelled containers can
# be made, journal entries with pullwatch's fields can be written and found by
# the query helpers, and images survive a containerd restart.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

pw_setup_deps_check
pw_start_journald
pw_start_registry
pw_start_containerd
pw_note "daemons up: journald $([[ $PW_JOURNALD_STARTED == 1 ]] && echo "started in ${PW_JOURNALD_START_MS} ms" || echo "already running"), registry ${PW_REGISTRY_START_MS} ms, containerd ${PW_CTD_START_MS} ms"

# --- the poller is bounded and returns failure on timeout -------------------
t0=$(pw_now_ms)
if pw_poll 0.3 false; then pw_fail "pw_poll reported success for 'false'"; fi
el=$(($(pw_now_ms) - t0))
pw_assert_ge "$el" 250 "pw_poll waits about its timeout"
pw_assert_le "$el" 2000 "pw_poll gives up after its timeout"

# --- images: build, push, pull, compare digests -----------------------------
R=$PW_REGISTRY
d_v1=$(pw_build_image app v1.2.3 3f2c1ab0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6)
d_latest=$(pw_build_image app latest "" seed-latest-1)
d_again=$(pw_build_image app v1.2.3 3f2c1ab0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6)
pw_assert_match "$d_v1" '^sha256:[0-9a-f]{64}$' "pw_build_image prints a digest"
pw_assert_ne "$d_v1" "$d_latest" "different images get different digests"
pw_assert_eq "$d_again" "$d_v1" "the same arguments rebuild the same digest"
d_seed2=$(pw_build_image app seedtest "" other-seed)
d_seed1=$(pw_build_image app seedtest "" seed-latest-1)
pw_assert_ne "$d_seed2" "$d_seed1" "the content seed changes the digest"
pw_assert_eq "$d_seed1" "$d_latest" "the digest depends on seed and revision, not on the tag"

read -r idx host < <(pw_build_index multi v2 abcdef0)
pw_assert_match "$idx $host" '^sha256:[0-9a-f]{64} sha256:[0-9a-f]{64}$' "pw_build_index prints index and host manifest digests"

for ns in default k8s.io; do
	pw_pull "$ns" "$R/app:v1.2.3"
	pw_pull "$ns" "$R/app:latest"
	pw_assert_eq "$(pw_image_digest "$ns" "$R/app:v1.2.3")" "$d_v1" "ctr in $ns stores the pushed digest of app:v1.2.3"
	pw_assert_eq "$(pw_image_digest "$ns" "$R/app:latest")" "$d_latest" "ctr in $ns stores the pushed digest of app:latest"
done
pw_pull k8s.io "$R/multi:v2"
pw_assert_eq "$(pw_image_digest k8s.io "$R/multi:v2")" "$idx" "a multi-arch pull stores the index digest as target"
cfg_multi=$(pw_image_config_digest k8s.io "$R/multi:v2")
pw_assert_match "$cfg_multi" '^sha256:[0-9a-f]{64}$' "the host platform's config is readable from the content store"

# the revision label reaches the config blob containerd stores
cfg=$(pw_image_config_digest default "$R/app:v1.2.3")
rev=$(pw_ctr -n default content get "$cfg" | "$PW_PY" -c 'import json,sys; print(json.load(sys.stdin)["config"]["Labels"]["org.opencontainers.image.revision"])')
pw_assert_eq "$rev" 3f2c1ab0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6 "the config carries org.opencontainers.image.revision"
labels=$(pw_ctr -n default content get "$(pw_image_config_digest default "$R/app:latest")" | "$PW_PY" -c 'import json,sys; print(json.load(sys.stdin)["config"].get("Labels"))')
pw_assert_eq "$labels" None "an empty REVISION gives a config without labels"

# --- a moved tag: push another image to the same tag, pull again ------------
d_moved=$(pw_build_image app latest "" seed-latest-2)
pw_assert_ne "$d_moved" "$d_latest" "the re-pushed :latest has a new digest"
pw_pull default "$R/app:latest"
pw_assert_eq "$(pw_image_digest default "$R/app:latest")" "$d_moved" "pulling again moves containerd's app:latest to the new digest"

# --- CRI-style triple records -----------------------------------------------
d_cri=$(pw_build_image cri v1 "" cri-seed)
read -r got_d got_cfg < <(pw_cri_style_pull k8s.io "$R/cri:v1")
pw_assert_eq "$got_d" "$d_cri" "CRI-style pull: tag record has the pushed digest"
for n in "$R/cri:v1" "$R/cri@$d_cri" "$got_cfg"; do
	pw_assert_eq "$(pw_image_digest k8s.io "$n")" "$d_cri" "CRI-style record $n targets the same digest"
	pw_assert_match "$(pw_ctr -n k8s.io images ls "name==$n")" 'io\.cri-containerd\.image=managed' "CRI-style record $n is labelled managed"
done

# --- a container with Kubernetes labels ---------------------------------------
pw_ctr -n k8s.io containers create --label io.kubernetes.pod.name=web-0 \
	--label io.kubernetes.pod.namespace=shop --label io.kubernetes.container.name=web \
	"$R/app:latest" harness-cid >/dev/null
info=$(pw_ctr -n k8s.io containers info harness-cid)
pw_assert_match "$info" '"io.kubernetes.pod.name": "web-0"' "the container carries the pod label"
pw_assert_match "$info" "\"Image\": \"$R/app:latest\"" "the container names its image"

# --- journald: write with pullwatch's fields, read back with the helpers ------
NODE=$(pw_node_name)
msg="harness probe $NODE"
echo "$msg" | systemd-cat -t pullwatch-harness
pw_assert_cmd "journalctl finds a systemd-cat line" pw_poll 10 eval \
	"journalctl -q -o json --no-pager SYSLOG_IDENTIFIER=pullwatch-harness | grep -qF '\"MESSAGE\":\"$msg\"'"
for i in 1 2; do
	logger --journald <<EOF
MESSAGE=$msg $i
SYSLOG_IDENTIFIER=pullwatch
PRIORITY=4
PULLWATCH_KIND=harness_probe
NODE_NAME=$NODE
IMAGE_REF=$R/app:latest
IMAGE_TAG=latest
IMAGE_DIGEST=$d_latest
EOF
done
pw_wait_journal "$NODE" harness_probe 2 10
pw_assert_eq "$(pw_journal_count "$NODE" harness_probe IMAGE_TAG=latest "IMAGE_DIGEST=$d_latest")" 2 "pw_journal_count filters on fields"
pw_assert_eq "$(pw_journal_count "$NODE" harness_probe IMAGE_TAG=v1)" 0 "pw_journal_count excludes non-matching fields"
pw_assert_eq "$(pw_journal_count "$NODE" other_kind)" 0 "pw_journal_count filters on PULLWATCH_KIND"
pw_assert_eq "$(pw_journal_count "$(pw_node_name)")" 0 "another NODE_NAME sees none of these entries"
pw_assert_eq "$(pw_journal_get "$NODE" harness_probe PRIORITY | sort -u)" 4 "pw_journal_get reads a field"

# --- jsonl.py on nested JSON lines as pullwatch --stdout prints them ----------
f=$PW_WORK/sample.jsonl
cat >"$f" <<EOF
{"schema":1,"kind":"pull","image":{"ref":"a:1","tag":"1","digest":"sha256:aa"},"workload":{}}
{"schema":1,"kind":"latest_tag","image":{"ref":"a:latest","tag":"latest","digest":"sha256:bb","previous_digest":null},"workload":{"pod":"web-0"}}
{"schema":1,"kind":"tag_moved","image":{"ref":"a:latest","tag":"latest","digest":"sha256:cc","previous_digest":"sha256:bb"}}
EOF
pw_assert_eq "$(pw_json_count "$f" image.tag=latest)" 2 "jsonl: equality on a nested field"
pw_assert_eq "$(pw_json_count "$f" image.previous_digest?)" 1 "jsonl: presence ignores null"
pw_assert_eq "$(pw_json_count "$f" '!workload.pod?')" 2 "jsonl: absence"
pw_assert_eq "$(pw_json_field "$f" image.digest kind=tag_moved)" sha256:cc "jsonl: get a field of matching lines"
pw_assert_eq "$(pw_json_count "$f" 'image.ref~=^a:l')" 2 "jsonl: regex"
echo 'not json' >>"$f"
if "$PW_PY" "$PW_LIB_DIR/jsonl.py" check "$f" >/dev/null; then pw_fail "jsonl check accepts a non-JSON line"; fi
pw_pass "jsonl check rejects a non-JSON line"

# --- containerd restart keeps images ------------------------------------------
pw_restart_containerd
pw_note "containerd stop ${PW_CTD_STOP_MS} ms, restart ${PW_CTD_START_MS} ms"
pw_assert_eq "$(pw_image_digest default "$R/app:latest")" "$d_moved" "images survive a containerd restart (default)"
pw_assert_eq "$(pw_image_digest k8s.io "$R/cri@$d_cri")" "$d_cri" "images survive a containerd restart (k8s.io)"
pw_assert_eq "$(pw_ctr -n k8s.io containers ls -q)" harness-cid "containers survive a containerd restart"

# --- a journald the harness started outlives the test that started it ------------------------
# it is the machine's journald: a second suite on the machine (or a test after this one)
# may be writing to it; stopping it when the starting test ended failed the other's test
# ("fewer than N entries", "cannot write to journald: Connection refused")
if [[ $(cat /proc/1/comm) == systemd ]]; then
	pw_note "journald's lifetime not checked: this machine's journald is systemd's, not the suite's"
	pw_done
fi
jd=$(pgrep -x systemd-journal | head -1 || true)
[[ -n $jd ]] && kill "$jd"
pw_poll 10 eval '! pw_journald_alive' || pw_fail "journald did not stop"
cat >"$PW_WORK/starter.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
PW_TEST_NAME=harness_journald_starter PW_NO_SUMMARY=1
. "$PW_LIB_DIR/lib.sh"
pw_start_journald
[[ \$PW_JOURNALD_STARTED == 1 ]] || exit 3
EOF
st=0
bash "$PW_WORK/starter.sh" >"$PW_WORK/starter.out" 2>&1 || st=$?
pw_assert_eq "$st" 0 "a test that starts journald ($(tail -2 "$PW_WORK/starter.out"))"
pw_assert_cmd "journald still answers after the test that started it exited" pw_journald_alive

pw_done
