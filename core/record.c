/* The record schema, decode side (see record.h). The encoders are finding_to_json()
 * (core/finding.c) and the agent's inventory_flush() (agent/agent.c). Unknown keys are
 * ignored (a newer agent may add fields within the same schema version); known keys
 * must have their type and fit their bound. */
#include "pullwatch/record.h"

#include <jansson.h>
#include <time.h>

#include "pullwatch/ref.h"
#include "pullwatch/util.h"

#define FAIL(error, ...) errbuf_fail(err, errlen, (error), __VA_ARGS__)

/* A string member: required or optional ("" when absent), bounded by size (with NUL). */
static int get_str(json_t *o, const char *prefix, const char *key, bool required, char *buf, size_t size, char *err,
                   size_t errlen) {
        json_t *v = json_object_get(o, key);
        buf[0] = 0;
        if (!v || json_is_null(v)) {
                if (required)
                        return FAIL(-EBADMSG, "%s%s: missing", prefix, key);
                return 0;
        }
        if (!json_is_string(v))
                return FAIL(-EBADMSG, "%s%s: not a string", prefix, key);
        size_t len = json_string_length(v);
        if (len >= size)
                return FAIL(-E2BIG, "%s%s: longer than %zu bytes", prefix, key, size - 1);
        const char *s = json_string_value(v);
        if (memchr(s, 0, len))
                return FAIL(-EBADMSG, "%s%s: contains a NUL byte", prefix, key);
        memcpy(buf, s, len);
        buf[len] = 0;
        return 0;
}

static int get_uint(json_t *o, const char *key, uint64_t max, uint64_t *ret, char *err, size_t errlen) {
        json_t *v = json_object_get(o, key);
        if (!v)
                return FAIL(-EBADMSG, "%s: missing", key);
        if (!json_is_integer(v))
                return FAIL(-EBADMSG, "%s: not an integer", key);
        json_int_t i = json_integer_value(v);
        if (i < 0 || (uint64_t) i > max)
                return FAIL(-EBADMSG, "%s: %lld out of range 0..%llu", key, (long long) i, (unsigned long long) max);
        *ret = (uint64_t) i;
        return 0;
}

