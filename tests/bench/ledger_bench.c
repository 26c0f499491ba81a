/* Ledger memory and save cost: record N references (one distinct sha256 digest each,
 * or all sharing one with SHARED=1), mark 3 kinds raised on each as the agent does
 * (pull, latest_tag, untraceable), save, and print heap in use per reference, the heap
 * peak during ledger_save(), Private_Dirty after the save and the save time.
 * Heap figures come from counting malloc/calloc/realloc/free in this process.
 *
 * With --save: the cost of saving changes to a ledger of N references, side by side in
 * one process — the full rewrite every save did before the change log (ledger_compact(),
 * the peer) and the log append ledger_save() does now — for 1 and 100 references changed
 * per save (a tag moved and its finding raised), median of the runs, and the time to
 * load (ledger_open(): snapshot + replay) with a log of 0, 1,000 and as many records as
 * fit before a compaction.
 * usage: ledger_bench DIR N [SHARED] | ledger_bench --save DIR N — built and run by
 * ledger_bench.sh */
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pullwatch/ledger.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static size_t cur, peak;

void *malloc(size_t n) {
        void *p = __libc_malloc(n);
        if (p && (cur += malloc_usable_size(p)) > peak)
                peak = cur;
        return p;
}
void *calloc(size_t a, size_t b) {
        void *p = __libc_calloc(a, b);
        if (p && (cur += malloc_usable_size(p)) > peak)
                peak = cur;
        return p;
}
void free(void *p) {
        if (p)
                cur -= malloc_usable_size(p);
        __libc_free(p);
}
void *realloc(void *p, size_t n) {
        size_t old = p ? malloc_usable_size(p) : 0;
        void *q = __libc_realloc(p, n);
        if (!q)
                return NULL;
        cur -= old;
        if ((cur += malloc_usable_size(q)) > peak)
                peak = cur;
        return q;
}
void *reallocarray(void *p, size_t a, size_t b) {
        if (b && a > SIZE_MAX / b)
                return NULL;
        return realloc(p, a * b);
}

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static long private_dirty_kib(void) {
        FILE *f = fopen("/proc/self/smaps_rollup", "re");
        char line[256];
        long kib = -1;
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Private_Dirty: %ld kB", &kib) == 1)
                        break;
        fclose(f);
        return kib;
}

static const char *const kinds[] = { "pull", "latest_tag", "untraceable" };

static void fill(Ledger *l, size_t n) {
        for (size_t i = 0; i < n; i++) {
                char ref[128], digest[80];
                snprintf(ref, sizeof(ref), "127.0.0.1:5000/bench/known-%05zu:1.0.0", i);
                snprintf(digest, sizeof(digest), "sha256:%064zx", i * 2654435761U);
                if (ledger_record(l, "k8s.io", ref, digest, 1700000000000000 + i, NULL, NULL) < 0)
                        exit(1);
                for (size_t k = 0; k < 3; k++)
                        if (ledger_mark_raised(l, "k8s.io", ref, digest, kinds[k], 1700000000000000 + i) < 0)
                                exit(1);
        }
}

