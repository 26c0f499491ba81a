/* spool: framing, torn tails, corruption, bounds, ack persistence, SIGKILL. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <malloc.h>
#include <zlib.h>

#include "pullwatch/spool.h"
#include "pullwatch/util.h"

/* ---- helpers ---- */

#include "tmpdir.h"

static void spool_dir(char *buf, size_t n, void **state) {
        snprintf(buf, n, "%s/spool", (const char *) *state);
}

/* Deterministic payload of `len` bytes for seq. */
static size_t make_payload(char *buf, size_t len, uint64_t seq) {
        int n = snprintf(buf, len, "{\"seq\":%" PRIu64 ",\"pad\":\"", seq);
        size_t i = (size_t) n;
        for (; i + 2 < len; i++)
                buf[i] = (char) ('a' + (seq + i) % 26);
        buf[i++] = '"';
        buf[i++] = '}';
        return i;
}

typedef struct Collected {
        uint64_t seqs[4096];
        size_t n;
        size_t payload_len;  /* if non-zero, check payloads with make_payload */
        uint64_t stop_after; /* return 1 after this many, if non-zero */
        bool bad_payload;
} Collected;

static int collect(uint64_t seq, const void *data, size_t len, void *userdata) {
        Collected *c = userdata;
        if (c->payload_len) {
                char expect[2048];
                size_t n = make_payload(expect, c->payload_len, seq);
                if (n != len || memcmp(expect, data, n) != 0)
                        c->bad_payload = true;
        }
        if (c->n < ELEMENTSOF(c->seqs))
                c->seqs[c->n] = seq;
        c->n++;
        return c->stop_after && c->n >= c->stop_after ? 1 : 0;
}

static Spool *open_ok(const char *dir, uint64_t max, SpoolFsync pol, SpoolOpenReport *rep) {
        Spool *s = NULL;
        assert_int_equal(spool_open(&s, dir, max, pol, rep), 0);
        assert_non_null(s);
        return s;
}

static void append_n(Spool *s, uint64_t first_expected, size_t n, size_t payload_len) {
        char buf[2048];
        for (size_t i = 0; i < n; i++) {
                uint64_t seq = 0;
                size_t l = make_payload(buf, payload_len, first_expected + i);
                assert_int_equal(spool_append(s, buf, l, &seq), 0);
                assert_int_equal(seq, first_expected + i);
        }
}

/* Path of the only (or newest) segment file in dir. */
static void newest_segment(const char *dir, char *ret, size_t n) {
        DIR *d = opendir(dir);
        assert_non_null(d);
        char best[256] = "";
        struct dirent *de;
        while ((de = readdir(d)))
                if (strstr(de->d_name, ".seg") && strcmp(de->d_name, best) > 0)
                        snprintf(best, sizeof(best), "%s", de->d_name);
        closedir(d);
        assert_true(best[0]);
        snprintf(ret, n, "%s/%s", dir, best);
}

static size_t count_segments(const char *dir) {
        DIR *d = opendir(dir);
        assert_non_null(d);
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
                if (strstr(de->d_name, ".seg"))
                        n++;
        closedir(d);
        return n;
}

static off_t file_size(const char *path) {
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        return st.st_size;
}

/* ---- pure decoder ---- */

static void test_record_decode_table(void **state) {
        static const char payload[] = "{\"kind\":\"pull\"}";
        uint8_t frame[SPOOL_RECORD_HEADER_SIZE + sizeof(payload) - 1];
        spool_record_encode_header(frame, 42, payload, sizeof(payload) - 1);
        memcpy(frame + SPOOL_RECORD_HEADER_SIZE, payload, sizeof(payload) - 1);

        /* every strict prefix is torn, unless the magic itself is already wrong */
        for (size_t l = 0; l < sizeof(frame); l++)
                assert_int_equal(spool_record_decode(frame, l, NULL, NULL, NULL, NULL), -ENODATA);

        uint64_t seq = 0;
        const uint8_t *p = NULL;
        size_t len = 0, flen = 0;
        assert_int_equal(spool_record_decode(frame, sizeof(frame), &seq, &p, &len, &flen), 0);
        assert_int_equal(seq, 42);
        assert_int_equal(len, sizeof(payload) - 1);
        assert_int_equal(flen, sizeof(frame));
        assert_memory_equal(p, payload, len);

        struct {
                size_t offset;
                uint8_t xor;
                int expect;
        } cases[] = {
                { 0, 0x01, -EBADMSG },                         /* magic */
                { 4, 0x10, -ENODATA },                         /* length grows past the buffer */
                { 6, 0x20, -EBADMSG },                         /* length > SPOOL_RECORD_MAX */
                { 4, 0x02, -EILSEQ },                          /* length shrinks: CRC mismatch */
                { 8, 0x01, -EILSEQ },                          /* seq */
                { 16, 0x80, -EILSEQ },                         /* crc itself */
                { SPOOL_RECORD_HEADER_SIZE + 3, 0x20, -EILSEQ }, /* payload */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint8_t copy[sizeof(frame)];
                memcpy(copy, frame, sizeof(frame));
                copy[cases[i].offset] ^= cases[i].xor;
                seq = 7;
                int r = spool_record_decode(copy, sizeof(copy), &seq, NULL, NULL, NULL);
                if (r != cases[i].expect)
                        fail_msg("case %zu: got %d, expected %d", i, r, cases[i].expect);
                assert_int_equal(seq, 7); /* untouched on error */
        }
}

