/* fleet/tokens.c: bearer tokens → clusters, re-read when the file changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/stat.h>

#include "pullwatch/fleet.h"
#include "pullwatch/record.h"
#include "pullwatch/util.h"
#include "tmpdir.h"

static void write_file(const char *path, const char *text) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        assert_int_equal(rename(tmp, path), 0); /* a new inode: seen as changed at once */
}

static int lookup(Tokens *t, const char *token, char *cluster, char *err) {
        cluster[0] = err[0] = 0;
        return tokens_lookup(t, token, cluster, RECORD_CLUSTER_MAX, err, 512);
}

static void test_lookup_and_reload(void **state) {
        char path[512], cluster[RECORD_CLUSTER_MAX], err[512];
        snprintf(path, sizeof path, "%s/tokens", (char *) *state);
        write_file(path, "# fleet tokens\n\ntok-a prod-eu\r\n  tok-b\tstaging   # trailing comment\n");
        Tokens *t = NULL;
        assert_int_equal(tokens_new(&t, path, err, sizeof err), 0);
        static const struct {
                const char *token;
                int found;
                const char *cluster;
        } table[] = {
                {"tok-a", 1, "prod-eu"}, {"tok-b", 1, "staging"}, {"tok-", 0, ""},
                {"tok-aa", 0, ""},       {"", 0, ""},            {"prod-eu", 0, ""},
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                assert_int_equal(lookup(t, table[i].token, cluster, err), table[i].found);
                assert_string_equal(cluster, table[i].cluster);
                assert_string_equal(err, "");
        }
        assert_int_equal(lookup(t, NULL, cluster, err), 0);

        /* changed: tok-a goes, tok-c comes (checked at most once a second) */
        write_file(path, "tok-c dev\n");
        bool seen = false;
        for (int i = 0; i < 300 && !seen; i++) {
                seen = lookup(t, "tok-c", cluster, err) == 1;
                if (!seen)
                        usleep(10000);
        }
        assert_true(seen);
        assert_string_equal(cluster, "dev");
        assert_int_equal(lookup(t, "tok-a", cluster, err), 0);

        /* broken: said once, the last good set stays */
        write_file(path, "tok-d\n");
        bool said = false;
        for (int i = 0; i < 300 && !said; i++) {
                assert_int_equal(lookup(t, "tok-c", cluster, err), 1);
                said = err[0] != 0;
                if (!said)
                        usleep(10000);
        }
        assert_true(said);
        assert_non_null(strstr(err, "line 1: want \"TOKEN CLUSTER\""));
        assert_non_null(strstr(err, "keeping the previous tokens"));
        assert_null(strstr(err, "tok-d")); /* never a secret in a message */
        usleep(1100000);
        assert_int_equal(lookup(t, "tok-c", cluster, err), 1);
        assert_string_equal(err, ""); /* once, not every second */
        tokens_free(t);
}

static void test_bad_files(void **state) {
        static const struct {
                const char *text;
                const char *reason;
        } table[] = {
                {"tok\n", "line 1"},
                {"# ok\ntok a b\n", "line 2"},
                {"tok clu\x01ster\n", "line 1"},
        };
        char path[512], err[512];
        snprintf(path, sizeof path, "%s/tokens", (char *) *state);
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                write_file(path, table[i].text);
                Tokens *t = NULL;
                err[0] = 0;
                assert_true(tokens_new(&t, path, err, sizeof err) < 0);
                assert_null(t);
                assert_non_null(strstr(err, table[i].reason));
        }
        Tokens *t = NULL;
        snprintf(path, sizeof path, "%s/missing", (char *) *state);
        assert_int_equal(tokens_new(&t, path, err, sizeof err), -ENOENT);
        assert_non_null(strstr(err, path));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_lookup_and_reload, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_bad_files, setup_dir, teardown_dir),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
