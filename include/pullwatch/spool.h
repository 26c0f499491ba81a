/* Durable append-only queue of records (finding JSON) waiting for the endpoint.
 *
 * On disk: segment files under DIR, each record framed as magic, length, CRC32C
 * (or CRC32) and payload; verified on read; a torn tail is trimmed on open.
 * A record counts as emitted once spool_append() returned 0; it is removed only
 * by spool_ack(). Sequence numbers are monotonic across restarts. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Spool Spool;

typedef enum SpoolFsync {
        SPOOL_FSYNC_ALWAYS, /* fsync after every append: safest, slowest */
        SPOOL_FSYNC_BATCH,  /* default: fsync on spool_sync(), called once per batch/loop turn */
        SPOOL_FSYNC_NEVER,  /* leave it to the kernel: a power cut can lose seconds */
} SpoolFsync;

typedef struct SpoolOpenReport {
        uint64_t records;         /* valid records found */
        uint64_t trimmed_bytes;   /* bytes of torn/corrupt tail discarded */
        uint64_t corrupt_records; /* records that failed the CRC and were skipped */
} SpoolOpenReport;

typedef struct SpoolStats {
        uint64_t appended, acked, dropped; /* since open */
        uint64_t dropped_total;            /* persisted across restarts */
        uint64_t pending_records, pending_bytes;
        uint64_t disk_bytes;
} SpoolStats;

#define SPOOL_RECORD_MAX (1U << 20) /* a record larger than 1 MiB is rejected (-EMSGSIZE) */

/* *ret owned by caller, released with spool_free(). report may be NULL. */
int spool_open(Spool **ret, const char *dir, uint64_t max_bytes, SpoolFsync policy, SpoolOpenReport *report);
Spool *spool_free(Spool *s); /* accepts NULL, syncs, returns NULL */

/* Append one record. When the spool is full the oldest records are dropped first
 * (counted in stats.dropped). Returns the record's sequence number in *ret_seq. */
int spool_append(Spool *s, const void *data, size_t len, uint64_t *ret_seq);
int spool_sync(Spool *s);

/* Visit unacknowledged records with seq > after_seq in order, at most max_records /
 * max_bytes of payload. data is borrowed for the duration of the callback.
 * The callback returns 0 to continue, >0 to stop, <0 to abort with that error. */
typedef int (*spool_visit_t)(uint64_t seq, const void *data, size_t len, void *userdata);
int spool_peek(Spool *s, uint64_t after_seq, size_t max_records, size_t max_bytes, spool_visit_t visit, void *userdata);

/* Acknowledge every record with seq <= upto_seq; reclaims disk space. */
int spool_ack(Spool *s, uint64_t upto_seq);
void spool_get_stats(const Spool *s, SpoolStats *ret);
