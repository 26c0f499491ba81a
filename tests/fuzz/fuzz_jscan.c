/* Differential fuzz target for jscan (agent/jscan.c) and the registry-document parsers
 * built on it (ctrd_parse_index, ctrd_parse_manifest, ctrd_parse_config), against jansson:
 *   - jscan_document() accepts exactly what json_loadb(JSON_DECODE_ANY) accepts, and a
 *     top-level object's members (jscan_member) are jansson's, strings decoded alike;
 *   - each ctrd_parse_* gives what the jansson version it replaced gave (kept below as the
 *     reference: the code before jscan, JSON_REJECT_DUPLICATES). Where the document has a
 *     key twice (jansson refuses it; jscan refuses it only on the path it reads), the
 *     result must be a failure or jansson's without JSON_REJECT_DUPLICATES (last wins).
 * Documents nested 2,000 deep or more are left out of the comparison (both bound their
 * depth at 2048, counted maybe one apart); they must still not crash. jansson swallows a
 * NUL byte after a number or a literal ("[1\0,2]" is [1,2]: its lexer's unget of the
 * byte); jscan refuses every NUL outside a string, so an input with a NUL byte is
 * compared one way: what jscan accepts, jansson accepts alike. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pullwatch/containerd.h"
#include "pullwatch/jscan.h"
#include "pullwatch/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- the reference: the jansson parsers as they were */

static json_t *ref_load(const char *s, size_t len, size_t flags) {
        json_t *j = json_loadb(s, len, flags, NULL);
        if (j && !json_is_object(j)) {
                json_decref(j);
                return NULL;
        }
        return j;
}

static int ref_index(const char *json, size_t len, size_t flags, const char *os, const char *arch, const char *variant,
                     CtrdImageConfig *cfg) {
        json_t *j = ref_load(json, len, flags), *manifests, *m;
        size_t i;
        int best = -1, best_score = -1, r = 0;
        CtrdImageConfig out = *cfg;
        if (!j)
                return -EBADMSG;
        manifests = json_object_get(j, "manifests");
        if (!json_is_array(manifests)) {
                r = -EBADMSG;
                goto out;
        }
        out.is_index = true;
        out.n_manifests = 0;
        json_array_foreach(manifests, i, m) {
                const char *d = json_string_value(json_object_get(m, "digest"));
                if (!ctrd_digest_valid(d)) {
                        r = -EBADMSG;
                        goto out;
                }
                if (out.n_manifests < CTRD_INDEX_MANIFESTS_MAX)
                        (void) strcpy_bounded(out.manifests[out.n_manifests++], PW_DIGEST_MAX, d);
                json_t *p = json_object_get(m, "platform");
                const char *pos = json_string_value(json_object_get(p, "os"));
                const char *parch = json_string_value(json_object_get(p, "architecture"));
                const char *pvar = json_string_value(json_object_get(p, "variant"));
                if (!streq_ptr(pos, os) || !streq_ptr(parch, arch))
                        continue;
                int score;
                if (isempty(pvar))
                        score = 1;
                else if (!isempty(variant) && streq_ptr(pvar, variant))
                        score = 2;
                else
                        continue;
                if (score > best_score) {
                        best_score = score;
                        best = (int) i;
                }
        }
        if (best < 0) {
                r = -ENOENT;
                goto out;
        }
        (void) strcpy_bounded(out.platform_digest, sizeof(out.platform_digest),
                              json_string_value(json_object_get(json_array_get(manifests, (size_t) best), "digest")));
        snprintf(out.platform, sizeof(out.platform), "%s/%s%s%.8s", os, arch, isempty(variant) ? "" : "/",
                 variant ? variant : "");
        *cfg = out;
out:
        json_decref(j);
        return r;
}

static int ref_manifest(const char *json, size_t len, size_t flags, CtrdImageConfig *cfg) {
        json_t *j = ref_load(json, len, flags);
        int r = 0;
        if (!j)
                return -EBADMSG;
        const char *d = json_string_value(json_object_get(json_object_get(j, "config"), "digest"));
        if (json_is_array(json_object_get(j, "manifests")) || !ctrd_digest_valid(d))
                r = -EBADMSG;
        else
                (void) strcpy_bounded(cfg->config_digest, sizeof(cfg->config_digest), d);
        json_decref(j);
        return r;
}

static int ref_config(const char *json, size_t len, size_t flags, CtrdImageConfig *cfg) {
        json_t *j = ref_load(json, len, flags);
        if (!j)
                return -EBADMSG;
        json_t *c = json_object_get(j, "config");
        json_t *labels = json_object_get(c, "Labels");
        if (!labels)
                labels = json_object_get(c, "labels");
        json_t *rev = json_object_get(labels, CTRD_REVISION_LABEL);
        cfg->has_revision = rev != NULL;
        cfg->revision_invalid = false;
        cfg->revision[0] = 0;
        if (rev && (!json_is_string(rev) ||
                    strcpy_bounded(cfg->revision, sizeof(cfg->revision), json_string_value(rev)) < 0))
                cfg->revision_invalid = true;
        json_decref(j);
        return 0;
}

/* ---- the comparison */

