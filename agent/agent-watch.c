/* Watching containerd: connect and subscribe (reconnecting with capped backoff), list
 * every namespace at start, after every reconnect and periodically, turn events into
 * jobs, and each finished job into a judgement; a listing's end ships the inventory
 * and, the first time, tells systemd the agent is ready. */
#include <inttypes.h>
#include <malloc.h>
#include <systemd/sd-daemon.h>

#include "agent-private.h"
#include "pullwatch/log.h"
#include "pullwatch/ref.h"
#include "pullwatch/util.h"

/* ---------------------------------------------------------------- judging and outputs */

static void on_emit(Finding *f, const char *key, void *userdata) {
        Agent *a = userdata;
        sinks_emit(a->sinks, f, key);
}

static void on_judged(const Observation *o, const Ref *ref, const char *name, const Finding *fs, size_t n,
                      bool from_listing, void *userdata) {
        Agent *a = userdata;
        if (a->scan)
                scan_report_row(a->scan, o, fs, n);
        if (from_listing && inventory_add(a->inventory, o, ref, name, fs, n) < 0)
                log_debug("cannot add %s to the inventory: out of memory", o->ref);
}

static int inventory_write(const char *json, size_t len, void *userdata) {
        Agent *a = userdata;
        return sinks_inventory_part(a->sinks, json, len);
}

/* One or more `inventory` records: the node's current images with their compliance. */
static void inventory_ship(Agent *a) {
        InventoryMeta meta = {a->config->node, a->config->cluster, now_usec_realtime()};
        size_t total = 0, compliant = 0;
        int r = inventory_finish(a->inventory, &meta, a->attribution, inventory_write, a, &total, &compliant);
        if (r == -ENOMEM)
                log_error("cannot encode the inventory, ignoring");
        sinks_inventory_done(a->sinks, r >= 0); /* all its parts, or none */
        sinks_kick(a->sinks);
        log_info("inventory: %zu image records, %zu compliant (%.1f%%)", total, compliant,
                 total ? 100.0 * (double) compliant / (double) total : 100.0);
}

static void on_job_done(const JobOutcome *o, void *userdata) {
        Agent *a = userdata;
        if (agent_ledger_ready(a) < 0)
                return;
        agent_metrics_touch(a);
        if (o->error < 0) {
                if (o->generation == a->generation && o->error != -ENOENT)
                        judge_skip(&a->judge, o->from_listing, "cannot look up %s %s in namespace %s: %s, ignoring",
                                   o->type == JOB_IMAGE ? "image" : "container", o->name, o->ns, o->reason);
        } else if (!o->observation)
                judge_skip(&a->judge, o->from_listing, "ignoring image record in namespace %s: a field is too long",
                           o->ns);
        else if (o->type == JOB_IMAGE) {
                judge_image(&a->judge, o->observation, o->from_listing);
                agent_ledger_schedule_save(a);
        } else
                judge_container(&a->judge, o->observation);
}

static void on_container_image(const char *ns, const char *id, const char *image, const char *digest,
                               const FindingWorkload *w, void *userdata) {
        Agent *a = userdata;
        (void) attribution_remember(a->attribution, ns, id, image, digest, w);
}

static void reconcile(Agent *a, bool inventory);

/* What reading the facts file found wrong (moved aside, unusable), in one line. */
static void facts_log_warning(Agent *a) {
        const char *w = facts_pop_warning(a->facts);
        if (w)
                log_warning("%s", w);
}

/* A listing was judged: what its images' blobs said goes to the facts file, and the file
 * and the jobs' config cache are unmapped until the next look-up. */
static void facts_done(Agent *a) {
        if (!a->oneshot) {
                int r = facts_save(a->facts);
                if (r < 0)
                        log_warning_errno(r, "cannot save %s/%s: %m; reading image configs again next time, ignoring",
                                          a->config->state_dir, FACTS_FILE);
        }
        facts_release(a->facts);
        jobs_release_cache(a->jobs);
        facts_log_warning(a);
}

static void notify_ready(Agent *a, bool idle) {
        if (!a->oneshot && !a->ready_notified && a->connected && idle) {
                a->ready_notified = true;
                log_info("subscribed to containerd events at %s (%zu image records listed)", a->config->address,
                         a->listed_images);
                (void) sd_notify(false, "READY=1\nSTATUS=watching containerd");
        }
}

