/* The agent: one context (Agent) wiring containerd, ledger, policy, journald, stdout,
 * spool and shipper on one sd-event loop.
 *
 * Data flow for one image record:
 *   event (/images/create|update) or listing ─► Job (FIFO) ─► Images.Get (events only)
 *   ─► resolve (index → platform manifest → config: revision label; cached by digest)
 *   ─► in FIFO order: group (one pull, one record) ─► ledger ─► policy ─► emit
 * Jobs run concurrently (bounded) but are *processed* in the order their events
 * arrived, so that the CRI plugin's tag record is always judged before its repo-digest
 * twin, and a tag_moved is computed against the digest seen just before. */
#include "pullwatch/agent.h"

#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <systemd/sd-id128.h>

#include "pullwatch/containerd.h"
#include "pullwatch/curlev.h"
#include "pullwatch/curlshim.h"
#include "pullwatch/finding.h"
#include "pullwatch/journal.h"
#include "pullwatch/ledger.h"
#include "pullwatch/log.h"
#include "pullwatch/metrics.h"
#include "pullwatch/observation.h"
#include "pullwatch/pins.h"
#include "pullwatch/policy.h"
#include "pullwatch/ref.h"
#include "pullwatch/ship.h"
#include "pullwatch/spool.h"
#include "pullwatch/timefmt.h"
#include "pullwatch/util.h"

#define JOBS_IN_FLIGHT_MAX 64         /* concurrent lookups: pipelined on the one HTTP/2 connection */
#define JOBS_QUEUED_MAX 100000        /* beyond: events are dropped (and counted) */
#define RESOLVE_CACHE_MAX 256         /* digest → config facts, content-addressed */
#define WORKLOADS_MAX 4096            /* container findings already raised (hashes, in memory) */
#define CONTAINERS_MAX 16384          /* containers known to run an image (tag_moved pods) */
#define RECONNECT_MIN_USEC (250 * 1000ULL)
#define RECONNECT_MAX_USEC (10 * 1000000ULL)
#define CATCHUP_DELAY_USEC (3 * 1000000ULL) /* second listing after a (re)connect */
#define LEDGER_SAVE_DELAY_USEC (2 * 1000000ULL)
#define METRICS_INTERVAL_USEC (15 * 1000000ULL)
#define CALL_TIMEOUT_USEC (30 * 1000000ULL)
#define PODS_TEXT_MAX 512

typedef enum AgentMode { MODE_RUN, MODE_SCAN } AgentMode;

typedef enum JobType {
        JOB_IMAGE,     /* an image record: from an event (needs Images.Get) or a listing */
        JOB_CONTAINER, /* a container created/started: attribute findings to its workload */
} JobType;

typedef enum JobState { JOB_QUEUED, JOB_RUNNING, JOB_DONE } JobState;

typedef struct Agent Agent;
typedef struct Job Job;

/* Memory is spent only on what the node has: the caches below are allocated per entry
 * (an idle agent with 1,000 images stays near 1 MiB private dirty). */
typedef struct ResolveEntry {
        char digest[PW_DIGEST_MAX]; /* target */
        char platform_digest[PW_DIGEST_MAX];
        char config_digest[PW_DIGEST_MAX];
        bool has_revision;
        char revision[PW_REVISION_MAX];
} ResolveEntry;


/* Compact: a listing of thousands of images queues thousands of jobs at once, so a job
 * holds its strings at their length; the (large, fixed-size) Observation is built on the
 * stack only when the job is judged. Every pointer is owned by the job (job_free). */
struct Job {
        Job *next;
        Agent *agent;
        JobType type;
        JobState state;
        uint64_t generation; /* connection generation that made it */
        uint64_t time_usec;  /* event time, or when listed */
        bool from_listing;
        bool counted_listing; /* part of a->listing_jobs */
        bool have_target;     /* digest/media_type known (listing, or after Images.Get) */
        bool skip;            /* nothing to judge (a sandbox container) */
        int error;            /* <0: lookups failed; the job is dropped when processed */
        char *reason;         /* why, when error < 0 */
        char *ns;
        char *image;          /* image record name */
        char *container_id;   /* container jobs */
        char *digest, *media_type;
        FindingWorkload *workload; /* container jobs, once Containers.Get answered */
        ResolveEntry *config;      /* copy of the resolved config facts, once known */
};

/* A container known to run an image, for the pod list of a tag_moved. */
typedef struct ContainerSeen {
        char *ns, *id, *image_key; /* image_key: normalised reference */
        char digest[PW_DIGEST_MAX];
        char *pod;                 /* "k8sns/pod" or the container id */
        FindingWorkload *workload; /* full attribution for the finding */
} ContainerSeen;

/* One line when an output starts failing (or fails differently), one when it recovers
 * with how many attempts failed meanwhile: a full disk or a dead journald must not turn
 * every record into a log line. */
typedef struct FailLatch {
        int error;      /* the current run's error, 0 when working */
        uint64_t count; /* failures in the current run */
} FailLatch;

struct Agent {
        AgentMode mode;
        const Config *config;
        sd_event *event;
        CurlEv *curl;
        Ctrd *ctrd;
        Policy *policy;
        Pins *pins;
        Ledger *ledger;
        Spool *spool;
        Shipper *shipper;

        /* connection */
        bool connected;
        bool ready_notified;
        uint64_t generation;
        uint64_t reconnect_usec;
        char last_connect_error[256];
        CtrdCall *subscription;
        sd_event_source *reconnect_timer, *catchup_timer;
        unsigned listing_pending; /* listing calls of the current generation in flight */
        size_t listed_images;

        /* job FIFO */
        Job *head, *tail, *next_to_start;
        size_t queued, running;
        bool pumping;
        bool listing_active; /* a reconcile's listing is under way */
        uint64_t dropped_events;

        ResolveEntry *resolve_cache[RESOLVE_CACHE_MAX];
        size_t resolve_next;
        uint64_t workloads[WORKLOADS_MAX]; /* FNV-1a of the dedup key; 0 = empty */
        size_t workloads_next;
        ContainerSeen *containers;
        size_t n_containers, cap_containers;

        /* outputs */
        uint64_t counts[_FINDING_KIND_MAX];
        FailLatch journal_fail, spool_fail, ledger_fail;
        uint64_t spool_lost; /* records that could not be spooled (they still went to journald/stdout) */
        bool spool_dirty;
        sd_event_source *post;
        sd_event_source *ledger_timer, *metrics_timer, *pins_watch, *pins_timer;

        /* node inventory (issue: compliance percentages need the whole picture, not
         * only the violations): collected during a listing, shipped when it completes */
        json_t *inventory;
        size_t listing_jobs;
        sd_event_source *inventory_timer;

        /* scan */
        json_t *scan_findings;
        json_t *scan_rows;
        int exit_error;
};

static void job_pump(Agent *a);

/* Fire the CLOCK_MONOTONIC timer s once, delay_usec from the loop's now. */
static void arm_oneshot(sd_event_source *s, uint64_t delay_usec) {
        uint64_t now;
        if (sd_event_now(sd_event_source_get_event(s), CLOCK_MONOTONIC, &now) < 0)
                return;
        (void) sd_event_source_set_time(s, now + delay_usec);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}


