/* Judging one observation: the reference grammar, the ledger (history, what was raised
 * already), the policy and the pins turn what containerd said about an image record or
 * a container into records and findings, handed to emit() with the key their stable id
 * derives from. Part of the agent (it logs what it ignores, with context).
 *
 * With remember (`pullwatch run`): a pull is one record, findings are raised on change
 * (the ledger remembers them; a workload's once per workload, digest and kind in
 * memory), a tag that moves is raised each time it moves. Without (`scan`): every
 * finding of the image as it is now, with a random id, and no pull records; the ledger,
 * when there is one, only makes tag_moved visible. */
#pragma once

#include <stdbool.h>

#include "pullwatch/attribution.h"
#include "pullwatch/config.h"
#include "pullwatch/ledger.h"
#include "pullwatch/observation.h"
#include "pullwatch/pins.h"
#include "pullwatch/policy.h"
#include "pullwatch/ref.h"

typedef struct JudgeOutput {
        /* one record or finding to emit; key NULL: a random id. f may be completed. */
        void (*emit)(Finding *f, const char *key, void *userdata);
        /* every image record judged, with its findings before de-duplication (scan rows,
         * the inventory); may be NULL */
        void (*judged)(const Observation *o, const Ref *ref, const char *name, const Finding *fs, size_t n,
                       bool from_listing, void *userdata);
        void *userdata;
} JudgeOutput;

/* All borrowed. ledger may be NULL (every finding is new then). */
typedef struct Judge {
        const Config *config; /* node, reminder_interval_usec */
        const Policy *policy;
        const Pins *pins;
        Ledger *ledger;
        Attribution *attribution;
        bool remember;
        JudgeOutput out;
} Judge;

/* An image record (o->workload empty) or a container (o->workload names it). */
void judge_image(Judge *jd, const Observation *o, bool from_listing);
void judge_container(Judge *jd, const Observation *o);
