/* The report model: plain structs, their lists, order and lifetime; and the small
 * parsers the command line and the query string share (durations, times). */
#include <ctype.h>
#include <inttypes.h>
#include <time.h>

#include "pullwatch/report.h"
#include "pullwatch/util.h"

void report_filter_init(ReportFilter *f) {
        *f = (ReportFilter) {
                .since_usec = REPORT_DEFAULT_SINCE_USEC,
                .inventory_interval_usec = REPORT_DEFAULT_INVENTORY_INTERVAL_USEC,
        };
}

void report_filter_done(ReportFilter *f) {
        free(f->cluster);
        free(f->k8s_namespace);
        free(f->image);
        free(f->workload_ns);
        free(f->workload_name);
        f->cluster = f->k8s_namespace = f->image = f->workload_ns = f->workload_name = NULL;
}

int report_array_grow(void **p, size_t *alloc, size_t *n, size_t size, void **ret) {
        int r = greedy_realloc(p, alloc, *n + 1, size, 8);
        if (r < 0)
                return r;
        void *e = (char *) *p + *n * size;
        memset(e, 0, size);
        (*n)++;
        if (ret)
                *ret = e;
        return 0;
}

int report_strings_add(ReportStrings *l, const char *s) {
        char *c = strdup(s ? s : "");
        if (!c)
                return -ENOMEM;
        int r = greedy_realloc((void **) &l->v, &l->alloc, l->n + 1, sizeof(char *), 8);
        if (r < 0) {
                free(c);
                return r;
        }
        l->v[l->n++] = c;
        return 0;
}

int report_strings_add_unique(ReportStrings *l, const char *s) {
        /* Lists here are short (the nodes of one digest are added through the sorted
         * query, the last one suffices to drop neighbours); a linear check keeps the
         * model simple. Long lists are made unique by report_strings_sort(). */
        if (l->n > 0 && streq_ptr(l->v[l->n - 1], s ? s : ""))
                return 0;
        if (l->n <= 64)
                for (size_t i = 0; i < l->n; i++)
                        if (streq_ptr(l->v[i], s ? s : ""))
                                return 0;
        return report_strings_add(l, s);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

void report_strings_sort(ReportStrings *l) {
        if (l->n < 2)
                return;
        qsort(l->v, l->n, sizeof(char *), cmp_str); /* n ≥ 2 here */
        size_t w = 1;
        for (size_t i = 1; i < l->n; i++) {
                if (streq_ptr(l->v[i], l->v[w - 1]))
                        free(l->v[i]);
                else
                        l->v[w++] = l->v[i];
        }
        l->n = w;
}

void report_strings_done(ReportStrings *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
        free(l->v);
        *l = (ReportStrings) {0};
}

int report_count_permille(const ReportCount *c) {
        if (c->images == 0)
                return -1;
        /* rounded half up, so 99.95 % shows 100.0 only when it is at least that */
        return (int) ((c->compliant * 2000 + c->images) / (c->images * 2));
}

ReportModel *report_model_new(void) {
        ReportModel *m = calloc(1, sizeof *m);
        if (m)
                report_filter_init(&m->filter);
        return m;
}

static void event_done(ReportEvent *e) {
        free(e->kind);
        free(e->ref);
        free(e->digest);
        free(e->previous_digest);
        free(e->expected_digest);
        free(e->revision);
        free(e->message);
        report_strings_done(&e->nodes);
        report_strings_done(&e->pods);
}

ReportModel *report_model_free(ReportModel *m) {
        if (!m)
                return NULL;
        report_filter_done(&m->filter);
        for (size_t i = 0; i < m->n_compliance; i++) {
                free(m->compliance[i].cluster);
                free(m->compliance[i].k8s_namespace);
        }
        free(m->compliance);
        for (size_t i = 0; i < m->n_divergence; i++) {
                ReportDivergence *d = &m->divergence[i];
                for (size_t j = 0; j < d->n_digests; j++) {
                        free(d->digests[j].digest);
                        free(d->digests[j].media_type);
                        report_strings_done(&d->digests[j].nodes);
                        report_strings_done(&d->digests[j].clusters);
                        report_strings_done(&d->digests[j].pods);
                }
                free(d->digests);
                free(d->ref);
        }
        free(m->divergence);
        for (size_t i = 0; i < m->n_moves; i++)
                event_done(&m->moves[i]);
        free(m->moves);
        for (size_t i = 0; i < m->n_critical; i++)
                event_done(&m->critical[i]);
        free(m->critical);
        free(m->trend);
        for (size_t i = 0; i < m->n_offender_namespaces; i++)
                free(m->offender_namespaces[i].name);
        free(m->offender_namespaces);
        for (size_t i = 0; i < m->n_offender_images; i++)
                free(m->offender_images[i].name);
        free(m->offender_images);
        for (size_t i = 0; i < m->n_placements; i++) {
                ReportPlacement *p = &m->placements[i];
                free(p->cluster);
                free(p->node);
                free(p->k8s_namespace);
                free(p->pod);
                free(p->container);
                free(p->name);
                free(p->ref);
                free(p->digest);
                free(p->revision);
                free(p->previous_digest);
                free(p->previous_revision);
        }
        free(m->placements);
        report_strings_done(&m->stale_nodes);
        free(m);
        return NULL;
}

/* ---- order ---- */

static int cmp_compliance(const void *a, const void *b) {
        const ReportCompliance *x = a, *y = b;
        int c = strcmp(x->cluster, y->cluster);
        return c ? c : strcmp(x->k8s_namespace, y->k8s_namespace);
}

static int cmp_digest(const void *a, const void *b) {
        const ReportDigest *x = a, *y = b;
        if (x->nodes.n != y->nodes.n)
                return x->nodes.n > y->nodes.n ? -1 : 1;
        return strcmp(x->digest, y->digest);
}

static int cmp_divergence(const void *a, const void *b) {
        return strcmp(((const ReportDivergence *) a)->ref, ((const ReportDivergence *) b)->ref);
}

static int cmp_event(const void *a, const void *b) {
        const ReportEvent *x = a, *y = b;
        if (x->first_usec != y->first_usec)
                return x->first_usec < y->first_usec ? -1 : 1;
        int c = strcmp(x->kind, y->kind);
        if (!c)
                c = strcmp(x->ref, y->ref);
        if (!c)
                c = strcmp(x->digest, y->digest);
        return c;
}

static int cmp_day(const void *a, const void *b) {
        return strcmp(((const ReportDay *) a)->day, ((const ReportDay *) b)->day);
}

static int cmp_offender(const void *a, const void *b) {
        const ReportOffender *x = a, *y = b;
        if (x->findings != y->findings)
                return x->findings > y->findings ? -1 : 1;
        return strcmp(x->name, y->name);
}

static int cmp_placement(const void *a, const void *b) {
        const ReportPlacement *x = a, *y = b;
        int c = strcmp(x->k8s_namespace, y->k8s_namespace);
        if (!c)
                c = strcmp(x->pod, y->pod);
        if (!c)
                c = strcmp(x->container, y->container);
        if (!c)
                c = strcmp(x->cluster, y->cluster);
        if (!c)
                c = strcmp(x->node, y->node);
        if (!c)
                c = strcmp(x->ref, y->ref);
        return c;
}

/* qsort() with NULL, 0 is undefined behaviour (UBSan says so); an empty list is sorted */
static void sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *)) {
        if (n > 1)
                qsort(base, n, size, cmp);
}