static bool latch_fail(FailLatch *l, int error) {
        bool report = l->error != error;
        l->error = error;
        l->count = report ? 1 : l->count + 1;
        return report;
}

/* Returns the number of failures of the run that just ended (0 if it was working). */
static uint64_t latch_ok(FailLatch *l) {
        uint64_t n = l->error ? l->count : 0;
        *l = (FailLatch){0};
        return n;
}

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
static void agent_connect(Agent *a);

/* ---------------------------------------------------------------- outputs */

/* key: what makes this record this record (see record_key()); its id derives from it,
 * so a record raised again after a crash carries the same id. NULL: a random id. */
static void emit(Agent *a, Finding *f, const char *key) {
        sd_id128_t id;
        if (key)
                finding_id_from_key(key, f->id);
        else if (sd_id128_randomize(&id) >= 0)
                sd_id128_to_string(id, f->id);
        strcpy_bounded(f->node, sizeof f->node, a->config->node);
        if (f->time_usec == 0)
                f->time_usec = now_usec_realtime();
        if (!f->message[0]) /* pods_on_digest() may have written a longer one already */
                finding_format_message(f);
        if (f->kind >= 0 && f->kind < _FINDING_KIND_MAX)
                a->counts[f->kind]++;

        if (a->mode == MODE_SCAN) {
                json_t *j = NULL;
                if (f->kind != FINDING_PULL && finding_to_json(f, &j) >= 0)
                        json_array_append_new(a->scan_findings, j);
                return;
        }

        _cleanup_free_ char *json = NULL;
        int r = 0;
        if (a->spool || a->config->stdout_json) /* JSON only for the outputs that take it */
                r = finding_to_json_string(f, &json);
        if (r < 0) {
                log_error("cannot encode %s record for %s as JSON, ignoring", finding_kind_to_string(f->kind),
                          f->image.ref);
                return;
        }
        /* The spool first: a record counts as emitted only once it is durable there, so a
         * SIGKILL between the outputs can duplicate a line on stdout, never lose a record. */
        if (a->spool) {
                uint64_t seq;
                r = spool_append(a->spool, json, strlen(json), &seq);
                if (r < 0) {
                        a->spool_lost++;
                        if (latch_fail(&a->spool_fail, r))
                                log_full(LOG_LEVEL_ERR, "spool_error", r,
                                         "cannot spool %s record for %s: %s; it still goes to journald, and "
                                         "this is said once until spooling works again",
                                         finding_kind_to_string(f->kind), f->image.ref, strerror(-r));
                } else {
                        uint64_t n = latch_ok(&a->spool_fail);
                        if (n > 0)
                                log_full(LOG_LEVEL_WARNING, "spool_error", 0,
                                         "spooling works again; %" PRIu64 " records could not be spooled and will "
                                         "not reach the endpoint (they are in journald)",
                                         n);
                        a->spool_dirty = true;
                        if (a->shipper)
                                (void) ship_kick(a->shipper);
                }
        }

        r = journal_send_finding(f);
        if (r < 0) {
                if (latch_fail(&a->journal_fail, r))
                        log_warning_errno(r, "cannot write to journald: %s, continuing with the other outputs",
                                          strerror(-r));
        } else {
                uint64_t n = latch_ok(&a->journal_fail);
                if (n > 0)
                        log_notice("journald works again; %" PRIu64 " entries could not be written", n);
        }

        if (a->config->stdout_json) {
                fputs(json, stdout);
                fputc('\n', stdout);
                fflush(stdout);
        }
}

/* ---------------------------------------------------------------- ledger & metrics */

static void ledger_schedule_save(Agent *a);

static int on_ledger_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;
        if (a->ledger && ledger_is_dirty(a->ledger)) {
                int r = ledger_save(a->ledger);
                if (r < 0) {
                        if (latch_fail(&a->ledger_fail, r))
                                log_warning_errno(r, "cannot save the ledger in %s: %s; it stays in memory, retrying",
                                                  a->config->state_dir, strerror(-r));
                        ledger_schedule_save(a); /* the dirty flag stays: try again later */
                } else {
                        if (latch_ok(&a->ledger_fail) > 0)
                                log_notice("the ledger in %s is saved again", a->config->state_dir);
                        if (r > 0)
                                log_warning("the ledger in %s reached %u MiB: its %d oldest entries were pruned "
                                            "to fit (lower ledger_max_entries)",
                                            a->config->state_dir, LEDGER_FILE_MAX >> 20, r);
                }
                /* a burst and the save's buffers leave freed heap behind: give it back, so an
                 * idle agent's private dirty memory is what it holds, not what it once held */
                malloc_trim(0);
        }
        return 0;
}

static void ledger_schedule_save(Agent *a) {
        if (a->mode != MODE_RUN || !a->ledger_timer)
                return;
        int enabled = SD_EVENT_OFF;
        sd_event_source_get_enabled(a->ledger_timer, &enabled);
        if (enabled != SD_EVENT_OFF)
                return;
        arm_oneshot(a->ledger_timer, LEDGER_SAVE_DELAY_USEC);
}

/* SPOOL_FSYNC_BATCH: one fsync per loop turn that appended, however many records it
 * appended (a burst of events is one batch). */
static int on_post(sd_event_source *s, void *userdata) {
        Agent *a = userdata;
        if (a->spool && a->spool_dirty) {
                a->spool_dirty = false;
                int r = spool_sync(a->spool);
                if (r < 0)
                        log_full(LOG_LEVEL_ERR, "spool_error", r, "cannot sync the spool: %s", strerror(-r));
        }
        return 0;
}

static void metrics_write(Agent *a) {
        MetricsSnapshot m;
        metrics_init(&m);
        if (a->shipper) {
                ShipStats st;
                ship_get_stats(a->shipper, &st);
                metrics_from_ship_stats(&m, &st);
        }
        m.containerd_connected = a->connected;
        for (int k = 0; k < _FINDING_KIND_MAX; k++)
                (void) metrics_set_findings(&m, finding_kind_to_string(k), a->counts[k]);
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
        Agent *a = userdata;
        metrics_write(a);
        sd_event_source_set_time(s, usec + METRICS_INTERVAL_USEC);
        return 0;
}

/* ---------------------------------------------------------------- judging one record */

static uint64_t fnv1a(const char *s) {
        uint64_t h = 1469598103934665603ULL;
        for (; *s; s++)
                h = (h ^ (uint8_t) *s) * 1099511628211ULL;
        return h ? h : 1;
}

/* Ring of hashes: a workload's finding is raised once per (kind, digest) while it is
 * remembered; the oldest is forgotten first. */
static bool workload_seen(Agent *a, const char *key) {
        uint64_t h = fnv1a(key);
        for (size_t i = 0; i < WORKLOADS_MAX; i++)
                if (a->workloads[i] == h)
                        return true;
        a->workloads[a->workloads_next] = h;
        a->workloads_next = (a->workloads_next + 1) % WORKLOADS_MAX;
        return false;
}

