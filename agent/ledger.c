/* The node's tag -> digest history; format and bounds in include/pullwatch/ledger.h. */
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <sys/param.h>
#include <sys/stat.h>
#include <zlib.h>

#include "pullwatch/ledger.h"
#include "pullwatch/util.h"

#define LEDGER_TMP_FILE LEDGER_FILE ".tmp"
#define LEDGER_MAGIC "pullwatch-ledger"
#define LEDGER_VERSION 1
#define HEADER_LINE_MAX 96
#define SLOT_EMPTY UINT32_MAX
#define NO_CURRENT SIZE_MAX

typedef struct Raised {
        char digest[PW_DIGEST_MAX];
        char kind[LEDGER_KIND_MAX];
        uint64_t last_raised_usec;
} Raised;

typedef struct Ref {
        char *ns, *ref; /* owned */
        LedgerDigest *digests; /* owned; never empty once recorded */
        size_t n_digests, alloc_digests;
        size_t current;
        Raised *raised; /* owned */
        size_t n_raised, alloc_raised;
} Ref;

struct Ledger {
        int dfd; /* state directory, -1 for a file-less ledger */
        size_t max_entries;
        Ref **refs; /* owned */
        size_t n_refs, alloc_refs;
        uint32_t *slots; /* open addressing, linear probing; indices into refs */
        size_t n_slots;  /* power of two, at least twice n_refs */
        size_t entries, raised;
        uint64_t pruned;
        bool dirty;
};

/* ---- hash table ---- */

static uint64_t hash_key(const char *ns, const char *ref) {
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */
        for (const char *p = ns; *p; p++)
                h = (h ^ (uint8_t) *p) * 1099511628211ULL;
        h = (h ^ 0xffU) * 1099511628211ULL;
        for (const char *p = ref; *p; p++)
                h = (h ^ (uint8_t) *p) * 1099511628211ULL;
        return h;
}

/* Slot holding (ns, ref), or the empty slot where it would go. */
static size_t find_slot(const Ledger *l, const char *ns, const char *ref) {
        size_t mask = l->n_slots - 1;
        for (size_t i = (size_t) hash_key(ns, ref) & mask;; i = (i + 1) & mask) {
                uint32_t v = l->slots[i];
                if (v == SLOT_EMPTY)
                        return i;
                const Ref *r = l->refs[v];
                if (streq_ptr(r->ns, ns) && streq_ptr(r->ref, ref))
                        return i;
        }
}

static int table_rebuild(Ledger *l, size_t n_slots) {
        uint32_t *slots = malloc(n_slots * sizeof(uint32_t));
        if (!slots)
                return -ENOMEM;
        memset(slots, 0xff, n_slots * sizeof(uint32_t));
        free(l->slots);
        l->slots = slots;
        l->n_slots = n_slots;
        for (size_t i = 0; i < l->n_refs; i++)
                l->slots[find_slot(l, l->refs[i]->ns, l->refs[i]->ref)] = (uint32_t) i;
        return 0;
}

static Ref *ref_get(const Ledger *l, const char *ns, const char *ref) {
        if (l->n_slots == 0)
                return NULL;
        uint32_t v = l->slots[find_slot(l, ns, ref)];
        return v == SLOT_EMPTY ? NULL : l->refs[v];
}

static Ref *ref_free(Ref *r) {
        if (!r)
                return NULL;
        free(r->ns);
        free(r->ref);
        free(r->digests);
        free(r->raised);
        free(r);
        return NULL;
}

/* Add a new, empty reference (caller checked it is absent). */
static int ref_add(Ledger *l, const char *ns, const char *ref, Ref **ret) {
        int r;
        if (l->n_refs >= UINT32_MAX - 1)
                return -E2BIG;
        if ((l->n_refs + 1) * 2 > l->n_slots) {
                r = table_rebuild(l, l->n_slots ? l->n_slots * 2 : 64);
                if (r < 0)
                        return r;
        }
        if (l->n_refs == l->alloc_refs) {
                size_t n = l->alloc_refs ? l->alloc_refs * 2 : 32;
                Ref **p = reallocarray(l->refs, n, sizeof(Ref *));
                if (!p)
                        return -ENOMEM;
                l->refs = p;
                l->alloc_refs = n;
        }
        Ref *e = calloc(1, sizeof(Ref));
        if (!e)
                return -ENOMEM;
        e->ns = strdup(ns);
        e->ref = strdup(ref);
        e->current = NO_CURRENT;
        if (!e->ns || !e->ref) {
                ref_free(e);
                return -ENOMEM;
        }
        l->slots[find_slot(l, ns, ref)] = (uint32_t) l->n_refs;
        l->refs[l->n_refs++] = e;
        *ret = e;
        return 0;
}

