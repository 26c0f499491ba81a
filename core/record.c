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

/* Days from 1970-01-01 to y-m-d (the proleptic Gregorian calendar; d past the month's
 * end counts on into the next, as timegm() normalises it). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
        y -= m <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        unsigned yoe = (unsigned) (y - era * 400);
        unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
        unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + (int64_t) doe - 719468;
}

int record_parse_time(const char *s, uint64_t *ret) {
        /* 2026-11-25T16:50:53.123456Z; the fraction is optional, up to 9 digits. Read by
         * position once each character is checked (sscanf() and timegm() were a quarter
         * of the collector's decoding: callgrind, 30,000 records) */
        if (!s)
                return -EINVAL;
        for (int i = 0; i < 19; i++) /* stops at a NUL: never a digit or a separator */
                if ((i == 4 || i == 7) ? s[i] != '-'
                    : i == 10          ? s[i] != 'T'
                    : (i == 13 || i == 16) ? s[i] != ':'
                                           : (s[i] < '0' || s[i] > '9'))
                        return -EINVAL;
#define DIGITS2(i) ((unsigned) (s[i] - '0') * 10 + (unsigned) (s[(i) + 1] - '0'))
        unsigned y = DIGITS2(0) * 100 + DIGITS2(2), mo = DIGITS2(5), d = DIGITS2(8), h = DIGITS2(11),
                 mi = DIGITS2(14), sec = DIGITS2(17);
#undef DIGITS2
        if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
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
        int64_t t = days_from_civil(y, mo, d) * 86400 + (int64_t) h * 3600 + (int64_t) mi * 60 + (int64_t) sec;
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

/* ---- the fast path: a valid pull or finding line without jansson ----
 *
 * The collector decodes every record line (issue 9: jansson's parse was ~75 % of the
 * HTTP threads' instructions, more than the writer's whole share). Lines as the agent
 * writes them — one flat object of known keys, printable ASCII strings without escapes,
 * `image` and `workload` objects — are decoded here; anything else (an escape, a byte
 * outside printable ASCII in a string, an unknown or repeated key, a number other than a
 * plain integer, an inventory, any syntax error, any field that fails a check) returns 0
 * and the line goes through jansson (record_from_json_generic), which says what is wrong
 * in the words it always did. So this path only ever decides "valid, and this is the
 * record"; fuzz_record checks that it decides it as jansson's path does. */

typedef enum FastType { FV_ABSENT, FV_STRING, FV_NULL, FV_TRUE, FV_FALSE, FV_INT, FV_OBJECT } FastType;

typedef struct FastVal {
        FastType type;
        const char *s; /* FV_STRING: the raw bytes (no escapes), s[len] is the closing quote */
        size_t len;
        uint64_t i; /* FV_INT */
} FastVal;

enum { FK_SCHEMA, FK_ID, FK_KIND, FK_SEVERITY, FK_TIME, FK_NODE, FK_CLUSTER, FK_NAMESPACE, FK_IMAGE,
       FK_WORKLOAD, FK_FOUND, FK_MESSAGE, _FK_MAX };
static const char *const fast_top_keys[_FK_MAX] = {
        [FK_SCHEMA] = "schema",       [FK_ID] = "id",           [FK_KIND] = "kind",
        [FK_SEVERITY] = "severity",   [FK_TIME] = "time",       [FK_NODE] = "node",
        [FK_CLUSTER] = "cluster",     [FK_NAMESPACE] = "namespace", [FK_IMAGE] = "image",
        [FK_WORKLOAD] = "workload",   [FK_FOUND] = "found",     [FK_MESSAGE] = "message",
};
enum { FI_REF, FI_NAME, FI_TAG, FI_TAG_IMPLICIT, FI_DIGEST, FI_PREVIOUS_DIGEST, FI_EXPECTED_DIGEST, FI_REVISION,
       FI_MEDIA_TYPE, _FI_MAX };
