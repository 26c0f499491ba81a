/* See include/pullwatch/journal.h. sd_journal_sendv() sends each entry with sendto() to
 * the socket's path: a path lookup per entry, and it reports success when the socket is
 * missing (REFERENCE.md §8), which cost us an lstat() per entry to tell. A socket
 * connected once does neither: connect() itself says -ENOENT or -ECONNREFUSED, and a
 * journald that went away fails the next send with -ECONNREFUSED. */
#include "pullwatch/journal.h"

#include <endian.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/param.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "pullwatch/util.h"

/* A piece of the backlog: entries one after another, each a size_t length then its bytes,
 * padded to 8. Mapped, not malloc()ed: a burst's backlog (megabytes) comes and goes
 * without leaving holes in the heap, and a chunk is unmapped once sent. */
typedef struct Chunk {
        struct Chunk *next;
        size_t size;       /* of the mapping */
        size_t head, tail; /* offsets into data: the next entry to send, where the next one goes */
        size_t populated;  /* offset into the mapping: below it, pages already faulted in */
        uint8_t data[];
} Chunk;

#define CHUNK_SIZE (1U << 20)
/* A chunk's pages are faulted in POPULATE_STEP at a time, ahead of the entries that fill
 * them (MADV_POPULATE_WRITE, Linux 5.14): a fresh start holds 10,000 entries (7 MiB,
 * ~1,800 pages) and in a VM each page's own fault took ~17 µs of the main thread's CPU,
 * populated 64 KiB at a time ~8 µs. Not the whole chunk at its mapping: a few held
 * entries do not fault in a MiB. Where the kernel lacks it, pages fault as they did. */
#define POPULATE_STEP (64U << 10)
#define ENTRY_ALIGN 8
#define ALIGN_UP(n, a) (((n) + (a) - 1) / (a) * (a))