static void event_sort(ReportEvent *e) {
        report_strings_sort(&e->nodes);
        report_strings_sort(&e->pods);
}

void report_model_sort(ReportModel *m) {
        sort(m->compliance, m->n_compliance, sizeof *m->compliance, cmp_compliance);
        for (size_t i = 0; i < m->n_divergence; i++) {
                ReportDivergence *d = &m->divergence[i];
                for (size_t j = 0; j < d->n_digests; j++) {
                        report_strings_sort(&d->digests[j].nodes);
                        report_strings_sort(&d->digests[j].clusters);
                        report_strings_sort(&d->digests[j].pods);
                }
                sort(d->digests, d->n_digests, sizeof *d->digests, cmp_digest);
        }
        sort(m->divergence, m->n_divergence, sizeof *m->divergence, cmp_divergence);
        for (size_t i = 0; i < m->n_moves; i++)
                event_sort(&m->moves[i]);
        sort(m->moves, m->n_moves, sizeof *m->moves, cmp_event);
        for (size_t i = 0; i < m->n_critical; i++)
                event_sort(&m->critical[i]);
        sort(m->critical, m->n_critical, sizeof *m->critical, cmp_event);
        sort(m->trend, m->n_trend, sizeof *m->trend, cmp_day);
        sort(m->offender_namespaces, m->n_offender_namespaces, sizeof *m->offender_namespaces, cmp_offender);
        sort(m->offender_images, m->n_offender_images, sizeof *m->offender_images, cmp_offender);
        sort(m->placements, m->n_placements, sizeof *m->placements, cmp_placement);
        report_strings_sort(&m->stale_nodes);
}

/* ---- durations and times ---- */

int report_parse_duration(const char *s, uint64_t *ret_usec) {
        if (isempty(s) || !isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno)
                return -EINVAL;
        uint64_t unit;
        if (streq_ptr(end, "") || streq_ptr(end, "s"))
                unit = 1;
        else if (streq_ptr(end, "m"))
                unit = 60;
        else if (streq_ptr(end, "h"))
                unit = 3600;
        else if (streq_ptr(end, "d"))
                unit = 86400;
        else if (streq_ptr(end, "w"))
                unit = 7 * 86400;
        else
                return -EINVAL;
        /* ten years is more than any store keeps; anything above is a typo */
        if (v == 0 || v > 10ULL * 366 * 86400 / unit)
                return -ERANGE;
        *ret_usec = (uint64_t) v * unit * 1000000ULL;
        return 0;
}

int report_parse_time(const char *s, uint64_t *ret_usec) {
        if (isempty(s))
                return -EINVAL;
        struct tm tm = {0};
        const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!p)
                return -EINVAL;
        uint64_t frac = 0;
        if (*p == '.') {
                p++;
                int digits = 0;
                while (isdigit((unsigned char) *p)) {
                        if (digits < 6) {
                                frac = frac * 10 + (uint64_t) (*p - '0');
                                digits++;
                        }
                        p++;
                }
                if (digits == 0)
                        return -EINVAL;
                while (digits++ < 6)
                        frac *= 10;
        }
        if (!streq_ptr(p, "Z"))
                return -EINVAL;
        time_t t = timegm(&tm);
        if (t < 0 || t >= 253402300800) /* 1970 to 9999: µs fit, and the year formats as 4 digits */
                return -ERANGE;
        *ret_usec = (uint64_t) t * 1000000ULL + frac;
        return 0;
}

int report_format_time(uint64_t usec, char *buf, size_t size) {
        time_t sec = (time_t) (usec / 1000000ULL);
        struct tm tm;
        if (size < 28 || !gmtime_r(&sec, &tm))
                return -EINVAL;
        size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
        if (n == 0)
                return -EINVAL;
        snprintf(buf + n, size - n, ".%06" PRIu64 "Z", (uint64_t) (usec % 1000000ULL));
        return 0;
}