static const char *const fast_image_keys[_FI_MAX] = {
        [FI_REF] = "ref",
        [FI_NAME] = "name",
        [FI_TAG] = "tag",
        [FI_TAG_IMPLICIT] = "tag_implicit",
        [FI_DIGEST] = "digest",
        [FI_PREVIOUS_DIGEST] = "previous_digest",
        [FI_EXPECTED_DIGEST] = "expected_digest",
        [FI_REVISION] = "revision",
        [FI_MEDIA_TYPE] = "media_type",
};
enum { FW_NAMESPACE, FW_POD, FW_CONTAINER, FW_CONTAINER_ID, _FW_MAX };
static const char *const fast_workload_keys[_FW_MAX] = {
        [FW_NAMESPACE] = "namespace",
        [FW_POD] = "pod",
        [FW_CONTAINER] = "container",
        [FW_CONTAINER_ID] = "container_id",
};

typedef struct FastCursor {
        const char *p, *end;
} FastCursor;

static void fast_ws(FastCursor *c) {
        while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
                c->p++;
}

/* A string of printable ASCII without escapes; *c->p is the opening quote. */
static bool fast_string(FastCursor *c, const char **ret, size_t *ret_len) {
        const char *start = ++c->p;
        while (c->p < c->end) {
                unsigned char ch = (unsigned char) *c->p;
                if (ch == '"') {
                        *ret = start;
                        *ret_len = (size_t) (c->p - start);
                        c->p++;
                        return true;
                }
                if (ch < 0x20 || ch >= 0x7f || ch == '\\')
                        return false; /* control, non-ASCII (UTF-8 checks), escape: jansson's */
                c->p++;
        }
        return false;
}

static bool fast_literal(FastCursor *c, const char *word, size_t n) {
        if ((size_t) (c->end - c->p) < n || memcmp(c->p, word, n) != 0)
                return false;
        c->p += n;
        return true;
}

/* One value that is not an object: a string, null, true, false or a plain integer. */
static bool fast_scalar(FastCursor *c, FastVal *v) {
        if (c->p >= c->end)
                return false;
        switch (*c->p) {
        case '"':
                v->type = FV_STRING;
                return fast_string(c, &v->s, &v->len);
        case 'n':
                v->type = FV_NULL;
                return fast_literal(c, "null", 4);
        case 't':
                v->type = FV_TRUE;
                return fast_literal(c, "true", 4);
        case 'f':
                v->type = FV_FALSE;
                return fast_literal(c, "false", 5);
        default:
                break;
        }
        /* [1-9][0-9]{0,17} or 0, then no fraction or exponent (the object grammar rejects
         * any other character after it) */
        if (*c->p < '0' || *c->p > '9')
                return false;
        uint64_t i = 0;
        size_t digits = 0;
        const char *start = c->p;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
                if (++digits > 18)
                        return false;
                i = i * 10 + (uint64_t) (*c->p - '0');
                c->p++;
        }
        if (*start == '0' && digits > 1)
                return false;
        v->type = FV_INT;
        v->i = i;
        return true;
}

/* An object of known keys (each at most once), *c->p at its '{'. nested[k], when set,
 * is where key k's object value is parsed (its keys and values); others are scalars. */
typedef struct FastObject {
        const char *const *keys;
        size_t n_keys;
        FastVal *vals;
        struct FastObject *const *nested; /* per key, NULL: a scalar */
} FastObject;

