/* The report as JSON (GET /api/v1/report, --format json): the complete model, every
 * list uncapped. Its shape is documented in the README ("Fleet report JSON"); bump
 * REPORT_SCHEMA_VERSION on any change that is not an addition. */
#include <jansson.h>

#include "pullwatch/report.h"
#include "pullwatch/util.h"


/* Every json_*_new steals its value and tolerates NULL (reporting -1), so one error
 * flag per object is enough: a NULL anywhere makes the whole render fail with -ENOMEM. */
static int set(json_t *o, const char *k, json_t *v) {
        return json_object_set_new(o, k, v) < 0 ? -ENOMEM : 0;
}

static json_t *str_or_null(const char *s) {
        return isempty(s) ? json_null() : json_string(s);
}

static json_t *uint_json(uint64_t v) {
        return json_integer((json_int_t) v);
}

static json_t *time_json(uint64_t usec) {
        char buf[40];
        if (usec == 0 || report_format_time(usec, buf, sizeof buf) < 0)
                return json_null();
        return json_string(buf);
}

static json_t *percent_json(const ReportCount *c) {
        int pm = report_count_permille(c);
        return pm < 0 ? json_null() : json_real(pm / 10.0);
}

static json_t *strings_json(const ReportStrings *l) {
        json_t *a = json_array();
        if (!a)
                return NULL;
        for (size_t i = 0; i < l->n; i++)
                if (json_array_append_new(a, json_string(l->v[i])) < 0) {
                        json_decref(a);
                        return NULL;
                }
        return a;
}

static int count_into(json_t *o, const ReportCount *c) {
        int r = 0;
        r |= set(o, "images", uint_json(c->images));
        r |= set(o, "in_use", uint_json(c->in_use));
        r |= set(o, "pinned", uint_json(c->pinned));
        r |= set(o, "latest", uint_json(c->latest));
        r |= set(o, "revision_verified", uint_json(c->revision_verified));
        r |= set(o, "compliant", uint_json(c->compliant));
        r |= set(o, "findings", uint_json(c->findings));
        r |= set(o, "percent", percent_json(c));
        return r;
}

static int append(json_t *a, json_t *o) {
        return json_array_append_new(a, o) < 0 ? -ENOMEM : 0;
}

