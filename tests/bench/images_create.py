#!/usr/bin/python3
"""images_create.py SOCKET BASE PREFIX N GAP — N image records PREFIX-<i>:1.0.0 with BASE's
target, made by one long-lived gRPC client (Images.Create, namespace default, python3-grpcio,
requests encoded by hand), GAP seconds apart (0: back to back). What `ctr images tag` does,
without a fresh Go process per event: the events reach the agent with only containerd and
this client running in between."""
import os
import sys
import time

import grpc


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from pbwire import fields, ld as field  # noqa: E402


def main():
    sock, base, prefix, n, gap = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    ch = grpc.insecure_channel("unix:" + sock)
    md = (("containerd-namespace", "default"),)
    get = ch.unary_unary("/containerd.services.images.v1.Images/Get")
    create = ch.unary_unary("/containerd.services.images.v1.Images/Create")
    image = fields(get(field(1, base.encode()), metadata=md))[1][0]  # GetImageResponse.image
    target = fields(image)[3][0]                                       # Image.target (Descriptor)
    for i in range(1, n + 1):
        create(field(1, field(1, f"{prefix}-{i:05d}:1.0.0".encode()) + field(3, target)), metadata=md)
        if gap > 0:
            time.sleep(gap)


if __name__ == "__main__":
    main()
