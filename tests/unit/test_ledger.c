/* ledger: history and move detection, raised-set semantics, persistence, corruption
 * handling, pruning order under the cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "pullwatch/ledger.h"
#include "pullwatch/util.h"

#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DC "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define NGINX "docker.io/library/nginx:latest"

#include "tmpdir.h"

static Ledger *new_ok(size_t max) {
        Ledger *l = NULL;
        assert_int_equal(ledger_new(&l, max), 0);
        return l;
}

static void record_ok(Ledger *l, const char *ns, const char *ref, const char *digest, uint64_t now) {
        assert_int_equal(ledger_record(l, ns, ref, digest, now, NULL, NULL), 0);
}

static void test_record_lookup_moves(void **state) {
        static const struct {
                const char *ns, *ref, *digest;
                uint64_t now;
                bool changed;
                const char *previous;
        } steps[] = {
                { "k8s.io", NGINX, DA, 100, false, "" },   /* first sighting is not a move */
                { "k8s.io", NGINX, DA, 200, false, "" },   /* same digest again */
                { "k8s.io", NGINX, DB, 300, true, DA },    /* the classic repush */
                { "default", NGINX, DC, 310, false, "" },  /* other namespace, independent */
                { "k8s.io", NGINX, DB, 320, false, "" },
                { "k8s.io", NGINX, DA, 400, true, DB },    /* moved back to a known digest */
                { "k8s.io", "docker.io/library/redis:7", DA, 500, false, "" },
        };
        Ledger *l = new_ok(100);
        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                char prev[PW_DIGEST_MAX] = "junk";
                bool changed = !steps[i].changed;
                assert_int_equal(ledger_record(l, steps[i].ns, steps[i].ref, steps[i].digest, steps[i].now, prev, &changed), 0);
                if (changed != steps[i].changed || strcmp(prev, steps[i].previous) != 0)
                        fail_msg("step %zu: changed %d previous '%s'", i, changed, prev);
                LedgerDigest cur;
                assert_int_equal(ledger_lookup(l, steps[i].ns, steps[i].ref, &cur), 0);
                assert_string_equal(cur.digest, steps[i].digest);
                assert_int_equal(cur.last_seen_usec, steps[i].now);
        }
        LedgerDigest cur;
        assert_int_equal(ledger_lookup(l, "k8s.io", NGINX, &cur), 0);
        assert_int_equal(cur.first_seen_usec, 100); /* DA's first sighting is kept */
        assert_int_equal(ledger_lookup(l, "k8s.io", "docker.io/library/nginx:1.25", &cur), -ENOENT);
        assert_int_equal(ledger_lookup(l, "moby", NGINX, &cur), -ENOENT);

        LedgerStats st;
        ledger_get_stats(l, &st);
        assert_int_equal(st.references, 3);
        assert_int_equal(st.entries, 4); /* nginx:{A,B}, default nginx:{C}, redis:{A} */
        assert_true(ledger_is_dirty(l));
        ledger_free(l);
}

static void test_record_invalid(void **state) {
        char longref[PW_REF_MAX + 1];
        memset(longref, 'a', sizeof(longref) - 1);
        longref[sizeof(longref) - 1] = 0;
        char longns[PW_NS_MAX + 1];
        memset(longns, 'n', sizeof(longns) - 1);
        longns[sizeof(longns) - 1] = 0;
        static const char *const empty = "";
        struct {
                const char *ns, *ref, *digest;
        } cases[] = {
                { empty, NGINX, DA }, { "k8s.io", empty, DA }, { "k8s.io", NGINX, empty }, { NULL, NGINX, DA },
                { "k8s.io", longref, DA }, { longns, NGINX, DA },
                /* not valid UTF-8 (could never be saved): a stray continuation byte, an
                 * overlong '/', a UTF-16 surrogate, a truncated sequence, past U+10FFFF */
                { "k8s.io", "bad\x80:1", DA }, { "k8s.io", "bad\xc0\xaf:1", DA },
                { "k8s.io", "bad\xed\xa0\x80:1", DA }, { "k8s.io", "bad\xe2\x82", DA },
                { "k8s.io", "bad\xf4\x90\x80\x80:1", DA }, { "k8s\xff", NGINX, DA }, { "k8s.io", NGINX, "sha256:\xfe" },
        };
        Ledger *l = new_ok(10);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                bool changed = true;
                if (ledger_record(l, cases[i].ns, cases[i].ref, cases[i].digest, 1, NULL, &changed) != -EINVAL)
                        fail_msg("case %zu accepted", i);
                assert_true(changed); /* untouched on failure */
        }
        LedgerStats st;
        ledger_get_stats(l, &st);
        assert_int_equal(st.references, 0);
        Ledger *bad = (Ledger *) 0x1;
        assert_int_equal(ledger_new(&bad, 0), -EINVAL);
        assert_ptr_equal(bad, (Ledger *) 0x1);
        ledger_free(l);
}

