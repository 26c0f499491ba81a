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
/* Cost and risk: ALWAYS is one fdatasync per record (bounded by the disk's flush latency,
 * typically 0.1-10 ms); BATCH loses at most the records appended since the last
 * spool_sync() on a power cut or kernel crash (never on a process crash or SIGKILL: the
 * data is in the page cache); NEVER may lose whatever the kernel has not written back
 * (up to ~30 s with default dirty_expire). See tests/bench/spool_bench.c. */

typedef struct SpoolOpenReport {
        uint64_t records;         /* valid records found */
        uint64_t trimmed_bytes;   /* bytes of torn/corrupt tail discarded */
        uint64_t corrupt_records; /* records that failed the CRC and were skipped */
        uint64_t skipped_bytes;   /* bytes of those corrupt regions (left on disk, never read) */
        bool ack_state_reset;     /* the ack file was unreadable or impossible: every record re-sent */
} SpoolOpenReport;

typedef struct SpoolStats {
        uint64_t appended, acked, dropped; /* since open */
        uint64_t dropped_total;            /* persisted across restarts */
        uint64_t pending_records, pending_bytes; /* unacknowledged; bytes are frame bytes on disk */
        uint64_t disk_bytes;                     /* all segment files, acknowledged or not */
        uint64_t corrupt;                        /* since open: records that failed the CRC when read back, skipped */
        uint64_t replaced;                       /* since open: records of the replaceable group replaced unsent */
} SpoolStats;

#define SPOOL_RECORD_MAX (1U << 20) /* a record larger than 1 MiB is rejected (-EMSGSIZE) */

/* *ret owned by caller, released with spool_free(). report may be NULL. */
int spool_open(Spool **ret, const char *dir, uint64_t max_bytes, SpoolFsync policy, SpoolOpenReport *report);
Spool *spool_free(Spool *s); /* accepts NULL, syncs, returns NULL */

/* Append one record. When the spool is full the replaceable group goes first, then the
 * oldest records (all counted in stats.dropped). Returns the record's sequence number
 * in *ret_seq. */
int spool_append(Spool *s, const void *data, size_t len, uint64_t *ret_seq);

/* The replaceable group: records of which only the newest set is worth sending (the
 * agent's inventory snapshot, its parts 1..n). At most one group is pending: this one
 * replaces the unacknowledged rest of the previous one, atomically (DIR/latest written
 * whole: temp, fsync, rename, fsync DIR — a crash leaves the old group or the new one,
 * never a mix), its records take the next sequence numbers and are merged into
 * spool_peek() by seq. It never evicts other records: -ENOSPC when it does not fit
 * beside them (the previous group stays pending); and spool_append() evicts it first.
 * On error the previous group is untouched. 0 on success. */
struct iovec;
int spool_replace_latest(Spool *s, const struct iovec *recs, size_t n);
/* Changes whenever the group is replaced or dropped: a reader holding records it peeked
 * (the shipper's batch waiting to be retried) peeks again when it changed. */
uint64_t spool_generation(const Spool *s);
int spool_sync(Spool *s);

/* Visit unacknowledged records with seq > after_seq in order, at most max_records /
 * max_bytes of payload. data is borrowed for the duration of the callback.
 * The callback returns 0 to continue, >0 to stop, <0 to abort with that error.
 * The first record is always visited even if it alone exceeds max_bytes, so a big
 * record cannot wedge the queue. Returns the number of records visited. */
typedef int (*spool_visit_t)(uint64_t seq, const void *data, size_t len, void *userdata);
int spool_peek(Spool *s, uint64_t after_seq, size_t max_records, size_t max_bytes, spool_visit_t visit, void *userdata);

