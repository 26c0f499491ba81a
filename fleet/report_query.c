/* Filling the report model from the store: read-only, parameterised queries through
 * store_query() over the tables store.h documents. The SQL is the same on SQLite and
 * PostgreSQL except for one function name (instr/strpos); optional filters are written
 * as ($n = '' OR col = $n) so no SQL is ever assembled from input.
 *
 * The heavy work stays in the database: the 2M-row node_images table is aggregated by
 * GROUP BY (cluster, k8s_namespaces) before a row reaches C; C then splits the
 * comma-separated namespace lists (which SQL cannot do portably) over those few groups.
 *
 * No index of node_images or workload_history has a global order (schema 8, store.c
 * migration_8): what the report reads by reference or image name it reads node by node,
 * `nodes` joined to each node's range of the primary key (cluster, node, …), the name
 * filtered. The (cluster, node, name) indexes that made it one short range per node went
 * for the records path's writes (schema 11 on SQLite, 12 on PostgreSQL: store.c
 * migration_11, migration_12); PostgreSQL plans these joins as a hash join over a
 * parallel scan instead. */
#include <inttypes.h>
#include <jansson.h>

#include "pullwatch/report.h"
#include "pullwatch/store.h"
#include "pullwatch/util.h"

#define REPORT_PG_WORK_MEM "64MB"  /* per hash or sort, for this session only */
#define PODS_JSON_MAX (256 * 1024) /* one node_images.pods value; beyond it the pods are not listed */

typedef struct Q {
        Store *store;
        const ReportFilter *f;
        ReportModel *m;
        char *err;
        size_t errlen;
        uint64_t now, since;
        char now_s[24], since_s[24];
        char ns_needle[REPORT_FILTER_MAX + 3]; /* ",ns," */
} Q;

static uint64_t u64(const char *s) {
        if (!s)
                return 0;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        /* SUM() on PostgreSQL is numeric: "12" still; a float from a driver "12.0" ends at '.' */
        if (errno || end == s)
                return 0;
        return (uint64_t) v;
}

static char *xstrdup(const char *s) {
        return strdup(s ? s : "");
}

static const char *opt(const char *s) {
        return s ? s : "";
}

#define SQL_MAX 2048

/* The shared WHERE of node_images queries: $1 cluster, $2 ",ns," (or ""), then the query's
 * own; cluster and namespaces name the columns (qualified in a join). The namespace filter:
 * k8s_namespaces is "a,b,c", and ',' || list || ',' holds ",ns,". */
static void where_images_of(const Q *q, char *buf, size_t size, const char *cluster, const char *namespaces) {
        snprintf(buf, size, "($1 = '' OR %s = $1) AND ($2 = '' OR %s(',' || %s || ',', $2) > 0)", cluster,
                 store_engine(q->store) == STORE_POSTGRESQL ? "strpos" : "instr", namespaces);
}

static void where_images(const Q *q, char *buf, size_t size) {
        where_images_of(q, buf, size, "cluster", "k8s_namespaces");
}

/* The same for a join of nodes n (the cluster) and a node_images alias i (the namespaces). */
static void where_images_joined(const Q *q, char *buf, size_t size) {
        where_images_of(q, buf, size, "n.cluster", "i.k8s_namespaces");
}

static int run(Q *q, const char *sql, size_t n, const char *const *params, store_row_t row, void *userdata) {
        return store_query(q->store, sql, n, params, row, userdata, q->err, q->errlen);
}

/* ---- headline: nodes ---- */

static int row_node(void *userdata, size_t ncols, const char *const *v) {
        Q *q = userdata;
        if (ncols < 3)
                return -EPROTO;
        q->m->nodes++;
        uint64_t inv = u64(v[2]);
        uint64_t horizon = 2 * q->f->inventory_interval_usec;
        if (inv == 0 || inv + horizon < q->now) {
                q->m->nodes_stale++;
                char name[2 * 256 + 2];
                snprintf(name, sizeof name, "%s/%s", opt(v[0]), opt(v[1]));
                return report_strings_add(&q->m->stale_nodes, name);
        }
        return 0;
}

static int query_nodes(Q *q) {
        const char *p[] = {opt(q->f->cluster)};
        return run(q,
                   "SELECT cluster, node, last_inventory_usec FROM nodes WHERE ($1 = '' OR cluster = $1) "
                   "ORDER BY cluster, node",
                   1, p, row_node, q);
}

/* ---- the one scan of node_images: compliance, offenders, which tags diverge ---- */

/* (cluster, namespace) → index into m->compliance: an open-addressing table of indexes + 1,
 * so a fleet of thousands of namespaces does not make every row a linear search. */
typedef struct CompIndex {
        size_t *slots;
        size_t size; /* a power of two, or 0 */
} CompIndex;

static uint64_t hash2(const char *a, const char *b) {
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */
        for (const char *p = a; *p; p++)
                h = (h ^ (unsigned char) *p) * 1099511628211ULL;
        h = (h ^ 0x1f) * 1099511628211ULL;
        for (const char *p = b; *p; p++)
                h = (h ^ (unsigned char) *p) * 1099511628211ULL;
        return h;
}

static int comp_index_put(CompIndex *ix, const ReportModel *m, size_t i) {
        if ((m->n_compliance + 1) * 2 > ix->size) {
                size_t size = ix->size ? ix->size * 2 : 64;
                size_t *slots = calloc(size, sizeof *slots);
                if (!slots)
                        return -ENOMEM;
                for (size_t k = 0; k < m->n_compliance; k++) {
                        if (k == i)
                                continue;
                        const ReportCompliance *c = &m->compliance[k];
                        size_t h = (size_t) hash2(c->cluster, c->k8s_namespace) & (size - 1);
                        while (slots[h])
                                h = (h + 1) & (size - 1);
                        slots[h] = k + 1;
                }
                free(ix->slots);
                ix->slots = slots;
                ix->size = size;
        }
        const ReportCompliance *c = &m->compliance[i];
        size_t h = (size_t) hash2(c->cluster, c->k8s_namespace) & (ix->size - 1);
        while (ix->slots[h])
                h = (h + 1) & (ix->size - 1);
        ix->slots[h] = i + 1;
        return 0;
}

