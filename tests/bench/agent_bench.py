#!/usr/bin/env python3
"""Computations for tests/bench/agent_bench.sh (system python3 only, no deps).

    agent_bench.py journal-lat MARKER            stdin: journalctl -o json lines;
        for pullwatch entries whose IMAGE_REF contains MARKER, latency =
        __REALTIME_TIMESTAMP (journald receive) - PULLWATCH_EVENT_USEC
        (containerd's envelope timestamp); prints "n median_us p99_us max_us"
    agent_bench.py ctr-lat FILE MARKER           FILE: `ctr events` output with
        each line prefixed by linestamp's arrival time (µs); for /images/create
        lines naming MARKER, latency = arrival - envelope timestamp; same output
    agent_bench.py massif-peak FILE              peak heap (useful + extra) in bytes
    agent_bench.py table RESULTS                 the side-by-side table from a
        key=value file written by the bench

Percentiles are nearest-rank. Latencies may be negative by clock granularity
only (one host, one clock); they are kept as measured.
"""
import calendar
import json
import math
import re
import sys


def stats(values):
    if not values:
        return "0 - - -"
    v = sorted(values)
    n = len(v)

    def rank(p):
        return v[max(0, math.ceil(p * n) - 1)]

    return "%d %d %d %d" % (n, rank(0.5), rank(0.99), v[-1])


def journal_lat(marker):
    out = []
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            e = json.loads(line)
        except ValueError:
            continue
        ref = e.get("IMAGE_REF")
        if not isinstance(ref, str) or marker not in ref:
            continue
        try:
            recv = int(e["__REALTIME_TIMESTAMP"])
            ev = int(e["PULLWATCH_EVENT_USEC"])
        except (KeyError, TypeError, ValueError):
            continue
        out.append(recv - ev)
    print(stats(out))


# 1700000000123456 2026-11-25 17:12:19.515763981 +0000 UTC default /images/create {"name":"..."}
CTR_LINE = re.compile(
    r"^(\d+) (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d+))? ([+-])(\d\d)(\d\d) \S+ (\S+) (\S+) ?(.*)$")


def ctr_lat(path, marker):
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = CTR_LINE.match(line.rstrip("\n"))
            if not m or m.group(13) != "/images/create" or marker not in m.group(14):
                continue
            arrival = int(m.group(1))
            y, mo, d, h, mi, s = (int(m.group(i)) for i in range(2, 8))
            frac = (m.group(8) or "").ljust(9, "0")[:9]
            off = (int(m.group(10)) * 3600 + int(m.group(11)) * 60) * (1 if m.group(9) == "+" else -1)
            secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) - off
            ev = secs * 1000000 + int(frac) // 1000
            out.append(arrival - ev)
    print(stats(out))


def massif_peak(path):
    peak = 0
    heap = extra = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("mem_heap_B="):
                heap = int(line.split("=", 1)[1])
            elif line.startswith("mem_heap_extra_B="):
                extra = int(line.split("=", 1)[1])
                peak = max(peak, heap + extra)
    print(peak)


