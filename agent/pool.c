/* Size-class slabs for small long-lived objects; see include/pullwatch/pool.h. */
#include <assert.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/param.h>

#include "pullwatch/pool.h"
#include "pullwatch/util.h"

#if defined(__SANITIZE_ADDRESS__) /* gcc */
#define POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) /* clang */
#define POOL_ASAN 1
#endif
#endif
#ifdef POOL_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(a, n) ASAN_POISON_MEMORY_REGION((a), (n))
#define UNPOISON(a, n) ASAN_UNPOISON_MEMORY_REGION((a), (n))
#else
#define POISON(a, n) ((void) (a), (void) (n))
#define UNPOISON(a, n) ((void) (a), (void) (n))
#endif

#define GRAIN 16U
#define N_CLASSES (POOL_OBJECT_MAX / GRAIN)

typedef struct Slab {
        struct Slab *prev, *next; /* in Pool.room[cls]: the class's slabs with a free object */
        void *free_list;          /* released objects, linked through their first word */
        uint32_t live;            /* objects in use */
        uint32_t bump;            /* offset of the never used space */
        uint16_t cls;
        bool listed;
} Slab;

#define SLAB_HEADER ((sizeof(Slab) + 63U) & ~(size_t) 63U)
#define SLAB_KEEP_BYTES (4096U) /* of an emptied slab kept for its class, stays resident */

static_assert(POOL_SLAB_SIZE % 4096 == 0 && (POOL_SLAB_SIZE & (POOL_SLAB_SIZE - 1)) == 0, "a power-of-two of pages");
static_assert(POOL_OBJECT_MAX % GRAIN == 0, "classes of GRAIN steps");

struct Pool {
        Slab *room[N_CLASSES];
        Slab **slabs; /* owned array, sorted by address: which pointers are ours */
        size_t n_slabs, alloc_slabs;
        size_t objects, bytes;
        size_t maps;
};

static size_t class_size(size_t cls) {
        return (cls + 1) * GRAIN;
}

static size_t size_class(size_t size) {
        return size == 0 ? 0 : (size - 1) / GRAIN;
}

