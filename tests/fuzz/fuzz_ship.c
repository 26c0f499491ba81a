/* ship's parsers and encoders: Retry-After, RFC 3339, and both batch encoders over
 * the input split into records at '\n'. A successful Loki body must be valid JSON. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pullwatch/ship.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);
        ShipRecord recs[64];
        size_t n = 0, start = 0;
        uint64_t v;
        char *body = NULL;
        size_t len;

        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;
        (void) ship_parse_retry_after(s, 1700000000000000ULL, &v);
        (void) ship_parse_rfc3339_ns(s, size, &v);
        for (size_t i = 0; i <= size && n < 64; i++)
                if (i == size || s[i] == '\n') {
                        recs[n] = (ShipRecord) { n, s + start, i - start };
                        n++;
                        start = i + 1;
                }
        if (ship_encode_jsonl(recs, n, 1 << 20, &body, &len) == 0)
                free(body);
        const ShipLabel labels[] = { { "cluster", "c" } };
        if (ship_encode_loki(recs, n, labels, 1, 1, 1 << 22, &body, &len) == 0) {
                json_t *j = json_loadb(body, len, 0, NULL);
                if (!j)
                        abort();
                json_decref(j);
                free(body);
        }
        free(s);
        return 0;
}