/* A tag seen at a digest, or an image name with its findings: collected per group row,
 * then sorted and merged (groups are few: one per cluster, namespace set and reference). */
typedef struct Pair {
        char *key;   /* ref, or image name */
        char *value; /* digest, or NULL */
        char *name;  /* a ref's image name, or NULL */
        uint64_t findings, images;
} Pair;

typedef struct PairList {
        Pair *v;
        size_t n, alloc;
} PairList;

static void pairs_done(PairList *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->v[i].key);
                free(l->v[i].value);
                free(l->v[i].name);
        }
        free(l->v);
        *l = (PairList) {0};
}

static int pairs_add(PairList *l, const char *key, const char *value, const char *name, uint64_t findings,
                     uint64_t images) {
        /* SQLite hands groups out in key order: merge with the last one when it matches */
        if (l->n > 0 && streq_ptr(l->v[l->n - 1].key, key) && streq_ptr(l->v[l->n - 1].value, value) &&
            streq_ptr(l->v[l->n - 1].name, name)) {
                l->v[l->n - 1].findings += findings;
                l->v[l->n - 1].images += images;
                return 0;
        }
        Pair *p;
        if (report_array_grow((void **) &l->v, &l->alloc, &l->n, sizeof *l->v, (void **) &p) < 0)
                return -ENOMEM;
        p->key = strdup(key);
        p->value = value ? strdup(value) : NULL;
        p->name = name ? strdup(name) : NULL;
        p->findings = findings;
        p->images = images;
        if (!p->key || (value && !p->value) || (name && !p->name))
                return -ENOMEM;
        return 0;
}

static int cmp_pair(const void *a, const void *b) {
        const Pair *x = a, *y = b;
        int c = strcmp(x->key, y->key);
        if (!c && x->value && y->value)
                c = strcmp(x->value, y->value);
        if (!c && x->name && y->name)
                c = strcmp(x->name, y->name);
        return c;
}

typedef struct Scan {
        Q *q;
        CompIndex ix;
        PairList tags;  /* (ref, digest) of tagged references */
        PairList names; /* (image name, findings) */
} Scan;

static ReportCompliance *compliance_get(Scan *sc, const char *cluster, const char *ns) {
        ReportModel *m = sc->q->m;
        if (sc->ix.size) {
                size_t h = (size_t) hash2(cluster, ns) & (sc->ix.size - 1);
                for (; sc->ix.slots[h]; h = (h + 1) & (sc->ix.size - 1)) {
                        ReportCompliance *c = &m->compliance[sc->ix.slots[h] - 1];
                        if (streq_ptr(c->cluster, cluster) && streq_ptr(c->k8s_namespace, ns))
                                return c;
                }
        }
        ReportCompliance *c;
        if (report_model_append(m, compliance, &c) < 0)
                return NULL;
        c->cluster = xstrdup(cluster);
        c->k8s_namespace = xstrdup(ns);
        if (!c->cluster || !c->k8s_namespace || comp_index_put(&sc->ix, m, m->n_compliance - 1) < 0)
                return NULL;
        return c;
}

static void count_add(ReportCount *a, const ReportCount *b) {
        a->images += b->images;
        a->in_use += b->in_use;
        a->pinned += b->pinned;
        a->latest += b->latest;
        a->revision_verified += b->revision_verified;
        a->compliant += b->compliant;
        a->findings += b->findings;
}

static int row_scan(void *userdata, size_t ncols, const char *const *v) {
        Scan *sc = userdata;
        Q *q = sc->q;
        if (ncols < 13)
                return -EPROTO;
        /* columns: cluster k8s_namespaces ref name tag digest, then the counts */
        ReportCount c = {
                .images = u64(v[6]), .in_use = u64(v[7]), .pinned = u64(v[8]), .latest = u64(v[9]),
                .revision_verified = u64(v[10]), .compliant = u64(v[11]), .findings = u64(v[12]),
        };
        const char *cluster = opt(v[0]);
        ReportCompliance *all = compliance_get(sc, cluster, "");
        if (!all)
                return -ENOMEM;
        count_add(&all->count, &c);
        count_add(&q->m->total, &c);
        /* k8s_namespaces "a,b": the images count once in each namespace that uses them */
        const char *s = opt(v[1]);
        while (*s) {
                const char *e = strchrnul(s, ',');
                char ns[REPORT_FILTER_MAX];
                if ((size_t) (e - s) < sizeof ns && e > s) {
                        memcpy(ns, s, (size_t) (e - s));
                        ns[e - s] = 0;
                        if (!q->f->k8s_namespace || streq_ptr(ns, q->f->k8s_namespace)) {
                                ReportCompliance *c2 = compliance_get(sc, cluster, ns);
                                if (!c2)
                                        return -ENOMEM;
                                count_add(&c2->count, &c);
                        }
                }
                s = *e ? e + 1 : e;
        }
        int r = 0;
        /* a tag, not a digest reference, can diverge */
        if (!isempty(v[4]))
                r = pairs_add(&sc->tags, opt(v[2]), opt(v[5]), opt(v[3]), 0, 0);
        if (r >= 0 && c.findings > 0)
                r = pairs_add(&sc->names, opt(v[3]), NULL, NULL, c.findings, c.images);
        return r;
}

/* number of kinds in the comma-separated findings column, in SQL both engines speak */
#define SQL_FINDINGS_COUNT \
        "CASE WHEN findings = '' THEN 0 ELSE LENGTH(findings) - LENGTH(REPLACE(findings, ',', '')) + 1 END"

