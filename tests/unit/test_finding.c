#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>

#include "pullwatch/finding.h"
#include "pullwatch/util.h"

static Finding sample(FindingKind kind) {
        Finding f = {0};
        f.kind = kind;
        f.severity = kind == FINDING_PULL ? SEVERITY_INFO : SEVERITY_HIGH;
        f.time_usec = 1764089453123456ULL; /* 2025-11-25T16:50:53.123456Z */
        strcpy_bounded(f.id, sizeof f.id, "0123456789abcdef0123456789abcdef");
        strcpy_bounded(f.node, sizeof f.node, "node-a");
        strcpy_bounded(f.namespace, sizeof f.namespace, "k8s.io");
        strcpy_bounded(f.image.ref, sizeof f.image.ref, "docker.io/library/nginx:latest");
        strcpy_bounded(f.image.name, sizeof f.image.name, "docker.io/library/nginx");
        strcpy_bounded(f.image.tag, sizeof f.image.tag, "latest");
        strcpy_bounded(f.image.digest, sizeof f.image.digest,
                       "sha256:1111111111111111111111111111111111111111111111111111111111111111");
        if (kind == FINDING_TAG_MOVED)
                strcpy_bounded(f.image.previous_digest, sizeof f.image.previous_digest,
                               "sha256:2222222222222222222222222222222222222222222222222222222222222222");
        if (kind == FINDING_DIGEST_MISMATCH)
                strcpy_bounded(f.image.expected_digest, sizeof f.image.expected_digest,
                               "sha256:3333333333333333333333333333333333333333333333333333333333333333");
        finding_format_message(&f);
        return f;
}

static void test_kind_strings(void **state) {
        static const struct {
                FindingKind kind;
                const char *name;
        } table[] = {
                {FINDING_PULL, "pull"},
                {FINDING_LATEST_TAG, "latest_tag"},
                {FINDING_MUTABLE_TAG, "mutable_tag"},
                {FINDING_TAG_MOVED, "tag_moved"},
                {FINDING_DIGEST_MISMATCH, "digest_mismatch"},
                {FINDING_REVISION_MISMATCH, "revision_mismatch"},
                {FINDING_UNTRACEABLE, "untraceable"},
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                assert_string_equal(finding_kind_to_string(table[i].kind), table[i].name);
                assert_int_equal(finding_kind_from_string(table[i].name), table[i].kind);
                const char *id = finding_message_id(table[i].kind);
                assert_non_null(id);
                assert_int_equal(strlen(id), 32);
                for (size_t j = 0; j < i; j++)
                        assert_string_not_equal(id, finding_message_id(table[j].kind));
        }
        assert_int_equal(finding_kind_from_string("Latest_tag"), _FINDING_KIND_INVALID);
        assert_int_equal(finding_kind_from_string(NULL), _FINDING_KIND_INVALID);
        assert_null(finding_kind_to_string(_FINDING_KIND_MAX));
        assert_int_equal(severity_from_string("critical"), SEVERITY_CRITICAL);
        assert_int_equal(severity_from_string("fatal"), _SEVERITY_INVALID);
}

static const char *member(json_t *o, const char *path) {
        /* "image.tag" → o["image"]["tag"]; NULL when absent */
        char buf[64];
        snprintf(buf, sizeof buf, "%s", path);
        char *dot = strchr(buf, '.');
        if (dot) {
                *dot = 0;
                o = json_object_get(o, buf);
                path = path + (dot - buf) + 1;
        }
        return json_string_value(json_object_get(o, path));
}

/* Every field of every kind survives the encoding, as one line. */
static void test_json_every_field(void **state) {
        for (int k = 0; k < _FINDING_KIND_MAX; k++) {
                Finding f = sample((FindingKind) k);
                strcpy_bounded(f.image.revision, sizeof f.image.revision, "dead\"beef\n");
                strcpy_bounded(f.workload.pod, sizeof f.workload.pod, "web-0");
                strcpy_bounded(f.workload.namespace, sizeof f.workload.namespace, "shop");
                strcpy_bounded(f.workload.container, sizeof f.workload.container, "web");
                strcpy_bounded(f.workload.container_id, sizeof f.workload.container_id, "abc");
                f.image.tag_implicit = k == FINDING_LATEST_TAG;
                _cleanup_free_ char *s = NULL;
                assert_int_equal(finding_to_json_string(&f, &s), 0);
                assert_null(strchr(s, '\n'));
                json_t *j = json_loads(s, JSON_REJECT_DUPLICATES, NULL);
                assert_non_null(j);
                const struct {
                        const char *path, *want;
                } table[] = {
                        {"id", f.id},
                        {"kind", finding_kind_to_string(f.kind)},
                        {"node", f.node},
                        {"namespace", f.namespace},
                        {"message", f.message},
                        {"image.ref", f.image.ref},
                        {"image.name", f.image.name},
                        {"image.tag", f.image.tag},
                        {"image.digest", f.image.digest},
                        {"image.revision", f.image.revision},
                        {"image.previous_digest", f.image.previous_digest[0] ? f.image.previous_digest : NULL},
                        {"image.expected_digest", f.image.expected_digest[0] ? f.image.expected_digest : NULL},
                        {"workload.pod", "web-0"},
                        {"workload.namespace", "shop"},
                        {"workload.container", "web"},
                        {"workload.container_id", "abc"},
                };
                for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                        const char *got = member(j, table[i].path);
                        if (table[i].want)
                                assert_string_equal(got, table[i].want);
                        else
                                assert_null(got);
                }
                assert_int_equal(json_is_true(json_object_get(json_object_get(j, "image"), "tag_implicit")),
                                 k == FINDING_LATEST_TAG);
                json_decref(j);
        }
}

