/* core/record.c: decoding what the agent encodes (finding_to_json, inventory_flush). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../fuzz/record_equal.h"
#include "pullwatch/record.h"
#include "pullwatch/util.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

static Finding sample(FindingKind kind, bool full) {
        Finding f;
        memset(&f, 0, sizeof f);
        f.kind = kind;
        f.severity = kind == FINDING_PULL ? SEVERITY_INFO : SEVERITY_CRITICAL;
        f.time_usec = 1764089453123456ULL;
        strcpy_bounded(f.id, sizeof f.id, "0123456789abcdef0123456789abcdef");
        strcpy_bounded(f.node, sizeof f.node, "node-a");
        strcpy_bounded(f.namespace, sizeof f.namespace, "k8s.io");
        strcpy_bounded(f.image.ref, sizeof f.image.ref, "docker.io/library/nginx");
        strcpy_bounded(f.image.name, sizeof f.image.name, "docker.io/library/nginx");
        strcpy_bounded(f.image.tag, sizeof f.image.tag, "latest");
        f.image.tag_implicit = true;
        strcpy_bounded(f.image.digest, sizeof f.image.digest, D1);
        if (full) {
                strcpy_bounded(f.image.previous_digest, sizeof f.image.previous_digest, D2);
                strcpy_bounded(f.image.expected_digest, sizeof f.image.expected_digest, D2);
                strcpy_bounded(f.image.revision, sizeof f.image.revision, "3f2c1ab");
                strcpy_bounded(f.image.media_type, sizeof f.image.media_type,
                               "application/vnd.oci.image.index.v1+json");
                strcpy_bounded(f.workload.namespace, sizeof f.workload.namespace, "shop");
                strcpy_bounded(f.workload.pod, sizeof f.workload.pod, "web-0 \"quoted\" \\ é");
                strcpy_bounded(f.workload.container, sizeof f.workload.container, "web");
                strcpy_bounded(f.workload.container_id, sizeof f.workload.container_id, "abcdef");
                f.found_at_start = kind == FINDING_PULL; /* issue 12 item 1: "found":"container_start" */
        }
        finding_format_message(&f);
        return f;
}

static void test_round_trip(void **state) {
        for (int k = 0; k < _FINDING_KIND_MAX; k++)
                for (int full = 0; full <= 1; full++) {
                        Finding f = sample((FindingKind) k, full);
                        char *text = NULL, err[256] = "";
                        assert_int_equal(finding_to_json_string(&f, &text), 0);
                        Record rec;
                        int r = record_from_json(text, strlen(text), &rec, err, sizeof err);
                        if (r < 0)
                                fail_msg("%s: %s", text, err);
                        assert_int_equal(rec.type, RECORD_FINDING);
                        assert_string_equal(rec.cluster, "");
                        /* every field, byte for byte (both structs are zero beyond their strings) */
                        assert_memory_equal(&rec.finding, &f, sizeof f);
                        record_done(&rec);
                        free(text);
                }
}