int record_parse_time(const char *s, uint64_t *ret) {
        /* 2026-11-25T16:50:53.123456Z; the fraction is optional, up to 9 digits */
        struct tm tm = {0};
        unsigned y, mo, d, h, mi, sec;
        int n = 0;
        if (!s || sscanf(s, "%4u-%2u-%2uT%2u:%2u:%2u%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
                return -EINVAL;
        if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
                return -EINVAL;
        for (int i = 0; i < 19; i++)
                if ((i == 4 || i == 7) ? s[i] != '-'
                    : i == 10          ? s[i] != 'T'
                    : (i == 13 || i == 16) ? s[i] != ':'
                                           : (s[i] < '0' || s[i] > '9'))
                        return -EINVAL;
        const char *p = s + 19;
        uint64_t usec = 0;
        if (*p == '.') {
                int digits = 0;
                for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
                        if (digits >= 9)
                                return -EINVAL;
                        if (digits < 6)
                                usec = usec * 10 + (uint64_t) (*p - '0');
                }
                if (digits == 0)
                        return -EINVAL;
                for (; digits < 6; digits++)
                        usec *= 10;
        }
        if (strcmp(p, "Z") != 0)
                return -EINVAL;
        tm.tm_year = (int) y - 1900;
        tm.tm_mon = (int) mo - 1;
        tm.tm_mday = (int) d;
        tm.tm_hour = (int) h;
        tm.tm_min = (int) mi;
        tm.tm_sec = (int) sec;
        time_t t = timegm(&tm);
        if (t < 0)
                return -EINVAL;
        *ret = (uint64_t) t * 1000000ULL + usec;
        return 0;
}

void record_findings_text(unsigned findings, char *buf, size_t size) {
        /* sorted by name: the order SQL's flag expression writes too (fleet/store.c) */
        static const FindingKind by_name[] = {FINDING_DIGEST_MISMATCH, FINDING_LATEST_TAG,  FINDING_MUTABLE_TAG,
                                              FINDING_REVISION_MISMATCH, FINDING_TAG_MOVED, FINDING_UNTRACEABLE};
        size_t used = 0;
        if (size == 0)
                return;
        buf[0] = 0;
        for (size_t i = 0; i < ELEMENTSOF(by_name); i++) {
                if (!(findings & (1u << by_name[i])))
                        continue;
                int k = snprintf(buf + used, size - used, "%s%s", used ? "," : "", finding_kind_to_string(by_name[i]));
                if (k < 0 || (size_t) k >= size - used)
                        return;
                used += (size_t) k;
        }
}

void record_images_free(InventoryImage *images, size_t n) {
        for (size_t i = 0; images && i < n; i++)
                free(images[i].pods);
        free(images);
}

void record_done(Record *r) {
        if (!r)
                return;
        record_images_free(r->inventory.images, r->inventory.n_images);
        r->inventory.images = NULL;
        r->inventory.n_images = 0;
}

static int decode_pods(json_t *a, InventoryImage *im, const char *prefix, char *err, size_t errlen) {
        if (!a || json_is_null(a))
                return 0;
        if (!json_is_array(a))
                return FAIL(-EBADMSG, "%spods: not an array", prefix);
        size_t n = json_array_size(a);
        if (n > RECORD_PODS_MAX)
                return FAIL(-E2BIG, "%spods: more than %d", prefix, RECORD_PODS_MAX);
        if (n == 0)
                return 0;
        im->pods = calloc(n, sizeof *im->pods);
        if (!im->pods)
                return FAIL(-ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                json_t *p = json_array_get(a, i);
                char pre[96];
                snprintf(pre, sizeof pre, "%spods[%zu].", prefix, i);
                if (!json_is_object(p))
                        return FAIL(-EBADMSG, "%spods[%zu]: not an object", prefix, i);
                InventoryPod *d = &im->pods[i];
                int r = get_str(p, pre, "namespace", false, d->namespace, sizeof d->namespace, err, errlen);
                if (r >= 0)
                        r = get_str(p, pre, "pod", false, d->pod, sizeof d->pod, err, errlen);
                if (r >= 0)
                        r = get_str(p, pre, "container", false, d->container, sizeof d->container, err, errlen);
                if (r < 0)
                        return r;
                im->n_pods++;
        }
        return 0;
}

static int decode_image(json_t *o, size_t index, InventoryImage *im, char *err, size_t errlen) {
        char pre[64];
        snprintf(pre, sizeof pre, "images[%zu].", index);
        if (!json_is_object(o))
                return FAIL(-EBADMSG, "images[%zu]: not an object", index);
        int r = get_str(o, pre, "namespace", true, im->namespace, sizeof im->namespace, err, errlen);
        if (r >= 0)
                r = get_str(o, pre, "ref", true, im->ref, sizeof im->ref, err, errlen);
        if (r >= 0)
                r = get_str(o, pre, "digest", true, im->digest, sizeof im->digest, err, errlen);
        if (r >= 0)
                r = get_str(o, pre, "tag", false, im->tag, sizeof im->tag, err, errlen);
        if (r >= 0)
                r = get_str(o, pre, "name", false, im->name, sizeof im->name, err, errlen);
        if (r >= 0)
                r = get_str(o, pre, "media_type", false, im->media_type, sizeof im->media_type, err, errlen);
        if (r >= 0)
                r = get_str(o, pre, "revision", false, im->revision, sizeof im->revision, err, errlen);
        if (r < 0)
                return r;
        json_t *c = json_object_get(o, "compliant");
        if (c && !json_is_boolean(c))
                return FAIL(-EBADMSG, "%scompliant: not a boolean", pre);
        json_t *f = json_object_get(o, "findings");
        if (f && !json_is_null(f)) {
                if (!json_is_array(f))
                        return FAIL(-EBADMSG, "%sfindings: not an array", pre);
                size_t i;
                json_t *k;
                json_array_foreach(f, i, k) {
                        FindingKind kind = json_is_string(k) ? finding_kind_from_string(json_string_value(k))
                                                             : _FINDING_KIND_INVALID;
                        if (kind < 0 || kind == FINDING_PULL)
                                return FAIL(-EBADMSG, "%sfindings[%zu]: not a finding kind", pre, i);
                        im->findings |= 1u << kind;
                }
        }
        im->compliant = c ? json_is_true(c) : im->findings == 0;
        if (!im->name[0]) {
                Ref ref;
                if (ref_parse(im->ref, &ref, NULL, 0) >= 0 && !ref.is_image_id)
                        (void) ref_name(&ref, im->name, sizeof im->name);
        }
        return decode_pods(json_object_get(o, "pods"), im, pre, err, errlen);
}

static int decode_images(json_t *a, InventoryImage **ret, size_t *ret_n, char *err, size_t errlen) {
        if (!json_is_array(a))
                return FAIL(-EBADMSG, "images: %s", a ? "not an array" : "missing");
        size_t n = json_array_size(a);
        if (n > RECORD_IMAGES_MAX)
                return FAIL(-E2BIG, "images: more than %d in one part", RECORD_IMAGES_MAX);
        InventoryImage *images = calloc(n ? n : 1, sizeof *images);
        if (!images)
                return FAIL(-ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                int r = decode_image(json_array_get(a, i), i, &images[i], err, errlen);
                if (r < 0) {
                        record_images_free(images, i + 1);
                        return r;
                }
        }
        *ret = images;
        *ret_n = n;
        return 0;
}

int record_images_from_json(const char *json, size_t len, InventoryImage **ret, size_t *ret_n, char *err,
                            size_t errlen) {
        json_error_t jerr;
        json_t *a = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!a)
                return FAIL(-EBADMSG, "images: %s", jerr.text);
        int r = decode_images(a, ret, ret_n, err, errlen);
        json_decref(a);
        return r;
}

