/* The node's tag -> digest history; format and bounds in include/pullwatch/ledger.h.
 *
 * Memory layout (about 200 bytes per reference with one digest and three raised kinds;
 * after a load or a compaction, all of it in the frozen image, see there):
 *   - a reference is one allocation: a small header and "ns\0ref\0" inline, plus one
 *     allocation of exactly its history entries followed by its raised entries;
 *   - digests are interned once per ledger (Atom, reference counted by the history and
 *     raised entries naming them); a canonical "sha256:" + 64 lowercase hex digest is
 *     kept as its 32 bytes, anything else as a string;
 *   - finding kinds are interned in a small table, a raised entry holds its index;
 *   - references and their items come from the ledger's own Pool, not the malloc heap:
 *     they are made in the middle of bursts (a listing, shipping) and, spread among the
 *     burst's freed buffers, pinned ~10 times their size as private dirty heap pages.
 * ledger_format()/ledger_save() stream the JSON body, without building a tree. */
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/param.h>
#include <sys/stat.h>
#include <zlib.h>

#include "pullwatch/fileio.h"
#include "pullwatch/ledger.h"
#include "pullwatch/pool.h"
#include "pullwatch/refname.h"
#include "pullwatch/sha256.h"
#include "pullwatch/timefmt.h"
#include "pullwatch/util.h"
#include "pullwatch/utf8.h"
#include "pullwatch/frame.h"

#define LEDGER_TMP_FILE LEDGER_FILE ".tmp"
#define LEDGER_MAGIC "pullwatch-ledger"
#define LEDGER_VERSION 1
#define HEADER_LINE_MAX 96
#define SLOT_EMPTY UINT32_MAX
#define NO_CURRENT UINT32_MAX
#define NO_INDEX SIZE_MAX
#define NO_ATOM UINT32_MAX
#define NO_PENDING UINT32_MAX
#define KINDS_MAX UINT16_MAX
#define SHA256_LEN SHA256_DIGEST_SIZE
/* Open addressing with linear probing, kept at most 3/4 full: at 10,000 references a
 * table of 16,384 slots (64 KiB) where half full took 32,768; a miss probes ~4 slots at
 * 0.61, ~8.5 at the 0.75 bound. */
#define TABLE_FULL(n, slots) ((n) * 4 > (size_t) (slots) * 3)

/* Which snapshot a change log extends: the snapshot body's length, CRC32 (both in its
 * header line) and Adler-32 (computed), so that a log left behind by a compaction that
 * crashed between writing the snapshot and starting the new log is never replayed over
 * the snapshot that already holds it. */
typedef struct SnapshotId {
        uint64_t length;
        uint32_t crc, adler;
} SnapshotId;

/* 36 bytes: its hash is recomputed from its content when the table is resized or an atom
 * leaves it, rather than kept (12 bytes a digest, 120 KB at 10,000 digests, with the
 * pointer for the rare other digests). */
typedef struct Atom {
        uint8_t packed[SHA256_LEN]; /* SHA256_PREFIX + 64 lowercase hex, as bytes; with ATOM_STR the
                                     * first bytes hold a char * to any other digest (owned); when
                                     * free, the first 4 the next free atom or NO_ATOM */
        uint32_t uses;              /* history and raised entries naming it, | ATOM_STR; 0: free */
} Atom;

#define ATOM_STR 0x80000000U
#define ATOM_USES(x) ((x)->uses & ~ATOM_STR)

static_assert(sizeof(Atom) == 36, "Atom is 32 bytes of digest and a count");

static const char *atom_other(const Atom *x) {
        const char *s;
        memcpy(&s, x->packed, sizeof s);
        return s;
}

static uint32_t atom_next_free(const Atom *x) {
        uint32_t v;
        memcpy(&v, x->packed, sizeof v);
        return v;
}

typedef struct Hist {
        uint64_t first_seen_usec, last_seen_usec;
        uint32_t atom;
} Hist;

typedef struct Raised {
        uint64_t last_raised_usec;
        uint32_t atom;
        uint16_t kind; /* index into Ledger.kinds */
} Raised;

typedef struct Ref {
        void *items;            /* owned: Hist[n_digests] then Raised[n_raised], allocated to size */
        uint32_t n_digests;     /* never 0 once recorded */
        uint32_t current;
        uint32_t pending;       /* index into Ledger.pending, NO_PENDING when saved as it is */
        uint8_t n_raised, ns_len;
        bool twinned;           /* in Ledger.twins, under its current digest */
        char key[];             /* namespace NUL reference NUL */
} Ref;

struct Ledger {
        int dfd; /* state directory, -1 for a file-less ledger */
        size_t max_entries;
        Pool *pool; /* owned: every Ref and Ref.items; goes with the content when swapped */
        Ref **refs; /* owned */
        size_t n_refs, alloc_refs;
        uint32_t *slots; /* open addressing, linear probing; indices into refs */
        size_t n_slots;  /* power of two; n_refs at most 3/4 of it (TABLE_FULL) */
        Atom *atoms;     /* owned */
        size_t n_atoms, alloc_atoms, live_atoms;
        uint32_t free_atom;
        uint32_t *atom_slots; /* open addressing, linear probing; indices into atoms */
        size_t n_atom_slots;  /* power of two; live_atoms at most 3/4 of it (TABLE_FULL) */
        char **kinds;         /* owned, each owned */
        size_t n_kinds, alloc_kinds;
        size_t entries, raised;
        uint64_t pruned;
        bool dirty;
        /* what changed since the last save, for the change log: the references to log as
         * they are now (Ref.pending indexes this), and the keys ("ns\0ref\0") of those
         * removed, logged first */
        Ref **pending;
        size_t n_pending, alloc_pending;
        char *removed;
        size_t removed_len, alloc_removed;
        size_t n_removed;
        bool compact_due; /* the log cannot take the next changes (a change not tracked for want of
                           * memory, a failed append, a torn log, pruned at load): the next save compacts */
        /* the files (LEDGER_FILE the snapshot, LEDGER_LOG_FILE the change log since it) */
        SnapshotId base;  /* identity of the snapshot this content was loaded from or saved to */
        int log_fd;       /* the change log, open for appends; -1: the next save compacts */
        uint64_t log_bytes, log_records, log_seq; /* valid bytes (where the next frame goes), records, last seq */
        uint64_t snap_bytes;
        /* tagged references by (namespace, repository name, current digest): answers
         * ledger_tagged_current() without a scan; open addressing, linear probing, the
         * hash recomputed from the reference when needed (it was 16 bytes in every Ref) */
        Ref **twins;
        size_t n_twin_slots, n_twins; /* power of two, at most 3/4 full (TABLE_FULL); refs in it */
        /* the frozen image (see "the frozen image" below): every Ref and Ref.items as they
         * were at the last load or compaction, in a private mapping of an unlinked file;
         * NULL when there is none; the tables (refs, atoms, slots, atom_slots, twins) are in
         * it too, copied out when they grow. seen[k]: how far a re-list moved the current
         * digest's last_seen of frozen reference k past the image's (0: not), kept here so
         * that the image's page is not written: within one LEDGER_LAST_SEEN_GRAIN_USEC (an
         * hour) of it, or the move is a change written in place, so 32 bits hold it (owned,
         * n_frozen of them; NULL without memory) */
        uint8_t *frozen;
        size_t frozen_bytes; /* mapped */
        uint32_t *seen;
        size_t n_frozen;
        bool freeze_failed; /* the last ledger_freeze() with references could not make an image */
        bool settle_due;    /* ledger_settle(): the next save compacts */
        bool from_listing;  /* ledger_from_listing(): what is recorded now comes from a listing */
        bool listing_added; /* a reference was made from a listing since the last settle */
};

static void ledger_freeze(Ledger *l);
static void image_release(Ledger *l);

static_assert(LEDGER_RAISED_PER_REF_MAX <= UINT8_MAX, "n_raised is a uint8_t");
static_assert(PW_NS_MAX <= UINT8_MAX, "ns_len is a uint8_t");

static inline const char *ref_ns(const Ref *e) {
        return e->key;
}
static inline const char *ref_name(const Ref *e) {
        return e->key + e->ns_len + 1;
}
static inline Hist *ref_hist(const Ref *e) {
        return e->items;
}
static inline Raised *ref_raised(const Ref *e) {
        return (Raised *) ((Hist *) e->items + e->n_digests);
}

static void *free_null(void *p) {
        free(p);
        return NULL;
}

/* Whether p lies in the frozen image (not the pool's: never released, never resized in place). */
static inline bool is_frozen(const Ledger *l, const void *p) {
        return l->frozen && (const uint8_t *) p >= l->frozen && (const uint8_t *) p < l->frozen + l->frozen_bytes;
}

/* Where a frozen reference's last_seen moves go; NULL for one in the pool (or without the array). */
static uint32_t *ref_seen(const Ledger *l, const Ref *e) {
        uint64_t k;
        if (!l->seen || !is_frozen(l, e))
                return NULL;
        memcpy(&k, (const uint8_t *) e - sizeof k, sizeof k); /* its number, in the image before it */
        return k < l->n_frozen ? &l->seen[k] : NULL;
}

/* History entry j's last_seen: its own, plus a later move in seen[] for the current digest. */
static uint64_t hist_last_seen(const Ledger *l, const Ref *e, size_t j) {
        uint64_t v = ((const Hist *) e->items)[j].last_seen_usec;
        const uint32_t *s;
        if (j == e->current && (s = ref_seen(l, e)))
                return v + *s;
        return v;
}

/* Set the current digest's last_seen to v (> its own, in the same LEDGER_LAST_SEEN_GRAIN_USEC)
 * without writing the image's page: false if it must be written (not frozen, no seen[]). */
static bool seen_move(const Ledger *l, const Ref *e, uint64_t v) {
        uint32_t *s = ref_seen(l, e);
        uint64_t own = ((const Hist *) e->items)[e->current].last_seen_usec;
        if (!s || v < own || v - own > UINT32_MAX)
                return false;
        *s = (uint32_t) (v - own);
        return true;
}

/* Before e's current digest changes (or its history is written): its last_seen goes from
 * seen[] into the history. */
static void ref_fold(const Ledger *l, Ref *e) {
        uint32_t *s = ref_seen(l, e);
        if (!s || *s == 0)
                return;
        if (e->current != NO_CURRENT)
                ((Hist *) e->items)[e->current].last_seen_usec += *s;
        *s = 0;
}

/* Release an array of the ledger's (not one of the frozen image's: it goes with it). */
static void table_release(const Ledger *l, void *p, size_t bytes);

/* Resize e->items to hold nd history and nr raised entries; moves nothing. */
static int items_resize(Ledger *l, Ref *e, size_t nd, size_t nr) {
        size_t n = nd * sizeof(Hist) + nr * sizeof(Raised);
        if (n == 0) {
                if (!is_frozen(l, e->items))
                        pool_release(l->pool, e->items);
                e->items = NULL;
                return 0;
        }
        void *p;
        if (is_frozen(l, e->items)) { /* moves to the pool; the image's copy stays until the next one */
                size_t old = e->n_digests * sizeof(Hist) + e->n_raised * sizeof(Raised);
                p = pool_alloc(l->pool, n);
                if (p)
                        memcpy(p, e->items, MIN(old, n));
        } else
                p = pool_realloc(l->pool, e->items, n);
        if (!p)
                return nd * sizeof(Hist) + nr * sizeof(Raised) <=
                                       e->n_digests * sizeof(Hist) + e->n_raised * sizeof(Raised)
                               ? 0 /* shrinking: the old block is still good */
                               : -ENOMEM;
        e->items = p;
        return 0;
}

/* ---- arrays that grow with the content ----
 *
 * refs, slots, atoms, atom_slots, twins and pending: once over ARRAY_MAP_MIN each is a
 * mapping of its own (grown with mremap(), only the pages written are resident, given
 * back whole). From the malloc heap they were grown by realloc() in the middle of a
 * listing's burst, moved up the heap each time they doubled, and the holes they left
 * among the burst's buffers kept the heap private dirty: 1.6 MiB of heap after a fresh
 * reconcile of 10,000 images, against 0.4 MiB when the same arrays were made at load. */
#if defined(__SANITIZE_ADDRESS__)
#define ARRAY_MAP_MIN SIZE_MAX /* AddressSanitizer sees malloc()ed arrays only */
#else
#define ARRAY_MAP_MIN ((size_t) 64 << 10)
#endif

static size_t map_round(size_t bytes) {
        size_t page = (size_t) sysconf(_SC_PAGESIZE);
        return (bytes + page - 1) / page * page;
}

static void array_free(void *p, size_t bytes) {
        if (!p)
                return;
        if (bytes >= ARRAY_MAP_MIN)
                munmap(p, map_round(bytes));
        else
                free(p);
}

/* *p, of old_bytes, becomes new_bytes (> 0), content kept up to the smaller; on failure
 * -ENOMEM and *p untouched. */