int pool_new(Pool **ret) {
        Pool *p = calloc(1, sizeof(Pool));
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

Pool *pool_free(Pool *p) {
        if (!p)
                return NULL;
        for (size_t i = 0; i < p->n_slabs; i++) {
                UNPOISON(p->slabs[i], POOL_SLAB_SIZE);
                munmap(p->slabs[i], POOL_SLAB_SIZE);
        }
        free(p->slabs);
        free(p);
        return NULL;
}

/* Index of the first slab at or above address a. */
static size_t slab_search(const Pool *p, uintptr_t a) {
        size_t lo = 0, hi = p->n_slabs;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if ((uintptr_t) p->slabs[mid] < a)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static Slab *slab_of(const Pool *p, const void *obj) {
        uintptr_t base = (uintptr_t) obj & ~(uintptr_t) (POOL_SLAB_SIZE - 1);
        size_t i = slab_search(p, base);
        return i < p->n_slabs && (uintptr_t) p->slabs[i] == base ? p->slabs[i] : NULL;
}

static void room_link(Pool *p, Slab *s) {
        s->prev = NULL;
        s->next = p->room[s->cls];
        if (s->next)
                s->next->prev = s;
        p->room[s->cls] = s;
        s->listed = true;
}

static void room_unlink(Pool *p, Slab *s) {
        if (s->prev)
                s->prev->next = s->next;
        else
                p->room[s->cls] = s->next;
        if (s->next)
                s->next->prev = s->prev;
        s->prev = s->next = NULL;
        s->listed = false;
}

/* A slab aligned to its size (so an object finds its slab by masking its address). */
static Slab *slab_map(Pool *p, size_t cls) {
        if (greedy_realloc((void **) &p->slabs, &p->alloc_slabs, p->n_slabs + 1, sizeof(Slab *), 8) < 0)
                return NULL;
        size_t span = 2 * (size_t) POOL_SLAB_SIZE;
        uint8_t *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
                return NULL;
        uintptr_t a = ((uintptr_t) m + POOL_SLAB_SIZE - 1) & ~(uintptr_t) (POOL_SLAB_SIZE - 1);
        uint8_t *start = (uint8_t *) a;
        if (start > m)
                munmap(m, (size_t) (start - m));
        if (start + POOL_SLAB_SIZE < m + span)
                munmap(start + POOL_SLAB_SIZE, (size_t) (m + span - (start + POOL_SLAB_SIZE)));
        Slab *s = (Slab *) start;
        *s = (Slab) { .cls = (uint16_t) cls, .bump = (uint32_t) SLAB_HEADER };
        POISON(start + SLAB_HEADER, POOL_SLAB_SIZE - SLAB_HEADER);
        size_t i = slab_search(p, a);
        memmove(p->slabs + i + 1, p->slabs + i, (p->n_slabs - i) * sizeof(Slab *));
        p->slabs[i] = s;
        p->n_slabs++;
        p->maps++;
        room_link(p, s);
        return s;
}

static void slab_unmap(Pool *p, Slab *s) {
        if (s->listed)
                room_unlink(p, s);
        size_t i = slab_search(p, (uintptr_t) s);
        assert(i < p->n_slabs && p->slabs[i] == s);
        memmove(p->slabs + i, p->slabs + i + 1, (p->n_slabs - i - 1) * sizeof(Slab *));
        p->n_slabs--;
        UNPOISON(s, POOL_SLAB_SIZE);
        munmap(s, POOL_SLAB_SIZE);
}

/* The class's only slab with room emptied: kept, or an object made and released in turn
 * (a reference's first history entry, moved to a larger class when a finding is raised)
 * mapped and unmapped a slab each time. Refilled from the front, on pages already
 * resident; those past the first few are given back. */
static void slab_reset(Pool *p, Slab *s) {
        size_t keep = SLAB_KEEP_BYTES;
        if (s->bump > keep)
                (void) madvise((uint8_t *) s + keep, s->bump - keep, MADV_DONTNEED);
        s->free_list = NULL;
        s->bump = (uint32_t) SLAB_HEADER;
        POISON((uint8_t *) s + SLAB_HEADER, POOL_SLAB_SIZE - SLAB_HEADER);
}

static bool slab_full(const Slab *s) {
        return !s->free_list && s->bump + class_size(s->cls) > POOL_SLAB_SIZE;
}

void *pool_alloc(Pool *p, size_t size) {
        if (size > POOL_OBJECT_MAX)
                return malloc(size);
        size_t cls = size_class(size), n = class_size(cls);
        Slab *s = p->room[cls];
        if (!s && !(s = slab_map(p, cls)))
                return NULL;
        uint8_t *obj;
        if (s->free_list) {
                obj = s->free_list;
                UNPOISON(obj, n);
                memcpy(&s->free_list, obj, sizeof(void *));
        } else {
                obj = (uint8_t *) s + s->bump;
                UNPOISON(obj, n);
                s->bump += (uint32_t) n;
        }
        s->live++;
        if (slab_full(s))
                room_unlink(p, s);
        p->objects++;
        p->bytes += n;
        return obj;
}

void pool_release(Pool *p, void *obj) {
        if (!obj)
                return;
        Slab *s = slab_of(p, obj);
        if (!s) {
                free(obj);
                return;
        }
        size_t n = class_size(s->cls);
        assert(s->live > 0);
        memcpy(obj, &s->free_list, sizeof(void *));
        s->free_list = obj;
        POISON(obj, n);
        s->live--;
        p->objects--;
        p->bytes -= n;
        if (s->live == 0 && p->room[s->cls] == s && !s->next)
                slab_reset(p, s);
        else if (s->live == 0)
                slab_unmap(p, s); /* its pages, dirty or not, go back at once */
        else if (!s->listed)
                room_link(p, s);
}

void *pool_realloc(Pool *p, void *obj, size_t size) {
        if (!obj)
                return pool_alloc(p, size);
        Slab *s = slab_of(p, obj);
        size_t old;
        if (s) {
                if (size <= POOL_OBJECT_MAX && size_class(size) == s->cls)
                        return obj;
                old = class_size(s->cls);
        } else {
                if (size > POOL_OBJECT_MAX)
                        return realloc(obj, size);
                old = malloc_usable_size(obj);
        }
        void *q = pool_alloc(p, size);
        if (!q)
                return NULL;
        memcpy(q, obj, MIN(old, size));
        pool_release(p, obj);
        return q;
}

void pool_stats(const Pool *p, PoolStats *ret) {
        *ret = (PoolStats) { .slabs = p->n_slabs, .objects = p->objects, .bytes = p->bytes, .maps = p->maps };
}
