/* journal.c: an entry that cannot reach journald is an error, also when the socket is
 * missing (the library then returns 0: every entry was lost, silently). Run in a child in
 * a private mount namespace with a tmpfs over /run/systemd/journal, so the shared journald
 * is never touched; needs root (CAP_SYS_ADMIN), skipped without. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pullwatch/journal.h"
#include "pullwatch/util.h"

#define JOURNAL_DIR "/run/systemd/journal"

static Finding sample(void) {
        Finding f = {0};
        f.kind = FINDING_LATEST_TAG;
        f.severity = SEVERITY_MEDIUM;
        f.time_usec = 1764089453123456ULL;
        strcpy_bounded(f.id, sizeof f.id, "0123456789abcdef0123456789abcdef");
        strcpy_bounded(f.node, sizeof f.node, "node-a");
        strcpy_bounded(f.namespace, sizeof f.namespace, "k8s.io");
        strcpy_bounded(f.image.ref, sizeof f.image.ref, "docker.io/library/nginx:latest");
        strcpy_bounded(f.image.name, sizeof f.image.name, "docker.io/library/nginx");
        strcpy_bounded(f.image.tag, sizeof f.image.tag, "latest");
        strcpy_bounded(f.image.digest, sizeof f.image.digest,
                       "sha256:1111111111111111111111111111111111111111111111111111111111111111");
        finding_format_message(&f);
        return f;
}

/* In the child: each step's expected result, as the child's exit status (0: all as
 * expected, else the failing step). */
static int child(void) {
        Finding f = sample();
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return 100;
        if (mkdir(JOURNAL_DIR, 0755) < 0 && errno != EEXIST)
                return 101;
        if (mount("tmpfs", JOURNAL_DIR, "tmpfs", 0, "mode=0755") < 0)
                return 102;
        /* 1. no socket at all: an error, not a silent success */
        if (journal_send_finding(&f) != -ENOENT)
                return 1;
        /* 2. a socket file nobody listens on: refused */
        int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = JOURNAL_DIR "/socket" };
        if (s < 0 || bind(s, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return 103;
        close(s);
        if (journal_send_finding(&f) != -ECONNREFUSED)
                return 2;
        /* 3. journald back (a listening socket): delivered, and the entry is there */
        unlink(sa.sun_path);
        s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0 || bind(s, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return 104;
        if (journal_send_finding(&f) != 0)
                return 3;
        char buf[65536];
        ssize_t n = recv(s, buf, sizeof(buf) - 1, MSG_DONTWAIT);
        if (n <= 0)
                return 4;
        buf[n] = 0;
        if (!strstr(buf, "docker.io/library/nginx:latest"))
                return 5;
        /* 4. gone again */
        close(s);
        unlink(sa.sun_path);
        if (journal_send_finding(&f) != -ENOENT)
                return 6;
        return 0;
}

static void test_missing_socket_is_an_error(void **state) {
        if (geteuid() != 0)
                skip();
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                alarm(10);
                _exit(child());
        }
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        if (WEXITSTATUS(st) >= 100)
                skip(); /* no private mount namespace here (a container without CAP_SYS_ADMIN) */
        if (WEXITSTATUS(st) != 0)
                fail_msg("step %d failed", WEXITSTATUS(st));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_missing_socket_is_an_error),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