/* Crash replays. An agent that crashed before its ledger was saved makes the same records
 * again when it restarts, with the same ids (derived from what the record is). Records
 * still pending when the spool was opened are remembered by id (the first 64 bits of the
 * 32-hex "id" that starts every record the agent writes; 8 bytes each), so the caller can
 * skip spooling them twice: true when a record with this id was pending at open. Records
 * appended since are not added: a legitimate new record gets a new id.
 * spool_forget_pending_at_open() frees the set (once the first listing is judged). */
bool spool_pending_at_open(const Spool *s, const char *id);
void spool_forget_pending_at_open(Spool *s);
/* The first 64 bits of a 32-hex id, never 0; 0 when id is not 32 hex digits. */
uint64_t spool_id_prefix(const char *id);

/* Acknowledge every record with seq <= upto_seq; reclaims disk space. */
int spool_ack(Spool *s, uint64_t upto_seq);
void spool_get_stats(const Spool *s, SpoolStats *ret);

/* ---- On-disk format (pure helpers, no I/O; used by the reader and the fuzz target) ----
 *
 * DIR/NNNNNNNNNNNNNNNNNNNN.seg  segments, named by the sequence number of their first
 *                               record (20 digits), rolled at min(4 MiB, max_bytes/4);
 * DIR/ack                       one text line: acked seq, next seq, dropped_total, CRC32,
 *                               replaced atomically (temp, fsync, rename, fsync DIR);
 * DIR/lock                      flock()ed while open: a second spool_open() gets -EBUSY.
 * DIR/latest                    the replaceable group: frames as in a segment, seqs
 *                               increasing; read whole or discarded (corrupt_records + 1).
 *
 * Record frame, little endian:
 *   0  u32 magic "PWS1"   4  u32 payload length   8  u64 seq
 *   16 u32 CRC32 (zlib) of bytes 4..15 and the payload   20  payload
 *
 * Corruption policy: a frame that fails to decode in the middle of a segment is skipped
 * when a valid frame with a higher seq follows it (counted in corrupt_records, its bytes
 * in skipped_bytes); with nothing valid after it, it is a torn tail and is truncated
 * away (trimmed_bytes). Memory: the open spool keeps a 16-byte index entry per record
 * on disk, so spool_peek() seeks straight to the first wanted record. */
#define SPOOL_RECORD_HEADER_SIZE 20
#define SPOOL_RECORD_MAGIC 0x31535750U /* "PWS1" read as little endian */

/* Encode the frame header for a payload into hdr. */
void spool_record_encode_header(uint8_t hdr[SPOOL_RECORD_HEADER_SIZE], uint64_t seq, const void *payload, size_t len);

/* Decode one frame at the start of buf. On success returns 0 and sets *ret_seq,
 * *ret_payload (borrowed, points into buf), *ret_len and *ret_frame_len (header +
 * payload). -ENODATA: buf ends before the frame does (torn); -EBADMSG: bad magic or a
 * length over SPOOL_RECORD_MAX; -EILSEQ: CRC mismatch. Out-params untouched on error. */
int spool_record_decode(const uint8_t *buf, size_t len, uint64_t *ret_seq, const uint8_t **ret_payload,
                        size_t *ret_len, size_t *ret_frame_len);

typedef struct SpoolScanResult {
        size_t valid_end;         /* end of the last valid frame: everything after is torn */
        uint64_t records;         /* valid frames visited */
        uint64_t corrupt_records; /* corrupt regions skipped because a valid frame followed */
        uint64_t skipped_bytes;
        uint64_t last_seq;        /* seq of the last valid frame, 0 if none */
} SpoolScanResult;

/* Scan a whole segment buffer applying the corruption policy above; frames must carry
 * strictly increasing sequence numbers greater than min_seq. visit (may be NULL) gets each
 * valid frame's seq, offset and payload length, and may return <0 to abort (returned). */
typedef int (*spool_scan_visit_t)(uint64_t seq, size_t offset, size_t payload_len, void *userdata);
int spool_segment_scan(const uint8_t *buf, size_t len, uint64_t min_seq, spool_scan_visit_t visit, void *userdata,
                       SpoolScanResult *ret);