static int top_offenders(ReportModel *m) {
        /* namespaces: from the compliance rows */
        for (size_t i = 0; i < m->n_compliance; i++) {
                const ReportCompliance *c = &m->compliance[i];
                if (isempty(c->k8s_namespace) || c->count.findings == 0)
                        continue;
                ReportOffender *o = NULL;
                for (size_t j = 0; j < m->n_offender_namespaces; j++)
                        if (streq_ptr(m->offender_namespaces[j].name, c->k8s_namespace))
                                o = &m->offender_namespaces[j];
                if (!o) {
                        if (report_model_append(m, offender_namespaces, &o) < 0)
                                return -ENOMEM;
                        if (!(o->name = xstrdup(c->k8s_namespace)))
                                return -ENOMEM;
                }
                o->findings += c->count.findings;
                o->images += c->count.images;
        }
        report_model_sort(m);
        if (m->n_offender_namespaces > REPORT_OFFENDERS_MAX) {
                for (size_t j = REPORT_OFFENDERS_MAX; j < m->n_offender_namespaces; j++)
                        free(m->offender_namespaces[j].name);
                m->n_offender_namespaces = REPORT_OFFENDERS_MAX;
        }
        if (m->n_offender_images > REPORT_OFFENDERS_MAX) {
                for (size_t j = REPORT_OFFENDERS_MAX; j < m->n_offender_images; j++)
                        free(m->offender_images[j].name);
                m->n_offender_images = REPORT_OFFENDERS_MAX;
        }
        return 0;
}

/* pods: node_images.pods, a JSON array of {"namespace","pod","container"} */
static int add_pods(ReportStrings *l, const char *pods) {
        if (isempty(pods) || streq_ptr(pods, "[]") || strlen(pods) > PODS_JSON_MAX)
                return 0;
        json_t *a = json_loads(pods, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_array(a)) {
                json_decref(a);
                return 0; /* a malformed list names no pod; the image still counts */
        }
        size_t i;
        json_t *o;
        int r = 0;
        json_array_foreach(a, i, o) {
                const char *ns = json_string_value(json_object_get(o, "namespace"));
                const char *pod = json_string_value(json_object_get(o, "pod"));
                if (isempty(pod))
                        continue;
                char name[2 * 256 + 2];
                snprintf(name, sizeof name, "%s/%s", opt(ns), pod);
                r = report_strings_add_unique(l, name);
                if (r < 0)
                        break;
        }
        json_decref(a);
        return r;
}

static bool is_index(const char *media_type) {
        return media_type && (strstr(media_type, "image.index") || strstr(media_type, "manifest.list"));
}

/* The divergent tags found by the scan, sorted by ref (strcmp); at: 1 + the index of the
 * tag's entry in m->divergence, 0 until a row of it came. */
typedef struct DivTag {
        const char *ref; /* borrowed from the scan's pairs */
        size_t at;
} DivTag;

typedef struct DivCtx {
        Q *q;
        DivTag *tags;
        size_t n;
} DivCtx;

/* The index of ref among the tags asked for, c->n when it is none of them. */
static size_t div_tag_find(const DivCtx *c, const char *ref) {
        size_t lo = 0, hi = c->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(c->tags[mid].ref, ref) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < c->n && streq_ptr(c->tags[lo].ref, ref) ? lo : c->n;
}

/* A row of a divergent tag: ref digest media_type cluster node pods, node by node in
 * (cluster, node) order, so a digest's media type is its first node's, as when the rows
 * came by tag; tags and digests in any order. */
static int row_divergence(void *userdata, size_t ncols, const char *const *v) {
        DivCtx *c = userdata;
        ReportModel *m = c->q->m;
        if (ncols < 6)
                return -EPROTO;
        const char *ref = opt(v[0]);
        size_t lo = div_tag_find(c, ref);
        if (lo == c->n)
                return 0; /* not a tag asked for */
        ReportDivergence *d;
        if (!c->tags[lo].at) {
                if (report_model_append(m, divergence, &d) < 0 || !(d->ref = xstrdup(ref)))
                        return -ENOMEM;
                c->tags[lo].at = m->n_divergence;
        } else
                d = &m->divergence[c->tags[lo].at - 1];
        ReportDigest *g = NULL;
        for (size_t j = d->n_digests; j > 0 && !g; j--) /* digests per tag are few */
                if (streq_ptr(d->digests[j - 1].digest, opt(v[1])))
                        g = &d->digests[j - 1];
        if (!g) {
                size_t alloc = d->n_digests; /* exact size */
                if (report_array_grow((void **) &d->digests, &alloc, &d->n_digests, sizeof *d->digests,
                                      (void **) &g) < 0)
                        return -ENOMEM;
                if (!(g->digest = xstrdup(v[1])) || !(g->media_type = xstrdup(v[2])))
                        return -ENOMEM;
                /* an index on one node and a manifest on another may be one multi-arch image */
                for (size_t j = 0; j + 1 < d->n_digests; j++)
                        if (is_index(d->digests[j].media_type) != is_index(g->media_type))
                                d->index_relation_unknown = true;
        }
        /* nodes and pods come unsorted: report_model_sort() makes them unique */
        int r = report_strings_add_unique(&g->nodes, opt(v[4]));
        if (r >= 0)
                r = report_strings_add_unique(&g->clusters, opt(v[3]));
        if (r >= 0)
                r = add_pods(&g->pods, v[5]);
        return r;
}

/* What a look-up of one (cluster, node, name) range cost, in rows of a walk through every
 * node's whole range, while that index existed: measured ~1.2 (SQLite, 1,000 nodes × 200
 * images, 970 divergent tags: 970,000 look-ups 0.49 s, the 200,000 rows 0.085 s; 100
 * tags: 0.036 s either way); 2 leaned to the walk. Since schemas 11/12 both plans read
 * each node's whole range and the name only filters (SQLite), or are one hash join
 * (PostgreSQL): the choice no longer changes what is read. */
#define SEEK_ROWS 2

