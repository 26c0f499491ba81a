/* See include/pullwatch/sinks.h. */
#include "pullwatch/sinks.h"

#include <inttypes.h>
#include <sys/uio.h>
#include <systemd/sd-id128.h>

#include "pullwatch/curlev.h"
#include "pullwatch/curlshim.h"
#include "pullwatch/journal.h"
#include "pullwatch/latch.h"
#include "pullwatch/log.h"
#include "pullwatch/ship.h"
#include "pullwatch/spool.h"
#include "pullwatch/util.h"

/* At exit, how long the entries journald has not read yet may hold the exit up. */
#define JOURNAL_EXIT_FLUSH_MSEC 20000

struct Sinks {
        const Config *config;
        Journal *journal; /* NULL: no journald output */
        bool stdout_json;
        ScanReport *scan; /* borrowed */
        CurlEv *curl;
        Spool *spool;
        Shipper *shipper;
        sd_event_source *post; /* defer: the spool's fsync, in the turn after an append */
        bool spool_dirty;
        uint64_t spool_lost; /* records that could not be spooled (they still went to journald/stdout) */
        uint64_t replays_skipped; /* records made again after a crash, found pending in the spool */
        bool replays_done;        /* the first listing is judged: no more replays to expect */
        FailLatch journal_fail, spool_fail;
        /* the inventory being made: its parts, spooled as one group at the end */
        struct iovec *inv;
        size_t n_inv, alloc_inv;
        uint64_t counts[_FINDING_KIND_MAX];
};

Sinks *sinks_free(Sinks *s) {
        if (!s)
                return NULL;
        sinks_inventory_done(s, false);
        /* what a failing spool cost in all (the run's last line on it) */
        if (s->spool_lost > 0)
                log_full(LOG_LEVEL_WARNING, "spool_error", 0,
                         "since start, %" PRIu64 " records could not be spooled and did not reach the endpoint "
                         "(they are in journald)",
                         s->spool_lost);
        sd_event_source_unref(s->post);
        if (s->journal) {
                /* what journald has not read yet: given time to, never dropped unsaid */
                uint64_t unsent = 0;
                int r = journal_flush(s->journal, JOURNAL_EXIT_FLUSH_MSEC, &unsent);
                if (r < 0 && unsent > 0)
                        log_warning_errno(r, "%" PRIu64 " journald entries could not be written before exit: %m",
                                          unsent);
        }
        journal_free(s->journal);
        ship_free(s->shipper);
        curlev_free(s->curl);
        spool_free(s->spool);
        free(s);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Sinks *, sinks_free);

/* SPOOL_FSYNC_BATCH: one fsync per loop turn that appended, however many records it
 * appended (a burst of events is one batch), in the loop's next turn. A defer source
 * enabled by the append, not a post source: sd-event runs post sources after every turn
 * that dispatched anything, each in a turn of its own — an epoll_wait more for every
 * turn of an agent with an endpoint, appended or not. */
static int on_post(sd_event_source *source, void *userdata) {
        Sinks *s = userdata;
        if (s->spool && s->spool_dirty) {
                s->spool_dirty = false;
                int r = spool_sync(s->spool);
                if (r < 0)
                        log_full(LOG_LEVEL_ERR, "spool_error", r, "cannot sync the spool: %m");
        }
        return 0;
}

static void on_ship_log(int level, const char *message, void *userdata) {
        log_full(level, "ship", 0, "%s", message);
}

static int spool_open_logged(Sinks *s, const Config *c) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/spool", c->state_dir);
        SpoolOpenReport rep = {0};
        int r = spool_open(&s->spool, dir, c->spool_max_bytes, c->spool_fsync_value, &rep);
        if (r < 0)
                return log_error_errno(r, "cannot open the spool %s: %m", dir);
        if (rep.trimmed_bytes > 0 || rep.corrupt_records > 0)
                log_full(LOG_LEVEL_WARNING, "spool_trimmed", 0,
                         "spool %s: discarded a torn tail of %" PRIu64 " bytes and %" PRIu64
                         " corrupt records after an unclean stop; %" PRIu64 " records kept",
                         dir, rep.trimmed_bytes, rep.corrupt_records, rep.records);
        if (rep.ack_state_reset)
                log_full(LOG_LEVEL_WARNING, "spool_ack_reset", 0,
                         "spool %s: the ack file was unreadable or held impossible sequence numbers;"
                         " every record on disk (%" PRIu64 ") will be sent again",
                         dir, rep.records);
        return 0;
}

