/* journald sink for records and findings: the native protocol (one datagram per entry)
 * over one connected socket, opened at the first entry and kept; thin shell over
 * finding_to_journal(). */
#pragma once

#include <stdint.h>
#include <systemd/sd-event.h>

#include "pullwatch/finding.h"

#define JOURNAL_SOCKET "/run/systemd/journal/socket" /* journald's native socket */
#define JOURNAL_SNDBUF (8 << 20) /* what sd_journal_sendv() asks for (the kernel caps it at 2 x wmem_max) */
/* Entries kept while journald catches up (bytes of entries; mapped 1 MiB at a time, unmapped
 * as sent). Past it the agent waits for journald until half of it is sent. */
#define JOURNAL_BACKLOG_MAX (16U << 20)

typedef struct JournalStats {
        uint64_t backlogged;         /* entries that waited for journald */
        uint64_t backlog_peak_bytes; /* the most that waited at once */
        uint64_t waits;              /* times the backlog was full and the agent waited */
        uint64_t lost;               /* entries that waited and could not be given to journald */
        uint64_t backlog_entries, backlog_bytes; /* waiting now */
} JournalStats;

typedef struct Journal Journal;

/* socket_path: NULL for JOURNAL_SOCKET (copied; at most 107 bytes, else -ENAMETOOLONG).
 * sndbuf: 0 for the system's default send buffer, else SO_SNDBUF (tests shrink it to make
 * an entry take the memfd path). Nothing is connected until the first entry. The caller
 * owns *ret and frees it with journal_free(). */
int journal_new(Journal **ret, const char *socket_path, int sndbuf);
Journal *journal_free(Journal *j); /* accepts NULL; returns NULL; entries still waiting are dropped:
                                    * journal_flush() first */

/* Never wait for journald on the loop: from now on an entry journald's socket cannot take
 * at once (its queue is full: net.unix.max_dgram_qlen datagrams, 10 by the kernel's
 * default, 512 under systemd) waits in a backlog, and later ones behind it in order; the
 * backlog is sent from an EPOLLOUT source on e as journald reads. journald is slower than
 * a listing's burst (a fresh reconcile of 10,000 images sends 10,000 entries): before, the
 * agent sat in sendmsg() for seconds. An entry of the backlog that cannot be sent (journald
 * gone and not back) is told to on_lost (error, how many; may be NULL). -EINVAL when
 * already attached. e is referenced. */
typedef void (*journal_lost_t)(int error, uint64_t n, void *userdata);
int journal_attach_event(Journal *j, sd_event *e, journal_lost_t on_lost, void *userdata);

/* With a loop attached: hold (true) makes every entry join the backlog, none sent to
 * journald, until released (false), which sends what the socket takes at once and the
 * rest as journald reads (the idle-priority source). A listing of 10,000 images holds
 * it: its 10,000 entries were 10,000 sendmsg() to a journald woken for each, both on the
 * listing's critical path on a 2-core node. The backlog's bound still applies (over
 * JOURNAL_BACKLOG_MAX the agent waits for journald, held or not); journal_flush() sends
 * a held backlog too. No-op without a loop. */
void journal_hold(Journal *j, bool hold);
/* Send the backlog, waiting for journald up to timeout_msec (< 0: without end): at exit.
 * 0 when all was sent; -ETIME (or the error) when not, the rest dropped and counted as
 * lost (*ret_unsent, may be NULL, gets how many). */
int journal_flush(Journal *j, int timeout_msec, uint64_t *ret_unsent);
void journal_get_stats(const Journal *j, JournalStats *ret);

/* Send one structured entry, as sd_journal_sendv() would: FIELD=value lines, a value
 * holding a newline in its length-prefixed binary form, bytes exactly as given. With a
 * loop attached, 0 may mean queued (see journal_attach_event()). An entry
 * too big for a datagram (EMSGSIZE, ENOBUFS, EAGAIN) goes as a sealed memfd, as the
 * library does. -ENOENT when journald's socket is missing, -ECONNREFUSED for a socket
 * file with no journald behind it (a journald that went away is reconnected to at the
 * next entry: it recreates its socket when it restarts), other -errno. */
int journal_send_finding(Journal *j, const Finding *f);

/* The same, for an entry's iovecs (FIELD=value each, as finding_to_journal() makes). */
int journal_sendv(Journal *j, const struct iovec *iov, size_t n);
