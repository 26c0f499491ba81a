/* The scenarios the fault sweep (tests/fault/sweep.sh) runs under faultinject.so: each
 * sets up state with the injector disarmed, arms it around the operation under test,
 * disarms it, and then checks the durability invariants with the real disk:
 *
 *   ledger DIR   a save of a changed ledger fails or succeeds; either way the file on
 *                disk is byte for byte the old or the new version (never a mix, never
 *                corrupt), a save that returned 0 left the new one, and once the disk
 *                has room again the next save succeeds and a fresh open is not corrupt.
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

static void (*arm)(int);

static void set_armed(int on) {
        if (arm)
                arm(on);
}

static int violated(const char *what) {
        fprintf(stderr, "fault_driver: invariant violated: %s\n", what);
        return 1;
}

static int read_file(const char *path, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return read_fd_bounded(fd, 64U << 20, ret, ret_len);
}

static int scenario_ledger(const char *dir) {
        Ledger *l = NULL;
        char ref[128], path[4096];
        if (ledger_open(&l, dir, 100000, NULL) < 0)
                return violated("setup: ledger_open");
        for (unsigned i = 0; i < 40; i++) {
                snprintf(ref, sizeof ref, "registry.local/app%u:v1", i);
                if (ledger_record(l, "k8s.io", ref, DA, 1000 + i, NULL, NULL) < 0)
                        return violated("setup: ledger_record");
        }
        if (ledger_save(l) < 0)
                return violated("setup: first save");
        _cleanup_free_ char *old_text = NULL, *new_text = NULL;
        size_t old_len, new_len;
        if (ledger_format(l, &old_text, &old_len) < 0)
                return violated("setup: format old");
        for (unsigned i = 0; i < 40; i += 2) {
                snprintf(ref, sizeof ref, "registry.local/app%u:v1", i);
                if (ledger_record(l, "k8s.io", ref, DB, 5000 + i, NULL, NULL) < 0 ||
                    ledger_mark_raised(l, "k8s.io", ref, DB, "tag_moved", 5000 + i) < 0)
                        return violated("setup: change");
        }
        if (ledger_format(l, &new_text, &new_len) < 0)
                return violated("setup: format new");

        set_armed(1);
        int r = ledger_save(l);
        set_armed(0);

        snprintf(path, sizeof path, "%s/" LEDGER_FILE, dir);
        _cleanup_free_ char *disk = NULL;
        size_t disk_len = 0;
        if (read_file(path, &disk, &disk_len) < 0)
                return violated("the ledger file is gone after a failed save");
        bool is_old = disk_len == old_len && memcmp(disk, old_text, old_len) == 0;
        bool is_new = disk_len == new_len && memcmp(disk, new_text, new_len) == 0;
        if (!is_old && !is_new)
                return violated("the ledger file is neither the old nor the new version");
        if (r == 0 && !is_new)
                return violated("ledger_save() returned 0 but the file is the old version");
        if (r < 0 && !ledger_is_dirty(l))
                return violated("a failed save cleared the dirty flag: the change would never be saved");

        /* room again: the change is saved, and a fresh open is not corrupt */
        if (ledger_save(l) < 0)
                return violated("the save after the fault cleared failed");
        ledger_free(l);
        LedgerOpenReport rep;
        if (ledger_open(&l, dir, 100000, &rep) < 0 || rep.corrupt)
                return violated("the ledger does not reopen cleanly");
        _cleanup_free_ char *again = NULL;
        size_t again_len;
        if (ledger_format(l, &again, &again_len) < 0 || again_len != new_len || memcmp(again, new_text, new_len))
                return violated("the reopened ledger is not the new version");
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
