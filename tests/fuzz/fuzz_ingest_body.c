/* Fuzz target for the collector's request body: the first byte picks plain or gzip (and
 * the inflation limit), the rest is the body. Invariants: inflation never passes its
 * limit, errors are one line naming the line number, the count matches the callbacks;
 * ingest_pack_body fails exactly as ingest_parse_body does, and what it packs unpacks to
 * the very records the JSON decoded to, field by field. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pullwatch/ingest.h"
#include "record_equal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int count(void *userdata, Record *rec) {
        size_t *n = userdata;
        if (rec->type == RECORD_INVENTORY && (rec->inventory.part == 0 || rec->inventory.part > rec->inventory.parts))
                abort();
        (*n)++;
        return 0;
}

/* The records as the JSON decoded them, kept (their images taken) for the comparison. */
typedef struct Kept {
        Record *recs;
        size_t n, next;
} Kept;

static int keep(void *userdata, Record *rec) {
        Kept *k = userdata;
        if (count(&k->next, rec) < 0)
                abort();
        Record *q = realloc(k->recs, (k->n + 1) * sizeof *q);
        if (!q)
                abort();
        k->recs = q;
        k->recs[k->n++] = *rec;
        rec->inventory.images = NULL; /* now ours */
        rec->inventory.n_images = 0;
        return 0;
}

static int compare(void *userdata, Record *rec) {
        Kept *k = userdata;
        if (k->next >= k->n || !record_equal(&k->recs[k->next], rec))
                abort();
        k->next++;
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
        Kept k = {0};
        char *packed = NULL, perr[512] = "";
        size_t packed_len = 0, pn = 0;
        int pr = ingest_pack_body(body, len, 1000, &packed, &packed_len, &pn, perr, sizeof perr);
        if (pr != r || strcmp(perr, r < 0 ? err : "") != 0 || (pr >= 0 && (pn != n || !packed)) || (pr < 0 && packed))
                abort();
        if (pr >= 0) {
                size_t un = 0;
                if (ingest_parse_body(body, len, 1000, keep, &k, NULL, err, sizeof err) < 0 || k.n != n)
                        abort();
                k.next = 0;
                if (ingest_unpack(packed, packed_len, compare, &k, &un, perr, sizeof perr) < 0 || un != n ||
                    k.next != n)
                        abort();
                /* a cut packed form is an error, never a crash or a record made up */
                if (packed_len > 0 &&
                    ingest_unpack(packed, packed_len - 1, NULL, NULL, NULL, perr, sizeof perr) != -EBADMSG)
                        abort();
        }
        for (size_t i = 0; i < k.n; i++)
                record_done(&k.recs[i]);
        free(k.recs);
        free(packed);
        free(plain);
        return 0;
}
