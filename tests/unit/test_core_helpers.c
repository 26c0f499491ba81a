/* core helpers: the capped buffer, the UTC formatter, the atomic file replace, strict UTF-8. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "pullwatch/dynbuf.h"
#include "pullwatch/fileio.h"
#include "pullwatch/finding.h"
#include "pullwatch/log.h"
#include "pullwatch/timefmt.h"
#include "pullwatch/utf8.h"
#include "pullwatch/util.h"
#include "tmpdir.h"

static void test_dynbuf(void **state) {
        /* ship.c's buffer failed any printf past 256 bytes: the cap is the only limit */
        char big[1000];
        memset(big, 'x', sizeof big - 1);
        big[sizeof big - 1] = 0;
        static const struct {
                size_t max, add;
                int want;
        } cases[] = {
                {2000, 999, 0}, {999, 999, 0}, {998, 999, -E2BIG}, {0, 0, 0}, {0, 1, -E2BIG},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(dynbuf_free) DynBuf b = DYNBUF_INIT(cases[i].max);
                int r = dynbuf_printf(&b, "%.*s", (int) cases[i].add, big);
                if (r != cases[i].want)
                        fail_msg("case %zu: %d want %d", i, r, cases[i].want);
                assert_int_equal(b.len, r < 0 ? 0 : cases[i].add);
                if (b.data)
                        assert_int_equal(strlen(b.data), b.len);
        }

        _cleanup_(dynbuf_free) DynBuf b = DYNBUF_INIT(10);
        assert_int_equal(dynbuf_puts(&b, "0123"), 0);
        assert_int_equal(dynbuf_add(&b, "456789", 6), 0);
        assert_int_equal(dynbuf_add(&b, "x", 1), -E2BIG); /* full: nothing added */
        assert_string_equal(b.data, "0123456789");
        dynbuf_reset(&b);
        assert_int_equal(dynbuf_printf(&b, "%d-%s", 42, "a"), 0);
        _cleanup_free_ char *s = NULL;
        size_t len = 0;
        assert_int_equal(dynbuf_take(&b, &s, &len), 0);
        assert_string_equal(s, "42-a");
        assert_int_equal(len, 4);
        assert_null(b.data);
        assert_int_equal(b.max, 10);
}

static void test_timefmt(void **state) {
        static const struct {
                uint64_t usec;
                TimeFormat format;
                size_t size;
                const char *want;
                int error;
        } cases[] = {
                {1764089453123456ULL, TIMEFMT_RFC3339_USEC, TIMEFMT_MAX, "2025-11-25T16:50:53.123456Z", 0},
                {1764089453000001ULL, TIMEFMT_RFC3339_USEC, TIMEFMT_MAX, "2025-11-25T16:50:53.000001Z", 0},
                {1764089453999999ULL, TIMEFMT_RFC3339_SEC, TIMEFMT_MAX, "2025-11-25T16:50:53Z", 0},
                {1764089453999999ULL, TIMEFMT_COMPACT, TIMEFMT_MAX, "20251125T165053Z", 0},
                {0, TIMEFMT_RFC3339_USEC, TIMEFMT_MAX, "1970-01-01T00:00:00.000000Z", 0},
                {0, TIMEFMT_RFC3339_USEC, 27, NULL, -ENOBUFS}, /* one short of the NUL */
                {0, TIMEFMT_RFC3339_SEC, 10, NULL, -ENOBUFS},
                {0, (TimeFormat) 7, TIMEFMT_MAX, NULL, -EINVAL},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char buf[TIMEFMT_MAX];
                int r = timefmt_utc(cases[i].usec, cases[i].format, buf, cases[i].size);
                if (r != cases[i].error)
                        fail_msg("case %zu: %d want %d", i, r, cases[i].error);
                if (cases[i].want)
                        assert_string_equal(buf, cases[i].want);
        }
}

static int write_then(int fd, void *userdata) {
        int *fail_with = userdata;
        int r = write_all(fd, "new", 3);
        return *fail_with ? *fail_with : r;
}

static void read_file(int dfd, const char *name, char *buf, size_t size) {
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        ssize_t n = read(fd, buf, size - 1);
        assert_true(n >= 0);
        buf[n] = 0;
}