static int decode_finding(json_t *o, Finding *f, char *err, size_t errlen) {
        int r = get_str(o, "", "namespace", false, f->namespace, sizeof f->namespace, err, errlen);
        if (r < 0)
                return r;
        json_t *im = json_object_get(o, "image");
        if (!json_is_object(im))
                return FAIL(-EBADMSG, "image: %s", im ? "not an object" : "missing");
        FindingImage *i = &f->image;
        const struct {
                const char *key;
                char *buf;
                size_t size;
                bool required;
        } fields[] = {
                {"ref", i->ref, sizeof i->ref, true},
                {"name", i->name, sizeof i->name, false},
                {"tag", i->tag, sizeof i->tag, false},
                {"digest", i->digest, sizeof i->digest, false},
                {"previous_digest", i->previous_digest, sizeof i->previous_digest, false},
                {"expected_digest", i->expected_digest, sizeof i->expected_digest, false},
                {"revision", i->revision, sizeof i->revision, false},
                {"media_type", i->media_type, sizeof i->media_type, false},
        };
        for (size_t k = 0; k < ELEMENTSOF(fields); k++) {
                r = get_str(im, "image.", fields[k].key, fields[k].required, fields[k].buf, fields[k].size, err,
                            errlen);
                if (r < 0)
                        return r;
        }
        json_t *ti = json_object_get(im, "tag_implicit");
        if (ti && !json_is_boolean(ti))
                return FAIL(-EBADMSG, "image.tag_implicit: not a boolean");
        i->tag_implicit = ti && json_is_true(ti);

        json_t *w = json_object_get(o, "workload");
        if (w && !json_is_null(w)) {
                if (!json_is_object(w))
                        return FAIL(-EBADMSG, "workload: not an object");
                FindingWorkload *wl = &f->workload;
                r = get_str(w, "workload.", "namespace", false, wl->namespace, sizeof wl->namespace, err, errlen);
                if (r >= 0)
                        r = get_str(w, "workload.", "pod", false, wl->pod, sizeof wl->pod, err, errlen);
                if (r >= 0)
                        r = get_str(w, "workload.", "container", false, wl->container, sizeof wl->container, err,
                                    errlen);
                if (r >= 0)
                        r = get_str(w, "workload.", "container_id", false, wl->container_id,
                                    sizeof wl->container_id, err, errlen);
                if (r < 0)
                        return r;
        }
        /* a pull found at container start (the pull published no event): its only value */
        char found[32] = "";
        r = get_str(o, "", "found", false, found, sizeof found, err, errlen);
        if (r < 0)
                return r == -E2BIG ? FAIL(-EBADMSG, "found: unknown value") : r;
        if (found[0] && !streq_ptr(found, "container_start"))
                return FAIL(-EBADMSG, "found: unknown value");
        f->found_at_start = found[0] != 0;
        return get_str(o, "", "message", false, f->message, sizeof f->message, err, errlen);
}