/* After jobs were handed back or a listing call ended: is a listing, or the scan, over? */
static void check_progress(Agent *a) {
        bool idle = a->listing_pending == 0 && jobs_queued(a->jobs) == 0;
        if (a->oneshot && idle)
                sd_event_exit(a->event, 0);
        if (a->listing_active && a->listing_pending == 0 && jobs_listing(a->jobs) == 0) {
                a->listing_active = false;
                judge_listing_done(&a->judge);
                sinks_listing_done(a->sinks);
                ledger_settle(a->ledger); /* its next save moves what the listing added into the image */
                /* every image is judged: ready before the facts file is saved (a cache for the
                 * next start, 12-25 ms at 10,000 images) and the inventory encoded; what
                 * reading the file found wrong is said before */
                facts_log_warning(a);
                notify_ready(a, idle);
                facts_done(a);
                if (inventory_collecting(a->inventory))
                        inventory_ship(a);
                agent_trim_later(a); /* a listing's jobs are gone: return their memory */
                /* journald last: woken with a listing's entries (10,000 on a fresh start) it
                 * takes a core for a second, which the steps above waited for on a busy
                 * machine (the facts file's save 20-80 ms at 10,000 images) */
                sinks_hold_journal(a->sinks, false);
                if (a->catchup_deferred && a->connected) {
                        a->catchup_deferred = false;
                        reconcile(a, false);
                        a->listing_skip_known = true;
                }
        }
        notify_ready(a, idle);
}

static void on_jobs_drained(void *userdata) {
        check_progress(userdata);
}

/* A job could not be queued: count it; the next reconcile catches up. */
static void job_dropped(Agent *a, int r) {
        if (r == -ENOBUFS && a->dropped_events++ % 1000 == 0)
                log_warning("more than %d lookups queued; dropping events (%" PRIu64
                            " so far), the next reconcile will catch up",
                            JOBS_QUEUED_MAX, a->dropped_events);
}

/* ---------------------------------------------------------------- listing (reconcile) */

static bool namespace_wanted(Agent *a, const char *ns) {
        return a->config->namespaces.n == 0 || config_list_contains(&a->config->namespaces, ns);
}

/* Tagged records first, then digest-only, then image ids: so that within a listing a
 * repo-digest twin is always judged after its tag. */
static int image_rank(const CtrdImageEntry *img) {
        Ref r;
        if (ref_parse(img->name, &r, NULL, 0) < 0)
                return 3;
        return r.is_image_id ? 2 : r.is_digest_only ? 1 : 0;
}

static void listing_done(Agent *a) {
        a->listing_pending--;
        check_progress(a);
}

static void on_images_listed(Ctrd *c, int error, const char *reason, const char *ns, const CtrdImageEntry *imgs, size_t n,
                             void *userdata) {
        Agent *a = userdata;
        if (agent_ledger_ready(a) < 0)
                return listing_done(a);
        if (error < 0) {
                /* the catch-up listing 3 s after a connect, every reconnect and every reconcile
                 * fail the same way: said once, and once more when it works again */
                if (latch_fail(&a->list_fail, error))
                        log_warning("cannot list images in namespace %s: %s", ns, reason);
                else
                        log_debug("listing images in namespace %s failed again (%" PRIu64 " in a row): %s", ns,
                                  a->list_fail.count, reason);
                a->exit_error = error;
                listing_done(a);
                return;
        }
        uint64_t failed = latch_ok(&a->list_fail);
        if (failed > 0)
                log_info("listing images works again in namespace %s (%" PRIu64 " listings had failed)", ns,
                         failed);
        if (reason) /* records of the reply that could not be taken, in one line */
                log_warning("images in namespace %s: %s", ns, reason);
        (void) ledger_reserve(a->ledger, n); /* a first listing's records, without regrowing */
        /* each name parsed once, not once per rank; the tagged ones (rank 0, nearly all)
         * queued in the same pass, so their look-ups start while the rest is ranked */
        _cleanup_free_ uint8_t *ranks = malloc(n ? n : 1);
        uint64_t now = now_usec_realtime();
        size_t queued = 0;
        for (int rank = 0; rank <= 3; rank++)
                for (size_t i = 0; i < n; i++) {
                        int ri;
                        if (rank == 0 && ranks)
                                ri = ranks[i] = (uint8_t) image_rank(&imgs[i]);
                        else
                                ri = ranks ? ranks[i] : image_rank(&imgs[i]);
                        if (ri != rank)
                                continue;
                        LedgerDigest d;
                        if (a->listing_skip_known && ledger_lookup(a->ledger, ns, imgs[i].name, &d) >= 0 &&
                            streq_ptr(d.digest, imgs[i].target_digest))
                                continue; /* judged at this digest already: nothing new to say */
                        int r = jobs_add_image(a->jobs, ns, imgs[i].name, imgs[i].target_digest,
                                               imgs[i].target_media_type, now);
                        if (r < 0) {
                                job_dropped(a, r);
                                for (size_t k = i + 1; rank == 0 && ranks && k < n; k++)
                                        ranks[k] = (uint8_t) image_rank(&imgs[k]); /* for the next ranks */
                                break; /* the queue is full: this rank waits for the next reconcile */
                        }
                        a->listed_images++;
                        queued++;
                }
        if (a->listing_skip_known)
                log_debug("catch-up listing of namespace %s: %zu of %zu images not judged at their digest yet", ns,
                          queued, n);
        listing_done(a);
}

