/* Workload attribution, in memory: which containers run which image digest (for the
 * pods named by a tag_moved and listed in the inventory), and which workload findings
 * were raised already (a crash-looping pod does not flood). Bounded: at most
 * ATTRIBUTION_CONTAINERS_MAX containers (beyond, pod lists are partial) and a ring of
 * ATTRIBUTION_SEEN_MAX raised keys (the oldest forgotten first). After an agent restart
 * a running pod is named again only when it restarts or a listing sees it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "pullwatch/finding.h"

#define ATTRIBUTION_CONTAINERS_MAX 16384
#define ATTRIBUTION_SEEN_MAX 4096

typedef struct Attribution Attribution;

/* *ret owned, freed with attribution_free() (accepts NULL, returns NULL). */
int attribution_new(Attribution **ret);
Attribution *attribution_free(Attribution *a);

/* Container id in namespace ns runs image (a reference, normalised here) at digest, for
 * workload w (copied). A container already known keeps the digest it was first seen
 * with: that is what it runs. Best effort: an unparsable image, the cap or -ENOMEM
 * leave it out (-EINVAL, -ENOSPC, -ENOMEM). */
int attribution_remember(Attribution *a, const char *ns, const char *id, const char *image, const char *digest,
                         const FindingWorkload *w);
void attribution_forget(Attribution *a, const char *ns, const char *id);

/* Visit the containers of namespace ns running digest — of image (any reference that
 * normalises like it) or, with image NULL, of any image. pod is "k8s-namespace/pod",
 * or the container id on a plain containerd host; both arguments are borrowed for the
 * call. Return false from visit to stop. */
typedef bool (*attribution_visit_t)(const FindingWorkload *w, const char *pod, void *userdata);
void attribution_foreach(const Attribution *a, const char *ns, const char *image, const char *digest,
                         attribution_visit_t visit, void *userdata);

/* True if key was seen before; otherwise remembers it (in the ring) and returns false. */
bool attribution_seen(Attribution *a, const char *key);
