/* pool: size classes, content kept across pool_realloc(), slabs unmapped when empty,
 * objects packed (their slab pages are about their size). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <malloc.h>
#include <sys/param.h>

#include <cmocka.h>

#include "pullwatch/pool.h"
#include "pullwatch/util.h"

static bool in_pool_slab(const void *obj, void *const *slab_objs, size_t n) {
        uintptr_t base = (uintptr_t) obj & ~(uintptr_t) (POOL_SLAB_SIZE - 1);
        for (size_t i = 0; i < n; i++)
                if (((uintptr_t) slab_objs[i] & ~(uintptr_t) (POOL_SLAB_SIZE - 1)) == base)
                        return true;
        return false;
}

static void fill(uint8_t *p, size_t n, unsigned seed) {
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t) (seed * 31 + i);
}

static bool filled(const uint8_t *p, size_t n, unsigned seed) {
        for (size_t i = 0; i < n; i++)
                if (p[i] != (uint8_t) (seed * 31 + i))
                        return false;
        return true;
}

/* Each case: an allocation size, then a new size; the content up to the smaller moves
 * (or stays) intact, across classes, into and out of malloc()'s range. */
static void test_realloc_table(void **state) {
        static const struct {
                size_t from, to;
        } cases[] = {
                { 0, 16 },   { 1, 1 },     { 16, 17 },  { 24, 40 },   { 88, 24 },  { 100, 100 }, { 496, 512 },
                { 512, 513 }, /* leaves the slabs for malloc() */
                { 513, 100 }, /* and comes back */
                { 600, 4000 }, { 4000, 600 }, { 40, 0 },
        };
        _cleanup_(pool_freep) Pool *p = NULL;
        assert_int_equal(pool_new(&p), 0);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint8_t *a = pool_alloc(p, cases[i].from);
                assert_non_null(a);
                assert_int_equal((uintptr_t) a % 16, 0);
                fill(a, cases[i].from, (unsigned) i);
                uint8_t *b = pool_realloc(p, a, cases[i].to);
                assert_non_null(b);
                assert_int_equal((uintptr_t) b % 16, 0);
                if (!filled(b, MIN(cases[i].from, cases[i].to), (unsigned) i))
                        fail_msg("case %zu (%zu -> %zu): content lost", i, cases[i].from, cases[i].to);
                fill(b, cases[i].to, (unsigned) i + 1); /* the whole new size is usable */
                pool_release(p, b);
        }
        PoolStats st;
        pool_stats(p, &st);
        assert_int_equal(st.objects, 0);
        assert_true(st.slabs <= 8); /* at most one kept per class used (7 classes and malloc here) */
}

/* Many objects of mixed small sizes with some released in between: distinct, intact,
 * and in as few slabs as their bytes need (the point of the pool). */
static void test_many_objects_packed(void **state) {
        enum { N = 20000 };
        _cleanup_(pool_freep) Pool *p = NULL;
        assert_int_equal(pool_new(&p), 0);
        static uint8_t *objs[N];
        static size_t sizes[N];
        for (size_t i = 0; i < N; i++) {
                sizes[i] = 24 + (i * 7) % 120; /* a ledger's references: 24..143 bytes */
                objs[i] = pool_alloc(p, sizes[i]);
                assert_non_null(objs[i]);
                fill(objs[i], sizes[i], (unsigned) i);
                if (i % 3 == 2) { /* release one in three of the previous: their room is reused */
                        pool_release(p, objs[i - 1]);
                        objs[i - 1] = NULL;
                }
        }
        PoolStats st;
        pool_stats(p, &st);
        size_t bytes = 0, live = 0;
        for (size_t i = 0; i < N; i++)
                if (objs[i]) {
                        if (!filled(objs[i], sizes[i], (unsigned) i))
                                fail_msg("object %zu overwritten", i);
                        bytes += (sizes[i] + 15) & ~(size_t) 15;
                        live++;
                }
        assert_int_equal(st.objects, live);
        assert_int_equal(st.bytes, bytes);
        /* a slab of each of the 8 classes used may be partly empty, and released room in
         * the others is not compacted away: at most one slab per class above the floor */
        size_t floor = (bytes + POOL_SLAB_SIZE - 1) / POOL_SLAB_SIZE;
        if (st.slabs > floor + 8 + floor / 2)
                fail_msg("%zu slabs for %zu bytes in use (floor %zu)", st.slabs, bytes, floor);
        for (size_t i = 0; i < N; i++)
                pool_release(p, objs[i]);
        pool_stats(p, &st);
        assert_int_equal(st.objects, 0);
        assert_int_equal(st.slabs, 8); /* one kept per class used, the others unmapped */
}