/* Remove refs[i] entirely. The table is rebuilt: O(n), only when pruning whole references. */
static void ref_remove(Ledger *l, size_t i) {
        Ref *e = l->refs[i];
        l->entries -= e->n_digests;
        l->raised -= e->n_raised;
        ref_free(e);
        l->refs[i] = l->refs[--l->n_refs];
        /* Rebuilding at the same size cannot fail to find room; on ENOMEM the old table
         * would be stale, so rebuild in place instead of allocating. */
        memset(l->slots, 0xff, l->n_slots * sizeof(uint32_t));
        for (size_t k = 0; k < l->n_refs; k++)
                l->slots[find_slot(l, l->refs[k]->ns, l->refs[k]->ref)] = (uint32_t) k;
}

static int reserve_digest(Ref *e) {
        if (e->n_digests < e->alloc_digests)
                return 0;
        size_t n = e->alloc_digests ? e->alloc_digests * 2 : 2;
        LedgerDigest *p = reallocarray(e->digests, n, sizeof(LedgerDigest));
        if (!p)
                return -ENOMEM;
        e->digests = p;
        e->alloc_digests = n;
        return 0;
}

static int reserve_raised(Ref *e) {
        if (e->n_raised < e->alloc_raised)
                return 0;
        size_t n = e->alloc_raised ? MIN(e->alloc_raised * 2, (size_t) LEDGER_RAISED_PER_REF_MAX) : 4;
        Raised *p = reallocarray(e->raised, n, sizeof(Raised));
        if (!p)
                return -ENOMEM;
        e->raised = p;
        e->alloc_raised = n;
        return 0;
}

static size_t find_digest(const Ref *e, const char *digest) {
        for (size_t i = 0; i < e->n_digests; i++)
                if (streq_ptr(e->digests[i].digest, digest))
                        return i;
        return NO_CURRENT;
}

static Raised *find_raised(const Ref *e, const char *digest, const char *kind) {
        for (size_t i = 0; i < e->n_raised; i++)
                if (streq_ptr(e->raised[i].digest, digest) && streq_ptr(e->raised[i].kind, kind))
                        return &e->raised[i];
        return NULL;
}

/* Remove history entry j (not the current one) and the findings raised for it. */
static void remove_digest(Ledger *l, Ref *e, size_t j) {
        size_t k = 0;
        for (size_t i = 0; i < e->n_raised; i++) {
                if (streq_ptr(e->raised[i].digest, e->digests[j].digest)) {
                        l->raised--;
                        continue;
                }
                e->raised[k++] = e->raised[i];
        }
        e->n_raised = k;
        memmove(e->digests + j, e->digests + j + 1, (e->n_digests - j - 1) * sizeof(LedgerDigest));
        e->n_digests--;
        if (e->current != NO_CURRENT && e->current > j)
                e->current--;
        l->entries--;
}

static void prune(Ledger *l, const Ref *protect) {
        while (l->entries > l->max_entries) {
                Ref *best = NULL;
                size_t best_j = 0;
                for (size_t i = 0; i < l->n_refs; i++) {
                        Ref *e = l->refs[i];
                        for (size_t j = 0; j < e->n_digests; j++)
                                if (j != e->current &&
                                    (!best || e->digests[j].last_seen_usec < best->digests[best_j].last_seen_usec)) {
                                        best = e;
                                        best_j = j;
                                }
                }
                if (best) {
                        remove_digest(l, best, best_j);
                        l->pruned++;
                        l->dirty = true;
                        continue;
                }
                /* Only current digests left: the least recently seen reference goes. */
                size_t victim = SIZE_MAX;
                uint64_t oldest = UINT64_MAX;
                for (size_t i = 0; i < l->n_refs; i++) {
                        const Ref *e = l->refs[i];
                        if (e == protect || e->current == NO_CURRENT)
                                continue;
                        if (victim == SIZE_MAX || e->digests[e->current].last_seen_usec < oldest) {
                                victim = i;
                                oldest = e->digests[e->current].last_seen_usec;
                        }
                }
                if (victim == SIZE_MAX)
                        return;
                l->pruned += l->refs[victim]->n_digests;
                ref_remove(l, victim);
                l->dirty = true;
        }
}

