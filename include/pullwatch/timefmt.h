/* The one UTC timestamp formatter (gmtime_r, never the shared-state gmtime). */
#pragma once

#include "pullwatch/util.h"

typedef enum TimeFormat {
        TIMEFMT_RFC3339_USEC, /* 2026-11-25T16:50:53.123456Z: records, inventory */
        TIMEFMT_RFC3339_SEC,  /* 2026-11-25T16:50:53Z: pullwatch report */
        TIMEFMT_COMPACT,      /* 20261125T165053Z: in file names */
} TimeFormat;

#define TIMEFMT_MAX 32 /* enough for every format above, with the NUL */

/* usec: microseconds since the epoch. -ENOBUFS if buf is too small, -EINVAL for a
 * time gmtime_r() cannot represent or an unknown format. */
int timefmt_utc(uint64_t usec, TimeFormat format, char *buf, size_t size);
