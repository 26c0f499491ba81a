/* Ledger memory and save cost: record N references (one distinct sha256 digest each,
 * or all sharing one with SHARED=1), mark 3 kinds raised on each as the agent does
 * (pull, latest_tag, untraceable), save, and print heap in use per reference, the heap
 * peak during ledger_save(), Private_Dirty after the save and the save time.
 * Heap figures come from counting malloc/calloc/realloc/free in this process.
 * usage: ledger_bench DIR N [SHARED] — built and run by ledger_bench.sh */
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

int main(int argc, char **argv) {
        static const char *const kinds[] = { "pull", "latest_tag", "untraceable" };
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