/* ---- public API ---- */

static bool str_ok(const char *s, size_t max) {
        return !isempty(s) && strnlen(s, max) < max;
}

int ledger_new(Ledger **ret, size_t max_entries) {
        if (!ret || max_entries == 0)
                return -EINVAL;
        Ledger *l = calloc(1, sizeof(Ledger));
        if (!l)
                return -ENOMEM;
        l->dfd = -1;
        l->max_entries = max_entries;
        *ret = l;
        return 0;
}

/* Drop all content, keep the configuration. */
static void ledger_clear(Ledger *l) {
        for (size_t i = 0; i < l->n_refs; i++)
                ref_free(l->refs[i]);
        free(l->refs);
        free(l->slots);
        l->refs = NULL;
        l->slots = NULL;
        l->n_refs = l->alloc_refs = l->n_slots = 0;
        l->entries = l->raised = 0;
}

Ledger *ledger_free(Ledger *l) {
        if (!l)
                return NULL;
        ledger_clear(l);
        if (l->dfd >= 0)
                close(l->dfd);
        free(l);
        return NULL;
}

int ledger_record(Ledger *l, const char *ns, const char *ref, const char *digest, uint64_t now_usec,
                  char *ret_previous_digest, bool *ret_changed) {
        char previous[PW_DIGEST_MAX] = "";
        int r;

        if (!l || !str_ok(ns, PW_NS_MAX) || !str_ok(ref, PW_REF_MAX) || !str_ok(digest, PW_DIGEST_MAX))
                return -EINVAL;

        Ref *e = ref_get(l, ns, ref);
        if (!e) {
                r = ref_add(l, ns, ref, &e);
                if (r < 0)
                        return r;
        }
        size_t j = find_digest(e, digest);
        if (j == NO_CURRENT) {
                r = reserve_digest(e);
                if (r < 0) {
                        if (e->n_digests == 0) /* just added: do not leave an empty reference */
                                ref_remove(l, l->slots[find_slot(l, ns, ref)]);
                        return r;
                }
                j = e->n_digests++;
                e->digests[j] = (LedgerDigest) { .first_seen_usec = now_usec, .last_seen_usec = now_usec };
                strcpy_bounded(e->digests[j].digest, sizeof(e->digests[j].digest), digest);
                l->entries++;
        } else {
                e->digests[j].last_seen_usec = MAX(e->digests[j].last_seen_usec, now_usec);
                e->digests[j].first_seen_usec = MIN(e->digests[j].first_seen_usec, now_usec);
        }
        if (e->current != NO_CURRENT && e->current != j)
                strcpy_bounded(previous, sizeof(previous), e->digests[e->current].digest);
        e->current = j;
        l->dirty = true;
        prune(l, e);

        if (ret_previous_digest)
                strcpy_bounded(ret_previous_digest, PW_DIGEST_MAX, previous);
        if (ret_changed)
                *ret_changed = previous[0] != 0;
        return 0;
}

int ledger_lookup(const Ledger *l, const char *ns, const char *ref, LedgerDigest *ret) {
        if (!l || !ns || !ref)
                return -EINVAL;
        const Ref *e = ref_get(l, ns, ref);
        if (!e || e->current == NO_CURRENT)
                return -ENOENT;
        if (ret)
                *ret = e->digests[e->current];
        return 0;
}

static int cmp_ref(const void *a, const void *b) {
        const Ref *x = *(const Ref *const *) a, *y = *(const Ref *const *) b;
        int c = strcmp(x->ns, y->ns);
        return c ? c : strcmp(x->ref, y->ref);
}