static void test_segment_scan_policy(void **state) {
        /* three frames; corrupt the middle one, then the last one */
        uint8_t buf[3 * (SPOOL_RECORD_HEADER_SIZE + 8)];
        size_t fl = SPOOL_RECORD_HEADER_SIZE + 8;
        for (unsigned i = 0; i < 3; i++) {
                uint8_t *f = buf + i * fl;
                memcpy(f + SPOOL_RECORD_HEADER_SIZE, "payload", 8);
                spool_record_encode_header(f, 10 + i, f + SPOOL_RECORD_HEADER_SIZE, 8);
        }
        SpoolScanResult res;
        assert_int_equal(spool_segment_scan(buf, sizeof(buf), 0, NULL, NULL, &res), 0);
        assert_int_equal(res.records, 3);
        assert_int_equal(res.valid_end, sizeof(buf));
        assert_int_equal(res.last_seq, 12);

        /* min_seq: frames at or below it are not accepted */
        assert_int_equal(spool_segment_scan(buf, sizeof(buf), 11, NULL, NULL, &res), 0);
        assert_int_equal(res.records, 1);
        assert_int_equal(res.corrupt_records, 1);

        buf[fl + SPOOL_RECORD_HEADER_SIZE] ^= 1;
        assert_int_equal(spool_segment_scan(buf, sizeof(buf), 0, NULL, NULL, &res), 0);
        assert_int_equal(res.records, 2);
        assert_int_equal(res.corrupt_records, 1);
        assert_int_equal(res.skipped_bytes, fl);
        assert_int_equal(res.valid_end, sizeof(buf));

        buf[2 * fl + 1] ^= 1; /* last frame's magic */
        assert_int_equal(spool_segment_scan(buf, sizeof(buf), 0, NULL, NULL, &res), 0);
        assert_int_equal(res.records, 1);
        assert_int_equal(res.valid_end, fl); /* everything after frame 1 is a torn tail */
}

/* ---- spool on disk ---- */

static void test_append_peek_ack_reopen(void **state) {
        char dir[512];
        spool_dir(dir, sizeof(dir), state);
        SpoolOpenReport rep;
        Spool *s = open_ok(dir, 1 << 20, SPOOL_FSYNC_BATCH, &rep);
        assert_int_equal(rep.records, 0);
        append_n(s, 1, 10, 300);
        assert_int_equal(spool_sync(s), 0);

        Collected c = { .payload_len = 300 };
        assert_int_equal(spool_peek(s, 0, 100, 1 << 20, collect, &c), 10);
        assert_int_equal(c.n, 10);
        assert_false(c.bad_payload);
        for (size_t i = 0; i < 10; i++)
                assert_int_equal(c.seqs[i], i + 1);

        assert_int_equal(spool_ack(s, 4), 0);
        SpoolStats st;
        spool_get_stats(s, &st);
        assert_int_equal(st.appended, 10);
        assert_int_equal(st.acked, 4);
        assert_int_equal(st.pending_records, 6);
        assert_int_equal(st.pending_bytes, 6 * (SPOOL_RECORD_HEADER_SIZE + 300));
        s = spool_free(s);

        s = open_ok(dir, 1 << 20, SPOOL_FSYNC_BATCH, &rep);
        assert_int_equal(rep.records, 10);
        assert_int_equal(rep.trimmed_bytes, 0);
        assert_int_equal(rep.corrupt_records, 0);
        assert_false(rep.ack_state_reset);
        c = (Collected) { .payload_len = 300 };
        assert_int_equal(spool_peek(s, 0, 100, 1 << 20, collect, &c), 6);
        assert_int_equal(c.seqs[0], 5);
        assert_int_equal(c.seqs[5], 10);
        assert_false(c.bad_payload);
        append_n(s, 11, 2, 300); /* sequence continues */
        spool_get_stats(s, &st);
        assert_int_equal(st.pending_records, 8);
        s = spool_free(s);
}

static void test_sequence_continuity_after_drain(void **state) {
        char dir[512];
        spool_dir(dir, sizeof(dir), state);
        Spool *s = open_ok(dir, 1 << 20, SPOOL_FSYNC_ALWAYS, NULL);
        append_n(s, 1, 3, 100);
        assert_int_equal(spool_ack(s, 3), 0);
        assert_int_equal(count_segments(dir), 0); /* drained: no data left on disk */
        SpoolStats st;
        spool_get_stats(s, &st);
        assert_int_equal(st.disk_bytes, 0);
        assert_int_equal(st.pending_records, 0);
        s = spool_free(s);

        s = open_ok(dir, 1 << 20, SPOOL_FSYNC_ALWAYS, NULL);
        append_n(s, 4, 2, 100);
        Collected c = {};
        assert_int_equal(spool_peek(s, 0, 100, 1 << 20, collect, &c), 2);
        assert_int_equal(c.seqs[0], 4);
        /* acking beyond what exists is clamped, not an error */
        assert_int_equal(spool_ack(s, 1000), 0);
        append_n(s, 6, 1, 100);
        s = spool_free(s);
}

