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

/* Hand one decoded record to cb (if any) and release it; an error names the record as
 * "UNIT N". Shared by the JSON and the packed decoders. */
static int deliver(ingest_record_t cb, void *userdata, Record *rec, const char *unit, size_t n, char *err,
                   size_t errlen) {
        int r = cb ? cb(userdata, rec) : 0;
        record_done(rec);
        if (r < 0)
                errbuf_fail(err, errlen, r, "%s %zu: %s", unit, n, strerror(-r));
        return r;
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
                r = deliver(cb, userdata, rec, "line", line, err, errlen);
                if (r < 0)
                        break;
        }
        free(rec);
        if (r < 0)
                return r;
        if (ret_n)
                *ret_n = n;
        return 0;
}

/* ------------------------------------------------------------ packed form ---- */

typedef struct StrField {
        size_t off, size;
} StrField;
#define SF(type, field) {offsetof(type, field), sizeof(((type *) 0)->field)}

/* Every text field, in packing order. */
static const StrField record_strs[] = {
        SF(Record, cluster),
        SF(Record, finding.id),
        SF(Record, finding.node),
        SF(Record, finding.namespace),
        SF(Record, finding.image.ref),
        SF(Record, finding.image.name),
        SF(Record, finding.image.tag),
        SF(Record, finding.image.digest),
        SF(Record, finding.image.previous_digest),
        SF(Record, finding.image.expected_digest),
        SF(Record, finding.image.revision),
        SF(Record, finding.image.media_type),
        SF(Record, finding.workload.namespace),
        SF(Record, finding.workload.pod),
        SF(Record, finding.workload.container),
        SF(Record, finding.workload.container_id),
        SF(Record, finding.message),
        SF(Record, inventory.snapshot),
};
static const StrField image_strs[] = {
        SF(InventoryImage, namespace), SF(InventoryImage, ref),        SF(InventoryImage, name),
        SF(InventoryImage, tag),       SF(InventoryImage, digest),     SF(InventoryImage, media_type),
        SF(InventoryImage, revision),
};
static const StrField pod_strs[] = {
        SF(InventoryPod, namespace),
        SF(InventoryPod, pod),
        SF(InventoryPod, container),
};

typedef struct Packer {
        char *buf;
        size_t len, alloc;
} Packer;

static int pack_bytes(Packer *p, const void *data, size_t n) {
        if (greedy_realloc((void **) &p->buf, &p->alloc, p->len + n, 1, 64 * 1024) < 0)
                return -ENOMEM;
        memcpy(p->buf + p->len, data, n);
        p->len += n;
        return 0;
}

