/* facts: the config facts file — a round trip through the file, the index case (platform
 * digest not the target), what is not kept, a corrupt file moved aside and rebuilt (left
 * alone read-only), and facts_check() over a table of broken files. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <zlib.h>

#include <cmocka.h>

#include "pullwatch/facts.h"
#include "pullwatch/util.h"

#include "tmpdir.h"

#define D(c) "sha256:" c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c

static const struct {
        const char *target;
        FactsEntry e;
} entries[] = {
        { D("1"), { D("1"), D("a"), true, "0123456789abcdef0123456789abcdef01234567" } },
        { D("2"), { D("b"), D("c"), true, "v1.2 — ünïcode" } }, /* an index: its platform manifest */
        { D("3"), { D("3"), D("d"), false, "" } },
        { D("0"), { D("0"), D("e"), true, "" } }, /* the label, empty */
};

static bool entry_equal(const FactsEntry *a, const FactsEntry *b) {
        return streq_ptr(a->platform_digest, b->platform_digest) && streq_ptr(a->config_digest, b->config_digest) &&
               a->has_revision == b->has_revision && streq_ptr(a->revision, b->revision);
}

static size_t count_corrupt(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t n = 0;
        assert_non_null(d);
        while ((de = readdir(d)))
                n += startswith(de->d_name, FACTS_FILE ".corrupt-") ? 1 : 0;
        closedir(d);
        return n;
}

static void test_round_trip(void **state) {
        const char *dir = *state;
        Facts *f = NULL;
        FactsEntry got;
        assert_int_equal(facts_new(&f, dir, false), 0);
        assert_int_equal(facts_lookup(f, entries[0].target, &got), -ENOENT); /* no file yet */
        for (size_t i = 0; i < ELEMENTSOF(entries); i++)
                assert_int_equal(facts_add(f, entries[i].target, &entries[i].e), 0);
        assert_int_equal(facts_add(f, entries[0].target, &entries[0].e), 0); /* twice in one listing */
        /* not kept: not sha256, a bad config digest */
        FactsEntry bad = entries[0].e;
        assert_int_equal(facts_add(f, "sha512:00", &bad), -EINVAL);
        strcpy(bad.config_digest, "sha256:zz");
        assert_int_equal(facts_add(f, D("9"), &bad), -EINVAL);
        assert_int_equal(facts_save(f), 0);
        f = facts_free(f);

        /* what a restart finds */
        assert_int_equal(facts_new(&f, dir, true), 0);
        for (size_t i = 0; i < ELEMENTSOF(entries); i++) {
                assert_int_equal(facts_lookup(f, entries[i].target, &got), 0);
                assert_true(entry_equal(&got, &entries[i].e));
        }
        assert_int_equal(facts_lookup(f, D("9"), &got), -ENOENT);
        assert_int_equal(facts_lookup(f, "sha256:1", &got), -ENOENT);
        assert_null(facts_pop_warning(f));
        assert_int_equal(facts_save(f), -EROFS);
        f = facts_free(f);

        /* a second save merges: the old facts stay, a new one joins */
        assert_int_equal(facts_new(&f, dir, false), 0);
        FactsEntry more = { D("5"), D("f"), false, "" };
        assert_int_equal(facts_add(f, D("5"), &more), 0);
        assert_int_equal(facts_save(f), 0);
        assert_int_equal(facts_lookup(f, D("5"), &got), 0);
        assert_true(entry_equal(&got, &more));
        assert_int_equal(facts_lookup(f, entries[1].target, &got), 0);
        assert_true(entry_equal(&got, &entries[1].e));
        f = facts_free(f);
        assert_int_equal(count_corrupt(dir), 0);
}

static void write_file(const char *dir, const char *name, const void *data, size_t len) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *fp = fopen(path, "we");
        assert_non_null(fp);
        assert_int_equal(fwrite(data, 1, len, fp), len);
        fclose(fp);
}

