#!/usr/bin/env bash
# Reproducible images (issue 11, item 1): two clean builds of one commit, in two
# directories (two git worktrees of HEAD, each configured and built from scratch), give
# the same manifest digest; a work tree with a change is refused, and with
# PW_IMAGE_ALLOW_DIRTY=ON is built but tagged SHORT-dirty, never as the commit.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

pw_require_pullwatch
SRC=$(cd "${PW_SOURCE_DIR:-$PW_LIB_DIR/../..}" && pwd)
# The sanitizer build runs the suite a second time; this test builds its own trees from
# the commit with default flags, so a second run would prove nothing new.
if ldd "$PULLWATCH" | grep -q libasan; then
	echo "[$PW_TEST_NAME] SKIP: builds its own trees; run once, from the plain build" >&2
	exit 77
fi
git -C "$SRC" rev-parse HEAD >/dev/null 2>&1 || pw_fail "$SRC is not a git work tree"
REV=$(git -C "$SRC" rev-parse HEAD)
W=$PW_WORK
WT=()
repro_cleanup() {
	local t
	for t in "${WT[@]}"; do git -C "$SRC" worktree remove --force "$t" >/dev/null 2>&1 || true; done
	git -C "$SRC" worktree prune >/dev/null 2>&1 || true
}
trap 'rc=$?; repro_cleanup; (exit $rc); pw_cleanup' EXIT

build_tree() { # DIR [CMAKE ARGS...] — configure and build the image target; prints its digest
	local d=$1
	shift
	cmake -S "$d" -B "$d/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPW_INTEGRATION=OFF "$@" >"$d.log" 2>&1 &&
		cmake --build "$d/build" -j2 --target image >>"$d.log" 2>&1
}
digest_of() { "$PW_PY" -c 'import json,sys; d=json.load(open(sys.argv[1]))[0]; print(d["tag"], d["digest"])' "$1/build/image-digests.json"; }

for n in a b; do
	git -C "$SRC" worktree add --detach "$W/$n" "$REV" >/dev/null 2>&1 || pw_fail "git worktree add $W/$n failed"
	WT+=("$W/$n")
	build_tree "$W/$n" || pw_fail "clean build $n of $REV failed" "$(grep -v '^gmake' "$W/$n.log" | tail -5)"
done
read -r TAG_A DIG_A < <(digest_of "$W/a")
read -r TAG_B DIG_B < <(digest_of "$W/b")
pw_assert_eq "$TAG_A" "${REV:0:7}" "a clean tree is tagged with the commit"
pw_assert_eq "$DIG_B" "$DIG_A" "two clean builds of $TAG_A in two directories give one manifest digest"
cmp -s "$W/a/build/image/index.json" "$W/b/build/image/index.json" || pw_fail "index.json differs between the builds"
pw_pass "index.json is byte-identical"

# a change in the tree: refused, naming it
echo "/* local change */" >>"$W/b/agent/main.c"
if cmake --build "$W/b/build" -j2 --target image >"$W/dirty.log" 2>&1; then
	pw_fail "a dirty work tree was built into an image without PW_IMAGE_ALLOW_DIRTY"
fi
pw_assert_match "$(grep mkimage: "$W/dirty.log")" 'uncommitted change.*agent/main\.c' "a dirty tree is refused, naming the changed file"
# allowed explicitly: visibly marked
build_tree "$W/b" -DPW_IMAGE_ALLOW_DIRTY=ON || pw_fail "dirty build with PW_IMAGE_ALLOW_DIRTY=ON failed" "$(tail -5 "$W/b.log")"
read -r TAG_D DIG_D < <(digest_of "$W/b")
pw_assert_eq "$TAG_D" "${REV:0:7}-dirty" "an allowed dirty build is tagged SHORT-dirty"
pw_assert_ne "$DIG_D" "$DIG_A" "and is a different image"
pw_done
