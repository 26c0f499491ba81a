#!/usr/bin/env python3
"""Write an OCI archive (tar) of N tiny images of distinct digests, for
`ctr images import --no-unpack`: the fast way to give a private containerd
thousands of images whose config blobs must each be read.

    mkscale.py OUT.tar N PREFIX [REVISION]

Image i (1..N) is named PREFIX-%05d:1.0.0 (PREFIX a full repository, e.g.
bench.local/scale/img). Every image has its own config (a label
bench.pullwatch.seq=i, and org.opencontainers.image.revision=REVISION unless
REVISION is "-") and so its own manifest digest; all share one empty layer.
The names go into index.json as io.containerd.image.name (ctr's full name)
and org.opencontainers.image.ref.name. Standard library only; ~1 s per
10,000 images.
"""
import gzip
import hashlib
import io
import json
import platform
import sys
import tarfile

ARCH_MAP = {
    "x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
    "armv7l": "arm", "armv6l": "arm", "i386": "386", "i686": "386",
    "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
}
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    out, n, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    revision = sys.argv[4] if len(sys.argv) == 5 else "0123456789abcdef0123456789abcdef01234567"
    arch = ARCH_MAP.get(platform.machine())
    if not arch:
        sys.exit("mkscale: unknown machine architecture %r" % platform.machine())

    empty_tar = io.BytesIO()
    with tarfile.open(fileobj=empty_tar, mode="w", format=tarfile.PAX_FORMAT):
        pass
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0) as g:
        g.write(empty_tar.getvalue())
    layer = gz.getvalue()
    layer_d, diff_id = sha(layer), sha(empty_tar.getvalue())

    index = {"schemaVersion": 2, "manifests": []}
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add(tar, "blobs/sha256/" + layer_d[7:], layer)
        for i in range(1, n + 1):
            labels = {"bench.pullwatch.seq": str(i)}
            if revision != "-":
                labels["org.opencontainers.image.revision"] = revision
            config = canon({"architecture": arch, "os": "linux", "config": {"Labels": labels},
                            "rootfs": {"type": "layers", "diff_ids": [diff_id]}})
            config_d = sha(config)
            manifest = canon({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                              "config": {"mediaType": MT_CONFIG, "digest": config_d, "size": len(config)},
                              "layers": [{"mediaType": MT_LAYER, "digest": layer_d, "size": len(layer)}]})
            manifest_d = sha(manifest)
            add(tar, "blobs/sha256/" + config_d[7:], config)
            add(tar, "blobs/sha256/" + manifest_d[7:], manifest)
            name = "%s-%05d:1.0.0" % (prefix, i)
            index["manifests"].append({"mediaType": MT_MANIFEST, "digest": manifest_d, "size": len(manifest),
                                       "annotations": {"io.containerd.image.name": name,
                                                       "org.opencontainers.image.ref.name": "1.0.0"}})
        add(tar, "index.json", canon(index))


if __name__ == "__main__":
    main()
