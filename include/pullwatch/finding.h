/* The finding model: one plain, fixed-size struct per record (a `pull`) or finding,
 * and its pure encodings to JSON and to journald fields.
 *
 * Every string field is bounded; producers copy with strcpy_bounded() and treat
 * -ENAMETOOLONG as bad input. A Finding owns no heap memory: copy it by value. */
#pragma once

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#define PW_SCHEMA_VERSION 1

#define PW_REF_MAX 512      /* a whole reference, name:tag@digest, with NUL */
#define PW_NAME_MAX 384     /* domain/path, containerd 1.6 allows 255 for the whole name */
#define PW_TAG_MAX 129      /* 128 + NUL, the grammar's limit */
#define PW_DIGEST_MAX 136   /* "sha512:" + 128 hex + NUL */
#define PW_NS_MAX 77        /* containerd namespace: 76 + NUL */
#define PW_K8S_NAME_MAX 254 /* DNS subdomain 253 + NUL */
#define PW_NODE_MAX 254
#define PW_REVISION_MAX 256
#define PW_MEDIA_TYPE_MAX 128
#define PW_ID_MAX 33 /* 128-bit id as 32 lowercase hex + NUL */
#define PW_MESSAGE_MAX 768
#define PW_CONTAINER_ID_MAX 129

typedef enum FindingKind {
        FINDING_PULL,              /* not a finding: the plain record of a pull */
        FINDING_LATEST_TAG,        /* explicit or implicit :latest */
        FINDING_MUTABLE_TAG,       /* a tag the policy treats as mutable */
        FINDING_TAG_MOVED,         /* a reference seen at digest A now resolves to B */
        FINDING_DIGEST_MISMATCH,   /* the pulled digest is not the pinned one */
        FINDING_REVISION_MISMATCH, /* commit-SHA tag disagrees with the revision label */
        FINDING_UNTRACEABLE,       /* no org.opencontainers.image.revision label */
        _FINDING_KIND_MAX,
        _FINDING_KIND_INVALID = -EINVAL,
} FindingKind;

typedef enum Severity {
        SEVERITY_INFO,
        SEVERITY_LOW,
        SEVERITY_MEDIUM,
        SEVERITY_HIGH,
        SEVERITY_CRITICAL,
        _SEVERITY_MAX,
        _SEVERITY_INVALID = -EINVAL,
} Severity;

typedef struct FindingImage {
        char ref[PW_REF_MAX];             /* normalised reference as containerd stores it */
        char name[PW_NAME_MAX];           /* domain/path */
        char tag[PW_TAG_MAX];             /* "" when pulled by digest only */
        bool tag_implicit;                /* the stored name had no tag: latest implied */
        char digest[PW_DIGEST_MAX];       /* target digest actually pulled */
        char previous_digest[PW_DIGEST_MAX];
        char expected_digest[PW_DIGEST_MAX];
        char revision[PW_REVISION_MAX];   /* org.opencontainers.image.revision, if known */
        char media_type[PW_MEDIA_TYPE_MAX];
} FindingImage;

typedef struct FindingWorkload {
        char namespace[PW_K8S_NAME_MAX]; /* io.kubernetes.pod.namespace */
        char pod[PW_K8S_NAME_MAX];       /* io.kubernetes.pod.name */
        char container[PW_K8S_NAME_MAX]; /* io.kubernetes.container.name, or the containerd id */
        char container_id[PW_CONTAINER_ID_MAX];
} FindingWorkload;

typedef struct Finding {
        char id[PW_ID_MAX]; /* stable unique id, assigned once when the record is made */
        FindingKind kind;
        Severity severity;
        uint64_t time_usec; /* CLOCK_REALTIME, µs */
        char node[PW_NODE_MAX];
        char namespace[PW_NS_MAX]; /* containerd namespace */
        FindingImage image;
        FindingWorkload workload; /* empty strings when not known */
        char message[PW_MESSAGE_MAX];
        /* the pull published no event (containerd 1.7's Transfer service, #9725): found when a
         * container started on it, so `time` is that moment, not the pull's. JSON "found":
         * "container_start", journald PULLWATCH_FOUND=container_start. */
        bool found_at_start;
} Finding;

#define FINDING_KIND_BIT(k) (1U << (unsigned) (k))
/* The one definition of "compliant", for the inventory and `pullwatch report` alike:
 * an image is compliant when no finding of any kind applies to it (kinds_mask: an OR of
 * FINDING_KIND_BIT()s); a `pull` is a record, never a reason. */
bool finding_kinds_compliant(unsigned kinds_mask);

const char *finding_kind_to_string(FindingKind k);   /* static string, NULL if out of range */
FindingKind finding_kind_from_string(const char *s); /* _FINDING_KIND_INVALID if unknown */
const char *severity_to_string(Severity s);
Severity severity_from_string(const char *s);
/* journald MESSAGE_ID of the kind: 32 lowercase hex, static; see packaging/pullwatch.catalog */
const char *finding_message_id(FindingKind k);
/* syslog priority: 6 (info) for pull records, 4 (warning) for findings */
int finding_priority(const Finding *f);

/* A record id derived from key (128 bits of two independent 64-bit hashes, as 32 hex):
 * the same record raised again after a crash (before the ledger was saved) gets the
 * same id, so a receiver that de-duplicates on `id` drops the copy. ret: PW_ID_MAX. */
void finding_id_from_key(const char *key, char ret[PW_ID_MAX]);

/* Fill f->message with the default one-line human text for its kind. */
void finding_format_message(Finding *f);

/* Encode as the finding JSON (schema in README). *ret is a new reference. */
int finding_to_json(const Finding *f, json_t **ret);
/* Compact single-line JSON; *ret is malloc()ed and owned by the caller. */
int finding_to_json_string(const Finding *f, char **ret);

/* journald encoding: a bounded set of FIELD=value iovecs pointing into buf. */
#define PW_JOURNAL_FIELDS_MAX 24
typedef struct JournalFields {
        struct iovec iov[PW_JOURNAL_FIELDS_MAX];
        size_t n;
        char buf[8192];
        size_t used;
} JournalFields;
int finding_to_journal(const Finding *f, JournalFields *ret);
