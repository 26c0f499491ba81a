/* The fleet report: what every node runs, where tags diverge, what moved, what is
 * critical, how compliance trends, and what ran before (the rollback target).
 *
 * Three layers, each testable alone (STYLE.md: pure cores, thin shells):
 *   report_query.c   fills a ReportModel from the store (store_query() only, portable SQL);
 *   report_json.c, report_html.c, report_csv.c   pure renderers of a model;
 *   report_main.c    the `pullwatch-fleet report` command and the HTTP routes.
 *
 * Everything in a model comes from records, so every string in it is attacker-controlled:
 * the renderers escape it (HTML, CSV formula prefixes); JSON goes through jansson. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "pullwatch/store.h"

#define REPORT_SCHEMA_VERSION 1
#define REPORT_TREND_DAYS 30
#define REPORT_OFFENDERS_MAX 10
#define REPORT_DEFAULT_SINCE_USEC (7ULL * 24 * 3600 * 1000000ULL)
#define REPORT_DEFAULT_INVENTORY_INTERVAL_USEC (3600ULL * 1000000ULL)
/* Bound what one filter value may be: the longest reference, with room. */
#define REPORT_FILTER_MAX 512

/* What to report on. Strings are owned by the filter (report_filter_done() frees them);
 * NULL means no filter. */
typedef struct ReportFilter {
        char *cluster;
        char *k8s_namespace;
        char *image;         /* an image name (domain/path): section 7 for that image */
        char *workload_ns;   /* with workload_name: section 7 for NS/NAME */
        char *workload_name; /* a pod, a container, or a pod-name prefix (NAME-…) */
        uint64_t now_usec;   /* the report's "now" (0: the clock) */
        uint64_t since_usec; /* the period for moves and findings, µs back from now */
        uint64_t inventory_interval_usec; /* stale: no inventory within twice this */
} ReportFilter;

void report_filter_init(ReportFilter *f);
void report_filter_done(ReportFilter *f);

/* A growing list of owned strings. */
typedef struct ReportStrings {
        char **v;
        size_t n, alloc;
} ReportStrings;

int report_strings_add(ReportStrings *l, const char *s);          /* copies s */
int report_strings_add_unique(ReportStrings *l, const char *s);   /* copies s unless present */
void report_strings_sort(ReportStrings *l);                       /* strcmp order, duplicates removed */
void report_strings_done(ReportStrings *l);

typedef struct ReportCount {
        uint64_t images;            /* images on nodes: one per (node, containerd namespace, ref) */
        uint64_t in_use;            /* of those, used by a known pod */
        uint64_t pinned;            /* by digest or by an immutable tag */
        uint64_t latest;            /* a latest_tag finding stands */
        uint64_t revision_verified; /* neither untraceable nor revision_mismatch */
        uint64_t compliant;         /* no finding stands (node_images.compliant): pinned, free of
                                     * latest, revision verified, and no digest_mismatch or tag_moved */
        uint64_t findings;          /* standing findings on those images */
} ReportCount;

/* Compliance in tenths of a percent (975 = 97.5 %), or -1 when there are no images. */
int report_count_permille(const ReportCount *c);

typedef struct ReportCompliance {
        char *cluster;
        char *k8s_namespace; /* "" = every image on the cluster's nodes */
        ReportCount count;
} ReportCompliance;

typedef struct ReportDigest {
        char *digest;
        char *media_type;
        ReportStrings nodes;    /* node names, sorted */
        ReportStrings clusters; /* the clusters of those nodes, sorted */
        ReportStrings pods;     /* "namespace/pod", sorted */
} ReportDigest;

typedef struct ReportDivergence {
        char *ref;
        ReportDigest *digests; /* most nodes first */
        size_t n_digests;
        /* Some nodes hold an index and others a platform manifest: the store does not
         * keep which manifests an index lists, so this may be one multi-arch image. */
        bool index_relation_unknown;
} ReportDivergence;

typedef struct ReportEvent {
        char *kind; /* tag_moved | digest_mismatch | revision_mismatch */
        char *ref;
        char *digest;
        char *previous_digest; /* tag_moved: old digest */
        char *expected_digest; /* digest_mismatch: the pin */
        char *revision;        /* revision_mismatch: what the image says */
        uint64_t first_usec, last_usec;
        ReportStrings nodes;
        ReportStrings pods;
        char *message; /* the first record's message */
} ReportEvent;

typedef struct ReportDay {
        char day[11]; /* YYYY-MM-DD */
        uint64_t images, compliant;
} ReportDay;

typedef struct ReportOffender {
        char *name; /* a Kubernetes namespace or an image name */
        uint64_t findings;
        uint64_t images; /* images on nodes carrying them */
} ReportOffender;

/* Section 7: one workload (or, for --image, one node's reference) now and before. */
typedef struct ReportPlacement {
        char *cluster, *node;
        char *k8s_namespace, *pod, *container; /* "" for --image rows without a pod */
        char *name, *ref;
        char *digest, *revision;
        uint64_t since_usec; /* first seen running this digest (0 unknown) */
        char *previous_digest, *previous_revision; /* "" when nothing ran before */
        uint64_t previous_last_usec;
        bool from_history; /* internal: "previous" came from pod history, not pull records */
} ReportPlacement;