/* What agent.c's inventory_flush writes today, and what the refactor adds. */
static void test_inventory(void **state) {
        static const char line[] =
                "{\"schema\":1,\"id\":\"8e0c1ad4a3b94c1f8a1b2c3d4e5f6a7b\",\"kind\":\"inventory\",\"severity\":\"info\","
                "\"time\":\"2026-11-25T16:50:53.123456Z\",\"node\":\"node-a\",\"total\":2,\"compliant\":1,\"part\":1,"
                "\"parts\":1,\"images\":[{\"namespace\":\"k8s.io\",\"ref\":\"docker.io/library/web:latest\","
                "\"tag\":\"latest\",\"digest\":\"" D1 "\",\"compliant\":false,\"findings\":[\"latest_tag\","
                "\"untraceable\"]},{\"namespace\":\"default\",\"ref\":\"registry.example/app@" D2 "\",\"tag\":\"\","
                "\"digest\":\"" D2 "\",\"compliant\":true,\"findings\":[]}],\"cluster\":\"prod\"}";
        static const char newer[] =
                "{\"schema\":1,\"id\":\"x\",\"kind\":\"inventory\",\"severity\":\"info\",\"time\":\"2026-11-25T16:50:53Z\","
                "\"node\":\"n\",\"snapshot\":\"0123456789abcdef0123456789abcdef\",\"total\":1500,\"compliant\":0,"
                "\"part\":2,\"parts\":2,\"images\":[{\"namespace\":\"k8s.io\",\"ref\":\"r.example/a:v1\",\"name\":"
                "\"r.example/a\",\"tag\":\"v1\",\"digest\":\"" D1 "\",\"media_type\":\"m\",\"revision\":\"abc\","
                "\"compliant\":true,\"findings\":[],\"pods\":[{\"namespace\":\"shop\",\"pod\":\"a-0\",\"container\":"
                "\"a\"}],\"future_field\":{\"x\":1}}]}";
        Record rec;
        char err[256] = "";
        int r = record_from_json(line, strlen(line), &rec, err, sizeof err);
        if (r < 0)
                fail_msg("%s", err);
        assert_int_equal(rec.type, RECORD_INVENTORY);
        assert_string_equal(rec.cluster, "prod");
        assert_string_equal(rec.finding.node, "node-a");
        assert_int_equal(rec.finding.time_usec, 1795625453123456ULL);
        assert_int_equal(rec.inventory.part, 1);
        assert_int_equal(rec.inventory.parts, 1);
        assert_int_equal(rec.inventory.total, 2);
        assert_int_equal(rec.inventory.n_images, 2);
        const InventoryImage *a = &rec.inventory.images[0], *b = &rec.inventory.images[1];
        assert_string_equal(a->name, "docker.io/library/web"); /* derived from ref */
        assert_int_equal(a->findings, (1u << FINDING_LATEST_TAG) | (1u << FINDING_UNTRACEABLE));
        assert_false(a->compliant);
        assert_string_equal(b->name, "registry.example/app");
        assert_string_equal(b->tag, "");
        assert_true(b->compliant);
        char text[RECORD_FINDINGS_TEXT_MAX];
        record_findings_text(a->findings, text, sizeof text);
        assert_string_equal(text, "latest_tag,untraceable");
        assert_false(record_image_pinned(a->findings));
        assert_false(record_image_revision_verified(a->findings));
        assert_true(record_image_pinned(b->findings) && record_image_compliant(b->findings));
        record_done(&rec);

        r = record_from_json(newer, strlen(newer), &rec, err, sizeof err);
        if (r < 0)
                fail_msg("%s", err);
        assert_string_equal(rec.inventory.snapshot, "0123456789abcdef0123456789abcdef");
        assert_int_equal(rec.inventory.part, 2);
        assert_string_equal(rec.inventory.images[0].revision, "abc");
        assert_int_equal(rec.inventory.images[0].n_pods, 1);
        assert_string_equal(rec.inventory.images[0].pods[0].pod, "a-0");
        record_done(&rec);
}

#define OK_HEAD "\"schema\":1,\"id\":\"a\",\"severity\":\"info\",\"time\":\"2026-11-25T16:50:53Z\",\"node\":\"n\""
#define IMG "\"image\":{\"ref\":\"r\",\"digest\":\"d\"}"

