/* ledger change log: a save appends O(changes), a load replays it over the snapshot,
 * compaction when it outgrows the snapshot, a torn tail, corrupt records and headers, a
 * stale log left by a crashed compaction, the size limit, hostile files, the read-only
 * path, and the last_seen grain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "pullwatch/ledger.h"
#include "pullwatch/util.h"

#include "tmpdir.h"

#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DC "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define HOUR LEDGER_LAST_SEEN_GRAIN_USEC
#define T0 (1700000000ULL * 1000000ULL / HOUR * HOUR) /* the start of an hour */

static void ref_name(char *buf, size_t size, unsigned i) {
        snprintf(buf, size, "registry.local/app%05u:v1", i);
}

static Ledger *open_ok(const char *dir, size_t max, LedgerOpenReport *rep) {
        Ledger *l = NULL;
        LedgerOpenReport r;
        assert_int_equal(ledger_open(&l, dir, max, rep ? rep : &r), 0);
        return l;
}

static void record_ok(Ledger *l, unsigned i, const char *digest, uint64_t now) {
        char ref[128];
        ref_name(ref, sizeof ref, i);
        assert_int_equal(ledger_record(l, "k8s.io", ref, digest, now, NULL, NULL), 0);
}

static char *format_ok(const Ledger *l) {
        char *t = NULL;
        assert_int_equal(ledger_format(l, &t, NULL), 0);
        return t;
}

static void path_of(char *buf, size_t size, const char *dir, const char *name) {
        snprintf(buf, size, "%s/%s", dir, name);
}

static off_t file_size(const char *dir, const char *name) {
        char p[512];
        struct stat st;
        path_of(p, sizeof p, dir, name);
        return stat(p, &st) == 0 ? st.st_size : -1;
}

static void truncate_to(const char *dir, const char *name, off_t size) {
        char p[512];
        path_of(p, sizeof p, dir, name);
        assert_int_equal(truncate(p, size), 0);
}

static void flip_byte(const char *dir, const char *name, off_t at) {
        char p[512];
        uint8_t b;
        path_of(p, sizeof p, dir, name);
        int fd = open(p, O_RDWR | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(pread(fd, &b, 1, at), 1);
        b ^= 0x5a;
        assert_int_equal(pwrite(fd, &b, 1, at), 1);
        close(fd);
}

static unsigned count_prefixed(const char *dir, const char *prefix) {
        DIR *d = opendir(dir);
        unsigned n = 0;
        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d));)
                n += startswith(de->d_name, prefix) ? 1 : 0;
        closedir(d);
        return n;
}

/* The same content as expected, both reopened read-write and read-only. */
static void assert_disk_is(const char *dir, const char *want) {
        char err[LEDGER_REASON_MAX];
        Ledger *r = NULL;
        assert_int_equal(ledger_read(&r, dir, 100000, err, sizeof err), 0);
        _cleanup_free_ char *got = format_ok(r);
        ledger_free(r);
        assert_string_equal(got, want);
}

/* A save appends what changed, whatever the size: one change on a ledger of 1,000
 * references adds one record of a few hundred bytes, and the snapshot is not touched. */