static int array_resize(void **p, size_t old_bytes, size_t new_bytes) {
        bool was_map = *p && old_bytes >= ARRAY_MAP_MIN, is_map = new_bytes >= ARRAY_MAP_MIN;
        void *q;
        if (!*p)
                old_bytes = 0;
        if (!was_map && !is_map)
                q = realloc(*p, new_bytes);
        else if (was_map && is_map) {
                q = mremap(*p, map_round(old_bytes), map_round(new_bytes), MREMAP_MAYMOVE);
                q = q == MAP_FAILED ? NULL : q;
        } else if (is_map) {
                q = mmap(NULL, map_round(new_bytes), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                q = q == MAP_FAILED ? NULL : q;
                if (q && old_bytes > 0)
                        memcpy(q, *p, old_bytes);
                if (q)
                        free(*p);
        } else {
                q = malloc(new_bytes);
                if (q) {
                        memcpy(q, *p, new_bytes);
                        munmap(*p, map_round(old_bytes));
                }
        }
        if (!q)
                return -ENOMEM;
        *p = q;
        return 0;
}

/* greedy_realloc() for these arrays: doubling from initial. */
static int array_grow(void **p, size_t *alloc, size_t need, size_t size, size_t initial) {
        if (need <= *alloc)
                return 0;
        size_t n;
        if (greedy_count(*alloc, need, size, initial, &n) < 0 || array_resize(p, *alloc * size, n * size) < 0)
                return -ENOMEM;
        *alloc = n;
        return 0;
}

static void table_release(const Ledger *l, void *p, size_t bytes) {
        if (!is_frozen(l, p))
                array_free(p, bytes);
}

/* array_grow() for the tables, which may be in the frozen image: copied out first. */
static int table_grow(const Ledger *l, void **p, size_t *alloc, size_t need, size_t size, size_t initial) {
        if (need <= *alloc)
                return 0;
        if (!is_frozen(l, *p))
                return array_grow(p, alloc, need, size, initial);
        size_t n;
        void *q = NULL;
        if (greedy_count(*alloc, need, size, initial, &n) < 0 || array_resize(&q, 0, n * size) < 0)
                return -ENOMEM;
        memcpy(q, *p, *alloc * size);
        *p = q;
        *alloc = n;
        return 0;
}

/* A new array of n elements of size, every byte fill. */
static void *array_new(size_t n, size_t size, int fill) {
        void *p = NULL;
        if (n > SIZE_MAX / size || array_resize(&p, 0, n * size) < 0)
                return NULL;
        memset(p, fill, n * size);
        return p;
}

/* ---- strings ---- */

static uint64_t fnv1a(uint64_t h, const char *s) {
        for (const char *p = s; *p; p++)
                h = (h ^ (uint8_t) *p) * 1099511628211ULL;
        return h;
}
#define FNV_OFFSET 1469598103934665603ULL

static bool str_ok(const char *s, size_t max) {
        return !isempty(s) && strnlen(s, max) < max;
}


static bool text_ok(const char *s, size_t max) {
        return str_ok(s, max) && utf8_valid_n(s, strlen(s));
}

/* ---- interned digests ---- */

/* The digest text of atom a: its string, or decoded into buf (PW_DIGEST_MAX bytes). */
static const char *atom_str(const Ledger *l, uint32_t a, char *buf) {
        const Atom *x = &l->atoms[a];
        if (x->uses & ATOM_STR)
                return atom_other(x);
        sha256_digest_unpack(x->packed, buf);
        return buf;
}

/* The hash of a digest: of its 32 bytes when it packs, else of its text. */
static uint32_t digest_hash(const char *digest, const uint8_t *packed) {
        if (!packed)
                return (uint32_t) fnv1a(FNV_OFFSET, digest);
        uint64_t h = FNV_OFFSET;
        for (size_t i = 0; i < SHA256_LEN; i++)
                h = (h ^ packed[i]) * 1099511628211ULL;
        return (uint32_t) (h ^ (h >> 32));
}

static uint32_t atom_hash(const Atom *x) {
        return x->uses & ATOM_STR ? digest_hash(atom_other(x), NULL) : digest_hash(NULL, x->packed);
}

static bool atom_is(const Atom *x, const char *digest, const uint8_t *packed) {
        return x->uses & ATOM_STR ? !packed && streq_ptr(atom_other(x), digest)
                                  : packed && memcmp(x->packed, packed, SHA256_LEN) == 0;
}

static size_t atom_slot(const Ledger *l, uint32_t hash, const char *digest, const uint8_t *packed) {
        size_t mask = l->n_atom_slots - 1;
        for (size_t i = hash & mask;; i = (i + 1) & mask) {
                uint32_t v = l->atom_slots[i];
                if (v == SLOT_EMPTY || atom_is(&l->atoms[v], digest, packed))
                        return i;
        }
}

static uint32_t atom_find(const Ledger *l, const char *digest) {
        uint8_t packed[SHA256_LEN];
        if (l->n_atom_slots == 0 || !digest)
                return NO_ATOM;
        bool p = sha256_digest_pack(digest, packed);
        return l->atom_slots[atom_slot(l, digest_hash(digest, p ? packed : NULL), digest, p ? packed : NULL)];
}

static int atom_slots_grow(Ledger *l) {
        size_t n = l->n_atom_slots ? l->n_atom_slots * 2 : 64;
        uint32_t *slots = array_new(n, sizeof(uint32_t), 0xff);
        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < l->n_atom_slots; i++) {
                uint32_t v = l->atom_slots[i];
                if (v == SLOT_EMPTY)
                        continue;
                size_t k = atom_hash(&l->atoms[v]) & (n - 1);
                while (slots[k] != SLOT_EMPTY)
                        k = (k + 1) & (n - 1);
                slots[k] = v;
        }
        table_release(l, l->atom_slots, l->n_atom_slots * sizeof(uint32_t));
        l->atom_slots = slots;
        l->n_atom_slots = n;
        return 0;
}

/* Take a use of digest's atom, interning it if new. */
static int atom_ref(Ledger *l, const char *digest, uint32_t *ret) {
        uint8_t packed[SHA256_LEN];
        int r;
        if (TABLE_FULL(l->live_atoms + 1, l->n_atom_slots)) {
                r = atom_slots_grow(l);
                if (r < 0)
                        return r;
        }
        bool p = sha256_digest_pack(digest, packed);
        size_t slot = atom_slot(l, digest_hash(digest, p ? packed : NULL), digest, p ? packed : NULL);
        if (l->atom_slots[slot] != SLOT_EMPTY) {
                l->atoms[l->atom_slots[slot]].uses++;
                *ret = l->atom_slots[slot];
                return 0;
        }
        if (l->free_atom == NO_ATOM && l->n_atoms == l->alloc_atoms) {
                if (l->n_atoms >= NO_ATOM - 1)
                        return -E2BIG;
                if (table_grow(l, (void **) &l->atoms, &l->alloc_atoms, l->n_atoms + 1, sizeof(Atom), 16) < 0)
                        return -ENOMEM;
        }
        char *s = NULL;
        if (!p && !(s = strdup(digest)))
                return -ENOMEM;
        uint32_t a;
        if (l->free_atom != NO_ATOM) {
                a = l->free_atom;
                l->free_atom = atom_next_free(&l->atoms[a]);
        } else
                a = (uint32_t) l->n_atoms++;
        Atom *x = &l->atoms[a];
        *x = (Atom) { .uses = 1 };
        if (p)
                memcpy(x->packed, packed, SHA256_LEN);
        else {
                memcpy(x->packed, &s, sizeof s);
                x->uses |= ATOM_STR;
        }
        l->atom_slots[slot] = a;
        l->live_atoms++;
        *ret = a;
        return 0;
}

/* Drop a use; the last one frees the atom (backward-shift deletion keeps probing exact). */
static void atom_unref(Ledger *l, uint32_t a) {
        Atom *x = &l->atoms[a];
        x->uses--;
        if (ATOM_USES(x) > 0)
                return;
        size_t mask = l->n_atom_slots - 1, i = atom_hash(x) & mask;
        while (l->atom_slots[i] != a)
                i = (i + 1) & mask;
        for (size_t j = i;;) {
                j = (j + 1) & mask;
                uint32_t v = l->atom_slots[j];
                if (v == SLOT_EMPTY)
                        break;
                size_t home = atom_hash(&l->atoms[v]) & mask;
                /* v may move to i unless its home lies cyclically in (i, j] */
                bool stays = i <= j ? home > i && home <= j : home > i || home <= j;
                if (!stays) {
                        l->atom_slots[i] = v;
                        i = j;
                }
        }
        l->atom_slots[i] = SLOT_EMPTY;
        if (x->uses & ATOM_STR)
                free((char *) atom_other(x));
        *x = (Atom) { .uses = 0 };
        memcpy(x->packed, &l->free_atom, sizeof l->free_atom);
        l->free_atom = a;
        l->live_atoms--;
}

/* ---- interned kinds ---- */

static size_t kind_find(const Ledger *l, const char *kind) {
        for (size_t i = 0; i < l->n_kinds; i++)
                if (streq_ptr(l->kinds[i], kind))
                        return i;
        return NO_INDEX;
}

static int kind_intern(Ledger *l, const char *kind, uint16_t *ret) {
        size_t i = kind_find(l, kind);
        if (i == NO_INDEX) {
                if (l->n_kinds >= KINDS_MAX)
                        return -E2BIG;
                if (greedy_realloc((void **) &l->kinds, &l->alloc_kinds, l->n_kinds + 1, sizeof(char *), 8) < 0)
                        return -ENOMEM;
                char *s = strdup(kind);
                if (!s)
                        return -ENOMEM;
                i = l->n_kinds++;
                l->kinds[i] = s;
        }
        *ret = (uint16_t) i;
        return 0;
}

/* ---- hash table of references ---- */

static uint64_t hash_key(const char *ns, const char *ref) {
        return fnv1a((fnv1a(FNV_OFFSET, ns) ^ 0xffU) * 1099511628211ULL, ref);
}

/* Slot holding (ns, ref), or the empty slot where it would go. */
static size_t find_slot(const Ledger *l, const char *ns, const char *ref) {
        size_t mask = l->n_slots - 1;
        for (size_t i = (size_t) hash_key(ns, ref) & mask;; i = (i + 1) & mask) {
                uint32_t v = l->slots[i];
                if (v == SLOT_EMPTY)
                        return i;
                const Ref *e = l->refs[v];
                if (streq_ptr(ref_ns(e), ns) && streq_ptr(ref_name(e), ref))
                        return i;
        }
}

static void table_fill(Ledger *l) {
        memset(l->slots, 0xff, l->n_slots * sizeof(uint32_t));
        for (size_t i = 0; i < l->n_refs; i++)
                l->slots[find_slot(l, ref_ns(l->refs[i]), ref_name(l->refs[i]))] = (uint32_t) i;
}

static int table_rebuild(Ledger *l, size_t n_slots) {
        uint32_t *slots = array_new(n_slots, sizeof(uint32_t), 0xff);
        if (!slots)
                return -ENOMEM;
        table_release(l, l->slots, l->n_slots * sizeof(uint32_t));
        l->slots = slots;
        l->n_slots = n_slots;
        table_fill(l);
        return 0;
}

static Ref *ref_get(const Ledger *l, const char *ns, const char *ref) {
        if (l->n_slots == 0 || !ns || !ref)
                return NULL;
        uint32_t v = l->slots[find_slot(l, ns, ref)];
        return v == SLOT_EMPTY ? NULL : l->refs[v];
}

static Ref *ref_free(Ledger *l, Ref *e) {
        if (!e)
                return NULL;
        if (!is_frozen(l, e->items))
                pool_release(l->pool, e->items);
        uint32_t *s = ref_seen(l, e);
        if (s)
                *s = 0;
        if (!is_frozen(l, e))
                pool_release(l->pool, e);
        return NULL;
}

/* Add a new, empty reference (caller checked it is absent). */
static int ref_add(Ledger *l, const char *ns, const char *ref, Ref **ret) {
        int r;
        if (l->n_refs >= UINT32_MAX - 1)
                return -E2BIG;
        if (TABLE_FULL(l->n_refs + 1, l->n_slots)) {
                r = table_rebuild(l, l->n_slots ? l->n_slots * 2 : 64);
                if (r < 0)
                        return r;
        }
        if (table_grow(l, (void **) &l->refs, &l->alloc_refs, l->n_refs + 1, sizeof(Ref *), 32) < 0)
                return -ENOMEM;
        size_t nl = strlen(ns), rl = strlen(ref);
        Ref *e = pool_alloc(l->pool, offsetof(Ref, key) + nl + 1 + rl + 1);
        if (!e)
                return -ENOMEM;
        *e = (Ref) { .current = NO_CURRENT, .pending = NO_PENDING, .ns_len = (uint8_t) nl };
        memcpy(e->key, ns, nl + 1);
        memcpy(e->key + nl + 1, ref, rl + 1);
        l->slots[find_slot(l, ns, ref)] = (uint32_t) l->n_refs;
        l->refs[l->n_refs++] = e;
        *ret = e;
        return 0;
}

/* ---- changes since the last save ---- */

/* e changed: it goes into the next save's log records, as it is then. Without memory
 * to track it, the next save rewrites the snapshot instead. */
static void ref_touch(Ledger *l, Ref *e) {
        if (e->pending != NO_PENDING)
                return;
        if (l->n_pending >= UINT32_MAX - 1 ||
            array_grow((void **) &l->pending, &l->alloc_pending, l->n_pending + 1, sizeof(Ref *), 32) < 0) {
                l->compact_due = true;
                return;
        }
        e->pending = (uint32_t) l->n_pending;
        l->pending[l->n_pending++] = e;
}

static void ref_untouch(Ledger *l, Ref *e) {
        if (e->pending == NO_PENDING)
                return;
        Ref *last = l->pending[--l->n_pending];
        l->pending[e->pending] = last;
        last->pending = e->pending;
        e->pending = NO_PENDING;
}

/* e is going away: its removal is logged (before any later record of the same key). */
static void ref_note_removed(Ledger *l, Ref *e) {
        size_t n = e->ns_len + 1 + strlen(ref_name(e)) + 1;
        ref_untouch(l, e);
        if (greedy_realloc((void **) &l->removed, &l->alloc_removed, l->removed_len + n, 1, 256) < 0) {
                l->compact_due = true;
                return;
        }
        memcpy(l->removed + l->removed_len, e->key, n);
        l->removed_len += n;
        l->n_removed++;
}

/* Saved: nothing is pending any more. After a burst (a listing of thousands of images)
 * the arrays are given back: an idle agent holds what it knows, not what it once changed. */
static void changes_clear(Ledger *l) {
        for (size_t i = 0; i < l->n_pending; i++)
                l->pending[i]->pending = NO_PENDING;
        l->n_pending = 0;
        l->removed_len = 0;
        l->n_removed = 0;
        if (l->alloc_pending > 256) {
                array_free(l->pending, l->alloc_pending * sizeof(Ref *));
                l->pending = NULL;
                l->alloc_pending = 0;
        }
        if (l->alloc_removed > 16384) {
                l->removed = free_null(l->removed);
                l->alloc_removed = 0;
        }
}

/* ---- the index of tagged references by current digest ---- */

static uint64_t twin_hash(const char *ns, const char *name, uint32_t atom) {
        uint64_t h = fnv1a(fnv1a(FNV_OFFSET, ns) * 1099511628211ULL, name);
        h = (h ^ atom) * 1099511628211ULL;
        return h ? h : 1;
}

/* e's key in the index, from what e is now: false when e is not a tagged reference.
 * tagged: ref_tagged_name()'s answer for e's reference when the caller has it ("" not
 * tagged), else NULL. */
static bool twin_key_named(const Ref *e, const char *tagged, uint64_t *ret_hash) {
        char name[PW_NAME_MAX];
        if (e->current == NO_CURRENT)
                return false;
#ifndef NDEBUG
        if (tagged) {
                int k = ref_tagged_name(ref_name(e), name, sizeof name);
                assert(k > 0 ? streq_ptr(name, tagged) : !tagged[0]);
        }
#endif
        if (!tagged && ref_tagged_name(ref_name(e), name, sizeof name) > 0)
                tagged = name;
        if (isempty(tagged))
                return false;
        *ret_hash = twin_hash(ref_ns(e), tagged, ref_hist(e)[e->current].atom);
        return true;
}

