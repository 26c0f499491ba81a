/* Durable append-only spool: segment files + a crash-safe ack pointer. Format and
 * corruption policy are described in include/pullwatch/spool.h. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sys/param.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <zlib.h>

#include "pullwatch/fileio.h"
#include "pullwatch/spool.h"
#include "pullwatch/util.h"
#include "pullwatch/frame.h"

#define SEGMENT_ROLL_MAX (4U << 20)     /* roll a segment once it would grow past this */
#define SEGMENT_ROLL_MIN (4U << 10)
#define SEGMENT_FILE_MAX (64ULL << 20)  /* we never write more; anything past it is not ours */
#define SEGMENT_SUFFIX ".seg"
#define SEGMENT_NAME_DIGITS 20
#define ACK_FILE "ack"
#define ACK_TMP_FILE ACK_FILE ".tmp" /* file_replace_at()'s temporary name */
#define LOCK_FILE "lock"
#define LATEST_FILE "latest"
#define LATEST_TMP_FILE LATEST_FILE ".tmp"
#define SPOOL_RBUF_KEEP (16U << 10) /* a larger read buffer is freed after each peek */
#define ACK_LINE_MAX 256

typedef struct IndexEntry {
        uint64_t seq;
        uint32_t off; /* frame offset in the segment */
        uint32_t len; /* payload length */
} IndexEntry;

typedef struct Segment {
        uint64_t name_seq; /* the file name */
        uint64_t size;     /* bytes in the file, including skipped corrupt regions */
        IndexEntry *idx;   /* owned; valid frames in order */
        size_t n_idx, alloc_idx;
} Segment;

struct Spool {
        int dfd, lock_fd;
        SpoolFsync policy;
        uint64_t max_bytes, seg_max;

        Segment *segs; /* owned, oldest first; the last one is the write segment if wfd >= 0 */
        size_t n_segs, alloc_segs;
        int wfd;
        bool wdirty, ddirty, state_dirty;

        int rfd; /* cached read fd for a non-active segment */
        uint64_t rfd_name;
        uint8_t *rbuf; /* one record as read; kept between peeks only up to SPOOL_RBUF_KEEP */
        size_t rbuf_alloc;

        uint64_t next_seq, acked;
        uint64_t disk_bytes, pending_records, pending_bytes;
        uint64_t appended, acked_count, dropped, dropped_total, corrupt;

        /* The replaceable group (spool_replace_latest): its own file, its records merged
         * into the queue by seq. latest.n_idx == 0: none. Only its unacknowledged
         * records are indexed. */
        Segment latest;
        int latest_fd; /* O_RDONLY on DIR/latest while there is a group */
        uint64_t replaced, generation;

        /* ids (first 64 bits) of the records pending when the spool was opened, sorted: a
         * record re-made after a crash carries the same id and need not be spooled twice */
        uint64_t *replay_ids;
        size_t n_replay_ids, alloc_replay_ids;
};

/* ---- pure format helpers ---- */

void spool_record_encode_header(uint8_t hdr[SPOOL_RECORD_HEADER_SIZE], uint64_t seq, const void *payload, size_t len) {
        frame_put_le32(hdr, SPOOL_RECORD_MAGIC);
        frame_put_le32(hdr + 4, (uint32_t) len);
        frame_put_le64(hdr + 8, seq);
        frame_put_le32(hdr + 16, frame_crc(hdr, payload, len));
}

int spool_record_decode(const uint8_t *buf, size_t len, uint64_t *ret_seq, const uint8_t **ret_payload,
                        size_t *ret_len, size_t *ret_frame_len) {
        if (!buf && len > 0)
                return -EINVAL;
        if (len >= 4 && frame_get_le32(buf) != SPOOL_RECORD_MAGIC)
                return -EBADMSG;
        if (len < SPOOL_RECORD_HEADER_SIZE)
                return -ENODATA;
        uint32_t plen = frame_get_le32(buf + 4);
        if (plen > SPOOL_RECORD_MAX)
                return -EBADMSG;
        if (len - SPOOL_RECORD_HEADER_SIZE < plen)
                return -ENODATA;
        const uint8_t *payload = buf + SPOOL_RECORD_HEADER_SIZE;
        if (frame_crc(buf, payload, plen) != frame_get_le32(buf + 16))
                return -EILSEQ;
        if (ret_seq)
                *ret_seq = frame_get_le64(buf + 8);
        if (ret_payload)
                *ret_payload = payload;
        if (ret_len)
                *ret_len = plen;
        if (ret_frame_len)
                *ret_frame_len = SPOOL_RECORD_HEADER_SIZE + (size_t) plen;
        return 0;
}

/* Find the next offset >= from holding a valid frame with seq > last_seq. */
static bool resync(const uint8_t *buf, size_t len, size_t from, uint64_t last_seq, size_t *ret_off) {
        static const uint8_t magic[4] = { 'P', 'W', 'S', '1' };
        while (from < len) {
                const uint8_t *m = memmem(buf + from, len - from, magic, sizeof(magic));
                if (!m)
                        return false;
                size_t off = (size_t) (m - buf);
                uint64_t seq;
                if (spool_record_decode(m, len - off, &seq, NULL, NULL, NULL) == 0 && seq > last_seq) {
                        *ret_off = off;
                        return true;
                }
                from = off + 1;
        }
        return false;
}

