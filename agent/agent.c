/* The agent: one context (Agent) wiring the containerd client, the job queue, the
 * judge, the ledger and the outputs on one sd-event loop. Its parts live in modules of
 * their own: jobs (ordered lookups), judge (an observation → records and findings),
 * attribution (which workloads run what), inventory, sinks (journald, stdout, spool and
 * shipper, or a scan report).
 *
 * Data flow for one image record:
 *   event (/images/create|update) or listing ─► jobs (FIFO; Images.Get for events;
 *   index → platform manifest → config, cached by digest) ─► in FIFO order: judge
 *   (ledger, policy, pins) ─► sinks, and the inventory when it came from a listing. */
#include "pullwatch/agent.h"

#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "pullwatch/attribution.h"
#include "pullwatch/containerd.h"
#include "pullwatch/inventory.h"
#include "pullwatch/jobs.h"
#include "pullwatch/judge.h"
#include "pullwatch/latch.h"
#include "pullwatch/ledger.h"
#include "pullwatch/log.h"
#include "pullwatch/metrics.h"
#include "pullwatch/pins.h"
#include "pullwatch/policy.h"
#include "pullwatch/ref.h"
#include "pullwatch/scan.h"
#include "pullwatch/sinks.h"
#include "pullwatch/util.h"

#define RECONNECT_MIN_USEC (250 * 1000ULL)
#define RECONNECT_MAX_USEC (10 * 1000000ULL)
#define CATCHUP_DELAY_USEC (3 * 1000000ULL) /* second listing after a (re)connect */
#define LEDGER_SAVE_DELAY_USEC (2 * 1000000ULL)
#define METRICS_INTERVAL_USEC (15 * 1000000ULL)
#define PINS_DEBOUNCE_USEC (200 * 1000ULL)

typedef struct Agent {
        const Config *config;
        bool oneshot; /* scan: list once, judge, exit; otherwise subscribe and keep watching */
        sd_event *event;
        Ctrd *ctrd;
        Policy *policy;
        Pins *pins;
        Ledger *ledger;
        Jobs *jobs;
        Attribution *attribution;
        Judge judge;
        Sinks *sinks;
        Inventory *inventory; /* with an endpoint */
        ScanReport *scan;

        /* connection */
        bool connected, ready_notified;
        uint64_t generation, reconnect_usec;
        char last_connect_error[256];
        CtrdCall *subscription;
        unsigned listing_pending; /* listing calls of the current generation in flight */
        bool listing_active;      /* a reconcile's listing is under way */
        size_t listed_images;
        uint64_t dropped_events;

        FailLatch ledger_fail;
        sd_event_source *reconnect_timer, *catchup_timer, *ledger_timer, *metrics_timer, *inventory_timer;
        sd_event_source *pins_watch, *pins_timer;
        int exit_error; /* scan: a listing failed */
} Agent;

static void agent_connect(Agent *a);

/* Fire the CLOCK_MONOTONIC timer s once, delay_usec from the loop's now. */
static void arm_oneshot(sd_event_source *s, uint64_t delay_usec) {
        uint64_t now;
        if (!s || sd_event_now(sd_event_source_get_event(s), CLOCK_MONOTONIC, &now) < 0)
                return;
        (void) sd_event_source_set_time(s, now + delay_usec);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* ---------------------------------------------------------------- ledger & metrics */

static void ledger_schedule_save(Agent *a) {
        int enabled = SD_EVENT_OFF;
        if (!a->ledger_timer || !ledger_is_dirty(a->ledger))
                return; /* scan never writes the ledger */
        sd_event_source_get_enabled(a->ledger_timer, &enabled);
        if (enabled == SD_EVENT_OFF)
                arm_oneshot(a->ledger_timer, LEDGER_SAVE_DELAY_USEC);
}

static int on_ledger_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;
        if (!ledger_is_dirty(a->ledger))
                return 0;
        int r = ledger_save(a->ledger);
        if (r < 0) {
                if (latch_fail(&a->ledger_fail, r))
                        log_warning_errno(r, "cannot save the ledger in %s: %m; it stays in memory, retrying",
                                          a->config->state_dir);
                ledger_schedule_save(a); /* the dirty flag stays: try again later */
        } else if (latch_ok(&a->ledger_fail) > 0)
                log_notice("the ledger in %s is saved again", a->config->state_dir);
        /* a burst and the save's buffers leave freed heap behind: give it back, so an idle
         * agent's private dirty memory is what it holds, not what it once held */
        malloc_trim(0);
        return 0;
}

