/* Where records and findings go: journald, stdout (--stdout, JSON lines), the spool and
 * its shipper (with an endpoint), or a scan report. Part of the agent: an output that
 * starts failing is logged once (and once when it recovers, with how many attempts
 * failed meanwhile), never once per record.
 *
 * The spool comes first: a record counts as emitted only once it is durable there, so a
 * SIGKILL between the outputs can duplicate a line on stdout, never lose a record. */
#pragma once

#include <systemd/sd-event.h>

#include "pullwatch/config.h"
#include "pullwatch/finding.h"
#include "pullwatch/metrics.h"
#include "pullwatch/scan.h"

typedef struct Sinks Sinks;

/* `run`: journald, stdout if c->stdout_json, and with c->endpoint the spool in
 * STATE_DIR/spool and its shipper on e (libcurl is loaded now, not before). Failures
 * are logged. c and e borrowed. */
int sinks_new(Sinks **ret, sd_event *e, const Config *c);
/* `scan`: the scan report only (borrowed). */
int sinks_new_scan(Sinks **ret, const Config *c, ScanReport *scan);
Sinks *sinks_free(Sinks *s);

/* Complete f (id from key, or random when key is NULL; node; time; message) and send
 * it to every output. */
void sinks_emit(Sinks *s, Finding *f, const char *key);
/* The inventory goes to the endpoint only, as one group of parts: sinks_inventory_part()
 * keeps each part (copied; -ENODEV without an endpoint, -ENOMEM), sinks_inventory_done()
 * spools them as the one pending inventory (spool_replace_latest(): it replaces an
 * older one not yet sent, and never evicts a pull or a finding from a full spool — it
 * is dropped instead, said in one line). complete false: the parts are discarded. */
int sinks_inventory_part(Sinks *s, const char *json, size_t len);
void sinks_inventory_done(Sinks *s, bool complete);
/* The first listing after start is judged: crash replays are over, the spool forgets the
 * ids that were pending at open (see spool_pending_at_open()). */
void sinks_listing_done(Sinks *s);
/* While a listing is judged its journald entries wait (journal_hold()), sent once it is
 * over: sinks_hold_journal(s, true) when it starts, false when it is judged. */
void sinks_hold_journal(Sinks *s, bool hold);
/* After a burst of records: let the shipper know. */
void sinks_kick(Sinks *s);
bool sinks_has_endpoint(const Sinks *s);

/* Findings counted by kind, shipper statistics: for status.json and metrics. */
void sinks_metrics(const Sinks *s, MetricsSnapshot *m);
/* At exit: the spool synced. */
void sinks_sync(Sinks *s);