static bool twin_key(const Ref *e, uint64_t *ret_hash) {
        return twin_key_named(e, NULL, ret_hash);
}

/* Out of the index; call while e's current digest is still the one it was linked under. */
static void twin_unlink(Ledger *l, Ref *e) {
        uint64_t h;
        if (!e->twinned)
                return;
        e->twinned = false;
        if (!twin_key(e, &h))
                return; /* cannot happen: linked under this very key */
        size_t mask = l->n_twin_slots - 1, i = h & mask;
        while (l->twins[i] != e) {
                if (!l->twins[i])
                        return; /* cannot happen either */
                i = (i + 1) & mask;
        }
        /* backward-shift deletion, as for the other tables */
        for (size_t j = i;;) {
                j = (j + 1) & mask;
                Ref *v = l->twins[j];
                if (!v)
                        break;
                uint64_t vh = 0;
                (void) twin_key(v, &vh);
                size_t home = vh & mask;
                bool stays = i <= j ? home > i && home <= j : home > i || home <= j;
                if (!stays) {
                        l->twins[i] = v;
                        i = j;
                }
        }
        l->twins[i] = NULL;
        l->n_twins--;
}

static void twin_insert(Ref **slots, size_t n, Ref *e, uint64_t h) {
        size_t i = h & (n - 1);
        while (slots[i])
                i = (i + 1) & (n - 1);
        slots[i] = e;
}

static int twin_slots_resize(Ledger *l, size_t n) {
        Ref **b = array_new(n, sizeof(Ref *), 0);
        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < l->n_twin_slots; i++) {
                uint64_t h;
                if (l->twins[i] && twin_key(l->twins[i], &h))
                        twin_insert(b, n, l->twins[i], h);
        }
        table_release(l, l->twins, l->n_twin_slots * sizeof(Ref *));
        l->twins = b;
        l->n_twin_slots = n;
        return 0;
}

static int twin_slots_grow(Ledger *l) {
        return twin_slots_resize(l, l->n_twin_slots ? l->n_twin_slots * 2 : 64);
}

/* Index e under its current digest if it is a tagged reference (unlinked from its
 * previous one first, by the caller). Without memory the reference stays unindexed: its
 * digest-only twin is then recorded as a pull of its own, as before the index existed. */
static void twin_link_named(Ledger *l, Ref *e, const char *tagged) {
        uint64_t h;
        if (e->twinned || !twin_key_named(e, tagged, &h))
                return;
        if (TABLE_FULL(l->n_twins + 1, l->n_twin_slots) && twin_slots_grow(l) < 0)
                return;
        twin_insert(l->twins, l->n_twin_slots, e, h);
        e->twinned = true;
        l->n_twins++;
}

static void twin_link(Ledger *l, Ref *e) {
        twin_link_named(l, e, NULL);
}

bool ledger_tagged_current(const Ledger *l, const char *ns, const char *name, const char *digest) {
        char other[PW_NAME_MAX];
        if (!l || l->n_twins == 0 || !ns || !name || !digest)
                return false;
        uint32_t a = atom_find(l, digest);
        if (a == NO_ATOM)
                return false;
        size_t mask = l->n_twin_slots - 1;
        for (size_t i = twin_hash(ns, name, a) & mask; l->twins[i]; i = (i + 1) & mask) {
                const Ref *e = l->twins[i];
                if (ref_hist(e)[e->current].atom == a && streq_ptr(ref_ns(e), ns) &&
                    ref_tagged_name(ref_name(e), other, sizeof other) > 0 && streq_ptr(other, name))
                        return true;
        }
        return false;
}

/* Everything the ledger keeps for e besides its slot in refs[] (the tagged-current index,
 * its atoms, the counts) is let go, and e is freed: the one place that does it, for
 * ref_remove() and the batch prune alike. Returns NULL. */
static Ref *ref_release(Ledger *l, Ref *e) {
        ref_note_removed(l, e);
        twin_unlink(l, e);
        for (size_t j = 0; j < e->n_digests; j++)
                atom_unref(l, ref_hist(e)[j].atom);
        for (size_t j = 0; j < e->n_raised; j++)
                atom_unref(l, ref_raised(e)[j].atom);
        l->entries -= e->n_digests;
        l->raised -= e->n_raised;
        return ref_free(l, e);
}

/* Empty slot i of the table by backward shift (linear probing without tombstones). */
static void slot_delete(Ledger *l, size_t i) {
        size_t mask = l->n_slots - 1;
        for (size_t j = i;;) {
                j = (j + 1) & mask;
                uint32_t v = l->slots[j];
                if (v == SLOT_EMPTY)
                        break;
                const Ref *e = l->refs[v];
                size_t home = (size_t) hash_key(ref_ns(e), ref_name(e)) & mask;
                /* v may move to i unless its home lies cyclically in (i, j] */
                bool stays = i <= j ? home > i && home <= j : home > i || home <= j;
                if (!stays) {
                        l->slots[i] = v;
                        i = j;
                }
        }
        l->slots[i] = SLOT_EMPTY;
}

/* Remove refs[i] entirely, in O(1): the last reference takes its place in refs[] (the
 * change log's replay removes and re-adds a reference per record). */
static void ref_remove(Ledger *l, size_t i) {
        Ref *e = l->refs[i];
        slot_delete(l, find_slot(l, ref_ns(e), ref_name(e)));
        ref_release(l, e);
        size_t last = --l->n_refs;
        if (i != last) {
                Ref *moved = l->refs[last];
                l->refs[i] = moved;
                l->slots[find_slot(l, ref_ns(moved), ref_name(moved))] = (uint32_t) i;
        }
}

static size_t ref_index(const Ledger *l, const Ref *e) {
        return l->slots[find_slot(l, ref_ns(e), ref_name(e))];
}

/* find_digest(), find_raised(): nothing to look for in an empty list, and the digest's
 * atom (its text packed and hashed, ~850 instructions) not looked up — every reference of
 * a fresh listing, 10,000 of each on the main thread. */
static size_t find_digest(const Ledger *l, const Ref *e, const char *digest) {
        if (e->n_digests == 0)
                return NO_INDEX;
        uint32_t a = atom_find(l, digest);
        if (a == NO_ATOM)
                return NO_INDEX;
        for (size_t i = 0; i < e->n_digests; i++)
                if (ref_hist(e)[i].atom == a)
                        return i;
        return NO_INDEX;
}

static Raised *find_raised(const Ledger *l, const Ref *e, const char *digest, const char *kind) {
        if (e->n_raised == 0)
                return NULL;
        uint32_t a = atom_find(l, digest);
        size_t k = kind_find(l, kind);
        if (a == NO_ATOM || k == NO_INDEX)
                return NULL;
        for (size_t i = 0; i < e->n_raised; i++)
                if (ref_raised(e)[i].atom == a && ref_raised(e)[i].kind == k)
                        return &ref_raised(e)[i];
        return NULL;
}

/* Remove history entry j (not the current one) and the findings raised for it. */
static void remove_digest(Ledger *l, Ref *e, size_t j) {
        Hist *h = ref_hist(e);
        Raised *x = ref_raised(e);
        uint32_t a = h[j].atom;
        size_t k = 0;
        for (size_t i = 0; i < e->n_raised; i++) {
                if (x[i].atom == a) {
                        atom_unref(l, a);
                        l->raised--;
                        continue;
                }
                x[k++] = x[i];
        }
        e->n_raised = (uint8_t) k;
        atom_unref(l, a);
        memmove(h + j, h + j + 1, (e->n_digests - j - 1) * sizeof(Hist) + k * sizeof(Raised));
        e->n_digests--;
        (void) items_resize(l, e, e->n_digests, e->n_raised); /* shrinking cannot fail */
        if (e->current != NO_CURRENT && e->current > j)
                e->current--;
        l->entries--;
        ref_touch(l, e);
}

typedef struct Victim {
        uint64_t last_seen;
        size_t ref, j; /* index into l->refs, into its history */
} Victim;

/* Oldest first; ties in table order, as the one-at-a-time scan below would pick them. */
static int victim_cmp(const void *a, const void *b) {
        const Victim *x = a, *y = b;
        if (x->last_seen != y->last_seen)
                return x->last_seen < y->last_seen ? -1 : 1;
        if (x->ref != y->ref)
                return x->ref < y->ref ? -1 : 1;
        return x->j < y->j ? -1 : x->j > y->j;
}

/* prune() for a large excess (a file loaded under a smaller cap, a save pruned to fit):
 * the same choice, made with one sort instead of one scan of the table per entry pruned
 * (O(excess x n): 40k references took 88 s to load). On -ENOMEM it does nothing, and the
 * one-at-a-time loop does the work. */
static void prune_batch(Ledger *l, const Ref *protect) {
        size_t n = 0, excess = l->entries - l->max_entries;
        for (size_t i = 0; i < l->n_refs; i++)
                n += l->refs[i]->n_digests > 0 ? l->refs[i]->n_digests - 1 : 0;
        _cleanup_free_ Victim *v = reallocarray(NULL, MAX(n, l->n_refs) + 1, sizeof(Victim));
        if (!v)
                return;
        /* 1. non-current history, oldest first; removed from the highest index down so
         * the indices of a reference's other victims stay valid */
        n = 0;
        for (size_t i = 0; i < l->n_refs; i++) {
                const Ref *e = l->refs[i];
                for (size_t j = 0; j < e->n_digests; j++)
                        if (j != e->current)
                                v[n++] = (Victim) { hist_last_seen(l, e, j), i, j };
        }
        qsort(v, n, sizeof(Victim), victim_cmp);
        n = MIN(n, excess);
        for (size_t k = 0; k < n; k++) /* by reference, then history index descending */
                v[k].last_seen = ((uint64_t) v[k].ref << 32) | (uint64_t) v[k].j;
        qsort(v, n, sizeof(Victim), victim_cmp);
        for (size_t k = n; k > 0; k--) {
                remove_digest(l, l->refs[v[k - 1].ref], v[k - 1].j);
                l->pruned++;
                l->dirty = true;
        }
        if (l->entries <= l->max_entries)
                return;
        /* 2. only current digests left: whole references, least recently seen first, the
         * table refilled once at the end */
        n = 0;
        for (size_t i = 0; i < l->n_refs; i++) {
                const Ref *e = l->refs[i];
                if (e != protect && e->current != NO_CURRENT)
                        v[n++] = (Victim) { hist_last_seen(l, e, e->current), i, 0 };
        }
        qsort(v, n, sizeof(Victim), victim_cmp);
        size_t k = 0;
        for (; k < n && l->entries > l->max_entries; k++) {
                Ref *e = l->refs[v[k].ref];
                l->pruned += e->n_digests;
                l->refs[v[k].ref] = ref_release(l, e);
        }
        if (k == 0)
                return;
        size_t kept = 0;
        for (size_t i = 0; i < l->n_refs; i++)
                if (l->refs[i])
                        l->refs[kept++] = l->refs[i];
        l->n_refs = kept;
        table_fill(l);
        l->dirty = true;
}