static void test_raised_semantics(void **state) {
        const uint64_t S = 1000000;
        Ledger *l = new_ok(100);
        record_ok(l, "k8s.io", NGINX, DA, 10 * S);
        assert_int_equal(ledger_mark_raised(l, "k8s.io", "unknown:1", DA, "latest_tag", 10 * S), -ENOENT);
        assert_int_equal(ledger_mark_raised(l, "k8s.io", NGINX, DA, "", 10 * S), -EINVAL);
        assert_int_equal(ledger_mark_raised(l, "k8s.io", NGINX, DA, "latest_tag", 100 * S), 0);
        uint64_t when = 0;
        assert_int_equal(ledger_last_raised(l, "k8s.io", NGINX, DA, "latest_tag", &when), 0);
        assert_int_equal(when, 100 * S);
        assert_int_equal(ledger_last_raised(l, "k8s.io", NGINX, DA, "tag_moved", &when), -ENOENT);
        assert_int_equal(ledger_last_raised(l, "default", NGINX, DA, "latest_tag", &when), -ENOENT);

        static const struct {
                const char *ref, *digest, *kind;
                uint64_t now, reminder;
                bool expect;
        } cases[] = {
                { NGINX, DA, "latest_tag", 150 * S, 0, false },       /* already raised, no reminder */
                { NGINX, DA, "latest_tag", 99999 * S, 0, false },     /* never again without a reminder */
                { NGINX, DA, "latest_tag", 199 * S, 100 * S, false }, /* reminder not yet due */
                { NGINX, DA, "latest_tag", 200 * S, 100 * S, true },  /* exactly due */
                { NGINX, DA, "latest_tag", 50 * S, 100 * S, false },  /* clock went back */
                { NGINX, DA, "mutable_tag", 150 * S, 0, true },       /* other kind */
                { NGINX, DB, "latest_tag", 150 * S, 0, true },        /* other digest */
                { "docker.io/library/redis:7", DA, "latest_tag", 150 * S, 0, true }, /* unknown reference */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                if (ledger_should_raise(l, "k8s.io", cases[i].ref, cases[i].digest, cases[i].kind, cases[i].now,
                                        cases[i].reminder) != cases[i].expect)
                        fail_msg("case %zu: expected %d", i, cases[i].expect);

        /* re-marking moves the reminder window */
        assert_int_equal(ledger_mark_raised(l, "k8s.io", NGINX, DA, "latest_tag", 200 * S), 0);
        assert_false(ledger_should_raise(l, "k8s.io", NGINX, DA, "latest_tag", 250 * S, 100 * S));
        assert_true(ledger_should_raise(l, "k8s.io", NGINX, DA, "latest_tag", 300 * S, 100 * S));

        /* at most LEDGER_RAISED_PER_REF_MAX per reference, the oldest evicted */
        for (unsigned i = 0; i < LEDGER_RAISED_PER_REF_MAX; i++) {
                char kind[LEDGER_KIND_MAX];
                snprintf(kind, sizeof(kind), "k%u", i);
                assert_int_equal(ledger_mark_raised(l, "k8s.io", NGINX, DB, kind, 1000 * S + i), 0);
        }
        LedgerStats st;
        ledger_get_stats(l, &st);
        assert_int_equal(st.raised, LEDGER_RAISED_PER_REF_MAX);
        assert_true(ledger_should_raise(l, "k8s.io", NGINX, DA, "latest_tag", 1001 * S, 0)); /* evicted (oldest) */
        assert_false(ledger_should_raise(l, "k8s.io", NGINX, DB, "k0", 1001 * S, 0));
        assert_false(ledger_should_raise(l, "k8s.io", NGINX, DB, "k63", 1001 * S, 0));
        ledger_free(l);
}

static void test_pruning_order(void **state) {
        Ledger *l = new_ok(4);
        LedgerDigest cur;
        LedgerStats st;

        record_ok(l, "k8s.io", "a:1", DA, 1);
        record_ok(l, "k8s.io", "a:1", DB, 2); /* a:1 history DA (last seen 1), current DB */
        assert_int_equal(ledger_mark_raised(l, "k8s.io", "a:1", DA, "tag_moved", 2), 0);
        assert_int_equal(ledger_mark_raised(l, "k8s.io", "a:1", DB, "latest_tag", 2), 0);
        record_ok(l, "k8s.io", "b:1", DA, 3);
        record_ok(l, "k8s.io", "c:1", DA, 4);
        ledger_get_stats(l, &st);
        assert_int_equal(st.entries, 4);
        assert_int_equal(st.pruned, 0);

        /* 1. over the cap: the oldest non-current entry goes, with its raised findings */
        record_ok(l, "k8s.io", "d:1", DA, 5);
        ledger_get_stats(l, &st);
        assert_int_equal(st.entries, 4);
        assert_int_equal(st.pruned, 1);
        assert_int_equal(st.raised, 1);
        assert_true(ledger_should_raise(l, "k8s.io", "a:1", DA, "tag_moved", 6, 0));
        assert_false(ledger_should_raise(l, "k8s.io", "a:1", DB, "latest_tag", 6, 0));
        assert_int_equal(ledger_lookup(l, "k8s.io", "a:1", &cur), 0);
        assert_string_equal(cur.digest, DB);

        /* 2. only current entries left: the least recently seen reference goes (a:1, seen at 2) */
        record_ok(l, "k8s.io", "e:1", DA, 6);
        assert_int_equal(ledger_lookup(l, "k8s.io", "a:1", &cur), -ENOENT);
        ledger_get_stats(l, &st);
        assert_int_equal(st.references, 4);
        assert_int_equal(st.raised, 0);

        /* seeing b:1 again protects it: c:1 (seen at 4) is the next to go */
        record_ok(l, "k8s.io", "b:1", DA, 7);
        record_ok(l, "k8s.io", "f:1", DA, 8);
        assert_int_equal(ledger_lookup(l, "k8s.io", "b:1", &cur), 0);
        assert_int_equal(ledger_lookup(l, "k8s.io", "c:1", &cur), -ENOENT);
        assert_int_equal(ledger_lookup(l, "k8s.io", "d:1", &cur), 0);

        /* a non-current entry is pruned before any reference, however recent it is */
        record_ok(l, "k8s.io", "f:1", DB, 9); /* f:1 history DA (seen at 8) */
        assert_int_equal(ledger_lookup(l, "k8s.io", "d:1", &cur), 0);
        assert_int_equal(ledger_lookup(l, "k8s.io", "e:1", &cur), 0);
        ledger_get_stats(l, &st);
        assert_int_equal(st.entries, 4);
        record_ok(l, "k8s.io", "f:1", DA, 10); /* moving back to the pruned digest: a "new" entry */
        assert_int_equal(ledger_lookup(l, "k8s.io", "f:1", &cur), 0);
        assert_int_equal(cur.first_seen_usec, 10);
        ledger_free(l);

        /* cap 1: the reference being recorded is never the victim */
        l = new_ok(1);
        record_ok(l, "k8s.io", "x:1", DA, 1);
        bool changed = false;
        char prev[PW_DIGEST_MAX];
        assert_int_equal(ledger_record(l, "k8s.io", "x:1", DB, 2, prev, &changed), 0);
        assert_true(changed); /* the move is still reported though DA was pruned at once */
        assert_string_equal(prev, DA);
        record_ok(l, "k8s.io", "y:1", DC, 3);
        assert_int_equal(ledger_lookup(l, "k8s.io", "y:1", &cur), 0);
        assert_int_equal(ledger_lookup(l, "k8s.io", "x:1", &cur), -ENOENT);
        ledger_free(l);
}

typedef struct Visit {
        char lines[16][600];
        size_t n;
        size_t stop_at;
} Visit;

static int visit_cb(const char *ns, const char *ref, const LedgerDigest *d, size_t n, size_t current, void *userdata) {
        Visit *v = userdata;
        int k = snprintf(v->lines[v->n], sizeof(v->lines[0]), "%s %s cur=%.10s n=%zu first=%.10s", ns, ref,
                         d[current].digest, n, d[0].digest);
        assert_true(k > 0);
        v->n++;
        return v->stop_at && v->n >= v->stop_at ? 1 : 0;
}

static void test_foreach_order(void **state) {
        Ledger *l = new_ok(100);
        record_ok(l, "k8s.io", "z:1", DA, 1);
        record_ok(l, "default", "m:1", DB, 2);
        record_ok(l, "k8s.io", "b:1", DC, 3);
        record_ok(l, "k8s.io", "b:1", DA, 4);
        Visit v = {};
        assert_int_equal(ledger_foreach(l, visit_cb, &v), 0);
        assert_int_equal(v.n, 3);
        assert_string_equal(v.lines[0], "default m:1 cur=sha256:bbb n=1 first=sha256:bbb");
        assert_string_equal(v.lines[1], "k8s.io b:1 cur=sha256:aaa n=2 first=sha256:ccc");
        assert_string_equal(v.lines[2], "k8s.io z:1 cur=sha256:aaa n=1 first=sha256:aaa");
        v = (Visit) { .stop_at = 1 };
        assert_int_equal(ledger_foreach(l, visit_cb, &v), 0);
        assert_int_equal(v.n, 1);
        ledger_free(l);
}

/* noinline: gcc 12 -O2 mistakes the returned heap pointer for a dangling stack one */
__attribute__((noinline)) static char *format_ok(const Ledger *l, size_t *len) {
        char *t = NULL;
        assert_int_equal(ledger_format(l, &t, len), 0);
        assert_non_null(t);
        return t;
}


/* A full disk during a save: the write fails part-way through the body. The save must
 * fail with an error, leave the previous file intact and return promptly (it used to
 * spin forever in out_put(): out_flush() kept the buffer after a write error). The disk
 * is simulated with RLIMIT_FSIZE (writes past it fail with EFBIG), which needs no
 * privileges; alarm() turns a spin into a failed test instead of a hang. */
static void test_save_on_full_disk(void **state) {
        const char *dir = *state;
        Ledger *l = NULL;
        assert_int_equal(ledger_open(&l, dir, 10000, NULL), 0);
        record_ok(l, "k8s.io", NGINX, DA, 100);
        assert_int_equal(ledger_save(l), 0);
        char path[512];
        snprintf(path, sizeof(path), "%s/" LEDGER_FILE, dir);
        struct stat before;
        assert_int_equal(stat(path, &before), 0);

        for (unsigned i = 0; i < 600; i++) {
                char ref[128];
                snprintf(ref, sizeof(ref), "registry.local/app%u:v1", i);
                record_ok(l, "k8s.io", ref, DB, 200 + i);
        }
        struct rlimit old, lim = {.rlim_cur = 32 * 1024, .rlim_max = RLIM_INFINITY};
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
        lim.rlim_max = old.rlim_max;
        signal(SIGXFSZ, SIG_IGN);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
        alarm(20);
        int r = ledger_save(l);
        alarm(0);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
        assert_true(r < 0);
        assert_true(ledger_is_dirty(l)); /* still to be saved */

        /* the old file is untouched and no temp file is left */
        struct stat after;
        assert_int_equal(stat(path, &after), 0);
        assert_int_equal(after.st_size, before.st_size);
        snprintf(path, sizeof(path), "%s/" LEDGER_FILE ".tmp", dir);
        assert_int_equal(access(path, F_OK), -1);

        /* room again: the next save succeeds */
        assert_int_equal(ledger_save(l), 0);
        ledger_free(l);
}

static void test_save_reopen_round_trip(void **state) {
        const char *dir = *state;
        LedgerOpenReport rep;
        Ledger *l = NULL;
        assert_int_equal(ledger_open(&l, dir, 100, &rep), 0);
        assert_false(rep.corrupt);
        assert_int_equal(rep.entries, 0);
        record_ok(l, "k8s.io", NGINX, DA, 100);
        record_ok(l, "k8s.io", NGINX, DB, 200);
        record_ok(l, "default", "registry.local/app:3f2a9c1", DC, 300);
        assert_int_equal(ledger_mark_raised(l, "k8s.io", NGINX, DB, "tag_moved", 200), 0);
        assert_true(ledger_is_dirty(l));
        assert_int_equal(ledger_save(l), 0);
        assert_false(ledger_is_dirty(l));
        size_t len1;
        _cleanup_free_ char *t1 = format_ok(l, &len1);
        ledger_free(l);

        char path[512];
        snprintf(path, sizeof(path), "%s/" LEDGER_FILE ".tmp", dir);
        assert_int_equal(access(path, F_OK), -1); /* no temp file left behind */

        assert_int_equal(ledger_open(&l, dir, 100, &rep), 0);
        assert_false(rep.corrupt);
        assert_int_equal(rep.references, 2);
        assert_int_equal(rep.entries, 3);
        assert_int_equal(rep.raised, 1);
        assert_false(ledger_is_dirty(l));
        LedgerDigest cur;
        assert_int_equal(ledger_lookup(l, "k8s.io", NGINX, &cur), 0);
        assert_string_equal(cur.digest, DB);
        assert_int_equal(cur.first_seen_usec, 200);
        assert_false(ledger_should_raise(l, "k8s.io", NGINX, DB, "tag_moved", 300, 0));
        char prev[PW_DIGEST_MAX];
        bool changed;
        assert_int_equal(ledger_record(l, "k8s.io", NGINX, DA, 400, prev, &changed), 0);
        assert_true(changed); /* the history survived: moving back is seen */
        assert_string_equal(prev, DB);
        ledger_free(l);

        /* parse + format is the identity on what format produced */
        l = new_ok(100);
        assert_int_equal(ledger_parse(l, t1, len1, NULL, 0), 0);
        size_t len2;
        _cleanup_free_ char *t2 = format_ok(l, &len2);
        assert_int_equal(len1, len2);
        assert_memory_equal(t1, t2, len1);
        assert_int_equal(ledger_parse(l, t1, len1, NULL, 0), -EBUSY);
        ledger_free(l);

        /* a file-less ledger cannot be saved */
        l = new_ok(10);
        assert_int_equal(ledger_save(l), -EINVAL);
        ledger_free(l);
}

static void write_file(const char *path, const char *data, size_t len) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t) len);
        close(fd);
}