static int normalise(const char *ref, char *buf, size_t size) {
        Ref r;
        int k = ref_parse(ref, &r, NULL, 0);
        return k < 0 ? k : ref_format(&r, buf, size);
}

static ContainerSeen *container_find(Agent *a, const char *ns, const char *id) {
        for (size_t i = 0; i < a->n_containers; i++)
                if (streq_ptr(a->containers[i].ns, ns) && streq_ptr(a->containers[i].id, id))
                        return &a->containers[i];
        return NULL;
}

static void container_clear(ContainerSeen *c) {
        free(c->ns);
        free(c->id);
        free(c->image_key);
        free(c->pod);
        free(c->workload);
}

static void container_remember(Agent *a, const char *ns, const char *id, const char *image, const char *digest,
                               const FindingWorkload *w) {
        char key[PW_REF_MAX];
        if (container_find(a, ns, id) || normalise(image, key, sizeof key) < 0)
                return; /* keep the digest it was first seen with: that is what it runs */
        if (a->n_containers >= CONTAINERS_MAX)
                return; /* the pod list of a tag_moved is then partial */
        if (greedy_realloc((void **) &a->containers, &a->cap_containers, a->n_containers + 1, sizeof(ContainerSeen),
                           64) < 0)
                return;
        ContainerSeen c = {0};
        char pod[2 * PW_K8S_NAME_MAX + 2];
        if (w->pod[0])
                snprintf(pod, sizeof pod, "%s/%s", w->namespace, w->pod);
        else
                snprintf(pod, sizeof pod, "%s", id);
        c.ns = strdup(ns);
        c.id = strdup(id);
        c.image_key = strdup(key);
        c.pod = strdup(pod);
        c.workload = malloc(sizeof *c.workload);
        if (!c.ns || !c.id || !c.image_key || !c.pod || !c.workload) {
                container_clear(&c);
                return;
        }
        *c.workload = *w;
        strcpy_bounded(c.digest, sizeof c.digest, digest);
        a->containers[a->n_containers++] = c;
}

static void container_forget(Agent *a, const char *ns, const char *id) {
        ContainerSeen *c = container_find(a, ns, id);
        if (!c)
                return;
        container_clear(c);
        *c = a->containers[--a->n_containers];
}

/* The pods still running the previous digest of a moved tag, for the tag_moved finding. */
static void pods_on_digest(Agent *a, const char *ns, const char *ref, const char *digest, Finding *f) {
        char text[PODS_TEXT_MAX] = "", key[PW_REF_MAX];
        size_t len = 0, n = 0;
        if (normalise(ref, key, sizeof key) < 0)
                return;
        for (size_t i = 0; i < a->n_containers; i++) {
                ContainerSeen *c = &a->containers[i];
                if (!streq_ptr(c->ns, ns) || !streq_ptr(c->digest, digest) || !streq_ptr(c->image_key, key))
                        continue;
                if (n++ == 0)
                        f->workload = *c->workload;
                int w = snprintf(text + len, sizeof text - len, "%s%s", len ? ", " : "", c->pod);
                if (w < 0 || (size_t) w >= sizeof text - len)
                        break;
                len += (size_t) w;
        }
        if (n > 0) {
                finding_format_message(f);
                size_t ml = strlen(f->message);
                snprintf(f->message + ml, sizeof f->message - ml, "; still running the previous digest: %s", text);
        }
}

/* Scan output: one row per image record judged. */
static void scan_row(Agent *a, const Observation *o, const Finding *fs, size_t n) {
        json_t *kinds = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(kinds, json_string(finding_kind_to_string(fs[i].kind)));
        json_array_append_new(a->scan_rows, json_pack("{s:s, s:s, s:s, s:o}", "namespace", o->namespace, "ref",
                                                      o->ref, "digest", o->digest, "findings", kinds));
}

static void inventory_add(Agent *a, const Observation *o, const Ref *ref, const Finding *fs, size_t n) {
        json_t *kinds = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(kinds, json_string(finding_kind_to_string(fs[i].kind)));
        json_array_append_new(a->inventory,
                              json_pack("{s:s, s:s, s:s, s:s, s:b, s:o}", "namespace", o->namespace, "ref", o->ref,
                                        "tag", ref->tag, "digest", o->digest, "compliant", n == 0, "findings", kinds));
}

#define INVENTORY_PART_MAX 1000 /* images per record: keeps a record far below the spool's 1 MiB */

/* One or more `inventory` records: the node's current images with their compliance. */
static void inventory_flush(Agent *a) {
        json_t *all = TAKE_PTR(a->inventory);
        size_t total = json_array_size(all), compliant = 0, i;
        json_t *row;
        json_array_foreach(all, i, row) compliant += json_is_true(json_object_get(row, "compliant"));
        size_t parts = total == 0 ? 1 : (total + INVENTORY_PART_MAX - 1) / INVENTORY_PART_MAX;
        char ts[TIMEFMT_MAX] = "";
        (void) timefmt_utc(now_usec_realtime(), TIMEFMT_RFC3339_USEC, ts, sizeof ts);
        for (size_t p = 0; p < parts; p++) {
                json_t *images = json_array();
                for (size_t k = p * INVENTORY_PART_MAX; k < total && k < (p + 1) * INVENTORY_PART_MAX; k++)
                        json_array_append(images, json_array_get(all, k));
                sd_id128_t id;
                char ids[SD_ID128_STRING_MAX] = "";
                if (sd_id128_randomize(&id) >= 0)
                        sd_id128_to_string(id, ids);
                json_t *rec = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:o}", "schema",
                                        PW_SCHEMA_VERSION, "id", ids, "kind", "inventory", "severity", "info", "time",
                                        ts, "node", a->config->node, "total", (json_int_t) total, "compliant",
                                        (json_int_t) compliant, "part", (json_int_t) p + 1, "parts",
                                        (json_int_t) parts, "images", images);
                if (rec && !isempty(a->config->cluster))
                        json_object_set_new(rec, "cluster", json_string(a->config->cluster));
                _cleanup_free_ char *text = rec ? json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
                json_decref(rec);
                if (!text) {
                        log_error("cannot encode the inventory, ignoring");
                        break;
                }
                uint64_t seq;
                int r = spool_append(a->spool, text, strlen(text), &seq);
                if (r < 0) {
                        log_full(LOG_LEVEL_ERR, "spool_error", r, "cannot spool the inventory: %s", strerror(-r));
                        break;
                }
                a->spool_dirty = true;
        }
        if (a->shipper)
                (void) ship_kick(a->shipper);
        log_info("inventory: %zu image records, %zu compliant (%.1f%%)", total, compliant,
                 total ? 100.0 * (double) compliant / (double) total : 100.0);
        json_decref(all);
}

/* node | what | digest | kind | reminder period: one record per period at most, so a
 * reminder is a new record and a crash-repeat is not. */