static void prune(Ledger *l, const Ref *protect) {
        if (l->entries > l->max_entries + 1)
                prune_batch(l, protect);
        while (l->entries > l->max_entries) {
                Ref *best = NULL;
                size_t best_j = 0;
                for (size_t i = 0; i < l->n_refs; i++) {
                        Ref *e = l->refs[i];
                        for (size_t j = 0; j < e->n_digests; j++)
                                if (j != e->current &&
                                    (!best || hist_last_seen(l, e, j) < hist_last_seen(l, best, best_j))) {
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
                        uint64_t t = hist_last_seen(l, e, e->current);
                        if (victim == SIZE_MAX || t < oldest) {
                                victim = i;
                                oldest = t;
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

int ledger_new(Ledger **ret, size_t max_entries) {
        if (!ret || max_entries == 0)
                return -EINVAL;
        Ledger *l = calloc(1, sizeof(Ledger));
        if (!l)
                return -ENOMEM;
        if (pool_new(&l->pool) < 0) {
                free(l);
                return -ENOMEM;
        }
        l->dfd = -1;
        l->log_fd = -1;
        l->max_entries = max_entries;
        l->free_atom = NO_ATOM;
        *ret = l;
        return 0;
}

/* Drop all content, keep the configuration. */
static void ledger_clear(Ledger *l) {
        for (size_t i = 0; i < l->n_refs; i++)
                ref_free(l, l->refs[i]);
        for (size_t i = 0; i < l->n_atoms; i++)
                if (l->atoms[i].uses & ATOM_STR)
                        free((char *) atom_other(&l->atoms[i]));
        for (size_t i = 0; i < l->n_kinds; i++)
                free(l->kinds[i]);
        table_release(l, l->refs, l->alloc_refs * sizeof(Ref *));
        table_release(l, l->slots, l->n_slots * sizeof(uint32_t));
        table_release(l, l->atoms, l->alloc_atoms * sizeof(Atom));
        table_release(l, l->atom_slots, l->n_atom_slots * sizeof(uint32_t));
        free(l->kinds);
        table_release(l, l->twins, l->n_twin_slots * sizeof(Ref *));
        image_release(l);
        l->twins = NULL;
        l->n_twin_slots = l->n_twins = 0;
        l->refs = NULL;
        l->slots = l->atom_slots = NULL;
        l->atoms = NULL;
        l->kinds = NULL;
        l->n_refs = l->alloc_refs = l->n_slots = 0;
        l->n_atoms = l->alloc_atoms = l->live_atoms = l->n_atom_slots = 0;
        l->free_atom = NO_ATOM;
        l->n_kinds = l->alloc_kinds = 0;
        l->entries = l->raised = 0;
        l->n_pending = l->removed_len = l->n_removed = 0;
}

Ledger *ledger_free(Ledger *l) {
        if (!l)
                return NULL;
        ledger_clear(l);
        pool_free(l->pool);
        array_free(l->pending, l->alloc_pending * sizeof(Ref *));
        free(l->removed);
        if (l->log_fd >= 0)
                close(l->log_fd);
        if (l->dfd >= 0)
                close(l->dfd);
        free(l);
        return NULL;
}

int ledger_record(Ledger *l, const char *ns, const char *ref, const char *digest, uint64_t now_usec,
                  char *ret_previous_digest, bool *ret_changed) {
        return ledger_record_named(l, ns, ref, NULL, digest, now_usec, ret_previous_digest, ret_changed);
}

int ledger_record_named(Ledger *l, const char *ns, const char *ref, const char *tagged_name, const char *digest,
                        uint64_t now_usec, char *ret_previous_digest, bool *ret_changed) {
        char previous[PW_DIGEST_MAX] = "";
        bool added = false, refresh_only = false;
        int r;

        if (!l || !text_ok(ns, PW_NS_MAX) || !text_ok(ref, PW_REF_MAX) || !text_ok(digest, PW_DIGEST_MAX))
                return -EINVAL;

        Ref *e = ref_get(l, ns, ref);
        if (!e) {
                r = ref_add(l, ns, ref, &e);
                if (r < 0)
                        return r;
                added = true;
                if (l->from_listing)
                        l->listing_added = true;
        }
        size_t j = find_digest(l, e, digest);
        if (j == NO_INDEX) {
                uint32_t a;
                if (e->n_digests >= UINT32_MAX - 1)
                        r = -E2BIG;
                else
                        r = atom_ref(l, digest, &a);
                if (r >= 0) {
                        r = items_resize(l, e, e->n_digests + 1, e->n_raised);
                        if (r < 0)
                                atom_unref(l, a);
                }
                if (r < 0) {
                        if (added) /* do not leave an empty reference */
                                ref_remove(l, ref_index(l, e));
                        return r;
                }
                Hist *h = ref_hist(e);
                memmove(h + e->n_digests + 1, h + e->n_digests, e->n_raised * sizeof(Raised));
                j = e->n_digests++;
                h[j] = (Hist) { .first_seen_usec = now_usec, .last_seen_usec = now_usec, .atom = a };
                l->entries++;
        } else {
                Hist *h = &ref_hist(e)[j];
                uint64_t last = hist_last_seen(l, e, j), first = h->first_seen_usec;
                uint64_t new_last = MAX(last, now_usec), new_first = MIN(first, now_usec);
                /* every re-list sees every image again: see LEDGER_LAST_SEEN_GRAIN_USEC */
                refresh_only = new_first == first &&
                               new_last / LEDGER_LAST_SEEN_GRAIN_USEC == last / LEDGER_LAST_SEEN_GRAIN_USEC;
                /* a frozen reference's page stays clean through a re-list */
                if (!(refresh_only && j == e->current && (new_last == last || seen_move(l, e, new_last)))) {
                        if (j == e->current)
                                ref_fold(l, e);
                        h->last_seen_usec = new_last;
                        h->first_seen_usec = new_first;
                }
        }
        if (e->current != NO_CURRENT && e->current != j)
                strcpy_bounded(previous, sizeof(previous),
                               atom_str(l, ref_hist(e)[e->current].atom, (char[PW_DIGEST_MAX]) {}));
        bool moved = e->current != (uint32_t) j;
        if (moved) { /* written only then: a write to a frozen reference costs its page */
                ref_fold(l, e);
                twin_unlink(l, e); /* under the digest it leaves */
                e->current = (uint32_t) j;
                twin_link_named(l, e, tagged_name);
        }
        if (moved || !refresh_only) {
                ref_touch(l, e);
                l->dirty = true;
        }
        prune(l, e);

        if (ret_previous_digest)
                strcpy_bounded(ret_previous_digest, PW_DIGEST_MAX, previous);
        if (ret_changed)
                *ret_changed = previous[0] != 0;
        return 0;
}

static void hist_to_digest(const Ledger *l, const Ref *e, size_t j, LedgerDigest *ret) {
        const Hist *h = &ref_hist(e)[j];
        ret->first_seen_usec = h->first_seen_usec;
        ret->last_seen_usec = hist_last_seen(l, e, j);
        /* a packed atom decodes straight into place; a string one is copied */
        const char *s = atom_str(l, h->atom, ret->digest);
        if (s != ret->digest)
                strcpy_bounded(ret->digest, sizeof(ret->digest), s);
}

int ledger_lookup(const Ledger *l, const char *ns, const char *ref, LedgerDigest *ret) {
        if (!l || !ns || !ref)
                return -EINVAL;
        const Ref *e = ref_get(l, ns, ref);
        if (!e || e->current == NO_CURRENT)
                return -ENOENT;
        if (ret)
                hist_to_digest(l, e, e->current, ret);
        return 0;
}

static int cmp_ref(const void *a, const void *b) {
        const Ref *x = *(const Ref *const *) a, *y = *(const Ref *const *) b;
        int c = strcmp(ref_ns(x), ref_ns(y));
        return c ? c : strcmp(ref_name(x), ref_name(y));
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
        _cleanup_free_ LedgerDigest *d = NULL;
        size_t most = 1;
        if (!l || !visit)
                return -EINVAL;
        int r = sorted_refs(l, &v);
        if (r < 0)
                return r;
        for (size_t i = 0; i < l->n_refs; i++)
                most = MAX(most, (size_t) v[i]->n_digests);
        d = reallocarray(NULL, most, sizeof(LedgerDigest));
        if (!d)
                return -ENOMEM;
        for (size_t i = 0; i < l->n_refs; i++) {
                for (size_t j = 0; j < v[i]->n_digests; j++)
                        hist_to_digest(l, v[i], j, &d[j]);
                r = visit(ref_ns(v[i]), ref_name(v[i]), d, v[i]->n_digests,
                          v[i]->current == NO_CURRENT ? SIZE_MAX : v[i]->current, userdata);
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
        const Raised *x = find_raised(l, e, digest, kind);
        if (!x)
                return true;
        if (reminder_interval_usec == 0 || now_usec < x->last_raised_usec)
                return false;
        return now_usec - x->last_raised_usec >= reminder_interval_usec;
}

int ledger_last_raised(const Ledger *l, const char *ns, const char *ref, const char *digest, const char *kind,
                       uint64_t *ret_usec) {
        if (!l || !ns || !ref || !digest || !kind || !ret_usec)
                return -EINVAL;
        const Ref *e = ref_get(l, ns, ref);
        const Raised *x = e ? find_raised(l, e, digest, kind) : NULL;
        if (!x)
                return -ENOENT;
        *ret_usec = x->last_raised_usec;
        return 0;
}

/* Mark (digest, kind) raised at now_usec on e, whose Raised for them is x (NULL: none yet). */
static int mark_raised(Ledger *l, Ref *e, Raised *x, const char *digest, const char *kind, uint64_t now_usec) {
        int r;
        if (!x) {
                uint32_t a;
                uint16_t k;
                r = kind_intern(l, kind, &k);
                if (r < 0)
                        return r;
                r = atom_ref(l, digest, &a);
                if (r < 0)
                        return r;
                if (e->n_raised >= LEDGER_RAISED_PER_REF_MAX) {
                        x = &ref_raised(e)[0];
                        for (size_t i = 1; i < e->n_raised; i++)
                                if (ref_raised(e)[i].last_raised_usec < x->last_raised_usec)
                                        x = &ref_raised(e)[i];
                        atom_unref(l, x->atom);
                } else {
                        r = items_resize(l, e, e->n_digests, e->n_raised + 1);
                        if (r < 0) {
                                atom_unref(l, a);
                                return r;
                        }
                        x = &ref_raised(e)[e->n_raised++];
                        l->raised++;
                }
                *x = (Raised) { .atom = a, .kind = k };
        }
        x->last_raised_usec = now_usec;
        ref_touch(l, e);
        l->dirty = true;
        return 0;
}

static bool mark_args_ok(const char *ns, const char *ref, const char *digest, const char *kind) {
        return text_ok(ns, PW_NS_MAX) && text_ok(ref, PW_REF_MAX) && text_ok(digest, PW_DIGEST_MAX) &&
               text_ok(kind, LEDGER_KIND_MAX);
}

int ledger_mark_raised(Ledger *l, const char *ns, const char *ref, const char *digest, const char *kind,
                       uint64_t now_usec) {
        if (!l || !mark_args_ok(ns, ref, digest, kind))
                return -EINVAL;
        Ref *e = ref_get(l, ns, ref);
        if (!e)
                return -ENOENT;
        return mark_raised(l, e, find_raised(l, e, digest, kind), digest, kind, now_usec);
}

/* One look-up of the reference and of what was raised for it (was three of each: the
 * last time, the rule, the mark — 6,900 instructions per image of a fresh listing's
 * 10,000 on the main thread), with the same answers as ledger_last_raised(),
 * ledger_should_raise() and ledger_mark_raised() in turn. */
int ledger_raise(Ledger *l, const char *ns, const char *ref, const char *digest, FindingKind kind, uint64_t now_usec,
                 uint64_t reminder_interval_usec, LedgerRaiseFlags flags, uint64_t *ret_previous_usec) {
        const char *name = finding_kind_to_string(kind);
        if (!name)
                return -EINVAL;
        Ref *e = l && ns && ref && digest ? ref_get(l, ns, ref) : NULL;
        Raised *x = e ? find_raised(l, e, digest, name) : NULL;
        if (ret_previous_usec)
                *ret_previous_usec = x ? x->last_raised_usec : 0;
        if (x && !(flags & LEDGER_RAISE_ALWAYS)) { /* ledger_should_raise()'s rule */
                if (reminder_interval_usec == 0 || now_usec < x->last_raised_usec ||
                    now_usec - x->last_raised_usec < reminder_interval_usec)
                        return 0;
        }
        if (e && mark_args_ok(ns, ref, digest, name))
                (void) mark_raised(l, e, x, digest, name, now_usec);
        return 1;
}

/* The smallest table of at least 64 slots (a power of two) that holds n entries. */
static size_t slots_for(size_t n) {
        size_t k = 64;
        while (TABLE_FULL(n, k))
                k *= 2;
        return k;
}

int ledger_reserve(Ledger *l, size_t n) {
        if (!l || n == 0 || n >= UINT32_MAX - 1)
                return l ? 0 : -EINVAL;
        size_t k = slots_for(n);
        int r = 0;
        if (k > l->n_slots)
                r = table_rebuild(l, k);
        if (r >= 0 && k > l->n_twin_slots)
                r = twin_slots_resize(l, k);
        if (r >= 0 && table_grow(l, (void **) &l->refs, &l->alloc_refs, n, sizeof(Ref *), 32) < 0)
                r = -ENOMEM;
        return r;
}

void ledger_from_listing(Ledger *l, bool on) {
        if (l)
                l->from_listing = on;
}

void ledger_settle(Ledger *l) {
        if (!l)
                return;
        /* only when the listing itself made references: one that added nothing (the
         * catch-up 3 s after a connect) must not turn the references events made meanwhile
         * into a compaction — a pull right after the first save was compacted into the
         * snapshot instead of appended (test_ledger_log) */
        if (l->frozen && l->listing_added && l->n_refs > l->n_frozen)
                l->settle_due = true;
        l->listing_added = false;
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
                .log_records = l->log_records,
                .log_bytes = l->log_bytes,
                .snapshot_bytes = l->snap_bytes,
                .image_references = l->frozen ? l->n_frozen : 0,
                .image_bytes = l->frozen_bytes,
        };
}

/* ---- format ---- */

/* The body is generated twice: once to learn its length and CRC for the header, once to
 * write it out (to memory sized by the first pass, or to the file through this buffer),
 * so the peak is one small buffer and the sorted reference array, whatever the size. */
typedef struct Out {
        char buf[8192];
        size_t n;
        uint64_t total; /* bytes flushed */
        uLong crc, adler;
        bool sums;      /* crc and adler kept (a snapshot's header and id; a log record's
                         * frame has a CRC of its own, frame_seal()) */
        int fd;         /* >= 0: flushed bytes are written here */
        char *mem;      /* non-NULL: flushed bytes are copied to mem + total (caller sized it) */
        int error;
} Out;

static void out_init(Out *o, int fd, char *mem) {
        o->n = 0;
        o->total = 0;
        o->crc = crc32(0L, Z_NULL, 0);
        o->adler = adler32(0L, Z_NULL, 0);
        o->sums = true;
        o->fd = fd;
        o->mem = mem;
        o->error = 0;
}

/* After a write error the buffer is dropped, not kept: out_put() waits for room, and a
 * buffer that never drains would spin it forever (a full disk froze the agent). The
 * error sticks, the rest of the body is only measured, and the caller fails the save. */
static void out_flush(Out *o) {
        if (o->n == 0)
                return;
        if (o->error < 0) {
                o->n = 0;
                return;
        }
        if (o->sums) {
                o->crc = crc32(o->crc, (const Bytef *) o->buf, (uInt) o->n);
                o->adler = adler32(o->adler, (const Bytef *) o->buf, (uInt) o->n);
        }
        if (o->fd >= 0)
                o->error = write_all(o->fd, o->buf, o->n);
        if (o->mem)
                memcpy(o->mem + o->total, o->buf, o->n);
        o->total += o->n;
        o->n = 0;
}

static void out_put(Out *o, const char *s, size_t len) {
        while (len > 0) {
                if (o->n == sizeof(o->buf))
                        out_flush(o);
                size_t k = MIN(len, sizeof(o->buf) - o->n);
                memcpy(o->buf + o->n, s, k);
                o->n += k;
                s += k;
                len -= k;
        }
}

static void out_lit(Out *o, const char *s) {
        out_put(o, s, strlen(s));
}

static void out_u64(Out *o, uint64_t v) {
        char b[U64_DEC_MAX];
        size_t n = u64_to_dec(b, MIN(v, (uint64_t) INT64_MAX)); /* JSON integers are int64 */
        out_put(o, b, n);
}

/* A JSON string, escaped exactly as jansson's json_dumps() does without flags: '"' and
 * '\\' with a backslash, \b \f \n \r \t by name, other control characters as \u00XX
 * (upper-case hex); everything else, including '/', DEL and non-ASCII UTF-8, as is. The
 * ledger only holds valid UTF-8 (checked on the way in). */
static void out_str(Out *o, const char *s) {
        out_put(o, "\"", 1);
        const char *run = s;
        for (const char *p = s;; p++) {
                uint8_t c = (uint8_t) *p;
                if (c >= 0x20 && c != '"' && c != '\\')
                        continue;
                out_put(o, run, (size_t) (p - run));
                if (c == 0)
                        break;
                char esc[8];
                switch (c) {
                case '"': out_lit(o, "\\\""); break;
                case '\\': out_lit(o, "\\\\"); break;
                case '\b': out_lit(o, "\\b"); break;
                case '\f': out_lit(o, "\\f"); break;
                case '\n': out_lit(o, "\\n"); break;
                case '\r': out_lit(o, "\\r"); break;
                case '\t': out_lit(o, "\\t"); break;
                default:
                        snprintf(esc, sizeof(esc), "\\u%04X", c);
                        out_lit(o, esc);
                }
                run = p + 1;
        }
        out_put(o, "\"", 1);
}

/* One reference as the snapshot holds it, and as a change log record carries it. */
static void emit_ref(const Ledger *l, const Ref *e, Out *o) {
        char b[PW_DIGEST_MAX];
        out_lit(o, "{\"namespace\":");
        out_str(o, ref_ns(e));
        out_lit(o, ",\"reference\":");
        out_str(o, ref_name(e));
        out_lit(o, ",\"current\":");
        out_str(o, atom_str(l, ref_hist(e)[e->current].atom, b));
        out_lit(o, ",\"digests\":[");
        for (size_t j = 0; j < e->n_digests; j++) {
                const Hist *h = &ref_hist(e)[j];
                out_lit(o, j ? ",{\"digest\":" : "{\"digest\":");
                out_str(o, atom_str(l, h->atom, b));
                out_lit(o, ",\"first_seen\":");
                out_u64(o, h->first_seen_usec);
                out_lit(o, ",\"last_seen\":");
                out_u64(o, hist_last_seen(l, e, j));
                out_lit(o, "}");
        }
        out_lit(o, "],\"raised\":[");
        for (size_t j = 0; j < e->n_raised; j++) {
                const Raised *x = &ref_raised(e)[j];
                out_lit(o, j ? ",{\"digest\":" : "{\"digest\":");
                out_str(o, atom_str(l, x->atom, b));
                out_lit(o, ",\"kind\":");
                out_str(o, l->kinds[x->kind]);
                out_lit(o, ",\"last_raised\":");
                out_u64(o, x->last_raised_usec);
                out_lit(o, "}");
        }
        out_lit(o, "]}");
}

static void emit_body(const Ledger *l, Ref *const *v, Out *o) {
        bool first = true;
        out_lit(o, "{\"version\":1,\"references\":[");
        for (size_t i = 0; i < l->n_refs; i++) {
                const Ref *e = v[i];
                if (e->current == NO_CURRENT)
                        continue; /* cannot happen: references are created with a digest */
                if (!first)
                        out_lit(o, ",");
                first = false;
                emit_ref(l, e, o);
        }
        out_lit(o, "]}");
        out_flush(o);
}

static int format_header(const Out *counted, char header[static HEADER_LINE_MAX]) {
        return snprintf(header, HEADER_LINE_MAX, LEDGER_MAGIC " %d %" PRIu64 " %08" PRIx32 "\n", LEDGER_VERSION,
                        counted->total, (uint32_t) counted->crc);
}

/* The first of the two passes that ledger_format() and ledger_save() share: sort the
 * references, measure the body (length and CRC) and format the header line that
 * carries them. *ret_v and *ret_o are owned by the caller; the second pass reuses *o. */
static int plan_body(const Ledger *l, Ref ***ret_v, Out **ret_o, char header[HEADER_LINE_MAX], uint64_t *ret_blen,
                     uLong *ret_crc, int *ret_hlen) {
        int r = sorted_refs(l, ret_v);
        if (r < 0)
                return r;
        *ret_o = malloc(sizeof(Out));
        if (!*ret_o)
                return -ENOMEM;
        out_init(*ret_o, -1, NULL);
        emit_body(l, *ret_v, *ret_o);
        *ret_blen = (*ret_o)->total;
        *ret_crc = (*ret_o)->crc;
        *ret_hlen = format_header(*ret_o, header);
        return 0;
}

/* After the second pass: both walk the same content, so a difference is a bug. */
static int check_second_pass(const Out *o, uint64_t blen, uLong crc) {
        return o->total != blen || o->crc != crc ? -EIO : 0;
}

int ledger_format(const Ledger *l, char **ret, size_t *ret_len) {
        _cleanup_free_ Ref **v = NULL;
        _cleanup_free_ Out *o = NULL;
        char header[HEADER_LINE_MAX];
        uint64_t blen;
        uLong crc;
        int hlen;

        if (!l || !ret)
                return -EINVAL;
        int r = plan_body(l, &v, &o, header, &blen, &crc, &hlen);
        if (r < 0)
                return r;
        if (blen > SIZE_MAX - (size_t) hlen - 1)
                return -E2BIG;
        char *text = malloc((size_t) hlen + blen + 1);
        if (!text)
                return -ENOMEM;
        memcpy(text, header, (size_t) hlen);
        out_init(o, -1, text + hlen);
        emit_body(l, v, o);
        if (check_second_pass(o, blen, crc) < 0) {
                free(text);
                return -EIO;
        }
        text[(size_t) hlen + blen] = 0;
        *ret = text;
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


static int cmp_u32(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
        return x < y ? -1 : x > y;
}

/* Entry j of e's history (items_resize() made room): digest dg seen first..last; the
 * current one when dg is cur. -ENOMEM. */
static int hist_set(Ledger *l, Ref *e, size_t j, const char *dg, uint64_t first, uint64_t last, const char *cur) {
        Hist *h = &ref_hist(e)[j];
        h->first_seen_usec = first;
        h->last_seen_usec = last;
        int r = atom_ref(l, dg, &h->atom);
        if (r < 0)
                return r;
        e->n_digests++;
        l->entries++;
        if (streq_ptr(dg, cur))
                e->current = (uint32_t) j;
        return 0;
}

/* A digest twice in e's history, in O(n log n) (equal digests are the same atom): 1 and
 * its atom, 0 none, -ENOMEM. */
static int hist_duplicate(const Ref *e, uint32_t *ret_atom) {
        size_t n = e->n_digests;
        _cleanup_free_ uint32_t *sorted = reallocarray(NULL, n ? n : 1, sizeof(uint32_t));
        if (!sorted)
                return -ENOMEM;
        for (size_t j = 0; j < n; j++)
                sorted[j] = ref_hist(e)[j].atom;
        qsort(sorted, n, sizeof(uint32_t), cmp_u32);
        for (size_t j = 1; j < n; j++)
                if (sorted[j - 1] == sorted[j]) {
                        *ret_atom = sorted[j];
                        return 1;
                }
        return 0;
}

/* A raised finding appended to e (items_resize() made room): -EEXIST the same digest and
 * kind are there already, -E2BIG more than KINDS_MAX distinct kinds, -ENOMEM. */
static int raised_append(Ledger *l, Ref *e, const char *dg, const char *kind, uint64_t t) {
        uint16_t k;
        if (find_raised(l, e, dg, kind))
                return -EEXIST;
        int r = kind_intern(l, kind, &k);
        if (r < 0)
                return r;
        Raised *x = &ref_raised(e)[e->n_raised];
        *x = (Raised) { .last_raised_usec = t, .kind = k };
        r = atom_ref(l, dg, &x->atom);
        if (r < 0)
                return r;
        e->n_raised++;
        l->raised++;
        return 0;
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
        if (json_array_size(digests) >= UINT32_MAX)
                return fail(err, errlen, "references[%zu]: too many digests", i);
        if (raised && (!json_is_array(raised) || json_array_size(raised) > LEDGER_RAISED_PER_REF_MAX))
                return fail(err, errlen, "references[%zu]: raised is not an array of at most %d", i,
                            LEDGER_RAISED_PER_REF_MAX);
        if (ref_get(l, ns, ref))
                return fail(err, errlen, "references[%zu]: duplicate reference %s", i, ref);
        r = ref_add(l, ns, ref, &e);
        if (r < 0)
                return r;

        /* On failure the caller frees the whole ledger: no use counts to undo here. */
        size_t n = json_array_size(digests), nr = json_array_size(raised);
        r = items_resize(l, e, n, nr);
        if (r < 0)
                return r;
        for (size_t j = 0; j < n; j++) {
                const json_t *d = json_array_get(digests, j);
                const char *dg = get_string(d, "digest", PW_DIGEST_MAX);
                uint64_t first, last;
                if (!dg || !get_time(d, "first_seen", &first) || !get_time(d, "last_seen", &last))
                        return fail(err, errlen, "references[%zu].digests[%zu]: bad digest, first_seen or last_seen", i, j);
                r = hist_set(l, e, j, dg, first, last, cur);
                if (r < 0)
                        return r;
        }
        if (e->current == NO_CURRENT)
                return fail(err, errlen, "references[%zu]: current digest is not in its history", i);
        twin_link(l, e);

        uint32_t dup;
        r = hist_duplicate(e, &dup);
        if (r < 0)
                return r;
        if (r > 0)
                return fail(err, errlen, "references[%zu]: duplicate digest %s", i,
                            atom_str(l, dup, (char[PW_DIGEST_MAX]) {}));

        for (size_t j = 0; j < nr; j++) {
                const json_t *d = json_array_get(raised, j);
                const char *dg = get_string(d, "digest", PW_DIGEST_MAX), *kind = get_string(d, "kind", LEDGER_KIND_MAX);
                uint64_t t;
                if (!dg || !kind || !get_time(d, "last_raised", &t))
                        return fail(err, errlen, "references[%zu].raised[%zu]: bad digest, kind or last_raised", i, j);
                r = raised_append(l, e, dg, kind, t);
                if (r == -EEXIST)
                        return fail(err, errlen, "references[%zu].raised[%zu]: duplicate", i, j);
                if (r == -E2BIG)
                        return fail(err, errlen, "references[%zu].raised[%zu]: more than %d distinct kinds", i, j,
                                    KINDS_MAX);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The body as JSON (any form jansson reads), into an empty ledger; -EBADMSG with the
 * reason for anything wrong. */
static int parse_body_tree(Ledger *tmp, const char *body, size_t blen, char *err, size_t errlen) {
        json_error_t jerr;
        _cleanup_(json_decrefp) json_t *root = json_loadb(body, blen, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return fail(err, errlen, "bad JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        const json_t *ver = json_object_get(root, "version"), *refs = json_object_get(root, "references");
        if (!json_is_integer(ver) || json_integer_value(ver) != LEDGER_VERSION)
                return fail(err, errlen, "body version missing or not %d", LEDGER_VERSION);
        if (!json_is_array(refs))
                return fail(err, errlen, "references missing or not an array");
        for (size_t i = 0; i < json_array_size(refs); i++) {
                int r = parse_ref(tmp, json_array_get(refs, i), i, err, errlen);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- the fast path: the body exactly as ledger_format() writes it ----
 *
 * jansson built a tree of the whole snapshot before the first reference was made: at
 * 10,000 references (4.5 MB) 0.35-0.6 s of a restart and ~25 MiB of peak memory, in
 * small allocations that fragmented the heap the ledger then lived beside. The body
 * the ledger writes has one form (keys in one order, no white space, strings escaped
 * only where they must be): that form is read here, straight into the ledger. Anything
 * else — another key order, white space, an escaped string, a number that is not a plain
 * non-negative integer, an empty history, a duplicate, any schema error — returns
 * -EAGAIN, and the body is read again through jansson (parse_body_tree()), which
 * accepts or refuses it and says why, as it always did. So the fast path decides
 * nothing: fuzz_ledger checks both give the same ledger on every input. */

static bool fast_parse = true;

void ledger_set_fast_parse(bool on) {
        fast_parse = on;
}

typedef struct Cursor {
        const char *p, *end;
} Cursor;

typedef struct Span {
        const char *p;
        size_t n;
} Span;

typedef struct FastDigest {
        Span digest;
        uint64_t first, last;
} FastDigest;

typedef struct FastRaised {
        Span digest, kind;
        uint64_t t;
} FastRaised;

static bool c_lit(Cursor *c, const char *lit, size_t n) {
        if ((size_t) (c->end - c->p) < n || memcmp(c->p, lit, n) != 0)
                return false;
        c->p += n;
        return true;
}
#define C_LIT(c, s) c_lit(c, s, sizeof(s) - 1)

/* A string with nothing to unescape, non-empty, shorter than max, valid UTF-8. */
static bool c_str(Cursor *c, size_t max, Span *ret) {
        if (c->p >= c->end || *c->p != '"')
                return false;
        const char *s = ++c->p;
        while (c->p < c->end && *c->p != '"') {
                uint8_t ch = (uint8_t) *c->p;
                if (ch == '\\' || ch < 0x20)
                        return false;
                c->p++;
        }
        if (c->p >= c->end)
                return false;
        size_t n = (size_t) (c->p - s);
        c->p++;
        if (n == 0 || n >= max || !utf8_valid_n(s, n))
                return false;
        *ret = (Span) { s, n };
        return true;
}

/* A JSON integer in [0, INT64_MAX] without sign or leading zero. */
static bool c_uint(Cursor *c, uint64_t *ret) {
        uint64_t v = 0;
        const char *s = c->p;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
                uint64_t d = (uint64_t) (*c->p - '0');
                if (v > ((uint64_t) INT64_MAX - d) / 10)
                        return false;
                v = v * 10 + d;
                c->p++;
        }
        size_t n = (size_t) (c->p - s);
        if (n == 0 || (n > 1 && *s == '0'))
                return false;
        /* a fraction or an exponent makes it a real: not a time */
        if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E'))
                return false;
        *ret = v;
        return true;
}

static void span_copy(Span s, char *buf) {
        memcpy(buf, s.p, s.n);
        buf[s.n] = 0;
}

/* One reference, built as parse_ref() builds it. -EAGAIN for anything parse_ref() would
 * refuse (the tree path then says what). */
static int fast_ref(Ledger *l, Cursor *c, FastDigest **d, size_t *alloc_d, FastRaised **x, size_t *alloc_x) {
        Span ns, ref, cur;
        size_t n = 0, nr = 0;
        int r;
        if (!C_LIT(c, "{\"namespace\":") || !c_str(c, PW_NS_MAX, &ns) || !C_LIT(c, ",\"reference\":") ||
            !c_str(c, PW_REF_MAX, &ref) || !C_LIT(c, ",\"current\":") || !c_str(c, PW_DIGEST_MAX, &cur) ||
            !C_LIT(c, ",\"digests\":["))
                return -EAGAIN;
        do {
                if (greedy_realloc((void **) d, alloc_d, n + 1, sizeof(FastDigest), 8) < 0)
                        return -ENOMEM;
                FastDigest *e = &(*d)[n++];
                if (!C_LIT(c, "{\"digest\":") || !c_str(c, PW_DIGEST_MAX, &e->digest) ||
                    !C_LIT(c, ",\"first_seen\":") || !c_uint(c, &e->first) || !C_LIT(c, ",\"last_seen\":") ||
                    !c_uint(c, &e->last) || !C_LIT(c, "}"))
                        return -EAGAIN;
        } while (C_LIT(c, ","));
        if (!C_LIT(c, "],\"raised\":["))
                return -EAGAIN;
        if (!C_LIT(c, "]"))
                for (;;) {
                        if (nr >= LEDGER_RAISED_PER_REF_MAX)
                                return -EAGAIN;
                        if (greedy_realloc((void **) x, alloc_x, nr + 1, sizeof(FastRaised), 4) < 0)
                                return -ENOMEM;
                        FastRaised *e = &(*x)[nr++];
                        if (!C_LIT(c, "{\"digest\":") || !c_str(c, PW_DIGEST_MAX, &e->digest) ||
                            !C_LIT(c, ",\"kind\":") || !c_str(c, LEDGER_KIND_MAX, &e->kind) ||
                            !C_LIT(c, ",\"last_raised\":") || !c_uint(c, &e->t) || !C_LIT(c, "}"))
                                return -EAGAIN;
                        if (C_LIT(c, ","))
                                continue;
                        if (C_LIT(c, "]"))
                                break;
                        return -EAGAIN;
                }
        if (!C_LIT(c, "}") || n >= UINT32_MAX)
                return -EAGAIN;

        char sns[PW_NS_MAX], sref[PW_REF_MAX], scur[PW_DIGEST_MAX], dg[PW_DIGEST_MAX], kind[LEDGER_KIND_MAX];
        span_copy(ns, sns);
        span_copy(ref, sref);
        span_copy(cur, scur);
        if (ref_get(l, sns, sref))
                return -EAGAIN;
        Ref *e;
        r = ref_add(l, sns, sref, &e);
        if (r < 0)
                return r;
        /* on failure the caller frees the whole ledger, as parse_ref()'s does */
        r = items_resize(l, e, n, nr);
        if (r < 0)
                return r;
        for (size_t j = 0; j < n; j++) {
                span_copy((*d)[j].digest, dg);
                r = hist_set(l, e, j, dg, (*d)[j].first, (*d)[j].last, scur);
                if (r < 0)
                        return r;
        }
        if (e->current == NO_CURRENT)
                return -EAGAIN;
        uint32_t dup;
        r = hist_duplicate(e, &dup);
        if (r != 0)
                return r < 0 ? r : -EAGAIN;
        twin_link(l, e);
        for (size_t j = 0; j < nr; j++) {
                const FastRaised *f = &(*x)[j];
                span_copy(f->digest, dg);
                span_copy(f->kind, kind);
                r = raised_append(l, e, dg, kind, f->t);
                if (r == -EEXIST || r == -E2BIG)
                        return -EAGAIN;
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The body in ledger_format()'s form, into an empty ledger: 0, -EAGAIN (read it as JSON
 * instead) or -ENOMEM. */
static int parse_body_fast(Ledger *tmp, const char *body, size_t blen) {
        Cursor c = { body, body + blen };
        _cleanup_free_ FastDigest *d = NULL;
        _cleanup_free_ FastRaised *x = NULL;
        size_t alloc_d = 0, alloc_x = 0;
        if (!C_LIT(&c, "{\"version\":1,\"references\":["))
                return -EAGAIN;
        if (!C_LIT(&c, "]"))
                do {
                        int r = fast_ref(tmp, &c, &d, &alloc_d, &x, &alloc_x);
                        if (r < 0)
                                return r;
                } while (C_LIT(&c, ","));
        else
                c.p--; /* the one "]" is read below */
        if (!C_LIT(&c, "]}") || c.p != c.end)
                return -EAGAIN;
        return 0;
}

/* ledger_parse() minus the pruning (ledger_open() prunes once the log is replayed too),
 * plus the identity of the snapshot in *ret_id. */
static int parse_snapshot(Ledger *into, const char *buf, size_t len, bool do_prune, SnapshotId *ret_id, char *err,
                          size_t errlen) {
        uint64_t blen = 0;
        uint32_t crc = 0;
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

        Ledger *tmp = NULL;
        r = ledger_new(&tmp, into->max_entries);
        if (r < 0)
                return r;
        r = fast_parse ? parse_body_fast(tmp, body, (size_t) blen) : -EAGAIN;
        if (r == -EAGAIN) { /* not the form ledger_format() writes, or not valid: as JSON, said why */
                tmp = ledger_free(tmp);
                r = ledger_new(&tmp, into->max_entries);
                if (r < 0)
                        return r;
                r = parse_body_tree(tmp, body, (size_t) blen, err, errlen);
        }
        if (r < 0) {
                ledger_free(tmp);
                return r;
        }
        if (do_prune)
                prune(tmp, NULL);
        changes_clear(tmp); /* what was pruned is in no log: dirty and compact_due say so */

        /* all good: swap the content in, keeping into's configuration and files; the old
         * (empty) content goes with tmp */
        Ledger old = *into;
        *into = *tmp;
        into->dfd = old.dfd;
        into->log_fd = old.log_fd;
        into->log_bytes = old.log_bytes;
        into->log_records = old.log_records;
        into->log_seq = old.log_seq;
        into->snap_bytes = len;
        into->base = (SnapshotId) { .length = blen, .crc = crc,
                                    .adler = (uint32_t) adler32(adler32(0L, Z_NULL, 0), (const Bytef *) body, (uInt) blen) };
        into->max_entries = old.max_entries;
        into->pruned = old.pruned + tmp->pruned;
        into->dirty = tmp->pruned > 0;
        into->compact_due = old.compact_due || tmp->pruned > 0;
        *tmp = old;
        tmp->dfd = tmp->log_fd = -1;
        if (ret_id)
                *ret_id = into->base;
        ledger_free(tmp);
        return 0;
}

int ledger_parse(Ledger *into, const char *buf, size_t len, char *err, size_t errlen) {
        return parse_snapshot(into, buf, len, true, NULL, err, errlen);
}

/* ---- the change log ---- */

/* Seal the frame whose payload (len bytes) already follows hdr. */
static void frame_seal(uint8_t *hdr, uint64_t seq, size_t len) {
        frame_put_le32(hdr, LEDGER_LOG_MAGIC);
        frame_put_le32(hdr + 4, (uint32_t) len);
        frame_put_le64(hdr + 8, seq);
        frame_put_le32(hdr + 16, frame_crc(hdr, hdr + LEDGER_LOG_FRAME_HEADER, len));
}

/* One frame at buf: 0 with its seq, payload and whole length; -ENODATA when buf ends
 * inside it, -EBADMSG for a bad magic or length, -EILSEQ for a CRC mismatch. */
static int frame_decode(const uint8_t *buf, size_t len, uint64_t *ret_seq, const uint8_t **ret_payload,
                        size_t *ret_len, size_t *ret_frame_len) {
        if (len >= 4 && frame_get_le32(buf) != LEDGER_LOG_MAGIC)
                return -EBADMSG;
        if (len < LEDGER_LOG_FRAME_HEADER)
                return -ENODATA;
        uint32_t plen = frame_get_le32(buf + 4);
        if (plen > LEDGER_FILE_MAX)
                return -EBADMSG;
        if (len - LEDGER_LOG_FRAME_HEADER < plen)
                return -ENODATA;
        if (frame_crc(buf, buf + LEDGER_LOG_FRAME_HEADER, plen) != frame_get_le32(buf + 16))
                return -EILSEQ;
        *ret_seq = frame_get_le64(buf + 8);
        *ret_payload = buf + LEDGER_LOG_FRAME_HEADER;
        *ret_len = plen;
        *ret_frame_len = LEDGER_LOG_FRAME_HEADER + (size_t) plen;
        return 0;
}

/* The first frame (seq 0): which snapshot the log extends. */
static size_t log_header_frame(const SnapshotId *id, uint8_t buf[static LEDGER_LOG_FRAME_HEADER + 96]) {
        int n = snprintf((char *) buf + LEDGER_LOG_FRAME_HEADER, 96, LEDGER_LOG_MAGIC_TEXT " %d %" PRIu64 " %08" PRIx32 " %08" PRIx32,
                         LEDGER_VERSION, id->length, id->crc, id->adler);
        frame_seal(buf, 0, (size_t) n);
        return LEDGER_LOG_FRAME_HEADER + (size_t) n;
}

size_t ledger_log_header(const Ledger *l, uint8_t *buf, size_t size) {
        uint8_t frame[LEDGER_LOG_FRAME_HEADER + 96];
        if (!l)
                return 0;
        size_t n = log_header_frame(&l->base, frame);
        if (buf && size >= n)
                memcpy(buf, frame, n);
        return n;
}

size_t ledger_log_frame(uint64_t seq, const void *payload, size_t len, uint8_t *buf, size_t size) {
        size_t n = LEDGER_LOG_FRAME_HEADER + len;
        if (len > LEDGER_FILE_MAX || !buf || size < n)
                return n;
        memmove(buf + LEDGER_LOG_FRAME_HEADER, payload, len);
        frame_seal(buf, seq, len);
        return n;
}

/* One save's records, framed back to back. */
typedef struct Batch {
        uint8_t *p;
        size_t n, alloc;
        uint64_t seq;   /* of the last frame added */
        uint64_t records;
} Batch;

/* Append a frame whose payload emit() produces. A record that fits o's buffer (nearly
 * all: a reference with a few digests is a few hundred bytes) is emitted once and
 * copied; a longer one is measured, then emitted again in place. No CRC-32 or Adler-32
 * of the payload: the frame's own CRC covers it (a save of one change per paced event
 * spent a third of its instructions on the two passes and the two unused sums). */
static int batch_add(Batch *b, Out *o, void (*emit)(const Ledger *, const void *, Out *), const Ledger *l,
                     const void *what) {
        out_init(o, -1, NULL);
        o->sums = false;
        emit(l, what, o);
        bool held = o->total == 0; /* never flushed: all of it is in o->buf */
        out_flush(o);
        size_t len = (size_t) o->total;
        if (len > LEDGER_FILE_MAX)
                return -EFBIG;
        if (greedy_realloc((void **) &b->p, &b->alloc, b->n + LEDGER_LOG_FRAME_HEADER + len, 1, 4096) < 0)
                return -ENOMEM;
        uint8_t *hdr = b->p + b->n;
        if (held)
                memcpy(hdr + LEDGER_LOG_FRAME_HEADER, o->buf, len); /* out_flush() leaves buf as it was */
        else {
                out_init(o, -1, (char *) hdr + LEDGER_LOG_FRAME_HEADER);
                o->sums = false;
                emit(l, what, o);
                out_flush(o);
                if (o->total != len)
                        return -EIO; /* both passes walk the same content: a bug */
        }
        frame_seal(hdr, ++b->seq, len);
        b->n += LEDGER_LOG_FRAME_HEADER + len;
        b->records++;
        return 0;
}

static void emit_put(const Ledger *l, const void *what, Out *o) {
        emit_ref(l, what, o);
}

/* what: "ns\0ref\0" */
static void emit_removed(const Ledger *l, const void *what, Out *o) {
        const char *ns = what, *ref = ns + strlen(ns) + 1;
        out_lit(o, "{\"namespace\":");
        out_str(o, ns);
        out_lit(o, ",\"reference\":");
        out_str(o, ref);
        out_lit(o, ",\"removed\":true}");
}

/* The records of every change since the last save: removals first (a reference removed
 * and recorded again is logged as both, in that order), then each changed reference as
 * it is now. O(changes). */
static int batch_build(const Ledger *l, Batch *b) {
        _cleanup_free_ Out *o = malloc(sizeof(Out));
        int r;
        if (!o)
                return -ENOMEM;
        b->seq = l->log_seq;
        for (size_t off = 0, i = 0; i < l->n_removed; i++) {
                const char *key = l->removed + off;
                r = batch_add(b, o, emit_removed, l, key);
                if (r < 0)
                        return r;
                off += strlen(key) + 1;
                off += strlen(l->removed + off) + 1;
        }
        for (size_t i = 0; i < l->n_pending; i++) {
                r = batch_add(b, o, emit_put, l, l->pending[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Apply one record: a reference replaced by the one the record holds, or removed. A
 * record that is not a valid reference changes nothing (-EBADMSG, reason in why): it is
 * first parsed into scratch, so the reference it would replace stays as it was. */
static int apply_record(Ledger *l, Ledger *scratch, const uint8_t *p, size_t n, char *why, size_t whylen) {
        json_error_t jerr;
        _cleanup_(json_decrefp) json_t *root = json_loadb((const char *) p, n, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return fail(why, whylen, "bad JSON: %s", jerr.text);
        if (!json_is_object(root))
                return fail(why, whylen, "not an object");
        const char *ns = get_string(root, "namespace", PW_NS_MAX), *ref = get_string(root, "reference", PW_REF_MAX);
        const json_t *removed = json_object_get(root, "removed");
        if (removed) {
                if (!json_is_true(removed) || !ns || !ref || json_object_size(root) != 3)
                        return fail(why, whylen, "bad removal");
                Ref *e = ref_get(l, ns, ref);
                if (e)
                        ref_remove(l, ref_index(l, e));
                return 0;
        }
        ledger_clear(scratch);
        int r = parse_ref(scratch, root, 0, why, whylen);
        if (r < 0)
                return r;
        Ref *e = ref_get(l, ns, ref);
        if (e)
                ref_remove(l, ref_index(l, e));
        r = parse_ref(l, root, 0, NULL, 0);
        if (r < 0 && (e = ref_get(l, ns, ref))) /* out of memory half way: no half reference */
                ref_remove(l, ref_index(l, e));
        return r;
}

/* The next offset >= from holding a valid frame with seq > after, or len. */
static size_t next_frame(const uint8_t *buf, size_t len, size_t from, uint64_t after) {
        static const uint8_t magic[4] = { LEDGER_LOG_MAGIC & 0xff, (LEDGER_LOG_MAGIC >> 8) & 0xff,
                                          (LEDGER_LOG_MAGIC >> 16) & 0xff, LEDGER_LOG_MAGIC >> 24 };
        while (from < len) {
                const uint8_t *m = memmem(buf + from, len - from, magic, sizeof magic);
                if (!m)
                        return len;
                size_t at = (size_t) (m - buf), plen, flen;
                uint64_t seq;
                const uint8_t *payload;
                if (frame_decode(m, len - at, &seq, &payload, &plen, &flen) == 0 && seq > after)
                        return at;
                from = at + 1;
        }
        return len;
}

int ledger_replay(Ledger *l, const void *data, size_t len, LedgerReplayReport *ret, char *err, size_t errlen) {
        const uint8_t *buf = data, *payload;
        LedgerReplayReport rep = {};
        uint8_t want[LEDGER_LOG_FRAME_HEADER + 96];
        size_t plen, flen, off;
        uint64_t seq;
        char why[LEDGER_REASON_MAX / 4];
        int r;

        if (!l || (!data && len > 0))
                return -EINVAL;
        if (len > LEDGER_FILE_MAX)
                return fail(err, errlen, "change log too large (%zu bytes, at most %u)", len, LEDGER_FILE_MAX);
        /* the header: a log of another snapshot is stale, not corrupt */
        r = frame_decode(buf, len, &seq, &payload, &plen, &flen);
        if (r < 0 || seq != 0 || plen < strlen(LEDGER_LOG_MAGIC_TEXT " ") ||
            memcmp(payload, LEDGER_LOG_MAGIC_TEXT " ", strlen(LEDGER_LOG_MAGIC_TEXT " ")) != 0)
                return fail(err, errlen, "change log: %s", r == -ENODATA ? "truncated header" : "bad header");
        size_t wn = log_header_frame(&l->base, want);
        if (flen != wn || memcmp(buf, want, wn) != 0)
                return -ESTALE;

        _cleanup_(ledger_freep) Ledger *scratch = NULL;
        r = ledger_new(&scratch, SIZE_MAX);
        if (r < 0)
                return r;
        uint64_t pruned = l->pruned;
        rep.valid_end = off = flen;
        while (off < len) {
                r = frame_decode(buf + off, len - off, &seq, &payload, &plen, &flen);
                if (r == 0 && seq > rep.last_seq) {
                        r = apply_record(l, scratch, payload, plen, why, sizeof why);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0) {
                                if (rep.corrupt_records++ == 0)
                                        snprintf(rep.first_error, sizeof rep.first_error, "record %" PRIu64 " at offset %zu: %s",
                                                 seq, off, why);
                        } else
                                rep.records++;
                        rep.last_seq = seq;
                        off += flen;
                        rep.valid_end = off;
                        continue;
                }
                size_t next = next_frame(buf, len, off + 1, rep.last_seq);
                if (next == len) {
                        rep.dropped_bytes = len - off; /* a torn tail: never acknowledged */
                        break;
                }
                if (rep.corrupt_records++ == 0)
                        snprintf(rep.first_error, sizeof rep.first_error, "%zu unreadable bytes at offset %zu", next - off,
                                 off);
                rep.skipped_bytes += next - off;
                off = next;
        }
        prune(l, NULL);
        changes_clear(l); /* what was replayed is on disk */
        if (l->pruned > pruned || rep.corrupt_records > 0 || rep.dropped_bytes > 0)
                l->compact_due = true; /* the log on disk is not where the next record can go */
        if (l->pruned > pruned)
                l->dirty = true;
        if (ret)
                *ret = rep;
        return 0;
}

/* ---- file I/O ---- */

static int read_ledger_file(int fd, char **ret, size_t *ret_len) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADMSG;
        if ((uint64_t) st.st_size > LEDGER_FILE_MAX)
                return -EFBIG;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int r = read_fd_bounded(fd, LEDGER_FILE_MAX, &buf, &len);
        if (r < 0)
                return r;
        if (len > LEDGER_FILE_MAX)
                return -EFBIG; /* grew since fstat() */
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

/* Open dfd/name read-only without following a symlink or waiting on a FIFO, and read it
 * whole: -ENOENT if absent, -EBADMSG if not a regular file (a symlink, a FIFO...), -EFBIG
 * over LEDGER_FILE_MAX. */
static int read_state_file(int dfd, const char *name, char **ret, size_t *ret_len) {
        int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return errno == ELOOP ? -EBADMSG : -errno;
        int r = read_ledger_file(fd, ret, ret_len);
        close(fd);
        return r;
}

/* Rename the bad file out of the way, never over an earlier one. */
static int move_aside(int dfd, const char *name, char *ret_name, size_t size) {
        char stamp[TIMEFMT_MAX];
        int r = timefmt_utc(now_usec_realtime(), TIMEFMT_COMPACT, stamp, sizeof stamp);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < 100; i++) {
                if (i == 0)
                        snprintf(ret_name, size, "%s.corrupt-%s", name, stamp);
                else
                        snprintf(ret_name, size, "%s.corrupt-%s.%u", name, stamp, i);
                int k = renameat2(dfd, name, dfd, ret_name, RENAME_NOREPLACE);
                if (k < 0 && errno == EINVAL) /* file system without RENAME_NOREPLACE */
                        k = faccessat(dfd, ret_name, F_OK, AT_SYMLINK_NOFOLLOW) == 0
                                    ? (errno = EEXIST, -1)
                                    : renameat(dfd, name, dfd, ret_name);
                if (k == 0) {
                        (void) fsync(dfd);
                        return 0;
                }
                if (errno != EEXIST)
                        return -errno;
        }
        return -EEXIST;
}

/* Replay dfd/LEDGER_LOG_FILE over l (loaded from the snapshot). 0 when the log was
 * replayed, absent or stale (*ret_stale); -EBADMSG with a reason in err when it is not a
 * regular file, too large or has a bad header (nothing of it applied). */
static int load_log(Ledger *l, int dfd, LedgerReplayReport *rep, bool *ret_stale, char *err, size_t errlen) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        *ret_stale = false;
        int r = read_state_file(dfd, LEDGER_LOG_FILE, &buf, &len);
        if (r == -ENOENT)
                return 0;
        if (r == -EBADMSG)
                return fail(err, errlen, "not a regular file");
        if (r == -EFBIG)
                return fail(err, errlen, "file too large (at most %u bytes)", LEDGER_FILE_MAX);
        if (r < 0)
                return r;
        r = ledger_replay(l, buf, len, rep, err, errlen);
        if (r == -ESTALE) {
                *ret_stale = true;
                return 0;
        }
        if (r >= 0) {
                l->log_bytes = rep->valid_end;
                l->log_records = rep->records + rep->corrupt_records;
                l->log_seq = rep->last_seq;
        }
        return r;
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
        (void) unlinkat(l->dfd, LEDGER_LOG_FILE ".tmp", 0);

        r = read_state_file(l->dfd, LEDGER_FILE, &buf, &len);
        if (r == -ENOENT)
                goto done; /* a log without its snapshot extends nothing: the first save replaces it */
        if (r == -EBADMSG)
                snprintf(reason, sizeof(reason), "not a regular file");
        else if (r == -EFBIG)
                snprintf(reason, sizeof(reason), "file too large (at most %u bytes)", LEDGER_FILE_MAX);
        else if (r < 0)
                goto fail;
        else {
                r = parse_snapshot(l, buf, len, false, NULL, reason, sizeof(reason));
                if (r < 0 && r != -EBADMSG)
                        goto fail;
        }
        buf = free_null(buf);
        if (r < 0) {
                char aside[128], log_aside[128] = "";
                rep.corrupt = true;
                int k = move_aside(l->dfd, LEDGER_FILE, aside, sizeof(aside));
                /* the log extends the bad snapshot: of no use without it, kept beside it */
                if (k >= 0 && faccessat(l->dfd, LEDGER_LOG_FILE, F_OK, AT_SYMLINK_NOFOLLOW) == 0 &&
                    move_aside(l->dfd, LEDGER_LOG_FILE, log_aside, sizeof(log_aside)) < 0)
                        log_aside[0] = 0;
                if (k < 0)
                        snprintf(rep.reason, sizeof(rep.reason),
                                 "ledger: %s/" LEDGER_FILE ": %s, could not move it aside (%s), starting empty", state_dir,
                                 reason, strerror(-k));
                else
                        snprintf(rep.reason, sizeof(rep.reason),
                                 "ledger: %s/" LEDGER_FILE ": %s, moved aside to %s/%s%s%s, starting empty", state_dir,
                                 reason, state_dir, aside, log_aside[0] ? " (its change log to " : "",
                                 log_aside[0] ? log_aside : "");
                if (log_aside[0])
                        strncat(rep.reason, ")", sizeof(rep.reason) - strlen(rep.reason) - 1);
                l->dirty = true;
                goto done;
        }

        LedgerReplayReport rr = {};
        bool stale = false;
        r = load_log(l, l->dfd, &rr, &stale, reason, sizeof(reason));
        if (r == -EBADMSG) {
                char aside[128];
                int k = move_aside(l->dfd, LEDGER_LOG_FILE, aside, sizeof(aside));
                snprintf(rep.log_reason, sizeof(rep.log_reason),
                         "ledger: %s/" LEDGER_LOG_FILE ": %s, %s%s%s; the changes saved in it since the last snapshot are lost",
                         state_dir, reason, k < 0 ? "could not move it aside (" : "moved aside to ",
                         k < 0 ? strerror(-k) : aside, k < 0 ? ")" : "");
                prune(l, NULL);
                l->dirty = l->dirty || l->pruned > 0;
        } else if (r < 0)
                goto fail;
        else if (stale || l->log_bytes == 0) {
                /* none, or one a compaction left behind (its snapshot holds it): the next save
                 * writes a new one */
                prune(l, NULL);
                l->dirty = l->dirty || l->pruned > 0;
        } else {
                rep.log_records = rr.records;
                if (rr.corrupt_records > 0)
                        snprintf(rep.log_reason, sizeof(rep.log_reason),
                                 "ledger: %s/" LEDGER_LOG_FILE ": %" PRIu64 " corrupt record(s) skipped, the first %s%s",
                                 state_dir, rr.corrupt_records, rr.first_error,
                                 rr.dropped_bytes > 0 ? "; a torn record at its end dropped (never acknowledged)" : "");
                else if (rr.dropped_bytes > 0)
                        snprintf(rep.log_reason, sizeof(rep.log_reason),
                                 "ledger: %s/" LEDGER_LOG_FILE ": a torn record at its end (%" PRIu64
                                 " bytes) dropped: it was never acknowledged",
                                 state_dir, rr.dropped_bytes);
                /* appends go on where the log ends, unless it must be rewritten first */
                if (!l->compact_due)
                        l->log_fd = openat(l->dfd, LEDGER_LOG_FILE, O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
        }
done:
        ledger_freeze(l);
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

typedef struct SaveCtx {
        Ledger *l;
        Ref **v;
        Out *o;
        const char *header;
        int hlen;
        uint64_t blen;
        uLong crc;
} SaveCtx;

/* The second pass: header, then the body streamed through the Out buffer, checked
 * against the first pass's length and CRC. */
static int save_write(int fd, void *userdata) {
        SaveCtx *c = userdata;
        int r = write_all(fd, c->header, (size_t) c->hlen);
        if (r < 0)
                return r;
        out_init(c->o, fd, NULL);
        emit_body(c->l, c->v, c->o);
        if (c->o->error < 0)
                return c->o->error;
        return check_second_pass(c->o, c->blen, c->crc);
}

int ledger_read(Ledger **ret, const char *state_dir, size_t max_entries, char *err, size_t errlen) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        char path[PATH_MAX];
        if (!ret || isempty(state_dir) || max_entries == 0)
                return -EINVAL;
        if (snprintf(path, sizeof(path), "%s/" LEDGER_FILE, state_dir) >= (int) sizeof(path))
                return -ENAMETOOLONG;
        _cleanup_close_ int dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        int r = read_state_file(dfd, LEDGER_FILE, &buf, &len);
        if (r == -EBADMSG)
                return fail(err, errlen, "ledger: %s: not a regular file", path);
        if (r == -EFBIG)
                return fail(err, errlen, "ledger: %s: file too large (at most %u bytes)", path, LEDGER_FILE_MAX);
        if (r < 0)
                return r;
        _cleanup_(ledger_freep) Ledger *l = NULL;
        r = ledger_new(&l, max_entries);
        if (r < 0)
                return r;
        char why[LEDGER_REASON_MAX / 2] = "";
        r = parse_snapshot(l, buf, len, false, NULL, why, sizeof(why));
        if (r < 0)
                return r == -EBADMSG ? fail(err, errlen, "ledger: %s: %s", path, why) : r;
        buf = free_null(buf);
        /* the changes since, as ledger_open() would replay them; a torn or corrupt record
         * is skipped, a stale log ignored, as there; nothing is written */
        LedgerReplayReport rr;
        bool stale;
        r = load_log(l, dfd, &rr, &stale, why, sizeof(why));
        if (r == -EBADMSG)
                return fail(err, errlen, "ledger: %s/" LEDGER_LOG_FILE ": %s", state_dir, why);
        if (r < 0)
                return r;
        if (stale || l->log_bytes == 0)
                prune(l, NULL);
        *ret = TAKE_PTR(l);
        return 0;
}

/* The whole snapshot, rewritten (temp file, fsync, rename, fsync the directory), pruned
 * first if over LEDGER_FILE_MAX. *ret_id gets its identity. Returns entries pruned. */
static int snapshot_write(Ledger *l, SnapshotId *ret_id) {
        _cleanup_free_ Ref **v = NULL;
        _cleanup_free_ Out *o = NULL;
        char header[HEADER_LINE_MAX];
        uint64_t blen;
        uLong crc;
        int hlen;
        uint64_t pruned_before = l->pruned;
        int r = plan_body(l, &v, &o, header, &blen, &crc, &hlen);
        if (r < 0)
                return r;
        /* One limit on both sides: never write a file ledger_open() would refuse (and move
         * aside, history and all). Over it, prune the oldest history as the cap would, in
         * proportion to the excess (2% below, so one round usually does), and measure again. */
        while ((uint64_t) hlen + blen > LEDGER_FILE_MAX) {
                size_t entries = l->entries, keep = l->max_entries;
                l->max_entries = (size_t) ((double) entries * (LEDGER_FILE_MAX * 0.98) / (double) ((uint64_t) hlen + blen));
                if (l->max_entries >= entries)
                        l->max_entries = entries - 1;
                prune(l, NULL);
                l->max_entries = keep;
                if (l->entries >= entries || l->max_entries == 0)
                        return -EFBIG;
                v = free_null(v);
                o = free_null(o);
                r = plan_body(l, &v, &o, header, &blen, &crc, &hlen);
                if (r < 0)
                        return r;
        }
        SnapshotId id = { .length = blen, .crc = (uint32_t) crc, .adler = (uint32_t) o->adler };
        SaveCtx ctx = {.l = l, .v = v, .o = o, .header = header, .hlen = hlen, .blen = blen, .crc = crc};
        r = file_replace_at(l->dfd, LEDGER_FILE, 0600, FILE_REPLACE_SYNC, save_write, &ctx);
        if (r < 0)
                return r;
        l->snap_bytes = (uint64_t) hlen + blen;
        *ret_id = id;
        return (int) MIN(l->pruned - pruned_before, (uint64_t) INT_MAX);
}

/* A new log holding only its header, replacing the old one atomically, then opened for
 * appends. */
static int log_start(Ledger *l) {
        uint8_t frame[LEDGER_LOG_FRAME_HEADER + 96];
        size_t n = log_header_frame(&l->base, frame);
        int r = file_replace_data_at(l->dfd, LEDGER_LOG_FILE, 0600, FILE_REPLACE_SYNC, frame, n);
        if (r < 0)
                return r;
        int fd = openat(l->dfd, LEDGER_LOG_FILE, O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        l->log_fd = fd;
        l->log_bytes = n;
        l->log_records = l->log_seq = 0;
        return 0;
}

int ledger_compact(Ledger *l) {
        SnapshotId id;
        if (!l || l->dfd < 0)
                return -EINVAL;
        /* from here until a new log is started, the old one must take no record: it extends
         * a snapshot that may already be replaced */
        if (l->log_fd >= 0)
                close(l->log_fd);
        l->log_fd = -1;
        l->compact_due = true;
        int pruned = snapshot_write(l, &id);
        if (pruned < 0)
                return pruned;
        /* saved: the snapshot holds everything. The old log is now stale (it names the
         * previous snapshot): ignored by a load even if the new one cannot be started, in
         * which case the next save compacts again. */
        l->base = id;
        changes_clear(l);
        l->dirty = false;
        l->compact_due = log_start(l) < 0;
        l->settle_due = false;
        ledger_freeze(l);
        return pruned;
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off) {
        while (len > 0) {
                ssize_t k = pwrite(fd, p, len, (off_t) off);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        return -ENOSPC;
                p += k;
                len -= (size_t) k;
                off += (uint64_t) k;
        }
        return 0;
}

/* ---- the frozen image ----
 *
 * Anonymous memory written once stays private dirty for good: 10,000 references and
 * their tables were ~1.8 MiB of the idle agent's 2.4 MiB, though after a load or a
 * compaction they seldom change. So at those two moments every Ref, its items and the
 * tables (atoms, slots, atom_slots, twins, refs) are copied into one image: an unlinked
 * file in the state directory (O_TMPFILE), written with pwrite() and its write-back
 * started, mapped MAP_PRIVATE, read-write, over an address range reserved before the copy
 * (so the pointers written into it hold). Its pages are file-backed and clean: not
 * private dirty, reclaimable by the kernel, read back from the file when needed again.
 * A change writes in place (copy on write: it costs its pages until the next image); a
 * reference's items move to the pool when they grow and a table is copied out when it
 * grows; nothing of the image is released to the pool or freed: the next image drops it
 * whole. The one write every re-list makes to every reference, its current digest's
 * last_seen, goes to seen[] instead (4 bytes a reference). Each image record is the
 * reference's number (u64, for seen[]), then the Ref and its items, each 8-aligned.
 * Nothing here is on the disk format: the image is only memory. A private mapping never
 * writes back, so a full disk cannot fault it (a failed pwrite() leaves the references
 * where they were); an I/O error reading a page back would (SIGBUS), as for the
 * program's own text. Without O_TMPFILE, space or memory the ledger stays as it was. */

static size_t align8(size_t n) {
        return (n + 7) & ~(size_t) 7;
}

static size_t ref_bytes(const Ref *e) {
        return offsetof(Ref, key) + e->ns_len + 1 + strlen(ref_name(e)) + 1;
}

static size_t items_bytes(const Ref *e) {
        return e->n_digests * sizeof(Hist) + e->n_raised * sizeof(Raised);
}

static void image_release(Ledger *l) {
        if (l->frozen)
                munmap(l->frozen, l->frozen_bytes);
        array_free(l->seen, l->n_frozen * sizeof(uint32_t));
        l->frozen = NULL;
        l->seen = NULL;
        l->frozen_bytes = l->n_frozen = 0;
}

typedef struct ImageOut {
        int fd;
        uint8_t *buf; /* ImageOut.size bytes, mapped */
        size_t size, used;
        uint64_t off; /* of buf[0] in the file */
        int error;
} ImageOut;

static void image_flush(ImageOut *w) {
        if (w->error == 0 && w->used > 0)
                w->error = pwrite_all(w->fd, w->buf, w->used, w->off);
        w->off += w->used;
        w->used = 0;
}

static void image_put(ImageOut *w, const void *p, size_t n) {
        const uint8_t *b = p;
        while (n > 0) {
                size_t k = MIN(n, w->size - w->used);
                memcpy(w->buf + w->used, b, k);
                w->used += k;
                b += k;
                n -= k;
                if (w->used == w->size)
                        image_flush(w);
        }
}

static void image_pad(ImageOut *w) {
        static const uint8_t zero[8];
        size_t at = (size_t) (w->off + w->used);
        image_put(w, zero, align8(at) - at);
}

/* Copy every reference and the tables into a new image and move onto it (see above); on
 * any failure nothing changes. */
static void ledger_freeze(Ledger *l) {
        if (l->dfd < 0)
                return;
        if (l->n_refs == 0) {
                image_release(l);
                return;
        }
        int fd = -1;
        uint8_t *base = MAP_FAILED;
        ImageOut w = { .size = (size_t) 64 << 10 };
        Ref **nrefs = NULL, **ntwins = NULL; /* the image's refs[] and twins[] (new pointers), made here first */
        uint32_t *seen = NULL;
        size_t off = 0;
        nrefs = array_new(l->n_refs, sizeof(Ref *), 0);
        ntwins = l->n_twin_slots ? array_new(l->n_twin_slots, sizeof(Ref *), 0) : NULL;
        seen = array_new(l->n_refs, sizeof(uint32_t), 0);
        w.buf = mmap(NULL, w.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (!nrefs || (l->n_twin_slots && !ntwins) || !seen || w.buf == MAP_FAILED) {
                w.error = -ENOMEM;
                goto out;
        }
        /* the layout: the references, then atoms[], slots[], atom_slots[], twins[], refs[] */
        for (size_t i = 0; i < l->n_refs; i++) {
                nrefs[i] = (Ref *) (uintptr_t) (off + sizeof(uint64_t)); /* an offset until base is known */
                off += sizeof(uint64_t) + align8(ref_bytes(l->refs[i])) + align8(items_bytes(l->refs[i]));
        }
        size_t at_atoms = off, at_slots = align8(at_atoms + l->n_atoms * sizeof(Atom)),
               at_atom_slots = at_slots + l->n_slots * sizeof(uint32_t),
               at_twins = align8(at_atom_slots + l->n_atom_slots * sizeof(uint32_t)),
               at_refs = at_twins + l->n_twin_slots * sizeof(Ref *), total = at_refs + l->n_refs * sizeof(Ref *);
        size_t mapped = map_round(total);
        fd = openat(l->dfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
                goto out;
        w.fd = fd;
        base = mmap(NULL, mapped, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED) {
                w.error = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < l->n_refs; i++) {
                nrefs[i] = (Ref *) (base + (uintptr_t) nrefs[i]);
                uint64_t h;
                if (ntwins && l->refs[i]->twinned && twin_key(l->refs[i], &h))
                        twin_insert(ntwins, l->n_twin_slots, nrefs[i], h);
        }
        for (size_t i = 0; i < l->n_refs; i++) {
                const Ref *e = l->refs[i];
                uint64_t k = i;
                image_put(&w, &k, sizeof k);
                Ref hdr = *e;
                size_t kb = ref_bytes(e) - offsetof(Ref, key), ib = items_bytes(e);
                hdr.items = ib ? (uint8_t *) nrefs[i] + align8(offsetof(Ref, key) + kb) : NULL;
                image_put(&w, &hdr, offsetof(Ref, key));
                image_put(&w, e->key, kb);
                image_pad(&w);
                for (size_t j = 0; j < e->n_digests; j++) {
                        Hist h = ref_hist(e)[j];
                        h.last_seen_usec = hist_last_seen(l, e, j); /* seen[] folded in */
                        image_put(&w, &h, sizeof h);
                }
                image_put(&w, ref_raised(e), e->n_raised * sizeof(Raised));
                image_pad(&w);
        }
        image_put(&w, l->atoms, l->n_atoms * sizeof(Atom));
        image_pad(&w);
        image_put(&w, l->slots, l->n_slots * sizeof(uint32_t));
        image_put(&w, l->atom_slots, l->n_atom_slots * sizeof(uint32_t));
        image_pad(&w);
        image_put(&w, ntwins, l->n_twin_slots * sizeof(Ref *));
        image_put(&w, nrefs, l->n_refs * sizeof(Ref *));
        image_flush(&w);
        assert(w.error < 0 || w.off == total);
        if (w.error == 0 && ftruncate(fd, (off_t) mapped) < 0)
                w.error = -errno;
        /* the pages are clean once written back: started now, done in the background (an
         * fdatasync() here cost a compaction or a load ~50-100 ms on a loaded disk); until
         * then they count as dirty, as the pool's did */
        if (w.error == 0)
                (void) sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        if (w.error == 0 &&
            mmap(base, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0) == MAP_FAILED)
                w.error = -errno;
        if (w.error < 0)
                goto out;

        /* move onto the image: the pending changes' pointers, the tables; the pool's
         * objects and the old arrays go (those of the old image with it) */
        for (size_t i = 0; i < l->n_refs; i++) {
                Ref *e = l->refs[i];
                if (e->pending != NO_PENDING)
                        l->pending[e->pending] = nrefs[i];
                if (!is_frozen(l, e->items))
                        pool_release(l->pool, e->items);
                if (!is_frozen(l, e))
                        pool_release(l->pool, e);
        }
        table_release(l, l->refs, l->alloc_refs * sizeof(Ref *));
        table_release(l, l->atoms, l->alloc_atoms * sizeof(Atom));
        table_release(l, l->slots, l->n_slots * sizeof(uint32_t));
        table_release(l, l->atom_slots, l->n_atom_slots * sizeof(uint32_t));
        table_release(l, l->twins, l->n_twin_slots * sizeof(Ref *));
        image_release(l);
        l->refs = (Ref **) (base + at_refs);
        l->alloc_refs = l->n_refs;
        l->atoms = (Atom *) (base + at_atoms);
        l->alloc_atoms = l->n_atoms;
        l->slots = (uint32_t *) (base + at_slots);
        l->atom_slots = (uint32_t *) (base + at_atom_slots);
        l->twins = l->n_twin_slots ? (Ref **) (base + at_twins) : NULL;
        l->frozen = base;
        l->frozen_bytes = mapped;
        l->seen = seen;
        l->n_frozen = l->n_refs;
        base = MAP_FAILED;
        seen = NULL;
out:
        l->freeze_failed = w.error < 0 || fd < 0;
        if (base != MAP_FAILED)
                munmap(base, mapped);
        if (w.buf != MAP_FAILED)
                munmap(w.buf, w.size);
        array_free(seen, l->n_refs * sizeof(uint32_t));
        array_free(nrefs, l->n_refs * sizeof(Ref *));
        array_free(ntwins, l->n_twin_slots * sizeof(Ref *));
        if (fd >= 0)
                close(fd);
}

/* Compaction is due once the log would outgrow the snapshot (so a load replays at most
 * about as much as it parses, and the rewrite is amortised over as many bytes of records
 * as it writes), or LEDGER_LOG_COMPACT_MIN for a small ledger. Never over LEDGER_FILE_MAX. */
static uint64_t log_bound(const Ledger *l) {
        return MIN(MAX(l->snap_bytes, (uint64_t) LEDGER_LOG_COMPACT_MIN), (uint64_t) LEDGER_FILE_MAX);
}

/* References made since the frozen image was (appended to refs[] after its n_frozen):
 * each in the pool, private dirty for good (~190 bytes) until the next image holds it. A
 * listing that a save cut in two (the save is due 2 s after the first change, a 10,000
 * image listing on a loaded machine takes longer) left the rest of its references there:
 * idle private dirty after a fresh reconcile was 620 kB or up to ~1.9 MiB more from run
 * to run. Past LEDGER_THAWED_MAX of them a save compacts, which moves them into a new
 * image; below it (events adding a few references) saves stay appends. Only once an
 * image was made (without O_TMPFILE the ledger never has one: appends, as before) and
 * while the last attempt at one worked. After ledger_settle() (a listing judged) any
 * reference made since the image is enough: below LEDGER_THAWED_MAX the tables the new
 * references grew were copied out of the image whole and its hash slots written in place
 * (a 10,000-image listing cut by its saves: ~350 kB of a copied table and ~260 kB of the
 * image's pages, with the references' own). */
static bool image_behind(const Ledger *l) {
        /* not after a failed freeze (no space for the image?): every save would compact,
         * for nothing; the log's own bound compacts (and tries again) in time */
        return l->frozen && !l->freeze_failed && l->n_refs > l->n_frozen &&
               (l->settle_due || l->n_refs - l->n_frozen >= LEDGER_THAWED_MAX);
}

int ledger_save(Ledger *l) {
        if (!l || l->dfd < 0)
                return -EINVAL;
        if (l->log_fd < 0 || l->compact_due || image_behind(l))
                return ledger_compact(l);
        if (l->n_pending == 0 && l->n_removed == 0) {
                l->dirty = false;
                return 0;
        }
        _cleanup_free_ uint8_t *p = NULL;
        Batch b = {};
        int r = batch_build(l, &b);
        p = b.p;
        if (r == -EFBIG)
                return ledger_compact(l); /* one reference larger than a log may be */
        if (r < 0)
                return r;
        if (l->log_bytes + b.n > log_bound(l))
                return ledger_compact(l);
        r = pwrite_all(l->log_fd, b.p, b.n, l->log_bytes);
        if (r >= 0 && fdatasync(l->log_fd) < 0)
                r = -errno;
        if (r < 0) {
                /* not acknowledged: cut it off (a crash before that leaves a torn tail, dropped
                 * at load), and compact next time rather than append after what may remain */
                (void) ftruncate(l->log_fd, (off_t) l->log_bytes);
                l->compact_due = true;
                return r;
        }
        l->log_bytes += b.n;
        l->log_records += b.records;
        l->log_seq = b.seq;
        changes_clear(l);
        l->dirty = false;
        return 0;
}
