#!/usr/bin/python3
"""Build pullwatch's OCI images offline, reproducibly, from the binaries CMake just built.

    mkimage.py --layout DIR --source-dir SRC --version V --source-url URL
               --image name=pullwatch,binary=PATH[,tag-prefix=P][,cmd=A B][,dlopen=LIB[:LIB]]...
               [--file HOSTPATH]... [--dir PATH]... [--allow-dirty]
               [--kustomize-out DIR --kustomize-base DIR --repository PREFIX]

Writes an OCI image layout (image-spec v1.1) to DIR holding one image per --image:
a single layer with the binary at /usr/bin/NAME, exactly the shared libraries `ldd`
names for it (and for each dlopen()ed library: the agent loads libcurl on demand),
the --file entries (the CA bundle) and the --dir mount points; no shell. The config
carries the org.opencontainers.image.{revision,source,created,version,title} labels
(also as manifest annotations); the manifest is tagged in index.json
(org.opencontainers.image.ref.name) with PREFIX + the commit's short SHA.

Reproducible: the commit time (or $SOURCE_DATE_EPOCH) is every mtime and the created
date, entries are sorted, owners are 0:0 with no names, modes are normalised, gzip
carries no name or time, JSON is written with sorted keys. Two builds of one commit on
one machine give the same manifest digests (tests/integration/test_image_repro.sh).

A work tree with changes is refused (exit 1, one line naming a changed file); with
--allow-dirty the image is built but visibly marked: tag SHORT-dirty, revision
label SHA-dirty. Without git (a source tarball), PW_REVISION and SOURCE_DATE_EPOCH
must be set.

With --kustomize-out, also writes DIR/kustomization.yaml: the base --kustomize-base
with each image replaced by REPOSITORY/NAME@DIGEST, so what `kubectl apply -k` deploys
is exactly the layout just built. Prints "NAME TAG DIGEST" per image on stdout and
writes the same as JSON to LAYOUT/../image-digests.json. Standard library only.
"""
import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
        "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}


def die(msg):
    print(f"mkimage: {msg}", file=sys.stderr)
    sys.exit(1)


def git(src, *args):
    return subprocess.run(["git", "-C", src, *args], check=True, capture_output=True,
                          text=True).stdout.rstrip("\n")


def source_identity(src, allow_dirty):
    """(full revision, short tag, epoch, dirty) of the source tree."""
    env_rev, env_epoch = os.environ.get("PW_REVISION"), os.environ.get("SOURCE_DATE_EPOCH")
    try:
        rev = git(src, "rev-parse", "HEAD")
        epoch = int(env_epoch) if env_epoch else int(git(src, "log", "-1", "--format=%ct"))
        # untracked files count: CMake globs pick up any new .c file
        changed = git(src, "status", "--porcelain", "--untracked-files=normal").splitlines()
    except (subprocess.CalledProcessError, FileNotFoundError):
        if not (env_rev and env_epoch):
            die(f"{src} is not a git work tree; set PW_REVISION (the full commit SHA) and "
                "SOURCE_DATE_EPOCH (its commit time) to build an image from a tarball")
        if not re.fullmatch(r"[0-9a-f]{40}", env_rev):
            die(f"PW_REVISION must be a full 40-hex commit SHA, got {env_rev!r}")
        return env_rev, env_rev[:7], int(env_epoch), False
    if changed:
        if not allow_dirty:
            die(f"work tree {src} has {len(changed)} uncommitted change(s) (first: "
                f"{changed[0][3:]!r}); an image is tagged with its commit, so commit first, or "
                "configure with -DPW_IMAGE_ALLOW_DIRTY=ON for an image marked SHORT-dirty")
        return rev + "-dirty", rev[:7] + "-dirty", epoch, True
    return rev, rev[:7], epoch, False


