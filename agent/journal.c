#include "pullwatch/journal.h"

#include <systemd/sd-journal.h>

int journal_send_finding(const Finding *f) {
        JournalFields jf;
        int r = finding_to_journal(f, &jf);
        if (r < 0)
                return r;
        return sd_journal_sendv(jf.iov, (int) jf.n);
}
