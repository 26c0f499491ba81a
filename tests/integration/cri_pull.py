#!/usr/bin/python3
"""cri_pull.py SOCKET IMAGE — pull IMAGE through containerd's CRI plugin as the kubelet
does: runtime.v1.ImageService/PullImage over gRPC (python3-grpcio), with the request
encoded by hand (PullImageRequest{image: ImageSpec{image: IMAGE}}). Prints the image_ref
(the image id) the plugin answers; exit 1 with the gRPC status on failure."""
import sys

import grpc


def field(num, payload):
    """A length-delimited protobuf field."""
    n, key, out = len(payload), (num << 3) | 2, bytearray()
    out.append(key)
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            break
    return bytes(out) + payload


def first_string(msg):
    """Field 1 of a message, as a string (PullImageResponse.image_ref)."""
    if not msg or msg[0] != 0x0A:
        return ""
    i, n, shift = 1, 0, 0
    while True:
        b = msg[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return msg[i:i + n].decode()


def main():
    sock, image = sys.argv[1], sys.argv[2]
    req = field(1, field(1, image.encode()))
    with grpc.insecure_channel("unix://" + sock) as ch:
        pull = ch.unary_unary("/runtime.v1.ImageService/PullImage")
        try:
            resp = pull(req, timeout=60)
        except grpc.RpcError as e:
            print("PullImage %s: %s: %s" % (image, e.code().name, e.details()), file=sys.stderr)
            return 1
    print(first_string(resp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
