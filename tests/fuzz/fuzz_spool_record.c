/* Fuzz the spool's on-disk reader: one frame decode at the start of the input, and a
 * whole-segment scan (resync over corrupt regions, torn tail detection). */
#include <stdint.h>
#include <stdlib.h>

#include "pullwatch/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check_visit(uint64_t seq, size_t offset, size_t payload_len, void *userdata) {
        const size_t *size = userdata;
        if (offset + SPOOL_RECORD_HEADER_SIZE + payload_len > *size)
                abort();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint64_t seq;
        const uint8_t *payload;
        size_t len, flen;
        if (spool_record_decode(data, size, &seq, &payload, &len, &flen) == 0)
                if (flen > size || payload + len != data + flen)
                        abort();

        SpoolScanResult res;
        if (spool_segment_scan(data, size, 0, check_visit, &size, &res) < 0)
                abort();
        if (res.valid_end > size || res.skipped_bytes > res.valid_end)
                abort();
        /* Re-scanning the valid prefix must give the same records and no torn tail. */
        SpoolScanResult again;
        if (spool_segment_scan(data, res.valid_end, 0, NULL, NULL, &again) < 0 || again.records != res.records ||
            again.valid_end != res.valid_end)
                abort();
        return 0;
}