static void test_torn_tail_truncated(void **state) {
        char dir[512], seg[768];
        spool_dir(dir, sizeof(dir), state);
        Spool *s = open_ok(dir, 1 << 20, SPOOL_FSYNC_BATCH, NULL);
        append_n(s, 1, 5, 200);
        s = spool_free(s);

        newest_segment(dir, seg, sizeof(seg));
        off_t sz = file_size(seg);
        assert_int_equal(sz, 5 * (SPOOL_RECORD_HEADER_SIZE + 200));
        assert_int_equal(truncate(seg, sz - 7), 0);

        SpoolOpenReport rep;
        s = open_ok(dir, 1 << 20, SPOOL_FSYNC_BATCH, &rep);
        assert_int_equal(rep.records, 4);
        assert_int_equal(rep.trimmed_bytes, SPOOL_RECORD_HEADER_SIZE + 200 - 7);
        assert_int_equal(rep.corrupt_records, 0);
        assert_int_equal(file_size(seg), 4 * (SPOOL_RECORD_HEADER_SIZE + 200));
        Collected c = { .payload_len = 200 };
        assert_int_equal(spool_peek(s, 0, 100, 1 << 20, collect, &c), 4);
        assert_false(c.bad_payload);
        append_n(s, 5, 1, 200); /* appends land after the last valid record */
        s = spool_free(s);

        s = open_ok(dir, 1 << 20, SPOOL_FSYNC_BATCH, &rep);
        assert_int_equal(rep.records, 5);
        assert_int_equal(rep.trimmed_bytes, 0);
        s = spool_free(s);
}

