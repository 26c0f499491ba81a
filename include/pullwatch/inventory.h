/* The node inventory: the images a listing found, with their compliance, shipped as
 * `inventory` records so the central side can compute compliance percentages, not only
 * list violations. One snapshot per listing (at start, after every reconnect and every
 * inventory_interval), split in parts of INVENTORY_PART_MAX images; every part carries
 * the snapshot's id, so a receiver can assemble parts 1..N of one snapshot. Record
 * layout: README, "Outputs". */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "pullwatch/attribution.h"
#include "pullwatch/observation.h"
#include "pullwatch/ref.h"

#define INVENTORY_PART_MAX 1000 /* images per record: keeps a record far below the spool's 1 MiB */

typedef struct Inventory Inventory;

/* *ret owned, freed with inventory_free() (accepts NULL, returns NULL). */
int inventory_new(Inventory **ret);
Inventory *inventory_free(Inventory *inv);

/* Start collecting a snapshot (a new snapshot id); nothing happens while one is
 * being collected. */
int inventory_begin(Inventory *inv);
bool inventory_collecting(const Inventory *inv);

/* One image record of the listing, its parsed reference, repository name and findings
 * (all borrowed). Ignored unless collecting. */
int inventory_add(Inventory *inv, const Observation *o, const Ref *ref, const char *name, const Finding *fs,
                  size_t n);

typedef struct InventoryMeta {
        const char *node, *cluster; /* cluster: "" or NULL = none */
        uint64_t time_usec;
} InventoryMeta;

/* Each record's JSON text (borrowed for the call); < 0 stops. */
typedef int (*inventory_write_t)(const char *json, size_t len, void *userdata);

/* End the snapshot: encode it as records (each image with the pods attribution knows
 * are using its digest) and hand them to write() in order. *ret_total and
 * *ret_compliant (optional) count the images. Returns write()'s error or -ENOMEM; the
 * snapshot is over either way. */
int inventory_finish(Inventory *inv, const InventoryMeta *meta, const Attribution *attribution,
                     inventory_write_t write, void *userdata, size_t *ret_total, size_t *ret_compliant);
