/* Fuzz the ledger's change log replay (ledger_replay(): frames, resync over corrupt
 * regions, torn tails, each record's JSON) over a small ledger. The first byte picks a
 * mode: odd -> the rest is a whole log file as found on disk (its header must name the
 * ledger's snapshot, so mostly the header check is hit); even -> the rest is split on
 * '\n' into records, each framed here with a correct header and CRC after a correct log
 * header, so the record checks behind the CRC get exercised. Whatever replays must stay
 * within the cap and format and re-parse to the same text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pullwatch/ledger.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAP 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1 || size > (1U << 20))
                return 0;
        Ledger *l = NULL;
        char err[LEDGER_REASON_MAX];
        /* a ledger loaded from a snapshot (so the log's header can name it) */
        Ledger *tmp = NULL;
        char *text = NULL;
        size_t tlen;
        if (ledger_new(&tmp, CAP) < 0 || ledger_record(tmp, "k8s.io", "a:1", "sha256:00", 1, NULL, NULL) < 0 ||
            ledger_format(tmp, &text, &tlen) < 0 || ledger_new(&l, CAP) < 0 || ledger_parse(l, text, tlen, err, sizeof err) < 0)
                abort();
        ledger_free(tmp);
        free(text);

        const uint8_t *in = data + 1;
        size_t n = size - 1;
        uint8_t *buf;
        size_t len = 0;
        if (data[0] & 1) {
                buf = malloc(n ? n : 1);
                if (!buf)
                        abort();
                memcpy(buf, in, n);
                len = n;
        } else {
                size_t cap = ledger_log_header(l, NULL, 0) + n + (n + 1) * LEDGER_LOG_FRAME_HEADER;
                buf = malloc(cap);
                if (!buf)
                        abort();
                len = ledger_log_header(l, buf, cap);
                uint64_t seq = 0;
                for (size_t off = 0; off <= n;) {
                        const uint8_t *nl = memchr(in + off, '\n', n - off);
                        size_t rl = nl ? (size_t) (nl - (in + off)) : n - off;
                        len += ledger_log_frame(++seq, in + off, rl, buf + len, cap - len);
                        off += rl + 1;
                }
        }

        LedgerReplayReport rep;
        int r = ledger_replay(l, buf, len, &rep, err, sizeof err);
        if (r == 0) {
                LedgerStats st;
                ledger_get_stats(l, &st);
                if (st.entries > CAP || rep.valid_end > len || rep.dropped_bytes > len || strchr(rep.first_error, '\n'))
                        abort();
                char *t1 = NULL, *t2 = NULL;
                size_t l1, l2;
                Ledger *m = NULL;
                if (ledger_format(l, &t1, &l1) < 0 || ledger_new(&m, CAP) < 0 || ledger_parse(m, t1, l1, err, sizeof err) != 0 ||
                    ledger_format(m, &t2, &l2) < 0 || l1 != l2 || memcmp(t1, t2, l1) != 0)
                        abort();
                free(t1);
                free(t2);
                ledger_free(m);
        } else if (r == -EBADMSG && strchr(err, '\n'))
                abort();
        else if (r != -EBADMSG && r != -ESTALE && r != -ENOMEM)
                abort();
        ledger_free(l);
        free(buf);
        return 0;
}