static void test_json_fields(void **state) {
        Finding f = sample(FINDING_TAG_MOVED);
        json_t *j = NULL;
        assert_int_equal(finding_to_json(&f, &j), 0);
        assert_int_equal(json_integer_value(json_object_get(j, "schema")), 1);
        assert_string_equal(json_string_value(json_object_get(j, "kind")), "tag_moved");
        assert_string_equal(json_string_value(json_object_get(j, "severity")), "high");
        assert_string_equal(json_string_value(json_object_get(j, "time")), "2025-11-25T16:50:53.123456Z");
        json_t *im = json_object_get(j, "image");
        assert_string_equal(json_string_value(json_object_get(im, "previous_digest")), f.image.previous_digest);
        assert_null(json_object_get(im, "expected_digest")); /* empty optional members are omitted */
        assert_null(json_object_get(j, "workload"));          /* unknown workload is omitted */
        json_decref(j);
}

static const char *journal_value(const JournalFields *jf, const char *field) {
        size_t fl = strlen(field);
        static char out[1024];
        for (size_t i = 0; i < jf->n; i++) {
                const char *p = jf->iov[i].iov_base;
                if (jf->iov[i].iov_len > fl && memcmp(p, field, fl) == 0 && p[fl] == '=') {
                        snprintf(out, sizeof out, "%.*s", (int) (jf->iov[i].iov_len - fl - 1), p + fl + 1);
                        return out;
                }
        }
        return NULL;
}