def table(path):
    r = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                r[k] = v

    def g(key):
        return r.get(key, "")

    def kib_to_mib(key):
        v = g(key)
        return "%.2f MiB" % (int(v) / 1024) if v.isdigit() else (v or "n/a")

    def us(key, unit="µs", div=1.0, fmt="%.1f"):
        v = g(key)
        try:
            return (fmt + " %s") % (float(v) / div, unit)
        except ValueError:
            return v or "n/a"

    def lat(prefix, which):
        # which: median or p99; stored in µs
        v = g(prefix + "_" + which)
        try:
            return "%.2f ms" % (int(v) / 1000)
        except ValueError:
            return v or "n/a"

    def num(key):
        v = g(key)
        try:
            return "%.2f" % float(v)
        except ValueError:
            return v or "n/a"

    def ratio(a, b, goal):
        try:
            return "%s (now %.2fx)" % (goal, float(g(a)) / float(g(b)))
        except (ValueError, ZeroDivisionError):
            return goal

    known, burst, paced = g("known"), g("burst"), g("paced")
    rows = [
        ("RSS, idle, %s images known" % known, kib_to_mib("pw_idle_rss"), kib_to_mib("ctr_idle_rss"), "<= 8 MiB"),
        ("Private_Dirty, idle, %s images known" % known, kib_to_mib("pw_idle_pd"), kib_to_mib("ctr_idle_pd"),
         "<= 1.5 MiB"),
        ("RSS, idle after the burst", kib_to_mib("pw_after_rss"), kib_to_mib("ctr_after_rss"), ""),
        ("Private_Dirty, idle after the burst", kib_to_mib("pw_after_pd"), kib_to_mib("ctr_after_pd"), ""),
        ("CPU per event, burst, utime+stime (/proc/PID/stat)", us("pw_cpu_stat_us"), us("ctr_cpu_stat_us"),
         "<= 50 µs"),
        ("CPU per event, burst, thread run time (schedstat)", us("pw_cpu_sched_us"), us("ctr_cpu_sched_us"), ""),
        ("context switches per event, burst", num("pw_csw"), num("ctr_csw"), ""),
        ("CPU per event, paced, utime+stime", us("pw_paced_cpu_stat_us"), us("ctr_paced_cpu_stat_us"), ""),
        ("CPU per event, paced, thread run time (schedstat)", us("pw_paced_cpu_sched_us"),
         us("ctr_paced_cpu_sched_us"), ratio("pw_paced_cpu_sched_us", "ctr_paced_cpu_sched_us", "<= 0.5x")),
        ("context switches per event, paced", num("pw_paced_csw"), num("ctr_paced_csw"), "<= 3"),
        ("wake-ups (context switches) over %s idle s" % g("idle"), g("pw_idle_csw") or "n/a",
         g("ctr_idle_csw") or "n/a", "0"),
        ("events handled in the burst (of %s)" % burst, g("pw_burst_seen") or "n/a", g("ctr_burst_seen") or "n/a",
         ""),
        ("latency, burst, median", lat("pw_burst", "median"), lat("ctr_burst", "median"), ""),
        ("latency, burst, p99", lat("pw_burst", "p99"), lat("ctr_burst", "p99"), "<= 5 ms"),
        ("latency, burst, max", lat("pw_burst", "max"), lat("ctr_burst", "max"), ""),
        ("latency, paced (%s, one at a time), median" % paced, lat("pw_paced", "median"), lat("ctr_paced", "median"),
         ""),
        ("latency, paced, p99", lat("pw_paced", "p99"), lat("ctr_paced", "p99"), "<= 5 ms"),
    ]
    if g("pw_massif_peak"):
        rows.append(("peak heap under massif (useful + extra)", "%.2f MiB" % (int(g("pw_massif_peak")) / 1048576)
                     if g("pw_massif_peak").isdigit() else g("pw_massif_peak"), "", ""))
    head = ("", "pullwatch", "ctr events", "goal (issues 2, 12)")
    w0 = max(len(x[0]) for x in rows + [head])
    w1 = max(len(x[1]) for x in rows + [head])
    w2 = max(len(x[2]) for x in rows + [head])
    fmt = "%-" + str(w0) + "s  %" + str(w1) + "s  %" + str(w2) + "s  %s"
    print(fmt % head)
    print(fmt % ("-" * w0, "-" * w1, "-" * w2, "-" * 14))
    for row in rows:
        print((fmt % row).rstrip())
    print()
    print("latency: pullwatch = journald receive time (__REALTIME_TIMESTAMP) - containerd envelope timestamp;")
    print("         ctr events = arrival of its stdout line at a reader (linestamp) - the envelope timestamp it prints.")
    if g("pw_findings"):
        print("note: besides one pull entry per image, pullwatch wrote %s finding entries to journald" % g("pw_findings"))
    for note in ("pw_note", "ctr_note"):
        if g(note):
            print("note: " + g(note))


def main(argv):
    if len(argv) >= 2 and argv[1] == "journal-lat" and len(argv) == 3:
        journal_lat(argv[2])
    elif len(argv) >= 2 and argv[1] == "ctr-lat" and len(argv) == 4:
        ctr_lat(argv[2], argv[3])
    elif len(argv) >= 2 and argv[1] == "massif-peak" and len(argv) == 3:
        massif_peak(argv[2])
    elif len(argv) >= 2 and argv[1] == "table" and len(argv) == 3:
        table(argv[2])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
