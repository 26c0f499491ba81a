/* The running agent: one context wiring containerd, ledger, policy, journald, stdout,
 * spool and shipper on one sd-event loop. */
#pragma once

#include <stdio.h>

#include "pullwatch/config.h"

typedef enum ScanFormat {
        SCAN_FORMAT_TABLE,
        SCAN_FORMAT_JSON,
} ScanFormat;

/* `pullwatch run`: runs until SIGTERM/SIGINT. Returns 0 on a clean exit, -errno if it
 * could not start (already logged). c is borrowed. */
int agent_run(const Config *c);

/* `pullwatch scan`: lists every image of the configured namespaces (all if none), judges
 * them with the policy (and the ledger in the state dir, read-only, if present) and
 * prints a table or a JSON array to out. Returns 0 clean, 1 findings, -errno on error
 * (already logged). */
int agent_scan(const Config *c, ScanFormat format, FILE *out);
