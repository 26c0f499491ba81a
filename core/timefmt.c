/* See include/pullwatch/timefmt.h. */
#include "pullwatch/timefmt.h"

#include <inttypes.h>

int timefmt_utc(uint64_t usec, TimeFormat format, char *buf, size_t size) {
        static const char *const patterns[] = {
                [TIMEFMT_RFC3339_USEC] = "%Y-%m-%dT%H:%M:%S",
                [TIMEFMT_RFC3339_SEC] = "%Y-%m-%dT%H:%M:%SZ",
                [TIMEFMT_COMPACT] = "%Y%m%dT%H%M%SZ",
        };
        if ((unsigned) format >= ELEMENTSOF(patterns) || usec / 1000000ULL > (uint64_t) INT64_MAX)
                return -EINVAL;
        time_t sec = (time_t) (usec / 1000000ULL);
        struct tm tm;
        if (!gmtime_r(&sec, &tm))
                return -EINVAL;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral" /* one of the constant patterns above */
        size_t n = strftime(buf, size, patterns[format], &tm);
#pragma GCC diagnostic pop
        if (n == 0)
                return -ENOBUFS;
        if (format != TIMEFMT_RFC3339_USEC)
                return 0;
        int r = snprintf(buf + n, size - n, ".%06" PRIu64 "Z", (uint64_t) (usec % 1000000ULL));
        if (r < 0 || (size_t) r >= size - n)
                return -ENOBUFS;
        return 0;
}
