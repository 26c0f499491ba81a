#include "pullwatch/log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <systemd/sd-journal.h>

static int max_level = LOG_LEVEL_INFO;
static char node_name[256];
static int stderr_is_journal = -1;

void log_set_max_level(int level) {
        max_level = level;
}

void log_set_node(const char *node) {
        snprintf(node_name, sizeof node_name, "%s", node ? node : "");
}

static bool check_stderr_is_journal(void) {
        if (stderr_is_journal < 0) {
                const char *e = getenv("JOURNAL_STREAM");
                unsigned long long dev, ino;
                struct stat st;
                stderr_is_journal = e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
                                    (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
        }
        return stderr_is_journal;
}

int log_full(int level, const char *event, int error, const char *fmt, ...) {
        int ret = error == 0 ? 0 : -abs(error);
        if (level > max_level)
                return ret;

        char msg[1024];
        va_list ap;
        if (error != 0)
                errno = abs(error); /* so that %m names it (systemd's log.c) */
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        /* one line, always: a peer-controlled string must not forge extra log lines; and
         * printable: no terminal escape sequence (C0, DEL, C1 as UTF-8) reaches a terminal
         * or a log viewer, each is written \xNN */
        char line[sizeof msg * 4];
        size_t o = 0;
        for (const unsigned char *p = (const unsigned char *) msg; *p; p++) {
                bool c1 = p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f;
                if (*p == '\n' || *p == '\r')
                        line[o++] = ' ';
                else if (*p < 0x20 || *p == 0x7f || c1) {
                        o += (size_t) snprintf(line + o, sizeof line - o, c1 ? "\\x%02x\\x%02x" : "\\x%02x", p[0], p[1]);
                        p += c1;
                } else
                        line[o++] = (char) *p;
        }
        line[o] = 0;

        fprintf(stderr, "pullwatch: %s\n", line);
        if (level <= LOG_LEVEL_WARNING && !check_stderr_is_journal())
                sd_journal_send("MESSAGE=%s", line, "PRIORITY=%d", level, "SYSLOG_IDENTIFIER=pullwatch",
                                "PULLWATCH_EVENT=%s", event ? event : "log", "NODE_NAME=%s", node_name,
                                error ? "ERRNO=%d" : NULL, abs(error), NULL);
        return ret;
}

_printf_(2, 0) static void skips_note(LogSkips *s, const char *fmt, va_list ap) {
        if (s->n++ == 0)
                vsnprintf(s->first, sizeof s->first, fmt, ap);
}

void log_skips_add(LogSkips *s, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        skips_note(s, fmt, ap);
        va_end(ap);
}

void log_skips_flush(LogSkips *s, int level, const char *event) {
        if (s->n == 1)
                log_full(level, event, 0, "%s", s->first);
        else if (s->n > 1)
                log_full(level, event, 0, "%" PRIu64 " records skipped: %s…", s->n, s->first);
        s->n = 0;
        s->first[0] = 0;
}

void log_skips_add_stream(LogSkips *s, uint64_t now, int level, const char *fmt, ...) {
        va_list ap;
        bool quiet = s->said_usec == 0 || now - s->said_usec >= LOG_SKIPS_WINDOW_USEC;
        if (quiet) {
                log_skips_flush(s, level, "records_skipped"); /* what the last window held */
                s->said_usec = now;
        }
        va_start(ap, fmt);
        skips_note(s, fmt, ap);
        va_end(ap);
        if (quiet)
                log_skips_flush(s, level, "records_skipped");
}