struct Journal {
        int fd; /* connected SOCK_DGRAM, or -1: connect at the next entry */
        int sndbuf;
        struct sockaddr_un sa;
        socklen_t sa_len;
        /* with a loop: entries journald's socket could not take yet, oldest first */
        sd_event *event;
        sd_event_source *io; /* EPOLLOUT on fd while the backlog is not empty */
        journal_lost_t on_lost;
        void *userdata;
        Chunk *first, *last;
        size_t backlog_bytes, backlog_entries;
        bool held; /* journal_hold(): every entry joins the backlog, none is sent */
        JournalStats stats;
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

static void backlog_clear(Journal *j) {
        for (Chunk *c = j->first, *next; c; c = next) {
                next = c->next;
                munmap(c, c->size);
        }
        j->first = j->last = NULL;
        j->backlog_bytes = j->backlog_entries = 0;
}

Journal *journal_free(Journal *j) {
        if (!j)
                return NULL;
        sd_event_source_disable_unref(j->io);
        sd_event_unref(j->event);
        backlog_clear(j);
        if (j->fd >= 0)
                close(j->fd);
        free(j);
        return NULL;
}

int journal_attach_event(Journal *j, sd_event *e, journal_lost_t on_lost, void *userdata) {
        if (!j || !e || j->event)
                return -EINVAL;
        j->event = sd_event_ref(e);
        j->on_lost = on_lost;
        j->userdata = userdata;
        return 0;
}

static void journal_disconnect(Journal *j) {
        /* the io source watches this fd: it goes first (sd-event must not keep a closed fd) */
        j->io = sd_event_source_disable_unref(j->io);
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

static size_t iov_size(const struct iovec *w, size_t n) {
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
                total += w[i].iov_len;
        return total;
}

/* Too big for one datagram: the entry in a sealed memfd, its descriptor sent instead
 * (journald reads a sealed memfd; sd_journal_sendv() does the same). */
static int send_memfd(Journal *j, const struct iovec *w, size_t n) {
        _cleanup_close_ int mfd = memfd_create("pullwatch-journal", MFD_ALLOW_SEALING | MFD_CLOEXEC);
        if (mfd < 0)
                return -errno;
        size_t total = iov_size(w, n);
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

/* One attempt on the connected socket: 0, or -errno of the send. With MSG_DONTWAIT,
 * -EAGAIN: journald's queue is full (it holds net.unix.max_dgram_qlen datagrams) or our
 * send buffer is, try again when the socket is writable. */
static int send_once(Journal *j, const struct iovec *w, size_t n, int flags) {
        struct msghdr mh = {.msg_iov = (struct iovec *) w, .msg_iovlen = n};
        if (sendmsg(j->fd, &mh, MSG_NOSIGNAL | flags) >= 0)
                return 0;
        int r = -errno;
        if (r == -EMSGSIZE || r == -ENOBUFS || (r == -EAGAIN && !(flags & MSG_DONTWAIT)))
                return send_memfd(j, w, n);
        return r;
}

/* send_once(), and once more on a new connection when journald went away (its socket
 * file may be a new one already). */
static int send_reconnecting(Journal *j, const struct iovec *w, size_t n, int flags) {
        int r;
        if (j->fd < 0 && (r = journal_connect(j)) < 0)
                return r;
        r = send_once(j, w, n, flags);
        if (r != -ECONNREFUSED && r != -ENOTCONN)
                return r;
        journal_disconnect(j);
        if ((r = journal_connect(j)) < 0)
                return r;
        return send_once(j, w, n, flags);
}

/* ---- the backlog ---- */

static size_t entry_space(size_t len) {
        return sizeof(size_t) + ALIGN_UP(len, ENTRY_ALIGN);
}

/* Fault in c's pages up to end (an offset into the mapping), POPULATE_STEP at a time. */
static void populate(Chunk *c, size_t end) {
        static bool unsupported;
        if (end <= c->populated || unsupported)
                return;
        size_t to = MIN(c->size, ALIGN_UP(end, (size_t) POPULATE_STEP));
        if (madvise((uint8_t *) c + c->populated, to - c->populated, MADV_POPULATE_WRITE) < 0) {
                if (errno == EINVAL) /* before Linux 5.14: the pages fault as they are written */
                        unsupported = true;
                return; /* ENOMEM and others: the write faults and reports it as it would */
        }
        c->populated = to;
}

static int backlog_push(Journal *j, const struct iovec *w, size_t n) {
        size_t len = iov_size(w, n);
        size_t need = entry_space(len);
        Chunk *c = j->last;
        if (!c || c->size - offsetof(Chunk, data) - c->tail < need) {
                size_t size = MAX((size_t) CHUNK_SIZE, ALIGN_UP(offsetof(Chunk, data) + need, (size_t) sysconf(_SC_PAGESIZE)));
                void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p == MAP_FAILED)
                        return -ENOMEM;
                c = p;
                c->next = NULL;
                c->size = size;
                c->head = c->tail = 0;
                c->populated = (size_t) sysconf(_SC_PAGESIZE);
                if (j->last)
                        j->last->next = c;
                else
                        j->first = c;
                j->last = c;
        }
        populate(c, offsetof(Chunk, data) + c->tail + need);
        uint8_t *q = c->data + c->tail;
        memcpy(q, &len, sizeof len);
        q += sizeof len;
        for (size_t i = 0; i < n; i++) {
                memcpy(q, w[i].iov_base, w[i].iov_len);
                q += w[i].iov_len;
        }
        c->tail += need;
        j->backlog_bytes += len;
        j->backlog_entries++;
        j->stats.backlogged++;
        j->stats.backlog_peak_bytes = MAX(j->stats.backlog_peak_bytes, (uint64_t) j->backlog_bytes);
        return 0;
}

/* The oldest entry, or NULL. */
static const uint8_t *backlog_head(const Journal *j, size_t *ret_len) {
        const Chunk *c = j->first;
        if (!c || c->head == c->tail)
                return NULL;
        memcpy(ret_len, c->data + c->head, sizeof *ret_len);
        return c->data + c->head + sizeof(size_t);
}

static void backlog_pop(Journal *j) {
        Chunk *c = j->first;
        size_t len;
        memcpy(&len, c->data + c->head, sizeof len);
        c->head += entry_space(len);
        j->backlog_bytes -= len;
        j->backlog_entries--;
        if (c->head == c->tail) {
                j->first = c->next;
                if (!j->first)
                        j->last = NULL;
                munmap(c, c->size);
        }
}

static int on_writable(sd_event_source *s, int fd, uint32_t revents, void *userdata);

static int io_watch(Journal *j, bool on) {
        int r;
        if (!on)
                return j->io ? sd_event_source_set_enabled(j->io, SD_EVENT_OFF) : 0;
        if (!j->io) {
                r = sd_event_add_io(j->event, &j->io, j->fd, EPOLLOUT, on_writable, j);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(j->io, "journal-backlog");
                /* after everything else that is ready: the containerd stream and a listing's
                 * replies go first, journald gets the backlog when the loop has nothing
                 * else to do (it has, between events and once a listing is judged) */
                (void) sd_event_source_set_priority(j->io, SD_EVENT_PRIORITY_IDLE);
        }
        return sd_event_source_set_enabled(j->io, SD_EVENT_ON);
}

/* Send from the backlog, oldest first, until it holds at most until_bytes (0) or
 * journald's socket is full (-EAGAIN; only without block). block: wait for the socket up
 * to timeout_msec (< 0: without end) in all; on timeout -ETIME. An entry journald cannot
 * be given (its socket gone, no new one) is lost: counted, and told to on_lost. */
static int backlog_drain(Journal *j, bool block, int timeout_msec, size_t until_bytes) {
        uint64_t deadline = timeout_msec >= 0 ? now_usec_monotonic() + (uint64_t) timeout_msec * 1000 : 0;
        size_t len;
        const uint8_t *p;
        while (j->backlog_entries > 0 && j->backlog_bytes > until_bytes && (p = backlog_head(j, &len))) {
                struct iovec w = {(void *) p, len};
                int r = send_reconnecting(j, &w, 1, MSG_DONTWAIT);
                if (r == -EAGAIN) {
                        if (!block)
                                return r;
                        int wait = -1;
                        if (timeout_msec >= 0) {
                                uint64_t now = now_usec_monotonic();
                                if (now >= deadline)
                                        return -ETIME;
                                wait = (int) MIN((deadline - now + 999) / 1000, (uint64_t) INT_MAX);
                        }
                        struct pollfd pfd = {.fd = j->fd, .events = POLLOUT};
                        if (poll(&pfd, 1, wait) < 0 && errno != EINTR)
                                return -errno;
                        continue;
                }
                if (r < 0) {
                        j->stats.lost++;
                        if (j->on_lost)
                                j->on_lost(r, 1, j->userdata);
                }
                backlog_pop(j);
        }
        return 0;
}

static int on_writable(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Journal *j = userdata;
        (void) s;
        (void) fd;
        (void) revents;
        if (j->held) { /* journal_hold(false) starts it again */
                (void) io_watch(j, false);
                return 0;
        }
        /* still full: wait for the next EPOLLOUT (on a new socket if it reconnected) */
        if (backlog_drain(j, false, 0, 0) != -EAGAIN)
                (void) io_watch(j, false);
        else if (io_watch(j, true) < 0)
                (void) backlog_drain(j, true, -1, 0);
        return 0;
}

int journal_flush(Journal *j, int timeout_msec, uint64_t *ret_unsent) {
        if (!j)
                return -EINVAL;
        int r = backlog_drain(j, true, timeout_msec, 0);
        if (ret_unsent)
                *ret_unsent = j->backlog_entries;
        if (r < 0) {
                j->stats.lost += j->backlog_entries;
                backlog_clear(j);
        }
        (void) io_watch(j, false);
        return r;
}

void journal_get_stats(const Journal *j, JournalStats *ret) {
        if (!j || !ret)
                return;
        *ret = j->stats;
        ret->backlog_entries = j->backlog_entries;
        ret->backlog_bytes = j->backlog_bytes;
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

        if (!j->event)
                return send_reconnecting(j, w, k, 0);

        /* With a loop: never wait for journald. Behind a backlog an entry joins it (order is
         * kept); otherwise it is sent now, or joins the backlog when journald's socket is
         * full, and the backlog is sent as journald makes room. Over JOURNAL_BACKLOG_MAX the
         * agent waits for journald, as it did for every entry before: never dropped. */
        int r;
        if (j->backlog_entries == 0 && !j->held) {
                r = send_reconnecting(j, w, k, MSG_DONTWAIT);
                if (r != -EAGAIN)
                        return r;
        }
        if (j->backlog_bytes > JOURNAL_BACKLOG_MAX) {
                j->stats.waits++;
                (void) backlog_drain(j, true, -1, JOURNAL_BACKLOG_MAX / 2);
        }
        r = backlog_push(j, w, k);
        if (r < 0) {
                /* no room to keep it: wait for journald as before */
                (void) backlog_drain(j, true, -1, 0);
                return send_reconnecting(j, w, k, 0);
        }
        if (j->held)
                return 0; /* sent once released */
        r = io_watch(j, true);
        if (r < 0) /* no loop to send it later: now */
                return backlog_drain(j, true, -1, 0);
        return 0;
}

void journal_hold(Journal *j, bool hold) {
        if (!j || !j->event || j->held == hold)
                return;
        j->held = hold;
        if (hold || j->backlog_entries == 0)
                return;
        /* what journald's socket takes now, the rest as it reads (connects if need be) */
        if (backlog_drain(j, false, 0, 0) == -EAGAIN && io_watch(j, true) < 0)
                (void) backlog_drain(j, true, -1, 0);
}

int journal_send_finding(Journal *j, const Finding *f) {
        JournalFields jf;
        int r = finding_to_journal(f, &jf);
        if (r < 0)
                return r;
        return journal_sendv(j, jf.iov, jf.n);
}