/* The nodes and pods of the divergent tags (refs and their image names as JSON arrays of
 * strings), node by node: nodes joined to node_images by (cluster, node) and the names —
 * or, when there are so many names that a look-up per name would cost more than reading
 * the table (nodes × names × SEEK_ROWS > rows), every node's whole range once, keeping
 * the rows of the tags. */
static int query_divergent_tags(Q *q, DivCtx *c, const char *refs, const char *names, size_t n_names) {
        bool pg = store_engine(q->store) == STORE_POSTGRESQL;
        /* a JSON array of strings as a set: the one place the two engines' SQL differ here.
         * PostgreSQL plans the divergent tags as one hash join over the table (1.8-2.1 s
         * for 5 tags on 10,000 nodes x 200 images, load 7); made to go node by node (name =
         * ANY(text[])) it took 3.3 s, so its planner is left to choose. */
        const char *in_refs = pg ? "(SELECT jsonb_array_elements_text(CAST($3 AS jsonb)))"
                                 : "(SELECT value FROM json_each($3))";
        const char *in_names = pg ? "(SELECT jsonb_array_elements_text(CAST($4 AS jsonb)))"
                                  : "(SELECT value FROM json_each($4))";
        char where[512], sql[SQL_MAX];
        where_images_joined(q, where, sizeof where);
        bool by_name = (double) q->m->nodes * (double) n_names * SEEK_ROWS <= (double) q->m->total.images;
        snprintf(sql, sizeof sql,
                 "SELECT i.ref, i.digest, i.media_type, i.cluster, i.node, i.pods FROM nodes n CROSS JOIN node_images i "
                 "WHERE i.cluster = n.cluster AND i.node = n.node%s%s AND i.ref IN %s AND %s "
                 "ORDER BY n.cluster, n.node",
                 by_name ? " AND i.name IN " : "", by_name ? in_names : "", in_refs, where);
        const char *p[] = {opt(q->f->cluster), q->ns_needle, refs, names};
        return run(q, sql, by_name ? 4 : 3, p, row_divergence, c); /* PostgreSQL: no unused parameter */
}

/* A pod a record named since its node's last inventory: ref digest k8s_namespace pod. Its
 * (tag, digest) came from node_images by the same filter (query_divergent_tags), so both
 * are there; a row that is not is skipped. */
static int row_divergence_pod(void *userdata, size_t ncols, const char *const *v) {
        DivCtx *c = userdata;
        if (ncols < 4)
                return -EPROTO;
        size_t t = div_tag_find(c, opt(v[0]));
        if (t == c->n || !c->tags[t].at || isempty(v[3]))
                return 0;
        ReportDivergence *d = &c->q->m->divergence[c->tags[t].at - 1];
        for (size_t j = 0; j < d->n_digests; j++)
                if (streq_ptr(d->digests[j].digest, opt(v[1]))) {
                        char name[2 * 256 + 2];
                        snprintf(name, sizeof name, "%s/%s", opt(v[2]), v[3]);
                        return report_strings_add_unique(&d->digests[j].pods, name);
                }
        return 0;
}

/* The pods of the divergent tags that records named since their node's last complete
 * inventory (a finding's workload; workload_history rows seen after it): node_images.pods
 * holds only what that inventory named, so a pod started since showed as none until the
 * next one. A pod counts on the node's row of the tag at the same digest (a tag_moved's
 * pod runs the previous digest: not the row's), under the same cluster and namespace
 * filter as the row. SQLite: one pass over workload_history in table order, the tags'
 * references tested first, then the node's row for its last inventory — led by nodes, it
 * read the table through its primary key, a row fetch per entry (2M-image bench, 1M pods:
 * 406 → 167 ms); PostgreSQL's planner orders the join itself. The seen-since test keeps
 * the rows named by an inventory out (they are in pods already, and on PostgreSQL their
 * last_seen_usec is not moved on). */
static int query_divergent_pods(Q *q, DivCtx *c, const char *refs) {
        bool pg = store_engine(q->store) == STORE_POSTGRESQL;
        const char *in_refs = pg ? "(SELECT jsonb_array_elements_text(CAST($3 AS jsonb)))"
                                 : "(SELECT value FROM json_each($3))";
        char where[512], sql[SQL_MAX];
        where_images_joined(q, where, sizeof where);
        snprintf(sql, sizeof sql,
                 "SELECT i.ref, i.digest, w.k8s_namespace, w.pod FROM workload_history w CROSS JOIN nodes n "
                 "CROSS JOIN node_images i WHERE w.ref IN %s AND w.pod <> '' AND n.cluster = w.cluster AND "
                 "n.node = w.node AND w.last_seen_usec > n.last_inventory_usec AND i.cluster = w.cluster AND "
                 "i.node = w.node AND i.ref = w.ref AND i.digest = w.digest AND %s",
                 in_refs, where);
        const char *p[] = {opt(q->f->cluster), q->ns_needle, refs};
        return run(q, sql, 3, p, row_divergence_pod, c);
}

