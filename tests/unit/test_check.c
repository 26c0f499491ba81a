/* pullwatch check's pure parts: escaping, the manifest-line reader, the JSON and SARIF
 * encoders (the SARIF structure is checked with jansson, field by field). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "pullwatch/check.h"
#include "pullwatch/util.h"

#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static void test_escape(void **state) {
        static const struct {
                const char *in;
                size_t len;
                size_t size;
                const char *out;
        } cases[] = {
                { "nginx:1", 7, 64, "nginx:1" },
                { "a\"b\\c", 5, 64, "a\\\"b\\\\c" },
                { "a\tb\nc\rd", 7, 64, "a\\tb\\nc\\rd" },
                { "x\x01y\x7f\xc3\xa9", 6, 64, "x\\x01y\\x7f\\xc3\\xa9" },
                { "bad\0tail", 8, 64, "bad\\x00tail" },
                { "abcdefghij", 10, 8, "abcd..." },     /* cut, with room for "..." */
                { "abcdefg", 7, 8, "abcdefg" },         /* fits exactly */
                { "\x01\x01\x01", 3, 8, "\\x01..." },   /* never half an escape */
                { "", 0, 4, "" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char buf[64];
                memset(buf, 'Z', sizeof buf);
                check_escape(cases[i].in, cases[i].len, buf, cases[i].size);
                if (!streq_ptr(buf, cases[i].out))
                        fail_msg("escape case %zu: got \"%s\", expected \"%s\"", i, buf, cases[i].out);
                assert_true(strlen(buf) < cases[i].size);
        }
}