static void test_append_is_o_changes(void **state) {
        const char *dir = *state;
        Ledger *l = open_ok(dir, 100000, NULL);
        for (unsigned i = 0; i < 1000; i++)
                record_ok(l, i, DA, T0 + i);
        assert_int_equal(ledger_save(l), 0); /* no log yet: the first save compacts */
        LedgerStats st;
        ledger_get_stats(l, &st);
        assert_int_equal(st.log_records, 0);
        off_t snap = file_size(dir, LEDGER_FILE);
        assert_true(snap > 100000);

        static const struct {
                unsigned changes;
                bool raise;
        } cases[] = { { 1, false }, { 1, true }, { 10, false }, { 100, true } };
        uint64_t t = T0 + 5000, records = 0;
        for (size_t c = 0; c < ELEMENTSOF(cases); c++) {
                off_t before = file_size(dir, LEDGER_LOG_FILE);
                for (unsigned i = 0; i < cases[c].changes; i++) {
                        char ref[128];
                        ref_name(ref, sizeof ref, i * 7);
                        const char *d = c % 2 ? DB : DC;
                        record_ok(l, i * 7, d, ++t);
                        if (cases[c].raise)
                                assert_int_equal(ledger_mark_raised(l, "k8s.io", ref, d, "tag_moved", t), 0);
                }
                assert_true(ledger_is_dirty(l));
                assert_int_equal(ledger_save(l), 0);
                assert_false(ledger_is_dirty(l));
                records += cases[c].changes;
                ledger_get_stats(l, &st);
                off_t grew = file_size(dir, LEDGER_LOG_FILE) - before;
                if (st.log_records != records || grew <= 0 || grew > (off_t) cases[c].changes * 1024 ||
                    file_size(dir, LEDGER_FILE) != snap)
                        fail_msg("case %zu: %" PRIu64 " records, log grew %jd bytes, snapshot %jd -> %jd", c,
                                 st.log_records, (intmax_t) grew, (intmax_t) snap, (intmax_t) file_size(dir, LEDGER_FILE));
                /* what is on disk is what is in memory */
                _cleanup_free_ char *want = format_ok(l);
                assert_disk_is(dir, want);
        }
        /* a save with nothing changed writes nothing */
        off_t before = file_size(dir, LEDGER_LOG_FILE);
        assert_int_equal(ledger_save(l), 0);
        assert_int_equal(file_size(dir, LEDGER_LOG_FILE), before);

        /* reopened: the snapshot plus the replayed log */
        _cleanup_free_ char *want = format_ok(l);
        ledger_free(l);
        LedgerOpenReport rep;
        l = open_ok(dir, 100000, &rep);
        assert_int_equal(rep.log_records, records);
        assert_string_equal(rep.log_reason, "");
        assert_false(rep.corrupt);
        _cleanup_free_ char *got = format_ok(l);
        assert_string_equal(got, want);
        assert_false(ledger_is_dirty(l));
        /* and appends go on after a reopen */
        record_ok(l, 3, DB, T0 + 9000);
        assert_int_equal(ledger_save(l), 0);
        ledger_get_stats(l, &st);
        assert_int_equal(st.log_records, records + 1);
        _cleanup_free_ char *want2 = format_ok(l);
        assert_disk_is(dir, want2);
        ledger_free(l);
}

/* A change log record longer than the save's 8 KiB output buffer (a reference that
 * moved through many digests) is measured, then written in place; a short one is emitted
 * once and copied: both replay to what is in memory. */
static void test_long_record(void **state) {
        const char *dir = *state;
        Ledger *l = open_ok(dir, 100000, NULL);
        record_ok(l, 1, DA, T0);
        record_ok(l, 2, DA, T0);
        assert_int_equal(ledger_save(l), 0); /* the first save compacts: no log yet */
        char d[80];
        for (unsigned i = 0; i < 100; i++) { /* ~100 bytes a digest: over 8 KiB */
                snprintf(d, sizeof d, "sha256:%064x", i + 1);
                record_ok(l, 1, d, T0 + HOUR * (i + 1));
        }
        record_ok(l, 2, DB, T0 + 1); /* and a short one beside it */
        off_t before = file_size(dir, LEDGER_LOG_FILE);
        assert_int_equal(ledger_save(l), 0);
        LedgerStats st;
        ledger_get_stats(l, &st);
        assert_int_equal(st.log_records, 2);
        off_t grew = file_size(dir, LEDGER_LOG_FILE) - (before > 0 ? before : 0);
        if (grew <= 8192)
                fail_msg("the log grew %jd bytes: the long record is not over 8 KiB", (intmax_t) grew);
        _cleanup_free_ char *want = format_ok(l);
        assert_disk_is(dir, want);
        ledger_free(l);
}

/* Removals (whole references pruned under the cap) are logged and replayed, before a
 * reference re-added under the same key. */
