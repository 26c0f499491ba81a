/* The agent's own diagnostics: one line per message, to stderr (kubectl logs, or the
 * journal when systemd runs us with stderr connected to it). Messages at warning or
 * worse are also sent to journald as structured entries (SYSLOG_IDENTIFIER=pullwatch,
 * PULLWATCH_EVENT=<event>) unless stderr already is the journal ($JOURNAL_STREAM).
 * Only the top of the program logs (log once, at the top). */
#pragma once

#include "pullwatch/util.h"

enum { LOG_LEVEL_ERR = 3, LOG_LEVEL_WARNING = 4, LOG_LEVEL_NOTICE = 5, LOG_LEVEL_INFO = 6, LOG_LEVEL_DEBUG = 7 };

void log_set_max_level(int level);
void log_set_node(const char *node); /* copied; added as NODE_NAME to journald entries */
/* event: a short stable word for the journald PULLWATCH_EVENT field, or NULL. Returns -abs(error)
 * if error != 0, else 0, so that `return log_error_errno(r, ...)` works. With error != 0,
 * errno is set to it before formatting, so "%m" names it (systemd's log.c): no
 * strerror(-r) at the call sites. */
int log_full(int level, const char *event, int error, const char *fmt, ...) _printf_(4, 5);

#define log_error(...) log_full(LOG_LEVEL_ERR, NULL, 0, __VA_ARGS__)
#define log_warning(...) log_full(LOG_LEVEL_WARNING, NULL, 0, __VA_ARGS__)
#define log_notice(...) log_full(LOG_LEVEL_NOTICE, NULL, 0, __VA_ARGS__)
#define log_info(...) log_full(LOG_LEVEL_INFO, NULL, 0, __VA_ARGS__)
#define log_debug(...) log_full(LOG_LEVEL_DEBUG, NULL, 0, __VA_ARGS__)
#define log_error_errno(e, ...) log_full(LOG_LEVEL_ERR, NULL, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full(LOG_LEVEL_WARNING, NULL, (e), __VA_ARGS__)
#define log_notice_errno(e, ...) log_full(LOG_LEVEL_NOTICE, NULL, (e), __VA_ARGS__)
#define log_debug_errno(e, ...) log_full(LOG_LEVEL_DEBUG, NULL, (e), __VA_ARGS__)

/* Per-record warnings said in one line (issue 7, item 5): a hostile or broken containerd
 * whose reply holds 65,536 records that each fail must cost one line, not 65,536.
 * A LogSkips counts the records skipped and keeps the first reason; it is said once per
 * reply or listing (log_skips_flush), or, for a stream without an end such as events,
 * once per LOG_SKIPS_WINDOW_USEC (log_skips_add_stream). Plain struct, zero-initialised. */
#define LOG_SKIPS_REASON_MAX 384
#define LOG_SKIPS_WINDOW_USEC (60ULL * 1000000ULL)
typedef struct LogSkips {
        uint64_t n;          /* skipped and not said yet */
        uint64_t said_usec;  /* stream mode: monotonic time of the last line said, 0 none */
        char first[LOG_SKIPS_REASON_MAX]; /* why the first of them was skipped */
} LogSkips;

/* One record skipped, and why (kept if it is the first since the last line). */
void log_skips_add(LogSkips *s, const char *fmt, ...) _printf_(2, 3);
/* Say what was skipped, in one line at level (warning): the reason alone for one
 * record, "N records skipped: <first reason>…" for more; nothing for none. Resets. */
void log_skips_flush(LogSkips *s, int level, const char *event);
/* A stream: the first skipped record after a quiet window is said at once; the next
 * ones within LOG_SKIPS_WINDOW_USEC of it are counted and said in one line at the next
 * skip after the window (or at log_skips_flush()). now: monotonic µs. */
void log_skips_add_stream(LogSkips *s, uint64_t now, int level, const char *fmt, ...) _printf_(4, 5);
