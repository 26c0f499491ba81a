/* Field-by-field equality of two decoded Records, every field written out by hand (not
 * from a table of fields: a field that a copy or a packed form forgets shows here). For
 * the ingest fuzz target and unit tests. */
#pragma once

#include <stdbool.h>
#include <string.h>

#include "pullwatch/record.h"

#define RECORD_EQ_STR(a, b, f) (strcmp((a)->f, (b)->f) == 0)

static inline bool record_pod_equal(const InventoryPod *a, const InventoryPod *b) {
        return RECORD_EQ_STR(a, b, namespace) && RECORD_EQ_STR(a, b, pod) && RECORD_EQ_STR(a, b, container);
}

static inline bool record_image_equal(const InventoryImage *a, const InventoryImage *b) {
        if (!(RECORD_EQ_STR(a, b, namespace) && RECORD_EQ_STR(a, b, ref) && RECORD_EQ_STR(a, b, name) &&
              RECORD_EQ_STR(a, b, tag) && RECORD_EQ_STR(a, b, digest) && RECORD_EQ_STR(a, b, media_type) &&
              RECORD_EQ_STR(a, b, revision) && a->compliant == b->compliant && a->findings == b->findings &&
              a->n_pods == b->n_pods))
                return false;
        for (size_t i = 0; i < a->n_pods; i++)
                if (!record_pod_equal(&a->pods[i], &b->pods[i]))
                        return false;
        return true;
}

static inline bool record_equal(const Record *a, const Record *b) {
        const Finding *f = &a->finding, *g = &b->finding;
        if (!(a->type == b->type && RECORD_EQ_STR(a, b, cluster) && RECORD_EQ_STR(f, g, id) && f->kind == g->kind &&
              f->severity == g->severity && f->time_usec == g->time_usec && RECORD_EQ_STR(f, g, node) &&
              RECORD_EQ_STR(f, g, namespace) && RECORD_EQ_STR(f, g, image.ref) && RECORD_EQ_STR(f, g, image.name) &&
              RECORD_EQ_STR(f, g, image.tag) && f->image.tag_implicit == g->image.tag_implicit &&
              RECORD_EQ_STR(f, g, image.digest) && RECORD_EQ_STR(f, g, image.previous_digest) &&
              RECORD_EQ_STR(f, g, image.expected_digest) && RECORD_EQ_STR(f, g, image.revision) &&
              RECORD_EQ_STR(f, g, image.media_type) && RECORD_EQ_STR(f, g, workload.namespace) &&
              RECORD_EQ_STR(f, g, workload.pod) && RECORD_EQ_STR(f, g, workload.container) &&
              RECORD_EQ_STR(f, g, workload.container_id) && RECORD_EQ_STR(f, g, message) &&
              f->found_at_start == g->found_at_start))
                return false;
        const Inventory *i = &a->inventory, *j = &b->inventory;
        if (!(RECORD_EQ_STR(i, j, snapshot) && i->total == j->total && i->compliant == j->compliant &&
              i->part == j->part && i->parts == j->parts && i->n_images == j->n_images))
                return false;
        for (size_t k = 0; k < i->n_images; k++)
                if (!record_image_equal(&i->images[k], &j->images[k]))
                        return false;
        return true;
}