static int pack_strs(Packer *p, const void *base, const StrField *f, size_t n) {
        for (size_t i = 0; i < n; i++) {
                const char *s = (const char *) base + f[i].off;
                int r = pack_bytes(p, s, strnlen(s, f[i].size - 1) + 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

#define PACK_INT(p, v)                                  \
        ({                                              \
                __typeof__(v) v_ = (v);                 \
                pack_bytes((p), &v_, sizeof v_);        \
        })

static int pack_record(void *userdata, Record *rec) {
        Packer *p = userdata;
        const Finding *f = &rec->finding;
        uint8_t head[4] = {(uint8_t) rec->type, (uint8_t) f->kind, (uint8_t) f->severity,
                           (uint8_t) ((f->image.tag_implicit ? 1 : 0) | (f->found_at_start ? 2 : 0))};
        int r = pack_bytes(p, head, sizeof head);
        if (r >= 0)
                r = PACK_INT(p, (uint64_t) f->time_usec);
        if (r >= 0)
                r = pack_strs(p, rec, record_strs, ELEMENTSOF(record_strs));
        if (r < 0 || rec->type != RECORD_INVENTORY)
                return r;
        const Inventory *inv = &rec->inventory;
        r = PACK_INT(p, (uint64_t) inv->total);
        if (r >= 0)
                r = PACK_INT(p, (uint64_t) inv->compliant);
        if (r >= 0)
                r = PACK_INT(p, (uint32_t) inv->part);
        if (r >= 0)
                r = PACK_INT(p, (uint32_t) inv->parts);
        if (r >= 0)
                r = PACK_INT(p, (uint32_t) inv->n_images);
        for (size_t i = 0; r >= 0 && i < inv->n_images; i++) {
                const InventoryImage *im = &inv->images[i];
                r = pack_strs(p, im, image_strs, ELEMENTSOF(image_strs));
                if (r >= 0)
                        r = PACK_INT(p, (uint8_t) (im->compliant ? 1 : 0));
                if (r >= 0)
                        r = PACK_INT(p, (uint32_t) im->findings);
                if (r >= 0)
                        r = PACK_INT(p, (uint32_t) im->n_pods);
                for (size_t k = 0; r >= 0 && k < im->n_pods; k++)
                        r = pack_strs(p, &im->pods[k], pod_strs, ELEMENTSOF(pod_strs));
        }
        return r;
}

int ingest_pack_body(const char *body, size_t len, size_t max_records, char **ret, size_t *ret_len, size_t *ret_n,
                     char *err, size_t errlen) {
        if (!ret || !ret_len)
                return -EINVAL;
        Packer p = {0};
        /* no empty result: a body of blank lines still gets a (0-byte) buffer to own */
        int r = greedy_realloc((void **) &p.buf, &p.alloc, 1, 1, len / 2 + 64);
        if (r < 0)
                return errbuf_fail(err, errlen, -ENOMEM, "out of memory");
        r = ingest_parse_body(body, len, max_records, pack_record, &p, ret_n, err, errlen);
        if (r < 0) {
                free(p.buf);
                return r;
        }
        /* give back what the doubling left over: the queue counts len bytes */
        char *q = realloc(p.buf, p.len + 1);
        *ret = q ? q : p.buf;
        *ret_len = p.len;
        return 0;
}

typedef struct Unpacker {
        const char *p, *end;
} Unpacker;

static int unpack_bytes(Unpacker *u, void *dst, size_t n) {
        if ((size_t) (u->end - u->p) < n)
                return -EBADMSG;
        memcpy(dst, u->p, n);
        u->p += n;
        return 0;
}

static int unpack_strs(Unpacker *u, void *base, const StrField *f, size_t n) {
        for (size_t i = 0; i < n; i++) {
                size_t room = (size_t) (u->end - u->p);
                const char *nul = memchr(u->p, 0, room < f[i].size ? room : f[i].size);
                if (!nul)
                        return -EBADMSG;
                memcpy((char *) base + f[i].off, u->p, (size_t) (nul - u->p) + 1);
                u->p = nul + 1;
        }
        return 0;
}

static int unpack_record(Unpacker *u, Record *rec) {
        memset(rec, 0, sizeof *rec);
        Finding *f = &rec->finding;
        uint8_t head[4];
        uint64_t t, total, compliant;
        uint32_t part, parts, n_images;
        int r = unpack_bytes(u, head, sizeof head);
        if (r >= 0)
                r = unpack_bytes(u, &t, sizeof t);
        if (r >= 0)
                r = unpack_strs(u, rec, record_strs, ELEMENTSOF(record_strs));
        if (r < 0)
                return r;
        rec->type = (RecordType) head[0];
        f->kind = (FindingKind) head[1];
        f->severity = (Severity) head[2];
        f->image.tag_implicit = head[3] & 1;
        f->found_at_start = (head[3] & 2) != 0;
        f->time_usec = t;
        if (rec->type != RECORD_INVENTORY)
                return 0;
        Inventory *inv = &rec->inventory;
        r = unpack_bytes(u, &total, sizeof total);
        if (r >= 0)
                r = unpack_bytes(u, &compliant, sizeof compliant);
        if (r >= 0)
                r = unpack_bytes(u, &part, sizeof part);
        if (r >= 0)
                r = unpack_bytes(u, &parts, sizeof parts);
        if (r >= 0)
                r = unpack_bytes(u, &n_images, sizeof n_images);
        if (r < 0)
                return r;
        if (n_images > RECORD_IMAGES_MAX)
                return -EBADMSG;
        inv->total = total;
        inv->compliant = compliant;
        inv->part = part;
        inv->parts = parts;
        inv->images = calloc(n_images ? n_images : 1, sizeof *inv->images);
        if (!inv->images)
                return -ENOMEM;
        for (uint32_t i = 0; i < n_images; i++) {
                InventoryImage *im = &inv->images[i];
                uint8_t c;
                uint32_t findings, n_pods;
                inv->n_images = i + 1; /* what record_done frees */
                r = unpack_strs(u, im, image_strs, ELEMENTSOF(image_strs));
                if (r >= 0)
                        r = unpack_bytes(u, &c, sizeof c);
                if (r >= 0)
                        r = unpack_bytes(u, &findings, sizeof findings);
                if (r >= 0)
                        r = unpack_bytes(u, &n_pods, sizeof n_pods);
                if (r < 0)
                        return r;
                if (n_pods > RECORD_PODS_MAX)
                        return -EBADMSG;
                im->compliant = c != 0;
                im->findings = findings;
                if (n_pods > 0) {
                        im->pods = calloc(n_pods, sizeof *im->pods);
                        if (!im->pods)
                                return -ENOMEM;
                        im->n_pods = n_pods;
                }
                for (uint32_t k = 0; r >= 0 && k < n_pods; k++)
                        r = unpack_strs(u, &im->pods[k], pod_strs, ELEMENTSOF(pod_strs));
                if (r < 0)
                        return r;
        }
        return 0;
}

int ingest_unpack(const char *packed, size_t len, ingest_record_t cb, void *userdata, size_t *ret_n, char *err,
                  size_t errlen) {
        if (!packed && len > 0)
                return -EINVAL;
        Record *rec = malloc(sizeof *rec);
        if (!rec)
                return errbuf_fail(err, errlen, -ENOMEM, "out of memory");
        Unpacker u = {.p = packed, .end = packed + len};
        size_t n = 0;
        int r = 0;
        while (u.p < u.end) {
                r = unpack_record(&u, rec);
                if (r < 0) {
                        record_done(rec);
                        errbuf_fail(err, errlen, r, "record %zu: %s", n + 1,
                                    r == -ENOMEM ? "out of memory" : "packed records truncated");
                        break;
                }
                n++;
                r = deliver(cb, userdata, rec, "record", n, err, errlen);
                if (r < 0)
                        break;
        }
        free(rec);
        if (r < 0)
                return r;
        if (ret_n)
                *ret_n = n;
        return 0;
}
