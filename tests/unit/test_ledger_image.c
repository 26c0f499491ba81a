/* ledger: the frozen image (references moved, after a load and each compaction, into a
 * private mapping of an unlinked file in the state directory). A randomized model test:
 * a ledger with a state directory (saved, compacted and reopened at random, so its
 * references are in an image, in the pool or both) against one without (never frozen)
 * given the same changes, compared whole after every step; and the image's pages stay
 * clean through a re-list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>
#include <unistd.h>

#include <cmocka.h>

#include "pullwatch/ledger.h"
#include "pullwatch/util.h"

#define HOUR (3600ULL * 1000000ULL)

static uint64_t rng = 88172645463325252ULL;
static uint64_t next(void) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

static void digest_of(unsigned d, char out[72]) {
        snprintf(out, 72, "sha256:%064x", d * 2654435761U);
}

static void make_dir(char *dir, size_t size) {
        snprintf(dir, size, "/tmp/test_ledger_image.XXXXXX");
        assert_non_null(mkdtemp(dir));
}

static void remove_dir(const char *dir) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
}

/* Both ledgers' whole content, as the snapshot text, must be the same. */
static void assert_same(Ledger *f, Ledger *m, size_t step) {
        _cleanup_free_ char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        assert_int_equal(ledger_format(f, &a, &al), 0);
        assert_int_equal(ledger_format(m, &b, &bl), 0);
        if (al != bl || memcmp(a, b, al) != 0)
                fail_msg("step %zu: the ledgers differ:\n%.*s\n---\n%.*s", step, (int) MIN(al, 2000U), a,
                         (int) MIN(bl, 2000U), b);
}

typedef struct Seen {
        char ns[16], ref[128], digest[72];
} Seen;

typedef struct Seens {
        Seen v[512];
        size_t n;
} Seens;

static int collect(const char *ns, const char *ref, const LedgerDigest *d, size_t n, size_t cur, void *userdata) {
        Seens *s = userdata;
        assert_true(s->n < ELEMENTSOF(s->v) && cur < n);
        snprintf(s->v[s->n].ns, sizeof s->v[s->n].ns, "%s", ns);
        snprintf(s->v[s->n].ref, sizeof s->v[s->n].ref, "%s", ref);
        snprintf(s->v[s->n].digest, sizeof s->v[s->n].digest, "%s", d[cur].digest);
        s->n++;
        return 0;
}

/* Each reference at its own µs: a tie in last_seen is pruned in table order, which a reload changes. */
static void relist(Ledger *f, Ledger *m, uint64_t *now) {
        static Seens s;
        s.n = 0;
        assert_int_equal(ledger_foreach(m, collect, &s), 0);
        for (size_t i = 0; i < s.n; i++) {
                bool cf = true, cm = true;
                ++*now;
                assert_int_equal(ledger_record(f, s.v[i].ns, s.v[i].ref, s.v[i].digest, *now, NULL, &cf), 0);
                assert_int_equal(ledger_record(m, s.v[i].ns, s.v[i].ref, s.v[i].digest, *now, NULL, &cm), 0);
                assert_false(cf || cm);
        }
}

