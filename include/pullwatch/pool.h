/* A size-class allocator for many small objects that live long (the ledger's references
 * and their history), kept off the malloc heap in slabs of their own.
 *
 * Why: the agent allocates such objects in the middle of bursts of short-lived buffers
 * (a listing's jobs and replies, encoded records, batches, TLS and gzip state). From the
 * malloc heap, each landed between those buffers; once the burst was freed, every heap
 * page holding one of them stayed resident and private, and malloc_trim() cannot give a
 * page back while one byte of it is in use: 1,000 references (140 KiB) pinned 1.4 MiB.
 * In slabs they stay packed: their pages are about their size.
 *
 * Objects up to POOL_OBJECT_MAX bytes come from 64 KiB slabs (mmap, one size class of 16
 * bytes' steps per slab, filled from the front, so a slab's untouched tail is never
 * resident); a slab is unmapped when its last object is released, but for the last one
 * of its class, kept with its first page resident (so that one object made and released
 * in turn costs no system call). Larger requests go to malloc(). Objects are 16-byte aligned. Not thread-safe (the agent has one thread).
 * Under AddressSanitizer released objects and a slab's unused space are poisoned. */
#pragma once

#include <stddef.h>

#include "pullwatch/util.h"

#define POOL_OBJECT_MAX 512
#define POOL_SLAB_SIZE (64U << 10)

typedef struct Pool Pool;

typedef struct PoolStats {
        size_t slabs;   /* mapped */
        size_t objects; /* in slabs, in use */
        size_t bytes;   /* in slabs, in use, by size class */
        size_t maps;    /* slabs mapped since pool_new() */
} PoolStats;

/* -ENOMEM. The pool is the caller's: pool_free() it. */
int pool_new(Pool **ret);
/* Unmaps every slab (objects still in use go with them; malloc()ed ones must have been
 * released). Accepts NULL; returns NULL. */
Pool *pool_free(Pool *p);

/* Like malloc(): NULL when out of memory; size 0 gives a valid, unique object. The
 * object is the caller's, released with pool_release() on the same pool. */
void *pool_alloc(Pool *p, size_t size);
/* Like free(); NULL is ignored. */
void pool_release(Pool *p, void *obj);
/* Like realloc(): obj NULL allocates; on failure NULL is returned and obj is untouched
 * (still the caller's); the content up to the smaller size moves. */
void *pool_realloc(Pool *p, void *obj, size_t size);

void pool_stats(const Pool *p, PoolStats *ret);
DEFINE_TRIVIAL_CLEANUP_FUNC(Pool *, pool_free);