static char *find_corrupt_file(const char *dir) {
        DIR *d = opendir(dir);
        assert_non_null(d);
        char *found = NULL;
        struct dirent *de;
        while ((de = readdir(d)))
                if (startswith(de->d_name, LEDGER_FILE ".corrupt-")) {
                        assert_null(found);
                        assert_true(asprintf(&found, "%s/%s", dir, de->d_name) > 0);
                }
        closedir(d);
        return found;
}

/* Build "header + body" with a correct CRC, for bodies that are bad JSON or bad schema. */
static size_t framed(char *out, size_t size, int version, const char *body) {
        unsigned long c = crc32(0, (const unsigned char *) body, (unsigned) strlen(body));
        int n = snprintf(out, size, "pullwatch-ledger %d %zu %08lx\n%s", version, strlen(body), c, body);
        assert_true(n > 0 && (size_t) n < size);
        return (size_t) n;
}

static void test_corrupt_files(void **state) {
        /* a valid file to damage */
        Ledger *l = new_ok(100);
        record_ok(l, "k8s.io", NGINX, DA, 100);
        record_ok(l, "k8s.io", NGINX, DB, 200);
        size_t vlen;
        _cleanup_free_ char *valid = format_ok(l, &vlen);
        ledger_free(l);
        size_t hlen = (size_t) (strchr(valid, '\n') - valid) + 1;

        enum { TRUNC, FLIP, APPEND, REPLACE };
        static char big[4096];
        struct {
                const char *name;
                int op;
                size_t arg;
                const char *body; /* REPLACE: framed body; NULL: raw replacement in arg-less form */
                const char *expect;
        } cases[] = {
                { "truncated body", TRUNC, 10, NULL, "truncated" },
                { "empty file", TRUNC, 0, NULL, "empty file" },
                { "cut in the header", TRUNC, 1, NULL, "header" },
                { "flipped body byte", FLIP, 40, NULL, "CRC mismatch (expected" },
                { "flipped magic", FLIP, 0, NULL, "bad magic" },
                { "trailing garbage", APPEND, 0, NULL, "trailing data" },
                { "not JSON", REPLACE, 1, "{\"version\":1,", "bad JSON" },
                { "future version", REPLACE, 2, "{}", "unsupported version 2" },
                { "no references", REPLACE, 1, "{\"version\":1}", "references" },
                { "current not in history", REPLACE, 1,
                  "{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DB
                  "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":1,\"last_seen\":2}]}]}",
                  "current digest is not in its history" },
                { "negative time", REPLACE, 1,
                  "{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DA
                  "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":-1,\"last_seen\":2}]}]}",
                  "references[0].digests[0]" },
                { "duplicate digest", REPLACE, 1,
                  "{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DA
                  "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":1,\"last_seen\":2},{\"digest\":\"" DA
                  "\",\"first_seen\":1,\"last_seen\":2}]}]}",
                  "duplicate digest" },
                { "duplicate reference", REPLACE, 1,
                  "{\"version\":1,\"references\":[{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DA
                  "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":1,\"last_seen\":2}]},"
                  "{\"namespace\":\"k8s.io\",\"reference\":\"a:1\",\"current\":\"" DA
                  "\",\"digests\":[{\"digest\":\"" DA "\",\"first_seen\":1,\"last_seen\":2}]}]}",
                  "duplicate reference" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char dir[512], path[600];
                snprintf(dir, sizeof(dir), "%s/c%zu", (const char *) *state, i);
                assert_int_equal(mkdir(dir, 0700), 0);
                snprintf(path, sizeof(path), "%s/" LEDGER_FILE, dir);
                size_t n = vlen;
                memcpy(big, valid, vlen);
                switch (cases[i].op) {
                case TRUNC:
                        n = cases[i].arg == 0 ? 0 : cases[i].arg == 1 ? hlen - 5 : vlen - cases[i].arg;
                        break;
                case FLIP:
                        big[cases[i].arg == 0 ? 3 : hlen + cases[i].arg] ^= 0x08;
                        break;
                case APPEND:
                        memcpy(big + vlen, "\n{}\n", 4);
                        n = vlen + 4;
                        break;
                case REPLACE:
                        n = framed(big, sizeof(big), (int) cases[i].arg, cases[i].body);
                        break;
                }
                write_file(path, big, n);

                LedgerOpenReport rep;
                Ledger *x = NULL;
                assert_int_equal(ledger_open(&x, dir, 100, &rep), 0);
                if (!rep.corrupt || !strstr(rep.reason, cases[i].expect) || !strstr(rep.reason, "moved aside to") ||
                    !startswith(rep.reason, "ledger: "))
                        fail_msg("%s: corrupt=%d reason '%s'", cases[i].name, rep.corrupt, rep.reason);
                assert_null(strchr(rep.reason, '\n'));
                assert_int_equal(rep.entries, 0);
                LedgerStats st;
                ledger_get_stats(x, &st);
                assert_int_equal(st.references, 0);
                assert_true(ledger_is_dirty(x));

                /* kept for inspection, byte for byte, and named in the reason */
                _cleanup_free_ char *aside = find_corrupt_file(dir);
                assert_non_null(aside);
                assert_non_null(strstr(rep.reason, aside));
                struct stat sb;
                assert_int_equal(stat(aside, &sb), 0);
                assert_int_equal(sb.st_size, (off_t) n);
                assert_int_equal(access(path, F_OK), -1);

                /* the agent carries on: rebuild, save, reopen cleanly */
                record_ok(x, "k8s.io", NGINX, DC, 500);
                assert_int_equal(ledger_save(x), 0);
                ledger_free(x);
                assert_int_equal(ledger_open(&x, dir, 100, &rep), 0);
                assert_false(rep.corrupt);
                assert_int_equal(rep.entries, 1);
                ledger_free(x);
        }
}

static void test_corrupt_twice_keeps_both(void **state) {
        const char *dir = *state;
        char path[512];
        snprintf(path, sizeof(path), "%s/" LEDGER_FILE, dir);
        for (int i = 0; i < 2; i++) {
                write_file(path, "garbage", 7);
                LedgerOpenReport rep;
                Ledger *l = NULL;
                assert_int_equal(ledger_open(&l, dir, 10, &rep), 0);
                assert_true(rep.corrupt);
                ledger_free(l);
        }
        DIR *d = opendir(dir);
        assert_non_null(d);
        unsigned n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
                n += startswith(de->d_name, LEDGER_FILE ".corrupt-");
        closedir(d);
        assert_int_equal(n, 2);
}

/* The saver and the loader share one limit, LEDGER_FILE_MAX: a ledger whose file would
 * be larger is pruned (oldest history first) until it fits, so the next start loads it.
 * It used to be written whole, and the next start refused it and moved it aside: all
 * history lost. Long references with many raised kinds reach the limit at ~4,500
 * references here. */
static void test_save_fits_the_loader(void **state) {
        const char *dir = *state;
#if defined(__SANITIZE_ADDRESS__)
        skip(); /* 64 MiB of JSON, formatted three times and parsed once: minutes under ASan */
#endif
        enum { N_REFS = 5200, N_KINDS = LEDGER_RAISED_PER_REF_MAX };
        Ledger *l = NULL;
        LedgerOpenReport rep;
        assert_int_equal(ledger_open(&l, dir, 1000000, &rep), 0);
        char ref[PW_REF_MAX], digest[PW_DIGEST_MAX], kinds[N_KINDS][LEDGER_KIND_MAX];
        for (unsigned k = 0; k < N_KINDS; k++)
                snprintf(kinds[k], sizeof(kinds[k]), "kind-%026u", k);
        for (unsigned i = 0; i < N_REFS; i++) {
                int n = snprintf(ref, sizeof(ref), "registry.example.com/app%05u/", i);
                memset(ref + n, 'x', sizeof(ref) - 1 - (size_t) n - 3);
                memcpy(ref + sizeof(ref) - 4, ":v1", 4);
                snprintf(digest, sizeof(digest), "sha512:%0128u", i);
                record_ok(l, "k8s.io", ref, digest, 1000 + i);
                for (unsigned k = 0; k < N_KINDS; k++)
                        assert_int_equal(ledger_mark_raised(l, "k8s.io", ref, digest, kinds[k], 1000 + i), 0);
        }
        int r = ledger_save(l);
        LedgerStats st;
        ledger_get_stats(l, &st);
        if (r < 0 || st.pruned == 0)
                fail_msg("save returned %d and pruned %" PRIu64 " of %u references", r, st.pruned, N_REFS);
        assert_int_equal((uint64_t) r, st.pruned); /* what the save pruned, for the caller to say */
        assert_true(st.references < N_REFS);
        uint64_t kept = st.references;
        ledger_free(l);

        char path[512];
        struct stat sb;
        snprintf(path, sizeof(path), "%s/" LEDGER_FILE, dir);
        assert_int_equal(stat(path, &sb), 0);
        assert_true((uint64_t) sb.st_size <= LEDGER_FILE_MAX);
        assert_true((uint64_t) sb.st_size > LEDGER_FILE_MAX / 10 * 9); /* pruned to fit, not emptied */

        assert_int_equal(ledger_open(&l, dir, 1000000, &rep), 0);
        if (rep.corrupt)
                fail_msg("%s", rep.reason);
        assert_int_equal(rep.references, kept);
        /* the newest references stay, the oldest went first */
        LedgerDigest cur;
        snprintf(ref, sizeof(ref), "registry.example.com/app%05u/", N_REFS - 1);
        size_t n = strlen(ref);
        memset(ref + n, 'x', sizeof(ref) - 1 - n - 3);
        memcpy(ref + sizeof(ref) - 4, ":v1", 4);
        assert_int_equal(ledger_lookup(l, "k8s.io", ref, &cur), 0);
        memcpy(ref + strlen("registry.example.com/app"), "00000", 5);
        assert_int_equal(ledger_lookup(l, "k8s.io", ref, &cur), -ENOENT);
        ledger_free(l);
}

/* Loading a file with many more entries than the cap prunes them all at once: it used to
 * rescan the whole table for every entry pruned (O(excess x n): 40k references took 88 s
 * before the agent started). alarm() turns that into a failed test instead of a hang; the
 * rest checks that the batch keeps the cap's order: history first, then the references
 * seen longest ago, and never more than needed. */
#define N_REFS 15000
#define CAP 16

/* For test_prune_many_at_load: of the history entries (references 0, 10, 20...), the
 * 100 last seen most recently are kept: those of the last 1,000 references. */
static int check_history_kept(const char *ns, const char *ref, const LedgerDigest *digests, size_t n_digests,
                              size_t current, void *userdata) {
        unsigned i;
        if (sscanf(ref, "registry.example.com/app%u:v1", &i) != 1)
                return -EINVAL;
        size_t want = i % 10 == 0 && i >= N_REFS - 1000 ? 2 : 1;
        if (n_digests != want || digests[current].first_seen_usec < 1000000) {
                *(unsigned *) userdata = i;
                return 1;
        }
        return 0;
}

static void test_prune_many_at_load(void **state) {
        Ledger *l = new_ok(2 * N_REFS + 10);
        for (unsigned i = 0; i < N_REFS; i++) {
                char ref[96], d1[PW_DIGEST_MAX], d2[PW_DIGEST_MAX];
                snprintf(ref, sizeof(ref), "registry.example.com/app%u:v1", i);
                snprintf(d1, sizeof(d1), "sha256:%064x", i);
                snprintf(d2, sizeof(d2), "sha256:%064x", i + N_REFS);
                /* every tenth reference has a history entry; current last_seen shuffled */
                if (i % 10 == 0)
                        record_ok(l, "k8s.io", ref, d2, 10 + i);
                record_ok(l, "k8s.io", ref, d1, 1000000 + (uint64_t) (i * 7919u % N_REFS));
        }
        size_t len;
        _cleanup_free_ char *text = format_ok(l, &len);
        ledger_free(l);

        /* cap above the references: only history goes, the oldest first */
        l = new_ok(N_REFS + 100);
        alarm(10);
        assert_int_equal(ledger_parse(l, text, len, NULL, 0), 0);
        alarm(0);
        LedgerStats st;
        ledger_get_stats(l, &st);
        assert_int_equal(st.references, N_REFS);
        assert_int_equal(st.entries, N_REFS + 100);
        assert_int_equal(st.pruned, N_REFS / 10 - 100);
        LedgerDigest cur;
        char ref[96];
        unsigned bad = UINT_MAX;
        assert_int_equal(ledger_foreach(l, check_history_kept, &bad), 0);
        if (bad != UINT_MAX)
                fail_msg("reference %u keeps the wrong history", bad);
        ledger_free(l);

        /* cap below the references: all history, then the references seen longest ago */
        l = new_ok(CAP);
        alarm(10);
        assert_int_equal(ledger_parse(l, text, len, NULL, 0), 0);
        alarm(0);
        ledger_get_stats(l, &st);
        assert_int_equal(st.references, CAP);
        assert_int_equal(st.entries, CAP);
        assert_int_equal(st.pruned, N_REFS + N_REFS / 10 - CAP);
        for (unsigned i = 0; i < N_REFS; i++) {
                snprintf(ref, sizeof(ref), "registry.example.com/app%u:v1", i);
                bool newest = i * 7919u % N_REFS >= N_REFS - CAP;
                int r = ledger_lookup(l, "k8s.io", ref, &cur);
                if (r != (newest ? 0 : -ENOENT))
                        fail_msg("reference %u (rank %u): lookup %d", i, i * 7919u % N_REFS, r);
        }
        ledger_free(l);
}
#undef N_REFS
#undef CAP

/* ledger_read(), for report and scan: loads what ledger_open() would, and changes nothing
 * on disk whatever it finds (ledger_open() moves a bad file aside, removes the temp file). */
static void test_read_only(void **state) {
        const char *dir = *state;
        char path[512], tmp[512], err[LEDGER_REASON_MAX];
        snprintf(path, sizeof(path), "%s/" LEDGER_FILE, dir);
        snprintf(tmp, sizeof(tmp), "%s/" LEDGER_FILE ".tmp", dir);
        Ledger *l = NULL;
        assert_int_equal(ledger_read(&l, dir, 100, err, sizeof(err)), -ENOENT);

        assert_int_equal(ledger_open(&l, dir, 100, NULL), 0);
        record_ok(l, "k8s.io", NGINX, DA, 100);
        assert_int_equal(ledger_save(l), 0);
        ledger_free(l);
        FILE *f = fopen(tmp, "we");
        assert_non_null(f);
        fputs("left by a crash", f);
        assert_int_equal(fclose(f), 0);

        l = NULL;
        assert_int_equal(ledger_read(&l, dir, 100, err, sizeof(err)), 0);
        LedgerDigest cur;
        assert_int_equal(ledger_lookup(l, "k8s.io", NGINX, &cur), 0);
        assert_string_equal(cur.digest, DA);
        assert_int_equal(ledger_save(l), -EINVAL); /* no file behind it */
        ledger_free(l);

        static const struct {
                const char *content; /* NULL: a FIFO */
                const char *reason;
        } cases[] = {
                { "pullwatch-ledger 1 999 00000000\n{", "truncated" },
                { "garbage", "" },
                { NULL, "not a regular file" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                assert_int_equal(unlink(path), 0);
                if (cases[i].content) {
                        f = fopen(path, "we");
                        assert_non_null(f);
                        fputs(cases[i].content, f);
                        assert_int_equal(fclose(f), 0);
                } else
                        assert_int_equal(mkfifo(path, 0600), 0);
                l = (Ledger *) 0x1;
                alarm(10);
                int r = ledger_read(&l, dir, 100, err, sizeof(err));
                alarm(0);
                assert_int_equal(r, -EBADMSG);
                assert_ptr_equal(l, (Ledger *) 0x1);
                if (!startswith(err, "ledger: ") || !strstr(err, cases[i].reason) || strchr(err, '\n'))
                        fail_msg("case %zu: \"%s\"", i, err);
                /* nothing moved, nothing removed */
                struct stat st;
                assert_int_equal(lstat(path, &st), 0);
                assert_int_equal(access(tmp, F_OK), 0);
                DIR *d = opendir(dir);
                assert_non_null(d);
                unsigned n = 0;
                for (struct dirent *de; (de = readdir(d));)
                        n += de->d_name[0] != '.';
                closedir(d);
                assert_int_equal(n, 3); /* the snapshot, the temp file, the change log */
        }
}

static void test_big_ledger_and_cap_at_load(void **state) {
        const char *dir = *state;
        Ledger *l = NULL;
        LedgerOpenReport rep;
        assert_int_equal(ledger_open(&l, dir, 20000, &rep), 0);
        for (unsigned i = 0; i < 5000; i++) {
                char ref[128], d1[PW_DIGEST_MAX], d2[PW_DIGEST_MAX];
                snprintf(ref, sizeof(ref), "registry.example.com/team%u/app%u:v%u", i % 50, i, i % 7);
                snprintf(d1, sizeof(d1), "sha256:%064x", i);
                snprintf(d2, sizeof(d2), "sha256:%064x", i + 100000);
                record_ok(l, i % 2 ? "k8s.io" : "default", ref, d1, 1000 + i);
                record_ok(l, i % 2 ? "k8s.io" : "default", ref, d2, 20000 + i);
                if (i % 10 == 0)
                        assert_int_equal(
                                ledger_mark_raised(l, i % 2 ? "k8s.io" : "default", ref, d2, "tag_moved", 20000 + i), 0);
        }
        assert_int_equal(ledger_save(l), 0);
        size_t len1;
        _cleanup_free_ char *t1 = format_ok(l, &len1);
        ledger_free(l);

        assert_int_equal(ledger_open(&l, dir, 20000, &rep), 0);
        assert_false(rep.corrupt);
        assert_int_equal(rep.references, 5000);
        assert_int_equal(rep.entries, 10000);
        assert_int_equal(rep.raised, 500);
        assert_int_equal(rep.pruned, 0);
        LedgerDigest cur;
        assert_int_equal(ledger_lookup(l, "k8s.io", "registry.example.com/team37/app4237:v2", &cur), 0);
        assert_int_equal(cur.last_seen_usec, 20000 + 4237);
        size_t len2;
        _cleanup_free_ char *t2 = format_ok(l, &len2);
        assert_int_equal(len1, len2);
        assert_memory_equal(t1, t2, len1);
        ledger_free(l);

        /* reopened with a smaller cap: history pruned first (oldest first), currents kept */
        assert_int_equal(ledger_open(&l, dir, 6000, &rep), 0);
        assert_false(rep.corrupt);
        assert_int_equal(rep.entries, 6000);
        assert_int_equal(rep.pruned, 4000);
        assert_int_equal(rep.references, 5000);
        assert_true(ledger_is_dirty(l));
        /* the 1000 remaining non-current entries are the most recently seen ones */
        bool changed;
        char prev[PW_DIGEST_MAX];
        char d1[PW_DIGEST_MAX];
        snprintf(d1, sizeof(d1), "sha256:%064x", 4999);
        assert_int_equal(ledger_record(l, "k8s.io", "registry.example.com/team49/app4999:v1", d1, 50000, prev, &changed), 0);
        assert_true(changed);
        LedgerStats st;
        ledger_get_stats(l, &st);
        assert_int_equal(st.entries, 6000); /* d1 of app4999 was still there: no new entry */
        ledger_free(l);
}

/* References with characters JSON must escape survive save and reopen, and the file
 * holds them escaped exactly as jansson writes them. */
static void test_string_escaping_round_trip(void **state) {
        static const struct {
                const char *ref, *json; /* json: how the file must spell it */
        } cases[] = {
                { "quote\"d:1", "\"quote\\\"d:1\"" },
                { "back\\slash:1", "\"back\\\\slash:1\"" },
                { "ctl\b\f\n\r\t:1", "\"ctl\\b\\f\\n\\r\\t:1\"" },
                { "ctl\x01\x1f\x7f/:1", "\"ctl\\u0001\\u001F\x7f/:1\"" },
                { "utf8-\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80:1", "\"utf8-\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80:1\"" },
        };
        static const char *const kind = "k\"\\\x02";
        const char *dir = *state;
        Ledger *l = NULL;
        assert_int_equal(ledger_open(&l, dir, 100, NULL), 0);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                record_ok(l, "n\"s", cases[i].ref, DA, 100 + i);
                record_ok(l, "n\"s", cases[i].ref, "sha256:x\\y", 200 + i); /* not packable: kept as text */
                assert_int_equal(ledger_mark_raised(l, "n\"s", cases[i].ref, DA, kind, 300 + i), 0);
        }
        assert_int_equal(ledger_save(l), 0);
        ledger_free(l);

        int fd = openat(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY);
        assert_true(fd >= 0);
        int ffd = openat(fd, LEDGER_FILE, O_RDONLY);
        assert_true(ffd >= 0);
        char text[8192];
        ssize_t n = read(ffd, text, sizeof(text) - 1);
        assert_true(n > 0 && (size_t) n < sizeof(text) - 1);
        text[n] = 0;
        close(ffd);
        close(fd);
        assert_non_null(strstr(text, "{\"namespace\":\"n\\\"s\",\"reference\":"));
        assert_non_null(strstr(text, "\"kind\":\"k\\\"\\\\\\u0002\""));
        assert_non_null(strstr(text, "\"digest\":\"sha256:x\\\\y\""));
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                if (!strstr(text, cases[i].json))
                        fail_msg("case %zu: %s not in the file", i, cases[i].json);

        LedgerOpenReport rep;
        assert_int_equal(ledger_open(&l, dir, 100, &rep), 0);
        assert_false(rep.corrupt);
        assert_int_equal(rep.references, ELEMENTSOF(cases));
        assert_int_equal(rep.entries, 2 * ELEMENTSOF(cases));
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                LedgerDigest d;
                assert_int_equal(ledger_lookup(l, "n\"s", cases[i].ref, &d), 0);
                assert_string_equal(d.digest, "sha256:x\\y");
                assert_int_equal(d.first_seen_usec, 200 + i);
                assert_false(ledger_should_raise(l, "n\"s", cases[i].ref, DA, kind, 1000, 0));
                assert_true(ledger_should_raise(l, "n\"s", cases[i].ref, DA, "k\"\\", 1000, 0));
        }
        /* and the reloaded ledger writes the same bytes again */
        char *t1 = NULL;
        size_t l1;
        assert_int_equal(ledger_format(l, &t1, &l1), 0);
        assert_int_equal(l1, (size_t) n);
        assert_memory_equal(t1, text, l1);
        free(t1);
        ledger_free(l);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_record_lookup_moves),
                cmocka_unit_test(test_record_invalid),
                cmocka_unit_test(test_raised_semantics),
                cmocka_unit_test(test_pruning_order),
                cmocka_unit_test(test_foreach_order),
                cmocka_unit_test_setup_teardown(test_save_reopen_round_trip, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_save_on_full_disk, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_corrupt_files, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_corrupt_twice_keeps_both, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_big_ledger_and_cap_at_load, setup_dir, teardown_dir),
                cmocka_unit_test(test_prune_many_at_load),
                cmocka_unit_test_setup_teardown(test_read_only, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_save_fits_the_loader, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_string_escaping_round_trip, setup_dir, teardown_dir),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