/* The divergent tags of the scan's (ref, digest, name) pairs (sorted): their nodes and pods. */
static int divergence(Q *q, const PairList *tags) {
        _cleanup_free_ DivTag *div = NULL;
        size_t n_div = 0, alloc_div = 0, n_names = 0;
        /* json_string() refuses text that is not UTF-8 (then the report fails, "out of
         * memory"): the collector stores none (records are checked), only a database
         * written by hand can hold such a reference */
        json_t *refs = json_array(), *names = json_array();
        int r = refs && names ? 0 : -ENOMEM;
        for (size_t i = 0; r >= 0 && i < tags->n;) {
                size_t j = i + 1, digests = 1;
                for (; j < tags->n && streq_ptr(tags->v[j].key, tags->v[i].key); j++)
                        if (!streq_ptr(tags->v[j].value, tags->v[j - 1].value))
                                digests++;
                if (digests > 1) {
                        DivTag *t;
                        if (report_array_grow((void **) &div, &alloc_div, &n_div, sizeof *div, (void **) &t) < 0 ||
                            json_array_append_new(refs, json_string(tags->v[i].key)) < 0) {
                                r = -ENOMEM;
                                break;
                        }
                        t->ref = tags->v[i].key;
                        /* the ref's image names (one, unless rows disagree); a name of several
                         * divergent tags is listed once per tag: the set is the same */
                        for (size_t k = i; k < j; k++) {
                                bool seen = false;
                                for (size_t l = i; l < k && !seen; l++)
                                        seen = streq_ptr(tags->v[l].name, tags->v[k].name);
                                if (seen)
                                        continue;
                                if (json_array_append_new(names, json_string(tags->v[k].name)) < 0) {
                                        r = -ENOMEM;
                                        break;
                                }
                                n_names++;
                        }
                }
                i = j;
        }
        _cleanup_free_ char *refs_json = NULL, *names_json = NULL;
        if (r >= 0 && n_div > 0) {
                refs_json = json_dumps(refs, JSON_COMPACT);
                names_json = json_dumps(names, JSON_COMPACT);
                if (!refs_json || !names_json)
                        r = -ENOMEM;
        }
        json_decref(refs);
        json_decref(names);
        if (r >= 0 && n_div > 0) {
                DivCtx c = {q, div, n_div};
                r = query_divergent_tags(q, &c, refs_json, names_json, n_names);
                if (r >= 0)
                        r = query_divergent_pods(q, &c, refs_json);
        }
        return r;
}

/* One pass over node_images, grouped in the database to a row per (cluster, namespace
 * set, reference, digest): compliance per cluster and namespace, the offenders, and which
 * tags hold more than one digest. Then the nodes and pods of those tags only, node by
 * node (query_divergent_tags). */
static int query_images(Q *q) {
        char where[512], sql[SQL_MAX];
        where_images(q, where, sizeof where);
        snprintf(sql, sizeof sql,
                 "SELECT cluster, k8s_namespaces, ref, name, tag, digest, COUNT(*), "
                 "SUM(CASE WHEN pods NOT IN ('', '[]') THEN 1 ELSE 0 END), SUM(pinned), SUM(latest), "
                 "SUM(revision_verified), SUM(compliant), SUM(" SQL_FINDINGS_COUNT ") "
                 "FROM node_images WHERE %s GROUP BY cluster, k8s_namespaces, ref, name, tag, digest",
                 where);
        const char *p[] = {opt(q->f->cluster), q->ns_needle};
        Scan sc = {.q = q};
        int r = run(q, sql, 2, p, row_scan, &sc);
        free(sc.ix.slots);

        /* image names by findings */
        if (r >= 0 && sc.names.n > 1)
                qsort(sc.names.v, sc.names.n, sizeof *sc.names.v, cmp_pair);
        for (size_t i = 0; r >= 0 && i < sc.names.n;) {
                size_t j = i;
                ReportOffender *o;
                if (report_model_append(q->m, offender_images, &o) < 0 || !(o->name = xstrdup(sc.names.v[i].key))) {
                        r = -ENOMEM;
                        break;
                }
                for (; j < sc.names.n && streq_ptr(sc.names.v[j].key, sc.names.v[i].key); j++) {
                        o->findings += sc.names.v[j].findings;
                        o->images += sc.names.v[j].images;
                }
                i = j;
        }
        pairs_done(&sc.names);
        if (r >= 0)
                r = top_offenders(q->m);

        /* tags with more than one digest */
        if (r >= 0 && sc.tags.n > 1)
                qsort(sc.tags.v, sc.tags.n, sizeof *sc.tags.v, cmp_pair);
        if (r >= 0)
                r = divergence(q, &sc.tags);
        pairs_done(&sc.tags);
        return r;
}

/* ---- moves and critical findings (records of the period) ---- */

typedef struct EventCtx {
        Q *q;
        bool move;
} EventCtx;

static int row_event(void *userdata, size_t ncols, const char *const *v) {
        EventCtx *c = userdata;
        ReportModel *m = c->q->m;
        if (ncols < 12)
                return -EPROTO;
        /* columns: kind ref digest previous expected revision time cluster node k8s_ns pod message */
        ReportEvent *e = c->move ? (m->n_moves ? &m->moves[m->n_moves - 1] : NULL)
                                 : (m->n_critical ? &m->critical[m->n_critical - 1] : NULL);
        bool same = e && streq_ptr(e->kind, opt(v[0])) && streq_ptr(e->ref, opt(v[1])) &&
                    streq_ptr(e->digest, opt(v[2])) && streq_ptr(e->previous_digest, opt(v[3])) &&
                    streq_ptr(e->expected_digest, opt(v[4])) && streq_ptr(e->revision, opt(v[5]));
        if (!same) {
                int r = c->move ? report_model_append(m, moves, &e) : report_model_append(m, critical, &e);
                if (r < 0)
                        return r;
                e->kind = xstrdup(v[0]);
                e->ref = xstrdup(v[1]);
                e->digest = xstrdup(v[2]);
                e->previous_digest = xstrdup(v[3]);
                e->expected_digest = xstrdup(v[4]);
                e->revision = xstrdup(v[5]);
                e->message = xstrdup(v[11]);
                if (!e->kind || !e->ref || !e->digest || !e->previous_digest || !e->expected_digest ||
                    !e->revision || !e->message)
                        return -ENOMEM;
                e->first_usec = UINT64_MAX;
        }
        uint64_t t = u64(v[6]);
        if (t < e->first_usec)
                e->first_usec = t;
        if (t > e->last_usec)
                e->last_usec = t;
        int r = report_strings_add_unique(&e->nodes, opt(v[8]));
        if (r >= 0 && !isempty(v[10])) {
                char pod[2 * 256 + 2];
                snprintf(pod, sizeof pod, "%s/%s", opt(v[9]), v[10]);
                r = report_strings_add_unique(&e->pods, pod);
        }
        return r;
}