int spool_segment_scan(const uint8_t *buf, size_t len, uint64_t min_seq, spool_scan_visit_t visit, void *userdata,
                       SpoolScanResult *ret) {
        SpoolScanResult res = {};
        uint64_t last = min_seq;
        size_t off = 0;

        if (!buf && len > 0)
                return -EINVAL;
        while (off < len) {
                uint64_t seq;
                size_t plen, flen;
                if (spool_record_decode(buf + off, len - off, &seq, NULL, &plen, &flen) == 0 && seq > last) {
                        if (visit) {
                                int r = visit(seq, off, plen, userdata);
                                if (r < 0)
                                        return r;
                        }
                        last = seq;
                        off += flen;
                        res.valid_end = off;
                        res.records++;
                        res.last_seq = seq;
                        continue;
                }
                size_t next;
                if (!resync(buf, len, off + 1, last, &next))
                        break; /* nothing valid follows: a torn tail */
                res.corrupt_records++;
                res.skipped_bytes += next - off;
                off = next;
        }
        if (ret)
                *ret = res;
        return 0;
}

/* ---- segments ---- */

static void segment_name(char buf[static 32], uint64_t seq) {
        snprintf(buf, 32, "%0*" PRIu64 SEGMENT_SUFFIX, SEGMENT_NAME_DIGITS, seq);
}