static void test_torn_tail_garbage(void **state) {
        static const struct {
                const char *name;
                const char *bytes;
                size_t len;
        } garbage[] = {
                { "zeros", "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 32 },
                { "text", "this is not a frame at all", 26 },
                { "magic then junk", "PWS1\x05\0\0\0\x07\0\0\0\0\0\0\0\xde\xad\xbe\xef" "abc", 23 },
                { "half header", "PWS1\x10", 5 },
        };
        for (size_t i = 0; i < ELEMENTSOF(garbage); i++) {
                char dir[512], seg[768];
                snprintf(dir, sizeof(dir), "%s/spool%zu", (const char *) *state, i);
                Spool *s = open_ok(dir, 1 << 20, SPOOL_FSYNC_NEVER, NULL);
                append_n(s, 1, 5, 100);
                s = spool_free(s);

                newest_segment(dir, seg, sizeof(seg));
                int fd = open(seg, O_WRONLY | O_APPEND | O_CLOEXEC);
                assert_true(fd >= 0);
                assert_int_equal(write(fd, garbage[i].bytes, garbage[i].len), (ssize_t) garbage[i].len);
                close(fd);

                SpoolOpenReport rep;
                s = open_ok(dir, 1 << 20, SPOOL_FSYNC_NEVER, &rep);
                if (rep.records != 5 || rep.trimmed_bytes != garbage[i].len)
                        fail_msg("%s: records %" PRIu64 " trimmed %" PRIu64, garbage[i].name, rep.records,
                                 rep.trimmed_bytes);
                append_n(s, 6, 1, 100);
                Collected c = { .payload_len = 100 };
                assert_int_equal(spool_peek(s, 0, 100, 1 << 20, collect, &c), 6);
                assert_false(c.bad_payload);
                s = spool_free(s);
        }
}

static void test_flipped_byte(void **state) {
        const size_t fl = SPOOL_RECORD_HEADER_SIZE + 100;
        static const struct {
                const char *name;
                size_t record;  /* 0-based record to damage */
                size_t offset;  /* within the frame */
                uint64_t expect_records, expect_corrupt, expect_trimmed_frames;
        } cases[] = {
                { "payload of record 3", 2, SPOOL_RECORD_HEADER_SIZE + 50, 4, 1, 0 },
                { "length of record 3", 2, 4, 4, 1, 0 },
                { "magic of record 1", 0, 0, 4, 1, 0 },
                { "seq of record 4", 3, 9, 4, 1, 0 },
                { "payload of the last record", 4, SPOOL_RECORD_HEADER_SIZE + 1, 4, 0, 1 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char dir[512], seg[768];
                snprintf(dir, sizeof(dir), "%s/flip%zu", (const char *) *state, i);
                Spool *s = open_ok(dir, 1 << 20, SPOOL_FSYNC_NEVER, NULL);
                append_n(s, 1, 5, 100);
                s = spool_free(s);

                newest_segment(dir, seg, sizeof(seg));
                int fd = open(seg, O_RDWR | O_CLOEXEC);
                assert_true(fd >= 0);
                uint8_t b;
                off_t at = (off_t) (cases[i].record * fl + cases[i].offset);
                assert_int_equal(pread(fd, &b, 1, at), 1);
                b ^= 0x04;
                assert_int_equal(pwrite(fd, &b, 1, at), 1);
                close(fd);

                SpoolOpenReport rep;
                s = open_ok(dir, 1 << 20, SPOOL_FSYNC_NEVER, &rep);
                if (rep.records != cases[i].expect_records || rep.corrupt_records != cases[i].expect_corrupt ||
                    rep.trimmed_bytes != cases[i].expect_trimmed_frames * fl)
                        fail_msg("%s: records %" PRIu64 " corrupt %" PRIu64 " trimmed %" PRIu64, cases[i].name,
                                 rep.records, rep.corrupt_records, rep.trimmed_bytes);
                if (cases[i].expect_corrupt)
                        assert_int_equal(rep.skipped_bytes, fl);
                Collected c = { .payload_len = 100 };
                assert_int_equal(spool_peek(s, 0, 100, 1 << 20, collect, &c), 4);
                assert_false(c.bad_payload);
                for (size_t k = 0; k < c.n; k++) /* the damaged record is the one missing */
                        assert_int_not_equal(c.seqs[k], cases[i].record + 1);
                s = spool_free(s);
        }
}

static void test_full_spool_drops_oldest(void **state) {
        char dir[512];
        spool_dir(dir, sizeof(dir), state);
        const uint64_t max = 64 * 1024;
        const size_t n = 1000, plen = 600;
        Spool *s = open_ok(dir, max, SPOOL_FSYNC_NEVER, NULL);
        append_n(s, 1, n, plen);
        SpoolStats st;
        spool_get_stats(s, &st);
        assert_true(st.disk_bytes <= max);
        assert_true(st.dropped > 0);
        assert_int_equal(st.dropped, st.dropped_total);
        assert_int_equal(st.appended, n);
        assert_int_equal(st.pending_records + st.dropped, n);

        /* what is left is the newest records, contiguous up to the last one */
        Collected c = { .payload_len = plen };
        assert_int_equal(spool_peek(s, 0, 4096, SIZE_MAX, collect, &c), (int) st.pending_records);
        assert_false(c.bad_payload);
        assert_int_equal(c.seqs[0], st.dropped + 1);
        assert_int_equal(c.seqs[c.n - 1], n);
        uint64_t dropped = st.dropped;
        s = spool_free(s);

        SpoolOpenReport rep;
        s = open_ok(dir, max, SPOOL_FSYNC_NEVER, &rep);
        spool_get_stats(s, &st);
        assert_int_equal(st.dropped, 0);
        assert_int_equal(st.dropped_total, dropped); /* persisted */
        assert_int_equal(st.pending_records, n - dropped);

        /* acked records are reclaimed, not counted as dropped */
        assert_int_equal(spool_ack(s, n), 0);
        append_n(s, n + 1, 50, plen);
        spool_get_stats(s, &st);
        assert_int_equal(st.dropped, 0);

        /* a record that can never fit is refused */
        static char big[128 * 1024];
        assert_int_equal(spool_append(s, big, sizeof(big), NULL), -EMSGSIZE);
        s = spool_free(s);
}

static void test_peek_limits(void **state) {
        char dir[512];
        spool_dir(dir, sizeof(dir), state);
        Spool *s = open_ok(dir, 1 << 20, SPOOL_FSYNC_BATCH, NULL);
        append_n(s, 1, 20, 100);

        static const struct {
                uint64_t after;
                size_t max_records, max_bytes;
                uint64_t stop_after;
                int expect_n;
                uint64_t expect_first;
        } cases[] = {
                { 0, 5, SIZE_MAX, 0, 5, 1 },
                { 7, 100, SIZE_MAX, 0, 13, 8 },
                { 0, 100, 350, 0, 3, 1 },  /* 3 payloads of 100 fit in 350 */
                { 0, 100, 10, 0, 1, 1 },   /* the first is always visited */
                { 0, 100, SIZE_MAX, 2, 2, 1 }, /* callback stops */
                { 20, 100, SIZE_MAX, 0, 0, 0 },
                { 0, 0, SIZE_MAX, 0, 0, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Collected c = { .payload_len = 100, .stop_after = cases[i].stop_after };
                int r = spool_peek(s, cases[i].after, cases[i].max_records, cases[i].max_bytes, collect, &c);
                if (r != cases[i].expect_n || (int) c.n != cases[i].expect_n)
                        fail_msg("case %zu: returned %d visited %zu", i, r, c.n);
                if (c.n > 0)
                        assert_int_equal(c.seqs[0], cases[i].expect_first);
                assert_false(c.bad_payload);
        }
        /* after an ack, peeking from 0 starts after the ack */
        assert_int_equal(spool_ack(s, 15), 0);
        Collected c = {};
        assert_int_equal(spool_peek(s, 0, 100, SIZE_MAX, collect, &c), 5);
        assert_int_equal(c.seqs[0], 16);
        s = spool_free(s);
}

/* Bytes the process holds from malloc (heap chunks in use and mmapped chunks). */
static size_t heap_in_use(void) {
        struct mallinfo2 mi = mallinfo2();
        return mi.uordblks + mi.hblkhd;
}

/* A peek of one big record (an inventory of a few hundred KiB) does not keep a read
 * buffer of its size afterwards: an idle agent held 314 KiB for good after shipping one. */
static void test_peek_big_record_keeps_no_buffer(void **state) {
#if defined(__SANITIZE_ADDRESS__)
        skip(); /* ASan's allocator: mallinfo2() does not see its chunks */
#endif
        char dir[512];
        spool_dir(dir, sizeof(dir), state);
        Spool *s = open_ok(dir, 8 << 20, SPOOL_FSYNC_BATCH, NULL);
        append_n(s, 1, 3, 100);
        size_t big_len = 512 << 10;
        _cleanup_free_ char *big = malloc(big_len);
        assert_non_null(big);
        memset(big, 'x', big_len);
        uint64_t seq = 0;
        assert_int_equal(spool_append(s, big, big_len, &seq), 0);
        append_n(s, 5, 3, 100);

        size_t before = heap_in_use();
        Collected c = {};
        assert_int_equal(spool_peek(s, 0, 100, SIZE_MAX, collect, &c), 7);
        assert_int_equal(c.seqs[3], 4);
        size_t after = heap_in_use();
        if (after > before + (64 << 10))
                fail_msg("the spool holds %zu more bytes after peeking a %zu-byte record", after - before, big_len);
        s = spool_free(s);
}

static void test_many_segments_peek_and_ack(void **state) {
        /* small segments (max 64 KiB -> 16 KiB segments): peek and ack across boundaries */
        char dir[512];
        spool_dir(dir, sizeof(dir), state);
        Spool *s = open_ok(dir, 64 * 1024, SPOOL_FSYNC_BATCH, NULL);
        append_n(s, 1, 80, 600);
        assert_true(count_segments(dir) >= 3);
        uint64_t after = 0;
        size_t total = 0;
        for (;;) {
                Collected c = { .payload_len = 600 };
                int r = spool_peek(s, after, 7, SIZE_MAX, collect, &c);
                assert_true(r >= 0);
                assert_false(c.bad_payload);
                if (r == 0)
                        break;
                for (size_t k = 0; k < c.n; k++)
                        assert_int_equal(c.seqs[k], after + 1 + k);
                after = c.seqs[c.n - 1];
                total += c.n;
                assert_int_equal(spool_ack(s, after), 0);
        }
        assert_int_equal(total, 80);
        assert_int_equal(count_segments(dir), 0);
        s = spool_free(s);
}

static void test_ack_file_corrupt(void **state) {
        char dir[512], ack[768];
        spool_dir(dir, sizeof(dir), state);
        Spool *s = open_ok(dir, 1 << 20, SPOOL_FSYNC_ALWAYS, NULL);
        append_n(s, 1, 5, 50);
        assert_int_equal(spool_ack(s, 2), 0);
        s = spool_free(s);

        snprintf(ack, sizeof(ack), "%s/ack", dir);
        int fd = open(ack, O_RDWR | O_CLOEXEC);
        assert_true(fd >= 0);
        char b;
        assert_int_equal(pread(fd, &b, 1, 24), 1); /* inside "acked=2" */
        b ^= 0x01;
        assert_int_equal(pwrite(fd, &b, 1, 24), 1);
        close(fd);

        SpoolOpenReport rep;
        s = open_ok(dir, 1 << 20, SPOOL_FSYNC_ALWAYS, &rep);
        assert_true(rep.ack_state_reset);
        Collected c = {};
        /* at-least-once: everything still on disk is pending again */
        assert_int_equal(spool_peek(s, 0, 100, SIZE_MAX, collect, &c), 5);
        append_n(s, 6, 1, 50);
        s = spool_free(s);
}

/* An ack file whose CRC is right but whose numbers cannot be: acked = UINT64_MAX made
 * acked + 1 wrap, and nothing was ever shipped again, silently. Such a state is refused
 * like a corrupt one: reported, and every record on disk pending again. */
static void test_ack_file_impossible(void **state) {
        static const struct {
                const char *fields;
                bool reset;
                size_t pending; /* of the 5 records appended */
        } cases[] = {
                { "acked=2 next=6 dropped_total=0", false, 3 },
                { "acked=0 next=6 dropped_total=0", false, 5 },
                { "acked=18446744073709551615 next=6 dropped_total=0", true, 5 },
                { "acked=18446744073709551615 next=18446744073709551615 dropped_total=0", true, 5 },
                { "acked=6 next=6 dropped_total=0", true, 5 },
                { "acked=7 next=6 dropped_total=0", true, 5 },
                { "acked=2 next=18446744073709551615 dropped_total=0", true, 5 },
                { "acked=2 next=0 dropped_total=0", true, 5 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char dir[512], ack[768], line[256];
                spool_dir(dir, sizeof(dir), state);
                snprintf(ack, sizeof(ack), "%s/ack", dir);
                Spool *s = open_ok(dir, 1 << 20, SPOOL_FSYNC_ALWAYS, NULL);
                append_n(s, 1, 5, 50);
                s = spool_free(s);

                int n = snprintf(line, sizeof(line), "pullwatch-spool 1 %s", cases[i].fields);
                uint32_t crc = (uint32_t) crc32(crc32(0L, Z_NULL, 0), (const Bytef *) line, (uInt) n);
                snprintf(line + n, sizeof(line) - (size_t) n, " crc=%08" PRIx32 "\n", crc);
                FILE *f = fopen(ack, "we");
                assert_non_null(f);
                assert_int_equal(fputs(line, f) >= 0, 1);
                assert_int_equal(fclose(f), 0);

                SpoolOpenReport rep;
                s = open_ok(dir, 1 << 20, SPOOL_FSYNC_ALWAYS, &rep);
                if (rep.ack_state_reset != cases[i].reset)
                        fail_msg("case %zu (%s): reset %d", i, cases[i].fields, rep.ack_state_reset);
                Collected c = {};
                assert_int_equal(spool_peek(s, 0, 100, SIZE_MAX, collect, &c), (int) cases[i].pending);
                /* and the spool goes on: a new record gets the next sequence number and is pending */
                uint64_t seq = 0;
                assert_int_equal(spool_append(s, "{}", 2, &seq), 0);
                assert_int_equal(seq, 6);
                c = (Collected) {};
                assert_int_equal(spool_peek(s, 0, 100, SIZE_MAX, collect, &c), (int) cases[i].pending + 1);
                s = spool_free(s);
                nftw(dir, tmpdir_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        }
}

/* State files are never opened through a symlink: a link planted at ack.tmp made root
 * truncate and overwrite its target at the next ack; one at ack was read. */
static void test_ack_symlinks_not_followed(void **state) {
        char dir[512], path[768], victim[768];
        spool_dir(dir, sizeof(dir), state);
        snprintf(victim, sizeof(victim), "%s/victim", (const char *) *state);
        FILE *f = fopen(victim, "we");
        assert_non_null(f);
        fputs("precious\n", f);
        assert_int_equal(fclose(f), 0);

        Spool *s = open_ok(dir, 1 << 20, SPOOL_FSYNC_ALWAYS, NULL);
        append_n(s, 1, 5, 50);
        snprintf(path, sizeof(path), "%s/ack.tmp", dir);
        assert_int_equal(symlink(victim, path), 0);
        assert_int_equal(spool_ack(s, 2), -ELOOP);
        struct stat st;
        assert_int_equal(stat(victim, &st), 0);
        assert_int_equal(st.st_size, strlen("precious\n"));
        /* the link gone, acking works again */
        assert_int_equal(unlink(path), 0);
        assert_int_equal(spool_ack(s, 2), 0);
        s = spool_free(s);

        /* ack itself a symlink: treated as unreadable, not read through, and replaced */
        snprintf(path, sizeof(path), "%s/ack", dir);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(symlink(victim, path), 0);
        SpoolOpenReport rep;
        s = open_ok(dir, 1 << 20, SPOOL_FSYNC_ALWAYS, &rep);
        assert_true(rep.ack_state_reset);
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(stat(victim, &st), 0);
        assert_int_equal(st.st_size, strlen("precious\n"));
        s = spool_free(s);

        /* ack a FIFO: refused at once as unreadable (the open waited for a writer, hanging
         * start-up), and replaced; alarm() turns a hang into a failed test */
        assert_int_equal(unlink(path), 0);
        assert_int_equal(mkfifo(path, 0600), 0);
        alarm(10);
        s = open_ok(dir, 1 << 20, SPOOL_FSYNC_ALWAYS, &rep);
        alarm(0);
        assert_true(rep.ack_state_reset);
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        s = spool_free(s);
}

static void test_second_open_busy(void **state) {
        char dir[512];
        spool_dir(dir, sizeof(dir), state);
        Spool *s = open_ok(dir, 1 << 20, SPOOL_FSYNC_BATCH, NULL);
        Spool *t = (Spool *) 0x1;
        assert_int_equal(spool_open(&t, dir, 1 << 20, SPOOL_FSYNC_BATCH, NULL), -EBUSY);
        assert_ptr_equal(t, (Spool *) 0x1); /* untouched on failure */
        assert_int_equal(spool_open(&t, dir, 0, SPOOL_FSYNC_BATCH, NULL), -EINVAL);
        s = spool_free(s);
}

static void test_write_failure_leaves_file_intact(void **state) {
        /* RLIMIT_FSIZE makes the write of a frame fail part-way, like a full disk. */
        char dir[512], seg[768];
        spool_dir(dir, sizeof(dir), state);
        Spool *s = open_ok(dir, 1 << 20, SPOOL_FSYNC_ALWAYS, NULL);
        append_n(s, 1, 3, 500);
        newest_segment(dir, seg, sizeof(seg));
        off_t before = file_size(seg);

        struct rlimit old, lim;
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
        lim = old;
        lim.rlim_cur = (rlim_t) before + 100; /* mid-frame */
        void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
        char buf[600];
        size_t l = make_payload(buf, 500, 4);
        uint64_t seq = 999;
        int r = spool_append(s, buf, l, &seq);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
        signal(SIGXFSZ, oldsig);
        assert_int_equal(r, -EFBIG);
        assert_int_equal(seq, 999);
        assert_int_equal(file_size(seg), before); /* partial frame truncated back */

        append_n(s, 4, 1, 500); /* and the same sequence number is used next */
        s = spool_free(s);
        SpoolOpenReport rep;
        s = open_ok(dir, 1 << 20, SPOOL_FSYNC_ALWAYS, &rep);
        assert_int_equal(rep.records, 4);
        assert_int_equal(rep.trimmed_bytes, 0);
        assert_int_equal(rep.corrupt_records, 0);
        s = spool_free(s);
}

/* A child appends as fast as it can and reports every seq spool_append() returned;
 * it is SIGKILLed mid-stream. Every reported record must survive, intact. */
static void test_sigkill_child(void **state) {
        char dir[512];
        spool_dir(dir, sizeof(dir), state);
        const size_t plen = 600;
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                close(p[0]);
                Spool *s = NULL;
                if (spool_open(&s, dir, 64ULL << 20, SPOOL_FSYNC_BATCH, NULL) < 0)
                        _exit(1);
                char buf[2048];
                for (uint64_t i = 1;; i++) {
                        uint64_t seq;
                        size_t l = make_payload(buf, plen, i);
                        if (spool_append(s, buf, l, &seq) < 0 || seq != i)
                                _exit(2);
                        if (write(p[1], &seq, sizeof(seq)) != sizeof(seq))
                                _exit(3);
                        if (i % 64 == 0 && spool_sync(s) < 0)
                                _exit(4);
                }
        }
        close(p[1]);
        uint64_t last = 0, seq;
        while (last < 3000 && read(p[0], &seq, sizeof(seq)) == sizeof(seq))
                last = seq;
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        while (read(p[0], &seq, sizeof(seq)) == sizeof(seq))
                last = seq;
        close(p[0]);
        assert_true(last >= 3000);

        SpoolOpenReport rep;
        Spool *s = open_ok(dir, 64ULL << 20, SPOOL_FSYNC_BATCH, &rep);
        assert_true(rep.records >= last);
        assert_true(rep.trimmed_bytes < SPOOL_RECORD_HEADER_SIZE + plen);
        assert_int_equal(rep.corrupt_records, 0);
        uint64_t after = 0, seen = 0;
        for (;;) {
                Collected c = { .payload_len = plen };
                int r = spool_peek(s, after, 1000, SIZE_MAX, collect, &c);
                assert_true(r >= 0);
                assert_false(c.bad_payload);
                if (r == 0)
                        break;
                for (size_t k = 0; k < c.n; k++)
                        assert_int_equal(c.seqs[k], after + 1 + k); /* no gaps */
                after = c.seqs[c.n - 1];
                seen += c.n;
        }
        assert_int_equal(seen, rep.records);
        assert_true(after >= last);
        s = spool_free(s);
}


/* Crash replays: the ids of records pending at open are known, so a record made again
 * after a crash (same id) need not be spooled twice; acked ones and new ones are not. */
static void test_pending_at_open(void **state) {
        const char *dir = *state;
        static const char *const ids[] = {"00112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100",
                                          "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"};
        Spool *s = NULL;
        char rec[160];
        uint64_t seq, first = 0;
        assert_int_equal(spool_open(&s, dir, 1U << 20, SPOOL_FSYNC_BATCH, NULL), 0);
        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                int n = snprintf(rec, sizeof rec, "{\"schema\":1,\"id\":\"%s\",\"kind\":\"pull\"}", ids[i]);
                assert_int_equal(spool_append(s, rec, (size_t) n, &seq), 0);
                if (i == 0)
                        first = seq;
        }
        assert_false(spool_pending_at_open(s, ids[0])); /* only what was pending at open */
        assert_int_equal(spool_ack(s, first), 0);       /* the first is delivered */
        spool_free(s);

        assert_int_equal(spool_open(&s, dir, 1U << 20, SPOOL_FSYNC_BATCH, NULL), 0);
        assert_false(spool_pending_at_open(s, ids[0]));
        for (size_t i = 1; i < ELEMENTSOF(ids); i++)
                assert_true(spool_pending_at_open(s, ids[i]));
        assert_false(spool_pending_at_open(s, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
        assert_false(spool_pending_at_open(s, "not-an-id"));
        assert_false(spool_pending_at_open(s, NULL));
        spool_forget_pending_at_open(s);
        assert_false(spool_pending_at_open(s, ids[1]));
        spool_free(s);
}

/* ---- the replaceable group (the inventory): one pending, never evicting records ---- */

typedef struct Texts {
        char v[64][64];
        uint64_t seq[64];
        size_t n;
} Texts;

static int collect_text(uint64_t seq, const void *data, size_t len, void *userdata) {
        Texts *t = userdata;
        if (t->n < ELEMENTSOF(t->v)) {
                snprintf(t->v[t->n], sizeof t->v[t->n], "%.*s", (int) len, (const char *) data);
                t->seq[t->n] = seq;
        }
        t->n++;
        return 0;
}

static void put(Spool *s, const char *text) {
        uint64_t seq;
        assert_int_equal(spool_append(s, text, strlen(text), &seq), 0);
}

static int put_group(Spool *s, const char *a, const char *b) {
        struct iovec v[2] = {{(void *) a, strlen(a)}, {(void *) b, b ? strlen(b) : 0}};
        return spool_replace_latest(s, v, b ? 2 : 1);
}

static void expect(Spool *s, const char *const *want, size_t n) {
        Texts t = {};
        assert_int_equal(spool_peek(s, 0, 1000, 1 << 20, collect_text, &t), (int) n);
        assert_int_equal(t.n, n);
        for (size_t i = 0; i < n; i++) {
                assert_string_equal(t.v[i], want[i]);
                if (i > 0)
                        assert_true(t.seq[i] > t.seq[i - 1]);
        }
}

static void test_latest_group(void **state) {
        char dir[512];
        spool_dir(dir, sizeof dir, state);
        Spool *s = open_ok(dir, 1U << 20, SPOOL_FSYNC_BATCH, NULL);
        SpoolStats st;

        put(s, "pull-1");
        uint64_t g0 = spool_generation(s);
        assert_int_equal(put_group(s, "inv-A-1", "inv-A-2"), 0);
        assert_true(spool_generation(s) != g0);
        put(s, "pull-2");
        assert_int_equal(put_group(s, "inv-B-1", "inv-B-2"), 0); /* replaces A: B is newer */
        put(s, "pull-3");
        expect(s, (const char *const[]) {"pull-1", "pull-2", "inv-B-1", "inv-B-2", "pull-3"}, 5);
        spool_get_stats(s, &st);
        assert_int_equal(st.pending_records, 5);
        assert_int_equal(st.replaced, 2);
        assert_int_equal(st.dropped, 0);
        spool_free(s);

        /* it survives a reopen, in its place; acking part of it keeps the rest */
        s = open_ok(dir, 1U << 20, SPOOL_FSYNC_BATCH, NULL);
        expect(s, (const char *const[]) {"pull-1", "pull-2", "inv-B-1", "inv-B-2", "pull-3"}, 5);
        Texts t = {};
        assert_int_equal(spool_peek(s, 0, 3, 1 << 20, collect_text, &t), 3);
        assert_int_equal(spool_ack(s, t.seq[2]), 0); /* pull-1, pull-2, inv-B-1 */
        expect(s, (const char *const[]) {"inv-B-2", "pull-3"}, 2);
        spool_free(s);
        s = open_ok(dir, 1U << 20, SPOOL_FSYNC_BATCH, NULL);
        expect(s, (const char *const[]) {"inv-B-2", "pull-3"}, 2);
        /* a new group replaces the unsent rest */
        assert_int_equal(put_group(s, "inv-C-1", NULL), 0);
        expect(s, (const char *const[]) {"pull-3", "inv-C-1"}, 2);
        Texts all = {};
        assert_int_equal(spool_peek(s, 0, 10, 1 << 20, collect_text, &all), 2);
        assert_int_equal(spool_ack(s, all.seq[1]), 0);
        spool_get_stats(s, &st);
        assert_int_equal(st.pending_records, 0);
        spool_free(s);
        char latest[600];
        snprintf(latest, sizeof latest, "%s/latest", dir);
        assert_int_equal(access(latest, F_OK), -1); /* sent: gone from the disk */
        s = open_ok(dir, 1U << 20, SPOOL_FSYNC_BATCH, NULL);
        expect(s, NULL, 0);
        spool_free(s);
}

/* A full spool: records evict the group, the group never evicts records. */
static void test_latest_never_evicts(void **state) {
        char dir[512], rec[600];
        spool_dir(dir, sizeof dir, state);
        Spool *s = open_ok(dir, 16U << 10, SPOOL_FSYNC_BATCH, NULL);
        SpoolStats st;
        memset(rec, 'p', sizeof rec - 1);
        rec[sizeof rec - 1] = 0;

        for (int i = 0; i < 20; i++) /* 20 × 620 bytes of 16 KiB */
                put(s, rec);
        char big[3000];
        memset(big, 'i', sizeof big - 1);
        big[sizeof big - 1] = 0;
        /* 6 KiB of group beside 12.4 KiB of records: refused, nothing dropped */
        assert_int_equal(put_group(s, big, big), -ENOSPC);
        spool_get_stats(s, &st);
        assert_int_equal(st.pending_records, 20);
        assert_int_equal(st.dropped, 0);
        assert_int_equal(put_group(s, big, NULL), 0); /* 3 KiB fits */
        spool_get_stats(s, &st);
        assert_int_equal(st.pending_records, 21);
        assert_true(st.disk_bytes <= 16U << 10);
        /* the next records need room: the group goes, not a record */
        for (int i = 0; i < 3; i++)
                put(s, rec);
        spool_get_stats(s, &st);
        assert_int_equal(st.dropped, 1);
        assert_int_equal(st.pending_records, 23);
        Texts t = {};
        assert_int_equal(spool_peek(s, 0, 1000, 1 << 20, collect_text, &t), 23);
        for (size_t i = 0; i < ELEMENTSOF(t.v) && i < t.n; i++)
                assert_int_equal(t.v[i][0], 'p');
        spool_free(s);
}

/* A damaged group file is discarded whole, never half read. */
static void test_latest_damaged(void **state) {
        char dir[512], latest[600];
        spool_dir(dir, sizeof dir, state);
        Spool *s = open_ok(dir, 1U << 20, SPOOL_FSYNC_BATCH, NULL);
        put(s, "pull-1");
        assert_int_equal(put_group(s, "inv-A-1", "inv-A-2"), 0);
        spool_free(s);
        snprintf(latest, sizeof latest, "%s/latest", dir);
        assert_int_equal(truncate(latest, file_size(latest) - 3), 0);
        SpoolOpenReport rep;
        s = open_ok(dir, 1U << 20, SPOOL_FSYNC_BATCH, &rep);
        assert_int_equal(rep.corrupt_records, 1);
        expect(s, (const char *const[]) {"pull-1"}, 1);
        /* the sequence goes on past the discarded group */
        assert_int_equal(put_group(s, "inv-B-1", NULL), 0);
        put(s, "pull-2");
        expect(s, (const char *const[]) {"pull-1", "inv-B-1", "pull-2"}, 3);
        spool_free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_record_decode_table),
                cmocka_unit_test(test_segment_scan_policy),
                cmocka_unit_test_setup_teardown(test_append_peek_ack_reopen, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_sequence_continuity_after_drain, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_torn_tail_truncated, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_torn_tail_garbage, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_flipped_byte, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_full_spool_drops_oldest, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_peek_limits, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_peek_big_record_keeps_no_buffer, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_many_segments_peek_and_ack, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_ack_file_corrupt, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_ack_file_impossible, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_ack_symlinks_not_followed, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_second_open_busy, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_pending_at_open, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_write_failure_leaves_file_intact, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_sigkill_child, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_latest_group, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_latest_never_evicts, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_latest_damaged, setup_dir, teardown_dir),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
