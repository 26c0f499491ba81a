/* See include/pullwatch/facts.h. */
#include "pullwatch/facts.h"

#include <stdarg.h>
#include <sys/mman.h>
#include <zlib.h>

#include "pullwatch/fileio.h"
#include "pullwatch/sha256.h"
#include "pullwatch/timefmt.h"
#include "pullwatch/utf8.h"
#include "pullwatch/util.h"

#define SHA_LEN SHA256_DIGEST_SIZE
#define OFF_PLATFORM 32
#define OFF_CONFIG 64
#define OFF_REV 96
#define OFF_REV_LEN 100
#define OFF_FLAGS 101
#define WARNING_MAX 512

/* A fact learned since the last save. */
/* A fact learned, waiting for the save; its revision (if any) in Facts.revs at rev_off:
 * inline (PW_REVISION_MAX) it was 354 bytes, mostly never written but all of it copied,
 * and at 10,000 images the array was ~860 page faults of a fresh reconcile (104 bytes:
 * ~250). */
#define FACTS_PENDING_MAX (1U << 24)

typedef struct Pending {
        uint8_t target[SHA_LEN], platform[SHA_LEN], config[SHA_LEN];
        uint8_t flags, rev_len;
        uint32_t rev_off;
} Pending;

struct Facts {
        char *state_dir;
        bool read_only;
        bool tried;            /* the file was looked for since the last release */
        const uint8_t *map;    /* the file, valid (facts_check() passed), or NULL */
        size_t map_len, count;
        uint8_t *used;         /* bitmap over the mapped records: looked up */
        Pending *pending;      /* mapped: room for alloc_pending */
        size_t n_pending, alloc_pending;
        char *revs;            /* mapped: the pending revisions, one after another */
        size_t revs_len, revs_alloc;
        char warning[WARNING_MAX];
        bool warned;
};

static uint32_t get32(const uint8_t *p) {
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}
static void put32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) v;
        p[1] = (uint8_t) (v >> 8);
        p[2] = (uint8_t) (v >> 16);
        p[3] = (uint8_t) (v >> 24);
}

static bool all_zero(const uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

static int failf(char *err, size_t errlen, const char *fmt, ...) _printf_(3, 4);
static int failf(char *err, size_t errlen, const char *fmt, ...) {
        if (err && errlen) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
        }
        return -EBADMSG;
}

int facts_check(const uint8_t *buf, size_t len, size_t *ret_count, char *err, size_t errlen) {
        if (len < FACTS_HEADER_SIZE)
                return failf(err, errlen, "truncated header (%zu bytes)", len);
        if (get32(buf) != FACTS_MAGIC)
                return failf(err, errlen, "not a facts file (bad magic)");
        if (get32(buf + 4) != FACTS_VERSION)
                return failf(err, errlen, "unknown version %u", get32(buf + 4));
        size_t count = get32(buf + 8), strings = get32(buf + 12);
        if (count > FACTS_MAX)
                return failf(err, errlen, "%zu records, more than %u", count, FACTS_MAX);
        if (len - FACTS_HEADER_SIZE != count * FACTS_RECORD_SIZE + strings)
                return failf(err, errlen, "length %zu does not match %zu records and %zu bytes of strings", len, count,
                             strings);
        if ((uint32_t) crc32(0L, buf + FACTS_HEADER_SIZE, (uInt) (len - FACTS_HEADER_SIZE)) != get32(buf + 16))
                return failf(err, errlen, "CRC mismatch");
        const uint8_t *recs = buf + FACTS_HEADER_SIZE, *str = recs + count * FACTS_RECORD_SIZE;
        for (size_t i = 0; i < count; i++) {
                const uint8_t *r = recs + i * FACTS_RECORD_SIZE;
                if (i > 0 && memcmp(r - FACTS_RECORD_SIZE, r, SHA_LEN) >= 0)
                        return failf(err, errlen, "record %zu is out of order", i);
                uint8_t flags = r[OFF_FLAGS];
                size_t off = get32(r + OFF_REV), rl = r[OFF_REV_LEN];
                if (flags & ~(FACTS_F_REVISION | FACTS_F_PLATFORM_IS_TARGET) || r[OFF_FLAGS + 1] || r[OFF_FLAGS + 2])
                        return failf(err, errlen, "record %zu has unknown flags", i);
                if (((flags & FACTS_F_PLATFORM_IS_TARGET) != 0) != all_zero(r + OFF_PLATFORM, SHA_LEN))
                        return failf(err, errlen, "record %zu: platform digest and flag disagree", i);
                if (off > strings || rl > strings - off || (!(flags & FACTS_F_REVISION) && (rl || off)))
                        return failf(err, errlen, "record %zu: revision out of bounds", i);
                if (!utf8_valid_n(str + off, rl))
                        return failf(err, errlen, "record %zu: revision is not valid UTF-8", i);
        }
        if (ret_count)
                *ret_count = count;
        return 0;
}