static int sorted_refs(const Ledger *l, Ref ***ret) {
        Ref **v = malloc(MAX(l->n_refs, (size_t) 1) * sizeof(Ref *));
        if (!v)
                return -ENOMEM;
        if (l->n_refs > 0) {
                memcpy(v, l->refs, l->n_refs * sizeof(Ref *));
                qsort(v, l->n_refs, sizeof(Ref *), cmp_ref);
        }
        *ret = v;
        return 0;
}

int ledger_foreach(const Ledger *l, ledger_visit_t visit, void *userdata) {
        _cleanup_free_ Ref **v = NULL;
        if (!l || !visit)
                return -EINVAL;
        int r = sorted_refs(l, &v);
        if (r < 0)
                return r;
        for (size_t i = 0; i < l->n_refs; i++) {
                r = visit(v[i]->ns, v[i]->ref, v[i]->digests, v[i]->n_digests, v[i]->current, userdata);
                if (r < 0)
                        return r;
                if (r > 0)
                        break;
        }
        return 0;
}

bool ledger_should_raise(const Ledger *l, const char *ns, const char *ref, const char *digest, const char *kind,
                         uint64_t now_usec, uint64_t reminder_interval_usec) {
        if (!l || !ns || !ref || !digest || !kind)
                return true;
        const Ref *e = ref_get(l, ns, ref);
        if (!e)
                return true;
        const Raised *x = find_raised(e, digest, kind);
        if (!x)
                return true;
        if (reminder_interval_usec == 0 || now_usec < x->last_raised_usec)
                return false;
        return now_usec - x->last_raised_usec >= reminder_interval_usec;
}

int ledger_mark_raised(Ledger *l, const char *ns, const char *ref, const char *digest, const char *kind,
                       uint64_t now_usec) {
        if (!l || !str_ok(ns, PW_NS_MAX) || !str_ok(ref, PW_REF_MAX) || !str_ok(digest, PW_DIGEST_MAX) ||
            !str_ok(kind, LEDGER_KIND_MAX))
                return -EINVAL;
        Ref *e = ref_get(l, ns, ref);
        if (!e)
                return -ENOENT;
        Raised *x = find_raised(e, digest, kind);
        if (!x) {
                if (e->n_raised >= LEDGER_RAISED_PER_REF_MAX) {
                        x = &e->raised[0];
                        for (size_t i = 1; i < e->n_raised; i++)
                                if (e->raised[i].last_raised_usec < x->last_raised_usec)
                                        x = &e->raised[i];
                } else {
                        int r = reserve_raised(e);
                        if (r < 0)
                                return r;
                        x = &e->raised[e->n_raised++];
                        l->raised++;
                }
                *x = (Raised) {};
                strcpy_bounded(x->digest, sizeof(x->digest), digest);
                strcpy_bounded(x->kind, sizeof(x->kind), kind);
        }
        x->last_raised_usec = now_usec;
        l->dirty = true;
        return 0;
}

bool ledger_is_dirty(const Ledger *l) {
        return l && l->dirty;
}

void ledger_get_stats(const Ledger *l, LedgerStats *ret) {
        if (!l || !ret)
                return;
        *ret = (LedgerStats) {
                .references = l->n_refs,
                .entries = l->entries,
                .raised = l->raised,
                .pruned = l->pruned,
        };
}

/* ---- format ---- */

/* json_decrefp() comes with jansson >= 2.11 */

static json_t *json_time(uint64_t v) {
        return json_integer((json_int_t) MIN(v, (uint64_t) INT64_MAX));
}

/* json_object_set_new() steals even on failure: chain them and check once. */
static json_t *ref_to_json(const Ref *e) {
        _cleanup_(json_decrefp) json_t *o = json_object(), *digests = json_array(), *raised = json_array();
        if (!o || !digests || !raised)
                return NULL;
        for (size_t j = 0; j < e->n_digests; j++) {
                json_t *d = json_pack("{s:s, s:o, s:o}", "digest", e->digests[j].digest, "first_seen",
                                      json_time(e->digests[j].first_seen_usec), "last_seen",
                                      json_time(e->digests[j].last_seen_usec));
                if (!d || json_array_append_new(digests, d) < 0)
                        return NULL;
        }
        for (size_t j = 0; j < e->n_raised; j++) {
                json_t *d = json_pack("{s:s, s:s, s:o}", "digest", e->raised[j].digest, "kind", e->raised[j].kind,
                                      "last_raised", json_time(e->raised[j].last_raised_usec));
                if (!d || json_array_append_new(raised, d) < 0)
                        return NULL;
        }
        if (json_object_set_new(o, "namespace", json_string(e->ns)) < 0 ||
            json_object_set_new(o, "reference", json_string(e->ref)) < 0 ||
            json_object_set_new(o, "current", json_string(e->digests[e->current].digest)) < 0 ||
            json_object_set_new(o, "digests", TAKE_PTR(digests)) < 0 ||
            json_object_set_new(o, "raised", TAKE_PTR(raised)) < 0)
                return NULL;
        return TAKE_PTR(o);
}

