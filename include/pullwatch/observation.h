/* What the containerd client learned about one image record (and, when known, the
 * container that runs it): the input of the ledger and the policy. Plain, fixed-size. */
#pragma once

#include "pullwatch/finding.h"

typedef struct Observation {
        char namespace[PW_NS_MAX];         /* containerd namespace */
        char ref[PW_REF_MAX];              /* image record name exactly as containerd stores it */
        char digest[PW_DIGEST_MAX];        /* Image.target.digest (index or manifest) */
        char media_type[PW_MEDIA_TYPE_MAX];/* Image.target.media_type */
        bool config_known;                 /* the config blob was read; fields below valid */
        char platform_digest[PW_DIGEST_MAX];/* manifest chosen for this platform ("" if target is a manifest) */
        char config_digest[PW_DIGEST_MAX]; /* image config digest (the CRI image id) */
        bool has_revision;                 /* org.opencontainers.image.revision present */
        char revision[PW_REVISION_MAX];
        FindingWorkload workload;          /* empty unless a container/task event named it */
        uint64_t time_usec;                /* event time (envelope timestamp) or listing time */
        bool found_at_start;               /* an image record first seen through a container start */
} Observation;