static void record_key(Agent *a, const char *what, const char *digest, FindingKind kind, uint64_t now, char *buf,
                       size_t size) {
        uint64_t period = a->config->reminder_interval_usec ? now / a->config->reminder_interval_usec : 0;
        snprintf(buf, size, "%s|%s|%s|%s|%" PRIu64, a->config->node, what, digest, finding_kind_to_string(kind),
                 period);
}

static void process_image(Agent *a, Job *j) {
        Observation obs, *o = &obs;
        char err[256] = "";
        if (job_observation(j, o) < 0) {
                log_warning("ignoring image record in namespace %s: a field is too long", j->ns);
                return;
        }
        Ref ref;
        if (ref_parse(o->ref, &ref, err, sizeof err) < 0) {
                log_warning("ignoring image record \"%.*s\" in namespace %s: %s", 200, o->ref, o->namespace, err);
                return;
        }
        if (ref.is_image_id)
                return; /* CRI's image-id twin of a named record: never a record of its own */

        char name[PW_NAME_MAX] = "";
        (void) ref_name(&ref, name, sizeof name);
        if (ref.is_digest_only && j->type == JOB_IMAGE && a->ledger) {
                /* CRI's repo-digest twin: if a tagged record of the same repository already
                 * resolved to this digest, the pull was recorded under the tag. */
                if (ledger_tagged_current(a->ledger, o->namespace, name, o->digest))
                        return;
        }

        char previous[PW_DIGEST_MAX] = "";
        bool changed = false, tagged = ref.tag[0] != 0;
        uint64_t now = now_usec_realtime();
        if (j->type == JOB_IMAGE && a->ledger) {
                int r = ledger_record(a->ledger, o->namespace, o->ref, o->digest, now, previous, &changed);
                if (r < 0)
                        log_warning_errno(r, "cannot record %s in the ledger: %s, ignoring", o->ref, strerror(-r));
                else
                        ledger_schedule_save(a);
        }
        if (!tagged)
                changed = false;

        Finding fs[POLICY_FINDINGS_MAX];
        size_t n = 0;
        int r = policy_evaluate(a->policy, o, changed ? previous : NULL, a->pins, fs, ELEMENTSOF(fs), &n, err,
                                sizeof err);
        if (r < 0) {
                log_warning("cannot judge %s in namespace %s: %s, ignoring", o->ref, o->namespace, err);
                return;
        }

        if (j->from_listing && a->inventory)
                inventory_add(a, o, &ref, fs, n);

        if (a->mode == MODE_SCAN) {
                scan_row(a, o, fs, n);
                for (size_t i = 0; i < n; i++)
                        emit(a, &fs[i], NULL);
                return;
        }

        uint64_t reminder = a->config->reminder_interval_usec;
        char what[PW_NS_MAX + PW_REF_MAX + 4 * PW_K8S_NAME_MAX + 8], key[sizeof what + 256];
        if (j->type == JOB_IMAGE) {
                /* A move is a change each time it happens, even back to a digest seen before
                 * (A→B→A→B): the pull and the tag_moved are raised then whatever the raised set
                 * says. Their ids carry the transition and when this move was last raised, so a
                 * second A→B is a new record while a re-report after a crash (the ledger not
                 * yet saved) repeats the id it had. */
                uint64_t last_move = 0;
                if (changed && a->ledger)
                        (void) ledger_last_raised(a->ledger, o->namespace, o->ref, o->digest, "tag_moved", &last_move);
                if (changed)
                        snprintf(what, sizeof what, "%s|%s|from %s|%" PRIu64, o->namespace, o->ref, previous,
                                 last_move);
                else
                        snprintf(what, sizeof what, "%s|%s", o->namespace, o->ref);
                if (ledger_raise(a->ledger, o->namespace, o->ref, o->digest, "pull", now, 0,
                                 changed ? LEDGER_RAISE_ALWAYS : 0, NULL) > 0) {
                        Finding pull = {.kind = FINDING_PULL, .severity = SEVERITY_INFO, .time_usec = o->time_usec};
                        strcpy_bounded(pull.namespace, sizeof pull.namespace, o->namespace);
                        strcpy_bounded(pull.image.ref, sizeof pull.image.ref, o->ref);
                        strcpy_bounded(pull.image.name, sizeof pull.image.name, name);
                        strcpy_bounded(pull.image.tag, sizeof pull.image.tag, ref.tag);
                        pull.image.tag_implicit = ref.tag_implicit;
                        strcpy_bounded(pull.image.digest, sizeof pull.image.digest, o->digest);
                        strcpy_bounded(pull.image.media_type, sizeof pull.image.media_type, o->media_type);
                        if (o->has_revision)
                                strcpy_bounded(pull.image.revision, sizeof pull.image.revision, o->revision);
                        record_key(a, what, o->digest, FINDING_PULL, 0, key, sizeof key);
                        emit(a, &pull, key);
                }
                for (size_t i = 0; i < n; i++) {
                        const char *kind = finding_kind_to_string(fs[i].kind);
                        bool transition = fs[i].kind == FINDING_TAG_MOVED;
                        if (ledger_raise(a->ledger, o->namespace, o->ref, o->digest, kind, now, reminder,
                                         transition ? LEDGER_RAISE_ALWAYS : 0, NULL) == 0)
                                continue;
                        if (fs[i].kind == FINDING_TAG_MOVED)
                                pods_on_digest(a, o->namespace, o->ref, previous, &fs[i]);
                        record_key(a, what, o->digest, fs[i].kind, now, key, sizeof key);
                        emit(a, &fs[i], key);
                }
                return;
        }

        /* A container: its findings name the workload, once per workload, digest and kind
         * (a crash-looping pod does not flood). */
        for (size_t i = 0; i < n; i++) {
                if (fs[i].kind == FINDING_TAG_MOVED)
                        continue; /* a pull-time finding */
                const FindingWorkload *w = &o->workload;
                snprintf(what, sizeof what, "%s|%s|%s/%s/%s", o->namespace, o->ref, w->namespace,
                         w->pod[0] ? w->pod : w->container_id, w->container);
                record_key(a, what, o->digest, fs[i].kind, now, key, sizeof key);
                if (workload_seen(a, key))
                        continue;
                emit(a, &fs[i], key);
        }
}

/* Drain finished jobs from the head of the FIFO, in order. */
static void job_drain(Agent *a) {
        while (a->head && a->head->state == JOB_DONE) {
                Job *j = a->head;
                a->head = j->next;
                if (!a->head)
                        a->tail = NULL;
                a->queued--;
                if (j->counted_listing)
                        a->listing_jobs--;
                if (j->error < 0) {
                        if (j->generation == a->generation && j->error != -ENOENT)
                                log_warning("cannot look up %s %s in namespace %s: %s, ignoring",
                                            j->type == JOB_IMAGE ? "image" : "container",
                                            j->type == JOB_IMAGE ? j->image : j->container_id, j->ns, j->reason);
                } else if (!j->skip)
                        process_image(a, j);
                job_free(j);
        }
        if (a->mode == MODE_SCAN && !a->head && a->listing_pending == 0)
                sd_event_exit(a->event, 0);
        if (a->listing_pending == 0 && a->listing_jobs == 0 && a->listing_active) {
                a->listing_active = false;
                if (a->inventory)
                        inventory_flush(a);
                malloc_trim(0); /* a listing's jobs are gone: return their memory */
        }
        if (a->mode == MODE_RUN && !a->ready_notified && a->connected && a->listing_pending == 0 && !a->head) {
                a->ready_notified = true;
                log_info("subscribed to containerd events at %s (%zu image records listed)", a->config->address,
                         a->listed_images);
                (void) sd_notify(false, "READY=1\nSTATUS=watching containerd");
        }
}