static void entry_from(const uint8_t *buf, const uint8_t *r, FactsEntry *ret) {
        size_t count = get32(buf + 8);
        const uint8_t *str = buf + FACTS_HEADER_SIZE + count * FACTS_RECORD_SIZE;
        uint8_t flags = r[OFF_FLAGS];
        sha256_digest_unpack(flags & FACTS_F_PLATFORM_IS_TARGET ? r : r + OFF_PLATFORM, ret->platform_digest);
        sha256_digest_unpack(r + OFF_CONFIG, ret->config_digest);
        ret->has_revision = flags & FACTS_F_REVISION;
        memcpy(ret->revision, str + get32(r + OFF_REV), r[OFF_REV_LEN]);
        ret->revision[r[OFF_REV_LEN]] = 0;
}

/* Index of target in a valid image, or -1. */
static ssize_t find_index(const uint8_t *buf, const uint8_t target[SHA_LEN]) {
        size_t lo = 0, hi = get32(buf + 8);
        const uint8_t *recs = buf + FACTS_HEADER_SIZE;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = memcmp(recs + mid * FACTS_RECORD_SIZE, target, SHA_LEN);
                if (c == 0)
                        return (ssize_t) mid;
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return -1;
}

int facts_find(const uint8_t *buf, size_t len, const char *digest, FactsEntry *ret) {
        uint8_t t[SHA_LEN];
        if (!sha256_digest_pack(digest, t))
                return -ENOENT;
        ssize_t i = find_index(buf, t);
        if (i < 0)
                return -ENOENT;
        entry_from(buf, buf + FACTS_HEADER_SIZE + (size_t) i * FACTS_RECORD_SIZE, ret);
        return 0;
}

/* ---------------------------------------------------------------- the file */

int facts_new(Facts **ret, const char *state_dir, bool read_only) {
        Facts *f = calloc(1, sizeof *f);
        if (!f || !(f->state_dir = strdup(state_dir))) {
                free(f);
                return -ENOMEM;
        }
        f->read_only = read_only;
        *ret = f;
        return 0;
}

static void drop_pending(Facts *f) {
        if (f->pending)
                munmap(f->pending, f->alloc_pending * sizeof(Pending));
        f->pending = NULL;
        f->n_pending = f->alloc_pending = 0;
        if (f->revs)
                munmap(f->revs, f->revs_alloc);
        f->revs = NULL;
        f->revs_len = f->revs_alloc = 0;
}

/* Room for need bytes in a mapped area (*p, *alloc bytes; NULL and 0 at first), doubled
 * from initial as it grows. -ENOMEM. */
static int area_reserve(void **p, size_t *alloc, size_t need, size_t initial) {
        if (need <= *alloc)
                return 0;
        size_t n = *alloc ? *alloc : initial;
        while (n < need)
                n *= 2;
        void *m = *p ? mremap(*p, *alloc, n, MREMAP_MAYMOVE)
                     : mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
                return -ENOMEM;
        *p = m;
        *alloc = n;
        return 0;
}

void facts_release(Facts *f) {
        if (!f)
                return;
        if (f->map)
                munmap((void *) f->map, f->map_len);
        f->map = NULL;
        f->map_len = f->count = 0;
        free(f->used);
        f->used = NULL;
        f->tried = false;
}

Facts *facts_free(Facts *f) {
        if (!f)
                return NULL;
        facts_release(f);
        drop_pending(f);
        free(f->state_dir);
        free(f);
        return NULL;
}

static void warn(Facts *f, const char *fmt, ...) _printf_(2, 3);
static void warn(Facts *f, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(f->warning, sizeof f->warning, fmt, ap);
        va_end(ap);
        f->warned = true;
}

const char *facts_pop_warning(Facts *f) {
        if (!f || !f->warned)
                return NULL;
        f->warned = false;
        return f->warning;
}