static void test_corrupt_moved_aside(void **state) {
        const char *dir = *state;
        Facts *f = NULL;
        FactsEntry got;
        /* a good file, then one byte of a record flipped: the CRC says so */
        assert_int_equal(facts_new(&f, dir, false), 0);
        assert_int_equal(facts_add(f, entries[0].target, &entries[0].e), 0);
        assert_int_equal(facts_save(f), 0);
        f = facts_free(f);
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, FACTS_FILE);
        FILE *fp = fopen(path, "r+e");
        assert_non_null(fp);
        assert_int_equal(fseek(fp, FACTS_HEADER_SIZE + 70, SEEK_SET), 0);
        fputc('X', fp);
        fclose(fp);

        /* read-only (scan): not used, said, left where it is */
        assert_int_equal(facts_new(&f, dir, true), 0);
        assert_int_equal(facts_lookup(f, entries[0].target, &got), -ENOENT);
        const char *w = facts_pop_warning(f);
        assert_non_null(w);
        assert_non_null(strstr(w, "CRC mismatch"));
        assert_null(strchr(w, '\n'));
        assert_null(facts_pop_warning(f)); /* once */
        f = facts_free(f);
        assert_int_equal(count_corrupt(dir), 0);

        /* the agent: moved aside in one line, rebuilt by the next save */
        assert_int_equal(facts_new(&f, dir, false), 0);
        assert_int_equal(facts_lookup(f, entries[0].target, &got), -ENOENT);
        w = facts_pop_warning(f);
        assert_non_null(w);
        assert_non_null(strstr(w, "moved aside as " FACTS_FILE ".corrupt-"));
        assert_int_equal(count_corrupt(dir), 1);
        assert_int_equal(facts_add(f, entries[0].target, &entries[0].e), 0);
        assert_int_equal(facts_save(f), 0);
        assert_int_equal(facts_lookup(f, entries[0].target, &got), 0);
        assert_true(entry_equal(&got, &entries[0].e));
        f = facts_free(f);

        /* a symlink in its place is not followed */
        assert_int_equal(unlink(path), 0);
        assert_int_equal(symlink("/etc/passwd", path), 0);
        assert_int_equal(facts_new(&f, dir, false), 0);
        assert_int_equal(facts_lookup(f, entries[0].target, &got), -ENOENT);
        assert_non_null(facts_pop_warning(f));
        f = facts_free(f);
        assert_int_equal(count_corrupt(dir), 2);
        write_file(dir, FACTS_FILE, "", 0); /* empty */
        assert_int_equal(facts_new(&f, dir, false), 0);
        assert_int_equal(facts_lookup(f, entries[0].target, &got), -ENOENT);
        assert_non_null(facts_pop_warning(f));
        f = facts_free(f);
        assert_int_equal(count_corrupt(dir), 3);
}

/* A valid image with one record; the cases below break it one way each. */
static size_t good_image(uint8_t *buf, size_t size, const char *dir) {
        Facts *f = NULL;
        assert_int_equal(facts_new(&f, dir, false), 0);
        assert_int_equal(facts_add(f, entries[1].target, &entries[1].e), 0);
        assert_int_equal(facts_add(f, entries[0].target, &entries[0].e), 0);
        assert_int_equal(facts_save(f), 0);
        f = facts_free(f);
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, FACTS_FILE);
        FILE *fp = fopen(path, "re");
        assert_non_null(fp);
        size_t n = fread(buf, 1, size, fp);
        fclose(fp);
        return n;
}

static void put32(uint8_t *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t) (v >> (8 * i));
}
static void fix_crc(uint8_t *buf, size_t len) {
        put32(buf + 16, (uint32_t) crc32(0L, buf + FACTS_HEADER_SIZE, (uInt) (len - FACTS_HEADER_SIZE)));
}

static void test_check_table(void **state) {
        uint8_t good[4096], buf[4096];
        size_t len = good_image(good, sizeof good, *state);
        size_t count = 0;
        char err[256];
        assert_int_equal(facts_check(good, len, &count, err, sizeof err), 0);
        assert_int_equal(count, 2);
        FactsEntry got;
        assert_int_equal(facts_find(good, len, entries[1].target, &got), 0);
        assert_true(entry_equal(&got, &entries[1].e));
        const size_t r0 = FACTS_HEADER_SIZE, r1 = FACTS_HEADER_SIZE + FACTS_RECORD_SIZE;
        static const struct {
                const char *what;
                int op; /* 0 truncate to arg, 1 set byte at off to arg, 2 swap records */
                size_t off, arg;
                bool crc; /* recompute the CRC after breaking */
                const char *reason;
        } cases[] = {
                { "truncated header", 0, 0, 10, false, "truncated header" },
                { "truncated body", 0, 0, FACTS_HEADER_SIZE + 50, false, "does not match" },
                { "magic", 1, 0, 'X', false, "bad magic" },
                { "version", 1, 4, 2, false, "unknown version" },
                { "count", 1, 8, 3, false, "does not match" },
                { "crc", 1, r0 + 40, 0xff, false, "CRC mismatch" },
                { "order", 2, 0, 0, true, "out of order" },
                { "flags", 1, r0 + 101, 0x80, true, "unknown flags" },
                { "reserved", 1, r0 + 102, 1, true, "unknown flags" },
                { "platform flag", 1, r1 + 101, 3, true, "disagree" }, /* record 1 (the index) names its platform */
                { "revision offset", 1, r1 + 99, 0x7f, true, "out of bounds" },
                { "revision length", 1, r1 + 100, 0xff, true, "out of bounds" },
                { "revision utf-8", 1, r0 + 2 * FACTS_RECORD_SIZE, 0xc0, true, "not valid UTF-8" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                size_t n = len;
                memcpy(buf, good, len);
                if (cases[i].op == 0)
                        n = cases[i].arg;
                else if (cases[i].op == 1)
                        buf[cases[i].off] = (uint8_t) cases[i].arg;
                else {
                        memcpy(buf + r0, good + r1, FACTS_RECORD_SIZE);
                        memcpy(buf + r1, good + r0, FACTS_RECORD_SIZE);
                }
                if (cases[i].crc)
                        fix_crc(buf, n);
                err[0] = 0;
                if (facts_check(buf, n, NULL, err, sizeof err) != -EBADMSG || !strstr(err, cases[i].reason))
                        fail_msg("case %s: \"%s\", expected \"%s\"", cases[i].what, err, cases[i].reason);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_round_trip, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_corrupt_moved_aside, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_check_table, setup_dir, teardown_dir),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