static int shipper_new_logged(Sinks *s, sd_event *e, const Config *c) {
        char dead[4096], err[512] = "";
        snprintf(dead, sizeof dead, "%s/dead-letter.jsonl", c->state_dir);
        ShipLabel labels[1];
        ShipConfig sc;
        ship_config_init(&sc);
        sc.url = c->endpoint;
        sc.format = c->endpoint_format_value;
        sc.transport = c->endpoint_transport_value;
        sc.batch_max_records = c->batch_max_records;
        sc.batch_max_bytes = c->batch_max_bytes;
        sc.batch_max_age_usec = c->batch_max_age_usec;
        sc.timeout_usec = c->endpoint_timeout_usec;
        sc.retry_max_usec = c->retry_max_backoff_usec;
        sc.ca_file = isempty(c->endpoint_ca_file) ? NULL : c->endpoint_ca_file;
        sc.client_cert = isempty(c->endpoint_cert_file) ? NULL : c->endpoint_cert_file;
        sc.client_key = isempty(c->endpoint_key_file) ? NULL : c->endpoint_key_file;
        sc.bearer_token_file = isempty(c->endpoint_token_file) ? NULL : c->endpoint_token_file;
        sc.headers = (const char *const *) c->endpoint_headers.v;
        sc.n_headers = c->endpoint_headers.n;
        sc.insecure = c->endpoint_insecure;
        if (!isempty(c->cluster)) {
                labels[0] = (ShipLabel){"cluster", c->cluster};
                sc.labels = labels;
                sc.n_labels = 1;
        }
        sc.dead_letter_path = dead;
        int r = ship_new(&s->shipper, e, s->curl, s->spool, &sc, err, sizeof err);
        if (r < 0)
                return err[0] ? log_error_errno(r, "%s", err) : log_error_errno(r, "%m");
        ship_set_log_callback(s->shipper, on_ship_log, s);
        return 0;
}

/* Only shipping needs an HTTP client: GnuTLS (native, for https://) or libcurl is
 * loaded now, not by the dynamic linker. */
static int endpoint_open(Sinks *s, sd_event *e, const Config *c) {
        char err[512] = "";
        int r;
        if (c->endpoint_transport_value == SHIP_TRANSPORT_CURL) {
                r = curlshim_load(err, sizeof err);
                if (r < 0)
                        return log_error_errno(r, "endpoint %s: %s", c->endpoint, err);
                r = curlev_new(&s->curl, e);
                if (r < 0)
                        return log_error_errno(r, "cannot set up libcurl: %m");
        }
        r = spool_open_logged(s, c);
        if (r < 0)
                return r;
        r = shipper_new_logged(s, e, c);
        if (r < 0)
                return r;
        r = sd_event_add_defer(e, &s->post, on_post, s);
        if (r < 0)
                return log_error_errno(r, "cannot create the spool sync hook: %m");
        (void) sd_event_source_set_description(s->post, "spool-sync");
        r = sd_event_source_set_enabled(s->post, SD_EVENT_OFF);
        if (r < 0)
                return log_error_errno(r, "cannot create the spool sync hook: %m");
        return 0;
}

static void on_journal_lost(int error, uint64_t n, void *userdata);

