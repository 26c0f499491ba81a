/* The HTTP/1.1 response parser (agent/http1.c): the input fed whole, then again split
 * at every position the first byte chooses; both must agree, and the results must stay
 * within their bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pullwatch/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run(const uint8_t *data, size_t size, size_t step, Http1Parser *p, size_t *ret_used) {
        size_t off = 0, used = 0;
        int r = 0;
        http1_init(p, 4096);
        while (off < size) {
                size_t n = size - off < step ? size - off : step;
                r = http1_feed(p, data + off, n, &used);
                if (r != 0) {
                        used += off;
                        break;
                }
                off += n;
                used = off;
        }
        if (r == 0)
                r = http1_eof(p);
        *ret_used = used;
        return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Http1Parser a, b;
        size_t ua, ub;
        if (size == 0)
                return 0;
        size_t step = (size_t) data[0] % 17 + 1;
        int ra = run(data + 1, size - 1, size, &a, &ua);
        int rb = run(data + 1, size - 1, step, &b, &ub);
        if (ra != rb)
                abort();
        if (ra == 1) {
                if (a.status != b.status || a.keep_alive != b.keep_alive || a.body_len != b.body_len ||
                    a.excerpt_len != b.excerpt_len || memcmp(a.excerpt, b.excerpt, a.excerpt_len) != 0 ||
                    a.has_retry_after != b.has_retry_after || ua != ub)
                        abort();
                if (a.status < 200 || a.status > 999 || a.excerpt_len > sizeof a.excerpt || ua > size - 1 ||
                    (a.has_retry_after && strlen(a.retry_after) > HTTP1_RETRY_AFTER_MAX))
                        abort();
                if (a.body_len > 4096 + size && !a.truncated)
                        abort();
        }
        return 0;
}