int ledger_format(const Ledger *l, char **ret, size_t *ret_len) {
        _cleanup_free_ Ref **v = NULL;
        _cleanup_(json_decrefp) json_t *root = NULL, *refs = NULL;
        _cleanup_free_ char *body = NULL;
        char header[HEADER_LINE_MAX];

        if (!l || !ret)
                return -EINVAL;
        int r = sorted_refs(l, &v);
        if (r < 0)
                return r;
        refs = json_array();
        if (!refs)
                return -ENOMEM;
        for (size_t i = 0; i < l->n_refs; i++) {
                if (v[i]->current == NO_CURRENT)
                        continue; /* cannot happen: references are created with a digest */
                json_t *o = ref_to_json(v[i]);
                if (!o || json_array_append_new(refs, o) < 0)
                        return -ENOMEM;
        }
        root = json_pack("{s:i, s:O}", "version", LEDGER_VERSION, "references", refs);
        if (!root)
                return -ENOMEM;
        body = json_dumps(root, JSON_COMPACT);
        if (!body)
                return -ENOMEM;
        size_t blen = strlen(body);
        uint32_t crc = (uint32_t) crc32(crc32(0L, Z_NULL, 0), (const Bytef *) body, (uInt) blen);
        int hlen = snprintf(header, sizeof(header), LEDGER_MAGIC " %d %zu %08" PRIx32 "\n", LEDGER_VERSION, blen, crc);

        char *out = malloc((size_t) hlen + blen + 1);
        if (!out)
                return -ENOMEM;
        memcpy(out, header, (size_t) hlen);
        memcpy(out + hlen, body, blen + 1);
        *ret = out;
        if (ret_len)
                *ret_len = (size_t) hlen + blen;
        return 0;
}

/* ---- parse ---- */

#define fail(err, errlen, ...) errbuf_fail(err, errlen, -EBADMSG, __VA_ARGS__)

