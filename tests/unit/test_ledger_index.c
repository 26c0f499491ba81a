/* ledger: decide-and-mark (ledger_raise) and the index of tagged references by current
 * digest (ledger_tagged_current), including after pruning and a save + reload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pullwatch/ledger.h"
#include "pullwatch/util.h"

#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define NGINX "docker.io/library/nginx"

static void test_raise(void **state) {
        Ledger *l = NULL;
        uint64_t prev = 99;
        assert_int_equal(ledger_new(&l, 100), 0);
        assert_int_equal(ledger_record(l, "k8s.io", NGINX ":latest", DA, 1000, NULL, NULL), 0);
        static const struct {
                FindingKind kind;
                uint64_t now, reminder;
                LedgerRaiseFlags flags;
                int want;
                uint64_t want_prev;
        } steps[] = {
                {FINDING_LATEST_TAG, 2000, 0, 0, 1, 0},                   /* first time */
                {FINDING_LATEST_TAG, 3000, 0, 0, 0, 2000},                /* already raised */
                {FINDING_LATEST_TAG, 3500, 1000, 0, 1, 2000},             /* reminder due */
                {FINDING_LATEST_TAG, 4000, 1000, 0, 0, 3500},             /* not yet due again */
                {FINDING_TAG_MOVED, 5000, 0, LEDGER_RAISE_ALWAYS, 1, 0},  /* a transition */
                {FINDING_TAG_MOVED, 6000, 0, LEDGER_RAISE_ALWAYS, 1, 5000}, /* again: still raised, marked */
                {FINDING_PULL, 7000, 0, 0, 1, 0},
        };
        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                int r = ledger_raise(l, "k8s.io", NGINX ":latest", DA, steps[i].kind, steps[i].now, steps[i].reminder,
                                     steps[i].flags, &prev);
                if (r != steps[i].want || prev != steps[i].want_prev)
                        fail_msg("step %zu: %d (prev %" PRIu64 ") want %d (prev %" PRIu64 ")", i, r, prev,
                                 steps[i].want, steps[i].want_prev);
        }
        /* never recorded: raised (and it cannot be remembered, so raised again) */
        assert_int_equal(ledger_raise(l, "k8s.io", "docker.io/library/x:1", DA, FINDING_PULL, 1, 0, 0, NULL), 1);
        assert_int_equal(ledger_raise(l, "k8s.io", "docker.io/library/x:1", DA, FINDING_PULL, 2, 0, 0, NULL), 1);
        assert_int_equal(ledger_raise(l, "k8s.io", NGINX ":latest", DA, _FINDING_KIND_MAX, 1, 0, 0, NULL), -EINVAL);
        /* no ledger: everything is raised */
        assert_int_equal(ledger_raise(NULL, "k8s.io", NGINX ":latest", DA, FINDING_PULL, 1, 0, 0, &prev), 1);
        assert_int_equal(prev, 0);
        ledger_free(l);
}

