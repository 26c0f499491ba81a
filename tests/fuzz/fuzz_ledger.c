/* Fuzz the ledger file parser. The first byte picks a mode: odd -> the rest is a whole
 * file as found on disk; even -> the rest is a JSON body, framed here with a correct
 * header and CRC so the schema checks behind the CRC get exercised too. Whatever parses
 * must format and re-parse to the same text. The body is read twice, with and without
 * the fast path (ledger_set_fast_parse()): both must accept or refuse alike, with the
 * same reason, and what they accept must format to the same text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "pullwatch/ledger.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1 || size > (1U << 20))
                return 0;
        bool raw = data[0] & 1;
        const char *in = (const char *) data + 1;
        size_t n = size - 1;
        char *buf = NULL;
        size_t len = n;
        if (raw) {
                buf = malloc(n ? n : 1);
                if (!buf)
                        return 0;
                memcpy(buf, in, n);
        } else {
                char header[96];
                uLong crc = crc32(crc32(0L, Z_NULL, 0), (const Bytef *) in, (uInt) n);
                int h = snprintf(header, sizeof(header), "pullwatch-ledger 1 %zu %08lx\n", n, crc);
                len = (size_t) h + n;
                buf = malloc(len);
                if (!buf)
                        return 0;
                memcpy(buf, header, (size_t) h);
                memcpy(buf + h, in, n);
        }

        Ledger *l = NULL, *tree = NULL;
        char err[256], terr[256];
        if (ledger_new(&l, 64) < 0 || ledger_new(&tree, 64) < 0)
                abort();
        ledger_set_fast_parse(false);
        int rt = ledger_parse(tree, buf, len, terr, sizeof(terr));
        ledger_set_fast_parse(true);
        int rf = ledger_parse(l, buf, len, err, sizeof(err));
        if (rt != rf || (rf < 0 && strcmp(err, terr) != 0))
                abort();
        if (rf == 0) {
                char *a = NULL, *b = NULL;
                size_t la, lb;
                if (ledger_format(l, &a, &la) < 0 || ledger_format(tree, &b, &lb) < 0 || la != lb ||
                    memcmp(a, b, la) != 0)
                        abort();
                free(a);
                free(b);
        }
        ledger_free(tree);
        if (rf == 0) {
                LedgerStats st;
                ledger_get_stats(l, &st);
                if (st.entries > 64)
                        abort();
                char *t1 = NULL, *t2 = NULL;
                size_t l1, l2;
                Ledger *m = NULL;
                if (ledger_format(l, &t1, &l1) < 0 || ledger_new(&m, 64) < 0 ||
                    ledger_parse(m, t1, l1, err, sizeof(err)) != 0 || ledger_format(m, &t2, &l2) < 0 || l1 != l2 ||
                    memcmp(t1, t2, l1) != 0)
                        abort();
                /* the API keeps working on parsed content */
                (void) ledger_record(l, "k8s.io", "docker.io/library/nginx:latest", "sha256:00", 1, NULL, NULL);
                (void) ledger_should_raise(l, "k8s.io", "docker.io/library/nginx:latest", "sha256:00", "latest_tag", 2, 1);
                free(t1);
                free(t2);
                ledger_free(m);
        } else if (strchr(err, '\n'))
                abort();
        ledger_free(l);
        free(buf);
        return 0;
}
