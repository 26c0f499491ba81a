#!/usr/bin/env python3
"""Checks for tests/integration/test_shipping.sh (python3 stdlib only).

  shipcheck.py delivered --expect FILE [--expect FILE...] --received FILE
               [--minus FILE] [--allow-extra] [--quiet]
      FILE of --expect: the agent's --stdout (JSON lines, each with an "id").
      --received: receiver.py's --records file.  --minus: ids not expected (one a line).
      Prints "expected=N received=R unique=U duplicates=D missing=M extra=E inventory=I"
      and exits 0 iff nothing is missing and (no extra id was received or --allow-extra).
      Received records of kind "inventory" (node snapshots, shipped but never printed
      on stdout) are counted apart, not as extra.
  shipcheck.py ids FILE                 the "id" of every JSON line of FILE
  shipcheck.py deadletter FILE          "records=N status_lines=S status=... ids=<file lines>"
      checks the dead-letter file: record lines, then one {"dead_letter": ...} line per batch;
      prints the ids of the records (one a line) after a summary line on stderr.
  shipcheck.py loki --bodies FILE --stdout FILE --node NODE --cluster CLUSTER
      checks every Loki push body field by field against Loki's push API; exits 1
      naming the first violation, else prints a summary.
  shipcheck.py frames DIR               number of well-formed frames (magic, length, CRC)
      in the spool segments DIR/*.seg and the pending inventory group DIR/latest — read
      independently of the agent's reader
  shipcheck.py metric NAME              the value of metric NAME in Prometheus text on stdin
"""
import argparse
import calendar
import json
import os
import re
import sys


def load_lines(path):
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if line.strip():
                    out.append(line)
    except FileNotFoundError:
        pass
    return out


def ids_of(path, kinds=None):
    """ids of the JSON lines of path; with kinds (a dict), also id -> kind (the
    record's own kind, or that of receiver.py's "record")."""
    ids = []
    for line in load_lines(path):
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if isinstance(o, dict) and isinstance(o.get("id"), str):
            ids.append(o["id"])
            if kinds is not None:
                rec = o.get("record", o)
                kinds[o["id"]] = rec.get("kind") if isinstance(rec, dict) else None
    return ids


def cmd_delivered(a):
    expect = []
    for p in a.expect:
        expect += ids_of(p)
    minus = set(load_lines(a.minus)) if a.minus else set()
    want = set(expect) - minus
    kinds = {}
    got = ids_of(a.received, kinds)
    ugot = set(got)
    missing = want - ugot
    extra = ugot - set(expect)
    # the agent ships node inventory snapshots without printing them on stdout
    inventory = {i for i in extra if kinds.get(i) == "inventory"}
    extra -= inventory
    print("expected=%d received=%d unique=%d duplicates=%d missing=%d extra=%d inventory=%d"
          % (len(want), len(got), len(ugot), len(got) - len(ugot), len(missing), len(extra), len(inventory)))
    if not a.quiet and missing:
        print("missing ids (first 5): " + " ".join(sorted(missing)[:5]))
    if not a.quiet and extra:
        print("extra ids (first 5): " + " ".join(sorted(extra)[:5]))
    return 0 if not missing and (a.allow_extra or not extra) else 1


def cmd_ids(a):
    for i in ids_of(a.file):
        print(i)
    return 0


def cmd_deadletter(a):
    recs, statuses, pending = [], [], 0
    for n, line in enumerate(load_lines(a.file), 1):
        o = json.loads(line)
        if not isinstance(o, dict):
            raise SystemExit("%s:%d: not a JSON object" % (a.file, n))
        if "dead_letter" in o:
            d = o["dead_letter"]
            if d.get("records") != pending:
                raise SystemExit("%s:%d: status line says %r records, %d precede it"
                                 % (a.file, n, d.get("records"), pending))
            statuses.append(d)
            pending = 0
        else:
            recs.append(o.get("id"))
            pending += 1
    if pending:
        raise SystemExit("%s: %d records after the last status line" % (a.file, pending))
    print("records=%d batches=%d status=%s response=%s" % (
        len(recs), len(statuses), ",".join(str(d.get("status")) for d in statuses),
        json.dumps([d.get("response") for d in statuses])), file=sys.stderr)
    for i in recs:
        print(i)
    return 0


RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")
LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def rfc3339_ns(s):
    m = RFC3339.match(s)
    if not m:
        raise ValueError("not RFC 3339: %r" % s)
    y, mo, d, h, mi, se = (int(m.group(i)) for i in range(1, 7))
    sec = calendar.timegm((y, mo, d, h, mi, se, 0, 0, 0))
    frac = int((m.group(7) or "").ljust(9, "0"))
    tz = m.group(8)
    if tz != "Z":
        off = int(tz[1:3]) * 3600 + int(tz[4:6]) * 60
        sec -= off if tz[0] == "+" else -off
    return sec * 10**9 + frac


