/* Fuzz target for check's manifest-line reader (a YAML image: entry), with invariants:
 * a value is NUL-terminated within the buffer and its length is what was reported; a
 * failure explains itself in one line; any result escapes to a bounded, printable string. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pullwatch/check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *line = (const char *) data;
        char value[256], err[256] = "", esc[64];
        size_t len = (size_t) -1;
        int r = check_manifest_image(line, size, value, sizeof value, &len, err, sizeof err);
        if (r == 1) {
                if (len >= sizeof value || value[len] != 0)
                        abort();
                check_escape(value, len, esc, sizeof esc);
        } else if (r == 0) {
                if (len != (size_t) -1)
                        abort();
        } else {
                if (len != (size_t) -1 || !err[0] || strchr(err, '\n'))
                        abort();
        }
        check_escape(line, size, esc, sizeof esc);
        size_t n = strlen(esc);
        if (n >= sizeof esc)
                abort();
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) esc[i] < 0x20 || (unsigned char) esc[i] > 0x7e)
                        abort();
        return 0;
}
