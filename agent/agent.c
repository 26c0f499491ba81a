/* The agent: one context (Agent) wiring the containerd client, the job queue, the
 * judge, the ledger and the outputs on one sd-event loop. Its parts live in modules of
 * their own: jobs (ordered lookups), judge (an observation → records and findings),
 * attribution (which workloads run what), inventory, sinks (journald, stdout, spool and
 * shipper, or a scan report).
 *
 * Data flow for one image record:
 *   event (/images/create|update) or listing ─► jobs (FIFO; Images.Get for events,
 *   batched in a burst (lookup_delay); index → platform manifest → config, cached by
 *   digest) ─► in FIFO order: judge
 *   (ledger, policy, pins) ─► sinks, and the inventory when it came from a listing. */
#include "pullwatch/agent.h"

#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "agent-private.h"
#include "pullwatch/log.h"
#include "pullwatch/metrics.h"
#include "pullwatch/thread.h"
#include "pullwatch/util.h"

/* ---------------------------------------------------------------- ledger & metrics */

/* `run` loads the ledger (the snapshot parsed, its log replayed, the frozen image
 * written: 30-40 ms at 10,000 references) on a thread while the loop connects to
 * containerd and asks for the listing, which containerd takes longer than that to
 * produce: a restart's load no longer comes before its first call. Nothing touches the
 * ledger until agent_ledger_ready() has joined the thread: the listings' replies, every
 * judged job, a failed connection (so a ledger that cannot open still stops an agent
 * whose containerd is down), the end of the loop. ledger_open() logs nothing and keeps no
 * state outside the Ledger. */
#define LEDGER_LOAD_STACK (1U << 20) /* the tree parse of a snapshot not in the fast format recurses */

struct LedgerLoad {
        pthread_t thread;
        void *stack;
        const Config *config;
        Ledger *ledger;
        LedgerOpenReport rep;
        int r;
};

static void *ledger_load_main(void *userdata) {
        LedgerLoad *ld = userdata;
        ld->r = ledger_open(&ld->ledger, ld->config->state_dir, ld->config->ledger_max_entries, &ld->rep);
        return NULL;
}

static LedgerLoad *ledger_load_free(LedgerLoad *ld) {
        if (!ld)
                return NULL;
        thread_stack_free(ld->stack, LEDGER_LOAD_STACK);
        ledger_free(ld->ledger);
        free(ld);
        return NULL;
}

/* The thread started, or -errno (the caller then loads on the loop, as before). */
static int ledger_load_start(Agent *a) {
        LedgerLoad *ld = calloc(1, sizeof *ld);
        if (!ld)
                return -ENOMEM;
        ld->config = a->config;
        /* started before watch_signals() blocks SIGTERM: thread_start() blocks every
         * signal in it, or a SIGTERM sent while it loads would kill the agent */
        int r = thread_start(&ld->thread, &ld->stack, LEDGER_LOAD_STACK, ledger_load_main, ld);
        if (r < 0) {
                ledger_load_free(ld);
                return r;
        }
        a->ledger_load = ld;
        return 0;
}

/* What ledger_open() found, said as `run` always said it; -errno when it failed. */
static int ledger_opened(Agent *a, int r, const LedgerOpenReport *rep) {
        const Config *c = a->config;
        if (r < 0)
                return log_error_errno(r, "cannot open the ledger in %s: %m", c->state_dir);
        if (rep->corrupt)
                log_full(LOG_LEVEL_ERR, "ledger_corrupt", 0, "%s; rebuilding the view from containerd", rep->reason);
        else
                log_info("ledger: %" PRIu64 " references, %" PRIu64 " digests known (%" PRIu64 " changes replayed from its log)",
                         rep->references, rep->entries, rep->log_records);
        if (rep->log_reason[0])
                log_warning("%s", rep->log_reason);
        a->judge.ledger = a->ledger;
        return 0;
}

