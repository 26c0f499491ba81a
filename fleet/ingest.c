/* The request body: bounded gzip inflation and JSON lines (see ingest.h). */
#include "pullwatch/ingest.h"

#include <zlib.h>

#include "pullwatch/util.h"

int ingest_inflate(const void *in, size_t len, size_t max, char **ret, size_t *ret_len, char *err, size_t errlen) {
        if ((!in && len > 0) || !ret || !ret_len || max >= SIZE_MAX - 1)
                return -EINVAL;
        z_stream z = {0};
        /* 15 + 32: zlib or gzip header, detected; we ask for gzip and check it below */
        if (inflateInit2(&z, 15 + 16) != Z_OK)
                return errbuf_fail(err, errlen, -ENOMEM, "gzip: cannot initialise zlib");
        size_t cap = len * 4 + 4096;
        if (cap > max + 1)
                cap = max + 1;
        char *out = malloc(cap + 1);
        size_t n = 0;
        int r = 0;
        if (!out) {
                inflateEnd(&z);
                return errbuf_fail(err, errlen, -ENOMEM, "gzip: out of memory");
        }
        const unsigned char *p = in;
        size_t left = len;
        for (;;) {
                if (n == cap) {
                        if (cap > max) {
                                r = errbuf_fail(err, errlen, -EFBIG, "body inflates to more than %zu bytes", max);
                                break;
                        }
                        size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
                        char *q = realloc(out, ncap + 1);
                        if (!q) {
                                r = errbuf_fail(err, errlen, -ENOMEM, "gzip: out of memory");
                                break;
                        }
                        out = q;
                        cap = ncap;
                }
                uInt in_chunk = left > (1U << 30) ? (1U << 30) : (uInt) left;
                size_t room = cap - n;
                uInt out_chunk = room > (1U << 30) ? (1U << 30) : (uInt) room;
                z.next_in = (Bytef *) p;
                z.avail_in = in_chunk;
                z.next_out = (Bytef *) out + n;
                z.avail_out = out_chunk;
                int zr = inflate(&z, Z_NO_FLUSH);
                p += in_chunk - z.avail_in;
                left -= in_chunk - z.avail_in;
                n += out_chunk - z.avail_out;
                if (zr == Z_STREAM_END) {
                        if (left == 0)
                                break;
                        /* another gzip member follows (as `cat a.gz b.gz`) */
                        if (inflateReset(&z) != Z_OK) {
                                r = errbuf_fail(err, errlen, -EBADMSG, "gzip: cannot reset");
                                break;
                        }
                        continue;
                }
                if (zr == Z_BUF_ERROR && z.avail_out > 0) {
                        r = errbuf_fail(err, errlen, -EBADMSG, "gzip: body truncated");
                        break;
                }
                if (zr != Z_OK && zr != Z_BUF_ERROR) {
                        r = errbuf_fail(err, errlen, zr == Z_MEM_ERROR ? -ENOMEM : -EBADMSG, "gzip: %s",
                                        z.msg ? z.msg : "invalid data");
                        break;
                }
                if (left == 0 && z.avail_out > 0) {
                        r = errbuf_fail(err, errlen, -EBADMSG, "gzip: body truncated");
                        break;
                }
        }
        inflateEnd(&z);
        if (r >= 0 && n > max)
                r = errbuf_fail(err, errlen, -EFBIG, "body inflates to more than %zu bytes", max);
        if (r < 0) {
                free(out);
                return r;
        }
        out[n] = 0;
        *ret = out;
        *ret_len = n;
        return 0;
}

int ingest_parse_body(const char *body, size_t len, size_t max_records, ingest_record_t cb, void *userdata,
                      size_t *ret_n, char *err, size_t errlen) {
        if (!body && len > 0)
                return -EINVAL;
        /* one Record on the heap (a few KiB), reused for every line */
        Record *rec = malloc(sizeof *rec);
        if (!rec)
                return errbuf_fail(err, errlen, -ENOMEM, "out of memory");
        size_t line = 0, n = 0;
        int r = 0;
        for (size_t pos = 0; pos < len;) {
                const char *start = body + pos;
                const char *nl = memchr(start, '\n', len - pos);
                size_t l = nl ? (size_t) (nl - start) : len - pos;
                pos += l + (nl ? 1 : 0);
                line++;
                if (l > 0 && start[l - 1] == '\r')
                        l--;
                if (l == 0)
                        continue;
                if (n >= max_records) {
                        r = errbuf_fail(err, errlen, -E2BIG, "line %zu: more than %zu records in one request", line,
                                        max_records);
                        break;
                }
                char reason[256] = "";
                r = record_from_json(start, l, rec, reason, sizeof reason);
                if (r < 0) {
                        errbuf_fail(err, errlen, r, "line %zu: %s", line, reason);
                        break;
                }
                n++;
                if (cb)
                        r = cb(userdata, rec);
                record_done(rec);
                if (r < 0) {
                        errbuf_fail(err, errlen, r, "line %zu: %s", line, strerror(-r));
                        break;
                }
        }
        free(rec);
        if (r < 0)
                return r;
        if (ret_n)
                *ret_n = n;
        return 0;
}