static void test_journal_fields(void **state) {
        static const struct {
                FindingKind kind;
                const char *field, *value;
        } table[] = {
                {FINDING_PULL, "PRIORITY", "6"},
                {FINDING_PULL, "PULLWATCH_KIND", "pull"},
                {FINDING_PULL, "MESSAGE_ID", "7d5f9ca88699450392e05c6657d40487"},
                {FINDING_PULL, "IMAGE_PREVIOUS_DIGEST", NULL},
                {FINDING_LATEST_TAG, "PRIORITY", "4"},
                {FINDING_LATEST_TAG, "SYSLOG_IDENTIFIER", "pullwatch"},
                {FINDING_LATEST_TAG, "IMAGE_TAG", "latest"},
                {FINDING_LATEST_TAG, "NODE_NAME", "node-a"},
                {FINDING_LATEST_TAG, "CONTAINERD_NAMESPACE", "k8s.io"},
                {FINDING_LATEST_TAG, "IMAGE_DIGEST", "sha256:1111111111111111111111111111111111111111111111111111111111111111"},
                {FINDING_LATEST_TAG, "K8S_POD", NULL},
                {FINDING_TAG_MOVED, "IMAGE_PREVIOUS_DIGEST", "sha256:2222222222222222222222222222222222222222222222222222222222222222"},
                {FINDING_DIGEST_MISMATCH, "IMAGE_EXPECTED_DIGEST", "sha256:3333333333333333333333333333333333333333333333333333333333333333"},
                {FINDING_DIGEST_MISMATCH, "PULLWATCH_SEVERITY", "high"},
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                Finding f = sample(table[i].kind);
                JournalFields jf;
                assert_int_equal(finding_to_journal(&f, &jf), 0);
                const char *v = journal_value(&jf, table[i].field);
                if (table[i].value)
                        assert_string_equal(v, table[i].value);
                else
                        assert_null(v);
                /* every field name is valid for journald: [A-Z0-9_], not starting with _ or a digit */
                for (size_t k = 0; k < jf.n; k++) {
                        const char *p = jf.iov[k].iov_base;
                        assert_true(p[0] >= 'A' && p[0] <= 'Z');
                        for (; *p != '='; p++)
                                assert_true((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_');
                }
        }
}

static void test_messages(void **state) {
        static const struct {
                FindingKind kind;
                const char *needle;
        } table[] = {
                {FINDING_PULL, "pulled docker.io/library/nginx:latest as sha256:1111"},
                {FINDING_LATEST_TAG, "mutable tag latest"},
                {FINDING_TAG_MOVED, "moved from sha256:222222222222 to sha256:111111111111"},
                {FINDING_DIGEST_MISMATCH, "pinned to sha256:333333333333"},
                {FINDING_REVISION_MISMATCH, "no revision label"},
                {FINDING_UNTRACEABLE, "not traceable"},
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                Finding f = sample(table[i].kind);
                assert_non_null(strstr(f.message, table[i].needle));
        }
        /* an offline check knows no digest and no namespace: no empty "pulled as  in namespace " */
        Finding c = sample(FINDING_LATEST_TAG);
        c.image.digest[0] = 0;
        c.namespace[0] = 0;
        finding_format_message(&c);
        assert_string_equal(c.message, "docker.io/library/nginx:latest uses the mutable tag latest; pin a version or a digest");

        Finding f = sample(FINDING_LATEST_TAG);
        strcpy_bounded(f.workload.pod, sizeof f.workload.pod, "web-0");
        strcpy_bounded(f.workload.namespace, sizeof f.workload.namespace, "shop");
        strcpy_bounded(f.workload.container, sizeof f.workload.container, "web");
        finding_format_message(&f);
        assert_non_null(strstr(f.message, "(pod shop/web-0, container web)"));
}

/* A string that is not valid UTF-8 (a pod label, a reference stored in containerd) is
 * sanitised, never a reason to drop the record: each bad byte becomes U+FFFD. jansson
 * refuses such a string, and the whole record used to be lost for stdout, the spool and
 * journald. */
/* The messages made by appending (every image of a listing) are what snprintf() made of
 * the same formats, cut at the same byte when too long. */
static void fill(char *buf, size_t size, char c, size_t n) {
        n = n < size - 1 ? n : size - 1;
        memset(buf, c, n);
        buf[n] = 0;
}

static void test_messages_as_snprintf(void **state) {
        static const struct {
                FindingKind kind;
                int workload; /* 0 none, 1 pod (container named or not), 2 container id */
                bool container_named, long_fields, no_ns, no_digest;
        } table[] = {
                {FINDING_PULL, 0, false, false, false, false},
                {FINDING_PULL, 1, true, false, false, false},
                {FINDING_PULL, 1, false, false, false, false},
                {FINDING_PULL, 2, false, false, true, false},
                {FINDING_PULL, 1, true, true, false, false},
                {FINDING_PULL, 2, false, true, false, false},
                {FINDING_MUTABLE_TAG, 0, false, false, false, false},
                {FINDING_MUTABLE_TAG, 1, true, false, true, true},
                {FINDING_MUTABLE_TAG, 2, false, false, false, true},
                {FINDING_MUTABLE_TAG, 1, false, true, false, false},
                {FINDING_MUTABLE_TAG, 2, false, true, true, false},
                {FINDING_UNTRACEABLE, 1, true, true, false, false},
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                Finding f = sample(table[i].kind);
                if (table[i].long_fields) {
                        fill(f.image.ref, sizeof f.image.ref, 'r', SIZE_MAX);
                        fill(f.image.tag, sizeof f.image.tag, 't', SIZE_MAX);
                        fill(f.namespace, sizeof f.namespace, 'n', SIZE_MAX);
                        fill(f.workload.namespace, sizeof f.workload.namespace, 'w', SIZE_MAX);
                        fill(f.workload.pod, sizeof f.workload.pod, 'p', SIZE_MAX);
                        fill(f.workload.container_id, sizeof f.workload.container_id, 'c', SIZE_MAX);
                }
                if (table[i].no_ns)
                        f.namespace[0] = 0;
                if (table[i].no_digest)
                        f.image.digest[0] = 0;
                if (table[i].workload == 1) {
                        if (!table[i].long_fields) {
                                strcpy_bounded(f.workload.namespace, sizeof f.workload.namespace, "default");
                                strcpy_bounded(f.workload.pod, sizeof f.workload.pod, "web-0");
                        }
                        if (table[i].container_named)
                                fill(f.workload.container, sizeof f.workload.container, 'k', table[i].long_fields ? SIZE_MAX : 3);
                } else {
                        f.workload.namespace[0] = f.workload.pod[0] = 0;
                        if (table[i].workload == 0)
                                f.workload.container_id[0] = 0;
                        else if (!table[i].long_fields)
                                strcpy_bounded(f.workload.container_id, sizeof f.workload.container_id, "abc123");
                }
                finding_format_message(&f);

                /* the formats as they were */
                char who[PW_K8S_NAME_MAX * 3 + 64] = "", where[PW_DIGEST_MAX + PW_NS_MAX + 32], want[sizeof f.message];
                const FindingImage *im = &f.image;
                if (f.workload.pod[0])
                        snprintf(who, sizeof who, " (pod %s/%s, container %s)", f.workload.namespace, f.workload.pod,
                                 f.workload.container[0] ? f.workload.container : "?");
                else if (f.workload.container_id[0])
                        snprintf(who, sizeof who, " (container %s)", f.workload.container_id);
                snprintf(where, sizeof where, "%s%s%s%s", im->digest[0] ? ", pulled as " : "", im->digest,
                         f.namespace[0] ? " in namespace " : "", f.namespace);
                if (f.kind == FINDING_PULL)
                        snprintf(want, sizeof want, "pulled %s as %s%s%s%s", im->ref, im->digest,
                                 f.namespace[0] ? " in namespace " : "", f.namespace, who);
                else if (f.kind == FINDING_MUTABLE_TAG)
                        snprintf(want, sizeof want, "%s uses the mutable tag %s%s%s", im->ref, im->tag, where, who);
                else
                        snprintf(want, sizeof want,
                                 "%s (%.19s) carries no org.opencontainers.image.revision label: not traceable to a commit%s",
                                 im->ref, im->digest, who);
                assert_string_equal(f.message, want);
                if (table[i].long_fields)
                        assert_int_equal(strlen(f.message), sizeof f.message - 1);
        }
}

static void test_invalid_utf8_sanitised(void **state) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "web-\xff\xfe-1", "web-\xef\xbf\xbd\xef\xbf\xbd-1" },
                { "caf\xc3\xa9", "caf\xc3\xa9" },                       /* valid: kept */
                { "trunc\xc3", "trunc\xef\xbf\xbd" },                   /* a sequence cut short */
                { "over\xc0\xaf", "over\xef\xbf\xbd\xef\xbf\xbd" },     /* an overlong '/' */
                { "sur\xed\xa0\x80", "sur\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" }, /* a surrogate */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Finding f = sample(FINDING_LATEST_TAG);
                strcpy_bounded(f.workload.namespace, sizeof f.workload.namespace, "prod");
                strcpy_bounded(f.workload.pod, sizeof f.workload.pod, cases[i].in);
                snprintf(f.message, sizeof f.message, "pod %s runs latest", cases[i].in);
                char *s = NULL;
                if (finding_to_json_string(&f, &s) < 0)
                        fail_msg("case %zu: the record was dropped", i);
                json_error_t e;
                json_t *j = json_loads(s, 0, &e);
                assert_non_null(j);
                const char *pod = json_string_value(json_object_get(json_object_get(j, "workload"), "pod"));
                if (!streq_ptr(pod, cases[i].out))
                        fail_msg("case %zu: pod \"%s\"", i, pod ? pod : "(none)");
                assert_non_null(strstr(json_string_value(json_object_get(j, "message")), cases[i].out));
                json_decref(j);
                free(s);
        }
}

