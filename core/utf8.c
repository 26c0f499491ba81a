#include <stdint.h>

#include "pullwatch/utf8.h"

size_t utf8_sequence_len(const void *s, size_t avail) {
        const uint8_t *p = s, *end = p + avail;
        uint32_t c = *p++, min;
        unsigned n;
        if (c >= 0xc2 && c <= 0xdf)
                n = 1, c &= 0x1f, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef)
                n = 2, c &= 0x0f, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4)
                n = 3, c &= 0x07, min = 0x10000;
        else
                return 0;
        if ((size_t) (end - p) < n)
                return 0;
        for (unsigned i = 0; i < n; i++, p++) {
                if ((*p & 0xc0) != 0x80)
                        return 0;
                c = c << 6 | (*p & 0x3fU);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                return 0;
        return n + 1;
}

bool utf8_valid_n(const void *s, size_t len) {
        const uint8_t *p = s, *end = p + len;
        while (p < end) {
                if (*p == 0)
                        return false;
                if (*p < 0x80) {
                        p++;
                        continue;
                }
                size_t n = utf8_sequence_len(p, (size_t) (end - p));
                if (n == 0)
                        return false;
                p += n;
        }
        return true;
}
