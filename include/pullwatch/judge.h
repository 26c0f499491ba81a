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
#include "pullwatch/log.h"
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

/* All borrowed but the skip counters. ledger may be NULL (every finding is new then). */
typedef struct Judge {
        const Config *config; /* node, reminder_interval_usec */
        const Policy *policy;
        const Pins *pins;
        Ledger *ledger;
        Attribution *attribution;
        bool remember;
        JudgeOutput out;
        /* image records skipped (bad reference, field too long, lookup failed): said once
         * per listing (judge_listing_done) and once per window for events */
        LogSkips listing_skips, event_skips;
} Judge;

/* One image record or container skipped before it could be judged: counted, said in one
 * line per listing or per window of events (a hostile containerd's 65,536 bad records are
 * one line). */
void judge_skip(Judge *jd, bool from_listing, const char *fmt, ...) _printf_(3, 4);
/* A listing is over: say what it skipped, in one line. */
void judge_listing_done(Judge *jd);
/* Say everything counted and not said yet (listing and events): at exit. */
void judge_skips_flush(Judge *jd);

/* An image record (o->workload empty) or a container (o->workload names it). */
void judge_image(Judge *jd, const Observation *o, bool from_listing);
void judge_container(Judge *jd, const Observation *o);