static void metrics_write(Agent *a) {
        MetricsSnapshot m;
        metrics_init(&m);
        sinks_metrics(a->sinks, &m);
        m.containerd_connected = a->connected;
        m.updated_usec = now_usec_realtime();
        int r = metrics_status_write(a->config->state_dir, &m);
        if (r < 0)
                log_debug("cannot write %s/%s: %s", a->config->state_dir, METRICS_STATUS_FILE, strerror(-r));
        if (!isempty(a->config->metrics_file)) {
                r = metrics_write_textfile(a->config->metrics_file, &m);
                if (r < 0)
                        log_debug("cannot write %s: %s", a->config->metrics_file, strerror(-r));
        }
}

static int on_metrics_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        metrics_write(userdata);
        sd_event_source_set_time(s, usec + METRICS_INTERVAL_USEC);
        return 0;
}

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
        int r = sinks_spool_only(a->sinks, json, len);
        if (r < 0)
                log_full(LOG_LEVEL_ERR, "spool_error", r, "cannot spool the inventory: %s", strerror(-r));
        return r;
}

/* One or more `inventory` records: the node's current images with their compliance. */
static void inventory_ship(Agent *a) {
        InventoryMeta meta = {a->config->node, a->config->cluster, now_usec_realtime()};
        size_t total = 0, compliant = 0;
        int r = inventory_finish(a->inventory, &meta, a->attribution, inventory_write, a, &total, &compliant);
        if (r == -ENOMEM)
                log_error("cannot encode the inventory, ignoring");
        sinks_kick(a->sinks);
        log_info("inventory: %zu image records, %zu compliant (%.1f%%)", total, compliant,
                 total ? 100.0 * (double) compliant / (double) total : 100.0);
}

static void on_job_done(const JobOutcome *o, void *userdata) {
        Agent *a = userdata;
        if (o->error < 0) {
                if (o->generation == a->generation && o->error != -ENOENT)
                        log_warning("cannot look up %s %s in namespace %s: %s, ignoring",
                                    o->type == JOB_IMAGE ? "image" : "container", o->name, o->ns, o->reason);
        } else if (!o->observation)
                log_warning("ignoring image record in namespace %s: a field is too long", o->ns);
        else if (o->type == JOB_IMAGE) {
                judge_image(&a->judge, o->observation, o->from_listing);
                ledger_schedule_save(a);
        } else
                judge_container(&a->judge, o->observation);
}

static void on_container_image(const char *ns, const char *id, const char *image, const char *digest,
                               const FindingWorkload *w, void *userdata) {
        Agent *a = userdata;
        (void) attribution_remember(a->attribution, ns, id, image, digest, w);
}

