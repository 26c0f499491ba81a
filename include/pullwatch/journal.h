/* journald sink for records and findings (thin shell over finding_to_journal()). */
#pragma once

#include "pullwatch/finding.h"

#define JOURNAL_SOCKET "/run/systemd/journal/socket" /* where sd_journal_sendv() sends */

/* Send one structured entry. -ENOENT when journald's socket is missing (the library itself
 * reports success then and the entry is lost, REFERENCE.md §8), -ECONNREFUSED for a
 * socket file with no journald behind it, other -errno from sd_journal_sendv(). */
int journal_send_finding(const Finding *f);
