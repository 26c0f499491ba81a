/* Pins: JSON map reference -> digest, normalised on load; bad entries named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "pullwatch/pins.h"
#include "pullwatch/util.h"

#define H64A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define H64B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DA "sha256:" H64A
#define DB "sha256:" H64B

typedef struct LookupCase {
        const char *ref;
        const char *digest; /* NULL: no pin */
} LookupCase;

static void test_parse_and_lookup(void **state) {
        static const char json[] = "{\"nginx:1.25\": \"" DA "\", \"ghcr.io/acme/app:9f2c1ab\": \"" DB "\","
                                   " \"busybox\": \"" DB "\", \"index.docker.io/user/tool:2\": \"" DA "\"}";
        static const LookupCase cases[] = {
                { "nginx:1.25", DA },
                { "docker.io/library/nginx:1.25", DA },
                { "index.docker.io/library/nginx:1.25", DA },
                { "docker.io/library/nginx:1.25@" DB, DA }, /* the digest in the ref does not matter */
                { "nginx:1.26", NULL },
                { "nginx", NULL },
                { "ghcr.io/acme/app:9f2c1ab", DB },
                { "ghcr.io/acme/app", NULL },
                { "busybox", DB }, /* implicit latest */
                { "busybox:latest", DB },
                { "docker.io/library/busybox:latest", DB },
                { "docker.io/user/tool:2", DA },
                { "user/tool:2", DA },
                { "nginx@" DA, NULL }, /* digest-only: no tag to pin */
                { DA, NULL },          /* image id */
                { "Bad Ref", NULL },
        };
        Pins *p = NULL;
        char err[256] = "";
        int r = pins_parse(json, strlen(json), &p, err, sizeof(err));
        if (r < 0)
                fail_msg("pins_parse: %s", err);
        assert_int_equal(pins_size(p), 4);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const char *d = pins_lookup(p, cases[i].ref);
                if (!streq_ptr(d, cases[i].digest))
                        fail_msg("lookup \"%s\": got %s, expected %s", cases[i].ref, d ? d : "(none)",
                                 cases[i].digest ? cases[i].digest : "(none)");
        }
        assert_null(pins_lookup(NULL, "nginx:1.25"));
        assert_int_equal(pins_size(NULL), 0);
        pins_free(p);
}

typedef struct BadCase {
        const char *json;
        int error;
        const char *reason;
} BadCase;

static const BadCase bad[] = {
        { "", -EINVAL, "bad JSON" },
        { "[1,2]", -EINVAL, "expected a JSON object" },
        { "{\"nginx:1\": \"" DA "\",}", -EINVAL, "bad JSON" },
        { "{\"Nginx:1\": \"" DA "\"}", -EINVAL, "bad reference \"Nginx:1\": repository name must be lowercase" },
        { "{\"nginx:1\": \"sha256:abc\"}", -EINVAL, "value of \"nginx:1\" is not a digest" },
        { "{\"nginx:1\": 42}", -EINVAL, "value of \"nginx:1\" is not a digest" },
        { "{\"nginx:1\": \"" DA "\", \"nginx:1\": \"" DA "\"}", -EINVAL, "duplicate" },
        { "{\"nginx:1\": \"" DA "\", \"docker.io/library/nginx:1\": \"" DB "\"}", -EINVAL,
          "conflicting digests for \"docker.io/library/nginx:1\"" },
        { "{\"nginx@" DA "\": \"" DA "\"}", -EINVAL, "must be a name:tag without a digest" },
        { "{\"nginx:1@" DA "\": \"" DA "\"}", -EINVAL, "must be a name:tag without a digest" },
        { "{\"" DA "\": \"" DA "\"}", -EINVAL, "must be a name:tag without a digest" },
        { "{\"ng\\u0001inx:1\": \"" DA "\"}", -EINVAL, "bad reference \"ng?inx:1\": control character" },
        { "{\"\": \"" DA "\"}", -EINVAL, "bad reference \"\": empty reference" },
};

