#!/usr/bin/python3
"""image_ops.py SOCKET NAMESPACE OP... — image records changed back to back by one gRPC
client (python3-grpcio, requests encoded by hand), each OP one call:
  create:NAME=FROM   Images.Create of NAME with FROM's target
  update:NAME=FROM   Images.Update of NAME to FROM's target (a tag moved)
  delete:NAME        Images.Delete of NAME
What `ctr images tag/rm` do, without a process between two calls: the events reach the
agent closer together than any look-up delay."""
import os
import sys

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pbwire import fields, ld as field  # noqa: E402

SVC = "/containerd.services.images.v1.Images/"


def main():
    sock, ns, ops = sys.argv[1], sys.argv[2], sys.argv[3:]
    ch = grpc.insecure_channel("unix:" + sock)
    md = (("containerd-namespace", ns),)
    call = {m: ch.unary_unary(SVC + m) for m in ("Get", "Create", "Update", "Delete")}
    targets = {}

    def target(name):
        if name not in targets:
            image = fields(call["Get"](field(1, name), metadata=md))[1][0]  # GetImageResponse.image
            targets[name] = fields(image)[3][0]                             # Image.target
        return targets[name]

    for op in ops:
        verb, _, arg = op.partition(":")
        if verb == "delete":
            call["Delete"](field(1, arg), metadata=md)
            continue
        name, _, src = arg.rpartition("=")  # NAME may hold "=" itself
        image = field(1, field(1, name) + field(3, target(src)))
        if verb == "create":
            call["Create"](image, metadata=md)
        elif verb == "update":
            # UpdateImageRequest: image, update_mask (FieldMask.paths = "target")
            call["Update"](image + field(2, field(1, "target")), metadata=md)
        else:
            sys.exit(f"unknown op {op}")


if __name__ == "__main__":
    main()