static void job_finish(Job *j, int error, const char *reason) {
        Agent *a = j->agent;
        j->state = JOB_DONE;
        j->error = error;
        if (error < 0 && dup_str(&j->reason, reason ? reason : strerror(-error)) < 0)
                j->reason = NULL;
        a->running--;
        job_drain(a);
        job_pump(a);
}

static ResolveEntry *resolve_lookup(Agent *a, const char *digest) {
        for (size_t i = 0; i < RESOLVE_CACHE_MAX; i++)
                if (a->resolve_cache[i] && streq_ptr(a->resolve_cache[i]->digest, digest))
                        return a->resolve_cache[i];
        return NULL;
}

static const ResolveEntry *resolve_store(Agent *a, const char *digest, const CtrdImageConfig *cfg) {
        ResolveEntry *e = a->resolve_cache[a->resolve_next];
        if (!e) {
                e = malloc(sizeof *e);
                if (!e)
                        return NULL;
                a->resolve_cache[a->resolve_next] = e;
        }
        a->resolve_next = (a->resolve_next + 1) % RESOLVE_CACHE_MAX;
        strcpy_bounded(e->digest, sizeof e->digest, digest);
        strcpy_bounded(e->platform_digest, sizeof e->platform_digest, cfg->platform_digest);
        strcpy_bounded(e->config_digest, sizeof e->config_digest, cfg->config_digest);
        e->has_revision = cfg->has_revision;
        strcpy_bounded(e->revision, sizeof e->revision, cfg->revision);
        return e;
}

static void apply_config(Job *j, const ResolveEntry *e) {
        if (!j->config)
                j->config = malloc(sizeof *j->config);
        if (j->config)
                *j->config = *e; /* without it the job is judged without the revision checks */
}

static void on_resolved(Ctrd *c, int error, const char *reason, const CtrdImageConfig *cfg, void *userdata) {
        Job *j = userdata;
        Agent *a = j->agent;
        if (error < 0) {
                /* the image is still judged on its tag and digest; only the revision checks
                 * need the config */
                log_debug("cannot read the config of %s (%s): %s", j->image, j->digest, reason);
                job_finish(j, 0, NULL);
                return;
        }
        const ResolveEntry *e = resolve_store(a, j->digest, cfg);
        if (e)
                apply_config(j, e);
        job_finish(j, 0, NULL);
}

static void job_resolve(Job *j) {
        Agent *a = j->agent;
        ResolveEntry *e = resolve_lookup(a, j->digest);
        if (e) {
                apply_config(j, e);
                job_finish(j, 0, NULL);
                return;
        }
        int r = ctrd_image_resolve(a->ctrd, j->ns, j->digest, j->media_type, on_resolved, j);
        if (r < 0)
                job_finish(j, 0, NULL);
}

static void on_image_got(Ctrd *c, int error, const char *reason, const CtrdImage *img, void *userdata) {
        Job *j = userdata;
        if (error < 0) {
                job_finish(j, error, reason);
                return;
        }
        if (dup_str(&j->digest, img->target_digest) < 0 || dup_str(&j->media_type, img->target_media_type) < 0 ||
            dup_str(&j->image, img->name) < 0) {
                job_finish(j, -ENOMEM, NULL);
                return;
        }
        j->have_target = true;
        if (j->type == JOB_CONTAINER && j->workload)
                container_remember(j->agent, j->ns, j->container_id, j->image, j->digest, j->workload);
        job_resolve(j);
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
        int r = ctrd_image_get(j->agent->ctrd, j->ns, j->image, on_image_got, j);
        if (r < 0)
                job_finish(j, r, "cannot start Images.Get");
}

static void job_start(Job *j) {
        Agent *a = j->agent;
        int r;
        j->state = JOB_RUNNING;
        a->running++;
        if (j->type == JOB_CONTAINER)
                r = ctrd_container_get(a->ctrd, j->ns, j->container_id, on_container_got, j);
        else if (j->have_target) {
                job_resolve(j);
                return;
        } else
                r = ctrd_image_get(a->ctrd, j->ns, j->image, on_image_got, j);
        if (r < 0)
                job_finish(j, r, strerror(-r));
}

static void job_pump(Agent *a) {
        /* A job can finish synchronously (config cached) and ask to pump again: only the
         * outermost call loops, or a listing of thousands would recurse thousands deep. */
        if (a->pumping)
                return;
        a->pumping = true;
        while (a->next_to_start && a->running < JOBS_IN_FLIGHT_MAX) {
                Job *j = a->next_to_start;
                a->next_to_start = j->next;
                job_start(j); /* may finish synchronously and drain */
        }
        a->pumping = false;
}

/* name: the image record's name (JOB_IMAGE) or the container id (JOB_CONTAINER). */
static Job *job_new(Agent *a, JobType type, const char *ns, const char *name) {
        if (a->queued >= JOBS_QUEUED_MAX) {
                if (a->dropped_events++ % 1000 == 0)
                        log_warning("more than %d lookups queued; dropping events (%" PRIu64
                                    " so far), the next reconcile will catch up",
                                    JOBS_QUEUED_MAX, a->dropped_events);
                return NULL;
        }
        Job *j = calloc(1, sizeof *j);
        if (!j)
                return NULL;
        j->agent = a;
        j->type = type;
        j->generation = a->generation;
        j->time_usec = now_usec_realtime();
        if (dup_str(&j->ns, ns) < 0 || dup_str(type == JOB_IMAGE ? &j->image : &j->container_id, name) < 0) {
                job_free(j);
                return NULL;
        }
        return j;
}

static void job_enqueue(Agent *a, Job *j) {
        if (a->tail)
                a->tail->next = j;
        else
                a->head = j;
        a->tail = j;
        if (!a->next_to_start)
                a->next_to_start = j;
        a->queued++;
        job_pump(a);
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
        job_drain(a);
}

