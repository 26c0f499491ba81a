/* Fuzz target for the collector's request body: the first byte picks plain or gzip (and
 * the inflation limit), the rest is the body. Invariants: inflation never passes its
 * limit, errors are one line naming the line number, the count matches the callbacks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pullwatch/ingest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int count(void *userdata, Record *rec) {
        size_t *n = userdata;
        if (rec->type == RECORD_INVENTORY && (rec->inventory.part == 0 || rec->inventory.part > rec->inventory.parts))
                abort();
        (*n)++;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        bool gzip = data[0] & 1;
        size_t max = (data[0] & 2) ? 64 : 1U << 20;
        const char *body = (const char *) data + 1;
        size_t len = size - 1;
        char *plain = NULL, err[512] = "";
        if (gzip) {
                int r = ingest_inflate(body, len, max, &plain, &len, err, sizeof err);
                if (r < 0) {
                        if (!err[0] || strchr(err, '\n') || plain)
                                abort();
                        return 0;
                }
                if (len > max || plain[len] != 0)
                        abort();
                body = plain;
        }
        size_t n = 0, calls = 0;
        int r = ingest_parse_body(body, len, 1000, count, &calls, &n, err, sizeof err);
        if (r < 0 && (strncmp(err, "line ", 5) != 0 || strchr(err, '\n')))
                abort();
        if (r >= 0 && n != calls)
                abort();
        free(plain);
        return 0;
}
