/* The record schema, decode side: one JSON line as an agent ships it (finding_to_json's
 * pull and finding records, agent.c's `inventory` records) into plain structs. Strict
 * and bounded: an unknown `schema`, a missing or mistyped field, a string over its
 * field's limit, more than RECORD_IMAGES_MAX images or RECORD_PODS_MAX pods per image
 * are errors with a one-line reason. Pure: no I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pullwatch/finding.h"

#define RECORD_LINE_MAX (4U << 20) /* one JSON line; the agent's spool caps records at 1 MiB */
#define RECORD_IMAGES_MAX 1000     /* images per inventory part: agent.c's INVENTORY_PART_MAX */
#define RECORD_PARTS_MAX 10000     /* parts per inventory: 10 million images per node */
#define RECORD_PODS_MAX 256        /* pods named per inventory image */
#define RECORD_SNAPSHOT_MAX 33     /* 32 hex + NUL */
#define RECORD_CLUSTER_MAX 254

typedef enum RecordType {
        RECORD_FINDING,   /* a pull record or a finding: Record.finding */
        RECORD_INVENTORY, /* one part of a node inventory: Record.inventory */
} RecordType;

typedef struct InventoryPod {
        char namespace[PW_K8S_NAME_MAX];
        char pod[PW_K8S_NAME_MAX];
        char container[PW_K8S_NAME_MAX];
} InventoryPod;

typedef struct InventoryImage {
        char namespace[PW_NS_MAX]; /* containerd namespace */
        char ref[PW_REF_MAX];
        char name[PW_NAME_MAX]; /* from the record, else derived from ref; "" if neither */
        char tag[PW_TAG_MAX];
        char digest[PW_DIGEST_MAX];
        char media_type[PW_MEDIA_TYPE_MAX];
        char revision[PW_REVISION_MAX];
        bool compliant;        /* as the agent judged it */
        unsigned findings;     /* bit (1u << FindingKind) per kind that stands */
        InventoryPod *pods;    /* owned, n_pods entries */
        size_t n_pods;
} InventoryImage;

typedef struct Inventory {
        char snapshot[RECORD_SNAPSHOT_MAX]; /* "" when the agent sent none (older agents) */
        uint64_t total, compliant;          /* of the whole inventory, all parts */
        unsigned part, parts;               /* 1 <= part <= parts */
        InventoryImage *images;             /* owned, n_images entries */
        size_t n_images;
} Inventory;

typedef struct Record {
        RecordType type;
        char cluster[RECORD_CLUSTER_MAX]; /* the record's own `cluster` field, "" if absent */
        /* For RECORD_FINDING every field; for RECORD_INVENTORY only id, severity, time_usec
         * and node are set (kind is FINDING_PULL and meaningless). */
        Finding finding;
        Inventory inventory; /* RECORD_INVENTORY only */
} Record;

/* Decode one JSON line (no trailing newline needed; len bytes, not NUL-terminated) into
 * *ret, which the caller then owns and releases with record_done(). On failure a one-line
 * reason goes to err, -EBADMSG (malformed JSON or a bad field), -EPROTONOSUPPORT (a
 * `schema` other than PW_SCHEMA_VERSION), -E2BIG (a bound exceeded) or -ENOMEM is
 * returned, and *ret holds nothing to release. */
int record_from_json(const char *line, size_t len, Record *ret, char *err, size_t errlen);
/* The same decoder through jansson alone. record_from_json() decodes the lines the agent
 * writes (pulls and findings of known keys, plain ASCII strings) without it and hands
 * every other line to this one; fuzz_record and test_record check that both agree. */
int record_from_json_generic(const char *line, size_t len, Record *ret, char *err, size_t errlen);
/* Same, for the `images` array of an inventory alone (as the store stages it). */
int record_images_from_json(const char *json, size_t len, InventoryImage **ret, size_t *ret_n, char *err,
                            size_t errlen);
/* Release what a Record (or an image array) owns; the struct itself is the caller's. */
void record_done(Record *r);
void record_images_free(InventoryImage *images, size_t n);

/* The compliance flags of one image, from the finding kinds that stand on it (a mask of
 * 1u << FindingKind). The same rules for a pull's row and an inventory's row:
 *   compliant: no finding stands;
 *   pinned: neither latest_tag nor mutable_tag stands (by digest, or a tag judged immutable);
 *   latest: latest_tag stands;
 *   revision_verified: neither untraceable nor revision_mismatch stands. */
static inline bool record_image_compliant(unsigned findings) {
        return (findings & ~(1u << FINDING_PULL)) == 0;
}
static inline bool record_image_pinned(unsigned findings) {
        return (findings & ((1u << FINDING_LATEST_TAG) | (1u << FINDING_MUTABLE_TAG))) == 0;
}
static inline bool record_image_latest(unsigned findings) {
        return (findings & (1u << FINDING_LATEST_TAG)) != 0;
}
static inline bool record_image_revision_verified(unsigned findings) {
        return (findings & ((1u << FINDING_UNTRACEABLE) | (1u << FINDING_REVISION_MISMATCH))) == 0;
}
/* The kinds of a mask, sorted by name, comma-separated ("" for none). buf: at least
 * RECORD_FINDINGS_TEXT_MAX bytes. */
#define RECORD_FINDINGS_TEXT_MAX 128
void record_findings_text(unsigned findings, char *buf, size_t size);

/* RFC 3339 UTC with an optional fraction and Z, as finding_to_json writes it, to µs. */
int record_parse_time(const char *s, uint64_t *ret);
