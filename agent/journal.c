/* See include/pullwatch/journal.h. sd_journal_sendv() sends each entry with sendto() to
 * the socket's path: a path lookup per entry, and it reports success when the socket is
 * missing (REFERENCE.md §8), which cost us an lstat() per entry to tell. A socket
 * connected once does neither: connect() itself says -ENOENT or -ECONNREFUSED, and a
 * journald that went away fails the next send with -ECONNREFUSED. */
#include "pullwatch/journal.h"

#include <endian.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "pullwatch/util.h"

struct Journal {
        int fd; /* connected SOCK_DGRAM, or -1: connect at the next entry */
        int sndbuf;
        struct sockaddr_un sa;
        socklen_t sa_len;
};

int journal_new(Journal **ret, const char *socket_path, int sndbuf) {
        const char *path = socket_path ? socket_path : JOURNAL_SOCKET;
        Journal *j;
        size_t n = strlen(path);

        if (n == 0 || n >= sizeof j->sa.sun_path)
                return -ENAMETOOLONG;
        j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        j->fd = -1;
        j->sndbuf = sndbuf;
        j->sa.sun_family = AF_UNIX;
        memcpy(j->sa.sun_path, path, n);
        j->sa_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n + 1);
        *ret = j;
        return 0;
}

Journal *journal_free(Journal *j) {
        if (!j)
                return NULL;
        if (j->fd >= 0)
                close(j->fd);
        free(j);
        return NULL;
}

static void journal_disconnect(Journal *j) {
        if (j->fd >= 0)
                close(j->fd);
        j->fd = -1;
}

static int journal_connect(Journal *j) {
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (j->sndbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &j->sndbuf, sizeof j->sndbuf) < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *) &j->sa, j->sa_len) < 0)
                return -errno;
        j->fd = TAKE_FD(fd);
        return 0;
}

/* Too big for one datagram: the entry in a sealed memfd, its descriptor sent instead
 * (journald reads a sealed memfd; sd_journal_sendv() does the same). */
static int send_memfd(Journal *j, const struct iovec *w, size_t n) {
        _cleanup_close_ int mfd = memfd_create("pullwatch-journal", MFD_ALLOW_SEALING | MFD_CLOEXEC);
        if (mfd < 0)
                return -errno;
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
                total += w[i].iov_len;
        ssize_t k = writev(mfd, w, (int) n);
        if (k < 0)
                return -errno;
        if ((size_t) k != total)
                return -EIO;
        if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
                return -errno;
        union {
                struct cmsghdr h;
                uint8_t buf[CMSG_SPACE(sizeof(int))];
        } control;
        memset(&control, 0, sizeof control);
        struct msghdr mh = {.msg_control = &control, .msg_controllen = sizeof control};
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &mfd, sizeof(int));
        if (sendmsg(j->fd, &mh, MSG_NOSIGNAL) < 0)
                return -errno;
        return 0;
}

/* One attempt on the connected socket: 0, or -errno of the send. */
static int send_once(Journal *j, const struct iovec *w, size_t n) {
        struct msghdr mh = {.msg_iov = (struct iovec *) w, .msg_iovlen = n};
        if (sendmsg(j->fd, &mh, MSG_NOSIGNAL) >= 0)
                return 0;
        int r = -errno;
        if (r == -EMSGSIZE || r == -ENOBUFS || r == -EAGAIN)
                return send_memfd(j, w, n);
        return r;
}

int journal_sendv(Journal *j, const struct iovec *iov, size_t n) {
        /* per field at most: name, "\n", length, value, "\n" (docs/JOURNAL_NATIVE_PROTOCOL.md) */
        struct iovec w[PW_JOURNAL_FIELDS_MAX * 5];
        uint64_t len[PW_JOURNAL_FIELDS_MAX];
        size_t k = 0;

        if (!j || n == 0 || n > PW_JOURNAL_FIELDS_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                const char *p = iov[i].iov_base;
                const char *eq = iov[i].iov_len > 1 ? memchr(p, '=', iov[i].iov_len) : NULL;
                if (!eq || eq == p)
                        return -EINVAL;
                size_t name = (size_t) (eq - p), vlen = iov[i].iov_len - name - 1;
                const char *nl = memchr(p, '\n', iov[i].iov_len);
                if (nl && nl < eq)
                        return -EINVAL;
                if (nl) {
                        /* a value with a newline: NAME\n, its length (64-bit LE), the bytes */
                        len[i] = htole64(vlen);
                        w[k++] = (struct iovec){(void *) p, name};
                        w[k++] = (struct iovec){(void *) "\n", 1};
                        w[k++] = (struct iovec){&len[i], sizeof len[i]};
                        w[k++] = (struct iovec){(void *) (eq + 1), vlen};
                } else
                        w[k++] = iov[i];
                w[k++] = (struct iovec){(void *) "\n", 1};
        }

        int r;
        if (j->fd < 0 && (r = journal_connect(j)) < 0)
                return r;
        r = send_once(j, w, k);
        if (r != -ECONNREFUSED && r != -ENOTCONN)
                return r;
        /* journald went away (its socket file may be a new one already): connect again */
        journal_disconnect(j);
        if ((r = journal_connect(j)) < 0)
                return r;
        return send_once(j, w, k);
}

int journal_send_finding(Journal *j, const Finding *f) {
        JournalFields jf;
        int r = finding_to_journal(f, &jf);
        if (r < 0)
                return r;
        return journal_sendv(j, jf.iov, jf.n);
}