/* After jobs were handed back or a listing call ended: is a listing, or the scan, over? */
static void check_progress(Agent *a) {
        bool idle = a->listing_pending == 0 && jobs_queued(a->jobs) == 0;
        if (a->oneshot && idle)
                sd_event_exit(a->event, 0);
        if (a->listing_active && a->listing_pending == 0 && jobs_listing(a->jobs) == 0) {
                a->listing_active = false;
                if (inventory_collecting(a->inventory))
                        inventory_ship(a);
                malloc_trim(0); /* a listing's jobs are gone: return their memory */
        }
        if (!a->oneshot && !a->ready_notified && a->connected && idle) {
                a->ready_notified = true;
                log_info("subscribed to containerd events at %s (%zu image records listed)", a->config->address,
                         a->listed_images);
                (void) sd_notify(false, "READY=1\nSTATUS=watching containerd");
        }
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
static int image_rank(const CtrdImage *img) {
        Ref r;
        if (ref_parse(img->name, &r, NULL, 0) < 0)
                return 3;
        return r.is_image_id ? 2 : r.is_digest_only ? 1 : 0;
}

static void listing_done(Agent *a) {
        a->listing_pending--;
        check_progress(a);
}

static void on_images_listed(Ctrd *c, int error, const char *reason, const char *ns, const CtrdImage *imgs, size_t n,
                             void *userdata) {
        Agent *a = userdata;
        if (error < 0) {
                log_warning("cannot list images in namespace %s: %s", ns, reason);
                a->exit_error = error;
                listing_done(a);
                return;
        }
        /* each name parsed once, not once per rank */
        _cleanup_free_ uint8_t *ranks = malloc(n ? n : 1);
        for (size_t i = 0; ranks && i < n; i++)
                ranks[i] = (uint8_t) image_rank(&imgs[i]);
        uint64_t now = now_usec_realtime();
        for (int rank = 0; rank <= 3; rank++)
                for (size_t i = 0; i < n; i++) {
                        if ((ranks ? ranks[i] : image_rank(&imgs[i])) != rank)
                                continue;
                        int r = jobs_add_image(a->jobs, ns, imgs[i].name, imgs[i].target_digest,
                                               imgs[i].target_media_type, now);
                        if (r < 0) {
                                job_dropped(a, r);
                                break; /* the queue is full: this rank waits for the next reconcile */
                        }
                        a->listed_images++;
                }
        listing_done(a);
}

static void on_containers_listed(Ctrd *c, int error, const char *reason, const char *ns, const CtrdContainer *cts,
                                 size_t n, void *userdata) {
        Agent *a = userdata;
        if (error < 0)
                log_debug("cannot list containers in namespace %s: %s", ns, reason);
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
        if (inventory && a->inventory && inventory_begin(a->inventory) < 0)
                log_warning("cannot start an inventory: out of memory");
        if (ctrd_namespaces_list(a->ctrd, on_namespaces_listed, a) >= 0)
                a->listing_pending++;
        check_progress(a);
}

static int on_catchup(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;
        /* A pull that landed between our listing and the moment containerd registered the
         * subscription (the stream confirms nothing until its first event) is caught here. */
        if (a->connected)
                reconcile(a, false);
        return 0;
}

/* The periodic inventory is also a periodic reconcile: a safety net for anything the
 * event stream could have missed. */
static int on_inventory_timer(sd_event_source *s, uint64_t usec, void *userdata) {
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
        jobs_set_generation(a->jobs, ++a->generation);
        log_warning("event stream from containerd at %s ended: %s; reconnecting", a->config->address,
                    reason ? reason : "closed");
        a->reconnect_usec = RECONNECT_MIN_USEC;
        a->last_connect_error[0] = 0;
        schedule_reconnect(a);
}

static void connect_failed(Agent *a, int error, const char *reason) {
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
        a->last_connect_error[0] = 0;
        a->listed_images = 0;
        reconcile(a, true);
        arm_oneshot(a->catchup_timer, CATCHUP_DELAY_USEC);
}

static void agent_connect(Agent *a) {
        int r = ctrd_version(a->ctrd, on_version, a);
        if (r < 0) {
                log_warning_errno(r, "cannot start a call to containerd: %m; retrying");
                schedule_reconnect(a);
        }
}

static int on_reconnect_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        agent_connect(userdata);
        return 0;
}

/* ---------------------------------------------------------------- pins reload, signals */

static void pins_reload(Agent *a, const char *why) {
        char err[512] = "";
        Pins *p = NULL;
        if (isempty(a->config->pins))
                return;
        if (pins_load(a->config->pins, &p, err, sizeof err) < 0) {
                log_warning("cannot reload pins (%s): %s; keeping the %zu pins loaded before", why, err,
                            pins_size(a->pins));
                return;
        }
        pins_free(a->pins);
        a->pins = p;
        a->judge.pins = p;
        log_info("loaded %zu pins from %s (%s)", pins_size(p), a->config->pins, why);
}

static int on_pins_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        pins_reload(userdata, "file changed");
        return 0;
}

static int on_pins_inotify(sd_event_source *s, const struct inotify_event *ev, void *userdata) {
        Agent *a = userdata;
        /* ConfigMaps swap a symlink, editors write temp files: debounce and reload once */
        arm_oneshot(a->pins_timer, PINS_DEBOUNCE_USEC);
        return 0;
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        pins_reload(userdata, "SIGHUP");
        return 0;
}

static int on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Agent *a = userdata;
        log_info("received %s, exiting", si->ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        (void) sd_notify(false, "STOPPING=1");
        sd_event_exit(a->event, 0);
        return 0;
}

/* ---------------------------------------------------------------- setup */