static void test_bad_input(void **state) {
        static char longref[PW_REF_MAX + 256];
        memset(longref, 0, sizeof longref);
        int n = snprintf(longref, sizeof longref, "{" OK_HEAD ",\"kind\":\"pull\",\"image\":{\"ref\":\"");
        memset(longref + n, 'a', PW_REF_MAX);
        snprintf(longref + n + PW_REF_MAX, sizeof longref - (size_t) n - PW_REF_MAX, "\"}}");
        static const struct {
                const char *line;
                int error;
                const char *reason;
        } table[] = {
                {"", -EBADMSG, "not JSON"},
                {"{\"schema\":1,", -EBADMSG, "not JSON"},
                {"[1,2]", -EBADMSG, "not a JSON object"},
                {"{" OK_HEAD ",\"kind\":\"pull\"," IMG ",\"id\":\"b\"}", -EBADMSG, "duplicate"},
                {"{\"schema\":2,\"id\":\"a\"}", -EPROTONOSUPPORT, "schema: version 2 unknown"},
                {"{\"schema\":\"1\"}", -EBADMSG, "schema: not an integer"},
                {"{\"id\":\"a\"}", -EBADMSG, "schema: missing"},
                {"{\"schema\":1,\"id\":\"\",\"kind\":\"pull\",\"severity\":\"info\",\"time\":\"2026-11-25T16:50:53Z\","
                 "\"node\":\"n\"," IMG "}",
                 -EBADMSG, "id: empty"},
                {"{" OK_HEAD ",\"kind\":\"bogus\"," IMG "}", -EBADMSG, "kind: unknown"},
                {"{" OK_HEAD ",\"kind\":\"pull\"}", -EBADMSG, "image: missing"},
                {"{" OK_HEAD ",\"kind\":\"pull\",\"image\":{\"digest\":\"d\"}}", -EBADMSG, "image.ref: missing"},
                {"{" OK_HEAD ",\"kind\":\"pull\",\"image\":{\"ref\":7}}", -EBADMSG, "image.ref: not a string"},
                {"{" OK_HEAD ",\"kind\":\"pull\",\"image\":{\"ref\":\"a\\u0000b\"}}", -EBADMSG, "NUL"},
                {longref, -E2BIG, "image.ref: longer than 511 bytes"},
                {"{" OK_HEAD ",\"kind\":\"pull\"," IMG ",\"workload\":[]}", -EBADMSG, "workload: not an object"},
                {"{" OK_HEAD ",\"kind\":\"pull\"," IMG ",\"found\":\"yesterday\"}", -EBADMSG, "found: unknown value"},
                {"{" OK_HEAD ",\"kind\":\"pull\"," IMG ",\"found\":true}", -EBADMSG, "found: not a string"},
                {"{\"schema\":1,\"id\":\"a\",\"kind\":\"pull\",\"severity\":\"info\",\"time\":\"yesterday\","
                 "\"node\":\"n\"," IMG "}",
                 -EBADMSG, "time: not an RFC 3339"},
                {"{\"schema\":1,\"id\":\"a\",\"kind\":\"pull\",\"severity\":\"loud\",\"time\":"
                 "\"2026-11-25T16:50:53Z\",\"node\":\"n\"," IMG "}",
                 -EBADMSG, "severity: unknown"},
                {"{" OK_HEAD ",\"kind\":\"inventory\",\"total\":1,\"compliant\":0,\"part\":2,\"parts\":1,\"images\":[]}",
                 -EBADMSG, "part: 2 of 1"},
                {"{" OK_HEAD ",\"kind\":\"inventory\",\"total\":1,\"compliant\":2,\"part\":1,\"parts\":1,\"images\":[]}",
                 -EBADMSG, "compliant: more than total"},
                {"{" OK_HEAD ",\"kind\":\"inventory\",\"total\":1,\"compliant\":0,\"part\":1,\"parts\":1}", -EBADMSG,
                 "images: missing"},
                {"{" OK_HEAD ",\"kind\":\"inventory\",\"total\":1,\"compliant\":0,\"part\":1,\"parts\":1,\"images\":"
                 "[{\"namespace\":\"k\",\"ref\":\"r\",\"digest\":\"d\",\"findings\":[\"pull\"]}]}",
                 -EBADMSG, "images[0].findings[0]: not a finding kind"},
                {"{" OK_HEAD ",\"kind\":\"inventory\",\"total\":1,\"compliant\":0,\"part\":1,\"parts\":1,\"images\":"
                 "[{\"namespace\":\"k\",\"ref\":\"r\",\"digest\":\"d\",\"pods\":[{\"pod\":1}]}]}",
                 -EBADMSG, "images[0].pods[0].pod: not a string"},
                {"{" OK_HEAD ",\"kind\":\"inventory\",\"total\":-1,\"compliant\":0,\"part\":1,\"parts\":1,"
                 "\"images\":[]}",
                 -EBADMSG, "total: -1 out of range"},
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                Record rec;
                char err[256] = "";
                int r = record_from_json(table[i].line, strlen(table[i].line), &rec, err, sizeof err);
                if (r != table[i].error || !strstr(err, table[i].reason))
                        fail_msg("case %zu: got %d \"%s\", want %d \"%s\"", i, r, err, table[i].error, table[i].reason);
                assert_null(strchr(err, '\n'));
        }
}

