/* See include/pullwatch/jobs.h. */
#include "pullwatch/jobs.h"

#include <sys/mman.h>
#include <sys/param.h>
#include <systemd/sd-event.h>

#include "pullwatch/facts.h"
#include "pullwatch/log.h"
#include "pullwatch/util.h"

typedef enum JobState { JOB_QUEUED, JOB_RUNNING, JOB_DONE } JobState;

/* The cache is one block mapped at the first entry (mmap, off the malloc heap) and filled
 * in order: its pages become resident only as the node's images need them. Allocated
 * entry by entry in the middle of a listing, the entries landed on heap pages among the
 * listing's freed buffers and pinned them as private dirty memory (64 entries on 49
 * pages); a malloc()ed block reused pages the listing had already dirtied (42 pages
 * resident for one entry in use). */
typedef struct ResolveEntry {
        uint64_t key;               /* digest_key(digest): most misses end here, not in strcmp() */
        char digest[PW_DIGEST_MAX]; /* target */
        FactsEntry facts;           /* what resolving it found, as the facts file keeps it */
} ResolveEntry;

#define RESOLVE_CACHE_BYTES (JOBS_RESOLVE_CACHE_MAX * sizeof(ResolveEntry))

typedef struct Job Job;

/* Names of image events waiting for their look-up, answered by one call. At most half
 * the jobs in flight: the next batch gathers while one is answered. */
#define LOOKUP_BATCH_MAX (JOBS_IN_FLIGHT_MAX / 2)

/* Compact: a listing of thousands of images queues thousands of jobs at once, so a job
 * holds its strings at their length; the (large, fixed-size) Observation is built on the
 * stack only when the job is handed back. Every pointer is owned by the job (job_free). */
struct Job {
        Job *next;
        Jobs *queue;
        JobType type;
        JobState state;
        uint64_t generation;
        uint64_t time_usec;   /* event time, or when listed */
        bool from_listing;
        bool have_target;     /* digest/media_type known (listing, or after Images.Get) */
        bool skip;            /* nothing to judge (a sandbox container) */
        int error;            /* <0: lookups failed */
        char *reason;         /* why, when error < 0 */
        char *ns;
        char *image;          /* image record name */
        char *container_id;   /* container jobs */
        char *digest, *media_type;
        FindingWorkload *workload; /* container jobs, once Containers.Get answered */
        FactsEntry *config;        /* copy of the resolved config facts, once known */
};

struct Jobs {
        Ctrd *ctrd;
        JobsCallbacks cb;
        void *userdata;
        uint64_t generation;
        Job *head, *tail, *next_to_start;
        size_t queued, running, listing;
        bool pumping;
        ResolveEntry *resolve_cache; /* owned: room for JOBS_RESOLVE_CACHE_MAX, n_resolve used */
        Facts *facts;                /* borrowed, or NULL: the facts file behind the cache */
        size_t n_resolve, resolve_next;

        /* image events' look-ups (jobs_set_lookup_delay()); off while event is NULL */
        sd_event *event;                    /* borrowed */
        sd_event_source *batch_timer;       /* owned: a delay > 0 */
        sd_event_source *batch_defer;       /* owned: delay 0, the loop's next turn */
        uint64_t batch_delay_usec;
        Job *batch[LOOKUP_BATCH_MAX];       /* waiting, in the order added (the FIFO owns them) */
        size_t n_batch;
        uint64_t batch_first_usec, batch_deadline_usec; /* CLOCK_MONOTONIC */
        bool batch_held;                    /* the batch waits past the read that brought it */
        uint64_t last_event_usec;           /* the previous image event's job (CLOCK_MONOTONIC) */
        Job *flight[LOOKUP_BATCH_MAX];      /* the batch whose look-up is under way */
        size_t n_flight;
        bool batch_busy;                    /* a batch's look-up is under way */
        size_t gets_pending;                /* a batch's Images.Get not answered yet */
        bool batch_list;                    /* a batch asks with one Images.List */
        JobsLookupStats stats;
};

