/* journald sink for records and findings: the native protocol (one datagram per entry)
 * over one connected socket, opened at the first entry and kept; thin shell over
 * finding_to_journal(). */
#pragma once

#include "pullwatch/finding.h"

#define JOURNAL_SOCKET "/run/systemd/journal/socket" /* journald's native socket */

typedef struct Journal Journal;

/* socket_path: NULL for JOURNAL_SOCKET (copied; at most 107 bytes, else -ENAMETOOLONG).
 * sndbuf: 0 for the system's default send buffer, else SO_SNDBUF (tests shrink it to make
 * an entry take the memfd path). Nothing is connected until the first entry. The caller
 * owns *ret and frees it with journal_free(). */
int journal_new(Journal **ret, const char *socket_path, int sndbuf);
Journal *journal_free(Journal *j); /* accepts NULL; returns NULL */

/* Send one structured entry, as sd_journal_sendv() would: FIELD=value lines, a value
 * holding a newline in its length-prefixed binary form, bytes exactly as given. An entry
 * too big for a datagram (EMSGSIZE, ENOBUFS, EAGAIN) goes as a sealed memfd, as the
 * library does. -ENOENT when journald's socket is missing, -ECONNREFUSED for a socket
 * file with no journald behind it (a journald that went away is reconnected to at the
 * next entry: it recreates its socket when it restarts), other -errno. */
int journal_send_finding(Journal *j, const Finding *f);

/* The same, for an entry's iovecs (FIELD=value each, as finding_to_journal() makes). */
int journal_sendv(Journal *j, const struct iovec *iov, size_t n);
