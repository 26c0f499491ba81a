#include <stdint.h>

#include "pullwatch/utf8.h"

bool utf8_valid_n(const void *s, size_t len) {
        const uint8_t *p = s, *end = p + len;
        while (p < end) {
                uint32_t c = *p++, min;
                unsigned n;
                if (c == 0)
                        return false;
                if (c < 0x80)
                        continue;
                if (c >= 0xc2 && c <= 0xdf)
                        n = 1, c &= 0x1f, min = 0x80;
                else if (c >= 0xe0 && c <= 0xef)
                        n = 2, c &= 0x0f, min = 0x800;
                else if (c >= 0xf0 && c <= 0xf4)
                        n = 3, c &= 0x07, min = 0x10000;
                else
                        return false;
                if ((size_t) (end - p) < n)
                        return false;
                for (; n > 0; n--, p++) {
                        if ((*p & 0xc0) != 0x80)
                                return false;
                        c = c << 6 | (*p & 0x3fU);
                }
                if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                        return false;
        }
        return true;
}