static void test_manifest_image(void **state) {
        static const struct {
                const char *line;
                int ret;
                const char *value; /* ret 1: the value; ret < 0: a piece of the reason */
        } cases[] = {
                { "image: nginx:1.25", 1, "nginx:1.25" },
                { "    image: nginx:1.25   ", 1, "nginx:1.25" },
                { "  - image: ghcr.io/a/b@" DA, 1, "ghcr.io/a/b@" DA },
                { "- - image: x", 1, "x" },
                { "\timage:\tx # a comment", 1, "x" },
                { "image: a#b", 1, "a#b" }, /* '#' is a comment only after a blank */
                { "image: \"nginx:1\"", 1, "nginx:1" },
                { "image: 'nginx:1'  # pinned later", 1, "nginx:1" },
                { "\"image\": \"x\"", 1, "x" },
                { "'image' : x", 1, "x" },
                { "image: 'it''s'", 1, "it's" },
                { "image: \"a\\\"b\\x01\\tc\\u00e9\"", 1, "a\"b\x01\tc\xc3\xa9" },
                { "image: nginx:latest\r", 1, "nginx:latest\r" }, /* the caller strips CR; kept here */
                { "imagePullPolicy: Always", 0, NULL },
                { "image:nginx", 0, NULL },
                { "images: x", 0, NULL },
                { "name: image: x", 0, NULL },
                { "# image: x", 0, NULL },
                { "image:", 0, NULL },
                { "image:   # nothing", 0, NULL },
                { "image: {repository: nginx, tag: 1}", 0, NULL },
                { "image: [a, b]", 0, NULL },
                { "", 0, NULL },
                { "image: \"unterminated", -EINVAL, "unterminated" },
                { "image: 'unterminated", -EINVAL, "unterminated" },
                { "image: \"a\" b", -EINVAL, "after the closing quote" },
                { "image: \"a\\qb\"", -EINVAL, "bad escape" },
                { "image: \"a\\x4\"", -EINVAL, "bad escape" },
                { "image: |", -EINVAL, "block scalar" },
                { "image: *anchor", -EINVAL, "aliases" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char value[CHECK_VALUE_MAX], err[256] = "";
                size_t len = 9999;
                int r = check_manifest_image(cases[i].line, strlen(cases[i].line), value, sizeof value, &len, err,
                                             sizeof err);
                if (r != cases[i].ret)
                        fail_msg("manifest case %zu \"%s\": got %d (%s), expected %d", i, cases[i].line, r, err,
                                 cases[i].ret);
                if (r == 1) {
                        assert_int_equal(len, strlen(cases[i].value));
                        if (!streq_ptr(value, cases[i].value))
                                fail_msg("manifest case %zu \"%s\": value \"%s\"", i, cases[i].line, value);
                } else if (r < 0 && !strstr(err, cases[i].value))
                        fail_msg("manifest case %zu \"%s\": reason \"%s\" lacks \"%s\"", i, cases[i].line, err,
                                 cases[i].value);
                if (r < 0)
                        assert_int_equal(len, 9999); /* untouched on failure */
        }

        /* a NUL byte inside a value is kept (the caller rejects it, naming the line) */
        char value[16];
        size_t len = 0;
        assert_int_equal(check_manifest_image("image: a\0b", 10, value, sizeof value, &len, NULL, 0), 1);
        assert_int_equal(len, 3);
        assert_memory_equal(value, "a\0b", 3);
        /* bounded: a value longer than the buffer is an error, not a cut */
        char err[128] = "";
        assert_int_equal(check_manifest_image("image: 0123456789abcdef", 23, value, sizeof value, &len, err, sizeof err),
                         -ENAMETOOLONG);
        assert_non_null(strstr(err, "too long"));
}

static void test_format_names(void **state) {
        assert_int_equal(check_format_from_string("text"), CHECK_FORMAT_TEXT);
        assert_int_equal(check_format_from_string("json"), CHECK_FORMAT_JSON);
        assert_int_equal(check_format_from_string("sarif"), CHECK_FORMAT_SARIF);
        assert_int_equal(check_format_from_string("SARIF"), _CHECK_FORMAT_INVALID);
        assert_int_equal(check_format_from_string(NULL), _CHECK_FORMAT_INVALID);
}

/* Three items: a finding from a manifest line, an invalid input from a manifest line,
 * a finding from the command line (no location). */
static CheckItem items[3];
static Finding findings0[1], findings2[2];

static int setup_items(void **state) {
        static char in0[] = "nginx:latest", in1[] = "evil\"ref\x01", in2[] = "app:main";
        memset(items, 0, sizeof items);
        items[0] = (CheckItem) { .input = in0, .input_len = strlen(in0), .uri = "k8s/web app.yaml", .line = 12 };
        items[0].findings = findings0;
        items[0].n_findings = 1;
        items[0].findings[0] = (Finding) { .kind = FINDING_LATEST_TAG, .severity = SEVERITY_MEDIUM };
        strcpy(items[0].findings[0].image.ref, "docker.io/library/nginx:latest");
        strcpy(items[0].findings[0].message, "docker.io/library/nginx:latest uses the mutable tag latest");

        items[1] = (CheckItem) { .input = in1, .input_len = strlen(in1), .uri = "k8s/web app.yaml", .line = 15 };
        strcpy(items[1].error, "control character 0x01 at offset 8");

        items[2] = (CheckItem) { .input = in2, .input_len = strlen(in2) };
        items[2].findings = findings2;
        items[2].n_findings = 2;
        items[2].findings[0] = (Finding) { .kind = FINDING_MUTABLE_TAG, .severity = SEVERITY_LOW };
        items[2].findings[1] = (Finding) { .kind = FINDING_DIGEST_MISMATCH, .severity = SEVERITY_CRITICAL };
        strcpy(items[2].findings[0].message, "mutable");
        strcpy(items[2].findings[1].message, "mismatch");
        return 0;
}

static const char *str(json_t *o, const char *path) {
        /* "a.b.c" through objects only */
        char key[64];
        const char *p = path;
        while (o) {
                const char *dot = strchr(p, '.');
                size_t n = dot ? (size_t) (dot - p) : strlen(p);
                snprintf(key, sizeof key, "%.*s", (int) n, p);
                o = json_object_get(o, key);
                if (!dot)
                        return json_string_value(o);
                p = dot + 1;
        }
        return NULL;
}

static void test_sarif(void **state) {
        json_t *doc = NULL;
        assert_int_equal(check_to_sarif(items, ELEMENTSOF(items), &doc), 0);
        /* through text and back, as a code-scanning upload would read it */
        char *text = json_dumps(doc, 0);
        json_decref(doc);
        json_error_t jerr;
        doc = json_loads(text, 0, &jerr);
        free(text);
        assert_non_null(doc);

        assert_string_equal(str(doc, "version"), "2.1.0");
        assert_non_null(str(doc, "$schema"));
        json_t *runs = json_object_get(doc, "runs");
        assert_int_equal(json_array_size(runs), 1);
        json_t *run = json_array_get(runs, 0);
        json_t *driver = json_object_get(json_object_get(run, "tool"), "driver");
        assert_string_equal(str(driver, "name"), "pullwatch");

        /* a rule for every finding kind and for invalid input, each described */
        json_t *rules = json_object_get(driver, "rules");
        const char *want_rules[] = { "latest_tag",        "mutable_tag", "tag_moved",        "digest_mismatch",
                                     "revision_mismatch", "untraceable", "invalid_reference" };
        assert_int_equal(json_array_size(rules), ELEMENTSOF(want_rules));
        for (size_t i = 0; i < ELEMENTSOF(want_rules); i++) {
                json_t *rule = json_array_get(rules, i);
                assert_string_equal(str(rule, "id"), want_rules[i]);
                assert_true(strlen(str(rule, "shortDescription.text")) > 10);
                assert_true(strlen(str(rule, "help.text")) > 10);
        }

        json_t *results = json_object_get(run, "results");
        static const struct {
                const char *rule, *level, *message_part;
                json_int_t line; /* 0: no location */
        } want[] = {
                { "latest_tag", "warning", "uses the mutable tag latest", 12 },
                { "invalid_reference", "error", "invalid reference \"evil\\\"ref\\x01\": control character", 15 },
                { "mutable_tag", "note", "mutable", 0 },
                { "digest_mismatch", "error", "mismatch", 0 },
        };
        assert_int_equal(json_array_size(results), ELEMENTSOF(want));
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                json_t *res = json_array_get(results, i);
                assert_string_equal(str(res, "ruleId"), want[i].rule);
                json_int_t idx = json_integer_value(json_object_get(res, "ruleIndex"));
                assert_string_equal(str(json_array_get(rules, (size_t) idx), "id"), want[i].rule);
                assert_string_equal(str(res, "level"), want[i].level);
                if (!strstr(str(res, "message.text"), want[i].message_part))
                        fail_msg("result %zu: message \"%s\"", i, str(res, "message.text"));
                json_t *locs = json_object_get(res, "locations");
                if (!want[i].line) {
                        assert_null(locs);
                        continue;
                }
                assert_int_equal(json_array_size(locs), 1);
                json_t *phys = json_object_get(json_array_get(locs, 0), "physicalLocation");
                assert_string_equal(str(phys, "artifactLocation.uri"), "k8s/web%20app.yaml");
                assert_int_equal(json_integer_value(json_object_get(json_object_get(phys, "region"), "startLine")),
                                 want[i].line);
        }
        json_decref(doc);

        /* nothing to say is an empty results array, not a missing one */
        assert_int_equal(check_to_sarif(NULL, 0, &doc), 0);
        json_t *r0 = json_array_get(json_object_get(doc, "runs"), 0);
        assert_true(json_is_array(json_object_get(r0, "results")));
        assert_int_equal(json_array_size(json_object_get(r0, "results")), 0);
        json_decref(doc);
}

