/* Small helpers shared by every module: cleanup attributes (systemd style),
 * ownership hand-off, bounded string copies. Header-only. */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _unused_ __attribute__((unused))
#define _pure_ __attribute__((pure))
#define _warn_unused_result_ __attribute__((warn_unused_result))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* Hand ownership of *p to the caller and leave NULL behind, so the cleanup attribute
 * of the old owner does nothing. */
#define TAKE_PTR(p)                        \
        ({                                 \
                typeof(p) *_pp_ = &(p);    \
                typeof(p) _ptr_ = *_pp_;   \
                *_pp_ = NULL;              \
                _ptr_;                     \
        })
#define TAKE_FD(fd)                        \
        ({                                 \
                int *_pfd_ = &(fd);        \
                int _fd_ = *_pfd_;         \
                *_pfd_ = -1;               \
                _fd_;                      \
        })

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)        \
        static inline void func##p(type *p) {          \
                if (*p)                                \
                        func(*p);                      \
        }

static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}
/* v in decimal (as "%" PRIu64) into buf, terminated; returns its length. snprintf's
 * format machinery costs ~1,000 instructions a number, and every event formats several. */
#define U64_DEC_MAX 21 /* 20 digits + NUL */
static inline size_t u64_to_dec(char buf[static U64_DEC_MAX], uint64_t v) {
        char t[U64_DEC_MAX - 1];
        size_t n = 0;
        do {
                t[n++] = (char) ('0' + v % 10);
                v /= 10;
        } while (v);
        for (size_t i = 0; i < n; i++)
                buf[i] = t[n - 1 - i];
        buf[n] = 0;
        return n;
}

/* A bounded concatenation with snprintf()'s truncation: at most size - 1 bytes kept,
 * always terminated (size > 0), a NULL string as glibc prints it. For the messages and
 * keys made for every image of a listing, where snprintf()'s format machinery was ~1,400
 * instructions a call. */
typedef struct SBuf {
        char *buf;
        size_t size, len;
} SBuf;

static inline SBuf sbuf_init(char *buf, size_t size) {
        buf[0] = 0;
        return (SBuf){buf, size, 0};
}

static inline void sbuf_add_mem(SBuf *b, const char *s, size_t n) {
        size_t room = b->size - 1 - b->len;
        if (n > room)
                n = room;
        memcpy(b->buf + b->len, s, n);
        b->len += n;
        b->buf[b->len] = 0;
}

static inline void sbuf_add(SBuf *b, const char *s) {
        s = s ? s : "(null)";
        sbuf_add_mem(b, s, strlen(s));
}

static inline void sbuf_add_u64(SBuf *b, uint64_t v) {
        char t[U64_DEC_MAX];
        sbuf_add_mem(b, t, u64_to_dec(t, v));
}

/* The lowercase hexadecimal digit of v's low 4 bits (unhexchar()'s inverse). */
static inline char hexchar(unsigned v) {
        return "0123456789abcdef"[v & 15];
}

/* v as 16 lowercase hex digits (as "%016" PRIx64) into buf, not terminated. */
static inline void u64_to_hex16(char buf[static 16], uint64_t v) {
        for (int i = 15; i >= 0; i--) {
                buf[i] = hexchar((unsigned) v);
                v >>= 4;
        }
}