static int query_events(Q *q, bool move) {
        char sql[SQL_MAX];
        /* Records name a Kubernetes namespace only when a workload is known; a move seen at
         * pull time names none, so with --namespace a record also counts when that
         * namespace's pods use the reference on that node now. */
        snprintf(sql, sizeof sql,
                 "SELECT kind, ref, digest, previous_digest, expected_digest, revision, time_usec, cluster, node, "
                 "k8s_namespace, pod, message FROM records r "
                 "WHERE %s AND time_usec >= $3 AND time_usec <= $4 AND ($1 = '' OR cluster = $1) "
                 "AND ($2 = '' OR k8s_namespace = $5 OR EXISTS (SELECT 1 FROM node_images n WHERE "
                 "n.cluster = r.cluster AND n.node = r.node AND n.ref = r.ref AND %s)) "
                 "ORDER BY kind, ref, digest, previous_digest, expected_digest, revision, time_usec, cluster, node",
                 move ? "kind = 'tag_moved'" : "kind IN ('digest_mismatch', 'revision_mismatch')",
                 store_engine(q->store) == STORE_POSTGRESQL ? "strpos(',' || n.k8s_namespaces || ',', $2) > 0"
                                                            : "instr(',' || n.k8s_namespaces || ',', $2) > 0");
        const char *p[] = {opt(q->f->cluster), q->ns_needle, q->since_s, q->now_s, opt(q->f->k8s_namespace)};
        EventCtx c = {q, move};
        return run(q, sql, 5, p, row_event, &c);
}

/* ---- trend ---- */

static int row_day(void *userdata, size_t ncols, const char *const *v) {
        Q *q = userdata;
        if (ncols < 3)
                return -EPROTO;
        ReportDay *d;
        if (report_model_append(q->m, trend, &d) < 0)
                return -ENOMEM;
        snprintf(d->day, sizeof d->day, "%s", opt(v[0]));
        d->images = u64(v[1]);
        d->compliant = u64(v[2]);
        return 0;
}

static void day_string(uint64_t usec, char buf[static 11]) {
        time_t t = (time_t) (usec / 1000000ULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, 11, "%Y-%m-%d", &tm);
}

static int query_trend(Q *q) {
        char first[11], last[11];
        day_string(q->now - (REPORT_TREND_DAYS - 1) * 86400ULL * 1000000ULL, first);
        day_string(q->now, last);
        const char *p[] = {first, last, opt(q->f->cluster), opt(q->f->k8s_namespace)};
        return run(q,
                   "SELECT day, SUM(images), SUM(compliant) FROM daily_rollup WHERE day >= $1 AND day <= $2 "
                   "AND ($3 = '' OR cluster = $3) AND k8s_namespace = $4 GROUP BY day ORDER BY day",
                   4, p, row_day, q);
}

/* ---- section 7: what runs where, and what ran before ---- */

static int row_workload(void *userdata, size_t ncols, const char *const *v) {
        Q *q = userdata;
        ReportModel *m = q->m;
        if (ncols < 11)
                return -EPROTO;
        /* columns: cluster node k8s_ns pod container name ref digest revision first last;
         * ordered by workload, then last seen, newest first: the first row of a workload
         * is what runs now, the next with another digest what ran before */
        ReportPlacement *p = m->n_placements ? &m->placements[m->n_placements - 1] : NULL;
        bool same = p && streq_ptr(p->cluster, opt(v[0])) && streq_ptr(p->node, opt(v[1])) &&
                    streq_ptr(p->k8s_namespace, opt(v[2])) && streq_ptr(p->pod, opt(v[3])) &&
                    streq_ptr(p->container, opt(v[4]));
        if (same) {
                if (isempty(p->previous_digest) && !streq_ptr(p->digest, opt(v[7]))) {
                        free(p->previous_digest);
                        free(p->previous_revision);
                        if (!(p->previous_digest = xstrdup(v[7])) || !(p->previous_revision = xstrdup(v[8])))
                                return -ENOMEM;
                        p->previous_last_usec = u64(v[10]);
                }
                return 0;
        }
        if (report_model_append(m, placements, &p) < 0)
                return -ENOMEM;
        const char *const *src = v;
        char **dst[] = {&p->cluster, &p->node, &p->k8s_namespace, &p->pod, &p->container,
                        &p->name, &p->ref, &p->digest, &p->revision};
        for (size_t i = 0; i < ELEMENTSOF(dst); i++)
                if (!(*dst[i] = xstrdup(src[i])))
                        return -ENOMEM;
        if (!(p->previous_digest = xstrdup("")) || !(p->previous_revision = xstrdup("")))
                return -ENOMEM;
        p->since_usec = u64(v[9]);
        return 0;
}

static int query_workload(Q *q) {
        const char *p[] = {q->f->workload_ns, q->f->workload_name, opt(q->f->cluster)};
        /* NAME is a pod, a container, or the pods of a Deployment/StatefulSet (NAME-…) */
        return run(q,
                   "SELECT cluster, node, k8s_namespace, pod, container, name, ref, digest, revision, "
                   "first_seen_usec, " STORE_WORKLOAD_LAST_SEEN_SQL("workload_history") " AS seen FROM "
                   "workload_history WHERE k8s_namespace = $1 AND (pod = $2 OR container = $2 OR "
                   "substr(pod, 1, length($2) + 1) = $2 || '-') AND ($3 = '' OR cluster = $3) "
                   "ORDER BY cluster, node, k8s_namespace, pod, container, seen DESC, digest",
                   3, p, row_workload, q);
}