static int decode_inventory(json_t *o, Inventory *inv, char *err, size_t errlen) {
        uint64_t part, parts;
        int r = get_uint(o, "total", UINT64_MAX >> 1, &inv->total, err, errlen);
        if (r >= 0)
                r = get_uint(o, "compliant", UINT64_MAX >> 1, &inv->compliant, err, errlen);
        if (r >= 0)
                r = get_uint(o, "parts", RECORD_PARTS_MAX, &parts, err, errlen);
        if (r >= 0)
                r = get_uint(o, "part", RECORD_PARTS_MAX, &part, err, errlen);
        if (r < 0)
                return r;
        if (parts < 1 || part < 1 || part > parts)
                return FAIL(-EBADMSG, "part: %llu of %llu is not a part", (unsigned long long) part,
                            (unsigned long long) parts);
        if (inv->compliant > inv->total)
                return FAIL(-EBADMSG, "compliant: more than total");
        inv->part = (unsigned) part;
        inv->parts = (unsigned) parts;
        r = get_str(o, "", "snapshot", false, inv->snapshot, sizeof inv->snapshot, err, errlen);
        if (r < 0)
                return r;
        return decode_images(json_object_get(o, "images"), &inv->images, &inv->n_images, err, errlen);
}

int record_from_json(const char *line, size_t len, Record *ret, char *err, size_t errlen) {
        if (!line || !ret)
                return -EINVAL;
        if (len > RECORD_LINE_MAX)
                return FAIL(-E2BIG, "record longer than %u bytes", RECORD_LINE_MAX);
        json_error_t jerr;
        json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!o)
                return FAIL(-EBADMSG, "not JSON: %s at column %d", jerr.text, jerr.column);
        Record *r_ = ret;
        memset(r_, 0, sizeof *r_);
        int r = 0;
        uint64_t schema = 0;
        char kind[32], severity[16], time[48];
        Finding *f = &ret->finding;
        if (!json_is_object(o)) {
                r = FAIL(-EBADMSG, "not a JSON object");
                goto out;
        }
        r = get_uint(o, "schema", UINT32_MAX, &schema, err, errlen);
        if (r < 0)
                goto out;
        if (schema != PW_SCHEMA_VERSION) {
                r = FAIL(-EPROTONOSUPPORT, "schema: version %llu unknown (this collector reads %d)",
                         (unsigned long long) schema, PW_SCHEMA_VERSION);
                goto out;
        }
        r = get_str(o, "", "id", true, f->id, sizeof f->id, err, errlen);
        if (r >= 0 && !f->id[0])
                r = FAIL(-EBADMSG, "id: empty");
        if (r >= 0)
                r = get_str(o, "", "kind", true, kind, sizeof kind, err, errlen);
        if (r >= 0)
                r = get_str(o, "", "severity", true, severity, sizeof severity, err, errlen);
        if (r >= 0)
                r = get_str(o, "", "time", true, time, sizeof time, err, errlen);
        if (r >= 0)
                r = get_str(o, "", "node", true, f->node, sizeof f->node, err, errlen);
        if (r >= 0 && !f->node[0])
                r = FAIL(-EBADMSG, "node: empty");
        if (r >= 0)
                r = get_str(o, "", "cluster", false, ret->cluster, sizeof ret->cluster, err, errlen);
        if (r < 0)
                goto out;
        f->severity = severity_from_string(severity);
        if (f->severity < 0) {
                r = FAIL(-EBADMSG, "severity: unknown value");
                goto out;
        }
        if (record_parse_time(time, &f->time_usec) < 0) {
                r = FAIL(-EBADMSG, "time: not an RFC 3339 UTC time");
                goto out;
        }
        if (streq_ptr(kind, "inventory")) {
                ret->type = RECORD_INVENTORY;
                f->kind = FINDING_PULL;
                r = decode_inventory(o, &ret->inventory, err, errlen);
        } else {
                ret->type = RECORD_FINDING;
                f->kind = finding_kind_from_string(kind);
                if (f->kind < 0)
                        r = FAIL(-EBADMSG, "kind: unknown value");
                else
                        r = decode_finding(o, f, err, errlen);
        }
out:
        json_decref(o);
        if (r < 0) {
                record_done(ret);
                return r;
        }
        return 0;
}