static bool cfg_equal(const CtrdImageConfig *a, const CtrdImageConfig *b) {
        if (a->is_index != b->is_index || a->has_revision != b->has_revision ||
            a->revision_invalid != b->revision_invalid || a->n_manifests != b->n_manifests ||
            strcmp(a->platform, b->platform) != 0 || strcmp(a->platform_digest, b->platform_digest) != 0 ||
            strcmp(a->config_digest, b->config_digest) != 0 || strcmp(a->revision, b->revision) != 0)
                return false;
        for (size_t i = 0; i < a->n_manifests; i++)
                if (strcmp(a->manifests[i], b->manifests[i]) != 0)
                        return false;
        return true;
}

/* new against strict (JSON_REJECT_DUPLICATES) and lax (last wins) references */
static bool one_way;

static void compare(const char *what, int rn, const CtrdImageConfig *n, int rs, const CtrdImageConfig *s, int rl,
                    const CtrdImageConfig *l) {
        bool ok;
        if (one_way && rn == -EBADMSG)
                ok = true;
        else if (rs >= 0 || rs == -ENOENT) /* no twin anywhere: exactly the reference */
                ok = rn == rs && (rn < 0 || cfg_equal(n, s));
        else if (rl < 0)
                ok = rn < 0;
        else
                ok = rn < 0 || (rn == rl && cfg_equal(n, l));
        if (!ok) {
                fprintf(stderr, "%s: jscan %d, jansson %d (last wins: %d)\n", what, rn, rs, rl);
                abort();
        }
}

static size_t max_depth(const uint8_t *data, size_t size) {
        size_t d = 0, max = 0;
        for (size_t i = 0; i < size; i++)
                if (data[i] == '[' || data[i] == '{')
                        max = ++d > max ? d : max;
        return max;
}

static void check_members(const char *json, size_t size) {
        JscanValue top;
        json_t *j = json_loadb(json, size, JSON_DECODE_ANY, NULL);
        int r = jscan_document(json, size, &top, NULL, 0);
        if ((r >= 0) != (j != NULL) && !(one_way && r < 0)) {
                fprintf(stderr, "jscan_document %d, jansson %s\n", r, j ? "valid" : "invalid");
                abort();
        }
        json_t *strict = json_loadb(json, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
        if (r >= 0 && strict && json_is_object(strict)) {
                const char *key;
                json_t *v;
                json_object_foreach(strict, key, v) {
                        JscanValue m;
                        if (jscan_member(&top, key, &m) != 1)
                                abort();
                        bool same = json_is_object(v)   ? m.type == JSCAN_OBJECT :
                                    json_is_array(v)    ? m.type == JSCAN_ARRAY :
                                    json_is_string(v)   ? m.type == JSCAN_STRING :
                                    json_is_number(v)   ? m.type == JSCAN_NUMBER :
                                    json_is_true(v)     ? m.type == JSCAN_TRUE :
                                    json_is_false(v)    ? m.type == JSCAN_FALSE : m.type == JSCAN_NULL;
                        if (!same)
                                abort();
                        if (json_is_string(v)) {
                                size_t n = json_string_length(v);
                                char *buf = malloc(n + 1);
                                if (!buf || jscan_string(&m, buf, n + 1) < 0 || strcmp(buf, json_string_value(v)) != 0 ||
                                    (n > 0 && jscan_string(&m, buf, n) != -ENAMETOOLONG))
                                        abort();
                                free(buf);
                        }
                }
        }
        json_decref(strict);
        json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const platforms[][2] = {{"amd64", ""}, {"arm64", "v8"}, {"arm", "v7"}};
        const char *json = (const char *) data;
        char err[256];
        if (max_depth(data, size) >= 2000) {
                JscanValue top;
                (void) jscan_document(json, size, &top, err, sizeof err);
                return 0;
        }
        one_way = memchr(data, 0, size) != NULL;
        check_members(json, size);
        for (size_t p = 0; p < sizeof platforms / sizeof platforms[0]; p++) {
                CtrdImageConfig n = {0}, s = {0}, l = {0};
                int rn = ctrd_parse_index(json, size, "linux", platforms[p][0], platforms[p][1], &n, err, sizeof err);
                int rs = ref_index(json, size, JSON_REJECT_DUPLICATES, "linux", platforms[p][0], platforms[p][1], &s);
                int rl = ref_index(json, size, 0, "linux", platforms[p][0], platforms[p][1], &l);
                compare("index", rn, &n, rs, &s, rl, &l);
        }
        CtrdImageConfig n = {0}, s = {0}, l = {0};
        compare("manifest", ctrd_parse_manifest(json, size, &n, err, sizeof err), &n,
                ref_manifest(json, size, JSON_REJECT_DUPLICATES, &s), &s, ref_manifest(json, size, 0, &l), &l);
        CtrdImageConfig n2 = {0}, s2 = {0}, l2 = {0};
        compare("config", ctrd_parse_config(json, size, &n2, err, sizeof err), &n2,
                ref_config(json, size, JSON_REJECT_DUPLICATES, &s2), &s2, ref_config(json, size, 0, &l2), &l2);
        return 0;
}