static bool fast_object(FastCursor *c, const FastObject *o, unsigned depth) {
        if (depth > 1 || c->p >= c->end || *c->p != '{')
                return false;
        c->p++;
        fast_ws(c);
        if (c->p < c->end && *c->p == '}') {
                c->p++;
                return true;
        }
        for (;;) {
                const char *key;
                size_t key_len, k;
                if (c->p >= c->end || *c->p != '"' || !fast_string(c, &key, &key_len))
                        return false;
                for (k = 0; k < o->n_keys; k++)
                        if (strlen(o->keys[k]) == key_len && memcmp(o->keys[k], key, key_len) == 0)
                                break;
                if (k == o->n_keys || o->vals[k].type != FV_ABSENT)
                        return false; /* unknown key (jansson's path ignores it) or repeated */
                fast_ws(c);
                if (c->p >= c->end || *c->p != ':')
                        return false;
                c->p++;
                fast_ws(c);
                if (o->nested && o->nested[k] && c->p < c->end && *c->p == '{') {
                        if (!fast_object(c, o->nested[k], depth + 1))
                                return false;
                        o->vals[k].type = FV_OBJECT;
                } else if (!fast_scalar(c, &o->vals[k]))
                        return false;
                fast_ws(c);
                if (c->p >= c->end)
                        return false;
                if (*c->p == '}') {
                        c->p++;
                        return true;
                }
                if (*c->p != ',')
                        return false;
                c->p++;
                fast_ws(c);
        }
}

/* An optional string (absent or null: ""), or a required one, that fits buf. */
static bool fast_str(const FastVal *v, bool required, char *buf, size_t size) {
        if (v->type == FV_ABSENT || v->type == FV_NULL)
                return !required;
        if (v->type != FV_STRING || v->len >= size)
                return false;
        memcpy(buf, v->s, v->len);
        buf[v->len] = 0;
        return true;
}

/* 1: the line is a valid pull or finding, decoded into *ret (zeroed first); 0: not
 * decided here (*ret zeroed, nothing to release). */
static int record_from_json_fast(const char *line, size_t len, Record *ret) {
        FastVal top[_FK_MAX] = {0}, image[_FI_MAX] = {0}, workload[_FW_MAX] = {0};
        FastObject image_obj = {fast_image_keys, _FI_MAX, image, NULL};
        FastObject workload_obj = {fast_workload_keys, _FW_MAX, workload, NULL};
        FastObject *const nested[_FK_MAX] = {[FK_IMAGE] = &image_obj, [FK_WORKLOAD] = &workload_obj};
        FastObject top_obj = {fast_top_keys, _FK_MAX, top, nested};
        FastCursor c = {line, line + len};
        memset(ret, 0, sizeof *ret);
        fast_ws(&c);
        if (!fast_object(&c, &top_obj, 0))
                return 0;
        fast_ws(&c);
        if (c.p != c.end)
                return 0;

        Finding *f = &ret->finding;
        FindingImage *im = &f->image;
        FindingWorkload *w = &f->workload;
        char kind[32], severity[16], time[48], found[32] = "";
        if (top[FK_SCHEMA].type != FV_INT || top[FK_SCHEMA].i != PW_SCHEMA_VERSION)
                goto no;
        if (!fast_str(&top[FK_ID], true, f->id, sizeof f->id) || !f->id[0] ||
            !fast_str(&top[FK_KIND], true, kind, sizeof kind) ||
            !fast_str(&top[FK_SEVERITY], true, severity, sizeof severity) ||
            !fast_str(&top[FK_TIME], true, time, sizeof time) ||
            !fast_str(&top[FK_NODE], true, f->node, sizeof f->node) || !f->node[0] ||
            !fast_str(&top[FK_CLUSTER], false, ret->cluster, sizeof ret->cluster))
                goto no;
        f->severity = severity_from_string(severity);
        if (f->severity < 0 || record_parse_time(time, &f->time_usec) < 0)
                goto no;
        f->kind = finding_kind_from_string(kind); /* "inventory" too is not one: jansson's path */
        if (f->kind < 0)
                goto no;
        ret->type = RECORD_FINDING;
        if (!fast_str(&top[FK_NAMESPACE], false, f->namespace, sizeof f->namespace) ||
            top[FK_IMAGE].type != FV_OBJECT || !fast_str(&image[FI_REF], true, im->ref, sizeof im->ref) ||
            !fast_str(&image[FI_NAME], false, im->name, sizeof im->name) ||
            !fast_str(&image[FI_TAG], false, im->tag, sizeof im->tag) ||
            !fast_str(&image[FI_DIGEST], false, im->digest, sizeof im->digest) ||
            !fast_str(&image[FI_PREVIOUS_DIGEST], false, im->previous_digest, sizeof im->previous_digest) ||
            !fast_str(&image[FI_EXPECTED_DIGEST], false, im->expected_digest, sizeof im->expected_digest) ||
            !fast_str(&image[FI_REVISION], false, im->revision, sizeof im->revision) ||
            !fast_str(&image[FI_MEDIA_TYPE], false, im->media_type, sizeof im->media_type))
                goto no;
        FastType ti = image[FI_TAG_IMPLICIT].type;
        if (ti != FV_ABSENT && ti != FV_TRUE && ti != FV_FALSE)
                goto no;
        im->tag_implicit = ti == FV_TRUE;
        FastType wt = top[FK_WORKLOAD].type;
        if (wt != FV_ABSENT && wt != FV_NULL && wt != FV_OBJECT)
                goto no;
        if (!fast_str(&workload[FW_NAMESPACE], false, w->namespace, sizeof w->namespace) ||
            !fast_str(&workload[FW_POD], false, w->pod, sizeof w->pod) ||
            !fast_str(&workload[FW_CONTAINER], false, w->container, sizeof w->container) ||
            !fast_str(&workload[FW_CONTAINER_ID], false, w->container_id, sizeof w->container_id) ||
            !fast_str(&top[FK_FOUND], false, found, sizeof found) ||
            (found[0] && !streq_ptr(found, "container_start")) ||
            !fast_str(&top[FK_MESSAGE], false, f->message, sizeof f->message))
                goto no;
        f->found_at_start = found[0] != 0;
        return 1;
no:
        memset(ret, 0, sizeof *ret);
        return 0;
}

