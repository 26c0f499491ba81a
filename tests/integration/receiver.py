#!/usr/bin/env python3
"""Integration receiver for pullwatch's shipper (python3 stdlib only).

An HTTP(S) server on 127.0.0.1 that records every record it receives and can be
told how to behave.

  receiver.py --records FILE [--port N | --port-file FILE] [--requests FILE]
              [--bodies FILE] [--cert PEM --key PEM [--client-ca PEM]] [--mode ok]

* POST <any path but /control>: the body (gzip if Content-Encoding: gzip) is either
  JSON lines (one record per line) or a Loki push document ({"streams": [...]}).
  In mode "ok" every record is appended to --records as one JSON line
  {"id": ..., "record": <the record>, "stream": <labels, Loki only>, "ts": <Loki ts>},
  and the answer is 204 (Loki) or 200. Other modes answer without recording:
    fail500  -> 500
    429      -> 429 with Retry-After: <retry_after> (seconds)
    400      -> 400 with a short text body
    stall    -> no answer for <stall> seconds (default 30), then 503
  "count": N applies the mode to the next N data requests, then reverts to "ok".
* POST /control {"mode": ..., "retry_after": N, "count": N, "stall": S}: change mode.
* GET /control: {"requests": N, "records": N, "mode": ...}.
* --requests FILE: one JSON line per data request:
  {"t": <unix time, float>, "status": N, "records": N, "encoding": ..., "content_type": ...,
   "authorization": <"Bearer <sha256 prefix>" or null>, "headers": {X-* headers}}
* --bodies FILE: in mode "ok", one JSON line per data request that parsed:
  {"status": N, "encoding": ..., "content_type": ..., "body": <the body, gunzipped, as text>}
  (to check a wire format field by field).
* Port 0 (default) binds an ephemeral port and writes it to --port-file atomically.
* TLS: --cert/--key; --client-ca makes a client certificate mandatory (mTLS).
"""

import argparse
import gzip
import hashlib
import http.server
import json
import os
import ssl
import sys
import threading
import time

LOCK = threading.Lock()
STATE = {"mode": "ok", "retry_after": 1, "count": None, "stall": 30.0, "requests": 0, "records": 0}


def append_lines(path, lines):
    if not path or not lines:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
        f.flush()