static json_t *event_json(const ReportEvent *e, bool move) {
        json_t *o = json_object();
        if (!o)
                return NULL;
        int r = 0;
        if (!move)
                r |= set(o, "kind", json_string(e->kind));
        r |= set(o, "ref", json_string(e->ref));
        if (move)
                r |= set(o, "previous_digest", str_or_null(e->previous_digest));
        r |= set(o, "digest", str_or_null(e->digest));
        if (!move) {
                r |= set(o, "expected_digest", str_or_null(e->expected_digest));
                r |= set(o, "revision", str_or_null(e->revision));
                r |= set(o, "message", str_or_null(e->message));
        }
        r |= set(o, "first", time_json(e->first_usec));
        r |= set(o, "last", time_json(e->last_usec));
        r |= set(o, "nodes", strings_json(&e->nodes));
        r |= set(o, "pods", strings_json(&e->pods));
        if (r < 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static json_t *offenders_json(const ReportOffender *v, size_t n) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < n; i++) {
                json_t *o = json_object();
                int r = o ? 0 : -ENOMEM;
                r |= o ? set(o, "name", json_string(v[i].name)) : 0;
                r |= o ? set(o, "findings", uint_json(v[i].findings)) : 0;
                r |= o ? set(o, "images", uint_json(v[i].images)) : 0;
                if (r < 0 || append(a, o) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

static json_t *model_json(const ReportModel *m) {
        _cleanup_(json_decrefp) json_t *root = json_object();
        if (!root)
                return NULL;
        int r = 0;
        const ReportFilter *f = &m->filter;

        r |= set(root, "schema", json_integer(REPORT_SCHEMA_VERSION));
        r |= set(root, "generated", time_json(m->generated_usec));

        json_t *filter = json_object();
        r |= set(root, "filter", filter);
        if (!filter)
                return NULL;
        r |= set(filter, "cluster", str_or_null(f->cluster));
        r |= set(filter, "namespace", str_or_null(f->k8s_namespace));
        r |= set(filter, "since", time_json(m->generated_usec > f->since_usec ? m->generated_usec - f->since_usec : 1));
        r |= set(filter, "image", str_or_null(f->image));
        if (f->workload_ns && f->workload_name) {
                char w[2 * REPORT_FILTER_MAX + 2];
                snprintf(w, sizeof w, "%s/%s", f->workload_ns, f->workload_name);
                r |= set(filter, "workload", json_string(w));
        } else
                r |= set(filter, "workload", json_null());
        r |= set(filter, "inventory_interval_seconds", uint_json(f->inventory_interval_usec / 1000000ULL));

        json_t *head = json_object();
        r |= set(root, "headline", head);
        if (!head)
                return NULL;
        r |= set(head, "nodes", uint_json(m->nodes));
        r |= set(head, "nodes_stale", uint_json(m->nodes_stale));
        r |= set(head, "stale_nodes", strings_json(&m->stale_nodes));
        r |= count_into(head, &m->total);

        json_t *comp = json_array();
        r |= set(root, "compliance", comp);
        for (size_t i = 0; comp && i < m->n_compliance; i++) {
                json_t *o = json_object();
                if (!o)
                        return NULL;
                r |= append(comp, o);
                r |= set(o, "cluster", json_string(m->compliance[i].cluster));
                r |= set(o, "namespace", json_string(m->compliance[i].k8s_namespace));
                r |= count_into(o, &m->compliance[i].count);
        }

        json_t *div = json_array();
        r |= set(root, "divergence", div);
        for (size_t i = 0; div && i < m->n_divergence; i++) {
                const ReportDivergence *d = &m->divergence[i];
                json_t *o = json_object(), *digests = json_array();
                if (!o || !digests) {
                        json_decref(o);
                        json_decref(digests);
                        return NULL;
                }
                r |= append(div, o);
                r |= set(o, "ref", json_string(d->ref));
                r |= set(o, "index_relation_unknown", json_boolean(d->index_relation_unknown));
                r |= set(o, "digests", digests);
                for (size_t j = 0; j < d->n_digests; j++) {
                        json_t *g = json_object();
                        if (!g)
                                return NULL;
                        r |= append(digests, g);
                        r |= set(g, "digest", json_string(d->digests[j].digest));
                        r |= set(g, "media_type", str_or_null(d->digests[j].media_type));
                        r |= set(g, "nodes", strings_json(&d->digests[j].nodes));
                        r |= set(g, "clusters", strings_json(&d->digests[j].clusters));
                        r |= set(g, "pods", strings_json(&d->digests[j].pods));
                }
        }

        json_t *moves = json_array();
        r |= set(root, "moves", moves);
        for (size_t i = 0; moves && i < m->n_moves; i++)
                r |= append(moves, event_json(&m->moves[i], true));

        json_t *crit = json_array();
        r |= set(root, "critical", crit);
        for (size_t i = 0; crit && i < m->n_critical; i++)
                r |= append(crit, event_json(&m->critical[i], false));

        json_t *trend = json_array();
        r |= set(root, "trend", trend);
        for (size_t i = 0; trend && i < m->n_trend; i++) {
                json_t *o = json_object();
                if (!o)
                        return NULL;
                r |= append(trend, o);
                ReportCount c = {.images = m->trend[i].images, .compliant = m->trend[i].compliant};
                r |= set(o, "day", json_string(m->trend[i].day));
                r |= set(o, "images", uint_json(c.images));
                r |= set(o, "compliant", uint_json(c.compliant));
                r |= set(o, "percent", percent_json(&c));
        }

        json_t *off = json_object();
        r |= set(root, "offenders", off);
        if (!off)
                return NULL;
        r |= set(off, "namespaces", offenders_json(m->offender_namespaces, m->n_offender_namespaces));
        r |= set(off, "images", offenders_json(m->offender_images, m->n_offender_images));

        if (m->placements_requested) {
                json_t *pl = json_array();
                r |= set(root, "placements", pl);
                for (size_t i = 0; pl && i < m->n_placements; i++) {
                        const ReportPlacement *p = &m->placements[i];
                        json_t *o = json_object(), *prev = json_object();
                        if (!o || !prev) {
                                json_decref(o);
                                json_decref(prev);
                                return NULL;
                        }
                        r |= append(pl, o);
                        r |= set(o, "cluster", json_string(p->cluster));
                        r |= set(o, "node", json_string(p->node));
                        r |= set(o, "namespace", str_or_null(p->k8s_namespace));
                        r |= set(o, "pod", str_or_null(p->pod));
                        r |= set(o, "container", str_or_null(p->container));
                        r |= set(o, "name", str_or_null(p->name));
                        r |= set(o, "ref", str_or_null(p->ref));
                        r |= set(o, "digest", str_or_null(p->digest));
                        r |= set(o, "revision", str_or_null(p->revision));
                        r |= set(o, "since", time_json(p->since_usec));
                        if (isempty(p->previous_digest)) {
                                json_decref(prev);
                                r |= set(o, "previous", json_null());
                        } else {
                                r |= set(o, "previous", prev);
                                r |= set(prev, "digest", json_string(p->previous_digest));
                                r |= set(prev, "revision", str_or_null(p->previous_revision));
                                r |= set(prev, "last", time_json(p->previous_last_usec));
                        }
                }
        }
        if (r < 0)
                return NULL;
        return TAKE_PTR(root);
}

int report_render_json(const ReportModel *m, char **ret, size_t *ret_len) {
        _cleanup_(json_decrefp) json_t *root = model_json(m);
        if (!root)
                return -ENOMEM;
        /* 0.1 % steps: 6 significant digits print 33.3, not 33.299999999999997 */
        char *s = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        if (!s)
                return -ENOMEM;
        size_t n = strlen(s);
        /* a trailing newline makes the file a proper text file (diff, cat) */
        char *t = realloc(s, n + 2);
        if (!t) {
                free(s);
                return -ENOMEM;
        }
        t[n] = '\n';
        t[n + 1] = 0;
        *ret = t;
        *ret_len = n + 1;
        return 0;
}
