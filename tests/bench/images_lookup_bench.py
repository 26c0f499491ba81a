#!/usr/bin/python3
"""images_lookup_bench.py SOCKET CONTAINERD_PID NAME_FORMAT N K... — containerd's CPU
(utime+stime of its process, /proc/PID/stat) and the wall time for N image look-ups in
namespace default: one Images.Get per name (what the agent sends per /images/create
event), then the same N names as Images.List calls of K names each (filters OR'ed, one
`name=="…"` per name, the value quoted in Go string syntax). Requests encoded by hand
(python3-grpcio, raw bytes): no generated code needed. Prints one line per K."""
import os
import sys
import time

import grpc


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from pbwire import ld as field  # noqa: E402


def ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def quoted(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main():
    sock, pid, fmt, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    hz = os.sysconf("SC_CLK_TCK")
    ch = grpc.insecure_channel("unix:" + sock)
    md = (("containerd-namespace", "default"),)
    get = ch.unary_unary("/containerd.services.images.v1.Images/Get")
    lst = ch.unary_unary("/containerd.services.images.v1.Images/List")
    names = [fmt % (i + 1) for i in range(n)]
    get(field(1, names[0].encode()), metadata=md)  # the connection, warm
    t0, w0 = ticks(pid), time.monotonic()
    for name in names:
        get(field(1, name.encode()), metadata=md)
    t1, w1 = ticks(pid), time.monotonic()
    print(f"Images.Get, one per name: containerd CPU {(t1 - t0) * 1e6 / hz / n:8.0f} us a name, "
          f"wall {(w1 - w0) * 1e6 / n:7.0f} us a call")
    for k in (int(a) for a in sys.argv[5:]):
        calls = (n + k - 1) // k
        t0, w0 = ticks(pid), time.monotonic()
        for i in range(0, n, k):
            req = b"".join(field(1, ("name==" + quoted(x)).encode()) for x in names[i:i + k])
            if len(lst(req, metadata=md)) == 0:
                sys.exit(f"Images.List of {names[i:i + k]} found nothing")
        t1, w1 = ticks(pid), time.monotonic()
        print(f"Images.List, {k:3d} names a call: containerd CPU {(t1 - t0) * 1e6 / hz / n:8.0f} us a name, "
              f"wall {(w1 - w0) * 1e6 / calls:7.0f} us a call")


if __name__ == "__main__":
    main()
