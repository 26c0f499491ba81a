/* Spool throughput per fsync policy: appends/s and fsyncs/s for N records of ~600 bytes,
 * acknowledging as a shipper would (peek a batch, ack it). Not a ctest: run
 * tests/bench/spool_bench.sh, which also runs peers (dd oflag=dsync, python) on the same
 * disk for comparison.
 *
 * usage: spool_bench DIR [RECORDS [BATCH]] */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "pullwatch/spool.h"

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}
static double cpu_s(void) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6 + (double) ru.ru_stime.tv_sec +
               (double) ru.ru_stime.tv_usec / 1e6;
}

static int count_cb(uint64_t seq, const void *data, size_t len, void *userdata) {
        uint64_t *last = userdata;
        *last = seq;
        return 0;
}

static int run(const char *base, const char *name, SpoolFsync pol, unsigned long n, unsigned long batch) {
        char dir[4096], cmd[4200];
        snprintf(dir, sizeof(dir), "%s/spool-%s", base, name);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
                return 1;

        Spool *s = NULL;
        int r = spool_open(&s, dir, 1ULL << 30, pol, NULL);
        if (r < 0) {
                fprintf(stderr, "spool_open %s: %s\n", dir, strerror(-r));
                return 1;
        }
        char rec[600];
        memset(rec, 'x', sizeof(rec));
        unsigned long syncs = 0;
        double t0 = now_s(), c0 = cpu_s();
        for (unsigned long i = 1; i <= n; i++) {
                int k = snprintf(rec, sizeof(rec), "{\"id\":\"%032lx\",\"kind\":\"pull\",\"pad\":\"", i);
                rec[k] = 'x';
                rec[sizeof(rec) - 2] = '"';
                rec[sizeof(rec) - 1] = '}';
                r = spool_append(s, rec, sizeof(rec), NULL);
                if (r < 0) {
                        fprintf(stderr, "append: %s\n", strerror(-r));
                        return 1;
                }
                if (pol == SPOOL_FSYNC_ALWAYS)
                        syncs++;
                if (i % batch == 0) {
                        if (pol == SPOOL_FSYNC_BATCH) {
                                if (spool_sync(s) < 0)
                                        return 1;
                                syncs++;
                        }
                }
        }
        double t_append = now_s() - t0;
        /* drain like the shipper: peek a batch, ack it */
        double t1 = now_s();
        uint64_t after = 0, last = 0;
        for (;;) {
                r = spool_peek(s, after, batch, 1U << 20, count_cb, &last);
                if (r <= 0)
                        break;
                after = last;
                if (spool_ack(s, after) < 0)
                        return 1;
        }
        double t_drain = now_s() - t1, cpu = cpu_s() - c0;
        spool_free(s);
        printf("%-28s %10.0f appends/s %9.0f fsyncs/s %9.0f peek+ack rec/s  %5.2f us CPU/rec\n", name,
               (double) n / t_append, (double) syncs / t_append, (double) n / t_drain, cpu * 1e6 / (double) n);
        return 0;
}

int main(int argc, char **argv) {
        if (argc < 2) {
                fprintf(stderr, "usage: %s DIR [RECORDS [BATCH]]\n", argv[0]);
                return 2;
        }
        unsigned long n = argc > 2 ? strtoul(argv[2], NULL, 10) : 100000;
        unsigned long batch = argc > 3 ? strtoul(argv[3], NULL, 10) : 500;
        unsigned long n_always = n > 10000 ? 10000 : n; /* ALWAYS is bounded by the disk flush latency */
        if (n == 0 || batch == 0)
                return 2;
        printf("%lu records of 600 bytes (ALWAYS: %lu), batch %lu\n", n, n_always, batch);
        return run(argv[1], "spool ALWAYS", SPOOL_FSYNC_ALWAYS, n_always, batch) ||
               run(argv[1], "spool BATCH (default)", SPOOL_FSYNC_BATCH, n, batch) ||
               run(argv[1], "spool NEVER", SPOOL_FSYNC_NEVER, n, batch);
}
