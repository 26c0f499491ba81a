/* The job queue: every image record (from an event or a listing) and every container
 * event becomes a job. Up to JOBS_IN_FLIGHT_MAX jobs do their lookups at once
 * (Images.Get, Containers.Get, the image config through the Content service, cached by
 * digest), pipelined on the one connection to containerd, but jobs are handed back
 * strictly in the order they were added: the CRI plugin's tag record is judged before
 * its repo-digest twin, and a tag_moved compares against the digest seen just before.
 * At most JOBS_QUEUED_MAX jobs wait; beyond, adding one fails with -ENOBUFS. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pullwatch/containerd.h"
#include "pullwatch/facts.h"
#include "pullwatch/observation.h"

#define JOBS_IN_FLIGHT_MAX 64
/* A listing's jobs, whose blob reads go to the resolve worker (memory, not calls to
 * containerd, unless a blob must come through Content.Read): twice as many at once keep
 * the readers and the judging loop from waiting on each other (a fresh reconcile of
 * 10,000 images 232 -> 214 ms at load 0.3; 256 measured the same as 128). */
#define JOBS_LISTING_IN_FLIGHT_MAX 128
#define JOBS_QUEUED_MAX 100000
#define JOBS_RESOLVE_CACHE_MAX 256 /* digest → config facts, content-addressed */

typedef enum JobType {
        JOB_IMAGE,     /* an image record: from an event (needs Images.Get) or a listing */
        JOB_CONTAINER, /* a container created/started: findings name its workload */
} JobType;

/* A finished job, borrowed for the callback. */
typedef struct JobOutcome {
        JobType type;
        bool from_listing;
        uint64_t generation; /* as given to jobs_set_generation() when the job was added */
        int error;           /* < 0: a lookup failed (reason says why); nothing to judge */
        const char *reason;
        const char *ns, *name; /* the image record's name, or the container id */
        /* what to judge; NULL with error == 0 when a field does not fit an Observation */
        const Observation *observation;
} JobOutcome;

typedef struct JobsCallbacks {
        /* each job in the order added; a sandbox (pause) container is not handed back */
        void (*done)(const JobOutcome *o, void *userdata);
        /* a container job learned the digest its image resolves to (all borrowed) */
        void (*container_image)(const char *ns, const char *id, const char *image, const char *digest,
                                const FindingWorkload *w, void *userdata);
        /* after every run of done() calls: the queue may be empty now */
        void (*drained)(void *userdata);
} JobsCallbacks;

typedef struct Jobs Jobs;

/* ctrd borrowed, must outlive the queue. *ret owned, freed with jobs_free() (accepts
 * NULL; drops waiting jobs without calling back). */
int jobs_new(Jobs **ret, Ctrd *ctrd, const JobsCallbacks *cb, void *userdata);
Jobs *jobs_free(Jobs *q);

/* The facts file behind the in-memory config cache (borrowed, must outlive the queue;
 * NULL: none): looked up before reading an image's blobs, told what a read found. */
void jobs_set_facts(Jobs *q, Facts *facts);

/* Unmap the in-memory config cache (170 KiB once a listing of distinct digests has
 * filled it, resident for good otherwise); the next look-up maps it again. For the end
 * of a listing, not after every event. */
void jobs_release_cache(Jobs *q);

/* The connection generation stamped on jobs added from now on. */
void jobs_set_generation(Jobs *q, uint64_t generation);

/* An image record. From a listing, digest and media_type are known (no Images.Get);
 * from an event they are NULL. -ENOBUFS when JOBS_QUEUED_MAX wait, -ENOMEM. */
int jobs_add_image(Jobs *q, const char *ns, const char *name, const char *digest, const char *media_type,
                   uint64_t time_usec);
int jobs_add_container(Jobs *q, const char *ns, const char *id, uint64_t time_usec);

/* Image events' look-ups, batched: the event jobs of one read of containerd's socket
 * (and those that come while a batch is under way) are asked for together: one
 * Images.Get each, all in one send(), or (use_list) one Images.List naming each
 * (ctrd_images_get_many()); JOBS_IN_FLIGHT_MAX / 2 at most, one batch at a time. An
 * event within delay_usec of the previous one (a burst) makes its batch wait for more
 * until delay_usec after the batch's first event; 0: no waiting. e borrowed, must outlive
 * the queue; the queue takes ctrd's after-read hook (ctrd_set_after_read()). Without this
 * call each event's job asks at once. Listings and containers are not batched. -EINVAL,
 * or sd-event's error. */
int jobs_set_lookup_batching(Jobs *q, sd_event *e, uint64_t delay_usec, bool use_list);

/* Image look-up calls so far: Images.Get (events and containers) and Images.List; the
 * batches of two or more events and the events in them; the Lists containerd refused
 * (each of their names then asked with Images.Get). */
typedef struct JobsLookupStats {
        uint64_t gets, lists, batches, batched, lists_failed;
        uint64_t waits; /* batches held past the read that brought their events (a burst) */
} JobsLookupStats;
void jobs_get_lookup_stats(const Jobs *q, JobsLookupStats *ret);

/* Jobs waiting or running; of them, image records added from a listing. */
size_t jobs_queued(const Jobs *q);
size_t jobs_listing(const Jobs *q);