int sinks_new(Sinks **ret, sd_event *e, const Config *c) {
        _cleanup_(sinks_freep) Sinks *s = calloc(1, sizeof *s);
        if (!s)
                return log_error_errno(ENOMEM, "out of memory");
        s->config = c;
        int r = journal_new(&s->journal, NULL, JOURNAL_SNDBUF);
        if (r < 0)
                return log_error_errno(r, "cannot set up the journald output: %m");
        r = journal_attach_event(s->journal, e, on_journal_lost, s);
        if (r < 0)
                return log_error_errno(r, "cannot set up the journald output: %m");
        s->stdout_json = c->stdout_json;
        if (!isempty(c->endpoint)) {
                r = endpoint_open(s, e, c);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(s);
        return 0;
}

int sinks_new_scan(Sinks **ret, const Config *c, ScanReport *scan) {
        Sinks *s = calloc(1, sizeof *s);
        if (!s)
                return log_error_errno(ENOMEM, "out of memory");
        s->config = c;
        s->scan = scan;
        *ret = s;
        return 0;
}

bool sinks_has_endpoint(const Sinks *s) {
        return s && s->spool;
}

static void spool_record(Sinks *s, const Finding *f, const char *json) {
        uint64_t seq;
        /* made again after a crash (the ledger was not saved yet) and still waiting in the
         * spool: a second copy would only cost disk and the endpoint (a crash loop
         * re-spooled every record on every restart). journald and stdout still get it. */
        if (spool_pending_at_open(s->spool, f->id)) {
                s->replays_skipped++;
                return;
        }
        int r = spool_append(s->spool, json, strlen(json), &seq);
        if (r < 0) {
                s->spool_lost++;
                if (latch_fail(&s->spool_fail, r))
                        log_full(LOG_LEVEL_ERR, "spool_error", r,
                                 "cannot spool %s record for %s: %m; it still goes to journald, and "
                                 "this is said once until spooling works again",
                                 finding_kind_to_string(f->kind), f->image.ref);
                return;
        }
        uint64_t n = latch_ok(&s->spool_fail);
        if (n > 0)
                log_full(LOG_LEVEL_WARNING, "spool_error", 0,
                         "spooling works again; %" PRIu64 " records could not be spooled and will "
                         "not reach the endpoint (they are in journald)",
                         n);
        s->spool_dirty = true;
        (void) sd_event_source_set_enabled(s->post, SD_EVENT_ONESHOT);
        (void) ship_kick(s->shipper);
}

static void journal_failed(Sinks *s, int r, uint64_t n) {
        bool news = latch_fail(&s->journal_fail, r);
        s->journal_fail.count += n - 1;
        if (!news)
                return;
        if (r == -ENOENT)
                log_warning("cannot write to journald: its socket " JOURNAL_SOCKET
                            " is missing, continuing with the other outputs");
        else
                log_warning_errno(r, "cannot write to journald: %m, continuing with the other outputs");
}

/* entries that waited for journald (see journal_attach_event()) and could not be sent */
static void on_journal_lost(int error, uint64_t n, void *userdata) {
        journal_failed(userdata, error, n);
}

static void journal_record(Sinks *s, const Finding *f) {
        int r = journal_send_finding(s->journal, f);
        if (r < 0) {
                journal_failed(s, r, 1);
                return;
        }
        uint64_t n = latch_ok(&s->journal_fail);
        if (n > 0)
                log_notice("journald works again; %" PRIu64 " entries could not be written", n);
}

/* key: what makes this record this record; its id derives from it, so a record raised
 * again after a crash carries the same id. NULL: a random id. */
static void complete(Sinks *s, Finding *f, const char *key) {
        sd_id128_t id;
        if (key)
                finding_id_from_key(key, f->id);
        else if (sd_id128_randomize(&id) >= 0)
                sd_id128_to_string(id, f->id);
        strcpy_bounded(f->node, sizeof f->node, s->config->node);
        if (f->time_usec == 0)
                f->time_usec = now_usec_realtime();
        if (!f->message[0]) /* the judge may have written a longer one already */
                finding_format_message(f);
        if (f->kind >= 0 && f->kind < _FINDING_KIND_MAX)
                s->counts[f->kind]++;
}

void sinks_emit(Sinks *s, Finding *f, const char *key) {
        complete(s, f, key);
        if (s->scan)
                scan_report_finding(s->scan, f);

        _cleanup_free_ char *json = NULL;
        if ((s->spool || s->stdout_json) && finding_to_json_string(f, &json) < 0)
                /* never a reason to lose it everywhere: journald still gets it */
                log_error("cannot encode %s record for %s as JSON, it goes to journald only",
                          finding_kind_to_string(f->kind), f->image.ref);
        if (s->spool && json)
                spool_record(s, f, json);
        if (s->journal)
                journal_record(s, f);
        if (s->stdout_json && json) {
                fputs(json, stdout);
                fputc('\n', stdout);
                fflush(stdout);
        }
}

int sinks_inventory_part(Sinks *s, const char *json, size_t len) {
        if (!s->spool)
                return -ENODEV;
        if (greedy_realloc((void **) &s->inv, &s->alloc_inv, s->n_inv + 1, sizeof *s->inv, 4) < 0)
                return -ENOMEM;
        void *copy = malloc(len ? len : 1);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, json, len);
        s->inv[s->n_inv++] = (struct iovec) {copy, len};
        return 0;
}

void sinks_inventory_done(Sinks *s, bool complete) {
        if (complete && s->n_inv > 0) {
                SpoolStats st;
                spool_get_stats(s->spool, &st);
                int r = spool_replace_latest(s->spool, s->inv, s->n_inv);
                if (r == -ENOSPC)
                        log_full(LOG_LEVEL_WARNING, "spool_full", r,
                                 "the inventory (%zu parts) does not fit in the spool beside %" PRIu64
                                 " pending records; not spooled (a pull or a finding is never dropped for it)",
                                 s->n_inv, st.pending_records);
                else if (r < 0)
                        log_full(LOG_LEVEL_ERR, "spool_error", r, "cannot spool the inventory: %m");
                else
                        (void) ship_kick(s->shipper);
        }
        for (size_t i = 0; i < s->n_inv; i++)
                free(s->inv[i].iov_base);
        free(s->inv);
        s->inv = NULL;
        s->n_inv = s->alloc_inv = 0;
}

void sinks_listing_done(Sinks *s) {
        if (!s || !s->spool || s->replays_done)
                return;
        s->replays_done = true;
        if (s->replays_skipped > 0)
                log_info("%" PRIu64 " records made again after an unclean stop were already in the spool; "
                         "not spooled twice",
                         s->replays_skipped);
        spool_forget_pending_at_open(s->spool);
}

void sinks_hold_journal(Sinks *s, bool hold) {
        if (s && s->journal)
                journal_hold(s->journal, hold);
}

void sinks_kick(Sinks *s) {
        if (s->shipper)
                (void) ship_kick(s->shipper);
}

void sinks_metrics(const Sinks *s, MetricsSnapshot *m) {
        if (s->shipper) {
                ShipStats st;
                ship_get_stats(s->shipper, &st);
                metrics_from_ship_stats(m, &st);
        }
        for (int k = 0; k < _FINDING_KIND_MAX; k++)
                (void) metrics_set_findings(m, finding_kind_to_string(k), s->counts[k]);
}

void sinks_sync(Sinks *s) {
        if (s && s->spool)
                (void) spool_sync(s->spool);
}