static void test_bad(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                Pins *p = (Pins *) 0x1;
                char err[256] = "";
                int r = pins_parse(bad[i].json, strlen(bad[i].json), &p, err, sizeof(err));
                if (r != bad[i].error || !strstr(err, bad[i].reason))
                        fail_msg("case %zu: got %d \"%s\", expected %d \"%s\"", i, r, err, bad[i].error,
                                 bad[i].reason);
                assert_ptr_equal(p, (Pins *) 0x1); /* untouched */
        }
}

static void test_agreeing_duplicates_merge(void **state) {
        static const char json[] = "{\"nginx:1\": \"" DA "\", \"docker.io/library/nginx:1\": \"" DA "\"}";
        Pins *p = NULL;
        assert_int_equal(pins_parse(json, strlen(json), &p, NULL, 0), 0);
        assert_int_equal(pins_size(p), 1);
        assert_string_equal(pins_lookup(p, "nginx:1"), DA);
        pins_free(p);

        assert_int_equal(pins_parse("{}", 2, &p, NULL, 0), 0);
        assert_int_equal(pins_size(p), 0);
        assert_null(pins_lookup(p, "nginx:1"));
        pins_free(p);
}

static void test_bounds(void **state) {
        Pins *p = NULL;
        char err[256];
        /* larger than the file limit: rejected before parsing */
        size_t big = PINS_FILE_MAX + 1;
        char *buf = malloc(big);
        assert_non_null(buf);
        memset(buf, ' ', big);
        buf[0] = '{';
        buf[big - 1] = '}';
        assert_int_equal(pins_parse(buf, big, &p, err, sizeof(err)), -E2BIG);
        assert_non_null(strstr(err, "exceeds the limit"));

        /* too many entries, within the byte limit (counted before the values are checked) */
        size_t off = 0;
        buf[off++] = '{';
        for (unsigned i = 0; i <= PINS_ENTRIES_MAX; i++)
                off += (size_t) snprintf(buf + off, big - off, "%s\"%u\":0", i ? "," : "", i);
        buf[off++] = '}';
        assert_true(off <= PINS_FILE_MAX);
        assert_int_equal(pins_parse(buf, off, &p, err, sizeof(err)), -E2BIG);
        assert_non_null(strstr(err, "entries exceeds the limit"));
        free(buf);
}

static void test_load(void **state) {
        char path[] = "/tmp/pullwatch-test-pins-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        static const char json[] = "{\"nginx:1.25\": \"" DA "\"}";
        assert_int_equal(write(fd, json, strlen(json)), (ssize_t) strlen(json));
        close(fd);

        Pins *p = NULL;
        char err[512];
        assert_int_equal(pins_load(path, &p, err, sizeof(err)), 0);
        assert_string_equal(pins_lookup(p, "docker.io/library/nginx:1.25"), DA);
        pins_free(p);

        fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "{\"NGINX\": 1}", 12), 12);
        close(fd);
        assert_int_equal(pins_load(path, &p, err, sizeof(err)), -EINVAL);
        assert_true(startswith(err, path));
        assert_non_null(strstr(err, "bad reference \"NGINX\""));
        unlink(path);

        assert_int_equal(pins_load(path, &p, err, sizeof(err)), -ENOENT);
        assert_true(startswith(err, path));
        assert_int_equal(pins_load("/tmp", &p, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "not a regular file"));

        /* a FIFO: refused at once (the open waited for a writer: a reload froze the event
         * loop for 23 minutes); alarm() turns a hang into a failed test */
        assert_int_equal(mkfifo(path, 0600), 0);
        alarm(10);
        int r = pins_load(path, &p, err, sizeof(err));
        alarm(0);
        assert_int_equal(r, -EINVAL);
        assert_true(startswith(err, path));
        assert_non_null(strstr(err, "not a regular file"));
        unlink(path);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_and_lookup),
                cmocka_unit_test(test_bad),
                cmocka_unit_test(test_agreeing_duplicates_merge),
                cmocka_unit_test(test_bounds),
                cmocka_unit_test(test_load),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