def ldd(path):
    """The absolute paths of every shared object `ldd` resolves for path (vdso excluded)."""
    out = subprocess.run(["ldd", path], check=True, capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        line = line.strip()
        if "=>" in line:
            target = line.split("=>", 1)[1].strip().split(" (")[0].strip()
            if target == "not found" or not target:
                die(f"ldd {path}: {line}")
            libs.append(target)
        elif line.startswith("/"):
            libs.append(line.split(" (")[0].strip())
    return libs


class Tree:
    """The files of one image: image path -> (kind, payload). Parents are added as dirs."""

    def __init__(self):
        self.entries = {}

    def _parents(self, path):
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            p = "/" + "/".join(parts[:i])
            kind = self.entries.get(p, ("dir",))[0]
            if kind == "symlink":
                die(f"{path}: parent {p} is a symlink in the image")
            self.entries.setdefault(p, ("dir",))

    def add_dir(self, path):
        self._parents(path + "/x")

    def add_file(self, image_path, host_path):
        self._parents(image_path)
        self.entries[image_path] = ("file", host_path)

    def add_host_path(self, path, depth=0):
        """Add path as the host has it: every symlink on the way (/lib -> usr/lib,
        libfoo.so.1 -> libfoo.so.1.2.3) becomes a symlink in the image."""
        if depth > 20:
            die(f"too many symlinks resolving {path}")
        parts = os.path.normpath(path).strip("/").split("/")
        for i in range(len(parts)):
            cur = "/" + "/".join(parts[: i + 1])
            if os.path.islink(cur):
                target = os.readlink(cur)
                self._parents(cur)
                self.entries[cur] = ("symlink", target)
                base = target if target.startswith("/") else os.path.join(os.path.dirname(cur), target)
                rest = parts[i + 1:]
                return self.add_host_path(os.path.normpath(os.path.join(base, *rest)), depth + 1)
        if not os.path.isfile(path):
            die(f"{path}: not a regular file")
        self.add_file(path, path)

    def tar(self, epoch):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            for path in sorted(self.entries):
                kind, payload = (self.entries[path] + (None,))[:2]
                ti = tarfile.TarInfo(path.lstrip("/"))
                ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = epoch, 0, 0, "", ""
                if kind == "dir":
                    ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                    t.addfile(ti)
                elif kind == "symlink":
                    ti.type, ti.mode, ti.linkname = tarfile.SYMTYPE, 0o777, payload
                    t.addfile(ti)
                else:
                    with open(payload, "rb") as f:
                        data = f.read()
                    ti.size = len(data)
                    ti.mode = 0o755 if os.stat(payload).st_mode & 0o111 else 0o644
                    t.addfile(ti, io.BytesIO(data))
        return buf.getvalue()


def canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layout:
    def __init__(self, root):
        self.root = root
        os.makedirs(os.path.join(root, "blobs", "sha256"))
        with open(os.path.join(root, "oci-layout"), "wb") as f:
            f.write(canon({"imageLayoutVersion": "1.0.0"}))
        self.manifests = []

    def blob(self, data, media_type):
        d = sha(data)
        with open(os.path.join(self.root, "blobs", "sha256", d[7:]), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": d, "size": len(data)}

    def write_index(self):
        idx = {"schemaVersion": 2, "mediaType": MT_INDEX,
               "manifests": sorted(self.manifests, key=lambda m: m["annotations"]["org.opencontainers.image.ref.name"])}
        with open(os.path.join(self.root, "index.json"), "wb") as f:
            f.write(canon(idx))


def stripped_copy(binary, tmpdir):
    """The binary without debug sections (deterministic: same input, same output)."""
    out = os.path.join(tmpdir, os.path.basename(binary))
    subprocess.run(["strip", "--strip-debug", "-o", out, binary], check=True)
    os.chmod(out, 0o755)
    return out


def parse_image(spec):
    d = dict(kv.split("=", 1) for kv in spec.split(","))
    if "name" not in d or "binary" not in d:
        die(f"--image {spec!r}: name= and binary= are required")
    d.setdefault("tag-prefix", "")
    d["cmd"] = d.get("cmd", "").split()
    d["dlopen"] = [p for p in d.get("dlopen", "").split(":") if p]
    return d


def build_image(layout, img, ident, args, tmpdir):
    rev, short, epoch, _ = ident
    created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    name, binary = img["name"], img["binary"]
    if not os.access(binary, os.X_OK):
        die(f"{binary}: no such executable (build it first)")
    tree = Tree()
    tree.add_file(f"/usr/bin/{name}", stripped_copy(binary, tmpdir))
    libs = ldd(binary)
    for lib in img["dlopen"]:
        libs += [lib] + ldd(lib)
    for lib in sorted(set(libs)):
        tree.add_host_path(lib)
    for f in args.file:
        tree.add_host_path(f)
    for d in args.dir:
        tree.add_dir(d)
    raw = tree.tar(epoch)
    layer = gzip.compress(raw, compresslevel=9, mtime=0)
    labels = {
        "org.opencontainers.image.revision": rev,
        "org.opencontainers.image.source": args.source_url,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.version": args.version,
        "org.opencontainers.image.title": name,
    }
    n_libs = len(set(libs))
    config = {
        "architecture": ARCH.get(platform.machine(), platform.machine()),
        "os": "linux",
        "created": created,
        "config": {"Entrypoint": [f"/usr/bin/{name}"], "Cmd": img["cmd"], "User": "0:0",
                   "WorkingDir": "/", "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [sha(raw)]},
        "history": [{"created": created,
                     "created_by": f"packaging/mkimage.py: /usr/bin/{name} and the {n_libs} shared libraries it loads"}],
    }
    manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
                "config": layout.blob(canon(config), MT_CONFIG),
                "layers": [layout.blob(layer, MT_LAYER)],
                "annotations": labels}
    desc = layout.blob(canon(manifest), MT_MANIFEST)
    tag = img["tag-prefix"] + short
    desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    desc["platform"] = {"architecture": config["architecture"], "os": "linux"}
    layout.manifests.append(desc)
    return {"name": name, "tag": tag, "digest": desc["digest"], "revision": rev,
            "layer_bytes": len(layer), "files": sum(1 for e in tree.entries.values() if e[0] == "file")}


def write_kustomization(out_dir, base, repository, images, rev):
    os.makedirs(out_dir, exist_ok=True)
    rel = os.path.relpath(os.path.abspath(base), os.path.abspath(out_dir))
    lines = [f"# Written by `cmake --build BUILD --target image` from the OCI layout of commit {rev}.",
             "# Do not edit: rebuild. `kubectl apply -k` this directory deploys exactly that layout",
             "# once pushed (skopeo copy oci:BUILD/image:TAG docker://REPOSITORY/NAME:TAG).",
             "apiVersion: kustomize.config.k8s.io/v1beta1",
             "kind: Kustomization",
             "resources:",
             f"  - {rel}",
             "images:"]
    for im in images:
        lines += [f"  - name: {im['name']}",
                  f"    newName: {repository.rstrip('/')}/{im['name']}",
                  f"    digest: {im['digest']}"]
    tmp = os.path.join(out_dir, ".kustomization.yaml.tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, os.path.join(out_dir, "kustomization.yaml"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layout", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--source-url", required=True)
    ap.add_argument("--image", action="append", required=True, type=parse_image)
    ap.add_argument("--file", action="append", default=[])
    ap.add_argument("--dir", action="append", default=[])
    ap.add_argument("--allow-dirty", action="store_true")
    ap.add_argument("--kustomize-out")
    ap.add_argument("--kustomize-base")
    ap.add_argument("--repository", default="")
    args = ap.parse_args()

    ident = source_identity(args.source_dir, args.allow_dirty)
    if ident[3]:
        print(f"mkimage: WARNING: building from a dirty work tree: tagged {ident[1]}, "
              f"revision {ident[0]}", file=sys.stderr)
    layout_dir = os.path.abspath(args.layout)
    parent = os.path.dirname(layout_dir)
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix=".image.") as tmp:
        staging = os.path.join(tmp, "layout")
        layout = Layout(staging)
        built = [build_image(layout, img, ident, args, tmp) for img in args.image]
        layout.write_index()
        # replace the previous layout whole: no blob of an older build lingers in it
        if os.path.isdir(layout_dir):
            shutil.rmtree(layout_dir)
        os.rename(staging, layout_dir)
    with open(os.path.join(parent, "image-digests.json"), "w") as f:
        json.dump(built, f, indent=1, sort_keys=True)
        f.write("\n")
    if args.kustomize_out:
        if not (args.kustomize_base and args.repository):
            die("--kustomize-out needs --kustomize-base and --repository")
        write_kustomization(args.kustomize_out, args.kustomize_base, args.repository, built, ident[0])
    for b in built:
        print(f"{b['name']} {b['tag']} {b['digest']}  ({b['files']} files, layer {b['layer_bytes']} bytes)")


if __name__ == "__main__":
    main()
