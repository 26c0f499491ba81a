#!/usr/bin/env bash
# Reproducible images (issue 11, item 1): two clean builds of one commit, in two
# directories, give the same manifest digests; a work tree with a change is refused, and
# with PW_IMAGE_ALLOW_DIRTY=ON is built but tagged SHORT-dirty, never as the commit.
# The first build is the suite's own (when its source tree is clean at HEAD, as in CI),
# the second a git worktree of HEAD in a temporary directory, configured and built from
# scratch; with a dirty source tree, two such worktrees are built.
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
digest_of() { "$PW_PY" -c 'import json,sys; d=json.load(open(sys.argv[1]))[0]; print(d["tag"], d["digest"])' "$1/image-digests.json"; } # BUILD_DIR

B=$(dirname "$PULLWATCH")
trees=(b)
if [[ -z $(git -C "$SRC" status --porcelain) ]]; then
	cmake --build "$B" --target image >"$W/a.log" 2>&1 || pw_fail "the suite's build of the image failed" "$(grep -v '^gmake' "$W/a.log" | tail -5)"
	A=$B
else
	pw_note "source tree has changes: building two worktrees of HEAD instead"
	trees=(a b)
	A=$W/a/build
fi
for n in "${trees[@]}"; do
	git -C "$SRC" worktree add --detach "$W/$n" "$REV" >/dev/null 2>&1 || pw_fail "git worktree add $W/$n failed"
	WT+=("$W/$n")
	build_tree "$W/$n" || pw_fail "clean build $n of $REV failed" "$(grep -v '^gmake' "$W/$n.log" | tail -5)"
done
digests() { "$PW_PY" -c 'import json,sys; print(" ".join(d["name"] + "=" + d["digest"] for d in json.load(open(sys.argv[1]))))' "$1/image-digests.json"; }
read -r TAG_A _ < <(digest_of "$A")
pw_assert_eq "$TAG_A" "${REV:0:7}" "a clean tree is tagged with the commit"
pw_assert_eq "$(digests "$W/b/build")" "$(digests "$A")" "two clean builds of $TAG_A in two directories give the same manifest digests"
cmp -s "$A/image/index.json" "$W/b/build/image/index.json" || pw_fail "index.json differs between the builds"
pw_pass "index.json is byte-identical"
read -r _ DIG_A < <(digest_of "$A")

# a change in the tree: refused, naming it
echo "/* local change */" >>"$W/b/agent/main.c"
if cmake --build "$W/b/build" -j2 --target image >"$W/dirty.log" 2>&1; then
	pw_fail "a dirty work tree was built into an image without PW_IMAGE_ALLOW_DIRTY"
fi
pw_assert_match "$(grep mkimage: "$W/dirty.log")" 'uncommitted change.*agent/main\.c' "a dirty tree is refused, naming the changed file"
# allowed explicitly: visibly marked
build_tree "$W/b" -DPW_IMAGE_ALLOW_DIRTY=ON || pw_fail "dirty build with PW_IMAGE_ALLOW_DIRTY=ON failed" "$(tail -5 "$W/b.log")"
read -r TAG_D DIG_D < <(digest_of "$W/b/build")
pw_assert_eq "$TAG_D" "${REV:0:7}-dirty" "an allowed dirty build is tagged SHORT-dirty"
pw_assert_ne "$DIG_D" "$DIG_A" "and is a different image"
pw_done
