/* journal.c: the native protocol on one connected socket. An entry that cannot reach
 * journald is an error, also when the socket is missing (sd_journal_sendv() returns 0
 * then: every entry was lost, silently); a journald that restarts (a new socket at the
 * same path) is reconnected to; an entry too big for a datagram goes as a sealed memfd;
 * a value's newline never starts a field of its own. The default path is tested in a
 * child in a private mount namespace with a tmpfs over /run/systemd/journal, so the
 * shared journald is never touched (needs root, CAP_SYS_ADMIN; skipped without); the
 * rest on a socket in a temporary directory. */
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <endian.h>
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
        Journal *j = NULL;
        if (journal_new(&j, NULL, 0) < 0)
                return 105;
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return 100;
        if (mkdir(JOURNAL_DIR, 0755) < 0 && errno != EEXIST)
                return 101;
        if (mount("tmpfs", JOURNAL_DIR, "tmpfs", 0, "mode=0755") < 0)
                return 102;
        /* 1. no socket at all: an error, not a silent success */
        if (journal_send_finding(j, &f) != -ENOENT)
                return 1;
        /* 2. a socket file nobody listens on: refused */
        int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = JOURNAL_DIR "/socket" };
        if (s < 0 || bind(s, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return 103;
        close(s);
        if (journal_send_finding(j, &f) != -ECONNREFUSED)
                return 2;
        /* 3. journald back (a listening socket): delivered, and the entry is there */
        unlink(sa.sun_path);
        s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0 || bind(s, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return 104;
        if (journal_send_finding(j, &f) != 0)
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
        if (journal_send_finding(j, &f) != -ENOENT)
                return 6;
        journal_free(j);
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

/* ---- on a socket of our own: the bytes on the wire, restarts, oversize entries */

typedef struct Dir {
        char path[64], sock[96];
} Dir;

static void dir_make(Dir *d) {
        strcpy_bounded(d->path, sizeof d->path, "/tmp/pw-journal-XXXXXX");
        assert_non_null(mkdtemp(d->path));
        snprintf(d->sock, sizeof d->sock, "%s/socket", d->path);
}

static void dir_remove(Dir *d) {
        unlink(d->sock);
        rmdir(d->path);
}

/* a journald stand-in: a datagram socket bound at path */
static int listen_at(const char *path) {
        int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        assert_true(s >= 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        strcpy_bounded(sa.sun_path, sizeof sa.sun_path, path);
        assert_int_equal(bind(s, (struct sockaddr *) &sa, sizeof sa), 0);
        return s;
}

/* One entry as journald gets it: the datagram's bytes, or those of the memfd it
 * carries (which must be sealed). *ret_memfd says which. -1: nothing there. */
static ssize_t recv_entry(int s, char *buf, size_t size, bool *ret_memfd) {
        union {
                struct cmsghdr h;
                uint8_t b[CMSG_SPACE(sizeof(int))];
        } control;
        memset(&control, 0, sizeof control);
        struct iovec iov = {buf, size};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof control};
        ssize_t n = recvmsg(s, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0)
                return -1;
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        *ret_memfd = c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS;
        if (!*ret_memfd)
                return n;
        int fd;
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
        assert_int_equal(n, 0); /* the descriptor alone */
        int seals = fcntl(fd, F_GET_SEALS);
        assert_int_equal(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL),
                         F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
        n = pread(fd, buf, size, 0);
        close(fd);
        return n;
}

typedef struct Field {
        const char *name, *value;
        size_t name_len, value_len;
} Field;

/* docs/JOURNAL_NATIVE_PROTOCOL.md: NAME=value\n, or NAME\n + 64-bit LE length + bytes + \n.
 * The number of fields, or -1 if the bytes are not that. */
static int parse_native(const char *p, size_t n, Field *out, size_t max) {
        size_t i = 0, k = 0;
        while (i < n) {
                if (k >= max)
                        return -1;
                size_t s = i;
                while (i < n && p[i] != '=' && p[i] != '\n')
                        i++;
                if (i >= n || i == s)
                        return -1;
                out[k] = (Field){.name = p + s, .name_len = i - s};
                if (p[i] == '=') {
                        const char *e = memchr(p + i + 1, '\n', n - i - 1);
                        if (!e)
                                return -1;
                        out[k].value = p + i + 1;
                        out[k].value_len = (size_t) (e - (p + i + 1));
                        i = (size_t) (e - p) + 1;
                } else {
                        uint64_t l;
                        if (n - i - 1 < sizeof l)
                                return -1;
                        memcpy(&l, p + i + 1, sizeof l);
                        l = le64toh(l);
                        i += 1 + sizeof l;
                        if (l >= n - i || p[i + l] != '\n')
                                return -1;
                        out[k].value = p + i;
                        out[k].value_len = l;
                        i += l + 1;
                }
                k++;
        }
        return (int) k;
}

/* The entry's fields, as parsed from the wire, are exactly finding_to_journal()'s. */
static void assert_entry_is(const char *buf, size_t n, const Finding *f) {
        JournalFields jf;
        assert_int_equal(finding_to_journal(f, &jf), 0);
        Field got[PW_JOURNAL_FIELDS_MAX + 1];
        int k = parse_native(buf, n, got, ELEMENTSOF(got));
        assert_int_equal(k, (int) jf.n);
        for (size_t i = 0; i < jf.n; i++) {
                const char *want = jf.iov[i].iov_base;
                size_t len = got[i].name_len + 1 + got[i].value_len;
                assert_int_equal(len, jf.iov[i].iov_len);
                assert_memory_equal(got[i].name, want, got[i].name_len);
                assert_int_equal(want[got[i].name_len], '=');
                assert_memory_equal(got[i].value, want + got[i].name_len + 1, got[i].value_len);
        }
}

/* A pod name, a label: attacker-controlled. Its newline stays inside its value (binary
 * form): "PRIORITY=0" in it is no field of the entry. */
static void test_wire_format_and_newlines(void **state) {
        Dir d;
        dir_make(&d);
        int s = listen_at(d.sock);
        Journal *j = NULL;
        assert_int_equal(journal_new(&j, d.sock, 0), 0);

        Finding f = sample();
        strcpy_bounded(f.workload.pod, sizeof f.workload.pod, "web\nPRIORITY=0\nMESSAGE_ID=00000000000000000000000000000000");
        strcpy_bounded(f.workload.namespace, sizeof f.workload.namespace, "ns=with=equals");
        assert_int_equal(journal_send_finding(j, &f), 0);

        char buf[65536];
        bool memfd = true;
        ssize_t n = recv_entry(s, buf, sizeof buf, &memfd);
        assert_true(n > 0);
        assert_false(memfd);
        assert_entry_is(buf, (size_t) n, &f);
        Field got[PW_JOURNAL_FIELDS_MAX + 1];
        int k = parse_native(buf, (size_t) n, got, ELEMENTSOF(got));
        int priorities = 0;
        for (int i = 0; i < k; i++)
                if (got[i].name_len == 8 && memcmp(got[i].name, "PRIORITY", 8) == 0) {
                        priorities++;
                        assert_int_equal(got[i].value_len, 1);
                        assert_int_equal(got[i].value[0], '0' + finding_priority(&f));
                }
        assert_int_equal(priorities, 1);

        /* and the next entry on the same socket */
        assert_int_equal(journal_send_finding(j, &f), 0);
        n = recv_entry(s, buf, sizeof buf, &memfd);
        assert_true(n > 0);
        assert_entry_is(buf, (size_t) n, &f);

        journal_free(j);
        close(s);
        dir_remove(&d);
}

/* What sd_journal_sendv() refuses, refused the same. */
static void test_invalid_fields(void **state) {
        Journal *j = NULL;
        assert_int_equal(journal_new(&j, "/nonexistent/socket", 0), 0);
        static const struct {
                const char *field;
        } cases[] = {
                {"NOEQUALS"},  /* no '=' */
                {"=value"},    /* no name */
                {"A\nB=value"} /* a newline in the name */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct iovec iov = {(void *) cases[i].field, strlen(cases[i].field)};
                assert_int_equal(journal_sendv(j, &iov, 1), -EINVAL);
        }
        journal_free(j);
        char longpath[200];
        memset(longpath, 'a', sizeof longpath - 1);
        longpath[sizeof longpath - 1] = 0;
        assert_int_equal(journal_new(&j, longpath, 0), -ENAMETOOLONG);
}

/* journald restarts: its socket file is a new socket. The connected socket is refused;
 * the entry goes to the new one, and so do the following ones. */
static void test_restart_reconnects(void **state) {
        Dir d;
        dir_make(&d);
        Journal *j = NULL;
        assert_int_equal(journal_new(&j, d.sock, 0), 0);
        Finding f = sample();
        char buf[65536];
        bool memfd;

        int a = listen_at(d.sock);
        assert_int_equal(journal_send_finding(j, &f), 0);
        assert_true(recv_entry(a, buf, sizeof buf, &memfd) > 0);
        close(a);
        unlink(d.sock);
        int b = listen_at(d.sock);
        assert_int_equal(journal_send_finding(j, &f), 0);
        ssize_t n = recv_entry(b, buf, sizeof buf, &memfd);
        assert_true(n > 0);
        assert_entry_is(buf, (size_t) n, &f);
        assert_int_equal(journal_send_finding(j, &f), 0);
        assert_true(recv_entry(b, buf, sizeof buf, &memfd) > 0);

        /* gone, its socket file left behind: refused, and again (not a silent loss) */
        close(b);
        assert_int_equal(journal_send_finding(j, &f), -ECONNREFUSED);
        assert_int_equal(journal_send_finding(j, &f), -ECONNREFUSED);
        /* gone with its socket file: missing */
        unlink(d.sock);
        assert_int_equal(journal_send_finding(j, &f), -ENOENT);
        /* back */
        int c = listen_at(d.sock);
        assert_int_equal(journal_send_finding(j, &f), 0);
        assert_true(recv_entry(c, buf, sizeof buf, &memfd) > 0);
        close(c);

        journal_free(j);
        dir_remove(&d);
}

/* An entry bigger than a datagram may be (the send buffer shrunk to the kernel's
 * minimum, a few KiB) reaches journald whole, as a sealed memfd. */
static void test_oversize_goes_as_memfd(void **state) {
        Dir d;
        dir_make(&d);
        int s = listen_at(d.sock);
        Journal *j = NULL;
        assert_int_equal(journal_new(&j, d.sock, 1), 0);

        static char big[32768];
        memcpy(big, "MESSAGE=", 8);
        for (size_t i = 8; i < sizeof big; i++)
                big[i] = (char) ('a' + i % 26);
        big[100] = '\n'; /* and binary form inside the memfd */
        struct iovec iov[2] = {{big, sizeof big}, {(void *) "PRIORITY=6", 10}};
        assert_int_equal(journal_sendv(j, iov, 2), 0);

        static char buf[65536];
        bool memfd = false;
        ssize_t n = recv_entry(s, buf, sizeof buf, &memfd);
        assert_true(memfd);
        Field got[4];
        assert_int_equal(parse_native(buf, (size_t) n, got, ELEMENTSOF(got)), 2);
        assert_int_equal(got[0].value_len, sizeof big - 8);
        assert_memory_equal(got[0].value, big + 8, sizeof big - 8);
        assert_int_equal(got[1].value_len, 1);

        /* a small one still goes as a datagram */
        assert_int_equal(journal_sendv(j, iov + 1, 1), 0);
        n = recv_entry(s, buf, sizeof buf, &memfd);
        assert_false(memfd);
        assert_int_equal(n, 11);
        assert_memory_equal(buf, "PRIORITY=6\n", 11);

        journal_free(j);
        close(s);
        dir_remove(&d);
}

/* ---- with a loop: the backlog ---- */

typedef struct Lost {
        int error;
        uint64_t n;
} Lost;

static void on_lost(int error, uint64_t n, void *userdata) {
        Lost *l = userdata;
        l->error = error;
        l->n += n;
}

/* "MESSAGE=entry N" */
static void send_numbered(Journal *j, unsigned i) {
        char m[32];
        int n = snprintf(m, sizeof m, "MESSAGE=entry %u", i);
        struct iovec iov = {m, (size_t) n};
        assert_int_equal(journal_sendv(j, &iov, 1), 0);
}

/* The next entry must be number *next: read and checked (1), or nothing there (0). */
static int recv_numbered(int s, unsigned *next) {
        char buf[256], want[32];
        bool memfd;
        ssize_t n = recv_entry(s, buf, sizeof buf, &memfd);
        if (n < 0)
                return 0;
        int w = snprintf(want, sizeof want, "MESSAGE=entry %u\n", *next);
        assert_int_equal(n, w);
        assert_memory_equal(buf, want, (size_t) w);
        (*next)++;
        return 1;
}

/* journald reads until entry `until` came, in order (the loop sends the backlog as
 * room appears), within 10 s. */
static void recv_numbered_until(int s, sd_event *e, unsigned *next, unsigned until) {
        uint64_t deadline = now_usec_monotonic() + 10 * 1000000ULL;
        while (*next < until && now_usec_monotonic() < deadline) {
                while (recv_numbered(s, next))
                        ;
                assert_true(sd_event_run(e, 100 * 1000) >= 0);
        }
        assert_int_equal(*next, until);
}

#define BURST 500U

/* journald reads slower than a burst is made: the entries its socket cannot take wait, the
 * sender never does; they reach journald all, in order, as it reads, from the loop. */
static void test_backlog_never_waits_never_drops(void **state) {
        Dir d;
        dir_make(&d);
        int s = listen_at(d.sock); /* read only later: its queue fills after a few datagrams */
        sd_event *e = NULL;
        assert_int_equal(sd_event_new(&e), 0);
        Journal *j = NULL;
        Lost lost = {0};
        assert_int_equal(journal_new(&j, d.sock, 0), 0);
        assert_int_equal(journal_attach_event(j, e, on_lost, &lost), 0);
        assert_int_equal(journal_attach_event(j, e, on_lost, &lost), -EINVAL);

        for (unsigned i = 0; i < BURST; i++)
                send_numbered(j, i);
        JournalStats st;
        journal_get_stats(j, &st);
        assert_true(st.backlog_entries > 0);
        assert_int_equal(st.backlogged, st.backlog_entries);
        assert_true(st.backlog_entries < BURST); /* the first ones went at once */

        /* journald reads; the loop sends the rest as room appears */
        unsigned next = 0;
        recv_numbered_until(s, e, &next, BURST);
        journal_get_stats(j, &st);
        assert_int_equal(st.backlog_entries, 0);
        assert_int_equal(st.backlog_bytes, 0);
        assert_int_equal(st.lost, 0);
        assert_int_equal(lost.n, 0);

        /* an empty backlog: an entry goes at once again */
        send_numbered(j, next);
        assert_int_equal(recv_numbered(s, &next), 1);

        journal_free(j);
        sd_event_unref(e);
        close(s);
        dir_remove(&d);
}

/* At exit the backlog is sent, waiting for journald (a reader in a child here). */
static void test_backlog_flushed_at_exit(void **state) {
        Dir d;
        dir_make(&d);
        int s = listen_at(d.sock);
        sd_event *e = NULL;
        assert_int_equal(sd_event_new(&e), 0);
        Journal *j = NULL;
        assert_int_equal(journal_new(&j, d.sock, 0), 0);
        assert_int_equal(journal_attach_event(j, e, NULL, NULL), 0);
        for (unsigned i = 0; i < BURST; i++)
                send_numbered(j, i);
        JournalStats st;
        journal_get_stats(j, &st);
        assert_true(st.backlog_entries > 0);

        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                alarm(10);
                unsigned next = 0;
                while (next < BURST) {
                        if (!recv_numbered(s, &next)) {
                                struct pollfd p = {.fd = s, .events = POLLIN};
                                (void) poll(&p, 1, 1000);
                        }
                }
                _exit(0);
        }
        uint64_t unsent = 1;
        assert_int_equal(journal_flush(j, 10000, &unsent), 0);
        assert_int_equal(unsent, 0);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);

        journal_free(j);
        sd_event_unref(e);
        close(s);
        dir_remove(&d);
}

/* journald gone while entries wait (its socket file removed, no new one): they are lost,
 * and said so, each counted; a flush that times out drops the rest and says how many. */
static void test_backlog_lost_is_told(void **state) {
        Dir d;
        dir_make(&d);
        int s = listen_at(d.sock);
        sd_event *e = NULL;
        assert_int_equal(sd_event_new(&e), 0);
        Journal *j = NULL;
        Lost lost = {0};
        assert_int_equal(journal_new(&j, d.sock, 0), 0);
        assert_int_equal(journal_attach_event(j, e, on_lost, &lost), 0);

        for (unsigned i = 0; i < 50; i++)
                send_numbered(j, i);
        JournalStats st;
        journal_get_stats(j, &st);
        assert_true(st.backlog_entries > 0);
        /* journald never reads: a bounded flush gives up */
        uint64_t unsent = 0, waiting = st.backlog_entries;
        assert_int_equal(journal_flush(j, 50, &unsent), -ETIME);
        assert_int_equal(unsent, waiting);
        journal_get_stats(j, &st);
        assert_int_equal(st.backlog_entries, 0);
        assert_int_equal(st.lost, waiting);

        /* a new backlog, then journald goes away with its socket */
        for (unsigned i = 0; i < 50; i++)
                send_numbered(j, i);
        journal_get_stats(j, &st);
        waiting = st.backlog_entries;
        assert_true(waiting > 0);
        close(s);
        unlink(d.sock);
        for (int k = 0; k < 10 && st.backlog_entries > 0; k++) {
                assert_true(sd_event_run(e, 100 * 1000) >= 0);
                journal_get_stats(j, &st);
        }
        assert_int_equal(st.backlog_entries, 0);
        assert_int_equal(lost.n, waiting);
        assert_true(lost.error == -ENOENT || lost.error == -ECONNREFUSED);

        journal_free(j);
        sd_event_unref(e);
        rmdir(d.path);
}

/* A held journal (a listing being judged) sends nothing, not even what the socket has room
 * for, and runs no loop source for it; released, it sends everything in order. */
static void test_hold_sends_after_release(void **state) {
        Dir d;
        dir_make(&d);
        int s = listen_at(d.sock);
        sd_event *e = NULL;
        assert_int_equal(sd_event_new(&e), 0);
        Journal *j = NULL;
        assert_int_equal(journal_new(&j, d.sock, 0), 0);
        journal_hold(j, true); /* no loop yet: a no-op, sent at once */
        unsigned next = 0;
        send_numbered(j, 0);
        assert_int_equal(recv_numbered(s, &next), 1);
        assert_int_equal(journal_attach_event(j, e, NULL, NULL), 0);

        journal_hold(j, true);
        for (unsigned i = 1; i <= 5; i++)
                send_numbered(j, i);
        JournalStats st;
        journal_get_stats(j, &st);
        assert_int_equal(st.backlog_entries, 5);
        assert_int_equal(recv_numbered(s, &next), 0); /* journald's socket had room: still nothing */
        assert_true(sd_event_run(e, 0) >= 0);
        assert_int_equal(recv_numbered(s, &next), 0);

        journal_hold(j, false);
        for (unsigned i = 6; i < BURST; i++)
                send_numbered(j, i); /* behind the released backlog, in order */
        recv_numbered_until(s, e, &next, BURST);
        journal_get_stats(j, &st);
        assert_int_equal(st.backlog_entries, 0);
        assert_int_equal(st.lost, 0);

        /* held at exit: the flush sends it */
        journal_hold(j, true);
        send_numbered(j, next);
        assert_int_equal(journal_flush(j, 10000, NULL), 0);
        assert_int_equal(recv_numbered(s, &next), 1);

        journal_free(j);
        sd_event_unref(e);
        close(s);
        dir_remove(&d);
}

/* A held burst of many MiB (a fresh listing of 10,000 images holds 7 MiB): the backlog
 * grows chunk by chunk, and an entry bigger than a chunk (1 MiB) gets one of its own;
 * released, every entry reaches journald whole and in order. */
#define BIG_ENTRY 4000U
#define BIG_BURST 1600U /* 6.4 MiB: several chunks */
static size_t big_entry(char *buf, size_t size, unsigned i) {
        int n = snprintf(buf, size, "MESSAGE=big %u ", i);
        size_t len = i == BIG_BURST / 2 ? (size_t) (3U << 20) : BIG_ENTRY; /* one over a chunk */
        assert_true(len <= size);
        for (size_t k = (size_t) n; k < len; k++)
                buf[k] = (char) ('a' + (i + k) % 26);
        return len;
}

static void test_hold_burst_of_mebibytes(void **state) {
        Dir d;
        dir_make(&d);
        int s = listen_at(d.sock);
        int big = 4 << 20;
        (void) setsockopt(s, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        sd_event *e = NULL;
        assert_int_equal(sd_event_new(&e), 0);
        Journal *j = NULL;
        assert_int_equal(journal_new(&j, d.sock, 0), 0);
        assert_int_equal(journal_attach_event(j, e, NULL, NULL), 0);
        size_t size = (3U << 20) + 64;
        char *want = malloc(size), *got = malloc(size);
        assert_non_null(want);
        assert_non_null(got);

        journal_hold(j, true);
        size_t total = 0;
        for (unsigned i = 0; i < BIG_BURST; i++) {
                size_t len = big_entry(want, size, i);
                struct iovec iov = {want, len};
                assert_int_equal(journal_sendv(j, &iov, 1), 0);
                total += len + 1;
        }
        JournalStats st;
        journal_get_stats(j, &st);
        assert_int_equal(st.backlog_entries, BIG_BURST);
        assert_int_equal(st.backlog_bytes, total);

        journal_hold(j, false);
        uint64_t deadline = now_usec_monotonic() + 20 * 1000000ULL;
        unsigned next = 0;
        while (next < BIG_BURST && now_usec_monotonic() < deadline) {
                bool memfd;
                ssize_t n;
                while (next < BIG_BURST && (n = recv_entry(s, got, size, &memfd)) >= 0) {
                        size_t len = big_entry(want, size, next);
                        assert_int_equal((size_t) n, len + 1);
                        assert_memory_equal(got, want, len);
                        assert_int_equal(got[len], '\n');
                        next++;
                }
                assert_true(sd_event_run(e, 100 * 1000) >= 0);
        }
        assert_int_equal(next, BIG_BURST);
        journal_get_stats(j, &st);
        assert_int_equal(st.backlog_entries, 0);
        assert_int_equal(st.backlog_bytes, 0);
        assert_int_equal(st.lost, 0);

        free(want);
        free(got);
        journal_free(j);
        sd_event_unref(e);
        close(s);
        dir_remove(&d);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_missing_socket_is_an_error),
                cmocka_unit_test(test_wire_format_and_newlines),
                cmocka_unit_test(test_invalid_fields),
                cmocka_unit_test(test_restart_reconnects),
                cmocka_unit_test(test_oversize_goes_as_memfd),
                cmocka_unit_test(test_backlog_never_waits_never_drops),
                cmocka_unit_test(test_backlog_flushed_at_exit),
                cmocka_unit_test(test_backlog_lost_is_told),
                cmocka_unit_test(test_hold_sends_after_release),
                cmocka_unit_test(test_hold_burst_of_mebibytes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
