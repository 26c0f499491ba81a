/* The agent's context, shared by its two files: agent.c (setup, the ledger's saves,
 * metrics, pins, signals) and agent-watch.c (the containerd connection, listings,
 * events, and what each finished job becomes). Not a module interface. */
#pragma once

#include <systemd/sd-event.h>

#include "pullwatch/attribution.h"
#include "pullwatch/config.h"
#include "pullwatch/containerd.h"
#include "pullwatch/inventory.h"
#include "pullwatch/jobs.h"
#include "pullwatch/judge.h"
#include "pullwatch/latch.h"
#include "pullwatch/ledger.h"
#include "pullwatch/metrics.h"
#include "pullwatch/pins.h"
#include "pullwatch/policy.h"
#include "pullwatch/scan.h"
#include "pullwatch/sinks.h"

#define RECONNECT_MIN_USEC (250 * 1000ULL)
#define RECONNECT_MAX_USEC (10 * 1000000ULL)
/* An event stream that lived this long was a working connection: its end restarts the
 * backoff. One that ends sooner (a containerd or proxy that drops streams) keeps backing
 * off: reconnecting, re-listing and logging every 0.25 s was a storm. */
#define STREAM_STABLE_USEC (30 * 1000000ULL)
#define CATCHUP_DELAY_USEC (3 * 1000000ULL) /* second listing after a (re)connect */
#define LEDGER_SAVE_DELAY_USEC (2 * 1000000ULL)
#define METRICS_INTERVAL_USEC (15 * 1000000ULL)
#define PINS_DEBOUNCE_USEC (200 * 1000ULL)

typedef struct LedgerLoad LedgerLoad;

typedef struct Agent {
        const Config *config;
        bool oneshot; /* scan: list once, judge, exit; otherwise subscribe and keep watching */
        sd_event *event;
        Ctrd *ctrd;
        Policy *policy;
        Pins *pins;
        Ledger *ledger;           /* NULL while ledger_load runs: see agent_ledger_ready() */
        LedgerLoad *ledger_load;  /* `run`: the ledger loading on a thread of its own */
        int fatal;                /* `run`: an error that stopped the loop (the ledger could not open) */
        Jobs *jobs;
        Facts *facts; /* STATE_DIR/facts, behind the jobs' config cache (read-only for scan) */
        Attribution *attribution;
        Judge judge;
        Sinks *sinks;
        Inventory *inventory; /* with an endpoint */
        ScanReport *scan;

        /* connection */
        bool connected, ready_notified;
        uint64_t generation, reconnect_usec;
        uint64_t subscribed_usec; /* CLOCK_MONOTONIC, when the current stream started */
        char last_connect_error[256];
        CtrdCall *subscription;
        unsigned listing_pending; /* listing calls of the current generation in flight */
        bool listing_active;      /* a reconcile's listing is under way */
        bool listing_skip_known;  /* this listing queues only what the ledger does not know as current */
        bool catchup_deferred;    /* the catch-up listing waits for the listing under way */
        size_t listed_images;
        uint64_t dropped_events;

        FailLatch ledger_fail;
        FailLatch list_fail; /* Images.List: said when it starts failing, and when it works again */
        MetricsSnapshot metrics_written; /* what status.json says now */
        bool metrics_written_once;
        sd_event_source *reconnect_timer, *catchup_timer, *ledger_timer, *metrics_timer, *inventory_timer;
        sd_event_source *relist_timer;
        sd_event_source *pins_watch, *pins_timer;
        sd_event_source *trim; /* defer: malloc_trim() once the current handler has freed its buffers */
        bool trim_owed;        /* a ledger save's heap is trimmed when the metrics timer fires */
        int exit_error; /* scan: a listing failed */
} Agent;

/* Fire the CLOCK_MONOTONIC timer s once, delay_usec from the loop's now. */
static inline void arm_oneshot(sd_event_source *s, uint64_t delay_usec) {
        uint64_t now;
        if (!s || sd_event_now(sd_event_source_get_event(s), CLOCK_MONOTONIC, &now) < 0)
                return;
        (void) sd_event_source_set_time(s, now + delay_usec);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* agent.c */
/* The ledger, loaded: waits for the thread loading it (see agent_setup_run()), says what
 * it found, and on failure stops the loop (a->fatal). 0, or the error (the caller then
 * does nothing that needs the ledger). */
int agent_ledger_ready(Agent *a);
void agent_ledger_schedule_save(Agent *a);
/* Something happened that the health numbers may show: look again in a while. */
void agent_metrics_touch(Agent *a);
/* Give freed heap back to the kernel on the next loop turn: a listing can end inside the
 * callback of its own reply, whose buffers (megabytes at 10,000 images) are freed only
 * after it returns; trimmed there, they stayed private dirty memory for good. */
void agent_trim_later(Agent *a);

/* agent-watch.c */
extern const JobsCallbacks agent_jobs_callbacks;
extern const JudgeOutput agent_judge_output; /* userdata: set to the Agent */
void agent_connect(Agent *a);
int agent_on_reconnect_timer(sd_event_source *s, uint64_t usec, void *userdata);
int agent_on_catchup(sd_event_source *s, uint64_t usec, void *userdata);
int agent_on_inventory_timer(sd_event_source *s, uint64_t usec, void *userdata);