static void test_time(void **state) {
        static const struct {
                const char *s;
                int r;
                uint64_t usec;
        } table[] = {
                {"1970-01-01T00:00:00Z", 0, 0},
                {"2026-11-25T16:50:53.123456Z", 0, 1795625453123456ULL},
                {"2026-11-25T16:50:53.1Z", 0, 1795625453100000ULL},
                {"2026-11-25T16:50:53.123456789Z", 0, 1795625453123456ULL},
                {"2026-11-25T16:50:53.Z", -EINVAL, 0},
                {"2026-11-25T16:50:53.1234567890Z", -EINVAL, 0},
                {"2026-11-25T16:50:53+01:00", -EINVAL, 0},
                {"2026-11-25 16:50:53Z", -EINVAL, 0},
                {"2026-13-25T16:50:53Z", -EINVAL, 0},
                {"2026-11-25T16:50:53Zjunk", -EINVAL, 0},
                {"+026-11-25T16:50:53Z", -EINVAL, 0},
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                uint64_t t = 0;
                int r = record_parse_time(table[i].s, &t);
                if (r != table[i].r || (r == 0 && t != table[i].usec))
                        fail_msg("%s: got %d %llu", table[i].s, r, (unsigned long long) t);
        }
        /* against timegm() (how it was computed before): every day 31 of every month of
         * years around leap rules (the 31st of a shorter month counts on into the next, as
         * timegm normalises it), second 60, the range's ends */
        static const unsigned years[] = {1970, 1971, 1972, 1999, 2000, 2001, 2024, 2026, 2100, 2400, 9999};
        for (size_t yi = 0; yi < ELEMENTSOF(years); yi++)
                for (unsigned mo = 1; mo <= 12; mo++)
                        for (unsigned d = 1; d <= 31; d++)
                                for (unsigned k = 0; k < 3; k++) {
                                        unsigned h = k == 2 ? 23 : k * 7, mi = k == 2 ? 59 : k * 13,
                                                 sec = k == 2 ? 60 : k * 29;
                                        char buf[40];
                                        snprintf(buf, sizeof buf, "%04u-%02u-%02uT%02u:%02u:%02u.5Z", years[yi], mo, d,
                                                 h, mi, sec);
                                        struct tm tm = {.tm_year = (int) years[yi] - 1900, .tm_mon = (int) mo - 1,
                                                        .tm_mday = (int) d, .tm_hour = (int) h, .tm_min = (int) mi,
                                                        .tm_sec = (int) sec};
                                        uint64_t t = 0, want = (uint64_t) timegm(&tm) * 1000000ULL + 500000;
                                        if (record_parse_time(buf, &t) != 0 || t != want)
                                                fail_msg("%s: got %llu, timegm %llu", buf, (unsigned long long) t,
                                                         (unsigned long long) want);
                                }
        /* a string that ends (or changes) early in each of the 19 places */
        static const char full[] = "2026-11-25T16:50:53Z";
        for (size_t n = 0; n < 19; n++) {
                char buf[32];
                uint64_t t = 0;
                memcpy(buf, full, n);
                buf[n] = 0;
                assert_int_equal(record_parse_time(buf, &t), -EINVAL);
                memcpy(buf, full, sizeof full);
                buf[n] = buf[n] >= '0' && buf[n] <= '9' ? 'x' : '0';
                assert_int_equal(record_parse_time(buf, &t), -EINVAL);
        }
}