static void test_removals_replay(void **state) {
        const char *dir = *state;
        Ledger *l = open_ok(dir, 5, NULL);
        for (unsigned i = 0; i < 5; i++)
                record_ok(l, i, DA, T0 + i);
        assert_int_equal(ledger_save(l), 0);
        record_ok(l, 5, DA, T0 + 10); /* over the cap: app00000, the oldest, goes */
        record_ok(l, 0, DB, T0 + 11); /* ... and comes back: app00001 goes */
        assert_int_equal(ledger_save(l), 0);
        LedgerStats st;
        ledger_get_stats(l, &st);
        assert_int_equal(st.log_records, 4); /* two removals, two references */
        _cleanup_free_ char *want = format_ok(l);
        assert_non_null(strstr(want, "app00000"));
        assert_null(strstr(want, "app00001"));
        ledger_free(l);
        l = open_ok(dir, 5, NULL);
        _cleanup_free_ char *got = format_ok(l);
        assert_string_equal(got, want);
        assert_false(ledger_tagged_current(l, "k8s.io", "registry.local/app00001", DA));
        assert_true(ledger_tagged_current(l, "k8s.io", "registry.local/app00000", DB));
        ledger_free(l);
}

/* Past its bound the log is folded into the snapshot: the snapshot changes, the log
 * starts again with no record, and the content survives. */
static void test_compaction(void **state) {
        const char *dir = *state;
        Ledger *l = open_ok(dir, 100000, NULL);
        for (unsigned i = 0; i < 50; i++)
                record_ok(l, i, DA, T0 + i);
        assert_int_equal(ledger_save(l), 0);
        LedgerStats st;
        ledger_get_stats(l, &st);
        uint64_t snap = st.snapshot_bytes;
        assert_true(snap < LEDGER_LOG_COMPACT_MIN); /* the bound is LEDGER_LOG_COMPACT_MIN */
        uint64_t t = T0 + 100;
        unsigned saves = 0, compactions = 0;
        while (compactions == 0 && saves < 10000) {
                char ref[128];
                ref_name(ref, sizeof ref, saves % 50);
                record_ok(l, saves % 50, saves % 2 ? DB : DA, ++t);
                assert_int_equal(ledger_mark_raised(l, "k8s.io", ref, saves % 2 ? DB : DA, "tag_moved", t), 0);
                uint64_t before = st.log_records;
                assert_int_equal(ledger_save(l), 0);
                saves++;
                ledger_get_stats(l, &st);
                assert_true(st.log_bytes <= LEDGER_LOG_COMPACT_MIN);
                if (st.log_records < before)
                        compactions++;
        }
        assert_int_equal(compactions, 1);
        assert_true(saves > 100); /* hundreds of appends before one rewrite */
        assert_int_equal(st.log_records, 0);
        assert_true(st.snapshot_bytes != snap);
        assert_int_equal(file_size(dir, LEDGER_FILE), (off_t) st.snapshot_bytes);
        _cleanup_free_ char *want = format_ok(l);
        assert_disk_is(dir, want);
        /* an explicit compaction (a clean exit) leaves an empty log */
        record_ok(l, 1, DC, ++t);
        assert_int_equal(ledger_save(l), 0);
        ledger_get_stats(l, &st);
        assert_int_equal(st.log_records, 1);
        assert_int_equal(ledger_compact(l), 0);
        ledger_get_stats(l, &st);
        assert_int_equal(st.log_records, 0);
        assert_int_equal(file_size(dir, LEDGER_LOG_FILE), (off_t) st.log_bytes);
        _cleanup_free_ char *want2 = format_ok(l);
        ledger_free(l);
        LedgerOpenReport rep;
        l = open_ok(dir, 100000, &rep);
        assert_int_equal(rep.log_records, 0);
        _cleanup_free_ char *got = format_ok(l);
        assert_string_equal(got, want2);
        ledger_free(l);
}

/* Two saves appended; then the log is damaged in various ways. What loads: the
 * snapshot, plus what of the log is intact; one line says what was dropped. */
