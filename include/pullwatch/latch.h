/* One log line when something starts failing (or fails differently), one when it
 * recovers with how many attempts failed meanwhile: a full disk or a dead journald must
 * not turn every record into a log line. Header-only. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct FailLatch {
        int error;      /* the current run's error, 0 when working */
        uint64_t count; /* failures in the current run */
} FailLatch;

/* Note a failure; true when it is news (the first, or a different error): log it. */
static inline bool latch_fail(FailLatch *l, int error) {
        bool report = l->error != error;
        l->error = error;
        l->count = report ? 1 : l->count + 1;
        return report;
}

/* Note a success; returns how many failures the run that just ended had (0 if none). */
static inline uint64_t latch_ok(FailLatch *l) {
        uint64_t n = l->error ? l->count : 0;
        *l = (FailLatch){0};
        return n;
}
