/* Built ad hoc by ship_bench.sh (not by CMake).
 *   ship_bench encode N              encode+gzip throughput, no network
 *   ship_bench e2e URL N SPOOLDIR    spool (fsync per batch) + shipper to URL
 *   ship_bench batch FILE            write one gzipped JSON-lines batch of 1000 records */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "pullwatch/curlev.h"
#include "pullwatch/ship.h"
#include "pullwatch/spool.h"
#include "pullwatch/util.h"

static int make_record(char *buf, size_t size, unsigned i) {
        return snprintf(buf, size,
                        "{\"id\":\"%032x\",\"kind\":\"%s\",\"severity\":\"%s\",\"time\":\"2024-05-01T12:%02u:%02u.%06uZ\","
                        "\"node\":\"node-1\",\"namespace\":\"k8s.io\",\"image\":{\"ref\":\"docker.io/library/nginx:1.25\","
                        "\"name\":\"docker.io/library/nginx\",\"tag\":\"1.25\",\"digest\":\"sha256:%064x\"},"
                        "\"workload\":{\"namespace\":\"default\",\"pod\":\"web-%u\",\"container\":\"nginx\"},"
                        "\"message\":\"pulled docker.io/library/nginx:1.25\",\"schema\":1}",
                        i, i % 3 ? "pull" : "latest_tag", i % 3 ? "info" : "medium", i / 60 % 60, i % 60, i, i, i % 50);
}

static double now_s(void) {
        return (double) now_usec_monotonic() / 1e6;
}

static double cpu_s(void) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int bench_encode(unsigned n) {
        enum { B = 1000 };
        static char store[B][700];
        ShipRecord recs[B];
        size_t raw = 0, out = 0;
        for (unsigned i = 0; i < B; i++) {
                int l = make_record(store[i], sizeof store[i], i);
                recs[i] = (ShipRecord) { i + 1, store[i], (size_t) l };
                raw += (size_t) l;
        }
        for (int fmt = 0; fmt < 2; fmt++) {
                double t0 = now_s(), c0 = cpu_s();
                for (unsigned done = 0; done < n; done += B) {
                        char *body, *gz;
                        size_t len, gzlen;
                        int r = fmt ? ship_encode_loki(recs, B, NULL, 0, 1, 64 << 20, &body, &len)
                                    : ship_encode_jsonl(recs, B, 64 << 20, &body, &len);
                        if (r < 0 || ship_gzip(body, len, -1, &gz, &gzlen) < 0)
                                return 1;
                        out = gzlen;
                        free(body);
                        free(gz);
                }
                double dt = now_s() - t0, dc = cpu_s() - c0;
                printf("encode+gzip %-5s : %9.0f records/s  %5.2f us CPU/record  (batch of %d: %zu bytes -> %zu gzipped)\n",
                       fmt ? "loki" : "jsonl", n / dt, dc / n * 1e6, B, raw, out);
        }
        return 0;
}

static bool drained(Shipper *s) {
        ShipStats st;
        ship_get_stats(s, &st);
        return st.spool.pending_records == 0 && !st.in_flight;
}

static int bench_e2e(const char *url, unsigned n, const char *dir, const char *format, const char *transport) {
        sd_event *e = NULL;
        CurlEv *ev = NULL;
        Spool *sp = NULL;
        Shipper *s = NULL;
        char dead[512], err[256] = "";
        snprintf(dead, sizeof dead, "%s/dead.jsonl", dir);
        char spooldir[512];
        snprintf(spooldir, sizeof spooldir, "%s/spool", dir);
        if (sd_event_new(&e) < 0 || curlev_new(&ev, e) < 0 ||
            spool_open(&sp, spooldir, 1ULL << 30, SPOOL_FSYNC_BATCH, NULL) < 0)
                return 1;
        ShipConfig c;
        ship_config_init(&c);
        c.url = url;
        c.dead_letter_path = dead;
        c.format = ship_format_from_string(format);
        c.batch_max_age_usec = 10000;
        c.transport = ship_transport_from_string(transport);
        if (ship_new(&s, e, ev, sp, &c, err, sizeof err) < 0) {
                fprintf(stderr, "ship_new: %s\n", err);
                return 1;
        }
        double t0 = now_s(), c0 = cpu_s();
        unsigned syncs = 0;
        /* producer: 1000 records per loop turn, one spool_sync per turn (the default policy) */
        for (unsigned i = 0; i < n;) {
                for (unsigned k = 0; k < 1000 && i < n; k++, i++) {
                        char rec[700];
                        int l = make_record(rec, sizeof rec, i);
                        uint64_t seq;
                        if (spool_append(sp, rec, (size_t) l, &seq) < 0)
                                return 1;
                }
                spool_sync(sp);
                syncs++;
                ship_kick(s);
                sd_event_run(e, 0);
        }
        double t_appended = now_s() - t0;
        while (!drained(s))
                sd_event_run(e, 100000);
        double dt = now_s() - t0, dc = cpu_s() - c0;
        ShipStats st;
        ship_get_stats(s, &st);
        printf("e2e %-5s %-6s: %u records in %.2f s = %.0f records/s shipped; appended+synced in %.2f s (%.0f/s); "
               "%u spool_sync calls (%.0f/s); %.2f us shipper-process CPU/record; %" PRIu64 " batches, %" PRIu64
               " bytes on the wire, %" PRIu64 " retries\n",
               format, transport, n, dt, n / dt, t_appended, n / t_appended, syncs, syncs / dt, dc / n * 1e6, st.batches,
               st.bytes_sent, st.retried);
        ship_free(s);
        spool_free(sp);
        curlev_free(ev);
        sd_event_unref(e);
        return st.shipped == n ? 0 : 2;
}

static int write_batch(const char *path) {
        static char store[1000][700];
        ShipRecord recs[1000];
        for (unsigned i = 0; i < 1000; i++) {
                int l = make_record(store[i], sizeof store[i], i);
                recs[i] = (ShipRecord) { i + 1, store[i], (size_t) l };
        }
        char *body, *gz;
        size_t len, gzlen;
        if (ship_encode_jsonl(recs, 1000, 64 << 20, &body, &len) < 0 || ship_gzip(body, len, -1, &gz, &gzlen) < 0)
                return 1;
        FILE *f = fopen(path, "we");
        if (!f || fwrite(gz, 1, gzlen, f) != gzlen)
                return 1;
        fclose(f);
        return 0;
}

int main(int argc, char **argv) {
        if (argc >= 3 && streq_ptr(argv[1], "encode"))
                return bench_encode((unsigned) strtoul(argv[2], NULL, 10));
        if (argc >= 5 && streq_ptr(argv[1], "e2e"))
                return bench_e2e(argv[2], (unsigned) strtoul(argv[3], NULL, 10), argv[4], argc >= 6 ? argv[5] : "jsonl",
                                 argc >= 7 ? argv[6] : "native");
        if (argc >= 3 && streq_ptr(argv[1], "batch"))
                return write_batch(argv[2]);
        fprintf(stderr, "usage: see ship_bench.sh\n");
        return 1;
}
