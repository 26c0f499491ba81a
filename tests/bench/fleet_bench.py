#!/usr/bin/env python3
"""Data and load for tests/bench/fleet_bench.sh.

    fleet_bench.py records N DIR        N pull/finding records as gzip'd JSON-lines batches
                                        of 1,000 (DIR/batch-*.gz) and the same rows as CSV
                                        in the records table's column order (DIR/records.csv)
    fleet_bench.py inventory NODES IMAGES DIR [HOUR]
                                        one single-part inventory of IMAGES images per node,
                                        gzip'd batches of at most 1 MiB (as the agent sends);
                                        HOUR (default 0): the same images taken HOUR hours
                                        later (new record ids), the node's next hourly inventory
    fleet_bench.py post URL DIR POSTERS  post every DIR/batch-*.gz, split over POSTERS
                                        processes on keep-alive connections; honours 503 +
                                        Retry-After; prints "seconds records retries"
"""
import gzip
import http.client
import json
import multiprocessing
import os
import random
import sys
import time
import urllib.parse

KINDS = ["pull", "pull", "pull", "latest_tag", "mutable_tag", "untraceable", "tag_moved"]
SEV = {"pull": "info", "latest_tag": "medium", "mutable_tag": "low", "untraceable": "low", "tag_moved": "high"}


def digest(i):
    return "sha256:%064x" % (i * 2654435761 % (1 << 256))


def ts(usec):
    t = time.gmtime(usec // 1000000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + ".%06dZ" % (usec % 1000000)


def csv_field(s):
    s = str(s)
    if s == "":
        return '""'  # an empty string, not NULL (psql \copy reads an unquoted empty field as NULL)
    if any(c in s for c in ',"\n\r'):
        return '"' + s.replace('"', '""') + '"'
    return s


def gen_records(n, d):
    os.makedirs(d, exist_ok=True)
    rnd = random.Random(9)
    base = 1795600800000000
    csv = open(os.path.join(d, "records.csv"), "w")
    batch, nb = [], 0
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        img = rnd.randrange(3000)
        tag = "latest" if img % 5 == 0 else "1.%d" % (img % 40)
        name = "registry.example/team-%d/app-%d" % (img % 50, img)
        ref = "%s:%s" % (name, tag)
        node = "node-%05d" % rnd.randrange(1000)
        t = base + i * 1000
        rec = {"schema": 1, "id": "%032x" % (i * 0x9E3779B97F4A7C15 % (1 << 128)), "kind": kind,
               "severity": SEV[kind], "time": ts(t), "node": node, "namespace": "k8s.io",
               "image": {"ref": ref, "name": name, "tag": tag, "digest": digest(img * 7 + (i % 3))},
               "message": "%s %s on %s" % (kind, ref, node)}
        if kind == "tag_moved":
            rec["image"]["previous_digest"] = digest(img * 7 + 5)
        if kind != "pull":
            rec["workload"] = {"namespace": "ns-%d" % (img % 30), "pod": "app-%d-%d" % (img, i % 7),
                               "container": "app"}
        batch.append(json.dumps(rec, separators=(",", ":")))
        im, w = rec["image"], rec.get("workload", {})
        row = [rec["id"], kind, rec["severity"], t, t, "", node, "k8s.io", ref, name, tag, im["digest"],
               im.get("previous_digest", ""), "", "", "", w.get("namespace", ""), w.get("pod", ""),
               w.get("container", ""), "", rec["message"]]
        csv.write(",".join(csv_field(x) for x in row) + "\n")
        if len(batch) == 1000 or i == n - 1:
            with gzip.open(os.path.join(d, "batch-%05d.gz" % nb), "wb", compresslevel=6) as f:
                f.write(("\n".join(batch) + "\n").encode())
            batch, nb = [], nb + 1
    csv.close()


def gen_inventory(nodes, images, d, hour=0):
    os.makedirs(d, exist_ok=True)
    rnd = random.Random(7)
    pool = []
    for i in range(4000):
        tag = "latest" if i % 6 == 0 else ("main" if i % 11 == 0 else "1.%d.%d" % (i % 9, i % 13))
        name = "registry.example/team-%d/svc-%d" % (i % 60, i)
        findings = []
        if tag == "latest":
            findings.append("latest_tag")
        if tag == "main":
            findings.append("mutable_tag")
        if i % 4 == 0:
            findings.append("untraceable")
        pool.append((name, tag, findings))
    base = 1795600800000000 + hour * 3600 * 1000000
    batch, size, nb = [], 0, 0
    for n in range(nodes):
        imgs = []
        for k in rnd.sample(range(len(pool)), images):
            name, tag, findings = pool[k]
            imgs.append({"namespace": "k8s.io", "ref": "%s:%s" % (name, tag), "tag": tag,
                         "digest": digest(k * 3 + (n % 2 if tag in ("latest", "main") else 0)),
                         "compliant": not findings, "findings": findings,
                         "pods": [{"namespace": "ns-%d" % (k % 40), "pod": "svc-%d-%d" % (k, n), "container": "svc"}]})
        rec = {"schema": 1, "id": "%032x" % (hour * nodes + n + 1), "kind": "inventory", "severity": "info",
               "time": ts(base + n), "node": "node-%05d" % n, "cluster": "c%d" % (n % 4), "total": images,
               "compliant": sum(1 for i in imgs if i["compliant"]), "part": 1, "parts": 1, "images": imgs}
        line = json.dumps(rec, separators=(",", ":"))
        if batch and size + len(line) + 1 > (1 << 20):
            with gzip.open(os.path.join(d, "batch-%05d.gz" % nb), "wb", compresslevel=6) as f:
                f.write(("\n".join(batch) + "\n").encode())
            batch, size, nb = [], 0, nb + 1
        batch.append(line)
        size += len(line) + 1
    if batch:
        with gzip.open(os.path.join(d, "batch-%05d.gz" % nb), "wb", compresslevel=6) as f:
            f.write(("\n".join(batch) + "\n").encode())


def poster(args):
    url, files, q = args
    u = urllib.parse.urlsplit(url)
    bodies = [open(f, "rb").read() for f in files]
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    n = retries = 0
    for body in bodies:
        while True:
            try:
                conn.request("POST", u.path, body=body, headers={
                    "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
                r = conn.getresponse()
                data = r.read()
            except (ConnectionError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
                retries += 1
                continue
            if r.status == 200:
                n += json.loads(data)["accepted"]
                break
            if r.status == 503:
                retries += 1
                time.sleep(min(float(r.getheader("Retry-After") or 1), 0.2))
                continue
            sys.exit("post: HTTP %d: %s" % (r.status, data[:200]))
    q.put((n, retries))


def post(url, d, posters):
    files = sorted(os.path.join(d, f) for f in os.listdir(d) if f.startswith("batch-"))
    q = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=poster, args=((url, files[i::posters], q),)) for i in range(posters)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    res = [q.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            sys.exit(1)
    print("%.3f %d %d" % (time.monotonic() - t0, sum(r[0] for r in res), sum(r[1] for r in res)))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "records":
        gen_records(int(sys.argv[2]), sys.argv[3])
    elif cmd == "inventory":
        gen_inventory(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]) if len(sys.argv) > 5 else 0)
    elif cmd == "post":
        post(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(__doc__)