/* Rename a bad file out of the way, never over an earlier one. */
static void move_aside(Facts *f, int dfd, const char *why) {
        char stamp[TIMEFMT_MAX], name[64];
        if (f->read_only || timefmt_utc(now_usec_realtime(), TIMEFMT_COMPACT, stamp, sizeof stamp) < 0) {
                warn(f, "%s/%s is unusable (%s); reading image configs instead", f->state_dir, FACTS_FILE, why);
                return;
        }
        for (unsigned i = 0; i < 100; i++) {
                if (i == 0)
                        snprintf(name, sizeof name, "%s.corrupt-%s", FACTS_FILE, stamp);
                else
                        snprintf(name, sizeof name, "%s.corrupt-%s.%u", FACTS_FILE, stamp, i);
                if (renameat2(dfd, FACTS_FILE, dfd, name, RENAME_NOREPLACE) == 0) {
                        warn(f, "%s/%s is corrupt (%s): moved aside as %s, rebuilt from the images", f->state_dir,
                             FACTS_FILE, why, name);
                        return;
                }
                if (errno != EEXIST)
                        break;
        }
        warn(f, "%s/%s is corrupt (%s) and cannot be moved aside: %s", f->state_dir, FACTS_FILE, why,
             strerror(errno));
}

/* Map the file if there is a good one; once per release. */
static void load(Facts *f) {
        if (f->tried)
                return;
        f->tried = true;
        _cleanup_close_ int dfd = open(f->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return;
        _cleanup_close_ int fd = openat(dfd, FACTS_FILE, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0) {
                if (errno == ELOOP)
                        move_aside(f, dfd, "a symlink");
                else if (errno != ENOENT)
                        warn(f, "cannot open %s/%s: %s", f->state_dir, FACTS_FILE, strerror(errno));
                return;
        }
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return move_aside(f, dfd, "not a regular file");
        if ((uint64_t) st.st_size > FACTS_FILE_MAX)
                return move_aside(f, dfd, "too large");
        if (st.st_size == 0)
                return move_aside(f, dfd, "empty");
        void *m = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED)
                return warn(f, "cannot map %s/%s: %s", f->state_dir, FACTS_FILE, strerror(errno));
        char err[256];
        size_t count = 0;
        if (facts_check(m, (size_t) st.st_size, &count, err, sizeof err) < 0) {
                munmap(m, (size_t) st.st_size);
                return move_aside(f, dfd, err);
        }
        f->used = calloc(count / 8 + 1, 1);
        if (!f->used) {
                munmap(m, (size_t) st.st_size);
                return;
        }
        f->map = m;
        f->map_len = (size_t) st.st_size;
        f->count = count;
}

int facts_lookup(Facts *f, const char *digest, FactsEntry *ret) {
        uint8_t t[SHA_LEN];
        if (!f || !sha256_digest_pack(digest, t))
                return -ENOENT;
        load(f);
        if (!f->map)
                return -ENOENT;
        ssize_t i = find_index(f->map, t);
        if (i < 0)
                return -ENOENT;
        f->used[i / 8] |= (uint8_t) (1U << (i % 8));
        entry_from(f->map, f->map + FACTS_HEADER_SIZE + (size_t) i * FACTS_RECORD_SIZE, ret);
        return 0;
}

int facts_add(Facts *f, const char *digest, const FactsEntry *e) {
        Pending p = {0};
        size_t rl = strnlen(e->revision, sizeof e->revision);
        if (!f || f->read_only)
                return 0;
        if (!sha256_digest_pack(digest, p.target) || !sha256_digest_pack(e->config_digest, p.config) || rl > 255 ||
            !utf8_valid_n((const uint8_t *) e->revision, rl))
                return -EINVAL;
        if (streq_ptr(e->platform_digest, digest))
                p.flags |= FACTS_F_PLATFORM_IS_TARGET;
        else if (!sha256_digest_pack(e->platform_digest, p.platform) || all_zero(p.platform, SHA_LEN))
                return -EINVAL;
        if (f->n_pending >= FACTS_PENDING_MAX)
                return -ENOMEM; /* rev_off's bound, far past FACTS_MAX */
        if (e->has_revision) {
                if (area_reserve((void **) &f->revs, &f->revs_alloc, f->revs_len + rl, 16U << 10) < 0)
                        return -ENOMEM;
                p.flags |= FACTS_F_REVISION;
                p.rev_len = (uint8_t) rl;
                p.rev_off = (uint32_t) f->revs_len;
                memcpy(f->revs + f->revs_len, e->revision, rl);
        }
        size_t bytes = f->alloc_pending * sizeof(Pending);
        if (area_reserve((void **) &f->pending, &bytes, (f->n_pending + 1) * sizeof(Pending), 1024 * sizeof(Pending)) < 0)
                return -ENOMEM;
        f->alloc_pending = bytes / sizeof(Pending);
        f->revs_len += p.rev_len;
        f->pending[f->n_pending++] = p;
        return 0;
}

static int cmp_pending(const void *a, const void *b) {
        return memcmp(((const Pending *) a)->target, ((const Pending *) b)->target, SHA_LEN);
}

/* The merged file, in two passes over the same walk: sizes, then bytes. */
typedef struct Merge {
        size_t count, strings, max;
        uint8_t *out; /* NULL: count only */
        size_t out_records;
} Merge;

