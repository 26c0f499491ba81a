#!/usr/bin/env python3
"""Write an OCI archive (tar) of N single-platform images of distinct digests, for
tests/bench/relist_bench.sh: every image has a config of its own (a distinct revision
label), so a re-list must read N manifests and N configs, as on a node whose images
are all different; the one (empty) layer is shared, so the archive stays small.

    relist_bench.py OUT.tar N NAME_PREFIX
    relist_bench.py sample PID WAIT_S QUIET_S

`sample` watches PID's CPU time (the sum of its threads' schedstat run time) every
10 ms for up to WAIT_S seconds and measures the first burst of CPU it sees: from the
first sample that grew to the last one before QUIET_S seconds without growth. Prints
"cpu_ms wall_ms" (wall at 10 ms resolution).

Images are named NAME_PREFIX-00001:1.0.0 ... through the io.containerd.image.name
annotation, which `ctr images import` uses as the full image name. Standard library only.
"""
import gzip
import hashlib
import io
import json
import platform
import sys
import tarfile

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def blob(tar, data):
    d = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo("blobs/sha256/" + d)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
    return "sha256:" + d


def cpu_ns(pid):
    import glob
    s = 0
    for f in glob.glob("/proc/%d/task/*/schedstat" % pid):
        try:
            with open(f) as fh:
                s += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return s


def sample(pid, wait_s, quiet_s):
    import time
    deadline = time.monotonic() + wait_s
    prev = cpu_ns(pid)
    start = None
    while time.monotonic() < deadline:
        time.sleep(0.01)
        now, cur = time.monotonic(), cpu_ns(pid)
        if cur > prev + 200000:  # 0.2 ms: the watchdog or a timer tick is not a re-list
            if start is None:
                start, start_cpu, start_t = prev, cur, now - 0.01
            last_t, last_cpu = now, cur
        prev = cur
        if start is not None and now - last_t >= quiet_s:
            print("%.1f %.0f" % ((last_cpu - start) / 1e6, (last_t - start_t) * 1000))
            return
    print("nan nan")


def main():
    if sys.argv[1] == "sample":
        return sample(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
    out, n, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        pass
    layer_tar = raw.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    layer = gzip.compress(layer_tar, mtime=0)
    manifests = []
    with tarfile.open(out, "w") as tar:
        layer_digest = blob(tar, layer)
        for i in range(1, n + 1):
            rev = hashlib.sha1(("relist-%d" % i).encode()).hexdigest()
            config = json.dumps({
                "architecture": ARCH, "os": "linux",
                "config": {"Labels": {"org.opencontainers.image.revision": rev}},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }, sort_keys=True).encode()
            cfg = blob(tar, config)
            manifest = json.dumps({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg,
                           "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest,
                            "size": len(layer)}],
            }, sort_keys=True).encode()
            md = blob(tar, manifest)
            manifests.append({
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
                "size": len(manifest),
                "annotations": {"io.containerd.image.name": "%s-%05d:1.0.0" % (prefix, i),
                                "org.opencontainers.image.ref.name": "1.0.0"},
            })
        for name, data in (("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
                           ("index.json", json.dumps({"schemaVersion": 2, "manifests": manifests}).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    main()
