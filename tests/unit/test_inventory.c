/* inventory: parts of one snapshot share its id, each image carries its name, media
 * type, revision when known, compliance and the pods attribution knows on its digest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include "pullwatch/attribution.h"
#include "pullwatch/inventory.h"
#include "pullwatch/util.h"

#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

typedef struct Written {
        json_t *recs;
        int fail_at; /* 1-based record to fail, 0 never */
} Written;

static int collect(const char *json, size_t len, void *userdata) {
        Written *w = userdata;
        if (w->fail_at && (int) json_array_size(w->recs) + 1 == w->fail_at)
                return -ENOSPC;
        json_t *j = json_loadb(json, len, 0, NULL);
        assert_non_null(j);
        json_array_append_new(w->recs, j);
        return 0;
}

static void add(Inventory *inv, const char *ref_text, const char *digest, bool revision, FindingKind kind) {
        Observation o = {0};
        Ref ref;
        char name[PW_NAME_MAX];
        strcpy_bounded(o.namespace, sizeof o.namespace, "k8s.io");
        strcpy_bounded(o.ref, sizeof o.ref, ref_text);
        strcpy_bounded(o.digest, sizeof o.digest, digest);
        strcpy_bounded(o.media_type, sizeof o.media_type, "application/vnd.oci.image.manifest.v1+json");
        o.has_revision = revision;
        strcpy_bounded(o.revision, sizeof o.revision, "3f2c1ab");
        assert_int_equal(ref_parse(ref_text, &ref, NULL, 0), 0);
        assert_int_equal(ref_name(&ref, name, sizeof name), 0);
        Finding f = {.kind = kind};
        assert_int_equal(inventory_add(inv, &o, &ref, name, &f, kind == FINDING_PULL ? 0 : 1), 0);
}

static void test_parts_and_fields(void **state) {
        Inventory *inv = NULL;
        Attribution *at = NULL;
        assert_int_equal(inventory_new(&inv), 0);
        assert_int_equal(attribution_new(&at), 0);
        FindingWorkload w = {0};
        strcpy_bounded(w.namespace, sizeof w.namespace, "shop");
        strcpy_bounded(w.pod, sizeof w.pod, "web-0");
        strcpy_bounded(w.container, sizeof w.container, "web");
        assert_int_equal(attribution_remember(at, "k8s.io", "cid", "docker.io/library/web:latest", DA, &w), 0);

        add(inv, "web:latest", DA, false, FINDING_LATEST_TAG); /* not collecting: ignored */
        assert_false(inventory_collecting(inv));
        assert_int_equal(inventory_begin(inv), 0);
        add(inv, "web:latest", DA, false, FINDING_LATEST_TAG);
        for (int i = 1; i < 2 * INVENTORY_PART_MAX + 5; i++) {
                char ref[64];
                snprintf(ref, sizeof ref, "app%d:1.0.0", i);
                add(inv, ref, DB, true, FINDING_PULL);
        }
        Written wr = {.recs = json_array()};
        size_t total = 0, compliant = 0;
        InventoryMeta meta = {"node-a", "c1", 1764089453123456ULL};
        assert_int_equal(inventory_finish(inv, &meta, at, collect, &wr, &total, &compliant), 0);
        assert_false(inventory_collecting(inv));
        assert_int_equal(total, 2 * INVENTORY_PART_MAX + 5);
        assert_int_equal(compliant, total - 1);
        assert_int_equal(json_array_size(wr.recs), 3);

        char snap[64] = "";
        assert_non_null(json_string_value(json_object_get(json_array_get(wr.recs, 0), "snapshot")));
        strcpy_bounded(snap, sizeof snap, json_string_value(json_object_get(json_array_get(wr.recs, 0), "snapshot")));
        assert_int_equal(strlen(snap), 32);
        size_t images = 0;
        for (size_t p = 0; p < 3; p++) {
                json_t *r = json_array_get(wr.recs, p);
                assert_string_equal(json_string_value(json_object_get(r, "snapshot")), snap);
                assert_int_equal(json_integer_value(json_object_get(r, "part")), p + 1);
                assert_int_equal(json_integer_value(json_object_get(r, "parts")), 3);
                assert_int_equal(json_integer_value(json_object_get(r, "total")), total);
                assert_string_equal(json_string_value(json_object_get(r, "time")), "2025-11-25T16:50:53.123456Z");
                assert_string_equal(json_string_value(json_object_get(r, "cluster")), "c1");
                images += json_array_size(json_object_get(r, "images"));
        }
        assert_int_equal(images, total);

        json_t *web = json_array_get(json_object_get(json_array_get(wr.recs, 0), "images"), 0);
        assert_string_equal(json_string_value(json_object_get(web, "name")), "docker.io/library/web");
        assert_string_equal(json_string_value(json_object_get(web, "media_type")),
                            "application/vnd.oci.image.manifest.v1+json");
        assert_null(json_object_get(web, "revision"));
        assert_false(json_is_true(json_object_get(web, "compliant")));
        json_t *pods = json_object_get(web, "pods");
        assert_int_equal(json_array_size(pods), 1);
        assert_string_equal(json_string_value(json_object_get(json_array_get(pods, 0), "pod")), "web-0");
        assert_string_equal(json_string_value(json_object_get(json_array_get(pods, 0), "namespace")), "shop");
        assert_string_equal(json_string_value(json_object_get(json_array_get(pods, 0), "container")), "web");
        json_t *app = json_array_get(json_object_get(json_array_get(wr.recs, 2), "images"), 0);
        assert_string_equal(json_string_value(json_object_get(app, "revision")), "3f2c1ab");
        assert_true(json_is_true(json_object_get(app, "compliant")));
        assert_int_equal(json_array_size(json_object_get(app, "pods")), 0);
        json_decref(wr.recs);

        /* the next snapshot has another id; a write error stops it and is returned */
        assert_int_equal(inventory_begin(inv), 0);
        add(inv, "web:latest", DA, false, FINDING_LATEST_TAG);
        wr = (Written){.recs = json_array(), .fail_at = 1};
        assert_int_equal(inventory_finish(inv, &meta, at, collect, &wr, NULL, NULL), -ENOSPC);
        assert_int_equal(json_array_size(wr.recs), 0);
        assert_int_equal(inventory_begin(inv), 0);
        add(inv, "web:latest", DA, false, FINDING_LATEST_TAG);
        wr.fail_at = 0;
        assert_int_equal(inventory_finish(inv, &meta, at, collect, &wr, NULL, NULL), 0);
        assert_string_not_equal(json_string_value(json_object_get(json_array_get(wr.recs, 0), "snapshot")), snap);
        json_decref(wr.recs);
        attribution_free(at);
        inventory_free(inv);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parts_and_fields),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
