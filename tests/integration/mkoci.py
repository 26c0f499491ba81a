#!/usr/bin/env python3
"""Build a tiny OCI image layout for the pullwatch integration suite.

    mkoci.py image DIR TAG REVISION SEED
    mkoci.py index DIR TAG REVISION SEED

Writes (or extends) the OCI layout DIR and tags the new image as TAG in
DIR/index.json, so that `skopeo copy oci:DIR:TAG docker://...` pushes it.

`image` builds one single-platform image for the host architecture.
`index` builds a multi-arch image index with two platform manifests, the
host's first and a second architecture.

Each layer is a gzip'd tar holding one file whose content depends on SEED
(and on the platform), so different seeds give different digests and the
same arguments always give the same digests.  When REVISION is not empty,
the config carries the label org.opencontainers.image.revision=REVISION.

Prints on stdout, one per line:
    image: "<manifest digest> <config digest>"
    index: "<index digest> <host manifest digest> <host config digest>"
Standard library only.
"""
import gzip
import hashlib
import io
import json
import os
import platform
import sys
import tarfile

ARCH_MAP = {
    "x86_64": "amd64", "amd64": "amd64",
    "aarch64": "arm64", "arm64": "arm64",
    "armv7l": "arm", "armv6l": "arm",
    "i386": "386", "i686": "386",
    "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
}

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def host_arch():
    m = platform.machine()
    if m not in ARCH_MAP:
        sys.exit(f"mkoci: unknown machine architecture {m!r}")
    return ARCH_MAP[m]


def other_arch(arch):
    return "arm64" if arch != "arm64" else "amd64"


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_blob(layout, data):
    d = sha(data)
    bdir = os.path.join(layout, "blobs", "sha256")
    os.makedirs(bdir, exist_ok=True)
    path = os.path.join(bdir, d.split(":", 1)[1])
    if not os.path.exists(path):
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, path)
    return d


def canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def make_layer(seed, arch):
    content = f"pullwatch integration image\nseed={seed}\narch={arch}\n".encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("pw-seed.txt")
        info.size = len(content)
        info.mtime = 0
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0) as g:
        g.write(tar_bytes)
    return tar_bytes, gz.getvalue()


def make_manifest(layout, revision, seed, arch):
    tar_bytes, gz_bytes = make_layer(seed, arch)
    layer_d = put_blob(layout, gz_bytes)
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/pw-seed.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(tar_bytes)]},
        "history": [{"created_by": f"pullwatch mkoci seed={seed}"}],
    }
    if revision:
        config["config"]["Labels"] = {"org.opencontainers.image.revision": revision}
    config_bytes = canon(config)
    config_d = put_blob(layout, config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": config_d, "size": len(config_bytes)},
        "layers": [{"mediaType": MT_LAYER, "digest": layer_d, "size": len(gz_bytes)}],
    }
    mbytes = canon(manifest)
    return put_blob(layout, mbytes), len(mbytes), config_d


def tag_in_layout(layout, tag, mediatype, digest, size):
    os.makedirs(layout, exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    ipath = os.path.join(layout, "index.json")
    index = {"schemaVersion": 2, "manifests": []}
    if os.path.exists(ipath):
        with open(ipath) as f:
            index = json.load(f)
    key = "org.opencontainers.image.ref.name"
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get(key) != tag]
    index["manifests"].append({"mediaType": mediatype, "digest": digest, "size": size,
                               "annotations": {key: tag}})
    with open(ipath + ".tmp", "w") as f:
        json.dump(index, f)
    os.rename(ipath + ".tmp", ipath)


def main():
    if len(sys.argv) != 6 or sys.argv[1] not in ("image", "index"):
        sys.exit(__doc__)
    mode, layout, tag, revision, seed = sys.argv[1:]
    os.makedirs(layout, exist_ok=True)
    arch = host_arch()
    if mode == "image":
        d, size, cfg = make_manifest(layout, revision, seed, arch)
        tag_in_layout(layout, tag, MT_MANIFEST, d, size)
        print(d, cfg)
        return
    entries = []
    host_d = host_cfg = None
    for a in (arch, other_arch(arch)):
        d, size, cfg = make_manifest(layout, revision, seed, a)
        if a == arch:
            host_d, host_cfg = d, cfg
        entries.append({"mediaType": MT_MANIFEST, "digest": d, "size": size,
                        "platform": {"architecture": a, "os": "linux"}})
    ibytes = canon({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries})
    idx_d = put_blob(layout, ibytes)
    tag_in_layout(layout, tag, MT_INDEX, idx_d, len(ibytes))
    print(idx_d, host_d, host_cfg)


if __name__ == "__main__":
    main()
