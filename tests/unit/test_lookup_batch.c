/* Image events' look-ups in one call (issue 12 item 3): the filter quoting of names, and
 * ctrd_images_get_many() against a real, private containerd (PW_CONTAINERD_BIN picks
 * another build, e.g. Debian 13's 1.7): the repeated `name=="…"` filters are ORed, an
 * unknown name is absent from the answer, and no name — quotes, backslashes, commas,
 * filter operators, control characters, UTF-8 — breaks the filter or widens it. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "pullwatch/containerd.h"
#include "pullwatch/util.h"

#include "live_containerd.h"

/* ---------------------------------------------------------------- quoting (pure) */

static void test_filter_quote(void **state) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "docker.io/library/nginx:1.25", "\"docker.io/library/nginx:1.25\"" },
                { "", "\"\"" },
                { "a\"b", "\"a\\\"b\"" },
                { "a\\b", "\"a\\\\b\"" },
                { "x\",name~=\".*", "\"x\\\",name~=\\\".*\"" },
                { "tab\there", "\"tab\\x09here\"" },
                { "nl\nx", "\"nl\\x0ax\"" },
                { "del\x7f", "\"del\\x7f\"" },
                { "caf\xc3\xa9", "\"caf\\xc3\\xa9\"" },
                { "a,b|c==d!=e~=f", "\"a,b|c==d!=e~=f\"" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char buf[128];
                ssize_t n = ctrd_filter_quote(cases[i].in, buf, sizeof buf);
                assert_int_equal(n, (ssize_t) strlen(cases[i].out));
                assert_string_equal(buf, cases[i].out);
        }
        /* bounded: 4 × len + 3 always fits, one byte less for the worst case does not */
        char buf[4 * 3 + 3];
        assert_int_equal(ctrd_filter_quote("\x01\x02\x03", buf, sizeof buf), 14);
        assert_int_equal(ctrd_filter_quote("\x01\x02\x03", buf, sizeof buf - 1), -ENAMETOOLONG);
        assert_int_equal(ctrd_filter_quote("abc", buf, 5), -ENAMETOOLONG);
        assert_int_equal(ctrd_filter_quote(NULL, buf, sizeof buf), -EINVAL);
}

/* ---------------------------------------------------------------- live */

/* Names the test makes with `ctr images tag` (one image's target) besides the base. */
static const char *const odd_names[] = {
        "pw.test/quote\"inside:1",
        "pw.test/back\\slash:1",
        "pw.test/comma,and|bar:1",
        "pw.test/ops==x!=y~=z:1",
        "pw.test/x\",name~=\".*",
        "pw.test/space and\ttab:1",
        "pw.test/caf\xc3\xa9:1",
};
#define BASE "docker.io/library/pwtest:1.0"

static struct {
        char dir[64], sock[128];
        pid_t pid;
        sd_event *e;
        Ctrd *ctrd;
        bool done;
        int error;
        char reason[512];
        size_t n;
        char names[32][256];
        char digests[32][PW_DIGEST_MAX];
} L;

static int live_setup(void **state) {
        if (!live_containerd_possible() || access("/usr/bin/python3", X_OK) < 0)
                return 0; /* the live tests skip */
        char cfg[256];
        live_containerd_prepare(L.dir, sizeof L.dir, "/tmp/pw-lookup-XXXXXX", L.sock, sizeof L.sock, cfg, sizeof cfg);
        L.pid = live_containerd_spawn(L.dir, cfg, SIGTERM);
        live_containerd_wait(L.sock);
        char tar[128], script[512];
        snprintf(tar, sizeof tar, "%s/img.tar", L.dir);
        snprintf(script, sizeof script, "%s/tests/unit/fixtures/make_oci_tar.py", PW_SOURCE_DIR);
        const char *mk[] = { "python3", script, tar, BASE, NULL };
        assert_int_equal(test_run_cmd(mk), 0);
        const char *imp[] = { "ctr", "-a", L.sock, "-n", "test", "images", "import", tar, NULL };
        assert_int_equal(test_run_cmd(imp), 0);
        for (size_t i = 0; i < ELEMENTSOF(odd_names); i++) {
                const char *tag[] = { "ctr", "-a", L.sock, "-n", "test", "images", "tag", BASE, odd_names[i], NULL };
                assert_int_equal(test_run_cmd(tag), 0);
        }
        return 0;
}

static int live_teardown(void **state) {
        if (L.pid > 0)
                live_containerd_stop(L.pid, L.dir);
        return 0;
}

static void on_listed(Ctrd *c, int error, const char *reason, const char *ns, const CtrdImageEntry *imgs, size_t n,
                      void *ud) {
        L.error = error;
        snprintf(L.reason, sizeof L.reason, "%s", reason ? reason : "");
        L.n = n;
        for (size_t i = 0; i < n && i < ELEMENTSOF(L.names); i++) {
                snprintf(L.names[i], sizeof L.names[i], "%s", imgs[i].name);
                snprintf(L.digests[i], sizeof L.digests[i], "%s", imgs[i].target_digest);
        }
        L.done = true;
}