static Agent *agent_free(Agent *a) {
        if (!a)
                return NULL;
        jobs_free(a->jobs);
        sd_event_source_unref(a->reconnect_timer);
        sd_event_source_unref(a->catchup_timer);
        sd_event_source_unref(a->ledger_timer);
        sd_event_source_unref(a->metrics_timer);
        sd_event_source_unref(a->inventory_timer);
        sd_event_source_unref(a->pins_watch);
        sd_event_source_unref(a->pins_timer);
        inventory_free(a->inventory);
        attribution_free(a->attribution);
        sinks_free(a->sinks);
        ctrd_free(a->ctrd);
        ledger_free(a->ledger);
        pins_free(a->pins);
        policy_free(a->policy);
        scan_report_free(a->scan);
        sd_event_unref(a->event);
        free(a);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Agent *, agent_free);

/* What both commands need: the policy and pins, the loop, the containerd client, the
 * job queue and the judge. The ledger and the outputs differ: see agent_run/agent_scan. */
static int agent_new(Agent **ret, const Config *c, bool oneshot) {
        _cleanup_(agent_freep) Agent *a = calloc(1, sizeof(Agent));
        char err[512] = "";
        int r;
        if (!a)
                return log_error_errno(ENOMEM, "out of memory");
        a->config = c;
        a->oneshot = oneshot;
        a->reconnect_usec = RECONNECT_MIN_USEC;
        log_set_node(c->node);
        log_set_max_level(c->log_level_value);

        r = policy_new_from_config(c, &a->policy, err, sizeof err);
        if (r >= 0 && !isempty(c->pins))
                r = pins_load(c->pins, &a->pins, err, sizeof err);
        if (r < 0)
                return log_error_errno(r, "%s", err);
        r = sd_event_default(&a->event);
        if (r < 0)
                return log_error_errno(r, "cannot create the event loop: %m");
        r = ctrd_new(&a->ctrd, a->event, c->address, c->max_message_bytes, err, sizeof err);
        if (r < 0)
                return log_error_errno(r, "%s", err[0] ? err : strerror(-r));
        static const JobsCallbacks cb = {on_job_done, on_container_image, on_jobs_drained};
        r = jobs_new(&a->jobs, a->ctrd, &cb, a);
        if (r >= 0)
                r = attribution_new(&a->attribution);
        if (r < 0)
                return log_error_errno(r, "out of memory");
        a->judge = (Judge){
                .config = c,
                .policy = a->policy,
                .pins = a->pins,
                .attribution = a->attribution,
                .remember = !oneshot,
                .out = {on_emit, on_judged, a},
        };
        *ret = TAKE_PTR(a);
        return 0;
}

static int add_timer(Agent *a, sd_event_source **ret, uint64_t usec, uint64_t accuracy,
                     sd_event_time_handler_t handler, int enabled) {
        int r = sd_event_add_time(a->event, ret, CLOCK_MONOTONIC, usec, accuracy, handler, a);
        if (r < 0)
                return log_error_errno(r, "cannot create timers: %m");
        (void) sd_event_source_set_enabled(*ret, enabled);
        return 0;
}

static int watch_signals(Agent *a) {
        sigset_t mask;
        int r;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        if ((r = sd_event_add_signal(a->event, NULL, SIGTERM, on_terminate, a)) < 0 ||
            (r = sd_event_add_signal(a->event, NULL, SIGINT, on_terminate, a)) < 0 ||
            (r = sd_event_add_signal(a->event, NULL, SIGHUP, on_sighup, a)) < 0)
                return log_error_errno(r, "cannot watch signals: %m");
        (void) sd_event_set_watchdog(a->event, true);
        return 0;
}

/* The pins file's directory is watched: a ConfigMap update swaps a symlink in it. */
static int watch_pins(Agent *a) {
        const char *pins = a->config->pins;
        if (isempty(pins))
                return 0;
        _cleanup_free_ char *dir = strdup(pins);
        if (!dir)
                return log_error_errno(ENOMEM, "out of memory");
        char *slash = strrchr(dir, '/');
        if (slash)
                *(slash == dir ? slash + 1 : slash) = 0;
        else
                strcpy(dir, ".");
        int r = sd_event_add_inotify(a->event, &a->pins_watch, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE,
                                     on_pins_inotify, a);
        if (r < 0)
                log_warning_errno(r, "cannot watch %s for changes: %m; pins reload on SIGHUP only", dir);
        return add_timer(a, &a->pins_timer, 0, 1000, on_pins_timer, SD_EVENT_OFF);
}