static void test_tagged_current(void **state) {
        Ledger *l = NULL;
        assert_int_equal(ledger_new(&l, 3), 0);
        assert_false(ledger_tagged_current(l, "k8s.io", NGINX, DA));
        assert_int_equal(ledger_record(l, "k8s.io", NGINX ":latest", DA, 1, NULL, NULL), 0);
        assert_int_equal(ledger_record(l, "k8s.io", NGINX "@" DB, DB, 1, NULL, NULL), 0);
        static const struct {
                const char *ns, *name, *digest;
                bool want;
        } cases[] = {
                {"k8s.io", NGINX, DA, true},
                {"default", NGINX, DA, false},                  /* another namespace */
                {"k8s.io", "docker.io/library/redis", DA, false}, /* another repository */
                {"k8s.io", NGINX, DB, false},                   /* only a digest-only record has DB */
                {"k8s.io", "nginx", DA, false},                 /* names are normalised by the caller */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                if (ledger_tagged_current(l, cases[i].ns, cases[i].name, cases[i].digest) != cases[i].want)
                        fail_msg("case %zu: want %d", i, cases[i].want);

        /* recorded with the name the caller parsed (the judge's way): indexed the same,
         * under the normalised name of a short reference */
        assert_int_equal(ledger_record_named(l, "k8s.io", "redis:7", "docker.io/library/redis", DB, 1, NULL, NULL), 0);
        assert_true(ledger_tagged_current(l, "k8s.io", "docker.io/library/redis", DB));
        assert_int_equal(ledger_record_named(l, "k8s.io", "redis@" DA, "", DA, 1, NULL, NULL), 0);
        assert_false(ledger_tagged_current(l, "k8s.io", "docker.io/library/redis", DA));

        /* the tag moves: the index follows the current digest */
        assert_int_equal(ledger_record(l, "k8s.io", NGINX ":latest", DB, 2, NULL, NULL), 0);
        assert_false(ledger_tagged_current(l, "k8s.io", NGINX, DA));
        assert_true(ledger_tagged_current(l, "k8s.io", NGINX, DB));

        /* a save and a reload rebuild it */
        char *text = NULL;
        size_t len = 0;
        assert_int_equal(ledger_format(l, &text, &len), 0);
        Ledger *l2 = NULL;
        assert_int_equal(ledger_new(&l2, 3), 0);
        assert_int_equal(ledger_parse(l2, text, len, NULL, 0), 0);
        assert_true(ledger_tagged_current(l2, "k8s.io", NGINX, DB));
        assert_false(ledger_tagged_current(l2, "k8s.io", NGINX, DA));
        free(text);
        ledger_free(l2);

        /* pruned away with its reference: gone from the index (cap 3 entries; many
         * tagged references grow the index and push the oldest out) */
        char ref[64];
        for (int i = 0; i < 200; i++) {
                snprintf(ref, sizeof ref, "docker.io/library/r%d:1", i);
                assert_int_equal(ledger_record(l, "k8s.io", ref, DA, 10 + (uint64_t) i, NULL, NULL), 0);
        }
        assert_false(ledger_tagged_current(l, "k8s.io", NGINX, DB));
        assert_true(ledger_tagged_current(l, "k8s.io", "docker.io/library/r199", DA));
        assert_false(ledger_tagged_current(l, "k8s.io", "docker.io/library/r0", DA));
        ledger_free(l);
}

/* A ledger loaded over its cap drops whole references at once (prune_batch): they
 * leave the index with them, and what stays is still found. */
static void test_tagged_current_after_load_prune(void **state) {
        Ledger *big = NULL, *small = NULL;
        char ref[64], name[64], *text = NULL;
        size_t len = 0;
        assert_int_equal(ledger_new(&big, 1000), 0);
        for (int i = 0; i < 200; i++) {
                snprintf(ref, sizeof ref, "docker.io/library/r%d:1", i);
                assert_int_equal(ledger_record(big, "k8s.io", ref, i % 2 ? DA : DB, 10 + (uint64_t) i, NULL, NULL), 0);
        }
        assert_int_equal(ledger_format(big, &text, &len), 0);
        assert_int_equal(ledger_new(&small, 10), 0);
        assert_int_equal(ledger_parse(small, text, len, NULL, 0), 0);
        size_t found = 0;
        for (int i = 0; i < 200; i++) {
                snprintf(name, sizeof name, "docker.io/library/r%d", i);
                bool want = i >= 190; /* the ten seen last are kept */
                if (ledger_tagged_current(small, "k8s.io", name, i % 2 ? DA : DB) != want)
                        fail_msg("r%d: want %d", i, want);
                found += want;
        }
        assert_int_equal(found, 10);
        /* the index keeps working as the ledger changes */
        assert_int_equal(ledger_record(small, "k8s.io", "docker.io/library/r199:1", DB, 1000, NULL, NULL), 0);
        assert_true(ledger_tagged_current(small, "k8s.io", "docker.io/library/r199", DB));
        assert_false(ledger_tagged_current(small, "k8s.io", "docker.io/library/r199", DA));
        free(text);
        ledger_free(small);
        ledger_free(big);
}

/* The index against a scan of the ledger, after every step of a random run: tags that move
 * back and forth among a few digests, digest-only records beside them, two namespaces, a
 * cap that prunes history and whole references. The index is open addressing with
 * backward-shift deletion: a shift done wrong loses entries that collide. */
#define M_NS 2
#define M_REPOS 24
#define M_DIGESTS 6

typedef struct Model {
        bool want[M_NS][M_REPOS][M_DIGESTS];
} Model;

static const char *const m_ns[M_NS] = {"k8s.io", "default"};

static void m_digest(unsigned d, char out[72]) {
        snprintf(out, 72, "sha256:%064x", d + 1);
}

static int m_visit(const char *ns, const char *ref, const LedgerDigest *digests, size_t n, size_t current,
                   void *userdata) {
        Model *m = userdata;
        unsigned ni = strcmp(ns, m_ns[0]) == 0 ? 0 : 1, repo, tag, d;
        (void) n;
        if (sscanf(ref, "docker.io/library/r%u:t%u", &repo, &tag) != 2)
                return 0; /* a digest-only record: not indexed */
        assert_true(sscanf(digests[current].digest, "sha256:%x", &d) == 1);
        m->want[ni][repo][d - 1] = true;
        return 0;
}

static void test_tagged_current_model(void **state) {
        Ledger *l = NULL;
        char ref[128], name[64], dg[72];
        uint32_t seed = 12345;
        assert_int_equal(ledger_new(&l, 90), 0);
        for (unsigned step = 0; step < 3000; step++) {
                seed = seed * 1103515245U + 12345U;
                unsigned ni = (seed >> 8) % M_NS, repo = (seed >> 12) % M_REPOS, tag = (seed >> 20) % 3,
                         d = (seed >> 24) % M_DIGESTS;
                m_digest(d, dg);
                if ((seed >> 4) % 5 == 0)
                        snprintf(ref, sizeof ref, "docker.io/library/r%u@%s", repo, dg);
                else
                        snprintf(ref, sizeof ref, "docker.io/library/r%u:t%u", repo, tag);
                /* every other step as the judge records: told the tagged name it parsed */
                bool digest_only = strchr(ref, '@') != NULL;
                snprintf(name, sizeof name, "docker.io/library/r%u", repo);
                if (step % 2)
                        assert_int_equal(ledger_record_named(l, m_ns[ni], ref, digest_only ? "" : name, dg, 100 + step,
                                                             NULL, NULL),
                                         0);
                else
                        assert_int_equal(ledger_record(l, m_ns[ni], ref, dg, 100 + step, NULL, NULL), 0);

                Model m = {0};
                assert_int_equal(ledger_foreach(l, m_visit, &m), 0);
                for (unsigned a = 0; a < M_NS; a++)
                        for (unsigned r = 0; r < M_REPOS; r++)
                                for (unsigned k = 0; k < M_DIGESTS; k++) {
                                        snprintf(name, sizeof name, "docker.io/library/r%u", r);
                                        m_digest(k, dg);
                                        if (ledger_tagged_current(l, m_ns[a], name, dg) != m.want[a][r][k])
                                                fail_msg("step %u: %s %s %s: want %d", step, m_ns[a], name, dg,
                                                         m.want[a][r][k]);
                                }
        }
        LedgerStats st;
        ledger_get_stats(l, &st);
        assert_true(st.pruned > 0);
        ledger_free(l);
}

/* ledger_reserve() before a listing is judged: every reference recorded after it, and
 * every one recorded before it (rehashed into the larger tables), is found as before;
 * a smaller reserve changes nothing. */
static void test_reserve(void **state) {
        Ledger *l = NULL;
        char ref[64], name[64];
        assert_int_equal(ledger_new(&l, 100000), 0);
        for (int i = 0; i < 50; i++) { /* some before: moved into the reserved tables */
                snprintf(ref, sizeof ref, "docker.io/library/r%d:1", i);
                assert_int_equal(ledger_record(l, "k8s.io", ref, i % 2 ? DA : DB, 1, NULL, NULL), 0);
        }
        assert_int_equal(ledger_reserve(l, 3000), 0);
        assert_int_equal(ledger_reserve(l, 10), 0);
        assert_int_equal(ledger_reserve(NULL, 10), -EINVAL);
        for (int i = 50; i < 3000; i++) {
                snprintf(ref, sizeof ref, "docker.io/library/r%d:1", i);
                assert_int_equal(ledger_record(l, "k8s.io", ref, i % 2 ? DA : DB, 1, NULL, NULL), 0);
        }
        for (int i = 0; i < 3000; i++) {
                LedgerDigest d;
                snprintf(ref, sizeof ref, "docker.io/library/r%d:1", i);
                snprintf(name, sizeof name, "docker.io/library/r%d", i);
                assert_int_equal(ledger_lookup(l, "k8s.io", ref, &d), 0);
                assert_string_equal(d.digest, i % 2 ? DA : DB);
                assert_true(ledger_tagged_current(l, "k8s.io", name, i % 2 ? DA : DB));
                assert_false(ledger_tagged_current(l, "k8s.io", name, i % 2 ? DB : DA));
        }
        LedgerStats st;
        ledger_get_stats(l, &st);
        assert_int_equal(st.references, 3000);
        ledger_free(l);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_raise),
                cmocka_unit_test(test_tagged_current),
                cmocka_unit_test(test_tagged_current_after_load_prune),
                cmocka_unit_test(test_tagged_current_model),
                cmocka_unit_test(test_reserve),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
