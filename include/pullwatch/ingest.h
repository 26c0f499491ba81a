/* The collector's request body: gzip (bounded inflation) and JSON lines into records.
 * Pure: no I/O, no database, so the fuzz target drives exactly what the server runs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "pullwatch/record.h"

/* Inflate a gzip body (RFC 1952; concatenated members too) into at most max bytes.
 * -EFBIG when the output would pass max (nothing more is inflated: no zip bomb),
 * -EBADMSG when the data is not valid gzip (trailing garbage included), -ENOMEM.
 * *ret is malloc()ed, NUL-terminated and owned by the caller. */
int ingest_inflate(const void *in, size_t len, size_t max, char **ret, size_t *ret_len, char *err, size_t errlen);

/* Called once per decoded record, which is valid only during the call (borrowed); the
 * callback may take what it owns (TAKE_PTR(rec->inventory.images)) before returning.
 * Return < 0 to stop with that error. */
typedef int (*ingest_record_t)(void *userdata, Record *rec);

/* Walk the JSON lines of body (len bytes; "\n" or "\r\n"; empty lines skipped; the last
 * line needs no newline). Every line is decoded with record_from_json; the first bad
 * line stops the walk with "line N: reason" in err and record_from_json's error
 * (-EBADMSG, -EPROTONOSUPPORT, -E2BIG). More than max_records lines: -E2BIG.
 * cb may be NULL (validate only). *ret_n: the number of records, on success. */
int ingest_parse_body(const char *body, size_t len, size_t max_records, ingest_record_t cb, void *userdata,
                      size_t *ret_n, char *err, size_t errlen);

/* Decode once: the thread that validates a body (ingest_parse_body) also packs its
 * records, back to back, into a compact binary form that ingest_unpack() turns into
 * Records again without JSON, in the writer thread. Per record: type, kind, severity and
 * flags (one byte each), time_usec, then every text field NUL-terminated; an inventory
 * adds its snapshot, counts and images (7 texts, compliant, findings mask, pods of 3
 * texts each). Integers are in host order, unaligned: the form never leaves the process.
 * 62 % of the JSON for tests/bench records, 70 % for its inventories; what the queue
 * holds and counts.
 *
 * ingest_pack_body: as ingest_parse_body (the same "line N: reason" errors), and on
 * success *ret (malloc()ed, owned by the caller) holds *ret_len bytes of *ret_n records.
 * ingest_unpack: cb once per record, in order (borrowed, as for ingest_parse_body); -EBADMSG
 * with a reason if the buffer is not what ingest_pack_body made (truncated). */
int ingest_pack_body(const char *body, size_t len, size_t max_records, char **ret, size_t *ret_len, size_t *ret_n,
                     char *err, size_t errlen);
int ingest_unpack(const char *packed, size_t len, ingest_record_t cb, void *userdata, size_t *ret_n, char *err,
                  size_t errlen);
