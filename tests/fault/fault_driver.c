/* The scenarios the fault sweep (tests/fault/sweep.sh) runs under faultinject.so: each
 * sets up state with the injector disarmed, arms it around the operation under test,
 * disarms it, and then checks the durability invariants with the real disk:
 *
 *   ledger DIR   three saves of a changed ledger — an append to the change log, a
 *                compaction (snapshot rewritten, new log), an append again — each fails
 *                or succeeds; after each, what loads from disk (snapshot + log) is the
 *                ledger as it was before the step or as it is after, never a mix and
 *                never corrupt; a save that returned 0 left the new one (so nothing
 *                acknowledged is ever lost by a later failure); once the disk has room
 *                again the next save succeeds and a fresh open is not corrupt or torn.
 *   spool DIR    appends, syncs and an ack under faults; after a reopen without faults
 *                every record whose append and following sync both returned 0 is still
 *                there, once, with its bytes; a record acknowledged (ack returned 0) is
 *                never delivered again (after a failed ack it may be, once); the spool opens and accepts appends again.
 *
 * Exit 0 when the invariants hold, 1 with one line on stderr naming the one that did
 * not. The sweep treats a hang (no exit within its timeout) and a crash as failures. */
#include <dlfcn.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pullwatch/ledger.h"
#include "pullwatch/spool.h"
#include "pullwatch/util.h"

#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DC "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

static void (*arm)(int);

static void set_armed(int on) {
        if (arm)
                arm(on);
}

static int violated(const char *what) {
        fprintf(stderr, "fault_driver: invariant violated: %s\n", what);
        return 1;
}

/* What a fresh load of dir finds (read-only: nothing on disk changes), formatted;
 * NULL if it does not load. */
static char *disk_text(const char *dir) {
        Ledger *l = NULL;
        char err[LEDGER_REASON_MAX], *t = NULL;
        if (ledger_read(&l, dir, 100000, err, sizeof err) < 0)
                return NULL;
        if (ledger_format(l, &t, NULL) < 0)
                t = NULL;
        ledger_free(l);
        return t;
}

typedef enum Op { OP_SAVE, OP_COMPACT } Op;

/* One armed step: change refs [from, to) to digest (and mark a finding raised), save or
 * compact under faults, then check with the real disk: it loads as it was before the
 * step or as memory is after the change, never anything else; as the new one if the call
 * returned success; and a failure leaves the ledger dirty, to be saved again. */
static int armed_step(Ledger *l, const char *dir, unsigned from, unsigned to, const char *digest, uint64_t t, Op op,
                      const char *what) {
        char ref[128], msg[256];
        _cleanup_free_ char *old_text = disk_text(dir), *new_text = NULL;
        if (!old_text)
                return violated("setup: the ledger on disk does not load before the step");
        for (unsigned i = from; i < to; i++) {
                snprintf(ref, sizeof ref, "registry.local/app%u:v1", i);
                if (ledger_record(l, "k8s.io", ref, digest, t + i, NULL, NULL) < 0 ||
                    ledger_mark_raised(l, "k8s.io", ref, digest, "tag_moved", t + i) < 0)
                        return violated("setup: change");
        }
        if (ledger_format(l, &new_text, NULL) < 0)
                return violated("setup: format new");

        set_armed(1);
        int r = op == OP_SAVE ? ledger_save(l) : ledger_compact(l);
        set_armed(0);

        _cleanup_free_ char *disk = disk_text(dir);
        snprintf(msg, sizeof msg, "%s: ", what);
        size_t n = strlen(msg);
        if (!disk)
                return snprintf(msg + n, sizeof msg - n, "the ledger on disk does not load"), violated(msg);
        bool is_old = streq_ptr(disk, old_text), is_new = streq_ptr(disk, new_text);
        if (!is_old && !is_new)
                return snprintf(msg + n, sizeof msg - n, "the ledger on disk is neither the old nor the new one"),
                       violated(msg);
        if (r >= 0 && !is_new)
                return snprintf(msg + n, sizeof msg - n, "returned %d but the disk holds the old ledger", r), violated(msg);
        if (r < 0 && !ledger_is_dirty(l))
                return snprintf(msg + n, sizeof msg - n, "a failure cleared the dirty flag: the change would never be saved"),
                       violated(msg);
        return 0;
}

