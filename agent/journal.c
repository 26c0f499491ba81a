#include "pullwatch/journal.h"

#include <sys/stat.h>
#include <systemd/sd-journal.h>

int journal_send_finding(const Finding *f) {
        JournalFields jf;
        int r = finding_to_journal(f, &jf);
        if (r < 0)
                return r;
        r = sd_journal_sendv(jf.iov, (int) jf.n);
        if (r < 0)
                return r;
        /* The library returns 0 when the socket is missing: the entry was lost. An lstat()
         * (~1 µs, findings are rare) tells; a socket file that outlived its journald is
         * refused by the send itself (-ECONNREFUSED). */
        struct stat st;
        if (lstat(JOURNAL_SOCKET, &st) < 0)
                return -errno;
        return S_ISSOCK(st.st_mode) ? 0 : -ENOTSOCK;
}