static void test_damaged_log(void **state) {
        static const struct {
                const char *name;
                int how;      /* 0: truncate by `by` bytes; 1: flip a byte at `by` from the start of the second save's
                               * records; 2: flip a byte in the first save's record; 3: flip a byte in the header */
                off_t by;
                int expect;   /* 0: the state after save 1 (old), 1: after save 2, 2: the snapshot only,
                               * 3: save 2's change without save 1's */
                const char *reason; /* in log_reason ("" : none) */
                bool moved;         /* the log was moved aside */
        } cases[] = {
                { "torn by 1 byte", 0, 1, 0, "torn record", false },
                { "torn inside the frame header", 0, -10, 0, "torn record", false },
                { "torn just after the frame header", 0, -20, 0, "torn record", false },
                { "last record's CRC", 1, 17, 0, "torn record", false },
                { "last record's payload", 1, 40, 0, "torn record", false },
                { "a middle record", 2, 40, 3, "corrupt record", false },
                { "the header", 3, 30, 2, "bad header", true },
                { "intact", -1, 0, 1, "", false },
        };
        for (size_t c = 0; c < ELEMENTSOF(cases); c++) {
                char dir[64] = "/tmp/pw-test-XXXXXX";
                assert_non_null(mkdtemp(dir));
                Ledger *l = open_ok(dir, 100000, NULL);
                for (unsigned i = 0; i < 20; i++)
                        record_ok(l, i, DA, T0 + i);
                assert_int_equal(ledger_save(l), 0);
                _cleanup_free_ char *snapshot = format_ok(l);
                off_t header = file_size(dir, LEDGER_LOG_FILE);
                record_ok(l, 1, DB, T0 + 100);
                assert_int_equal(ledger_save(l), 0);
                _cleanup_free_ char *old = format_ok(l);
                off_t mid = file_size(dir, LEDGER_LOG_FILE);
                record_ok(l, 2, DC, T0 + 200);
                assert_int_equal(ledger_save(l), 0);
                _cleanup_free_ char *new = format_ok(l);
                off_t end = file_size(dir, LEDGER_LOG_FILE);
                ledger_free(l);
                /* save 2's change alone, over the snapshot */
                Ledger *m = NULL;
                char err[LEDGER_REASON_MAX];
                assert_int_equal(ledger_new(&m, 100000), 0);
                assert_int_equal(ledger_parse(m, snapshot, strlen(snapshot), err, sizeof err), 0);
                record_ok(m, 2, DC, T0 + 200);
                _cleanup_free_ char *only2 = format_ok(m);
                ledger_free(m);

                switch (cases[c].how) {
                case 0: /* by > 0: that much off the end; < 0: keep that much of save 2's frame */
                        truncate_to(dir, LEDGER_LOG_FILE, cases[c].by > 0 ? end - cases[c].by : mid - cases[c].by);
                        break;
                case 1: flip_byte(dir, LEDGER_LOG_FILE, mid + cases[c].by); break;
                case 2: flip_byte(dir, LEDGER_LOG_FILE, header + cases[c].by); break;
                case 3: flip_byte(dir, LEDGER_LOG_FILE, cases[c].by); break;
                }
                const char *want = cases[c].expect == 0   ? old
                                   : cases[c].expect == 1 ? new
                                   : cases[c].expect == 2 ? snapshot
                                                          : only2;
                off_t damaged = file_size(dir, LEDGER_LOG_FILE);

                /* read-only first: it sees the same and changes nothing */
                Ledger *r = NULL;
                int k = ledger_read(&r, dir, 100000, err, sizeof err);
                if (cases[c].moved) {
                        assert_int_equal(k, -EBADMSG);
                        assert_non_null(strstr(err, cases[c].reason));
                } else {
                        assert_int_equal(k, 0);
                        _cleanup_free_ char *got = format_ok(r);
                        if (strcmp(got, want) != 0)
                                fail_msg("case %s: read-only load differs", cases[c].name);
                        ledger_free(r);
                }
                assert_int_equal(file_size(dir, LEDGER_LOG_FILE), damaged);

                LedgerOpenReport rep;
                l = open_ok(dir, 100000, &rep);
                _cleanup_free_ char *got = format_ok(l);
                if (strcmp(got, want) != 0)
                        fail_msg("case %s: loaded content differs", cases[c].name);
                if (isempty(cases[c].reason) ? rep.log_reason[0] != 0
                                             : !strstr(rep.log_reason, cases[c].reason) || strchr(rep.log_reason, '\n'))
                        fail_msg("case %s: log_reason \"%s\"", cases[c].name, rep.log_reason);
                assert_false(rep.corrupt);
                assert_int_equal(count_prefixed(dir, LEDGER_LOG_FILE ".corrupt-"), cases[c].moved ? 1 : 0);
                /* the next save goes on from what loaded: nothing after a damaged tail, no mix */
                record_ok(l, 3, DB, T0 + 300);
                assert_int_equal(ledger_save(l), 0);
                _cleanup_free_ char *after = format_ok(l);
                ledger_free(l);
                l = open_ok(dir, 100000, &rep);
                _cleanup_free_ char *again = format_ok(l);
                if (strcmp(again, after) != 0 || rep.log_reason[0])
                        fail_msg("case %s: after the next save: \"%s\"", cases[c].name, rep.log_reason);
                ledger_free(l);
                teardown_dir(&(void *) { strdup(dir) });
        }
}

