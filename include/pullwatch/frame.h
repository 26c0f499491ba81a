/* The record framing the spool and the ledger's change log share: a 20-byte header of
 * magic (4), payload length (4), seq (8) and CRC32 (4), little-endian, the CRC over the
 * header's length and seq and the payload. Pure byte helpers; header-only. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

static inline void frame_put_le32(uint8_t *p, uint32_t v) {
        for (unsigned i = 0; i < 4; i++)
                p[i] = (uint8_t) (v >> (8 * i));
}
static inline void frame_put_le64(uint8_t *p, uint64_t v) {
        for (unsigned i = 0; i < 8; i++)
                p[i] = (uint8_t) (v >> (8 * i));
}
static inline uint32_t frame_get_le32(const uint8_t *p) {
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}
static inline uint64_t frame_get_le64(const uint8_t *p) {
        return (uint64_t) frame_get_le32(p) | (uint64_t) frame_get_le32(p + 4) << 32;
}

/* CRC32 of hdr[4..16) (length and seq) and the payload: what hdr[16..20) must hold. */
static inline uint32_t frame_crc(const uint8_t *hdr, const void *payload, size_t len) {
        uLong c = crc32(crc32(0L, Z_NULL, 0), hdr + 4, 12);
        if (len > 0)
                c = crc32(c, payload, (uInt) len);
        return (uint32_t) c;
}
