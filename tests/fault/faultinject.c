/* LD_PRELOAD fault injector, in the spirit of SQLite's I/O error tests: every call that
 * can make state durable — or fail for lack of room — is a numbered failure point, and
 * a sweep fails each one in turn.
 *
 * Failure points: open/openat that create or write, write, writev, pwrite, pwritev,
 * fsync, fdatasync, ftruncate, rename/renameat/renameat2, mkdir/mkdirat — counted only
 * for files under $PW_FAULT_DIR (so the program's stderr, sockets and pipes are never
 * touched): a descriptor is tracked when it was opened by a path under that directory
 * or relative to a tracked directory descriptor.
 *
 * Environment:
 *   PW_FAULT_DIR    the directory whose files are subject to faults (required)
 *   PW_FAULT_N      fail the Nth failure point (1-based); 0 or unset: count only
 *   PW_FAULT_ERRNO  ENOSPC (default) or EIO
 *   PW_FAULT_MODE   once: only the Nth call fails (a transient error);
 *                   persist: the Nth and every later one fail (a disk that stays full)
 *   PW_FAULT_ARMED  0: start disarmed; the program under test arms the injector with
 *                   pw_fault_arm(1) around the phase it sweeps (found with dlsym)
 *   PW_FAULT_LOG    append "points=N failed=K" to this file at exit (the sweep's range)
 *
 * A failed write reports the errno without writing anything; a failed rename leaves
 * both names as they were; a failed open creates nothing. This is what the kernel does
 * for ENOSPC on all but partial writes, which the persist mode also covers (the next
 * write of the loop fails). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define FD_MAX 4096

static char fault_dir[PATH_MAX];
static size_t fault_dir_len;
static unsigned long fault_n, points, failed;
static int fault_errno = ENOSPC;
static bool persist, armed = true, ready;
static unsigned char tracked[FD_MAX];

__attribute__((visibility("default"))) void pw_fault_arm(int on);
__attribute__((visibility("default"))) unsigned long pw_fault_points(void);

void pw_fault_arm(int on) {
        armed = on != 0;
}
unsigned long pw_fault_points(void) {
        return points;
}

static void fault_report(void) {
        const char *log = getenv("PW_FAULT_LOG");
        if (!log)
                return;
        FILE *f = fopen(log, "ae");
        if (!f)
                return;
        fprintf(f, "points=%lu failed=%lu\n", points, failed);
        fclose(f);
}

__attribute__((constructor)) static void fault_init(void) {
        const char *d = getenv("PW_FAULT_DIR"), *v;
        if (!d || !*d || !realpath(d, fault_dir))
                return;
        fault_dir_len = strlen(fault_dir);
        if ((v = getenv("PW_FAULT_N")))
                fault_n = strtoul(v, NULL, 10);
        if ((v = getenv("PW_FAULT_ERRNO")) && strcmp(v, "EIO") == 0)
                fault_errno = EIO;
        if ((v = getenv("PW_FAULT_MODE")) && strcmp(v, "persist") == 0)
                persist = true;
        if ((v = getenv("PW_FAULT_ARMED")) && strcmp(v, "0") == 0)
                armed = false;
        ready = true;
        atexit(fault_report);
}

/* A point is counted only while armed; returns true when this one must fail. */
static bool fault_point(void) {
        if (!ready || !armed)
                return false;
        points++;
        if (fault_n == 0)
                return false;
        if (points == fault_n || (persist && points > fault_n)) {
                failed++;
                return true;
        }
        return false;
}

static bool path_under_dir(int dirfd, const char *path) {
        if (!ready || !path)
                return false;
        if (path[0] != '/')
                return (dirfd == AT_FDCWD) ? false : (dirfd >= 0 && dirfd < FD_MAX && tracked[dirfd]);
        return strncmp(path, fault_dir, fault_dir_len) == 0 &&
               (path[fault_dir_len] == '/' || path[fault_dir_len] == 0);
}

/* A descriptor number can be reused by a socket or pipe after a close we did not see
 * (fclose, or libc's own): only regular files and directories count. */
static bool fd_tracked(int fd) {
        struct stat st;
        return ready && fd >= 0 && fd < FD_MAX && tracked[fd] && fstat(fd, &st) == 0 &&
               (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode));
}

static void track(int fd, bool on) {
        if (fd >= 0 && fd < FD_MAX)
                tracked[fd] = on;
}

#define REAL(name) ((__typeof__(&name)) dlsym(RTLD_NEXT, #name))

static bool open_writes(int flags) {
        return (flags & (O_CREAT | O_TRUNC)) || (flags & O_ACCMODE) != O_RDONLY;
}