/* k references move to a new digest and get a tag_moved raised: a pull as the agent records it */
static void change(Ledger *l, size_t n, size_t k, uint64_t *round) {
        for (size_t j = 0; j < k; j++) {
                char ref[128], digest[80];
                size_t i = (*round * 7919 + j * 104729) % n;
                snprintf(ref, sizeof(ref), "127.0.0.1:5000/bench/known-%05zu:1.0.0", i);
                snprintf(digest, sizeof(digest), "sha256:%064" PRIx64, (uint64_t) 0xfeed0000 + *round % 4);
                uint64_t t = 1800000000000000 + *round;
                if (ledger_record(l, "k8s.io", ref, digest, t, NULL, NULL) < 0 ||
                    ledger_mark_raised(l, "k8s.io", ref, digest, "tag_moved", t) < 0)
                        exit(1);
        }
        (*round)++;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static double median_ms(uint64_t *v, size_t n) {
        qsort(v, n, sizeof(uint64_t), cmp_u64);
        return v[n / 2] / 1000.0;
}

static double load_ms(const char *dir, size_t n, uint64_t *ret_records) {
        uint64_t best = UINT64_MAX;
        for (int i = 0; i < 3; i++) {
                Ledger *l = NULL;
                LedgerOpenReport rep;
                uint64_t t = now_usec();
                if (ledger_open(&l, dir, n * 4, &rep) < 0 || rep.log_reason[0])
                        exit(1);
                t = now_usec() - t;
                best = t < best ? t : best;
                *ret_records = rep.log_records;
                ledger_free(l);
        }
        return best / 1000.0;
}

static int bench_save(const char *dir, size_t n) {
        Ledger *l = NULL;
        LedgerOpenReport rep;
        LedgerStats st;
        uint64_t round = 0, v[256];
        if (ledger_open(&l, dir, n * 4, &rep) < 0 || rep.references != 0)
                return 1;
        fill(l, n);
        if (ledger_save(l) < 0)
                return 1;
        ledger_get_stats(l, &st);
        printf("refs=%-6zu snapshot %.2f MB\n", n, st.snapshot_bytes / 1e6);
        printf("  %-34s %14s %14s %9s\n", "per save, median", "full rewrite", "log append", "ratio");
        static const size_t per[] = { 1, 100 };
        for (size_t p = 0; p < 2; p++) {
                size_t k = per[p], runs = n >= 10000 ? 9 : 25;
                double full, append;
                for (size_t r = 0; r < runs; r++) { /* the peer: what every save cost before */
                        change(l, n, k, &round);
                        uint64_t t = now_usec();
                        if (ledger_compact(l) < 0)
                                return 1;
                        v[r] = now_usec() - t;
                }
                full = median_ms(v, runs);
                runs = 101;
                for (size_t r = 0; r < runs; r++) {
                        change(l, n, k, &round);
                        uint64_t before, t;
                        ledger_get_stats(l, &st);
                        before = st.log_records;
                        t = now_usec();
                        if (ledger_save(l) < 0)
                                return 1;
                        v[r] = now_usec() - t;
                        ledger_get_stats(l, &st);
                        if (st.log_records != before + k) { /* a compaction: not an append, measure again */
                                r--;
                                continue;
                        }
                }
                append = median_ms(v, runs);
                printf("  %-34s %11.3f ms %11.3f ms %8.0fx   (%.3f vs %.4f ms per change)\n",
                       k == 1 ? "1 reference changed" : "100 references changed", full, append, full / append,
                       full / (double) k, append / (double) k);
        }
        /* load: snapshot alone, with 1,000 records, with the log at its bound */
        if (ledger_compact(l) < 0)
                return 1;
        uint64_t rec;
        double t0 = load_ms(dir, n, &rec);
        printf("  load: snapshot alone %.1f ms", t0);
        for (size_t i = 0; i < 1000; i++) {
                change(l, n, 1, &round);
                if (ledger_save(l) < 0)
                        return 1;
        }
        double t1 = load_ms(dir, n, &rec);
        printf(", + log of %" PRIu64 " records %.1f ms", rec, t1);
        /* on to the fullest log: stop one record short of the compaction */
        for (;;) {
                ledger_get_stats(l, &st);
                uint64_t bound = st.snapshot_bytes > LEDGER_LOG_COMPACT_MIN ? st.snapshot_bytes : LEDGER_LOG_COMPACT_MIN;
                uint64_t per = st.log_records ? st.log_bytes / st.log_records : 1024;
                if (st.log_bytes + 3 * per > bound)
                        break;
                change(l, n, 1, &round);
                if (ledger_save(l) < 0)
                        return 1;
        }
        double t2 = load_ms(dir, n, &rec);
        ledger_get_stats(l, &st);
        printf(", + log at its bound (%" PRIu64 " records, %.2f MB) %.1f ms\n", rec, st.log_bytes / 1e6, t2);
        ledger_free(l);
        return 0;
}

int main(int argc, char **argv) {
        if (argc == 4 && strcmp(argv[1], "--save") == 0)
                return bench_save(argv[2], strtoul(argv[3], NULL, 10));
        if (argc < 3)
                return 2;
        size_t n = strtoul(argv[2], NULL, 10);
        bool shared = argc > 3 && strcmp(argv[3], "1") == 0;
        Ledger *l = NULL;
        LedgerOpenReport rep;
        if (ledger_open(&l, argv[1], n * 2, &rep) < 0 || rep.references != 0) {
                fprintf(stderr, "ledger_open failed or %s not empty\n", argv[1]);
                return 1;
        }
        size_t base = cur;
        uint64_t t = now_usec();
        for (size_t i = 0; i < n; i++) {
                char ref[128], digest[80];
                snprintf(ref, sizeof(ref), "127.0.0.1:5000/bench/known-%05zu:1.0.0", i);
                snprintf(digest, sizeof(digest), "sha256:%064zx", shared ? (size_t) 0xabc : i * 2654435761U);
                if (ledger_record(l, "k8s.io", ref, digest, 1700000000000000 + i, NULL, NULL) < 0)
                        return 1;
                for (size_t k = 0; k < 3; k++)
                        if (ledger_mark_raised(l, "k8s.io", ref, digest, kinds[k], 1700000000000000 + i) < 0)
                                return 1;
        }
        uint64_t t_rec = now_usec() - t;
        size_t held = cur - base;
        peak = cur;
        t = now_usec();
        if (ledger_save(l) < 0)
                return 1;
        uint64_t t_save = now_usec() - t;
        printf("refs=%-6zu digests=%-8s heap=%8zu B (%5.0f B/ref)  save: peak +%8zu B, %6.2f ms  record: %6.2f ms"
               "  Private_Dirty=%ld KiB\n",
               n, shared ? "shared" : "distinct", held, (double) held / (double) n, peak - cur, t_save / 1000.0,
               t_rec / 1000.0, private_dirty_kib());
        ledger_free(l);
        return 0;
}