def cmd_loki(a):
    stdout_lines = set(load_lines(a.stdout))
    bodies = [json.loads(l) for l in load_lines(a.bodies)]
    if not bodies:
        raise SystemExit("no Loki body received")
    seen, nstreams, kinds = [], 0, set()

    def fail(i, msg):
        raise SystemExit("body %d: %s" % (i, msg))

    for i, b in enumerate(bodies, 1):
        if b["content_type"] != "application/json":
            fail(i, "Content-Type %r, Loki wants application/json for a JSON push" % b["content_type"])
        if b["encoding"] not in ("", "gzip"):
            fail(i, "Content-Encoding %r" % b["encoding"])
        if b["status"] != 204:
            fail(i, "the receiver answered %r, a Loki push answers 204" % b["status"])
        doc = json.loads(b["body"])
        if not isinstance(doc, dict) or set(doc) != {"streams"}:
            fail(i, "top level must be an object with exactly the key streams, got %r" % list(doc)[:5])
        streams = doc["streams"]
        if not isinstance(streams, list) or not streams:
            fail(i, "streams must be a non-empty array")
        label_sets = []
        for j, st in enumerate(streams):
            nstreams += 1
            if not isinstance(st, dict) or set(st) != {"stream", "values"}:
                fail(i, "stream %d must have exactly stream and values, got %r" % (j, sorted(st)))
            labels, values = st["stream"], st["values"]
            if not isinstance(labels, dict) or not labels:
                fail(i, "stream %d: labels must be a non-empty object" % j)
            for k, v in labels.items():
                if not LABEL.match(k) or len(k) >= 1024:
                    fail(i, "stream %d: bad label name %r" % (j, k))
                if not isinstance(v, str) or not v or len(v) > 2048:
                    fail(i, "stream %d: label %s must be a non-empty string, got %r" % (j, k, v))
                if "digest" in k.lower() or "sha256:" in v:
                    fail(i, "stream %d: a digest in the labels (%s=%s): high cardinality" % (j, k, v))
            for k in ("node", "kind", "severity", "cluster"):
                if k not in labels:
                    fail(i, "stream %d: label %s missing (%r)" % (j, k, labels))
            if labels["node"] != a.node:
                fail(i, "stream %d: node label %r, expected %r" % (j, labels["node"], a.node))
            if labels["cluster"] != a.cluster:
                fail(i, "stream %d: cluster label %r, expected %r" % (j, labels["cluster"], a.cluster))
            if len(labels) > 15:
                fail(i, "stream %d: %d labels, Loki's default limit is 15" % (j, len(labels)))
            key = tuple(sorted(labels.items()))
            if key in label_sets:
                fail(i, "two streams with the same labels %r: records must be grouped" % (labels,))
            label_sets.append(key)
            if not isinstance(values, list) or not values:
                fail(i, "stream %d: values must be a non-empty array" % j)
            for v in values:
                if not isinstance(v, list) or len(v) != 2:
                    fail(i, "stream %d: a value must be [ts, line], got %r" % (j, v))
                ts, line = v
                if not isinstance(ts, str) or not ts.isdigit() or len(ts) != 19:
                    fail(i, "stream %d: ts must be a string of 19 digits (ns), got %r" % (j, ts))
                if not isinstance(line, str):
                    fail(i, "stream %d: line must be a string" % j)
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    fail(i, "stream %d: line is not a JSON object" % j)
                if line not in stdout_lines and rec.get("kind") != "inventory":
                    # (node inventory snapshots are shipped but never printed)
                    fail(i, "stream %d: line is not exactly a record the agent printed: %.200s" % (j, line))
                if not isinstance(rec.get("id"), str) or not rec["id"]:
                    fail(i, "stream %d: the record has no id: %.200s" % (j, line))
                if int(ts) != rfc3339_ns(rec["time"]):
                    fail(i, "stream %d: ts %s is not the record's time %s in ns (%d)"
                         % (j, ts, rec["time"], rfc3339_ns(rec["time"])))
                for k in ("node", "kind", "severity"):
                    if rec.get(k) != labels[k]:
                        fail(i, "stream %d: label %s=%r but the record says %r" % (j, k, labels[k], rec.get(k)))
                kinds.add(rec["kind"])
                seen.append(rec["id"])
    print("bodies=%d streams=%d values=%d unique=%d kinds=%s"
          % (len(bodies), nstreams, len(seen), len(set(seen)), ",".join(sorted(kinds))))
    return 0


def cmd_frames(a):
    import glob
    import struct
    import zlib
    n = 0
    # the segments, and the pending inventory group the spool keeps in its own file
    # (spool_replace_latest: same framing)
    paths = sorted(glob.glob(os.path.join(a.dir, "*.seg")))
    if os.path.isfile(os.path.join(a.dir, "latest")):
        paths.append(os.path.join(a.dir, "latest"))
    for path in paths:
        with open(path, "rb") as f:
            buf = f.read()
        off = 0
        while off + 20 <= len(buf):
            magic, length, _seq, crc = struct.unpack_from("<IIQI", buf, off)
            end = off + 20 + length
            if magic != 0x31535750 or end > len(buf):
                break
            if zlib.crc32(buf[off + 20:end], zlib.crc32(buf[off + 4:off + 16])) & 0xffffffff != crc:
                break
            n += 1
            off = end
    print(n)
    return 0


def cmd_metric(a):
    for line in sys.stdin:
        parts = line.split()
        if len(parts) == 2 and parts[0] == a.name:
            print(parts[1])
            return 0
    print("metric %s not found" % a.name, file=sys.stderr)
    return 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("delivered")
    p.add_argument("--expect", action="append", required=True)
    p.add_argument("--received", required=True)
    p.add_argument("--minus")
    p.add_argument("--allow-extra", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p = sub.add_parser("ids")
    p.add_argument("file")
    p = sub.add_parser("deadletter")
    p.add_argument("file")
    p = sub.add_parser("loki")
    p.add_argument("--bodies", required=True)
    p.add_argument("--stdout", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--cluster", required=True)
    p = sub.add_parser("frames")
    p.add_argument("dir")
    p = sub.add_parser("metric")
    p.add_argument("name")
    a = ap.parse_args()
    return {"delivered": cmd_delivered, "ids": cmd_ids, "deadletter": cmd_deadletter, "loki": cmd_loki,
            "frames": cmd_frames, "metric": cmd_metric}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