/* One object made and released in turn, as a reference's first history entry is moved
 * to a larger class when a finding is raised: the class's slab is kept, not mapped and
 * unmapped each time (2,000 munmap and 1,000 mmap over a 1,000-event burst). */
static void test_alternating_object_maps_once(void **state) {
        _cleanup_(pool_freep) Pool *p = NULL;
        assert_int_equal(pool_new(&p), 0);
        void *keep = pool_alloc(p, 40); /* another class stays in use meanwhile */
        assert_non_null(keep);
        for (size_t i = 0; i < 1000; i++) {
                uint8_t *o = pool_alloc(p, 24);
                assert_non_null(o);
                fill(o, 24, (unsigned) i);
                uint8_t *q = pool_realloc(p, o, 40);
                assert_non_null(q);
                assert_true(filled(q, 24, (unsigned) i));
                pool_release(p, q);
        }
        PoolStats st;
        pool_stats(p, &st);
        assert_int_equal(st.maps, 2);
        assert_int_equal(st.slabs, 2);
        assert_int_equal(st.objects, 1);
        pool_release(p, keep);
        /* and a class whose slab emptied serves again from its front */
        void *a = pool_alloc(p, 24), *b = pool_alloc(p, 24);
        assert_non_null(a);
        assert_non_null(b);
        assert_true((uintptr_t) a / POOL_SLAB_SIZE == (uintptr_t) b / POOL_SLAB_SIZE);
        assert_true((uintptr_t) a % POOL_SLAB_SIZE < 4096);
        pool_release(p, a);
        pool_release(p, b);
        pool_stats(p, &st);
        assert_int_equal(st.maps, 2);
}

/* Small objects come from slabs (mmap, not the malloc heap), big ones from malloc(), and
 * pool_release() tells them apart. */
static void test_small_off_heap_big_from_malloc(void **state) {
        _cleanup_(pool_freep) Pool *p = NULL;
        assert_int_equal(pool_new(&p), 0);
        void *small[3] = { pool_alloc(p, 8), pool_alloc(p, 200), pool_alloc(p, POOL_OBJECT_MAX) };
        void *big = pool_alloc(p, POOL_OBJECT_MAX + 1);
        assert_non_null(small[0]);
        assert_non_null(small[1]);
        assert_non_null(small[2]);
        assert_non_null(big);
        PoolStats st;
        pool_stats(p, &st);
        assert_int_equal(st.slabs, 3); /* three classes */
        assert_int_equal(st.objects, 3);
        assert_false(in_pool_slab(big, small, 3));
        assert_true(malloc_usable_size(big) >= POOL_OBJECT_MAX + 1);
        pool_release(p, big);
        for (size_t i = 0; i < 3; i++)
                pool_release(p, small[i]);
        pool_release(p, NULL);
        pool_stats(p, &st);
        assert_int_equal(st.objects, 0);
        assert_int_equal(st.slabs, 3); /* each class keeps its last slab */
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_realloc_table),
                cmocka_unit_test(test_many_objects_packed),
                cmocka_unit_test(test_small_off_heap_big_from_malloc),
                cmocka_unit_test(test_alternating_object_maps_once),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
