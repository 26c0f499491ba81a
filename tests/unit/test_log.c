/* log.c: every diagnostic is one line of printable text on stderr, whatever a peer put in
 * the strings it carries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>

#include <cmocka.h>

#include "pullwatch/log.h"
#include "pullwatch/util.h"

/* Log msg at info (stderr only) and return what reached stderr. */
static void logged(const char *msg, char *out, size_t size) {
        FILE *f = tmpfile();
        assert_non_null(f);
        fflush(stderr);
        int saved = dup(STDERR_FILENO);
        assert_true(saved >= 0);
        assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
        log_set_max_level(LOG_LEVEL_INFO);
        log_full(LOG_LEVEL_INFO, NULL, 0, "name \"%s\"", msg);
        fflush(stderr);
        assert_true(dup2(saved, STDERR_FILENO) >= 0);
        close(saved);
        rewind(f);
        size_t n = fread(out, 1, size - 1, f);
        out[n] = 0;
        fclose(f);
}

/* Each case: a string from a peer, and the line it becomes. Terminal escape sequences
 * (ESC, CSI as C1 U+009B, BEL) are written as \xNN, never passed to the terminal. */
static void test_control_characters_escaped(void **state) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "nginx:1.25", "pullwatch: name \"nginx:1.25\"\n" },
                { "a\nb\rc", "pullwatch: name \"a b c\"\n" },
                { "\x1b[2J\x1b]0;pwned\x07", "pullwatch: name \"\\x1b[2J\\x1b]0;pwned\\x07\"\n" },
                { "tab\there\x7f", "pullwatch: name \"tab\\x09here\\x7f\"\n" },
                { "csi\xc2\x9b" "31m", "pullwatch: name \"csi\\xc2\\x9b31m\"\n" },
                { "caf\xc3\xa9 \xe2\x9c\x93", "pullwatch: name \"caf\xc3\xa9 \xe2\x9c\x93\"\n" }, /* UTF-8 kept */
                { "back\\slash", "pullwatch: name \"back\\slash\"\n" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char out[512];
                logged(cases[i].in, out, sizeof(out));
                if (!streq_ptr(out, cases[i].out))
                        fail_msg("case %zu: got \"%s\"", i, out);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_control_characters_escaped),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
