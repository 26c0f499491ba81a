#!/usr/bin/env bash
# tests/bench/scale_bench.sh — pullwatch with N images of distinct digests known (each
# image has its own config blob, so nothing is answered from the config cache), beside
# `ctr images ls -q` (the bare Images.List: names only) over the same store, as root.
# Prints (no judgement: exit 0 unless setup fails):
#   1. wall time of `ctr -n NS images ls -q` and of `pullwatch scan --namespace NS`
#      (fresh state dir: every image listed, resolved and judged), RUNS times each,
#      interleaved so both see the same load; containerd's CPU during each; and of the
#      scan with --content-direct=false (every blob through Content.Read), whose findings
#      must be the scan's;
#   2. the agent's reconcile: `pullwatch run` from start to "subscribed" (its first
#      listing judged: every image resolved), with a fresh state dir and again after a
#      restart on the ledger it saved (the steady state: every reference known);
#   3. the agent's RSS, Private_Dirty (/proc/PID/smaps_rollup) and peak RSS (VmHWM)
#      idle after each of those.
#
# Environment:
#   PULLWATCH      the binary (default: build/pullwatch)
#   N=10000        images (names bench.local/scale/img-NNNNN:1.0.0)
#   NS=scale       the containerd namespace they are in (the only one listed)
#   RUNS=3         runs of the scan and of ctr images ls -q (medians printed)
#   SCALE_ROOT     a directory kept between runs for containerd's root: the import of
#                  10,000 images (20,001 blobs, one metadata transaction per image) takes
#                  minutes on a loaded 2-core machine; with SCALE_ROOT it is done once
#   SCALE_SMAPS=1  also print, after each agent run, its mappings by Private_Dirty (the
#                  largest first, from /proc/PID/smaps)
#   PW_KEEP_WORK=1 keep the work dir
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
N=${N:-10000}
NS=${NS:-scale}
RUNS=${RUNS:-3}
PULLWATCH=${PULLWATCH:-$ROOT/build/pullwatch}
[[ -x $PULLWATCH ]] || { echo "scale_bench: no pullwatch binary at $PULLWATCH" >&2; exit 1; }
export PULLWATCH

# shellcheck disable=SC2034 # read by lib.sh
PW_TEST_NAME=scale_bench PW_NO_SUMMARY=1
# shellcheck source=tests/integration/lib.sh
. "$ROOT/tests/integration/lib.sh"
say() { echo "== $*"; }
RES=$PW_WORK/results
: >"$RES"
res() { echo "$1=$2" >>"$RES"; }
T0=$(pw_now_ms)

pw_setup_deps_check
pw_start_journald
pw_containerd_config
if [[ -n ${SCALE_ROOT:-} ]]; then
	mkdir -p "$SCALE_ROOT"
	sed -i "s|^root = .*|root = \"$SCALE_ROOT\"|" "$PW_WORK/containerd/config.toml"
fi
pw_start_containerd
CTR_PID=$PW_CTD_PID
ctrs() { ctr -a "$PW_SOCK" -n "$NS" "$@"; }

have=$(ctrs images ls -q | grep -c '^bench.local/scale/img-' || true)
if ((have != N)); then
	((have == 0)) || ctrs images ls -q | grep '^bench.local/scale/img-' | xargs -r -n 500 ctr -a "$PW_SOCK" -n "$NS" images rm >/dev/null
	say "making $N images of distinct digests (tests/bench/mkscale.py, ctr images import --no-unpack)"
	t=$(pw_now_ms)
	"$PW_PY" "$HERE/mkscale.py" "$PW_WORK/scale.tar" "$N" bench.local/scale/img
	ctrs images import --no-unpack "$PW_WORK/scale.tar" >/dev/null || pw_fail "ctr images import failed"
	rm -f "$PW_WORK/scale.tar"
	say "imported in $((($(pw_now_ms) - t) / 1000)) s"
fi
have=$(ctrs images ls -q | grep -c '^bench.local/scale/img-' || true)
((have == N)) || pw_fail "the store has $have images, not $N"

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

# ------------------------------------------------------- scan vs ctr ls -q ----

say "$RUNS runs each of ctr -n $NS images ls -q, pullwatch scan --namespace $NS and the scan with --content-direct=false (interleaved)"
for ((i = 1; i <= RUNS; i++)); do
	c=$(ticks "$CTR_PID") t=${EPOCHREALTIME/./}
	n=$(ctrs images ls -q | wc -l)
	pw_ms_since "$t"
	echo "ctr_ms $PW_MS $(($(ticks "$CTR_PID") - c)) $n" >>"$PW_WORK/runs"
	rm -rf "$PW_WORK/scan-state" && mkdir -p "$PW_WORK/scan-state"
	c=$(ticks "$CTR_PID") t=${EPOCHREALTIME/./}
	st=0
	"$PULLWATCH" scan --address "$PW_SOCK" --state-dir "$PW_WORK/scan-state" --namespace "$NS" --format json \
		>"$PW_WORK/scan.out" 2>"$PW_WORK/scan.err" || st=$?
	pw_ms_since "$t"
	echo "scan_ms $PW_MS $(($(ticks "$CTR_PID") - c)) $st" >>"$PW_WORK/runs"
	((st <= 1)) || pw_fail "pullwatch scan failed (status $st)" "$(tail -3 "$PW_WORK/scan.err")"
	# the same, every blob through containerd's Content.Read (the path before direct reads)
	rm -rf "$PW_WORK/scan-state" && mkdir -p "$PW_WORK/scan-state"
	c=$(ticks "$CTR_PID") t=${EPOCHREALTIME/./}
	st=0
	"$PULLWATCH" scan --address "$PW_SOCK" --state-dir "$PW_WORK/scan-state" --namespace "$NS" --format json \
		--content-direct=false >"$PW_WORK/scan-api.out" 2>"$PW_WORK/scan.err" || st=$?
	pw_ms_since "$t"
	echo "api_ms $PW_MS $(($(ticks "$CTR_PID") - c)) $st" >>"$PW_WORK/runs"
	((st <= 1)) || pw_fail "pullwatch scan --content-direct=false failed (status $st)" "$(tail -3 "$PW_WORK/scan.err")"
	cmp -s "$PW_WORK/scan.out" "$PW_WORK/scan-api.out" || pw_fail "scan's findings differ with --content-direct=false"