/* The decoder's fast path (lines as the agent writes them, without jansson) and jansson's
 * (record_from_json_generic) agree on every line: the same result, the same reason, the
 * same record. Each case varies one part of a valid finding; ok: whether it decodes. */
#define FP_IMG "{\"ref\":\"docker.io/library/web:latest\",\"name\":\"docker.io/library/web\",\"tag\":\"latest\",\"digest\":\"" D1 "\""
#define FP_WL "{\"namespace\":\"shop\",\"pod\":\"web-0\",\"container\":\"web\"}"
#define REC(schema, id, kind, sev, time, node, image, workload, msg, extra)                                          \
        "{\"schema\":" schema ",\"id\":" id ",\"kind\":" kind ",\"severity\":" sev ",\"time\":" time ",\"node\":" node \
        ",\"namespace\":\"k8s.io\",\"image\":" image ",\"workload\":" workload ",\"message\":" msg extra "}"
#define OK_ID "\"0123456789abcdef0123456789abcdef\""
#define OK_TIME "\"2026-11-25T09:00:00.123456Z\""
#define VALID(extra) REC("1", OK_ID, "\"latest_tag\"", "\"medium\"", OK_TIME, "\"node-a\"", FP_IMG "}", FP_WL, "\"m\"", extra)
#define WITH_IMAGE(more) REC("1", OK_ID, "\"latest_tag\"", "\"medium\"", OK_TIME, "\"node-a\"", FP_IMG more "}", FP_WL, "\"m\"", "")
#define WITH_MSG(msg) REC("1", OK_ID, "\"latest_tag\"", "\"medium\"", OK_TIME, "\"node-a\"", FP_IMG "}", FP_WL, msg, "")
#define WITH_SCHEMA(v) REC(v, OK_ID, "\"latest_tag\"", "\"medium\"", OK_TIME, "\"node-a\"", FP_IMG "}", FP_WL, "\"m\"", "")
#define WITH_WL(w) REC("1", OK_ID, "\"latest_tag\"", "\"medium\"", OK_TIME, "\"node-a\"", FP_IMG "}", w, "\"m\"", "")