int agent_ledger_ready(Agent *a) {
        LedgerLoad *ld = a->ledger_load;
        if (!ld)
                return a->fatal;
        a->ledger_load = NULL;
        (void) pthread_join(ld->thread, NULL);
        a->ledger = TAKE_PTR(ld->ledger);
        int r = ledger_opened(a, ld->r, &ld->rep);
        ledger_load_free(ld);
        if (r < 0) {
                a->fatal = r;
                sd_event_exit(a->event, 0);
        }
        return r;
}

void agent_ledger_schedule_save(Agent *a) {
        int enabled = SD_EVENT_OFF;
        if (!a->ledger_timer || !ledger_is_dirty(a->ledger))
                return; /* scan never writes the ledger */
        sd_event_source_get_enabled(a->ledger_timer, &enabled);
        if (enabled == SD_EVENT_OFF)
                arm_oneshot(a->ledger_timer, LEDGER_SAVE_DELAY_USEC);
}

/* A save leaves freed heap behind (its buffers, and a burst's): given back so that an idle
 * agent's private dirty memory is what it holds, not what it once held — but once the
 * agent is quiet, not after every save. While events come the metrics timer is pending
 * (every job touches it) and the trim waits for it, at most METRICS_INTERVAL_USEC; with
 * no such timer the trim is now. A trim after each save (every 2 s of a paced stream)
 * handed back pages the next events faulted in again: 0.3 page faults per paced event
 * against 0.09, and 5-11 % of the agent's CPU per event (agent_ab_bench.sh, same events). */
static void trim_when_quiet(Agent *a) {
        int enabled = SD_EVENT_OFF;
        if (a->metrics_timer)
                (void) sd_event_source_get_enabled(a->metrics_timer, &enabled);
        if (enabled != SD_EVENT_OFF) {
                a->trim_owed = true;
                return;
        }
        a->trim_owed = false;
        malloc_trim(0);
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
                agent_ledger_schedule_save(a); /* the dirty flag stays: try again later */
        } else {
                if (latch_ok(&a->ledger_fail) > 0)
                        log_notice("the ledger in %s is saved again", a->config->state_dir);
                if (r > 0)
                        log_warning("the ledger in %s reached %u MiB: its %d oldest entries were pruned to fit "
                                    "(lower ledger_max_entries)",
                                    a->config->state_dir, LEDGER_FILE_MAX >> 20, r);
        }
        trim_when_quiet(a);
        return 0;
}

static void metrics_snapshot(Agent *a, MetricsSnapshot *m) {
        metrics_init(m);
        sinks_metrics(a->sinks, m);
        m->containerd_connected = a->connected;
        m->updated_usec = now_usec_realtime();
}

static void metrics_write(Agent *a, const MetricsSnapshot *m) {
        a->metrics_written = *m;
        a->metrics_written_once = true;
        int r = metrics_status_write(a->config->state_dir, m);
        if (r < 0)
                log_debug_errno(r, "cannot write %s/%s: %m", a->config->state_dir, METRICS_STATUS_FILE);
        if (!isempty(a->config->metrics_file)) {
                r = metrics_write_textfile(a->config->metrics_file, m);
                if (r < 0)
                        log_debug_errno(r, "cannot write %s: %m", a->config->metrics_file);
        }
}

/* The files are rewritten only when a number changed, and the timer runs only while
 * something happens: an idle agent wakes for nothing (it wrote both files every 15 s). */