static void test_id_from_key(void **state) {
        static const char *const keys[] = {
                "node-a|k8s.io|docker.io/library/nginx:latest|sha256:1111|latest_tag",
                "node-a|k8s.io|docker.io/library/nginx:latest|sha256:1111|pull",
                "node-b|k8s.io|docker.io/library/nginx:latest|sha256:1111|latest_tag",
                "node-a|default|docker.io/library/nginx:latest|sha256:1111|latest_tag",
                "",
                "a",
                "b",
        };
        char ids[ELEMENTSOF(keys)][PW_ID_MAX];
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                finding_id_from_key(keys[i], ids[i]);
                assert_int_equal(strlen(ids[i]), 32);
                assert_int_equal(strspn(ids[i], "0123456789abcdef"), 32);
                char again[PW_ID_MAX];
                finding_id_from_key(keys[i], again);
                assert_string_equal(ids[i], again); /* stable */
                for (size_t j = 0; j < i; j++)
                        assert_string_not_equal(ids[i], ids[j]);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_kind_strings),   cmocka_unit_test(test_json_every_field),
                cmocka_unit_test(test_json_fields),
                cmocka_unit_test(test_journal_fields), cmocka_unit_test(test_messages),
                cmocka_unit_test(test_messages_as_snprintf),
                cmocka_unit_test(test_id_from_key),
                cmocka_unit_test(test_invalid_utf8_sanitised),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