def split_records(body, content_type):
    """Returns a list of (record, stream_labels, ts) or raises ValueError."""
    text = body.decode("utf-8")
    stripped = text.lstrip()
    if stripped.startswith("{") and '"streams"' in stripped[:64] and "ndjson" not in content_type:
        doc = json.loads(text)
        out = []
        for stream in doc["streams"]:
            labels = stream["stream"]
            if not isinstance(labels, dict) or not labels:
                raise ValueError("stream without labels")
            for value in stream["values"]:
                ts, line = value[0], value[1]
                if not isinstance(ts, str) or not ts.isdigit():
                    raise ValueError("timestamp must be a string of digits")
                out.append((json.loads(line), labels, ts))
        return out
    out = []
    if text and not text.endswith("\n"):
        raise ValueError("JSON lines body must end with a newline")
    for line in text.split("\n"):
        if line:
            out.append((json.loads(line), None, None))
    return out


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pullwatch-test-receiver"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _reply(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and status != 204:
            self.wfile.write(body)

    def _read_body(self):
        n = int(self.headers.get("Content-Length", "0"))
        if n > 256 * 1024 * 1024:
            raise ValueError("body too large")
        return self.rfile.read(n)

    def do_GET(self):
        if self.path != "/control":
            self._reply(404, b"not found\n")
            return
        with LOCK:
            body = json.dumps({k: STATE[k] for k in ("requests", "records", "mode")}).encode()
        self._reply(200, body, {"Content-Type": "application/json"})

    def do_POST(self):
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self._reply(400, b"bad body\n")
            return
        if self.path == "/control":
            self._control(body)
            return
        self._data(body)

    def _control(self, body):
        try:
            req = json.loads(body or b"{}")
            mode = req.get("mode", "ok")
            if mode not in ("ok", "fail500", "stall", "429", "400"):
                raise ValueError(mode)
        except ValueError as e:
            self._reply(400, ("bad control: %s\n" % e).encode())
            return
        with LOCK:
            STATE["mode"] = mode
            STATE["retry_after"] = req.get("retry_after", STATE["retry_after"])
            STATE["count"] = req.get("count")
            STATE["stall"] = float(req.get("stall", STATE["stall"]))
        self._reply(200, b"{}", {"Content-Type": "application/json"})

    def _data(self, body):
        with LOCK:
            mode = STATE["mode"]
            if STATE["count"] is not None:
                STATE["count"] -= 1
                if STATE["count"] <= 0:
                    STATE["mode"], STATE["count"] = "ok", None
            STATE["requests"] += 1
            retry_after, stall = STATE["retry_after"], STATE["stall"]
        enc = self.headers.get("Content-Encoding", "")
        ctype = self.headers.get("Content-Type", "")
        auth = self.headers.get("Authorization")
        if auth and auth.startswith("Bearer "):
            # never store the secret itself: a digest is enough to tell rotations apart
            auth = "Bearer " + hashlib.sha256(auth[7:].encode()).hexdigest()[:16]
        extra = {k: v for k, v in self.headers.items() if k.lower().startswith("x-")}
        status, nrec, lines = 200, 0, []

        if mode == "ok":
            try:
                raw = gzip.decompress(body) if enc == "gzip" else body
                recs = split_records(raw, ctype)
            except (ValueError, OSError, KeyError, IndexError, TypeError, EOFError) as e:
                status = 400
                self._log(status, 0, enc, ctype, auth, extra)
                self._reply(400, ("cannot parse body: %s\n" % e).encode()[:300])
                return
            for rec, labels, ts in recs:
                entry = {"id": rec.get("id") if isinstance(rec, dict) else None, "record": rec}
                if labels is not None:
                    entry["stream"], entry["ts"] = labels, ts
                lines.append(json.dumps(entry, separators=(",", ":")))
            nrec = len(lines)
            append_lines(self.server.records_path, lines)
            if self.server.bodies_path:
                status = 204 if ctype.startswith("application/json") else 200
                append_lines(self.server.bodies_path, [json.dumps(
                    {"status": status, "encoding": enc, "content_type": ctype, "body": raw.decode("utf-8")})])
            with LOCK:
                STATE["records"] += nrec
            status = 204 if ctype.startswith("application/json") else 200
            self._log(status, nrec, enc, ctype, auth, extra)
            self._reply(status)
            return

        if mode == "stall":
            deadline = time.monotonic() + stall
            while time.monotonic() < deadline:
                time.sleep(0.05)
            status = 503
            self._log(status, 0, enc, ctype, auth, extra)
            try:
                self._reply(503, b"stalled\n")
            except OSError:
                pass
            return
        if mode == "fail500":
            status, reply, headers = 500, b"internal error (test)\n", {}
        elif mode == "429":
            status, reply, headers = 429, b"slow down\n", {"Retry-After": str(retry_after)}
        else:
            status, reply, headers = 400, b"entry rejected: test says 400\n", {}
        self._log(status, 0, enc, ctype, auth, extra)
        self._reply(status, reply, headers)

    def _log(self, status, nrec, enc, ctype, auth, extra):
        entry = {"t": time.time(), "status": status, "records": nrec, "encoding": enc,
                 "content_type": ctype, "authorization": auth, "headers": extra}
        with LOCK:
            append_lines(self.server.requests_path, [json.dumps(entry)])


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--records", required=True)
    ap.add_argument("--requests")
    ap.add_argument("--bodies")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--client-ca")
    ap.add_argument("--mode", default="ok", choices=["ok", "fail500", "stall", "429", "400"])
    ap.add_argument("--retry-after", type=int, default=1)
    args = ap.parse_args()
    STATE["mode"], STATE["retry_after"] = args.mode, args.retry_after

    srv = Server(("127.0.0.1", args.port), Handler)
    srv.records_path, srv.requests_path = args.records, args.requests
    srv.bodies_path = args.bodies
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        if args.client_ca:
            ctx.load_verify_locations(args.client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    port = srv.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, args.port_file)
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