/* The value of a hexadecimal digit, either case; -1 for anything else. */
static inline int unhexchar(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

static inline bool isempty(const char *s) {
        return !s || !*s;
}
static inline bool startswith(const char *s, const char *prefix) {
        return s && prefix && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Bounded copy: copies at most size-1 bytes and always terminates.
 * Returns -ENAMETOOLONG (and copies nothing) if src does not fit. */
static inline int strcpy_bounded(char *dst, size_t size, const char *src) {
        size_t n = src ? strlen(src) : 0;
        if (size == 0)
                return -ENAMETOOLONG;
        if (n >= size) {
                dst[0] = 0;
                return -ENAMETOOLONG;
        }
        memcpy(dst, src ? src : "", n);
        dst[n] = 0;
        return 0;
}

static inline uint64_t now_usec_realtime(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}
static inline uint64_t now_usec_monotonic(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

/* Fill the optional reason buffer err with one printable line (control characters and
 * non-ASCII bytes from a file or a library become '?'), and return error. The shared
 * shape of every module's "-errno plus a one-line reason" failure. */
_printf_(4, 5) static inline int errbuf_fail(char *err, size_t errlen, int error, const char *fmt, ...) {
        if (err && errlen > 0) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
                for (char *c = err; *c; c++)
                        if ((unsigned char) *c < 0x20 || (unsigned char) *c >= 0x7f)
                                *c = '?';
        }
        return error;
}

/* The element count an array of alloc elements of size bytes grows to so that need fit,
 * doubling from initial: *ret (> alloc), or -ENOMEM on overflow of the count or bytes. */
static inline int greedy_count(size_t alloc, size_t need, size_t size, size_t initial, size_t *ret) {
        size_t n = alloc ? alloc : initial;
        while (n < need) {
                if (n > SIZE_MAX / 2)
                        return -ENOMEM;
                n *= 2;
        }
        if (size && n > SIZE_MAX / size)
                return -ENOMEM;
        *ret = n;
        return 0;
}

/* Make room for at least need elements of size bytes in the array *p of *alloc
 * elements, doubling from initial (systemd's GREEDY_REALLOC). On -ENOMEM (or overflow)
 * *p and *alloc are left as they were. */
static inline int greedy_realloc(void **p, size_t *alloc, size_t need, size_t size, size_t initial) {
        if (need <= *alloc)
                return 0;
        size_t n;
        if (greedy_count(*alloc, need, size, initial, &n) < 0)
                return -ENOMEM;
        void *q = realloc(*p, n * size);
        if (!q)
                return -ENOMEM;
        *p = q;
        *alloc = n;
        return 0;
}

/* Read fd to its end, but at most max + 1 bytes: one more than allowed, so the caller
 * can tell a file that is too large (*ret_len > max) and say so its own way. *ret is
 * malloc()ed, NUL-terminated, owned by the caller. On a read error nothing is returned
 * and what was read is wiped first (the file may hold a secret, e.g. a token). */
static inline int read_fd_bounded(int fd, size_t max, char **ret, size_t *ret_len) {
        if (max >= SIZE_MAX - 1)
                return -EINVAL;
        char *buf = malloc(max + 2);
        if (!buf)
                return -ENOMEM;
        size_t n = 0;
        while (n <= max) {
                ssize_t k = read(fd, buf + n, max + 1 - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        int r = -errno;
                        explicit_bzero(buf, n);
                        free(buf);
                        return r;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
        }
        buf[n] = 0;
        *ret = buf;
        *ret_len = n;
        return 0;
}

/* Open path (relative to dirfd; AT_FDCWD for a plain path) to read it, and refuse what is
 * not a regular file before anything can block on it: the open is O_NONBLOCK, so a FIFO
 * planted in its place returns at once instead of waiting for a writer (a pins reload froze
 * the event loop for 23 minutes), and fstat() decides. extra_flags: e.g. O_NOFOLLOW.
 * Returns the fd (O_CLOEXEC; owned by the caller; O_NONBLOCK changes nothing on a regular
 * file), or -errno: -EINVAL for a FIFO, a device, a directory or a socket. */
static inline int open_regular_file(int dirfd, const char *path, int extra_flags) {
        int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | extra_flags);
        if (fd < 0)
                return -errno;
        struct stat st;
        int r = fstat(fd, &st) < 0 ? -errno : S_ISREG(st.st_mode) ? 0 : -EINVAL;
        if (r < 0) {
                close(fd);
                return r;
        }
        return fd;
}
