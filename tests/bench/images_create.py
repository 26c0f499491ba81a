#!/usr/bin/python3
"""images_create.py SOCKET BASE PREFIX N GAP — N image records PREFIX-<i>:1.0.0 with BASE's
target, made by one long-lived gRPC client (Images.Create, namespace default, python3-grpcio,
requests encoded by hand), GAP seconds apart (0: back to back). What `ctr images tag` does,
without a fresh Go process per event: the events reach the agent with only containerd and
this client running in between."""
import sys
import time

import grpc


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, payload):
    return varint((num << 3) | 2) + varint(len(payload)) + payload


def fields(msg):
    """Top-level fields of a message: {number: [raw value bytes or int]}."""
    i, out = 0, {}
    while i < len(msg):
        key, shift = 0, 0
        while True:
            b = msg[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        num, wire = key >> 3, key & 7
        if wire == 2 or wire == 0:
            n, shift = 0, 0
            while True:
                b = msg[i]
                i += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            if wire == 2:
                out.setdefault(num, []).append(msg[i:i + n])
                i += n
            else:
                out.setdefault(num, []).append(n)
        else:
            sys.exit(f"unexpected wire type {wire}")
    return out


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
