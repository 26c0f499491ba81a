/* The gRPC reassembler fed the input in random chunk splits. The first byte picks the
 * message size limit, the next two seed the split points; the reassembly must deliver
 * the same messages as a single feed, whatever the splits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pullwatch/grpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct Sum {
        uint64_t n, bytes, hash;
} Sum;

static int on_msg(const uint8_t *msg, size_t len, void *ud) {
        Sum *s = ud;
        s->n++;
        s->bytes += len;
        for (size_t i = 0; i < len; i++)
                s->hash = s->hash * 131 + msg[i];
        s->hash = s->hash * 131 + 0x100; /* message boundary */
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 3)
                return 0;
        size_t max = (size_t) data[0] * 4;
        uint32_t seed = (uint32_t) data[1] << 8 | data[2];
        data += 3;
        size -= 3;

        GrpcReader whole, split;
        Sum a = {}, b = {};
        grpc_reader_init(&whole, max ? max : 1);
        grpc_reader_init(&split, max ? max : 1);
        int ra = grpc_reader_feed(&whole, data, size, on_msg, &a);

        int rb = 0;
        size_t off = 0;
        while (off < size) {
                seed = seed * 1103515245u + 12345u;
                size_t k = 1 + (seed >> 16) % 9;
                if (k > size - off)
                        k = size - off;
                rb = grpc_reader_feed(&split, data + off, k, on_msg, &b);
                if (rb < 0)
                        break;
                off += k;
        }
        if (ra != rb || a.n != b.n || a.bytes != b.bytes || a.hash != b.hash)
                __builtin_trap();
        if (ra == 0 && grpc_reader_idle(&whole) != grpc_reader_idle(&split))
                __builtin_trap();
        grpc_reader_done(&whole);
        grpc_reader_done(&split);
        return 0;
}