/* ---- the fast path for inventory lines: same rules (see above), jansson's path for
 * anything it does not decide. Keys as the agent writes them: the record's, then
 * total/compliant/part/parts/snapshot and images[], each image's strings, compliant,
 * findings[] and pods[] of {namespace, pod, container}. */

enum { FN_SCHEMA, FN_ID, FN_KIND, FN_SEVERITY, FN_TIME, FN_NODE, FN_CLUSTER, FN_TOTAL, FN_COMPLIANT, FN_PART,
       FN_PARTS, FN_SNAPSHOT, FN_IMAGES, _FN_MAX };
static const char *const fast_inventory_keys[_FN_MAX] = {
        [FN_SCHEMA] = "schema",   [FN_ID] = "id",       [FN_KIND] = "kind",       [FN_SEVERITY] = "severity",
        [FN_TIME] = "time",       [FN_NODE] = "node",   [FN_CLUSTER] = "cluster", [FN_TOTAL] = "total",
        [FN_COMPLIANT] = "compliant", [FN_PART] = "part", [FN_PARTS] = "parts", [FN_SNAPSHOT] = "snapshot",
        [FN_IMAGES] = "images",
};
enum { FM_NAMESPACE, FM_REF, FM_DIGEST, FM_TAG, FM_NAME, FM_MEDIA_TYPE, FM_REVISION, FM_COMPLIANT, FM_FINDINGS,
       FM_PODS, _FM_MAX };
static const char *const fast_inv_image_keys[_FM_MAX] = {
        [FM_NAMESPACE] = "namespace", [FM_REF] = "ref",         [FM_DIGEST] = "digest",
        [FM_TAG] = "tag",             [FM_NAME] = "name",       [FM_MEDIA_TYPE] = "media_type",
        [FM_REVISION] = "revision",   [FM_COMPLIANT] = "compliant", [FM_FINDINGS] = "findings",
        [FM_PODS] = "pods",
};
enum { FP_NAMESPACE, FP_POD, FP_CONTAINER, _FP_MAX };
static const char *const fast_pod_keys[_FP_MAX] = {
        [FP_NAMESPACE] = "namespace",
        [FP_POD] = "pod",
        [FP_CONTAINER] = "container",
};