static void test_json(void **state) {
        json_t *a = NULL;
        /* the finding encoder needs a valid time */
        for (size_t i = 0; i < ELEMENTSOF(items); i++)
                for (size_t j = 0; j < items[i].n_findings; j++)
                        items[i].findings[j].time_usec = 1700000000000000ULL;
        assert_int_equal(check_to_json(items, ELEMENTSOF(items), &a), 0);
        assert_true(json_is_array(a));
        assert_int_equal(json_array_size(a), 4);

        json_t *f = json_array_get(a, 0);
        assert_string_equal(str(f, "kind"), "latest_tag");
        assert_string_equal(str(f, "severity"), "medium");
        assert_string_equal(str(f, "reference"), "nginx:latest");
        assert_string_equal(str(f, "file"), "k8s/web app.yaml");
        assert_int_equal(json_integer_value(json_object_get(f, "line")), 12);
        assert_string_equal(str(f, "image.ref"), "docker.io/library/nginx:latest");

        json_t *e = json_array_get(a, 1);
        assert_string_equal(str(e, "kind"), "invalid_reference");
        assert_string_equal(str(e, "severity"), "error");
        assert_string_equal(str(e, "reference"), "evil\\\"ref\\x01"); /* escaped: the raw bytes never reach JSON */
        assert_string_equal(str(e, "error"), "control character 0x01 at offset 8");
        assert_int_equal(json_integer_value(json_object_get(e, "line")), 15);

        json_t *g = json_array_get(a, 2);
        assert_string_equal(str(g, "kind"), "mutable_tag");
        assert_null(json_object_get(g, "file"));
        assert_null(json_object_get(g, "line"));
        assert_string_equal(str(json_array_get(a, 3), "kind"), "digest_mismatch");
        json_decref(a);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_escape),
                cmocka_unit_test(test_manifest_image),
                cmocka_unit_test(test_format_names),
                cmocka_unit_test_setup(test_sarif, setup_items),
                cmocka_unit_test_setup(test_json, setup_items),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