static void test_fast_path_agrees(void **state) {
        static const struct {
                bool ok;
                const char *line;
        } table[] = {
                {true, VALID("")},
                {true, " \t" VALID("") "\r\n "},
                {true, VALID(",\"cluster\":\"c1\",\"found\":\"\"")},
                {true, VALID(",\"cluster\":null,\"found\":\"container_start\"")},
                {false, VALID(",\"found\":\"elsewhere\"")},
                {false, VALID(",\"id\":\"again\"")},  /* a repeated key */
                {true, VALID(",\"extra\":1")},       /* unknown keys are ignored (jansson's path) */
                {true, WITH_IMAGE(",\"extra\":{\"a\":[1]}")},
                {true, WITH_IMAGE(",\"tag_implicit\":true")},
                {true, WITH_IMAGE(",\"tag_implicit\":false,\"revision\":null,\"media_type\":\"\"")},
                {false, WITH_IMAGE(",\"tag_implicit\":null")},
                {false, WITH_IMAGE(",\"ref\":\"again\"")},
                {true, WITH_MSG("\"a \\\"q\\\" \\\\ b \\u00e9 \\/\"")},
                {true, WITH_MSG("\"caf\xc3\xa9 del\x7f\"")},
                {false, WITH_MSG("\"bad \xc3\"")},
                {false, WITH_MSG("\"tab\there\"")},
                {false, WITH_MSG("\"nul\\u0000\"")},
                {false, WITH_MSG("5")},
                {false, VALID("") "x"},
                {false, "{\"schema\":1"},
                {false, WITH_SCHEMA("01")},
                {false, WITH_SCHEMA("1.0")},
                {false, WITH_SCHEMA("1e0")},
                {false, WITH_SCHEMA("-1")},
                {false, WITH_SCHEMA("2")},
                {false, WITH_SCHEMA("1234567890123456789")},
                {false, WITH_SCHEMA("99999999999999999999")},
                {false, WITH_SCHEMA("tru")},
                {false, WITH_SCHEMA("\"1\"")},
                {true, WITH_WL("null")},
                {true, WITH_WL("{}")},
                {false, WITH_WL("\"web\"")},
                {false, WITH_WL("{\"pod\":{}}")},
                {false, REC("1", OK_ID, "\"latest_tag\"", "\"medium\"", OK_TIME, "\"node-a\"", "null", FP_WL, "\"m\"", "")},
                {false, REC("1", OK_ID, "\"inventory\"", "\"info\"", OK_TIME, "\"node-a\"", FP_IMG "}", FP_WL, "\"m\"", "")},
                {false, REC("1", OK_ID, "\"nope\"", "\"medium\"", OK_TIME, "\"node-a\"", FP_IMG "}", FP_WL, "\"m\"", "")},
                {false, REC("1", OK_ID, "\"latest_tag\"", "\"loud\"", OK_TIME, "\"node-a\"", FP_IMG "}", FP_WL, "\"m\"", "")},
                {false, REC("1", "\"0123456789abcdef0123456789abcdef0\"", "\"latest_tag\"", "\"medium\"", OK_TIME,
                            "\"node-a\"", FP_IMG "}", FP_WL, "\"m\"", "")},
                {false, REC("1", "\"\"", "\"latest_tag\"", "\"medium\"", OK_TIME, "\"node-a\"", FP_IMG "}", FP_WL, "\"m\"", "")},
                {false, REC("1", OK_ID, "\"latest_tag\"", "\"medium\"", OK_TIME, "\"\"", FP_IMG "}", FP_WL, "\"m\"", "")},
                {false, REC("1", OK_ID, "\"latest_tag\"", "\"medium\"", "\"2026-11-25 09:00:00Z\"", "\"node-a\"",
                            FP_IMG "}", FP_WL, "\"m\"", "")},
                {true, REC("1", "\"0123\\u00345\"", "\"latest_tag\"", "\"medium\"", OK_TIME, "\"node-a\"", FP_IMG "}",
                           FP_WL, "\"m\"", "")},
                {false, "[" VALID("") "]"},
                {false, ""},
                {false, "{}"},
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                Record fast, generic;
                char err[256] = "", gerr[256] = "";
                size_t len = strlen(table[i].line);
                int r = record_from_json(table[i].line, len, &fast, err, sizeof err);
                int g = record_from_json_generic(table[i].line, len, &generic, gerr, sizeof gerr);
                if (table[i].ok != (r >= 0) || r != g || strcmp(err, gerr) != 0)
                        fail_msg("case %zu: %d \"%s\" / jansson %d \"%s\": %s", i, r, err, g, gerr, table[i].line);
                if (r >= 0) {
                        assert_int_equal(fast.type, generic.type);
                        assert_memory_equal(fast.cluster, generic.cluster, sizeof fast.cluster);
                        assert_memory_equal(&fast.finding, &generic.finding, sizeof fast.finding);
                        record_done(&fast);
                        record_done(&generic);
                }
        }
}

/* Inventory lines: the fast path (record.c record_from_json_fast_inventory) and jansson's
 * give the same answer — the same error in the same words, or the same record, images and
 * pods included. */
#define INV_TOP(top, images)                                                                                       \
        "{\"schema\":1,\"id\":\"0123456789abcdef0123456789abcdef\",\"kind\":\"inventory\",\"severity\":\"info\","   \
        "\"time\":\"2026-11-25T09:00:00.5Z\",\"node\":\"node-a\",\"cluster\":\"c1\"" top ",\"images\":[" images "]}"
#define INV_PARTS(total, compliant, part, parts)                                                                   \
        ",\"total\":" total ",\"compliant\":" compliant ",\"part\":" part ",\"parts\":" parts