static void on_images_listed(Ctrd *c, int error, const char *reason, const char *ns, const CtrdImage *imgs, size_t n,
                             void *userdata) {
        Agent *a = userdata;
        if (error < 0) {
                log_warning("cannot list images in namespace %s: %s", ns, reason);
                if (a->mode == MODE_SCAN)
                        a->exit_error = error;
        } else {
                /* each name parsed once, not once per rank */
                _cleanup_free_ uint8_t *ranks = malloc(n ? n : 1);
                for (size_t i = 0; ranks && i < n; i++)
                        ranks[i] = (uint8_t) image_rank(&imgs[i]);
                for (int rank = 0; rank <= 3; rank++)
                        for (size_t i = 0; i < n; i++) {
                                if ((ranks ? ranks[i] : image_rank(&imgs[i])) != rank)
                                        continue;
                                Job *j = job_new(a, JOB_IMAGE, ns, imgs[i].name);
                                if (j && (dup_str(&j->digest, imgs[i].target_digest) < 0 ||
                                          dup_str(&j->media_type, imgs[i].target_media_type) < 0)) {
                                        job_free(j);
                                        j = NULL;
                                }
                                if (!j)
                                        break;
                                j->from_listing = true;
                                j->counted_listing = true;
                                a->listing_jobs++;
                                j->have_target = true;
                                a->listed_images++;
                                job_enqueue(a, j);
                        }
        }
        listing_done(a);
}

static void on_containers_listed(Ctrd *c, int error, const char *reason, const char *ns, const CtrdContainer *cts,
                                 size_t n, void *userdata) {
        Agent *a = userdata;
        if (error < 0)
                log_debug("cannot list containers in namespace %s: %s", ns, reason);
        else
                for (size_t i = 0; i < n; i++) {
                        /* what digest it runs: the image's current digest as the ledger knows it */
                        LedgerDigest d = {0};
                        if (!a->ledger || ledger_lookup(a->ledger, ns, cts[i].image, &d) < 0)
                                continue;
                        FindingWorkload w = cts[i].workload;
                        strcpy_bounded(w.container_id, sizeof w.container_id, cts[i].id);
                        container_remember(a, ns, cts[i].id, cts[i].image, d.digest, &w);
                }
        listing_done(a);
}

static void on_namespaces_listed(Ctrd *c, int error, const char *reason, const CtrdNamespaceList *list,
                                 void *userdata) {
        Agent *a = userdata;
        if (error < 0) {
                log_warning("cannot list containerd namespaces: %s", reason);
                if (a->mode == MODE_SCAN)
                        a->exit_error = error;
        } else
                for (size_t i = 0; i < list->n; i++) {
                        const char *ns = list->names[i];
                        if (!namespace_wanted(a, ns))
                                continue;
                        if (ctrd_images_list(a->ctrd, ns, on_images_listed, a) >= 0)
                                a->listing_pending++;
                        if (a->mode == MODE_RUN && ctrd_containers_list(a->ctrd, ns, on_containers_listed, a) >= 0)
                                a->listing_pending++;
                }
        listing_done(a);
}

static void reconcile(Agent *a, bool inventory) {
        a->listing_active = true;
        if (inventory && a->spool && !a->inventory)
                a->inventory = json_array();
        if (ctrd_namespaces_list(a->ctrd, on_namespaces_listed, a) >= 0)
                a->listing_pending++;
        job_drain(a);
}

static int on_catchup(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;
        /* A pull that landed between our listing and the moment containerd registered the
         * subscription (the stream confirms nothing until its first event) is caught here. */
        if (a->connected)
                reconcile(a, false);
        return 0;
}

/* ---------------------------------------------------------------- events */

static void on_event(Ctrd *c, const CtrdEvent *ev, void *userdata) {
        Agent *a = userdata;
        Job *j = NULL;
        if (!namespace_wanted(a, ev->namespace))
                return; /* nothing of an unwatched namespace is listed or remembered either */
        switch (ev->kind) {
        case CTRD_EVENT_IMAGE_CREATE:
        case CTRD_EVENT_IMAGE_UPDATE:
                j = job_new(a, JOB_IMAGE, ev->namespace, ev->image_name);
                break;
        case CTRD_EVENT_CONTAINER_CREATE:
        case CTRD_EVENT_TASK_START:
                j = job_new(a, JOB_CONTAINER, ev->namespace, ev->container_id);
                break;
        case CTRD_EVENT_CONTAINER_DELETE:
                container_forget(a, ev->namespace, ev->container_id);
                return;
        default:
                return;
        }
        if (!j)
                return;
        if (ev->timestamp_usec)
                j->time_usec = ev->timestamp_usec;
        job_enqueue(a, j);
}

static void schedule_reconnect(Agent *a) {
        arm_oneshot(a->reconnect_timer, a->reconnect_usec);
        a->reconnect_usec = a->reconnect_usec * 2 > RECONNECT_MAX_USEC ? RECONNECT_MAX_USEC : a->reconnect_usec * 2;
}

static void on_stream_end(Ctrd *c, int error, const char *reason, void *userdata) {
        Agent *a = userdata;
        a->subscription = NULL;
        a->connected = false;
        a->generation++;
        log_warning("event stream from containerd at %s ended: %s; reconnecting", a->config->address,
                    reason ? reason : "closed");
        a->reconnect_usec = RECONNECT_MIN_USEC;
        strcpy_bounded(a->last_connect_error, sizeof a->last_connect_error, "");
        schedule_reconnect(a);
}

static void on_version(Ctrd *c, int error, const char *reason, const CtrdVersion *v, void *userdata) {
        Agent *a = userdata;
        if (error < 0) {
                if (!reason)
                        reason = strerror(-error);
                if (a->mode == MODE_SCAN) {
                        log_error("cannot reach containerd at %s: %s", a->config->address, reason);
                        a->exit_error = error;
                        sd_event_exit(a->event, 0);
                        return;
                }
                /* one line when the reason changes, not one per attempt */
                if (strcmp(a->last_connect_error, reason) != 0)
                        log_warning("cannot reach containerd at %s: %s; retrying every %.1fs at most",
                                    a->config->address, reason, RECONNECT_MAX_USEC / 1e6);
                strcpy_bounded(a->last_connect_error, sizeof a->last_connect_error, reason);
                schedule_reconnect(a);
                return;
        }
        if (a->mode == MODE_SCAN) {
                reconcile(a, false);
                return;
        }
        /* only the topics the agent acts on (OR'ed): a busy node's /tasks/exit, /tasks/delete,
         * /tasks/oom... would each wake the agent for nothing */
        static const char *const filters[] = {
                "topic==\"/images/create\"",     "topic==\"/images/update\"", "topic==\"/containers/create\"",
                "topic==\"/containers/delete\"", "topic==\"/tasks/start\"",
        };
        int r = ctrd_subscribe(a->ctrd, filters, ELEMENTSOF(filters), on_event, on_stream_end, a, &a->subscription);
        if (r < 0) {
                log_warning_errno(r, "cannot subscribe to containerd events: %s; retrying", strerror(-r));
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
                log_warning_errno(r, "cannot start a call to containerd: %s; retrying", strerror(-r));
                schedule_reconnect(a);
        }
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

static int on_reconnect_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        agent_connect(userdata);
        return 0;
}

/* ---------------------------------------------------------------- pins reload */

static void pins_reload(Agent *a, const char *why) {
        if (isempty(a->config->pins))
                return;
        char err[512] = "";
        Pins *p = NULL;
        int r = pins_load(a->config->pins, &p, err, sizeof err);
        if (r < 0) {
                log_warning("cannot reload pins (%s): %s; keeping the %zu pins loaded before", why, err,
                            pins_size(a->pins));
                return;
        }
        pins_free(a->pins);
        a->pins = p;
        log_info("loaded %zu pins from %s (%s)", pins_size(p), a->config->pins, why);
}