/* An array's opening: 1 elements follow (the cursor at the first), 0 it was [] (or, with
 * null_ok, null) and is consumed, -1 neither. */
static int fast_array_open(FastCursor *c, bool null_ok) {
        if (null_ok && c->p < c->end && *c->p == 'n')
                return fast_literal(c, "null", 4) ? 0 : -1;
        if (c->p >= c->end || *c->p != '[')
                return -1;
        c->p++;
        fast_ws(c);
        if (c->p < c->end && *c->p == ']') {
                c->p++;
                return 0;
        }
        return 1;
}

/* Past a ',' or to the closing ch: 1 more follows, 0 closed, -1 neither. */
static int fast_next(FastCursor *c, char close) {
        fast_ws(c);
        if (c->p >= c->end)
                return -1;
        if (*c->p == close) {
                c->p++;
                return 0;
        }
        if (*c->p != ',')
                return -1;
        c->p++;
        fast_ws(c);
        return 1;
}

/* findings: null or an array of finding kinds other than pull (jansson's path says what
 * else is wrong). */
static bool fast_findings(FastCursor *c, unsigned *ret) {
        int r = fast_array_open(c, true);
        if (r <= 0)
                return r == 0;
        for (;;) {
                const char *s;
                size_t len;
                char kind[32];
                if (c->p >= c->end || *c->p != '"' || !fast_string(c, &s, &len) || len >= sizeof kind)
                        return false;
                memcpy(kind, s, len);
                kind[len] = 0;
                FindingKind k = finding_kind_from_string(kind);
                if (k < 0 || k == FINDING_PULL)
                        return false;
                *ret |= 1u << k;
                int n = fast_next(c, ']');
                if (n <= 0)
                        return n == 0;
        }
}

/* pods: null or an array of at most RECORD_PODS_MAX {namespace, pod, container}. */
static bool fast_pods(FastCursor *c, InventoryImage *im) {
        int r = fast_array_open(c, true);
        if (r <= 0)
                return r == 0;
        size_t alloc = 0;
        for (;;) {
                FastVal v[_FP_MAX] = {0};
                FastObject o = {fast_pod_keys, _FP_MAX, v, NULL};
                if (im->n_pods >= RECORD_PODS_MAX ||
                    greedy_realloc((void **) &im->pods, &alloc, im->n_pods + 1, sizeof *im->pods, 4) < 0)
                        return false;
                InventoryPod *d = &im->pods[im->n_pods];
                memset(d, 0, sizeof *d);
                if (!fast_object(c, &o, 1) || !fast_str(&v[FP_NAMESPACE], false, d->namespace, sizeof d->namespace) ||
                    !fast_str(&v[FP_POD], false, d->pod, sizeof d->pod) ||
                    !fast_str(&v[FP_CONTAINER], false, d->container, sizeof d->container))
                        return false;
                im->n_pods++;
                int n = fast_next(c, ']');
                if (n <= 0)
                        return n == 0;
        }
}