static bool parse_decimal(const char **p, uint64_t *ret) {
        uint64_t v = 0;
        const char *s = *p;
        if (*s < '0' || *s > '9')
                return false;
        for (; *s >= '0' && *s <= '9'; s++) {
                uint64_t d = (uint64_t) (*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return false;
                v = v * 10 + d;
        }
        *p = s;
        *ret = v;
        return true;
}

/* "pullwatch-ledger 1 LEN CRC\n": returns the header length, or -EBADMSG. */
static int parse_header(const char *buf, size_t len, uint64_t *ret_body_len, uint32_t *ret_crc, char *err,
                        size_t errlen) {
        char line[HEADER_LINE_MAX];
        if (len == 0)
                return fail(err, errlen, "empty file");
        const char *nl = memchr(buf, '\n', MIN(len, sizeof(line) - 1));
        if (!nl)
                return fail(err, errlen, "truncated or missing header line");
        size_t hl = (size_t) (nl - buf);
        memcpy(line, buf, hl);
        line[hl] = 0;
        if (strlen(line) != hl)
                return fail(err, errlen, "NUL byte in header line");

        const char *p = line;
        uint64_t version, blen, crc = 0;
        if (!startswith(p, LEDGER_MAGIC " "))
                return fail(err, errlen, "not a pullwatch ledger (bad magic)");
        p += strlen(LEDGER_MAGIC " ");
        if (!parse_decimal(&p, &version) || *p != ' ')
                return fail(err, errlen, "malformed header line");
        if (version != LEDGER_VERSION)
                return fail(err, errlen, "unsupported version %" PRIu64, version);
        p++;
        if (!parse_decimal(&p, &blen) || *p != ' ')
                return fail(err, errlen, "malformed header line");
        p++;
        for (unsigned i = 0; i < 8; i++, p++) {
                int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
                if (d < 0)
                        return fail(err, errlen, "malformed header line");
                crc = crc << 4 | (uint64_t) d;
        }
        if (*p != 0)
                return fail(err, errlen, "malformed header line");
        *ret_body_len = blen;
        *ret_crc = (uint32_t) crc;
        return (int) hl + 1;
}

static const char *get_string(const json_t *o, const char *key, size_t max) {
        const char *s = json_string_value(json_object_get(o, key));
        return s && str_ok(s, max) ? s : NULL;
}
static bool get_time(const json_t *o, const char *key, uint64_t *ret) {
        const json_t *v = json_object_get(o, key);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return false;
        *ret = (uint64_t) json_integer_value(v);
        return true;
}

static int cmp_digest_ptr(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static int parse_ref(Ledger *l, const json_t *o, size_t i, char *err, size_t errlen) {
        const char *ns = get_string(o, "namespace", PW_NS_MAX), *ref = get_string(o, "reference", PW_REF_MAX),
                   *cur = get_string(o, "current", PW_DIGEST_MAX);
        const json_t *digests = json_object_get(o, "digests"), *raised = json_object_get(o, "raised");
        Ref *e;
        int r;

        if (!json_is_object(o))
                return fail(err, errlen, "references[%zu]: not an object", i);
        if (!ns || !ref || !cur)
                return fail(err, errlen, "references[%zu]: namespace, reference or current missing or too long", i);
        if (!json_is_array(digests) || json_array_size(digests) == 0)
                return fail(err, errlen, "references[%zu]: digests missing or empty", i);
        if (raised && (!json_is_array(raised) || json_array_size(raised) > LEDGER_RAISED_PER_REF_MAX))
                return fail(err, errlen, "references[%zu]: raised is not an array of at most %d", i,
                            LEDGER_RAISED_PER_REF_MAX);
        if (ref_get(l, ns, ref))
                return fail(err, errlen, "references[%zu]: duplicate reference %s", i, ref);
        r = ref_add(l, ns, ref, &e);
        if (r < 0)
                return r;

        size_t n = json_array_size(digests);
        e->digests = calloc(n, sizeof(LedgerDigest));
        if (!e->digests)
                return -ENOMEM;
        e->alloc_digests = n;
        for (size_t j = 0; j < n; j++) {
                const json_t *d = json_array_get(digests, j);
                const char *dg = get_string(d, "digest", PW_DIGEST_MAX);
                LedgerDigest *x = &e->digests[j];
                if (!dg || !get_time(d, "first_seen", &x->first_seen_usec) ||
                    !get_time(d, "last_seen", &x->last_seen_usec))
                        return fail(err, errlen, "references[%zu].digests[%zu]: bad digest, first_seen or last_seen", i, j);
                strcpy_bounded(x->digest, sizeof(x->digest), dg);
                e->n_digests++;
                l->entries++;
                if (streq_ptr(dg, cur))
                        e->current = j;
        }
        if (e->current == NO_CURRENT)
                return fail(err, errlen, "references[%zu]: current digest is not in its history", i);

        /* duplicates, in O(n log n) */
        _cleanup_free_ const char **sorted = malloc(n * sizeof(char *));
        if (!sorted)
                return -ENOMEM;
        for (size_t j = 0; j < n; j++)
                sorted[j] = e->digests[j].digest;
        qsort(sorted, n, sizeof(char *), cmp_digest_ptr);
        for (size_t j = 1; j < n; j++)
                if (streq_ptr(sorted[j - 1], sorted[j]))
                        return fail(err, errlen, "references[%zu]: duplicate digest %s", i, sorted[j]);

        for (size_t j = 0; j < json_array_size(raised); j++) {
                const json_t *d = json_array_get(raised, j);
                const char *dg = get_string(d, "digest", PW_DIGEST_MAX), *kind = get_string(d, "kind", LEDGER_KIND_MAX);
                uint64_t t;
                if (!dg || !kind || !get_time(d, "last_raised", &t))
                        return fail(err, errlen, "references[%zu].raised[%zu]: bad digest, kind or last_raised", i, j);
                if (find_raised(e, dg, kind))
                        return fail(err, errlen, "references[%zu].raised[%zu]: duplicate", i, j);
                r = reserve_raised(e);
                if (r < 0)
                        return r;
                Raised *x = &e->raised[e->n_raised++];
                *x = (Raised) { .last_raised_usec = t };
                strcpy_bounded(x->digest, sizeof(x->digest), dg);
                strcpy_bounded(x->kind, sizeof(x->kind), kind);
                l->raised++;
        }
        return 0;
}

int ledger_parse(Ledger *into, const char *buf, size_t len, char *err, size_t errlen) {
        uint64_t blen = 0;
        uint32_t crc = 0;
        json_error_t jerr;
        int r;

        if (!into || (!buf && len > 0))
                return -EINVAL;
        if (into->n_refs > 0)
                return -EBUSY;
        if (len > LEDGER_FILE_MAX)
                return fail(err, errlen, "file too large (%zu bytes, at most %u)", len, LEDGER_FILE_MAX);
        int hl = parse_header(buf, len, &blen, &crc, err, errlen);
        if (hl < 0)
                return hl;
        size_t have = len - (size_t) hl;
        if (blen > have)
                return fail(err, errlen, "truncated (header announces %" PRIu64 " body bytes, %zu present)", blen, have);
        if (blen < have)
                return fail(err, errlen, "%zu bytes of trailing data after the body", have - (size_t) blen);
        const char *body = buf + hl;
        uint32_t got = (uint32_t) crc32(crc32(0L, Z_NULL, 0), (const Bytef *) body, (uInt) blen);
        if (got != crc)
                return fail(err, errlen, "CRC mismatch (expected %08" PRIx32 ", got %08" PRIx32 ")", crc, got);

        _cleanup_(json_decrefp) json_t *root = json_loadb(body, (size_t) blen, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return fail(err, errlen, "bad JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        const json_t *ver = json_object_get(root, "version"), *refs = json_object_get(root, "references");
        if (!json_is_integer(ver) || json_integer_value(ver) != LEDGER_VERSION)
                return fail(err, errlen, "body version missing or not %d", LEDGER_VERSION);
        if (!json_is_array(refs))
                return fail(err, errlen, "references missing or not an array");

        Ledger *tmp = NULL;
        r = ledger_new(&tmp, into->max_entries);
        if (r < 0)
                return r;
        for (size_t i = 0; i < json_array_size(refs); i++) {
                r = parse_ref(tmp, json_array_get(refs, i), i, err, errlen);
                if (r < 0) {
                        ledger_free(tmp);
                        return r;
                }
        }
        prune(tmp, NULL);

        /* all good: move the content over */
        ledger_clear(into);
        into->refs = TAKE_PTR(tmp->refs);
        into->n_refs = tmp->n_refs;
        into->alloc_refs = tmp->alloc_refs;
        into->slots = TAKE_PTR(tmp->slots);
        into->n_slots = tmp->n_slots;
        into->entries = tmp->entries;
        into->raised = tmp->raised;
        into->pruned += tmp->pruned;
        into->dirty = tmp->pruned > 0;
        tmp->n_refs = 0;
        ledger_free(tmp);
        return 0;
}

/* ---- file I/O ---- */

static int read_all(int fd, char **ret, size_t *ret_len) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADMSG;
        if ((uint64_t) st.st_size > LEDGER_FILE_MAX)
                return -EFBIG;
        size_t n = (size_t) st.st_size;
        _cleanup_free_ char *buf = malloc(n + 1);
        if (!buf)
                return -ENOMEM;
        size_t got = 0;
        while (got < n) {
                ssize_t k = read(fd, buf + got, n - got);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                got += (size_t) k;
        }
        *ret = TAKE_PTR(buf);
        *ret_len = got;
        return 0;
}

/* Rename the bad file out of the way, never over an earlier one. */
static int move_aside(int dfd, char *ret_name, size_t size) {
        struct tm tm;
        time_t t = time(NULL);
        char stamp[32];
        if (!gmtime_r(&t, &tm) || strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm) == 0)
                return -EINVAL;
        for (unsigned i = 0; i < 100; i++) {
                if (i == 0)
                        snprintf(ret_name, size, LEDGER_FILE ".corrupt-%s", stamp);
                else
                        snprintf(ret_name, size, LEDGER_FILE ".corrupt-%s.%u", stamp, i);
                int k = renameat2(dfd, LEDGER_FILE, dfd, ret_name, RENAME_NOREPLACE);
                if (k < 0 && errno == EINVAL) /* file system without RENAME_NOREPLACE */
                        k = faccessat(dfd, ret_name, F_OK, AT_SYMLINK_NOFOLLOW) == 0
                                    ? (errno = EEXIST, -1)
                                    : renameat(dfd, LEDGER_FILE, dfd, ret_name);
                if (k == 0) {
                        (void) fsync(dfd);
                        return 0;
                }
                if (errno != EEXIST)
                        return -errno;
        }
        return -EEXIST;
}

int ledger_open(Ledger **ret, const char *state_dir, size_t max_entries, LedgerOpenReport *report) {
        LedgerOpenReport rep = {};
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        char reason[LEDGER_REASON_MAX / 2] = "";
        int r;

        if (!ret || isempty(state_dir) || max_entries == 0)
                return -EINVAL;
        if (mkdir(state_dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        Ledger *l = NULL;
        r = ledger_new(&l, max_entries);
        if (r < 0)
                return r;
        l->dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (l->dfd < 0) {
                r = -errno;
                goto fail;
        }
        (void) unlinkat(l->dfd, LEDGER_TMP_FILE, 0);

        int fd = openat(l->dfd, LEDGER_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0 && errno == ENOENT)
                goto done;
        if (fd < 0 && errno != ELOOP) {
                r = -errno;
                goto fail;
        }
        r = fd < 0 ? -EBADMSG : read_all(fd, &buf, &len);
        if (fd >= 0)
                close(fd);
        if (r == -EBADMSG)
                snprintf(reason, sizeof(reason), "not a regular file");
        else if (r == -EFBIG)
                snprintf(reason, sizeof(reason), "file too large (at most %u bytes)", LEDGER_FILE_MAX);
        else if (r < 0)
                goto fail;
        else {
                r = ledger_parse(l, buf, len, reason, sizeof(reason));
                if (r < 0 && r != -EBADMSG)
                        goto fail;
        }
        if (r < 0) {
                char aside[128];
                rep.corrupt = true;
                int k = move_aside(l->dfd, aside, sizeof(aside));
                if (k < 0)
                        snprintf(rep.reason, sizeof(rep.reason),
                                 "ledger: %s/" LEDGER_FILE ": %s, could not move it aside (%s), starting empty", state_dir,
                                 reason, strerror(-k));
                else
                        snprintf(rep.reason, sizeof(rep.reason),
                                 "ledger: %s/" LEDGER_FILE ": %s, moved aside to %s/%s, starting empty", state_dir,
                                 reason, state_dir, aside);
                l->dirty = true;
        }
done:
        rep.references = l->n_refs;
        rep.entries = l->entries;
        rep.raised = l->raised;
        rep.pruned = l->pruned;
        if (report)
                *report = rep;
        *ret = l;
        return 0;
fail:
        ledger_free(l);
        return r;
}

int ledger_save(Ledger *l) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        if (!l || l->dfd < 0)
                return -EINVAL;
        int r = ledger_format(l, &text, &len);
        if (r < 0)
                return r;

        _cleanup_close_ int fd = openat(l->dfd, LEDGER_TMP_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                                        0600);
        if (fd < 0)
                return -errno;
        size_t done = 0;
        while (done < len) {
                ssize_t w = write(fd, text + done, len - done);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0) {
                        r = w < 0 ? -errno : -ENOSPC;
                        goto fail;
                }
                done += (size_t) w;
        }
        if (fsync(fd) < 0) {
                r = -errno;
                goto fail;
        }
        if (renameat(l->dfd, LEDGER_TMP_FILE, l->dfd, LEDGER_FILE) < 0) {
                r = -errno;
                goto fail;
        }
        if (fsync(l->dfd) < 0)
                return -errno;
        l->dirty = false;
        return 0;
fail:
        (void) unlinkat(l->dfd, LEDGER_TMP_FILE, 0);
        return r;
}