/* One ctrd_images_get_many() call, run to its answer (bounded: 20 s). */
static void get_many(const char *const *names, size_t n) {
        assert_int_equal(sd_event_new(&L.e), 0);
        char err[256];
        assert_int_equal(ctrd_new(&L.ctrd, L.e, L.sock, 0, err, sizeof err), 0);
        L.done = false;
        L.n = 0;
        assert_int_equal(ctrd_images_get_many(L.ctrd, "test", names, n, on_listed, NULL), 0);
        uint64_t deadline = now_usec_monotonic() + 20 * 1000000ULL;
        while (!L.done && now_usec_monotonic() < deadline)
                assert_true(sd_event_run(L.e, 100 * 1000) >= 0);
        assert_true(L.done);
        L.ctrd = ctrd_free(L.ctrd);
        L.e = sd_event_unref(L.e);
        if (L.error < 0)
                print_message("Images.List: %s\n", L.reason);
}

static bool answered(const char *name) {
        for (size_t i = 0; i < L.n; i++)
                if (strcmp(L.names[i], name) == 0)
                        return true;
        return false;
}

/* Every name asked that exists comes back, once each, and nothing else: the filters are
 * ORed, and each odd name matched exactly itself. */
static void test_live_or_of_names(void **state) {
        if (L.pid <= 0)
                skip();
        const char *names[ELEMENTSOF(odd_names) + 2];
        size_t n = 0;
        names[n++] = BASE;
        for (size_t i = 0; i < ELEMENTSOF(odd_names); i++)
                names[n++] = odd_names[i];
        names[n++] = "pw.test/absent:1";
        get_many(names, n);
        assert_int_equal(L.error, 0);
        assert_int_equal(L.n, n - 1);
        for (size_t i = 0; i + 1 < n; i++) {
                if (!answered(names[i]))
                        fail_msg("no record for %s", names[i]);
        }
        for (size_t i = 1; i < L.n; i++)
                assert_string_equal(L.digests[i], L.digests[0]);
}

/* Names crafted to end the quoted value and add a selector, and look-alikes of existing
 * names, that do not exist themselves: nothing comes back (a widened filter would list
 * every image, a broken one would fail the call). */
static void test_live_hostile_names_match_nothing(void **state) {
        if (L.pid <= 0)
                skip();
        const char *names[] = {
                "\",name~=\".*",          /* unquoted: name=="",name~=".*" */
                "x\" || name~=\".*",
                "*",
                ".*",
                "pw.test/quote\\\"inside:1", /* the escaped spelling of an existing name */
                "pw.test/caf\\xc3\\xa9:1",
                "pw.test/space and tab:1", /* a space where the real one has a tab */
                "docker.io/library/pwtest:1.0\n",
                "docker.io/library/pwtest",
        };
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                get_many(&names[i], 1);
                if (L.error < 0 || L.n != 0)
                        fail_msg("%s: error %d, %zu records (\"%s\")", names[i], L.error, L.n, L.n ? L.names[0] : "");
        }
        get_many(names, ELEMENTSOF(names));
        assert_int_equal(L.error, 0);
        assert_int_equal(L.n, 0);
}

static void test_live_arguments(void **state) {
        if (L.pid <= 0)
                skip();
        sd_event *e = NULL;
        Ctrd *c = NULL;
        char err[256];
        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(ctrd_new(&c, e, L.sock, 0, err, sizeof err), 0);
        const char *one[] = { BASE }, *empty[] = { "" };
        const char *many[CTRD_GET_MANY_MAX + 1];
        for (size_t i = 0; i < ELEMENTSOF(many); i++)
                many[i] = BASE;
        assert_int_equal(ctrd_images_get_many(c, "test", one, 0, on_listed, NULL), -EINVAL);
        assert_int_equal(ctrd_images_get_many(c, "", one, 1, on_listed, NULL), -EINVAL);
        assert_int_equal(ctrd_images_get_many(c, "test", empty, 1, on_listed, NULL), -EINVAL);
        assert_int_equal(ctrd_images_get_many(c, "test", many, ELEMENTSOF(many), on_listed, NULL), -EINVAL);
        assert_int_equal(ctrd_pending(c), 0);
        ctrd_free(c);
        sd_event_unref(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_filter_quote),
                cmocka_unit_test(test_live_or_of_names),
                cmocka_unit_test(test_live_hostile_names_match_nothing),
                cmocka_unit_test(test_live_arguments),
        };
        return cmocka_run_group_tests(tests, live_setup, live_teardown);
}