static bool fast_inv_image(FastCursor *c, InventoryImage *im) {
        FastVal v[_FM_MAX] = {0};
        bool seen_findings = false, seen_pods = false;
        if (c->p >= c->end || *c->p != '{')
                return false;
        c->p++;
        fast_ws(c);
        if (c->p < c->end && *c->p == '}')
                c->p++;
        else
                for (;;) {
                        const char *key;
                        size_t key_len, k;
                        if (c->p >= c->end || *c->p != '"' || !fast_string(c, &key, &key_len))
                                return false;
                        for (k = 0; k < _FM_MAX; k++)
                                if (strlen(fast_inv_image_keys[k]) == key_len &&
                                    memcmp(fast_inv_image_keys[k], key, key_len) == 0)
                                        break;
                        if (k == _FM_MAX || v[k].type != FV_ABSENT)
                                return false;
                        fast_ws(c);
                        if (c->p >= c->end || *c->p != ':')
                                return false;
                        c->p++;
                        fast_ws(c);
                        if (k == FM_FINDINGS) {
                                if (seen_findings || !fast_findings(c, &im->findings))
                                        return false;
                                seen_findings = true;
                                v[k].type = FV_OBJECT; /* present */
                        } else if (k == FM_PODS) {
                                if (seen_pods || !fast_pods(c, im))
                                        return false;
                                seen_pods = true;
                                v[k].type = FV_OBJECT;
                        } else if (!fast_scalar(c, &v[k]))
                                return false;
                        int n = fast_next(c, '}');
                        if (n < 0)
                                return false;
                        if (n == 0)
                                break;
                }
        if (!fast_str(&v[FM_NAMESPACE], true, im->namespace, sizeof im->namespace) ||
            !fast_str(&v[FM_REF], true, im->ref, sizeof im->ref) ||
            !fast_str(&v[FM_DIGEST], true, im->digest, sizeof im->digest) ||
            !fast_str(&v[FM_TAG], false, im->tag, sizeof im->tag) ||
            !fast_str(&v[FM_NAME], false, im->name, sizeof im->name) ||
            !fast_str(&v[FM_MEDIA_TYPE], false, im->media_type, sizeof im->media_type) ||
            !fast_str(&v[FM_REVISION], false, im->revision, sizeof im->revision))
                return false;
        FastType ct = v[FM_COMPLIANT].type;
        if (ct != FV_ABSENT && ct != FV_TRUE && ct != FV_FALSE)
                return false;
        im->compliant = ct == FV_ABSENT ? im->findings == 0 : ct == FV_TRUE;
        if (!im->name[0]) {
                Ref ref;
                if (ref_parse(im->ref, &ref, NULL, 0) >= 0 && !ref.is_image_id)
                        (void) ref_name(&ref, im->name, sizeof im->name);
        }
        return true;
}

static bool fast_images(FastCursor *c, Inventory *inv) {
        int r = fast_array_open(c, false);
        if (r < 0)
                return false;
        size_t alloc = 0;
        /* as jansson's path: an array, even empty, is an allocation */
        if (greedy_realloc((void **) &inv->images, &alloc, 1, sizeof *inv->images, 64) < 0)
                return false;
        memset(inv->images, 0, sizeof *inv->images);
        if (r == 0)
                return true;
        for (;;) {
                if (inv->n_images >= RECORD_IMAGES_MAX ||
                    greedy_realloc((void **) &inv->images, &alloc, inv->n_images + 1, sizeof *inv->images, 64) < 0)
                        return false;
                InventoryImage *im = &inv->images[inv->n_images];
                memset(im, 0, sizeof *im);
                inv->n_images++; /* counted now: its pods are freed with it on failure */
                if (!fast_inv_image(c, im))
                        return false;
                int n = fast_next(c, ']');
                if (n <= 0)
                        return n == 0;
        }
}

/* 1: the line is a valid inventory part, decoded into *ret (zeroed first); 0: not decided
 * here (*ret zeroed, nothing to release). */