static void on_containers_listed(Ctrd *c, int error, const char *reason, const char *ns, const CtrdContainer *cts,
                                 size_t n, void *userdata) {
        Agent *a = userdata;
        if (agent_ledger_ready(a) < 0)
                return listing_done(a);
        if (error < 0)
                log_debug("cannot list containers in namespace %s: %s", ns, reason);
        else if (reason)
                log_warning("containers in namespace %s: %s", ns, reason);
        for (size_t i = 0; error >= 0 && i < n; i++) {
                /* what digest it runs: the image's current digest as the ledger knows it */
                LedgerDigest d = {0};
                if (ledger_lookup(a->ledger, ns, cts[i].image, &d) < 0)
                        continue;
                FindingWorkload w = cts[i].workload;
                strcpy_bounded(w.container_id, sizeof w.container_id, cts[i].id);
                (void) attribution_remember(a->attribution, ns, cts[i].id, cts[i].image, d.digest, &w);
        }
        listing_done(a);
}

static void on_namespaces_listed(Ctrd *c, int error, const char *reason, const CtrdNamespaceList *list,
                                 void *userdata) {
        Agent *a = userdata;
        if (error < 0) {
                log_warning("cannot list containerd namespaces: %s", reason);
                a->exit_error = error;
        }
        for (size_t i = 0; error >= 0 && i < list->n; i++) {
                const char *ns = list->names[i];
                if (!namespace_wanted(a, ns))
                        continue;
                if (ctrd_images_list(a->ctrd, ns, on_images_listed, a) >= 0)
                        a->listing_pending++;
                /* who runs what: only a watching agent names pods */
                if (!a->oneshot && ctrd_containers_list(a->ctrd, ns, on_containers_listed, a) >= 0)
                        a->listing_pending++;
        }
        listing_done(a);
}

static void reconcile(Agent *a, bool inventory) {
        a->listing_active = true;
        a->listing_skip_known = false;
        sinks_hold_journal(a->sinks, true); /* its entries go to journald once it is judged */
        if (inventory && a->inventory && inventory_begin(a->inventory) < 0)
                log_warning("cannot start an inventory: out of memory");
        if (ctrd_namespaces_list(a->ctrd, on_namespaces_listed, a) >= 0)
                a->listing_pending++;
        check_progress(a);
}

int agent_on_catchup(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;
        /* A pull that landed between our listing and the moment containerd registered the
         * subscription (the stream confirms nothing until its first event) is caught here.
         * It lists again only once the listing under way is judged (at 10,000 images that
         * takes longer than the delay: both ran at once, every image resolved twice), and
         * queues only the images whose digest the ledger does not know as current: the
         * rest was judged moments ago. */
        if (!a->connected)
                return 0;
        if (a->listing_active) {
                a->catchup_deferred = true;
                return 0;
        }
        reconcile(a, false);
        a->listing_skip_known = true;
        return 0;
}

/* The periodic inventory is also a periodic reconcile: a safety net for anything the
 * event stream could have missed. */
int agent_on_inventory_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;
        if (a->connected)
                reconcile(a, true);
        sd_event_source_set_time(s, usec + a->config->inventory_interval_usec);
        return 0;
}

/* ---------------------------------------------------------------- events and connection */

