/* util.h: open_regular_file(), the one open of every file the agent reads whole; the
 * number formatters that replace snprintf on the event path. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "pullwatch/util.h"

#include "tmpdir.h"

/* Each case is a kind of file and what opening it gives. A FIFO returns at once, refused
 * (a blocking open waited for a writer: 23 minutes of frozen event loop on a pins reload);
 * alarm() turns a blocking open into a failed test instead of a hang. */
static void test_open_regular_file(void **state) {
        const char *dir = *state;
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(dfd >= 0);
        assert_int_equal(mkfifoat(dfd, "fifo", 0600), 0);
        assert_int_equal(mkdirat(dfd, "dir", 0700), 0);
        _cleanup_close_ int w = openat(dfd, "file", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(w >= 0);
        assert_int_equal(write(w, "data", 4), 4);
        assert_int_equal(symlinkat("file", dfd, "link"), 0);
        assert_int_equal(symlinkat("fifo", dfd, "fifo-link"), 0);

        static const struct {
                const char *path;
                int extra_flags;
                int expect; /* 0: opened */
        } cases[] = {
                { "file", 0, 0 },
                { "link", 0, 0 }, /* a symlink is followed unless asked not to */
                { "link", O_NOFOLLOW, -ELOOP },
                { "fifo", 0, -EINVAL },
                { "fifo-link", 0, -EINVAL },
                { "dir", 0, -EINVAL },
                { "missing", 0, -ENOENT },
                { "/dev/null", 0, -EINVAL },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                alarm(10);
                int fd = open_regular_file(dfd, cases[i].path, cases[i].extra_flags);
                alarm(0);
                if (cases[i].expect == 0) {
                        if (fd < 0)
                                fail_msg("case %zu (%s): %d", i, cases[i].path, fd);
                        _cleanup_free_ char *buf = NULL;
                        size_t n = 0;
                        assert_int_equal(read_fd_bounded(fd, 16, &buf, &n), 0);
                        assert_int_equal(n, 4);
                        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
                        close(fd);
                } else if (fd != cases[i].expect)
                        fail_msg("case %zu (%s): %d, expected %d", i, cases[i].path, fd, cases[i].expect);
        }
}

/* u64_to_dec() and u64_to_hex16() write exactly what "%" PRIu64 and "%016" PRIx64 did. */
static void test_u64_formatters(void **state) {
        static const uint64_t cases[] = {
                0, 1, 9, 10, 15, 16, 99, 100, 255, 256, 4095, 1000000, 1796058363475448ULL,
                0x0123456789abcdefULL, 0xfedcba9876543210ULL, (uint64_t) INT64_MAX, (uint64_t) INT64_MAX + 1,
                UINT64_MAX - 1, UINT64_MAX,
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char want[32], got[U64_DEC_MAX + 8];
                memset(got, 'X', sizeof got);
                int n = snprintf(want, sizeof want, "%" PRIu64, cases[i]);
                assert_int_equal(u64_to_dec(got, cases[i]), (size_t) n);
                assert_string_equal(got, want);
                memset(got, 'X', sizeof got);
                snprintf(want, sizeof want, "%016" PRIx64, cases[i]);
                u64_to_hex16(got, cases[i]);
                assert_int_equal(got[16], 'X'); /* not terminated: the caller appends */
                got[16] = 0;
                assert_string_equal(got, want);
        }
}

/* sbuf: what snprintf() makes of the same pieces, cut at the same byte, at every size. */
static void test_sbuf_as_snprintf(void **state) {
        for (size_t size = 1; size <= 40; size++) {
                char got[48], want[48];
                SBuf b = sbuf_init(got, size);
                sbuf_add(&b, "node-a");
                sbuf_add_mem(&b, "|", 1);
                sbuf_add(&b, NULL);
                sbuf_add(&b, "");
                sbuf_add_mem(&b, "xyz", 2);
                sbuf_add_u64(&b, 18446744073709551615ULL);
                sbuf_add_u64(&b, 0);
                snprintf(want, size, "%s|%s%s%.2s%" PRIu64 "%" PRIu64, "node-a", (char *) NULL, "", "xyz",
                         (uint64_t) 18446744073709551615ULL, (uint64_t) 0);
                assert_string_equal(got, want);
                assert_int_equal(b.len, strlen(want));
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_u64_formatters),
                cmocka_unit_test(test_sbuf_as_snprintf),
                cmocka_unit_test_setup_teardown(test_open_regular_file, setup_dir, teardown_dir),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