static void test_image_model(void **state) {
        static const char *const nss[] = { "k8s.io", "moby", "default" };
        static const FindingKind kinds[] = { FINDING_PULL, FINDING_LATEST_TAG, FINDING_TAG_MOVED };
        char dir[64];
        Ledger *f = NULL, *m = NULL;
        LedgerStats st;
        uint64_t now = 1700000000ULL * 1000000ULL;
        size_t frozen_seen = 0, crashes = 0;
        make_dir(dir, sizeof dir);
        assert_int_equal(ledger_open(&f, dir, 80, NULL), 0);
        assert_int_equal(ledger_new(&m, 80), 0);
        for (size_t step = 0; step < 1500; step++) {
                char ref[64], dg[72];
                const char *ns = nss[next() % ELEMENTSOF(nss)];
                unsigned k = (unsigned) (next() % 60);
                if (k % 7 == 0)
                        snprintf(ref, sizeof ref, "docker.io/library/r%u@sha256:%064x", k, k);
                else
                        snprintf(ref, sizeof ref, "docker.io/library/r%u:%u", k % 20, k);
                /* mostly one of the reference's own three digests, sometimes one it shares */
                digest_of(next() % 10 < 8 ? 100 + k * 3 + (unsigned) (next() % 3) : (unsigned) (next() % 16), dg);
                /* mostly within the hour (re-lists), sometimes the next hours, sometimes back */
                uint64_t r = next() % 100;
                now += 1 + (r < 80 ? next() % 1000000 : r < 95 ? HOUR / 2 + next() % HOUR : 0); /* no ties: prune order */
                uint64_t t = r >= 97 ? now - next() % (2 * HOUR) : now;
                unsigned op = (unsigned) (next() % 100);
                if (op < 62) {
                        bool cf = false, cm = false;
                        char pf[PW_DIGEST_MAX], pm[PW_DIGEST_MAX];
                        assert_int_equal(ledger_record(f, ns, ref, dg, t, pf, &cf), 0);
                        assert_int_equal(ledger_record(m, ns, ref, dg, t, pm, &cm), 0);
                        assert_true(cf == cm);
                        assert_string_equal(pf, pm);
                } else if (op < 70) { /* a re-list: every reference seen again as it is */
                        relist(f, m, &now);
                } else if (op < 85) {
                        FindingKind kind = kinds[next() % ELEMENTSOF(kinds)];
                        uint64_t remind = next() % 2 ? HOUR : 0, pf = 1, pm = 2;
                        int a = ledger_raise(f, ns, ref, dg, kind, t, remind, 0, &pf);
                        int b = ledger_raise(m, ns, ref, dg, kind, t, remind, 0, &pm);
                        assert_int_equal(a, b);
                        assert_true(pf == pm);
                } else if (op < 90) {
                        assert_true(ledger_save(f) >= 0);
                } else if (op < 94) {
                        assert_true(ledger_compact(f) >= 0);
                        ledger_get_stats(f, &st);
                        assert_true(st.image_references == st.references); /* all frozen */
                        frozen_seen += st.image_references;
                } else if (op < 96) { /* a clean restart (compacted: re-list moves are saved
                                        * only so), loaded and frozen */
                        assert_true(ledger_compact(f) >= 0);
                        f = ledger_free(f);
                        assert_int_equal(ledger_open(&f, dir, 80, NULL), 0);
                        ledger_get_stats(f, &st);
                        assert_true(st.image_references == st.references);
                } else if (op < 97) {
                        /* a crash after a save: the snapshot and its change log replayed, then
                         * frozen; the re-list moves since the last compaction are lost (by
                         * design: LEDGER_LAST_SEEN_GRAIN_USEC), so the model takes what loaded */
                        _cleanup_free_ char *text = NULL;
                        size_t len = 0;
                        assert_true(ledger_save(f) >= 0);
                        f = ledger_free(f);
                        assert_int_equal(ledger_open(&f, dir, 80, NULL), 0);
                        ledger_get_stats(f, &st);
                        assert_true(st.image_references == st.references);
                        assert_int_equal(ledger_format(f, &text, &len), 0);
                        m = ledger_free(m);
                        assert_int_equal(ledger_new(&m, 80), 0);
                        assert_int_equal(ledger_parse(m, text, len, NULL, 0), 0);
                        crashes++;
                } else {
                        /* read side: the same answers */
                        LedgerDigest a, b;
                        char name[64];
                        int x = ledger_lookup(f, ns, ref, &a), y = ledger_lookup(m, ns, ref, &b);
                        assert_int_equal(x, y);
                        if (x == 0) {
                                assert_string_equal(a.digest, b.digest);
                                assert_true(a.first_seen_usec == b.first_seen_usec);
                                assert_true(a.last_seen_usec == b.last_seen_usec);
                        }
                        snprintf(name, sizeof name, "docker.io/library/r%u", k % 20);
                        assert_true(ledger_tagged_current(f, ns, name, dg) == ledger_tagged_current(m, ns, name, dg));
                }
                assert_same(f, m, step);
        }
        assert_true(frozen_seen > 0 && crashes > 0);
        /* the last changes through the change log, then a clean exit (compacted: the
         * re-list moves kept beside the image go in) and a load */
        assert_true(ledger_save(f) >= 0);
        assert_true(ledger_compact(f) >= 0);
        f = ledger_free(f);
        assert_int_equal(ledger_open(&f, dir, 80, NULL), 0);
        assert_same(f, m, SIZE_MAX);
        ledger_free(f);
        ledger_free(m);
        remove_dir(dir);
}