static void job_pump(Jobs *q);

static int dup_str(char **dst, const char *src) {
        char *n = strdup(src ? src : "");
        if (!n)
                return -ENOMEM;
        free(*dst);
        *dst = n;
        return 0;
}

static void job_free(Job *j) {
        if (!j)
                return;
        free(j->reason);
        free(j->ns);
        free(j->image);
        free(j->container_id);
        free(j->digest);
        free(j->media_type);
        free(j->workload);
        free(j->config);
        free(j);
}

int jobs_new(Jobs **ret, Ctrd *ctrd, const JobsCallbacks *cb, void *userdata) {
        if (!ret || !ctrd || !cb || !cb->done)
                return -EINVAL;
        Jobs *q = calloc(1, sizeof *q);
        if (!q)
                return -ENOMEM;
        q->ctrd = ctrd;
        q->cb = *cb;
        q->userdata = userdata;
        *ret = q;
        return 0;
}

Jobs *jobs_free(Jobs *q) {
        if (!q)
                return NULL;
        while (q->head) {
                Job *j = q->head;
                q->head = j->next;
                job_free(j);
        }
        if (q->resolve_cache)
                munmap(q->resolve_cache, RESOLVE_CACHE_BYTES);
        if (q->event)
                ctrd_set_after_read(q->ctrd, NULL, NULL);
        sd_event_source_disable_unref(q->batch_timer);
        sd_event_source_disable_unref(q->batch_defer);
        free(q);
        return NULL;
}

void jobs_release_cache(Jobs *q) {
        ctrd_resolve_worker_release(q->ctrd);
        if (q->resolve_cache)
                munmap(q->resolve_cache, RESOLVE_CACHE_BYTES);
        q->resolve_cache = NULL;
        q->n_resolve = q->resolve_next = 0;
}

void jobs_set_facts(Jobs *q, Facts *facts) {
        q->facts = facts;
}

void jobs_set_generation(Jobs *q, uint64_t generation) {
        q->generation = generation;
}

size_t jobs_queued(const Jobs *q) {
        return q->queued;
}

size_t jobs_listing(const Jobs *q) {
        return q->listing;
}

/* The Observation the ledger and the policy judge. Strings come from containerd's
 * replies, already bounded by the client to the sizes below. */
static int job_observation(const Job *j, Observation *o) {
        *o = (Observation){.time_usec = j->time_usec};
        int r = 0;
        r |= strcpy_bounded(o->namespace, sizeof o->namespace, j->ns);
        r |= strcpy_bounded(o->ref, sizeof o->ref, j->image);
        r |= strcpy_bounded(o->digest, sizeof o->digest, j->digest);
        r |= strcpy_bounded(o->media_type, sizeof o->media_type, j->media_type);
        if (j->workload)
                o->workload = *j->workload;
        if (j->config) {
                o->config_known = true;
                r |= strcpy_bounded(o->platform_digest, sizeof o->platform_digest, j->config->platform_digest);
                r |= strcpy_bounded(o->config_digest, sizeof o->config_digest, j->config->config_digest);
                o->has_revision = j->config->has_revision;
                r |= strcpy_bounded(o->revision, sizeof o->revision, j->config->revision);
        }
        return r < 0 ? -ENAMETOOLONG : 0;
}

static void job_hand_back(Jobs *q, Job *j) {
        Observation obs;
        JobOutcome o = {
                .type = j->type,
                .from_listing = j->from_listing,
                .generation = j->generation,
                .error = j->error,
                .reason = j->reason,
                .ns = j->ns,
                .name = j->type == JOB_IMAGE ? j->image : j->container_id,
        };
        if (o.error >= 0 && job_observation(j, &obs) >= 0)
                o.observation = &obs;
        q->cb.done(&o, q->userdata);
}