/* A compaction that crashed after its snapshot and before its new log: the old log
 * names the previous snapshot and is ignored (replaying it would undo newer changes). */
static void test_stale_log(void **state) {
        const char *dir = *state;
        char log[512], keep[512];
        path_of(log, sizeof log, dir, LEDGER_LOG_FILE);
        path_of(keep, sizeof keep, dir, "old.log");
        Ledger *l = open_ok(dir, 100000, NULL);
        for (unsigned i = 0; i < 10; i++)
                record_ok(l, i, DA, T0 + i);
        assert_int_equal(ledger_save(l), 0);
        record_ok(l, 1, DB, T0 + 100); /* in the log: 1 -> DB */
        assert_int_equal(ledger_save(l), 0);
        assert_int_equal(link(log, keep), 0);
        record_ok(l, 1, DC, T0 + 200); /* 1 -> DC, in the snapshot only */
        assert_int_equal(ledger_compact(l), 0);
        _cleanup_free_ char *want = format_ok(l);
        ledger_free(l);
        assert_int_equal(rename(keep, log), 0);

        LedgerOpenReport rep;
        l = open_ok(dir, 100000, &rep);
        _cleanup_free_ char *got = format_ok(l);
        assert_string_equal(got, want);
        assert_string_equal(rep.log_reason, "");
        assert_int_equal(rep.log_records, 0);
        /* the next save replaces the stale log rather than append to it */
        record_ok(l, 4, DB, T0 + 300);
        assert_int_equal(ledger_save(l), 0);
        _cleanup_free_ char *want2 = format_ok(l);
        ledger_free(l);
        assert_disk_is(dir, want2);
        /* a log with no snapshot at all extends nothing */
        char snap[512];
        path_of(snap, sizeof snap, dir, LEDGER_FILE);
        assert_int_equal(unlink(snap), 0);
        l = open_ok(dir, 100000, &rep);
        LedgerStats st;
        ledger_get_stats(l, &st);
        assert_int_equal(st.references, 0);
        ledger_free(l);
}

/* The log obeys the one limit and the state directory's rules: over LEDGER_FILE_MAX,
 * a symlink, a FIFO or a directory are refused at once (never followed, never waited
 * on), moved aside by ledger_open(), an error for ledger_read(). */