static int scenario_ledger(const char *dir) {
        Ledger *l = NULL;
        char ref[128];
        if (ledger_open(&l, dir, 100000, NULL) < 0)
                return violated("setup: ledger_open");
        for (unsigned i = 0; i < 40; i++) {
                snprintf(ref, sizeof ref, "registry.local/app%u:v1", i);
                if (ledger_record(l, "k8s.io", ref, DA, 1000 + i, NULL, NULL) < 0)
                        return violated("setup: ledger_record");
        }
        if (ledger_save(l) < 0) /* the first save: snapshot and an empty log */
                return violated("setup: first save");
        snprintf(ref, sizeof ref, "registry.local/app%u:v1", 39);
        if (ledger_record(l, "k8s.io", ref, DB, 2000, NULL, NULL) < 0 || ledger_save(l) < 0)
                return violated("setup: an append");

        /* an append of changes to the log; a compaction; an append again (a compaction when
         * an earlier step failed); the failure points of all three are swept in turn */
        int r = armed_step(l, dir, 0, 20, DB, 5000, OP_SAVE, "log append");
        if (r == 0)
                r = armed_step(l, dir, 10, 30, DC, 6000, OP_COMPACT, "compaction");
        if (r == 0)
                r = armed_step(l, dir, 30, 35, DB, 7000, OP_SAVE, "append after the compaction");
        if (r != 0)
                return r;

        /* room again: everything is saved, and a fresh open is neither corrupt nor torn */
        _cleanup_free_ char *want = NULL, *again = NULL;
        if (ledger_format(l, &want, NULL) < 0)
                return violated("setup: format");
        if (ledger_save(l) < 0)
                return violated("the save after the fault cleared failed");
        ledger_free(l);
        LedgerOpenReport rep;
        if (ledger_open(&l, dir, 100000, &rep) < 0 || rep.corrupt || rep.log_reason[0])
                return violated("the ledger does not reopen cleanly");
        if (ledger_format(l, &again, NULL) < 0 || !streq_ptr(again, want))
                return violated("the reopened ledger is not the last one saved");
        ledger_free(l);
        return 0;
}

#define SPOOL_RECORDS 24
#define SPOOL_GROUP_EVERY 6 /* an inventory replaced every 6 records */

typedef struct Seen {
        uint64_t seq[SPOOL_RECORDS * 2 + 16];
        char data[SPOOL_RECORDS * 2 + 16][64];
        size_t n;
        bool overflow;
} Seen;

static int seen_visit(uint64_t seq, const void *data, size_t len, void *userdata) {
        Seen *s = userdata;
        if (s->n >= ELEMENTSOF(s->seq) || len >= sizeof s->data[0]) {
                s->overflow = true;
                return 1;
        }
        s->seq[s->n] = seq;
        memcpy(s->data[s->n], data, len);
        s->data[s->n][len] = 0;
        s->n++;
        return 0;
}