static void test_file_replace(void **state) {
        const char *dir = *state;
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(dfd >= 0);
        char buf[64];

        assert_int_equal(file_replace_data_at(dfd, "f", 0640, FILE_REPLACE_SYNC, "old", 3), 0);
        read_file(dfd, "f", buf, sizeof buf);
        assert_string_equal(buf, "old");
        struct stat st;
        assert_int_equal(fstatat(dfd, "f", &st, 0), 0);
        assert_int_equal(st.st_mode & 0777, 0640);

        /* a writer that fails: the old file stays whole, the temporary file is gone */
        int fail_with = -ENOSPC;
        assert_int_equal(file_replace_at(dfd, "f", 0640, FILE_REPLACE_SYNC, write_then, &fail_with), -ENOSPC);
        read_file(dfd, "f", buf, sizeof buf);
        assert_string_equal(buf, "old");
        assert_int_equal(faccessat(dfd, "f.tmp", F_OK, AT_SYMLINK_NOFOLLOW), -1);

        /* a symlink planted at the temporary name is refused, its target untouched */
        assert_int_equal(file_replace_data_at(dfd, "target", 0600, 0, "keep", 4), 0);
        assert_int_equal(symlinkat("target", dfd, "f.tmp"), 0);
        assert_int_equal(file_replace_data_at(dfd, "f", 0640, 0, "new", 3), -ELOOP);
        read_file(dfd, "target", buf, sizeof buf);
        assert_string_equal(buf, "keep");
        assert_int_equal(unlinkat(dfd, "f.tmp", 0), 0);

        fail_with = 0;
        assert_int_equal(file_replace_at(dfd, "f", 0600, 0, write_then, &fail_with), 0);
        read_file(dfd, "f", buf, sizeof buf);
        assert_string_equal(buf, "new");

        char path[512];
        snprintf(path, sizeof path, "%s/by-path", dir);
        assert_int_equal(file_replace_data(path, 0644, FILE_REPLACE_SYNC, "p", 1), 0);
        read_file(dfd, "by-path", buf, sizeof buf);
        assert_string_equal(buf, "p");
        snprintf(path, sizeof path, "%s/missing/x", dir);
        assert_int_equal(file_replace_data(path, 0644, 0, "p", 1), -ENOENT);
}

static void test_compliant(void **state) {
        static const struct {
                unsigned mask;
                bool want;
        } cases[] = {
                {0, true},
                {FINDING_KIND_BIT(FINDING_PULL), true}, /* a record, not a finding */
                {FINDING_KIND_BIT(FINDING_LATEST_TAG), false},
                {FINDING_KIND_BIT(FINDING_PULL) | FINDING_KIND_BIT(FINDING_UNTRACEABLE), false},
                {FINDING_KIND_BIT(FINDING_TAG_MOVED), false},
                {FINDING_KIND_BIT(FINDING_DIGEST_MISMATCH) | FINDING_KIND_BIT(FINDING_REVISION_MISMATCH), false},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                if (finding_kinds_compliant(cases[i].mask) != cases[i].want)
                        fail_msg("case %zu: want %d", i, cases[i].want);
}

/* %m names the error given to log_full (errno is set from it), and errno given as
 * positive or negative is the same error. */
static void test_log_errno(void **state) {
        const char *dir = *state;
        char path[512], buf[512] = "";
        snprintf(path, sizeof path, "%s/stderr", dir);
        fflush(stderr);
        int saved = dup(STDERR_FILENO), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(saved >= 0 && fd >= 0);
        assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
        close(fd);
        setenv("JOURNAL_STREAM", "0:0", 1); /* the journald copy is not what is tested */
        errno = 0;
        assert_int_equal(log_full(LOG_LEVEL_INFO, NULL, -ENOENT, "a: %m"), -ENOENT);
        assert_int_equal(log_full(LOG_LEVEL_INFO, NULL, EACCES, "b: %m"), -EACCES);
        fflush(stderr);
        assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
        close(saved);
        _cleanup_close_ int in = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(read(in, buf, sizeof buf - 1) > 0);
        assert_non_null(strstr(buf, "pullwatch: a: No such file or directory\n"));
        assert_non_null(strstr(buf, "pullwatch: b: Permission denied\n"));
}

/* RFC 3629's edges: what jansson refuses never gets into the ledger or the facts file. */
static void test_utf8(void **state) {
        (void) state;
        static const struct {
                const char *s;
                size_t len; /* 0: strlen */
                bool ok;
        } cases[] = {
                {"", 0, true},
                {"plain ascii", 0, true},
                {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\xb3", 0, true},
                {"\xf4\x8f\xbf\xbf", 0, true},          /* U+10FFFF */
                {"\xf4\x90\x80\x80", 0, false},         /* past U+10FFFF */
                {"\xc0\xaf", 0, false},                 /* overlong '/' */
                {"\xe0\x80\xaf", 0, false},             /* overlong, 3 bytes */
                {"\xed\xa0\x80", 0, false},             /* a surrogate */
                {"\xc3", 0, false},                     /* cut short */
                {"\xe2\x82", 0, false},
                {"\x80", 0, false},                     /* a lone continuation */
                {"\xff", 0, false},
                {"a\0b", 3, false},                     /* a NUL inside */
                {"\xc3\xa9", 1, false},                 /* the length cuts a sequence */
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
                assert_int_equal(utf8_valid_n(cases[i].s, cases[i].len ? cases[i].len : strlen(cases[i].s)),
                                 cases[i].ok);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_dynbuf),
                cmocka_unit_test(test_timefmt),
                cmocka_unit_test(test_compliant),
                cmocka_unit_test(test_utf8),
                cmocka_unit_test_setup_teardown(test_log_errno, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_file_replace, setup_dir, teardown_dir),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