static int do_openat(int dirfd, const char *path, int flags, mode_t mode, bool is64) {
        bool under = path_under_dir(dirfd, path);
        if (under && open_writes(flags) && fault_point()) {
                errno = fault_errno;
                return -1;
        }
        int fd;
        if (is64) {
                static int (*real)(int, const char *, int, ...);
                if (!real)
                        real = (int (*)(int, const char *, int, ...)) dlsym(RTLD_NEXT, "openat64");
                fd = real(dirfd, path, flags, mode);
        } else {
                static int (*real)(int, const char *, int, ...);
                if (!real)
                        real = (int (*)(int, const char *, int, ...)) dlsym(RTLD_NEXT, "openat");
                fd = real(dirfd, path, flags, mode);
        }
        if (fd >= 0)
                track(fd, under);
        return fd;
}

#define MODE_ARG(flags)                                                                                                \
        mode_t mode = 0;                                                                                               \
        if ((flags) & (O_CREAT | __O_TMPFILE)) {                                                                       \
                va_list ap;                                                                                            \
                va_start(ap, flags);                                                                                   \
                mode = (mode_t) va_arg(ap, int);                                                                       \
                va_end(ap);                                                                                            \
        }

int open(const char *path, int flags, ...) {
        MODE_ARG(flags);
        return do_openat(AT_FDCWD, path, flags, mode, false);
}
int open64(const char *path, int flags, ...) {
        MODE_ARG(flags);
        return do_openat(AT_FDCWD, path, flags, mode, true);
}
int openat(int dirfd, const char *path, int flags, ...) {
        MODE_ARG(flags);
        return do_openat(dirfd, path, flags, mode, false);
}
int openat64(int dirfd, const char *path, int flags, ...) {
        MODE_ARG(flags);
        return do_openat(dirfd, path, flags, mode, true);
}

int close(int fd) {
        track(fd, false);
        return REAL(close)(fd);
}

int dup(int fd) {
        int r = REAL(dup)(fd);
        if (r >= 0)
                track(r, fd_tracked(fd));
        return r;
}

#define FD_FAULT(fd, ret)                                                                                              \
        do {                                                                                                           \
                if (fd_tracked(fd) && fault_point()) {                                                                 \
                        errno = fault_errno;                                                                           \
                        return ret;                                                                                    \
                }                                                                                                      \
        } while (0)

ssize_t write(int fd, const void *buf, size_t n) {
        FD_FAULT(fd, -1);
        return REAL(write)(fd, buf, n);
}
ssize_t writev(int fd, const struct iovec *iov, int n) {
        FD_FAULT(fd, -1);
        return REAL(writev)(fd, iov, n);
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
        FD_FAULT(fd, -1);
        return REAL(pwrite)(fd, buf, n, off);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
        FD_FAULT(fd, -1);
        return REAL(pwrite64)(fd, buf, n, off);
}
ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off) {
        FD_FAULT(fd, -1);
        return REAL(pwritev)(fd, iov, n, off);
}
ssize_t pwritev64(int fd, const struct iovec *iov, int n, off_t off) {
        FD_FAULT(fd, -1);
        return REAL(pwritev64)(fd, iov, n, off);
}
int fsync(int fd) {
        FD_FAULT(fd, -1);
        return REAL(fsync)(fd);
}
int fdatasync(int fd) {
        FD_FAULT(fd, -1);
        return REAL(fdatasync)(fd);
}
int ftruncate(int fd, off_t len) {
        FD_FAULT(fd, -1);
        return REAL(ftruncate)(fd, len);
}
int ftruncate64(int fd, off_t len) {
        FD_FAULT(fd, -1);
        return REAL(ftruncate64)(fd, len);
}

#define PATH_FAULT(dirfd, path, ret)                                                                                   \
        do {                                                                                                           \
                if (path_under_dir(dirfd, path) && fault_point()) {                                                    \
                        errno = fault_errno;                                                                           \
                        return ret;                                                                                    \
                }                                                                                                      \
        } while (0)

int rename(const char *a, const char *b) {
        PATH_FAULT(AT_FDCWD, b, -1);
        return REAL(rename)(a, b);
}
int renameat(int da, const char *a, int db, const char *b) {
        PATH_FAULT(db, b, -1);
        return REAL(renameat)(da, a, db, b);
}
int renameat2(int da, const char *a, int db, const char *b, unsigned flags) {
        PATH_FAULT(db, b, -1);
        return REAL(renameat2)(da, a, db, b, flags);
}
int mkdir(const char *path, mode_t mode) {
        PATH_FAULT(AT_FDCWD, path, -1);
        return REAL(mkdir)(path, mode);
}
int mkdirat(int dirfd, const char *path, mode_t mode) {
        PATH_FAULT(dirfd, path, -1);
        return REAL(mkdirat)(dirfd, path, mode);
}