static bool metrics_changed(const Agent *a, const MetricsSnapshot *m) {
        const MetricsSnapshot *p = &a->metrics_written;
        if (!a->metrics_written_once)
                return true;
        /* field by field: a struct's padding is not guaranteed to compare equal */
        if (p->records_spooled_total != m->records_spooled_total || p->shipped_total != m->shipped_total ||
            p->retried_total != m->retried_total || p->dropped_total != m->dropped_total ||
            p->inventory_replaced_total != m->inventory_replaced_total ||
            p->dead_lettered_total != m->dead_lettered_total || p->batches_total != m->batches_total ||
            p->bytes_sent_total != m->bytes_sent_total || p->spool_bytes != m->spool_bytes ||
            p->spool_pending_records != m->spool_pending_records || p->last_success_usec != m->last_success_usec ||
            p->containerd_connected != m->containerd_connected || p->n_findings != m->n_findings ||
            !streq_ptr(p->last_error, m->last_error))
                return true;
        for (size_t i = 0; i < m->n_findings; i++)
                if (p->findings[i].count != m->findings[i].count || !streq_ptr(p->findings[i].kind, m->findings[i].kind))
                        return true;
        return false;
}

static int on_metrics_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;
        MetricsSnapshot m;
        metrics_snapshot(a, &m);
        if (metrics_changed(a, &m))
                metrics_write(a, &m);
        /* records waiting for the endpoint: the shipper's numbers move on their own */
        if (m.spool_pending_records > 0)
                arm_oneshot(s, METRICS_INTERVAL_USEC);
        if (a->trim_owed) { /* the saves since the last trim (trim_when_quiet()) */
                a->trim_owed = false;
                malloc_trim(0);
        }
        return 0;
}

void agent_metrics_touch(Agent *a) {
        int enabled = SD_EVENT_OFF;
        if (!a->metrics_timer)
                return; /* scan writes no metrics */
        (void) sd_event_source_get_enabled(a->metrics_timer, &enabled);
        if (enabled == SD_EVENT_OFF)
                arm_oneshot(a->metrics_timer, METRICS_INTERVAL_USEC);
}

static int on_trim(sd_event_source *s, void *userdata) {
        malloc_trim(0);
        return 0;
}

void agent_trim_later(Agent *a) {
        if (a->trim)
                (void) sd_event_source_set_enabled(a->trim, SD_EVENT_ONESHOT);
        else
                malloc_trim(0);
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
        if (a->config->burst_window_usec > 0)
                log_info("burst window: %" PRIu64 " reads of containerd's socket waited for it",
                         ctrd_burst_reads(a->ctrd));
        JobsLookupStats st;
        jobs_get_lookup_stats(a->jobs, &st);
        log_info("image look-ups: %" PRIu64 " Images.Get, %" PRIu64 " Images.List (%" PRIu64 " refused); %" PRIu64
                 " batches answered %" PRIu64 " events; %" PRIu64 " waited for more events",
                 st.gets, st.lists, st.lists_failed, st.batches, st.batched, st.waits);
        (void) sd_notify(false, "STOPPING=1");
        sd_event_exit(a->event, 0);
        return 0;
}

/* ---------------------------------------------------------------- setup */

