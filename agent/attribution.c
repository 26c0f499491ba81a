/* See include/pullwatch/attribution.h. */
#include "pullwatch/attribution.h"

#include "pullwatch/ref.h"
#include "pullwatch/util.h"

/* A container known to run an image. */
typedef struct Container {
        char *ns, *id, *image_key; /* image_key: the normalised reference */
        char digest[PW_DIGEST_MAX];
        char *pod;                 /* "k8sns/pod" or the container id */
        FindingWorkload *workload; /* full attribution for the finding */
} Container;

struct Attribution {
        Container *containers;
        size_t n_containers, cap_containers;
        uint64_t seen[ATTRIBUTION_SEEN_MAX]; /* FNV-1a of the key; 0 = empty */
        size_t seen_next;
};

int attribution_new(Attribution **ret) {
        Attribution *a = calloc(1, sizeof *a);
        if (!a)
                return -ENOMEM;
        *ret = a;
        return 0;
}

static void container_clear(Container *c) {
        free(c->ns);
        free(c->id);
        free(c->image_key);
        free(c->pod);
        free(c->workload);
}

Attribution *attribution_free(Attribution *a) {
        if (!a)
                return NULL;
        for (size_t i = 0; i < a->n_containers; i++)
                container_clear(&a->containers[i]);
        free(a->containers);
        free(a);
        return NULL;
}

static int normalise(const char *ref, char *buf, size_t size) {
        Ref r;
        int k = ref_parse(ref, &r, NULL, 0);
        return k < 0 ? k : ref_format(&r, buf, size);
}

static Container *container_find(Attribution *a, const char *ns, const char *id) {
        for (size_t i = 0; i < a->n_containers; i++)
                if (streq_ptr(a->containers[i].ns, ns) && streq_ptr(a->containers[i].id, id))
                        return &a->containers[i];
        return NULL;
}

int attribution_remember(Attribution *a, const char *ns, const char *id, const char *image, const char *digest,
                         const FindingWorkload *w) {
        char key[PW_REF_MAX];
        if (container_find(a, ns, id))
                return 0; /* keep the digest it was first seen with: that is what it runs */
        if (normalise(image, key, sizeof key) < 0)
                return -EINVAL;
        if (a->n_containers >= ATTRIBUTION_CONTAINERS_MAX)
                return -ENOSPC; /* the pod list of a tag_moved is then partial */
        if (greedy_realloc((void **) &a->containers, &a->cap_containers, a->n_containers + 1, sizeof(Container), 64) <
            0)
                return -ENOMEM;
        Container c = {0};
        char pod[2 * PW_K8S_NAME_MAX + 2];
        if (w->pod[0])
                snprintf(pod, sizeof pod, "%s/%s", w->namespace, w->pod);
        else
                snprintf(pod, sizeof pod, "%s", id);
        c.ns = strdup(ns);
        c.id = strdup(id);
        c.image_key = strdup(key);
        c.pod = strdup(pod);
        c.workload = malloc(sizeof *c.workload);
        if (!c.ns || !c.id || !c.image_key || !c.pod || !c.workload) {
                container_clear(&c);
                return -ENOMEM;
        }
        *c.workload = *w;
        strcpy_bounded(c.digest, sizeof c.digest, digest);
        a->containers[a->n_containers++] = c;
        return 0;
}

void attribution_forget(Attribution *a, const char *ns, const char *id) {
        Container *c = container_find(a, ns, id);
        if (!c)
                return;
        container_clear(c);
        *c = a->containers[--a->n_containers];
}

void attribution_foreach(const Attribution *a, const char *ns, const char *image, const char *digest,
                         attribution_visit_t visit, void *userdata) {
        char key[PW_REF_MAX];
        if (image && normalise(image, key, sizeof key) < 0)
                return;
        for (size_t i = 0; i < a->n_containers; i++) {
                const Container *c = &a->containers[i];
                if (!streq_ptr(c->ns, ns) || !streq_ptr(c->digest, digest) || (image && !streq_ptr(c->image_key, key)))
                        continue;
                if (!visit(c->workload, c->pod, userdata))
                        return;
        }
}

static uint64_t fnv1a(const char *s) {
        uint64_t h = 1469598103934665603ULL;
        for (; *s; s++)
                h = (h ^ (uint8_t) *s) * 1099511628211ULL;
        return h ? h : 1;
}

bool attribution_seen(Attribution *a, const char *key) {
        uint64_t h = fnv1a(key);
        for (size_t i = 0; i < ATTRIBUTION_SEEN_MAX; i++)
                if (a->seen[i] == h)
                        return true;
        a->seen[a->seen_next] = h;
        a->seen_next = (a->seen_next + 1) % ATTRIBUTION_SEEN_MAX;
        return false;
}
