/* See include/pullwatch/inventory.h. */
#include "pullwatch/inventory.h"

#include <jansson.h>
#include <systemd/sd-id128.h>

#include "pullwatch/timefmt.h"
#include "pullwatch/util.h"

struct Inventory {
        json_t *images; /* NULL when not collecting */
        char snapshot[SD_ID128_STRING_MAX];
};

int inventory_new(Inventory **ret) {
        Inventory *inv = calloc(1, sizeof *inv);
        if (!inv)
                return -ENOMEM;
        *ret = inv;
        return 0;
}

Inventory *inventory_free(Inventory *inv) {
        if (!inv)
                return NULL;
        json_decref(inv->images);
        free(inv);
        return NULL;
}

bool inventory_collecting(const Inventory *inv) {
        return inv && inv->images;
}

int inventory_begin(Inventory *inv) {
        if (inv->images)
                return 0;
        sd_id128_t id;
        int r = sd_id128_randomize(&id);
        if (r < 0)
                return r;
        sd_id128_to_string(id, inv->snapshot);
        inv->images = json_array();
        return inv->images ? 0 : -ENOMEM;
}

int inventory_add(Inventory *inv, const Observation *o, const Ref *ref, const char *name, const Finding *fs,
                  size_t n) {
        if (!inventory_collecting(inv))
                return 0;
        json_t *kinds = json_array();
        unsigned mask = 0;
        for (size_t i = 0; kinds && i < n; i++) {
                json_array_append_new(kinds, json_string(finding_kind_to_string(fs[i].kind)));
                mask |= FINDING_KIND_BIT(fs[i].kind);
        }
        json_t *row = json_pack("{s:s, s:s, s:s, s:s, s:b, s:o, s:s, s:s}", "namespace", o->namespace, "ref", o->ref,
                                "tag", ref->tag, "digest", o->digest, "compliant", finding_kinds_compliant(mask),
                                "findings", kinds, "name", name, "media_type", o->media_type);
        if (row && o->has_revision)
                json_object_set_new(row, "revision", json_string(o->revision));
        if (!row || json_array_append_new(inv->images, row) < 0)
                return -ENOMEM;
        return 0;
}

static bool pod_visit(const FindingWorkload *w, const char *pod, void *userdata) {
        json_t *pods = userdata;
        json_t *p = json_pack("{s:s, s:s, s:s}", "namespace", w->namespace, "pod", w->pod, "container", w->container);
        if (p && !w->pod[0])
                json_object_set_new(p, "container_id", json_string(w->container_id));
        return json_array_append_new(pods, p) >= 0;
}

/* Each image gets the pods known to run its digest now, at the end of the listing: the
 * containers listing answers in parallel with the images. */
static int add_pods(json_t *images, const Attribution *attribution) {
        size_t i;
        json_t *row;
        json_array_foreach(images, i, row) {
                json_t *pods = json_array();
                if (!pods || json_object_set_new(row, "pods", pods) < 0)
                        return -ENOMEM;
                attribution_foreach(attribution, json_string_value(json_object_get(row, "namespace")), NULL,
                                    json_string_value(json_object_get(row, "digest")), pod_visit, pods);
        }
        return 0;
}

static json_t *encode_part(const Inventory *inv, const InventoryMeta *meta, const char *ts, json_t *all, size_t p,
                           size_t parts, size_t compliant) {
        size_t total = json_array_size(all);
        json_t *images = json_array();
        for (size_t k = p * INVENTORY_PART_MAX; images && k < total && k < (p + 1) * INVENTORY_PART_MAX; k++)
                json_array_append(images, json_array_get(all, k));
        sd_id128_t id;
        char ids[SD_ID128_STRING_MAX] = "";
        if (sd_id128_randomize(&id) >= 0)
                sd_id128_to_string(id, ids);
        json_t *rec = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:o}", "schema",
                                PW_SCHEMA_VERSION, "id", ids, "kind", "inventory", "severity", "info", "time", ts,
                                "node", meta->node, "total", (json_int_t) total, "compliant", (json_int_t) compliant,
                                "part", (json_int_t) p + 1, "parts", (json_int_t) parts, "snapshot", inv->snapshot,
                                "images", images);
        if (rec && !isempty(meta->cluster))
                json_object_set_new(rec, "cluster", json_string(meta->cluster));
        return rec;
}

int inventory_finish(Inventory *inv, const InventoryMeta *meta, const Attribution *attribution,
                     inventory_write_t write, void *userdata, size_t *ret_total, size_t *ret_compliant) {
        _cleanup_(json_decrefp) json_t *all = TAKE_PTR(inv->images);
        size_t total = json_array_size(all), compliant = 0, i;
        json_t *row;
        int r = 0;
        json_array_foreach(all, i, row) compliant += json_is_true(json_object_get(row, "compliant"));
        if (ret_total)
                *ret_total = total;
        if (ret_compliant)
                *ret_compliant = compliant;
        if (!all)
                return 0;
        if (add_pods(all, attribution) < 0)
                return -ENOMEM;
        char ts[TIMEFMT_MAX] = "";
        (void) timefmt_utc(meta->time_usec, TIMEFMT_RFC3339_USEC, ts, sizeof ts);
        size_t parts = total == 0 ? 1 : (total + INVENTORY_PART_MAX - 1) / INVENTORY_PART_MAX;
        for (size_t p = 0; r >= 0 && p < parts; p++) {
                json_t *rec = encode_part(inv, meta, ts, all, p, parts, compliant);
                _cleanup_free_ char *text = rec ? json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
                json_decref(rec);
                r = text ? write(text, strlen(text), userdata) : -ENOMEM;
        }
        return r;
}