#define REPORT_ARRAY(type, name) \
        type *name;              \
        size_t n_##name, alloc_##name

typedef struct ReportModel {
        ReportFilter filter; /* a copy, owned */
        uint64_t generated_usec;
        uint64_t nodes, nodes_stale;
        ReportCount total;
        REPORT_ARRAY(ReportCompliance, compliance); /* by cluster, then namespace */
        REPORT_ARRAY(ReportDivergence, divergence); /* by ref */
        REPORT_ARRAY(ReportEvent, moves);           /* by first time */
        REPORT_ARRAY(ReportEvent, critical);        /* by first time */
        REPORT_ARRAY(ReportDay, trend);             /* oldest first */
        REPORT_ARRAY(ReportOffender, offender_namespaces); /* most findings first */
        REPORT_ARRAY(ReportOffender, offender_images);
        bool placements_requested;
        REPORT_ARRAY(ReportPlacement, placements);
        ReportStrings stale_nodes; /* "cluster/node", sorted */
} ReportModel;

ReportModel *report_model_new(void);
ReportModel *report_model_free(ReportModel *m); /* accepts NULL, returns NULL */
/* Append a zeroed element to one of the model's arrays; *ret is borrowed (valid until
 * the next append to the same array). */
#define report_model_append(m, name, ret)                                                            \
        report_array_grow((void **) &(m)->name, &(m)->alloc_##name, &(m)->n_##name, sizeof(*(m)->name), \
                          (void **) (ret))
int report_array_grow(void **p, size_t *alloc, size_t *n, size_t size, void **ret);
/* Deterministic order of every list (renderers and golden files rely on it). */
void report_model_sort(ReportModel *m);

/* Fill a model from the store. f is copied. On failure a one-line reason goes to err. */
int report_query(Store *s, const ReportFilter *f, ReportModel **ret, char *err, size_t errlen);

/* Renderers: pure functions of the model; *ret is malloc()ed, NUL-terminated, owned
 * by the caller. */
int report_render_json(const ReportModel *m, char **ret, size_t *ret_len);
/* json_link: where the complete JSON lies (an URL, escaped here), or NULL. */
int report_render_html(const ReportModel *m, const char *json_link, char **ret, size_t *ret_len);
/* The Content-Security-Policy the HTML report is written for (also in its <meta>). */
const char *report_html_csp(void);

/* CSV: one row per image per node (the node_images rows the filter selects), streamed
 * from the store to out; header first. */
int report_csv(Store *s, const ReportFilter *f, FILE *out, char *err, size_t errlen);
/* One CSV field, quoted when needed; a leading = + - @ TAB CR is defused with a quote
 * (spreadsheets run such cells as formulas). */
int report_csv_field(FILE *out, const char *s);

/* HTML escaping of attacker-controlled text (&, <, >, ", '), into out. */
int report_html_escape(FILE *out, const char *s);

/* Duration "30s", "15m", "1h", "7d", "2w" (or plain seconds) → µs. */
int report_parse_duration(const char *s, uint64_t *ret_usec);
/* RFC 3339 UTC "YYYY-MM-DDTHH:MM:SS[.ffffff]Z" → µs. */
int report_parse_time(const char *s, uint64_t *ret_usec);
/* µs → "YYYY-MM-DDTHH:MM:SS.ffffffZ" (size ≥ 28). */
int report_format_time(uint64_t usec, char *buf, size_t size);

/* `pullwatch-fleet report …` (argv[0] is "report"): 0 done (and compliance at or above
 * --fail-under), 1 below --fail-under, 2 error (one line on stderr). */
int fleet_report_main(int argc, char **argv);

/* The query string of the report's routes (application/x-www-form-urlencoded) into f:
 * cluster, namespace, since, image, workload, inventory_interval. -EINVAL with a one-line
 * reason in err (unknown parameter, bad value, bad encoding, over 4 KiB); -ENOMEM. */
int report_filter_from_query(ReportFilter *f, const char *query, char *err, size_t errlen);

/* GET /report (HTML) and GET /api/v1/report (JSON), with the filters as the query string
 * (cluster, namespace, since, image, workload, inventory_interval).
 * path: "/report" or "/api/v1/report"; query: the raw query string after '?' (or NULL).
 * scope_cluster: the cluster the caller authenticated as (its bearer token or client
 * certificate), or NULL for an open collector: a scoped caller sees its cluster only (a
 * query naming another answers 403).
 * Returns 0 with *ret_status (200, 400, 403, 404, 500, 503), a static *ret_content_type
 * and a malloc()ed *ret_body (owned by the caller) — an error answer is a body too; < 0
 * only when even that could not be made (-ENOMEM). An HTML answer is meant to be sent with
 * the header Content-Security-Policy: report_html_csp(). Each store_query() is one
 * statement; give it a Store of its own so a long report does not hold the writer's. */
int fleet_report_http(Store *s, const char *path, const char *query, const char *scope_cluster,
                      int *ret_status, const char **ret_content_type, char **ret_body, size_t *ret_body_len);