static void test_hostile_logs(void **state) {
        static const char *const kinds[] = { "too large", "symlink", "fifo", "directory" };
        for (size_t c = 0; c < ELEMENTSOF(kinds); c++) {
                char dir[64] = "/tmp/pw-test-XXXXXX", log[512], err[LEDGER_REASON_MAX];
                assert_non_null(mkdtemp(dir));
                path_of(log, sizeof log, dir, LEDGER_LOG_FILE);
                Ledger *l = open_ok(dir, 100000, NULL);
                record_ok(l, 1, DA, T0);
                assert_int_equal(ledger_save(l), 0);
                _cleanup_free_ char *want = format_ok(l);
                ledger_free(l);
                assert_int_equal(unlink(log), 0);
                switch (c) {
                case 0: {
                        int fd = open(log, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                        assert_true(fd >= 0);
                        assert_int_equal(ftruncate(fd, (off_t) LEDGER_FILE_MAX + 1), 0); /* sparse */
                        close(fd);
                        break;
                }
                case 1: assert_int_equal(symlink("/etc/passwd", log), 0); break;
                case 2: assert_int_equal(mkfifo(log, 0600), 0); break;
                case 3: assert_int_equal(mkdir(log, 0700), 0); break;
                }
                Ledger *r = (Ledger *) 0x1;
                alarm(10);
                int k = ledger_read(&r, dir, 100000, err, sizeof err);
                assert_int_equal(k, -EBADMSG);
                assert_ptr_equal(r, (Ledger *) 0x1);
                if (!strstr(err, LEDGER_LOG_FILE) || strchr(err, '\n'))
                        fail_msg("%s: \"%s\"", kinds[c], err);
                LedgerOpenReport rep;
                l = open_ok(dir, 100000, &rep);
                alarm(0);
                _cleanup_free_ char *got = format_ok(l);
                assert_string_equal(got, want);
                if (!strstr(rep.log_reason, c == 0 ? "too large" : "not a regular file") ||
                    !strstr(rep.log_reason, "moved aside"))
                        fail_msg("%s: \"%s\"", kinds[c], rep.log_reason);
                assert_int_equal(count_prefixed(dir, LEDGER_LOG_FILE ".corrupt-"), 1);
                record_ok(l, 2, DB, T0 + 1);
                assert_int_equal(ledger_save(l), 0);
                _cleanup_free_ char *after = format_ok(l);
                ledger_free(l);
                assert_disk_is(dir, after);
                if (c == 3) { /* nftw removes files and empty directories */
                        char aside[600];
                        DIR *d = opendir(dir);
                        for (struct dirent *de; d && (de = readdir(d));)
                                if (startswith(de->d_name, LEDGER_LOG_FILE ".corrupt-")) {
                                        snprintf(aside, sizeof aside, "%s/%s", dir, de->d_name);
                                        rmdir(aside);
                                }
                        if (d)
                                closedir(d);
                }
                teardown_dir(&(void *) { strdup(dir) });
        }
}

/* The pure replay, record by record. */
static void test_replay_records(void **state) {
        static const struct {
                const char *payload;
                uint64_t seq;
                bool applied;
        } cases[] = {
                { "{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DB "\",\"digests\":[{\"digest\":\"" DB
                  "\",\"first_seen\":5,\"last_seen\":6}],\"raised\":[]}", 1, true },
                { "{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DC "\",\"digests\":[]}", 2, false },
                { "not json", 3, false },
                { "[1]", 4, false },
                { "{\"namespace\":\"k8s.io\",\"reference\":\"b:1\",\"removed\":false}", 5, false },
                { "{\"namespace\":\"k8s.io\",\"reference\":\"b:1\",\"removed\":true,\"x\":1}", 6, false },
                { "{\"namespace\":\"k8s.io\",\"reference\":\"c:1\",\"removed\":true}", 7, true },
                { "{\"namespace\":\"k8s.io\",\"reference\":\"nope:1\",\"removed\":true}", 8, true }, /* absent: nothing */
                { "{\"namespace\":\"k8s.io\",\"reference\":\"c:1\",\"removed\":true}", 7, false }, /* seq not increasing:
                                                                                                 * nothing valid after: a torn tail */
        };
        Ledger *l = NULL;
        char err[LEDGER_REASON_MAX];
        assert_int_equal(ledger_new(&l, 100), 0);
        assert_int_equal(ledger_record(l, "k8s.io", "a:1", DA, 1, NULL, NULL), 0);
        assert_int_equal(ledger_record(l, "k8s.io", "b:1", DA, 1, NULL, NULL), 0);
        assert_int_equal(ledger_record(l, "k8s.io", "c:1", DA, 1, NULL, NULL), 0);
        uint8_t buf[8192];
        size_t n = ledger_log_header(l, buf, sizeof buf);
        assert_true(n > LEDGER_LOG_FRAME_HEADER && n < 200);
        uint64_t applied = 0, skipped = 0;
        size_t last = ELEMENTSOF(cases) - 1;
        for (size_t c = 0; c < ELEMENTSOF(cases); c++) {
                n += ledger_log_frame(cases[c].seq, cases[c].payload, strlen(cases[c].payload), buf + n, sizeof buf - n);
                applied += cases[c].applied;
                skipped += !cases[c].applied && c != last;
        }
        size_t tail = ledger_log_frame(7, cases[last].payload, strlen(cases[last].payload), NULL, 0);
        LedgerReplayReport rep;
        assert_int_equal(ledger_replay(l, buf, n, &rep, err, sizeof err), 0);
        assert_int_equal(rep.records, applied);
        assert_int_equal(rep.corrupt_records, skipped);
        assert_int_equal(rep.dropped_bytes, tail);
        assert_int_equal(rep.valid_end, n - tail);
        LedgerDigest d;
        assert_int_equal(ledger_lookup(l, "k8s.io", "a:1", &d), 0); /* record 1; record 2 changed nothing */
        assert_string_equal(d.digest, DB);
        assert_int_equal(d.first_seen_usec, 5);
        assert_int_equal(ledger_lookup(l, "k8s.io", "b:1", &d), 0);
        assert_int_equal(ledger_lookup(l, "k8s.io", "c:1", &d), -ENOENT);

        /* a log of another snapshot: nothing applied */
        Ledger *m = NULL;
        assert_int_equal(ledger_new(&m, 100), 0);
        _cleanup_free_ char *text = format_ok(l);
        assert_int_equal(ledger_parse(m, text, strlen(text), err, sizeof err), 0);
        assert_int_equal(ledger_replay(m, buf, n, &rep, err, sizeof err), -ESTALE);
        /* a bad header: -EBADMSG, one line */
        buf[2] ^= 1;
        assert_int_equal(ledger_replay(l, buf, n, &rep, err, sizeof err), -EBADMSG);
        assert_null(strchr(err, '\n'));
        ledger_free(m);
        ledger_free(l);
}

/* A re-list sees every image again: a last_seen that stays within its hour is not a
 * change to save; crossing the hour, a new digest, a first_seen moving back, are. */
static void test_last_seen_grain(void **state) {
        static const struct {
                const char *digest;
                uint64_t now;
                bool dirty;
        } steps[] = {
                { DA, T0 + 10, true },             /* first sighting */
                { DA, T0 + 20, false },            /* the same hour */
                { DA, T0 + HOUR - 1, false },
                { DA, T0 + HOUR, true },           /* the next hour */
                { DA, T0 + HOUR + 5, false },
                { DA, T0 + 5, true },              /* first_seen moves back */
                { DB, T0 + HOUR + 6, true },       /* a move */
                { DA, T0 + HOUR + 7, true },       /* and back */
        };
        Ledger *l = NULL;
        assert_int_equal(ledger_new(&l, 100), 0);
        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                assert_int_equal(ledger_record(l, "k8s.io", "a:1", steps[i].digest, steps[i].now, NULL, NULL), 0);
                if (ledger_is_dirty(l) != steps[i].dirty)
                        fail_msg("step %zu: dirty %d", i, ledger_is_dirty(l));
                /* ledger_save() needs a file: clear the flag the way a save would */
                char *t = NULL;
                size_t len;
                assert_int_equal(ledger_format(l, &t, &len), 0);
                Ledger *m = NULL;
                assert_int_equal(ledger_new(&m, 100), 0);
                assert_int_equal(ledger_parse(m, t, len, NULL, 0), 0);
                free(t);
                ledger_free(l);
                l = m;
        }
        ledger_free(l);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_append_is_o_changes, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_long_record, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_removals_replay, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_compaction, setup_dir, teardown_dir),
                cmocka_unit_test(test_damaged_log),
                cmocka_unit_test_setup_teardown(test_stale_log, setup_dir, teardown_dir),
                cmocka_unit_test(test_hostile_logs),
                cmocka_unit_test(test_replay_records),
                cmocka_unit_test(test_last_seen_grain),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