/* Private_Dirty (kB) of this process's mapping of an unlinked file of dir, of length bytes; -1 if none. */
static long image_dirty_kb(const char *dir, uint64_t bytes) {
        FILE *fp = fopen("/proc/self/smaps", "re");
        char line[512];
        bool in = false;
        long found = -1;
        assert_non_null(fp);
        while (fgets(line, sizeof line, fp)) {
                unsigned long lo, hi;
                long kb;
                if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '/')) {
                        in = hi - lo == bytes && strstr(line, dir) && strstr(line, "(deleted)");
                        continue;
                }
                if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
                        in = false;
                        continue;
                }
                if (in && sscanf(line, "Private_Dirty: %ld kB", &kb) == 1)
                        found = kb;
        }
        fclose(fp);
        return found;
}

/* The image's pages turn clean once written back, which ledger_freeze() starts without
 * waiting: wait for it (bounded), then return what is dirty. */
static long image_dirty_settled_kb(const char *dir, uint64_t bytes) {
        long kb = image_dirty_kb(dir, bytes);
        for (int i = 0; i < 1000 && kb != 0; i++) {
                usleep(10000);
                kb = image_dirty_kb(dir, bytes);
        }
        return kb;
}

static void test_image_stays_clean(void **state) {
        enum { N = 3000 };
        char dir[64], ref[64], dg[72];
        Ledger *l = NULL;
        LedgerStats st;
        LedgerDigest d;
        uint64_t t0 = 1700000000ULL * 1000000ULL;
        make_dir(dir, sizeof dir);
        assert_int_equal(ledger_open(&l, dir, N, NULL), 0);
        for (unsigned i = 0; i < N; i++) {
                snprintf(ref, sizeof ref, "bench.local/scale/img-%05u:1.0.0", i);
                digest_of(i, dg);
                assert_int_equal(ledger_record(l, "scale", ref, dg, t0, NULL, NULL), 0);
                assert_int_equal(ledger_raise(l, "scale", ref, dg, FINDING_PULL, t0, 0, 0, NULL), 1);
        }
        assert_true(ledger_compact(l) >= 0);
        ledger_get_stats(l, &st);
        assert_true(st.image_references == N);
        assert_true(st.image_bytes >= N * 100U);
        assert_int_equal(image_dirty_settled_kb(dir, st.image_bytes), 0);

        /* a re-list: every reference seen again within the hour, every finding known */
        for (unsigned i = 0; i < N; i++) {
                snprintf(ref, sizeof ref, "bench.local/scale/img-%05u:1.0.0", i);
                digest_of(i, dg);
                assert_int_equal(ledger_record(l, "scale", ref, dg, t0 + 1000000, NULL, NULL), 0);
                assert_int_equal(ledger_raise(l, "scale", ref, dg, FINDING_PULL, t0 + 1000000, 0, 0, NULL), 0);
        }
        assert_false(ledger_is_dirty(l));
        assert_int_equal(image_dirty_kb(dir, st.image_bytes), 0);
        assert_int_equal(ledger_lookup(l, "scale", "bench.local/scale/img-00042:1.0.0", &d), 0);
        assert_true(d.last_seen_usec == t0 + 1000000 && d.first_seen_usec == t0);

        /* one change costs a few pages (its reference's, the tables' slots it moves in; the
         * mapping is the one watched), not the image */
        digest_of(N + 1, dg);
        assert_int_equal(ledger_record(l, "scale", "bench.local/scale/img-00042:1.0.0", dg, t0 + 2000000, NULL, NULL),
                         0);
        long kb = image_dirty_kb(dir, st.image_bytes);
        assert_true(kb > 0 && kb <= 32 && (uint64_t) kb * 1024 * 8 < st.image_bytes);
        assert_int_equal(ledger_lookup(l, "scale", "bench.local/scale/img-00042:1.0.0", &d), 0);
        assert_string_equal(d.digest, dg);

        /* the re-list's last_seen reaches the file with the next compaction */
        assert_true(ledger_compact(l) >= 0);
        l = ledger_free(l);
        assert_int_equal(ledger_open(&l, dir, N, NULL), 0);
        assert_int_equal(ledger_lookup(l, "scale", "bench.local/scale/img-00043:1.0.0", &d), 0);
        assert_true(d.last_seen_usec == t0 + 1000000);
        ledger_get_stats(l, &st);
        assert_true(st.image_references == N);
        assert_int_equal(image_dirty_settled_kb(dir, st.image_bytes), 0);
        ledger_free(l);
        remove_dir(dir);
}