static int on_pins_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        pins_reload(userdata, "file changed");
        return 0;
}

static int on_pins_inotify(sd_event_source *s, const struct inotify_event *ev, void *userdata) {
        Agent *a = userdata;
        /* ConfigMaps swap a symlink, editors write temp files: debounce and reload once */
        arm_oneshot(a->pins_timer, 200 * 1000ULL);
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

static void on_ship_log(int level, const char *message, void *userdata) {
        log_full(level, "ship", 0, "%s", message);
}

static void agent_free(Agent *a) {
        if (!a)
                return;
        while (a->head) {
                Job *j = a->head;
                a->head = j->next;
                job_free(j);
        }
        sd_event_source_unref(a->reconnect_timer);
        sd_event_source_unref(a->catchup_timer);
        sd_event_source_unref(a->ledger_timer);
        sd_event_source_unref(a->metrics_timer);
        sd_event_source_unref(a->pins_watch);
        sd_event_source_unref(a->pins_timer);
        sd_event_source_unref(a->post);
        sd_event_source_unref(a->inventory_timer);
        json_decref(a->inventory);
        for (size_t i = 0; i < RESOLVE_CACHE_MAX; i++)
                free(a->resolve_cache[i]);
        for (size_t i = 0; i < a->n_containers; i++)
                container_clear(&a->containers[i]);
        free(a->containers);
        ship_free(a->shipper);
        ctrd_free(a->ctrd);
        curlev_free(a->curl);
        spool_free(a->spool);
        ledger_free(a->ledger);
        pins_free(a->pins);
        policy_free(a->policy);
        json_decref(a->scan_findings);
        json_decref(a->scan_rows);
        sd_event_unref(a->event);
        free(a);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Agent *, agent_free);

static int agent_new(Agent **ret, const Config *c, AgentMode mode) {
        _cleanup_(agent_freep) Agent *a = calloc(1, sizeof(Agent));
        if (!a)
                return log_error_errno(ENOMEM, "out of memory");
        a->mode = mode;
        a->config = c;
        a->reconnect_usec = RECONNECT_MIN_USEC;
        char err[512] = "";
        int r;

        log_set_node(c->node);
        log_set_max_level(streq_ptr(c->log_level, "err")       ? LOG_LEVEL_ERR
                          : streq_ptr(c->log_level, "warning") ? LOG_LEVEL_WARNING
                          : streq_ptr(c->log_level, "notice")  ? LOG_LEVEL_NOTICE
                          : streq_ptr(c->log_level, "debug")   ? LOG_LEVEL_DEBUG
                                                               : LOG_LEVEL_INFO);
        r = policy_new_from_config(c, &a->policy, err, sizeof err);
        if (r < 0)
                return log_error_errno(r, "%s", err);
        if (!isempty(c->pins)) {
                r = pins_load(c->pins, &a->pins, err, sizeof err);
                if (r < 0)
                        return log_error_errno(r, "%s", err);
        }

        r = sd_event_default(&a->event);
        if (r < 0)
                return log_error_errno(r, "cannot create the event loop: %s", strerror(-r));
        r = ctrd_new(&a->ctrd, a->event, c->address, c->max_message_bytes, err, sizeof err);
        if (r < 0)
                return log_error_errno(r, "%s", err[0] ? err : strerror(-r));
        r = ctrd_set_keepalive(a->ctrd, c->keepalive_interval_usec, c->keepalive_timeout_usec);
        if (r < 0)
                return log_error_errno(r, "invalid keepalive settings: %s", strerror(-r));

        if (mode == MODE_SCAN) {
                a->scan_findings = json_array();
                a->scan_rows = json_array();
                if (!a->scan_findings || !a->scan_rows)
                        return log_error_errno(ENOMEM, "out of memory");
                /* the node's history, if the agent keeps one here, makes tag_moved visible;
                 * scan never writes it */
                char path[4096];
                snprintf(path, sizeof path, "%s/%s", c->state_dir, LEDGER_FILE);
                if (access(path, R_OK) == 0) {
                        LedgerOpenReport rep = {0};
                        if (ledger_open(&a->ledger, c->state_dir, c->ledger_max_entries, &rep) >= 0 && rep.corrupt)
                                log_warning("%s", rep.reason);
                } else
                        r = ledger_new(&a->ledger, c->ledger_max_entries);
                *ret = TAKE_PTR(a);
                return 0;
        }

        if (mkdir(c->state_dir, 0750) < 0 && errno != EEXIST)
                return log_error_errno(errno, "cannot create the state directory %s: %m", c->state_dir);
        LedgerOpenReport rep = {0};
        r = ledger_open(&a->ledger, c->state_dir, c->ledger_max_entries, &rep);
        if (r < 0)
                return log_error_errno(r, "cannot open the ledger in %s: %s", c->state_dir, strerror(-r));
        if (rep.corrupt)
                log_full(LOG_LEVEL_ERR, "ledger_corrupt", 0, "%s; rebuilding the view from containerd", rep.reason);
        else
                log_info("ledger: %" PRIu64 " references, %" PRIu64 " digests known", rep.references, rep.entries);

        if (!isempty(c->endpoint)) {
                /* only shipping needs libcurl: it is loaded now, not by the dynamic linker */
                r = curlshim_load(err, sizeof err);
                if (r < 0)
                        return log_error_errno(r, "endpoint %s: %s", c->endpoint, err);
                r = curlev_new(&a->curl, a->event);
                if (r < 0)
                        return log_error_errno(r, "cannot set up libcurl: %s", strerror(-r));
                char dir[4096];
                snprintf(dir, sizeof dir, "%s/spool", c->state_dir);
                SpoolFsync fs = streq_ptr(c->spool_fsync, "always") ? SPOOL_FSYNC_ALWAYS
                                : streq_ptr(c->spool_fsync, "never") ? SPOOL_FSYNC_NEVER
                                                                      : SPOOL_FSYNC_BATCH;
                SpoolOpenReport srep = {0};
                r = spool_open(&a->spool, dir, c->spool_max_bytes, fs, &srep);
                if (r < 0)
                        return log_error_errno(r, "cannot open the spool %s: %s", dir, strerror(-r));
                if (srep.trimmed_bytes > 0 || srep.corrupt_records > 0)
                        log_full(LOG_LEVEL_WARNING, "spool_trimmed", 0,
                                 "spool %s: discarded a torn tail of %" PRIu64 " bytes and %" PRIu64
                                 " corrupt records after an unclean stop; %" PRIu64 " records kept",
                                 dir, srep.trimmed_bytes, srep.corrupt_records, srep.records);
                if (srep.ack_state_reset)
                        log_full(LOG_LEVEL_WARNING, "spool_ack_reset", 0,
                                 "spool %s: the ack file was unreadable or held impossible sequence numbers;"
                                 " every record on disk (%" PRIu64 ") will be sent again",
                                 dir, srep.records);

                ShipConfig sc;
                ship_config_init(&sc);
                char dead[4096];
                snprintf(dead, sizeof dead, "%s/dead-letter.jsonl", c->state_dir);
                ShipLabel labels[2];
                size_t nl = 0;
                if (!isempty(c->cluster))
                        labels[nl++] = (ShipLabel){"cluster", c->cluster};
                sc.url = c->endpoint;
                sc.format = ship_format_from_string(c->endpoint_format);
                if (sc.format < 0)
                        return log_error_errno(EINVAL, "endpoint_format must be jsonl or loki, not \"%s\"",
                                               c->endpoint_format);
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
                sc.labels = labels;
                sc.n_labels = nl;
                sc.dead_letter_path = dead;
                r = ship_new(&a->shipper, a->event, a->curl, a->spool, &sc, err, sizeof err);
                if (r < 0)
                        return log_error_errno(r, "%s", err[0] ? err : strerror(-r));
                ship_set_log_callback(a->shipper, on_ship_log, a);
        }

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        if ((r = sd_event_add_signal(a->event, NULL, SIGTERM, on_terminate, a)) < 0 ||
            (r = sd_event_add_signal(a->event, NULL, SIGINT, on_terminate, a)) < 0 ||
            (r = sd_event_add_signal(a->event, NULL, SIGHUP, on_sighup, a)) < 0)
                return log_error_errno(r, "cannot watch signals: %s", strerror(-r));
        (void) sd_event_set_watchdog(a->event, true);
        if (a->spool && (r = sd_event_add_post(a->event, &a->post, on_post, a)) < 0)
                return log_error_errno(r, "cannot create the spool sync hook: %s", strerror(-r));

        if ((r = sd_event_add_time(a->event, &a->reconnect_timer, CLOCK_MONOTONIC, 0, 1000, on_reconnect_timer,
                                   a)) < 0 ||
            (r = sd_event_add_time(a->event, &a->catchup_timer, CLOCK_MONOTONIC, 0, 1000, on_catchup, a)) < 0 ||
            (r = sd_event_add_time(a->event, &a->ledger_timer, CLOCK_MONOTONIC, 0, 100000, on_ledger_timer, a)) <
                    0 ||
            (r = sd_event_add_time_relative(a->event, &a->metrics_timer, CLOCK_MONOTONIC, METRICS_INTERVAL_USEC,
                                            1000000, on_metrics_timer, a)) < 0)
                return log_error_errno(r, "cannot create timers: %s", strerror(-r));
        sd_event_source_set_enabled(a->reconnect_timer, SD_EVENT_OFF);
        sd_event_source_set_enabled(a->catchup_timer, SD_EVENT_OFF);
        sd_event_source_set_enabled(a->ledger_timer, SD_EVENT_OFF);
        sd_event_source_set_enabled(a->metrics_timer, SD_EVENT_ON);
        if (c->inventory_interval_usec > 0) {
                r = sd_event_add_time_relative(a->event, &a->inventory_timer, CLOCK_MONOTONIC,
                                               c->inventory_interval_usec, 1000000, on_inventory_timer, a);
                if (r < 0)
                        return log_error_errno(r, "cannot create timers: %s", strerror(-r));
                sd_event_source_set_enabled(a->inventory_timer, SD_EVENT_ON);
        }

        if (!isempty(c->pins)) {
                _cleanup_free_ char *dir = strdup(c->pins);
                if (!dir)
                        return log_error_errno(ENOMEM, "out of memory");
                char *slash = strrchr(dir, '/');
                if (slash)
                        *(slash == dir ? slash + 1 : slash) = 0;
                else
                        strcpy(dir, ".");
                r = sd_event_add_inotify(a->event, &a->pins_watch, dir,
                                         IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE, on_pins_inotify, a);
                if (r < 0)
                        log_warning("cannot watch %s for changes: %s; pins reload on SIGHUP only", dir,
                                    strerror(-r));
                r = sd_event_add_time(a->event, &a->pins_timer, CLOCK_MONOTONIC, 0, 1000, on_pins_timer, a);
                if (r < 0)
                        return log_error_errno(r, "cannot create timers: %s", strerror(-r));
                sd_event_source_set_enabled(a->pins_timer, SD_EVENT_OFF);
        }
        *ret = TAKE_PTR(a);
        return 0;
}

int agent_run(const Config *c) {
        _cleanup_(agent_freep) Agent *a = NULL;
        int r = agent_new(&a, c, MODE_RUN);
        if (r < 0)
                return r;
        agent_connect(a);
        r = sd_event_loop(a->event);
        if (a->ledger && ledger_is_dirty(a->ledger)) {
                int k = ledger_save(a->ledger);
                if (k < 0)
                        log_warning_errno(k, "cannot save the ledger: %s", strerror(-k));
        }
        if (a->spool)
                (void) spool_sync(a->spool);
        metrics_write(a);
        if (r < 0)
                return log_error_errno(r, "event loop failed: %s", strerror(-r));
        return 0;
}

static void scan_print_table(Agent *a, FILE *out) {
        size_t i;
        json_t *row;
        fprintf(out, "%-12s %-60s %-20s %s\n", "NAMESPACE", "IMAGE", "DIGEST", "FINDINGS");
        json_array_foreach(a->scan_rows, i, row) {
                const char *digest = json_string_value(json_object_get(row, "digest"));
                char shortd[20];
                snprintf(shortd, sizeof shortd, "%s", digest ? digest : "");
                char kinds[256] = "";
                size_t k, len = 0;
                json_t *kind;
                json_array_foreach(json_object_get(row, "findings"), k, kind) {
                        int w = snprintf(kinds + len, sizeof kinds - len, "%s%s", len ? "," : "",
                                         json_string_value(kind));
                        if (w < 0 || (size_t) w >= sizeof kinds - len)
                                break;
                        len += (size_t) w;
                }
                fprintf(out, "%-12s %-60s %-20s %s\n", json_string_value(json_object_get(row, "namespace")),
                        json_string_value(json_object_get(row, "ref")), shortd, len ? kinds : "-");
        }
        size_t total = 0;
        for (int k = FINDING_PULL + 1; k < _FINDING_KIND_MAX; k++)
                total += a->counts[k];
        fprintf(out, "%zu image records, %zu findings\n", json_array_size(a->scan_rows), total);
}

int agent_scan(const Config *c, ScanFormat format, FILE *out) {
        _cleanup_(agent_freep) Agent *a = NULL;
        int r = agent_new(&a, c, MODE_SCAN);
        if (r < 0)
                return r;
        agent_connect(a);
        r = sd_event_loop(a->event);
        if (r < 0)
                return log_error_errno(r, "event loop failed: %s", strerror(-r));
        if (a->exit_error < 0)
                return a->exit_error;
        if (format == SCAN_FORMAT_JSON) {
                json_dumpf(a->scan_findings, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                fputc('\n', out);
        } else
                scan_print_table(a, out);
        fflush(out);
        return json_array_size(a->scan_findings) > 0 ? 1 : 0;
}
