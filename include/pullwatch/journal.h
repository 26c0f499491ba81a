/* journald sink for records and findings (thin shell over finding_to_journal()). */
#pragma once

#include "pullwatch/finding.h"

/* Send one structured entry. Returns 0 also when no journald is running (the library
 * reports success then); -ECONNREFUSED for a stale socket, other
 * -errno from sd_journal_sendv(). */
int journal_send_finding(const Finding *f);
