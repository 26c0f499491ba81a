"""Protobuf's wire format by hand, for the test and bench clients and the fake containerd
(python3-grpcio carries bytes; no generated code, no python3-protobuf)."""


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def ld(field, data):
    """A length-delimited field: tag, length, bytes (str is UTF-8 encoded)."""
    if isinstance(data, str):
        data = data.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


def _read_varint(msg, i):
    n, shift = 0, 0
    while True:
        b = msg[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def fields(msg):
    """Top-level fields of a message: {number: [raw bytes (length-delimited) or int (varint)]}.
    Other wire types raise ValueError."""
    i, out = 0, {}
    while i < len(msg):
        key, i = _read_varint(msg, i)
        num, wire = key >> 3, key & 7
        if wire not in (0, 2):
            raise ValueError(f"unexpected wire type {wire}")
        n, i = _read_varint(msg, i)
        if wire == 2:
            out.setdefault(num, []).append(bytes(msg[i:i + n]))
            i += n
        else:
            out.setdefault(num, []).append(n)
    return out