static void on_event(Ctrd *c, const CtrdEvent *ev, void *userdata) {
        Agent *a = userdata;
        uint64_t t = ev->timestamp_usec ? ev->timestamp_usec : now_usec_realtime();
        int r = 0;
        if (ev->kind == CTRD_EVENT_INVALID) {
                /* its namespace is unknown too: said (the first at once, then counted) */
                judge_skip(&a->judge, false, "event from containerd could not be decoded: %s",
                           ev->error == -ENAMETOOLONG ? "a field is too long" : "malformed protobuf");
                return;
        }
        if (!namespace_wanted(a, ev->namespace))
                return; /* nothing of an unwatched namespace is listed or remembered either */
        switch (ev->kind) {
        case CTRD_EVENT_IMAGE_CREATE:
        case CTRD_EVENT_IMAGE_UPDATE:
                r = jobs_add_image(a->jobs, ev->namespace, ev->image_name, NULL, NULL, t);
                break;
        case CTRD_EVENT_CONTAINER_CREATE:
        case CTRD_EVENT_TASK_START:
                r = jobs_add_container(a->jobs, ev->namespace, ev->container_id, t);
                break;
        case CTRD_EVENT_CONTAINER_DELETE:
                attribution_forget(a->attribution, ev->namespace, ev->container_id);
                break;
        default:
                break;
        }
        if (r < 0)
                job_dropped(a, r);
}

static void schedule_reconnect(Agent *a) {
        arm_oneshot(a->reconnect_timer, a->reconnect_usec);
        a->reconnect_usec = a->reconnect_usec * 2 > RECONNECT_MAX_USEC ? RECONNECT_MAX_USEC : a->reconnect_usec * 2;
}

static void on_stream_end(Ctrd *c, int error, const char *reason, void *userdata) {
        Agent *a = userdata;
        a->subscription = NULL;
        a->connected = false;
        a->catchup_deferred = false;
        agent_metrics_touch(a);
        jobs_set_generation(a->jobs, ++a->generation);
        log_warning("event stream from containerd at %s ended: %s; reconnecting", a->config->address,
                    reason ? reason : "closed");
        if (now_usec_monotonic() - a->subscribed_usec >= STREAM_STABLE_USEC)
                a->reconnect_usec = RECONNECT_MIN_USEC;
        a->last_connect_error[0] = 0;
        schedule_reconnect(a);
}

static void connect_failed(Agent *a, int error, const char *reason) {
        if (agent_ledger_ready(a) < 0)
                return; /* the loop stops */
        if (a->oneshot) {
                log_error("cannot reach containerd at %s: %s", a->config->address, reason);
                a->exit_error = error;
                sd_event_exit(a->event, 0);
                return;
        }
        /* one line when the reason changes, not one per attempt */
        if (strcmp(a->last_connect_error, reason) != 0)
                log_warning("cannot reach containerd at %s: %s; retrying every %.1fs at most", a->config->address,
                            reason, RECONNECT_MAX_USEC / 1e6);
        strcpy_bounded(a->last_connect_error, sizeof a->last_connect_error, reason);
        schedule_reconnect(a);
}

static void on_version(Ctrd *c, int error, const char *reason, const CtrdVersion *v, void *userdata) {
        Agent *a = userdata;
        if (error < 0)
                return connect_failed(a, error, reason ? reason : strerror(-error));
        ctrd_content_probe(a->ctrd); /* answered while containerd lists the images */
        if (a->oneshot)
                return reconcile(a, false);
        /* only the topics the agent acts on (OR'ed): a busy node's /tasks/exit, /tasks/delete,
         * /tasks/oom... would each wake the agent for nothing */
        static const char *const filters[] = {
                "topic==\"/images/create\"",     "topic==\"/images/update\"", "topic==\"/containers/create\"",
                "topic==\"/containers/delete\"", "topic==\"/tasks/start\"",
        };
        int r = ctrd_subscribe(a->ctrd, filters, ELEMENTSOF(filters), on_event, on_stream_end, a, &a->subscription);
        if (r < 0) {
                log_warning_errno(r, "cannot subscribe to containerd events: %m; retrying");
                schedule_reconnect(a);
                return;
        }
        log_info("connected to containerd %s (%s) at %s", v->version, v->revision, a->config->address);
        a->connected = true;
        agent_metrics_touch(a);
        a->subscribed_usec = now_usec_monotonic();
        a->last_connect_error[0] = 0;
        a->listed_images = 0;
        reconcile(a, true);
        arm_oneshot(a->catchup_timer, CATCHUP_DELAY_USEC);
}

void agent_connect(Agent *a) {
        int r = ctrd_version(a->ctrd, on_version, a);
        if (r < 0) {
                log_warning_errno(r, "cannot start a call to containerd: %m; retrying");
                schedule_reconnect(a);
        }
}

int agent_on_reconnect_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        agent_connect(userdata);
        return 0;
}

const JobsCallbacks agent_jobs_callbacks = {on_job_done, on_container_image, on_jobs_drained};
const JudgeOutput agent_judge_output = {on_emit, on_judged, NULL};
