/* What resolving an image found (target digest → platform manifest → config digest and
 * revision label), kept by target digest in STATE_DIR/facts, so that a restart's
 * reconcile, a reconnect's and the hourly inventory's (which judge every image; the
 * periodic catch-up re-list queues only what the ledger does not know) look an image up
 * instead of reading two or three blobs (at 10,000 images: 20,000 blob reads and JSON
 * parses, ~0.75 s of the agent's CPU).
 *
 * A cache, not a record: a digest's facts never change (content-addressed; the platform
 * picked is this node's), so a missing, stale or corrupt file costs only reads. A corrupt
 * one (bad header, CRC, order or bounds) is moved aside as facts.corrupt-<UTC stamp>,
 * said in one line (facts_pop_warning()), and rebuilt by the next save. The ledger's own
 * files and their crash semantics are untouched.
 *
 * Memory: nothing at rest. The file is mapped read-only (clean, file-backed pages) at the
 * first look-up and unmapped by facts_save()/facts_release(); facts learned meanwhile wait
 * in a mapped array until the save merges them in.
 *
 * File (little endian): header "PWF1" u32 magic, u32 version (1), u32 count, u32 length of
 * the strings area, u32 CRC32 of everything after the header; then count records of
 * FACTS_RECORD_SIZE bytes in strictly increasing target order — u8 target[32] (the
 * sha256 digest's bytes), u8 platform[32] (zeros when it is the target), u8 config[32],
 * u32 revision offset, u8 revision length, u8 flags (FACTS_F_*), u16 zero — then the
 * strings area (revisions, valid UTF-8 without NUL). Only sha256 digests are kept. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pullwatch/finding.h"

#define FACTS_FILE "facts"
#define FACTS_MAGIC 0x31465750U /* "PWF1" read as little endian */
#define FACTS_VERSION 1
#define FACTS_HEADER_SIZE 20
#define FACTS_RECORD_SIZE 104
#define FACTS_MAX 65536U /* records kept; past it, those not looked up since the file was mapped go */
#define FACTS_FILE_MAX ((size_t) FACTS_HEADER_SIZE + (size_t) FACTS_MAX * (FACTS_RECORD_SIZE + 255))
#define FACTS_F_REVISION 1U       /* the config has the revision label */
#define FACTS_F_PLATFORM_IS_TARGET 2U

typedef struct FactsEntry {
        char platform_digest[PW_DIGEST_MAX];
        char config_digest[PW_DIGEST_MAX];
        bool has_revision;
        char revision[PW_REVISION_MAX];
} FactsEntry;

typedef struct Facts Facts;

/* state_dir is copied. read_only: never writes, never moves a bad file aside (scan).
 * Nothing is read until the first look-up. *ret owned, facts_free() (accepts NULL). */
int facts_new(Facts **ret, const char *state_dir, bool read_only);
Facts *facts_free(Facts *f);

/* The facts of digest; -ENOENT if unknown (or not a sha256 digest). */
int facts_lookup(Facts *f, const char *digest, FactsEntry *ret);
/* Remember what resolving digest found, for the next save. -EINVAL for strings that do
 * not fit or a digest that is not sha256 (not kept: 0 is returned, nothing done), -ENOMEM. */
int facts_add(Facts *f, const char *digest, const FactsEntry *e);
/* Merge the facts added since into the file (atomic replace, no fsync: a cache), then
 * unmap it. No-op without additions. -EROFS if read-only. */
int facts_save(Facts *f);
/* Unmap the file (look-ups map it again). */
void facts_release(Facts *f);
/* One line about a file moved aside or unreadable since the last call, or NULL. Borrowed
 * until the next call on f. */
const char *facts_pop_warning(Facts *f);

/* Pure: whether buf (len bytes) is a valid facts file; its record count into *ret_count
 * (optional). -EBADMSG with a one-line reason in err. */
int facts_check(const uint8_t *buf, size_t len, size_t *ret_count, char *err, size_t errlen);
/* Pure: look digest up in a valid file image (facts_check() passed). -ENOENT. */
int facts_find(const uint8_t *buf, size_t len, const char *digest, FactsEntry *ret);
