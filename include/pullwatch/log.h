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