static int record_from_json_fast_inventory(const char *line, size_t len, Record *ret) {
        FastVal top[_FN_MAX] = {0};
        FastCursor c = {line, line + len};
        Inventory *inv = &ret->inventory;
        Finding *f = &ret->finding;
        memset(ret, 0, sizeof *ret);
        fast_ws(&c);
        if (c.p >= c.end || *c.p != '{')
                return 0;
        c.p++;
        fast_ws(&c);
        bool seen_images = false;
        if (c.p < c.end && *c.p == '}')
                c.p++;
        else
                for (;;) {
                        const char *key;
                        size_t key_len, k;
                        if (c.p >= c.end || *c.p != '"' || !fast_string(&c, &key, &key_len))
                                goto no;
                        for (k = 0; k < _FN_MAX; k++)
                                if (strlen(fast_inventory_keys[k]) == key_len &&
                                    memcmp(fast_inventory_keys[k], key, key_len) == 0)
                                        break;
                        if (k == _FN_MAX || top[k].type != FV_ABSENT)
                                goto no;
                        fast_ws(&c);
                        if (c.p >= c.end || *c.p != ':')
                                goto no;
                        c.p++;
                        fast_ws(&c);
                        if (k == FN_IMAGES) {
                                if (seen_images || !fast_images(&c, inv))
                                        goto no;
                                seen_images = true;
                                top[k].type = FV_OBJECT;
                        } else if (!fast_scalar(&c, &top[k]))
                                goto no;
                        int n = fast_next(&c, '}');
                        if (n < 0)
                                goto no;
                        if (n == 0)
                                break;
                }
        fast_ws(&c);
        if (c.p != c.end || !seen_images)
                goto no;
        char kind[32], severity[16], time[48];
        if (top[FN_SCHEMA].type != FV_INT || top[FN_SCHEMA].i != PW_SCHEMA_VERSION ||
            !fast_str(&top[FN_ID], true, f->id, sizeof f->id) || !f->id[0] ||
            !fast_str(&top[FN_KIND], true, kind, sizeof kind) || !streq_ptr(kind, "inventory") ||
            !fast_str(&top[FN_SEVERITY], true, severity, sizeof severity) ||
            !fast_str(&top[FN_TIME], true, time, sizeof time) ||
            !fast_str(&top[FN_NODE], true, f->node, sizeof f->node) || !f->node[0] ||
            !fast_str(&top[FN_CLUSTER], false, ret->cluster, sizeof ret->cluster))
                goto no;
        f->severity = severity_from_string(severity);
        if (f->severity < 0 || record_parse_time(time, &f->time_usec) < 0)
                goto no;
        /* total and compliant: 0..2^63-1, part and parts: 1..RECORD_PARTS_MAX (fast_scalar's
         * integers have at most 18 digits) */
        if (top[FN_TOTAL].type != FV_INT || top[FN_COMPLIANT].type != FV_INT || top[FN_PART].type != FV_INT ||
            top[FN_PARTS].type != FV_INT || top[FN_PARTS].i > RECORD_PARTS_MAX || top[FN_PART].i > RECORD_PARTS_MAX ||
            top[FN_PARTS].i < 1 || top[FN_PART].i < 1 || top[FN_PART].i > top[FN_PARTS].i ||
            top[FN_COMPLIANT].i > top[FN_TOTAL].i ||
            !fast_str(&top[FN_SNAPSHOT], false, inv->snapshot, sizeof inv->snapshot))
                goto no;
        ret->type = RECORD_INVENTORY;
        f->kind = FINDING_PULL;
        inv->total = top[FN_TOTAL].i;
        inv->compliant = top[FN_COMPLIANT].i;
        inv->part = (unsigned) top[FN_PART].i;
        inv->parts = (unsigned) top[FN_PARTS].i;
        return 1;
no:
        record_done(ret);
        memset(ret, 0, sizeof *ret);
        return 0;
}

int record_from_json(const char *line, size_t len, Record *ret, char *err, size_t errlen) {
        if (!line || !ret)
                return -EINVAL;
        if (len > RECORD_LINE_MAX)
                return FAIL(-E2BIG, "record longer than %u bytes", RECORD_LINE_MAX);
        if (record_from_json_fast(line, len, ret) > 0 || record_from_json_fast_inventory(line, len, ret) > 0)
                return 0;
        return record_from_json_generic(line, len, ret, err, errlen);
}

int record_from_json_generic(const char *line, size_t len, Record *ret, char *err, size_t errlen) {
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
