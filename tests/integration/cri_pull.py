#!/usr/bin/python3
"""cri_pull.py SOCKET IMAGE — pull IMAGE through containerd's CRI plugin as the kubelet
does: runtime.v1.ImageService/PullImage over gRPC (python3-grpcio), with the request
encoded by hand (PullImageRequest{image: ImageSpec{image: IMAGE}}). Prints the image_ref
(the image id) the plugin answers; exit 1 with the gRPC status on failure."""
import sys

import grpc
from pbwire import fields, ld


def main():
    sock, image = sys.argv[1], sys.argv[2]
    req = ld(1, ld(1, image))
    with grpc.insecure_channel("unix://" + sock) as ch:
        pull = ch.unary_unary("/runtime.v1.ImageService/PullImage")
        try:
            resp = pull(req, timeout=60)
        except grpc.RpcError as e:
            print("PullImage %s: %s: %s" % (image, e.code().name, e.details()), file=sys.stderr)
            return 1
    print(fields(resp).get(1, [b""])[0].decode())  # PullImageResponse.image_ref
    return 0


if __name__ == "__main__":
    sys.exit(main())