static Agent *agent_free(Agent *a) {
        if (!a)
                return NULL;
        if (a->ledger_load) { /* joined, its ledger dropped unsaid */
                (void) pthread_join(a->ledger_load->thread, NULL);
                a->ledger_load = ledger_load_free(a->ledger_load);
        }
        judge_skips_flush(&a->judge); /* what was counted and not said yet */
        jobs_free(a->jobs);
        facts_free(a->facts);
        sd_event_source_unref(a->reconnect_timer);
        sd_event_source_unref(a->catchup_timer);
        sd_event_source_unref(a->ledger_timer);
        sd_event_source_unref(a->metrics_timer);
        sd_event_source_unref(a->inventory_timer);
        sd_event_source_unref(a->relist_timer);
        sd_event_source_unref(a->pins_watch);
        sd_event_source_unref(a->pins_timer);
        sd_event_source_unref(a->trim);
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
        r = sd_event_new(&a->event); /* not sd_event_default(): it calls gettid() on every loop turn to check its thread */
        if (r < 0)
                return log_error_errno(r, "cannot create the event loop: %m");
        r = sd_event_add_defer(a->event, &a->trim, on_trim, a);
        if (r < 0)
                return log_error_errno(r, "cannot create the event loop: %m");
        (void) sd_event_source_set_enabled(a->trim, SD_EVENT_OFF);
        r = ctrd_new(&a->ctrd, a->event, c->address, c->max_message_bytes, err, sizeof err);
        if (r < 0)
                return err[0] ? log_error_errno(r, "%s", err) : log_error_errno(r, "%m");
        r = ctrd_set_keepalive(a->ctrd, c->keepalive_interval_usec, c->keepalive_timeout_usec);
        if (r < 0)
                return log_error_errno(r, "invalid keepalive settings: %m");
        r = ctrd_set_burst_window(a->ctrd, c->burst_window_usec);
        if (r < 0)
                return log_error_errno(r, "invalid burst_window: %m");
        ctrd_set_content_direct(a->ctrd, c->content_direct);
        r = jobs_new(&a->jobs, a->ctrd, &agent_jobs_callbacks, a);
        if (r >= 0 && !oneshot)
                r = jobs_set_lookup_batching(a->jobs, a->event, c->lookup_delay_usec, c->lookup_list);
        if (r >= 0)
                r = facts_new(&a->facts, c->state_dir, oneshot);
        if (r >= 0) {
                jobs_set_facts(a->jobs, a->facts);
                r = attribution_new(&a->attribution);
        }
        if (r < 0)
                return log_error_errno(r, "out of memory");
        a->judge = (Judge){
                .config = c,
                .policy = a->policy,
                .pins = a->pins,
                .attribution = a->attribution,
                .remember = !oneshot,
                .out = agent_judge_output,
        };
        a->judge.out.userdata = a;
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

/* The periodic catch-up: the same re-list as the one a few seconds after connecting
 * (judge every image; the ledger makes it silent for what is known). Not while a listing
 * (the inventory's, a reconnect's) is under way: that one catches up already. */
static int on_relist_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;
        sd_event_source_set_time(s, usec + a->config->relist_interval_usec);
        if (a->listing_active)
                return 0;
        return agent_on_catchup(s, usec, userdata);
}

/* The state directory holds what root reads back and renames over: one that another user
 * can write to (or owns) could be handed symlinks and FIFOs. Refused, in one line. A
 * missing directory is fine (it is created 0750 by us). */
static int check_state_dir(const char *path) {
        struct stat st;
        if (stat(path, &st) < 0)
                return errno == ENOENT ? 0 : log_error_errno(errno, "cannot check the state directory %s: %m", path);
        if (!S_ISDIR(st.st_mode))
                return log_error_errno(ENOTDIR, "state directory %s is not a directory", path);
        if (st.st_uid != geteuid())
                return log_error_errno(EPERM,
                                       "state directory %s is owned by uid %u, not by the agent's user (uid %u): "
                                       "refusing it",
                                       path, (unsigned) st.st_uid, (unsigned) geteuid());
        if (st.st_mode & (S_IWGRP | S_IWOTH))
                return log_error_errno(EPERM,
                                       "state directory %s is writable by %s (mode %04o): refusing it (chmod go-w)",
                                       path, st.st_mode & S_IWOTH ? "others" : "group",
                                       (unsigned) (st.st_mode & 07777));
        return 0;
}