/* A save after LEDGER_THAWED_MAX references were made since the image compacts, so they
 * join a new image rather than staying in the pool for good (a fresh 10,000-image
 * listing cut in two by a save: idle private dirty 620 kB or up to ~1.9 MiB more); fewer
 * stay appends. Sized so that the changes fit the log (its bound is the snapshot's size):
 * before, the save appended them and they stayed out of the image. */
static void test_save_freezes_new_references(void **state) {
        enum { N = 5000, M = LEDGER_THAWED_MAX + 200, FEW = 10 };
        char dir[64], ref[64], dg[72];
        Ledger *l = NULL;
        LedgerStats st;
        uint64_t t0 = 1700000000ULL * 1000000ULL;
        make_dir(dir, sizeof dir);
        assert_int_equal(ledger_open(&l, dir, 4 * N, NULL), 0);
        for (unsigned i = 0; i < N; i++) {
                snprintf(ref, sizeof ref, "bench.local/scale/img-%05u:1.0.0", i);
                digest_of(i, dg);
                assert_int_equal(ledger_record(l, "scale", ref, dg, t0, NULL, NULL), 0);
        }
        assert_int_equal(ledger_save(l), 0); /* no log yet: compacts */
        ledger_get_stats(l, &st);
        assert_true(st.image_references == N && st.log_records == 0);

        /* a few more: appended, outside the image */
        for (unsigned i = N; i < N + FEW; i++) {
                snprintf(ref, sizeof ref, "bench.local/scale/img-%05u:1.0.0", i);
                digest_of(i, dg);
                assert_int_equal(ledger_record(l, "scale", ref, dg, t0, NULL, NULL), 0);
        }
        assert_int_equal(ledger_save(l), 0);
        ledger_get_stats(l, &st);
        assert_true(st.image_references == N && st.log_records == FEW);

        /* the rest of a listing: compacted into a new image */
        for (unsigned i = N + FEW; i < N + M; i++) {
                snprintf(ref, sizeof ref, "bench.local/scale/img-%05u:1.0.0", i);
                digest_of(i, dg);
                assert_int_equal(ledger_record(l, "scale", ref, dg, t0, NULL, NULL), 0);
        }
        assert_true(st.log_bytes * (M / FEW) < st.snapshot_bytes); /* the changes fit the log */
        assert_int_equal(ledger_save(l), 0);
        ledger_get_stats(l, &st);
        assert_true(st.references == N + M);
        assert_true(st.image_references == N + M);
        assert_true(st.log_records == 0);
        assert_int_equal(image_dirty_settled_kb(dir, st.image_bytes), 0);

        /* a listing's last few, after ledger_settle(): compacted too */
        ledger_from_listing(l, true);
        for (unsigned i = N + M; i < N + M + FEW; i++) {
                snprintf(ref, sizeof ref, "bench.local/scale/img-%05u:1.0.0", i);
                digest_of(i, dg);
                assert_int_equal(ledger_record(l, "scale", ref, dg, t0, NULL, NULL), 0);
        }
        ledger_from_listing(l, false);
        ledger_settle(l);
        assert_int_equal(ledger_save(l), 0);
        ledger_get_stats(l, &st);
        assert_true(st.image_references == N + M + FEW && st.log_records == 0);
        /* settled: the next few are appends again, even after a listing that added nothing */
        ledger_settle(l);
        digest_of(N + M + FEW, dg);
        assert_int_equal(ledger_record(l, "scale", "bench.local/scale/one-more:1", dg, t0, NULL, NULL), 0);
        assert_int_equal(ledger_save(l), 0);
        ledger_get_stats(l, &st);
        assert_true(st.image_references == N + M + FEW && st.log_records == 1);
        /* an event's reference, then the end of a listing that made none (the catch-up
         * listing after a connect): still an append */
        digest_of(N + M + FEW + 1, dg);
        assert_int_equal(ledger_record(l, "scale", "bench.local/scale/two-more:1", dg, t0, NULL, NULL), 0);
        ledger_settle(l);
        assert_int_equal(ledger_save(l), 0);
        ledger_get_stats(l, &st);
        assert_true(st.image_references == N + M + FEW && st.log_records == 2);
        ledger_free(l);
        remove_dir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_image_model),
                cmocka_unit_test(test_image_stays_clean),
                cmocka_unit_test(test_save_freezes_new_references),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
