#!/bin/bash
# Shipping throughput: pullwatch's shipper (spool + batches + gzip, one request in
# flight) against the loopback test receiver, side by side with a peer (curl posting
# the same pre-built gzipped 1000-record batch in a loop to the same receiver), plus
# the shipper's encode+gzip throughput alone (no network, no receiver).
# The receiver is Python (parses and writes every record): it is the ceiling of both
# loopback figures, so compare the shipper with curl, and read encode+gzip for the
# shipper's own cost. fsyncs/s counted with strace on the shipping process.
# Each end-to-end run is made with both transports: native (agent/httpc.c, the default)
# and curl (libcurl through CurlEv, endpoint_transport=curl).
# Last, as root with containerd, docker-registry and skopeo installed (skip with
# SHIP_MEM=0): tests/bench/ship_mem_bench.sh, the agent's RSS and private dirty after
# shipping over HTTPS, no endpoint vs libcurl vs native, with a few and with 1,000
# images known.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
N=${N:-50000}
W=$(mktemp -d /tmp/pw-ship-bench-XXXXXX)
trap 'kill $RPID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"' EXIT

gcc -O2 -std=gnu11 -D_GNU_SOURCE -I"$SRC/include" "$SRC/tests/bench/ship_bench.c" \
    "$SRC/agent/ship.c" "$SRC/agent/spool.c" "$SRC/agent/curlev.c" "$SRC/agent/curlshim.c" \
    "$SRC/agent/httpc.c" "$SRC/agent/http1.c" "$SRC/agent/tlsshim.c" \
    "$SRC/core/dynbuf.c" "$SRC/core/fileio.c" -o "$W/ship_bench" -DPULLWATCH_VERSION='"bench"' \
    $(pkg-config --cflags jansson libcurl libsystemd zlib gnutls) $(pkg-config --libs jansson libsystemd zlib) -ldl -lpthread

echo "== encode + gzip (no network), batches of 1000 records of ~560 bytes"
"$W/ship_bench" encode 200000

start_receiver() {
    rm -f "$W/port" "$W/records.jsonl"
    python3 "$SRC/tests/integration/receiver.py" --records "$W/records.jsonl" --port-file "$W/port" &
    RPID=$!
    for _ in $(seq 200); do [ -s "$W/port" ] && break; sleep 0.05; done
    PORT=$(cat "$W/port")
}

echo "== pullwatch shipper -> loopback receiver (N=$N, fsync per batch)"
for fmt in jsonl loki; do
    for tr in native curl; do
        start_receiver
        rm -rf "$W/s"; mkdir -p "$W/s"
        "$W/ship_bench" e2e "http://127.0.0.1:$PORT/ingest" "$N" "$W/s" "$fmt" "$tr"
        echo "   receiver got $(wc -l < "$W/records.jsonl") records"
        kill $RPID; wait $RPID 2>/dev/null || true
    done
done

if command -v strace >/dev/null; then
    # separate run: ptrace slows every syscall, so it only counts
    start_receiver
    rm -rf "$W/s"; mkdir -p "$W/s"
    strace -f -c -e trace=fsync,fdatasync -o "$W/strace.txt" \
        "$W/ship_bench" e2e "http://127.0.0.1:$PORT/ingest" "$N" "$W/s" jsonl >/dev/null
    echo "fsync+fdatasync calls while spooling+shipping $N records (jsonl): $(awk '/fsync|fdatasync/ {s+=$4} END {print s+0}' "$W/strace.txt")"
    kill $RPID; wait $RPID 2>/dev/null || true
fi

echo "== peer: curl --data-binary of the same gzipped 1000-record batch, in a loop"
start_receiver
"$W/ship_bench" batch "$W/batch.gz"
ITER=$((N / 1000))
t0=$(date +%s.%N)
for _ in $(seq "$ITER"); do
    curl -s -o /dev/null -H 'Content-Encoding: gzip' -H 'Content-Type: application/x-ndjson' \
        --data-binary @"$W/batch.gz" "http://127.0.0.1:$PORT/ingest"
done
t1=$(date +%s.%N)
echo "curl: $((ITER * 1000)) records in $(echo "$t1 - $t0" | bc -l | cut -c1-5) s = $(echo "$ITER * 1000 / ($t1 - $t0)" | bc) records/s (receiver got $(wc -l < "$W/records.jsonl"))"

if [ "${SHIP_MEM:-1}" != 0 ] && [ "$(id -u)" = 0 ] && command -v containerd >/dev/null && command -v skopeo >/dev/null; then
    echo "== agent memory with an HTTPS endpoint (tests/bench/ship_mem_bench.sh)"
    "$SRC/tests/bench/ship_mem_bench.sh"
else
    echo "== agent memory: skipped (needs root, containerd and skopeo; or SHIP_MEM=0)"
fi