static int scenario_spool(const char *dir) {
        Spool *s = NULL;
        char rec[64];
        uint64_t seq, durable_seq[SPOOL_RECORDS + 8];
        char durable[SPOOL_RECORDS + 8][64];
        size_t n_durable = 0;

        if (spool_open(&s, dir, 1U << 20, SPOOL_FSYNC_BATCH, NULL) < 0)
                return violated("setup: spool_open");
        for (unsigned i = 0; i < 8; i++) {
                int n = snprintf(rec, sizeof rec, "{\"record\":\"setup-%u\"}", i);
                if (spool_append(s, rec, (size_t) n, &seq) < 0)
                        return violated("setup: append");
                durable_seq[n_durable] = seq;
                memcpy(durable[n_durable++], rec, (size_t) n + 1);
        }
        if (spool_sync(s) < 0)
                return violated("setup: sync");
        uint64_t first_seq = durable_seq[0];

        set_armed(1);
        bool acked_ok = spool_ack(s, first_seq + 3) == 0;
        int group_ok = -1; /* the last inventory group whose replace returned 0 */
        for (unsigned i = 0; i < SPOOL_RECORDS; i++) {
                int n = snprintf(rec, sizeof rec, "{\"record\":\"armed-%u\"}", i);
                int r = spool_append(s, rec, (size_t) n, &seq);
                int rs = spool_sync(s);
                if (r == 0 && rs == 0) {
                        durable_seq[n_durable] = seq;
                        memcpy(durable[n_durable++], rec, (size_t) n + 1);
                }
                if (i % SPOOL_GROUP_EVERY == 0) { /* an inventory of two parts replaces the last */
                        char p1[64], p2[64];
                        unsigned g = i / SPOOL_GROUP_EVERY;
                        int l1 = snprintf(p1, sizeof p1, "inv-%u-1", g), l2 = snprintf(p2, sizeof p2, "inv-%u-2", g);
                        struct iovec v[2] = {{p1, (size_t) l1}, {p2, (size_t) l2}};
                        if (spool_replace_latest(s, v, 2) == 0)
                                group_ok = (int) g;
                }
        }
        set_armed(0);
        spool_free(s);
        s = NULL;

        SpoolOpenReport rep;
        if (spool_open(&s, dir, 1U << 20, SPOOL_FSYNC_BATCH, &rep) < 0)
                return violated("the spool does not reopen after the fault cleared");
        Seen seen = {0};
        if (spool_peek(s, 0, SIZE_MAX, SIZE_MAX, seen_visit, &seen) < 0 || seen.overflow)
                return violated("reading the reopened spool failed");
        /* the inventory: one group, whole, the last one spooled or a later one whose
         * replace failed after its rename; none only if none was spooled */
        int group_seen = -1;
        unsigned parts_seen = 0;
        for (size_t j = 0; j < seen.n; j++) {
                unsigned g, part;
                if (sscanf(seen.data[j], "inv-%u-%u", &g, &part) != 2)
                        continue;
                if (group_seen >= 0 && (unsigned) group_seen != g)
                        return violated("records of two inventory groups are pending after reopen");
                group_seen = (int) g;
                parts_seen |= 1U << part;
        }
        if (group_seen >= 0 && parts_seen != (1U << 1 | 1U << 2))
                return violated("an inventory group came back incomplete after reopen");
        if (group_ok >= 0 && group_seen < group_ok)
                return violated("the inventory group last spooled is missing (or an older one is back)");
        for (size_t i = 0; i < n_durable; i++) {
                /* an ack that failed may still have reached the disk (the rename went
                 * through, the directory fsync did not): those records may or may not come
                 * back, but never twice; the shipper acks only what the endpoint took */
                bool acked = acked_ok && durable_seq[i] <= first_seq + 3;
                bool maybe_acked = !acked_ok && durable_seq[i] <= first_seq + 3;
                size_t hits = 0;
                for (size_t j = 0; j < seen.n; j++)
                        if (seen.seq[j] == durable_seq[i]) {
                                hits++;
                                if (!streq_ptr(seen.data[j], durable[i]))
                                        return violated("a durable record came back with other bytes");
                        }
                if (maybe_acked && hits > 1)
                        return violated("a record came back twice after reopen");
                if (!acked && !maybe_acked && hits != 1)
                        return violated("a record acknowledged as durable is missing after reopen");
                if (acked && hits != 0)
                        return violated("a record whose ack returned 0 is delivered again");
        }
        for (size_t j = 1; j < seen.n; j++)
                if (seen.seq[j] <= seen.seq[j - 1])
                        return violated("sequence numbers are not increasing after reopen");
        int n = snprintf(rec, sizeof rec, "{\"record\":\"after\"}");
        if (spool_append(s, rec, (size_t) n, &seq) < 0 || spool_sync(s) < 0)
                return violated("the spool does not accept appends after the fault cleared");
        if (seen.n > 0 && seq <= seen.seq[seen.n - 1])
                return violated("a new record reuses a sequence number");
        spool_free(s);
        return 0;
}

int main(int argc, char **argv) {
        if (argc != 3) {
                fprintf(stderr, "usage: fault_driver ledger|spool DIR\n");
                return 2;
        }
        arm = (void (*)(int)) dlsym(RTLD_DEFAULT, "pw_fault_arm");
        set_armed(0);
        if (streq_ptr(argv[1], "ledger"))
                return scenario_ledger(argv[2]);
        if (streq_ptr(argv[1], "spool"))
                return scenario_spool(argv[2]);
        fprintf(stderr, "fault_driver: unknown scenario '%s'\n", argv[1]);
        return 2;
}