/* `run`: the state directory, the ledger, every output, timers and signals. */
static int agent_setup_run(Agent *a) {
        const Config *c = a->config;
        LedgerOpenReport rep = {0};
        int r;
        if (mkdir(c->state_dir, 0750) < 0 && errno != EEXIST)
                return log_error_errno(errno, "cannot create the state directory %s: %m", c->state_dir);
        char spool_dir[4096];
        snprintf(spool_dir, sizeof spool_dir, "%s/spool", c->state_dir);
        if ((r = check_state_dir(c->state_dir)) < 0 || (r = check_state_dir(spool_dir)) < 0)
                return r;
        if (ledger_load_start(a) < 0) { /* no thread: loaded here, before the first call */
                r = ledger_open(&a->ledger, c->state_dir, c->ledger_max_entries, &rep);
                if ((r = ledger_opened(a, r, &rep)) < 0)
                        return r;
        }

        r = sinks_new(&a->sinks, a->event, c);
        if (r >= 0 && sinks_has_endpoint(a->sinks) && inventory_new(&a->inventory) < 0)
                r = log_error_errno(ENOMEM, "out of memory");
        if (r >= 0)
                r = watch_signals(a);
        if (r >= 0)
                r = add_timer(a, &a->reconnect_timer, 0, 1000, agent_on_reconnect_timer, SD_EVENT_OFF);
        if (r >= 0)
                r = add_timer(a, &a->catchup_timer, 0, 1000, agent_on_catchup, SD_EVENT_OFF);
        if (r >= 0)
                r = add_timer(a, &a->ledger_timer, 0, 100000, on_ledger_timer, SD_EVENT_OFF);
        if (r >= 0)
                r = add_timer(a, &a->metrics_timer, now_usec_monotonic() + METRICS_INTERVAL_USEC, 1000000,
                              on_metrics_timer, SD_EVENT_ONESHOT);
        if (r >= 0 && c->inventory_interval_usec > 0)
                r = add_timer(a, &a->inventory_timer, now_usec_monotonic() + c->inventory_interval_usec, 1000000,
                              agent_on_inventory_timer, SD_EVENT_ON);
        if (r >= 0 && c->relist_interval_usec > 0)
                r = add_timer(a, &a->relist_timer, now_usec_monotonic() + c->relist_interval_usec, 1000000,
                              on_relist_timer, SD_EVENT_ON);
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
        if (agent_ledger_ready(a) < 0)
                return a->fatal; /* said */
        /* a clean exit folds the change log into the snapshot (~30 ms at 10,000 references),
         * so the next start parses one file */
        LedgerStats st;
        ledger_get_stats(a->ledger, &st);
        if (ledger_is_dirty(a->ledger) || st.log_records > 0) {
                int k = ledger_compact(a->ledger);
                if (k < 0)
                        log_warning_errno(k, "cannot save the ledger: %m");
        }
        sinks_sync(a->sinks);
        MetricsSnapshot m;
        metrics_snapshot(a, &m);
        metrics_write(a, &m);
        if (r < 0)
                return log_error_errno(r, "event loop failed: %m");
        return 0;
}

/* `scan`: the node's history, if the agent keeps one here, makes tag_moved visible;
 * scan reads it and never writes it, nor moves a bad one aside: it goes on without. */
static int agent_setup_scan(Agent *a, ScanFormat format) {
        const Config *c = a->config;
        char err[LEDGER_REASON_MAX] = "";
        int r = ledger_read(&a->ledger, c->state_dir, c->ledger_max_entries, err, sizeof err);
        if (r == -EBADMSG)
                log_warning("%s; scanning without the node's history", err);
        if (r < 0)
                (void) ledger_new(&a->ledger, c->ledger_max_entries);
        a->judge.ledger = a->ledger;
        r = scan_report_new(&a->scan, format != SCAN_FORMAT_JSON);
        if (r < 0)
                return log_error_errno(r, "out of memory");
        return sinks_new_scan(&a->sinks, c, a->scan);
}

int agent_scan(const Config *c, ScanFormat format, FILE *out) {
        _cleanup_(agent_freep) Agent *a = NULL;
        int r = agent_new(&a, c, true);
        if (r < 0 || (r = agent_setup_scan(a, format)) < 0)
                return r;
        agent_connect(a);
        r = sd_event_loop(a->event);
        if (r < 0)
                return log_error_errno(r, "event loop failed: %m");
        if (a->exit_error < 0)
                return a->exit_error;
        return scan_report_print(a->scan, format, out) > 0 ? 1 : 0;
}
