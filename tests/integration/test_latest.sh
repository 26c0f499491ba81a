#!/usr/bin/env bash
# Issue 2: every containerd pull becomes a `pull` record, and `:latest` (explicit
# or implicit) a `latest_tag` warning in journald naming the exact digest — in
# namespace k8s.io and in default; a versioned tag gives a record and no finding.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pw_start_all

R=$PW_REGISTRY
d_latest=$(pw_build_image app latest "" latest-seed)
d_k8s=$(pw_build_image web latest "" web-latest-seed)
d_ver=$(pw_build_image app 1.4.2 0123456789abcdef0123456789abcdef01234567 versioned-seed)

NODE=$(pw_node_name)
pw_start_agent "$NODE"
# without an endpoint, libcurl and its TLS stack are never mapped (agent/curlshim.c)
pw_assert_eq "$(grep -c -e libcurl -e libssl -e libgnutls "/proc/$PW_AGENT_PID/maps" || true)" 0 \
	"no libcurl, OpenSSL or GnuTLS in an agent without an endpoint"
pw_note "agent subscribed ${PW_AGENT_READY_MS} ms after start"

# --- :latest in k8s.io -------------------------------------------------------
pw_pull k8s.io "$R/web:latest"
pw_assert_eq "$(pw_image_digest k8s.io "$R/web:latest")" "$d_k8s" "ctr reports the digest skopeo pushed (k8s.io)"
pw_wait_record latest_tag "$R/web:latest" "$d_k8s" k8s.io
pw_wait_record pull "$R/web:latest" "$d_k8s" k8s.io

# --- :latest in default ------------------------------------------------------
pw_pull default "$R/app:latest"
pw_assert_eq "$(pw_image_digest default "$R/app:latest")" "$d_latest" "ctr reports the digest skopeo pushed (default)"
pw_wait_record latest_tag "$R/app:latest" "$d_latest" default
pw_wait_record pull "$R/app:latest" "$d_latest" default

# the journal entry carries the agreed fields
e=$(pw_journal_entries "$NODE" latest_tag "IMAGE_REF=$R/app:latest" | head -1)
field() { "$PW_PY" "$PW_LIB_DIR/jsonl.py" get - "$1" <<<"$e"; }
pw_assert_eq "$(field IMAGE_TAG)" latest "latest_tag: IMAGE_TAG"
pw_assert_eq "$(field IMAGE_NAME)" "$R/app" "latest_tag: IMAGE_NAME"
pw_assert_eq "$(field IMAGE_DIGEST)" "$d_latest" "latest_tag: IMAGE_DIGEST is the pulled digest"
pw_assert_eq "$(field CONTAINERD_NAMESPACE)" default "latest_tag: CONTAINERD_NAMESPACE"
pw_assert_eq "$(field PRIORITY)" 4 "latest_tag: warning priority"
pw_assert_match "$(field MESSAGE_ID)" '^[0-9a-f]{32}$' "latest_tag: MESSAGE_ID is 32 hex"
pw_assert_match "$(field MESSAGE)" . "latest_tag: MESSAGE is not empty"
p=$(pw_journal_entries "$NODE" pull "IMAGE_REF=$R/app:latest" | head -1)
pw_assert_eq "$("$PW_PY" "$PW_LIB_DIR/jsonl.py" get - PRIORITY <<<"$p")" 6 "pull: info priority"
pw_assert_ne "$("$PW_PY" "$PW_LIB_DIR/jsonl.py" get - MESSAGE_ID <<<"$p")" "$(field MESSAGE_ID)" "pull and latest_tag have different MESSAGE_IDs"

# ... and so does the stdout object
o=$("$PW_PY" "$PW_LIB_DIR/jsonl.py" lines "$PW_AGENT_OUT" kind=latest_tag "image.ref=$R/app:latest" | head -1)
ofield() { "$PW_PY" "$PW_LIB_DIR/jsonl.py" get - "$1" <<<"$o"; }
pw_assert_eq "$(ofield schema)" 1 "stdout: schema 1"
pw_assert_match "$(ofield id)" '^[0-9a-f]{32}$' "stdout: id is 32 hex"
pw_assert_match "$(ofield severity)" '^(info|low|medium|high|critical)$' "stdout: severity is a known level"
pw_assert_match "$(ofield time)" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$' "stdout: time is RFC 3339"
pw_assert_eq "$(ofield node)" "$NODE" "stdout: node"
pw_assert_eq "$(ofield image.name)" "$R/app" "stdout: image.name"
pw_assert_eq "$(ofield image.tag)" latest "stdout: image.tag"

# --- implicit latest: a stored name without a tag ----------------------------
pw_ctr -n default images tag "$R/app:latest" "$R/implicit" >/dev/null
pw_wait_journal "$NODE" latest_tag 1 20 "IMAGE_NAME=$R/implicit" "IMAGE_DIGEST=$d_latest" IMAGE_TAG=latest

# --- a versioned tag: a pull record, no finding --------------------------------
pw_pull default "$R/app:1.4.2"
pw_wait_record pull "$R/app:1.4.2" "$d_ver" default
pw_sync_agent default
pw_assert_eq "$(pw_findings_count "$R/app:1.4.2")" 0 "a versioned tag with a revision label raises no finding"
pw_assert_eq "$(pw_journal_count "$NODE" pull "IMAGE_REF=$R/app:1.4.2")" 1 "one pull gives one pull record"

# every finding so far is about a :latest reference
pw_assert_eq "$(pw_stdout_count 'kind!=pull' 'image.tag!=latest')" 0 "no finding other than for :latest references"
pw_assert_stdout_jsonl
pw_assert_cmd "the agent is still running" pw_agent_alive
pw_stop_agent
pw_done