/* Hand finished jobs back from the head of the FIFO, in order. */
static void job_drain(Jobs *q) {
        while (q->head && q->head->state == JOB_DONE) {
                Job *j = q->head;
                q->head = j->next;
                if (!q->head)
                        q->tail = NULL;
                q->queued--;
                if (j->from_listing)
                        q->listing--;
                if (!j->skip)
                        job_hand_back(q, j);
                job_free(j);
        }
        if (q->cb.drained)
                q->cb.drained(q->userdata);
}

static void job_finish(Job *j, int error, const char *reason) {
        Jobs *q = j->queue;
        j->state = JOB_DONE;
        j->error = error;
        if (error < 0 && dup_str(&j->reason, reason ? reason : strerror(-error)) < 0)
                j->reason = NULL;
        q->running--;
        job_drain(q);
        job_pump(q);
}

/* ---- image config, cached by digest */

/* Eight bytes of the digest past its algorithm (hex: distinct from the first for
 * distinct digests, as good as a hash), for a listing of thousands looked up against 256
 * entries each. */
static uint64_t digest_key(const char *digest) {
        const char *colon = digest ? strchr(digest, ':') : NULL;
        const char *p = colon ? colon + 1 : digest ? digest : "";
        uint64_t k = 0;
        size_t n = strnlen(p, sizeof k);
        memcpy(&k, p, n);
        return k;
}

static ResolveEntry *resolve_lookup(Jobs *q, const char *digest) {
        uint64_t key = digest_key(digest);
        for (size_t i = 0; i < q->n_resolve; i++)
                if (q->resolve_cache[i].key == key && streq_ptr(q->resolve_cache[i].digest, digest))
                        return &q->resolve_cache[i];
        return NULL;
}