static bool parse_segment_name(const char *name, uint64_t *ret) {
        uint64_t v = 0;
        for (unsigned i = 0; i < SEGMENT_NAME_DIGITS; i++) {
                if (name[i] < '0' || name[i] > '9')
                        return false;
                uint64_t d = (uint64_t) (name[i] - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return false;
                v = v * 10 + d;
        }
        if (!streq_ptr(name + SEGMENT_NAME_DIGITS, SEGMENT_SUFFIX))
                return false;
        *ret = v;
        return true;
}

static int segment_index_push(Segment *seg, uint64_t seq, uint64_t off, size_t len) {
        if (greedy_realloc((void **) &seg->idx, &seg->alloc_idx, seg->n_idx + 1, sizeof(IndexEntry), 64) < 0)
                return -ENOMEM;
        seg->idx[seg->n_idx++] = (IndexEntry) { .seq = seq, .off = (uint32_t) off, .len = (uint32_t) len };
        return 0;
}

static int segs_reserve(Spool *s) {
        return greedy_realloc((void **) &s->segs, &s->alloc_segs, s->n_segs + 1, sizeof(Segment), 16);
}

/* First index position in seg with seq > after. */
static size_t segment_find_after(const Segment *seg, uint64_t after) {
        size_t lo = 0, hi = seg->n_idx;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (seg->idx[mid].seq <= after)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static bool segment_is_active(const Spool *s, size_t i) {
        return s->wfd >= 0 && i + 1 == s->n_segs;
}

static int fsync_if(const Spool *s, int fd) {
        if (s->policy == SPOOL_FSYNC_NEVER)
                return 0;
        return fsync(fd) < 0 ? -errno : 0;
}

/* Close the write segment; under BATCH its unsynced data is flushed first, since
 * spool_sync() only knows the current write segment. */
static int roll(Spool *s) {
        int r = 0;
        if (s->wfd < 0)
                return 0;
        if (s->wdirty && s->policy != SPOOL_FSYNC_NEVER && fdatasync(s->wfd) < 0)
                r = -errno;
        s->wdirty = false;
        close(s->wfd);
        s->wfd = -1;
        return r;
}

/* Unlink the oldest segment; counts its unacknowledged records as dropped if asked. */
static void remove_oldest_segment(Spool *s, bool count_dropped) {
        Segment *seg = &s->segs[0];
        char name[32];

        if (segment_is_active(s, 0))
                (void) roll(s);
        if (s->rfd >= 0 && s->rfd_name == seg->name_seq) {
                close(s->rfd);
                s->rfd = -1;
        }
        for (size_t i = segment_find_after(seg, s->acked); i < seg->n_idx; i++) {
                s->pending_records--;
                s->pending_bytes -= SPOOL_RECORD_HEADER_SIZE + (uint64_t) seg->idx[i].len;
                if (count_dropped) {
                        s->dropped++;
                        s->dropped_total++;
                        s->state_dirty = true;
                }
        }
        segment_name(name, seg->name_seq);
        (void) unlinkat(s->dfd, name, 0);
        s->disk_bytes -= seg->size;
        free(seg->idx);
        memmove(s->segs, s->segs + 1, (s->n_segs - 1) * sizeof(Segment));
        s->n_segs--;
}

static uint64_t segment_last_seq(const Segment *seg) {
        return seg->n_idx > 0 ? seg->idx[seg->n_idx - 1].seq : 0;
}

/* Delete segments whose every record is acknowledged (the write segment too, so that a
 * drained spool holds no data at all). */
static void reclaim_acked(Spool *s) {
        while (s->n_segs > 0) {
                const Segment *seg = &s->segs[0];
                if (seg->n_idx > 0 && segment_last_seq(seg) > s->acked)
                        break;
                if (seg->n_idx == 0 && segment_is_active(s, 0))
                        break; /* a fresh, empty write segment */
                remove_oldest_segment(s, false);
        }
}

/* ---- the replaceable group ---- */

static uint64_t latest_pending_bytes(const Spool *s) {
        uint64_t b = 0;
        for (size_t i = 0; i < s->latest.n_idx; i++)
                b += SPOOL_RECORD_HEADER_SIZE + (uint64_t) s->latest.idx[i].len;
        return b;
}

/* Forget the group (its file is unlinked); its pending records count as dropped when
 * asked (evicted for room), else as replaced. */
static void latest_drop(Spool *s, bool count_dropped) {
        if (s->latest_fd >= 0) {
                close(s->latest_fd);
                s->latest_fd = -1;
        }
        uint64_t n = s->latest.n_idx;
        s->pending_records -= n;
        s->pending_bytes -= latest_pending_bytes(s);
        s->disk_bytes -= s->latest.size;
        if (count_dropped && n > 0) {
                s->dropped += n;
                s->dropped_total += n;
                s->state_dirty = true;
        }
        if (s->latest.size > 0 || n > 0)
                (void) unlinkat(s->dfd, LATEST_FILE, 0);
        free(s->latest.idx);
        s->latest = (Segment) {};
        s->generation++;
}

/* ---- ack state ---- */

static int write_state(Spool *s) {
        char line[ACK_LINE_MAX];
        int n = snprintf(line, sizeof(line), "pullwatch-spool 1 acked=%" PRIu64 " next=%" PRIu64 " dropped_total=%" PRIu64,
                         s->acked, s->next_seq, s->dropped_total);
        uint32_t crc = (uint32_t) crc32(crc32(0L, Z_NULL, 0), (const Bytef *) line, (uInt) n);
        n += snprintf(line + n, sizeof(line) - (size_t) n, " crc=%08" PRIx32 "\n", crc);

        int r = file_replace_data_at(s->dfd, ACK_FILE, 0600,
                                     s->policy == SPOOL_FSYNC_NEVER ? 0 : FILE_REPLACE_SYNC, line, (size_t) n);
        if (r < 0)
                return r;
        s->state_dirty = false;
        return 0;
}

static bool parse_field(const char **p, const char *name, uint64_t *ret) {
        size_t l = strlen(name);
        if (strncmp(*p, name, l) != 0)
                return false;
        *p += l;
        if (**p < '0' || **p > '9')
                return false;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(*p, &end, 10);
        if (errno != 0)
                return false;
        *ret = v;
        *p = end;
        return true;
}

/* The largest sequence number a spool can reach: 2^62, millennia at any rate of records. */
#define SPOOL_SEQ_MAX (UINT64_C(1) << 62)

/* -ENOENT: no file; -EBADMSG: unreadable or impossible. */
static int read_state(Spool *s, uint64_t *ret_acked, uint64_t *ret_next, uint64_t *ret_dropped_total) {
        char line[ACK_LINE_MAX];
        /* a symlink, a FIFO...: unreadable, and replaced by the next write_state() */
        _cleanup_close_ int fd = open_regular_file(s->dfd, ACK_FILE, O_NOFOLLOW);
        if (fd < 0)
                return fd == -ELOOP || fd == -EINVAL ? -EBADMSG : fd;
        ssize_t n = read(fd, line, sizeof(line) - 1);
        if (n < 0)
                return -errno;
        line[n] = 0;

        const char *crcpos = strstr(line, " crc=");
        if (!crcpos)
                return -EBADMSG;
        uint32_t crc = (uint32_t) crc32(crc32(0L, Z_NULL, 0), (const Bytef *) line, (uInt) (crcpos - line));
        char expect[32];
        snprintf(expect, sizeof(expect), " crc=%08" PRIx32 "\n", crc);
        if (!streq_ptr(crcpos, expect))
                return -EBADMSG;

        const char *p = line;
        uint64_t acked, next, dropped;
        if (!startswith(p, "pullwatch-spool 1 "))
                return -EBADMSG;
        p += strlen("pullwatch-spool 1 ");
        if (!parse_field(&p, "acked=", &acked) || !parse_field(&p, " next=", &next) ||
            !parse_field(&p, " dropped_total=", &dropped) || p != crcpos)
                return -EBADMSG;
        /* Numbers write_state() cannot have written: acked < next always, and next that
         * large is a file written by hand (acked = UINT64_MAX made acked + 1 wrap, and
         * nothing was ever sent again). Refused like a corrupt file. */
        if (next == 0 || acked >= next || next > SPOOL_SEQ_MAX)
                return -EBADMSG;
        *ret_acked = acked;
        *ret_next = next;
        *ret_dropped_total = dropped;
        return 0;
}

/* ---- open / free ---- */

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static int list_segments(int dfd, uint64_t **ret, size_t *ret_n) {
        _cleanup_free_ uint64_t *names = NULL;
        size_t n = 0, alloc = 0;
        int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -errno;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
                uint64_t v;
                if (!parse_segment_name(de->d_name, &v))
                        continue;
                if (greedy_realloc((void **) &names, &alloc, n + 1, sizeof(uint64_t), 16) < 0) {
                        closedir(d);
                        return -ENOMEM;
                }
                names[n++] = v;
        }
        closedir(d);
        if (n > 0)
                qsort(names, n, sizeof(uint64_t), cmp_u64);
        *ret = TAKE_PTR(names);
        *ret_n = n;
        return 0;
}

/* The record id of a payload: the 32 hex digits of a leading `"id":"…"` (every record the
 * agent writes starts {"schema":1,"id":"…"), as the first 64 bits; 0 when there is none. */
static uint64_t payload_id(const uint8_t *p, size_t len) {
        static const char key[] = "\"id\":\"";
        size_t window = MIN(len, (size_t) 64);
        const uint8_t *k = memmem(p, window, key, sizeof key - 1);
        if (!k || (size_t) (k - p) + (sizeof key - 1) + 32 > len)
                return 0;
        return spool_id_prefix((const char *) k + sizeof key - 1);
}

uint64_t spool_id_prefix(const char *id) {
        uint64_t v = 0;
        if (!id)
                return 0;
        for (unsigned i = 0; i < 32; i++) {
                char c = id[i];
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
                if (d < 0)
                        return 0;
                if (i < 16)
                        v = v << 4 | (uint64_t) d;
        }
        return v ? v : 1;
}

typedef struct ScanCtx {
        Spool *s;
        Segment *seg;
        const uint8_t *buf;
} ScanCtx;

static int scan_visit(uint64_t seq, size_t offset, size_t payload_len, void *userdata) {
        ScanCtx *c = userdata;
        if (seq > c->s->acked) {
                uint64_t id = payload_id(c->buf + offset + SPOOL_RECORD_HEADER_SIZE, payload_len);
                if (id != 0 && greedy_realloc((void **) &c->s->replay_ids, &c->s->alloc_replay_ids,
                                              c->s->n_replay_ids + 1, sizeof(uint64_t), 64) >= 0)
                        c->s->replay_ids[c->s->n_replay_ids++] = id;
        }
        return segment_index_push(c->seg, seq, offset, payload_len);
}

static int cmp_id(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

bool spool_pending_at_open(const Spool *s, const char *id) {
        uint64_t v = spool_id_prefix(id);
        return s && v && s->n_replay_ids > 0 &&
               bsearch(&v, s->replay_ids, s->n_replay_ids, sizeof(uint64_t), cmp_id) != NULL;
}

void spool_forget_pending_at_open(Spool *s) {
        if (!s)
                return;
        free(s->replay_ids);
        s->replay_ids = NULL;
        s->n_replay_ids = s->alloc_replay_ids = 0;
}

/* Load one segment file: verify, index, trim a torn tail. Empty results are unlinked. */
static int load_segment(Spool *s, uint64_t name_seq, uint64_t *last_seq, SpoolOpenReport *rep) {
        char name[32];
        segment_name(name, name_seq);
        _cleanup_close_ int fd = openat(s->dfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return 0; /* not ours, leave it alone */

        uint64_t size = (uint64_t) st.st_size;
        size_t maplen = (size_t) MIN(size, SEGMENT_FILE_MAX);
        Segment seg = { .name_seq = name_seq };
        SpoolScanResult res = {};
        if (maplen > 0) {
                void *m = mmap(NULL, maplen, PROT_READ, MAP_PRIVATE, fd, 0);
                if (m == MAP_FAILED)
                        return -errno;
                ScanCtx ctx = {.s = s, .seg = &seg, .buf = m};
                int r = spool_segment_scan(m, maplen, *last_seq, scan_visit, &ctx, &res);
                munmap(m, maplen);
                if (r < 0) {
                        free(seg.idx);
                        return r;
                }
        }
        if (res.valid_end < size) {
                if (ftruncate(fd, (off_t) res.valid_end) < 0) {
                        free(seg.idx);
                        return -errno;
                }
                (void) fsync_if(s, fd);
                rep->trimmed_bytes += size - res.valid_end;
        }
        rep->records += res.records;
        rep->corrupt_records += res.corrupt_records;
        rep->skipped_bytes += res.skipped_bytes;
        if (res.records == 0) {
                free(seg.idx);
                (void) unlinkat(s->dfd, name, 0);
                return 0;
        }
        int r = segs_reserve(s);
        if (r < 0) {
                free(seg.idx);
                return r;
        }
        seg.size = res.valid_end;
        s->segs[s->n_segs++] = seg;
        s->disk_bytes += seg.size;
        *last_seq = res.last_seq;
        return 0;
}

/* Load DIR/latest: all of it or nothing (it is replaced atomically, so anything short
 * of whole is damage: discarded, counted as corrupt). Only unacknowledged records are
 * indexed; a group wholly acknowledged is unlinked. */
static int load_latest(Spool *s, uint64_t *ret_last, SpoolOpenReport *rep) {
        _cleanup_close_ int fd = openat(s->dfd, LATEST_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return errno == ENOENT ? 0 : errno == ELOOP ? (unlinkat(s->dfd, LATEST_FILE, 0), 0) : -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || st.st_size == 0 || (uint64_t) st.st_size > SEGMENT_FILE_MAX) {
                (void) unlinkat(s->dfd, LATEST_FILE, 0);
                return 0;
        }
        size_t len = (size_t) st.st_size;
        void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED)
                return -errno;
        Segment seg = {};
        SpoolScanResult res = {};
        int r = spool_segment_scan(m, len, 0, NULL, NULL, &res);
        if (r >= 0 && (res.valid_end != len || res.corrupt_records > 0))
                r = -EBADMSG;
        for (size_t off = 0; r >= 0 && off < len;) {
                uint64_t seq;
                size_t plen, flen;
                r = spool_record_decode((const uint8_t *) m + off, len - off, &seq, NULL, &plen, &flen);
                if (r >= 0 && seq > s->acked)
                        r = segment_index_push(&seg, seq, off, plen);
                off += flen;
        }
        munmap(m, len);
        if (r == -ENOMEM) {
                free(seg.idx);
                return r;
        }
        if (r < 0 || seg.n_idx == 0) {
                if (r < 0)
                        rep->corrupt_records += 1;
                free(seg.idx);
                (void) unlinkat(s->dfd, LATEST_FILE, 0);
                return 0;
        }
        *ret_last = res.last_seq;
        seg.size = len;
        s->latest = seg;
        s->latest_fd = TAKE_FD(fd);
        s->disk_bytes += len;
        s->pending_records += seg.n_idx;
        s->pending_bytes += latest_pending_bytes(s);
        rep->records += seg.n_idx;
        return 0;
}

int spool_open(Spool **ret, const char *dir, uint64_t max_bytes, SpoolFsync policy, SpoolOpenReport *report) {
        SpoolOpenReport rep = {};
        _cleanup_free_ uint64_t *names = NULL;
        size_t n_names = 0;
        int r;

        if (!ret || isempty(dir) || max_bytes == 0 || (unsigned) policy > SPOOL_FSYNC_NEVER)
                return -EINVAL;
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return -errno;

        Spool *s = calloc(1, sizeof(Spool));
        if (!s)
                return -ENOMEM;
        s->wfd = s->rfd = s->lock_fd = s->latest_fd = -1;
        s->policy = policy;
        s->max_bytes = max_bytes;
        s->seg_max = MAX(MIN(max_bytes / 4, (uint64_t) SEGMENT_ROLL_MAX), (uint64_t) SEGMENT_ROLL_MIN);

        s->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->dfd < 0) {
                r = -errno;
                goto fail;
        }
        s->lock_fd = openat(s->dfd, LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (s->lock_fd < 0) {
                r = -errno;
                goto fail;
        }
        if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
                r = errno == EWOULDBLOCK ? -EBUSY : -errno;
                goto fail;
        }

        uint64_t next_hint = 1;
        r = read_state(s, &s->acked, &next_hint, &s->dropped_total);
        if (r == -EBADMSG)
                rep.ack_state_reset = true;
        else if (r < 0 && r != -ENOENT)
                goto fail;
        (void) unlinkat(s->dfd, ACK_TMP_FILE, 0);
        (void) unlinkat(s->dfd, LATEST_TMP_FILE, 0);

        r = list_segments(s->dfd, &names, &n_names);
        if (r < 0)
                goto fail;
        uint64_t last_seq = 0;
        for (size_t i = 0; i < n_names; i++) {
                r = load_segment(s, names[i], &last_seq, &rep);
                if (r < 0)
                        goto fail;
        }

        uint64_t latest_last = 0;
        r = load_latest(s, &latest_last, &rep);
        if (r < 0)
                goto fail;
        s->next_seq = MAX(MAX(MAX(next_hint, last_seq + 1), latest_last + 1), s->acked + 1);
        for (size_t i = 0; i < s->n_segs; i++) {
                const Segment *seg = &s->segs[i];
                for (size_t j = segment_find_after(seg, s->acked); j < seg->n_idx; j++) {
                        s->pending_records++;
                        s->pending_bytes += SPOOL_RECORD_HEADER_SIZE + (uint64_t) seg->idx[j].len;
                }
        }
        reclaim_acked(s);
        if (s->n_replay_ids > 1)
                qsort(s->replay_ids, s->n_replay_ids, sizeof(uint64_t), cmp_id);

        /* Keep appending to the newest segment if it has room. */
        if (s->n_segs > 0 && s->segs[s->n_segs - 1].size < s->seg_max) {
                char name[32];
                segment_name(name, s->segs[s->n_segs - 1].name_seq);
                s->wfd = openat(s->dfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
                if (s->wfd < 0) {
                        r = -errno;
                        goto fail;
                }
        }
        if (rep.ack_state_reset) {
                r = write_state(s);
                if (r < 0)
                        goto fail;
        }

        if (report)
                *report = rep;
        *ret = s;
        return 0;
fail:
        spool_free(s);
        return r;
}

int spool_sync(Spool *s) {
        int r = 0;
        if (!s)
                return -EINVAL;
        if (s->policy == SPOOL_FSYNC_NEVER) {
                s->wdirty = s->ddirty = false;
        } else {
                if (s->wdirty && s->wfd >= 0) {
                        if (fdatasync(s->wfd) < 0)
                                return -errno;
                        s->wdirty = false;
                }
                if (s->ddirty) {
                        if (fsync(s->dfd) < 0)
                                return -errno;
                        s->ddirty = false;
                }
        }
        if (s->state_dirty)
                r = write_state(s);
        return r;
}

Spool *spool_free(Spool *s) {
        if (!s)
                return NULL;
        if (s->dfd >= 0 && s->lock_fd >= 0)
                (void) spool_sync(s);
        (void) roll(s);
        free(s->replay_ids);
        free(s->latest.idx);
        if (s->latest_fd >= 0)
                close(s->latest_fd);
        if (s->rfd >= 0)
                close(s->rfd);
        for (size_t i = 0; i < s->n_segs; i++)
                free(s->segs[i].idx);
        free(s->segs);
        free(s->rbuf);
        if (s->lock_fd >= 0)
                close(s->lock_fd);
        if (s->dfd >= 0)
                close(s->dfd);
        free(s);
        return NULL;
}

/* ---- append ---- */

/* Make room for a frame of `need` bytes: roll a full write segment, then drop the
 * oldest segments until the total fits under max_bytes. */
static int make_room(Spool *s, uint64_t need) {
        if (s->wfd >= 0) {
                const Segment *w = &s->segs[s->n_segs - 1];
                if (w->size > 0 && w->size + need > s->seg_max) {
                        int r = roll(s);
                        if (r < 0)
                                return r;
                }
        }
        /* the replaceable group goes first: a snapshot is never worth a pull or a finding */
        if (s->disk_bytes + need > s->max_bytes && s->latest.size > 0)
                latest_drop(s, true);
        while (s->disk_bytes + need > s->max_bytes && s->n_segs > 0)
                remove_oldest_segment(s, true);
        if (s->state_dirty)
                (void) write_state(s); /* retried by spool_sync()/spool_ack() if it fails */
        return 0;
}

static int open_new_segment(Spool *s) {
        char name[32];
        int r = segs_reserve(s);
        if (r < 0)
                return r;
        segment_name(name, s->next_seq);
        int fd = openat(s->dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        if (s->policy == SPOOL_FSYNC_ALWAYS && fsync(s->dfd) < 0) {
                r = -errno;
                close(fd);
                (void) unlinkat(s->dfd, name, 0);
                return r;
        }
        s->ddirty = s->policy != SPOOL_FSYNC_ALWAYS;
        s->segs[s->n_segs++] = (Segment) { .name_seq = s->next_seq };
        s->wfd = fd;
        return 0;
}

int spool_append(Spool *s, const void *data, size_t len, uint64_t *ret_seq) {
        uint8_t hdr[SPOOL_RECORD_HEADER_SIZE];
        int r;

        if (!s || (!data && len > 0))
                return -EINVAL;
        if (len > SPOOL_RECORD_MAX)
                return -EMSGSIZE;
        uint64_t need = SPOOL_RECORD_HEADER_SIZE + (uint64_t) len;
        if (need > s->max_bytes)
                return -EMSGSIZE;

        r = make_room(s, need);
        if (r < 0)
                return r;
        if (s->wfd < 0) {
                r = open_new_segment(s);
                if (r < 0)
                        return r;
        }
        Segment *seg = &s->segs[s->n_segs - 1];
        /* Reserve the index slot first, so nothing can fail after the write. */
        if (seg->n_idx == seg->alloc_idx) {
                r = segment_index_push(seg, 0, 0, 0);
                if (r < 0)
                        return r;
                seg->n_idx--;
        }

        spool_record_encode_header(hdr, s->next_seq, data, len);
        uint64_t done = 0;
        while (done < need) {
                struct iovec v[2];
                int nv = 0;
                if (done < sizeof(hdr))
                        v[nv++] = (struct iovec) { hdr + done, sizeof(hdr) - done };
                uint64_t pdone = done > sizeof(hdr) ? done - sizeof(hdr) : 0;
                if (len > pdone)
                        v[nv++] = (struct iovec) { (uint8_t *) data + pdone, len - pdone };
                ssize_t w = pwritev(s->wfd, v, nv, (off_t) (seg->size + done));
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0) {
                        r = w < 0 ? -errno : -ENOSPC;
                        goto undo;
                }
                done += (uint64_t) w;
        }
        if (s->policy == SPOOL_FSYNC_ALWAYS) {
                if (fdatasync(s->wfd) < 0) {
                        r = -errno;
                        goto undo;
                }
        } else
                s->wdirty = true;

        (void) segment_index_push(seg, s->next_seq, seg->size, len); /* slot reserved above */
        seg->size += need;
        s->disk_bytes += need;
        s->pending_records++;
        s->pending_bytes += need;
        s->appended++;
        if (ret_seq)
                *ret_seq = s->next_seq;
        s->next_seq++;
        return 0;

undo:
        /* Leave the file exactly as it was: a partial frame would read as a torn tail. */
        (void) ftruncate(s->wfd, (off_t) seg->size);
        return r;
}

int spool_replace_latest(Spool *s, const struct iovec *recs, size_t n) {
        if (!s || (!recs && n > 0) || n == 0)
                return -EINVAL;
        uint64_t total = 0;
        for (size_t i = 0; i < n; i++) {
                if (!recs[i].iov_base && recs[i].iov_len > 0)
                        return -EINVAL;
                if (recs[i].iov_len > SPOOL_RECORD_MAX)
                        return -EMSGSIZE;
                total += SPOOL_RECORD_HEADER_SIZE + (uint64_t) recs[i].iov_len;
        }
        /* room beside the other records: the group never evicts them */
        if (total > SEGMENT_FILE_MAX || s->disk_bytes - s->latest.size + total > s->max_bytes)
                return -ENOSPC;

        _cleanup_free_ uint8_t *buf = malloc((size_t) total);
        Segment seg = {};
        if (!buf)
                return -ENOMEM;
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
                if (segment_index_push(&seg, s->next_seq + i, off, recs[i].iov_len) < 0) {
                        free(seg.idx);
                        return -ENOMEM;
                }
                spool_record_encode_header(buf + off, s->next_seq + i, recs[i].iov_base, recs[i].iov_len);
                if (recs[i].iov_len > 0)
                        memcpy(buf + off + SPOOL_RECORD_HEADER_SIZE, recs[i].iov_base, recs[i].iov_len);
                off += SPOOL_RECORD_HEADER_SIZE + recs[i].iov_len;
        }
        /* the seqs are taken even if the write fails: a failure after the rename (the
         * directory fsync) leaves the new group on disk, and the next open must not find
         * its seqs reused by later records */
        s->next_seq += n;
        /* temp, fsync, rename, fsync DIR: a crash leaves the old group or the new one */
        int r = file_replace_data_at(s->dfd, LATEST_FILE, 0600, s->policy == SPOOL_FSYNC_NEVER ? 0 : FILE_REPLACE_SYNC,
                                     buf, (size_t) total);
        int fd = r < 0 ? -1 : openat(s->dfd, LATEST_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (r >= 0 && fd < 0)
                r = -errno;
        if (r < 0) {
                /* the old group is still the file on disk (or, if only the reopen failed, the
                 * new one is: both are whole groups; the next open reads whichever it is) */
                free(seg.idx);
                return r;
        }
        uint64_t had = s->latest.n_idx;
        if (s->latest_fd >= 0)
                close(s->latest_fd);
        s->pending_records -= had;
        s->pending_bytes -= latest_pending_bytes(s);
        s->disk_bytes -= s->latest.size; /* the rename replaced the old file */
        s->replaced += had;
        free(s->latest.idx);
        seg.size = total;
        s->latest = seg;
        s->latest_fd = fd;
        s->disk_bytes += total;
        s->pending_records += n;
        s->pending_bytes += total;
        s->appended += n;
        s->generation++;
        return 0;
}

uint64_t spool_generation(const Spool *s) {
        return s ? s->generation : 0;
}

/* ---- read ---- */

static int segment_read_fd(Spool *s, size_t i) {
        /* wfd is O_WRONLY: every segment, the write one included, is read via this cached fd */
        const Segment *seg = &s->segs[i];
        if (s->rfd >= 0 && s->rfd_name == seg->name_seq)
                return s->rfd;
        if (s->rfd >= 0) {
                close(s->rfd);
                s->rfd = -1;
        }
        char name[32];
        segment_name(name, seg->name_seq);
        int fd = openat(s->dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        s->rfd = fd;
        s->rfd_name = seg->name_seq;
        return fd;
}

/* si == SIZE_MAX: the replaceable group's file. */
static int read_record(Spool *s, size_t si, const IndexEntry *e, const uint8_t **ret_payload) {
        size_t flen = SPOOL_RECORD_HEADER_SIZE + (size_t) e->len;
        if (s->rbuf_alloc < flen) {
                uint8_t *p = realloc(s->rbuf, flen);
                if (!p)
                        return -ENOMEM;
                s->rbuf = p;
                s->rbuf_alloc = flen;
        }
        int fd = si == SIZE_MAX ? s->latest_fd : segment_read_fd(s, si);
        if (fd < 0)
                return fd;
        size_t got = 0;
        while (got < flen) {
                ssize_t n = pread(fd, s->rbuf + got, flen - got, (off_t) e->off + (off_t) got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -EBADMSG;
                got += (size_t) n;
        }
        uint64_t seq;
        size_t plen;
        if (spool_record_decode(s->rbuf, flen, &seq, ret_payload, &plen, NULL) < 0 || seq != e->seq || plen != e->len)
                return -EBADMSG;
        return 0;
}

static int peek_records(Spool *s, uint64_t after_seq, size_t max_records, size_t max_bytes, spool_visit_t visit,
                        void *userdata) {
        uint64_t after = MAX(after_seq, s->acked);
        size_t visited = 0, bytes = 0;

        /* Segments are ordered by seq: find the first holding a record > after. */
        size_t lo = 0, hi = s->n_segs;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (s->segs[mid].n_idx == 0 || segment_last_seq(&s->segs[mid]) > after)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        /* two cursors merged by seq: the segments' and the replaceable group's */
        size_t si = lo, j = si < s->n_segs ? segment_find_after(&s->segs[si], after) : 0;
        size_t lj = segment_find_after(&s->latest, after);
        while (visited < max_records) {
                while (si < s->n_segs && j >= s->segs[si].n_idx)
                        if (++si < s->n_segs)
                                j = segment_find_after(&s->segs[si], after);
                const IndexEntry *m = si < s->n_segs ? &s->segs[si].idx[j] : NULL;
                const IndexEntry *l = lj < s->latest.n_idx ? &s->latest.idx[lj] : NULL;
                if (!m && !l)
                        break;
                bool from_latest = l && (!m || l->seq < m->seq);
                const IndexEntry *e = from_latest ? l : m;
                if (visited > 0 && bytes + e->len > max_bytes)
                        break;
                const uint8_t *payload;
                int r = read_record(s, from_latest ? SIZE_MAX : si, e, &payload);
                if (from_latest)
                        lj++;
                else
                        j++;
                if (r == -EBADMSG) {
                        s->corrupt++; /* went bad on disk after open: skip it */
                        continue;
                }
                if (r < 0)
                        return r;
                visited++;
                bytes += e->len;
                r = visit(e->seq, payload, e->len, userdata);
                if (r < 0)
                        return r;
                if (r > 0)
                        break;
        }
        return (int) MIN(visited, (size_t) INT_MAX);
}

int spool_peek(Spool *s, uint64_t after_seq, size_t max_records, size_t max_bytes, spool_visit_t visit, void *userdata) {
        if (!s || !visit)
                return -EINVAL;
        int r = peek_records(s, after_seq, max_records, max_bytes, visit, userdata);
        /* One inventory record can be a few hundred KiB: a read buffer sized for it and kept
         * stayed private dirty memory of an idle agent for good (314 KiB at 1,000 images).
         * Small records, the common case, keep theirs from one batch to the next. */
        if (s->rbuf_alloc > SPOOL_RBUF_KEEP) {
                free(s->rbuf);
                s->rbuf = NULL;
                s->rbuf_alloc = 0;
        }
        return r;
}

/* ---- ack ---- */

int spool_ack(Spool *s, uint64_t upto_seq) {
        if (!s)
                return -EINVAL;
        uint64_t upto = MIN(upto_seq, s->next_seq - 1);
        if (upto <= s->acked)
                return s->state_dirty ? write_state(s) : 0;

        uint64_t old = s->acked;
        s->acked = upto;
        int r = write_state(s);
        if (r < 0) {
                s->acked = old;
                return r;
        }
        for (size_t i = 0; i < s->n_segs; i++) {
                const Segment *seg = &s->segs[i];
                if (seg->n_idx > 0 && seg->idx[0].seq > upto)
                        break;
                for (size_t j = segment_find_after(seg, old); j < seg->n_idx && seg->idx[j].seq <= upto; j++) {
                        s->pending_records--;
                        s->pending_bytes -= SPOOL_RECORD_HEADER_SIZE + (uint64_t) seg->idx[j].len;
                        s->acked_count++;
                }
        }
        /* the group's acknowledged records leave its index; a group wholly acknowledged
         * leaves the disk */
        size_t k = segment_find_after(&s->latest, upto);
        if (k > 0) {
                for (size_t i = 0; i < k; i++) {
                        s->pending_records--;
                        s->pending_bytes -= SPOOL_RECORD_HEADER_SIZE + (uint64_t) s->latest.idx[i].len;
                        s->acked_count++;
                }
                memmove(s->latest.idx, s->latest.idx + k, (s->latest.n_idx - k) * sizeof(IndexEntry));
                s->latest.n_idx -= k;
                if (s->latest.n_idx == 0)
                        latest_drop(s, false);
        }
        reclaim_acked(s);
        return 0;
}

void spool_get_stats(const Spool *s, SpoolStats *ret) {
        if (!s || !ret)
                return;
        *ret = (SpoolStats) {
                .appended = s->appended,
                .acked = s->acked_count,
                .dropped = s->dropped,
                .dropped_total = s->dropped_total,
                .pending_records = s->pending_records,
                .pending_bytes = s->pending_bytes,
                .disk_bytes = s->disk_bytes,
                .corrupt = s->corrupt,
                .replaced = s->replaced,
        };
}