static void emit(Merge *m, const uint8_t *target, const uint8_t *platform, const uint8_t *config, uint8_t flags,
                 const uint8_t *rev, size_t rl) {
        if (m->count >= m->max)
                return;
        if (m->out) {
                uint8_t *r = m->out + FACTS_HEADER_SIZE + m->count * FACTS_RECORD_SIZE;
                uint8_t *str = m->out + FACTS_HEADER_SIZE + m->out_records * FACTS_RECORD_SIZE;
                memcpy(r, target, SHA_LEN);
                if (flags & FACTS_F_PLATFORM_IS_TARGET)
                        memset(r + OFF_PLATFORM, 0, SHA_LEN);
                else
                        memcpy(r + OFF_PLATFORM, platform, SHA_LEN);
                memcpy(r + OFF_CONFIG, config, SHA_LEN);
                put32(r + OFF_REV, (uint32_t) (rl ? m->strings : 0));
                r[OFF_REV_LEN] = (uint8_t) rl;
                r[OFF_FLAGS] = flags;
                r[OFF_FLAGS + 1] = r[OFF_FLAGS + 2] = 0;
                memcpy(str + m->strings, rev, rl);
        }
        m->count++;
        m->strings += rl;
}

/* Mapped records (those looked up only, when keep_unused is false) and pending ones
 * (sorted), in target order, each target once. */
static void walk(Facts *f, bool keep_unused, Merge *m) {
        size_t i = 0, k = 0, count = f->map ? f->count : 0;
        const uint8_t *recs = f->map ? f->map + FACTS_HEADER_SIZE : NULL;
        const uint8_t *str = recs ? recs + count * FACTS_RECORD_SIZE : NULL;
        while (i < count || k < f->n_pending) {
                const uint8_t *r = i < count ? recs + i * FACTS_RECORD_SIZE : NULL;
                const Pending *p = k < f->n_pending ? &f->pending[k] : NULL;
                int c = !r ? 1 : !p ? -1 : memcmp(r, p->target, SHA_LEN);
                if (c <= 0) {
                        if (keep_unused || (f->used[i / 8] & (1U << (i % 8))))
                                emit(m, r, r + OFF_PLATFORM, r + OFF_CONFIG, r[OFF_FLAGS], str + get32(r + OFF_REV),
                                     r[OFF_REV_LEN]);
                        i++;
                        if (c == 0) /* content-addressed: the same facts */
                                k++;
                        continue;
                }
                emit(m, p->target, p->platform, p->config, p->flags,
                     (const uint8_t *) (p->rev_len ? f->revs + p->rev_off : ""), p->rev_len);
                /* the same target learned twice in one listing */
                for (k++; k < f->n_pending && memcmp(f->pending[k].target, p->target, SHA_LEN) == 0; k++)
                        ;
        }
}

int facts_save(Facts *f) {
        if (!f)
                return 0;
        if (f->read_only)
                return -EROFS;
        if (f->n_pending == 0) {
                facts_release(f);
                return 0;
        }
        qsort(f->pending, f->n_pending, sizeof(Pending), cmp_pending);
        load(f); /* merge into what the file holds now */
        bool keep_unused = true;
        Merge m = {.max = FACTS_MAX};
        walk(f, true, &m);
        if (m.count >= FACTS_MAX && f->map) { /* full: what no look-up asked for since the mapping goes first */
                keep_unused = false;
                m = (Merge){.max = FACTS_MAX};
                walk(f, false, &m);
        }
        size_t len = FACTS_HEADER_SIZE + m.count * FACTS_RECORD_SIZE + m.strings;
        /* every byte is written: its pages faulted in with the mapping (at 10,000 images
         * 1.4 MiB, ~350 pages; in a VM ~17 µs a page one fault at a time, ~8 µs populated) */
        uint8_t *out = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (out == MAP_FAILED)
                return -ENOMEM;
        Merge w = {.max = m.count, .out = out, .out_records = m.count};
        walk(f, keep_unused, &w);
        put32(out, FACTS_MAGIC);
        put32(out + 4, FACTS_VERSION);
        put32(out + 8, (uint32_t) w.count);
        put32(out + 12, (uint32_t) w.strings);
        put32(out + 16, (uint32_t) crc32(0L, out + FACTS_HEADER_SIZE, (uInt) (len - FACTS_HEADER_SIZE)));
        _cleanup_close_ int dfd = open(f->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int r = dfd < 0 ? -errno : file_replace_data_at(dfd, FACTS_FILE, 0600, 0, out, len);
        munmap(out, len);
        if (r < 0)
                return r; /* kept: the next save tries again */
        facts_release(f);
        drop_pending(f);
        return 0;
}