#define INV_OK(images) INV_TOP(INV_PARTS("2", "1", "1", "1"), images)
#define INV_IMG(extra)                                                                                             \
        "{\"namespace\":\"k8s.io\",\"ref\":\"registry.example/team-1/svc-7:1.2.3\",\"tag\":\"1.2.3\",\"digest\":\"" \
        D1 "\",\"compliant\":false,\"findings\":[\"untraceable\"],\"pods\":[{\"namespace\":\"ns-7\",\"pod\":"      \
        "\"svc-7-0\",\"container\":\"svc\"}]" extra "}"
#define INV_IMG_MIN(extra) "{\"namespace\":\"k8s.io\",\"ref\":\"r.example/a:v1\",\"digest\":\"" D2 "\"" extra "}"
static void test_fast_inventory_agrees(void **state) {
        static const struct {
                bool ok;
                const char *line;
        } table[] = {
                {true, INV_OK(INV_IMG("") "," INV_IMG_MIN(""))},
                {true, " " INV_OK(INV_IMG("")) "\n"},
                {true, INV_OK("")},
                {true, INV_TOP(INV_PARTS("0", "0", "3", "4") ",\"snapshot\":\"s1\"", INV_IMG_MIN(""))},
                {true, INV_TOP(INV_PARTS("999999999999999999", "0", "10000", "10000"), "")},
                {true, INV_OK(INV_IMG_MIN(",\"findings\":[\"latest_tag\",\"mutable_tag\",\"latest_tag\"]"))},
                {true, INV_OK(INV_IMG_MIN(",\"findings\":null,\"pods\":null,\"name\":null,\"tag\":\"\""))},
                {true, INV_OK(INV_IMG_MIN(",\"findings\":[],\"pods\":[],\"compliant\":true"))},
                {true, INV_OK(INV_IMG_MIN(",\"name\":\"given\",\"media_type\":\"m\",\"revision\":\"r\""))},
                {true, INV_OK(INV_IMG_MIN(",\"pods\":[{},{\"pod\":null},{\"namespace\":\"a\",\"pod\":\"b\"}]"))},
                {true, INV_OK("{\"namespace\":\"k8s.io\",\"ref\":\"" D1 "\",\"digest\":\"" D1 "\"}")}, /* an image id: no name */
                {true, INV_TOP(",\"cluster2\":1" INV_PARTS("1", "1", "1", "1"), INV_IMG(""))}, /* unknown keys: jansson's */
                {true, INV_OK(INV_IMG(",\"future\":[1,2]"))},
                {true, INV_OK(INV_IMG_MIN(",\"pods\":[{\"pod\":\"caf\\u00e9\",\"extra\":1}]"))},
                {false, INV_TOP(INV_PARTS("1", "2", "1", "1"), "")},
                {false, INV_TOP(INV_PARTS("1", "1", "0", "1"), "")},
                {false, INV_TOP(INV_PARTS("1", "1", "2", "1"), "")},
                {false, INV_TOP(INV_PARTS("1", "1", "1", "10001"), "")},
                {false, INV_TOP(INV_PARTS("-1", "0", "1", "1"), "")},
                {false, INV_TOP(INV_PARTS("1.0", "0", "1", "1"), "")},
                {false, INV_TOP(INV_PARTS("1", "0", "1", "1") ",\"snapshot\":5", "")},
                {false, INV_TOP(",\"total\":1,\"compliant\":0,\"part\":1", "")},
                {false, "{\"schema\":1,\"id\":\"a\",\"kind\":\"inventory\",\"severity\":\"info\",\"time\":"
                        "\"2026-11-25T09:00:00Z\",\"node\":\"n\",\"total\":1,\"compliant\":0,\"part\":1,\"parts\":1}"},
                {false, "{\"schema\":1,\"id\":\"a\",\"kind\":\"inventory\",\"severity\":\"info\",\"time\":"
                        "\"2026-11-25T09:00:00Z\",\"node\":\"n\",\"total\":1,\"compliant\":0,\"part\":1,\"parts\":1,"
                        "\"images\":null}"},
                {false, INV_OK(INV_IMG("") "," INV_IMG("")) ",\"images\":[]"},
                {false, INV_OK(INV_IMG_MIN(",\"digest\":\"again\""))},
                {false, INV_OK("{\"namespace\":\"k8s.io\",\"ref\":\"r.example/a:v1\"}")},
                {false, INV_OK("{\"namespace\":\"k8s.io\",\"ref\":null,\"digest\":\"" D2 "\"}")},
                {false, INV_OK(INV_IMG_MIN(",\"findings\":[\"pull\"]"))},
                {false, INV_OK(INV_IMG_MIN(",\"findings\":[\"nope\"]"))},
                {false, INV_OK(INV_IMG_MIN(",\"findings\":[1]"))},
                {false, INV_OK(INV_IMG_MIN(",\"findings\":\"latest_tag\""))},
                {false, INV_OK(INV_IMG_MIN(",\"compliant\":null"))},
                {false, INV_OK(INV_IMG_MIN(",\"compliant\":1"))},
                {false, INV_OK(INV_IMG_MIN(",\"pods\":{}"))},
                {false, INV_OK(INV_IMG_MIN(",\"pods\":[5]"))},
                {false, INV_OK(INV_IMG_MIN(",\"pods\":[{\"pod\":5}]"))},
                {false, INV_OK(INV_IMG_MIN(",\"pods\":[{\"pod\":\"a\",\"pod\":\"b\"}]"))},
                {false, INV_OK(INV_IMG_MIN(",\"pods\":[{\"pod\":\"a\"},]"))},
                {false, INV_OK(INV_IMG_MIN(",\"tag\":5"))},
                {false, INV_OK("5")},
                {false, INV_OK(INV_IMG("") ",")},
                {false, INV_OK(INV_IMG("")) "x"},
                {false, INV_TOP(INV_PARTS("1", "1", "1", "1") ",\"kind\":\"inventory\"", "")},
                {false, "{\"schema\":1,\"id\":\"\",\"kind\":\"inventory\",\"severity\":\"info\",\"time\":"
                        "\"2026-11-25T09:00:00Z\",\"node\":\"n\",\"total\":1,\"compliant\":0,\"part\":1,\"parts\":1,"
                        "\"images\":[]}"},
                {false, "{\"schema\":1,\"id\":\"a\",\"kind\":\"inventory\",\"severity\":\"loud\",\"time\":"
                        "\"2026-11-25T09:00:00Z\",\"node\":\"n\",\"total\":1,\"compliant\":0,\"part\":1,\"parts\":1,"
                        "\"images\":[]}"},
                {false, "{\"schema\":2,\"id\":\"a\",\"kind\":\"inventory\",\"severity\":\"info\",\"time\":"
                        "\"2026-11-25T09:00:00Z\",\"node\":\"n\",\"total\":1,\"compliant\":0,\"part\":1,\"parts\":1,"
                        "\"images\":[]}"},
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                Record fast, generic;
                char err[256] = "", gerr[256] = "";
                size_t len = strlen(table[i].line);
                int r = record_from_json(table[i].line, len, &fast, err, sizeof err);
                int g = record_from_json_generic(table[i].line, len, &generic, gerr, sizeof gerr);
                if (table[i].ok != (r >= 0) || r != g || strcmp(err, gerr) != 0)
                        fail_msg("case %zu: %d \"%s\" / jansson %d \"%s\": %s", i, r, err, g, gerr, table[i].line);
                if (r >= 0) {
                        assert_int_equal(fast.type, RECORD_INVENTORY);
                        if (!record_equal(&fast, &generic))
                                fail_msg("case %zu: the records differ: %s", i, table[i].line);
                        record_done(&fast);
                        record_done(&generic);
                }
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_fast_path_agrees),
                cmocka_unit_test(test_fast_inventory_agrees),
                cmocka_unit_test(test_inventory),
                cmocka_unit_test(test_bad_input),
                cmocka_unit_test(test_time),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