/* `run`: the state directory, the ledger, every output, timers and signals. */
static int agent_setup_run(Agent *a) {
        const Config *c = a->config;
        LedgerOpenReport rep = {0};
        int r;
        if (mkdir(c->state_dir, 0750) < 0 && errno != EEXIST)
                return log_error_errno(errno, "cannot create the state directory %s: %m", c->state_dir);
        r = ledger_open(&a->ledger, c->state_dir, c->ledger_max_entries, &rep);
        if (r < 0)
                return log_error_errno(r, "cannot open the ledger in %s: %m", c->state_dir);
        if (rep.corrupt)
                log_full(LOG_LEVEL_ERR, "ledger_corrupt", 0, "%s; rebuilding the view from containerd", rep.reason);
        else
                log_info("ledger: %" PRIu64 " references, %" PRIu64 " digests known", rep.references, rep.entries);
        a->judge.ledger = a->ledger;

        r = sinks_new(&a->sinks, a->event, c);
        if (r >= 0 && sinks_has_endpoint(a->sinks) && inventory_new(&a->inventory) < 0)
                r = log_error_errno(ENOMEM, "out of memory");
        if (r >= 0)
                r = watch_signals(a);
        if (r >= 0)
                r = add_timer(a, &a->reconnect_timer, 0, 1000, on_reconnect_timer, SD_EVENT_OFF);
        if (r >= 0)
                r = add_timer(a, &a->catchup_timer, 0, 1000, on_catchup, SD_EVENT_OFF);
        if (r >= 0)
                r = add_timer(a, &a->ledger_timer, 0, 100000, on_ledger_timer, SD_EVENT_OFF);
        if (r >= 0)
                r = add_timer(a, &a->metrics_timer, now_usec_monotonic() + METRICS_INTERVAL_USEC, 1000000,
                              on_metrics_timer, SD_EVENT_ON);
        if (r >= 0 && c->inventory_interval_usec > 0)
                r = add_timer(a, &a->inventory_timer, now_usec_monotonic() + c->inventory_interval_usec, 1000000,
                              on_inventory_timer, SD_EVENT_ON);
        if (r >= 0)
                r = watch_pins(a);
        return r;
}

int agent_run(const Config *c) {
        _cleanup_(agent_freep) Agent *a = NULL;
        int r = agent_new(&a, c, false);
        if (r < 0 || (r = agent_setup_run(a)) < 0)
                return r;
        agent_connect(a);
        r = sd_event_loop(a->event);
        if (ledger_is_dirty(a->ledger)) {
                int k = ledger_save(a->ledger);
                if (k < 0)
                        log_warning_errno(k, "cannot save the ledger: %m");
        }
        sinks_sync(a->sinks);
        metrics_write(a);
        if (r < 0)
                return log_error_errno(r, "event loop failed: %m");
        return 0;
}

/* `scan`: the node's history, if the agent keeps one here, makes tag_moved visible;
 * scan reads it and never writes it. */
static int agent_setup_scan(Agent *a) {
        const Config *c = a->config;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", c->state_dir, LEDGER_FILE);
        if (access(path, R_OK) == 0) {
                LedgerOpenReport rep = {0};
                if (ledger_open(&a->ledger, c->state_dir, c->ledger_max_entries, &rep) >= 0 && rep.corrupt)
                        log_warning("%s", rep.reason);
        } else
                (void) ledger_new(&a->ledger, c->ledger_max_entries);
        a->judge.ledger = a->ledger;
        int r = scan_report_new(&a->scan);
        if (r < 0)
                return log_error_errno(r, "out of memory");
        return sinks_new_scan(&a->sinks, c, a->scan);
}

int agent_scan(const Config *c, ScanFormat format, FILE *out) {
        _cleanup_(agent_freep) Agent *a = NULL;
        int r = agent_new(&a, c, true);
        if (r < 0 || (r = agent_setup_scan(a)) < 0)
                return r;
        agent_connect(a);
        r = sd_event_loop(a->event);
        if (r < 0)
                return log_error_errno(r, "event loop failed: %m");
        if (a->exit_error < 0)
                return a->exit_error;
        return scan_report_print(a->scan, format, out) > 0 ? 1 : 0;
}
