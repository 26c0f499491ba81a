/* Health numbers: a Prometheus text exposition file for node_exporter's textfile
 * collector, and the same numbers as `status.json` in the state dir, which
 * `pullwatch status` reads without talking to the agent.
 *
 * Pure formatter/parser plus thin writers. Both files are written to a temp file in
 * the same directory, fsynced, and renamed over the old one, so a reader (node_exporter
 * scrapes at any moment) sees either the old or the new file, never half of one. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pullwatch/ship.h"

#define METRICS_KINDS_MAX 16
#define METRICS_KIND_NAME_MAX 32
#define METRICS_STATUS_FILE "status.json"
#define METRICS_STATUS_MAX (64U * 1024U) /* a larger status.json is rejected on read */

typedef struct MetricsKindCount {
        char kind[METRICS_KIND_NAME_MAX];
        uint64_t count;
} MetricsKindCount;

/* A plain value: owns no heap memory, copy it freely. */
typedef struct MetricsSnapshot {
        uint64_t records_spooled_total;   /* appended to the spool */
        uint64_t shipped_total;           /* acknowledged by the endpoint */
        uint64_t retried_total;           /* failed attempts that were retried */
        uint64_t dropped_total;           /* dropped by a full spool (persisted across restarts) */
        uint64_t inventory_replaced_total; /* inventory records replaced unsent by a newer inventory, since start */
        uint64_t dead_lettered_total;
        uint64_t batches_total;
        uint64_t bytes_sent_total;
        uint64_t spool_bytes;             /* on disk */
        uint64_t spool_pending_records;
        uint64_t last_success_usec;       /* CLOCK_REALTIME; 0 = never */
        int containerd_connected;         /* 1, 0, or -1 = unknown (left out) */
        MetricsKindCount findings[METRICS_KINDS_MAX];
        size_t n_findings;
        char last_error[256];             /* "" = none */
        uint64_t updated_usec;            /* when the snapshot was taken */
} MetricsSnapshot;

/* Zeroes m and sets containerd_connected to -1. */
void metrics_init(MetricsSnapshot *m);
/* Copies the shipper's and its spool's counters into m (findings, containerd_connected
 * and updated_usec are left alone). */
void metrics_from_ship_stats(MetricsSnapshot *m, const ShipStats *st);
/* Sets the findings counter of kind (adds the kind if new). -E2BIG when
 * METRICS_KINDS_MAX kinds are taken, -EINVAL for an empty or over-long kind. */
int metrics_set_findings(MetricsSnapshot *m, const char *kind, uint64_t count);

/* Prometheus text exposition format 0.0.4. *ret malloc()ed, owned by the caller,
 * NUL-terminated. */
int metrics_format(const MetricsSnapshot *m, char **ret, size_t *ret_len);
/* Atomically replace path (should end in .prom) with metrics_format()'s output. */
int metrics_write_textfile(const char *path, const MetricsSnapshot *m);

/* status.json (pure): *ret malloc()ed, owned by the caller, NUL-terminated. */
int metrics_status_to_json(const MetricsSnapshot *m, char **ret);
/* Parses what metrics_status_to_json() wrote; unknown members ignored; -EBADMSG on a
 * malformed document or a wrong type; *ret untouched on failure. */
int metrics_status_from_json(const char *s, size_t len, MetricsSnapshot *ret);

/* STATE_DIR/status.json, atomically. */
int metrics_status_write(const char *state_dir, const MetricsSnapshot *m);
/* -ENOENT if the agent never wrote one; -EINVAL if it is not a regular file (a FIFO...),
 * -ELOOP if it is a symlink: refused at once, never waited on. */
int metrics_status_read(const char *state_dir, MetricsSnapshot *ret);
