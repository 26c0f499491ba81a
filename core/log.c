#include "pullwatch/log.h"

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
        /* one line, always: a peer-controlled string must not forge extra log lines */
        for (char *p = msg; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';

        fprintf(stderr, "pullwatch: %s\n", msg);
        if (level <= LOG_LEVEL_WARNING && !check_stderr_is_journal())
                sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", level, "SYSLOG_IDENTIFIER=pullwatch",
                                "PULLWATCH_EVENT=%s", event ? event : "log", "NODE_NAME=%s", node_name,
                                error ? "ERRNO=%d" : NULL, abs(error), NULL);
        return ret;
}