done
med() { # KEY FIELD — median of FIELD over the runs' KEY lines
	awk -v k="$1" -v f="$2" '$1 == k { print $f }' "$PW_WORK/runs" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
res ctr_ms "$(med ctr_ms 2)"
res ctr_ctd_ms $(($(med ctr_ms 3) * 1000 / TCK))
res scan_ms "$(med scan_ms 2)"
res scan_ctd_ms $(($(med scan_ms 3) * 1000 / TCK))
res scan_all "$(awk '$1 == "scan_ms" { printf "%s%s", s, $2; s = " " }' "$PW_WORK/runs")"
res api_ms "$(med api_ms 2)"
res api_ctd_ms $(($(med api_ms 3) * 1000 / TCK))
res api_all "$(awk '$1 == "api_ms" { printf "%s%s", s, $2; s = " " }' "$PW_WORK/runs")"
res ctr_all "$(awk '$1 == "ctr_ms" { printf "%s%s", s, $2; s = " " }' "$PW_WORK/runs")"

# ------------------------------------------------------------ the agent ----

AGENT_PID= START_MS=
start_agent() { # STATE_DIR — start pullwatch run (AGENT_PID); START_MS: ms until "subscribed"
	pw_run_until_subscribed "$PULLWATCH" "$1" scale-bench "$NS"
	AGENT_PID=$PW_SUB_PID START_MS=$PW_SUB_MS
}
mem() { # PREFIX
	res "${1}_rss" "$(awk '$1 == "Rss:" { print $2 }' "/proc/$AGENT_PID/smaps_rollup")"
	res "${1}_pd" "$(awk '$1 == "Private_Dirty:" { print $2 }' "/proc/$AGENT_PID/smaps_rollup")"
	res "${1}_hwm" "$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$AGENT_PID/status")"
	if [[ ${SCALE_SMAPS:-0} == 1 ]]; then
		say "$1: mappings by Private_Dirty (kB)"
		awk '/^[0-9a-f]+-[0-9a-f]+ / { m = $6 ? $6 : "[anon " $1 "]" } $1 == "Private_Dirty:" && $2 > 0 { pd[m] += $2 }
			END { for (k in pd) print pd[k], k }' "/proc/$AGENT_PID/smaps" | sort -rn | head -25
	fi
}
say "pullwatch run, fresh state: reconcile of $N images"
start_agent "$PW_WORK/state"
res fresh_ms "$START_MS"
pw_wait_idle "$AGENT_PID" 60
mem fresh
pw_kill_wait "$AGENT_PID" 30
say "pullwatch run, restarted on its ledger"
start_agent "$PW_WORK/state"
res known_ms "$START_MS"
pw_wait_idle "$AGENT_PID" 60
mem known
pw_kill_wait "$AGENT_PID" 30
PW_EXTRA_PIDS=

echo
say "results: $N images of distinct digests, containerd $(containerd --version | awk '{print $3}'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $((($(pw_now_ms) - T0) / 1000)) s"
"$PW_PY" - "$RES" <<'EOF'
import sys
r = dict(l.rstrip("\n").split("=", 1) for l in open(sys.argv[1]) if "=" in l)
g = lambda k: r.get(k, "")
mib = lambda k: "%.2f MiB" % (int(g(k)) / 1024) if g(k).isdigit() else "n/a"
ctr = int(g("ctr_ms"))
rows = [
    ("ctr images ls -q (median; runs)", "%d ms (%s)" % (ctr, g("ctr_all")), "containerd CPU %s ms" % g("ctr_ctd_ms"), ""),
    ("pullwatch scan (median; runs)", "%s ms (%s)" % (g("scan_ms"), g("scan_all")),
     "containerd CPU %s ms" % g("scan_ctd_ms"), "%.2fx ctr ls (goal <= 1.5x)" % (int(g("scan_ms")) / ctr)),
    ("pullwatch scan --content-direct=false", "%s ms (%s)" % (g("api_ms"), g("api_all")),
     "containerd CPU %s ms" % g("api_ctd_ms"), "%.2fx ctr ls" % (int(g("api_ms")) / ctr)),
    ("agent reconcile, fresh state", "%s ms" % g("fresh_ms"), "", "%.2fx ctr ls (goal <= 1.5x)" % (int(g("fresh_ms")) / ctr)),
    ("agent reconcile, ledger known", "%s ms" % g("known_ms"), "", "%.2fx ctr ls (goal <= 1.5x)" % (int(g("known_ms")) / ctr)),
    ("agent RSS / Private_Dirty / VmHWM, idle after fresh", "%s / %s / %s" % (mib("fresh_rss"), mib("fresh_pd"), mib("fresh_hwm")), "",
     "RSS <= 8 MiB, PD <= 1.5 MiB"),
    ("agent RSS / Private_Dirty / VmHWM, idle after restart", "%s / %s / %s" % (mib("known_rss"), mib("known_pd"), mib("known_hwm")), "",
     ""),
]
w = [max(len(x[i]) for x in rows) for i in range(4)]
for row in rows:
    print("  ".join(c.ljust(w[i]) for i, c in enumerate(row)).rstrip())
EOF
pw_done