/* --image: node_images says what each node holds now; workload_history what it ran before. */
static int row_image_now(void *userdata, size_t ncols, const char *const *v) {
        Q *q = userdata;
        if (ncols < 6)
                return -EPROTO;
        ReportPlacement *p;
        if (report_model_append(q->m, placements, &p) < 0)
                return -ENOMEM;
        p->cluster = xstrdup(v[0]);
        p->node = xstrdup(v[1]);
        p->ref = xstrdup(v[2]);
        p->digest = xstrdup(v[3]);
        p->revision = xstrdup(v[4]);
        p->name = xstrdup(q->f->image);
        p->k8s_namespace = xstrdup("");
        p->pod = xstrdup("");
        p->container = xstrdup("");
        p->previous_digest = xstrdup("");
        p->previous_revision = xstrdup("");
        if (!p->cluster || !p->node || !p->ref || !p->digest || !p->revision || !p->name || !p->k8s_namespace ||
            !p->pod || !p->container || !p->previous_digest || !p->previous_revision)
                return -ENOMEM;
        return 0;
}

static int cmp_node(const ReportPlacement *p, const char *cluster, const char *node) {
        int c = strcmp(p->cluster, cluster);
        return c ? c : strcmp(p->node, node);
}

/* The first placement on (cluster, node), by binary search: placements are sorted in C
 * (strcmp), since the database's ORDER BY follows its collation, not strcmp. */