static const ResolveEntry *resolve_store(Jobs *q, const char *digest, const FactsEntry *facts) {
        if (!q->resolve_cache) {
                void *m = mmap(NULL, RESOLVE_CACHE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (m == MAP_FAILED)
                        return NULL;
                q->resolve_cache = m;
        }
        ResolveEntry *e = &q->resolve_cache[q->resolve_next];
        if (q->resolve_next == q->n_resolve)
                q->n_resolve++;
        q->resolve_next = (q->resolve_next + 1) % JOBS_RESOLVE_CACHE_MAX;
        strcpy_bounded(e->digest, sizeof e->digest, digest);
        e->key = digest_key(e->digest);
        e->facts = *facts;
        return e;
}

static void apply_config(Job *j, const ResolveEntry *e) {
        if (!j->config)
                j->config = malloc(sizeof *j->config);
        if (j->config)
                *j->config = e->facts; /* without it the job is judged without the revision checks */
}

static void on_resolved(Ctrd *c, int error, const char *reason, const CtrdImageConfig *cfg, void *userdata) {
        Job *j = userdata;
        /* on error the image is still judged on its tag and digest; only the revision
         * checks need the config */
        if (error < 0)
                log_debug("cannot read the config of %s (%s): %s", j->image, j->digest, reason);
        else {
                FactsEntry fe = {.has_revision = cfg->has_revision};
                strcpy_bounded(fe.platform_digest, sizeof fe.platform_digest, cfg->platform_digest);
                strcpy_bounded(fe.config_digest, sizeof fe.config_digest, cfg->config_digest);
                strcpy_bounded(fe.revision, sizeof fe.revision, cfg->revision);
                const ResolveEntry *e = resolve_store(j->queue, j->digest, &fe);
                if (e) {
                        apply_config(j, e);
                        /* not kept (a digest not sha256, out of memory): read again next time */
                        (void) facts_add(j->queue->facts, j->digest, &fe);
                }
        }
        job_finish(j, 0, NULL);
}

static void job_resolve(Job *j) {
        ResolveEntry *e = resolve_lookup(j->queue, j->digest);
        if (e) {
                apply_config(j, e);
                job_finish(j, 0, NULL);
                return;
        }
        FactsEntry fe;
        if (facts_lookup(j->queue->facts, j->digest, &fe) >= 0) {
                e = (ResolveEntry *) resolve_store(j->queue, j->digest, &fe);
                if (e) {
                        apply_config(j, e);
                        job_finish(j, 0, NULL);
                        return;
                }
        }
        /* a listing's look-ups on the worker (the loop judges meanwhile); an event's on the
         * loop, at once: no thread hand-off in its latency */
        int r = j->from_listing ? ctrd_image_resolve_async(j->queue->ctrd, j->ns, j->digest, j->media_type, on_resolved, j) :
                                  ctrd_image_resolve(j->queue->ctrd, j->ns, j->digest, j->media_type, on_resolved, j);
        if (r < 0)
                job_finish(j, 0, NULL);
}

/* ---- lookups */

/* What the job's image record names: its target, and the name as containerd has it. */
static void job_got_target(Job *j, const char *name, const char *digest, const char *media_type) {
        Jobs *q = j->queue;
        if (dup_str(&j->digest, digest) < 0 || dup_str(&j->media_type, media_type) < 0 ||
            dup_str(&j->image, name) < 0) {
                job_finish(j, -ENOMEM, NULL);
                return;
        }
        j->have_target = true;
        if (j->type == JOB_CONTAINER && j->workload && q->cb.container_image)
                q->cb.container_image(j->ns, j->container_id, j->image, j->digest, j->workload, q->userdata);
        job_resolve(j);
}

/* An Images.Get's answer for the job. */
static void job_got_image(Job *j, int error, const char *reason, const CtrdImage *img) {
        if (error < 0)
                job_finish(j, error, reason);
        else
                job_got_target(j, img->name, img->target_digest, img->target_media_type);
}

static void on_image_got(Ctrd *c, int error, const char *reason, const CtrdImage *img, void *userdata) {
        job_got_image(userdata, error, reason, img);
}

static void image_get(Job *j) {
        j->queue->stats.gets++;
        int r = ctrd_image_get(j->queue->ctrd, j->ns, j->image, on_image_got, j);
        if (r < 0)
                job_finish(j, r, "cannot start Images.Get");
}

/* ---- image events' look-ups, batched
 *
 * An image event carries no digest: the job asks containerd for the record. Asked one by
 * one, each event woke the agent twice (the event, then the reply). Instead the event's
 * job waits in a batch, and the batch is asked for at once: one Images.Get per name, all
 * in one send() (their replies come back together, read in one wake-up), or one
 * Images.List naming each (use_list; it costs containerd a read of every image record of
 * the namespace). A batch goes at the end of the read that brought its events; but an
 * event that follows the previous one within `delay` (a burst is on) makes it wait for
 * more until `delay` after the batch's first event; a full batch goes at once. A lone
 * event never waits: its timer would be a wake-up of its own, saving none. While a
 * batch is under way the next one gathers. Jobs still finish strictly in their order,
 * each with its own event's time. */

static void batch_done(Jobs *q);

static void batch_arm(Jobs *q) {
        bool now = q->batch_deadline_usec <= now_usec_monotonic();
        (void) sd_event_source_set_enabled(q->batch_defer, now ? SD_EVENT_ONESHOT : SD_EVENT_OFF);
        if (!now) {
                (void) sd_event_source_set_time(q->batch_timer, q->batch_deadline_usec);
                (void) sd_event_source_set_enabled(q->batch_timer, SD_EVENT_ONESHOT);
        } else
                (void) sd_event_source_set_enabled(q->batch_timer, SD_EVENT_OFF);
}

static void batch_disarm(Jobs *q) {
        (void) sd_event_source_set_enabled(q->batch_defer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(q->batch_timer, SD_EVENT_OFF);
}

/* The batch under way's jobs moved to jobs[] (finishing a job may start others, which
 * join the next batch: not q->flight); their number. */
static size_t flight_take(Jobs *q, Job *jobs[static LOOKUP_BATCH_MAX]) {
        size_t n = q->n_flight;
        memcpy(jobs, q->flight, n * sizeof *jobs);
        q->n_flight = 0;
        return n;
}

static void on_batch_got(Ctrd *c, int error, const char *reason, const CtrdImage *img, void *userdata) {
        Jobs *q = userdata;
        Job *j = q->flight[0];
        q->n_flight = 0;
        job_got_image(j, error, reason, img);
        batch_done(q);
}

static void on_batch_member_got(Ctrd *c, int error, const char *reason, const CtrdImage *img, void *userdata) {
        Job *j = userdata;
        Jobs *q = j->queue;
        job_got_image(j, error, reason, img);
        if (--q->gets_pending == 0)
                batch_done(q);
}

static void on_batch_listed(Ctrd *c, int error, const char *reason, const char *ns, const CtrdImageEntry *imgs,
                            size_t n, void *userdata) {
        Jobs *q = userdata;
        Job *jobs[LOOKUP_BATCH_MAX];
        size_t n_jobs = flight_take(q, jobs);
        if (error < 0) {
                q->stats.lists_failed++;
                log_debug("%s; asking for each name on its own", reason);
        }
        for (size_t i = 0; i < n_jobs; i++) {
                Job *j = jobs[i];
                if (error < 0) {
                        /* containerd refused the List (a name it cannot parse, an old
                         * version): each name asked on its own, as before batching */
                        image_get(j);
                        continue;
                }
                const CtrdImageEntry *e = NULL;
                for (size_t k = 0; !e && k < n; k++)
                        if (streq_ptr(imgs[k].name, j->image))
                                e = &imgs[k];
                if (e)
                        job_got_target(j, e->name, e->target_digest, e->target_media_type);
                else /* deleted before the look-up: as Images.Get's NOT_FOUND */
                        job_finish(j, -ENOENT, "image not found");
        }
        batch_done(q);
}

static void batch_fire(Jobs *q) {
        const char *names[LOOKUP_BATCH_MAX];
        size_t n = 0;
        batch_disarm(q);
        memcpy(q->flight, q->batch, q->n_batch * sizeof *q->batch);
        q->n_flight = q->n_batch;
        q->n_batch = 0;
        if (q->batch_held)
                q->stats.waits++;
        q->batch_held = false;
        const char *ns = q->flight[0]->ns;
        int r;
        if (q->n_flight > 1) {
                q->stats.batches++;
                q->stats.batched += q->n_flight;
        }
        if (q->n_flight > 1 && !q->batch_list) {
                /* each job its own Images.Get, all in this turn's send(): their replies
                 * come back together, read in one wake-up (a name moved twice in the
                 * batch is asked twice: both answers are where it points now) */
                Job *jobs[LOOKUP_BATCH_MAX];
                size_t n_jobs = flight_take(q, jobs);
                q->batch_busy = true;
                q->gets_pending = n_jobs;
                for (size_t i = 0; i < n_jobs; i++) {
                        q->stats.gets++;
                        r = ctrd_image_get(q->ctrd, ns, jobs[i]->image, on_batch_member_got, jobs[i]);
                        if (r < 0) {
                                job_finish(jobs[i], r, "cannot start Images.Get");
                                if (--q->gets_pending == 0)
                                        batch_done(q);
                        }
                }
                return;
        }
        if (q->n_flight == 1) {
                q->stats.gets++;
                r = ctrd_image_get(q->ctrd, ns, q->flight[0]->image, on_batch_got, q);
        } else {
                for (size_t i = 0; i < q->n_flight; i++) {
                        bool seen = false; /* a name moved twice in the batch is asked once */
                        for (size_t k = 0; !seen && k < n; k++)
                                seen = streq_ptr(names[k], q->flight[i]->image);
                        if (!seen)
                                names[n++] = q->flight[i]->image;
                }
                q->stats.lists++;
                r = ctrd_images_get_many(q->ctrd, ns, names, n, on_batch_listed, q);
        }
        if (r >= 0) {
                q->batch_busy = true;
                return;
        }
        Job *jobs[LOOKUP_BATCH_MAX];
        size_t n_jobs = flight_take(q, jobs);
        for (size_t i = 0; i < n_jobs; i++)
                job_finish(jobs[i], r, n_jobs == 1 ? "cannot start Images.Get" : "cannot start Images.List");
}

/* Go now if due (or full) and no batch is under way; else wait for the deadline. */
static void batch_consider(Jobs *q) {
        if (q->n_batch == 0 || q->batch_busy)
                return;
        if (q->n_batch >= LOOKUP_BATCH_MAX || now_usec_monotonic() >= q->batch_deadline_usec)
                batch_fire(q);
        else
                batch_arm(q);
}

static void batch_done(Jobs *q) {
        q->batch_busy = false;
        batch_consider(q);
}

static int on_batch_due(Jobs *q) {
        if (q->n_batch > 0 && !q->batch_busy)
                batch_fire(q);
        return 0;
}
static int on_batch_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        return on_batch_due(userdata);
}
static int on_batch_defer(sd_event_source *s, void *userdata) {
        return on_batch_due(userdata);
}
/* A batch due now goes at the end of the read that brought its events, in the same loop
 * turn and send() (the defer source catches jobs started elsewhere). */
static void on_after_read(void *userdata) {
        Jobs *q = userdata;
        if (q->n_batch > 0 && !q->batch_busy && q->batch_deadline_usec <= now_usec_monotonic())
                batch_fire(q);
}

/* An image event's job: into the batch. False when it must look up on its own: another
 * namespace than the batch's, or the batch full while the previous one is under way. */
static bool batch_add(Jobs *q, Job *j) {
        if (q->n_batch >= LOOKUP_BATCH_MAX || (q->n_batch > 0 && !streq_ptr(q->batch[0]->ns, j->ns)))
                return false;
        uint64_t now = now_usec_monotonic();
        /* only an event that follows another within the delay waits for more: waiting
         * alone would cost a wake-up of its own (the timer) and save none */
        bool burst = q->batch_delay_usec > 0 && now - q->last_event_usec < q->batch_delay_usec;
        q->last_event_usec = now;
        if (q->n_batch == 0) {
                /* the batch's clock starts when containerd published its first event, not
                 * when the event reached us: one that waited already (a loaded machine, a
                 * busy loop, a stalled containerd) waits only what is left of the delay,
                 * and none once older than it — what batching adds to an event's latency
                 * stays within the delay instead of adding to a delay it had anyway */
                uint64_t real = now_usec_realtime();
                uint64_t age = j->time_usec > 0 && real > j->time_usec ? real - j->time_usec : 0;
                age = MIN(age, q->batch_delay_usec);
                q->batch_first_usec = now > age ? now - age : 0;
                q->batch_deadline_usec = UINT64_MAX;
        }
        q->batch[q->n_batch++] = j;
        /* the end of this read; in a burst, `delay` after the batch's first event (waiting
         * `delay` after each event instead, while they keep coming, took the median
         * latency of a burst to 3 times the delay for no less CPU) */
        uint64_t due = burst ? MAX(q->batch_first_usec + q->batch_delay_usec, now) : now;
        if (q->n_batch == 1 || due > q->batch_deadline_usec)
                q->batch_deadline_usec = due;
        if (due > now)
                q->batch_held = true;
        if (q->n_batch >= LOOKUP_BATCH_MAX)
                batch_consider(q);
        else if (!q->batch_busy)
                batch_arm(q); /* not at once: the rest of this read may join */
        return true;
}

int jobs_set_lookup_batching(Jobs *q, sd_event *e, uint64_t delay_usec, bool use_list) {
        if (!q || !e)
                return -EINVAL;
        if (!q->batch_defer) {
                int r = sd_event_add_defer(e, &q->batch_defer, on_batch_defer, q);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_enabled(q->batch_defer, SD_EVENT_OFF);
                r = sd_event_add_time(e, &q->batch_timer, CLOCK_MONOTONIC, UINT64_MAX, 1, on_batch_timer, q);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_enabled(q->batch_timer, SD_EVENT_OFF);
        }
        q->event = e;
        q->batch_delay_usec = delay_usec;
        q->batch_list = use_list;
        ctrd_set_after_read(q->ctrd, on_after_read, q);
        return 0;
}

void jobs_get_lookup_stats(const Jobs *q, JobsLookupStats *ret) {
        *ret = q->stats;
}

static void on_container_got(Ctrd *c, int error, const char *reason, const CtrdContainer *ct, void *userdata) {
        Job *j = userdata;
        if (error < 0) {
                job_finish(j, error, reason);
                return;
        }
        if (isempty(ct->image)) {
                job_finish(j, -ENOENT, "container has no image");
                return;
        }
        if (ct->is_sandbox) {
                /* the pod's pause container: infrastructure, not the workload; its image's
                 * pull was judged like any other, but no finding names a pod for it */
                j->skip = true;
                job_finish(j, 0, NULL);
                return;
        }
        if (dup_str(&j->image, ct->image) < 0 || !(j->workload = malloc(sizeof *j->workload))) {
                job_finish(j, -ENOMEM, NULL);
                return;
        }
        *j->workload = ct->workload;
        strcpy_bounded(j->workload->container_id, sizeof j->workload->container_id, ct->id);
        image_get(j); /* at once: a container's start is not batched (its job waits on Containers.Get already) */
}

static void job_start(Job *j) {
        Jobs *q = j->queue;
        int r;
        j->state = JOB_RUNNING;
        q->running++;
        if (j->type == JOB_CONTAINER)
                r = ctrd_container_get(q->ctrd, j->ns, j->container_id, on_container_got, j);
        else if (j->have_target) {
                job_resolve(j);
                return;
        } else {
                if (!q->event || !batch_add(q, j))
                        image_get(j);
                return;
        }
        if (r < 0)
                job_finish(j, r, strerror(-r));
}

static void job_pump(Jobs *q) {
        /* A job can finish synchronously (config cached) and ask to pump again: only the
         * outermost call loops, or a listing of thousands would recurse thousands deep. */
        if (q->pumping)
                return;
        q->pumping = true;
        while (q->next_to_start &&
               q->running < (q->next_to_start->from_listing ? JOBS_LISTING_IN_FLIGHT_MAX : JOBS_IN_FLIGHT_MAX)) {
                Job *j = q->next_to_start;
                q->next_to_start = j->next;
                job_start(j); /* may finish synchronously and drain */
        }
        q->pumping = false;
}

/* name: the image record's name (JOB_IMAGE) or the container id (JOB_CONTAINER). */
static int job_add(Jobs *q, JobType type, const char *ns, const char *name, const char *digest,
                   const char *media_type, uint64_t time_usec) {
        if (q->queued >= JOBS_QUEUED_MAX)
                return -ENOBUFS;
        Job *j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        j->queue = q;
        j->type = type;
        j->generation = q->generation;
        j->time_usec = time_usec;
        if (dup_str(&j->ns, ns) < 0 || dup_str(type == JOB_IMAGE ? &j->image : &j->container_id, name) < 0 ||
            (digest && (dup_str(&j->digest, digest) < 0 || dup_str(&j->media_type, media_type) < 0))) {
                job_free(j);
                return -ENOMEM;
        }
        if (digest) {
                j->have_target = true;
                j->from_listing = true;
                q->listing++;
        }
        if (q->tail)
                q->tail->next = j;
        else
                q->head = j;
        q->tail = j;
        if (!q->next_to_start)
                q->next_to_start = j;
        q->queued++;
        job_pump(q);
        return 0;
}

int jobs_add_image(Jobs *q, const char *ns, const char *name, const char *digest, const char *media_type,
                   uint64_t time_usec) {
        return job_add(q, JOB_IMAGE, ns, name, digest, media_type, time_usec);
}

int jobs_add_container(Jobs *q, const char *ns, const char *id, uint64_t time_usec) {
        return job_add(q, JOB_CONTAINER, ns, id, NULL, NULL, time_usec);
}