static size_t placement_lower_bound(const ReportModel *m, const char *cluster, const char *node) {
        size_t lo = 0, hi = m->n_placements;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (cmp_node(&m->placements[mid], cluster, node) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static int set_previous(ReportPlacement *p, const char *digest, const char *revision, uint64_t last) {
        free(p->previous_digest);
        free(p->previous_revision);
        p->previous_digest = xstrdup(digest);
        p->previous_revision = xstrdup(revision);
        p->previous_last_usec = last;
        return p->previous_digest && p->previous_revision ? 0 : -ENOMEM;
}

/* workload_history rows of the image: cluster node digest revision first last, each
 * node's newest first. The current digest's first sighting is "since"; the newest other
 * digest is what ran before. */
static int row_image_before(void *userdata, size_t ncols, const char *const *v) {
        Q *q = userdata;
        ReportModel *m = q->m;
        if (ncols < 6)
                return -EPROTO;
        for (size_t i = placement_lower_bound(m, opt(v[0]), opt(v[1]));
             i < m->n_placements && cmp_node(&m->placements[i], opt(v[0]), opt(v[1])) == 0; i++) {
                ReportPlacement *p = &m->placements[i];
                if (streq_ptr(p->digest, opt(v[2]))) {
                        if (p->since_usec == 0 || u64(v[4]) < p->since_usec)
                                p->since_usec = u64(v[4]);
                } else if (isempty(p->previous_digest) || u64(v[5]) > p->previous_last_usec) {
                        int r = set_previous(p, opt(v[2]), opt(v[3]), u64(v[5]));
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* pull records of the image, for nodes no pod history covers: cluster node ref digest
 * revision last. The newest pull of another digest of the same reference ran before. */
static int row_image_pulls(void *userdata, size_t ncols, const char *const *v) {
        Q *q = userdata;
        ReportModel *m = q->m;
        if (ncols < 6)
                return -EPROTO;
        for (size_t i = placement_lower_bound(m, opt(v[0]), opt(v[1]));
             i < m->n_placements && cmp_node(&m->placements[i], opt(v[0]), opt(v[1])) == 0; i++) {
                ReportPlacement *p = &m->placements[i];
                if (!streq_ptr(p->ref, opt(v[2])) || p->from_history)
                        continue;
                if (streq_ptr(p->digest, opt(v[3]))) {
                        if (p->since_usec == 0 || u64(v[5]) < p->since_usec)
                                p->since_usec = u64(v[5]);
                        if (isempty(p->revision) && !isempty(v[4])) {
                                free(p->revision);
                                if (!(p->revision = xstrdup(v[4])))
                                        return -ENOMEM;
                        }
                } else if (isempty(p->previous_digest) || u64(v[5]) > p->previous_last_usec) {
                        int r = set_previous(p, opt(v[3]), opt(v[4]), u64(v[5]));
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int cmp_placement_node(const void *a, const void *b) {
        const ReportPlacement *x = a, *y = b;
        int c = cmp_node(x, y->cluster, y->node);
        return c ? c : strcmp(x->ref, y->ref);
}

/* Both tables node by node: nodes joined to each node's range of their primary keys, the
 * name filtered (no index of them has a global order: store.c migration_8). */
static int query_image(Q *q) {
        char where[512], sql[SQL_MAX];
        where_images_joined(q, where, sizeof where);
        snprintf(sql, sizeof sql,
                 "SELECT i.cluster, i.node, i.ref, i.digest, i.revision, " STORE_IMAGE_UPDATED_SQL("i") " FROM nodes n "
                 "CROSS JOIN node_images i WHERE i.cluster = n.cluster AND i.node = n.node AND i.name = $3 AND %s",
                 where);
        const char *p[] = {opt(q->f->cluster), q->ns_needle, q->f->image};
        int r = run(q, sql, 3, p, row_image_now, q);
        if (r < 0)
                return r;
        ReportModel *m = q->m;
        if (m->n_placements > 1)
                qsort(m->placements, m->n_placements, sizeof *m->placements, cmp_placement_node);
        const char *p2[] = {q->f->image, opt(q->f->cluster)};
        r = run(q,
                "SELECT w.cluster, w.node, w.digest, MAX(w.revision), MIN(w.first_seen_usec), "
                "MAX(" STORE_WORKLOAD_LAST_SEEN_SQL("w") ") "
                "FROM nodes n CROSS JOIN workload_history w WHERE w.cluster = n.cluster AND w.node = n.node "
                "AND w.name = $1 AND ($2 = '' OR n.cluster = $2) GROUP BY w.cluster, w.node, w.digest",
                2, p2, row_image_before, q);
        if (r < 0)
                return r;
        /* pods ran it on these nodes: their history is the better witness */
        for (size_t i = 0; i < m->n_placements; i++)
                m->placements[i].from_history = !isempty(m->placements[i].previous_digest);
        return run(q,
                   "SELECT cluster, node, ref, digest, MAX(revision), MAX(time_usec) FROM records "
                   "WHERE kind = 'pull' AND name = $1 AND ($2 = '' OR cluster = $2) GROUP BY cluster, node, ref, digest",
                   2, p2, row_image_pulls, q);
}

/* ---- the whole model ---- */

static int copy_filter(ReportFilter *dst, const ReportFilter *src) {
        *dst = *src;
        dst->cluster = dst->k8s_namespace = dst->image = dst->workload_ns = dst->workload_name = NULL;
        const char *s[] = {src->cluster, src->k8s_namespace, src->image, src->workload_ns, src->workload_name};
        char **d[] = {&dst->cluster, &dst->k8s_namespace, &dst->image, &dst->workload_ns, &dst->workload_name};
        for (size_t i = 0; i < ELEMENTSOF(s); i++)
                if (s[i] && !(*d[i] = strdup(s[i])))
                        return -ENOMEM;
        return 0;
}

static int q_init(Q *q, Store *s, const ReportFilter *f, ReportModel *m, char *err, size_t errlen) {
        *q = (Q) {.store = s, .f = f, .m = m, .err = err, .errlen = errlen};
        q->now = f->now_usec ? f->now_usec : now_usec_realtime();
        q->since = q->now > f->since_usec ? q->now - f->since_usec : 0;
        snprintf(q->now_s, sizeof q->now_s, "%" PRIu64, q->now);
        snprintf(q->since_s, sizeof q->since_s, "%" PRIu64, q->since);
        if (f->k8s_namespace) {
                if (strlen(f->k8s_namespace) >= REPORT_FILTER_MAX)
                        return errbuf_fail(err, errlen, -EINVAL, "namespace filter too long");
                snprintf(q->ns_needle, sizeof q->ns_needle, ",%s,", f->k8s_namespace);
        }
        m->generated_usec = q->now;
        return 0;
}

int report_query(Store *s, const ReportFilter *f, ReportModel **ret, char *err, size_t errlen) {
        ReportModel *m = report_model_new();
        if (!m)
                return -ENOMEM;
        report_filter_done(&m->filter);
        int r = copy_filter(&m->filter, f);
        Q q;
        if (r >= 0)
                r = q_init(&q, s, &m->filter, m, err, errlen);
        /* PostgreSQL sizes a GROUP BY from column statistics, which overestimate the groups
         * of (cluster, namespaces, ref, digest) by orders of magnitude, and with the default
         * 4 MB work_mem it then sorts 2M rows through disk instead of hashing a thousand
         * groups in memory (3.1 → 1.5 s over 500k rows here). A session setting of this
         * read-only connection, not a write: the report has a Store of its own. */
        if (r >= 0 && store_engine(s) == STORE_POSTGRESQL)
                r = run(&q, "SET work_mem = '" REPORT_PG_WORK_MEM "'", 0, NULL, NULL, NULL);
        if (r >= 0)
                r = query_nodes(&q);
        if (r >= 0)
                r = query_images(&q);
        if (r >= 0)
                r = query_events(&q, true);
        if (r >= 0)
                r = query_events(&q, false);
        if (r >= 0)
                r = query_trend(&q);
        if (r >= 0 && f->image) {
                m->placements_requested = true;
                r = query_image(&q);
        } else if (r >= 0 && f->workload_ns && f->workload_name) {
                m->placements_requested = true;
                r = query_workload(&q);
        }
        if (r < 0) {
                if (r == -ENOMEM || r == -EPROTO)
                        errbuf_fail(err, errlen, r, r == -ENOMEM ? "out of memory building the report"
                                                               : "unexpected result shape from the store");
                report_model_free(m);
                return r;
        }
        report_model_sort(m);
        *ret = m;
        return 0;
}

/* ---- CSV: one row per image per node, streamed ---- */

typedef struct CsvCtx {
        FILE *out;
        bool time_cols[32];
} CsvCtx;

static int row_csv(void *userdata, size_t ncols, const char *const *v) {
        CsvCtx *c = userdata;
        for (size_t i = 0; i < ncols; i++) {
                if (i && fputc(',', c->out) == EOF)
                        return -EIO;
                char buf[40];
                const char *s = v[i];
                if (i < ELEMENTSOF(c->time_cols) && c->time_cols[i] && report_format_time(u64(v[i]), buf, sizeof buf) >= 0)
                        s = buf;
                if (report_csv_field(c->out, s) < 0)
                        return -EIO;
        }
        return fputc('\n', c->out) == EOF ? -EIO : 0;
}

int report_csv(Store *s, const ReportFilter *f, FILE *out, char *err, size_t errlen) {
        static const char *const cols[] = {"cluster", "node", "namespace", "ref", "name", "tag", "digest",
                                           "media_type", "revision", "pinned", "latest", "revision_verified",
                                           "compliant", "findings", "k8s_namespaces", "pods", "updated"};
        ReportModel dummy = {0};
        Q q;
        int r = q_init(&q, s, f, &dummy, err, errlen);
        if (r < 0)
                return r;
        CsvCtx c = {.out = out};
        c.time_cols[16] = true;
        for (size_t i = 0; i < ELEMENTSOF(cols); i++)
                fprintf(out, "%s%s", i ? "," : "", cols[i]);
        fputc('\n', out);
        char where[512], sql[SQL_MAX];
        where_images(&q, where, sizeof where);
        snprintf(sql, sizeof sql,
                 "SELECT cluster, node, namespace, ref, name, tag, digest, media_type, revision, pinned, latest, "
                 "revision_verified, compliant, findings, k8s_namespaces, pods, " STORE_IMAGE_UPDATED_SQL("node_images")
                 " FROM node_images "
                 "WHERE %s AND ($3 = '' OR name = $3) ORDER BY cluster, node, namespace, ref",
                 where);
        const char *p[] = {opt(f->cluster), q.ns_needle, opt(f->image)};
        r = run(&q, sql, 3, p, row_csv, &c);
        if (r == -EIO)
                return errbuf_fail(err, errlen, r, "writing the CSV failed");
        return r;
}
